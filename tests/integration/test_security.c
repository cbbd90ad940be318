/* test_security.c - the daemon against hostile data and with secrets, on real Redis and
 * PostgreSQL: SQL-injection and quote-breaking strings through every value path (keys,
 * set, add with numbers as strings, where, lookup where, when, functions, both event
 * encodings) end up as plain data and change nothing else; the PostgreSQL and Redis
 * passwords and the HTTP token, given through ${ENV}, never show in the log, /lag,
 * /metrics, /readyz, CLI output or the process's arguments, even while they fail.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"
#include "os/now.h"
#include "testenv.h"

#define SEC_WAIT_MS 30000 /* for the daemon to settle an entry, or to change state */

static void sec_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static char *sec_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    StrBuf sb = {0};
    char buf[4096];
    size_t n;

    strbuf_append(&sb, "");
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
        strbuf_appendn(&sb, buf, n);
    if (f)
        fclose(f);
    return strbuf_take(&sb);
}

/* ---- HTTP with a bearer token ---- */

/* GET path with "Authorization: Bearer token" unless token is NULL; returns the status (-1
 * on connection failure) and the body in *body (caller frees; "" when none). */
static int sec_http_get(int port, const char *path, const char *token, char **body)
{
    char *auth = token ? xasprintf("Authorization: Bearer %s\r\n", token) : xstrdup("");
    char *req = xasprintf("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s\r\n", path, auth);
    int fd = -1, status = -1;
    struct timeval tv = {.tv_sec = 60};
    StrBuf sb = {0};
    char buf[4096], *sep;
    ssize_t n;

    strbuf_append(&sb, "");
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd >= 0 && testenv_connect(fd, port, 60000) == 0 &&
        testenv_send_all(fd, req, strlen(req))) {
        while ((n = recv(fd, buf, sizeof buf, 0)) > 0 || (n < 0 && errno == EINTR))
            if (n > 0)
                strbuf_appendn(&sb, buf, (size_t)n);
    }
    if (fd >= 0)
        close(fd);
    if (sscanf(sb.buf, "HTTP/%*d.%*d %d", &status) != 1)
        status = -1;
    sep = strstr(sb.buf, "\r\n\r\n");
    *body = xstrdup(sep ? sep + 4 : "");
    strbuf_done(&sb);
    free(req);
    free(auth);
    return status;
}

/* /wait for one entry, asserting 200. */
static void sec_wait(int port, const char *token, const char *stream, const char *id,
                     const char *log)
{
    char *path = xasprintf("/wait?stream=%s&id=%s&timeout_ms=%d", stream, id, SEC_WAIT_MS);
    char *body = NULL;
    int status = sec_http_get(port, path, token, &body);

    cr_assert_eq(status, 200, "/wait for %s %s answered %d: %s (log: %s)", stream, id, status, body,
                 log);
    free(body);
    free(path);
}

/* ---- hostile strings ---- */

static const char *const hostile_fixed[] = {
    "'; DROP TABLE customers; --",
    "\" OR 1=1 --",
    "$1",
    "\\",
    "Robert'); DROP TABLE order_read_model;--",
    "' OR '1'='1",
    "$$; DELETE FROM projector.checkpoints; $$",
    "E'\\x27'; SELECT pg_sleep(10); --",
    "%s%s%s%n%x%p",
    "\\'; TRUNCATE customer_stats CASCADE; --",
    "Zo\xc3\xab \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 \xe2\x80\xae",
    "line\nbreak\ttab\r\"quoted\"",
    "/* open comment",
    "customers\"; DROP SCHEMA projector CASCADE; --",
    "NULL",
    "",
};

enum { NHOSTILE = ARRAY_SIZE(hostile_fixed) + 1 };

/* hostile_fixed, then a 2,000-byte mix of quotes and separators: as long as a key may be
 * (a btree entry holds at most about 2.7 kB). */
static char *hostile[NHOSTILE];
/* 100 kB of the same mix, for non-key columns. */
static char *hostile_long;

static char *quote_mix(size_t len)
{
    static const char mix[] = "'\"\\;--$1/*\xc3\xa9 ";
    char *s = xmalloc(len + 1);

    for (size_t i = 0; i < len; i++)
        s[i] = mix[i % (sizeof mix - 1)];
    /* Never end inside the two-byte \xc3\xa9: the text must stay valid UTF-8. */
    if (len > 0 && (unsigned char)s[len - 1] == 0xc3)
        s[len - 1] = 'x';
    s[len] = '\0';
    return s;
}

static void hostile_init(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(hostile_fixed); i++)
        hostile[i] = xstrdup(hostile_fixed[i]);
    hostile[NHOSTILE - 1] = quote_mix(2000);
    hostile_long = quote_mix(100000);
}

static void hostile_done(void)
{
    for (size_t i = 0; i < NHOSTILE; i++)
        free(hostile[i]);
    free(hostile_long);
}

