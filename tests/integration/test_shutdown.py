# SIGTERM: pgguard stops accepting at once, lets a running query finish, closes idle clients by
# --shutdown-timeout, and exits 0.
import signal
import socket
import time

import pytest

from pgwire import RawConn, query


def connect_refused(port, within):
  """True once a new TCP connection to port is refused (tried until `within` seconds pass)."""
  deadline = time.monotonic() + within
  while time.monotonic() < deadline:
    try:
      with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        pass
    except ConnectionRefusedError:
      return True
    except OSError:
      pass
    time.sleep(0.05)
  return False


def test_sigterm_stops_accepting_closes_idle_client_and_exits_0(pgguard, appdb):
  gg = pgguard("--shutdown-timeout", "1")
  idle = RawConn(gg.host, gg.port)
  try:
    idle.startup(appdb["user"], appdb["dbname"], appdb["password"])
    started = time.monotonic()
    gg.proc.send_signal(signal.SIGTERM)
    assert connect_refused(gg.port, within=0.8), "pgguard still accepts after SIGTERM"
    assert idle.wait_closed(timeout=4), "idle client still connected 4s after SIGTERM"
    closed_after = time.monotonic() - started
    assert closed_after < 1 + 1.5, "idle client closed only after %.2fs" % closed_after
    try:
      rc = gg.proc.wait(timeout=5)
    except Exception:
      pytest.fail("pgguard still running 5s after its clients were closed:\n" + gg.log[-2000:])
    assert rc == 0, gg.log[-2000:]
  finally:
    idle.close()


def test_sigterm_lets_running_query_finish(pgguard, appdb):
  gg = pgguard("--shutdown-timeout", "3")
  with RawConn(gg.host, gg.port) as busy:
    busy.startup(appdb["user"], appdb["dbname"], appdb["password"])
    busy.send(query("SELECT pg_sleep(0.7), 'finished'"))
    time.sleep(0.2)
    gg.proc.send_signal(signal.SIGTERM)
    msgs = busy.read_until({b"Z"}, timeout=5)
    assert [m.type for m in msgs] == [b"T", b"D", b"C", b"Z"], msgs
    assert msgs[1].body.endswith(b"finished")
    assert busy.wait_closed(timeout=5)
  assert gg.proc.wait(timeout=5) == 0, gg.log[-2000:]


def test_sigterm_with_no_clients_exits_0_promptly(pgguard):
  gg = pgguard("--shutdown-timeout", "5")
  started = time.monotonic()
  rc = gg.stop(signal.SIGTERM, timeout=8)
  took = time.monotonic() - started
  assert rc == 0, "exit code %r; log:\n%s" % (rc, gg.log[-2000:])
  # Nothing to wait for: it must not sit out the 5 s grace period.
  assert took < 4, "took %.2fs to exit with no clients; log:\n%s" % (took, gg.log[-2000:])


def test_sigint_exits_0(pgguard):
  gg = pgguard()
  assert gg.stop(signal.SIGINT, timeout=5) == 0, gg.log[-2000:]


def test_sigterm_lets_a_session_finish_its_transaction_then_closes_it(pg, pgguard, appdb):
  """PgBouncer 1.23's SIGTERM: a session inside a transaction block is not cut off; it is
  closed at its next idle point, once its transaction has ended."""
  pg.sql("CREATE TABLE IF NOT EXISTS sigterm_tx (v text)", db=appdb["dbname"], user=appdb["user"],
         password=appdb["password"])
  gg = pgguard("--shutdown-timeout", "10")
  with RawConn(gg.host, gg.port) as tx:
    tx.startup(appdb["user"], appdb["dbname"], appdb["password"])
    assert tx.simple_query("BEGIN")[-1].body == b"T"
    ins = tx.simple_query("INSERT INTO sigterm_tx VALUES ('committed during the drain')")
    assert ins[0].type == b"C", ins
    gg.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)                      # several drain ticks: the session must survive them
    msgs = tx.simple_query("COMMIT")
    assert [m.type for m in msgs] == [b"C", b"Z"] and msgs[-1].body == b"I", msgs
    assert msgs[0].body.rstrip(b"\0") == b"COMMIT", msgs
    assert tx.wait_closed(timeout=3), "the session was not closed once its transaction ended"
  assert gg.proc.wait(timeout=5) == 0, gg.log[-2000:]
  rows = pg.sql("SELECT count(*) FROM sigterm_tx WHERE v = 'committed during the drain'",
                db=appdb["dbname"])
  assert rows[0][0] == 1


def test_sigquit_stops_at_once_even_with_a_transaction_open(pgguard, appdb):
  gg = pgguard("--shutdown-timeout", "30")
  with RawConn(gg.host, gg.port) as tx:
    tx.startup(appdb["user"], appdb["dbname"], appdb["password"])
    tx.simple_query("BEGIN")
    t0 = time.monotonic()
    gg.proc.send_signal(signal.SIGQUIT)
    assert tx.wait_closed(timeout=3)
    gg.proc.wait(timeout=3)
    assert time.monotonic() - t0 < 2


def test_sigusr1_pauses_new_requests_and_sigusr2_resumes_them(pgguard, appdb):
  gg = pgguard()
  with RawConn(gg.host, gg.port) as c:
    c.startup(appdb["user"], appdb["dbname"], appdb["password"])
    gg.proc.send_signal(signal.SIGUSR1)
    assert gg.wait_log(r"event=paused", timeout=3)
    c.send(query("SELECT 'after resume'"))
    with pytest.raises(Exception):
      c.read_msg(timeout=1.0)            # held, not answered, not dropped
    assert gg.proc.poll() is None, "SIGUSR1 must not stop pgguard"
    gg.proc.send_signal(signal.SIGUSR2)
    msgs = c.read_until({b"Z"}, timeout=5)
    assert [m.type for m in msgs] == [b"T", b"D", b"C", b"Z"], msgs
    assert msgs[1].body.endswith(b"after resume")
