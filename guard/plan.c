/*
 * plan.c — turns the missing objects of a drift into additive DDL in
 * dependency order. Pure: no connection, no I/O; the statements it can ever
 * produce are the kinds of pgg_stmt_kind and nothing else.
 */
#include "catalog.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pgg_plan_init(pgg_plan *p)
{
  memset(p, 0, sizeof *p);
}

void pgg_stmt_free(pgg_stmt *s)
{
  free(s->sql);
  for (int i = 0; i < 3; i++)
    free(s->target[i]);
  *s = (pgg_stmt){s->kind, NULL, {NULL, NULL, NULL}};
}

void pgg_plan_free(pgg_plan *p)
{
  for (size_t i = 0; i < p->n; i++)
    pgg_stmt_free(&p->stmts[i]);
  free(p->stmts);
  pgg_plan_init(p);
}

int pgg_stmt_group(const pgg_plan *p, size_t i)
{
  if (pgg_stmt_concurrent(p, i))
    return PGG_GROUP_CONCURRENT;
  switch (p->stmts[i].kind) {
  case PGG_STMT_ADD_ENUM_VALUE: return PGG_GROUP_LABELS;
  case PGG_STMT_REFRESH_MATVIEW: return PGG_GROUP_REFRESH;
  default: return PGG_GROUP_MAIN;
  }
}

const char *pgg_group_name(int group)
{
  switch (group) {
  case PGG_GROUP_LABELS:
    return "committed first, in a transaction of its own (PostgreSQL cannot use an enum "
           "label in the transaction that adds it)";
  case PGG_GROUP_MAIN:
    return "under the repair lock, lock_timeout and statement_timeout set, each statement in "
           "a savepoint (a refused one is rolled back alone); new objects commit together, "
           "each statement on a table that existed commits on its own";
  case PGG_GROUP_REFRESH:
    return "after COMMIT, each in a transaction of its own";
  default:
    return "after COMMIT, on a session of its own, outside any transaction, single-flight "
           "across sidecars; a build waits for older transactions without a timeout (it blocks "
           "nobody), lock_timeout bounds the brief finish; a unit whose index or constraint "
           "exists is skipped; the DROP runs only when pgguard's own build is INVALID";
  }
}

/* The statements, grouped as they run, each with the lock it takes. */
int pgg_plan_format(const pgg_plan *p, pgg_buf *out)
{
  int err = PGG_OK;
  int group = -1;
  for (size_t i = 0; !err && i < p->n; i++) {
    const pgg_stmt *s = &p->stmts[i];
    int g = pgg_stmt_group(p, i);
    if (g != group) {
      err = pgg_buf_printf(out, "%s-- %s:\n", group < 0 ? "" : "\n", pgg_group_name(g));
      group = g;
    }
    const char *lock = pgg_stmt_lock(s);
    if (!err && *lock)
      err = pgg_buf_printf(out, "-- lock: %s\n", lock);
    if (!err)
      err = pgg_buf_append(out, s->sql, strlen(s->sql));
    if (!err)
      err = pgg_buf_append(out, ";\n", 2);
  }
  return err;
}

/* ---- the gate every statement passes before it enters a plan ------------ */

static bool ident_char(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '$' || c >= 0x80;
}

/*
 * Lexes SQL text the way PostgreSQL does (standard_conforming_strings on)
 * and accepts it only when, outside quoted identifiers and literals, it has
 * no statement separator, comment, dollar quote or backslash, its brackets
 * balance, and it has no comma at depth 0. Definitions come verbatim from
 * pg_get_*def, so this is what stops a damaged or hostile catalog string
 * from ending our statement and starting another, or from chaining an
 * `ALTER TABLE ... ADD ..., DROP ...` subcommand. Everything pgguard builds
 * itself keeps its commas inside parentheses, so this costs nothing.
 */
static bool sql_text_safe_in(const char *s, bool commas)
{
  long paren = 0, bracket = 0;
  const char *p = s;
  while (*p) {
    char c = *p;
    if (c == '\'') {
      /* E'...' is the one literal form where a backslash escapes a quote. */
      bool esc = p > s && (p[-1] == 'E' || p[-1] == 'e') &&
                 (p - 1 == s || !ident_char((unsigned char)p[-2]));
      for (p++;; p++) {
        if (!*p)
          return false;
        if (esc && *p == '\\') {
          if (!p[1])
            return false;
          p++;
        } else if (*p == '\'') {
          if (p[1] != '\'')
            break;
          p++;
        }
      }
      p++;
      continue;
    }
    if (c == '"') {
      for (p++;; p++) {
        if (!*p)
          return false;
        if (*p == '"') {
          if (p[1] != '"')
            break;
          p++;
        }
      }
      p++;
      continue;
    }
    if (c == ';' || c == '$' || c == '\\' || (c == '-' && p[1] == '-') ||
        (c == '/' && p[1] == '*'))
      return false;
    if (c == '(')
      paren++;
    else if (c == ')' && --paren < 0)
      return false;
    else if (c == '[')
      bracket++;
    else if (c == ']' && --bracket < 0)
      return false;
    else if (c == ',' && paren == 0 && bracket == 0 && !commas)
      return false;
    p++;
  }
  return paren == 0 && bracket == 0;
}

static bool sql_text_safe(const char *s)
{
  return sql_text_safe_in(s, false);
}

/*
 * A view's query and a trigger's definition have commas at depth 0 (a
 * select list, UPDATE OF a, b) but no subcommands to chain: CREATE VIEW and
 * CREATE TRIGGER have none. Everything else of the gate holds.
 */
static bool sql_text_safe_commas(const char *s)
{
  return sql_text_safe_in(s, true);
}

