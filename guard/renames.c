/*
 * renames.c — suspected renames in a drift. A backup older than a RENAME
 * migration shows the renamed column or table as one missing and one extra
 * object alike in all but their names. Creating the missing one would give
 * the application an empty twin beside its data and split its writes
 * between the two, so the pair becomes one suspected_rename item that the
 * planner does not create, and what the plan would build on the new name is
 * held back with it.
 */
#include "catalog.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool str_eq(const char *a, const char *b)
{
  if (!a || !b)
    return a == b;
  return strcmp(a, b) == 0;
}

/* Everything pgg_diff compares for a column, except its name. */
static bool same_column(const pgg_object *a, const pgg_object *b)
{
  return str_eq(a->type, b->type) && a->not_null == b->not_null &&
         a->identity == b->identity && a->generated == b->generated &&
         str_eq(a->default_expr, b->default_expr) && str_eq(a->collation, b->collation);
}

/* Everything pgg_diff compares for a table, except its name and columns. */
static bool same_table(const pgg_object *a, const pgg_object *b)
{
  return a->relkind == b->relkind && (a->persistence == 'u') == (b->persistence == 'u') &&
         str_eq(a->partition_of, b->partition_of) && str_eq(a->default_expr, b->default_expr) &&
         str_eq(a->definition, b->definition);
}

/* Kinds whose parent is a table (or a view). */
static bool on_relation(pgg_obj_kind k)
{
  return k == PGG_OBJ_COLUMN || k == PGG_OBJ_CONSTRAINT || k == PGG_OBJ_INDEX ||
         k == PGG_OBJ_TRIGGER || k == PGG_OBJ_POLICY || k == PGG_OBJ_RULE;
}

static const pgg_object *item_obj(const pgg_drift_item *it)
{
  return it->desired ? it->desired : it->live;
}

/* Every state change goes through here, so the counts (implied items
 * excluded) stay what the items say. */
static void set_state(pgg_drift *d, pgg_drift_item *it, pgg_drift_state s, bool implied)
{
  const pgg_object *o = item_obj(it);
  if (!it->implied) {
    assert(d->counts[o->kind][it->state] > 0);
    d->counts[o->kind][it->state]--;
  }
  it->state = s;
  it->implied = implied;
  if (!implied)
    d->counts[o->kind][s]++;
}

/* ---- reading definitions ------------------------------------------------- */

/*
 * One token of a definition PostgreSQL printed (pg_get_indexdef,
 * pg_get_constraintdef, pg_get_viewdef, pg_get_triggerdef): an identifier,
 * bare or quoted (quotes stripped, "" still doubled), or any other single
 * byte. String literals are skipped whole, so a default of 'full_name' does
 * not name the column full_name.
 */
typedef struct {
  const char *s;
  size_t len;
  bool ident, quoted;
} token;

