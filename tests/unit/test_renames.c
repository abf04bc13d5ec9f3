/*
 * test_renames.c — suspected renames: which missing/extra pairs fold into
 * one suspected_rename item, the counts afterwards, and that the planner
 * then creates neither the twin nor anything built on it, while everything
 * else missing is still planned.
 */
#include "catalog_builders.h"
#include "check.h"

static pgg_object o_table(const char *s, const char *n)
{
  return o_table_rows(s, n, true);
}

/* users(id bigint NOT NULL, <col> text) with its primary key. */
static void users_with(pgg_catalog *c, const char *col)
{
  add(c, o_schema("public"));
  add(c, o_table("public", "users"));
  add(c, o_col("public", "users", "id", "bigint", true, 1));
  add(c, o_col("public", "users", col, "text", false, 2));
  add(c, o_con("public", "users", "users_pkey", 'p', "PRIMARY KEY (id)"));
}

typedef struct {
  pgg_catalog desired, live;
  pgg_drift d;
  pgg_plan p;
  int plan_rc;
} run;

static void run_init(run *r)
{
  pgg_catalog_init(&r->desired);
  pgg_catalog_init(&r->live);
  pgg_drift_init(&r->d);
  pgg_plan_init(&r->p);
}

/* Diff, find renames, plan. */
static void go(run *r)
{
  pgg_catalog_sort(&r->desired);
  pgg_catalog_sort(&r->live);
  if (pgg_diff(&r->desired, &r->live, &r->d) != PGG_OK || pgg_drift_renames(&r->d) != PGG_OK)
    abort();
  r->plan_rc = pgg_plan_build(&r->d, &r->live, &r->p);
}

static void run_free(run *r)
{
  pgg_plan_free(&r->p);
  pgg_drift_free(&r->d);
  pgg_catalog_free(&r->desired);
  pgg_catalog_free(&r->live);
}

static const pgg_drift_item *find_item(const pgg_drift *d, pgg_drift_state s, pgg_obj_kind k)
{
  for (size_t i = 0; i < d->n; i++) {
    const pgg_drift_item *it = &d->items[i];
    const pgg_object *o = it->desired ? it->desired : it->live;
    if (it->state == s && !it->implied && o->kind == k)
      return it;
  }
  return NULL;
}

static unsigned items_in(const pgg_drift *d, pgg_drift_state s)
{
  unsigned n = 0;
  for (size_t i = 0; i < d->n; i++)
    n += d->items[i].state == s;
  return n;
}

/* Whether some planned statement contains s. */
static bool planned(const pgg_plan *p, const char *s)
{
  for (size_t i = 0; i < p->n; i++)
    if (strstr(p->stmts[i].sql, s))
      return true;
  return false;
}

/* ---- columns ------------------------------------------------------------- */

TEST(column_rename_folds_missing_and_extra_into_one_item)
{
  run r;
  run_init(&r);
  users_with(&r.desired, "full_name");
  users_with(&r.live, "name");
  go(&r);
  const pgg_drift_item *it = find_item(&r.d, PGG_DRIFT_SUSPECTED_RENAME, PGG_OBJ_COLUMN);
  REQUIRE(it);
  CHECK_STR(it->desired->name, "full_name");
  CHECK_STR(it->live->name, "name");
  CHECK_STR(it->why, "suspected rename users.name -> users.full_name");
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_SUSPECTED_RENAME], 1);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_MISSING], 0);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_EXTRA], 0);
  /* The old column is folded in, not left behind as extra. */
  CHECK_INT(items_in(&r.d, PGG_DRIFT_EXTRA), 0);
  CHECK_INT(r.d.n, 1);
  CHECK_INT(r.plan_rc, PGG_OK);
  CHECK_INT(r.p.n, 0);
  run_free(&r);
}

TEST(column_rename_reported_in_text_and_json)
{
  run r;
  run_init(&r);
  users_with(&r.desired, "full_name");
  users_with(&r.live, "name");
  go(&r);
  pgg_buf b;
  pgg_buf_init(&b);
  REQUIRE(pgg_drift_format_text(&r.d, &b) == PGG_OK && pgg_buf_append_u8(&b, 0) == PGG_OK);
  CHECK(strstr((char *)b.data, "suspected_rename column") != NULL);
  CHECK(strstr((char *)b.data, "suspected rename users.name -> users.full_name") != NULL);
  CHECK(strstr((char *)b.data, "suspected_rename: 1 column") != NULL);
  pgg_buf_reset(&b);
  REQUIRE(pgg_drift_format_json(&r.d, &b) == PGG_OK && pgg_buf_append_u8(&b, 0) == PGG_OK);
  CHECK(strstr((char *)b.data, "\"suspected_rename\": 1, ") != NULL);
  CHECK(strstr((char *)b.data, "\"state\": \"suspected_rename\", \"kind\": \"column\"") != NULL);
  pgg_buf_free(&b);
  run_free(&r);
}

