/* lag.c - the Board: per read model its fault state and last poll, per stream its
 * position, lag, counters, rate ring and ring of recent entry outcomes.
 *
 * One mutex guards everything; one condition variable is broadcast on every commit and on
 * shutdown. Invariant: a stream's committed position never moves backwards. The /wait
 * waiters live in wait.c, which lag.c drives under the same mutex.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "board/lag.h"
#include "board/wait.h"

#define LAG_RING_SIZE 4096
#define LAG_RATE_SECONDS 10
#define LAG_STALE_POLL_MS_DEFAULT 15000

typedef struct RingEntry {
    StreamId id;
    BoardOutcomeKind kind;
    char *error; /* owned; dead letters only */
} RingEntry;

typedef struct StreamBoard {
    bool has_last_entry;
    StreamId last_entry;
    bool has_position;
    StreamId position; /* committed */
    uint64_t entries_behind;
    int64_t oldest_unapplied_ms; /* -1: none */
    uint64_t applied, skipped, dead_letters;
    int64_t rate_second[LAG_RATE_SECONDS]; /* monotonic second that each bucket counts */
    uint64_t rate_count[LAG_RATE_SECONDS];
    RingEntry *ring; /* LAG_RING_SIZE slots, allocated with the first outcome */
    size_t ring_start, ring_count;
} StreamBoard;

typedef struct RmBoard {
    BoardState fault;             /* STARTING, RUNNING (no fault), RETRYING, STOPPED, REBUILDING */
    char *reason;              /* owned, NULL when none */
    int64_t last_poll_wall_ms; /* 0: never polled */
    int64_t alive_mono_ms;     /* last poll or fault cleared, whichever is later */
    StreamBoard *streams;
} RmBoard;

struct Board {
    const ModelSet *set;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; commits and shutdown */
    bool shut_down;
    int64_t stale_poll_ms;
    RmBoard *rms;
    WaitRegistry *waits;
};

const char *board_state_name(BoardState state)
{
    static const char *const names[] = {"starting", "running", "catching_up",
                                        "retrying", "stopped", "rebuilding"};
    assert((size_t)state < ARRAY_SIZE(names));
    return names[state];
}

/* ---- lifecycle ---- */

Board *board_new(const ModelSet *set)
{
    Board *b = xcalloc(1, sizeof(*b));
    pthread_condattr_t attr;

    b->set = set;
    b->stale_poll_ms = LAG_STALE_POLL_MS_DEFAULT;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &attr);
    pthread_condattr_destroy(&attr);
    b->rms = xcalloc(set->count ? set->count : 1, sizeof(*b->rms));
    for (size_t i = 0; i < set->count; i++) {
        const Model *m = &set->models[i];
        b->rms[i].fault = BOARD_STATE_STARTING;
        b->rms[i].streams = xcalloc(m->nstreams ? m->nstreams : 1, sizeof(StreamBoard));
        for (size_t s = 0; s < m->nstreams; s++)
            b->rms[i].streams[s].oldest_unapplied_ms = -1;
    }
    b->waits = wait_registry_new(b, &b->mu);
    return b;
}

static void stream_board_done(StreamBoard *sb)
{
    for (size_t i = 0; sb->ring && i < sb->ring_count; i++)
        free(sb->ring[(sb->ring_start + i) % LAG_RING_SIZE].error);
    free(sb->ring);
}

Board *board_free(Board *b)
{
    if (!b)
        return NULL;
    b->waits = wait_registry_free(b->waits);
    for (size_t i = 0; i < b->set->count; i++) {
        for (size_t s = 0; s < b->set->models[i].nstreams; s++)
            stream_board_done(&b->rms[i].streams[s]);
        free(b->rms[i].streams);
        free(b->rms[i].reason);
    }
    free(b->rms);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->mu);
    free(b);
    return NULL;
}

const ModelSet *board_models(const Board *b)
{
    return b->set;
}

void board_set_stale_poll_ms(Board *b, unsigned ms)
{
    pthread_mutex_lock(&b->mu);
    b->stale_poll_ms = ms;
    pthread_mutex_unlock(&b->mu);
}

static StreamBoard *stream_board(const Board *b, size_t rm, size_t stream)
{
    assert(rm < b->set->count);
    assert(stream < b->set->models[rm].nstreams);
    return &b->rms[rm].streams[stream];
}

/* ---- worker side ---- */

