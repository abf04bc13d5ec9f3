# Restores and migrations under a running pgguard: drift is noticed within seconds (a one-row
# catalog probe every second, a re-check when PostgreSQL ends a server connection), and no repair
# ever races a restore or DDL (another session named in --defer-to, or one holding an ACCESS
# EXCLUSIVE lock): pg_restore never fails because of pgguard, and eager repairs wait --settle.
import json
import os
import signal
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

from conftest import run
from guard_fixtures import (CHECKS, NO_WIDGETS, REPAIRS, REPLAY_DESIRED, REPLAY_SCHEMA, SEED_ROWS,
                            app_kw, guard_events, logfmt, make_db, metric, pg_tool, start_guarded,
                            tables, wait_ready)

# The old backup: the replay schema before "widgets" and "mood_log" existed, with enough rows in
# "existing" that pg_restore takes a while (COPY, then the primary key's index).
OLD_DROPS = ['DROP TABLE "widgets"', 'DROP TABLE "mood_log"']
def big_rows(n):
  return ["INSERT INTO existing (note) SELECT 'row ' || g FROM generate_series(1, %d) g" % n]
NEW_TABLES = {"public.widgets", "public.mood_log"}


def missing_tables(inst):
  return metric(inst, "pgguard_schema_drift_objects", kind="table", state="missing")


def old_dump(pg, tmp_path, name, rows=400000):
  """A custom-format dump of a database at the old schema (a backup taken before the release)."""
  make_db(pg, name, REPLAY_DESIRED, OLD_DROPS + SEED_ROWS + big_rows(rows))
  dump = tmp_path / (name + ".dump")
  r = run([pg_tool("pg_dump"), "-Fc", "-f", str(dump), "-d", pg.dsn(dbname=name)], timeout=120)
  assert r.returncode == 0, r.stderr.decode()
  pg.sql("DROP DATABASE %s" % name)
  return dump


def restore(pg, db, dump):
  """The runbook's whole-database restore: DROP ... WITH (FORCE) (pgguard's admin session is
  connected), CREATE, pg_restore. Returns (pg_restore's result, monotonic time it ended)."""
  pg.create_db(db, owner=app_kw(db)["user"])
  r = run([pg_tool("pg_restore"), "--exit-on-error", "--jobs", "1", "-d", pg.dsn(dbname=db),
           str(dump)], timeout=180)
  return r, time.monotonic()


def log_seconds(line):
  """A log line's ts as seconds of the day (UTC)."""
  ts = logfmt(line)["ts"]
  h, m, s = ts[11:23].split(":")
  return int(h) * 3600 + int(m) * 60 + float(s)


def test_eager_repair_waits_for_pg_restore_then_settles_and_heals_within_seconds(
    pg, pgguard, tmp_path):
  db = "ra_eager"
  # Rows enough that pg_restore runs past a probe or two (seconds).
  dump = old_dump(pg, tmp_path, "ra_eager_old", rows=2000000)
  make_db(pg, db, REPLAY_DESIRED, SEED_ROWS)
  g = start_guarded(pgguard, pg, db, "--repair", "eager", "--settle", "1", "--log-level", "debug")
  assert missing_tables(g) == 0

  began = time.monotonic()
  r, ended = restore(pg, db, dump)
  print("restore took %.2f s" % (ended - began))
  assert r.returncode == 0, r.stderr.decode()
  assert b"42P07" not in r.stderr and b"already exists" not in r.stderr, r.stderr.decode()
  restored_log = g.log
  # Nothing was repaired while pg_restore ran: its session deferred every repair.
  assert not guard_events_in(restored_log, "repair_applied"), restored_log[-4000:]
  assert set(tables(pg, db)) & NEW_TABLES == set()

  # The drift shows what the backup lacked, then the eager repair creates it once the catalog has
  # been still for --settle (1 s).
  seen_missing = None
  healed = None
  deadline = ended + 10
  while time.monotonic() < deadline:
    n = missing_tables(g)
    now = time.monotonic()
    if n > 0 and seen_missing is None:
      seen_missing = (n, now - ended)
    if n == 0 and seen_missing is not None:
      healed = now - ended
      break
    time.sleep(0.05)
  print("restore ended; drift showed %r; repaired %.2f s after pg_restore ended (--settle 1)"
        % (seen_missing, healed if healed is not None else -1))
  print(g.log[-3000:])
  assert seen_missing and seen_missing[0] == 2, (seen_missing, g.log[-4000:])
  assert healed is not None and healed <= 1 + 2.5, (healed, g.log[-4000:])
  assert NEW_TABLES <= set(tables(pg, db))
  deferring = guard_events(g, "guard_deferring")
  assert deferring and deferring[0]["reason"] == "application_name=pg_restore", g.log[-4000:]
  assert guard_events(g, "guard_defer_ended"), g.log[-4000:]
  assert metric(g, REPAIRS, result="failed") == 0
  assert metric(g, REPAIRS, result="applied") >= 1


