/*
 * repair.c — the guard's admin connection: checking the live database against
 * the desired schema, and running the additive repair plan under the lock.
 */
#include "guard.h"
#include "introspect.h"
#include "sqlfile.h"
#include "redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

struct pgg_admin {
  pgg_guard_config cfg;   /* a copy; the strings below are its own */
  char *schema_path, *admin_url, *shadow_url, *object_owner;
  PGconn *conn;           /* NULL until first use, and after a failure */
  pgg_secrets secrets;    /* the URLs' passwords, masked in every error */
  char dbname[256];       /* PQdb() of the first session: the guarded database */
  char *upstream_host;    /* --upstream, or NULL: no server comparison */
  int upstream_port;
  pgg_server_match server;
  char server_note[400];  /* why server is what it is (no password) */
  /* The open session's cancel key, for pgg_admin_cancel from the loop's
   * thread while a job blocks in libpq on the thread pool. */
  pthread_mutex_t cancel_mu;
  PGcancel *cancel;
  bool stopping;          /* cancelled for good: no new session */
  uint64_t shadow_hash;   /* the shadow database in use, announced by each session */
  bool locked;            /* the session holds the repair lock (PGG_ADVISORY_KEY) */
};

/* A repair whose lock was released between its label transaction and its
 * main one starts over; this bounds how often. */
#define MAX_ROUNDS 3

static double now_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *bstr(const pgg_buf *b)
{
  return b->len ? (const char *)b->data : "";
}


/*
 * Statements that create an object with an owner run as the object owner,
 * so the application can use what they create (and default privileges set
 * for that role apply). Statements that change a table that existed before
 * the repair run as that table's owner (existing_table_owner()); on a table
 * the repair creates they run as the admin: columns, constraints and
 * indexes have no owner of their own (an index takes its table's).
 */
static bool runs_as_owner(pgg_stmt_kind k)
{
  switch (k) {
  case PGG_STMT_CREATE_SCHEMA:
  case PGG_STMT_CREATE_ENUM:
  case PGG_STMT_CREATE_DOMAIN:
  case PGG_STMT_CREATE_COMPOSITE:
  case PGG_STMT_CREATE_FUNCTION:
  case PGG_STMT_CREATE_SEQUENCE:
  case PGG_STMT_CREATE_TABLE:
  case PGG_STMT_CREATE_VIEW:
  case PGG_STMT_REFRESH_MATVIEW:
    return true;
  default:
    /* An extension is the admin's (it may need privileges the owner lacks,
     * and pg_dump does not set its owner either); triggers and OWNED BY
     * change an existing table or sequence. */
    return false;
  }
}

/*
 * One planned statement, alone, through the extended protocol: PostgreSQL
 * refuses a second statement there, so a function body the planner could
 * not lex can never carry one.
 */
static int exec_stmt(PGconn *conn, const char *sql, pgg_buf *err)
{
  return pgg_pq_done(conn, PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0), err);
}

/* Back to a savepoint after a refused statement; its own error is not kept. */
static int rollback_to(pgg_admin *a, const char *savepoint)
{
  char sql[96];
  snprintf(sql, sizeof sql, "ROLLBACK TO SAVEPOINT %s", savepoint);
  pgg_buf scratch;
  pgg_buf_init(&scratch);
  int rc = pgg_pq_exec(a->conn, sql, &scratch);
  pgg_buf_free(&scratch);
  return rc;
}

static char *dup_or_null(const char *s, bool *failed)
{
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *failed = true;
  return d;
}

pgg_admin *pgg_admin_new(const pgg_guard_config *cfg)
{
  pgg_admin *a = calloc(1, sizeof *a);
  if (!a)
    return NULL;
  pthread_mutex_init(&a->cancel_mu, NULL);
  a->cfg = *cfg;
  bool failed = false;
  a->cfg.schema_path = a->schema_path = dup_or_null(cfg->schema_path, &failed);
  a->cfg.admin_url = a->admin_url = dup_or_null(cfg->admin_url, &failed);
  a->cfg.shadow_url = a->shadow_url = dup_or_null(cfg->shadow_url, &failed);
  a->cfg.object_owner = a->object_owner = dup_or_null(cfg->object_owner, &failed);
  pgg_secrets_init(&a->secrets);
  if (pgg_secrets_add_conninfo(&a->secrets, a->admin_url) ||
      pgg_secrets_add_conninfo(&a->secrets, a->shadow_url))
    failed = true;
  if (failed) {
    pgg_admin_free(a);
    return NULL;
  }
  return a;
}

static void drop_conn(pgg_admin *a);

int pgg_admin_set_limits(pgg_admin *a, const pgg_guard_config *cfg)
{
  bool same_owner = (!a->object_owner && !cfg->object_owner) ||
                    (a->object_owner && cfg->object_owner &&
                     strcmp(a->object_owner, cfg->object_owner) == 0);
  if (a->cfg.lock_timeout_ms == cfg->lock_timeout_ms &&
      a->cfg.statement_timeout_ms == cfg->statement_timeout_ms && same_owner)
    return PGG_OK;
  if (!same_owner) {
    bool failed = false;
    char *owner = dup_or_null(cfg->object_owner, &failed);
    if (failed)
      return PGG_ERR_NOMEM;
    free(a->object_owner);
    a->cfg.object_owner = a->object_owner = owner;
  }
  a->cfg.lock_timeout_ms = cfg->lock_timeout_ms;
  a->cfg.statement_timeout_ms = cfg->statement_timeout_ms;
  /* The session's own timeouts were SET when it connected: the next job
   * connects afresh and sets the new ones. */
  drop_conn(a);
  return PGG_OK;
}

void pgg_admin_set_shadow(pgg_admin *a, uint64_t hash)
{
  if (a->shadow_hash == hash)
    return;
  a->shadow_hash = hash;
  drop_conn(a);   /* the next session announces the new one */
}

