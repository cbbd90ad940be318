/* test_daemon.c - the daemon end to end against real Redis and PostgreSQL: /wait and
 * read-your-writes, poison isolation, the version guard, and exactly-once effect across
 * SIGKILL. Each test has its own database, Redis database and HTTP port.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "os/now.h"
#include "testenv.h"

typedef TestDaemon Env;

static void env_setup(Env *e, const char *name, int batch)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    testenv_daemon_setup(e, name, NULL, batch, 200);
}

static void env_start(Env *e)
{
    const char *args[] = {"run", "--config", e->config, NULL};
    e->pid = testenv_spawn(args, e->log);
    cr_assert(testenv_wait_http(e->port, 20000), "the daemon did not answer /healthz (log: %s)",
              e->log);
}

/* SIGTERM must finish the batch in flight and exit 0. */
static void env_stop(Env *e)
{
    if (e->pid > 0) {
        int code = testenv_kill(e->pid, SIGTERM);
        cr_assert_eq(code, 0, "the daemon exited with %d on SIGTERM (log: %s)", code, e->log);
    }
    e->pid = 0;
}

static void env_done(Env *e)
{
    testenv_daemon_done(e);
}

/* Publishes a flat-fields event; returns its entry ID in id (48 bytes). */
static void publish(Env *e, const char *stream, const char *type, const char *version,
                    const char *payload, char *id)
{
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", type, "event_id", type, "version",
                          version, "occurred_at", "2026-01-15T10:00:00Z", "payload", payload);
    testenv_xadd(e->redis, stream, f, id);
    json_decref(f);
}

/* GET /wait for one entry; returns the status and the body (caller frees). */
static int wait_entry(Env *e, const char *stream, const char *id, int timeout_ms, char **body)
{
    char path[256];
    snprintf(path, sizeof path, "/wait?stream=%s&id=%s&timeout_ms=%d", stream, id, timeout_ms);
    return testenv_http_get(e->port, path, body);
}

static void wait_applied(Env *e, const char *stream, const char *id)
{
    char *body = NULL;
    int status = wait_entry(e, stream, id, 30000, &body);
    cr_assert_eq(status, 200, "/wait for %s %s answered %d: %s (log: %s)", stream, id, status,
                 body ? body : "", e->log);
    free(body);
}

/* order.placed of order o-<n> for customer c-1, for amount EUR; its entry ID into id. */
static void publish_order(Env *e, int n, const char *amount, char *id)
{
    char payload[256];
    snprintf(payload, sizeof payload,
             "{\"orderId\":\"o-%d\",\"customerId\":\"c-1\",\"items\":[],"
             "\"total\":{\"amount\":\"%s\",\"currency\":\"EUR\"}}",
             n, amount);
    publish(e, "orders", "order.placed", "1", payload, id);
}

static char *query(Env *e, const char *sql)
{
    return testenv_query_text(e->pg, sql);
}

/* ---- the sample scenario (deploy/sample/README.md) ---- */

Test(daemon, sample_feed_gives_the_expected_rows, .timeout = 120)
{
    Env e;
    json_t *last = NULL;
    env_setup(&e, "sample", 1000);
    env_start(&e);
    int n = testenv_publish_file(e.redis, PROJECTOR_SOURCE_DIR "/deploy/sample/feed.jsonl", &last);
    cr_assert_eq(n, 14);
    wait_applied(&e, "orders", json_string_value(json_object_get(last, "orders")));
    wait_applied(&e, "customers", json_string_value(json_object_get(last, "customers")));
    json_decref(last);
    PQclear(testenv_sql(e.pg, "SET TimeZone = 'UTC'"));
    char *customers = query(&e, "SELECT id, name, email FROM customers ORDER BY id");
    cr_assert_str_eq(customers, "c-1|Alice Martin-Lefebvre|alice@example.com\n"
                                "c-2|Bob Stone|bob@example.com\n"
                                "c-3|Chlo\xc3\xa9 Durand|\\N");
    char *orders =
        query(&e, "SELECT id, customer_id, customer_name, status, item_count, total, currency, "
                  "created_at, confirmed_at, version FROM order_read_model ORDER BY id");
    cr_assert_str_eq(
        orders,
        "o-1001|c-1|Alice Martin-Lefebvre|confirmed|3|39.99|EUR|2026-01-15 10:10:00+00|"
        "2026-01-15 10:45:00+00|1\n"
        "o-1003|c-3|Chlo\xc3\xa9 Durand|confirmed|5|120.50|EUR|2026-01-15 10:35:00+00|"
        "2026-01-15 11:00:00+00|1\n"
        "o-1004|c-1|Alice Martin-Lefebvre|pending|1|99.99|EUR|2026-01-15 10:40:00+00|\\N|1\n"
        "o-1005|c-2|Bob Stone|pending|2|45.00|EUR|2026-01-15 10:50:00+00|\\N|1");
    char *stats =
        query(&e, "SELECT customer_id, orders, orders_cancelled, total_spent, last_order_at "
                  "FROM customer_stats ORDER BY customer_id");
    cr_assert_str_eq(stats, "c-1|2|0|139.98|2026-01-15 10:40:00+00\n"
                            "c-2|2|1|60.00|2026-01-15 10:50:00+00\n"
                            "c-3|1|0|120.50|2026-01-15 10:35:00+00");
    char *dead = query(&e, "SELECT count(*) FROM projector.dead_letters");
    cr_assert_str_eq(dead, "0");
    char *applied = query(&e, "SELECT projector.has_applied('orders', 'orders', '0-1'), "
                              "projector.has_applied('orders', 'orders', '99999999999999-0')");
    cr_assert_str_eq(applied, "t|f");
    free(customers);
    free(orders);
    free(stats);
    free(dead);
    free(applied);
    env_stop(&e);
    env_done(&e);
}

