#!/usr/bin/env bash
# Runs client libraries' own test suites (psycopg2, node-postgres) against PostgreSQL directly and
# through pgguard, and exits non-zero when any test's result differs outside allowlist.txt.
#
# Usage: tests/upstream/run.sh [SUITE...]        (default: every suite; see README.md)
# Environment: PGG_UPSTREAM_CACHE, PGG_UPSTREAM_WORK, PGGUARD_BIN, PGG_UPSTREAM_FILE_TIMEOUT,
# PGG_UPSTREAM_SUITE_TIMEOUT, PGG_UPSTREAM_GUARD=1 (a third target: pgguard with a schema loaded),
# PGG_UPSTREAM_REQUIRE_ALL=1 (a suite whose sources cannot be fetched is a failure).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${PGG_UPSTREAM_CACHE:-/var/cache/pgguard-upstream}"
WORK="${PGG_UPSTREAM_WORK:-$(mktemp -d /tmp/pgguard-upstream.XXXXXX)}"
FILE_TIMEOUT="${PGG_UPSTREAM_FILE_TIMEOUT:-120}"
SUITE_TIMEOUT="${PGG_UPSTREAM_SUITE_TIMEOUT:-600}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
ALLOWLIST="$HERE/allowlist.txt"
ALL_SUITES=(psycopg2 node-pg pg4 pg-pool pg-cursor pg-native)
# Versions from npm: the Debian node-postgres 8.8.0 bundle's pg, pg-pool, pg-cursor, pg-native,
# and pg 4.5.7, the newest pg release whose npm tarball still carries its own test/ tree.
NPM_PG=8.8.0 NPM_PG4=4.5.7 NPM_POOL=3.5.2 NPM_CURSOR=2.7.4 NPM_NATIVE=3.0.1
# Test files that reach hosts on the internet (a Heroku database): never run here.
EXCLUDE_RE='heroku'
PASSWORD='pgg-upstream-pw'

