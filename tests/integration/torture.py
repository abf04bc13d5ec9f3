#!/usr/bin/env python3
# Replay torture (issue item 8): a seeded, randomized stream of requests through pgguard with the
# guard on, while the guarded objects are dropped underneath between rounds, and a ledger that
# proves DESIGN.md "Replay or fail cleanly": a write is never executed twice, nothing the client
# saw fail or roll back exists, everything it saw commit exists exactly once, the sequences the
# requests call advance exactly as often as PostgreSQL itself would have advanced them, every
# request gets an answer, and a CancelRequest ends a hold at once.
#
#   /usr/bin/python3 tests/integration/torture.py --seed 7 --seconds 60
#   /usr/bin/python3 tests/integration/torture.py --seed 7 --requests 2000
#   /usr/bin/python3 tests/integration/torture.py --long            (30 minutes)
#   /usr/bin/python3 tests/integration/torture.py --direct          (control: PostgreSQL alone)
#
# How it works. Each round: (1) drop a random subset of the desired schema's objects directly on
# PostgreSQL (tables, a column, an enum label, a whole enum type); (2) several client threads run
# seeded requests through two pgguard processes on the same database, in every client style:
# psycopg2 autocommit and transaction blocks (committed, rolled back, savepoints), raw simple
# protocol (single, multi-statement, pipelined), raw extended protocol (unnamed and named
# statements, pipelined Sync groups, BEGIN + extended like node-postgres), eager clients (startup
# packet and queries in one write, trust auth), DO blocks and a trigger that touch the dropped
# objects, runtime enum casts after nextval(); some rounds hold a repair on a lock and cancel a
# request held for it; (3) all clients stop, and the round is verified against the database
# before the next drop destroys the rows.
#
# The client-side ledger. Every INSERT carries a unique write id (wid) and takes its id from a
# sequence that is never dropped. Each client feeds what it sent and what it was told (command
# completes, errors with their fields, ReadyForQuery status) into a model of PostgreSQL's
# transaction semantics (TxModel), which yields per write: present (committed), absent (failed,
# rolled back, never ran) or maybe (the connection broke), and per statement the number of
# nextval() calls PostgreSQL made for it: exactly seq_ok when it completed; 0 when it failed in
# parse analysis of the client's own statement (SQLSTATE guarded, a Position, no Where/internal
# query: nothing ran); exactly fail_cost for the shapes whose guarded error is raised after a
# known nextval() (DO blocks, the trigger, the runtime cast); 0..seq_ok otherwise.
import argparse
import itertools
import os
import random
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import psycopg2  # noqa: E402
import psycopg2.errors  # noqa: E402
import psycopg2.extensions  # noqa: E402

from pgwire import (CANCEL_REQUEST_CODE, RawConn, WireError, message, query,  # noqa: E402
                    startup_packet)

ROLE = "wire_trust"          # trust authentication in conftest's pg_hba: eager clients need it
DB = "torture"
GUARDED = {"42P01", "42703", "42704", "22P02"}
REQUEST_TIMEOUT = 30.0       # no answer within this: a hang (violation)
HOLD_SECONDS = 3.0           # how long a hold round keeps the repair waiting on a lock
CANCEL_SLACK = 1.0           # a cancelled hold must answer within this after the CancelRequest
REPAIR_WAIT = 10
LOCK_TIMEOUT_MS = 6000
PGGUARD_ARGS = ["--drift-interval", "0.5", "--repair-wait", str(REPAIR_WAIT),
                "--lock-timeout", str(LOCK_TIMEOUT_MS), "--repair-cooldown", "0.3"]

SEQS = ["s_ac", "s_tx", "s_raw", "s_ext", "s_eager", "s_do", "s_trig", "s_cast", "s_cancel"]
TABLES = ["ledger", "ledger2", "mood_log", "trig_src"]

DESIRED = """-- tests/integration/torture.py: the desired schema of the replay torture.
CREATE TYPE "mood" AS ENUM ('happy', 'sad', 'meh');
%s
CREATE TABLE "anchor" ("id" INTEGER NOT NULL, "extra" TEXT,
    CONSTRAINT "anchor_pkey" PRIMARY KEY ("id"));
CREATE TABLE "ledger" ("id" BIGINT NOT NULL, "wid" BIGINT NOT NULL, "src" TEXT NOT NULL, "note" TEXT);
CREATE TABLE "ledger2" ("id" BIGINT NOT NULL, "wid" BIGINT NOT NULL, "src" TEXT NOT NULL, "note" TEXT);
CREATE TABLE "mood_log" ("id" BIGINT NOT NULL, "wid" BIGINT NOT NULL, "m" "mood" NOT NULL);
CREATE TABLE "trig_src" ("id" BIGINT NOT NULL, "wid" BIGINT NOT NULL);
""" % "\n".join('CREATE SEQUENCE "%s";' % s for s in SEQS)

# Live only (pgguard does not model functions or triggers): an AFTER INSERT trigger on a table
# that is never dropped, writing into one that is. Its 42P01 carries a Where: never replayable.
LIVE_EXTRAS = [
  "CREATE FUNCTION trig_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
  "INSERT INTO ledger (id, wid, src) VALUES (NEW.id, NEW.wid, 'trig'); RETURN NEW; END $$",
  "CREATE TRIGGER trig_src_ai AFTER INSERT ON trig_src FOR EACH ROW EXECUTE FUNCTION trig_fn()",
  "INSERT INTO anchor (id, extra) VALUES (1, 'x')",
]

MOOD_LOG = 'CREATE TABLE "mood_log" ("id" BIGINT NOT NULL, "wid" BIGINT NOT NULL, "m" "mood" NOT NULL)'
BREAKS = {
  "ledger": ["DROP TABLE IF EXISTS ledger"],
  "ledger2": ["DROP TABLE IF EXISTS ledger2"],
  "extra": ["ALTER TABLE anchor DROP COLUMN IF EXISTS extra"],
  # An enum label cannot be dropped: rebuild the type short of 'meh' and its table on it.
  "label": ["DROP TABLE IF EXISTS mood_log", "DROP TYPE IF EXISTS mood",
            "CREATE TYPE mood AS ENUM ('happy', 'sad')", MOOD_LOG],
  "type": ["DROP TABLE IF EXISTS mood_log", "DROP TYPE IF EXISTS mood"],
}
# What the control run (--direct, no pgguard) does instead of pgguard's repair.
RESTORE = [
  'CREATE TABLE IF NOT EXISTS "ledger" ("id" BIGINT NOT NULL, "wid" BIGINT NOT NULL, "src" TEXT NOT NULL, "note" TEXT)',
  'CREATE TABLE IF NOT EXISTS "ledger2" ("id" BIGINT NOT NULL, "wid" BIGINT NOT NULL, "src" TEXT NOT NULL, "note" TEXT)',
  'ALTER TABLE anchor ADD COLUMN IF NOT EXISTS extra TEXT',
  "DO $$ BEGIN CREATE TYPE mood AS ENUM ('happy', 'sad', 'meh'); "
  "EXCEPTION WHEN duplicate_object THEN NULL; END $$",
  "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh'",
  MOOD_LOG.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"),
]


