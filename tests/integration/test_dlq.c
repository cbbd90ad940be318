/* test_dlq.c - `projector dlq` against real Redis and PostgreSQL: dead letters made by the
 * daemon are listed, shown, retried through the current read models (exactly once, even
 * when retries race) and discarded; usage errors exit 2. Each test has its own database,
 * Redis database and HTTP port.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "base/util.h"
#include "testenv.h"

typedef TestDaemon Env;

static void env_setup(Env *e, const char *name, const char *readmodels_dir)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    testenv_daemon_setup(e, name, readmodels_dir, 100, 200);
}

static void env_start(Env *e)
{
    const char *args[] = {"run", "--config", e->config, NULL};
    e->pid = testenv_spawn(args, e->log);
    cr_assert(testenv_wait_http(e->port, 20000), "the daemon did not answer /healthz (log: %s)",
              e->log);
}

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
static void publish(Env *e, const char *stream, const char *type, const char *payload, char *id)
{
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", type, "event_id", type, "version",
                          "1", "occurred_at", "2026-01-15T10:00:00Z", "payload", payload);
    testenv_xadd(e->redis, stream, f, id);
    json_decref(f);
}

/* Waits until every read model reading the stream has settled the entry. */
static void wait_settled(Env *e, const char *stream, const char *id)
{
    char path[256], *body = NULL;
    snprintf(path, sizeof path, "/wait?stream=%s&id=%s&timeout_ms=30000", stream, id);
    int status = testenv_http_get(e->port, path, &body);
    cr_assert_eq(status, 200, "/wait for %s %s answered %d: %s (log: %s)", stream, id, status,
                 body ? body : "", e->log);
    free(body);
}

static char *query(Env *e, const char *sql)
{
    return testenv_query_text(e->pg, sql);
}

static void assert_query(Env *e, const char *sql, const char *expect)
{
    char *got = query(e, sql);
    cr_assert_str_eq(got, expect, "%s", sql);
    free(got);
}

/* Runs the CLI and asserts its exit code; returns stdout and stderr together. */
static char *run_cli(const char *const *args, int expect_code)
{
    char *out = NULL;
    int code = testenv_run(args, &out);
    cr_assert_eq(code, expect_code, "exit %d (expected %d): %s", code, expect_code, out ? out : "");
    return out;
}

static char *dlq(Env *e, const char *a1, const char *a2, const char *a3, int expect_code)
{
    const char *args[] = {"dlq", a1, "--config", e->config, a2, a3, NULL};
    return run_cli(args, expect_code);
}

static void assert_contains(const char *out, const char *what)
{
    cr_assert(strstr(out, what) != NULL, "expected \"%s\" in:\n%s", what, out);
}

/* ---- usage ---- */

/* Parameters are copied into another process: arrays only, no pointers. */
typedef struct UsageCase {
    char args[5][16]; /* "" ends the list */
    char message[96];
} UsageCase;

static UsageCase usage_cases[] = {
    {{"dlq"}, "needs a command"},
    {{"dlq", "frobnicate"}, "unknown dlq command \"frobnicate\""},
    {{"dlq", "show"}, "\"dlq show\" needs a dead-letter ID"},
    {{"dlq", "show", "abc"}, "invalid dead-letter ID \"abc\""},
    {{"dlq", "discard", "-3"}, "unrecognized option \"-3\""},
    {{"dlq", "show", "0"}, "invalid dead-letter ID \"0\""},
    {{"dlq", "show", "1", "2"}, "unexpected argument \"2\""},
    {{"dlq", "retry"}, "needs a dead-letter ID or --all"},
    {{"dlq", "retry", "1", "--all"}, "takes an ID or --all, not both"},
    {{"dlq", "retry", "1", "--readmodel", "orders"}, "\"--readmodel\" is only valid"},
    {{"dlq", "list", "--readmodel"}, "\"--readmodel\" needs a read-model name"},
    {{"dlq", "list", "--bogus"}, "unrecognized option \"--bogus\""},
    {{"dlq", "list", "7"}, "\"dlq list\" takes no ID"},
    {{"dlq", "discard", "--all"}, "\"--all\" is only valid with \"dlq retry\""},
    {{"status", "--all"}, "unrecognized option \"--all\""},
};

