/* test_transport.c - Redis over TLS through a tunnel, with a password that needs
 * percent-encoding. hiredis 0.14 (Debian 12) speaks no TLS, so the route README.md
 * documents is stunnel in client mode on loopback in front of a TLS-only Redis: here a
 * redis-server with its plain port closed (--port 0) that requires a client certificate,
 * a throwaway CA and certificates made by openssl in the test's folder, and stunnel
 * checking the server's certificate and presenting the client's. The daemon only sees
 * redis://projector:<encoded password>@127.0.0.1:<stunnel port>/0, with an ACL user whose
 * password holds "@", ":", "/" and "%", taken from the environment; it applies events
 * through that route. A wrong password is refused by Redis and never shows in the log.
 * Both servers run as children of the test, killed with it however it ends.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "os/now.h"
#include "testenv.h"

#define TLS_START_MS 20000 /* for redis-server and stunnel to answer through the tunnel */
#define TLS_PASSWORD "p@ss:w/rd%1"
#define TLS_PASSWORD_ENCODED "p%40ss%3Aw%2Frd%251"
#define TLS_FEEDER "feeder-pw" /* the test's own user, which publishes */

typedef struct Tls {
    char *dir;
    int redis_port, tunnel_port;
    pid_t redis, tunnel;
} Tls;

static Tls tls;

/* Runs argv[0] with output to dir/log; it dies with the test process. */
static pid_t tls_spawn(const char *const *argv, const char *log)
{
    char *path = xasprintf("%s/%s", tls.dir, log);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0, "could not open %s: %s", path, strerror(errno));
    free(path);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "could not fork: %s", strerror(errno));
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(127);
        size_t n = 0;
        while (argv[n] != NULL)
            n++;
        char **copy = xcalloc(n + 1, sizeof *copy); /* execvp takes mutable strings */
        for (size_t i = 0; i < n; i++)
            copy[i] = xstrdup(argv[i]);
        execvp(copy[0], copy);
        _exit(127);
    }
    close(fd);
    return pid;
}

