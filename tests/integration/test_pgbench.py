# pgbench's TPC-B-like load through pgguard in each query mode: no failed transaction.
import re

import pytest

from conftest import PGBENCH, run


@pytest.fixture(scope="module")
def bench_db(pg, appdb):
  pg.create_db("bench", owner=appdb["user"])
  kw = dict(appdb, dbname="bench")
  r = run([PGBENCH, "-i", "-s", "1", "-q", "-d", pg.dsn(**kw)], timeout=120)
  assert r.returncode == 0, r.stderr.decode()
  return kw


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_runs_without_failed_transactions(target, bench_db, mode):
  # Direct runs only check the harness, so they are kept short.
  seconds = "3" if target.name == "pgguard" else "1"
  r = run([PGBENCH, "-n", "-M", mode, "-c", "4", "-j", "2", "-T", seconds, "-d",
           target.dsn(**bench_db)], timeout=60)
  out = r.stdout.decode()
  err = r.stderr.decode()
  assert r.returncode == 0, out + err
  processed = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
  failed = re.search(r"number of failed transactions: (\d+)", out)
  assert processed > 0
  assert failed is not None and int(failed.group(1)) == 0, out
  assert "query mode: %s" % mode in out