/* upper() and lower() map ASCII letters only. */
static char *ascii_case(const char *s, bool upper)
{
    char *out = xstrdup(s);

    for (char *p = out; *p; p++) {
        if (upper && *p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
        else if (!upper && *p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    return out;
}

/* ---- the injection fixture ---- */

/* A read model beside the shipped ones, for the paths they do not use: a two-column key,
 * nested functions, coalesce, a two-column where, add in an update, a string `when`. */
static const char notes_yaml[] =
    "readmodel: notes\n"
    "table: notes\n"
    "streams: [notes]\n"
    "key: [tenant, id]\n"
    "columns:\n"
    "  tenant: text\n"
    "  id:     text\n"
    "  body:   text\n"
    "  shout:  text\n"
    "  tag:    { type: text, nullable: true }\n"
    "  score:  { type: \"numeric(14,2)\", default: 0 }\n"
    "  hits:   { type: bigint, default: 0 }\n"
    "on:\n"
    "  note.written:\n"
    "    upsert:\n"
    "      tenant: $.payload.tenant\n"
    "      id:     $.payload.id\n"
    "      body:   $.payload.body\n"
    "      shout:  upper(concat($.payload.body, '!'))\n"
    "      tag:    coalesce($.payload.tag, $.payload.body)\n"
    "      add:    { hits: 1, score: $.payload.score }\n"
    "  note.edited:\n"
    "    update:\n"
    "      where: { tenant: $.payload.tenant, id: $.payload.id }\n"
    "      set:   { body: $.payload.body, tag: lower($.payload.body) }\n"
    "      add:   { score: $.payload.delta }\n"
    "  note.erased:\n"
    "    delete:\n"
    "      when:  \"$.payload.confirm == 'yes'\"\n"
    "      where: { tenant: $.payload.tenant, id: $.payload.id }\n";

typedef struct Inj {
    char *dir, *conninfo, *config, *log;
    int port;
    redisContext *redis;
    PGconn *pg;
    pid_t pid;
    unsigned serial;  /* event IDs */
    char last[3][48]; /* last entry ID on customers, orders, notes */
} Inj;

enum { INJ_CUSTOMERS, INJ_ORDERS, INJ_NOTES };
static const char *const inj_streams[] = {"customers", "orders", "notes"};

static void copy_file(const char *from, const char *dir, const char *name)
{
    FILE *f = fopen(from, "r");
    StrBuf sb = {0};
    char buf[4096];
    size_t n;

    cr_assert_not_null(f, "could not open \"%s\": %s", from, strerror(errno));
    strbuf_append(&sb, "");
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        strbuf_appendn(&sb, buf, n);
    fclose(f);
    free(testenv_write_file(dir, name, sb.buf));
    strbuf_done(&sb);
}

/* The shipped read models and notes.yaml in dir/readmodels; returns that folder. */
static char *inj_readmodels(const char *dir)
{
    static const char *const shipped[] = {"customers.yaml", "orders.yaml", "customer_stats.yaml"};
    char *rm = xasprintf("%s/readmodels", dir);

    cr_assert_eq(mkdir(rm, 0755), 0, "%s", strerror(errno));
    for (size_t i = 0; i < ARRAY_SIZE(shipped); i++) {
        char *from = xasprintf("%s/readmodels/%s", PROJECTOR_SOURCE_DIR, shipped[i]);
        copy_file(from, rm, shipped[i]);
        free(from);
    }
    free(testenv_write_file(rm, "notes.yaml", notes_yaml));
    return rm;
}

static void inj_setup(Inj *e)
{
    char *rm, *redis_url;
    int rdb;

    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    memset(e, 0, sizeof *e);
    hostile_init();
    e->dir = testenv_tmpdir();
    e->conninfo = testenv_create_db("inject");
    rdb = testenv_redis_db();
    redis_url = testenv_redis_url(rdb);
    e->redis = testenv_redis(rdb);
    e->port = testenv_free_port();
    rm = inj_readmodels(e->dir);
    e->config = testenv_write_config(e->dir, redis_url, e->conninfo, e->port, rm, 50, 100);
    e->log = xasprintf("%s/projector.log", e->dir);
    e->pg = testenv_pg(e->conninfo);
    free(rm);
    free(redis_url);
}

static void inj_done(Inj *e)
{
    if (e->pid > 0)
        (void)testenv_kill(e->pid, SIGKILL);
    if (e->pg)
        PQfinish(e->pg);
    if (e->redis)
        redisFree(e->redis);
    free(e->dir);
    free(e->conninfo);
    free(e->config);
    free(e->log);
    hostile_done();
}

/* XADDs one event, as an envelope or as flat fields; takes the reference to payload. */
static void inj_send(Inj *e, int stream, const char *type, json_t *payload, bool envelope)
{
    char event_id[32];
    json_t *fields;

    snprintf(event_id, sizeof event_id, "ev-%u", ++e->serial);
    if (envelope) {
        fields = json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:i,s:{},s:o}}", "event", "eventId", event_id,
                           "eventType", type, "aggregateId", event_id, "aggregateType", "test",
                           "timestamp", "2026-01-15T10:00:00Z", "version", 1, "metadata", "payload",
                           payload);
    } else {
        char *text = json_dumps(payload, JSON_COMPACT);
        fields = json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", type, "event_id", event_id, "version",
                           "1", "occurred_at", "2026-01-15T10:00:00Z", "payload", text);
        free(text);
        json_decref(payload);
    }
    cr_assert_not_null(fields, "could not build event %s", type);
    testenv_xadd(e->redis, inj_streams[stream], fields, e->last[stream]);
    json_decref(fields);
}

