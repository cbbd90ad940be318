/* http_conns.c - the HTTP server's connections as the deadlines and the reserve see them:
 * which phase each one is in, and since when. A sweeper thread shuts down a connection
 * whose request head has not arrived, or whose answer has not left, within the head
 * timeout (a client cannot stretch it by trickling bytes: the clock starts with the phase,
 * not with the last byte), and, while more connections are open than the soft limit, the
 * ones that have waited longest for a request, so that new requests (/healthz, /readyz)
 * always find a free connection.
 *
 * libmicrohttpd owns the sockets. A shutdown here only makes its next read or write on the
 * socket fail; it then closes the socket and reports the connection closed
 * (http_conns_close) before it calls close(), under the same lock as the shutdown, so a
 * socket number is never shut down once it may belong to another connection.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/log.h"
#include "http/http_internal.h"
#include "os/now.h"
#include "os/thread.h"

/* A connection waiting for a request is evicted only after this long, so that a burst of
 * genuine connections is not turned away while its requests are on their way. */
#define HTTP_EVICT_GRACE_MS 100
/* The sweeper looks again at least this often (its waits are otherwise computed). */
#define HTTP_SWEEP_MAX_SLEEP_MS 1000

typedef struct HttpConnList {
    HttpConn *first, *last; /* oldest first: since_ms never decreases along the list */
    size_t count;
} HttpConnList;

struct HttpConns {
    pthread_mutex_t mu;  /* guards everything below but the options */
    pthread_cond_t cond; /* CLOCK_MONOTONIC; wakes the sweeper */
    pthread_t sweeper;
    bool stopping;
    int64_t wake_at_ms; /* when the sweeper looks next: it is woken only for earlier work */
    unsigned head_timeout_ms;
    size_t soft_limit;
    HttpConnList lists[HTTP_CONN_PHASES];
    HttpConnsStats stats;
};

/* ---- the lists ---- */

static void list_unlink(HttpConnList *l, HttpConn *c)
{
    assert(l->count > 0);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->last = c->prev;
    c->prev = c->next = NULL;
    l->count--;
}

static void list_append(HttpConnList *l, HttpConn *c)
{
    c->prev = l->last;
    c->next = NULL;
    if (l->last)
        l->last->next = c;
    else
        l->first = c;
    l->last = c;
    l->count++;
}

/* Connections that count against the limit: all but those already shut down. */
static size_t live_count(const HttpConns *cs)
{
    return cs->lists[HTTP_CONN_HEAD].count + cs->lists[HTTP_CONN_BUSY].count +
           cs->lists[HTTP_CONN_WAITING].count;
}

/* Wakes the sweeper if it planned to look later than at: a signal per connection would
 * cost more than the rest of its bookkeeping. */
static void wake_by(HttpConns *cs, int64_t at)
{
    if (at < cs->wake_at_ms) {
        cs->wake_at_ms = at;
        pthread_cond_signal(&cs->cond);
    }
}

/* c has entered its phase at now: the sweeper must look by its deadline, and by the end of
 * its grace when the soft limit is passed. */
static void plan_sweep(HttpConns *cs, const HttpConn *c, int64_t now)
{
    if (c->phase == HTTP_CONN_HEAD || c->phase == HTTP_CONN_BUSY)
        wake_by(cs, now + cs->head_timeout_ms);
    if (live_count(cs) > cs->soft_limit && cs->lists[HTTP_CONN_HEAD].first)
        wake_by(cs, cs->lists[HTTP_CONN_HEAD].first->since_ms + HTTP_EVICT_GRACE_MS);
}

/* Moves c to the end of the list of phase, its clock restarted. */
static void move_to(HttpConns *cs, HttpConn *c, HttpConnPhase phase, int64_t now)
{
    list_unlink(&cs->lists[c->phase], c);
    c->phase = phase;
    c->since_ms = now;
    list_append(&cs->lists[phase], c);
    plan_sweep(cs, c, now);
}

/* ---- the sweeper ---- */

/* Shuts c's socket down for good; libmicrohttpd closes it when it next touches it. */
static void shut(HttpConns *cs, HttpConn *c, int64_t now)
{
    (void)shutdown(c->fd, SHUT_RDWR);
    move_to(cs, c, HTTP_CONN_CLOSING, now);
}

/* Closes the connections of a deadline list whose phase began a head timeout ago. */
static void close_late(HttpConns *cs, HttpConnPhase phase, int64_t now)
{
    HttpConnList *l = &cs->lists[phase];

    while (l->first && l->first->since_ms + cs->head_timeout_ms <= now) {
        log_debug("http", "closing a connection that %s within %u ms",
                  phase == HTTP_CONN_HEAD ? "did not send its request head"
                                          : "did not take its answer",
                  cs->head_timeout_ms);
        shut(cs, l->first, now);
        cs->stats.timeouts++;
    }
}

/* Above the soft limit, closes the connections that have waited longest for a request. */
static void evict_idle(HttpConns *cs, int64_t now)
{
    HttpConnList *l = &cs->lists[HTTP_CONN_HEAD];

    while (live_count(cs) > cs->soft_limit && l->first &&
           l->first->since_ms + HTTP_EVICT_GRACE_MS <= now) {
        log_debug("http", "closing a connection idle for %lld ms: %zu connections are open",
                  (long long)(now - l->first->since_ms), live_count(cs));
        shut(cs, l->first, now);
        cs->stats.evictions++;
    }
}

static int64_t earliest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* When the sweeper has something to do next: the oldest deadline, or the end of the grace
 * of the oldest idle connection while the soft limit is passed. */
