# A migrations folder as the desired schema, applied by the conventions of the tool that wrote it
# (issue 8, item 5): Flyway's V10 after V2, only golang-migrate's .up.sql, only dbmate's
# "-- migrate:up" sections, Sqitch's deploy/ in sqitch.plan order. A down migration applied, or
# files in the wrong order, would make a wrong desired schema that pgguard then "repairs" towards.
import pytest

from guard_helpers import AppDb, check_json, check, items

# Each step needs the one before it: in byte order (V1, V10, V2) V10 would fail to load.
FLYWAY = {
  "V1__init.sql": "CREATE TABLE a (id int PRIMARY KEY);",
  "V2__b.sql": "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);",
  "V10__b_note.sql": "ALTER TABLE b ADD COLUMN note text;",
  "R__view.sql": "CREATE OR REPLACE VIEW b_notes AS SELECT note FROM b;",
  "U2__undo_b.sql": "DROP TABLE b;",
}
GOLANG = {
  "1_init.up.sql": "CREATE TABLE a (id int PRIMARY KEY);",
  "1_init.down.sql": "DROP TABLE a;",
  "2_b.up.sql": "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);",
  "2_b.down.sql": "DROP TABLE b;",
  "10_b_note.up.sql": "ALTER TABLE b ADD COLUMN note text;",
  "10_b_note.down.sql": "ALTER TABLE b DROP COLUMN note;",
}
DBMATE = {
  "20240101000000_init.sql": "-- migrate:up\nCREATE TABLE a (id int PRIMARY KEY);\n\n"
                             "-- migrate:down\nDROP TABLE a;\n",
  "20240301000000_b.sql": "-- migrate:up\nCREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);\n"
                          "ALTER TABLE b ADD COLUMN note text;\n\n-- migrate:down\nDROP TABLE b;\n",
}
SQITCH = {
  "sqitch.plan": "%syntax-version=1.0.0\n%project=app\n\n"
                 "zeta 2024-01-01T00:00:00Z Ann <a@example.com> # first, despite its name\n"
                 "alpha [zeta] 2024-01-02T00:00:00Z Ann <a@example.com>\n",
  "deploy/zeta.sql": "CREATE TABLE a (id int PRIMARY KEY);",
  "deploy/alpha.sql": "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a, note text);",
  "revert/alpha.sql": "DROP TABLE b;",
  "revert/zeta.sql": "DROP TABLE a;",
  "verify/alpha.sql": "SELECT 1/0;",
}


def write_tree(root, files):
  for rel, text in files.items():
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
  return root


@pytest.mark.parametrize("tool,files,order", [
  ("flyway", FLYWAY, ["V1__init.sql", "V2__b.sql", "V10__b_note.sql", "R__view.sql"]),
  ("golang-migrate", GOLANG, ["1_init.up.sql", "2_b.up.sql", "10_b_note.up.sql"]),
  ("dbmate", DBMATE, ["20240101000000_init.sql", "20240301000000_b.sql"]),
  ("sqitch", SQITCH, ["deploy/zeta.sql", "deploy/alpha.sql"]),
])
def test_migrations_folder_applies_by_its_tools_conventions(pg, tmp_path, tool, files, order):
  folder = write_tree(tmp_path / "migrations", files)
  db = AppDb(pg, "mig_" + tool.replace("-", "_"))
  # The database as its first migrations left it: note is what the last one adds.
  start = tmp_path / "start.sql"
  start.write_text("CREATE TABLE a (id int PRIMARY KEY); "
                   "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);")
  db.apply(start)
  r = check(db.admin_url, str(folder))
  assert r.returncode == 1, r.stdout + r.stderr
  assert "applied in %s order" % tool in r.stdout, r.stdout
  listed = [line.split(". ", 1)[1] for line in r.stdout.splitlines()
            if line.startswith("  ") and line.strip()[:1].isdigit() and ". " in line]
  assert listed == order, r.stdout
  # The desired schema has what the up migrations build, and nothing a down migration undid.
  code, report = check_json(db.admin_url, str(folder))
  assert items(report, "missing", "table") == [], report
  assert items(report, "extra", "table") == [], report
  assert items(report, "missing", "column") == [("b", "note")], report


