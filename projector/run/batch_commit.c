/* batch_commit.c - the transaction of one batch: its checkpoints, dead letters and
 * statements sent one by one or set-based (merge.h), and the events PostgreSQL refuses
 * isolated all at once: the batch sent again with each event between savepoints, in its
 * own segment of the pipeline, so one round trip names every refused event.
 *
 * Invariant: each try is one transaction, so the good events are applied exactly once.
 */
#include "run/batch.h"
#include "run/batch_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "apply/event.h"
#include "apply/merge.h"
#include "base/log.h"
#include "sink/checkpoint.h"
#include "sink/refusal.h"

#define BATCH_TAG_GROUP (-2L) /* a set-based statement of several events, in a pipeline */

/* The savepoint each event of an isolating try runs after, as statements prepared once
 * per session (PostgreSQL parses them once, not once per event). */
typedef enum { SAVEPOINT_SET, SAVEPOINT_ROLLBACK, SAVEPOINT_RELEASE, SAVEPOINT_COUNT } SavepointOp;
static const char *const savepoint_names[SAVEPOINT_COUNT] = {"pj_sp_set", "pj_sp_rollback",
                                                             "pj_sp_release"};
static const char *const savepoint_sql[SAVEPOINT_COUNT] = {"SAVEPOINT projector_event",
                                                           "ROLLBACK TO SAVEPOINT projector_event",
                                                           "RELEASE SAVEPOINT projector_event"};

/* Dead letters named one by one in the log per batch; the rest are counted in one line. */
#define BATCH_DEAD_LOGGED 5

/* ---- sending ---- */

/* Sends the dead letters of the batch (its items of kind BATCH_ITEM_DEAD) as one
 * statement. */
static void send_dead_letters(const BatchRun *b, const BatchCtx *c)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nitems; i++)
        n += b->items[i].kind == BATCH_ITEM_DEAD;
    if (n == 0)
        return;
    DeadLetter *d = xcalloc(n, sizeof *d);
    char **raw = xcalloc(n, sizeof *raw);
    size_t k = 0;
    for (size_t i = 0; i < b->nitems; i++) {
        const Item *it = &b->items[i];
        if (it->kind != BATCH_ITEM_DEAD)
            continue;
        json_t *j = event_raw_json(&it->entry->fields);
        raw[k] = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        d[k] = (DeadLetter){
            .readmodel = c->m->name,
            .stream = c->m->streams[it->entry->stream],
            .id = it->entry->id,
            .event_type = it->event_type,
            .raw_json = raw[k] != NULL ? raw[k] : "{}",
            .error = it->error,
            .sqlstate = it->sqlstate,
            .attempts = it->attempts > 0 ? it->attempts : 1,
        };
        k++;
    }
    checkpoint_send_dead_letters(c->pg, d, n, -1);
    for (size_t i = 0; i < n; i++)
        free(raw[i]);
    free(raw);
    free(d);
}

static void send_item(const BatchRun *b, const BatchCtx *c, long index)
{
    const Item *it = &b->items[index];
    if (it->kind != BATCH_ITEM_APPLY)
        return;
    for (size_t k = 0; k < it->nstmts; k++) {
        const BoundStatement *bs = &b->bound.items[it->first_stmt + k];
        const PlanStatement *st = applier_plan_statement(c->plan, bs->statement);
        pg_pipeline_send(c->pg, st->name, bs->nparams, (const char *const *)bs->params,
                         (long)(it->first_stmt + k));
    }
}

/* Lists the statements of the items of partition part (or all) in batch order, with the
 * item of each, and sends the dead letters on the way; returns how many. */
static size_t gather_statements(BatchRun *b, const BatchCtx *c, int part)
{
    size_t n = 0;
    if (part == BATCH_PART_ALL || part == 0)
        send_dead_letters(b, c);
    for (size_t i = 0; i < b->nitems; i++) {
        const Item *it = &b->items[i];
        if (it->kind != BATCH_ITEM_APPLY || (part != BATCH_PART_ALL && it->part != part))
            continue;
        size_t cap = b->stmts_cap;
        xgrow((void **)&b->stmts, &b->stmts_cap, n + it->nstmts + 1, sizeof(BoundStatement *));
        if (b->stmts_cap != cap || b->stmt_item == NULL)
            b->stmt_item = xrealloc(b->stmt_item, b->stmts_cap * sizeof *b->stmt_item);
        for (size_t k = 0; k < it->nstmts; k++) {
            b->stmts[n] = &b->bound.items[it->first_stmt + k];
            b->stmt_item[n++] = i;
        }
    }
    return n;
}

