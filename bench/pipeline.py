#!/usr/bin/python3
"""The cost of recording requests for a replay, on a deep pipeline: one client
writes N simple queries at once, then reads their N answers. Measured direct,
through pgguard without a guard, and through pgguard with the guard on (which
keeps every in-flight request's bytes), interleaved over several rounds.
Also measures what an idle guarded connection keeps after a 1 MB request.

Usage: bench/pipeline.py [--queries N] [--rounds N] [--pgguard PATH]
Prints a Markdown section for bench/RESULTS.md.
"""
import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import PGBIN, as_postgres, free_port, wait_port  # noqa: E402  (bench/run.py's helpers)


def msg(t, body):
    return t + struct.pack("!i", len(body) + 4) + body


def startup(sock, db):
    body = struct.pack("!i", 196608) + b"user\0postgres\0database\0" + db.encode() + b"\0\0"
    sock.sendall(struct.pack("!i", len(body) + 4) + body)
    read_until_ready(sock, 1)


def read_until_ready(sock, n):
    """Reads until n ReadyForQuery messages went by; returns the bytes read."""
    buf = bytearray()
    seen = 0
    pos = 0
    total = 0
    while seen < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
        total += len(chunk)
        while len(buf) - pos >= 5:
            (ln,) = struct.unpack_from("!i", buf, pos + 1)
            if len(buf) - pos < ln + 1:
                break
            if buf[pos] == ord("Z"):
                seen += 1
            elif buf[pos] == ord("E"):
                raise RuntimeError(bytes(buf[pos:pos + ln + 1]))
            pos += ln + 1
        del buf[:pos]
        pos = 0
    return total


def pipeline_seconds(port, n):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        startup(s, "bench")
        payload = msg(b"Q", b"SELECT 1\0") * n
        t0 = time.perf_counter()
        # Write and read at once: n answers do not fit in the socket buffers.
        w = threading.Thread(target=s.sendall, args=(payload,))
        w.start()
        read_until_ready(s, n)
        w.join()
        return time.perf_counter() - t0


def metric(admin_port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=9000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--pgguard", default=os.path.join(ROOT, "build", "pgguard"))
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="pgguard-pipe-")
    os.chmod(tmp, 0o777)
    procs = []
    pgdata = os.path.join(tmp, "data")
    pg_port, off_port, on_port, on_admin = free_port(), free_port(), free_port(), free_port()
    try:
        as_postgres([f"{PGBIN}/initdb", "-D", pgdata, "-A", "trust", "-U", "postgres"],
                    stdout=subprocess.DEVNULL)
        as_postgres([f"{PGBIN}/pg_ctl", "-D", pgdata, "-l", os.path.join(tmp, "pg.log"), "-w",
                     "-o", f"-p {pg_port} -k {tmp} -c listen_addresses=127.0.0.1", "start"],
                    stdout=subprocess.DEVNULL)
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-qAt", "-c",
                        "CREATE DATABASE bench"], check=True)
        schema = os.path.join(tmp, "schema.sql")
        with open(schema, "w") as f:
            f.write("CREATE TABLE t (id int PRIMARY KEY);\n")
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-qAt",
                        "-d", "bench", "-c", "CREATE TABLE t (id int PRIMARY KEY)"], check=True)
        log = open(os.path.join(tmp, "pgguard.log"), "w")
        common = ["--upstream", f"127.0.0.1:{pg_port}", "--upstream-sslmode", "disable",
                  "--log-level", "warn"]
        procs.append(subprocess.Popen([args.pgguard, "--listen", f"127.0.0.1:{off_port}",
                                       "--admin-listen", "127.0.0.1:0"] + common, stderr=log))
        procs.append(subprocess.Popen([args.pgguard, "--listen", f"127.0.0.1:{on_port}",
                                       "--admin-listen", f"127.0.0.1:{on_admin}", "--schema", schema,
                                       "--admin-url", f"postgresql://postgres@127.0.0.1:{pg_port}/bench"]
                                      + common, stderr=log))
        for p in (off_port, on_port, on_admin):
            wait_port(p)
        targets = [("direct", pg_port), ("pgguard", off_port), ("pgguard+guard", on_port)]
        times = {name: [] for name, _ in targets}
        pipeline_seconds(on_port, 100)  # warm-up
        for _ in range(args.rounds):
            for name, port in targets:
                times[name].append(pipeline_seconds(port, args.queries))
        med = {k: statistics.median(v) for k, v in times.items()}

        # An idle guarded connection after one 1 MB request.
        with socket.create_connection(("127.0.0.1", on_port)) as s:
            startup(s, "bench")
            s.sendall(msg(b"Q", b"SELECT length('" + b"x" * (1 << 20) + b"')\0"))
            read_until_ready(s, 1)
            time.sleep(0.2)
            idle = metric(on_admin, "pgguard_connection_buffer_bytes")

        print("## Deep pipeline: recording cost\n")
        print(f"`bench/pipeline.py --queries {args.queries} --rounds {args.rounds}` on "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: one client writes {args.queries} "
              f"`SELECT 1` queries at once and reads the answers; median of {args.rounds} interleaved rounds.\n")
        print("| target | seconds | vs direct | vs pgguard without guard |")
        print("|---|---:|---:|---:|")
        for name, _ in targets:
            print(f"| {name} | {med[name]:.4f} | {med[name] / med['direct']:.3f} | "
                  f"{med[name] / med['pgguard']:.3f} |")
        print(f"\nGuarded / unguarded time ratio: **{med['pgguard+guard'] / med['pgguard']:.3f}** (goal ≤ 1.1).")
        if idle is not None:
            print(f"\nAn idle guarded connection after one 1 MB request holds "
                  f"{idle / 1024:.1f} KiB of growable buffers (`pgguard_connection_buffer_bytes`, "
                  f"read buffers excluded; goal ≤ 16 KiB).")
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        try:
            as_postgres([f"{PGBIN}/pg_ctl", "-D", pgdata, "-m", "immediate", "stop"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
