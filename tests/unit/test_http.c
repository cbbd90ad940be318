/* test_http.c - the HTTP endpoints over real sockets, against a lag board built by hand:
 * /healthz, /readyz, /lag, /metrics, every /wait answer (200, 400, 404, 408, 503), the
 * timing of a wake-up, 300 concurrent waiters, pipelined requests, shutdown, and listen
 * address errors; then hostile clients: the bearer token, the waiter limit, oversized and
 * malformed requests (every request under max_request_bytes answered, every one over it
 * refused), thousands of concurrent long-polls with memory kept bounded, slow request
 * heads and long-polls that must not stop /healthz and /readyz, clients that hang up; and
 * the configuration keys of those limits.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"
#include "board/board.h"
#include "board_models.h"
#include "http/http.h"
#include "http/metrics.h"
#include "os/now.h"
#include "testenv.h"

static Board *board;
static Http *http;
static unsigned port;

static void start_with(HttpOptions opts)
{
    PjError err = {0};

    opts.listen = "127.0.0.1:0";
    opts.wait_timeout_default_ms = 5000;
    opts.wait_timeout_max_ms = 30000;
    board = board_new(board_models_fixture());
    cr_assert_eq(http_start(&opts, board, &http, &err), 0, "%s", err.message);
    port = http_port(http);
    cr_assert_neq(port, 0);
}

static void start_server(void)
{
    start_with((HttpOptions){.max_connections = 1000});
}

static void stop_server(void)
{
    http = http_stop(http);
    board = board_free(board);
}

TestSuite(http, .init = start_server, .fini = stop_server, .timeout = 60);

/* ---- a small HTTP/1.1 client ---- */

/* A connected socket, or -1 when the connection is refused or not accepted within
 * timeout_ms (SO_SNDTIMEO bounds connect too). Reads time out after 20 s. */
static int http_connect(int timeout_ms)
{
    struct timeval rcv = {.tv_sec = 20},
                   snd = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd));
    if (testenv_connect(fd, port, timeout_ms) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends what the server takes: it may close first, which is not a failure here. */
static void send_raw(int fd, const char *data, size_t len)
{
    (void)testenv_send_all(fd, data, len);
}

/* Sends one request with Connection: close and the extra header lines (each ending in
 * CRLF); returns the socket. */
static int http_send_with(const char *method, const char *path, const char *headers)
{
    int fd = http_connect(20000);
    char *req = xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
                          method, path, headers);

    cr_assert_geq(fd, 0, "connect: %s", strerror(errno));
    send_raw(fd, req, strlen(req));
    free(req);
    return fd;
}

static int http_send(const char *method, const char *path)
{
    return http_send_with(method, path, "");
}

typedef struct Reply {
    int status;
    char *head; /* status line and headers */
    char *body;
    json_t *json; /* the body parsed, when it is JSON */
} Reply;

/* Reads the whole response and closes fd. */
static Reply http_recv(int fd)
{
    StrBuf sb = {0};
    char buf[4096];
    ssize_t n;
    Reply r = {0};
    char *sep;

    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            strbuf_appendn(&sb, buf, (size_t)n);
    close(fd);
    cr_assert(sb.len > 12, "no response");
    r.head = strbuf_take(&sb);
    r.status = atoi(r.head + 9);
    sep = strstr(r.head, "\r\n\r\n");
    cr_assert_not_null(sep);
    *sep = '\0';
    r.body = sep + 4;
    r.json = json_loads(r.body, 0, NULL);
    return r;
}

static Reply http_request(const char *method, const char *path)
{
    return http_recv(http_send(method, path));
}

static Reply get(const char *path)
{
    return http_request("GET", path);
}

static void reply_done(Reply *r)
{
    json_decref(r->json);
    free(r->head);
}

static const char *error_of(const Reply *r)
{
    return json_string_value(json_object_get(r->json, "error"));
}

static json_t *rm_at(const Reply *r, size_t i)
{
    return json_array_get(json_object_get(r->json, "readmodels"), i);
}

static const char *rm_str(const Reply *r, size_t i, const char *key)
{
    return json_string_value(json_object_get(rm_at(r, i), key));
}

static StreamId sid(uint64_t ms, uint64_t seq)
{
    return (StreamId){ms, seq};
}

static void run_all(void)
{
    for (size_t i = 0; i < board_models_fixture()->count; i++) {
        board_set_state(board, i, BOARD_STATE_RUNNING, NULL);
        board_polled(board, i);
    }
}

static void wait_pending(size_t n)
{
    int64_t deadline = now_monotonic_ms() + 10000;

    while (board_wait_pending(board) < n && now_monotonic_ms() < deadline)
        testenv_sleep_ms(2);
    cr_assert_eq(board_wait_pending(board), n);
}

/* ---- simple endpoints ---- */

Test(http, healthz_answers_ok)
{
    Reply r = get("/healthz");

    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(json_string_value(json_object_get(r.json, "status")), "ok");
    cr_expect(strstr(r.head, "Content-Type: application/json") != NULL, "%s", r.head);
    reply_done(&r);

    r = http_request("HEAD", "/healthz");
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "");
    reply_done(&r);
}

Test(http, readyz_follows_the_states)
{
    Reply r = get("/readyz");

    cr_expect_eq(r.status, 503);
    cr_expect_str_eq(rm_str(&r, 0, "state"), "starting");
    reply_done(&r);
    run_all();
    r = get("/readyz");
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(json_string_value(json_object_get(r.json, "status")), "ready");
    reply_done(&r);
}

Test(http, lag_lists_every_read_model)
{
    BoardOutcome o = {.id = sid(5, 0), .outcome = BOARD_OUTCOME_APPLIED};
    StreamBacklog s = {.has_last_entry = true,
                       .last_entry = sid(9, 0),
                       .entries_behind = 4,
                       .oldest_unapplied_ms = now_wall_ms() - 3000};
    Reply r;
    json_t *st;

    run_all();
    board_sampled(board, 0, 0, &s);
    board_committed(board, 0, 0, sid(5, 0), &o, 1);
    r = get("/lag");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "readmodels")), 3);
    cr_expect_str_eq(rm_str(&r, 0, "name"), "orders");
    cr_expect_str_eq(rm_str(&r, 0, "state"), "catching_up");
    cr_expect(json_is_string(json_object_get(rm_at(&r, 0), "last_poll_at")));
    cr_expect(json_is_integer(json_object_get(rm_at(&r, 0), "last_poll_age_ms")));
    st = json_array_get(json_object_get(rm_at(&r, 0), "streams"), 0);
    cr_expect_str_eq(json_string_value(json_object_get(st, "stream")), "orders");
    cr_expect_str_eq(json_string_value(json_object_get(st, "last_entry_id")), "9-0");
    cr_expect_str_eq(json_string_value(json_object_get(st, "last_applied_id")), "5-0");
    cr_expect_eq(json_integer_value(json_object_get(st, "entries_behind")), 3);
    cr_expect_geq(json_real_value(json_object_get(st, "lag_seconds")), 2.9);
    cr_expect_eq(json_integer_value(json_object_get(st, "applied")), 1);
    cr_expect(json_is_number(json_object_get(st, "events_per_second")));
    cr_expect_eq(json_integer_value(json_object_get(st, "dead_letters")), 0);
    st = json_array_get(json_object_get(rm_at(&r, 0), "streams"), 1);
    cr_expect(json_is_null(json_object_get(st, "last_applied_id")));
    reply_done(&r);
}

Test(http, lag_of_one_read_model)
{
    Reply r = get("/lag/customer_stats");

    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(json_string_value(json_object_get(r.json, "name")), "customer_stats");
    cr_expect_eq(json_array_size(json_object_get(r.json, "streams")), 1);
    reply_done(&r);
    r = get("/lag/nope");
    cr_expect_eq(r.status, 404);
    cr_expect_str_eq(error_of(&r), "unknown read model \"nope\"");
    reply_done(&r);
}

Test(http, unknown_path_and_method)
{
    Reply r = get("/nothing");

    cr_expect_eq(r.status, 404);
    cr_expect_str_eq(error_of(&r), "unknown path \"/nothing\"");
    reply_done(&r);
    r = http_request("POST", "/lag");
    cr_expect_eq(r.status, 405);
    cr_expect(strstr(r.head, "Allow: GET, HEAD") != NULL, "%s", r.head);
    cr_expect_str_eq(error_of(&r), "method \"POST\" is not allowed");
    reply_done(&r);
    r = http_request("DELETE", "/wait?stream=orders&id=1-0");
    cr_expect_eq(r.status, 405);
    reply_done(&r);
}

