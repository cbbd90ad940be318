#!/usr/bin/env bash
# deploy/local.sh - the local run: Redis, PostgreSQL and the projector daemon on loopback,
# everything in .local/ inside the checkout (nothing else is written outside it, apart
# from the Debian packages it installs when missing).
#   bash deploy/local.sh         build, start (or reuse) the servers, (re)start projector,
#                                publish deploy/sample/feed.jsonl once, show the read tables
#   bash deploy/local.sh stop    stop projector, Redis and PostgreSQL
#   bash deploy/local.sh clean   stop, then delete .local/
# Ports: PROJECTOR_REDIS_PORT, PROJECTOR_PG_PORT and PROJECTOR_HTTP_PORT when set (the run
# stops if one is taken); otherwise 56379, 55432 and 58080, or a free port when taken.
set -u -o pipefail

PJ_PROG=local.sh
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=tests/lib/common.sh
. tests/lib/common.sh
# shellcheck source=tests/lib/servers.sh
. tests/lib/servers.sh

LOCAL="$ROOT/.local"
BIN="$ROOT/build/gcc/projector"
FEED_BIN="$ROOT/build/gcc/feed"
CONFIG="$LOCAL/projector.yaml"
PIDFILE="$LOCAL/projector.pid"
LOG="$LOCAL/projector.log"
DB=projector
TABLES=(customers order_read_model customer_stats)

# pick_port VAR DEFAULT: the port $VAR names (which must be free), else DEFAULT or a free one.
pick_port() {
    local want=${!1:-}
    if [ -z "$want" ]; then
        pj_free_port "$2"
        return
    fi
    [[ "$want" =~ ^[1-9][0-9]{0,4}$ ]] && [ "$want" -le 65535 ] ||
        pj_die "$1=\"$want\" is not a port number"
    [ "$(pj_free_port "$want")" = "$want" ] || pj_die "port $want ($1) is taken"
    echo "$want"
}

stop_projector() {
    local pid i
    pj_pid_alive "$PIDFILE" || { rm -f "$PIDFILE"; return 0; }
    pid=$(cat "$PIDFILE")
    pj_say "stopping projector (pid $pid)"
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    rm -f "$PIDFILE"
}

stop_all() {
    stop_projector
    pj_redis_running "$LOCAL/redis" && pj_say "stopping redis"
    pj_redis_stop "$LOCAL/redis"
    pj_pg_running "$LOCAL/pg" && pj_say "stopping postgresql"
    pj_pg_stop "$LOCAL/pg"
}

build_binaries() {
    mkdir -p build
    pj_say "building build/gcc (log: build/gcc.log)"
    if ! { cmake -S . -B build/gcc -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=gcc &&
           cmake --build build/gcc -j2 --target projector feed; } >build/gcc.log 2>&1; then
        grep -E 'error|Error' build/gcc.log | head -n 30
        pj_die "the build failed (log: build/gcc.log)"
    fi
}

# Sets REDIS_PORT: the running server's, or a new one on 56379 (or a free port).
start_redis() {
    if pj_redis_running "$LOCAL/redis" && [ -s "$LOCAL/redis.port" ]; then
        REDIS_PORT=$(cat "$LOCAL/redis.port")
        pj_say "reusing redis on 127.0.0.1:$REDIS_PORT"
        return
    fi
    REDIS_PORT=$(pick_port PROJECTOR_REDIS_PORT 56379) || exit 1
    # Persisted, so that the streams outlive a stop as the read tables do.
    pj_redis_start "$LOCAL/redis" "$REDIS_PORT" --appendonly yes || pj_die "could not start redis"
    echo "$REDIS_PORT" >"$LOCAL/redis.port"
    pj_say "redis on 127.0.0.1:$REDIS_PORT"
}

