/*
 * explain.c — reads the object a guarded error names from its English
 * message and decides whether the desired schema has it.
 *
 * PostgreSQL prints names raw inside its messages: a name may contain the
 * very quote, dot or colon that delimits it. So the parser only takes the
 * text between a wording's fixed prefix and suffix, and the matcher goes the
 * other way round: for each desired object it asks whether the text could
 * have been printed for it. That is exact (no reading is guessed), and its
 * cost is bounded by the catalog's size times the name's length whatever
 * the message holds.
 */
#include "explain.h"

#include <string.h>

const char *pgg_explain_name(pgg_explain e)
{
  switch (e) {
  case PGG_EXPLAIN_NO: return "no";
  case PGG_EXPLAIN_YES: return "yes";
  case PGG_EXPLAIN_TRANSLATED: return "translated";
  }
  return "unknown";
}

/* ---- wordings ----------------------------------------------------------- */

typedef struct {
  const char *sqlstate;
  pgg_named_kind kind;
  const char *prefix;
  const char *suffix;
} wording;

/* PostgreSQL 15's English messages for a missing object, as ereport() builds
 * them (parse_relation.c, namespace.c, parse_type.c, enum.c, parse_func.c). */
static const wording wordings[] = {
  {"42P01", PGG_NAMED_RELATION, "relation \"", "\" does not exist"},
  {"42703", PGG_NAMED_COLUMN, "column ", " does not exist"},
  {"42704", PGG_NAMED_TYPE, "type \"", "\" does not exist"},
  {"22P02", PGG_NAMED_ENUM_VALUE, "invalid input value for enum ", "\""},
  {"42883", PGG_NAMED_ROUTINE, "function ", " does not exist"},
  {"42883", PGG_NAMED_ROUTINE, "procedure ", " does not exist"},
  {"3F000", PGG_NAMED_SCHEMA, "schema \"", "\" does not exist"},
};

/* A slice of the message. */
typedef struct {
  const char *p;
  size_t n;
} slice;

static slice sl(const char *p, size_t n)
{
  return (slice){p, n};
}

static bool starts(slice x, const char *s, size_t n)
{
  return x.n >= n && memcmp(x.p, s, n) == 0;
}

static bool ends(slice x, const char *s, size_t n)
{
  return x.n >= n && memcmp(x.p + x.n - n, s, n) == 0;
}

/* x is exactly the string s. */
static bool is(slice x, const char *s)
{
  return s && strlen(s) == x.n && memcmp(x.p, s, x.n) == 0;
}

/* Does the text a wording carries hold together (the split points the
 * matcher needs are there at all)? */
static bool plausible(pgg_named_kind kind, slice x)
{
  switch (kind) {
  case PGG_NAMED_ENUM_VALUE:
    return memmem(x.p, x.n, ": \"", 3) != NULL;
  case PGG_NAMED_ROUTINE:
    return ends(x, ")", 1) && memchr(x.p, '(', x.n) != NULL;
  default:
    return x.n > 0;
  }
}

int pgg_error_object_parse(const char *sqlstate, const char *message, pgg_named_object *out)
{
  out->kind = PGG_NAMED_NONE;
  out->text = NULL;
  out->len = 0;
  if (!sqlstate || !message)
    return PGG_ERR_PROTO;
  slice m = sl(message, strlen(message));
  for (size_t i = 0; i < sizeof wordings / sizeof wordings[0]; i++) {
    const wording *w = &wordings[i];
    size_t pl = strlen(w->prefix), sfl = strlen(w->suffix);
    if (strcmp(sqlstate, w->sqlstate) != 0 || m.n < pl + sfl ||
        !starts(m, w->prefix, pl) || !ends(m, w->suffix, sfl))
      continue;
    slice x = sl(m.p + pl, m.n - pl - sfl);
    if (!plausible(w->kind, x))
      continue;
    out->kind = w->kind;
    out->text = x.p;
    out->len = x.n;
    return PGG_OK;
  }
  return PGG_ERR_PROTO;
}

/* ---- matching: could x have been printed for this object? --------------- */

/* x is name, or schema.name (both raw, as NameListToString prints them). */
static bool names(slice x, const char *schema, const char *name)
{
  if (is(x, name))
    return true;
  size_t n = strlen(schema);
  return x.n > n && x.p[n] == '.' && memcmp(x.p, schema, n) == 0 &&
         is(sl(x.p + n + 1, x.n - n - 1), name);
}

