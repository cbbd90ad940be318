/* test_crash.c - exactly-once effect under SIGKILL at random moments: a 100,000-event shop
 * feed is drained while the daemon is killed again and again. After every kill each read
 * table must hold exactly the feed up to its read model's checkpoint, and after the last
 * restart exactly the whole feed, counters included, as computed in tests/support/servers.c.
 * Uses the shared test servers: only the daemon is killed. PROJECTOR_CRASH_SEED replays.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "os/now.h"
#include "shopfeed.h"
#include "testenv.h"

#define CRASH_EVENTS 100000
#define CRASH_CUSTOMERS 12
#define CRASH_KILLS_MIN 10     /* kills that must land before customer_stats is done */
#define CRASH_KILLS_PLANNED 12 /* kills spread over the drain */
#define CRASH_KILLS_MAX 30
#define CRASH_BATCH 200
#define CRASH_BLOCK_MS 200
#define CRASH_POLL_MS 5          /* how often a life checks the drain's progress */
#define CRASH_JITTER_MS 40       /* random time past the progress threshold */
#define CRASH_LIFE_MAX_MS 120000 /* a life that makes no progress is killed anyway */
#define CRASH_FINAL_WAIT_MS 300000

typedef struct Crash {
    char *dir, *conninfo, *config, *log;
    int rdb, port;
    redisContext *redis;
    PGconn *pg;
    pid_t pid;
    ShopFeed *feed;
    unsigned rng;
    long long stats_total; /* events customer_stats applies in the whole feed */
    int kills, kills_mid;
    int parallel;    /* parallel_apply */
    int kills_ahead; /* kills that left a partition committed ahead of its checkpoint */
} Crash;

