/* testenv.c - the test suites' side of the servers that tests/run.sh starts: private
 * PostgreSQL databases and Redis logical databases, feeds, child processes, HTTP probes.
 *
 * Helpers that "assert" fail the current Criterion test; outside a test (the feed tool)
 * they print the message and exit 1 instead. Names are unique across parallel test
 * processes: databases by pid and counter, Redis databases by a counter kept in db 0.
 */
#include "testenv.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "base/config.h"
#include "base/util.h"
#include "os/now.h"

#ifndef PROJECTOR_BIN
#define PROJECTOR_BIN "projector"
#endif

/* The feed tool links this file without Criterion. These references are weak so that it
 * still links; testenv_fail only calls into Criterion when a test is running, and then
 * they are all resolved. */
#pragma weak criterion_current_test
#pragma weak criterion_options
#pragma weak criterion_send_assert
#pragma weak criterion_abort_test
#pragma weak cri_asserts_passed_incr
#pragma weak cr_translate_assert_msg
#pragma weak cr_asprintf
#pragma weak cr_asprintf_free

#define TESTENV_HTTP_TIMEOUT_S 90 /* longer than any /wait the suites ask for */
#define TESTENV_PUBLISH_CHUNK 512 /* XADDs pipelined before reading their replies */

static void testenv_fail(const char *fmt, ...) PJ_PRINTF(1, 2);

static void testenv_fail(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (&criterion_current_test != NULL && criterion_current_test != NULL)
        cr_assert_fail("%s", msg);
    fprintf(stderr, "%s\n", msg);
    exit(1);
}

#define TESTENV_CHECK(cond, ...)                                                                   \
    do {                                                                                           \
        if (!(cond))                                                                               \
            testenv_fail(__VA_ARGS__);                                                             \
    } while (0)

bool testenv_have_servers(void)
{
    const char *redis = getenv("PROJECTOR_TEST_REDIS_URL");
    const char *pg = getenv("PROJECTOR_TEST_PG");
    return redis != NULL && *redis != '\0' && pg != NULL && *pg != '\0';
}

static const char *testenv_env(const char *name)
{
    const char *v = getenv(name);
    TESTENV_CHECK(v != NULL && *v != '\0',
                  "environment variable \"%s\" is not set "
                  "(run the suites through tests/run.sh)",
                  name);
    return v;
}

/* ---- PostgreSQL ---- */

static void testenv_pg_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

PGconn *testenv_pg(const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);
    TESTENV_CHECK(PQstatus(conn) == CONNECTION_OK, "could not connect to PostgreSQL (%s): %s",
                  conninfo, PQerrorMessage(conn));
    /* NOTICEs (CREATE ... IF NOT EXISTS and the like) would only clutter test output. */
    PQsetNoticeProcessor(conn, testenv_pg_quiet, NULL);
    return conn;
}

PGresult *testenv_sql(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    TESTENV_CHECK(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "SQL failed: %s\n%s", sql,
                  PQresultErrorMessage(res));
    return res;
}

char *testenv_query_text(PGconn *conn, const char *sql)
{
    PGresult *res = testenv_sql(conn, sql);
    StrBuf sb = {0};

    strbuf_append(&sb, "");
    for (int r = 0; r < PQntuples(res); r++) {
        if (r > 0)
            strbuf_append(&sb, "\n");
        for (int c = 0; c < PQnfields(res); c++) {
            if (c > 0)
                strbuf_append(&sb, "|");
            strbuf_append(&sb, PQgetisnull(res, r, c) ? "\\N" : PQgetvalue(res, r, c));
        }
    }
    PQclear(res);
    return strbuf_take(&sb);
}

