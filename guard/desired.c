/*
 * desired.c — loads the desired schema (--schema: one .sql file or a folder of
 * them) into a shadow database and reads the shadow's catalog back.
 */
#include "guard.h"
#include "introspect.h"
#include "migrations.h"
#include "sqlfile.h"
#include "history.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/*
 * PostgreSQL interprets the DDL, not pgguard: the shadow database is where
 * it does so. Its name carries a hash of the schema so an unchanged schema
 * reuses it (a restart costs one catalog read, not a reload), and a comment
 * marks it complete, so one left half-loaded by a crash is recognised and
 * rebuilt rather than trusted.
 */

#define SHADOW_PREFIX "pgguard_shadow_"
#define MAX_SCHEMA_FILE ((size_t)64 << 20)
#define MAX_DIR_DEPTH 16
/* How long to wait for another loader of the same shadow (seconds). */
#define SHADOW_WAIT_S 60
/* A session lock next to the repair's key, so sidecars of one database load
 * the shadow one after the other instead of racing CREATE DATABASE. */
#define SHADOW_LOCK_KEY (PGG_ADVISORY_KEY + 1)

typedef struct {
  char *path;   /* as opened, for messages */
  char *rel;    /* relative to --schema (its base name for a single file): hashed */
  char *text;   /* the content, NUL-terminated */
  size_t len;
  pgg_sql_list stmts;   /* its statements, as PostgreSQL's parser split them */
} schema_file;

typedef struct {
  schema_file *v;
  size_t n, cap;
} file_list;

/* A message buffer as a C string ("" when nothing was written). */
static const char *bstr(const pgg_buf *b)
{
  return b->len ? (const char *)b->data : "";
}

static void files_free(file_list *fl)
{
  for (size_t i = 0; i < fl->n; i++) {
    free(fl->v[i].path);
    free(fl->v[i].rel);
    free(fl->v[i].text);
    pgg_sql_list_free(&fl->v[i].stmts);
  }
  free(fl->v);
  memset(fl, 0, sizeof *fl);
}

static int files_push(file_list *fl, const char *path, const char *rel)
{
  if (fl->n == fl->cap) {
    size_t cap = fl->cap ? fl->cap * 2 : 16;
    schema_file *p = realloc(fl->v, cap * sizeof *p);
    if (!p)
      return PGG_ERR_NOMEM;
    fl->v = p;
    fl->cap = cap;
  }
  schema_file *f = &fl->v[fl->n];
  memset(f, 0, sizeof *f);
  f->path = strdup(path);
  f->rel = strdup(rel);
  if (!f->path || !f->rel) {
    free(f->path);
    free(f->rel);
    return PGG_ERR_NOMEM;
  }
  fl->n++;
  return PGG_OK;
}

static bool ends_with_sql(const char *name)
{
  size_t n = strlen(name);
  return n > 4 && strcmp(name + n - 4, ".sql") == 0;
}

/* Every *.sql regular file under dir (symlinks followed, dot-entries skipped). */
static int walk(file_list *fl, const char *dir, const char *rel, int depth, pgg_buf *err)
{
  if (depth > MAX_DIR_DEPTH) {
    pgg_buf_printf(err, "schema directory %s: nested deeper than %d levels", dir,
                   MAX_DIR_DEPTH);
    return PGG_ERR_SCHEMA;
  }
  DIR *d = opendir(dir);
  if (!d) {
    pgg_buf_printf(err, "schema directory %s: %s", dir, strerror(errno));
    return PGG_ERR_SCHEMA;
  }
  int rc = PGG_OK;
  struct dirent *e;
  char *path = NULL, *sub = NULL;
  while (!rc && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    free(path);
    free(sub);
    sub = NULL;
    if (asprintf(&path, "%s/%s", dir, e->d_name) < 0 ||
        asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) < 0) {
      path = NULL;
      rc = PGG_ERR_NOMEM;
      break;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
      pgg_buf_printf(err, "schema path %s: %s", path, strerror(errno));
      rc = PGG_ERR_SCHEMA;
    } else if (S_ISDIR(st.st_mode)) {
      rc = walk(fl, path, sub, depth + 1, err);
    } else if (S_ISREG(st.st_mode) && ends_with_sql(e->d_name)) {
      rc = files_push(fl, path, sub);
    }
  }
  free(path);
  free(sub);
  closedir(d);
  if (rc == PGG_ERR_NOMEM)
    pgg_buf_printf(err, "out of memory listing %s", dir);
  return rc;
}

static int cmp_rel(const void *a, const void *b)
{
  return strcmp(((const schema_file *)a)->rel, ((const schema_file *)b)->rel);
}

/*
 * Recent pg_dump versions wrap their output in psql's \restrict and
 * \unrestrict meta-commands, which the server would take as a syntax error.
 * Blanking those two lines (spaces, so positions and line numbers stay) is
 * all the "parsing" pgguard does.
 */
static void blank_psql_restrict(char *text, size_t len)
{
  size_t i = 0;
  while (i < len) {
    size_t eol = i;
    while (eol < len && text[eol] != '\n')
      eol++;
    static const char *const cmds[] = {"\\restrict ", "\\unrestrict "};
    for (int c = 0; c < 2; c++) {
      size_t n = strlen(cmds[c]);
      if (eol - i > n && memcmp(text + i, cmds[c], n) == 0) {
        memset(text + i, ' ', eol - i);
        break;
      }
    }
    i = eol + 1;
  }
}

