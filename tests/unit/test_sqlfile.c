/*
 * test_sqlfile.c — schema files split and classified by libpg_query: where
 * each statement starts, what is refused, what names roles, what manages its
 * own transaction, and a syntax error's line.
 */
#include "check.h"
#include "sqlfile.h"

static pgg_sql_list split(const char *sql)
{
  pgg_sql_list l;
  pgg_buf err;
  pgg_buf_init(&err);
  if (pgg_sql_split(sql, strlen(sql), &l, &err) != PGG_OK)
    abort();
  pgg_buf_free(&err);
  return l;
}

TEST(statements_start_at_their_first_token_past_comments)
{
  const char *sql = "-- a header\n/* a /* nested */ block */\nCREATE TABLE a (id int);\n\n"
                    "  -- note\n  CREATE INDEX ON a (id);\nSELECT 1";
  pgg_sql_list l = split(sql);
  REQUIRE(l.n == 3);
  CHECK_INT(l.v[0].line, 3);
  CHECK(strncmp(sql + l.v[0].off, "CREATE TABLE a (id int)", l.v[0].len) == 0);
  CHECK_INT(l.v[0].len, strlen("CREATE TABLE a (id int)"));
  CHECK_INT(l.v[1].line, 6);
  CHECK(strncmp(sql + l.v[1].off, "CREATE INDEX", 12) == 0);
  CHECK_INT(l.v[2].line, 7);
  CHECK_INT(l.v[2].len, strlen("SELECT 1"));
  for (size_t i = 0; i < l.n; i++)
    CHECK_INT(l.v[i].cls, PGG_SQL_RUN);
  pgg_sql_list_free(&l);
}

TEST(cluster_wide_and_host_statements_are_refused)
{
  static const struct { const char *sql, *what; } cases[] = {
    {"CREATE ROLE r", "CREATE ROLE"},
    {"CREATE USER u PASSWORD 'x'", "CREATE ROLE"},
    {"ALTER ROLE r SUPERUSER", "ALTER ROLE"},
    {"ALTER USER r SET work_mem = '1GB'", "ALTER ROLE ... SET"},
    {"DROP ROLE r", "DROP ROLE"},
    {"GRANT pg_write_server_files TO r", "GRANT/REVOKE of a role"},
    {"REVOKE admin FROM r", "GRANT/REVOKE of a role"},
    {"ALTER SYSTEM SET fsync = off", "ALTER SYSTEM"},
    {"CREATE DATABASE d", "CREATE DATABASE"},
    {"ALTER DATABASE d SET search_path = x", "ALTER DATABASE"},
    {"DROP DATABASE d", "DROP DATABASE"},
    {"CREATE TABLESPACE t LOCATION '/tmp'", "CREATE TABLESPACE"},
    {"COPY t FROM PROGRAM 'id'", "COPY ... PROGRAM"},
    {"COPY t TO '/etc/passwd'", "COPY to or from a server file"},
    {"SET ROLE postgres", "SET ROLE / RESET ROLE"},
    {"RESET ROLE", "SET ROLE / RESET ROLE"},
    {"SET SESSION AUTHORIZATION postgres", "SET SESSION AUTHORIZATION"},
    {"LOAD 'auto_explain'", "LOAD"},
    {"CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", "CREATE SUBSCRIPTION"},
    {"REASSIGN OWNED BY a TO b", "REASSIGN OWNED"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pgg_sql_list l = split(cases[i].sql);
    REQUIRE(l.n == 1);
    CHECK_INT(l.v[0].cls, PGG_SQL_REFUSED);
    if (!l.v[0].what || strcmp(l.v[0].what, cases[i].what) != 0) {
      fprintf(stderr, "  %s: %s\n", cases[i].sql, l.v[0].what ? l.v[0].what : "(none)");
      check_failed_now = 1;
    }
    pgg_sql_list_free(&l);
  }
}

TEST(role_statements_and_transactions_are_told_apart)
{
  pgg_sql_list l = split("BEGIN; ALTER TABLE t OWNER TO r; ALTER TABLE t ADD c int;"
                         " ALTER SCHEMA s OWNER TO r; GRANT SELECT ON t TO r;"
                         " ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r;"
                         " CREATE POLICY p ON t TO r USING (true); COPY t FROM stdin;"
                         " SET search_path = ''; COMMIT");
  REQUIRE(l.n == 10);
  pgg_sql_class want[] = {PGG_SQL_TRANSACTION, PGG_SQL_ROLE, PGG_SQL_RUN, PGG_SQL_ROLE,
                          PGG_SQL_ROLE, PGG_SQL_ROLE, PGG_SQL_ROLE, PGG_SQL_RUN, PGG_SQL_RUN,
                          PGG_SQL_TRANSACTION};
  for (size_t i = 0; i < l.n; i++)
    CHECK_INT(l.v[i].cls, want[i]);
  pgg_sql_list_free(&l);
}

TEST(a_syntax_error_names_its_line)
{
  const char *sql = "CREATE TABLE a (id int);\n\nCREATE TABLE b (id int,,);\n";
  pgg_sql_list l;
  pgg_buf err;
  pgg_buf_init(&err);
  CHECK(pgg_sql_split(sql, strlen(sql), &l, &err) == PGG_ERR_SCHEMA);
  pgg_buf_append_u8(&err, 0);
  CHECK(strncmp((const char *)err.data, "line 3: syntax error at or near \",\"", 35) == 0);
  pgg_buf_free(&err);
}

TEST(function_bodies_with_semicolons_stay_one_statement)
{
  pgg_sql_list l = split("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\n"
                         "BEGIN\n  RETURN 1;\nEND $$;\nCREATE TABLE t (id int);");
  REQUIRE(l.n == 2);
  CHECK_INT(l.v[1].line, 5);
  pgg_sql_list_free(&l);
}

TEST(the_table_a_statement_changes)
{
  char s[64], t[64];
  CHECK(pgg_sql_target("ALTER TABLE \"public\".\"we.ird\" ADD COLUMN \"x\" integer", s, sizeof s,
                       t, sizeof t));
  CHECK_STR(s, "public");
  CHECK_STR(t, "we.ird");
  CHECK(pgg_sql_target("CREATE UNIQUE INDEX i ON app.orders USING btree (id)", s, sizeof s, t,
                       sizeof t));
  CHECK_STR(s, "app");
  CHECK_STR(t, "orders");
  CHECK(pgg_sql_target("CREATE TRIGGER tr AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION f()",
                       s, sizeof s, t, sizeof t));
  CHECK_STR(s, "");
  CHECK_STR(t, "notes");
  CHECK(!pgg_sql_target("CREATE TABLE x (id int)", s, sizeof s, t, sizeof t));
  CHECK(!pgg_sql_target("ALTER SEQUENCE s OWNED BY t.id", s, sizeof s, t, sizeof t));
  CHECK(!pgg_sql_target("ALTER TABLE t ADD COLUMN x int; DROP TABLE t", s, sizeof s, t, sizeof t));
  CHECK(!pgg_sql_target("ALTER TABLE", s, sizeof s, t, sizeof t));
}