def guard_events_in(text, event):
  return [l for l in text.splitlines() if (" event=%s " % event) in (l + " ")]


def test_restore_under_a_busy_application_never_fails_because_of_pgguard(pg, pgguard, tmp_path):
  db = "ra_busy"
  dump = old_dump(pg, tmp_path, "ra_busy_old")
  make_db(pg, db, REPLAY_DESIRED, SEED_ROWS)
  g = start_guarded(pgguard, pg, db)   # --repair on-error: each failed request asks for one

  stop = threading.Event()
  seen = {"ok": 0, "errors": {}}

  def application():
    # Each request on a new or reused connection; whatever the restore does to it, try again.
    conn = None
    while not stop.is_set():
      try:
        if conn is None:
          conn = g.connect()
        with conn.cursor() as cur:
          cur.execute("SELECT count(*) FROM widgets")
          cur.execute("SELECT note FROM existing WHERE id = 1")
        seen["ok"] += 1
      except psycopg2.Error as e:
        code = e.pgcode or "conn"
        seen["errors"][code] = seen["errors"].get(code, 0) + 1
        try:
          if conn is not None:
            conn.close()
        except psycopg2.Error:
          pass
        conn = None
        time.sleep(0.02)
      time.sleep(0.01)
    if conn is not None:
      conn.close()

  threads = [threading.Thread(target=application) for _ in range(3)]
  for t in threads:
    t.start()
  try:
    time.sleep(1)
    r, ended = restore(pg, db, dump)
    # After the restore the application's requests heal "widgets" on their own.
    deadline = ended + 10
    while time.monotonic() < deadline and "public.widgets" not in tables(pg, db):
      time.sleep(0.05)
    healed = time.monotonic() - ended
    time.sleep(0.5)
  finally:
    stop.set()
    for t in threads:
      t.join(timeout=10)
  print("pg_restore exit %d; requests ok %d, errors %r; widgets back %.2f s after the restore"
        % (r.returncode, seen["ok"], seen["errors"], healed))
  assert r.returncode == 0, r.stderr.decode()
  assert b"42P07" not in r.stderr and b"already exists" not in r.stderr, r.stderr.decode()
  assert "public.widgets" in tables(pg, db), g.log[-4000:]
  assert healed < 3, (healed, g.log[-4000:])
  assert seen["ok"] > 10
  # Whether pgguard saw pg_restore at work depends on where its backoff after the DROP stood:
  # while it could not reach the database, guarded errors passed through anyway.
  print("deferred to pg_restore: %s" % bool(guard_events(g, "guard_deferring")))


