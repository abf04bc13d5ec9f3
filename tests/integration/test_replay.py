# The replay rules of DESIGN.md ("Replay or fail cleanly") against real PostgreSQL and real
# clients: what each client receives, and what the database holds afterwards.
import re
import threading
import time
import types

import psycopg2
import psycopg2.errors
import pytest

from conftest import PGBENCH, client_env, run
from guard_fixtures import (NO_EXTRA, NO_PRIORITY, NO_WIDGETS, REPAIRS, REPLAYS, REPLAY_DESIRED as DESIRED,
                            SEED_ROWS, SYNC, TWO_MOODS, bind, count, describe_statement, diag_fields,
                            execute, guard_events, make_db, metric, node_queries, parse,
                            raw_connect, read_groups, start_guarded, tables, wait_metric)


@pytest.fixture
def guarded(pg, pgguard, request):
  """guarded(drops, *pgguard_args) -> namespace(inst, db, kw): a fresh database at the desired
  schema minus drops (with two rows in existing), and a fresh ready pgguard guarding it."""
  db = "rp_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[-50:]

  started = []

  def make(drops=(), *args, ready=True, role=None):
    kw = make_db(pg, db, DESIRED, list(drops) + SEED_ROWS, role=role)
    inst = start_guarded(pgguard, pg, db, *args, ready=ready, role=role)
    started.append(inst)
    return types.SimpleNamespace(inst=inst, db=db, kw=kw)
  yield make
  for inst in started:  # shown by pytest only when the test fails
    print("---- pgguard log (%s)\n%s" % (" ".join(inst.argv[1:]), inst.log[-6000:]))


def assert_one_replayed_repair(inst):
  m = inst.metrics()
  assert m.get_value(REPAIRS, result="applied") == 1, inst.log[-3000:]
  assert m.get_value(REPAIRS, result="failed") == 0
  assert m.get_value(REPLAYS, result="succeeded") == 1, inst.log[-3000:]
  assert m.get_value(REPLAYS, result="failed") == 0
  assert m.get_value(REPLAYS, result="skipped") == 0


def widget_names(pg, db):
  return [r[0] for r in pg.sql("SELECT name FROM widgets ORDER BY id", db=db)]


# --- replayed ----------------------------------------------------------------------

def test_simple_query_on_missing_table_succeeds_first_try(guarded, pg):
  g = guarded(NO_WIDGETS)
  assert "public.widgets" not in tables(pg, g.db)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    cur.execute("INSERT INTO widgets (name) VALUES ('simple') RETURNING name")
    assert cur.fetchall() == [("simple",)]
    cur.execute("SELECT 1")  # the connection goes on normally
  conn.close()
  assert "public.widgets" in tables(pg, g.db)
  assert widget_names(pg, g.db) == ["simple"]
  assert_one_replayed_repair(g.inst)
  assert metric(g.inst, "pgguard_undefined_object_errors_total", sqlstate="42P01") == 1
  # The repaired table belongs to the database owner, the application's role.
  assert pg.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'widgets'", db=g.db) == \
      [("guard_app",)]


# The roles conftest's pg_hba gives one authentication method each (as test_auth.py sets them up).
AUTH_ROLES = {
  "auth_trust": ("trust-secret", None),
  "auth_password": ("clear-secret", None),
  "auth_md5": ("md5-secret", "md5"),
  "auth_scram": ("scram-secret", "scram-sha-256"),
}


@pytest.mark.parametrize("role", sorted(AUTH_ROLES))
def test_replay_works_whatever_the_authentication_method(guarded, pg, role):
  """The authentication exchange (password/SASL messages) is part of the client's byte stream
  but of no request: it must not keep a request from being replayable."""
  password, enc = AUTH_ROLES[role]
  pg.create_role(role, password, password_encryption=enc)
  g = guarded(NO_WIDGETS, role={"user": role, "password": password})
  conn = g.inst.connect()
  with conn.cursor() as cur:
    cur.execute("INSERT INTO widgets (name) VALUES (%s) RETURNING name", (role,))
    assert cur.fetchall() == [(role,)]
  conn.close()
  assert widget_names(pg, g.db) == [role]
  assert_one_replayed_repair(g.inst)


