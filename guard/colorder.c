/*
 * colorder.c — the column order a table has (or will have after an
 * additive repair) against the order the desired schema gives it.
 */
#include "colorder.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *name;
  int position;    /* desired attnum; live attnum, or INT_MAX-ish when appended */
} col;

static int by_position(const void *a, const void *b)
{
  const col *x = a, *y = b;
  return (x->position > y->position) - (x->position < y->position);
}

/* The desired columns of schema.table, in desired order; *n of them. */
static col *columns(const pgg_catalog *c, const char *schema, const char *table, size_t *n)
{
  *n = 0;
  col *v = NULL;
  for (size_t i = 0; i < c->n; i++) {
    const pgg_object *o = &c->objs[i];
    if (o->kind != PGG_OBJ_COLUMN || strcmp(o->schema, schema) || strcmp(o->parent, table))
      continue;
    col *grown = realloc(v, (*n + 1) * sizeof *v);
    if (!grown) {
      free(v);
      *n = 0;
      return NULL;
    }
    v = grown;
    v[(*n)++] = (col){o->name, o->position};
  }
  if (v)
    qsort(v, *n, sizeof *v, by_position);
  return v;
}

static int list(pgg_buf *out, const col *v, size_t n)
{
  int rc = PGG_OK;
  for (size_t i = 0; !rc && i < n; i++)
    rc = pgg_buf_printf(out, "%s%s", i ? ", " : "", v[i].name);
  return rc;
}

int pgg_column_order(const pgg_catalog *desired, const pgg_catalog *live, pgg_buf *out,
                     unsigned *tables)
{
  *tables = 0;
  int rc = PGG_OK;
  for (size_t i = 0; !rc && i < desired->n; i++) {
    const pgg_object *t = &desired->objs[i];
    if (t->kind != PGG_OBJ_TABLE ||
        !pgg_catalog_find(live, PGG_OBJ_TABLE, t->schema, NULL, t->name))
      continue;
    size_t nd;
    col *want = columns(desired, t->schema, t->name, &nd);
    if (!want)
      continue;
    /* The desired columns in the order the live table has them; a missing
     * one goes last, in desired order, as ADD COLUMN appends it. */
    col *have = malloc(nd * sizeof *have);
    if (!have) {
      free(want);
      return PGG_ERR_NOMEM;
    }
    for (size_t k = 0; k < nd; k++) {
      const pgg_object *lc = pgg_catalog_find(live, PGG_OBJ_COLUMN, t->schema, t->name,
                                              want[k].name);
      have[k] = (col){want[k].name, lc ? lc->position : 1000000 + want[k].position};
    }
    qsort(have, nd, sizeof *have, by_position);
    bool same = true;
    for (size_t k = 0; same && k < nd; k++)
      same = strcmp(have[k].name, want[k].name) == 0;
    if (!same) {
      (*tables)++;
      rc = pgg_buf_printf(out, "  %s.%s: desired (", t->schema, t->name);
      rc = rc ? rc : list(out, want, nd);
      rc = rc ? rc : pgg_buf_printf(out, "), live after repair (");
      rc = rc ? rc : list(out, have, nd);
      rc = rc ? rc : pgg_buf_printf(out, ")\n");
    }
    free(want);
    free(have);
  }
  return rc;
}
