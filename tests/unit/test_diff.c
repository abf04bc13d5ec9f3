/*
 * test_diff.c — the catalog container and the drift diff: what is missing,
 * extra or conflicting, what is implied by a missing container, the counts,
 * and the text and JSON reports.
 */
#include "catalog_builders.h"
#include "check.h"

/* ---- building catalogs -------------------------------------------------- */

static pgg_object o_table(const char *s, const char *n)
{
  return o_table_rows(s, n, false);
}

/* One of every kind: the schema the other tests start from. */
static void shop(pgg_catalog *c)
{
  add(c, o_schema("public"));
  add(c, o_enum("public", "mood"));
  add(c, o_label("public", "mood", "happy", 1));
  add(c, o_label("public", "mood", "sad", 2));
  add(c, o_seq("public", "order_no", SEQDEF));
  add(c, o_table("public", "users"));
  pgg_object id = o_col("public", "users", "id", "bigint", true, 1);
  id.identity = 'a';
  add(c, id);
  add(c, o_col("public", "users", "email", "text", true, 2));
  pgg_object m = o_col("public", "users", "mood", "public.mood", false, 3);
  m.default_expr = S("'happy'::public.mood");
  add(c, m);
  add(c, o_con("public", "users", "users_pkey", 'p', "PRIMARY KEY (id)"));
  add(c, o_index("public", "users", "users_email_idx",
                 "CREATE INDEX users_email_idx ON public.users USING btree (email)"));
  pgg_catalog_sort(c);
}

/* The drift of (desired, live), both sorted first. */
static void diff(pgg_catalog *desired, pgg_catalog *live, pgg_drift *d)
{
  pgg_catalog_sort(desired);
  pgg_catalog_sort(live);
  pgg_drift_init(d);
  if (pgg_diff(desired, live, d) != PGG_OK)
    abort();
}

static const pgg_object *item_obj(const pgg_drift_item *it)
{
  return it->desired ? it->desired : it->live;
}

static unsigned items_in(const pgg_drift *d, pgg_drift_state s, bool implied)
{
  unsigned n = 0;
  for (size_t i = 0; i < d->n; i++)
    n += d->items[i].state == s && d->items[i].implied == implied;
  return n;
}

static const char *formatted(const pgg_drift *d, bool json)
{
  static char out[8192];
  pgg_buf b;
  pgg_buf_init(&b);
  int err = json ? pgg_drift_format_json(d, &b) : pgg_drift_format_text(d, &b);
  if (err || b.len >= sizeof out) {
    pgg_buf_free(&b);
    return "(error)";
  }
  memcpy(out, b.data, b.len);
  out[b.len] = 0;
  pgg_buf_free(&b);
  return out;
}

/* ---- catalog container -------------------------------------------------- */

TEST(catalog_sort_orders_by_kind_schema_parent_name_with_null_parent_first)
{
  pgg_catalog c;
  pgg_catalog_init(&c);
  add(&c, o_col("b", "t", "x", "int", false, 1));
  add(&c, o_table("b", "t"));
  add(&c, o_col("a", "t", "y", "int", false, 1));
  add(&c, o_schema("b"));
  add(&c, o_col("a", "t", "a", "int", false, 2));
  add(&c, o_schema("a"));
  pgg_catalog_sort(&c);
  REQUIRE(c.n == 6);
  CHECK(c.objs[0].kind == PGG_OBJ_SCHEMA && strcmp(c.objs[0].name, "a") == 0);
  CHECK(c.objs[1].kind == PGG_OBJ_SCHEMA && strcmp(c.objs[1].name, "b") == 0);
  CHECK(c.objs[2].kind == PGG_OBJ_TABLE);
  CHECK_STR(c.objs[3].name, "a");
  CHECK_STR(c.objs[4].name, "y");
  CHECK_STR(c.objs[5].schema, "b");

  /* NULL parent sorts before any parent, even "". */
  pgg_catalog n;
  pgg_catalog_init(&n);
  pgg_object withp = o_table("s", "t"), nullp = o_table("s", "t");
  withp.parent = S("");
  add(&n, withp);
  add(&n, nullp);
  pgg_catalog_sort(&n);
  CHECK(n.objs[0].parent == NULL);
  CHECK(n.objs[1].parent != NULL);
  pgg_catalog_free(&n);
  pgg_catalog_free(&c);
}

