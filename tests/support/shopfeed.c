/* shopfeed.c - the reference shop feed: a seeded list of customer and order events for
 * the shipped read models, publishing it to Redis, and the read tables and checkpoints it
 * must produce, compared with PostgreSQL. The servers it runs against are servers.c's.
 *
 * The expectations come from a plain walk over the event list, never from the daemon's
 * expression or SQL code, so a test compares two independent computations.
 */
#include "shopfeed.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "os/now.h"
#include "testenv.h"

#define SHOP_EPOCH_S 1768435200 /* 2026-01-15T00:00:00Z: event i occurred i seconds later */
#define SHOP_PIPELINE 256       /* XADDs sent before their replies are read */
#define SHOP_REPORT_MAX 12      /* differences described in a report */
#define SHOP_BIT(kind) (1u << (kind))

static const char *const shop_stream_names[SHOP_NSTREAMS] = {"orders", "customers"};
static const char *const shop_type_names[] = {"customer.registered", "customer.renamed",
                                              "order.placed",        "order.item_added",
                                              "order.confirmed",     "order.cancelled"};
/* Quotes and non-ASCII letters travel through JSON, Redis and SQL parameters as data. */
static const char *const shop_first_names[] = {"Ada",          "Zo\xc3\xab", "Se\xc3\xa1n O'Brien",
                                               "Chlo\xc3\xa9", "Bob",        "Zhang Wei"};

/* Which events each read model's checkpoint counts as applied, per stream. */
static const struct {
    const char *readmodel;
    ShopStream stream;
    unsigned handled; /* SHOP_BIT of every kind the read model applies */
} shop_positions[] = {
    {"customers", SHOP_CUSTOMERS, SHOP_BIT(SHOP_REGISTERED) | SHOP_BIT(SHOP_RENAMED)},
    {"customer_stats", SHOP_ORDERS, SHOP_BIT(SHOP_PLACED) | SHOP_BIT(SHOP_CANCELLED)},
    {"orders", SHOP_ORDERS,
     SHOP_BIT(SHOP_PLACED) | SHOP_BIT(SHOP_ITEM_ADDED) | SHOP_BIT(SHOP_CONFIRMED) |
         SHOP_BIT(SHOP_CANCELLED)},
    {"orders", SHOP_CUSTOMERS, SHOP_BIT(SHOP_RENAMED)},
};
#define SHOP_NPOSITIONS ARRAY_SIZE(shop_positions)
#define SHOP_POS_CUSTOMERS 0
#define SHOP_POS_STATS 1
#define SHOP_POS_ORDERS 2

ShopStream shop_event_stream(const ShopEvent *e)
{
    return e->kind == SHOP_REGISTERED || e->kind == SHOP_RENAMED ? SHOP_CUSTOMERS : SHOP_ORDERS;
}

size_t shop_feed_count(const ShopFeed *f, ShopStream s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n && i < f->count; i++)
        count += shop_event_stream(&f->events[i]) == s;
    return count;
}

/* ---- generating ---- */

static void shop_add(ShopFeed *f, ShopKind kind, int customer, int order, int value, int lines)
{
    f->events[f->count++] = (ShopEvent){
        .kind = kind, .customer = customer, .order = order, .value = value, .lines = lines};
}

/* The state the generator needs to keep its events meaningful. */
typedef struct ShopGen {
    unsigned seed;
    int *renames;    /* per customer: renames so far */
    int *owner;      /* per order: its customer */
    bool *confirmed; /* per order */
    int *open;       /* orders placed and not cancelled */
    int nopen;
} ShopGen;

static int shop_rand(ShopGen *g, int n)
{
    return (int)((unsigned)rand_r(&g->seed) % (unsigned)n);
}

static void shop_place(ShopFeed *f, ShopGen *g)
{
    int o = f->orders++, c = shop_rand(g, f->customers);
    g->owner[o] = c;
    g->open[g->nopen++] = o;
    shop_add(f, SHOP_PLACED, c, o, 100 + shop_rand(g, 99900), 1 + shop_rand(g, 4));
}