/* A group of one is sent as its plain statement, tagged with that statement (its index in
 * the batch's Bound, so a failure names the event); a larger group as the set-based
 * statement (after the check of the values a fold in C leaves out), tagged
 * BATCH_TAG_GROUP. */
void batch_run_send_merged(BatchRun *b, const BatchCtx *c, Pg *pg, int part)
{
    size_t n = gather_statements(b, c, part);
    merge_build(&b->merge, c->plan, b->stmts, NULL, n);
    for (size_t g = 0; g < b->merge.ngroups; g++) {
        const MergeGroup *grp = &b->merge.groups[g];
        const PlanStatement *st = applier_plan_statement(c->plan, grp->statement);
        if (grp->count == 1) {
            size_t m = b->merge.members[grp->first];
            const BoundStatement *bs = b->stmts[m];
            pg_pipeline_send(pg, st->name, bs->nparams, (const char *const *)bs->params,
                             (long)(bs - b->bound.items));
            continue;
        }
        const char *name;
        char **check;
        char **params = merge_statement(&b->merge, grp, b->stmts, st, &name, &check);
        if (check != NULL) /* the values a fold in C leaves out, converted all the same */
            pg_pipeline_send(pg, st->check_name, st->check_nparams, (const char *const *)check,
                             BATCH_TAG_GROUP);
        pg_pipeline_send(pg, name, st->nparams, (const char *const *)params, BATCH_TAG_GROUP);
        merge_params_free(check, st->check_nparams);
        merge_params_free(params, st->nparams);
    }
}

void batch_run_send_checkpoints(const BatchRun *b, const BatchCtx *c)
{
    for (size_t s = 0; s < c->m->nstreams; s++) {
        StreamId top;
        if (batch_run_top(b, s, &top))
            checkpoint_send(c->pg, c->m->name, c->m->streams[s], c->checkpoint[s], top,
                            batch_run_count_applied(b, s), batch_run_settled_position(b, s), -1);
    }
}

/* Sends the whole batch and its checkpoints as one pipeline (one transaction). */
static int send_batch(BatchRun *b, const BatchCtx *c, bool set_based, PjError *err)
{
    int rc = pg_pipeline_begin(c->pg, err);
    if (rc < 0)
        return rc;
    batch_run_send_checkpoints(b, c);
    if (set_based) {
        batch_run_send_merged(b, c, c->pg, BATCH_PART_ALL);
    } else {
        send_dead_letters(b, c);
        for (size_t i = 0; i < b->nitems; i++)
            send_item(b, c, (long)i);
    }
    return pg_pipeline_flush(c->pg, err);
}

static int run_once(BatchRun *b, const BatchCtx *c, bool set_based, long *failed, PjError *err)
{
    int rc = send_batch(b, c, set_based, err);
    return rc < 0 ? rc : pg_pipeline_finish(c->pg, failed, err);
}

/* ---- isolating the events PostgreSQL refuses ---- */

/* What an isolating try learned. */
typedef struct Isolation {
    BatchRun *b;
    const BatchCtx *c;
    size_t refused;   /* events refused in this try */
    bool bookkeeping; /* a statement of the transaction itself was refused */
    PjError bookkeeping_err;
} Isolation;

/* The item whose statements include statement s of the batch's Bound. */
static size_t statement_item(const BatchRun *b, size_t s)
{
    size_t i = 0;
    while (i < b->nitems && !(b->items[i].kind == BATCH_ITEM_APPLY && s >= b->items[i].first_stmt &&
                              s < b->items[i].first_stmt + b->items[i].nstmts))
        i++;
    return i;
}

/* A PgFailureFn: the event whose statement (tag: its index in the batch's Bound) PostgreSQL
 * refused is marked, with the reason, its column named. */
static void note_refused(void *arg, long tag, const PjError *err, const PGresult *res)
{
    Isolation *iso = arg;
    BatchRun *b = iso->b;
    size_t i = tag >= 0 ? statement_item(b, (size_t)tag) : b->nitems;
    if (i >= b->nitems) {
        if (!iso->bookkeeping)
            iso->bookkeeping_err = *err;
        iso->bookkeeping = true;
        return;
    }
    PjError named = *err;
    refusal_name_column(iso->c->plan, &b->bound.items[tag], res, &named);
    Item *it = &b->items[i];
    assert(it->kind == BATCH_ITEM_APPLY && !it->refused);
    it->refused = true;
    it->attempts++;
    free(it->error);
    it->error = xstrdup(named.message);
    snprintf(it->sqlstate, sizeof it->sqlstate, "%s", named.sqlstate);
    iso->refused++;
}

