/* test_http.c - the HTTP endpoints over real sockets, against a lag board built by hand:
 * /healthz, /readyz, /lag, /metrics, every /wait answer (200, 400, 404, 408, 503), the
 * timing of a wake-up, 300 concurrent waiters, shutdown, and listen address errors.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "lag.h"
#include "metrics.h"
#include "wait.h"

static char name_orders[] = "orders", name_stats[] = "customer_stats",
            name_customers[] = "customers";
static char stream_orders[] = "orders", stream_customers[] = "customers";
static char *orders_streams[] = {stream_orders, stream_customers};
static char *stats_streams[] = {stream_orders};
static char *customers_streams[] = {stream_customers};
static Model models[] = {
    {.name = name_orders, .streams = orders_streams, .nstreams = 2},
    {.name = name_stats, .streams = stats_streams, .nstreams = 1},
    {.name = name_customers, .streams = customers_streams, .nstreams = 1},
};
static const ModelSet set = {.models = models, .count = 3};

static LagBoard *board;
static Http *http;
static unsigned port;

static void start_server(void)
{
    HttpOptions opts = {.listen = "127.0.0.1:0",
                        .max_connections = 1000,
                        .wait_timeout_default_ms = 5000,
                        .wait_timeout_max_ms = 30000};
    PjError err = {0};

    board = lag_board_new(&set);
    cr_assert_eq(http_start(&opts, board, &http, &err), 0, "%s", err.message);
    port = http_port(http);
    cr_assert_neq(port, 0);
}

static void stop_server(void)
{
    http = http_stop(http);
    board = lag_board_free(board);
}

TestSuite(http, .init = start_server, .fini = stop_server, .timeout = 60);

/* ---- a small HTTP/1.1 client ---- */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Sends one request with Connection: close; returns the socket. */
static int http_send(const char *method, const char *path)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 20};
    char req[1024];
    int fd = socket(AF_INET, SOCK_STREAM, 0), n;

    cr_assert_geq(fd, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                 method, path);
    cr_assert_eq(write(fd, req, (size_t)n), n);
    return fd;
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

    while ((n = read(fd, buf, sizeof(buf))) > 0)
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
    for (size_t i = 0; i < set.count; i++) {
        lag_set_state(board, i, RM_STATE_RUNNING, NULL);
        lag_polled(board, i);
    }
}

static void wait_pending(size_t n)
{
    int64_t deadline = now_monotonic_ms() + 10000;

    while (lag_wait_pending(board) < n && now_monotonic_ms() < deadline)
        sleep_ms(2);
    cr_assert_eq(lag_wait_pending(board), n);
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
    EntryOutcome o = {.id = sid(5, 0), .outcome = OUTCOME_APPLIED};
    LagSample s = {.has_last_entry = true,
                   .last_entry = sid(9, 0),
                   .entries_behind = 4,
                   .oldest_unapplied_ms = now_wall_ms() - 3000};
    Reply r;
    json_t *st;

    run_all();
    lag_sampled(board, 0, 0, &s);
    lag_committed(board, 0, 0, sid(5, 0), &o, 1);
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
    EntryOutcome o[3] = {{.id = sid(1, 0), .outcome = OUTCOME_APPLIED},
                         {.id = sid(2, 0), .outcome = OUTCOME_SKIPPED},
                         {.id = sid(3, 0), .outcome = OUTCOME_DEAD_LETTERED, .error = "bad"}};
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

    lag_set_state(board, 0, RM_STATE_RUNNING, NULL);
    lag_polled(board, 0);
    lag_committed(board, 0, 0, sid(3, 0), o, 3);
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
    EntryOutcome outcome[2];
    StreamId position;
    int64_t committed_at_ms;
} Committer;

static void *commit_later(void *arg)
{
    Committer *c = arg;

    sleep_ms(c->delay_ms);
    c->committed_at_ms = now_monotonic_ms();
    for (size_t i = 0; i < c->n; i++)
        lag_committed(board, c->rm[i], c->stream[i], c->position, &c->outcome[i], 1);
    return NULL;
}

