/*
 * introspect.c — reads one database's catalog (schemas, extensions, types,
 * sequences, tables, columns, constraints, indexes, functions, views,
 * triggers, and the kinds pgguard only reports) into a pgg_catalog, one
 * query per kind.
 */
#include "introspect.h"
#include "exclude.h"

#include <stdlib.h>
#include <string.h>

/*
 * Every query runs with search_path = '', so format_type, pg_get_expr,
 * pg_get_indexdef and pg_get_constraintdef schema-qualify every name they
 * print: shadow and live then compare by text, and the planner can replay a
 * definition in any search_path.
 */

/* The schemas that hold user objects (n is the pg_namespace row). */
#define USER_NS                                                              \
  "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"        \
  " AND n.nspname !~ '^pg_(toast_)?temp_'"

/* The object (classid, objid) is not a member of an extension. */
#define NOT_EXT(classid, objid)                                              \
  " NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e"                        \
  " WHERE e.classid = '" classid "'::pg_catalog.regclass"                   \
  " AND e.objid = " objid " AND e.deptype = 'e')"

/*
 * The tables pgguard guards (c is the pg_class row, n its namespace):
 * ordinary and partitioned, not temporary, not an extension's. Partitions are
 * left out: the catalog has no way to say PARTITION OF, and creating one as a
 * plain table would be wrong.
 */
#define USER_TABLE                                                           \
  "c.relkind IN ('r', 'p') AND NOT c.relispartition"                         \
  " AND c.relpersistence <> 't' AND " USER_NS " AND"                         \
  NOT_EXT("pg_catalog.pg_class", "c.oid")

static const char q_schemas[] =
  "SELECT n.nspname FROM pg_catalog.pg_namespace n"
  " WHERE " USER_NS " AND" NOT_EXT("pg_catalog.pg_namespace", "n.oid");

/* One row per label, and one with a NULL label for an enum that has none. */
static const char q_enums[] =
  "SELECT n.nspname, t.typname, l.enumlabel,"
  " pg_catalog.row_number() OVER (PARTITION BY t.oid ORDER BY l.enumsortorder)"
  " FROM pg_catalog.pg_type t"
  " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
  " LEFT JOIN pg_catalog.pg_enum l ON l.enumtypid = t.oid"
  " WHERE t.typtype = 'e' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_type", "t.oid");

/* Identity columns' sequences (deptype 'i') come with their column. */
static const char q_sequences[] =
  "SELECT n.nspname, c.relname,"
  " 'AS ' || pg_catalog.format_type(s.seqtypid, NULL)"
  " || ' INCREMENT BY ' || s.seqincrement || ' MINVALUE ' || s.seqmin"
  " || ' MAXVALUE ' || s.seqmax || ' START WITH ' || s.seqstart"
  " || ' CACHE ' || s.seqcache"
  " || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END, c.relpersistence"
  " FROM pg_catalog.pg_sequence s"
  " JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relpersistence <> 't' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_class", "c.oid") " AND"
  " NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend i"
  " WHERE i.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
  " AND i.objid = c.oid AND i.deptype = 'i')";

/* Partitions are tables of their own (CREATE TABLE ... PARTITION OF), in
 * the order of their depth below their root. */
static const char q_tables[] =
  "SELECT n.nspname, c.relname, c.relkind, c.relpersistence,"
  " CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END,"
  " CASE WHEN c.relispartition THEN (SELECT pg_catalog.quote_ident(pn.nspname) || '.'"
  " || pg_catalog.quote_ident(pc.relname) FROM pg_catalog.pg_inherits i"
  " JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent"
  " JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace"
  " WHERE i.inhrelid = c.oid) END,"
  " CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END,"
  " (SELECT pg_catalog.count(*) FROM pg_catalog.pg_partition_ancestors(c.oid)) - 1"
  " FROM pg_catalog.pg_class c"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_class", "c.oid");

/* " COLLATE schema.name" for a collation oid that is not typ's default. */
#define COLLATE_OF(coll, typcoll)                                            \
  "CASE WHEN " coll " <> 0 AND " coll " IS DISTINCT FROM " typcoll           \
  " THEN (SELECT ' COLLATE ' || pg_catalog.quote_ident(cn.nspname) || '.'"   \
  " || pg_catalog.quote_ident(co.collname) FROM pg_catalog.pg_collation co"  \
  " JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace"            \
  " WHERE co.oid = " coll ") END"

static const char q_columns[] =
  "SELECT n.nspname, c.relname, a.attname,"
  " pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,"
  " pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity,"
  " a.attgenerated, a.attnum,"
  " " COLLATE_OF("a.attcollation", "(SELECT t.typcollation FROM pg_catalog.pg_type t"
                 " WHERE t.oid = a.atttypid)") ","
  /* A domain's constraints, its base domains' included. */
  " EXISTS (WITH RECURSIVE dom(oid) AS (SELECT a.atttypid UNION ALL"
  " SELECT t.typbasetype FROM dom JOIN pg_catalog.pg_type t ON t.oid = dom.oid"
  " WHERE t.typtype = 'd')"
  " SELECT 1 FROM dom JOIN pg_catalog.pg_type t ON t.oid = dom.oid"
  " WHERE t.typtype = 'd' AND (t.typnotnull OR EXISTS (SELECT 1"
  " FROM pg_catalog.pg_constraint k WHERE k.contypid = t.oid)))"
  " FROM pg_catalog.pg_attribute a"
  " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " LEFT JOIN pg_catalog.pg_attrdef d"
  " ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
  " WHERE a.attnum > 0 AND NOT a.attisdropped AND " USER_TABLE;

static const char q_constraints[] =
  "SELECT n.nspname, c.relname, k.conname, k.contype,"
  " pg_catalog.pg_get_constraintdef(k.oid)"
  " FROM pg_catalog.pg_constraint k"
  " JOIN pg_catalog.pg_class c ON c.oid = k.conrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE k.contype IN ('p', 'u', 'c', 'f', 'x') AND " USER_TABLE;

/* An index that backs a primary key, unique or exclusion constraint is the
 * constraint's business: the constraint creates it. Indexes of materialized
 * views are read too; those of partitions come with their parent's. */
static const char q_indexes[] =
  "SELECT n.nspname, c.relname, ic.relname,"
  " pg_catalog.pg_get_indexdef(x.indexrelid)"
  " FROM pg_catalog.pg_index x"
  " JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid"
  " JOIN pg_catalog.pg_class c ON c.oid = x.indrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE (c.relkind = 'm' OR c.relkind IN ('r', 'p') AND NOT c.relispartition)"
  " AND c.relpersistence <> 't' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_class", "c.oid")
  " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k"
  " WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid"
  " AND k.contype IN ('p', 'u', 'x'))";

