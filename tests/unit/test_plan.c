/*
 * test_plan.c — the additive repair planner: statement order, quoting,
 * NOT NULL relaxation, NOT VALID, refusals, and a property test over
 * thousands of random catalog pairs (every modeled kind, and the kinds only
 * reported) proving it emits nothing but the additive statement kinds of
 * pgg_stmt_kind, never a DROP, each after what it needs, and that its plan
 * leaves nothing missing and every unsupported object untouched.
 */
#include "catalog_builders.h"
#include "check.h"

#include <ctype.h>
#include <stdarg.h>

/* ---- building catalogs -------------------------------------------------- */


/* Sorts both, diffs and plans. Returns pgg_plan_build's result. */
static int plan_of(pgg_catalog *desired, pgg_catalog *live, pgg_drift *d, pgg_plan *p)
{
  pgg_catalog_sort(desired);
  pgg_catalog_sort(live);
  pgg_drift_init(d);
  pgg_plan_init(p);
  if (pgg_diff(desired, live, d) != PGG_OK)
    abort();
  return pgg_plan_build(d, live, p);
}

/* Checks the plan's statements are exactly want[] (NULL-terminated). */
static void check_plan(const pgg_plan *p, const char *const *want)
{
  size_t n = 0;
  while (want[n])
    n++;
  CHECK_INT(p->n, n);
  for (size_t i = 0; i < p->n && i < n; i++)
    CHECK_STR(p->stmts[i].sql, want[i]);
  if (check_failed_now)
    for (size_t i = 0; i < p->n; i++)
      fprintf(stderr, "  got [%zu] %s\n", i, p->stmts[i].sql);
}

static bool plan_has(const pgg_plan *p, const char *sql)
{
  for (size_t i = 0; i < p->n; i++)
    if (!strcmp(p->stmts[i].sql, sql))
      return true;
  return false;
}

static bool plan_mentions(const pgg_plan *p, const char *needle)
{
  for (size_t i = 0; i < p->n; i++)
    if (strstr(p->stmts[i].sql, needle))
      return true;
  return false;
}

static void done(pgg_catalog *a, pgg_catalog *b, pgg_drift *d, pgg_plan *p)
{
  pgg_plan_free(p);
  pgg_drift_free(d);
  pgg_catalog_free(a);
  pgg_catalog_free(b);
}

/* ---- order and statement shapes ----------------------------------------- */

TEST(plan_creates_a_whole_schema_in_dependency_order_keys_before_foreign_keys)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&live, o_schema("public"));
  add(&desired, o_schema("public"));
  add(&desired, o_schema("app"));
  add(&desired, o_enum("app", "mood"));
  add(&desired, o_label("app", "mood", "sad", 2));
  add(&desired, o_label("app", "mood", "happy", 1));
  add(&desired, o_seq("app", "order_no", SEQDEF));
  add(&desired, o_table_rows("app", "users", false));
  pgg_object id = o_col("app", "users", "id", "bigint", true, 1);
  id.identity = 'a';
  add(&desired, id);
  pgg_object mood = o_col("app", "users", "mood", "app.mood", false, 2);
  mood.default_expr = S("'happy'::app.mood");
  add(&desired, mood);
  add(&desired, o_table_rows("app", "orders", false));
  pgg_object oid = o_col("app", "orders", "id", "bigint", true, 1);
  oid.default_expr = S("nextval('app.order_no'::regclass)");
  add(&desired, oid);
  add(&desired, o_col("app", "orders", "user_id", "bigint", false, 2));
  /* Names chosen so that name order would put the foreign key first. */
  add(&desired, o_con("app", "orders", "a_user_fk", 'f',
                      "FOREIGN KEY (user_id) REFERENCES app.users(id)"));
  add(&desired, o_con("app", "orders", "b_check", 'c', "CHECK ((user_id > 0))"));
  add(&desired, o_con("app", "users", "z_users_pkey", 'p', "PRIMARY KEY (id)"));
  add(&desired, o_con("app", "orders", "z_orders_pkey", 'p', "PRIMARY KEY (id)"));
  add(&desired, o_con("app", "users", "y_mood_key", 'u', "UNIQUE (mood, id)"));
  add(&desired, o_index("app", "orders", "orders_user_idx",
                        "CREATE INDEX orders_user_idx ON app.orders USING btree (user_id)"));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  static const char *const want[] = {
      "CREATE SCHEMA \"app\"",
      "CREATE TYPE \"app\".\"mood\" AS ENUM ('happy', 'sad')",
      "CREATE SEQUENCE \"app\".\"order_no\" " SEQDEF,
      "CREATE TABLE \"app\".\"orders\" (\"id\" bigint DEFAULT nextval('app.order_no'::regclass) "
      "NOT NULL, \"user_id\" bigint)",
      "CREATE TABLE \"app\".\"users\" (\"id\" bigint GENERATED ALWAYS AS IDENTITY NOT NULL, "
      "\"mood\" app.mood DEFAULT 'happy'::app.mood)",
      "CREATE INDEX orders_user_idx ON app.orders USING btree (user_id)",
      "ALTER TABLE \"app\".\"orders\" ADD CONSTRAINT \"z_orders_pkey\" PRIMARY KEY (id)",
      "ALTER TABLE \"app\".\"users\" ADD CONSTRAINT \"z_users_pkey\" PRIMARY KEY (id)",
      "ALTER TABLE \"app\".\"users\" ADD CONSTRAINT \"y_mood_key\" UNIQUE (mood, id)",
      "ALTER TABLE \"app\".\"orders\" ADD CONSTRAINT \"b_check\" CHECK ((user_id > 0))",
      /* A new table is empty: no NOT VALID needed. */
      "ALTER TABLE \"app\".\"orders\" ADD CONSTRAINT \"a_user_fk\" FOREIGN KEY (user_id) "
      "REFERENCES app.users(id)",
      NULL};
  check_plan(&p, want);
  static const pgg_stmt_kind kinds[] = {
      PGG_STMT_CREATE_SCHEMA, PGG_STMT_CREATE_ENUM,   PGG_STMT_CREATE_SEQUENCE,
      PGG_STMT_CREATE_TABLE,  PGG_STMT_CREATE_TABLE,  PGG_STMT_CREATE_INDEX,
      PGG_STMT_ADD_CONSTRAINT, PGG_STMT_ADD_CONSTRAINT, PGG_STMT_ADD_CONSTRAINT,
      PGG_STMT_ADD_CONSTRAINT, PGG_STMT_ADD_CONSTRAINT};
  for (size_t i = 0; i < p.n && i < sizeof kinds / sizeof kinds[0]; i++)
    CHECK_INT(p.stmts[i].kind, kinds[i]);
  CHECK_INT(p.relaxed_not_null, 0);
  done(&desired, &live, &d, &p);
}

TEST(plan_statement_kinds_never_go_backwards_in_dependency_order)
{
  /* One missing object of each kind, on existing containers where it has one. */
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&live, o_schema("public"));
  add(&live, o_enum("public", "e"));
  add(&live, o_label("public", "e", "a", 1));
  add(&live, o_table_rows("public", "t", false));
  add(&live, o_col("public", "t", "id", "integer", true, 1));
  add(&desired, o_schema("public"));
  add(&desired, o_enum("public", "e"));
  add(&desired, o_label("public", "e", "a", 1));
  add(&desired, o_table_rows("public", "t", false));
  add(&desired, o_col("public", "t", "id", "integer", true, 1));
  add(&desired, o_schema("z"));
  add(&desired, o_enum("public", "f"));
  add(&desired, o_label("public", "e", "b", 2));
  add(&desired, o_seq("public", "q", SEQDEF));
  add(&desired, o_table_rows("public", "u", false));
  add(&desired, o_col("public", "t", "c", "integer", false, 2));
  add(&desired, o_index("public", "t", "i", "CREATE UNIQUE INDEX i ON public.t USING btree (c)"));
  add(&desired, o_con("public", "t", "k", 'p', "PRIMARY KEY (id)"));
  add(&desired, o_ext("citext", "public", "1.6"));
  add(&desired, o_typedef(PGG_OBJ_DOMAIN, "public", "pos", "AS integer CONSTRAINT \"p\" CHECK ((VALUE > 0))"));
  add(&desired, o_typedef(PGG_OBJ_COMPOSITE, "public", "pair", "(\"a\" integer, \"b\" text)"));
  add(&desired, o_func("public", "f()", "CREATE OR REPLACE FUNCTION public.f()\n RETURNS trigger\n"
                       " LANGUAGE plpgsql\nAS $function$BEGIN RETURN NEW; END;$function$\n", 1));
  add(&desired, o_view("public", "mv", 'm', " SELECT t.id,\n    t.c\n   FROM public.t", 0));
  add(&desired, o_trigger("public", "t", "trg", "CREATE TRIGGER trg BEFORE INSERT OR UPDATE OF id, c"
                          " ON public.t FOR EACH ROW EXECUTE FUNCTION public.f()"));
  add(&live, o_seq("public", "t_id_seq", SEQDEF));
  add(&desired, o_seq("public", "t_id_seq", SEQDEF));
  add(&desired, o_owned("public", "t_id_seq", "t.id", "t", "id"));
  /* A table with rows: its missing index and key are built concurrently. */
  add(&live, o_table_rows("public", "w", true));
  add(&live, o_col("public", "w", "id", "integer", true, 1));
  add(&desired, o_table_rows("public", "w", false));
  add(&desired, o_col("public", "w", "id", "integer", true, 1));
  add(&desired, o_index("public", "w", "wi", "CREATE INDEX wi ON public.w USING btree (id)"));
  add(&desired, o_con("public", "w", "w_pkey", 'p', "PRIMARY KEY (id)"));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  /* The transactional kinds once each in order, then two units of three. */
  CHECK_INT(p.n, PGG_STMT__COUNT + 2);
  static const pgg_stmt_kind units[] = {
      PGG_STMT_DROP_INVALID_INDEX, PGG_STMT_CREATE_INDEX_CONCURRENTLY, PGG_STMT_RENAME_INDEX,
      PGG_STMT_DROP_INVALID_INDEX, PGG_STMT_CREATE_INDEX_CONCURRENTLY,
      PGG_STMT_ADD_CONSTRAINT_USING_INDEX};
  for (size_t i = PGG_STMT_FIRST_CONCURRENT; i < p.n; i++)
    CHECK_INT(p.stmts[i].kind, units[i - PGG_STMT_FIRST_CONCURRENT]);
  for (size_t i = 0; i < p.n && i < PGG_STMT_FIRST_CONCURRENT; i++) {
    CHECK_INT(p.stmts[i].kind, i);  /* exactly one of each kind, in enum order */
    if (i)
      CHECK(p.stmts[i - 1].kind <= p.stmts[i].kind);
  }
  CHECK(plan_has(&p, "ALTER TYPE \"public\".\"e\" ADD VALUE IF NOT EXISTS 'b' AFTER 'a'"));
  CHECK(plan_has(&p, "ALTER TABLE \"public\".\"t\" ADD COLUMN \"c\" integer"));
  CHECK(plan_has(&p, "CREATE UNIQUE INDEX i ON public.t USING btree (c)"));
  CHECK(plan_has(&p, "CREATE TYPE \"public\".\"f\" AS ENUM ()"));
  CHECK(plan_has(&p, "CREATE TABLE \"public\".\"u\" ()"));
  CHECK(plan_has(&p, "CREATE EXTENSION IF NOT EXISTS \"citext\" WITH SCHEMA \"public\" VERSION '1.6'"));
  CHECK(plan_has(&p, "CREATE DOMAIN \"public\".\"pos\" AS integer CONSTRAINT \"p\" CHECK ((VALUE > 0))"));
  CHECK(plan_has(&p, "CREATE TYPE \"public\".\"pair\" AS (\"a\" integer, \"b\" text)"));
  /* Never OR REPLACE: an existing function of that signature makes it fail. */
  CHECK(plan_has(&p, "CREATE FUNCTION public.f()\n RETURNS trigger\n LANGUAGE plpgsql\n"
                     "AS $function$BEGIN RETURN NEW; END;$function$"));
  CHECK(plan_has(&p, "CREATE MATERIALIZED VIEW \"public\".\"mv\" AS  SELECT t.id,\n    t.c\n"
                     "   FROM public.t WITH NO DATA"));
  CHECK(plan_has(&p, "CREATE TRIGGER trg BEFORE INSERT OR UPDATE OF id, c ON public.t FOR EACH ROW"
                     " EXECUTE FUNCTION public.f()"));
  CHECK(plan_has(&p, "ALTER SEQUENCE \"public\".\"t_id_seq\" OWNED BY \"public\".\"t\".\"id\""));
  CHECK(plan_has(&p, "REFRESH MATERIALIZED VIEW \"public\".\"mv\""));
  done(&desired, &live, &d, &p);
}

TEST(partitioned_tables_and_partitions_unlogged_and_collations)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&live, o_schema("public"));
  add(&desired, o_schema("public"));
  pgg_object ev = o_table_rows("public", "events", false);
  ev.relkind = 'p';
  ev.definition = S("RANGE (at)");
  add(&desired, ev);
  add(&desired, o_col("public", "events", "at", "date", true, 1));
  pgg_object name = o_col("public", "events", "name", "text", false, 2);
  name.collation = S(" COLLATE pg_catalog.\"C\"");
  add(&desired, name);
  /* Names sort the sub-partition first: depth, not name, orders them. */
  pgg_object y = o_table_rows("public", "b_2024", false);
  y.relkind = 'p';
  y.definition = S("LIST (name)");
  y.partition_of = S("public.events");
  y.default_expr = S("FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')");
  y.position = 1;
  add(&desired, y);
  pgg_object a = o_table_rows("public", "a_2024_x", false);
  a.partition_of = S("public.b_2024");
  a.default_expr = S("FOR VALUES IN ('x', 'y')");
  a.position = 2;
  a.persistence = 'u';
  add(&desired, a);
  pgg_object cache = o_table_rows("public", "cache", false);
  cache.persistence = 'u';
  add(&desired, cache);
  pgg_object ticket = o_seq("public", "ticket", "AS integer");
  ticket.persistence = 'u';
  add(&desired, ticket);
  /* Without its key a partitioned table is refused, its partition too. */
  pgg_object nokey = o_table_rows("public", "nokey", false);
  nokey.relkind = 'p';
  add(&desired, nokey);
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_ERR_SCHEMA);
  static const char *const want[] = {
      "CREATE UNLOGGED SEQUENCE \"public\".\"ticket\" AS integer",
      "CREATE UNLOGGED TABLE \"public\".\"cache\" ()",
      "CREATE TABLE \"public\".\"events\" (\"at\" date NOT NULL, \"name\" text COLLATE "
      "pg_catalog.\"C\") PARTITION BY RANGE (at)",
      "CREATE TABLE \"public\".\"b_2024\" PARTITION OF public.events FOR VALUES FROM "
      "('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (name)",
      "CREATE UNLOGGED TABLE \"public\".\"a_2024_x\" PARTITION OF public.b_2024 FOR VALUES IN "
      "('x', 'y')",
      NULL};
  check_plan(&p, want);
  done(&desired, &live, &d, &p);
}

