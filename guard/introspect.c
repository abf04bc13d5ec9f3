/*
 * introspect.c — reads one database's catalog (schemas, enums, sequences,
 * tables, columns, constraints, indexes) into a pgg_catalog, one query per kind.
 */
#include "introspect.h"
#include "exclude.h"

#include <stdlib.h>
#include <string.h>

/*
 * Every query runs with search_path = '', so format_type, pg_get_expr,
 * pg_get_indexdef and pg_get_constraintdef schema-qualify every name they
 * print: shadow and live then compare by text, and the planner can replay a
 * definition in any search_path.
 */

/* The schemas that hold user objects (n is the pg_namespace row). */
#define USER_NS                                                              \
  "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"        \
  " AND n.nspname !~ '^pg_(toast_)?temp_'"

/* The object (classid, objid) is not a member of an extension. */
#define NOT_EXT(classid, objid)                                              \
  " NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e"                        \
  " WHERE e.classid = '" classid "'::pg_catalog.regclass"                   \
  " AND e.objid = " objid " AND e.deptype = 'e')"

/*
 * The tables pgguard guards (c is the pg_class row, n its namespace):
 * ordinary and partitioned, not temporary, not an extension's. Partitions are
 * left out: the catalog has no way to say PARTITION OF, and creating one as a
 * plain table would be wrong.
 */
#define USER_TABLE                                                           \
  "c.relkind IN ('r', 'p') AND NOT c.relispartition"                         \
  " AND c.relpersistence <> 't' AND " USER_NS " AND"                         \
  NOT_EXT("pg_catalog.pg_class", "c.oid")

static const char q_schemas[] =
  "SELECT n.nspname FROM pg_catalog.pg_namespace n"
  " WHERE " USER_NS " AND" NOT_EXT("pg_catalog.pg_namespace", "n.oid");

/* One row per label, and one with a NULL label for an enum that has none. */
static const char q_enums[] =
  "SELECT n.nspname, t.typname, l.enumlabel,"
  " pg_catalog.row_number() OVER (PARTITION BY t.oid ORDER BY l.enumsortorder)"
  " FROM pg_catalog.pg_type t"
  " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
  " LEFT JOIN pg_catalog.pg_enum l ON l.enumtypid = t.oid"
  " WHERE t.typtype = 'e' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_type", "t.oid");

/* Identity columns' sequences (deptype 'i') come with their column. */
static const char q_sequences[] =
  "SELECT n.nspname, c.relname,"
  " 'AS ' || pg_catalog.format_type(s.seqtypid, NULL)"
  " || ' INCREMENT BY ' || s.seqincrement || ' MINVALUE ' || s.seqmin"
  " || ' MAXVALUE ' || s.seqmax || ' START WITH ' || s.seqstart"
  " || ' CACHE ' || s.seqcache"
  " || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END"
  " FROM pg_catalog.pg_sequence s"
  " JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relpersistence <> 't' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_class", "c.oid") " AND"
  " NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend i"
  " WHERE i.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
  " AND i.objid = c.oid AND i.deptype = 'i')";

static const char q_tables[] =
  "SELECT n.nspname, c.relname, c.relkind"
  " FROM pg_catalog.pg_class c"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE " USER_TABLE;

static const char q_columns[] =
  "SELECT n.nspname, c.relname, a.attname,"
  " pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,"
  " pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity,"
  " a.attgenerated, a.attnum"
  " FROM pg_catalog.pg_attribute a"
  " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " LEFT JOIN pg_catalog.pg_attrdef d"
  " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
  " WHERE a.attnum > 0 AND NOT a.attisdropped AND " USER_TABLE;

static const char q_constraints[] =
  "SELECT n.nspname, c.relname, k.conname, k.contype,"
  " pg_catalog.pg_get_constraintdef(k.oid)"
  " FROM pg_catalog.pg_constraint k"
  " JOIN pg_catalog.pg_class c ON c.oid = k.conrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE k.contype IN ('p', 'u', 'c', 'f') AND " USER_TABLE;

/* An index that backs a primary key, unique or exclusion constraint is the
 * constraint's business: the constraint creates it. */
static const char q_indexes[] =
  "SELECT n.nspname, c.relname, ic.relname,"
  " pg_catalog.pg_get_indexdef(x.indexrelid)"
  " FROM pg_catalog.pg_index x"
  " JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid"
  " JOIN pg_catalog.pg_class c ON c.oid = x.indrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE " USER_TABLE " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k"
  " WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid"
  " AND k.contype IN ('p', 'u', 'x'))";

