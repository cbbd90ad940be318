/* test_board.c - the progress board without servers: derived states, lag seconds, counters and
 * rates, monotonic positions, board_wait_position across threads, stale polls, and the
 * /wait waiter registry (ring outcomes, stop, timer, shutdown).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "board/board.h"
#include "board_models.h"
#include "os/now.h"

static Board *board;

static void setup(void)
{
    board = board_new(board_models_fixture());
}

static void teardown(void)
{
    board = board_free(board);
}

TestSuite(board, .init = setup, .fini = teardown);

static StreamId sid(uint64_t ms, uint64_t seq)
{
    return (StreamId){ms, seq};
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void run_all(void)
{
    for (size_t i = 0; i < board_models_fixture()->count; i++) {
        board_set_state(board, i, BOARD_STATE_RUNNING, NULL);
        board_polled(board, i);
    }
}

static void sample(size_t rm, size_t stream, uint64_t last_ms, uint64_t behind, int64_t oldest)
{
    StreamBacklog s = {.has_last_entry = true,
                       .last_entry = sid(last_ms, 0),
                       .entries_behind = behind,
                       .oldest_unapplied_ms = oldest};
    board_sampled(board, rm, stream, &s);
}

/* The state of read model rm as /lag shows it (a copy). */
static char *state_of(size_t rm)
{
    json_t *doc = board_json(board, (int)rm);
    char *s = strdup(json_string_value(json_object_get(doc, "state")));
    json_decref(doc);
    return s;
}

static json_t *stream_doc(size_t rm, size_t stream)
{
    json_t *doc = board_json(board, (int)rm);
    json_t *s = json_incref(json_array_get(json_object_get(doc, "streams"), stream));
    json_decref(doc);
    return s;
}

static void expect_state(size_t rm, const char *want)
{
    char *got = state_of(rm);
    cr_expect_str_eq(got, want, "read model %zu", rm);
    free(got);
}

Test(board, starts_in_starting_and_not_ready)
{
    json_t *doc = board_json(board, -1);
    json_t *rms = json_object_get(doc, "readmodels");

    cr_assert_eq(json_array_size(rms), 3);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(rms, 1), "name")),
                     "customer_stats");
    cr_expect(json_is_null(json_object_get(json_array_get(rms, 0), "last_poll_at")));
    json_decref(doc);
    expect_state(0, "starting");
    cr_expect_not(board_ready(board));
    run_all();
    expect_state(0, "running");
    cr_expect(board_ready(board));
}

Test(board, derives_states)
{
    static const struct {
        BoardState fault;
        const char *reason;
        uint64_t behind;
        const char *want;
        bool ready;
    } cases[] = {
        {BOARD_STATE_RUNNING, NULL, 0, "running", true},
        {BOARD_STATE_RUNNING, NULL, 4, "catching_up", true},
        {BOARD_STATE_CATCHING_UP, NULL, 0, "running", true},
        {BOARD_STATE_RETRYING, "could not connect to Redis", 4, "retrying", false},
        {BOARD_STATE_STOPPED, "table \"t\" differs", 0, "stopped", false},
        {BOARD_STATE_REBUILDING, "rebuild requested", 4, "rebuilding", true},
        {BOARD_STATE_STARTING, NULL, 0, "starting", false},
    };

    run_all();
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        board_set_state(board, 1, cases[i].fault, cases[i].reason);
        sample(1, 0, 100, cases[i].behind, cases[i].behind ? 50 : -1);
        json_t *doc = board_json(board, 1);
        cr_expect_str_eq(json_string_value(json_object_get(doc, "state")), cases[i].want,
                         "case %zu", i);
        if (cases[i].reason)
            cr_expect_str_eq(json_string_value(json_object_get(doc, "reason")), cases[i].reason);
        else
            cr_expect(json_is_null(json_object_get(doc, "reason")), "case %zu", i);
        cr_expect_eq(board_ready(board), cases[i].ready, "case %zu", i);
        json_decref(doc);
    }
}

