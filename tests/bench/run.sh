#!/usr/bin/env bash
# tests/bench/run.sh - the benchmark (issue 4), run by hand: builds build/release, starts
# its own Redis and PostgreSQL (fsync on, defaults) in a temp folder stopped at exit,
# generates the order feed, then measures the drain against the set-based ceiling and the
# Python peer worker, /wait latency at a steady rate, and the daemon's footprint. Prints one
# table and writes it as JSON to build/bench.json. Figures only: it never fails on time.
#   bash tests/bench/run.sh [--events N] [--quick] [--batch N] [--rate N] [--samples N]
#                           [--models N] [--parallel N] [--poison-only] [--keep]
set -u -o pipefail

PJ_PROG=bench
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=tests/lib/common.sh
. tests/lib/common.sh
# shellcheck source=tests/lib/servers.sh
. tests/lib/servers.sh

usage() {
    cat <<'EOF'
usage: bash tests/bench/run.sh [options]
  --events N    events in the drain feed (default 500000)
  --quick       20000 events, 2000 latency samples: about two minutes
  --batch N     the daemon's batch, also the ceiling's and the Python worker's (default 1000)
  --rate N      events/s of the latency runs (default 2000)
  --samples N   events measured per latency run, after a 1 s warm-up (default 20000)
  --models N    read models on the "orders" stream in the second latency run (default 5)
  --parallel N  parallel_apply of the second drain (default 2)
  --poison-only only the poison stage (orders placed, 0, 1 and 100 in 100 refused)
  --keep        keep the temp folder (server and daemon logs) and say where it is
EOF
}

EVENTS=500000 BATCH=1000 RATE=2000 SAMPLES=20000 MODELS=5 PARALLEL=2 KEEP=0 QUICK=0
POISON_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --events) EVENTS=${2:?}; shift ;;
        --quick) QUICK=1 ;;
        --batch) BATCH=${2:?}; shift ;;
        --rate) RATE=${2:?}; shift ;;
        --samples) SAMPLES=${2:?}; shift ;;
        --models) MODELS=${2:?}; shift ;;
        --parallel) PARALLEL=${2:?}; shift ;;
        --poison-only) POISON_ONLY=1 ;;
        --keep) KEEP=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; pj_die "unknown argument \"$1\"" ;;
    esac
    shift
done
if [ "$QUICK" -eq 1 ]; then
    EVENTS=20000 SAMPLES=2000
fi
POISON_EVENTS=100000
for n in "$EVENTS" "$BATCH" "$RATE" "$SAMPLES" "$MODELS" "$PARALLEL"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || pj_die "\"$n\" is not a positive number"
done
[ "$MODELS" -ge 2 ] || pj_die "--models must be at least 2 (orders and customer_stats)"
WARMUP=$((RATE < SAMPLES ? RATE : SAMPLES)) # about one second, never more than measured
BIN="$ROOT/build/release"
PY=/usr/bin/python3 # Debian's, which sees python3-redis and python3-psycopg2
OUT="$ROOT/build/bench.json"

# ---- set-up ----

install_python_modules() {
    local p missing=""
    for p in python3-redis python3-psycopg2; do
        case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" in
            *" installed") ;;
            *) missing="$missing $p" ;;
        esac
    done
    [ -z "$missing" ] && return 0
    [ "$(id -u)" -eq 0 ] || pj_die "missing packages:$missing (run as root, or install them)"
    pj_say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || pj_die "apt-get update failed"
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null ||
        pj_die "could not install:$missing"
}

build_release() {
    mkdir -p build
    pj_say "building build/release (log: build/release.log)"
    if ! { cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release &&
           cmake --build build/release -j2 --target projector gen_feed ceiling drain latency; } \
        >build/release.log 2>&1; then
        grep -E 'error|Error' build/release.log | head -n 30
        pj_die "the build failed (log: build/release.log)"
    fi
}

