"""No rewrite, no long lock (issue 8 item 2): what would rewrite or scan a table with rows is
reported as needs_migration and never run; indexes and keys of tables with rows are built
CONCURRENTLY after the repair's commit, on a session of their own, under pgguard's own name;
the one DROP pgguard runs is of its own INVALID build."""
import json
import re
import time
import psycopg2

from guard_helpers import AppDb, check, check_json, plan, start_repairing, wait_repair, wait_until

OLD = """
CREATE DOMAIN email AS text CONSTRAINT email_shape CHECK (VALUE LIKE '%@%');
CREATE TABLE events (id int NOT NULL, a int, code text);
INSERT INTO events SELECT g, g, 'c' || g FROM generate_series(1, 2000) g;
CREATE TABLE legacy (code text);
INSERT INTO legacy VALUES ('x'), ('y');
"""

DESIRED = """
CREATE DOMAIN email AS text CONSTRAINT email_shape CHECK (VALUE LIKE '%@%');
CREATE TABLE events (
  id int NOT NULL,
  a int,
  code text,
  uid uuid DEFAULT gen_random_uuid(),
  seq bigint GENERATED ALWAYS AS IDENTITY,
  doubled int GENERATED ALWAYS AS (a * 2) STORED,
  contact email,
  stamped timestamptz DEFAULT clock_timestamp(),
  created_at timestamptz DEFAULT now(),
  note text DEFAULT 'none',
  maybe text DEFAULT current_setting('app.nothing', true)
);
CREATE INDEX events_uid_idx ON events (uid);
CREATE TABLE legacy (code text PRIMARY KEY);
"""

NEEDS = {"uid": "is volatile", "seq": "identity column", "doubled": "stored generated column",
         "contact": "domain with constraints", "stamped": "is volatile",
         "legacy_pkey": "may hold NULL", "events_uid_idx": "needs column uid"}


def needs_setup(pg, tmp_path, name):
  db = AppDb(pg, name)
  old = tmp_path / "old.sql"
  old.write_text(OLD)
  db.apply(old)
  desired = tmp_path / "schema.sql"
  desired.write_text(DESIRED)
  return db, desired


def filenode(db, table):
  return db.sql("SELECT pg_relation_filenode(%s)", (table,))[0][0]


def test_what_would_rewrite_a_table_with_rows_needs_a_migration(pg, pgguard, tmp_path):
  db, desired = needs_setup(pg, tmp_path, "lock_light_needs")
  code, report = check_json(db.admin_url, desired)
  got = {i["name"]: i["why"] for i in report["items"] if i["state"] == "needs_migration"}
  assert set(got) == set(NEEDS), got
  for name, why in NEEDS.items():
    assert why in got[name], (name, got[name])
  # Stable defaults are stored once (a missing value): no rewrite, so they are repairable.
  missing = {i["name"] for i in report["items"] if i["state"] == "missing"}
  # (A default that evaluates to NULL is no rewrite either.)
  assert missing == {"created_at", "note", "maybe"}, missing
  text = check(db.admin_url, desired).stdout
  assert "needs_migration: 5 columns, 1 constraint, 1 index" in text, text
  assert check(db.admin_url, desired, "--fail-on", "needs_migration").returncode == 1
  p = plan(db.admin_url, desired).stdout
  assert "-- not planned, needs_migration: column public.events.seq: an identity column" in p, p
  assert '"seq"' not in p.replace("public.events.seq", "")

  before = filenode(db, "events")
  inst = start_repairing(pgguard, db, desired)
  event, line = wait_repair(inst)
  assert event == "repair_applied", inst.log[-3000:]
  # Added without touching a row: same file, every row sees the stored default.
  assert filenode(db, "events") == before
  assert db.sql("SELECT count(*) FROM events WHERE note = 'none' AND created_at IS NOT NULL") == [
    (2000,)]
  cols = {r[0] for r in db.sql("SELECT attname FROM pg_attribute WHERE attrelid = 'events'::regclass"
                              " AND attnum > 0")}
  assert not cols & {"uid", "seq", "doubled", "contact", "stamped"}, cols
  assert not db.sql("SELECT 1 FROM pg_constraint WHERE conname = 'legacy_pkey'")
  # Reported where operators look: the gauge and /drift.
  wait_until(lambda: inst.metrics().get_value("pgguard_schema_drift_objects", kind="column",
                                              state="needs_migration") == 5, what="the gauge")
  assert inst.metrics().get_value("pgguard_schema_drift_objects", kind="constraint",
                                  state="needs_migration") == 1
  code, body = inst.http_get("/drift")
  assert json.loads(body)["needs_migration"] == 7, body
  # The desired schema on an empty table is created whole: nothing to rewrite there.
  db.sql("TRUNCATE events")
  assert check_json(db.admin_url, desired)[1]["needs_migration"] == 1  # legacy still has rows


