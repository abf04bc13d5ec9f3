# Primaries and standbys: an admin URL naming several hosts leads the guard to the primary
# (target_session_attrs=read-write unless the URL says otherwise); a guard whose admin URL
# reaches only a hot standby says so once, holds no request (PostgreSQL's error passes
# untouched and at once) and resumes when the standby is promoted.
import json
import os
import shutil
import tempfile
import time
import urllib.parse

import psycopg2
import psycopg2.errors
import pytest

from conftest import PGBIN, Postgres, as_postgres, client_env, pgguard_binary, run
from guard_fixtures import (CHECKS, NO_WIDGETS, REPLAY_DESIRED, REPLAY_SCHEMA, PrivatePostgres,
                            app_kw, diag_fields, guard_events, make_db, metric, tables,
                            wait_metric, wait_ready)

STANDBY = "pgguard_schema_guard_standby"
# A password that must never show in a log line, whichever host it was sent to.
PASSWORD = "St4ndby-Sekr1t"


class Standby(Postgres):
  """A streaming replica of primary (pg_basebackup -R), on its own port and socket directory.
  Its roles and passwords are the primary's."""

  def __init__(self, root, primary):
    super().__init__(root)
    self.primary = primary
    self.password = primary.password
    self.defaults["password"] = primary.password

  def init(self):
    env = client_env()
    env["PGPASSWORD"] = self.primary.password
    r = run(as_postgres([str(PGBIN / "pg_basebackup"), "-D", str(self.datadir), "-R",
                         "-X", "stream", "-c", "fast", "--no-sync", "-h", self.primary.host,
                         "-p", str(self.primary.port), "-U", self.primary.superuser]),
            timeout=120, env=env, cwd=str(self.root))
    if r.returncode != 0:
      raise RuntimeError("pg_basebackup failed: %s" % r.stderr.decode("utf-8", "replace"))
    with open(self.datadir / "postgresql.conf", "a") as f:
      f.write("\n# test_standby.Standby\nport = %d\nunix_socket_directories = '%s'\n"
              % (self.port, self.socket_dir))

  def promote(self):
    r = run(as_postgres([str(PGBIN / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "30",
                         "promote"]), timeout=60, env=client_env())
    if r.returncode != 0:
      raise RuntimeError("pg_ctl promote failed: %s" % r.stderr.decode("utf-8", "replace"))

  def wait_replayed(self, timeout=15.0):
    """Waits until this standby has replayed everything the primary wrote so far."""
    lsn = self.primary.sql("SELECT pg_current_wal_lsn()::text")[0][0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      done = self.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0]
      if done:
        return
      time.sleep(0.05)
    raise AssertionError("standby did not replay up to %s within %.0fs" % (lsn, timeout))


def tmp_root():
  root = tempfile.mkdtemp(prefix="pgg-guard-", dir="/tmp")
  os.chmod(root, 0o755)
  if os.geteuid() == 0:
    shutil.chown(root, "postgres", "postgres")
  return root


def start_standby(primary):
  root = tmp_root()
  standby = Standby(root, primary)
  try:
    standby.init()
    standby.start()
  except Exception:
    standby.stop()
    shutil.rmtree(root, ignore_errors=True)
    raise
  return standby


def drop_cluster(server):
  server.stop()
  shutil.rmtree(server.root, ignore_errors=True)


def start_primary():
  """A private cluster that accepts replication connections, with a known superuser password."""
  server = PrivatePostgres(tmp_root(), "")
  server.password = PASSWORD
  server.defaults["password"] = PASSWORD
  server.extra_hba = ["host replication postgres 127.0.0.1/32 scram-sha-256"]
  try:
    server.init()
    server.start()
  except Exception:
    drop_cluster(server)
    raise
  return server


@pytest.fixture(scope="module")
def primary():
  server = start_primary()
  yield server
  drop_cluster(server)


@pytest.fixture(scope="module")
def standby(primary):
  server = start_standby(primary)
  yield server
  drop_cluster(server)


def multi_host_url(db, *servers, **query):
  """postgresql://postgres:PW@host1:port1,host2:port2/db?query"""
  hosts = ",".join("%s:%d" % (s.host, s.port) for s in servers)
  q = urllib.parse.urlencode(query)
  return "postgresql://postgres:%s@%s/%s%s" % (urllib.parse.quote(PASSWORD, safe=""), hosts, db,
                                             ("?" + q) if q else "")


def guarded(pgguard, upstream, admin_url, *args):
  inst = pgguard("--schema", str(REPLAY_SCHEMA), "--admin-url", admin_url,
                 "--upstream", "%s:%d" % (upstream.host, upstream.port), *args)
  return inst


def run_check(url):
  """`pgguard check`: (exit code, stdout and stderr as text)."""
  r = run([pgguard_binary(), "check", "--schema", str(REPLAY_SCHEMA), "--admin-url", url],
          timeout=60, env=client_env())
  return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def missing_table_error(endpoint, kw):
  """The error of a query for the dropped table, and how long it took."""
  conn = endpoint.connect(**kw)
  try:
    t0 = time.monotonic()
    with pytest.raises(psycopg2.errors.UndefinedTable) as e:
      with conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM "widgets"')
    return diag_fields(e.value), time.monotonic() - t0
  finally:
    conn.close()


def test_multi_host_admin_url_leads_the_guard_to_the_primary(primary, standby, pgguard):
  db = "sb_multi"
  make_db(primary, db, REPLAY_DESIRED, NO_WIDGETS)
  standby.wait_replayed()
  url = multi_host_url(db, standby, primary)  # the standby first
  g = guarded(pgguard, primary, url, "--drift-interval", "60", "--ready-requires-guard")
  g.defaults = app_kw(db)
  wait_ready(g)
  # The admin session is on the primary, none on the standby.
  assert primary.backends("pgguard"), g.log[-3000:]
  assert not standby.backends("pgguard"), g.log[-3000:]
  conn = g.connect()
  try:
    with conn.cursor() as cur:
      cur.execute('SELECT count(*) FROM "widgets"')  # repaired, then replayed
      assert cur.fetchone() == (0,)
  finally:
    conn.close()
  assert "public.widgets" in tables(primary, db)
  assert len(guard_events(g, "repair_applied")) == 1, g.log[-3000:]
  assert not guard_events(g, "guard_standby"), g.log[-3000:]
  assert metric(g, STANDBY) == 0
  assert PASSWORD not in g.log
  assert urllib.parse.quote(PASSWORD, safe="") not in g.log
  # `pgguard check` follows the same list to the primary: nothing missing any more.
  code, out = run_check(url)
  assert code == 0, out


def test_guard_on_a_standby_holds_nothing_and_says_so_once(primary, standby, pgguard):
  db = "sb_only"
  make_db(primary, db, REPLAY_DESIRED, NO_WIDGETS)
  standby.wait_replayed()
  direct, _ = missing_table_error(standby, app_kw(db))
  # target_session_attrs=any: libpq takes the standby; pgguard says it is one.
  url = multi_host_url(db, standby, target_session_attrs="any")
  g = guarded(pgguard, standby, url, "--drift-interval", "2")
  g.defaults = app_kw(db)
  g.wait_log(r"event=guard_standby", timeout=10)
  assert wait_metric(g, STANDBY, 1) == 1
  for _ in range(3):
    through, took = missing_table_error(g, {})
    assert through == direct   # PostgreSQL's own error, every field
    assert took < 0.5, took    # not held for a repair
  time.sleep(3)  # retries (1 s, then 2 s) while still a standby
  assert metric(g, "pgguard_guard_retries_total") >= 1, g.log[-3000:]
  assert len(guard_events(g, "guard_standby")) == 1, g.log[-3000:]
  assert not guard_events(g, "schema_load_failed"), g.log[-3000:]
  assert metric(g, CHECKS) == 0 and metric(g, "pgguard_repairs_total", result="applied") == 0
  code, body = g.http_get("/drift")
  assert code == 503 and "hot standby" in body, body
  assert json.loads(body)["standby"] is True, body
  assert "widgets" not in " ".join(tables(standby, db))
  assert PASSWORD not in g.log and PASSWORD not in body
  # `pgguard check` refuses the standby the same way, naming it.
  code, out = run_check(url)
  assert code == 2 and "hot standby" in out, out
  assert PASSWORD not in out


def test_only_standbys_in_the_list_is_reported_as_no_primary(primary, standby, pgguard):
  db = "sb_readwrite"
  make_db(primary, db, REPLAY_DESIRED, NO_WIDGETS)
  standby.wait_replayed()
  url = multi_host_url(db, standby)  # read-write added: libpq refuses the standby itself
  g = guarded(pgguard, standby, url, "--drift-interval", "2")
  g.defaults = app_kw(db)
  g.wait_log(r"event=guard_standby", timeout=10)
  ev = guard_events(g, "guard_standby")[0]
  assert "read-only" in ev["reason"] and "target_session_attrs=read-write" in ev["reason"], ev
  _, took = missing_table_error(g, {})
  assert took < 0.5, took
  assert metric(g, STANDBY) == 1


def test_promoted_standby_resumes_the_guard(primary, pgguard):
  db = "sb_promote"
  make_db(primary, db, REPLAY_DESIRED, NO_WIDGETS)
  replica = start_standby(primary)
  try:
    replica.wait_replayed()
    url = multi_host_url(db, replica, target_session_attrs="any")
    g = guarded(pgguard, replica, url, "--drift-interval", "2")
    g.defaults = app_kw(db)
    g.wait_log(r"event=guard_standby", timeout=10)
    missing_table_error(g, {})
    replica.promote()
    g.wait_log(r"event=guard_recovered", timeout=10)
    wait_ready(g, timeout=15)
    assert metric(g, STANDBY) == 0
    ev = guard_events(g, "guard_recovered")
    assert len(ev) == 1 and ev[0]["from"] == "standby", g.log[-3000:]
    conn = g.connect()
    try:
      with conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM "widgets"')  # repaired on the new primary, replayed
        assert cur.fetchone() == (0,)
    finally:
      conn.close()
    assert "public.widgets" in tables(replica, db)
    assert len(guard_events(g, "guard_standby")) == 1, g.log[-3000:]
  finally:
    drop_cluster(replica)


def test_guard_follows_the_primary_through_a_failover(pgguard):
  db = "sb_failover"
  old = start_primary()
  new = None
  try:
    make_db(old, db, REPLAY_DESIRED)
    new = start_standby(old)
    new.wait_replayed()
    url = multi_host_url(db, old, new)
    # The application's sessions go to the server that will be promoted.
    g = guarded(pgguard, new, url, "--drift-interval", "2", "--ready-requires-guard")
    g.defaults = app_kw(db)
    wait_ready(g)
    old.sql('DROP TABLE "widgets"', db=db)
    new.wait_replayed()
    old.stop()
    # The next drift check finds the primary gone and only a standby left.
    g.wait_log(r"event=guard_standby", timeout=10)
    ev = guard_events(g, "guard_standby")[0]
    assert "session is read-only" in ev["reason"], ev
    _, took = missing_table_error(g, {})
    assert took < 0.5, took
    new.promote()
    g.wait_log(r"event=guard_recovered", timeout=10)
    wait_ready(g, timeout=15)
    conn = g.connect()
    try:
      with conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM "widgets"')  # repaired on the new primary, replayed
        assert cur.fetchone() == (0,)
    finally:
      conn.close()
    assert "public.widgets" in tables(new, db)
    assert len(guard_events(g, "guard_standby")) == 1, g.log[-3000:]
    assert guard_events(g, "guard_recovered")[0]["from"] == "standby", g.log[-3000:]
  finally:
    drop_cluster(old)
    if new is not None:
      drop_cluster(new)
