# Either side hanging up mid-session: a dead client frees its server backend, a terminated
# backend closes its client with the server's FATAL, and pgguard keeps serving everyone else.
import signal
import subprocess

import psycopg2
import pytest

from conftest import PSQL, client_env
from pgwire import RawConn, error_fields


def test_killing_client_mid_query_frees_server_backend(pg, target, appdb):
  app = "hangup_kill_" + target.name
  client = subprocess.Popen([PSQL, "-X", "-d", target.dsn(application_name=app, **appdb),
                             "-c", "SELECT pg_sleep(30)"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=client_env())
  try:
    pg.wait_backends(app, 1, state="active")
  finally:
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=10)
  # The backend is inside pg_sleep; it notices the closed socket at its next
  # client_connection_check_interval (200 ms in this cluster).
  pg.wait_backends(app, 0, timeout=5)


def test_client_closing_idle_connection_frees_server_backend(pg, target, appdb):
  app = "hangup_idle_" + target.name
  raw = RawConn(target.host, target.port)
  raw.startup(appdb["user"], appdb["dbname"], appdb["password"], extra={"application_name": app})
  pg.wait_backends(app, 1)
  raw.close()  # no Terminate message: an abrupt close
  pg.wait_backends(app, 0, timeout=5)


def test_terminated_backend_sends_fatal_57P01_and_closes_client(pg, target, appdb):
  app = "hangup_term_" + target.name
  with RawConn(target.host, target.port) as raw:
    raw.startup(appdb["user"], appdb["dbname"], appdb["password"], extra={"application_name": app})
    (pid, _, _, _), = pg.wait_backends(app, 1)
    assert pg.sql("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    msgs = raw.read_to_eof(timeout=5)
  fields = error_fields(msgs)
  assert fields is not None, "no ErrorResponse before close: %r" % msgs
  assert fields["S"] == "FATAL" and fields["C"] == "57P01"
  assert fields["M"] == "terminating connection due to administrator command"


def test_terminated_backend_fails_libpq_client_and_others_keep_working(pg, target, appdb):
  app = "hangup_libpq_" + target.name
  victim = target.connect(application_name=app, **appdb)
  bystander = target.connect(**appdb)
  try:
    (pid, _, _, _), = pg.wait_backends(app, 1)
    pg.sql("SELECT pg_terminate_backend(%s)", (pid,))
    pg.wait_backends(app, 0)
    with pytest.raises(psycopg2.OperationalError) as ei:
      with victim.cursor() as cur:
        cur.execute("SELECT 1")
    # libpq reports the server's FATAL, or only the close when its send raced the FATAL.
    assert ("terminating connection due to administrator command" in str(ei.value)
            or "server closed the connection unexpectedly" in str(ei.value))
    assert victim.closed
    with bystander.cursor() as cur:
      cur.execute("SELECT 'still serving'")
      assert cur.fetchone() == ("still serving",)
    fresh = target.connect(**appdb)
    with fresh.cursor() as cur:
      cur.execute("SELECT 2")
      assert cur.fetchone() == (2,)
    fresh.close()
  finally:
    victim.close()
    bystander.close()


def test_client_vanishing_in_a_transaction_ends_its_session_with_a_terminate(pg, pgguard, appdb):
  """pgguard closes the server session as a client would (Terminate), so PostgreSQL rolls the
  transaction back without "unexpected EOF on client connection" in its log."""
  gg = pgguard()
  app = "hangup_terminate"
  marker = "unexpected EOF on client connection"
  before = pg.logfile.read_text().count(marker)
  raw = RawConn(gg.host, gg.port)
  raw.startup(appdb["user"], appdb["dbname"], appdb["password"], extra={"application_name": app})
  raw.simple_query("BEGIN")
  pg.wait_backends(app, 1)
  raw.close()  # no Terminate from the client
  pg.wait_backends(app, 0, timeout=5)
  assert pg.logfile.read_text().count(marker) == before


def test_connection_log_names_who_from_where_how_long_and_how_it_ended(pgguard, appdb):
  import re as _re
  gg = pgguard()
  conn = gg.connect(application_name="connlog", **appdb)
  with conn.cursor() as cur:
    cur.execute("SELECT 'secret-query-text-42'")
  conn.close()
  with pytest.raises(psycopg2.OperationalError):
    psycopg2.connect(host=gg.host, port=gg.port, user=appdb["user"], password="not-the-password",
                     dbname=appdb["dbname"], sslmode="disable")
  line = gg.wait_log(r"event=connection_authorized [^\n]*", timeout=3).group(0)
  assert 'user="%s"' % appdb["user"] in line and 'database="%s"' % appdb["dbname"] in line, line
  assert _re.search(r"addr=127\.0\.0\.1:\d+ ", line) and "tls=no" in line, line
  gg.wait_log(r"fatal=28P01", timeout=3)
  ends = _re.findall(r"event=disconnection [^\n]*", gg.log)
  ok = [l for l in ends if "fatal=none" in l and 'user="%s"' % appdb["user"] in l]
  assert ok and _re.search(r"duration_s=\d+\.\d+ bytes_in=[1-9]\d* bytes_out=[1-9]\d*", ok[0]), ends
  assert "secret-query-text-42" not in gg.log and "not-the-password" not in gg.log
  assert appdb["password"] not in gg.log


def test_connection_log_can_be_turned_off(pgguard, appdb):
  gg = pgguard("--log-connections", "off", "--log-disconnections", "off")
  conn = gg.connect(**appdb)
  conn.close()
  import time as _t
  _t.sleep(0.3)
  assert "event=connection_authorized" not in gg.log and "event=disconnection" not in gg.log


def test_control_bytes_in_a_client_name_never_reach_the_log(pgguard):
  from pgwire import startup_packet
  gg = pgguard()
  r = RawConn(gg.host, gg.port)
  r.send(startup_packet({"user": "esc\x1b[31mred\x07", "database": "x\x7f"}))
  try:
    r.read_msg(timeout=3)
  except Exception:
    pass
  r.close()
  gg.wait_log(r"event=disconnection [^\n]*user=", timeout=3)
  assert "\x1b" not in gg.log and "\x07" not in gg.log and "\x7f" not in gg.log