void pgg_admin_free(pgg_admin *a)
{
  if (!a)
    return;
  drop_conn(a);
  pthread_mutex_destroy(&a->cancel_mu);
  free(a->schema_path);
  free(a->admin_url);
  free(a->shadow_url);
  free(a->object_owner);
  free(a->upstream_host);
  pgg_secrets_free(&a->secrets);
  free(a);
}

int pgg_admin_set_upstream(pgg_admin *a, const char *host, int port)
{
  free(a->upstream_host);
  a->upstream_host = NULL;
  if (host && !(a->upstream_host = strdup(host)))
    return PGG_ERR_NOMEM;
  a->upstream_port = port;
  return PGG_OK;
}

const char *pgg_admin_dbname(const pgg_admin *a)
{
  return a->dbname;
}

pgg_server_match pgg_admin_server(const pgg_admin *a, const char **why)
{
  if (why)
    *why = a->server_note;
  return a->server;
}

/* ---- the admin URL and --upstream: one server? ------------------------------ */

/*
 * pg_control_system() is executable by PUBLIC (PostgreSQL 9.6 and later);
 * its system_identifier names one cluster and its physical replicas. Where
 * an operator revoked it, the postmaster's start time and port (also
 * readable by anyone) tell one running server from another.
 */
static const char q_sysid[] =
  "SELECT system_identifier::text FROM pg_catalog.pg_control_system()";
static const char q_started[] =
  "SELECT pg_catalog.date_part('epoch', pg_catalog.pg_postmaster_start_time())::text"
  " || ' port ' || pg_catalog.current_setting('port')";

/* One value of sql, or NULL with *sqlstate set ("" when the session broke). */
static char *identity(PGconn *conn, const char *sql, char *sqlstate, size_t n)
{
  PGresult *res = PQexec(conn, sql);
  char *v = NULL;
  if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
      !PQgetisnull(res, 0, 0))
    v = strdup(PQgetvalue(res, 0, 0));
  else
    snprintf(sqlstate, n, "%s", pgg_pq_sqlstate(res));
  PQclear(res);
  return v;
}

/* A short session to --upstream as the admin URL's user, on its database. */
static PGconn *connect_upstream(pgg_admin *a, pgg_buf *err)
{
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(a->admin_url, &perr);
  PQfreemem(perr);
  if (!opts) {
    pgg_buf_printf(err, "the admin URL does not parse");
    return NULL;
  }
  size_t n = 0;
  for (PQconninfoOption *o = opts; o->keyword; o++)
    n++;
  const char **kw = calloc(n + 6, sizeof *kw);
  const char **val = calloc(n + 6, sizeof *val);
  char port[16];
  snprintf(port, sizeof port, "%d", a->upstream_port);
  PGconn *conn = NULL;
  if (!kw || !val) {
    pgg_buf_printf(err, "out of memory");
    goto done;
  }
  size_t k = 0;
  bool has_timeout = false;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || !strcmp(o->keyword, "host") || !strcmp(o->keyword, "hostaddr") ||
        !strcmp(o->keyword, "port"))
      continue;
    if (!strcmp(o->keyword, "connect_timeout"))
      has_timeout = true;
    kw[k] = o->keyword;
    val[k++] = o->val;
  }
  if (a->dbname[0]) {
    /* The admin session's own database, however libpq defaulted it. */
    kw[k] = "dbname";
    val[k++] = a->dbname;
  }
  kw[k] = "host";
  val[k++] = a->upstream_host;
  kw[k] = "port";
  val[k++] = port;
  if (!has_timeout) {
    kw[k] = "connect_timeout";
    val[k++] = "5";
  }
  kw[k] = "fallback_application_name";
  val[k++] = "pgguard";
  kw[k] = val[k] = NULL;
  conn = PQconnectdbParams(kw, val, 0);
  if (conn && PQstatus(conn) != CONNECTION_OK) {
    const char *m = PQerrorMessage(conn);
    size_t len = strlen(m);
    while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
      len--;
    pgg_buf_printf(err, "%.*s", (int)len, m);
    PQfinish(conn);
    conn = NULL;
  } else if (!conn) {
    pgg_buf_printf(err, "out of memory");
  }
done:
  free(kw);
  free(val);
  PQconninfoFree(opts);
  return conn;
}

/* Compare the admin session's server with --upstream's; sets a->server. */
static void compare_servers(pgg_admin *a)
{
  pgg_buf err;
  pgg_buf_init(&err);
  char *mine = NULL, *theirs = NULL;
  char st1[8] = "", st2[8] = "";
  const char *how = "system_identifier";
  PGconn *up = connect_upstream(a, &err);
  if (!up) {
    pgg_buf_append_u8(&err, 0);
    char msg[300];
    pgg_redact(&a->secrets, (const char *)err.data, msg, sizeof msg);
    a->server = PGG_SERVER_UNVERIFIED;
    snprintf(a->server_note, sizeof a->server_note,
             "could not connect to --upstream %s:%d as the admin URL's user: %s",
             a->upstream_host, a->upstream_port, msg);
    goto out;
  }
  mine = identity(a->conn, q_sysid, st1, sizeof st1);
  theirs = identity(up, q_sysid, st2, sizeof st2);
  if (!mine || !theirs) {
    free(mine);
    free(theirs);
    how = "postmaster start time and port";
    mine = identity(a->conn, q_started, st1, sizeof st1);
    theirs = identity(up, q_started, st2, sizeof st2);
  }
  if (!mine || !theirs) {
    a->server = PGG_SERVER_UNVERIFIED;
    snprintf(a->server_note, sizeof a->server_note,
             "neither pg_control_system() nor pg_postmaster_start_time() could be read "
             "(SQLSTATE %s)", *st1 ? st1 : *st2 ? st2 : "none");
  } else if (strcmp(mine, theirs) == 0) {
    a->server = PGG_SERVER_SAME;
    snprintf(a->server_note, sizeof a->server_note, "same %s", how);
  } else {
    a->server = PGG_SERVER_DIFFERENT;
    snprintf(a->server_note, sizeof a->server_note,
             "--admin-url and --upstream %s:%d reach different PostgreSQL servers "
             "(%s %s vs %s); refusing to repair a database the proxied sessions do not use",
             a->upstream_host, a->upstream_port, how, mine, theirs);
  }
out:
  free(mine);
  free(theirs);
  if (up)
    PQfinish(up);
  pgg_buf_free(&err);
}

