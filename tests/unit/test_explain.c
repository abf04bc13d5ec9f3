/*
 * test_explain.c — reading the object a guarded error names and deciding
 * whether the desired schema explains it: every PostgreSQL 15 wording, names
 * holding quotes, dots, spaces and UTF-8, aliases, typos, other errors under
 * the same SQLSTATE, translated messages and missing fields.
 */
#include "catalog_builders.h"
#include "check.h"
#include "explain.h"

/* The desired schema every case is decided against. */
static void desired(pgg_catalog *c)
{
  pgg_catalog_init(c);
  add(c, o_schema("public"));
  add(c, o_schema("app"));
  add(c, o_schema("s"));
  add(c, o_enum("public", "mood"));
  add(c, o_label("public", "mood", "happy", 1));
  add(c, o_label("public", "mood", "sad", 2));
  add(c, o_label("public", "mood", "so \"so\"", 3));
  add(c, o_enum("app", "Status Code"));
  add(c, o_label("app", "Status Code", "a: \"b", 1));
  add(c, o_label("app", "Status Code", "\xc3\xbcn\xc3\xaf", 2));   /* ünï */
  add(c, o_table_rows("public", "users", false));
  add(c, o_col("public", "users", "id", "bigint", true, 1));
  add(c, o_col("public", "users", "email", "text", false, 2));
  add(c, o_col("public", "users", "e.mail", "text", false, 3));
  add(c, o_table_rows("app", "orders", false));
  add(c, o_col("app", "orders", "id", "bigint", true, 1));
  add(c, o_col("app", "orders", "total", "numeric", false, 2));
  add(c, o_table_rows("public", "we\"ird.t", false));
  add(c, o_col("public", "we\"ird.t", "col \"x\"", "text", false, 1));
  add(c, o_table_rows("public", "s.t", false));             /* a table whose name has a dot */
  add(c, o_table_rows("s", "x", false));
  add(c, o_table_rows("public", "b\xc3\xbc" "cher", false)); /* bücher */
  add(c, o_table_rows("public", "order items", false));
  pgg_object v = {.kind = PGG_OBJ_VIEW, .schema = S("app"), .name = S("order_totals"),
                  .relkind = 'm'};
  add(c, v);
  add(c, o_seq("public", "invoice_no", SEQDEF));
  pgg_object d = {.kind = PGG_OBJ_DOMAIN, .schema = S("public"), .name = S("email_address")};
  add(c, d);
  pgg_object t = {.kind = PGG_OBJ_COMPOSITE, .schema = S("app"), .name = S("money_pair")};
  add(c, t);
  pgg_catalog_sort(c);
  if (pgg_catalog_add_routine(c, "public", "f") || pgg_catalog_add_routine(c, "app", "calc") ||
      pgg_catalog_add_routine(c, "public", "my.fn"))
    abort();
}

typedef struct {
  const char *sqlstate;
  const char *message;
  pgg_explain want;
} ecase;

/* English, untranslated (S = V = ERROR) cases, checked one by one. */
static int run_cases(const ecase *cases, size_t n)
{
  pgg_catalog c;
  desired(&c);
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    pgg_explain got = pgg_explain_error(&c, cases[i].sqlstate, "ERROR", "ERROR", cases[i].message);
    if (got != cases[i].want) {
      fprintf(stderr, "  %s \"%s\": got %s, want %s\n", cases[i].sqlstate, cases[i].message,
              pgg_explain_name(got), pgg_explain_name(cases[i].want));
      bad++;
    }
  }
  pgg_catalog_free(&c);
  return bad;
}

#define RUN(cases) CHECK_INT(run_cases((cases), sizeof(cases) / sizeof(cases)[0]), 0)

#define YES PGG_EXPLAIN_YES
#define NO PGG_EXPLAIN_NO

/* ---- 42P01 ---------------------------------------------------------------- */

TEST(relation_in_desired_schema_is_explained_qualified_or_not)
{
  static const ecase cases[] = {
    {"42P01", "relation \"users\" does not exist", YES},
    {"42P01", "relation \"public.users\" does not exist", YES},
    {"42P01", "relation \"orders\" does not exist", YES},
    {"42P01", "relation \"app.orders\" does not exist", YES},
  };
  RUN(cases);
}

TEST(relation_typo_wrong_schema_or_case_is_not_explained)
{
  static const ecase cases[] = {
    {"42P01", "relation \"userz\" does not exist", NO},
    {"42P01", "relation \"Users\" does not exist", NO},
    {"42P01", "relation \"app.users\" does not exist", NO},
    {"42P01", "relation \"public.orders\" does not exist", NO},
    {"42P01", "relation \"mood\" does not exist", NO},        /* a type, not a table */
  };
  RUN(cases);
}

