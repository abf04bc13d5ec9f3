/*
 * sqlfile.h — a schema file split into statements and classified by
 * PostgreSQL's own parser (libpg_query), before any of it runs: what may
 * load into a shadow database, what must be refused, and where each
 * statement starts.
 */
#ifndef PGG_SQLFILE_H
#define PGG_SQLFILE_H

#include "catalog.h"
#include "pgg.h"

typedef enum {
  PGG_SQL_RUN = 0,       /* schema DDL or anything else database-local */
  PGG_SQL_ROLE,          /* names roles (OWNER TO, object GRANT/REVOKE, default
                            privileges, policies): skipped with a warning when
                            it fails only because of the role */
  PGG_SQL_TRANSACTION,   /* BEGIN, COMMIT, SAVEPOINT, ...: the file manages its own */
  PGG_SQL_REFUSED,       /* cluster-wide or host effect: never run */
} pgg_sql_class;

typedef struct {
  size_t off, len;       /* the statement's bytes in the text, without the ';' */
  unsigned line;         /* line of its first token, 1-based */
  pgg_sql_class cls;
  const char *what;      /* for a refused one: "CREATE ROLE", "COPY ... PROGRAM", ... */
} pgg_sql_stmt;

typedef struct {
  pgg_sql_stmt *v;
  size_t n;
} pgg_sql_list;

/*
 * Split and classify text (NUL-terminated, len bytes). On a syntax error
 * returns PGG_ERR_SCHEMA with "line N: message" in err. Pure (no database).
 */
int pgg_sql_split(const char *text, size_t len, pgg_sql_list *out, pgg_buf *err);
void pgg_sql_list_free(pgg_sql_list *l);
/* An object a file creates, as far as pgguard's catalog models it. */
typedef struct {
  pgg_obj_kind kind;   /* schema, enum, sequence, table, column, index */
  char *schema;        /* as written, or "public" when unqualified */
  char *parent;        /* the table of a column or an index, else NULL */
  char *name;
} pgg_sql_obj;

typedef struct {
  pgg_sql_obj *v;
  size_t n;
} pgg_sql_objs;

/*
 * The schemas, enum types, sequences, tables, columns (ALTER TABLE ... ADD
 * COLUMN) and named indexes that text creates. PGG_OK, PGG_ERR_NOMEM, or
 * PGG_ERR_SCHEMA (a syntax error, in err).
 */
int pgg_sql_created(const char *text, pgg_sql_objs *out, pgg_buf *err);
void pgg_sql_objs_free(pgg_sql_objs *o);

/*
 * The existing table one statement changes: ALTER TABLE's, CREATE INDEX's
 * or CREATE TRIGGER's relation, its schema "" when unqualified. false for
 * any other statement or one that does not parse. Pure.
 */
bool pgg_sql_target(const char *sql, char *schema, size_t ns, char *table, size_t nt);

/* The line of byte offset off in text (1-based). */
unsigned pgg_sql_line_at(const char *text, size_t off);

#endif