ParameterizedTestParameters(dlq, usage_errors_exit_2)
{
    return cr_make_param_array(UsageCase, usage_cases, ARRAY_SIZE(usage_cases));
}

/* Usage is checked before the configuration is read: no file, no servers needed. */
ParameterizedTest(UsageCase *c, dlq, usage_errors_exit_2)
{
    const char *args[ARRAY_SIZE(c->args) + 1] = {0};
    for (size_t i = 0; i < ARRAY_SIZE(c->args) && c->args[i][0] != '\0'; i++)
        args[i] = c->args[i];
    char *out = run_cli(args, 2);
    assert_contains(out, c->message);
    assert_contains(out, "Try \"projector --help\"");
    free(out);
}

Test(dlq, help_works_after_the_command)
{
    const char *args[] = {"dlq", "retry", "--all", "--help", NULL};
    char *out = run_cli(args, 0);
    assert_contains(out, "dlq retry ID | --all [--readmodel R]");
    free(out);
}

/* ---- the shipped read models ---- */

#define ORDER_PAYLOAD                                                                              \
    "{\"orderId\":\"%s\",\"customerId\":\"%s\",\"items\":[1],"                                     \
    "\"total\":{\"amount\":\"%s\",\"currency\":\"EUR\"}}"

/* Publishes the scenario and lets the daemon settle it: customer c-1; orders o-1 (total
 * "abc": 22P02 in orders and customer_stats), o-2 (payload not JSON: both), o-3 (customer
 * c-2 unknown: its name is null, 23502 in orders only) and o-4 (good). */
static void make_dead_letters(Env *e)
{
    char id[48], payload[256];
    publish(e, "customers", "customer.registered", "{\"customerId\":\"c-1\",\"name\":\"Ada\"}", id);
    snprintf(payload, sizeof payload, ORDER_PAYLOAD, "o-1", "c-1", "abc");
    publish(e, "orders", "order.placed", payload, id);
    publish(e, "orders", "order.placed", "{\"orderId\": broken", id);
    snprintf(payload, sizeof payload, ORDER_PAYLOAD, "o-3", "c-2", "5.00");
    publish(e, "orders", "order.placed", payload, id);
    snprintf(payload, sizeof payload, ORDER_PAYLOAD, "o-4", "c-1", "7.00");
    publish(e, "orders", "order.placed", payload, id);
    env_start(e);
    wait_settled(e, "orders", id);
    env_stop(e);
}

/* Everything a retry may change: read tables, counters, dead letters. */
static char *snapshot(Env *e)
{
    static const char *const sqls[] = {
        "SELECT id, customer_name, total FROM order_read_model ORDER BY id",
        "SELECT customer_id, orders, total_spent FROM customer_stats ORDER BY customer_id",
        "SELECT readmodel, stream, last_id, applied_total FROM projector.checkpoints ORDER BY 1, 2",
        "SELECT id, readmodel, attempts, sqlstate, error FROM projector.dead_letters ORDER BY id",
    };
    StrBuf sb = {0};
    for (size_t i = 0; i < ARRAY_SIZE(sqls); i++) {
        char *t = query(e, sqls[i]);
        strbuf_appendf(&sb, "%s\n--\n", t);
        free(t);
    }
    return strbuf_take(&sb);
}