void board_set_state(Board *b, size_t rm, BoardState state, const char *reason)
{
    WakeList wl = {0};
    RmBoard *r;

    assert(rm < b->set->count);
    if (state == BOARD_STATE_CATCHING_UP)
        state = BOARD_STATE_RUNNING; /* derived from the samples, never a fault */
    pthread_mutex_lock(&b->mu);
    r = &b->rms[rm];
    if (state == BOARD_STATE_RUNNING && r->fault != BOARD_STATE_RUNNING)
        r->alive_mono_ms = now_monotonic_ms();
    r->fault = state;
    free(r->reason);
    r->reason = reason && state != BOARD_STATE_RUNNING ? xstrdup(reason) : NULL;
    if (state == BOARD_STATE_STOPPED)
        wait_on_stop_locked(b->waits, rm, r->reason, &wl);
    pthread_mutex_unlock(&b->mu);
    wait_wake_run(b->waits, &wl);
}

void board_polled(Board *b, size_t rm)
{
    assert(rm < b->set->count);
    pthread_mutex_lock(&b->mu);
    b->rms[rm].last_poll_wall_ms = now_wall_ms();
    b->rms[rm].alive_mono_ms = now_monotonic_ms();
    pthread_mutex_unlock(&b->mu);
}

void board_sampled(Board *b, size_t rm, size_t stream, const StreamBacklog *sample)
{
    pthread_mutex_lock(&b->mu);
    StreamBoard *sb = stream_board(b, rm, stream);
    sb->has_last_entry = sample->has_last_entry;
    sb->last_entry = sample->last_entry;
    sb->entries_behind = sample->entries_behind;
    sb->oldest_unapplied_ms = sample->oldest_unapplied_ms;
    pthread_mutex_unlock(&b->mu);
}

void board_set_dead_letters(Board *b, size_t rm, size_t stream, uint64_t total)
{
    pthread_mutex_lock(&b->mu);
    stream_board(b, rm, stream)->dead_letters = total;
    pthread_mutex_unlock(&b->mu);
}

/* ---- commits ---- */

static RingEntry *ring_at(const StreamBoard *sb, size_t i)
{
    return &sb->ring[(sb->ring_start + i) % LAG_RING_SIZE];
}

static void ring_push(StreamBoard *sb, const BoardOutcome *o)
{
    RingEntry *e;

    if (!sb->ring)
        sb->ring = xcalloc(LAG_RING_SIZE, sizeof(*sb->ring));
    /* Binary search needs ascending IDs: a redelivered entry is counted, not recorded. */
    if (sb->ring_count > 0 && stream_id_cmp(o->id, ring_at(sb, sb->ring_count - 1)->id) <= 0)
        return;
    if (sb->ring_count == LAG_RING_SIZE) {
        free(ring_at(sb, 0)->error);
        sb->ring_start = (sb->ring_start + 1) % LAG_RING_SIZE;
        sb->ring_count--;
    }
    e = ring_at(sb, sb->ring_count++);
    e->id = o->id;
    e->kind = o->outcome;
    e->error = o->outcome == BOARD_OUTCOME_DEAD_LETTERED && o->error ? xstrdup(o->error) : NULL;
}

static void rate_add(StreamBoard *sb, int64_t second, uint64_t count)
{
    size_t i = (size_t)(second % LAG_RATE_SECONDS);

    if (sb->rate_second[i] != second) {
        sb->rate_second[i] = second;
        sb->rate_count[i] = 0;
    }
    sb->rate_count[i] += count;
}

static double rate_per_second(const StreamBoard *sb, int64_t second)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < LAG_RATE_SECONDS; i++) {
        int64_t age = second - sb->rate_second[i];
        if (sb->rate_count[i] > 0 && age >= 0 && age < LAG_RATE_SECONDS)
            sum += sb->rate_count[i];
    }
    return (double)sum / LAG_RATE_SECONDS;
}

/* Counts a batch's outcomes; returns how many there were. */
static uint64_t count_outcomes(StreamBoard *sb, StreamId position, const BoardOutcome *o, size_t n)
{
    uint64_t applied = 0;

    for (size_t i = 0; i < n; i++) {
        assert(stream_id_cmp(o[i].id, position) <= 0);
        assert(i == 0 || stream_id_cmp(o[i - 1].id, o[i].id) < 0);
        if (o[i].outcome == BOARD_OUTCOME_APPLIED)
            applied++;
        else if (o[i].outcome == BOARD_OUTCOME_SKIPPED)
            sb->skipped++;
        else if (o[i].outcome == BOARD_OUTCOME_DEAD_LETTERED)
            sb->dead_letters++;
        ring_push(sb, &o[i]);
    }
    sb->applied += applied;
    if (applied > 0)
        rate_add(sb, now_monotonic_ms() / 1000, applied);
    return n;
}

