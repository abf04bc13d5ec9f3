# psycopg2 (libpq) through pgguard: typical types round trip, server-side cursors, executemany,
# and error codes with their diagnostics.
import datetime
import decimal
import uuid

import psycopg2
import psycopg2.errors
import psycopg2.extras
import pytest


@pytest.fixture
def conn(target, appdb):
  c = target.connect(autocommit=False, **appdb)
  yield c
  c.close()


def test_typical_types_round_trip_unchanged(conn):
  psycopg2.extras.register_uuid()
  values = (
    42, 2 ** 62, decimal.Decimal("12345678901234567890.000000001"), 3.25, "héllo ✓ \t 'quoted'",
    b"\x00\x01\xfe\xff" * 100, True, None, datetime.date(2024, 2, 29),
    datetime.datetime(2024, 2, 29, 12, 34, 56, 789012, tzinfo=datetime.timezone.utc),
    datetime.timedelta(days=3, seconds=7), uuid.UUID("12345678-1234-5678-1234-567812345678"),
    [1, 2, 3], ["a", None, "c"],
  )
  with conn.cursor() as cur:
    cur.execute("SET TIME ZONE 'UTC'")
    cur.execute("SELECT %s::int, %s::bigint, %s::numeric, %s::float8, %s::text, %s::bytea, "
                "%s::bool, %s::text, %s::date, %s::timestamptz, %s::interval, %s::uuid, "
                "%s::int[], %s::text[]", values)
    row = cur.fetchone()
    row = row[:5] + (bytes(row[5]),) + row[6:]
    assert row == values
    cur.execute("SELECT %s::jsonb", (psycopg2.extras.Json({"k": [1, {"n": None}]}),))
    assert cur.fetchone()[0] == {"k": [1, {"n": None}]}


def test_server_side_cursor_streams_in_batches(conn):
  with conn.cursor(name="big_cursor") as cur:
    cur.itersize = 1000
    cur.execute("SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
    n = total = 0
    for gid, digest in cur:
      n += 1
      total += gid
      assert len(digest) == 32
  conn.commit()
  assert n == 20000 and total == 20000 * 20001 // 2


def test_executemany_inserts_every_row(conn, target):
  table = "em_" + target.name
  with conn.cursor() as cur:
    cur.execute("DROP TABLE IF EXISTS %s" % table)
    cur.execute("CREATE TABLE %s (id int PRIMARY KEY, label text)" % table)
    cur.executemany("INSERT INTO " + table + " VALUES (%s, %s)",
                    [(i, "row %d" % i) for i in range(1000)])
    conn.commit()
    cur.execute("SELECT count(*), sum(id), max(label) FROM %s" % table)
    assert cur.fetchone() == (1000, 499500, "row 999")


@pytest.mark.parametrize("sql,pgcode,cls", [
  ("SELECT * FROM no_such_table_pg2", "42P01", psycopg2.errors.UndefinedTable),
  ("SELECT nosuchcolumn FROM pg_class", "42703", psycopg2.errors.UndefinedColumn),
  ("SELECT 1/0", "22012", psycopg2.errors.DivisionByZero),
  ("SELEC 1", "42601", psycopg2.errors.SyntaxError),
  ("SELECT 'x'::nosuchtype", "42704", psycopg2.errors.UndefinedObject),
])
def test_error_has_its_pgcode_and_transaction_recovers(conn, sql, pgcode, cls):
  with conn.cursor() as cur:
    with pytest.raises(cls) as ei:
      cur.execute(sql)
    assert ei.value.pgcode == pgcode
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
      cur.execute("SELECT 1")
    conn.rollback()
    cur.execute("SELECT 'recovered'")
    assert cur.fetchone() == ("recovered",)


def test_unique_violation_reports_constraint_and_detail(conn, target):
  table = "uv_" + target.name
  with conn.cursor() as cur:
    cur.execute("DROP TABLE IF EXISTS %s" % table)
    cur.execute("CREATE TABLE %s (id int CONSTRAINT %s_pk PRIMARY KEY)" % (table, table))
    cur.execute("INSERT INTO %s VALUES (1)" % table)
    conn.commit()
    with pytest.raises(psycopg2.errors.UniqueViolation) as ei:
      cur.execute("INSERT INTO %s VALUES (1)" % table)
    conn.rollback()
  diag = ei.value.diag
  assert diag.constraint_name == table + "_pk"
  assert diag.table_name == table
  assert diag.message_detail == "Key (id)=(1) already exists."