# --- statements ----------------------------------------------------------------------------

class Stmt:
  """One SQL statement of a request. kind: write, begin, commit, rollback, savepoint,
  rollback_to, release, select. writes: (table, wid) rows it inserts when it completes.
  seq: the sequence it calls, seq_ok: nextval() calls when it completes, fail_cost: calls
  made before its guarded error is raised, for shapes that raise it after running code."""
  __slots__ = ("sql", "kind", "writes", "seq", "seq_ok", "fail_cost", "params", "name", "arg")

  def __init__(self, sql, kind="write", writes=(), seq=None, seq_ok=0, fail_cost=None,
               params=None, arg=None):
    self.sql = sql
    self.kind = kind
    self.writes = list(writes)
    self.seq = seq
    self.seq_ok = seq_ok
    self.fail_cost = fail_cost
    self.params = params
    self.name = None
    self.arg = arg

  def short(self):
    s = re.sub(r"\s+", " ", self.sql)
    return s if len(s) <= 110 else s[:107] + "..."


def ctl(kind, arg=None):
  sql = {"begin": "BEGIN", "commit": "COMMIT", "rollback": "ROLLBACK",
         "savepoint": "SAVEPOINT %s" % arg, "rollback_to": "ROLLBACK TO SAVEPOINT %s" % arg,
         "release": "RELEASE SAVEPOINT %s" % arg}[kind]
  return Stmt(sql, kind, arg=arg)


def insert(table, seq, wid, src, extra=False, params=False):
  """A single-row INSERT taking one nextval(seq); params=True: $1 wid (and $2 src)."""
  w = "$1::bigint" if params else str(wid)
  if table == "mood_log":
    # The literal is coerced in parse analysis: a missing label is 22P02 with a Position.
    return Stmt("INSERT INTO mood_log (id, wid, m) VALUES (nextval('%s'), %s, 'meh')" % (seq, w),
                writes=[(table, wid)], seq=seq, seq_ok=1, params=[wid] if params else None)
  s = "$2::text" if params else "'%s'" % src
  if extra:
    sql = ("INSERT INTO %s (id, wid, src, note) SELECT nextval('%s'), %s, %s, extra "
           "FROM anchor WHERE id = 1" % (table, seq, w, s))
  else:
    sql = "INSERT INTO %s (id, wid, src) VALUES (nextval('%s'), %s, %s)" % (table, seq, w, s)
  return Stmt(sql, writes=[(table, wid)], seq=seq, seq_ok=1,
              params=[wid, src] if params else None)


def do_block(wid, dynamic):
  """PERFORM nextval() then an INSERT into the (maybe missing) ledger: the 42P01 comes with a
  Where after one nextval() ran; a replay would run it twice (known bug 2)."""
  if dynamic:
    body = ("PERFORM nextval('s_do'); EXECUTE 'INSERT INTO ledger (id, wid, src) VALUES "
            "(nextval(''s_do''), %d, ''do'')';" % wid)
  else:
    body = ("PERFORM nextval('s_do'); INSERT INTO ledger (id, wid, src) VALUES "
            "(nextval('s_do'), %d, 'do');" % wid)
  return Stmt("DO $$ BEGIN %s END $$" % body, writes=[("ledger", wid)], seq="s_do", seq_ok=2,
              fail_cost=1)


def trigger_insert(wid):
  """An INSERT into trig_src whose AFTER trigger inserts into ledger: nextval() ran first."""
  return Stmt("INSERT INTO trig_src (id, wid) VALUES (nextval('s_trig'), %d)" % wid,
              writes=[("trig_src", wid), ("ledger", wid)], seq="s_trig", seq_ok=1, fail_cost=1)


def runtime_cast(wid=None):
  """nextval() then a cast of a column value to the enum at execution time: a missing label is
  22P02 without a Position after nextval() ran (known bug 4 replays it). The SELECT form sends
  a RowDescription before the error; the INSERT form (wid given) sends nothing before it."""
  if wid is not None:
    return Stmt("INSERT INTO mood_log (id, wid, m) SELECT nextval('s_cast'), %d, v::mood "
                "FROM (VALUES ('meh')) t(v)" % wid, writes=[("mood_log", wid)], seq="s_cast",
                seq_ok=1, fail_cost=1)
  return Stmt("SELECT nextval('s_cast'), v::mood FROM (VALUES ('meh')) t(v)", kind="select",
              seq="s_cast", seq_ok=1, fail_cost=1)


# --- outcomes and the transaction model ----------------------------------------------------

OK = "ok"
SKIPPED = "skipped"      # sent, but the server skipped it after an earlier error in its cycle
UNSENT = "unsent"        # never reached the server
UNKNOWN = "unknown"      # no answer: connection broke or timed out


def parse_analysis_error(f):
  """The error was raised by parse analysis of the client's own statement: nothing of it ran."""
  return f.get("C") in GUARDED and "P" in f and "W" not in f and "q" not in f


def seq_range(st, out):
  if st.seq is None or out in (SKIPPED, UNSENT):
    return 0, 0
  if out == OK:
    return st.seq_ok, st.seq_ok
  if out == UNKNOWN:
    return 0, st.seq_ok
  f = out
  if f.get("C") == "25P02":
    return 0, 0
  if parse_analysis_error(f):
    return 0, 0
  if st.fail_cost is not None and f.get("C") in GUARDED:
    return st.fail_cost, st.fail_cost
  return 0, st.seq_ok


def out_str(out):
  if isinstance(out, dict):
    extra = "".join(" %s" % k for k in "PWq" if k in out)
    return "ERR %s%s %s" % (out.get("C"), extra, (out.get("M") or "")[:60])
  return out


class Round:
  """Everything one round's clients did: writes with their fates, nextval ranges per sequence,
  the request log and the violations found on the way."""

  def __init__(self, number):
    self.number = number
    self.lock = threading.Lock()
    self.fates = {}                  # (table, wid) -> [fate, request number]
    self.seq = {s: [0, 0] for s in SEQS}
    self.log = []                    # request log lines
    self.violations = []
    self.hints = []
    self.requests = 0
    self.errors = {}                 # SQLSTATE -> count
    self.seq_users = {s: set() for s in SEQS}
    self.write_seq = {}              # (table, wid) -> sequence its id came from
    self.holds = []                  # (held, seconds from CancelRequest to answer or None)

  def violation(self, text):
    with self.lock:
      self.violations.append("round=%d %s" % (self.number, text))


class Request:
  def __init__(self, rnd, worker, style, endpoint):
    self.rnd = rnd
    with rnd.lock:
      rnd.requests += 1
      self.number = rnd.requests
    self.head = "#%d w%s %s via %s" % (self.number, worker, style, endpoint)
    self.lines = []

  def note(self, text):
    self.lines.append(text)

  def record(self, st, out, status=None):
    lo, hi = seq_range(st, out)
    with self.rnd.lock:
      for k in st.writes:
        self.rnd.write_seq[k] = st.seq
      if st.seq:
        self.rnd.seq[st.seq][0] += lo
        self.rnd.seq[st.seq][1] += hi
        self.rnd.seq_users[st.seq].add(self.number)
      if isinstance(out, dict):
        self.rnd.errors[out.get("C")] = self.rnd.errors.get(out.get("C"), 0) + 1
    self.lines.append("  %-80s -> %s%s" % (st.short(), out_str(out),
                                           "" if status is None else " Z=%s" % status))

  def fate(self, key, fate):
    with self.rnd.lock:
      self.rnd.fates[key] = [fate, self.number]

  def violation(self, text):
    self.rnd.violation("%s: %s" % (self.head, text))
    self.lines.append("  !! " + text)

  def done(self):
    with self.rnd.lock:
      self.rnd.log.append("\n".join([self.head] + self.lines))