Test(dlq, list_and_show, .timeout = 120)
{
    Env e;
    env_setup(&e, "dlqshow", NULL);
    make_dead_letters(&e);
    char *out = dlq(&e, "list", NULL, NULL, 0);
    assert_contains(out, "ID  READMODEL");
    assert_contains(out, "23502");
    assert_contains(out, "22P02");
    assert_contains(out, "customer_stats");
    assert_contains(out, "invalid JSON in field \"payload\"");
    assert_contains(out, "(5 dead letters)");
    free(out);
    out = dlq(&e, "list", "--readmodel", "orders", 0);
    assert_contains(out, "(3 dead letters)");
    cr_assert(strstr(out, "customer_stats") == NULL, "%s", out);
    free(out);
    out = dlq(&e, "list", "--readmodel=customers", NULL, 0);
    assert_contains(out, "no dead letters for read model \"customers\"");
    free(out);

    char *id = query(&e, "SELECT id FROM projector.dead_letters WHERE sqlstate = '23502'");
    char *entry = query(&e, "SELECT entry_id FROM projector.dead_letters WHERE sqlstate = '23502'");
    out = dlq(&e, "show", id, NULL, 0);
    assert_contains(out, "sqlstate:     23502");
    assert_contains(out, entry);
    assert_contains(out, "violates not-null constraint");
    assert_contains(out, "raw entry:\n{\n  \"type\": \"order.placed\",");
    assert_contains(out, "\\\"customerId\\\":\\\"c-2\\\"");
    assert_contains(out, "event (as read models see it):");
    assert_contains(out, "\"customerId\": \"c-2\"");
    free(out);
    out = dlq(&e, "show", "999999", NULL, 1);
    assert_contains(out, "dead letter 999999 does not exist");
    free(out);
    free(id);
    free(entry);
    env_done(&e);
}

/* An amount that carries terminal control sequences (retitle the window, ring the bell,
 * recolour; and a C1 CSI) is dead-lettered with them in its error: list, show and the log
 * show them written out and never send them to a terminal. */
Test(dlq, control_characters_in_event_data_are_shown_not_obeyed, .timeout = 120)
{
    Env e;
    char id[48], payload[256], *log = NULL;
    env_setup(&e, "dlqctl", NULL);
    snprintf(payload, sizeof payload, ORDER_PAYLOAD, "o-9", "c-1",
             "\\u001b]0;pwned\\u0007\\u001b[31m\xc2\x9b"
             "9");
    publish(&e, "orders", "order.placed", payload, id);
    env_start(&e);
    wait_settled(&e, "orders", id);
    env_stop(&e);
    char *dl = query(&e, "SELECT min(id) FROM projector.dead_letters");
    char *outs[3] = {dlq(&e, "list", NULL, NULL, 0), dlq(&e, "show", dl, NULL, 0), NULL};
    cr_assert(read_file(e.log, &log, NULL, NULL) == 0, "no log at %s", e.log);
    outs[2] = log;
    for (size_t i = 0; i < ARRAY_SIZE(outs); i++) {
        cr_expect(strchr(outs[i], '\x1b') == NULL && strchr(outs[i], '\a') == NULL &&
                      strstr(outs[i], "\xc2\x9b") == NULL,
                  "output %zu sends control characters:\n%s", i, outs[i]);
        assert_contains(outs[i], "\\x1b]0;pwned\\x07\\x1b[31m\\u009b9");
    }
    for (size_t i = 0; i < ARRAY_SIZE(outs); i++)
        free(outs[i]);
    free(dl);
    env_done(&e);
}

Test(dlq, list_fits_errors_to_the_width, .timeout = 120)
{
    Env e;
    env_setup(&e, "dlqwidth", NULL);
    make_dead_letters(&e);
    cr_assert_eq(setenv("COLUMNS", "140", 1), 0);
    char *out = dlq(&e, "list", NULL, NULL, 0);
    cr_assert_eq(unsetenv("COLUMNS"), 0);
    assert_contains(out, "...\n");
    for (char *line = out; *line != '\0';) {
        char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        cr_assert_leq(len, 140, "line longer than the width: %.*s", (int)len, line);
        line = end != NULL ? end + 1 : line + len;
    }
    free(out);
    env_done(&e);
}

