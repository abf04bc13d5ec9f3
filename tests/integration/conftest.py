# Fixtures for the integration tests: a throwaway PostgreSQL 15 cluster per session (`pg`),
# pgguard processes in front of it (`pgguard`), and `target`, which runs a test direct and through pgguard.
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

HERE = Path(__file__).resolve().parent
SOURCE = Path(os.environ.get("PGGUARD_SOURCE") or HERE.parents[1]).resolve()
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
PSQL = str(PGBIN / "psql")
PGBENCH = str(PGBIN / "pgbench")
NODE_DIR = SOURCE / "tests" / "node"

# Roles whose pg_hba lines the authentication tests rely on; each uses one method.
AUTH_HBA = [
  "host all auth_trust 127.0.0.1/32 trust",
  "host all auth_password 127.0.0.1/32 password",
  "host all auth_md5 127.0.0.1/32 md5",
  "host all auth_scram 127.0.0.1/32 scram-sha-256",
  "host all auth_reject 127.0.0.1/32 reject",
  "host all wire_trust 127.0.0.1/32 trust",
]

# What marks a sanitizer report in pgguard's stderr; any of these fails the test.
SANITIZER_PATTERNS = re.compile(
  r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:"
)

sys.path.insert(0, str(HERE))


_handed_out = set()


def free_port():
  """A loopback port nobody listens on right now, and not one this run handed
  out already (the kernel may offer the same free port twice in a row, before
  the first taker binds it)."""
  for _ in range(100):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    if port not in _handed_out:
      _handed_out.add(port)
      return port
  return port


def wait_port(host, port, timeout, proc=None):
  """True once host:port accepts a TCP connection; False on timeout or if proc exits."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc is not None and proc.poll() is not None:
      return False
    try:
      with socket.create_connection((host, port), timeout=0.5):
        return True
    except OSError:
      time.sleep(0.02)
  return False


def wait_unix(path, timeout, proc=None):
  """True once the Unix socket at path accepts; False on timeout or if proc exits."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if proc is not None and proc.poll() is not None:
      return False
    try:
      with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
      time.sleep(0.05)
  return False


def as_postgres(cmd):
  """PostgreSQL's server tools refuse to run as root; run them as the postgres user then."""
  if os.geteuid() == 0:
    return ["runuser", "-u", "postgres", "--"] + cmd
  return cmd