TEST(views_come_inner_first_and_functions_by_phase)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&live, o_schema("public"));
  add(&desired, o_schema("public"));
  add(&desired, o_table_rows("public", "t", false));
  add(&desired, o_col("public", "t", "id", "integer", false, 1));
  add(&desired, o_view("public", "a_outer", 'v', " SELECT z_inner.id FROM public.z_inner", 1));
  pgg_object inner = o_view("public", "z_inner", 'v', " SELECT t.id FROM public.t", 0);
  inner.type = S("security_barrier=true");
  add(&desired, inner);
  add(&desired, o_index("public", "m", "m_id", "CREATE UNIQUE INDEX m_id ON public.m USING btree (id)"));
  add(&desired, o_view("public", "m", 'm', " SELECT t.id FROM public.t", 0));
  add(&desired, o_func("public", "a_rows()", "CREATE OR REPLACE FUNCTION public.a_rows() RETURNS SETOF public.t", 2));
  add(&desired, o_func("public", "b_ids()", "CREATE OR REPLACE PROCEDURE public.b_ids() BEGIN ATOMIC SELECT 1; END", 3));
  /* Called by a domain's check: before the domain. */
  add(&desired, o_func("public", "e_ok(integer)", "CREATE OR REPLACE FUNCTION public.e_ok(integer) RETURNS boolean", 0));
  add(&desired, o_typedef(PGG_OBJ_DOMAIN, "public", "okint", "AS integer CHECK (public.e_ok(VALUE))"));
  add(&desired, o_func("public", "c_new()", "CREATE OR REPLACE FUNCTION public.c_new() RETURNS integer", 0));
  add(&desired, o_func("public", "d_bad()", "CREATE FUNCTION public.d_bad(); DROP TABLE t", 0));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_ERR_SCHEMA);
  static const char *const want[] = {
      "CREATE FUNCTION public.c_new() RETURNS integer",
      "CREATE FUNCTION public.e_ok(integer) RETURNS boolean",
      "CREATE DOMAIN \"public\".\"okint\" AS integer CHECK (public.e_ok(VALUE))",
      "CREATE TABLE \"public\".\"t\" (\"id\" integer)",
      "CREATE FUNCTION public.a_rows() RETURNS SETOF public.t",
      "CREATE MATERIALIZED VIEW \"public\".\"m\" AS  SELECT t.id FROM public.t WITH NO DATA",
      "CREATE VIEW \"public\".\"z_inner\" WITH (security_barrier=true) AS  SELECT t.id FROM public.t",
      "CREATE VIEW \"public\".\"a_outer\" AS  SELECT z_inner.id FROM public.z_inner",
      "CREATE PROCEDURE public.b_ids() BEGIN ATOMIC SELECT 1; END",
      "CREATE UNIQUE INDEX m_id ON public.m USING btree (id)",
      "REFRESH MATERIALIZED VIEW \"public\".\"m\"",
      NULL};
  check_plan(&p, want);
  done(&desired, &live, &d, &p);
}

TEST(owned_by_is_set_only_on_a_sequence_owned_by_nothing)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&live, o_schema("public"));
  add(&desired, o_schema("public"));
  add(&live, o_table_rows("public", "t", true));
  add(&desired, o_table_rows("public", "t", false));
  add(&live, o_col("public", "t", "a", "integer", false, 1));
  add(&desired, o_col("public", "t", "a", "integer", false, 1));
  add(&live, o_col("public", "t", "b", "integer", false, 2));
  add(&desired, o_col("public", "t", "b", "integer", false, 2));
  add(&live, o_seq("public", "s1", SEQDEF));
  add(&desired, o_seq("public", "s1", SEQDEF));
  add(&live, o_seq("public", "s2", SEQDEF));
  add(&desired, o_seq("public", "s2", SEQDEF));
  add(&desired, o_owned("public", "s1", "t.a", "t", "a"));
  /* s2 belongs to t.b in live, to t.a in desired: moving it is no addition. */
  add(&desired, o_owned("public", "s2", "t.a", "t", "a"));
  add(&live, o_owned("public", "s2", "t.b", "t", "b"));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_ERR_SCHEMA);
  static const char *const want[] = {
      "ALTER SEQUENCE \"public\".\"s1\" OWNED BY \"public\".\"t\".\"a\"", NULL};
  check_plan(&p, want);
  done(&desired, &live, &d, &p);
}

TEST(create_table_lists_columns_by_position_with_every_clause)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&live, o_schema("public"));
  add(&desired, o_schema("public"));
  add(&desired, o_table_rows("public", "t", false));
  /* Name order is the reverse of position order; gaps from dropped columns. */
  pgg_object z = o_col("public", "t", "z", "integer", true, 1);
  z.identity = 'd';
  add(&desired, z);
  pgg_object y = o_col("public", "t", "y", "numeric(10,2)", true, 3);
  y.default_expr = S("0.00");
  add(&desired, y);
  pgg_object x = o_col("public", "t", "x", "numeric(12,2)", false, 7);
  x.generated = 's';
  x.default_expr = S("(y * 2::numeric)");
  add(&desired, x);
  pgg_object w = o_col("public", "t", "w", "integer[]", false, 9);
  w.default_expr = S("ARRAY[1, 2]");
  add(&desired, w);
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  static const char *const want[] = {
      "CREATE TABLE \"public\".\"t\" (\"z\" integer GENERATED BY DEFAULT AS IDENTITY NOT NULL, "
      "\"y\" numeric(10,2) DEFAULT 0.00 NOT NULL, "
      "\"x\" numeric(12,2) GENERATED ALWAYS AS ((y * 2::numeric)) STORED, "
      "\"w\" integer[] DEFAULT ARRAY[1, 2])",
      NULL};
  check_plan(&p, want);
  done(&desired, &live, &d, &p);
}

TEST(weird_names_are_always_quoted_identifiers_and_literals)
{
  static const char *const sch = "My \"Schema\"";
  static const char *const tab = "order items";
  static const char *const col = "x\"; DROP TABLE y; --";
  static const char *const en = "\xc3\x9cn\xc3\xaf";  /* Ünï */
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_schema(sch));
  add(&desired, o_enum(sch, en));
  add(&desired, o_label(sch, en, "it's", 1));
  add(&desired, o_label(sch, en, "back\\slash", 2));
  add(&desired, o_label(sch, en, "x'; DROP TYPE y; --", 3));
  add(&desired, o_table_rows(sch, tab, false));
  add(&desired, o_col(sch, tab, col, "integer", false, 1));
  add(&desired, o_col(sch, tab, "UPPER", "text", false, 2));
  add(&desired, o_con(sch, tab, "Key \"1\"", 'u', "UNIQUE (\"UPPER\")"));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  static const char *const want[] = {
      "CREATE SCHEMA \"My \"\"Schema\"\"\"",
      "CREATE TYPE \"My \"\"Schema\"\"\".\"\xc3\x9cn\xc3\xaf\" AS ENUM "
      "('it''s', E'back\\\\slash', 'x''; DROP TYPE y; --')",
      "CREATE TABLE \"My \"\"Schema\"\"\".\"order items\" "
      "(\"x\"\"; DROP TABLE y; --\" integer, \"UPPER\" text)",
      "ALTER TABLE \"My \"\"Schema\"\"\".\"order items\" ADD CONSTRAINT \"Key \"\"1\"\"\" "
      "UNIQUE (\"UPPER\")",
      NULL};
  check_plan(&p, want);
  done(&desired, &live, &d, &p);
}

TEST(plan_format_groups_statements_as_they_run_each_with_its_lock)
{
  pgg_plan p;
  pgg_plan_init(&p);
  pgg_stmt st[6] = {
      {.kind = PGG_STMT_ADD_ENUM_VALUE, .sql = S("ALTER TYPE \"e\" ADD VALUE IF NOT EXISTS 'x'")},
      {.kind = PGG_STMT_CREATE_SCHEMA, .sql = S("CREATE SCHEMA \"a\"")},
      {.kind = PGG_STMT_ADD_COLUMN, .sql = S("ALTER TABLE \"a\".\"t\" ADD COLUMN \"c\" integer")},
      {.kind = PGG_STMT_DROP_INVALID_INDEX, .sql = S("DROP INDEX CONCURRENTLY IF EXISTS \"a\".\"b\"")},
      {.kind = PGG_STMT_CREATE_INDEX_CONCURRENTLY, .sql = S("CREATE INDEX CONCURRENTLY \"b\" ON \"a\".\"t\" (c)")},
      {.kind = PGG_STMT_RENAME_INDEX, .sql = S("ALTER INDEX \"a\".\"b\" RENAME TO \"i\"")}};
  p.stmts = st;
  p.n = 6;
  pgg_buf b;
  pgg_buf_init(&b);
  REQUIRE(pgg_plan_format(&p, &b) == PGG_OK);
  REQUIRE(pgg_buf_append_u8(&b, 0) == PGG_OK);
  const char *text = (const char *)b.data;
  /* Three groups, in the order they run, and every statement ends ";\n". */
  const char *g0 = strstr(text, "-- committed first"), *g1 = strstr(text, "\n-- under the repair lock"),
             *g3 = strstr(text, "\n-- after COMMIT, on a session of its own");
  CHECK(g0 == text && g1 && g3 && g1 < g3);
  CHECK(strstr(text, "-- lock: ACCESS EXCLUSIVE on the table, for a catalog change only (no rewrite)\n"
                     "ALTER TABLE \"a\".\"t\" ADD COLUMN \"c\" integer;\n"));
  CHECK(strstr(text, "-- lock: SHARE UPDATE EXCLUSIVE: reads and writes go on; waits for older "
                     "transactions\nCREATE INDEX CONCURRENTLY"));
  CHECK(strstr(text, "\nCREATE SCHEMA \"a\";\n"));   /* a new object: no lock line */
  unsigned stmts = 0;
  for (const char *q = text; (q = strstr(q, ";\n")); q += 2)
    stmts++;
  CHECK_INT(stmts, 6);
  pgg_buf_free(&b);
  pgg_plan empty;
  pgg_plan_init(&empty);
  pgg_buf_init(&b);
  CHECK_INT(pgg_plan_format(&empty, &b), PGG_OK);
  CHECK_INT(b.len, 0);
  pgg_buf_free(&b);
}

TEST(no_drift_means_an_empty_plan)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_schema("public"));
  add(&desired, o_table_rows("public", "t", false));
  add(&live, o_schema("public"));
  add(&live, o_table_rows("public", "t", true));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  CHECK_INT(p.n, 0);
  done(&desired, &live, &d, &p);
}

TEST(extra_and_conflicting_objects_produce_no_statements)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_schema("public"));
  add(&desired, o_table_rows("public", "t", false));
  add(&desired, o_col("public", "t", "c", "bigint", true, 1));
  add(&desired, o_con("public", "t", "k", 'p', "PRIMARY KEY (c)"));
  add(&live, o_schema("public"));
  add(&live, o_schema("old"));
  add(&live, o_table_rows("public", "t", true));
  add(&live, o_col("public", "t", "c", "integer", false, 1));   /* conflicting */
  add(&live, o_col("public", "t", "legacy", "text", true, 2));  /* extra */
  add(&live, o_con("public", "t", "k", 'u', "UNIQUE (c)"));     /* conflicting */
  add(&live, o_table_rows("public", "legacy", true));                /* extra */
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  CHECK_INT(p.n, 0);
  done(&desired, &live, &d, &p);
}

/* ---- existing tables: rows, NOT NULL, NOT VALID ------------------------- */

TEST(not_null_column_without_default_is_added_nullable_to_a_table_with_rows)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&live, o_table_rows("public", "t", true));
  add(&desired, o_table_rows("public", "t", false));
  add(&desired, o_col("public", "t", "a", "integer", true, 1));
  pgg_object b = o_col("public", "t", "b", "integer", true, 2);
  b.default_expr = S("0");
  add(&desired, b);
  pgg_object c = o_col("public", "t", "c", "bigint", true, 3);
  c.identity = 'a';
  add(&desired, c);
  pgg_object g = o_col("public", "t", "g", "integer", true, 4);
  g.generated = 's';
  g.default_expr = S("(b + 1)");
  add(&desired, g);
  add(&desired, o_col("public", "t", "n", "integer", false, 5));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  static const char *const want[] = {
      "ALTER TABLE \"public\".\"t\" ADD COLUMN \"a\" integer",  /* relaxed */
      "ALTER TABLE \"public\".\"t\" ADD COLUMN \"b\" integer DEFAULT 0 NOT NULL",
      "ALTER TABLE \"public\".\"t\" ADD COLUMN \"c\" bigint GENERATED ALWAYS AS IDENTITY NOT NULL",
      "ALTER TABLE \"public\".\"t\" ADD COLUMN \"g\" integer GENERATED ALWAYS AS ((b + 1)) STORED "
      "NOT NULL",
      "ALTER TABLE \"public\".\"t\" ADD COLUMN \"n\" integer",
      NULL};
  check_plan(&p, want);
  CHECK_INT(p.relaxed_not_null, 1);
  for (size_t i = 0; i < p.n; i++)
    CHECK_INT(p.stmts[i].kind, PGG_STMT_ADD_COLUMN);
  done(&desired, &live, &d, &p);
}

TEST(not_null_is_kept_when_the_existing_table_is_empty_or_new)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&live, o_table_rows("public", "empty", false));
  add(&desired, o_table_rows("public", "empty", false));
  add(&desired, o_col("public", "empty", "a", "integer", true, 1));
  add(&desired, o_table_rows("public", "fresh", false));
  add(&desired, o_col("public", "fresh", "a", "integer", true, 1));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  static const char *const want[] = {
      "CREATE TABLE \"public\".\"fresh\" (\"a\" integer NOT NULL)",
      "ALTER TABLE \"public\".\"empty\" ADD COLUMN \"a\" integer NOT NULL",
      NULL};
  check_plan(&p, want);
  CHECK_INT(p.relaxed_not_null, 0);
  done(&desired, &live, &d, &p);
}