/* r in 0..999 picks what happens to an open order. */
static void shop_follow_up(ShopFeed *f, ShopGen *g, int r)
{
    int k = shop_rand(g, g->nopen), o = g->open[k], c = g->owner[o];
    if (r < 600 || (r < 800 && g->confirmed[o])) {
        shop_add(f, SHOP_ITEM_ADDED, c, o, 1 + shop_rand(g, 3), 0);
    } else if (r < 800) {
        g->confirmed[o] = true;
        shop_add(f, SHOP_CONFIRMED, c, o, 0, 0);
    } else {
        shop_add(f, SHOP_CANCELLED, c, o, 0, 0);
        g->open[k] = g->open[--g->nopen];
    }
}

ShopFeed *shop_feed_new(unsigned seed, int customers, size_t events)
{
    cr_assert(customers > 0 && customers < 100 && (size_t)customers < events);
    ShopFeed *f = xcalloc(1, sizeof *f);
    ShopGen g = {.seed = seed};
    f->events = xcalloc(events, sizeof *f->events);
    f->customers = customers;
    g.renames = xcalloc((size_t)customers, sizeof *g.renames);
    g.owner = xcalloc(events, sizeof *g.owner);
    g.confirmed = xcalloc(events, sizeof *g.confirmed);
    g.open = xcalloc(events, sizeof *g.open);
    for (int c = 0; c < customers; c++)
        shop_add(f, SHOP_REGISTERED, c, -1, 0, 0);
    while (f->count < events) {
        int r = shop_rand(&g, 1000);
        if (r < 2) {
            int c = shop_rand(&g, customers);
            shop_add(f, SHOP_RENAMED, c, -1, ++g.renames[c], 0);
        } else if (g.nopen < 8 || r < 350) {
            shop_place(f, &g);
        } else {
            shop_follow_up(f, &g, r);
        }
    }
    free(g.renames);
    free(g.owner);
    free(g.confirmed);
    free(g.open);
    return f;
}

ShopFeed *shop_feed_free(ShopFeed *f)
{
    if (f != NULL) {
        free(f->events);
        free(f);
    }
    return NULL;
}

/* ---- publishing ---- */

static void shop_name(StrBuf *sb, int customer, int number)
{
    strbuf_appendf(sb, "%s %02d", shop_first_names[customer % (int)ARRAY_SIZE(shop_first_names)],
                   customer);
    if (number > 0)
        strbuf_appendf(sb, " (renamed %d)", number);
}

static void shop_payload(StrBuf *sb, const ShopEvent *e)
{
    char order[16], customer[8];
    snprintf(order, sizeof order, "o-%06d", e->order);
    snprintf(customer, sizeof customer, "c-%02d", e->customer);
    switch (e->kind) {
    case SHOP_REGISTERED:
    case SHOP_RENAMED:
        strbuf_appendf(sb, "{\"customerId\":\"%s\",\"name\":\"", customer);
        shop_name(sb, e->customer, e->value);
        strbuf_append(sb, "\"");
        if (e->kind == SHOP_REGISTERED && e->customer % 2 == 0)
            strbuf_appendf(sb, ",\"email\":\"%s@example.com\"", customer);
        strbuf_append(sb, "}");
        break;
    case SHOP_PLACED:
        strbuf_appendf(sb, "{\"orderId\":\"%s\",\"customerId\":\"%s\",\"items\":[", order,
                       customer);
        for (int l = 0; l < e->lines; l++)
            strbuf_appendf(sb, "%s{\"sku\":\"sku-%d\",\"qty\":%d}", l > 0 ? "," : "", l, l + 1);
        strbuf_appendf(sb, "],\"total\":{\"amount\":\"%d.%02d\",\"currency\":\"EUR\"}}",
                       e->value / 100, e->value % 100);
        break;
    case SHOP_ITEM_ADDED:
        strbuf_appendf(sb, "{\"orderId\":\"%s\",\"qty\":%d}", order, e->value);
        break;
    case SHOP_CONFIRMED:
        strbuf_appendf(sb, "{\"orderId\":\"%s\"}", order);
        break;
    case SHOP_CANCELLED:
        strbuf_appendf(sb, "{\"orderId\":\"%s\",\"customerId\":\"%s\"}", order, customer);
        break;
    }
}

