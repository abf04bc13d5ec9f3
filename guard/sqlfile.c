/*
 * sqlfile.c — split and classify a schema file with libpg_query, the
 * PostgreSQL 15 grammar as a library: a statement is refused or allowed by
 * what PostgreSQL itself parses it as, never by matching its text.
 */
#include "sqlfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

unsigned pgg_sql_line_at(const char *text, size_t off)
{
  unsigned line = 1;
  for (size_t i = 0; i < off && text[i]; i++)
    line += text[i] == '\n';
  return line;
}

/* Past whitespace and comments: where the statement's first token is. */
static size_t first_token(const char *s, size_t off, size_t end)
{
  while (off < end) {
    char c = s[off];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      off++;
    } else if (c == '-' && off + 1 < end && s[off + 1] == '-') {
      while (off < end && s[off] != '\n')
        off++;
    } else if (c == '/' && off + 1 < end && s[off + 1] == '*') {
      int depth = 0;   /* PostgreSQL's block comments nest */
      do {
        if (s[off] == '/' && off + 1 < end && s[off + 1] == '*') {
          depth++;
          off += 2;
        } else if (s[off] == '*' && off + 1 < end && s[off + 1] == '/') {
          depth--;
          off += 2;
        } else {
          off++;
        }
      } while (off < end && depth > 0);
    } else {
      break;
    }
  }
  return off;
}

static bool only_owner_changes(const PgQuery__AlterTableStmt *a)
{
  if (!a->n_cmds)
    return false;
  for (size_t i = 0; i < a->n_cmds; i++) {
    const PgQuery__Node *n = a->cmds[i];
    if (n->node_case != PG_QUERY__NODE__NODE_ALTER_TABLE_CMD ||
        n->alter_table_cmd->subtype != PG_QUERY__ALTER_TABLE_TYPE__AT_ChangeOwner)
      return false;
  }
  return true;
}

static pgg_sql_class classify(const PgQuery__Node *n, const char **what)
{
  *what = NULL;
  if (!n)
    return PGG_SQL_RUN;
  switch (n->node_case) {
  case PG_QUERY__NODE__NODE_CREATE_ROLE_STMT: *what = "CREATE ROLE"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_ALTER_ROLE_STMT: *what = "ALTER ROLE"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_ALTER_ROLE_SET_STMT: *what = "ALTER ROLE ... SET"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_DROP_ROLE_STMT: *what = "DROP ROLE"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_GRANT_ROLE_STMT: *what = "GRANT/REVOKE of a role"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_REASSIGN_OWNED_STMT: *what = "REASSIGN OWNED"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_DROP_OWNED_STMT: *what = "DROP OWNED"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_ALTER_SYSTEM_STMT: *what = "ALTER SYSTEM"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_CREATEDB_STMT: *what = "CREATE DATABASE"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_ALTER_DATABASE_STMT:
  case PG_QUERY__NODE__NODE_ALTER_DATABASE_SET_STMT:
  case PG_QUERY__NODE__NODE_ALTER_DATABASE_REFRESH_COLL_STMT:
    *what = "ALTER DATABASE";
    return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_DROPDB_STMT: *what = "DROP DATABASE"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_CREATE_TABLE_SPACE_STMT: *what = "CREATE TABLESPACE"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_DROP_TABLE_SPACE_STMT: *what = "DROP TABLESPACE"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_ALTER_TABLE_SPACE_OPTIONS_STMT: *what = "ALTER TABLESPACE"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_ALTER_TABLE_MOVE_ALL_STMT: *what = "ALTER ... SET TABLESPACE ALL"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_LOAD_STMT: *what = "LOAD"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_CREATE_SUBSCRIPTION_STMT: *what = "CREATE SUBSCRIPTION"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_ALTER_SUBSCRIPTION_STMT: *what = "ALTER SUBSCRIPTION"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_DROP_SUBSCRIPTION_STMT: *what = "DROP SUBSCRIPTION"; return PGG_SQL_REFUSED;
  case PG_QUERY__NODE__NODE_COPY_STMT:
    if (n->copy_stmt->is_program) {
      *what = "COPY ... PROGRAM";
      return PGG_SQL_REFUSED;
    }
    if (n->copy_stmt->filename && *n->copy_stmt->filename) {
      *what = "COPY to or from a server file";
      return PGG_SQL_REFUSED;
    }
    return PGG_SQL_RUN;
  case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT: {
    const char *name = n->variable_set_stmt->name;
    if (name && strcmp(name, "role") == 0) {
      *what = "SET ROLE / RESET ROLE";
      return PGG_SQL_REFUSED;
    }
    if (name && strcmp(name, "session_authorization") == 0) {
      *what = "SET SESSION AUTHORIZATION";
      return PGG_SQL_REFUSED;
    }
    return PGG_SQL_RUN;
  }
  case PG_QUERY__NODE__NODE_TRANSACTION_STMT:
    return PGG_SQL_TRANSACTION;
  case PG_QUERY__NODE__NODE_ALTER_OWNER_STMT:
  case PG_QUERY__NODE__NODE_GRANT_STMT:
  case PG_QUERY__NODE__NODE_ALTER_DEFAULT_PRIVILEGES_STMT:
  case PG_QUERY__NODE__NODE_CREATE_POLICY_STMT:
  case PG_QUERY__NODE__NODE_ALTER_POLICY_STMT:
    return PGG_SQL_ROLE;
  case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
    return only_owner_changes(n->alter_table_stmt) ? PGG_SQL_ROLE : PGG_SQL_RUN;
  default:
    return PGG_SQL_RUN;
  }
}