/*
 * Split the file with PostgreSQL's parser and refuse, before anything runs,
 * a statement whose effect reaches past the schema: the file is loaded on
 * the production server (its shadow database), with the admin role.
 */
static int classify_file(schema_file *f, pgg_buf *err)
{
  pgg_buf e;
  pgg_buf_init(&e);
  int rc = pgg_sql_split(f->text, f->len, &f->stmts, &e);
  if (rc == PGG_ERR_NOMEM) {
    pgg_buf_printf(err, "schema file %s: out of memory", f->path);
  } else if (rc) {
    pgg_buf_printf(err, "schema file %s, %s", f->path, bstr(&e));
  }
  pgg_buf_free(&e);
  for (size_t i = 0; !rc && i < f->stmts.n; i++) {
    const pgg_sql_stmt *st = &f->stmts.v[i];
    if (st->cls != PGG_SQL_REFUSED)
      continue;
    pgg_buf_printf(err, "schema file %s, line %u: %s is refused: it acts on the whole server "
                   "(roles, databases, tablespaces, settings, server files or programs), not "
                   "on the schema, and pgguard runs the schema file on the production server "
                   "(in its shadow database) as the admin role; remove it from the schema file",
                   f->path, st->line, st->what);
    rc = PGG_ERR_SCHEMA;
  }
  return rc;
}

static int read_file(schema_file *f, pgg_buf *err)
{
  FILE *fp = fopen(f->path, "rb");
  if (!fp) {
    pgg_buf_printf(err, "schema file %s: %s", f->path, strerror(errno));
    return PGG_ERR_SCHEMA;
  }
  pgg_buf b;
  pgg_buf_init(&b);
  int rc = PGG_OK;
  char chunk[65536];
  size_t got;
  while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) {
    if (b.len + got > MAX_SCHEMA_FILE) {
      pgg_buf_printf(err, "schema file %s: larger than %zu MiB", f->path,
                     MAX_SCHEMA_FILE >> 20);
      rc = PGG_ERR_SCHEMA;
      break;
    }
    if ((rc = pgg_buf_append(&b, chunk, got)) != PGG_OK) {
      pgg_buf_printf(err, "schema file %s: out of memory", f->path);
      break;
    }
  }
  if (!rc && ferror(fp)) {
    pgg_buf_printf(err, "schema file %s: %s", f->path, strerror(errno));
    rc = PGG_ERR_SCHEMA;
  }
  fclose(fp);
  if (!rc && (rc = pgg_buf_append_u8(&b, 0)) != PGG_OK)
    pgg_buf_printf(err, "schema file %s: out of memory", f->path);
  if (rc) {
    pgg_buf_free(&b);
    return rc;
  }
  f->len = b.len - 1;
  f->text = (char *)b.data;
  const char *nul = memchr(f->text, 0, f->len);
  if (nul) {
    size_t line = 1;
    for (const char *p = f->text; p < nul; p++)
      line += *p == '\n';
    pgg_buf_printf(err, "schema file %s, line %zu: contains a NUL byte (not a text file?)",
                   f->path, line);
    return PGG_ERR_SCHEMA;
  }
  blank_psql_restrict(f->text, f->len);
  /* A UTF-8 byte order mark is not SQL; blanking it moves no line. */
  if (f->len >= 3 && memcmp(f->text, "\xEF\xBB\xBF", 3) == 0)
    memset(f->text, ' ', 3);
  return PGG_OK;
}

/* The content of dir/sqitch.plan (heap), or NULL when there is none. */
static char *read_sqitch_plan(const char *dir, pgg_buf *err, int *rc)
{
  char *path = NULL;
  *rc = PGG_OK;
  if (asprintf(&path, "%s/sqitch.plan", dir) < 0) {
    *rc = PGG_ERR_NOMEM;
    return NULL;
  }
  schema_file f = {.path = path};
  struct stat st;
  if (stat(path, &st) != 0) {
    free(path);
    return NULL;
  }
  *rc = read_file(&f, err);
  free(path);
  if (*rc) {
    free(f.text);
    return NULL;
  }
  return f.text;
}

/*
 * Keep the files the folder's migration tool would apply, in its order
 * (guard/migrations.c), and of dbmate files only their up sections.
 */
