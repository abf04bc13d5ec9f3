/*
 * hazard.c — what pgguard will not do to a table with rows: the missing
 * objects whose creation would rewrite or scan the table under ACCESS
 * EXCLUSIVE are reported as needs_migration instead of planned. The pass is
 * pure; the one database step, pgg_probe_defaults, asks the shadow whether
 * PostgreSQL can add each default without a rewrite.
 */
#include "catalog.h"
#include "introspect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the shadow probe --------------------------------------------------- */

/*
 * PostgreSQL adds a column with a default without touching the rows only
 * when it can store the default once, as the column's missing value: not
 * for a volatile default (contain_volatile_functions over the planned
 * expression, which no SQL function exposes; pg_depend does not even
 * record built-in, pinned, functions). So PostgreSQL is asked itself: in
 * the shadow, each default is added to a temporary table holding one row,
 * and a new relfilenode means the table was rewritten. A default that
 * cannot be evaluated there, or takes longer than PROBE_TIMEOUT, counts as
 * volatile (fail closed), marked default_unprobed so the report says why.
 */
#define PROBE_TIMEOUT "5s"

static bool probe_ready(PGconn *conn, pgg_buf *err)
{
  return pgg_pq_exec(conn, "BEGIN", err) == PGG_OK &&
         pgg_pq_exec(conn, "SET LOCAL search_path = ''; SET LOCAL statement_timeout = '"
                     PROBE_TIMEOUT "'", err) == PGG_OK &&
         pgg_pq_exec(conn, "CREATE TEMPORARY TABLE pgguard_probe ()", err) == PGG_OK &&
         pgg_pq_exec(conn, "INSERT INTO pg_temp.pgguard_probe DEFAULT VALUES", err) == PGG_OK;
}

static const char q_filenode[] =
  "SELECT pg_catalog.pg_relation_filenode('pg_temp.pgguard_probe'::pg_catalog.regclass)";

static bool filenode(PGconn *conn, char *out, size_t n)
{
  PGresult *res = PQexec(conn, q_filenode);
  bool ok = res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
  if (ok)
    snprintf(out, n, "%s", PQgetvalue(res, 0, 0));
  PQclear(res);
  return ok;
}

int pgg_probe_defaults(PGconn *conn, pgg_catalog *desired, pgg_buf *err)
{
  bool any = false;
  for (size_t i = 0; i < desired->n && !any; i++) {
    const pgg_object *c = &desired->objs[i];
    any = c->kind == PGG_OBJ_COLUMN && c->default_expr && !c->identity && !c->generated;
  }
  if (!any)
    return PGG_OK;
  size_t mark0 = err->len;
  char before[32] = "";
  bool ready = probe_ready(conn, err) && filenode(conn, before, sizeof before);
  /* Not a load failure: every default then counts as volatile. */
  err->len = mark0;
  pgg_buf q;
  pgg_buf_init(&q);
  int rc = PGG_OK;
  for (size_t i = 0; i < desired->n && !rc; i++) {
    pgg_object *c = &desired->objs[i];
    if (c->kind != PGG_OBJ_COLUMN || !c->default_expr || c->identity || c->generated)
      continue;
    c->volatile_default = c->default_unprobed = true;
    if (!ready)
      continue;
    pgg_buf_reset(&q);
    rc = pgg_buf_printf(&q, "ALTER TABLE pg_temp.pgguard_probe ADD COLUMN probe %s DEFAULT %s",
                        c->type, c->default_expr);
    if (!rc)
      rc = pgg_buf_append_u8(&q, 0);
    if (rc)
      break;
    size_t mark = err->len;
    if (pgg_pq_exec(conn, "SAVEPOINT pgguard_probe", err) != PGG_OK) {
      ready = false;
      err->len = mark;
      continue;
    }
    char after[32];
    if (pgg_pq_exec(conn, (const char *)q.data, err) == PGG_OK &&
        filenode(conn, after, sizeof after)) {
      c->volatile_default = strcmp(before, after) != 0;
      c->default_unprobed = false;
    }
    /* A default that cannot be evaluated here is no load failure. */
    err->len = mark;
    if (pgg_pq_exec(conn, "ROLLBACK TO SAVEPOINT pgguard_probe", err) != PGG_OK) {
      ready = false;
      err->len = mark;
    }
  }
  pgg_buf_free(&q);
  PQclear(PQexec(conn, "ROLLBACK"));
  if (!rc && PQstatus(conn) != CONNECTION_OK) {
    pgg_buf_printf(err, "the shadow database's session was lost while probing column defaults");
    rc = PGG_ERR_UPSTREAM;
  }
  return rc;
}

