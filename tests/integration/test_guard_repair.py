# The additive repair against a real PostgreSQL, run by pgguard itself (--repair eager repairs
# at start-up; the replay after an on-error repair is test_replay.py's): new objects belong to
# the database owner, NOT NULL columns on tables with rows come in nullable, enum labels commit
# first, and several sidecars hitting the same drift repair it exactly once.
import json
import re

import psycopg2
import pytest

from guard_helpers import (CORE_SQL, FINANCE_TABLES, FULL_SQL, AppDb, check, check_json,
                           copy_migrations, core_rows, items, plan, plan_statements, seed_core,
                           start_repairing, wait_repair, wait_until)

ADVISORY_KEY = 0x7067677561726400  # PGG_ADVISORY_KEY, guard/guard.h


def owners(db):
  """{name: owner} of the public schema's tables, sequences, indexes and enum types."""
  rels = db.sql("SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S', 'i')")
  types = db.sql("SELECT t.typname, pg_get_userbyid(t.typowner) FROM pg_type t"
                 " WHERE t.typnamespace = 'public'::regnamespace AND t.typtype = 'e'")
  return dict(rels + types)


def hold_repair_lock(db):
  """A session holding the repair lock every pgguard takes, until it rolls back."""
  conn = psycopg2.connect(db.pg.dsn(dbname=db.name))
  conn.autocommit = False
  with conn.cursor() as cur:
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_KEY,))
  return conn


def waiting_for_repair_lock(db):
  return db.pg.sql("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                   " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = %s",
                   (db.name,))[0][0]


def test_repair_creates_the_missing_tables_owned_by_the_database_owner(pg, pgguard):
  db = AppDb(pg, "guard_repair_restore")
  db.apply(CORE_SQL)
  seed_core(db)
  rows_before = core_rows(db)
  assert pg.sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(True,)]

  inst = start_repairing(pgguard, db, FULL_SQL)
  event, line = wait_repair(inst)
  assert event == "repair_applied", inst.log[-3000:]
  assert "missing_after=0" in line

  assert db.tables() == sorted(FINANCE_TABLES + ["projects", "users"])
  # Created by a superuser admin, yet owned by the application's role.
  assert set(owners(db).values()) == {db.owner}, owners(db)
  assert inst.metrics().get_value("pgguard_repairs_total", result="applied") == 1

  # The application can use what was created: tables, their sequences, the new enum types.
  own = db.owner_kw()
  conn = pg.connect(**own)
  with conn.cursor() as cur:
    cur.execute("INSERT INTO project_vendors (project_id, name) VALUES (1, 'Acme') RETURNING id")
    vendor = cur.fetchone()[0]
    cur.execute("INSERT INTO budget_line_items (project_id, category, updated_at)"
                " VALUES (1, 'steel', now()) RETURNING id")
    line_item = cur.fetchone()[0]
    cur.execute("INSERT INTO project_expenses (project_id, line_item_id, vendor_id, amount,"
                " incurred_on) VALUES (1, %s, %s, 99.95, current_date) RETURNING id, status",
                (line_item, vendor))
    assert cur.fetchone() == (1, "PENDING")
    cur.execute("INSERT INTO project_funding (project_id, source, amount)"
                " VALUES (1, 'LOAN', 5000) RETURNING source")
    assert cur.fetchone() == ("LOAN",)
    cur.execute("INSERT INTO project_invoices (project_id, vendor_id, number, status, amount,"
                " updated_at) VALUES (1, %s, 'INV-1', 'SENT', 10, now())", (vendor,))
    cur.execute("INSERT INTO stage_templates (name) VALUES ('design') RETURNING id")
    template = cur.fetchone()[0]
    cur.execute("INSERT INTO project_stages (project_id, template_id, name, position)"
                " VALUES (1, %s, 'design', 1) RETURNING id", (template,))
    stage = cur.fetchone()[0]
    cur.execute("INSERT INTO project_milestones (project_id, stage_id, title)"
                " VALUES (1, %s, 'drawings')", (stage,))
    cur.execute("SELECT nextval('purchase_orders_id_seq'), 'PAID'::\"InvoiceStatus\"")
    assert cur.fetchone() == (1, "PAID")
    cur.execute("SELECT count(*) FROM project_expenses e JOIN project_vendors v"
                " ON v.id = e.vendor_id WHERE v.name = 'Acme'")
    assert cur.fetchone() == (1,)
    # The repaired foreign keys hold.
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
      cur.execute("INSERT INTO project_forecasts (project_id, period, forecast_amount)"
                  " VALUES (42, current_date, 1)")
  conn.close()

  assert check(db.admin_url, FULL_SQL).returncode == 0
  assert core_rows(db) == rows_before