/* The base conninfo with dbname replaced (every other option kept, values quoted). */
static char *testenv_conninfo_with_db(const char *base, const char *dbname)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &errmsg);
    StrBuf sb = {0};

    TESTENV_CHECK(opts != NULL, "invalid PROJECTOR_TEST_PG: %s", errmsg ? errmsg : "?");
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || strcmp(o->keyword, "dbname") == 0)
            continue;
        strbuf_appendf(&sb, "%s='", o->keyword);
        for (const char *p = o->val; *p != '\0'; p++) {
            if (*p == '\'' || *p == '\\')
                strbuf_append(&sb, "\\");
            strbuf_appendn(&sb, p, 1);
        }
        strbuf_append(&sb, "' ");
    }
    strbuf_appendf(&sb, "dbname=%s", dbname);
    PQconninfoFree(opts);
    return strbuf_take(&sb);
}

/* Lower-case letters, digits and '_' only, so the name needs no quoting. */
static void testenv_db_name(const char *prefix, char *buf, size_t size)
{
    static unsigned counter;
    char clean[24];
    size_t n = 0;

    for (const char *p = prefix ? prefix : "t"; *p != '\0' && n + 1 < sizeof clean; p++) {
        char ch = *p;
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        clean[n++] = ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) ? ch : '_';
    }
    clean[n] = '\0';
    snprintf(buf, size, "pj_%s_%ld_%u", clean, (long)getpid(), counter++);
}

char *testenv_create_db(const char *prefix)
{
    const char *base = testenv_env("PROJECTOR_TEST_PG");
    char name[64], sql[160];
    PGconn *admin = testenv_pg(base);

    testenv_db_name(prefix, name, sizeof name);
    /* A database of that name can only be left over from a dead process whose pid was
     * reused: no live process can own it, so dropping it is safe. */
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    PQclear(testenv_sql(admin, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PQclear(testenv_sql(admin, sql));
    PQfinish(admin);
    return testenv_conninfo_with_db(base, name);
}

/* ---- Redis ---- */

static void testenv_redis_addr(RedisAddr *addr)
{
    const char *url = testenv_env("PROJECTOR_TEST_REDIS_URL");
    PjError err = {0};
    TESTENV_CHECK(redis_addr_parse(url, addr, &err) == 0,
                  "invalid PROJECTOR_TEST_REDIS_URL "
                  "\"%s\": %s",
                  url, err.message);
}

static void testenv_redis_expect_ok(redisContext *c, redisReply *reply, const char *what)
{
    TESTENV_CHECK(reply != NULL, "could not run %s on Redis: %s", what, c->errstr);
    TESTENV_CHECK(reply->type != REDIS_REPLY_ERROR, "could not run %s on Redis: %s", what,
                  reply->str);
}

redisContext *testenv_redis(int db)
{
    RedisAddr addr = {0};
    struct timeval tv = {.tv_sec = 5};
    redisContext *c;
    redisReply *reply;

    testenv_redis_addr(&addr);
    c = redisConnectWithTimeout(addr.host, addr.port, tv);
    TESTENV_CHECK(c != NULL && c->err == 0, "could not connect to Redis at %s:%d: %s", addr.host,
                  addr.port, c ? c->errstr : "out of memory");
    if (addr.password != NULL) {
        reply = addr.user != NULL ? redisCommand(c, "AUTH %s %s", addr.user, addr.password)
                                  : redisCommand(c, "AUTH %s", addr.password);
        testenv_redis_expect_ok(c, reply, "AUTH");
        freeReplyObject(reply);
    }
    reply = redisCommand(c, "SELECT %d", db);
    testenv_redis_expect_ok(c, reply, "SELECT");
    freeReplyObject(reply);
    redis_addr_done(&addr);
    return c;
}

int testenv_redis_db(void)
{
    redisContext *c = testenv_redis(0);
    redisReply *reply = redisCommand(c, "INCR pj:testdb");
    int db;

    testenv_redis_expect_ok(c, reply, "INCR");
    TESTENV_CHECK(reply->type == REDIS_REPLY_INTEGER, "INCR pj:testdb: unexpected reply");
    /* 255 databases in turn: a number comes back only after 254 newer tests started, long
     * after the test that had it finished (the suites run at most two at a time). */
    db = (int)((reply->integer - 1) % 255) + 1;
    freeReplyObject(reply);
    redisFree(c);

    c = testenv_redis(db);
    reply = redisCommand(c, "FLUSHDB");
    testenv_redis_expect_ok(c, reply, "FLUSHDB");
    freeReplyObject(reply);
    redisFree(c);
    return db;
}

/* Appends s with every byte but letters, digits and "-._~" percent-encoded, as a Redis
 * URL's user name and password are written. */
static void testenv_url_encode(StrBuf *sb, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p) != NULL)
            strbuf_appendn(sb, (const char *)p, 1);
        else
            strbuf_appendf(sb, "%%%02X", *p);
    }
}

