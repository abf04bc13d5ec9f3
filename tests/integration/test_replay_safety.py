# Replay only what never executed (issue 7, items 3 and 4): each case here once made pgguard run
# something twice, commit what the client rolled back, or hold a request the client cancelled.
# Every test checks what the client received and what the database holds afterwards.
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

from guard_fixtures import (NO_EXTRA, NO_PRIORITY, NO_WIDGETS, REPAIRS, REPLAYS, TRUST_ROLE as TRUST,
                            TWO_MOODS, count, guard_events, guarded_factory, metric, print_logs,
                            tables, unique_db_name, wait_metric)
from pgwire import RawConn, query, startup_packet


@pytest.fixture
def guarded(pg, pgguard, request):
  """guarded(drops, *pgguard_args, role=None) -> namespace(inst, db, kw)."""
  make, started = guarded_factory(pg, pgguard, unique_db_name("rs", request))
  yield make
  print_logs(started)


def seq_value(pg, db, seq="existing_id_seq"):
  """How many values the sequence (start 1, increment 1) has handed out."""
  last, called = pg.sql("SELECT last_value, is_called FROM %s" % seq, db=db)[0]
  return last if called else last - 1


def decisions(inst):
  return [e.get("decision") for e in guard_events(inst, "guarded_error")]


def eager_session(endpoint, db, *queries):
  """A raw session whose startup packet and first queries go out in one write (trust auth)."""
  raw = RawConn(endpoint.host, endpoint.port)
  raw.send(startup_packet({"user": TRUST["user"], "database": db})
           + b"".join(query(q) for q in queries))
  msgs = raw.read_until({b"Z"})
  assert msgs[0].type == b"R", msgs
  return raw


# --- bookkeeping: bytes sent with the startup packet ----------------------------------

def test_eager_begin_then_insert_on_missing_table_then_rollback_commits_nothing(guarded, pg):
  g = guarded(NO_WIDGETS, role=TRUST)
  with eager_session(g.inst, g.db, "BEGIN",
                     "INSERT INTO widgets (name) VALUES ('eager-rolled-back')") as raw:
    begin = raw.read_until({b"Z"})
    assert [m.type for m in begin] == [b"C", b"Z"] and begin[-1].body == b"T", begin
    ins = raw.read_until({b"Z"})
    # Replayed inside the client's own transaction: the client sees its INSERT succeed...
    assert [m.type for m in ins] == [b"C", b"Z"], ins
    assert ins[-1].body == b"T", ins
    done = raw.simple_query("ROLLBACK")
    assert done[-1].body == b"I"
  # ...and its ROLLBACK takes the row away.
  assert "public.widgets" in tables(pg, g.db)
  assert count(pg, g.db, "SELECT count(*) FROM widgets") == 0
  assert metric(g.inst, REPLAYS, result="succeeded") == 1, g.inst.log[-3000:]


def test_eager_first_query_on_missing_table_is_guarded_and_runs_once(guarded, pg):
  g = guarded(NO_WIDGETS, role=TRUST)
  with eager_session(g.inst, g.db, "INSERT INTO widgets (name) VALUES ('eager-once')") as raw:
    ins = raw.read_until({b"Z"})
    assert [m.type for m in ins] == [b"C", b"Z"], ins
    assert ins[0].body.rstrip(b"\0") == b"INSERT 0 1"
  assert count(pg, g.db, "SELECT count(*) FROM widgets WHERE name = 'eager-once'") == 1
  assert metric(g.inst, REPLAYS, result="succeeded") == 1, g.inst.log[-3000:]


def test_set_up_too_large_to_record_makes_the_block_repair_only(guarded, pg):
  g = guarded(NO_WIDGETS)
  conn = g.inst.connect(autocommit=False)
  with conn.cursor() as cur:
    cur.execute("SET LOCAL pgguard_test.big = %s", ("x" * (1100 * 1024),))
    with pytest.raises(psycopg2.errors.UndefinedTable):
      cur.execute("INSERT INTO widgets (name) VALUES ('after-big-set')")
  conn.rollback()
  conn.close()
  assert decisions(g.inst) == ["repair_only"], g.inst.log[-3000:]
  assert wait_metric(g.inst, REPAIRS, 1, result="applied") == 1
  assert count(pg, g.db, "SELECT count(*) FROM widgets") == 0
  assert metric(g.inst, REPLAYS, result="succeeded") == 0