TEST(catalog_find_locates_every_object_and_nothing_else)
{
  pgg_catalog c;
  pgg_catalog_init(&c);
  shop(&c);
  for (size_t i = 0; i < c.n; i++) {
    const pgg_object *o = &c.objs[i];
    CHECK(pgg_catalog_find(&c, o->kind, o->schema, o->parent, o->name) == o);
  }
  CHECK(pgg_catalog_find(&c, PGG_OBJ_TABLE, "public", NULL, "nope") == NULL);
  CHECK(pgg_catalog_find(&c, PGG_OBJ_TABLE, "other", NULL, "users") == NULL);
  CHECK(pgg_catalog_find(&c, PGG_OBJ_INDEX, "public", "users", "users") == NULL);
  /* Identity includes the parent: a column is not found under another table. */
  CHECK(pgg_catalog_find(&c, PGG_OBJ_COLUMN, "public", "orders", "id") == NULL);
  CHECK(pgg_catalog_find(&c, PGG_OBJ_COLUMN, "public", NULL, "id") == NULL);
  pgg_catalog empty;
  pgg_catalog_init(&empty);
  CHECK(pgg_catalog_find(&empty, PGG_OBJ_SCHEMA, "public", NULL, "public") == NULL);
  pgg_catalog_free(&c);
}

TEST(catalog_add_copies_strings)
{
  char name[] = "users";
  pgg_catalog c;
  pgg_catalog_init(&c);
  add(&c, o_table("public", name));
  name[0] = 'X';
  CHECK_STR(c.objs[0].name, "users");
  CHECK(c.objs[0].name != name);
  CHECK(c.objs[0].parent == NULL && c.objs[0].type == NULL);
  pgg_catalog_free(&c);
  CHECK(c.n == 0 && c.objs == NULL);
}

TEST(kind_and_state_names_are_the_metric_labels)
{
  static const char *const kinds[PGG_OBJ__COUNT] = {
      "schema", "enum", "enum_label", "sequence", "table", "column", "constraint", "index",
      "extension", "domain", "composite_type", "function", "view", "trigger",
      "sequence_owned_by", "policy", "rule", "event_trigger", "publication", "statistics",
      "comment", "grant", "other"};
  for (int k = 0; k < PGG_OBJ__COUNT; k++)
    CHECK_STR(pgg_obj_kind_name(k), kinds[k]);
  CHECK_STR(pgg_drift_state_name(PGG_DRIFT_MISSING), "missing");
  CHECK_STR(pgg_drift_state_name(PGG_DRIFT_EXTRA), "extra");
  CHECK_STR(pgg_drift_state_name(PGG_DRIFT_CONFLICTING), "conflicting");
  CHECK_STR(pgg_drift_state_name(PGG_DRIFT_UNSUPPORTED), "unsupported");
  /* Exactly the kinds from policy on are reported, never created. */
  for (int k = 0; k < PGG_OBJ__COUNT; k++)
    CHECK(pgg_obj_kind_modeled(k) == (k < PGG_OBJ_POLICY));
}

/* ---- missing / extra / conflicting -------------------------------------- */

TEST(identical_catalogs_have_no_drift)
{
  pgg_catalog a, b;
  pgg_catalog_init(&a);
  pgg_catalog_init(&b);
  shop(&a);
  shop(&b);
  pgg_drift d;
  diff(&a, &b, &d);
  CHECK_INT(d.n, 0);
  CHECK_INT(pgg_drift_missing(&d), 0);
  pgg_drift_free(&d);
  pgg_catalog_free(&a);
  pgg_catalog_free(&b);
}

/* Each case names one object of shop(): dropping it from one side makes it
 * the one missing (or extra) object, of its kind, and nothing is implied. */
static const struct {
  pgg_obj_kind kind;
  const char *parent, *name;
} one_of_each[] = {
    {PGG_OBJ_ENUM_LABEL, "mood", "sad"},
    {PGG_OBJ_SEQUENCE, NULL, "order_no"},
    {PGG_OBJ_COLUMN, "users", "email"},
    {PGG_OBJ_CONSTRAINT, "users", "users_pkey"},
    {PGG_OBJ_INDEX, "users", "users_email_idx"},
};

/* shop() without the object case i names. */
static void shop_without(pgg_catalog *c, pgg_obj_kind kind, const char *parent,
                         const char *name)
{
  pgg_catalog full;
  pgg_catalog_init(&full);
  shop(&full);
  for (size_t j = 0; j < full.n; j++) {
    const pgg_object *o = &full.objs[j];
    bool same_parent = (!o->parent && !parent) || (o->parent && parent && !strcmp(o->parent, parent));
    if (!(o->kind == kind && same_parent && !strcmp(o->name, name)))
      add(c, *o);
  }
  pgg_catalog_free(&full);
}

TEST(object_of_each_kind_in_desired_only_is_missing)
{
  for (size_t i = 0; i < sizeof one_of_each / sizeof one_of_each[0]; i++) {
    pgg_catalog desired, live;
    pgg_catalog_init(&desired);
    pgg_catalog_init(&live);
    shop(&desired);
    shop_without(&live, one_of_each[i].kind, one_of_each[i].parent, one_of_each[i].name);
    pgg_drift d;
    diff(&desired, &live, &d);
    REQUIRE(d.n == 1);
    CHECK(d.items[0].state == PGG_DRIFT_MISSING);
    CHECK(!d.items[0].implied);
    CHECK(d.items[0].live == NULL);
    CHECK_STR(d.items[0].desired->name, one_of_each[i].name);
    CHECK_INT(d.counts[one_of_each[i].kind][PGG_DRIFT_MISSING], 1);
    CHECK_INT(pgg_drift_missing(&d), 1);
    pgg_drift_free(&d);
    pgg_catalog_free(&desired);
    pgg_catalog_free(&live);
  }
}