static void adjust_lag(StreamBoard *sb, uint64_t settled)
{
    if (!sb->has_last_entry || stream_id_cmp(sb->position, sb->last_entry) >= 0) {
        /* Redis holds at least what was committed. */
        sb->has_last_entry = true;
        sb->last_entry = sb->position;
        sb->entries_behind = 0;
        sb->oldest_unapplied_ms = -1;
        return;
    }
    sb->entries_behind = sb->entries_behind > settled ? sb->entries_behind - settled : 0;
    /* The oldest unapplied entry now lies past the position; the next sample refines it. */
    if (sb->entries_behind > 0 && (int64_t)sb->position.ms > sb->oldest_unapplied_ms)
        sb->oldest_unapplied_ms = (int64_t)sb->position.ms;
}

void board_committed(Board *b, size_t rm, size_t stream, StreamId position,
                   const BoardOutcome *outcomes, size_t n)
{
    WakeList wl = {0};
    uint64_t settled;

    pthread_mutex_lock(&b->mu);
    StreamBoard *sb = stream_board(b, rm, stream);
    assert(!sb->has_position || stream_id_cmp(position, sb->position) >= 0);
    sb->has_position = true;
    sb->position = position;
    settled = count_outcomes(sb, position, outcomes, n);
    adjust_lag(sb, settled);
    wait_on_commit_locked(b->waits, rm, stream, position, outcomes, n, &wl);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    wait_wake_run(b->waits, &wl);
}

static bool position_reached(const Board *b, size_t rm, size_t stream, StreamId target)
{
    const StreamBoard *sb = stream_board(b, rm, stream);
    return sb->has_position && stream_id_cmp(sb->position, target) >= 0;
}

