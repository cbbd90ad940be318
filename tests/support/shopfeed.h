/* shopfeed.h - the reference shop feed that the fault and crash suites drain and check.
 *
 * A ShopFeed is a seeded, deterministic list of customer and order events for the shipped
 * read models. The tables they must produce are computed from the list alone, never
 * through the daemon's code, after the whole feed or at the point a checkpoint names.
 */
#ifndef PROJECTOR_TEST_SHOPFEED_H
#define PROJECTOR_TEST_SHOPFEED_H

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/util.h"

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