if (($#)); then SUITES=("$@"); else SUITES=("${ALL_SUITES[@]}"); fi
mkdir -p "$CACHE" "$WORK"/{logs,results,sock} || exit 2
RESULTS="$WORK/results"
declare -A UNAVAILABLE=() SECONDS_TAKEN=()

say() { printf '\n=== %s\n' "$*"; }
warn() { printf 'run.sh: %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

as_postgres() { runuser -u postgres -- "$@"; }

# psql as the cluster's superuser over the unix socket.
admin_sql() {
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK/sock" -p "$PGPORT" -U postgres -d "${2:-postgres}" \
    -c "$1" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Sources: Debian's source packages first (psycopg2's tests/ and node-postgres' packages/pg/test),
# npm tarballs for the node-postgres packages whose published tarballs carry their tests.

ensure_deb_src() {
  if grep -rqs '^Types: *deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  [[ $(id -u) == 0 && -f /etc/apt/sources.list.d/debian.sources ]] || return 1
  sed 's/^Types: *deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    >/etc/apt/sources.list.d/debian-src.sources
  apt-get update -qq >/dev/null 2>&1
}

# fetch_deb_source PACKAGE MARKER: prints the unpacked source directory holding MARKER.
fetch_deb_source() {
  local pkg="$1" marker="$2" dir="$CACHE/debian/$1" found
  found="$(find "$dir" -maxdepth 4 -path "*/$marker" 2>/dev/null | head -1)"
  if [[ -z $found ]]; then
    command -v dpkg-source >/dev/null || apt-get install -y -qq dpkg-dev >/dev/null 2>&1
    ensure_deb_src || { warn "no deb-src entry and cannot add one"; return 1; }
    mkdir -p "$dir"
    (cd "$dir" && apt-get source -qq "$pkg") >"$WORK/logs/apt-source-$pkg.log" 2>&1
    found="$(find "$dir" -maxdepth 4 -path "*/$marker" 2>/dev/null | head -1)"
  fi
  [[ -n $found ]] || return 1
  echo "${found%/"$marker"}"
}

# npm_unpack NAME VERSION: unpacks NAME@VERSION into $CACHE/npm/NAME-VERSION (once).
npm_unpack() {
  local dir="$CACHE/npm/$1-$2"
  if [[ ! -f $dir/package.json ]]; then
    mkdir -p "$dir" && (cd "$CACHE/npm" && npm pack --silent "$1@$2" >/dev/null 2>&1) \
      && tar xzf "$CACHE/npm/$1-$2.tgz" -C "$dir" --strip-components=1 || return 1
  fi
  echo "$dir"
}

# npm_deps DIR [EXTRA...]: installs DIR's dependencies and devDependencies (once).
npm_deps() {
  local dir="$1"; shift
  [[ -f $dir/.pgg-deps-done ]] && return 0
  (cd "$dir" && npm install --no-audit --no-fund --no-package-lock --loglevel=error "$@") \
    >"$WORK/logs/npm-install-$(basename "$dir").log" 2>&1 || return 1
  touch "$dir/.pgg-deps-done"
}

# node-gyp ships inside npm; Node's own headers make it build without downloading any.
build_libpq_addon() {
  local dir="$1/node_modules/libpq" gyp
  [[ -f $dir/build/Release/addon.node ]] && return 0
  gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
  [[ -f $gyp ]] || gyp=/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js
  local nodedir
  nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  (cd "$dir" && node "$gyp" rebuild --nodedir="$nodedir") >"$WORK/logs/libpq-build.log" 2>&1
}

declare -A SRC=()
prepare_suite() {
  local s="$1" d
  case "$s" in
    psycopg2)
      d="$(fetch_deb_source psycopg2 tests/testconfig.py)" || return 1
      SRC[$s]="$d" ;;
    node-pg)
      # packages/pg/test from Debian's source, run against pg@8.8.0's lib/ from npm.
      d="$(fetch_deb_source node-postgres packages/pg/Makefile)" || return 1
      local pg; pg="$(npm_unpack pg "$NPM_PG")" || return 1
      rm -rf "$pg/test" "$pg/script" && cp -r "$d/packages/pg/test" "$d/packages/pg/script" "$pg/" || return 1
      # Its devDependencies, less pg-native: the native bindings are their own suite here.
      local devdeps
      mapfile -t devdeps < <(node -e '
        const dev = Object.assign({}, require(process.argv[1]).devDependencies);
        delete dev["pg-native"];
        for (const [k, v] of Object.entries(dev)) console.log(`${k}@${v}`);
      ' "$d/packages/pg/package.json")
      npm_deps "$pg" "${devdeps[@]}" || return 1
      SRC[$s]="$pg" ;;
    pg4)
      d="$(npm_unpack pg "$NPM_PG4")" && npm_deps "$d" || return 1
      SRC[$s]="$d" ;;
    pg-pool)
      d="$(npm_unpack pg-pool "$NPM_POOL")" && npm_deps "$d" "pg@$NPM_PG" || return 1
      SRC[$s]="$d" ;;
    pg-cursor)
      d="$(npm_unpack pg-cursor "$NPM_CURSOR")" && npm_deps "$d" "pg@$NPM_PG" || return 1
      SRC[$s]="$d" ;;
    pg-native)
      d="$(npm_unpack pg-native "$NPM_NATIVE")" && npm_deps "$d" && build_libpq_addon "$d" || return 1
      SRC[$s]="$d" ;;
    *) warn "unknown suite $s"; return 1 ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL and pgguard.

PGPORT="" PGG_PORT="" PGG_PID="" PG_STARTED=""