Test(http, metrics_expose_the_counters)
{
    BoardOutcome o[3] = {{.id = sid(1, 0), .outcome = BOARD_OUTCOME_APPLIED},
                         {.id = sid(2, 0), .outcome = BOARD_OUTCOME_SKIPPED},
                         {.id = sid(3, 0), .outcome = BOARD_OUTCOME_DEAD_LETTERED, .error = "bad"}};
    static const char *const want[] = {
        "# TYPE projector_up gauge\nprojector_up 1\n",
        "projector_readmodel_state{readmodel=\"orders\",state=\"running\"} 1\n",
        "projector_readmodel_state{readmodel=\"orders\",state=\"starting\"} 0\n",
        "projector_readmodel_state{readmodel=\"customers\",state=\"starting\"} 1\n",
        "# TYPE projector_events_applied_total counter\n",
        "projector_events_applied_total{readmodel=\"orders\",stream=\"orders\"} 1\n",
        "projector_events_skipped_total{readmodel=\"orders\",stream=\"orders\"} 1\n",
        "projector_dead_letters_total{readmodel=\"orders\",stream=\"orders\"} 1\n",
        "projector_lag_entries{readmodel=\"orders\",stream=\"customers\"} 0\n",
        "projector_lag_seconds{readmodel=\"orders\",stream=\"orders\"} 0\n",
        "projector_last_poll_age_seconds{readmodel=\"orders\"} ",
        "projector_wait_pending 0\n",
    };
    Reply r;

    board_set_state(board, 0, BOARD_STATE_RUNNING, NULL);
    board_polled(board, 0);
    board_committed(board, 0, 0, sid(3, 0), o, 3);
    r = get("/metrics");
    cr_assert_eq(r.status, 200);
    cr_expect(strstr(r.head, "Content-Type: text/plain; version=0.0.4") != NULL, "%s", r.head);
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        cr_expect(strstr(r.body, want[i]) != NULL, "missing %s in:\n%s", want[i], r.body);
    /* A read model that never polled has no poll age rather than a made-up one. */
    cr_expect(strstr(r.body, "projector_last_poll_age_seconds{readmodel=\"customers\"}") == NULL);
    reply_done(&r);
}

Test(metrics, escapes_label_values)
{
    json_t *doc = json_pack("{s:[{s:s,s:s,s:[{s:s,s:i}]}]}", "readmodels", "name", "a\"b\\c",
                            "state", "running", "streams", "stream", "x\ny", "applied", 7);
    char *text = metrics_render(doc, 3);

    cr_expect(strstr(text, "projector_events_applied_total{readmodel=\"a\\\"b\\\\c\","
                           "stream=\"x\\ny\"} 7\n") != NULL,
              "%s", text);
    cr_expect(strstr(text, "projector_wait_pending 3\n") != NULL);
    free(text);
    json_decref(doc);
}

/* ---- /wait ---- */

typedef struct Committer {
    int delay_ms;
    size_t rm[2], stream[2];
    size_t n;
    BoardOutcome outcome[2];
    StreamId position;
    int64_t committed_at_ms;
} Committer;

static void *commit_later(void *arg)
{
    Committer *c = arg;

    testenv_sleep_ms(c->delay_ms);
    c->committed_at_ms = now_monotonic_ms();
    for (size_t i = 0; i < c->n; i++)
        board_committed(board, c->rm[i], c->stream[i], c->position, &c->outcome[i], 1);
    return NULL;
}

