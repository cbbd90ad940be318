/* parallel.c - parallel apply: which events of a batch go to which session, the partitions
 * sent and committed first, then the serial part and the checkpoints on the main session.
 *
 * Owns the recovery state (partitions applied ahead of the checkpoint) and the per-stream
 * serial flags of the batch in flight; the sessions are the loop's. Invariant: a batch
 * either commits on every session, rolls back on every session, or leaves partition rows
 * ahead of the checkpoint that say which events are not to be applied again.
 */
#include "run/parallel.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"

struct Parallel {
    Recovery recovery; /* partitions applied ahead of the checkpoint */
    bool *serial;      /* per stream: this batch's events run after the partitions */
};

Parallel *parallel_new(size_t nstreams)
{
    Parallel *par = xcalloc(1, sizeof *par);
    par->serial = xcalloc(nstreams, sizeof *par->serial);
    return par;
}

Parallel *parallel_free(Parallel *par)
{
    if (par == NULL)
        return NULL;
    partition_recovery_done(&par->recovery);
    free(par->serial);
    free(par);
    return NULL;
}

int parallel_recover(Parallel *par, const BatchCtx *c, PjError *err)
{
    int rc = partition_load(c->pg, c->cfg->pg_schema, c->m, c->checkpoint, &par->recovery, err);
    if (rc == 0 && partition_recovery_pending(&par->recovery, c->checkpoint))
        log_info(c->log_ctx,
                 "a batch over %d sessions was interrupted after some of its "
                 "partitions committed; their share is not applied again",
                 par->recovery.nparts);
    return rc;
}

const Recovery *parallel_recovery(const Parallel *par)
{
    return &par->recovery;
}

static Pg *session(const BatchCtx *c, Pg *const *parts, int part)
{
    return part == 0 ? c->pg : parts[part];
}

/* Puts each applied event in the partition of its row, and marks the streams whose events
 * must not be split: those with an event that has no single row. */
static bool split_events(Parallel *par, BatchRun *b, const BatchCtx *c, int n)
{
    StrBuf key = {0};
    bool *serial = par->serial, any_split = false;
    size_t s, nstmts;
    const BoundStatement *stmts;
    memset(serial, 0, c->m->nstreams * sizeof *serial);
    for (size_t i = 0; i < batch_run_size(b); i++) {
        if (!batch_run_applies(b, i, &s, &stmts, &nstmts))
            continue;
        int part = partition_of(c->plan, stmts, nstmts, n, &key);
        batch_run_set_part(b, i, part);
        serial[s] |= part == PARTITION_NONE;
    }
    strbuf_done(&key);
    for (size_t i = 0; i < batch_run_size(b); i++) {
        if (!batch_run_applies(b, i, &s, &stmts, &nstmts))
            continue;
        if (serial[s])
            batch_run_set_part(b, i, BATCH_PART_SERIAL);
        else
            any_split = true;
    }
    return any_split;
}

/* A batch goes over several sessions when parallel_apply allows, the read model is behind
 * (the batch is at least half the limit, as for reading ahead), and no interrupted batch
 * is being recovered. Statements on rows of different partitions commute, so each
 * partition applying its share in batch order has the effect of the whole batch in order.
 * A stream whose events in the batch include one that may touch rows it does not name (a
 * fan-out update, a lookup into the model's own table) is not split: its events run in
 * order on the main session after the partitions have committed (the order between
 * streams is free, and so the serial part sees every row as the partitions left it). */
static bool assign_partitions(Parallel *par, BatchRun *b, const BatchCtx *c)
{
    const Config *cfg = c->cfg;
    int n = cfg->parallel_apply;
    if (n < 2 || !cfg->set_based || c->m->on_error == MODEL_ON_ERROR_STOP ||
        batch_run_size(b) * 2 < (size_t)cfg->batch ||
        partition_recovery_pending(&par->recovery, c->checkpoint))
        return false;
    return split_events(par, b, c, n);
}

/* The serial part, in the main session's open transaction once the partitions have
 * committed. Any failure is reported as transient: the partitions are committed, so the
 * batch must be delivered again to a new session, which knows what they applied (and then
 * isolates a bad event on one session). */
static int send_serial(BatchRun *b, const BatchCtx *c, PjError *err)
{
    long failed;
    int rc = pg_pipeline_begin(c->pg, err);
    if (rc < 0)
        return rc;
    batch_run_send_merged(b, c, c->pg, BATCH_PART_SERIAL);
    return pg_pipeline_run(c->pg, &failed, err) < 0 ? -PJ_ETRANSIENT : 0;
}

