#!/usr/bin/python3
"""The application leg over a Unix-domain socket (a sidecar sharing its socket
through an emptyDir) against TCP loopback: pgbench select-only through
pgguard and PgBouncer (session mode) listening on each, both relaying to
PostgreSQL's own Unix socket, and PostgreSQL direct on each; interleaved
rounds, medians.

Usage: bench/unix_socket.py [--seconds N] [--rounds N] [--pgguard PATH]
Prints a Markdown section for bench/RESULTS.md. Run as root (PostgreSQL and
PgBouncer are started as user postgres).
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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import PGBIN, as_postgres, bouncer_version, free_port, wait_port  # noqa: E402


def wait_socket(path, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return
        time.sleep(0.05)
    raise RuntimeError(f"no socket at {path}")


def pgbench(host, port, args, seconds):
    cmd = ["pgbench", "-h", host, "-p", str(port), "-U", "bench", "-n", "-T", str(seconds)] + args + ["bench"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                         env=dict(os.environ, PGSSLMODE="disable"))
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed on {host}:{port}: {out.stderr.strip()[-500:]}")
    return float(re.search(r"tps = ([0-9.]+) \(without initial", out.stdout).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pgguard", default=os.path.join(ROOT, "build", "pgguard"))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="pgg-ux-", dir="/tmp")
    os.chmod(tmp, 0o777)
    sock = {name: os.path.join(tmp, name) for name in ("pg", "guard", "bouncer")}
    for d in sock.values():
        os.makedirs(d)
        os.chmod(d, 0o777)
    pgdata = os.path.join(tmp, "data")
    pg_port, g_tcp, g_unix, b_tcp, b_unix = (free_port() for _ in range(5))
    procs = []
    try:
        as_postgres([f"{PGBIN}/initdb", "-D", pgdata, "-A", "trust", "-U", "postgres"],
                    stdout=subprocess.DEVNULL)
        as_postgres([f"{PGBIN}/pg_ctl", "-D", pgdata, "-l", os.path.join(tmp, "pg.log"), "-w",
                     "-o", f"-p {pg_port} -k {sock['pg']} -c listen_addresses=127.0.0.1 -c max_connections=100",
                     "start"], stdout=subprocess.DEVNULL)
        psql = ["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-qAt", "-c"]
        subprocess.run(psql + ["CREATE ROLE bench LOGIN SUPERUSER"], check=True)
        subprocess.run(psql + ["CREATE DATABASE bench OWNER bench"], check=True)
        subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "bench", "-i", "-q", "-s", "10",
                        "bench"], check=True, capture_output=True)

        log = open(os.path.join(tmp, "pgguard.log"), "w")
        for listen in (f"127.0.0.1:{g_tcp}", f"{sock['guard']}:{g_unix}"):
            procs.append(subprocess.Popen([args.pgguard, "--listen", listen, "--upstream", f"{sock['pg']}:{pg_port}",
                                           "--admin-listen", "127.0.0.1:0", "--log-level", "warn"], stderr=log))
        for port, sdir, name in ((b_tcp, "", "tcp"), (b_unix, sock["bouncer"], "unix")):
            ini = os.path.join(tmp, f"pgbouncer-{name}.ini")
            with open(ini, "w") as f:
                f.write(f"""[databases]
bench = host={sock['pg']} port={pg_port} dbname=bench
[pgbouncer]
listen_addr = {'127.0.0.1' if name == 'tcp' else ''}
listen_port = {port}
unix_socket_dir = {sdir}
auth_type = trust
auth_file = {tmp}/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 50
logfile = {tmp}/pgbouncer-{name}.log
pidfile = {tmp}/pgbouncer-{name}.pid
""")
        with open(os.path.join(tmp, "userlist.txt"), "w") as f:
            f.write('"bench" ""\n')
        os.system(f"chown -R postgres {tmp}")
        for name in ("tcp", "unix"):
            cmd = ["pgbouncer", os.path.join(tmp, f"pgbouncer-{name}.ini")]
            if os.geteuid() == 0:
                cmd = ["runuser", "-u", "postgres", "--"] + cmd
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(g_tcp)
        wait_port(b_tcp)
        wait_socket(os.path.join(sock["guard"], f".s.PGSQL.{g_unix}"))
        wait_socket(os.path.join(sock["bouncer"], f".s.PGSQL.{b_unix}"))

        targets = [
            ("direct", "tcp", "127.0.0.1", pg_port), ("direct", "unix", sock["pg"], pg_port),
            ("pgguard", "tcp", "127.0.0.1", g_tcp), ("pgguard", "unix", sock["guard"], g_unix),
            ("pgbouncer", "tcp", "127.0.0.1", b_tcp), ("pgbouncer", "unix", sock["bouncer"], b_unix),
        ]
        workloads = [("select-only, simple, 8 clients", ["-S", "-M", "simple", "-c", "8", "-j", "2"]),
                     ("select-only, simple, 1 client", ["-S", "-M", "simple", "-c", "1", "-j", "1"])]
        res = {}
        for r in range(args.rounds):
            for wname, wargs in workloads:
                order = targets[r % len(targets):] + targets[:r % len(targets)]
                for who, leg, host, port in order:
                    tps = pgbench(host, port, wargs, args.seconds)
                    res.setdefault((wname, who, leg), []).append(tps)
                    print(f"round {r + 1} {wname:32s} {who:10s} {leg:5s} tps={tps:9.1f}", flush=True)

        med = {k: statistics.median(v) for k, v in res.items()}
        lines = ["## Unix-socket application leg\n",
                 f"Produced by `{' '.join(['bench/unix_socket.py'] + sys.argv[1:])}` on "
                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: pgbench scale 10, {args.seconds} s per "
                 f"run, {args.rounds} interleaved rounds (median TPS). The client's leg is TCP loopback or a Unix "
                 f"socket; pgguard and PgBouncer {bouncer_version()} (session mode) reach PostgreSQL through its "
                 f"Unix socket either way. Same machine, same run.\n",
                 "| workload | target | TCP TPS | Unix TPS | Unix / TCP | Unix vs direct Unix | Unix vs PgBouncer Unix |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for wname, _ in workloads:
            for who in ("direct", "pgguard", "pgbouncer"):
                t, u = med[(wname, who, "tcp")], med[(wname, who, "unix")]
                lines.append(f"| {wname} | {who} | {t:.0f} | {u:.0f} | {u / t:.3f} | "
                             f"{u / med[(wname, 'direct', 'unix')]:.3f} | {u / med[(wname, 'pgbouncer', 'unix')]:.3f} |")
        print("\n".join(lines))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        stop = [f"{PGBIN}/pg_ctl", "-D", pgdata, "-m", "immediate", "stop"]
        subprocess.run(["runuser", "-u", "postgres", "--"] + stop if os.geteuid() == 0 else stop,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
