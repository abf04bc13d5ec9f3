# The guard under trouble: an unreachable admin database, a wrong admin password or a
# malformed admin URL cost a bounded number of attempts and log lines (backoff, not a hot
# loop) and never show the password; catalog checks are rate-limited whatever asks for them;
# the guard acts on one database, and only on the server --upstream reaches.
import re
import subprocess
import time
import urllib.parse

import psycopg2
import psycopg2.errors
import pytest

from conftest import client_env, free_port, pgguard_binary
from guard_fixtures import (REPLAY_SCHEMA, app_kw, guard_events, make_db, metric,
                            private_postgres, start_guarded, tables, wait_ready)

from guard_fixtures import CHECKS, NO_WIDGETS, REPLAY_DESIRED as DESIRED
RETRIES = "pgguard_guard_retries_total"

# A password with every character a URL or a conninfo string treats specially.
ODD_PASSWORD = "p@ss w/rd'Sekr1t%"


def run_pgguard(*args, env=None, timeout=30):
  penv = client_env()
  penv.update(env or {})
  return subprocess.run([pgguard_binary()] + [str(a) for a in args], capture_output=True,
                        text=True, timeout=timeout, env=penv)


def secret_forms(pw):
  """The password as given, percent-encoded (as in a URI) and conninfo-quoted."""
  return {pw, urllib.parse.quote(pw, safe=""),
          pw.replace("\\", "\\\\").replace("'", "\\'")}


def assert_no_secret(text, pw, where):
  for form in secret_forms(pw):
    assert form not in text, "%s shows the password (%r):\n%s" % (where, form, text[-3000:])


def auth_failures(pg, user):
  """Lines of the server log that record a failed login of user."""
  text = pg.logfile.read_text(errors="replace") if pg.logfile.exists() else ""
  return len(re.findall(r'password authentication failed for user "%s"' % re.escape(user), text))


# --- backoff ------------------------------------------------------------------------

def test_unreachable_admin_database_is_retried_with_backoff_not_in_a_loop(pg, pgguard):
  make_db(pg, "bo_down", DESIRED)
  url = "postgresql://postgres:%s@127.0.0.1:%d/bo_down" % (
    urllib.parse.quote(ODD_PASSWORD, safe=""), free_port())
  g = pgguard("--schema", str(REPLAY_SCHEMA), "--admin-url", url, "--drift-interval", "4")
  time.sleep(15)
  retries = metric(g, RETRIES)
  lines = g.log.splitlines()
  print("admin unreachable 15 s: %d retries, %d log lines" % (retries, len(lines)))
  # 1 s doubling up to the 4 s drift interval, +-25% jitter: about 5 retries in 15 s.
  assert 2 <= retries <= 7, (retries, g.log[-3000:])
  assert len(guard_events(g, "schema_load_failed")) == 1, g.log[-3000:]
  assert len(lines) <= 10, g.log[-3000:]
  assert metric(g, CHECKS) == 0  # no schema, no catalog check
  assert g.http_get("/healthz")[0] == 200
  assert_no_secret(g.log, ODD_PASSWORD, "the log")
  assert_no_secret(g.http_get("/metrics")[1], ODD_PASSWORD, "/metrics")
  assert_no_secret(g.http_get("/readyz")[1], ODD_PASSWORD, "/readyz")


def test_postgres_down_costs_a_bounded_number_of_attempts_and_one_line_each_way(pgguard):
  server, cleanup = private_postgres("")
  try:
    make_db(server, "bo_restart", DESIRED)
    g = start_guarded(pgguard, server, "bo_restart", "--drift-interval", "4", upstream_pg=server)
    checks0 = metric(g, CHECKS)
    server.stop()
    time.sleep(15)
    retries = metric(g, RETRIES)
    checks = metric(g, CHECKS) - checks0
    print("postgres down 15 s: %d retries, %d catalog checks" % (retries, checks))
    # The first failure comes at the first drift tick (4 s), then 1, 2, 4, 4 s.
    assert retries <= 6, (retries, g.log[-3000:])
    assert checks <= 7, (checks, g.log[-3000:])
    assert len(guard_events(g, "drift_check_failed")) == 1, g.log[-3000:]
    server.start()
    g.wait_log(r"event=guard_recovered", timeout=12)
    wait_ready(g, timeout=10)
    assert len(guard_events(g, "guard_recovered")) == 1
    assert len(g.log.splitlines()) <= 16, g.log[-3000:]
  finally:
    cleanup()