/* ---- read-your-writes ---- */

Test(daemon, wait_returns_when_the_row_is_visible, .timeout = 120)
{
    Env e;
    char id[48];
    env_setup(&e, "wait", 100);
    env_start(&e);
    publish(&e, "customers", "customer.registered", "1",
            "{\"customerId\":\"c-1\",\"name\":\"Ada\",\"email\":\"ada@example.com\"}", id);
    wait_applied(&e, "customers", id);
    publish(&e, "orders", "order.placed", "1",
            "{\"orderId\":\"o-1\",\"customerId\":\"c-1\",\"items\":[{\"sku\":\"a\"}],"
            "\"total\":{\"amount\":\"12.50\",\"currency\":\"EUR\"}}",
            id);
    char *body = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(wait_entry(&e, "orders", id, 10000, &body), 200, "%s", body);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* Visible to a query issued right after the answer. */
    char *row =
        query(&e, "SELECT id, customer_name, status, item_count, total FROM order_read_model");
    cr_assert_str_eq(row, "o-1|Ada|pending|1|12.50");
    cr_assert(strstr(body, "\"applied\"") != NULL, "%s", body);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    cr_log_info("XADD to /wait 200: %.1f ms", ms);
    free(row);
    free(body);

    /* customer_stats handles order.placed too; customers skips it. */
    body = NULL;
    cr_assert_eq(testenv_http_get(e.port, "/lag/customer_stats", &body), 200);
    cr_assert(strstr(body, "\"customer_stats\"") != NULL, "%s", body);
    free(body);
    env_stop(&e);
    env_done(&e);
}

Test(daemon, wait_times_out_and_rejects_bad_requests, .timeout = 120)
{
    Env e;
    char *body = NULL;
    env_setup(&e, "waitbad", 100);
    env_start(&e);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(wait_entry(&e, "orders", "99999999999999-0", 300, &body), 408, "%s", body);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    cr_assert_geq(ms, 290.0, "answered 408 after only %.0f ms", ms);
    cr_assert(strstr(body, "\"orders\"") != NULL && strstr(body, "\"customer_stats\"") != NULL,
              "%s", body);
    free(body);
    body = NULL;
    cr_assert_eq(wait_entry(&e, "orders", "not-an-id", 300, &body), 400, "%s", body);
    free(body);
    body = NULL;
    cr_assert_eq(wait_entry(&e, "nosuchstream", "1-0", 300, &body), 404, "%s", body);
    free(body);
    env_stop(&e);
    env_done(&e);
}

/* ---- poison ---- */