Test(board, reports_lag_seconds_from_the_oldest_unapplied_entry)
{
    int64_t now = now_wall_ms();
    json_t *s;

    run_all();
    sample(0, 1, (uint64_t)now, 2, now - 5000);
    s = stream_doc(0, 1);
    cr_expect(json_real_value(json_object_get(s, "lag_seconds")) >= 4.9);
    cr_expect(json_real_value(json_object_get(s, "lag_seconds")) < 7.0);
    cr_expect_eq(json_integer_value(json_object_get(s, "entries_behind")), 2);
    json_decref(s);

    /* An entry stamped in the future (clock skew) never makes the lag negative. */
    sample(0, 1, (uint64_t)now + 60000, 1, now + 60000);
    s = stream_doc(0, 1);
    cr_expect_eq(json_real_value(json_object_get(s, "lag_seconds")), 0.0);
    json_decref(s);

    /* Caught up: 0 whatever the timestamp says. */
    sample(0, 1, (uint64_t)now, 0, now - 5000);
    s = stream_doc(0, 1);
    cr_expect_eq(json_real_value(json_object_get(s, "lag_seconds")), 0.0);
    json_decref(s);
}

Test(board, counts_outcomes_and_rates)
{
    BoardOutcome out[60];
    json_t *s;

    run_all();
    for (size_t i = 0; i < ARRAY_SIZE(out); i++) {
        BoardOutcomeKind k = i < 50   ? BOARD_OUTCOME_APPLIED
                             : i < 57 ? BOARD_OUTCOME_SKIPPED
                                      : BOARD_OUTCOME_DEAD_LETTERED;
        out[i] = (BoardOutcome){.id = sid(1000 + i, 0), .outcome = k, .error = "bad"};
    }
    board_set_dead_letters(board, 0, 0, 4);
    board_committed(board, 0, 0, sid(1059, 0), out, ARRAY_SIZE(out));
    s = stream_doc(0, 0);
    cr_expect_eq(json_integer_value(json_object_get(s, "applied")), 50);
    cr_expect_eq(json_integer_value(json_object_get(s, "skipped")), 7);
    cr_expect_eq(json_integer_value(json_object_get(s, "dead_letters")), 4 + 3); /* open */
    cr_expect_eq(json_integer_value(json_object_get(s, "dead_lettered")), 3);    /* by us */
    /* 50 applied within the 10-second window. */
    cr_expect_float_eq(json_real_value(json_object_get(s, "events_per_second")), 5.0, 1e-9);
    cr_expect_str_eq(json_string_value(json_object_get(s, "last_applied_id")), "1059-0");
    json_decref(s);
    /* a retry elsewhere empties the table: the open count follows, the counter does not */
    board_set_dead_letters(board, 0, 0, 0);
    s = stream_doc(0, 0);
    cr_expect_eq(json_integer_value(json_object_get(s, "dead_letters")), 0);
    cr_expect_eq(json_integer_value(json_object_get(s, "dead_lettered")), 3);
    json_decref(s);
    s = stream_doc(0, 1);
    cr_expect_eq(json_real_value(json_object_get(s, "events_per_second")), 0.0);
    json_decref(s);
}

Test(board, unknown_positions_are_null)
{
    json_t *s = stream_doc(2, 0);

    cr_expect(json_is_null(json_object_get(s, "last_entry_id")));
    cr_expect(json_is_null(json_object_get(s, "last_applied_id")));
    json_decref(s);

    /* The checkpoint loaded at start sets the position without counting anything. */
    board_committed(board, 2, 0, sid(7, 3), NULL, 0);
    s = stream_doc(2, 0);
    cr_expect_str_eq(json_string_value(json_object_get(s, "last_applied_id")), "7-3");
    cr_expect_eq(json_integer_value(json_object_get(s, "applied")), 0);
    json_decref(s);
}

