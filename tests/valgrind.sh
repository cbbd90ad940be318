#!/usr/bin/env bash
# tests/valgrind.sh - the daemon (the gcc Debug build) runs under Valgrind's memcheck against
# real servers: it starts, the sample feed and a few thousand more events (poison ones
# among them) are published while it runs, a SIGHUP reloads the read models, every HTTP
# endpoint is asked, /wait confirms the last entry of each stream, then SIGTERM. Fails on
# any memcheck error, any definite leak, an exit status other than 0, or read tables that
# do not hold what was published. Prints "1 passed, 0 failed" or "0 passed, 1 failed".
#   bash tests/valgrind.sh [EVENTS]     (default 3000 generated events)
# Uses the servers of tests/run.sh (PROJECTOR_TEST_REDIS_URL, PROJECTOR_TEST_PG) with a
# database of its own, or starts throwaway ones. PJ_VALGRIND_BUILD: the build folder
# (default build/gcc, which must hold projector and feed).
set -u -o pipefail

PJ_PROG=valgrind.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=tests/lib/common.sh
. tests/lib/common.sh
# shellcheck source=tests/lib/servers.sh
. tests/lib/servers.sh

case "${1:-3000}" in
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    ''|*[!0-9]*) pj_die "EVENTS must be a number, not \"$1\"" ;;
esac
EVENTS=${1:-3000}
BUILD=${PJ_VALGRIND_BUILD:-build/gcc}
START_TIMEOUT_S=120 # the daemon's start under memcheck: migrations, tables, groups
CATCH_UP_TIMEOUT_S=300
EXIT_TIMEOUT_S=120

WORK=""
OWN_SERVERS=0
VG_PID=""
DBNAME=""
ADMIN_PG=""