int pgg_sql_split(const char *text, size_t len, pgg_sql_list *out, pgg_buf *err)
{
  memset(out, 0, sizeof *out);
  PgQueryProtobufParseResult r = pg_query_parse_protobuf(text);
  int rc = PGG_OK;
  if (r.error) {
    size_t pos = r.error->cursorpos > 0 ? (size_t)r.error->cursorpos - 1 : 0;
    pgg_buf_printf(err, "line %u: %s", pgg_sql_line_at(text, pos < len ? pos : len),
                   r.error->message ? r.error->message : "syntax error");
    pg_query_free_protobuf_parse_result(r);
    return PGG_ERR_SCHEMA;
  }
  PgQuery__ParseResult *tree =
    pg_query__parse_result__unpack(NULL, r.parse_tree.len, (const uint8_t *)r.parse_tree.data);
  if (!tree) {
    pgg_buf_printf(err, "cannot read the parse tree");
    pg_query_free_protobuf_parse_result(r);
    return PGG_ERR_SCHEMA;
  }
  if (tree->n_stmts && !(out->v = calloc(tree->n_stmts, sizeof *out->v)))
    rc = PGG_ERR_NOMEM;
  for (size_t i = 0; !rc && i < tree->n_stmts; i++) {
    const PgQuery__RawStmt *raw = tree->stmts[i];
    size_t off = raw->stmt_location > 0 ? (size_t)raw->stmt_location : 0;
    size_t end = raw->stmt_len > 0 ? off + (size_t)raw->stmt_len : len;
    if (off > len || end > len) {
      pgg_buf_printf(err, "statement %zu lies outside the file", i + 1);
      rc = PGG_ERR_SCHEMA;
      break;
    }
    size_t start = first_token(text, off, end);
    pgg_sql_stmt *s = &out->v[out->n++];
    s->off = start;
    s->len = end - start;
    s->line = pgg_sql_line_at(text, start);
    s->cls = classify(raw->stmt, &s->what);
  }
  pg_query__parse_result__free_unpacked(tree, NULL);
  pg_query_free_protobuf_parse_result(r);
  if (rc)
    pgg_sql_list_free(out);
  return rc;
}