@pytest.mark.parametrize("who", ["pg_restore", "migrator"])
def test_guarded_error_passes_through_while_a_restore_or_ddl_runs(pg, pgguard, who):
  db = "ra_defer_" + who
  make_db(pg, db, REPLAY_DESIRED, NO_WIDGETS + SEED_ROWS)
  g = start_guarded(pgguard, pg, db)
  other = pg.connect(dbname=db, application_name=who, autocommit=False)
  try:
    if who == "migrator":
      # Any session running DDL (ACCESS EXCLUSIVE, in a transaction that wrote): a migration.
      with other.cursor() as cur:
        cur.execute('ALTER TABLE existing ADD COLUMN "later" int')
      want = "access_exclusive_lock"
    else:
      # A pg_restore session, merely connected.
      with other.cursor() as cur:
        cur.execute("SELECT 1")
      other.rollback()
      want = "application_name=pg_restore"
    line = g.wait_log(r"event=guard_deferring [^\n]*", timeout=3).group(0)
    assert logfmt(line)["reason"] == want, line
    assert int(logfmt(line)["pid"]) == other.get_backend_pid()
    drift = json.loads(g.http_get("/drift")[1])
    assert drift["deferring"]["reason"] == want and drift["deferring"]["pid"] == other.get_backend_pid()
    assert metric(g, "pgguard_schema_guard_deferring") == 1

    conn = g.connect()
    try:
      t0 = time.monotonic()
      with pytest.raises(psycopg2.errors.UndefinedTable):
        with conn.cursor() as cur:
          cur.execute("SELECT * FROM widgets")
      took = time.monotonic() - t0
    finally:
      conn.close()
    print("guarded error while deferring to %s: passed through in %.3f s" % (who, took))
    assert took < 0.5, took
    time.sleep(1.5)
    assert metric(g, REPAIRS, result="applied") == 0
    assert "public.widgets" not in tables(pg, db)
  finally:
    other.close()

  g.wait_log(r"event=guard_defer_ended", timeout=3)
  assert json.loads(g.http_get("/drift")[1])["deferring"] is None
  assert metric(g, "pgguard_schema_guard_deferring") == 0
  conn = g.connect()
  try:
    with conn.cursor() as cur:
      cur.execute("SELECT count(*) FROM widgets")
      assert cur.fetchone()[0] == 0
  finally:
    conn.close()
  assert metric(g, REPAIRS, result="applied") == 1


def test_probe_notices_ddl_within_seconds_without_counting_as_a_check(pg, pgguard):
  db = "ra_probe"
  kw = make_db(pg, db, REPLAY_DESIRED, SEED_ROWS)
  g = start_guarded(pgguard, pg, db, "--repair", "off")   # --drift-interval 60
  time.sleep(1.5)
  checks = metric(g, CHECKS)
  time.sleep(3)
  # Three seconds of probes on an unchanged catalog: no full check.
  assert metric(g, CHECKS) == checks, g.log[-3000:]
  # A temporary table is no schema change either.
  conn = pg.connect(**kw)
  with conn.cursor() as cur:
    cur.execute("CREATE TEMP TABLE scratch (x int)")
  time.sleep(2.5)
  assert metric(g, CHECKS) == checks, g.log[-3000:]
  conn.close()

  pg.sql('DROP TABLE "widgets"', db=db, user=kw["user"], password=kw["password"])
  t0 = time.monotonic()
  while missing_tables(g) != 1 and time.monotonic() - t0 < 5:
    time.sleep(0.05)
  took = time.monotonic() - t0
  print("dropped table in the drift metric after %.2f s (drift interval 60 s)" % took)
  assert missing_tables(g) == 1, g.log[-3000:]
  assert took < 2.5, took
  assert metric(g, CHECKS) == checks + 1


