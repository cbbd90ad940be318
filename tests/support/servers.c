/* servers.c - private Redis and PostgreSQL servers for the fault and crash suites: their
 * folder, ports, start, stop, pause and restart. The feed those suites publish and the
 * tables it must produce are shopfeed.c's.
 *
 * Servers run tests/lib/servers.sh through bash, with output appended to servers.log in
 * their folder. A watcher process, forked at start, blocks on a pipe that only the test
 * process holds open; when that process ends (servers_free, a failed assertion, a timeout
 * or a crash) the watcher stops both servers, so none outlives its test.
 */
#include "servers.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "os/now.h"
#include "testenv.h"

#define SERVERS_TEARDOWN_MS 120000 /* pg_ctl gives up after 60 s, then stops -m immediate */
#define SERVERS_LOG_TAIL 1500      /* bytes of servers.log quoted by a failed assertion */

struct Servers {
    char *dir;
    char *log; /* dir/servers.log: what the scripts print */
    char *redis_url;
    char *pg_conninfo;
    int redis_port;
    int pg_port;
    bool redis_aof;
    int watch_fd; /* write end of the watcher's pipe: closing it tears the servers down */
    pid_t watcher;
};

/* ---- running tests/lib/servers.sh ---- */

/* Appends s single-quoted for bash. */
static void servers_quote(StrBuf *sb, const char *s)
{
    strbuf_append(sb, "'");
    for (const char *p = s; *p != '\0'; p++)
        strbuf_append(sb, *p == '\'' ? "'\\''" : (char[2]){*p, '\0'});
    strbuf_append(sb, "'");
}

/* "source common.sh && source servers.sh && " followed by the caller's commands. */
static void servers_script_begin(StrBuf *sb)
{
    strbuf_append(sb, "source ");
    servers_quote(sb, PROJECTOR_SOURCE_DIR "/tests/lib/common.sh");
    strbuf_append(sb, " && source ");
    servers_quote(sb, PROJECTOR_SOURCE_DIR "/tests/lib/servers.sh");
    strbuf_append(sb, " && ");
}

/* Appends "dir/sub" quoted. */
static void servers_path(StrBuf *sb, const Servers *s, const char *sub)
{
    char *path = xasprintf("%s/%s", s->dir, sub);
    servers_quote(sb, path);
    free(path);
}

static void servers_redis_start_cmd(StrBuf *sb, const Servers *s)
{
    strbuf_append(sb, "pj_redis_start ");
    servers_path(sb, s, "redis");
    strbuf_appendf(sb, " %d", s->redis_port);
    if (s->redis_aof)
        strbuf_append(sb, " --appendonly yes --appendfsync always");
}

/* A paused server is continued first: a stopped process does not act on SIGTERM. */
static void servers_redis_stop_cmd(StrBuf *sb, const Servers *s)
{
    strbuf_append(sb, "{ kill -CONT \"$(cat ");
    servers_path(sb, s, "redis/redis.pid");
    strbuf_append(sb, " 2>/dev/null)\" 2>/dev/null; pj_redis_stop ");
    servers_path(sb, s, "redis");
    strbuf_append(sb, "; }");
}

/* kill -SIG the redis-server of this set. */
static void servers_redis_signal_cmd(StrBuf *sb, const Servers *s, const char *sig)
{
    strbuf_appendf(sb, "kill -%s \"$(cat ", sig);
    servers_path(sb, s, "redis/redis.pid");
    strbuf_append(sb, ")\"");
}

/* No Unix socket (''): the daemon and the tests use TCP, and socket paths are short. */
static void servers_pg_start_cmd(StrBuf *sb, const Servers *s)
{
    strbuf_append(sb, "pj_pg_start ");
    servers_path(sb, s, "pg");
    strbuf_appendf(sb, " %d ''", s->pg_port);
}

static void servers_pg_stop_cmd(StrBuf *sb, const Servers *s)
{
    strbuf_append(sb, "pj_pg_stop ");
    servers_path(sb, s, "pg");
    strbuf_append(sb, " && ! pj_pg_running ");
    servers_path(sb, s, "pg");
}