/* ---- small libpq helpers shared by the guard's edge ------------------- */

static void noop_notice(void *arg, const char *message)
{
  (void)arg;
  (void)message;
}

/* Append s without its trailing newlines (libpq's messages end with one). */
static void append_trimmed(pgg_buf *b, const char *s)
{
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
    n--;
  pgg_buf_printf(b, "%.*s", (int)n, s);
}

const char *pgg_pq_sqlstate(const PGresult *res)
{
  const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  return s ? s : "";
}

void pgg_pq_error(pgg_buf *err, PGconn *conn, const PGresult *res)
{
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  if (!primary) {
    const char *m = res ? PQresultErrorMessage(res) : "";
    if (!m || !*m)
      m = PQerrorMessage(conn);
    append_trimmed(err, (m && *m) ? m : "unknown libpq error");
    return;
  }
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
  const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
  append_trimmed(err, primary);
  if (state)
    pgg_buf_printf(err, " (SQLSTATE %s)", state);
  if (detail) {
    pgg_buf_printf(err, "; DETAIL: ");
    append_trimmed(err, detail);
  }
  if (hint) {
    pgg_buf_printf(err, "; HINT: ");
    append_trimmed(err, hint);
  }
}

void pgg_pq_err_rewind(pgg_buf *err, size_t len)
{
  if (len < err->len) {
    err->len = len;
    /* The buffer's text stays a C string (pgg_buf_printf keeps a NUL). */
    err->data[len] = 0;
  }
}

int pgg_pq_exec(PGconn *conn, const char *sql, pgg_buf *err)
{
  PGresult *res = PQexec(conn, sql);
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    PQclear(res);
    return PGG_OK;
  }
  pgg_pq_error(err, conn, res);
  PQclear(res);
  return PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
}

/*
 * What libpq says when target_session_attrs=read-write turned a host down
 * (a hot standby, or default_transaction_read_only), what pgg_pq_connect
 * says when it turns one down itself, and a statement refused by a server
 * in recovery (SQLSTATE 25006).
 */
static const char *const standby_phrases[] = {
  "session is read-only", "server is in hot standby mode", PGG_PQ_STANDBY_NOTE,
  "(SQLSTATE 25006)",
};

bool pgg_pq_standby_message(const char *msg)
{
  for (size_t i = 0; msg && i < sizeof standby_phrases / sizeof standby_phrases[0]; i++)
    if (strstr(msg, standby_phrases[i]))
      return true;
  return false;
}

/*
 * Whether the session landed on a hot standby. PostgreSQL 14 and later
 * report in_hot_standby at start-up; an older server is asked.
 */
static bool on_standby(PGconn *conn)
{
  const char *s = PQparameterStatus(conn, "in_hot_standby");
  if (s)
    return strcmp(s, "on") == 0;
  PGresult *res = PQexec(conn, "SELECT pg_catalog.pg_is_in_recovery()");
  bool yes = res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
             PQgetvalue(res, 0, 0)[0] == 't';
  PQclear(res);
  return yes;
}

bool pgg_pq_host_of(PGconn *conn, pgg_pq_host *out)
{
  const char *host = PQhost(conn), *addr = PQhostaddr(conn), *port = PQport(conn);
  if (!host || !*host || !port || !*port)
    return false;
  int a = snprintf(out->host, sizeof out->host, "%s", host);
  int b = snprintf(out->hostaddr, sizeof out->hostaddr, "%s", addr ? addr : "");
  int c = snprintf(out->port, sizeof out->port, "%s", port);
  return a < (int)sizeof out->host && b < (int)sizeof out->hostaddr && c < (int)sizeof out->port;
}

PGconn *pgg_pq_connect(const char *conninfo, const char *dbname, pgg_buf *err)
{
  return pgg_pq_connect_at(conninfo, dbname, NULL, err);
}

static bool names_host(const char *keyword)
{
  return strcmp(keyword, "host") == 0 || strcmp(keyword, "hostaddr") == 0 ||
         strcmp(keyword, "port") == 0;
}

