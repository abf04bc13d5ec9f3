# `pgguard check` and `pgguard plan` against a real PostgreSQL: the desired schema loaded into a
# shadow database (file, migrations folder, pg_dump output), the drift of a database restored at
# an older schema, clear errors for schema files that do not load, and shadow database reuse.
import re

import pytest

from conftest import PGBIN, run, _txt
from guard_helpers import (ADDITIVE_PREFIXES, CORE_SQL, FINANCE_TABLES, FULL_SQL, MIGRATIONS,
                           AppDb, check, check_json, items, plan,
                           plan_statements, seed_core, shadow_dbs, unique_schema, wait_until)


@pytest.fixture(scope="module")
def old_db(pg):
  """A database restored from a backup taken before the project-finance release: core tables
  with rows, none of the twelve newer tables."""
  db = AppDb(pg, "guard_check_old")
  db.apply(CORE_SQL)
  seed_core(db)
  return db


@pytest.fixture(scope="module")
def full_db(pg):
  db = AppDb(pg, "guard_check_full")
  db.apply(FULL_SQL)
  return db


def test_check_lists_the_twelve_missing_tables_of_an_old_restore(old_db):
  r = check(old_db.admin_url, FULL_SQL)
  assert r.returncode == 1, r.stderr
  missing_tables = sorted(line.split()[2].split(".", 1)[1] for line in r.stdout.splitlines()
                          if line.startswith("missing ") and line.split()[1] == "table")
  assert missing_tables == FINANCE_TABLES
  assert "missing: 3 enums, 12 sequences, 12 tables; extra: 0; conflicting: 0" in r.stdout

  code, report = check_json(old_db.admin_url, FULL_SQL)
  assert code == 1
  assert [n for _, n in items(report, "missing", "table")] == FINANCE_TABLES
  assert [n for _, n in items(report, "missing", "enum")] == ["ExpenseStatus", "FundingSource",
                                                              "InvoiceStatus"]
  # The core tables, their columns, keys and indexes read the same from shadow and live.
  assert report["extra"] == 0 and report["conflicting"] == 0
  # Columns, keys and indexes of a missing table come with it: not counted on their own.
  assert report["counts"]["column"]["missing"] == 0
  assert report["counts"]["constraint"]["missing"] == 0


def test_check_exits_zero_when_the_database_has_the_whole_schema(full_db):
  r = check(full_db.admin_url, FULL_SQL)
  assert r.returncode == 0, r.stdout + r.stderr
  assert "missing: 0; extra: 0; conflicting: 0" in r.stdout


def test_check_reports_extra_and_conflicting_objects_without_failing(pg, tmp_path):
  db = AppDb(pg, "guard_check_other")
  db.apply(FULL_SQL)
  db.sql("CREATE TABLE audit_log (id bigint PRIMARY KEY)", as_owner=True)
  db.sql("ALTER TABLE project_vendors ALTER COLUMN contact_email TYPE varchar(200)", as_owner=True)
  code, report = check_json(db.admin_url, FULL_SQL)
  assert code == 0, "extra and conflicting objects are reported, never missing"
  assert items(report, "extra", "table") == [(None, "audit_log")]
  conflict = [i for i in report["items"] if i["state"] == "conflicting"]
  assert [(i["parent"], i["name"]) for i in conflict] == [("project_vendors", "contact_email")]
  assert "character varying(200)" in conflict[0]["why"] and "text" in conflict[0]["why"]


def test_objects_of_extensions_are_neither_desired_nor_extra(pg, tmp_path):
  """An extension's own tables and types are the extension's business: a table that belongs
  to an extension is not reported; the same table outside one is."""
  db = AppDb(pg, "guard_check_extension")
  db.apply(FULL_SQL)
  pg.sql("CREATE EXTENSION pg_trgm", db=db.name)
  pg.sql("CREATE TABLE trgm_cache (id int PRIMARY KEY, words text[])", db=db.name)
  code, report = check_json(db.admin_url, FULL_SQL)
  assert items(report, "extra", "table") == [(None, "trgm_cache")]
  pg.sql("ALTER EXTENSION pg_trgm ADD TABLE trgm_cache", db=db.name)
  code, report = check_json(db.admin_url, FULL_SQL)
  assert code == 0 and report["extra"] == 0, report
  # And in the desired schema: the extension itself is missing (pgguard creates it), its
  # own objects add nothing to the drift.
  schema = tmp_path / "with_extension.sql"
  schema.write_text('CREATE EXTENSION IF NOT EXISTS "citext";\n' + FULL_SQL.read_text())
  code, report = check_json(db.admin_url, schema)
  assert code == 1 and report["missing"] == 1 and report["extra"] == 0, report
  assert items(report, "missing", "extension") == [(None, "citext")]