static bool ident_start(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool ident_char(unsigned char c)
{
  return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

/* The end of a quoted run opened just before p ('"' or '\''), doubled quotes
 * kept inside. */
static const char *quoted_end(const char *p, char q)
{
  while (*p && !(*p == q && p[1] != q))
    p += *p == q ? 2 : 1;
  return p;
}

static bool next_token(const char **pp, token *t)
{
  const char *p = *pp;
  for (;;) {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
      p++;
    if (*p != '\'')
      break;
    p = quoted_end(p + 1, '\'');
    if (*p)
      p++;
  }
  if (!*p)
    return false;
  if (*p == '"') {
    const char *end = quoted_end(p + 1, '"');
    *t = (token){p + 1, (size_t)(end - p - 1), true, true};
    p = *end ? end + 1 : end;
  } else if (ident_start((unsigned char)*p) || (*p >= '0' && *p <= '9')) {
    /* A number runs into its exponent (1e5): one token, never a name. */
    bool ident = ident_start((unsigned char)*p);
    const char *start = p;
    while (ident_char((unsigned char)*p))
      p++;
    *t = (token){start, (size_t)(p - start), ident, false};
  } else {
    *t = (token){p, 1, false, false};
    p++;
  }
  *pp = p;
  return true;
}

/* Whether the token is the identifier name (bytes, case-sensitive: a bare
 * identifier is printed only when it is already the folded name). */
static bool tok_is(const token *t, const char *name)
{
  if (!t->ident)
    return false;
  const char *n = name;
  for (size_t i = 0; i < t->len; i++, n++) {
    if (*n != t->s[i])
      return false;
    if (t->quoted && t->s[i] == '"')
      i++;  /* "" inside quotes is one " of the name */
  }
  return *n == 0;
}

static bool tok_punct(const token *t, char c)
{
  return !t->ident && t->len == 1 && t->s[0] == c;
}

/* Whether def, up to stop (NULL: its end), names the identifier name. */
static bool names_ident(const char *def, const char *stop, const char *name)
{
  token t;
  const char *p = def ? def : "";
  while ((!stop || p < stop) && next_token(&p, &t))
    if ((!stop || t.s < stop) && tok_is(&t, name))
      return true;
  return false;
}

/* Whether def names schema.name (as every name is printed with
 * search_path = ''). */
bool pgg_def_names_qualified(const char *def, const char *schema, const char *name)
{
  token a = {0}, b = {0}, t;
  const char *p = def ? def : "";
  while (next_token(&p, &t)) {
    if (tok_is(&t, name) && tok_punct(&b, '.') && tok_is(&a, schema))
      return true;
    a = b;
    b = t;
  }
  return false;
}

/* Where a foreign key's REFERENCES starts, or NULL. */
static const char *references_at(const char *def)
{
  token t;
  const char *p = def ? def : "";
  while (next_token(&p, &t))
    if (!t.quoted && tok_is(&t, "REFERENCES"))
      return t.s;
  return NULL;
}

/* Whether a foreign key points at schema.table, and (column non-NULL) at
 * that column of it. */
static bool references(const pgg_object *k, const char *schema, const char *table,
                       const char *column)
{
  const char *p = k->contype == 'f' ? references_at(k->definition) : NULL;
  if (!p)
    return false;
  token t[3];
  p += strlen("REFERENCES");
  for (int i = 0; i < 3; i++)
    if (!next_token(&p, &t[i]))
      return false;
  if (!tok_is(&t[0], schema) || !tok_punct(&t[1], '.') || !tok_is(&t[2], table))
    return false;
  if (!column)
    return true;
  token c;
  if (!next_token(&p, &c) || !tok_punct(&c, '('))
    return false;
  while (next_token(&p, &c) && !tok_punct(&c, ')'))
    if (tok_is(&c, column))
      return true;
  return false;
}

/* ---- holding back --------------------------------------------------------- */

/* The new objects held back: renamed columns and tables, and the views and
 * partitions built on them (which in turn hold back what is built on them). */
typedef struct {
  pgg_drift *d;
  const pgg_object **held;
  const char **why;         /* the rename's why, for its dependents */
  size_t n;
} holder;

static int hold(holder *h, pgg_drift_item *it, const char *why)
{
  pgg_buf b;
  pgg_buf_init(&b);
  if (pgg_buf_printf(&b, "depends on %s", why) || pgg_buf_append_u8(&b, 0)) {
    pgg_buf_free(&b);
    return PGG_ERR_NOMEM;
  }
  free(it->why);
  it->why = (char *)b.data;
  set_state(h->d, it, PGG_DRIFT_SUSPECTED_RENAME, true);
  if (it->desired->kind == PGG_OBJ_VIEW || it->desired->kind == PGG_OBJ_TABLE) {
    h->held[h->n] = it->desired;
    h->why[h->n++] = why;   /* the rename's own, however deep the chain */
  }
  return PGG_OK;
}

/* Whether missing object o would be built on the held-back column c. */
bool pgg_needs_column(const pgg_object *o, const pgg_object *c)
{
  bool on_table = str_eq(o->schema, c->schema) && str_eq(o->parent, c->parent);
  switch (o->kind) {
  case PGG_OBJ_INDEX:
  case PGG_OBJ_TRIGGER:
    return on_table && names_ident(o->definition, NULL, c->name);
  case PGG_OBJ_CONSTRAINT:
    /* A foreign key's own columns come before REFERENCES; what follows
     * names another table's. */
    return (on_table && names_ident(o->definition, references_at(o->definition), c->name)) ||
           references(o, c->schema, c->parent, c->name);
  case PGG_OBJ_VIEW:
    return pgg_def_names_qualified(o->definition, c->schema, c->parent) &&
           names_ident(o->definition, NULL, c->name);
  case PGG_OBJ_OWNED_BY:
    return str_eq(o->schema, c->schema) && str_eq(o->type, c->parent) &&
           str_eq(o->definition, c->name);
  default:
    return false;
  }
}

/* Whether missing object o would be built on the held-back table or view r. */
bool pgg_needs_relation(const pgg_object *o, const pgg_object *r)
{
  if (on_relation(o->kind) && str_eq(o->schema, r->schema) && str_eq(o->parent, r->name))
    return true;
  switch (o->kind) {
  case PGG_OBJ_TABLE:
    /* A partition of the new table: created PARTITION OF it. */
    return pgg_def_names_qualified(o->partition_of, r->schema, r->name);
  case PGG_OBJ_CONSTRAINT:
    return references(o, r->schema, r->name, NULL);
  case PGG_OBJ_VIEW:
    return pgg_def_names_qualified(o->definition, r->schema, r->name);
  case PGG_OBJ_OWNED_BY:
    return str_eq(o->schema, r->schema) && str_eq(o->type, r->name);
  default:
    return false;
  }
}

/* Hold back every missing object built on what is held, views adding to
 * the list as they are held. */
static int hold_dependents(holder *h)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < h->n; i++) {
    const pgg_object *x = h->held[i];
    const char *why = h->why[i];
    for (size_t j = 0; !err && j < h->d->n; j++) {
      pgg_drift_item *it = &h->d->items[j];
      if (it->state != PGG_DRIFT_MISSING || !it->desired)
        continue;
      bool needs = x->kind == PGG_OBJ_COLUMN ? pgg_needs_column(it->desired, x)
                                             : pgg_needs_relation(it->desired, x);
      if (needs)
        err = hold(h, it, why);
    }
  }
  return err;
}

