# Backpressure: a client that reads a ~500 MB result slowly makes PostgreSQL wait (ClientWrite)
# instead of making pgguard buffer the result; pgguard's memory stays bounded meanwhile.
import socket
import time

from conftest import is_sanitized
from pgwire import RawConn, query

RESULT_SQL = "COPY (SELECT repeat('x', 1000) FROM generate_series(1, 500000)) TO STDOUT"
RSS_LIMIT_KIB = 64 * 1024
# ASan's shadow memory and allocator quarantine (16 MB here) add a fixed overhead; what the test
# guards against (buffering hundreds of MB) still shows far above this.
ASAN_EXTRA_KIB = 96 * 1024


def test_slow_reader_of_500mb_result_keeps_pgguard_rss_bounded(pg, pgguard, appdb):
  gg = pgguard()
  limit = RSS_LIMIT_KIB + (ASAN_EXTRA_KIB if is_sanitized(gg.argv[0]) else 0)
  app = "backpressure"
  raw = RawConn(gg.host, gg.port)
  try:
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    raw.startup(appdb["user"], appdb["dbname"], appdb["password"], extra={"application_name": app})
    baseline = gg.rss_kib()
    raw.send(query(RESULT_SQL))

    # Read about 8 MB/s for 4 seconds: PostgreSQL produces this result many times faster, so
    # without backpressure pgguard would hold hundreds of MB by the end.
    received = 0
    peak = baseline
    saw_client_write = False
    raw.sock.settimeout(2)
    started = time.monotonic()
    while time.monotonic() - started < 4.0:
      chunk = raw.sock.recv(16 * 1024)
      assert chunk, "pgguard closed the connection mid-result; log:\n" + gg.log[-2000:]
      received += len(chunk)
      time.sleep(0.002)
      peak = max(peak, gg.rss_kib())
      if not saw_client_write and received > 4 * 1024 * 1024:
        rows = pg.backends(app)
        saw_client_write = any(r[2] == "ClientWrite" for r in rows)
    print("backpressure: received %d MB, baseline %d KiB, peak %d KiB, ClientWrite seen %s" % (received >> 20, baseline, peak, saw_client_write))
    assert received > 2 * 1024 * 1024, "result did not stream (%d bytes)" % received
    assert received < 400 * 1024 * 1024, "reader was not slow enough to test anything"
    assert peak < limit, ("pgguard RSS peaked at %d KiB (baseline %d KiB, limit %d KiB) while a "
                          "slow client had read %d MB" % (peak, baseline, limit, received >> 20))
    # The server is blocked writing to pgguard: the pressure reached PostgreSQL.
    if not saw_client_write:
      deadline = time.monotonic() + 3
      while time.monotonic() < deadline and not saw_client_write:
        saw_client_write = any(r[2] == "ClientWrite" for r in pg.backends(app))
        time.sleep(0.05)
    assert saw_client_write, "backend never waited on ClientWrite: %r" % pg.backends(app)
  finally:
    raw.close()

  # The abandoned result must not keep the server busy, and pgguard still serves others.
  pg.wait_backends(app, 0, timeout=10)
  conn = gg.connect(**appdb)
  with conn.cursor() as cur:
    cur.execute("SELECT 'after'")
    assert cur.fetchone() == ("after",)
  conn.close()


def test_fast_reader_receives_whole_500mb_result(pg, pgguard, appdb):
  gg = pgguard()
  with RawConn(gg.host, gg.port) as raw:
    raw.startup(appdb["user"], appdb["dbname"], appdb["password"])
    raw.send(query(RESULT_SQL))
    # Count bytes without keeping them; the result ends with CommandComplete "COPY 500000".
    tail = b""
    total = 0
    raw.sock.settimeout(30)
    started = time.monotonic()
    while b"COPY 500000\0Z" not in tail:
      assert time.monotonic() - started < 60, "result did not finish in 60s"
      chunk = raw.sock.recv(1 << 20)
      assert chunk, "connection closed after %d bytes" % total
      total += len(chunk)
      tail = (tail + chunk)[-64:]
  # 500000 CopyData messages of 1001 bytes plus 5-byte headers, and the framing around them.
  assert total > 500000 * 1006
