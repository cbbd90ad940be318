/* batch_internal.h - the inside of a BatchRun, shared by batch.c (reading, classifying,
 * publishing, acknowledging), batch_commit.c (the transaction and the isolation of the
 * events PostgreSQL refuses) and batch_probe.c. Not an interface: only those files include
 * it.
 *
 * Invariant: once classified, items[i] is batch.entries[i] for every i < nitems.
 */
#ifndef PROJECTOR_BATCH_INTERNAL_H
#define PROJECTOR_BATCH_INTERNAL_H

#include "apply/merge.h"
#include "run/batch.h"

typedef enum {
    BATCH_ITEM_ACK_ONLY, /* at or below the checkpoint: settled before, acknowledge only */
    BATCH_ITEM_APPLY,
    BATCH_ITEM_DONE, /* applied by a partition whose batch did not commit (partition.h) */
    BATCH_ITEM_SKIP, /* type not handled */
    BATCH_ITEM_DEAD, /* dead-lettered in this transaction */
    BATCH_ITEM_HOLD  /* on_error: stop - at or after a bad event: not settled, not acknowledged */
} ItemKind;

/* One entry of the batch and what this read model does with it. */
typedef struct Item {
    const Entry *entry;
    ItemKind kind;
    size_t first_stmt, nstmts; /* BATCH_ITEM_APPLY: range in the batch's Bound */
    char *event_type;          /* may be NULL */
    char *error;               /* BATCH_ITEM_DEAD */
    char sqlstate[6];
    int attempts; /* times PostgreSQL refused it in this batch */
    int part;     /* parallel apply: the partition of its statements, or BATCH_PART_SERIAL */
    bool refused; /* refused in the isolating try under way (error, sqlstate say why) */
} Item;

struct BatchRun {
    Batch batch;
    Bound bound;
    Item *items; /* items[i] is batch.entries[i] once classified */
    size_t nitems, items_cap;
    int64_t *batch_position; /* per stream: position of the batch's last entry, -1 unknown */
    StreamCounts *counts;    /* per stream: as Redis reported them right after the read */
    bool counts_valid;
    /* the set-based run, rebuilt at each send */
    MergePlan merge;
    const BoundStatement **stmts; /* BATCH_ITEM_APPLY statements in batch order */
    size_t *stmt_item;            /* the item of each */
    size_t stmts_cap;
};

/* Makes it a dead letter with error and sqlstate (NULL: none), copied. */
void batch_item_dead(Item *it, const char *error, const char *sqlstate);
/* on_error: stop - holds item bad and every later entry of its stream, and keeps the first
 * reason the read model stops for in *c->stop_reason. */
void batch_run_hold_from(BatchRun *b, const BatchCtx *c, size_t bad);
/* How many entries of stream s the batch applies (or found applied by a partition). */
uint64_t batch_run_count_applied(const BatchRun *b, size_t s);
/* The entries-read position the checkpoint of stream s takes with this batch, -1 unknown. */
int64_t batch_run_settled_position(const BatchRun *b, size_t s);

#endif