class TxModel:
  """PostgreSQL's transaction semantics as the client sees them. state: I (no block), T (in a
  block), E (failed block), ? (unknown). Writes wait in the block (with savepoint markers) or in
  the current cycle's implicit transaction until their fate is known."""

  def __init__(self, req):
    self.req = req
    self.state = "I"
    self.block = []          # ("sp", name) or ("w", key)
    self.implicit = []       # keys

  def _settle(self, keys, fate):
    for k in keys:
      self.req.fate(k, fate)

  def _block_keys(self):
    return [e[1] for e in self.block if e[0] == "w"]

  def cycle(self, stmts, outcomes, status=None):
    """Feeds one cycle (a simple Query or a Sync group): its statements and their outcomes;
    status is the ReadyForQuery status byte the client received, checked against the model."""
    for i, (st, out) in enumerate(zip(stmts, outcomes)):
      self.req.record(st, out, status if i == len(stmts) - 1 else None)
      if self.state == "?" or out == UNKNOWN:
        self._settle(self._block_keys() + self.implicit + [k for k in st.writes], "maybe")
        self.block, self.implicit = [], []
        self.state = "?"
        continue
      if out in (SKIPPED, UNSENT):
        self._settle(st.writes, "absent")
        continue
      if out == OK:
        k = st.kind
        if k == "begin":
          if self.state == "I":
            self.block = [("w", key) for key in self.implicit]
            self.implicit = []
          self.state = "T" if self.state == "I" else self.state
        elif k == "commit":
          if self.state == "T":
            self._settle(self._block_keys(), "present")
          else:
            self._settle(self._block_keys(), "absent")
          self._settle(self.implicit, "present")
          self.block, self.implicit, self.state = [], [], "I"
        elif k == "rollback":
          self._settle(self._block_keys() + self.implicit, "absent")
          self.block, self.implicit, self.state = [], [], "I"
        elif k == "savepoint":
          self.block.append(("sp", st.arg))
        elif k in ("rollback_to", "release"):
          idx = max(i for i, e in enumerate(self.block) if e == ("sp", st.arg))
          if k == "rollback_to":
            self._settle([e[1] for e in self.block[idx + 1:] if e[0] == "w"], "absent")
            self.block = self.block[:idx + 1]
            self.state = "T"
          else:
            self.block = self.block[:idx] + self.block[idx + 1:]
        else:
          if self.state == "T":
            self.block += [("w", key) for key in st.writes]
          elif self.state == "I":
            self.implicit += st.writes
          else:
            self.req.violation("statement completed in a failed transaction block: " + st.short())
            self._settle(st.writes, "maybe")
      else:  # an ErrorResponse
        self._settle(st.writes, "absent")
        if self.state in ("T", "E"):
          self.state = "E"
        else:
          self._settle(self.implicit, "absent")
          self.implicit = []
    if self.state == "I":
      self._settle(self.implicit, "present")
      self.implicit = []
    if status is not None and self.state != "?" and status != self.state:
      self.req.violation("ReadyForQuery status %s, the client's transaction state is %s"
                         % (status, self.state))

  def abandon(self):
    """The connection is given up: an open block is rolled back by the server."""
    if self.state == "?":
      return
    self._settle(self._block_keys() + self.implicit, "absent" if self.state != "?" else "maybe")
    self.block, self.implicit = [], []


# --- clients -------------------------------------------------------------------------------

class Endpoint:
  def __init__(self, name, host, port):
    self.name = name
    self.host = host
    self.port = port


def pg_connect(ep, autocommit):
  conn = psycopg2.connect(host=ep.host, port=ep.port, user=ROLE, dbname=DB, connect_timeout=10,
                          application_name="torture")
  conn.autocommit = autocommit
  return conn


def raw_startup(ep, early=b""):
  """A RawConn past authentication (trust); early bytes go in the same write as the startup
  packet. Returns (conn, backend pid, key)."""
  c = RawConn(ep.host, ep.port, timeout=REQUEST_TIMEOUT)
  c.send(startup_packet({"user": ROLE, "database": DB, "application_name": "torture"}) + early)
  pid = key = None
  for m in c.read_until({b"Z", b"E"}):
    if m.type == b"K":
      pid, key = struct.unpack("!ii", m.body[:8])
    if m.type == b"E":
      c.close()
      raise WireError("startup failed: %r" % m.fields)
  return c, pid, key


def cancel(ep, pid, key):
  with socket.create_connection((ep.host, ep.port), timeout=5) as s:
    s.sendall(struct.pack("!iiii", 16, CANCEL_REQUEST_CODE, pid, key))
    try:
      s.settimeout(5)
      s.recv(1)
    except OSError:
      pass


def cstr(s):
  return s.encode() + b"\0"


def ext_bytes(st, named=False, parsed=False):
  """Parse (unless the named statement is already prepared) / Bind / Execute of one statement."""
  out = b""
  name = st.name or ""
  if not parsed:
    out += message(b"P", cstr(name) + cstr(st.sql) + struct.pack("!h", 0))
  body = cstr("") + cstr(name) + struct.pack("!h", 0)
  params = st.params or []
  body += struct.pack("!h", len(params))
  for p in params:
    b = str(p).encode()
    body += struct.pack("!i", len(b)) + b
  out += message(b"B", body + struct.pack("!h", 0))
  out += message(b"E", cstr("") + struct.pack("!i", 0))
  return out


SYNC = message(b"S")


class Cycle:
  """A simple Query (one or more statements joined by ';') or an extended Sync group."""

  def __init__(self, mode, stmts):
    self.mode = mode
    self.stmts = stmts

  def encode(self, prepared):
    if self.mode == "Q":
      return query("; ".join(s.sql for s in self.stmts))
    return b"".join(ext_bytes(s, parsed=bool(s.name)) for s in self.stmts) + SYNC


def interpret(cycle, msgs):
  """Per-statement outcomes of one cycle from its response messages (ending with Z)."""
  outs = []
  for m in msgs:
    if m.type == b"C":
      outs.append(OK)
    elif m.type == b"E":
      outs.append(m.fields)
      break
  outs = outs[:len(cycle.stmts)]
  while len(outs) < len(cycle.stmts):
    outs.append(SKIPPED)
  return outs


class RawSession:
  def __init__(self, ep, conn):
    self.ep = ep
    self.conn = conn
    self.prepared = set()
    self.broken = False

  def close(self):
    self.conn.close()