static bool has_prefix(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The one prefix (two for indexes) each statement kind may start with. */
static bool kind_prefix_ok(pgg_stmt_kind kind, const char *sql)
{
  switch (kind) {
  case PGG_STMT_CREATE_SCHEMA: return has_prefix(sql, "CREATE SCHEMA \"");
  case PGG_STMT_CREATE_EXTENSION:
    return has_prefix(sql, "CREATE EXTENSION IF NOT EXISTS \"");
  case PGG_STMT_CREATE_ENUM:
    return has_prefix(sql, "CREATE TYPE \"") && strstr(sql, "\" AS ENUM (");
  case PGG_STMT_CREATE_DOMAIN: return has_prefix(sql, "CREATE DOMAIN \"");
  case PGG_STMT_CREATE_COMPOSITE:
    return has_prefix(sql, "CREATE TYPE \"") && strstr(sql, "\" AS (");
  case PGG_STMT_CREATE_FUNCTION:
    return has_prefix(sql, "CREATE FUNCTION ") || has_prefix(sql, "CREATE PROCEDURE ");
  case PGG_STMT_CREATE_VIEW:
    return has_prefix(sql, "CREATE VIEW \"") || has_prefix(sql, "CREATE MATERIALIZED VIEW \"");
  case PGG_STMT_CREATE_TRIGGER:
    return has_prefix(sql, "CREATE TRIGGER ") || has_prefix(sql, "CREATE CONSTRAINT TRIGGER ");
  case PGG_STMT_SET_OWNED_BY:
    return has_prefix(sql, "ALTER SEQUENCE \"") && strstr(sql, "\" OWNED BY \"");
  case PGG_STMT_REFRESH_MATVIEW: return has_prefix(sql, "REFRESH MATERIALIZED VIEW \"");
  case PGG_STMT_ADD_ENUM_VALUE:
    return has_prefix(sql, "ALTER TYPE \"") && strstr(sql, "\" ADD VALUE IF NOT EXISTS ");
  case PGG_STMT_CREATE_SEQUENCE:
    return has_prefix(sql, "CREATE SEQUENCE \"") || has_prefix(sql, "CREATE UNLOGGED SEQUENCE \"");
  case PGG_STMT_CREATE_TABLE:
    return has_prefix(sql, "CREATE TABLE \"") || has_prefix(sql, "CREATE UNLOGGED TABLE \"");
  case PGG_STMT_ADD_COLUMN:
    return has_prefix(sql, "ALTER TABLE \"") && strstr(sql, "\" ADD COLUMN \"");
  case PGG_STMT_CREATE_INDEX:
    return has_prefix(sql, "CREATE INDEX ") || has_prefix(sql, "CREATE UNIQUE INDEX ");
  case PGG_STMT_ADD_CONSTRAINT:
    return has_prefix(sql, "ALTER TABLE \"") && strstr(sql, "\" ADD CONSTRAINT \"") &&
           !strstr(sql, " USING INDEX ");
  case PGG_STMT_DROP_INVALID_INDEX:
    /* The one DROP: of an index named by pgguard, nothing else. */
    return has_prefix(sql, "DROP INDEX CONCURRENTLY IF EXISTS \"") &&
           strstr(sql, ".\"" PGG_BUILD_PREFIX) && strlen(strstr(sql, ".\"" PGG_BUILD_PREFIX)) ==
           2 + PGG_BUILD_NAME_LEN;
  case PGG_STMT_CREATE_INDEX_CONCURRENTLY:
    return has_prefix(sql, "CREATE INDEX CONCURRENTLY \"" PGG_BUILD_PREFIX) ||
           has_prefix(sql, "CREATE UNIQUE INDEX CONCURRENTLY \"" PGG_BUILD_PREFIX);
  case PGG_STMT_RENAME_INDEX:
    return has_prefix(sql, "ALTER INDEX \"") && strstr(sql, ".\"" PGG_BUILD_PREFIX) &&
           strstr(sql, "\" RENAME TO \"");
  case PGG_STMT_ADD_CONSTRAINT_USING_INDEX:
    return has_prefix(sql, "ALTER TABLE \"") && strstr(sql, "\" ADD CONSTRAINT \"") &&
           strstr(sql, " USING INDEX \"" PGG_BUILD_PREFIX);
  case PGG_STMT__COUNT: break;
  }
  return false;
}

/* ---- the planner's working state ---------------------------------------- */

typedef struct {
  const pgg_drift *drift;
  const pgg_catalog *live;
  const pgg_object **miss;    /* every missing desired object, sorted by plan_cmp */
  size_t nmiss;
  const pgg_object **extra;   /* live objects the drift calls extra, by address */
  size_t nextra;
  pgg_plan *out;
  pgg_buf sql;                /* the statement being built */
  bool bad;                   /* a fragment of it failed sql_text_safe */
  bool emitted;               /* the last emit() put its statement into the plan */
  unsigned refused;           /* objects skipped instead of planned */
  const pgg_object **refresh; /* materialized views created WITH NO DATA */
  size_t nrefresh;
  pgg_plan later;             /* the concurrent units, appended last */
  const pgg_object **built_keys;  /* keys built in the concurrent part */
  size_t nbuilt_keys;
} planner;

static int cmp_str(const char *a, const char *b)
{
  if (!a || !b)
    return (a != NULL) - (b != NULL);
  return strcmp(a, b);
}

static bool positional(pgg_obj_kind k)
{
  return k == PGG_OBJ_COLUMN || k == PGG_OBJ_ENUM_LABEL;
}

/* Identity order, except that columns and labels sort by position within
 * their container: that is the order they are created in. */
static int plan_key_cmp(pgg_obj_kind kind, const char *schema, const char *parent, int pos,
                        const char *name, const pgg_object *b)
{
  if (kind != b->kind)
    return kind < b->kind ? -1 : 1;
  int r = cmp_str(schema, b->schema);
  if (!r)
    r = cmp_str(parent, b->parent);
  if (!r && positional(kind) && pos != b->position)
    r = pos < b->position ? -1 : 1;
  if (!r)
    r = cmp_str(name, b->name);
  return r;
}

static int plan_cmp(const void *pa, const void *pb)
{
  const pgg_object *a = *(const pgg_object *const *)pa;
  const pgg_object *b = *(const pgg_object *const *)pb;
  return plan_key_cmp(a->kind, a->schema, a->parent, a->position, a->name, b);
}

static int prefix_cmp(pgg_obj_kind kind, const char *schema, const char *parent,
                      const pgg_object *b)
{
  if (kind != b->kind)
    return kind < b->kind ? -1 : 1;
  int r = cmp_str(schema, b->schema);
  return r ? r : cmp_str(parent, b->parent);
}

/* The missing objects of one container (kind, schema, parent): [*lo, *hi). */
static void miss_range(const planner *pl, pgg_obj_kind kind, const char *schema,
                       const char *parent, size_t *lo, size_t *hi)
{
  size_t a = 0, b = pl->nmiss;
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    if (prefix_cmp(kind, schema, parent, pl->miss[mid]) > 0)
      a = mid + 1;
    else
      b = mid;
  }
  *lo = a;
  while (b < pl->nmiss && prefix_cmp(kind, schema, parent, pl->miss[b]) == 0)
    b++;
  *hi = b;
}

/* A missing table or enum (containers have no position). */
static const pgg_object *miss_find(const planner *pl, pgg_obj_kind kind, const char *schema,
                                   const char *name)
{
  size_t a = 0, b = pl->nmiss;
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    int r = plan_key_cmp(kind, schema, NULL, 0, name, pl->miss[mid]);
    if (r == 0)
      return pl->miss[mid];
    if (r < 0)
      b = mid;
    else
      a = mid + 1;
  }
  return NULL;
}

static int cmp_addr(const void *pa, const void *pb)
{
  uintptr_t a = (uintptr_t)*(const pgg_object *const *)pa;
  uintptr_t b = (uintptr_t)*(const pgg_object *const *)pb;
  return (a > b) - (a < b);
}

static bool is_extra(const planner *pl, const pgg_object *o)
{
  return bsearch(&o, pl->extra, pl->nextra, sizeof *pl->extra, cmp_addr) != NULL;
}

/* ---- building statements ------------------------------------------------ */

static int put(planner *pl, const char *s)
{
  return pgg_buf_append(&pl->sql, s, strlen(s));
}

static int put_ident(planner *pl, const char *s)
{
  return pgg_quote_ident(&pl->sql, s);
}

static int put_qualified(planner *pl, const char *schema, const char *name)
{
  int err = put_ident(pl, schema);
  if (!err)
    err = put(pl, ".");
  if (!err)
    err = put_ident(pl, name);
  return err;
}

/* A definition string from PostgreSQL, used verbatim once it proves to be
 * one self-contained piece of an expression. */
static int put_fragment(planner *pl, const char *s)
{
  if (!s || !*s || !sql_text_safe(s))
    pl->bad = true;
  return s ? put(pl, s) : PGG_OK;
}

/* A view's or trigger's fragment: commas allowed (see sql_text_safe_commas). */
static int put_fragment_commas(planner *pl, const char *s)
{
  if (!s || !*s || !sql_text_safe_commas(s))
    pl->bad = true;
  return s ? put(pl, s) : PGG_OK;
}

