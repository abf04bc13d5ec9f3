/*
 * explain.h — does the desired schema explain a guarded error? Reads the
 * object a PostgreSQL error message names (PostgreSQL 15's English wording)
 * and looks it up in the desired catalog held in memory. Pure: no I/O, no
 * catalog query, so deciding costs nothing on the server.
 */
#ifndef PGG_EXPLAIN_H
#define PGG_EXPLAIN_H

#include "catalog.h"

typedef enum {
  PGG_EXPLAIN_NO = 0,       /* parsed, and the desired schema lacks it (or the message is not one we know): pass through */
  PGG_EXPLAIN_YES,          /* the desired schema has the object the error names: repair and maybe replay */
  PGG_EXPLAIN_TRANSLATED,   /* message translated (S differs from V): the caller falls back to a catalog check */
} pgg_explain;

/* "no", "yes", "translated": for logs and metric labels. */
const char *pgg_explain_name(pgg_explain e);

/*
 * sqlstate (C), sev_s (S, the localized severity), sev_v (V, never
 * translated; NULL on servers before 9.6), message (M), as they came in the
 * ErrorResponse; any of them may be NULL.
 *
 * NO when: desired is NULL (not loaded), the SQLSTATE is not one of the six
 * guarded ones (42P01, 42703, 42704, 22P02, 42883, 3F000), S, C or M is
 * missing, the wording is not one we know (a typo'd alias, an unknown
 * setting, a replication slot), or the object it names is not in desired.
 * TRANSLATED when S differs from V, or when V is missing and S is not an
 * English severity: the message cannot be read, the caller decides with a
 * catalog check instead. Checked in that order, before any parsing.
 */
pgg_explain pgg_explain_error(const pgg_catalog *desired, const char *sqlstate,
                              const char *sev_s, const char *sev_v, const char *message);

/* ---- the parser underneath, exported for tests and the fuzzer ----------- */

typedef enum {
  PGG_NAMED_NONE = 0,
  PGG_NAMED_RELATION,    /* 42P01 relation "X" does not exist */
  PGG_NAMED_COLUMN,      /* 42703 column X does not exist */
  PGG_NAMED_TYPE,        /* 42704 type "X" does not exist */
  PGG_NAMED_ENUM_VALUE,  /* 22P02 invalid input value for enum X" */
  PGG_NAMED_ROUTINE,     /* 42883 function X does not exist, procedure X does not exist */
  PGG_NAMED_SCHEMA,      /* 3F000 schema "X" does not exist */
} pgg_named_kind;

/*
 * The X of the wordings above: what lies between the wording's fixed prefix
 * and its fixed suffix, a slice of the message (not NUL-terminated), bytes
 * as the server sent them. PostgreSQL prints names raw (no quoting, no
 * escaping), so a name may itself contain '"', '.', ':' or '(' and X is
 * split only when matched, trying every reading:
 *
 *   RELATION    t or s.t
 *   COLUMN      "c"  or  "c" of relation "t"  (quotes kept)  or  q.c (q a
 *               table or an alias, unquoted)
 *   TYPE        x or s.x, maybe with a trailing []
 *   ENUM_VALUE  t: "v  (t as format_type prints it: maybe schema-qualified,
 *               each part quoted when it needs to be; v the label)
 *   ROUTINE     f(argument types) or s.f(argument types)
 *   SCHEMA      s
 */
typedef struct {
  pgg_named_kind kind;
  const char *text;
  size_t len;
} pgg_named_object;

/*
 * Recognize message as the wording its SQLSTATE uses for a missing object.
 * PGG_OK with *out set, or PGG_ERR_PROTO (out->kind = PGG_NAMED_NONE) for
 * any other SQLSTATE or wording, or a NULL argument.
 */
int pgg_error_object_parse(const char *sqlstate, const char *message, pgg_named_object *out);

/*
 * Whether some reading of o names an object of desired. Names match
 * exactly (bytes, case-sensitive: PostgreSQL reports the folded name); an
 * unqualified name matches in any schema (PostgreSQL 15 does not report the
 * search_path). A column qualified by something that is not a desired table
 * (an alias) matches any desired table with that column. A routine matches
 * by name, whatever its arguments.
 */
bool pgg_named_object_desired(const pgg_catalog *desired, const pgg_named_object *o);

#endif
