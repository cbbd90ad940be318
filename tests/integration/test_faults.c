/* test_faults.c - the daemon through server faults, each test on its own private Redis and
 * PostgreSQL (tests/support/servers.h): PostgreSQL restarted or stopped mid-drain, Redis
 * restarted with an append-only file or stalled (SIGSTOP), SIGTERM mid-drain, a consumer group
 * destroyed under the daemon, a stream key holding a string. Each ends by comparing every read
 * table with the state computed independently from the shop feed.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "os/now.h"
#include "servers.h"
#include "shopfeed.h"
#include "testenv.h"

#define FAULT_EVENTS 30000
#define FAULT_EVENTS_AOF 12000 /* every write waits for an fsync: a smaller feed */
#define FAULT_CUSTOMERS 8
#define FAULT_BATCH 200
#define FAULT_BLOCK_MS 200
#define FAULT_SEED 20260115u
#define FAULT_MID_DRAIN 2000 /* customer_stats events applied before a fault is injected */
#define FAULT_WAIT_MS 180000 /* for the whole feed to settle after a fault */

typedef struct Fault {
    Servers *srv;
    char *config, *log;
    int port;
    redisContext *redis;
    PGconn *pg;
    pid_t pid;
    ShopFeed *feed;
} Fault;

/* ---- fixture ---- */

static void fault_setup(Fault *f, bool redis_aof, size_t events)
{
    memset(f, 0, sizeof *f);
    f->srv = servers_start(redis_aof);
    const char *dir = servers_dir(f->srv);
    f->port = testenv_free_port();
    f->config =
        testenv_write_config(dir, servers_redis_url(f->srv), servers_pg_conninfo(f->srv), f->port,
                             PROJECTOR_SOURCE_DIR "/readmodels", FAULT_BATCH, FAULT_BLOCK_MS);
    f->log = xasprintf("%s/projector.log", dir);
    f->redis = servers_redis(f->srv);
    f->pg = testenv_pg(servers_pg_conninfo(f->srv));
    f->feed = shop_feed_new(FAULT_SEED, FAULT_CUSTOMERS, events);
}

static void fault_done(Fault *f)
{
    if (f->pid > 0)
        (void)testenv_kill(f->pid, SIGKILL);
    if (f->redis != NULL)
        redisFree(f->redis);
    if (f->pg != NULL)
        PQfinish(f->pg);
    f->feed = shop_feed_free(f->feed);
    f->srv = servers_free(f->srv);
    free(f->config);
    free(f->log);
}

static void fault_start(Fault *f)
{
    const char *args[] = {"run", "--config", f->config, NULL};
    f->pid = testenv_spawn(args, f->log);
    cr_assert(testenv_wait_http(f->port, 30000), "the daemon did not answer /healthz (log: %s)",
              f->log);
}

/* SIGTERM must finish the batch in flight and exit 0. */
static void fault_stop(Fault *f)
{
    int code = testenv_kill(f->pid, SIGTERM);
    f->pid = 0;
    cr_assert_eq(code, 0, "the daemon exited with %d on SIGTERM (log: %s)", code, f->log);
}

/* A fresh session for the checks, after a PostgreSQL restart broke the old one. */
static void fault_reconnect_pg(Fault *f)
{
    PQfinish(f->pg);
    f->pg = testenv_pg(servers_pg_conninfo(f->srv));
}

static void fault_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ---- observing the daemon ---- */

static long long fault_applied(Fault *f, const char *readmodel)
{
    char *sql = xasprintf("SELECT coalesce(sum(applied_total), 0) FROM projector.checkpoints "
                          "WHERE readmodel = '%s'",
                          readmodel);
    char *text = testenv_query_text(f->pg, sql);
    long long n = atoll(text);
    free(text);
    free(sql);
    return n;
}

/* Waits until customer_stats has applied at least n events, so that a fault lands in the
 * middle of the drain; returns how many it had. */
