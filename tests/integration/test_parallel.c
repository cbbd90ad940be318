/* test_parallel.c - parallel apply (parallel_apply > 1, partition.h): a backlog applied
 * over several sessions gives exactly the counters of the feed; a batch whose checkpoint
 * fails to commit after a partition has committed its share is applied once, not twice;
 * an event PostgreSQL refuses rolls back every partition and is isolated as on one session.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "testenv.h"

#define PAR_CUSTOMERS 40
#define PAR_BATCH 100

typedef TestDaemon Env;

/* What customer_stats must hold: the healthy orders published, per customer. */
static struct {
    long long cents[PAR_CUSTOMERS]; /* total_spent, in cents */
    int orders[PAR_CUSTOMERS];
} want;

/* With the shipped read models, or those of folder readmodels. */
static void env_setup_with(Env *e, const char *name, int parallel, const char *readmodels)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    memset(&want, 0, sizeof want);
    testenv_daemon_setup(e, name, readmodels, PAR_BATCH, 200);
    char line[64];
    snprintf(line, sizeof line, "parallel_apply: %d\n", parallel);
    testenv_append_file(e->config, line);
}

static void env_setup(Env *e, const char *name, int parallel)
{
    env_setup_with(e, name, parallel, NULL);
}

static void env_done(Env *e)
{
    testenv_daemon_done(e);
}

/* customer.registered or customer.renamed of customer c-NN, named "<name> N". */
static void publish_customer(Env *e, const char *type, int c, const char *name)
{
    char payload[96], entry[48];
    snprintf(payload, sizeof payload, "{\"customerId\":\"c-%02d\",\"name\":\"%s %d\"}", c, name, c);
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", type, "event_id", "c", "version",
                          "1", "occurred_at", "2026-01-15T09:00:00Z", "payload", payload);
    testenv_xadd(e->redis, "customers", f, entry);
    json_decref(f);
}

/* The customers registered (the orders read model looks their names up), then n orders
 * placed, customer i % PAR_CUSTOMERS, amounts varying; every order whose number is in
 * bad[] carries an amount that does not cast to numeric. */
static void publish_orders(Env *e, int n, const int *bad, size_t nbad)
{
    for (int c = 0; c < PAR_CUSTOMERS; c++)
        publish_customer(e, "customer.registered", c, "Name");
    for (int i = 0; i < n; i++) {
        int c = i % PAR_CUSTOMERS;
        long long cents = 100 + (i * 37) % 9000;
        bool poison = false;
        for (size_t k = 0; k < nbad; k++)
            poison = poison || bad[k] == i;
        char amount[32], payload[256];
        snprintf(amount, sizeof amount, "%lld.%02lld", cents / 100, cents % 100);
        snprintf(payload, sizeof payload,
                 "{\"orderId\":\"o-%d\",\"customerId\":\"c-%02d\",\"items\":[1],"
                 "\"total\":{\"amount\":\"%s\",\"currency\":\"EUR\"}}",
                 i, c, poison ? "abc" : amount);
        json_t *f =
            json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "order.placed", "event_id", "e",
                      "version", "1", "occurred_at", "2026-01-15T10:00:00Z", "payload", payload);
        testenv_xadd(e->redis, "orders", f, e->last);
        json_decref(f);
        if (!poison) {
            want.orders[c]++;
            want.cents[c] += cents;
        }
    }
}

static void stop(Env *e)
{
    int code = testenv_kill(e->pid, SIGTERM);
    e->pid = 0;
    cr_assert_eq(code, 0, "the daemon exited with %d on SIGTERM (log: %s)", code, e->log);
}