Test(daemon, bad_events_are_dead_lettered_and_the_rest_applied, .timeout = 120)
{
    Env e;
    char id[48], last[48];
    env_setup(&e, "poison", 1000);
    publish(&e, "customers", "customer.registered", "1",
            "{\"customerId\":\"c-1\",\"name\":\"Ada\"}", id);
    for (int i = 1; i <= 10; i++) {
        char payload[256];
        const char *amount = i == 5 ? "abc" : "10.00"; /* does not cast to numeric */
        snprintf(payload, sizeof payload,
                 "{\"orderId\":\"o-%d\",\"customerId\":\"c-1\",\"items\":[],"
                 "\"total\":{\"amount\":\"%s\",\"currency\":\"EUR\"}}",
                 i, amount);
        if (i == 7)
            snprintf(payload, sizeof payload, "{\"orderId\": broken");
        publish(&e, "orders", "order.placed", "1", payload, last);
    }
    env_start(&e); /* everything is already there: one batch holds all ten */
    wait_applied(&e, "orders", last);
    char *n = query(&e, "SELECT count(*), sum(total) FROM order_read_model");
    cr_assert_str_eq(n, "8|80.00");
    free(n);
    char *dead =
        query(&e, "SELECT readmodel, sqlstate IS NOT NULL, error LIKE '%JSON%', raw ? 'payload' "
                  "FROM projector.dead_letters ORDER BY readmodel, entry_ms, entry_seq");
    cr_assert_str_eq(dead, "customer_stats|t|f|t\n"
                           "customer_stats|f|t|t\n"
                           "orders|t|f|t\n"
                           "orders|f|t|t");
    free(dead);
    char *state =
        query(&e, "SELECT sqlstate FROM projector.dead_letters WHERE sqlstate IS NOT NULL LIMIT 1");
    cr_assert_str_eq(state, "22P02");
    free(state);
    char *stats = query(&e, "SELECT orders, total_spent FROM customer_stats");
    cr_assert_str_eq(stats, "8|80.00");
    free(stats);
    char *ck = query(&e, "SELECT readmodel, stream, applied_total FROM projector.checkpoints "
                         "WHERE stream = 'orders' ORDER BY readmodel");
    cr_assert_str_eq(ck, "customer_stats|orders|8\norders|orders|8");
    free(ck);
    env_stop(&e);
    env_done(&e);
}

static bool log_contains(const Env *e, const char *text)
{
    char *log = NULL;
    PjError err;
    for (int i = 0; i < 100; i++) {
        if (read_file(e->log, &log, NULL, &err) == 0) {
            bool found = strstr(log, text) != NULL;
            free(log);
            if (found)
                return true;
        }
        usleep(50000);
    }
    return false;
}

/* A backlog of one full batch and a short one (under half the limit): the short batch, read ahead
 * while the full one commits, is applied next, and the full one is never taken up again (it once
 * was, and its stale checkpoint failed: a needless retry and reconnect at the end of each drain).
 */
Test(daemon, a_backlog_ending_in_a_short_batch_needs_no_retry, .timeout = 120)
{
    Env e;
    char id[48], last[48];
    env_setup(&e, "short_tail", 100);
    publish(&e, "customers", "customer.registered", "1",
            "{\"customerId\":\"c-1\",\"name\":\"Ada\"}", id);
    for (int i = 0; i < 130; i++)
        publish_order(&e, i, "1.00", last);
    env_start(&e);
    wait_applied(&e, "orders", last);
    testenv_daemon_expect(&e, "SELECT orders, total_spent FROM customer_stats", "130|130.00");
    env_stop(&e);
    char *log = NULL;
    PjError err;
    cr_assert_eq(read_file(e.log, &log, NULL, &err), 0, "%s", err.message);
    cr_expect(strstr(log, "retrying") == NULL, "a batch was retried (log: %s)", e.log);
    free(log);
    env_done(&e);
}

/* retry.attempts: an event PostgreSQL refuses is tried that many times, with a backoff
 * delay between, before it is dead-lettered; the rest of its batch is applied once. */
Test(daemon, a_refused_event_is_tried_the_configured_times, .timeout = 120)
{
    Env e;
    char id[48], last[48];
    env_setup(&e, "attempts", 1000);
    FILE *f = fopen(e.config, "a");
    cr_assert_not_null(f);
    fputs("retry:\n  attempts: 3\n  backoff_min_ms: 20\n  backoff_max_ms: 40\n", f);
    fclose(f);
    publish(&e, "customers", "customer.registered", "1",
            "{\"customerId\":\"c-1\",\"name\":\"Ada\"}", id);
    for (int i = 1; i <= 6; i++)
        publish_order(&e, i, i == 3 ? "not a number" : "2.50", last);
    env_start(&e);
    wait_applied(&e, "orders", last);
    testenv_daemon_expect(&e, "SELECT count(*), sum(total) FROM order_read_model", "5|12.50");
    testenv_daemon_expect(&e,
                          "SELECT readmodel, attempts, sqlstate FROM projector.dead_letters "
                          "ORDER BY readmodel",
                          "customer_stats|3|22P02\norders|3|22P02");
    testenv_daemon_expect(&e, "SELECT orders, total_spent FROM customer_stats", "5|12.50");
    cr_assert(log_contains(&e, "(attempt 2 of 3)"), "no second attempt logged in %s", e.log);
    env_stop(&e);
    env_done(&e);
}