void pgg_sql_list_free(pgg_sql_list *l)
{
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

/* ---- what a file creates -------------------------------------------------- */

static int push(pgg_sql_objs *o, pgg_obj_kind kind, const char *schema, const char *parent,
                const char *name)
{
  if (!name || !*name)
    return PGG_OK;
  pgg_sql_obj *grown = realloc(o->v, (o->n + 1) * sizeof *o->v);
  if (!grown)
    return PGG_ERR_NOMEM;
  o->v = grown;
  pgg_sql_obj *x = &o->v[o->n];
  x->kind = kind;
  x->schema = strdup(schema && *schema ? schema : "public");
  x->parent = parent ? strdup(parent) : NULL;
  x->name = strdup(name);
  o->n++;
  return x->schema && x->name && (!parent || x->parent) ? PGG_OK : PGG_ERR_NOMEM;
}

static const char *rv_schema(const PgQuery__RangeVar *rv)
{
  return rv && rv->schemaname && *rv->schemaname ? rv->schemaname : NULL;
}

static int created_by(const PgQuery__Node *n, pgg_sql_objs *o)
{
  switch (n ? n->node_case : PG_QUERY__NODE__NODE__NOT_SET) {
  case PG_QUERY__NODE__NODE_CREATE_SCHEMA_STMT:
    return push(o, PGG_OBJ_SCHEMA, n->create_schema_stmt->schemaname, NULL,
                n->create_schema_stmt->schemaname);
  case PG_QUERY__NODE__NODE_CREATE_STMT: {
    const PgQuery__RangeVar *rv = n->create_stmt->relation;
    return rv ? push(o, PGG_OBJ_TABLE, rv_schema(rv), NULL, rv->relname) : PGG_OK;
  }
  case PG_QUERY__NODE__NODE_CREATE_SEQ_STMT: {
    const PgQuery__RangeVar *rv = n->create_seq_stmt->sequence;
    return rv ? push(o, PGG_OBJ_SEQUENCE, rv_schema(rv), NULL, rv->relname) : PGG_OK;
  }
  case PG_QUERY__NODE__NODE_INDEX_STMT: {
    const PgQuery__RangeVar *rv = n->index_stmt->relation;
    return rv ? push(o, PGG_OBJ_INDEX, rv_schema(rv), rv->relname, n->index_stmt->idxname)
              : PGG_OK;
  }
  case PG_QUERY__NODE__NODE_CREATE_ENUM_STMT: {
    const PgQuery__CreateEnumStmt *e = n->create_enum_stmt;
    const char *parts[2] = {NULL, NULL};
    size_t k = 0;
    for (size_t i = 0; i < e->n_type_name && k < 2; i++)
      if (e->type_name[i]->node_case == PG_QUERY__NODE__NODE_STRING)
        parts[k++] = e->type_name[i]->string->sval;
    return push(o, PGG_OBJ_ENUM, k == 2 ? parts[0] : NULL, NULL, k == 2 ? parts[1] : parts[0]);
  }
  case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT: {
    const PgQuery__AlterTableStmt *a = n->alter_table_stmt;
    int rc = PGG_OK;
    for (size_t i = 0; a->relation && i < a->n_cmds && !rc; i++) {
      const PgQuery__Node *c = a->cmds[i];
      if (c->node_case != PG_QUERY__NODE__NODE_ALTER_TABLE_CMD ||
          c->alter_table_cmd->subtype != PG_QUERY__ALTER_TABLE_TYPE__AT_AddColumn ||
          !c->alter_table_cmd->def ||
          c->alter_table_cmd->def->node_case != PG_QUERY__NODE__NODE_COLUMN_DEF)
        continue;
      rc = push(o, PGG_OBJ_COLUMN, rv_schema(a->relation), a->relation->relname,
                c->alter_table_cmd->def->column_def->colname);
    }
    return rc;
  }
  default:
    return PGG_OK;
  }
}

int pgg_sql_created(const char *text, pgg_sql_objs *out, pgg_buf *err)
{
  memset(out, 0, sizeof *out);
  PgQueryProtobufParseResult r = pg_query_parse_protobuf(text);
  if (r.error) {
    size_t pos = r.error->cursorpos > 0 ? (size_t)r.error->cursorpos - 1 : 0;
    pgg_buf_printf(err, "line %u: %s", pgg_sql_line_at(text, pos),
                   r.error->message ? r.error->message : "syntax error");
    pg_query_free_protobuf_parse_result(r);
    return PGG_ERR_SCHEMA;
  }
  PgQuery__ParseResult *tree =
    pg_query__parse_result__unpack(NULL, r.parse_tree.len, (const uint8_t *)r.parse_tree.data);
  int rc = tree ? PGG_OK : PGG_ERR_SCHEMA;
  for (size_t i = 0; tree && !rc && i < tree->n_stmts; i++)
    rc = created_by(tree->stmts[i]->stmt, out);
  if (tree)
    pg_query__parse_result__free_unpacked(tree, NULL);
  pg_query_free_protobuf_parse_result(r);
  if (rc)
    pgg_sql_objs_free(out);
  return rc;
}

void pgg_sql_objs_free(pgg_sql_objs *o)
{
  for (size_t i = 0; i < o->n; i++) {
    free(o->v[i].schema);
    free(o->v[i].parent);
    free(o->v[i].name);
  }
  free(o->v);
  o->v = NULL;
  o->n = 0;
}

bool pgg_sql_target(const char *sql, char *schema, size_t ns, char *table, size_t nt)
{
  PgQueryProtobufParseResult r = pg_query_parse_protobuf(sql);
  bool found = false;
  PgQuery__ParseResult *tree = r.error ? NULL :
    pg_query__parse_result__unpack(NULL, r.parse_tree.len, (const uint8_t *)r.parse_tree.data);
  if (tree && tree->n_stmts == 1 && tree->stmts[0]->stmt) {
    const PgQuery__Node *n = tree->stmts[0]->stmt;
    const PgQuery__RangeVar *rv = NULL;
    if (n->node_case == PG_QUERY__NODE__NODE_ALTER_TABLE_STMT &&
        n->alter_table_stmt->objtype == PG_QUERY__OBJECT_TYPE__OBJECT_TABLE)
      rv = n->alter_table_stmt->relation;
    else if (n->node_case == PG_QUERY__NODE__NODE_INDEX_STMT)
      rv = n->index_stmt->relation;
    else if (n->node_case == PG_QUERY__NODE__NODE_CREATE_TRIG_STMT)
      rv = n->create_trig_stmt->relation;
    if (rv && rv->relname) {
      int a = snprintf(schema, ns, "%s", rv->schemaname ? rv->schemaname : "");
      int b = snprintf(table, nt, "%s", rv->relname);
      found = a >= 0 && (size_t)a < ns && b >= 0 && (size_t)b < nt;
    }
  }
  if (tree)
    pg_query__parse_result__free_unpacked(tree, NULL);
  pg_query_free_protobuf_parse_result(r);
  return found;
}
