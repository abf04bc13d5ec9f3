/*
 * diff.c — the drift between the desired (shadow) catalog and the live one:
 * missing, extra and conflicting objects, their counts, and the text and
 * JSON reports served by `pgguard check` and GET /drift.
 */
#include "catalog.h"

#include <stdlib.h>
#include <string.h>

const char *pgg_drift_state_name(pgg_drift_state s)
{
  switch (s) {
  case PGG_DRIFT_MISSING: return "missing";
  case PGG_DRIFT_EXTRA: return "extra";
  case PGG_DRIFT_CONFLICTING: return "conflicting";
  case PGG_DRIFT_UNSUPPORTED: return "unsupported";
  case PGG_DRIFT_NEEDS_MIGRATION: return "needs_migration";
  case PGG_DRIFT_SUSPECTED_RENAME: return "suspected_rename";
  case PGG_DRIFT__COUNT: break;
  }
  return "unknown";
}

void pgg_drift_init(pgg_drift *d)
{
  memset(d, 0, sizeof *d);
}

void pgg_drift_free(pgg_drift *d)
{
  for (size_t i = 0; i < d->n; i++)
    free(d->items[i].why);
  free(d->items);
  pgg_drift_init(d);
}

/* Takes ownership of why, also on failure. */
static int push_item(pgg_drift *d, pgg_drift_state state, const pgg_object *desired,
                     const pgg_object *live, bool implied, char *why)
{
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 32;
    pgg_drift_item *p = cap > SIZE_MAX / sizeof *p ? NULL
                                                   : realloc(d->items, cap * sizeof *p);
    if (!p) {
      free(why);
      return PGG_ERR_NOMEM;
    }
    d->items = p;
    d->cap = cap;
  }
  d->items[d->n++] = (pgg_drift_item){state, desired, live, implied, why};
  const pgg_object *o = desired ? desired : live;
  /* An implied object is created with its container: counting it too would
   * turn one missing table into fifty missing objects on the dashboard. */
  if (!implied && (unsigned)o->kind < PGG_OBJ__COUNT)
    d->counts[o->kind][state]++;
  return PGG_OK;
}

static bool str_eq(const char *a, const char *b)
{
  if (!a || !b)
    return a == b;
  return strcmp(a, b) == 0;
}

/* The namespace a schema object stands for. Introspection may fill either
 * field (or both) for a schema, so accept either. */
static const char *schema_obj_name(const pgg_object *o)
{
  return o->name ? o->name : o->schema;
}

static bool has_schema(const pgg_catalog *c, const char *nsp)
{
  return pgg_catalog_find(c, PGG_OBJ_SCHEMA, nsp, NULL, nsp) ||
         pgg_catalog_find(c, PGG_OBJ_SCHEMA, NULL, NULL, nsp);
}

/* Kinds with a statement of their own even when their schema is missing. */
static bool top_level(pgg_obj_kind k)
{
  switch (k) {
  case PGG_OBJ_TABLE:
  case PGG_OBJ_ENUM:
  case PGG_OBJ_SEQUENCE:
  case PGG_OBJ_DOMAIN:
  case PGG_OBJ_COMPOSITE:
  case PGG_OBJ_FUNCTION:
  case PGG_OBJ_VIEW:
    return true;
  default:
    return !pgg_obj_kind_modeled(k);
  }
}

/* True when the container is in desired but not live, so that creating the
 * container creates this object too. */
