/*
 * options.c — every setting declared once, in one table: the command line,
 * the config file, the PGGUARD_* environment, --help and SIGHUP reload all
 * read the same row, so they cannot disagree.
 */
#include "proxy.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "exclude.h"
#include "log.h"
#include "redact.h"

typedef enum {
  ARG_HELP,       /* actions: the command line only */
  ARG_VERSION,
  ARG_CONFIG,     /* -c FILE, read before everything else */
  ARG_FLAG,       /* bool: no value on the command line; true/false in the file and environment */
  ARG_ONOFF,      /* bool, PgBouncer's on/off */
  ARG_HOSTPORT,   /* pgg_hostport */
  ARG_SECONDS,    /* double, finite, min..max */
  ARG_INT,        /* int, min..max */
  ARG_BYTES,      /* size_t, min..max */
  ARG_TEXT,       /* const char *, kept as given */
  ARG_CHOICE,     /* a scalar (an enum) the row's set function parses */
} arg_kind;

typedef enum {
  RELOAD,         /* SIGHUP applies it: new connections (or the guard's next job) see the new value */
  RESTART,        /* read once at start; SIGHUP says so when it changed and keeps the old value */
  CLI_ONLY,       /* says what this invocation does: no config file key, no reload */
} opt_reload;

typedef struct {
  const char *name;     /* long option and config file key; NULL: a --help heading */
  char letter;          /* short option, or 0 */
  const char *env;      /* PGGUARD_* variable, or NULL */
  arg_kind kind;
  const char *metavar;  /* the value in --help; NULL: takes none on the command line */
  size_t off, size;     /* its pgg_options field; size 0: none (set does the work) */
  double min, max;      /* ARG_SECONDS, ARG_INT, ARG_BYTES */
  int (*set)(pgg_options *o, const char *name, const char *v);  /* instead of the kind's parser */
  const char *value;    /* the default, parsed like any setting; NULL: unset */
  const char *shown;    /* the default as --help prints it; NULL: value, or "none" */
  opt_reload reload;
  const char *pgbouncer;/* PgBouncer's equivalent setting, or NULL (README only) */
  const char *help;     /* lines after the first are indented under it */
} opt_row;

#define FIELD(m) .off = offsetof(pgg_options, m), .size = sizeof(((pgg_options *)0)->m)
/* Longer than any timer needs, short enough that milliseconds fit a uint64_t. */
#define MAX_SECONDS 1e9

int pgg_hostport_parse(const char *s, pgg_hostport *out)
{
  const char *colon;
  const char *host = s;
  size_t hlen;

  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (!end || end[1] != ':')
      return PGG_ERR_CONFIG;
    host = s + 1;
    hlen = (size_t)(end - host);
    colon = end + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon)
      return PGG_ERR_CONFIG;
    hlen = (size_t)(colon - s);
  }
  if (hlen == 0 || hlen >= sizeof(out->host))
    return PGG_ERR_CONFIG;
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
    return PGG_ERR_CONFIG;
  memcpy(out->host, host, hlen);
  out->host[hlen] = 0;
  out->port = (int)port;
  return PGG_OK;
}

/* Strings read from a config file or a secret file; freed at exit. */
static char **owned;
static size_t nowned;

static const char *keep(const char *v)
{
  char **grown = realloc(owned, (nowned + 1) * sizeof(*owned));
  char *copy = strdup(v);
  if (!grown || !copy) {
    free(copy);
    if (grown)
      owned = grown;
    return NULL;
  }
  owned = grown;
  owned[nowned++] = copy;
  return copy;
}

void pgg_options_free(void)
{
  for (size_t i = 0; i < nowned; i++)
    free(owned[i]);
  free(owned);
  owned = NULL;
  nowned = 0;
}

static int read_secret_file(const char *name, const char *path, const char **out)
{
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "pgguard: cannot read %s \"%s\": %s\n", name, path, strerror(errno));
    return PGG_ERR_CONFIG;
  }
  char buf[4096];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  while (n && isspace((unsigned char)buf[n - 1]))
    buf[--n] = 0;
  if (!n) {
    fprintf(stderr, "pgguard: %s \"%s\" is empty\n", name, path);
    return PGG_ERR_CONFIG;
  }
  *out = keep(buf);
  return *out ? PGG_OK : PGG_ERR_NOMEM;
}

static bool parse_bool(const char *v, bool *out)
{
  if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
    *out = true;
  else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
    *out = false;
  else
    return false;
  return true;
}

static int bad(const char *name, const char *value, const char *why)
{
  fprintf(stderr, "pgguard: invalid value for %s: \"%s\" (%s)\n", name, value, why);
  return PGG_ERR_CONFIG;
}

static int parse_seconds(const char *name, const char *v, double min, double max, double *out)
{
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  /* strtod takes "nan", "inf" and "0x1p4": a timer of NaN or infinite seconds
   * is no setting, and one past max would overflow its milliseconds. */
  char why[96];
  if (*end || end == v)
    return bad(name, v, "expected a number of seconds");
  if (errno || !isfinite(d))
    return bad(name, v, "expected a finite number of seconds");
  if (d < min && min == 0)
    return bad(name, v, "expected a number of seconds, not negative");
  if (d < min) {
    snprintf(why, sizeof why, "expected at least %g seconds", min);
    return bad(name, v, why);
  }
  if (d > max) {
    snprintf(why, sizeof why, "expected at most %.0f seconds", max);
    return bad(name, v, why);
  }
  *out = d;
  return PGG_OK;
}

