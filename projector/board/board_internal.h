/* board_internal.h - the board's own plumbing, shared by the files of board/ and by
 * nothing outside it: the Board's body, the per-stream record (progress.c) and the
 * registry of /wait waiters (waiters.c).
 *
 * One mutex guards everything; every *_locked function expects it held. The files call
 * downwards only: board.c uses waiters.c and progress.c, waiters.c uses progress.c.
 */
#ifndef PROJECTOR_BOARD_INTERNAL_H
#define PROJECTOR_BOARD_INTERNAL_H

#include <pthread.h>

#include "board/board.h"

#define BOARD_RING_SIZE 4096 /* recent outcomes kept per stream, for late /wait calls */
#define BOARD_RATE_SECONDS 10

typedef struct RingEntry {
    StreamId id;
    BoardOutcomeKind kind;
    char *error; /* owned; dead letters only */
} RingEntry;

typedef struct StreamBoard {
    StreamBacklog backlog; /* as last sampled, lowered by each commit since */
    bool has_position;
    StreamId position;                       /* committed; never moves backwards */
    uint64_t applied, skipped, dead_letters; /* counted by this process's commits */
    uint64_t open_dead_letters; /* in the dead-letter table now (board_set_dead_letters) */
    int64_t rate_second[BOARD_RATE_SECONDS]; /* monotonic second that each bucket counts */
    uint64_t rate_count[BOARD_RATE_SECONDS];
    RingEntry *ring; /* BOARD_RING_SIZE slots, allocated with the first outcome */
    size_t ring_start, ring_count;
} StreamBoard;

/* A histogram of fixed bounds (stats.c): counts[i] for values <= bounds[i] and above the
 * bound before; counts[nbounds] for values above every bound. */
#define BOARD_HIST_MAX 16
typedef struct BoardHistogram {
    const double *bounds;
    size_t nbounds;
    uint64_t counts[BOARD_HIST_MAX + 1];
    uint64_t count;
    double sum;
} BoardHistogram;

/* What /metrics counts of one read model beyond /lag. */
typedef struct RmStats {
    uint64_t batches;
    uint64_t retries[BOARD_RETRY_COUNT];
    bool redis_up, postgres_up;
    BoardHistogram batch_size, apply_seconds, end_to_end_seconds;
} RmStats;

typedef struct RmBoard {
    BoardState fault;          /* STARTING, RUNNING (no fault), RETRYING, STOPPED, REBUILDING */
    char *reason;              /* owned, NULL when none */
    int64_t last_poll_wall_ms; /* 0: never polled */
    int64_t alive_mono_ms;     /* last poll or fault cleared, whichever is later */
    StreamBoard *streams;
    RmStats stats;
} RmBoard;

typedef struct WaitRegistry WaitRegistry;

struct Board {
    const ModelSet *set;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; commits and shutdown */
    bool shut_down;
    int64_t stale_poll_ms;
    RmBoard *rms;
    WaitRegistry *waits;
};

/* ---- progress.c: the record of one stream, and what /lag makes of it ---- */

StreamBoard *progress_stream(const Board *b, size_t rm, size_t stream);
void progress_stream_done(StreamBoard *sb);
/* Counts a commit's outcomes (ascending, none past position), remembers them in the ring
 * and lowers the lag by what they settled. position is already stored. */
void progress_count_commit(StreamBoard *sb, const BoardOutcome *outcomes, size_t n);
/* The outcome of entry id from the ring of recent outcomes; false when the ring lacks it.
 * *ret_error stays valid while the mutex is held. */
bool progress_ring_find(const StreamBoard *sb, StreamId id, BoardOutcomeKind *ret_kind,
                        const char **ret_error);
/* The state /lag shows: a fault wins, then a worker that stopped polling, then the lag.
 * *ret_reason may point into buf. */
BoardState progress_state_locked(const Board *b, size_t rm, int64_t now_mono,
                                 const char **ret_reason, char *buf, size_t size);
/* Adds "state", "reason" (when there is one), "last_applied_id", "entries_behind" and
 * "lag_seconds" of (rm, stream) to obj. */
void progress_position_json_locked(const Board *b, size_t rm, size_t stream, json_t *obj);
/* One read model's /lag object. Caller owns the reference. */
json_t *progress_rm_json_locked(const Board *b, size_t rm);

/* ---- stats.c: the histograms and counters of /metrics ---- */

void stats_init(RmStats *st);
/* Observes the end-to-end latency of the settled outcomes (entry ID's time to now_wall). */
void stats_count_commit(RmStats *st, const BoardOutcome *outcomes, size_t n, int64_t now_wall);

/* ---- waiters.c: the registry of /wait waiters ---- */

/* Wake calls collected under the mutex and run after it is released. */
typedef struct WakeList {
    BoardWakeFn *fns;
    void **args;
    size_t count;
    size_t cap;
} WakeList;

/* Borrows board (and its mutex); starts the timer thread. */
WaitRegistry *waiters_new(Board *board);
/* Stops and joins the timer thread. Called without the mutex; no waiter may be pending. */
WaitRegistry *waiters_free(WaitRegistry *reg);
/* Settles the waiters covered by a commit of (rm, stream) up to position. */
void waiters_on_commit_locked(WaitRegistry *reg, size_t rm, size_t stream, StreamId position,
                              const BoardOutcome *outcomes, size_t n, WakeList *wl);
/* Answers 503 to the waiters still waiting on read model rm, which is now stopped. */
void waiters_on_stop_locked(WaitRegistry *reg, size_t rm, const char *reason, WakeList *wl);
/* Answers every pending waiter as timed out. */
void waiters_on_shutdown_locked(WaitRegistry *reg, WakeList *wl);
/* Runs and frees the collected wake calls; takes the mutex briefly. Called without it. */
void waiters_wake_run(WaitRegistry *reg, WakeList *wl);

#endif