static int order_migrations(const char *dir, file_list *fl, pgg_mig_tool *tool, pgg_buf *err)
{
  int rc = PGG_OK;
  const char **rel = calloc(fl->n, sizeof *rel);
  bool *marker = calloc(fl->n, sizeof *marker);
  size_t *order = calloc(fl->n, sizeof *order), norder = 0;
  schema_file *kept = calloc(fl->n, sizeof *kept);
  char *plan = read_sqitch_plan(dir, err, &rc);
  if (!rc && (!rel || !marker || !order || !kept))
    rc = PGG_ERR_NOMEM;
  for (size_t i = 0; !rc && i < fl->n; i++) {
    rel[i] = fl->v[i].rel;
    marker[i] = pgg_dbmate_has_up(fl->v[i].text, fl->v[i].len);
  }
  if (!rc)
    rc = pgg_migrations_order(rel, fl->n, marker, plan, tool, order, &norder, err);
  if (!rc && norder == 0) {
    pgg_buf_printf(err, "schema directory %s: no file a %s migration would apply", dir,
                   pgg_mig_tool_name(*tool));
    rc = PGG_ERR_SCHEMA;
  }
  if (!rc) {
    /* Move the chosen files, in order, to the front; free the others. */
    bool *chosen = marker;   /* reused: markers are read already */
    memset(chosen, 0, fl->n * sizeof *chosen);
    for (size_t k = 0; k < norder; k++) {
      kept[k] = fl->v[order[k]];
      chosen[order[k]] = true;
    }
    for (size_t i = 0; i < fl->n; i++) {
      if (!chosen[i]) {
        free(fl->v[i].path);
        free(fl->v[i].rel);
        free(fl->v[i].text);
      }
    }
    memcpy(fl->v, kept, norder * sizeof *kept);
    fl->n = norder;
    if (*tool == PGG_MIG_DBMATE)
      for (size_t k = 0; k < fl->n; k++)
        pgg_dbmate_keep_up(fl->v[k].text, fl->v[k].len);
  } else if (rc == PGG_ERR_NOMEM) {
    pgg_buf_printf(err, "out of memory ordering %s", dir);
  }
  free(plan);
  free(rel);
  free(marker);
  free(order);
  free(kept);
  return rc;
}

/* The files of --schema in the order they apply, with their contents. */
static int collect_files(const char *schema_path, file_list *fl, pgg_mig_tool *tool, pgg_buf *err)
{
  *tool = PGG_MIG_PLAIN;
  if (!schema_path || !*schema_path) {
    pgg_buf_printf(err, "no desired schema: give --schema FILE.sql or a folder of .sql files");
    return PGG_ERR_CONFIG;
  }
  struct stat st;
  if (stat(schema_path, &st) != 0) {
    pgg_buf_printf(err, "schema path %s: %s", schema_path, strerror(errno));
    return PGG_ERR_SCHEMA;
  }
  int rc;
  if (S_ISDIR(st.st_mode)) {
    rc = walk(fl, schema_path, "", 0, err);
    if (!rc && fl->n == 0) {
      pgg_buf_printf(err, "schema directory %s holds no .sql file", schema_path);
      rc = PGG_ERR_SCHEMA;
    }
    /* Byte-wise first, so the listing is the same whatever readdir says. */
    if (!rc)
      qsort(fl->v, fl->n, sizeof *fl->v, cmp_rel);
    for (size_t i = 0; !rc && i < fl->n; i++)
      rc = read_file(&fl->v[i], err);
    if (!rc)
      rc = order_migrations(schema_path, fl, tool, err);
    for (size_t i = 0; !rc && i < fl->n; i++)
      rc = classify_file(&fl->v[i], err);
    return rc;
  } else if (S_ISREG(st.st_mode)) {
    const char *base = strrchr(schema_path, '/');
    rc = files_push(fl, schema_path, base ? base + 1 : schema_path);
    if (rc)
      pgg_buf_printf(err, "out of memory");
  } else {
    pgg_buf_printf(err, "schema path %s is neither a file nor a directory", schema_path);
    rc = PGG_ERR_SCHEMA;
  }
  for (size_t i = 0; !rc && i < fl->n; i++)
    rc = read_file(&fl->v[i], err);
  for (size_t i = 0; !rc && i < fl->n; i++)
    rc = classify_file(&fl->v[i], err);
  return rc;
}

/*
 * FNV-1a 64 over a format tag, then each file's relative path and content,
 * NUL-separated. This names a scratch database, it guards nothing: a
 * collision costs a wrong shadow only for someone who crafts one against
 * their own schema.
 */
static uint64_t schema_hash(const file_list *fl)
{
  uint64_t h = 0xcbf29ce484222325ULL;
  const uint64_t prime = 0x100000001b3ULL;
  static const char tag[] = "pgguard shadow v1";
  for (size_t i = 0; i < sizeof tag; i++)
    h = (h ^ (uint8_t)tag[i]) * prime;
  for (size_t f = 0; f < fl->n; f++) {
    const char *parts[2] = {fl->v[f].rel, fl->v[f].text};
    size_t lens[2] = {strlen(fl->v[f].rel) + 1, fl->v[f].len + 1};
    for (int p = 0; p < 2; p++)
      for (size_t i = 0; i < lens[p]; i++)
        h = (h ^ (uint8_t)parts[p][i]) * prime;
  }
  return h;
}

/* ---- applying the files ------------------------------------------------- */

/*
 * PostgreSQL reports an error's position as a 1-based count of characters
 * (not bytes) into the query string; turn it into a line number. In a
 * SQL_ASCII database every byte counts as one character.
 */
static unsigned line_of_position(const char *text, size_t len, long pos, bool bytes)
{
  unsigned line = 1;
  long chars = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    if (bytes || (c & 0xC0) != 0x80)
      chars++;
    if (chars >= pos)
      break;
    if (c == '\n')
      line++;
  }
  return line;
}