static void inj_wait(Inj *e, int stream)
{
    sec_wait(e->port, NULL, inj_streams[stream], e->last[stream], e->log);
}

/* Every relation and function outside the system schemas, with its kind. */
static char *inj_catalog(Inj *e)
{
    return testenv_query_text(
        e->pg, "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON "
               "n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', "
               "'information_schema', 'pg_toast') UNION ALL SELECT n.nspname, p.proname, 'f' "
               "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname "
               "NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3");
}

/* The one row (or "(none)") sql selects for the parameters, columns joined by '|'. */
static char *inj_row(Inj *e, const char *sql, const char *p1, const char *p2)
{
    const char *params[2] = {p1, p2};
    PGresult *res = PQexecParams(e->pg, sql, p2 ? 2 : 1, NULL, params, NULL, NULL, 0);
    StrBuf sb = {0};

    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(res));
    cr_assert_leq(PQntuples(res), 1, "%s: %d rows", sql, PQntuples(res));
    strbuf_append(&sb, PQntuples(res) == 0 ? "(none)" : "");
    for (int c = 0; PQntuples(res) == 1 && c < PQnfields(res); c++)
        strbuf_appendf(&sb, "%s%s", c ? "|" : "",
                       PQgetisnull(res, 0, c) ? "\\N" : PQgetvalue(res, 0, c));
    PQclear(res);
    return strbuf_take(&sb);
}

/* ---- the injection events ---- */

/* Registrations (customers) and first notes: every hostile string as key and value. */
static void inj_phase_create(Inj *e)
{
    for (size_t i = 0; i < NHOSTILE; i++) {
        const char *h = hostile[i], *other = hostile[(i + 1) % NHOSTILE];
        inj_send(e, INJ_CUSTOMERS, "customer.registered",
                 json_pack("{s:s,s:s,s:s}", "customerId", h, "name", h, "email",
                           i == 0 ? hostile_long : h),
                 i % 2 == 0);
        for (int n = 0; n < 2; n++)
            inj_send(e, INJ_NOTES, "note.written",
                     json_pack("{s:s,s:s,s:s,s:s}", "tenant", h, "id", other, "body", h, "score",
                               n == 0 ? "1.5" : "2"),
                     (i + (size_t)n) % 2 == 0);
    }
    /* A plain note erased below by a plain confirmation: `when` does work. */
    inj_send(
        e, INJ_NOTES, "note.written",
        json_pack("{s:s,s:s,s:s,s:s}", "tenant", "plain", "id", "plain", "body", "x", "score", "1"),
        false);
    inj_wait(e, INJ_CUSTOMERS);
    inj_wait(e, INJ_NOTES);
}

/* Orders placed (lookup where on the hostile customer), items and lines added with numbers
 * as strings, confirmed and refunded with a reason that tries to break out of `when`. */
static void inj_phase_orders(Inj *e)
{
    for (size_t i = 0; i < NHOSTILE; i++) {
        const char *h = hostile[i];
        bool env = i % 2 == 1;
        inj_send(e, INJ_ORDERS, "order.placed",
                 json_pack("{s:s,s:s,s:[{s:s}],s:{s:s,s:s}}", "orderId", h, "customerId", h,
                           "items", "sku", h, "total", "amount", "10.50", "currency", h),
                 env);
        inj_send(e, INJ_ORDERS, "order.item_added",
                 json_pack("{s:s,s:s}", "orderId", h, "qty", "2"), !env);
        inj_send(e, INJ_ORDERS, "order.line_added",
                 json_pack("{s:s,s:s,s:s}", "orderId", h, "qty", "3", "unitPrice", "1.25"), env);
        inj_send(e, INJ_ORDERS, "order.confirmed", json_pack("{s:s}", "orderId", h), !env);
        inj_send(
            e, INJ_ORDERS, "order.refunded",
            json_pack("{s:s,s:s,s:i}", "orderId", h, "reason", "fraud' OR 'a'='a", "amount", 500),
            env);
    }
    /* SQL in a number: it does not cast, so it is dead-lettered, never run. */
    inj_send(e, INJ_ORDERS, "order.item_added",
             json_pack("{s:s,s:s}", "orderId", hostile[0], "qty", "1; DROP TABLE customers"),
             false);
    /* A hostile event type: no read model handles it, so it is skipped. */
    inj_send(e, INJ_ORDERS, "x'; DROP TABLE customers; --", json_pack("{s:s}", "a", "b"), true);
    inj_wait(e, INJ_ORDERS);
}

