/* test_cli.c - the command line as an operator meets it: check, ddl, migrate, status,
 * exit codes, a table that does not match its YAML, and pending entries of a consumer
 * that died being taken over at start. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "testenv.h"

static char *run_cli(const char *const *args, int expect_code)
{
    char *out = NULL;
    int code = testenv_run(args, &out);
    cr_assert_eq(code, expect_code, "exit %d (expected %d): %s", code, expect_code, out ? out : "");
    return out;
}

Test(cli, version_help_and_usage_errors)
{
    const char *version[] = {"--version", NULL};
    char *out = run_cli(version, 0);
    cr_assert(strncmp(out, "projector ", 10) == 0, "%s", out);
    free(out);
    const char *help[] = {"--help", NULL};
    out = run_cli(help, 0);
    cr_assert(strstr(out, "usage: projector") != NULL);
    free(out);
    const char *unknown[] = {"frobnicate", NULL};
    out = run_cli(unknown, 2);
    cr_assert(strstr(out, "unknown command \"frobnicate\"") != NULL, "%s", out);
    free(out);
    const char *none[] = {NULL};
    out = run_cli(none, 2);
    free(out);
}

/* Every command the general help lists has help of its own, which names it; and the
 * manual page documents every command. */
Test(cli, every_command_has_its_own_help_and_a_place_in_the_manual)
{
    const char *help[] = {"--help", NULL};
    char *general = run_cli(help, 0);
    char *manual = NULL;
    PjError err;
    cr_assert_eq(read_file(PROJECTOR_SOURCE_DIR "/deploy/man/projector.1", &manual, NULL, &err), 0,
                 "%s", err.message);
    static const char *const commands[] = {"run", "check", "migrate", "ddl", "status", "dlq"};
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        char line[64], usage[96], man[64];
        snprintf(line, sizeof line, "\n  %s ", commands[i]);
        cr_assert(strstr(general, line) != NULL, "--help does not list %s", commands[i]);
        const char *args[] = {commands[i], "--help", NULL};
        char *out = run_cli(args, 0);
        snprintf(usage, sizeof usage, "usage: projector [--config FILE] %s", commands[i]);
        cr_assert(strncmp(out, usage, strlen(usage)) == 0, "%s --help: %s", commands[i], out);
        free(out);
        snprintf(man, sizeof man, ".B %s", commands[i]);
        cr_assert(strstr(manual, man) != NULL, "projector.1 does not document %s", commands[i]);
    }
    free(manual);
    free(general);
}

Test(cli, check_accepts_the_shipped_models_and_reports_positions)
{
    const char *good[] = {"check", PROJECTOR_SOURCE_DIR "/readmodels", NULL};
    char *out = run_cli(good, 0);
    cr_assert(strstr(out, "3 read models OK") != NULL, "%s", out);
    free(out);
    const char *bad[] = {"check", PROJECTOR_SOURCE_DIR "/tests/data/bad/unknown_top_key.yaml",
                         NULL};
    out = run_cli(bad, 2);
    cr_assert(strstr(out, "tests/data/bad/unknown_top_key.yaml:") != NULL, "%s", out);
    cr_assert(strstr(out, "unrecognized key") != NULL, "%s", out);
    free(out);
}

Test(cli, ddl_prints_every_read_table)
{
    char *dir = testenv_tmpdir();
    char *cfg = testenv_write_file(dir, "projector.yaml",
                                   "readmodels: " PROJECTOR_SOURCE_DIR "/readmodels\n");
    const char *args[] = {"ddl", "--config", cfg, NULL};
    char *out = run_cli(args, 0);
    cr_assert(strstr(out, "CREATE TABLE IF NOT EXISTS \"order_read_model\"") != NULL, "%s", out);
    cr_assert(strstr(out, "\"customer_stats\"") != NULL, "%s", out);
    cr_assert(strstr(out, "PRIMARY KEY (\"id\")") != NULL, "%s", out);
    free(out);
    free(cfg);
    free(dir);
}

typedef struct Env {
    char *dir, *conninfo, *redis_url, *config, *log;
    int rdb, port;
} Env;

static void env_setup(Env *e, const char *name)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    e->dir = testenv_tmpdir();
    e->conninfo = testenv_create_db(name);
    e->rdb = testenv_redis_db();
    e->redis_url = testenv_redis_url(e->rdb);
    e->port = testenv_free_port();
    e->config = testenv_write_config(e->dir, e->redis_url, e->conninfo, e->port,
                                     PROJECTOR_SOURCE_DIR "/readmodels", 100, 200);
    e->log = xasprintf("%s/projector.log", e->dir);
}

static void env_done(Env *e)
{
    free(e->dir);
    free(e->conninfo);
    free(e->redis_url);
    free(e->config);
    free(e->log);
}