@pytest.mark.parametrize("how", ["terminate", "restart"])
def test_server_shutdown_or_terminate_triggers_a_prompt_check(pgguard, how):
  from guard_fixtures import private_postgres
  server, cleanup = private_postgres("")
  try:
    db = "ra_gone"
    make_db(server, db, REPLAY_DESIRED, SEED_ROWS)
    g = start_guarded(pgguard, server, db, "--repair", "off", upstream_pg=server)
    conn = g.connect()
    with conn.cursor() as cur:
      cur.execute("SELECT pg_backend_pid()")
      pid = cur.fetchone()[0]
    time.sleep(1.2)
    checks = metric(g, CHECKS)
    t0 = time.monotonic()
    if how == "terminate":
      server.sql("SELECT pg_terminate_backend(%s)", (pid,))
      line = g.wait_log(r"event=guard_recheck [^\n]*sqlstate=57P01", timeout=2).group(0)
      deadline = time.monotonic() + 3
      while metric(g, CHECKS) == checks and time.monotonic() < deadline:
        time.sleep(0.05)
      took = time.monotonic() - t0
      print("57P01: %s; check %.2f s later" % (line, took))
      assert metric(g, CHECKS) == checks + 1, g.log[-3000:]
      assert took < 2, took
    else:
      # A fast shutdown: the server leg gets FATAL 57P01; the restarted server is checked as
      # soon as the admin session is back.
      server.stop()
      g.wait_log(r"event=guard_recheck [^\n]*(57P01|none)|event=drift_check_failed", timeout=3)
      server.start()
      g.wait_log(r"event=guard_recovered|event=guard_recheck [^\n]*admin session reopened",
                 timeout=8)
      deadline = time.monotonic() + 5
      while metric(g, CHECKS) <= checks and time.monotonic() < deadline:
        time.sleep(0.05)
      print("after restart: %s" % g.log[-1500:])
      assert metric(g, CHECKS) > checks
      assert metric(g, "pgguard_schema_drift_check_timestamp_seconds") >= time.time() - 5
    try:
      conn.close()
    except psycopg2.Error:
      pass
  finally:
    cleanup()


def test_eager_repair_waits_for_the_catalog_to_settle_but_a_failed_request_does_not(pg, pgguard):
  db = "ra_settle"
  kw = make_db(pg, db, REPLAY_DESIRED, SEED_ROWS)
  g = start_guarded(pgguard, pg, db, "--repair", "eager", "--settle", "3")
  # A migration's last step, run by hand (no --defer-to name, committed at once): the probe sees
  # it, a check finds the table missing, and the eager repair waits 3 s of quiet.
  pg.sql('DROP TABLE "mood_log"', db=db, user=kw["user"], password=kw["password"])
  t0 = time.monotonic()
  seen = None
  while time.monotonic() - t0 < 10:
    n = missing_tables(g)
    if n == 1 and seen is None:
      seen = time.monotonic() - t0
    if n == 0 and seen is not None:
      break
    time.sleep(0.05)
  took = time.monotonic() - t0
  print("dropped table seen missing after %.2f s, eagerly repaired after %.2f s (--settle 3)"
        % (seen or -1, took))
  assert seen is not None and seen < 2.5, g.log[-3000:]
  assert 3 <= took < 3 + 2.5, (took, g.log[-3000:])

  # A request that meets a missing table is healed at once, settled or not.
  pg.sql('DROP TABLE "widgets"', db=db, user=kw["user"], password=kw["password"])
  conn = g.connect()
  try:
    t0 = time.monotonic()
    with conn.cursor() as cur:
      cur.execute("SELECT count(*) FROM widgets")
      assert cur.fetchone()[0] == 0
    took = time.monotonic() - t0
  finally:
    conn.close()
  print("failed request healed in %.3f s" % took)
  assert took < 1.5, (took, g.log[-3000:])


def test_defer_to_names_come_from_the_config_and_reload(pg, pgguard, tmp_path):
  db = "ra_reload"
  make_db(pg, db, REPLAY_DESIRED, NO_WIDGETS + SEED_ROWS)
  ini = tmp_path / "pgguard.ini"
  ini.write_text("[pgguard]\ndefer_to = flyway, our-restore\n")
  g = pgguard("-c", str(ini), "--schema", str(REPLAY_SCHEMA), "--admin-url", pg.url(dbname=db),
              "--drift-interval", "60", "--ready-requires-guard")
  g.defaults = app_kw(db)
  wait_ready(g)
  other = pg.connect(dbname=db, application_name="our-restore")
  try:
    line = g.wait_log(r"event=guard_deferring [^\n]*", timeout=3).group(0)
    assert logfmt(line)["reason"] == "application_name=our-restore"
    ini.write_text("[pgguard]\ndefer_to = pg_restore\n")
    os.kill(g.pid, signal.SIGHUP)
    g.wait_log(r"event=reload_applied option=defer-to", timeout=5)
    g.wait_log(r"event=guard_defer_ended", timeout=5)
    conn = g.connect()
    try:
      with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM widgets")   # repaired and replayed
        assert cur.fetchone()[0] == 0
    finally:
      conn.close()
  finally:
    other.close()
