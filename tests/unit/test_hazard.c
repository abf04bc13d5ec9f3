/*
 * test_hazard.c — what pgguard refuses to do to a table with rows: the
 * needs_migration pass over a drift, and the key shapes it can build
 * concurrently.
 */
#include "catalog_builders.h"
#include "check.h"

/* live: public.t (rows as given) with id NOT NULL and maybe-null n;
 * desired: the same plus extra, diffed and passed through the hazard pass. */
typedef struct {
  pgg_catalog desired, live;
  pgg_drift d;
} fixture;

static void start(fixture *f, bool rows)
{
  pgg_catalog_init(&f->desired);
  pgg_catalog_init(&f->live);
  pgg_catalog *both[2] = {&f->desired, &f->live};
  for (int i = 0; i < 2; i++) {
    add(both[i], o_schema("public"));
    add(both[i], o_table_rows("public", "t", i == 1 && rows));
    add(both[i], o_col("public", "t", "id", "integer", true, 1));
    add(both[i], o_col("public", "t", "n", "integer", false, 2));
  }
}

static void run(fixture *f)
{
  pgg_catalog_sort(&f->desired);
  pgg_catalog_sort(&f->live);
  pgg_drift_init(&f->d);
  REQUIRE(pgg_diff(&f->desired, &f->live, &f->d) == PGG_OK);
  REQUIRE(pgg_drift_hazards(&f->d, &f->live) == PGG_OK);
}

static void finish(fixture *f)
{
  pgg_drift_free(&f->d);
  pgg_catalog_free(&f->desired);
  pgg_catalog_free(&f->live);
}

static const pgg_drift_item *item(const fixture *f, const char *name)
{
  for (size_t i = 0; i < f->d.n; i++)
    if (f->d.items[i].desired && !strcmp(f->d.items[i].desired->name, name))
      return &f->d.items[i];
  return NULL;
}

static pgg_object col(const char *name, int pos)
{
  return o_col("public", "t", name, "integer", false, pos);
}

TEST(rewriting_columns_on_a_table_with_rows_need_a_migration_with_the_reason)
{
  static const struct {
    const char *what, *name, *why;
  } cases[] = {
      {"identity", "a", "identity column"},
      {"stored generated", "b", "stored generated column"},
      {"domain with constraints", "c", "is a domain with constraints"},
      {"volatile default", "e", "is volatile"},
  };
  for (int rows = 0; rows < 2; rows++) {
    fixture f;
    start(&f, rows);
    pgg_object a = col("a", 3), b = col("b", 4), c = col("c", 5), e = col("e", 6), ok = col("ok", 7);
    a.identity = 'a';
    b.generated = 's';
    b.default_expr = S("(id * 2)");
    c.checked_domain = true;
    c.type = S("public.posint");
    e.default_expr = S("clock_timestamp()");
    e.volatile_default = true;
    ok.default_expr = S("42");  /* a stable default: stored once, no rewrite */
    add(&f.desired, a);
    add(&f.desired, b);
    add(&f.desired, c);
    add(&f.desired, e);
    add(&f.desired, ok);
    run(&f);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      const pgg_drift_item *it = item(&f, cases[i].name);
      REQUIRE(it);
      if (rows) {
        CHECK(it->state == PGG_DRIFT_NEEDS_MIGRATION);
        CHECK(it->why && strstr(it->why, cases[i].why));
        CHECK(it->why && strstr(it->why, "ACCESS EXCLUSIVE"));
      } else {
        CHECK(it->state == PGG_DRIFT_MISSING);  /* an empty table: nothing to rewrite */
      }
    }
    CHECK(item(&f, "ok")->state == PGG_DRIFT_MISSING);
    CHECK_INT(f.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_NEEDS_MIGRATION], rows ? 4 : 0);
    CHECK_INT(f.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_MISSING], rows ? 1 : 5);
    CHECK_INT(pgg_drift_missing(&f.d), rows ? 1 : 5);
    /* The planner never sees what needs a migration. */
    pgg_plan p;
    pgg_plan_init(&p);
    CHECK(pgg_plan_build(&f.d, &f.live, &p) == PGG_OK);
    CHECK_INT(p.n, rows ? 1 : 5);
    if (rows)
      CHECK(strstr(p.stmts[0].sql, "\"ok\" integer DEFAULT 42"));
    pgg_plan_free(&p);
    finish(&f);
  }
}