static bool container_missing(const pgg_catalog *desired, const pgg_catalog *live,
                              const pgg_object *o)
{
  if (o->kind == PGG_OBJ_SCHEMA)
    return false;
  /* A table, enum or sequence in a missing schema has a statement of its
   * own in the plan, so it is reported (and counted) on its own: check and
   * plan name the same objects. Their children go with them. */
  if (o->schema && !top_level(o->kind) && has_schema(desired, o->schema) &&
      !has_schema(live, o->schema))
    return true;
  pgg_obj_kind ck;
  switch (o->kind) {
  case PGG_OBJ_COLUMN:
    ck = PGG_OBJ_TABLE;
    break;
  case PGG_OBJ_CONSTRAINT:
  case PGG_OBJ_INDEX:
  case PGG_OBJ_TRIGGER:
    /* An index or a trigger may sit on a materialized view or a view. */
    ck = pgg_catalog_find(desired, PGG_OBJ_VIEW, o->schema, NULL, o->parent) ? PGG_OBJ_VIEW
                                                                              : PGG_OBJ_TABLE;
    break;
  case PGG_OBJ_ENUM_LABEL:
    ck = PGG_OBJ_ENUM;
    break;
  case PGG_OBJ_OWNED_BY:
    ck = PGG_OBJ_SEQUENCE;
    break;
  default:
    return false;
  }
  return pgg_catalog_find(desired, ck, o->schema, NULL, o->parent) &&
         !pgg_catalog_find(live, ck, o->schema, NULL, o->parent);
}

/* ---- why an object conflicts (live first, then desired) ----------------- */

static int why_part(pgg_buf *why, const char *what, const char *live, const char *desired)
{
  return pgg_buf_printf(why, "%s%s%s%s != %s", why->len ? "; " : "", what,
                        *what ? " " : "", live, desired);
}

static const char *or_none(const char *s)
{
  return s ? s : "none";
}

static const char *identity_name(char c)
{
  return c == 'a' ? "always" : c == 'd' ? "by default" : c ? "?" : "none";
}

static const char *generated_name(char c)
{
  return c == 's' ? "stored" : c ? "?" : "none";
}

static const char *relkind_name(char c)
{
  return c == 'r' ? "ordinary table" : c == 'p' ? "partitioned table" : "other relation";
}

static const char *contype_name(char c)
{
  switch (c) {
  case 'p': return "primary key";
  case 'u': return "unique";
  case 'c': return "check";
  case 'f': return "foreign key";
  case 'x': return "exclusion";
  }
  return "other";
}

static int column_why(pgg_buf *why, const pgg_object *l, const pgg_object *d)
{
  int err = PGG_OK;
  if (!str_eq(l->type, d->type))
    err = why_part(why, "type", or_none(l->type), or_none(d->type));
  /* The planner adds a NOT NULL column nullable to a table with rows, so
   * this is how that relaxed column keeps showing on the dashboard. */
  if (!err && l->not_null != d->not_null)
    err = pgg_buf_printf(why, "%s%s", why->len ? "; " : "",
                         d->not_null ? "nullable, desired NOT NULL"
                                     : "NOT NULL, desired nullable");
  if (!err && l->identity != d->identity)
    err = why_part(why, "identity", identity_name(l->identity), identity_name(d->identity));
  if (!err && l->generated != d->generated)
    err = why_part(why, "generated", generated_name(l->generated),
                   generated_name(d->generated));
  else if (!err && !str_eq(l->default_expr, d->default_expr))
    err = why_part(why, d->generated ? "generation expression" : "default",
                   or_none(l->default_expr), or_none(d->default_expr));
  return err;
}

static const char *persistence_name(char c)
{
  return c == 'u' ? "unlogged" : "logged";
}

static int table_why(pgg_buf *why, const pgg_object *l, const pgg_object *d)
{
  int err = PGG_OK;
  if (l->relkind != d->relkind)
    err = why_part(why, "", relkind_name(l->relkind), relkind_name(d->relkind));
  if (!err && (l->persistence == 'u') != (d->persistence == 'u'))
    err = why_part(why, "", persistence_name(l->persistence), persistence_name(d->persistence));
  if (!err && !str_eq(l->partition_of, d->partition_of))
    err = why_part(why, "partition of", or_none(l->partition_of), or_none(d->partition_of));
  else if (!err && d->partition_of && !str_eq(l->default_expr, d->default_expr))
    err = why_part(why, "partition bound", or_none(l->default_expr), or_none(d->default_expr));
  if (!err && !str_eq(l->definition, d->definition))
    err = why_part(why, "partition key", or_none(l->definition), or_none(d->definition));
  return err;
}

