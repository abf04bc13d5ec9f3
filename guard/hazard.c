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
 * when it can store the default once, as the column's missing value
 * (atthasmissing): not for a volatile default, nor when evaluating it
 * fails. The rule is contain_volatile_functions over the planned
 * expression, which no SQL function exposes, and pg_depend does not record
 * built-in (pinned) functions; so each default is added, in the shadow, to
 * an empty temporary table, and PostgreSQL's own answer is read back. A
 * default that cannot be probed counts as volatile: fail closed.
 */
int pgg_probe_defaults(PGconn *conn, pgg_catalog *desired, pgg_buf *err)
{
  bool any = false;
  for (size_t i = 0; i < desired->n && !any; i++) {
    const pgg_object *c = &desired->objs[i];
    any = c->kind == PGG_OBJ_COLUMN && c->default_expr && !c->identity && !c->generated;
  }
  if (!any)
    return PGG_OK;
  bool ready = pgg_pq_exec(conn, "BEGIN", err) == PGG_OK &&
               pgg_pq_exec(conn, "SET LOCAL search_path = ''", err) == PGG_OK &&
               pgg_pq_exec(conn, "CREATE TEMPORARY TABLE pgguard_probe ()", err) == PGG_OK;
  pgg_buf q;
  pgg_buf_init(&q);
  int rc = PGG_OK;
  for (size_t i = 0; i < desired->n && !rc; i++) {
    pgg_object *c = &desired->objs[i];
    if (c->kind != PGG_OBJ_COLUMN || !c->default_expr || c->identity || c->generated)
      continue;
    c->volatile_default = true;
    if (!ready)
      continue;
    pgg_buf_reset(&q);
    rc = pgg_buf_printf(&q, "ALTER TABLE pg_temp.pgguard_probe ADD COLUMN probe %s DEFAULT %s",
                        c->type, c->default_expr);
    if (!rc)
      rc = pgg_buf_append_u8(&q, 0);
    if (rc)
      break;
    if (pgg_pq_exec(conn, "SAVEPOINT pgguard_probe", err) != PGG_OK) {
      ready = false;
      continue;
    }
    size_t mark = err->len;
    if (pgg_pq_exec(conn, (const char *)q.data, err) == PGG_OK) {
      PGresult *res = PQexec(conn, "SELECT a.atthasmissing FROM pg_catalog.pg_attribute a"
                                   " WHERE a.attrelid = 'pg_temp.pgguard_probe'::pg_catalog.regclass"
                                   " AND a.attname = 'probe'");
      if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        c->volatile_default = PQgetvalue(res, 0, 0)[0] != 't';
      PQclear(res);
    }
    /* A default that cannot be evaluated here is no load failure. */
    err->len = mark;
    if (pgg_pq_exec(conn, "ROLLBACK TO SAVEPOINT pgguard_probe", err) != PGG_OK)
      ready = false;
  }
  pgg_buf_free(&q);
  PGresult *res = PQexec(conn, "ROLLBACK");
  PQclear(res);
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
      snprintf(why, n, "its default %s is volatile: ADD COLUMN evaluates it for every row, "
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

/* Whether definition names column as an identifier (bare or quoted). */
static bool names_column(const char *def, const char *column)
{
  if (!def)
    return false;
  size_t n = strlen(column);
  for (const char *p = strstr(def, column); p; p = strstr(p + 1, column)) {
    char before = p > def ? p[-1] : ' ', after = p[n];
    bool quoted = before == '"' && after == '"';
    bool bare = !(before == '_' || before == '.' || (before >= 'a' && before <= 'z') ||
                  (before >= '0' && before <= '9')) &&
                !(after == '_' || (after >= 'a' && after <= 'z') || (after >= '0' && after <= '9'));
    if (quoted || bare)
      return true;
  }
  return false;
}

static void move_item(pgg_drift *d, pgg_drift_item *it, char *why)
{
  pgg_obj_kind k = it->desired->kind;
  d->counts[k][PGG_DRIFT_MISSING]--;
  d->counts[k][PGG_DRIFT_NEEDS_MIGRATION]++;
  it->state = PGG_DRIFT_NEEDS_MIGRATION;
  free(it->why);
  it->why = why;
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
    if (!why)
      continue;
    char *copy = strdup(why);
    if (!copy)
      return PGG_ERR_NOMEM;
    move_item(d, it, copy);
  }
  /* What names a column that waits for a migration waits with it: an
   * index or a constraint on it could only fail. */
  for (size_t i = 0; i < d->n; i++) {
    pgg_drift_item *it = &d->items[i];
    const pgg_object *o = it->desired;
    if (it->state != PGG_DRIFT_MISSING || it->implied || !o || !o->parent ||
        (o->kind != PGG_OBJ_INDEX && o->kind != PGG_OBJ_CONSTRAINT))
      continue;
    for (size_t j = 0; j < d->n; j++) {
      const pgg_drift_item *c = &d->items[j];
      if (c->state != PGG_DRIFT_NEEDS_MIGRATION || c->desired->kind != PGG_OBJ_COLUMN ||
          strcmp(c->desired->schema, o->schema) != 0 || strcmp(c->desired->parent, o->parent) != 0 ||
          !names_column(o->definition, c->desired->name))
        continue;
      snprintf(buf, sizeof buf, "it needs column %s, which needs a migration", c->desired->name);
      char *copy = strdup(buf);
      if (!copy)
        return PGG_ERR_NOMEM;
      move_item(d, it, copy);
      break;
    }
  }
  return PGG_OK;
}