/* How long id prints raw, or as quote_ident() quotes it. */
static size_t ident_len(const char *id, bool quoted)
{
  size_t n = strlen(id);
  if (quoted) {
    n += 2;
    for (const char *p = id; *p; p++)
      n += *p == '"';
  }
  return n;
}

/* x is id printed raw, or quoted ("..." with each '"' doubled). */
static bool is_ident(slice x, const char *id, bool quoted)
{
  if (!quoted)
    return is(x, id);
  if (x.n < 2 || x.p[0] != '"' || x.p[x.n - 1] != '"')
    return false;
  size_t j = 1, end = x.n - 1;
  for (const char *p = id; *p; p++) {
    if (j >= end || x.p[j++] != *p)
      return false;
    if (*p == '"' && (j >= end || x.p[j++] != '"'))
      return false;
  }
  return j == end;
}

/*
 * x is a type name as format_type_be prints it: schema-qualified or not,
 * each part quoted or not (it quotes only the parts that need it; every
 * combination is accepted rather than re-deriving quote_ident's keyword list).
 */
static bool names_type(slice x, const char *schema, const char *name)
{
  for (int qn = 0; qn < 2; qn++) {
    if (is_ident(x, name, qn))
      return true;
    for (int qs = 0; qs < 2; qs++) {
      size_t n = ident_len(schema, qs);
      if (x.n > n && x.p[n] == '.' && is_ident(sl(x.p, n), schema, qs) &&
          is_ident(sl(x.p + n + 1, x.n - n - 1), name, qn))
        return true;
    }
  }
  return false;
}

static bool match_named(const pgg_catalog *c, pgg_obj_kind kind, slice x)
{
  for (size_t i = 0; i < c->n; i++) {
    const pgg_object *o = &c->objs[i];
    if (o->kind == kind && o->schema && o->name && names(x, o->schema, o->name))
      return true;
  }
  return false;
}

static bool match_schema(const pgg_catalog *c, slice x)
{
  for (size_t i = 0; i < c->n; i++)
    if (c->objs[i].kind == PGG_OBJ_SCHEMA && is(x, c->objs[i].name))
      return true;
  return false;
}

/* TypeNameToString appends "[]" to an array type's name; the element type
 * is the one to look for. */
static bool match_type_kinds(const pgg_catalog *c, slice x)
{
  return match_named(c, PGG_OBJ_ENUM, x) || match_named(c, PGG_OBJ_DOMAIN, x) ||
         match_named(c, PGG_OBJ_COMPOSITE, x);
}

static bool match_type(const pgg_catalog *c, slice x)
{
  if (match_type_kinds(c, x))
    return true;
  return ends(x, "[]", 2) && match_type_kinds(c, sl(x.p, x.n - 2));
}

/* A relation: a table, a view or materialized view, or a sequence
 * (nextval('s') of a missing sequence says relation "s"). */
static bool match_relation(const pgg_catalog *c, slice x)
{
  return match_named(c, PGG_OBJ_TABLE, x) || match_named(c, PGG_OBJ_VIEW, x) ||
         match_named(c, PGG_OBJ_SEQUENCE, x);
}

/* x is t: "v for some label v of enum t. */
static bool match_enum_value(const pgg_catalog *c, slice x)
{
  for (size_t i = 0; i < c->n; i++) {
    const pgg_object *o = &c->objs[i];
    if (o->kind != PGG_OBJ_ENUM_LABEL || !o->schema || !o->parent || !o->name)
      continue;
    size_t ln = strlen(o->name);
    if (x.n < ln + 3 || memcmp(x.p + x.n - ln, o->name, ln) != 0 ||
        memcmp(x.p + x.n - ln - 3, ": \"", 3) != 0)
      continue;
    if (names_type(sl(x.p, x.n - ln - 3), o->schema, o->parent))
      return true;
  }
  return false;
}

/* x is f(...) or s.f(...); the arguments are not compared (any overload). */
static bool match_routine(const pgg_catalog *c, slice x)
{
  for (size_t i = 0; i < c->nroutines; i++) {
    const pgg_routine *r = &c->routines[i];
    for (const char *open = memchr(x.p, '(', x.n); open;
         open = memchr(open + 1, '(', x.n - (size_t)(open + 1 - x.p))) {
      if (names(sl(x.p, (size_t)(open - x.p)), r->schema, r->name))
        return true;
    }
  }
  return false;
}

