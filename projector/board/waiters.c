/* waiters.c - the registry of /wait waiters: who waits on which entry of which read
 * models, how each one finishes, and the single timer thread that times them out.
 *
 * Everything runs under the board mutex. A waiter finishes exactly once; its JSON answer
 * is built at that moment. Wake calls run after the mutex is released, and
 * wakes_in_flight lets a server wait until none of them still touches its connections.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/json_text.h"
#include "board/board_internal.h"
#include "os/now.h"
#include "os/thread.h"

typedef enum {
    WAIT_PENDING,
    WAIT_SETTLED,   /* 200 */
    WAIT_TIMED_OUT, /* 408 */
    WAIT_STOPPED,   /* 503: a read model waited on is stopped */
    WAIT_SHUTDOWN   /* 503: the server is going away */
} WaitStatus;

typedef struct WaitTarget {
    size_t rm, stream;
    bool settled;
    BoardOutcomeKind kind; /* BOARD_OUTCOME_NONE while settled: the outcome is no longer known */
    char *error;           /* owned; dead letters only */
} WaitTarget;

struct BoardWaiter {
    BoardWaiter *prev, *next; /* registry list while pending */
    bool registered;
    char *stream;
    StreamId id;
    WaitTarget *targets;
    size_t ntargets;
    unsigned timeout_ms;
    int64_t deadline_ms; /* monotonic */
    const void *owner;
    BoardWakeFn wake;
    void *wake_arg;
    bool armed;
    WaitStatus status;
    json_t *answer; /* set when finished */
};

struct WaitRegistry {
    Board *board;
    pthread_mutex_t *mu;       /* the board's */
    pthread_cond_t timer_cond; /* CLOCK_MONOTONIC: an earlier deadline, or stop */
    pthread_cond_t idle_cond;  /* wakes_in_flight dropped to 0 */
    BoardWaiter *head;
    size_t pending;
    size_t wakes_in_flight;
    int64_t timer_target_ms; /* what the timer thread sleeps until; INT64_MAX: nothing */
    bool stop;
    pthread_t timer;
};

/* The fault state the worker set (STARTING, RUNNING, RETRYING, STOPPED, REBUILDING). */
static BoardState fault_locked(const Board *board, size_t rm, const char **ret_reason)
{
    assert(rm < board->set->count);
    *ret_reason = board->rms[rm].reason;
    return board->rms[rm].fault;
}

/* True when (rm, stream) has committed entry id. */
static bool position_covers_locked(const Board *board, size_t rm, size_t stream, StreamId id)
{
    const StreamBoard *sb = progress_stream(board, rm, stream);
    return sb->has_position && stream_id_cmp(id, sb->position) <= 0;
}

/* ---- finishing ---- */

static void wake_list_add(WakeList *wl, BoardWakeFn fn, void *arg)
{
    size_t cap = wl->cap;

    xgrow((void **)&wl->fns, &cap, wl->count + 1, sizeof(*wl->fns));
    xgrow((void **)&wl->args, &wl->cap, wl->count + 1, sizeof(*wl->args));
    assert(cap == wl->cap);
    wl->fns[wl->count] = fn;
    wl->args[wl->count++] = arg;
}

void waiters_wake_run(WaitRegistry *reg, WakeList *wl)
{
    if (wl->count > 0) {
        for (size_t i = 0; i < wl->count; i++)
            wl->fns[i](wl->args[i]);
        pthread_mutex_lock(reg->mu);
        assert(reg->wakes_in_flight >= wl->count);
        reg->wakes_in_flight -= wl->count;
        if (reg->wakes_in_flight == 0)
            pthread_cond_broadcast(&reg->idle_cond);
        pthread_mutex_unlock(reg->mu);
    }
    free(wl->fns);
    free(wl->args);
    *wl = (WakeList){0};
}