char *testenv_redis_url(int db)
{
    RedisAddr addr = {0};
    char *url;

    testenv_redis_addr(&addr);
    if (addr.password != NULL) {
        StrBuf sb = {0};
        strbuf_append(&sb, "redis://");
        testenv_url_encode(&sb, addr.user ? addr.user : "");
        strbuf_append(&sb, ":");
        testenv_url_encode(&sb, addr.password);
        strbuf_appendf(&sb, "@%s:%d/%d", addr.host, addr.port, db);
        url = strbuf_take(&sb);
    } else
        url = xasprintf("redis://%s:%d/%d", addr.host, addr.port, db);
    redis_addr_done(&addr);
    return url;
}

/* ---- publishing entries ---- */

/* Appends "XADD stream * name value ..." to c's output buffer without waiting. */
/* fields is not const: jansson's iteration takes a mutable object. */
static void testenv_append_xadd(redisContext *c, const char *stream, json_t *fields)
{
    size_t n = 3 + 2 * json_object_size(fields), i = 3;
    const char **argv = xcalloc(n, sizeof *argv);
    size_t *lens = xcalloc(n, sizeof *lens);
    char **owned = xcalloc(n, sizeof *owned);
    const char *key;
    json_t *value;

    TESTENV_CHECK(json_object_size(fields) > 0, "an entry of stream \"%s\" has no fields", stream);
    argv[0] = "XADD";
    argv[1] = stream;
    argv[2] = "*";
    json_object_foreach(fields, key, value)
    {
        argv[i++] = key;
        if (!json_is_string(value))
            owned[i] = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        argv[i] = owned[i] != NULL ? owned[i] : json_string_value(value);
        i++;
    }
    for (i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    TESTENV_CHECK(redisAppendCommandArgv(c, (int)n, argv, lens) == REDIS_OK,
                  "could not queue XADD: %s", c->errstr);
    for (i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(lens);
    free(argv);
}

/* Reads one XADD reply and copies the new ID into id_out (48 bytes). */
static void testenv_read_xadd(redisContext *c, const char *stream, char *id_out)
{
    redisReply *reply = NULL;

    TESTENV_CHECK(redisGetReply(c, (void **)&reply) == REDIS_OK, "could not XADD to \"%s\": %s",
                  stream, c->errstr);
    testenv_redis_expect_ok(c, reply, "XADD");
    TESTENV_CHECK(reply->type == REDIS_REPLY_STRING && reply->len < 48,
                  "XADD to \"%s\": unexpected reply", stream);
    memcpy(id_out, reply->str, (size_t)reply->len + 1);
    freeReplyObject(reply);
}

void testenv_xadd(redisContext *c, const char *stream, json_t *fields, char *id_out)
{
    testenv_append_xadd(c, stream, fields);
    testenv_read_xadd(c, stream, id_out);
}

/* The fields to send for one feed line; returns a new reference and sets *stream. */
static json_t *testenv_feed_fields(json_t *line, const char *path, int lineno, const char **stream)
{
    json_t *s = json_object_get(line, "stream");
    json_t *envelope = json_object_get(line, "envelope");
    json_t *fields = json_object_get(line, "fields");
    json_t *out;

    TESTENV_CHECK(json_is_string(s), "%s:%d: expected a string \"stream\"", path, lineno);
    *stream = json_string_value(s);
    if (envelope != NULL && fields == NULL) {
        char *text = json_dumps(envelope, JSON_COMPACT | JSON_ENCODE_ANY);
        out = json_pack("{s:s}", "event", text);
        free(text);
        return out;
    }
    TESTENV_CHECK(json_is_object(fields) && envelope == NULL,
                  "%s:%d: expected exactly one of \"envelope\" and \"fields\" (an object)", path,
                  lineno);
    return json_incref(fields);
}

typedef struct Pending {
    char *streams[TESTENV_PUBLISH_CHUNK]; /* owned: the stream of each queued XADD */
    size_t count;
} Pending;

/* Reads the replies of every queued XADD, recording the last ID per stream. */
static void testenv_flush(redisContext *c, Pending *p, json_t *last)
{
    char id[48];

    for (size_t i = 0; i < p->count; i++) {
        testenv_read_xadd(c, p->streams[i], id);
        json_object_set_new(last, p->streams[i], json_string(id));
        free(p->streams[i]);
    }
    p->count = 0;
}

static bool testenv_feed_line_skipped(const char *line)
{
    while (*line == ' ' || *line == '\t' || *line == '\r' || *line == '\n')
        line++;
    return *line == '\0' || *line == '#';
}

int testenv_publish_file(redisContext *c, const char *path, json_t **last_ids)
{
    FILE *f = fopen(path, "r");
    json_t *last = json_object();
    Pending pending = {.count = 0};
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, count = 0;

    TESTENV_CHECK(f != NULL, "could not open feed \"%s\": %s", path, strerror(errno));
    while (getline(&line, &cap, f) >= 0) {
        json_error_t jerr;
        json_t *doc, *fields;
        const char *stream;

        lineno++;
        if (testenv_feed_line_skipped(line))
            continue;
        doc = json_loads(line, 0, &jerr);
        TESTENV_CHECK(json_is_object(doc), "%s:%d: expected a JSON object: %s", path, lineno,
                      doc ? "got another value" : jerr.text);
        fields = testenv_feed_fields(doc, path, lineno, &stream);
        testenv_append_xadd(c, stream, fields);
        pending.streams[pending.count++] = xstrdup(stream);
        json_decref(fields);
        json_decref(doc);
        count++;
        if (pending.count == TESTENV_PUBLISH_CHUNK)
            testenv_flush(c, &pending, last);
    }
    testenv_flush(c, &pending, last);
    free(line);
    fclose(f);
    if (last_ids != NULL)
        *last_ids = last;
    else
        json_decref(last);
    return count;
}

/* ---- files and ports ---- */

char *testenv_tmpdir(void)
{
    /* Under the runner's folder when there is one, so that it goes away with the run. */
    const char *base = getenv("PROJECTOR_TEST_TMP");
    char *tmpl = xasprintf("%s/pj-test-XXXXXX", base && *base ? base : "/tmp");

    TESTENV_CHECK(mkdtemp(tmpl) != NULL, "could not create a folder like \"%s\": %s", tmpl,
                  strerror(errno));
    return tmpl;
}

ModelSet *testenv_load_models(const char *const *paths, size_t n)
{
    Diagnostics diag = {0};
    ModelSet *set = NULL;

    if (model_load_files(paths, n, &set, &diag) < 0) {
        diag_print(&diag, stderr);
        set = NULL;
    }
    diag_done(&diag);
    return set;
}

ModelSet *testenv_load_model_text(const char *name, const char *yaml)
{
    char *dir = testenv_tmpdir();
    char *path = testenv_write_file(dir, name, yaml);
    const char *paths[] = {path};
    ModelSet *set = testenv_load_models(paths, 1);

    (void)unlink(path);
    (void)rmdir(dir);
    free(path);
    free(dir);
    return set;
}

char *testenv_write_file(const char *dir, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    size_t len = strlen(text);

    TESTENV_CHECK(f != NULL, "could not create file \"%s\": %s", path, strerror(errno));
    TESTENV_CHECK(fwrite(text, 1, len, f) == len && fclose(f) == 0,
                  "could not write file \"%s\": %s", path, strerror(errno));
    return path;
}

void testenv_append_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "a");
    size_t len = strlen(text);

    TESTENV_CHECK(f != NULL, "could not open file \"%s\": %s", path, strerror(errno));
    TESTENV_CHECK(fwrite(text, 1, len, f) == len && fclose(f) == 0,
                  "could not write file \"%s\": %s", path, strerror(errno));
}