TEST(keys_that_scan_or_cannot_be_built_concurrently_need_a_migration)
{
  fixture f;
  start(&f, true);
  add(&f.desired, o_con("public", "t", "pk_nullable", 'p', "PRIMARY KEY (id, n)"));
  add(&f.desired, o_con("public", "t", "pk_ok", 'p', "PRIMARY KEY (id)"));
  add(&f.desired, o_con("public", "t", "uq_ok", 'u', "UNIQUE (n) INCLUDE (id) DEFERRABLE"));
  add(&f.desired, o_con("public", "t", "uq_with", 'u', "UNIQUE (n) WITH (fillfactor='70')"));
  add(&f.desired, o_con("public", "t", "ex", 'x', "EXCLUDE USING gist (n WITH =)"));
  add(&f.desired, o_con("public", "t", "ck", 'c', "CHECK ((n > 0))"));
  run(&f);
  CHECK(item(&f, "pk_nullable")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(strstr(item(&f, "pk_nullable")->why, "column n, which may hold NULL"));
  CHECK(item(&f, "pk_ok")->state == PGG_DRIFT_MISSING);
  CHECK(item(&f, "uq_ok")->state == PGG_DRIFT_MISSING);
  CHECK(item(&f, "uq_with")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(item(&f, "ex")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(item(&f, "ck")->state == PGG_DRIFT_MISSING);  /* added NOT VALID: no scan */
  /* The two keys it can build are built concurrently, then attached. */
  pgg_plan p;
  pgg_plan_init(&p);
  CHECK(pgg_plan_build(&f.d, &f.live, &p) == PGG_OK);
  unsigned cic = 0, attach = 0;
  for (size_t i = 0; i < p.n; i++) {
    cic += p.stmts[i].kind == PGG_STMT_CREATE_INDEX_CONCURRENTLY;
    attach += p.stmts[i].kind == PGG_STMT_ADD_CONSTRAINT_USING_INDEX;
    CHECK(!strstr(p.stmts[i].sql, "EXCLUDE"));
  }
  CHECK_INT(cic, 2);
  CHECK_INT(attach, 2);
  bool include = false, deferrable = false;
  for (size_t i = 0; i < p.n; i++) {
    include |= strstr(p.stmts[i].sql, "USING btree (n) INCLUDE (id)") != NULL;
    deferrable |= p.stmts[i].kind == PGG_STMT_ADD_CONSTRAINT_USING_INDEX &&
                  strstr(p.stmts[i].sql, "\" DEFERRABLE") != NULL;
  }
  CHECK(include);
  CHECK(deferrable);
  pgg_plan_free(&p);
  finish(&f);
}

TEST(indexes_and_keys_that_name_a_held_back_column_are_held_back_with_it)
{
  fixture f;
  start(&f, true);
  pgg_object v = col("v", 3);
  v.default_expr = S("random()");
  v.volatile_default = true;
  add(&f.desired, v);
  add(&f.desired, o_index("public", "t", "t_v_idx", "CREATE INDEX t_v_idx ON public.t USING btree (v)"));
  add(&f.desired, o_index("public", "t", "t_vv_idx", "CREATE INDEX t_vv_idx ON public.t USING btree (vv)"));
  add(&f.desired, o_con("public", "t", "t_v_check", 'c', "CHECK ((v < 1))"));
  run(&f);
  CHECK(item(&f, "t_v_idx")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(strstr(item(&f, "t_v_idx")->why, "needs column v"));
  CHECK(item(&f, "t_v_check")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(item(&f, "t_vv_idx")->state == PGG_DRIFT_MISSING);  /* vv is not v */
  finish(&f);
}

TEST(an_index_of_a_partitioned_table_with_rows_needs_a_migration)
{
  fixture f;
  start(&f, true);
  for (size_t i = 0; i < f.live.n; i++)
    if (f.live.objs[i].kind == PGG_OBJ_TABLE)
      f.live.objs[i].relkind = 'p';
  add(&f.desired, o_index("public", "t", "t_n_idx", "CREATE INDEX t_n_idx ON ONLY public.t USING btree (n)"));
  run(&f);
  CHECK(item(&f, "t_n_idx")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(strstr(item(&f, "t_n_idx")->why, "partitioned"));
  finish(&f);
}

TEST(key_definitions_parse_only_in_the_shape_using_index_keeps)
{
  pgg_key_def k;
  CHECK(pgg_key_def_parse("PRIMARY KEY (id)", &k) && k.primary && k.cols_len == 4 && !k.include);
  CHECK(pgg_key_def_parse("UNIQUE NULLS NOT DISTINCT (a, \"B c\") INCLUDE (x)", &k) &&
        !k.primary && k.nulls_not_distinct && k.include_len == 3);
  CHECK(pgg_key_def_parse("UNIQUE (a) DEFERRABLE INITIALLY DEFERRED", &k) &&
        !strcmp(k.deferral, " DEFERRABLE INITIALLY DEFERRED"));
  CHECK(!pgg_key_def_parse("UNIQUE (a) WITH (fillfactor='70')", &k));
  CHECK(!pgg_key_def_parse("UNIQUE (a) USING INDEX TABLESPACE x", &k));
  CHECK(!pgg_key_def_parse("CHECK ((a > 0))", &k));
  CHECK(!pgg_key_def_parse("PRIMARY KEY (a", &k));
}

static bool collect(const char *name, void *arg)
{
  char *out = arg;
  strcat(out, "[");
  strcat(out, name);
  strcat(out, "]");
  return true;
}

TEST(key_columns_are_unquoted)
{
  char out[128] = "";
  CHECK(pgg_key_columns("(a, \"B \"\"c\"\"\", d)", strlen("(a, \"B \"\"c\"\"\", d)"), collect, out));
  CHECK_STR(out, "[a][B \"c\"][d]");
  CHECK(!pgg_key_columns("(a,b)", 5, collect, out));
}

TEST(build_names_are_pgguards_own_and_stable)
{
  char a[PGG_BUILD_NAME_LEN], b[PGG_BUILD_NAME_LEN];
  pgg_build_name("public", "t", "i", "CREATE INDEX i ON public.t USING btree (a)", a);
  pgg_build_name("public", "t", "i", "CREATE INDEX i ON public.t USING btree (a)", b);
  CHECK_STR(a, b);
  CHECK(strncmp(a, PGG_BUILD_PREFIX, strlen(PGG_BUILD_PREFIX)) == 0);
  CHECK_INT((int)strlen(a), PGG_BUILD_NAME_LEN - 1);
  pgg_build_name("public", "ti", "", "CREATE INDEX i ON public.t USING btree (a)", b);
  CHECK(strcmp(a, b) != 0);   /* the separators count */
  /* Another definition, another build: a leftover is never finished in its place. */
  pgg_build_name("public", "t", "i", "CREATE INDEX i ON public.t USING btree (b)", b);
  CHECK(strcmp(a, b) != 0);
}

TEST(views_foreign_keys_and_triggers_on_a_held_back_column_wait_with_it)
{
  fixture f;
  start(&f, true);
  pgg_object u = col("uid", 3);
  u.type = S("uuid");
  u.default_expr = S("gen_random_uuid()");
  u.volatile_default = true;
  add(&f.desired, u);
  add(&f.desired, o_view("public", "recent", 'v', " SELECT t.id,\n    t.uid\n   FROM public.t", 0));
  add(&f.desired, o_view("public", "recent2", 'v', " SELECT recent.id\n   FROM public.recent", 1));
  add(&f.desired, o_view("public", "other", 'v', " SELECT t.id\n   FROM public.t", 0));
  add(&f.desired, o_table_rows("public", "refs", false));
  add(&f.desired, o_col("public", "refs", "u", "uuid", false, 1));
  add(&f.desired, o_con("public", "refs", "refs_u_fkey", 'f', "FOREIGN KEY (u) REFERENCES public.t(uid)"));
  add(&f.desired, o_trigger("public", "t", "t_uid_trg", "CREATE TRIGGER t_uid_trg BEFORE UPDATE OF uid"
                            " ON public.t FOR EACH ROW EXECUTE FUNCTION public.f()"));
  run(&f);
  CHECK(item(&f, "recent")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(strstr(item(&f, "recent")->why, "needs column uid"));
  CHECK(item(&f, "recent2")->state == PGG_DRIFT_NEEDS_MIGRATION);   /* a view on that view */
  CHECK(strstr(item(&f, "recent2")->why, "needs view recent"));
  CHECK(item(&f, "refs_u_fkey")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(item(&f, "t_uid_trg")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(item(&f, "other")->state == PGG_DRIFT_MISSING);   /* reads t, not uid */
  CHECK(item(&f, "refs")->state == PGG_DRIFT_MISSING);
  finish(&f);
}

TEST(a_default_calling_a_function_that_differs_on_live_needs_a_migration)
{
  fixture f;
  start(&f, true);
  pgg_object c = col("score", 3);
  c.default_expr = S("public.score_of()");   /* stable in the shadow */
  add(&f.desired, c);
  add(&f.desired, o_func("public", "score_of()", "CREATE OR REPLACE FUNCTION public.score_of()"
                         " RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$", 0));
  add(&f.live, o_func("public", "score_of()", "CREATE OR REPLACE FUNCTION public.score_of()"
                      " RETURNS integer LANGUAGE sql VOLATILE AS $$ SELECT 1 $$", 0));
  run(&f);
  REQUIRE(item(&f, "score_of()"));
  CHECK(item(&f, "score_of()")->state == PGG_DRIFT_CONFLICTING);
  CHECK(item(&f, "score")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(strstr(item(&f, "score")->why, "public.score_of() which differs") ||
        strstr(item(&f, "score")->why, "public.score_of(), which differs"));
  finish(&f);
}

TEST(a_default_the_shadow_could_not_evaluate_fails_closed_and_says_so)
{
  fixture f;
  start(&f, true);
  pgg_object c = col("tenant", 3);
  c.default_expr = S("(current_setting('app.tenant'::text))::integer");
  c.volatile_default = c.default_unprobed = true;   /* what the probe leaves on an error */
  add(&f.desired, c);
  run(&f);
  CHECK(item(&f, "tenant")->state == PGG_DRIFT_NEEDS_MIGRATION);
  CHECK(strstr(item(&f, "tenant")->why, "could not be shown stable"));
  CHECK(!strstr(item(&f, "tenant")->why, "is volatile"));
  finish(&f);
}
