/* ceiling.c - `ceiling REDIS_URL PG_CONNINFO BATCH`: the benchmark's ceiling, the order
 * feed of gen_feed applied straight to PostgreSQL by set-based statements.
 *
 * Owns a hand-folded copy of the shipped read models (customers, orders, customer_stats):
 * per round it reads BATCH entries of each stream, folds each key's events in memory
 * (counters summed, last value wins, a cancel deletes) and sends each read model's batch as
 * a few unnest() statements plus a checkpoint row, one pipeline, one transaction, on one
 * connection. Only the PostgreSQL part is timed. Valid for gen_feed's feed only: it places
 * each order once, so the version guard never skips and folding need not model it.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "base/config.h"
#include "base/util.h"

typedef enum {
    E_OTHER,
    E_REGISTERED,
    E_RENAMED,
    E_PLACED,
    E_ITEM_ADDED,
    E_CONFIRMED,
    E_CANCELLED
} EvType;

/* One event, reduced to what the three read models read. Strings are owned. */
typedef struct Ev {
    EvType type;
    char *order, *customer, *name, *email, *at, *amount, *currency;
    long version, nitems, qty;
} Ev;

/* The entries of one stream read in one round. */
typedef struct Chunk {
    const char *stream;
    Ev *ev;
    size_t n, cap;
    char last_id[48]; /* of the chunk; "" before the first read */
} Chunk;

/* A text array parameter being built: {"a","b",NULL}. */
typedef struct Col {
    StrBuf sb;
    size_t n;
} Col;

/* A string -> slot map with open addressing, reset every round. */
typedef struct Map {
    const char **keys;
    int *slots;
    size_t cap; /* a power of two, at least twice the entries */
} Map;

typedef struct Ceil {
    PGconn *pg;
    redisContext *redis;
    int batch;
    long events;
    long transactions;
    double apply_s; /* time spent in PostgreSQL: sending, committing */
    Map map;
} Ceil;

/* ---- columns ---- */

static void col_add(Col *c, const char *v)
{
    strbuf_append(&c->sb, c->n++ == 0 ? "{" : ",");
    if (v == NULL) {
        strbuf_append(&c->sb, "NULL");
        return;
    }
    strbuf_append(&c->sb, "\"");
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            strbuf_append(&c->sb, "\\");
        strbuf_appendn(&c->sb, p, 1);
    }
    strbuf_append(&c->sb, "\"");
}

static void col_addl(Col *c, long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    col_add(c, buf);
}

/* Cents as a numeric literal: 12345 -> "123.45". */
static void col_add_cents(Col *c, long cents)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%s%ld.%02ld", cents < 0 ? "-" : "", labs(cents) / 100,
             labs(cents) % 100);
    col_add(c, buf);
}

static const char *col_text(Col *c)
{
    if (c->n == 0)
        strbuf_append(&c->sb, "{");
    strbuf_append(&c->sb, "}");
    return c->sb.buf;
}

static void cols_done(Col *cols, int n)
{
    for (int i = 0; i < n; i++) {
        strbuf_done(&cols[i].sb);
        cols[i].n = 0;
    }
}

/* ---- map ---- */

static void map_reset(Map *m, size_t entries)
{
    size_t cap = 16;
    while (cap < 2 * entries + 2)
        cap *= 2;
    if (cap > m->cap) {
        m->keys = xrealloc(m->keys, cap * sizeof *m->keys);
        m->slots = xrealloc(m->slots, cap * sizeof *m->slots);
        m->cap = cap;
    }
    memset(m->keys, 0, m->cap * sizeof *m->keys);
}