KEYS_OLD = """
CREATE TABLE big (id int NOT NULL, v int, w int);
INSERT INTO big SELECT g, g % 100, g FROM generate_series(1, 5000) g;
CREATE TABLE elsewhere (id int);
"""


def old_snapshot(db):
  """A session holding a snapshot (REPEATABLE READ, reading another table): CREATE INDEX
  CONCURRENTLY waits for it to end; it holds no lock on big."""
  holder = psycopg2.connect(db.pg.dsn(dbname=db.name))
  holder.set_session(isolation_level="REPEATABLE READ")
  with holder.cursor() as cur:
    cur.execute("SELECT count(*) FROM elsewhere")
  return holder

KEYS_DESIRED = """
CREATE TABLE big (id int NOT NULL, v int, w int);
ALTER TABLE big ADD CONSTRAINT big_pkey PRIMARY KEY (id);
ALTER TABLE big ADD CONSTRAINT big_w_key UNIQUE (w) DEFERRABLE;
CREATE INDEX big_v_idx ON big (v);
CREATE TABLE fresh (id int PRIMARY KEY, big_id int REFERENCES big (id));
"""


def keys_setup(pg, tmp_path, name, old=KEYS_OLD):
  db = AppDb(pg, name)
  f = tmp_path / "old.sql"
  f.write_text(old)
  db.apply(f)
  desired = tmp_path / "schema.sql"
  desired.write_text(KEYS_DESIRED)
  return db, desired


def build_name(schema, table, name, definition):
  """pgguard's own name for a build: FNV-1a 64 over schema, table, name and the definition
  (pg_get_indexdef or pg_get_constraintdef), each with its terminator."""
  h = 0xcbf29ce484222325
  for part in (schema, table, name, definition):
    for byte in part.encode() + b"\0":
      h ^= byte
      h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
  return "pgguard_build_%016x" % h


def indexes(db):
  return {r[0]: r[1] for r in db.sql(
    "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
    " WHERE x.indrelid IN ('big'::regclass)")}


def test_keys_and_indexes_of_a_table_with_rows_are_built_concurrently(pg, pgguard, tmp_path):
  db, desired = keys_setup(pg, tmp_path, "lock_light_keys")
  p = plan(db.admin_url, desired).stdout
  assert ('CREATE UNIQUE INDEX CONCURRENTLY "%s"'
          % build_name("public", "big", "big_pkey", "PRIMARY KEY (id)")) in p, p
  assert ('ADD CONSTRAINT "big_w_key" UNIQUE USING INDEX "%s" DEFERRABLE'
          % build_name("public", "big", "big_w_key", "UNIQUE (w) DEFERRABLE")) in p, p
  # The foreign key to the key built concurrently follows the build.
  assert p.index('ADD CONSTRAINT "fresh_big_id_fkey"') > p.index('"big_pkey" PRIMARY KEY USING INDEX')
  inst = start_repairing(pgguard, db, desired)
  event, line = wait_repair(inst)
  assert event == "repair_applied", inst.log[-3000:]
  done = inst.wait_log(r"event=index_builds_done built=4 .*", timeout=60).group(0)
  got = indexes(db)
  assert got == {"big_pkey": True, "big_w_key": True, "big_v_idx": True}, got
  assert db.sql("SELECT conname, contype, condeferrable FROM pg_constraint"
                " WHERE conrelid IN ('big'::regclass, 'fresh'::regclass) ORDER BY 1") == [
    ("big_pkey", "p", False), ("big_w_key", "u", True), ("fresh_big_id_fkey", "f", False),
    ("fresh_pkey", "p", False)]
  wait_until(lambda: check_json(db.admin_url, desired)[1]["missing"] == 0, what="no drift")
  assert check(db.admin_url, desired).returncode == 0