TEST(object_of_each_kind_in_live_only_is_extra)
{
  for (size_t i = 0; i < sizeof one_of_each / sizeof one_of_each[0]; i++) {
    pgg_catalog desired, live;
    pgg_catalog_init(&desired);
    pgg_catalog_init(&live);
    shop_without(&desired, one_of_each[i].kind, one_of_each[i].parent, one_of_each[i].name);
    shop(&live);
    pgg_drift d;
    diff(&desired, &live, &d);
    REQUIRE(d.n == 1);
    CHECK(d.items[0].state == PGG_DRIFT_EXTRA);
    CHECK(d.items[0].desired == NULL);
    CHECK_STR(d.items[0].live->name, one_of_each[i].name);
    CHECK_INT(d.counts[one_of_each[i].kind][PGG_DRIFT_EXTRA], 1);
    CHECK_INT(pgg_drift_missing(&d), 0);
    pgg_drift_free(&d);
    pgg_catalog_free(&desired);
    pgg_catalog_free(&live);
  }
}

TEST(missing_and_extra_containers_of_each_kind)
{
  /* Schema, enum and table: the containers, whose children drift with them. */
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_schema("app"));
  add(&desired, o_enum("public", "color"));
  add(&desired, o_table("public", "t"));
  add(&desired, o_schema("public"));
  add(&live, o_schema("public"));
  add(&live, o_schema("old"));
  add(&live, o_enum("public", "old_enum"));
  add(&live, o_table("public", "old_table"));
  pgg_drift d;
  diff(&desired, &live, &d);
  CHECK_INT(d.counts[PGG_OBJ_SCHEMA][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_ENUM][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_TABLE][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_SCHEMA][PGG_DRIFT_EXTRA], 1);
  CHECK_INT(d.counts[PGG_OBJ_ENUM][PGG_DRIFT_EXTRA], 1);
  CHECK_INT(d.counts[PGG_OBJ_TABLE][PGG_DRIFT_EXTRA], 1);
  CHECK_INT(pgg_drift_missing(&d), 3);
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

/* A change applied to the live copy of one object of shop(), and what the
 * report must say about it (live first, then desired). */
typedef void (*mutate_fn)(pgg_object *o);
static void m_type(pgg_object *o) { o->type = S("integer"); }
static void m_nullable(pgg_object *o) { o->not_null = false; }
static void m_not_null(pgg_object *o) { o->not_null = true; }
static void m_default(pgg_object *o) { o->default_expr = S("'sad'::public.mood"); }
static void m_no_default(pgg_object *o) { o->default_expr = NULL; }
static void m_identity(pgg_object *o) { o->identity = 'd'; }
static void m_generated(pgg_object *o) { o->generated = 's'; o->default_expr = S("(1 + 1)"); }
static void m_contype(pgg_object *o) { o->contype = 'u'; o->definition = S("UNIQUE (id)"); }
static void m_condef(pgg_object *o) { o->definition = S("PRIMARY KEY (email)"); }
static void m_indexdef(pgg_object *o)
{
  o->definition = S("CREATE INDEX users_email_idx ON public.users USING hash (email)");
}
static void m_seqdef(pgg_object *o) { o->definition = S("AS integer START WITH 1"); }
static void m_relkind(pgg_object *o) { o->relkind = 'p'; }
static void m_label_pos(pgg_object *o) { o->position = 7; }