/* The version an event carries: only order.placed's guards a column. */
static int shop_version(const ShopEvent *e)
{
    static const int versions[] = {1, 0, 1, 2, 3, 4};
    return e->kind == SHOP_RENAMED ? e->value + 1 : versions[e->kind];
}

/* One entry's strings, kept until its XADD is queued. */
typedef struct ShopEntry {
    char when[32], version[16], event_id[32], aggregate[16];
    StrBuf payload, envelope;
} ShopEntry;

static void shop_entry_init(ShopEntry *en, const ShopEvent *e, size_t i)
{
    time_t t = (time_t)(SHOP_EPOCH_S + (int64_t)i);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(en->when, sizeof en->when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(en->version, sizeof en->version, "%d", shop_version(e));
    snprintf(en->event_id, sizeof en->event_id, "e-%zu", i);
    if (e->order >= 0)
        snprintf(en->aggregate, sizeof en->aggregate, "o-%06d", e->order);
    else
        snprintf(en->aggregate, sizeof en->aggregate, "c-%02d", e->customer);
    en->payload = (StrBuf){0};
    en->envelope = (StrBuf){0};
    shop_payload(&en->payload, e);
}

/* Customers always, and every fifth order event, go as flat fields; the rest as envelopes. */
static bool shop_flat(const ShopEvent *e, size_t i)
{
    return shop_event_stream(e) == SHOP_CUSTOMERS || i % 5 == 0;
}

static void shop_append_xadd(const ShopFeed *f, redisContext *c, size_t i)
{
    const ShopEvent *e = &f->events[i];
    const char *aggregate_type = e->order >= 0 ? "Order" : "Customer";
    const char *argv[19] = {"XADD", shop_stream_names[shop_event_stream(e)], "*"};
    int argc = 3;
    ShopEntry en;
    shop_entry_init(&en, e, i);
    if (shop_flat(e, i)) {
        const char *fields[] = {"type",           shop_type_names[e->kind],
                                "event_id",       en.event_id,
                                "aggregate_id",   en.aggregate,
                                "aggregate_type", aggregate_type,
                                "version",        en.version,
                                "occurred_at",    en.when,
                                "payload",        en.payload.buf,
                                "metadata",       "{\"correlationId\":\"k-flat\"}"};
        for (size_t k = 0; k < ARRAY_SIZE(fields); k++)
            argv[argc++] = fields[k];
        cr_assert(redisAppendCommandArgv(c, argc, argv, NULL) == REDIS_OK, "%s", c->errstr);
    } else {
        strbuf_appendf(&en.envelope,
                       "{\"eventId\":\"%s\",\"eventType\":\"%s\",\"aggregateId\":\"%s\","
                       "\"aggregateType\":\"%s\",\"timestamp\":\"%s\",\"version\":%s,"
                       "\"metadata\":{\"correlationId\":\"k-%zu\"},\"payload\":%s}",
                       en.event_id, shop_type_names[e->kind], en.aggregate, aggregate_type, en.when,
                       en.version, i, en.payload.buf);
        argv[argc++] = "event";
        argv[argc++] = en.envelope.buf;
        cr_assert(redisAppendCommandArgv(c, argc, argv, NULL) == REDIS_OK, "%s", c->errstr);
    }
    strbuf_done(&en.payload);
    strbuf_done(&en.envelope);
}

static void shop_read_id(ShopFeed *f, redisContext *c, size_t i)
{
    redisReply *reply = NULL;
    cr_assert(redisGetReply(c, (void **)&reply) == REDIS_OK, "could not XADD: %s", c->errstr);
    cr_assert(reply->type == REDIS_REPLY_STRING && reply->len < 48, "XADD answered %s",
              reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected reply");
    memcpy(f->events[i].id, reply->str, (size_t)reply->len + 1);
    freeReplyObject(reply);
}

static bool shop_published(const ShopEvent *e)
{
    return e->id[0] != '\0';
}

/* Publishes the events before upto that are not published yet and, when only is a stream,
 * are on it; every stream's published events stay a prefix of it. */
static void shop_publish(ShopFeed *f, redisContext *c, int only, size_t upto)
{
    size_t batch[SHOP_PIPELINE], n = 0;
    cr_assert(upto <= f->count);
    for (size_t i = 0; i <= upto; i++) {
        if (n == SHOP_PIPELINE || (i == upto && n > 0)) {
            for (size_t k = 0; k < n; k++)
                shop_read_id(f, c, batch[k]);
            n = 0;
        }
        if (i == upto)
            break;
        ShopStream s = shop_event_stream(&f->events[i]);
        if (shop_published(&f->events[i]) || (only >= 0 && (int)s != only))
            continue;
        shop_append_xadd(f, c, i);
        batch[n++] = i;
        f->published[s]++;
    }
}

void shop_feed_publish(ShopFeed *f, redisContext *c, size_t upto)
{
    shop_publish(f, c, -1, upto);
}

void shop_feed_publish_stream(ShopFeed *f, redisContext *c, ShopStream s, size_t upto)
{
    shop_publish(f, c, (int)s, upto);
}

const char *shop_feed_last_id(const ShopFeed *f, ShopStream s)
{
    for (size_t i = f->count; i > 0; i--)
        if (shop_event_stream(&f->events[i - 1]) == s && shop_published(&f->events[i - 1]))
            return f->events[i - 1].id;
    return NULL;
}

/* ---- expected tables ---- */

/* Lines of one table as the dump queries print them, in key order. */
typedef struct ShopLines {
    char **lines;
    size_t count;
} ShopLines;

static void shop_lines_add(ShopLines *l, StrBuf *sb)
{
    l->lines = xrealloc(l->lines, (l->count + 1) * sizeof *l->lines);
    l->lines[l->count++] = strbuf_take(sb);
}

static void shop_lines_done(ShopLines *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->lines[i]);
    free(l->lines);
}

/* The first n events of stream s, counted in publishing order: *i is the next event. */
static bool shop_next(const ShopFeed *f, ShopStream s, size_t n, size_t *i, size_t *seen)
{
    while (*i < f->count && shop_event_stream(&f->events[*i]) != s)
        (*i)++;
    if (*i >= f->count || *seen >= n || !shop_published(&f->events[*i]))
        return false;
    (*seen)++;
    return true;
}

/* customers: id | name | email, after the first n customer events. */
static void shop_expect_customers(const ShopFeed *f, size_t n, ShopLines *out)
{
    int *name = xcalloc((size_t)f->customers, sizeof *name); /* name number + 1; 0: none */
    StrBuf sb = {0};
    for (size_t i = 0, seen = 0; shop_next(f, SHOP_CUSTOMERS, n, &i, &seen); i++) {
        const ShopEvent *e = &f->events[i];
        if (e->kind == SHOP_REGISTERED || name[e->customer] > 0)
            name[e->customer] = e->value + 1;
    }
    for (int c = 0; c < f->customers; c++) {
        if (name[c] == 0)
            continue;
        strbuf_appendf(&sb, "c-%02d|", c);
        shop_name(&sb, c, name[c] - 1);
        if (c % 2 == 0)
            strbuf_appendf(&sb, "|c-%02d@example.com", c);
        else
            strbuf_append(&sb, "|\\N");
        shop_lines_add(out, &sb);
    }
    free(name);
}

typedef struct ShopStats {
    int placed, cancelled;
    long long cents;
    long long last_at; /* -1: never placed */
} ShopStats;

/* customer_stats: customer_id | orders | orders_cancelled | total_spent | last_order_at
 * (epoch seconds), after the first n order events. */
static void shop_expect_stats(const ShopFeed *f, size_t n, ShopLines *out)
{
    ShopStats *st = xcalloc((size_t)f->customers, sizeof *st);
    StrBuf sb = {0};
    for (int c = 0; c < f->customers; c++)
        st[c].last_at = -1;
    for (size_t i = 0, seen = 0; shop_next(f, SHOP_ORDERS, n, &i, &seen); i++) {
        const ShopEvent *e = &f->events[i];
        ShopStats *s = &st[e->customer];
        if (e->kind == SHOP_PLACED) {
            s->placed++;
            s->cents += e->value;
            s->last_at = SHOP_EPOCH_S + (long long)i;
        } else if (e->kind == SHOP_CANCELLED) {
            s->cancelled++;
        }
    }
    for (int c = 0; c < f->customers; c++) {
        const ShopStats *s = &st[c];
        if (s->placed == 0 && s->cancelled == 0)
            continue;
        strbuf_appendf(&sb, "c-%02d|%d|%d|%lld.%02lld|", c, s->placed, s->cancelled, s->cents / 100,
                       s->cents % 100);
        if (s->last_at < 0)
            strbuf_append(&sb, "\\N");
        else
            strbuf_appendf(&sb, "%lld", s->last_at);
        shop_lines_add(out, &sb);
    }
    free(st);
}

typedef struct ShopOrder {
    bool exists, confirmed;
    int customer, items, cents;
    long long created_at, confirmed_at;
} ShopOrder;

/* Every order's row after the first n order events. */
static ShopOrder *shop_orders_at(const ShopFeed *f, size_t n)
{
    ShopOrder *rows = xcalloc((size_t)f->orders + 1, sizeof *rows);
    for (size_t i = 0, seen = 0; shop_next(f, SHOP_ORDERS, n, &i, &seen); i++) {
        const ShopEvent *e = &f->events[i];
        ShopOrder *o = &rows[e->order];
        switch (e->kind) {
        case SHOP_PLACED:
            *o = (ShopOrder){.exists = true,
                             .customer = e->customer,
                             .items = e->lines,
                             .cents = e->value,
                             .created_at = SHOP_EPOCH_S + (long long)i};
            break;
        case SHOP_ITEM_ADDED:
            o->items += e->value;
            break;
        case SHOP_CONFIRMED:
            o->confirmed = true;
            o->confirmed_at = SHOP_EPOCH_S + (long long)i;
            break;
        case SHOP_CANCELLED:
            o->exists = false;
            break;
        case SHOP_REGISTERED:
        case SHOP_RENAMED:
            break;
        }
    }
    return rows;
}

/* The name number each customer ends with (every published customer event applied). */
static int *shop_final_names(const ShopFeed *f)
{
    int *name = xcalloc((size_t)f->customers, sizeof *name);
    for (size_t i = 0; i < f->count; i++)
        if (shop_event_stream(&f->events[i]) == SHOP_CUSTOMERS && shop_published(&f->events[i]))
            name[f->events[i].customer] = f->events[i].value;
    return name;
}

/* order_read_model: id | customer_id | customer_name (or "*" without names) | status |
 * item_count | total | currency | created_at | confirmed_at | version. */
static void shop_expect_orders(const ShopFeed *f, size_t n, const int *names, ShopLines *out)
{
    ShopOrder *rows = shop_orders_at(f, n);
    StrBuf sb = {0};
    for (int k = 0; k < f->orders; k++) {
        const ShopOrder *o = &rows[k];
        if (!o->exists)
            continue;
        strbuf_appendf(&sb, "o-%06d|c-%02d|", k, o->customer);
        if (names != NULL)
            shop_name(&sb, o->customer, names[o->customer]);
        else
            strbuf_append(&sb, "*");
        strbuf_appendf(&sb, "|%s|%d|%d.%02d|EUR|%lld|", o->confirmed ? "confirmed" : "pending",
                       o->items, o->cents / 100, o->cents % 100, o->created_at);
        if (o->confirmed)
            strbuf_appendf(&sb, "%lld|1", o->confirmed_at);
        else
            strbuf_append(&sb, "\\N|1");
        shop_lines_add(out, &sb);
    }
    free(rows);
}

/* ---- comparing ---- */

typedef struct ShopDiff {
    PGconn *pg;
    long count;
    StrBuf *report;
} ShopDiff;

static void shop_differ(ShopDiff *d, const char *fmt, ...) PJ_PRINTF(2, 3);

static void shop_differ(ShopDiff *d, const char *fmt, ...)
{
    if (d->count++ < SHOP_REPORT_MAX) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        strbuf_appendf(d->report, "  %s\n", msg);
    } else if (d->count == SHOP_REPORT_MAX + 1) {
        strbuf_append(d->report, "  ...\n");
    }
}

