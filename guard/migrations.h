/*
 * migrations.h — which files of a migrations folder make up the desired
 * schema, and in which order, by the conventions of the tool that wrote
 * them (Prisma, Flyway, golang-migrate, dbmate, Sqitch, or plain files).
 * Pure: the caller lists the folder and reads the files.
 */
#ifndef PGG_MIGRATIONS_H
#define PGG_MIGRATIONS_H

#include "pgg.h"

typedef enum {
  PGG_MIG_PLAIN = 0,   /* .sql files in natural (version-aware) order of their paths */
  PGG_MIG_PRISMA,      /* <timestamp>_<name>/migration.sql */
  PGG_MIG_FLYWAY,      /* V<version>__<desc>.sql by version, then R__<desc>.sql by description */
  PGG_MIG_GOLANG,      /* <version>_<name>.up.sql (golang-migrate); .down.sql never */
  PGG_MIG_DBMATE,      /* files with "-- migrate:up" sections; "-- migrate:down" never */
  PGG_MIG_SQITCH,      /* deploy/<change>.sql in sqitch.plan order; revert/ and verify/ never */
} pgg_mig_tool;

/* "plain", "prisma", "flyway", "golang-migrate", "dbmate", "sqitch". */
const char *pgg_mig_tool_name(pgg_mig_tool t);

/*
 * Natural order: runs of digits compare by value ("V2" < "V10"), everything
 * else byte by byte. A total order (ties broken byte-wise).
 */
int pgg_natural_cmp(const char *a, const char *b);

/*
 * Pick the files to apply from the .sql files of a folder (rel: paths
 * relative to it, '/'-separated) and put them in order: order[0..*norder)
 * receives indices into rel. sqitch_plan is the content of the folder's
 * sqitch.plan, or NULL when it has none; has_dbmate_marker[i] says file i
 * holds a "-- migrate:up" line. Files that undo or verify (golang-migrate
 * .down.sql, Flyway U undo scripts, Sqitch revert/ and verify/) are never
 * chosen. Returns PGG_OK, PGG_ERR_NOMEM, or PGG_ERR_SCHEMA with err naming
 * a Sqitch change whose deploy file is missing.
 */
int pgg_migrations_order(const char *const *rel, size_t n, const bool *has_dbmate_marker,
                         const char *sqitch_plan, pgg_mig_tool *tool, size_t *order,
                         size_t *norder, pgg_buf *err);

/* Does this text hold a dbmate "-- migrate:up" line? */
bool pgg_dbmate_has_up(const char *text, size_t len);

/*
 * Keep only the "-- migrate:up" sections of a dbmate file: every other line
 * (the "-- migrate:down" sections above all) is blanked with spaces, so that
 * PostgreSQL's positions and line numbers still point into the file.
 */
void pgg_dbmate_keep_up(char *text, size_t len);

#endif
