/* servers.h - private Redis and PostgreSQL servers for the fault suites, and the reference
 * shop feed those suites drain and check.
 *
 * A Servers owns one folder with a redis-server and a PostgreSQL cluster on free loopback
 * ports, driven through tests/lib/servers.sh; the shared servers of tests/run.sh are never
 * touched. A watcher process stops both servers when the test process goes, however it goes.
 *
 * A ShopFeed is a seeded, deterministic list of customer and order events for the shipped
 * read models. The tables they must produce are computed here from the list alone, never
 * through the daemon's code, after the whole feed or at the point a checkpoint names.
 */
#ifndef PROJECTOR_TEST_SERVERS_H
#define PROJECTOR_TEST_SERVERS_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/util.h"

/* ---- private servers ---- */

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

/* ---- the reference shop feed ---- */

typedef enum ShopStream { SHOP_ORDERS, SHOP_CUSTOMERS, SHOP_NSTREAMS } ShopStream;

typedef enum ShopKind {
    SHOP_REGISTERED, /* customers: customer.registered */
    SHOP_RENAMED,    /* customers: customer.renamed, fanned out to the customer's orders */
    SHOP_PLACED,     /* orders: order.placed */
    SHOP_ITEM_ADDED, /* orders: order.item_added */
    SHOP_CONFIRMED,  /* orders: order.confirmed */
    SHOP_CANCELLED,  /* orders: order.cancelled, deletes the order's row */
} ShopKind;

typedef struct ShopEvent {
    ShopKind kind;
    int customer;
    int order;   /* -1 for customer events */
    int value;   /* placed: total in cents; item_added: qty; registered, renamed: name number */
    int lines;   /* placed: number of order lines */
    char id[48]; /* entry ID once published, else "" */
} ShopEvent;

typedef struct ShopFeed {
    ShopEvent *events; /* in publishing order; occurred_at grows by 1 s per event */
    size_t count;
    size_t published[SHOP_NSTREAMS]; /* per stream: its first events that are in Redis */
    int customers;
    int orders;
} ShopFeed;

/* Customers register first, all of them; then orders are placed, given items, confirmed
 * and cancelled at random, with an occasional rename, until there are `events` in all. */
ShopFeed *shop_feed_new(unsigned seed, int customers, size_t events);
ShopFeed *shop_feed_free(ShopFeed *f);

ShopStream shop_event_stream(const ShopEvent *e);
/* How many of the first n events are on stream s. */
size_t shop_feed_count(const ShopFeed *f, ShopStream s, size_t n);
/* XADDs, in order, every event before index upto not published yet, recording their IDs;
 * asserts success. Orders are sent mostly as envelopes and sometimes as flat fields,
 * customers as flat fields. */
void shop_feed_publish(ShopFeed *f, redisContext *c, size_t upto);
/* The same for the events of stream s only. What a read table must hold depends only on
 * the order within each stream, so one stream may run ahead of the other. */
void shop_feed_publish_stream(ShopFeed *f, redisContext *c, ShopStream s, size_t upto);
/* The ID of the last published event of stream s, or NULL when none is published. */
const char *shop_feed_last_id(const ShopFeed *f, ShopStream s);

/* Compares every read table, and the checkpoints' applied_total, with the expected state.
 * final: every published event is settled (checkpoints at the last IDs) and the orders'
 * copied customer_name is checked too. Otherwise each read model is expected exactly at
 * its own checkpoints (read from projector.checkpoints), where the copied names depend
 * on timing and are left out. Returns the number of differences and appends a description
 * of the first few to report. */
long shop_feed_diff(const ShopFeed *f, PGconn *pg, bool final, StrBuf *report);

/* Asks the daemon's /wait, on port, for the last published entry of each stream, again on
 * 408, until timeout_ms has passed. Returns true when both were settled. */
bool shop_feed_wait(const ShopFeed *f, int port, int timeout_ms);

#endif