def test_psql_command_on_missing_table_succeeds_first_try(guarded, pg):
  g = guarded(NO_WIDGETS)
  r = g.inst.psql("-v", "ON_ERROR_STOP=1", "-At",
                  sql="INSERT INTO widgets (name) VALUES ('psql') RETURNING name", **g.kw)
  assert r.returncode == 0, r.stderr
  assert r.stdout.splitlines()[0] == "psql"
  assert widget_names(pg, g.db) == ["psql"]
  assert_one_replayed_repair(g.inst)


def test_extended_unnamed_statement_on_missing_table_succeeds_first_try(guarded, pg):
  g = guarded(NO_WIDGETS)
  out = node_queries(g.inst.url(**g.kw), [
    {"text": "INSERT INTO widgets (name) VALUES ($1) RETURNING name", "values": ["unnamed"]},
    {"text": "SELECT count(*)::int AS n FROM widgets WHERE name = $1", "values": ["unnamed"]},
  ])
  assert out[0].get("rows") == [{"name": "unnamed"}], out
  assert out[1].get("rows") == [{"n": 1}], out
  assert widget_names(pg, g.db) == ["unnamed"]
  assert_one_replayed_repair(g.inst)


def test_extended_named_statement_on_missing_table_succeeds_and_stays_prepared(guarded, pg):
  g = guarded(NO_WIDGETS)
  stmt = "INSERT INTO widgets (name) VALUES ($1) RETURNING name"
  out = node_queries(g.inst.url(**g.kw), [
    {"name": "ins_widget", "text": stmt, "values": ["named-1"]},
    {"name": "ins_widget", "text": stmt, "values": ["named-2"]},  # Bind only: reuses the statement
  ])
  assert [o.get("rows") for o in out] == [[{"name": "named-1"}], [{"name": "named-2"}]], out
  assert widget_names(pg, g.db) == ["named-1", "named-2"]
  assert_one_replayed_repair(g.inst)


def test_named_statement_prepared_in_its_own_sync_cycle_is_replayed(guarded, pg):
  """Parse/Describe/Sync alone (how libpq's PQprepare and drivers' prepare() work), then
  Bind/Execute/Sync on the prepared statement."""
  g = guarded(NO_WIDGETS)
  c = raw_connect(g.inst, g.kw)
  try:
    c.send(parse("INSERT INTO widgets (name) VALUES ($1) RETURNING name", name="prep_w")
           + describe_statement("prep_w") + SYNC)
    [prep] = read_groups(c, 1)
    assert [m.type for m in prep] == [b"1", b"t", b"T", b"Z"], prep
    c.send(bind(["prepared"], stmt="prep_w") + execute() + SYNC)
    [run_] = read_groups(c, 1)
    assert [m.type for m in run_] == [b"2", b"D", b"C", b"Z"], run_
    assert run_[-1].body == b"I"
  finally:
    c.close()
  assert widget_names(pg, g.db) == ["prepared"]
  assert_one_replayed_repair(g.inst)


def test_pgbench_prepared_mode_on_missing_table_succeeds(guarded, pg, tmp_path):
  g = guarded(NO_WIDGETS)
  script = tmp_path / "widget.sql"
  script.write_text("\\set r random(1, 1000000000)\n"
                    "INSERT INTO widgets (name) VALUES ('pgbench-' || :r);\n")
  p = g.inst.params(**g.kw)
  r = run([PGBENCH, "-n", "-M", "prepared", "-t", "1", "-c", "1", "-f", str(script),
           "-h", p["host"], "-p", str(p["port"]), "-U", p["user"], p["dbname"]],
          timeout=60, env=client_env(PGPASSWORD=p["password"]))
  out = r.stdout.decode() + r.stderr.decode()
  assert r.returncode == 0, out
  assert re.search(r"number of transactions actually processed: 1/1", out), out
  assert re.search(r"number of failed transactions: 0", out), out
  assert count(pg, g.db, "SELECT count(*) FROM widgets WHERE name LIKE 'pgbench-%%'") == 1
  assert_one_replayed_repair(g.inst)