def run_cycles(req, sess, model, cycles, pipelined):
  """Sends cycles (all in one write, or one at a time), feeds the model; returns False once the
  connection is unusable."""
  batches = [cycles] if pipelined else [[c] for c in cycles]
  for bi, batch in enumerate(batches):
    try:
      sess.conn.send(b"".join(c.encode(sess.prepared) for c in batch))
    except OSError as e:
      req.note("  send failed: %s" % e)
      for c in batch:
        model.cycle(c.stmts, [UNKNOWN] * len(c.stmts))
      for later in batches[bi + 1:]:
        for c in later:
          model.cycle(c.stmts, [UNSENT] * len(c.stmts))
      sess.broken = True
      return False
    for ci, c in enumerate(batch):
      t0 = time.monotonic()
      try:
        msgs = sess.conn.read_until({b"Z"}, timeout=REQUEST_TIMEOUT)
      except (WireError, OSError) as e:
        if "timed out" in str(e):
          req.violation("no answer within %.0fs (hang)" % REQUEST_TIMEOUT)
        else:
          req.note("  connection lost after %.2fs: %s" % (time.monotonic() - t0, e))
        for rest in batch[ci:]:
          model.cycle(rest.stmts, [UNKNOWN] * len(rest.stmts))
        for later in batches[bi + 1:]:
          for lc in later:
            model.cycle(lc.stmts, [UNSENT] * len(lc.stmts))
        sess.broken = True
        return False
      model.cycle(c.stmts, interpret(c, msgs), status=chr(msgs[-1].body[0]))
  return True


class Watchdog:
  """Unblocks a psycopg2 call that outlives its deadline by shutting its socket down."""

  def __init__(self, conn, req, timeout):
    self.conn = conn
    self.req = req
    self.fired = False
    self.timer = threading.Timer(timeout, self._fire)

  def _fire(self):
    self.fired = True
    self.req.violation("no answer within %.0fs (hang)" % REQUEST_TIMEOUT)
    try:
      s = socket.socket(fileno=os.dup(self.conn.fileno()))
      s.shutdown(socket.SHUT_RDWR)
      s.close()
    except OSError:
      pass

  def __enter__(self):
    self.timer.start()
    return self

  def __exit__(self, *exc):
    self.timer.cancel()


def pg_fields(e):
  d = e.diag
  f = {"C": e.pgcode, "M": d.message_primary}
  if d.statement_position:
    f["P"] = d.statement_position
  if d.context:
    f["W"] = d.context
  if d.internal_query:
    f["q"] = d.internal_query
  return f


PG_STATUS = {psycopg2.extensions.TRANSACTION_STATUS_IDLE: "I",
             psycopg2.extensions.TRANSACTION_STATUS_INTRANS: "T",
             psycopg2.extensions.TRANSACTION_STATUS_INERROR: "E"}


def pg_exec(req, conn, st):
  """Runs one statement on a psycopg2 connection: OK, the error's fields, or UNKNOWN."""
  with Watchdog(conn, req, REQUEST_TIMEOUT):
    try:
      with conn.cursor() as cur:
        cur.execute(st.sql)
      return OK
    except psycopg2.Error as e:
      if e.pgcode is None or conn.closed:
        req.note("  connection lost: %s" % str(e).strip()[:120])
        return UNKNOWN
      return pg_fields(e)


def pg_end(req, conn, kind):
  with Watchdog(conn, req, REQUEST_TIMEOUT):
    try:
      if kind == "commit":
        conn.commit()
      else:
        conn.rollback()
      return OK
    except psycopg2.Error as e:
      if e.pgcode is None or conn.closed:
        return UNKNOWN
      return pg_fields(e)


# --- the worker ----------------------------------------------------------------------------

# Request styles and their weights (one entry per share).
STYLES = ["ac", "ac", "ac_special", "tx", "tx", "raw", "raw", "ext", "ext", "eager"]