Test(http, wait_returns_as_soon_as_every_read_model_settled)
{
    Committer c = {
        .delay_ms = 150,
        .rm = {0, 1},
        .stream = {0, 0},
        .n = 2,
        .outcome = {{.id = sid(42, 7), .outcome = BOARD_OUTCOME_APPLIED},
                    {.id = sid(42, 7),
                     .outcome = BOARD_OUTCOME_DEAD_LETTERED,
                     .error = "null value in column \"id\""}},
        .position = sid(42, 7),
    };
    pthread_t t;
    Reply r;
    int64_t answered;

    run_all();
    pthread_create(&t, NULL, commit_later, &c);
    r = get("/wait?stream=orders&id=42-7&timeout_ms=5000");
    answered = now_monotonic_ms();
    pthread_join(t, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_expect_lt(answered - c.committed_at_ms, 200, "answered %lld ms after the commit",
                 (long long)(answered - c.committed_at_ms));
    cr_expect_geq(answered - c.committed_at_ms, 0, "answered before the commit");
    cr_expect(strstr(r.head, "Content-Type: application/json") != NULL);
    cr_expect_str_eq(json_string_value(json_object_get(r.json, "stream")), "orders");
    cr_expect_str_eq(json_string_value(json_object_get(r.json, "id")), "42-7");
    cr_expect(json_is_true(json_object_get(r.json, "settled")));
    cr_expect_str_eq(rm_str(&r, 0, "name"), "orders");
    cr_expect_str_eq(rm_str(&r, 0, "outcome"), "applied");
    cr_expect_null(json_object_get(rm_at(&r, 0), "error"));
    cr_expect_str_eq(rm_str(&r, 1, "name"), "customer_stats");
    cr_expect_str_eq(rm_str(&r, 1, "outcome"), "dead_lettered");
    cr_expect_str_eq(rm_str(&r, 1, "error"), "null value in column \"id\"");
    reply_done(&r);
    cr_expect_eq(board_wait_pending(board), 0);
}

Test(http, wait_for_one_read_model_reports_skipped)
{
    Committer c = {
        .delay_ms = 100,
        .rm = {2},
        .stream = {0},
        .n = 1,
        .outcome = {{.id = sid(8, 0), .outcome = BOARD_OUTCOME_SKIPPED}},
        .position = sid(8, 0),
    };
    pthread_t t;
    Reply r;

    pthread_create(&t, NULL, commit_later, &c);
    r = get("/wait?stream=customers&id=8-0&readmodel=customers");
    pthread_join(t, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_expect_eq(json_array_size(json_object_get(r.json, "readmodels")), 1);
    cr_expect_str_eq(rm_str(&r, 0, "outcome"), "skipped");
    reply_done(&r);
}

Test(http, late_waiter_is_answered_at_once)
{
    BoardOutcome o[2] = {{.id = sid(10, 0), .outcome = BOARD_OUTCOME_APPLIED},
                         {.id = sid(11, 0), .outcome = BOARD_OUTCOME_SKIPPED}};
    int64_t start;
    Reply r;

    board_committed(board, 0, 0, sid(11, 0), o, 2);
    board_committed(board, 1, 0, sid(11, 0), o, 2);
    start = now_monotonic_ms();
    r = get("/wait?stream=orders&id=11-0&timeout_ms=10000");
    cr_expect_lt(now_monotonic_ms() - start, 1000);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_expect_str_eq(rm_str(&r, 0, "outcome"), "skipped");
    cr_expect_str_eq(rm_str(&r, 1, "outcome"), "skipped");
    reply_done(&r);
}

Test(http, wait_times_out_with_positions)
{
    BoardOutcome o = {.id = sid(3, 0), .outcome = BOARD_OUTCOME_APPLIED};
    StreamBacklog s = {.has_last_entry = true,
                       .last_entry = sid(20, 0),
                       .entries_behind = 7,
                       .oldest_unapplied_ms = now_wall_ms() - 2000};
    int64_t start, elapsed;
    Reply r;

    run_all();
    board_sampled(board, 0, 0, &s);
    board_committed(board, 0, 0, sid(3, 0), &o, 1);
    board_set_state(board, 1, BOARD_STATE_RETRYING, "could not connect to PostgreSQL");
    start = now_monotonic_ms();
    r = get("/wait?stream=orders&id=20-0&timeout_ms=250");
    elapsed = now_monotonic_ms() - start;
    cr_assert_eq(r.status, 408, "%s", r.body);
    cr_expect_geq(elapsed, 245);
    cr_expect_lt(elapsed, 3000);
    cr_expect(json_is_false(json_object_get(r.json, "settled")));
    cr_expect_str_eq(rm_str(&r, 0, "outcome"), "pending");
    cr_expect_str_eq(rm_str(&r, 0, "state"), "catching_up");
    cr_expect_str_eq(rm_str(&r, 0, "last_applied_id"), "3-0");
    cr_expect_eq(json_integer_value(json_object_get(rm_at(&r, 0), "entries_behind")), 6);
    cr_expect_geq(json_real_value(json_object_get(rm_at(&r, 0), "lag_seconds")), 1.9);
    cr_expect_str_eq(rm_str(&r, 1, "state"), "retrying");
    cr_expect_str_eq(rm_str(&r, 1, "reason"), "could not connect to PostgreSQL");
    cr_expect(json_is_null(json_object_get(rm_at(&r, 1), "last_applied_id")));
    reply_done(&r);
    cr_expect_eq(board_wait_pending(board), 0);
}

Test(http, wait_rejects_bad_parameters)
{
    static const struct {
        const char *path;
        const char *error;
    } cases[] = {
        {"/wait?id=1-0", "missing query parameter \"stream\""},
        {"/wait?stream=orders", "missing query parameter \"id\""},
        {"/wait?stream=orders&id=abc", "invalid entry ID \"abc\": expected <ms>-<seq>"},
        {"/wait?stream=orders&id=1-", "invalid entry ID \"1-\": expected <ms>-<seq>"},
        {"/wait?stream=orders&id=-1-0", "invalid entry ID \"-1-0\": expected <ms>-<seq>"},
        {"/wait?stream=orders&id=1-0&timeout_ms=-1",
         "invalid timeout_ms \"-1\": expected a non-negative integer"},
        {"/wait?stream=orders&id=1-0&timeout_ms=1s",
         "invalid timeout_ms \"1s\": expected a non-negative integer"},
        {"/wait?stream=orders&id=1-0&timeout_ms=", "invalid timeout_ms \"\": expected a "
                                                   "non-negative integer"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        Reply r = get(cases[i].path);
        cr_expect_eq(r.status, 400, "%s", cases[i].path);
        cr_expect_str_eq(error_of(&r), cases[i].error);
        reply_done(&r);
    }
}

Test(http, wait_rejects_unknown_streams_and_read_models)
{
    static const struct {
        const char *path;
        const char *error;
    } cases[] = {
        {"/wait?stream=payments&id=1-0", "no read model reads stream \"payments\""},
        {"/wait?stream=orders&id=1-0&readmodel=nope", "unknown read model \"nope\""},
        {"/wait?stream=orders&id=1-0&readmodel=customers",
         "read model \"customers\" does not read stream \"orders\""},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        Reply r = get(cases[i].path);
        cr_expect_eq(r.status, 404, "%s", cases[i].path);
        cr_expect_str_eq(error_of(&r), cases[i].error);
        reply_done(&r);
    }
}

Test(http, huge_timeout_is_clamped)
{
    /* 10^30 ms is a valid non-negative integer: clamped, not rejected. */
    int fd = http_send("GET", "/wait?stream=customers&id=5-0&timeout_ms="
                              "1000000000000000000000000000000");
    BoardOutcome o = {.id = sid(5, 0), .outcome = BOARD_OUTCOME_APPLIED};
    Reply r;

    wait_pending(1);
    board_committed(board, 0, 1, sid(5, 0), &o, 1);
    board_committed(board, 2, 0, sid(5, 0), &o, 1);
    r = http_recv(fd);
    cr_expect_eq(r.status, 200, "%s", r.body);
    reply_done(&r);
}

Test(http, stopped_read_model_answers_503_at_once)
{
    int64_t start;
    Reply r;

    run_all();
    board_set_state(board, 1, BOARD_STATE_STOPPED,
                    "table \"customer_stats\" differs from the YAML");
    start = now_monotonic_ms();
    r = get("/wait?stream=orders&id=1-0&timeout_ms=10000");
    cr_expect_lt(now_monotonic_ms() - start, 1000);
    cr_assert_eq(r.status, 503, "%s", r.body);
    cr_expect_str_eq(rm_str(&r, 1, "state"), "stopped");
    cr_expect_str_eq(rm_str(&r, 1, "reason"), "table \"customer_stats\" differs from the YAML");
    cr_expect_str_eq(error_of(&r), "read model \"customer_stats\" is stopped: table "
                                   "\"customer_stats\" differs from the YAML");
    reply_done(&r);
}

Test(http, read_model_stopping_while_waited_on_answers_503)
{
    int fd;
    Reply r;

    run_all();
    fd = http_send("GET", "/wait?stream=customers&id=1-0&timeout_ms=20000");
    wait_pending(1);
    board_set_state(board, 2, BOARD_STATE_STOPPED, "permission denied for table");
    r = http_recv(fd);
    cr_assert_eq(r.status, 503, "%s", r.body);
    cr_expect_str_eq(rm_str(&r, 1, "name"), "customers");
    cr_expect_str_eq(rm_str(&r, 1, "state"), "stopped");
    cr_expect_str_eq(rm_str(&r, 0, "state"), "running");
    reply_done(&r);
}

Test(http, one_commit_releases_300_waiters)
{
    enum { N = 300 };
    static int fds[N];
    BoardOutcome o = {.id = sid(77, 0), .outcome = BOARD_OUTCOME_APPLIED};
    int64_t committed;

    for (int i = 0; i < N; i++)
        fds[i] = http_send("GET", "/wait?stream=customers&id=77-0&readmodel=customers"
                                  "&timeout_ms=20000");
    wait_pending(N);
    committed = now_monotonic_ms();
    board_committed(board, 2, 0, sid(77, 0), &o, 1);
    for (int i = 0; i < N; i++) {
        Reply r = http_recv(fds[i]);
        cr_expect_eq(r.status, 200, "waiter %d: %s", i, r.body);
        cr_expect_str_eq(rm_str(&r, 0, "outcome"), "applied");
        reply_done(&r);
    }
    cr_expect_lt(now_monotonic_ms() - committed, 3000);
    cr_expect_eq(board_wait_pending(board), 0);
}

Test(http, stop_answers_pending_waiters)
{
    int fd = http_send("GET", "/wait?stream=orders&id=1-0&timeout_ms=20000");
    Reply r;

    wait_pending(1);
    http = http_stop(http);
    r = http_recv(fd);
    cr_expect_eq(r.status, 503, "%s", r.body);
    cr_expect_str_eq(error_of(&r), "shutting down");
    reply_done(&r);
    cr_expect_eq(board_wait_pending(board), 0);
}

/* ---- listen addresses ---- */

Test(http_listen, rejects_malformed_addresses)
{
    static const char *const bad[] = {
        "",         "8080",      "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
        "::1:8080", "[::1]8080", "[]:80",     "host:80a"};
    Board *b = board_new(board_models_fixture());

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        HttpOptions opts = {.listen = bad[i]};
        PjError err = {0};
        Http *h = NULL;
        cr_expect_eq(http_start(&opts, b, &h, &err), -PJ_EINVAL, "\"%s\"", bad[i]);
        cr_expect(strstr(err.message, "invalid listen address") != NULL, "%s", err.message);
        cr_expect_null(h);
    }
    board_free(b);
}

Test(http_listen, accepts_every_form_and_reports_busy_ports)
{
    Board *b = board_new(board_models_fixture());
    HttpOptions opts = {.listen = ":0"};
    PjError err = {0};
    Http *h = NULL, *h2 = NULL, *h3 = NULL;
    char busy[32];

    cr_assert_eq(http_start(&opts, b, &h, &err), 0, "%s", err.message);
    cr_expect_neq(http_port(h), 0);
    opts.listen = "[::1]:0";
    if (http_start(&opts, b, &h2, &err) == 0) /* IPv6 may be missing in a container */
        h2 = http_stop(h2);
    snprintf(busy, sizeof(busy), "127.0.0.1:%u", http_port(h));
    opts.listen = busy;
    cr_expect_eq(http_start(&opts, b, &h3, &err), -PJ_EIO);
    cr_expect(strstr(err.message, "could not listen on") != NULL, "%s", err.message);
    h = http_stop(h);
    board_free(b);
}

/* ---- hostile clients: shared helpers ---- */

/* Reads until the server closes (or a read fails: a reset after an early answer is fine)
 * and closes fd. Returns the status, 0 when the server closed without answering, -1 when
 * it did not answer within the socket's read timeout. */
static int recv_status(int fd)
{
    StrBuf sb = {0};
    char buf[4096];
    ssize_t n;
    int status = 0;

    strbuf_append(&sb, "");
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            strbuf_appendn(&sb, buf, (size_t)n);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && sb.len == 0)
        status = -1;
    else if (sb.len >= 12 && strncmp(sb.buf, "HTTP/1.", 7) == 0)
        status = atoi(sb.buf + 9);
    close(fd);
    strbuf_done(&sb);
    return status;
}

/* Answers within 3 s, or -1: what libmicrohttpd does not answer at once it holds until its
 * idle timeout (30 s), which is bounded too. */
static int raw_request(const char *bytes, size_t len)
{
    struct timeval tv = {.tv_sec = 3};
    int fd = http_connect(20000);

    cr_assert_geq(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    send_raw(fd, bytes, len);
    /* No more from this client: a server waiting for the rest of a request sees the end. */
    shutdown(fd, SHUT_WR);
    return recv_status(fd);
}

static int request_status(const char *path, const char *headers)
{
    return recv_status(http_send_with("GET", path, headers));
}

static void expect_healthy(void)
{
    Reply r = get("/healthz");

    cr_expect_eq(r.status, 200, "the server no longer answers /healthz");
    reply_done(&r);
}

/* VmRSS of this process in KiB, from /proc/self/status. */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;

    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    cr_assert_gt(kib, 0);
    return kib;
}

/* Both ends of n connections live in this process: make room for them. */
static void raise_fd_limit(rlim_t n)
{
    struct rlimit rl;

    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < n && rl.rlim_max != RLIM_INFINITY && rl.rlim_max < n)
        cr_skip_test("needs %lu file descriptors, the hard limit is %lu", (unsigned long)n,
                     (unsigned long)rl.rlim_max);
    if (rl.rlim_cur < n) {
        rl.rlim_cur = n;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
}

/* ---- the bearer token ---- */

#define TEST_TOKEN "Zx9-kQ2.r7_Lm4~pT8+vW1/aB6="

static void start_auth_server(void)
{
    start_with((HttpOptions){.max_connections = 100, .token = TEST_TOKEN});
}

TestSuite(http_auth, .init = start_auth_server, .fini = stop_server, .timeout = 60);

static Reply get_auth(const char *path, const char *authorization)
{
    char *header = authorization ? xasprintf("Authorization: %s\r\n", authorization) : xstrdup("");
    Reply r = http_recv(http_send_with("GET", path, header));

    free(header);
    return r;
}

Test(http_auth, refuses_a_missing_token)
{
    static const char *const paths[] = {
        "/lag", "/lag/orders", "/readyz", "/metrics", "/wait?stream=orders&id=1-0", "/nothing"};

    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        Reply r = get_auth(paths[i], NULL);
        cr_expect_eq(r.status, 401, "%s", paths[i]);
        cr_expect(strstr(r.head, "\r\nWWW-Authenticate: Bearer realm=\"projector\"") != NULL, "%s",
                  r.head);
        cr_expect(strstr(r.head, "Content-Type: application/json") != NULL, "%s", r.head);
        cr_expect_str_eq(error_of(&r), "missing bearer token");
        cr_expect(strstr(r.head, TEST_TOKEN) == NULL && strstr(r.body, TEST_TOKEN) == NULL);
        reply_done(&r);
    }
    /* A waiter refused before it is registered: nothing is left pending. */
    cr_expect_eq(board_wait_pending(board), 0);
}

