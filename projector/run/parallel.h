/* parallel.h - parallel apply (private to run/): a large batch applied over parallel_apply
 * PostgreSQL sessions, partitioned by the row each event touches (sink/partition.h), and
 * the recovery of such a batch interrupted between its partitions' commit and its own.
 */
#ifndef PROJECTOR_PARALLEL_H
#define PROJECTOR_PARALLEL_H

#include "run/batch.h"
#include "sink/partition.h"
#include "sink/pg.h"

typedef struct Parallel Parallel;

/* The parallel apply state of a read model of nstreams streams. Free with parallel_free. */
Parallel *parallel_new(size_t nstreams);
/* Frees par (NULL accepted); returns NULL. */
Parallel *parallel_free(Parallel *par);

/* At the start of a session on c->pg, once c->checkpoint is loaded: reads what partitions
 * of an interrupted batch applied ahead of it, and says so in the log. Errors are
 * PostgreSQL's. */
int parallel_recover(Parallel *par, const BatchCtx *c, PjError *err) PJ_MUSTCHECK;
/* What parallel_recover found (borrowed from par): for batch_run_classify. */
const Recovery *parallel_recovery(const Parallel *par);

/* Applies batch b (classified, prepared) over parallel_apply sessions: c->pg and parts[1 ..
 * parallel_apply) (borrowed, connected, statements prepared; parts[0] unused), when
 * parallel apply takes it. *ret_done is false when it was not tried, or when PostgreSQL
 * refused an event of a partition (then every partition rolled back and the caller
 * commits the batch on c->pg alone, which isolates the event). Calls c->hooks.read_ahead
 * once the partitions are sent. A negative return (transient) means the sessions must be
 * renewed: some partitions may have committed, which the next parallel_recover finds. */
int parallel_commit(Parallel *par, BatchRun *b, const BatchCtx *c, Pg *const *parts, bool *ret_done,
                    PjError *err) PJ_MUSTCHECK;

#endif
