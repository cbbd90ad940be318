/* gen_feed.c - `gen_feed REDIS_URL EVENTS [SEED [POISON]]`: the benchmark's deterministic
 * order feed.
 *
 * Owns the shape of the feed: customers registered and renamed (stream `customers`, flat
 * fields) and orders placed with 1-3 items, items added, confirmed, cancelled (stream
 * `orders`, envelopes), interleaved over a small pool of open orders so that one batch
 * touches an order several times. Entry IDs are explicit, "BASE-n" with n the event's
 * position in the whole feed, so the two streams can be merged back into feed order.
 * With POISON (0-100), the poison stage's feed instead: the first customers, then orders
 * placed and nothing else, POISON in every 100 of them for customers nobody registered (the
 * orders read model's lookup of the name finds nothing for its NOT NULL column); with
 * POISON written "Na", those N have the amount "abc" instead (numeric refuses it: nothing
 * the daemon can tell before PostgreSQL does).
 * Prints one JSON line: counts per stream and type, last IDs, seconds.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/config.h"
#include "base/util.h"
#include "os/now.h"

#define GEN_OPEN_ORDERS 256          /* orders in progress at any time */
#define GEN_FIRST_CUSTOMERS 20       /* registered before the first order */
#define GEN_CHUNK 1000               /* XADDs per pipelined round trip */
#define GEN_ARGS_MAX 19              /* XADD key id + 8 field/value pairs */
#define GEN_START_MS 1768435200000LL /* 2026-01-15T00:00:00Z: occurred_at of event 0 */
#define GEN_STEP_MS 50               /* occurred_at advances this much per event */
#define GEN_SKUS 40

enum { T_REGISTERED, T_RENAMED, T_PLACED, T_ITEM_ADDED, T_CONFIRMED, T_CANCELLED, T_COUNT };

static const char *const gen_type_names[T_COUNT] = {"customer.registered", "customer.renamed",
                                                    "order.placed",        "order.item_added",
                                                    "order.confirmed",     "order.cancelled"};

static const char *const gen_first[] = {"Alice", "Bob",  "Chloé", "David", "Emma",  "Farid",
                                        "Grace", "Hugo", "Inès",  "Jonas", "Kenji", "Léa"};
static const char *const gen_last[] = {"Martin", "Stone",  "Durand",   "Nakamura", "Okafor",
                                       "Rossi",  "Müller", "Lefebvre", "Silva",    "Novak"};

typedef struct Order {
    long id;
    long customer;
    int version;         /* of the last event emitted */
    signed char step[8]; /* what happens next (T_ITEM_ADDED, T_CONFIRMED, T_CANCELLED); -1 ends */
    int next;
} Order;

typedef struct Gen {
    uint64_t rng;
    uint64_t base_ms; /* the ms part of every entry ID */
    long events;      /* emitted so far: the next event's position */
    long customers;
    int *customer_version; /* per customer: of its last event */
    size_t customers_cap;
    Order open[GEN_OPEN_ORDERS];
    int nopen;
    long next_order;
    int poison;          /* of every 100 orders placed, bad ones; -1: the order story */
    bool poison_amounts; /* the bad ones have a bad amount, not an unknown customer */
    long poisoned;
    long by_type[T_COUNT];
    long on_customers, on_orders;
    char last_customers[48], last_orders[48];
    /* The entry being built: XADD's arguments point into the buffers below. */
    const char *argv[GEN_ARGS_MAX];
    int argc;
    char id[48], ts[32], event_id[48], version[16], aggregate[32];
    StrBuf payload, metadata, envelope;
} Gen;

/* ---- deterministic randomness (splitmix64) ---- */

