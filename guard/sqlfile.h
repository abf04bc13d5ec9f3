/*
 * sqlfile.h — a schema file split into statements and classified by
 * PostgreSQL's own parser (libpg_query), before any of it runs: what may
 * load into a shadow database, what must be refused, and where each
 * statement starts.
 */
#ifndef PGG_SQLFILE_H
#define PGG_SQLFILE_H

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
/* The line of byte offset off in text (1-based). */
unsigned pgg_sql_line_at(const char *text, size_t off);

#endif