/* customer_stats must hold exactly the healthy orders, each counted once. */
static void check_stats(Env *e)
{
    StrBuf expected = {0};
    strbuf_append(&expected, "");
    for (int c = 0; c < PAR_CUSTOMERS; c++)
        strbuf_appendf(&expected, "%sc-%02d:%d:%lld.%02lld", c > 0 ? "," : "", c, want.orders[c],
                       want.cents[c] / 100, want.cents[c] % 100);
    testenv_daemon_expect(e,
                          "SELECT string_agg(customer_id || ':' || orders || ':' || "
                          "total_spent, ',' ORDER BY customer_id) FROM customer_stats",
                          expected.buf);
    strbuf_done(&expected);
}

/* How many times text is in the daemon's log. */
static int log_count(const Env *e, const char *text)
{
    char *log = NULL;
    size_t len;
    PjError err;
    int n = 0;
    if (read_file(e->log, &log, &len, &err) < 0)
        return 0;
    for (const char *p = strstr(log, text); p != NULL; p = strstr(p + 1, text))
        n++;
    free(log);
    return n;
}

static bool log_contains(const Env *e, const char *text)
{
    return log_count(e, text) > 0;
}

Test(parallel, a_backlog_over_three_sessions_counts_every_event_once, .timeout = 120)
{
    Env e;
    env_setup(&e, "par_drain", 3);
    publish_orders(&e, 3000, NULL, 0);
    testenv_daemon_settle(&e, "orders");
    check_stats(&e);
    testenv_daemon_expect(&e, "SELECT count(*), sum(item_count) FROM order_read_model",
                          "3000|3000");
    /* Partitions 1 and 2 of both read models on `orders` committed batches of their own. */
    testenv_daemon_expect(&e,
                          "SELECT DISTINCT readmodel, partition, partitions FROM "
                          "projector.partition_checkpoints ORDER BY 1, 2",
                          "customer_stats|1|3\ncustomer_stats|2|3\norders|1|3\norders|2|3");
    testenv_daemon_expect(&e,
                          "SELECT readmodel, applied_total FROM projector.checkpoints "
                          "WHERE stream = 'orders' ORDER BY 1",
                          "customer_stats|3000\norders|3000");
    stop(&e);
    env_done(&e);
}

/* The orders read model fans a rename out to every order of the customer: the stream of
 * the renames runs on the main session after the partitions, the orders stream is split,
 * and every order ends with its customer's last name. */
Test(parallel, a_fan_out_runs_after_the_partitions_of_the_other_stream, .timeout = 120)
{
    Env e;
    env_setup(&e, "par_fanout", 2);
    publish_orders(&e, 1000, NULL, 0);
    for (int c = 0; c < PAR_CUSTOMERS; c += 4)
        publish_customer(&e, "customer.renamed", c, "Renamed");
    testenv_daemon_settle(&e, "orders");
    cr_assert(testenv_wait_caught_up(e.port, 30000), "not caught up (log: %s)", e.log);
    testenv_daemon_expect(&e,
                          "SELECT count(*) FILTER (WHERE customer_name LIKE 'Renamed %'), "
                          "count(*) FILTER (WHERE customer_name <> CASE WHEN "
                          "substr(customer_id, 3)::int % 4 = 0 THEN 'Renamed ' ELSE 'Name ' "
                          "END || substr(customer_id, 3)::int) FROM order_read_model",
                          "250|0");
    cr_assert(log_contains(&e, "readmodel=orders msg=\"applied a batch of"), "(log: %s)", e.log);
    cr_assert(log_contains(&e, "10 events after them on the main session"),
              "the renames did not run after the partitions (log: %s)", e.log);
    check_stats(&e);
    stop(&e);
    env_done(&e);
}

/* Makes the first commit of a checkpoint of readmodel fail at COMMIT (a deferred constraint
 * trigger), after the partitions have committed their shares. */