def test_first_statement_after_implicit_begin_is_replayed_and_commits_once(guarded, pg):
  g = guarded(NO_WIDGETS)
  conn = g.inst.connect(autocommit=False, **g.kw)  # psycopg2 sends BEGIN, then the statement
  with conn.cursor() as cur:
    cur.execute("INSERT INTO widgets (name) VALUES ('in-tx') RETURNING name")
    assert cur.fetchall() == [("in-tx",)]
    cur.execute("INSERT INTO existing (note) VALUES ('in-tx')")
  conn.commit()
  conn.close()
  assert widget_names(pg, g.db) == ["in-tx"]
  assert count(pg, g.db, "SELECT count(*) FROM existing WHERE note = 'in-tx'") == 1
  assert_one_replayed_repair(g.inst)
  [ev] = guard_events(g.inst, "replay")
  assert ev.get("prior_status") == "T", ev


def test_node_begin_then_parameterised_insert_is_replayed_in_the_transaction(guarded, pg):
  """node-postgres: BEGIN as a simple Query, then an extended-protocol INSERT that fails."""
  g = guarded(NO_WIDGETS)
  out = node_queries(g.inst.url(**g.kw), [
    {"text": "BEGIN"},
    {"text": "INSERT INTO widgets (name) VALUES ($1) RETURNING name", "values": ["node-tx"]},
    {"text": "INSERT INTO existing (note) VALUES ($1)", "values": ["node-tx"]},
    {"text": "SELECT txid_current_if_assigned() IS NOT NULL AS in_tx"},
    {"text": "COMMIT"},
  ])
  assert [o.get("command") for o in out] == ["BEGIN", "INSERT", "INSERT", "SELECT", "COMMIT"], out
  assert out[1]["rows"] == [{"name": "node-tx"}]
  assert out[3]["rows"] == [{"in_tx": True}]
  assert widget_names(pg, g.db) == ["node-tx"]
  assert count(pg, g.db, "SELECT count(*) FROM existing WHERE note = 'node-tx'") == 1
  assert_one_replayed_repair(g.inst)


def test_begin_and_serializable_setup_survive_the_replay(guarded, pg):
  g = guarded(NO_WIDGETS)
  conn = g.inst.connect(**g.kw)
  with conn.cursor() as cur:
    cur.execute("BEGIN")
    cur.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    cur.execute("INSERT INTO widgets (name) VALUES ('serial') RETURNING name")
    assert cur.fetchall() == [("serial",)]
    cur.execute("SHOW transaction_isolation")
    assert cur.fetchone()[0] == "serializable"
    cur.execute("SELECT txid_current_if_assigned() IS NOT NULL")
    assert cur.fetchone()[0] is True  # still inside the (replayed) block that wrote the row
    cur.execute("COMMIT")
  conn.close()
  assert widget_names(pg, g.db) == ["serial"]
  assert_one_replayed_repair(g.inst)


def test_missing_column_on_table_with_rows_is_added_and_rows_stay(guarded, pg):
  g = guarded(NO_EXTRA)
  before = pg.sql("SELECT id, note FROM existing ORDER BY id", db=g.db)
  assert len(before) == 2
  conn = g.inst.connect()
  with conn.cursor() as cur:
    cur.execute("SELECT id, note, extra FROM existing ORDER BY id")
    assert cur.fetchall() == [(i, n, None) for i, n in before]
  conn.close()
  assert pg.sql("SELECT id, note, extra FROM existing ORDER BY id", db=g.db) == \
      [(i, n, None) for i, n in before]
  assert_one_replayed_repair(g.inst)
  assert metric(g.inst, "pgguard_undefined_object_errors_total", sqlstate="42703") == 1


def test_missing_enum_type_in_a_cast_is_created_and_replayed(guarded, pg):
  g = guarded(NO_PRIORITY)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    cur.execute("SELECT 'high'::priority::text AS p")
    assert cur.fetchall() == [("high",)]
  conn.close()
  assert [r[0] for r in pg.sql("SELECT unnest(enum_range(NULL::priority))::text", db=g.db)] == \
      ["low", "high"]
  assert_one_replayed_repair(g.inst)
  assert metric(g.inst, "pgguard_undefined_object_errors_total", sqlstate="42704") == 1


