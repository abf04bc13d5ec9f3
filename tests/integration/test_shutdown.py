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