/* ---- finding the pairs ----------------------------------------------------- */


/* "a.b" */
static int put_pair(pgg_buf *b, const char *a, const char *n)
{
  int err = pgg_text_name(b, a);
  if (!err)
    err = pgg_buf_append_u8(b, '.');
  return err ? err : pgg_text_name(b, n);
}

/* "suspected rename users.name -> users.full_name", or for a table
 * "suspected rename table public.clients -> public.customers". */
static char *rename_why(const pgg_object *old, const pgg_object *new_)
{
  bool table = new_->kind == PGG_OBJ_TABLE;
  pgg_buf b;
  pgg_buf_init(&b);
  int err = pgg_buf_printf(&b, "suspected rename %s", table ? "table " : "");
  if (!err)
    err = table ? put_pair(&b, old->schema, old->name) : put_pair(&b, old->parent, old->name);
  if (!err)
    err = pgg_buf_printf(&b, " -> ");
  if (!err)
    err = table ? put_pair(&b, new_->schema, new_->name)
                : put_pair(&b, new_->parent, new_->name);
  if (!err)
    err = pgg_buf_append_u8(&b, 0);
  if (err) {
    pgg_buf_free(&b);
    return NULL;
  }
  return (char *)b.data;
}

/* The missing item m and the extra item x become one suspected rename
 * (m's place, x marked gone). */
static int fold(holder *h, pgg_drift_item *m, pgg_drift_item *x, bool *gone)
{
  char *why = rename_why(x->live, m->desired);
  if (!why)
    return PGG_ERR_NOMEM;
  free(m->why);
  m->why = why;
  m->live = x->live;
  set_state(h->d, m, PGG_DRIFT_SUSPECTED_RENAME, false);
  /* Counted in the rename now, and dropped from the drift at the end. */
  set_state(h->d, x, PGG_DRIFT_SUSPECTED_RENAME, true);
  gone[x - h->d->items] = true;
  h->held[h->n] = m->desired;
  h->why[h->n++] = m->why;
  return PGG_OK;
}

