"""Reaching and being reached: Unix-domain sockets on both legs, the upstream's
name re-resolved after --dns-ttl (an /etc/hosts bind mount in a private mount
namespace plays the DNS change), every address tried, and clients refused at
the file-descriptor limit answered, counted and logged."""
import os
import re
import socket
import stat
import struct
import subprocess
import tempfile
import time

import psycopg2
import pytest

from conftest import Endpoint, PSQL, client_env, free_port, run


def short_dir():
  # Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer.
  d = tempfile.mkdtemp(prefix="pgg-sock-", dir="/tmp")
  os.chmod(d, 0o755)
  return d


def unix_endpoint(sockdir, port, pg):
  return Endpoint(sockdir, port, dict(pg.defaults))


def test_unix_socket_on_both_legs(pg, appdb, pgguard):
  d = short_dir()
  port = free_port()
  g = pgguard("--log-connections", "on", listen="%s:%d" % (d, port),
              upstream="%s:%d" % (pg.socket_dir, pg.port))
  path = os.path.join(d, ".s.PGSQL.%d" % port)
  assert stat.S_ISSOCK(os.stat(path).st_mode)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o777
  ep = unix_endpoint(d, port, pg)
  r = ep.psql("-tA", sql="select inet_server_addr() is null, current_database()", **appdb)
  assert r.returncode == 0, r.stderr
  # The server leg is a Unix socket too: PostgreSQL sees no client address.
  assert r.stdout.strip() == "t|%s" % appdb["dbname"]
  with psycopg2.connect(ep.dsn(**appdb)) as conn, conn.cursor() as cur:
    cur.execute("select 41 + 1")
    assert cur.fetchone()[0] == 42
  g.wait_log(r"event=connection_authorized .*addr=\[local\]")
  g.stop()
  assert not os.path.exists(path), "the socket file is removed at exit"


def test_a_stale_socket_file_is_replaced_and_a_live_one_refused(pg, pgguard):
  d = short_dir()
  port = free_port()
  path = os.path.join(d, ".s.PGSQL.%d" % port)
  s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  s.bind(path)
  s.close()   # left behind, as by a process that was killed
  listen = "%s:%d" % (d, port)
  g = pgguard(listen=listen)
  assert unix_endpoint(d, port, pg).psql("-tA", sql="select 1").stdout.strip() == "1"
  second = pgguard(listen=listen, expect_fail=True)
  assert second.returncode != 0
  assert "another process is listening there" in second.log
  assert g.proc.poll() is None
  assert unix_endpoint(d, port, pg).psql("-tA", sql="select 2").stdout.strip() == "2"


def test_a_socket_path_too_long_is_a_clear_error(pgguard):
  d = "/tmp/" + "d" * 110
  bad = pgguard(listen="%s:5432" % d, expect_fail=True)
  assert bad.returncode == 1
  assert "too long" in bad.log


def test_an_unreachable_unix_upstream_gives_08006_naming_the_socket(pg, pgguard):
  d = short_dir()
  g = pgguard(upstream="%s:%d" % (d, 5999))
  r = g.psql("-tA", sql="select 1")
  assert r.returncode != 0
  assert "could not connect to the upstream server %s/.s.PGSQL.5999" % d in r.stderr


# ---- DNS -------------------------------------------------------------------------

def in_private_hosts(hosts_file):
  """A command prefix running pgguard with hosts_file bind-mounted on /etc/hosts."""
  return ["unshare", "-m", "sh", "-c",
          'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts_file)]


def namespaces_work():
  try:
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10)
    return r.returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


needs_namespaces = pytest.mark.skipif(not namespaces_work(),
                                      reason="needs root and unshare -m (mount namespaces)")


def write_in_place(path, text):
  # The bind mount follows the inode: rewrite the file, never replace it.
  with open(path, "r+") as f:
    f.seek(0)
    f.write(text)
    f.truncate()


