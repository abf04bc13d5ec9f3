/*
 * test_colorder.c — column order against the desired schema, counting the
 * columns a repair would append.
 */
#include "catalog_builders.h"
#include "check.h"
#include "colorder.h"

static void table(pgg_catalog *c, const char *t, const char *const *cols, size_t n)
{
  add(c, o_table_rows("public", t, false));
  for (size_t i = 0; i < n; i++)
    add(c, o_col("public", t, cols[i], "integer", false, (int)i + 1));
}

static unsigned differs(const char *const *want, size_t nw, const char *const *have, size_t nh,
                        char *text, size_t len)
{
  pgg_catalog d, l;
  pgg_catalog_init(&d);
  pgg_catalog_init(&l);
  table(&d, "t", want, nw);
  table(&l, "t", have, nh);
  pgg_catalog_sort(&d);
  pgg_catalog_sort(&l);
  pgg_buf out;
  pgg_buf_init(&out);
  unsigned n = 99;
  if (pgg_column_order(&d, &l, &out, &n) != PGG_OK)
    abort();
  snprintf(text, len, "%.*s", (int)out.len, out.len ? (const char *)out.data : "");
  pgg_buf_free(&out);
  pgg_catalog_free(&d);
  pgg_catalog_free(&l);
  return n;
}

TEST(appending_the_last_missing_columns_keeps_the_order)
{
  char text[256];
  const char *want[] = {"a", "b", "c"}, *have[] = {"a", "b"};
  CHECK_INT(differs(want, 3, have, 2, text, sizeof text), 0);
  CHECK_STR(text, "");
  const char *extra[] = {"a", "x", "b", "c"};   /* an extra live column changes nothing */
  CHECK_INT(differs(want, 3, extra, 4, text, sizeof text), 0);
}

TEST(a_missing_middle_column_is_appended_out_of_order)
{
  char text[256];
  const char *want[] = {"a", "b", "c"}, *have[] = {"a", "c"};
  CHECK_INT(differs(want, 3, have, 2, text, sizeof text), 1);
  CHECK_STR(text, "  public.t: desired (a, b, c), live after repair (a, c, b)\n");
}

TEST(swapped_live_columns_differ)
{
  char text[256];
  const char *want[] = {"id", "name", "email"}, *have[] = {"id", "email", "name"};
  CHECK_INT(differs(want, 3, have, 3, text, sizeof text), 1);
  CHECK(strstr(text, "live after repair (id, email, name)") != NULL);
}