static int shop_key_cmp(const char *a, const char *b)
{
    size_t la = strcspn(a, "|"), lb = strcspn(b, "|");
    int c = memcmp(a, b, la < lb ? la : lb);
    return c != 0 ? c : (la > lb) - (la < lb);
}

static bool shop_relation_exists(PGconn *pg, const char *name)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT to_regclass('%s') IS NOT NULL", name);
    char *t = testenv_query_text(pg, sql);
    bool yes = strcmp(t, "t") == 0;
    free(t);
    return yes;
}

/* Splits text in place into its lines; an empty text has none. */
static void shop_split(char *text, ShopLines *out)
{
    for (char *line = text; *text != '\0' && line != NULL;) {
        char *next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        out->lines = xrealloc(out->lines, (out->count + 1) * sizeof *out->lines);
        out->lines[out->count++] = line;
        line = next;
    }
}

/* Merges the expected lines with the query's (both in key order), counting every missing,
 * unexpected and different row. A table not created yet holds no rows. */
static void shop_diff_table(ShopDiff *d, const char *table, const char *sql, const ShopLines *want)
{
    char *text = shop_relation_exists(d->pg, table) ? testenv_query_text(d->pg, sql) : xstrdup("");
    ShopLines got = {0};
    size_t i = 0, j = 0;
    shop_split(text, &got);
    while (i < want->count || j < got.count) {
        int c = j == got.count     ? -1
                : i == want->count ? 1
                                   : shop_key_cmp(want->lines[i], got.lines[j]);
        if (c < 0)
            shop_differ(d, "%s: missing row %s", table, want->lines[i]);
        else if (c > 0)
            shop_differ(d, "%s: unexpected row %s", table, got.lines[j]);
        else if (strcmp(want->lines[i], got.lines[j]) != 0)
            shop_differ(d, "%s: row %s, expected %s", table, got.lines[j], want->lines[i]);
        i += c <= 0;
        j += c >= 0;
    }
    free(got.lines); /* the lines point into text */
    free(text);
}