/*
 * The gate for the whole statement. A function's body is in the language
 * of the function (dollar quotes, semicolons): it cannot be lexed as SQL,
 * so a function statement is held to its prefix and to being sent alone
 * (see pgg_stmt_kind), where PostgreSQL refuses a second statement.
 */
static bool whole_text_ok(pgg_stmt_kind kind, const char *sql)
{
  switch (kind) {
  case PGG_STMT_CREATE_FUNCTION:
    return !has_prefix(sql, "CREATE OR REPLACE");
  case PGG_STMT_CREATE_VIEW:
  case PGG_STMT_CREATE_TRIGGER:
    return sql_text_safe_commas(sql);
  default:
    return sql_text_safe(sql);
  }
}

/* Append *s to p, which takes its strings: *s is left empty. */
static int move_stmt(pgg_plan *p, pgg_stmt *s)
{
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 16;
    pgg_stmt *v = cap > SIZE_MAX / sizeof *v ? NULL : realloc(p->stmts, cap * sizeof *v);
    if (!v)
      return PGG_ERR_NOMEM;
    p->stmts = v;
    p->cap = cap;
  }
  p->stmts[p->n++] = *s;
  *s = (pgg_stmt){0};
  return PGG_OK;
}

/* Ends the statement being built: into the plan when it passes the gate,
 * otherwise dropped and counted. */
static int emit(planner *pl, pgg_stmt_kind kind)
{
  int err = pgg_buf_append_u8(&pl->sql, 0);
  if (err)
    return err;
  const char *sql = (const char *)pl->sql.data;
  if (pl->bad || !kind_prefix_ok(kind, sql) || !whole_text_ok(kind, sql)) {
    pl->refused++;
  } else {
    pgg_stmt s = {.kind = kind, .sql = (char *)pl->sql.data};
    if ((err = move_stmt(pl->out, &s)) != PGG_OK)
      return err;
    pgg_buf_init(&pl->sql);
  }
  /* The plan took the buffer's memory only when it took the statement. */
  pl->emitted = pl->sql.len == 0;
  pgg_buf_reset(&pl->sql);
  pl->bad = false;
  return PGG_OK;
}

static const char *schema_obj_name(const pgg_object *o)
{
  return o->name ? o->name : o->schema;
}

/* `"c" <type>[ DEFAULT e][ GENERATED ... AS IDENTITY][ GENERATED ALWAYS AS (e) STORED][ NOT NULL]` */
static int put_column_def(planner *pl, const pgg_object *c, bool not_null)
{
  int err = put_ident(pl, c->name);
  if (!err)
    err = put(pl, " ");
  if (!err)
    err = put_fragment(pl, c->type);
  if (!err && c->collation)
    err = put_fragment(pl, c->collation);
  if (!err && c->default_expr && !c->generated && !c->identity) {
    err = put(pl, " DEFAULT ");
    if (!err)
      err = put_fragment(pl, c->default_expr);
  }
  if (!err && c->identity)
    err = put(pl, c->identity == 'a' ? " GENERATED ALWAYS AS IDENTITY"
                                     : " GENERATED BY DEFAULT AS IDENTITY");
  if (!err && c->generated) {
    err = put(pl, " GENERATED ALWAYS AS (");
    if (!err)
      err = put_fragment(pl, c->default_expr);
    if (!err)
      err = put(pl, ") STORED");
  }
  if (!err && not_null)
    err = put(pl, " NOT NULL");
  return err;
}

typedef enum {
  TBL_NEW,          /* created by this plan */
  TBL_EXISTING,     /* in live */
  TBL_UNPLANNABLE,  /* a missing partitioned table (refused) */
  TBL_ORPHAN,       /* neither in live nor desired: the catalogs disagree */
} table_state;

/* A partitioned table is created only with its partition key. */
static bool table_plannable(const pgg_object *t)
{
  return t->relkind != 'p' || (t->definition && *t->definition);
}

static table_state table_of(const planner *pl, const char *schema, const char *name,
                            const pgg_object **live_table)
{
  *live_table = pgg_catalog_find(pl->live, PGG_OBJ_TABLE, schema, NULL, name);
  if (*live_table)
    return TBL_EXISTING;
  const pgg_object *t = miss_find(pl, PGG_OBJ_TABLE, schema, name);
  if (!t)
    return TBL_ORPHAN;
  return table_plannable(t) ? TBL_NEW : TBL_UNPLANNABLE;
}

/* A table, or else a view: what an index or a trigger may sit on. *is_view
 * says which it is. */
static table_state rel_of(const planner *pl, const char *schema, const char *name,
                          const pgg_object **live_rel, bool *is_view)
{
  *is_view = false;
  table_state st = table_of(pl, schema, name, live_rel);
  if (st != TBL_ORPHAN)
    return st;
  *is_view = true;
  *live_rel = pgg_catalog_find(pl->live, PGG_OBJ_VIEW, schema, NULL, name);
  if (*live_rel)
    return TBL_EXISTING;
  return miss_find(pl, PGG_OBJ_VIEW, schema, name) ? TBL_NEW : TBL_ORPHAN;
}

/* ---- the phases, in dependency order ------------------------------------ */

static int plan_schemas(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *o = pl->miss[i];
    if (o->kind != PGG_OBJ_SCHEMA)
      continue;
    err = put(pl, "CREATE SCHEMA ");
    if (!err)
      err = put_ident(pl, schema_obj_name(o));
    if (!err)
      err = emit(pl, PGG_STMT_CREATE_SCHEMA);
  }
  return err;
}

static int plan_enums(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *o = pl->miss[i];
    if (o->kind != PGG_OBJ_ENUM)
      continue;
    size_t lo, hi;
    miss_range(pl, PGG_OBJ_ENUM_LABEL, o->schema, o->name, &lo, &hi);
    err = put(pl, "CREATE TYPE ");
    if (!err)
      err = put_qualified(pl, o->schema, o->name);
    if (!err)
      err = put(pl, " AS ENUM (");
    for (size_t j = lo; !err && j < hi; j++) {
      err = put(pl, j > lo ? ", " : "");
      if (!err)
        err = pgg_quote_literal(&pl->sql, pl->miss[j]->name);
    }
    if (!err)
      err = put(pl, ")");
    if (!err)
      err = emit(pl, PGG_STMT_CREATE_ENUM);
  }
  return err;
}

typedef struct {
  const char *label;
  bool missing;
} label_slot;

static int cmp_live_label(const void *pa, const void *pb)
{
  const pgg_object *a = *(const pgg_object *const *)pa;
  const pgg_object *b = *(const pgg_object *const *)pb;
  if (a->position != b->position)
    return a->position < b->position ? -1 : 1;
  return cmp_str(a->name, b->name);
}

static int add_value(planner *pl, const pgg_object *e, const char *label, const char *where,
                     const char *neighbour)
{
  int err = put(pl, "ALTER TYPE ");
  if (!err)
    err = put_qualified(pl, e->schema, e->name);
  if (!err)
    err = put(pl, " ADD VALUE IF NOT EXISTS ");
  if (!err)
    err = pgg_quote_literal(&pl->sql, label);
  if (!err && where) {
    err = put(pl, where);
    if (!err)
      err = pgg_quote_literal(&pl->sql, neighbour);
  }
  if (!err)
    err = emit(pl, PGG_STMT_ADD_ENUM_VALUE);
  return err;
}