Test(http, wait_returns_as_soon_as_every_read_model_settled)
{
    Committer c = {
        .delay_ms = 150,
        .rm = {0, 1},
        .stream = {0, 0},
        .n = 2,
        .outcome = {{.id = sid(42, 7), .outcome = OUTCOME_APPLIED},
                    {.id = sid(42, 7),
                     .outcome = OUTCOME_DEAD_LETTERED,
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
    cr_expect_eq(lag_wait_pending(board), 0);
}

Test(http, wait_for_one_read_model_reports_skipped)
{
    Committer c = {
        .delay_ms = 100,
        .rm = {2},
        .stream = {0},
        .n = 1,
        .outcome = {{.id = sid(8, 0), .outcome = OUTCOME_SKIPPED}},
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
    EntryOutcome o[2] = {{.id = sid(10, 0), .outcome = OUTCOME_APPLIED},
                         {.id = sid(11, 0), .outcome = OUTCOME_SKIPPED}};
    int64_t start;
    Reply r;

    lag_committed(board, 0, 0, sid(11, 0), o, 2);
    lag_committed(board, 1, 0, sid(11, 0), o, 2);
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
    EntryOutcome o = {.id = sid(3, 0), .outcome = OUTCOME_APPLIED};
    LagSample s = {.has_last_entry = true,
                   .last_entry = sid(20, 0),
                   .entries_behind = 7,
                   .oldest_unapplied_ms = now_wall_ms() - 2000};
    int64_t start, elapsed;
    Reply r;

    run_all();
    lag_sampled(board, 0, 0, &s);
    lag_committed(board, 0, 0, sid(3, 0), &o, 1);
    lag_set_state(board, 1, RM_STATE_RETRYING, "could not connect to PostgreSQL");
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
    cr_expect_eq(lag_wait_pending(board), 0);
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
    EntryOutcome o = {.id = sid(5, 0), .outcome = OUTCOME_APPLIED};
    Reply r;

    wait_pending(1);
    lag_committed(board, 0, 1, sid(5, 0), &o, 1);
    lag_committed(board, 2, 0, sid(5, 0), &o, 1);
    r = http_recv(fd);
    cr_expect_eq(r.status, 200, "%s", r.body);
    reply_done(&r);
}

Test(http, stopped_read_model_answers_503_at_once)
{
    int64_t start;
    Reply r;

    run_all();
    lag_set_state(board, 1, RM_STATE_STOPPED, "table \"customer_stats\" differs from the YAML");
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
    lag_set_state(board, 2, RM_STATE_STOPPED, "permission denied for table");
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
    EntryOutcome o = {.id = sid(77, 0), .outcome = OUTCOME_APPLIED};
    int64_t committed;

    for (int i = 0; i < N; i++)
        fds[i] = http_send("GET", "/wait?stream=customers&id=77-0&readmodel=customers"
                                  "&timeout_ms=20000");
    wait_pending(N);
    committed = now_monotonic_ms();
    lag_committed(board, 2, 0, sid(77, 0), &o, 1);
    for (int i = 0; i < N; i++) {
        Reply r = http_recv(fds[i]);
        cr_expect_eq(r.status, 200, "waiter %d: %s", i, r.body);
        cr_expect_str_eq(rm_str(&r, 0, "outcome"), "applied");
        reply_done(&r);
    }
    cr_expect_lt(now_monotonic_ms() - committed, 3000);
    cr_expect_eq(lag_wait_pending(board), 0);
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
    cr_expect_eq(lag_wait_pending(board), 0);
}

/* ---- listen addresses ---- */

Test(http_listen, rejects_malformed_addresses)
{
    static const char *const bad[] = {
        "",         "8080",      "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
        "::1:8080", "[::1]8080", "[]:80",     "host:80a"};
    LagBoard *b = lag_board_new(&set);

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        HttpOptions opts = {.listen = bad[i]};
        PjError err = {0};
        Http *h = NULL;
        cr_expect_eq(http_start(&opts, b, &h, &err), -PJ_EINVAL, "\"%s\"", bad[i]);
        cr_expect(strstr(err.message, "invalid listen address") != NULL, "%s", err.message);
        cr_expect_null(h);
    }
    lag_board_free(b);
}

Test(http_listen, accepts_every_form_and_reports_busy_ports)
{
    LagBoard *b = lag_board_new(&set);
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
    lag_board_free(b);
}
