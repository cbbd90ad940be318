/* test_flood.c - floods of events PostgreSQL refuses among a few healthy ones: orders
 * placed for customers nobody registered (the lookup of the name finds nothing for a NOT
 * NULL column: the batches are probed for them once PostgreSQL has refused one), and
 * orders whose amount is not a number (found only by PostgreSQL: each batch that holds
 * some costs one isolating try however many it holds). The worker keeps reporting itself
 * running; SIGTERM in the middle of a flood ends the daemon promptly, and a restart
 * finishes the feed with every refused event dead-lettered exactly once.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "os/now.h"
#include "testenv.h"

#define FLOOD_BATCH 500
#define FLOOD_HEALTHY_EVERY 50 /* order i is healthy when i % this == 0 */
#define FLOOD_STOP_MS 10000    /* far above the README's bound, far below the 100 s seen */

typedef TestDaemon Env;

static void env_setup(Env *e, const char *name)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    testenv_daemon_setup(e, name, NULL, FLOOD_BATCH, 200);
}

typedef enum { FLOOD_GHOSTS, FLOOD_BAD_AMOUNTS } FloodKind;

/* Customer c-1, then n orders: every FLOOD_HEALTHY_EVERY-th a good one, the others for
 * customers never registered (FLOOD_GHOSTS) or with the amount "abc" (FLOOD_BAD_AMOUNTS).
 * Pipelined, so a flood of thousands is published in a blink. */
static void publish_flood(Env *e, int n, FloodKind kind)
{
    redisAppendCommand(e->redis, "XADD customers * type customer.registered version 1 payload %s",
                       "{\"customerId\":\"c-1\",\"name\":\"Ada\"}");
    for (int i = 0; i < n; i++) {
        char payload[192];
        bool healthy = i % FLOOD_HEALTHY_EVERY == 0, ghost = !healthy && kind == FLOOD_GHOSTS;
        snprintf(payload, sizeof payload,
                 "{\"orderId\":\"o-%d\",\"customerId\":\"%s%d\",\"items\":[1],"
                 "\"total\":{\"amount\":\"%s\",\"currency\":\"EUR\"}}",
                 i, ghost ? "ghost-" : "c-", ghost ? i : 1, healthy || ghost ? "1.00" : "abc");
        redisAppendCommand(e->redis,
                           "XADD orders * type order.placed version 1 occurred_at "
                           "2026-01-15T10:00:00Z payload %s",
                           payload);
    }
    for (int i = 0; i <= n; i++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(e->redis, (void **)&r), REDIS_OK, "XADD %d failed", i);
        cr_assert(r != NULL && r->type == REDIS_REPLY_STRING, "XADD %d: %s", i,
                  r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
        if (i == n)
            snprintf(e->last, sizeof e->last, "%s", r->str);
        freeReplyObject(r);
    }
}

static long query_long(const Env *e, const char *sql)
{
    char *text = testenv_query_text(e->pg, sql);
    long n = strtol(text, NULL, 10);
    free(text);
    return n;
}

static int log_count(const Env *e, const char *text)
{
    char *log = NULL;
    size_t len;
    PjError err;
    int n = 0;
    cr_assert_eq(read_file(e->log, &log, &len, &err), 0, "%s", err.message);
    for (const char *p = strstr(log, text); p != NULL; p = strstr(p + 1, text))
        n++;
    free(log);
    return n;
}

/* Every order of the feed is in exactly one place: the read table or a dead letter of
 * the orders read model (with the SQLSTATE of the kind); customer_stats looks nothing up,
 * so it counts every ghost, and refuses every bad amount. */
static void expect_each_order_once(const Env *e, int n, FloodKind kind)
{
    int bad = n - (n + FLOOD_HEALTHY_EVERY - 1) / FLOOD_HEALTHY_EVERY;
    char sql[512], want[64];
    snprintf(want, sizeof want, "%d|%d|%d", n - bad, bad, bad);
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM order_read_model), count(*), "
             "count(DISTINCT (entry_ms, entry_seq)) FROM projector.dead_letters "
             "WHERE readmodel = 'orders' AND sqlstate = '%s'",
             kind == FLOOD_GHOSTS ? "23502" : "22P02");
    testenv_daemon_expect(e, sql, want);
    snprintf(want, sizeof want, "%d", kind == FLOOD_GHOSTS ? n : n - bad);
    testenv_daemon_expect(e, "SELECT sum(orders) FROM customer_stats", want);
}

static int isolating_tries(const Env *e)
{
    return log_count(e, "readmodel=orders msg=\"isolating the events of a batch of");
}

/* Publishes a flood of n and runs the daemon until it has settled every entry. */
static void drain_flood(Env *e, const char *name, int n, FloodKind kind)
{
    env_setup(e, name);
    publish_flood(e, n, kind);
    testenv_daemon_settle(e, "orders");
    expect_each_order_once(e, n, kind);
}

static void stop_and_done(Env *e)
{
    cr_assert_eq(testenv_kill(e->pid, SIGTERM), 0, "unclean stop (log: %s)", e->log);
    e->pid = 0;
    testenv_daemon_done(e);
}