/*
 * The drift holds only the missing labels (with their desired positions);
 * the labels already there are in live. The desired order is rebuilt by
 * putting each missing label at its desired rank and filling the other ranks
 * with the present labels in their live order — exact whenever live's order
 * agrees with desired's, and harmless otherwise (the label is still added).
 * Each label is placed next to a neighbour that exists when it runs: after
 * the label before it, or, for a run at the front, before the label after it.
 */
static int plan_labels_of(planner *pl, const pgg_object *e, size_t lo, size_t hi)
{
  const pgg_catalog *live = pl->live;
  size_t a = 0, b = live->n;
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    if (prefix_cmp(PGG_OBJ_ENUM_LABEL, e->schema, e->name, &live->objs[mid]) > 0)
      a = mid + 1;
    else
      b = mid;
  }
  size_t nlive = 0;
  while (a + nlive < live->n &&
         prefix_cmp(PGG_OBJ_ENUM_LABEL, e->schema, e->name, &live->objs[a + nlive]) == 0)
    nlive++;

  size_t nmiss = hi - lo, total = nmiss + nlive;
  const pgg_object **present = malloc((nlive ? nlive : 1) * sizeof *present);
  label_slot *slot = calloc(total ? total : 1, sizeof *slot);
  const pgg_object **overflow = malloc((nmiss ? nmiss : 1) * sizeof *overflow);
  int err = PGG_OK;
  if (!present || !slot || !overflow) {
    err = PGG_ERR_NOMEM;
    goto out;
  }
  size_t npresent = 0, noverflow = 0;
  for (size_t i = 0; i < nlive; i++)
    if (!is_extra(pl, &live->objs[a + i]))
      present[npresent++] = &live->objs[a + i];
  total = nmiss + npresent;
  if (npresent > 1)
    qsort(present, npresent, sizeof *present, cmp_live_label);
  for (size_t i = lo; i < hi; i++) {
    const pgg_object *m = pl->miss[i];
    if (m->position >= 1 && (size_t)m->position <= total && !slot[m->position - 1].label)
      slot[m->position - 1] = (label_slot){m->name, true};
    else
      overflow[noverflow++] = m;
  }
  size_t np = 0, no = 0;
  for (size_t i = 0; i < total; i++) {
    if (slot[i].label)
      continue;
    if (np < npresent)
      slot[i] = (label_slot){present[np++]->name, false};
    else
      slot[i] = (label_slot){overflow[no++]->name, true};
  }

  size_t first = 0;  /* the first label that already exists */
  while (first < total && slot[first].missing)
    first++;
  if (first == total && total > 0) {
    /* An enum with no labels yet: the first one needs no neighbour. */
    err = add_value(pl, e, slot[0].label, NULL, NULL);
    first = 0;
  } else {
    for (size_t i = first; !err && i-- > 0;)
      err = add_value(pl, e, slot[i].label, " BEFORE ", slot[i + 1].label);
  }
  for (size_t i = first + 1; !err && i < total; i++)
    if (slot[i].missing)
      err = add_value(pl, e, slot[i].label, " AFTER ", slot[i - 1].label);
out:
  free(present);
  free(slot);
  free(overflow);
  return err;
}

static int plan_labels(planner *pl)
{
  int err = PGG_OK;
  size_t i = 0;
  while (!err && i < pl->nmiss) {
    const pgg_object *o = pl->miss[i];
    if (o->kind != PGG_OBJ_ENUM_LABEL) {
      i++;
      continue;
    }
    size_t lo, hi;
    miss_range(pl, PGG_OBJ_ENUM_LABEL, o->schema, o->parent, &lo, &hi);
    const pgg_object *e = pgg_catalog_find(pl->live, PGG_OBJ_ENUM, o->schema, NULL, o->parent);
    if (e)
      err = plan_labels_of(pl, e, lo, hi);
    else if (!miss_find(pl, PGG_OBJ_ENUM, o->schema, o->parent))
      pl->refused += (unsigned)(hi - lo);  /* an enum neither side has */
    /* else: created with its type by plan_enums */
    i = hi;
  }
  return err;
}

static int plan_sequences(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *o = pl->miss[i];
    if (o->kind != PGG_OBJ_SEQUENCE)
      continue;
    err = put(pl, o->persistence == 'u' ? "CREATE UNLOGGED SEQUENCE " : "CREATE SEQUENCE ");
    if (!err)
      err = put_qualified(pl, o->schema, o->name);
    if (!err && o->definition && *o->definition) {
      err = put(pl, " ");
      if (!err)
        err = put_fragment(pl, o->definition);
    }
    if (!err)
      err = emit(pl, PGG_STMT_CREATE_SEQUENCE);
  }
  return err;
}

static int plan_table(planner *pl, const pgg_object *o)
{
  /* A partitioned table without its key could never become the
   * partitioned one: refuse rather than guess. */
  if (!table_plannable(o)) {
    pl->refused++;
    return PGG_OK;
  }
  int err = put(pl, o->persistence == 'u' ? "CREATE UNLOGGED TABLE " : "CREATE TABLE ");
  if (!err)
    err = put_qualified(pl, o->schema, o->name);
  if (o->partition_of) {
    /* A partition takes its columns, constraints and indexes from its
     * parent; only its bound is its own. */
    if (!err)
      err = put(pl, " PARTITION OF ");
    if (!err)
      err = put_fragment(pl, o->partition_of);
    if (!err)
      err = put(pl, " ");
    if (!err)
      err = put_fragment(pl, o->default_expr);
  } else {
    size_t lo, hi;
    miss_range(pl, PGG_OBJ_COLUMN, o->schema, o->name, &lo, &hi);
    if (!err)
      err = put(pl, " (");
    for (size_t j = lo; !err && j < hi; j++) {
      err = put(pl, j > lo ? ", " : "");
      /* A new table is empty: NOT NULL costs nothing. */
      if (!err)
        err = put_column_def(pl, pl->miss[j], pl->miss[j]->not_null);
    }
    if (!err)
      err = put(pl, ")");
  }
  if (!err && o->relkind == 'p') {
    err = put(pl, " PARTITION BY ");
    if (!err)
      err = put_fragment(pl, o->definition);
  }
  if (!err)
    err = emit(pl, PGG_STMT_CREATE_TABLE);
  return err;
}

/* Roots first, then each level of partitions below them (position holds a
 * table's depth below its root partitioned table). */
static int plan_tables(planner *pl)
{
  int err = PGG_OK, deepest = 0;
  for (size_t i = 0; i < pl->nmiss; i++)
    if (pl->miss[i]->kind == PGG_OBJ_TABLE && pl->miss[i]->position > deepest)
      deepest = pl->miss[i]->position;
  for (int depth = 0; !err && depth <= deepest; depth++)
    for (size_t i = 0; !err && i < pl->nmiss; i++) {
      const pgg_object *o = pl->miss[i];
      if (o->kind == PGG_OBJ_TABLE && (o->position > 0 ? o->position : 0) == depth)
        err = plan_table(pl, o);
    }
  return err;
}

/* Whether a child of table (schema, name) gets its own statement; counts
 * the ones that cannot. */
static bool child_plannable(planner *pl, const pgg_object *o, const pgg_object **live_table,
                            bool *existed)
{
  switch (table_of(pl, o->schema, o->parent, live_table)) {
  case TBL_EXISTING:
    *existed = true;
    return true;
  case TBL_NEW:
    *existed = false;
    return true;
  case TBL_UNPLANNABLE:
    return false;  /* refused once, with its table */
  case TBL_ORPHAN:
    break;
  }
  pl->refused++;
  return false;
}

