# Byte-for-byte transparency: the same deterministic session, run direct and through pgguard,
# yields identical byte streams to the client except for BackendKeyData's process id and key.
import struct

import pytest

from pgwire import RawConn, message, query, TERMINATE

SIMPLE = ("SELECT 1 AS one, 'a'::text AS t, NULL::int AS n; "
          "SELECT g, repeat('r', g) FROM generate_series(1, 5) g; "
          "DO $$ BEGIN RAISE NOTICE 'notice %', 7; END $$; "
          "SELECT 1/0; SELECT 'never'")


def extended_batch():
  """Parse, Describe statement, Bind/Describe/Execute twice plus a failing Parse, in one pipeline ending in Sync."""
  out = message(b"P", b"s1\0SELECT $1::int + 1 AS next, $2::text AS label\0" + struct.pack("!h", 0))
  out += message(b"D", b"Ss1\0")
  for v in (b"41", b"99"):
    bind = b"\0s1\0" + struct.pack("!h", 0) + struct.pack("!h", 2)
    bind += struct.pack("!i", len(v)) + v + struct.pack("!i", 3) + b"abc"
    bind += struct.pack("!h", 0)
    out += message(b"B", bind)
    out += message(b"D", b"P\0")
    out += message(b"E", b"\0" + struct.pack("!i", 0))
  out += message(b"S")
  out += message(b"P", b"bad\0SELECT * FROM no_such_rel_bytes\0" + struct.pack("!h", 0))
  out += message(b"S")
  return out


def run_session(endpoint):
  """Runs the fixed session; returns the raw bytes received."""
  with RawConn(endpoint.host, endpoint.port) as c:
    c.startup("wire_trust", "postgres", extra={"application_name": "same_bytes",
                                               "client_encoding": "UTF8"})
    c.simple_query(SIMPLE)
    c.simple_query("")
    # No tables created here: a new table's OID would differ between the two runs.
    c.simple_query("BEGIN; SET LOCAL work_mem = '8MB'; SELECT x FROM (VALUES (1), (2)) v(x)")
    c.simple_query("SELECT current_setting('work_mem'); SELECT nosuchcol FROM (VALUES (1)) v(x)")
    c.simple_query("ROLLBACK")
    c.send(extended_batch())
    c.read_until({b"Z"})
    c.read_until({b"Z"})
    c.send(query("COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT"))
    c.read_until({b"Z"})
    c.send(TERMINATE)
    c.read_to_eof(timeout=5)
    return bytes(c.received)


def mask_backend_key(stream):
  """Splits the stream into messages and zeroes BackendKeyData's body, which differs per session."""
  out, i = [], 0
  while i < len(stream):
    mtype = stream[i:i + 1]
    (length,) = struct.unpack("!i", stream[i + 1:i + 5])
    raw = stream[i:i + 1 + length]
    if mtype == b"K":
      raw = raw[:5] + b"\0" * (length - 4)
    out.append(raw)
    i += 1 + length
  return out


@pytest.fixture(scope="module")
def wire_role(pg):
  pg.create_role("wire_trust", None)


def test_session_bytes_identical_with_and_without_pgguard_except_backend_key(pg, pgguard, wire_role):
  direct = mask_backend_key(run_session(pg))
  through = mask_backend_key(run_session(pgguard()))
  types = [m[:1] for m in direct]
  # The session really covers what it claims to.
  for t in (b"R", b"S", b"K", b"Z", b"T", b"D", b"C", b"N", b"E", b"I", b"1", b"2", b"t", b"H", b"d", b"c"):
    assert t in types, "direct session lacks %r" % t
  for n, (a, b) in enumerate(zip(through, direct)):
    assert a == b, "message %d differs:\nthrough pgguard: %r\ndirect:          %r" % (n, a, b)
  assert len(through) == len(direct)
