# The admin HTTP listener of a transparent proxy: health, readiness and connection metrics.
from pgwire import RawConn


def test_healthz_answers_200(pgguard):
  gg = pgguard()
  status, _ = gg.http_get("/healthz")
  assert status == 200


def test_unknown_admin_path_answers_404(pgguard):
  gg = pgguard()
  status, _ = gg.http_get("/no-such-page")
  assert status == 404


def test_metrics_count_client_connections_and_bytes(pgguard, appdb):
  gg = pgguard()
  before = gg.metrics()
  assert before.get_value("pgguard_client_connections") == 0
  with RawConn(gg.host, gg.port) as raw:
    raw.startup(appdb["user"], appdb["dbname"], appdb["password"])
    raw.simple_query("SELECT repeat('m', 100000)")
    during = gg.metrics()
    assert during.get_value("pgguard_client_connections") == 1
    assert during.get_value("pgguard_server_connections") == 1
  after = gg.metrics()
  assert after.total("pgguard_client_connections_total") >= before.total("pgguard_client_connections_total") + 1
  assert after.total("pgguard_bytes_total") - before.total("pgguard_bytes_total") >= 100000
  assert any(n == "pgguard_build_info" for n, _ in after)
