/*
 * options.c — command line and environment: every setting from a flag or
 * its PGGUARD_* variable (flag wins), validated before anything starts.
 */
#include "proxy.h"

#include <errno.h>
#include <math.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>
#include <ctype.h>

#include "log.h"
#include "redact.h"

enum {
  OPT_LISTEN = 256, OPT_UPSTREAM, OPT_ADMIN_LISTEN, OPT_MAX_MESSAGE, OPT_SHUTDOWN_TIMEOUT,
  OPT_CLIENT_LOGIN_TIMEOUT, OPT_MAX_CLIENT_CONN, OPT_SERVER_CONNECT_TIMEOUT, OPT_TCP_KEEPALIVE,
  OPT_TCP_KEEPIDLE, OPT_TCP_KEEPINTVL, OPT_TCP_KEEPCNT, OPT_LOG_CONNECTIONS, OPT_LOG_DISCONNECTIONS,
  OPT_LOG_LEVEL, OPT_SCHEMA, OPT_ADMIN_URL, OPT_SHADOW_URL, OPT_OBJECT_OWNER, OPT_REPAIR,
  OPT_REPAIR_WAIT, OPT_DRIFT_INTERVAL, OPT_REPAIR_COOLDOWN, OPT_LOCK_TIMEOUT,
  OPT_STATEMENT_TIMEOUT, OPT_STRICT, OPT_READY_REQUIRES_GUARD, OPT_JSON, OPT_FAIL_ON, OPT_HELP, OPT_VERSION,
  OPT_TLS_CERT, OPT_TLS_KEY, OPT_CLIENT_TLS, OPT_UPSTREAM_SSLMODE, OPT_UPSTREAM_CA,
  OPT_CONFIG, OPT_ADMIN_URL_FILE, OPT_CHECK_CONFIG,
};