/* "schema file F, line L: " for an error in the statement at st. */
static void where(pgg_buf *err, const schema_file *f, const pgg_sql_stmt *st, PGconn *conn,
                  const PGresult *res)
{
  unsigned line = st->line;
  const char *pos = res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
  if (pos && atol(pos) > 0) {
    const char *enc = PQparameterStatus(conn, "server_encoding");
    bool bytes = enc && strcmp(enc, "SQL_ASCII") == 0;
    line += line_of_position(f->text + st->off, st->len, atol(pos), bytes) - 1;
  }
  pgg_buf_printf(err, "schema file %s, line %u: ", f->path, line);
}

/* Run one statement (its bytes copied out, NUL-terminated). */
static PGresult *run_stmt(PGconn *conn, const schema_file *f, const pgg_sql_stmt *st)
{
  char *sql = strndup(f->text + st->off, st->len);
  if (!sql)
    return NULL;
  PGresult *res = PQexec(conn, sql);
  free(sql);
  return res;
}

static bool ok_status(const PGresult *res)
{
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
}

/*
 * A statement that names roles failed: because a role does not exist on
 * this server (42704) or the admin role may not act as it (42501)? Then the
 * statement only matters for ownership and privileges, which the catalogs
 * pgguard compares do not hold.
 */
static bool role_failure(const PGresult *res)
{
  const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  return code && (strcmp(code, "42704") == 0 || strcmp(code, "42501") == 0);
}

/*
 * Statement by statement, as PostgreSQL's own parser split the file: one
 * transaction for the whole file (as `psql -1 -f` or Prisma's migrate),
 * unless the file manages its own; a statement that names roles runs in a
 * savepoint, so a role missing on this server skips it with a warning.
 */
static int apply_file(PGconn *conn, const schema_file *f, pgg_buf *err, pgg_buf *notes)
{
  bool own_tx = false;
  for (size_t i = 0; i < f->stmts.n; i++)
    own_tx |= f->stmts.v[i].cls == PGG_SQL_TRANSACTION;
  int rc = PGG_OK;
  pgg_buf e;
  pgg_buf_init(&e);
  if (!own_tx && (rc = pgg_pq_exec(conn, "BEGIN", &e)) != PGG_OK) {
    pgg_buf_printf(err, "schema file %s: BEGIN: %s", f->path, bstr(&e));
    pgg_buf_free(&e);
    return PGG_ERR_UPSTREAM;
  }
  for (size_t i = 0; i < f->stmts.n && !rc; i++) {
    const pgg_sql_stmt *st = &f->stmts.v[i];
    bool guarded = st->cls == PGG_SQL_ROLE && PQtransactionStatus(conn) == PQTRANS_INTRANS;
    if (guarded && pgg_pq_exec(conn, "SAVEPOINT pgguard_role_statement", &e) != PGG_OK)
      guarded = false;
    PGresult *res = run_stmt(conn, f, st);
    ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      /* COPY ... FROM stdin data lines (pg_dump with data) are psql's business. */
      PQclear(res);
      pgg_buf_printf(err, "schema file %s, line %u: COPY is not supported in a schema file; "
                     "use a schema-only dump", f->path, st->line);
      while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
      rc = PGG_ERR_SCHEMA;
      break;
    }
    if (ok_status(res)) {
      PQclear(res);
      if (guarded)
        pgg_pq_exec(conn, "RELEASE SAVEPOINT pgguard_role_statement", &e);
      continue;
    }
    if (guarded && role_failure(res) &&
        pgg_pq_exec(conn, "ROLLBACK TO SAVEPOINT pgguard_role_statement", &e) == PGG_OK) {
      if (notes) {
        where(notes, f, st, conn, res);
        pgg_buf_printf(notes, "skipped, it names a role this server lacks or the admin role may "
                       "not act as: ");
        pgg_pq_error(notes, conn, res);
        pgg_buf_printf(notes, "\n");
      }
      PQclear(res);
      continue;
    }
    where(err, f, st, conn, res);
    pgg_pq_error(err, conn, res);
    PQclear(res);
    rc = PQstatus(conn) == CONNECTION_OK ? PGG_ERR_SCHEMA : PGG_ERR_UPSTREAM;
  }
  if (rc) {
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
      PQclear(PQexec(conn, "ROLLBACK"));
  } else if (PQtransactionStatus(conn) == PQTRANS_INTRANS) {
    /* Ours, or one the file opened and did not close: closed as psql would
     * at the end of the file. */
    if ((rc = pgg_pq_exec(conn, "COMMIT", &e)) != PGG_OK)
      pgg_buf_printf(err, "schema file %s: COMMIT at its end failed: %s", f->path, bstr(&e));
  }
  pgg_buf_free(&e);
  return rc;
}

static int apply_files(PGconn *conn, const file_list *fl, pgg_buf *err, pgg_buf *notes)
{
  /* Positions are counted in characters of the text as we sent it. */
  if (PQsetClientEncoding(conn, "UTF8") != 0) {
    pgg_buf_printf(err, "shadow database: cannot set client_encoding UTF8: ");
    pgg_pq_error(err, conn, NULL);
    return PGG_ERR_UPSTREAM;
  }
  /* As pg_dump's own output sets it: a function body may name a table the
   * file creates further down. A file may still set it back. */
  int rc0 = pgg_pq_exec(conn, "SET check_function_bodies = off", err);
  if (rc0)
    return rc0;
  for (size_t i = 0; i < fl->n; i++) {
    int rc = apply_file(conn, &fl->v[i], err, notes);
    if (rc)
      return rc;
  }
  return PGG_OK;
}

