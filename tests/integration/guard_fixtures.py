# Helpers for the schema-guard integration tests (replay, seed scenario, sidecars, metrics):
# databases at a chosen drift, guarded pgguard processes, metric reads and raw extended-protocol bytes.
import hashlib
import json
import os
import re
import types
import shutil
import struct
import tempfile
import time

import pytest

from conftest import HERE, NODE_DIR, PGBIN, Postgres, client_env, pgguard_binary, run
from nodeapps import node_env, run_json
from pgwire import message

SCHEMAS = HERE / "schemas"
REPLAY_SCHEMA = SCHEMAS / "replay" / "desired.sql"
SEED_DIR = SCHEMAS / "seed"

# The role the guarded applications connect as; it owns their databases, so repaired
# objects (owned by the database owner by default) are usable by it.
APP_ROLE = "guard_app"
APP_PASSWORD = "guard-app-pw"


def app_role(pg):
  pg.create_role(APP_ROLE, APP_PASSWORD)
  return APP_ROLE


def app_kw(db):
  """Connection keywords of the application role on database db."""
  return {"user": APP_ROLE, "password": APP_PASSWORD, "dbname": db}


def make_db(pg, name, sql=None, statements=(), role=None):
  """A fresh database owned by the application role (or role: {"user", "password"}), with sql
  (text) then statements run in it as that role. Returns its connection keywords."""
  if role is None:
    app_role(pg)
    kw = app_kw(name)
  else:
    kw = {"user": role["user"], "password": role["password"], "dbname": name}
  pg.create_db(name, owner=kw["user"])
  conn = pg.connect(**kw)
  try:
    with conn.cursor() as cur:
      if sql:
        cur.execute(sql)
      for s in statements:
        cur.execute(s)
  finally:
    conn.close()
  return kw


def tables(pg, db, schema=None):
  """Sorted schema.table names of ordinary tables outside the system schemas."""
  rows = pg.sql("SELECT n.nspname || '.' || c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%%' ORDER BY 1", db=db)
  names = [r[0] for r in rows]
  if schema is not None:
    names = [n for n in names if n.startswith(schema + ".")]
  return names


def count(pg, db, sql, params=None):
  return pg.sql(sql, params, db=db)[0][0]


def wait_ready(inst, timeout=30.0):
  """Waits for /readyz 200 and, when pgguard runs a guard, for its first drift check (/drift
  200): readiness alone no longer waits for the guard unless --ready-requires-guard."""
  deadline = time.monotonic() + timeout
  last = None
  for path in ("/readyz", "/drift"):
    while True:
      if inst.returncode is not None:
        raise AssertionError("pgguard exited %r before ready; log:\n%s" % (inst.returncode, inst.log[-3000:]))
      if path == "/drift" and "event=guard_starting" not in inst.log:
        break
      try:
        last = inst.http_get(path, timeout=2)
        if last[0] == 200:
          break
      except OSError as e:
        last = (None, str(e))
      if time.monotonic() >= deadline:
        raise AssertionError("pgguard not ready within %.0fs (last %s %r); log:\n%s"
                             % (timeout, path, last, inst.log[-3000:]))
      time.sleep(0.05)


def start_guarded(pgguard, pg, db, *args, schema=REPLAY_SCHEMA, ready=True, upstream_pg=None,
                  role=None, **kw):
  """A pgguard guarding database db with the desired schema file; its connection defaults are
  the application role (or role) on db. Waits for /readyz unless ready=False."""
  server = upstream_pg or pg
  # The tests send requests only once the guard has loaded its schema: readiness says so only
  # with --ready-requires-guard.
  argv = ["--schema", str(schema), "--admin-url", server.url(dbname=db),
          "--drift-interval", "60", "--ready-requires-guard"] + list(args)
  if upstream_pg is not None:
    kw.setdefault("upstream", "%s:%d" % (upstream_pg.host, upstream_pg.port))
  inst = pgguard(*argv, **kw)
  role = role or {"user": APP_ROLE, "password": APP_PASSWORD}
  inst.defaults = {"user": role["user"], "password": role["password"], "dbname": db}
  if ready:
    wait_ready(inst)
  return inst


def metric(inst, name, **labels):
  """One sample's value (0 when the sample is absent)."""
  v = inst.metrics().get_value(name, **labels)
  return 0 if v is None else v


def wait_metric(inst, name, want, timeout=10.0, **labels):
  """Waits until the sample equals want; returns its last value."""
  deadline = time.monotonic() + timeout
  v = metric(inst, name, **labels)
  while v != want and time.monotonic() < deadline:
    time.sleep(0.05)
    v = metric(inst, name, **labels)
  return v


