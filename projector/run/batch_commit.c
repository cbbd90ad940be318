/* batch_commit.c - the transaction of one batch: its checkpoints, dead letters and
 * statements sent one by one or set-based (merge.h), and a bad event isolated by sending
 * the batch again, with the set-based group that holds it split in halves, until a
 * statement of one event fails and names it.
 *
 * Invariant: each attempt is one transaction, so the good events are applied exactly once.
 */
#include "run/batch.h"
#include "run/batch_internal.h"

#include <assert.h>
#include <stdlib.h>

#include "apply/event.h"
#include "apply/merge.h"
#include "base/log.h"
#include "sink/checkpoint.h"

/* In a pipeline a statement of one event is tagged with its index in the batch's Bound (0
 * and up), set-based group g with BATCH_TAG_GROUP_FIRST - g, bookkeeping with -1. */
#define BATCH_TAG_GROUP_FIRST (-16L)

/* ---- sending ---- */

static void send_dead_letter(const BatchCtx *c, const Item *it)
{
    json_t *raw = event_raw_json(&it->entry->fields);
    char *raw_text = json_dumps(raw, JSON_COMPACT);
    DeadLetter d = {
        .readmodel = c->m->name,
        .stream = c->m->streams[it->entry->stream],
        .id = it->entry->id,
        .event_type = it->event_type,
        .raw_json = raw_text != NULL ? raw_text : "{}",
        .error = it->error,
        .sqlstate = it->sqlstate,
        .attempts = it->attempts > 0 ? it->attempts : 1,
    };
    checkpoint_send_dead_letter(c->pg, &d, -1);
    free(raw_text);
    json_decref(raw);
}

static void send_item(const BatchRun *b, const BatchCtx *c, long index)
{
    const Item *it = &b->items[index];
    if (it->kind == BATCH_ITEM_DEAD) {
        send_dead_letter(c, it);
        return;
    }
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
 * item and the class of each, and sends the dead letters on the way; returns how many. */
static size_t gather_statements(BatchRun *b, const BatchCtx *c, int part)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nitems; i++) {
        const Item *it = &b->items[i];
        if (it->kind == BATCH_ITEM_DEAD && (part == BATCH_PART_ALL || part == 0))
            send_dead_letter(c, it);
        if (it->kind != BATCH_ITEM_APPLY || (part != BATCH_PART_ALL && it->part != part))
            continue;
        size_t cap = b->stmts_cap;
        xgrow((void **)&b->stmts, &b->stmts_cap, n + it->nstmts + 1, sizeof(BoundStatement *));
        if (b->stmts_cap != cap || b->stmt_item == NULL) {
            b->stmt_item = xrealloc(b->stmt_item, b->stmts_cap * sizeof *b->stmt_item);
            b->stmt_cls = xrealloc(b->stmt_cls, b->stmts_cap * sizeof *b->stmt_cls);
        }
        for (size_t k = 0; k < it->nstmts; k++) {
            b->stmts[n] = &b->bound.items[it->first_stmt + k];
            b->stmt_cls[n] = it->cls;
            b->stmt_item[n++] = i;
        }
    }
    return n;
}

/* A group of one is sent as its plain statement, tagged with that statement (so a failure
 * names the event); a larger group g as the set-based statement, tagged
 * BATCH_TAG_GROUP_FIRST - g. */
void batch_run_send_merged(BatchRun *b, const BatchCtx *c, Pg *pg, int part)
{
    size_t n = gather_statements(b, c, part);
    merge_build(&b->merge, c->plan, b->stmts, b->stmt_cls, n);
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
                             BATCH_TAG_GROUP_FIRST - (long)g);
        pg_pipeline_send(pg, name, st->nparams, (const char *const *)params,
                         BATCH_TAG_GROUP_FIRST - (long)g);
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

/* ---- committing ---- */

/* A set-based group failed: its events get two new classes, one per half, so the batch is
 * sent again with that group split in two (the rest merged as before). */
static void split_group(BatchRun *b, size_t g)
{
    const MergeGroup *grp = &b->merge.groups[g];
    unsigned halves[2] = {b->next_cls + 1, b->next_cls + 2};
    b->next_cls += 2;
    for (size_t j = 0; j < grp->count; j++) {
        size_t item = b->stmt_item[b->merge.members[grp->first + j]];
        b->items[item].cls = halves[j * 2 >= grp->count];
    }
}

/* The item whose statements include statement s of the batch's Bound. */
static size_t statement_item(const BatchRun *b, size_t s)
{
    size_t i = 0;
    while (i < b->nitems && !(b->items[i].kind == BATCH_ITEM_APPLY && s >= b->items[i].first_stmt &&
                              s < b->items[i].first_stmt + b->items[i].nstmts))
        i++;
    assert(i < b->nitems);
    return i;
}