/* Fills why (empty when the two agree). */
static int object_why(pgg_buf *why, const pgg_object *l, const pgg_object *d)
{
  switch (d->kind) {
  case PGG_OBJ_TABLE:
    return table_why(why, l, d);
  case PGG_OBJ_COLUMN: {
    int err = column_why(why, l, d);
    if (!err && !str_eq(l->collation, d->collation))
      err = why_part(why, "collation", l->collation ? l->collation + 1 : "default",
                     d->collation ? d->collation + 1 : "default");
    return err;
  }
  case PGG_OBJ_CONSTRAINT: {
    int err = PGG_OK;
    if (l->contype != d->contype)
      err = why_part(why, "constraint type", contype_name(l->contype),
                     contype_name(d->contype));
    if (!err && !str_eq(l->definition, d->definition))
      err = why_part(why, "definition", or_none(l->definition), or_none(d->definition));
    return err;
  }
  case PGG_OBJ_EXTENSION: {
    int err = PGG_OK;
    if (!str_eq(l->type, d->type))
      err = why_part(why, "schema", or_none(l->type), or_none(d->type));
    if (!err && !str_eq(l->definition, d->definition))
      err = why_part(why, "version", or_none(l->definition), or_none(d->definition));
    return err;
  }
  case PGG_OBJ_SEQUENCE: {
    int err = PGG_OK;
    if ((l->persistence == 'u') != (d->persistence == 'u'))
      err = why_part(why, "", persistence_name(l->persistence), persistence_name(d->persistence));
    if (!err && !str_eq(l->definition, d->definition))
      err = why_part(why, "definition", or_none(l->definition), or_none(d->definition));
    return err;
  }
  case PGG_OBJ_VIEW: {
    int err = PGG_OK;
    if (l->relkind != d->relkind)
      err = why_part(why, "", l->relkind == 'm' ? "materialized view" : "view",
                     d->relkind == 'm' ? "materialized view" : "view");
    if (!err && !str_eq(l->type, d->type))
      err = why_part(why, "options", or_none(l->type), or_none(d->type));
    if (!err && !str_eq(l->definition, d->definition))
      err = why_part(why, "definition", or_none(l->definition), or_none(d->definition));
    return err;
  }
  default:
    /* Schemas and enums have nothing beyond their name (no definition);
     * enum labels differing only in position are not drift anyone can act
     * on additively. Every other kind is its definition. */
    if (!str_eq(l->definition, d->definition))
      return why_part(why, "definition", or_none(l->definition), or_none(d->definition));
    return PGG_OK;
  }
}

/* Finishes a buffer as a heap C string (the buffer gives up its memory). */
static char *buf_steal(pgg_buf *b)
{
  if (pgg_buf_append_u8(b, 0)) {
    pgg_buf_free(b);
    return NULL;
  }
  char *s = (char *)b->data;
  pgg_buf_init(b);
  return s;
}