Test(http_auth, refuses_a_wrong_token_of_any_length)
{
    static const char *const wrong[] = {
        "Bearer Zx9-kQ2.r7_Lm4~pT8+vW1/aB6-",  /* same length, last byte differs */
        "Bearer Ax9-kQ2.r7_Lm4~pT8+vW1/aB6=",  /* same length, first byte differs */
        "Bearer Zx9-kQ2.r7_Lm4~pT8+vW1/aB6",   /* a prefix */
        "Bearer Zx9-kQ2.r7_Lm4~pT8+vW1/aB6==", /* one byte longer */
        "Bearer Zx9-kQ2.r7_Lm4~pT8+vW1/aB6=Zx9-kQ2.r7_Lm4~pT8+vW1/aB6=", /* repeated */
        "Bearer x",
        ("Bearer " TEST_TOKEN " extra"),
    };

    for (size_t i = 0; i < ARRAY_SIZE(wrong); i++) {
        Reply r = get_auth("/lag", wrong[i]);
        cr_expect_eq(r.status, 401, "%s", wrong[i]);
        cr_expect(strstr(r.head, "WWW-Authenticate: Bearer realm=\"projector\", "
                                 "error=\"invalid_token\"") != NULL,
                  "%s", r.head);
        cr_expect_str_eq(error_of(&r), "invalid bearer token");
        reply_done(&r);
    }
}

Test(http_auth, refuses_other_schemes)
{
    static const char *const other[] = {("Basic " TEST_TOKEN), TEST_TOKEN, "Bearer", "Bearer ", ""};

    for (size_t i = 0; i < ARRAY_SIZE(other); i++) {
        Reply r = get_auth("/lag", other[i]);
        cr_expect_eq(r.status, 401, "\"%s\"", other[i]);
        reply_done(&r);
    }
}

Test(http_auth, accepts_the_right_token)
{
    static const char *const right[] = {("Bearer " TEST_TOKEN), ("bearer " TEST_TOKEN),
                                        ("BEARER  " TEST_TOKEN " ")};
    Reply r;

    for (size_t i = 0; i < ARRAY_SIZE(right); i++) {
        r = get_auth("/lag", right[i]);
        cr_expect_eq(r.status, 200, "\"%s\": %s", right[i], r.body);
        cr_expect_eq(json_array_size(json_object_get(r.json, "readmodels")), 3);
        reply_done(&r);
    }
    r = get_auth("/lag/nope", "Bearer " TEST_TOKEN);
    cr_expect_eq(r.status, 404);
    reply_done(&r);
    r = get_auth("/wait?stream=orders&id=1-0&timeout_ms=0", "Bearer " TEST_TOKEN);
    cr_expect_eq(r.status, 408, "%s", r.body);
    reply_done(&r);
}

Test(http_auth, leaves_healthz_open)
{
    Reply r = get_auth("/healthz", NULL);

    cr_expect_eq(r.status, 200);
    reply_done(&r);
    r = get_auth("/healthz", "Bearer wrong");
    cr_expect_eq(r.status, 200);
    reply_done(&r);
    /* Only that exact path: a look-alike is guarded. */
    r = get_auth("/healthz/", NULL);
    cr_expect_eq(r.status, 401);
    reply_done(&r);
}

Test(http_auth, counts_refusals_in_metrics)
{
    Reply r = get_auth("/lag", NULL);

    reply_done(&r);
    r = get_auth("/lag", "Bearer nope");
    reply_done(&r);
    r = get_auth("/metrics", "Bearer " TEST_TOKEN);
    cr_assert_eq(r.status, 200);
    cr_expect(strstr(r.body, "# TYPE projector_http_unauthorized_total counter\n"
                             "projector_http_unauthorized_total 2\n") != NULL,
              "%s", r.body);
    cr_expect(strstr(r.body, "projector_http_waits_refused_total 0\n") != NULL, "%s", r.body);
    cr_expect(strstr(r.body, TEST_TOKEN) == NULL);
    reply_done(&r);
}

/* ---- the waiter limit ---- */

static void start_small_server(void)
{
    start_with((HttpOptions){.max_connections = 100, .max_waiters = 3});
}

TestSuite(http_limits, .init = start_small_server, .fini = stop_server, .timeout = 60);

Test(http_limits, max_waiters_refuses_the_next_waiter_at_once)
{
    BoardOutcome o = {.id = sid(9, 0), .outcome = BOARD_OUTCOME_APPLIED};
    int fds[3];
    int64_t start;
    Reply r;

    run_all();
    for (int i = 0; i < 3; i++)
        fds[i] = http_send("GET", "/wait?stream=customers&id=9-0&readmodel=customers");
    wait_pending(3);
    start = now_monotonic_ms();
    r = get("/wait?stream=customers&id=9-0&readmodel=customers&timeout_ms=20000");
    cr_expect_lt(now_monotonic_ms() - start, 1000);
    cr_expect_eq(r.status, 503, "%s", r.body);
    cr_expect_str_eq(error_of(&r), "too many waiters");
    cr_expect(strstr(r.head, "Retry-After: 1") != NULL, "%s", r.head);
    reply_done(&r);
    /* An entry settled already needs no waiting: answered even at the limit. */
    board_committed(board, 2, 0, sid(9, 0), &o, 1);
    for (int i = 0; i < 3; i++) {
        r = http_recv(fds[i]);
        cr_expect_eq(r.status, 200, "%s", r.body);
        reply_done(&r);
    }
    r = get("/metrics");
    cr_expect(strstr(r.body, "projector_http_waits_refused_total 1\n") != NULL, "%s", r.body);
    reply_done(&r);
    /* The slots are free again. */
    fds[0] = http_send("GET", "/wait?stream=customers&id=10-0&readmodel=customers");
    wait_pending(1);
    o.id = sid(10, 0);
    board_committed(board, 2, 0, sid(10, 0), &o, 1);
    r = http_recv(fds[0]);
    cr_expect_eq(r.status, 200, "%s", r.body);
    reply_done(&r);
}