/* The slot of key, or -1 with *ret_pos where to insert it. */
static int map_find(const Map *m, const char *key, size_t *ret_pos)
{
    size_t i = (size_t)fnv1a64(key, strlen(key), 0) & (m->cap - 1);
    while (m->keys[i] != NULL && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    *ret_pos = i;
    return m->keys[i] != NULL ? m->slots[i] : -1;
}

/* The slot of key, inserting it as slot *count (then incremented) when new. */
static int map_slot(Map *m, const char *key, int *count, bool *ret_new)
{
    size_t pos;
    int slot = map_find(m, key, &pos);
    *ret_new = slot < 0;
    if (slot >= 0)
        return slot;
    m->keys[pos] = key;
    m->slots[pos] = *count;
    return (*count)++;
}

/* ---- reading the feed ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "ceiling: %s: %s\n", what, detail != NULL ? detail : "");
    exit(1);
}

/* A member as owned text: strings as they are, numbers spelled out; NULL when absent. */
static char *json_text(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_real(v))
        return xasprintf("%.17g", json_real_value(v));
    return NULL;
}

static EvType ev_type(const char *s)
{
    static const char *const names[] = {"",
                                        "customer.registered",
                                        "customer.renamed",
                                        "order.placed",
                                        "order.item_added",
                                        "order.confirmed",
                                        "order.cancelled"};
    for (size_t i = 1; s != NULL && i < ARRAY_SIZE(names); i++)
        if (strcmp(s, names[i]) == 0)
            return (EvType)i;
    return E_OTHER;
}

static void ev_payload(Ev *e, const json_t *p)
{
    const json_t *total = json_object_get(p, "total");
    e->order = json_text(p, "orderId");
    e->customer = json_text(p, "customerId");
    e->name = json_text(p, "name");
    e->email = json_text(p, "email");
    e->amount = json_text(total, "amount");
    e->currency = json_text(total, "currency");
    e->nitems = (long)json_array_size(json_object_get(p, "items"));
    e->qty = (long)json_integer_value(json_object_get(p, "qty"));
}

/* The value of field name in an entry's [f1, v1, f2, v2, ...]; NULL when absent. */
static const char *entry_field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (strcmp(fields->element[i]->str, name) == 0)
            return fields->element[i + 1]->str;
    return NULL;
}

/* Decodes either encoding: an envelope in field "event", or flat fields. */
static void ev_decode(Ev *e, const redisReply *fields)
{
    const char *envelope = entry_field(fields, "event");
    json_error_t jerr;
    json_t *doc = NULL;

    memset(e, 0, sizeof *e);
    if (envelope != NULL) {
        if ((doc = json_loads(envelope, 0, &jerr)) == NULL)
            die("bad envelope", jerr.text);
        e->type = ev_type(json_string_value(json_object_get(doc, "eventType")));
        e->at = json_text(doc, "timestamp");
        e->version = (long)json_integer_value(json_object_get(doc, "version"));
    } else {
        const char *payload = entry_field(fields, "payload"), *v = entry_field(fields, "version");
        if (payload == NULL || (doc = json_loads(payload, 0, &jerr)) == NULL)
            die("bad flat entry", payload == NULL ? "no payload" : jerr.text);
        e->type = ev_type(entry_field(fields, "type"));
        e->at = entry_field(fields, "occurred_at") != NULL
                    ? xstrdup(entry_field(fields, "occurred_at"))
                    : NULL;
        e->version = v != NULL ? atol(v) : 0;
        ev_payload(e, doc);
        json_decref(doc);
        return;
    }
    ev_payload(e, json_object_get(doc, "payload"));
    json_decref(doc);
}

static void ev_done(Ev *e)
{
    free(e->order);
    free(e->customer);
    free(e->name);
    free(e->email);
    free(e->at);
    free(e->amount);
    free(e->currency);
}

/* Reads the next BATCH entries of the chunk's stream (none at its end). */
static void chunk_read(Ceil *cx, Chunk *ch)
{
    char start[52];
    redisReply *r;

    for (size_t i = 0; i < ch->n; i++)
        ev_done(&ch->ev[i]);
    ch->n = 0;
    snprintf(start, sizeof start, "%s%s", ch->last_id[0] != '\0' ? "(" : "",
             ch->last_id[0] != '\0' ? ch->last_id : "-");
    r = redisCommand(cx->redis, "XRANGE %s %s + COUNT %d", ch->stream, start, cx->batch);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        die("XRANGE failed",
            r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : cx->redis->errstr);
    xgrow((void **)&ch->ev, &ch->cap, r->elements, sizeof *ch->ev);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *entry = r->element[i];
        ev_decode(&ch->ev[ch->n++], entry->element[1]);
        snprintf(ch->last_id, sizeof ch->last_id, "%s", entry->element[0]->str);
    }
    freeReplyObject(r);
}