TEST(dotted_relation_matches_when_any_reading_is_a_desired_table)
{
  static const ecase cases[] = {
    {"42P01", "relation \"s.t\" does not exist", YES},        /* public."s.t" */
    {"42P01", "relation \"public.s.t\" does not exist", YES},
    {"42P01", "relation \"s.x\" does not exist", YES},        /* s.x */
    {"42P01", "relation \"x\" does not exist", YES},
    {"42P01", "relation \"s.y\" does not exist", NO},
    {"42P01", "relation \"t\" does not exist", NO},
  };
  RUN(cases);
}

TEST(relation_names_with_quotes_dots_spaces_and_utf8_are_read_raw)
{
  static const ecase cases[] = {
    {"42P01", "relation \"we\"ird.t\" does not exist", YES},
    {"42P01", "relation \"public.we\"ird.t\" does not exist", YES},
    {"42P01", "relation \"we\"\"ird.t\" does not exist", NO},   /* not quote_ident'ed */
    {"42P01", "relation \"order items\" does not exist", YES},
    {"42P01", "relation \"b\xc3\xbc" "cher\" does not exist", YES},
    {"42P01", "relation \"b\xc3\xbc" "che\" does not exist", NO},
    {"42P01", "relation \"bucher\" does not exist", NO},
  };
  RUN(cases);
}

TEST(missing_from_clause_entry_names_an_alias_and_is_not_explained)
{
  static const ecase cases[] = {
    {"42P01", "missing FROM-clause entry for table \"users\"", NO},
    {"42P01", "missing FROM-clause entry for table \"u\"", NO},
  };
  RUN(cases);
}

TEST(truncated_or_garbled_relation_messages_are_not_explained)
{
  static const ecase cases[] = {
    {"42P01", "relation \"users", NO},
    {"42P01", "relation \"users\" does not exis", NO},
    {"42P01", "relation \"users\" does not exist.", NO},
    {"42P01", "relation \" does not exist", NO},
    {"42P01", "relation \"\" does not exist", NO},
    {"42P01", "relation users does not exist", NO},
    {"42P01", "", NO},
    {"42P01", "\"users\" does not exist", NO},
  };
  RUN(cases);
}

/* ---- 42703 ---------------------------------------------------------------- */

TEST(unqualified_column_is_explained_when_any_desired_table_has_it)
{
  static const ecase cases[] = {
    {"42703", "column \"email\" does not exist", YES},
    {"42703", "column \"total\" does not exist", YES},
    {"42703", "column \"id\" does not exist", YES},
    {"42703", "column \"emial\" does not exist", NO},
    {"42703", "column \"Email\" does not exist", NO},
    {"42703", "column \"users\" does not exist", NO},
  };
  RUN(cases);
}

TEST(column_of_relation_needs_that_table_to_have_the_column)
{
  static const ecase cases[] = {
    {"42703", "column \"email\" of relation \"users\" does not exist", YES},
    {"42703", "column \"total\" of relation \"orders\" does not exist", YES},
    {"42703", "column \"email\" of relation \"orders\" does not exist", NO},
    {"42703", "column \"email\" of relation \"nope\" does not exist", NO},
    {"42703", "column \"col \"x\"\" of relation \"we\"ird.t\" does not exist", YES},
  };
  RUN(cases);
}

TEST(qualified_column_by_table_needs_that_table_to_have_it)
{
  static const ecase cases[] = {
    {"42703", "column users.email does not exist", YES},
    {"42703", "column public.users.email does not exist", YES},
    {"42703", "column orders.total does not exist", YES},
    {"42703", "column orders.email does not exist", NO},     /* orders is desired, lacks it */
    {"42703", "column users.nope does not exist", NO},
  };
  RUN(cases);
}

TEST(qualified_column_by_alias_matches_any_desired_table_with_it)
{
  static const ecase cases[] = {
    {"42703", "column u.email does not exist", YES},
    {"42703", "column o.total does not exist", YES},
    {"42703", "column u.nope does not exist", NO},
    {"42703", "column u.Email does not exist", NO},
  };
  RUN(cases);
}

TEST(column_names_with_dots_and_quotes_match_in_every_form)
{
  static const ecase cases[] = {
    {"42703", "column \"e.mail\" does not exist", YES},
    {"42703", "column users.e.mail does not exist", YES},
    {"42703", "column u.e.mail does not exist", YES},
    {"42703", "column \"col \"x\"\" does not exist", YES},
    {"42703", "column \"col \"x\" does not exist", NO},
    {"42703", "column e.mail does not exist", NO},   /* alias e, column mail: no such column */
  };
  RUN(cases);
}

