/* lag.h - the shared board of read-model progress: state, positions, lag, rates, dead
 * letters, and the /wait waiters that a commit settles.
 *
 * Workers write to it (one worker per read model); the HTTP server and the lookup
 * ordering rule read from it. Every function is thread-safe. Indices: rm is the model's
 * index in the ModelSet, stream is the index into that model's streams[].
 */
#ifndef PROJECTOR_LAG_H
#define PROJECTOR_LAG_H

#include <jansson.h>

#include "model/model.h"
#include "base/stream_id.h"
#include "base/util.h"

typedef enum {
    RM_STATE_STARTING,    /* not yet connected for the first time */
    RM_STATE_RUNNING,     /* caught up */
    RM_STATE_CATCHING_UP, /* entries waiting on at least one stream */
    RM_STATE_RETRYING,    /* a transient fault (reason says which); will resume by itself */
    RM_STATE_STOPPED,     /* cannot progress until an operator acts (reason says why) */
    RM_STATE_REBUILDING
} RmState;

/* "starting", "running", "catching_up", "retrying", "stopped", "rebuilding". */
const char *rm_state_name(RmState state);

typedef struct LagBoard LagBoard;

/* Borrows set (names, streams), which must outlive the board. */
LagBoard *lag_board_new(const ModelSet *set);
/* Accepts NULL; returns NULL. No waiter may still be registered. */
LagBoard *lag_board_free(LagBoard *board);
const ModelSet *lag_board_models(const LagBoard *board);

/* ---- worker side ---- */

/* Sets the fault state: RM_STATE_RETRYING or RM_STATE_STOPPED with a reason (copied), or
 * RM_STATE_RUNNING to clear a fault (running vs catching_up is then derived from the
 * samples). A change to STOPPED answers every /wait waiting on that read model. */
void lag_set_state(LagBoard *board, size_t rm, RmState state, const char *reason);
/* Records that the worker just polled Redis (wall clock now). */
void lag_polled(LagBoard *board, size_t rm);

typedef struct LagSample {
    bool has_last_entry;
    StreamId last_entry;        /* the stream's last entry ID in Redis */
    uint64_t entries_behind;    /* entries not yet applied (undelivered + pending) */
    int64_t oldest_unapplied_ms; /* ms part of the oldest entry not yet applied, -1 if none */
} LagSample;

void lag_sampled(LagBoard *board, size_t rm, size_t stream, const LagSample *sample);
/* The dead-letter count read from PostgreSQL at start. */
void lag_set_dead_letters(LagBoard *board, size_t rm, size_t stream, uint64_t total);

typedef enum {
    OUTCOME_NONE = 0, /* not settled yet */
    OUTCOME_APPLIED,
    OUTCOME_DEAD_LETTERED,
    OUTCOME_SKIPPED /* the type is not handled by the read model */
} EntryOutcomeKind;

typedef struct EntryOutcome {
    StreamId id;
    EntryOutcomeKind outcome;
    const char *error; /* OUTCOME_DEAD_LETTERED: the error text (borrowed for the call) */
} EntryOutcome;

/* After a commit: the stream's new position (never behind the old one) and the outcome
 * of each entry of the batch on that stream, ascending. Counts them, adjusts the lag and
 * settles every /wait waiter whose entry is now covered. Also used with n == 0 to set the
 * position loaded from the checkpoint at start. */
void lag_committed(LagBoard *board, size_t rm, size_t stream, StreamId position,
                   const EntryOutcome *outcomes, size_t n);

/* Blocks until read model rm has committed position >= target on its stream, the timeout
 * passes (-PJ_ETIMEDOUT) or lag_shutdown is called (-PJ_ESTOPPED). No busy loop. */
int lag_wait_position(LagBoard *board, size_t rm, size_t stream, StreamId target,
                      int timeout_ms) PJ_MUSTCHECK;
/* Wakes every blocked lag_wait_position and answers every waiter (as a timeout). */
void lag_shutdown(LagBoard *board);

/* ---- reader side ---- */

/* The /lag document for one read model (rm >= 0) or all of them (rm == -1):
 * {"readmodels":[{"name","state","reason","last_poll_at","last_poll_age_ms",
 *   "streams":[{"stream","last_entry_id","last_applied_id","entries_behind",
 *               "lag_seconds","events_per_second","applied","skipped","dead_letters"}]}]}
 * for all, or the single object for one. Caller owns the reference. */
json_t *lag_json(LagBoard *board, int rm);
/* True when no read model is retrying, stopped or starting. */
bool lag_ready(LagBoard *board);

#endif
