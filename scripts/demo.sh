#!/usr/bin/env bash
# A guided tour: a throwaway PostgreSQL, pgguard in front of it, a few psql sessions through the
# proxy, and pgguard's own log. Everything is stopped and removed on exit or Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGBIN=/usr/lib/postgresql/15/bin
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
PGGUARD="${PGGUARD_BIN:-$BUILD_DIR/pgguard}"

WORK=""
PG_PORT=""
GG_PORT=""
ADMIN_PORT=""
GG_PID=""
PG_PASSWORD="demo-$RANDOM$RANDOM"
APP_PASSWORD="app-$RANDOM$RANDOM"

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }

# PostgreSQL's server programs refuse to run as root.
as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (bounded) until a TCP port on 127.0.0.1 accepts connections.
wait_port() {
  local port="$1" tries=100
  while ((tries-- > 0)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

install_and_build() {
  if [[ "${DEMO_SKIP_INSTALL:-}" != 1 ]]; then
    bash "$ROOT/scripts/install-deps.sh"
  fi
  if [[ -z "${PGGUARD_BIN:-}" ]]; then
    bold "building pgguard (release) in $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
    make -C "$BUILD_DIR" -j2 --no-print-directory pgguard | tail -1
  fi
  [[ -x "$PGGUARD" ]] || die "no pgguard binary at $PGGUARD"
}

start_postgres() {
  bold "starting a throwaway PostgreSQL 15"
  WORK="$(mktemp -d /tmp/pgguard-demo.XXXXXX)"
  chmod 755 "$WORK"
  [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$WORK"
  PG_PORT="$(free_port)"
  printf '%s\n' "$PG_PASSWORD" > "$WORK/pwfile"
  [[ $(id -u) -eq 0 ]] && chown postgres "$WORK/pwfile"
  as_postgres "$PGBIN/initdb" -D "$WORK/data" -U postgres -A scram-sha-256 --pwfile="$WORK/pwfile" \
    -E UTF8 --locale=C --no-sync --no-instructions >/dev/null
  rm -f "$WORK/pwfile"
  cat >> "$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
lc_messages = 'C'
EOF
  as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -t 60 start >/dev/null
  PGPASSWORD="$PG_PASSWORD" "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE ROLE app LOGIN PASSWORD '$APP_PASSWORD'" -c "CREATE DATABASE shop OWNER app"
  # The database as an old backup has it: only the first release's table.
  PGPASSWORD="$APP_PASSWORD" "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U app -d shop \
    -v ON_ERROR_STOP=1 -f "$ROOT/examples/shop/old.sql"
  echo "PostgreSQL listens on 127.0.0.1:$PG_PORT (data in $WORK/data); role app owns database shop"
  echo "shop is at an old schema (examples/shop/old.sql); the application expects examples/shop/schema.sql"
}

start_pgguard() {
  bold "starting pgguard in front of it"
  GG_PORT="$(free_port)"
  ADMIN_PORT="$(free_port)"
  echo "\$ $PGGUARD --listen 127.0.0.1:$GG_PORT --upstream 127.0.0.1:$PG_PORT --admin-listen 127.0.0.1:$ADMIN_PORT ${*//$PG_PASSWORD/***}"
  "$PGGUARD" --listen "127.0.0.1:$GG_PORT" --upstream "127.0.0.1:$PG_PORT" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --shutdown-timeout 3 "$@" 2>"$WORK/pgguard.log" &
  GG_PID=$!
  wait_port "$GG_PORT" || { cat "$WORK/pgguard.log"; die "pgguard did not start"; }
  echo "pgguard (pid $GG_PID) listens on 127.0.0.1:$GG_PORT; admin HTTP on 127.0.0.1:$ADMIN_PORT"
}

# Runs psql through pgguard as the application would, echoing the SQL first.
through_pgguard() {
  printf '\n\033[36m$ psql postgresql://app@127.0.0.1:%s/shop -c "%s"\033[0m\n' "$GG_PORT" "$1"
  PGPASSWORD="$APP_PASSWORD" PGCONNECT_TIMEOUT=10 "$PGBIN/psql" -X -h 127.0.0.1 -p "$GG_PORT" \
    -U app -d shop -v VERBOSITY=verbose -c "$1" || true
}

ADMIN_URL() { printf 'postgresql://postgres:%s@127.0.0.1:%s/shop' "$PG_PASSWORD" "$PG_PORT"; }

# Prints the metric samples whose line starts with one of the given prefixes.
metric_lines() {
  /usr/bin/python3 - "$ADMIN_PORT" "$@" <<'EOF' || true
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
for line in body.splitlines():
    if not line.startswith("#") and any(line.startswith(p) for p in sys.argv[2:]):
        print("  " + line)
EOF
}

# Waits (bounded) for /readyz: the desired schema loaded and a first drift check done.
wait_ready() {
  local tries=150
  while ((tries-- > 0)); do
    /usr/bin/python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$ADMIN_PORT/readyz', timeout=2)" \
      2>/dev/null && return 0
    sleep 0.1
  done
  die "pgguard did not become ready; see $WORK/pgguard.log"
}

heal() {
  bold "the drift right after the 'restore' (pgguard check: the runbook's first step)"
  echo "\$ pgguard check --schema examples/shop/schema.sql --admin-url postgresql://postgres:***@127.0.0.1:$PG_PORT/shop"
  "$PGGUARD" check --schema "$ROOT/examples/shop/schema.sql" --admin-url "$(ADMIN_URL)" || true
  wait_ready
  bold "the drift metric before any request"
  metric_lines 'pgguard_schema_drift_objects{kind="table",state="missing"}' \
    'pgguard_schema_drift_objects{kind="enum",state="missing"}'
  bold "the application writes to a table the old backup lacks: pgguard repairs, then replays"
  through_pgguard "INSERT INTO product_review (product_id, stars, body) VALUES (1, 5, 'lovely') RETURNING id, stars, status"
  through_pgguard "SELECT p.name, r.stars, r.status FROM product p JOIN product_review r ON r.product_id = p.id"
  bold "the drift metric after, and what the guard did"
  metric_lines 'pgguard_schema_drift_objects{kind="table",state="missing"}' \
    'pgguard_schema_drift_objects{kind="enum",state="missing"}' 'pgguard_repairs_total' \
    'pgguard_replays_total' 'pgguard_undefined_object_errors_total{sqlstate="42P01"}'
  bold "nothing was dropped: the old rows are all there, and the new table belongs to the app role"
  through_pgguard "SELECT count(*) AS products, (SELECT tableowner FROM pg_tables WHERE tablename = 'product_review') AS review_owner FROM product"
}

run_queries() {
  bold "queries through pgguard (the application's connection string points at port $GG_PORT)"
  through_pgguard "SELECT current_user, inet_server_port() AS server_port, current_setting('server_version') AS version"
  bold "a table the desired schema does not know is never created: the error passes through untouched"
  through_pgguard "SELECT * FROM product_reviews"
  bold "a few metrics (GET http://127.0.0.1:$ADMIN_PORT/metrics)"
  /usr/bin/python3 - "$ADMIN_PORT" <<'EOF' || true
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(("pgguard_client_connections", "pgguard_bytes_total", "pgguard_upstream_up")):
        print("  " + line)
EOF
}

show_log() {
  bold "pgguard's log (logfmt on stderr)"
  sed 's/^/  /' "$WORK/pgguard.log"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$GG_PID" ]] && kill -0 "$GG_PID" 2>/dev/null; then
    kill -TERM "$GG_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$GG_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GG_PID" 2>/dev/null || true
  fi
  if [[ -n "$WORK" && -d "$WORK/data" ]]; then
    as_postgres "$PGBIN/pg_ctl" -D "$WORK/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
  [[ -n "$WORK" ]] && rm -rf "$WORK"
  exit "$rc"
}

main() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  install_and_build
  start_postgres
  start_pgguard --schema "$ROOT/examples/shop/schema.sql" --admin-url "$(ADMIN_URL)"
  heal
  run_queries
  show_log
  bold "done: everything is stopped and removed on exit"
}

main "$@"
