/*
 * catalog.c — the catalog container: owning copies of objects, a canonical
 * sort order and lookup by identity (kind, schema, parent, name).
 */
#include "catalog.h"

#include <stdlib.h>
#include <string.h>

const char *pgg_obj_kind_name(pgg_obj_kind k)
{
  switch (k) {
  case PGG_OBJ_SCHEMA: return "schema";
  case PGG_OBJ_ENUM: return "enum";
  case PGG_OBJ_ENUM_LABEL: return "enum_label";
  case PGG_OBJ_SEQUENCE: return "sequence";
  case PGG_OBJ_TABLE: return "table";
  case PGG_OBJ_COLUMN: return "column";
  case PGG_OBJ_CONSTRAINT: return "constraint";
  case PGG_OBJ_INDEX: return "index";
  case PGG_OBJ_EXTENSION: return "extension";
  case PGG_OBJ_DOMAIN: return "domain";
  case PGG_OBJ_COMPOSITE: return "composite_type";
  case PGG_OBJ_FUNCTION: return "function";
  case PGG_OBJ_VIEW: return "view";
  case PGG_OBJ_TRIGGER: return "trigger";
  case PGG_OBJ_OWNED_BY: return "sequence_owned_by";
  case PGG_OBJ_POLICY: return "policy";
  case PGG_OBJ_RULE: return "rule";
  case PGG_OBJ_EVENT_TRIGGER: return "event_trigger";
  case PGG_OBJ_PUBLICATION: return "publication";
  case PGG_OBJ_STATISTICS: return "statistics";
  case PGG_OBJ_COMMENT: return "comment";
  case PGG_OBJ_GRANT: return "grant";
  case PGG_OBJ_OTHER: return "other";
  case PGG_OBJ__COUNT: break;
  }
  return "unknown";
}

bool pgg_obj_kind_modeled(pgg_obj_kind k)
{
  return k < PGG_OBJ_POLICY;
}

void pgg_catalog_init(pgg_catalog *c)
{
  c->objs = NULL;
  c->n = 0;
  c->cap = 0;
  c->routines = NULL;
  c->nroutines = 0;
  c->routines_cap = 0;
}

static void obj_free_strings(pgg_object *o)
{
  free(o->schema);
  free(o->parent);
  free(o->name);
  free(o->type);
  free(o->default_expr);
  free(o->definition);
  free(o->partition_of);
  free(o->collation);
}

void pgg_catalog_free(pgg_catalog *c)
{
  for (size_t i = 0; i < c->n; i++)
    obj_free_strings(&c->objs[i]);
  free(c->objs);
  for (size_t i = 0; i < c->nroutines; i++) {
    free(c->routines[i].schema);
    free(c->routines[i].name);
  }
  free(c->routines);
  pgg_catalog_init(c);
}

/* strdup that keeps NULL as NULL; *failed is set when a real copy failed. */
static char *dup_or_null(const char *s, bool *failed)
{
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *failed = true;
  return d;
}

int pgg_catalog_add(pgg_catalog *c, const pgg_object *o)
{
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    if (cap > SIZE_MAX / sizeof *c->objs)
      return PGG_ERR_NOMEM;
    pgg_object *p = realloc(c->objs, cap * sizeof *p);
    if (!p)
      return PGG_ERR_NOMEM;
    c->objs = p;
    c->cap = cap;
  }
  pgg_object copy = *o;
  bool failed = false;
  copy.schema = dup_or_null(o->schema, &failed);
  copy.parent = dup_or_null(o->parent, &failed);
  copy.name = dup_or_null(o->name, &failed);
  copy.type = dup_or_null(o->type, &failed);
  copy.default_expr = dup_or_null(o->default_expr, &failed);
  copy.definition = dup_or_null(o->definition, &failed);
  copy.partition_of = dup_or_null(o->partition_of, &failed);
  copy.collation = dup_or_null(o->collation, &failed);
  if (failed) {
    obj_free_strings(&copy);
    return PGG_ERR_NOMEM;
  }
  c->objs[c->n++] = copy;
  return PGG_OK;
}

/* NULL sorts before every string, so a top-level object (parent NULL) comes
 * first among objects of its kind and schema with the same name. */
static int cmp_str(const char *a, const char *b)
{
  if (!a || !b)
    return (a != NULL) - (b != NULL);
  return strcmp(a, b);
}

static int cmp_identity(pgg_obj_kind ka, const char *sa, const char *pa,
                        const char *na, const pgg_object *b)
{
  if (ka != b->kind)
    return ka < b->kind ? -1 : 1;
  int r = cmp_str(sa, b->schema);
  if (r)
    return r;
  r = cmp_str(pa, b->parent);
  if (r)
    return r;
  return cmp_str(na, b->name);
}

static int cmp_obj(const void *pa, const void *pb)
{
  const pgg_object *a = pa;
  return cmp_identity(a->kind, a->schema, a->parent, a->name, pb);
}

void pgg_catalog_sort(pgg_catalog *c)
{
  if (c->n > 1)
    qsort(c->objs, c->n, sizeof *c->objs, cmp_obj);
}

const pgg_object *pgg_catalog_find(const pgg_catalog *c, pgg_obj_kind kind,
                                   const char *schema, const char *parent,
                                   const char *name)
{
  size_t lo = 0, hi = c->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int r = cmp_identity(kind, schema, parent, name, &c->objs[mid]);
    if (r == 0)
      return &c->objs[mid];
    if (r < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

int pgg_catalog_add_routine(pgg_catalog *c, const char *schema, const char *name)
{
  if (c->nroutines == c->routines_cap) {
    size_t cap = c->routines_cap ? c->routines_cap * 2 : 16;
    if (cap > SIZE_MAX / sizeof *c->routines)
      return PGG_ERR_NOMEM;
    pgg_routine *p = realloc(c->routines, cap * sizeof *p);
    if (!p)
      return PGG_ERR_NOMEM;
    c->routines = p;
    c->routines_cap = cap;
  }
  char *s = strdup(schema), *n = strdup(name);
  if (!s || !n) {
    free(s);
    free(n);
    return PGG_ERR_NOMEM;
  }
  c->routines[c->nroutines++] = (pgg_routine){.schema = s, .name = n};
  return PGG_OK;
}

/* A linear scan: it runs only when a 42883 reaches the guard, and the list
 * holds one entry per routine name, not per overload. */
bool pgg_catalog_has_routine(const pgg_catalog *c, const char *schema, const char *name)
{
  for (size_t i = 0; i < c->nroutines; i++) {
    const pgg_routine *r = &c->routines[i];
    if (strcmp(r->name, name) == 0 && (!schema || strcmp(r->schema, schema) == 0))
      return true;
  }
  return false;
}

void pgg_catalog_remove(pgg_catalog *c, const bool *gone)
{
  size_t kept = 0;
  for (size_t i = 0; i < c->n; i++) {
    if (gone[i]) {
      obj_free_strings(&c->objs[i]);
      continue;
    }
    if (kept != i)
      c->objs[kept] = c->objs[i];
    kept++;
  }
  c->n = kept;
}