/* The number of migrations/NNN_name.sql files the binary embeds. */
static int count_migrations(void)
{
    DIR *d = opendir(PROJECTOR_SOURCE_DIR "/migrations");
    struct dirent *de;
    int n = 0;
    cr_assert_not_null(d);
    while ((de = readdir(d)) != NULL)
        n += strlen(de->d_name) > 4 && strcmp(de->d_name + strlen(de->d_name) - 4, ".sql") == 0;
    closedir(d);
    return n;
}

Test(cli, migrate_applies_once)
{
    Env e;
    env_setup(&e, "migrate");
    const char *args[] = {"migrate", "--config", e.config, NULL};
    char *out = run_cli(args, 0), expect[64], count[16];
    int n = count_migrations();
    snprintf(expect, sizeof expect, "(%d migration%s applied now)", n, n == 1 ? "" : "s");
    snprintf(count, sizeof count, "%d", n);
    cr_assert(strstr(out, expect) != NULL, "%s", out);
    free(out);
    out = run_cli(args, 0);
    cr_assert(strstr(out, "(0 migrations applied now)") != NULL, "%s", out);
    free(out);
    PGconn *pg = testenv_pg(e.conninfo);
    char *applied = testenv_query_text(pg, "SELECT count(*) FROM projector.schema_migrations");
    cr_assert_str_eq(applied, count);
    free(applied);
    PQfinish(pg);
    env_done(&e);
}

Test(cli, run_refuses_a_table_that_does_not_match, .timeout = 60)
{
    Env e;
    env_setup(&e, "mismatch");
    PGconn *pg = testenv_pg(e.conninfo);
    PQclear(testenv_sql(pg, "CREATE TABLE customers (id text PRIMARY KEY, name integer NOT NULL, "
                            "email text)"));
    const char *args[] = {"run", "--config", e.config, NULL};
    char *out = run_cli(args, 2);
    cr_assert(strstr(out, "customers.yaml") != NULL, "%s", out);
    /* the log line is logfmt: the message's quotes come escaped */
    cr_assert(strstr(out, "column \\\"name\\\" of table") != NULL, "%s", out);
    free(out);
    /* Nothing was created: the mismatch stops the start before any table is touched. */
    char *t = testenv_query_text(
        pg, "SELECT count(*) FROM pg_tables WHERE tablename = 'order_read_model'");
    cr_assert_str_eq(t, "0");
    free(t);
    PQfinish(pg);
    env_done(&e);
}

/* A read-model folder the loader rejects: run exits 2 naming every error, and neither
 * PostgreSQL (no schema, no table) nor Redis (no stream, no group) has been touched. */
