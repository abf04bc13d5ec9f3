/*
 * catalog.h — plain structs for one database's schema as pgguard sees it,
 * the drift between two of them, and the additive repair plan. Shadow
 * (desired) and live catalogs are read by the same introspection into these
 * structs, so the diff compares like with like.
 */
#ifndef PGG_CATALOG_H
#define PGG_CATALOG_H

#include "pgg.h"

typedef enum {
  PGG_OBJ_SCHEMA = 0,
  PGG_OBJ_ENUM,         /* an enum type */
  PGG_OBJ_ENUM_LABEL,   /* one label of an enum type: parent = type name */
  PGG_OBJ_SEQUENCE,     /* a standalone or serial-owned sequence (not identity) */
  PGG_OBJ_TABLE,        /* an ordinary or partitioned table */
  PGG_OBJ_COLUMN,       /* parent = table name */
  PGG_OBJ_CONSTRAINT,   /* primary key, unique, check, foreign key: parent = table */
  PGG_OBJ_INDEX,        /* an index not backing a constraint: parent = table */
  /* Modeled kinds added later; appended so the counts of the older ones
   * keep their place in every report. */
  PGG_OBJ_EXTENSION,    /* schema NULL (extensions are per database); type = its schema,
                         * definition = its version */
  PGG_OBJ_DOMAIN,       /* definition = "AS <base> [COLLATE] [DEFAULT] [NOT NULL] [CONSTRAINT ...]" */
  PGG_OBJ_COMPOSITE,    /* a composite type: definition = "(<attribute>, ...)" */
  PGG_OBJ_FUNCTION,     /* name = "f(<identity arguments>)", definition = pg_get_functiondef;
                         * relkind = prokind; position: 0 before domains, 1 after
                         * domains and composite types, 2 after tables, 3 after views */
  PGG_OBJ_VIEW,         /* a view ('v') or materialized view ('m') in relkind; definition =
                         * pg_get_viewdef; type = reloptions; position = nesting depth */
  PGG_OBJ_TRIGGER,      /* parent = table or view; definition = pg_get_triggerdef */
  PGG_OBJ_OWNED_BY,     /* a sequence's OWNED BY: parent = sequence, name = "table.column",
                         * type = table, definition = column */
  /*
   * Kinds pgguard does not model: reported as unsupported when the desired
   * schema has them and live does not, never created, never ignored.
   */
  PGG_OBJ_POLICY,       /* parent = table */
  PGG_OBJ_RULE,         /* parent = table or view */
  PGG_OBJ_EVENT_TRIGGER,  /* schema NULL */
  PGG_OBJ_PUBLICATION,    /* schema NULL */
  PGG_OBJ_STATISTICS,   /* CREATE STATISTICS */
  PGG_OBJ_COMMENT,      /* schema NULL; parent = pg_describe_object, definition = the text */
  PGG_OBJ_GRANT,        /* schema NULL; parent = pg_describe_object, name = "<privilege> to <role>" */
  PGG_OBJ_OTHER,        /* schema NULL; name = pg_identify_object's type and identity */
  PGG_OBJ__COUNT
} pgg_obj_kind;

/* The label used in metrics and reports: "schema", "enum", "enum_label", ... */
const char *pgg_obj_kind_name(pgg_obj_kind k);
/* Whether pgguard can create a missing object of this kind (false: it is
 * reported as unsupported). */
bool pgg_obj_kind_modeled(pgg_obj_kind k);

/*
 * One catalog object. Strings are owned by the catalog (heap). Every
 * definition string comes from PostgreSQL itself (format_type, pg_get_expr,
 * pg_get_indexdef, pg_get_constraintdef) read with search_path = '' so that
 * every name in it is schema-qualified.
 */