/* SIGINT (Ctrl-C) stops like SIGTERM: the batch finished, acknowledged, exit 0. */
Test(daemon, sigint_stops_cleanly, .timeout = 60)
{
    Env e;
    char id[48];
    env_setup(&e, "sigint", 100);
    env_start(&e);
    publish(&e, "customers", "customer.registered", "1",
            "{\"customerId\":\"c-1\",\"name\":\"Ada\"}", id);
    wait_applied(&e, "customers", id);
    int code = testenv_kill(e.pid, SIGINT);
    e.pid = 0;
    cr_assert_eq(code, 0, "the daemon exited with %d on SIGINT (log: %s)", code, e.log);
    cr_assert(log_contains(&e, "received Interrupt"), "no SIGINT in %s", e.log);
    redisReply *rep = redisCommand(e.redis, "XPENDING customers projector:customers");
    cr_assert(rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1);
    cr_assert_eq(rep->element[0]->integer, 0, "entries left pending after SIGINT");
    freeReplyObject(rep);
    env_done(&e);
}

/* ---- version guard ---- */

Test(daemon, older_or_repeated_versions_change_nothing, .timeout = 120)
{
    Env e;
    char id[48];
    env_setup(&e, "version", 100);
    env_start(&e);
    publish(&e, "customers", "customer.registered", "1",
            "{\"customerId\":\"c-1\",\"name\":\"Ada\"}", id);
    const char *placed = "{\"orderId\":\"o-1\",\"customerId\":\"c-1\",\"items\":[1,2],"
                         "\"total\":{\"amount\":\"5\",\"currency\":\"EUR\"}}";
    publish(&e, "orders", "order.placed", "2", placed, id);
    publish(&e, "orders", "order.confirmed", "3", "{\"orderId\":\"o-1\"}", id);
    wait_applied(&e, "orders", id);
    /* A re-delivered copy (same version) and an older one must not reset the status. */
    publish(&e, "orders", "order.placed", "2", placed, id);
    publish(&e, "orders", "order.placed", "1",
            "{\"orderId\":\"o-1\",\"customerId\":\"c-9\",\"items\":[],"
            "\"total\":{\"amount\":\"999\",\"currency\":\"USD\"}}",
            id);
    wait_applied(&e, "orders", id);
    char *row = query(
        &e,
        "SELECT customer_id, status, item_count, total, currency, version FROM order_read_model");
    cr_assert_str_eq(row, "c-1|confirmed|2|5.00|EUR|2");
    free(row);
    /* A newer version does apply. */
    publish(&e, "orders", "order.placed", "4",
            "{\"orderId\":\"o-1\",\"customerId\":\"c-1\",\"items\":[1],"
            "\"total\":{\"amount\":\"7\",\"currency\":\"EUR\"}}",
            id);
    wait_applied(&e, "orders", id);
    row = query(&e, "SELECT status, item_count, total, version FROM order_read_model");
    cr_assert_str_eq(row, "pending|1|7.00|4");
    free(row);
    env_stop(&e);
    env_done(&e);
}

/* ---- exactly once across SIGKILL ---- */

#define KILL_CUSTOMERS 10
#define KILL_ORDERS 4000

/* Writes a deterministic feed: customers first (all fit in the first batch, so lookups
 * never depend on timing), then orders placed, items added, cancellations and renames
 * interleaved. Counts the placements per customer into placed[]. */
static char *write_kill_feed(const char *dir, int *placed, long *stats_events)
{
    StrBuf sb = {0};
    for (int c = 0; c < KILL_CUSTOMERS; c++)
        strbuf_appendf(
            &sb,
            "{\"stream\":\"customers\",\"fields\":{\"type\":\"customer.registered\","
            "\"version\":\"1\",\"payload\":{\"customerId\":\"c-%d\",\"name\":\"Name %d\"}}}\n",
            c, c);
    unsigned seed = 42;
    for (int o = 0; o < KILL_ORDERS; o++) {
        int c = (int)(rand_r(&seed) % KILL_CUSTOMERS);
        placed[c]++;
        (*stats_events)++;
        strbuf_appendf(
            &sb,
            "{\"stream\":\"orders\",\"envelope\":{\"eventType\":\"order.placed\",\"version\":1,"
            "\"timestamp\":\"2026-01-15T10:00:00Z\",\"payload\":{\"orderId\":\"o-%d\","
            "\"customerId\":\"c-%d\",\"items\":[1,2],\"total\":{\"amount\":\"%d.25\","
            "\"currency\":\"EUR\"}}}}\n",
            o, c, o % 50);
        strbuf_appendf(
            &sb,
            "{\"stream\":\"orders\",\"envelope\":{\"eventType\":\"order.item_added\",\"version\":2,"
            "\"payload\":{\"orderId\":\"o-%d\",\"qty\":%d}}}\n",
            o / 2, 1 + o % 3);
        if (o % 7 == 0)
            (*stats_events)++;
        if (o % 7 == 0)
            strbuf_appendf(
                &sb,
                "{\"stream\":\"orders\",\"envelope\":{\"eventType\":\"order.cancelled\","
                "\"version\":3,\"payload\":{\"orderId\":\"o-%d\",\"customerId\":\"c-%d\"}}}\n",
                o / 3, c);
        if (o % 400 == 0)
            strbuf_appendf(&sb,
                           "{\"stream\":\"customers\",\"fields\":{\"type\":\"customer.renamed\","
                           "\"version\":\"2\",\"payload\":{\"customerId\":\"c-%d\",\"name\":"
                           "\"Renamed %d\"}}}\n",
                           c, o);
    }
    char *path = testenv_write_file(dir, "feed.jsonl", sb.buf);
    strbuf_done(&sb);
    return path;
}