/* Runs a bash script in the test's folder to its end; its exit code. */
static int tls_bash(const char *script)
{
    const char *argv[] = {"/bin/bash", "-c", script, NULL};
    char *cd = xasprintf("cd '%s' && %s", tls.dir, script);
    argv[2] = cd;
    pid_t pid = tls_spawn(argv, "setup.log");
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    free(cd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* A CA, the server's certificate (for localhost and 127.0.0.1) and the client's. */
static const char certs_script[] =
    "set -e; k='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
    "openssl req -x509 $k -days 2 -subj '/CN=projector test CA' -keyout ca.key -out ca.crt;"
    "openssl req $k -subj '/CN=localhost' -keyout redis.key -out redis.csr;"
    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' >san.ext;"
    "openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
    "-extfile san.ext -out redis.crt;"
    "openssl req $k -subj '/CN=projector' -keyout client.key -out client.csr;"
    "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
    "-out client.crt";

/* TLS only, client certificates required; the default user off, the daemon's user with
 * the commands README.md's least-privilege section lists, and a user for the test. */
static void tls_start_redis(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", tls.redis_port);
    char *crt = xasprintf("%s/redis.crt", tls.dir), *key = xasprintf("%s/redis.key", tls.dir);
    char *ca = xasprintf("%s/ca.crt", tls.dir);
    const char *argv[] = {"redis-server",
                          "--bind",
                          "127.0.0.1",
                          "--port",
                          "0",
                          "--tls-port",
                          port,
                          "--tls-cert-file",
                          crt,
                          "--tls-key-file",
                          key,
                          "--tls-ca-cert-file",
                          ca,
                          "--tls-auth-clients",
                          "yes",
                          "--save",
                          "",
                          "--appendonly",
                          "no",
                          "--dir",
                          tls.dir,
                          "--user",
                          "default",
                          "off",
                          "--user",
                          "projector",
                          "on",
                          ">" TLS_PASSWORD,
                          "~notes",
                          "+xreadgroup",
                          "+xack",
                          "+xgroup",
                          "+xinfo",
                          "+xautoclaim",
                          "+xpending",
                          "+xrange",
                          "+ping",
                          "+select",
                          "+auth",
                          "--user",
                          "feeder",
                          "on",
                          ">" TLS_FEEDER,
                          "~*",
                          "+@all",
                          NULL};
    tls.redis = tls_spawn(argv, "redis.log");
    free(crt);
    free(key);
    free(ca);
}

/* Client mode: plain TCP in on loopback, TLS out, the server's certificate checked
 * against the CA and the name localhost, the client's certificate presented. */
static void tls_start_tunnel(void)
{
    char *conf = xasprintf("foreground = yes\n"
                           "pid = %s/stunnel.pid\n"
                           "[redis]\n"
                           "client = yes\n"
                           "accept = 127.0.0.1:%d\n"
                           "connect = 127.0.0.1:%d\n"
                           "CAfile = %s/ca.crt\n"
                           "verifyChain = yes\n"
                           "checkHost = localhost\n"
                           "cert = %s/client.crt\n"
                           "key = %s/client.key\n",
                           tls.dir, tls.tunnel_port, tls.redis_port, tls.dir, tls.dir, tls.dir);
    char *path = testenv_write_file(tls.dir, "stunnel.conf", conf);
    const char *argv[] = {"stunnel", path, NULL};
    tls.tunnel = tls_spawn(argv, "stunnel.log");
    free(path);
    free(conf);
}

/* A connection through the tunnel as user/password, or NULL when it does not answer. */
static redisContext *tls_connect(const char *user, const char *password)
{
    struct timeval tv = {.tv_sec = 2};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", tls.tunnel_port, tv);
    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r = redisCommand(c, "AUTH %s %s", user, password);
    bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    if (r != NULL)
        freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static char *tls_log_tail(const char *log)
{
    char *path = xasprintf("%s/%s", tls.dir, log), *text = NULL;
    size_t len = 0;
    PjError err;
    if (read_file(path, &text, &len, &err) < 0)
        text = xstrdup(err.message);
    free(path);
    char *tail = xstrdup(len > 1500 ? text + len - 1500 : text);
    free(text);
    return tail;
}

/* The feeder's connection once the route answers (asserting that it does in time). */
static redisContext *tls_wait_route(void)
{
    int64_t deadline = now_monotonic_ms() + TLS_START_MS;
    while (now_monotonic_ms() < deadline) {
        redisContext *c = tls_connect("feeder", TLS_FEEDER);
        if (c != NULL)
            return c;
        testenv_sleep_ms(100);
    }
    char *redis = tls_log_tail("redis.log"), *tunnel = tls_log_tail("stunnel.log");
    cr_assert_fail(
        "Redis did not answer through stunnel within %d ms\nredis.log:\n%s\nstunnel.log:\n%s",
        TLS_START_MS, redis, tunnel);
    return NULL;
}

static void tls_setup(void)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    tls.dir = testenv_tmpdir();
    cr_assert_eq(tls_bash("command -v stunnel && command -v openssl && command -v redis-server"), 0,
                 "stunnel (Debian: stunnel4), openssl and redis-server are needed");
    cr_assert_eq(tls_bash(certs_script), 0, "openssl failed:\n%s", tls_log_tail("setup.log"));
    tls.redis_port = testenv_free_port();
    tls.tunnel_port = testenv_free_port();
    tls_start_redis();
    tls_start_tunnel();
}

static void tls_stop(pid_t *pid)
{
    if (*pid > 0)
        (void)testenv_kill(*pid, SIGTERM);
    *pid = 0;
}

static void tls_teardown(void)
{
    tls_stop(&tls.tunnel);
    tls_stop(&tls.redis);
    free(tls.dir);
}

TestSuite(transport, .init = tls_setup, .fini = tls_teardown, .timeout = 120);

static void publish(redisContext *c, const char *id, char *ret_id)
{
    char payload[128];
    snprintf(payload, sizeof payload, "{\"id\":\"%s\",\"text\":\"over TLS\"}", id);
    redisReply *r = redisCommand(c, "XADD notes * type note.added payload %s", payload);
    cr_assert(r != NULL && r->type == REDIS_REPLY_STRING, "XADD through the tunnel failed: %s",
              r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
    snprintf(ret_id, 48, "%s", r->str);
    freeReplyObject(r);
}

static char *write_model(void)
{
    char *dir = testenv_tmpdir();
    free(testenv_write_file(dir, "notes.yaml",
                            "readmodel: notes\ntable: notes\nstreams: [notes]\nkey: [id]\n"
                            "columns:\n  id: text\n  body: text\n"
                            "on:\n  note.added:\n    upsert:\n"
                            "      id: $.payload.id\n      body: $.payload.text\n"));
    return dir;
}

/* The daemon's config: Redis through the tunnel, the password from PJ_TLS_REDIS_PASSWORD. */
static void use_tunnel(TestDaemon *d, const char *models)
{
    char *url =
        xasprintf("redis://projector:${PJ_TLS_REDIS_PASSWORD}@127.0.0.1:%d/0", tls.tunnel_port);
    free(d->config);
    d->config = testenv_write_config(d->dir, url, d->conninfo, d->port, models, 100, 200);
    free(url);
}

static bool log_has(const TestDaemon *d, const char *text)
{
    char *log = NULL;
    size_t len;
    PjError err;
    cr_assert_eq(read_file(d->log, &log, &len, &err), 0, "%s", err.message);
    bool found = strstr(log, text) != NULL;
    free(log);
    return found;
}

Test(transport, events_are_applied_through_stunnel_to_a_tls_redis)
{
    redisContext *feeder = tls_wait_route();
    char *models = write_model();
    TestDaemon d;
    testenv_daemon_setup(&d, "transport", models, 100, 200);
    use_tunnel(&d, models);
    setenv("PJ_TLS_REDIS_PASSWORD", TLS_PASSWORD_ENCODED, 1);
    char id[48];
    publish(feeder, "a", id);
    publish(feeder, "b", d.last);
    testenv_daemon_settle(&d, "notes");
    testenv_daemon_expect(&d, "SELECT string_agg(id || '=' || body, ',' ORDER BY id) FROM notes",
                          "a=over TLS,b=over TLS");
    /* And one more while it runs: the route carries the blocking reads too. */
    publish(feeder, "c", d.last);
    char path[160], *body = NULL;
    snprintf(path, sizeof path, "/wait?stream=notes&id=%s&timeout_ms=20000", d.last);
    cr_expect_eq(testenv_http_get(d.port, path, &body), 200, "%s (log: %s)", body, d.log);
    free(body);
    cr_expect_not(log_has(&d, TLS_PASSWORD), "the password is in the log: %s", d.log);
    int code = testenv_kill(d.pid, SIGTERM);
    d.pid = 0;
    cr_expect_eq(code, 0, "exit %d on SIGTERM (log: %s)", code, d.log);
    /* The plain port is closed: TLS is the only way in. */
    redisContext *plain = redisConnect("127.0.0.1", tls.redis_port);
    redisReply *r = plain != NULL && !plain->err ? redisCommand(plain, "PING") : NULL;
    cr_expect(r == NULL || r->type != REDIS_REPLY_STATUS, "Redis answered in plain text");
    if (r != NULL)
        freeReplyObject(r);
    if (plain != NULL)
        redisFree(plain);
    redisFree(feeder);
    testenv_daemon_done(&d);
    free(models);
}

/* The password as written, not encoded: "%1@" is no escape, so the URL is refused at
 * start, and the message does not repeat the password; a wrong one is refused by Redis. */
Test(transport, a_wrong_or_unencoded_password_is_refused_without_showing_it)
{
    redisContext *feeder = tls_wait_route();
    char *models = write_model();
    TestDaemon d;
    testenv_daemon_setup(&d, "transport2", models, 100, 200);
    use_tunnel(&d, models);
    setenv("PJ_TLS_REDIS_PASSWORD", TLS_PASSWORD, 1);
    const char *args[] = {"check", "--config", d.config, NULL};
    char *out = NULL;
    int code = testenv_run(args, &out);
    cr_expect_eq(code, 2, "check exited %d: %s", code, out);
    cr_expect(strstr(out, "the password has a \"%\" not followed by two hex digits") != NULL, "%s",
              out);
    cr_expect(strstr(out, TLS_PASSWORD) == NULL && strstr(out, "rd%1") == NULL, "%s", out);
    free(out);

    setenv("PJ_TLS_REDIS_PASSWORD", "p%40ss%3Aw%2Frd%252", 1);
    const char *run[] = {"run", "--config", d.config, NULL};
    d.pid = testenv_spawn(run, d.log);
    cr_assert(testenv_wait_http(d.port, 20000), "no /healthz (log: %s)", d.log);
    int64_t deadline = now_monotonic_ms() + 20000;
    while (!log_has(&d, "WRONGPASS") && now_monotonic_ms() < deadline)
        testenv_sleep_ms(100);
    cr_expect(log_has(&d, "could not authenticate to Redis: WRONGPASS"), "(log: %s)", d.log);
    cr_expect_not(log_has(&d, "rd%2") || log_has(&d, "rd%252"), "the password is in the log: %s",
                  d.log);
    redisFree(feeder);
    testenv_daemon_done(&d);
    free(models);
}
