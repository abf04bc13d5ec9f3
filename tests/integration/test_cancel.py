# CancelRequest through pgguard: libpq's PQcancel interrupts the running query on the right
# backend, and a request with a key nobody holds cancels nothing.
import struct
import threading
import time

import psycopg2.errors
import pytest

from pgwire import CANCEL_REQUEST_CODE, RawConn


def test_cancel_from_another_thread_yields_57014_within_a_second(target, appdb):
  c = target.connect(**appdb)
  try:
    timer = threading.Timer(0.5, c.cancel)
    started = time.monotonic()
    timer.start()
    with c.cursor() as cur:
      with pytest.raises(psycopg2.errors.QueryCanceled) as ei:
        cur.execute("SELECT pg_sleep(30)")
      elapsed = time.monotonic() - started
      assert ei.value.pgcode == "57014"
      assert "canceling statement due to user request" in str(ei.value)
      assert elapsed < 1.5, "cancel took %.2fs after the query started" % elapsed
      cur.execute("SELECT 'alive'")
      assert cur.fetchone() == ("alive",)
    timer.join()
  finally:
    c.close()


def test_cancel_with_wrong_key_cancels_nothing(target, appdb):
  c = target.connect(**appdb)
  try:
    def bogus_cancel():
      with RawConn(target.host, target.port) as raw:
        raw.send(struct.pack("!iiii", 16, CANCEL_REQUEST_CODE, 123456789, 987654321))
        raw.wait_closed(timeout=5)
    timer = threading.Timer(0.2, bogus_cancel)
    timer.start()
    with c.cursor() as cur:
      cur.execute("SELECT pg_sleep(1), 'finished'")
      assert cur.fetchone() == ("", "finished")
    timer.join()
  finally:
    c.close()