static long long fault_wait_mid_drain(Fault *f, long long n)
{
    int64_t deadline = now_monotonic_ms() + 120000;
    long long done = 0;
    while (now_monotonic_ms() < deadline) {
        done = fault_applied(f, "customer_stats");
        if (done >= n)
            return done;
        fault_sleep_ms(20);
    }
    cr_assert_fail("customer_stats applied only %lld events in 120 s (log: %s)", done, f->log);
    return done;
}

/* The whole feed published, the daemon started and halfway through it (FAULT_MID_DRAIN
 * customer_stats events): where most faults strike. Returns how far it had got. */
static long long fault_start_mid_drain(Fault *f)
{
    fault_setup(f, false, FAULT_EVENTS);
    shop_feed_publish(f->feed, f->redis, f->feed->count);
    fault_start(f);
    return fault_wait_mid_drain(f, FAULT_MID_DRAIN);
}

static long long fault_stats_total(const ShopFeed *feed)
{
    long long n = 0;
    for (size_t i = 0; i < feed->count; i++)
        n += feed->events[i].kind == SHOP_PLACED || feed->events[i].kind == SHOP_CANCELLED;
    return n;
}

/* The state and reason of every read model in /lag, as "name=state (reason); ...", or
 * NULL when /lag does not answer. Caller frees. */
static char *fault_lag_states(Fault *f)
{
    char *body = NULL;
    if (testenv_http_get(f->port, "/lag", &body) != 200) {
        free(body);
        return NULL;
    }
    json_t *doc = json_loads(body, 0, NULL), *rm;
    StrBuf sb = {0};
    size_t i;
    strbuf_append(&sb, "");
    json_array_foreach(json_object_get(doc, "readmodels"), i, rm)
    {
        const char *reason = json_string_value(json_object_get(rm, "reason"));
        strbuf_appendf(&sb, "%s=%s", json_string_value(json_object_get(rm, "name")),
                       json_string_value(json_object_get(rm, "state")));
        if (reason != NULL)
            strbuf_appendf(&sb, " (%s)", reason);
        strbuf_append(&sb, "; ");
    }
    json_decref(doc);
    free(body);
    return strbuf_take(&sb);
}

/* The state of one read model in /lag/{name} (caller frees); "" when it does not answer. */
static char *fault_state_of(Fault *f, const char *readmodel, char **ret_reason)
{
    char path[96], *body = NULL;
    snprintf(path, sizeof path, "/lag/%s", readmodel);
    int status = testenv_http_get(f->port, path, &body);
    json_t *doc = status == 200 ? json_loads(body, 0, NULL) : NULL;
    json_t *rm = json_object_get(doc, "readmodels");
    rm = json_is_array(rm) ? json_array_get(rm, 0) : doc;
    const char *state = json_string_value(json_object_get(rm, "state"));
    const char *reason = json_string_value(json_object_get(rm, "reason"));
    char *ret = xstrdup(state != NULL ? state : "");
    if (ret_reason != NULL)
        *ret_reason = reason != NULL ? xstrdup(reason) : NULL;
    json_decref(doc);
    free(body);
    return ret;
}

/* Polls /lag/{name} until the read model is "retrying" or "stopped", for up to 10 s;
 * returns the last state seen (caller frees) and its reason. */
static char *fault_poll_stuck(Fault *f, const char *readmodel, char **ret_reason)
{
    int64_t deadline = now_monotonic_ms() + 10000;
    for (;;) {
        char *state = fault_state_of(f, readmodel, ret_reason);
        if (strcmp(state, "retrying") == 0 || strcmp(state, "stopped") == 0 ||
            now_monotonic_ms() >= deadline)
            return state;
        free(state);
        free(*ret_reason);
        fault_sleep_ms(20);
    }
}

/* Polls /lag until some read model is "retrying" or timeout_ms passes; returns that
 * model's "name=state (reason)" line, or NULL. */