TMP=""
DAEMON_PID=""
cleanup() {
    [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    [ -n "$TMP" ] || return
    pj_redis_stop "$TMP/redis"
    pj_pg_stop "$TMP/pg"
    if [ "$KEEP" -eq 1 ]; then
        pj_say "kept $TMP (logs)"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# PostgreSQL as the issue measures it: fsync on, every setting at its default.
start_pg() {
    pj_pg_prepare "$TMP/pg" || return 1
    pj_as_pg "$PJ_PGBIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/postgres.log" -w -t 60 \
        -o "-p $PG_PORT -k '' -c listen_addresses=127.0.0.1 -c TimeZone=UTC" start >/dev/null
}

start_servers() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/projector-bench.XXXXXX") || pj_die "mktemp failed"
    chmod 0755 "$TMP" # the postgres user must reach its folder inside
    mkdir -p "$TMP/results"
    REDIS_PORT=$(pj_free_port) && pj_redis_start "$TMP/redis" "$REDIS_PORT" ||
        pj_die "could not start redis"
    PG_PORT=$(pj_free_port) && start_pg || {
        tail -n 20 "$TMP/pg/postgres.log" 2>/dev/null
        pj_die "could not start postgresql"
    }
    pj_say "redis on 127.0.0.1:$REDIS_PORT, postgresql on 127.0.0.1:$PG_PORT, temp folder $TMP"
}

psql_cmd() {
    local db=$1
    shift
    psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" -v ON_ERROR_STOP=1 "$@"
}

redis_url() { echo "redis://127.0.0.1:$REDIS_PORT/$1"; }
conninfo() { echo "host=127.0.0.1 port=$PG_PORT user=postgres dbname=$1"; }

# write_config NAME REDIS_DB READMODELS_DIR [PARALLEL]: $TMP/NAME.yaml for database NAME,
# with parallel_apply PARALLEL (default 1); sets HTTP_PORT.
write_config() {
    HTTP_PORT=$(pj_free_port)
    cat >"$TMP/$1.yaml" <<EOF
redis:
  url: $(redis_url "$2")
postgres:
  conninfo: "$(conninfo "$1")"
http:
  listen: 127.0.0.1:$HTTP_PORT
readmodels: '$3'
batch: $BATCH
block_ms: 1000
log_level: info
stats_interval_s: 0
parallel_apply: ${4:-1}
EOF
}

# The shipped read models plus copies of customer_stats, so that $MODELS read "orders".
write_readmodels() {
    local dir=$1 i
    mkdir -p "$dir"
    cp readmodels/*.yaml "$dir/"
    for i in $(seq 2 $((MODELS - 1))); do
        sed -e "s/^readmodel: customer_stats\$/readmodel: customer_stats_$i/" \
            -e "s/^table: customer_stats\$/table: customer_stats_$i/" \
            readmodels/customer_stats.yaml >"$dir/customer_stats_$i.yaml"
    done
}

environment() {
    cat >"$TMP/results/env.json" <<EOF
{"events": $EVENTS, "batch": $BATCH, "rate": $RATE, "samples": $SAMPLES, "warmup": $WARMUP,
 "models": $MODELS, "parallel": $PARALLEL, "quick": $QUICK, "poison_events": $POISON_EVENTS,
 "poison_only": $POISON_ONLY,
 "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "cpus": $(nproc),
 "load_at_start": "$(cut -d' ' -f1-3 /proc/loadavg)",
 "postgresql": "$(psql_cmd postgres -Atc 'SHOW server_version')",
 "fsync": "$(psql_cmd postgres -Atc 'SHOW fsync')",
 "redis": "$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')"}
EOF
}

# ---- stages ----

# Fills Redis database 0 with the drain feed and database 1 with the latency feed.
generate() {
    pj_say "generating $EVENTS events"
    "$BIN/gen_feed" "$(redis_url 0)" "$EVENTS" >"$TMP/results/feed.json" ||
        pj_die "could not generate the feed"
    "$BIN/gen_feed" "$(redis_url 1)" $((WARMUP + SAMPLES)) >/dev/null ||
        pj_die "could not generate the latency feed"
    LAST_IDS=$($PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%s=%s" % (s, v["last_id"]) for s, v in d["streams"].items() if v["entries"]))' \
        "$TMP/results/feed.json")
}

create_databases() {
    local db
    for db in drain drain_parallel ceiling pyworker lat_shipped lat_models; do
        psql_cmd postgres -c "CREATE DATABASE $db" || pj_die "could not create database \"$db\""
    done
    write_config drain 0 "$ROOT/readmodels/"
    # The ceiling and the Python worker write the same tables, created by the daemon's DDL.
    "$BIN/projector" ddl --config "$TMP/drain.yaml" >"$TMP/ddl.sql" || pj_die "projector ddl failed"
    for db in ceiling pyworker; do
        psql_cmd "$db" -f "$TMP/ddl.sql" || pj_die "could not create the tables in \"$db\""
    done
}

# CPU seconds of the PostgreSQL cluster: the postmaster with the backends it has reaped,
# plus every live child (/proc/PID/stat fields 14-17; the name in parentheses has no space).
pg_cpu() {
    local pm
    pm=$(head -n 1 "$TMP/pg/data/postmaster.pid")
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$pm" -v hz="$(getconf CLK_TCK)" '
        { pid = $1; sub(/^.*\) /, "") }
        pid == pm { t += $12 + $13 + $14 + $15 }
        $2 == pm { t += $12 + $13 }
        END { printf "%.2f\n", t / hz }'
}

# stage NAME COMMAND...: runs one measurement into results/NAME.json after a checkpoint, so
# that no stage pays for the dirty pages of the one before; PostgreSQL's CPU over the
# stage goes to results/NAME.pg.json.
stage() {
    local name=$1 cpu0 t0
    shift
    psql_cmd postgres -c CHECKPOINT
    pj_say "$name"
    cpu0=$(pg_cpu) t0=$(date +%s.%N)
    if ! "$@" >"$TMP/results/$name.json" 2>"$TMP/$name.err"; then
        pj_say "$name FAILED:"
        tail -n 20 "$TMP/$name.err"
        rm -f "$TMP/results/$name.json"
    fi
    awk -v c0="$cpu0" -v c1="$(pg_cpu)" -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN {
        printf "{\"pg_cpu_seconds\": %.2f, \"seconds\": %.3f}\n", c1 - c0, t1 - t0 }' \
        >"$TMP/results/$name.pg.json"
}

# Row count and digest of every read table in every database that drained the feed.
digest_tables() {
    local db t
    for db in drain drain_parallel ceiling pyworker; do
        for t in customers order_read_model customer_stats; do
            echo "$db $t $(psql_cmd "$db" -Atc "SELECT count(*) || ' ' ||
                md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM $t t")"
        done
    done >"$TMP/results/tables.txt"
}

start_daemon() {
    local name=$1 i
    "$BIN/projector" run --config "$TMP/$name.yaml" >"$TMP/$name.log" 2>&1 </dev/null &
    DAEMON_PID=$!
    for i in $(seq 300); do
        curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$HTTP_PORT/healthz" 2>/dev/null &&
            return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$TMP/$name.log"
    pj_say "projector did not answer /healthz"
    return 1
}

stop_daemon() {
    kill -TERM "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=""
}

# latency NAME REDIS_DB READMODELS_DIR: one daemon on an empty database, the latency feed
# replayed into REDIS_DB at $RATE.
latency() {
    local name=$1
    write_config "$name" "$2" "$3"
    start_daemon "$name" || return
    stage "$name" "$BIN/latency" "$(redis_url 1)" "$(redis_url "$2")" "$HTTP_PORT" "$RATE" \
        "$SAMPLES" "$WARMUP" "$DAEMON_PID"
    stop_daemon
}

# The daemon's consumer groups on the drain feed go, so that a second daemon drains it
# again from the start (the ceiling and the Python worker read it their own ways).
drop_daemon_groups() {
    local s rm
    for s in orders customers; do
        for rm in orders customers customer_stats; do
            redis-cli -u "$(redis_url 0)" XGROUP DESTROY "$s" "projector:$rm" >/dev/null
        done
    done
}

# ---- poison ----

# The orders read model (with customers, which it looks names up in) on feeds of orders
# placed only, none, 1 and 100 in 100 of them for customers nobody registered: each drain
# into its own database, Redis databases 2, 3 and 4. Then SIGTERM in the middle of the 1
# and the 100 in 100 feeds (consumer groups destroyed, fresh databases).
poison() {
    local pct db ids
    mkdir -p "$TMP/readmodels_poison"
    cp readmodels/customers.yaml readmodels/orders.yaml "$TMP/readmodels_poison/"
    for pct in 0 1 100 1a 100a; do
        case $pct in 0) db=2 ;; 1) db=3 ;; 100) db=4 ;; 1a) db=5 ;; *) db=6 ;; esac
        "$BIN/gen_feed" "$(redis_url "$db")" "$POISON_EVENTS" 20260115 "$pct" \
            >"$TMP/results/poison_feed_$pct.json" || pj_die "could not generate the poison feed"
        ids=$($PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%s=%s" % (s, v["last_id"]) for s, v in d["streams"].items() if v["entries"]))' \
            "$TMP/results/poison_feed_$pct.json")
        psql_cmd postgres -c "CREATE DATABASE poison_$pct" || pj_die "no database poison_$pct"
        write_config "poison_$pct" "$db" "$TMP/readmodels_poison/"
        # shellcheck disable=SC2086
        DRAIN_LOG="$TMP/poison_$pct.log" stage "poison_$pct" "$BIN/drain" \
            "$TMP/poison_$pct.yaml" "$HTTP_PORT" "$TMP/pg/data" "$TMP/redis/redis.pid" \
            "$POISON_EVENTS" $ids
    done
    for pct in 1 100; do
        db=$((pct == 1 ? 3 : 4))
        for s in orders customers; do
            for rm in orders customers; do
                redis-cli -u "$(redis_url "$db")" XGROUP DESTROY "$s" "projector:$rm" >/dev/null
            done
        done
        psql_cmd postgres -c "CREATE DATABASE poison_stop_$pct" || pj_die "no poison_stop_$pct"
        write_config "poison_stop_$pct" "$db" "$TMP/readmodels_poison/"
        poison_stop "$pct"
    done
}

# poison_stop PCT: starts the daemon on the PCT feed, sends SIGTERM once a third of the
# orders are settled (applied or dead-lettered), and times the exit.
poison_stop() {
    local name="poison_stop_$1" pid n=0 i t0 t1 code
    "$BIN/projector" run --config "$TMP/$name.yaml" >"$TMP/$name.log" 2>&1 &
    pid=$!
    for i in $(seq 1 1200); do
        n=$(psql_cmd "$name" -Atc "SELECT (SELECT count(*) FROM order_read_model) +
            (SELECT count(*) FROM projector.dead_letters)" 2>/dev/null) || n=0
        [ "${n:-0}" -ge $((POISON_EVENTS / 3)) ] && break
        sleep 0.05
    done
    t0=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid"
    code=$?
    t1=$(date +%s.%N)
    awk -v t0="$t0" -v t1="$t1" -v code="$code" -v n="$n" 'BEGIN {
        printf "{\"exit_code\": %d, \"stop_ms\": %.0f, \"settled_at_sigterm\": %d}\n",
            code, (t1 - t0) * 1000, n }' >"$TMP/results/$name.json"
}

# ---- main ----

pj_install_packages
install_python_modules
build_release
start_servers
environment
if [ "$POISON_ONLY" -eq 1 ]; then
    poison
    "$PY" tests/bench/report.py "$TMP/results" "$OUT"
    exit 0
fi
generate
create_databases # writes drain.yaml and sets HTTP_PORT
# shellcheck disable=SC2086
DRAIN_LOG="$TMP/drain.log" stage drain "$BIN/drain" "$TMP/drain.yaml" "$HTTP_PORT" \
    "$TMP/pg/data" "$TMP/redis/redis.pid" "$EVENTS" $LAST_IDS
drop_daemon_groups
write_config drain_parallel 0 "$ROOT/readmodels/" "$PARALLEL"
# shellcheck disable=SC2086
DRAIN_LOG="$TMP/drain_parallel.log" stage drain_parallel "$BIN/drain" "$TMP/drain_parallel.yaml" \
    "$HTTP_PORT" "$TMP/pg/data" "$TMP/redis/redis.pid" "$EVENTS" $LAST_IDS
stage ceiling "$BIN/ceiling" "$(redis_url 0)" "$(conninfo ceiling)" "$BATCH"
stage python "$PY" tests/bench/pyworker.py "$(redis_url 0)" "$(conninfo pyworker)" "$EVENTS" \
    "$BATCH"
digest_tables
latency lat_shipped 2 "$ROOT/readmodels/"
write_readmodels "$TMP/readmodels_models"
latency lat_models 3 "$TMP/readmodels_models"
poison
"$PY" tests/bench/report.py "$TMP/results" "$OUT"
