/* partition.h - parallel apply: the statements of a large batch spread over several
 * PostgreSQL sessions by a hash of the row each one touches, committed exactly once.
 *
 * Partition 0 runs on the read model's own session, in the transaction that moves the
 * checkpoint; partitions 1.. run on sessions of their own and commit just before it, each
 * recording how far it got in partition_checkpoints (migrations/004). After a crash between
 * the two, the rows ahead of the checkpoint say which entries a partition has applied
 * already: the Recovery below.
 */
#ifndef PROJECTOR_PARTITION_H
#define PROJECTOR_PARTITION_H

#include "apply/applier.h"
#include "base/config.h"
#include "base/stream_id.h"
#include "base/util.h"
#include "model/model.h"
#include "sink/pg.h"

#define PARTITION_MAX PARALLEL_APPLY_MAX
#define PARTITION_NONE (-1)

/* The partition of an event's statements stmts[0 .. n) among nparts: the one of the row
 * they all touch, chosen by a hash of its key (0 when there is no statement), or
 * PARTITION_NONE when one of them has no single row (see applier_row_key) or they fall in
 * different partitions. key is scratch space. */
int partition_of(const ApplierPlan *plan, const BoundStatement *stmts, size_t n, int nparts,
                 StrBuf *key);

/* Prepares the partition checkpoint statement on this session. */
int partition_prepare(Pg *pg, const char *schema, PjError *err) PJ_MUSTCHECK;
/* Queues "partition part of nparts has applied stream up to id" into the pipeline. */
void partition_send_checkpoint(Pg *pg, const char *readmodel, const char *stream, int part,
                               int nparts, StreamId id);

/* Shares applied ahead of the checkpoint by partitions whose batch did not commit. */
typedef struct Recovery {
    int nparts; /* the partitioning they used; 0: nothing ahead */
    size_t nstreams;
    StreamId *upto; /* [stream * PARTITION_MAX + part]: applied up to, 0-0 none */
} Recovery;

/* Loads the partition rows of m that are ahead of checkpoint[0 .. m->nstreams). */
int partition_load(Pg *pg, const char *schema, const Model *m, const StreamId *checkpoint,
                   Recovery *ret, PjError *err) PJ_MUSTCHECK;
/* Has partition part (of r->nparts) applied entry id of stream already? */
bool partition_applied(const Recovery *r, size_t stream, int part, StreamId id);
/* Forgets the rows the checkpoint has caught up with; true while some are still ahead. */
bool partition_recovery_pending(Recovery *r, const StreamId *checkpoint);
void partition_recovery_done(Recovery *r);

#endif