def test_a_failed_build_is_dropped_and_only_pgguards_own(pg, pgguard, tmp_path):
  """Duplicates fail the unique build: its INVALID index (pgguard's name) is dropped, the
  failure reported with PostgreSQL's words. Someone else's INVALID index is never touched,
  and a leftover INVALID build of pgguard's own from an earlier run is dropped first."""
  db, desired = keys_setup(pg, tmp_path, "lock_light_invalid")
  db.sql("UPDATE big SET w = 1 WHERE id IN (1, 2)")   # duplicates under big_w_key
  # An earlier pgguard's build that failed half-way, and someone else's failed build.
  own = build_name("public", "big", "big_v_idx",
                   "CREATE INDEX big_v_idx ON public.big USING btree (v)")
  conn = psycopg2.connect(db.pg.dsn(dbname=db.name))
  conn.autocommit = True
  with conn.cursor() as cur:
    for name in (own, "someone_elses_idx"):
      try:
        cur.execute('CREATE UNIQUE INDEX CONCURRENTLY "%s" ON big (v)' % name)
      except psycopg2.Error:
        pass
  conn.close()
  assert indexes(db) == {own: False, "someone_elses_idx": False}
  inst = start_repairing(pgguard, db, desired, "--repair-cooldown", "600")
  line = inst.wait_log(r"event=index_builds_failed .*", timeout=60).group(0)
  assert "built=3 failed=1" in line and "could not create unique index" in line, line
  assert "is duplicated" in line, line
  got = indexes(db)
  assert got == {"big_pkey": True, "big_v_idx": True, "someone_elses_idx": False}, got
  assert not [n for n in got if n.startswith("pgguard_build_")]
  code, body = inst.http_get("/drift")
  assert "could not create unique index" in json.loads(body)["last_error"]
  r = check(db.admin_url, desired)
  assert r.returncode == 1 and "big_w_key" in r.stdout, r.stdout


def test_a_replay_does_not_wait_for_an_index_build(pg, pgguard, tmp_path):
  """A request that meets a missing table is replayed once the transactional part commits,
  while the index of a table with rows is still being built (held up by an old snapshot,
  for longer than lock_timeout: the build waits instead of throwing its work away)."""
  db, desired = keys_setup(pg, tmp_path, "lock_light_replay", old=KEYS_OLD)
  desired.write_text(KEYS_DESIRED + "CREATE TABLE audit (id int PRIMARY KEY, what text);\n")
  holder = old_snapshot(db)
  try:
    inst = pgguard("--schema", str(desired), "--admin-url", db.admin_url,
                   "--lock-timeout", "1000", "--drift-interval", "60")
    inst.wait_log(r"event=schema_loaded", timeout=30)
    c = psycopg2.connect(inst.dsn(**db.owner_kw()))
    c.autocommit = True
    with c.cursor() as cur:
      cur.execute("SELECT count(*) FROM audit")   # 42P01, repaired and replayed
      assert cur.fetchone() == (0,)
    c.close()
    inst.wait_log(r"event=index_builds_started", timeout=10)
    assert "event=index_builds_done" not in inst.log and \
           "event=index_builds_failed" not in inst.log, "the replay waited for the build"
    time.sleep(2.5)   # past lock_timeout: the build still waits
    assert "event=index_builds_failed" not in inst.log, inst.log[-2000:]
  finally:
    holder.rollback()
    holder.close()
  inst.wait_log(r"event=index_builds_done built=4", timeout=60)


