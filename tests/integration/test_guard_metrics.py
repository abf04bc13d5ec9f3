# The guard's observable surface: /metrics in valid Prometheus text format (promtool), the /drift
# report, readiness, and what a broken desired-schema file does with and without --strict.
import json
import re
import shutil
import time

import psycopg2.errors
import pytest

from conftest import run
from guard_fixtures import (REPLAY_SCHEMA, make_db, metric, start_guarded, tables, wait_ready)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
DESIRED = REPLAY_SCHEMA.read_text()
DRIFTED = ['DROP TABLE "widgets"', 'ALTER TABLE "existing" DROP COLUMN "extra"',
           'DROP TYPE "priority"']

# Documented in DESIGN.md "Metrics"; each must be exposed with HELP and TYPE.
DOCUMENTED = {
  "pgguard_schema_drift_objects": "gauge",
  "pgguard_schema_drift_check_timestamp_seconds": "gauge",
  "pgguard_undefined_object_errors_total": "counter",
  "pgguard_repairs_total": "counter",
  "pgguard_repair_duration_seconds": "histogram",
  "pgguard_replays_total": "counter",
  "pgguard_client_connections": "gauge",
  "pgguard_server_connections": "gauge",
  "pgguard_client_connections_total": "counter",
  "pgguard_bytes_total": "counter",
  "pgguard_request_duration_seconds": "histogram",
  "pgguard_upstream_up": "gauge",
  "pgguard_build_info": "gauge",
  "pgguard_schema_guard_active": "gauge",
}

# A desired-schema file whose third line is not SQL.
BAD_SCHEMA = 'CREATE TABLE "fine" ("id" INTEGER NOT NULL);\n\nCREATE TABLEZ "broken" ("id" INTEGER);\n'


def promtool_check(text):
  if not shutil.which(PROMTOOL):
    pytest.fail("promtool is missing: apt-get install prometheus")
  r = run([PROMTOOL, "check", "metrics"], input=text.encode(), timeout=30)
  return r.returncode, (r.stdout.decode() + r.stderr.decode())


def test_metrics_pass_promtool_with_the_guard_on_and_after_a_repair(pg, pgguard):
  make_db(pg, "gm_promtool", DESIRED, DRIFTED)
  g = start_guarded(pgguard, pg, "gm_promtool")
  status, body = g.http_get("/metrics")
  assert status == 200
  rc, out = promtool_check(body)
  assert rc == 0, out + "\n" + body
  for name, kind in DOCUMENTED.items():
    assert re.search(r"^# TYPE %s %s$" % (name, kind), body, re.M), name
    assert re.search(r"^# HELP %s \S" % name, body, re.M), name

  conn = g.connect()
  with conn.cursor() as cur:
    cur.execute("SELECT count(*) FROM widgets")
    assert cur.fetchone()[0] == 0
  conn.close()
  status, body = g.http_get("/metrics")
  rc, out = promtool_check(body)
  assert rc == 0, out + "\n" + body
  m = g.metrics()
  assert m.get_value("pgguard_repairs_total", result="applied") == 1
  assert m.get_value("pgguard_repair_duration_seconds_count") == 1
  assert m.get_value("pgguard_repair_duration_seconds_bucket", le="+Inf") == 1
  assert m.get_value("pgguard_replays_total", result="succeeded") == 1
  assert m.get_value("pgguard_undefined_object_errors_total", sqlstate="42P01") == 1
  assert m.get_value("pgguard_schema_guard_active") == 1
  assert m.get_value("pgguard_upstream_up") == 1
  assert all(v == 0 for (n, labels), v in m.items()
             if n == "pgguard_schema_drift_objects" and ("state", "missing") in labels)
  assert abs(m.get_value("pgguard_schema_drift_check_timestamp_seconds") - time.time()) < 60
  # No query text ever becomes a label value.
  assert "widgets" not in body and "SELECT" not in body