/* Items by (schema, parent, name) of their object. */
static int cmp_obj(const pgg_object *a, const pgg_object *b)
{
  int r = strcmp(a->schema ? a->schema : "", b->schema ? b->schema : "");
  if (!r)
    r = strcmp(a->parent ? a->parent : "", b->parent ? b->parent : "");
  return r ? r : strcmp(a->name ? a->name : "", b->name ? b->name : "");
}

static int cmp_item(const void *pa, const void *pb)
{
  return cmp_obj(item_obj(*(pgg_drift_item *const *)pa), item_obj(*(pgg_drift_item *const *)pb));
}

/* The items of this kind and state (implied ones too), sorted. */
static size_t collect(pgg_drift *d, pgg_obj_kind kind, pgg_drift_state s, pgg_drift_item **out)
{
  size_t n = 0;
  for (size_t i = 0; i < d->n; i++)
    if (d->items[i].state == s && item_obj(&d->items[i])->kind == kind)
      out[n++] = &d->items[i];
  qsort(out, n, sizeof *out, cmp_item);
  return n;
}

/* One sorted list of items of a kind and state. */
typedef struct {
  pgg_drift_item **it;
  size_t n;
} list;

static const pgg_object *at(const list *l, size_t i)
{
  return item_obj(l->it[i]);
}

/* The items of l in (schema, parent): [*lo, *hi). For tables, parent NULL. */
static void range_of(const list *l, const char *schema, const char *parent, size_t *lo,
                     size_t *hi)
{
  pgg_object key = {.schema = (char *)schema, .parent = (char *)parent, .name = (char *)""};
  size_t a = 0, b = l->n;
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    if (cmp_obj(at(l, mid), &key) < 0)
      a = mid + 1;
    else
      b = mid;
  }
  *lo = a;
  while (a < l->n && str_eq(at(l, a)->schema, schema) && str_eq(at(l, a)->parent, parent))
    a++;
  *hi = a;
}

/* Same column names, each column alike (both ranges sorted by name). */
static bool same_columns(const list *mcol, const list *xcol, const pgg_object *new_,
                         const pgg_object *old)
{
  size_t ml, mh, xl, xh;
  range_of(mcol, new_->schema, new_->name, &ml, &mh);
  range_of(xcol, old->schema, old->name, &xl, &xh);
  if (mh - ml != xh - xl || mh == ml)
    return false;
  for (size_t i = 0; i < mh - ml; i++) {
    const pgg_object *a = at(mcol, ml + i), *b = at(xcol, xl + i);
    if (!str_eq(a->name, b->name) || !same_column(a, b))
      return false;
  }
  return true;
}

/* The old table's own objects go with it into the rename: they are not
 * extra on their own any more than the new table's are missing. */
static void fold_children(pgg_drift *d, const pgg_object *old)
{
  for (size_t i = 0; i < d->n; i++) {
    pgg_drift_item *it = &d->items[i];
    const pgg_object *o = item_obj(it);
    if (it->state == PGG_DRIFT_EXTRA && on_relation(o->kind) && str_eq(o->schema, old->schema) &&
        str_eq(o->parent, old->name))
      set_state(d, it, PGG_DRIFT_SUSPECTED_RENAME, true);
  }
}

/*
 * A pair is a rename when each is the other's only look-alike on its side:
 * one missing and one extra alike. Two missing and one extra, all alike,
 * are a rename and a new object or two new objects, no telling which, so
 * none is held back: an ordinary new column is never kept from the
 * application because another one shares its type.
 */
typedef bool (*alike_fn)(const list *mcol, const list *xcol, const pgg_object *m,
                         const pgg_object *x);

static bool tables_alike(const list *mcol, const list *xcol, const pgg_object *m,
                         const pgg_object *x)
{
  return same_table(m, x) && same_columns(mcol, xcol, m, x);
}