/* The extra column differs from the missing one in one way: no rename. */
static void check_not_a_rename(pgg_object extra)
{
  run r;
  run_init(&r);
  users_with(&r.desired, "full_name");
  add(&r.live, o_schema("public"));
  add(&r.live, o_table("public", "users"));
  add(&r.live, o_col("public", "users", "id", "bigint", true, 1));
  add(&r.live, extra);
  add(&r.live, o_con("public", "users", "users_pkey", 'p', "PRIMARY KEY (id)"));
  go(&r);
  CHECK_INT(items_in(&r.d, PGG_DRIFT_SUSPECTED_RENAME), 0);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_MISSING], 1);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_EXTRA], 1);
  CHECK(planned(&r.p, "ADD COLUMN \"full_name\""));
  run_free(&r);
}

TEST(column_of_other_type_nullability_or_default_is_no_rename)
{
  check_not_a_rename(o_col("public", "users", "name", "character varying", false, 2));
  check_not_a_rename(o_col("public", "users", "name", "text", true, 2));
  pgg_object dflt = o_col("public", "users", "name", "text", false, 2);
  dflt.default_expr = S("''::text");
  check_not_a_rename(dflt);
}

TEST(two_missing_and_one_extra_alike_is_no_rename)
{
  run r;
  run_init(&r);
  users_with(&r.desired, "full_name");
  add(&r.desired, o_col("public", "users", "nickname", "text", false, 3));
  users_with(&r.live, "name");
  go(&r);
  CHECK_INT(items_in(&r.d, PGG_DRIFT_SUSPECTED_RENAME), 0);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_MISSING], 2);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_EXTRA], 1);
  CHECK(planned(&r.p, "ADD COLUMN \"full_name\""));
  CHECK(planned(&r.p, "ADD COLUMN \"nickname\""));
  run_free(&r);
}

TEST(one_missing_and_two_extra_alike_is_no_rename)
{
  run r;
  run_init(&r);
  users_with(&r.desired, "full_name");
  users_with(&r.live, "name");
  add(&r.live, o_col("public", "users", "nick", "text", false, 3));
  go(&r);
  CHECK_INT(items_in(&r.d, PGG_DRIFT_SUSPECTED_RENAME), 0);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_EXTRA], 2);
  CHECK(planned(&r.p, "ADD COLUMN \"full_name\""));
  run_free(&r);
}

TEST(column_renames_in_two_tables_are_each_their_own)
{
  run r;
  run_init(&r);
  users_with(&r.desired, "full_name");
  users_with(&r.live, "name");
  add(&r.desired, o_table("public", "pets"));
  add(&r.desired, o_col("public", "pets", "full_name", "text", false, 1));
  add(&r.live, o_table("public", "pets"));
  add(&r.live, o_col("public", "pets", "name", "text", false, 1));
  go(&r);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_SUSPECTED_RENAME], 2);
  CHECK_INT(r.p.n, 0);
  run_free(&r);
}