TEST(other_undefined_column_wordings_are_not_explained)
{
  static const ecase cases[] = {
    {"42703", "column \"email\" referenced in foreign key constraint does not exist", NO},
    {"42703", "record \"new\" has no field \"email\"", NO},
    {"42703", "column \"email\" does not exist\n", NO},
    {"42703", "column  does not exist", NO},
    {"42703", "column \"\" does not exist", NO},
  };
  RUN(cases);
}

/* ---- 42704 ---------------------------------------------------------------- */

TEST(desired_enum_type_is_explained_qualified_unqualified_or_as_array)
{
  static const ecase cases[] = {
    {"42704", "type \"mood\" does not exist", YES},
    {"42704", "type \"public.mood\" does not exist", YES},
    {"42704", "type \"mood[]\" does not exist", YES},
    {"42704", "type \"app.Status Code\" does not exist", YES},
    {"42704", "type \"Status Code\" does not exist", YES},
    {"42704", "type \"moods\" does not exist", NO},
    {"42704", "type \"app.mood\" does not exist", NO},
    {"42704", "type \"users\" does not exist", NO},   /* only enums count as types */
  };
  RUN(cases);
}

TEST(unknown_setting_and_replication_slot_are_not_explained)
{
  static const ecase cases[] = {
    {"42704", "unrecognized configuration parameter \"no_such.param\"", NO},
    {"42704", "unrecognized configuration parameter \"mood\"", NO},
    {"42704", "replication slot \"mood\" does not exist", NO},
    {"42704", "role \"mood\" does not exist", NO},
    {"42704", "collation \"mood\" for encoding \"UTF8\" does not exist", NO},
  };
  RUN(cases);
}

/* ---- 22P02 ---------------------------------------------------------------- */

TEST(enum_value_is_explained_only_when_the_desired_enum_has_that_label)
{
  static const ecase cases[] = {
    {"22P02", "invalid input value for enum mood: \"happy\"", YES},
    {"22P02", "invalid input value for enum public.mood: \"sad\"", YES},
    {"22P02", "invalid input value for enum mood: \"angry\"", NO},
    {"22P02", "invalid input value for enum mood: \"Happy\"", NO},
    {"22P02", "invalid input value for enum feeling: \"happy\"", NO},
    {"22P02", "invalid input value for enum app.mood: \"happy\"", NO},
  };
  RUN(cases);
}

TEST(enum_value_with_quoted_type_and_labels_holding_quotes_and_utf8)
{
  static const ecase cases[] = {
    {"22P02", "invalid input value for enum mood: \"so \"so\"\"", YES},
    {"22P02", "invalid input value for enum app.\"Status Code\": \"a: \"b\"", YES},
    {"22P02", "invalid input value for enum \"Status Code\": \"a: \"b\"", YES},
    {"22P02", "invalid input value for enum app.\"Status Code\": \"\xc3\xbcn\xc3\xaf\"", YES},
    {"22P02", "invalid input value for enum app.\"Status Code\": \"un\xc3\xaf\"", NO},
    {"22P02", "invalid input value for enum app.\"Status Code\": \"b\"", NO},
    {"22P02", "invalid input value for enum app.\"Status\": \"a: \"b\"", NO},
  };
  RUN(cases);
}

TEST(other_invalid_text_representations_are_not_explained)
{
  static const ecase cases[] = {
    {"22P02", "invalid input syntax for type integer: \"abc\"", NO},
    {"22P02", "invalid input value for enum mood: happy", NO},
    {"22P02", "invalid input value for enum mood \"happy\"", NO},
    {"22P02", "invalid input value for enum mood: \"happy", NO},
  };
  RUN(cases);
}

/* ---- 42883 ---------------------------------------------------------------- */

TEST(routine_is_explained_by_name_whatever_its_arguments)
{
  static const ecase cases[] = {
    {"42883", "function f(integer) does not exist", YES},
    {"42883", "function f() does not exist", YES},
    {"42883", "function public.f(text, integer) does not exist", YES},
    {"42883", "procedure calc() does not exist", YES},
    {"42883", "function app.calc(numeric, character varying) does not exist", YES},
    {"42883", "function my.fn(integer) does not exist", YES},   /* public."my.fn" */
    {"42883", "function g(integer) does not exist", NO},
    {"42883", "function app.f(integer) does not exist", NO},
    {"42883", "function F(integer) does not exist", NO},
  };
  RUN(cases);
}