int pgg_diff(const pgg_catalog *desired, const pgg_catalog *live, pgg_drift *out)
{
  int err = PGG_OK;
  /* Grouped by state, each group in canonical order: the report reads as
   * "what is missing", then "what is extra", then "what differs". */
  for (size_t i = 0; !err && i < desired->n; i++) {
    const pgg_object *o = &desired->objs[i];
    if (pgg_catalog_find(live, o->kind, o->schema, o->parent, o->name))
      continue;
    /* What pgguard cannot create is named, never silently left out. */
    if (!pgg_obj_kind_modeled(o->kind))
      err = push_item(out, PGG_DRIFT_UNSUPPORTED, o, NULL, false, NULL);
    else
      err = push_item(out, PGG_DRIFT_MISSING, o, NULL, container_missing(desired, live, o),
                      NULL);
  }
  for (size_t i = 0; !err && i < live->n; i++) {
    const pgg_object *o = &live->objs[i];
    /* An extension the application does not name is the platform's
     * (pg_stat_statements, a managed service's own): not the schema's drift. */
    if (o->kind == PGG_OBJ_EXTENSION)
      continue;
    if (!pgg_catalog_find(desired, o->kind, o->schema, o->parent, o->name))
      err = push_item(out, PGG_DRIFT_EXTRA, NULL, o, false, NULL);
  }
  pgg_buf why;
  pgg_buf_init(&why);
  for (size_t i = 0; !err && i < desired->n; i++) {
    const pgg_object *o = &desired->objs[i];
    const pgg_object *l = pgg_catalog_find(live, o->kind, o->schema, o->parent, o->name);
    if (!l)
      continue;
    pgg_buf_reset(&why);
    err = object_why(&why, l, o);
    if (err || why.len == 0)
      continue;
    char *s = buf_steal(&why);
    err = s ? push_item(out, PGG_DRIFT_CONFLICTING, o, l, false, s) : PGG_ERR_NOMEM;
  }
  pgg_buf_free(&why);
  return err;
}

unsigned pgg_drift_missing(const pgg_drift *d)
{
  unsigned n = 0;
  for (int k = 0; k < PGG_OBJ__COUNT; k++)
    n += d->counts[k][PGG_DRIFT_MISSING];
  return n;
}

unsigned pgg_drift_missing_labels(const pgg_drift *d)
{
  return d->counts[PGG_OBJ_ENUM_LABEL][PGG_DRIFT_MISSING];
}

unsigned pgg_drift_state_count(const pgg_drift *d, pgg_drift_state s)
{
  unsigned n = 0;
  for (int k = 0; k < PGG_OBJ__COUNT; k++)
    n += d->counts[k][s];
  return n;
}

static const pgg_object *item_obj(const pgg_drift_item *it)
{
  return it->desired ? it->desired : it->live;
}

/* ---- text report -------------------------------------------------------- */

/* A name as a person would type it: bare when it is a plain lower-case
 * identifier, double-quoted otherwise; control bytes shown as \xNN so a
 * hostile name cannot rewrite the operator's terminal. */
int pgg_text_name(pgg_buf *b, const char *s)
{
  if (!s)
    s = "";
  bool bare = *s && !(*s >= '0' && *s <= '9');
  for (const char *p = s; bare && *p; p++)
    bare = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
  int err = bare ? PGG_OK : pgg_buf_append_u8(b, '"');
  for (const unsigned char *p = (const unsigned char *)s; !err && *p; p++) {
    if (*p < 0x20 || *p == 0x7f)
      err = pgg_buf_printf(b, "\\x%02x", *p);
    else if (*p == '"')
      err = pgg_buf_append(b, "\"\"", 2);
    else
      err = pgg_buf_append_u8(b, *p);
  }
  if (!err && !bare)
    err = pgg_buf_append_u8(b, '"');
  return err;
}

/* A description PostgreSQL wrote ("table public.t"): as it is, control
 * bytes shown as \xNN. */
static int text_plain(pgg_buf *b, const char *s)
{
  int err = PGG_OK;
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); !err && *p; p++)
    err = (*p < 0x20 || *p == 0x7f) ? pgg_buf_printf(b, "\\x%02x", *p) : pgg_buf_append_u8(b, *p);
  return err;
}

static int text_qualified(pgg_buf *b, const pgg_object *o)
{
  if (o->kind == PGG_OBJ_SCHEMA)
    return pgg_text_name(b, schema_obj_name(o));
  if (o->kind == PGG_OBJ_COMMENT || o->kind == PGG_OBJ_GRANT || o->kind == PGG_OBJ_OTHER) {
    int err = o->parent ? text_plain(b, o->parent) : PGG_OK;
    if (!err && o->parent && o->name)
      err = pgg_buf_printf(b, ": ");
    return err ? err : text_plain(b, o->name);
  }
  if (!o->schema)
    return pgg_text_name(b, o->name);
  int err = pgg_text_name(b, o->schema);
  if (!err && o->parent) {
    err = pgg_buf_append_u8(b, '.');
    if (!err)
      err = pgg_text_name(b, o->parent);
  }
  if (!err)
    err = pgg_buf_append_u8(b, '.');
  if (!err)
    err = pgg_text_name(b, o->name);
  return err;
}