TEST(index_and_constraint_on_renamed_column_held_back_other_column_planned)
{
  run r;
  run_init(&r);
  users_with(&r.desired, "full_name");
  /* Another new column, of another type: an ordinary addition. */
  add(&r.desired, o_col("public", "users", "age", "integer", false, 3));
  add(&r.desired, o_index("public", "users", "users_full_name_idx",
                          "CREATE INDEX users_full_name_idx ON public.users USING btree "
                          "(lower(full_name))"));
  add(&r.desired, o_index("public", "users", "users_age_idx",
                          "CREATE INDEX users_age_idx ON public.users USING btree (age)"));
  add(&r.desired, o_con("public", "users", "users_full_name_check", 'c',
                        "CHECK ((\"full_name\" <> ''::text))"));
  add(&r.desired, o_con("public", "users", "users_age_check", 'c',
                        "CHECK ((age > 0)) NOT VALID"));
  /* Elsewhere, a foreign key to the renamed column, and one that only
   * mentions a column of that name in another table. */
  add(&r.desired, o_table("public", "orders"));
  add(&r.desired, o_col("public", "orders", "who", "text", false, 1));
  add(&r.desired, o_con("public", "orders", "orders_who_fkey", 'f',
                        "FOREIGN KEY (who) REFERENCES public.users(full_name)"));
  add(&r.desired, o_con("public", "orders", "orders_pet_fkey", 'f',
                        "FOREIGN KEY (who) REFERENCES public.pets(full_name)"));
  add(&r.desired, o_table("public", "pets"));
  add(&r.desired, o_col("public", "pets", "full_name", "text", false, 1));
  users_with(&r.live, "name");
  add(&r.live, o_table("public", "orders"));
  add(&r.live, o_col("public", "orders", "who", "text", false, 1));
  add(&r.live, o_table("public", "pets"));
  add(&r.live, o_col("public", "pets", "full_name", "text", false, 1));
  go(&r);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_SUSPECTED_RENAME], 1);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_MISSING], 1);
  /* Held back: implied, so not counted as missing (nor as renames). */
  CHECK_INT(r.d.counts[PGG_OBJ_INDEX][PGG_DRIFT_MISSING], 1);
  CHECK_INT(r.d.counts[PGG_OBJ_CONSTRAINT][PGG_DRIFT_MISSING], 2);
  CHECK_INT(r.d.counts[PGG_OBJ_INDEX][PGG_DRIFT_SUSPECTED_RENAME], 0);
  CHECK_INT(items_in(&r.d, PGG_DRIFT_SUSPECTED_RENAME), 4);
  for (size_t i = 0; i < r.d.n; i++)
    if (r.d.items[i].state == PGG_DRIFT_SUSPECTED_RENAME && r.d.items[i].implied)
      CHECK_STR(r.d.items[i].why,
                "depends on suspected rename users.name -> users.full_name");
  CHECK_INT(r.plan_rc, PGG_OK);
  CHECK(!planned(&r.p, "ADD COLUMN \"full_name\""));
  CHECK(!planned(&r.p, "users_full_name"));
  CHECK(planned(&r.p, "ALTER TABLE \"public\".\"users\" ADD COLUMN \"age\" integer"));
  /* users has rows: its index is built concurrently, then renamed. */
  CHECK(planned(&r.p, "RENAME TO \"users_age_idx\""));
  CHECK(planned(&r.p, "ADD CONSTRAINT \"users_age_check\""));
  CHECK(planned(&r.p, "ADD CONSTRAINT \"orders_pet_fkey\""));
  CHECK(!planned(&r.p, "orders_who_fkey"));
  CHECK_INT(r.p.n, 6);
  run_free(&r);
}

TEST(quoted_and_string_mentions_of_the_column)
{
  run r;
  run_init(&r);
  add(&r.desired, o_schema("public"));
  add(&r.desired, o_table("public", "users"));
  add(&r.desired, o_col("public", "users", "Full Name", "text", false, 1));
  /* Names it quoted: held back. */
  add(&r.desired, o_index("public", "users", "a_idx",
                          "CREATE INDEX a_idx ON public.users USING btree (\"Full Name\")"));
  /* Only a string with the name in it: planned. */
  add(&r.desired, o_con("public", "users", "b_check", 'c',
                        "CHECK ((length('Full Name'::text) > 0))"));
  add(&r.live, o_schema("public"));
  add(&r.live, o_table("public", "users"));
  add(&r.live, o_col("public", "users", "name", "text", false, 1));
  go(&r);
  const pgg_drift_item *it = find_item(&r.d, PGG_DRIFT_SUSPECTED_RENAME, PGG_OBJ_COLUMN);
  REQUIRE(it);
  CHECK_STR(it->why, "suspected rename users.name -> users.\"Full Name\"");
  CHECK(!planned(&r.p, "a_idx"));
  CHECK(planned(&r.p, "b_check"));
  run_free(&r);
}

/* ---- tables -------------------------------------------------------------- */

/* <name>(id bigint NOT NULL, email text) with a primary key and an index. */
static void customers_as(pgg_catalog *c, const char *name)
{
  char pkey[64], idx[64], def[160];
  snprintf(pkey, sizeof pkey, "%s_pkey", name);
  snprintf(idx, sizeof idx, "%s_email_idx", name);
  snprintf(def, sizeof def, "CREATE INDEX %s ON public.%s USING btree (email)", idx, name);
  add(c, o_table("public", name));
  add(c, o_col("public", name, "id", "bigint", true, 1));
  add(c, o_col("public", name, "email", "text", false, 2));
  add(c, o_con("public", name, pkey, 'p', "PRIMARY KEY (id)"));
  add(c, o_index("public", name, idx, def));
}