/* ---- oversized and malformed requests ---- */

Test(http_limits, oversized_url_gets_a_4xx)
{
    size_t n = 64 * 1024;
    char *path = xmalloc(n + 1);
    int status;

    memset(path, 'a', n);
    path[0] = '/';
    path[n] = '\0';
    status = request_status(path, "");
    cr_expect(status >= 400 && status < 500, "status %d", status);
    free(path);
    expect_healthy();
}

Test(http_limits, max_request_bytes_bounds_the_request)
{
    char path[6001];

    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    /* Within the default 16384 bytes: served (an unknown path). */
    cr_expect_eq(request_status(path, ""), 404);
    stop_server();
    start_with((HttpOptions){.max_request_bytes = 4096});
    cr_expect_eq(request_status(path, ""), 414);
    expect_healthy();
}

Test(http_limits, oversized_header_gets_a_4xx)
{
    size_t n = 64 * 1024;
    char *headers = xmalloc(n + 32);
    int status;

    memcpy(headers, "X-Padding: ", 11);
    memset(headers + 11, 'b', n);
    memcpy(headers + 11 + n, "\r\n", 3);
    status = request_status("/healthz", headers);
    cr_expect(status >= 400 && status < 500, "status %d", status);
    free(headers);
    expect_healthy();
}

/* The bytes of the head http_send_with sends for path with extra header lines. */
static size_t head_bytes(const char *path, const char *headers)
{
    char *req = xasprintf("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", path,
                          headers);
    size_t n = strlen(req);

    free(req);
    return n;
}

/* GET /lag with an X-Padding header of n bytes: the status. */
static int padded_status(size_t n)
{
    char *headers = xmalloc(n + 32);
    int status;

    memcpy(headers, "X-Padding: ", 11);
    memset(headers + 11, 'b', n);
    memcpy(headers + 11 + n, "\r\n", 3);
    status = request_status("/lag", headers);
    free(headers);
    return status;
}

/* Around the 16384-byte default, and byte by byte at the edge: a head within the limit is
 * answered, one past it gets 431; none is closed without an answer. */
Test(http_limits, headers_near_the_limit_are_answered_or_refused)
{
    static const size_t limit = 16384;
    size_t base = head_bytes("/lag", "X-Padding: \r\n");
    size_t edge = limit - base; /* the padding that makes the head limit bytes long */

    for (size_t n = 15000; n < 17000; n += 100)
        cr_expect_eq(padded_status(n), base + n <= limit ? 200 : 431, "%zu-byte head", base + n);
    for (size_t n = edge - 2; n <= edge + 2; n++)
        cr_expect_eq(padded_status(n), n <= edge ? 200 : 431, "%zu-byte head", base + n);
    expect_healthy();
}

Test(http_limits, many_small_headers_get_a_4xx)
{
    StrBuf sb = {0};
    int status;

    for (int i = 0; i < 4000; i++)
        strbuf_appendf(&sb, "X-H%d: v\r\n", i);
    status = request_status("/healthz", sb.buf);
    cr_expect(status >= 400 && status < 500, "status %d", status);
    strbuf_done(&sb);
    expect_healthy();
}

/* Each case: the bytes sent, and the answers allowed (0: closed without one, -1: none yet
 * after 3 s, the connection held until the idle timeout). */
typedef struct BadRequest {
    char bytes[160];
    int status[3];
    unsigned len; /* 0: up to the first NUL */
} BadRequest;

static struct BadRequest bad_requests[] = {
    {"\x01\x02\x03\xff\xfe garbage \x00\x7f\r\n\r\n", {400, 0, 0}, 20},
    /* A NUL ends the request line for libmicrohttpd: it waits for one. */
    {"\x00\xff GET / HTTP/9.9\r\n\r\n", {-1, 400, 0}, 21},
    {"GET /healthz\r\n\r\n", {400, 0, 0}, 0},
    {"GET\r\n\r\n", {400, 0, 0}, 0},
    {"GET /lag HTTP/9.9\r\nHost: x\r\n\r\n", {505, 400, 0}, 0},
    {"GET /healthz HTTP/1.1\r\n\r\n", {400, 200, 0}, 0}, /* HTTP/1.1 without Host */
    {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
     {413, 400, 200},
     0},
    {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\nabc",
     {200, 413, 400},
     0},
    {"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", {400, 0, 0}, 0},
    {"GET /wait?stream=orders&id=1-0&timeout_ms=100 HTTP/1.1\r\nHost: x\r\n"
     "Content-Length: 1000000000000\r\n\r\nabc",
     {408, 413, 400},
     0},
    {"GET /lag HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", {400, 200, 0}, 0},
    {"GET /lag HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", {400, 200, 0}, 0},
    {"GET /lag HTTP/1.1\r\nHost: x\r\n folded: continuation\r\n\r\n", {400, 200, 0}, 0},
    {"GET /%zz%00/../lag?%%=%&&=&stream HTTP/1.1\r\nHost: x\r\n\r\n", {404, 400, 0}, 0},
    {"GET /wait?stream=orders&id=1-0&stream=x&id=2-0&timeout_ms=50 HTTP/1.1\r\nHost: x\r\n\r\n",
     {408, 404, 400},
     0},
    /* Blank lines before a request line are allowed (RFC 9112, 2.2): still waiting. */
    {"\r\n\r\n\r\n", {-1, 400, 0}, 0},
    {"GET /lag HTTP/1.1\r\nHost: x\r\n", {-1, 400, 0}, 0}, /* ends before the headers do */
};

ParameterizedTestParameters(http_limits, malformed_request_is_answered_or_closed)
{
    return cr_make_param_array(BadRequest, bad_requests, ARRAY_SIZE(bad_requests));
}

ParameterizedTest(BadRequest *bad, http_limits, malformed_request_is_answered_or_closed)
{
    int status = raw_request(bad->bytes, bad->len ? bad->len : strlen(bad->bytes));

    cr_expect(status == bad->status[0] || status == bad->status[1] || status == bad->status[2],
              "\"%.60s\": answered %d", bad->bytes, status);
    expect_healthy();
}

/* ---- thousands of long-polls ---- */

enum { MANY_WAITERS = 2000, MANY_CHUNK = 250 };

static int many_fds[MANY_WAITERS];

static void start_wide_server(void)
{
    start_with((HttpOptions){.max_connections = MANY_WAITERS + 100, .max_waiters = MANY_WAITERS});
}

TestSuite(http_load, .fini = stop_server, .timeout = 120);

/* Opens n /wait long-polls on customers 500-0, in chunks so that the listen backlog never
 * overflows, each chunk registered before the next is sent. */
static void open_waiters(int n)
{
    for (int i = 0; i < n; i++) {
        many_fds[i] = http_send("GET", "/wait?stream=customers&id=500-0&readmodel=customers"
                                       "&timeout_ms=30000");
        if ((i + 1) % MANY_CHUNK == 0 || i + 1 == n)
            wait_pending((size_t)i + 1);
    }
}