def test_not_null_column_without_default_is_added_nullable_to_a_table_with_rows(pg, pgguard):
  db = AppDb(pg, "guard_repair_columns")
  db.apply(FULL_SQL)
  seed_core(db)
  # An older release had neither column: users has rows, project_stages has none.
  db.sql("ALTER TABLE users DROP COLUMN updated_at", as_owner=True)
  db.sql("ALTER TABLE project_stages DROP COLUMN position", as_owner=True)

  code, report = check_json(db.admin_url, FULL_SQL)
  assert code == 1
  assert items(report, "missing", "column") == [("project_stages", "position"),
                                                ("users", "updated_at")]
  r = plan(db.admin_url, FULL_SQL)
  assert r.returncode == 0, r.stderr
  stmts = plan_statements(r.stdout)
  assert ('ALTER TABLE "public"."users" ADD COLUMN "updated_at" timestamp(3) without time zone;'
          in stmts), r.stdout
  assert ('ALTER TABLE "public"."project_stages" ADD COLUMN "position" integer NOT NULL;'
          in stmts), r.stdout
  assert "-- 1 NOT NULL column(s) added nullable" in r.stdout

  inst = start_repairing(pgguard, db, FULL_SQL)
  assert wait_repair(inst)[0] == "repair_applied", inst.log[-3000:]
  notnull = dict(db.sql("SELECT c.relname || '.' || a.attname, a.attnotnull FROM pg_attribute a"
                        " JOIN pg_class c ON c.oid = a.attrelid WHERE a.attname IN"
                        " ('updated_at', 'position') AND c.relname IN ('users', 'project_stages')"))
  assert notnull == {"users.updated_at": False, "project_stages.position": True}
  assert db.sql("SELECT count(*) FROM users WHERE updated_at IS NULL") == [(2,)]

  # Nothing missing any more; the relaxed column stays reported as conflicting.
  code, report = check_json(db.admin_url, FULL_SQL)
  assert code == 0
  conflicting = [i for i in report["items"] if i["state"] == "conflicting"]
  assert [(i["parent"], i["name"]) for i in conflicting] == [("users", "updated_at")]
  assert "nullable, desired NOT NULL" in conflicting[0]["why"]


