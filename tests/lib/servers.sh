# tests/lib/servers.sh - throwaway Redis and PostgreSQL servers on loopback, for
# tests/run.sh and deploy/local.sh. Each server lives in a folder it owns (pid file, log,
# data); the functions start, probe and stop one server and never touch any other.
# Needs tests/lib/common.sh. PostgreSQL refuses to run as root: as root, its folder is
# chowned to the postgres user and its commands run through runuser.

PJ_PGBIN=${PJ_PGBIN:-/usr/lib/postgresql/15/bin}

# Runs a command as the user that owns the PostgreSQL folder.
pj_as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# pj_pid_alive PIDFILE: true when the file names a live process.
pj_pid_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# pj_redis_start DIR PORT [OPTION...]: redis-server in the background, data and log in
# DIR, nothing persisted unless an OPTION (--appendonly yes) says otherwise.
pj_redis_start() {
    local dir=$1 port=$2 i
    shift 2
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --databases 256 --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" "$@" >/dev/null || { pj_say "could not start redis-server"; return 1; }
    for i in $(seq 100); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    pj_say "redis-server did not answer on port $port (log: $dir/redis.log)"
    tail -n 20 "$dir/redis.log" 2>/dev/null
    return 1
}

pj_redis_running() { pj_pid_alive "$1/redis.pid"; }

# pj_redis_stop DIR: stops the redis-server whose pid file is in DIR, waits for it.
pj_redis_stop() {
    local pid i
    pj_redis_running "$1" || return 0
    pid=$(cat "$1/redis.pid")
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$1/redis.pid"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    rm -f "$1/redis.pid"
}

# pj_pg_prepare HOME: HOME (created, owned by postgres) holds data/ and postgres.log;
# runs initdb unless data/ is already a cluster.
pj_pg_prepare() {
    local home=$1
    mkdir -p "$home"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$home"
    if ! pj_as_pg test -w "$home"; then
        pj_say "the postgres user cannot write \"$home\" (is every parent folder searchable?)"
        return 1
    fi
    [ -f "$home/data/PG_VERSION" ] && return 0
    pj_as_pg "$PJ_PGBIN/initdb" -D "$home/data" -A trust -U postgres -E UTF8 --no-locale \
        --no-sync >"$home/initdb.log" 2>&1 || { pj_say "initdb failed:"; cat "$home/initdb.log"; return 1; }
}

# pj_pg_start HOME PORT [SOCKDIR]: starts the cluster of HOME on 127.0.0.1:PORT and waits
# until it accepts connections. SOCKDIR ('' for none) defaults to HOME.
pj_pg_start() {
    local home=$1 port=$2 sock=${3-$1}
    pj_pg_prepare "$home" || return 1
    pj_as_pg "$PJ_PGBIN/pg_ctl" -D "$home/data" -l "$home/postgres.log" -w -t 60 \
        -o "-p $port -k '$sock' -c listen_addresses=127.0.0.1 -c TimeZone=UTC -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=400" \
        start >/dev/null || {
        pj_say "could not start PostgreSQL on port $port (log: $home/postgres.log)"
        tail -n 20 "$home/postgres.log" 2>/dev/null
        return 1
    }
}

pj_pg_running() {
    [ -f "$1/data/postmaster.pid" ] && pj_as_pg "$PJ_PGBIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

# pj_pg_port HOME: the port of the running cluster (line 4 of postmaster.pid).
pj_pg_port() { sed -n 4p "$1/data/postmaster.pid" 2>/dev/null; }

pj_pg_stop() {
    pj_pg_running "$1" || return 0
    pj_as_pg "$PJ_PGBIN/pg_ctl" -D "$1/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
        pj_as_pg "$PJ_PGBIN/pg_ctl" -D "$1/data" -m immediate -w stop >/dev/null 2>&1
}
