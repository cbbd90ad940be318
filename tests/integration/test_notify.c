/* test_notify.c - the daemon under a service manager: a datagram socket stands in for
 * systemd's ($NOTIFY_SOCKET, $WATCHDOG_USEC), and the test reads what the daemon tells it:
 * READY=1 with a STATUS line once the read models have started, WATCHDOG=1 while the
 * workers' loops turn (and none while a worker hangs on a lock), RELOADING=1 and READY=1
 * around SIGHUP, STOPPING=1 on SIGTERM.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/util.h"
#include "os/now.h"
#include "testenv.h"

#define NOTIFY_WATCHDOG_USEC "2000000" /* 2 s: pings every 0.5 s, a worker hung after 1 s */

typedef struct Manager {
    TestDaemon d;
    int fd;
    char path[200];
} Manager;

static void manager_start(Manager *m, const char *name)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    testenv_daemon_setup(&m->d, name, NULL, 100, 200);
    snprintf(m->path, sizeof m->path, "%s/notify.sock", m->d.dir);
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(m->fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert_lt(strlen(m->path), sizeof sa.sun_path);
    memcpy(sa.sun_path, m->path, strlen(m->path) + 1);
    cr_assert_eq(bind(m->fd, (struct sockaddr *)&sa, sizeof sa), 0, "bind %s", m->path);
    setenv("NOTIFY_SOCKET", m->path, 1);
    setenv("WATCHDOG_USEC", NOTIFY_WATCHDOG_USEC, 1);
    const char *args[] = {"run", "--config", m->d.config, NULL};
    m->d.pid = testenv_spawn(args, m->d.log);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
}

static void manager_done(Manager *m)
{
    close(m->fd);
    testenv_daemon_done(&m->d);
}

/* Reads messages for up to ms until one holds want (a line, e.g. "READY=1"); returns that
 * message (caller frees) or NULL. With count, counts the messages holding want instead
 * and reads for the whole time. */
static char *await_message(Manager *m, const char *want, int ms, int *count)
{
    int64_t until = now_monotonic_ms() + ms;
    for (int64_t left = ms; left > 0; left = until - now_monotonic_ms()) {
        struct pollfd p = {.fd = m->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            break;
        char buf[1024];
        ssize_t n = recv(m->fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        bool match = strncmp(buf, want, strlen(want)) == 0 || strstr(buf, want) != NULL;
        if (match && count != NULL)
            (*count)++;
        else if (match)
            return xstrdup(buf);
    }
    return NULL;
}

/* Forgets the messages already queued. */
static void drain(Manager *m)
{
    char buf[1024];
    while (recv(m->fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
}

static void expect_message(Manager *m, const char *want, int ms)
{
    char *msg = await_message(m, want, ms, NULL);
    cr_assert_not_null(msg, "no %s within %d ms (log: %s)", want, ms, m->d.log);
    free(msg);
}

Test(notify, ready_status_watchdog_reload_and_stop, .timeout = 60)
{
    Manager m;
    manager_start(&m, "notify_life");
    char *ready = await_message(&m, "READY=1", 20000, NULL);
    cr_assert_not_null(ready, "no READY=1 (log: %s)", m.d.log);
    cr_assert(strstr(ready, "STATUS=3 read models:") != NULL, "READY without status: %s", ready);
    free(ready);
    expect_message(&m, "WATCHDOG=1", 3000);
    expect_message(&m, "STATUS=3 read models: 3 running", 5000);
    cr_assert_eq(kill(m.d.pid, SIGHUP), 0);
    expect_message(&m, "RELOADING=1", 5000);
    expect_message(&m, "READY=1", 20000);
    cr_assert_eq(kill(m.d.pid, SIGTERM), 0);
    expect_message(&m, "STOPPING=1", 5000);
    cr_assert_eq(testenv_wait_exit(m.d.pid, 20000), 0, "unclean stop (log: %s)", m.d.log);
    m.d.pid = 0;
    manager_done(&m);
}

/* A worker whose batch waits on a lock the test holds stops the keep-alives; they come back
 * when the lock goes. */
Test(notify, a_hung_worker_stops_the_watchdog, .timeout = 60)
{
    Manager m;
    manager_start(&m, "notify_hang");
    expect_message(&m, "READY=1", 20000);
    expect_message(&m, "WATCHDOG=1", 3000);
    PGconn *locker = PQconnectdb(m.d.conninfo);
    cr_assert_eq(PQstatus(locker), CONNECTION_OK);
    PQclear(PQexec(locker, "BEGIN"));
    PGresult *r = PQexec(locker, "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE");
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(locker));
    PQclear(r);
    json_t *f = json_pack("{s:s, s:s, s:s}", "type", "customer.registered", "version", "1",
                          "payload", "{\"customerId\":\"c-9\",\"name\":\"Hung\"}");
    testenv_xadd(m.d.redis, "customers", f, m.d.last);
    json_decref(f);
    /* the customers worker blocks in its batch: a second later, no more keep-alives */
    testenv_sleep_ms(2000);
    drain(&m);
    int pings = 0;
    (void)await_message(&m, "WATCHDOG=1", 2500, &pings);
    cr_assert_eq(pings, 0, "%d keep-alives while a worker hung (log: %s)", pings, m.d.log);
    PQclear(PQexec(locker, "COMMIT"));
    PQfinish(locker);
    expect_message(&m, "WATCHDOG=1", 5000);
    cr_assert_eq(kill(m.d.pid, SIGTERM), 0);
    cr_assert_eq(testenv_wait_exit(m.d.pid, 20000), 0, "unclean stop (log: %s)", m.d.log);
    m.d.pid = 0;
    manager_done(&m);
}