def test_missing_enum_label_is_committed_before_the_table_that_uses_it(pg, pgguard, tmp_path):
  """PostgreSQL refuses a new enum label in the transaction that added it (55P04): a missing
  table whose default is a missing label only works if the label commits first."""
  mig = copy_migrations(tmp_path)
  (mig / "20240401000000_disputes").mkdir()
  (mig / "20240401000000_disputes" / "migration.sql").write_text(
    "-- AlterEnum\nALTER TYPE \"ExpenseStatus\" ADD VALUE 'DISPUTED';\n")
  (mig / "20240402000000_dispute_log").mkdir()
  (mig / "20240402000000_dispute_log" / "migration.sql").write_text(
    "-- CreateTable\n"
    "CREATE TABLE \"expense_disputes\" (\n"
    "    \"id\" SERIAL NOT NULL,\n"
    "    \"expense_id\" INTEGER NOT NULL,\n"
    "    \"status\" \"ExpenseStatus\" NOT NULL DEFAULT 'DISPUTED',\n\n"
    "    CONSTRAINT \"expense_disputes_pkey\" PRIMARY KEY (\"id\")\n);\n")
  db = AppDb(pg, "guard_repair_labels")
  db.apply(FULL_SQL)
  seed_core(db)

  code, report = check_json(db.admin_url, mig)
  assert code == 1
  assert items(report, "missing", "enum_label") == [("ExpenseStatus", "DISPUTED")]
  stmts = plan_statements(plan(db.admin_url, mig).stdout)
  label_at = [i for i, s in enumerate(stmts) if s.startswith("ALTER TYPE ")]
  table_at = [i for i, s in enumerate(stmts) if s.startswith("CREATE TABLE ")]
  assert len(label_at) == 1 and "'DISPUTED'" in stmts[label_at[0]]
  assert label_at[0] < table_at[0]

  inst = start_repairing(pgguard, db, mig)
  event, line = wait_repair(inst)
  assert event == "repair_applied", inst.log[-3000:]
  # Its own transaction: the label and the table were committed by different transactions.
  label_xmin = db.sql("SELECT e.xmin::text FROM pg_enum e WHERE e.enumlabel = 'DISPUTED'")
  table_xmin = db.sql("SELECT c.xmin::text FROM pg_class c WHERE c.relname = 'expense_disputes'")
  assert label_xmin and table_xmin and label_xmin != table_xmin
  assert db.sql("SELECT enumlabel FROM pg_enum WHERE enumtypid = '\"ExpenseStatus\"'::regtype"
                " ORDER BY enumsortorder") == [("PENDING",), ("APPROVED",), ("PAID",),
                                               ("REJECTED",), ("DISPUTED",)]
  assert db.sql("INSERT INTO expense_disputes (expense_id) VALUES (1) RETURNING status",
                as_owner=True) == [("DISPUTED",)]
  assert check(db.admin_url, mig).returncode == 0


def test_four_sidecars_hitting_the_same_drift_repair_it_exactly_once(pg, pgguard):
  db = AppDb(pg, "guard_repair_race")
  db.apply(CORE_SQL)
  seed_core(db)
  # Hold the repair lock until all four wait on it, so they really contend.
  holder = hold_repair_lock(db)
  try:
    insts = [start_repairing(pgguard, db, FULL_SQL, "--lock-timeout", "60000")
             for _ in range(4)]
    wait_until(lambda: waiting_for_repair_lock(db) == 4, timeout=60,
               what="four pgguard processes waiting for the repair lock")
  finally:
    holder.rollback()
    holder.close()

  events = [wait_repair(i)[0] for i in insts]
  assert sorted(events) == ["repair_applied"] + ["repair_nothing_missing"] * 3, \
      "\n\n".join(i.log[-1500:] for i in insts)
  applied = sum(i.metrics().get_value("pgguard_repairs_total", result="applied") or 0
                for i in insts)
  assert applied == 1
  assert db.tables() == sorted(FINANCE_TABLES + ["projects", "users"])
  assert check(db.admin_url, FULL_SQL).returncode == 0


def test_concurrent_repairs_started_together_apply_once(pg, pgguard):
  """No lock held by the test: four sidecars started back to back race for real."""
  db = AppDb(pg, "guard_repair_race2")
  db.apply(CORE_SQL)
  # One after the other (the fixture is not thread-safe), within milliseconds: their
  # schema loads and repairs overlap.
  insts = [start_repairing(pgguard, db, FULL_SQL, "--lock-timeout", "30000") for _ in range(4)]
  events = sorted(wait_repair(i)[0] for i in insts)
  assert events == ["repair_applied"] + ["repair_nothing_missing"] * 3, \
      "\n\n".join(i.log[-1500:] for i in insts)
  assert check(db.admin_url, FULL_SQL).returncode == 0


def test_repair_gives_up_when_another_holds_the_lock_past_lock_timeout(pg, pgguard):
  db = AppDb(pg, "guard_repair_timeout")
  db.apply(CORE_SQL)
  holder = hold_repair_lock(db)
  try:
    inst = start_repairing(pgguard, db, FULL_SQL, "--lock-timeout", "300")
    event, line = wait_repair(inst)
  finally:
    holder.rollback()
    holder.close()
  assert event == "repair_failed"
  assert "lock_timeout" in line, line
  assert db.tables() == ["projects", "users"]
  assert inst.metrics().get_value("pgguard_repairs_total", result="failed") == 1