/* An amount with at most two decimals, in cents ("39.9" -> 3990). */
static long cents_of(const char *s)
{
    long whole = 0, frac = 0;
    int digits = 0;
    const char *p = s != NULL ? s : "";
    bool neg = *p == '-';

    p += neg;
    for (; *p >= '0' && *p <= '9'; p++)
        whole = whole * 10 + (*p - '0');
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9' && digits < 2; p++, digits++)
            frac = frac * 10 + (*p - '0');
    if (*p != '\0' || s == NULL || s[0] == '\0')
        die("amount with more than two decimals or not a number", s);
    frac *= digits == 1 ? 10 : 1;
    return (neg ? -1 : 1) * (whole * 100 + frac);
}

/* ---- sending a read model's batch ---- */

/* Queues one statement whose parameters are the columns; none when there are no rows. */
static void send_rows(Ceil *cx, const char *sql, Col *cols, int ncols)
{
    const char *values[12];

    if (cols[0].n == 0)
        return;
    for (int i = 0; i < ncols; i++)
        values[i] = col_text(&cols[i]);
    if (!PQsendQueryParams(cx->pg, sql, ncols, NULL, values, NULL, NULL, 0))
        die("could not send a statement", PQerrorMessage(cx->pg));
}

static void send_checkpoint(Ceil *cx, const char *readmodel, const Chunk *ch)
{
    char n[32];
    const char *values[4] = {readmodel, ch->stream, ch->last_id, n};

    if (ch->n == 0)
        return;
    snprintf(n, sizeof n, "%zu", ch->n);
    if (!PQsendQueryParams(
            cx->pg,
            "INSERT INTO bench_checkpoints AS t (readmodel, stream, last_id, applied)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (readmodel, stream) DO UPDATE"
            " SET last_id = excluded.last_id, applied = t.applied + excluded.applied",
            4, NULL, values, NULL, NULL, 0))
        die("could not send the checkpoint", PQerrorMessage(cx->pg));
}

/* Ends the pipeline's transaction and reads every result; any error ends the program. */
static void commit(Ceil *cx)
{
    if (!PQpipelineSync(cx->pg))
        die("could not sync", PQerrorMessage(cx->pg));
    for (;;) {
        PGresult *r = PQgetResult(cx->pg);
        if (r == NULL)
            continue; /* the end of one statement's results */
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            die("statement failed", PQresultErrorMessage(r));
        PQclear(r);
    }
    cx->transactions++;
}

/* ---- customers ---- */

typedef struct CustFold {
    const Ev *registered; /* in this batch, else NULL */
    const char *id, *name;
} CustFold;

/* Folds registrations and renames per customer: the last name wins. */
static int fold_customers(Ceil *cx, const Chunk *ch, CustFold *f)
{
    int count = 0;
    bool is_new;

    map_reset(&cx->map, ch->n);
    for (size_t i = 0; i < ch->n; i++) {
        const Ev *e = &ch->ev[i];
        if (e->type != E_REGISTERED && e->type != E_RENAMED)
            continue;
        int s = map_slot(&cx->map, e->customer, &count, &is_new);
        if (is_new)
            f[s] = (CustFold){.id = e->customer};
        if (e->type == E_REGISTERED)
            f[s].registered = e;
        f[s].name = e->name;
    }
    return count;
}