class Worker:
  def __init__(self, index, endpoints, seed, styles=None):
    self.styles = [s for s in STYLES if not styles or s in styles]
    self.index = index
    self.endpoints = endpoints
    self.seed = seed
    self.pg = {}      # (endpoint name, autocommit) -> psycopg2 connection
    self.raw = {}     # endpoint name -> RawSession

  def close(self):
    for c in self.pg.values():
      try:
        c.close()
      except Exception:
        pass
    for s in self.raw.values():
      s.close()
    self.pg, self.raw = {}, {}

  def pg_conn(self, ep, autocommit, rng):
    key = (ep.name, autocommit)
    c = self.pg.get(key)
    if c is not None and (c.closed or rng.random() < 0.05):
      try:
        c.close()
      except Exception:
        pass
      c = None
    if c is None:
      c = self.pg[key] = pg_connect(ep, autocommit)
    return c

  def raw_sess(self, ep, rng):
    s = self.raw.get(ep.name)
    if s is not None and (s.broken or rng.random() < 0.05):
      s.close()
      s = None
    if s is None:
      c, _, _ = raw_startup(ep)
      s = self.raw[ep.name] = RawSession(ep, c)
    return s

  def run_round(self, rnd, wids, quota, deadline):
    rng = random.Random("%s:%d:%d" % (self.seed, rnd.number, self.index))
    n = 0
    while n < quota and time.monotonic() < deadline:
      n += 1
      style = rng.choice(self.styles)
      ep = rng.choice(self.endpoints)
      req = Request(rnd, self.index, style, ep.name)
      try:
        getattr(self, "req_" + style)(rng, req, ep, wids)
      except Exception as e:  # a client-side failure is a finding too: report, never hide
        req.note("  client exception: %s" % "".join(traceback.format_exception_only(type(e), e)).strip())
        if not isinstance(e, (OSError, WireError, psycopg2.Error)):
          req.violation("client exception %r\n%s" % (e, traceback.format_exc()))
        self.close()
      req.done()

  # Plain writes: the tables and column the rounds drop, in the client's own sequence.
  def rand_write(self, rng, seq, wids, src, params=False):
    r = rng.random()
    wid = next(wids)
    if r < 0.4:
      return insert("ledger", seq, wid, src, params=params)
    if r < 0.6:
      return insert("ledger2", seq, wid, src, params=params)
    if r < 0.8:
      return insert(rng.choice(["ledger", "ledger2"]), seq, wid, src, extra=True, params=params)
    return insert("mood_log", seq, wid, src, params=params)

  def rand_special(self, rng, wids):
    r = rng.random()
    if r < 0.4:
      return do_block(next(wids), dynamic=rng.random() < 0.5)
    if r < 0.7:
      return trigger_insert(next(wids))
    return runtime_cast(next(wids) if rng.random() < 0.6 else None)

  def req_ac(self, rng, req, ep, wids):
    conn = self.pg_conn(ep, True, rng)
    model = TxModel(req)
    st = self.rand_write(rng, "s_ac", wids, "ac")
    out = pg_exec(req, conn, st)
    model.cycle([st], [out], status=None if out == UNKNOWN else PG_STATUS.get(conn.get_transaction_status(), "?"))

  def req_ac_special(self, rng, req, ep, wids):
    conn = self.pg_conn(ep, True, rng)
    model = TxModel(req)
    st = self.rand_special(rng, wids)
    out = pg_exec(req, conn, st)
    model.cycle([st], [out], status=None if out == UNKNOWN else PG_STATUS.get(conn.get_transaction_status(), "?"))

  def req_tx(self, rng, req, ep, wids):
    """psycopg2 without autocommit: BEGIN (sent by psycopg2), writes, maybe a savepoint around
    one write (released or rolled back to), then COMMIT or ROLLBACK; on an error outside the
    savepoint the client rolls back."""
    conn = self.pg_conn(ep, False, rng)
    model = TxModel(req)
    plan = []
    for _ in range(rng.randint(1, 2)):
      plan.append(("w", self.rand_write(rng, "s_tx", wids, "tx") if rng.random() < 0.85
                   else self.rand_special(rng, wids)))
    if rng.random() < 0.4:
      plan.append(("sp", self.rand_write(rng, "s_tx", wids, "sp")))
    if rng.random() < 0.5:
      plan.append(("w", self.rand_write(rng, "s_tx", wids, "tx")))
    end = "commit" if rng.random() < 0.5 else "rollback"
    first = True
    for kind, st in plan:
      if kind == "sp":
        sp = ctl("savepoint", "a")
        out = pg_exec(req, conn, sp)
        model.cycle([sp], [out])
        if out != OK:
          break
        out = pg_exec(req, conn, st)
        model.cycle([st], [out], status=self.pg_status(conn, out))
        undo = ctl("rollback_to" if out != OK or rng.random() < 0.5 else "release", "a")
        if out == UNKNOWN:
          break
        o2 = pg_exec(req, conn, undo)
        model.cycle([undo], [o2], status=self.pg_status(conn, o2))
        if o2 != OK:
          break
        continue
      out = pg_exec(req, conn, st)
      if first:  # psycopg2 sent BEGIN right before it
        model.cycle([ctl("begin")], [OK if out != UNKNOWN else UNKNOWN])
        first = False
      model.cycle([st], [out], status=self.pg_status(conn, out))
      if out != OK:
        break
    if model.state == "?":
      self.close()
      return
    if model.state == "E":
      end = "rollback"
    if first:  # nothing was sent: psycopg2 sends no BEGIN, COMMIT/ROLLBACK are no-ops
      return
    out = pg_end(req, conn, end)
    model.cycle([ctl(end)], [out], status=self.pg_status(conn, out))
    if model.state == "?":
      self.close()

  @staticmethod
  def pg_status(conn, out):
    if out == UNKNOWN or conn.closed:
      return None
    return PG_STATUS.get(conn.get_transaction_status(), "?")

  def req_raw(self, rng, req, ep, wids):
    """Raw simple protocol: single statements, multi-statement strings (with a COMMIT inside,
    or a later statement on a dropped object), transaction blocks as separate Queries, DO
    blocks; pipelined (one write) or one Query at a time."""
    sess = self.raw_sess(ep, rng)
    model = TxModel(req)
    cycles = []
    shape = rng.choice(["single", "multi", "multi_commit", "block", "block", "mixed"])
    w = lambda: self.rand_write(rng, "s_raw", wids, "raw")  # noqa: E731
    if shape == "single":
      cycles = [Cycle("Q", [w() if rng.random() < 0.7 else self.rand_special(rng, wids)])
                for _ in range(rng.randint(1, 3))]
    elif shape == "multi":
      cycles = [Cycle("Q", [w() for _ in range(rng.randint(2, 3))])]
    elif shape == "multi_commit":
      cycles = [Cycle("Q", [w(), ctl("commit"), w()])]
    elif shape == "block":
      body = [w() for _ in range(rng.randint(1, 2))]
      if rng.random() < 0.4:
        body += [ctl("savepoint", "b"), w(), ctl("rollback_to" if rng.random() < 0.5 else "release", "b")]
      if rng.random() < 0.3:
        body.append(self.rand_special(rng, wids))
      cycles = [Cycle("Q", [ctl("begin")])] + [Cycle("Q", [s]) for s in body] + \
          [Cycle("Q", [ctl("commit" if rng.random() < 0.5 else "rollback")])]
    else:
      cycles = [Cycle("Q", [w()]), Cycle("Q", [ctl("begin")]), Cycle("Q", [w()]),
                Cycle("Q", [ctl("rollback")]), Cycle("Q", [w()])]
    pipelined = rng.random() < 0.5
    req.head += " %s%s" % (shape, " pipelined" if pipelined else "")
    ok = run_cycles(req, sess, model, cycles, pipelined)
    self.finish_raw(req, sess, model, ok)

  def finish_raw(self, req, sess, model, ok):
    if ok and model.state in ("T", "E"):
      # A failed block in the middle of an unpipelined script: the client ends it.
      run_cycles(req, sess, model, [Cycle("Q", [ctl("rollback")])], False)
    if model.state != "I":
      model.abandon()
      sess.broken = True

  def req_ext(self, rng, req, ep, wids):
    """Raw extended protocol: Sync groups of one or two statements (unnamed, or a named
    statement prepared once per connection), pipelined or not, sometimes inside a simple
    BEGIN ... COMMIT/ROLLBACK as node-postgres does."""
    sess = self.raw_sess(ep, rng)
    model = TxModel(req)
    groups = []
    for _ in range(rng.randint(1, 3)):
      stmts = []
      for _ in range(1 if rng.random() < 0.7 else 2):
        st = self.rand_write(rng, "s_ext", wids, "ext", params=True) if rng.random() < 0.85 \
            else self.rand_special(rng, wids)
        if st.params is not None and rng.random() < 0.4:
          st.name = "n%x" % (hash(st.sql) & 0xffffff)
        stmts.append(st)
      groups.append(Cycle("X", stmts))
    block = rng.random() < 0.3
    if block:
      groups = [Cycle("Q", [ctl("begin")])] + groups + \
          [Cycle("Q", [ctl("commit" if rng.random() < 0.5 else "rollback")])]
    pipelined = rng.random() < 0.5
    req.head += " %d groups%s%s" % (len(groups), " in block" if block else "",
                                     " pipelined" if pipelined else "")
    if not self.prepare_named(req, sess, groups):
      model.abandon()
      return
    ok = run_cycles(req, sess, model, groups, pipelined)
    self.finish_raw(req, sess, model, ok)

  @staticmethod
  def prepare_named(req, sess, groups):
    """Prepares the named statements this connection lacks in a cycle of their own
    (Parse/Describe/Sync, as libpq's PQprepare); one that fails to prepare runs unnamed."""
    for c in groups:
      for st in c.stmts:
        if not st.name or st.name in sess.prepared:
          continue
        try:
          sess.conn.send(message(b"P", cstr(st.name) + cstr(st.sql) + struct.pack("!h", 0))
                         + message(b"D", b"S" + cstr(st.name)) + SYNC)
          msgs = sess.conn.read_until({b"Z"}, timeout=REQUEST_TIMEOUT)
        except (WireError, OSError) as e:
          if "timed out" in str(e):
            req.violation("no answer within %.0fs to a Parse (hang)" % REQUEST_TIMEOUT)
          sess.broken = True
          return False
        err = [m.fields for m in msgs if m.type == b"E"]
        req.note("  prepare %s: %s" % (st.name, out_str(err[0]) if err else "ok"))
        if err:
          st.name = None
        else:
          sess.prepared.add(st.name)
    return True

  def req_eager(self, rng, req, ep, wids):
    """A client that does not wait: queries in the same write as its startup packet.
    a) BEGIN with the startup packet, then INSERT, then COMMIT/ROLLBACK (known bug 1);
    b) BEGIN, INSERT, COMMIT/ROLLBACK all with the startup packet;
    c) an autocommit INSERT with the startup packet."""
    variant = rng.choice("aabc")
    end = "commit" if rng.random() < 0.5 else "rollback"
    st = self.rand_write(rng, "s_eager", wids, "eager")
    if variant == "a":
      early, later = [Cycle("Q", [ctl("begin")])], [Cycle("Q", [st]), Cycle("Q", [ctl(end)])]
    elif variant == "b":
      early, later = [Cycle("Q", [ctl("begin")]), Cycle("Q", [st]), Cycle("Q", [ctl(end)])], []
    else:
      early, later = [Cycle("Q", [st])], []
    req.head += " variant=%s %s" % (variant, end if variant != "c" else "")
    model = TxModel(req)
    try:
      conn, _, _ = raw_startup(ep, early=b"".join(c.encode(set()) for c in early))
    except (WireError, OSError) as e:
      req.note("  startup failed: %s" % e)
      for c in early + later:
        model.cycle(c.stmts, [UNKNOWN] * len(c.stmts))
      return
    sess = RawSession(ep, conn)
    try:
      # The early cycles' answers follow the start-up's ReadyForQuery.
      ok = True
      for i, c in enumerate(early):
        try:
          msgs = conn.read_until({b"Z"}, timeout=REQUEST_TIMEOUT)
        except (WireError, OSError) as e:
          if "timed out" in str(e):
            req.violation("no answer within %.0fs (hang)" % REQUEST_TIMEOUT)
          for rest in early[i:] + later:
            model.cycle(rest.stmts, [UNKNOWN] * len(rest.stmts))
          ok = False
          break
        model.cycle(c.stmts, interpret(c, msgs), status=chr(msgs[-1].body[0]))
      if ok and later:
        ok = run_cycles(req, sess, model, later, False)
      self.finish_raw(req, sess, model, ok)
    finally:
      conn.close()