int board_wait_position(Board *b, size_t rm, size_t stream, StreamId target, int timeout_ms)
{
    int64_t deadline = now_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    struct timespec ts = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
    int rc = 0;

    pthread_mutex_lock(&b->mu);
    while (!position_reached(b, rm, stream, target)) {
        if (b->shut_down) {
            rc = -PJ_ESTOPPED;
            break;
        }
        if (now_monotonic_ms() >= deadline ||
            pthread_cond_timedwait(&b->cond, &b->mu, &ts) == ETIMEDOUT) {
            rc = position_reached(b, rm, stream, target) ? 0 : -PJ_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void board_shutdown(Board *b)
{
    WakeList wl = {0};

    pthread_mutex_lock(&b->mu);
    b->shut_down = true;
    wait_on_shutdown_locked(b->waits, &wl);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    wait_wake_run(b->waits, &wl);
}

/* ---- plumbing for wait.c (mutex held) ---- */

WaitRegistry *lag_registry(Board *b)
{
    return b->waits;
}

bool lag_is_shut_down_locked(const Board *b)
{
    return b->shut_down;
}

BoardState lag_fault_locked(const Board *b, size_t rm, const char **ret_reason)
{
    assert(rm < b->set->count);
    *ret_reason = b->rms[rm].reason;
    return b->rms[rm].fault;
}

bool lag_position_locked(const Board *b, size_t rm, size_t stream, StreamId *ret)
{
    const StreamBoard *sb = stream_board(b, rm, stream);
    *ret = sb->position;
    return sb->has_position;
}

bool lag_ring_find_locked(const Board *b, size_t rm, size_t stream, StreamId id,
                          BoardOutcomeKind *ret_kind, const char **ret_error)
{
    const StreamBoard *sb = stream_board(b, rm, stream);
    size_t lo = 0, hi = sb->ring_count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const RingEntry *e = ring_at(sb, mid);
        int c = stream_id_cmp(e->id, id);
        if (c == 0) {
            *ret_kind = e->kind;
            *ret_error = e->error;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* ---- derived state and JSON ---- */

/* The state /lag shows: a fault wins, then a worker that stopped polling, then the lag. */
static BoardState derive_state(const Board *b, size_t rm, int64_t now_mono, const char **ret_reason,
                            char *buf, size_t size)
{
    const RmBoard *r = &b->rms[rm];
    int64_t silent_ms = now_mono - r->alive_mono_ms;

    *ret_reason = r->reason;
    if (r->fault != BOARD_STATE_RUNNING)
        return r->fault;
    if (silent_ms > b->stale_poll_ms) {
        snprintf(buf, size, "worker has not polled for %lld ms", (long long)silent_ms);
        *ret_reason = buf;
        return BOARD_STATE_RETRYING;
    }
    for (size_t s = 0; s < b->set->models[rm].nstreams; s++) {
        if (r->streams[s].entries_behind > 0)
            return BOARD_STATE_CATCHING_UP;
    }
    return BOARD_STATE_RUNNING;
}

static double lag_seconds(const StreamBoard *sb, int64_t now_wall)
{
    if (sb->entries_behind == 0 || sb->oldest_unapplied_ms < 0 ||
        now_wall <= sb->oldest_unapplied_ms)
        return 0.0;
    return (double)(now_wall - sb->oldest_unapplied_ms) / 1000.0;
}

static json_t *id_or_null(bool known, StreamId id)
{
    char buf[STREAM_ID_BUFSZ];
    return known ? json_string(stream_id_format(id, buf)) : json_null();
}

static void set_state_json(json_t *obj, BoardState state, const char *reason)
{
    json_object_set_new(obj, "state", json_string(board_state_name(state)));
    json_object_set_new(obj, "reason", reason ? wait_json_string(reason) : json_null());
}

void lag_position_json_locked(Board *b, size_t rm, size_t stream, json_t *obj)
{
    const StreamBoard *sb = stream_board(b, rm, stream);
    char buf[128];
    const char *reason;
    BoardState state = derive_state(b, rm, now_monotonic_ms(), &reason, buf, sizeof(buf));

    json_object_set_new(obj, "state", json_string(board_state_name(state)));
    if (reason)
        json_object_set_new(obj, "reason", wait_json_string(reason));
    json_object_set_new(obj, "last_applied_id", id_or_null(sb->has_position, sb->position));
    json_object_set_new(obj, "entries_behind", json_integer((json_int_t)sb->entries_behind));
    json_object_set_new(obj, "lag_seconds", json_real(lag_seconds(sb, now_wall_ms())));
}

static json_t *stream_json(const Board *b, size_t rm, size_t s, int64_t now_wall,
                           int64_t now_sec)
{
    const StreamBoard *sb = &b->rms[rm].streams[s];
    json_t *o = json_object();

    json_object_set_new(o, "stream", wait_json_string(b->set->models[rm].streams[s]));
    json_object_set_new(o, "last_entry_id", id_or_null(sb->has_last_entry, sb->last_entry));
    json_object_set_new(o, "last_applied_id", id_or_null(sb->has_position, sb->position));
    json_object_set_new(o, "entries_behind", json_integer((json_int_t)sb->entries_behind));
    json_object_set_new(o, "lag_seconds", json_real(lag_seconds(sb, now_wall)));
    json_object_set_new(o, "events_per_second", json_real(rate_per_second(sb, now_sec)));
    json_object_set_new(o, "applied", json_integer((json_int_t)sb->applied));
    json_object_set_new(o, "skipped", json_integer((json_int_t)sb->skipped));
    json_object_set_new(o, "dead_letters", json_integer((json_int_t)sb->dead_letters));
    return o;
}

static json_t *rm_json(const Board *b, size_t rm)
{
    const RmBoard *r = &b->rms[rm];
    int64_t now_mono = now_monotonic_ms(), now_wall = now_wall_ms();
    char buf[128], when[32];
    const char *reason;
    BoardState state = derive_state(b, rm, now_mono, &reason, buf, sizeof(buf));
    json_t *o = json_object(), *streams = json_array();

    json_object_set_new(o, "name", wait_json_string(b->set->models[rm].name));
    set_state_json(o, state, reason);
    if (r->last_poll_wall_ms > 0) {
        format_wall_ms(r->last_poll_wall_ms, when, sizeof(when));
        json_object_set_new(o, "last_poll_at", json_string(when));
        json_object_set_new(
            o, "last_poll_age_ms",
            json_integer(now_wall > r->last_poll_wall_ms ? now_wall - r->last_poll_wall_ms : 0));
    } else {
        json_object_set_new(o, "last_poll_at", json_null());
        json_object_set_new(o, "last_poll_age_ms", json_null());
    }
    for (size_t s = 0; s < b->set->models[rm].nstreams; s++)
        json_array_append_new(streams, stream_json(b, rm, s, now_wall, now_mono / 1000));
    json_object_set_new(o, "streams", streams);
    return o;
}

json_t *board_json(Board *b, int rm)
{
    json_t *doc;

    assert(rm == -1 || (rm >= 0 && (size_t)rm < b->set->count));
    pthread_mutex_lock(&b->mu);
    if (rm >= 0) {
        doc = rm_json(b, (size_t)rm);
    } else {
        json_t *all = json_array();
        for (size_t i = 0; i < b->set->count; i++)
            json_array_append_new(all, rm_json(b, i));
        doc = json_object();
        json_object_set_new(doc, "readmodels", all);
    }
    pthread_mutex_unlock(&b->mu);
    return doc;
}

bool board_ready(Board *b)
{
    bool ready = true;
    int64_t now_mono = now_monotonic_ms();
    char buf[128];
    const char *reason;

    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->set->count && ready; i++) {
        BoardState s = derive_state(b, i, now_mono, &reason, buf, sizeof(buf));
        ready = s != BOARD_STATE_RETRYING && s != BOARD_STATE_STOPPED && s != BOARD_STATE_STARTING;
    }
    pthread_mutex_unlock(&b->mu);
    return ready;
}