static int plan_columns(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *c = pl->miss[i];
    const pgg_object *t;
    bool existed;
    if (c->kind != PGG_OBJ_COLUMN || !child_plannable(pl, c, &t, &existed) || !existed)
      continue;  /* a new table's columns are in its CREATE TABLE */
    /* PostgreSQL cannot add a NOT NULL column without a default to a table
     * with rows; added nullable, it stays reported as conflicting drift. */
    bool relax = c->not_null && t->has_rows && !c->default_expr && !c->identity &&
                 !c->generated;
    err = put(pl, "ALTER TABLE ");
    if (!err)
      err = put_qualified(pl, c->schema, c->parent);
    if (!err)
      err = put(pl, " ADD COLUMN ");
    if (!err)
      err = put_column_def(pl, c, c->not_null && !relax);
    if (!err) {
      size_t before = pl->out->n;
      err = emit(pl, PGG_STMT_ADD_COLUMN);
      if (!err && relax && pl->out->n > before)
        pl->out->relaxed_not_null++;
    }
  }
  return err;
}

/*
 * pg_get_indexdef's shape: `CREATE [UNIQUE ]INDEX <name> ON ...`, the name
 * bare (lower case) or quoted. CONCURRENTLY, IF NOT EXISTS or a missing name
 * never come from it, and CONCURRENTLY would fail inside the repair's
 * transaction anyway. Returns where " ON " starts, or NULL.
 */
static const char *index_on(const char *def)
{
  const char *p;
  if (has_prefix(def, "CREATE INDEX "))
    p = def + strlen("CREATE INDEX ");
  else if (has_prefix(def, "CREATE UNIQUE INDEX "))
    p = def + strlen("CREATE UNIQUE INDEX ");
  else
    return NULL;
  const char *name = p;
  if (*p == '"') {
    for (p++; *p && !(*p == '"' && p[1] != '"'); p += (*p == '"') ? 2 : 1)
      ;
    if (!*p)
      return NULL;
    p++;
  } else {
    if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
      return NULL;
    while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '$')
      p++;
    if ((size_t)(p - name) == strlen("concurrently") && !strncmp(name, "concurrently", 12))
      return NULL;
  }
  return has_prefix(p, " ON ") ? p : NULL;
}

/* ---- indexes and keys of tables with rows: built concurrently ----------- */

/*
 * One unit of three statements, all or none (the gate may refuse any of
 * them): the drop of pgguard's own INVALID build, the build, and its
 * finish. Appended to the concurrent part, after everything transactional.
 */
/* The goal of a concurrent statement (see pgg_stmt): copies of o's names. */
static int set_target(pgg_stmt *s, const pgg_object *o)
{
  const char *names[3] = {o->schema, o->parent, o->name};
  for (int i = 0; i < 3; i++)
    if (!(s->target[i] = strdup(names[i] ? names[i] : "")))
      return PGG_ERR_NOMEM;
  return PGG_OK;
}

static int emit_unit(planner *pl, const pgg_object *goal, const char *build,
                     pgg_stmt_kind build_kind, const char *build_sql_rest,
                     pgg_stmt_kind finish_kind, const char *finish_sql)
{
  const char *schema = goal->schema;
  pgg_plan unit;
  pgg_plan_init(&unit);
  pgg_plan *saved = pl->out;
  pl->out = &unit;
  int err = put(pl, "DROP INDEX CONCURRENTLY IF EXISTS ");
  if (!err)
    err = put_qualified(pl, schema, build);
  if (!err)
    err = emit(pl, PGG_STMT_DROP_INVALID_INDEX);
  if (!err)
    err = put(pl, build_sql_rest);
  if (!err)
    err = emit(pl, build_kind);
  if (!err)
    err = put(pl, finish_sql);
  if (!err)
    err = emit(pl, finish_kind);
  pl->out = saved;
  if (!err && unit.n == 3)
    err = set_target(&unit.stmts[2], goal);
  for (size_t i = 0; !err && unit.n == 3 && i < unit.n; i++)
    err = move_stmt(&pl->later, &unit.stmts[i]);
  /* A unit the gate cut short is dropped whole (emit() counted the refusal). */
  pgg_plan_free(&unit);
  return err;
}

/* `CREATE [UNIQUE] INDEX CONCURRENTLY <build> ON ...`, then the rename. */
static int plan_index_build(planner *pl, const pgg_object *x, const char *on)
{
  char build[PGG_BUILD_NAME_LEN];
  pgg_build_name(x->schema, x->parent, x->name, x->definition, build);
  pgg_buf a, b;
  pgg_buf_init(&a);
  pgg_buf_init(&b);
  int err = pgg_buf_printf(&a, "%s", has_prefix(x->definition, "CREATE UNIQUE ")
                                         ? "CREATE UNIQUE INDEX CONCURRENTLY "
                                         : "CREATE INDEX CONCURRENTLY ");
  if (!err)
    err = pgg_quote_ident(&a, build);
  if (!err && !sql_text_safe(on))
    pl->bad = true;
  if (!err)
    err = pgg_buf_printf(&a, "%s", on);
  if (!err)
    err = pgg_buf_printf(&b, "ALTER INDEX ");
  if (!err)
    err = pgg_quote_ident(&b, x->schema);
  if (!err)
    err = pgg_buf_printf(&b, ".");
  if (!err)
    err = pgg_quote_ident(&b, build);
  if (!err)
    err = pgg_buf_printf(&b, " RENAME TO ");
  if (!err)
    err = pgg_quote_ident(&b, x->name);
  if (!err)
    err = pgg_buf_append_u8(&a, 0);
  if (!err)
    err = pgg_buf_append_u8(&b, 0);
  if (!err)
    err = emit_unit(pl, x, build, PGG_STMT_CREATE_INDEX_CONCURRENTLY,
                    (const char *)a.data, PGG_STMT_RENAME_INDEX, (const char *)b.data);
  pgg_buf_free(&a);
  pgg_buf_free(&b);
  return err;
}

/* A key of an existing table with rows: its unique index built
 * concurrently, then attached. False when its shape has no such form. */