TEST(operators_and_truncated_routine_messages_are_not_explained)
{
  static const ecase cases[] = {
    {"42883", "operator does not exist: integer = text", NO},
    {"42883", "function f(integer does not exist", NO},
    {"42883", "function f does not exist", NO},
    {"42883", "function f(integer)", NO},
  };
  RUN(cases);
}

/* ---- 3F000 ---------------------------------------------------------------- */

TEST(desired_schema_is_explained)
{
  static const ecase cases[] = {
    {"3F000", "schema \"app\" does not exist", YES},
    {"3F000", "schema \"s\" does not exist", YES},
    {"3F000", "schema \"nope\" does not exist", NO},
    {"3F000", "schema \"App\" does not exist", NO},
    {"3F000", "no schema has been selected to create in", NO},
  };
  RUN(cases);
}

/* ---- SQLSTATE, translation, missing fields -------------------------------- */

TEST(wording_under_another_sqlstate_is_not_explained)
{
  static const ecase cases[] = {
    {"42P07", "relation \"users\" does not exist", NO},
    {"42703", "relation \"users\" does not exist", NO},
    {"42P01", "column \"email\" does not exist", NO},
    {"XX000", "schema \"app\" does not exist", NO},
    {"42p01", "relation \"users\" does not exist", NO},
    {"", "relation \"users\" does not exist", NO},
  };
  RUN(cases);
}

TEST(translated_message_asks_for_a_catalog_check)
{
  pgg_catalog c;
  desired(&c);
  CHECK_INT(pgg_explain_error(&c, "42P01", "FEHLER", "ERROR", "Relation »users« existiert nicht"),
            PGG_EXPLAIN_TRANSLATED);
  /* Even a message that happens to read like English: S and V disagree. */
  CHECK_INT(pgg_explain_error(&c, "42P01", "ERREUR", "ERROR", "relation \"users\" does not exist"),
            PGG_EXPLAIN_TRANSLATED);
  /* No V (a server before 9.6): an English S means an English M. */
  CHECK_INT(pgg_explain_error(&c, "42P01", "ERROR", NULL, "relation \"users\" does not exist"),
            PGG_EXPLAIN_YES);
  CHECK_INT(pgg_explain_error(&c, "42P01", "FATAL", NULL, "relation \"userz\" does not exist"),
            PGG_EXPLAIN_NO);
  CHECK_INT(pgg_explain_error(&c, "42P01", "ERREUR", NULL, "la relation « users » n'existe pas"),
            PGG_EXPLAIN_TRANSLATED);
  /* Not guarded: translated or not, it passes through. */
  CHECK_INT(pgg_explain_error(&c, "23505", "FEHLER", "ERROR", "doppelter Schlüsselwert"),
            PGG_EXPLAIN_NO);
  pgg_catalog_free(&c);
}

TEST(missing_fields_or_no_desired_schema_pass_through)
{
  pgg_catalog c;
  desired(&c);
  const char *m = "relation \"users\" does not exist";
  CHECK_INT(pgg_explain_error(NULL, "42P01", "ERROR", "ERROR", m), PGG_EXPLAIN_NO);
  CHECK_INT(pgg_explain_error(NULL, "42P01", "FEHLER", "ERROR", m), PGG_EXPLAIN_NO);
  CHECK_INT(pgg_explain_error(&c, NULL, "ERROR", "ERROR", m), PGG_EXPLAIN_NO);
  CHECK_INT(pgg_explain_error(&c, "42P01", NULL, "ERROR", m), PGG_EXPLAIN_NO);
  CHECK_INT(pgg_explain_error(&c, "42P01", NULL, NULL, m), PGG_EXPLAIN_NO);
  CHECK_INT(pgg_explain_error(&c, "42P01", "ERROR", "ERROR", NULL), PGG_EXPLAIN_NO);
  pgg_catalog empty;
  pgg_catalog_init(&empty);
  CHECK_INT(pgg_explain_error(&empty, "42P01", "ERROR", "ERROR", m), PGG_EXPLAIN_NO);
  CHECK_INT(pgg_explain_error(&empty, "42883", "ERROR", "ERROR", "function f() does not exist"),
            PGG_EXPLAIN_NO);
  pgg_catalog_free(&c);
}

/* ---- the parser ----------------------------------------------------------- */

static int parsed(const char *sqlstate, const char *message, pgg_named_kind kind,
                  const char *text)
{
  pgg_named_object o;
  int rc = pgg_error_object_parse(sqlstate, message, &o);
  if (rc != PGG_OK)
    return o.kind == PGG_NAMED_NONE && o.text == NULL && kind == PGG_NAMED_NONE;
  return o.kind == kind && o.len == strlen(text) && memcmp(o.text, text, o.len) == 0 &&
         o.text >= message && o.text + o.len <= message + strlen(message);
}