/* Extensions are per database: the schema they live in is a property. */
static const char q_extensions[] =
  "SELECT e.extname, n.nspname, e.extversion"
  " FROM pg_catalog.pg_extension e"
  " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace";

static const char q_domains[] =
  "SELECT n.nspname, t.typname,"
  " 'AS ' || pg_catalog.format_type(t.typbasetype, t.typtypmod)"
  " || COALESCE(" COLLATE_OF("t.typcollation", "b.typcollation") ", '')"
  " || COALESCE(' DEFAULT ' || pg_catalog.pg_get_expr(t.typdefaultbin, 0), '')"
  " || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END"
  " || COALESCE((SELECT pg_catalog.string_agg(' CONSTRAINT '"
  " || pg_catalog.quote_ident(k.conname) || ' ' || pg_catalog.pg_get_constraintdef(k.oid),"
  " '' ORDER BY k.conname) FROM pg_catalog.pg_constraint k"
  " WHERE k.contypid = t.oid AND k.contype = 'c'), '')"
  " FROM pg_catalog.pg_type t"
  " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
  " JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype"
  " WHERE t.typtype = 'd' AND " USER_NS " AND" NOT_EXT("pg_catalog.pg_type", "t.oid");

static const char q_composites[] =
  "SELECT n.nspname, t.typname, '(' || COALESCE((SELECT pg_catalog.string_agg("
  " pg_catalog.quote_ident(a.attname) || ' '"
  " || pg_catalog.format_type(a.atttypid, a.atttypmod)"
  " || COALESCE(" COLLATE_OF("a.attcollation", "at.typcollation") ", ''),"
  " ', ' ORDER BY a.attnum)"
  " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type at ON at.oid = a.atttypid"
  " WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')'"
  " FROM pg_catalog.pg_type t"
  " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
  " JOIN pg_catalog.pg_class c ON c.oid = t.typrelid"
  " WHERE t.typtype = 'c' AND c.relkind = 'c' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_type", "t.oid");

/* A function in a trusted language (SQL, PL/pgSQL): the object owner may
 * create it. One in C or an untrusted PL needs a superuser and is reported
 * instead. */
#define TRUSTED_LANGUAGE                                                     \
  " EXISTS (SELECT 1 FROM pg_catalog.pg_language l WHERE l.oid = p.prolang"  \
  " AND l.lanpltrusted)"

/*
 * Overloads are told apart by their identity arguments. The last column
 * says when the function can be created: 0 before the domains (a domain's
 * check or a column default may call it), 1 after the domains and
 * composite types (its signature names one), 2 after the tables (its
 * signature names a table's row type, or a BEGIN ATOMIC body reads a
 * table), 3 after the views.
 * Aggregates are not functions pg_get_functiondef can print: "other".
 */
static const char q_functions[] =
  "SELECT n.nspname, p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid)"
  " || ')', pg_catalog.pg_get_functiondef(p.oid), p.prokind,"
  " COALESCE((SELECT pg_catalog.max(CASE WHEN dc.relkind IN ('v', 'm') THEN 3 ELSE 2 END)"
  " FROM pg_catalog.pg_depend d"
  " JOIN pg_catalog.pg_class dc ON dc.oid = CASE WHEN d.refclassid ="
  " 'pg_catalog.pg_class'::pg_catalog.regclass THEN d.refobjid ELSE (SELECT dt.typrelid"
  " FROM pg_catalog.pg_type dt WHERE dt.oid = d.refobjid) END"
  " WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid"
  " AND d.deptype = 'n' AND d.refclassid IN ('pg_catalog.pg_class'::pg_catalog.regclass,"
  " 'pg_catalog.pg_type'::pg_catalog.regclass)"
  " AND dc.relkind IN ('r', 'p', 'f', 'v', 'm')),"
  " CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_depend d"
  " JOIN pg_catalog.pg_type dt ON dt.oid = d.refobjid"
  " WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid"
  " AND d.deptype = 'n' AND d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass"
  " AND (dt.typtype = 'd' OR dt.typtype = 'c')) THEN 1 ELSE 0 END)"
  " FROM pg_catalog.pg_proc p"
  " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
  " WHERE p.prokind IN ('f', 'p', 'w') AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_proc", "p.oid") " AND" TRUSTED_LANGUAGE;

/* Views and materialized views, each with the depth of views below it, so
 * a view is created after the views it reads. */
static const char q_views[] =
  "WITH RECURSIVE dep(v, ref) AS (SELECT DISTINCT r.ev_class, d.refobjid"
  " FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_depend d"
  " ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = r.oid"
  " AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid <> r.ev_class"
  " JOIN pg_catalog.pg_class rc ON rc.oid = d.refobjid AND rc.relkind IN ('v', 'm')"
  " WHERE r.rulename = '_RETURN'),"
  " lvl(v, depth) AS (SELECT c.oid, 0 FROM pg_catalog.pg_class c WHERE c.relkind IN ('v', 'm')"
  " UNION ALL SELECT dep.v, lvl.depth + 1 FROM dep JOIN lvl ON lvl.v = dep.ref"
  " WHERE lvl.depth < 64)"
  " SELECT n.nspname, c.relname, c.relkind,"
  " pg_catalog.regexp_replace(pg_catalog.pg_get_viewdef(c.oid), ';\\s*$', ''),"
  " pg_catalog.array_to_string(c.reloptions, ', '),"
  " (SELECT pg_catalog.max(lvl.depth) FROM lvl WHERE lvl.v = c.oid)"
  " FROM pg_catalog.pg_class c"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relkind IN ('v', 'm') AND c.relpersistence <> 't' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_class", "c.oid");

/* A partition's clone of its parent's trigger comes with the parent's. A
 * disabled (or replica-only) trigger is not one CREATE TRIGGER makes: it is
 * reported unsupported instead of being created enabled. */
static const char q_triggers[] =
  "SELECT n.nspname, c.relname, t.tgname, pg_catalog.pg_get_triggerdef(t.oid)"
  " FROM pg_catalog.pg_trigger t"
  " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND t.tgenabled = 'O'"
  " AND c.relpersistence <> 't' AND "
  USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid") " AND"
  NOT_EXT("pg_catalog.pg_trigger", "t.oid");