Test(dlq, retry_applies_once_then_counts_failures, .timeout = 180)
{
    Env e;
    char cid[48];
    env_setup(&e, "dlqretry", NULL);
    make_dead_letters(&e);
    char *id = query(&e, "SELECT id FROM projector.dead_letters WHERE sqlstate = '23502'");

    /* Fix the data: the customer arrives (applied by the daemon, as in production). */
    publish(&e, "customers", "customer.registered", "{\"customerId\":\"c-2\",\"name\":\"Bob\"}",
            cid);
    env_start(&e);
    wait_settled(&e, "customers", cid);
    env_stop(&e);
    assert_query(&e, "SELECT id FROM order_read_model ORDER BY id", "o-4");

    char *out = dlq(&e, "retry", id, NULL, 0);
    assert_contains(out, "): applied\n");
    assert_contains(out, "1 dead letter: 1 applied, 0 removed (type not handled), 0 failed");
    free(out);
    assert_query(&e, "SELECT id, customer_name, total FROM order_read_model ORDER BY id",
                 "o-3|Bob|5.00\no-4|Ada|7.00");
    assert_query(&e, "SELECT count(*) FROM projector.dead_letters WHERE sqlstate = '23502'", "0");
    assert_query(&e,
                 "SELECT applied_total FROM projector.checkpoints WHERE readmodel = 'orders' "
                 "AND stream = 'orders'",
                 "2");

    /* Again: it is gone, and nothing changes. */
    char *before = snapshot(&e);
    out = dlq(&e, "retry", id, NULL, 1);
    assert_contains(out, "not found, nothing done");
    assert_contains(out, "does not exist");
    free(out);
    char *after = snapshot(&e);
    cr_assert_str_eq(after, before);
    free(after);

    /* Only orders' dead letters: both still fail, each counts one more attempt. */
    out = dlq(&e, "retry", "--all", "--readmodel=orders", 1);
    assert_contains(out, "failed: could not apply: column \"total\": invalid input syntax for "
                         "type numeric");
    assert_contains(out, "(SQLSTATE 22P02), attempt 2");
    assert_contains(out, "failed: invalid JSON in field \"payload\"");
    assert_contains(out, "2 dead letters: 0 applied, 0 removed (type not handled), 2 failed");
    free(out);
    assert_query(&e,
                 "SELECT readmodel, attempts, last_failed_at > first_failed_at FROM "
                 "projector.dead_letters ORDER BY readmodel, entry_ms, entry_seq",
                 "customer_stats|1|f\ncustomer_stats|1|f\norders|2|t\norders|2|t");
    after = snapshot(&e);
    cr_assert_str_neq(after, before);
    free(after);
    free(before);

    out = dlq(&e, "retry", "--all", NULL, 1);
    assert_contains(out, "4 dead letters: 0 applied, 0 removed (type not handled), 4 failed");
    free(out);
    assert_query(&e,
                 "SELECT readmodel, attempts FROM projector.dead_letters "
                 "ORDER BY readmodel, entry_ms, entry_seq",
                 "customer_stats|2\ncustomer_stats|2\norders|3\norders|3");
    /* The failures changed no read table. */
    assert_query(&e, "SELECT count(*) FROM order_read_model", "2");
    assert_query(&e, "SELECT orders FROM customer_stats ORDER BY customer_id", "1\n1");
    free(id);
    env_done(&e);
}

/* The open dead letters /lag shows for read model rm (every stream), -1 when it does not
 * answer. */
static long open_dead_letters(Env *e, const char *rm)
{
    char path[96], *body = NULL;
    snprintf(path, sizeof path, "/lag/%s", rm);
    long n = -1;
    if (testenv_http_get(e->port, path, &body) == 200) {
        json_t *doc = json_loads(body, 0, NULL), *st;
        size_t i;
        n = 0;
        json_array_foreach(json_object_get(doc, "streams"), i, st)
        {
            n += (long)json_integer_value(json_object_get(st, "dead_letters"));
        }
        json_decref(doc);
    }
    free(body);
    return n;
}