static void unregister(WaitRegistry *reg, BoardWaiter *w)
{
    if (!w->registered)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        reg->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->registered = false;
    reg->pending--;
}

static const char *outcome_name(const WaitTarget *t)
{
    if (!t->settled)
        return "pending";
    switch (t->kind) {
    case BOARD_OUTCOME_APPLIED:
        return "applied";
    case BOARD_OUTCOME_DEAD_LETTERED:
        return "dead_lettered";
    case BOARD_OUTCOME_SKIPPED:
        return "skipped";
    case BOARD_OUTCOME_NONE:
        break;
    }
    return "settled";
}

static json_t *target_json(Board *board, const WaitTarget *t, bool with_position)
{
    const ModelSet *set = board->set;
    json_t *o = json_object();

    json_object_set_new(o, "name", json_text_string(set->models[t->rm].name));
    json_object_set_new(o, "outcome", json_string(outcome_name(t)));
    if (t->error)
        json_object_set_new(o, "error", json_text_string(t->error));
    if (with_position)
        progress_position_json_locked(board, t->rm, t->stream, o);
    return o;
}

static json_t *answer_json(Board *board, const BoardWaiter *w, const char *error)
{
    char idbuf[STREAM_ID_BUFSZ];
    json_t *doc = json_object(), *rms = json_array();

    json_object_set_new(doc, "stream", json_text_string(w->stream));
    json_object_set_new(doc, "id", json_string(stream_id_format(w->id, idbuf)));
    json_object_set_new(doc, "settled", json_boolean(w->status == WAIT_SETTLED));
    if (error)
        json_object_set_new(doc, "error", json_text_string(error));
    for (size_t i = 0; i < w->ntargets; i++)
        json_array_append_new(rms, target_json(board, &w->targets[i], w->status != WAIT_SETTLED));
    json_object_set_new(doc, "readmodels", rms);
    return doc;
}

/* Fixes the waiter's answer, takes it off the registry and queues its wake call. */
static void finish(WaitRegistry *reg, BoardWaiter *w, WaitStatus status, const char *error,
                   WakeList *wl)
{
    assert(w->status == WAIT_PENDING && status != WAIT_PENDING);
    w->status = status;
    w->answer = answer_json(reg->board, w, error);
    unregister(reg, w);
    if (w->armed) {
        reg->wakes_in_flight++;
        wake_list_add(wl, w->wake, w->wake_arg);
    }
}

static void settle(WaitTarget *t, BoardOutcomeKind kind, const char *error)
{
    t->settled = true;
    t->kind = kind;
    t->error = kind == BOARD_OUTCOME_DEAD_LETTERED && error ? xstrdup(error) : NULL;
}

static bool all_settled(const BoardWaiter *w)
{
    for (size_t i = 0; i < w->ntargets; i++) {
        if (!w->targets[i].settled)
            return false;
    }
    return true;
}

/* The first read model waited on that is stopped and has not settled the entry. */
static const WaitTarget *stopped_target(Board *board, const BoardWaiter *w, const char **ret_reason)
{
    for (size_t i = 0; i < w->ntargets; i++) {
        const WaitTarget *t = &w->targets[i];
        if (!t->settled && fault_locked(board, t->rm, ret_reason) == BOARD_STATE_STOPPED)
            return t;
    }
    return NULL;
}

static void finish_stopped(WaitRegistry *reg, BoardWaiter *w, const WaitTarget *t,
                           const char *reason, WakeList *wl)
{
    const char *name = reg->board->set->models[t->rm].name;
    char *error = reason ? xasprintf("read model \"%s\" is stopped: %s", name, reason)
                         : xasprintf("read model \"%s\" is stopped", name);

    finish(reg, w, WAIT_STOPPED, error, wl);
    free(error);
}

static void finish_timed_out(WaitRegistry *reg, BoardWaiter *w, WakeList *wl)
{
    char *error = xasprintf("timed out after %u ms", w->timeout_ms);

    finish(reg, w, WAIT_TIMED_OUT, error, wl);
    free(error);
}