/* Renames fanned out to the orders, notes edited, and erasures that `when` refuses. */
static void inj_phase_change(Inj *e)
{
    for (size_t i = 0; i < NHOSTILE; i++) {
        const char *h = hostile[i], *other = hostile[(i + 1) % NHOSTILE];
        char *renamed = xasprintf("renamed:%s", h), *edited = xasprintf("edited:%s", h);
        inj_send(e, INJ_CUSTOMERS, "customer.renamed",
                 json_pack("{s:s,s:s}", "customerId", h, "name", renamed), i % 2 == 0);
        inj_send(e, INJ_NOTES, "note.edited",
                 json_pack("{s:s,s:s,s:s,s:s}", "tenant", h, "id", other, "body", edited, "delta",
                           "-0.5"),
                 i % 2 == 1);
        inj_send(e, INJ_NOTES, "note.erased",
                 json_pack("{s:s,s:s,s:s}", "tenant", h, "id", other, "confirm", "yes' OR '1'='1"),
                 i % 2 == 0);
        free(renamed);
        free(edited);
    }
    inj_send(e, INJ_NOTES, "note.erased",
             json_pack("{s:s,s:s,s:s}", "tenant", "plain", "id", "plain", "confirm", "yes"), true);
    inj_wait(e, INJ_CUSTOMERS);
    inj_wait(e, INJ_NOTES);
}

/* ---- the injection checks ---- */

static void inj_expect_row(Inj *e, const char *sql, const char *p1, const char *p2,
                           const char *want, size_t i)
{
    char *got = inj_row(e, sql, p1, p2);

    cr_expect(strcmp(got, want) == 0, "hostile string %zu: %s\n got: %.300s\nwant: %.300s", i, sql,
              got, want);
    free(got);
}

static void inj_check_one(Inj *e, size_t i)
{
    const char *h = hostile[i], *other = hostile[(i + 1) % NHOSTILE];
    char *edited = xasprintf("edited:%s", h), *with_bang = xasprintf("%s!", h);
    char *shout = ascii_case(with_bang, true), *tag = ascii_case(edited, false);
    char *want;

    want = xasprintf("renamed:%s|%s", h, i == 0 ? hostile_long : h);
    inj_expect_row(e, "SELECT name, email FROM customers WHERE id = $1", h, NULL, want, i);
    free(want);
    want = xasprintf("%s|renamed:%s|refunded|3|14.25|%s|t|1", h, h, h);
    inj_expect_row(e,
                   "SELECT customer_id, customer_name, status, item_count, total, currency, "
                   "confirmed_at IS NOT NULL, version FROM order_read_model WHERE id = $1",
                   h, NULL, want, i);
    free(want);
    inj_expect_row(e,
                   "SELECT orders, orders_cancelled, total_spent FROM customer_stats WHERE "
                   "customer_id = $1",
                   h, NULL, "1|0|10.50", i);
    want = xasprintf("%s|%s|%s|3.00|2", edited, shout, tag);
    inj_expect_row(e,
                   "SELECT body, shout, tag, score, hits FROM notes WHERE tenant = $1 AND id = $2",
                   h, other, want, i);
    free(want);
    free(edited);
    free(with_bang);
    free(shout);
    free(tag);
}

static void inj_expect_text(Inj *e, const char *sql, const char *want)
{
    char *got = testenv_query_text(e->pg, sql);

    cr_expect_str_eq(got, want, "%s (log: %s)", sql, e->log);
    free(got);
}

static void inj_check_counts(Inj *e)
{
    char want[64];

    snprintf(want, sizeof want, "%d|%d|%d|%d", NHOSTILE, NHOSTILE, NHOSTILE, NHOSTILE);
    inj_expect_text(e,
                    "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM "
                    "order_read_model), (SELECT count(*) FROM customer_stats), (SELECT count(*) "
                    "FROM notes)",
                    want);
    /* The number that carried SQL, for orders only (customer_stats does not handle it). */
    inj_expect_text(e, "SELECT readmodel, stream FROM projector.dead_letters", "orders|orders");
}

Test(security, hostile_strings_are_stored_as_plain_data, .timeout = 180)
{
    Inj e;
    const char *args[] = {"run", "--config", NULL, NULL};
    char *before, *after, *log;

    inj_setup(&e);
    args[2] = e.config;
    e.pid = testenv_spawn(args, e.log);
    cr_assert(testenv_wait_http(e.port, 20000), "no /healthz (log: %s)", e.log);
    /* The read tables exist before the server answers: this is the whole schema. */
    before = inj_catalog(&e);
    inj_phase_create(&e);
    inj_phase_orders(&e);
    inj_phase_change(&e);
    for (size_t i = 0; i < NHOSTILE; i++)
        inj_check_one(&e, i);
    inj_check_counts(&e);
    after = inj_catalog(&e);
    cr_expect_str_eq(after, before, "the catalog changed");
    cr_expect_eq(testenv_kill(e.pid, SIGTERM), 0, "log: %s", e.log);
    e.pid = 0;
    /* No value ever reached the SQL text: PostgreSQL never saw a syntax error. */
    log = sec_read_file(e.log);
    cr_expect(strstr(log, "syntax error") == NULL && strstr(log, "42601") == NULL,
              "a statement failed to parse (log: %s)", e.log);
    free(log);
    free(before);
    free(after);
    inj_done(&e);
}

/* ---- secrets ---- */

/* Each distinct enough never to occur by chance. Their tails (after the prefix) are looked
 * for too, so that a secret cut short or quoted in part is caught as well. */