void pgg_repair_result_free(pgg_repair_result *r)
{
  free(r->drift_json);
  r->drift_json = NULL;
  pgg_plan_free(&r->builds);
}

static void set_cancel(pgg_admin *a, PGcancel *c)
{
  pthread_mutex_lock(&a->cancel_mu);
  if (a->cancel)
    PQfreeCancel(a->cancel);
  a->cancel = c;
  pthread_mutex_unlock(&a->cancel_mu);
}

static void drop_conn(pgg_admin *a)
{
  a->locked = false;
  set_cancel(a, NULL);
  if (a->conn)
    PQfinish(a->conn);
  a->conn = NULL;
}

void pgg_admin_cancel(pgg_admin *a)
{
  char errbuf[256];
  if (!a)
    return;
  pthread_mutex_lock(&a->cancel_mu);
  a->stopping = true;
  if (a->cancel)
    PQcancel(a->cancel, errbuf, sizeof errbuf);   /* best effort: the job fails and returns */
  pthread_mutex_unlock(&a->cancel_mu);
}

/* An open, idle session, reconnecting when the last one failed. */
static int ensure_conn(pgg_admin *a, pgg_buf *err)
{
  if (a->server == PGG_SERVER_DIFFERENT) {
    pgg_buf_printf(err, "%s", a->server_note);
    return PGG_ERR_CONFIG;
  }
  if (a->conn && (PQstatus(a->conn) != CONNECTION_OK ||
                  PQtransactionStatus(a->conn) != PQTRANS_IDLE))
    drop_conn(a);
  if (a->conn)
    return PGG_OK;
  pthread_mutex_lock(&a->cancel_mu);
  bool stopping = a->stopping;
  pthread_mutex_unlock(&a->cancel_mu);
  if (stopping) {
    pgg_buf_printf(err, "pgguard is stopping");
    return PGG_ERR_UPSTREAM;
  }
  a->conn = pgg_pq_connect(a->cfg.admin_url, NULL, err);
  if (!a->conn)
    return PGG_ERR_UPSTREAM;
  set_cancel(a, PQgetCancel(a->conn));
  /* Drift checks run on the thread pool too: bound them like the repair,
   * so a stuck catalog read cannot hold the guard's only worker forever. */
  char sql[256];
  int n = snprintf(sql, sizeof sql, "SET statement_timeout = %d; SET lock_timeout = %d",
                   a->cfg.statement_timeout_ms, a->cfg.lock_timeout_ms);
  /* Which shadow database this pgguard uses, for pruning (PGG_SHADOW_USE_KEY). */
  if (a->shadow_hash)
    snprintf(sql + n, sizeof sql - (size_t)n, "; SELECT pg_catalog.pg_advisory_lock_shared(%d, %d)",
             PGG_SHADOW_USE_KEY, (int)(a->shadow_hash & 0x7fffffff));
  int rc = pgg_pq_exec(a->conn, sql, err);
  if (rc) {
    drop_conn(a);
    return rc;
  }
  if (!a->dbname[0])
    snprintf(a->dbname, sizeof a->dbname, "%s", PQdb(a->conn) ? PQdb(a->conn) : "");
  return PGG_OK;
}

/*
 * An open session on a server known to be --upstream's. Until the servers
 * compare equal, every call compares them again (the upstream may have been
 * unreachable, or the admin's login refused there); a repair needs them
 * equal, a check (it only reads) does not.
 */
static int verified_conn(pgg_admin *a, bool for_repair, pgg_buf *err)
{
  int rc = ensure_conn(a, err);
  if (rc)
    return rc;
  if (a->upstream_host && (a->server == PGG_SERVER_UNCHECKED || a->server == PGG_SERVER_UNVERIFIED))
    compare_servers(a);
  if (a->server == PGG_SERVER_DIFFERENT) {
    drop_conn(a);
    pgg_buf_printf(err, "%s", a->server_note);
    return PGG_ERR_CONFIG;
  }
  if (for_repair && a->upstream_host && a->server != PGG_SERVER_SAME) {
    pgg_buf_printf(err, "not repairing a server not known to be --upstream's: %s",
                   a->server_note);
    return PGG_ERR_CONFIG;
  }
  return PGG_OK;
}

int pgg_admin_connect(pgg_admin *a, pgg_buf *err)
{
  size_t mark = err->len;
  int rc = verified_conn(a, false, err);
  if (rc) {
    /* Masked here: the caller may log it. */
    pgg_buf_append_u8(err, 0);
    pgg_buf masked;
    pgg_buf_init(&masked);
    pgg_redact_buf(&a->secrets, (const char *)err->data + mark, &masked);
    pgg_pq_err_rewind(err, mark);
    pgg_buf_append(err, masked.data, masked.len);
    pgg_buf_free(&masked);
  }
  return rc;
}

/* ---- the catalog probe ---------------------------------------------------- */

static void rollback(pgg_admin *a);

/*
 * One row, cheap enough to run every second. The fingerprint is each
 * catalog's row count and the sum of its rows' xmin: a CREATE, ALTER or DROP
 * inserts, updates or deletes rows there, so it changes, while ANALYZE and
 * VACUUM update pg_class in place and leave it alone. Only objects created
 * after initdb count (oid >= FirstNormalObjectId, 16384): the thousands of
 * built-in functions and types never change, and reading them every second
 * would cost most of the probe. Objects in temporary schemas are left out:
 * an application that creates a temporary table per request would
 * otherwise look like a migration that never ends.
 *
 * The second part names one session a repair must not race: a restore or
 * a migration tool by its application_name ($1, comma-separated), or DDL in
 * progress: a session holding an ACCESS EXCLUSIVE lock on a relation of
 * this database that its open transaction creates (the relation is not in
 * pg_class for us yet) or alters, drops or truncates (its pg_class row
 * carries one of that session's xids as xmax). A bare LOCK TABLE changes no
 * catalog row: a repair that needs that table waits for it up to
 * lock_timeout, as for any lock. Temporary relations are excused where they
 * are visible (one created in a still open transaction is not). pgguard's own sessions, here and in other sidecars,
 * coordinate through the advisory lock instead. pg_locks, unlike parts of
 * pg_stat_activity, shows every session to every role.
 */