/* A serial column's sequence (deptype 'a'; identity sequences are 'i'). A
 * sequence lives in its table's schema. */
static const char q_owned_by[] =
  "SELECT n.nspname, s.relname, t.relname || '.' || a.attname, t.relname, a.attname"
  " FROM pg_catalog.pg_depend d"
  " JOIN pg_catalog.pg_class s ON s.oid = d.objid"
  " JOIN pg_catalog.pg_class t ON t.oid = d.refobjid"
  " JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace"
  " WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
  " AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'a'"
  " AND s.relkind = 'S' AND s.relpersistence <> 't' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_class", "s.oid");

/* ---- kinds pgguard reports but does not create -------------------------- */

/* Objects with privileges: catalog, oid, ACL (NULL: the defaults), owner,
 * and the kind acldefault() takes. */
#define ACL_OBJECTS                                                          \
  "(SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, c.oid,"    \
  " c.relacl AS acl, c.relowner AS owner,"                                  \
  " CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\" AS k"          \
  " FROM pg_catalog.pg_class c"                                              \
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"                \
  " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND " USER_NS " AND"   \
  NOT_EXT("pg_catalog.pg_class", "c.oid")                                    \
  " UNION ALL SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid,"      \
  " p.proacl, p.proowner, 'f' FROM pg_catalog.pg_proc p"                     \
  " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"                \
  " WHERE " USER_NS " AND" NOT_EXT("pg_catalog.pg_proc", "p.oid")            \
  " UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid,"      \
  " t.typacl, t.typowner, 'T' FROM pg_catalog.pg_type t"                     \
  " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"                \
  " WHERE " USER_NS " AND" NOT_EXT("pg_catalog.pg_type", "t.oid")            \
  " UNION ALL SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass, n.oid," \
  " n.nspacl, n.nspowner, 'n' FROM pg_catalog.pg_namespace n"                \
  " WHERE " USER_NS " AND" NOT_EXT("pg_catalog.pg_namespace", "n.oid") ")"

