/*
 * build.c — the concurrent part of a repair: indexes, primary keys and
 * unique constraints of tables with rows, built with CREATE INDEX
 * CONCURRENTLY after the repair committed, on a session of their own.
 *
 * Each unit is three statements from the planner (see
 * PGG_STMT_DROP_INVALID_INDEX): the index is built under pgguard's own
 * name, then renamed or attached as a constraint. A build that fails
 * (duplicates, a lock wait over lock_timeout, a cancel) leaves an INVALID
 * index of that name; it is dropped at once and again before any retry.
 * pg_index must say INVALID first: a valid index of that name is a build
 * whose finish failed, and only the finish is retried.
 */
#include "guard.h"
#include "introspect.h"
#include "sqlfile.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pgg_builder {
  pthread_mutex_t mu;
  PGcancel *cancel;     /* the open session's, for pgg_builder_cancel */
  bool stopping;
};

pgg_builder *pgg_builder_new(void)
{
  pgg_builder *b = calloc(1, sizeof *b);
  if (b && pthread_mutex_init(&b->mu, NULL) != 0) {
    free(b);
    return NULL;
  }
  return b;
}

void pgg_builder_free(pgg_builder *b)
{
  if (!b)
    return;
  if (b->cancel)
    PQfreeCancel(b->cancel);
  pthread_mutex_destroy(&b->mu);
  free(b);
}

void pgg_builder_cancel(pgg_builder *b)
{
  pthread_mutex_lock(&b->mu);
  b->stopping = true;
  if (b->cancel) {
    char ignored[256];
    PQcancel(b->cancel, ignored, sizeof ignored);
  }
  pthread_mutex_unlock(&b->mu);
}

/* Publish (or withdraw, conn NULL) the session's cancel key; false when
 * the builder is stopping. */
static bool set_session(pgg_builder *b, PGconn *conn)
{
  pthread_mutex_lock(&b->mu);
  if (b->cancel)
    PQfreeCancel(b->cancel);
  b->cancel = conn ? PQgetCancel(conn) : NULL;
  bool go = !b->stopping;
  pthread_mutex_unlock(&b->mu);
  return go;
}

static bool stopping(pgg_builder *b)
{
  pthread_mutex_lock(&b->mu);
  bool s = b->stopping;
  pthread_mutex_unlock(&b->mu);
  return s;
}

static double now_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef enum { IDX_NONE, IDX_VALID, IDX_INVALID, IDX_UNKNOWN } index_state;

/* pg_index's word on pgguard's build: the name after "IF EXISTS " in the
 * unit's DROP statement. */
static index_state build_state(PGconn *conn, const pgg_stmt *drop)
{
  const char *name = strstr(drop->sql, " IF EXISTS ");
  if (!name)
    return IDX_UNKNOWN;
  const char *params[1] = {name + strlen(" IF EXISTS ")};
  PGresult *res = PQexecParams(conn, "SELECT x.indisvalid FROM pg_catalog.pg_index x"
                               " WHERE x.indexrelid = pg_catalog.to_regclass($1)",
                               1, NULL, params, NULL, NULL, 0);
  index_state st = IDX_UNKNOWN;
  if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
    st = PQntuples(res) == 0 ? IDX_NONE : PQgetvalue(res, 0, 0)[0] == 't' ? IDX_VALID : IDX_INVALID;
  PQclear(res);
  return st;
}

/* The owner of the table a statement works on, quoted, in role; false if unknown. */
static bool table_owner(PGconn *conn, const char *sql, pgg_buf *role)
{
  char schema[256], table[256];
  pgg_buf_reset(role);
  return pgg_sql_target(sql, schema, sizeof schema, table, sizeof table) && schema[0] &&
         pgg_buf_printf(role, "SET ROLE ") == PGG_OK &&
         pgg_pq_table_owner(conn, schema, table, role);
}

static void note_failure(pgg_build_result *out, const pgg_stmt *s, const pgg_buf *err)
{
  if (out->failed++ == 0)
    snprintf(out->error, sizeof out->error, "%s failed: %.*s [%s]", pgg_stmt_kind_name(s->kind),
             (int)err->len, (const char *)err->data, s->sql);
}

/*
 * A statement that may run long (CREATE INDEX CONCURRENTLY and its DROP):
 * sent under the mutex pgg_builder_cancel takes, so a cancel either finds
 * it running or finds stopping set before it is sent, never the gap in
 * between. PGG_ERR_BUSY when stopping.
 */