static char *fault_poll_retrying(Fault *f, int timeout_ms)
{
    int64_t deadline = now_monotonic_ms() + timeout_ms;
    do {
        char *states = fault_lag_states(f);
        char *hit = states != NULL ? strstr(states, "=retrying") : NULL;
        if (hit != NULL) {
            while (hit > states && hit[-1] != ' ')
                hit--;
            char *line = xstrndup(hit, strcspn(hit, ";"));
            free(states);
            return line;
        }
        free(states);
        fault_sleep_ms(10);
    } while (now_monotonic_ms() < deadline);
    return NULL;
}

/* Lines of the daemon's log at level lvl ("warn") that contain text. */
static int fault_log_count(Fault *f, const char *lvl, const char *text)
{
    char *log = NULL, *line, *save = NULL;
    char level[16];
    PjError err;
    int n = 0;
    cr_assert_eq(read_file(f->log, &log, NULL, &err), 0, "%s", err.message);
    snprintf(level, sizeof level, "level=%s ", lvl);
    for (line = strtok_r(log, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
        n += strstr(line, level) != NULL && strstr(line, text) != NULL;
    free(log);
    return n;
}

/* utime + stime of a process, in seconds. */
static double fault_cpu_s(pid_t pid)
{
    char path[64], *text = NULL;
    PjError err;
    unsigned long utime = 0, stime = 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    cr_assert_eq(read_file(path, &text, NULL, &err), 0, "%s", err.message);
    /* Fields 14 and 15, counted after the command name, which may hold spaces. */
    const char *p = strrchr(text, ')');
    cr_assert(p != NULL && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                                  &utime, &stime) == 2,
              "unexpected %s: %s", path, text);
    free(text);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* The daemon's CPU seconds over the next 2 s: near 0 while it waits for a server. */
static double fault_idle_cpu_s(Fault *f)
{
    double cpu0 = fault_cpu_s(f->pid);
    fault_sleep_ms(2000);
    return fault_cpu_s(f->pid) - cpu0;
}

static void fault_expect_readyz(Fault *f, int want, const char *when)
{
    char *body = NULL;
    int ready = testenv_http_get(f->port, "/readyz", &body);
    cr_assert_eq(ready, want, "/readyz answered %d %s: %s", ready, when, body ? body : "");
    free(body);
}

/* One outage is logged once per change of state, not once per attempt. */
static void fault_expect_few_warnings(Fault *f, const char *what)
{
    int warned = fault_log_count(f, "warn", "retrying");
    cr_assert_leq(warned, 6,
                  "%d \"retrying\" warnings for one %s: not one per change of state "
                  "(log: %s)",
                  warned, what, f->log);
}

/* ---- checks ---- */

/* Every read table equals the feed at each read model's checkpoint. */
static void fault_check_at_checkpoints(Fault *f, const char *when)
{
    StrBuf report = {0};
    strbuf_append(&report, "");
    long diffs = shop_feed_diff(f->feed, f->pg, false, &report);
    cr_assert_eq(diffs, 0, "%s: %ld differences from the feed at the checkpoints (log: %s):\n%s",
                 when, diffs, f->log, report.buf);
    strbuf_done(&report);
}

/* Waits for the whole published feed, then: every read table exact, no dead letter,
 * every read model running and caught up. */
static void fault_check_final(Fault *f)
{
    cr_assert(shop_feed_wait(f->feed, f->port, FAULT_WAIT_MS),
              "the feed was not settled within %d s (log: %s)", FAULT_WAIT_MS / 1000, f->log);
    StrBuf report = {0};
    strbuf_append(&report, "");
    long diffs = shop_feed_diff(f->feed, f->pg, true, &report);
    cr_assert_eq(diffs, 0, "%ld differences from the feed (log: %s):\n%s", diffs, f->log,
                 report.buf);
    strbuf_done(&report);
    char *dead = testenv_query_text(f->pg, "SELECT count(*) FROM projector.dead_letters");
    cr_assert_str_eq(dead, "0", "dead letters (log: %s)", f->log);
    free(dead);
    cr_assert(testenv_wait_caught_up(f->port, 30000), "not every read model is running: %s",
              fault_lag_states(f));
    cr_log_info("%zu orders and %zu customers events, exact (log: %s)",
                f->feed->published[SHOP_ORDERS], f->feed->published[SHOP_CUSTOMERS], f->log);
}

/* Every consumer group has acknowledged everything it was given. */
static void fault_check_nothing_pending(Fault *f)
{
    static const char *const groups[][2] = {{"orders", "projector:orders"},
                                            {"orders", "projector:customer_stats"},
                                            {"customers", "projector:orders"},
                                            {"customers", "projector:customers"}};
    for (size_t i = 0; i < ARRAY_SIZE(groups); i++) {
        redisReply *r = redisCommand(f->redis, "XPENDING %s %s", groups[i][0], groups[i][1]);
        cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 1,
                  "XPENDING %s %s failed", groups[i][0], groups[i][1]);
        cr_expect_eq(r->element[0]->integer, 0,
                     "group \"%s\" of stream \"%s\" has %lld entries pending after SIGTERM "
                     "(log: %s)",
                     groups[i][1], groups[i][0], r->element[0]->integer, f->log);
        freeReplyObject(r);
    }
}

/* ---- a. PostgreSQL restarted mid-drain ---- */

Test(faults, postgres_restart_mid_drain, .timeout = 300)
{
    Fault f;
    long long at = fault_start_mid_drain(&f);
    pid_t restart = servers_begin(f.srv, SERVERS_PG_RESTART);
    char *retrying = fault_poll_retrying(&f, 15000);
    servers_end(f.srv, restart);
    cr_log_info("PostgreSQL restarted at %lld of %lld customer_stats events; /lag said: %s", at,
                fault_stats_total(f.feed), retrying ? retrying : "never retrying");
    cr_assert(retrying != NULL, "/lag never showed \"retrying\" (log: %s)", f.log);
    cr_assert(strstr(retrying, "(") != NULL, "\"retrying\" without a reason: %s", retrying);
    free(retrying);
    fault_reconnect_pg(&f);
    fault_check_final(&f);
    fault_stop(&f);
    fault_done(&f);
}

/* ---- b. Redis restarted mid-drain, with an append-only file ---- */

Test(faults, redis_restart_with_aof_mid_drain, .timeout = 300)
{
    Fault f;
    fault_setup(&f, true, FAULT_EVENTS_AOF);
    size_t first = f.feed->count * 2 / 3;
    shop_feed_publish(f.feed, f.redis, first);
    fault_start(&f);
    long long at = fault_wait_mid_drain(&f, FAULT_MID_DRAIN);
    pid_t restart = servers_begin(f.srv, SERVERS_REDIS_RESTART);
    char *retrying = fault_poll_retrying(&f, 15000);
    servers_end(f.srv, restart);
    cr_log_info("Redis restarted at %lld customer_stats events; /lag said: %s", at,
                retrying ? retrying : "never retrying");
    free(retrying);
    /* The rest of the feed goes to the restarted server. */
    redisFree(f.redis);
    f.redis = servers_redis(f.srv);
    int64_t t0 = now_monotonic_ms();
    shop_feed_publish(f.feed, f.redis, f.feed->count);
    fault_check_final(&f);
    cr_log_info("the rest of the feed published and settled in %lld ms",
                (long long)(now_monotonic_ms() - t0));
    fault_stop(&f);
    fault_done(&f);
}

/* ---- c. PostgreSQL unreachable for longer than one backoff cycle ---- */

/* Writes n entries of a type no read model handles to "orders" (skipped, so the tables
 * stay the feed's) and returns the last one's ID (caller frees). */
static char *fault_publish_unhandled(Fault *f, int n)
{
    char id[48] = "";
    for (int i = 0; i < n; i++) {
        json_t *fields = json_pack("{s:s, s:s}", "type", "order.noted", "payload", "{}");
        testenv_xadd(f->redis, "orders", fields, id);
        json_decref(fields);
    }
    return xstrdup(id);
}

/* Polls /lag/customer_stats until its "orders" stream shows last_entry_id last with at
 * least behind entries behind, for up to timeout_ms; returns whether it did. */
static bool fault_poll_behind(Fault *f, const char *last, long long behind, int timeout_ms)
{
    int64_t deadline = now_monotonic_ms() + timeout_ms;
    do {
        char *body = NULL;
        if (testenv_http_get(f->port, "/lag/customer_stats", &body) == 200) {
            json_t *doc = json_loads(body, 0, NULL);
            json_t *st = json_array_get(json_object_get(doc, "streams"), 0);
            const char *id = json_string_value(json_object_get(st, "last_entry_id"));
            long long n = json_integer_value(json_object_get(st, "entries_behind"));
            bool ok = id != NULL && strcmp(id, last) == 0 && n >= behind;
            json_decref(doc);
            free(body);
            if (ok)
                return true;
        } else {
            free(body);
        }
        fault_sleep_ms(100);
    } while (now_monotonic_ms() < deadline);
    return false;
}

Test(faults, postgres_down_for_seconds, .timeout = 300)
{
    Fault f;
    long long at = fault_start_mid_drain(&f);
    int64_t down_at = now_monotonic_ms();
    servers_do(f.srv, SERVERS_PG_STOP);
    char *retrying = fault_poll_retrying(&f, 10000);
    cr_assert(retrying != NULL, "/lag never showed \"retrying\" (log: %s)", f.log);
    cr_assert(strstr(retrying, "(") != NULL, "\"retrying\" without a reason: %s", retrying);
    fault_expect_readyz(&f, 503, "while PostgreSQL is down");

    /* Waiting must be idle: no busy loop while the server is away. */
    double cpu_s = fault_idle_cpu_s(&f);
    int64_t left_ms = 4000 - (now_monotonic_ms() - down_at);
    if (left_ms > 0)
        fault_sleep_ms((int)left_ms);
    char *states = fault_lag_states(&f);
    cr_log_info("PostgreSQL stopped at %lld customer_stats events for %lld ms; %.3f s of CPU in "
                "2 s; /lag: %s",
                at, (long long)(now_monotonic_ms() - down_at), cpu_s, states ? states : "-");
    cr_assert(states != NULL && strstr(states, "=retrying") != NULL,
              "nothing retrying after 4 s down: %s", states ? states : "no answer");
    free(states);
    cr_assert_lt(cpu_s, 0.2, "the daemon used %.3f s of CPU in 2 s while PostgreSQL was down",
                 cpu_s);
    free(retrying);
    /* The lag keeps moving with Redis while PostgreSQL is away. */
    char *last = fault_publish_unhandled(&f, 250);
    cr_assert(fault_poll_behind(&f, last, 250, 20000),
              "/lag/customer_stats did not show the 250 entries written during the outage "
              "(log: %s)",
              f.log);
    free(last);

    servers_do(f.srv, SERVERS_PG_START);
    fault_reconnect_pg(&f);
    fault_check_final(&f);
    fault_expect_few_warnings(&f, "outage");
    fault_expect_readyz(&f, 200, "after the outage");
    fault_stop(&f);
    fault_done(&f);
}

/* ---- c2. Redis stalled: the connections stay open and nothing answers ---- */

Test(faults, redis_stalled_mid_drain, .timeout = 300)
{
    Fault f;
    long long at = fault_start_mid_drain(&f);
    int64_t t0 = now_monotonic_ms();
    servers_do(f.srv, SERVERS_REDIS_PAUSE);
    /* Commands time out after block_ms + connect_timeout_ms + 5 s (7.2 s here). */
    char *retrying = fault_poll_retrying(&f, 20000);
    int64_t noticed_ms = now_monotonic_ms() - t0;
    cr_assert(retrying != NULL, "/lag never showed \"retrying\" during a stall (log: %s)", f.log);
    double cpu_s = fault_idle_cpu_s(&f);
    fault_expect_readyz(&f, 503, "during a stall");
    servers_do(f.srv, SERVERS_REDIS_RESUME);
    cr_log_info("Redis stalled at %lld customer_stats events; retrying after %lld ms; %.3f s of "
                "CPU in 2 s; /lag said: %s",
                at, (long long)noticed_ms, cpu_s, retrying);
    /* The reason says it was a timeout, not errno's "Resource temporarily unavailable". */
    cr_assert(strstr(retrying, "Redis did not answer") != NULL &&
                  strstr(retrying, "read timeout") != NULL &&
                  strstr(retrying, "Resource temporarily") == NULL,
              "the reason does not say it timed out: %s", retrying);
    free(retrying);
    cr_assert_lt(cpu_s, 0.2, "the daemon used %.3f s of CPU in 2 s while Redis stalled", cpu_s);
    fault_check_final(&f);
    fault_expect_few_warnings(&f, "stall");
    fault_stop(&f);
    fault_check_nothing_pending(&f);
    fault_done(&f);
}

/* ---- d. SIGTERM mid-drain ---- */

Test(faults, sigterm_mid_drain_then_restart, .timeout = 300)
{
    Fault f;
    long long at = fault_start_mid_drain(&f);
    int64_t t0 = now_monotonic_ms();
    cr_assert_eq(kill(f.pid, SIGTERM), 0);
    int code = testenv_wait_exit(f.pid, FAULT_BLOCK_MS + 10000);
    int64_t took_ms = now_monotonic_ms() - t0;
    if (code < 0)
        (void)testenv_kill(f.pid, SIGKILL);
    f.pid = 0;
    long long stopped_at = fault_applied(&f, "customer_stats");
    cr_log_info("SIGTERM at %lld customer_stats events: exit %d after %lld ms, stopped at %lld "
                "of %lld",
                at, code, (long long)took_ms, stopped_at, fault_stats_total(f.feed));
    cr_assert_eq(code, 0, "the daemon exited with %d on SIGTERM (log: %s)", code, f.log);
    cr_assert_leq(took_ms, FAULT_BLOCK_MS + 3000, "SIGTERM took %lld ms (block_ms %d)",
                  (long long)took_ms, FAULT_BLOCK_MS);
    cr_assert_lt(stopped_at, fault_stats_total(f.feed), "the drain was over before SIGTERM");
    fault_check_at_checkpoints(&f, "after SIGTERM");
    fault_check_nothing_pending(&f);
    fault_start(&f);
    fault_check_final(&f);
    fault_stop(&f);
    fault_done(&f);
}

/* ---- e. a consumer group destroyed under the daemon ---- */

static void fault_destroy_group(Fault *f, const char *stream, const char *group)
{
    redisReply *r = redisCommand(f->redis, "XGROUP DESTROY %s %s", stream, group);
    cr_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1,
              "XGROUP DESTROY %s %s: %s", stream, group,
              r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "did not destroy it");
    freeReplyObject(r);
}