# --- rule 0: only errors of parse analysis are replayed --------------------------------

def assert_ran_once_and_not_replayed(g, pg, sql, exc, before, seq="existing_id_seq"):
  conn = g.inst.connect()
  with conn.cursor() as cur:
    with pytest.raises(exc) as ei:
      cur.execute(sql)
    cur.execute("SELECT 1")
  conn.close()
  assert decisions(g.inst) == ["repair_only"], g.inst.log[-3000:]
  assert metric(g.inst, REPLAYS, result="succeeded") == 0
  after = seq_value(pg, g.db, seq)
  assert after == before + 1, "nextval() ran %d times" % (after - before)
  return ei.value


def test_do_block_calling_nextval_before_a_missing_table_is_not_replayed(guarded, pg):
  g = guarded(NO_WIDGETS)
  before = seq_value(pg, g.db)
  e = assert_ran_once_and_not_replayed(
    g, pg, "DO $$ BEGIN PERFORM nextval('existing_id_seq'); "
           "EXECUTE 'INSERT INTO widgets (name) VALUES (''from-do'')'; END $$",
    psycopg2.errors.UndefinedTable, before)
  assert e.diag.context is not None
  # The repair still runs, so the client's retry works.
  assert wait_metric(g.inst, REPAIRS, 1, result="applied") == 1
  assert count(pg, g.db, "SELECT count(*) FROM widgets") == 0


def test_trigger_on_existing_table_inserting_into_missing_table_is_not_replayed(guarded, pg):
  g = guarded(NO_WIDGETS)
  pg.sql("CREATE FUNCTION copy_note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
         "INSERT INTO widgets (name) VALUES (NEW.note); RETURN NEW; END $$", db=g.db)
  pg.sql("CREATE TRIGGER copy_note AFTER INSERT ON existing FOR EACH ROW "
         "EXECUTE FUNCTION copy_note()", db=g.db)
  before = seq_value(pg, g.db)
  assert_ran_once_and_not_replayed(g, pg, "INSERT INTO existing (note) VALUES ('trig')",
                                   psycopg2.errors.UndefinedTable, before)
  assert count(pg, g.db, "SELECT count(*) FROM existing WHERE note = 'trig'") == 0


def test_sql_function_reading_a_missing_table_is_not_replayed(guarded, pg):
  g = guarded(NO_WIDGETS)
  pg.sql("SET check_function_bodies = off; CREATE FUNCTION widget_count() RETURNS bigint "
         "LANGUAGE sql VOLATILE AS 'SELECT count(*) FROM widgets'", db=g.db)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    with pytest.raises(psycopg2.errors.UndefinedTable) as ei:
      cur.execute("SELECT widget_count()")
    cur.execute("SELECT 1")
  conn.close()
  assert ei.value.diag.context is not None
  assert decisions(g.inst) == ["repair_only"], g.inst.log[-3000:]
  assert metric(g.inst, REPLAYS, result="succeeded") == 0


def test_runtime_enum_cast_after_nextval_is_not_replayed(guarded, pg):
  """The serial default's nextval() runs before the cast fails at execution (no P field)."""
  g = guarded(TWO_MOODS)
  before = seq_value(pg, g.db, "mood_log_id_seq")
  e = assert_ran_once_and_not_replayed(
    g, pg, "INSERT INTO mood_log (m) SELECT v::mood FROM (VALUES ('meh')) AS t(v)",
    psycopg2.errors.InvalidTextRepresentation, before, "mood_log_id_seq")
  assert e.diag.statement_position is None
  assert count(pg, g.db, "SELECT count(*) FROM mood_log") == 0


# --- never replay what is not a query or DML --------------------------------------------