BUILD_KEY = 0x7067677561726400 + 3   # PGG_BUILD_KEY, guard/guard.h


def test_a_sidecar_that_finds_the_builds_taken_does_not_retry_at_once(pg, pgguard, tmp_path):
  """Another pgguard holds the build lock: this one leaves the builds to it and does not
  re-check or re-repair in a loop meanwhile."""
  db, desired = keys_setup(pg, tmp_path, "lock_light_busy")
  other = psycopg2.connect(db.pg.dsn(dbname=db.name))
  other.autocommit = True
  with other.cursor() as cur:
    cur.execute("SELECT pg_advisory_lock(%s)", (BUILD_KEY,))
  try:
    inst = start_repairing(pgguard, db, desired, "--drift-interval", "60")
    inst.wait_log(r"event=index_builds_elsewhere", timeout=30)
    time.sleep(4)
    assert inst.log.count("event=index_builds_elsewhere") == 1, inst.log[-3000:]
    assert len(re.findall(r"event=repair_(applied|nothing_missing|failed)", inst.log)) == 1, \
        inst.log[-3000:]
  finally:
    other.close()
  assert not [n for n in indexes(db) if n.startswith("pgguard_build_")]


def test_stopping_cancels_a_build_that_waits(pg, pgguard, tmp_path):
  """A build waiting for an old transaction (no timeout) ends when pgguard stops: SIGTERM is
  not held up by it. The INVALID index left behind is pgguard's own, dropped by the next run."""
  db, desired = keys_setup(pg, tmp_path, "lock_light_stop")
  holder = old_snapshot(db)
  try:
    inst = start_repairing(pgguard, db, desired)
    inst.wait_log(r"event=index_builds_started", timeout=30)
    wait_until(lambda: db.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE"
                              " 'CREATE %%INDEX CONCURRENTLY%%' AND state = 'active'")[0][0] == 1,
               what="the build waiting")
    t0 = time.monotonic()
    inst.stop(timeout=10)
    assert time.monotonic() - t0 < 8
  finally:
    holder.rollback()
    holder.close()
  leftovers = [n for n, valid in indexes(db).items() if n.startswith("pgguard_build_")]
  assert all(not indexes(db)[n] for n in leftovers), indexes(db)
  inst = start_repairing(pgguard, db, desired)
  inst.wait_log(r"event=index_builds_done built=4", timeout=60)
  assert not [n for n in indexes(db) if n.startswith("pgguard_build_")], indexes(db)


def test_a_forced_row_level_security_policy_does_not_make_a_table_look_empty(pg, tmp_path):
  """An admin subject to row level security (the table's owner, with FORCE) sees no rows;
  the table counts as having rows all the same, and what would rewrite it needs a migration."""
  db, desired = keys_setup(pg, tmp_path, "lock_light_rls")
  db.sql("ALTER TABLE big OWNER TO %s" % db.owner)
  db.sql("ALTER TABLE big ENABLE ROW LEVEL SECURITY")
  db.sql("ALTER TABLE big FORCE ROW LEVEL SECURITY")
  db.sql("CREATE POLICY nobody ON big USING (false)")
  desired.write_text(KEYS_DESIRED.replace("w int);", "w int, uid uuid DEFAULT gen_random_uuid());", 1))
  db.pg.sql("ALTER ROLE %s CREATEDB" % db.owner)   # for its shadow database
  owner_url = db.pg.url(dbname=db.name, user=db.owner, password=db.password)
  assert db.pg.sql("SELECT EXISTS (SELECT 1 FROM big)", db=db.name, user=db.owner,
                   password=db.password) == [(False,)]   # what the owner sees
  code, report = check_json(owner_url, desired)
  states = {i["name"]: i["state"] for i in report["items"]}
  assert states["uid"] == "needs_migration", report
  p = plan(owner_url, desired).stdout
  assert "CREATE INDEX CONCURRENTLY" in p and '"uid"' not in p.split("-- not planned")[0], p