/* A discard by the command line, in another process, lowers the running daemon's count of
 * open dead letters within seconds; the count of letters it wrote does not move. */
Test(dlq, a_discard_lowers_the_running_daemons_count, .timeout = 120)
{
    Env e;
    env_setup(&e, "dlqgauge", NULL);
    make_dead_letters(&e);
    env_start(&e);
    long before = -1;
    for (int i = 0; i < 100 && before != 3; i++, usleep(100000))
        before = open_dead_letters(&e, "orders");
    cr_assert_eq(before, 3, "orders shows %ld open dead letters (log: %s)", before, e.log);
    char *id = query(&e, "SELECT min(id) FROM projector.dead_letters WHERE readmodel = 'orders'");
    free(dlq(&e, "discard", id, NULL, 0));
    free(id);
    long after = before;
    for (int i = 0; i < 100 && after != 2; i++, usleep(100000))
        after = open_dead_letters(&e, "orders");
    cr_assert_eq(after, 2, "orders still shows %ld open dead letters (log: %s)", after, e.log);
    env_stop(&e);
    env_done(&e);
}

Test(dlq, discard_removes_one, .timeout = 120)
{
    Env e;
    env_setup(&e, "dlqdiscard", NULL);
    make_dead_letters(&e);
    char *id = query(&e, "SELECT min(id) FROM projector.dead_letters WHERE readmodel = 'orders'");
    char *out = dlq(&e, "discard", id, NULL, 0);
    assert_contains(out, "discarded dead letter ");
    assert_contains(out, "(read model \"orders\", entry ");
    assert_contains(out, "invalid input syntax for type numeric");
    free(out);
    assert_query(&e, "SELECT count(*) FROM projector.dead_letters", "4");
    out = dlq(&e, "discard", id, NULL, 1);
    assert_contains(out, "does not exist");
    free(out);
    assert_query(&e, "SELECT count(*) FROM projector.dead_letters", "4");
    char *ids = query(&e, "SELECT string_agg(id::text, ' ') FROM projector.dead_letters");
    for (char *p = strtok(ids, " "); p != NULL; p = strtok(NULL, " ")) {
        out = dlq(&e, "discard", p, NULL, 0);
        free(out);
    }
    free(ids);
    out = dlq(&e, "list", NULL, NULL, 0);
    assert_contains(out, "no dead letters");
    free(out);
    out = dlq(&e, "retry", "--all", NULL, 0);
    assert_contains(out, "no dead letters");
    free(out);
    free(id);
    env_done(&e);
}

/* ---- read models of the test's own ---- */

static const char labels_yaml[] = "readmodel: labels\n"
                                  "table: labels\n"
                                  "streams: [labels]\n"
                                  "key: [id]\n"
                                  "columns:\n"
                                  "  id: text\n"
                                  "  name: text\n"
                                  "on:\n"
                                  "  label.set:\n"
                                  "    upsert:\n"
                                  "      id: $.payload.id\n"
                                  "      name: $.payload.name\n";

/* A counter whose row needs a label: without one the event fails (23502). */
static const char things_yaml[] =
    "readmodel: things\n"
    "table: things\n"
    "streams: [things]\n"
    "key: [id]\n"
    "columns:\n"
    "  id: text\n"
    "  label: text\n"
    "  n: { type: integer, default: 0 }\n"
    "on:\n"
    "  %s:\n"
    "    upsert:\n"
    "      id: $.payload.id\n"
    "      label: { lookup: labels.name, where: { id: $.payload.label } }\n"
    "      add: { n: 1 }\n";

static char *write_models(const char *dir, const char *things_type)
{
    char *models = xasprintf("%s/readmodels", dir);
    char *text = xasprintf(things_yaml, things_type);
    cr_assert(mkdir(models, 0755) == 0 || errno == EEXIST);
    free(testenv_write_file(models, "labels.yaml", labels_yaml));
    free(testenv_write_file(models, "things.yaml", text));
    free(text);
    return models;
}