static const char dump_sql[] =
    "SELECT 'o', id, customer_id, customer_name, status, item_count, total, version "
    "FROM order_read_model UNION ALL "
    "SELECT 's', customer_id, orders::text, orders_cancelled::text, total_spent::text, "
    "NULL, NULL, NULL FROM customer_stats UNION ALL "
    "SELECT 'c', id, name, NULL, NULL, NULL, NULL, NULL FROM customers ORDER BY 1, 2";

/* Publishes the feed and runs the daemon, SIGKILLing it `kills` times as customer_stats
 * passes evenly spaced points of its stats_events; waits for the end of both streams and
 * returns a dump of the read tables. *ret_mid counts the kills that hit mid-drain. */
static char *run_feed(Env *e, const char *feed, int kills, long stats_events, int *ret_mid)
{
    json_t *last = NULL;
    (void)testenv_publish_file(e->redis, feed, &last);
    env_start(e);
    *ret_mid = 0;
    for (int k = 1; k <= kills; k++) {
        long target = stats_events * k / (kills + 1), done = 0;
        for (int tries = 0; tries < 20000 && done < target; tries++) {
            char *n = query(e, "SELECT coalesce(sum(applied_total), 0) FROM projector.checkpoints "
                               "WHERE readmodel = 'customer_stats'");
            done = atol(n);
            free(n);
            if (done < target)
                usleep(2000);
        }
        cr_assert_eq(testenv_kill(e->pid, SIGKILL), 128 + SIGKILL);
        char *n = query(e, "SELECT coalesce(sum(applied_total), 0) FROM projector.checkpoints "
                           "WHERE readmodel = 'customer_stats'");
        cr_log_info("kill %d at %ld of %ld customer_stats events", k, atol(n), stats_events);
        *ret_mid += atol(n) < stats_events;
        free(n);
        e->pid = 0;
        env_start(e);
    }
    wait_applied(e, "orders", json_string_value(json_object_get(last, "orders")));
    wait_applied(e, "customers", json_string_value(json_object_get(last, "customers")));
    json_decref(last);
    return query(e, dump_sql);
}

Test(daemon, sigkill_mid_drain_loses_and_duplicates_nothing, .timeout = 600)
{
    Env clean, killed;
    int placed[KILL_CUSTOMERS] = {0};
    env_setup(&clean, "clean", 25);
    env_setup(&killed, "killed", 25);
    long stats_events = 0;
    int mid = 0;
    char *feed = write_kill_feed(clean.dir, placed, &stats_events);
    char *expected = run_feed(&clean, feed, 0, stats_events, &mid);
    char *got = run_feed(&killed, feed, 4, stats_events, &mid);
    cr_assert_geq(mid, 3, "only %d of 4 kills landed before the drain ended", mid);
    cr_assert(strcmp(expected, got) == 0, "tables differ after SIGKILLs (logs: %s, %s)", clean.log,
              killed.log);
    /* And independently of any run: orders placed per customer. */
    for (int c = 0; c < KILL_CUSTOMERS; c++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT orders FROM customer_stats WHERE customer_id = 'c-%d'",
                 c);
        char *n = query(&killed, sql);
        cr_assert_eq(atoi(n), placed[c], "customer c-%d: %s orders counted, %d placed", c, n,
                     placed[c]);
        free(n);
    }
    char *dead = query(&killed, "SELECT count(*) FROM projector.dead_letters");
    cr_assert_str_eq(dead, "0");
    free(dead);
    free(expected);
    free(got);
    free(feed);
    env_stop(&clean);
    env_stop(&killed);
    env_done(&clean);
    env_done(&killed);
}

/* ---- on_error: stop ---- */

static const char strict_yaml[] = "readmodel: strict\n"
                                  "table: strict_counts\n"
                                  "streams: [tally]\n"
                                  "on_error: stop\n"
                                  "key: [id]\n"
                                  "columns:\n"
                                  "  id: text\n"
                                  "  n: integer\n"
                                  "on:\n"
                                  "  tally.set:\n"
                                  "    upsert: { id: $.payload.id, n: $.payload.n }\n";