def test_missing_enum_label_is_added_and_insert_replayed_once(guarded, pg):
  g = guarded(TWO_MOODS)
  assert metric(g.inst, "pgguard_schema_drift_objects", kind="enum_label", state="missing") == 1
  conn = g.inst.connect()
  with conn.cursor() as cur:
    cur.execute("INSERT INTO mood_log (m) VALUES ('meh') RETURNING m::text")
    assert cur.fetchall() == [("meh",)]
  conn.close()
  assert [r[0] for r in pg.sql("SELECT unnest(enum_range(NULL::mood))::text", db=g.db)] == \
      ["happy", "sad", "meh"]
  assert pg.sql("SELECT m::text FROM mood_log", db=g.db) == [("meh",)]
  assert_one_replayed_repair(g.inst)
  assert metric(g.inst, "pgguard_undefined_object_errors_total", sqlstate="22P02") == 1


def test_invalid_enum_input_without_missing_labels_passes_through(guarded, pg):
  g = guarded(())
  conn = g.inst.connect()
  with conn.cursor() as cur:
    e = None
    try:
      cur.execute("INSERT INTO mood_log (m) VALUES ('furious')")
    except psycopg2.Error as ex:
      e = ex
    assert e is not None and e.pgcode == "22P02"
    cur.execute("SELECT count(*) FROM mood_log")
    assert cur.fetchone()[0] == 0
  conn.close()
  m = g.inst.metrics()
  assert m.total(REPAIRS) == 0
  assert m.get_value("pgguard_undefined_object_errors_total", sqlstate="22P02") == 0


# --- not replayed: the original error, and nothing runs twice ------------------------

def test_multi_statement_query_is_not_replayed_and_its_insert_rolls_back(guarded, pg):
  g = guarded(NO_WIDGETS)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    with pytest.raises(psycopg2.errors.UndefinedTable) as ei:
      cur.execute("INSERT INTO existing (note) VALUES ('multi'); SELECT * FROM widgets")
    assert 'relation "widgets" does not exist' in str(ei.value)
    cur.execute("SELECT 1")
  conn.close()
  # The implicit transaction around the whole string rolled the INSERT back.
  assert count(pg, g.db, "SELECT count(*) FROM existing WHERE note = 'multi'") == 0
  assert [e.get("decision") for e in guard_events(g.inst, "guarded_error")] == ["repair_only"]
  # The repair still ran, so the client's retry works.
  assert wait_metric(g.inst, REPAIRS, 1, result="applied") == 1
  assert "public.widgets" in tables(pg, g.db)
  m = g.inst.metrics()
  assert m.get_value(REPLAYS, result="succeeded") == 0
  assert m.get_value(REPLAYS, result="skipped") == 1


def test_multi_statement_query_with_commit_inside_keeps_its_row_exactly_once(guarded, pg):
  g = guarded(NO_WIDGETS)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    with pytest.raises(psycopg2.errors.UndefinedTable):
      cur.execute("INSERT INTO existing (note) VALUES ('committed'); COMMIT; SELECT * FROM widgets")
  conn.close()
  assert wait_metric(g.inst, REPAIRS, 1, result="applied") == 1
  time.sleep(0.3)  # anything replayed would have run by now
  assert count(pg, g.db, "SELECT count(*) FROM existing WHERE note = 'committed'") == 1
  assert metric(g.inst, REPLAYS, result="succeeded") == 0