def guard_events(inst, event):
  """pgguard's log lines of one event, as dicts."""
  pattern = re.compile(r"(^|\s)event=%s(\s|$)" % re.escape(event))
  return [logfmt(line) for line in inst.log.splitlines() if pattern.search(line)]


def logfmt(line):
  """A logfmt line -> dict (quoted values unquoted)."""
  out = {}
  i = 0
  n = len(line)
  while i < n:
    while i < n and line[i] == " ":
      i += 1
    j = i
    while j < n and line[j] not in "= ":
      j += 1
    key = line[i:j]
    if j < n and line[j] == "=":
      j += 1
      if j < n and line[j] == '"':
        j += 1
        val = []
        while j < n and line[j] != '"':
          if line[j] == "\\" and j + 1 < n:
            j += 1
          val.append(line[j])
          j += 1
        j += 1
        out[key] = "".join(val)
      else:
        k = j
        while k < n and line[k] != " ":
          k += 1
        out[key] = line[j:k]
        j = k
    elif key:
      out[key] = ""
    i = j
  return out


def diag_fields(e):
  """The ErrorResponse fields psycopg2 exposes, as a dict."""
  d = e.diag
  return {"S": d.severity, "V": getattr(d, "severity_nonlocalized", None), "C": d.sqlstate,
          "M": d.message_primary, "D": d.message_detail, "H": d.message_hint,
          "P": d.statement_position, "F": d.source_file, "L": d.source_line, "R": d.source_function}


# --- extended protocol bytes ----------------------------------------------------

def cstr(s):
  return s.encode() + b"\0"


def parse(sql, name="", types=()):
  return message(b"P", cstr(name) + cstr(sql) + struct.pack("!h", len(types))
                 + b"".join(struct.pack("!i", t) for t in types))


def bind(params=(), stmt="", portal=""):
  body = cstr(portal) + cstr(stmt) + struct.pack("!h", 0) + struct.pack("!h", len(params))
  for p in params:
    if p is None:
      body += struct.pack("!i", -1)
    else:
      b = str(p).encode()
      body += struct.pack("!i", len(b)) + b
  return message(b"B", body + struct.pack("!h", 0))


def describe_statement(name=""):
  return message(b"D", b"S" + cstr(name))


def execute(portal="", max_rows=0):
  return message(b"E", cstr(portal) + struct.pack("!i", max_rows))


SYNC = message(b"S")


def raw_connect(endpoint, kw, timeout=10.0):
  """A started pgwire.RawConn on endpoint with the keywords user/password/dbname."""
  from pgwire import RawConn
  c = RawConn(endpoint.host, endpoint.port, timeout=timeout)
  c.startup(kw["user"], kw["dbname"], password=kw.get("password"))
  return c


def read_groups(conn, n, timeout=15.0):
  """The next n response groups (each up to and including ReadyForQuery)."""
  out = []
  for _ in range(n):
    out.append(conn.read_until({b"Z"}, timeout=timeout))
  return out


# --- node-postgres --------------------------------------------------------------

SEED_NODE = NODE_DIR / "seed"


def node_queries(url, steps, timeout=60):
  """Runs tests/node/seed/pg_steps.mjs: each step {text, values?, name?} on one connection;
  returns the list of per-step results ({rows, rowCount, ms} or {error: {...}, ms})."""
  if not (NODE_DIR / "node_modules" / "pg").is_dir():
    pytest.fail("tests/node/node_modules is missing: run scripts/install-deps.sh (npm ci)")
  r = run(["node", str(SEED_NODE / "pg_steps.mjs"), url, json.dumps(steps)], timeout=timeout,
          cwd=str(NODE_DIR), env=client_env())
  out = r.stdout.decode("utf-8", "replace").strip()
  if r.returncode != 0 or not out:
    raise AssertionError("pg_steps.mjs exited %d\nstdout: %s\nstderr: %s"
                         % (r.returncode, out[-3000:], r.stderr.decode("utf-8", "replace")[-3000:]))
  return json.loads(out.splitlines()[-1])


