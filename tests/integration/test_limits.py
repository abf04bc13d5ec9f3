# Limits and timeouts as PgBouncer operators know them (issue 9, item 1, in part): a client that
# never finishes start-up is closed (--client-login-timeout), clients past --max-client-conn get
# PostgreSQL's FATAL 53300, a PostgreSQL that never answers the TCP handshake gets FATAL 08006
# after --server-connect-timeout, and both legs use TCP keepalive. Every refusal is counted.
import socket
import subprocess
import time

import psycopg2
import pytest

from pgwire import RawConn, ServerError, error_fields

REJECTED = "pgguard_clients_rejected_total"


def metric(inst, name, **labels):
  v = inst.metrics().get_value(name, **labels)
  return 0 if v is None else v


def still_serving(inst, appdb):
  conn = inst.connect(**appdb)
  with conn.cursor() as cur:
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
  conn.close()


def closed(sock, timeout):
  """True when the peer closes within timeout (EOF or reset)."""
  sock.settimeout(timeout)
  try:
    return sock.recv(1) == b""
  except ConnectionResetError:
    return True
  except socket.timeout:
    return False


def test_clients_that_never_finish_start_up_are_closed_after_the_login_timeout(pgguard, appdb):
  gg = pgguard("--client-login-timeout", "1")
  silent = [socket.create_connection((gg.host, gg.port)) for _ in range(20)]
  slow = [socket.create_connection((gg.host, gg.port)) for _ in range(5)]
  t0 = time.monotonic()
  while time.monotonic() - t0 < 0.9:          # one byte now and then: a slowloris
    for s in slow:
      s.send(b"\0")
    time.sleep(0.3)
  for s in silent + slow:
    assert closed(s, 3.0), "a client without start-up was kept past the login timeout"
    s.close()
  assert metric(gg, REJECTED, reason="login_timeout") == 25
  still_serving(gg, appdb)   # a normal client, well within the timeout


def test_clients_past_max_client_conn_get_53300_and_others_keep_working(pgguard, appdb):
  gg = pgguard("--max-client-conn", "3")
  held = []
  for _ in range(3):
    r = RawConn(gg.host, gg.port)
    r.startup(appdb["user"], appdb["dbname"], appdb["password"])
    held.append(r)
  extra = RawConn(gg.host, gg.port)
  msgs = extra.read_to_eof(timeout=5)
  fields = error_fields(msgs)
  assert fields and fields["S"] == "FATAL" and fields["C"] == "53300", msgs
  assert fields["M"] == "sorry, too many clients already"
  extra.close()
  assert held[0].simple_query("SELECT 1")[-1].type == b"Z"   # existing sessions unharmed
  held.pop().close()
  time.sleep(0.2)
  still_serving(gg, appdb)
  for r in held:
    r.close()
  assert metric(gg, REJECTED, reason="max_client_conn") == 1


def test_unanswering_upstream_gives_fatal_08006_after_the_connect_timeout(pgguard, appdb, blackhole):
  gg = pgguard("--server-connect-timeout", "1", upstream=blackhole)
  t0 = time.monotonic()
  with pytest.raises(psycopg2.OperationalError) as ei:
    psycopg2.connect(host=gg.host, port=gg.port, user=appdb["user"], password=appdb["password"],
                     dbname=appdb["dbname"], sslmode="disable", connect_timeout=10)
  elapsed = time.monotonic() - t0
  assert "timeout after 1 s" in str(ei.value), str(ei.value)
  assert elapsed < 4, elapsed


def test_both_legs_use_tcp_keepalive(pg, pgguard, appdb):
  gg = pgguard("--tcp-keepidle", "33")
  raw = RawConn(gg.host, gg.port)
  raw.startup(appdb["user"], appdb["dbname"], appdb["password"])
  # ss shows one timer per socket: while bytes are in flight it is the retransmit timer.
  deadline = time.monotonic() + 5
  while True:
    out = subprocess.run(["ss", "-tnoH", "state", "established"], capture_output=True,
                         text=True).stdout.splitlines()
    # pgguard's end of the client leg, and its end of the server leg (the one peer of ours
    # whose keepalive idle is ours, 33 s, not PostgreSQL's or the kernel's 7200 s).
    client_leg = [l for l in out if l.split()[2].endswith(":%d" % gg.port)]
    server_leg = [l for l in out if l.split()[3].endswith(":%d" % pg.port) and "keepalive,3" in l]
    if any("keepalive,3" in l for l in client_leg) and server_leg:
      break
    assert time.monotonic() < deadline, (gg.port, client_leg, out)
    time.sleep(0.2)
  raw.close()


@pytest.mark.parametrize("flag,value", [("--max-client-conn", "-1"), ("--client-login-timeout", "nan"),
                                        ("--tcp-keepalive", "maybe"), ("--tcp-keepidle", "0")])
def test_limits_refuse_bad_values(pgguard, flag, value):
  from conftest import pgguard_binary
  r = subprocess.run([pgguard_binary(), flag, value, "--check-config"], capture_output=True, text=True)
  assert r.returncode == 2 and flag in r.stderr, r.stderr


def test_max_client_conn_that_cannot_fit_the_fd_limit_is_refused_at_start():
  from conftest import pgguard_binary
  from conftest import free_port
  r = subprocess.run(["prlimit", "--nofile=200:200", pgguard_binary(), "--max-client-conn", "1000",
                      "--listen", "127.0.0.1:%d" % free_port(), "--admin-listen", "127.0.0.1:0"],
                     capture_output=True, text=True, timeout=10)
  assert r.returncode == 2, r
  assert "--max-client-conn 1000 needs 2064 file descriptors" in r.stderr, r.stderr
  assert "the limit is 200" in r.stderr


def test_the_soft_fd_limit_is_raised_to_the_hard_limit():
  from conftest import free_port, pgguard_binary
  port = free_port()
  p = subprocess.Popen(["prlimit", "--nofile=100:300", pgguard_binary(), "--max-client-conn", "100",
                        "--listen", "127.0.0.1:%d" % port, "--admin-listen", "127.0.0.1:0"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    # 100 clients need 264 descriptors: only with the soft limit raised to the hard one.
    deadline = time.monotonic() + 5
    while True:
      try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        break
      except OSError:
        assert time.monotonic() < deadline and p.poll() is None, "pgguard did not start"
        time.sleep(0.05)
    limits = open("/proc/%d/limits" % p.pid).read()
    line = [l for l in limits.splitlines() if l.startswith("Max open files")][0]
    assert line.split()[3] == "300", line
  finally:
    p.terminate()
    p.wait(5)