static const char q_probe[] =
  "WITH tmp AS (SELECT oid FROM pg_catalog.pg_namespace"
  "             WHERE nspname ~ '^pg_(toast_)?temp_'),"
  " mine AS (SELECT pid FROM pg_catalog.pg_stat_activity"
  "          WHERE pid = pg_catalog.pg_backend_pid() OR application_name LIKE 'pgguard%'),"
  " xids AS (SELECT pid, transactionid AS xid FROM pg_catalog.pg_locks"
  "          WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted),"
  " names AS (SELECT pg_catalog.btrim(n) AS n FROM pg_catalog.unnest("
  "             pg_catalog.string_to_array($1, ',')) AS n WHERE pg_catalog.btrim(n) <> ''),"
  " blocker AS ("
  "  (SELECT a.pid, 'application_name=' || a.application_name AS why"
  "     FROM pg_catalog.pg_stat_activity a"
  "    WHERE a.datname = pg_catalog.current_database() AND a.pid NOT IN (SELECT pid FROM mine)"
  "      AND a.application_name IN (SELECT n FROM names)"
  "    ORDER BY a.backend_start LIMIT 1)"
  "  UNION ALL"
  "  (SELECT l.pid, 'access_exclusive_lock' FROM pg_catalog.pg_locks l"
  "    WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted"
  "      AND l.database = (SELECT oid FROM pg_catalog.pg_database"
  "                         WHERE datname = pg_catalog.current_database())"
  "      AND l.pid IS NOT NULL AND l.pid NOT IN (SELECT pid FROM mine)"
  "      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
  "                      WHERE c.oid = l.relation AND (c.relnamespace IN (SELECT oid FROM tmp)"
  "                        OR NOT EXISTS (SELECT 1 FROM xids x"
  "                                       WHERE x.pid = l.pid AND x.xid = c.xmax)))"
  "    LIMIT 1)"
  "  LIMIT 1)"
  " SELECT (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0)"
  "           FROM pg_catalog.pg_class WHERE oid >= 16384"
  "             AND relnamespace NOT IN (SELECT oid FROM tmp))"
  "  || ' ' || (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0)"
  "           FROM pg_catalog.pg_type WHERE oid >= 16384"
  "             AND typnamespace NOT IN (SELECT oid FROM tmp))"
  "  || ' ' || (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0)"
  "           FROM pg_catalog.pg_proc WHERE oid >= 16384"
  "             AND pronamespace NOT IN (SELECT oid FROM tmp))"
  "  || ' ' || (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0)"
  "           FROM pg_catalog.pg_namespace WHERE oid NOT IN (SELECT oid FROM tmp))"
  "  || ' ' || (SELECT count(*) || ':' || coalesce(sum(xmin::text::bigint), 0)"
  "           FROM pg_catalog.pg_enum),"
  "  (SELECT pid FROM blocker), (SELECT why FROM blocker)";

static int probe_once(pgg_admin *a, const char *defer_to, pgg_probe_result *out, pgg_buf *err)
{
  const char *params[1] = {defer_to ? defer_to : ""};
  PGresult *res = PQexecParams(a->conn, q_probe, 1, NULL, params, NULL, NULL, 0);
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
      PQnfields(res) != 3) {
    pgg_pq_error(err, a->conn, res);
    PQclear(res);
    return PQstatus(a->conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
  }
  snprintf(out->fingerprint, sizeof out->fingerprint, "%s", PQgetvalue(res, 0, 0));
  out->defer_pid = PQgetisnull(res, 0, 1) ? 0 : atoi(PQgetvalue(res, 0, 1));
  snprintf(out->defer_why, sizeof out->defer_why, "%s",
           PQgetisnull(res, 0, 2) ? "" : PQgetvalue(res, 0, 2));
  PQclear(res);
  return PGG_OK;
}

int pgg_admin_probe(pgg_admin *a, const char *defer_to, pgg_probe_result *out)
{
  memset(out, 0, sizeof *out);
  pgg_buf err;
  pgg_buf_init(&err);
  bool had = a->conn && PQstatus(a->conn) == CONNECTION_OK;
  int rc = ensure_conn(a, &err);
  if (!rc && !had)
    out->reconnected = true;
  if (!rc) {
    rc = probe_once(a, defer_to, out, &err);
    if (rc == PGG_ERR_UPSTREAM && had) {
      /* The idle session died (a restart, a dropped database): one fresh
       * try, and the news that the session is a new one. */
      pgg_buf_reset(&err);
      drop_conn(a);
      rc = ensure_conn(a, &err);
      if (!rc) {
        out->reconnected = true;
        rc = probe_once(a, defer_to, out, &err);
      }
    }
  }
  if (rc) {
    pgg_buf text;
    pgg_buf_init(&text);
    pgg_buf_printf(&text, "catalog probe failed%s%s", err.len ? ": " : "", bstr(&err));
    pgg_buf_append_u8(&text, 0);
    pgg_redact(&a->secrets, text.data ? (const char *)text.data : "catalog probe failed",
               out->error, sizeof out->error);
    pgg_buf_free(&text);
    rollback(a);
  }
  pgg_buf_free(&err);
  return rc;
}

/*
 * Run the first command of a unit of work. A session that PostgreSQL closed
 * while idle (a restart, a restore) still reads CONNECTION_OK until used;
 * then it fails once here and gets one fresh connection, so the repair that
 * a restore makes necessary is not the one that fails on the restore's
 * broken session.
 */