static const char lenient_yaml[] = "readmodel: lenient\n"
                                   "table: lenient_counts\n"
                                   "streams: [tally]\n"
                                   "key: [id]\n"
                                   "columns:\n"
                                   "  id: text\n"
                                   "  n: integer\n"
                                   "on:\n"
                                   "  tally.set:\n"
                                   "    upsert: { id: $.payload.id, n: $.payload.n }\n";

Test(daemon, on_error_stop_holds_the_read_model_at_the_bad_event, .timeout = 120)
{
    Env e;
    char first[48], bad[48], after[48];
    env_setup(&e, "stop", 100);
    char *models = xasprintf("%s/models", e.dir);
    cr_assert_eq(mkdir(models, 0755), 0);
    free(testenv_write_file(models, "strict.yaml", strict_yaml));
    free(testenv_write_file(models, "lenient.yaml", lenient_yaml));
    free(e.config);
    e.config = testenv_write_config(e.dir, e.redis_url, e.conninfo, e.port, models, 100, 200);
    publish(&e, "tally", "tally.set", "1", "{\"id\":\"a\",\"n\":1}", first);
    publish(&e, "tally", "tally.set", "1", "{\"id\":\"b\",\"n\":\"lots\"}", bad);
    publish(&e, "tally", "tally.set", "1", "{\"id\":\"c\",\"n\":3}", after);
    env_start(&e);

    /* The lenient read model dead-letters the bad event and goes on. */
    char *body = NULL, path[256];
    snprintf(path, sizeof path, "/wait?stream=tally&id=%s&readmodel=lenient&timeout_ms=20000",
             after);
    cr_assert_eq(testenv_http_get(e.port, path, &body), 200, "%s", body);
    free(body);
    /* The strict one stops at it: /wait answers 503 at once, /lag says why. */
    body = NULL;
    for (int i = 0; i < 200; i++) {
        free(body);
        body = NULL;
        snprintf(path, sizeof path, "/wait?stream=tally&id=%s&readmodel=strict&timeout_ms=100",
                 after);
        if (testenv_http_get(e.port, path, &body) == 503)
            break;
    }
    cr_assert(strstr(body, "stopped") != NULL, "%s", body);
    free(body);
    body = NULL;
    cr_assert_eq(testenv_http_get(e.port, "/lag/strict", &body), 200);
    cr_assert(strstr(body, "\"state\":\"stopped\"") != NULL, "%s", body);
    cr_assert(strstr(body, bad) != NULL, "the reason does not name entry %s: %s", bad, body);
    free(body);
    char *rows = query(&e, "SELECT string_agg(id || '=' || n, ',' ORDER BY id) FROM strict_counts");
    cr_assert_str_eq(rows, "a=1");
    free(rows);
    rows = query(&e, "SELECT string_agg(id || '=' || n, ',' ORDER BY id) FROM lenient_counts");
    cr_assert_str_eq(rows, "a=1,c=3");
    free(rows);
    char *dead = query(&e, "SELECT readmodel FROM projector.dead_letters");
    cr_assert_str_eq(dead, "lenient");
    free(dead);
    /* Nothing after the bad event was acknowledged for the strict read model. */
    redisReply *rep = redisCommand(e.redis, "XPENDING tally projector:strict");
    cr_assert_eq(rep->element[0]->integer, 2);
    freeReplyObject(rep);
    env_stop(&e);
    free(models);
    env_done(&e);
}

/* ---- a stream trimmed past the checkpoint ---- */

Test(daemon, trimmed_entries_are_reported_as_a_gap, .timeout = 120)
{
    Env e;
    char ids[5][48];
    env_setup(&e, "gap", 100);
    for (int i = 0; i < 5; i++) {
        char payload[96];
        snprintf(payload, sizeof payload, "{\"customerId\":\"c-%d\",\"name\":\"N%d\"}", i, i);
        publish(&e, "customers", "customer.registered", "1", payload, ids[i]);
    }
    freeReplyObject(redisCommand(e.redis, "XTRIM customers MAXLEN 2"));
    env_start(&e);
    wait_applied(&e, "customers", ids[4]);
    char *rows = query(&e, "SELECT string_agg(id, ',' ORDER BY id) FROM customers");
    cr_assert_str_eq(rows, "c-3,c-4");
    free(rows);
    env_stop(&e);
    char *log = NULL;
    PjError err;
    cr_assert_eq(read_file(e.log, &log, NULL, &err), 0);
    char expect[256]; /* as the log's logfmt writes it: the quotes escaped */
    snprintf(expect, sizeof expect,
             "gap in stream \\\"customers\\\": entries after 0-0 and before %s were removed before "
             "this read model read them (3 entries)",
             ids[3]);
    cr_assert(strstr(log, expect) != NULL, "no \"%s\" in the log", expect);
    free(log);
    env_done(&e);
}

