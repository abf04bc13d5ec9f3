/*
 * test_exclude.c — which objects the guard leaves out of its catalogs:
 * migration tools' bookkeeping tables by default, --exclude patterns, and
 * everything that belongs to an excluded table or schema.
 */
#include "catalog_builders.h"
#include "check.h"
#include "exclude.h"

static bool has(const pgg_catalog *c, pgg_obj_kind k, const char *schema, const char *name)
{
  for (size_t i = 0; i < c->n; i++)
    if (c->objs[i].kind == k && strcmp(c->objs[i].schema, schema) == 0 &&
        strcmp(c->objs[i].name, name) == 0)
      return true;
  return false;
}

static void app_with_bookkeeping(pgg_catalog *c)
{
  add(c, o_schema("public"));
  add(c, o_schema("sqitch"));
  add(c, o_table_rows("public", "users", false));
  add(c, o_col("public", "users", "id", "integer", true, 1));
  add(c, o_table_rows("public", "_prisma_migrations", true));
  add(c, o_col("public", "_prisma_migrations", "id", "character varying(36)", true, 1));
  add(c, o_con("public", "_prisma_migrations", "_prisma_migrations_pkey", 'p', "PRIMARY KEY (id)"));
  add(c, o_table_rows("public", "django_migrations", true));
  add(c, o_seq("public", "django_migrations_id_seq", SEQDEF));
  add(c, o_table_rows("sqitch", "changes", true));
  add(c, o_col("sqitch", "changes", "change_id", "text", true, 1));
  add(c, o_table_rows("public", "audit_2024", false));
  add(c, o_table_rows("archive", "audit_2024", false));
  add(c, o_seq("public", "users_id_seq", SEQDEF));
}

TEST(defaults_leave_out_bookkeeping_tables_and_what_belongs_to_them)
{
  pgg_buf err;
  pgg_buf_init(&err);
  REQUIRE(pgg_exclude_set(NULL, &err) == PGG_OK);
  pgg_catalog c;
  pgg_catalog_init(&c);
  app_with_bookkeeping(&c);
  pgg_catalog_exclude(&c);
  CHECK(has(&c, PGG_OBJ_TABLE, "public", "users"));
  CHECK(has(&c, PGG_OBJ_COLUMN, "public", "id"));   /* users.id stays */
  CHECK(has(&c, PGG_OBJ_SEQUENCE, "public", "users_id_seq"));
  CHECK(!has(&c, PGG_OBJ_TABLE, "public", "_prisma_migrations"));
  CHECK(!has(&c, PGG_OBJ_CONSTRAINT, "public", "_prisma_migrations_pkey"));
  CHECK(!has(&c, PGG_OBJ_TABLE, "public", "django_migrations"));
  CHECK(!has(&c, PGG_OBJ_SEQUENCE, "public", "django_migrations_id_seq"));
  CHECK(!has(&c, PGG_OBJ_SCHEMA, "sqitch", "sqitch"));
  CHECK(!has(&c, PGG_OBJ_TABLE, "sqitch", "changes"));
  CHECK(has(&c, PGG_OBJ_TABLE, "public", "audit_2024"));
  unsigned cols = 0;
  for (size_t i = 0; i < c.n; i++)
    cols += c.objs[i].kind == PGG_OBJ_COLUMN;
  CHECK_INT(cols, 1);
  pgg_catalog_free(&c);
  pgg_buf_free(&err);
}

TEST(patterns_add_globs_with_or_without_a_schema)
{
  pgg_buf err;
  pgg_buf_init(&err);
  REQUIRE(pgg_exclude_set("public.audit_*", &err) == PGG_OK);
  CHECK(pgg_excluded("public", "audit_2024"));
  CHECK(!pgg_excluded("archive", "audit_2024"));
  CHECK(pgg_excluded("public", "_prisma_migrations"));   /* defaults still apply */
  REQUIRE(pgg_exclude_set(" audit_* , scratch.*", &err) == PGG_OK);
  CHECK(pgg_excluded("archive", "audit_2024"));
  CHECK(pgg_excluded("scratch", "anything"));
  CHECK(!pgg_excluded("public", "Audit_x"));               /* case-sensitive, as stored */
  REQUIRE(pgg_exclude_set(NULL, &err) == PGG_OK);
  CHECK(!pgg_excluded("public", "audit_2024"));
  pgg_buf_free(&err);
}

TEST(malformed_patterns_are_refused_with_the_pattern_named)
{
  const char *bad[] = {"a..b", ".x", "x.", "a,,b", "s.t.u", " "};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    pgg_buf err;
    pgg_buf_init(&err);
    CHECK(pgg_exclude_check(bad[i], &err) == PGG_ERR_CONFIG);
    pgg_buf_append_u8(&err, 0);
    CHECK(strstr((const char *)err.data, "is not NAME or SCHEMA.NAME") != NULL);
    pgg_buf_free(&err);
  }
  pgg_buf err;
  pgg_buf_init(&err);
  CHECK(pgg_exclude_check("audit_*,scratch.*,public.t", &err) == PGG_OK);
  pgg_buf_free(&err);
}
