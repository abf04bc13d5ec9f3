"""Reaching PostgreSQL and being reached, attacked: Unix socket paths at the
length limit, socket files pgguard must not take over, the upstream's address
list changing under dials in progress, and signals while a lookup hangs."""
import os
import re
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import free_port
from test_reach import (flood, in_private_hosts, needs_namespaces, short_dir, unix_endpoint,
                        write_in_place)

STARTUP = b"user\0app\0database\0appdb\0\0"


def startup_packet(params=STARTUP):
  return struct.pack("!ii", 8 + len(params), 196608) + params


def path_of_length(total, port):
  """A directory (created) whose socket file DIR/.s.PGSQL.PORT is total bytes long."""
  d = short_dir()
  name = "/.s.PGSQL.%d" % port
  fill = total - len(d) - 1 - len(name)
  assert fill > 0
  sub = os.path.join(d, "x" * fill)
  os.mkdir(sub)
  assert len(sub + name) == total
  return sub


def test_a_unix_upstream_path_past_the_limit_is_refused_not_truncated(pgguard):
  # sun_path holds 107 bytes and a NUL. DIR/.s.PGSQL.1234 is 108 bytes: truncated
  # by one byte it names DIR/.s.PGSQL.123, someone else's socket.
  sub = path_of_length(108, 1234)
  other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  other.bind(os.path.join(sub, ".s.PGSQL.123"))
  other.listen(16)
  other.settimeout(1.5)
  try:
    g = pgguard(upstream="%s:1234" % sub, expect_fail=True)
    assert g.returncode == 2, g.log
    assert "too long" in g.log
    with pytest.raises(socket.timeout):
      other.accept()
  finally:
    other.close()


def test_a_unix_upstream_path_at_the_limit_works(pg, appdb, pgguard):
  # 107 bytes: the longest path a socket can have. A symlink to PostgreSQL's
  # socket at that length must be reached.
  sub = path_of_length(107, pg.port)
  os.symlink(os.path.join(pg.socket_dir, ".s.PGSQL.%d" % pg.port),
             os.path.join(sub, ".s.PGSQL.%d" % pg.port))
  g = pgguard(upstream="%s:%d" % (sub, pg.port))
  r = g.psql("-tA", sql="select 5", **appdb)
  assert r.returncode == 0, r.stderr + g.log[-2000:]
  assert r.stdout.strip() == "5"


def test_a_unix_listen_path_at_the_limit_works(pg, appdb, pgguard):
  port = free_port()
  sub = path_of_length(107, port)
  g = pgguard(listen="%s:%d" % (sub, port))
  # libpq cannot name a 107-byte socket path (it keeps one byte less); connect by hand.
  with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.connect(os.path.join(sub, ".s.PGSQL.%d" % port))
    s.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
    assert s.recv(1) == b"N"
  g.stop()
  assert not os.path.exists(os.path.join(sub, ".s.PGSQL.%d" % port))


def run_as_nobody():
  return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run pgguard as another user")
def test_a_live_socket_pgguard_may_not_connect_to_is_not_taken_over(pgguard):
  # A shared directory (an emptyDir is 0777, without the sticky bit) where another
  # user's server listens on a socket only it may connect to.
  d = short_dir()
  os.chmod(d, 0o777)
  port = free_port()
  path = os.path.join(d, ".s.PGSQL.%d" % port)
  theirs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  theirs.bind(path)
  os.chmod(path, 0o700)
  theirs.listen(16)
  try:
    g = pgguard(listen="%s:%d" % (d, port), prefix=run_as_nobody(), expect_fail=True)
    assert g.returncode != 0, g.log
    assert os.stat(path).st_uid == 0, "pgguard replaced another user's live socket"
    # Theirs still answers.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
      c.connect(path)
  finally:
    theirs.close()