static const struct {
  const char *what;
  pgg_obj_kind kind;
  const char *parent, *name;
  mutate_fn mutate;
  const char *why;  /* NULL: not drift at all */
} conflicts[] = {
    {"column type", PGG_OBJ_COLUMN, "users", "id", m_type, "type integer != bigint"},
    {"column relaxed NOT NULL", PGG_OBJ_COLUMN, "users", "email", m_nullable,
     "nullable, desired NOT NULL"},
    {"column NOT NULL", PGG_OBJ_COLUMN, "users", "mood", m_not_null, "NOT NULL, desired nullable"},
    {"column default", PGG_OBJ_COLUMN, "users", "mood", m_default,
     "default 'sad'::public.mood != 'happy'::public.mood"},
    {"column default gone", PGG_OBJ_COLUMN, "users", "mood", m_no_default,
     "default none != 'happy'::public.mood"},
    {"column identity", PGG_OBJ_COLUMN, "users", "id", m_identity,
     "identity by default != always"},
    {"column generated", PGG_OBJ_COLUMN, "users", "email", m_generated, "generated stored != none"},
    {"constraint type", PGG_OBJ_CONSTRAINT, "users", "users_pkey", m_contype,
     "constraint type unique != primary key; definition UNIQUE (id) != PRIMARY KEY (id)"},
    {"constraint definition", PGG_OBJ_CONSTRAINT, "users", "users_pkey", m_condef,
     "definition PRIMARY KEY (email) != PRIMARY KEY (id)"},
    {"index definition", PGG_OBJ_INDEX, "users", "users_email_idx", m_indexdef,
     "definition CREATE INDEX users_email_idx ON public.users USING hash (email) != "
     "CREATE INDEX users_email_idx ON public.users USING btree (email)"},
    {"sequence definition", PGG_OBJ_SEQUENCE, NULL, "order_no", m_seqdef,
     "definition AS integer START WITH 1 != " SEQDEF},
    {"table relkind", PGG_OBJ_TABLE, NULL, "users", m_relkind,
     "partitioned table != ordinary table"},
    {"label position is ignored", PGG_OBJ_ENUM_LABEL, "mood", "happy", m_label_pos, NULL},
};

TEST(object_that_differs_is_conflicting_and_why_says_how)
{
  for (size_t i = 0; i < sizeof conflicts / sizeof conflicts[0]; i++) {
    pgg_catalog desired, live;
    pgg_catalog_init(&desired);
    pgg_catalog_init(&live);
    shop(&desired);
    shop(&live);
    pgg_object *o = (pgg_object *)pgg_catalog_find(&live, conflicts[i].kind, "public",
                                                   conflicts[i].parent, conflicts[i].name);
    REQUIRE(o);
    /* Swap in literal strings (the catalog's own copies are freed below via
     * the saved originals). */
    pgg_object saved = *o;
    conflicts[i].mutate(o);
    pgg_drift d;
    pgg_drift_init(&d);
    REQUIRE(pgg_diff(&desired, &live, &d) == PGG_OK);
    if (!conflicts[i].why) {
      CHECK_INT(d.n, 0);
    } else {
      REQUIRE(d.n == 1);
      CHECK(d.items[0].state == PGG_DRIFT_CONFLICTING);
      CHECK(d.items[0].live == o);
      CHECK(d.items[0].desired != NULL);
      CHECK_STR(d.items[0].why, conflicts[i].why);
      CHECK_INT(d.counts[conflicts[i].kind][PGG_DRIFT_CONFLICTING], 1);
      CHECK_INT(pgg_drift_missing(&d), 0);
    }
    if (check_failed_now)
      fprintf(stderr, "  in case: %s\n", conflicts[i].what);
    pgg_drift_free(&d);
    *o = saved;
    pgg_catalog_free(&desired);
    pgg_catalog_free(&live);
  }
}

/* ---- implied ------------------------------------------------------------ */

