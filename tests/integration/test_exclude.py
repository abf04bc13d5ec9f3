"""Objects the guard never compares: migration tools' bookkeeping tables (by
default: a restored _prisma_migrations is neither missing nor extra) and
--exclude patterns; and schema files split by PostgreSQL's own parser, which
refuses cluster-wide statements with file and line and skips statements that
only fail for a role this server lacks."""
import json

from guard_helpers import AppDb, check, pgguard_cli


DESIRED = """
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, migration_name text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users);
"""


def write(tmp_path, text, name="schema.sql"):
  p = tmp_path / name
  p.write_text(text)
  return p


def drift_names(out):
  return {(i["state"], i["kind"], i["name"]) for i in json.loads(out)["items"]}


def test_bookkeeping_tables_are_neither_missing_nor_extra(pg, tmp_path):
  db = AppDb(pg, "exclude_defaults")
  db.sql("CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL)")
  db.sql("CREATE TABLE schema_migrations (version bigint PRIMARY KEY)")
  db.sql("CREATE SCHEMA sqitch; CREATE TABLE sqitch.changes (change_id text PRIMARY KEY)")
  db.sql("CREATE TABLE audit_2024 (id int)")
  schema = write(tmp_path, DESIRED)
  r = check(db.admin_url, schema, "--json", "--fail-on", "missing,extra")
  names = drift_names(r.stdout)
  assert ("missing", "table", "orders") in names, names
  assert not any(n[2] in ("_prisma_migrations", "schema_migrations", "changes", "sqitch")
                 for n in names), names
  assert ("extra", "table", "audit_2024") in names, names
  r = check(db.admin_url, schema, "--json", "--exclude", "audit_*")
  names = drift_names(r.stdout)
  assert not any(n[2] == "audit_2024" for n in names), names
  assert ("missing", "table", "orders") in names


def test_a_repair_never_creates_an_excluded_table(pg, tmp_path):
  db = AppDb(pg, "exclude_repair")
  db.sql("CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL)")
  schema = write(tmp_path, DESIRED)
  r = pgguard_cli("plan", "--schema", schema, "--admin-url", db.admin_url)
  assert r.returncode == 0, r.stderr
  assert "orders" in r.stdout and "_prisma_migrations" not in r.stdout, r.stdout


def test_a_malformed_exclude_pattern_is_refused(pg, tmp_path):
  r = pgguard_cli("check", "--schema", write(tmp_path, DESIRED), "--admin-url", pg.url(),
                  "--exclude", "a..b")
  assert r.returncode == 2
  assert 'invalid value for --exclude: "a..b"' in r.stderr and "SCHEMA.NAME" in r.stderr


def test_cluster_wide_statements_are_refused_with_file_and_line(pg, tmp_path):
  db = AppDb(pg, "sqlfile_refused")
  for stmt, what in [("CREATE ROLE intruder SUPERUSER", "CREATE ROLE"),
                     ("ALTER SYSTEM SET work_mem = '1GB'", "ALTER SYSTEM"),
                     ("COPY users FROM PROGRAM 'id'", "COPY ... PROGRAM"),
                     ("SET ROLE postgres", "SET ROLE / RESET ROLE"),
                     ("GRANT pg_read_server_files TO app", "GRANT/REVOKE of a role"),
                     ("CREATE DATABASE other", "CREATE DATABASE")]:
    schema = write(tmp_path, "-- header\nCREATE TABLE users (id int);\n\n%s;\n" % stmt)
    r = check(db.admin_url, schema)
    assert r.returncode == 2, (stmt, r.stdout, r.stderr)
    assert "schema.sql, line 4: %s is refused" % what in r.stderr, r.stderr
  assert not pg.sql("SELECT 1 FROM pg_roles WHERE rolname = 'intruder'")
  assert not pg.sql("SELECT 1 FROM pg_database WHERE datname = 'other'")


def test_a_syntax_error_names_its_line_before_anything_runs(pg, tmp_path):
  db = AppDb(pg, "sqlfile_syntax")
  before = pg.sql("SELECT count(*) FROM pg_database")[0][0]
  schema = write(tmp_path, "CREATE TABLE a (id int);\n\nCREATE TABLE b (id int,,);\n")
  r = check(db.admin_url, schema)
  assert r.returncode == 2
  assert "schema.sql, line 3: syntax error at or near \",\"" in r.stderr, r.stderr
  assert pg.sql("SELECT count(*) FROM pg_database")[0][0] == before, "no shadow was created"


def test_statements_for_a_missing_role_are_skipped_with_a_warning(pg, tmp_path):
  db = AppDb(pg, "sqlfile_roles")
  schema = write(tmp_path, "CREATE TABLE users (id int PRIMARY KEY);\n"
                           "ALTER TABLE users OWNER TO role_of_another_server;\n"
                           "GRANT SELECT ON users TO reporting_role_elsewhere;\n"
                           "CREATE TABLE orders (id int PRIMARY KEY);\n")
  r = check(db.admin_url, schema)
  assert r.returncode == 1, r.stderr   # both tables missing: the file loaded
  assert "schema.sql, line 2: skipped" in r.stderr and "role_of_another_server" in r.stderr
  assert "schema.sql, line 3: skipped" in r.stderr
  assert "users" in r.stdout and "orders" in r.stdout


def test_an_error_in_a_later_statement_names_its_own_line(pg, tmp_path):
  db = AppDb(pg, "sqlfile_lines")
  schema = write(tmp_path, "CREATE TABLE users (id int PRIMARY KEY);\n\n"
                           "CREATE TABLE orders (\n  id int PRIMARY KEY,\n"
                           "  user_id int REFERENCES no_such_table\n);\n")
  r = check(db.admin_url, schema)
  assert r.returncode == 2
  # No position in PostgreSQL's error: the line where the statement starts.
  assert "schema.sql, line 3:" in r.stderr and "no_such_table" in r.stderr, r.stderr
  schema = write(tmp_path, "CREATE TABLE users (id int PRIMARY KEY);\n\n"
                           "CREATE TABLE orders (\n  id int PRIMARY KEY,\n"
                           "  status no_such_type\n);\n")
  r = check(db.admin_url, schema)
  assert r.returncode == 2
  # With a position: the line it points at, inside the statement.
  assert "schema.sql, line 5:" in r.stderr and "no_such_type" in r.stderr, r.stderr