Test(board, commit_reduces_entries_behind)
{
    BoardOutcome out[4];
    json_t *s;

    run_all();
    sample(1, 0, 100, 10, 1);
    for (size_t i = 0; i < 4; i++)
        out[i] = (BoardOutcome){.id = sid(2 + i, 0), .outcome = BOARD_OUTCOME_APPLIED};
    board_committed(board, 1, 0, sid(5, 0), out, 4);
    s = stream_doc(1, 0);
    cr_expect_eq(json_integer_value(json_object_get(s, "entries_behind")), 6);
    json_decref(s);
    expect_state(1, "catching_up");

    /* More outcomes than were known to be behind: saturates at 0. */
    BoardOutcome more[8];
    for (size_t i = 0; i < 8; i++)
        more[i] = (BoardOutcome){.id = sid(10 + i, 0), .outcome = BOARD_OUTCOME_APPLIED};
    board_committed(board, 1, 0, sid(17, 0), more, 8);
    s = stream_doc(1, 0);
    cr_expect_eq(json_integer_value(json_object_get(s, "entries_behind")), 0);
    json_decref(s);

    /* Reaching the last entry seen clears the lag whatever the count said. */
    sample(1, 0, 100, 50, 1);
    board_committed(board, 1, 0, sid(100, 0), NULL, 0);
    s = stream_doc(1, 0);
    cr_expect_eq(json_integer_value(json_object_get(s, "entries_behind")), 0);
    json_decref(s);
    expect_state(1, "running");
}

#ifndef NDEBUG
Test(board, position_never_goes_back, .signal = SIGABRT)
{
    board_committed(board, 0, 0, sid(10, 0), NULL, 0);
    board_committed(board, 0, 0, sid(10, 0), NULL, 0); /* the same position is fine */
    board_committed(board, 0, 0, sid(9, 5), NULL, 0);
}
#endif

typedef struct DelayedCommit {
    int delay_ms;
    size_t rm, stream;
    StreamId position;
} DelayedCommit;

static void *commit_later(void *arg)
{
    DelayedCommit *dc = arg;
    BoardOutcome o = {.id = dc->position, .outcome = BOARD_OUTCOME_APPLIED};

    sleep_ms(dc->delay_ms);
    board_committed(board, dc->rm, dc->stream, dc->position, &o, 1);
    return NULL;
}

Test(board, wait_position_is_woken_by_a_commit)
{
    DelayedCommit dc = {.delay_ms = 80, .rm = 0, .stream = 1, .position = sid(50, 1)};
    pthread_t t;
    int64_t start = now_monotonic_ms(), elapsed;

    pthread_create(&t, NULL, commit_later, &dc);
    cr_assert_eq(board_wait_position(board, 0, 1, sid(50, 1), 5000), 0);
    elapsed = now_monotonic_ms() - start;
    pthread_join(t, NULL);
    cr_expect_geq(elapsed, 70);
    cr_expect_lt(elapsed, 1000, "woke after %lld ms", (long long)elapsed);

    /* Already reached: returns at once, even with no time to wait. */
    cr_expect_eq(board_wait_position(board, 0, 1, sid(50, 0), 0), 0);
}

Test(board, wait_position_times_out)
{
    int64_t start = now_monotonic_ms(), elapsed;

    board_committed(board, 0, 0, sid(5, 0), NULL, 0);
    cr_assert_eq(board_wait_position(board, 0, 0, sid(6, 0), 120), -PJ_ETIMEDOUT);
    elapsed = now_monotonic_ms() - start;
    cr_expect_geq(elapsed, 115);
    cr_expect_lt(elapsed, 1000);
    cr_expect_eq(board_wait_position(board, 0, 0, sid(6, 0), 0), -PJ_ETIMEDOUT);
}

static void *shutdown_later(void *arg)
{
    (void)arg;
    sleep_ms(50);
    board_shutdown(board);
    return NULL;
}

Test(board, shutdown_wakes_wait_position)
{
    pthread_t t;

    pthread_create(&t, NULL, shutdown_later, NULL);
    cr_expect_eq(board_wait_position(board, 1, 0, sid(1, 0), 10000), -PJ_ESTOPPED);
    pthread_join(t, NULL);
}

Test(board, reports_a_worker_that_stopped_polling)
{
    json_t *doc;

    board_set_stale_poll_ms(board, 60);
    run_all();
    expect_state(2, "running");
    sleep_ms(150);
    doc = board_json(board, 2);
    cr_expect_str_eq(json_string_value(json_object_get(doc, "state")), "retrying");
    cr_expect(strncmp(json_string_value(json_object_get(doc, "reason")),
                      "worker has not polled for ", 26) == 0,
              "reason: %s", json_string_value(json_object_get(doc, "reason")));
    cr_expect_geq(json_integer_value(json_object_get(doc, "last_poll_age_ms")), 140);
    cr_expect(json_is_string(json_object_get(doc, "last_poll_at")));
    json_decref(doc);
    cr_expect_not(board_ready(board));
    board_polled(board, 2);
    expect_state(2, "running");
}