TEST(table_rename_folds_and_holds_back_its_objects)
{
  run r;
  run_init(&r);
  add(&r.desired, o_schema("public"));
  customers_as(&r.desired, "customers");
  /* Built on the new table elsewhere: a foreign key and a view. */
  add(&r.desired, o_table("public", "orders"));
  add(&r.desired, o_col("public", "orders", "customer_id", "bigint", false, 1));
  add(&r.desired, o_con("public", "orders", "orders_customer_id_fkey", 'f',
                        "FOREIGN KEY (customer_id) REFERENCES public.customers(id)"));
  add(&r.desired, o_view("public", "customer_emails", 'v',
                         " SELECT customers.email\n   FROM public.customers;", 0));
  add(&r.desired, o_view("public", "vip_emails", 'v',
                         " SELECT customer_emails.email\n   FROM public.customer_emails;", 1));
  /* Unrelated and missing: still planned. */
  add(&r.desired, o_col("public", "orders", "note", "text", false, 2));
  add(&r.live, o_schema("public"));
  customers_as(&r.live, "clients");
  add(&r.live, o_table("public", "orders"));
  add(&r.live, o_col("public", "orders", "customer_id", "bigint", false, 1));
  go(&r);
  const pgg_drift_item *it = find_item(&r.d, PGG_DRIFT_SUSPECTED_RENAME, PGG_OBJ_TABLE);
  REQUIRE(it);
  CHECK_STR(it->desired->name, "customers");
  CHECK_STR(it->live->name, "clients");
  CHECK_STR(it->why, "suspected rename table public.clients -> public.customers");
  CHECK_INT(r.d.counts[PGG_OBJ_TABLE][PGG_DRIFT_SUSPECTED_RENAME], 1);
  CHECK_INT(r.d.counts[PGG_OBJ_TABLE][PGG_DRIFT_MISSING], 0);
  CHECK_INT(r.d.counts[PGG_OBJ_TABLE][PGG_DRIFT_EXTRA], 0);
  /* The old table's columns, key and index go with it. */
  for (int k = 0; k < PGG_OBJ__COUNT; k++)
    CHECK_INT(r.d.counts[k][PGG_DRIFT_EXTRA], 0);
  CHECK_INT(r.d.counts[PGG_OBJ_CONSTRAINT][PGG_DRIFT_MISSING], 0);
  CHECK_INT(r.d.counts[PGG_OBJ_VIEW][PGG_DRIFT_MISSING], 0);
  CHECK_INT(r.d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_MISSING], 1);
  CHECK_INT(pgg_drift_state_count(&r.d, PGG_DRIFT_SUSPECTED_RENAME), 1);
  for (size_t i = 0; i < r.d.n; i++)
    if (r.d.items[i].state == PGG_DRIFT_SUSPECTED_RENAME && r.d.items[i].desired &&
        r.d.items[i].implied)
      CHECK_STR(r.d.items[i].why,
                "depends on suspected rename table public.clients -> public.customers");
  CHECK_INT(r.plan_rc, PGG_OK);
  CHECK(!planned(&r.p, "customers"));
  CHECK_INT(r.p.n, 1);
  CHECK(planned(&r.p, "ALTER TABLE \"public\".\"orders\" ADD COLUMN \"note\" text"));
  run_free(&r);
}

TEST(partitions_of_a_renamed_table_held_back)
{
  run r;
  run_init(&r);
  const char *new_[] = {"events", "events_2025"}, *old[] = {"log", "log_2025"};
  for (int side = 0; side < 2; side++) {
    pgg_catalog *c = side ? &r.live : &r.desired;
    const char **n = side ? old : new_;
    char parent[32];
    snprintf(parent, sizeof parent, "public.%s", n[0]);
    add(c, o_schema("public"));
    pgg_object t = o_table("public", n[0]);
    t.relkind = 'p';
    t.definition = S("RANGE (at)");
    add(c, t);
    add(c, o_col("public", n[0], "at", "date", true, 1));
    pgg_object part = o_table("public", n[1]);
    part.partition_of = parent;
    part.default_expr = S("FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')");
    part.position = 1;
    add(c, part);
    add(c, o_col("public", n[1], "at", "date", true, 1));
    pgg_catalog_sort(c);  /* before parent[] goes out of scope: add() copied it */
  }
  go(&r);
  const pgg_drift_item *it = find_item(&r.d, PGG_DRIFT_SUSPECTED_RENAME, PGG_OBJ_TABLE);
  REQUIRE(it);
  CHECK_STR(it->desired->name, "events");
  CHECK_INT(r.d.counts[PGG_OBJ_TABLE][PGG_DRIFT_MISSING], 0);
  CHECK_INT(r.plan_rc, PGG_OK);
  CHECK_INT(r.p.n, 0);
  run_free(&r);
}