static int plan_key_build(planner *pl, const pgg_object *k, const pgg_key_def *kd)
{
  char build[PGG_BUILD_NAME_LEN];
  pgg_build_name(k->schema, k->parent, k->name, k->definition, build);
  pgg_buf a, b;
  pgg_buf_init(&a);
  pgg_buf_init(&b);
  int err = pgg_buf_printf(&a, "CREATE UNIQUE INDEX CONCURRENTLY ");
  if (!err)
    err = pgg_quote_ident(&a, build);
  if (!err)
    err = pgg_buf_printf(&a, " ON ");
  if (!err)
    err = pgg_quote_ident(&a, k->schema);
  if (!err)
    err = pgg_buf_printf(&a, ".");
  if (!err)
    err = pgg_quote_ident(&a, k->parent);
  if (!err)
    err = pgg_buf_printf(&a, " USING btree %.*s", (int)kd->cols_len, kd->cols);
  if (!err && kd->include)
    err = pgg_buf_printf(&a, " INCLUDE %.*s", (int)kd->include_len, kd->include);
  if (!err && kd->nulls_not_distinct)
    err = pgg_buf_printf(&a, " NULLS NOT DISTINCT");
  if (!err)
    err = pgg_buf_printf(&b, "ALTER TABLE ");
  if (!err)
    err = pgg_quote_ident(&b, k->schema);
  if (!err)
    err = pgg_buf_printf(&b, ".");
  if (!err)
    err = pgg_quote_ident(&b, k->parent);
  if (!err)
    err = pgg_buf_printf(&b, " ADD CONSTRAINT ");
  if (!err)
    err = pgg_quote_ident(&b, k->name);
  if (!err)
    err = pgg_buf_printf(&b, " %s USING INDEX ", kd->primary ? "PRIMARY KEY" : "UNIQUE");
  if (!err)
    err = pgg_quote_ident(&b, build);
  if (!err)
    err = pgg_buf_printf(&b, "%s", kd->deferral);
  if (!err)
    err = pgg_buf_append_u8(&a, 0);
  if (!err)
    err = pgg_buf_append_u8(&b, 0);
  if (!err && (!sql_text_safe((const char *)a.data) || !sql_text_safe((const char *)b.data)))
    pl->bad = true;
  size_t before = pl->later.n;
  if (!err)
    err = emit_unit(pl, k, build, PGG_STMT_CREATE_INDEX_CONCURRENTLY,
                    (const char *)a.data, PGG_STMT_ADD_CONSTRAINT_USING_INDEX,
                    (const char *)b.data);
  if (!err && pl->later.n > before)
    pl->built_keys[pl->nbuilt_keys++] = k;
  pgg_buf_free(&a);
  pgg_buf_free(&b);
  return err;
}

/* Indexes of tables (on_views false) or of materialized views, which come
 * after the views. */
static int plan_indexes(planner *pl, bool on_views)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *x = pl->miss[i];
    const pgg_object *t;
    bool is_view;
    if (x->kind != PGG_OBJ_INDEX)
      continue;
    table_state st = rel_of(pl, x->schema, x->parent, &t, &is_view);
    if (is_view != on_views)
      continue;
    if (st == TBL_UNPLANNABLE)
      continue;  /* refused once, with its table */
    if (st == TBL_ORPHAN) {
      pl->refused++;
      continue;
    }
    /* pg_get_indexdef already names the index and its table; anything not
     * shaped like its output is refused, never run. */
    const char *def = x->definition ? x->definition : "";
    const char *on = index_on(def);
    if (!on) {
      pl->refused++;
      continue;
    }
    /* A table that has rows keeps taking writes while its index builds. */
    if (!on_views && st == TBL_EXISTING && t && t->has_rows && t->relkind != 'p') {
      err = plan_index_build(pl, x, on);
      continue;
    }
    /* pg_get_indexdef prints a partitioned table's index ON ONLY, as
     * pg_dump builds it: the parent's alone, its partitions' attached one
     * by one later. The plan has no such later step: without ONLY the one
     * statement builds and attaches every partition's index too. */
    const char *only = strstr(def, " ON ONLY ");
    if (only && only == strstr(def, " ON ")) {
      if (!sql_text_safe(def))
        pl->bad = true;
      err = pgg_buf_append(&pl->sql, def, (size_t)(only - def));
      if (!err)
        err = put(pl, " ON ");
      if (!err)
        err = put(pl, only + strlen(" ON ONLY "));
    } else {
      err = put_fragment(pl, def);
    }
    if (!err)
      err = emit(pl, PGG_STMT_CREATE_INDEX);
  }
  return err;
}

/* Keys first: a foreign key needs the key it references. */
static int contype_rank(char t)
{
  switch (t) {
  case 'p': return 0;
  case 'u': return 1;
  case 'x': return 2;
  case 'c': return 3;
  case 'f': return 4;
  }
  return 5;
}

static bool has_suffix(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int plan_constraints(planner *pl)
{
  int err = PGG_OK;
  for (int rank = 0; !err && rank <= 5; rank++) {
    for (size_t i = 0; !err && i < pl->nmiss; i++) {
      const pgg_object *k = pl->miss[i];
      const pgg_object *t;
      bool existed;
      if (k->kind != PGG_OBJ_CONSTRAINT || contype_rank(k->contype) != rank ||
          !child_plannable(pl, k, &t, &existed))
        continue;
      /* On a table that already has data, a foreign key or check must not
       * fail on (or scan) rows written before it existed: NOT VALID checks
       * new rows only. Keys are added as they are: they need the scan. */
      /* PostgreSQL 15 refuses a NOT VALID foreign key on a partitioned
       * table: there it is added as it is, validated. */
      pgg_key_def kd;
      if (existed && t && t->has_rows && t->relkind != 'p' && (k->contype == 'p' || k->contype == 'u') &&
          k->definition && pgg_key_def_parse(k->definition, &kd)) {
        err = plan_key_build(pl, k, &kd);
        continue;
      }
      bool fk_nv = k->contype == 'f' && t && t->relkind != 'p';
      /* A foreign key needs the key it references: when that one is built
       * concurrently, the foreign key follows it, after the build. (A table
       * whose name merely contains the key's table's is deferred too:
       * harmless.) */
      bool after_build = false;
      const char *ref = k->contype == 'f' && k->definition ? strstr(k->definition, " REFERENCES ") : NULL;
      for (size_t b = 0; ref && b < pl->nbuilt_keys && !after_build && !err; b++) {
        const char *name = pl->built_keys[b]->parent;
        pgg_buf quoted;
        pgg_buf_init(&quoted);
        err = pgg_quote_ident(&quoted, name);
        if (!err)
          err = pgg_buf_append_u8(&quoted, 0);
        after_build = strstr(ref, name) || (!err && strstr(ref, (const char *)quoted.data));
        pgg_buf_free(&quoted);
      }
      bool not_valid = existed && (fk_nv || (k->contype == 'c' && t->has_rows)) &&
                       k->definition && !has_suffix(k->definition, " NOT VALID");
      err = put(pl, "ALTER TABLE ");
      if (!err)
        err = put_qualified(pl, k->schema, k->parent);
      if (!err)
        err = put(pl, " ADD CONSTRAINT ");
      if (!err)
        err = put_ident(pl, k->name);
      if (!err)
        err = put(pl, " ");
      if (!err)
        err = put_fragment(pl, k->definition);
      if (!err && not_valid)
        err = put(pl, " NOT VALID");
      pgg_plan *saved = pl->out;
      if (after_build)
        pl->out = &pl->later;
      if (!err)
        err = emit(pl, PGG_STMT_ADD_CONSTRAINT);
      if (!err && after_build && pl->emitted)
        err = set_target(&pl->later.stmts[pl->later.n - 1], k);
      pl->out = saved;
    }
  }
  return err;
}

static int plan_extensions(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *o = pl->miss[i];
    if (o->kind != PGG_OBJ_EXTENSION)
      continue;
    /* The shadow's version, in the shadow's schema: what the application
     * was built against, never whatever is newest on the server. */
    if (!o->type || !o->definition) {
      pl->refused++;
      continue;
    }
    err = put(pl, "CREATE EXTENSION IF NOT EXISTS ");
    if (!err)
      err = put_ident(pl, o->name);
    if (!err)
      err = put(pl, " WITH SCHEMA ");
    if (!err)
      err = put_ident(pl, o->type);
    if (!err)
      err = put(pl, " VERSION ");
    if (!err)
      err = pgg_quote_literal(&pl->sql, o->definition);
    if (!err)
      err = emit(pl, PGG_STMT_CREATE_EXTENSION);
  }
  return err;
}

