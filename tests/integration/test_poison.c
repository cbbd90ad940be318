/* test_poison.c - every kind of bad entry the daemon may meet on a stream, among healthy
 * events, read in one batch and in batches of one: invalid JSON, invalid UTF-8 (in the
 * JSON and in a flat field), a missing and a null key, values of the wrong type, a number
 * out of its column's range, a 16 MiB payload, nesting 10,000 deep, entries without the
 * fields of an event, and an unknown type. Each is applied, skipped or dead-lettered with
 * a readable error as documented in README.md, every healthy event is applied, and every
 * read model is still running afterwards.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "testenv.h"

#define POISON_HEALTHY 11
#define POISON_BIG (16u * 1024 * 1024)
#define POISON_DEEP 10000

typedef TestDaemon Env;

static void env_setup(Env *e, const char *name, int batch)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    testenv_daemon_setup(e, name, NULL, batch, 200);
}

static void env_done(Env *e)
{
    freeReplyObject(redisCommand(e->redis, "FLUSHDB")); /* 16 MiB back to the shared server */
    testenv_daemon_done(e);
}

/* XADD stream * with n name/value pairs given with their lengths (binary safe). */
static void xadd_raw(Env *e, const char *stream, size_t n, const char *const *parts,
                     const size_t *lens)
{
    const char **argv = xcalloc(3 + 2 * n, sizeof *argv);
    size_t *argl = xcalloc(3 + 2 * n, sizeof *argl);
    argv[0] = "XADD";
    argv[1] = stream;
    argv[2] = "*";
    for (size_t i = 0; i < 3; i++)
        argl[i] = strlen(argv[i]);
    for (size_t i = 0; i < 2 * n; i++) {
        argv[3 + i] = parts[i];
        argl[3 + i] = lens != NULL ? lens[i] : strlen(parts[i]);
    }
    redisReply *r = redisCommandArgv(e->redis, (int)(3 + 2 * n), argv, argl);
    cr_assert(r != NULL && r->type == REDIS_REPLY_STRING, "XADD %s failed: %s", stream,
              r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
    if (strcmp(stream, "orders") == 0)
        snprintf(e->last, sizeof e->last, "%s", r->str);
    freeReplyObject(r);
    free(argv);
    free(argl);
}

static void xadd_envelope(Env *e, const char *json)
{
    const char *parts[] = {"event", json};
    xadd_raw(e, "orders", 1, parts, NULL);
}

static void placed(Env *e, const char *order, const char *extra)
{
    char *json = xasprintf("{\"eventType\":\"order.placed\",\"version\":1,\"timestamp\":"
                           "\"2026-01-15T10:00:00Z\",\"payload\":{\"orderId\":\"%s\","
                           "\"customerId\":\"c-1\",\"items\":[{\"qty\":1}],\"total\":"
                           "{\"amount\":\"1.00\",\"currency\":\"EUR\"}%s}}",
                           order, extra);
    xadd_envelope(e, json);
    free(json);
}

/* One healthy event, then the bad one made by make(i). */
static void publish_all(Env *e)
{
    const char *customer[] = {"type",    "customer.registered",
                              "version", "1",
                              "payload", "{\"customerId\":\"c-1\",\"name\":\"Ada\"}"};
    xadd_raw(e, "customers", 3, customer, NULL);
    char id[24];
    int healthy = 0;
#define HEALTHY() (snprintf(id, sizeof id, "ok-%d", ++healthy), placed(e, id, ""))

    HEALTHY(); /* 1. invalid JSON */
    xadd_envelope(e, "{\"eventType\": \"order.placed\", \"payload\": {");
    HEALTHY(); /* 2. invalid UTF-8 inside the JSON */
    xadd_envelope(e, "{\"eventType\":\"order.placed\",\"version\":1,\"payload\":{\"orderId\":"
                     "\"bad-\xff\xfe\",\"customerId\":\"c-1\",\"items\":[],\"total\":"
                     "{\"amount\":\"1\",\"currency\":\"EUR\"}}}");
    HEALTHY(); /* 3. invalid UTF-8 in a flat field that is not JSON */
    {
        const char *payload = "{\"orderId\":\"flat-utf8\",\"customerId\":\"c-1\","
                              "\"items\":[],\"total\":{\"amount\":\"1\",\"currency\":\"EUR\"}}";
        const char *flat[] = {"type",         "order.placed", "version", "1",
                              "aggregate_id", "o-\xc3\x28",   "payload", payload};
        xadd_raw(e, "orders", 4, flat, NULL);
    }
    HEALTHY(); /* 4. the key missing, 5. the key null */
    xadd_envelope(e, "{\"eventType\":\"order.placed\",\"version\":1,\"payload\":{\"customerId\":"
                     "\"c-1\",\"items\":[],\"total\":{\"amount\":\"1\",\"currency\":\"EUR\"}}}");
    xadd_envelope(e, "{\"eventType\":\"order.placed\",\"version\":1,\"payload\":{\"orderId\":null,"
                     "\"customerId\":\"c-1\",\"items\":[],\"total\":{\"amount\":\"1\","
                     "\"currency\":\"EUR\"}}}");
    HEALTHY(); /* 6. a value of the wrong type for its column */
    xadd_envelope(e, "{\"eventType\":\"order.placed\",\"version\":1,\"payload\":{\"orderId\":"
                     "\"wrong-type\",\"customerId\":\"c-1\",\"items\":[],\"total\":{\"amount\":"
                     "[1, 2],\"currency\":\"EUR\"}}}");
    HEALTHY(); /* 7. a number out of its column's range (item_count is an integer) */
    xadd_envelope(e, "{\"eventType\":\"order.item_added\",\"payload\":{\"orderId\":\"ok-1\","
                     "\"qty\":99999999999}}");
    HEALTHY(); /* 8. a 16 MiB payload: applies */
    {
        char *big = xmalloc(POISON_BIG + 32);
        memcpy(big, ",\"note\":\"", 9);
        memset(big + 9, 'n', POISON_BIG);
        memcpy(big + 9 + POISON_BIG, "\"", 2);
        placed(e, "big", big);
        free(big);
    }
    HEALTHY(); /* 9. nesting 10,000 deep */
    {
        StrBuf sb = {0};
        strbuf_append(&sb, "{\"eventType\":\"order.placed\",\"payload\":{\"orderId\":\"deep\","
                           "\"d\":");
        for (int i = 0; i < POISON_DEEP; i++)
            strbuf_append(&sb, "[");
        for (int i = 0; i < POISON_DEEP; i++)
            strbuf_append(&sb, "]");
        strbuf_append(&sb, "}}");
        xadd_envelope(e, sb.buf);
        strbuf_done(&sb);
    }
    HEALTHY(); /* 10. no event fields at all, 11. an empty field */
    {
        const char *other[] = {"colour", "red"};
        xadd_raw(e, "orders", 1, other, NULL);
        const char *empty[] = {"", ""};
        size_t lens[] = {0, 0};
        xadd_raw(e, "orders", 1, empty, lens);
    }
    HEALTHY(); /* 12. an unknown type: skipped */
    xadd_envelope(e, "{\"eventType\":\"order.exploded\",\"payload\":{\"orderId\":\"ok-1\"}}");
    HEALTHY();
    cr_assert_eq(healthy, POISON_HEALTHY);
#undef HEALTHY
}

/* Which entry is which, by what the dead letter says. */
#define DEAD_LETTERS                                                                               \
    "SELECT readmodel, coalesce(event_type, '-'), CASE "                                           \
    "WHEN error ~ '^invalid JSON in field \"event\" at line 1 column [0-9]+: maximum parsing "     \
    "depth' THEN 'depth' "                                                                         \
    "WHEN error ~ '^invalid JSON in field \"event\" at line 1 column [0-9]+' THEN 'bad json' "     \
    "WHEN error ~ '^the value of field \"[a-z_]+\" is not valid UTF-8$' THEN 'utf8' "              \
    "WHEN error ~ '^key column \"id\" of action 1 for \"order.placed\" is null' THEN 'null key' "  \
    "WHEN error = 'event has no type' THEN 'no type' "                                             \
    "WHEN sqlstate IS NOT NULL AND error ~ '^could not apply: ' THEN sqlstate "                    \
    "ELSE error END FROM projector.dead_letters ORDER BY readmodel, entry_ms, entry_seq"

static void check(Env *e)
{
    /* The healthy orders and the 16 MiB one are applied, nothing else. The flat event with
     * bad UTF-8 in aggregate_id fails as a whole: every field of an event is text. */
    testenv_daemon_expect(e,
                          "SELECT count(*) FILTER (WHERE id LIKE 'ok-%'), string_agg(id, ',' "
                          "ORDER BY id) FILTER (WHERE id NOT LIKE 'ok-%') FROM order_read_model",
                          "11|big");
    /* customer_stats is keyed by customerId: the orders without an orderId count there. */
    testenv_daemon_expect(e, "SELECT orders, total_spent FROM customer_stats", "14|14.00");
    /* Dead letters, in stream order; the unknown type is skipped, not dead-lettered, and
     * customer_stats does not handle order.item_added. */
    testenv_daemon_expect(e, DEAD_LETTERS,
                          "customer_stats|-|bad json\n"
                          "customer_stats|-|utf8\n"
                          "customer_stats|-|utf8\n"
                          "customer_stats|order.placed|22P02\n"
                          "customer_stats|-|depth\n"
                          "customer_stats|-|no type\n"
                          "customer_stats|-|no type\n"
                          "orders|-|bad json\n"
                          "orders|-|utf8\n"
                          "orders|-|utf8\n"
                          "orders|order.placed|null key\n"
                          "orders|order.placed|null key\n"
                          "orders|order.placed|22P02\n"
                          "orders|order.item_added|22003\n"
                          "orders|-|depth\n"
                          "orders|-|no type\n"
                          "orders|-|no type");
    testenv_daemon_expect(
        e, "SELECT count(*) FROM projector.dead_letters WHERE raw IS NULL OR raw = '{}'", "0");
    testenv_daemon_expect(e, "SELECT item_count FROM order_read_model WHERE id = 'ok-1'", "1");
    char *body = NULL;
    cr_assert_eq(testenv_http_get(e->port, "/lag", &body), 200);
    cr_expect(strstr(body, "\"stopped\"") == NULL && strstr(body, "\"retrying\"") == NULL,
              "a read model is not running: %s", body);
    free(body);
    int code = testenv_kill(e->pid, SIGTERM);
    e->pid = 0;
    cr_expect_eq(code, 0, "exit %d on SIGTERM (log: %s)", code, e->log);
}

static void run_poison(const char *name, int batch, int parallel)
{
    Env e;
    env_setup(&e, name, batch);
    char line[96];
    /* The 16 MiB payload is an event to apply here; the limit has test_evsize.c. */
    snprintf(line, sizeof line, "parallel_apply: %d\nmax_event_bytes: %u\n", parallel,
             2 * POISON_BIG);
    testenv_append_file(e.config, line);
    publish_all(&e);
    testenv_daemon_settle(&e, "orders");
    check(&e);
    if (parallel > 1) {
        char *log = NULL;
        size_t len;
        PjError err;
        cr_assert_eq(read_file(e.log, &log, &len, &err), 0, "%s", err.message);
        cr_expect(strstr(log, "applying it on one session") != NULL,
                  "no batch was spread over the sessions (log: %s)", e.log);
        free(log);
    }
    env_done(&e);
}

Test(poison, every_bad_entry_in_one_batch, .timeout = 180)
{
    run_poison("poison1", 1000, 1);
}

Test(poison, every_bad_entry_one_at_a_time, .timeout = 180)
{
    run_poison("poison2", 1, 1);
}

/* Spread over three sessions: the batch of the healthy and refused events is at least half
 * the limit, so it goes parallel, and a refused event rolls every partition back. */
Test(poison, every_bad_entry_in_a_parallel_batch, .timeout = 180)
{
    run_poison("poison3", 24, 3);
}