def test_sqitch_plan_naming_a_change_without_deploy_file_is_a_clear_error(pg, tmp_path):
  folder = write_tree(tmp_path / "migrations", {
    "sqitch.plan": "a 2024-01-01T00:00:00Z Ann <a@example.com>\n"
                   "b 2024-01-02T00:00:00Z Ann <a@example.com>\n",
    "deploy/a.sql": "CREATE TABLE a (id int);"})
  db = AppDb(pg, "mig_sqitch_missing")
  r = check(db.admin_url, str(folder))
  assert r.returncode == 2, r.stdout + r.stderr
  assert 'names change "b" but deploy/b.sql does not exist' in r.stderr, r.stderr


PRISMA = {
  "20240101000000_init/migration.sql": "CREATE TABLE a (id int PRIMARY KEY);",
  "20240201000000_b/migration.sql": "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);\n"
                                    "CREATE INDEX b_a_idx ON b (a_id);",
  "20240301000000_note/migration.sql": "ALTER TABLE b ADD COLUMN note text;",
  "migration_lock.toml": "provider = \"postgresql\"\n",
}

PRISMA_HISTORY = ("CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64) "
                  "NOT NULL, finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, "
                  "rolled_back_at timestamptz, started_at timestamptz NOT NULL DEFAULT now(), "
                  "applied_steps_count int NOT NULL DEFAULT 0)")


def test_check_names_the_migrations_a_restored_history_lacks(pg, tmp_path):
  folder = write_tree(tmp_path / "migrations", PRISMA)
  db = AppDb(pg, "mig_history_prisma")
  # The schema as the second migration left it (the guard created b, or it was restored),
  # but the restored history knows only the first.
  start = tmp_path / "start.sql"
  start.write_text(PRISMA_HISTORY + ";\n"
                   "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name) "
                   "VALUES ('1', 'x', now(), '20240101000000_init');\n"
                   "CREATE TABLE a (id int PRIMARY KEY);\n"
                   "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a);\n"
                   "CREATE INDEX b_a_idx ON b (a_id);\n")
  db.apply(start)
  r = check(db.admin_url, str(folder))
  assert r.returncode == 1, r.stdout + r.stderr        # b.note is missing
  assert "_prisma_migrations lacks" in r.stdout, r.stdout
  assert "npx prisma migrate resolve --applied 20240201000000_b" in r.stdout, r.stdout
  # Already in the history: not listed. Objects still missing: not listed either.
  assert "--applied 20240101000000_init" not in r.stdout
  assert "--applied 20240301000000_note" not in r.stdout
  # The bookkeeping table itself is neither missing nor extra.
  _, report = check_json(db.admin_url, str(folder))
  assert not [i for i in report["items"] if i["name"] == "_prisma_migrations"], report
  # Once the note column exists too, the last one is listed as well.
  db.sql("ALTER TABLE b ADD COLUMN note text")
  r = check(db.admin_url, str(folder))
  assert r.returncode == 0, r.stdout + r.stderr
  assert "--applied 20240201000000_b" in r.stdout and "--applied 20240301000000_note" in r.stdout
  # A history that knows them all: nothing to say.
  db.sql("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name) VALUES "
         "('2', 'x', now(), '20240201000000_b'), ('3', 'x', now(), '20240301000000_note')")
  r = check(db.admin_url, str(folder))
  assert "lacks" not in r.stdout, r.stdout


def test_golang_migrate_history_is_one_version(pg, tmp_path):
  folder = write_tree(tmp_path / "migrations", GOLANG)
  db = AppDb(pg, "mig_history_golang")
  start = tmp_path / "start.sql"
  start.write_text("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);\n"
                   "INSERT INTO schema_migrations VALUES (1, false);\n"
                   "CREATE TABLE a (id int PRIMARY KEY);\n"
                   "CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a, note text);\n")
  db.apply(start)
  r = check(db.admin_url, str(folder))
  assert r.returncode == 0, r.stdout + r.stderr
  assert "schema_migrations lacks" in r.stdout
  assert "force 2\n" in r.stdout and "force 10\n" in r.stdout, r.stdout
  assert "force 1\n" not in r.stdout


def test_no_history_table_no_hints(pg, tmp_path):
  folder = write_tree(tmp_path / "migrations", PRISMA)
  db = AppDb(pg, "mig_history_none")
  start = tmp_path / "start.sql"
  start.write_text("CREATE TABLE a (id int PRIMARY KEY);\n")
  db.apply(start)
  r = check(db.admin_url, str(folder))
  assert r.returncode == 1
  assert "lacks" not in r.stdout