/* Rows: kind, schema, parent, name, definition. */
static const char q_unmodeled[] =
  /* text, not name: a UNION takes its first branch's types, and a name
   * would cut the longer descriptions below at 63 bytes. */
  "SELECT 'p'::text, n.nspname::text, c.relname::text, p.polname::text, p.polcmd::text || ' ' || p.polpermissive::text"
  " || ' ' || COALESCE(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '') || ' '"
  " || COALESCE(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')"
  " FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE " USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'r', n.nspname, c.relname, r.rulename, pg_catalog.pg_get_ruledef(r.oid)"
  " FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE r.rulename <> '_RETURN' AND " USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'e', NULL, NULL, et.evtname,"
  " et.evtevent || ' ' || et.evtfoid::pg_catalog.regproc::text"
  " FROM pg_catalog.pg_event_trigger et"
  " WHERE" NOT_EXT("pg_catalog.pg_event_trigger", "et.oid")
  " UNION ALL SELECT 'u', NULL, NULL, p.pubname, CASE WHEN p.puballtables THEN 'ALL TABLES'"
  " ELSE COALESCE((SELECT pg_catalog.string_agg(pt.schemaname || '.' || pt.tablename, ', '"
  " ORDER BY pt.schemaname, pt.tablename) FROM pg_catalog.pg_publication_tables pt"
  " WHERE pt.pubname = p.pubname), '') END"
  " FROM pg_catalog.pg_publication p"
  " UNION ALL SELECT 's', n.nspname, NULL, x.stxname, pg_catalog.pg_get_statisticsobjdef(x.oid)"
  " FROM pg_catalog.pg_statistic_ext x JOIN pg_catalog.pg_namespace n ON n.oid = x.stxnamespace"
  " WHERE " USER_NS " AND" NOT_EXT("pg_catalog.pg_statistic_ext", "x.oid")
  /* Comments on objects created after initdb, not an extension's. */
  " UNION ALL SELECT 'c', NULL, pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid),"
  " NULL, d.description FROM pg_catalog.pg_description d"
  " WHERE d.objoid >= 16384 AND d.classoid <> 'pg_catalog.pg_extension'::pg_catalog.regclass"
  " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = d.classoid"
  " AND e.objid = d.objoid AND e.deptype = 'e')"
  /* Privileges granted to roles other than the object's owner. */
  " UNION ALL SELECT 'g', NULL, pg_catalog.pg_describe_object(x.classid, x.oid, 0),"
  " a.privilege_type || ' to ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
  " ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END"
  " || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END, NULL"
  " FROM " ACL_OBJECTS " x"
  " CROSS JOIN LATERAL pg_catalog.aclexplode(x.acl) a WHERE a.grantee <> x.owner"
  /* Default privileges revoked (REVOKE EXECUTE ... FROM PUBLIC): a new
   * object would have them. */
  " UNION ALL SELECT 'g', NULL, pg_catalog.pg_describe_object(x.classid, x.oid, 0),"
  " d.privilege_type || ' revoked from ' || CASE WHEN d.grantee = 0 THEN 'PUBLIC'"
  " ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(d.grantee)) END, NULL"
  " FROM " ACL_OBJECTS " x"
  " CROSS JOIN LATERAL pg_catalog.aclexplode(pg_catalog.acldefault(x.k, x.owner)) d"
  " WHERE x.acl IS NOT NULL AND d.grantee <> x.owner AND NOT EXISTS (SELECT 1"
  " FROM pg_catalog.aclexplode(x.acl) a WHERE a.grantee = d.grantee"
  " AND a.privilege_type = d.privilege_type)"
  /* Column privileges (GRANT SELECT (c) ON t). */
  " UNION ALL SELECT 'g', NULL, pg_catalog.pg_describe_object("
  "'pg_catalog.pg_class'::pg_catalog.regclass, c.oid, at.attnum),"
  " a.privilege_type || ' to ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
  " ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END"
  " || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END, NULL"
  " FROM pg_catalog.pg_attribute at JOIN pg_catalog.pg_class c ON c.oid = at.attrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " CROSS JOIN LATERAL pg_catalog.aclexplode(at.attacl) a"
  " WHERE at.attacl IS NOT NULL AND at.attnum > 0 AND a.grantee <> c.relowner AND "
  USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid")
  /* Everything else a schema file can create, named by PostgreSQL. */
  " UNION ALL SELECT 'o', NULL, NULL, i.type || ' ' || i.identity, NULL FROM ("
  "SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass AS classid, p.oid FROM pg_catalog.pg_proc p"
  " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
  " WHERE (p.prokind = 'a' OR NOT" TRUSTED_LANGUAGE ") AND " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid FROM pg_catalog.pg_type t"
  " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
  " WHERE t.typtype IN ('b', 'r') AND " USER_NS " AND NOT EXISTS (SELECT 1"
  " FROM pg_catalog.pg_depend i WHERE i.classid = 'pg_catalog.pg_type'::pg_catalog.regclass"
  " AND i.objid = t.oid AND i.deptype = 'i')"
  " UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid FROM pg_catalog.pg_class c"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relkind = 'f' AND " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_collation x JOIN pg_catalog.pg_namespace n ON n.oid = x.collnamespace"
  " WHERE " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_conversion'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_conversion x JOIN pg_catalog.pg_namespace n ON n.oid = x.connamespace"
  " WHERE " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_operator x JOIN pg_catalog.pg_namespace n ON n.oid = x.oprnamespace"
  " WHERE " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_opclass'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_opclass x JOIN pg_catalog.pg_namespace n ON n.oid = x.opcnamespace"
  " WHERE " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_opfamily'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_opfamily x JOIN pg_catalog.pg_namespace n ON n.oid = x.opfnamespace"
  " WHERE " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_ts_config'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_ts_config x JOIN pg_catalog.pg_namespace n ON n.oid = x.cfgnamespace"
  " WHERE " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_ts_dict'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_ts_dict x JOIN pg_catalog.pg_namespace n ON n.oid = x.dictnamespace"
  " WHERE " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_ts_parser'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_ts_parser x JOIN pg_catalog.pg_namespace n ON n.oid = x.prsnamespace"
  " WHERE " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_ts_template'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_ts_template x JOIN pg_catalog.pg_namespace n ON n.oid = x.tmplnamespace"
  " WHERE " USER_NS
  " UNION ALL SELECT 'pg_catalog.pg_cast'::pg_catalog.regclass, x.oid FROM pg_catalog.pg_cast x"
  " WHERE x.oid >= 16384"
  " UNION ALL SELECT 'pg_catalog.pg_transform'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_transform x WHERE x.oid >= 16384"
  " UNION ALL SELECT 'pg_catalog.pg_language'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_language x WHERE x.oid >= 16384"
  " UNION ALL SELECT 'pg_catalog.pg_am'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_am x WHERE x.oid >= 16384"
  " UNION ALL SELECT 'pg_catalog.pg_foreign_data_wrapper'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_foreign_data_wrapper x"
  " UNION ALL SELECT 'pg_catalog.pg_foreign_server'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_foreign_server x"
  /* The view, not the table: pg_user_mapping itself is the superuser's only
   * (it holds passwords), and the admin role should not be one. */
  " UNION ALL SELECT 'pg_catalog.pg_user_mapping'::pg_catalog.regclass, x.umid"
  " FROM pg_catalog.pg_user_mappings x"
  " UNION ALL SELECT 'pg_catalog.pg_default_acl'::pg_catalog.regclass, x.oid"
  " FROM pg_catalog.pg_default_acl x"
  ") o CROSS JOIN LATERAL pg_catalog.pg_identify_object(o.classid, o.oid, 0) i"
  " WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = o.classid"
  " AND e.objid = o.oid AND e.deptype = 'e')"
  /* Table and column properties pgguard does not set. */
  " UNION ALL SELECT 'o', NULL, NULL, 'storage parameters of '"
  " || pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0),"
  " pg_catalog.array_to_string(c.reloptions, ', ')"
  " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.reloptions IS NOT NULL AND c.relkind IN ('r', 'p', 'm', 'i', 'I') AND "
  USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'o', NULL, NULL, 'access method of '"
  " || pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0),"
  " (SELECT am.amname::text FROM pg_catalog.pg_am am WHERE am.oid = c.relam)"
  " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relkind IN ('r', 'm') AND c.relam <> 0 AND c.relam <> (SELECT am.oid"
  " FROM pg_catalog.pg_am am WHERE am.amname = 'heap') AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'o', NULL, NULL, 'replica identity of '"
  " || pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0),"
  " c.relreplident::text"
  " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relkind IN ('r', 'p') AND c.relreplident <> 'd' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'o', NULL, NULL, 'clustered index of '"
  " || pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0),"
  " x.indexrelid::pg_catalog.regclass::text"
  " FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE x.indisclustered AND " USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'o', NULL, NULL, 'storage, compression or statistics target of '"
  " || pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid,"
  " at.attnum), at.attstorage::text || ' ' || at.attcompression::text || ' '"
  " || at.attstattarget::text || ' ' || COALESCE(at.attoptions::text, '')"
  " FROM pg_catalog.pg_attribute at JOIN pg_catalog.pg_class c ON c.oid = at.attrelid"
  " JOIN pg_catalog.pg_type t ON t.oid = at.atttypid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relkind IN ('r', 'p', 'm') AND at.attnum > 0 AND NOT at.attisdropped"
  " AND (at.attstorage <> t.typstorage OR at.attcompression <> '' OR at.attstattarget >= 0"
  " OR at.attoptions IS NOT NULL)"
  " AND " USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'o', NULL, NULL, 'trigger ' || pg_catalog.quote_ident(t.tgname) || ' on '"
  " || pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0)"
  " || ' enabled as ' || t.tgenabled::text, NULL"
  " FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND t.tgenabled <> 'O' AND " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_class", "c.oid")
  /* A partition's own constraints and indexes (not its parent's copies). */
  " UNION ALL SELECT 'o', NULL, NULL, pg_catalog.pg_describe_object("
  "'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid, 0), pg_catalog.pg_get_constraintdef(k.oid)"
  " FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relispartition AND k.conparentid = 0 AND k.coninhcount = 0"
  " AND k.contype IN ('p', 'u', 'c', 'f', 'x') AND " USER_NS
  " UNION ALL SELECT 'o', NULL, NULL, 'index ' || x.indexrelid::pg_catalog.regclass::text || ' on '"
  " || pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid, 0),"
  " pg_catalog.pg_get_indexdef(x.indexrelid)"
  " FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid"
  " WHERE c.relispartition AND NOT ic.relispartition AND NOT EXISTS (SELECT 1"
  " FROM pg_catalog.pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = c.oid)"
  " AND " USER_NS
  " UNION ALL SELECT 'o', NULL, NULL, 'typed table '"
  " || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
  " || ' of type ' || c.reloftype::pg_catalog.regtype::text, NULL"
  " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.reloftype <> 0 AND " USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'o', NULL, NULL, 'subscription ' || pg_catalog.quote_ident(x.subname), NULL"
  " FROM pg_catalog.pg_subscription x WHERE x.subdbid = (SELECT d.oid"
  " FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())"
  " UNION ALL SELECT 'o', NULL, NULL, 'default of '"
  " || pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, c.oid,"
  " d.adnum), pg_catalog.pg_get_expr(d.adbin, d.adrelid)"
  " FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_class c ON c.oid = d.adrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relkind = 'v' AND " USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'o', NULL, NULL, 'security label of '"
  " || pg_catalog.pg_describe_object(l.classoid, l.objoid, l.objsubid), l.label"
  " FROM pg_catalog.pg_seclabel l WHERE l.objoid >= 16384"
  /* Table properties pgguard does not set. */
  " UNION ALL SELECT 'o', NULL, NULL, 'row level security on table '"
  " || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
  " || CASE WHEN c.relforcerowsecurity THEN ' (forced)' ELSE '' END, NULL"
  " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relrowsecurity AND " USER_NS " AND" NOT_EXT("pg_catalog.pg_class", "c.oid")
  " UNION ALL SELECT 'o', NULL, NULL, 'inheritance of table '"
  " || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)"
  " || ' from ' || i.inhparent::pg_catalog.regclass::text, NULL"
  " FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
  " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
  " WHERE c.relkind IN ('r', 'p', 'f') AND NOT c.relispartition AND " USER_NS;