def test_plan_prints_only_additive_statements_and_changes_nothing(old_db):
  before = old_db.tables()
  r = plan(old_db.admin_url, FULL_SQL)
  assert r.returncode == 0, r.stderr
  stmts = plan_statements(r.stdout)
  assert stmts, r.stdout
  for s in stmts:
    assert s.startswith(ADDITIVE_PREFIXES), s
    assert s.endswith(";"), s
    if s.startswith("ALTER TABLE "):
      assert re.match(r'ALTER TABLE "[^"]+"\."[^"]+" ADD (COLUMN|CONSTRAINT) ', s), s
    if s.startswith("ALTER TYPE "):
      assert re.match(r'ALTER TYPE "[^"]+"\."[^"]+" ADD VALUE ', s), s
    if s.startswith("ALTER SEQUENCE "):
      assert re.match(r'ALTER SEQUENCE "[^"]+"\."[^"]+" OWNED BY "[^"]+"\."[^"]+"\."[^"]+";$', s), s
    for word in (r"\bDROP\b", r"\bTRUNCATE\b", r"\bALTER COLUMN\b", r"\bSET NOT NULL\b",
                 r"\bRENAME\b"):
      assert not re.search(word, s, re.I), s
  created = sorted(s.split()[2].split(".")[1].strip('"') for s in stmts
                   if s.startswith("CREATE TABLE "))
  assert created == FINANCE_TABLES
  # Dependency order: types, then sequences, then tables, then indexes, then constraints.
  first = {k: min(i for i, s in enumerate(stmts) if s.startswith(k))
           for k in ("CREATE TYPE ", "CREATE SEQUENCE ", "CREATE TABLE ", "ALTER TABLE ")}
  assert first["CREATE TYPE "] < first["CREATE SEQUENCE "] < first["CREATE TABLE "] \
      < first["ALTER TABLE "]
  # Foreign keys of new tables to the existing ones are there too.
  assert any('ADD CONSTRAINT "project_expenses_project_id_fkey" FOREIGN KEY' in s for s in stmts)
  # Printing the plan ran nothing.
  assert old_db.tables() == before
  assert check(old_db.admin_url, FULL_SQL).returncode == 1


def test_plan_says_nothing_to_repair_when_the_database_is_current(full_db):
  r = plan(full_db.admin_url, FULL_SQL)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == "-- nothing to repair"


def test_schema_syntax_error_names_the_file_and_line_7(full_db, tmp_path):
  bad = tmp_path / "bad_schema.sql"
  bad.write_text(
    "-- a schema with a typo\n"                          # 1
    "CREATE TABLE \"ok_table\" (\n"                       # 2
    "    \"id\" SERIAL NOT NULL,\n"                       # 3
    "    CONSTRAINT \"ok_table_pkey\" PRIMARY KEY (\"id\")\n"  # 4
    ");\n"                                               # 5
    "\n"                                                 # 6
    "CREATE TABLEE \"broken\" (\"id\" INTEGER);\n"        # 7
    "CREATE TABLE \"after\" (\"id\" INTEGER);\n")         # 8
  r = check(full_db.admin_url, bad)
  assert r.returncode == 2, r.stdout
  assert "schema file %s, line 7: " % bad in r.stderr, r.stderr
  assert 'syntax error at or near "TABLEE"' in r.stderr
  assert r.stdout == ""
  r = plan(full_db.admin_url, bad)
  assert r.returncode == 2 and "line 7" in r.stderr


def test_error_line_counts_characters_not_bytes(full_db, tmp_path):
  """PostgreSQL reports an error position in characters; with two-byte characters early in the
  file, counting bytes would land lines too early."""
  bad = tmp_path / "utf8_schema.sql"
  bad.write_text(
    "-- Zürich, Genève, Besançon, Málaga, Kraków, Århus, Ærø, Øresund, Łódź, Škofja Loka\n"
    "-- " + "é" * 300 + "\n"
    "COMMENT ON SCHEMA public IS 'Étape: première'; -- ünïcödé\n"
    "CREATE TABLE \"façade\" (\"größe\" INTEGER);\n"
    "\n"
    "\n"
    "CREATE TABLE \"x\" (\"id\" INTEGR);\n", encoding="utf-8")
  r = check(full_db.admin_url, bad)
  assert r.returncode == 2
  assert "schema file %s, line 7: type \"integr\" does not exist" % bad in r.stderr, r.stderr


def test_schema_path_errors_name_the_path(full_db, tmp_path):
  missing = tmp_path / "nope.sql"
  r = check(full_db.admin_url, missing)
  assert r.returncode == 2
  assert str(missing) in r.stderr and "No such file or directory" in r.stderr

  empty = tmp_path / "empty_dir"
  (empty / "sub").mkdir(parents=True)
  (empty / "README.md").write_text("no SQL here\n")
  r = check(full_db.admin_url, empty)
  assert r.returncode == 2
  assert "schema directory %s holds no .sql file" % empty in r.stderr