TEST(table_with_other_columns_is_no_rename)
{
  run r;
  run_init(&r);
  add(&r.desired, o_schema("public"));
  customers_as(&r.desired, "customers");
  add(&r.desired, o_col("public", "customers", "phone", "text", false, 3));
  add(&r.live, o_schema("public"));
  customers_as(&r.live, "clients");
  go(&r);
  CHECK_INT(items_in(&r.d, PGG_DRIFT_SUSPECTED_RENAME), 0);
  CHECK_INT(r.d.counts[PGG_OBJ_TABLE][PGG_DRIFT_MISSING], 1);
  CHECK_INT(r.d.counts[PGG_OBJ_TABLE][PGG_DRIFT_EXTRA], 1);
  CHECK(planned(&r.p, "CREATE TABLE \"public\".\"customers\""));
  run_free(&r);
}

TEST(table_with_column_of_other_type_is_no_rename)
{
  run r;
  run_init(&r);
  add(&r.desired, o_schema("public"));
  customers_as(&r.desired, "customers");
  add(&r.live, o_schema("public"));
  add(&r.live, o_table("public", "clients"));
  add(&r.live, o_col("public", "clients", "id", "integer", true, 1));
  add(&r.live, o_col("public", "clients", "email", "text", false, 2));
  go(&r);
  CHECK_INT(items_in(&r.d, PGG_DRIFT_SUSPECTED_RENAME), 0);
  CHECK(planned(&r.p, "CREATE TABLE \"public\".\"customers\""));
  run_free(&r);
}

TEST(two_missing_tables_alike_one_extra_is_no_rename)
{
  run r;
  run_init(&r);
  add(&r.desired, o_schema("public"));
  customers_as(&r.desired, "customers");
  customers_as(&r.desired, "prospects");
  add(&r.live, o_schema("public"));
  customers_as(&r.live, "clients");
  go(&r);
  CHECK_INT(items_in(&r.d, PGG_DRIFT_SUSPECTED_RENAME), 0);
  CHECK(planned(&r.p, "CREATE TABLE \"public\".\"customers\""));
  CHECK(planned(&r.p, "CREATE TABLE \"public\".\"prospects\""));
  run_free(&r);
}

TEST(table_rename_beside_an_unrelated_new_table)
{
  run r;
  run_init(&r);
  add(&r.desired, o_schema("public"));
  customers_as(&r.desired, "customers");
  add(&r.desired, o_table("public", "audit"));
  add(&r.desired, o_col("public", "audit", "at", "timestamp with time zone", true, 1));
  add(&r.live, o_schema("public"));
  customers_as(&r.live, "clients");
  go(&r);
  CHECK_INT(r.d.counts[PGG_OBJ_TABLE][PGG_DRIFT_SUSPECTED_RENAME], 1);
  CHECK_INT(r.d.counts[PGG_OBJ_TABLE][PGG_DRIFT_MISSING], 1);
  CHECK_INT(r.plan_rc, PGG_OK);
  CHECK_INT(r.p.n, 1);
  CHECK(planned(&r.p, "CREATE TABLE \"public\".\"audit\""));
  run_free(&r);
}

TEST(table_in_another_schema_is_no_rename)
{
  run r;
  run_init(&r);
  add(&r.desired, o_schema("public"));
  add(&r.desired, o_schema("crm"));
  add(&r.desired, o_table("crm", "customers"));
  add(&r.desired, o_col("crm", "customers", "id", "bigint", true, 1));
  add(&r.live, o_schema("public"));
  add(&r.live, o_schema("crm"));
  add(&r.live, o_table("public", "clients"));
  add(&r.live, o_col("public", "clients", "id", "bigint", true, 1));
  go(&r);
  CHECK_INT(items_in(&r.d, PGG_DRIFT_SUSPECTED_RENAME), 0);
  CHECK(planned(&r.p, "CREATE TABLE \"crm\".\"customers\""));
  run_free(&r);
}

TEST(no_drift_no_change)
{
  run r;
  run_init(&r);
  users_with(&r.desired, "name");
  users_with(&r.live, "name");
  go(&r);
  CHECK_INT(r.d.n, 0);
  CHECK_INT(r.p.n, 0);
  run_free(&r);
}