typedef struct {
  pgg_obj_kind kind;
  char *schema;        /* namespace name */
  char *parent;        /* table (column, constraint, index) or enum type (label); NULL otherwise */
  char *name;          /* object name; for a label, the label itself */

  /* PGG_OBJ_COLUMN */
  char *type;          /* format_type(atttypid, atttypmod) */
  bool not_null;
  char *default_expr;  /* pg_get_expr(adbin), NULL if none (and not generated) */
  char identity;       /* attidentity: 'a' always, 'd' by default, 0 none */
  char generated;      /* attgenerated: 's' stored, 0 none; default_expr holds its expression */
  int position;        /* attnum, or label sort order (enumsortorder rank), 1-based */

  /* PGG_OBJ_CONSTRAINT: 'p' primary key, 'u' unique, 'c' check, 'f' foreign key */
  char contype;
  /* PGG_OBJ_CONSTRAINT: pg_get_constraintdef; PGG_OBJ_INDEX: pg_get_indexdef;
   * PGG_OBJ_SEQUENCE: "AS bigint INCREMENT BY 1 MINVALUE 1 MAXVALUE ... START WITH 1 CACHE 1 [NO] CYCLE" */
  char *definition;

  /* PGG_OBJ_TABLE, live catalog only: the table holds at least one row.
   * Filled by the repair step before planning, not by introspection. */
  bool has_rows;
  char relkind;        /* PGG_OBJ_TABLE: 'r' or 'p'; PGG_OBJ_VIEW: 'v' or 'm';
                        * PGG_OBJ_FUNCTION: 'f', 'p' or 'w' */
  /* PGG_OBJ_TABLE, PGG_OBJ_SEQUENCE: 'u' for UNLOGGED, 'p' (or 0) permanent */
  char persistence;
  /* PGG_OBJ_TABLE: a partition's parent, quoted and qualified; its bound
   * (pg_get_expr of relpartbound) is in default_expr, and a partitioned
   * table's key (pg_get_partkeydef) in definition. */
  char *partition_of;
  /* PGG_OBJ_COLUMN: " COLLATE <qualified>" when not the type's default */
  char *collation;
  /* PGG_OBJ_COLUMN: its type is a domain with a constraint (NOT NULL or
   * CHECK, of it or of a domain it is based on): ADD COLUMN checks every
   * row, so PostgreSQL rewrites the table. */
  bool checked_domain;
  /* PGG_OBJ_COLUMN of the desired catalog (pgg_probe_defaults): PostgreSQL
   * cannot store its default as a missing value (the default is volatile,
   * or could not be evaluated), so ADD COLUMN rewrites a table with rows. */
  bool volatile_default;
  bool default_unprobed;  /* ... because the probe could not run or evaluate it */
} pgg_object;

/*
 * A function, procedure or aggregate by name only (overloads are not told
 * apart). Not a pgg_obj_kind: routines are not diffed or planned yet, they
 * only let a 42883 (undefined function) be matched against the desired
 * schema.
 */
typedef struct {
  char *schema;
  char *name;
} pgg_routine;

typedef struct {
  pgg_object *objs;
  size_t n, cap;
  /* Routine names, in no particular order; filled for the desired catalog
   * only (pgg_introspect_routines). Never diffed. */
  pgg_routine *routines;
  size_t nroutines, routines_cap;
} pgg_catalog;

void pgg_catalog_init(pgg_catalog *c);
void pgg_catalog_free(pgg_catalog *c);
/* Append a copy of o (strings duplicated). Returns PGG_OK or PGG_ERR_NOMEM. */
int pgg_catalog_add(pgg_catalog *c, const pgg_object *o);
/* Sort into a canonical order: kind, schema, parent, name. */
void pgg_catalog_sort(pgg_catalog *c);
/* The object with this identity, or NULL (catalog must be sorted). */
const pgg_object *pgg_catalog_find(const pgg_catalog *c, pgg_obj_kind kind,
                                   const char *schema, const char *parent,
                                   const char *name);
/* Remove the objects whose gone[i] is true, keeping the others' order. */
void pgg_catalog_remove(pgg_catalog *c, const bool *gone);
/* Append a routine name (strings duplicated). PGG_OK or PGG_ERR_NOMEM. */
int pgg_catalog_add_routine(pgg_catalog *c, const char *schema, const char *name);
/* Whether a routine of this name exists; schema NULL means in any schema. */
bool pgg_catalog_has_routine(const pgg_catalog *c, const char *schema, const char *name);

/* ---- Drift (guard/diff.c) --------------------------------------------- */