static int first_exec(pgg_admin *a, const char *sql, pgg_buf *err)
{
  int rc = ensure_conn(a, err);
  if (rc)
    return rc;
  size_t mark = err->len;
  rc = pgg_pq_exec(a->conn, sql, err);
  if (rc != PGG_ERR_UPSTREAM)
    return rc;
  pgg_pq_err_rewind(err, mark);
  drop_conn(a);
  if ((rc = ensure_conn(a, err)) != PGG_OK)
    return rc;
  return pgg_pq_exec(a->conn, sql, err);
}

static void rollback(pgg_admin *a)
{
  if (!a->conn)
    return;
  if (PQtransactionStatus(a->conn) != PQTRANS_IDLE)
    PQclear(PQexec(a->conn, "ROLLBACK"));
  if (PQstatus(a->conn) != CONNECTION_OK)
    drop_conn(a);
}

/* The failure, with the URLs' passwords masked before the text is cut to
 * fit: libpq's connection errors can quote pieces of a URL. */
static void fail(pgg_admin *a, pgg_repair_result *out, const char *what, const pgg_buf *err)
{
  out->outcome = PGG_REPAIR_FAILED;
  pgg_buf text;
  pgg_buf_init(&text);
  pgg_buf_printf(&text, "%s%s%s", what, err->len ? ": " : "", bstr(err));
  pgg_buf_append_u8(&text, 0);
  pgg_redact(&a->secrets, text.data ? (const char *)text.data : what, out->error,
             sizeof out->error);
  pgg_buf_free(&text);
}

/* Fill the result's drift part from d. */
static int fill_drift(pgg_repair_result *out, const pgg_drift *d)
{
  memcpy(out->counts, d->counts, sizeof out->counts);
  out->missing_labels = pgg_drift_missing_labels(d);
  out->drift_known = true;
  pgg_buf j;
  pgg_buf_init(&j);
  int rc = pgg_drift_format_json(d, &j);
  if (!rc)
    rc = pgg_buf_append_u8(&j, 0);
  free(out->drift_json);
  out->drift_json = NULL;
  if (!rc)
    out->drift_json = (char *)j.data;
  else
    pgg_buf_free(&j);
  return rc;
}

static bool anything_missing(const pgg_drift *d)
{
  for (size_t i = 0; i < d->n; i++)
    if (d->items[i].state == PGG_DRIFT_MISSING)
      return true;
  return false;
}

/* Introspect on the admin connection (in its transaction, if one is open)
 * and diff against desired. */
static int read_drift(pgg_admin *a, const pgg_catalog *desired, pgg_catalog *live,
                      pgg_drift *d, pgg_buf *err)
{
  int rc = pgg_introspect(a->conn, live, err);
  if (rc)
    return rc;
  rc = pgg_diff(desired, live, d);
  if (!rc && !a->cfg.allow_twin)
    rc = pgg_drift_renames(d);
  if (rc) {
    pgg_buf_printf(err, "out of memory computing the drift");
    return rc;
  }
  /* Which tables with missing parts have rows: what would rewrite or scan
   * one of them needs a migration, and the planner works around the rest. */
  if ((rc = pgg_introspect_has_rows(a->conn, d, live, err)) != PGG_OK)
    return rc;
  rc = pgg_drift_hazards(d, live);
  if (rc)
    pgg_buf_printf(err, "out of memory computing the drift");
  return rc;
}

int pgg_admin_check(pgg_admin *a, const pgg_catalog *desired, pgg_repair_result *out)
{
  memset(out, 0, sizeof *out);
  double t0 = now_seconds();
  out->outcome = PGG_REPAIR_NOTHING;
  pgg_buf err;
  pgg_buf_init(&err);
  pgg_catalog live;
  pgg_catalog_init(&live);
  pgg_drift d;
  pgg_drift_init(&d);

  int rc = verified_conn(a, false, &err);
  if (!rc) {
    rc = read_drift(a, desired, &live, &d, &err);
    if (rc == PGG_ERR_UPSTREAM) {
      /* The idle session died (see first_exec): one fresh try. */
      pgg_buf_reset(&err);
      drop_conn(a);
      rc = ensure_conn(a, &err);
      if (!rc)
        rc = read_drift(a, desired, &live, &d, &err);
    }
  }
  if (!rc)
    rc = fill_drift(out, &d);
  if (rc) {
    fail(a, out, "drift check failed", &err);
    rollback(a);
  }
  pgg_drift_free(&d);
  pgg_catalog_free(&live);
  pgg_buf_free(&err);
  out->seconds = now_seconds() - t0;
  return rc;
}

/* BEGIN, the session limits, and the advisory lock every sidecar repairs
 * under. READ COMMITTED matters: each statement after the lock then sees
 * what a sidecar that held the lock before us committed. Under REPEATABLE
 * READ the snapshot would date from before the wait, and a second sidecar
 * would repair again what the first just repaired. */
/* What every transaction of a repair sets first. */
static int tx_settings(pgg_admin *a, pgg_buf *err)
{
  char sql[256];
  snprintf(sql, sizeof sql,
           "SET LOCAL lock_timeout = %d; SET LOCAL statement_timeout = %d;"
           " SET LOCAL search_path = ''; SET LOCAL check_function_bodies = off",
           a->cfg.lock_timeout_ms, a->cfg.statement_timeout_ms);
  return pgg_pq_exec(a->conn, sql, err);
}

/*
 * Open a repair transaction and, the first time, take the repair lock:
 * session-level, so it stays held across the commits of the repair's groups
 * (a transaction-level lock would end at the first) until unlock_repair().
 * Waiting for it is bounded by lock_timeout like any lock.
 */