cleanup() {
    [ -n "$VG_PID" ] && kill -KILL "$VG_PID" 2>/dev/null && wait "$VG_PID" 2>/dev/null
    if [ -n "$DBNAME" ] && [ -n "$ADMIN_PG" ]; then
        psql "$ADMIN_PG" -qAt -c "DROP DATABASE IF EXISTS \"$DBNAME\"" >/dev/null 2>&1
    fi
    if [ "$OWN_SERVERS" -eq 1 ]; then
        pj_redis_stop "$WORK/redis"
        pj_pg_stop "$WORK/pg"
    fi
    [ -n "$WORK" ] && [ -z "${PJ_KEEP:-}" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    pj_say "FAILED: $*"
    if [ -n "$WORK" ] && [ -f "$WORK/projector.log" ]; then
        pj_say "the daemon's last log lines:"
        tail -n 30 "$WORK/projector.log"
        grep -a -A 25 -E 'Invalid|uninitialised|definitely lost in|Process terminating' \
            "$WORK/valgrind.log" 2>/dev/null | head -n 80
    fi
    echo "0 passed, 1 failed"
    exit 1
}

# ---- servers, database, configuration ----

own_servers() {
    local rport pport
    rport=$(pj_free_port) && pj_redis_start "$WORK/redis" "$rport" || return 1
    pport=$(pj_free_port) && pj_pg_start "$WORK/pg" "$pport" || return 1
    OWN_SERVERS=1
    PROJECTOR_TEST_REDIS_URL="redis://127.0.0.1:$rport"
    PROJECTOR_TEST_PG="host=127.0.0.1 port=$pport user=postgres dbname=postgres"
}

# The next Redis logical database in the suites' own rotation (pj:testdb in database 0),
# so that this run never shares one with a test.
redis_db() {
    local n
    n=$(redis-cli -u "$PROJECTOR_TEST_REDIS_URL/0" INCR pj:testdb) || return 1
    echo $(((n - 1) % 255 + 1))
}

setup() {
    local rdb
    chmod 0755 "$WORK"
    if [ -z "${PROJECTOR_TEST_REDIS_URL:-}" ] || [ -z "${PROJECTOR_TEST_PG:-}" ]; then
        own_servers || fail "could not start servers"
    fi
    ADMIN_PG=$PROJECTOR_TEST_PG
    DBNAME="pj_valgrind_$$"
    psql "$ADMIN_PG" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DBNAME\"" >/dev/null ||
        fail "could not create database $DBNAME"
    PG="$(sed 's/dbname=[^ ]*//' <<<"$ADMIN_PG") dbname=$DBNAME"
    rdb=$(redis_db) || fail "could not pick a Redis database"
    REDIS_URL="$PROJECTOR_TEST_REDIS_URL/$rdb"
    redis-cli -u "$REDIS_URL" FLUSHDB >/dev/null || fail "could not flush $REDIS_URL"
    PORT=$(pj_free_port)
    cat >"$WORK/projector.yaml" <<EOF
redis:
  url: '$REDIS_URL'
  connect_timeout_ms: 2000
postgres:
  conninfo: '$PG'
  schema: projector
http:
  listen: '127.0.0.1:$PORT'
readmodels: '$ROOT/readmodels'
batch: 250
block_ms: 200
log_level: info
stats_interval_s: 5
EOF
}

# ---- the feed ----

# Writes a feed file (tests/support/testenv.h) of $1 events in the sample's shape:
# customers registered and renamed (flat fields), orders placed, items added, confirmed
# and cancelled (envelopes), plus one poison entry every 500 events: invalid JSON, a
# price that is not a number, a null key, an unhandled type.
generate_feed() {
    python3 - "$1" <<'PY'
import json, random, sys
n = int(sys.argv[1]); rnd = random.Random(20260115)
def flat(t, agg, ver, payload):
    return {"stream": "customers", "fields": {"type": t, "event_id": "vg-%d" % i,
            "aggregate_id": agg, "aggregate_type": "Customer", "version": str(ver),
            "occurred_at": "2026-01-16T%02d:%02d:%02dZ" % (i // 3600 % 24, i // 60 % 60, i % 60),
            "payload": payload, "metadata": {"userId": "u-vg"}}}
def env(t, agg, ver, payload):
    return {"stream": "orders", "envelope": {"eventId": "vg-%d" % i, "eventType": t,
            "aggregateId": agg, "aggregateType": "Order", "version": ver,
            "timestamp": "2026-01-16T%02d:%02d:%02dZ" % (i // 3600 % 24, i // 60 % 60, i % 60),
            "metadata": {"correlationId": "vg"}, "payload": payload}}
poison = [
    {"stream": "orders", "fields": {"event": "{\"eventType\": \"order.placed\", "}},
    {"stream": "orders", "fields": {"type": "order.line_added", "version": "1",
     "payload": "{\"orderId\": \"vg-o-1\", \"qty\": \"abc\", \"unitPrice\": \"2\"}"}},
    {"stream": "orders", "fields": {"type": "order.placed", "version": "1",
     "payload": "{\"orderId\": null, \"customerId\": \"vg-c-1\"}"}},
    {"stream": "customers", "fields": {"type": "customer.deleted", "payload": "{}"}},
]
customers, orders = [], []
for i in range(n):
    if i % 500 == 250:
        print(json.dumps(poison[(i // 500) % len(poison)])); continue
    r = rnd.random()
    if not customers or r < 0.08:
        c = "vg-c-%d" % (len(customers) + 1); customers.append(c)
        print(json.dumps(flat("customer.registered", c, 1, {"customerId": c,
              "name": "Customer %d" % len(customers), "email": None if i % 7 == 0 else c + "@example.com"})))
    elif r < 0.12:
        c = rnd.choice(customers)
        print(json.dumps(flat("customer.renamed", c, 2, {"customerId": c, "name": "Renamed %d" % i})))
    elif r < 0.55 or not orders:
        o = "vg-o-%d" % (len(orders) + 1); orders.append(o); c = rnd.choice(customers)
        items = [{"sku": "SKU-%d" % rnd.randrange(40), "qty": rnd.randrange(1, 4),
                  "unitPrice": "%d.%02d" % (rnd.randrange(1, 100), rnd.randrange(100))}
                 for _ in range(rnd.randrange(1, 4))]
        print(json.dumps(env("order.placed", o, 1, {"orderId": o, "customerId": c, "items": items,
              "total": {"amount": "%d.%02d" % (rnd.randrange(1, 500), rnd.randrange(100)), "currency": "EUR"}})))
    else:
        o = rnd.choice(orders); t = rnd.choice(["order.item_added", "order.confirmed", "order.cancelled"])
        print(json.dumps(env(t, o, 2, {"orderId": o, "customerId": rnd.choice(customers), "qty": 1})))
PY
}

# publish FILE: XADDs the feed; prints "stream id" lines for the last entry of each stream.
publish() {
    "$BUILD/feed" "$REDIS_URL" "$1" >"$WORK/feed.out" 2>&1 || {
        cat "$WORK/feed.out"
        return 1
    }
    tail -n +2 "$WORK/feed.out"
}

# ---- the daemon ----

start_daemon() {
    valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --error-exitcode=1 --num-callers=30 \
        --log-file="$WORK/valgrind.log" \
        "$BUILD/projector" --config "$WORK/projector.yaml" run >"$WORK/projector.log" 2>&1 &
    VG_PID=$!
    local i
    for i in $(seq $((START_TIMEOUT_S * 2))); do
        curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && return 0
        kill -0 "$VG_PID" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 30 "$WORK/projector.log"
    fail "the daemon did not answer /healthz within ${START_TIMEOUT_S} s"
}

# wait_for STREAM ID: /wait until every read model reading STREAM settled ID.
wait_for() {
    local deadline=$((SECONDS + CATCH_UP_TIMEOUT_S)) code
    while [ "$SECONDS" -lt "$deadline" ]; do
        code=$(curl -sS -o "$WORK/wait.json" -w '%{http_code}' \
            "http://127.0.0.1:$PORT/wait?stream=$1&id=$2&timeout_ms=30000") || code=000
        [ "$code" = 200 ] && return 0
        # 408: still catching up; 503: a reload answered the waiters. Ask again.
        case "$code" in 408|503) continue ;; esac
        cat "$WORK/wait.json" 2>/dev/null
        fail "/wait for $1 $2 answered $code"
    done
    fail "the daemon did not settle $1 $2 within ${CATCH_UP_TIMEOUT_S} s"
}

# Every endpoint once more, with a few answers that are errors on purpose.
ask_endpoints() {
    local path
    for path in /lag /lag/orders /lag/nope /readyz /metrics /healthz /nope \
        '/wait?stream=orders&id=bad' '/wait?stream=nope&id=1-0' \
        '/wait?stream=orders&id=99999999999999-0&timeout_ms=50'; do
        curl -sS -o /dev/null "http://127.0.0.1:$PORT$path" || fail "GET $path failed"
    done
}

stop_daemon() {
    local i rc
    kill -TERM "$VG_PID" 2>/dev/null
    for i in $(seq $((EXIT_TIMEOUT_S * 2))); do
        kill -0 "$VG_PID" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$VG_PID" 2>/dev/null; then
        fail "the daemon did not exit within ${EXIT_TIMEOUT_S} s of SIGTERM"
    fi
    wait "$VG_PID"
    rc=$?
    VG_PID=""
    return "$rc"
}

# ---- checks ----

sql() {
    psql "$PG" -qAt -v ON_ERROR_STOP=1 -c "$1"
}

check_tables() {
    local customers expected rows dead
    expected=$(grep -c '"customer.registered"' "$WORK/feed.jsonl")
    expected=$((expected + 3)) # the sample feed's three customers
    customers=$(sql "SELECT count(*) FROM customers") || fail "cannot read table customers"
    [ "$customers" -eq "$expected" ] ||
        fail "table customers has $customers rows, $expected customers registered"
    rows=$(sql "SELECT count(*) FROM order_read_model") || fail "cannot read order_read_model"
    dead=$(sql "SELECT count(*) FROM projector.dead_letters") || fail "cannot read dead_letters"
    [ "$dead" -gt 0 ] || fail "no poison event was dead-lettered"
    pj_say "customers $customers, orders $rows, dead letters $dead"
}

# The memcheck summary lines; fails on any error or definite leak.
check_valgrind() {
    local summary definite
    summary=$(grep -a 'ERROR SUMMARY' "$WORK/valgrind.log" | tail -n 1)
    definite=$(grep -a 'definitely lost:' "$WORK/valgrind.log" | tail -n 1)
    [ -n "$definite" ] || definite=$(grep -a 'All heap blocks were freed' "$WORK/valgrind.log")
    pj_say "memcheck: ${summary#*== }"
    pj_say "memcheck: ${definite#*== }"
    grep -aq 'ERROR SUMMARY: 0 errors' <<<"$summary" || return 1
    ! grep -aq 'definitely lost: [1-9]' <<<"$definite"
}

report_valgrind() {
    pj_say "valgrind log (errors and leaks):"
    grep -a -A 25 -E 'Invalid|uninitialised|definitely lost in|Mismatched|overlap|Syscall param' \
        "$WORK/valgrind.log" | head -n 200
    tail -n 20 "$WORK/projector.log"
}

main() {
    local rc last
    PJ_PACKAGES="valgrind curl python3 redis-server postgresql-15"
    pj_install_packages
    [ -x "$BUILD/projector" ] && [ -x "$BUILD/feed" ] ||
        fail "$BUILD/projector and $BUILD/feed are needed (bash tests/run.sh builds them)"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/projector-valgrind.XXXXXX") || fail "mktemp failed"
    setup
    generate_feed "$EVENTS" >"$WORK/feed.jsonl" || fail "could not generate the feed"
    pj_say "projector under memcheck on 127.0.0.1:$PORT, $REDIS_URL, database $DBNAME"
    start_daemon
    publish deploy/sample/feed.jsonl >/dev/null || fail "could not publish the sample feed"
    kill -HUP "$VG_PID" # a reload with nothing changed: every read model restarts serving
    last=$(publish "$WORK/feed.jsonl") || fail "could not publish $EVENTS events"
    while read -r stream id; do
        [ -n "$stream" ] && wait_for "$stream" "$id"
    done <<<"$last"
    ask_endpoints
    check_tables
    stop_daemon
    rc=$?
    if ! check_valgrind || [ "$rc" -ne 0 ]; then
        report_valgrind
        fail "memcheck errors, definite leaks or exit status $rc"
    fi
    pj_say "exit status 0, no memcheck error, no definite leak"
    echo "1 passed, 0 failed"
}

main