#define SEC_REDIS_DEFAULT "rdef-9KqZ2xW7vTj"
#define SEC_REDIS_ACL "racl-P4s@w0:rd/7Hn3"
#define SEC_REDIS_WRONG "rbad-W5e9Uu1Yp3s"
#define SEC_PG "pgpw-M3n!k8Qz%Tr5"
#define SEC_TOKEN "tok-J8yF2cL0vB6nR4xD"
#define SEC_PREFIX_LEN 5

static const char *const secrets[] = {SEC_REDIS_DEFAULT, SEC_REDIS_ACL, SEC_REDIS_WRONG, SEC_PG,
                                      SEC_TOKEN};

enum { SEC_RUNS = 3 };

typedef struct Sec {
    char *dir, *config, *config_no_pg;
    char *logs[SEC_RUNS]; /* one per run of the daemon */
    size_t nlogs;
    const char *log;   /* the current run's */
    char *su_conninfo; /* superuser, on the test's database */
    char *db;          /* its name */
    char *role;        /* the daemon's PostgreSQL role, with password SEC_PG */
    int redis_port, http_port;
    pid_t redis_pid, pid;
    StrBuf seen; /* what the daemon answered or printed, besides its log */
} Sec;

/* A connection to the private Redis as user (NULL: the default user), or NULL when it
 * refuses. Caller redisFree()s. */