TEST(foreign_key_is_not_valid_on_an_existing_table_only)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  /* "old" exists and is empty: still NOT VALID, the rule is about the table
   * having existed, not about its rows at planning time. */
  add(&live, o_table_rows("public", "users", true));
  add(&live, o_col("public", "users", "id", "bigint", true, 1));
  add(&live, o_con("public", "users", "users_pkey", 'p', "PRIMARY KEY (id)"));
  add(&live, o_table_rows("public", "old", false));
  add(&live, o_col("public", "old", "user_id", "bigint", false, 1));
  add(&live, o_table_rows("public", "older", true));
  add(&live, o_col("public", "older", "user_id", "bigint", false, 1));
  {
    pgg_catalog *c = &desired;
    add(c, o_table_rows("public", "users", false));
    add(c, o_col("public", "users", "id", "bigint", true, 1));
    add(c, o_con("public", "users", "users_pkey", 'p', "PRIMARY KEY (id)"));
    add(c, o_table_rows("public", "old", false));
    add(c, o_col("public", "old", "user_id", "bigint", false, 1));
    add(c, o_con("public", "old", "old_fk", 'f',
                 "FOREIGN KEY (user_id) REFERENCES public.users(id)"));
    add(c, o_table_rows("public", "older", false));
    add(c, o_col("public", "older", "user_id", "bigint", false, 1));
    /* Already NOT VALID in the shadow: not doubled. */
    add(c, o_con("public", "older", "older_fk", 'f',
                 "FOREIGN KEY (user_id) REFERENCES public.users(id) NOT VALID"));
    add(c, o_table_rows("public", "fresh", false));
    add(c, o_col("public", "fresh", "user_id", "bigint", false, 1));
    add(c, o_con("public", "fresh", "fresh_fk", 'f',
                 "FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE"));
  }
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  static const char *const want[] = {
      "CREATE TABLE \"public\".\"fresh\" (\"user_id\" bigint)",
      "ALTER TABLE \"public\".\"fresh\" ADD CONSTRAINT \"fresh_fk\" FOREIGN KEY (user_id) "
      "REFERENCES public.users(id) ON DELETE CASCADE",
      "ALTER TABLE \"public\".\"old\" ADD CONSTRAINT \"old_fk\" FOREIGN KEY (user_id) "
      "REFERENCES public.users(id) NOT VALID",
      "ALTER TABLE \"public\".\"older\" ADD CONSTRAINT \"older_fk\" FOREIGN KEY (user_id) "
      "REFERENCES public.users(id) NOT VALID",
      NULL};
  check_plan(&p, want);
  done(&desired, &live, &d, &p);
}

TEST(foreign_key_on_an_existing_partitioned_table_is_added_validated)
{
  /* PostgreSQL 15 refuses NOT VALID there ("cannot add NOT VALID foreign
   * key on partitioned table"): the one way it takes the key. */
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  pgg_object ev = o_table_rows("public", "events", true);
  ev.relkind = 'p';
  ev.definition = S("RANGE (at)");
  add(&live, ev);
  add(&desired, ev);
  add(&live, o_col("public", "events", "user_id", "bigint", false, 1));
  add(&desired, o_col("public", "events", "user_id", "bigint", false, 1));
  add(&desired, o_con("public", "events", "events_user_fk", 'f',
                      "FOREIGN KEY (user_id) REFERENCES public.users(id)"));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  static const char *const want[] = {
      "ALTER TABLE \"public\".\"events\" ADD CONSTRAINT \"events_user_fk\" FOREIGN KEY (user_id) "
      "REFERENCES public.users(id)",
      NULL};
  check_plan(&p, want);
  done(&desired, &live, &d, &p);
}

/* pgg_build_name("public", "full", "a_key", "UNIQUE (a)") */
#define BUILD_FULL_A_KEY "pgguard_build_b3cfdeda8f5007a5"

TEST(check_is_not_valid_on_an_existing_table_with_rows_keys_are_built_concurrently)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  static const char *const tables[] = {"full", "empty", "fresh"};
  for (int i = 0; i < 3; i++) {
    if (i < 2) {
      add(&live, o_table_rows("public", tables[i], i == 0));
      add(&live, o_col("public", tables[i], "a", "integer", false, 1));
    }
    add(&desired, o_table_rows("public", tables[i], false));
    add(&desired, o_col("public", tables[i], "a", "integer", false, 1));
    add(&desired, o_con("public", tables[i], "a_check", 'c', "CHECK ((a > 0))"));
    add(&desired, o_con("public", tables[i], "a_key", 'u', "UNIQUE (a)"));
  }
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
  static const char *const want[] = {
      "CREATE TABLE \"public\".\"fresh\" (\"a\" integer)",
      "ALTER TABLE \"public\".\"empty\" ADD CONSTRAINT \"a_key\" UNIQUE (a)",
      "ALTER TABLE \"public\".\"fresh\" ADD CONSTRAINT \"a_key\" UNIQUE (a)",
      "ALTER TABLE \"public\".\"empty\" ADD CONSTRAINT \"a_check\" CHECK ((a > 0))",
      "ALTER TABLE \"public\".\"fresh\" ADD CONSTRAINT \"a_check\" CHECK ((a > 0))",
      "ALTER TABLE \"public\".\"full\" ADD CONSTRAINT \"a_check\" CHECK ((a > 0)) NOT VALID",
      /* The key of the table with rows: built after COMMIT, then attached. */
      "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"pgguard_build_b3cfdeda8f5007a5\"",
      "CREATE UNIQUE INDEX CONCURRENTLY \"pgguard_build_b3cfdeda8f5007a5\" ON \"public\".\"full\""
      " USING btree (a)",
      "ALTER TABLE \"public\".\"full\" ADD CONSTRAINT \"a_key\" UNIQUE USING INDEX "
      "\"pgguard_build_b3cfdeda8f5007a5\"",
      NULL};
  check_plan(&p, want);
  char name[PGG_BUILD_NAME_LEN];
  pgg_build_name("public", "full", "a_key", "UNIQUE (a)", name);
  CHECK_STR(name, BUILD_FULL_A_KEY);
  done(&desired, &live, &d, &p);
}

/* ---- enum labels -------------------------------------------------------- */

/* live labels and desired labels, each in order; the ADD VALUE statements. */
static const struct {
  const char *what;
  const char *live[5], *desired[6];
  const char *want[5];
} label_cases[] = {
    {"after the desired label before it",
     {"happy", "sad"}, {"happy", "ok", "sad", "angry"},
     {"ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'ok' AFTER 'happy'",
      "ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'angry' AFTER 'sad'"}},
    {"before the next when it is first",
     {"happy", "sad"}, {"first", "happy", "sad"},
     {"ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'first' BEFORE 'happy'"}},
    {"a run at the front is added backwards, each before an existing label",
     {"happy"}, {"a", "b", "happy", "c", "d"},
     {"ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'b' BEFORE 'happy'",
      "ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'a' BEFORE 'b'",
      "ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'c' AFTER 'happy'",
      "ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'd' AFTER 'c'"}},
    {"plain when the enum has no label yet",
     {NULL}, {"x", "y"},
     {"ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'x'",
      "ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'y' AFTER 'x'"}},
    {"an extra live label is never a neighbour",
     {"happy", "legacy", "sad"}, {"happy", "sad", "new"},
     {"ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS 'new' AFTER 'sad'"}},
    {"labels are quoted literals",
     {"it's"}, {"it's", "back\\slash"},
     {"ALTER TYPE \"public\".\"mood\" ADD VALUE IF NOT EXISTS E'back\\\\slash' AFTER 'it''s'"}},
    {"nothing when only positions differ",
     {"b", "a"}, {"a", "b"},
     {NULL}},
};

TEST(missing_label_is_added_next_to_a_neighbour_that_exists_when_it_runs)
{
  for (size_t i = 0; i < sizeof label_cases / sizeof label_cases[0]; i++) {
    pgg_catalog desired, live;
    pgg_catalog_init(&desired);
    pgg_catalog_init(&live);
    add(&live, o_enum("public", "mood"));
    add(&desired, o_enum("public", "mood"));
    for (int j = 0; j < 5 && label_cases[i].live[j]; j++)
      add(&live, o_label("public", "mood", label_cases[i].live[j], j + 1));
    for (int j = 0; j < 6 && label_cases[i].desired[j]; j++)
      add(&desired, o_label("public", "mood", label_cases[i].desired[j], j + 1));
    pgg_drift d;
    pgg_plan p;
    CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_OK);
    const char *want[6] = {0};
    for (int j = 0; j < 5; j++)
      want[j] = label_cases[i].want[j];
    check_plan(&p, want);
    for (size_t j = 0; j < p.n; j++)
      CHECK_INT(p.stmts[j].kind, PGG_STMT_ADD_ENUM_VALUE);
    if (check_failed_now)
      fprintf(stderr, "  in case: %s\n", label_cases[i].what);
    done(&desired, &live, &d, &p);
  }
}

/* ---- refusals ----------------------------------------------------------- */

TEST(index_definition_not_shaped_like_pg_get_indexdef_is_refused_never_emitted)
{
  static const char *const bad[] = {
      "DROP INDEX public.i",
      "create index i on public.t (a)",
      "CREATE INDEX i ON public.t USING btree (a); DROP TABLE public.t",
      "CREATE INDEX i ON public.t USING btree (a) -- trailing comment",
      "CREATE INDEX i ON public.t USING btree (a /* c */)",
      "CREATE INDEX CONCURRENTLY i ON public.t (a)",  /* would fail in a transaction */
      "CREATE INDEX concurrently ON public.t (a)",
      "CREATE INDEX IF NOT EXISTS i ON public.t (a)",
      "CREATE INDEX ON public.t (a)",
      "CREATE INDEX \"unterminated ON public.t (a)",
      "ALTER TABLE public.t DROP COLUMN a",
      "",
      NULL,  /* a definition missing altogether */
  };
  size_t nbad = sizeof bad / sizeof bad[0];
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  /* No rows: the indexes are built in the transaction, as written. */
  add(&live, o_table_rows("public", "t", false));
  add(&desired, o_table_rows("public", "t", false));
  char name[16];
  for (size_t i = 0; i < nbad; i++) {
    snprintf(name, sizeof name, "bad%zu", i);
    add(&desired, o_index("public", "t", name, bad[i]));
  }
  add(&desired, o_index("public", "t", "good", "CREATE INDEX good ON public.t USING btree (a)"));
  add(&desired, o_index("public", "t", "Good \"2\"",
                        "CREATE UNIQUE INDEX \"Good \"\"2\"\"\" ON public.t USING btree (a)"));
  add(&desired, o_col("public", "t", "a", "integer", false, 1));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_ERR_SCHEMA);
  static const char *const want[] = {
      "ALTER TABLE \"public\".\"t\" ADD COLUMN \"a\" integer",
      "CREATE UNIQUE INDEX \"Good \"\"2\"\"\" ON public.t USING btree (a)",
      "CREATE INDEX good ON public.t USING btree (a)",
      NULL};
  check_plan(&p, want);
  done(&desired, &live, &d, &p);
}

/* A constraint definition, column type or default that would make the
 * statement do more than its one additive thing — or that is fine. */
static const struct {
  const char *what;
  char field;  /* 'k' constraint definition, 't' column type, 'd' default, 's' sequence */
  const char *text;
  bool accepted;
} fragments[] = {
    {"second statement", 'k', "CHECK (true); DROP TABLE public.t", false},
    {"chained subcommand", 'k', "CHECK (true), DROP COLUMN a", false},
    {"chained subcommand in a type", 't', "integer, DROP COLUMN a", false},
    {"escaping the column list", 'd', "0) , (1", false},
    {"unbalanced bracket", 'd', "ARRAY[1", false},
    {"comment", 'd', "0 -- c", false},
    {"block comment", 'k', "CHECK (true) /* c */", false},
    {"dollar quote hiding a quote", 'd', "$$'$$", false},
    {"unterminated literal", 'd', "'abc", false},
    {"unterminated identifier", 't', "\"abc", false},
    {"backslash-escaped quote is not an escape", 'k', "CHECK ((a <> '\\'); DROP TABLE t; --'))",
     false},
    {"E-string escaped quote is one literal", 'k', "CHECK ((a <> E'\\'); DROP TABLE t; --'))",
     true},
    {"separators inside literals", 'd', "'a;b, c -- /* $$'::text", true},
    {"separators inside identifiers", 't', "public.\"odd; name, --\"", true},
    {"commas inside brackets", 'd', "ARRAY[1, 2]", true},
    {"regex with backslashes", 'k', "CHECK ((a ~ '^\\S+@\\S+$'::text))", true},
    {"negative sequence bound", 's', "AS integer INCREMENT BY -1 MINVALUE -100 MAXVALUE -1", true},
    {"sequence with a second statement", 's', "AS integer; DROP SEQUENCE x", false},
};

TEST(definition_that_would_end_or_chain_the_statement_is_refused)
{
  for (size_t i = 0; i < sizeof fragments / sizeof fragments[0]; i++) {
    pgg_catalog desired, live;
    pgg_catalog_init(&desired);
    pgg_catalog_init(&live);
    add(&live, o_table_rows("public", "t", false));
    add(&live, o_col("public", "t", "a", "text", false, 1));
    add(&desired, o_table_rows("public", "t", false));
    add(&desired, o_col("public", "t", "a", "text", false, 1));
    add(&desired, o_col("public", "t", "ok", "integer", false, 3));  /* always planned */
    char f = fragments[i].field;
    const char *text = fragments[i].text;
    if (f == 'k')
      add(&desired, o_con("public", "t", "k", 'c', text));
    if (f == 't')
      add(&desired, o_col("public", "t", "b", text, false, 2));
    if (f == 'd') {
      pgg_object b = o_col("public", "t", "b", "text", false, 2);
      b.default_expr = S(text);
      add(&desired, b);
    }
    if (f == 's')
      add(&desired, o_seq("public", "q", text));
    pgg_drift d;
    pgg_plan p;
    int rc = plan_of(&desired, &live, &d, &p);
    CHECK_INT(rc, fragments[i].accepted ? PGG_OK : PGG_ERR_SCHEMA);
    CHECK_INT(p.n, fragments[i].accepted ? 2 : 1);
    CHECK(plan_has(&p, "ALTER TABLE \"public\".\"t\" ADD COLUMN \"ok\" integer"));
    CHECK(plan_mentions(&p, text) == fragments[i].accepted);
    if (check_failed_now)
      fprintf(stderr, "  in case: %s\n", fragments[i].what);
    done(&desired, &live, &d, &p);
  }
}

