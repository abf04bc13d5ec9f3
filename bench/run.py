#!/usr/bin/python3
"""pgbench through pgguard, against direct PostgreSQL and PgBouncer (session
mode), interleaved in one run so that a noisy shared machine hits all three
alike. Writes bench/RESULTS.md.

Usage: bench/run.py [--seconds N] [--rounds N] [--pgguard PATH] [--out FILE]
Needs: PostgreSQL 15 server binaries, pgbench, pgbouncer (Debian packages);
run as root (PostgreSQL and PgBouncer are started as user postgres).
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PGBIN = "/usr/lib/postgresql/15/bin"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(cmd, **kw):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, check=True, **kw)


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pgbench(port, args, seconds):
    cmd = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-n",
           "-T", str(seconds)] + args + ["bench"]
    # Plaintext everywhere: PostgreSQL, pgguard and PgBouncer all offer TLS in this run (for the
    # new-connection table), and libpq's default sslmode=prefer would take it.
    env = dict(os.environ, PGSSLMODE="disable")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed on port {port}: {out.stderr.strip()[-500:]}")
    tps = float(re.search(r"tps = ([0-9.]+) \(without initial", out.stdout).group(1))
    lat = re.search(r"latency average = ([0-9.]+) ms", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if failed and int(failed.group(1)) != 0:
        raise RuntimeError(f"pgbench reported failed transactions on port {port}")
    return tps, float(lat.group(1)) if lat else float("nan")


def make_certs(tmp):
    """A CA and a server certificate for localhost/127.0.0.1, made with the openssl CLI."""
    d = os.path.join(tmp, "certs")
    os.makedirs(d)
    def ossl(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True, cwd=d)
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench CA")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    os.chmod(os.path.join(d, "server.key"), 0o600)
    os.system(f"chown -R postgres {d}")
    return d


def heal_timing(args, pg_port, tmp, runs):
    """Seconds from a request that meets 12 missing tables to its replayed success, and the same
    request once the tables exist (a fresh database at the old schema each run)."""
    seed = os.path.join(ROOT, "tests", "integration", "schemas", "seed")
    psql = ["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-qAtX", "-v", "ON_ERROR_STOP=1"]
    heal, warm, repair = [], [], []
    query = "SELECT count(*) FROM developer_projects"
    for i in range(runs):
        db = f"heal{i}"
        subprocess.run(psql + ["-c", f"CREATE DATABASE {db}"], check=True)
        subprocess.run(psql + ["-d", db, "-f", os.path.join(seed, "old.sql")], check=True,
                       capture_output=True)
        port, admin = free_port(), free_port()
        log = open(os.path.join(tmp, f"heal{i}.log"), "w")
        g = subprocess.Popen([args.pgguard, "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{pg_port}",
                              "--admin-listen", f"127.0.0.1:{admin}", "--schema", os.path.join(seed, "new.sql"),
                              "--admin-url", f"postgresql://postgres@127.0.0.1:{pg_port}/{db}"], stderr=log)
        try:
            wait_port(port)
            end = time.time() + 30
            while time.time() < end:
                try:
                    import urllib.request
                    urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2)
                    break
                except Exception:
                    time.sleep(0.05)
            cmd = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db, "-qAtX", "-c", query]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            heal.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            warm.append(time.perf_counter() - t0)
            import urllib.request
            body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
            m = re.search(r"^pgguard_repair_duration_seconds_sum ([0-9.e+-]+)$", body, re.M)
            repair.append(float(m.group(1)) if m else float("nan"))
            applied = re.search(r'^pgguard_repairs_total\{result="applied"\} (\d+)$', body, re.M)
            if not applied or int(applied.group(1)) != 1:
                raise RuntimeError("heal run did not apply exactly one repair")
        finally:
            g.send_signal(signal.SIGTERM)
            g.wait(10)
    return statistics.median(heal), statistics.median(warm), statistics.median(repair)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pgguard", default=os.path.join(ROOT, "build", "pgguard"))
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--heal-runs", type=int, default=5)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="pgguard-bench-")
    os.chmod(tmp, 0o777)
    procs = []
    pgdata = os.path.join(tmp, "data")
    pg_port, guard_port, guard_on_port, bouncer_port = free_port(), free_port(), free_port(), free_port()
    try:
        as_postgres([f"{PGBIN}/initdb", "-D", pgdata, "-A", "trust", "-U", "postgres"],
                    stdout=subprocess.DEVNULL)
        certs = make_certs(tmp)
        as_postgres([f"{PGBIN}/pg_ctl", "-D", pgdata, "-l", os.path.join(tmp, "pg.log"), "-w",
                     "-o", f"-p {pg_port} -k {tmp} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                           f"-c ssl=on -c ssl_cert_file={certs}/server.crt -c ssl_key_file={certs}/server.key",
                     "start"], stdout=subprocess.DEVNULL)
        psql = ["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-qAt", "-c"]
        subprocess.run(psql + ["CREATE ROLE bench LOGIN SUPERUSER"], check=True)
        subprocess.run(psql + ["CREATE DATABASE bench OWNER bench"], check=True)
        subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "bench", "-i", "-q",
                        "-s", str(args.scale), "bench"], check=True, capture_output=True)
        # The guard's desired schema: exactly what pgbench made, so nothing is missing.
        schema = os.path.join(tmp, "schema.sql")
        with open(schema, "w") as f:
            f.write(subprocess.run(["pg_dump", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "bench",
                                    "--schema-only", "--no-owner", "bench"],
                                   capture_output=True, text=True, check=True).stdout)

        log = open(os.path.join(tmp, "pgguard.log"), "w")
        guard = subprocess.Popen([args.pgguard, "--listen", f"127.0.0.1:{guard_port}",
                                  "--upstream", f"127.0.0.1:{pg_port}", "--admin-listen", "127.0.0.1:0",
                                  "--upstream-sslmode", "disable", "--tls-cert", f"{certs}/server.crt",
                                  "--tls-key", f"{certs}/server.key", "--log-level", "warn"], stderr=log)
        procs.append(guard)
        guard_on = subprocess.Popen([args.pgguard, "--listen", f"127.0.0.1:{guard_on_port}",
                                     "--upstream", f"127.0.0.1:{pg_port}", "--admin-listen", "127.0.0.1:0",
                                     "--schema", schema, "--log-level", "warn", "--upstream-sslmode", "disable",
                                     "--admin-url", f"postgresql://postgres@127.0.0.1:{pg_port}/bench"],
                                    stderr=log)
        procs.append(guard_on)

        ini = os.path.join(tmp, "pgbouncer.ini")
        with open(os.path.join(tmp, "userlist.txt"), "w") as f:
            f.write('"bench" ""\n')
        with open(ini, "w") as f:
            f.write(f"""[databases]
