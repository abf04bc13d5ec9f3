/*
 * history.c — after a restore (and a repair), the migration history table
 * says less than the schema has: list each migration whose objects exist
 * but which the history lacks, with the command its tool marks it with.
 */
#include "history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "introspect.h"
#include "sqlfile.h"

static const char *base_name(const char *rel)
{
  const char *slash = strrchr(rel, '/');
  return slash ? slash + 1 : rel;
}

/* The leading digits of s, or false when it has none. */
static bool digits(const char *s, char *out, size_t n)
{
  size_t k = 0;
  while (s[k] >= '0' && s[k] <= '9')
    k++;
  if (!k || k >= n)
    return false;
  memcpy(out, s, k);
  out[k] = 0;
  return true;
}

bool pgg_migration_id(pgg_mig_tool tool, const char *rel, char *out, size_t n)
{
  const char *b = base_name(rel);
  switch (tool) {
  case PGG_MIG_PRISMA: {
    const char *slash = strchr(rel, '/');
    size_t len = slash ? (size_t)(slash - rel) : 0;
    if (!len || len >= n)
      return false;
    memcpy(out, rel, len);
    out[len] = 0;
    return true;
  }
  case PGG_MIG_FLYWAY: {
    if (b[0] != 'V')
      return false;
    const char *end = strstr(b, "__");
    size_t len = end ? (size_t)(end - b - 1) : 0;
    if (!len || len >= n)
      return false;
    for (size_t i = 0; i < len; i++)
      out[i] = b[1 + i] == '_' ? '.' : b[1 + i];   /* Flyway: V1_1 is version 1.1 */
    out[len] = 0;
    return true;
  }
  case PGG_MIG_GOLANG:
  case PGG_MIG_DBMATE:
    return digits(b, out, n);
  case PGG_MIG_SQITCH: {
    if (strncmp(rel, "deploy/", 7) != 0)
      return false;
    size_t len = strlen(rel + 7);
    if (len < 5 || strcmp(rel + 7 + len - 4, ".sql") != 0 || len - 4 >= n)
      return false;
    memcpy(out, rel + 7, len - 4);
    out[len - 4] = 0;
    return true;
  }
  case PGG_MIG_PLAIN:
    break;
  }
  return false;
}

/* The tool's history: the table pgguard looks for, and what it calls applied. */
static const struct {
  pgg_mig_tool tool;
  const char *table;   /* for to_regclass */
  const char *applied; /* one text column of applied migration identifiers */
} histories[] = {
  {PGG_MIG_PRISMA, "_prisma_migrations",
   "SELECT migration_name FROM _prisma_migrations"
   " WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL"},
  {PGG_MIG_FLYWAY, "flyway_schema_history",
   "SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL"},
  /* golang-migrate keeps one row: every version up to it is applied. */
  {PGG_MIG_GOLANG, "schema_migrations", "SELECT version::text FROM schema_migrations"},
  {PGG_MIG_DBMATE, "schema_migrations", "SELECT version::text FROM schema_migrations"},
  {PGG_MIG_SQITCH, "sqitch.changes", "SELECT change FROM sqitch.changes"},
};

static void command(pgg_mig_tool tool, const char *schema_path, const char *id, pgg_buf *out)
{
  switch (tool) {
  case PGG_MIG_PRISMA:
    pgg_buf_printf(out, "npx prisma migrate resolve --applied %s", id);
    break;
  case PGG_MIG_FLYWAY:
    pgg_buf_printf(out, "flyway migrate -skipExecutingMigrations=true -target=%s", id);
    break;
  case PGG_MIG_GOLANG:
    pgg_buf_printf(out, "migrate -path %s -database \"$DATABASE_URL\" force %s", schema_path, id);
    break;
  case PGG_MIG_DBMATE:
    pgg_buf_printf(out, "psql \"$DATABASE_URL\" -c \"INSERT INTO schema_migrations (version) "
                   "VALUES ('%s')\"", id);
    break;
  case PGG_MIG_SQITCH:
    pgg_buf_printf(out, "sqitch deploy --log-only --to %s", id);
    break;
  case PGG_MIG_PLAIN:
    break;
  }
}

static bool is_applied(pgg_mig_tool tool, const PGresult *res, const char *id)
{
  for (int i = 0; i < PQntuples(res); i++) {
    const char *v = PQgetvalue(res, i, 0);
    if (tool == PGG_MIG_GOLANG) {
      if (strtoull(id, NULL, 10) <= strtoull(v, NULL, 10))
        return true;
    } else if (strcmp(v, id) == 0) {
      return true;
    }
  }
  return false;
}

/* Every object the migration creates exists now (and it creates some). */
static bool all_exist(const char *text, const pgg_catalog *live)
{
  pgg_sql_objs objs;
  pgg_buf e;
  pgg_buf_init(&e);
  int rc = pgg_sql_created(text, &objs, &e);
  pgg_buf_free(&e);
  if (rc)
    return false;
  bool ok = objs.n > 0;
  for (size_t i = 0; ok && i < objs.n; i++) {
    const pgg_sql_obj *o = &objs.v[i];
    ok = pgg_catalog_find(live, o->kind, o->schema, o->parent, o->name) != NULL;
  }
  pgg_sql_objs_free(&objs);
  return ok;
}

int pgg_history_hints(const char *schema_path, PGconn *conn, const pgg_catalog *live,
                      pgg_buf *out, pgg_buf *err)
{
  pgg_mig_tool tool;
  pgg_schema_file *files;
  size_t n;
  int rc = pgg_desired_file_list(schema_path, &tool, &files, &n, err);
  if (rc || tool == PGG_MIG_PLAIN) {
    pgg_schema_files_free(files, n);
    return rc;
  }
  size_t h = 0;
  while (h < sizeof histories / sizeof histories[0] && histories[h].tool != tool)
    h++;
  const char *params[1] = {histories[h].table};
  PGresult *exists = PQexecParams(conn, "SELECT pg_catalog.to_regclass($1) IS NOT NULL", 1,
                                  NULL, params, NULL, NULL, 0);
  bool has_table = exists && PQresultStatus(exists) == PGRES_TUPLES_OK &&
                   strcmp(PQgetvalue(exists, 0, 0), "t") == 0;
  PQclear(exists);
  PGresult *res = has_table ? PQexec(conn, histories[h].applied) : NULL;
  if (has_table && (!res || PQresultStatus(res) != PGRES_TUPLES_OK)) {
    pgg_buf_printf(err, "reading %s: ", histories[h].table);
    pgg_pq_error(err, conn, res);
    rc = PGG_ERR_DB;
  }
  unsigned listed = 0;
  for (size_t i = 0; has_table && !rc && i < n; i++) {
    char id[256];
    if (!pgg_migration_id(tool, files[i].rel, id, sizeof id) || is_applied(tool, res, id) ||
        !all_exist(files[i].text, live))
      continue;
    if (!listed++)
      pgg_buf_printf(out, "\nmigrations whose objects exist but which %s lacks "
                     "(mark each applied, or the next deploy fails with 42P07):\n",
                     histories[h].table);
    pgg_buf_printf(out, "  %s\n    ", id);
    command(tool, schema_path, id, out);
    pgg_buf_printf(out, "\n");
  }
  PQclear(res);
  pgg_schema_files_free(files, n);
  return rc;
}