/* ---- the shadow database ------------------------------------------------ */

static void sleep_ms(long ms)
{
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Build "<verb> <quoted name> <tail>" in q (reset first). */
static int build_db_stmt(pgg_buf *q, const char *verb, const char *db, const char *tail)
{
  pgg_buf_reset(q);
  int rc = pgg_buf_printf(q, "%s ", verb);
  if (!rc)
    rc = pgg_quote_ident(q, db);
  if (!rc)
    rc = pgg_buf_printf(q, "%s", tail);
  return rc;
}

static int comment_db(PGconn *conn, const char *db, const char *comment, pgg_buf *err)
{
  pgg_buf q;
  pgg_buf_init(&q);
  int rc = build_db_stmt(&q, "COMMENT ON DATABASE", db, " IS ");
  if (!rc)
    rc = pgg_quote_literal(&q, comment);
  if (!rc)
    rc = pgg_buf_append_u8(&q, 0);
  if (!rc)
    rc = pgg_pq_exec(conn, (const char *)q.data, err);
  pgg_buf_free(&q);
  return rc;
}

/* The comment on database db (current_database() when db is NULL): *exists
 * says whether the database exists, *comment is heap or NULL. */
static int db_comment(PGconn *conn, const char *db, bool *exists, char **comment,
                      pgg_buf *err)
{
  const char *params[1] = {db};
  PGresult *res = PQexecParams(conn,
      "SELECT pg_catalog.shobj_description(d.oid, 'pg_database')"
      " FROM pg_catalog.pg_database d"
      " WHERE d.datname = COALESCE($1, pg_catalog.current_database())",
      1, NULL, params, NULL, NULL, 0);
  *exists = false;
  *comment = NULL;
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
    pgg_pq_error(err, conn, res);
    PQclear(res);
    return PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
  }
  int rc = PGG_OK;
  if (PQntuples(res) == 1) {
    *exists = true;
    if (!PQgetisnull(res, 0, 0) && !(*comment = strdup(PQgetvalue(res, 0, 0))))
      rc = PGG_ERR_NOMEM;
  }
  PQclear(res);
  return rc;
}

/* Connect to the shadow and read its catalog, on a fresh session: the
 * schema files may have SET anything on the loading one. */
static int read_shadow(const char *conninfo, const char *dbname, const pgg_pq_host *at,
                       pgg_catalog *desired, pgg_buf *err)
{
  PGconn *conn = pgg_pq_connect_at(conninfo, dbname, at, err);
  if (!conn)
    return PGG_ERR_UPSTREAM;
  int rc = pgg_introspect(conn, desired, err);
  if (!rc)
    rc = pgg_introspect_routines(conn, desired, err);
  if (!rc)
    rc = pgg_probe_defaults(conn, desired, err);
  PQfinish(conn);
  return rc;
}

/*
 * Drop shadow databases no pgguard needs: all but the one just loaded, the
 * --shadow-keep newest others (a rolling deploy's previous version) and any
 * that an admin session announces it uses (PGG_SHADOW_USE_KEY in pg_locks,
 * cluster-wide). Decided in the maintenance database under one lock every
 * sidecar of the server shares; best effort, never failing the load. A
 * shadow someone is connected to refuses DROP (55006) and stays.
 */
static const char q_old_shadows[] =
  "SELECT d.datname FROM pg_catalog.pg_database d"
  " WHERE d.datname ~ '^pgguard_shadow_[0-9a-f]{16}$' AND d.datname <> $1"
  "   AND pg_catalog.shobj_description(d.oid, 'pg_database') LIKE 'pgguard shadow %'"
  "   AND ('x' || lpad(right(d.datname, 8), 8, '0'))::bit(32)::int & 2147483647 NOT IN ("
  "     SELECT l.objid::bigint FROM pg_catalog.pg_locks l"
  "      WHERE l.locktype = 'advisory' AND l.classid = $2::oid AND l.objsubid = 2)"
  " ORDER BY d.oid DESC OFFSET $3";

static void prune_shadows(const pgg_guard_config *cfg, const pgg_pq_host *here,
                          const char *current, pgg_buf *notes)
{
  pgg_buf e, q;
  pgg_buf_init(&e);
  pgg_buf_init(&q);
  PGconn *m = pgg_pq_connect_at(cfg->admin_url, "postgres", here, &e);
  PGresult *res = NULL;
  if (!m) {
    if (notes)
      pgg_buf_printf(notes, "old shadow databases not pruned: the maintenance database: %s\n",
                     bstr(&e));
    goto out;
  }
  pgg_buf_printf(&q, "SELECT pg_catalog.pg_try_advisory_lock(%lld)",
                 (long long)PGG_SHADOW_PRUNE_KEY);
  res = PQexec(m, (const char *)q.data);
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "t") != 0)
    goto out;   /* another pgguard prunes right now */
  PQclear(res);
  char key[16], keep[16];
  snprintf(key, sizeof key, "%d", PGG_SHADOW_USE_KEY);
  snprintf(keep, sizeof keep, "%d", cfg->shadow_keep > 0 ? cfg->shadow_keep : 0);
  const char *params[3] = {current, key, keep};
  res = PQexecParams(m, q_old_shadows, 3, NULL, params, NULL, NULL, 0);
  if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
    if (notes) {
      pgg_buf_printf(notes, "old shadow databases not pruned: ");
      pgg_pq_error(notes, m, res);
      pgg_buf_printf(notes, "\n");
    }
    goto out;
  }
  for (int i = 0; i < PQntuples(res); i++) {
    const char *db = PQgetvalue(res, i, 0);
    if (build_db_stmt(&q, "DROP DATABASE", db, "") != PGG_OK)
      break;
    PGresult *d = PQexec(m, (const char *)q.data);
    if (notes && d && PQresultStatus(d) == PGRES_COMMAND_OK)
      pgg_buf_printf(notes, "dropped the old shadow database %s\n", db);
    PQclear(d);
  }
