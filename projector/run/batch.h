/* batch.h - one batch of a read model (private to run/): its entries read and classified,
 * sent with the checkpoints that cover them as one transaction, a bad event isolated and
 * dead-lettered, the outcomes published to the board and the entries acknowledged.
 *
 * The loop (worker.c) owns the sessions, the checkpoints and the backoff, and lends them
 * to each call through a BatchCtx; a BatchRun owns only what is made of one batch.
 */
#ifndef PROJECTOR_BATCH_H
#define PROJECTOR_BATCH_H

#include <stdint.h>

#include "apply/applier.h"
#include "base/config.h"
#include "base/stream_id.h"
#include "base/util.h"
#include "board/board.h"
#include "model/model.h"
#include "sink/partition.h"
#include "sink/pg.h"
#include "source/reader.h"

#define BATCH_PART_ALL (-1)    /* batch_run_send_merged: every statement of the batch */
#define BATCH_PART_SERIAL (-2) /* after the partitions, on the main session (parallel apply) */

typedef struct BatchRun BatchRun;

/* What a batch asks of the loop that runs it; every hook gets arg. */
typedef struct BatchHooks {
    void *arg;
    /* While the server runs this batch: reads and classifies the next one (or does nothing). */
    void (*read_ahead)(void *arg);
    /* The delay before an event PostgreSQL refused attempts (1, 2, ...) times is sent again. */
    int (*retry_delay_ms)(void *arg, int attempts);
    /* Sleeps ms, waking early on a stop; false when the daemon is stopping. */
    bool (*pause)(void *arg, int ms);
} BatchHooks;

/* Counted by the batches, read and reset by the loop's summary line. */
typedef struct BatchStats {
    uint64_t applied, skipped, dead;
    uint64_t gaps; /* gaps in streams reported since start */
} BatchStats;

/* After PostgreSQL refused events of a batch, this many batches go on as below. */
#define BATCH_REFUSING_BATCHES 8

/* What the refusals of the last batches of a read model mean for the next ones, so a
 * flood of bad events does not cost every batch a refused try. */
typedef struct Refusals {
    unsigned isolate; /* batches still to isolate at once, without a first try */
    unsigned probe;   /* batches still to probe before they are sent (batch_run_probe) */
} Refusals;

/* What the loop lends to a batch step; every pointer is borrowed for the call. */
typedef struct BatchCtx {
    const Config *cfg;
    const Model *m;
    const ApplierPlan *plan;
    const Recovery *recovery; /* partitions applied ahead of the checkpoint */
    Reader *reader;           /* NULL before the session is open */
    const char *group;        /* the read model's consumer group */
    Pg *pg;                   /* the main session: NULL before it is open */
    Board *board;
    size_t rm;            /* index of the read model on the board */
    const char *log_ctx;  /* log context */
    StreamId *checkpoint; /* per stream: last committed entry, moved by batch_run_publish */
    int64_t *position;    /* per stream: the checkpoint's entries-read position, -1 unknown */
    BatchStats *stats;
    char **stop_reason; /* on_error: stop - why the read model stopped (first reason kept) */
    Refusals *refusals; /* how PostgreSQL treated the last batches */
    BatchHooks hooks;
} BatchCtx;

/* ---- lifecycle ---- */

/* An empty batch for a read model of nstreams streams. Free with batch_run_free. */
BatchRun *batch_run_new(size_t nstreams);
/* Frees b (NULL accepted); returns NULL. */
BatchRun *batch_run_free(BatchRun *b);
/* Forgets the entries and what was made of them: the batch is empty again. */
void batch_run_reset(BatchRun *b);

/* ---- reading and classifying ---- */

/* Reads the next batch into b (emptied first) through c->reader: per stream, this
 * consumer's pending entries after after[s], or new ones where after[s] is NULL. Only a
 * read of new entries brings the stream counts that batch_run_prepare checks for gaps.
 * block_ms as for reader_read. Errors are the reader's; b is then to be reset. */