static redisContext *sec_redis(const Sec *s, const char *user, const char *password)
{
    struct timeval tv = {.tv_sec = 2};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->redis_port, tv);
    redisReply *r;
    bool ok;

    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    r = user ? redisCommand(c, "AUTH %s %s", user, password) : redisCommand(c, "AUTH %s", password);
    ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (r)
        freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static void sec_redis_do(const Sec *s, const char *fmt, const char *arg)
{
    redisContext *c = sec_redis(s, NULL, SEC_REDIS_DEFAULT);
    redisReply *r;

    cr_assert_not_null(c, "could not reach the private Redis");
    r = redisCommand(c, fmt, arg);
    cr_assert(r != NULL && r->type != REDIS_REPLY_ERROR, "%s: %s", fmt, r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
}

/* A private redis-server: the default user needs SEC_REDIS_DEFAULT, and the ACL user
 * "projector" SEC_REDIS_ACL. */
static void sec_redis_start(Sec *s)
{
    char *text = xasprintf("port %d\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir %s\n"
                           "logfile %s/redis.log\nrequirepass %s\n"
                           "user projector on >%s ~* &* +@all\n",
                           s->redis_port, s->dir, s->dir, SEC_REDIS_DEFAULT, SEC_REDIS_ACL);
    char *conf = testenv_write_file(s->dir, "redis.conf", text);
    int64_t deadline = now_monotonic_ms() + 10000;
    redisContext *c = NULL;

    s->redis_pid = fork();
    cr_assert_geq(s->redis_pid, 0);
    if (s->redis_pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
        execlp("redis-server", "redis-server", conf, (char *)NULL);
        _exit(127);
    }
    while (!(c = sec_redis(s, NULL, SEC_REDIS_DEFAULT)) && now_monotonic_ms() < deadline)
        sec_sleep_ms(50);
    cr_assert_not_null(c, "the private redis-server did not start (%s/redis.log)", s->dir);
    redisFree(c);
    free(conf);
    free(text);
}

static void sec_sql(const char *conninfo, const char *sql)
{
    PGconn *c = testenv_pg(conninfo);

    PQclear(testenv_sql(c, sql));
    PQfinish(c);
}

/* A database owned by a login role with a password. The test cluster trusts local
 * connections, so the password is never checked; it is still in the conninfo. */
static void sec_pg_setup(Sec *s)
{
    char *sql;
    PGconn *c;

    s->su_conninfo = testenv_create_db("secrets");
    s->role = xasprintf("pj_sec_%ld", (long)getpid());
    c = testenv_pg(s->su_conninfo);
    sql = xasprintf("DO $$BEGIN CREATE ROLE %s LOGIN PASSWORD '%s'; EXCEPTION WHEN "
                    "duplicate_object THEN ALTER ROLE %s LOGIN PASSWORD '%s'; END$$",
                    s->role, SEC_PG, s->role, SEC_PG);
    PQclear(testenv_sql(c, sql));
    free(sql);
    s->db = xstrdup(PQdb(c));
    sql = xasprintf("ALTER DATABASE %s OWNER TO %s", s->db, s->role);
    PQclear(testenv_sql(c, sql));
    free(sql);
    sql = xasprintf("ALTER SCHEMA public OWNER TO %s", s->role);
    PQclear(testenv_sql(c, sql));
    free(sql);
    PQfinish(c);
}

static char *sec_write_config(const Sec *s, const char *name, int pg_port)
{
    PGconn *c = testenv_pg(s->su_conninfo);
    char *text = xasprintf(
        "redis:\n  url: 'redis://projector:${PJ_SEC_REDIS_PASSWORD}@127.0.0.1:%d/0'\n"
        "  connect_timeout_ms: 1000\n"
        "postgres:\n  conninfo: 'host=%s port=%d dbname=%s user=%s "
        "password=${PJ_SEC_PG_PASSWORD} connect_timeout=3'\n"
        "http:\n  listen: '127.0.0.1:%d'\n  token: '${PJ_SEC_HTTP_TOKEN}'\n"
        "readmodels: '%s/readmodels'\nbatch: 100\nblock_ms: 200\nlog_level: debug\n"
        "stats_interval_s: 1\n",
        s->redis_port, PQhost(c), pg_port, PQdb(c), s->role, s->http_port, PROJECTOR_SOURCE_DIR);
    char *path = testenv_write_file(s->dir, name, text);

    PQfinish(c);
    free(text);
    return path;
}

static void sec_setup(Sec *s)
{
    PGconn *c;

    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    memset(s, 0, sizeof *s);
    strbuf_append(&s->seen, "");
    s->dir = testenv_tmpdir();
    s->redis_port = testenv_free_port();
    s->http_port = testenv_free_port();
    sec_redis_start(s);
    sec_pg_setup(s);
    c = testenv_pg(s->su_conninfo);
    s->config = sec_write_config(s, "projector.yaml", atoi(PQport(c)));
    PQfinish(c);
    s->config_no_pg = sec_write_config(s, "no-pg.yaml", testenv_free_port());
    setenv("PJ_SEC_REDIS_PASSWORD", SEC_REDIS_ACL, 1);
    setenv("PJ_SEC_PG_PASSWORD", SEC_PG, 1);
    setenv("PJ_SEC_HTTP_TOKEN", SEC_TOKEN, 1);
}

static void sec_done(Sec *s)
{
    if (s->pid > 0)
        (void)testenv_kill(s->pid, SIGKILL);
    if (s->redis_pid > 0)
        (void)testenv_kill(s->redis_pid, SIGTERM);
    /* The role is the cluster's, not the database's: drop both. */
    if (s->role) {
        char *sql = xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", s->db);
        sec_sql(getenv("PROJECTOR_TEST_PG"), sql);
        free(sql);
        sql = xasprintf("DROP ROLE IF EXISTS %s", s->role);
        sec_sql(getenv("PROJECTOR_TEST_PG"), sql);
        free(sql);
    }
    strbuf_done(&s->seen);
    free(s->dir);
    for (size_t i = 0; i < s->nlogs; i++)
        free(s->logs[i]);
    free(s->config);
    free(s->config_no_pg);
    free(s->su_conninfo);
    free(s->db);
    free(s->role);
}

/* ---- what the daemon shows ---- */

/* GET path and keeps the body; with want_status, checks the status too. */
static void sec_collect(Sec *s, const char *path, const char *token, int want_status)
{
    char *body = NULL;
    int status = sec_http_get(s->http_port, path, token, &body);

    if (want_status)
        cr_expect_eq(status, want_status, "GET %s: %d %s (log: %s)", path, status, body, s->log);
    strbuf_appendf(&s->seen, "GET %s -> %d\n%s\n", path, status, body);
    free(body);
}

/* Every endpoint, with the token, without it and with a wrong one. */
static void sec_collect_all(Sec *s)
{
    sec_collect(s, "/lag", SEC_TOKEN, 200);
    sec_collect(s, "/lag/orders", SEC_TOKEN, 200);
    sec_collect(s, "/metrics", SEC_TOKEN, 200);
    sec_collect(s, "/readyz", SEC_TOKEN, 0);
    sec_collect(s, "/healthz", NULL, 200);
    sec_collect(s, "/lag", NULL, 401);
    sec_collect(s, "/metrics", "tok-J8yF2cL0vB6nR4xE", 401);
    sec_collect(s, "/wait?stream=orders&id=1-0&timeout_ms=0", "wrong", 401);
}

/* The daemon's command line as ps shows it. */
static void sec_collect_ps(Sec *s, pid_t pid)
{
    char cmd[64], buf[1024];
    FILE *p;
    size_t n;

    snprintf(cmd, sizeof cmd, "ps -ww -o args= -p %ld", (long)pid);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = '\0';
    pclose(p);
    cr_expect(strstr(buf, "run --config") != NULL, "ps shows: %s", buf);
    strbuf_appendf(&s->seen, "ps: %s\n", buf);
}

/* True when the /lag document shows every read model running (reason NULL), or one of
 * them retrying for a reason containing `reason`. */
static bool sec_lag_shows(const char *body, const char *reason)
{
    json_t *doc = json_loads(body, 0, NULL), *rm;
    bool all_running = json_array_size(json_object_get(doc, "readmodels")) > 0, found = false;
    size_t i;

    json_array_foreach(json_object_get(doc, "readmodels"), i, rm)
    {
        const char *state = json_string_value(json_object_get(rm, "state"));
        const char *why = json_string_value(json_object_get(rm, "reason"));
        all_running = all_running && state && strcmp(state, "running") == 0;
        found = found || (reason && state && strcmp(state, "retrying") == 0 && why &&
                          strstr(why, reason) != NULL);
    }
    json_decref(doc);
    return reason ? found : all_running;
}

/* Polls /lag (keeping every body) until sec_lag_shows(reason). */
static void sec_wait_lag(Sec *s, const char *reason)
{
    int64_t deadline = now_monotonic_ms() + SEC_WAIT_MS;
    bool shown = false;

    while (!shown && now_monotonic_ms() < deadline) {
        char *body = NULL;
        if (sec_http_get(s->http_port, "/lag", SEC_TOKEN, &body) == 200)
            shown = sec_lag_shows(body, reason);
        strbuf_appendf(&s->seen, "GET /lag\n%s\n", body);
        free(body);
        if (!shown)
            sec_sleep_ms(100);
    }
    cr_assert(shown, "/lag never showed %s%s (log: %s)", reason ? "a read model retrying for " : "",
              reason ? reason : "every read model running", s->log);
}

/* Polls the log until it contains text. */
static void sec_wait_log(Sec *s, const char *text)
{
    int64_t deadline = now_monotonic_ms() + SEC_WAIT_MS;

    for (;;) {
        char *log = sec_read_file(s->log);
        bool found = strstr(log, text) != NULL;

        free(log);
        if (found)
            return;
        cr_assert_lt(now_monotonic_ms(), deadline, "the log never said \"%s\" (%s)", text, s->log);
        sec_sleep_ms(100);
    }
}

/* ---- the runs ---- */

static void sec_spawn(Sec *s, const char *config, const char *name)
{
    const char *args[] = {"run", "--config", config, NULL};

    cr_assert_lt(s->nlogs, SEC_RUNS);
    s->logs[s->nlogs] = xasprintf("%s/%s.log", s->dir, name);
    s->log = s->logs[s->nlogs++];
    s->pid = testenv_spawn(args, s->log);
}

static void sec_stop(Sec *s)
{
    int code = testenv_kill(s->pid, SIGTERM);

    s->pid = 0;
    cr_expect_eq(code, 0, "the daemon exited with %d on SIGTERM (log: %s)", code, s->log);
}

/* An event published as the ACL user; its entry ID goes to id (48 bytes). */
static void sec_xadd(Sec *s, const char *customer, char *id)
{
    redisContext *c = sec_redis(s, "projector", SEC_REDIS_ACL);
    json_t *payload = json_pack("{s:s,s:s}", "customerId", customer, "name", "Ada");
    char *text = json_dumps(payload, JSON_COMPACT);
    json_t *fields =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "customer.registered", "event_id", customer,
                  "version", "1", "occurred_at", "2026-01-15T10:00:00Z", "payload", text);

    cr_assert_not_null(c, "the ACL user cannot log in to Redis");
    testenv_xadd(c, "customers", fields, id);
    json_decref(fields);
    json_decref(payload);
    free(text);
    redisFree(c);
}