def seed_prisma_generate():
  """Generates the seed application's Prisma client into tests/node/seed/generated, once per
  schema/config/lockfile content (stamp file), the way nodeapps.prisma_generate does for the first app."""
  if not (NODE_DIR / "node_modules" / "prisma").is_dir():
    pytest.fail("tests/node/node_modules is missing: run scripts/install-deps.sh (npm ci)")
  h = hashlib.sha256()
  for path in (SEED_NODE / "prisma" / "schema.prisma", SEED_NODE / "prisma.config.ts",
               NODE_DIR / "package-lock.json"):
    h.update(path.read_bytes())
  gen = SEED_NODE / "generated"
  stamp = gen / ".stamp"
  if stamp.exists() and stamp.read_text() == h.hexdigest() and (gen / "prisma" / "client.ts").exists():
    return
  # The CLI looks for its native schema engine at start-up and would try to download it;
  # generate only uses wasm, so any executable file will do.
  gen.mkdir(exist_ok=True)
  stub = gen / "schema-engine-stub"
  stub.write_text("#!/bin/sh\nexit 1\n")
  os.chmod(stub, 0o755)
  env = node_env()
  env["PRISMA_SCHEMA_ENGINE_BINARY"] = str(stub)
  r = run([str(NODE_DIR / "node_modules" / ".bin" / "prisma"), "generate"], timeout=180,
          cwd=str(SEED_NODE), env=env)
  if r.returncode != 0:
    raise AssertionError("prisma generate (seed) failed:\n%s\n%s" % (r.stdout.decode(), r.stderr.decode()))
  stamp.write_text(h.hexdigest())


def seed_app(mode, url, timeout=90):
  """Runs tests/node/seed/seed_app.ts (probe|run) and returns its JSON output."""
  tsx = str(NODE_DIR / "node_modules" / ".bin" / "tsx")
  return run_json([tsx, str(SEED_NODE / "seed_app.ts"), mode, url], timeout=timeout)


# --- a private PostgreSQL cluster ------------------------------------------------

class PrivatePostgres(Postgres):
  """A second cluster with its own settings (e.g. more max_connections than the shared one)."""

  def __init__(self, root, extra_conf):
    super().__init__(root)
    self.extra_conf = extra_conf

  def init(self):
    super().init()
    with open(self.datadir / "postgresql.conf", "a") as f:
      f.write("\n# guard_fixtures.PrivatePostgres\n" + self.extra_conf + "\n")


def private_postgres(extra_conf):
  """Starts a private cluster; returns (server, cleanup)."""
  root = tempfile.mkdtemp(prefix="pgg-guard-", dir="/tmp")
  os.chmod(root, 0o755)
  if os.geteuid() == 0:
    shutil.chown(root, "postgres", "postgres")
  server = PrivatePostgres(root, extra_conf)
  try:
    server.init()
    server.start()
  except Exception:
    shutil.rmtree(root, ignore_errors=True)
    raise

  def cleanup():
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
  return server, cleanup


def pgguard_binary_path():
  return pgguard_binary()


def pg_tool(name):
  return str(PGBIN / name)


# ---- the replay tests' desired schema, and the ways they take objects out of it ----------

REPLAY_DESIRED = REPLAY_SCHEMA.read_text()
SEED_ROWS = ["INSERT INTO existing (note) VALUES ('a'), ('b')"]
NO_WIDGETS = ['DROP TABLE "widgets"']
NO_EXTRA = ['ALTER TABLE "existing" DROP COLUMN "extra"']
NO_PRIORITY = ['DROP TYPE "priority"']
NO_APP = ['DROP SCHEMA "app" CASCADE']
# "mood" with two of its three labels: the table that uses it is rebuilt on the short enum.
TWO_MOODS = ['DROP TABLE "mood_log"', 'DROP TYPE "mood"',
             "CREATE TYPE \"mood\" AS ENUM ('happy', 'sad')",
             'CREATE TABLE "mood_log" ("id" SERIAL NOT NULL, "m" "mood" NOT NULL, '
             'CONSTRAINT "mood_log_pkey" PRIMARY KEY ("id"))']
# A role pg_hba lets in without a password: eager clients send queries with the startup packet.
TRUST_ROLE = {"user": "wire_trust", "password": None}
REPAIRS = "pgguard_repairs_total"
REPLAYS = "pgguard_replays_total"
CHECKS = "pgguard_catalog_checks_total"


def unique_db_name(prefix, request):
  """A database name of at most 63 bytes, unique per test."""
  return prefix + "_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[-50:]


def guarded_factory(pg, pgguard, db):
  """make(drops, *pgguard_args, role=None, ready=True) -> namespace(inst, db, kw): database db at
  the replay schema minus drops (with two rows in existing), and a pgguard guarding it. The
  second value lists the started instances, for their logs."""
  started = []

  def make(drops=(), *args, role=None, ready=True):
    if role is not None:
      pg.create_role(role["user"], role["password"])
    kw = make_db(pg, db, REPLAY_DESIRED, list(drops) + SEED_ROWS, role=role)
    inst = start_guarded(pgguard, pg, db, *args, role=role, ready=ready)
    started.append(inst)
    return types.SimpleNamespace(inst=inst, db=db, kw=kw)
  return make, started


def print_logs(started):
  """Shown by pytest only when the test fails."""
  for inst in started:
    print("---- pgguard log (%s)\n%s" % (" ".join(inst.argv[1:]), inst.log[-6000:]))