out:
  PQclear(res);
  if (m)
    PQfinish(m);   /* also releases the pruning lock */
  pgg_buf_free(&q);
  pgg_buf_free(&e);
}

static int load_own_shadow(const pgg_guard_config *cfg, const file_list *fl, uint64_t hash,
                           pgg_catalog *desired, pgg_buf *err, pgg_buf *notes)
{
  char dbname[64], complete[96];
  snprintf(dbname, sizeof dbname, SHADOW_PREFIX "%016llx", (unsigned long long)hash);
  snprintf(complete, sizeof complete, "pgguard shadow %016llx complete",
           (unsigned long long)hash);

  pgg_buf e;
  pgg_buf_init(&e);
  PGconn *admin = pgg_pq_connect(cfg->admin_url, NULL, &e);
  if (!admin) {
    pgg_buf_printf(err, "admin database: %s", bstr(&e));
    pgg_buf_free(&e);
    return PGG_ERR_UPSTREAM;
  }
  /* The admin URL may list several hosts: the shadow lives on the one this
   * session reached (the primary). */
  pgg_pq_host at;
  const pgg_pq_host *here = pgg_pq_host_of(admin, &at) ? &at : NULL;
  pgg_buf q;
  pgg_buf_init(&q);
  int rc = pgg_buf_printf(&q, "SET lock_timeout = '%ds'; SELECT pg_catalog.pg_advisory_lock(%lld)",
                          SHADOW_WAIT_S, (long long)SHADOW_LOCK_KEY);
  if (!rc && (rc = pgg_pq_exec(admin, (const char *)q.data, &e)) != PGG_OK)
    pgg_buf_printf(err, "waiting for another pgguard loading the shadow database: %s",
                   bstr(&e));

  bool done = false;
  for (int attempt = 0; !rc && !done; attempt++) {
    bool exists;
    char *comment = NULL;
    pgg_buf_reset(&e);
    rc = db_comment(admin, dbname, &exists, &comment, &e);
    if (rc) {
      pgg_buf_printf(err, "reading the shadow database's state: %s", bstr(&e));
      break;
    }
    bool reusable = exists && comment && strcmp(comment, complete) == 0;
    free(comment);
    if (reusable) {
      done = true;
      break;
    }
    if (attempt >= SHADOW_WAIT_S) {
      pgg_buf_printf(err, "shadow database %s: still being loaded by another process "
                     "after %d s", dbname, SHADOW_WAIT_S);
      rc = PGG_ERR_SCHEMA;
      break;
    }
    if (exists) {
      /* Half-loaded (a crash, or a failed file): ours to rebuild. DROP
       * without FORCE fails while someone is connected, which is the case
       * when another server's pgguard is loading it right now. */
      pgg_buf_reset(&e);
      if ((rc = build_db_stmt(&q, "DROP DATABASE", dbname, "")) != PGG_OK)
        break;
      PGresult *res = PQexec(admin, (const char *)q.data);
      if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
      } else if (strcmp(pgg_pq_sqlstate(res), "55006") == 0) {
        PQclear(res);
        sleep_ms(1000);
        continue;
      } else {
        pgg_buf_printf(err, "dropping the half-loaded shadow database %s: ", dbname);
        pgg_pq_error(err, admin, res);
        PQclear(res);
        rc = PGG_ERR_DB;
        break;
      }
    }
    if ((rc = build_db_stmt(&q, "CREATE DATABASE", dbname, " TEMPLATE template0")) != PGG_OK)
      break;
    PGresult *res = PQexec(admin, (const char *)q.data);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
      const char *state = pgg_pq_sqlstate(res);
      if (strcmp(state, "42P04") == 0 || strcmp(state, "23505") == 0) {
        /* Created a moment ago by someone not under our lock. */
        PQclear(res);
        sleep_ms(1000);
        continue;
      }
      pgg_buf_printf(err, "creating the shadow database %s: ", dbname);
      pgg_pq_error(err, admin, res);
      if (strcmp(state, "42501") == 0)
        pgg_buf_printf(err, " (give the admin role CREATEDB, or pass --shadow-url)");
      PQclear(res);
      rc = PQstatus(admin) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
      break;
    }
    PQclear(res);

    pgg_buf_reset(&e);
    PGconn *shadow = pgg_pq_connect_at(cfg->admin_url, dbname, here, &e);
    if (!shadow) {
      pgg_buf_printf(err, "shadow database: %s", bstr(&e));
      rc = PGG_ERR_UPSTREAM;
      break;
    }
    rc = apply_files(shadow, fl, err, notes);
    PQfinish(shadow);
    if (rc) {
      /* Useless to anyone and named after content that does not load:
       * drop it now rather than leave it to the next start. */
      if (build_db_stmt(&q, "DROP DATABASE IF EXISTS", dbname, "") == PGG_OK)
        PQclear(PQexec(admin, (const char *)q.data));
      break;
    }
    pgg_buf_reset(&e);
    if ((rc = comment_db(admin, dbname, complete, &e)) != PGG_OK) {
      pgg_buf_printf(err, "marking the shadow database %s complete: %s", dbname,
                     bstr(&e));
      break;
    }
    done = true;
  }
  PQfinish(admin);  /* also releases the session advisory lock */
  pgg_buf_free(&q);
  pgg_buf_free(&e);
  if (rc)
    return rc;
  pgg_buf_init(&e);
  rc = read_shadow(cfg->admin_url, dbname, here, desired, &e);
  if (rc)
    pgg_buf_printf(err, "reading the shadow database %s: %s", dbname, bstr(&e));
  pgg_buf_free(&e);
  if (!rc)
    prune_shadows(cfg, here, dbname, notes);
  return rc;
}

