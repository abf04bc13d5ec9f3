# `check` and `plan` for CI and runbooks (issue 8, item 6, in part): `check --fail-on` picks the
# drift states that fail it, `plan --json` prints the statements a program can read, and check
# lists the objects inside a missing schema that plan creates.
import json

from guard_helpers import AppDb, check, pgguard_cli

DESIRED = """
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id int PRIMARY KEY, total numeric NOT NULL);
CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL, note varchar(20));
"""
# The live database: billing missing with its table, note of a different type, and an extra table.
LIVE = """
CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL, note text);
CREATE TABLE scratch (id int);
"""


def make_case(pg, tmp_path, name):
  schema = tmp_path / "desired.sql"
  schema.write_text(DESIRED + "-- %s\n" % name)
  live = tmp_path / "live.sql"
  live.write_text(LIVE)
  db = AppDb(pg, name)
  db.apply(live)
  return db, schema


def test_fail_on_picks_the_states_that_fail_check(pg, tmp_path):
  db, schema = make_case(pg, tmp_path, "chk_fail_on")
  assert check(db.admin_url, schema).returncode == 1                       # missing (default)
  assert check(db.admin_url, schema, "--fail-on", "extra").returncode == 1
  assert check(db.admin_url, schema, "--fail-on", "conflicting").returncode == 1
  # Once the missing objects exist, conflicts alone pass by default and fail on request.
  pg.sql("CREATE SCHEMA billing AUTHORIZATION %s" % db.owner, db=db.name)
  db.sql("CREATE TABLE billing.invoices (id int PRIMARY KEY, total numeric NOT NULL)", as_owner=True)
  assert check(db.admin_url, schema).returncode == 0
  assert check(db.admin_url, schema, "--fail-on", "missing,conflicting").returncode == 1
  r = check(db.admin_url, schema, "--fail-on", "missing,typo")
  assert r.returncode == 2 and "--fail-on" in r.stderr, r.stderr


def test_plan_json_lists_the_statements_with_their_kind(pg, tmp_path):
  db, schema = make_case(pg, tmp_path, "chk_plan_json")
  r = pgguard_cli("plan", "--schema", schema, "--admin-url", db.admin_url, "--json")
  assert r.returncode == 0, r.stderr
  plan = json.loads(r.stdout)
  kinds = [s["kind"] for s in plan["statements"]]
  assert kinds == ["CREATE SCHEMA", "CREATE TABLE", "ALTER TABLE ... ADD CONSTRAINT"], plan
  assert '"billing"."invoices"' in plan["statements"][1]["sql"], plan
  assert plan["partial"] is False


def test_check_lists_the_tables_inside_a_missing_schema(pg, tmp_path):
  db, schema = make_case(pg, tmp_path, "chk_in_missing_schema")
  r = check(db.admin_url, schema)
  assert r.returncode == 1, r.stderr
  assert any(line.split()[:3] == ["missing", "table", "billing.invoices"]
             for line in r.stdout.splitlines()), r.stdout


def test_check_reports_columns_a_repair_would_append_out_of_order(pg, tmp_path):
  from guard_helpers import AppDb, check
  db = AppDb(pg, "check_column_order")
  db.sql("CREATE TABLE people (id int PRIMARY KEY, email text)")
  schema = tmp_path / "schema.sql"
  schema.write_text("CREATE TABLE people (id int PRIMARY KEY, name text, email text);\n"
                    "CREATE TABLE tags (id int PRIMARY KEY, label text);\n")
  r = check(db.admin_url, schema)
  assert r.returncode == 1
  assert "column order differs from the desired schema in 1 table" in r.stdout, r.stdout
  assert "public.people: desired (id, name, email), live after repair (id, email, name)" in r.stdout
  db.sql("CREATE TABLE tags (id int PRIMARY KEY, label text)")
  db.sql("ALTER TABLE people ADD COLUMN name text")
  r = check(db.admin_url, schema)
  assert r.returncode == 0, r.stdout   # the order alone does not fail the check
  assert "public.people: desired (id, name, email), live after repair (id, email, name)" in r.stdout