# Sets PG_PORT: the running cluster's, or a new one on 55432 (or a free port).
start_postgres() {
    if pj_pg_running "$LOCAL/pg"; then
        PG_PORT=$(pj_pg_port "$LOCAL/pg")
        pj_say "reusing postgresql on 127.0.0.1:$PG_PORT"
    else
        PG_PORT=$(pick_port PROJECTOR_PG_PORT 55432) || exit 1
        # No Unix socket: the checkout's path may be longer than a socket path can be.
        pj_pg_start "$LOCAL/pg" "$PG_PORT" "" || pj_die "could not start postgresql"
        pj_say "postgresql on 127.0.0.1:$PG_PORT"
    fi
    if [ -z "$(psql_cmd postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
        psql_cmd postgres -qc "CREATE DATABASE $DB" || pj_die "could not create database \"$DB\""
    fi
}

psql_cmd() {
    local db=$1
    shift
    psql -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$db" -v ON_ERROR_STOP=1 -P pager=off "$@"
}

write_config() {
    HTTP_PORT=$(pick_port PROJECTOR_HTTP_PORT 58080) || exit 1
    cat >"$CONFIG" <<EOF
# Written by deploy/local.sh; rewritten on every start.
redis:
  url: redis://127.0.0.1:$REDIS_PORT/0
postgres:
  conninfo: "host=127.0.0.1 port=$PG_PORT user=postgres dbname=$DB"
  schema: projector
http:
  listen: 127.0.0.1:$HTTP_PORT
readmodels: '$ROOT/readmodels/'
batch: 1000
block_ms: 1000
log_level: info
stats_interval_s: 60
EOF
}

start_projector() {
    local i
    "$BIN" migrate --config "$CONFIG" || pj_die "projector migrate failed"
    pj_say "starting projector (log: $LOG)"
    nohup "$BIN" run --config "$CONFIG" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for i in $(seq 300); do
        curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$HTTP_PORT/healthz" 2>/dev/null && return 0
        pj_pid_alive "$PIDFILE" || break
        sleep 0.1
    done
    tail -n 30 "$LOG"
    pj_die "projector did not answer /healthz on 127.0.0.1:$HTTP_PORT"
}

# Publishes the sample feed unless this Redis already has it (a marker key says so).
publish_sample() {
    if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" SET projector:local:sample 1 NX)" != OK ]; then
        pj_say "sample feed already published (bash deploy/local.sh clean to start over)"
        return
    fi
    "$FEED_BIN" "redis://127.0.0.1:$REDIS_PORT/0" deploy/sample/feed.jsonl || {
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" DEL projector:local:sample >/dev/null
        pj_die "could not publish deploy/sample/feed.jsonl"
    }
}

# True when every read model is running with nothing behind (the /lag JSON on stdin).
lag_caught_up() {
    python3 -c '
import json, sys
doc = json.load(sys.stdin)
models = doc.get("readmodels", [])
ok = models and all(m.get("state") == "running" and
                    all(s.get("entries_behind") == 0 for s in m.get("streams", []))
                    for m in models)
sys.exit(0 if ok else 1)'
}

wait_caught_up() {
    local i
    for i in $(seq 600); do
        curl -fsS --max-time 2 "http://127.0.0.1:$HTTP_PORT/lag" 2>/dev/null | lag_caught_up && return 0
        pj_pid_alive "$PIDFILE" || break
        sleep 0.1
    done
    curl -sS --max-time 2 "http://127.0.0.1:$HTTP_PORT/lag"
    echo
    tail -n 30 "$LOG"
    pj_die "the read models did not catch up within 60 s"
}

show_results() {
    local t
    echo
    for t in "${TABLES[@]}"; do
        echo "== $t"
        psql_cmd "$DB" -c "SELECT * FROM $t ORDER BY 1" || pj_say "could not read table \"$t\""
    done
    echo "== GET /lag"
    curl -fsS --max-time 5 "http://127.0.0.1:$HTTP_PORT/lag" | python3 -m json.tool
    cat <<EOF

projector is running (pid $(cat "$PIDFILE")), caught up:
  lag:       curl http://127.0.0.1:$HTTP_PORT/lag
  metrics:   curl http://127.0.0.1:$HTTP_PORT/metrics
  tables:    psql -h 127.0.0.1 -p $PG_PORT -U postgres $DB
  redis:     redis-cli -p $REDIS_PORT
  log:       $LOG
  config:    $CONFIG
stop with:   bash deploy/local.sh stop    (clean also deletes .local/)
EOF
}

start() {
    pj_install_packages
    build_binaries
    mkdir -p "$LOCAL"
    # The postgres user must reach .local/pg.
    chmod 0755 "$LOCAL"
    start_redis
    start_postgres
    # Restart the daemon so that it runs the binary and config just built.
    stop_projector
    write_config
    start_projector
    publish_sample
    wait_caught_up
    show_results
}

case "${1:-start}" in
    start) start ;;
    stop) stop_all ;;
    clean) stop_all; rm -rf "$LOCAL"; pj_say "removed .local/" ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) pj_die "unknown command \"$1\" (expected start, stop or clean)" ;;
esac
