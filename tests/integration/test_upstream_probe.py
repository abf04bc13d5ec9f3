# pgguard_upstream_up without a schema guard: an idle sidecar still tells whether PostgreSQL answers.
import time

from conftest import free_port


def wait_up(g, want, timeout=10.0):
  deadline = time.monotonic() + timeout
  v = None
  while time.monotonic() < deadline:
    v = g.metrics().get_value("pgguard_upstream_up")
    if v == want:
      return v
    time.sleep(0.05)
  return v


def test_idle_sidecar_reports_reachable_upstream_as_up(pgguard):
  g = pgguard()
  assert wait_up(g, 1) == 1


def test_idle_sidecar_reports_unreachable_upstream_as_down(pgguard):
  g = pgguard(upstream="127.0.0.1:%d" % free_port())
  assert wait_up(g, 0) == 0
  assert g.returncode is None