# --- rounds --------------------------------------------------------------------------------

def admin_connect(pg):
  """A direct connection to the torture database as its owner (trust)."""
  conn = psycopg2.connect(host=pg.host, port=pg.port, user=ROLE, dbname=DB, connect_timeout=10,
                          application_name="torture-admin")
  conn.autocommit = True
  return conn


def run_sql(pg, statements, retries=20):
  conn = admin_connect(pg)
  try:
    with conn.cursor() as cur:
      cur.execute("SET lock_timeout = '2s'")
      for s in statements:
        for attempt in range(retries):
          try:
            cur.execute(s)
            break
          except psycopg2.errors.LockNotAvailable:
            if attempt == retries - 1:
              raise
            time.sleep(0.1)
  finally:
    conn.close()


def seq_used(cur):
  out = {}
  for s in SEQS:
    cur.execute("SELECT last_value, is_called FROM %s" % s)
    last, called = cur.fetchone()
    out[s] = last if called else 0
  return out


def verify(pg, rnd, seq_before):
  """Checks the round against the database; returns the sequences' values now."""
  conn = admin_connect(pg)
  try:
    with conn.cursor() as cur:
      lo, hi = rnd.number * 10_000_000, (rnd.number + 1) * 10_000_000
      found = {}
      for t in TABLES:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (t,))
        if not cur.fetchone()[0]:
          continue
        cur.execute("SELECT wid, count(*) FROM %s WHERE wid >= %%s AND wid < %%s GROUP BY wid" % t,
                    (lo, hi))
        for wid, n in cur.fetchall():
          found[(t, wid)] = n
      for key, (fate, number) in sorted(rnd.fates.items()):
        n = found.pop(key, 0)
        bad = (fate == "present" and n != 1) or (fate == "absent" and n != 0) or \
            (fate == "maybe" and n > 1) or fate not in ("present", "absent", "maybe")
        if bad:
          rnd.violation("row %s wid=%d: client was told %s, database has %d (request #%d)"
                        % (key[0], key[1], {"present": "committed (expect 1)",
                                            "absent": "failed/rolled back (expect 0)",
                                            "maybe": "unknown (expect 0 or 1)"}.get(fate, fate),
                           n, number))
      for key, n in sorted(found.items()):
        rnd.violation("row %s wid=%d: %d row(s) nobody wrote" % (key[0], key[1], n))
      ids = {}
      for t in TABLES:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (t,))
        if cur.fetchone()[0]:
          cur.execute("SELECT wid, id FROM %s WHERE wid >= %%s AND wid < %%s" % t, (lo, hi))
          for wid, i in cur.fetchall():
            ids[(t, wid)] = i
      now = seq_used(cur)
      for s in SEQS:
        delta = now[s] - seq_before[s]
        want_lo, want_hi = rnd.seq[s]
        if not want_lo <= delta <= want_hi:
          rnd.violation("sequence %s advanced %d, PostgreSQL alone would have advanced it %s "
                        "(requests %s)"
                        % (s, delta, want_lo if want_lo == want_hi else "%d..%d" % (want_lo, want_hi),
                           ",".join("#%d" % n for n in sorted(rnd.seq_users[s]))))
          # A hint: rows whose id follows a value nobody's surviving row holds (a first run
          # whose value was lost, then the replay's).
          held = {i for k, i in ids.items() if rnd.write_seq.get(k) == s}
          gaps = set(range(seq_before[s] + 1, now[s] + 1)) - held
          for k, i in sorted(ids.items()):
            if rnd.write_seq.get(k) == s and i - 1 in gaps:
              rnd.hints.append("hint round=%d: %s wid=%d (request #%d) has %s id %d right after unused "
                            "value %d" % (rnd.number, k[0], k[1], rnd.fates.get(k, [0, 0])[1], s, i, i - 1))
      return now
  finally:
    conn.close()