typedef enum {
  PGG_DRIFT_MISSING = 0,      /* desired, not live: repairable */
  PGG_DRIFT_EXTRA,            /* live, not desired: reported, never touched */
  PGG_DRIFT_CONFLICTING,      /* both, but different: reported, never touched */
  PGG_DRIFT_UNSUPPORTED,      /* desired, not live, of a kind pgguard cannot create */
  /* desired, not live, modeled, but creating it would rewrite or scan a
   * table with rows under ACCESS EXCLUSIVE: left to a migration (why says
   * what would) */
  PGG_DRIFT_NEEDS_MIGRATION,
  /* desired, not live, and live has one extra object that looks like it
   * under its old name (a backup older than a RENAME): not created, so the
   * application's writes do not split between twins. live = the old one. */
  PGG_DRIFT_SUSPECTED_RENAME,
  PGG_DRIFT__COUNT
} pgg_drift_state;

/* "missing", "extra", "conflicting", "unsupported", "needs_migration", "suspected_rename" */
const char *pgg_drift_state_name(pgg_drift_state s);

typedef struct {
  pgg_drift_state state;
  const pgg_object *desired;  /* NULL for extra; points into the desired catalog */
  const pgg_object *live;     /* NULL for missing; points into the live catalog */
  /*
   * For missing objects: true when the object's container is itself missing
   * (a column of a missing table, a label of a missing enum): it is created
   * with its container and not counted on its own in the metrics.
   */
  bool implied;
  char *why;                  /* for conflicting: what differs, human-readable */
} pgg_drift_item;

typedef struct {
  pgg_drift_item *items;
  size_t n, cap;
  /* counts[kind][state], implied items excluded */
  unsigned counts[PGG_OBJ__COUNT][PGG_DRIFT__COUNT];
} pgg_drift;

void pgg_drift_init(pgg_drift *d);
void pgg_drift_free(pgg_drift *d);
/*
 * Compare desired (the shadow database) with live. Both must be sorted.
 * The drift points into both catalogs: keep them alive while it is used.
 */
int pgg_diff(const pgg_catalog *desired, const pgg_catalog *live, pgg_drift *out);
/* Non-implied missing objects (what the drift gauge reports as missing). */
unsigned pgg_drift_missing(const pgg_drift *d);
/* Missing enum labels (22P02 is guarded only while this is non-zero). */
unsigned pgg_drift_missing_labels(const pgg_drift *d);
/* Readable table (one line per item) and JSON, appended to out. */
int pgg_drift_format_text(const pgg_drift *d, pgg_buf *out);
int pgg_drift_format_json(const pgg_drift *d, pgg_buf *out);
/* One name as the text report prints it: bare when it is a plain lower-case
 * identifier, else double-quoted ("" inside), control bytes as \xNN. */
int pgg_text_name(pgg_buf *b, const char *s);
/* One drift item as the JSON report prints it ({"state", "kind", "schema",
 * "parent", "name", "why"}). */
int pgg_drift_item_json(pgg_buf *b, const pgg_drift_item *it);
/* A JSON string literal of s (null for NULL), invalid UTF-8 replaced. */
int pgg_json_str(pgg_buf *b, const char *s);
/* Non-implied items of the drift in this state. */
unsigned pgg_drift_state_count(const pgg_drift *d, pgg_drift_state s);
/*
 * Missing columns and constraints whose creation would rewrite or scan a
 * table with rows under ACCESS EXCLUSIVE (a volatile default, identity, a
 * stored generated column, a domain with constraints, a key over nullable
 * columns, an exclusion constraint, an index on a partitioned table) become
 * PGG_DRIFT_NEEDS_MIGRATION with the reason in why, and so do missing
 * indexes and constraints naming such a column. Needs has_rows of live
 * tables (pgg_introspect_has_rows) and volatile_default of desired columns.
 */
int pgg_drift_hazards(pgg_drift *d, const pgg_catalog *live);
/*
 * Suspected renames (guard/renames.c), after pgg_diff: in one table exactly
 * one missing and one extra column alike in all but name, or in one schema
 * exactly one missing and one extra table with the same columns, become one
 * suspected_rename item (desired the new object, live the old) instead of a
 * missing and an extra one. What the plan would build on the new object
 * (its columns, indexes and constraints naming it, foreign keys and views
 * pointing at it) is held back too: suspected_rename, implied, never
 * planned. The old table's own objects go implied with it. Pure.
 */