/* The group exists again and has nothing pending. */
static void fault_check_group(Fault *f, const char *stream, const char *group)
{
    redisReply *r = redisCommand(f->redis, "XPENDING %s %s", stream, group);
    cr_assert(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements >= 1,
              "group \"%s\" of stream \"%s\": %s", group, stream,
              r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "no XPENDING reply");
    cr_assert_eq(r->element[0]->integer, 0, "group \"%s\" of stream \"%s\": %lld pending", group,
                 stream, r->element[0]->integer);
    freeReplyObject(r);
}

Test(faults, consumer_group_destroyed_under_the_daemon, .timeout = 300)
{
    Fault f;
    fault_setup(&f, false, FAULT_EVENTS);
    size_t first = f.feed->count / 2;
    shop_feed_publish(f.feed, f.redis, first);
    fault_start(&f);
    long long at = fault_wait_mid_drain(&f, FAULT_MID_DRAIN);
    fault_destroy_group(&f, "orders", "projector:customer_stats");
    cr_log_info("destroyed projector:customer_stats on orders at %lld events", at);
    fault_check_final(&f);

    /* Again while idle, for two groups, then the rest of the feed. */
    fault_destroy_group(&f, "orders", "projector:customer_stats");
    fault_destroy_group(&f, "customers", "projector:customers");
    fault_sleep_ms(3 * FAULT_BLOCK_MS);
    shop_feed_publish(f.feed, f.redis, f.feed->count);
    fault_check_final(&f);
    fault_check_group(&f, "orders", "projector:customer_stats");
    fault_check_group(&f, "customers", "projector:customers");
    cr_log_info("the log reports %d consumer group creations (4 at start, 3 destroyed)",
                fault_log_count(&f, "info", "created consumer group"));
    fault_stop(&f);
    fault_done(&f);
}