/* `CREATE DOMAIN s.n AS ...` and `CREATE TYPE s.n AS (...)`. */
static int plan_types(planner *pl, pgg_obj_kind kind)
{
  int err = PGG_OK;
  bool domain = kind == PGG_OBJ_DOMAIN;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *o = pl->miss[i];
    if (o->kind != kind)
      continue;
    err = put(pl, domain ? "CREATE DOMAIN " : "CREATE TYPE ");
    if (!err)
      err = put_qualified(pl, o->schema, o->name);
    if (!err)
      err = put(pl, domain ? " " : " AS ");
    if (!err)
      err = put_fragment(pl, o->definition);
    if (!err)
      err = emit(pl, domain ? PGG_STMT_CREATE_DOMAIN : PGG_STMT_CREATE_COMPOSITE);
  }
  return err;
}

/*
 * Functions of one phase (see PGG_OBJ_FUNCTION). pg_get_functiondef prints
 * CREATE OR REPLACE, which would overwrite a function of the same
 * signature created meanwhile: the plan says plain CREATE, and such a
 * function makes the statement fail instead.
 */
static int plan_functions(planner *pl, int phase)
{
  static const char *const forms[][2] = {
      {"CREATE OR REPLACE FUNCTION ", "CREATE FUNCTION "},
      {"CREATE OR REPLACE PROCEDURE ", "CREATE PROCEDURE "},
  };
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *o = pl->miss[i];
    int at = o->position < 0 ? 0 : o->position > 3 ? 3 : o->position;
    if (o->kind != PGG_OBJ_FUNCTION || at != phase)
      continue;
    const char *def = o->definition ? o->definition : "";
    size_t form = 0;
    while (form < 2 && !has_prefix(def, forms[form][0]))
      form++;
    if (form == 2) {
      pl->refused++;
      continue;
    }
    const char *rest = def + strlen(forms[form][0]);
    size_t n = strlen(rest);
    while (n > 0 && (rest[n - 1] == '\n' || rest[n - 1] == ' '))
      n--;
    err = put(pl, forms[form][1]);
    if (!err)
      err = pgg_buf_append(&pl->sql, rest, n);
    if (!err)
      err = emit(pl, PGG_STMT_CREATE_FUNCTION);
  }
  return err;
}

/* Views and materialized views, inner ones first (position is the depth
 * of views below a view). A materialized view is created WITH NO DATA:
 * filling it is a query of unknown cost, run after the transaction. */
static int plan_views(planner *pl)
{
  int err = PGG_OK, deepest = 0;
  for (size_t i = 0; i < pl->nmiss; i++)
    if (pl->miss[i]->kind == PGG_OBJ_VIEW && pl->miss[i]->position > deepest)
      deepest = pl->miss[i]->position;
  for (int depth = 0; !err && depth <= deepest; depth++)
    for (size_t i = 0; !err && i < pl->nmiss; i++) {
      const pgg_object *o = pl->miss[i];
      if (o->kind != PGG_OBJ_VIEW || (o->position > 0 ? o->position : 0) != depth)
        continue;
      bool mat = o->relkind == 'm';
      err = put(pl, mat ? "CREATE MATERIALIZED VIEW " : "CREATE VIEW ");
      if (!err)
        err = put_qualified(pl, o->schema, o->name);
      if (!err && o->type) {
        err = put(pl, " WITH (");
        if (!err)
          err = put_fragment_commas(pl, o->type);
        if (!err)
          err = put(pl, ")");
      }
      if (!err)
        err = put(pl, " AS ");
      if (!err)
        err = put_fragment_commas(pl, o->definition);
      if (!err && mat)
        err = put(pl, " WITH NO DATA");
      if (!err)
        err = emit(pl, PGG_STMT_CREATE_VIEW);
      if (!err && mat && pl->emitted)
        pl->refresh[pl->nrefresh++] = o;
    }
  return err;
}

static int plan_triggers(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *o = pl->miss[i];
    const pgg_object *t;
    bool is_view;
    if (o->kind != PGG_OBJ_TRIGGER)
      continue;
    table_state st = rel_of(pl, o->schema, o->parent, &t, &is_view);
    if (st == TBL_UNPLANNABLE)
      continue;
    const char *def = o->definition ? o->definition : "";
    if (st == TBL_ORPHAN ||
        !(has_prefix(def, "CREATE TRIGGER ") || has_prefix(def, "CREATE CONSTRAINT TRIGGER "))) {
      pl->refused++;
      continue;
    }
    err = put_fragment_commas(pl, def);
    if (!err)
      err = emit(pl, PGG_STMT_CREATE_TRIGGER);
  }
  return err;
}

/* Whether live holds an OWNED BY for this sequence (to another column). */
static bool live_owned(const planner *pl, const pgg_object *o)
{
  const pgg_catalog *live = pl->live;
  size_t a = 0, b = live->n;
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    if (prefix_cmp(PGG_OBJ_OWNED_BY, o->schema, o->parent, &live->objs[mid]) > 0)
      a = mid + 1;
    else
      b = mid;
  }
  return a < live->n && prefix_cmp(PGG_OBJ_OWNED_BY, o->schema, o->parent, &live->objs[a]) == 0;
}

/*
 * A serial column's sequence OWNED BY its column: what pg_get_serial_sequence
 * and every "reset the sequence" tool read. Set only on a sequence owned by
 * nothing; moving it from another column is not additive.
 */
static int plan_owned_by(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *o = pl->miss[i];
    if (o->kind != PGG_OBJ_OWNED_BY)
      continue;
    if (!o->type || !o->definition || live_owned(pl, o)) {
      pl->refused++;
      continue;
    }
    err = put(pl, "ALTER SEQUENCE ");
    if (!err)
      err = put_qualified(pl, o->schema, o->parent);
    if (!err)
      err = put(pl, " OWNED BY ");
    if (!err)
      err = put_qualified(pl, o->schema, o->type);
    if (!err)
      err = put(pl, ".");
    if (!err)
      err = put_ident(pl, o->definition);
    if (!err)
      err = emit(pl, PGG_STMT_SET_OWNED_BY);
  }
  return err;
}

static int plan_refresh(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nrefresh; i++) {
    err = put(pl, "REFRESH MATERIALIZED VIEW ");
    if (!err)
      err = put_qualified(pl, pl->refresh[i]->schema, pl->refresh[i]->name);
    if (!err)
      err = emit(pl, PGG_STMT_REFRESH_MATVIEW);
  }
  return err;
}

/*
 * Returns PGG_OK, PGG_ERR_NOMEM, or PGG_ERR_SCHEMA when some object could
 * not be planned (a definition that is not one self-contained SQL fragment,
 * an index definition not from pg_get_indexdef, a partitioned table without
 * its key, a child whose container neither side has, a sequence owned by
 * another column): those are left out and the
 * rest is planned anyway, so the caller decides whether a partial repair is
 * better than none.
 */
