#!/usr/bin/env bash
# Installs what pgguard's build, tests and demo need on Debian 12 (as root), then the Node.js
# test clients (npm ci in tests/node). Idempotent: a second run changes nothing and is quick.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: ERROR: %s\n' "$*" >&2; exit 1; }

PACKAGES=(
  build-essential cmake pkg-config          # the C toolchain and build system
  libuv1-dev libpq-dev libssl-dev libinih-dev   # pgguard's libraries (libinih: the config file)
  libpg-query-dev libprotobuf-c-dev           # PostgreSQL's parser for schema files (linked statically)
  clang-14                                  # libFuzzer targets (PGG_FUZZ=ON)
  postgresql-15 postgresql-client-15        # the server the integration tests start, psql, pgbench
  pgbouncer prometheus                      # benchmark comparison; scraping the metrics
  python3-psycopg2 python3-pytest python3-pytest-timeout   # the integration test harness
  python3-yaml python3-cryptography openssl curl   # deploy-file checks, TLS test certificates, the demo
  locales                                   # localedef: a translated-messages server in the tests
)

# Node.js >= 20.19 is needed by Prisma 7. An existing node/npm (e.g. from NodeSource) is kept:
# Debian's npm package conflicts with NodeSource's nodejs, which already ships npm.
if ! command -v node >/dev/null 2>&1; then
  PACKAGES+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(npm)
fi

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "packages missing (${missing[*]}) and not running as root"
  log "installing: ${missing[*]}"
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
else
  log "Debian packages: all present"
fi

# Sanity checks that fail loudly instead of later, in the middle of a test.
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || die "PostgreSQL 15 server binaries not found"
id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist (postgresql-common should create it)"
/usr/bin/python3 -c 'import psycopg2, pytest' || die "/usr/bin/python3 lacks psycopg2 or pytest"
command -v node >/dev/null && command -v npm >/dev/null || die "node/npm not installed"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' \
  || die "Node.js $(node --version) is too old: Prisma 7 needs >= 20.19"

# A German locale, for the test of a server whose lc_messages translates its errors (the guard
# must then fall back from reading the message to a catalog check). locales ships its sources.
if ! locale -a 2>/dev/null | grep -qi '^de_DE\.utf-\?8$'; then
  [[ $(id -u) -eq 0 ]] || die "locale de_DE.UTF-8 missing and not running as root"
  log "generating locale de_DE.UTF-8"
  localedef -i de_DE -f UTF-8 de_DE.UTF-8 || die "localedef de_DE.UTF-8 failed"
fi

# The Node.js clients, exactly as locked. A stamp of the lockfile skips reinstalling when unchanged.
NODE_DIR="$ROOT/tests/node"
stamp="$NODE_DIR/node_modules/.pgguard-lock-sha256"
want="$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -d "$NODE_DIR/node_modules/pg" ]]; then
  log "tests/node: node_modules up to date"
else
  log "tests/node: npm ci"
  # No install scripts: Prisma's would try to download engines; nothing the tests use needs them.
  (cd "$NODE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
    || die "npm ci in tests/node failed"
  echo "$want" > "$stamp"
fi

log "done"