/* ---- small libpq helpers shared by the guard's edge ------------------- */

static void noop_notice(void *arg, const char *message)
{
  (void)arg;
  (void)message;
}

/* Append s without its trailing newlines (libpq's messages end with one). */
static void append_trimmed(pgg_buf *b, const char *s)
{
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
    n--;
  pgg_buf_printf(b, "%.*s", (int)n, s);
}

const char *pgg_pq_sqlstate(const PGresult *res)
{
  const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  return s ? s : "";
}

void pgg_pq_error(pgg_buf *err, PGconn *conn, const PGresult *res)
{
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  if (!primary) {
    const char *m = res ? PQresultErrorMessage(res) : "";
    if (!m || !*m)
      m = PQerrorMessage(conn);
    append_trimmed(err, (m && *m) ? m : "unknown libpq error");
    return;
  }
  const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
  const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
  append_trimmed(err, primary);
  if (state)
    pgg_buf_printf(err, " (SQLSTATE %s)", state);
  if (detail) {
    pgg_buf_printf(err, "; DETAIL: ");
    append_trimmed(err, detail);
  }
  if (hint) {
    pgg_buf_printf(err, "; HINT: ");
    append_trimmed(err, hint);
  }
}

void pgg_pq_err_rewind(pgg_buf *err, size_t len)
{
  if (len < err->len) {
    err->len = len;
    /* The buffer's text stays a C string (pgg_buf_printf keeps a NUL). */
    err->data[len] = 0;
  }
}

int pgg_pq_exec(PGconn *conn, const char *sql, pgg_buf *err)
{
  return pgg_pq_done(conn, PQexec(conn, sql), err);
}

int pgg_pq_done(PGconn *conn, PGresult *res, pgg_buf *err)
{
  ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    PQclear(res);
    return PGG_OK;
  }
  pgg_pq_error(err, conn, res);
  PQclear(res);
  return PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
}

/*
 * What libpq says when target_session_attrs=read-write turned a host down
 * (a hot standby, or default_transaction_read_only), what pgg_pq_connect
 * says when it turns one down itself, and a statement refused by a server
 * in recovery (SQLSTATE 25006).
 */
static const char *const standby_phrases[] = {
  "session is read-only", "server is in hot standby mode", PGG_PQ_STANDBY_NOTE,
  "(SQLSTATE 25006)",
};

bool pgg_pq_standby_message(const char *msg)
{
  for (size_t i = 0; msg && i < sizeof standby_phrases / sizeof standby_phrases[0]; i++)
    if (strstr(msg, standby_phrases[i]))
      return true;
  return false;
}

/*
 * Whether the session landed on a hot standby. PostgreSQL 14 and later
 * report in_hot_standby at start-up; an older server is asked.
 */
static bool on_standby(PGconn *conn)
{
  const char *s = PQparameterStatus(conn, "in_hot_standby");
  if (s)
    return strcmp(s, "on") == 0;
  PGresult *res = PQexec(conn, "SELECT pg_catalog.pg_is_in_recovery()");
  bool yes = res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
             PQgetvalue(res, 0, 0)[0] == 't';
  PQclear(res);
  return yes;
}

bool pgg_pq_host_of(PGconn *conn, pgg_pq_host *out)
{
  const char *host = PQhost(conn), *addr = PQhostaddr(conn), *port = PQport(conn);
  if (!host || !*host || !port || !*port)
    return false;
  int a = snprintf(out->host, sizeof out->host, "%s", host);
  int b = snprintf(out->hostaddr, sizeof out->hostaddr, "%s", addr ? addr : "");
  int c = snprintf(out->port, sizeof out->port, "%s", port);
  return a < (int)sizeof out->host && b < (int)sizeof out->hostaddr && c < (int)sizeof out->port;
}

PGconn *pgg_pq_connect(const char *conninfo, const char *dbname, pgg_buf *err)
{
  return pgg_pq_connect_at(conninfo, dbname, NULL, err);
}

static bool names_host(const char *keyword)
{
  return strcmp(keyword, "host") == 0 || strcmp(keyword, "hostaddr") == 0 ||
         strcmp(keyword, "port") == 0;
}

