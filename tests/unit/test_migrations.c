/*
 * test_migrations.c — which files of a migrations folder apply, in which
 * order, for each tool's conventions; dbmate's down sections blanked.
 */
#include <string.h>

#include "check.h"
#include "history.h"
#include "migrations.h"

/* Orders rel[] and returns the chosen paths joined by spaces in out. */
static pgg_mig_tool order_of(const char *const *rel, size_t n, const bool *marker,
                             const char *plan, char *out, size_t outlen, int *rc)
{
  size_t order[64], norder = 0;
  pgg_mig_tool tool = PGG_MIG_PLAIN;
  pgg_buf err;
  pgg_buf_init(&err);
  *rc = pgg_migrations_order(rel, n, marker, plan, &tool, order, &norder, &err);
  out[0] = 0;
  for (size_t i = 0; i < norder; i++) {
    strncat(out, rel[order[i]], outlen - strlen(out) - 1);
    if (i + 1 < norder)
      strncat(out, " ", outlen - strlen(out) - 1);
  }
  pgg_buf_free(&err);
  return tool;
}

TEST(natural_order_compares_numbers_by_value)
{
  CHECK(pgg_natural_cmp("V2__a.sql", "V10__a.sql") < 0);
  CHECK(pgg_natural_cmp("V10__a.sql", "V2__a.sql") > 0);
  CHECK(pgg_natural_cmp("1_init.sql", "02_next.sql") < 0);
  CHECK(pgg_natural_cmp("abc", "abd") < 0);
  CHECK(pgg_natural_cmp("a", "a1") < 0);
  CHECK(pgg_natural_cmp("v01", "v1") != 0);   /* equal by value, still two names: total */
  CHECK_INT(pgg_natural_cmp("same", "same"), 0);
}

TEST(flyway_applies_versions_in_version_order_then_repeatables_never_undo)
{
  const char *rel[] = {"V10__ten.sql", "R__views.sql", "V2__two.sql", "V1.1__one_one.sql",
                       "U2__undo_two.sql", "V1__one.sql", "README.sql", "R__a_first.sql",
                       "V1.10__one_ten.sql", "V1.2__one_two.sql"};
  char out[512];
  int rc;
  CHECK_INT(order_of(rel, 10, NULL, NULL, out, sizeof out, &rc), PGG_MIG_FLYWAY);
  CHECK_INT(rc, PGG_OK);
  CHECK_STR(out, "V1__one.sql V1.1__one_one.sql V1.2__one_two.sql V1.10__one_ten.sql "
                 "V2__two.sql V10__ten.sql R__a_first.sql R__views.sql");
}

TEST(golang_migrate_applies_up_files_only_in_version_order)
{
  const char *rel[] = {"10_add.down.sql", "10_add.up.sql", "2_init.up.sql", "2_init.down.sql",
                       "1_base.up.sql"};
  char out[512];
  int rc;
  CHECK_INT(order_of(rel, 5, NULL, NULL, out, sizeof out, &rc), PGG_MIG_GOLANG);
  CHECK_STR(out, "1_base.up.sql 2_init.up.sql 10_add.up.sql");
}

TEST(dbmate_files_are_ordered_and_only_up_sections_kept)
{
  const char *rel[] = {"20240301_b.sql", "20240101_a.sql"};
  bool marker[] = {true, true};
  char out[512];
  int rc;
  CHECK_INT(order_of(rel, 2, marker, NULL, out, sizeof out, &rc), PGG_MIG_DBMATE);
  CHECK_STR(out, "20240101_a.sql 20240301_b.sql");

  char text[] = "-- migrate:up\nCREATE TABLE t (id int);\n\n-- migrate:down\nDROP TABLE t;\n";
  CHECK(pgg_dbmate_has_up(text, strlen(text)));
  size_t len = strlen(text);
  pgg_dbmate_keep_up(text, len);
  CHECK_INT(strlen(text), len);                       /* positions and lines stay */
  CHECK(strstr(text, "CREATE TABLE t") != NULL);
  CHECK(strstr(text, "DROP") == NULL);
  CHECK(strstr(text, "-- migrate:down") != NULL);     /* a comment: harmless */
  char none[] = "CREATE TABLE x ();\n";
  CHECK(!pgg_dbmate_has_up(none, strlen(none)));
}

