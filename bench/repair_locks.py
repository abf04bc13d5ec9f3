#!/usr/bin/python3
"""What a repair costs the application's writers on a big table: a table with
--rows rows lost a column with a volatile default, one with a stable default,
an index and its primary key. A writer inserts into it every 5 ms while

  old:     the same DDL runs the way pgguard ran it before issue 8 (one
           transaction: ADD COLUMN ... DEFAULT gen_random_uuid(), CREATE
           INDEX, ADD PRIMARY KEY);
  pgguard: pgguard --repair eager repairs it (the volatile column is reported
           as needs_migration, the stable one added, the index and key built
           CONCURRENTLY after the commit).

Reports the writer's insert latency (p50, p99, max), how long each took, and
whether the table was rewritten (relfilenode). Interleaved rounds on a fresh
table each. Run as root (PostgreSQL is started as user postgres).

Usage: bench/repair_locks.py [--rows N] [--rounds N] [--pgguard PATH]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import PGBIN, as_postgres, free_port  # noqa: E402

DESIRED = """
CREATE TABLE events (id bigint NOT NULL, v int, payload text,
  uid uuid DEFAULT gen_random_uuid(), created_at timestamptz DEFAULT now());
CREATE INDEX events_v_idx ON events (v);
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id);
"""

OLD_WAY = ("BEGIN; ALTER TABLE events ADD COLUMN uid uuid DEFAULT gen_random_uuid();"
           " ALTER TABLE events ADD COLUMN created_at timestamptz DEFAULT now();"
           " CREATE INDEX events_v_idx ON events (v);"
           " ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id); COMMIT")


class Writer(threading.Thread):
    """Inserts one row every 5 ms and records each insert's latency."""

    def __init__(self, dsn):
        super().__init__()
        self.dsn, self.lat, self.stop = dsn, [], False

    def run(self):
        c = psycopg2.connect(self.dsn)
        c.autocommit = True
        cur, i = c.cursor(), 10 ** 9
        while not self.stop:
            t = time.monotonic()
            cur.execute("INSERT INTO events (id, v, payload) VALUES (%s, 1, 'w')", (i,))
            self.lat.append(time.monotonic() - t)
            i += 1
            time.sleep(0.005)
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pgguard", default=os.path.join(ROOT, "build", "pgguard"))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="pgg-locks-", dir="/tmp")
    os.chmod(tmp, 0o777)
    pgdata = os.path.join(tmp, "data")
    port = free_port()
    try:
        as_postgres([f"{PGBIN}/initdb", "-D", pgdata, "-A", "trust", "-U", "postgres"],
                    stdout=subprocess.DEVNULL)
        as_postgres([f"{PGBIN}/pg_ctl", "-D", pgdata, "-l", os.path.join(tmp, "pg.log"), "-w",
                     "-o", f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1", "start"],
                    stdout=subprocess.DEVNULL)
        base = f"host=127.0.0.1 port={port} user=postgres"
        schema = os.path.join(tmp, "desired.sql")
        with open(schema, "w") as f:
            f.write(DESIRED)
        res = {}
        for r in range(args.rounds):
            for way in (("old", "pgguard") if r % 2 == 0 else ("pgguard", "old")):
                db = f"locks_{way}_{r}"
                admin = psycopg2.connect(base + " dbname=postgres")
                admin.autocommit = True
                admin.cursor().execute(f"CREATE DATABASE {db}")
                admin.close()
                dsn = f"{base} dbname={db}"
                c = psycopg2.connect(dsn)
                c.autocommit = True
                cur = c.cursor()
                cur.execute("CREATE TABLE events (id bigint NOT NULL, v int, payload text)")
                cur.execute("INSERT INTO events SELECT g, g %% 1000, repeat('x', 100)"
                            " FROM generate_series(1, %s) g", (args.rows,))
                cur.execute("VACUUM ANALYZE events")
                cur.execute("SELECT pg_relation_filenode('events')")
                node = cur.fetchone()[0]
                w = Writer(dsn)
                w.start()
                time.sleep(0.5)
                t0 = time.monotonic()
                detail = ""
                if way == "old":
                    cur.execute(OLD_WAY)
                else:
                    p = subprocess.Popen([args.pgguard, "--listen", f"127.0.0.1:{free_port()}",
                                          "--admin-listen", f"127.0.0.1:{free_port()}",
                                          "--upstream", f"127.0.0.1:{port}", "--schema", schema,
                                          "--admin-url", f"postgresql://postgres@127.0.0.1:{port}/{db}",
                                          "--repair", "eager"],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    log = ""
                    while not re.search(r"event=index_builds_(done|failed)", log):
                        line = p.stdout.readline()
                        if not line:
                            break
                        log += line
                    p.send_signal(signal.SIGTERM)
                    p.wait(30)
                    m = re.search(r"event=repair_applied .*duration_ms=([0-9.]+)", log)
                    b = re.search(r"event=index_builds_done built=(\d+) .*duration_ms=([0-9.]+)", log)
                    if not m or not b:
                        raise RuntimeError("pgguard did not repair and build:\n" + log[-2000:])
                    detail = f"transactional part {float(m.group(1)):.0f} ms, {b.group(1)} builds {float(b.group(2)) / 1000:.1f} s"
                took = time.monotonic() - t0
                time.sleep(0.5)
                w.stop = True
                w.join()
                cur.execute("SELECT pg_relation_filenode('events')")
                rewritten = cur.fetchone()[0] != node
                c.close()
                lat = sorted(w.lat)
                row = (1000 * lat[len(lat) // 2], 1000 * lat[int(len(lat) * 0.99)], 1000 * lat[-1], took,
                       rewritten)
                res.setdefault(way, []).append(row)
                print(f"round {r + 1} {way:8s} p50={row[0]:.1f}ms p99={row[1]:.1f}ms max={row[2]:.0f}ms "
                      f"took={took:.1f}s rewritten={rewritten} {detail}", flush=True)
        lines = ["## Repairing a big table: what the application's writers feel\n",
                 f"Produced by `{' '.join(['bench/repair_locks.py'] + sys.argv[1:])}` on "
                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: a table of {args.rows} rows "
                 "missing a column with a volatile default (`gen_random_uuid()`), one with a stable "
                 "default (`now()`), an index and its primary key; a writer inserts a row every 5 ms "
                 f"meanwhile. {args.rounds} interleaved rounds, medians; same machine, same run. `old` runs "
                 "the DDL the way pgguard did before (one transaction); `pgguard` is `--repair eager` now.\n",
                 "| repair | insert p50 | insert p99 | insert max | wall time | table rewritten |",
                 "|---|---:|---:|---:|---:|---|"]
        for way in ("old", "pgguard"):
            rows = res[way]
            med = [statistics.median(x[i] for x in rows) for i in range(4)]
            lines.append(f"| {way} | {med[0]:.1f} ms | {med[1]:.1f} ms | {med[2]:.0f} ms | {med[3]:.1f} s | "
                         f"{'yes' if any(x[4] for x in rows) else 'no'} |")
        ratio = statistics.median(x[2] for x in res["old"]) / statistics.median(x[2] for x in res["pgguard"])
        lines.append(f"\nThe longest insert stall is {ratio:.0f}x shorter. pgguard leaves the volatile "
                     "column to a migration (`needs_migration`); its wall time includes the concurrent "
                     "builds, during which writes go on.")
        print("\n".join(lines))
    finally:
        stop = [f"{PGBIN}/pg_ctl", "-D", pgdata, "-m", "immediate", "stop"]
        subprocess.run(["runuser", "-u", "postgres", "--"] + stop if os.geteuid() == 0 else stop,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