/* Sends every event of the batch in an open transaction, each in its own segment:
 *   ROLLBACK TO SAVEPOINT; its statements; RELEASE SAVEPOINT; SAVEPOINT; Sync
 * After an event that PostgreSQL refuses, the rest of its segment is skipped and the next
 * segment's ROLLBACK TO returns to the savepoint taken before it, undoing it; after one that
 * succeeds, that ROLLBACK TO returns to the savepoint taken after it, undoing nothing. So
 * every refused event is named in one round trip, and the transaction holds exactly the
 * others, in batch order, one savepoint deep. The dead letters and checkpoints follow in
 * commit_isolated, once the refused events are known. */
static int prepare_savepoints(const BatchCtx *c, PjError *err)
{
    for (int op = 0; op < SAVEPOINT_COUNT; op++) {
        int rc = pg_prepare(c->pg, savepoint_names[op], savepoint_sql[op], 0, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void send_savepoint(const BatchCtx *c, SavepointOp op)
{
    pg_pipeline_send(c->pg, savepoint_names[op], 0, NULL, -1);
}

static int send_isolating(BatchRun *b, const BatchCtx *c, Isolation *iso, PjError *err)
{
    int rc = prepare_savepoints(c, err);
    if (rc == 0)
        rc = pg_pipeline_begin(c->pg, err);
    if (rc < 0)
        return rc;
    pg_pipeline_send_begin(c->pg);
    send_savepoint(c, SAVEPOINT_SET);
    for (size_t i = 0; i < b->nitems; i++) {
        if (b->items[i].kind != BATCH_ITEM_APPLY)
            continue;
        send_savepoint(c, SAVEPOINT_ROLLBACK);
        send_item(b, c, (long)i);
        send_savepoint(c, SAVEPOINT_RELEASE);
        send_savepoint(c, SAVEPOINT_SET);
        pg_pipeline_send_sync(c->pg);
    }
    send_savepoint(c, SAVEPOINT_ROLLBACK);
    send_savepoint(c, SAVEPOINT_RELEASE);
    *iso = (Isolation){.b = b, .c = c};
    rc = pg_pipeline_flush(c->pg, err);
    if (rc < 0)
        return rc;
    c->hooks.read_ahead(c->hooks.arg); /* while the server runs the batch */
    rc = pg_pipeline_finish_segments(c->pg, note_refused, iso, err);
    if (rc == 0 && iso->bookkeeping) {
        *err = iso->bookkeeping_err;
        rc = -PJ_ETRANSIENT;
    }
    return rc; /* on failure the session is renewed, and the transaction goes with it */
}

/* Ends the open transaction of an isolating try with a ROLLBACK. */
static int roll_back(const BatchCtx *c, PjError *err)
{
    int rc = pg_tx_end_send(c->pg, false, err);
    return rc < 0 ? rc : pg_tx_end_wait(c->pg, false, err);
}

/* Sends the dead letters and the checkpoints in the open transaction, and commits it. */
static int commit_isolated(BatchRun *b, const BatchCtx *c, PjError *err)
{
    int rc = pg_pipeline_begin(c->pg, err);
    if (rc < 0)
        return rc;
    send_dead_letters(b, c);
    batch_run_send_checkpoints(b, c);
    pg_pipeline_send_command(c->pg, "COMMIT", -1);
    long failed;
    rc = pg_pipeline_run(c->pg, &failed, err);
    return rc < 0 ? -PJ_ETRANSIENT : 0; /* a dead letter or checkpoint failed: renew */
}

/* The refused events of a try become dead letters, each named in the log up to a few per
 * batch and the rest counted. */
static void bury_refused(BatchRun *b, const BatchCtx *c)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nitems; i++) {
        Item *it = &b->items[i];
        if (!it->refused)
            continue;
        it->refused = false;
        it->kind = BATCH_ITEM_DEAD;
        if (n++ < BATCH_DEAD_LOGGED) {
            StrBuf ctx = {0};
            strbuf_append(&ctx, c->log_ctx != NULL ? c->log_ctx : "");
            event_log_context(c->m->streams[it->entry->stream], it->entry->id_text,
                              &it->entry->fields, c->cfg->event_field, &ctx);
            log_warn(ctx.buf, "could not apply entry %s of stream \"%s\": %s, dead-lettering it",
                     it->entry->id_text, c->m->streams[it->entry->stream], it->error);
            strbuf_done(&ctx);
        }
    }
    if (n > BATCH_DEAD_LOGGED)
        log_warn(c->log_ctx, "dead-lettered %zu more entries of this batch that PostgreSQL refused",
                 n - BATCH_DEAD_LOGGED);
}

/* Of the refused events, the one with the fewest attempts decides: -1 when every refused
 * event has spent its attempts (retry.attempts), else the delay before the next try. */
static int next_try_delay(BatchRun *b, const BatchCtx *c)
{
    int fewest = 0;
    const Item *first = NULL;
    for (size_t i = 0; i < b->nitems; i++) {
        const Item *it = &b->items[i];
        if (it->refused && (first == NULL || it->attempts < fewest)) {
            fewest = it->attempts;
            first = it;
        }
    }
    if (first == NULL || fewest >= c->cfg->retry_attempts)
        return -1;
    int delay = c->hooks.retry_delay_ms(c->hooks.arg, fewest);
    log_warn(c->log_ctx,
             "could not apply entry %s of stream \"%s\" (attempt %d of %d): %s, "
             "trying the batch again in %d ms",
             first->entry->id_text, c->m->streams[first->entry->stream], fewest,
             c->cfg->retry_attempts, first->error, delay);
    return delay;
}

static void forget_refusals(BatchRun *b)
{
    for (size_t i = 0; i < b->nitems; i++)
        b->items[i].refused = false;
}

/* With on_error: stop, the first refused event and everything after it in its stream are
 * held, and the batch is sent again without them. */
static int hold_refused(BatchRun *b, const BatchCtx *c, PjError *err)
{
    for (size_t i = 0; i < b->nitems; i++) {
        Item *it = &b->items[i];
        if (!it->refused)
            continue;
        forget_refusals(b);
        it->kind = BATCH_ITEM_DEAD; /* its error and sqlstate are the refusal's */
        batch_run_hold_from(b, c, i);
        break;
    }
    long failed;
    int rc = run_once(b, c, c->cfg->set_based, &failed, err);
    return rc < 0 ? -PJ_ETRANSIENT : 0; /* what came before the bad event did not change */
}

/* The batch holds events PostgreSQL refuses (or, refused_now false, the last batches did):
 * each try names all of them at once
 * (send_isolating); those with attempts left are tried again after a pause (the batch is
 * rolled back meanwhile); the others are dead-lettered and the rest committed in the same
 * transaction. A stop during a pause ends the batch uncommitted. */
static int isolate(BatchRun *b, const BatchCtx *c, bool refused_now, PjError *err)
{
    log_debug(c->log_ctx, "isolating the events of a batch of %zu entries: PostgreSQL refused %s",
              b->nitems, refused_now ? "one of them" : "some of the last batches");
    for (int tries = 0; tries <= c->cfg->retry_attempts; tries++) {
        Isolation iso;
        int rc = send_isolating(b, c, &iso, err);
        if (rc < 0)
            return rc;
        int delay = next_try_delay(b, c);
        if (iso.refused > 0 && (delay >= 0 || c->m->on_error == MODEL_ON_ERROR_STOP)) {
            rc = roll_back(c, err);
            if (rc < 0)
                return -PJ_ETRANSIENT;
            if (delay < 0)
                return hold_refused(b, c, err);
            forget_refusals(b);
            if (!c->hooks.pause(c->hooks.arg, delay))
                return -PJ_ESTOPPED; /* nothing committed: delivered again at the next start */
            continue;
        }
        c->refusals->isolate = iso.refused > 0 ? BATCH_REFUSING_BATCHES : 0;
        if (iso.refused > 0)
            c->refusals->probe = BATCH_REFUSING_BATCHES;
        bury_refused(b, c);
        return commit_isolated(b, c, err);
    }
    return pj_error_set(err, PJ_ETRANSIENT, "could not isolate the refused events of a batch");
}

/* ---- committing ---- */

/* The batch goes as one pipeline (set-based when configured); while the server runs it,
 * the next batch is read. When PostgreSQL refuses one of its statements, every refused
 * event is found in one more round trip (isolate), whatever the size of the batch. */
int batch_run_commit(BatchRun *b, const BatchCtx *c, PjError *err)
{
    if (c->refusals->isolate > 0) {
        c->refusals->isolate--;
        return isolate(b, c, false, err);
    }
    long failed = 0; /* the failing statement's tag, set when the pipeline ran */
    int rc = send_batch(b, c, c->cfg->set_based, err);
    if (rc == 0) {
        c->hooks.read_ahead(c->hooks.arg);
        rc = pg_pipeline_finish(c->pg, &failed, err);
    }
    if (rc == 0)
        return 0;
    if (rc != -PJ_EPERMANENT || failed == -1)
        return rc == -PJ_EPERMANENT ? -PJ_ETRANSIENT : rc; /* bookkeeping failed: retry */
    return isolate(b, c, true, err);
}