static void apply_customers(Ceil *cx, const Chunk *ch)
{
    CustFold *f = xcalloc(ch->n, sizeof *f);
    Col up[3] = {0}, ren[2] = {0};
    int n = fold_customers(cx, ch, f);

    for (int i = 0; i < n; i++) {
        if (f[i].registered != NULL) {
            col_add(&up[0], f[i].id);
            col_add(&up[1], f[i].name);
            col_add(&up[2], f[i].registered->email);
        } else {
            col_add(&ren[0], f[i].id);
            col_add(&ren[1], f[i].name);
        }
    }
    send_rows(cx,
              "INSERT INTO customers AS t (id, name, email)"
              " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
              " ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email",
              up, 3);
    send_rows(cx,
              "UPDATE customers AS t SET name = u.name"
              " FROM unnest($1::text[], $2::text[]) AS u(id, name) WHERE t.id = u.id",
              ren, 2);
    send_checkpoint(cx, "customers", ch);
    commit(cx);
    cols_done(up, 3);
    cols_done(ren, 2);
    free(f);
}

/* ---- orders ---- */

typedef struct OrderFold {
    const char *id;
    const Ev *placed;         /* placed in this batch (after any cancel), else NULL */
    long items;               /* item_count of the placed row, items added included */
    long add_qty;             /* not placed here: items added to the existing row */
    const char *confirmed_at; /* confirmed in this batch, else NULL */
    bool deleted;             /* cancelled in this batch: delete before any insert */
} OrderFold;

static void fold_order(OrderFold *f, const Ev *e)
{
    switch (e->type) {
    case E_PLACED:
        f->placed = e;
        f->items = e->nitems;
        f->confirmed_at = NULL;
        break;
    case E_ITEM_ADDED:
        if (f->placed != NULL)
            f->items += e->qty;
        else
            f->add_qty += e->qty;
        break;
    case E_CONFIRMED:
        f->confirmed_at = e->at;
        break;
    case E_CANCELLED:
        *f = (OrderFold){.id = f->id, .deleted = true};
        break;
    default:
        break;
    }
}

static int fold_orders(Ceil *cx, const Chunk *ch, OrderFold *f)
{
    int count = 0;
    bool is_new;

    map_reset(&cx->map, ch->n);
    for (size_t i = 0; i < ch->n; i++) {
        const Ev *e = &ch->ev[i];
        if (e->type < E_PLACED || e->order == NULL)
            continue;
        int s = map_slot(&cx->map, e->order, &count, &is_new);
        if (is_new)
            f[s] = (OrderFold){.id = e->order};
        fold_order(&f[s], e);
    }
    return count;
}

static const char *const SQL_ORDERS_DELETE =
    "DELETE FROM order_read_model WHERE id = ANY($1::text[])";
static const char *const SQL_ORDERS_UPSERT =
    "INSERT INTO order_read_model AS t (id, customer_id, customer_name, status, item_count,"
    " total, currency, created_at, confirmed_at, version)"
    " SELECT u.id, u.customer_id, (SELECT c.name FROM customers c WHERE c.id = u.customer_id),"
    " u.status, u.item_count, u.total, u.currency, u.created_at, u.confirmed_at, u.version"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::numeric[], $6::text[],"
    " $7::timestamptz[], $8::timestamptz[], $9::bigint[]) AS u(id, customer_id, status,"
    " item_count, total, currency, created_at, confirmed_at, version)"
    " ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id,"
    " customer_name = excluded.customer_name, status = excluded.status,"
    " item_count = excluded.item_count, total = excluded.total, currency = excluded.currency,"
    " created_at = excluded.created_at,"
    " confirmed_at = COALESCE(excluded.confirmed_at, t.confirmed_at), version = excluded.version"
    " WHERE t.version IS NULL OR t.version < excluded.version";
static const char *const SQL_ORDERS_UPDATE =
    "UPDATE order_read_model AS t SET item_count = t.item_count + u.add_qty,"
    " status = CASE WHEN u.confirmed_at IS NULL THEN t.status ELSE 'confirmed' END,"
    " confirmed_at = COALESCE(u.confirmed_at, t.confirmed_at)"
    " FROM unnest($1::text[], $2::integer[], $3::timestamptz[]) AS u(id, add_qty, confirmed_at)"
    " WHERE t.id = u.id";
static const char *const SQL_ORDERS_FANOUT =
    "UPDATE order_read_model AS t SET customer_name = u.name"
    " FROM unnest($1::text[], $2::text[]) AS u(customer_id, name)"
    " WHERE t.customer_id = u.customer_id";