int batch_run_read(BatchRun *b, const BatchCtx *c, const char *const *after, int block_ms,
                   PjError *err) PJ_MUSTCHECK;
/* The entries read, in reply order (borrowed from b until its next read or reset). */
const Batch *batch_run_entries(const BatchRun *b);
/* How many entries b holds (0: none read). */
size_t batch_run_size(const BatchRun *b);
/* Decides what to do with each entry: acknowledge only (at or below c->checkpoint), skip,
 * dead-letter, apply, or nothing more (applied by a partition, c->recovery). Never fails:
 * an entry that cannot be decoded or bound is to be dead-lettered. */
void batch_run_classify(BatchRun *b, const BatchCtx *c);
/* The highest entry of stream s that b settles, in *ret; false (and *ret untouched) when
 * it settles none. */
bool batch_run_top(const BatchRun *b, size_t s, StreamId *ret);

/* ---- settling ---- */

/* Before the commit: logs the entries of each stream lost before this batch (gaps, counted
 * in c->stats), works out the positions the checkpoints take, and with on_error: stop
 * holds every entry of a stream from its first dead one on (setting *c->stop_reason). */
void batch_run_prepare(BatchRun *b, const BatchCtx *c);
/* Does the batch settle any entry (anything but acknowledge-only and held ones)? */
bool batch_run_any_to_settle(const BatchRun *b);
/* Commits the batch and its checkpoints on c->pg in one transaction, isolating and
 * dead-lettering each event PostgreSQL refuses for good (c->hooks pace the retries; the
 * read-ahead hook runs once, during the first round trip). Returns 0 when committed,
 * -PJ_ESTOPPED on a stop during a retry's pause (nothing committed), another negative code
 * when the session must be renewed (nothing committed either); err says why. */
int batch_run_commit(BatchRun *b, const BatchCtx *c, PjError *err) PJ_MUSTCHECK;
/* Before the commit, while c->refusals->probe: the events whose lookup finds no row for
 * a NOT NULL column (applier.h's probes) become dead letters. Returns 0 (a probe that
 * PostgreSQL cannot run leaves the batch as it is) or a negative code when the session
 * must be renewed. */
int batch_run_probe(BatchRun *b, const BatchCtx *c, PjError *err) PJ_MUSTCHECK;
/* After the commit: moves c->checkpoint and c->position, counts in c->stats and tells the
 * board each settled entry's outcome (which wakes /wait callers). */
void batch_run_publish(BatchRun *b, const BatchCtx *c);
/* Queues the acknowledgement of every entry but the held ones on c->reader (reader_ack).
 * Call only once the transaction that settled them has committed. */
int batch_run_ack(const BatchRun *b, const BatchCtx *c, PjError *err) PJ_MUSTCHECK;

/* ---- for parallel apply (parallel.c) ---- */

/* Entry i (of batch_run_entries), when the batch applies it: true, with its stream and
 * its bound statements (borrowed from b); false for any other entry. */
bool batch_run_applies(const BatchRun *b, size_t i, size_t *ret_stream,
                       const BoundStatement **ret_stmts, size_t *ret_n);
/* Puts applied entry i in partition part (or BATCH_PART_SERIAL) for batch_run_send_merged. */
void batch_run_set_part(BatchRun *b, size_t i, int part);
/* How many entries the batch applies in partition part. */
size_t batch_run_count_part(const BatchRun *b, int part);
/* Queues the checkpoint updates of the batch into c->pg's open pipeline. They go first:
 * their row locks serialise concurrent batches of this read model, and one that finds a
 * checkpoint moved under it fails before applying anything. */
void batch_run_send_checkpoints(const BatchRun *b, const BatchCtx *c);
/* Queues the set-based run into pg's open pipeline: the dead letters (on c->pg, with
 * BATCH_PART_ALL or partition 0), then the statements of the entries of partition part (or
 * all of them) in the groups of merge.h. A failure's tag is an entry's index, or a group
 * that batch_run_commit splits. */
void batch_run_send_merged(BatchRun *b, const BatchCtx *c, Pg *pg, int part);

#endif