static const char *kind_plural(pgg_obj_kind k, unsigned n)
{
  static const char *const one[PGG_OBJ__COUNT] = {
      "schema", "enum", "enum label", "sequence", "table", "column", "constraint", "index",
      "extension", "domain", "composite type", "function", "view", "trigger",
      "sequence OWNED BY", "policy", "rule", "event trigger", "publication", "statistics",
      "comment", "grant", "other object"};
  static const char *const many[PGG_OBJ__COUNT] = {
      "schemas", "enums", "enum labels", "sequences", "tables", "columns", "constraints",
      "indexes", "extensions", "domains", "composite types", "functions", "views", "triggers",
      "sequence OWNED BYs", "policies", "rules", "event triggers", "publications", "statistics",
      "comments", "grants", "other objects"};
  return n == 1 ? one[k] : many[k];
}

int pgg_drift_format_text(const pgg_drift *d, pgg_buf *out)
{
  int err = PGG_OK;
  pgg_buf name;
  pgg_buf_init(&name);
  bool header = false;
  for (size_t i = 0; !err && i < d->n; i++) {
    const pgg_drift_item *it = &d->items[i];
    if (it->implied)
      continue;
    if (!header) {
      err = pgg_buf_printf(out, "%-12s %-11s %-40s %s\n", "STATE", "KIND", "OBJECT",
                           "WHY (live != desired)");
      header = true;
    }
    const pgg_object *o = item_obj(it);
    pgg_buf_reset(&name);
    if (!err)
      err = text_qualified(&name, o);
    /* Padded only when a reason follows: no trailing blanks. */
    if (!err)
      err = pgg_buf_printf(out, "%-12s %-11s %-*.*s%s%s\n", pgg_drift_state_name(it->state),
                           pgg_obj_kind_name(o->kind), it->why ? 40 : 0, (int)name.len,
                           (const char *)name.data, it->why ? " " : "", it->why ? it->why : "");
  }
  pgg_buf_free(&name);
  /* "missing: 12 tables, 1 column; extra: 0; conflicting: 1 column[; unsupported: 1 policy]" */
  for (int s = 0; !err && s < PGG_DRIFT__COUNT; s++) {
    /* Unsupported objects are named only when there are some: the summary
     * line scripts already read stays as it was. */
    if (s >= PGG_DRIFT_UNSUPPORTED && pgg_drift_state_count(d, s) == 0)
      continue;
    err = pgg_buf_printf(out, "%s%s:", s ? "; " : "", pgg_drift_state_name(s));
    if (!err && pgg_drift_state_count(d, s) == 0)
      err = pgg_buf_printf(out, " 0");
    bool first = true;
    for (int k = 0; !err && k < PGG_OBJ__COUNT; k++) {
      unsigned n = d->counts[k][s];
      if (!n)
        continue;
      err = pgg_buf_printf(out, "%s %u %s", first ? "" : ",", n, kind_plural(k, n));
      first = false;
    }
  }
  if (!err)
    err = pgg_buf_append_u8(out, '\n');
  return err;
}

/* ---- JSON report -------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
  unsigned char c = p[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0)
      lo = 0xa0;
    if (c == 0xed)
      hi = 0x9f;  /* no UTF-16 surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0)
      lo = 0x90;
    if (c == 0xf4)
      hi = 0x8f;
  } else
    return 0;
  if (n < len || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (p[i] < 0x80 || p[i] > 0xbf)
      return 0;
  return len;
}

/* A JSON string (or null). Names from a SQL_ASCII database may hold bytes
 * that are not UTF-8: each becomes U+FFFD so the report stays valid JSON. */