PGconn *pgg_pq_connect_at(const char *conninfo, const char *dbname, const pgg_pq_host *at,
                          pgg_buf *err)
{
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &perr);
  if (!opts) {
    pgg_buf_printf(err, "bad connection string: ");
    append_trimmed(err, perr ? perr : "out of memory");
    PQfreemem(perr);
    return NULL;
  }
  size_t n = 0;
  for (PQconninfoOption *o = opts; o->keyword; o++)
    n++;
  const char **kw = calloc(n + 8, sizeof *kw);
  const char **val = calloc(n + 8, sizeof *val);
  PGconn *conn = NULL;
  if (!kw || !val) {
    pgg_buf_printf(err, "out of memory");
    goto done;
  }
  size_t k = 0;
  bool has_dbname = false, has_timeout = false, has_appname = false, has_target = false;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    const char *v = o->val;
    if (strcmp(o->keyword, "dbname") == 0) {
      if (dbname)
        v = dbname;
      has_dbname = v != NULL;
    }
    if (strcmp(o->keyword, "connect_timeout") == 0 && v)
      has_timeout = true;
    if (strcmp(o->keyword, "target_session_attrs") == 0 && v)
      has_target = true;
    if ((strcmp(o->keyword, "application_name") == 0 ||
         strcmp(o->keyword, "fallback_application_name") == 0) && v)
      has_appname = true;
    if (!v || (at && names_host(o->keyword)))
      continue;
    kw[k] = o->keyword;
    val[k++] = v;
  }
  /* The address as well as the name: a name that resolves to several
   * servers must not lead elsewhere. */
  if (at) {
    kw[k] = "host";
    val[k++] = at->host;
    kw[k] = "port";
    val[k++] = at->port;
    if (at->hostaddr[0]) {
      kw[k] = "hostaddr";
      val[k++] = at->hostaddr;
    }
  }
  if (dbname && !has_dbname) {
    kw[k] = "dbname";
    val[k++] = dbname;
  }
  /* A server that does not answer must not hang a repair for the kernel's
   * TCP timeout. */
  if (!has_timeout) {
    kw[k] = "connect_timeout";
    val[k++] = "10";
  }
  /* So a DBA looking at pg_stat_activity or pg_locks sees who holds what. */
  if (!has_appname) {
    kw[k] = "fallback_application_name";
    val[k++] = "pgguard";
  }
  /* With several hosts (host=a,b or postgresql://a,b/db), the one that
   * accepts writes: after a failover the guard follows the new primary. With
   * one host, a standby is refused here rather than at the first repair. */
  if (!has_target) {
    kw[k] = "target_session_attrs";
    val[k++] = "read-write";
  }
  kw[k] = NULL;
  val[k] = NULL;
  /* expand_dbname = 0: the (replaced) dbname is a name, never a URL. */
  conn = PQconnectdbParams(kw, val, 0);
  if (!conn) {
    pgg_buf_printf(err, "out of memory");
  } else if (PQstatus(conn) != CONNECTION_OK) {
    pgg_buf_printf(err, "cannot connect to database \"%s\": ",
                   PQdb(conn) ? PQdb(conn) : "?");
    append_trimmed(err, PQerrorMessage(conn));
    if (!has_target && pgg_pq_standby_message(PQerrorMessage(conn)))
      pgg_buf_printf(err, " (target_session_attrs=read-write: no host of the URL is a "
                     "writable primary now)");
    PQfinish(conn);
    conn = NULL;
  } else if (on_standby(conn)) {
    /* The URL asked for any server (target_session_attrs=any, or standby):
     * a standby takes no repair and no shadow database. */
    pgg_buf_printf(err, "cannot use database \"%s\" on %s:%s: " PGG_PQ_STANDBY_NOTE
                   " (in_hot_standby = on); the guard needs the primary",
                   PQdb(conn) ? PQdb(conn) : "?", PQhost(conn) ? PQhost(conn) : "?",
                   PQport(conn) ? PQport(conn) : "?");
    PQfinish(conn);
    conn = NULL;
  } else {
    /* The guard's own statements raise NOTICEs (IF NOT EXISTS, ...); libpq
     * would print them on stderr, in the middle of `pgguard check`. */
    PQsetNoticeProcessor(conn, noop_notice, NULL);
  }
done:
  free(kw);
  free(val);
  PQconninfoFree(opts);
  return conn;
}

/* ---- introspection ------------------------------------------------------ */

