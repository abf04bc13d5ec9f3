# Helpers for the schema-guard tests: databases at an old schema, `pgguard check/plan`,
# pgguard started to repair at once (--repair eager), and the shadow databases it leaves.
import json
import secrets
import shutil
import time
from pathlib import Path

from conftest import HERE, _txt, pgguard_binary, run

SCHEMAS = HERE / "schemas"
CORE_SQL = SCHEMAS / "app_core.sql"            # before the project-finance release
FULL_SQL = SCHEMAS / "app_full.sql"            # after it: the desired schema
MIGRATIONS = SCHEMAS / "migrations"            # the same two steps as Prisma migrations

# The twelve tables the project-finance release added.
FINANCE_TABLES = sorted([
  "developer_projects", "budget_line_items", "project_expenses", "project_funding",
  "project_invoices", "project_forecasts", "project_milestones", "project_vendors",
  "project_cash_flow_snapshots", "purchase_orders", "project_stages", "stage_templates",
])

# Every statement kind the additive planner may emit, as it prints them.
ADDITIVE_PREFIXES = ("CREATE SCHEMA ", "CREATE TYPE ", "ALTER TYPE ", "CREATE SEQUENCE ",
                     "CREATE TABLE ", "ALTER TABLE ", "CREATE INDEX ", "CREATE UNIQUE INDEX ",
                     "ALTER SEQUENCE ")


class AppDb:
  """A database owned by its own ordinary role, as an application has it."""

  def __init__(self, pg, name):
    self.pg = pg
    self.name = name
    self.owner = name + "_owner"
    self.password = "pw-" + secrets.token_hex(6)
    pg.create_role(self.owner, self.password)
    pg.create_db(name, owner=self.owner)

  @property
  def admin_url(self):
    """The guard's admin: the cluster superuser, not the owner."""
    return self.pg.url(dbname=self.name)

  def owner_kw(self):
    return {"user": self.owner, "password": self.password, "dbname": self.name}

  def apply(self, *files):
    """Runs SQL files as the owner, the way the application's migrations ran."""
    for f in files:
      r = self.pg.psql("-q", "-v", "ON_ERROR_STOP=1", "-f", str(f), **self.owner_kw())
      assert r.returncode == 0, "applying %s: %s" % (f, r.stderr)

  def sql(self, query, params=None, as_owner=False):
    if as_owner:
      return self.pg.sql(query, params, db=self.name, user=self.owner, password=self.password)
    return self.pg.sql(query, params, db=self.name)

  def tables(self):
    return sorted(r[0] for r in self.sql(
      "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
      " AND c.relkind = 'r'"))


def seed_core(db):
  """Rows in the core tables, the data a restore brings back."""
  db.sql("INSERT INTO users (email, name, role, updated_at) VALUES"
         " ('ada@example.com', 'Ada', 'OWNER', now()), ('bob@example.com', 'Bob', 'MEMBER', now())",
         as_owner=True)
  db.sql("INSERT INTO projects (name, code, status, owner_id, budget_total, updated_at) VALUES"
         " ('Harbour', 'HRB-1', 'ACTIVE', 1, 125000.50, now())", as_owner=True)


def core_rows(db):
  return (db.sql("SELECT id, email, name, role::text, created_at, updated_at"
                 " FROM users ORDER BY id"),
          db.sql("SELECT id, name, code, status::text, owner_id, budget_total, created_at"
                 " FROM projects ORDER BY id"))


def pgguard_cli(*args, timeout=120):
  """Runs `pgguard ARGS`; returns CompletedProcess with text stdout/stderr."""
  r = run([pgguard_binary()] + [str(a) for a in args], timeout=timeout)
  r.stdout = _txt(r.stdout)
  r.stderr = _txt(r.stderr)
  return r


def check(db_url, schema, *extra):
  return pgguard_cli("check", "--schema", schema, "--admin-url", db_url, *extra)


def check_json(db_url, schema, *extra):
  r = check(db_url, schema, "--json", *extra)
  assert r.returncode in (0, 1), "check failed (%d): %s" % (r.returncode, r.stderr)
  return r.returncode, json.loads(r.stdout)


def plan(db_url, schema, *extra):
  return pgguard_cli("plan", "--schema", schema, "--admin-url", db_url, *extra)


def items(report, state=None, kind=None):
  """(parent, name) of the report's items in that state and of that kind."""
  return sorted((i.get("parent"), i["name"]) for i in report["items"]
                if (state is None or i["state"] == state) and (kind is None or i["kind"] == kind))


def plan_statements(text):
  """The plan's SQL statements (comment lines dropped), one per line as pgguard prints them."""
  return [l for l in text.splitlines() if l.strip() and not l.startswith("--")]


REPAIR_EVENTS = r"event=(repair_applied|repair_nothing_missing|repair_failed)"


def start_repairing(pgguard, db, schema, *extra):
  """Starts a pgguard that repairs at start-up (--repair eager)."""
  return pgguard("--schema", str(schema), "--admin-url", db.admin_url, "--repair", "eager", *extra)


def wait_repair(inst, timeout=60.0):
  """The first repair event pgguard logs: 'repair_applied', 'repair_nothing_missing' or
  'repair_failed'; and its whole log line."""
  m = inst.wait_log(REPAIR_EVENTS + r".*", timeout=timeout)
  return m.group(1), m.group(0)


def shadow_dbs(pg):
  """{name: (oid, comment)} of the shadow databases pgguard created."""
  rows = pg.sql("SELECT datname, oid::int, shobj_description(oid, 'pg_database')"
                " FROM pg_database WHERE datname LIKE 'pgguard\\_shadow\\_%'")
  return {r[0]: (r[1], r[2]) for r in rows}


def unique_schema(tmp_path, src=FULL_SQL, name="schema.sql"):
  """A copy of src whose content (and so shadow database) no other test shares."""
  dst = Path(tmp_path) / name
  dst.write_text(src.read_text() + "\n-- copy %s\n" % secrets.token_hex(8))
  return dst


def copy_migrations(tmp_path):
  dst = Path(tmp_path) / "migrations"
  shutil.copytree(MIGRATIONS, dst)
  return dst


def wait_until(pred, timeout=20.0, what="condition"):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    v = pred()
    if v:
      return v
    time.sleep(0.05)
  raise AssertionError("timed out waiting for " + what)
