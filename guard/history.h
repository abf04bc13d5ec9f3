/*
 * history.h — a restored migration history against the schema that now
 * exists: the migrations whose objects are all there but which the tool's
 * history table lacks, with the command that marks each applied, so the
 * team's next deploy does not fail with 42P07.
 */
#ifndef PGG_HISTORY_H
#define PGG_HISTORY_H

#include <libpq-fe.h>

#include "catalog.h"
#include "migrations.h"

/* One file of the desired schema (desired.c), as its migration tool applies it. */
typedef struct {
  char *rel;    /* path relative to --schema */
  char *text;
} pgg_schema_file;

/* The files of --schema in the order they apply; free with pgg_schema_files_free. */
int pgg_desired_file_list(const char *schema_path, pgg_mig_tool *tool, pgg_schema_file **v,
                          size_t *n, pgg_buf *err);
void pgg_schema_files_free(pgg_schema_file *v, size_t n);

/*
 * The migration's identifier in its tool's history: Prisma's folder name,
 * Flyway's version (V1_1__x.sql: "1.1"), golang-migrate's and dbmate's
 * version, Sqitch's change name. false for plain files and Flyway's
 * repeatable (R__) ones. Pure.
 */
bool pgg_migration_id(pgg_mig_tool tool, const char *rel, char *out, size_t n);

/*
 * Append to out the lines for migrations of --schema whose objects all exist
 * in live but which the history table (read on conn) lacks, each with the
 * command that marks it applied; nothing when --schema is not a migrations
 * folder or the database holds no history table of its tool.
 */
int pgg_history_hints(const char *schema_path, PGconn *conn, const pgg_catalog *live,
                      pgg_buf *out, pgg_buf *err);

#endif