static int begin_locked(pgg_admin *a, bool first, pgg_buf *err)
{
  const char *begin = "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE";
  int rc = first ? first_exec(a, begin, err) : pgg_pq_exec(a->conn, begin, err);
  if (!rc)
    rc = tx_settings(a, err);
  if (rc || a->locked)
    return rc;
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT pg_catalog.pg_advisory_lock(%lld)",
           (long long)PGG_ADVISORY_KEY);
  PGresult *res = PQexec(a->conn, sql);
  if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
    PQclear(res);
    a->locked = true;
    return PGG_OK;
  }
  if (strcmp(pgg_pq_sqlstate(res), "55P03") == 0)
    pgg_buf_printf(err, "another repair held the repair lock longer than lock_timeout "
                   "(%d ms)", a->cfg.lock_timeout_ms);
  else
    pgg_pq_error(err, a->conn, res);
  PQclear(res);
  return PQstatus(a->conn) == CONNECTION_OK ? PGG_ERR_BUSY : PGG_ERR_UPSTREAM;
}

/* End the repair's hold on the lock (a lost session has already lost it). */
static void unlock_repair(pgg_admin *a)
{
  if (!a->locked)
    return;
  a->locked = false;
  if (!a->conn || PQstatus(a->conn) != CONNECTION_OK)
    return;
  if (PQtransactionStatus(a->conn) != PQTRANS_IDLE)
    PQclear(PQexec(a->conn, "ROLLBACK"));
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT pg_catalog.pg_advisory_unlock(%lld)",
           (long long)PGG_ADVISORY_KEY);
  PGresult *res = PQexec(a->conn, sql);
  bool released = res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                  PQgetvalue(res, 0, 0)[0] == 't';
  PQclear(res);
  /* A lock the session cannot give back would stop every sidecar's
   * repairs: closing the session releases it. */
  if (!released)
    drop_conn(a);
}

/*
 * Commit what ran so far and open the next transaction: after a statement
 * that locked a table which existed before the repair, so that lock is
 * released at once instead of being held while later statements wait for
 * theirs (lock_timeout each). The repair lock stays.
 */
static int next_group(pgg_admin *a, pgg_buf *err)
{
  int rc = pgg_pq_exec(a->conn, "COMMIT", err);
  if (!rc)
    rc = pgg_pq_exec(a->conn, "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE", err);
  if (!rc)
    rc = tx_settings(a, err);
  return rc;
}

/* The role new objects belong to: --object-owner, or the database's owner. */
static int owner_role(pgg_admin *a, pgg_buf *role, pgg_buf *err)
{
  if (a->cfg.object_owner && *a->cfg.object_owner)
    return pgg_quote_ident(role, a->cfg.object_owner);
  PGresult *res = PQexec(a->conn,
      "SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database"
      " WHERE datname = pg_catalog.current_database()");
  int rc = PGG_OK;
  if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
    rc = pgg_quote_ident(role, PQgetvalue(res, 0, 0));
  } else {
    pgg_buf_printf(err, "reading the database owner: ");
    pgg_pq_error(err, a->conn, res);
    rc = PGG_ERR_DB;
  }
  PQclear(res);
  return rc;
}

/*
 * Partial-safe (issue 8, item 3): with failed != NULL each statement runs
 * in a savepoint. One that PostgreSQL refuses (a lock timeout on a busy
 * table, duplicates under a new UNIQUE, a missing privilege) is rolled back
 * alone and counted in *failed, the first such error kept in err; the rest
 * of the plan still applies, and what depends on the failed one fails in
 * turn with PostgreSQL's own error. A lost connection ends the repair.
 */
static int run_one(pgg_admin *a, const pgg_stmt *s, unsigned *failed, pgg_buf *err)
{
  size_t mark = err->len;
  int rc = failed ? pgg_pq_exec(a->conn, "SAVEPOINT pgguard_statement", err) : PGG_OK;
  if (!rc)
    rc = exec_stmt(a->conn, s->sql, err);
  if (!rc) {
    if (failed)
      rc = pgg_pq_exec(a->conn, "RELEASE SAVEPOINT pgguard_statement", err);
    return rc;
  }
  /* The statement is DDL the planner built from catalog names, never
   * application data: safe to name in logs. */
  char msg[256];
  snprintf(msg, sizeof msg, "%s", bstr(err) + mark);
  pgg_pq_err_rewind(err, mark);
  if (failed && rc != PGG_ERR_UPSTREAM) {
    if (!rollback_to(a, "pgguard_statement")) {
      if ((*failed)++ == 0)
        pgg_buf_printf(err, "%s failed: %s [%s]", pgg_stmt_kind_name(s->kind), msg, s->sql);
      return PGG_OK;
    }
  }
  pgg_buf_printf(err, "%s failed: %s [%s]", pgg_stmt_kind_name(s->kind), msg, s->sql);
  return rc;
}

/*
 * A statement that changes a table which existed before the repair (a
 * column, constraint, index or trigger) runs as that table's owner, so a
 * default or a trigger function is never evaluated with more privilege
 * than the owner has (issue 8, item 7). role receives the quoted owner;
 * false when the statement changes no such table.
 */
static bool existing_table_owner(pgg_admin *a, const pgg_stmt *s, const pgg_catalog *live,
                                 pgg_buf *role)
{
  if (!live || (s->kind != PGG_STMT_ADD_COLUMN && s->kind != PGG_STMT_ADD_CONSTRAINT &&
                s->kind != PGG_STMT_CREATE_INDEX && s->kind != PGG_STMT_CREATE_TRIGGER))
    return false;
  char schema[256], table[256];
  if (!pgg_sql_target(s->sql, schema, sizeof schema, table, sizeof table) || !schema[0] ||
      !pgg_catalog_find(live, PGG_OBJ_TABLE, schema, NULL, table))
    return false;
  pgg_buf_reset(role);
  return pgg_pq_table_owner(a->conn, schema, table, role);
}

/* Run the plan's statements of kind `only` (or, when only < 0, every kind
 * but ADD_ENUM_VALUE and REFRESH_MATVIEW), switching role as
 * runs_as_owner() says when an owner is given, or to the owner of the
 * existing table a statement changes (live given). *ran counts the
 * statements that succeeded; failed (may be NULL) as run_one() says. */