Test(http_load, thousands_of_waiters_complete, .init = start_wide_server)
{
    BoardOutcome o = {.id = sid(500, 0), .outcome = BOARD_OUTCOME_APPLIED};
    long before, during, after;
    int ok = 0;

    raise_fd_limit(2 * MANY_WAITERS + 256);
    run_all();
    expect_healthy();
    before = rss_kib();
    open_waiters(MANY_WAITERS);
    during = rss_kib();
    /* Past the waiter limit: refused at once. */
    {
        Reply r = get("/wait?stream=customers&id=500-0&readmodel=customers&timeout_ms=30000");
        cr_expect_eq(r.status, 503, "%s", r.body);
        reply_done(&r);
    }
    board_committed(board, 2, 0, sid(500, 0), &o, 1);
    for (int i = 0; i < MANY_WAITERS; i++) {
        Reply r = http_recv(many_fds[i]);
        ok += r.status == 200;
        reply_done(&r);
    }
    cr_expect_eq(ok, MANY_WAITERS);
    cr_expect_eq(board_wait_pending(board), 0);
    expect_healthy();
    after = rss_kib();
    cr_log_info("VmRSS: %ld KiB before, %ld KiB with %d waiters, %ld KiB after", before, during,
                MANY_WAITERS, after);
    /* Both ends of every connection live in this process; 64 KiB each is generous. */
    cr_expect_lt(during - before, MANY_WAITERS * 64L, "grew %ld KiB", during - before);
    cr_expect_lt(after - before, MANY_WAITERS * 64L, "grew %ld KiB", after - before);
}

/* ---- slow clients, the header deadline and the reserve ---- */

enum { SLOW_CONNECTIONS = 64, SLOW_RESERVED = 8, SLOW_CLIENTS = 300 };

/* Clients that send one byte of a request head every TRICKLE_MS and never finish it, and
 * connect again whenever the server closes them, until until_ms. */
#define TRICKLE_MS 100
typedef struct Trickler {
    int n;
    int fds[SLOW_CLIENTS];
    int64_t until_ms;
    int reconnects;
} Trickler;