/* PostgreSQL names the type of a value it refuses ("value too long for type character
 * varying(4)"), not its column: err names the column too when statement s's plan can
 * tell which it is ("could not apply: column \"code\": value too long ..."). */
static void name_refused_column(const BatchRun *b, const BatchCtx *c, size_t s, PjError *err)
{
    ApplierRefusal r = {
        .sqlstate = err->sqlstate,
        .primary = pg_failed_field(c->pg, PG_DIAG_MESSAGE_PRIMARY),
        .detail = pg_failed_field(c->pg, PG_DIAG_MESSAGE_DETAIL),
        .context = pg_failed_field(c->pg, PG_DIAG_CONTEXT),
    };
    StrBuf column = {0};
    if (applier_refused_column(c->plan, &b->bound.items[s], &r, &column))
        pg_error_place(err, "could not apply", column.buf);
    strbuf_done(&column);
}

/* PostgreSQL refused item failed for good (err): it is tried again after a pause until its
 * attempts are spent, then dead-lettered (or, with on_error: stop, held). Returns
 * -PJ_ESTOPPED when a stop comes during the pause, else 0: send the batch again. */
static int refused(BatchRun *b, const BatchCtx *c, size_t failed, const PjError *err)
{
    Item *it = &b->items[failed];
    const char *stream = c->m->streams[it->entry->stream];
    if (++it->attempts < c->cfg->retry_attempts) {
        int delay = c->hooks.retry_delay_ms(c->hooks.arg, it->attempts);
        log_warn(c->log_ctx,
                 "could not apply entry %s of stream \"%s\" (attempt %d of %d): %s, "
                 "trying again in %d ms",
                 it->entry->id_text, stream, it->attempts, c->cfg->retry_attempts, err->message,
                 delay);
        if (!c->hooks.pause(c->hooks.arg, delay))
            return -PJ_ESTOPPED; /* nothing committed: delivered again at the next start */
        return 0;
    }
    batch_item_dead(it, err->message, err->sqlstate);
    if (c->m->on_error == MODEL_ON_ERROR_STOP) {
        batch_run_hold_from(b, c, failed);
    } else {
        log_warn(c->log_ctx, "could not apply entry %s of stream \"%s\": %s, dead-lettering it",
                 it->entry->id_text, stream, err->message);
    }
    return 0;
}

/* A statement of one event that fails permanently isolates that event: it is dead-lettered
 * and the batch is sent again without it, so each bad event costs one more round trip and
 * the good ones are applied exactly once. A set-based statement that fails does not say
 * which of its events is at fault: the batch is sent again with that statement's events
 * split in two halves, and so on, until a statement of one event fails and names it: about
 * log2(events of the statement) more round trips per bad event, each still set-based. */
int batch_run_commit(BatchRun *b, const BatchCtx *c, PjError *err)
{
    bool set_based = c->cfg->set_based;
    /* a split or a dead letter per try: at most 2 per event, and attempts per bad one */
    size_t tries = (b->nitems + 1) * (size_t)(c->cfg->retry_attempts + 2) + 1;
    b->next_cls = 0;
    for (size_t attempt = 0; attempt <= tries; attempt++) {
        long failed = 0; /* the failing statement's tag, set when the pipeline ran */
        int rc;
        if (attempt == 0) {
            /* While the server runs the batch, the next one is read and classified. */
            rc = send_batch(b, c, set_based, err);
            if (rc == 0) {
                c->hooks.read_ahead(c->hooks.arg);
                rc = pg_pipeline_finish(c->pg, &failed, err);
            }
        } else {
            rc = run_once(b, c, set_based, &failed, err);
        }
        if (rc == 0)
            return 0;
        if (rc == -PJ_EPERMANENT && failed <= BATCH_TAG_GROUP_FIRST && set_based) {
            size_t g = (size_t)(BATCH_TAG_GROUP_FIRST - failed);
            log_debug(c->log_ctx, "a set-based statement of %zu events failed (%s), splitting it",
                      b->merge.groups[g].count, err->message);
            split_group(b, g);
            continue;
        }
        if (rc != -PJ_EPERMANENT || failed < 0)
            return rc == -PJ_EPERMANENT ? -PJ_ETRANSIENT : rc; /* bookkeeping failed: retry */
        name_refused_column(b, c, (size_t)failed, err);
        if (refused(b, c, statement_item(b, (size_t)failed), err) < 0)
            return -PJ_ESTOPPED;
    }
    return pj_error_set(err, PJ_ETRANSIENT, "could not isolate the failing events of a batch");
}
