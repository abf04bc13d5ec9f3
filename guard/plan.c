/*
 * plan.c — turns the missing objects of a drift into additive DDL in
 * dependency order. Pure: no connection, no I/O; the statements it can ever
 * produce are the eight kinds of pgg_stmt_kind and nothing else.
 */
#include "catalog.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void pgg_plan_init(pgg_plan *p)
{
  memset(p, 0, sizeof *p);
}

void pgg_plan_free(pgg_plan *p)
{
  for (size_t i = 0; i < p->n; i++)
    free(p->stmts[i].sql);
  free(p->stmts);
  pgg_plan_init(p);
}

int pgg_plan_format(const pgg_plan *p, pgg_buf *out)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < p->n; i++) {
    err = pgg_buf_append(out, p->stmts[i].sql, strlen(p->stmts[i].sql));
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
static bool sql_text_safe(const char *s)
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
    else if (c == ',' && paren == 0 && bracket == 0)
      return false;
    p++;
  }
  return paren == 0 && bracket == 0;
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
  case PGG_STMT_CREATE_ENUM: return has_prefix(sql, "CREATE TYPE \"");
  case PGG_STMT_ADD_ENUM_VALUE:
    return has_prefix(sql, "ALTER TYPE \"") && strstr(sql, "\" ADD VALUE IF NOT EXISTS ");
  case PGG_STMT_CREATE_SEQUENCE: return has_prefix(sql, "CREATE SEQUENCE \"");
  case PGG_STMT_CREATE_TABLE: return has_prefix(sql, "CREATE TABLE \"");
  case PGG_STMT_ADD_COLUMN:
    return has_prefix(sql, "ALTER TABLE \"") && strstr(sql, "\" ADD COLUMN \"");
  case PGG_STMT_CREATE_INDEX:
    return has_prefix(sql, "CREATE INDEX ") || has_prefix(sql, "CREATE UNIQUE INDEX ");
  case PGG_STMT_ADD_CONSTRAINT:
    return has_prefix(sql, "ALTER TABLE \"") && strstr(sql, "\" ADD CONSTRAINT \"");
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
  unsigned refused;           /* objects skipped instead of planned */
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

/* Ends the statement being built: into the plan when it passes the gate,
 * otherwise dropped and counted. */
static int emit(planner *pl, pgg_stmt_kind kind)
{
  int err = pgg_buf_append_u8(&pl->sql, 0);
  if (err)
    return err;
  const char *sql = (const char *)pl->sql.data;
  if (pl->bad || !kind_prefix_ok(kind, sql) || !sql_text_safe(sql)) {
    pl->refused++;
  } else {
    pgg_plan *p = pl->out;
    if (p->n == p->cap) {
      size_t cap = p->cap ? p->cap * 2 : 16;
      pgg_stmt *v = cap > SIZE_MAX / sizeof *v ? NULL : realloc(p->stmts, cap * sizeof *v);
      if (!v)
        return PGG_ERR_NOMEM;
      p->stmts = v;
      p->cap = cap;
    }
    p->stmts[p->n++] = (pgg_stmt){kind, (char *)pl->sql.data};
    pgg_buf_init(&pl->sql);
  }
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

static table_state table_of(const planner *pl, const char *schema, const char *name,
                            const pgg_object **live_table)
{
  *live_table = pgg_catalog_find(pl->live, PGG_OBJ_TABLE, schema, NULL, name);
  if (*live_table)
    return TBL_EXISTING;
  const pgg_object *t = miss_find(pl, PGG_OBJ_TABLE, schema, name);
  if (!t)
    return TBL_ORPHAN;
  return t->relkind == 'p' ? TBL_UNPLANNABLE : TBL_NEW;
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
    err = put(pl, "CREATE SEQUENCE ");
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

static int plan_tables(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *o = pl->miss[i];
    if (o->kind != PGG_OBJ_TABLE)
      continue;
    /* The catalog holds no partition key, and a plain table in its place
     * could never become the partitioned one: refuse rather than guess. */
    if (o->relkind == 'p') {
      pl->refused++;
      continue;
    }
    size_t lo, hi;
    miss_range(pl, PGG_OBJ_COLUMN, o->schema, o->name, &lo, &hi);
    err = put(pl, "CREATE TABLE ");
    if (!err)
      err = put_qualified(pl, o->schema, o->name);
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
    if (!err)
      err = emit(pl, PGG_STMT_CREATE_TABLE);
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
 * transaction anyway.
 */
static bool index_shape_ok(const char *def)
{
  const char *p;
  if (has_prefix(def, "CREATE INDEX "))
    p = def + strlen("CREATE INDEX ");
  else if (has_prefix(def, "CREATE UNIQUE INDEX "))
    p = def + strlen("CREATE UNIQUE INDEX ");
  else
    return false;
  const char *name = p;
  if (*p == '"') {
    for (p++; *p && !(*p == '"' && p[1] != '"'); p += (*p == '"') ? 2 : 1)
      ;
    if (!*p)
      return false;
    p++;
  } else {
    if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
      return false;
    while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '$')
      p++;
    if ((size_t)(p - name) == strlen("concurrently") && !strncmp(name, "concurrently", 12))
      return false;
  }
  return has_prefix(p, " ON ");
}

static int plan_indexes(planner *pl)
{
  int err = PGG_OK;
  for (size_t i = 0; !err && i < pl->nmiss; i++) {
    const pgg_object *x = pl->miss[i];
    const pgg_object *t;
    bool existed;
    if (x->kind != PGG_OBJ_INDEX || !child_plannable(pl, x, &t, &existed))
      continue;
    /* pg_get_indexdef already names the index and its table; anything not
     * shaped like its output is refused, never run. */
    const char *def = x->definition ? x->definition : "";
    if (!index_shape_ok(def)) {
      pl->refused++;
      continue;
    }
    err = put_fragment(pl, def);
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
      bool not_valid = existed && (k->contype == 'f' || (k->contype == 'c' && t->has_rows)) &&
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
      if (!err)
        err = emit(pl, PGG_STMT_ADD_CONSTRAINT);
    }
  }
  return err;
}

/*
 * Returns PGG_OK, PGG_ERR_NOMEM, or PGG_ERR_SCHEMA when some object could
 * not be planned (a definition that is not one self-contained SQL fragment,
 * an index definition not from pg_get_indexdef, a missing partitioned table,
 * a child whose container neither side has): those are left out and the
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
  if (!pl.miss || !pl.extra)
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
    err = plan_enums(&pl);
  if (!err)
    err = plan_labels(&pl);
  if (!err)
    err = plan_sequences(&pl);
  if (!err)
    err = plan_tables(&pl);
  if (!err)
    err = plan_columns(&pl);
  if (!err)
    err = plan_indexes(&pl);
  if (!err)
    err = plan_constraints(&pl);
  free(pl.miss);
  free(pl.extra);
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
  case PGG_STMT__COUNT: break;
  }
  return "statement";
}