static int shop_id_cmp(const char *a, const char *b)
{
    unsigned long long ams = strtoull(a, NULL, 10), bms = strtoull(b, NULL, 10);
    const char *ad = strchr(a, '-'), *bd = strchr(b, '-');
    unsigned long long aseq = ad ? strtoull(ad + 1, NULL, 10) : 0;
    unsigned long long bseq = bd ? strtoull(bd + 1, NULL, 10) : 0;
    if (ams != bms)
        return ams < bms ? -1 : 1;
    return (aseq > bseq) - (aseq < bseq);
}

/* How many published events of stream s are at or below entry id. */
static size_t shop_prefix(const ShopFeed *f, ShopStream s, const char *id)
{
    size_t n = 0;
    for (size_t i = 0; i < f->count; i++) {
        const ShopEvent *e = &f->events[i];
        if (shop_event_stream(e) == s && shop_published(e) && shop_id_cmp(e->id, id) <= 0)
            n++;
    }
    return n;
}

static long long shop_handled(const ShopFeed *f, ShopStream s, size_t n, unsigned handled)
{
    long long count = 0;
    for (size_t i = 0, seen = 0; shop_next(f, s, n, &i, &seen); i++)
        count += (handled & SHOP_BIT(f->events[i].kind)) != 0;
    return count;
}