/* pg_ctl restart keeps the options of the last start (postmaster.opts). */
static void servers_pg_restart_cmd(StrBuf *sb, const Servers *s)
{
    strbuf_append(sb, "pj_as_pg \"$PJ_PGBIN/pg_ctl\" -D ");
    servers_path(sb, s, "pg/data");
    strbuf_append(sb, " -l ");
    servers_path(sb, s, "pg/postgres.log");
    strbuf_append(sb, " -m fast -w -t 60 restart >/dev/null");
}

static char *servers_op_script(const Servers *s, ServersOp op)
{
    StrBuf sb = {0};
    servers_script_begin(&sb);
    switch (op) {
    case SERVERS_REDIS_STOP:
        servers_redis_stop_cmd(&sb, s);
        break;
    case SERVERS_REDIS_START:
        servers_redis_start_cmd(&sb, s);
        break;
    case SERVERS_REDIS_RESTART:
        servers_redis_stop_cmd(&sb, s);
        strbuf_append(&sb, " && ");
        servers_redis_start_cmd(&sb, s);
        break;
    case SERVERS_REDIS_PAUSE:
        servers_redis_signal_cmd(&sb, s, "STOP");
        break;
    case SERVERS_REDIS_RESUME:
        servers_redis_signal_cmd(&sb, s, "CONT");
        break;
    case SERVERS_PG_STOP:
        servers_pg_stop_cmd(&sb, s);
        break;
    case SERVERS_PG_START:
        servers_pg_start_cmd(&sb, s);
        break;
    case SERVERS_PG_RESTART:
        servers_pg_restart_cmd(&sb, s);
        break;
    }
    return strbuf_take(&sb);
}

/* Stops both servers, whatever state they are in, and removes their data. */
static char *servers_teardown_script(const Servers *s)
{
    StrBuf sb = {0};
    servers_script_begin(&sb);
    strbuf_append(&sb, "{ ");
    servers_redis_stop_cmd(&sb, s);
    strbuf_append(&sb, "; pj_pg_stop ");
    servers_path(&sb, s, "pg");
    strbuf_append(&sb, "; rm -rf ");
    servers_path(&sb, s, "pg/data");
    strbuf_append(&sb, " ");
    servers_path(&sb, s, "redis/appendonlydir");
    strbuf_append(&sb, "; }");
    return strbuf_take(&sb);
}

/* In a child: output to the log, nothing else inherited (a server started from here
 * must not hold the test process's pipes), then bash. Never returns. */
static void servers_exec_bash(const char *script, const char *log, int max_fd)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int null = open("/dev/null", O_RDONLY);
    if (fd < 0 || null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0 ||
        dup2(fd, STDERR_FILENO) < 0)
        _exit(127);
    for (int i = STDERR_FILENO + 1; i < max_fd; i++)
        close(i);
    execl("/bin/bash", "bash", "-c", script, (char *)NULL);
    _exit(127);
}

static int servers_max_fd(void)
{
    long n = sysconf(_SC_OPEN_MAX);
    return n < 256 ? 256 : n > 65536 ? 65536 : (int)n;
}

static pid_t servers_spawn(const Servers *s, const char *script)
{
    int max_fd = servers_max_fd();
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "could not fork: %s", strerror(errno));
    if (pid == 0)
        servers_exec_bash(script, s->log, max_fd);
    return pid;
}

/* The end of servers.log, for assertion messages (caller frees). */
static char *servers_log_tail(const Servers *s)
{
    char *text = NULL;
    size_t len = 0;
    PjError err;
    if (read_file(s->log, &text, &len, &err) < 0)
        return xstrdup(err.message);
    char *tail = xstrdup(len > SERVERS_LOG_TAIL ? text + len - SERVERS_LOG_TAIL : text);
    free(text);
    return tail;
}

pid_t servers_begin(Servers *s, ServersOp op)
{
    char *script = servers_op_script(s, op);
    pid_t pid = servers_spawn(s, script);
    free(script);
    return pid;
}