static int run_stmts(pgg_admin *a, const pgg_plan *p, int only, const char *owner,
                     const pgg_catalog *live, unsigned *ran, unsigned *failed, pgg_buf *err)
{
  char current[320] = "";   /* the role SET LOCAL last; "" before the first */
  char sql[400];
  pgg_buf table_owner;
  pgg_buf_init(&table_owner);
  for (size_t i = 0; i < p->n; i++) {
    const pgg_stmt *s = &p->stmts[i];
    bool apart = s->kind == PGG_STMT_ADD_ENUM_VALUE || s->kind == PGG_STMT_REFRESH_MATVIEW ||
                 pgg_stmt_concurrent(p, i);
    if (only >= 0 ? (int)s->kind != only : apart)
      continue;
    bool existing = false;
    if (owner) {
      const char *want = runs_as_owner(s->kind) ? owner : "NONE";
      if ((existing = existing_table_owner(a, s, live, &table_owner)))
        want = (const char *)table_owner.data;
      if (strcmp(want, current) != 0) {
        /* In a savepoint when partial-safe: an admin that may not act as
         * this table's owner (42501) fails this statement, not the repair. */
        snprintf(sql, sizeof sql, "%sSET LOCAL ROLE %s",
                 failed ? "SAVEPOINT pgguard_role; " : "", want);
        size_t mark = err->len;
        int rc = pgg_pq_exec(a->conn, sql, err);
        if (rc && failed && rc != PGG_ERR_UPSTREAM) {
          char msg[256];
          snprintf(msg, sizeof msg, "%s", bstr(err) + mark);
          pgg_pq_err_rewind(err, mark);
          if (!(rc = rollback_to(a, "pgguard_role"))) {
            if ((*failed)++ == 0)
              pgg_buf_printf(err, "%s failed: cannot act as the table's owner %s: %s [%s]",
                             pgg_stmt_kind_name(s->kind), want, msg, s->sql);
            continue;
          }
        }
        if (!rc && failed)
          rc = pgg_pq_exec(a->conn, "RELEASE SAVEPOINT pgguard_role", err);
        if (rc) {
          pgg_buf_printf(err, " (setting the role for %s)", pgg_stmt_kind_name(s->kind));
          pgg_buf_free(&table_owner);
          return rc;
        }
        snprintf(current, sizeof current, "%s", want);
      }
    }
    unsigned before = failed ? *failed : 0;
    int rc = run_one(a, s, failed, err);
    if (rc) {
      pgg_buf_free(&table_owner);
      return rc;
    }
    if (!failed || *failed == before)
      (*ran)++;
    /* Partial-safe runs commit after each statement on a table that
     * existed: its lock is not held while the rest waits for theirs. */
    if (failed && existing && i + 1 < p->n) {
      if ((rc = next_group(a, err)) != PGG_OK) {
        pgg_buf_free(&table_owner);
        return rc;
      }
      current[0] = 0;   /* SET LOCAL ROLE ended with the transaction */
    }
  }
  pgg_buf_free(&table_owner);
  return PGG_OK;
}

/* Move the plan's concurrent part (from its first concurrent statement
 * on) into builds, the builder's. */
static int take_builds(pgg_plan *p, pgg_plan *builds)
{
  size_t first = 0;
  while (first < p->n && !pgg_stmt_concurrent(p, first))
    first++;
  if (first == p->n)
    return PGG_OK;
  pgg_plan_free(builds);
  if (!(builds->stmts = calloc(p->n - first, sizeof *builds->stmts)))
    return PGG_ERR_NOMEM;
  builds->cap = p->n - first;
  for (size_t i = first; i < p->n; i++) {
    builds->stmts[builds->n++] = p->stmts[i];
    p->stmts[i] = (pgg_stmt){0};
  }
  return PGG_OK;
}

static bool plan_has(const pgg_plan *p, pgg_stmt_kind k)
{
  for (size_t i = 0; i < p->n; i++)
    if (p->stmts[i].kind == k)
      return true;
  return false;
}

/*
 * Fill the materialized views the repair created WITH NO DATA, each in a
 * transaction of its own after the repair committed: a refresh runs a
 * query of unknown cost, and the repair's lock must not wait for it. Until
 * then a query of the view gets PostgreSQL's own 55000 ("has not been
 * populated"); a refresh that fails leaves it so, and says why in
 * out->error while the repair itself stays applied (the view exists: it
 * is not drift).
 */
static unsigned refresh_matviews(pgg_admin *a, const pgg_plan *p, const char *owner,
                                 pgg_repair_result *out)
{
  unsigned done = 0;
  pgg_buf err;
  pgg_buf_init(&err);
  for (size_t i = 0; i < p->n; i++) {
    if (p->stmts[i].kind != PGG_STMT_REFRESH_MATVIEW)
      continue;
    char sql[320];
    snprintf(sql, sizeof sql, "BEGIN; SET LOCAL statement_timeout = %d; SET LOCAL ROLE %s",
             a->cfg.statement_timeout_ms, owner);
    pgg_buf_reset(&err);
    int rc = pgg_pq_exec(a->conn, sql, &err);
    if (!rc)
      rc = exec_stmt(a->conn, p->stmts[i].sql, &err);
    if (!rc)
      rc = pgg_pq_exec(a->conn, "COMMIT", &err);
    if (rc) {
      pgg_buf_append_u8(&err, 0);
      char msg[400];
      pgg_redact(&a->secrets, bstr(&err), msg, sizeof msg);
      snprintf(out->error, sizeof out->error, "%s failed: %s [%s]",
               pgg_stmt_kind_name(PGG_STMT_REFRESH_MATVIEW), msg, p->stmts[i].sql);
      rollback(a);
      if (!a->conn)
        break;
    } else {
      done++;
    }
  }
  pgg_buf_free(&err);
  return done;
}

/* Afterwards, outside any transaction: what drift is left. */
static void reread_drift(pgg_admin *a, const pgg_catalog *desired, pgg_repair_result *out)
{
  pgg_buf err;
  pgg_buf_init(&err);
  pgg_catalog live;
  pgg_catalog_init(&live);
  pgg_drift d;
  pgg_drift_init(&d);
  if (read_drift(a, desired, &live, &d, &err) == PGG_OK)
    fill_drift(out, &d);
  else
    rollback(a);
  pgg_drift_free(&d);
  pgg_catalog_free(&live);
  pgg_buf_free(&err);
}