TEST(children_of_a_missing_table_are_implied_and_not_counted)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  shop(&desired);
  shop_without(&live, PGG_OBJ_TABLE, NULL, "users");
  /* What introspection of such a database returns: no children either. */
  pgg_catalog cleaned;
  pgg_catalog_init(&cleaned);
  for (size_t i = 0; i < live.n; i++)
    if (!live.objs[i].parent || strcmp(live.objs[i].parent, "users"))
      add(&cleaned, live.objs[i]);
  pgg_drift d;
  diff(&desired, &cleaned, &d);
  CHECK_INT(d.counts[PGG_OBJ_TABLE][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_MISSING], 0);
  CHECK_INT(d.counts[PGG_OBJ_CONSTRAINT][PGG_DRIFT_MISSING], 0);
  CHECK_INT(d.counts[PGG_OBJ_INDEX][PGG_DRIFT_MISSING], 0);
  CHECK_INT(pgg_drift_missing(&d), 1);
  CHECK_INT(items_in(&d, PGG_DRIFT_MISSING, true), 5);  /* 3 columns, pk, index */
  CHECK_INT(items_in(&d, PGG_DRIFT_MISSING, false), 1);
  for (size_t i = 0; i < d.n; i++)
    if (d.items[i].implied)
      CHECK_STR(item_obj(&d.items[i])->parent, "users");
  pgg_drift_free(&d);
  pgg_catalog_free(&cleaned);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(labels_of_a_missing_enum_are_implied_but_missing_labels_are_counted)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_schema("public"));
  add(&desired, o_enum("public", "mood"));
  add(&desired, o_label("public", "mood", "happy", 1));
  add(&desired, o_label("public", "mood", "sad", 2));
  add(&desired, o_enum("public", "size"));
  add(&desired, o_label("public", "size", "s", 1));
  add(&desired, o_label("public", "size", "m", 2));
  add(&live, o_schema("public"));
  add(&live, o_enum("public", "size"));
  add(&live, o_label("public", "size", "s", 1));
  pgg_drift d;
  diff(&desired, &live, &d);
  CHECK_INT(d.counts[PGG_OBJ_ENUM][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_ENUM_LABEL][PGG_DRIFT_MISSING], 1);  /* only size.m */
  CHECK_INT(pgg_drift_missing_labels(&d), 1);
  CHECK_INT(items_in(&d, PGG_DRIFT_MISSING, true), 2);            /* mood's labels */
  CHECK_INT(pgg_drift_missing(&d), 2);
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(a_missing_schema_counts_its_tables_enums_and_sequences_but_implies_their_children)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_schema("public"));
  add(&desired, o_schema("billing"));
  add(&desired, o_enum("billing", "state"));
  add(&desired, o_label("billing", "state", "open", 1));
  add(&desired, o_seq("billing", "invoice_no", SEQDEF));
  add(&desired, o_table("billing", "invoices"));
  add(&desired, o_col("billing", "invoices", "id", "bigint", true, 1));
  add(&live, o_schema("public"));
  pgg_drift d;
  diff(&desired, &live, &d);
  /* The schema, its enum, sequence and table each get a statement of their
   * own in the plan, so check reports them; the label and the column come
   * with their enum and table. */
  CHECK_INT(pgg_drift_missing(&d), 4);
  CHECK_INT(d.counts[PGG_OBJ_SCHEMA][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_TABLE][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_ENUM][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_SEQUENCE][PGG_DRIFT_MISSING], 1);
  CHECK_INT(items_in(&d, PGG_DRIFT_MISSING, true), 2);
  CHECK_INT(pgg_drift_missing_labels(&d), 0);
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(counts_fill_per_kind_and_state_for_a_restore_from_an_old_backup)
{
  /* Live is an old backup: 12 newer tables, one newer column, a changed type,
   * and a table the migrations since dropped. */
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_schema("public"));
  add(&live, o_schema("public"));
  char names[12][32];
  for (int i = 0; i < 12; i++) {
    snprintf(names[i], sizeof names[i], "new_table_%02d", i);
    add(&desired, o_table("public", names[i]));
    add(&desired, o_col("public", names[i], "id", "bigint", true, 1));
  }
  add(&desired, o_table("public", "users"));
  add(&desired, o_col("public", "users", "id", "bigint", true, 1));
  add(&desired, o_col("public", "users", "nickname", "text", false, 2));
  add(&live, o_table("public", "users"));
  add(&live, o_col("public", "users", "id", "integer", true, 1));
  add(&live, o_table("public", "legacy"));
  pgg_drift d;
  diff(&desired, &live, &d);
  CHECK_INT(d.counts[PGG_OBJ_TABLE][PGG_DRIFT_MISSING], 12);
  CHECK_INT(d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_TABLE][PGG_DRIFT_EXTRA], 1);
  CHECK_INT(d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_CONFLICTING], 1);
  CHECK_INT(pgg_drift_missing(&d), 13);
  unsigned total = 0;
  for (int k = 0; k < PGG_OBJ__COUNT; k++)
    for (int s = 0; s < PGG_DRIFT__COUNT; s++)
      total += d.counts[k][s];
  CHECK_INT(total, 15);
  CHECK_INT(d.n, 15 + 12);  /* plus the 12 implied id columns */

  const char *text = formatted(&d, false);
  CHECK(strstr(text, "missing: 12 tables, 1 column; extra: 1 table; conflicting: 1 column\n"));
  CHECK(strstr(text, "public.new_table_00"));
  CHECK(strstr(text, "public.users.nickname"));
  CHECK(strstr(text, "public.legacy"));
  CHECK(strstr(text, "type integer != bigint"));
  CHECK(!strstr(text, "new_table_00.id"));  /* implied: not a line of its own */
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(nullable_live_column_desired_not_null_is_conflicting)
{
  /* What the planner leaves behind after adding a NOT NULL column nullable. */
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_schema("public"));
  add(&desired, o_table("public", "t"));
  add(&desired, o_col("public", "t", "c", "integer", true, 1));
  add(&live, o_schema("public"));
  add(&live, o_table("public", "t"));
  add(&live, o_col("public", "t", "c", "integer", false, 1));
  pgg_drift d;
  diff(&desired, &live, &d);
  REQUIRE(d.n == 1);
  CHECK(d.items[0].state == PGG_DRIFT_CONFLICTING);
  CHECK_STR(d.items[0].why, "nullable, desired NOT NULL");
  CHECK_INT(d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_CONFLICTING], 1);
  CHECK_INT(pgg_drift_missing(&d), 0);
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(column_with_several_differences_lists_them_all)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_table("public", "t"));
  add(&desired, o_col("public", "t", "c", "bigint", true, 1));
  add(&live, o_table("public", "t"));
  pgg_object c = o_col("public", "t", "c", "integer", false, 1);
  c.default_expr = S("0");
  add(&live, c);
  pgg_drift d;
  diff(&desired, &live, &d);
  REQUIRE(d.n == 1);
  CHECK_STR(d.items[0].why, "type integer != bigint; nullable, desired NOT NULL; default 0 != none");
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(column_position_difference_is_not_drift)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_table("public", "t"));
  add(&desired, o_col("public", "t", "c", "bigint", true, 1));
  add(&live, o_table("public", "t"));
  add(&live, o_col("public", "t", "c", "bigint", true, 4));  /* dropped columns before it */
  pgg_drift d;
  diff(&desired, &live, &d);
  CHECK_INT(d.n, 0);
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

