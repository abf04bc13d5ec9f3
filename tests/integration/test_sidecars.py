# Many pgguard sidecars in front of one database (DESIGN.md "Scale beyond one machine"): when
# all their clients meet the same missing table at the same moment, the database is repaired
# exactly once (advisory lock), and no client sees an error.
import threading
import time

import psycopg2
import pytest

from guard_fixtures import REPLAY_SCHEMA, make_db, private_postgres, start_guarded, tables

SIDECARS = 4
CLIENTS_PER_SIDECAR = 50


@pytest.fixture(scope="module")
def bigpg():
  """A cluster of its own: 200 clients need more connections than the shared one allows."""
  server, cleanup = private_postgres("max_connections = 300\nshared_buffers = '64MB'")
  try:
    yield server
  finally:
    cleanup()


@pytest.mark.slow
def test_four_sidecars_two_hundred_clients_repair_once_and_nobody_errors(bigpg, pgguard):
  db = "sidecars"
  kw = make_db(bigpg, db, REPLAY_SCHEMA.read_text(), ['DROP TABLE "widgets"'])
  guards = [start_guarded(pgguard, bigpg, db, "--repair-wait", "30", upstream_pg=bigpg)
            for _ in range(SIDECARS)]
  for g in guards:
    assert g.metrics().get_value("pgguard_schema_drift_objects", kind="table", state="missing") == 1

  n = SIDECARS * CLIENTS_PER_SIDECAR
  barrier = threading.Barrier(n, timeout=60)
  results = [None] * n

  def client(i):
    g = guards[i % SIDECARS]
    conn = None
    try:
      conn = psycopg2.connect(g.dsn(**kw))
      conn.autocommit = True
      cur = conn.cursor()
      barrier.wait()
      t0 = time.monotonic()
      cur.execute("INSERT INTO widgets (name) VALUES (%s) RETURNING name", ("client-%03d" % i,))
      rows = cur.fetchall()
      results[i] = ("ok", rows, time.monotonic() - t0)
    except Exception as e:  # collected and asserted by the main thread
      results[i] = ("error", "%s: %s" % (type(e).__name__, str(e).strip()), None)
      try:
        barrier.abort()
      except threading.BrokenBarrierError:
        pass
    finally:
      if conn is not None:
        conn.close()

  threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(90)
  assert not any(t.is_alive() for t in threads), "clients still running after 90 s"

  errors = [(i, r) for i, r in enumerate(results) if r is None or r[0] != "ok"]
  # A failing client breaks the barrier for the others: show the cause first.
  errors.sort(key=lambda e: "BrokenBarrierError" in str(e[1]))
  logs = "\n".join("---- sidecar %d\n%s" % (k, g.log[-2500:]) for k, g in enumerate(guards))
  assert not errors, "%d clients failed, e.g. %r\n%s" % (len(errors), errors[:5], logs)
  for i, r in enumerate(results):
    assert r[1] == [("client-%03d" % i,)]

  metrics = [g.metrics() for g in guards]
  applied = sum(m.get_value("pgguard_repairs_total", result="applied") for m in metrics)
  failed = sum(m.get_value("pgguard_repairs_total", result="failed") for m in metrics)
  replay_failed = sum(m.get_value("pgguard_replays_total", result="failed") for m in metrics)
  assert applied == 1, logs
  assert failed == 0 and replay_failed == 0, logs
  for m in metrics:
    assert m.get_value("pgguard_schema_drift_objects", kind="table", state="missing") == 0

  # One table, every client's row exactly once.
  assert tables(bigpg, db).count("public.widgets") == 1
  names = [r[0] for r in bigpg.sql("SELECT name FROM widgets ORDER BY name", db=db)]
  assert names == ["client-%03d" % i for i in range(n)]
  slowest = max(r[2] for r in results)
  print("sidecars: %d clients, slowest request %.0f ms, replays per sidecar %r"
        % (n, slowest * 1000,
           [m.get_value("pgguard_replays_total", result="succeeded") for m in metrics]))
