/*
 * exclude.c — the patterns of objects the guard leaves out of every
 * catalog it reads, desired and live alike, so they are neither missing
 * nor extra.
 */
#include "exclude.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *schema;   /* NULL: any schema */
  char *name;
} pattern;

static struct {
  pattern *v;
  size_t n;
  bool set;
} ex;

static void clear(void)
{
  for (size_t i = 0; i < ex.n; i++) {
    free(ex.v[i].schema);
    free(ex.v[i].name);
  }
  free(ex.v);
  memset(&ex, 0, sizeof ex);
}

/* Parse one comma-separated list onto ex (store) or only check it; PGG_OK
 * or an error in err. */
static int add_list(const char *list, bool store, pgg_buf *err)
{
  char *copy = strdup(list);
  if (!copy)
    return PGG_ERR_NOMEM;
  int rc = PGG_OK;
  char *rest = copy, *p;
  while (!rc && (p = strsep(&rest, ",")) != NULL) {
    while (*p == ' ' || *p == '\t')
      p++;
    size_t len = strlen(p);
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
      p[--len] = 0;
    char *dot = strchr(p, '.');
    if (!len || (dot && (dot == p || !dot[1] || strchr(dot + 1, '.')))) {
      pgg_buf_printf(err, "--exclude: \"%s\" is not NAME or SCHEMA.NAME", p);
      rc = PGG_ERR_CONFIG;
      break;
    }
    if (!store)
      continue;
    pattern *grown = realloc(ex.v, (ex.n + 1) * sizeof *ex.v);
    if (!grown) {
      rc = PGG_ERR_NOMEM;
      break;
    }
    ex.v = grown;
    pattern *pt = &ex.v[ex.n];
    pt->schema = dot ? strndup(p, (size_t)(dot - p)) : NULL;
    pt->name = strdup(dot ? dot + 1 : p);
    if ((dot && !pt->schema) || !pt->name) {
      free(pt->schema);
      free(pt->name);
      rc = PGG_ERR_NOMEM;
      break;
    }
    ex.n++;
  }
  free(copy);
  return rc;
}

int pgg_exclude_set(const char *extra, pgg_buf *err)
{
  clear();
  int rc = add_list(PGG_EXCLUDE_DEFAULT, true, err);
  if (!rc && extra && *extra)
    rc = add_list(extra, true, err);
  if (rc == PGG_ERR_NOMEM)
    pgg_buf_printf(err, "--exclude: out of memory");
  ex.set = true;
  return rc;
}

int pgg_exclude_check(const char *patterns, pgg_buf *err)
{
  return add_list(patterns, false, err);
}

static bool match(const pattern *pt, const char *schema, const char *name)
{
  if (pt->schema && (!schema || fnmatch(pt->schema, schema, 0) != 0))
    return false;
  return name && fnmatch(pt->name, name, 0) == 0;
}

bool pgg_excluded(const char *schema, const char *name)
{
  if (!ex.set)
    pgg_exclude_set(NULL, &(pgg_buf){0});
  for (size_t i = 0; i < ex.n; i++)
    if (match(&ex.v[i], schema, name))
      return true;
  return false;
}

/* "SCHEMA.*" patterns take the whole schema. */
static bool schema_excluded(const char *schema)
{
  for (size_t i = 0; i < ex.n; i++)
    if (ex.v[i].schema && strcmp(ex.v[i].name, "*") == 0 && schema &&
        fnmatch(ex.v[i].schema, schema, 0) == 0)
      return true;
  return false;
}

/* A serial column's sequence, TABLE_COLUMN_seq, of an excluded table. */
static bool serial_of_excluded(const pgg_catalog *c, const pgg_object *seq)
{
  size_t len = strlen(seq->name);
  if (len < 5 || strcmp(seq->name + len - 4, "_seq") != 0)
    return false;
  for (size_t i = 0; i < c->n; i++) {
    const pgg_object *t = &c->objs[i];
    if (t->kind != PGG_OBJ_TABLE || !t->schema || !seq->schema || strcmp(t->schema, seq->schema))
      continue;
    size_t tl = strlen(t->name);
    if (tl + 5 < len && strncmp(seq->name, t->name, tl) == 0 && seq->name[tl] == '_' &&
        pgg_excluded(t->schema, t->name))
      return true;
  }
  return false;
}

static bool drop(const pgg_catalog *c, const pgg_object *o)
{
  if (o->kind == PGG_OBJ_SCHEMA)
    return schema_excluded(o->name);
  if (schema_excluded(o->schema))
    return true;
  if (o->parent && pgg_excluded(o->schema, o->parent))
    return true;
  if (o->kind == PGG_OBJ_TABLE || o->kind == PGG_OBJ_SEQUENCE)
    return pgg_excluded(o->schema, o->name) ||
           (o->kind == PGG_OBJ_SEQUENCE && serial_of_excluded(c, o));
  return false;
}

void pgg_catalog_exclude(pgg_catalog *c)
{
  if (!ex.set)
    pgg_exclude_set(NULL, &(pgg_buf){0});
  bool *gone = calloc(c->n ? c->n : 1, sizeof *gone);
  if (!gone)
    return;
  for (size_t i = 0; i < c->n; i++)
    gone[i] = drop(c, &c->objs[i]);
  pgg_catalog_remove(c, gone);
  free(gone);
}