/* ---- waiters ---- */

static atomic_int wakes;

static void count_wake(void *arg)
{
    (void)arg;
    atomic_fetch_add(&wakes, 1);
}

static BoardWaiter *begin(const char *stream, StreamId id, const char *rm, unsigned timeout_ms)
{
    BoardWaitRequest req = {.stream = stream,
                            .id = id,
                            .readmodel = rm,
                            .timeout_ms = timeout_ms,
                            .owner = &wakes,
                            .wake = count_wake};
    BoardWaiter *w = NULL;
    PjError err = {0};

    cr_assert_eq(board_wait_begin(board, &req, &w, &err), 0, "%s", err.message);
    return w;
}

static json_t *answer(const BoardWaiter *w, unsigned want_status)
{
    unsigned status = 0;
    json_t *doc = board_wait_result(w, &status);
    cr_expect_eq(status, want_status);
    return doc;
}

static const char *rm_field(json_t *doc, size_t i, const char *key)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(doc, "readmodels"), i), key));
}

Test(board, waiter_after_the_commit_takes_the_outcome_from_the_ring)
{
    BoardOutcome o[2] = {
        {.id = sid(3, 0), .outcome = BOARD_OUTCOME_DEAD_LETTERED, .error = "no key"},
        {.id = sid(4, 0), .outcome = BOARD_OUTCOME_SKIPPED}};
    BoardWaiter *w;
    json_t *doc;

    board_committed(board, 0, 0, sid(4, 0), o, 2);
    board_committed(board, 1, 0, sid(4, 0), o, 2);
    w = begin("orders", sid(3, 0), NULL, 1000);
    cr_assert(board_wait_done(board, w));
    doc = answer(w, 200);
    cr_expect(json_is_true(json_object_get(doc, "settled")));
    cr_expect_str_eq(rm_field(doc, 0, "outcome"), "dead_lettered");
    cr_expect_str_eq(rm_field(doc, 0, "error"), "no key");
    cr_expect_str_eq(rm_field(doc, 1, "name"), "customer_stats");
    json_decref(doc);
    w = board_wait_free(board, w);

    /* An entry below the position that the ring never saw is just "settled". */
    w = begin("orders", sid(2, 0), "customer_stats", 1000);
    doc = answer(w, 200);
    cr_expect_str_eq(rm_field(doc, 0, "outcome"), "settled");
    json_decref(doc);
    w = board_wait_free(board, w);
    cr_expect_eq(atomic_load(&wakes), 0);
}

Test(board, ring_keeps_the_last_outcomes)
{
    static BoardOutcome o[5000];
    BoardWaiter *w;
    json_t *doc;

    for (size_t i = 0; i < ARRAY_SIZE(o); i++)
        o[i] = (BoardOutcome){.id = sid(100 + i, 0), .outcome = BOARD_OUTCOME_APPLIED};
    board_committed(board, 2, 0, sid(5099, 0), o, 2500);
    board_committed(board, 2, 0, sid(5099, 0), o + 2500, 2500);
    w = begin("customers", sid(100, 0), "customers", 1000);
    doc = answer(w, 200);
    cr_expect_str_eq(rm_field(doc, 0, "outcome"), "settled"); /* evicted */
    json_decref(doc);
    w = board_wait_free(board, w);
    w = begin("customers", sid(5099, 0), "customers", 1000);
    doc = answer(w, 200);
    cr_expect_str_eq(rm_field(doc, 0, "outcome"), "applied");
    json_decref(doc);
    w = board_wait_free(board, w);
}

Test(board, waiter_is_settled_by_every_read_model)
{
    BoardOutcome o = {.id = sid(9, 0), .outcome = BOARD_OUTCOME_APPLIED};
    BoardWaiter *w = begin("orders", sid(9, 0), NULL, 5000);

    cr_assert_not(board_wait_arm(board, w));
    cr_expect_eq(board_wait_pending(board), 1);
    board_committed(board, 0, 0, sid(9, 0), &o, 1);
    cr_expect_not(board_wait_done(board, w), "customer_stats has not settled it yet");
    board_committed(board, 1, 0, sid(12, 0), &o, 1);
    cr_assert(board_wait_done(board, w));
    cr_expect_eq(atomic_load(&wakes), 1);
    cr_expect_eq(board_wait_pending(board), 0);
    json_decref(answer(w, 200));
    board_wait_free(board, w);
}

