#!/usr/bin/python3
"""What the schema guard costs per request, in instructions rather than seconds: pgguard runs under
valgrind's callgrind (instruction counts are repeatable on a noisy shared machine, timings are
not), once with the guard off and once on (desired schema = the live one, nothing missing), and
pgbench sends the same N transactions through each. Replaces the "Guard cost" section of
bench/RESULTS.md.

Usage: bench/guard_cost.py [--transactions N] [--pgguard PATH]
Needs: PostgreSQL 15, pgbench, valgrind; run as root (PostgreSQL is started as user postgres).
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from run import PGBIN, HERE, ROOT, as_postgres, free_port, wait_port

SECTION = "## Guard cost in instructions"


def callgrind_total(path):
    out = subprocess.run(["callgrind_annotate", path], capture_output=True, text=True).stdout
    m = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", out)
    return int(m.group(1).replace(",", ""))


def measure(pgguard, pg_port, extra, n, tmp, mode, pgbench_mode):
    out = os.path.join(tmp, f"cg_{mode}_{pgbench_mode}.out")
    port = free_port()
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", pgguard,
                             "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{pg_port}",
                             "--admin-listen", "127.0.0.1:0", "--upstream-sslmode", "disable",
                             "--drift-interval", "3600"] + extra,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 60)
        time.sleep(2.0)  # start-up and, with the guard, the schema load and first check
        bench = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n", "-S",
                 "-M", pgbench_mode, "-c", "1", "postgres"]
        subprocess.run(bench + ["-t", "10"], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        subprocess.run(bench + ["-t", str(n)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    dumps = sorted(f for f in os.listdir(tmp) if f.startswith(os.path.basename(out) + "."))
    return callgrind_total(os.path.join(tmp, dumps[0])) / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--transactions", type=int, default=5000)
    ap.add_argument("--pgguard", default=os.path.join(ROOT, "build", "pgguard"))
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pgguard-cost-")
    os.chmod(tmp, 0o777)
    pgdata = os.path.join(tmp, "data")
    pg_port = free_port()
    env_backup = dict(os.environ)
    os.environ["PGSSLMODE"] = "disable"
    try:
        as_postgres([f"{PGBIN}/initdb", "-D", pgdata, "-A", "trust", "-U", "postgres"], stdout=subprocess.DEVNULL)
        as_postgres([f"{PGBIN}/pg_ctl", "-D", pgdata, "-l", os.path.join(tmp, "pg.log"), "-w",
                     "-o", f"-p {pg_port} -k {tmp} -c listen_addresses=127.0.0.1", "start"],
                    stdout=subprocess.DEVNULL)
        subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-i", "-q",
                        "-s", "1", "postgres"], check=True, capture_output=True)
        schema = os.path.join(tmp, "schema.sql")
        with open(schema, "w") as f:
            f.write(subprocess.run(["pg_dump", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres",
                                    "--schema-only", "--no-owner", "postgres"],
                                   capture_output=True, text=True, check=True).stdout)
        guard = ["--schema", schema, "--admin-url", f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"]
        rows = []
        for pgbench_mode in ("simple", "extended"):
            off = measure(args.pgguard, pg_port, [], args.transactions, tmp, "off", pgbench_mode)
            on = measure(args.pgguard, pg_port, guard, args.transactions, tmp, "on", pgbench_mode)
            rows.append((pgbench_mode, off, on))
            print(f"{pgbench_mode}: guard off {off:.0f} instructions/transaction, on {on:.0f}", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", pgdata, "-m", "immediate",
                        "stop"] if os.geteuid() == 0 else [f"{PGBIN}/pg_ctl", "-D", pgdata, "-m", "immediate",
                                                           "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [SECTION, "",
             f"Produced by `bench/guard_cost.py --transactions {args.transactions}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: pgguard's user-space instructions "
             "(valgrind callgrind) per pgbench select-only transaction, 1 client, guard off and on "
             "(nothing missing). Repeatable where timings are not; the kernel's share (the syscalls, "
             "most of pgguard's cost) is not counted and does not change with the guard.", "",
             "| protocol | guard off | guard on | added by the guard | on / off |",
             "|---|---:|---:|---:|---:|"]
    for mode, off, on in rows:
        lines.append(f"| {mode} | {off:.0f} | {on:.0f} | {on - off:.0f} | {on / off:.3f} |")
    text = open(args.out).read() if os.path.exists(args.out) else "# pgguard benchmark results\n"
    if SECTION in text:
        text = text[:text.index(SECTION)].rstrip() + "\n"
    text = text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