static int long_exec(pgg_builder *b, PGconn *conn, const char *sql, pgg_buf *err)
{
  pthread_mutex_lock(&b->mu);
  bool go = !b->stopping;
  int sent = go ? PQsendQuery(conn, sql) : 0;
  pthread_mutex_unlock(&b->mu);
  if (!go)
    return PGG_ERR_BUSY;
  if (!sent) {
    pgg_pq_error(err, conn, NULL);
    return PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
  }
  int rc = PGG_OK;
  PGresult *res;
  while ((res = PQgetResult(conn)) != NULL) {
    if (rc == PGG_OK)
      rc = pgg_pq_done(conn, res, err);
    else
      PQclear(res);
  }
  return rc;
}

static int set_lock_timeout(PGconn *conn, int ms, pgg_buf *err)
{
  char sql[64];
  snprintf(sql, sizeof sql, "SET lock_timeout = %d", ms);
  return pgg_pq_exec(conn, sql, err);
}

/*
 * Whether the goal of a unit (or of a foreign key that followed one) is
 * there already: another sidecar, or an earlier run, finished it. The
 * builder then builds nothing: a second index would be a duplicate that
 * nothing ever drops.
 */
static bool goal_exists(PGconn *conn, const pgg_stmt *finish)
{
  if (!finish->target[0] || !finish->target[1] || !finish->target[2])
    return false;
  const char *params[3] = {finish->target[0], finish->target[1], finish->target[2]};
  /* A relation of the goal's name blocks a rename and an attach alike (the
   * attached index takes the constraint's name); a constraint of that name
   * on the table is the goal itself. */
  PGresult *res = PQexecParams(conn,
      "SELECT 1 FROM pg_catalog.pg_class c"
      " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
      " WHERE n.nspname = $1 AND c.relname = $3"
      " UNION ALL SELECT 1 FROM pg_catalog.pg_constraint k"
      " JOIN pg_catalog.pg_class c ON c.oid = k.conrelid"
      " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
      " WHERE n.nspname = $1 AND c.relname = $2 AND k.conname = $3",
      3, NULL, params, NULL, NULL, 0);
  bool there = res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0;
  PQclear(res);
  return there;
}

/* Become the owner of the table sql works on, as the transactional part
 * runs its statements. A role that cannot be taken fails the statement:
 * never run as the admin instead. */
static int as_table_owner(PGconn *conn, const char *sql, pgg_buf *err)
{
  pgg_buf role;
  pgg_buf_init(&role);
  int rc = table_owner(conn, sql, &role) ? pgg_pq_exec(conn, (const char *)role.data, err)
                                         : PGG_ERR_DB;
  if (rc == PGG_ERR_DB && !err->len)
    pgg_buf_printf(err, "cannot tell the owner of the table");
  pgg_buf_free(&role);
  return rc;
}

/* What ends the run: a lost session, or pgguard stopping. */
static bool fatal(int rc)
{
  return rc == PGG_ERR_UPSTREAM || rc == PGG_ERR_BUSY;
}

/* A foreign key that waited for the key it references. */
static int run_single(PGconn *conn, const pgg_stmt *s, pgg_build_result *out, pgg_buf *err)
{
  if (goal_exists(conn, s)) {
    out->already++;
    return PGG_OK;
  }
  int rc = as_table_owner(conn, s->sql, err);
  if (!rc)
    rc = pgg_pq_exec(conn, s->sql, err);
  if (rc == PGG_ERR_UPSTREAM)
    return rc;
  if (rc)
    note_failure(out, s, err);
  else
    out->built++;
  pgg_buf_reset(err);
  return pgg_pq_exec(conn, "RESET ROLE", err);
}

/* One unit: drop a failed build, build, finish. PGG_ERR_UPSTREAM or
 * PGG_ERR_BUSY (stopping) ends the run. */