/* Reads every checkpoint into n[] (events covered) and checks its applied_total. */
static void shop_diff_checkpoints(ShopDiff *d, const ShopFeed *f, bool final, size_t *n)
{
    bool have = shop_relation_exists(d->pg, "projector.checkpoints");
    for (size_t p = 0; p < SHOP_NPOSITIONS; p++) {
        ShopStream s = shop_positions[p].stream;
        const char *rm = shop_positions[p].readmodel, *stream = shop_stream_names[s];
        char *sql = xasprintf("SELECT last_id, applied_total FROM projector.checkpoints "
                              "WHERE readmodel = '%s' AND stream = '%s'",
                              rm, stream);
        char *row = have ? testenv_query_text(d->pg, sql) : xstrdup("");
        char *bar = strchr(row, '|');
        long long applied = bar != NULL ? atoll(bar + 1) : 0;
        if (bar != NULL)
            *bar = '\0';
        size_t total = f->published[s];
        n[p] = bar != NULL ? shop_prefix(f, s, row) : 0;
        if (final && n[p] != total)
            shop_differ(d, "checkpoint of %s on %s: at %s (%zu of %zu events), expected %s", rm,
                        stream, bar != NULL ? row : "none", n[p], total,
                        shop_feed_last_id(f, s) ? shop_feed_last_id(f, s) : "none");
        if (final)
            n[p] = total;
        long long want = shop_handled(f, s, n[p], shop_positions[p].handled);
        if (applied != want && (bar != NULL || want != 0))
            shop_differ(d, "checkpoint of %s on %s: applied_total %lld, expected %lld", rm, stream,
                        applied, want);
        free(row);
        free(sql);
    }
}

