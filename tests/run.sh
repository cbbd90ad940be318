#!/usr/bin/env bash
# tests/run.sh - the test command (CI runs it through .ci/run): installs what is missing,
# builds gcc, clang and ASan+UBSan trees under build/, starts throwaway Redis and
# PostgreSQL servers in a temp folder (stopped and removed at exit, whatever happens),
# runs every Criterion suite, the daemon under Valgrind (tests/valgrind.sh), each
# libFuzzer target for PJ_FUZZ_SECONDS (default 60, tests/fuzz/run.sh) and the source
# checks (tests/lint.sh: layers, clang-format, cppcheck; clang-tidy runs in the clang
# build), and ends with the line "N passed, N failed".
#   bash tests/run.sh           everything
#   bash tests/run.sh --quick   gcc build, unit and integration suites and source checks
set -u -o pipefail

PJ_PROG=run.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=tests/lib/common.sh
. tests/lib/common.sh
# shellcheck source=tests/lib/servers.sh
. tests/lib/servers.sh

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) pj_die "unknown argument \"$arg\" (expected --quick or --help)" ;;
    esac
done

SUITE_TIMEOUT_S=${PJ_SUITE_TIMEOUT_S:-900}
FUZZ_SECONDS=${PJ_FUZZ_SECONDS:-60} # per libFuzzer target
FAILED_STEPS=()    # builds, suites and checks that failed
SUMMARY=()         # one line per suite
TOTAL_PASSED=0
TOTAL_FAILED=0

# ---- servers ----