Test(board, lookup_errors_name_what_is_missing)
{
    static const struct {
        const char *stream, *rm, *message;
    } cases[] = {
        {"payments", NULL, "no read model reads stream \"payments\""},
        {"orders", "nope", "unknown read model \"nope\""},
        {"orders", "customers", "read model \"customers\" does not read stream \"orders\""},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        BoardWaitRequest req = {
            .stream = cases[i].stream, .id = sid(1, 0), .readmodel = cases[i].rm, .timeout_ms = 10};
        BoardWaiter *w = NULL;
        PjError err = {0};
        cr_expect_eq(board_wait_begin(board, &req, &w, &err), -PJ_ENOTFOUND);
        cr_expect_str_eq(err.message, cases[i].message);
        cr_expect_null(w);
    }
}

Test(board, stopped_read_model_answers_503)
{
    BoardWaiter *w, *w2;
    json_t *doc;

    run_all();
    board_set_state(board, 1, BOARD_STATE_STOPPED, "out of disk");
    w = begin("orders", sid(9, 0), NULL, 5000);
    cr_assert(board_wait_done(board, w));
    doc = answer(w, 503);
    cr_expect_str_eq(json_string_value(json_object_get(doc, "error")),
                     "read model \"customer_stats\" is stopped: out of disk");
    cr_expect_str_eq(rm_field(doc, 1, "state"), "stopped");
    cr_expect_str_eq(rm_field(doc, 1, "reason"), "out of disk");
    cr_expect_str_eq(rm_field(doc, 0, "outcome"), "pending");
    json_decref(doc);
    board_wait_free(board, w);

    /* Becoming stopped while waited on. */
    w2 = begin("customers", sid(9, 0), NULL, 5000);
    cr_assert_not(board_wait_arm(board, w2));
    board_set_state(board, 2, BOARD_STATE_STOPPED, "schema mismatch");
    cr_assert(board_wait_done(board, w2));
    cr_expect_eq(atomic_load(&wakes), 1);
    json_decref(answer(w2, 503));
    board_wait_free(board, w2);
}

Test(board, timer_answers_408_with_positions)
{
    int64_t start = now_monotonic_ms();
    BoardWaiter *w;
    json_t *doc;

    run_all();
    board_set_state(board, 0, BOARD_STATE_RETRYING, "could not connect to PostgreSQL");
    board_committed(board, 0, 0, sid(4, 0), NULL, 0);
    w = begin("orders", sid(9, 0), NULL, 150);
    cr_assert_not(board_wait_arm(board, w));
    while (!board_wait_done(board, w) && now_monotonic_ms() - start < 3000)
        sleep_ms(5);
    cr_assert(board_wait_done(board, w));
    cr_expect_geq(now_monotonic_ms() - start, 145);
    cr_expect_eq(atomic_load(&wakes), 1);
    doc = answer(w, 408);
    cr_expect(json_is_false(json_object_get(doc, "settled")));
    cr_expect_str_eq(rm_field(doc, 0, "outcome"), "pending");
    cr_expect_str_eq(rm_field(doc, 0, "state"), "retrying");
    cr_expect_str_eq(rm_field(doc, 0, "reason"), "could not connect to PostgreSQL");
    cr_expect_str_eq(rm_field(doc, 0, "last_applied_id"), "4-0");
    cr_expect(json_is_null(
        json_object_get(json_array_get(json_object_get(doc, "readmodels"), 1), "last_applied_id")));
    json_decref(doc);
    board_wait_free(board, w);
}

Test(board, timeout_zero_answers_at_once)
{
    BoardWaiter *w = begin("orders", sid(9, 0), "orders", 0);

    cr_assert(board_wait_done(board, w));
    json_decref(answer(w, 408));
    board_wait_free(board, w);
}