static void order_row(Col *c, const OrderFold *f)
{
    const Ev *e = f->placed;
    col_add(&c[0], f->id);
    col_add(&c[1], e->customer);
    col_add(&c[2], f->confirmed_at != NULL ? "confirmed" : "pending");
    col_addl(&c[3], f->items);
    col_add(&c[4], e->amount);
    col_add(&c[5], e->currency);
    col_add(&c[6], e->at);
    col_add(&c[7], f->confirmed_at);
    col_addl(&c[8], e->version);
}

/* The orders stream's part: deletes, then upserts, then updates of rows placed earlier. */
static void send_orders(Ceil *cx, const Chunk *ch)
{
    OrderFold *f = xcalloc(ch->n + 1, sizeof *f);
    Col del[1] = {0}, up[9] = {0}, upd[3] = {0};
    int n = fold_orders(cx, ch, f);

    for (int i = 0; i < n; i++) {
        if (f[i].deleted)
            col_add(&del[0], f[i].id);
        if (f[i].placed != NULL) {
            order_row(up, &f[i]);
        } else if (!f[i].deleted && (f[i].add_qty != 0 || f[i].confirmed_at != NULL)) {
            col_add(&upd[0], f[i].id);
            col_addl(&upd[1], f[i].add_qty);
            col_add(&upd[2], f[i].confirmed_at);
        }
    }
    send_rows(cx, SQL_ORDERS_DELETE, del, 1);
    send_rows(cx, SQL_ORDERS_UPSERT, up, 9);
    send_rows(cx, SQL_ORDERS_UPDATE, upd, 3);
    cols_done(del, 1);
    cols_done(up, 9);
    cols_done(upd, 3);
    free(f);
}

/* The customers stream's part: renames fan out to every order of the customer. */
static void send_fanout(Ceil *cx, const Chunk *ch)
{
    CustFold *f = xcalloc(ch->n + 1, sizeof *f);
    Col ren[2] = {0};
    int n = fold_customers(cx, ch, f);

    for (int i = 0; i < n; i++) {
        if (f[i].registered != NULL && f[i].name == f[i].registered->name)
            continue; /* registered, never renamed: no order can have it yet */
        col_add(&ren[0], f[i].id);
        col_add(&ren[1], f[i].name);
    }
    send_rows(cx, SQL_ORDERS_FANOUT, ren, 2);
    cols_done(ren, 2);
    free(f);
}

static void apply_orders(Ceil *cx, const Chunk *orders, const Chunk *customers)
{
    send_orders(cx, orders);
    send_fanout(cx, customers);
    send_checkpoint(cx, "orders", orders);
    send_checkpoint(cx, "orders", customers);
    commit(cx);
}

/* ---- customer_stats ---- */

typedef struct StatFold {
    const char *customer;
    long orders, cancelled, cents;
    const char *last_order_at; /* NULL when no order was placed in this batch */
} StatFold;

static void apply_stats(Ceil *cx, const Chunk *ch)
{
    StatFold *f = xcalloc(ch->n + 1, sizeof *f);
    Col up[5] = {0};
    int n = 0;
    bool is_new;

    map_reset(&cx->map, ch->n);
    for (size_t i = 0; i < ch->n; i++) {
        const Ev *e = &ch->ev[i];
        if (e->type != E_PLACED && e->type != E_CANCELLED)
            continue;
        int s = map_slot(&cx->map, e->customer, &n, &is_new);
        if (is_new)
            f[s] = (StatFold){.customer = e->customer};
        if (e->type == E_PLACED) {
            f[s].orders++;
            f[s].cents += cents_of(e->amount);
            f[s].last_order_at = e->at;
        } else {
            f[s].cancelled++;
        }
    }
    for (int i = 0; i < n; i++) {
        col_add(&up[0], f[i].customer);
        col_addl(&up[1], f[i].orders);
        col_addl(&up[2], f[i].cancelled);
        col_add_cents(&up[3], f[i].cents);
        col_add(&up[4], f[i].last_order_at);
    }
    send_rows(cx,
              "INSERT INTO customer_stats AS t (customer_id, orders, orders_cancelled, total_spent,"
              " last_order_at) SELECT * FROM unnest($1::text[], $2::integer[], $3::integer[],"
              " $4::numeric[], $5::timestamptz[]) ON CONFLICT (customer_id) DO UPDATE SET"
              " orders = t.orders + excluded.orders,"
              " orders_cancelled = t.orders_cancelled + excluded.orders_cancelled,"
              " total_spent = t.total_spent + excluded.total_spent,"
              " last_order_at = COALESCE(excluded.last_order_at, t.last_order_at)",
              up, 5);
    send_checkpoint(cx, "customer_stats", ch);
    commit(cx);
    cols_done(up, 5);
    free(f);
}

