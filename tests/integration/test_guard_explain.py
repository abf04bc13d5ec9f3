# Act only on what the desired schema explains (issue 7, item 1): a guarded SQLSTATE makes
# pgguard act only when the object its message names is in the desired schema, decided from the
# schema in memory, without a catalog query. Everything else passes through untouched.
import time

import psycopg2
import psycopg2.errors
import pytest

from guard_fixtures import (CHECKS, NO_APP, NO_EXTRA, NO_WIDGETS, REPAIRS, REPLAYS, count,
                            guard_events, guarded_factory, metric, print_logs, unique_db_name,
                            wait_metric)


@pytest.fixture
def guarded(pg, pgguard, request):
  make, started = guarded_factory(pg, pgguard, unique_db_name("ex", request))
  yield make
  print_logs(started)


def quiet(inst):
  """Metrics that move only when the guard acts."""
  m = inst.metrics()
  return (m.total(CHECKS), m.total(REPAIRS), m.total(REPLAYS))


@pytest.mark.parametrize("sql,exc,message", [
  ("SELECT * FROM typo_table", psycopg2.errors.UndefinedTable, 'relation "typo_table" does not exist'),
  ("SELECT * FROM app.typo", psycopg2.errors.UndefinedTable, 'relation "app.typo" does not exist'),
  ("SELECT no_such_column FROM existing", psycopg2.errors.UndefinedColumn,
   'column "no_such_column" does not exist'),
  ("SHOW no_such.param", psycopg2.errors.UndefinedObject,
   'unrecognized configuration parameter "no_such.param"'),
  ("SELECT 'x'::no_such_type", psycopg2.errors.UndefinedObject, 'type "no_such_type" does not exist'),
  ("SELECT no_such_function(1)", psycopg2.errors.UndefinedFunction,
   "function no_such_function(integer) does not exist"),
  ("CREATE TABLE no_such_schema.t (id int)", psycopg2.errors.InvalidSchemaName,
   'schema "no_such_schema" does not exist'),
])
def test_error_the_desired_schema_does_not_explain_passes_untouched(guarded, sql, exc, message):
  g = guarded(NO_WIDGETS)   # something is missing, so a needless repair would show
  before = quiet(g.inst)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    t0 = time.monotonic()
    with pytest.raises(exc) as ei:
      cur.execute(sql)
    elapsed = time.monotonic() - t0
    cur.execute("SELECT 1")
  conn.close()
  assert ei.value.diag.message_primary == message
  assert elapsed < 1.0, elapsed
  time.sleep(0.2)
  assert quiet(g.inst) == before, g.inst.log[-3000:]
  assert not guard_events(g.inst, "repair_applied")


def test_typo_loop_inside_transactions_costs_no_catalog_check(guarded):
  g = guarded(())
  checks0 = metric(g.inst, CHECKS)
  conn = g.inst.connect()
  loops = 0
  t0 = time.monotonic()
  with conn.cursor() as cur:
    while time.monotonic() - t0 < 3:
      with pytest.raises(psycopg2.errors.UndefinedTable):
        cur.execute("BEGIN; SELECT 1; SELECT * FROM typo")
      cur.execute("ROLLBACK")
      loops += 1
  conn.close()
  assert loops > 20, loops
  assert metric(g.inst, CHECKS) == checks0, g.inst.log[-3000:]


def test_qualified_column_through_an_alias_is_explained_and_replayed(guarded, pg):
  g = guarded(NO_EXTRA)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    cur.execute("SELECT e.extra FROM existing e")
    assert cur.fetchall() == [(None,), (None,)]
  conn.close()
  assert metric(g.inst, REPLAYS, result="succeeded") == 1, g.inst.log[-3000:]


def test_missing_desired_schema_3F000_is_repaired(guarded, pg):
  g = guarded(NO_APP)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    with pytest.raises(psycopg2.errors.InvalidSchemaName):
      cur.execute("CREATE TABLE app.scratch (id int)")    # DDL: repaired, never replayed
  conn.close()
  assert wait_metric(g.inst, REPAIRS, 1, result="applied") == 1, g.inst.log[-3000:]
  assert count(pg, g.db, "SELECT count(*) FROM pg_namespace WHERE nspname = 'app'") == 1
  assert count(pg, g.db, "SELECT count(*) FROM pg_class WHERE relname = 'scratch'") == 0
  assert [e.get("decision") for e in guard_events(g.inst, "guarded_error")] == ["repair_only"]


VIEW_SCHEMA = """
CREATE DOMAIN email_address AS text CHECK (VALUE LIKE '%@%');
CREATE TABLE people (id int PRIMARY KEY, email text);
CREATE VIEW people_emails AS SELECT id, email FROM people;
CREATE SEQUENCE invoice_no;
"""


@pytest.mark.parametrize("drops,sql,want", [
  (["DROP VIEW people_emails"], "SELECT count(*) FROM people_emails", 1),
  (["DROP SEQUENCE invoice_no"], "SELECT nextval('invoice_no')", 1),
  (["DROP DOMAIN email_address"], "SELECT ('a@b'::email_address) IS NOT NULL", True),
])
def test_a_missing_view_sequence_or_domain_is_repaired_and_the_request_replayed(
    pg, pgguard, tmp_path, request, drops, sql, want):
  from guard_fixtures import make_db, start_guarded
  db = unique_db_name("exv", request)
  schema = tmp_path / "schema.sql"
  schema.write_text(VIEW_SCHEMA)
  make_db(pg, db, VIEW_SCHEMA + "INSERT INTO people VALUES (1, 'a@b');", drops)
  inst = start_guarded(pgguard, pg, db, schema=schema)
  try:
    conn = inst.connect()
    with conn.cursor() as cur:
      cur.execute(sql)
      got = cur.fetchone()[0]
    conn.close()
    assert got == want
    assert metric(inst, REPLAYS, result="succeeded") == 1
  finally:
    print_logs([inst])