@pytest.mark.parametrize("drops,sql,exc,exists", [
  (NO_PRIORITY, "DROP TYPE priority", psycopg2.errors.UndefinedObject,
   "SELECT count(*) FROM pg_type WHERE typname = 'priority'"),
  (NO_EXTRA, "ALTER TABLE existing DROP COLUMN extra", psycopg2.errors.UndefinedColumn,
   "SELECT count(*) FROM information_schema.columns "
   "WHERE table_name = 'existing' AND column_name = 'extra'"),
], ids=["drop_type", "alter_table_drop_column"])
def test_failed_drop_of_a_missing_desired_object_is_repaired_and_never_replayed(
    guarded, pg, drops, sql, exc, exists):
  g = guarded(drops)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    with pytest.raises(exc):
      cur.execute(sql)
  conn.close()
  assert decisions(g.inst) == ["repair_only"], g.inst.log[-3000:]
  assert wait_metric(g.inst, REPAIRS, 1, result="applied") == 1
  # The repair created the object; the failed DROP was never run again.
  assert count(pg, g.db, exists) == 1


# --- a CancelRequest ends a hold at once --------------------------------------------------

def test_cancel_of_a_request_held_for_a_repair_returns_the_original_error_at_once(guarded, pg):
  g = guarded(NO_WIDGETS + NO_EXTRA, "--lock-timeout", "10000", "--repair-wait", "15")
  locker = pg.connect(autocommit=False, **g.kw)
  try:
    with locker.cursor() as lc:
      lc.execute("LOCK TABLE existing IN ACCESS EXCLUSIVE MODE")
      conn = g.inst.connect()
      timer = threading.Timer(0.7, conn.cancel)
      with conn.cursor() as cur:
        t0 = time.monotonic()
        timer.start()
        with pytest.raises(psycopg2.errors.UndefinedTable) as ei:
          cur.execute("SELECT name FROM widgets")
        elapsed = time.monotonic() - t0
        timer.join()
        assert ei.value.diag.message_primary == 'relation "widgets" does not exist'
        cur.execute("SELECT 42")
        assert cur.fetchone()[0] == 42
      conn.close()
  finally:
    locker.rollback()
    locker.close()
  assert elapsed < 3.0, "the cancel did not end the hold (%.1fs)" % elapsed
  assert guard_events(g.inst, "hold_cancelled"), g.inst.log[-3000:]
  assert metric(g.inst, REPLAYS, result="skipped") == 1
  assert metric(g.inst, REPLAYS, result="succeeded") == 0


def test_cancel_in_a_block_restores_the_failed_transaction(guarded, pg):
  """In a block pgguard has rolled back already; after the cancel the client's transaction must
  be as PostgreSQL left it: aborted, so that its COMMIT commits nothing."""
  g = guarded(NO_WIDGETS + NO_EXTRA, "--lock-timeout", "10000", "--repair-wait", "15")
  locker = pg.connect(autocommit=False, **g.kw)
  try:
    with locker.cursor() as lc:
      lc.execute("LOCK TABLE existing IN ACCESS EXCLUSIVE MODE")
      conn = g.inst.connect(autocommit=False)
      with conn.cursor() as cur:
        cur.execute("SET LOCAL statement_timeout = '60s'")
        timer = threading.Timer(0.7, conn.cancel)
        timer.start()
        with pytest.raises(psycopg2.errors.UndefinedTable):
          cur.execute("SELECT name FROM widgets")
        timer.join()
        with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
          cur.execute("INSERT INTO existing (note) VALUES ('after-cancel')")
      conn.rollback()
      conn.close()
  finally:
    locker.rollback()
    locker.close()
  assert count(pg, g.db, "SELECT count(*) FROM existing WHERE note = 'after-cancel'") == 0


# --- bounded recording ------------------------------------------------------------------

def test_idle_guarded_connection_gives_back_the_memory_of_a_1mb_request(guarded, pg):
  g = guarded(())
  conn = g.inst.connect()
  with conn.cursor() as cur:
    cur.execute("SELECT length(%s)", ("x" * (1 << 20),))
    assert cur.fetchone()[0] == 1 << 20
    time.sleep(0.2)
    held = g.inst.metrics().get_value("pgguard_connection_buffer_bytes")
    assert held is not None and held <= 16384, "an idle connection keeps %d bytes" % held
  conn.close()


