#!/usr/bin/env bash
# tests/fuzz/run.sh - builds the libFuzzer targets (build/fuzz, clang, ASan+UBSan) and runs
# each one for SECONDS (default 30) on a copy of its committed seed corpus, so the checkout
# is never modified. One line per target (executions, coverage, time), then the line
# "N passed, N failed"; exit 1 on any crash, leak, timeout or build failure. What a
# failing target found is kept in build/fuzz/artifacts/<target>/.
#   bash tests/fuzz/run.sh [SECONDS]
# Environment: PJ_FUZZ_BUILD (build folder, default build/fuzz), PJ_FUZZ_TARGETS (a subset,
# space-separated), FUZZ_VERBOSE=1 (the daemon's log lines as well).
set -u -o pipefail

PJ_PROG=fuzz/run.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=tests/lib/common.sh
. tests/lib/common.sh

case "${1:-30}" in
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    ''|*[!0-9]*) pj_die "SECONDS must be a whole number of seconds, not \"$1\"" ;;
esac
SECONDS_PER_TARGET=${1:-30}
BUILD=${PJ_FUZZ_BUILD:-build/fuzz}
TARGETS=${PJ_FUZZ_TARGETS:-fuzz_model fuzz_event fuzz_expr fuzz_http fuzz_respcut}
CORPUS=tests/fuzz/corpus
DICTS=tests/fuzz/dict

# Largest input per target: past every seed, small enough to stay fast.
max_len() {
    case "$1" in
        fuzz_model) echo 16384 ;;
        fuzz_event) echo 16384 ;;
        fuzz_expr) echo 1024 ;;
        fuzz_http) echo 4096 ;;
        fuzz_respcut) echo 4096 ;;
        *) echo 4096 ;;
    esac
}

# The fuzzer runtime and the symbolizer come with the installed clang's version.
fuzz_packages() {
    local major
    major=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)
    [ -n "$major" ] || major=14
    echo "clang cmake libclang-rt-$major-dev llvm-$major"
}

build_targets() {
    local log="$BUILD.log"
    mkdir -p "$(dirname "$BUILD")"
    pj_say "building $BUILD"
    # shellcheck disable=SC2086
    if ! { cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
               -DPROJECTOR_FUZZ=ON -DPROJECTOR_TESTS=OFF -DPROJECTOR_WERROR=ON &&
           cmake --build "$BUILD" -j2 --target $TARGETS; } >"$log" 2>&1; then
        pj_say "build $BUILD FAILED (log: $log):"
        grep -E 'error|Error' "$log" | head -n 40
        return 1
    fi
}

# fuzz_stat NAME LOG: a libFuzzer final statistic.
fuzz_stat() {
    sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$2" | tail -n 1
}

# run_target NAME: fuzzes one target; prints its result line; returns non-zero on a find.
run_target() {
    local name=$1 bin="$BUILD/$1" work log rc t0 t1 runs cov ft corpus dict=() found
    work=$(mktemp -d "${TMPDIR:-/tmp}/projector-fuzz-$name.XXXXXX") || return 1
    log="$work/fuzz.log"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp "$CORPUS/$name"/* "$work/corpus/" 2>/dev/null
    [ -f "$DICTS/$name.dict" ] && dict=(-dict="$DICTS/$name.dict")
    t0=$(date +%s)
    # -timeout: one input that runs longer is a finding; the outer timeout only guards
    # against a fuzzer that never ends.
    timeout -k 10 $((SECONDS_PER_TARGET + 120)) "$bin" "$work/corpus" "${dict[@]}" \
        -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$name")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
        >"$log" 2>&1 </dev/null
    rc=$?
    t1=$(date +%s)
    runs=$(fuzz_stat number_of_executed_units "$log")
    cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n 1)
    found=$(find "$work/artifacts" -type f | head -n 5)
    corpus=$(find "$CORPUS/$name" -type f | wc -l)
    if [ "$rc" -eq 0 ] && [ -z "$found" ]; then
        printf 'PASS %-11s %9s executions in %3d s  %s (seeds %d)\n' \
            "$name" "${runs:-0}" $((t1 - t0)) "${cov:-no coverage line}" "$corpus"
        rm -rf "$work"
        return 0
    fi
    printf 'FAIL %-11s exit %d after %d s, %s executions\n' "$name" "$rc" $((t1 - t0)) "${runs:-?}"
    # The report: the sanitizer's or libFuzzer's own lines, with the stack.
    grep -anE '==[0-9]+==|ERROR|SUMMARY|runtime error|#[0-9]+ 0x|artifact|Test unit' "$log" |
        head -n 80 | sed 's/^[0-9]*://'
    mkdir -p "$BUILD/artifacts/$name"
    cp "$log" "$BUILD/artifacts/$name/fuzz.log"
    [ -n "$found" ] && cp $found "$BUILD/artifacts/$name/"
    pj_say "$name: log and inputs kept in $BUILD/artifacts/$name/"
    rm -rf "$work"
    return 1
}

main() {
    local name passed=0 failed=0 bin
    pj_install_packages
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    bin=$(command -v llvm-symbolizer || true)
    [ -n "$bin" ] && export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$bin}
    if ! build_targets; then
        echo "0 passed, 1 failed"
        return 1
    fi
    for name in $TARGETS; do
        if run_target "$name"; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
        fi
    done
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

PJ_PACKAGES=$(fuzz_packages)
main