static bool is_table(const pgg_catalog *c, slice q)
{
  return match_named(c, PGG_OBJ_TABLE, q);
}

/*
 * The three column wordings: "c" (errorMissingColumn, unqualified), "c" of
 * relation "t" (INSERT column lists, ALTER TABLE: t is the bare relation
 * name) and q.c (errorMissingColumn, qualified: q is what the query wrote
 * before the dot, a table or an alias, unquoted).
 */
static bool match_column(const pgg_catalog *c, slice x)
{
  static const char of_rel[] = "\" of relation \"";
  const size_t of_len = sizeof of_rel - 1;
  for (size_t i = 0; i < c->n; i++) {
    const pgg_object *o = &c->objs[i];
    if (o->kind != PGG_OBJ_COLUMN || !o->schema || !o->parent || !o->name)
      continue;
    size_t cn = strlen(o->name);
    if (x.n >= cn + 2 && x.p[0] == '"') {
      slice rest = sl(x.p + 1 + cn, x.n - 1 - cn);
      if (memcmp(x.p + 1, o->name, cn) == 0) {
        if (is(rest, "\""))
          return true;
        if (starts(rest, of_rel, of_len) && ends(rest, "\"", 1) && rest.n >= of_len + 1 &&
            is(sl(rest.p + of_len, rest.n - of_len - 1), o->parent))
          return true;
      }
    }
    if (x.n > cn + 1 && x.p[x.n - cn - 1] == '.' &&
        memcmp(x.p + x.n - cn, o->name, cn) == 0) {
      slice q = sl(x.p, x.n - cn - 1);
      /* A desired table must have the column itself; anything else is an
       * alias, which could stand for any table that has it. */
      if (names(q, o->schema, o->parent) || !is_table(c, q))
        return true;
    }
  }
  return false;
}

bool pgg_named_object_desired(const pgg_catalog *desired, const pgg_named_object *o)
{
  if (!desired || !o || !o->text)
    return false;
  slice x = sl(o->text, o->len);
  switch (o->kind) {
  case PGG_NAMED_RELATION: return match_relation(desired, x);
  case PGG_NAMED_COLUMN: return match_column(desired, x);
  case PGG_NAMED_TYPE: return match_type(desired, x);
  case PGG_NAMED_ENUM_VALUE: return match_enum_value(desired, x);
  case PGG_NAMED_ROUTINE: return match_routine(desired, x);
  case PGG_NAMED_SCHEMA: return match_schema(desired, x);
  case PGG_NAMED_NONE: break;
  }
  return false;
}

/* ---- the decision ------------------------------------------------------- */

static bool guarded(const char *sqlstate)
{
  static const char *const codes[] = {"42P01", "42703", "42704", "22P02", "42883", "3F000"};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    if (strcmp(sqlstate, codes[i]) == 0)
      return true;
  return false;
}

/* Severities as an untranslated server prints them (elog.c error_severity). */
static bool english_severity(const char *s)
{
  static const char *const sev[] = {"ERROR", "FATAL", "PANIC", "WARNING", "NOTICE",
                                    "DEBUG", "INFO", "LOG"};
  for (size_t i = 0; i < sizeof sev / sizeof sev[0]; i++)
    if (strcmp(s, sev[i]) == 0)
      return true;
  return false;
}

pgg_explain pgg_explain_error(const pgg_catalog *desired, const char *sqlstate,
                              const char *sev_s, const char *sev_v, const char *message)
{
  if (!sqlstate || !guarded(sqlstate) || !desired || !sev_s || !message)
    return PGG_EXPLAIN_NO;
  /* S follows lc_messages, V never does: when they differ, so does M's
   * wording, and nothing can be read from it. */
  if (sev_v ? strcmp(sev_s, sev_v) != 0 : !english_severity(sev_s))
    return PGG_EXPLAIN_TRANSLATED;
  pgg_named_object o;
  if (pgg_error_object_parse(sqlstate, message, &o) != PGG_OK)
    return PGG_EXPLAIN_NO;
  return pgg_named_object_desired(desired, &o) ? PGG_EXPLAIN_YES : PGG_EXPLAIN_NO;
}