/* ---- the pass ------------------------------------------------------------ */

static const pgg_object *live_table(const pgg_catalog *live, const pgg_object *o)
{
  return pgg_catalog_find(live, PGG_OBJ_TABLE, o->schema, NULL, o->parent);
}

typedef struct {
  const pgg_catalog *live;
  const pgg_object *table;
  char nullable[128];   /* the first key column that may hold NULL */
} key_check;

static bool column_nullable(const char *name, void *arg)
{
  key_check *k = arg;
  const pgg_object *c = pgg_catalog_find(k->live, PGG_OBJ_COLUMN, k->table->schema,
                                         k->table->name, name);
  if (c && c->not_null)
    return true;
  snprintf(k->nullable, sizeof k->nullable, "%s", name);
  return false;
}

/* Why creating this missing column or constraint on its table (with rows)
 * would rewrite or scan it under ACCESS EXCLUSIVE; NULL when it would not. */
static const char *hazard_of(const pgg_object *o, const pgg_object *t, const pgg_catalog *live,
                             char *why, size_t n)
{
  if (o->kind == PGG_OBJ_COLUMN) {
    if (o->identity)
      return "an identity column: ADD COLUMN fills every row, rewriting the table "
             "under ACCESS EXCLUSIVE";
    if (o->generated)
      return "a stored generated column: ADD COLUMN computes every row, rewriting the table "
             "under ACCESS EXCLUSIVE";
    if (o->checked_domain) {
      snprintf(why, n, "its type %s is a domain with constraints: ADD COLUMN checks every row, "
               "rewriting the table under ACCESS EXCLUSIVE", o->type);
      return why;
    }
    if (o->default_expr && o->volatile_default) {
      snprintf(why, n, o->default_unprobed
               ? "its default %s could not be shown stable (the shadow database could not "
                 "evaluate it): ADD COLUMN might evaluate it for every row, rewriting the table "
                 "under ACCESS EXCLUSIVE"
               : "its default %s is volatile: ADD COLUMN evaluates it for every row, "
                 "rewriting the table under ACCESS EXCLUSIVE", o->default_expr);
      return why;
    }
    return NULL;
  }
  if (o->kind == PGG_OBJ_INDEX)
    return t->relkind == 'p' ? "an index of a partitioned table cannot be built CONCURRENTLY: "
                               "it would block writes to every partition while it builds"
                             : NULL;
  if (o->kind != PGG_OBJ_CONSTRAINT)
    return NULL;
  if (o->contype == 'x')
    return "an EXCLUDE constraint builds its index under ACCESS EXCLUSIVE "
           "(it has no CONCURRENTLY form)";
  if (o->contype != 'p' && o->contype != 'u')
    return NULL;
  if (t->relkind == 'p')
    return "a key of a partitioned table cannot be built CONCURRENTLY: "
           "it would block writes to every partition while it builds";
  pgg_key_def kd;
  if (!o->definition || !pgg_key_def_parse(o->definition, &kd))
    return "a key of this shape has no CONCURRENTLY form (USING INDEX): "
           "it would be built under ACCESS EXCLUSIVE";
  if (!kd.primary)
    return NULL;
  key_check k = {.live = live, .table = t};
  if (!pgg_key_columns(kd.cols, kd.cols_len, column_nullable, &k))
    return "a key of this shape has no CONCURRENTLY form (USING INDEX): "
           "it would be built under ACCESS EXCLUSIVE";
  if (!k.nullable[0])
    return NULL;
  snprintf(why, n, "PRIMARY KEY over column %s, which may hold NULL: its SET NOT NULL scans "
           "the table under ACCESS EXCLUSIVE", k.nullable);
  return why;
}

