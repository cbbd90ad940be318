/* wait.h - the /wait waiters of the lag board: registration, settling by commits, answers
 * for stopped read models and shutdown, and the one timer thread that enforces deadlines.
 *
 * The first section is the API that http.c uses. The second is the board's own plumbing
 * between lag.c and wait.c: every *_locked function expects the board mutex held.
 * A waiter is pending until it finishes exactly once (settled, timed out, stopped, shut
 * down); its answer is then fixed and readable without the lock.
 */
#ifndef PROJECTOR_WAIT_H
#define PROJECTOR_WAIT_H

#include <jansson.h>
#include <pthread.h>

#include "board/lag.h"
#include "base/stream_id.h"
#include "base/util.h"

/* ---- waiter API (http.c) ---- */

typedef struct BoardWaiter BoardWaiter;

/* Called once, from whichever thread finishes an armed waiter, without the board mutex. */
typedef void (*BoardWakeFn)(void *arg);

typedef struct BoardWaitRequest {
    const char *stream; /* borrowed for the call */
    StreamId id;
    const char *readmodel; /* NULL: every read model that reads stream */
    unsigned timeout_ms;   /* 0: answer at once */
    const void *owner;     /* groups waiters for board_wait_abort_owner */
    BoardWakeFn wake;
    void *wake_arg;
} BoardWaitRequest;

/* Starts a wait. Returns 0 with *ret set (pending, or already finished when the entry is
 * settled, a read model waited on is stopped, timeout_ms is 0 or the board is shut down),
 * or -PJ_ENOTFOUND with err set when no read model reads the stream, the read model is
 * unknown or does not read the stream. Free *ret with board_wait_free. */
int board_wait_begin(Board *board, const BoardWaitRequest *req, BoardWaiter **ret,
                   PjError *err) PJ_MUSTCHECK;
/* True when the waiter has finished. */
bool board_wait_done(Board *board, BoardWaiter *w);
/* Call once the caller is ready to be woken (its connection suspended). Returns true when
 * the waiter had already finished: wake will never be called, the caller resumes itself.
 * Otherwise wake(wake_arg) is called exactly once when it finishes. */
bool board_wait_arm(Board *board, BoardWaiter *w);
/* The answer of a finished waiter: HTTP status (200, 408 or 503) and body (new reference). */
json_t *board_wait_result(const BoardWaiter *w, unsigned *ret_status);
/* Unregisters a pending waiter and frees it. Accepts NULL; returns NULL. */
BoardWaiter *board_wait_free(Board *board, BoardWaiter *w);
/* Finishes every pending waiter of owner with 503 "shutting down", and returns once no
 * wake call of any waiter is still running. */
void board_wait_abort_owner(Board *board, const void *owner);
/* Number of pending waiters. */
size_t board_wait_pending(Board *board);

/* Test hook: how long without a poll makes a worker look stuck (default 15000 ms). */
void board_set_stale_poll_ms(Board *board, unsigned ms);

/* ---- board plumbing (lag.c <-> wait.c) ---- */

typedef struct WaitRegistry WaitRegistry;

/* Wake calls collected under the mutex and run after it is released. */
typedef struct WakeList {
    BoardWakeFn *fns;
    void **args;
    size_t count;
    size_t cap;
} WakeList;

/* Borrows board and mu (the board mutex); starts the timer thread. */
WaitRegistry *wait_registry_new(Board *board, pthread_mutex_t *mu);
/* Stops and joins the timer thread. Called without the mutex; no waiter may be pending. */
WaitRegistry *wait_registry_free(WaitRegistry *reg);

/* Settles the waiters covered by a commit of (rm, stream) up to position. */
void wait_on_commit_locked(WaitRegistry *reg, size_t rm, size_t stream, StreamId position,
                           const BoardOutcome *outcomes, size_t n, WakeList *wl);
/* Answers 503 to the waiters still waiting on read model rm, which is now stopped. */
void wait_on_stop_locked(WaitRegistry *reg, size_t rm, const char *reason, WakeList *wl);
/* Answers every pending waiter as timed out. */
void wait_on_shutdown_locked(WaitRegistry *reg, WakeList *wl);
/* Runs and frees the collected wake calls; takes the mutex briefly. Called without it. */
void wait_wake_run(WaitRegistry *reg, WakeList *wl);

/* Implemented by lag.c; board mutex held. */
WaitRegistry *lag_registry(Board *board);
bool lag_is_shut_down_locked(const Board *board);
/* The fault state set by the worker (STARTING, RUNNING, RETRYING, STOPPED, REBUILDING). */
BoardState lag_fault_locked(const Board *board, size_t rm, const char **ret_reason);
/* The committed position; false when nothing is known yet. */
bool lag_position_locked(const Board *board, size_t rm, size_t stream, StreamId *ret);
/* The outcome of entry id from the ring of recent outcomes; false when the ring lacks it.
 * *ret_error stays valid while the mutex is held. */
bool lag_ring_find_locked(const Board *board, size_t rm, size_t stream, StreamId id,
                          BoardOutcomeKind *ret_kind, const char **ret_error);
/* Adds "state", "reason" (when there is one), "last_applied_id", "entries_behind" and
 * "lag_seconds" of (rm, stream) to obj. */
void lag_position_json_locked(Board *board, size_t rm, size_t stream, json_t *obj);

/* A JSON string that never fails: bytes that are not valid UTF-8 become '?'. */
json_t *wait_json_string(const char *s);

#endif
