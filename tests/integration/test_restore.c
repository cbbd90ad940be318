/* test_restore.c - PostgreSQL's checkpoint is the truth, whatever Redis remembers: a
 * database restored from a backup taken mid-feed, while Redis keeps its consumer groups at
 * the end of the feed, gets every entry after its checkpoints applied again, and the read
 * tables equal the full feed. The backup is a copy of the database (CREATE DATABASE ...
 * TEMPLATE) taken while the daemon is stopped; the restore puts that copy back. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "shopfeed.h"
#include "testenv.h"

#define RESTORE_EVENTS 3000
#define RESTORE_BACKUP_AT 1200
#define RESTORE_WAIT_MS 90000

typedef struct Restore {
    TestDaemon d;
    ShopFeed *feed;
    char db[64], backup[80];
    PGconn *admin; /* on the server's first database, never on d's */
} Restore;

static void restore_run_until_settled(Restore *r)
{
    const char *args[] = {"run", "--config", r->d.config, NULL};
    r->d.pid = testenv_spawn(args, r->d.log);
    cr_assert(shop_feed_wait(r->feed, r->d.port, RESTORE_WAIT_MS),
              "the published feed was not settled within %d ms (log: %s)", RESTORE_WAIT_MS,
              r->d.log);
    cr_assert_eq(testenv_kill(r->d.pid, SIGTERM), 0, "unclean stop (log: %s)", r->d.log);
    r->d.pid = 0;
}

/* CREATE DATABASE to FROM from: nobody may be connected to from meanwhile. */
static void restore_copy_db(Restore *r, const char *to, const char *from)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", to);
    PQclear(testenv_sql(r->admin, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE %s", to, from);
    PQclear(testenv_sql(r->admin, sql));
}

static void restore_expect_full_feed(Restore *r, const char *when)
{
    StrBuf report = {0};
    PGconn *pg = testenv_pg(r->d.conninfo);
    long diffs = shop_feed_diff(r->feed, pg, true, &report);
    cr_expect_eq(diffs, 0, "%s: %ld differences from the feed: %s (log: %s)", when, diffs,
                 report.buf != NULL ? report.buf : "", r->d.log);
    PQfinish(pg);
    strbuf_done(&report);
}

Test(restore, a_database_restored_mid_feed_reapplies_what_its_checkpoint_lacks, .timeout = 300)
{
    Restore r = {0};
    testenv_daemon_setup(&r.d, "restore", NULL, 100, 200);
    char *name = testenv_query_text(r.d.pg, "SELECT current_database()");
    snprintf(r.db, sizeof r.db, "%s", name);
    snprintf(r.backup, sizeof r.backup, "%s_bak", name);
    free(name);
    PQfinish(r.d.pg); /* a template copy needs the database to itself */
    r.d.pg = NULL;
    r.admin = testenv_pg(getenv("PROJECTOR_TEST_PG"));
    r.feed = shop_feed_new(20261207, 40, RESTORE_EVENTS);

    shop_feed_publish(r.feed, r.d.redis, RESTORE_BACKUP_AT);
    restore_run_until_settled(&r);
    restore_copy_db(&r, r.backup, r.db); /* the backup, mid-feed */

    shop_feed_publish(r.feed, r.d.redis, RESTORE_EVENTS);
    restore_run_until_settled(&r);
    restore_expect_full_feed(&r, "before the restore");

    restore_copy_db(&r, r.db, r.backup); /* the restore: Redis stays at the end */
    restore_run_until_settled(&r);
    restore_expect_full_feed(&r, "after the restore");
    char *log = NULL;
    cr_assert(read_file(r.d.log, &log, NULL, NULL) == 0);
    cr_expect(strstr(log, "past the checkpoint") != NULL, "the re-read is not logged: %s", r.d.log);
    free(log);

    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", r.backup);
    PQclear(testenv_sql(r.admin, sql));
    PQfinish(r.admin);
    r.feed = shop_feed_free(r.feed);
    testenv_daemon_done(&r.d);
}

/* Redis restored behind PostgreSQL (here: the stream lost and written anew, its one entry
 * older than the checkpoint): the daemon says so in the log, /lag and /metrics, and goes
 * on with new entries. */
Test(restore, a_checkpoint_ahead_of_its_stream_is_reported, .timeout = 120)
{
    TestDaemon d;
    char id[48], *body = NULL;
    testenv_daemon_setup(&d, "ahead", NULL, 100, 200);
    json_t *f = json_pack("{s:s, s:s}", "type", "customer.registered", "payload",
                          "{\"customerId\":\"c-1\",\"name\":\"Ada\"}");
    testenv_xadd(d.redis, "customers", f, d.last);
    testenv_daemon_settle(&d, "customers");
    cr_assert_eq(testenv_kill(d.pid, SIGTERM), 0);
    d.pid = 0;
    freeReplyObject(redisCommand(d.redis, "DEL customers"));
    redisReply *rep = redisCommand(d.redis, "XADD customers 1-1 type customer.registered "
                                            "payload {\"customerId\":\"c-0\",\"name\":\"Old\"}");
    freeReplyObject(rep);

    const char *args[] = {"run", "--config", d.config, NULL};
    d.pid = testenv_spawn(args, d.log);
    cr_assert(testenv_wait_http(d.port, 20000), "no HTTP (log: %s)", d.log);
    bool reported = false;
    for (int i = 0; i < 100 && !reported; i++) {
        free(body);
        body = NULL;
        (void)testenv_http_get(d.port, "/lag/customers", &body);
        reported = body != NULL && strstr(body, "\"checkpoint_ahead\":true") != NULL;
        if (!reported)
            testenv_sleep_ms(100);
    }
    cr_expect(reported, "/lag does not say the checkpoint is ahead: %s", body ? body : "");
    free(body);
    body = NULL;
    (void)testenv_http_get(d.port, "/metrics", &body);
    cr_expect(body != NULL && strstr(body, "projector_checkpoint_ahead{readmodel=\"customers\","
                                           "stream=\"customers\"} 1") != NULL,
              "%s", body ? body : "");
    free(body);
    /* A new entry after the restore goes on as usual. */
    f = json_pack("{s:s, s:s}", "type", "customer.registered", "payload",
                  "{\"customerId\":\"c-2\",\"name\":\"Bea\"}");
    testenv_xadd(d.redis, "customers", f, id);
    json_decref(f);
    char path[160];
    snprintf(path, sizeof path, "/wait?stream=customers&id=%s&timeout_ms=20000", id);
    cr_expect_eq(testenv_http_get(d.port, path, &body), 200, "%s", body ? body : "");
    free(body);
    testenv_daemon_expect(&d, "SELECT id, name FROM customers ORDER BY id", "c-1|Ada\nc-2|Bea");
    char *log = NULL;
    cr_assert(read_file(d.log, &log, NULL, NULL) == 0);
    cr_expect(strstr(log, "is ahead of its last entry 1-1") != NULL, "not logged: %s", d.log);
    free(log);
    testenv_daemon_done(&d);
}