/* Entries deleted (XDEL) before the read model read them: Redis cannot count the group's
 * entries-read across them, so the gap shows through max-deleted-entry-id. */
Test(daemon, deleted_entries_are_reported_as_a_gap, .timeout = 120)
{
    Env e;
    char ids[6][48];
    env_setup(&e, "xdel", 100);
    for (int i = 0; i < 3; i++) {
        char payload[96];
        snprintf(payload, sizeof payload, "{\"customerId\":\"c-%d\",\"name\":\"N%d\"}", i, i);
        publish(&e, "customers", "customer.registered", "1", payload, ids[i]);
    }
    env_start(&e);
    wait_applied(&e, "customers", ids[2]);
    env_stop(&e);
    for (int i = 3; i < 6; i++) {
        char payload[96];
        snprintf(payload, sizeof payload, "{\"customerId\":\"c-%d\",\"name\":\"N%d\"}", i, i);
        publish(&e, "customers", "customer.registered", "1", payload, ids[i]);
    }
    freeReplyObject(redisCommand(e.redis, "XDEL customers %s %s", ids[3], ids[4]));
    env_start(&e);
    wait_applied(&e, "customers", ids[5]);
    char *rows = query(&e, "SELECT string_agg(id, ',' ORDER BY id) FROM customers");
    cr_assert_str_eq(rows, "c-0,c-1,c-2,c-5");
    free(rows);
    env_stop(&e);
    char expect[256]; /* as the log's logfmt writes it: the quotes escaped */
    snprintf(expect, sizeof expect,
             "gap in stream \\\"customers\\\": entries after %s and before %s were removed before "
             "this read model read them",
             ids[2], ids[5]);
    cr_assert(log_contains(&e, expect), "no \"%s\" in %s", expect, e.log);
    env_done(&e);
}

/* ---- SIGHUP ---- */

Test(daemon, sighup_reloads_valid_models_and_keeps_the_running_ones_otherwise, .timeout = 120)
{
    Env e;
    char id[48];
    env_setup(&e, "reload", 100);
    char *models = xasprintf("%s/models", e.dir);
    cr_assert_eq(mkdir(models, 0755), 0);
    free(testenv_write_file(models, "lenient.yaml", lenient_yaml));
    free(e.config);
    e.config = testenv_write_config(e.dir, e.redis_url, e.conninfo, e.port, models, 100, 200);
    env_start(&e);
    publish(&e, "tally", "tally.set", "1", "{\"id\":\"a\",\"n\":1}", id);
    wait_applied(&e, "tally", id);
    char first[48];
    snprintf(first, sizeof first, "%s", id);

    /* An invalid file: reported, and the running read model goes on. */
    free(testenv_write_file(models, "broken.yaml", "readmodel: broken\ntable: [x]\n"));
    cr_assert_eq(kill(e.pid, SIGHUP), 0);
    cr_assert(log_contains(&e, "cannot reload"), "no refusal in %s", e.log);
    cr_assert(log_contains(&e, "broken.yaml:2:8:"), "the error has no position in %s", e.log);
    publish(&e, "tally", "tally.set", "1", "{\"id\":\"b\",\"n\":2}", id);
    wait_applied(&e, "tally", id);

    /* A valid new read model: it starts, from the beginning of its stream. */
    char *broken = xasprintf("%s/broken.yaml", models);
    cr_assert_eq(unlink(broken), 0);
    free(broken);
    free(testenv_write_file(models, "strict.yaml", strict_yaml));
    cr_assert_eq(kill(e.pid, SIGHUP), 0);
    /* Through the reload the HTTP socket stays open: requests wait, none is refused. */
    int refused = 0, asked = 0;
    for (int64_t until = now_monotonic_ms() + 1500; now_monotonic_ms() < until; asked++)
        refused += testenv_http_get(e.port, "/healthz", NULL) != 200;
    cr_assert_eq(refused, 0, "%d of %d /healthz requests failed during a reload", refused, asked);
    cr_assert(log_contains(&e, "reloading 2 read models"), "no reload in %s", e.log);
    char *body = NULL, path[256];
    snprintf(path, sizeof path, "/wait?stream=tally&id=%s&readmodel=strict&timeout_ms=20000", id);
    int status = -1;
    for (int i = 0; i < 100 && status != 200; i++) {
        free(body);
        body = NULL;
        status = testenv_http_get(e.port, path, &body);
        if (status != 200)
            usleep(100000);
    }
    cr_assert_eq(status, 200, "%s", body ? body : "");
    free(body);
    char *rows = query(&e, "SELECT string_agg(id || '=' || n, ',' ORDER BY id) FROM strict_counts");
    cr_assert_str_eq(rows, "a=1,b=2");
    free(rows);
    rows = query(&e, "SELECT string_agg(id || '=' || n, ',' ORDER BY id) FROM lenient_counts");
    cr_assert_str_eq(rows, "a=1,b=2");
    free(rows);
    /* An entry settled before the reloads still has its outcome, not just "settled". */
    snprintf(path, sizeof path, "/wait?stream=tally&id=%s&readmodel=lenient&timeout_ms=1000",
             first);
    cr_assert_eq(testenv_http_get(e.port, path, &body), 200, "%s", body ? body : "");
    cr_assert(strstr(body, "\"outcome\":\"applied\"") != NULL,
              "the outcome did not survive the reload: %s", body);
    free(body);
    /* The counters outlive the reloads: lenient applied both events, one before each. */
    cr_assert_eq(testenv_http_get(e.port, "/lag/lenient", &body), 200);
    json_t *lag = json_loads(body, 0, NULL);
    json_t *st = json_array_get(json_object_get(lag, "streams"), 0);
    cr_assert_eq(json_integer_value(json_object_get(st, "applied")), 2, "%s", body);
    json_decref(lag);
    free(body);
    env_stop(&e);
    free(models);
    env_done(&e);
}