/* PgBouncer's boolean settings read on/off; 1/0 and true/false are taken too. */
static int parse_onoff(const char *name, const char *v, bool *out)
{
  if (strcmp(v, "on") == 0 || strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
    *out = true;
  else if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
    *out = false;
  else
    return bad(name, v, "expected on or off");
  return PGG_OK;
}

static int parse_int(const char *name, const char *v, long min, long max, long *out)
{
  char *end;
  errno = 0;
  long l = strtol(v, &end, 10);
  if (errno || *end || end == v || l < min || l > max)
    return bad(name, v, "expected a whole number in range");
  *out = l;
  return PGG_OK;
}

/* ---- settings that need more than their kind's parser ---------------------- */

/* Where the admin and shadow URLs came from, for a message that names the
 * setting without repeating its value. */
static char admin_url_from[320], shadow_url_from[320];

static int set_log_level(pgg_options *o, const char *name, const char *v)
{
  int level = pgg_log_level_parse(v);
  if (level < 0)
    return bad(name, v, "expected debug, info, warn or error");
  /* Set at once, so that a reload's own lines already use it. */
  pgg_log_level = level;
  return PGG_OK;
}

static int set_client_tls(pgg_options *o, const char *name, const char *v)
{
  if (strcmp(v, "disable") == 0)
    o->client_tls = PGG_CLIENT_TLS_DISABLE;
  else if (strcmp(v, "allow") == 0)
    o->client_tls = PGG_CLIENT_TLS_ALLOW;
  else if (strcmp(v, "require") == 0)
    o->client_tls = PGG_CLIENT_TLS_REQUIRE;
  else
    return bad(name, v, "expected disable, allow or require");
  o->client_tls_set = true;
  return PGG_OK;
}

static int set_upstream_sslmode(pgg_options *o, const char *name, const char *v)
{
  if (pgg_sslmode_parse(v, &o->upstream_sslmode))
    return bad(name, v, "expected disable, allow, prefer, require, verify-ca or verify-full");
  return PGG_OK;
}

static int set_admin_url(pgg_options *o, const char *name, const char *v)
{
  snprintf(admin_url_from, sizeof admin_url_from, "%s", name);
  o->guard.admin_url = v;
  return PGG_OK;
}

static int set_admin_url_file(pgg_options *o, const char *name, const char *v)
{
  snprintf(admin_url_from, sizeof admin_url_from, "%s (%s)", name, v);
  return read_secret_file(name, v, &o->guard.admin_url);
}

static int set_shadow_url(pgg_options *o, const char *name, const char *v)
{
  snprintf(shadow_url_from, sizeof shadow_url_from, "%s", name);
  o->guard.shadow_url = v;
  return PGG_OK;
}

static int set_exclude(pgg_options *o, const char *name, const char *v)
{
  pgg_buf err;
  pgg_buf_init(&err);
  int rc = pgg_exclude_check(v, &err);
  if (rc) {
    pgg_buf_append_u8(&err, 0);
    rc = bad(name, v, err.len > 1 ? (const char *)err.data + strlen("--exclude: ") : "out of memory");
  }
  pgg_buf_free(&err);
  o->guard.exclude = v;
  return rc;
}

static int set_repair(pgg_options *o, const char *name, const char *v)
{
  if (strcmp(v, "on-error") == 0)
    o->guard.repair_mode = PGG_REPAIR_MODE_ON_ERROR;
  else if (strcmp(v, "eager") == 0)
    o->guard.repair_mode = PGG_REPAIR_MODE_EAGER;
  else if (strcmp(v, "off") == 0)
    o->guard.repair_mode = PGG_REPAIR_MODE_OFF;
  else
    return bad(name, v, "expected on-error, eager or off");
  return PGG_OK;
}

/* "missing,extra,conflicting" -> a mask of 1 << pgg_drift_state. */
static int set_fail_on(pgg_options *o, const char *name, const char *v)
{
  unsigned m = 0;
  const char *p = v;
  while (*p) {
    size_t n = strcspn(p, ",");
    int found = -1;
    for (int s = 0; s < PGG_DRIFT__COUNT; s++)
      if (strlen(pgg_drift_state_name((pgg_drift_state)s)) == n &&
          strncmp(p, pgg_drift_state_name((pgg_drift_state)s), n) == 0)
        found = s;
    if (found < 0)
      break;
    m |= 1u << found;
    p += n;
    if (*p == ',')
      p++;
  }
  if (*p || !m)
    return bad(name, v, "expected a comma-separated list of missing, extra, conflicting, unsupported, "
               "needs_migration, suspected_rename");
  o->fail_on = m;
  return PGG_OK;
}

/* ---- the table -------------------------------------------------------------- */

/*
 * One row per setting, in --help's order. A row marked RELOAD inside
 * pgg_options.guard reaches the guard through pgg_guardian_reload, which
 * applies it between jobs: only the fields its apply_pending copies may be
 * marked RELOAD there (schema, shadow URL, repair mode, the guard's
 * timings, --defer-to and --settle). The admin session keeps its own copy of the rest (URL, owner,
 * lock and statement timeouts), so those need a restart.
 */
static const opt_row rows[] = {
  {.name = "config", .letter = 'c', .env = "PGGUARD_CONFIG", .kind = ARG_CONFIG, .metavar = "FILE",
   FIELD(config_path), .reload = RESTART,
   .help = "an INI file: [pgguard] section, keys are the long\n"
           "option names (listen = 127.0.0.1:6432); SIGHUP rereads it"},
  {.name = "check-config", .kind = ARG_FLAG, FIELD(check_config), .shown = "off", .reload = CLI_ONLY,
   .help = "validate the settings and exit"},
  {.name = "help", .letter = 'h', .kind = ARG_HELP, .reload = CLI_ONLY, .help = "print this help"},
  {.name = "version", .kind = ARG_VERSION, .reload = CLI_ONLY, .help = "print the version"},

  {.help = "Proxy:"},
  {.name = "listen", .env = "PGGUARD_LISTEN", .kind = ARG_HOSTPORT, .metavar = "HOST:PORT",
   FIELD(listen), .value = "127.0.0.1:6432", .reload = RESTART,
   .pgbouncer = "listen_addr, listen_port", .help = "where applications connect"},
  {.name = "upstream", .env = "PGGUARD_UPSTREAM", .kind = ARG_HOSTPORT, .metavar = "HOST:PORT",
   FIELD(upstream), .value = "127.0.0.1:5432", .reload = RESTART,
   .pgbouncer = "[databases] host, port", .help = "the PostgreSQL server"},
  {.name = "dns-ttl", .env = "PGGUARD_DNS_TTL", .kind = ARG_SECONDS, .metavar = "SECONDS",
   FIELD(dns_ttl), .max = MAX_SECONDS, .value = "15", .reload = RELOAD, .pgbouncer = "dns_max_ttl",
   .help = "re-resolve the upstream host name after this many seconds;\n"
           "0: for every new server connection"},
  {.name = "admin-listen", .env = "PGGUARD_ADMIN_LISTEN", .kind = ARG_HOSTPORT, .metavar = "HOST:PORT",
   FIELD(admin), .value = "127.0.0.1:9930", .reload = RESTART,
   .help = "/metrics /healthz /readyz /drift; port 0: off"},
  {.name = "max-message-size", .env = "PGGUARD_MAX_MESSAGE_SIZE", .kind = ARG_BYTES, .metavar = "BYTES",
   FIELD(max_message), .min = 64, .max = 1L << 30, .value = "1073741824", .reload = RELOAD,
   .pgbouncer = "max_packet_size", .help = "largest protocol message accepted"},
  {.name = "shutdown-timeout", .env = "PGGUARD_SHUTDOWN_TIMEOUT", .kind = ARG_SECONDS, .metavar = "SECONDS",
   FIELD(shutdown_timeout), .max = MAX_SECONDS, .value = "30", .reload = RELOAD,
   .help = "grace period on SIGTERM/SIGINT"},
  {.name = "client-login-timeout", .env = "PGGUARD_CLIENT_LOGIN_TIMEOUT", .kind = ARG_SECONDS,
   .metavar = "SECONDS", FIELD(client_login_timeout), .max = MAX_SECONDS, .value = "60",
   .reload = RELOAD, .pgbouncer = "client_login_timeout",
   .help = "close a client that has not finished start-up; 0: never"},
  {.name = "max-client-conn", .env = "PGGUARD_MAX_CLIENT_CONN", .kind = ARG_INT, .metavar = "N",
   FIELD(max_client_conn), .max = 1000000, .value = "100", .reload = RELOAD,
   .pgbouncer = "max_client_conn", .help = "refuse more clients with FATAL 53300; 0: no limit"},
  {.name = "server-connect-timeout", .env = "PGGUARD_SERVER_CONNECT_TIMEOUT", .kind = ARG_SECONDS,
   .metavar = "SECONDS", FIELD(server_connect_timeout), .max = MAX_SECONDS, .value = "15",
   .reload = RELOAD, .pgbouncer = "server_connect_timeout",
   .help = "give up connecting to PostgreSQL (FATAL 08006); bounds each\n"
           "address of the upstream's name, as libpq's connect_timeout; 0: never"},
  {.name = "tcp-keepalive", .env = "PGGUARD_TCP_KEEPALIVE", .kind = ARG_ONOFF, .metavar = "on|off",
   FIELD(tcp_keepalive), .value = "on", .reload = RELOAD, .pgbouncer = "tcp_keepalive",
   .help = "TCP keepalive on both legs"},
  {.name = "tcp-keepidle", .env = "PGGUARD_TCP_KEEPIDLE", .kind = ARG_INT, .metavar = "SECONDS",
   FIELD(tcp_keepidle), .min = 1, .max = 86400, .value = "45", .reload = RELOAD,
   .pgbouncer = "tcp_keepidle", .help = "idle time before the first probe"},
  {.name = "tcp-keepintvl", .env = "PGGUARD_TCP_KEEPINTVL", .kind = ARG_INT, .metavar = "SECONDS",
   FIELD(tcp_keepintvl), .min = 1, .max = 86400, .value = "15", .reload = RELOAD,
   .pgbouncer = "tcp_keepintvl", .help = "between probes"},
  {.name = "tcp-keepcnt", .env = "PGGUARD_TCP_KEEPCNT", .kind = ARG_INT, .metavar = "N",
   FIELD(tcp_keepcnt), .min = 1, .max = 1000, .value = "4", .reload = RELOAD,
   .pgbouncer = "tcp_keepcnt", .help = "unanswered probes before the connection is dead"},
  {.name = "log-connections", .env = "PGGUARD_LOG_CONNECTIONS", .kind = ARG_ONOFF, .metavar = "on|off",
   FIELD(log_connections), .value = "on", .reload = RELOAD, .pgbouncer = "log_connections",
   .help = "log each authorized client: address, user, database, TLS"},
  {.name = "log-disconnections", .env = "PGGUARD_LOG_DISCONNECTIONS", .kind = ARG_ONOFF,
   .metavar = "on|off", FIELD(log_disconnections), .value = "on", .reload = RELOAD,
   .pgbouncer = "log_disconnections", .help = "log each closed client: duration, bytes, FATAL SQLSTATE"},
  /* No field: the level is the logger's own, set while parsing (and reset by a failed reload). */
  {.name = "log-level", .env = "PGGUARD_LOG_LEVEL", .kind = ARG_CHOICE, .metavar = "LEVEL",
   .set = set_log_level, .value = "info", .reload = RELOAD, .pgbouncer = "verbose",
   .help = "debug, info, warn, error"},

  {.help = "TLS:"},
  {.name = "tls-cert", .env = "PGGUARD_TLS_CERT", .kind = ARG_TEXT, .metavar = "FILE", FIELD(tls_cert),
   .reload = RELOAD, .pgbouncer = "client_tls_cert_file",
   .help = "certificate chain (PEM) offered to applications"},
  {.name = "tls-key", .env = "PGGUARD_TLS_KEY", .kind = ARG_TEXT, .metavar = "FILE", FIELD(tls_key),
   .reload = RELOAD, .pgbouncer = "client_tls_key_file", .help = "its private key (PEM)"},
  {.name = "client-tls", .env = "PGGUARD_CLIENT_TLS", .kind = ARG_CHOICE, .metavar = "MODE",
   FIELD(client_tls), .set = set_client_tls, .shown = "allow with --tls-cert, else disable",
   .reload = RELOAD, .pgbouncer = "client_tls_sslmode", .help = "disable, allow, require"},
  {.name = "upstream-sslmode", .env = "PGGUARD_UPSTREAM_SSLMODE", .kind = ARG_CHOICE, .metavar = "MODE",
   FIELD(upstream_sslmode), .set = set_upstream_sslmode, .value = "prefer", .reload = RELOAD,
   .pgbouncer = "server_tls_sslmode",
   .help = "toward PostgreSQL, as libpq: disable, allow, prefer,\n"
           "require, verify-ca, verify-full"},
  {.name = "upstream-ca", .env = "PGGUARD_UPSTREAM_CA", .kind = ARG_TEXT, .metavar = "FILE",
   FIELD(upstream_ca), .reload = RELOAD, .pgbouncer = "server_tls_ca_file",
   .help = "CA certificates for verify-ca / verify-full"},

  {.help = "Schema guard (off unless --schema is given). It acts only for sessions on the admin URL's\n"
           "database, and only when --admin-url and --upstream reach the same PostgreSQL server\n"
           "(same system_identifier); otherwise it refuses to guard and says so in the log:"},
  {.name = "schema", .env = "PGGUARD_SCHEMA", .kind = ARG_TEXT, .metavar = "PATH",
   FIELD(guard.schema_path), .reload = RELOAD,
   .help = "desired schema: a .sql file or a folder of them;\n"
           "turning the guard on or off needs a restart"},
  {.name = "admin-url", .env = "PGGUARD_ADMIN_URL", .kind = ARG_TEXT, .metavar = "URL",
   FIELD(guard.admin_url), .set = set_admin_url, .reload = RESTART,
   .help = "libpq URL of a role that may create objects in the database"},
  /* No field of its own: it sets admin_url, whose row says when that changed. */
  {.name = "admin-url-file", .env = "PGGUARD_ADMIN_URL_FILE", .kind = ARG_TEXT, .metavar = "FILE",
   .set = set_admin_url_file, .reload = RESTART,
   .help = "read the admin URL from a file (keeps the password off ps)"},
  {.name = "shadow-url", .env = "PGGUARD_SHADOW_URL", .kind = ARG_TEXT, .metavar = "URL",
   FIELD(guard.shadow_url), .set = set_shadow_url, .shown = "one pgguard creates", .reload = RELOAD,
   .help = "database to load the schema into"},
  {.name = "shadow-keep", .env = "PGGUARD_SHADOW_KEEP", .kind = ARG_INT, .metavar = "N",
   FIELD(guard.shadow_keep), .min = 0, .max = 1000, .value = "1", .reload = RELOAD,
   .help = "older pgguard_shadow_* databases kept besides the current one\n"
           "(and those another pgguard uses); older ones are dropped"},
  {.name = "object-owner", .env = "PGGUARD_OBJECT_OWNER", .kind = ARG_TEXT, .metavar = "ROLE",
   FIELD(guard.object_owner), .shown = "the database owner", .reload = RELOAD,
   .help = "owner of repaired objects"},
  {.name = "exclude", .env = "PGGUARD_EXCLUDE", .kind = ARG_TEXT, .metavar = "PATTERNS",
   FIELD(guard.exclude), .set = set_exclude, .shown = "migration tools' tables", .reload = RELOAD,
   .help = "tables or schemas never compared, added to the migration tools'\n"
           "bookkeeping tables: NAME or SCHEMA.NAME globs, comma-separated\n"
           "(e.g. audit_*,scratch.*)"},
  {.name = "repair", .env = "PGGUARD_REPAIR", .kind = ARG_CHOICE, .metavar = "MODE",
   FIELD(guard.repair_mode), .set = set_repair, .value = "on-error", .reload = RELOAD,
   .help = "on-error, eager, off"},
  {.name = "repair-wait", .env = "PGGUARD_REPAIR_WAIT", .kind = ARG_SECONDS, .metavar = "SECONDS",
   FIELD(guard.repair_wait), .max = MAX_SECONDS, .value = "5", .reload = RELOAD,
   .help = "how long a failed request waits for its repair"},
  {.name = "drift-interval", .env = "PGGUARD_DRIFT_INTERVAL", .kind = ARG_SECONDS, .metavar = "SECONDS",
   FIELD(guard.drift_interval), .min = 0.1, .max = MAX_SECONDS, .value = "30", .reload = RELOAD,
   .help = "how often the drift is checked; also the longest wait\n"
           "between retries while the database cannot be reached"},
  {.name = "repair-cooldown", .env = "PGGUARD_REPAIR_COOLDOWN", .kind = ARG_SECONDS, .metavar = "SECONDS",
   FIELD(guard.cooldown), .max = MAX_SECONDS, .value = "30", .reload = RELOAD,
   .help = "pause after a failed repair"},
  {.name = "defer-to", .env = "PGGUARD_DEFER_TO", .kind = ARG_TEXT, .metavar = "NAMES",
   FIELD(guard.defer_to), .value = "pg_restore", .reload = RELOAD,
   .help = "application_names (comma-separated) of restore and migration\n"
           "tools: while one is connected to the guarded database, or\n"
           "another session runs DDL there (holds ACCESS EXCLUSIVE on a\n"
           "relation it creates, alters or drops), no repair starts\n"
           "and guarded errors pass through"},
  {.name = "settle", .env = "PGGUARD_SETTLE", .kind = ARG_SECONDS, .metavar = "SECONDS",
   FIELD(guard.settle), .max = MAX_SECONDS, .value = "5", .reload = RELOAD,
   .help = "an eager repair waits until the catalog has been unchanged\n"
           "this long (a repair for a failed request does not)"},
  {.name = "lock-timeout", .env = "PGGUARD_LOCK_TIMEOUT", .kind = ARG_INT, .metavar = "MS",
   FIELD(guard.lock_timeout_ms), .min = 1, .max = 3600000, .value = "2000", .reload = RELOAD,
   .help = "lock_timeout of the repair"},
  {.name = "statement-timeout", .env = "PGGUARD_STATEMENT_TIMEOUT", .kind = ARG_INT, .metavar = "MS",
   FIELD(guard.statement_timeout_ms), .min = 1, .max = 86400000, .value = "30000", .reload = RELOAD,
   .help = "statement_timeout of the repair"},
  {.name = "strict", .env = "PGGUARD_STRICT", .kind = ARG_FLAG, FIELD(guard.strict), .shown = "off",
   .reload = RESTART, .help = "refuse to start if the schema does not load"},
  {.name = "allow-twin", .env = "PGGUARD_ALLOW_TWIN", .kind = ARG_FLAG, FIELD(guard.allow_twin),
   .shown = "off", .reload = RESTART,
   .help = "create a missing column or table that looks like an extra one\n"
           "renamed (suspected_rename) beside it anyway, an empty twin"},
  {.name = "ready-requires-guard", .env = "PGGUARD_READY_REQUIRES_GUARD", .kind = ARG_FLAG,
   FIELD(ready_requires_guard), .shown = "off", .reload = RELOAD,
   .help = "/readyz also waits for the desired schema and a drift check;\n"
           "without it guard trouble never makes pgguard unready"},
  {.name = "json", .kind = ARG_FLAG, FIELD(json), .shown = "off", .reload = CLI_ONLY,
   .help = "check, plan: print JSON"},
  {.name = "fail-on", .kind = ARG_CHOICE, .metavar = "STATES", FIELD(fail_on), .set = set_fail_on,
   .value = "missing", .reload = CLI_ONLY,
   .help = "check: the drift states that make it exit 1, comma-separated\n"
           "from missing, extra, conflicting, unsupported, needs_migration,\n"
           "suspected_rename"},
};

#define NROWS (sizeof rows / sizeof rows[0])

/* ---- --help ----------------------------------------------------------------- */

#define HELP_COL 31

static void print_indented(FILE *f, const char *text)
{
  for (const char *p = text; *p; p++) {
    fputc(*p, f);
    if (*p == '\n')
      fprintf(f, "%*s", HELP_COL, "");
  }
}

/* The last line of each option: its default, whether SIGHUP applies it, its
 * variable. The README's table is checked against these lines. */
static void print_row(FILE *f, const opt_row *r)
{
  int n = r->letter ? fprintf(f, "  -%c, --%s", r->letter, r->name) : fprintf(f, "  --%s", r->name);
  if (r->metavar)
    n += fprintf(f, " %s", r->metavar);
  fprintf(f, "%*s", n <= HELP_COL - 2 ? HELP_COL - n : 2, "");
  print_indented(f, r->help);
  fprintf(f, "\n%*s(", HELP_COL, "");
  if (r->kind != ARG_HELP && r->kind != ARG_VERSION)
    fprintf(f, "default %s; ", r->shown ? r->shown : r->value ? r->value : "none");
  if (r->reload == CLI_ONLY)
    fputs("command line only", f);
  else
    fputs(r->reload == RELOAD ? "reload" : "restart", f);
  if (r->env)
    fprintf(f, "; %s", r->env);
  fputs(")\n", f);
}

void pgg_options_usage(FILE *f)
{
  fputs("Usage: pgguard [run] [OPTIONS]     proxy PostgreSQL, guarding the schema\n"
        "       pgguard --check-config [OPTIONS]  validate the settings and exit\n"
        "       pgguard check [OPTIONS]     print the drift; exit 1 if objects are missing\n"
        "       pgguard plan [OPTIONS]      print the additive repair plan, run nothing\n"
        "\n", f);
  for (size_t i = 0; i < NROWS; i++) {
    if (rows[i].name)
      print_row(f, &rows[i]);
    else
      fprintf(f, "\n%s\n", rows[i].help);
  }
  fputs("\n"
        "Each option with a PGGUARD_ variable can also be set there, and each one not \"command\n"
        "line only\" in the config file; a flag wins over the environment, which wins over the\n"
        "file. SIGHUP rereads both: \"reload\" settings apply to new connections, \"restart\" ones\n"
        "keep their value and the log says so.\n",
        f);
}

/* ---- one setting, from wherever it came ------------------------------------- */

static int set_value(pgg_options *o, const opt_row *r, const char *name, const char *v)
{
  if (r->set)
    return r->set(o, name, v);
  void *field = (char *)o + r->off;
  long l;
  int err;
  switch (r->kind) {
  case ARG_FLAG:
    assert(r->size == sizeof(bool));
    return parse_bool(v, field) ? PGG_OK : bad(name, v, "expected true or false");
  case ARG_ONOFF:
    assert(r->size == sizeof(bool));
    return parse_onoff(name, v, field);
  case ARG_HOSTPORT:
    assert(r->size == sizeof(pgg_hostport));
    return pgg_hostport_parse(v, field) ? bad(name, v, "expected HOST:PORT") : PGG_OK;
  case ARG_SECONDS:
    assert(r->size == sizeof(double));
    return parse_seconds(name, v, r->min, r->max, field);
  case ARG_INT:
    assert(r->size == sizeof(int));
    if ((err = parse_int(name, v, (long)r->min, (long)r->max, &l)))
      return err;
    *(int *)field = (int)l;
    return PGG_OK;
  case ARG_BYTES:
    assert(r->size == sizeof(size_t));
    if ((err = parse_int(name, v, (long)r->min, (long)r->max, &l)))
      return err;
    *(size_t *)field = (size_t)l;
    return PGG_OK;
  case ARG_TEXT:
    assert(r->size == sizeof(const char *));
    *(const char **)field = v;
    return PGG_OK;
  case ARG_CHOICE:
  case ARG_HELP:
  case ARG_VERSION:
  case ARG_CONFIG:
    break;
  }
  /* A choice without its set function, or an action given a value: a wrong row. */
  assert(!"no parser for this row");
  return PGG_ERR_CONFIG;
}

static const opt_row *find_row(const char *name)
{
  for (size_t i = 0; i < NROWS; i++)
    if (rows[i].name && strcmp(rows[i].name, name) == 0)
      return &rows[i];
  return NULL;
}

/* ---- the config file -------------------------------------------------------- */

typedef struct {
  pgg_options *o;
  const char *path;
  FILE *f;
  int line;
  int err;
} ini_ctx;

/* fgets, counting lines, so that an error can name the line it is on. */
static char *ini_read_line(char *str, int num, void *stream)
{
  ini_ctx *ic = stream;
  char *r = fgets(str, num, ic->f);
  if (r)
    ic->line++;
  return r;
}

static int ini_on_key(void *user, const char *section, const char *key, const char *value)
{
  ini_ctx *ic = user;
  char name[300];
  if (ic->err)
    return 1;
  if (*section && strcmp(section, "pgguard") != 0) {
    fprintf(stderr, "pgguard: %s line %d: unknown section [%s] (expected [pgguard])\n", ic->path,
            ic->line, section);
    ic->err = PGG_ERR_CONFIG;
    return 0;
  }
  char flag[64];
  size_t i;
  for (i = 0; key[i] && i < sizeof(flag) - 1; i++)
    flag[i] = key[i] == '_' ? '-' : key[i];
  flag[i] = 0;
  const opt_row *r = find_row(flag);
  if (!r) {
    fprintf(stderr, "pgguard: %s line %d: unknown key \"%s\"\n", ic->path, ic->line, key);
    ic->err = PGG_ERR_CONFIG;
    return 0;
  }
  if (r->reload == CLI_ONLY || r->kind == ARG_CONFIG) {
    fprintf(stderr, "pgguard: %s line %d: \"%s\" is a command-line option, not a setting of the "
            "config file\n", ic->path, ic->line, key);
    ic->err = PGG_ERR_CONFIG;
    return 0;
  }
  snprintf(name, sizeof(name), "\"%s\" (%s line %d)", key, ic->path, ic->line);
  const char *v = keep(value);
  if (!v || set_value(ic->o, r, name, v)) {
    ic->err = PGG_ERR_CONFIG;
    return 0;
  }
  return 1;
}

static int read_config_file(pgg_options *o, const char *path)
{
  ini_ctx ic = {.o = o, .path = path};
  ic.f = fopen(path, "r");
  if (!ic.f) {
    fprintf(stderr, "pgguard: cannot read config file \"%s\": %s\n", path, strerror(errno));
    return PGG_ERR_CONFIG;
  }
  int rc = ini_parse_stream(ini_read_line, &ic, ini_on_key, &ic);
  fclose(ic.f);
  if (ic.err)
    return ic.err;
  if (rc) {
    fprintf(stderr, "pgguard: %s line %d: not an INI line (expected key = value or [section])\n",
            path, rc);
    return PGG_ERR_CONFIG;
  }
  return PGG_OK;
}

/*
 * A URL libpq cannot parse would fail every connection the guard makes, and
 * libpq's messages about it may quote the password: refuse it here, once,
 * naming the setting and never its value.
 */
static int check_url(const char *url, const char *from, const char *option)
{
  if (!url)
    return PGG_OK;
  /* Registered first: whatever is printed from now on masks it. */
  pgg_secrets_register_conninfo(url);
  pgg_buf err;
  pgg_buf_init(&err);
  int rc = pgg_conninfo_check(url, &err);
  if (rc) {
    pgg_buf_append_u8(&err, 0);
    char msg[600];
    pgg_redact(pgg_secrets_global(), (const char *)err.data, msg, sizeof msg);
    fprintf(stderr, "pgguard: invalid %s: %s\n", *from ? from : option, msg);
  }
  pgg_buf_free(&err);
  return rc;
}

/* ---- the command line ------------------------------------------------------- */

static struct option longopts[NROWS + 1];
static char shortopts[2 * NROWS + 2];

/* getopt's view of the table: each long option returns 256 + its row. */
static void build_getopt(void)
{
  size_t s = 0, n = 0;
  shortopts[s++] = ':';
  for (size_t i = 0; i < NROWS; i++) {
    const opt_row *r = &rows[i];
    if (!r->name)
      continue;
    bool arg = r->metavar != NULL;
    longopts[n++] = (struct option){r->name, arg ? required_argument : no_argument, NULL, 256 + (int)i};
    if (r->letter) {
      shortopts[s++] = r->letter;
      if (arg)
        shortopts[s++] = ':';
    }
  }
  longopts[n] = (struct option){NULL, 0, NULL, 0};
  shortopts[s] = 0;
}

/* The row getopt_long answered for, or NULL for '?' and ':'. */
static const opt_row *getopt_row(int opt)
{
  if (opt >= 256 && opt < 256 + (int)NROWS)
    return &rows[opt - 256];
  for (size_t i = 0; i < NROWS; i++)
    if (rows[i].name && rows[i].letter && rows[i].letter == opt)
      return &rows[i];
  return NULL;
}

static int set_defaults(pgg_options *o)
{
  memset(o, 0, sizeof(*o));
  admin_url_from[0] = shadow_url_from[0] = 0;
  o->command = "run";
  /* The guard's own defaults first, for any field it has that is no option. */
  pgg_guard_config_defaults(&o->guard);
  for (size_t i = 0; i < NROWS; i++) {
    const opt_row *r = &rows[i];
    if (!r->name || !r->value)
      continue;
    int rc = set_value(o, r, r->name, r->value);
    assert(rc == PGG_OK);
    if (rc)
      return rc;
  }
  return PGG_OK;
}

int pgg_options_parse(pgg_options *o, int argc, char **argv)
{
  if (set_defaults(o))
    return PGG_ERR_CONFIG;
  build_getopt();

  int first = 1;
  if (argc > 1 && argv[1][0] != '-') {
    if (strcmp(argv[1], "run") && strcmp(argv[1], "check") && strcmp(argv[1], "plan")) {
      fprintf(stderr, "pgguard: unknown command \"%s\" (expected run, check or plan; see --help)\n", argv[1]);
      return PGG_ERR_CONFIG;
    }
    o->command = argv[1];
    first = 2;
  }

  /* Precedence: flag > environment > config file > default. */
  o->config_path = getenv("PGGUARD_CONFIG");
  optind = first;
  opterr = 0;
  int opt;
  while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
    const opt_row *r = getopt_row(opt);
    if (r && r->kind == ARG_CONFIG)
      o->config_path = optarg;
  }
  if (o->config_path && *o->config_path && read_config_file(o, o->config_path))
    return PGG_ERR_CONFIG;

  for (size_t i = 0; i < NROWS; i++) {
    const opt_row *r = &rows[i];
    if (!r->env || r->kind == ARG_CONFIG)
      continue;
    const char *v = getenv(r->env);
    if (v && *v && set_value(o, r, r->env, v))
      return PGG_ERR_CONFIG;
  }

  optind = first;
  opterr = 0;
  while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
    if (opt == ':') {
      fprintf(stderr, "pgguard: option \"%s\" needs a value (see pgguard --help)\n", argv[optind - 1]);
      return PGG_ERR_CONFIG;
    }
    const opt_row *r = getopt_row(opt);
    if (!r) {
      fprintf(stderr, "pgguard: unknown option \"%s\" (see pgguard --help)\n", argv[optind - 1]);
      return PGG_ERR_CONFIG;
    }
    if (r->kind == ARG_HELP || r->kind == ARG_VERSION) {
      o->command = r->kind == ARG_HELP ? "help" : "version";
      return PGG_OK;
    }
    if (r->kind == ARG_CONFIG)
      continue;
    if (r->kind == ARG_FLAG) {
      assert(r->size == sizeof(bool));
      *(bool *)((char *)o + r->off) = true;
      continue;
    }
    char name[64];
    snprintf(name, sizeof(name), "--%s", r->name);
    if (set_value(o, r, name, optarg))
      return PGG_ERR_CONFIG;
  }
  if (optind < argc) {
    fprintf(stderr, "pgguard: unexpected argument \"%s\" (see pgguard --help)\n", argv[optind]);
    return PGG_ERR_CONFIG;
  }
  bool needs_schema = strcmp(o->command, "run") != 0;
  if (needs_schema && !o->guard.schema_path) {
    fprintf(stderr, "pgguard %s: --schema is required\n", o->command);
    return PGG_ERR_CONFIG;
  }
  if (o->guard.schema_path && !o->guard.admin_url) {
    fprintf(stderr, "pgguard: --schema needs --admin-url (or PGGUARD_ADMIN_URL): the role pgguard uses to read and repair the schema\n");
    return PGG_ERR_CONFIG;
  }
  if (check_url(o->guard.admin_url, admin_url_from, "--admin-url") ||
      check_url(o->guard.shadow_url, shadow_url_from, "--shadow-url"))
    return PGG_ERR_CONFIG;
  if (!o->tls_cert != !o->tls_key) {
    fprintf(stderr, "pgguard: --tls-cert and --tls-key go together\n");
    return PGG_ERR_CONFIG;
  }
  if (!o->client_tls_set)
    o->client_tls = o->tls_cert ? PGG_CLIENT_TLS_ALLOW : PGG_CLIENT_TLS_DISABLE;
  if (o->client_tls != PGG_CLIENT_TLS_DISABLE && !o->tls_cert) {
    fprintf(stderr, "pgguard: --client-tls=%s needs --tls-cert and --tls-key\n",
            o->client_tls == PGG_CLIENT_TLS_ALLOW ? "allow" : "require");
    return PGG_ERR_CONFIG;
  }
  if (strcmp(o->command, "run") == 0 && o->listen.port == 0) {
    fprintf(stderr, "pgguard: --listen needs a port other than 0\n");
    return PGG_ERR_CONFIG;
  }
  return PGG_OK;
}

