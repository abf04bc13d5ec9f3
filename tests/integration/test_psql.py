# psql through pgguard behaves exactly as psql direct: results, errors, notices, LISTEN/NOTIFY, \copy.
import hashlib
import subprocess
import time

import pytest

from conftest import PSQL, client_env


def psql_both(pg, target, *args, sql=None, **kw):
  """Runs the same psql invocation through the target and direct; returns (through, direct)."""
  through = target.psql(*args, sql=sql, **kw)
  direct = pg.psql(*args, sql=sql, **kw)
  return through, direct


def assert_same_output(through, direct):
  assert through.returncode == direct.returncode, (through.stderr, direct.stderr)
  assert through.stdout == direct.stdout
  assert through.stderr == direct.stderr


def test_multi_statement_query_returns_every_result_set(pg, target, appdb):
  sql = "SELECT 1 AS a; SELECT 'two' AS b, 2 AS c; SELECT g AS s FROM generate_series(1,3) g"
  through, direct = psql_both(pg, target, "-v", "ON_ERROR_STOP=1", sql=sql, **appdb)
  assert through.returncode == 0, through.stderr
  assert " b  | c" in through.stdout and " two | 2" in through.stdout
  assert "(3 rows)" in through.stdout
  assert_same_output(through, direct)


def test_error_passes_through_with_same_sqlstate_message_and_position(pg, target, appdb):
  sql = "SELECT 1 AS before; SELECT * FROM no_such_table_xyz; SELECT 3 AS never"
  through, direct = psql_both(pg, target, "-v", "VERBOSITY=verbose", sql=sql, **appdb)
  assert through.returncode == 1
  assert 'ERROR:  42P01: relation "no_such_table_xyz" does not exist' in through.stderr
  assert "LINE 1:" in through.stderr and "LOCATION:" in through.stderr
  assert "never" not in through.stdout
  assert_same_output(through, direct)


def test_division_by_zero_error_keeps_session_usable(pg, target, appdb):
  script = "\\set VERBOSITY verbose\nSELECT 1/0;\nSELECT 'still here' AS alive;\n"
  through, direct = psql_both(pg, target, input=script, **appdb)
  assert "ERROR:  22012: division by zero" in through.stderr
  assert "still here" in through.stdout
  assert_same_output(through, direct)


def test_notices_and_warnings_reach_the_client_in_order(pg, target, appdb):
  sql = ("DO $$ BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; "
         "RAISE NOTICE 'bye'; END $$")
  through, direct = psql_both(pg, target, sql=sql, **appdb)
  assert through.returncode == 0
  assert through.stderr.splitlines() == ["NOTICE:  hello 42", "WARNING:  careful", "NOTICE:  bye"]
  assert_same_output(through, direct)


def test_listen_notify_delivers_across_two_sessions(pg, target, appdb):
  app = "listener_" + target.name
  listener = subprocess.Popen(
    [PSQL, "-X", "-d", target.dsn(application_name=app, **appdb), "-v", "ON_ERROR_STOP=1",
     "-c", "LISTEN pgg_chan", "-c", "SELECT pg_sleep(1.5)", "-c", "SELECT 'done' AS d"],
    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=client_env())
  try:
    # LISTEN has committed once the session is running its pg_sleep.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
      rows = pg.backends(app)
      if rows and rows[0][1] == "active" and "pg_sleep" in (rows[0][3] or ""):
        break
      time.sleep(0.02)
    else:
      pytest.fail("listener never reached pg_sleep: %r" % pg.backends(app))
    notifier = target.psql("-qtA", sql="NOTIFY pgg_chan, 'payload-1'; SELECT pg_backend_pid()",
                           **appdb)
    assert notifier.returncode == 0, notifier.stderr
    pid = int(notifier.stdout.strip().splitlines()[-1])
    out, err = listener.communicate(timeout=20)
  finally:
    if listener.poll() is None:
      listener.kill()
      listener.wait()
  out = out.decode()
  assert listener.returncode == 0, err
  expected = ('Asynchronous notification "pgg_chan" with payload "payload-1" received from '
              'server process with PID %d.' % pid)
  assert expected in out
  assert "done" in out


@pytest.fixture(scope="module")
def copy_table(pg, appdb):
  pg.sql("DROP TABLE IF EXISTS copy_src", **_as(appdb))
  pg.sql("CREATE TABLE copy_src AS SELECT g AS id, md5(g::text) AS txt, g * 1.5 AS n, "
         "timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute' AS ts, "
         "CASE WHEN g % 7 = 0 THEN NULL ELSE E'tab\\there \\\\ back' END AS odd "
         "FROM generate_series(1, 50000) g", **_as(appdb))
  return "copy_src"


def _as(appdb):
  return {"db": appdb["dbname"], "user": appdb["user"], "password": appdb["password"]}


def table_digest(pg, appdb, table):
  rows = pg.sql("SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id)) FROM %s t" % table,
                **_as(appdb))
  return rows[0]


def test_copy_out_of_50k_rows_gives_the_servers_exact_bytes(pg, target, appdb, copy_table, tmp_path):
  via, direct = tmp_path / "via.tsv", tmp_path / "direct.tsv"
  r = target.psql(sql="\\copy (SELECT * FROM copy_src ORDER BY id) TO '%s'" % via, **appdb)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == "COPY 50000"
  r = pg.psql(sql="\\copy (SELECT * FROM copy_src ORDER BY id) TO '%s'" % direct, **appdb)
  assert r.returncode == 0, r.stderr
  a, b = via.read_bytes(), direct.read_bytes()
  assert len(a) == len(b) and a.count(b"\n") == 50000
  assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()


def test_copy_in_of_50k_rows_stores_identical_content(pg, target, appdb, copy_table, tmp_path):
  src = tmp_path / "src.tsv"
  r = pg.psql(sql="\\copy copy_src TO '%s'" % src, **appdb)
  assert r.returncode == 0, r.stderr
  dst = "copy_dst_" + target.name
  pg.sql("DROP TABLE IF EXISTS %s" % dst, **_as(appdb))
  pg.sql("CREATE TABLE %s (LIKE copy_src)" % dst, **_as(appdb))
  r = target.psql(sql="\\copy %s FROM '%s'" % (dst, src), **appdb)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == "COPY 50000"
  assert table_digest(pg, appdb, dst) == table_digest(pg, appdb, "copy_src")


def test_copy_in_with_bad_row_fails_as_on_server_and_stores_nothing(pg, target, appdb, tmp_path):
  src = tmp_path / "bad.tsv"
  src.write_text("".join("%d\tok\n" % i for i in range(1, 1000)) + "notanumber\tbad\n")
  dst = "copy_bad_" + target.name
  pg.sql("DROP TABLE IF EXISTS %s" % dst, **_as(appdb))
  pg.sql("CREATE TABLE %s (id int, t text)" % dst, **_as(appdb))
  sql = "\\copy %s FROM '%s'" % (dst, src)
  through = target.psql("-v", "VERBOSITY=verbose", sql=sql, **appdb)
  direct = pg.psql("-v", "VERBOSITY=verbose", sql=sql, **appdb)
  assert 'ERROR:  22P02: invalid input syntax for type integer: "notanumber"' in through.stderr
  assert through.stderr == direct.stderr
  assert pg.sql("SELECT count(*) FROM %s" % dst, **_as(appdb))[0][0] == 0