int pgg_plan_build(const pgg_drift *d, const pgg_catalog *live, pgg_plan *out)
{
  static const pgg_catalog empty = {0};
  planner pl = {.drift = d, .live = live ? live : &empty, .out = out};
  pgg_buf_init(&pl.sql);
  int err = PGG_OK;
  size_t nm = 0, nx = 0;
  for (size_t i = 0; i < d->n; i++) {
    nm += d->items[i].state == PGG_DRIFT_MISSING && d->items[i].desired;
    nx += d->items[i].state == PGG_DRIFT_EXTRA && d->items[i].live;
  }
  pl.miss = malloc((nm ? nm : 1) * sizeof *pl.miss);
  pl.extra = malloc((nx ? nx : 1) * sizeof *pl.extra);
  pl.refresh = malloc((nm ? nm : 1) * sizeof *pl.refresh);
  pl.built_keys = malloc((nm ? nm : 1) * sizeof *pl.built_keys);
  if (!pl.miss || !pl.extra || !pl.refresh || !pl.built_keys)
    err = PGG_ERR_NOMEM;
  for (size_t i = 0; !err && i < d->n; i++) {
    const pgg_drift_item *it = &d->items[i];
    if (it->state == PGG_DRIFT_MISSING && it->desired)
      pl.miss[pl.nmiss++] = it->desired;
    else if (it->state == PGG_DRIFT_EXTRA && it->live)
      pl.extra[pl.nextra++] = it->live;
  }
  if (!err) {
    qsort(pl.miss, pl.nmiss, sizeof *pl.miss, plan_cmp);
    qsort(pl.extra, pl.nextra, sizeof *pl.extra, cmp_addr);
  }
  if (!err)
    err = plan_schemas(&pl);
  if (!err)
    err = plan_extensions(&pl);
  if (!err)
    err = plan_enums(&pl);
  if (!err)
    err = plan_labels(&pl);
  if (!err)
    err = plan_functions(&pl, 0);
  if (!err)
    err = plan_types(&pl, PGG_OBJ_DOMAIN);
  if (!err)
    err = plan_types(&pl, PGG_OBJ_COMPOSITE);
  if (!err)
    err = plan_functions(&pl, 1);
  if (!err)
    err = plan_sequences(&pl);
  if (!err)
    err = plan_tables(&pl);
  if (!err)
    err = plan_columns(&pl);
  if (!err)
    err = plan_functions(&pl, 2);
  if (!err)
    err = plan_indexes(&pl, false);
  if (!err)
    err = plan_constraints(&pl);
  if (!err)
    err = plan_views(&pl);
  if (!err)
    err = plan_functions(&pl, 3);
  if (!err)
    err = plan_indexes(&pl, true);
  if (!err)
    err = plan_triggers(&pl);
  if (!err)
    err = plan_owned_by(&pl);
  if (!err)
    err = plan_refresh(&pl);
  for (size_t i = 0; !err && i < pl.later.n; i++)
    err = move_stmt(out, &pl.later.stmts[i]);
  pgg_plan_free(&pl.later);
  free(pl.built_keys);
  free(pl.miss);
  free(pl.extra);
  free(pl.refresh);
  pgg_buf_free(&pl.sql);
  if (!err && pl.refused)
    err = PGG_ERR_SCHEMA;
  return err;
}

const char *pgg_stmt_kind_name(pgg_stmt_kind k)
{
  switch (k) {
  case PGG_STMT_CREATE_SCHEMA: return "CREATE SCHEMA";
  case PGG_STMT_CREATE_ENUM: return "CREATE TYPE ... AS ENUM";
  case PGG_STMT_ADD_ENUM_VALUE: return "ALTER TYPE ... ADD VALUE";
  case PGG_STMT_CREATE_SEQUENCE: return "CREATE SEQUENCE";
  case PGG_STMT_CREATE_TABLE: return "CREATE TABLE";
  case PGG_STMT_ADD_COLUMN: return "ALTER TABLE ... ADD COLUMN";
  case PGG_STMT_CREATE_INDEX: return "CREATE INDEX";
  case PGG_STMT_ADD_CONSTRAINT: return "ALTER TABLE ... ADD CONSTRAINT";
  case PGG_STMT_CREATE_EXTENSION: return "CREATE EXTENSION";
  case PGG_STMT_CREATE_DOMAIN: return "CREATE DOMAIN";
  case PGG_STMT_CREATE_COMPOSITE: return "CREATE TYPE ... AS (...)";
  case PGG_STMT_CREATE_FUNCTION: return "CREATE FUNCTION";
  case PGG_STMT_CREATE_VIEW: return "CREATE VIEW";
  case PGG_STMT_CREATE_TRIGGER: return "CREATE TRIGGER";
  case PGG_STMT_SET_OWNED_BY: return "ALTER SEQUENCE ... OWNED BY";
  case PGG_STMT_REFRESH_MATVIEW: return "REFRESH MATERIALIZED VIEW";
  case PGG_STMT_DROP_INVALID_INDEX: return "DROP INDEX CONCURRENTLY (pgguard's own INVALID build)";
  case PGG_STMT_CREATE_INDEX_CONCURRENTLY: return "CREATE INDEX CONCURRENTLY";
  case PGG_STMT_RENAME_INDEX: return "ALTER INDEX ... RENAME";
  case PGG_STMT_ADD_CONSTRAINT_USING_INDEX: return "ALTER TABLE ... ADD CONSTRAINT ... USING INDEX";
  case PGG_STMT__COUNT: break;
  }
  return "statement";
}

bool pgg_stmt_concurrent(const pgg_plan *p, size_t i)
{
  for (size_t j = 0; j <= i && j < p->n; j++)
    if (p->stmts[j].kind >= PGG_STMT_FIRST_CONCURRENT)
      return true;
  return false;
}

const char *pgg_stmt_lock(const pgg_stmt *s)
{
  switch (s->kind) {
  case PGG_STMT_ADD_ENUM_VALUE:
    return "on the type only; committed on its own, first";
  case PGG_STMT_ADD_COLUMN:
    return "ACCESS EXCLUSIVE on the table, for a catalog change only (no rewrite)";
  case PGG_STMT_CREATE_INDEX:
    return "SHARE on a table this plan creates (or an empty one): blocks its writes while it builds";
  case PGG_STMT_ADD_CONSTRAINT:
    if (strstr(s->sql, " FOREIGN KEY "))
      return strstr(s->sql, " NOT VALID") ? "SHARE ROW EXCLUSIVE on both tables, brief (NOT VALID: no scan)"
                                           : "SHARE ROW EXCLUSIVE on both tables while it checks the rows";
    return strstr(s->sql, " NOT VALID") ? "ACCESS EXCLUSIVE on the table, brief (NOT VALID: no scan)"
                                         : "ACCESS EXCLUSIVE on a table this plan creates (or an empty one)";
  case PGG_STMT_CREATE_TRIGGER:
    return "SHARE ROW EXCLUSIVE on the table, brief (blocks writes while it waits)";
  case PGG_STMT_SET_OWNED_BY:
    return "on the sequence only";
  case PGG_STMT_REFRESH_MATVIEW:
    return "ACCESS EXCLUSIVE on the new materialized view while it fills";
  case PGG_STMT_DROP_INVALID_INDEX:
    return "SHARE UPDATE EXCLUSIVE: reads and writes go on";
  case PGG_STMT_CREATE_INDEX_CONCURRENTLY:
    return "SHARE UPDATE EXCLUSIVE: reads and writes go on; waits for older transactions";
  case PGG_STMT_RENAME_INDEX:
    return "SHARE UPDATE EXCLUSIVE on the index: reads and writes go on";
  case PGG_STMT_ADD_CONSTRAINT_USING_INDEX:
    return "ACCESS EXCLUSIVE on the table, brief (the index is already built)";
  default:
    return "";
  }
}
