# Adversarial findings against the hold / replay machinery: a hang-up while held, a cancel or
# timeout in a rolled-back block, and the session parameters a client is told after a replay.
# Each test asserts what DESIGN.md ("Replay or fail cleanly") promises, and failed before the fix.
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

from guard_fixtures import (NO_WIDGETS, REPAIRS, REPLAYS, count, guard_events, guarded_factory,
                            metric, print_logs, unique_db_name, wait_metric)
from pgwire import RawConn, query

# The advisory lock every sidecar repairs under (guard/guard.h PGG_ADVISORY_KEY): holding it
# from a direct session keeps the repair (and so the hold) waiting for as long as we like.
REPAIR_LOCK = 0x7067677561726400


@pytest.fixture
def guarded(pg, pgguard, request):
  make, started = guarded_factory(pg, pgguard, unique_db_name("adv", request))
  yield make
  print_logs(started)


def repair_lock(pg, kw):
  """A direct session holding the repair's advisory lock; rollback() releases it."""
  locker = pg.connect(autocommit=False, **kw)
  with locker.cursor() as lc:
    lc.execute("SELECT pg_advisory_xact_lock(%s)", (REPAIR_LOCK,))
  return locker


def raw_session(g):
  raw = RawConn(g.inst.host, g.inst.port, timeout=15)
  raw.startup(g.kw["user"], g.kw["dbname"], password=g.kw["password"])
  return raw


def app_sql(pg, g, sql):
  """Runs sql directly on PostgreSQL as the application role (the tables' owner)."""
  c = pg.connect(**g.kw)
  try:
    with c.cursor() as cur:
      cur.execute(sql)
  finally:
    c.close()