TEST(parser_hands_back_the_text_between_prefix_and_suffix)
{
  CHECK(parsed("42P01", "relation \"s.t\" does not exist", PGG_NAMED_RELATION, "s.t"));
  CHECK(parsed("42P01", "relation \"a\" does not exist\" does not exist",
               PGG_NAMED_RELATION, "a\" does not exist"));
  CHECK(parsed("42703", "column \"c\" of relation \"t\" does not exist", PGG_NAMED_COLUMN,
               "\"c\" of relation \"t\""));
  CHECK(parsed("42703", "column t.c does not exist", PGG_NAMED_COLUMN, "t.c"));
  CHECK(parsed("42704", "type \"x[]\" does not exist", PGG_NAMED_TYPE, "x[]"));
  CHECK(parsed("22P02", "invalid input value for enum t: \"v\"", PGG_NAMED_ENUM_VALUE,
               "t: \"v"));
  CHECK(parsed("42883", "procedure s.p(integer) does not exist", PGG_NAMED_ROUTINE,
               "s.p(integer)"));
  CHECK(parsed("3F000", "schema \"s\" does not exist", PGG_NAMED_SCHEMA, "s"));
}

TEST(parser_refuses_other_wordings_and_null_arguments)
{
  CHECK(parsed("42P01", "missing FROM-clause entry for table \"t\"", PGG_NAMED_NONE, NULL));
  CHECK(parsed("42704", "unrecognized configuration parameter \"x\"", PGG_NAMED_NONE, NULL));
  CHECK(parsed("22P02", "invalid input value for enum t \"v\"", PGG_NAMED_NONE, NULL));
  CHECK(parsed("42883", "function f does not exist", PGG_NAMED_NONE, NULL));
  CHECK(parsed("42883", "operator does not exist: integer = text", PGG_NAMED_NONE, NULL));
  CHECK(parsed("3F000", "schema \"\" does not exist", PGG_NAMED_NONE, NULL));
  CHECK(parsed(NULL, "schema \"s\" does not exist", PGG_NAMED_NONE, NULL));
  CHECK(parsed("3F000", NULL, PGG_NAMED_NONE, NULL));
  pgg_catalog c;
  desired(&c);
  CHECK(!pgg_named_object_desired(&c, NULL));
  pgg_named_object none = {PGG_NAMED_NONE, "users", 5};
  CHECK(!pgg_named_object_desired(&c, &none));
  pgg_catalog_free(&c);
}

/* ---- routine names in the catalog ----------------------------------------- */

TEST(catalog_routines_are_found_by_name_in_one_or_any_schema_and_freed)
{
  pgg_catalog c;
  pgg_catalog_init(&c);
  CHECK(!pgg_catalog_has_routine(&c, NULL, "f"));
  REQUIRE(pgg_catalog_add_routine(&c, "public", "f") == PGG_OK);
  REQUIRE(pgg_catalog_add_routine(&c, "app", "g") == PGG_OK);
  CHECK(pgg_catalog_has_routine(&c, NULL, "f"));
  CHECK(pgg_catalog_has_routine(&c, "public", "f"));
  CHECK(!pgg_catalog_has_routine(&c, "app", "f"));
  CHECK(pgg_catalog_has_routine(&c, "app", "g"));
  CHECK(!pgg_catalog_has_routine(&c, NULL, "F"));
  CHECK_INT(c.nroutines, 2);
  pgg_catalog_free(&c);
  CHECK(c.routines == NULL && c.nroutines == 0 && c.routines_cap == 0);
}

TEST(explain_names_its_outcomes)
{
  CHECK_STR(pgg_explain_name(PGG_EXPLAIN_NO), "no");
  CHECK_STR(pgg_explain_name(PGG_EXPLAIN_YES), "yes");
  CHECK_STR(pgg_explain_name(PGG_EXPLAIN_TRANSLATED), "translated");
}

TEST(views_sequences_domains_and_composite_types_are_explained_too)
{
  static const ecase cases[] = {
    {"42P01", "relation \"order_totals\" does not exist", YES},
    {"42P01", "relation \"app.order_totals\" does not exist", YES},
    {"42P01", "relation \"invoice_no\" does not exist", YES},
    {"42704", "type \"email_address\" does not exist", YES},
    {"42704", "type \"email_address[]\" does not exist", YES},
    {"42704", "type \"app.money_pair\" does not exist", YES},
    {"42704", "type \"public.money_pair\" does not exist", NO},
    {"42P01", "relation \"order_total\" does not exist", NO},
  };
  RUN(cases);
}
