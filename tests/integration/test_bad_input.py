# Bad configuration and hostile or broken clients: pgguard says what is wrong, answers protocol
# violations as PostgreSQL does (FATAL 08P01 and a close, or for an invalid startup length a
# close without a word), and keeps serving every other client.
import socket
import struct

import psycopg2
import pytest

from conftest import free_port
from pgwire import PROTOCOL_3_0, RawConn, ServerError, error_fields


def assert_still_serving(gg, appdb):
  conn = gg.connect(**appdb)
  try:
    with conn.cursor() as cur:
      cur.execute("SELECT 'still serving'")
      assert cur.fetchone() == ("still serving",)
  finally:
    conn.close()


def expect_fatal_and_close(raw, sqlstate="08P01"):
  msgs = raw.read_to_eof(timeout=5)
  fields = error_fields(msgs)
  assert fields is not None, "expected an ErrorResponse before the close, got %r" % msgs
  assert fields.get("S") == "FATAL", fields
  assert fields.get("C") == sqlstate, fields
  return fields


def test_unknown_flag_exits_2_naming_the_flag(pgguard):
  gg = pgguard("--no-such-flag", expect_fail=True)
  assert gg.returncode == 2, gg.log
  assert "--no-such-flag" in gg.log


def test_missing_value_for_flag_exits_2(pgguard):
  gg = pgguard("--max-message-size", expect_fail=True)
  assert gg.returncode == 2, gg.log
  assert "--max-message-size" in gg.log


def test_listen_address_in_use_exits_1_with_message(pgguard):
  holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  try:
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    gg = pgguard(listen="127.0.0.1:%d" % port, expect_fail=True)
    assert gg.returncode == 1, gg.log
    assert "127.0.0.1:%d" % port in gg.log
    assert "in use" in gg.log.lower() or "EADDRINUSE" in gg.log
  finally:
    holder.close()


def test_unreachable_upstream_gives_client_fatal_08006_naming_upstream(pgguard, appdb):
  dead = "127.0.0.1:%d" % free_port()
  gg = pgguard(upstream=dead)
  with RawConn(gg.host, gg.port) as raw:
    with pytest.raises(ServerError) as ei:
      raw.startup(appdb["user"], appdb["dbname"], appdb["password"])
    assert raw.wait_closed(timeout=5)
  assert ei.value.fields["S"] == "FATAL"
  assert ei.value.fields["C"] == "08006"
  assert dead in ei.value.fields["M"]
  with pytest.raises(psycopg2.OperationalError) as ei2:
    gg.connect(**appdb)
  assert dead in str(ei2.value)


def oversized_startup_packet():
  # 10005 bytes in all: a body one byte over PostgreSQL's MAX_STARTUP_PACKET_LENGTH (10000).
  body = struct.pack("!i", PROTOCOL_3_0) + b"user\0" + b"u" * (10005 - 4 - 4 - 5 - 2) + b"\0\0"
  packet = struct.pack("!i", 4 + len(body)) + body
  assert len(packet) == 10005
  return packet


@pytest.mark.parametrize("via", ["direct", "pgguard"])
@pytest.mark.parametrize("what", ["oversized", "http", "below_8"])
def test_startup_packet_with_an_invalid_length_is_closed_without_a_word_as_postgres_does(
    pg, pgguard, appdb, via, what):
  """PostgreSQL answers an invalid startup length (too long, an HTTP request read as one, under
  8) by logging it and closing: no ErrorResponse. node-postgres' quick-disconnect test relies on
  exactly that."""
  ep = pg if via == "direct" else pgguard()
  data = {"oversized": oversized_startup_packet(),
          "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
          "below_8": struct.pack("!i", 3)}[what]
  with RawConn(ep.host, ep.port) as raw:
    raw.send(data)
    assert raw.read_to_eof(timeout=5) == []
  assert_still_serving(ep, appdb)
  if via == "pgguard":
    assert "invalid length of startup packet" in ep.log


def test_message_with_length_3_gets_fatal_08P01_and_close(pg, pgguard, appdb):
  gg = pgguard()
  app = "bad_len_3"
  with RawConn(gg.host, gg.port) as raw:
    raw.startup(appdb["user"], appdb["dbname"], appdb["password"], extra={"application_name": app})
    raw.send(b"Q" + struct.pack("!i", 3))
    expect_fatal_and_close(raw)
  # The server session behind the broken client goes away too.
  pg.wait_backends(app, 0, timeout=5)
  assert_still_serving(gg, appdb)


def test_message_above_max_message_size_gets_fatal_08P01_and_close(pg, pgguard, appdb):
  limit = 1024 * 1024
  gg = pgguard("--max-message-size", str(limit))
  with RawConn(gg.host, gg.port) as raw:
    raw.startup(appdb["user"], appdb["dbname"], appdb["password"])
    # Only the header: pgguard must refuse on the length alone, not wait for 2 MiB of body.
    raw.send(b"Q" + struct.pack("!i", 2 * limit))
    expect_fatal_and_close(raw)
  assert_still_serving(gg, appdb)


def test_message_below_max_message_size_passes(pgguard, appdb):
  limit = 1024 * 1024
  gg = pgguard("--max-message-size", str(limit))
  with RawConn(gg.host, gg.port) as raw:
    raw.startup(appdb["user"], appdb["dbname"], appdb["password"])
    text = "x" * (limit // 2)
    msgs = raw.simple_query("SELECT length('%s')" % text)
    rows = [m for m in msgs if m.type == b"D"]
    assert len(rows) == 1 and rows[0].body.endswith(str(limit // 2).encode())


def test_garbage_after_startup_does_not_disturb_other_sessions(pgguard, appdb):
  gg = pgguard()
  bystander = gg.connect(**appdb)
  try:
    with RawConn(gg.host, gg.port) as raw:
      raw.startup(appdb["user"], appdb["dbname"], appdb["password"])
      raw.send(b"Q" + struct.pack("!i", -5) + b"\xff" * 64)
      expect_fatal_and_close(raw)
    with bystander.cursor() as cur:
      cur.execute("SELECT 1")
      assert cur.fetchone() == (1,)
  finally:
    bystander.close()