def test_a_file_in_the_way_of_the_socket_is_named_and_left_alone(pgguard):
  d = short_dir()
  port = free_port()
  path = os.path.join(d, ".s.PGSQL.%d" % port)
  with open(path, "w") as f:
    f.write("not a socket\n")
  g = pgguard(listen="%s:%d" % (d, port), expect_fail=True)
  assert g.returncode != 0
  assert path in g.log and "not a socket" in g.log, g.log
  assert open(path).read() == "not a socket\n"
  os.unlink(path)
  os.mkdir(path)
  g = pgguard(listen="%s:%d" % (d, port), expect_fail=True)
  assert g.returncode != 0
  assert "not a socket" in g.log, g.log
  assert os.path.isdir(path)


# ---- the address list changing under dials in progress ----------------------------

@needs_namespaces
def test_a_dial_walks_the_addresses_it_began_with_while_the_name_changes(pg, appdb, pgguard, tmp_path):
  # ::1 (nothing listens there) sorts before 127.0.0.1. The writer flips one
  # byte: "::1" (two addresses) or "#:1" (a comment: only 127.0.0.1). Every
  # answer the resolver gives contains the live address, so every client must
  # get in, however the list changes between one dial's attempts.
  hosts = tmp_path / "hosts"
  hosts.write_text("::1 pgdb.pgguard.test\n127.0.0.1 pgdb.pgguard.test\n")
  g = pgguard("--dns-ttl", "0", "--log-connections", "off", "--log-disconnections", "off",
              upstream="pgdb.pgguard.test:%d" % pg.port, prefix=in_private_hosts(hosts))
  stop = threading.Event()

  def flip():
    fd = os.open(str(hosts), os.O_WRONLY)
    try:
      while not stop.is_set():
        for b in (b"#", b":"):
          os.pwrite(fd, b, 0)
    finally:
      os.close(fd)

  failures = []

  def client():
    # PostgreSQL's first answer (an authentication request) shows the dial
    # succeeded; pgguard's FATAL 08006 shows it gave up.
    for _ in range(100):
      try:
        with socket.create_connection((g.host, g.port), timeout=10) as s:
          s.sendall(startup_packet())
          first = s.recv(1024)
        if first[:1] != b"R":
          failures.append(first)
      except OSError as e:
        failures.append(repr(e))

  writer = threading.Thread(target=flip)
  writer.start()
  try:
    clients = [threading.Thread(target=client) for _ in range(20)]
    for t in clients:
      t.start()
    for t in clients:
      t.join(120)
  finally:
    stop.set()
    writer.join(10)
  assert not failures, "%d of 2000 clients refused: %s" % (len(failures), failures[:3])
  assert re.search(r"event=upstream_connect_failed .*addr=\"?\[::1\]:%d" % pg.port, g.log)


# ---- signals while the resolver does not answer -----------------------------------

def in_private_resolver(hosts_file, resolv_file):
  """A command prefix running pgguard with its own /etc/hosts and /etc/resolv.conf."""
  return ["unshare", "-m", "sh", "-c",
          'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"',
          str(hosts_file), str(resolv_file)]


@pytest.fixture
def silent_nameserver():
  """A DNS server address that receives queries and never answers."""
  s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
  s.bind(("127.0.0.77", 53))
  yield "127.0.0.77"
  s.close()