/* ---- the timer thread ---- */

/* Times out every expired waiter; returns the earliest deadline left. */
static int64_t expire(WaitRegistry *reg, int64_t now, WakeList *wl)
{
    int64_t earliest = INT64_MAX;
    BoardWaiter *next;

    for (BoardWaiter *w = reg->head; w; w = next) {
        next = w->next;
        if (w->deadline_ms <= now)
            finish_timed_out(reg, w, wl);
        else if (w->deadline_ms < earliest)
            earliest = w->deadline_ms;
    }
    return earliest;
}

static void *timer_main(void *arg)
{
    WaitRegistry *reg = arg;

    pthread_mutex_lock(reg->mu);
    while (!reg->stop) {
        WakeList wl = {0};
        int64_t earliest = expire(reg, now_monotonic_ms(), &wl);
        if (wl.count > 0) {
            pthread_mutex_unlock(reg->mu);
            waiters_wake_run(reg, &wl);
            pthread_mutex_lock(reg->mu);
            continue;
        }
        reg->timer_target_ms = earliest;
        if (earliest == INT64_MAX) {
            pthread_cond_wait(&reg->timer_cond, reg->mu);
        } else {
            struct timespec ts = thread_monotonic_timespec(earliest);
            (void)pthread_cond_timedwait(&reg->timer_cond, reg->mu, &ts);
        }
    }
    pthread_mutex_unlock(reg->mu);
    return NULL;
}

WaitRegistry *waiters_new(Board *board)
{
    WaitRegistry *reg = xcalloc(1, sizeof(*reg));
    int rc;

    reg->board = board;
    reg->mu = &board->mu;
    reg->timer_target_ms = INT64_MAX;
    thread_cond_init_monotonic(&reg->timer_cond);
    pthread_cond_init(&reg->idle_cond, NULL);
    rc = pthread_create(&reg->timer, NULL, timer_main, reg);
    /* Like an allocation failure: without its timer the board cannot keep its promises. */
    if (rc != 0) {
        fprintf(stderr, "could not start the wait timer thread: %s\n", strerror(rc));
        abort();
    }
    return reg;
}

WaitRegistry *waiters_free(WaitRegistry *reg)
{
    if (!reg)
        return NULL;
    pthread_mutex_lock(reg->mu);
    reg->stop = true;
    pthread_cond_signal(&reg->timer_cond);
    pthread_mutex_unlock(reg->mu);
    pthread_join(reg->timer, NULL);
    assert(reg->head == NULL && reg->pending == 0);
    assert(reg->wakes_in_flight == 0);
    pthread_cond_destroy(&reg->timer_cond);
    pthread_cond_destroy(&reg->idle_cond);
    free(reg);
    return NULL;
}

/* ---- events from the board ---- */

static StreamId outcome_id_at(const void *ctx, size_t i)
{
    return ((const BoardOutcome *)ctx)[i].id;
}

/* The outcome of id in a batch (ascending), or NULL. */
static const BoardOutcome *batch_find(const BoardOutcome *o, size_t n, StreamId id)
{
    size_t i = stream_id_lower_bound(n, outcome_id_at, o, id);
    return i < n && stream_id_cmp(o[i].id, id) == 0 ? &o[i] : NULL;
}

/* Settles target t from what the board remembers: the ring, else "settled". */
static void settle_from_ring(Board *board, WaitTarget *t, StreamId id)
{
    BoardOutcomeKind kind;
    const char *error;

    if (progress_ring_find(progress_stream(board, t->rm, t->stream), id, &kind, &error))
        settle(t, kind, error);
    else
        settle(t, BOARD_OUTCOME_NONE, NULL);
}