def client_env(**extra):
  """Environment for client programs: none of the caller's PG* settings or sanitizer options."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("PG", "ASAN_", "UBSAN_", "LSAN_")) and k != "DATABASE_URL"}
  env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "PGCONNECT_TIMEOUT": "10"})
  env.update({k: str(v) for k, v in extra.items()})
  return env


def run(cmd, timeout=60, check=False, **kw):
  """subprocess.run with a bound on time and text output; never hangs a test."""
  kw.setdefault("env", client_env())
  kw.setdefault("stdout", subprocess.PIPE)
  kw.setdefault("stderr", subprocess.PIPE)
  r = subprocess.run(cmd, timeout=timeout, **kw)
  if check and r.returncode != 0:
    raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s"
                         % (cmd, r.returncode, _txt(r.stdout)[-4000:], _txt(r.stderr)[-4000:]))
  return r


def _txt(b):
  return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")


def _dsn_value(v):
  v = str(v)
  if v and re.fullmatch(r"[A-Za-z0-9_.\-/:@]+", v):
    return v
  return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Endpoint:
  """Something a client can connect to: PostgreSQL itself or a pgguard in front of it.
  Connection defaults are the cluster superuser on database postgres."""

  name = "endpoint"

  def __init__(self, host, port, defaults):
    self.host = host
    self.port = port
    self.defaults = defaults

  def params(self, **kw):
    p = dict(host=self.host, port=self.port, connect_timeout=10)
    p.update(self.defaults)
    p.update(kw)
    return {k: v for k, v in p.items() if v is not None}

  def dsn(self, **kw):
    return " ".join("%s=%s" % (k, _dsn_value(v)) for k, v in self.params(**kw).items())

  def url(self, **kw):
    p = self.params(**kw)
    user = urllib.parse.quote(p.pop("user"), safe="")
    pw = p.pop("password", None)
    auth = user + (":" + urllib.parse.quote(str(pw), safe="") if pw is not None else "")
    netloc = "%s@%s:%s" % (auth, p.pop("host"), p.pop("port"))
    db = urllib.parse.quote(p.pop("dbname", "postgres"), safe="")
    q = urllib.parse.urlencode(p)
    return "postgresql://%s/%s%s" % (netloc, db, ("?" + q) if q else "")

  def connect(self, autocommit=True, **kw):
    conn = psycopg2.connect(self.dsn(**kw))
    conn.autocommit = autocommit
    return conn

  def psql(self, *args, sql=None, timeout=60, input=None, **kw):
    """Runs psql (no psqlrc) against this endpoint; returns CompletedProcess with text output."""
    cmd = [PSQL, "-X", "-d", self.dsn(**kw)] + list(args)
    if sql is not None:
      cmd += ["-c", sql]
    r = run(cmd, timeout=timeout, input=input.encode() if isinstance(input, str) else input)
    r.stdout = _txt(r.stdout)
    r.stderr = _txt(r.stderr)
    return r


class Postgres(Endpoint):
  name = "direct"

  def __init__(self, root):
    self.root = Path(root)
    self.datadir = self.root / "data"
    self.logfile = self.root / "postgres.log"
    self.superuser = "postgres"
    self.password = secrets.token_hex(12)
    super().__init__("127.0.0.1", free_port(),
                     {"user": self.superuser, "password": self.password, "dbname": "postgres"})
    self.socket_dir = str(self.root)
    self.extra_hba = []

  # --- lifecycle -----------------------------------------------------------

  def init(self):
    pwfile = self.root / "pwfile"
    pwfile.write_text(self.password + "\n")
    if os.geteuid() == 0:
      shutil.chown(pwfile, "postgres")
    r = run(as_postgres([str(PGBIN / "initdb"), "-D", str(self.datadir), "-U", self.superuser,
                         "-A", "scram-sha-256", "--pwfile", str(pwfile), "-E", "UTF8",
                         "--locale=C", "--no-sync", "--no-instructions"]),
            timeout=120, env=client_env(), cwd=str(self.root))
    if r.returncode != 0:
      raise RuntimeError("initdb failed: " + _txt(r.stderr) + _txt(r.stdout))
    pwfile.unlink()
    with open(self.datadir / "postgresql.conf", "a") as f:
      f.write("\n# pgguard integration tests\n"
              "listen_addresses = '127.0.0.1'\n"
              "port = %d\n"
              "unix_socket_directories = '%s'\n"
              "max_connections = 120\n"
              "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
              "shared_buffers = '128MB'\nmax_wal_size = '2GB'\n"
              # A backend busy in a query notices a vanished client only when it checks;
              # the hang-up tests need that to happen quickly.
              "client_connection_check_interval = '200ms'\n"
              "lc_messages = 'C'\n"
              "log_min_messages = warning\n" % (self.port, self.socket_dir))
    self.write_hba()

  def write_hba(self):
    lines = ["# written by tests/integration/conftest.py",
             "local all all scram-sha-256"] + AUTH_HBA + self.extra_hba + [
             "host all all 127.0.0.1/32 scram-sha-256"]
    path = self.datadir / "pg_hba.conf"
    path.write_text("\n".join(lines) + "\n")
    if os.geteuid() == 0:
      shutil.chown(path, "postgres")

  def start(self):
    r = run(as_postgres([str(PGBIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                         "-w", "-t", "60", "start"]), timeout=90, env=client_env())
    if r.returncode != 0:
      log = self.logfile.read_text() if self.logfile.exists() else ""
      raise RuntimeError("pg_ctl start failed: %s\n%s" % (_txt(r.stderr), log[-4000:]))

  def stop(self):
    run(as_postgres([str(PGBIN / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                     "-w", "-t", "30", "stop"]), timeout=60, env=client_env())

  # --- helpers -------------------------------------------------------------

  def sql(self, query, params=None, db="postgres", user=None, password=None):
    """Runs one statement as the superuser (or user) in autocommit; returns rows or None."""
    kw = {"dbname": db}
    if user is not None:
      kw.update(user=user, password=password)
    conn = self.connect(**kw)
    try:
      with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description is not None else None
    finally:
      conn.close()

  def create_role(self, name, password=None, login=True, superuser=False,
                  password_encryption=None, exists_ok=True):
    """Creates (or re-creates the password of) a role. password_encryption='md5' stores an md5 hash."""
    conn = self.connect()
    try:
      with conn.cursor() as cur:
        if password_encryption:
          cur.execute("SET password_encryption = %s", (password_encryption,))
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        if verb == "ALTER" and not exists_ok:
          raise RuntimeError("role %s exists" % name)
        opts = ["LOGIN" if login else "NOLOGIN", "SUPERUSER" if superuser else "NOSUPERUSER"]
        ident = psycopg2.extensions.quote_ident(name, cur)
        if password is not None:
          cur.execute("%s ROLE %s %s PASSWORD %%s" % (verb, ident, " ".join(opts)), (password,))
        else:
          cur.execute("%s ROLE %s %s PASSWORD NULL" % (verb, ident, " ".join(opts)))
    finally:
      conn.close()

  def create_db(self, name, owner=None):
    """Drops (forcing out sessions) and creates a database."""
    conn = self.connect()
    try:
      with conn.cursor() as cur:
        ident = psycopg2.extensions.quote_ident(name, cur)
        cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % ident)
        if owner:
          cur.execute("CREATE DATABASE %s OWNER %s"
                      % (ident, psycopg2.extensions.quote_ident(owner, cur)))
        else:
          cur.execute("CREATE DATABASE %s" % ident)
    finally:
      conn.close()

  def hba_reload(self, extra_lines):
    """Adds pg_hba lines (before the catch-all line) and reloads the configuration."""
    self.extra_hba = list(extra_lines)
    self.write_hba()
    self.sql("SELECT pg_reload_conf()")
    errs = self.sql("SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL")
    if errs:
      raise RuntimeError("pg_hba errors: %r" % errs)

  def backends(self, application_name):
    return self.sql("SELECT pid, state, wait_event, query FROM pg_stat_activity "
                    "WHERE application_name = %s", (application_name,))

  def wait_backends(self, application_name, count, timeout=10.0, state=None):
    """Waits until exactly count backends carry application_name (and state, if given)."""
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
      rows = self.backends(application_name)
      if state is not None:
        rows = [r for r in rows if r[1] == state]
      if len(rows) == count:
        return rows
      time.sleep(0.05)
    raise AssertionError("expected %d backends for %r, have %r" % (count, application_name, rows))


OWNER_FILE = "pytest-owner.pid"


def reap_stale_clusters():
  """Stops clusters left by an earlier run that was killed before its teardown (e.g. by a
  timeout), so they do not pile up; only directories whose owning pytest process is gone."""
  for d in Path("/tmp").glob("pgg-it-*"):
    try:
      owner = int((d / OWNER_FILE).read_text())
    except (OSError, ValueError):
      continue
    if owner == os.getpid() or Path("/proc/%d" % owner).exists():
      continue
    if (d / "data" / "postmaster.pid").exists():
      run(as_postgres([str(PGBIN / "pg_ctl"), "-D", str(d / "data"), "-m", "immediate",
                       "-w", "-t", "30", "stop"]), timeout=60, env=client_env())
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
  reap_stale_clusters()
  root = tempfile.mkdtemp(prefix="pgg-it-", dir="/tmp")
  Path(root, OWNER_FILE).write_text(str(os.getpid()))
  os.chmod(root, 0o755)
  if os.geteuid() == 0:
    shutil.chown(root, "postgres", "postgres")
  server = Postgres(root)
  started = False
  try:
    server.init()
    server.start()
    started = True
    yield server
  finally:
    if started:
      server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def appdb(pg):
  """A database owned by an ordinary password role; connection keywords for it."""
  password = "app-" + secrets.token_hex(6)
  pg.create_role("app", password)
  pg.create_db("appdb", owner="app")
  return {"user": "app", "password": password, "dbname": "appdb"}


# --- pgguard -----------------------------------------------------------------

def pgguard_binary():
  explicit = os.environ.get("PGGUARD_BIN")
  path = Path(explicit or SOURCE / "build" / "pgguard")
  if not path.is_file() or not os.access(path, os.X_OK):
    if explicit:
      pytest.fail("PGGUARD_BIN=%s is not an executable file" % explicit)
    pytest.skip("no pgguard binary at %s (set PGGUARD_BIN)" % path)
  return str(path)


_asan_cache = {}


def is_sanitized(binary):
  """True if the binary was built with AddressSanitizer (its memory numbers differ)."""
  if binary not in _asan_cache:
    with open(binary, "rb") as f:
      _asan_cache[binary] = b"__asan_init" in f.read()
  return _asan_cache[binary]


def parse_metrics(text):
  """Prometheus text format -> {(name, frozenset(labels)): value}."""
  out = {}
  for line in text.splitlines():
    if not line or line.startswith("#"):
      continue
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
    if not m:
      raise AssertionError("unparseable metrics line: %r" % line)
    labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
    out[(m.group(1), labels)] = float(m.group(4))
  return out


class Metrics(dict):
  def get_value(self, name, **labels):
    """The sample with exactly these labels, or None."""
    return self.get((name, frozenset(labels.items())))

  def total(self, name):
    return sum(v for (n, _), v in self.items() if n == name)


class Pgguard(Endpoint):
  name = "pgguard"

  def __init__(self, proc, argv, port, admin_port, logpath, defaults):
    super().__init__("127.0.0.1", port, defaults)
    self.proc = proc
    self.argv = argv
    self.admin_port = admin_port
    self.logpath = logpath
    self.pid = proc.pid

  @property
  def log(self):
    return self.logpath.read_text(errors="replace") if self.logpath.exists() else ""

  @property
  def returncode(self):
    return self.proc.poll()

  def http_get(self, path, timeout=5):
    """(status, body text) of GET on the admin listener."""
    try:
      with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.admin_port, path),
                                  timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
      return e.code, e.read().decode("utf-8", "replace")

  def metrics(self):
    status, body = self.http_get("/metrics")
    assert status == 200, "GET /metrics -> %d: %s" % (status, body[:500])
    return Metrics(parse_metrics(body))

  def rss_kib(self):
    with open("/proc/%d/status" % self.pid) as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % self.pid)

  def wait_log(self, pattern, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      m = re.search(pattern, self.log)
      if m:
        return m
      time.sleep(0.05)
    raise AssertionError("log never matched %r; log:\n%s" % (pattern, self.log[-3000:]))

  def stop(self, sig=signal.SIGTERM, timeout=15.0):
    """Signals pgguard and returns its exit code (negative: killed by a signal).
    A process that outlives timeout is killed and the test fails."""
    if self.proc.poll() is None:
      self.proc.send_signal(sig)
      try:
        self.proc.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait(timeout=10)
        raise AssertionError("pgguard did not exit within %.1fs of signal %d; log:\n%s"
                             % (timeout, sig, self.log[-3000:]))
    return self.proc.returncode


@pytest.fixture
def pgguard(pg, tmp_path):
  """Factory: start(*args, env=None, upstream=None, expect_fail=False) -> Pgguard."""
  binary = pgguard_binary()
  started = []

  def start(*args, env=None, upstream=None, expect_fail=False, listen=None, admin_listen=None,
            timeout=10.0, prefix=None):
    port = free_port()
    admin_port = free_port()
    argv = [binary,
            "--listen", listen or "127.0.0.1:%d" % port,
            "--upstream", upstream or "%s:%d" % (pg.host, pg.port),
            "--admin-listen", admin_listen or "127.0.0.1:%d" % admin_port]
    if not any(a.startswith("--shutdown-timeout") for a in args):
      argv += ["--shutdown-timeout", "2"]
    argv += list(args)
    penv = client_env()
    # Sanitizer options go to pgguard only, never to the PostgreSQL clients.
    penv["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=1:quarantine_size_mb=16"
    penv["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    penv.update(env or {})
    logpath = tmp_path / ("pgguard-%d.log" % len(started))
    logf = open(logpath, "wb")
    proc = subprocess.Popen(list(prefix or []) + argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                            env=penv, cwd=str(tmp_path))
    logf.close()
    inst = Pgguard(proc, argv, port, admin_port, logpath, dict(pg.defaults))
    started.append(inst)
    if expect_fail:
      try:
        proc.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        raise AssertionError("pgguard was expected to fail but still runs after %.0fs: %s\nlog:\n%s"
                             % (timeout, argv, inst.log[-3000:]))
      return inst
    if listen and listen.startswith("/"):
      # A Unix-socket directory: wait for the socket file to accept.
      sockdir, sockport = listen.rsplit(":", 1)
      if not wait_unix(os.path.join(sockdir, ".s.PGSQL." + sockport), timeout, proc):
        raise AssertionError("pgguard did not accept on %s within %.0fs (exit %r): %s\nlog:\n%s"
                             % (listen, timeout, proc.poll(), argv, inst.log[-3000:]))
      return inst
    if not wait_port("127.0.0.1", port, timeout, proc):
      raise AssertionError("pgguard did not accept on port %d within %.0fs (exit %r): %s\nlog:\n%s"
                           % (port, timeout, proc.poll(), argv, inst.log[-3000:]))
    return inst

  yield start

  problems = []
  for inst in started:
    if inst.proc.poll() is None:
      inst.proc.send_signal(signal.SIGTERM)
      try:
        inst.proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        inst.proc.kill()
        inst.proc.wait(timeout=10)
        problems.append("pgguard pid %d ignored SIGTERM for 10s at teardown" % inst.pid)
    log = inst.log
    m = SANITIZER_PATTERNS.search(log)
    if m:
      start_at = max(0, m.start() - 200)
      problems.append("sanitizer report in pgguard log (%s):\n%s" % (inst.argv, log[start_at:start_at + 6000]))
  if problems:
    pytest.fail("\n\n".join(problems))


@pytest.fixture
def blackhole():
  """A loopback port whose accept queue is full: new TCP handshakes get no answer."""
  lsock = socket.socket()
  lsock.bind(("127.0.0.1", 0))
  lsock.listen(0)
  fill = []
  for _ in range(4):
    s = socket.socket()
    s.setblocking(False)
    try:
      s.connect(lsock.getsockname())
    except BlockingIOError:
      pass
    fill.append(s)
  time.sleep(0.2)
  yield "127.0.0.1:%d" % lsock.getsockname()[1]
  for s in fill:
    s.close()
  lsock.close()


@pytest.fixture(params=["direct", "pgguard"])
def target(request, pg):
  """The endpoint under test: PostgreSQL itself (validates the test) or pgguard in front of it."""
  if request.param == "direct":
    return pg
  return request.getfixturevalue("pgguard")()


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than a few seconds")