@needs_namespaces
def test_a_moved_name_is_followed_after_the_dns_ttl(pg, appdb, pgguard, tmp_path):
  hosts = tmp_path / "hosts"
  # Nothing listens on 127.0.0.3: the "old primary".
  hosts.write_text("127.0.0.3 pgdb.pgguard.test\n")
  g = pgguard("--dns-ttl", "1", upstream="pgdb.pgguard.test:%d" % pg.port,
              prefix=in_private_hosts(hosts))
  r = g.psql("-tA", sql="select 1", **appdb)
  assert r.returncode != 0
  assert "could not connect to the upstream server pgdb.pgguard.test:%d" % pg.port in r.stderr
  assert re.search(r"event=upstream_connect_failed .*addr=\"?127\.0\.0\.3:%d" % pg.port, g.log)
  # The failover moves the name.
  write_in_place(hosts, "127.0.0.1 pgdb.pgguard.test\n")
  deadline = time.monotonic() + 10
  while True:
    r = g.psql("-tA", sql="select 1", **appdb)
    if r.returncode == 0 or time.monotonic() > deadline:
      break
    time.sleep(0.3)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == "1"
  assert re.search(r"event=upstream_resolved host=\"?pgdb\.pgguard\.test\"? addrs=\"?127\.0\.0\.1:%d"
                   % pg.port, g.log), g.log


@needs_namespaces
def test_within_the_ttl_the_last_answer_is_used(pg, appdb, pgguard, tmp_path):
  hosts = tmp_path / "hosts"
  hosts.write_text("127.0.0.1 pgdb.pgguard.test\n")
  g = pgguard("--dns-ttl", "600", upstream="pgdb.pgguard.test:%d" % pg.port,
              prefix=in_private_hosts(hosts))
  assert g.psql("-tA", sql="select 1", **appdb).returncode == 0
  write_in_place(hosts, "127.0.0.3 pgdb.pgguard.test\n")
  r = g.psql("-tA", sql="select 2", **appdb)
  assert r.returncode == 0, r.stderr
  assert "127.0.0.3" not in g.log


@needs_namespaces
def test_every_address_of_the_name_is_tried(pg, appdb, pgguard, tmp_path):
  hosts = tmp_path / "hosts"
  hosts.write_text("127.0.0.3 pgdb.pgguard.test\n127.0.0.1 pgdb.pgguard.test\n")
  g = pgguard("--dns-ttl", "0", upstream="pgdb.pgguard.test:%d" % pg.port,
              prefix=in_private_hosts(hosts))
  for i in range(3):
    r = g.psql("-tA", sql="select %d" % i, **appdb)
    assert r.returncode == 0, r.stderr + g.log[-2000:]
  # Both addresses were in the answer: the dead one was tried and logged, or
  # the resolver put the live one first; either way no client saw an error.
  out = subprocess.run(in_private_hosts(hosts) + ["getent", "ahostsv4", "pgdb.pgguard.test"],
                       capture_output=True, text=True, timeout=10).stdout
  if out.split()[0] == "127.0.0.3":
    assert re.search(r"event=upstream_connect_failed .*addr=\"?127\.0\.0\.3:%d" % pg.port, g.log)


# ---- the file-descriptor limit -------------------------------------------------------

def flood(connect, socks, n=60):
  """Opens n silent clients (kept in socks, for the caller to close); returns what those
  pgguard refused at once sent before closing."""
  for _ in range(n):
    socks.append(connect())
  time.sleep(0.5)
  answers = []
  for s in socks:
    s.settimeout(0.2)
    try:
      data = s.recv(1024)
    except socket.timeout:
      continue
    if data:
      answers.append(data)
  return answers