start_postgres() {
  local data="$WORK/pg"
  PGPORT="$(free_port)"
  touch "$WORK/logs/postgres.log"
  chown postgres "$WORK" "$WORK/sock" "$WORK/logs/postgres.log"
  as_postgres "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    >"$WORK/logs/initdb.log" 2>&1 || { cat "$WORK/logs/initdb.log"; return 1; }
  # Password auth on TCP, as applications use it: md5 lines also accept SCRAM verifiers, so the
  # SCRAM role and the md5 role (for pg 4.x, which predates SCRAM) both work.
  cat >"$data/pg_hba.conf" <<EOF
local all all trust
host  all all 127.0.0.1/32 md5
host  all all ::1/128 md5
EOF
  cat >>"$data/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK/sock'
max_prepared_transactions = 10
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
  as_postgres "$PGBIN/pg_ctl" -D "$data" -l "$WORK/logs/postgres.log" -w -t 60 start >/dev/null \
    || { tail -20 "$WORK/logs/postgres.log"; return 1; }
  PG_STARTED=1
  admin_sql "CREATE ROLE pgg_scram SUPERUSER LOGIN PASSWORD '$PASSWORD'" &&
    admin_sql "SET password_encryption = 'md5'; CREATE ROLE pgg_md5 SUPERUSER LOGIN PASSWORD '$PASSWORD'"
}

# start_pgguard TARGET: a free port can be taken by someone else before pgguard binds it: try 3.
start_pgguard() {
  local try
  for try in 1 2 3; do
    start_pgguard_once "$1" && return 0
    ((try < 3)) && warn "retrying pgguard on another port"
  done
  return 1
}

start_pgguard_once() {
  local target="$1" extra=()
  PGG_PORT="$(free_port)"
  if [[ $target == guard ]]; then
    # The guard on, with a desired schema of one table no suite uses. Each suite starts on a
    # fresh database that lacks it, so the suite's first 42P01/42703/42704 makes pgguard repair
    # (create the table) and replay the request; later ones find nothing missing and pass through.
    printf 'CREATE TABLE pgg_upstream_guard_marker (id integer PRIMARY KEY);\n' >"$WORK/schema.sql"
    extra=(--schema "$WORK/schema.sql"
           --admin-url "postgresql://postgres@127.0.0.1:$PGPORT/pgg_upstream?host=$WORK/sock"
           --repair-wait 2)
  fi
  "$PGGUARD_BIN" --listen "127.0.0.1:$PGG_PORT" --upstream "127.0.0.1:$PGPORT" \
    --admin-listen 127.0.0.1:0 --upstream-sslmode disable "${extra[@]}" \
    >"$WORK/logs/pgguard-$target.log" 2>&1 &
  PGG_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PGG_PORT") 2>/dev/null; then return 0; fi
    kill -0 "$PGG_PID" 2>/dev/null || break
    sleep 0.1
  done
  warn "pgguard did not start:"; tail -20 "$WORK/logs/pgguard-$target.log" >&2
  return 1
}

stop_pgguard() {
  [[ -n $PGG_PID ]] || return 0
  kill -TERM "$PGG_PID" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$PGG_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PGG_PID" 2>/dev/null
  wait "$PGG_PID" 2>/dev/null
  PGG_PID=""
}

