/*
 * fuzz_explain.c — libFuzzer target: arbitrary messages through
 * pgg_error_object_parse and pgg_explain_error against a small fixed desired
 * catalog whose names hold the characters the wordings use as delimiters
 * (quotes, dots, colons, parentheses, " of relation "). The decision is
 * compared with a reference that goes the other way round from explain.c:
 * it splits the text at every possible place and looks each reading up.
 *
 * Input: [SQLSTATE selector][severity selector] message (up to its first NUL).
 */
#include "explain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPECT(c) do { if (!(c)) abort(); } while (0)

static const char *const sqlstates[] = {"42P01", "42703", "42704", "22P02",
                                        "42883", "3F000", "42P07", "XX000"};

static pgg_catalog cat;
/* The longest name in cat, and the longest schema.name: no reading longer
 * can match, so the reference skips it (and stays linear on long inputs). */
static size_t longest, longest_qual;

static void add(pgg_object o)
{
  if (pgg_catalog_add(&cat, &o))
    abort();
}

#define OBJ(k, s, p, n) add((pgg_object){.kind = (k), .schema = (char *)(s), \
                                          .parent = (char *)(p), .name = (char *)(n)})

static void build_catalog(void)
{
  pgg_catalog_init(&cat);
  static const char *const schemas[] = {"public", "app", "s", "we\"ird", "a.b"};
  for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++)
    OBJ(PGG_OBJ_SCHEMA, schemas[i], NULL, schemas[i]);
  OBJ(PGG_OBJ_ENUM, "public", NULL, "mood");
  OBJ(PGG_OBJ_ENUM_LABEL, "public", "mood", "happy");
  OBJ(PGG_OBJ_ENUM_LABEL, "public", "mood", "a: \"b");
  OBJ(PGG_OBJ_ENUM_LABEL, "public", "mood", ": \"");
  OBJ(PGG_OBJ_ENUM_LABEL, "public", "mood", "\"");
  OBJ(PGG_OBJ_ENUM, "a.b", NULL, "x\"y");
  OBJ(PGG_OBJ_ENUM_LABEL, "a.b", "x\"y", "v");
  OBJ(PGG_OBJ_ENUM, "app", NULL, "Status Code");
  OBJ(PGG_OBJ_ENUM_LABEL, "app", "Status Code", "ok");
  OBJ(PGG_OBJ_TABLE, "public", NULL, "users");
  OBJ(PGG_OBJ_COLUMN, "public", "users", "id");
  OBJ(PGG_OBJ_COLUMN, "public", "users", "email");
  OBJ(PGG_OBJ_COLUMN, "public", "users", "e.mail");
  OBJ(PGG_OBJ_COLUMN, "public", "users", "\" of relation \"");
  OBJ(PGG_OBJ_TABLE, "public", NULL, "s.t");
  OBJ(PGG_OBJ_COLUMN, "public", "s.t", "c");
  OBJ(PGG_OBJ_TABLE, "s", NULL, "t");
  OBJ(PGG_OBJ_COLUMN, "s", "t", "d");
  OBJ(PGG_OBJ_TABLE, "a.b", NULL, "c.d");
  OBJ(PGG_OBJ_COLUMN, "a.b", "c.d", "x.y");
  OBJ(PGG_OBJ_TABLE, "app", NULL, "orders");
  OBJ(PGG_OBJ_COLUMN, "app", "orders", "total");
  OBJ(PGG_OBJ_TABLE, "public", NULL, "t\"");
  OBJ(PGG_OBJ_COLUMN, "public", "t\"", "\"");
  pgg_catalog_sort(&cat);
  for (size_t i = 0; i < cat.n; i++) {
    size_t n = strlen(cat.objs[i].name), q = strlen(cat.objs[i].schema) + 1 + n;
    longest = n > longest ? n : longest;
    longest_qual = q > longest_qual ? q : longest_qual;
  }
  if (pgg_catalog_add_routine(&cat, "public", "f") || pgg_catalog_add_routine(&cat, "app", "g(h") ||
      pgg_catalog_add_routine(&cat, "a.b", "c.d") || pgg_catalog_add_routine(&cat, "public", "my.fn"))
    abort();
}

/* ---- the reference ------------------------------------------------------ */

typedef struct {
  const char *p;
  size_t n;
} sl;

#define ANY ((sl){NULL, 0})

static sl cut(sl x, size_t from, size_t to)
{
  return (sl){x.p + from, to - from};
}

static bool same(sl x, const char *s)
{
  return strlen(s) == x.n && memcmp(x.p, s, x.n) == 0;
}

/* An object of kind with this schema, parent and name (ANY: whatever). */
static bool has(pgg_obj_kind kind, sl schema, sl parent, sl name)
{
  if (name.n > longest || schema.n > longest || parent.n > longest)
    return false;
  for (size_t i = 0; i < cat.n; i++) {
    const pgg_object *o = &cat.objs[i];
    if (o->kind == kind && same(name, o->name) && (!schema.p || same(schema, o->schema)) &&
        (!parent.p || (o->parent && same(parent, o->parent))))
      return true;
  }
  return false;
}