static int trickle_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    if (testenv_connect(fd, port, 1000) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Sends fd's next byte; false when the server has closed the connection. */
static bool trickle_byte(int fd)
{
    static const char head[] = "GET /lag HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_DONTWAIT);
    int sent;

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
        return false;
    /* The head first, then one more byte of a header value that never ends. */
    sent = (int)send(fd, head, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    return sent == 1 || errno == EAGAIN || errno == EWOULDBLOCK;
}

static void *trickle_main(void *arg)
{
    Trickler *t = arg;

    while (now_monotonic_ms() < t->until_ms) {
        for (int i = 0; i < t->n; i++) {
            if (t->fds[i] >= 0 && trickle_byte(t->fds[i]))
                continue;
            if (t->fds[i] >= 0) {
                close(t->fds[i]);
                t->reconnects++;
            }
            t->fds[i] = trickle_connect();
        }
        testenv_sleep_ms(TRICKLE_MS);
    }
    for (int i = 0; i < t->n; i++)
        if (t->fds[i] >= 0)
            close(t->fds[i]);
    return NULL;
}

static void trickle_start(Trickler *t, pthread_t *thread, int n, int ms)
{
    *t = (Trickler){.n = n, .until_ms = now_monotonic_ms() + ms};
    for (int i = 0; i < n; i++)
        t->fds[i] = trickle_connect();
    cr_assert_eq(pthread_create(thread, NULL, trickle_main, t), 0);
}

/* GET path on a new connection: the status, or -1 when no answer came within 1500 ms
 * (from the connect on); *ret_ms is how long it took. */
static int probe(const char *path, int64_t *ret_ms)
{
    struct timeval tv = {.tv_sec = 1, .tv_usec = 500000};
    int64_t start = now_monotonic_ms();
    int fd = http_connect(1500), status = -1;
    char *req = xasprintf("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);

    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        send_raw(fd, req, strlen(req));
        status = recv_status(fd);
    }
    free(req);
    *ret_ms = now_monotonic_ms() - start;
    return status == 0 ? -1 : status;
}

/* Probes path every 200 ms until t's clients stop; each must answer 200 within 1500 ms.
 * Returns the slowest answer. */
static int64_t probe_while_trickling(const Trickler *t, const char *path)
{
    int64_t worst = 0, ms;
    int probes = 0;

    testenv_sleep_ms(300); /* the slow clients hold every connection they can by now */
    while (now_monotonic_ms() + 1700 < t->until_ms) {
        int status = probe(path, &ms);
        cr_expect_eq(status, 200, "%s answered %d after %lld ms", path, status, (long long)ms);
        worst = ms > worst ? ms : worst;
        probes++;
        testenv_sleep_ms(200);
    }
    cr_expect_geq(probes, 3);
    return worst;
}

static long metric_value(const char *name)
{
    Reply r = get("/metrics");
    char *line = xasprintf("\n%s ", name);
    const char *at = strstr(r.body, line);
    long v = at ? atol(at + strlen(line)) : -1;

    free(line);
    reply_done(&r);
    return v;
}

static void start_slow_server(void)
{
    start_with((HttpOptions){.max_connections = SLOW_CONNECTIONS,
                             .reserved_connections = SLOW_RESERVED,
                             .header_timeout_ms = 2000});
}

TestSuite(http_slow, .fini = stop_server, .timeout = 60);

/* Before the reserve and the deadline, the first 64 slow clients held every connection for
 * as long as they trickled (libmicrohttpd's idle timeout restarts with every byte) and
 * /healthz waited behind them. */
Test(http_slow, slow_request_heads_do_not_stop_healthz, .init = start_slow_server)
{
    static Trickler t;
    pthread_t thread;
    int64_t worst;

    raise_fd_limit(2 * (SLOW_CLIENTS + SLOW_CONNECTIONS) + 256);
    run_all();
    trickle_start(&t, &thread, SLOW_CLIENTS, 3500);
    worst = probe_while_trickling(&t, "/healthz");
    pthread_join(thread, NULL);
    cr_log_info("%d slow clients on %d connections: /healthz answered within %lld ms; the "
                "server closed slow clients %d times",
                SLOW_CLIENTS, SLOW_CONNECTIONS, (long long)worst, t.reconnects);
    cr_expect_gt(t.reconnects, SLOW_CLIENTS - SLOW_CONNECTIONS, "%d", t.reconnects);
    cr_expect_gt(metric_value("projector_http_evictions_total"), 0);
}

static void start_deadline_server(void)
{
    start_with((HttpOptions){.max_connections = SLOW_CONNECTIONS, .header_timeout_ms = 500});
}

/* Milliseconds until the server closes fd, sending a byte of trickle every 50 ms; -1 when
 * it is still open after 3 s. */
static int64_t ms_until_closed(int fd, const char *trickle)
{
    int64_t start = now_monotonic_ms();
    char buf[4096];

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while (now_monotonic_ms() - start < 3000) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return now_monotonic_ms() - start;
        if (trickle && send(fd, trickle, 1, MSG_NOSIGNAL) < 0 && errno != EAGAIN)
            return now_monotonic_ms() - start;
        testenv_sleep_ms(50);
    }
    return -1;
}

/* A head that has not arrived within header_timeout_ms is closed however many bytes it
 * trickles; so is a keep-alive connection idle for as long. */
Test(http_slow, a_request_head_has_a_deadline, .init = start_deadline_server)
{
    static const char keep_alive[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    int fd = http_connect(2000);
    int64_t ms;
    char buf[256];

    send_raw(fd, "GET /lag HTTP/1.1\r\nHost: x\r\nX-Slow: ", 36);
    ms = ms_until_closed(fd, "a");
    close(fd);
    cr_expect(ms >= 450 && ms < 1500, "a trickling head was closed after %lld ms", (long long)ms);
    fd = http_connect(2000);
    send_raw(fd, keep_alive, sizeof(keep_alive) - 1);
    cr_assert_gt(recv(fd, buf, sizeof(buf), 0), 12);
    cr_expect(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    ms = ms_until_closed(fd, NULL);
    close(fd);
    cr_expect(ms >= 400 && ms < 1500, "an idle keep-alive connection was closed after %lld ms",
              (long long)ms);
    cr_expect_eq(metric_value("projector_http_header_timeouts_total"), 2);
}

static void start_waiter_server(void)
{
    /* max_waiters left to its default: what the connections leave beside the reserve. */
    start_with(
        (HttpOptions){.max_connections = SLOW_CONNECTIONS, .reserved_connections = SLOW_RESERVED});
}

/* As many long-polls as connections: before max_waiters had to fit under the connection
 * limit, they took every connection, and /healthz and /readyz no longer answered. */
Test(http_slow, long_polls_at_max_waiters_leave_healthz_and_readyz, .init = start_waiter_server)
{
    enum { WAITERS = SLOW_CONNECTIONS - 2 * SLOW_RESERVED };
    static int fds[SLOW_CONNECTIONS];
    static Trickler t;
    BoardOutcome o = {.id = sid(900, 0), .outcome = BOARD_OUTCOME_APPLIED};
    pthread_t thread;
    int refused = 0, answered = 0;
    int64_t ms;

    raise_fd_limit(2 * (SLOW_CLIENTS + SLOW_CONNECTIONS) + 256);
    run_all();
    for (int i = 0; i < SLOW_CONNECTIONS; i++)
        fds[i] = http_send("GET", "/wait?stream=customers&id=900-0&readmodel=customers"
                                  "&timeout_ms=20000");
    wait_pending(WAITERS);
    cr_expect_eq(probe("/healthz", &ms), 200, "/healthz beside %d waiters", WAITERS);
    cr_expect_eq(probe("/readyz", &ms), 200, "/readyz beside %d waiters", WAITERS);
    /* Waiters and slow clients together. */
    trickle_start(&t, &thread, SLOW_CLIENTS / 3, 3500);
    cr_expect_lt(probe_while_trickling(&t, "/readyz"), 1500);
    pthread_join(thread, NULL);
    board_committed(board, 2, 0, sid(900, 0), &o, 1);
    for (int i = 0; i < SLOW_CONNECTIONS; i++) {
        Reply r = http_recv(fds[i]);
        refused += r.status == 503;
        answered += r.status == 200;
        reply_done(&r);
    }
    cr_expect_eq(answered, WAITERS);
    cr_expect_eq(refused, SLOW_CONNECTIONS - WAITERS);
}

/* ---- every request under max_request_bytes is answered ---- */

/* /lag with a query of n parameters, each fmt formatted with its number (fmt may leave it
 * out), joined by '&'. */
static char *query_of(int n, const char *fmt)
{
    StrBuf sb = {0};

    strbuf_append(&sb, "/lag?");
    for (int i = 0; i < n; i++) {
        strbuf_append(&sb, i ? "&" : "");
        strbuf_appendf(&sb, fmt, i);
    }
    return strbuf_take(&sb);
}

/* Before the pool was sized for the parsed parameters, a 2 KB query of 300 parameters got
 * no answer at all: libmicrohttpd ran out of memory parsing it and stalled. */
Test(http_limits, a_query_of_300_parameters_is_answered)
{
    char *path = query_of(300, "p%d=v");
    int status;

    cr_assert_lt(strlen(path), 2600);
    status = request_status(path, "");
    cr_expect_eq(status, 200, "%zu-byte query of 300 parameters: %d", strlen(path), status);
    free(path);
    expect_healthy();
}

/* Requests of every shape under and over the 16384-byte default: under it, answered (200,
 * or 414/431 when it has more fields than max_request_bytes / 32); over it, 414 or 431. */
Test(http_limits, every_request_under_the_limit_is_answered)
{
    static const struct {
        int params;
        const char *fmt;
        int status; /* 0: 414 or 431, whichever the size says */
    } queries[] = {
        {500, "p%d=v", 200},        /* 500 fields with the headers: within 512 */
        {600, "p%d=v", 414},        /* more than 512 parameters */
        {5000, "x", 414},           /* 10 KB of "x&x&...": 5000 parameters */
        {1200, "param%d=value", 0}, /* over 16384 bytes */
    };
    static const struct {
        int count, status;
    } header_fields[] = {{400, 200}, {540, 431}, {2000, 431}};

    for (size_t i = 0; i < ARRAY_SIZE(queries); i++) {
        char *path = query_of(queries[i].params, queries[i].fmt);
        int status = request_status(path, "");
        int want = queries[i].status ? queries[i].status : 414;

        cr_expect_eq(status, want, "%d parameters, %zu bytes: %d", queries[i].params, strlen(path),
                     status);
        free(path);
    }
    /* Header fields: within 512, past it (refused here), far past it (by libmicrohttpd). */
    for (size_t i = 0; i < ARRAY_SIZE(header_fields); i++) {
        StrBuf sb = {0};
        for (int f = 0; f < header_fields[i].count; f++)
            strbuf_appendf(&sb, "H%d:\r\n", f);
        cr_assert_lt(sb.len, 16000);
        cr_expect_eq(request_status("/lag", sb.buf), header_fields[i].status, "%d header fields",
                     header_fields[i].count);
        strbuf_done(&sb);
    }
    cr_expect_eq(metric_value("projector_http_requests_too_large_total"), 4);
    expect_healthy();
}

/* ---- keep-alive and pipelining ---- */

/* Reads until the server closes fd (or 5 s pass) and closes it; the statuses of the
 * responses in order, -1 after the last. */
static int read_statuses(int fd, int *statuses, int max)
{
    struct timeval tv = {.tv_sec = 5};
    StrBuf sb = {0};
    char buf[65536];
    ssize_t n;
    int count = 0;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    strbuf_append(&sb, "");
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            strbuf_appendn(&sb, buf, (size_t)n);
    close(fd);
    /* No body here holds "HTTP/1.1 ": each one begins a response. */
    for (const char *p = sb.buf; (p = strstr(p, "HTTP/1.1 ")) != NULL && count < max; p += 9)
        statuses[count++] = atoi(p + 9);
    strbuf_done(&sb);
    return count;
}

/* Before, an answer given at once made libmicrohttpd close the connection after it: 101
 * pipelined requests got one answer. */
Test(http, pipelined_requests_get_every_answer)
{
    enum { N = 101 };
    static const char one[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char *const mixed[] = {
        "GET /lag HTTP/1.1\r\nHost: x\r\n\r\n",
        "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /wait?stream=orders&id=1-0&timeout_ms=0 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /lag HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    };
    static const int want[] = {200, 200, 408, 404, 405, 503};
    int statuses[N + 1], fd, count, ok = 0;
    StrBuf sb = {0};

    for (int i = 0; i < N - 1; i++)
        strbuf_append(&sb, one);
    strbuf_append(&sb, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    fd = http_connect(2000);
    send_raw(fd, sb.buf, sb.len);
    count = read_statuses(fd, statuses, N + 1);
    for (int i = 0; i < count; i++)
        ok += statuses[i] == 200;
    cr_expect_eq(count, N, "%d answers to %d pipelined requests", count, N);
    cr_expect_eq(ok, N);
    strbuf_reset(&sb);
    for (size_t i = 0; i < ARRAY_SIZE(mixed); i++)
        strbuf_append(&sb, mixed[i]);
    fd = http_connect(2000);
    send_raw(fd, sb.buf, sb.len);
    count = read_statuses(fd, statuses, N + 1);
    cr_expect_eq(count, (int)ARRAY_SIZE(want));
    for (int i = 0; i < count && i < (int)ARRAY_SIZE(want); i++)
        cr_expect_eq(statuses[i], want[i], "answer %d", i);
    strbuf_done(&sb);
}

/* A client that says it sends nothing more right after its requests (shutdown for
 * writing, as `nc -N` and many scripts do) gets every answer and then the end of the
 * connection at once, not at the head deadline: libmicrohttpd 0.9.75 alone would miss
 * that end when it comes with the requests. */
Test(http, a_client_that_ends_its_input_gets_its_answers_and_the_close)
{
#define ONE_REQUEST "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    static const char *const sends[] = {ONE_REQUEST, ONE_REQUEST
                                        "GET /lag HTTP/1.1\r\nHost: x\r\n\r\n" ONE_REQUEST};
    int statuses[4];

    for (int round = 0; round < 6; round++) {
        const char *bytes = sends[round % 2];
        int fd = http_connect(2000);
        int64_t start = now_monotonic_ms(), ms;
        int count;

        send_raw(fd, bytes, strlen(bytes));
        shutdown(fd, SHUT_WR);
        count = read_statuses(fd, statuses, 4);
        ms = now_monotonic_ms() - start;
        cr_expect_eq(count, round % 2 ? 3 : 1, "round %d", round);
        cr_expect_lt(ms, 1000, "round %d: closed after %lld ms", round, (long long)ms);
    }
#undef ONE_REQUEST
}

/* ---- the log ---- */

/* This process's stderr, where the log goes, sent to a file until log_capture_end. */
typedef struct LogCapture {
    int saved;
    char path[32];
} LogCapture;

static void log_capture_begin(LogCapture *lc)
{
    int fd;

    snprintf(lc->path, sizeof(lc->path), "/tmp/pj_http_log_XXXXXX");
    fd = mkstemp(lc->path);
    cr_assert_geq(fd, 0);
    fflush(stderr);
    lc->saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

/* What was logged meanwhile (caller frees). */
static char *log_capture_end(LogCapture *lc)
{
    FILE *f;
    StrBuf sb = {0};
    char buf[4096];
    size_t n;

    fflush(stderr);
    dup2(lc->saved, STDERR_FILENO);
    close(lc->saved);
    f = fopen(lc->path, "r");
    cr_assert_not_null(f);
    strbuf_append(&sb, "");
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        strbuf_appendn(&sb, buf, n);
    fclose(f);
    unlink(lc->path);
    return strbuf_take(&sb);
}

/* Before, each client that hung up in the middle of its request wrote a warning. */
Test(http, a_client_hanging_up_is_logged_at_debug)
{
    static const char *const partial[] = {
        "GET /lag HTTP/1.1\r\nHost: x\r\n",
        "GET /metr",
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    LogCapture lc;
    char *logged;

    log_set_level(LOG_DEBUG);
    log_capture_begin(&lc);
    for (int i = 0; i < 60; i++) {
        int fd = http_connect(2000);
        const char *bytes = partial[i % ARRAY_SIZE(partial)];
        send_raw(fd, bytes, strlen(bytes));
        testenv_sleep_ms(2);
        if (i % 2)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
        close(fd);
    }
    expect_healthy();
    testenv_sleep_ms(200);
    logged = log_capture_end(&lc);
    cr_expect(strstr(logged, "level=warn ") == NULL, "%s", logged);
    cr_expect(strstr(logged, "level=debug component=http msg=") != NULL,
              "nothing logged at debug:\n%s", logged);
    free(logged);
}

#define LISTEN_TOKEN "Zx9-kQ2.r7_Lm4~pT8+vW1/aB6="

/* What http_start on address, with token (NULL for none), logs. */
static char *start_logs(const char *address, const char *token)
{
    Board *b = board_new(board_models_fixture());
    HttpOptions opts = {.listen = address, .token = token};
    PjError err = {0};
    LogCapture lc;
    Http *h = NULL;
    char *logged;

    log_capture_begin(&lc);
    cr_assert_eq(http_start(&opts, b, &h, &err), 0, "%s", err.message);
    logged = log_capture_end(&lc);
    h = http_stop(h);
    board_free(b);
    return logged;
}

Test(http_listen, warns_when_reachable_beyond_loopback_without_a_token)
{
    static const char *const quiet[][2] = {
        {"127.0.0.1:0", NULL}, {"127.0.0.2:0", NULL}, {":0", LISTEN_TOKEN}};
    char *logged = start_logs(":0", NULL);

    cr_expect(strstr(logged,
                     "level=warn component=http msg=\"listening on \\\":0\\\", which is not "
                     "a loopback address, without a token") != NULL,
              "%s", logged);
    free(logged);
    for (size_t i = 0; i < ARRAY_SIZE(quiet); i++) {
        logged = start_logs(quiet[i][0], quiet[i][1]);
        cr_expect(strstr(logged, "loopback") == NULL, "%s: %s", quiet[i][0], logged);
        free(logged);
    }
}

Test(http_listen, refuses_options_that_do_not_fit)
{
    static const struct {
        HttpOptions opts;
        const char *error;
    } cases[] = {
        {{.max_connections = 64, .max_waiters = 56},
         "max_waiters (56) must be below max_connections (64) minus reserved_connections (8)"},
        {{.max_connections = 64, .reserved_connections = 64},
         "reserved_connections (64) must be below max_connections (64)"},
        {{.token = "short-token"}, "the token is shorter than 16 characters"},
    };
    Board *b = board_new(board_models_fixture());

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        HttpOptions opts = cases[i].opts;
        PjError err = {0};
        Http *h = NULL;
        opts.listen = "127.0.0.1:0";
        cr_expect_eq(http_start(&opts, b, &h, &err), -PJ_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.message, cases[i].error);
        cr_expect_null(h);
        h = http_stop(h);
    }
    board_free(b);
}

/* ---- configuration ---- */

/* Loads text as projector.yaml; returns the errors as "line:col: message" lines (caller
 * frees; "" when it loads) and frees the config. */
static char *config_errors(const char *text, Config **ret)
{
    char path[] = "/tmp/pj_http_config_XXXXXX";
    int fd = mkstemp(path);
    Diagnostics d = {0};
    StrBuf sb = {0};
    Config *cfg = NULL;
    int rc;

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    rc = config_load(path, false, NULL, &cfg, &d);
    unlink(path);
    strbuf_append(&sb, "");
    for (size_t i = 0; i < d.count; i++)
        strbuf_appendf(&sb, "%d:%d: %s\n", d.items[i].line, d.items[i].column, d.items[i].message);
    cr_assert_eq(rc<0, d.count> 0);
    diag_done(&d);
    if (ret)
        *ret = cfg;
    else
        config_free(cfg);
    return strbuf_take(&sb);
}

Test(http_config, defaults_fit_together)
{
    Config *cfg;
    char *errs = config_errors("", &cfg);

    cr_assert_str_empty(errs);
    cr_expect_eq(cfg->http_max_connections, 1024);
    cr_expect_eq(cfg->http_reserved_connections, 64);
    cr_expect_eq(cfg->http_max_waiters, 896);
    cr_expect_eq(cfg->http_header_timeout_ms, 5000);
    cr_expect_eq(cfg->http_max_request_bytes, 16384);
    free(errs);
    config_free(cfg);
}

Test(http_config, max_waiters_must_leave_the_reserve_free)
{
    static const struct {
        const char *text, *error;
    } cases[] = {
        {"http:\n  max_connections: 1024\n  max_waiters: 10000\n",
         "3:16: \"max_waiters\" (10000) must be below \"max_connections\" (1024) minus "
         "\"reserved_connections\" (64), so at most 959: the reserved connections keep /healthz "
         "and /readyz answering while every waiter waits\n"},
        {"http:\n  max_waiters: 960\n", "2:16: \"max_waiters\" (960) must be below"},
        {"http:\n  max_connections: 200\n", "2:20: \"max_waiters\" (896) must be below "
                                            "\"max_connections\" (200) minus "
                                            "\"reserved_connections\" (64), so at most 135"},
        {"http:\n  max_connections: 100\n  reserved_connections: 100\n",
         "3:25: \"reserved_connections\" (100) must be below \"max_connections\" (100)\n"},
        {"http:\n  header_timeout_ms: 50\n",
         "2:22: invalid value \"50\" for \"header_timeout_ms\": must be 100..600000\n"},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *errs = config_errors(cases[i].text, NULL);
        cr_expect(strstr(errs, cases[i].error) != NULL, "case %zu: %s", i, errs);
        free(errs);
    }
    cr_expect_str_empty(config_errors("http:\n  max_waiters: 959\n", NULL));
    cr_expect_str_empty(config_errors("http:\n  max_connections: 200\n  max_waiters: 135\n"
                                      "  reserved_connections: 64\n",
                                      NULL));
}

Test(http_config, a_short_token_is_refused_without_being_echoed)
{
    char *errs = config_errors("http:\n  token: '${PJ_HTTP_SHORT_TOKEN}'\n", NULL);

    cr_expect(strstr(errs, "environment variable") != NULL, "%s", errs);
    free(errs);
    setenv("PJ_HTTP_SHORT_TOKEN", "Qm4-z8Kd2Lp0xW7", 1); /* 15 characters */
    errs = config_errors("http:\n  token: '${PJ_HTTP_SHORT_TOKEN}'\n", NULL);
    cr_expect_str_eq(errs, "2:10: invalid value for \"token\": expected at least 16 characters "
                           "(a shorter token can be guessed)\n");
    free(errs);
    errs = config_errors("http:\n  token: Qm4-z8Kd2Lp0xW7\n", NULL);
    cr_expect(strstr(errs, "2:10: invalid value for \"token\": expected at least 16") != NULL, "%s",
              errs);
    cr_expect(strstr(errs, "Qm4") == NULL, "the error repeats the token: %s", errs);
    free(errs);
    setenv("PJ_HTTP_SHORT_TOKEN", "Qm4-z8Kd2Lp0xW7a", 1); /* 16 */
    errs = config_errors("http:\n  token: '${PJ_HTTP_SHORT_TOKEN}'\n", NULL);
    cr_expect_str_empty(errs);
    free(errs);
    unsetenv("PJ_HTTP_SHORT_TOKEN");
}
