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


def raw_http(gg, request, timeout=5):
  import socket
  with socket.create_connection(("127.0.0.1", gg.admin_port), timeout) as s:
    s.sendall(request)
    data = b""
    while True:
      chunk = s.recv(65536)
      if not chunk:
        return data
      data += chunk


def test_head_answers_the_headers_of_get_without_a_body(pgguard):
  gg = pgguard()
  got = raw_http(gg, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
  head, _, body = got.partition(b"\r\n\r\n")
  assert head.startswith(b"HTTP/1.1 200"), got
  assert b"Content-Length: 3" in head
  assert body == b""


def test_other_methods_get_405_with_allow(pgguard):
  gg = pgguard()
  got = raw_http(gg, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
  assert got.startswith(b"HTTP/1.1 405"), got
  assert b"\r\nAllow: GET, HEAD\r\n" in got


def test_idle_admin_sockets_are_closed_and_cannot_starve_the_probes(pgguard):
  import socket
  import time
  gg = pgguard()
  # Past the cap (64) new sockets are closed at once; the others within the read timeout (5 s).
  idle = [socket.create_connection(("127.0.0.1", gg.admin_port)) for _ in range(100)]
  t0 = time.monotonic()
  for s in idle:
    s.settimeout(8)
    assert s.recv(1) == b"", "an idle admin socket was kept"
    s.close()
  assert time.monotonic() - t0 < 7
  status, _ = gg.http_get("/healthz")
  assert status == 200


def test_process_metrics_describe_pgguard_itself(pgguard):
  import time
  gg = pgguard()
  m = gg.metrics()
  assert 0 < m.get_value("process_resident_memory_bytes") < 1 << 30
  assert m.get_value("process_open_fds") >= 3
  assert m.get_value("process_max_fds") >= m.get_value("process_open_fds")
  assert m.get_value("process_cpu_seconds_total") >= 0
  start = m.get_value("process_start_time_seconds")
  assert time.time() - 120 < start <= time.time() + 1


def test_readyz_means_the_upstream_accepts_connections(pgguard):
  import socket
  import time
  gg = pgguard()
  deadline = time.monotonic() + 5
  while gg.http_get("/readyz")[0] != 200:
    assert time.monotonic() < deadline, gg.http_get("/readyz")
    time.sleep(0.1)
  # An upstream that refuses every connection: never ready.
  dead = socket.socket()
  dead.bind(("127.0.0.1", 0))
  port = dead.getsockname()[1]
  dead.close()
  gd = pgguard(upstream="127.0.0.1:%d" % port)
  time.sleep(2.5)
  status, body = gd.http_get("/readyz")
  assert status == 503 and "has not accepted a connection" in body, (status, body)


def test_guard_trouble_does_not_make_pgguard_unready_unless_asked(pgguard, tmp_path):
  import time
  bad = tmp_path / "bad.sql"
  bad.write_text("CREATE TABLE broken (;\n")
  args = ["--schema", str(bad), "--admin-url", "postgresql://nobody@127.0.0.1:1/none"]
  gg = pgguard(*args)
  deadline = time.monotonic() + 5
  while gg.http_get("/readyz")[0] != 200:
    assert time.monotonic() < deadline, gg.http_get("/readyz")
    time.sleep(0.1)
  strict = pgguard(*args, "--ready-requires-guard")
  time.sleep(1.0)
  assert strict.http_get("/readyz")[0] == 503


def test_request_with_nul_bytes_is_answered_not_left_waiting(pgguard):
  gg = pgguard()
  got = raw_http(gg, b"\x00" * 100 + b"\r\n\r\n", timeout=2)
  assert got.startswith(b"HTTP/1.1 400"), got
