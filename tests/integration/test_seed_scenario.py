# The acceptance test: a production database restored from a backup older than the application's
# last migration loses twelve tables; a Prisma 7 application behind pgguard never sees the error.
import json

from conftest import run
from guard_fixtures import (SEED_DIR, make_db, pg_tool, pgguard_binary_path, seed_app,
                            seed_prisma_generate, start_guarded, tables)

NEW_TABLES = sorted([
  "developer_projects", "budget_line_items", "project_expenses", "project_funding",
  "project_invoices", "project_forecasts", "project_milestones", "project_vendors",
  "project_cash_flow_snapshots", "purchase_orders", "project_stages", "stage_templates",
])
CORE_TABLES = ["organizations", "users", "projects"]
DB = "seed_prod"

CORE_DATA = [
  "INSERT INTO organizations (name) VALUES ('Northwind Builders'), ('Contoso Estates')",
  "INSERT INTO users (email, name, role, organization_id, updated_at) VALUES "
  "('ada@northwind.test', 'Ada', 'OWNER', 1, '2024-01-02 03:04:05.678'), "
  "('brian@northwind.test', 'Brian', 'ADMIN', 1, '2024-01-03 00:00:00'), "
  "('chen@contoso.test', NULL, 'MEMBER', 2, '2024-01-04 12:00:00'), "
  "('dora@contoso.test', 'Dora', 'VIEWER', 2, '2024-01-05 08:30:00')",
  "INSERT INTO projects (name, code, status, organization_id, owner_id, budget_total, starts_on, "
  "updated_at) VALUES "
  "('Harbour Lofts', 'HL-01', 'ACTIVE', 1, 1, 1250000.50, '2024-02-01', '2024-02-01 09:00:00'), "
  "('Mill Street', 'MS-02', 'DRAFT', 1, 2, 0, NULL, '2024-02-02 09:00:00'), "
  "('Riverside Park', 'RP-03', 'ON_HOLD', 2, 3, 98000.00, '2024-03-15', '2024-02-03 09:00:00')",
]


def core_rows(pg):
  """Every core row, as text, in primary-key order: what must survive untouched."""
  return {t: pg.sql('SELECT row_to_json(t)::text FROM "%s" t ORDER BY id' % t, db=DB)
          for t in CORE_TABLES}


def public_tables(pg):
  return sorted(n.split(".", 1)[1] for n in tables(pg, DB, schema="public"))


def test_restored_backup_missing_twelve_tables_heals_on_first_request(pg, pgguard, tmp_path):
  seed_prisma_generate()
  old_sql = (SEED_DIR / "old.sql").read_text()
  new_sql = SEED_DIR / "new.sql"
  kw = make_db(pg, DB, old_sql, CORE_DATA)
  before = core_rows(pg)
  assert [len(before[t]) for t in CORE_TABLES] == [2, 4, 3]

  # The nightly backup, taken at the old schema.
  dump = tmp_path / "old.dump"
  r = run([pg_tool("pg_dump"), "-Fc", "-f", str(dump), "-d", pg.dsn(dbname=DB)], timeout=120)
  assert r.returncode == 0, r.stderr.decode()

  # The release migrates the database; the application works against it directly.
  pg.sql((SEED_DIR / "migration.sql").read_text(), db=DB, user=kw["user"], password=kw["password"])
  assert public_tables(pg) == sorted(CORE_TABLES + NEW_TABLES)
  check = run([pgguard_binary_path(), "check", "--schema", str(new_sql),
               "--admin-url", pg.url(dbname=DB)], timeout=120)
  assert check.returncode == 0, (check.stdout.decode() + check.stderr.decode())
  migrated = seed_app("run", pg.url(**kw))
  assert migrated["first"]["ok"], migrated

  # Disaster: the database is restored from the old backup.
  pg.create_db(DB, owner=kw["user"])
  r = run([pg_tool("pg_restore"), "--exit-on-error", "-d", pg.dsn(dbname=DB), str(dump)],
          timeout=120)
  assert r.returncode == 0, r.stderr.decode()
  assert public_tables(pg) == sorted(CORE_TABLES)
  assert core_rows(pg) == before

  # Without pgguard the application fails with Prisma's "table does not exist".
  probe = seed_app("probe", pg.url(**kw))["probe"]
  assert not probe["ok"] and probe["code"] == "P2021", probe

  guard = start_guarded(pgguard, pg, DB, schema=new_sql)
  m = guard.metrics()
  assert m.get_value("pgguard_schema_drift_objects", kind="table", state="missing") == 12
  assert m.get_value("pgguard_schema_drift_objects", kind="enum", state="missing") == 3
  assert m.get_value("pgguard_schema_guard_active") == 1
  drift = json.loads(guard.http_get("/drift")[1])
  assert drift  # served as JSON before any request

  out = seed_app("run", guard.url(**kw))
  print("pgguard log:\n" + guard.log[-4000:])

  # Every request succeeded on its first (and only) try.
  assert out["first"]["ok"], out["first"]
  assert out["first"]["value"]["relations"] == 11, out["first"]
  assert {t: s["ok"] for t, s in out["writes"].items()} == {t: True for t in NEW_TABLES}, out["writes"]
  assert out["counts"]["ok"], out["counts"]
  assert out["counts"]["value"] == {t: 1 for t in NEW_TABLES}, out["counts"]

  # The database now has every table; each write landed exactly once; the core data is untouched.
  assert public_tables(pg) == sorted(CORE_TABLES + NEW_TABLES)
  for t in NEW_TABLES:
    assert pg.sql('SELECT count(*) FROM "%s"' % t, db=DB)[0][0] == 1, t
  assert core_rows(pg) == before
  assert run([pgguard_binary_path(), "check", "--schema", str(new_sql),
              "--admin-url", pg.url(dbname=DB)], timeout=120).returncode == 0

  m = guard.metrics()
  missing = {dict(labels)["kind"]: v for (name, labels), v in m.items()
             if name == "pgguard_schema_drift_objects" and ("state", "missing") in labels}
  assert missing and all(v == 0 for v in missing.values()), missing
  assert m.get_value("pgguard_repairs_total", result="applied") == 1
  assert m.get_value("pgguard_repairs_total", result="failed") == 0
  # Prisma runs the include's relation queries concurrently on its pool: each of them met a
  # missing table, all waited on the one repair, and each was replayed once.
  errors = m.get_value("pgguard_undefined_object_errors_total", sqlstate="42P01")
  assert errors >= 1
  assert m.get_value("pgguard_replays_total", result="succeeded") == errors
  assert m.get_value("pgguard_replays_total", result="failed") == 0
  assert m.get_value("pgguard_replays_total", result="skipped") == 0
  assert m.get_value("pgguard_repair_duration_seconds_count") == 1
  repair_s = m.get_value("pgguard_repair_duration_seconds_sum")
  print("SEED TIMING: first request through pgguard (failing, repaired, replayed) %.1f ms; "
        "repair %.1f ms; the same request on the migrated database %.1f ms; "
        "%d queries replayed after one repair"
        % (out["first"]["ms"], repair_s * 1000, migrated["first"]["ms"], errors))