def test_semantic_error_without_position_names_the_file(full_db, tmp_path):
  bad = tmp_path / "fk.sql"
  bad.write_text('CREATE TABLE "a" ("id" INTEGER PRIMARY KEY, "b_id" INTEGER);\n'
                 'ALTER TABLE "a" ADD CONSTRAINT "a_b_fkey" FOREIGN KEY ("b_id") '
                 'REFERENCES "b"("id");\n')
  r = check(full_db.admin_url, bad)
  assert r.returncode == 2
  assert "schema file %s" % bad in r.stderr
  assert 'relation "b" does not exist' in r.stderr


def test_migrations_folder_applies_in_path_order(old_db, full_db, tmp_path):
  """A Prisma migrations folder: each migration.sql in byte-wise path order; the second
  migration needs the first one's tables. Other files are ignored."""
  r = check(full_db.admin_url, MIGRATIONS)
  assert r.returncode == 0, r.stdout + r.stderr
  code, report = check_json(old_db.admin_url, MIGRATIONS)
  assert code == 1
  assert [n for _, n in items(report, "missing", "table")] == FINANCE_TABLES

  # Created newest first, so directory order and path order differ.
  mig = tmp_path / "mig"
  for name, sql in [("3_third", 'ALTER TABLE "t" ADD COLUMN "c" INTEGER;\n'),
                    ("2_second", 'ALTER TABLE "t" ADD COLUMN "b" INTEGER;\n'),
                    ("1_first", 'CREATE TABLE "t" ("a" INTEGER);\n')]:
    (mig / name).mkdir(parents=True)
    (mig / name / "migration.sql").write_text(sql)
  code, report = check_json(full_db.admin_url, mig)
  assert code == 1
  cols = [i for i in report["items"] if i["kind"] == "table" and i["state"] == "missing"]
  assert [i["name"] for i in cols] == ["t"]


def test_pg_dump_schema_only_output_loads_and_matches(full_db, tmp_path):
  """pg_dump --schema-only output (psql's \\restrict lines and all) is a desired schema too,
  and reads back exactly like the database it was dumped from."""
  dump = tmp_path / "dump.sql"
  r = run([str(PGBIN / "pg_dump"), "--schema-only", "-f", str(dump),
           "-d", full_db.pg.dsn(dbname=full_db.name)])
  assert r.returncode == 0, _txt(r.stderr)
  r = check(full_db.admin_url, dump)
  assert r.returncode == 0, r.stdout + r.stderr
  assert "missing: 0; extra: 0; conflicting: 0" in r.stdout


def test_shadow_database_is_reused_while_the_schema_is_unchanged(pg, full_db, tmp_path):
  schema = unique_schema(tmp_path)
  before = shadow_dbs(pg)
  assert check(full_db.admin_url, schema).returncode == 0
  created = {n: v for n, v in shadow_dbs(pg).items() if n not in before}
  assert len(created) == 1, created
  (name, (oid, comment)), = created.items()
  assert comment == "pgguard shadow %s complete" % name[len("pgguard_shadow_"):]

  # Unchanged: same database, not recreated (same oid).
  assert check(full_db.admin_url, schema).returncode == 0
  assert shadow_dbs(pg)[name] == (oid, comment)

  # Changed content: a new shadow database; the old one is left alone.
  schema.write_text(schema.read_text() + 'CREATE TABLE "only_in_new_schema" ("id" INTEGER);\n')
  r = check(full_db.admin_url, schema)
  assert r.returncode == 1 and "only_in_new_schema" in r.stdout
  now = shadow_dbs(pg)
  assert now[name] == (oid, comment)
  assert len(set(now) - set(before)) == 2


def test_half_loaded_shadow_database_is_rebuilt(pg, full_db, tmp_path):
  schema = unique_schema(tmp_path)
  before = set(shadow_dbs(pg))
  assert check(full_db.admin_url, schema).returncode == 0
  name, = set(shadow_dbs(pg)) - before
  oid = shadow_dbs(pg)[name][0]
  # What a crash mid-load leaves: no "complete" comment, and a partial schema.
  pg.sql('COMMENT ON DATABASE "%s" IS NULL' % name)
  pg.sql("DROP TABLE users CASCADE", db=name)
  r = check(full_db.admin_url, schema)
  assert r.returncode == 0, r.stdout + r.stderr
  new_oid, comment = shadow_dbs(pg)[name]
  assert new_oid != oid and comment.endswith(" complete")
  assert pg.sql("SELECT count(*) FROM pg_class WHERE relname = 'users'", db=name) == [(1,)]


