#!/usr/bin/env bash
# The whole check, as CI runs it: install dependencies, build a release build (-Werror) and an
# ASan+UBSan build, run ctest (unit tests and the pytest integration suite) in both.
# Exits non-zero on any failure; the last line is "Total: N passed, N failed".
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${JOBS:-2}"
# Build directories; overridable so a developer's own build/ is left alone.
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
ASAN_BUILD_DIR="${ASAN_BUILD_DIR:-$ROOT/build-asan}"
passed=0
failed=0
failures=()

say() { printf '\n=== %s\n' "$*"; }

fail_step() {
  failed=$((failed + 1))
  failures+=("$1")
  printf 'test.sh: FAILED: %s\n' "$1" >&2
}

# Runs ctest in a build directory and adds its counts to the totals.
run_ctest() {
  local name="$1" dir="$2" out rc total nfail
  out="$(mktemp)"
  (cd "$dir" && ctest --output-on-failure --timeout 1600) 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  if read -r nfail total < <(sed -nE 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/p' "$out" | tail -1) \
      && [[ -n "$total" ]]; then
    passed=$((passed + total - nfail))
    failed=$((failed + nfail))
    ((nfail == 0)) || failures+=("$name: $nfail of $total ctest tests failed")
    if ((rc != 0 && nfail == 0)); then fail_step "$name: ctest exited $rc"; fi
  else
    fail_step "$name: ctest printed no result (exit $rc)"
  fi
  rm -f "$out"
  # ctest shows a passing test's output only in its log; surface pytest's own count.
  local pyline
  pyline="$(grep -E '^=* *[0-9]+ (passed|failed).* in [0-9.]+s' "$dir/Testing/Temporary/LastTest.log" 2>/dev/null | tail -1)"
  [[ -n "$pyline" ]] && printf '%s integration (pytest): %s\n' "$name" "$pyline"
  return 0
}

# Configures and builds one build directory; the target list (optional, after --) narrows it.
# Prints its own errors; returns non-zero on failure.
configure_and_build() {
  local name="$1" dir="$2" targets=()
  shift 2
  local args=()
  while (($#)); do
    if [[ "$1" == -- ]]; then shift; targets=("$@"); break; fi
    args+=("$1"); shift
  done
  say "$name: configure ($dir)"
  mkdir -p "$dir"
  if ! cmake -S "$ROOT" -B "$dir" "${args[@]}" >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log"
    echo "test.sh: $name: cmake configure failed" >&2
    return 1
  fi
  say "$name: build"
  if ! make -C "$dir" -j"$JOBS" --no-print-directory "${targets[@]}" 2>&1; then
    echo "test.sh: $name: build failed" >&2
    return 1
  fi
}

say "dependencies"
if ! bash "$ROOT/scripts/install-deps.sh"; then
  fail_step "install-deps.sh"
  printf '\nTotal: %d passed, %d failed\n' "$passed" "$failed"
  exit 1
fi

if configure_and_build release "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS=-Werror \
     -DPGG_SANITIZE=OFF; then
  release_built=1
else
  release_built=0
  fail_step "release: build"
fi

# The ASan+UBSan and fuzzing builds compile in the background, at the lowest CPU priority, while
# the release suite runs: that suite mostly waits (backoffs, timeouts, a restarted server), so
# the compilers take its idle time instead of adding ten minutes to CI. Their output is shown
# once they are done.
FUZZ_TARGETS=(frame messages startup error sasl explain)
FUZZ_BUILD_DIR="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
bg_log="$(mktemp)"
(
  renice -n 19 -p "$BASHPID" >/dev/null 2>&1 || true
  # No sanitizer options are exported here: the unit tests run with ASan's defaults (leak
  # checks on, UBSan fatal via -fno-sanitize-recover), and the integration fixtures give pgguard
  # its own ASAN_OPTIONS (detect_leaks=1:abort_on_error=1) without passing them to PostgreSQL's
  # clients.
  rc=0
  configure_and_build asan "$ASAN_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGG_SANITIZE=ON ||
    rc=$((rc | 1))
  CC=clang-14 configure_and_build fuzz "$FUZZ_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DPGG_FUZZ=ON -- "${FUZZ_TARGETS[@]/#/fuzz_}" || rc=$((rc | 2))
  exit $rc
) >"$bg_log" 2>&1 &
bg_pid=$!

if ((release_built)); then
  say "release: ctest"
  run_ctest release "$BUILD_DIR"
fi

wait "$bg_pid"
bg_rc=$?
cat "$bg_log"
rm -f "$bg_log"
if ((bg_rc & 1)); then
  fail_step "asan: build"
else
  say "asan: ctest"
  run_ctest asan "$ASAN_BUILD_DIR"
fi
fuzz_built=$(( (bg_rc & 2) == 0 ))

# The protocol parsers and the error-message reader under libFuzzer (clang): a short run each,
# from the committed seed corpus (tests/fuzz/corpus/<target>). Six targets at 10 s keep the step
# at the minute it took with two at 30 s. New inputs go to a temporary directory, never into the
# repository.
fuzz_step() {
  local dir="$FUZZ_BUILD_DIR" secs="${FUZZ_SECONDS:-10}" f corpus
  if ((!fuzz_built)); then
    fail_step "fuzz: build"
    return
  fi
  for f in "${FUZZ_TARGETS[@]}"; do
    corpus="$(mktemp -d)"
    say "fuzz: fuzz_$f for ${secs}s"
    if (cd "$corpus" && "$dir/fuzz_$f" -max_total_time="$secs" -print_final_stats=1 "$corpus" \
          "$ROOT/tests/fuzz/corpus/$f" 2>&1 | grep -E '^(stat::number_of_executed_units|==[0-9]+==|SUMMARY)')
       [[ ${PIPESTATUS[0]} -eq 0 ]]; then
      passed=$((passed + 1))
    else
      fail_step "fuzz: fuzz_$f found a crash (see above)"
    fi
    rm -rf "$corpus"
  done
}
fuzz_step

say "summary"
for f in "${failures[@]+"${failures[@]}"}"; do
  printf '  failed: %s\n' "$f"
done
printf 'Total: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