static int64_t next_sweep(const HttpConns *cs, int64_t now)
{
    const HttpConn *head = cs->lists[HTTP_CONN_HEAD].first;
    const HttpConn *busy = cs->lists[HTTP_CONN_BUSY].first;
    int64_t at = now + HTTP_SWEEP_MAX_SLEEP_MS;

    if (head)
        at = earliest(at, head->since_ms + cs->head_timeout_ms);
    if (busy)
        at = earliest(at, busy->since_ms + cs->head_timeout_ms);
    if (head && live_count(cs) > cs->soft_limit)
        at = earliest(at, head->since_ms + HTTP_EVICT_GRACE_MS);
    return at;
}

static void *sweeper_main(void *arg)
{
    HttpConns *cs = arg;

    pthread_mutex_lock(&cs->mu);
    while (!cs->stopping) {
        int64_t now = now_monotonic_ms();
        struct timespec ts;

        close_late(cs, HTTP_CONN_HEAD, now);
        close_late(cs, HTTP_CONN_BUSY, now);
        evict_idle(cs, now);
        cs->wake_at_ms = next_sweep(cs, now);
        ts = thread_monotonic_timespec(cs->wake_at_ms);
        (void)pthread_cond_timedwait(&cs->cond, &cs->mu, &ts);
    }
    pthread_mutex_unlock(&cs->mu);
    return NULL;
}

/* ---- the registry ---- */

HttpConns *http_conns_new(const HttpConnsOptions *opts)
{
    HttpConns *cs = xcalloc(1, sizeof(*cs));
    int rc;

    assert(opts->head_timeout_ms > 0);
    cs->head_timeout_ms = opts->head_timeout_ms;
    cs->soft_limit = opts->soft_limit;
    cs->wake_at_ms = INT64_MAX; /* until the sweeper has planned */
    pthread_mutex_init(&cs->mu, NULL);
    thread_cond_init_monotonic(&cs->cond);
    rc = pthread_create(&cs->sweeper, NULL, sweeper_main, cs);
    /* Like an allocation failure: without it the server cannot keep its limits. */
    if (rc != 0) {
        fprintf(stderr, "could not start the HTTP connection sweeper thread: %s\n", strerror(rc));
        abort();
    }
    return cs;
}

HttpConns *http_conns_free(HttpConns *cs)
{
    if (!cs)
        return NULL;
    pthread_mutex_lock(&cs->mu);
    cs->stopping = true;
    pthread_cond_signal(&cs->cond);
    pthread_mutex_unlock(&cs->mu);
    pthread_join(cs->sweeper, NULL);
    for (int p = 0; p < HTTP_CONN_PHASES; p++)
        assert(cs->lists[p].count == 0);
    pthread_cond_destroy(&cs->cond);
    pthread_mutex_destroy(&cs->mu);
    free(cs);
    return NULL;
}

HttpConn *http_conns_open(HttpConns *cs, int fd)
{
    HttpConn *c = xcalloc(1, sizeof(*c));

    c->fd = fd;
    c->phase = HTTP_CONN_HEAD;
    pthread_mutex_lock(&cs->mu);
    c->since_ms = now_monotonic_ms();
    list_append(&cs->lists[HTTP_CONN_HEAD], c);
    plan_sweep(cs, c, c->since_ms);
    pthread_mutex_unlock(&cs->mu);
    return c;
}

void http_conns_close(HttpConns *cs, HttpConn *c)
{
    assert(c->waiter == NULL);
    pthread_mutex_lock(&cs->mu);
    list_unlink(&cs->lists[c->phase], c);
    pthread_mutex_unlock(&cs->mu);
    free(c);
}

void http_conns_enter(HttpConns *cs, HttpConn *c, HttpConnPhase phase)
{
    assert(phase != HTTP_CONN_CLOSING);
    pthread_mutex_lock(&cs->mu);
    if (c->phase != HTTP_CONN_CLOSING)
        move_to(cs, c, phase, now_monotonic_ms());
    pthread_mutex_unlock(&cs->mu);
}

void http_conns_refuse(HttpConns *cs, HttpConn *c, const char *answer, size_t len)
{
    pthread_mutex_lock(&cs->mu);
    c->refused = true;
    if (c->phase != HTTP_CONN_CLOSING) {
        /* The socket is non-blocking and the answer small: it fits the send buffer of any
         * connection that is not refusing to read, and a client that is loses it. */
        while (len > 0) {
            ssize_t n = send(c->fd, answer, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            answer += n;
            len -= (size_t)n;
        }
        shut(cs, c, now_monotonic_ms());
    }
    pthread_mutex_unlock(&cs->mu);
}

/* libmicrohttpd (0.9.75) takes a read shorter than its buffer for an emptied socket and
 * waits for the next readiness event; when the client's end of input came with its request
 * that event never comes, and a kept-alive connection would wait for the head deadline. A
 * shutdown for reading raises the event. */
void http_conns_check_end(HttpConns *cs, HttpConn *c)
{
    char byte;

    pthread_mutex_lock(&cs->mu);
    if (c->phase != HTTP_CONN_CLOSING && recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
        (void)shutdown(c->fd, SHUT_RD);
    pthread_mutex_unlock(&cs->mu);
}

HttpConnsStats http_conns_stats(HttpConns *cs)
{
    HttpConnsStats s;

    pthread_mutex_lock(&cs->mu);
    s = cs->stats;
    pthread_mutex_unlock(&cs->mu);
    return s;
}