static void cut_first_checkpoint_commit(Env *e, const char *readmodel)
{
    const char *args[] = {"migrate", "--config", e->config, NULL};
    char *out = NULL;
    int code = testenv_run(args, &out);
    cr_assert_eq(code, 0, "migrate: %s", out);
    free(out);
    char *sql =
        xasprintf("CREATE SEQUENCE cut_once; "
                  "CREATE FUNCTION cut_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "IF nextval('cut_once') = 1 THEN RAISE EXCEPTION 'checkpoint commit cut'; "
                  "END IF; RETURN NULL; END $$; "
                  "CREATE CONSTRAINT TRIGGER cut AFTER INSERT OR UPDATE ON projector.checkpoints "
                  "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.readmodel = '%s') "
                  "EXECUTE FUNCTION cut_once(); SELECT 'ok'",
                  readmodel);
    testenv_daemon_expect(e, sql, "ok");
    free(sql);
}

/* The first checkpoint commit of customer_stats fails at COMMIT (a deferred constraint
 * trigger), after partition 1 has committed its share of the batch: the next session must
 * apply only the share of partition 0. */
Test(parallel, a_batch_whose_checkpoint_fails_after_a_partition_committed_counts_once,
     .timeout = 120)
{
    Env e;
    env_setup(&e, "par_cut", 2);
    cut_first_checkpoint_commit(&e, "customer_stats");
    publish_orders(&e, 1000, NULL, 0);
    testenv_daemon_settle(&e, "orders");
    cr_assert(log_contains(&e, "checkpoint commit cut"), "the cut did not happen (log: %s)", e.log);
    cr_assert(log_contains(&e, "a batch over 2 sessions was interrupted after some of its "
                               "partitions committed"),
              "no recovery (log: %s)", e.log);
    check_stats(&e);
    testenv_daemon_expect(&e, "SELECT count(*) FROM projector.dead_letters", "0");
    stop(&e);
    env_done(&e);
}

Test(parallel, a_refused_event_rolls_back_every_partition_and_is_dead_lettered, .timeout = 120)
{
    Env e;
    const int bad[] = {17, 18, 555};
    env_setup(&e, "par_poison", 3);
    publish_orders(&e, 1000, bad, ARRAY_SIZE(bad));
    testenv_daemon_settle(&e, "orders");
    check_stats(&e);
    cr_assert(log_contains(&e, "applying it on one session"), "no partition was refused (log: %s)",
              e.log);
    testenv_daemon_expect(&e,
                          "SELECT readmodel, string_agg(sqlstate, ',') FROM "
                          "projector.dead_letters GROUP BY 1 ORDER BY 1",
                          "customer_stats|22P02,22P02,22P02\norders|22P02,22P02,22P02");
    testenv_daemon_expect(&e, "SELECT count(*) FROM order_read_model", "997");
    stop(&e);
    env_done(&e);
}

/* accounts: keyed adds on two streams; on "bulk" also a fan-out, which makes that stream
 * serial in every batch that holds one. */
static const char accounts_yaml[] = "readmodel: accounts\n"
                                    "table: accounts\n"
                                    "streams: [acct, bulk]\n"
                                    "key: [id]\n"
                                    "columns:\n"
                                    "  id: text\n"
                                    "  grp: text\n"
                                    "  n: { type: integer, default: 0 }\n"
                                    "  bonus: { type: integer, default: 0 }\n"
                                    "on:\n"
                                    "  a.add:\n"
                                    "    upsert:\n"
                                    "      id: $.payload.id\n"
                                    "      grp: $.payload.grp\n"
                                    "      add: { n: 1 }\n"
                                    "  a.bonus:\n"
                                    "    update:\n"
                                    "      where: { grp: $.payload.grp }\n"
                                    "      add: { bonus: 1 }\n";

/* Publishes an event of account a-<id>; its entry ID goes to e->last. */
static void publish_account(Env *e, const char *stream, const char *type, int id)
{
    char payload[96];
    snprintf(payload, sizeof payload, "{\"id\":\"a-%02d\",\"grp\":\"g%d\"}", id, id % 3);
    json_t *f = json_pack("{s:s, s:s, s:s, s:s}", "type", type, "event_id", "x", "version", "1",
                          "payload", payload);
    testenv_xadd(e->redis, stream, f, e->last);
    json_decref(f);
}

