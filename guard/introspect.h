/*
 * introspect.h — the guard's libpq edge: reading one database's catalog into
 * a pgg_catalog, and the connection helpers desired.c, repair.c and cli.c share.
 */
#ifndef PGG_INTROSPECT_H
#define PGG_INTROSPECT_H

#include <libpq-fe.h>

#include "catalog.h"

/*
 * Read conn's database into *out (sorted). Outside a transaction it opens its
 * own REPEATABLE READ READ ONLY one; inside the caller's transaction it reads
 * there, in a savepoint it rolls back (what the repair does under its
 * advisory lock), leaving the session as it found it. A read that races a
 * concurrent DROP is retried. On failure *out is left empty and err says
 * why; returns PGG_ERR_UPSTREAM when the connection is gone, PGG_ERR_DB
 * otherwise.
 */
int pgg_introspect(PGconn *conn, pgg_catalog *out, pgg_buf *err);

/*
 * Add the names of conn's functions, procedures and aggregates to
 * out->routines: those in user schemas that no extension owns, one entry per
 * (schema, name) however many overloads it has. Run on the shadow only, so a
 * 42883 can be matched against the desired schema. One query; on failure err
 * says why (PGG_ERR_UPSTREAM when the connection is gone, PGG_ERR_DB otherwise).
 */
int pgg_introspect_routines(PGconn *conn, pgg_catalog *out, pgg_buf *err);

/*
 * For every live table that would get a missing column, constraint or
 * index, ask whether it holds a row and set has_rows on its live object:
 * the planner then adds a NOT NULL column nullable, a check NOT VALID and
 * an index concurrently, and pgg_drift_hazards holds back what would
 * rewrite it. A table that cannot be read (privilege, a lock held past
 * one second, row level security) counts as having rows.
 */
/* Mark desired columns whose default PostgreSQL cannot add without a
 * rewrite (guard/hazard.c): run on a session of the shadow database. */
int pgg_probe_defaults(PGconn *conn, pgg_catalog *desired, pgg_buf *err);

/* Append the quoted owner of table schema.table (NUL-terminated) to role;
 * false when the table or its owner cannot be read. */
bool pgg_pq_table_owner(PGconn *conn, const char *schema, const char *table, pgg_buf *role);

int pgg_introspect_has_rows(PGconn *conn, const pgg_drift *d, pgg_catalog *live,
                            pgg_buf *err);

/*
 * Connect to conninfo (a URL or key=value string, one host or several), with
 * its dbname replaced by dbname when that is not NULL. Adds connect_timeout=10
 * and target_session_attrs=read-write when the string sets none (so a list
 * of hosts leads to the primary), and silences notices. A session that lands
 * on a hot standby all the same (the string set target_session_attrs=any) is
 * closed: the guard writes, a standby cannot. Returns NULL with err set on
 * failure; pgg_pq_standby_message(err) tells a standby from other failures.
 */
PGconn *pgg_pq_connect(const char *conninfo, const char *dbname, pgg_buf *err);

/* One host of a connection string: the one an open session reached. */
typedef struct {
  char host[1025];      /* a name, an address or a socket directory */
  char hostaddr[64];    /* the address it was reached at, or "" (a socket) */
  char port[32];
} pgg_pq_host;

/* Where conn is connected; false when that cannot be told (or does not fit). */
bool pgg_pq_host_of(PGconn *conn, pgg_pq_host *out);

/*
 * pgg_pq_connect, but to at's host whatever hosts conninfo lists (at NULL:
 * the same as pgg_pq_connect). With a list of hosts, libpq gives up at the
 * first that refuses the database: a shadow database created on the primary
 * a moment ago is not on the standby yet, so its sessions go where the
 * session that created it went.
 */
PGconn *pgg_pq_connect_at(const char *conninfo, const char *dbname, const pgg_pq_host *at,
                          pgg_buf *err);

/* What pgg_pq_connect says of a standby it closed. */
#define PGG_PQ_STANDBY_NOTE "the server is a hot standby"

/*
 * Whether a failure's message (pgg_pq_connect's, or a repair's) says the
 * server is a standby or read-only: libpq's refusals under
 * target_session_attrs=read-write, PGG_PQ_STANDBY_NOTE, or SQLSTATE 25006
 * (read_only_sql_transaction) as pgg_pq_error writes it. Pure.
 */
bool pgg_pq_standby_message(const char *msg);

/*
 * Append PostgreSQL's error for a failed result (or the connection's message
 * when res is NULL) to err, on one line: "SQLSTATE: message (detail) (hint)".
 */
void pgg_pq_error(pgg_buf *err, PGconn *conn, const PGresult *res);

/* Run one command that returns no rows; on failure append the error to err. */
int pgg_pq_exec(PGconn *conn, const char *sql, pgg_buf *err);
/* The outcome of res (cleared here): PGG_OK for a command or rows, else its
 * error in err and PGG_ERR_DB, or PGG_ERR_UPSTREAM when the connection is gone. */
int pgg_pq_done(PGconn *conn, PGresult *res, pgg_buf *err);

/* Forget what was appended to err after its first len bytes. */
void pgg_pq_err_rewind(pgg_buf *err, size_t len);

/* The SQLSTATE of a failed result, or "" */
const char *pgg_pq_sqlstate(const PGresult *res);

#endif