/* SIGHUP reads the log settings of projector.yaml again: from logfmt at debug to JSON at
 * info, and a line that says so. */
Test(daemon, sighup_reads_the_log_level_and_format_again, .timeout = 60)
{
    Env e;
    env_setup(&e, "loglevel", 100);
    env_start(&e);
    cr_assert(log_contains(&e, " level=info msg="), "no logfmt line (log: %s)", e.log);
    testenv_append_file(e.config, "log_format: json\n");
    char *text = NULL;
    PjError err;
    cr_assert_eq(read_file(e.config, &text, NULL, &err), 0, "%s", err.message);
    char *at = strstr(text, "log_level: debug");
    cr_assert_not_null(at, "%s", text);
    memcpy(at, "log_level: info ", 16);
    free(testenv_write_file(e.dir, "projector.yaml", text));
    free(text);
    cr_assert_eq(kill(e.pid, SIGHUP), 0);
    bool said = false;
    for (int i = 0; i < 100 && !said; i++) {
        usleep(100000);
        said = log_contains(&e, "\"level\":\"info\",\"msg\":\"log level info, format json\"");
    }
    cr_assert(said, "no JSON line saying the new settings (log: %s)", e.log);
    env_stop(&e);
    env_done(&e);
}

/* ---- a second daemon on the same read models ---- */

Test(daemon, a_second_daemon_stands_by_and_takes_over, .timeout = 180)
{
    Env a, b;
    char id[48];
    env_setup(&a, "standby", 50);
    /* b: same database and Redis database, its own HTTP port and log */
    b = a;
    b.dir = testenv_tmpdir();
    b.port = testenv_free_port();
    b.config = testenv_write_config(b.dir, a.redis_url, a.conninfo, b.port,
                                    PROJECTOR_SOURCE_DIR "/readmodels", 50, 200);
    b.log = xasprintf("%s/projector.log", b.dir);
    env_start(&a);
    /* a's workers take their locks after its HTTP server is up: let them, or b may win. */
    cr_assert(testenv_wait_caught_up(a.port, 20000), "a is not running (log: %s)", a.log);
    env_start(&b);
    publish(&a, "customers", "customer.registered", "1",
            "{\"customerId\":\"c-1\",\"name\":\"Ada\"}", id);
    for (int i = 0; i < 400; i++)
        publish_order(&a, i, "1.00", id);
    /* b may still be starting (migrations, its sessions) when the events are in. */
    char *body = NULL;
    bool standing_by = false;
    for (int i = 0; i < 200 && !standing_by; i++) {
        free(body);
        cr_assert_eq(testenv_http_get(b.port, "/lag/customer_stats", &body), 200);
        standing_by = strstr(body, "another process") != NULL;
        if (!standing_by)
            usleep(50000);
    }
    cr_assert(standing_by, "b is not standing by after 10 s: %s", body);
    free(body);
    cr_assert_eq(testenv_kill(a.pid, SIGKILL), 128 + SIGKILL);
    a.pid = 0;
    /* b takes over once a's sessions are gone, and the counters are exact. */
    char path[160];
    snprintf(path, sizeof path, "/wait?stream=orders&id=%s&timeout_ms=60000", id);
    body = NULL;
    cr_assert_eq(testenv_http_get(b.port, path, &body), 200, "%s (log: %s)", body, b.log);
    free(body);
    char *stats = query(&a, "SELECT orders, total_spent FROM customer_stats");
    cr_assert_str_eq(stats, "400|400.00");
    free(stats);
    env_stop(&b);
    free(b.dir);
    free(b.config);
    free(b.log);
    env_done(&a);
}