void servers_end(Servers *s, pid_t pid)
{
    int code = testenv_wait_exit(pid, SERVERS_TEARDOWN_MS);
    if (code != 0) {
        char *tail = servers_log_tail(s);
        cr_assert_fail("a server script exited with %d (log: %s):\n%s", code, s->log, tail);
        free(tail);
    }
}

void servers_do(Servers *s, ServersOp op)
{
    servers_end(s, servers_begin(s, op));
}

/* ---- the watcher ---- */

/* Forks the process that tears the servers down once the pipe's write end, held by this
 * process only (close-on-exec), is closed. Its own session keeps it out of the signals
 * sent to the test's process group. */
static void servers_watch(Servers *s)
{
    int fds[2];
    char *script = servers_teardown_script(s);
    int max_fd = servers_max_fd();
    cr_assert(pipe(fds) == 0 && fcntl(fds[0], F_SETFD, FD_CLOEXEC) == 0 &&
                  fcntl(fds[1], F_SETFD, FD_CLOEXEC) == 0,
              "could not create a pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "could not fork: %s", strerror(errno));
    if (pid == 0) {
        char c;
        ssize_t n;
        (void)setsid();
        close(fds[1]);
        /* Stray bytes or a signal: keep waiting for end of file. Any other error would
         * come back at once, forever: tear down then rather than spin. */
        while ((n = read(fds[0], &c, 1)) > 0 || (n < 0 && errno == EINTR))
            ;
        servers_exec_bash(script, s->log, max_fd);
    }
    close(fds[0]);
    free(script);
    s->watch_fd = fds[1];
    s->watcher = pid;
}

/* ---- lifecycle ---- */

/* A folder the postgres user can enter (PostgreSQL refuses to run as root, and
 * servers.sh runs it as postgres then). */
static char *servers_mkdir(void)
{
    const char *base = getenv("PROJECTOR_TEST_TMP");
    char *dir = xasprintf("%s/pj-servers-XXXXXX", base != NULL && *base != '\0' ? base : "/tmp");
    cr_assert(mkdtemp(dir) != NULL, "could not create a folder like \"%s\": %s", dir,
              strerror(errno));
    cr_assert(chmod(dir, 0755) == 0, "could not chmod \"%s\": %s", dir, strerror(errno));
    return dir;
}

Servers *servers_start(bool redis_aof)
{
    Servers *s = xcalloc(1, sizeof *s);
    s->dir = servers_mkdir();
    s->log = xasprintf("%s/servers.log", s->dir);
    s->redis_aof = redis_aof;
    s->redis_port = testenv_free_port();
    s->pg_port = testenv_free_port();
    while (s->pg_port == s->redis_port)
        s->pg_port = testenv_free_port();
    s->redis_url = xasprintf("redis://127.0.0.1:%d/0", s->redis_port);
    s->pg_conninfo = xasprintf(
        "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5", s->pg_port);
    servers_watch(s);
    /* Both at once: initdb is most of the wait. */
    pid_t redis = servers_begin(s, SERVERS_REDIS_START);
    pid_t pg = servers_begin(s, SERVERS_PG_START);
    servers_end(s, redis);
    servers_end(s, pg);
    return s;
}

Servers *servers_free(Servers *s)
{
    if (s == NULL)
        return NULL;
    close(s->watch_fd);
    int code = testenv_wait_exit(s->watcher, SERVERS_TEARDOWN_MS);
    if (code != 0)
        cr_log_warn("stopping the servers of \"%s\" exited with %d (log: %s)", s->dir, code,
                    s->log);
    free(s->dir);
    free(s->log);
    free(s->redis_url);
    free(s->pg_conninfo);
    free(s);
    return NULL;
}

const char *servers_dir(const Servers *s)
{
    return s->dir;
}

const char *servers_redis_url(const Servers *s)
{
    return s->redis_url;
}

const char *servers_pg_conninfo(const Servers *s)
{
    return s->pg_conninfo;
}

redisContext *servers_redis(const Servers *s)
{
    struct timeval tv = {.tv_sec = 10};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->redis_port, tv);
    cr_assert(c != NULL && c->err == 0, "could not connect to the private Redis on port %d: %s",
              s->redis_port, c != NULL ? c->errstr : "out of memory");
    return c;
}
