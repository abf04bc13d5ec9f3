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
from test_reach import in_private_hosts, needs_namespaces, short_dir, write_in_place, unix_endpoint

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
  assert path in g.log
  assert open(path).read() == "not a socket\n"
  os.unlink(path)
  os.mkdir(path)
  g = pgguard(listen="%s:%d" % (d, port), expect_fail=True)
  assert g.returncode != 0
  assert os.path.isdir(path)