/* ---- a shadow database the operator gave (--shadow-url) ----------------- */

#define USER_NS_SQL                                                          \
  "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"        \
  " AND n.nspname !~ '^pg_(toast_)?temp_'"

/* What a database holds beyond a fresh one's empty public schema. */
static const char q_user_objects[] =
  "SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE " USER_NS_SQL ")"
  " + (SELECT pg_catalog.count(*) FROM pg_catalog.pg_proc p"
  " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE " USER_NS_SQL ")"
  " + (SELECT pg_catalog.count(*) FROM pg_catalog.pg_type t"
  " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE " USER_NS_SQL
  " AND t.typrelid = 0 AND t.typelem = 0)"
  " + (SELECT pg_catalog.count(*) FROM pg_catalog.pg_namespace n"
  " WHERE " USER_NS_SQL " AND n.nspname <> 'public')"
  " + (SELECT pg_catalog.count(*) FROM pg_catalog.pg_extension"
  " WHERE extname <> 'plpgsql')";

/* Empties a shadow database pgguard itself filled before (its comment says
 * so): every user schema and extension goes, public comes back empty. */
static const char q_reset_shadow[] =
  "DO $pgguard$ DECLARE s text; BEGIN"
  " FOR s IN SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE " USER_NS_SQL " LOOP"
  " EXECUTE pg_catalog.format('DROP SCHEMA %I CASCADE', s); END LOOP;"
  " FOR s IN SELECT extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql' LOOP"
  " EXECUTE pg_catalog.format('DROP EXTENSION %I CASCADE', s); END LOOP;"
  " CREATE SCHEMA public; END $pgguard$";

/* The identity of the database a session is in: name, oid, server start. */
static const char q_identity[] =
  "SELECT d.datname || ' ' || d.oid || ' ' || pg_catalog.pg_postmaster_start_time()"
  " FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()";

static char *one_value(PGconn *conn, const char *sql, pgg_buf *err)
{
  PGresult *res = PQexec(conn, sql);
  char *v = NULL;
  if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
    if (!(v = strdup(PQgetvalue(res, 0, 0))))
      pgg_buf_printf(err, "out of memory");
  } else {
    pgg_pq_error(err, conn, res);
  }
  PQclear(res);
  return v;
}