/* ---- reports ------------------------------------------------------------ */

TEST(json_report_has_totals_counts_and_items)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_schema("public"));
  add(&desired, o_table("public", "developer_projects"));
  add(&desired, o_col("public", "developer_projects", "id", "bigint", true, 1));
  add(&live, o_schema("public"));
  pgg_drift d;
  diff(&desired, &live, &d);
  const char *json = formatted(&d, true);
  const char *head =
      "{\"missing\": 1, \"extra\": 0, \"conflicting\": 0, \"unsupported\": 0, "
      "\"needs_migration\": 0, \"suspected_rename\": 0, \"counts\": {";
  CHECK(strncmp(json, head, strlen(head)) == 0);
  CHECK(strstr(json, "\"table\": {\"missing\": 1, \"extra\": 0, \"conflicting\": 0, "
                     "\"unsupported\": 0, \"needs_migration\": 0, \"suspected_rename\": 0}"));
  CHECK(strstr(json, "\"column\": {\"missing\": 0, \"extra\": 0, \"conflicting\": 0, "
                     "\"unsupported\": 0, \"needs_migration\": 0, \"suspected_rename\": 0}"));
  CHECK(strstr(json, "\"index\": {\"missing\": 0, \"extra\": 0, \"conflicting\": 0, "
                     "\"unsupported\": 0, \"needs_migration\": 0, \"suspected_rename\": 0}"));
  CHECK(strstr(json, "\"items\": [{\"state\": \"missing\", \"kind\": \"table\", \"schema\": "
                     "\"public\", \"parent\": null, \"name\": \"developer_projects\", "
                     "\"why\": null}]}"));
  CHECK(!strstr(json, "\"name\": \"id\""));  /* the implied column is not an item */
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

static const struct {
  const char *name, *json;
} json_escapes[] = {
    {"plain", "\"plain\""},
    {"a\"b", "\"a\\\"b\""},
    {"back\\slash", "\"back\\\\slash\""},
    {"line\nbreak\ttab\rcr", "\"line\\nbreak\\ttab\\rcr\""},
    {"bell\x07" "esc\x1b", "\"bell\\u0007esc\\u001b\""},
    {"\b\f", "\"\\b\\f\""},
    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x98", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x98\""},
    {"bad\xff" "byte", "\"bad\\ufffdbyte\""},        /* SQL_ASCII bytes: still valid JSON */
    {"trunc\xc3", "\"trunc\\ufffd\""},
    {"surrogate\xed\xa0\x80", "\"surrogate\\ufffd\\ufffd\\ufffd\""},
    {"</script>", "\"</script>\""},
};

TEST(json_report_escapes_quotes_backslashes_and_control_chars_and_keeps_utf8)
{
  for (size_t i = 0; i < sizeof json_escapes / sizeof json_escapes[0]; i++) {
    pgg_catalog desired, live;
    pgg_catalog_init(&desired);
    pgg_catalog_init(&live);
    add(&desired, o_table("public", json_escapes[i].name));
    pgg_drift d;
    diff(&desired, &live, &d);
    const char *json = formatted(&d, true);
    char want[256];
    snprintf(want, sizeof want, "\"name\": %s, \"why\": null}", json_escapes[i].json);
    CHECK(strstr(json, want) != NULL);
    if (check_failed_now)
      fprintf(stderr, "  case %zu: %s\n  want %s\n", i, json, want);
    pgg_drift_free(&d);
    pgg_catalog_free(&desired);
    pgg_catalog_free(&live);
  }
}