static const struct option longopts[] = {
  {"listen", required_argument, NULL, OPT_LISTEN},
  {"upstream", required_argument, NULL, OPT_UPSTREAM},
  {"admin-listen", required_argument, NULL, OPT_ADMIN_LISTEN},
  {"max-message-size", required_argument, NULL, OPT_MAX_MESSAGE},
  {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT},
  {"client-login-timeout", required_argument, NULL, OPT_CLIENT_LOGIN_TIMEOUT},
  {"max-client-conn", required_argument, NULL, OPT_MAX_CLIENT_CONN},
  {"server-connect-timeout", required_argument, NULL, OPT_SERVER_CONNECT_TIMEOUT},
  {"tcp-keepalive", required_argument, NULL, OPT_TCP_KEEPALIVE},
  {"tcp-keepidle", required_argument, NULL, OPT_TCP_KEEPIDLE},
  {"tcp-keepintvl", required_argument, NULL, OPT_TCP_KEEPINTVL},
  {"tcp-keepcnt", required_argument, NULL, OPT_TCP_KEEPCNT},
  {"log-connections", required_argument, NULL, OPT_LOG_CONNECTIONS},
  {"log-disconnections", required_argument, NULL, OPT_LOG_DISCONNECTIONS},
  {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
  {"schema", required_argument, NULL, OPT_SCHEMA},
  {"admin-url", required_argument, NULL, OPT_ADMIN_URL},
  {"shadow-url", required_argument, NULL, OPT_SHADOW_URL},
  {"object-owner", required_argument, NULL, OPT_OBJECT_OWNER},
  {"repair", required_argument, NULL, OPT_REPAIR},
  {"repair-wait", required_argument, NULL, OPT_REPAIR_WAIT},
  {"drift-interval", required_argument, NULL, OPT_DRIFT_INTERVAL},
  {"repair-cooldown", required_argument, NULL, OPT_REPAIR_COOLDOWN},
  {"lock-timeout", required_argument, NULL, OPT_LOCK_TIMEOUT},
  {"statement-timeout", required_argument, NULL, OPT_STATEMENT_TIMEOUT},
  {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
  {"tls-key", required_argument, NULL, OPT_TLS_KEY},
  {"client-tls", required_argument, NULL, OPT_CLIENT_TLS},
  {"upstream-sslmode", required_argument, NULL, OPT_UPSTREAM_SSLMODE},
  {"upstream-ca", required_argument, NULL, OPT_UPSTREAM_CA},
  {"config", required_argument, NULL, OPT_CONFIG},
  {"admin-url-file", required_argument, NULL, OPT_ADMIN_URL_FILE},
  {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
  {"strict", no_argument, NULL, OPT_STRICT},
  {"ready-requires-guard", no_argument, NULL, OPT_READY_REQUIRES_GUARD},
  {"json", no_argument, NULL, OPT_JSON},
  {"fail-on", required_argument, NULL, OPT_FAIL_ON},
  {"help", no_argument, NULL, OPT_HELP},
  {"version", no_argument, NULL, OPT_VERSION},
  {NULL, 0, NULL, 0},
};

/* The environment variable each flag may also come from. */
static const struct { int opt; const char *env; } envs[] = {
  {OPT_LISTEN, "PGGUARD_LISTEN"},
  {OPT_UPSTREAM, "PGGUARD_UPSTREAM"},
  {OPT_ADMIN_LISTEN, "PGGUARD_ADMIN_LISTEN"},
  {OPT_MAX_MESSAGE, "PGGUARD_MAX_MESSAGE_SIZE"},
  {OPT_SHUTDOWN_TIMEOUT, "PGGUARD_SHUTDOWN_TIMEOUT"},
  {OPT_CLIENT_LOGIN_TIMEOUT, "PGGUARD_CLIENT_LOGIN_TIMEOUT"},
  {OPT_MAX_CLIENT_CONN, "PGGUARD_MAX_CLIENT_CONN"},
  {OPT_SERVER_CONNECT_TIMEOUT, "PGGUARD_SERVER_CONNECT_TIMEOUT"},
  {OPT_TCP_KEEPALIVE, "PGGUARD_TCP_KEEPALIVE"},
  {OPT_TCP_KEEPIDLE, "PGGUARD_TCP_KEEPIDLE"},
  {OPT_TCP_KEEPINTVL, "PGGUARD_TCP_KEEPINTVL"},
  {OPT_TCP_KEEPCNT, "PGGUARD_TCP_KEEPCNT"},
  {OPT_LOG_CONNECTIONS, "PGGUARD_LOG_CONNECTIONS"},
  {OPT_LOG_DISCONNECTIONS, "PGGUARD_LOG_DISCONNECTIONS"},
  {OPT_LOG_LEVEL, "PGGUARD_LOG_LEVEL"},
  {OPT_SCHEMA, "PGGUARD_SCHEMA"},
  {OPT_ADMIN_URL, "PGGUARD_ADMIN_URL"},
  {OPT_SHADOW_URL, "PGGUARD_SHADOW_URL"},
  {OPT_OBJECT_OWNER, "PGGUARD_OBJECT_OWNER"},
  {OPT_REPAIR, "PGGUARD_REPAIR"},
  {OPT_REPAIR_WAIT, "PGGUARD_REPAIR_WAIT"},
  {OPT_DRIFT_INTERVAL, "PGGUARD_DRIFT_INTERVAL"},
  {OPT_REPAIR_COOLDOWN, "PGGUARD_REPAIR_COOLDOWN"},
  {OPT_LOCK_TIMEOUT, "PGGUARD_LOCK_TIMEOUT"},
  {OPT_STATEMENT_TIMEOUT, "PGGUARD_STATEMENT_TIMEOUT"},
  {OPT_ADMIN_URL_FILE, "PGGUARD_ADMIN_URL_FILE"},
  {OPT_STRICT, "PGGUARD_STRICT"},
  {OPT_READY_REQUIRES_GUARD, "PGGUARD_READY_REQUIRES_GUARD"},
  {OPT_TLS_CERT, "PGGUARD_TLS_CERT"},
  {OPT_TLS_KEY, "PGGUARD_TLS_KEY"},
  {OPT_CLIENT_TLS, "PGGUARD_CLIENT_TLS"},
  {OPT_UPSTREAM_SSLMODE, "PGGUARD_UPSTREAM_SSLMODE"},
  {OPT_UPSTREAM_CA, "PGGUARD_UPSTREAM_CA"},
};

void pgg_options_usage(FILE *f)
{
  fputs(
    "Usage: pgguard [run] [OPTIONS]     proxy PostgreSQL, guarding the schema\n"
    "       pgguard --check-config [OPTIONS]  validate the settings and exit\n"
    "       pgguard check [OPTIONS]     print the drift; exit 1 if objects are missing\n"
    "       pgguard plan [OPTIONS]      print the additive repair plan, run nothing\n"
    "\n"
    "  -c, --config FILE            an INI file: [pgguard] section, keys are the long\n"
    "                               option names (listen = 127.0.0.1:6432); SIGHUP rereads it\n"
    "\n"
    "Proxy:\n"
    "  --listen HOST:PORT           where applications connect (127.0.0.1:6432)\n"
    "  --upstream HOST:PORT         the PostgreSQL server (127.0.0.1:5432)\n"
    "  --admin-listen HOST:PORT     /metrics /healthz /readyz /drift (127.0.0.1:9930; port 0: off)\n"
    "  --max-message-size BYTES     largest protocol message accepted (1073741824)\n"
    "  --shutdown-timeout SECONDS   grace period on SIGTERM/SIGINT (30)\n"
    "  --client-login-timeout SECONDS  close a client that has not finished start-up (60;\n"
    "                               PgBouncer's client_login_timeout)\n"
    "  --max-client-conn N          refuse more clients with FATAL 53300 (100; 0: no limit)\n"
    "  --server-connect-timeout SECONDS  give up connecting to PostgreSQL (15; FATAL 08006)\n"
    "  --tcp-keepalive on|off       TCP keepalive on both legs (on)\n"
    "  --tcp-keepidle SECONDS       idle time before the first probe (45)\n"
    "  --tcp-keepintvl SECONDS      between probes (15)\n"
    "  --tcp-keepcnt N              unanswered probes before the connection is dead (4)\n"
    "  --log-connections on|off     log each authorized client: address, user, database, TLS (on)\n"
    "  --log-disconnections on|off  log each closed client: duration, bytes, FATAL SQLSTATE (on)\n"
    "  --log-level LEVEL            debug, info, warn, error (info)\n"
    "\n"
    "TLS:\n"
    "  --tls-cert FILE              certificate chain (PEM) offered to applications\n"
    "  --tls-key FILE               its private key (PEM)\n"
    "  --client-tls MODE            disable, allow (default when a certificate is given), require\n"
    "  --upstream-sslmode MODE      toward PostgreSQL, as libpq: disable, allow, prefer (default),\n"
    "                               require, verify-ca, verify-full\n"
    "  --upstream-ca FILE           CA certificates for verify-ca / verify-full\n"
    "\n"
    "Schema guard (off unless --schema is given). It acts only for sessions on the admin URL's\n"
    "database, and only when --admin-url and --upstream reach the same PostgreSQL server\n"
    "(same system_identifier); otherwise it refuses to guard and says so in the log:\n"
    "  --schema PATH                desired schema: a .sql file or a folder of them\n"
    "  --admin-url URL              libpq URL of a role that may create objects in the database\n"
    "  --admin-url-file FILE        read the admin URL from a file (keeps the password off ps)\n"
    "  --shadow-url URL             database to load the schema into (default: one pgguard creates)\n"
    "  --object-owner ROLE          owner of repaired objects (default: the database owner)\n"
    "  --repair MODE                on-error (default), eager, off\n"
    "  --repair-wait SECONDS        how long a failed request waits for its repair (5)\n"
    "  --drift-interval SECONDS     how often the drift is checked (30); also the longest wait\n"
    "                               between retries while the database cannot be reached\n"
    "  --repair-cooldown SECONDS    pause after a failed repair (30)\n"
    "  --lock-timeout MS            lock_timeout of the repair (2000)\n"
    "  --statement-timeout MS       statement_timeout of the repair (30000)\n"
    "  --strict                     refuse to start if the schema does not load\n"
    "  --ready-requires-guard       /readyz also waits for the desired schema and a drift check\n"
    "                               (by default guard trouble never makes pgguard unready)\n"
    "  --json                       check, plan: print JSON\n"
    "  --fail-on STATES             check: the drift states that make it exit 1, comma-separated\n"
    "                               from missing, extra, conflicting (missing)\n"
    "\n"
    "Every option can also be set as PGGUARD_<NAME> (e.g. PGGUARD_UPSTREAM) or in the config\n"
    "file; a flag wins over the environment, which wins over the file.\n",
    f);
}

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

static int parse_double(const char *name, const char *v, double min, double *out)
{
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  /* strtod takes "nan" and "inf": a timer of NaN or infinite seconds is no setting. */
  if (errno || *end || end == v || !isfinite(d) || d < min)
    return bad(name, v, "expected a finite number, not negative");
  *out = d;
  return PGG_OK;
}

/* "missing,extra,conflicting" -> a mask of 1 << pgg_drift_state. */
static int parse_fail_on(const char *v, unsigned *mask)
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
      return PGG_ERR_CONFIG;
    m |= 1u << found;
    p += n;
    if (*p == ',')
      p++;
  }
  if (!m)
    return PGG_ERR_CONFIG;
  *mask = m;
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

/* Where the admin and shadow URLs came from, for a message that names the
 * setting without repeating its value. */
static char admin_url_from[320], shadow_url_from[320];

static void remember(char *dst, size_t n, const char *name)
{
  snprintf(dst, n, "%s", name);
}

static int apply(pgg_options *o, int opt, const char *name, const char *v)
{
  long l;
  int err = PGG_OK;
  switch (opt) {
  case OPT_LISTEN:
    return pgg_hostport_parse(v, &o->listen) ? bad(name, v, "expected HOST:PORT") : PGG_OK;
  case OPT_UPSTREAM:
    return pgg_hostport_parse(v, &o->upstream) ? bad(name, v, "expected HOST:PORT") : PGG_OK;
  case OPT_ADMIN_LISTEN:
    return pgg_hostport_parse(v, &o->admin) ? bad(name, v, "expected HOST:PORT") : PGG_OK;
  case OPT_MAX_MESSAGE:
    if ((err = parse_int(name, v, 64, 1L << 30, &l)))
      return err;
    o->max_message = (size_t)l;
    return PGG_OK;
  case OPT_SHUTDOWN_TIMEOUT:
    return parse_double(name, v, 0, &o->shutdown_timeout);
  case OPT_CLIENT_LOGIN_TIMEOUT:
    return parse_double(name, v, 0, &o->client_login_timeout);
  case OPT_SERVER_CONNECT_TIMEOUT:
    return parse_double(name, v, 0, &o->server_connect_timeout);
  case OPT_MAX_CLIENT_CONN:
    if ((err = parse_int(name, v, 0, 1000000, &l)))
      return err;
    o->max_client_conn = (int)l;
    return PGG_OK;
  case OPT_TCP_KEEPIDLE:
    if ((err = parse_int(name, v, 1, 86400, &l)))
      return err;
    o->tcp_keepidle = (int)l;
    return PGG_OK;
  case OPT_TCP_KEEPINTVL:
    if ((err = parse_int(name, v, 1, 86400, &l)))
      return err;
    o->tcp_keepintvl = (int)l;
    return PGG_OK;
  case OPT_TCP_KEEPCNT:
    if ((err = parse_int(name, v, 1, 1000, &l)))
      return err;
    o->tcp_keepcnt = (int)l;
    return PGG_OK;
  case OPT_LOG_CONNECTIONS:
    return parse_onoff(name, v, &o->log_connections);
  case OPT_LOG_DISCONNECTIONS:
    return parse_onoff(name, v, &o->log_disconnections);
  case OPT_TCP_KEEPALIVE:
    return parse_onoff(name, v, &o->tcp_keepalive);
  case OPT_LOG_LEVEL:
    if (pgg_log_level_parse(v) < 0)
      return bad(name, v, "expected debug, info, warn or error");
    pgg_log_level = pgg_log_level_parse(v);
    return PGG_OK;
  case OPT_ADMIN_URL_FILE: {
    char from[sizeof admin_url_from];
    snprintf(from, sizeof from, "%s (%s)", name, v);
    remember(admin_url_from, sizeof admin_url_from, from);
    return read_secret_file(name, v, &o->guard.admin_url);
  }
  case OPT_STRICT:
    if (!parse_bool(v, &o->guard.strict))
      return bad(name, v, "expected true or false");
    return PGG_OK;
  case OPT_READY_REQUIRES_GUARD:
    if (!parse_bool(v, &o->ready_requires_guard))
      return bad(name, v, "expected true or false");
    return PGG_OK;
  case OPT_TLS_CERT:
    o->tls_cert = v;
    return PGG_OK;
  case OPT_TLS_KEY:
    o->tls_key = v;
    return PGG_OK;
  case OPT_CLIENT_TLS:
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
  case OPT_UPSTREAM_SSLMODE:
    if (pgg_sslmode_parse(v, &o->upstream_sslmode))
      return bad(name, v, "expected disable, allow, prefer, require, verify-ca or verify-full");
    return PGG_OK;
  case OPT_UPSTREAM_CA:
    o->upstream_ca = v;
    return PGG_OK;
  case OPT_SCHEMA:
    o->guard.schema_path = v;
    return PGG_OK;
  case OPT_ADMIN_URL:
    remember(admin_url_from, sizeof admin_url_from, name);
    o->guard.admin_url = v;
    return PGG_OK;
  case OPT_SHADOW_URL:
    remember(shadow_url_from, sizeof shadow_url_from, name);
    o->guard.shadow_url = v;
    return PGG_OK;
  case OPT_OBJECT_OWNER:
    o->guard.object_owner = v;
    return PGG_OK;
  case OPT_REPAIR:
    if (strcmp(v, "on-error") == 0)
      o->guard.repair_mode = PGG_REPAIR_MODE_ON_ERROR;
    else if (strcmp(v, "eager") == 0)
      o->guard.repair_mode = PGG_REPAIR_MODE_EAGER;
    else if (strcmp(v, "off") == 0)
      o->guard.repair_mode = PGG_REPAIR_MODE_OFF;
    else
      return bad(name, v, "expected on-error, eager or off");
    return PGG_OK;
  case OPT_REPAIR_WAIT:
    return parse_double(name, v, 0, &o->guard.repair_wait);
  case OPT_DRIFT_INTERVAL:
    if ((err = parse_double(name, v, 0.1, &o->guard.drift_interval)))
      return err;
    return PGG_OK;
  case OPT_REPAIR_COOLDOWN:
    return parse_double(name, v, 0, &o->guard.cooldown);
  case OPT_LOCK_TIMEOUT:
    if ((err = parse_int(name, v, 1, 3600000, &l)))
      return err;
    o->guard.lock_timeout_ms = (int)l;
    return PGG_OK;
  case OPT_STATEMENT_TIMEOUT:
    if ((err = parse_int(name, v, 1, 86400000, &l)))
      return err;
    o->guard.statement_timeout_ms = (int)l;
    return PGG_OK;
  }
  return PGG_OK;
}

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
  snprintf(name, sizeof(name), "\"%s\" (%s line %d)", key, ic->path, ic->line);
  for (const struct option *lo = longopts; lo->name; lo++) {
    if (strcmp(lo->name, flag) != 0)
      continue;
    if (lo->val == OPT_CONFIG || lo->val == OPT_HELP || lo->val == OPT_VERSION ||
        lo->val == OPT_JSON || lo->val == OPT_CHECK_CONFIG)
      break;
    const char *v = keep(value);
    if (!v || apply(ic->o, lo->val, name, v)) {
      ic->err = PGG_ERR_CONFIG;
      return 0;
    }
    return 1;
  }
  fprintf(stderr, "pgguard: %s line %d: unknown key \"%s\"\n", ic->path, ic->line, key);
  ic->err = PGG_ERR_CONFIG;
  return 0;
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

int pgg_options_parse(pgg_options *o, int argc, char **argv)
{
  memset(o, 0, sizeof(*o));
  admin_url_from[0] = shadow_url_from[0] = 0;
  o->command = "run";
  snprintf(o->listen.host, sizeof(o->listen.host), "127.0.0.1");
  o->listen.port = 6432;
  snprintf(o->upstream.host, sizeof(o->upstream.host), "127.0.0.1");
  o->upstream.port = 5432;
  snprintf(o->admin.host, sizeof(o->admin.host), "127.0.0.1");
  o->admin.port = 9930;
  o->max_message = PGG_DEFAULT_MAX_MESSAGE;
  o->shutdown_timeout = 30;
  o->client_login_timeout = 60;
  o->server_connect_timeout = 15;
  o->max_client_conn = 100;
  o->tcp_keepalive = true;
  o->log_connections = true;
  o->log_disconnections = true;
  o->tcp_keepidle = 45;
  o->tcp_keepintvl = 15;
  o->tcp_keepcnt = 4;
  o->upstream_sslmode = PGG_SSLMODE_PREFER;
  pgg_guard_config_defaults(&o->guard);

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
  int opt0, idx0;
  while ((opt0 = getopt_long(argc, argv, ":hc:", longopts, &idx0)) != -1)
    if (opt0 == 'c' || opt0 == OPT_CONFIG)
      o->config_path = optarg;
  if (o->config_path && *o->config_path && read_config_file(o, o->config_path))
    return PGG_ERR_CONFIG;

  for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
    const char *v = getenv(envs[i].env);
    if (v && *v && apply(o, envs[i].opt, envs[i].env, v))
      return PGG_ERR_CONFIG;
  }

  optind = first;
  opterr = 0;
  int opt, idx;
  while ((opt = getopt_long(argc, argv, ":hc:", longopts, &idx)) != -1) {
    if (opt == '?') {
      fprintf(stderr, "pgguard: unknown option \"%s\" (see pgguard --help)\n", argv[optind - 1]);
      return PGG_ERR_CONFIG;
    }
    if (opt == ':') {
      fprintf(stderr, "pgguard: option \"%s\" needs a value (see pgguard --help)\n", argv[optind - 1]);
      return PGG_ERR_CONFIG;
    }
    if (opt == 'h' || opt == OPT_HELP) {
      o->command = "help";
      return PGG_OK;
    }
    if (opt == OPT_VERSION) {
      o->command = "version";
      return PGG_OK;
    }
    if (opt == OPT_STRICT) {
      o->guard.strict = true;
      continue;
    }
    if (opt == OPT_READY_REQUIRES_GUARD) {
      o->ready_requires_guard = true;
      continue;
    }
    if (opt == 'c' || opt == OPT_CONFIG)
      continue;
    if (opt == OPT_CHECK_CONFIG) {
      o->check_config = true;
      continue;
    }
    if (opt == OPT_JSON) {
      o->json = true;
      continue;
    }
    if (opt == OPT_FAIL_ON) {
      if (parse_fail_on(optarg, &o->fail_on))
        return bad("--fail-on", optarg, "expected a comma-separated list of missing, extra, conflicting");
      continue;
    }
    char name[64];
    snprintf(name, sizeof(name), "--%s", longopts[idx].name);
    if (apply(o, opt, name, optarg))
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