PGconn *pgg_pq_connect_at(const char *conninfo, const char *dbname, const pgg_pq_host *at,
                          pgg_buf *err)
{
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &perr);
  if (!opts) {
    pgg_buf_printf(err, "bad connection string: ");
    append_trimmed(err, perr ? perr : "out of memory");
    PQfreemem(perr);
    return NULL;
  }
  size_t n = 0;
  for (PQconninfoOption *o = opts; o->keyword; o++)
    n++;
  const char **kw = calloc(n + 8, sizeof *kw);
  const char **val = calloc(n + 8, sizeof *val);
  PGconn *conn = NULL;
  if (!kw || !val) {
    pgg_buf_printf(err, "out of memory");
    goto done;
  }
  size_t k = 0;
  bool has_dbname = false, has_timeout = false, has_appname = false, has_target = false;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    const char *v = o->val;
    if (strcmp(o->keyword, "dbname") == 0) {
      if (dbname)
        v = dbname;
      has_dbname = v != NULL;
    }
    if (strcmp(o->keyword, "connect_timeout") == 0 && v)
      has_timeout = true;
    if (strcmp(o->keyword, "target_session_attrs") == 0 && v)
      has_target = true;
    if ((strcmp(o->keyword, "application_name") == 0 ||
         strcmp(o->keyword, "fallback_application_name") == 0) && v)
      has_appname = true;
    if (!v || (at && names_host(o->keyword)))
      continue;
    kw[k] = o->keyword;
    val[k++] = v;
  }
  /* The address as well as the name: a name that resolves to several
   * servers must not lead elsewhere. */
  if (at) {
    kw[k] = "host";
    val[k++] = at->host;
    kw[k] = "port";
    val[k++] = at->port;
    if (at->hostaddr[0]) {
      kw[k] = "hostaddr";
      val[k++] = at->hostaddr;
    }
  }
  if (dbname && !has_dbname) {
    kw[k] = "dbname";
    val[k++] = dbname;
  }
  /* A server that does not answer must not hang a repair for the kernel's
   * TCP timeout. */
  if (!has_timeout) {
    kw[k] = "connect_timeout";
    val[k++] = "10";
  }
  /* So a DBA looking at pg_stat_activity or pg_locks sees who holds what. */
  if (!has_appname) {
    kw[k] = "fallback_application_name";
    val[k++] = "pgguard";
  }
  /* With several hosts (host=a,b or postgresql://a,b/db), the one that
   * accepts writes: after a failover the guard follows the new primary. With
   * one host, a standby is refused here rather than at the first repair. */
  if (!has_target) {
    kw[k] = "target_session_attrs";
    val[k++] = "read-write";
  }
  kw[k] = NULL;
  val[k] = NULL;
  /* expand_dbname = 0: the (replaced) dbname is a name, never a URL. */
  conn = PQconnectdbParams(kw, val, 0);
  if (!conn) {
    pgg_buf_printf(err, "out of memory");
  } else if (PQstatus(conn) != CONNECTION_OK) {
    pgg_buf_printf(err, "cannot connect to database \"%s\": ",
                   PQdb(conn) ? PQdb(conn) : "?");
    append_trimmed(err, PQerrorMessage(conn));
    if (!has_target && pgg_pq_standby_message(PQerrorMessage(conn)))
      pgg_buf_printf(err, " (target_session_attrs=read-write: no host of the URL is a "
                     "writable primary now)");
    PQfinish(conn);
    conn = NULL;
  } else if (on_standby(conn)) {
    /* The URL asked for any server (target_session_attrs=any, or standby):
     * a standby takes no repair and no shadow database. */
    pgg_buf_printf(err, "cannot use database \"%s\" on %s:%s: " PGG_PQ_STANDBY_NOTE
                   " (in_hot_standby = on); the guard needs the primary",
                   PQdb(conn) ? PQdb(conn) : "?", PQhost(conn) ? PQhost(conn) : "?",
                   PQport(conn) ? PQport(conn) : "?");
    PQfinish(conn);
    conn = NULL;
  } else {
    /* The guard's own statements raise NOTICEs (IF NOT EXISTS, ...); libpq
     * would print them on stderr, in the middle of `pgguard check`. */
    PQsetNoticeProcessor(conn, noop_notice, NULL);
  }
done:
  free(kw);
  free(val);
  PQconninfoFree(opts);
  return conn;
}

/* ---- introspection ------------------------------------------------------ */