/* ---- main ---- */

static redisContext *connect_redis(const char *url)
{
    RedisAddr addr = {0};
    PjError err = {0};
    redisContext *c;
    redisReply *r;

    if (redis_addr_parse(url, &addr, &err) != 0)
        die("bad Redis URL", err.message);
    c = redisConnect(addr.host, addr.port);
    if (c == NULL || c->err != 0)
        die("could not connect to Redis", c != NULL ? c->errstr : "out of memory");
    r = redisCommand(c, "SELECT %d", addr.db);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        die("could not select the Redis database", c->errstr);
    freeReplyObject(r);
    redis_addr_done(&addr);
    return c;
}

static PGconn *connect_pg(const char *conninfo)
{
    PGconn *pg = PQconnectdb(conninfo);
    PGresult *r;

    if (PQstatus(pg) != CONNECTION_OK)
        die("could not connect to PostgreSQL", PQerrorMessage(pg));
    r = PQexec(pg, "CREATE TABLE IF NOT EXISTS bench_checkpoints (readmodel text, stream text,"
                   " last_id text NOT NULL, applied bigint NOT NULL,"
                   " PRIMARY KEY (readmodel, stream))");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("could not create bench_checkpoints", PQresultErrorMessage(r));
    PQclear(r);
    if (!PQenterPipelineMode(pg))
        die("could not enter pipeline mode", PQerrorMessage(pg));
    return pg;
}

/* One round: the next BATCH entries of each stream, one transaction per read model, in the
 * order their lookups need (customers before orders). Returns false at the end of both. */
static bool round_once(Ceil *cx, Chunk *customers, Chunk *orders)
{
    double t;

    chunk_read(cx, customers);
    chunk_read(cx, orders);
    if (customers->n == 0 && orders->n == 0)
        return false;
    t = now_s();
    if (customers->n > 0)
        apply_customers(cx, customers);
    apply_orders(cx, orders, customers);
    if (orders->n > 0)
        apply_stats(cx, orders);
    cx->apply_s += now_s() - t;
    cx->events += (long)(customers->n + orders->n);
    return true;
}

int main(int argc, char **argv)
{
    Ceil cx = {0};
    Chunk customers = {.stream = "customers"}, orders = {.stream = "orders"};
    double t0;

    if (argc != 4 || atoi(argv[3]) < 1) {
        fprintf(stderr, "usage: ceiling REDIS_URL PG_CONNINFO BATCH\n");
        return 2;
    }
    cx.batch = atoi(argv[3]);
    cx.redis = connect_redis(argv[1]);
    cx.pg = connect_pg(argv[2]);
    t0 = now_s();
    while (round_once(&cx, &customers, &orders))
        ;
    printf("{\"events\":%ld,\"batch\":%d,\"transactions\":%ld,\"apply_seconds\":%.3f,"
           "\"wall_seconds\":%.3f,\"events_per_second\":%.1f}\n",
           cx.events, cx.batch, cx.transactions, cx.apply_s, now_s() - t0,
           cx.apply_s > 0 ? (double)cx.events / cx.apply_s : 0.0);
    chunk_read(&cx, &customers); /* frees the last events */
    free(customers.ev);
    free(orders.ev);
    free(cx.map.keys);
    free(cx.map.slots);
    PQfinish(cx.pg);
    redisFree(cx.redis);
    return 0;
}