@needs_namespaces
@pytest.mark.parametrize("sig", ["SIGQUIT", "SIGTERM"])
def test_a_signal_is_not_held_up_by_a_lookup_the_resolver_never_answers(pg, pgguard, tmp_path,
                                                                       silent_nameserver, sig):
  import signal
  hosts = tmp_path / "hosts"
  hosts.write_text("127.0.0.1 pgdb.pgguard.test\n")
  resolv = tmp_path / "resolv.conf"
  # glibc waits timeout seconds per attempt (and per query): a minute or more in all.
  resolv.write_text("nameserver %s\noptions timeout:30 attempts:2\n" % silent_nameserver)
  g = pgguard("--dns-ttl", "0", "--server-connect-timeout", "60",
              upstream="pgdb.pgguard.test:%d" % pg.port,
              prefix=in_private_resolver(hosts, resolv))
  # The name leaves /etc/hosts: the next lookup asks the silent nameserver.
  write_in_place(hosts, "# moved\n")
  c = socket.create_connection((g.host, g.port))
  c.sendall(startup_packet())
  time.sleep(0.5)   # the lookup is under way
  t0 = time.monotonic()
  code = g.stop(getattr(signal, sig), timeout=25)
  took = time.monotonic() - t0
  c.close()
  assert code == 0, g.log[-2000:]
  # SIGQUIT is immediate; SIGTERM waits at most --shutdown-timeout (2 s here).
  assert took < (1.5 if sig == "SIGQUIT" else 3.5), (took, g.log[-2000:])


# ---- cancel requests and TLS over the dialer's other paths --------------------------

def cancel_within_a_second(ep, appdb):
  import psycopg2.errors
  c = ep.connect(**appdb)
  try:
    timer = threading.Timer(0.5, c.cancel)
    t0 = time.monotonic()
    timer.start()
    with c.cursor() as cur:
      with pytest.raises(psycopg2.errors.QueryCanceled):
        cur.execute("SELECT pg_sleep(30)")
      assert time.monotonic() - t0 < 2
      cur.execute("SELECT 'alive'")
      assert cur.fetchone() == ("alive",)
    timer.join()
  finally:
    c.close()


def test_a_cancel_request_reaches_a_unix_socket_upstream(pg, appdb, pgguard):
  g = pgguard(upstream="%s:%d" % (pg.socket_dir, pg.port))
  cancel_within_a_second(g, appdb)
  d = short_dir()
  port = free_port()
  pgguard(listen="%s:%d" % (d, port), upstream="%s:%d" % (pg.socket_dir, pg.port))
  cancel_within_a_second(unix_endpoint(d, port, pg), appdb)


@needs_namespaces
def test_a_cancel_request_walks_the_addresses_like_a_session(pg, appdb, pgguard, tmp_path):
  hosts = tmp_path / "hosts"
  hosts.write_text("::1 pgdb.pgguard.test\n127.0.0.1 pgdb.pgguard.test\n")
  g = pgguard("--dns-ttl", "0", upstream="pgdb.pgguard.test:%d" % pg.port,
              prefix=in_private_hosts(hosts))
  cancel_within_a_second(g, appdb)


def test_a_tls_client_over_a_unix_socket_upstream_logs_in_with_libpq_defaults(pg, appdb, pgguard,
                                                                             tmp_path):
  from tls_fixtures import make_certs
  certs = make_certs(tmp_path)
  g = pgguard("--tls-cert", certs.crt("pgguard"), "--tls-key", certs.key("pgguard"),
              upstream="%s:%d" % (pg.socket_dir, pg.port))
  # channel_binding=prefer (libpq's default) on TLS sends the "y" flag; PostgreSQL
  # on its Unix socket (no TLS there) takes it.
  r = g.psql("-tA", sql="select ssl from pg_stat_ssl where pid = pg_backend_pid()",
             sslmode="require", **appdb)
  assert r.returncode == 0, r.stderr + g.log[-2000:]
  assert r.stdout.strip() == "f"
  r = g.psql("-tA", sql="select 1", sslmode="require", channel_binding="require", **appdb)
  assert r.returncode != 0
  assert "channel binding" in r.stderr


# ---- hang-ups and signals at every step of a dial ------------------------------------