def test_pipelined_later_sync_group_prevents_replay_and_runs_once(guarded, pg):
  g = guarded(NO_WIDGETS)
  c = raw_connect(g.inst, g.kw)
  try:
    c.send(parse("SELECT name FROM widgets") + bind() + execute() + SYNC
           + parse("INSERT INTO existing (note) VALUES ('piped')") + bind() + execute() + SYNC)
    first, second = read_groups(c, 2)
    assert [m.type for m in first] == [b"E", b"Z"], first
    assert first[0].fields["C"] == "42P01"
    assert first[0].fields["M"] == 'relation "widgets" does not exist'
    assert [m.type for m in second] == [b"1", b"2", b"C", b"Z"], second
    assert second[2].body == b"INSERT 0 1\0"
    assert wait_metric(g.inst, REPAIRS, 1, result="applied") == 1
    time.sleep(0.3)
    msgs = c.simple_query("SELECT count(*) FROM widgets")
    assert [m.type for m in msgs] == [b"T", b"D", b"C", b"Z"], msgs
  finally:
    c.close()
  assert count(pg, g.db, "SELECT count(*) FROM existing WHERE note = 'piped'") == 1
  assert [e.get("decision") for e in guard_events(g.inst, "guarded_error")] == ["repair_only"]
  assert metric(g.inst, REPLAYS, result="succeeded") == 0


def test_statement_mid_transaction_fails_cleanly_and_retry_after_rollback_works(guarded, pg):
  g = guarded(NO_WIDGETS)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    cur.execute("BEGIN")
    cur.execute("SELECT 1 FROM existing LIMIT 1")
    cur.execute("INSERT INTO existing (note) VALUES ('mid-tx')")
    with pytest.raises(psycopg2.errors.UndefinedTable):
      cur.execute("SELECT * FROM widgets")
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
      cur.execute("SELECT 1")
    cur.execute("ROLLBACK")
    assert wait_metric(g.inst, REPAIRS, 1, result="applied") == 1, g.inst.log[-3000:]
    cur.execute("SELECT count(*) FROM widgets")
    assert cur.fetchone()[0] == 0
  conn.close()
  assert count(pg, g.db, "SELECT count(*) FROM existing WHERE note = 'mid-tx'") == 0
  assert [e.get("decision") for e in guard_events(g.inst, "guarded_error")] == ["repair_only"]
  assert metric(g.inst, REPLAYS, result="succeeded") == 0


def test_table_missing_from_desired_schema_fails_at_once_without_ddl(guarded, pg):
  g = guarded(())
  before = tables(pg, g.db)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    t0 = time.monotonic()
    with pytest.raises(psycopg2.errors.UndefinedTable) as ei:
      cur.execute("SELECT * FROM not_in_desired")
    elapsed = time.monotonic() - t0
    assert ei.value.diag.message_primary == 'relation "not_in_desired" does not exist'
    assert ei.value.diag.statement_position == "15"
    cur.execute("SELECT count(*) FROM existing")
    assert cur.fetchone()[0] == 2
  conn.close()
  assert elapsed < 1.0, elapsed
  assert tables(pg, g.db) == before
  assert metric(g.inst, REPAIRS, result="applied") == 0


def test_search_path_hiding_an_existing_table_fails_and_creates_nothing(guarded, pg):
  g = guarded(())
  pg.sql("INSERT INTO app.accounts VALUES (1, 'acme')", db=g.db)
  before = tables(pg, g.db)
  assert "app.accounts" in before
  conn = g.inst.connect(options="-c search_path=public", **g.kw)
  with conn.cursor() as cur:
    with pytest.raises(psycopg2.errors.UndefinedTable):
      cur.execute("SELECT * FROM accounts")
    cur.execute("SELECT name FROM app.accounts")
    assert cur.fetchall() == [("acme",)]
  conn.close()
  assert tables(pg, g.db) == before
  assert "public.accounts" not in tables(pg, g.db)
  assert metric(g.inst, REPAIRS, result="applied") == 0


def test_repair_off_passes_the_error_and_still_reports_drift(guarded, pg):
  g = guarded(NO_WIDGETS, "--repair", "off")
  assert metric(g.inst, "pgguard_schema_drift_objects", kind="table", state="missing") == 1
  conn = g.inst.connect()
  with conn.cursor() as cur:
    with pytest.raises(psycopg2.errors.UndefinedTable):
      cur.execute("INSERT INTO widgets (name) VALUES ('off')")
    cur.execute("SELECT 1")
  conn.close()
  time.sleep(0.3)
  assert "public.widgets" not in tables(pg, g.db)
  m = g.inst.metrics()
  assert m.total(REPAIRS) == 0
  assert m.get_value("pgguard_schema_drift_objects", kind="table", state="missing") == 1