def test_deep_pipeline_with_a_missing_table_at_its_end_runs_each_query_once(guarded, pg):
  """9000 pipelined INSERTs, then a query on a missing table sent once they are answered: every
  INSERT runs once, the record stays aligned across the pipeline, and the last query, alone in
  flight, is replayed."""
  g = guarded(NO_WIDGETS)
  raw = RawConn(g.inst.host, g.inst.port, timeout=30)
  raw.startup(g.kw["user"], g.kw["dbname"], password=g.kw["password"])
  n = 9000
  raw.send(b"".join(query("INSERT INTO existing (note) VALUES ('p%d')" % i) for i in range(n)))
  for _ in range(n):
    msgs = raw.read_until({b"Z"})
    assert msgs[0].type == b"C", msgs
  got = raw.simple_query("SELECT count(*) FROM widgets")
  assert [m.type for m in got][-1] == b"Z"
  assert got[0].type == b"T", got  # replayed after the repair: RowDescription, DataRow
  raw.close()
  assert count(pg, g.db, "SELECT count(*) FROM existing WHERE note LIKE 'p%'") == n
  assert metric(g.inst, REPLAYS, result="succeeded") == 1, g.inst.log[-3000:]


def test_set_up_that_fails_when_re_sent_gives_the_original_error_and_runs_nothing(guarded, pg):
  """The replay in a block waits until the re-sent set-up has restored the transaction. Here the
  re-sent SET TRANSACTION SNAPSHOT fails (its exporting transaction has ended): the client gets
  the original error in an aborted transaction, and the INSERT never runs outside the block."""
  g = guarded(NO_WIDGETS)
  exporter = pg.connect(autocommit=False, **g.kw)
  with exporter.cursor() as ec:
    ec.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    ec.execute("SELECT pg_export_snapshot()")
    snap = ec.fetchone()[0]
  conn = g.inst.connect(autocommit=True)
  with conn.cursor() as cur:
    cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    cur.execute("SET TRANSACTION SNAPSHOT '%s'" % snap)
    exporter.rollback()
    exporter.close()
    with pytest.raises(psycopg2.errors.UndefinedTable):
      cur.execute("INSERT INTO widgets (name) VALUES ('outside-block')")
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
      cur.execute("SELECT 1")
    cur.execute("ROLLBACK")
    cur.execute("SELECT 1")
  conn.close()
  assert guard_events(g.inst, "resend_failed"), g.inst.log[-3000:]
  assert count(pg, g.db, "SELECT count(*) FROM widgets") == 0
  assert metric(g.inst, REPLAYS, result="succeeded") == 0


# --- translated messages: only a catalog check can tell --------------------------------------

def german(pg, db):
  pg.sql("ALTER DATABASE %s SET lc_messages = 'de_DE.UTF-8'" % db)


def test_translated_error_for_a_missing_desired_table_is_repaired_and_replayed(guarded, pg):
  g = guarded(NO_WIDGETS, ready=False)
  german(pg, g.db)
  from guard_fixtures import wait_ready
  wait_ready(g.inst)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    cur.execute("INSERT INTO widgets (name) VALUES ('übersetzt') RETURNING name")
    assert cur.fetchone()[0] == "übersetzt"
  conn.close()
  assert count(pg, g.db, "SELECT count(*) FROM widgets") == 1
  assert metric(g.inst, REPLAYS, result="succeeded") == 1, g.inst.log[-3000:]


def test_translated_error_that_a_catalog_check_does_not_explain_is_not_replayed(guarded, pg):
  g = guarded(())
  german(pg, g.db)
  conn = g.inst.connect()
  with conn.cursor() as cur:
    with pytest.raises(psycopg2.errors.UndefinedTable) as ei:
      cur.execute("SELECT * FROM tippfehler")
    assert ei.value.diag.severity == "FEHLER"
    assert "existiert nicht" in ei.value.diag.message_primary
    cur.execute("SELECT 1")
  conn.close()
  m = g.inst.metrics()
  assert m.get_value(REPLAYS, result="succeeded") == 0
  assert m.get_value(REPLAYS, result="failed") == 0, g.inst.log[-3000:]
  assert m.get_value(REPAIRS, result="applied") == 0