static bool columns_alike(const list *mcol, const list *xcol, const pgg_object *m,
                          const pgg_object *x)
{
  return same_column(m, x);
}

/* The only item of l[lo, hi) alike o (in the given direction), or SIZE_MAX. */
static size_t only_alike(const list *l, size_t lo, size_t hi, const pgg_object *o, bool o_missing,
                         alike_fn alike, const list *mcol, const list *xcol)
{
  size_t found = SIZE_MAX;
  for (size_t i = lo; i < hi; i++) {
    pgg_drift_state want = o_missing ? PGG_DRIFT_EXTRA : PGG_DRIFT_MISSING;
    const pgg_drift_item *it = l->it[i];
    if (it->state != want || it->implied)
      continue;
    if (o_missing ? alike(mcol, xcol, o, it->live) : alike(mcol, xcol, it->desired, o)) {
      if (found != SIZE_MAX)
        return SIZE_MAX;
      found = i;
    }
  }
  return found;
}

/* Over the groups of m (tables: per schema; columns: per table), pair and fold. */
static int pair_up(holder *h, const list *m, const list *x, alike_fn alike, const list *mcol,
                   const list *xcol, bool *gone)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < m->n; i++) {
    pgg_drift_item *mi = m->it[i];
    if (mi->state != PGG_DRIFT_MISSING || mi->implied)
      continue;
    const pgg_object *o = mi->desired;
    size_t mlo, mhi, xlo, xhi;
    range_of(m, o->schema, o->parent, &mlo, &mhi);
    range_of(x, o->schema, o->parent, &xlo, &xhi);
    size_t j = only_alike(x, xlo, xhi, o, true, alike, mcol, xcol);
    if (j == SIZE_MAX)
      continue;
    pgg_drift_item *xi = x->it[j];
    if (only_alike(m, mlo, mhi, xi->live, false, alike, mcol, xcol) != i)
      continue;
    err = fold(h, mi, xi, gone);
    if (!err && o->kind == PGG_OBJ_TABLE)
      fold_children(h->d, xi->live);
  }
  return err;
}

/* Drop the items marked gone (extras folded into a rename). */
static void compact(pgg_drift *d, const bool *gone)
{
  size_t n = 0;
  for (size_t i = 0; i < d->n; i++) {
    if (gone[i])
      free(d->items[i].why);
    else
      d->items[n++] = d->items[i];
  }
  d->n = n;
}

int pgg_drift_renames(pgg_drift *d)
{
  size_t n = d->n ? d->n : 1;
  pgg_drift_item **its[4];
  for (int i = 0; i < 4; i++)
    its[i] = malloc(n * sizeof *its[i]);
  bool *gone = calloc(n, sizeof *gone);
  holder h = {.d = d, .held = malloc(n * sizeof *h.held), .why = malloc(n * sizeof *h.why)};
  int err = its[0] && its[1] && its[2] && its[3] && gone && h.held && h.why ? PGG_OK
                                                                          : PGG_ERR_NOMEM;
  if (!err) {
    /* Collected once, before any fold: a fold changes states, never order. */
    list mcol = {its[0], collect(d, PGG_OBJ_COLUMN, PGG_DRIFT_MISSING, its[0])};
    list xcol = {its[1], collect(d, PGG_OBJ_COLUMN, PGG_DRIFT_EXTRA, its[1])};
    list mt = {its[2], collect(d, PGG_OBJ_TABLE, PGG_DRIFT_MISSING, its[2])};
    list xt = {its[3], collect(d, PGG_OBJ_TABLE, PGG_DRIFT_EXTRA, its[3])};
    err = pair_up(&h, &mt, &xt, tables_alike, &mcol, &xcol, gone);
    if (!err)
      err = pair_up(&h, &mcol, &xcol, columns_alike, &mcol, &xcol, gone);
    if (!err)
      err = hold_dependents(&h);
    compact(d, gone);
  }
  for (int i = 0; i < 4; i++)
    free(its[i]);
  free(gone);
  free(h.held);
  free(h.why);
  return err;
}