Test(cli, run_refuses_bad_read_models_before_touching_anything, .timeout = 60)
{
    Env e;
    env_setup(&e, "badmodels");
    char *models = xasprintf("%s/models", e.dir);
    cr_assert_eq(mkdir(models, 0755), 0);
    char *good = NULL, *text = NULL;
    PjError err;
    cr_assert_eq(read_file(PROJECTOR_SOURCE_DIR "/readmodels/customers.yaml", &text, NULL, &err),
                 0);
    good = testenv_write_file(models, "customers.yaml", text);
    free(text);
    char *bad = testenv_write_file(models, "orders.yaml",
                                   "readmodel: orders\ntable: order_read_model\n"
                                   "streams: [orders]\nkey: [id]\ncolumns:\n  id: text\n"
                                   "on:\n  order.placed:\n    upsert: { id: $.payload.orderId, "
                                   "nope: 1 }\n");
    free(e.config);
    e.config = testenv_write_config(e.dir, e.redis_url, e.conninfo, e.port, models, 100, 200);
    const char *args[] = {"run", "--config", e.config, NULL};
    char *out = run_cli(args, 2);
    cr_assert(strstr(out, "orders.yaml:9:") != NULL && strstr(out, "\"nope\"") != NULL, "%s", out);
    free(out);
    PGconn *pg = testenv_pg(e.conninfo);
    char *t =
        testenv_query_text(pg, "SELECT count(*) FROM pg_namespace WHERE nspname = 'projector'");
    cr_assert_str_eq(t, "0", "the bookkeeping schema was created");
    free(t);
    t = testenv_query_text(pg, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
    cr_assert_str_eq(t, "0", "a read table was created");
    free(t);
    PQfinish(pg);
    redisContext *r = testenv_redis(e.rdb);
    redisReply *keys = redisCommand(r, "DBSIZE");
    cr_assert(keys != NULL && keys->type == REDIS_REPLY_INTEGER && keys->integer == 0,
              "Redis was touched: %lld keys", keys != NULL ? keys->integer : -1);
    freeReplyObject(keys);
    redisFree(r);
    free(good);
    free(bad);
    free(models);
    env_done(&e);
}

Test(cli, status_and_takeover_of_a_dead_consumer, .timeout = 120)
{
    Env e;
    char id[48];
    env_setup(&e, "status");
    redisContext *r = testenv_redis(e.rdb);
    /* A consumer of the group that read an entry and died before acknowledging it. */
    freeReplyObject(redisCommand(r, "XGROUP CREATE customers projector:customers 0 MKSTREAM"));
    json_t *f = json_pack("{s:s, s:s}", "type", "customer.registered", "payload",
                          "{\"customerId\":\"c-9\",\"name\":\"Orphan\"}");
    testenv_xadd(r, "customers", f, id);
    json_decref(f);
    redisReply *rep =
        redisCommand(r, "XREADGROUP GROUP projector:customers ghost COUNT 10 STREAMS customers >");
    cr_assert(rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1);
    freeReplyObject(rep);

    const char *run[] = {"run", "--config", e.config, NULL};
    pid_t pid = testenv_spawn(run, e.log);
    cr_assert(testenv_wait_http(e.port, 20000));
    char path[128], *body = NULL;
    snprintf(path, sizeof path, "/wait?stream=customers&id=%s&timeout_ms=20000", id);
    cr_assert_eq(testenv_http_get(e.port, path, &body), 200, "%s", body);
    free(body);
    PGconn *pg = testenv_pg(e.conninfo);
    char *row = testenv_query_text(pg, "SELECT id, name FROM customers");
    cr_assert_str_eq(row, "c-9|Orphan");
    free(row);
    rep = redisCommand(r, "XPENDING customers projector:customers");
    cr_assert_eq(rep->element[0]->integer, 0, "the entry is still pending");
    freeReplyObject(rep);

    const char *status[] = {"status", "--config", e.config, NULL};
    char *out = run_cli(status, 0);
    cr_assert(strstr(out, "READMODEL") != NULL && strstr(out, "STATE") != NULL, "%s", out);
    cr_assert(strstr(out, "customers") != NULL && strstr(out, id) != NULL, "%s", out);
    free(out);
    /* --json: the state of each read model is the one /lag gives */
    const char *json_args[] = {"status", "--json", "--config", e.config, NULL};
    out = run_cli(json_args, 0);
    json_t *doc = json_loads(out, 0, NULL);
    cr_assert_not_null(doc, "not JSON: %s", out);
    cr_assert_str_eq(json_string_value(json_object_get(doc, "daemon")), "ok");
    cr_assert_str_eq(json_string_value(json_object_get(doc, "postgres")), "ok");
    size_t i;
    json_t *rm;
    json_array_foreach(json_object_get(doc, "readmodels"), i, rm)
    {
        const char *name = json_string_value(json_object_get(rm, "name"));
        char lag_path[96], *lag = NULL;
        snprintf(lag_path, sizeof lag_path, "/lag/%s", name);
        cr_assert_eq(testenv_http_get(e.port, lag_path, &lag), 200);
        json_t *l = json_loads(lag, 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(rm, "state")),
                         json_string_value(json_object_get(l, "state")), "%s: %s vs %s", name, out,
                         lag);
        json_decref(l);
        free(lag);
    }
    json_decref(doc);
    free(out);
    cr_assert_eq(testenv_kill(pid, SIGTERM), 0);
    /* without the daemon: the lag all the same, and the states said unknown */
    out = run_cli(status, 0);
    cr_assert(strstr(out, "the daemon does not answer") != NULL, "%s", out);
    cr_assert(strstr(out, id) != NULL, "%s", out);
    free(out);
    /* PostgreSQL out of reach: said plainly, exit 1, Redis's part still shown */
    char *nopg_dir = testenv_tmpdir();
    char *bad =
        testenv_write_config(nopg_dir, e.redis_url, "host=127.0.0.1 port=1 connect_timeout=2",
                             e.port, PROJECTOR_SOURCE_DIR "/readmodels", 100, 200);
    free(nopg_dir);
    const char *nopg[] = {"status", "--config", bad, NULL};
    out = run_cli(nopg, 1);
    cr_assert(strstr(out, "PostgreSQL cannot be reached") != NULL, "%s", out);
    cr_assert(strstr(out, id) != NULL, "the last entry in Redis is not shown: %s", out);
    free(out);
    free(bad);
    PQfinish(pg);
    redisFree(r);
    env_done(&e);
}

/* The README's least-privilege recipe, its SQL block run as written but for the role
 * names (roles belong to the whole cluster, which every suite of the run shares). */