TEST(missing_partitioned_table_is_refused_not_created_as_a_plain_table)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  pgg_object t = o_table_rows("public", "events", false);
  t.relkind = 'p';
  add(&desired, t);
  add(&desired, o_col("public", "events", "at", "timestamp with time zone", true, 1));
  add(&desired, o_con("public", "events", "events_pkey", 'p', "PRIMARY KEY (at)"));
  add(&desired, o_table_rows("public", "plain", false));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_ERR_SCHEMA);
  static const char *const want[] = {"CREATE TABLE \"public\".\"plain\" ()", NULL};
  check_plan(&p, want);
  done(&desired, &live, &d, &p);
}

TEST(child_whose_table_neither_side_has_is_refused)
{
  /* A desired catalog that contradicts itself (a column of no table). */
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_col("public", "ghost", "a", "integer", false, 1));
  add(&desired, o_label("public", "ghost_enum", "x", 1));
  pgg_drift d;
  pgg_plan p;
  CHECK_INT(plan_of(&desired, &live, &d, &p), PGG_ERR_SCHEMA);
  CHECK_INT(p.n, 0);
  done(&desired, &live, &d, &p);
}

/* ---- a tiny SQL lexer for checking plans -------------------------------- */

typedef enum { TK_END, TK_WORD, TK_IDENT, TK_STRING, TK_PUNCT, TK_BAD } tk_kind;

typedef struct {
  tk_kind kind;
  char text[256];  /* word (upper-cased), unquoted identifier or literal, or the punct */
} token;

/* Reads one token at *pp; quoted spans become one TK_IDENT or TK_STRING. */
static token lex(const char **pp)
{
  token t = {TK_END, ""};
  const char *p = *pp;
  while (*p == ' ' || *p == '\n' || *p == '\t')
    p++;
  size_t n = 0;
  if (!*p) {
    *pp = p;
    return t;
  }
  bool estr = (p[0] == 'E' || p[0] == 'e') && p[1] == '\'';
  if (estr)
    p++;
  if (*p == '"' || *p == '\'') {
    char q = *p++;
    t.kind = q == '"' ? TK_IDENT : TK_STRING;
    for (;;) {
      if (!*p || n + 1 >= sizeof t.text) {
        t.kind = TK_BAD;
        break;
      }
      if (estr && *p == '\\' && p[1]) {
        t.text[n++] = p[1];
        p += 2;
        continue;
      }
      if (*p == q) {
        if (p[1] != q) {
          p++;
          break;
        }
        p++;
      }
      t.text[n++] = *p++;
    }
  } else if (isalnum((unsigned char)*p) || *p == '_' || (unsigned char)*p >= 0x80) {
    t.kind = TK_WORD;
    while ((isalnum((unsigned char)*p) || *p == '_' || *p == '$' || (unsigned char)*p >= 0x80) &&
           n + 1 < sizeof t.text)
      t.text[n++] = (char)toupper((unsigned char)*p++);
  } else {
    t.kind = TK_PUNCT;
    t.text[n++] = *p++;
  }
  t.text[n] = 0;
  *pp = p;
  return t;
}

#define MAX_TOKENS 512

static size_t tokenize(const char *sql, token *out)
{
  size_t n = 0;
  const char *p = sql;
  while (n < MAX_TOKENS) {
    out[n] = lex(&p);
    if (out[n].kind == TK_END)
      break;
    n++;
  }
  return n;
}

static bool is_word(const token *t, const char *w)
{
  return t->kind == TK_WORD && !strcmp(t->text, w);
}

static bool is_punct(const token *t, char c)
{
  return t->kind == TK_PUNCT && t->text[0] == c;
}

/*
 * What in sql, outside quoted identifiers and literals, a purely additive
 * statement must never contain; NULL when clean. DELETE and UPDATE are
 * allowed only as the ON DELETE / ON UPDATE of a foreign key definition.
 */
static const char *forbidden_in(bool trigger, const char *sql)
{
  static char why[64];
  static token tk[MAX_TOKENS];
  size_t n = tokenize(sql, tk);
  if (n == MAX_TOKENS)
    return "too many tokens";
  for (size_t i = 0; i < n; i++) {
    const token *t = &tk[i];
    const token *prev = i ? &tk[i - 1] : NULL;
    const token *prev2 = i > 1 ? &tk[i - 2] : NULL;
    if (t->kind == TK_BAD)
      return "unterminated quote";
    if (is_punct(t, ';'))
      return ";";
    if (is_punct(t, '$'))
      return "$";
    if (prev && is_punct(prev, '-') && is_punct(t, '-'))
      return "--";
    if (prev && is_punct(prev, '/') && is_punct(t, '*'))
      return "/*";
    if (t->kind != TK_WORD)
      continue;
    const char *w = t->text;
    if (!strcmp(w, "DROP") || !strcmp(w, "TRUNCATE") || !strcmp(w, "RENAME") ||
        !strcmp(w, "GRANT") || !strcmp(w, "REVOKE") || !strcmp(w, "OWNER")) {
      snprintf(why, sizeof why, "%s", w);
      return why;
    }
    /* A trigger's events: BEFORE INSERT OR UPDATE, AFTER DELETE. */
    bool event = trigger && prev && (is_word(prev, "OR") || is_word(prev, "BEFORE") ||
                                     is_word(prev, "AFTER") || is_word(prev, "OF"));
    if ((!strcmp(w, "DELETE") || !strcmp(w, "UPDATE")) && !(prev && is_word(prev, "ON")) &&
        !event) {
      snprintf(why, sizeof why, "%s", w);
      return why;
    }
    if (!strcmp(w, "ALTER") && i != 0)
      return "ALTER not at the start";
    if (!strcmp(w, "COLUMN") && prev && is_word(prev, "ALTER"))
      return "ALTER COLUMN";
    if (!strcmp(w, "NULL") && prev && is_word(prev, "NOT") && prev2 && is_word(prev2, "SET"))
      return "SET NOT NULL";
  }
  return NULL;
}

TEST(forbidden_word_scanner_sees_only_what_is_outside_quotes)
{
  CHECK(forbidden_in(false, "CREATE TABLE \"DROP\" (\"x\"\"; DELETE FROM y; --\" integer)") == NULL);
  CHECK(forbidden_in(false, "ALTER TYPE \"t\" ADD VALUE IF NOT EXISTS 'x''; DROP TYPE t; --'") == NULL);
  CHECK(forbidden_in(false, "ALTER TYPE \"t\" ADD VALUE IF NOT EXISTS E'\\'; DROP TYPE t; --'") == NULL);
  CHECK(forbidden_in(false, "ALTER TABLE \"t\" ADD CONSTRAINT \"f\" FOREIGN KEY (a) REFERENCES "
                     "\"u\"(\"id\") ON DELETE CASCADE ON UPDATE SET NULL") == NULL);
  CHECK_STR(forbidden_in(false, "CREATE TABLE \"t\" (a int); DROP TABLE u"), ";");
  CHECK_STR(forbidden_in(false, "ALTER TABLE \"t\" DROP COLUMN a"), "DROP");
  CHECK_STR(forbidden_in(false, "ALTER TABLE \"t\" ALTER COLUMN a SET NOT NULL"), "ALTER not at the start");
  CHECK_STR(forbidden_in(false, "ALTER TABLE t SET NOT NULL"), "SET NOT NULL");
  CHECK_STR(forbidden_in(false, "ALTER TABLE t RENAME TO u"), "RENAME");
  CHECK_STR(forbidden_in(false, "CREATE INDEX i ON t (a) -- x"), "--");
  CHECK_STR(forbidden_in(false, "CREATE INDEX \"i ON t (a)"), "unterminated quote");
  CHECK_STR(forbidden_in(false, "ALTER TABLE t ADD CONSTRAINT c CHECK (delete > 0)"), "DELETE");
  CHECK_STR(forbidden_in(false, "ALTER TABLE \"x\"\"\" TRUNCATE"), "TRUNCATE");
}

/* ---- property test: random catalog pairs -------------------------------- */

typedef struct {
  uint64_t s;
} rng;

static uint64_t rnext(rng *r)
{
  /* xorshift64: deterministic across platforms, good enough to shuffle. */
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}

static unsigned rnd(rng *r, unsigned n)
{
  return (unsigned)(rnext(r) % n);
}