int pgg_drift_renames(pgg_drift *d);
/* Whether the missing object o would be built on column c (an index,
 * trigger or constraint naming it, a foreign key or view reading it, an
 * OWNED BY pointing at it), or on table or view r. From the definitions
 * PostgreSQL printed; used to hold back what depends on a held object. */
bool pgg_needs_column(const pgg_object *o, const pgg_object *c);
bool pgg_needs_relation(const pgg_object *o, const pgg_object *r);
/* Whether a printed definition names schema.name (string literals skipped). */
bool pgg_def_names_qualified(const char *def, const char *schema, const char *name);

/* ---- Additive plan (guard/plan.c) ------------------------------------- */

/* The only kinds of statement the planner may ever emit, in the order of
 * the plan's phases (functions that need a table, and indexes of
 * materialized views, come later than their kind's place). */
typedef enum {
  PGG_STMT_CREATE_SCHEMA = 0,
  PGG_STMT_CREATE_EXTENSION,  /* CREATE EXTENSION IF NOT EXISTS ... VERSION '<the shadow's>' */
  PGG_STMT_CREATE_ENUM,
  PGG_STMT_ADD_ENUM_VALUE,    /* ALTER TYPE ... ADD VALUE: run in its own transaction, first */
  PGG_STMT_CREATE_DOMAIN,
  PGG_STMT_CREATE_COMPOSITE,  /* CREATE TYPE ... AS (...) */
  PGG_STMT_CREATE_FUNCTION,   /* CREATE FUNCTION/PROCEDURE, never OR REPLACE */
  PGG_STMT_CREATE_SEQUENCE,
  PGG_STMT_CREATE_TABLE,      /* also UNLOGGED, PARTITION BY, PARTITION OF */
  PGG_STMT_ADD_COLUMN,
  PGG_STMT_CREATE_INDEX,
  PGG_STMT_ADD_CONSTRAINT,
  PGG_STMT_CREATE_VIEW,       /* CREATE VIEW, CREATE MATERIALIZED VIEW ... WITH NO DATA */
  PGG_STMT_CREATE_TRIGGER,
  PGG_STMT_SET_OWNED_BY,      /* ALTER SEQUENCE ... OWNED BY, for a sequence owned by none */
  PGG_STMT_REFRESH_MATVIEW,   /* of a materialized view the plan creates: run after COMMIT */
  /*
   * Indexes, primary keys and unique constraints of existing tables with
   * rows: built after COMMIT, outside any transaction, one unit of three at
   * a time, under pgguard's own name (pgg_build_name) until finished:
   *   DROP INDEX CONCURRENTLY IF EXISTS <build name>  -- run only when that
   *       index is INVALID (a build that failed): the one DROP pgguard runs
   *   CREATE [UNIQUE] INDEX CONCURRENTLY <build name> ON ...
   *   ALTER INDEX <build name> RENAME TO <name>, or
   *   ALTER TABLE ... ADD CONSTRAINT <name> PRIMARY KEY|UNIQUE USING INDEX <build name>
   */
  PGG_STMT_DROP_INVALID_INDEX,
  PGG_STMT_CREATE_INDEX_CONCURRENTLY,
  PGG_STMT_RENAME_INDEX,
  PGG_STMT_ADD_CONSTRAINT_USING_INDEX,
  PGG_STMT__COUNT
} pgg_stmt_kind;

/* The kinds from here on run after COMMIT, outside a transaction; so does
 * a foreign key (PGG_STMT_ADD_CONSTRAINT) that references a key built
 * there: it follows the units. */
#define PGG_STMT_FIRST_CONCURRENT PGG_STMT_DROP_INVALID_INDEX

/* "pgguard_build_" and 16 hex digits of a hash of (schema, table, name,
 * definition). */
#define PGG_BUILD_PREFIX "pgguard_build_"
#define PGG_BUILD_NAME_LEN 31
void pgg_build_name(const char *schema, const char *table, const char *name, const char *def,
                    char out[PGG_BUILD_NAME_LEN]);

