/* worker.c - the read loop of one read model: session set-up, batches, retries.
 *
 * Owns its Redis and PostgreSQL sessions, the compiled applier plan, the in-memory copy of
 * its checkpoints and the two batches in its hands (the one applied, the one read ahead);
 * what a batch is made into is batch.c's, parallel apply parallel.c's. Invariant: an entry
 * is acknowledged in Redis only after the transaction that settled it (applied, skipped or
 * dead-lettered, together with the checkpoint covering it) has committed; so after any
 * crash, entries are either pending (re-read, and skipped if at or below the checkpoint)
 * or done.
 */
#include "run/worker.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apply/applier.h"
#include "base/backoff.h"
#include "base/jsonarena.h"
#include "base/log.h"
#include "os/now.h"
#include "run/batch.h"
#include "run/parallel.h"
#include "sink/checkpoint.h"
#include "sink/partition.h"
#include "sink/pg.h"
#include "source/reader.h"

#define SAMPLE_EVERY_MS 250
#define LOOKUP_WAIT_SLICE_MS 1000
#define IDLE_PG_CHECK_MS 3000
#define PAUSE_SLICE_MS 50    /* how often a pause between retries looks for a stop */
#define STOPPED_POLL_MS 1000 /* a stopped read model still says it is alive this often */

struct Worker {
    WorkerOpts o;
    const Model *m;
    pthread_t thread;
    char ctx[96]; /* log context */
    char *group;
    Reader *reader;
    Reader *sampler;       /* while the sessions are down: Redis alone, for the lag (sample_lag) */
    bool checkpoint_known; /* w->checkpoint was loaded at least once */
    Pg *pg;
    Pg *parts[PARTITION_MAX]; /* parallel apply: the sessions of partitions 1.. */
    Parallel *parallel;
    ApplierPlan *plan;
    StreamId *checkpoint; /* per stream: last committed (settled) entry */
    int64_t *position;    /* per stream: the checkpoint's entries-read position, -1 unknown */
    char (*cursor)[STREAM_ID_BUFSZ]; /* per stream, history phase: re-read pending after this */
    bool *history;                   /* per stream: still re-reading pending entries */
    BatchRun *cur;                   /* the batch being applied */
    BatchRun *ahead; /* the next one, read and classified while cur commits (or empty) */
    Backoff backoff; /* the sessions' retries, and each refused event's */
    bool faulted;
    int64_t next_sample_ms;
    int64_t next_stats_ms;
    int64_t next_pg_check_ms;
    BatchStats stats;
    char *stop_reason; /* on_error: stop - why the read model stopped */
    Refusals refusals; /* what PostgreSQL refused lately means for the next batches */
    atomic_int_least64_t heartbeat_ms; /* worker_heartbeat_ms */
};

/* ---- small helpers ---- */

static bool stopping(const Worker *w)
{
    return atomic_load(w->o.stop);
}

static void beat(Worker *w)
{
    atomic_store(&w->heartbeat_ms, now_monotonic_ms());
}

int64_t worker_heartbeat_ms(const Worker *w)
{
    return atomic_load(&w->heartbeat_ms);
}

