/* board.h - the progress board: what every read model has applied, how far behind it is,
 * and the /wait waiters that its commits settle.
 *
 * Workers write to it (one worker per read model); the HTTP server and the lookup ordering
 * rule read from it. Every function is thread-safe. Indices: rm is the model's index in
 * the ModelSet, stream the index into that model's streams[]. Inside: board.c (lifecycle,
 * the worker side, /lag), waiters.c (/wait), progress.c (the per-stream record), stats.c
 * (the histograms and counters of /metrics).
 */
#ifndef PROJECTOR_BOARD_H
#define PROJECTOR_BOARD_H

#include <jansson.h>

#include "base/entry.h"
#include "base/stream_id.h"
#include "base/util.h"
#include "board/board_types.h"
#include "model/model.h"

/* Borrows set (names, streams), which must outlive the board. Starts the waiters' timer
 * thread. */
Board *board_new(const ModelSet *set);
/* Accepts NULL; returns NULL. No waiter may still be registered. */
Board *board_free(Board *board);
const ModelSet *board_models(const Board *board);

/* ---- worker side ---- */

/* Sets the fault state: BOARD_STATE_RETRYING or BOARD_STATE_STOPPED with a reason (copied), or
 * BOARD_STATE_RUNNING to clear a fault (running vs catching_up is then derived from the
 * samples). A change to STOPPED answers every /wait waiting on that read model. */
void board_set_state(Board *board, size_t rm, BoardState state, const char *reason);
/* Records that the worker just polled Redis (wall clock now). */
void board_polled(Board *board, size_t rm);

void board_sampled(Board *board, size_t rm, size_t stream, const StreamBacklog *sample);
/* The dead letters of the stream in the dead-letter table now, as read from PostgreSQL
 * (at start and every few seconds; a retry or discard by `projector dlq` lowers it). */
void board_set_dead_letters(Board *board, size_t rm, size_t stream, uint64_t total);

/* After a commit: the stream's new position (never behind the old one) and the outcome
 * of each entry of the batch on that stream, ascending. Counts them, adjusts the lag and
 * settles every /wait waiter whose entry is now covered. Also used with n == 0 to set the
 * position loaded from the checkpoint at start. */
void board_committed(Board *board, size_t rm, size_t stream, StreamId position,
                     const BoardOutcome *outcomes, size_t n);

/* After a committed batch of entries (all its streams), applied in apply_ms (the commit,
 * from the first statement sent): counted in the batch-size and apply-time histograms. */
void board_batch_done(Board *board, size_t rm, size_t entries, int64_t apply_ms);
/* The worker dropped its sessions to try again, for cause. */
void board_retried(Board *board, size_t rm, BoardRetryCause cause);
/* Whether the worker's Redis and PostgreSQL sessions are up. */
void board_connections(Board *board, size_t rm, bool redis_up, bool postgres_up);

/* Blocks until read model rm has committed position >= target on its stream, the timeout
 * passes (-PJ_ETIMEDOUT) or board_shutdown is called (-PJ_ESTOPPED). No busy loop. */
int board_wait_position(Board *board, size_t rm, size_t stream, StreamId target,
                        int timeout_ms) PJ_MUSTCHECK;
/* Wakes every blocked board_wait_position and answers every waiter (as a timeout). */
void board_shutdown(Board *board);

/* ---- /wait ---- */

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

/* ---- /lag and /readyz ---- */

/* The /lag document for one read model (rm >= 0) or all of them (rm == -1):
 * {"readmodels":[{"name","state","reason","last_poll_at","last_poll_age_ms",
 *   "streams":[{"stream","last_entry_id","last_applied_id","entries_behind",
 *               "lag_seconds","events_per_second","applied","skipped","dead_letters" (open
 *               in the table), "dead_lettered" (by this process)}]}]}
 * for all, or the single object for one. Caller owns the reference. */
json_t *board_json(Board *board, int rm);
/* What /metrics shows beyond /lag, per read model: {"readmodels":[{"name", "batches",
 * "retries":{cause:n}, "redis_up", "postgres_up", "histograms":{"batch_size",
 * "apply_seconds", "end_to_end_seconds": {"bounds":[...], "counts":[...] (per bucket, the
 * last one past every bound), "count", "sum"}}}]}. Caller owns the reference. */
json_t *board_metrics_json(Board *board);
/* The counters of a board (events applied, skipped and dead-lettered per stream; batches,
 * retries and histograms per read model), kept by name across a reload: taken from the
 * board that stops, added to the one that starts, so /metrics' counters only ever grow
 * for the life of the process. */
typedef struct BoardTally BoardTally;
BoardTally *board_tally_take(Board *board);
/* Adds the tally to the read models and streams of board that have the same names, and
 * hands them the recent outcomes it holds, so a /wait for an entry settled before the
 * reload still gets its outcome (tally NULL: nothing). */
void board_tally_restore(Board *board, BoardTally *tally);
/* Accepts NULL; returns NULL. */
BoardTally *board_tally_free(BoardTally *tally);
/* True when no read model is retrying, stopped or starting. */
bool board_ready(Board *board);

/* Test hook: how long without a poll makes a worker look stuck (default 15000 ms). */
void board_set_stale_poll_ms(Board *board, unsigned ms);

#endif