/* A batch cut after its partitions committed, whose serial stream holds keyed events too:
 * those ran on the main session and rolled back with it, so no partition may claim them. */
Test(parallel, a_cut_batch_applies_its_serial_stream_once, .timeout = 120)
{
    Env e;
    char *dir = testenv_tmpdir();
    char *file = testenv_write_file(dir, "accounts.yaml", accounts_yaml);
    env_setup_with(&e, "par_serial", 2, dir);
    cut_first_checkpoint_commit(&e, "accounts");
    for (int i = 0; i < 60; i++) /* 2 adds per account on bulk, and a bonus for group 0 */
        publish_account(&e, "bulk", i == 30 ? "a.bonus" : "a.add", i % 30);
    char bulk_last[48];
    memcpy(bulk_last, e.last, sizeof bulk_last);
    for (int i = 0; i < 300; i++) /* 10 more per account on acct */
        publish_account(&e, "acct", "a.add", i % 30);
    testenv_daemon_settle(&e, "acct");
    char path[160], *body = NULL;
    snprintf(path, sizeof path, "/wait?stream=bulk&id=%s&timeout_ms=30000", bulk_last);
    int status = testenv_http_get(e.port, path, &body);
    cr_assert_eq(status, 200, "/wait on bulk: %d %s (log: %s)", status, body ? body : "", e.log);
    free(body);
    cr_assert(log_contains(&e, "checkpoint commit cut"), "no cut (log: %s)", e.log);
    /* 59 adds on bulk: 29 accounts get 12, one (a-00) 11; a bonus for each of g0's 10 */
    testenv_daemon_expect(&e,
                          "SELECT count(*), sum(n), sum(bonus), count(*) FILTER (WHERE n <> 11 "
                          "AND n <> 12) FROM accounts",
                          "30|359|10|0");
    stop(&e);
    env_done(&e);
    free(file);
    free(dir);
}

/* Seven bad events in three of four full batches of 100: a batch that holds some is sent
 * once more, with every event between savepoints, and that one try names all its bad
 * events; a batch after one with bad events goes to that try at once. So each batch costs
 * one or two tries, whatever the number of bad events in it. */
Test(parallel, the_refused_events_of_a_full_batch_cost_one_more_try, .timeout = 120)
{
    Env e;
    const int bad[] = {5, 50, 95, 250, 251, 252, 399};
    env_setup(&e, "par_isolate", 1);
    publish_orders(&e, 400, bad, ARRAY_SIZE(bad));
    testenv_daemon_settle(&e, "orders");
    check_stats(&e);
    testenv_daemon_expect(&e,
                          "SELECT readmodel, count(*), min(attempts), max(attempts) FROM "
                          "projector.dead_letters WHERE sqlstate = '22P02' GROUP BY 1 ORDER BY 1",
                          "customer_stats|7|1|1\norders|7|1|1");
    /* customer_stats reads orders alone: batches 0-99, 100-199, ...: the first holds bad
     * events, the second is isolated at once, the third holds some, the fourth is isolated
     * at once. orders also reads customers, so its batches are cut elsewhere. */
    static const char *const models[] = {"customer_stats", "orders"};
    static const int least[] = {4, 1};
    for (size_t m = 0; m < ARRAY_SIZE(models); m++) {
        char text[128];
        snprintf(text, sizeof text, "readmodel=%s msg=\"isolating the events of a batch of",
                 models[m]);
        int tries = log_count(&e, text);
        cr_log_info("%s: %d isolating tries for 7 bad events", models[m], tries);
        cr_assert(tries >= least[m] && tries <= 5, "%s: %d isolating tries (log: %s)", models[m],
                  tries, e.log);
    }
    stop(&e);
    env_done(&e);
}
