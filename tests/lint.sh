#!/usr/bin/env bash
# tests/lint.sh - the source checks of the test command: the layers' include rules
# (tests/check_layers.py), clang-format (major version 14, as Debian 12 ships it) over
# every C file, cppcheck over projector/, whitespace errors in the tree, the shipped
# systemd unit (systemd-analyze verify), cmake --install with the manual page (man
# --warnings), and the rest of deploy/: the alert rules and their tests (promtool), every
# YAML file (yamllint), and what tests/check_deploy.py checks of the dashboard, the
# container image, compose and Kubernetes. clang-tidy
# runs inside the clang build (PROJECTOR_TIDY, see CMakeLists.txt and .clang-tidy).
# Prints each check's findings and ends with "N passed, N failed".
#   bash tests/lint.sh
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
CLANG_FORMAT_MAJOR=14
PASSED=0
FAILED=0

# check NAME COMMAND...: runs one check; its output is shown when it fails.
check() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ]; then
        echo "PASS $name"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $name"
        printf '%s\n' "$out" | head -n 60
        FAILED=$((FAILED + 1))
    fi
}

c_files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -co --exclude-standard -- 'projector/*.[ch]' 'tests/*.[ch]'
    else
        find projector tests -name '*.[ch]' | sort
    fi
}

format_check() {
    local version files
    version=$(clang-format --version 2>/dev/null) || { echo "clang-format is not installed"; return 1; }
    case "$version" in
        *"version $CLANG_FORMAT_MAJOR."*) ;;
        *) echo "clang-format $CLANG_FORMAT_MAJOR is needed, found: $version"; return 1 ;;
    esac
    mapfile -t files < <(c_files)
    [ "${#files[@]}" -gt 0 ] || { echo "no C files found"; return 1; }
    clang-format --dry-run --Werror "${files[@]}"
}

cppcheck_check() {
    cppcheck --enable=warning,performance,portability --error-exitcode=1 --quiet \
        --inline-suppr --std=c11 -I projector -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
        projector
}

# Whitespace errors in every tracked file (the fuzz corpus holds raw protocol bytes, CRLF
# included, on purpose) and in the uncommitted change.
whitespace_check() {
    git rev-parse --is-inside-work-tree >/dev/null 2>&1 || return 0
    local empty
    empty=$(git hash-object -t tree /dev/null)
    git diff --check "$empty" HEAD -- . ':!tests/fuzz/corpus' && git diff --check HEAD
}

# The shipped systemd unit, with its binary pointed at this build (verify wants it to exist).
unit_check() {
    local dir rc
    dir=$(mktemp -d) || return 1
    sed "s#/usr/local/bin/projector#$PWD/build/gcc/projector#g" \
        deploy/systemd/projector.service >"$dir/projector.service"
    systemd-analyze verify "$dir/projector.service"
    rc=$?
    # Exposure at most 2.0 (the threshold counts tenths), the unit read as written.
    systemd-analyze security --offline=true --threshold=20 "$dir/projector.service" \
        >"$dir/security.txt" 2>&1 || { tail -n 3 "$dir/security.txt"; rc=1; }
    rm -rf "$dir"
    return $rc
}

# cmake --install of the gcc build into a temp folder holds what the README says it does,
# and the manual page reads without a warning from man.
install_check() {
    local dir f warnings rc=0
    dir=$(mktemp -d) || return 1
    cmake --install build/gcc --prefix "$dir" >/dev/null || rc=1
    for f in bin/projector share/man/man1/projector.1 lib/systemd/system/projector.service \
        share/projector/schemas/config.schema.json share/projector/schemas/readmodel.schema.json \
        share/doc/projector/examples/projector.yaml \
        share/doc/projector/examples/readmodels/orders.yaml; do
        [ -f "$dir/$f" ] || { echo "cmake --install did not install $f"; rc=1; }
    done
    warnings=$(man --warnings -l "$dir/share/man/man1/projector.1" 2>&1 >/dev/null)
    [ -z "$warnings" ] || { echo "man --warnings: $warnings"; rc=1; }
    rm -rf "$dir"
    return $rc
}

check "include rules of the layers" /usr/bin/python3 tests/check_layers.py
check "clang-format $CLANG_FORMAT_MAJOR" format_check
check "cppcheck" cppcheck_check
check "git diff --check" whitespace_check
check "systemd-analyze verify and security <= 2.0 (deploy/systemd)" unit_check
check "cmake --install and man --warnings" install_check
check "promtool check rules (deploy/prometheus)" promtool check rules deploy/prometheus/alerts.yaml
check "promtool test rules (deploy/prometheus)" promtool test rules deploy/prometheus/alerts_test.yaml
check "yamllint (deploy)" yamllint --strict -c deploy/.yamllint.yaml deploy
for part in prometheus grafana container compose kubernetes; do
    check "deploy $part (tests/check_deploy.py)" /usr/bin/python3 tests/check_deploy.py "$part"
done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