int testenv_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    TESTENV_CHECK(fd >= 0, "could not create a socket: %s", strerror(errno));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    TESTENV_CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                      getsockname(fd, (struct sockaddr *)&sa, &len) == 0,
                  "could not bind a free port: %s", strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

/* Appends s as a single-quoted YAML scalar (quotes doubled). */
static void testenv_yaml_quote(StrBuf *sb, const char *s)
{
    strbuf_append(sb, "'");
    for (const char *p = s; *p != '\0'; p++)
        strbuf_append(sb, *p == '\'' ? "''" : (char[2]){*p, '\0'});
    strbuf_append(sb, "'");
}

char *testenv_write_config(const char *dir, const char *redis_url, const char *pg_conninfo,
                           int http_port, const char *readmodels_dir, int batch, int block_ms)
{
    StrBuf sb = {0};
    char *path;

    strbuf_append(&sb, "redis:\n  url: ");
    testenv_yaml_quote(&sb, redis_url);
    strbuf_append(&sb, "\n  connect_timeout_ms: 1000\npostgres:\n  conninfo: ");
    testenv_yaml_quote(&sb, pg_conninfo);
    strbuf_append(&sb, "\n  schema: projector\n");
    strbuf_appendf(&sb, "http:\n  listen: '127.0.0.1:%d'\nreadmodels: ", http_port);
    testenv_yaml_quote(&sb, readmodels_dir);
    strbuf_appendf(&sb, "\nbatch: %d\nblock_ms: %d\nlog_level: debug\nstats_interval_s: 0\n", batch,
                   block_ms);
    path = testenv_write_file(dir, "projector.yaml", sb.buf);
    strbuf_done(&sb);
    return path;
}