static uint64_t gen_rand(Gen *g)
{
    uint64_t z = (g->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static long gen_below(Gen *g, long n)
{
    return (long)(gen_rand(g) % (uint64_t)n);
}

/* ---- one entry ---- */

/* Starts the entry of event g->events on stream: ID, time, event ID. */
static void gen_begin(Gen *g, const char *stream)
{
    g->argc = 0;
    g->argv[g->argc++] = "XADD";
    g->argv[g->argc++] = stream;
    snprintf(g->id, sizeof g->id, "%" PRIu64 "-%ld", g->base_ms, g->events + 1);
    g->argv[g->argc++] = g->id;
    format_wall_ms(GEN_START_MS + (int64_t)g->events * GEN_STEP_MS, g->ts, sizeof g->ts);
    snprintf(g->event_id, sizeof g->event_id, "b0000000-0000-4000-8000-%012lx", g->events + 1);
    strbuf_reset(&g->payload);
    strbuf_reset(&g->metadata);
    strbuf_reset(&g->envelope);
}

static void gen_field(Gen *g, const char *name, const char *value)
{
    if (g->argc + 2 > GEN_ARGS_MAX)
        abort();
    g->argv[g->argc++] = name;
    g->argv[g->argc++] = value;
}

/* A customer's current name: each rename picks another last name. */
static void gen_name(StrBuf *sb, long customer, int version)
{
    strbuf_appendf(sb, "%s %s", gen_first[customer % (long)ARRAY_SIZE(gen_first)],
                   gen_last[(customer / 3 + version) % (long)ARRAY_SIZE(gen_last)]);
}

/* customer.registered or customer.renamed of customer c, as flat fields. */
static void gen_customer_entry(Gen *g, int type, long c)
{
    int version = g->customer_version[c];

    gen_begin(g, "customers");
    snprintf(g->version, sizeof g->version, "%d", version);
    snprintf(g->aggregate, sizeof g->aggregate, "c-%ld", c);
    strbuf_appendf(&g->payload, "{\"customerId\":\"c-%ld\",\"name\":\"", c);
    gen_name(&g->payload, c, version);
    strbuf_append(&g->payload, "\"");
    /* One customer in five registers without an email: the column is nullable. */
    if (type == T_REGISTERED && c % 5 != 4)
        strbuf_appendf(&g->payload, ",\"email\":\"c%ld@example.com\"", c);
    strbuf_append(&g->payload, "}");
    strbuf_appendf(&g->metadata, "{\"correlationId\":\"corr-c-%ld-%d\",\"userId\":\"u-c-%ld\"}", c,
                   version, c);
    gen_field(g, "type", gen_type_names[type]);
    gen_field(g, "event_id", g->event_id);
    gen_field(g, "aggregate_id", g->aggregate);
    gen_field(g, "aggregate_type", "Customer");
    gen_field(g, "version", g->version);
    gen_field(g, "occurred_at", g->ts);
    gen_field(g, "payload", g->payload.buf);
    gen_field(g, "metadata", g->metadata.buf);
    g->on_customers++;
    snprintf(g->last_customers, sizeof g->last_customers, "%s", g->id);
}

/* An order event as one envelope field; g->payload already holds the payload. */
static void gen_order_entry(Gen *g, int type, const Order *o)
{
    strbuf_appendf(&g->envelope,
                   "{\"eventId\":\"%s\",\"eventType\":\"%s\",\"aggregateId\":\"o-%ld\","
                   "\"aggregateType\":\"Order\",\"timestamp\":\"%s\",\"version\":%d,"
                   "\"metadata\":{\"correlationId\":\"corr-o-%ld\",\"causationId\":\"cmd-%ld\","
                   "\"userId\":\"u-c-%ld\"},\"payload\":%s}",
                   g->event_id, gen_type_names[type], o->id, g->ts, o->version, o->id,
                   g->events + 1, o->customer, g->payload.buf);
    gen_field(g, "event", g->envelope.buf);
    g->on_orders++;
    snprintf(g->last_orders, sizeof g->last_orders, "%s", g->id);
}

static long gen_price_cents(int sku)
{
    return 199 + (long)sku * 737 % 9800;
}

/* The members of one item, "sku","qty","unitPrice"; returns qty * price in cents. */
static long gen_item(Gen *g, StrBuf *sb)
{
    int sku = (int)gen_below(g, GEN_SKUS), qty = 1 + (int)gen_below(g, 3);
    long cents = gen_price_cents(sku);

    strbuf_appendf(sb, "\"sku\":\"SKU-%03d\",\"qty\":%d,\"unitPrice\":\"%ld.%02ld\"", sku, qty,
                   cents / 100, cents % 100);
    return cents * qty;
}

/* ---- the story ---- */

static void gen_register(Gen *g)
{
    long c = g->customers++;

    xgrow((void **)&g->customer_version, &g->customers_cap, (size_t)g->customers,
          sizeof *g->customer_version);
    g->customer_version[c] = 1;
    gen_customer_entry(g, T_REGISTERED, c);
    g->by_type[T_REGISTERED]++;
}

static void gen_rename(Gen *g)
{
    long c = gen_below(g, g->customers);

    g->customer_version[c]++;
    gen_customer_entry(g, T_RENAMED, c);
    g->by_type[T_RENAMED]++;
}

/* What happens to an order after it is placed: 0-3 items added, then its fate. */
static void gen_script(Gen *g, Order *o)
{
    int n = 0, adds = (int)gen_below(g, 4);
    long fate = gen_below(g, 100);

    while (adds-- > 0)
        o->step[n++] = T_ITEM_ADDED;
    /* 78% confirmed, 12% cancelled, 5% confirmed then cancelled, 5% left pending. */
    if (fate < 78 || (fate >= 90 && fate < 95))
        o->step[n++] = T_CONFIRMED;
    if (fate >= 78 && fate < 95)
        o->step[n++] = T_CANCELLED;
    o->step[n] = -1;
    o->next = 0;
}

/* Places an order; a bad one is for a customer nobody registered (or, poison_amounts, has
 * an amount that is not a number), and has no story. */
static void gen_place(Gen *g, bool bad)
{
    bool ghost = bad && !g->poison_amounts, nan = bad && g->poison_amounts;
    Order *o = &g->open[g->nopen];
    StrBuf items = {0};
    int nitems = 1 + (int)gen_below(g, 3);
    long cents = 0;

    o->id = ++g->next_order;
    o->customer = gen_below(g, g->customers);
    o->version = 1;
    for (int i = 0; i < nitems; i++) {
        strbuf_append(&items, i > 0 ? ",{" : "[{");
        cents += gen_item(g, &items);
        strbuf_append(&items, "}");
    }
    strbuf_append(&items, "]");
    gen_script(g, o);
    gen_begin(g, "orders");
    strbuf_appendf(&g->payload,
                   "{\"orderId\":\"o-%ld\",\"customerId\":\"%s-%ld\",\"items\":%s,"
                   "\"total\":{\"amount\":\"%s%ld.%02ld\",\"currency\":\"EUR\"}}",
                   o->id, ghost ? "ghost" : "c", ghost ? o->id : o->customer, items.buf,
                   nan ? "abc" : "", cents / 100, cents % 100);
    strbuf_done(&items);
    gen_order_entry(g, T_PLACED, o);
    g->by_type[T_PLACED]++;
    if (o->step[0] >= 0 && g->poison < 0)
        g->nopen++; /* else it stays pending and never comes back */
}

/* The next step of a random open order; an order whose script ends leaves the pool. */
static void gen_advance(Gen *g)
{
    int i = (int)gen_below(g, g->nopen);
    Order *o = &g->open[i];
    int type = o->step[o->next++];
    StrBuf *p = &g->payload;

    o->version++;
    gen_begin(g, "orders");
    if (type == T_ITEM_ADDED) {
        strbuf_appendf(p, "{\"orderId\":\"o-%ld\",", o->id);
        (void)gen_item(g, p);
        strbuf_append(p, "}");
    } else if (type == T_CONFIRMED) {
        strbuf_appendf(p, "{\"orderId\":\"o-%ld\"}", o->id);
    } else {
        strbuf_appendf(p, "{\"orderId\":\"o-%ld\",\"customerId\":\"c-%ld\",\"reason\":\"%s\"}",
                       o->id, o->customer, "customer_request");
    }
    gen_order_entry(g, type, o);
    g->by_type[type]++;
    if (o->step[o->next] < 0)
        g->open[i] = g->open[--g->nopen];
}

/* Builds the next event of the feed into g->argv. */
static void gen_next(Gen *g)
{
    long r = gen_below(g, 1000);

    if (g->poison >= 0 && g->customers >= GEN_FIRST_CUSTOMERS) {
        bool ghost = g->next_order % 100 < g->poison;
        g->poisoned += ghost;
        gen_place(g, ghost);
    } else if (g->customers < GEN_FIRST_CUSTOMERS || r < 30)
        gen_register(g);
    else if (r < 50)
        gen_rename(g);
    else if (g->nopen < GEN_OPEN_ORDERS)
        gen_place(g, false);
    else
        gen_advance(g);
    g->events++;
}

/* ---- Redis ---- */

static redisContext *gen_connect(const char *url)
{
    RedisAddr addr = {0};
    PjError err = {0};
    redisContext *c;
    redisReply *reply;

    if (redis_addr_parse(url, &addr, &err) != 0) {
        fprintf(stderr, "gen_feed: %s\n", err.message);
        exit(2);
    }
    c = redisConnect(addr.host, addr.port);
    if (c == NULL || c->err != 0) {
        fprintf(stderr, "gen_feed: could not connect to Redis at %s:%d\n", addr.host, addr.port);
        exit(1);
    }
    reply = addr.password == NULL ? NULL
            : addr.user != NULL   ? redisCommand(c, "AUTH %s %s", addr.user, addr.password)
                                  : redisCommand(c, "AUTH %s", addr.password);
    freeReplyObject(reply);
    reply = redisCommand(c, "SELECT %d", addr.db);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "gen_feed: could not select database %d\n", addr.db);
        exit(1);
    }
    freeReplyObject(reply);
    redis_addr_done(&addr);
    return c;
}