static char *field(const PGresult *res, int row, int col)
{
  return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static PGresult *query(PGconn *conn, const char *sql, pgg_buf *err, int *rc)
{
  PGresult *res = PQexec(conn, sql);
  if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
    return res;
  pgg_buf_printf(err, "catalog query failed: ");
  pgg_pq_error(err, conn, res);
  PQclear(res);
  *rc = PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
  return NULL;
}

/* Row parsers: one per query, each turning its result into catalog objects. */

static int parse_schemas(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_SCHEMA, .schema = field(res, i, 0),
                    .name = field(res, i, 0)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_enums(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    char *schema = field(res, i, 0), *type = field(res, i, 1);
    char *label = field(res, i, 2);
    int pos = atoi(PQgetvalue(res, i, 3));
    /* The type itself once, on the row of its first label (or its only,
     * label-less row). */
    if (pos == 1) {
      pgg_object t = {.kind = PGG_OBJ_ENUM, .schema = schema, .name = type};
      rc = pgg_catalog_add(out, &t);
    }
    if (!rc && label) {
      pgg_object l = {.kind = PGG_OBJ_ENUM_LABEL, .schema = schema,
                      .parent = type, .name = label, .position = pos};
      rc = pgg_catalog_add(out, &l);
    }
  }
  return rc;
}

static int parse_sequences(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_SEQUENCE, .schema = field(res, i, 0),
                    .name = field(res, i, 1), .definition = field(res, i, 2),
                    .persistence = PQgetvalue(res, i, 3)[0]};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_tables(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_TABLE, .schema = field(res, i, 0),
                    .name = field(res, i, 1), .relkind = PQgetvalue(res, i, 2)[0],
                    .persistence = PQgetvalue(res, i, 3)[0],
                    .definition = field(res, i, 4), .partition_of = field(res, i, 5),
                    .default_expr = field(res, i, 6),
                    .position = atoi(PQgetvalue(res, i, 7))};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_columns(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_COLUMN, .schema = field(res, i, 0),
                    .parent = field(res, i, 1), .name = field(res, i, 2),
                    .type = field(res, i, 3),
                    .not_null = PQgetvalue(res, i, 4)[0] == 't',
                    .default_expr = field(res, i, 5),
                    /* attidentity and attgenerated are "" when unset */
                    .identity = PQgetvalue(res, i, 6)[0],
                    .generated = PQgetvalue(res, i, 7)[0],
                    .position = atoi(PQgetvalue(res, i, 8)),
                    .collation = field(res, i, 9),
                    .checked_domain = PQgetvalue(res, i, 10)[0] == 't'};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_constraints(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_CONSTRAINT, .schema = field(res, i, 0),
                    .parent = field(res, i, 1), .name = field(res, i, 2),
                    .contype = PQgetvalue(res, i, 3)[0],
                    .definition = field(res, i, 4)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_indexes(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_INDEX, .schema = field(res, i, 0),
                    .parent = field(res, i, 1), .name = field(res, i, 2),
                    .definition = field(res, i, 3)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_extensions(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_EXTENSION, .name = field(res, i, 0),
                    .type = field(res, i, 1), .definition = field(res, i, 2)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

/* Rows of (schema, name, definition) of one kind. */
static int parse_named(const PGresult *res, pgg_catalog *out, pgg_obj_kind kind)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = kind, .schema = field(res, i, 0), .name = field(res, i, 1),
                    .definition = field(res, i, 2)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_domains(const PGresult *res, pgg_catalog *out)
{
  return parse_named(res, out, PGG_OBJ_DOMAIN);
}

static int parse_composites(const PGresult *res, pgg_catalog *out)
{
  return parse_named(res, out, PGG_OBJ_COMPOSITE);
}

static int parse_functions(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_FUNCTION, .schema = field(res, i, 0),
                    .name = field(res, i, 1), .definition = field(res, i, 2),
                    .relkind = PQgetvalue(res, i, 3)[0],
                    .position = atoi(PQgetvalue(res, i, 4))};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_views(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    const char *opts = field(res, i, 4);
    pgg_object o = {.kind = PGG_OBJ_VIEW, .schema = field(res, i, 0),
                    .name = field(res, i, 1), .relkind = PQgetvalue(res, i, 2)[0],
                    .definition = field(res, i, 3),
                    .type = (opts && *opts) ? (char *)opts : NULL,
                    .position = atoi(PQgetvalue(res, i, 5))};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_triggers(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_TRIGGER, .schema = field(res, i, 0),
                    .parent = field(res, i, 1), .name = field(res, i, 2),
                    .definition = field(res, i, 3)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_owned_by(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_object o = {.kind = PGG_OBJ_OWNED_BY, .schema = field(res, i, 0),
                    .parent = field(res, i, 1), .name = field(res, i, 2),
                    .type = field(res, i, 3), .definition = field(res, i, 4)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static int parse_unmodeled(const PGresult *res, pgg_catalog *out)
{
  int rc = PGG_OK;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    pgg_obj_kind kind;
    switch (PQgetvalue(res, i, 0)[0]) {
    case 'p': kind = PGG_OBJ_POLICY; break;
    case 'r': kind = PGG_OBJ_RULE; break;
    case 'e': kind = PGG_OBJ_EVENT_TRIGGER; break;
    case 'u': kind = PGG_OBJ_PUBLICATION; break;
    case 's': kind = PGG_OBJ_STATISTICS; break;
    case 'c': kind = PGG_OBJ_COMMENT; break;
    case 'g': kind = PGG_OBJ_GRANT; break;
    default: kind = PGG_OBJ_OTHER; break;
    }
    pgg_object o = {.kind = kind, .schema = field(res, i, 1), .parent = field(res, i, 2),
                    .name = field(res, i, 3), .definition = field(res, i, 4)};
    rc = pgg_catalog_add(out, &o);
  }
  return rc;
}

static const struct {
  const char *sql;
  int (*parse)(const PGresult *, pgg_catalog *);
} kinds[] = {
  {q_schemas, parse_schemas},         {q_enums, parse_enums},
  {q_sequences, parse_sequences},     {q_tables, parse_tables},
  {q_columns, parse_columns},         {q_constraints, parse_constraints},
  {q_indexes, parse_indexes},         {q_extensions, parse_extensions},
  {q_domains, parse_domains},         {q_composites, parse_composites},
  {q_functions, parse_functions},     {q_views, parse_views},
  {q_triggers, parse_triggers},       {q_owned_by, parse_owned_by},
  {q_unmodeled, parse_unmodeled},
};

/*
 * pg_get_indexdef, pg_get_constraintdef and pg_get_expr read the catalog
 * caches, which see the latest committed state, not the snapshot the rows
 * came from: an index or constraint dropped by a concurrent DDL between the
 * two fails with XX000 "cache lookup failed". Such a read is simply retried.
 */
#define INTROSPECT_ATTEMPTS 3

static int read_all(PGconn *conn, pgg_catalog *out, pgg_buf *err, bool *retry)
{
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    PGresult *res = PQexec(conn, kinds[i].sql);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
      *retry = strcmp(pgg_pq_sqlstate(res), "XX000") == 0;
      pgg_buf_printf(err, "catalog query failed: ");
      pgg_pq_error(err, conn, res);
      PQclear(res);
      return PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
    }
    int rc = kinds[i].parse(res, out);
    PQclear(res);
    if (rc) {
      pgg_buf_printf(err, "out of memory reading the catalog");
      return rc;
    }
  }
  pgg_catalog_sort(out);
  return PGG_OK;
}

/*
 * One read. Outside a transaction: its own REPEATABLE READ READ ONLY one, so
 * all the queries share one snapshot. Inside the caller's: a savepoint,
 * rolled back afterwards even on success, which also undoes the SET LOCALs,
 * so the caller's session is left as it was.
 */
static int read_once(PGconn *conn, bool own, pgg_catalog *out, pgg_buf *err, bool *retry)
{
  *retry = false;
  int rc = pgg_pq_exec(conn, own ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                                 : "SAVEPOINT pgg_introspect", err);
  if (rc)
    return rc;
  /* Constants in defaults and partition bounds are printed in the
   * session's TimeZone and DateStyle: fixed, so a shadow and a live
   * database read by sessions set differently still compare equal (and a
   * timestamptz bound keeps its offset, whatever zone replays it). */
  rc = pgg_pq_exec(conn, "SET LOCAL search_path = ''; SET LOCAL TimeZone = 'UTC';"
                         " SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'",
                   err);
  if (!rc)
    rc = read_all(conn, out, err, retry);
  if (own) {
    PQclear(PQexec(conn, "ROLLBACK"));
  } else {
    int rc2 = pgg_pq_exec(conn, "ROLLBACK TO SAVEPOINT pgg_introspect;"
                                " RELEASE SAVEPOINT pgg_introspect", err);
    if (!rc)
      rc = rc2;
    if (rc2)
      *retry = false;
  }
  return rc;
}

int pgg_introspect(PGconn *conn, pgg_catalog *out, pgg_buf *err)
{
  PGTransactionStatusType ts = PQtransactionStatus(conn);
  if (ts != PQTRANS_IDLE && ts != PQTRANS_INTRANS) {
    pgg_buf_printf(err, "introspection: connection is not ready (%s)",
                   ts == PQTRANS_INERROR ? "transaction aborted" : "busy or broken");
    return PQstatus(conn) == CONNECTION_OK ? PGG_ERR_DB : PGG_ERR_UPSTREAM;
  }
  size_t mark = err->len;
  int rc = PGG_OK;
  for (int attempt = 1; attempt <= INTROSPECT_ATTEMPTS; attempt++) {
    bool retry;
    rc = read_once(conn, ts == PQTRANS_IDLE, out, err, &retry);
    if (rc) {
      pgg_catalog_free(out);
      pgg_catalog_init(out);
    }
    if (!rc || !retry || attempt == INTROSPECT_ATTEMPTS)
      break;
    pgg_pq_err_rewind(err, mark);
  }
  if (!rc)
    pgg_catalog_exclude(out);   /* bookkeeping tables and --exclude: never compared */
  return rc;
}

/* ---- routine names (desired catalog only) ------------------------------ */

/* Fully qualified, so it needs no search_path of its own. */
static const char q_routines[] =
  "SELECT DISTINCT n.nspname, p.proname"
  " FROM pg_catalog.pg_proc p"
  " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
  " WHERE " USER_NS " AND"
  NOT_EXT("pg_catalog.pg_proc", "p.oid");

int pgg_introspect_routines(PGconn *conn, pgg_catalog *out, pgg_buf *err)
{
  int rc = PGG_OK;
  PGresult *res = query(conn, q_routines, err, &rc);
  if (!res)
    return rc;
  for (int i = 0; i < PQntuples(res) && !rc; i++)
    rc = pgg_catalog_add_routine(out, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
  PQclear(res);
  if (rc)
    pgg_buf_printf(err, "out of memory reading the routines");
  return rc;
}

/* ---- rows of tables that are about to get a NOT NULL column ------------ */

/*
 * Does planning this missing object depend on whether its existing table has
 * rows? A NOT NULL column without a default cannot be added to one (the
 * planner adds it nullable), a check constraint is added NOT VALID, an
 * index or key is built concurrently, and a column or key that would
 * rewrite or scan it needs a migration (pgg_drift_hazards).
 */
static bool depends_on_rows(const pgg_object *o)
{
  return o->kind == PGG_OBJ_COLUMN || o->kind == PGG_OBJ_CONSTRAINT || o->kind == PGG_OBJ_INDEX;
}

/*
 * One table's answer, in a savepoint (or a transaction of its own) with a
 * short lock_timeout: the read takes ACCESS SHARE, which a migration's
 * ACCESS EXCLUSIVE would make it wait for. A table that cannot be read (no
 * privilege, locked) counts as having rows: the careful answer.
 */
static int ask_rows(PGconn *conn, const char *sql, bool *rows, pgg_buf *err)
{
  bool in_xact = PQtransactionStatus(conn) == PQTRANS_INTRANS;
  int rc = pgg_pq_exec(conn, in_xact ? "SAVEPOINT pgg_rows" : "BEGIN", err);
  /* row_security off: a read that row level security would filter (a
   * FORCEd policy) fails instead of answering "empty", and so counts as
   * having rows. */
  if (!rc)
    rc = pgg_pq_exec(conn, "SET LOCAL lock_timeout = '1s'; SET LOCAL row_security = off", err);
  if (rc)
    return rc;
  PGresult *res = PQexec(conn, sql);
  *rows = !(res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
            PQgetvalue(res, 0, 0)[0] == 'f');
  PQclear(res);
  if (PQstatus(conn) != CONNECTION_OK) {
    pgg_buf_printf(err, "the session was lost checking a table for rows");
    return PGG_ERR_UPSTREAM;
  }
  /* Rolled back either way: that also ends the SET LOCAL. */
  return pgg_pq_exec(conn, in_xact ? "ROLLBACK TO SAVEPOINT pgg_rows; RELEASE pgg_rows"
                                   : "ROLLBACK", err);
}

int pgg_introspect_has_rows(PGconn *conn, const pgg_drift *d, pgg_catalog *live,
                            pgg_buf *err)
{
  pgg_buf q;
  pgg_buf_init(&q);
  int rc = PGG_OK;
  bool *asked = calloc(live->n ? live->n : 1, sizeof *asked);
  if (!asked)
    return PGG_ERR_NOMEM;
  for (size_t i = 0; i < d->n && !rc; i++) {
    const pgg_drift_item *it = &d->items[i];
    if (it->state != PGG_DRIFT_MISSING || it->implied || !it->desired ||
        !it->desired->parent || !depends_on_rows(it->desired))
      continue;
    const pgg_object *t = pgg_catalog_find(live, PGG_OBJ_TABLE, it->desired->schema,
                                           NULL, it->desired->parent);
    if (!t || asked[t - live->objs])
      continue;
    asked[t - live->objs] = true;
    pgg_buf_reset(&q);
    rc = pgg_buf_printf(&q, "SELECT EXISTS (SELECT 1 FROM ");
    if (!rc)
      rc = pgg_quote_ident(&q, t->schema);
    if (!rc)
      rc = pgg_buf_printf(&q, ".");
    if (!rc)
      rc = pgg_quote_ident(&q, t->name);
    if (!rc)
      rc = pgg_buf_printf(&q, ")");
    if (!rc)
      rc = pgg_buf_append_u8(&q, 0);
    bool rows = true;
    if (!rc)
      rc = ask_rows(conn, (const char *)q.data, &rows, err);
    /* live is ours to change: find() hands back a pointer into live->objs. */
    if (!rc)
      live->objs[t - live->objs].has_rows = rows;
  }
  free(asked);
  pgg_buf_free(&q);
  return rc;
}

bool pgg_pq_table_owner(PGconn *conn, const char *schema, const char *table, pgg_buf *role)
{
  pgg_buf q;
  pgg_buf_init(&q);
  bool ok = pgg_quote_ident(&q, schema) == PGG_OK && pgg_buf_append_u8(&q, '.') == PGG_OK &&
            pgg_quote_ident(&q, table) == PGG_OK && pgg_buf_append_u8(&q, 0) == PGG_OK;
  PGresult *res = NULL;
  if (ok) {
    const char *params[1] = {(const char *)q.data};
    res = PQexecParams(conn, "SELECT pg_catalog.pg_get_userbyid(c.relowner)"
                       " FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
                       1, NULL, params, NULL, NULL, 0);
    ok = res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
  }
  if (ok)
    ok = pgg_quote_ident(role, PQgetvalue(res, 0, 0)) == PGG_OK &&
         pgg_buf_append_u8(role, 0) == PGG_OK;
  PQclear(res);
  pgg_buf_free(&q);
  return ok;
}