/* The same, settled, seen through /wait with the token. */
static void sec_publish(Sec *s, const char *customer)
{
    char id[48];

    sec_xadd(s, customer, id);
    sec_wait(s->http_port, SEC_TOKEN, "customers", id, s->log);
}

/* The daemon's Redis password is rotated under it: it cannot log in again until the
 * password is put back. */
static void sec_break_redis(Sec *s)
{
    sec_redis_do(s, "ACL SETUSER projector resetpass %s", ">" SEC_REDIS_WRONG);
    sec_redis_do(s, "CLIENT KILL USER %s", "projector");
    sec_wait_lag(s, "WRONGPASS");
    sec_collect_all(s);
    sec_redis_do(s, "ACL SETUSER projector resetpass %s", ">" SEC_REDIS_ACL);
    sec_wait_lag(s, NULL);
}

/* The daemon's PostgreSQL role may no longer log in, and its sessions are ended; an event
 * makes the workers notice. */
static void sec_break_pg(Sec *s)
{
    char *sql = xasprintf("ALTER ROLE %s NOLOGIN", s->role);
    char id[48];

    sec_sql(s->su_conninfo, sql);
    free(sql);
    sql = xasprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '%s'",
                    s->role);
    sec_sql(s->su_conninfo, sql);
    free(sql);
    sec_xadd(s, "c-pg", id);
    sec_wait_lag(s, "not permitted to log in");
    sec_collect_all(s);
    sql = xasprintf("ALTER ROLE %s LOGIN", s->role);
    sec_sql(s->su_conninfo, sql);
    free(sql);
    sec_wait_lag(s, NULL);
}

/* Runs through every failure with the right secrets in the environment. */
static void sec_run_main(Sec *s)
{
    sec_spawn(s, s->config, "main");
    cr_assert(testenv_wait_http(s->http_port, 20000), "no /healthz (log: %s)", s->log);
    sec_collect_ps(s, s->pid);
    sec_publish(s, "c-1");
    sec_wait_lag(s, NULL);
    sec_collect_all(s);
    sec_break_redis(s);
    sec_break_pg(s);
    sec_publish(s, "c-2");
    sec_collect_all(s);
    sec_stop(s);
}

/* PostgreSQL unreachable at start: the daemon waits for it (no HTTP yet). */
static void sec_run_no_pg(Sec *s)
{
    sec_spawn(s, s->config_no_pg, "no-pg");
    sec_wait_log(s, "could not connect to PostgreSQL");
    sec_collect_ps(s, s->pid);
    (void)testenv_kill(s->pid, SIGTERM);
    s->pid = 0;
}