cleanup() {
  stop_pgguard
  [[ -n $PG_STARTED ]] && as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1
  # The cluster's files are not worth keeping; the logs and results are.
  rm -rf "$WORK/pg"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every suite starts from the same fresh databases on either target.
reset_databases() {
  local gid
  for gid in $("$PGBIN/psql" -X -At -h "$WORK/sock" -p "$PGPORT" -U postgres -d postgres \
      -c "SELECT gid FROM pg_prepared_xacts"); do
    admin_sql "ROLLBACK PREPARED '$gid'"
  done
  local db
  for db in pgg_upstream psycopg2_test; do
    admin_sql "DROP DATABASE IF EXISTS $db WITH (FORCE)" && admin_sql "CREATE DATABASE $db" || return 1
    admin_sql "CREATE EXTENSION IF NOT EXISTS hstore" "$db" || return 1
  done
}

# ---------------------------------------------------------------------------------------------
# Runners. Each appends "suite<TAB>test<TAB>pass|fail|skip<TAB>first line of the failure" lines
# to $RESULTS/<target>.tsv.

# Node's per-file suites (pg's Makefile: each test/**/*-tests.js is one node process whose exit
# status is its result), run once in text mode and once in binary mode, as test-all does.
run_node_files() {
  local suite="$1" dir="$2" target="$3"
  local out="$RESULTS/$target.tsv" logdir f rc mode res
  logdir="$WORK/logs/$target/$suite"; mkdir -p "$logdir"
  [[ $suite == pg4 ]] && export NODE_OPTIONS="--require $WORK/pg4-node-compat.js"
  (cd "$dir" && if [[ -f script/create-test-tables.js ]]; then
     timeout "$FILE_TIMEOUT" node script/create-test-tables.js postgres://; fi) \
     >"$logdir/_setup.log" 2>&1 || warn "$suite: create-test-tables failed on $target"
  local files
  mapfile -t files < <(cd "$dir" && find test/unit test/integration -name '*-tests.js' | sort)
  for f in "${files[@]}"; do
    [[ $f =~ $EXCLUDE_RE ]] && continue
    for mode in text binary; do
      [[ $mode == binary && $f == test/unit/* ]] && continue
      local name="$f" log="$logdir/${f//\//_}.$mode.log"
      [[ $mode == binary ]] && name="$f [binary]"
      local args=(postgres://)
      [[ $mode == binary ]] && args+=(binary)
      (cd "$dir" && exec timeout -k 5 "$FILE_TIMEOUT" node "$f" "${args[@]}") >"$log" 2>&1
      rc=$?
      if ((rc == 0)); then res=pass; else res=fail; fi
      local why=""
      ((rc == 124)) && why="timed out after ${FILE_TIMEOUT}s"
      [[ $res == fail && -z $why ]] && why="exit $rc: $(grep -iE 'error|assert|expected' "$log" | grep -v DeprecationWarning | head -1 | cut -c1-160)"
      printf '%s\t%s\t%s\t%s\n' "$suite" "$name" "$res" "$why" >>"$out"
    done
  done
}

write_helpers() {
  # pg 4.x predates Node 10: Connection.connect() only dials when a fresh net.Stream reports
  # readyState 'closed', as it did on old Node; today's says 'open' and pg would never connect.
  cat >"$WORK/pg4-node-compat.js" <<'EOF'
// Preloaded for pg 4.x by tests/upstream/run.sh: an unconnected socket reports 'closed' again.
'use strict'
const net = require('net')
const base = Object.getOwnPropertyDescriptor(net.Socket.prototype, 'readyState').get
class OldNodeSocket extends net.Socket {
  get readyState () {
    if (!this._handle && !this.connecting && !this.destroyed) return 'closed'
    return base.call(this)
  }
}
net.Stream = OldNodeSocket
EOF
  # A mocha reporter that records each test's result as a TSV line (mocha 3 to 10).
  cat >"$WORK/tsv-reporter.js" <<'EOF'
// Mocha reporter for tests/upstream/run.sh: one line per test, failures also printed in full.
'use strict'
const fs = require('fs')
module.exports = function TsvReporter (runner) {
  const seen = new Map()
  const emit = (test, result, err) => {
    let title = process.env.PGG_FILE + ': ' + test.fullTitle()
    const n = (seen.get(title) || 0) + 1
    seen.set(title, n)
    if (n > 1) title += ' #' + n
    const why = err ? String(err.message || err).split('\n')[0].slice(0, 160) : ''
    fs.appendFileSync(process.env.PGG_TSV,
      [process.env.PGG_SUITE, title.replace(/\s+/g, ' '), result, why.replace(/\t/g, ' ')].join('\t') + '\n')
    console.log(`[${result}] ${title}`)
    if (err) console.log(err.stack || err)
  }
  runner.on('pass', t => emit(t, 'pass'))
  runner.on('fail', (t, err) => emit(t, 'fail', err))
  runner.on('pending', t => emit(t, 'skip'))
}
EOF
  # A unittest runner for psycopg2's suite that records each test's result as a TSV line.
  cat >"$WORK/psycopg2_runner.py" <<'EOF'
# Runs psycopg2's tests.test_suite() and records one TSV line per test for tests/upstream/run.sh.
import os
import sys
import unittest

out = open(os.environ["PGG_TSV"], "a", buffering=1)


def why(err):
  if err is None:
    return ""
  text = str(err[1]).splitlines()
  return (type(err[1]).__name__ + ": " + (text[0] if text else ""))[:160].replace("\t", " ")


class Result(unittest.TextTestResult):
  def record(self, test, result, err=None):
    out.write("psycopg2\t%s\t%s\t%s\n" % (test.id(), result, why(err)))

  def addSuccess(self, test):
    super().addSuccess(test)
    self.record(test, "pass")

  def addFailure(self, test, err):
    super().addFailure(test, err)
    self.record(test, "fail", err)

  def addError(self, test, err):
    super().addError(test, err)
    self.record(test, "fail", err)

  def addSkip(self, test, reason):
    super().addSkip(test, reason)
    self.record(test, "skip")

  def addExpectedFailure(self, test, err):
    super().addExpectedFailure(test, err)
    self.record(test, "pass")

  def addUnexpectedSuccess(self, test):
    super().addUnexpectedSuccess(test)
    self.record(test, "fail")


sys.path.insert(0, os.getcwd())
import tests  # noqa: E402  (psycopg2's own package, from the source tree)

runner = unittest.TextTestRunner(verbosity=2, resultclass=Result)
runner.run(tests.test_suite())
EOF
}

# Mocha suites, one mocha process per test file: a client that crashes (pg-native's libpq addon
# can abort inside libuv) then loses only that file's remaining tests, on either target.
run_mocha() {
  local suite="$1" dir="$2" target="$3"
  local logdir="$WORK/logs/$target/$suite"
  mkdir -p "$logdir"
  # The packages' mocha.opts carry --bail, which would hide every later result: mocha 3 is given
  # an empty opts file, mocha 7 (which refuses --opts with a path) is told to read none. Mocha 3
  # exits by itself; mocha 7 needs --exit not to wait for a pool a test left open.
  local opts=(--opts /dev/null) f rc
  if (($(cd "$dir" && node -p "require('mocha/package.json').version.split('.')[0]") >= 7)); then
    opts=(--no-opts --exit)
    [[ -f $dir/test/setup.js ]] && opts+=(--file test/setup.js)
  fi
  for f in "$dir"/test/*.js; do
    f="test/$(basename "$f")"
    [[ $f == test/setup.js ]] && continue
    (cd "$dir" && PGG_TSV="$RESULTS/$target.tsv" PGG_SUITE="$suite" PGG_FILE="$f" exec timeout -k 10 "$FILE_TIMEOUT" \
      node node_modules/.bin/mocha "${opts[@]}" --reporter "$WORK/tsv-reporter.js" --timeout 20000 "$f") \
      >"$logdir/${f//\//_}.log" 2>&1
    rc=$?
    ((rc == 124)) && warn "$suite $f on $target: killed after ${FILE_TIMEOUT}s"
    ((rc > 128 && rc != 137)) && warn "$suite $f on $target: mocha died of signal $((rc - 128))"
  done
  return 0
}

run_psycopg2() {
  local dir="$1" target="$2"
  local log="$WORK/logs/$target/psycopg2.log"
  mkdir -p "$WORK/logs/$target"
  (cd "$dir" && PGG_TSV="$RESULTS/$target.tsv" exec timeout -k 10 "$SUITE_TIMEOUT" \
    /usr/bin/python3 "$WORK/psycopg2_runner.py") >"$log" 2>&1
  local rc=$?
  ((rc == 124)) && warn "psycopg2 on $target: killed after ${SUITE_TIMEOUT}s"
  return 0
}

# run_suite SUITE TARGET PORT: the suite against 127.0.0.1:PORT.
run_suite() {
  local s="$1" target="$2" port="$3" user=pgg_scram start
  [[ $s == pg4 ]] && user=pgg_md5
  reset_databases || { warn "cannot reset the databases"; return 1; }
  start=$(date +%s)
  (
    export PGHOST=127.0.0.1 PGPORT="$port" PGUSER="$user" PGPASSWORD="$PASSWORD" PGDATABASE=pgg_upstream
    export PSYCOPG2_TESTDB=psycopg2_test PSYCOPG2_TESTDB_HOST=127.0.0.1 PSYCOPG2_TESTDB_PORT="$port"
    export PSYCOPG2_TESTDB_USER="$user" PSYCOPG2_TESTDB_PASSWORD="$PASSWORD"
    unset PGSSLMODE PGSERVICE PGOPTIONS
    case "$s" in
      psycopg2) run_psycopg2 "${SRC[$s]}" "$target" ;;
      node-pg | pg4) run_node_files "$s" "${SRC[$s]}" "$target" ;;
      *) run_mocha "$s" "${SRC[$s]}" "$target" ;;
    esac
  )
  SECONDS_TAKEN[$s/$target]=$(($(date +%s) - start))
}

# ---------------------------------------------------------------------------------------------
# Comparison.

# allowed SUITE TEST: true when a line of allowlist.txt names SUITE and a glob matching TEST.
allowed() {
  local line pat
  while IFS= read -r line; do
    # Comments are whole lines: test names may hold a '#' (mocha's repeated titles, "#2").
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    line="${line%"${line##*[![:space:]]}"}"
    pat="${line%%[[:space:]]*}"
    local rest="${line#"$pat"}"; rest="${rest#"${rest%%[![:space:]]*}"}"
    # shellcheck disable=SC2053
    [[ $1 == $pat && $2 == $rest ]] && return 0
  done <"$ALLOWLIST"
  return 1
}

compare() {
  local targets=("$@") t s
  printf '\n%-10s' suite
  for t in "${targets[@]}"; do printf ' | %-22s' "$t pass/fail/skip (s)"; done
  printf '\n'
  for s in "${SUITES[@]}"; do
    printf '%-10s' "$s"
    if [[ -n ${UNAVAILABLE[$s]:-} ]]; then printf ' | NOT RUN: %s\n' "${UNAVAILABLE[$s]}"; continue; fi
    for t in "${targets[@]}"; do
      awk -F'\t' -v s="$s" '$1==s {n[$3]++} END {printf " | %-5d %-5d %-5d", n["pass"], n["fail"], n["skip"]}' \
        "$RESULTS/$t.tsv"
      printf ' %5s' "(${SECONDS_TAKEN[$s/$t]:-?})"
    done
    printf '\n'
  done

  local base="${targets[0]}" diffs=0 allowed_n=0 same=0
  # A suite that recorded nothing directly is a broken harness, not agreement.
  for s in "${SUITES[@]}"; do
    [[ -n ${UNAVAILABLE[$s]:-} ]] && continue
    if ! awk -F'\t' -v s="$s" '$1==s {found=1} END {exit !found}' "$RESULTS/$base.tsv"; then
      printf 'NO TESTS %s recorded no result on %s (see %s/logs/%s)\n' "$s" "$base" "$WORK" "$base"
      diffs=$((diffs + 1))
    fi
  done
  for t in "${targets[@]:1}"; do
    # Outer join on suite+test; a test that ran on one side only counts as "missing" on the other.
    # \x1f, not a tab, between fields: read collapses runs of whitespace separators, and an empty
    # failure text must stay an empty field.
    while IFS=$'\x1f' read -r s name r1 r2 w1 w2; do
      if [[ $r1 == "$r2" ]]; then same=$((same + 1)); continue; fi
      if allowed "$s" "$name"; then
        allowed_n=$((allowed_n + 1)); printf 'ALLOWED  %s %s: %s=%s %s=%s\n' "$s" "$name" "$base" "$r1" "$t" "$r2"
        continue
      fi
      diffs=$((diffs + 1))
      printf 'DIFFERS  %s %s: %s=%s %s=%s\n' "$s" "$name" "$base" "$r1" "$t" "$r2"
      [[ -n $w1 ]] && printf '         %s: %s\n' "$base" "$w1"
      [[ -n $w2 ]] && printf '         %s: %s\n' "$t" "$w2"
    done < <(awk -F'\t' -v OFS='\x1f' '
        FNR==NR {a[$1 FS $2]=$3; wa[$1 FS $2]=$4; next}
        {b[$1 FS $2]=$3; wb[$1 FS $2]=$4}
        END {
          for (k in a) { split(k, p, FS); print p[1], p[2], a[k], (k in b) ? b[k] : "missing", wa[k], wb[k] }
          for (k in b) if (!(k in a)) { split(k, p, FS); print p[1], p[2], "missing", b[k], "", wb[k] }
        }' "$RESULTS/$base.tsv" "$RESULTS/$t.tsv" | sort)
  done
  printf '\nlogs: %s/logs (per target and suite; pgguard-<target>.log is the proxy'"'"'s)\n' "$WORK"
  printf 'upstream comparison: %d passed, %d failed\n' "$same" "$diffs"
  ((allowed_n)) && printf '(%d differences allow-listed)\n' "$allowed_n"
  ((${#UNAVAILABLE[@]})) && printf 'not run (no sources): %s\n' "${!UNAVAILABLE[*]}"
  ((diffs == 0))
}

# ---------------------------------------------------------------------------------------------

main() {
  say "sources (cache: $CACHE)"
  local s
  for s in "${SUITES[@]}"; do
    if prepare_suite "$s"; then
      printf '%-10s %s\n' "$s" "${SRC[$s]}"
    else
      UNAVAILABLE[$s]="sources or dependencies could not be fetched (see $WORK/logs/apt-source-* and npm-install-*)"
      printf '%-10s NOT AVAILABLE\n' "$s"
    fi
  done

  if [[ -z ${PGGUARD_BIN:-} ]]; then
    PGGUARD_BIN="$ROOT/build-upstream/pgguard"
    say "building pgguard in $ROOT/build-upstream"
    cmake -S "$ROOT" -B "$ROOT/build-upstream" -DCMAKE_BUILD_TYPE=Release >/dev/null &&
      make -C "$ROOT/build-upstream" -j2 pgguard >"$WORK/logs/build.log" 2>&1 ||
      { tail -20 "$WORK/logs/build.log"; return 2; }
  fi
  write_helpers
  say "PostgreSQL 15 in $WORK/pg"
  start_postgres || return 2
  echo "port $PGPORT"

  local targets=(direct pgguard)
  [[ ${PGG_UPSTREAM_GUARD:-0} == 1 ]] && targets+=(guard)
  local t
  for t in "${targets[@]}"; do
    : >"$RESULTS/$t.tsv"
    local port="$PGPORT"
    if [[ $t != direct ]]; then start_pgguard "$t" || return 2; port="$PGG_PORT"; fi
    for s in "${SUITES[@]}"; do
      [[ -n ${UNAVAILABLE[$s]:-} ]] && continue
      say "$s on $t (port $port)"
      run_suite "$s" "$t" "$port"
      echo "${SECONDS_TAKEN[$s/$t]:-?}s"
    done
    stop_pgguard
  done

  say "comparison"
  local rc=0
  compare "${targets[@]}" || rc=1
  if [[ ${PGG_UPSTREAM_REQUIRE_ALL:-0} == 1 && ${#UNAVAILABLE[@]} -gt 0 ]]; then
    warn "suites not run: ${!UNAVAILABLE[*]}"; rc=1
  fi
  return $rc
}

main