@needs_namespaces
def test_clients_hanging_up_at_every_step_of_a_dial_leave_nothing_behind(pg, appdb, pgguard, tmp_path):
  # Looked up for each client (ttl 0), a refused address first: a client may
  # leave while the lookup runs, while ::1 is tried, between the two
  # addresses, while 127.0.0.1 is tried, or once PostgreSQL answered.
  hosts = tmp_path / "hosts"
  hosts.write_text("::1 pgdb.pgguard.test\n127.0.0.1 pgdb.pgguard.test\n")
  g = pgguard("--dns-ttl", "0", "--log-connections", "off", "--log-disconnections", "off",
              upstream="pgdb.pgguard.test:%d" % pg.port, prefix=in_private_hosts(hosts))
  import random
  rnd = random.Random(9)

  def client(delays):
    for delay in delays:
      try:
        s = socket.create_connection((g.host, g.port), timeout=10)
        s.sendall(startup_packet())
        if delay:
          time.sleep(delay)
        s.close()
      except OSError:
        pass

  threads = [threading.Thread(target=client, args=([rnd.choice([0, 0.0005, 0.001, 0.002, 0.005])
                                                     for _ in range(40)],)) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(120)
  deadline = time.monotonic() + 10
  while time.monotonic() < deadline:
    m = g.metrics()
    if m.get_value("pgguard_client_connections") == 0 and m.get_value("pgguard_server_connections") == 0:
      break
    time.sleep(0.1)
  m = g.metrics()
  assert m.get_value("pgguard_client_connections") == 0
  assert m.get_value("pgguard_server_connections") == 0
  assert g.connect(**appdb).close() is None   # still serving
  assert g.stop() == 0


@pytest.mark.parametrize("sig", ["SIGQUIT", "SIGTERM", "SIGINT"])
def test_a_signal_while_clients_wait_for_an_unanswering_server(pgguard, blackhole, sig):
  import signal
  g = pgguard("--server-connect-timeout", "60", "--dns-ttl", "0", upstream=blackhole)
  socks = []
  for _ in range(30):
    s = socket.create_connection((g.host, g.port))
    s.sendall(startup_packet())
    socks.append(s)
  time.sleep(0.3)
  t0 = time.monotonic()
  code = g.stop(getattr(signal, sig), timeout=10)
  took = time.monotonic() - t0
  for s in socks:
    s.close()
  assert code == 0, g.log[-2000:]
  assert took < (1.5 if sig == "SIGQUIT" else 3.5), took



def bind_ipv6(port):
  """A socket bound to [::1]:port. An earlier test's connections to that address may still be
  in TIME_WAIT: SO_REUSEADDR lets the bind through them (never through a live listener)."""
  sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  sock.bind(("::1", port))
  return sock


def ipv6_blackhole(port):
  """[::1]:port with a full accept queue: handshakes there get no answer. Returns the
  listener and the connections that fill it (close them all)."""
  hole = bind_ipv6(port)
  hole.listen(0)
  fill = []
  for _ in range(4):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
      s.connect(("::1", port))
    except BlockingIOError:
      pass
    fill.append(s)
  time.sleep(0.2)
  return hole, fill

@needs_namespaces
def test_an_unanswering_first_address_does_not_keep_clients_from_the_second(pg, appdb, pgguard,
                                                                            tmp_path):
  # A failover leaves the old primary's address first in the answer, and the old
  # primary is gone without a trace (no RST: its handshakes go unanswered). As
  # libpq's connect_timeout, --server-connect-timeout bounds each address: the
  # next one is tried when it runs out, and the client gets in.
  hole, fill = ipv6_blackhole(pg.port)
  hosts = tmp_path / "hosts"
  hosts.write_text("::1 pgdb.pgguard.test\n127.0.0.1 pgdb.pgguard.test\n")
  try:
    g = pgguard("--server-connect-timeout", "1", upstream="pgdb.pgguard.test:%d" % pg.port,
                prefix=in_private_hosts(hosts))
    t0 = time.monotonic()
    r = g.psql("-tA", sql="select 6", **appdb)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr + g.log[-2000:]
    assert r.stdout.strip() == "6"
    assert took < 4, took
    assert re.search(r"event=upstream_connect_failed .*addr=\"?\[::1\]:%d\"? reason=\"?connection timed out" % pg.port,
                     g.log), g.log[-2000:]
    # The readiness probe is not stuck on the unanswering address either.
    deadline = time.monotonic() + 15
    while g.http_get("/readyz")[0] != 200 and time.monotonic() < deadline:
      time.sleep(0.2)
    time.sleep(12)   # longer than readiness' 10 s window: only the probe keeps it
    assert g.http_get("/readyz")[0] == 200, g.log[-2000:]
  finally:
    for s in fill:
      s.close()
    hole.close()


# ---- the descriptor limit on a Unix socket -----------------------------------------

def test_unix_clients_past_the_fd_limit_are_answered_and_sessions_survive(pg, appdb, pgguard):
  d = short_dir()
  port = free_port()
  path = os.path.join(d, ".s.PGSQL.%d" % port)
  g = pgguard("--max-client-conn", "0", listen="%s:%d" % (d, port),
              prefix=["prlimit", "--nofile=48:48"])
  ep = unix_endpoint(d, port, pg)
  keep = ep.connect(**appdb)
  socks = []

  def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s
  try:
    answers = flood(connect, socks)
    assert answers, "some clients must have been refused at the fd limit"
    for data in answers:
      assert data[:1] == b"E" and b"53300" in data
    with keep.cursor() as cur:
      cur.execute("select 7")
      assert cur.fetchone()[0] == 7
  finally:
    for s in socks:
      s.close()
  time.sleep(0.3)
  assert g.metrics().get_value("pgguard_clients_rejected_total", reason="fd_limit") >= len(answers)
  keep.close()
  r = ep.psql("-tA", sql="select 9", **appdb)
  assert r.stdout.strip() == "9", r.stderr


def test_stopping_removes_only_its_own_socket_file(pg, appdb, pgguard):
  # The file was removed under a running pgguard (a cleanup job, an operator)
  # and a second pgguard now listens at the same path: the first one's exit
  # must not take the second one's socket away.
  d = short_dir()
  port = free_port()
  path = os.path.join(d, ".s.PGSQL.%d" % port)
  first = pgguard(listen="%s:%d" % (d, port))
  os.unlink(path)
  second = pgguard(listen="%s:%d" % (d, port))
  assert first.stop() == 0
  assert os.path.exists(path), "the first pgguard removed the second one's socket"
  r = unix_endpoint(d, port, pg).psql("-tA", sql="select 4", **appdb)
  assert r.stdout.strip() == "4", r.stderr
  second.stop()
  assert not os.path.exists(path)


@needs_namespaces
def test_a_nameserver_that_stops_answering_does_not_refuse_clients(pg, appdb, pgguard, tmp_path,
                                                                   silent_nameserver):
  # The README's promise: a resolver outage does not refuse clients while the
  # database is fine. The common outage is silence, not an error: glibc waits
  # its timeout per query and attempt. A lookup that takes longer than half of
  # --server-connect-timeout lets the clients waiting for it use the last answer.
  hosts = tmp_path / "hosts"
  hosts.write_text("127.0.0.1 pgdb.pgguard.test\n")
  resolv = tmp_path / "resolv.conf"
  resolv.write_text("nameserver %s\noptions timeout:30 attempts:2\n" % silent_nameserver)
  g = pgguard("--dns-ttl", "1", "--server-connect-timeout", "4",
              upstream="pgdb.pgguard.test:%d" % pg.port,
              prefix=in_private_resolver(hosts, resolv))
  write_in_place(hosts, "# the name is in DNS only now\n")
  time.sleep(1.2)   # past the TTL: the next client asks the silent nameserver
  for i in range(3):
    t0 = time.monotonic()
    r = g.psql("-tA", sql="select %d" % i, **appdb)
    assert r.returncode == 0, r.stderr + g.log[-2000:]
    assert time.monotonic() - t0 < 4
  assert re.search(r"event=upstream_resolve_slow .*using=previous_addresses", g.log), g.log[-2000:]


@needs_namespaces
def test_sighup_changing_the_dns_ttl_applies_to_the_next_dial(pg, appdb, pgguard, tmp_path):
  import signal
  hosts = tmp_path / "hosts"
  hosts.write_text("127.0.0.1 pgdb.pgguard.test\n")
  conf = tmp_path / "pgguard.ini"
  conf.write_text("[pgguard]\ndns_ttl = 600\n")
  g = pgguard("-c", str(conf), upstream="pgdb.pgguard.test:%d" % pg.port,
              prefix=in_private_hosts(hosts))
  assert g.psql("-tA", sql="select 1", **appdb).returncode == 0
  write_in_place(hosts, "127.0.0.3 pgdb.pgguard.test\n")
  assert g.psql("-tA", sql="select 1", **appdb).returncode == 0   # the TTL holds the old answer
  conf.write_text("[pgguard]\ndns_ttl = 0\n")
  g.proc.send_signal(signal.SIGHUP)
  g.wait_log(r"event=reload_applied option=dns-ttl")
  r = g.psql("-tA", sql="select 1", **appdb)
  assert r.returncode != 0 and "127.0.0.3" in g.log
  write_in_place(hosts, "127.0.0.1 pgdb.pgguard.test\n")
  assert g.psql("-tA", sql="select 1", **appdb).returncode == 0
  conf.write_text("[pgguard]\ndns_ttl = nan\n")
  g.proc.send_signal(signal.SIGHUP)
  g.wait_log(r"event=reload_failed")
  assert g.psql("-tA", sql="select 1", **appdb).returncode == 0


def test_sighup_refuses_a_max_client_conn_the_fd_limit_cannot_hold(pg, appdb, pgguard, tmp_path):
  # At start such a value is refused; a reload must not slip it in.
  import signal
  conf = tmp_path / "pgguard.ini"
  conf.write_text("[pgguard]\nmax_client_conn = 50\n")
  g = pgguard("-c", str(conf), prefix=["prlimit", "--nofile=200:200"])
  conf.write_text("[pgguard]\nmax_client_conn = 1000\n")
  g.proc.send_signal(signal.SIGHUP)
  g.wait_log(r"event=reload_failed .*max-client-conn")
  assert "option=max-client-conn" not in g.log
  assert g.psql("-tA", sql="select 1", **appdb).returncode == 0
  conf.write_text("[pgguard]\nmax_client_conn = 60\n")
  g.proc.send_signal(signal.SIGHUP)
  g.wait_log(r"event=reload_applied option=max-client-conn")


@needs_namespaces
def test_a_cancel_request_goes_to_the_server_its_session_is_on(pg, appdb, pgguard, tmp_path):
  # libpq sends a cancel to the address its connection is on. Through pgguard
  # the session is on the address it was dialled to; a cancel dialled afresh
  # after the name changed (a failover, a round-robin pool) would reach
  # another server, which knows nothing of the key, and the query would run on.
  import psycopg2.errors
  other = bind_ipv6(pg.port)
  other.listen(16)
  got = []

  def other_server():
    while True:
      try:
        c, _ = other.accept()
      except OSError:
        return
      c.settimeout(2)
      try:
        got.append(c.recv(64))
      except OSError:
        pass
      c.close()

  threading.Thread(target=other_server, daemon=True).start()
  hosts = tmp_path / "hosts"
  hosts.write_text("127.0.0.1 pgdb.pgguard.test\n")
  try:
    g = pgguard("--dns-ttl", "0", upstream="pgdb.pgguard.test:%d" % pg.port,
                prefix=in_private_hosts(hosts))
    c = g.connect(**appdb)
    # The name now leads to another server first.
    write_in_place(hosts, "::1 pgdb.pgguard.test\n127.0.0.1 pgdb.pgguard.test\n")
    timer = threading.Timer(0.5, c.cancel)
    t0 = time.monotonic()
    timer.start()
    with c.cursor() as cur:
      with pytest.raises(psycopg2.errors.QueryCanceled):
        cur.execute("SELECT pg_sleep(5)")
    assert time.monotonic() - t0 < 2.5
    timer.join()
    c.close()
    assert not got, "the cancel went to another server: %r" % got
  finally:
    other.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run pgguard as another user")
def test_a_stale_socket_of_another_user_that_cannot_be_removed_is_named(pgguard):
  # /tmp-like: sticky, so nobody cannot remove root's stale socket file. The
  # message must say so, not "Address already in use".
  d = short_dir()
  os.chmod(d, 0o1777)
  port = free_port()
  path = os.path.join(d, ".s.PGSQL.%d" % port)
  s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  s.bind(path)
  s.close()
  os.chmod(path, 0o777)   # anyone may connect: refused, so plainly stale
  g = pgguard(listen="%s:%d" % (d, port), prefix=run_as_nobody(), expect_fail=True)
  assert g.returncode != 0
  assert "stale" in g.log and "Operation not permitted" in g.log, g.log


# ---- eager clients while PostgreSQL is reached -----------------------------------------

@pytest.mark.parametrize("via", ["direct", "pgguard"])
def test_a_large_query_sent_with_the_startup_packet_runs_whatever_the_segmentation(pg, pgguard, via):
  # PostgreSQL reads a query that came with the startup packet after the login,
  # however large. pgguard kept such bytes when they came in a later read, but
  # closed the client without a word when they came in the same read as the
  # startup packet and passed 10 kB.
  from pgwire import RawConn, query, startup_packet as wire_startup
  pg.create_role("wire_trust", None)
  ep = pg if via == "direct" else pgguard()
  big = "SELECT length('%s') AS n" % ("x" * 20000)
  with RawConn(ep.host, ep.port) as raw:
    raw.send(wire_startup({"user": "wire_trust", "database": "postgres"}) + query(big))
    msgs = raw.read_until({b"Z"})
    assert msgs[0].type == b"R"
    msgs = raw.read_until({b"Z"})
    assert [m.type for m in msgs] == [b"T", b"D", b"C", b"Z"]
    assert msgs[1].body.endswith(b"20000")


# ---- all of it at once ---------------------------------------------------------------

@needs_namespaces
def test_dials_hang_ups_cancels_reloads_and_a_changing_name_at_once(pg, appdb, pgguard, tmp_path):
  # Under ASan this is a use-after-free and leak hunt: clients leave at random
  # steps, cancel requests name live and unknown keys, the name flips between
  # one and two addresses, SIGHUP changes the TTL, and SIGTERM ends it all.
  import random
  import signal
  from pgwire import CANCEL_REQUEST_CODE
  pg.create_role("wire_trust", None)
  hosts = tmp_path / "hosts"
  hosts.write_text("::1 pgdb.pgguard.test\n127.0.0.1 pgdb.pgguard.test\n")
  conf = tmp_path / "pgguard.ini"
  conf.write_text("[pgguard]\ndns_ttl = 0\n")
  g = pgguard("-c", str(conf), "--server-connect-timeout", "2", "--log-connections", "off",
              "--log-disconnections", "off", upstream="pgdb.pgguard.test:%d" % pg.port,
              prefix=in_private_hosts(hosts))
  stop = threading.Event()
  errors = []

  def flip():
    fd = os.open(str(hosts), os.O_WRONLY)
    try:
      while not stop.is_set():
        os.pwrite(fd, random.choice([b"#", b":"]), 0)
        time.sleep(0.002)
    finally:
      os.close(fd)

  def reload():
    while not stop.is_set():
      conf.write_text("[pgguard]\ndns_ttl = %s\n" % random.choice(["0", "0.01", "5"]))
      g.proc.send_signal(signal.SIGHUP)
      time.sleep(0.05)

  def client(seed):
    rnd = random.Random(seed)
    for _ in range(120):
      try:
        s = socket.create_connection((g.host, g.port), timeout=10)
        kind = rnd.randrange(4)
        if kind == 0:     # a cancel with an unknown key
          s.sendall(struct.pack("!iiii", 16, CANCEL_REQUEST_CODE, rnd.randrange(1 << 30), 7))
        elif kind == 1:   # an eager client that leaves at once
          s.sendall(startup_packet(b"user\0wire_trust\0database\0postgres\0\0")
                    + b"Q\0\0\0\rselect 1\0")
        elif kind == 2:   # a startup, then gone after a moment
          s.sendall(startup_packet())
          time.sleep(rnd.choice([0, 0.001, 0.003, 0.01]))
        else:             # a whole session
          s.sendall(startup_packet(b"user\0wire_trust\0database\0postgres\0\0"))
          s.settimeout(5)
          data = b""
          while b"Z\0\0\0\x05" not in data:
            chunk = s.recv(4096)
            if not chunk:
              break
            data += chunk
          if b"Z\0\0\0\x05" in data:
            s.sendall(b"X\0\0\0\x04")
        s.close()
      except OSError as e:
        errors.append(repr(e))

  helpers = [threading.Thread(target=flip), threading.Thread(target=reload)]
  clients = [threading.Thread(target=client, args=(i,)) for i in range(8)]
  for t in helpers + clients:
    t.start()
  for t in clients:
    t.join(120)
  stop.set()
  for t in helpers:
    t.join(10)
  assert not errors, errors[:3]
  deadline = time.monotonic() + 10
  while g.metrics().get_value("pgguard_client_connections") != 0 and time.monotonic() < deadline:
    time.sleep(0.1)
  assert g.metrics().get_value("pgguard_client_connections") == 0
  assert g.stop() == 0


def test_a_reloaded_connect_timeout_leaves_the_dials_under_way_as_they_began(pgguard, blackhole,
                                                                            tmp_path):
  # Reload settings apply to new connections: a dial under way keeps its own
  # period, and its FATAL says that period, not the new one.
  import signal
  conf = tmp_path / "pgguard.ini"
  conf.write_text("[pgguard]\nserver_connect_timeout = 2\n")
  g = pgguard("-c", str(conf), upstream=blackhole)
  s = socket.create_connection((g.host, g.port))
  s.sendall(startup_packet())
  time.sleep(0.3)
  conf.write_text("[pgguard]\nserver_connect_timeout = 0\n")
  g.proc.send_signal(signal.SIGHUP)
  g.wait_log(r"event=reload_applied option=server-connect-timeout")
  s.settimeout(5)
  t0 = time.monotonic()
  data = s.recv(1024)
  assert b"08006" in data and b"timeout after 2 s" in data, data
  assert time.monotonic() - t0 < 3
  s.close()


@needs_namespaces
def test_readiness_does_not_flap_while_an_unanswering_first_address_costs_clients_time(
    pg, appdb, pgguard, tmp_path):
  # With --server-connect-timeout past readiness' 10 s window, a probe that
  # waited the whole period on the dead first address would let /readyz lapse
  # every cycle, though every client is served (late). The probe moves on
  # after its own 2 s; only the last address gets the whole period.
  hole, fill = ipv6_blackhole(pg.port)
  hosts = tmp_path / "hosts"
  hosts.write_text("::1 pgdb.pgguard.test\n127.0.0.1 pgdb.pgguard.test\n")
  try:
    g = pgguard("--server-connect-timeout", "12", upstream="pgdb.pgguard.test:%d" % pg.port,
                prefix=in_private_hosts(hosts))
    deadline = time.monotonic() + 10
    while g.http_get("/readyz")[0] != 200:
      assert time.monotonic() < deadline, g.log[-2000:]
      time.sleep(0.2)
    end = time.monotonic() + 24
    while time.monotonic() < end:
      assert g.http_get("/readyz")[0] == 200, g.log[-2000:]
      time.sleep(0.5)
  finally:
    for s in fill:
      s.close()
    hole.close()