TEST(sqitch_applies_deploy_in_plan_order_never_revert_or_verify)
{
  const char *rel[] = {"revert/users.sql", "deploy/users.sql", "verify/users.sql",
                       "deploy/appschema.sql", "deploy/widgets.sql"};
  const char *plan = "%syntax-version=1.0.0\n%project=app\n\n"
                     "appschema 2024-01-01T00:00:00Z Ann <a@x> # the schema\n"
                     "users [appschema] 2024-01-02T00:00:00Z Ann <a@x>\n"
                     "@v1.0 2024-01-03T00:00:00Z Ann <a@x>\n"
                     "widgets [users] 2024-01-04T00:00:00Z Ann <a@x>\n";
  char out[512];
  int rc;
  CHECK_INT(order_of(rel, 5, NULL, plan, out, sizeof out, &rc), PGG_MIG_SQITCH);
  CHECK_INT(rc, PGG_OK);
  CHECK_STR(out, "deploy/appschema.sql deploy/users.sql deploy/widgets.sql");
}

TEST(sqitch_plan_naming_a_missing_deploy_file_is_an_error)
{
  const char *rel[] = {"deploy/a.sql"};
  char out[64];
  int rc;
  order_of(rel, 1, NULL, "a 2024-01-01T00:00:00Z A <a@x>\nb 2024-01-02T00:00:00Z A <a@x>\n",
           out, sizeof out, &rc);
  CHECK_INT(rc, PGG_ERR_SCHEMA);
}

TEST(prisma_folders_apply_in_timestamp_order)
{
  const char *rel[] = {"20240315000000_b/migration.sql", "20240101000000_a/migration.sql"};
  char out[512];
  int rc;
  CHECK_INT(order_of(rel, 2, NULL, NULL, out, sizeof out, &rc), PGG_MIG_PRISMA);
  CHECK_STR(out, "20240101000000_a/migration.sql 20240315000000_b/migration.sql");
}

TEST(plain_files_in_natural_order_and_never_down_revert_or_verify)
{
  const char *rel[] = {"10_more.sql", "2_base.sql", "1_init.sql", "3_undo.down.sql",
                       "revert/x.sql", "verify/y.sql"};
  char out[512];
  int rc;
  CHECK_INT(order_of(rel, 6, NULL, NULL, out, sizeof out, &rc), PGG_MIG_GOLANG);
  CHECK_STR(out, "");   /* a .down.sql makes it golang-migrate: only .up.sql files apply */
  const char *plain[] = {"10_more.sql", "2_base.sql", "1_init.sql", "revert/x.sql"};
  CHECK_INT(order_of(plain, 4, NULL, NULL, out, sizeof out, &rc), PGG_MIG_PLAIN);
  CHECK_STR(out, "1_init.sql 2_base.sql 10_more.sql");
}

TEST(migration_ids_as_each_tool_records_them)
{
  char id[64];
  CHECK(pgg_migration_id(PGG_MIG_PRISMA, "20240101000000_init/migration.sql", id, sizeof id));
  CHECK_STR(id, "20240101000000_init");
  CHECK(pgg_migration_id(PGG_MIG_FLYWAY, "sql/V1_1__add.sql", id, sizeof id));
  CHECK_STR(id, "1.1");
  CHECK(pgg_migration_id(PGG_MIG_FLYWAY, "V10__b.sql", id, sizeof id));
  CHECK_STR(id, "10");
  CHECK(!pgg_migration_id(PGG_MIG_FLYWAY, "R__view.sql", id, sizeof id));
  CHECK(pgg_migration_id(PGG_MIG_GOLANG, "10_b_note.up.sql", id, sizeof id));
  CHECK_STR(id, "10");
  CHECK(pgg_migration_id(PGG_MIG_DBMATE, "db/migrations/20240301000000_b.sql", id, sizeof id));
  CHECK_STR(id, "20240301000000");
  CHECK(pgg_migration_id(PGG_MIG_SQITCH, "deploy/users/add_email.sql", id, sizeof id));
  CHECK_STR(id, "users/add_email");
  CHECK(!pgg_migration_id(PGG_MIG_SQITCH, "revert/x.sql", id, sizeof id));
  CHECK(!pgg_migration_id(PGG_MIG_PLAIN, "001_init.sql", id, sizeof id));
  CHECK(!pgg_migration_id(PGG_MIG_PRISMA, "20240101000000_init/migration.sql", id, 5));
}