def hold_and_cancel(pg, ep, rnd, wids, direct):
  """Holds a repair on a lock (ACCESS SHARE on anchor, whose dropped column the repair must
  ADD) and sends a request that needs it; cancels the request while it is held. The answer
  must come at once after the CancelRequest (DESIGN: 'A CancelRequest for a held request ends
  the wait at once'), not when the repair ends."""
  locker = psycopg2.connect(host=pg.host, port=pg.port, user=ROLE, dbname=DB, connect_timeout=10,
                            application_name="torture-locker")
  req = Request(rnd, "H", "hold+cancel", ep.name)
  model = TxModel(req)
  released = threading.Lock()

  def release():
    with released:
      if not locker.closed:
        locker.rollback()
        locker.close()
  timer = threading.Timer(HOLD_SECONDS, release)
  try:
    with locker.cursor() as cur:
      cur.execute("LOCK TABLE anchor IN ACCESS SHARE MODE")
    t_lock = time.monotonic()
    timer.start()
    conn, pid, key = raw_startup(ep)
    try:
      st = insert("ledger", "s_cancel", next(wids), "cancel", extra=True)
      conn.send(query(st.sql))
      time.sleep(0.4)
      conn.sock.settimeout(0.01)
      try:
        early = conn.sock.recv(1, socket.MSG_PEEK)
      except (socket.timeout, BlockingIOError):
        early = b""
      if early or direct:
        req.note("  answered before the cancel (not held)")
        t_cancel = None
      else:
        t_cancel = time.monotonic()
        cancel(ep, pid, key)
      try:
        msgs = conn.read_until({b"Z"}, timeout=REQUEST_TIMEOUT)
      except (WireError, OSError) as e:
        if "timed out" in str(e):
          req.violation("no answer within %.0fs (hang)" % REQUEST_TIMEOUT)
        model.cycle([st], [UNKNOWN])
        return
      took = time.monotonic() - (t_cancel or t_lock)
      c = Cycle("Q", [st])
      model.cycle([st], interpret(c, msgs), status=chr(msgs[-1].body[0]))
      rnd.holds.append((t_cancel is not None, took if t_cancel is not None else None))
      if t_cancel is not None:
        req.note("  answered %.2fs after the CancelRequest" % took)
        if took > CANCEL_SLACK:
          req.violation("CancelRequest for a held request ignored: answered %.2fs after it "
                        "(--repair-wait %ss, lock held %.1fs)" % (took, REPAIR_WAIT, HOLD_SECONDS))
      conn.send(message(b"X"))
    finally:
      conn.close()
      left = HOLD_SECONDS - (time.monotonic() - t_lock)
      if left > 0:
        time.sleep(left)
  finally:
    timer.cancel()
    release()
    req.done()