/* Sends partition part's share in a transaction that stays open: the main session (0) also
 * moves the checkpoints and writes the dead letters; the others their partition rows. */
static int send_partition(const Parallel *par, BatchRun *b, const BatchCtx *c, Pg *pg, int part,
                          PjError *err)
{
    int rc = pg_pipeline_begin(pg, err);
    if (rc < 0)
        return rc;
    pg_pipeline_send_begin(pg);
    if (part == 0)
        batch_run_send_checkpoints(b, c);
    batch_run_send_merged(b, c, pg, part);
    for (size_t s = 0; part > 0 && s < c->m->nstreams; s++) {
        StreamId top;
        /* A serial stream's events are the main session's: no partition applies them. */
        if (!par->serial[s] && batch_run_top(b, s, &top))
            partition_send_checkpoint(pg, c->m->name, c->m->streams[s], part,
                                      c->cfg->parallel_apply, top);
    }
    return pg_pipeline_flush(pg, err);
}

/* Commits or rolls back the open transactions of partitions [first, last), all at once. */
static int end_partitions(const BatchCtx *c, Pg *const *parts, int first, int last, bool commit,
                          PjError *err)
{
    int rc = 0;
    bool sent[PARTITION_MAX] = {false};
    PjError e;
    for (int p = first; p < last; p++) {
        int r = pg_tx_end_send(session(c, parts, p), commit, &e);
        sent[p] = r == 0;
        if (r < 0 && rc == 0) {
            rc = r;
            *err = e;
        }
    }
    for (int p = first; p < last; p++) {
        int r = sent[p] ? pg_tx_end_wait(session(c, parts, p), commit, &e) : 0;
        if (r < 0 && rc == 0) {
            rc = r;
            *err = e;
        }
    }
    return rc < 0 ? -PJ_ETRANSIENT : 0;
}

/* Waits for the pipelines of the n partitions. *ret_refused tells whether PostgreSQL
 * refused an event of one; any other failure is transient. */
static int finish_partitions(const BatchCtx *c, Pg *const *parts, int n, bool *ret_refused,
                             PjError *err)
{
    int rc = 0;
    *ret_refused = false;
    for (int p = 0; p < n; p++) {
        long failed;
        PjError e;
        int r = pg_pipeline_finish(session(c, parts, p), &failed, &e);
        if (r == -PJ_EPERMANENT && failed != -1) {
            *ret_refused = true;
            log_debug(c->log_ctx, "partition %d of a batch failed (%s), applying it on one session",
                      p, e.message);
        } else if (r < 0 && rc == 0) {
            rc = -PJ_ETRANSIENT; /* a bookkeeping statement or the connection */
            *err = e;
        }
    }
    return rc;
}

/* Partitions 1.. commit first, then the main session runs the serial part and commits with
 * the checkpoints. A failure between the two leaves partition rows ahead of the
 * checkpoint, which the next session (any error renews them) honours. */
int parallel_commit(Parallel *par, BatchRun *b, const BatchCtx *c, Pg *const *parts, bool *ret_done,
                    PjError *err)
{
    *ret_done = false;
    if (!assign_partitions(par, b, c))
        return 0;
    int n = c->cfg->parallel_apply, rc = 0;
    for (int p = 0; rc == 0 && p < n; p++)
        rc = send_partition(par, b, c, session(c, parts, p), p, err);
    if (rc < 0)
        return rc;
    c->hooks.read_ahead(c->hooks.arg); /* while the server runs the batch */
    bool refused;
    rc = finish_partitions(c, parts, n, &refused, err);
    if (rc == 0 && refused)
        return end_partitions(c, parts, 0, n, false, err);
    if (rc == 0)
        rc = end_partitions(c, parts, 1, n, true, err);
    size_t serial = batch_run_count_part(b, BATCH_PART_SERIAL);
    if (rc == 0 && serial > 0)
        rc = send_serial(b, c, err);
    if (rc == 0)
        rc = end_partitions(c, parts, 0, 1, true, err);
    *ret_done = rc == 0;
    if (*ret_done)
        log_debug(c->log_ctx,
                  "applied a batch of %zu entries over %d sessions, %zu events after "
                  "them on the main session",
                  batch_run_size(b), n, serial);
    return rc;
}