static int load_given_shadow(const pgg_guard_config *cfg, const file_list *fl, uint64_t hash,
                             pgg_catalog *desired, pgg_buf *err, pgg_buf *notes)
{
  char complete[96], loading[96];
  snprintf(complete, sizeof complete, "pgguard shadow %016llx complete",
           (unsigned long long)hash);
  snprintf(loading, sizeof loading, "pgguard shadow %016llx loading",
           (unsigned long long)hash);

  pgg_buf e;
  pgg_buf_init(&e);
  int rc = PGG_OK;
  char *comment = NULL, *id_shadow = NULL, *id_admin = NULL, *count = NULL;
  PGconn *admin = NULL;
  PGconn *shadow = pgg_pq_connect(cfg->shadow_url, NULL, &e);
  if (!shadow) {
    pgg_buf_printf(err, "shadow database (--shadow-url): %s", bstr(&e));
    rc = PGG_ERR_UPSTREAM;
    goto out;
  }
  const char *db = PQdb(shadow);

  /* Loading the desired schema into the guarded database itself would run
   * arbitrary DDL on production: refuse, whatever it holds. */
  if (cfg->admin_url && (admin = pgg_pq_connect(cfg->admin_url, NULL, &e)) != NULL) {
    id_shadow = one_value(shadow, q_identity, &e);
    id_admin = one_value(admin, q_identity, &e);
    if (id_shadow && id_admin && strcmp(id_shadow, id_admin) == 0) {
      pgg_buf_printf(err, "--shadow-url names the guarded database %s itself; "
                     "give pgguard an empty scratch database", db);
      rc = PGG_ERR_CONFIG;
      goto out;
    }
  }
  pgg_buf_reset(&e);

  /* Two sidecars given the same shadow take turns. */
  char lock[96];
  snprintf(lock, sizeof lock, "SET lock_timeout = '%ds'; SELECT pg_catalog.pg_advisory_lock(%lld)",
           SHADOW_WAIT_S, (long long)SHADOW_LOCK_KEY);
  bool exists;
  if ((rc = pgg_pq_exec(shadow, lock, &e)) != PGG_OK ||
      (rc = db_comment(shadow, NULL, &exists, &comment, &e)) != PGG_OK) {
    pgg_buf_printf(err, "shadow database %s: %s", db, bstr(&e));
    goto out;
  }
  if (comment && strcmp(comment, complete) == 0)
    goto out;  /* loaded with this very schema before */

  if (!(count = one_value(shadow, q_user_objects, &e))) {
    pgg_buf_printf(err, "shadow database %s: %s", db, bstr(&e));
    rc = PGG_ERR_DB;
    goto out;
  }
  if (strcmp(count, "0") != 0) {
    if (!comment || strncmp(comment, "pgguard shadow ", 15) != 0) {
      pgg_buf_printf(err, "shadow database %s (--shadow-url) is not empty: it holds %s "
                     "objects; pgguard loads the desired schema only into an empty "
                     "database and never empties one it did not fill", db, count);
      rc = PGG_ERR_SCHEMA;
      goto out;
    }
    if ((rc = pgg_pq_exec(shadow, q_reset_shadow, &e)) != PGG_OK) {
      pgg_buf_printf(err, "emptying shadow database %s for the changed schema: %s", db,
                     bstr(&e));
      goto out;
    }
  }
  /* Marked as ours before the first file runs, so a failed load can be
   * emptied again next time instead of being mistaken for foreign data. */
  if ((rc = comment_db(shadow, db, loading, &e)) != PGG_OK) {
    pgg_buf_printf(err, "shadow database %s: %s", db, bstr(&e));
    goto out;
  }
  if ((rc = apply_files(shadow, fl, err, notes)) != PGG_OK)
    goto out;
  if ((rc = comment_db(shadow, db, complete, &e)) != PGG_OK)
    pgg_buf_printf(err, "marking shadow database %s complete: %s", db, bstr(&e));

out:
  free(comment);
  free(id_shadow);
  free(id_admin);
  free(count);
  if (admin)
    PQfinish(admin);
  if (shadow)
    PQfinish(shadow);
  if (!rc) {
    pgg_buf_reset(&e);
    rc = read_shadow(cfg->shadow_url, NULL, NULL, desired, &e);
    if (rc)
      pgg_buf_printf(err, "reading the shadow database: %s", bstr(&e));
  }
  pgg_buf_free(&e);
  return rc;
}

int pgg_desired_load(const pgg_guard_config *cfg, pgg_catalog *desired, pgg_buf *err,
                     pgg_buf *notes, uint64_t *shadow_hash)
{
  pgg_catalog_init(desired);
  if (shadow_hash)
    *shadow_hash = 0;
  if (!cfg->shadow_url && (!cfg->admin_url || !*cfg->admin_url)) {
    pgg_buf_printf(err, "no --admin-url: the shadow database is created on its server");
    return PGG_ERR_CONFIG;
  }
  file_list fl = {0};
  pgg_mig_tool tool;
  int rc = collect_files(cfg->schema_path, &fl, &tool, err);
  if (!rc) {
    uint64_t hash = schema_hash(&fl);
    rc = cfg->shadow_url ? load_given_shadow(cfg, &fl, hash, desired, err, notes)
                         : load_own_shadow(cfg, &fl, hash, desired, err, notes);
    if (!rc && shadow_hash && !cfg->shadow_url)
      *shadow_hash = hash;
  }
  files_free(&fl);
  return rc;
}

int pgg_desired_files(const char *schema_path, pgg_buf *out, pgg_buf *err)
{
  file_list fl = {0};
  pgg_mig_tool tool;
  int rc = collect_files(schema_path, &fl, &tool, err);
  if (!rc) {
    pgg_buf_printf(out, "desired schema: %zu file%s applied in %s order\n", fl.n,
                   fl.n == 1 ? "" : "s", pgg_mig_tool_name(tool));
    for (size_t i = 0; i < fl.n; i++)
      pgg_buf_printf(out, "  %zu. %s\n", i + 1, fl.v[i].rel);
  }
  files_free(&fl);
  return rc;
}

int pgg_desired_file_list(const char *schema_path, pgg_mig_tool *tool, pgg_schema_file **v,
                          size_t *n, pgg_buf *err)
{
  file_list fl = {0};
  *v = NULL;
  *n = 0;
  int rc = collect_files(schema_path, &fl, tool, err);
  if (!rc && fl.n && !(*v = calloc(fl.n, sizeof **v)))
    rc = PGG_ERR_NOMEM;
  for (size_t i = 0; !rc && i < fl.n; i++) {
    (*v)[i].rel = fl.v[i].rel;
    (*v)[i].text = fl.v[i].text;
    fl.v[i].rel = fl.v[i].text = NULL;
    (*n)++;
  }
  files_free(&fl);
  return rc;
}

void pgg_schema_files_free(pgg_schema_file *v, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(v[i].rel);
    free(v[i].text);
  }
  free(v);
}