/* x as an unqualified name, or split at any one dot into schema.name. */
static bool qualified(pgg_obj_kind kind, sl x)
{
  if (x.n > longest_qual)
    return false;
  if (has(kind, ANY, ANY, x))
    return true;
  for (size_t i = 0; i < x.n; i++)
    if (x.p[i] == '.' && has(kind, cut(x, 0, i), ANY, cut(x, i + 1, x.n)))
      return true;
  return false;
}

static bool routine(sl schema, sl name)
{
  char s[4096], n[4096];
  if (schema.n >= sizeof s || name.n >= sizeof n)
    return false;
  memcpy(s, schema.p ? schema.p : "", schema.n);
  s[schema.n] = 0;
  memcpy(n, name.p, name.n);
  n[name.n] = 0;
  return pgg_catalog_has_routine(&cat, schema.p ? s : NULL, n);
}

static bool ref_routine(sl x)
{
  if (!x.n || x.p[x.n - 1] != ')')
    return false;
  for (size_t i = 0; i < x.n; i++) {
    if (x.p[i] != '(')
      continue;
    sl name = cut(x, 0, i);
    if (i > 64)   /* longer than any routine's schema.name below */
      break;
    if (routine(ANY, name))
      return true;
    for (size_t j = 0; j < i; j++)
      if (x.p[j] == '.' && routine(cut(x, 0, j), cut(x, j + 1, i)))
        return true;
  }
  return false;
}

static bool ref_column(sl x)
{
  static const char of_rel[] = "\" of relation \"";
  const size_t ol = sizeof of_rel - 1;
  if (x.n >= 2 && x.p[0] == '"' && x.p[x.n - 1] == '"') {
    if (has(PGG_OBJ_COLUMN, ANY, ANY, cut(x, 1, x.n - 1)))
      return true;
    for (size_t i = 1; i + ol <= x.n - 1; i++)
      if (memcmp(x.p + i, of_rel, ol) == 0 &&
          has(PGG_OBJ_COLUMN, ANY, cut(x, i + ol, x.n - 1), cut(x, 1, i)))
        return true;
  }
  for (size_t i = 1; i < x.n; i++) {
    if (x.p[i] != '.')
      continue;
    sl q = cut(x, 0, i), c = cut(x, i + 1, x.n);
    if (c.n > longest)
      continue;
    if (!qualified(PGG_OBJ_TABLE, q)) {
      if (has(PGG_OBJ_COLUMN, ANY, ANY, c))   /* an alias */
        return true;
      continue;
    }
    if (has(PGG_OBJ_COLUMN, ANY, q, c))
      return true;
    for (size_t j = 0; j < q.n && q.n <= longest_qual; j++)
      if (q.p[j] == '.' && has(PGG_OBJ_COLUMN, cut(q, 0, j), cut(q, j + 1, q.n), c))
        return true;
  }
  return false;
}

/* quote_ident's output for s: always quoted, quotes doubled. */
static size_t quoted(char *out, const char *s)
{
  size_t n = 0;
  out[n++] = '"';
  for (; *s; s++) {
    out[n++] = *s;
    if (*s == '"')
      out[n++] = '"';
  }
  out[n++] = '"';
  out[n] = 0;
  return n;
}

/* t is one of the ways format_type_be can print schema.type. */
static bool prints_type(sl t, const char *schema, const char *type)
{
  char qs[256], qt[256], form[600];
  quoted(qs, schema);
  quoted(qt, type);
  const char *ss[] = {schema, qs}, *ts[] = {type, qt};
  for (int a = 0; a < 2; a++) {
    if (same(t, ts[a]))
      return true;
    for (int b = 0; b < 2; b++) {
      snprintf(form, sizeof form, "%s.%s", ss[b], ts[a]);
      if (same(t, form))
        return true;
    }
  }
  return false;
}

static bool ref_enum_value(sl x)
{
  for (size_t i = 0; i + 3 <= x.n; i++) {
    if (memcmp(x.p + i, ": \"", 3) != 0)
      continue;
    sl t = cut(x, 0, i), v = cut(x, i + 3, x.n);
    if (v.n > longest || t.n > 2 * longest_qual + 6)
      continue;
    for (size_t k = 0; k < cat.n; k++) {
      const pgg_object *o = &cat.objs[k];
      if (o->kind == PGG_OBJ_ENUM_LABEL && same(v, o->name) && prints_type(t, o->schema, o->parent))
        return true;
    }
  }
  return false;
}