static char *field(const PGresult *res, int row, int col)
{
  return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static PGresult *query(PGconn *conn, const char *sql, pgg_buf *err, int *rc)
{
  PGresult *res = PQexec(conn, sql);
  if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
    return res;
  pgg_buf_printf(err, "catalog query failed: ");
  pgg_pq_error(err, conn, res);
  PQclear(res);
  *rc = PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
  return NULL;
}

/* Row parsers: one per query, each turning its result into catalog objects. */

static int parse_schemas(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_SCHEMA, .schema = field(res, i, 0),
                    .name = field(res, i, 0)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_enums(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    char *schema = field(res, i, 0), *type = field(res, i, 1);
    char *label = field(res, i, 2);
    int pos = atoi(PQgetvalue(res, i, 3));
    /* The type itself once, on the row of its first label (or its only,
     * label-less row). */
    if (pos == 1) {
      pgg_object t = {.kind = PGG_OBJ_ENUM, .schema = schema, .name = type};
      rc = pgg_catalog_add(out, &t);
    }
    if (!rc && label) {
      pgg_object l = {.kind = PGG_OBJ_ENUM_LABEL, .schema = schema,
                      .parent = type, .name = label, .position = pos};
      rc = pgg_catalog_add(out, &l);
    }
  }
  return rc;
}

static int parse_sequences(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_SEQUENCE, .schema = field(res, i, 0),
                    .name = field(res, i, 1), .definition = field(res, i, 2)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_tables(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_TABLE, .schema = field(res, i, 0),
                    .name = field(res, i, 1), .relkind = PQgetvalue(res, i, 2)[0]};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_columns(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_COLUMN, .schema = field(res, i, 0),
                    .parent = field(res, i, 1), .name = field(res, i, 2),
                    .type = field(res, i, 3),
                    .not_null = PQgetvalue(res, i, 4)[0] == 't',
                    .default_expr = field(res, i, 5),
                    /* attidentity and attgenerated are "" when unset */
                    .identity = PQgetvalue(res, i, 6)[0],
                    .generated = PQgetvalue(res, i, 7)[0],
                    .position = atoi(PQgetvalue(res, i, 8))};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_constraints(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_CONSTRAINT, .schema = field(res, i, 0),
                    .parent = field(res, i, 1), .name = field(res, i, 2),
                    .contype = PQgetvalue(res, i, 3)[0],
                    .definition = field(res, i, 4)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_indexes(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_INDEX, .schema = field(res, i, 0),
                    .parent = field(res, i, 1), .name = field(res, i, 2),
                    .definition = field(res, i, 3)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static const struct {
  const char *sql;
  int (*parse)(const PGresult *, pgg_catalog *);
} kinds[] = {
  {q_schemas, parse_schemas},         {q_enums, parse_enums},
  {q_sequences, parse_sequences},     {q_tables, parse_tables},
  {q_columns, parse_columns},         {q_constraints, parse_constraints},
  {q_indexes, parse_indexes},
};

/*
 * pg_get_indexdef, pg_get_constraintdef and pg_get_expr read the catalog
 * caches, which see the latest committed state, not the snapshot the rows
 * came from: an index or constraint dropped by a concurrent DDL between the
 * two fails with XX000 "cache lookup failed". Such a read is simply retried.
 */
#define INTROSPECT_ATTEMPTS 3

static int read_all(PGconn *conn, pgg_catalog *out, pgg_buf *err, bool *retry)
{
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    PGresult *res = PQexec(conn, kinds[i].sql);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
      *retry = strcmp(pgg_pq_sqlstate(res), "XX000") == 0;
      pgg_buf_printf(err, "catalog query failed: ");
      pgg_pq_error(err, conn, res);
      PQclear(res);
      return PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
    }
    int rc = kinds[i].parse(res, out);
    PQclear(res);
    if (rc) {
      pgg_buf_printf(err, "out of memory reading the catalog");
      return rc;
    }
  }
  pgg_catalog_sort(out);
  return PGG_OK;
}

/*
 * One read. Outside a transaction: its own REPEATABLE READ READ ONLY one, so
 * all seven queries share one snapshot. Inside the caller's: a savepoint,
 * rolled back afterwards even on success, which also undoes the SET LOCAL
 * search_path, so the caller's session is left as it was.
 */
static int read_once(PGconn *conn, bool own, pgg_catalog *out, pgg_buf *err, bool *retry)
{
  *retry = false;
  int rc = pgg_pq_exec(conn, own ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                                 : "SAVEPOINT pgg_introspect", err);
  if (rc)
    return rc;
  rc = pgg_pq_exec(conn, "SET LOCAL search_path = ''", err);
  if (!rc)
    rc = read_all(conn, out, err, retry);
  if (own) {
    PQclear(PQexec(conn, "ROLLBACK"));
  } else {
    int rc2 = pgg_pq_exec(conn, "ROLLBACK TO SAVEPOINT pgg_introspect;"
                                " RELEASE SAVEPOINT pgg_introspect", err);
    if (!rc)
      rc = rc2;
    if (rc2)
      *retry = false;
  }
  return rc;
}

int pgg_introspect(PGconn *conn, pgg_catalog *out, pgg_buf *err)
{
  PGTransactionStatusType ts = PQtransactionStatus(conn);
  if (ts != PQTRANS_IDLE && ts != PQTRANS_INTRANS) {
    pgg_buf_printf(err, "introspection: connection is not ready (%s)",
                   ts == PQTRANS_INERROR ? "transaction aborted" : "busy or broken");
    return PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
  }
  size_t mark = err->len;
  int rc = PGG_OK;
  for (int attempt = 1; attempt <= INTROSPECT_ATTEMPTS; attempt++) {
    bool retry;
    rc = read_once(conn, ts == PQTRANS_IDLE, out, err, &retry);
    if (rc) {
      pgg_catalog_free(out);
      pgg_catalog_init(out);
    }
    if (!rc || !retry || attempt == INTROSPECT_ATTEMPTS)
      break;
    pgg_pq_err_rewind(err, mark);
  }
  if (!rc)
    pgg_catalog_exclude(out);   /* bookkeeping tables and --exclude: never compared */
  return rc;
}

/* ---- routine names (desired catalog only) ------------------------------ */

/* Fully qualified, so it needs no search_path of its own. */
static const char q_routines[] =
  "SELECT DISTINCT n.nspname, p.proname"
  " FROM pg_catalog.pg_proc p"
  " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
  " WHERE " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_proc", "p.oid");

int pgg_introspect_routines(PGconn *conn, pgg_catalog *out, pgg_buf *err)
{
  int rc = PGG_OK;
  PGresult *res = query(conn, q_routines, err, &rc);
  if (!res)
    return rc;
  for (int i = 0; i < PQntuples(res) && !rc; i++)
    rc = pgg_catalog_add_routine(out, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
  PQclear(res);
  if (rc)
    pgg_buf_printf(err, "out of memory reading the routines");
  return rc;
}

/* ---- rows of tables that are about to get a NOT NULL column ------------ */

/*
 * Does planning this missing object depend on whether its existing table has
 * rows? A NOT NULL column without a default cannot be added to one (the
 * planner adds it nullable), and a check constraint is added NOT VALID so
 * old rows are neither scanned nor able to fail it.
 */
static bool depends_on_rows(const pgg_object *o)
{
  if (o->kind == PGG_OBJ_COLUMN)
    return o->not_null && !o->default_expr && !o->identity && !o->generated;
  return o->kind == PGG_OBJ_CONSTRAINT && o->contype == 'c';
}

int pgg_introspect_has_rows(PGconn *conn, const pgg_drift *d, pgg_catalog *live,
                            pgg_buf *err)
{
  pgg_buf q;
  pgg_buf_init(&q);
  int rc = PGG_OK;
  for (size_t i = 0; i < d->n && !rc; i++) {
    const pgg_drift_item *it = &d->items[i];
    if (it->state != PGG_DRIFT_MISSING || it->implied || !it->desired ||
        !it->desired->parent || !depends_on_rows(it->desired))
      continue;
    const pgg_object *t = pgg_catalog_find(live, PGG_OBJ_TABLE, it->desired->schema,
                                           NULL, it->desired->parent);
    if (!t || t->has_rows)
      continue;
    pgg_buf_reset(&q);
    rc = pgg_buf_printf(&q, "SELECT EXISTS (SELECT 1 FROM ");
    if (!rc)
      rc = pgg_quote_ident(&q, t->schema);
    if (!rc)
      rc = pgg_buf_printf(&q, ".");
    if (!rc)
      rc = pgg_quote_ident(&q, t->name);
    if (!rc)
      rc = pgg_buf_printf(&q, ")");
    if (rc)
      break;
    PGresult *res = query(conn, (const char *)q.data, err, &rc);
    if (!res)
      break;
    /* live is ours to change: find() hands back a pointer into live->objs. */
    if (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't')
      live->objs[t - live->objs].has_rows = true;
    PQclear(res);
  }
  pgg_buf_free(&q);
  return rc;
}