void waiters_on_commit_locked(WaitRegistry *reg, size_t rm, size_t stream, StreamId position,
                              const BoardOutcome *outcomes, size_t n, WakeList *wl)
{
    BoardWaiter *next;

    for (BoardWaiter *w = reg->head; w; w = next) {
        bool changed = false;
        next = w->next;
        if (stream_id_cmp(w->id, position) > 0)
            continue;
        for (size_t i = 0; i < w->ntargets; i++) {
            WaitTarget *t = &w->targets[i];
            if (t->settled || t->rm != rm || t->stream != stream)
                continue;
            const BoardOutcome *o = batch_find(outcomes, n, w->id);
            if (o)
                settle(t, o->outcome, o->error);
            else
                settle_from_ring(reg->board, t, w->id);
            changed = true;
        }
        if (changed && all_settled(w))
            finish(reg, w, WAIT_SETTLED, NULL, wl);
    }
}

void waiters_on_stop_locked(WaitRegistry *reg, size_t rm, const char *reason, WakeList *wl)
{
    BoardWaiter *next;

    for (BoardWaiter *w = reg->head; w; w = next) {
        next = w->next;
        for (size_t i = 0; i < w->ntargets; i++) {
            if (w->targets[i].rm == rm && !w->targets[i].settled) {
                finish_stopped(reg, w, &w->targets[i], reason, wl);
                break;
            }
        }
    }
}

void waiters_on_shutdown_locked(WaitRegistry *reg, WakeList *wl)
{
    while (reg->head)
        finish_timed_out(reg, reg->head, wl);
    pthread_cond_signal(&reg->timer_cond);
}

/* ---- waiter API ---- */

/* Fills w->targets: the named read model, or every read model that reads the stream. */
static int resolve_targets(const ModelSet *set, const BoardWaitRequest *req, BoardWaiter *w,
                           PjError *err)
{
    int stream;

    w->targets = xcalloc(set->count ? set->count : 1, sizeof(*w->targets));
    if (req->readmodel) {
        int rm = model_set_find(set, req->readmodel);
        if (rm < 0)
            return pj_error_set(err, PJ_ENOTFOUND, "unknown read model \"%s\"", req->readmodel);
        if ((stream = model_find_stream(&set->models[rm], req->stream)) < 0)
            return pj_error_set(err, PJ_ENOTFOUND, "read model \"%s\" does not read stream \"%s\"",
                                req->readmodel, req->stream);
        w->targets[w->ntargets++] = (WaitTarget){.rm = (size_t)rm, .stream = (size_t)stream};
        return 0;
    }
    for (size_t i = 0; i < set->count; i++) {
        if ((stream = model_find_stream(&set->models[i], req->stream)) >= 0)
            w->targets[w->ntargets++] = (WaitTarget){.rm = i, .stream = (size_t)stream};
    }
    if (w->ntargets == 0)
        return pj_error_set(err, PJ_ENOTFOUND, "no read model reads stream \"%s\"", req->stream);
    return 0;
}

static void waiter_destroy(BoardWaiter *w)
{
    for (size_t i = 0; i < w->ntargets; i++)
        free(w->targets[i].error);
    free(w->targets);
    free(w->stream);
    json_decref(w->answer);
    free(w);
}

static void enlist(WaitRegistry *reg, BoardWaiter *w)
{
    w->deadline_ms = now_monotonic_ms() + w->timeout_ms;
    w->next = reg->head;
    if (reg->head)
        reg->head->prev = w;
    reg->head = w;
    w->registered = true;
    reg->pending++;
    if (w->deadline_ms < reg->timer_target_ms)
        pthread_cond_signal(&reg->timer_cond);
}