def test_failed_load_leaves_no_shadow_database(pg, full_db, tmp_path):
  bad = tmp_path / "bad.sql"
  bad.write_text("CREATE TABLE \"fine\" (\"id\" INTEGER);\nSELEC 1;\n")
  before = set(shadow_dbs(pg))
  assert check(full_db.admin_url, bad).returncode == 2
  assert set(shadow_dbs(pg)) == before


def test_shadow_url_is_loaded_when_empty_and_refused_when_not(pg, full_db, tmp_path):
  pg.create_db("guard_given_shadow")
  shadow_url = pg.url(dbname="guard_given_shadow")
  before = shadow_dbs(pg)
  r = check(full_db.admin_url, FULL_SQL, "--shadow-url", shadow_url)
  assert r.returncode == 0, r.stdout + r.stderr
  assert shadow_dbs(pg) == before, "no database of its own when given one"
  assert "users" in [t for (t,) in pg.sql(
    "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
    db="guard_given_shadow")]
  # Loaded once; an unchanged schema reuses it, a changed one replaces what pgguard loaded.
  assert check(full_db.admin_url, FULL_SQL, "--shadow-url", shadow_url).returncode == 0
  changed = tmp_path / "changed.sql"
  changed.write_text(FULL_SQL.read_text() + 'CREATE TABLE "brand_new" ("id" INTEGER);\n')
  r = check(full_db.admin_url, changed, "--shadow-url", shadow_url)
  assert r.returncode == 1 and "brand_new" in r.stdout, r.stdout + r.stderr

  # A database that holds someone else's objects is never emptied.
  pg.create_db("guard_busy_shadow")
  pg.sql("CREATE TABLE precious (id int)", db="guard_busy_shadow")
  r = check(full_db.admin_url, FULL_SQL, "--shadow-url", pg.url(dbname="guard_busy_shadow"))
  assert r.returncode == 2
  assert "guard_busy_shadow (--shadow-url) is not empty" in r.stderr, r.stderr
  assert pg.sql("SELECT count(*) FROM precious", db="guard_busy_shadow") == [(0,)]


def test_shadow_url_naming_the_guarded_database_is_refused(pg, tmp_path):
  db = AppDb(pg, "guard_check_empty")
  r = check(db.admin_url, FULL_SQL, "--shadow-url", db.admin_url)
  assert r.returncode == 2
  assert "names the guarded database" in r.stderr, r.stderr
  assert db.tables() == []


def test_check_without_reachable_database_exits_2(tmp_path):
  r = check("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", FULL_SQL)
  assert r.returncode == 2
  assert "admin database" in r.stderr and r.stdout == ""


def test_old_shadow_databases_are_pruned_unless_kept_or_in_use(pg, full_db, pgguard, tmp_path):
  versions = []
  for i in range(5):
    d = tmp_path / ("v%d" % i)
    d.mkdir()
    versions.append(unique_schema(d))

  def shadow_of(schema):
    before = set(shadow_dbs(pg))
    assert check(full_db.admin_url, schema).returncode == 0
    return before

  # A running pgguard on version 0: its admin session announces that shadow.
  g = pgguard("--schema", str(versions[0]), "--admin-url", full_db.admin_url)
  in_use = wait_until(lambda: {n for n in shadow_dbs(pg)
                               if pg.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                         " AND classid = %s AND objsubid = 2 AND objid = "
                                         "(('x' || right(%s, 8))::bit(32)::int & 2147483647)",
                                         (0x70676773, n))[0][0]},
                      timeout=30, what="the running pgguard announcing its shadow")
  assert len(in_use) == 1, in_use
  names = []
  for v in versions[1:4]:
    before = set(shadow_dbs(pg))
    assert check(full_db.admin_url, v).returncode == 0
    new = set(shadow_dbs(pg)) - before
    names.append(new.pop() if new else None)
  now = set(shadow_dbs(pg))
  # Kept: the current (v3), the previous (v2), the one in use (v0). Dropped: v1.
  assert names[2] in now and names[1] in now, (names, now)
  assert in_use <= now
  assert names[0] not in now, (names, now)
  # --shadow-keep 0: only the current one and those in use.
  before = set(shadow_dbs(pg))
  r = check(full_db.admin_url, versions[4], "--shadow-keep", "0")
  assert r.returncode == 0, r.stderr
  current, = set(shadow_dbs(pg)) - before
  now = set(shadow_dbs(pg))
  assert current in now and in_use <= now
  assert names[1] not in now and names[2] not in now, now
  # Nothing else of the server was touched.
  assert pg.sql("SELECT count(*) FROM pg_database WHERE datname = %s", (full_db.name,))[0][0] == 1