/* ---- f. a stream key that is not a stream ---- */

Test(faults, stream_key_holding_a_string, .timeout = 300)
{
    Fault f;
    fault_setup(&f, false, FAULT_EVENTS);
    freeReplyObject(redisCommand(f.redis, "SET orders x"));
    /* The customers stream runs ahead: the orders events cannot be sent yet. */
    shop_feed_publish_stream(f.feed, f.redis, SHOP_CUSTOMERS, f.feed->count);
    fault_start(&f);

    char path[160], *body = NULL;
    snprintf(path, sizeof path, "/wait?stream=customers&id=%s&readmodel=customers&timeout_ms=30000",
             shop_feed_last_id(f.feed, SHOP_CUSTOMERS));
    int status = testenv_http_get(f.port, path, &body);
    cr_assert_eq(status, 200, "/wait for the customers read model answered %d: %s (log: %s)",
                 status, body, f.log);
    free(body);
    fault_check_at_checkpoints(&f, "with \"orders\" holding a string");
    char *ck = testenv_query_text(f.pg, "SELECT last_id FROM projector.checkpoints "
                                        "WHERE readmodel = 'customers'");
    cr_assert_str_eq(ck, shop_feed_last_id(f.feed, SHOP_CUSTOMERS));
    free(ck);

    /* The two read models that read "orders" say why they do not move. */
    static const char *const stuck[] = {"orders", "customer_stats"};
    for (size_t i = 0; i < ARRAY_SIZE(stuck); i++) {
        char *reason = NULL, *state = fault_poll_stuck(&f, stuck[i], &reason);
        cr_log_info("%s: %s (%s)", stuck[i], state, reason ? reason : "no reason");
        cr_assert(strcmp(state, "retrying") == 0 || strcmp(state, "stopped") == 0,
                  "read model %s is \"%s\" while its stream is a string", stuck[i], state);
        cr_assert(reason != NULL && strstr(reason, "WRONGTYPE") != NULL,
                  "read model %s: the reason does not say the key has the wrong type: %s", stuck[i],
                  reason ? reason : "none");
        free(state);
        free(reason);
    }
    char *customers = fault_state_of(&f, "customers", NULL);
    cr_assert_str_eq(customers, "running");
    free(customers);
    cr_assert_eq(testenv_http_get(f.port, "/readyz", NULL), 503);
    cr_assert_eq(testenv_http_get(f.port, "/healthz", NULL), 200);

    /* Once the key is a stream, the stuck read models catch up by themselves. */
    freeReplyObject(redisCommand(f.redis, "DEL orders"));
    shop_feed_publish(f.feed, f.redis, f.feed->count);
    fault_check_final(&f);
    cr_log_info("\"retrying\" warnings mentioning WRONGTYPE in the log: %d",
                fault_log_count(&f, "warn", "WRONGTYPE"));
    fault_stop(&f);
    fault_done(&f);
}