def test_wrong_admin_password_is_retried_with_backoff_while_clients_connect(pg, pgguard):
  make_db(pg, "bo_wrongpw", DESIRED)
  pg.create_role("bo_admin", "the-right-one", superuser=True)
  url = pg.url(dbname="bo_wrongpw", user="bo_admin", password=ODD_PASSWORD)
  before = auth_failures(pg, "bo_admin")
  g = pgguard("--schema", str(REPLAY_SCHEMA), "--admin-url", url, "--drift-interval", "4")
  g.defaults = app_kw("bo_wrongpw")
  # Clients keep connecting fine all along: each successful server connection must not be
  # taken as "the database is back" and trigger another admin login.
  deadline = time.monotonic() + 12
  clients = 0
  while time.monotonic() < deadline:
    conn = g.connect()
    with conn.cursor() as cur:
      cur.execute("SELECT 1")
    conn.close()
    clients += 1
    time.sleep(0.1)
  failures = auth_failures(pg, "bo_admin") - before
  print("wrong password 12 s: %d failed admin logins, %d client connections" % (failures, clients))
  assert clients > 20
  assert 2 <= failures <= 8, (failures, g.log[-3000:])
  assert len(guard_events(g, "schema_load_failed")) == 1, g.log[-3000:]
  assert "password authentication failed" in g.log
  assert_no_secret(g.log, ODD_PASSWORD, "the log")


# --- secrets --------------------------------------------------------------------------

MALFORMED = [
  "postgresql://postgres:%s@[::1/db",                    # libpq quotes the whole URI
  "postgresql://postgres:%s%%ZZ@127.0.0.1/db",           # a bad percent-encoding, quoted
  "postgresql://postgres:%s@127.0.0.1/db?nonsense=1",
  "postgresql://postgres:%s@oops@127.0.0.1/db",          # an unencoded '@'
  "host=127.0.0.1 user=postgres password='%s",           # an unterminated quote
]
SECRET = "Hunter2Sekr1t"


@pytest.mark.parametrize("template", MALFORMED)
def test_malformed_admin_url_is_refused_everywhere_without_its_password(tmp_path, template):
  url = template % SECRET
  schema = str(REPLAY_SCHEMA)
  runs = {
    "--check-config": run_pgguard("--check-config", "--schema", schema, "--admin-url", url),
    "check": run_pgguard("check", "--schema", schema, "--admin-url", url),
    "plan": run_pgguard("plan", "--schema", schema, "--admin-url", url),
    "run": run_pgguard("--schema", schema, "--admin-url", url, "--listen",
                       "127.0.0.1:%d" % free_port(), "--admin-listen", "127.0.0.1:0"),
    "env": run_pgguard("--check-config", "--schema", schema, env={"PGGUARD_ADMIN_URL": url}),
  }
  f = tmp_path / "admin-url"
  f.write_text(url + "\n")
  runs["file"] = run_pgguard("--check-config", "--schema", schema, "--admin-url-file", str(f))
  for name, r in runs.items():
    out = r.stdout + r.stderr
    assert r.returncode == 2, (name, r.returncode, out)
    assert "configuration OK" not in out
    assert_no_secret(out, SECRET, name)
    assert "invalid" in out and ("admin-url" in out or "ADMIN_URL" in out), (name, out)


