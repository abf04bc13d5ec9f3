/*
 * test_quote.c — identifier and literal quoting used by the repair planner:
 * every name is quoted, and no name or label can end its quotes.
 */
#include "catalog.h"
#include "check.h"

/* Quotes s with fn into a fresh buffer and returns it as a C string (static). */
static const char *quoted(int (*fn)(pgg_buf *, const char *), const char *s)
{
  static char out[256];
  pgg_buf b;
  pgg_buf_init(&b);
  int err = fn(&b, s);
  if (err || b.len >= sizeof out) {
    pgg_buf_free(&b);
    return "(error)";
  }
  memcpy(out, b.data, b.len);
  out[b.len] = 0;
  pgg_buf_free(&b);
  return out;
}

static const struct {
  const char *in, *want;
} ident_cases[] = {
    {"users", "\"users\""},                            /* always quoted, even when bare would do */
    {"Users", "\"Users\""},                            /* upper case kept */
    {"order items", "\"order items\""},
    {"a\"b", "\"a\"\"b\""},                            /* embedded quote doubled */
    {"\"", "\"\"\"\""},
    {"x\"; DROP TABLE y; --", "\"x\"\"; DROP TABLE y; --\""},
    {"select", "\"select\""},                          /* keywords need no list */
    {"caf\xc3\xa9", "\"caf\xc3\xa9\""},                /* UTF-8 passed through */
    {"it's", "\"it's\""},                              /* single quote is not special */
    {"back\\slash", "\"back\\slash\""},                /* nor is a backslash */
    {"", "\"\""},
};

TEST(quote_ident_always_quotes_and_doubles_embedded_quotes)
{
  for (size_t i = 0; i < sizeof ident_cases / sizeof ident_cases[0]; i++)
    CHECK_STR(quoted(pgg_quote_ident, ident_cases[i].in), ident_cases[i].want);
}

static const struct {
  const char *in, *want;
} literal_cases[] = {
    {"happy", "'happy'"},
    {"it's", "'it''s'"},                               /* embedded quote doubled */
    {"''", "''''''"},
    {"x'; DROP TYPE y; --", "'x''; DROP TYPE y; --'"},
    {"back\\slash", "E'back\\\\slash'"},               /* backslash: E'' form, doubled */
    {"a\\'b", "E'a\\\\''b'"},                          /* both at once */
    {"\\", "E'\\\\'"},
    {"\"q\"", "'\"q\"'"},                              /* double quotes are not special */
    {"\xc3\xbcn\xc3\xaf", "'\xc3\xbcn\xc3\xaf'"},
    {"", "''"},
};

TEST(quote_literal_doubles_quotes_and_uses_e_form_for_backslashes)
{
  for (size_t i = 0; i < sizeof literal_cases / sizeof literal_cases[0]; i++)
    CHECK_STR(quoted(pgg_quote_literal, literal_cases[i].in), literal_cases[i].want);
}

TEST(quote_null_is_treated_as_empty_not_a_crash)
{
  CHECK_STR(quoted(pgg_quote_ident, NULL), "\"\"");
  CHECK_STR(quoted(pgg_quote_literal, NULL), "''");
}

TEST(quote_appends_to_what_the_buffer_already_holds)
{
  pgg_buf b;
  pgg_buf_init(&b);
  REQUIRE(pgg_buf_append(&b, "CREATE SCHEMA ", 14) == PGG_OK);
  REQUIRE(pgg_quote_ident(&b, "s") == PGG_OK);
  REQUIRE(pgg_buf_append(&b, " ", 1) == PGG_OK);
  REQUIRE(pgg_quote_literal(&b, "l") == PGG_OK);
  REQUIRE(pgg_buf_append_u8(&b, 0) == PGG_OK);
  CHECK_STR((const char *)b.data, "CREATE SCHEMA \"s\" 'l'");
  pgg_buf_free(&b);
}
