/* progress.c - the record of one read model's streams on the board: committed position,
 * lag, counters, the events-per-second buckets and the ring of recent entry outcomes; and
 * the /lag state and JSON derived from it.
 *
 * Called with the board mutex held; calls nothing else of the board. Invariant: the ring
 * holds ascending entry IDs, so a late /wait finds an outcome by binary search.
 */
#include <assert.h>
#include <stdlib.h>

#include "base/json_text.h"
#include "board/board_internal.h"
#include "os/now.h"

static const char *const board_state_names[] = {
    [BOARD_STATE_STARTING] = "starting",       [BOARD_STATE_RUNNING] = "running",
    [BOARD_STATE_CATCHING_UP] = "catching_up", [BOARD_STATE_RETRYING] = "retrying",
    [BOARD_STATE_STOPPED] = "stopped",         [BOARD_STATE_REBUILDING] = "rebuilding"};
static_assert(ARRAY_SIZE(board_state_names) == BOARD_STATE_REBUILDING + 1,
              "a name for every board state");

const char *board_state_name(BoardState state)
{
    assert((size_t)state < ARRAY_SIZE(board_state_names));
    return board_state_names[state];
}

StreamBoard *progress_stream(const Board *b, size_t rm, size_t stream)
{
    assert(rm < b->set->count);
    assert(stream < b->set->models[rm].nstreams);
    return &b->rms[rm].streams[stream];
}

void progress_stream_done(StreamBoard *sb)
{
    for (size_t i = 0; sb->ring && i < sb->ring_count; i++)
        free(sb->ring[(sb->ring_start + i) % BOARD_RING_SIZE].error);
    free(sb->ring);
}

/* ---- the ring of recent outcomes ---- */

static RingEntry *ring_at(const StreamBoard *sb, size_t i)
{
    assert(i < sb->ring_count);
    return &sb->ring[(sb->ring_start + i) % BOARD_RING_SIZE];
}

static StreamId ring_id_at(const void *ctx, size_t i)
{
    return ring_at(ctx, i)->id;
}

static void ring_push(StreamBoard *sb, const BoardOutcome *o)
{
    RingEntry *e;

    if (!sb->ring)
        sb->ring = xcalloc(BOARD_RING_SIZE, sizeof(*sb->ring));
    /* Binary search needs ascending IDs: a redelivered entry is counted, not recorded. */
    if (sb->ring_count > 0 && stream_id_cmp(o->id, ring_at(sb, sb->ring_count - 1)->id) <= 0)
        return;
    if (sb->ring_count == BOARD_RING_SIZE) {
        free(ring_at(sb, 0)->error);
        sb->ring_start = (sb->ring_start + 1) % BOARD_RING_SIZE;
        sb->ring_count--;
    }
    sb->ring_count++;
    e = ring_at(sb, sb->ring_count - 1);
    e->id = o->id;
    e->kind = o->outcome;
    e->error = o->outcome == BOARD_OUTCOME_DEAD_LETTERED && o->error ? xstrdup(o->error) : NULL;
}

bool progress_ring_find(const StreamBoard *sb, StreamId id, BoardOutcomeKind *ret_kind,
                        const char **ret_error)
{
    size_t i = stream_id_lower_bound(sb->ring_count, ring_id_at, sb, id);

    if (i == sb->ring_count || stream_id_cmp(ring_at(sb, i)->id, id) != 0)
        return false;
    *ret_kind = ring_at(sb, i)->kind;
    *ret_error = ring_at(sb, i)->error;
    return true;
}

/* ---- counting commits ---- */

static void rate_add(StreamBoard *sb, int64_t second, uint64_t count)
{
    size_t i = (size_t)(second % BOARD_RATE_SECONDS);

    if (sb->rate_second[i] != second) {
        sb->rate_second[i] = second;
        sb->rate_count[i] = 0;
    }
    sb->rate_count[i] += count;
}

static double rate_per_second(const StreamBoard *sb, int64_t second)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < BOARD_RATE_SECONDS; i++) {
        int64_t age = second - sb->rate_second[i];
        if (sb->rate_count[i] > 0 && age >= 0 && age < BOARD_RATE_SECONDS)
            sum += sb->rate_count[i];
    }
    return (double)sum / BOARD_RATE_SECONDS;
}

static void adjust_lag(StreamBoard *sb, uint64_t settled)
{
    StreamBacklog *bl = &sb->backlog;

    if (!bl->has_last_entry || stream_id_cmp(sb->position, bl->last_entry) >= 0) {
        /* Redis holds at least what was committed. */
        *bl = (StreamBacklog){
            .has_last_entry = true, .last_entry = sb->position, .oldest_unapplied_ms = -1};
        return;
    }
    bl->entries_behind = bl->entries_behind > settled ? bl->entries_behind - settled : 0;
    /* The oldest unapplied entry now lies past the position; the next sample refines it. */
    if (bl->entries_behind > 0 && (int64_t)sb->position.ms > bl->oldest_unapplied_ms)
        bl->oldest_unapplied_ms = (int64_t)sb->position.ms;
}

void progress_count_commit(StreamBoard *sb, const BoardOutcome *o, size_t n)
{
    uint64_t applied = 0;

    assert(sb->has_position);
    for (size_t i = 0; i < n; i++) {
        assert(stream_id_cmp(o[i].id, sb->position) <= 0);
        assert(i == 0 || stream_id_cmp(o[i - 1].id, o[i].id) < 0);
        if (o[i].outcome == BOARD_OUTCOME_APPLIED)
            applied++;
        else if (o[i].outcome == BOARD_OUTCOME_SKIPPED)
            sb->skipped++;
        else if (o[i].outcome == BOARD_OUTCOME_DEAD_LETTERED)
            sb->dead_letters++, sb->open_dead_letters++; /* one more, until it is read again */
        ring_push(sb, &o[i]);
    }
    sb->applied += applied;
    if (applied > 0)
        rate_add(sb, now_monotonic_ms() / 1000, applied);
    adjust_lag(sb, n);
}