/* 4,000 orders, 98% for unknown customers, in batches of 500: the first batch is refused
 * and isolated; the others are probed, and their ghosts dead-lettered before they are sent,
 * with PostgreSQL's words. */
Test(flood, ghosts_are_found_by_a_probe_after_the_first_refusal, .timeout = 180)
{
    Env e;
    const int n = 4000;
    drain_flood(&e, "flood_ghosts", n, FLOOD_GHOSTS);
    int tries = isolating_tries(&e);
    cr_log_info("orders: %d isolating tries for %d batches of ghosts", tries, n / FLOOD_BATCH);
    cr_assert(tries >= 1 && tries <= 2, "%d isolating tries (log: %s)", tries, e.log);
    cr_assert_geq(log_count(&e, "whose lookup found no row for a NOT NULL column"),
                  n / FLOOD_BATCH - 2, "log: %s", e.log);
    /* the probe's words are PostgreSQL's, and say why */
    testenv_daemon_expect(&e,
                          "SELECT count(*) >= 2940 FROM projector.dead_letters WHERE readmodel = "
                          "'orders' "
                          "AND error = 'could not apply: null value in column \"customer_name\" "
                          "of relation \"order_read_model\" violates not-null constraint (the "
                          "lookup of customers.name found no row)' AND attempts = 1",
                          "t"); /* at least the 490 ghosts of each batch after the first two */
    stop_and_done(&e);
}

/* 4,000 orders, 98% with an amount PostgreSQL refuses, in batches of 500: each batch is
 * isolated once (the first after a refused try, the others at once), a few dead letters
 * named per batch in the log and the rest counted. */
Test(flood, each_batch_of_refused_events_costs_one_isolating_try, .timeout = 180)
{
    Env e;
    const int n = 4000;
    drain_flood(&e, "flood_amounts", n, FLOOD_BAD_AMOUNTS);
    int tries = isolating_tries(&e), batches = n / FLOOD_BATCH;
    cr_log_info("orders: %d isolating tries for %d batches of bad amounts", tries, batches);
    cr_assert(tries >= batches - 1 && tries <= batches + 1, "%d isolating tries (log: %s)", tries,
              e.log);
    cr_assert_lt(log_count(&e, "dead-lettering it"), 2 * 6 * (batches + 2), "log: %s", e.log);
    /* each named dead letter says where it is */
    cr_assert_geq(log_count(&e, "readmodel=orders stream=orders entry="), batches, "log: %s",
                  e.log);
    cr_assert_geq(log_count(&e, "more entries of this batch that PostgreSQL refused"), batches - 1,
                  "log: %s", e.log);
    stop_and_done(&e);
}

/* SIGTERM once a flood is being dead-lettered: the daemon exits 0 within seconds, the
 * worker said it was running meanwhile, and a second start finishes the feed. */
static void stop_in_a_flood(const char *name, FloodKind kind)
{
    Env e;
    const int n = 30000;
    env_setup(&e, name);
    publish_flood(&e, n, kind);
    const char *args[] = {"run", "--config", e.config, NULL};
    e.pid = testenv_spawn(args, e.log);
    cr_assert(testenv_wait_http(e.port, 20000), "no /healthz (log: %s)", e.log);
    long dead = 0;
    for (int i = 0; i < 600 && dead == 0; i++) {
        testenv_sleep_ms(50);
        dead = query_long(&e, "SELECT count(*) FROM projector.dead_letters");
    }
    cr_assert_gt(dead, 0, "nothing dead-lettered within 30 s (log: %s)", e.log);
    char *body = NULL;
    cr_assert_eq(testenv_http_get(e.port, "/lag/orders", &body), 200, "%s", body);
    cr_expect(strstr(body, "\"retrying\"") == NULL && strstr(body, "\"stopped\"") == NULL,
              "orders is not running in a flood: %s", body);
    free(body);
    int64_t t0 = now_monotonic_ms();
    cr_assert_eq(kill(e.pid, SIGTERM), 0);
    int code = testenv_wait_exit(e.pid, FLOOD_STOP_MS);
    int64_t took = now_monotonic_ms() - t0;
    cr_assert_eq(code, 0, "exit %d %lld ms after SIGTERM in a flood (log: %s)", code,
                 (long long)took, e.log);
    e.pid = 0;
    long settled = query_long(&e, "SELECT count(*) FROM projector.dead_letters");
    cr_log_info("SIGTERM in a flood: exit 0 in %lld ms, %ld dead letters of %d by then",
                (long long)took, settled, n);
    testenv_daemon_settle(&e, "orders");
    expect_each_order_once(&e, n, kind);
    stop_and_done(&e);
}

Test(flood, sigterm_in_a_flood_of_ghosts_stops_promptly_and_loses_nothing, .timeout = 240)
{
    stop_in_a_flood("flood_stop_ghosts", FLOOD_GHOSTS);
}

Test(flood, sigterm_in_a_flood_of_bad_amounts_stops_promptly_and_loses_nothing, .timeout = 240)
{
    stop_in_a_flood("flood_stop_amounts", FLOOD_BAD_AMOUNTS);
}