int pgg_json_str(pgg_buf *b, const char *s)
{
  if (!s)
    return pgg_buf_append(b, "null", 4);
  int err = pgg_buf_append_u8(b, '"');
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  while (!err && n) {
    unsigned char c = *p;
    size_t step = 1;
    switch (c) {
    case '"': err = pgg_buf_append(b, "\\\"", 2); break;
    case '\\': err = pgg_buf_append(b, "\\\\", 2); break;
    case '\n': err = pgg_buf_append(b, "\\n", 2); break;
    case '\r': err = pgg_buf_append(b, "\\r", 2); break;
    case '\t': err = pgg_buf_append(b, "\\t", 2); break;
    case '\b': err = pgg_buf_append(b, "\\b", 2); break;
    case '\f': err = pgg_buf_append(b, "\\f", 2); break;
    default:
      if (c < 0x20) {
        err = pgg_buf_printf(b, "\\u%04x", c);
      } else if (c < 0x80) {
        err = pgg_buf_append_u8(b, c);
      } else if ((step = utf8_len(p, n)) != 0) {
        err = pgg_buf_append(b, p, step);
      } else {
        step = 1;
        err = pgg_buf_append(b, "\\ufffd", 6);
      }
    }
    p += step;
    n -= step;
  }
  if (!err)
    err = pgg_buf_append_u8(b, '"');
  return err;
}

int pgg_drift_format_json(const pgg_drift *d, pgg_buf *out)
{
  int err = pgg_buf_append_u8(out, '{');
  for (int s = 0; !err && s < PGG_DRIFT__COUNT; s++)
    err = pgg_buf_printf(out, "\"%s\": %u, ", pgg_drift_state_name((pgg_drift_state)s),
                         pgg_drift_state_count(d, (pgg_drift_state)s));
  if (!err)
    err = pgg_buf_printf(out, "\"counts\": {");
  for (int k = 0; !err && k < PGG_OBJ__COUNT; k++) {
    err = pgg_buf_printf(out, "%s\"%s\": {", k ? ", " : "", pgg_obj_kind_name(k));
    for (int s = 0; !err && s < PGG_DRIFT__COUNT; s++)
      err = pgg_buf_printf(out, "%s\"%s\": %u", s ? ", " : "",
                           pgg_drift_state_name((pgg_drift_state)s), d->counts[k][s]);
    if (!err)
      err = pgg_buf_append_u8(out, '}');
  }
  if (!err)
    err = pgg_buf_printf(out, "}, \"items\": [");
  bool first = true;
  for (size_t i = 0; !err && i < d->n; i++) {
    const pgg_drift_item *it = &d->items[i];
    if (it->implied)
      continue;
    if (!first)
      err = pgg_buf_append(out, ", ", 2);
    first = false;
    if (!err)
      err = pgg_drift_item_json(out, it);
  }
  if (!err)
    err = pgg_buf_printf(out, "]}");
  return err;
}

int pgg_drift_item_json(pgg_buf *out, const pgg_drift_item *it)
{
  const pgg_object *o = item_obj(it);
  int err = pgg_buf_printf(out, "{\"state\": \"%s\", \"kind\": \"%s\", \"schema\": ",
                           pgg_drift_state_name(it->state), pgg_obj_kind_name(o->kind));
  if (!err)
    err = pgg_json_str(out, o->schema);
  if (!err)
    err = pgg_buf_printf(out, ", \"parent\": ");
  if (!err)
    err = pgg_json_str(out, o->parent);
  if (!err)
    err = pgg_buf_printf(out, ", \"name\": ");
  if (!err)
    err = pgg_json_str(out, o->name);
  if (!err)
    err = pgg_buf_printf(out, ", \"why\": ");
  if (!err)
    err = pgg_json_str(out, it->why);
  if (!err)
    err = pgg_buf_append_u8(out, '}');
  return err;
}