int pgg_admin_repair(pgg_admin *a, const pgg_catalog *desired, pgg_repair_result *out)
{
  memset(out, 0, sizeof *out);
  double t0 = now_seconds();
  pgg_buf err, owner;
  pgg_buf_init(&err);
  pgg_buf_init(&owner);
  int rc = PGG_OK;
  const char *what = "repair failed";
  bool applied = false;

  if ((rc = verified_conn(a, true, &err)) != PGG_OK) {
    fail(a, out, "repair refused", &err);
    pgg_buf_free(&err);
    pgg_buf_free(&owner);
    out->seconds = now_seconds() - t0;
    return rc;
  }
  for (int round = 0; round < MAX_ROUNDS; round++) {
    pgg_catalog live;
    pgg_catalog_init(&live);
    pgg_drift d;
    pgg_drift_init(&d);
    pgg_plan plan;
    pgg_plan_init(&plan);
    bool again = false;
    unsigned ran = 0;

    /* (a) Under the lock, re-read: another sidecar may have repaired while
     * we waited, and then there is nothing left to do. */
    rc = begin_locked(a, round == 0, &err);
    if (rc) {
      what = "taking the repair lock";
      goto round_end;
    }
    if ((rc = read_drift(a, desired, &live, &d, &err)) != PGG_OK) {
      what = "reading the live catalog";
      goto round_end;
    }
    if (!anything_missing(&d)) {
      if ((rc = pgg_pq_exec(a->conn, "COMMIT", &err)) == PGG_OK)
        rc = fill_drift(out, &d);
      goto round_end;
    }
    /* (b) read_drift found which tables have rows: a NOT NULL column
     * without default can only go onto an empty one, an index onto one
     * with rows is built concurrently. */
    /* PGG_ERR_SCHEMA: some missing objects cannot be created additively
     * (see pgg_plan_build). Everything else is still worth creating: each
     * statement only adds, and what is left stays reported as drift. */
    rc = pgg_plan_build(&d, &live, &plan);
    if (rc == PGG_ERR_SCHEMA)
      rc = PGG_OK;
    if (rc) {
      pgg_buf_printf(&err, "%s", pgg_strerror(rc));
      what = "planning the repair";
      goto round_end;
    }
    if (plan.n == 0) {
      /* Missing, but nothing the planner may create additively. */
      if ((rc = pgg_pq_exec(a->conn, "COMMIT", &err)) == PGG_OK)
        rc = fill_drift(out, &d);
      goto round_end;
    }
    /* (c) PostgreSQL refuses to use an enum label in the transaction that
     * added it (55P04): labels are committed on their own, first; the next
     * round, still under the repair lock, re-reads and re-plans. */
    if (plan_has(&plan, PGG_STMT_ADD_ENUM_VALUE)) {
      rc = run_stmts(a, &plan, PGG_STMT_ADD_ENUM_VALUE, NULL, NULL, &ran, NULL, &err);
      if (!rc)
        rc = pgg_pq_exec(a->conn, "COMMIT", &err);
      if (!rc) {
        out->statements += ran;
        applied = true;
        again = true;
      }
      goto round_end;
    }
    /* (d) Everything else, new objects owned by the application's role;
     * a transaction of its own after each statement on an existing table
     * (run_stmts). */
    if ((rc = owner_role(a, &owner, &err)) != PGG_OK)
      goto round_end;
    if ((rc = pgg_buf_append_u8(&owner, 0)) != PGG_OK)
      goto round_end;
    /* tx_settings turned check_function_bodies off, as pg_dump does: a
     * function body may name a table created later in the plan, or one
     * only the application's search_path finds. */
    unsigned failed = 0;
    if (!rc)
      rc = run_stmts(a, &plan, -1, (const char *)owner.data, &live, &ran, &failed, &err);
    if (!rc && failed && !ran) {
      /* Nothing at all could be created: a failed repair, cooled down. */
      what = "repair failed";
      rc = PGG_ERR_DB;
      goto round_end;
    }
    if (!rc)
      rc = pgg_pq_exec(a->conn, "COMMIT", &err);
    if (!rc && failed) {
      /* The others are committed; the first refusal says why the rest is not. */
      out->failed_statements = failed;
      pgg_buf_append_u8(&err, 0);
      char msg[400];
      pgg_redact(&a->secrets, bstr(&err), msg, sizeof msg);
      snprintf(out->error, sizeof out->error, "%u of %u statements failed, the first: %s",
               failed, failed + ran, msg);
      pgg_buf_reset(&err);
    }
    if (!rc) {
      out->statements += ran;
      /* A plan of index builds alone created nothing yet: they are the
       * builder's, and the repair found nothing it could add now. */
      applied = applied || ran > 0;
      /* A refresh runs a query of unknown cost: not under the repair lock. */
      unlock_repair(a);
      if (plan_has(&plan, PGG_STMT_REFRESH_MATVIEW))
        out->statements += refresh_matviews(a, &plan, (const char *)owner.data, out);
      rc = take_builds(&plan, &out->builds);
    }

  round_end:
    if (rc)
      rollback(a);
    pgg_plan_free(&plan);
    pgg_drift_free(&d);
    pgg_catalog_free(&live);
    pgg_buf_reset(&owner);
    if (rc || !again)
      break;
  }

  unlock_repair(a);
  if (rc) {
    /* statements keeps counting what did commit: enum labels from an
     * earlier round stay, PostgreSQL cannot take them back. */
    fail(a, out, what, &err);
  } else {
    out->outcome = applied ? PGG_REPAIR_APPLIED : PGG_REPAIR_NOTHING;
    if (applied)
      reread_drift(a, desired, out);
  }
  pgg_buf_free(&err);
  pgg_buf_free(&owner);
  out->seconds = now_seconds() - t0;
  return rc;
}