/* ---- a daemon under test ---- */

void testenv_daemon_setup(TestDaemon *d, const char *name, const char *readmodels_dir, int batch,
                          int block_ms)
{
    memset(d, 0, sizeof *d);
    d->dir = testenv_tmpdir();
    d->conninfo = testenv_create_db(name);
    d->rdb = testenv_redis_db();
    d->redis_url = testenv_redis_url(d->rdb);
    d->redis = testenv_redis(d->rdb);
    d->port = testenv_free_port();
    d->config = testenv_write_config(d->dir, d->redis_url, d->conninfo, d->port,
                                     readmodels_dir != NULL ? readmodels_dir
                                                            : PROJECTOR_SOURCE_DIR "/readmodels",
                                     batch, block_ms);
    d->log = xasprintf("%s/projector.log", d->dir);
    d->pg = testenv_pg(d->conninfo);
}

void testenv_daemon_settle(TestDaemon *d, const char *stream)
{
    const char *args[] = {"run", "--config", d->config, NULL};
    char path[160], *body = NULL;

    d->pid = testenv_spawn(args, d->log);
    TESTENV_CHECK(testenv_wait_http(d->port, 20000), "no /healthz (log: %s)", d->log);
    snprintf(path, sizeof path, "/wait?stream=%s&id=%s&timeout_ms=60000", stream, d->last);
    int status = testenv_http_get(d->port, path, &body);
    TESTENV_CHECK(status == 200, "/wait answered %d: %s (log: %s)", status, body ? body : "",
                  d->log);
    free(body);
}