/* A wrong Redis password from the start. */
static void sec_run_wrong_redis(Sec *s)
{
    setenv("PJ_SEC_REDIS_PASSWORD", SEC_REDIS_WRONG, 1);
    sec_spawn(s, s->config, "wrong-redis");
    cr_assert(testenv_wait_http(s->http_port, 20000), "no /healthz (log: %s)", s->log);
    sec_wait_lag(s, "WRONGPASS");
    sec_collect_all(s);
    sec_collect_ps(s, s->pid);
    sec_stop(s);
}

/* The commands that reach the servers, failing, and check. */
static void sec_run_cli(Sec *s)
{
    const char *status[] = {"status", "--config", s->config, NULL};
    const char *migrate[] = {"migrate", "--config", s->config_no_pg, NULL};
    const char *check[] = {"check", "--config", s->config, NULL};
    const char *const *runs[] = {status, migrate, check};

    for (size_t i = 0; i < ARRAY_SIZE(runs); i++) {
        char *out = NULL;
        int code = testenv_run(runs[i], &out);
        strbuf_appendf(&s->seen, "projector %s: exit %d\n%s\n", runs[i][0], code, out);
        free(out);
    }
}

/* Every run's log, one after the other. */
static char *sec_read_logs(const Sec *s)
{
    StrBuf sb = {0};

    strbuf_append(&sb, "");
    for (size_t i = 0; i < s->nlogs; i++) {
        char *text = sec_read_file(s->logs[i]);
        strbuf_appendf(&sb, "==> %s\n%s", s->logs[i], text);
        free(text);
    }
    return strbuf_take(&sb);
}

/* No secret, whole or its tail, anywhere; and the failures did happen. */
static void sec_check(Sec *s)
{
    char *log = sec_read_logs(s);
    static const char *const evidence[] = {"WRONGPASS", "not permitted to log in",
                                           "could not connect to PostgreSQL",
                                           "missing bearer token", "invalid bearer token"};

    for (size_t i = 0; i < ARRAY_SIZE(secrets); i++) {
        const char *tail = secrets[i] + SEC_PREFIX_LEN;
        cr_expect(strstr(log, tail) == NULL, "a log (in %s) shows secret %s", s->dir, secrets[i]);
        cr_expect(strstr(s->seen.buf, tail) == NULL, "secret %s shown:\n%s", secrets[i],
                  s->seen.buf);
    }
    for (size_t i = 0; i < ARRAY_SIZE(evidence); i++)
        cr_expect(strstr(log, evidence[i]) != NULL || strstr(s->seen.buf, evidence[i]) != NULL,
                  "no sign of \"%s\": the failure was not provoked (logs in %s)", evidence[i],
                  s->dir);
    cr_log_info("checked %zu bytes of log and %zu bytes of answers and output", strlen(log),
                s->seen.len);
    free(log);
}

Test(security, secrets_never_show_in_logs_answers_or_ps, .timeout = 300)
{
    Sec s;

    sec_setup(&s);
    sec_run_main(&s);
    sec_run_no_pg(&s);
    sec_run_wrong_redis(&s);
    sec_run_cli(&s);
    sec_check(&s);
    sec_done(&s);
}

/* ---- configuration ---- */

Test(security_config, a_bad_token_is_refused_without_being_echoed)
{
    char *dir = testenv_tmpdir(), *out = NULL;
    char *text = xasprintf("http:\n  token: '${PJ_SEC_BAD_TOKEN}'\nreadmodels: '%s/readmodels'\n",
                           PROJECTOR_SOURCE_DIR);
    char *config = testenv_write_file(dir, "projector.yaml", text);
    const char *args[] = {"check", "--config", config, NULL};

    setenv("PJ_SEC_BAD_TOKEN", "has a space " SEC_TOKEN, 1);
    cr_expect_eq(testenv_run(args, &out), 2, "%s", out);
    cr_expect(strstr(out, "projector.yaml:2:10: invalid value for \"token\": expected at most "
                          "1024 visible ASCII characters without spaces") != NULL,
              "%s", out);
    cr_expect(strstr(out, &SEC_TOKEN[SEC_PREFIX_LEN]) == NULL, "%s", out);
    free(out);
    setenv("PJ_SEC_BAD_TOKEN", SEC_TOKEN, 1);
    cr_expect_eq(testenv_run(args, &out), 0, "%s", out);
    free(out);
    free(config);
    free(text);
    free(dir);
}

Test(security_config, http_bounds_are_checked)
{
    char *dir = testenv_tmpdir(), *out = NULL;
    char *text = xasprintf("http:\n  max_request_bytes: 100\n  max_waiters: 0\n"
                           "readmodels: '%s/readmodels'\n",
                           PROJECTOR_SOURCE_DIR);
    char *config = testenv_write_file(dir, "projector.yaml", text);
    const char *args[] = {"check", "--config", config, NULL};

    cr_expect_eq(testenv_run(args, &out), 2, "%s", out);
    cr_expect(strstr(out, "projector.yaml:2:22: invalid value \"100\" for \"max_request_bytes\": "
                          "must be 4096..1048576") != NULL,
              "%s", out);
    cr_expect(strstr(out, "projector.yaml:3:16: invalid value \"0\" for \"max_waiters\": must be "
                          "1..1000000") != NULL,
              "%s", out);
    free(out);
    free(config);
    free(text);
    free(dir);
}