@pytest.mark.parametrize("form", ["uri", "uri_query", "keyword"])
def test_wrong_admin_password_never_shows_in_log_drift_metrics_or_check(pg, pgguard, form):
  db = "bo_secret_" + form
  make_db(pg, db, DESIRED)
  if form == "uri":
    url = pg.url(dbname=db, password=ODD_PASSWORD)
  elif form == "uri_query":
    url = "postgresql://postgres@127.0.0.1:%d/%s?password=%s" % (
      pg.port, db, urllib.parse.quote(ODD_PASSWORD, safe=""))
  else:
    url = "host=127.0.0.1 port=%d dbname=%s user=postgres password='%s'" % (
      pg.port, db, ODD_PASSWORD.replace("\\", "\\\\").replace("'", "\\'"))
  g = pgguard("--schema", str(REPLAY_SCHEMA), "--admin-url", url, "--drift-interval", "4")
  g.wait_log(r"event=schema_load_failed", timeout=10)
  time.sleep(1.5)
  assert "****" in "".join(guard_events(g, "guard_starting")[0].values()), g.log[-2000:]
  for path in ("/drift", "/metrics", "/readyz"):
    assert_no_secret(g.http_get(path)[1], ODD_PASSWORD, path)
  assert_no_secret(g.log, ODD_PASSWORD, "the log")
  for cmd in ("check", "plan"):
    r = run_pgguard(cmd, "--schema", REPLAY_SCHEMA, "--admin-url", url)
    assert r.returncode == 2, (cmd, r.stdout, r.stderr)
    assert "password authentication failed" in r.stderr, r.stderr
    assert_no_secret(r.stdout + r.stderr, ODD_PASSWORD, cmd)


def test_check_config_accepts_a_good_admin_url_with_an_odd_password(pg):
  url = pg.url(dbname="postgres", password=ODD_PASSWORD)
  r = run_pgguard("--check-config", "--schema", REPLAY_SCHEMA, "--admin-url", url)
  assert r.returncode == 0, r.stderr
  assert_no_secret(r.stdout + r.stderr, ODD_PASSWORD, "--check-config")


# --- the limiter --------------------------------------------------------------------

def test_repair_requests_in_a_loop_start_at_most_one_catalog_check_per_second(pg, pgguard):
  """app.accounts is in the desired schema and in the database, but this session's search_path
  hides it: every "relation accounts does not exist" is one the desired schema explains, so each
  asks for a repair, and a repair finds nothing to do. The limiter bounds what that costs."""
  make_db(pg, "bo_limit", DESIRED)
  g = start_guarded(pgguard, pg, "bo_limit")
  conn = g.connect(options="-c search_path=public")
  checks0 = metric(g, CHECKS)
  t0 = time.monotonic()
  loops = 0
  with conn.cursor() as cur:
    while time.monotonic() - t0 < 5:
      # Not replayable (a statement ran before the error): a repair-only request.
      with pytest.raises(psycopg2.errors.UndefinedTable):
        cur.execute("BEGIN; SELECT 1; SELECT * FROM accounts")
      cur.execute("ROLLBACK")
      # Replayable: a request that waits for its answer.
      with pytest.raises(psycopg2.errors.UndefinedTable):
        cur.execute("SELECT * FROM accounts")
      loops += 1
  elapsed = time.monotonic() - t0
  conn.close()
  checks = metric(g, CHECKS) - checks0
  print("limiter: %d loops, %d catalog checks in %.1f s" % (loops, checks, elapsed))
  assert loops >= 5, loops
  assert checks >= 1, "no request asked for a check: the test proves nothing"
  assert checks <= elapsed + 1.5, (checks, elapsed, loops, g.log[-2000:])
  assert metric(g, RETRIES) == 0


# --- one guarded database, on the upstream's server ----------------------------------

def test_the_guarded_database_is_named_in_the_log(pg, pgguard):
  make_db(pg, "bo_named", DESIRED)
  g = start_guarded(pgguard, pg, "bo_named")
  events = guard_events(g, "guarded_database")
  assert len(events) == 1, g.log[-2000:]
  assert events[0]["name"] == "bo_named" and events[0]["server"] == "same", events