void testenv_daemon_expect(const TestDaemon *d, const char *sql, const char *want)
{
    char *got = testenv_query_text(d->pg, sql), msg[1800];
    bool same = strcmp(got, want) == 0;
    snprintf(msg, sizeof msg, "%s (log: %s)\ngot:\n%s\nwant:\n%s", sql, d->log, got, want);
    free(got);
    if (!same)
        testenv_fail("%s", msg);
}

void testenv_daemon_done(TestDaemon *d)
{
    if (d->pid > 0)
        (void)testenv_kill(d->pid, SIGKILL);
    if (d->pg != NULL)
        PQfinish(d->pg);
    if (d->redis != NULL)
        redisFree(d->redis);
    free(d->dir);
    free(d->conninfo);
    free(d->redis_url);
    free(d->config);
    free(d->log);
    memset(d, 0, sizeof *d);
}

/* ---- child processes ---- */

/* In the child: argv for execv, PROJECTOR_BIN first. */
static char **testenv_argv(const char *const *args)
{
    size_t n = 0;
    char **argv;

    while (args[n] != NULL)
        n++;
    argv = xcalloc(n + 2, sizeof *argv);
    /* Copies, since execv takes mutable strings; exec or exit frees them. */
    argv[0] = xstrdup(PROJECTOR_BIN);
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = xstrdup(args[i]);
    return argv;
}

/* In the child: stdout and stderr to fd, then exec. Never returns. */
static void testenv_exec(const char *const *args, int fd)
{
#ifdef __linux__
    /* A test that crashes must not leave a daemon behind that outlives the servers. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
        _exit(127);
    if (fd > STDERR_FILENO)
        close(fd);
    execv(PROJECTOR_BIN, testenv_argv(args));
    fprintf(stderr, "could not execute \"%s\": %s\n", PROJECTOR_BIN, strerror(errno));
    _exit(127);
}

pid_t testenv_spawn(const char *const *args, const char *log_path)
{
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_t pid;

    TESTENV_CHECK(fd >= 0, "could not open log \"%s\": %s", log_path, strerror(errno));
    fflush(NULL);
    pid = fork();
    TESTENV_CHECK(pid >= 0, "could not fork: %s", strerror(errno));
    if (pid == 0)
        testenv_exec(args, fd);
    close(fd);
    return pid;
}

static int testenv_status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

static int testenv_waitpid(pid_t pid, int flags)
{
    int status = 0;
    pid_t r;

    do {
        r = waitpid(pid, &status, flags);
    } while (r < 0 && errno == EINTR);
    TESTENV_CHECK(r >= 0, "could not wait for process %ld: %s", (long)pid, strerror(errno));
    return r == 0 ? -1 : testenv_status_code(status);
}

int testenv_kill(pid_t pid, int sig)
{
    TESTENV_CHECK(kill(pid, sig) == 0, "could not signal process %ld: %s", (long)pid,
                  strerror(errno));
    return testenv_waitpid(pid, 0);
}

void testenv_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int testenv_wait_exit(pid_t pid, int timeout_ms)
{
    int64_t deadline = now_monotonic_ms() + timeout_ms;

    for (;;) {
        int code = testenv_waitpid(pid, WNOHANG);
        if (code >= 0)
            return code;
        if (now_monotonic_ms() >= deadline)
            return -1;
        testenv_sleep_ms(10);
    }
}

/* Reads fd until end of file. */
static char *testenv_read_all(int fd)
{
    StrBuf sb = {0};
    char buf[4096];
    ssize_t n;

    strbuf_append(&sb, "");
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        strbuf_appendn(&sb, buf, (size_t)n);
    }
    return strbuf_take(&sb);
}