/*
 * A primary key's or unique constraint's definition (pg_get_constraintdef)
 * in the one shape an index can be built for concurrently and then attached
 * with ADD CONSTRAINT ... USING INDEX: `PRIMARY KEY|UNIQUE [NULLS NOT
 * DISTINCT ](cols)[ INCLUDE (cols)][ DEFERRABLE][ INITIALLY DEFERRED]`.
 * The spans point into def.
 */
typedef struct {
  bool primary;
  bool nulls_not_distinct;
  const char *cols, *include, *deferral;   /* "(a, b)", "(c)" or NULL, " DEFERRABLE..." or "" */
  size_t cols_len, include_len;
} pgg_key_def;

bool pgg_key_def_parse(const char *def, pgg_key_def *out);
/* Calls fn(name) for each column of a key's "(a, "B")" list, unquoted; stops at
 * the first false. Returns false when the list is not well formed. */
bool pgg_key_columns(const char *cols, size_t len, bool (*fn)(const char *name, void *arg),
                     void *arg);

/*
 * A statement whose text the planner could not lex (a function body) is
 * safe only when sent alone: repair.c runs every statement through the
 * extended protocol, where PostgreSQL refuses a second statement.
 */
typedef struct {
  pgg_stmt_kind kind;
  char *sql;                  /* one statement, no trailing semicolon, identifiers quoted */
  /* The last statement of a concurrent unit, and a foreign key that follows
   * one: schema, table and name of the index (RENAME) or constraint it
   * makes, so the builder skips a unit whose goal exists. NULL otherwise. */
  char *target[3];
} pgg_stmt;

/* Free a statement's strings (the plan frees them all: pgg_plan_free). */
void pgg_stmt_free(pgg_stmt *s);

typedef struct {
  pgg_stmt *stmts;
  size_t n, cap;
  /* Missing NOT NULL columns added nullable because their table has rows. */
  unsigned relaxed_not_null;
} pgg_plan;

/* Whether statement i is in the plan's concurrent part (the first
 * concurrent kind and everything after it). */
bool pgg_stmt_concurrent(const pgg_plan *p, size_t i);

void pgg_plan_init(pgg_plan *p);
void pgg_plan_free(pgg_plan *p);
/*
 * Turn the missing items of a drift into additive statements in dependency
 * order: schemas, extensions, enum types, enum labels, functions a domain
 * or a table may call, domains, composite types, functions whose signature
 * names those, sequences, tables and partitions, columns, functions that
 * need a table, indexes, constraints, views (inner first), functions that
 * need a view, indexes of materialized views,
 * triggers, sequence OWNED BY, and last the REFRESH of new materialized
 * views. Pure: reads only the drift (and has_rows of live tables). Never
 * emits anything but the kinds above.
 */
int pgg_plan_build(const pgg_drift *d, const pgg_catalog *live, pgg_plan *out);
/* "CREATE TABLE", "ALTER TABLE ... ADD COLUMN", ...: for messages and reports. */
const char *pgg_stmt_kind_name(pgg_stmt_kind k);
/* The lock a statement takes on an existing relation and what it may block
 * (for `plan` and the README); "" for a statement that only creates. */
const char *pgg_stmt_lock(const pgg_stmt *s);
/* The statements grouped as they run, a "-- <group>:" line before each
 * group and a "-- lock: ..." line before each statement that locks an
 * existing relation; every statement ends with ";\n". */
int pgg_plan_format(const pgg_plan *p, pgg_buf *out);
/* How statement i runs: */
enum {
  PGG_GROUP_LABELS = 0,    /* enum labels, committed first */
  PGG_GROUP_MAIN,          /* the one transaction, a savepoint per statement */
  PGG_GROUP_REFRESH,       /* materialized views filled after COMMIT */
  PGG_GROUP_CONCURRENT,    /* index builds, on the builder's session */
};
int pgg_stmt_group(const pgg_plan *p, size_t i);
const char *pgg_group_name(int group);

/*
 * Quote an identifier the way PostgreSQL's quote_ident does (always quoting:
 * "name", embedded quotes doubled). Pure, no libpq connection needed.
 */
int pgg_quote_ident(pgg_buf *out, const char *ident);
int pgg_quote_literal(pgg_buf *out, const char *s);

#endif