static unsigned crash_seed(void)
{
    const char *env = getenv("PROJECTOR_CRASH_SEED");
    if (env != NULL && *env != '\0')
        return (unsigned)strtoul(env, NULL, 10);
    return (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
}

static void crash_setup(Crash *c, unsigned seed, int parallel)
{
    memset(c, 0, sizeof *c);
    c->rng = seed;
    c->parallel = parallel;
    c->dir = testenv_tmpdir();
    c->conninfo = testenv_create_db("crash");
    c->rdb = testenv_redis_db();
    char *redis_url = testenv_redis_url(c->rdb);
    c->redis = testenv_redis(c->rdb);
    c->port = testenv_free_port();
    c->config =
        testenv_write_config(c->dir, redis_url, c->conninfo, c->port,
                             PROJECTOR_SOURCE_DIR "/readmodels", CRASH_BATCH, CRASH_BLOCK_MS);
    free(redis_url);
    char line[64];
    snprintf(line, sizeof line, "parallel_apply: %d\n", parallel);
    testenv_append_file(c->config, line);
    c->log = xasprintf("%s/projector.log", c->dir);
    c->pg = testenv_pg(c->conninfo);
    c->feed = shop_feed_new(seed, CRASH_CUSTOMERS, CRASH_EVENTS);
}

static void crash_done(Crash *c)
{
    if (c->pid > 0)
        (void)testenv_kill(c->pid, SIGKILL);
    if (c->redis != NULL) {
        /* The shared Redis holds the other suites' streams too: give the memory back. */
        freeReplyObject(redisCommand(c->redis, "FLUSHDB"));
        redisFree(c->redis);
    }
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->feed = shop_feed_free(c->feed);
    free(c->dir);
    free(c->conninfo);
    free(c->config);
    free(c->log);
}

static void crash_spawn(Crash *c)
{
    const char *args[] = {"run", "--config", c->config, NULL};
    c->pid = testenv_spawn(args, c->log);
}

static void crash_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static long long crash_applied(Crash *c, const char *readmodel)
{
    char *sql = xasprintf("SELECT coalesce(sum(applied_total), 0) FROM projector.checkpoints "
                          "WHERE readmodel = '%s'",
                          readmodel);
    char *exists = testenv_query_text(c->pg, "SELECT to_regclass('projector.checkpoints') "
                                             "IS NOT NULL");
    long long n = 0;
    if (strcmp(exists, "t") == 0) {
        char *text = testenv_query_text(c->pg, sql);
        n = atoll(text);
        free(text);
    }
    free(exists);
    free(sql);
    return n;
}

/* The progress at which life k (0-based) is killed: a random point in the k-th of
 * CRASH_KILLS_PLANNED + 1 equal slices of customer_stats' events, so that the kills spread
 * over the whole drain whatever its pace, and the last one still lands before the end. */
static long long crash_next_target(Crash *c)
{
    int slice = c->kills < CRASH_KILLS_PLANNED ? c->kills : CRASH_KILLS_PLANNED - 1;
    long long width = c->stats_total / (CRASH_KILLS_PLANNED + 1);
    long long offset = width * (unsigned)rand_r(&c->rng) % 1000 / 1000;
    return width * slice + offset;
}

/* Polls the checkpoints until customer_stats reached target (or the drain or the time ran
 * out); returns the milliseconds waited. */
static int64_t crash_wait_for_progress(Crash *c, long long target)
{
    int64_t t0 = now_monotonic_ms();
    while (crash_applied(c, "customer_stats") < target &&
           now_monotonic_ms() - t0 < CRASH_LIFE_MAX_MS)
        crash_sleep_ms(CRASH_POLL_MS);
    return now_monotonic_ms() - t0;
}

/* Partition rows ahead of their checkpoint: a batch cut between the commits of its
 * partitions and of its checkpoint (parallel apply), to be finished by the next life. */
static long long crash_partitions_ahead(Crash *c)
{
    char *exists =
        testenv_query_text(c->pg, "SELECT to_regclass('projector.partition_checkpoints') "
                                  "IS NOT NULL");
    long long n = 0;
    if (strcmp(exists, "t") == 0) {
        char *text = testenv_query_text(
            c->pg, "SELECT count(*) FROM projector.partition_checkpoints p LEFT JOIN "
                   "projector.checkpoints k USING (readmodel, stream) WHERE k.last_id IS NULL "
                   "OR (p.last_ms, p.last_seq) > (k.last_ms, k.last_seq)");
        n = atoll(text);
        free(text);
    }
    free(exists);
    return n;
}

/* Every read table must be exactly the feed up to its read model's checkpoint; with
 * parallel apply, unless a partition of the next batch had committed already (then only
 * the end state can be checked). */
static void crash_check_at_checkpoints(Crash *c, int kill)
{
    if (c->parallel > 1 && crash_partitions_ahead(c) > 0) {
        c->kills_ahead++;
        return;
    }
    StrBuf report = {0};
    strbuf_append(&report, "");
    long diffs = shop_feed_diff(c->feed, c->pg, false, &report);
    cr_assert_eq(diffs, 0,
                 "after kill %d, %ld differences from the feed at the checkpoints "
                 "(log: %s):\n%s",
                 kill, diffs, c->log, report.buf);
    strbuf_done(&report);
}

/* One life: start, run for a random while, SIGKILL, check. */
static void crash_one_life(Crash *c)
{
    long long before = crash_applied(c, "customer_stats");
    long long target = crash_next_target(c);
    crash_spawn(c);
    int64_t delay_ms = crash_wait_for_progress(c, target);
    /* Past the threshold by a random few milliseconds: anywhere inside a batch. */
    int64_t extra_ms = (unsigned)rand_r(&c->rng) % (CRASH_JITTER_MS + 1);
    crash_sleep_ms(extra_ms);
    delay_ms += extra_ms;
    int code = testenv_kill(c->pid, SIGKILL);
    c->pid = 0;
    cr_assert_eq(code, 128 + SIGKILL, "the daemon ended with %d before the kill (log: %s)", code,
                 c->log);
    c->kills++;
    long long after = crash_applied(c, "customer_stats");
    bool mid = after < c->stats_total;
    c->kills_mid += mid;
    crash_check_at_checkpoints(c, c->kills);
    cr_log_info("kill %2d after %5lld ms: customer_stats applied_total %6lld of %lld (%+lld), "
                "orders %lld, customers %lld%s",
                c->kills, (long long)delay_ms, after, c->stats_total, after - before,
                crash_applied(c, "orders"), crash_applied(c, "customers"),
                mid ? "" : " (drain already done)");
}

/* After the last restart: both streams settled, every table exact, no dead letter. */
static void crash_final(Crash *c)
{
    crash_spawn(c);
    cr_assert(shop_feed_wait(c->feed, c->port, CRASH_FINAL_WAIT_MS),
              "the feed was not settled within %d s of the last restart (log: %s)",
              CRASH_FINAL_WAIT_MS / 1000, c->log);
    StrBuf report = {0};
    strbuf_append(&report, "");
    long diffs = shop_feed_diff(c->feed, c->pg, true, &report);
    char *dead = testenv_query_text(c->pg, "SELECT count(*) FROM projector.dead_letters");
    cr_log_info("parallel_apply %d: %zu events (%zu orders, %zu customers), %d kills (%d "
                "mid-drain, %d between a partition's commit and its checkpoint's), %ld "
                "differences found, %s dead letters",
                c->parallel, c->feed->count, shop_feed_count(c->feed, SHOP_ORDERS, c->feed->count),
                shop_feed_count(c->feed, SHOP_CUSTOMERS, c->feed->count), c->kills, c->kills_mid,
                c->kills_ahead, diffs, dead);
    cr_assert_eq(diffs, 0, "%ld differences from the feed (log: %s):\n%s", diffs, c->log,
                 report.buf);
    cr_assert_str_eq(dead, "0", "dead letters (log: %s)", c->log);
    free(dead);
    strbuf_done(&report);
    int code = testenv_kill(c->pid, SIGTERM);
    c->pid = 0;
    cr_assert_eq(code, 0, "the daemon exited with %d on SIGTERM (log: %s)", code, c->log);
}

static void crash_run(int parallel)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    Crash c;
    unsigned seed = crash_seed();
    cr_log_info("seed %u (PROJECTOR_CRASH_SEED=%u replays this run)", seed, seed);
    crash_setup(&c, seed, parallel);
    shop_feed_publish(c.feed, c.redis, c.feed->count);
    for (size_t i = 0; i < c.feed->count; i++) {
        ShopKind k = c.feed->events[i].kind;
        c.stats_total += k == SHOP_PLACED || k == SHOP_CANCELLED;
    }
    while (c.kills < CRASH_KILLS_MAX &&
           (c.kills < CRASH_KILLS_PLANNED || c.kills_mid < CRASH_KILLS_MIN)) {
        crash_one_life(&c);
        if (crash_applied(&c, "customer_stats") >= c.stats_total)
            break;
    }
    cr_assert_geq(c.kills_mid, CRASH_KILLS_MIN,
                  "only %d of %d kills landed before the drain "
                  "ended (seed %u)",
                  c.kills_mid, c.kills, seed);
    crash_final(&c);
    crash_done(&c);
}

Test(crash, sigkill_at_random_moments_loses_and_doubles_nothing, .timeout = 900)
{
    crash_run(1);
}

Test(crash, sigkill_with_parallel_apply_loses_and_doubles_nothing, .timeout = 900)
{
    crash_run(3);
}