def test_a_session_on_another_database_gets_its_error_untouched(pg, pgguard):
  make_db(pg, "bo_guarded", DESIRED)
  make_db(pg, "bo_elsewhere", DESIRED, NO_WIDGETS)
  g = start_guarded(pgguard, pg, "bo_guarded")
  conn = g.connect(**app_kw("bo_elsewhere"))
  with conn.cursor() as cur:
    with pytest.raises(psycopg2.errors.UndefinedTable) as got:
      cur.execute("SELECT * FROM widgets")
    assert got.value.diag.message_hint is None
    cur.execute("SELECT 1")
  conn.close()
  time.sleep(1.5)
  assert metric(g, "pgguard_repairs_total", result="applied") == 0
  assert metric(g, "pgguard_repairs_total", result="nothing_missing") == 0
  assert "public.widgets" not in tables(pg, "bo_elsewhere")


def test_admin_url_on_another_server_than_upstream_makes_the_guard_refuse(pg, pgguard):
  server, cleanup = private_postgres("")
  try:
    make_db(pg, "bo_other", DESIRED, NO_WIDGETS)
    make_db(server, "bo_other", DESIRED, NO_WIDGETS)
    # The admin URL's credentials work on both servers: only their identity differs.
    server.sql("ALTER ROLE postgres PASSWORD %s", (pg.password,))
    server.password = server.defaults["password"] = pg.password
    shadows = pg.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'pgguard%%'")[0][0]
    g = pgguard("--schema", str(REPLAY_SCHEMA), "--admin-url", pg.url(dbname="bo_other"),
                "--repair", "eager", "--drift-interval", "1",
                upstream="%s:%d" % (server.host, server.port))
    line = g.wait_log(r"event=guard_refused[^\n]*", timeout=20).group(0)
    assert "different PostgreSQL servers" in line and "system_identifier" in line, line
    assert len(guard_events(g, "guarded_database")) == 1
    assert g.http_get("/readyz")[0] == 200
    status, body = g.http_get("/drift")
    assert status == 503 and "different PostgreSQL servers" in body, (status, body)
    assert metric(g, "pgguard_schema_guard_active") == 0
    assert metric(g, "pgguard_schema_guard_refused") == 1
    g.defaults = app_kw("bo_other")
    conn = g.connect()
    with conn.cursor() as cur:
      with pytest.raises(psycopg2.errors.UndefinedTable):
        cur.execute("SELECT * FROM widgets")
      cur.execute("SELECT 1")
    conn.close()
    time.sleep(2.5)  # eager mode, 1 s drift interval: nothing may run any more
    assert "public.widgets" not in tables(pg, "bo_other")
    assert "public.widgets" not in tables(server, "bo_other")
    assert metric(g, CHECKS) == 0
    # The shadow database is not even created on the admin URL's server.
    assert pg.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'pgguard%%'")[0][0] == shadows
    assert len(guard_events(g, "guard_refused")) == 1
  finally:
    cleanup()


def test_admin_login_refused_by_the_upstream_leaves_the_guard_off_until_verified(pg, pgguard):
  server, cleanup = private_postgres("")
  try:
    make_db(pg, "bo_unverified", DESIRED, NO_WIDGETS)
    make_db(server, "bo_unverified", DESIRED, NO_WIDGETS)
    g = pgguard("--schema", str(REPLAY_SCHEMA), "--admin-url", pg.url(dbname="bo_unverified"),
                "--repair", "eager", "--drift-interval", "1",
                upstream="%s:%d" % (server.host, server.port))
    line = g.wait_log(r"event=guard_server_unverified[^\n]*", timeout=20).group(0)
    assert "password authentication failed" in line, line
    time.sleep(3)  # drift checks go on (and compare again); repairs do not
    assert len(guard_events(g, "guard_server_unverified")) == 1, g.log[-3000:]
    assert "public.widgets" not in tables(pg, "bo_unverified")
    assert "public.widgets" not in tables(server, "bo_unverified")
    assert metric(g, "pgguard_repairs_total", result="applied") == 0
    assert not guard_events(g, "repair_failed"), g.log[-3000:]
    assert_no_secret(g.log, pg.password, "the log")
    assert_no_secret(g.log, server.password, "the log")
  finally:
    cleanup()
