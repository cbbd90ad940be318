/* board.c - the board's public face: its lifecycle, what workers report (state, polls,
 * samples, commits), the lookup ordering wait, and the /lag and /readyz answers.
 *
 * Takes the one board mutex around every call and broadcasts its condition variable on
 * every commit and on shutdown. Invariant: a stream's committed position never moves
 * backwards. /wait waiters are settled here (through waiters.c) under the same mutex and
 * woken after it is released.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "board/board_internal.h"
#include "os/now.h"
#include "os/thread.h"

#define BOARD_STALE_POLL_MS_DEFAULT 15000

/* ---- lifecycle ---- */

Board *board_new(const ModelSet *set)
{
    Board *b = xcalloc(1, sizeof(*b));

    assert(set != NULL);
    b->set = set;
    b->stale_poll_ms = BOARD_STALE_POLL_MS_DEFAULT;
    pthread_mutex_init(&b->mu, NULL);
    thread_cond_init_monotonic(&b->cond);
    b->rms = xcalloc(set->count ? set->count : 1, sizeof(*b->rms));
    for (size_t i = 0; i < set->count; i++) {
        const Model *m = &set->models[i];
        b->rms[i].fault = BOARD_STATE_STARTING;
        b->rms[i].streams = xcalloc(m->nstreams ? m->nstreams : 1, sizeof(StreamBoard));
        stats_init(&b->rms[i].stats);
        for (size_t s = 0; s < m->nstreams; s++)
            b->rms[i].streams[s].backlog.oldest_unapplied_ms = -1;
    }
    b->waits = waiters_new(b);
    return b;
}

Board *board_free(Board *b)
{
    if (!b)
        return NULL;
    b->waits = waiters_free(b->waits);
    for (size_t i = 0; i < b->set->count; i++) {
        for (size_t s = 0; s < b->set->models[i].nstreams; s++)
            progress_stream_done(&b->rms[i].streams[s]);
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
        waiters_on_stop_locked(b->waits, rm, r->reason, &wl);
    pthread_mutex_unlock(&b->mu);
    waiters_wake_run(b->waits, &wl);
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
    StreamBoard *sb = progress_stream(b, rm, stream);
    sb->backlog = *sample;
    pthread_mutex_unlock(&b->mu);
}

void board_set_dead_letters(Board *b, size_t rm, size_t stream, uint64_t total)
{
    pthread_mutex_lock(&b->mu);
    progress_stream(b, rm, stream)->open_dead_letters = total;
    pthread_mutex_unlock(&b->mu);
}

void board_committed(Board *b, size_t rm, size_t stream, StreamId position,
                     const BoardOutcome *outcomes, size_t n)
{
    WakeList wl = {0};

    pthread_mutex_lock(&b->mu);
    StreamBoard *sb = progress_stream(b, rm, stream);
    assert(!sb->has_position || stream_id_cmp(position, sb->position) >= 0);
    sb->has_position = true;
    sb->position = position;
    progress_count_commit(sb, outcomes, n);
    stats_count_commit(&b->rms[rm].stats, outcomes, n, now_wall_ms());
    waiters_on_commit_locked(b->waits, rm, stream, position, outcomes, n, &wl);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    waiters_wake_run(b->waits, &wl);
}

static bool position_reached(const Board *b, size_t rm, size_t stream, StreamId target)
{
    const StreamBoard *sb = progress_stream(b, rm, stream);
    return sb->has_position && stream_id_cmp(sb->position, target) >= 0;
}

int board_wait_position(Board *b, size_t rm, size_t stream, StreamId target, int timeout_ms)
{
    int64_t deadline = now_monotonic_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    struct timespec ts = thread_monotonic_timespec(deadline);
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
    waiters_on_shutdown_locked(b->waits, &wl);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    waiters_wake_run(b->waits, &wl);
}

/* ---- /lag and /readyz ---- */

json_t *board_json(Board *b, int rm)
{
    json_t *doc;

    assert(rm == -1 || (rm >= 0 && (size_t)rm < b->set->count));
    pthread_mutex_lock(&b->mu);
    if (rm >= 0) {
        doc = progress_rm_json_locked(b, (size_t)rm);
    } else {
        json_t *all = json_array();
        for (size_t i = 0; i < b->set->count; i++)
            json_array_append_new(all, progress_rm_json_locked(b, i));
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
        BoardState s = progress_state_locked(b, i, now_mono, &reason, buf, sizeof(buf));
        ready = s != BOARD_STATE_RETRYING && s != BOARD_STATE_STOPPED && s != BOARD_STATE_STARTING;
    }
    pthread_mutex_unlock(&b->mu);
    return ready;
}