TEST(json_report_escapes_why_strings_too)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  pgg_object a = o_col("public", "t", "c", "text", false, 1), b = a;
  a.default_expr = S("'say \"hi\"'::text");
  add(&desired, o_table("public", "t"));
  add(&desired, a);
  add(&live, o_table("public", "t"));
  add(&live, b);
  pgg_drift d;
  diff(&desired, &live, &d);
  const char *json = formatted(&d, true);
  CHECK(strstr(json, "\"why\": \"default none != 'say \\\"hi\\\"'::text\""));
  CHECK(strstr(json, "\"conflicting\": 1"));
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(text_report_lists_state_kind_qualified_name_and_why)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  shop(&desired);
  shop(&live);
  add(&desired, o_label("public", "mood", "in progress", 3));
  add(&desired, o_col("public", "users", "Nick Name", "text", false, 4));
  add(&desired, o_schema("audit"));
  pgg_object *id = (pgg_object *)pgg_catalog_find(&live, PGG_OBJ_COLUMN, "public", "users", "id");
  REQUIRE(id);
  id->not_null = false;
  pgg_drift d;
  diff(&desired, &live, &d);
  const char *text = formatted(&d, false);
  CHECK(strncmp(text, "STATE", 5) == 0);
  CHECK(strstr(text, "missing      schema      audit"));
  CHECK(strstr(text, "missing      enum_label  public.mood.\"in progress\""));
  CHECK(strstr(text, "missing      column      public.users.\"Nick Name\""));
  CHECK(strstr(text, "conflicting  column      public.users.id"));
  CHECK(strstr(text, " nullable, desired NOT NULL\n"));
  CHECK(strstr(text, "missing: 1 schema, 1 enum label, 1 column; extra: 0; conflicting: 1 column\n"));
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(text_report_shows_control_bytes_in_names_escaped)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  add(&desired, o_table("public", "evil\x1b[2Jname"));
  pgg_drift d;
  diff(&desired, &live, &d);
  const char *text = formatted(&d, false);
  CHECK(strstr(text, "public.\"evil\\x1b[2Jname\""));
  CHECK(!strchr(text, '\x1b'));
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(text_report_without_drift_is_one_summary_line)
{
  pgg_drift d;
  pgg_drift_init(&d);
  CHECK_STR(formatted(&d, false), "missing: 0; extra: 0; conflicting: 0\n");
  const char *json = formatted(&d, true);
  CHECK(strstr(json, "\"items\": []}"));
  pgg_drift_free(&d);
}

/* ---- kinds added for whole repairs, and the ones only reported ---------- */

TEST(objects_of_unmodeled_kinds_in_desired_only_are_unsupported_never_missing)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  shop(&desired);
  shop(&live);
  add(&desired, o_unmodeled(PGG_OBJ_POLICY, "public", "users", "own_rows", "r true"));
  add(&desired, o_unmodeled(PGG_OBJ_RULE, "public", "users", "no_delete", "CREATE RULE ..."));
  add(&desired, o_unmodeled(PGG_OBJ_EVENT_TRIGGER, NULL, NULL, "audit_ddl", "ddl_command_end"));
  add(&desired, o_unmodeled(PGG_OBJ_PUBLICATION, NULL, NULL, "outbox", "public.users"));
  add(&desired, o_unmodeled(PGG_OBJ_COMMENT, NULL, "table public.users", NULL, "people"));
  add(&desired, o_unmodeled(PGG_OBJ_GRANT, NULL, "table public.users", "SELECT to ro", NULL));
  add(&desired, o_unmodeled(PGG_OBJ_OTHER, NULL, NULL, "collation public.nd", NULL));
  /* Present in both but different: conflicting, as any other kind. */
  add(&desired, o_unmodeled(PGG_OBJ_COMMENT, NULL, "table public.projects", NULL, "new text"));
  add(&live, o_unmodeled(PGG_OBJ_COMMENT, NULL, "table public.projects", NULL, "old text"));
  /* In live only: extra. */
  add(&live, o_unmodeled(PGG_OBJ_POLICY, "public", "users", "legacy", "r true"));
  pgg_drift d;
  diff(&desired, &live, &d);
  CHECK_INT(pgg_drift_state_count(&d, PGG_DRIFT_UNSUPPORTED), 7);
  CHECK_INT(pgg_drift_missing(&d), 0);
  CHECK_INT(d.counts[PGG_OBJ_POLICY][PGG_DRIFT_UNSUPPORTED], 1);
  CHECK_INT(d.counts[PGG_OBJ_POLICY][PGG_DRIFT_EXTRA], 1);
  CHECK_INT(d.counts[PGG_OBJ_COMMENT][PGG_DRIFT_UNSUPPORTED], 1);
  CHECK_INT(d.counts[PGG_OBJ_COMMENT][PGG_DRIFT_CONFLICTING], 1);
  CHECK_INT(d.counts[PGG_OBJ_EVENT_TRIGGER][PGG_DRIFT_UNSUPPORTED], 1);
  const char *text = formatted(&d, false);
  CHECK(strstr(text, "unsupported  policy      public.users.own_rows\n"));
  CHECK(strstr(text, "unsupported  event_trigger audit_ddl\n"));
  CHECK(strstr(text, "unsupported  publication outbox\n"));
  CHECK(strstr(text, "unsupported  grant       table public.users: SELECT to ro\n"));
  CHECK(strstr(text, "unsupported  comment     table public.users\n"));
  CHECK(strstr(text, "unsupported  other       collation public.nd\n"));
  CHECK(strstr(text, "; unsupported: 1 policy, 1 rule, 1 event trigger, 1 publication, "
                     "1 comment, 1 grant, 1 other object\n"));
  const char *json = formatted(&d, true);
  CHECK(strstr(json, "\"unsupported\": 7, \"needs_migration\": 0"));
  CHECK(strstr(json, "{\"state\": \"unsupported\", \"kind\": \"rule\", \"schema\": \"public\", "
                     "\"parent\": \"users\", \"name\": \"no_delete\""));
  /* Nothing unsupported is ever planned. */
  pgg_plan p;
  pgg_plan_init(&p);
  CHECK_INT(pgg_plan_build(&d, &live, &p), PGG_OK);
  CHECK_INT(p.n, 0);
  pgg_plan_free(&p);
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}