/* ---- SIGHUP ----------------------------------------------------------------- */

static bool same_value(const opt_row *r, const void *a, const void *b)
{
  if (r->kind == ARG_TEXT) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return x == y || (x && y && strcmp(x, y) == 0);
  }
  if (r->kind == ARG_HOSTPORT) {
    const pgg_hostport *x = a, *y = b;
    return x->port == y->port && strcmp(x->host, y->host) == 0;
  }
  return memcmp(a, b, r->size) == 0;
}

void pgg_options_reload(pgg_options *cur, const pgg_options *next, pgg_guard_config *guard)
{
  const size_t g0 = offsetof(pgg_options, guard), g1 = g0 + sizeof(pgg_guard_config);
  *guard = cur->guard;
  for (size_t i = 0; i < NROWS; i++) {
    const opt_row *r = &rows[i];
    if (!r->name || !r->size || r->reload == CLI_ONLY)
      continue;
    /* The guard's settings go to *guard: jobs on the thread pool read cur->guard. */
    bool in_guard = r->off >= g0 && r->off < g1;
    assert(!in_guard || r->off + r->size <= g1);
    char *dst = in_guard ? (char *)guard + (r->off - g0) : (char *)cur + r->off;
    const char *src = (const char *)next + r->off;
    if (same_value(r, dst, src))
      continue;
    if (r->reload == RELOAD) {
      memcpy(dst, src, r->size);
      pgg_log(PGG_LOG_INFO, "reload_applied", "option=%s", r->name);
    } else {
      pgg_log(PGG_LOG_WARN, "reload_needs_restart", "option=%s reason=%s", r->name,
              pgg_logq("changed in the configuration; keeping the old value until a restart"));
    }
  }
}