/* One dead letter in "things": thing t-1 counted with label l-1, which does not exist. */
static char *make_counter_dead_letter(Env *e)
{
    char *tmp = testenv_tmpdir(), id[48];
    char *models = write_models(tmp, "thing.counted");
    env_setup(e, "dlqthings", models);
    free(models);
    /* e->dir is the folder of the read models from now on (the config stays where it is). */
    free(e->dir);
    e->dir = tmp;
    publish(e, "things", "thing.counted", "{\"id\":\"t-1\",\"label\":\"l-1\"}", id);
    env_start(e);
    wait_settled(e, "things", id);
    env_stop(e);
    assert_query(e, "SELECT readmodel, sqlstate FROM projector.dead_letters", "things|23502");
    return query(e, "SELECT id FROM projector.dead_letters");
}

/* Waits until n sessions of the test's database wait for a lock. A session of its own:
 * inside a transaction, pg_stat_activity keeps showing what it showed first. */
static void wait_lock_waiters(Env *e, int n)
{
    char expect[16];
    bool done = false;
    PGconn *watch = testenv_pg(e->conninfo);
    snprintf(expect, sizeof expect, "%d", n);
    for (int i = 0; i < 600 && !done; i++) {
        char *got =
            testenv_query_text(watch, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                      "current_database() AND wait_event_type = 'Lock'");
        done = strcmp(got, expect) == 0;
        free(got);
        if (!done)
            usleep(50 * 1000);
    }
    PQfinish(watch);
    cr_assert(done, "%d sessions never waited for a lock together (log: %s)", n, e->log);
}

/* Several retries of one dead letter at once: exactly one applies it. The read table is
 * locked until every retry waits, so they all run into each other: one holds the dead
 * letter's row and waits for the table, the others wait for that row. */
Test(dlq, racing_retries_apply_once, .timeout = 120)
{
    enum { RACERS = 4 };
    Env e;
    pid_t pids[RACERS];
    char *id = make_counter_dead_letter(&e);
    PQclear(testenv_sql(e.pg, "INSERT INTO labels (id, name) VALUES ('l-1', 'Label one')"));
    PQclear(testenv_sql(e.pg, "BEGIN"));
    PQclear(testenv_sql(e.pg, "LOCK TABLE things IN SHARE ROW EXCLUSIVE MODE"));
    const char *args[] = {"dlq", "retry", id, "--config", e.config, NULL};
    for (int i = 0; i < RACERS; i++)
        pids[i] = testenv_spawn(args, e.log);
    wait_lock_waiters(&e, RACERS);
    PQclear(testenv_sql(e.pg, "COMMIT"));
    int applied = 0, gone = 0;
    for (int i = 0; i < RACERS; i++) {
        int code = testenv_wait_exit(pids[i], 60000);
        applied += code == 0;
        gone += code == 1;
    }
    cr_assert_eq(applied, 1, "%d retries applied it (log: %s)", applied, e.log);
    cr_assert_eq(gone, RACERS - 1, "log: %s", e.log);
    assert_query(&e, "SELECT id, label, n FROM things", "t-1|Label one|1");
    assert_query(&e, "SELECT count(*) FROM projector.dead_letters", "0");
    free(id);
    env_done(&e);
}

/* The current definition decides: a type the model no longer handles is removed. */
Test(dlq, retry_removes_a_type_no_longer_handled, .timeout = 120)
{
    Env e;
    char *id = make_counter_dead_letter(&e);
    char *models = write_models(e.dir, "thing.renamed");
    free(models);
    char *out = dlq(&e, "retry", "--all", NULL, 0);
    assert_contains(out, "read model \"things\" does not handle this type any more, removed");
    assert_contains(out, "1 dead letter: 0 applied, 1 removed (type not handled), 0 failed");
    free(out);
    assert_query(&e, "SELECT count(*) FROM projector.dead_letters", "0");
    assert_query(&e, "SELECT count(*) FROM things", "0");
    free(id);
    env_done(&e);
}