TEST(new_kinds_are_missing_conflicting_or_implied_like_the_old_ones)
{
  pgg_catalog desired, live;
  pgg_catalog_init(&desired);
  pgg_catalog_init(&live);
  shop(&desired);
  shop(&live);
  add(&desired, o_ext("citext", "public", "1.6"));
  add(&live, o_ext("citext", "public", "1.4"));
  add(&desired, o_ext("pg_trgm", "public", "1.6"));
  add(&desired, o_typedef(PGG_OBJ_DOMAIN, "public", "email", "AS text CONSTRAINT \"c\" CHECK (true)"));
  add(&live, o_typedef(PGG_OBJ_DOMAIN, "public", "email", "AS text"));
  add(&desired, o_typedef(PGG_OBJ_COMPOSITE, "public", "money2", "(\"a\" integer)"));
  add(&desired, o_func("public", "f()", "CREATE OR REPLACE FUNCTION public.f() ...", 0));
  add(&desired, o_view("public", "v", 'v', " SELECT 1 AS a", 0));
  add(&live, o_view("public", "v", 'm', " SELECT 1 AS a", 0));
  add(&desired, o_trigger("public", "users", "trg", "CREATE TRIGGER trg ..."));
  /* A sequence missing with its OWNED BY: the OWNED BY is implied; an
   * existing sequence that lost it: missing on its own. */
  add(&desired, o_seq("public", "users_id_seq", SEQDEF));
  for (size_t i = 0; i < desired.n; i++)
    if (desired.objs[i].kind == PGG_OBJ_SEQUENCE && !strcmp(desired.objs[i].name, "order_no"))
      desired.objs[i].persistence = 'u';
  add(&desired, o_owned("public", "users_id_seq", "users.id", "users", "id"));
  add(&desired, o_owned("public", "order_no", "orders.no", "orders", "no"));
  pgg_object part = o_table("public", "events_2024");
  part.partition_of = S("public.events");
  part.default_expr = S("FOR VALUES FROM (1) TO (2)");
  add(&desired, part);
  pgg_object lpart = part;
  lpart.default_expr = S("FOR VALUES FROM (1) TO (3)");
  add(&live, lpart);
  pgg_object *email = (pgg_object *)pgg_catalog_find(&live, PGG_OBJ_COLUMN, "public", "users",
                                                     "email");
  REQUIRE(email);
  email->collation = strdup(" COLLATE pg_catalog.\"C\"");
  pgg_drift d;
  diff(&desired, &live, &d);
  CHECK_INT(d.counts[PGG_OBJ_EXTENSION][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_EXTENSION][PGG_DRIFT_CONFLICTING], 1);
  CHECK_INT(d.counts[PGG_OBJ_DOMAIN][PGG_DRIFT_CONFLICTING], 1);
  CHECK_INT(d.counts[PGG_OBJ_COMPOSITE][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_FUNCTION][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_VIEW][PGG_DRIFT_CONFLICTING], 1);
  CHECK_INT(d.counts[PGG_OBJ_TRIGGER][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_SEQUENCE][PGG_DRIFT_MISSING], 1);
  CHECK_INT(d.counts[PGG_OBJ_OWNED_BY][PGG_DRIFT_MISSING], 1);
  CHECK_INT(items_in(&d, PGG_DRIFT_MISSING, true), 1);
  CHECK_INT(d.counts[PGG_OBJ_TABLE][PGG_DRIFT_CONFLICTING], 1);
  CHECK_INT(d.counts[PGG_OBJ_COLUMN][PGG_DRIFT_CONFLICTING], 1);
  const char *text = formatted(&d, false);
  CHECK(strstr(text, "extension   citext"));
  CHECK(strstr(text, "version 1.4 != 1.6"));
  CHECK(strstr(text, "partition bound FOR VALUES FROM (1) TO (3) != FOR VALUES FROM (1) TO (2)"));
  CHECK(strstr(text, "collation COLLATE pg_catalog.\"C\" != default"));
  CHECK(strstr(text, "materialized view != view"));
  CHECK(strstr(text, "conflicting  sequence    public.order_no                          logged != unlogged"));
  pgg_drift_free(&d);
  pgg_catalog_free(&desired);
  pgg_catalog_free(&live);
}
