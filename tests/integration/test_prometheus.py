# The observability files in deploy/ against the real thing: promtool on the alert rules (and
# their unit tests), a real Prometheus scraping real pgguard processes and evaluating the rules,
# and the Grafana dashboard's queries checked against pgguard's /metrics and run by Prometheus.
import ctypes
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import psycopg2
import pytest
import yaml

from conftest import SOURCE, free_port, parse_metrics, run, wait_port
from guard_fixtures import REPLAY_SCHEMA, make_db, start_guarded

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
DEPLOY = SOURCE / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
SCRAPE = DEPLOY / "prometheus" / "scrape.yml"
DASHBOARD = DEPLOY / "grafana" / "pgguard-dashboard.json"

DESIRED = REPLAY_SCHEMA.read_text()
# Three of the desired schema's tables are missing from the live database.
MISSING_TABLES = ['DROP TABLE "widgets"', 'DROP TABLE "mood_log"', 'DROP TABLE "app"."accounts"']

# Grafana's built-in variables and the dashboard's own, as Grafana would expand them.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m",
                "$instance": ".*"}

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def tool(path):
  if not shutil.which(path):
    pytest.fail("%s is missing: apt-get install prometheus (scripts/install-deps.sh)" % path)
  return path


def _die_with_parent():
  # Prometheus must not outlive the test run, even when pytest-timeout ends the process
  # without running fixture teardown: the kernel kills it when pytest goes away.
  libc = ctypes.CDLL("libc.so.6", use_errno=True)
  libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Prometheus:
  """A Prometheus server on a free loopback port, scraping targets every second and
  evaluating rule files every second; its storage and log live in a temporary directory."""

  def __init__(self, root, targets, rule_files=()):
    self.root = root
    self.port = free_port()
    self.base = "http://127.0.0.1:%d" % self.port
    config = {
      "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
      "rule_files": [str(p) for p in rule_files],
      "scrape_configs": [{"job_name": "pgguard", "metrics_path": "/metrics",
                          "static_configs": [{"targets": list(targets)}]}],
    }
    self.config = root / "prometheus.yml"
    self.config.write_text(yaml.safe_dump(config))
    self.logpath = root / "prometheus.log"
    self.proc = None

  def start(self, timeout=30.0):
    (self.root / "tsdb").mkdir()
    with open(self.logpath, "wb") as logf:
      self.proc = subprocess.Popen(
        [tool(PROMETHEUS), "--config.file=%s" % self.config,
         "--storage.tsdb.path=%s" % (self.root / "tsdb"),
         "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, cwd=str(self.root),
        preexec_fn=_die_with_parent)
    if not wait_port("127.0.0.1", self.port, timeout, self.proc):
      raise AssertionError("prometheus did not listen within %.0fs (exit %r); log:\n%s"
                           % (timeout, self.proc.poll(), self.log[-3000:]))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      try:
        with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as r:
          if r.status == 200:
            return self
      except (OSError, urllib.error.HTTPError):
        pass
      time.sleep(0.1)
    raise AssertionError("prometheus not ready within %.0fs; log:\n%s" % (timeout, self.log[-3000:]))

  def stop(self):
    if self.proc is not None and self.proc.poll() is None:
      self.proc.terminate()
      try:
        self.proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait(timeout=10)

  @property
  def log(self):
    return self.logpath.read_text(errors="replace") if self.logpath.exists() else ""

  def api(self, path, **params):
    """The data of a /api/v1 answer; fails the test on an error status."""
    url = self.base + "/api/v1/" + path
    if params:
      url += "?" + urllib.parse.urlencode(params)
    try:
      with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    except urllib.error.HTTPError as e:
      body = json.loads(e.read() or b"{}")
      raise AssertionError("GET %s -> %d: %r" % (url, e.code, body))
    assert body.get("status") == "success", body
    return body["data"]

  def query(self, expr):
    """An instant query's vector as {frozenset(labels): float}."""
    data = self.api("query", query=expr)
    assert data["resultType"] == "vector", data
    return {frozenset(s["metric"].items()): float(s["value"][1]) for s in data["result"]}

  def wait_value(self, expr, want, timeout=30.0, **labels):
    """Waits until the series of expr with these labels has the value want; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
      for ls, v in self.query(expr).items():
        if all((k, val) in ls for k, val in labels.items()):
          last = v
      if last == want:
        return last
      time.sleep(0.25)
    raise AssertionError("prometheus: %s %r was %r, not %r, after %.0fs; targets: %r\nlog:\n%s"
                         % (expr, labels, last, want, timeout, self.api("targets"), self.log[-2000:]))

  def active_alerts(self):
    """{(alertname, instance): state} of the pending and firing alerts."""
    return {(a["labels"]["alertname"], a["labels"].get("instance")): a["state"]
            for a in self.api("alerts")["alerts"]}

  def wait_alerts(self, predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    alerts = {}
    while time.monotonic() < deadline:
      alerts = self.active_alerts()
      if predicate(alerts):
        return alerts
      time.sleep(0.25)
    raise AssertionError("prometheus: never %s; active alerts: %r\nrules: %s"
                         % (what, alerts, json.dumps(self.api("rules"))[:3000]))


@pytest.fixture
def prometheus(tmp_path):
  """Factory: prometheus(targets, rule_files=()) -> a started Prometheus; always killed at teardown."""
  started = []

  def start(targets, rule_files=()):
    root = tmp_path / ("prometheus-%d" % len(started))
    root.mkdir()
    p = Prometheus(root, targets, rule_files)
    started.append(p)
    return p.start()

  yield start
  for p in started:
    p.stop()


def admin_target(inst):
  return "127.0.0.1:%d" % inst.admin_port


def alert_rules():
  """(name, expr) of every alerting rule in alerts.yml."""
  doc = yaml.safe_load(ALERTS.read_text())
  return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"] if "alert" in r]


def dashboard_exprs():
  """Every PromQL expression of the Grafana dashboard: panel targets and variable queries."""
  dash = json.loads(DASHBOARD.read_text())
  exprs = []

  def panels(ps):
    for p in ps:
      yield p
      yield from panels(p.get("panels", []))

  for p in panels(dash["panels"]):
    for t in p.get("targets", []):
      exprs.append((p["title"], t["expr"]))
  for v in dash["templating"]["list"]:
    if v["type"] == "query":
      q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
      exprs.append(("variable " + v["name"], q))
  return exprs


def expand_grafana(expr):
  for var, value in GRAFANA_VARS.items():
    expr = expr.replace(var, value)
  assert "$" not in expr, "unexpanded Grafana variable in %r" % expr
  return expr


def guarded_with_missing_tables(pg, pgguard, db):
  make_db(pg, db, DESIRED, MISSING_TABLES)
  return start_guarded(pgguard, pg, db)


def exposed_families(inst):
  """{metric family: type} from the TYPE lines of a real /metrics, and its samples."""
  status, body = inst.http_get("/metrics")
  assert status == 200, body
  families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))
  return families, parse_metrics(body)


def check_names(expr, families, samples, where):
  """Problems with the pgguard metric names and label matchers that expr uses."""
  problems = []
  names = set(re.findall(r"\bpgguard_[a-zA-Z0-9_]+", expr))
  if not names:
    problems.append("%s: no pgguard metric in %r" % (where, expr))
  for name in names:
    base = name
    if name not in families:
      for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and families.get(name[:-len(suffix)]) == "histogram":
          base = name[:-len(suffix)]
    if base not in families:
      problems.append("%s: %s is not a metric pgguard exposes" % (where, name))
  # Label matchers: an equality must name a label value pgguard really exposes on that metric,
  # a regex must match at least one (the $instance variable aside).
  for name, body in re.findall(r"\b(pgguard_[a-zA-Z0-9_]+)\{([^}]*)\}", expr):
    values = {}
    for (n, labels) in samples:
      if n == name:
        for k, v in labels:
          values.setdefault(k, set()).add(v)
    for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', body):
      if label == "instance":
        continue
      if label not in values:
        problems.append("%s: %s has no label %s" % (where, name, label))
      elif op == "=" and value not in values[label]:
        problems.append("%s: %s{%s} never has the value %r (has %s)"
                        % (where, name, label, value, sorted(values[label])))
      elif op == "=~" and not any(re.fullmatch(value, v) for v in values[label]):
        problems.append("%s: %s{%s=~%r} matches none of %s"
                        % (where, name, label, value, sorted(values[label])))
  return problems


# --- promtool ---------------------------------------------------------------------

def test_promtool_accepts_the_alert_rules_and_the_scrape_config():
  r = run([tool(PROMTOOL), "check", "rules", str(ALERTS)], timeout=30)
  out = r.stdout.decode() + r.stderr.decode()
  assert r.returncode == 0, out
  assert "SUCCESS: %d rules found" % len(alert_rules()) in out, out
  r = run([tool(PROMTOOL), "check", "config", str(SCRAPE)], timeout=30, cwd=str(SCRAPE.parent))
  out = r.stdout.decode() + r.stderr.decode()
  assert r.returncode == 0, out


def test_alert_rules_fire_after_their_for_durations_in_promtool_unit_tests():
  # alerts_test.yml feeds synthetic series and expects each alert to fire (with its
  # rendered annotations) only after its `for:` duration, and not at all on healthy series.
  r = run([tool(PROMTOOL), "test", "rules", str(ALERTS_TEST)], timeout=60,
          cwd=str(ALERTS_TEST.parent))
  out = r.stdout.decode() + r.stderr.decode()
  assert r.returncode == 0, out
  tested = set(re.findall(r"alertname:\s*(\w+)", ALERTS_TEST.read_text()))
  assert tested == {name for name, _ in alert_rules()}, "alerts without a unit test: %r" % tested


# --- a real Prometheus --------------------------------------------------------------

def test_prometheus_scrapes_the_missing_tables_and_then_sees_them_repaired(pg, pgguard, prometheus):
  g = guarded_with_missing_tables(pg, pgguard, "prom_drift")
  prom = prometheus([admin_target(g)])
  missing = 'pgguard_schema_drift_objects{kind="table",state="missing"}'
  assert prom.wait_value(missing, len(MISSING_TABLES), instance=admin_target(g)) == len(MISSING_TABLES)
  assert prom.wait_value("pgguard_schema_guard_active", 1) == 1
  assert prom.wait_value("pgguard_upstream_up", 1) == 1

  # A request through pgguard meets a missing table: one repair creates all three, the
  # request is replayed, and the next scrapes carry the new drift.
  conn = g.connect()
  try:
    with conn.cursor() as cur:
      cur.execute("SELECT count(*) FROM widgets")
      assert cur.fetchone()[0] == 0
  finally:
    conn.close()
  assert prom.wait_value(missing, 0, instance=admin_target(g)) == 0
  assert prom.wait_value('sum(pgguard_schema_drift_objects{state="missing"})', 0) == 0
  assert prom.wait_value('pgguard_repairs_total{result="applied"}', 1) == 1
  assert prom.wait_value('pgguard_replays_total{result="succeeded"}', 1) == 1
  assert prom.wait_value('pgguard_undefined_object_errors_total{sqlstate="42P01"}', 1) == 1
  assert prom.wait_value("pgguard_repair_duration_seconds_count", 1) == 1


def test_prometheus_loads_the_alert_rules_and_they_match_real_metrics(pg, pgguard, prometheus):
  drifted = guarded_with_missing_tables(pg, pgguard, "prom_alerts")
  # No schema and a PostgreSQL address nobody listens on: a client's connection fails there.
  down = pgguard(upstream="127.0.0.1:%d" % free_port())
  with pytest.raises(psycopg2.OperationalError):
    down.connect()
  assert down.metrics().get_value("pgguard_upstream_up") == 0

  prom = prometheus([admin_target(drifted), admin_target(down)], rule_files=[ALERTS])
  names = {name for name, _ in alert_rules()}
  assert {"PgguardSchemaDrift", "PgguardRepairsFailing", "PgguardUpstreamDown"} <= names

  def all_rules_evaluated_ok():
    rules = [r for grp in prom.api("rules")["groups"] for r in grp["rules"]]
    return rules, {r["name"] for r in rules} == names and all(
      r["health"] == "ok" and not r.get("lastError") for r in rules)

  deadline = time.monotonic() + 30
  rules, ok = all_rules_evaluated_ok()
  while not ok and time.monotonic() < deadline:
    time.sleep(0.25)
    rules, ok = all_rules_evaluated_ok()
  assert ok, json.dumps(rules, indent=1)[:4000]

  # The `for:` durations (minutes) keep them pending here; what matters is that each
  # expression selects the right instance from real metrics.
  d, x = admin_target(drifted), admin_target(down)
  alerts = prom.wait_alerts(
    lambda a: {("PgguardSchemaDrift", d), ("PgguardUpstreamDown", x), ("PgguardGuardInactive", x)}
    <= set(a), "raised the drift and upstream alerts")
  assert alerts[("PgguardSchemaDrift", d)] == "pending"
  assert alerts[("PgguardUpstreamDown", x)] == "pending"
  for wrong in [("PgguardSchemaDrift", x), ("PgguardUpstreamDown", d), ("PgguardGuardInactive", d),
                ("PgguardDriftCheckStale", d)]:
    assert wrong not in alerts, alerts
  assert not [k for k in alerts if k[0] == "PgguardRepairsFailing"], alerts
  sample = next(a for a in prom.api("alerts")["alerts"]
                if a["labels"]["alertname"] == "PgguardSchemaDrift")
  assert float(sample["value"]) >= len(MISSING_TABLES), sample

  # Repairing the drift ends the drift alert.
  conn = drifted.connect()
  try:
    with conn.cursor() as cur:
      cur.execute('SELECT count(*) FROM "app"."accounts"')
  finally:
    conn.close()
  alerts = prom.wait_alerts(lambda a: ("PgguardSchemaDrift", d) not in a, "cleared the drift alert")
  assert ("PgguardUpstreamDown", x) in alerts
  assert not [k for k in alerts if k[0] == "PgguardRepairsFailing"], alerts


# --- the Grafana dashboard ---------------------------------------------------------------

def test_dashboard_and_alerts_use_only_metrics_and_labels_pgguard_exposes(pg, pgguard):
  g = guarded_with_missing_tables(pg, pgguard, "prom_names")
  families, samples = exposed_families(g)
  assert "pgguard_schema_drift_objects" in families
  exprs = dashboard_exprs()
  assert len(exprs) >= 15, exprs
  problems = []
  for where, expr in exprs:
    problems += check_names(expr, families, samples, "dashboard " + where)
  for name, expr in alert_rules():
    problems += check_names(expr, families, samples, "alert " + name)
  assert not problems, "\n".join(problems)
  # Histogram quantiles are computed from the buckets.
  for where, expr in exprs:
    for inner in re.findall(r"histogram_quantile\(([^,]+),(.*)", expr):
      assert "_bucket" in inner[1] and "by (le)" in inner[1].replace("by(le)", "by (le)"), (where, expr)
  # Every metric pgguard exposes has a panel.
  used = {re.sub(r"_(bucket|sum|count)$", "", n) for _, e in exprs
          for n in re.findall(r"\bpgguard_[a-zA-Z0-9_]+", e)}
  # (process_* are the standard process metrics every Prometheus client exposes.)
  ours = {f for f in families if f.startswith("pgguard_")}
  assert ours - used == set(), "metrics without a panel: %r" % (ours - used)


def test_every_dashboard_query_runs_in_prometheus_and_returns_data(pg, pgguard, prometheus):
  g = guarded_with_missing_tables(pg, pgguard, "prom_dash")
  conn = g.connect()
  try:
    with conn.cursor() as cur:
      cur.execute("SELECT count(*) FROM mood_log")  # a repair, a replay, some traffic
  finally:
    conn.close()
  prom = prometheus([admin_target(g)])
  # rate() needs two samples inside its window: wait for a few scrapes.
  assert prom.wait_value("count_over_time(pgguard_build_info[1m]) >= bool 3", 1) == 1
  empty = []
  for where, expr in dashboard_exprs():
    q = expand_grafana(expr)
    if q.startswith("label_values("):
      m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q)
      assert m, q
      values = prom.api("label/%s/values" % m.group(2), **{"match[]": m.group(1)})
      assert admin_target(g) in values, (where, values)
      continue
    if not prom.query(q):  # a PromQL error fails inside query()
      empty.append("%s: %s" % (where, q))
  assert not empty, "queries without data:\n" + "\n".join(empty)