Test(board, shutdown_answers_waiters_as_timeouts)
{
    BoardWaiter *w = begin("orders", sid(9, 0), NULL, 60000);
    BoardWaiter *late;

    cr_assert_not(board_wait_arm(board, w));
    board_shutdown(board);
    cr_assert(board_wait_done(board, w));
    cr_expect_eq(atomic_load(&wakes), 1);
    json_decref(answer(w, 408));
    board_wait_free(board, w);
    late = begin("orders", sid(9, 0), NULL, 60000);
    json_decref(answer(late, 503));
    board_wait_free(board, late);
}

Test(board, abort_owner_answers_only_its_waiters)
{
    BoardWaiter *mine = begin("orders", sid(9, 0), NULL, 60000);
    BoardWaitRequest req = {.stream = "orders",
                            .id = sid(9, 0),
                            .timeout_ms = 60000,
                            .owner = board,
                            .wake = count_wake};
    BoardWaiter *other;
    PjError err;

    cr_assert_eq(board_wait_begin(board, &req, &other, &err), 0);
    cr_assert_not(board_wait_arm(board, mine));
    cr_assert_not(board_wait_arm(board, other));
    board_wait_abort_owner(board, &wakes);
    cr_expect(board_wait_done(board, mine));
    cr_expect_not(board_wait_done(board, other));
    json_t *doc = answer(mine, 503);
    cr_expect_str_eq(json_string_value(json_object_get(doc, "error")), "shutting down");
    json_decref(doc);
    board_wait_free(board, mine);
    board_wait_free(board, other); /* still pending: unregisters it */
    cr_expect_eq(board_wait_pending(board), 0);
}

/* The statistics behind /metrics: batches, retries by cause, the sessions, and the
 * histograms (a value on a bound counts in that bound's bucket; the last bucket takes
 * what is past every bound). */
Test(board, counts_batches_retries_sessions_and_histograms)
{
    board_batch_done(board, 0, 100, 3);    /* 0.003 s */
    board_batch_done(board, 0, 20000, 20); /* past every batch-size bound */
    board_retried(board, 0, BOARD_RETRY_DEADLOCK);
    board_retried(board, 0, BOARD_RETRY_CONNECTION);
    board_retried(board, 0, BOARD_RETRY_CONNECTION);
    board_connections(board, 0, true, false);
    json_t *doc = board_metrics_json(board);
    json_t *rm = json_array_get(json_object_get(doc, "readmodels"), 0);
    cr_assert_eq(json_integer_value(json_object_get(rm, "batches")), 2);
    json_t *retries = json_object_get(rm, "retries");
    cr_assert_eq(json_integer_value(json_object_get(retries, "connection")), 2);
    cr_assert_eq(json_integer_value(json_object_get(retries, "deadlock")), 1);
    cr_assert_eq(json_integer_value(json_object_get(retries, "timeout")), 0);
    cr_assert(json_is_true(json_object_get(rm, "redis_up")));
    cr_assert(json_is_false(json_object_get(rm, "postgres_up")));
    json_t *size = json_object_get(json_object_get(rm, "histograms"), "batch_size");
    json_t *bounds = json_object_get(size, "bounds"), *counts = json_object_get(size, "counts");
    cr_assert_eq(json_array_size(counts), json_array_size(bounds) + 1);
    size_t at100 = 0;
    while (at100 < json_array_size(bounds) &&
           json_number_value(json_array_get(bounds, at100)) != 100.0)
        at100++;
    cr_assert_lt(at100, json_array_size(bounds), "no bound at 100");
    cr_assert_eq(json_integer_value(json_array_get(counts, at100)), 1);
    cr_assert_eq(json_integer_value(json_array_get(counts, json_array_size(bounds))), 1);
    cr_assert_eq(json_integer_value(json_object_get(size, "count")), 2);
    cr_assert_float_eq(json_number_value(json_object_get(size, "sum")), 20100.0, 1e-9);
    json_t *apply = json_object_get(json_object_get(rm, "histograms"), "apply_seconds");
    cr_assert_float_eq(json_number_value(json_object_get(apply, "sum")), 0.023, 1e-9);
    /* the other read models saw nothing */
    json_t *other = json_array_get(json_object_get(doc, "readmodels"), 1);
    cr_assert_eq(json_integer_value(json_object_get(other, "batches")), 0);
    json_decref(doc);
}