TMP=""
SUITE_PID=""
cleanup() {
    # timeout passes the signal on to the suite, which takes its workers with it.
    [ -n "$SUITE_PID" ] && kill -TERM "$SUITE_PID" 2>/dev/null && wait "$SUITE_PID" 2>/dev/null
    [ -n "$TMP" ] || return
    pj_redis_stop "$TMP/redis"
    pj_pg_stop "$TMP/pg"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_servers() {
    local rport pport
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/projector-tests.XXXXXX") || pj_die "mktemp failed"
    # The postgres user must reach its folder inside.
    chmod 0755 "$TMP"
    rport=$(pj_free_port) && pj_redis_start "$TMP/redis" "$rport" || return 1
    pport=$(pj_free_port) && pj_pg_start "$TMP/pg" "$pport" || return 1
    export PROJECTOR_TEST_REDIS_URL="redis://127.0.0.1:$rport"
    export PROJECTOR_TEST_PG="host=127.0.0.1 port=$pport user=postgres dbname=postgres"
    export PROJECTOR_TEST_TMP="$TMP"
    pj_say "redis on 127.0.0.1:$rport, postgresql on 127.0.0.1:$pport, temp folder $TMP"
}

# ---- builds ----

# build NAME CMAKE_ARGS...: configures and builds build/NAME; the log is build/NAME.log.
build() {
    local name=$1 log="build/$1.log"
    shift
    mkdir -p build
    pj_say "building build/$name"
    if ! { cmake -S . -B "build/$name" -DCMAKE_BUILD_TYPE=Debug "$@" &&
           cmake --build "build/$name" -j2; } >"$log" 2>&1; then
        pj_say "build $name FAILED (log: $log):"
        grep -E 'error|Error' "$log" | head -n 40
        tail -n 20 "$log"
        FAILED_STEPS+=("build $name")
        return 1
    fi
}

# ---- suites ----

# run_suite BINARY [ENV=VALUE...]: runs one Criterion executable and adds its counts.
run_suite() {
    local bin=$1 log rc tested passing crashing failing synth
    shift
    log="$TMP/$(echo "$bin" | tr / _).log"
    # In the background, so that a signal to this script is handled at once (wait returns).
    env "$@" timeout -k 10 "$SUITE_TIMEOUT_S" "$bin" --jobs 2 >"$log" 2>&1 </dev/null &
    SUITE_PID=$!
    wait "$SUITE_PID"
    rc=$?
    SUITE_PID=""
    synth=$(grep -a 'Synthesis:' "$log" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g')
    tested=$(sed -n 's/.*Tested: \([0-9]*\).*/\1/p' <<<"$synth")
    passing=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$synth")
    failing=$(sed -n 's/.*Failing: \([0-9]*\).*/\1/p' <<<"$synth")
    crashing=$(sed -n 's/.*Crashing: \([0-9]*\).*/\1/p' <<<"$synth")
    if [ -z "$tested" ] || [ -z "$passing" ]; then
        # No synthesis: the runner itself died (or timed out). Count it as one failure.
        tested=1 passing=0 failing=1 crashing=1
    fi
    if [ "$rc" -ne 0 ] && [ "$passing" -eq "$tested" ] && [ "$passing" -gt 0 ]; then
        # Every test passed but the suite did not (a leak reported at exit, a timeout):
        # count one of its tests as failed so that the last line agrees with the exit code.
        passing=$((passing - 1))
    fi
    TOTAL_PASSED=$((TOTAL_PASSED + passing))
    TOTAL_FAILED=$((TOTAL_FAILED + tested - passing))
    SUMMARY+=("$(printf '%-48s %4d tested %4d passed %4d failed %4d crashed  exit %d' \
        "$bin" "$tested" "$passing" "${failing:-0}" "${crashing:-0}" "$rc")")
    if [ "$rc" -ne 0 ] || [ "$passing" -ne "$tested" ]; then
        FAILED_STEPS+=("suite $bin")
        pj_say "suite $bin FAILED (exit $rc):"
        tail -n 150 "$log"
    else
        pj_say "suite $bin: $passing passed"
    fi
}

# run_suites TREE KIND [ENV=VALUE...]: every build/TREE/KIND_test_* executable.
run_suites() {
    local tree=$1 kind=$2 bin
    shift 2
    for bin in build/"$tree"/"$kind"_test_*; do
        [ -f "$bin" ] && [ -x "$bin" ] || continue
        run_suite "$bin" "$@"
    done
}

# run_script NAME COMMAND...: a script that ends with the line "N passed, N failed" (the
# fuzzers, the daemon under Valgrind); its counts join the totals.
run_script() {
    local name=$1 log passed failed rc
    shift
    log="$TMP/$name.log"
    "$@" >"$log" 2>&1 </dev/null &
    SUITE_PID=$!
    wait "$SUITE_PID"
    rc=$?
    SUITE_PID=""
    passed=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$log" | tail -n 1)
    failed=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$log" | tail -n 1)
    [ -n "$passed" ] && [ -n "$failed" ] || passed=0 failed=1
    [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
    TOTAL_PASSED=$((TOTAL_PASSED + passed))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
    SUMMARY+=("$(printf '%-48s %4d passed %4d failed  exit %d' "$name" "$passed" "$failed" "$rc")")
    if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
        FAILED_STEPS+=("$name")
        pj_say "$name FAILED (exit $rc):"
        tail -n 100 "$log"
    else
        grep -aE '^(PASS|FAIL) |memcheck:' "$log"
        pj_say "$name: $passed passed"
    fi
}

# ---- main ----

pj_install_packages
SAN_ENV=(ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
         "LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp:print_suppressions=0")

gcc_ok=0 clang_ok=0 asan_ok=0
build gcc -DCMAKE_C_COMPILER=gcc -DPROJECTOR_WERROR=ON && gcc_ok=1
if [ "$QUICK" -eq 0 ]; then
    build clang -DCMAKE_C_COMPILER=clang -DPROJECTOR_WERROR=ON -DPROJECTOR_TIDY=ON && clang_ok=1
    build asan -DCMAKE_C_COMPILER=gcc -DPROJECTOR_SANITIZE=ON && asan_ok=1
fi

if ! start_servers; then
    FAILED_STEPS+=("servers")
else
    [ "$gcc_ok" -eq 1 ] && run_suites gcc unit
    [ "$clang_ok" -eq 1 ] && run_suites clang unit
    [ "$asan_ok" -eq 1 ] && run_suites asan unit "${SAN_ENV[@]}"
    [ "$asan_ok" -eq 1 ] && run_suites asan integration "${SAN_ENV[@]}"
    [ "$gcc_ok" -eq 1 ] && run_suites gcc integration
    if [ "$QUICK" -eq 0 ]; then
        [ "$gcc_ok" -eq 1 ] && run_script valgrind env PJ_VALGRIND_BUILD=build/gcc \
            bash tests/valgrind.sh
        run_script fuzz env PJ_FUZZ_BUILD=build/fuzz bash tests/fuzz/run.sh "$FUZZ_SECONDS"
    fi
fi
[ -n "$TMP" ] || TMP=$(mktemp -d "${TMPDIR:-/tmp}/projector-tests.XXXXXX")
run_script lint bash tests/lint.sh

echo
echo "==== summary ===="
for line in "${SUMMARY[@]}"; do echo "$line"; done
for step in "${FAILED_STEPS[@]}"; do echo "FAILED: $step"; done
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "${#FAILED_STEPS[@]}" -eq 0 ] && [ "$TOTAL_FAILED" -eq 0 ]