def test_clients_past_the_fd_limit_are_answered_counted_and_logged(pg, appdb, pgguard):
  g = pgguard("--max-client-conn", "0", prefix=["prlimit", "--nofile=48:48"])
  # A session made before the limit is reached keeps working throughout.
  keep = g.connect(**appdb)
  socks = []
  try:
    answers = flood(lambda: socket.create_connection(("127.0.0.1", g.port), timeout=5), socks)
    assert answers, "some clients must have been refused at the fd limit"
    for data in answers:
      assert data[:1] == b"E" and b"53300" in data and b"too many clients" in data
    with keep.cursor() as cur:
      cur.execute("select 7")
      assert cur.fetchone()[0] == 7
  finally:
    for s in socks:
      s.close()
  time.sleep(0.3)
  rejected = g.metrics().get_value("pgguard_clients_rejected_total", reason="fd_limit")
  assert rejected is not None and rejected >= len(answers)
  assert re.search(r"event=client_rejected reason=fd_limit count=\d+", g.log)
  with keep.cursor() as cur:
    cur.execute("select 8")
    assert cur.fetchone()[0] == 8
  keep.close()
  # Once descriptors are free again, new clients are served.
  assert g.psql("-tA", sql="select 9", **appdb).stdout.strip() == "9"


def test_no_tls_on_a_unix_socket_even_with_client_tls_require(pg, appdb, pgguard, tmp_path):
  from tls_fixtures import make_certs
  certs = make_certs(tmp_path)
  d = short_dir()
  port = free_port()
  pgguard("--tls-cert", certs.crt("pgguard"), "--tls-key", certs.key("pgguard"),
          "--client-tls", "require", listen="%s:%d" % (d, port))
  # PostgreSQL answers N to an SSLRequest on its Unix socket; so does pgguard.
  with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.connect(os.path.join(d, ".s.PGSQL.%d" % port))
    s.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
    assert s.recv(1) == b"N"
  r = unix_endpoint(d, port, pg).psql("-tA", sql="select 3", **appdb)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == "3"


def test_a_client_leaving_while_its_server_connection_is_dialled_frees_everything(pgguard, appdb,
                                                                                   blackhole):
  g = pgguard("--server-connect-timeout", "30", upstream=blackhole)
  params = b"user\0app\0database\0appdb\0\0"
  for _ in range(20):
    c = socket.create_connection(("127.0.0.1", g.port))
    c.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    c.close()   # gone while pgguard waits for the unanswering server
  deadline = time.monotonic() + 5
  while g.metrics().get_value("pgguard_client_connections") != 0 and time.monotonic() < deadline:
    time.sleep(0.1)
  assert g.metrics().get_value("pgguard_client_connections") == 0
  assert g.stop() == 0


def test_check_config_refuses_a_socket_directory_it_cannot_use(tmp_path):
  from conftest import pgguard_binary
  ok = subprocess.run([pgguard_binary(), "--check-config", "--listen", "%s:6432" % tmp_path],
                      capture_output=True, text=True, timeout=30, env=client_env())
  assert ok.returncode == 0, ok.stderr
  missing = subprocess.run([pgguard_binary(), "--check-config", "--listen",
                            "%s/nope:6432" % tmp_path], capture_output=True, text=True,
                           timeout=30, env=client_env())
  assert missing.returncode == 2 and "cannot create the socket in" in missing.stderr
  long = subprocess.run([pgguard_binary(), "--check-config", "--listen", "/tmp/%s:6432" % ("d" * 110)],
                        capture_output=True, text=True, timeout=30, env=client_env())
  assert long.returncode == 2 and "too long" in long.stderr


def test_readiness_probes_a_unix_socket_upstream(pg, pgguard):
  g = pgguard(upstream="%s:%d" % (pg.socket_dir, pg.port))
  deadline = time.monotonic() + 10
  while g.http_get("/readyz")[0] != 200:
    assert time.monotonic() < deadline, g.http_get("/readyz")
    time.sleep(0.1)
  assert g.metrics().get_value("pgguard_upstream_up") == 1
  dead = pgguard(upstream="%s:%d" % (short_dir(), 5999))
  time.sleep(2.5)
  code, body = dead.http_get("/readyz")
  assert code == 503, body
  assert dead.metrics().get_value("pgguard_upstream_up") == 0