static int run_unit(pgg_builder *b, PGconn *conn, int lock_timeout_ms, const pgg_stmt *u,
                    pgg_build_result *out, pgg_buf *err)
{
  if (goal_exists(conn, &u[2])) {
    out->already++;
    return PGG_OK;
  }
  index_state st = build_state(conn, &u[0]);
  if (st == IDX_UNKNOWN) {
    pgg_buf_printf(err, "cannot read pg_index");
    note_failure(out, &u[0], err);
    pgg_buf_reset(err);
    return PQstatus(conn) == CONNECTION_OK ? PGG_OK : PGG_ERR_UPSTREAM;
  }
  const pgg_stmt *at = &u[1];
  int rc = as_table_owner(conn, u[1].sql, err);
  /* CREATE INDEX CONCURRENTLY waits for every older transaction of the
   * database, whatever it touches: a report query, pg_dump, an idle
   * session. lock_timeout would cancel the build after it did all its
   * work; it waits instead, blocking nobody (SHARE UPDATE EXCLUSIVE), and
   * stopping cancels it. */
  if (!rc)
    rc = set_lock_timeout(conn, 0, err);
  if (!rc && st == IDX_INVALID) {
    at = &u[0];
    rc = long_exec(b, conn, u[0].sql, err);
  }
  if (!rc && st != IDX_VALID) {
    at = &u[1];
    rc = long_exec(b, conn, u[1].sql, err);
    if (rc && !fatal(rc)) {
      /* Duplicates or a cancel: the build is left INVALID, dropped now
       * (the next run drops it when this one cannot). */
      note_failure(out, &u[1], err);
      pgg_buf_reset(err);
      if (build_state(conn, &u[0]) == IDX_INVALID)
        rc = long_exec(b, conn, u[0].sql, err);
      rc = fatal(rc) ? rc : PGG_OK;
      goto done;
    }
  }
  /* The finish takes ACCESS EXCLUSIVE (attach) or SHARE UPDATE EXCLUSIVE
   * (rename), briefly: its wait is bounded like the repair's. */
  if (!rc)
    rc = set_lock_timeout(conn, lock_timeout_ms, err);
  if (!rc) {
    at = &u[2];
    rc = pgg_pq_exec(conn, u[2].sql, err);
  }
  if (!rc)
    out->built++;
  else if (!fatal(rc))
    note_failure(out, at, err);
  if (!fatal(rc))
    rc = PGG_OK;
done:
  if (!fatal(rc))
    pgg_buf_reset(err);
  if (rc == PGG_OK)
    rc = pgg_pq_exec(conn, "RESET ROLE", err);
  if (rc == PGG_OK)
    rc = set_lock_timeout(conn, lock_timeout_ms, err);
  return rc;
}

int pgg_builder_run(pgg_builder *b, const char *conninfo, int lock_timeout_ms,
                    int statement_timeout_ms, const pgg_plan *units, pgg_build_result *out)
{
  memset(out, 0, sizeof *out);
  double t0 = now_seconds();
  pgg_buf err;
  pgg_buf_init(&err);
  int rc = PGG_OK;
  PGconn *conn = pgg_pq_connect(conninfo, NULL, &err);
  if (!conn) {
    rc = PGG_ERR_UPSTREAM;
    snprintf(out->error, sizeof out->error, "%.*s", (int)err.len, (const char *)err.data);
    goto out;
  }
  if (!set_session(b, conn))
    goto out;
  char sql[128];
  /* No statement_timeout for the builds, which may rightly take hours; a
   * foreign key that follows them gets the repair's. */
  snprintf(sql, sizeof sql, "SET statement_timeout = 0; SET lock_timeout = %d", lock_timeout_ms);
  rc = pgg_pq_exec(conn, sql, &err);
  PGresult *res = NULL;
  if (!rc) {
    snprintf(sql, sizeof sql, "SELECT pg_catalog.pg_try_advisory_lock(%lld)",
             (long long)PGG_BUILD_KEY);
    res = PQexec(conn, sql);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
      rc = pgg_pq_done(conn, res, &err);
    else {
      out->busy = PQgetvalue(res, 0, 0)[0] != 't';
      PQclear(res);
    }
  }
  if (rc) {
    snprintf(out->error, sizeof out->error, "%.*s", (int)err.len, (const char *)err.data);
    goto out;
  }
  for (size_t i = 0; !out->busy && i < units->n && !stopping(b);) {
    const pgg_stmt *u = &units->stmts[i];
    if (u[0].kind == PGG_STMT_ADD_CONSTRAINT) {
      snprintf(sql, sizeof sql, "SET statement_timeout = %d", statement_timeout_ms);
      rc = pgg_pq_exec(conn, sql, &err);
      if (!rc)
        rc = run_single(conn, u, out, &err);
      if (!rc)
        rc = pgg_pq_exec(conn, "SET statement_timeout = 0", &err);
      i++;
    } else if (i + 3 <= units->n && u[0].kind == PGG_STMT_DROP_INVALID_INDEX &&
               u[1].kind == PGG_STMT_CREATE_INDEX_CONCURRENTLY &&
               (u[2].kind == PGG_STMT_RENAME_INDEX ||
                u[2].kind == PGG_STMT_ADD_CONSTRAINT_USING_INDEX)) {
      rc = run_unit(b, conn, lock_timeout_ms, u, out, &err);
      i += 3;
    } else {
      break;  /* not the planner's shape: run nothing of it */
    }
    if (rc == PGG_ERR_BUSY) {
      rc = PGG_OK;   /* stopping: the rest is left to the next run */
      break;
    }
    if (rc) {
      snprintf(out->error, sizeof out->error, "%.*s", (int)err.len, (const char *)err.data);
      break;
    }
  }
  /* Closing the session releases the advisory lock. */
out:
  set_session(b, NULL);
  if (conn)
    PQfinish(conn);
  pgg_buf_free(&err);
  out->seconds = now_seconds() - t0;
  return rc;
}