static bool chance(rng *r, unsigned pct)
{
  return rnd(r, 100) < pct;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const schema_pool[] = {
    "public", "app", "Sales", "x\"; DROP TABLE y; --", "sp ace", "\xc3\xbcn\xc3\xaf", "it's",
    "back\\slash", "DROP",
};
static const char *const name_pool[] = {
    "users", "Orders", "order items", "x\"; DROP TABLE y; --", "a\"b", "DROP", "update",
    "delete", "\xc3\xbcn\xc3\xaf", "it's", "semi;colon", "dash--dash", "/*c*/", "$1",
    "back\\slash", "t", "T", "comma,name", "paren(", "br]", "e'x'",
};
static const char *const label_pool[] = {
    "happy", "sad", "it's", "back\\slash", "x'; DROP TYPE y; --", "\xc3\xbcn\xc3\xaf", "a b",
    "\"q\"", "E'", "--", "UPDATE", "\\'", "ok",
};
static const char *const con_pool[] = {
    "pk", "Key \"1\"", "x\"; DROP TABLE y; --", "fk;", "chk", "u-1", "DELETE",
};
static const char *const default_pool[] = {
    "0", "'x,y'::text", "'it''s'::text", "now()", "E'a\\\\b'::text", "'-- not a comment'::text",
    "'; DROP TABLE x; --'::text", "(1 + 2)", "'{1,2}'::integer[]",
};
static const char *const type_pool[] = {
    "integer", "bigint", "text", "character varying(255)", "numeric(10,2)", "integer[]",
    "timestamp(3) with time zone",
};

/* k distinct indexes into a pool of n, in random order. */
static void pick(rng *r, unsigned n, unsigned k, unsigned *out)
{
  unsigned idx[64];
  for (unsigned i = 0; i < n; i++)
    idx[i] = i;
  for (unsigned i = 0; i < k && i < n; i++) {
    unsigned j = i + rnd(r, n - i);
    unsigned tmp = idx[i];
    idx[i] = idx[j];
    idx[j] = tmp;
    out[i] = idx[i];
  }
}

/* Appends a quoted identifier to a fixed buffer (the test's own quoting). */
static void catq(char *dst, size_t cap, const char *name)
{
  size_t n = strlen(dst);
  if (n + 1 < cap)
    dst[n++] = '"';
  for (const char *p = name; *p && n + 2 < cap; p++) {
    if (*p == '"')
      dst[n++] = '"';
    dst[n++] = *p;
  }
  if (n + 1 < cap)
    dst[n++] = '"';
  dst[n] = 0;
}

static void cat(char *dst, size_t cap, const char *s)
{
  size_t n = strlen(dst);
  snprintf(dst + n, cap - n, "%s", s);
}

typedef struct {
  const char *schema, *name;
  const char *cols[8];
  unsigned ncols;
  bool has_pk;
} gen_table;

/* Names for the objects of the kinds added later: a pool of their own, so
 * they never collide with the tables, enums and sequences above. */
static const char *const more_pool[] = {
    "v\"1", "it's", "DROP", "semi;colon", "\xc3\xbcn\xc3\xaf", "x\"; DROP VIEW y; --", "a b",
    "update", "m", "V",
};
static const char *const ext_pool[] = {"citext", "pg_trgm", "ext \"q\"", "it's"};

/* A function's definition as pg_get_functiondef prints it. */
static void gen_function(rng *r, pgg_catalog *c, const char *sch, const char *fname, int phase)
{
  char name[256], def[1024] = "";
  snprintf(name, sizeof name, "%s(integer)", fname);
  cat(def, sizeof def, chance(r, 80) ? "CREATE OR REPLACE FUNCTION " : "CREATE OR REPLACE PROCEDURE ");
  catq(def, sizeof def, sch);
  cat(def, sizeof def, ".");
  catq(def, sizeof def, fname);
  cat(def, sizeof def, "(integer)\n LANGUAGE plpgsql\nAS $function$BEGIN PERFORM 1; "
                       "END;$function$\n");
  add(c, o_func(sch, name, def, phase));
}

/*
 * Extensions, domains, composite types, functions of every phase,
 * partitioned tables and their partitions, UNLOGGED tables, collations,
 * views and materialized views (with indexes), triggers, sequence OWNED BY,
 * and objects of the kinds pgguard only reports.
 */
static void gen_more_kinds(rng *r, pgg_catalog *c, gen_table *tables, unsigned ntables)
{
  char def[1024], name[256];
  /* The names, not the objects: add() may move c->objs, never the strings. */
  const char *schemas[8];
  unsigned nschemas = 0;
  for (size_t i = 0; i < c->n && nschemas < 8; i++)
    if (c->objs[i].kind == PGG_OBJ_SCHEMA)
      schemas[nschemas++] = c->objs[i].name;
  unsigned ei[4], ne = chance(r, 85) ? 1 + rnd(r, 2) : 0;
  pick(r, COUNT(ext_pool), ne, ei);
  for (unsigned e = 0; e < ne; e++)
    add(c, o_ext(ext_pool[ei[e]], schemas[rnd(r, nschemas)], chance(r, 50) ? "1.6" : "it's"));
  for (unsigned si = 0; si < nschemas; si++) {
    const char *sch = schemas[si];
    unsigned mi[10];
    pick(r, COUNT(more_pool), COUNT(more_pool), mi);
    unsigned next = 0;
    if (chance(r, 70)) {
      snprintf(def, sizeof def, "AS integer DEFAULT 1 NOT NULL CONSTRAINT ");
      catq(def, sizeof def, more_pool[mi[next]]);
      cat(def, sizeof def, " CHECK ((VALUE > 0))");
      add(c, o_typedef(PGG_OBJ_DOMAIN, sch, more_pool[mi[next++]], def));
    }
    if (chance(r, 60)) {
      snprintf(def, sizeof def, "(");
      catq(def, sizeof def, more_pool[mi[next]]);
      cat(def, sizeof def, " integer, ");
      catq(def, sizeof def, more_pool[mi[next + 1]]);
      cat(def, sizeof def, " text COLLATE pg_catalog.\"C\")");
      add(c, o_typedef(PGG_OBJ_COMPOSITE, sch, more_pool[mi[next++]], def));
    }
    /* Functions: one of each phase now and then, all with the same body. */
    for (int phase = 0; phase <= 3; phase++)
      if (chance(r, 55))
        gen_function(r, c, sch, more_pool[mi[next++]], phase);
    /* Views over the schema's tables, and a view over a view. */
    const gen_table *t0 = NULL;
    for (unsigned t = 0; t < ntables && !t0; t++)
      if (!strcmp(tables[t].schema, sch) && tables[t].ncols)
        t0 = &tables[t];
    unsigned nv = t0 ? rnd(r, 3) : 0;
    const char *views[2];
    for (unsigned v = 0; v < nv; v++) {
      views[v] = more_pool[mi[next++]];
      bool mat = chance(r, 45);
      snprintf(def, sizeof def, " SELECT ");
      catq(def, sizeof def, t0->cols[0]);
      cat(def, sizeof def, " AS a,\n    'x,y'::text AS \"b,c\"\n   FROM ");
      catq(def, sizeof def, sch);
      cat(def, sizeof def, ".");
      catq(def, sizeof def, v ? views[0] : t0->name);
      pgg_object vo = o_view(sch, views[v], mat ? 'm' : 'v', def, (int)v);
      if (chance(r, 30))
        vo.type = S("security_barrier=true, check_option=local");
      add(c, vo);
      if (mat && chance(r, 60)) {
        snprintf(name, sizeof name, "%s idx", views[v]);
        snprintf(def, sizeof def, "CREATE UNIQUE INDEX ");
        catq(def, sizeof def, name);
        cat(def, sizeof def, " ON ");
        catq(def, sizeof def, sch);
        cat(def, sizeof def, ".");
        catq(def, sizeof def, views[v]);
        cat(def, sizeof def, " USING btree (a)");
        add(c, o_index(sch, views[v], name, def));
      }
    }
    /* A trigger on a table, calling a function of the schema. */
    if (t0 && t0->ncols >= 1 && chance(r, 60)) {
      const char *fname = more_pool[mi[next++]];
      gen_function(r, c, sch, fname, 0);
      snprintf(def, sizeof def, "CREATE TRIGGER ");
      catq(def, sizeof def, "trg");
      cat(def, sizeof def, " BEFORE INSERT OR UPDATE OF ");
      catq(def, sizeof def, t0->cols[0]);
      cat(def, sizeof def, ", ");
      catq(def, sizeof def, t0->cols[t0->ncols - 1]);
      cat(def, sizeof def, " ON ");
      catq(def, sizeof def, sch);
      cat(def, sizeof def, ".");
      catq(def, sizeof def, t0->name);
      cat(def, sizeof def, " FOR EACH ROW EXECUTE FUNCTION ");
      catq(def, sizeof def, sch);
      cat(def, sizeof def, ".");
      catq(def, sizeof def, fname);
      cat(def, sizeof def, "()");
      add(c, o_trigger(sch, t0->name, "trg", def));
    }
    /* A partitioned table with a partition or two (one itself partitioned). */
    if (chance(r, 45)) {
      char root[256], part[256];
      snprintf(root, sizeof root, "%s parted", more_pool[mi[next]]);
      pgg_object pt = o_table_rows(sch, root, false);
      pt.relkind = 'p';
      pt.definition = S("RANGE (at)");
      add(c, pt);
      add(c, o_col(sch, root, "at", "integer", true, 1));
      pgg_object key = o_col(sch, root, "note", "text", false, 2);
      key.collation = S(" COLLATE pg_catalog.\"C\"");
      add(c, key);
      char of[512] = "";
      catq(of, sizeof of, sch);
      cat(of, sizeof of, ".");
      catq(of, sizeof of, root);
      unsigned np = 1 + rnd(r, 2);
      for (unsigned k = 0; k < np; k++) {
        snprintf(part, sizeof part, "%s p%u", more_pool[mi[next]], k);
        pgg_object po = o_table_rows(sch, part, false);
        po.partition_of = of;
        po.default_expr = S(k ? "DEFAULT" : "FOR VALUES FROM (0) TO (10)");
        po.position = 1;
        po.persistence = chance(r, 20) ? 'u' : 'p';
        add(c, po);
      }
      next++;
    }
    if (chance(r, 30)) {
      snprintf(name, sizeof name, "%s cache", more_pool[mi[next++]]);
      pgg_object u = o_table_rows(sch, name, false);
      u.persistence = 'u';
      add(c, u);
    }
    /* OWNED BY: a sequence of the schema, owned by a column of one of its tables. */
    for (size_t i = 0; t0 && i < c->n; i++) {
      const pgg_object *q = &c->objs[i];
      if (q->kind != PGG_OBJ_SEQUENCE || strcmp(q->schema, sch) || !chance(r, 60))
        continue;
      snprintf(name, sizeof name, "%s.%s", t0->name, t0->cols[0]);
      char *seq = strdup(q->name);
      add(c, o_owned(sch, seq, name, t0->name, t0->cols[0]));
      free(seq);  /* add() copied it; c->objs may have moved */
      break;
    }
    /* What pgguard only reports. */
    if (t0 && chance(r, 40))
      add(c, o_unmodeled(PGG_OBJ_POLICY, sch, t0->name, "own rows", "r true"));
    if (chance(r, 30)) {
      snprintf(name, sizeof name, "schema %s", sch);
      add(c, o_unmodeled(PGG_OBJ_COMMENT, NULL, name, NULL, "hostile'); DROP TABLE t; --"));
    }
    if (chance(r, 20))
      add(c, o_unmodeled(PGG_OBJ_OTHER, NULL, NULL, "collation public.nd", NULL));
  }
}

/* A desired catalog shaped like what introspection returns: every child has
 * its container, names are hostile, definitions quote names like PostgreSQL. */
static void gen_desired(rng *r, pgg_catalog *c)
{
  gen_table tables[3 * 4];
  unsigned ntables = 0;
  unsigned si[4];
  unsigned nschemas = 1 + rnd(r, 3);
  pick(r, COUNT(schema_pool), nschemas, si);
  for (unsigned s = 0; s < nschemas; s++) {
    const char *sch = schema_pool[si[s]];
    add(c, o_schema(sch));
    unsigned ni[8];
    unsigned nenums = rnd(r, 3);
    pick(r, COUNT(name_pool), nenums, ni);
    const char *enums[3];
    for (unsigned e = 0; e < nenums; e++) {
      enums[e] = name_pool[ni[e]];
      add(c, o_enum(sch, enums[e]));
      unsigned li[8], nl = rnd(r, 6);
      pick(r, COUNT(label_pool), nl, li);
      for (unsigned l = 0; l < nl; l++)
        add(c, o_label(sch, enums[e], label_pool[li[l]], (int)l + 1));
    }
    unsigned nseq = rnd(r, 3);
    pick(r, COUNT(name_pool), nseq, ni);
    for (unsigned q = 0; q < nseq; q++) {
      pgg_object seq = o_seq(sch, name_pool[ni[q]], SEQDEF);
      seq.persistence = chance(r, 15) ? 'u' : 'p';
      add(c, seq);
    }
    unsigned nt = rnd(r, 5);
    pick(r, COUNT(name_pool), nt, ni);
    for (unsigned t = 0; t < nt; t++) {
      gen_table *g = &tables[ntables++];
      *g = (gen_table){.schema = sch, .name = name_pool[ni[t]]};
      add(c, o_table_rows(sch, g->name, false));
      unsigned ci[8];
      g->ncols = rnd(r, 6);
      pick(r, COUNT(name_pool), g->ncols, ci);
      int pos = 0;
      for (unsigned k = 0; k < g->ncols; k++) {
        g->cols[k] = name_pool[ci[k]];
        pos += 1 + (int)rnd(r, 2);  /* gaps, as dropped columns leave */
        char type[256] = "";
        if (nenums && chance(r, 20)) {
          catq(type, sizeof type, sch);
          cat(type, sizeof type, ".");
          catq(type, sizeof type, enums[rnd(r, nenums)]);
        } else {
          cat(type, sizeof type, type_pool[rnd(r, COUNT(type_pool))]);
        }
        pgg_object col = o_col(sch, g->name, g->cols[k], type, chance(r, 50), pos);
        unsigned what = rnd(r, 10);
        if (what < 3 && type[0] != '"') {
          col.default_expr = S(default_pool[rnd(r, COUNT(default_pool))]);
        } else if (what == 3) {
          col.type = S("bigint");
          col.identity = chance(r, 50) ? 'a' : 'd';
          col.not_null = true;
        } else if (what == 4) {
          col.type = S("integer");
          col.generated = 's';
          col.default_expr = S("(1 + 1)");
        }
        add(c, col);
      }
      if (!g->ncols)
        continue;
      unsigned ki[8];
      pick(r, COUNT(con_pool), 4, ki);
      char def[512];
      if (chance(r, 60)) {
        snprintf(def, sizeof def, "PRIMARY KEY (");
        catq(def, sizeof def, g->cols[0]);
        cat(def, sizeof def, ")");
        add(c, o_con(sch, g->name, con_pool[ki[0]], 'p', def));
        g->has_pk = true;
      }
      if (chance(r, 30)) {
        snprintf(def, sizeof def, "UNIQUE (");
        catq(def, sizeof def, g->cols[rnd(r, g->ncols)]);
        cat(def, sizeof def, ")");
        add(c, o_con(sch, g->name, con_pool[ki[1]], 'u', def));
      }
      if (chance(r, 30)) {
        snprintf(def, sizeof def, "CHECK ((");
        catq(def, sizeof def, g->cols[rnd(r, g->ncols)]);
        cat(def, sizeof def, " IS NOT NULL))");
        add(c, o_con(sch, g->name, con_pool[ki[2]], 'c', def));
      }
      unsigned xi[4], nx = rnd(r, 3);
      pick(r, COUNT(con_pool), nx, xi);
      for (unsigned x = 0; x < nx; x++) {
        snprintf(def, sizeof def, "CREATE %sINDEX ", chance(r, 30) ? "UNIQUE " : "");
        catq(def, sizeof def, con_pool[xi[x]]);
        cat(def, sizeof def, " ON ");
        catq(def, sizeof def, sch);
        cat(def, sizeof def, ".");
        catq(def, sizeof def, g->name);
        cat(def, sizeof def, " USING btree (");
        catq(def, sizeof def, g->cols[rnd(r, g->ncols)]);
        cat(def, sizeof def, ")");
        add(c, o_index(sch, g->name, con_pool[xi[x]], def));
      }
    }
  }
  /* Foreign keys last, to any table with a primary key (maybe in another
   * schema, maybe itself). */
  for (unsigned t = 0; t < ntables; t++) {
    gen_table *g = &tables[t];
    if (!g->ncols || !chance(r, 40))
      continue;
    gen_table *target = &tables[rnd(r, ntables)];
    if (!target->has_pk)
      continue;
    char def[512] = "FOREIGN KEY (";
    catq(def, sizeof def, g->cols[rnd(r, g->ncols)]);
    cat(def, sizeof def, ") REFERENCES ");
    catq(def, sizeof def, target->schema);
    cat(def, sizeof def, ".");
    catq(def, sizeof def, target->name);
    cat(def, sizeof def, "(");
    catq(def, sizeof def, target->cols[0]);
    cat(def, sizeof def, chance(r, 50) ? ") ON DELETE CASCADE" : ") ON UPDATE SET NULL");
    add(c, o_con(g->schema, g->name, "fk \"ref\"", 'f', def));
  }
  gen_more_kinds(r, c, tables, ntables);
  pgg_catalog_sort(c);
}

/* The container an object needs in its catalog, or NULL for a schema. */
static const pgg_object *container_in(const pgg_catalog *c, const pgg_object *o)
{
  switch (o->kind) {
  case PGG_OBJ_ENUM_LABEL:
    return pgg_catalog_find(c, PGG_OBJ_ENUM, o->schema, NULL, o->parent);
  case PGG_OBJ_COLUMN:
  case PGG_OBJ_CONSTRAINT:
    return pgg_catalog_find(c, PGG_OBJ_TABLE, o->schema, NULL, o->parent);
  case PGG_OBJ_INDEX:
  case PGG_OBJ_TRIGGER: {
    const pgg_object *t = pgg_catalog_find(c, PGG_OBJ_TABLE, o->schema, NULL, o->parent);
    return t ? t : pgg_catalog_find(c, PGG_OBJ_VIEW, o->schema, NULL, o->parent);
  }
  case PGG_OBJ_OWNED_BY:
    return pgg_catalog_find(c, PGG_OBJ_SEQUENCE, o->schema, NULL, o->parent);
  default:
    return o->schema ? pgg_catalog_find(c, PGG_OBJ_SCHEMA, o->schema, NULL, o->schema) : NULL;
  }
}

/* Live: an older, drifted copy of desired — objects (with their children)
 * missing, some changed, some extra, tables with and without rows. */
static void gen_live(rng *r, const pgg_catalog *desired, pgg_catalog *live)
{
  bool *keep = calloc(desired->n + 1, sizeof *keep);
  for (size_t i = 0; i < desired->n; i++) {
    const pgg_object *o = &desired->objs[i];
    unsigned pct = o->kind == PGG_OBJ_SCHEMA ? 85
                   : (o->kind == PGG_OBJ_ENUM || o->kind == PGG_OBJ_TABLE ||
                      o->kind == PGG_OBJ_SEQUENCE) ? 75 : 80;
    keep[i] = chance(r, pct);
    /* Containers sort before their children, so their fate is known. */
    const pgg_object *sch = pgg_catalog_find(desired, PGG_OBJ_SCHEMA, o->schema, NULL, o->schema);
    if (o->kind != PGG_OBJ_SCHEMA && sch && !keep[sch - desired->objs])
      keep[i] = false;
    const pgg_object *cont = o->kind == PGG_OBJ_SCHEMA ? NULL : container_in(desired, o);
    if (cont && cont->kind != PGG_OBJ_SCHEMA && !keep[cont - desired->objs])
      keep[i] = false;
    /* An OWNED BY needs its column too; an extension, its schema. */
    if (o->kind == PGG_OBJ_OWNED_BY) {
      const pgg_object *col = pgg_catalog_find(desired, PGG_OBJ_COLUMN, o->schema, o->type,
                                               o->definition);
      if (!col || !keep[col - desired->objs])
        keep[i] = false;
    }
    if (o->kind == PGG_OBJ_EXTENSION) {
      const pgg_object *es = pgg_catalog_find(desired, PGG_OBJ_SCHEMA, o->type, NULL, o->type);
      if (es && !keep[es - desired->objs])
        keep[i] = false;
    }
    if (!keep[i])
      continue;
    pgg_object l = *o;
    if (chance(r, 8)) {
      switch (o->kind) {
      case PGG_OBJ_COLUMN:
        if (chance(r, 50))
          l.type = S("smallint");
        else
          l.not_null = !l.not_null;
        break;
      case PGG_OBJ_CONSTRAINT: l.definition = S("CHECK ((true))"); break;
      case PGG_OBJ_INDEX: l.definition = S("CREATE INDEX zz ON public.zz USING hash (zz)"); break;
      case PGG_OBJ_SEQUENCE: l.definition = S("AS integer"); break;
      case PGG_OBJ_TABLE: l.relkind = 'p'; break;
      case PGG_OBJ_ENUM_LABEL: l.position = 100 - l.position; break;
      case PGG_OBJ_EXTENSION:
      case PGG_OBJ_DOMAIN:
      case PGG_OBJ_COMPOSITE:
      case PGG_OBJ_FUNCTION:
      case PGG_OBJ_VIEW:
      case PGG_OBJ_TRIGGER:
      case PGG_OBJ_COMMENT:
        l.definition = S("changed");
        break;
      default: break;
      }
    }
    if (o->kind == PGG_OBJ_TABLE)
      l.has_rows = chance(r, 50);
    add(live, l);
    if (o->kind == PGG_OBJ_TABLE && chance(r, 25))
      add(live, o_col(o->schema, o->name, "zz extra col", "text", true, 99));
    if (o->kind == PGG_OBJ_TABLE && chance(r, 15))
      add(live, o_index(o->schema, o->name, "zz extra idx", "CREATE INDEX x ON s.t (a)"));
    if (o->kind == PGG_OBJ_ENUM && chance(r, 30))
      add(live, o_label(o->schema, o->name, "zz extra label", chance(r, 50) ? 0 : 99));
    if (o->kind == PGG_OBJ_SCHEMA && chance(r, 15))
      add(live, o_table_rows(o->schema, "zz extra table", true));
  }
  if (chance(r, 10))
    add(live, o_schema("zz extra schema"));
  free(keep);
  pgg_catalog_sort(live);
}

static bool same(const char *a, const char *b)
{
  return (!a && !b) || (a && b && !strcmp(a, b));
}

/* A linear lookup: the symbolic database grows unsorted as the plan runs. */
static const pgg_object *lin_find(const pgg_catalog *c, pgg_obj_kind kind, const char *schema,
                                  const char *parent, const char *name)
{
  for (size_t i = 0; i < c->n; i++) {
    const pgg_object *o = &c->objs[i];
    if (o->kind == kind && same(o->schema, schema) && same(o->name, name) &&
        same(o->parent, parent))
      return o;
  }
  return NULL;
}

typedef struct {
  const pgg_catalog *desired, *live0;  /* live as planned against */
  pgg_catalog work;                    /* live with the plan applied so far */
  unsigned relaxed;
  unsigned tables_created;             /* CREATE TABLE statements applied so far */
  unsigned types_created;              /* CREATE DOMAIN and composite CREATE TYPE so far */
  unsigned refreshed;                  /* REFRESH statements applied */
  unsigned builds;                     /* concurrent units finished */
  char build[256];                     /* the unit's index, built under pgguard's name */
  char build_schema[256], build_table[256];
  char err[512];
} applier;

static bool fail(applier *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(applier *a, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(a->err, sizeof a->err, fmt, ap);
  va_end(ap);
  return false;
}

/* Adds the desired object (kind, s, p, n) to the symbolic database, after
 * checking the plan may create it now: it is desired, not there yet, and its
 * schema and container already exist. */
static bool create(applier *a, pgg_obj_kind kind, const char *s, const char *p, const char *n,
                   const pgg_object **made)
{
  const pgg_object *d = pgg_catalog_find(a->desired, kind, s, p, n);
  if (!d)
    return fail(a, "creates %s %s.%s.%s which is not desired", pgg_obj_kind_name(kind), s,
                p ? p : "-", n);
  if (lin_find(&a->work, kind, s, p, n))
    return fail(a, "creates %s %s which already exists", pgg_obj_kind_name(kind), n);
  if (!pgg_obj_kind_modeled(kind))
    return fail(a, "creates %s %s, a kind pgguard only reports", pgg_obj_kind_name(kind), n);
  /* An extension has no schema of its own; it goes into the one it names. */
  const char *in = kind == PGG_OBJ_EXTENSION ? d->type : s;
  if (kind != PGG_OBJ_SCHEMA && !lin_find(&a->work, PGG_OBJ_SCHEMA, in, NULL, in))
    return fail(a, "creates %s %s before its schema", pgg_obj_kind_name(kind), n);
  if (kind == PGG_OBJ_ENUM_LABEL && !lin_find(&a->work, PGG_OBJ_ENUM, s, NULL, p))
    return fail(a, "adds label %s before its enum", n);
  if ((kind == PGG_OBJ_COLUMN || kind == PGG_OBJ_CONSTRAINT) &&
      !lin_find(&a->work, PGG_OBJ_TABLE, s, NULL, p))
    return fail(a, "creates %s %s before its table", pgg_obj_kind_name(kind), n);
  if ((kind == PGG_OBJ_INDEX || kind == PGG_OBJ_TRIGGER) &&
      !lin_find(&a->work, PGG_OBJ_TABLE, s, NULL, p) && !lin_find(&a->work, PGG_OBJ_VIEW, s, NULL, p))
    return fail(a, "creates %s %s before its table or view", pgg_obj_kind_name(kind), n);
  if (kind == PGG_OBJ_OWNED_BY && (!lin_find(&a->work, PGG_OBJ_SEQUENCE, s, NULL, p) ||
                                   !lin_find(&a->work, PGG_OBJ_COLUMN, s, d->type, d->definition)))
    return fail(a, "OWNED BY %s before its sequence or column", n);
  add(&a->work, *d);
  *made = &a->work.objs[a->work.n - 1];
  return true;
}

/* A column's type naming an enum ("s"."e") needs that enum to exist. */
static bool type_ready(applier *a, const pgg_object *col)
{
  if (col->type[0] != '"')
    return true;
  token t[4];
  const char *p = col->type;
  for (int i = 0; i < 3; i++)
    t[i] = lex(&p);
  if (!lin_find(&a->work, PGG_OBJ_ENUM, t[0].text, NULL, t[2].text))
    return fail(a, "column %s uses enum %s before it exists", col->name, t[2].text);
  return true;
}

/* Expects tk[i..] to be `"schema" . "name"`. */
static bool qualified(const token *tk, size_t n, size_t i)
{
  return i + 2 < n && tk[i].kind == TK_IDENT && is_punct(&tk[i + 1], '.') &&
         tk[i + 2].kind == TK_IDENT;
}

static bool ends_with_words(const token *tk, size_t n, const char *a, const char *b)
{
  return n >= 2 && is_word(&tk[n - 2], a) && is_word(&tk[n - 1], b);
}

/* Applies one statement to the symbolic database; false with a->err set if
 * the statement is not one the plan may contain. */
static bool apply(applier *a, const pgg_stmt *st)
{
  static token tk[MAX_TOKENS];
  size_t n = tokenize(st->sql, tk);
  const pgg_object *o;
  switch (st->kind) {
  case PGG_STMT_CREATE_SCHEMA:
    if (n != 3 || !is_word(&tk[0], "CREATE") || !is_word(&tk[1], "SCHEMA") ||
        tk[2].kind != TK_IDENT)
      return fail(a, "bad CREATE SCHEMA");
    return create(a, PGG_OBJ_SCHEMA, tk[2].text, NULL, tk[2].text, &o);

  case PGG_STMT_CREATE_ENUM: {
    if (n < 8 || !is_word(&tk[0], "CREATE") || !is_word(&tk[1], "TYPE") || !qualified(tk, n, 2) ||
        !is_word(&tk[5], "AS") || !is_word(&tk[6], "ENUM") || !is_punct(&tk[7], '(') ||
        !is_punct(&tk[n - 1], ')'))
      return fail(a, "bad CREATE TYPE");
    const char *s = tk[2].text, *e = tk[4].text;
    if (!create(a, PGG_OBJ_ENUM, s, NULL, e, &o))
      return false;
    /* Every desired label, in desired position order. */
    int last = 0;
    size_t want = 0, got = 0;
    for (size_t i = 0; i < a->desired->n; i++) {
      const pgg_object *l = &a->desired->objs[i];
      want += l->kind == PGG_OBJ_ENUM_LABEL && !strcmp(l->schema, s) && !strcmp(l->parent, e);
    }
    for (size_t i = 8; i + 1 < n; i++) {
      if (is_punct(&tk[i], ','))
        continue;
      if (tk[i].kind != TK_STRING)
        return fail(a, "CREATE TYPE with a non-literal label");
      if (!create(a, PGG_OBJ_ENUM_LABEL, s, e, tk[i].text, &o))
        return false;
      if (o->position <= last)
        return fail(a, "CREATE TYPE labels out of position order");
      last = o->position;
      got++;
    }
    if (got != want)
      return fail(a, "CREATE TYPE with %zu labels, desired has %zu", got, want);
    return true;
  }

  case PGG_STMT_ADD_ENUM_VALUE: {
    if (n < 11 || !is_word(&tk[0], "ALTER") || !is_word(&tk[1], "TYPE") || !qualified(tk, n, 2) ||
        !is_word(&tk[5], "ADD") || !is_word(&tk[6], "VALUE") || !is_word(&tk[7], "IF") ||
        !is_word(&tk[8], "NOT") || !is_word(&tk[9], "EXISTS") || tk[10].kind != TK_STRING)
      return fail(a, "bad ALTER TYPE ... ADD VALUE");
    if (n == 13) {
      if ((!is_word(&tk[11], "AFTER") && !is_word(&tk[11], "BEFORE")) ||
          tk[12].kind != TK_STRING)
        return fail(a, "bad ADD VALUE position");
      if (!lin_find(&a->work, PGG_OBJ_ENUM_LABEL, tk[2].text, tk[4].text, tk[12].text))
        return fail(a, "ADD VALUE next to label %s that does not exist yet", tk[12].text);
    } else if (n != 11) {
      return fail(a, "bad ADD VALUE tail");
    }
    return create(a, PGG_OBJ_ENUM_LABEL, tk[2].text, tk[4].text, tk[10].text, &o);
  }

  case PGG_STMT_CREATE_SEQUENCE: {
    size_t u = is_word(&tk[1], "UNLOGGED") ? 1 : 0;
    if (n < 5 + u || !is_word(&tk[0], "CREATE") || !is_word(&tk[1 + u], "SEQUENCE") ||
        !qualified(tk, n, 2 + u))
      return fail(a, "bad CREATE SEQUENCE");
    if (!create(a, PGG_OBJ_SEQUENCE, tk[2 + u].text, NULL, tk[4 + u].text, &o))
      return false;
    if ((o->persistence == 'u') != (u == 1))
      return fail(a, "sequence %s: UNLOGGED %s", o->name, u ? "added" : "missing");
    return true;
  }

  case PGG_STMT_CREATE_TABLE: {
    size_t u = is_word(&tk[1], "UNLOGGED") ? 1 : 0;  /* tokens shift by one */
    if (n < 7 + u || !is_word(&tk[0], "CREATE") || !is_word(&tk[1 + u], "TABLE") ||
        !qualified(tk, n, 2 + u))
      return fail(a, "bad CREATE TABLE");
    const char *s = tk[2 + u].text, *t = tk[4 + u].text;
    if (!create(a, PGG_OBJ_TABLE, s, NULL, t, &o))
      return false;
    a->tables_created++;
    if ((o->persistence == 'u') != (u == 1))
      return fail(a, "table %s: UNLOGGED %s", t, u ? "added" : "missing");
    if (is_word(&tk[5 + u], "PARTITION")) {
      /* PARTITION OF "s"."parent" <bound>: the parent must be there. */
      if (!o->partition_of || !is_word(&tk[6 + u], "OF") || !qualified(tk, n, 7 + u))
        return fail(a, "bad CREATE TABLE ... PARTITION OF");
      if (!lin_find(&a->work, PGG_OBJ_TABLE, tk[7 + u].text, NULL, tk[9 + u].text))
        return fail(a, "partition %s before its parent %s", t, tk[9 + u].text);
      return true;
    }
    if (o->partition_of)
      return fail(a, "partition %s created as a table of its own", t);
    if (!is_punct(&tk[5 + u], '('))
      return fail(a, "bad CREATE TABLE column list");
    /* A column name is the identifier right after "(" or "," at depth 1, up
     * to the list's closing parenthesis. */
    int depth = 0, last = 0;
    size_t want = 0, got = 0, i;
    for (i = 0; i < a->desired->n; i++) {
      const pgg_object *c = &a->desired->objs[i];
      want += c->kind == PGG_OBJ_COLUMN && !strcmp(c->schema, s) && !strcmp(c->parent, t);
    }
    for (i = 5 + u; i < n; i++) {
      if (is_punct(&tk[i], '('))
        depth++;
      else if (is_punct(&tk[i], ')') && --depth == 0)
        break;
      else if (depth == 1 && tk[i].kind == TK_IDENT &&
               (is_punct(&tk[i - 1], '(') || is_punct(&tk[i - 1], ',')) && i - 1 >= 5 + u &&
               (i - 1 == 5 + u || is_punct(&tk[i - 1], ','))) {
        if (!create(a, PGG_OBJ_COLUMN, s, t, tk[i].text, &o) || !type_ready(a, o))
          return false;
        if (o->position <= last)
          return fail(a, "CREATE TABLE columns out of position order");
        last = o->position;
        got++;
      }
    }
    if (got != want)
      return fail(a, "CREATE TABLE with %zu columns, desired has %zu", got, want);
    const pgg_object *d = pgg_catalog_find(a->desired, PGG_OBJ_TABLE, s, NULL, t);
    bool by = i + 2 < n && is_word(&tk[i + 1], "PARTITION") && is_word(&tk[i + 2], "BY");
    if (by != (d->relkind == 'p') || (!by && i + 1 != n))
      return fail(a, "CREATE TABLE %s: PARTITION BY %s", t, by ? "on a plain table" : "missing");
    return true;
  }

  case PGG_STMT_ADD_COLUMN: {
    if (n < 9 || !is_word(&tk[0], "ALTER") || !is_word(&tk[1], "TABLE") ||
        !qualified(tk, n, 2) || !is_word(&tk[5], "ADD") || !is_word(&tk[6], "COLUMN") ||
        tk[7].kind != TK_IDENT)
      return fail(a, "bad ALTER TABLE ... ADD COLUMN");
    const char *s = tk[2].text, *t = tk[4].text;
    if (!create(a, PGG_OBJ_COLUMN, s, t, tk[7].text, &o) || !type_ready(a, o))
      return false;
    const pgg_object *lt = pgg_catalog_find(a->live0, PGG_OBJ_TABLE, s, NULL, t);
    if (!lt)
      return fail(a, "ADD COLUMN to a table that did not exist before the plan");
    bool relax = o->not_null && lt->has_rows && !o->default_expr && !o->identity &&
                 !o->generated;
    bool says_not_null = ends_with_words(tk, n, "NOT", "NULL");
    if (says_not_null != (o->not_null && !relax))
      return fail(a, "ADD COLUMN %s: NOT NULL %s", o->name, says_not_null ? "kept" : "dropped");
    if (relax) {
      a->relaxed++;
      a->work.objs[a->work.n - 1].not_null = false;  /* what the database now holds */
    }
    return true;
  }

  case PGG_STMT_CREATE_INDEX: {
    size_t i = is_word(&tk[1], "UNIQUE") ? 3 : 2;
    if (n < i + 5 || !is_word(&tk[0], "CREATE") || !is_word(&tk[i - 1], "INDEX") ||
        tk[i].kind != TK_IDENT || !is_word(&tk[i + 1], "ON") || !qualified(tk, n, i + 2))
      return fail(a, "bad CREATE INDEX");
    return create(a, PGG_OBJ_INDEX, tk[i + 2].text, tk[i + 4].text, tk[i].text, &o);
  }

  case PGG_STMT_ADD_CONSTRAINT: {
    if (n < 9 || !is_word(&tk[0], "ALTER") || !is_word(&tk[1], "TABLE") ||
        !qualified(tk, n, 2) || !is_word(&tk[5], "ADD") || !is_word(&tk[6], "CONSTRAINT") ||
        tk[7].kind != TK_IDENT)
      return fail(a, "bad ALTER TABLE ... ADD CONSTRAINT");
    const char *s = tk[2].text, *t = tk[4].text;
    if (!create(a, PGG_OBJ_CONSTRAINT, s, t, tk[7].text, &o))
      return false;
    const pgg_object *lt = pgg_catalog_find(a->live0, PGG_OBJ_TABLE, s, NULL, t);
    bool not_valid = ends_with_words(tk, n, "NOT", "VALID");
    bool want_nv = lt && ((o->contype == 'f' && lt->relkind != 'p') ||
                          (o->contype == 'c' && lt->has_rows));
    if (not_valid != want_nv)
      return fail(a, "constraint %s: NOT VALID %s", o->name, not_valid ? "added" : "missing");
    if (o->contype == 'f') {
      size_t r = 8;
      while (r < n && !is_word(&tk[r], "REFERENCES"))
        r++;
      if (!qualified(tk, n, r + 1))
        return fail(a, "foreign key without a qualified referenced table");
      const char *rs = tk[r + 1].text, *rt = tk[r + 3].text;
      if (!lin_find(&a->work, PGG_OBJ_TABLE, rs, NULL, rt))
        return fail(a, "foreign key to table %s before it exists", rt);
      /* The referenced key must be there before the foreign key. */
      for (size_t i = 0; i < a->desired->n; i++) {
        const pgg_object *k = &a->desired->objs[i];
        if (k->kind == PGG_OBJ_CONSTRAINT && k->contype == 'p' && !strcmp(k->schema, rs) &&
            !strcmp(k->parent, rt) && !lin_find(&a->work, k->kind, rs, rt, k->name))
          return fail(a, "foreign key to %s before its primary key", rt);
      }
    }
    return true;
  }

  case PGG_STMT_DROP_INVALID_INDEX:
    /* The one DROP: of the index the unit is about to build, by pgguard's
     * own name for it, never anything that exists in the database. */
    if (n != 8 || !is_word(&tk[0], "DROP") || !is_word(&tk[1], "INDEX") ||
        !is_word(&tk[2], "CONCURRENTLY") || !is_word(&tk[3], "IF") ||
        !is_word(&tk[4], "EXISTS") || !qualified(tk, n, 5) || a->build[0])
      return fail(a, "bad DROP INDEX");
    for (size_t i = 0; i < a->work.n; i++)
      if (a->work.objs[i].name && !strcmp(a->work.objs[i].name, tk[7].text))
        return fail(a, "DROP INDEX of %s, which the database has", tk[7].text);
    snprintf(a->build, sizeof a->build, "%s", tk[7].text);
    snprintf(a->build_schema, sizeof a->build_schema, "%s", tk[5].text);
    a->build_table[0] = 0;
    return true;

  case PGG_STMT_CREATE_INDEX_CONCURRENTLY: {
    size_t i = is_word(&tk[1], "UNIQUE") ? 4 : 3;
    if (n < i + 5 || !is_word(&tk[i - 2], "INDEX") || !is_word(&tk[i - 1], "CONCURRENTLY") ||
        tk[i].kind != TK_IDENT || strcmp(tk[i].text, a->build) || a->build_table[0] ||
        !is_word(&tk[i + 1], "ON") || !qualified(tk, n, i + 2) ||
        strcmp(tk[i + 2].text, a->build_schema))
      return fail(a, "bad CREATE INDEX CONCURRENTLY");
    const pgg_object *lt = pgg_catalog_find(a->live0, PGG_OBJ_TABLE, tk[i + 2].text, NULL,
                                            tk[i + 4].text);
    if (!lt || !lt->has_rows)
      return fail(a, "concurrent build on %s, not an existing table with rows", tk[i + 4].text);
    snprintf(a->build_table, sizeof a->build_table, "%s", tk[i + 4].text);
    return true;
  }

  case PGG_STMT_RENAME_INDEX: {
    if (n != 8 || !is_word(&tk[0], "ALTER") || !is_word(&tk[1], "INDEX") || !qualified(tk, n, 2) ||
        strcmp(tk[4].text, a->build) || !a->build_table[0] || !is_word(&tk[5], "RENAME") ||
        !is_word(&tk[6], "TO") || tk[7].kind != TK_IDENT)
      return fail(a, "bad ALTER INDEX ... RENAME");
    char want[PGG_BUILD_NAME_LEN];
    const pgg_object *x = pgg_catalog_find(a->desired, PGG_OBJ_INDEX, a->build_schema,
                                           a->build_table, tk[7].text);
    if (!x)
      return fail(a, "index %s is not in the desired schema", tk[7].text);
    pgg_build_name(a->build_schema, a->build_table, tk[7].text, x->definition, want);
    if (strcmp(want, a->build))
      return fail(a, "index %s built under a name that is not its own", tk[7].text);
    a->build[0] = 0;
    a->builds++;
    return create(a, PGG_OBJ_INDEX, a->build_schema, a->build_table, tk[7].text, &o);
  }

  case PGG_STMT_ADD_CONSTRAINT_USING_INDEX: {
    if (n < 12 || !is_word(&tk[0], "ALTER") || !is_word(&tk[1], "TABLE") ||
        !qualified(tk, n, 2) || strcmp(tk[4].text, a->build_table) ||
        !is_word(&tk[5], "ADD") || !is_word(&tk[6], "CONSTRAINT") || tk[7].kind != TK_IDENT)
      return fail(a, "bad ADD CONSTRAINT ... USING INDEX");
    size_t u = 8;
    while (u + 2 < n && !(is_word(&tk[u], "USING") && is_word(&tk[u + 1], "INDEX")))
      u++;
    if (u + 2 >= n || strcmp(tk[u + 2].text, a->build))
      return fail(a, "ADD CONSTRAINT ... USING INDEX of another index");
    char want[PGG_BUILD_NAME_LEN];
    const pgg_object *k = pgg_catalog_find(a->desired, PGG_OBJ_CONSTRAINT, a->build_schema,
                                           a->build_table, tk[7].text);
    if (!k)
      return fail(a, "key %s is not in the desired schema", tk[7].text);
    pgg_build_name(a->build_schema, a->build_table, tk[7].text, k->definition, want);
    if (strcmp(want, a->build))
      return fail(a, "key %s built under a name that is not its own", tk[7].text);
    a->build[0] = 0;
    a->builds++;
    if (!create(a, PGG_OBJ_CONSTRAINT, a->build_schema, a->build_table, tk[7].text, &o))
      return false;
    return o->contype == 'p' || o->contype == 'u' ? true
                                                   : fail(a, "USING INDEX for a %c constraint",
                                                          o->contype);
  }

  case PGG_STMT_CREATE_EXTENSION: {
    if (n != 11 || !is_word(&tk[0], "CREATE") || !is_word(&tk[1], "EXTENSION") ||
        !is_word(&tk[2], "IF") || !is_word(&tk[3], "NOT") || !is_word(&tk[4], "EXISTS") ||
        tk[5].kind != TK_IDENT || !is_word(&tk[6], "WITH") || !is_word(&tk[7], "SCHEMA") ||
        tk[8].kind != TK_IDENT || !is_word(&tk[9], "VERSION") || tk[10].kind != TK_STRING)
      return fail(a, "bad CREATE EXTENSION");
    if (!create(a, PGG_OBJ_EXTENSION, NULL, NULL, tk[5].text, &o))
      return false;
    if (strcmp(o->type, tk[8].text) || strcmp(o->definition, tk[10].text))
      return fail(a, "extension %s in another schema or version", o->name);
    return true;
  }

  case PGG_STMT_CREATE_DOMAIN:
    if (n < 6 || !is_word(&tk[0], "CREATE") || !is_word(&tk[1], "DOMAIN") ||
        !qualified(tk, n, 2) || !is_word(&tk[5], "AS"))
      return fail(a, "bad CREATE DOMAIN");
    a->types_created++;
    return create(a, PGG_OBJ_DOMAIN, tk[2].text, NULL, tk[4].text, &o);

  case PGG_STMT_CREATE_COMPOSITE:
    if (n < 8 || !is_word(&tk[0], "CREATE") || !is_word(&tk[1], "TYPE") || !qualified(tk, n, 2) ||
        !is_word(&tk[5], "AS") || !is_punct(&tk[6], '(') || !is_punct(&tk[n - 1], ')'))
      return fail(a, "bad CREATE TYPE ... AS (...)");
    a->types_created++;
    return create(a, PGG_OBJ_COMPOSITE, tk[2].text, NULL, tk[4].text, &o);

  case PGG_STMT_CREATE_FUNCTION: {
    /* The statement is the desired definition with plain CREATE. */
    const char *rest = st->sql + strlen("CREATE ");
    const pgg_object *d = NULL;
    for (size_t i = 0; i < a->desired->n && !d; i++) {
      const pgg_object *f = &a->desired->objs[i];
      const char *def = f->definition;
      if (f->kind == PGG_OBJ_FUNCTION && def && !strncmp(def, "CREATE OR REPLACE ", 18) &&
          !strncmp(def + 18, rest, strlen(rest)) && strspn(def + 18 + strlen(rest), "\n ") ==
          strlen(def + 18 + strlen(rest)))
        d = f;
    }
    if (!d)
      return fail(a, "CREATE FUNCTION of no desired definition");
    if (!create(a, PGG_OBJ_FUNCTION, d->schema, NULL, d->name, &o))
      return false;
    /* Phase 0 before any domain, composite type or table (a check or a
     * default may call it); 1 after every domain and composite type but
     * before any table; 2 after every table; 3 after every view. */
    if (o->position == 0 && (a->types_created || a->tables_created))
      return fail(a, "function %s after a type or a table", o->name);
    if (o->position == 1 && a->tables_created)
      return fail(a, "function %s after a table", o->name);
    for (size_t i = 0; o->position > 0 && i < a->desired->n; i++) {
      const pgg_object *x = &a->desired->objs[i];
      bool needed = x->kind == PGG_OBJ_DOMAIN || x->kind == PGG_OBJ_COMPOSITE ||
                    (o->position >= 2 && x->kind == PGG_OBJ_TABLE) ||
                    (o->position == 3 && x->kind == PGG_OBJ_VIEW);
      if (needed && !lin_find(&a->work, x->kind, x->schema, NULL, x->name))
        return fail(a, "function %s before %s %s", o->name, pgg_obj_kind_name(x->kind), x->name);
    }
    return true;
  }

  case PGG_STMT_CREATE_VIEW: {
    size_t m = is_word(&tk[1], "MATERIALIZED") ? 1 : 0;
    if (n < 7 + m || !is_word(&tk[0], "CREATE") || !is_word(&tk[1 + m], "VIEW") ||
        !qualified(tk, n, 2 + m))
      return fail(a, "bad CREATE VIEW");
    if (!create(a, PGG_OBJ_VIEW, tk[2 + m].text, NULL, tk[4 + m].text, &o))
      return false;
    bool no_data = ends_with_words(tk, n, "NO", "DATA");
    if ((o->relkind == 'm') != (m == 1) || no_data != (m == 1))
      return fail(a, "view %s: MATERIALIZED or WITH NO DATA wrong", o->name);
    for (size_t i = 0; i < a->desired->n; i++) {
      const pgg_object *v = &a->desired->objs[i];
      if (v->kind == PGG_OBJ_VIEW && v->position < o->position &&
          !lin_find(&a->work, v->kind, v->schema, NULL, v->name))
        return fail(a, "view %s before the inner view %s", o->name, v->name);
    }
    return true;
  }

  case PGG_STMT_CREATE_TRIGGER: {
    const pgg_object *d = NULL;
    for (size_t i = 0; i < a->desired->n && !d; i++)
      if (a->desired->objs[i].kind == PGG_OBJ_TRIGGER &&
          !strcmp(a->desired->objs[i].definition, st->sql))
        d = &a->desired->objs[i];
    if (!d)
      return fail(a, "CREATE TRIGGER of no desired definition");
    /* Every function first: a trigger's is one of them. */
    for (size_t i = 0; i < a->desired->n; i++) {
      const pgg_object *f = &a->desired->objs[i];
      if (f->kind == PGG_OBJ_FUNCTION && !lin_find(&a->work, f->kind, f->schema, NULL, f->name))
        return fail(a, "trigger %s before function %s", d->name, f->name);
    }
    return create(a, PGG_OBJ_TRIGGER, d->schema, d->parent, d->name, &o);
  }

  case PGG_STMT_SET_OWNED_BY: {
    if (n != 12 || !is_word(&tk[0], "ALTER") || !is_word(&tk[1], "SEQUENCE") ||
        !qualified(tk, n, 2) || !is_word(&tk[5], "OWNED") || !is_word(&tk[6], "BY") ||
        !qualified(tk, n, 7) || !is_punct(&tk[10], '.') || tk[11].kind != TK_IDENT)
      return fail(a, "bad ALTER SEQUENCE ... OWNED BY");
    if (strcmp(tk[2].text, tk[7].text))
      return fail(a, "OWNED BY a table of another schema");
    for (size_t i = 0; i < a->work.n; i++) {
      const pgg_object *w = &a->work.objs[i];
      if (w->kind == PGG_OBJ_OWNED_BY && !strcmp(w->schema, tk[2].text) &&
          !strcmp(w->parent, tk[4].text))
        return fail(a, "OWNED BY on a sequence owned already");
    }
    char name[600];
    snprintf(name, sizeof name, "%s.%s", tk[9].text, tk[11].text);
    return create(a, PGG_OBJ_OWNED_BY, tk[2].text, tk[4].text, name, &o);
  }

  case PGG_STMT_REFRESH_MATVIEW: {
    if (n != 6 || !is_word(&tk[0], "REFRESH") || !is_word(&tk[1], "MATERIALIZED") ||
        !is_word(&tk[2], "VIEW") || !qualified(tk, n, 3))
      return fail(a, "bad REFRESH MATERIALIZED VIEW");
    const pgg_object *v = lin_find(&a->work, PGG_OBJ_VIEW, tk[3].text, NULL, tk[5].text);
    if (!v || v->relkind != 'm')
      return fail(a, "REFRESH of no materialized view");
    if (pgg_catalog_find(a->live0, PGG_OBJ_VIEW, tk[3].text, NULL, tk[5].text))
      return fail(a, "REFRESH of a materialized view the plan did not create");
    a->refreshed++;
    return true;
  }

  default:
    break;
  }
  return fail(a, "statement kind %d is not one the plan may contain", (int)st->kind);
}

static const char *const kind_prefix[PGG_STMT__COUNT][2] = {
    [PGG_STMT_CREATE_SCHEMA] = {"CREATE SCHEMA ", NULL},
    [PGG_STMT_CREATE_EXTENSION] = {"CREATE EXTENSION IF NOT EXISTS ", NULL},
    [PGG_STMT_CREATE_ENUM] = {"CREATE TYPE ", NULL},
    [PGG_STMT_ADD_ENUM_VALUE] = {"ALTER TYPE ", NULL},
    [PGG_STMT_CREATE_DOMAIN] = {"CREATE DOMAIN ", NULL},
    [PGG_STMT_CREATE_COMPOSITE] = {"CREATE TYPE ", NULL},
    [PGG_STMT_CREATE_FUNCTION] = {"CREATE FUNCTION ", "CREATE PROCEDURE "},
    [PGG_STMT_CREATE_SEQUENCE] = {"CREATE SEQUENCE ", "CREATE UNLOGGED SEQUENCE "},
    [PGG_STMT_CREATE_TABLE] = {"CREATE TABLE ", "CREATE UNLOGGED TABLE "},
    [PGG_STMT_ADD_COLUMN] = {"ALTER TABLE ", NULL},
    [PGG_STMT_CREATE_INDEX] = {"CREATE INDEX ", "CREATE UNIQUE INDEX "},
    [PGG_STMT_ADD_CONSTRAINT] = {"ALTER TABLE ", NULL},
    [PGG_STMT_CREATE_VIEW] = {"CREATE VIEW ", "CREATE MATERIALIZED VIEW "},
    [PGG_STMT_CREATE_TRIGGER] = {"CREATE TRIGGER ", NULL},
    [PGG_STMT_SET_OWNED_BY] = {"ALTER SEQUENCE ", NULL},
    [PGG_STMT_REFRESH_MATVIEW] = {"REFRESH MATERIALIZED VIEW ", NULL},
    [PGG_STMT_DROP_INVALID_INDEX] = {"DROP INDEX CONCURRENTLY IF EXISTS ", NULL},
    [PGG_STMT_CREATE_INDEX_CONCURRENTLY] = {"CREATE INDEX CONCURRENTLY ",
                                            "CREATE UNIQUE INDEX CONCURRENTLY "},
    [PGG_STMT_RENAME_INDEX] = {"ALTER INDEX ", NULL},
    [PGG_STMT_ADD_CONSTRAINT_USING_INDEX] = {"ALTER TABLE ", NULL},
};

/* Definitions no planner may pass through: each would end the statement,
 * chain another subcommand, or escape its parentheses or quotes. Each holds
 * "hostile", a word no generated name has, to spot it in a statement. */
static const char *const hostile_pool[] = {
    "CHECK (hostile); DROP TABLE t", "hostile, DROP COLUMN a", "hostile) , (1",
    "$$;hostile$$", "'hostile", "\"hostile", "hostile -- c", "hostile /* c", "ARRAY[hostile",
    "hostile)", "(hostile", "hostile\\", "AS hostile; DROP SEQUENCE x",
    "CREATE INDEX i ON t (hostile); DROP TABLE t",
};

/* Replaces a definition (or a column's type) of one random desired object
 * with a hostile one; returns that object, or NULL if none qualifies. */
static const pgg_object *inject_hostile(rng *r, pgg_catalog *desired)
{
  size_t cand[512], n = 0;
  for (size_t i = 0; i < desired->n && n < 512; i++) {
    pgg_obj_kind k = desired->objs[i].kind;
    if (k == PGG_OBJ_COLUMN || k == PGG_OBJ_CONSTRAINT || k == PGG_OBJ_INDEX ||
        k == PGG_OBJ_SEQUENCE || k == PGG_OBJ_DOMAIN || k == PGG_OBJ_COMPOSITE ||
        k == PGG_OBJ_FUNCTION || k == PGG_OBJ_VIEW || k == PGG_OBJ_TRIGGER)
      cand[n++] = i;
  }
  if (!n)
    return NULL;
  pgg_object *o = &desired->objs[cand[rnd(r, (unsigned)n)]];
  char **field = o->kind == PGG_OBJ_COLUMN ? &o->type : &o->definition;
  free(*field);
  /* A view's query and a trigger's definition may hold commas (the gate
   * allows them there: no subcommand to chain); every other entry must be
   * refused for them too. A function is refused unless it is
   * pg_get_functiondef's CREATE OR REPLACE, which no entry is. */
  const char *h;
  do
    h = hostile_pool[rnd(r, COUNT(hostile_pool))];
  while ((o->kind == PGG_OBJ_VIEW || o->kind == PGG_OBJ_TRIGGER) && !strcmp(h, "hostile, DROP COLUMN a"));
  *field = strdup(h);
  if (!*field)
    abort();
  return o;
}

static unsigned conflicting_columns(const pgg_drift *d)
{
  return d->counts[PGG_OBJ_COLUMN][PGG_DRIFT_CONFLICTING];
}

TEST(property_random_catalogs_plan_only_additive_statements_that_leave_nothing_missing)
{
  unsigned statements = 0, relaxed = 0, failures = 0, unsupported = 0;
  unsigned seen_kind[PGG_STMT__COUNT] = {0}, refusals = 0;
  for (unsigned iter = 0; iter < 2000 && failures < 3; iter++) {
    rng r = {0x9e3779b97f4a7c15ULL ^ ((uint64_t)(iter + 1) * 0xbf58476d1ce4e5b9ULL)};
    pgg_catalog desired, live;
    pgg_catalog_init(&desired);
    pgg_catalog_init(&live);
    gen_desired(&r, &desired);
    gen_live(&r, &desired, &live);
    /* One iteration in eight plants a hostile definition: it must be
     * refused (and counted) when missing, and never reach a statement. */
    const pgg_object *hostile = chance(&r, 12) ? inject_hostile(&r, &desired) : NULL;
    bool hostile_missing = false;
    if (hostile) {
      hostile_missing = !pgg_catalog_find(&live, hostile->kind, hostile->schema,
                                          hostile->parent, hostile->name);
    }
    pgg_drift d;
    pgg_plan p;
    int rc = plan_of(&desired, &live, &d, &p);
    CHECK_INT(rc, hostile_missing ? PGG_ERR_SCHEMA : PGG_OK);
    refusals += hostile_missing;

    applier a = {.desired = &desired, .live0 = &live};
    pgg_stmt_kind last_kind = PGG_STMT_CREATE_SCHEMA;
    pgg_catalog_init(&a.work);
    for (size_t i = 0; i < live.n; i++)
      add(&a.work, live.objs[i]);
    bool ok = true;
    for (size_t i = 0; ok && i < p.n; i++) {
      const pgg_stmt *st = &p.stmts[i];
      if ((unsigned)st->kind >= PGG_STMT__COUNT) {
        ok = fail(&a, "kind %d out of range", (int)st->kind);
        break;
      }
      seen_kind[st->kind]++;
      const char *const *pre = kind_prefix[st->kind];
      if (strncmp(st->sql, pre[0], strlen(pre[0])) &&
          !(pre[1] && !strncmp(st->sql, pre[1], strlen(pre[1])))) {
        ok = fail(&a, "prefix not allowed for kind %d", (int)st->kind);
        break;
      }
      /* Functions come in three phases and indexes of materialized views
       * after the views: the applier checks what those need. Every other
       * kind comes in enum order. */
      bool anywhere = st->kind == PGG_STMT_CREATE_FUNCTION || st->kind == PGG_STMT_CREATE_INDEX;
      /* The concurrent units come last, in units of three (apply). */
      if (st->kind >= PGG_STMT_FIRST_CONCURRENT ||
          (last_kind == PGG_STMT_FIRST_CONCURRENT && st->kind == PGG_STMT_ADD_CONSTRAINT &&
           strstr(st->sql, " FOREIGN KEY "))) {
        anywhere = true;
        last_kind = PGG_STMT_FIRST_CONCURRENT;
      }
      if (!anywhere && st->kind < last_kind) {
        ok = fail(&a, "kind goes backwards");
        break;
      }
      if (!anywhere)
        last_kind = st->kind;
      if (st->kind == PGG_STMT_CREATE_FUNCTION) {
        /* A body in its own language: what must hold is the prefix (above),
         * never OR REPLACE, and being exactly a desired definition
         * (apply). repair.c sends it alone, where a second statement is
         * refused by PostgreSQL. */
        if (strstr(st->sql, "OR REPLACE")) {
          ok = fail(&a, "CREATE OR REPLACE");
          break;
        }
      }
      /* The drop and the rename of a unit are held to their exact tokens by
       * apply(): their one DROP or RENAME is the statement itself. */
      const char *bad = st->kind == PGG_STMT_CREATE_FUNCTION ||
                                st->kind == PGG_STMT_DROP_INVALID_INDEX ||
                                st->kind == PGG_STMT_RENAME_INDEX
                            ? NULL
                        : forbidden_in(st->kind == PGG_STMT_CREATE_TRIGGER, st->sql);
      if (bad) {
        ok = fail(&a, "contains %s outside quotes", bad);
        break;
      }
      if (hostile && strstr(st->sql, "hostile")) {
        ok = fail(&a, "hostile definition reached a statement");
        break;
      }
      if (hostile_missing)
        continue;  /* the plan is partial by design: check safety only */
      ok = apply(&a, st);
      if (!ok && check_failed_now == 0)
        fprintf(stderr, "  statement [%zu]: %s\n", i, st->sql);
    }
    if (ok && !hostile_missing && a.relaxed != p.relaxed_not_null)
      ok = fail(&a, "relaxed %u columns, plan says %u", a.relaxed, p.relaxed_not_null);
    /* Each new materialized view is refreshed, once. */
    unsigned new_matviews = 0;
    for (size_t i = 0; i < d.n; i++)
      new_matviews += d.items[i].state == PGG_DRIFT_MISSING && d.items[i].desired->kind ==
                      PGG_OBJ_VIEW && d.items[i].desired->relkind == 'm';
    if (ok && !hostile_missing && a.refreshed != new_matviews)
      ok = fail(&a, "refreshed %u materialized views of %u new", a.refreshed, new_matviews);

    /* Symbolically applied, the plan leaves nothing missing, the relaxed
     * columns show as conflicting, and a second plan is empty. */
    pgg_drift after;
    pgg_plan again;
    pgg_drift_init(&after);
    pgg_plan_init(&again);
    if (ok && !hostile_missing) {
      pgg_catalog_sort(&a.work);
      REQUIRE(pgg_diff(&desired, &a.work, &after) == PGG_OK);
      for (size_t i = 0; ok && i < after.n; i++)
        if (after.items[i].state == PGG_DRIFT_MISSING)
          ok = fail(&a, "still missing after the plan: %s %s",
                    pgg_obj_kind_name(after.items[i].desired->kind),
                    after.items[i].desired->name);
      /* What pgguard only reports stays reported, untouched. */
      if (ok && pgg_drift_state_count(&after, PGG_DRIFT_UNSUPPORTED) !=
                    pgg_drift_state_count(&d, PGG_DRIFT_UNSUPPORTED))
        ok = fail(&a, "unsupported objects changed: %u before, %u after",
                  pgg_drift_state_count(&d, PGG_DRIFT_UNSUPPORTED),
                  pgg_drift_state_count(&after, PGG_DRIFT_UNSUPPORTED));
      unsupported += pgg_drift_state_count(&d, PGG_DRIFT_UNSUPPORTED);
      if (ok && conflicting_columns(&after) != conflicting_columns(&d) + a.relaxed)
        ok = fail(&a, "conflicting columns %u after, %u before, %u relaxed",
                  conflicting_columns(&after), conflicting_columns(&d), a.relaxed);
      if (ok && (pgg_plan_build(&after, &a.work, &again) != PGG_OK || again.n != 0))
        ok = fail(&a, "second plan is not empty (%zu statements)", again.n);
    }
    if (!ok) {
      failures++;
      check_failed_now = 1;
      fprintf(stderr, "  iteration %u: %s\n", iter, a.err);
    }
    statements += (unsigned)p.n;
    relaxed += p.relaxed_not_null;
    pgg_plan_free(&again);
    pgg_drift_free(&after);
    pgg_catalog_free(&a.work);
    done(&desired, &live, &d, &p);
  }
  /* The generator must actually exercise every kind and the relaxation. */
  for (int k = 0; k < PGG_STMT__COUNT; k++)
    CHECK(seen_kind[k] > 200);
  for (int k = 0; k < PGG_STMT__COUNT; k++)
    if (seen_kind[k] <= 200)
      fprintf(stderr, "  kind %s seen %u times\n", pgg_stmt_kind_name(k), seen_kind[k]);
  CHECK(relaxed > 100);
  CHECK(refusals > 50);
  CHECK(statements > 10000);
  CHECK(unsupported > 500);
}