def test_nothing_missing_means_nothing_to_repair(pg, pgguard):
  db = AppDb(pg, "guard_repair_current")
  db.apply(FULL_SQL)
  inst = start_repairing(pgguard, db, FULL_SQL)
  event, line = wait_repair(inst)
  assert event == "repair_nothing_missing", inst.log[-3000:]
  assert re.search(r"statements=0\b", line)


def test_repair_works_when_a_superuser_restored_the_tables(pg, pgguard):
  """pg_restore --no-owner run by a superuser: the existing tables are not the database
  owner's. Columns and keys on them are added by the admin, new tables still belong to the
  database owner."""
  db = AppDb(pg, "guard_repair_superuser_restore")
  r = pg.psql("-q", "-v", "ON_ERROR_STOP=1", "-f", str(CORE_SQL), dbname=db.name)
  assert r.returncode == 0, r.stderr
  pg.sql("ALTER TABLE projects DROP COLUMN starts_on", db=db.name)
  assert owners(db)["users"] == "postgres"

  inst = start_repairing(pgguard, db, FULL_SQL)
  assert wait_repair(inst)[0] == "repair_applied", inst.log[-3000:]
  own = owners(db)
  assert own["users"] == "postgres" and own["projects"] == "postgres"
  assert all(own[t] == db.owner for t in FINANCE_TABLES)
  assert check(db.admin_url, FULL_SQL).returncode == 0


def test_object_owner_flag_names_the_owner_of_new_objects(pg, pgguard):
  db = AppDb(pg, "guard_repair_object_owner")
  db.apply(CORE_SQL)
  pg.create_role("guard_ddl_owner", login=False)
  pg.sql("GRANT CREATE ON SCHEMA public TO guard_ddl_owner", db=db.name)
  inst = start_repairing(pgguard, db, FULL_SQL, "--object-owner", "guard_ddl_owner")
  assert wait_repair(inst)[0] == "repair_applied", inst.log[-3000:]
  own = owners(db)
  assert all(own[t] == "guard_ddl_owner" for t in FINANCE_TABLES)
  assert own["users"] == db.owner


def test_admin_session_killed_between_checks_is_reopened(pg, pgguard):
  """A restart or restore kills pgguard's idle admin session; the next drift check must not
  fail on the dead session (and so the eager repair it triggers must not either)."""
  db = AppDb(pg, "guard_repair_reconnect")
  db.apply(FULL_SQL)
  inst = start_repairing(pgguard, db, FULL_SQL, "--drift-interval", "0.3")
  assert wait_repair(inst)[0] == "repair_nothing_missing", inst.log[-3000:]
  killed = pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  " WHERE datname = %s AND application_name = 'pgguard'", (db.name,))
  assert killed == [(True,)]
  db.sql("DROP TABLE project_forecasts", as_owner=True)
  inst.wait_log(r"event=repair_applied", timeout=20)
  assert "drift_check_failed" not in inst.log and "repair_failed" not in inst.log, inst.log
  assert "project_forecasts" in db.tables()


def test_sighup_applies_a_new_lock_timeout_to_the_next_repair(pg, pgguard, tmp_path):
  import os
  import signal
  db = AppDb(pg, "guard_repair_reload")
  db.apply(CORE_SQL)
  ini = tmp_path / "pgguard.ini"
  def write(lock_timeout, repair):
    ini.write_text("[pgguard]\nschema = %s\nadmin_url = %s\nlock_timeout = %d\nrepair = %s\n"
                   % (FULL_SQL, db.admin_url, lock_timeout, repair))
  write(600000, "on-error")
  inst = pgguard("-c", str(ini))
  inst.wait_log(r"event=drift_checked|event=schema_loaded", timeout=30)
  holder = hold_repair_lock(db)
  try:
    # Eager from now on, with a lock_timeout short enough to give up at once:
    # the old 600 s would wait for the held lock for ten minutes.
    write(300, "eager")
    os.kill(inst.pid, signal.SIGHUP)
    event, line = wait_repair(inst, timeout=20)
  finally:
    holder.rollback()
    holder.close()
  assert event == "repair_failed", inst.log[-3000:]
  assert "lock_timeout (300 ms)" in line, line
  assert re.search(r"event=reload_applied option=lock-timeout\b", inst.log)