def test_drift_report_is_json_listing_the_missing_objects(pg, pgguard):
  make_db(pg, "gm_drift", DESIRED, DRIFTED)
  g = start_guarded(pgguard, pg, "gm_drift")
  status, body = g.http_get("/drift")
  assert status == 200
  report = json.loads(body)
  missing = sorted((i["kind"], i["schema"], i.get("parent"), i["name"])
                   for i in report["items"] if i["state"] == "missing")
  assert ("table", "public", None, "widgets") in missing, report
  assert ("column", "public", "existing", "extra") in missing, report
  assert ("enum", "public", None, "priority") in missing, report
  assert report["counts"]["table"]["missing"] == 1
  assert report["counts"]["column"]["missing"] >= 1
  assert report["counts"]["enum"]["missing"] == 1
  # When the report was made, and no failure so far.
  assert time.time() - 60 < report["checked_at"] <= time.time() + 1, report
  assert report["last_error"] is None and report["last_error_at"] is None, report
  assert report["missing"] >= 3
  assert not any(i["state"] == "missing" and i["name"] in ("existing", "accounts", "mood_log")
                 and i["kind"] == "table" for i in report["items"])
  # The same numbers as the metrics.
  assert metric(g, "pgguard_schema_drift_objects", kind="table", state="missing") == 1
  assert metric(g, "pgguard_schema_drift_objects", kind="enum", state="missing") == 1

  conn = g.connect()
  with conn.cursor() as cur:
    cur.execute("SELECT 'low'::priority::text")
    assert cur.fetchone()[0] == "low"
  conn.close()
  report = json.loads(g.http_get("/drift")[1])
  assert report["missing"] == 0, report
  assert not [i for i in report["items"] if i["state"] == "missing"]


def test_bad_schema_file_leaves_readyz_503_and_proxies_unguarded(pg, pgguard, tmp_path):
  make_db(pg, "gm_bad", DESIRED, DRIFTED)
  bad = tmp_path / "bad_schema.sql"
  bad.write_text(BAD_SCHEMA)
  g = start_guarded(pgguard, pg, "gm_bad", schema=bad, ready=False)
  m = g.wait_log(r"event=schema_load_failed[^\n]*", timeout=20)
  line = m.group(0)
  assert "guard=off" in line, line
  assert "bad_schema.sql" in line and "line 3" in line, line
  status, body = g.http_get("/readyz")
  assert status == 503, body
  assert g.http_get("/healthz")[0] == 200
  assert metric(g, "pgguard_schema_guard_active") == 0

  before = tables(pg, "gm_bad")
  conn = g.connect()
  with conn.cursor() as cur:
    cur.execute("SELECT count(*) FROM existing")
    assert cur.fetchone()[0] == 0
    with pytest.raises(psycopg2.errors.UndefinedTable):
      cur.execute("SELECT * FROM widgets")  # the guard is off: the error passes through
    cur.execute("SELECT 1")
  conn.close()
  time.sleep(0.3)
  assert tables(pg, "gm_bad") == before
  assert metric(g, "pgguard_repairs_total", result="applied") == 0
  assert g.returncode is None


def test_strict_refuses_to_start_with_a_bad_schema_file(pg, pgguard, tmp_path):
  make_db(pg, "gm_strict", DESIRED)
  bad = tmp_path / "bad_schema.sql"
  bad.write_text(BAD_SCHEMA)
  g = start_guarded(pgguard, pg, "gm_strict", "--strict", schema=bad, ready=False,
                    expect_fail=True, timeout=30)
  assert g.returncode == 2, g.log
  assert str(bad) in g.log or "bad_schema.sql" in g.log, g.log
  assert re.search(r"line 3\b", g.log), g.log


def test_strict_with_a_good_schema_starts_ready(pg, pgguard):
  make_db(pg, "gm_strict_ok", DESIRED, DRIFTED)
  g = start_guarded(pgguard, pg, "gm_strict_ok", "--strict")
  wait_ready(g)
  assert metric(g, "pgguard_schema_guard_active") == 1
  assert metric(g, "pgguard_schema_drift_objects", kind="table", state="missing") == 1


def test_drift_report_carries_the_last_error_without_the_password(pg, pgguard):
  make_db(pg, "gm_drift_err", DESIRED, DRIFTED)
  bad_url = pg.url(dbname="gm_drift_err").replace(pg.password, "Wrong-Pw-4711")
  assert "Wrong-Pw-4711" in bad_url
  g = pgguard("--schema", str(REPLAY_SCHEMA), "--admin-url", bad_url)
  deadline = time.monotonic() + 10
  while True:
    status, body = g.http_get("/drift")
    report = json.loads(body)
    if report.get("last_error"):
      break
    assert time.monotonic() < deadline, body
    time.sleep(0.1)
  assert status == 503
  assert report["checked_at"] is None
  assert "password authentication failed" in report["last_error"], report
  assert time.time() - 60 < report["last_error_at"] <= time.time() + 1
  assert "Wrong-Pw-4711" not in body
