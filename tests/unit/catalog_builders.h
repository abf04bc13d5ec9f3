/*
 * catalog_builders.h — literal catalog objects for the diff and planner unit
 * tests: one constructor per kind, and add() that aborts on NOMEM.
 */
#ifndef PGG_CATALOG_BUILDERS_H
#define PGG_CATALOG_BUILDERS_H

#include <stdlib.h>

#include "catalog.h"

#define S(x) ((char *)(x))

#define SEQDEF "AS bigint INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1 NO CYCLE"

static inline pgg_object o_schema(const char *s)
{
  return (pgg_object){.kind = PGG_OBJ_SCHEMA, .schema = S(s), .name = S(s)};
}
static inline pgg_object o_enum(const char *s, const char *n)
{
  return (pgg_object){.kind = PGG_OBJ_ENUM, .schema = S(s), .name = S(n)};
}
static inline pgg_object o_label(const char *s, const char *e, const char *l, int pos)
{
  return (pgg_object){.kind = PGG_OBJ_ENUM_LABEL, .schema = S(s), .parent = S(e),
                      .name = S(l), .position = pos};
}
static inline pgg_object o_seq(const char *s, const char *n, const char *def)
{
  return (pgg_object){.kind = PGG_OBJ_SEQUENCE, .schema = S(s), .name = S(n),
                      .definition = S(def)};
}
/* A table; has_rows matters only to the planner (NOT NULL relaxation). */
static inline pgg_object o_table_rows(const char *s, const char *n, bool has_rows)
{
  return (pgg_object){.kind = PGG_OBJ_TABLE, .schema = S(s), .name = S(n), .relkind = 'r',
                      .has_rows = has_rows};
}
static inline pgg_object o_col(const char *s, const char *t, const char *c, const char *type,
                               bool not_null, int pos)
{
  return (pgg_object){.kind = PGG_OBJ_COLUMN, .schema = S(s), .parent = S(t), .name = S(c),
                      .type = S(type), .not_null = not_null, .position = pos};
}
static inline pgg_object o_con(const char *s, const char *t, const char *n, char contype,
                               const char *def)
{
  return (pgg_object){.kind = PGG_OBJ_CONSTRAINT, .schema = S(s), .parent = S(t),
                      .name = S(n), .contype = contype, .definition = S(def)};
}
static inline pgg_object o_index(const char *s, const char *t, const char *n, const char *def)
{
  return (pgg_object){.kind = PGG_OBJ_INDEX, .schema = S(s), .parent = S(t), .name = S(n),
                      .definition = S(def)};
}

static inline pgg_object o_ext(const char *n, const char *schema, const char *version)
{
  return (pgg_object){.kind = PGG_OBJ_EXTENSION, .name = S(n), .type = S(schema),
                      .definition = S(version)};
}
/* A domain or composite type: def as introspection builds it. */
static inline pgg_object o_typedef(pgg_obj_kind kind, const char *s, const char *n,
                                   const char *def)
{
  return (pgg_object){.kind = kind, .schema = S(s), .name = S(n), .definition = S(def)};
}
/* A function: name "f(args)", def as pg_get_functiondef prints it; phase
 * 0 before domains, 1 after domains and composite types, 2 after tables,
 * 3 after views. */
static inline pgg_object o_func(const char *s, const char *n, const char *def, int phase)
{
  return (pgg_object){.kind = PGG_OBJ_FUNCTION, .schema = S(s), .name = S(n),
                      .definition = S(def), .relkind = 'f', .position = phase};
}
/* A view ('v') or materialized view ('m'); depth of views below it. */
static inline pgg_object o_view(const char *s, const char *n, char relkind, const char *def,
                                int depth)
{
  return (pgg_object){.kind = PGG_OBJ_VIEW, .schema = S(s), .name = S(n), .relkind = relkind,
                      .definition = S(def), .position = depth};
}
static inline pgg_object o_trigger(const char *s, const char *t, const char *n, const char *def)
{
  return (pgg_object){.kind = PGG_OBJ_TRIGGER, .schema = S(s), .parent = S(t), .name = S(n),
                      .definition = S(def)};
}
/* name is "table.column" as introspection builds it. */
static inline pgg_object o_owned(const char *s, const char *seq, const char *name,
                                 const char *table, const char *column)
{
  return (pgg_object){.kind = PGG_OBJ_OWNED_BY, .schema = S(s), .parent = S(seq),
                      .name = S(name), .type = S(table), .definition = S(column)};
}
/* An object of a kind pgguard only reports. */
static inline pgg_object o_unmodeled(pgg_obj_kind kind, const char *s, const char *parent,
                                     const char *n, const char *def)
{
  return (pgg_object){.kind = kind, .schema = S(s), .parent = S(parent), .name = S(n),
                      .definition = S(def)};
}

static inline void add(pgg_catalog *c, pgg_object o)
{
  if (pgg_catalog_add(c, &o) != PGG_OK)
    abort();
}

#endif