PARTIAL_SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY, email text UNIQUE, note text);
CREATE TABLE busy (id int PRIMARY KEY, extra text);
CREATE TABLE audit (id int PRIMARY KEY, what text);
"""


def test_a_refused_statement_does_not_keep_the_rest_from_being_created(pg, pgguard, tmp_path):
  """Partial-safe: duplicates under a new UNIQUE and a table locked by another session refuse
  their statements; every independent object is still created, the refusals are reported
  with PostgreSQL's own errors and retried after the cool-down."""
  db = AppDb(pg, "guard_repair_partial")
  db.sql("CREATE TABLE accounts (id int PRIMARY KEY, email text, note text)")
  db.sql("INSERT INTO accounts VALUES (1, 'a@x', ''), (2, 'a@x', '')")   # duplicates
  db.sql("CREATE TABLE busy (id int PRIMARY KEY)")
  schema = tmp_path / "schema.sql"
  schema.write_text(PARTIAL_SCHEMA)
  holder = psycopg2.connect(db.pg.dsn(dbname=db.name))
  holder.autocommit = False
  with holder.cursor() as cur:
    cur.execute("SELECT * FROM busy")   # ACCESS SHARE until rollback: ADD COLUMN must wait
  try:
    inst = start_repairing(pgguard, db, schema, "--lock-timeout", "300",
                           "--repair-cooldown", "60")
    line = inst.wait_log(r"event=repair_partial .*", timeout=60).group(0)
  finally:
    holder.rollback()
    holder.close()
  assert "failed_statements=1" in line, line
  assert "lock timeout" in line, line
  # The UNIQUE of a table with rows is built concurrently after the commit: the
  # duplicates fail that build alone, and its INVALID index is dropped.
  built = inst.wait_log(r"event=index_builds_failed .*", timeout=60).group(0)
  assert "failed=1" in built and "could not create unique index" in built, built
  assert not db.sql("SELECT c.relname FROM pg_class c WHERE c.relname LIKE 'pgguard_build_%'")
  assert "audit" in db.tables(), "the independent table is created"
  assert db.sql("SELECT count(*) FROM accounts") == [(2,)], "rows untouched"
  assert not db.sql("SELECT 1 FROM information_schema.columns WHERE table_name = 'busy'"
                    " AND column_name = 'extra'")
  code, body = inst.http_get("/drift")
  # The last failure is the build's, with PostgreSQL's own words for the duplicates.
  assert "could not create unique index" in json.loads(body)["last_error"], body
  assert inst.metrics().get_value("pgguard_repairs_total", result="applied") == 1
  r = check(db.admin_url, schema)
  assert r.returncode == 1 and "accounts_email_key" in r.stdout and "extra" in r.stdout, r.stdout


def test_statements_on_an_existing_table_run_as_its_owner(pg, pgguard, tmp_path):
  """A default (or trigger function) on a table that existed is evaluated with its owner's
  privileges, never the admin's: the admin here is the cluster superuser."""
  db = AppDb(pg, "guard_repair_table_owner")
  db.sql("CREATE TABLE notes (id int PRIMARY KEY)", as_owner=True)
  db.sql("INSERT INTO notes VALUES (1), (2)", as_owner=True)
  schema = tmp_path / "schema.sql"
  schema.write_text("CREATE FUNCTION whoami_super() RETURNS boolean LANGUAGE sql STABLE"
                    " AS $$ SELECT rolsuper FROM pg_roles WHERE rolname = current_user $$;\n"
                    "CREATE TABLE notes (id int PRIMARY KEY,"
                    " added_by text DEFAULT current_user,"
                    " is_super boolean DEFAULT whoami_super());\n"
                    "CREATE INDEX notes_added_by_idx ON notes (added_by);\n")
  inst = start_repairing(pgguard, db, schema)
  event, line = wait_repair(inst)
  assert event == "repair_applied", inst.log[-3000:]
  assert db.sql("SELECT DISTINCT added_by, is_super FROM notes") == [(db.owner, False)]
  # The table has rows: its index is built concurrently, after the commit.
  inst.wait_log(r"event=index_builds_done built=1", timeout=30)
  assert owners(db)["notes_added_by_idx"] == db.owner