static char *least_privilege_sql(const char *role, const char *reader)
{
    char *readme = NULL, *sql;
    PjError err;
    cr_assert_eq(read_file(PROJECTOR_SOURCE_DIR "/README.md", &readme, NULL, &err), 0);
    const char *section = strstr(readme, "## Least privilege");
    cr_assert_not_null(section, "README has no least-privilege section");
    const char *start = strstr(section, "```sql\n"), *end = NULL;
    cr_assert_not_null(start);
    start += strlen("```sql\n");
    end = strstr(start, "```");
    cr_assert_not_null(end);
    StrBuf sb = {0};
    for (const char *p = start; p < end;) {
        static const char *const role_uses[] = {"ROLE projector", "AUTHORIZATION projector"};
        bool done = false;
        for (size_t i = 0; i < ARRAY_SIZE(role_uses) && !done; i++) {
            size_t n = strlen(role_uses[i]);
            if (strncmp(p, role_uses[i], n) == 0) {
                strbuf_appendf(&sb, "%.*s%s", (int)(n - strlen("projector")), p, role);
                p += n;
                done = true;
            }
        }
        if (!done && strncmp(p, "app_reader", 10) == 0) {
            strbuf_append(&sb, reader);
            p += 10;
        } else if (!done) {
            strbuf_appendn(&sb, p++, 1);
        }
    }
    /* The recipe's prose: unqualified tables go to the role's search_path. */
    strbuf_appendf(&sb, "ALTER ROLE %s SET search_path = read;\n", role);
    sql = strbuf_take(&sb);
    free(readme);
    return sql;
}

/* env's conninfo and config, as role. */
static void env_as_role(Env *e, const char *role)
{
    const char *user = "user='postgres'";
    char *at = strstr(e->conninfo, user);
    cr_assert_not_null(at, "%s", e->conninfo);
    char *conninfo =
        xasprintf("%.*suser='%s'%s", (int)(at - e->conninfo), e->conninfo, role, at + strlen(user));
    free(e->conninfo);
    e->conninfo = conninfo;
    free(e->config);
    e->config = testenv_write_config(e->dir, e->redis_url, e->conninfo, e->port,
                                     PROJECTOR_SOURCE_DIR "/readmodels", 100, 200);
}

/* A role with exactly the privileges the README lists can migrate and run; one that lacks
 * the schemas (and CREATE on the database) is told which privilege it lacks. */
Test(cli, the_least_privilege_recipe_works_as_written, .timeout = 120)
{
    Env e;
    char role[32], reader[32], lacking[32];
    env_setup(&e, "leastpriv");
    snprintf(role, sizeof role, "pj_least_%d", (int)getpid());
    snprintf(reader, sizeof reader, "pj_reader_%d", (int)getpid());
    snprintf(lacking, sizeof lacking, "pj_lacking_%d", (int)getpid());
    PGconn *admin = testenv_pg(e.conninfo);
    char *sql = least_privilege_sql(role, reader);
    PQclear(testenv_sql(admin, sql));
    free(sql);
    char *create =
        xasprintf("CREATE ROLE %s LOGIN; REVOKE CREATE ON SCHEMA public FROM PUBLIC", lacking);
    PQclear(testenv_sql(admin, create));
    free(create);
    char *conninfo = xstrdup(e.conninfo);

    env_as_role(&e, role);
    const char *migrate[] = {"migrate", "--config", e.config, NULL};
    char *out = run_cli(migrate, 0);
    free(out);
    const char *run[] = {"run", "--config", e.config, NULL};
    pid_t pid = testenv_spawn(run, e.log);
    int status = 0;
    for (int i = 0; i < 200 && status != 200; i++) {
        char *body = NULL;
        status = testenv_http_get(e.port, "/readyz", &body);
        free(body);
        if (status != 200)
            testenv_sleep_ms(100);
    }
    kill(pid, SIGTERM);
    cr_assert_eq(testenv_wait_exit(pid, 30000), 0, "run as %s: see %s", role, e.log);
    cr_assert_eq(status, 200, "run as %s never got ready: see %s", role, e.log);
    char *t = testenv_query_text(admin, "SELECT schemaname FROM pg_tables "
                                        "WHERE tablename = 'order_read_model'");
    cr_assert_str_eq(t, "read", "the read tables go to the role's search_path");
    free(t);

    free(e.conninfo);
    e.conninfo = conninfo;
    PQclear(testenv_sql(admin, "DROP SCHEMA projector CASCADE"));
    env_as_role(&e, lacking);
    const char *migrate_lacking[] = {"migrate", "--config", e.config, NULL};
    out = run_cli(migrate_lacking, 1);
    cr_assert(strstr(out, "CREATE on database") != NULL && strstr(out, "AUTHORIZATION") != NULL,
              "%s", out);
    free(out);
    PQfinish(admin);
    env_done(&e);
}