def wait_event(inst, event, timeout=5.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if guard_events(inst, event):
      return True
    time.sleep(0.05)
  return False


# --- a client that gave up while its request was held -----------------------------------------

def test_client_that_hangs_up_while_held_gets_nothing_replayed_on_its_behalf(guarded, pg):
  """A driver-side timeout closes the socket, and the application retries on another connection.
  pgguard stops reading a held client, never sees the hang-up, and replays the INSERT for nobody:
  it commits a row no client was ever told about, next to the retry's (a write executed twice)."""
  g = guarded(NO_WIDGETS, "--lock-timeout", "10000", "--repair-wait", "15")
  locker = repair_lock(pg, g.kw)
  try:
    gone = raw_session(g)
    gone.send(query("INSERT INTO widgets (name) VALUES ('once') ON CONFLICT DO NOTHING"))
    assert wait_event(g.inst, "guarded_error"), g.inst.log[-3000:]
    time.sleep(0.3)
    gone.close()                       # the client gives up: it never sees an answer
    time.sleep(0.5)
  finally:
    locker.rollback()
    locker.close()
  assert wait_metric(g.inst, REPAIRS, 1, result="applied") == 1
  time.sleep(1.0)
  # With PostgreSQL alone the INSERT failed and nothing was written; the client that hung up
  # was never told otherwise, so nothing may be written on its behalf.
  assert count(pg, g.db, "SELECT count(*) FROM widgets") == 0, g.inst.log[-3000:]




# --- a hold in a transaction block that ends without an answer ----------------------------------

def held_in_block_then(g, pg, end):
  """BEGIN, then an INSERT into the missing table, held while the repair waits on its lock.
  Meanwhile the table appears by other means (another sidecar, a migration). end(conn) ends the
  hold without a repair answer. Returns what the INSERT raised (or None) and what the next
  statement in the block raised (or None)."""
  locker = repair_lock(pg, g.kw)
  first = second = None
  try:
    conn = g.inst.connect(autocommit=False)
    with conn.cursor() as cur:
      cur.execute("SET LOCAL application_name = 'adv'")   # BEGIN + SET: set-up only
      t = threading.Thread(target=lambda: (wait_event(g.inst, "guarded_error"),
                                           time.sleep(0.3),
                                           app_sql(pg, g, "CREATE TABLE widgets (id serial "
                                                   "PRIMARY KEY, name text NOT NULL)"),
                                           end(conn)))
      t.start()
      try:
        cur.execute("INSERT INTO widgets (name) VALUES ('after-the-end')")
      except psycopg2.Error as e:
        first = e
      t.join()
      try:
        cur.execute("SELECT 1")
      except psycopg2.Error as e:
        second = e
    conn.commit()
    conn.close()
  finally:
    locker.rollback()
    locker.close()
  return first, second


def test_cancel_of_a_request_held_in_a_block_gives_the_original_error_not_a_replay(guarded, pg):
  """DESIGN: a CancelRequest ends the wait; the client gets the original error and its block
  stays aborted as PostgreSQL left it. In a block pgguard replays regardless of how the wait ended
  (pgg_replay_after_hold: rolled_back => replay), so a JDBC query timeout's cancel turns into a
  successful INSERT that the client then commits (in 'I' the same cancel gives the error)."""
  g = guarded(NO_WIDGETS, "--lock-timeout", "10000", "--repair-wait", "15")
  first, second = held_in_block_then(g, pg, lambda conn: conn.cancel())
  assert guard_events(g.inst, "hold_cancelled"), g.inst.log[-3000:]
  assert isinstance(first, psycopg2.errors.UndefinedTable), first
  assert isinstance(second, psycopg2.errors.InFailedSqlTransaction), second
  assert count(pg, g.db, "SELECT count(*) FROM widgets") == 0


def test_repair_wait_expiring_in_a_block_gives_the_original_error_not_a_replay(guarded, pg):
  """DESIGN: "repair failed or timed out — the client receives the original ErrorResponse". In a
  block the timed-out hold replays all the same (outside a block it does not)."""
  g = guarded(NO_WIDGETS, "--lock-timeout", "10000", "--repair-wait", "1.5")
  first, second = held_in_block_then(g, pg, lambda conn: None)
  assert guard_events(g.inst, "repair_wait_expired"), g.inst.log[-3000:]
  assert isinstance(first, psycopg2.errors.UndefinedTable), first
  assert isinstance(second, psycopg2.errors.InFailedSqlTransaction), second
  assert count(pg, g.db, "SELECT count(*) FROM widgets") == 0



# --- what the client is told about its session after a replay in a block ------------------------

def test_replay_in_a_block_leaves_the_clients_reported_parameters_true(guarded, pg):
  """The failed statement aborts the block, and PostgreSQL reports at once the SETs it reverted
  (ParameterStatus between the error and its ReadyForQuery: pgguard keeps it in h->other). On a
  replay pgguard forwards that report, then swallows the re-sent SET's report of the value being
  restored: the client is left believing standard_conforming_strings=on while the server runs
  with off (or a stale client_encoding, TimeZone...). libpq then escapes backslashes for the
  wrong server: corrupted data, or an injection through PQescapeStringConn."""
  g = guarded(NO_WIDGETS)
  reported = {}

  def run(raw, sql):
    msgs = raw.simple_query(sql)
    for m in msgs:
      if m.type == b"S":
        k, v = m.body.split(b"\0")[:2]
        reported[k.decode()] = v.decode()
    return msgs
  raw = raw_session(g)
  run(raw, "BEGIN")
  run(raw, "SET standard_conforming_strings = off")
  assert reported.get("standard_conforming_strings") == "off"
  got = run(raw, "INSERT INTO widgets (name) VALUES ('x')")
  assert [m.type for m in got if m.type != b"S"] == [b"C", b"Z"], got     # replayed in the block
  shown = [m for m in run(raw, "SHOW standard_conforming_strings") if m.type == b"D"][0]
  server = shown.body[6:].decode()
  told = dict(reported)
  run(raw, "ROLLBACK")
  raw.close()
  assert metric(g.inst, REPLAYS, result="succeeded") == 1, g.inst.log[-3000:]
  # What the client was last told is what the server uses.
  assert server == "off"
  assert told.get("standard_conforming_strings") == server, (told, server)



# --- stopping while a repair blocks in the database ------------------------------------------

def test_sigquit_stops_at_once_while_a_repair_waits_on_a_lock(guarded, pg):
  """The repair job blocks in libpq on the thread pool; stopping cancels its statement instead
  of waiting out --lock-timeout (the loop cannot end while the job runs)."""
  import signal
  g = guarded(NO_WIDGETS, "--lock-timeout", "20000", "--repair-wait", "30")
  locker = repair_lock(pg, g.kw)
  try:
    raw = raw_session(g)
    raw.send(query("SELECT * FROM widgets"))
    g.inst.wait_log(r"event=guarded_error[^\n]*decision=replay", timeout=5)
    deadline = time.monotonic() + 5     # until the repair waits for the advisory lock
    while not pg.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' "
                     "AND datname = %s", (g.db,))[0][0]:
      assert time.monotonic() < deadline, "the repair never waited on the lock"
      time.sleep(0.05)
    t0 = time.monotonic()
    g.inst.stop(signal.SIGQUIT, timeout=10)
    elapsed = time.monotonic() - t0
    raw.close()
  finally:
    locker.rollback()
    locker.close()
  assert elapsed < 3, "pgguard took %.1fs to stop after SIGQUIT" % elapsed