def test_an_admin_that_may_not_act_as_a_tables_owner_fails_that_statement_only(pg, pgguard,
                                                                                tmp_path):
  db = AppDb(pg, "guard_repair_not_owner")
  admin, password = "limited_admin_x", "pw-limited-x"
  pg.create_role(admin, password)
  pg.sql("ALTER ROLE %s CREATEDB" % admin)
  pg.sql("GRANT %s TO %s" % (db.owner, admin))             # may act as the object owner
  pg.create_role("other_owner_x", "pw-other-x")           # ... but not as this one
  db.sql("CREATE TABLE foreign_t (id int PRIMARY KEY)")
  db.sql("ALTER TABLE foreign_t OWNER TO other_owner_x")
  schema = tmp_path / "schema.sql"
  schema.write_text("CREATE TABLE foreign_t (id int PRIMARY KEY, extra text);\n"
                    "CREATE TABLE fresh (id int PRIMARY KEY);\n")
  url = pg.url(dbname=db.name, user=admin, password=password)
  inst = pgguard("--schema", str(schema), "--admin-url", url, "--repair", "eager")
  line = inst.wait_log(r"event=repair_partial .*", timeout=60).group(0)
  assert "cannot act as the table" in line and "other_owner_x" in line, line
  assert "fresh" in db.tables()
  assert not db.sql("SELECT 1 FROM information_schema.columns WHERE table_name = 'foreign_t'"
                    " AND column_name = 'extra'")
  assert password not in inst.log


def test_a_statement_on_an_existing_table_commits_on_its_own_under_the_session_lock(
    pg, pgguard, tmp_path):
  """Each statement on a table that existed commits at once: while the repair waits for a
  lock on a busy table, the table it already changed is readable (its ACCESS EXCLUSIVE was
  released) and its new column is there. The repair lock is session-level: held across those
  commits, released at the end."""
  db = AppDb(pg, "guard_repair_groups")
  db.sql("CREATE TABLE a_first (id int PRIMARY KEY)")
  db.sql("CREATE TABLE b_busy (id int PRIMARY KEY)")
  db.sql("INSERT INTO a_first VALUES (1)")
  schema = tmp_path / "schema.sql"
  schema.write_text("CREATE TABLE a_first (id int PRIMARY KEY, note text);\n"
                    "CREATE TABLE b_busy (id int PRIMARY KEY, note text);\n"
                    "CREATE TABLE c_new (id int PRIMARY KEY);\n")
  holder = psycopg2.connect(db.pg.dsn(dbname=db.name))
  holder.autocommit = False
  with holder.cursor() as cur:
    cur.execute("SELECT * FROM b_busy")   # ACCESS SHARE until rollback
  try:
    inst = start_repairing(pgguard, db, schema, "--lock-timeout", "8000")
    # The repair now waits for b_busy's lock ...
    wait_until(lambda: db.sql(
      "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
      " WHERE c.relname = 'b_busy' AND NOT l.granted")[0][0] == 1, what="the wait on b_busy")
    # ... while a_first's new column is committed and the table free again.
    probe = psycopg2.connect(db.pg.dsn(dbname=db.name))
    probe.autocommit = True
    with probe.cursor() as cur:
      cur.execute("SET lock_timeout = '500ms'")
      cur.execute("SELECT id, note FROM a_first")
      assert cur.fetchall() == [(1, None)]
      # The repair lock is held across that commit.
      cur.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,))
      assert cur.fetchone() == (False,)
    probe.close()
  finally:
    holder.rollback()
    holder.close()
  event, line = wait_repair(inst)
  assert event == "repair_applied", inst.log[-3000:]
  assert "c_new" in db.tables()
  assert db.sql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"
                " AND table_name IN ('a_first', 'b_busy')") == [(2,)]
  # Released at the end: another session takes it at once.
  conn = psycopg2.connect(db.pg.dsn(dbname=db.name))
  with conn.cursor() as cur:
    cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (ADVISORY_KEY,))
    assert cur.fetchone() == (True,)
  conn.close()
