/* servers.h - private Redis and PostgreSQL servers for the fault and crash suites.
 *
 * A Servers owns one folder with a redis-server and a PostgreSQL cluster on free loopback
 * ports, driven through tests/lib/servers.sh; the shared servers of tests/run.sh are never
 * touched. A watcher process stops both servers when the test process goes, however it goes.
 * The feed those suites publish is shopfeed.h's.
 */
#ifndef PROJECTOR_TEST_SERVERS_H
#define PROJECTOR_TEST_SERVERS_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/util.h"

typedef struct Servers Servers;

typedef enum ServersOp {
    SERVERS_REDIS_STOP,    /* SIGTERM: Redis writes what it holds and exits */
    SERVERS_REDIS_START,   /* same port, folder and options as before */
    SERVERS_REDIS_RESTART, /* stop, then start */
    SERVERS_REDIS_PAUSE,   /* SIGSTOP: connections stay open, nothing answers (a stall) */
    SERVERS_REDIS_RESUME,  /* SIGCONT */
    SERVERS_PG_STOP,       /* pg_ctl stop -m fast */
    SERVERS_PG_START,      /* same port and folder as before */
    SERVERS_PG_RESTART,    /* pg_ctl restart -m fast */
} ServersOp;

/* Starts both servers in a new folder (under PROJECTOR_TEST_TMP, else /tmp), asserting
 * success. With redis_aof, Redis keeps an append-only file synced on every write
 * (appendonly yes, appendfsync always), so a restart keeps streams, groups and pending
 * entries; without it a restart loses everything. */
Servers *servers_start(bool redis_aof);
/* Stops both servers and removes their data; the logs stay in servers_dir(). Returns NULL. */
Servers *servers_free(Servers *s);

/* The folder: redis/ and pg/ with their logs, servers.log with the scripts' output. */
const char *servers_dir(const Servers *s);
/* "redis://127.0.0.1:PORT/0". */
const char *servers_redis_url(const Servers *s);
/* A superuser conninfo for database "postgres". */
const char *servers_pg_conninfo(const Servers *s);
/* A new connection to Redis database 0, asserting success; caller redisFree()s. */
redisContext *servers_redis(const Servers *s);

/* Runs op to completion, asserting success. */
void servers_do(Servers *s, ServersOp op);
/* Starts op in the background and returns at once; servers_end() waits for it. */
pid_t servers_begin(Servers *s, ServersOp op);
/* Waits for an op started by servers_begin(), asserting success. */
void servers_end(Servers *s, pid_t pid);

#endif