/* Reads n queued XADD replies; any error ends the program. */
static void gen_collect(redisContext *c, int n)
{
    for (int i = 0; i < n; i++) {
        redisReply *reply = NULL;
        if (redisGetReply(c, (void **)&reply) != REDIS_OK) {
            fprintf(stderr, "gen_feed: XADD failed: %s\n", c->errstr);
            exit(1);
        }
        if (reply->type != REDIS_REPLY_STRING) {
            fprintf(stderr, "gen_feed: XADD failed: %s\n",
                    reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
            exit(1);
        }
        freeReplyObject(reply);
    }
}

static void gen_queue(redisContext *c, Gen *g)
{
    size_t lens[GEN_ARGS_MAX];

    for (int i = 0; i < g->argc; i++)
        lens[i] = strlen(g->argv[i]);
    if (redisAppendCommandArgv(c, g->argc, g->argv, lens) != REDIS_OK) {
        fprintf(stderr, "gen_feed: could not queue XADD: %s\n", c->errstr);
        exit(1);
    }
}

static void gen_print(const Gen *g, double seconds)
{
    printf("{\"events\":%ld,\"seconds\":%.3f,\"streams\":{\"orders\":{\"entries\":%ld,"
           "\"last_id\":\"%s\"},\"customers\":{\"entries\":%ld,\"last_id\":\"%s\"}},\"types\":{",
           g->events, seconds, g->on_orders, g->last_orders, g->on_customers, g->last_customers);
    for (int t = 0; t < T_COUNT; t++)
        printf("%s\"%s\":%ld", t > 0 ? "," : "", gen_type_names[t], g->by_type[t]);
    printf("},\"customers\":%ld,\"orders\":%ld,\"poisoned\":%ld}\n", g->customers, g->next_order,
           g->poisoned);
}

int main(int argc, char **argv)
{
    Gen g = {0};
    redisContext *c;
    long events;
    int queued = 0;
    int64_t t0;

    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: gen_feed REDIS_URL EVENTS [SEED [POISON]]\n");
        return 2;
    }
    events = atol(argv[2]);
    g.rng = argc > 3 ? strtoull(argv[3], NULL, 10) : 20260115;
    char *kind = NULL;
    g.poison = argc > 4 ? (int)strtol(argv[4], &kind, 10) : -1;
    g.poison_amounts = argc > 4 && strcmp(kind, "a") == 0;
    if (argc > 4 && (g.poison < 0 || g.poison > 100 || kind == argv[4] ||
                     (*kind != '\0' && !g.poison_amounts))) {
        fprintf(stderr, "gen_feed: POISON must be 0 to 100 (orders of every 100), \"a\" after "
                        "it for bad amounts\n");
        return 2;
    }
    if (events < 1) {
        fprintf(stderr, "gen_feed: EVENTS must be a positive number\n");
        return 2;
    }
    c = gen_connect(argv[1]);
    /* Explicit IDs need empty streams; the feed replaces whatever was there. */
    freeReplyObject(redisCommand(c, "DEL orders customers"));
    g.base_ms = (uint64_t)now_wall_ms();
    t0 = now_monotonic_ms();
    while (g.events < events) {
        gen_next(&g);
        gen_queue(c, &g);
        if (++queued == GEN_CHUNK) {
            gen_collect(c, queued);
            queued = 0;
        }
    }
    gen_collect(c, queued);
    gen_print(&g, (double)(now_monotonic_ms() - t0) / 1e3);
    strbuf_done(&g.payload);
    strbuf_done(&g.metadata);
    strbuf_done(&g.envelope);
    free(g.customer_version);
    redisFree(c);
    return 0;
}