/* ---- what /lag shows ---- */

BoardState progress_state_locked(const Board *b, size_t rm, int64_t now_mono,
                                 const char **ret_reason, char *buf, size_t size)
{
    const RmBoard *r = &b->rms[rm];
    int64_t silent_ms = now_mono - r->alive_mono_ms;

    assert(rm < b->set->count);
    *ret_reason = r->reason;
    if (r->fault != BOARD_STATE_RUNNING)
        return r->fault;
    if (silent_ms > b->stale_poll_ms) {
        snprintf(buf, size, "worker has not polled for %lld ms", (long long)silent_ms);
        *ret_reason = buf;
        return BOARD_STATE_RETRYING;
    }
    for (size_t s = 0; s < b->set->models[rm].nstreams; s++) {
        if (r->streams[s].backlog.entries_behind > 0)
            return BOARD_STATE_CATCHING_UP;
    }
    return BOARD_STATE_RUNNING;
}

static json_t *id_or_null(bool known, StreamId id)
{
    char buf[STREAM_ID_BUFSZ];
    return known ? json_string(stream_id_format(id, buf)) : json_null();
}

void progress_position_json_locked(const Board *b, size_t rm, size_t stream, json_t *obj)
{
    const StreamBoard *sb = progress_stream(b, rm, stream);
    char buf[128];
    const char *reason;
    BoardState state = progress_state_locked(b, rm, now_monotonic_ms(), &reason, buf, sizeof(buf));

    json_object_set_new(obj, "state", json_string(board_state_name(state)));
    if (reason)
        json_object_set_new(obj, "reason", json_text_string(reason));
    json_object_set_new(obj, "last_applied_id", id_or_null(sb->has_position, sb->position));
    json_object_set_new(obj, "entries_behind",
                        json_integer((json_int_t)sb->backlog.entries_behind));
    json_object_set_new(obj, "lag_seconds",
                        json_real(stream_backlog_lag_seconds(&sb->backlog, now_wall_ms())));
}

static json_t *stream_json(const Board *b, size_t rm, size_t s, int64_t now_wall, int64_t now_sec)
{
    const StreamBoard *sb = progress_stream(b, rm, s);
    json_t *o = json_object();

    json_object_set_new(o, "stream", json_text_string(b->set->models[rm].streams[s]));
    json_object_set_new(o, "last_entry_id",
                        id_or_null(sb->backlog.has_last_entry, sb->backlog.last_entry));
    json_object_set_new(o, "last_applied_id", id_or_null(sb->has_position, sb->position));
    json_object_set_new(o, "entries_behind", json_integer((json_int_t)sb->backlog.entries_behind));
    json_object_set_new(o, "lag_seconds",
                        json_real(stream_backlog_lag_seconds(&sb->backlog, now_wall)));
    json_object_set_new(o, "events_per_second", json_real(rate_per_second(sb, now_sec)));
    json_object_set_new(o, "applied", json_integer((json_int_t)sb->applied));
    json_object_set_new(o, "skipped", json_integer((json_int_t)sb->skipped));
    json_object_set_new(o, "dead_letters", json_integer((json_int_t)sb->open_dead_letters));
    json_object_set_new(o, "dead_lettered", json_integer((json_int_t)sb->dead_letters));
    /* Redis restored behind PostgreSQL, or a failover lost entries. */
    json_object_set_new(o, "checkpoint_ahead",
                        json_boolean(sb->has_position && sb->backlog.has_last_entry &&
                                     stream_id_cmp(sb->position, sb->backlog.last_entry) > 0));
    return o;
}

static void last_poll_json(json_t *o, int64_t last_poll_wall_ms, int64_t now_wall)
{
    char when[32];

    if (last_poll_wall_ms <= 0) {
        json_object_set_new(o, "last_poll_at", json_null());
        json_object_set_new(o, "last_poll_age_ms", json_null());
        return;
    }
    format_wall_ms(last_poll_wall_ms, when, sizeof(when));
    json_object_set_new(o, "last_poll_at", json_string(when));
    json_object_set_new(
        o, "last_poll_age_ms",
        json_integer(now_wall > last_poll_wall_ms ? now_wall - last_poll_wall_ms : 0));
}

json_t *progress_rm_json_locked(const Board *b, size_t rm)
{
    int64_t now_mono = now_monotonic_ms(), now_wall = now_wall_ms();
    char buf[128];
    const char *reason;
    BoardState state = progress_state_locked(b, rm, now_mono, &reason, buf, sizeof(buf));
    json_t *o = json_object(), *streams = json_array();

    json_object_set_new(o, "name", json_text_string(b->set->models[rm].name));
    json_object_set_new(o, "state", json_string(board_state_name(state)));
    json_object_set_new(o, "reason", reason ? json_text_string(reason) : json_null());
    last_poll_json(o, b->rms[rm].last_poll_wall_ms, now_wall);
    for (size_t s = 0; s < b->set->models[rm].nstreams; s++)
        json_array_append_new(streams, stream_json(b, rm, s, now_wall, now_mono / 1000));
    json_object_set_new(o, "streams", streams);
    return o;
}
