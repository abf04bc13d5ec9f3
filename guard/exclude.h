/*
 * exclude.h — objects the guard never compares: migration tools' bookkeeping
 * tables (by default) and what --exclude names.
 */
#ifndef PGG_EXCLUDE_H
#define PGG_EXCLUDE_H

#include "catalog.h"

/* Migration tools' own tables: their rows say what ran, not what the schema is. */
#define PGG_EXCLUDE_DEFAULT                                                            \
  "_prisma_migrations,schema_migrations,flyway_schema_history,django_migrations,"      \
  "alembic_version,sqitch.*,ar_internal_metadata,goose_db_version,knex_migrations,"    \
  "knex_migrations_lock,__diesel_schema_migrations,SequelizeMeta,__EFMigrationsHistory"

/*
 * Patterns, comma-separated: NAME or SCHEMA.NAME, each part a shell glob
 * (fnmatch), case-sensitive as PostgreSQL stores names. The defaults always
 * apply; extra (may be NULL) adds to them. Returns PGG_ERR_CONFIG with a
 * message in err for an empty or malformed pattern. Not thread-safe: call
 * while no catalog is being read.
 */
int pgg_exclude_set(const char *extra, pgg_buf *err);
/* Check patterns without taking them (for the option parser). */
int pgg_exclude_check(const char *patterns, pgg_buf *err);
/* Whether a relation SCHEMA.NAME is excluded. */
bool pgg_excluded(const char *schema, const char *name);
/*
 * Remove the excluded objects from c: matching tables and sequences, what
 * belongs to them (columns, constraints, indexes, triggers; a serial
 * sequence TABLE_COLUMN_seq), and everything in a schema matched by
 * "SCHEMA.*". The order of what remains is kept.
 */
void pgg_catalog_exclude(pgg_catalog *c);

#endif