int testenv_run(const char *const *args, char **out)
{
    int fds[2];
    pid_t pid;
    char *text;

    TESTENV_CHECK(pipe(fds) == 0, "could not create a pipe: %s", strerror(errno));
    fflush(NULL);
    pid = fork();
    TESTENV_CHECK(pid >= 0, "could not fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        testenv_exec(args, fds[1]);
    }
    close(fds[1]);
    text = testenv_read_all(fds[0]);
    close(fds[0]);
    if (out != NULL)
        *out = text;
    else
        free(text);
    return testenv_waitpid(pid, 0);
}

/* ---- HTTP ---- */

int testenv_connect(int fd, int port, int timeout_ms)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int64_t deadline = now_monotonic_ms() + timeout_ms;
    int err = 0, r;
    socklen_t len = sizeof err;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    /* Interrupted, the connection still goes on (POSIX); connect() again would only say
     * EALREADY. It is done when the socket turns writable, and SO_ERROR tells how. */
    do {
        int64_t left = deadline - now_monotonic_ms();
        r = poll(&p, 1, left > 0 ? (int)left : 0);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        errno = ETIMEDOUT;
    if (r <= 0)
        return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -1;
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

static int testenv_http_connect(int port)
{
    struct timeval tv = {.tv_sec = TESTENV_HTTP_TIMEOUT_S};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (testenv_connect(fd, port, TESTENV_HTTP_TIMEOUT_S * 1000) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool testenv_send_all(int fd, const void *data, size_t len)
{
    const char *s = data;

    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        s += n;
        len -= (size_t)n;
    }
    return true;
}

int testenv_http_get(int port, const char *path, char **body)
{
    /* HTTP/1.0 with Connection: close, so the body is never chunked and ends at EOF. */
    char *request =
        xasprintf("GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n", path, port);
    int fd = testenv_http_connect(port), status = -1;
    char *response = NULL, *sep;

    if (body != NULL)
        *body = NULL;
    if (fd >= 0 && testenv_send_all(fd, request, strlen(request)))
        response = testenv_read_all(fd);
    if (fd >= 0)
        close(fd);
    free(request);
    if (response == NULL || sscanf(response, "HTTP/%*d.%*d %d", &status) != 1) {
        free(response);
        return -1;
    }
    sep = strstr(response, "\r\n\r\n");
    if (body != NULL)
        *body = xstrdup(sep != NULL ? sep + 4 : "");
    free(response);
    return status;
}

bool testenv_wait_http(int port, int timeout_ms)
{
    int64_t deadline = now_monotonic_ms() + timeout_ms;

    for (;;) {
        if (testenv_http_get(port, "/healthz", NULL) == 200)
            return true;
        if (now_monotonic_ms() >= deadline)
            return false;
        testenv_sleep_ms(50);
    }
}

/* True when every read model of the /lag document is running with nothing behind. */
static bool testenv_lag_caught_up(const char *body)
{
    json_t *doc = json_loads(body, 0, NULL);
    json_t *models = json_object_get(doc, "readmodels");
    bool ok = json_array_size(models) > 0;
    size_t i, j;
    json_t *m, *s;

    json_array_foreach(models, i, m)
    {
        const char *state = json_string_value(json_object_get(m, "state"));
        if (state == NULL || strcmp(state, "running") != 0)
            ok = false;
        json_array_foreach(json_object_get(m, "streams"), j, s)
        {
            json_t *behind = json_object_get(s, "entries_behind");
            if (!json_is_integer(behind) || json_integer_value(behind) != 0)
                ok = false;
        }
    }
    json_decref(doc);
    return ok;
}

bool testenv_wait_caught_up(int port, int timeout_ms)
{
    int64_t deadline = now_monotonic_ms() + timeout_ms;

    for (;;) {
        char *body = NULL;
        bool done = testenv_http_get(port, "/lag", &body) == 200 && testenv_lag_caught_up(body);
        free(body);
        if (done)
            return true;
        if (now_monotonic_ms() >= deadline)
            return false;
        testenv_sleep_ms(50);
    }
}
