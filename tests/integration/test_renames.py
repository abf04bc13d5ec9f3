"""Suspected renames: a database restored from a backup older than a RENAME migration has the
old name where the desired schema has the new one. pgguard reports the pair as one
suspected_rename and creates no empty twin beside the old column or table (the application's
writes would split between the two); --allow-twin creates it as before."""
import json

import psycopg2.errors
import pytest

from guard_fixtures import make_db, start_guarded, wait_metric
from guard_helpers import pgguard_cli, plan_statements

COLUMN_DESIRED = "CREATE TABLE users (id int PRIMARY KEY, full_name text);\n"
COLUMN_LIVE = ["CREATE TABLE users (id int PRIMARY KEY, name text)",
               "INSERT INTO users VALUES (1, 'Ada'), (2, 'Bob')"]

TABLE_DESIRED = "CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL);\n"
TABLE_LIVE = ["CREATE TABLE clients (id int PRIMARY KEY, email text NOT NULL)",
              "INSERT INTO clients VALUES (1, 'ada@example.com')"]


def schema_file(tmp_path, text):
  p = tmp_path / "schema.sql"
  p.write_text(text)
  return p


def cli(cmd, pg, db, schema, *extra):
  return pgguard_cli(cmd, "--schema", schema, "--admin-url", pg.url(dbname=db), *extra)


def columns(pg, db, table):
  return sorted(r[0] for r in pg.sql(
    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
    " AND NOT attisdropped", (table,), db=db))


def relation_exists(pg, db, name):
  return pg.sql("SELECT to_regclass(%s) IS NOT NULL", ("public." + name,), db=db)[0][0]


CASES = {
  "column": dict(desired=COLUMN_DESIRED, live=COLUMN_LIVE, kind="column", name="full_name",
                 why="suspected rename users.name -> users.full_name",
                 twin='ADD COLUMN "full_name"', query="SELECT full_name FROM users",
                 error=psycopg2.errors.UndefinedColumn, still_works="SELECT name FROM users"),
  "table": dict(desired=TABLE_DESIRED, live=TABLE_LIVE, kind="table", name="customers",
                why="suspected rename table public.clients -> public.customers",
                twin='CREATE TABLE "public"."customers"', query="SELECT email FROM customers",
                error=psycopg2.errors.UndefinedTable, still_works="SELECT email FROM clients"),
}


def twin_exists(pg, db, case):
  if case["kind"] == "column":
    return "full_name" in columns(pg, db, "users")
  return relation_exists(pg, db, "customers")


@pytest.mark.parametrize("what", sorted(CASES))
def test_check_and_plan_report_a_suspected_rename_and_plan_no_twin(pg, tmp_path, what):
  case = CASES[what]
  db = "ren_check_" + what
  make_db(pg, db, statements=case["live"])
  schema = schema_file(tmp_path, case["desired"])

  r = cli("check", pg, db, schema)
  assert r.returncode == 0, (r.stdout, r.stderr)   # nothing missing: --fail-on missing passes
  line = [l for l in r.stdout.splitlines() if l.startswith("suspected_rename")]
  assert len(line) == 1, r.stdout
  assert case["kind"] in line[0] and case["why"] in line[0], line
  assert "suspected_rename: 1 %s" % case["kind"] in r.stdout, r.stdout
  assert "missing: 0; extra: 0" in r.stdout, r.stdout

  r = cli("check", pg, db, schema, "--json")
  report = json.loads(r.stdout)
  assert report["suspected_rename"] == 1 and report["missing"] == 0 and report["extra"] == 0
  assert report["counts"][case["kind"]]["suspected_rename"] == 1
  (item,) = report["items"]
  assert (item["state"], item["kind"], item["name"], item["why"]) == \
      ("suspected_rename", case["kind"], case["name"], case["why"]), item

  r = cli("check", pg, db, schema, "--fail-on", "suspected_rename")
  assert r.returncode == 1, (r.stdout, r.stderr)

  r = cli("plan", pg, db, schema)
  assert r.returncode == 0, r.stderr
  assert not any(case["twin"] in s for s in plan_statements(r.stdout)), r.stdout

  # --allow-twin: today's behaviour, the new object is missing and planned.
  r = cli("check", pg, db, schema, "--json", "--allow-twin")
  report = json.loads(r.stdout)
  assert report["suspected_rename"] == 0 and report["missing"] == 1 and report["extra"] >= 1
  r = cli("plan", pg, db, schema, "--allow-twin")
  assert any(case["twin"] in s for s in plan_statements(r.stdout)), r.stdout
  assert not twin_exists(pg, db, case)


@pytest.mark.parametrize("what", sorted(CASES))
def test_the_proxy_passes_the_error_through_and_creates_no_twin(pg, pgguard, tmp_path, what):
  case = CASES[what]
  db = "ren_proxy_" + what
  make_db(pg, db, statements=case["live"])
  g = start_guarded(pgguard, pg, db, schema=schema_file(tmp_path, case["desired"]))
  assert wait_metric(g, "pgguard_schema_drift_objects", 1, kind=case["kind"],
                     state="suspected_rename") == 1
  conn = g.connect()
  try:
    with conn.cursor() as cur:
      with pytest.raises(case["error"]):
        cur.execute(case["query"])
      # PostgreSQL's own error, and the session goes on.
      cur.execute(case["still_works"])
      assert len(cur.fetchall()) >= 1
  finally:
    conn.close()
  assert not twin_exists(pg, db, case)
  assert g.metrics().get_value("pgguard_schema_drift_objects", kind=case["kind"],
                               state="suspected_rename") == 1


@pytest.mark.parametrize("what", sorted(CASES))
def test_allow_twin_creates_the_new_object_as_before(pg, pgguard, tmp_path, what):
  case = CASES[what]
  db = "ren_twin_" + what
  make_db(pg, db, statements=case["live"])
  g = start_guarded(pgguard, pg, db, "--allow-twin",
                    schema=schema_file(tmp_path, case["desired"]))
  conn = g.connect()
  try:
    with conn.cursor() as cur:
      cur.execute(case["query"])   # repaired and replayed
      cur.fetchall()
  finally:
    conn.close()
  assert twin_exists(pg, db, case)