def test_failed_repair_returns_the_original_error_field_for_field(guarded, pg):
  """The repair must ALTER "existing" (add the missing column, and the new table's foreign key
  references it); another session holds it ACCESS EXCLUSIVE past --lock-timeout."""
  g = guarded(NO_WIDGETS + NO_EXTRA, "--lock-timeout", "300", "--repair-cooldown", "60")
  sql = "SELECT   name FROM widgets WHERE id > 0"
  direct = pg.connect(**g.kw)
  with direct.cursor() as cur:
    with pytest.raises(psycopg2.errors.UndefinedTable) as want:
      cur.execute(sql)
  direct.close()
  locker = pg.connect(autocommit=False, **g.kw)
  try:
    with locker.cursor() as lc:
      lc.execute("LOCK TABLE existing IN ACCESS EXCLUSIVE MODE")
      conn = g.inst.connect()
      with conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.UndefinedTable) as got:
          cur.execute(sql)
        cur.execute("SELECT 42")
        assert cur.fetchone()[0] == 42
      conn.close()
  finally:
    locker.rollback()
    locker.close()
  want_f, got_f = diag_fields(want.value), diag_fields(got.value)
  hint = got_f.pop("H")
  assert want_f.pop("H") is None
  assert got_f == want_f
  assert want_f["P"] == "20"
  # pgguard may add a hint saying why it did not replay, only where PostgreSQL sent none.
  assert hint is None or "pgguard" in hint, hint
  m = g.inst.metrics()
  assert m.get_value(REPAIRS, result="failed") == 1, g.inst.log[-3000:]
  assert m.get_value(REPAIRS, result="applied") == 0
  assert m.get_value(REPLAYS, result="succeeded") == 0
  assert "public.widgets" not in tables(pg, g.db)
  assert guard_events(g.inst, "repair_failed"), g.inst.log[-3000:]


def test_other_clients_are_not_delayed_while_a_repair_waits_on_a_lock(guarded, pg):
  g = guarded(NO_WIDGETS + NO_EXTRA, "--lock-timeout", "5000", "--repair-wait", "15")
  locker = pg.connect(autocommit=False, **g.kw)
  result = {}

  def blocked_client():
    t0 = time.monotonic()
    try:
      c = g.inst.connect()
      with c.cursor() as cur:
        cur.execute("INSERT INTO widgets (name) VALUES ('after-lock') RETURNING name")
        result["rows"] = cur.fetchall()
      c.close()
    except Exception as e:  # reported by the main thread
      result["error"] = e
    result["seconds"] = time.monotonic() - t0

  try:
    with locker.cursor() as lc:
      lc.execute("LOCK TABLE existing IN ACCESS EXCLUSIVE MODE")
      t = threading.Thread(target=blocked_client, daemon=True)
      t.start()
      # The repair is now waiting for the lock.
      deadline = time.monotonic() + 5
      while time.monotonic() < deadline:
        waiting = pg.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                         "AND wait_event_type = 'Lock'", (g.db,))[0][0]
        if waiting:
          break
        time.sleep(0.05)
      assert waiting, g.inst.log[-3000:]
      slowest = 0.0
      for i in range(5):
        t0 = time.monotonic()
        c = g.inst.connect()
        with c.cursor() as cur:
          cur.execute("SELECT count(*) FROM mood_log")
          cur.execute("SELECT %s::int", (i,))
          assert cur.fetchone()[0] == i
        c.close()
        slowest = max(slowest, time.monotonic() - t0)
      assert slowest < 1.0, slowest
      assert t.is_alive()  # the guarded request still waits for its repair
  finally:
    locker.rollback()
    locker.close()
  t.join(20)
  assert not t.is_alive()
  assert "error" not in result, result
  assert result["rows"] == [("after-lock",)]
  assert widget_names(pg, g.db) == ["after-lock"]
  assert pg.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'existing' "
                "AND column_name = 'extra'", db=g.db) == [(1,)]
  assert_one_replayed_repair(g.inst)