static void move_item(pgg_drift *d, pgg_drift_item *it, char *why)
{
  pgg_obj_kind k = it->desired->kind;
  if (!it->implied) {
    d->counts[k][PGG_DRIFT_MISSING]--;
    d->counts[k][PGG_DRIFT_NEEDS_MIGRATION]++;
  }
  it->state = PGG_DRIFT_NEEDS_MIGRATION;
  free(it->why);
  it->why = why;
}

/*
 * The shadow decided whether a default is volatile by its own functions.
 * One that calls a function the live database has differently (a
 * conflicting function, never replaced: it may be VOLATILE there) is not
 * known to be stable on live: fail closed.
 */
static const char *conflicting_call(const pgg_drift *d, const pgg_object *col)
{
  for (size_t i = 0; col->default_expr && i < d->n; i++) {
    const pgg_drift_item *it = &d->items[i];
    if (it->state != PGG_DRIFT_CONFLICTING || !it->desired ||
        it->desired->kind != PGG_OBJ_FUNCTION)
      continue;
    char base[256];
    snprintf(base, sizeof base, "%s", it->desired->name);
    base[strcspn(base, "(")] = 0;
    if (pgg_def_names_qualified(col->default_expr, it->desired->schema, base))
      return it->desired->name;
  }
  return NULL;
}

int pgg_drift_hazards(pgg_drift *d, const pgg_catalog *live)
{
  char buf[512];
  for (size_t i = 0; i < d->n; i++) {
    pgg_drift_item *it = &d->items[i];
    const pgg_object *o = it->desired;
    if (it->state != PGG_DRIFT_MISSING || it->implied || !o || !o->parent)
      continue;
    const pgg_object *t = live_table(live, o);
    if (!t || !t->has_rows)
      continue;
    const char *why = hazard_of(o, t, live, buf, sizeof buf);
    const char *f = o->kind == PGG_OBJ_COLUMN && !why ? conflicting_call(d, o) : NULL;
    if (f) {
      snprintf(buf, sizeof buf, "its default calls %s.%s, which differs on this database: "
               "it may be volatile here, and ADD COLUMN would rewrite the table", o->schema, f);
      why = buf;
    }
    if (!why)
      continue;
    char *copy = strdup(why);
    if (!copy)
      return PGG_ERR_NOMEM;
    move_item(d, it, copy);
  }
  /* What would be built on a column that waits for a migration waits
   * with it: an index, constraint or trigger naming it, a foreign key or a
   * view reading it, and what is built on such a view, until nothing more
   * moves. */
  for (bool moved = true; moved;) {
    moved = false;
    for (size_t i = 0; i < d->n; i++) {
      pgg_drift_item *it = &d->items[i];
      const pgg_object *o = it->desired;
      /* A new table's constraints, indexes and triggers are implied but
       * planned one by one: they wait too (its columns come with it). */
      if (it->state != PGG_DRIFT_MISSING || !o || (it->implied && o->kind == PGG_OBJ_COLUMN))
        continue;
      for (size_t j = 0; j < d->n; j++) {
        const pgg_drift_item *h = &d->items[j];
        const pgg_object *x = h->desired;
        if (h->state != PGG_DRIFT_NEEDS_MIGRATION || h->implied || !x || x == o)
          continue;
        bool on = x->kind == PGG_OBJ_COLUMN ? pgg_needs_column(o, x)
                  : x->kind == PGG_OBJ_VIEW ? pgg_needs_relation(o, x) : false;
        if (!on)
          continue;
        snprintf(buf, sizeof buf, "it needs %s %s, which needs a migration",
                 pgg_obj_kind_name(x->kind), x->name);
        char *copy = strdup(buf);
        if (!copy)
          return PGG_ERR_NOMEM;
        move_item(d, it, copy);
        moved = true;
        break;
      }
    }
  }
  return PGG_OK;
}