static bool ref_desired(pgg_named_kind kind, sl x)
{
  switch (kind) {
  case PGG_NAMED_RELATION: return qualified(PGG_OBJ_TABLE, x);
  case PGG_NAMED_COLUMN: return ref_column(x);
  case PGG_NAMED_TYPE:
    return qualified(PGG_OBJ_ENUM, x) ||
           (x.n >= 2 && memcmp(x.p + x.n - 2, "[]", 2) == 0 &&
            qualified(PGG_OBJ_ENUM, cut(x, 0, x.n - 2)));
  case PGG_NAMED_ENUM_VALUE: return ref_enum_value(x);
  case PGG_NAMED_ROUTINE: return ref_routine(x);
  case PGG_NAMED_SCHEMA: return has(PGG_OBJ_SCHEMA, ANY, ANY, x);
  case PGG_NAMED_NONE: break;
  }
  return false;
}

/* The parser's contract: the message is prefix + text + suffix of the
 * wording for its kind and SQLSTATE. */
static void check_parse(const char *sqlstate, const char *m)
{
  static const struct {
    const char *code;
    pgg_named_kind kind;
    const char *pre, *suf;
  } w[] = {
    {"42P01", PGG_NAMED_RELATION, "relation \"", "\" does not exist"},
    {"42703", PGG_NAMED_COLUMN, "column ", " does not exist"},
    {"42704", PGG_NAMED_TYPE, "type \"", "\" does not exist"},
    {"22P02", PGG_NAMED_ENUM_VALUE, "invalid input value for enum ", "\""},
    {"42883", PGG_NAMED_ROUTINE, "function ", " does not exist"},
    {"42883", PGG_NAMED_ROUTINE, "procedure ", " does not exist"},
    {"3F000", PGG_NAMED_SCHEMA, "schema \"", "\" does not exist"},
  };
  size_t len = strlen(m);
  pgg_named_object o;
  int rc = pgg_error_object_parse(sqlstate, m, &o);
  bool want = false;
  for (size_t i = 0; i < sizeof w / sizeof w[0] && !want; i++) {
    size_t pl = strlen(w[i].pre), sfl = strlen(w[i].suf);
    if (strcmp(sqlstate, w[i].code) || len < pl + sfl || strncmp(m, w[i].pre, pl) ||
        strcmp(m + len - sfl, w[i].suf))
      continue;
    sl x = {m + pl, len - pl - sfl};
    if (w[i].kind == PGG_NAMED_ENUM_VALUE && !memmem(x.p, x.n, ": \"", 3))
      continue;
    if (w[i].kind == PGG_NAMED_ROUTINE &&
        (!x.n || x.p[x.n - 1] != ')' || !memchr(x.p, '(', x.n)))
      continue;
    if (!x.n)
      continue;
    want = true;
    EXPECT(rc == PGG_OK && o.kind == w[i].kind && o.text == x.p && o.len == x.n);
  }
  if (!want) {
    EXPECT(rc != PGG_OK && o.kind == PGG_NAMED_NONE && !o.text && !o.len);
    return;
  }
  EXPECT(pgg_named_object_desired(&cat, &o) == ref_desired(o.kind, (sl){o.text, o.len}));
  EXPECT(!pgg_named_object_desired(NULL, &o));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!cat.objs)
    build_catalog();
  if (size < 2)
    return 0;
  const char *sqlstate = sqlstates[data[0] % 8];
  /* An exact-size heap string, so ASan sees any read past its end. */
  const uint8_t *z = memchr(data + 2, 0, size - 2);
  size_t mlen = z ? (size_t)(z - (data + 2)) : size - 2;
  char *m = malloc(mlen + 1);
  memcpy(m, data + 2, mlen);
  m[mlen] = 0;

  for (size_t i = 0; i < 6; i++)
    check_parse(sqlstates[i], m);

  /* S and V: the same English word, V missing, or a translation. */
  static const char *const sev[][2] = {{"ERROR", "ERROR"}, {"ERROR", NULL},
                                       {"FEHLER", "ERROR"}, {"ERREUR", NULL}};
  const char *s = sev[data[1] % 4][0], *v = sev[data[1] % 4][1];
  pgg_explain got = pgg_explain_error(&cat, sqlstate, s, v, m);
  bool guarded = data[0] % 8 < 6;
  pgg_explain want = PGG_EXPLAIN_NO;
  if (guarded && data[1] % 4 >= 2) {
    want = PGG_EXPLAIN_TRANSLATED;
  } else if (guarded) {
    pgg_named_object o;
    if (pgg_error_object_parse(sqlstate, m, &o) == PGG_OK &&
        ref_desired(o.kind, (sl){o.text, o.len}))
      want = PGG_EXPLAIN_YES;
  }
  EXPECT(got == want);
  EXPECT(pgg_explain_error(NULL, sqlstate, s, v, m) == PGG_EXPLAIN_NO);
  EXPECT(pgg_explain_error(&cat, sqlstate, NULL, v, m) == PGG_EXPLAIN_NO);
  EXPECT(pgg_explain_error(&cat, NULL, s, v, m) == PGG_EXPLAIN_NO);
  free(m);
  return 0;
}