bench = host=127.0.0.1 port={pg_port} dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {bouncer_port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp}/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = {tmp}/pgbouncer.log
pidfile = {tmp}/pgbouncer.pid
client_tls_sslmode = allow
client_tls_cert_file = {certs}/server.crt
client_tls_key_file = {certs}/server.key
""")
        os.system(f"chown -R postgres {tmp}")
        cmd = ["pgbouncer", ini]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        bouncer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(bouncer)
        for p in (guard_port, guard_on_port, bouncer_port):
            wait_port(p)
        time.sleep(1.0)  # the guard's first drift check

        conn_targets = [("direct", pg_port), ("pgguard", guard_port), ("pgbouncer", bouncer_port)]
        targets = [("direct", pg_port), ("pgguard", guard_port), ("pgguard+guard", guard_on_port),
                   ("pgbouncer", bouncer_port)]
        workloads = [
            ("select-only, simple, 8 clients", ["-S", "-M", "simple", "-c", "8", "-j", "2"]),
            ("select-only, extended, 8 clients", ["-S", "-M", "extended", "-c", "8", "-j", "2"]),
            ("TPC-B, simple, 8 clients", ["-M", "simple", "-c", "8", "-j", "2"]),
            ("TPC-B, extended, 8 clients", ["-M", "extended", "-c", "8", "-j", "2"]),
            ("select-only, simple, 1 client", ["-S", "-M", "simple", "-c", "1", "-j", "1"]),
        ]
        results = {(w, t): [] for w, _ in workloads for t, _ in targets}
        max_rss = 0
        for r in range(args.rounds):
            for wname, wargs in workloads:
                # Rotate the order each round so no target always runs first.
                order = targets[r % len(targets):] + targets[:r % len(targets)]
                for tname, port in order:
                    tps, lat = pgbench(port, wargs, args.seconds)
                    results[(wname, tname)].append((tps, lat))
                    max_rss = max(max_rss, rss_kib(guard.pid), rss_kib(guard_on.pid))
                    print(f"round {r + 1} {wname:34s} {tname:14s} tps={tps:10.1f} lat={lat:.3f} ms",
                          flush=True)

        lines = []
        lines.append("# pgguard benchmark results\n")
        lines.append(f"Produced by `{' '.join(['bench/run.py'] + sys.argv[1:])}` on "
                     f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; pgbench scale {args.scale}, "
                     f"{args.seconds} s per run, {args.rounds} interleaved rounds (median shown), "
                     f"PostgreSQL 15, PgBouncer {bouncer_version()} in session mode, pgguard release build. "
                     f"Machine: {os.cpu_count()} cores, shared and noisy — compare ratios, not absolute numbers.\n")
        lines.append("All throughput runs are plaintext (`PGSSLMODE=disable`). "
                     "`pgguard` is the plain proxy; `pgguard+guard` has the schema guard on "
                     "(desired schema = the live one, nothing missing), which records each request for a "
                     "possible replay.\n")
        lines.append("| workload | target | TPS | avg latency ms | vs direct | vs PgBouncer |")
        lines.append("|---|---|---:|---:|---:|---:|")
        for wname, _ in workloads:
            med = {t: statistics.median(x[0] for x in results[(wname, t)]) for t, _ in targets}
            latm = {t: statistics.median(x[1] for x in results[(wname, t)]) for t, _ in targets}
            for tname, _ in targets:
                lines.append(f"| {wname} | {tname} | {med[tname]:.0f} | {latm[tname]:.3f} | "
                             f"{med[tname] / med['direct']:.3f} | {med[tname] / med['pgbouncer']:.3f} |")
            lines.append(f"| {wname} | guard on / off | | | "
                         f"{med['pgguard+guard'] / med['pgguard']:.3f} | |")
        lines.append(f"\npgguard peak RSS during the run: {max_rss / 1024:.1f} MiB.\n")

        # New connections per second (pgbench -C: one connection per transaction), with and without
        # TLS on the client's leg; pgguard -> PostgreSQL stays plaintext, as PgBouncer's does.
        lines.append("## New connections (TLS handshake cost)\n")
        lines.append("`pgbench -C -S -c 4 -j 2`: a new connection for every transaction. `tls` = client "
                     "`sslmode=require` (TLS 1.3) to the target; pgguard and PgBouncer talk plaintext to "
                     "PostgreSQL on loopback. Authentication is trust, so the figures are connection set-up "
                     "plus one SELECT.\n")
        lines.append("| target | plaintext conn/s | tls conn/s | tls / plaintext | plaintext vs direct | tls vs direct |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        conn = {}
        for r in range(args.rounds):
            for tname, port in conn_targets:
                for mode in ("disable", "require"):
                    env = dict(os.environ, PGSSLMODE=mode)
                    cmd = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "bench", "-n", "-C", "-S",
                           "-c", "4", "-j", "2", "-T", str(max(3, args.seconds // 2)), "bench"]
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
                    if out.returncode != 0:
                        raise RuntimeError(f"pgbench -C failed on {tname} {mode}: {out.stderr[-400:]}")
                    tps = float(re.search(r"tps = ([0-9.]+) \(including", out.stdout).group(1))
                    conn.setdefault((tname, mode), []).append(tps)
                    print(f"round {r + 1} new connections {tname:10s} sslmode={mode:8s} {tps:9.1f}/s", flush=True)
        cm = {k: statistics.median(v) for k, v in conn.items()}
        for tname, _ in conn_targets:
            lines.append(f"| {tname} | {cm[(tname, 'disable')]:.0f} | {cm[(tname, 'require')]:.0f} | "
                         f"{cm[(tname, 'require')] / cm[(tname, 'disable')]:.3f} | "
                         f"{cm[(tname, 'disable')] / cm[('direct', 'disable')]:.3f} | "
                         f"{cm[(tname, 'require')] / cm[('direct', 'require')]:.3f} |")

        heal, warm, rep_s = heal_timing(args, pg_port, tmp, args.heal_runs)
        lines.append("\n## Heal time: twelve missing tables\n")
        lines.append(f"A fresh database at the seed scenario's old schema (tests/integration/schemas/seed/old.sql), "
                     f"pgguard started with new.sql (12 tables, 3 enums, 12 sequences missing); one `psql -c "
                     f"'SELECT count(*) FROM developer_projects'` through pgguard. Median of {args.heal_runs} runs.\n")
        lines.append("| measure | seconds |")
        lines.append("|---|---:|")
        lines.append(f"| first request: 42P01, repair, replay, result (psql process included) | {heal:.3f} |")
        lines.append(f"| the same request once the tables exist (psql process included) | {warm:.3f} |")
        lines.append(f"| added by the heal | {heal - warm:.3f} |")
        lines.append(f"| repair alone (pgguard_repair_duration_seconds) | {rep_s:.3f} |")
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "-D", pgdata, "-m", "immediate",
                        "stop"] if os.geteuid() == 0 else [f"{PGBIN}/pg_ctl", "-D", pgdata, "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


def bouncer_version():
    out = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+\.\d+(\.\d+)?)", out)
    return m.group(1) if m else "?"


if __name__ == "__main__":
    main()