/* Sleeps ms, waking early on stop. Only used between retries. */
static void pause_ms(Worker *w, int ms)
{
    int64_t until = now_monotonic_ms() + ms;
    while (!stopping(w)) {
        beat(w);
        int64_t left = until - now_monotonic_ms();
        if (left <= 0)
            return;
        int slice = left > PAUSE_SLICE_MS ? PAUSE_SLICE_MS : (int)left;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)slice * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The cause a failure is counted under in projector_retries_total: PostgreSQL's SQLSTATE
 * when it gave one, else a connection (Redis's and libpq's own failures). */
static BoardRetryCause retry_cause(const PjError *err)
{
    const char *state = err->sqlstate;
    if (state[0] == '\0' || strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0)
        return BOARD_RETRY_CONNECTION;
    if (strcmp(state, "40001") == 0)
        return BOARD_RETRY_SERIALIZATION;
    if (strcmp(state, "40P01") == 0)
        return BOARD_RETRY_DEADLOCK;
    if (strcmp(state, "57014") == 0 || strcmp(state, "55P03") == 0)
        return BOARD_RETRY_TIMEOUT;
    return BOARD_RETRY_OTHER;
}

/* A failure that drops the sessions: counted, and the sessions said down. */
static void count_failure(Worker *w, const PjError *err)
{
    board_retried(w->o.board, w->o.rm, retry_cause(err));
    board_connections(w->o.board, w->o.rm, false, false);
}

/* Logs once per change of fault, not once per attempt. */
static void set_fault(Worker *w, const char *reason)
{
    if (!w->faulted)
        log_warn(w->ctx, "%s, retrying", reason);
    else
        log_debug(w->ctx, "%s, retrying", reason);
    w->faulted = true;
    board_set_state(w->o.board, w->o.rm, BOARD_STATE_RETRYING, reason);
}

static void clear_fault(Worker *w)
{
    if (w->faulted)
        log_info(w->ctx, "recovered, resuming");
    w->faulted = false;
    backoff_reset(&w->backoff);
    board_set_state(w->o.board, w->o.rm, BOARD_STATE_RUNNING, NULL);
}

static void swap_batches(Worker *w)
{
    BatchRun *t = w->cur;
    w->cur = w->ahead;
    w->ahead = t;
}

static void drop_session(Worker *w)
{
    batch_run_reset(w->cur);
    batch_run_reset(w->ahead); /* read ahead but not applied: delivered again */
    w->reader = reader_free(w->reader);
    w->pg = pg_free(w->pg);
    for (size_t p = 0; p < PARTITION_MAX; p++)
        w->parts[p] = pg_free(w->parts[p]);
}

/* A clean end of the sessions: the queued acknowledgements go out first. */
static void close_session(Worker *w)
{
    PjError err;
    if (w->reader != NULL && reader_flush(w->reader, &err) < 0)
        log_warn(w->ctx, "%s (the entries will be delivered again and skipped)", err.message);
    drop_session(w);
}

/* ---- what a batch borrows from the loop ---- */

static void read_ahead(void *arg);

/* The retry pace of one event (batch.c): the backoff of the sessions, step by attempt. */
static int event_retry_delay_ms(void *arg, int attempts)
{
    Worker *w = arg;
    return backoff_at(&w->backoff, attempts - 1);
}

/* The worker is alive while it waits to try a refused event again: it says so to the
 * board before and after (the delay is at most retry.backoff_max_ms). */
static bool event_retry_pause(void *arg, int ms)
{
    Worker *w = arg;
    board_polled(w->o.board, w->o.rm);
    pause_ms(w, ms);
    board_polled(w->o.board, w->o.rm);
    return !stopping(w);
}

/* The sessions and the progress of this read model, lent to a batch step; built afresh for
 * each, since a session may have been renewed since the last. */
static BatchCtx batch_ctx(Worker *w)
{
    return (BatchCtx){
        .cfg = w->o.cfg,
        .m = w->m,
        .plan = w->plan,
        .recovery = parallel_recovery(w->parallel),
        .reader = w->reader,
        .group = w->group,
        .pg = w->pg,
        .board = w->o.board,
        .rm = w->o.rm,
        .log_ctx = w->ctx,
        .checkpoint = w->checkpoint,
        .position = w->position,
        .stats = &w->stats,
        .stop_reason = &w->stop_reason,
        .refusals = &w->refusals,
        .hooks = {.arg = w,
                  .read_ahead = read_ahead,
                  .retry_delay_ms = event_retry_delay_ms,
                  .pause = event_retry_pause},
    };
}

/* ---- session set-up ---- */

/* The read model's statements; the bookkeeping ones of the main session or a partition's. */
static int prepare_statements(Worker *w, Pg *pg, bool partition, PjError *err)
{
    int rc = partition ? partition_prepare(pg, w->o.cfg->pg_schema, err)
                       : checkpoint_prepare(pg, w->o.cfg->pg_schema, err);
    for (size_t i = 0; rc == 0 && i < applier_plan_count(w->plan); i++) {
        const PlanStatement *st = applier_plan_statement(w->plan, i);
        rc = pg_prepare(pg, st->name, st->sql, st->nparams, err);
        if (rc == 0 && st->multi_name != NULL && w->o.cfg->set_based)
            rc = pg_prepare(pg, st->multi_name, st->multi_sql, st->nparams, err);
        if (rc == 0 && st->plain_name != NULL && w->o.cfg->set_based)
            rc = pg_prepare(pg, st->plain_name, st->plain_sql, st->nparams, err);
        if (rc == 0 && st->check_name != NULL && w->o.cfg->set_based)
            rc = pg_prepare(pg, st->check_name, st->check_sql, st->check_nparams, err);
    }
    return rc;
}

/* parallel_apply: one more session per partition after the first. */
static int open_partitions(Worker *w, PjError *err)
{
    int rc = 0;
    for (int p = 1; rc == 0 && p < w->o.cfg->parallel_apply; p++) {
        rc = pg_connect(w->o.cfg->pg_conninfo, &w->parts[p], err);
        if (rc == 0)
            rc = prepare_statements(w, w->parts[p], true, err);
    }
    return rc;
}

/* Creates the group of every stream; a group created now at "$" gets its first
 * checkpoint at the stream's end, so "start: end" means "after what exists now". */
static int ensure_groups(Worker *w, PjError *err)
{
    const Model *m = w->m;
    for (size_t s = 0; s < m->nstreams; s++) {
        bool created;
        int rc = reader_ensure_group(w->reader, m->streams[s], w->group,
                                     m->start == MODEL_START_BEGINNING, &created, err);
        if (rc < 0)
            return rc;
        if (created)
            log_info(w->ctx, "created consumer group \"%s\" on stream \"%s\"", w->group,
                     m->streams[s]);
        if (created && m->start == MODEL_START_END) {
            StreamId last;
            StreamCounts c;
            rc = reader_last_id(w->reader, m->streams[s], &last, err);
            if (rc == 0)
                rc = reader_stream_counts(w->reader, m->streams[s], w->group, &c, err);
            if (rc == 0)
                rc = checkpoint_init(w->pg, w->o.cfg->pg_schema, m->name, m->streams[s], last,
                                     (int64_t)c.added, err);
            if (rc < 0)
                return rc;
        }
        rc = reader_claim_all(w->reader, m->streams[s], w->group, w->o.cfg->consumer, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void publish_positions(Worker *w, const uint64_t *dead)
{
    for (size_t s = 0; s < w->m->nstreams; s++) {
        board_committed(w->o.board, w->o.rm, s, w->checkpoint[s], NULL, 0);
        if (dead != NULL)
            board_set_dead_letters(w->o.board, w->o.rm, s, dead[s]);
    }
}

/* One process projects a read model at a time: its worker holds a session advisory lock
 * for as long as its PostgreSQL session lives. A second daemon stands by (retrying) and
 * takes over when the first one's session ends, whatever way it ends. */
static int lock_read_model(Worker *w, PjError *err)
{
    char *key = xasprintf("projector:%s.%s", w->o.cfg->pg_schema, w->m->name);
    const char *params[] = {key};
    PGresult *res;
    int rc = pg_query(w->pg, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", 1, params,
                      &res, err);
    free(key);
    if (rc < 0)
        return rc;
    bool held = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!held)
        return pj_error_set(err, PJ_ETRANSIENT,
                            "read model \"%s\" is being projected by another process, standing by",
                            w->m->name);
    return 0;
}

/* The sessions, each one's statements, and the consumer groups. */
static int connect_sessions(Worker *w, PjError *err)
{
    const Config *cfg = w->o.cfg;
    int rc = pg_connect(cfg->pg_conninfo, &w->pg, err);
    if (rc == 0)
        rc = lock_read_model(w, err);
    if (rc == 0)
        rc = reader_connect(&cfg->redis, cfg->connect_timeout_ms,
                            cfg->block_ms + cfg->connect_timeout_ms + READER_REPLY_SLACK_MS,
                            &w->reader, err);
    if (rc == 0)
        rc = prepare_statements(w, w->pg, false, err);
    if (rc == 0)
        rc = open_partitions(w, err);
    if (rc == 0)
        rc = ensure_groups(w, err);
    return rc;
}

/* PostgreSQL's checkpoint is the truth, whatever Redis remembers. A group that delivered
 * past the checkpoint moves back to it, so that everything after it is read again in
 * order: after a crash those entries are only pending, but after PostgreSQL was restored
 * from a backup (or its bookkeeping dropped) some were acknowledged too, and would
 * otherwise never be read again. *ret_rewound says so; the history phase is then not
 * needed (the pending entries after the checkpoint come again with the rest). A checkpoint past the
 * stream's last entry (Redis restored, or a failover that lost entries) is said; new entries go on
 * from there. */
static int reconcile_group(Worker *w, size_t s, bool *ret_rewound, PjError *err)
{
    const char *stream = w->m->streams[s];
    char cp[STREAM_ID_BUFSZ], at[STREAM_ID_BUFSZ];
    StreamCounts c = {0};
    StreamId last = STREAM_ID_ZERO;
    int rc = reader_stream_counts(w->reader, stream, w->group, &c, err);
    if (rc == 0)
        rc = reader_last_id(w->reader, stream, &last, err);
    if (rc < 0)
        return rc;
    stream_id_format(w->checkpoint[s], cp);
    *ret_rewound = c.has_last_delivered && stream_id_cmp(c.last_delivered, w->checkpoint[s]) > 0;
    if (*ret_rewound) {
        log_info(w->ctx,
                 "consumer group \"%s\" of stream \"%s\" delivered up to %s, past the "
                 "checkpoint %s: reading again every entry after the checkpoint",
                 w->group, stream, stream_id_format(c.last_delivered, at), cp);
        rc =
            reader_rewind_group(w->reader, stream, w->group, w->checkpoint[s], w->position[s], err);
    }
    if (rc == 0 && stream_id_cmp(w->checkpoint[s], last) > 0)
        log_warn(w->ctx,
                 "the checkpoint %s of stream \"%s\" is ahead of its last entry %s (Redis "
                 "restored, or a failover lost entries): going on with new entries",
                 cp, stream, stream_id_format(last, at));
    return rc;
}

static int open_session(Worker *w, PjError *err)
{
    const Config *cfg = w->o.cfg;
    uint64_t *dead = xcalloc(w->m->nstreams, sizeof *dead);
    int rc = connect_sessions(w, err);
    if (rc == 0)
        rc = checkpoint_load(w->pg, cfg->pg_schema, w->m, w->checkpoint, w->position, err);
    w->checkpoint_known = w->checkpoint_known || rc == 0;
    if (rc == 0) {
        BatchCtx c = batch_ctx(w);
        rc = parallel_recover(w->parallel, &c, err);
    }
    if (rc == 0)
        rc = checkpoint_count_dead(w->pg, cfg->pg_schema, w->m, dead, err);
    for (size_t s = 0; rc == 0 && s < w->m->nstreams; s++) {
        bool rewound = false;
        rc = reconcile_group(w, s, &rewound, err);
        w->history[s] = !rewound;
        snprintf(w->cursor[s], STREAM_ID_BUFSZ, "0-0");
    }
    if (rc == 0)
        publish_positions(w, dead);
    free(dead);
    if (rc < 0)
        drop_session(w);
    return rc;
}

/* ---- reading ---- */

/* Reads the next batch into b: first this consumer's pending entries (left by a crash or
 * taken over from a dead consumer), stream by stream, then new ones. */
static int read_batch(Worker *w, BatchRun *b, int block_ms, PjError *err)
{
    const Model *m = w->m;
    const char **after = xmalloc(m->nstreams * sizeof *after);
    bool in_history = false;
    for (size_t s = 0; s < m->nstreams; s++) {
        after[s] = w->history[s] ? w->cursor[s] : NULL;
        in_history = in_history || w->history[s];
    }
    BatchCtx c = batch_ctx(w);
    int rc = batch_run_read(b, &c, after, block_ms, err);
    free(after);
    if (rc < 0 || !in_history)
        return rc;
    const Batch *got = batch_run_entries(b);
    for (size_t s = 0; s < m->nstreams; s++) {
        bool seen = false;
        for (size_t i = 0; i < got->count; i++) {
            if (got->entries[i].stream == s) {
                seen = true;
                memcpy(w->cursor[s], got->entries[i].id_text, STREAM_ID_BUFSZ);
            }
        }
        if (!seen && w->history[s])
            w->history[s] = false;
    }
    return 0;
}

/* Reads the next batch into w->ahead and classifies it, without waiting for entries that
 * are not there yet; when the read model is behind (the batch in flight is at least half
 * the limit), is not re-reading pending entries, and does not stop at a bad event
 * (on_error: stop must not look past the batch in flight).
 * An error is left for the next read to meet: the connection is then renewed. Entries
 * read ahead are pending in the group like any others until their batch is settled.
 * A BatchHooks.read_ahead: arg is the Worker. */
static void read_ahead(void *arg)
{
    Worker *w = arg;
    /* A batch well short of the limit means the read model has caught up: then the next
     * read would find little or nothing, and would only delay this batch's answer. */
    if (w->m->on_error == MODEL_ON_ERROR_STOP || stopping(w) || batch_run_size(w->ahead) > 0 ||
        batch_run_size(w->cur) * 2 < (size_t)w->o.cfg->batch)
        return;
    for (size_t s = 0; s < w->m->nstreams; s++)
        if (w->history[s])
            return;
    PjError err;
    if (read_batch(w, w->ahead, -1, &err) == 0) {
        BatchCtx c = batch_ctx(w);
        batch_run_classify(w->ahead, &c);
    } else {
        batch_run_reset(w->ahead); /* nothing half-read is ever applied */
        log_debug(w->ctx, "could not read ahead: %s", err.message);
    }
}

/* ---- one batch ---- */

/* The ordering rule of lookups: before reading another read model's table, wait until it
 * has applied, on every stream both read, at least as far as this batch goes. */
static int wait_for_lookups(Worker *w)
{
    const Model *m = w->m;
    for (size_t k = 0; k < m->nlookup_models; k++) {
        size_t other = m->lookup_models[k];
        const Model *om = &w->o.set->models[other];
        for (size_t s = 0; s < m->nstreams; s++) {
            int os = model_find_stream(om, m->streams[s]);
            StreamId target = w->checkpoint[s];
            if (os < 0)
                continue;
            (void)batch_run_top(w->cur, s, &target);
            bool announced = false;
            for (;;) {
                int rc = board_wait_position(w->o.board, other, (size_t)os, target,
                                             LOOKUP_WAIT_SLICE_MS);
                if (rc == 0)
                    break;
                if (rc == -PJ_ESTOPPED || stopping(w))
                    return -PJ_ESTOPPED;
                if (!announced) {
                    char id[STREAM_ID_BUFSZ], reason[256];
                    snprintf(reason, sizeof reason,
                             "waiting for read model \"%s\" to apply entry %s of stream \"%s\"",
                             om->name, stream_id_format(target, id), m->streams[s]);
                    set_fault(w, reason);
                    announced = true;
                }
            }
            if (announced)
                clear_fault(w);
        }
    }
    return 0;
}

/* Over several sessions when parallel apply takes the batch, else on the main one (always
 * while PostgreSQL refuses events of the last batches). */
static int commit_batch(Worker *w, const BatchCtx *c, PjError *err)
{
    bool done = false;
    int rc = 0;
    if (w->refusals.isolate == 0) /* else the batch is isolated on one session at once */
        rc = parallel_commit(w->parallel, w->cur, c, w->parts, &done, err);
    if (rc < 0 || done)
        return rc;
    return batch_run_commit(w->cur, c, err);
}

static int process_batch(Worker *w, PjError *err)
{
    BatchCtx c = batch_ctx(w);
    batch_run_prepare(w->cur, &c);
    int rc = wait_for_lookups(w);
    if (rc == -PJ_ESTOPPED)
        return rc;
    if (w->refusals.probe > 0 && w->m->on_error != MODEL_ON_ERROR_STOP) {
        w->refusals.probe--;
        if ((rc = batch_run_probe(w->cur, &c, err)) < 0)
            return rc;
    }
    bool any = batch_run_any_to_settle(w->cur);
    int64_t started = now_monotonic_ms();
    if (any && (rc = commit_batch(w, &c, err)) < 0)
        return rc;
    if (any)
        board_batch_done(w->o.board, w->o.rm, batch_run_size(w->cur), now_monotonic_ms() - started);
    /* Committed: the rows are visible, so /wait callers are told now, before the
     * acknowledgement (if that fails, the entries come back and are skipped). */
    if (any)
        batch_run_publish(w->cur, &c);
    return batch_run_ack(w->cur, &c, err);
}

/* ---- the loop ---- */

/* Samples the lag of every stream through r, from the checkpoint; false when Redis failed. */
static bool sample_through(Worker *w, Reader *r)
{
    for (size_t s = 0; s < w->m->nstreams; s++) {
        StreamBacklog sample;
        PjError err;
        if (reader_sample(r, w->m->streams[s], w->group, w->checkpoint[s], &sample, &err) < 0) {
            log_debug(w->ctx, "could not sample the lag of stream \"%s\": %s", w->m->streams[s],
                      err.message);
            return false;
        }
        board_sampled(w->o.board, w->o.rm, s, &sample);
    }
    return true;
}

static void sample_lag(Worker *w, bool force)
{
    int64_t now = now_monotonic_ms();
    if (!force && now < w->next_sample_ms)
        return;
    w->next_sample_ms = now + SAMPLE_EVERY_MS;
    (void)sample_through(w, w->reader);
}

/* While the sessions are down (PostgreSQL away, say), the lag is still sampled from Redis
 * when it answers, from the last checkpoint known: entries written meanwhile show in /lag,
 * and an alert on the lag fires during an outage. */
static void sample_while_down(Worker *w)
{
    const Config *cfg = w->o.cfg;
    PjError err;
    if (!w->checkpoint_known)
        return; /* never loaded: nothing to measure from */
    if (w->sampler == NULL &&
        reader_connect(&cfg->redis, cfg->connect_timeout_ms,
                       cfg->connect_timeout_ms + READER_REPLY_SLACK_MS, &w->sampler, &err) < 0) {
        log_debug(w->ctx, "could not sample the lag while down: %s", err.message);
        return;
    }
    if (!sample_through(w, w->sampler))
        w->sampler = reader_free(w->sampler);
    board_connections(w->o.board, w->o.rm, w->sampler != NULL, false);
}

static void log_stats(Worker *w)
{
    int interval = w->o.cfg->stats_interval_s;
    int64_t now = now_monotonic_ms();
    if (interval <= 0 || now < w->next_stats_ms)
        return;
    if (w->next_stats_ms != 0)
        log_info(w->ctx, "last %d s: %llu applied (%.1f/s), %llu skipped, %llu dead-lettered",
                 interval, (unsigned long long)w->stats.applied,
                 (double)w->stats.applied / interval, (unsigned long long)w->stats.skipped,
                 (unsigned long long)w->stats.dead);
    w->stats.applied = w->stats.skipped = w->stats.dead = 0;
    w->next_stats_ms = now + (int64_t)interval * 1000;
}

/* Every few seconds the dead letters still in the table are counted again (a retry or a
 * discard by `projector dlq`, in another process, lowers them). It is also what keeps an
 * idle read model's state (and /readyz) honest: an idle read model would otherwise not
 * touch PostgreSQL, and look healthy through an outage. */
static int recount_dead_letters(Worker *w, PjError *err)
{
    int64_t now = now_monotonic_ms();
    if (now < w->next_pg_check_ms)
        return 0;
    w->next_pg_check_ms = now + IDLE_PG_CHECK_MS;
    uint64_t *dead = xcalloc(w->m->nstreams, sizeof *dead);
    int rc = checkpoint_count_dead(w->pg, w->o.cfg->pg_schema, w->m, dead, err);
    for (size_t s = 0; rc == 0 && s < w->m->nstreams; s++)
        board_set_dead_letters(w->o.board, w->o.rm, s, dead[s]);
    free(dead);
    return rc;
}

/* One step of the loop; returns <0 on a fault that needs a new session. */
static int step(Worker *w, PjError *err)
{
    int rc = 0;
    if (batch_run_size(w->ahead) > 0) {
        swap_batches(w);           /* read and classified while the last batch committed */
        batch_run_reset(w->ahead); /* the batch done last: never to be taken again */
    } else {
        rc = read_batch(w, w->cur, w->o.cfg->block_ms, err);
        if (rc < 0)
            return rc;
        BatchCtx c = batch_ctx(w);
        batch_run_classify(w->cur, &c);
    }
    board_polled(w->o.board, w->o.rm);
    size_t n = batch_run_size(w->cur);
    if (n > 0 && (rc = process_batch(w, err)) < 0)
        return rc;
    sample_lag(w, n == 0);
    log_stats(w);
    return recount_dead_letters(w, err);
}

/* on_error: stop. Nothing more is read until the daemon restarts; the worker stays alive
 * (and says so) so that /lag and /wait report "stopped" with the reason, not a dead reader. */
static void stay_stopped(Worker *w)
{
    log_error(w->ctx, "%s, stopping this read model (on_error: stop)", w->stop_reason);
    board_set_state(w->o.board, w->o.rm, BOARD_STATE_STOPPED, w->stop_reason);
    close_session(w);
    while (!stopping(w)) {
        board_polled(w->o.board, w->o.rm);
        pause_ms(w, STOPPED_POLL_MS);
    }
}

/* On a stop, a batch read ahead is applied and acknowledged like the one in flight, so a
 * clean stop leaves nothing pending. */
static void settle_read_ahead(Worker *w)
{
    PjError err;
    if (w->pg == NULL || w->reader == NULL || batch_run_size(w->ahead) == 0)
        return;
    swap_batches(w);
    board_polled(w->o.board, w->o.rm);
    int rc = process_batch(w, &err);
    if (rc < 0 && rc != -PJ_ESTOPPED)
        log_warn(w->ctx,
                 "could not apply the batch read ahead: %s (it will be delivered "
                 "again)",
                 err.message);
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    PjError err;
    while (!stopping(w)) {
        beat(w);
        if (w->pg == NULL) {
            if (open_session(w, &err) < 0) {
                set_fault(w, err.message);
                count_failure(w, &err);
                sample_while_down(w);
                pause_ms(w, backoff_next(&w->backoff));
                continue;
            }
            w->sampler = reader_free(w->sampler);
            board_connections(w->o.board, w->o.rm, true, true);
            /* Sampled first: until then the board knows no lag, and "running" with
             * nothing behind would tell /lag readers the read model had caught up. */
            sample_lag(w, true);
            clear_fault(w);
        }
        int rc = step(w, &err);
        if (rc == -PJ_ESTOPPED)
            break;
        if (rc == 0 && w->stop_reason != NULL) {
            stay_stopped(w);
            break;
        }
        if (rc < 0) {
            /* Drop both sessions: the next one re-reads what was not acknowledged and
             * reloads the checkpoint, whatever state the failure left behind. */
            set_fault(w, err.message);
            drop_session(w);
            count_failure(w, &err);
            sample_while_down(w);
            pause_ms(w, backoff_next(&w->backoff));
        }
    }
    settle_read_ahead(w);
    close_session(w);
    w->sampler = reader_free(w->sampler);
    jsonarena_thread_done();
    log_info(w->ctx, "stopped");
    return NULL;
}

/* Frees everything a worker owns; its thread has ended or never started. */
static void worker_free(Worker *w)
{
    w->cur = batch_run_free(w->cur);
    w->ahead = batch_run_free(w->ahead);
    w->parallel = parallel_free(w->parallel);
    applier_plan_free(w->plan);
    free(w->group);
    free(w->checkpoint);
    free(w->cursor);
    free(w->history);
    free(w->position);
    free(w->stop_reason);
    free(w);
}

int worker_start(const WorkerOpts *opts, Worker **ret, PjError *err)
{
    Worker *w = xcalloc(1, sizeof *w);
    atomic_init(&w->heartbeat_ms, now_monotonic_ms());
    w->o = *opts;
    w->m = &opts->set->models[opts->rm];
    snprintf(w->ctx, sizeof w->ctx, "readmodel=%s", w->m->name);
    w->group = reader_group_name(w->m->name);
    backoff_init(&w->backoff, w->o.cfg->backoff_min_ms, w->o.cfg->backoff_max_ms,
                 (uint64_t)now_monotonic_ms() ^ (uint64_t)(uintptr_t)w);
    w->checkpoint = xcalloc(w->m->nstreams, sizeof *w->checkpoint);
    w->cursor = xcalloc(w->m->nstreams, sizeof *w->cursor);
    w->history = xcalloc(w->m->nstreams, sizeof *w->history);
    w->position = xcalloc(w->m->nstreams, sizeof *w->position);
    w->parallel = parallel_new(w->m->nstreams);
    w->cur = batch_run_new(w->m->nstreams);
    w->ahead = batch_run_new(w->m->nstreams);
    int rc = applier_plan_new(opts->set, opts->rm, &w->plan, err);
    if (rc == 0 && pthread_create(&w->thread, NULL, worker_main, w) != 0)
        rc = pj_error_set(err, PJ_EIO, "could not start the worker thread of \"%s\"", w->m->name);
    if (rc < 0) {
        worker_free(w);
        return rc;
    }
    *ret = w;
    return 0;
}

Worker *worker_join(Worker *w)
{
    if (w == NULL)
        return NULL;
    pthread_join(w->thread, NULL);
    worker_free(w);
    return NULL;
}