static const char shop_customers_sql[] =
    "SELECT id, name, email FROM customers ORDER BY id COLLATE \"C\"";
static const char shop_stats_sql[] =
    "SELECT customer_id, orders, orders_cancelled, total_spent, "
    "extract(epoch FROM last_order_at)::bigint FROM customer_stats "
    "ORDER BY customer_id COLLATE \"C\"";
static const char shop_orders_sql[] =
    "SELECT id, customer_id, %s, status, item_count, total, currency, "
    "extract(epoch FROM created_at)::bigint, extract(epoch FROM confirmed_at)::bigint, version "
    "FROM order_read_model ORDER BY id COLLATE \"C\"";

long shop_feed_diff(const ShopFeed *f, PGconn *pg, bool final, StrBuf *report)
{
    ShopDiff d = {.pg = pg, .report = report};
    size_t n[SHOP_NPOSITIONS];
    ShopLines customers = {0}, stats = {0}, orders = {0};
    int *names = final ? shop_final_names(f) : NULL;
    char *orders_sql = xasprintf(shop_orders_sql, final ? "customer_name" : "'*'");

    /* One snapshot for the checkpoints and the tables: a killed daemon's last transaction
     * may still commit on the server while they are read. */
    PQclear(testenv_sql(pg, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    shop_diff_checkpoints(&d, f, final, n);
    shop_expect_customers(f, n[SHOP_POS_CUSTOMERS], &customers);
    shop_expect_stats(f, n[SHOP_POS_STATS], &stats);
    shop_expect_orders(f, n[SHOP_POS_ORDERS], names, &orders);
    shop_diff_table(&d, "customers", shop_customers_sql, &customers);
    shop_diff_table(&d, "customer_stats", shop_stats_sql, &stats);
    shop_diff_table(&d, "order_read_model", orders_sql, &orders);
    PQclear(testenv_sql(pg, "COMMIT"));
    shop_lines_done(&customers);
    shop_lines_done(&stats);
    shop_lines_done(&orders);
    free(orders_sql);
    free(names);
    return d.count;
}

/* ---- waiting ---- */

static bool shop_wait_one(int port, const char *stream, const char *id, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_monotonic_ms();
        if (left <= 0)
            return false;
        char path[160];
        snprintf(path, sizeof path, "/wait?stream=%s&id=%s&timeout_ms=%d", stream, id,
                 left > 20000 ? 20000 : (int)left);
        int status = testenv_http_get(port, path, NULL);
        if (status == 200)
            return true;
        if (status != 408)
            testenv_sleep_ms(100); /* not up yet, or stopping */
    }
}

bool shop_feed_wait(const ShopFeed *f, int port, int timeout_ms)
{
    int64_t deadline = now_monotonic_ms() + timeout_ms;
    for (int s = 0; s < SHOP_NSTREAMS; s++) {
        const char *id = shop_feed_last_id(f, (ShopStream)s);
        if (id != NULL && !shop_wait_one(port, shop_stream_names[s], id, deadline))
            return false;
    }
    return true;
}