class Torture:
  def __init__(self, pg, endpoints, seed, seconds, requests=0, workers=5, direct=False,
               guards=(), out=sys.stdout, rerun=""):
    self.pg = pg
    self.endpoints = endpoints
    self.seed = seed
    self.seconds = seconds
    self.requests = requests
    self.nworkers = workers
    self.direct = direct
    self.guards = list(guards)
    self.out = out
    self.rerun = rerun
    self.violations = []
    self.total_requests = 0
    self.rounds = 0
    self.errors = {}
    self.holds = []
    self.verbose = bool(os.environ.get("TORTURE_VERBOSE"))
    self.restart = None      # () -> a new ready pgguard, to replace one that died
    self.styles = None       # request styles to use (default: all)
    self.holds_on = True
    self.crashed = []

  def say(self, text):
    print(text, file=self.out, flush=True)

  def run(self):
    rng = random.Random(self.seed)
    workers = [Worker(i, self.endpoints, self.seed, self.styles) for i in range(self.nworkers)]
    conn = admin_connect(self.pg)
    with conn.cursor() as cur:
      seq_before = seq_used(cur)
    conn.close()
    t_end = time.monotonic() + self.seconds
    number = 0
    try:
      while time.monotonic() < t_end and (not self.requests or self.total_requests < self.requests):
        number += 1
        rnd = Round(number)
        broken = sorted(k for k in BREAKS if rng.random() < 0.45) or [rng.choice(sorted(BREAKS))]
        if "label" in broken and "type" in broken:
          broken.remove(rng.choice(["label", "type"]))
        hold = number % 4 == 0 and self.seconds >= 10 and self.holds_on
        if hold and "extra" not in broken:
          broken.append("extra")
        run_sql(self.pg, [s for k in broken for s in BREAKS[k]])
        if "label" in broken:
          self.wait_label_drift()
        restorer = None
        if self.direct:  # the control run: something else repairs, a moment later
          restorer = threading.Timer(0.2, run_sql, args=(self.pg, RESTORE))
          restorer.start()
        wids = itertools.count(number * 10_000_000 + 1)
        quota = 12
        if self.requests:
          quota = max(1, min(quota, (self.requests - self.total_requests + self.nworkers - 1)
                             // self.nworkers))
        round_end = min(t_end, time.monotonic() + 20)
        threads = [threading.Thread(target=w.run_round, args=(rnd, wids, quota, round_end),
                                    daemon=True) for w in workers]
        if hold:
          threads.append(threading.Thread(
            target=hold_and_cancel, args=(self.pg, rng.choice(self.endpoints), rnd, wids,
                                          self.direct), daemon=True))
        for t in threads:
          t.start()
        for t in threads:
          t.join(REQUEST_TIMEOUT * 6 + 30)
          if t.is_alive():
            rnd.violation("a client thread is stuck after %ds" % (REQUEST_TIMEOUT * 6 + 30))
        if restorer is not None:
          restorer.join()
        for w in workers:  # nothing may stay open across the verification and the next drop
          for s in list(w.raw.values()):
            if s.broken:
              s.close()
        seq_before = verify(self.pg, rnd, seq_before)
        for i, g in enumerate(self.guards):
          if g.returncode is not None:
            rnd.violation("pgguard pid %d exited with %r (log %s)" % (g.pid, g.returncode, g.logpath))
            if self.restart is not None:  # carry on with a fresh one so the run goes on
              self.crashed.append(g)
              self.guards[i] = ng = self.restart()
              self.endpoints[i].port = ng.port
        self.rounds = number
        self.total_requests += rnd.requests
        self.holds += rnd.holds
        for k, v in rnd.errors.items():
          self.errors[k] = self.errors.get(k, 0) + v
        if self.verbose:
          self.say("---- round %d (dropped %s)\n%s" % (number, ",".join(broken), "\n".join(rnd.log)))
        if rnd.violations:
          self.report(rnd, broken)
          self.violations += rnd.violations
          if self.restart is None and any("exited" in v for v in rnd.violations):
            break
    finally:
      for w in workers:
        w.close()
    return self.summary()

  def wait_label_drift(self, timeout=3.0):
    """22P02 is guarded only while pgguard's drift holds a missing enum label: let the drift
    check (every 0.5 s) see the dropped label before the round starts."""
    deadline = time.monotonic() + timeout
    for g in self.guards:
      while time.monotonic() < deadline:
        try:
          v = g.metrics().get_value("pgguard_schema_drift_objects", kind="enum_label",
                                    state="missing")
        except Exception:
          break
        if v:
          break
        time.sleep(0.05)

  def report(self, rnd, broken):
    self.say("---- torture: round %d (dropped %s): %d violation(s)"
             % (rnd.number, ",".join(broken), len(rnd.violations)))
    for v in rnd.violations:
      self.say("VIOLATION " + v)
    for h in rnd.hints:
      self.say(h)
    # The requests named by the violations, else the whole round.
    named = set(int(n) for v in rnd.violations for n in re.findall(r"#(\d+)", v))
    self.say("---- request log of round %d%s:" % (rnd.number, "" if not named else
                                                   " (requests named above)"))
    for entry in rnd.log:
      n = int(re.match(r"#(\d+)", entry).group(1))
      if not named or n in named:
        self.say(entry)
    self.say("---- rerun: %s" % self.rerun)

  def summary(self):
    replays = repairs = 0
    detail = ""
    if self.guards:
      rp, rr = {}, {}
      for g in self.guards:
        try:
          m = g.metrics()
        except Exception:
          continue
        for (name, labels), v in m.items():
          d = dict(labels)
          if name == "pgguard_replays_total":
            rp[d.get("result")] = rp.get(d.get("result"), 0) + v
          elif name == "pgguard_repairs_total":
            rr[d.get("result")] = rr.get(d.get("result"), 0) + v
      replays = int(rp.get("succeeded", 0))
      repairs = int(rr.get("applied", 0))
      detail = " replays_by_result=%s repairs_by_result=%s" % (
        ",".join("%s:%d" % kv for kv in sorted(rp.items())),
        ",".join("%s:%d" % kv for kv in sorted(rr.items())))
    errs = ",".join("%s:%d" % kv for kv in sorted(self.errors.items(), key=lambda kv: str(kv[0])))
    cancelled = [t for held, t in self.holds if held]
    holds = " crashes=%d holds=%d cancelled=%d slowest_cancel_s=%s" % (len(self.crashed),
      len(self.holds), len(cancelled), "%.2f" % max(cancelled) if cancelled else "-")
    line = ("torture: seed=%s requests=%d rounds=%d violations=%d replays=%d repairs=%d%s%s errors=%s"
            % (self.seed, self.total_requests, self.rounds, len(self.violations), replays, repairs,
               detail, holds, errs or "-"))
    self.say(line)
    return line


# --- set-up --------------------------------------------------------------------------------

def prepare(pg, schema_dir):
  """The torture database at the desired schema (owned by the trust role), its live extras,
  and the desired schema file pgguard loads."""
  from guard_fixtures import make_db
  pg.create_role(ROLE, None)
  make_db(pg, DB, DESIRED, LIVE_EXTRAS, role={"user": ROLE, "password": None})
  path = Path(schema_dir) / "torture_desired.sql"
  path.write_text(DESIRED)
  return path


def guard_args(pg, schema_path):
  return ["--schema", str(schema_path), "--admin-url", pg.url(dbname=DB),
          "--ready-requires-guard"] + PGGUARD_ARGS


def run_torture(pg, start_pgguard, schema_dir, seed, seconds, requests=0, direct=False,
                workers=5, rerun="", out=sys.stdout, styles=None, holds=True):
  """The whole run; start_pgguard(args) -> a started conftest.Pgguard. Returns the Torture."""
  from guard_fixtures import wait_ready
  schema = prepare(pg, schema_dir)
  guards = []
  if direct:
    endpoints = [Endpoint("postgres", pg.host, pg.port)]
  else:
    for _ in range(2):
      guards.append(start_pgguard(guard_args(pg, schema)))
    for g in guards:
      wait_ready(g, timeout=60)
    endpoints = [Endpoint("pgguard%d" % i, g.host, g.port) for i, g in enumerate(guards)]
  t = Torture(pg, endpoints, seed, seconds, requests=requests, workers=workers, direct=direct,
              guards=guards, out=out, rerun=rerun)
  t.styles = styles
  t.holds_on = holds
  if not direct:
    def restart():
      g = start_pgguard(guard_args(pg, schema))
      wait_ready(g, timeout=60)
      return g
    t.restart = restart
  t.run()
  return t


def rerun_command(seed, seconds, requests, direct):
  cmd = ["/usr/bin/python3", "tests/integration/torture.py", "--seed", str(seed)]
  if requests:
    cmd += ["--requests", str(requests)]
  else:
    cmd += ["--seconds", str(seconds)]
  if direct:
    cmd.append("--direct")
  return "cd %s && PGGUARD_BIN=%s %s" % (
    shlex.quote(str(HERE.parents[1])),
    shlex.quote(os.environ.get("PGGUARD_BIN") or str(HERE.parents[1] / "build" / "pgguard")),
    " ".join(cmd))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument("--seed", type=int, default=None)
  ap.add_argument("--seconds", type=float, default=60)
  ap.add_argument("--requests", type=int, default=0, help="stop after about this many requests")
  ap.add_argument("--long", action="store_true", help="run for 30 minutes")
  ap.add_argument("--workers", type=int, default=5)
  ap.add_argument("--direct", action="store_true",
                  help="control run against PostgreSQL alone (validates the model)")
  ap.add_argument("--pgguard", default=os.environ.get("PGGUARD_BIN"))
  ap.add_argument("--styles", default="",
                  help="comma-separated subset of: " + ",".join(sorted(set(STYLES))))
  ap.add_argument("--no-holds", action="store_true", help="no lock-held repairs and cancels")
  ap.add_argument("--gdb", action="store_true",
                  help="run pgguard under gdb -batch: a crash prints its backtrace into its log")
  args = ap.parse_args(argv)
  seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
  seconds = 1800 if args.long else args.seconds
  if args.requests and not args.long and args.seconds == 60:
    seconds = 10 ** 9
  binary = args.pgguard or str(HERE.parents[1] / "build" / "pgguard")

  from conftest import Pgguard, client_env, free_port, wait_port
  from guard_fixtures import private_postgres
  pg, cleanup = private_postgres("max_connections = 200")
  work = Path(tempfile.mkdtemp(prefix="pgg-torture-"))
  started = []

  def start_pgguard(extra):
    port, admin = free_port(), free_port()
    argv = [binary, "--listen", "127.0.0.1:%d" % port, "--upstream", "%s:%d" % (pg.host, pg.port),
            "--admin-listen", "127.0.0.1:%d" % admin, "--shutdown-timeout", "2"] + list(extra)
    logpath = work / ("pgguard-%d.log" % len(started))
    cmd = argv
    if args.gdb:
      cmd = ["gdb", "-q", "-batch", "-ex", "handle SIGPIPE nostop noprint pass", "-ex", "run",
             "-ex", "thread apply all bt full", "--args"] + argv
    with open(logpath, "wb") as logf:
      proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                              stderr=subprocess.STDOUT, env=client_env(), cwd=str(work))
    inst = Pgguard(proc, argv, port, admin, logpath, dict(pg.defaults))
    started.append(inst)
    if not wait_port("127.0.0.1", port, 10, proc):
      raise SystemExit("pgguard did not start: %s\n%s" % (argv, inst.log[-3000:]))
    return inst

  try:
    t = run_torture(pg, start_pgguard, work, seed, seconds, requests=args.requests,
                    direct=args.direct, workers=args.workers,
                    styles=[x for x in args.styles.split(",") if x] or None,
                    holds=not args.no_holds,
                    rerun=rerun_command(seed, args.seconds, args.requests, args.direct)
                    + (" --styles " + args.styles if args.styles else "")
                    + (" --no-holds" if args.no_holds else ""))
    if t.violations:
      for g in started:
        print("---- pgguard log %s (tail)\n%s" % (g.logpath, g.log[-3000:]))
      print("---- pgguard logs kept in %s" % work)
  finally:
    for g in started:
      if g.proc.poll() is None:
        g.proc.send_signal(signal.SIGTERM)
        try:
          g.proc.wait(10)
        except subprocess.TimeoutExpired:
          g.proc.kill()
    cleanup()
  if not t.violations and not os.environ.get("TORTURE_KEEP"):
    shutil.rmtree(work, ignore_errors=True)
  return 1 if t.violations else 0


if __name__ == "__main__":
  sys.exit(main())