/* Settles what is already committed, then finishes at once or registers. */
static void start_locked(WaitRegistry *reg, BoardWaiter *w)
{
    Board *board = reg->board;
    const WaitTarget *stopped;
    const char *reason;
    WakeList wl = {0}; /* stays empty: the waiter is not armed yet */

    for (size_t i = 0; i < w->ntargets; i++) {
        WaitTarget *t = &w->targets[i];
        if (position_covers_locked(board, t->rm, t->stream, w->id))
            settle_from_ring(board, t, w->id);
    }
    if (board->shut_down)
        finish(reg, w, WAIT_SHUTDOWN, "shutting down", &wl);
    else if ((stopped = stopped_target(board, w, &reason)) != NULL)
        finish_stopped(reg, w, stopped, reason, &wl);
    else if (all_settled(w))
        finish(reg, w, WAIT_SETTLED, NULL, &wl);
    else if (w->timeout_ms == 0)
        finish_timed_out(reg, w, &wl);
    else
        enlist(reg, w);
    assert(wl.count == 0);
}

int board_wait_begin(Board *board, const BoardWaitRequest *req, BoardWaiter **ret, PjError *err)
{
    WaitRegistry *reg = board->waits;
    BoardWaiter *w = xcalloc(1, sizeof(*w));
    int rc;

    rc = resolve_targets(board->set, req, w, err);
    if (rc < 0) {
        waiter_destroy(w);
        return rc;
    }
    w->stream = xstrdup(req->stream);
    w->id = req->id;
    w->timeout_ms = req->timeout_ms;
    w->owner = req->owner;
    w->wake = req->wake;
    w->wake_arg = req->wake_arg;
    pthread_mutex_lock(reg->mu);
    start_locked(reg, w);
    pthread_mutex_unlock(reg->mu);
    *ret = w;
    return 0;
}

bool board_wait_done(Board *board, BoardWaiter *w)
{
    WaitRegistry *reg = board->waits;
    bool done;

    pthread_mutex_lock(reg->mu);
    done = w->status != WAIT_PENDING;
    pthread_mutex_unlock(reg->mu);
    return done;
}

bool board_wait_arm(Board *board, BoardWaiter *w)
{
    WaitRegistry *reg = board->waits;
    bool done;

    pthread_mutex_lock(reg->mu);
    done = w->status != WAIT_PENDING;
    if (!done)
        w->armed = true;
    pthread_mutex_unlock(reg->mu);
    return done;
}

json_t *board_wait_result(const BoardWaiter *w, unsigned *ret_status)
{
    static const unsigned statuses[] = {
        [WAIT_SETTLED] = 200, [WAIT_TIMED_OUT] = 408, [WAIT_STOPPED] = 503, [WAIT_SHUTDOWN] = 503};

    assert(w->status != WAIT_PENDING && w->answer);
    *ret_status = statuses[w->status];
    return json_incref(w->answer);
}

BoardWaiter *board_wait_free(Board *board, BoardWaiter *w)
{
    WaitRegistry *reg = board->waits;

    if (!w)
        return NULL;
    pthread_mutex_lock(reg->mu);
    unregister(reg, w);
    pthread_mutex_unlock(reg->mu);
    waiter_destroy(w);
    return NULL;
}

void board_wait_abort_owner(Board *board, const void *owner)
{
    WaitRegistry *reg = board->waits;
    WakeList wl = {0};
    BoardWaiter *next;

    pthread_mutex_lock(reg->mu);
    for (BoardWaiter *w = reg->head; w; w = next) {
        next = w->next;
        if (w->owner == owner)
            finish(reg, w, WAIT_SHUTDOWN, "shutting down", &wl);
    }
    pthread_mutex_unlock(reg->mu);
    waiters_wake_run(reg, &wl);
    pthread_mutex_lock(reg->mu);
    while (reg->wakes_in_flight > 0)
        pthread_cond_wait(&reg->idle_cond, reg->mu);
    pthread_mutex_unlock(reg->mu);
}

size_t board_wait_pending(Board *board)
{
    WaitRegistry *reg = board->waits;
    size_t n;

    pthread_mutex_lock(reg->mu);
    n = reg->pending;
    pthread_mutex_unlock(reg->mu);
    return n;
}
