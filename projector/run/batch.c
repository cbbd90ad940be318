/* batch.c - one batch of a read model: what each entry is made into, the transaction that
 * settles them with their checkpoints (one by one or set-based), the isolation of a bad
 * event, and the outcomes told to the board.
 *
 * Owns the entries read, their bound statements and the set-based plan of the batch.
 * Invariant: batch_run_ack is only called once the transaction that settled its entries
 * has committed (worker.c), so an entry is never acknowledged before it is settled.
 */
#include "run/batch.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "apply/event.h"
#include "apply/merge.h"
#include "base/jsonarena.h"
#include "base/log.h"
#include "sink/checkpoint.h"

#define BATCH_TYPE_MAX 256          /* longer event types are found by decoding */
#define BATCH_TAG_GROUP_FIRST (-16L) /* set-based group g is tagged this - g in a pipeline */

typedef enum {
    ITEM_ACK_ONLY, /* at or below the checkpoint: settled before, acknowledge only */
    ITEM_APPLY,
    ITEM_DONE, /* applied by a partition whose batch did not commit (partition.h) */
    ITEM_SKIP, /* type not handled */
    ITEM_DEAD, /* dead-lettered in this transaction */
    ITEM_HOLD  /* on_error: stop - at or after a bad event: not settled, not acknowledged */
} ItemKind;

/* One entry of the batch and what this read model does with it. */
typedef struct Item {
    const Entry *entry;
    ItemKind kind;
    size_t first_stmt, nstmts; /* ITEM_APPLY: range in the batch's Bound */
    char *event_type;          /* may be NULL */
    char *error;               /* ITEM_DEAD */
    char sqlstate[6];
    int attempts; /* times PostgreSQL refused it in this batch */
    int part;     /* parallel apply: the partition of its statements, or BATCH_PART_SERIAL */
    unsigned cls; /* merge_build's class: set-based groups are split by it to find a bad event */
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
    const BoundStatement **stmts; /* ITEM_APPLY statements in batch order */
    size_t *stmt_item;            /* the item of each */
    unsigned *stmt_cls;           /* the class of each (its item's) */
    unsigned next_cls;            /* the last class given out in this batch */
    size_t stmts_cap;
};

/* ---- lifecycle ---- */

BatchRun *batch_run_new(size_t nstreams)
{
    BatchRun *b = xcalloc(1, sizeof *b);
    b->batch_position = xcalloc(nstreams, sizeof *b->batch_position);
    b->counts = xcalloc(nstreams, sizeof *b->counts);
    return b;
}

static void clear_items(BatchRun *b)
{
    for (size_t i = 0; i < b->nitems; i++) {
        free(b->items[i].event_type);
        free(b->items[i].error);
    }
    b->nitems = 0;
    bound_reset(&b->bound);
}

BatchRun *batch_run_free(BatchRun *b)
{
    if (b == NULL)
        return NULL;
    clear_items(b);
    free(b->items);
    bound_done(&b->bound);
    batch_done(&b->batch);
    free(b->batch_position);
    free(b->counts);
    merge_plan_done(&b->merge);
    free(b->stmts);
    free(b->stmt_item);
    free(b->stmt_cls);
    free(b);
    return NULL;
}

void batch_run_reset(BatchRun *b)
{
    clear_items(b);
    batch_reset(&b->batch);
}

/* ---- reading and classifying ---- */

int batch_run_read(BatchRun *b, const BatchCtx *c, const char *const *after, int block_ms,
                   PjError *err)
{
    const Model *m = c->m;
    bool in_history = false;
    for (size_t s = 0; s < m->nstreams; s++)
        in_history = in_history || after[s] != NULL;
    /* Positions are only meaningful for new deliveries, not for re-read pending entries. */
    b->counts_valid = !in_history;
    return reader_read(c->reader, c->group, c->cfg->consumer, (const char *const *)m->streams,
                       after, m->nstreams, c->cfg->batch, block_ms, &b->batch,
                       in_history ? NULL : b->counts, err);
}

const Batch *batch_run_entries(const BatchRun *b)
{
    return &b->batch;
}

size_t batch_run_size(const BatchRun *b)
{
    return b->batch.count;
}

static void item_dead(Item *it, const char *error, const char *sqlstate)
{
    it->kind = ITEM_DEAD;
    free(it->error);
    it->error = xstrdup(error);
    snprintf(it->sqlstate, sizeof it->sqlstate, "%s", sqlstate != NULL ? sqlstate : "");
}

/* An event with statements to run; unless a partition of an interrupted batch has applied
 * them already. */
static void item_apply(BatchRun *b, const BatchCtx *c, Item *it)
{
    it->kind = ITEM_APPLY;
    it->nstmts = b->bound.count - it->first_stmt;
    if (c->recovery->nparts > 0) {
        StrBuf key = {0};
        int part = partition_of(c->plan, &b->bound.items[it->first_stmt], it->nstmts,
                                c->recovery->nparts, &key);
        strbuf_done(&key);
        if (partition_applied(c->recovery, it->entry->stream, part, it->entry->id))
            it->kind = ITEM_DONE;
    }
}

/* Decides what to do with one entry: acknowledge only, skip, dead-letter, or apply. */
static void classify(BatchRun *b, const BatchCtx *c, Item *it)
{
    const Entry *e = it->entry;
    const Model *m = c->m;
    PjError err;
    json_t *event = NULL;
    if (stream_id_cmp(e->id, c->checkpoint[e->stream]) <= 0) {
        it->kind = ITEM_ACK_ONLY; /* settled before a crash, not yet acknowledged */
        return;
    }
    if (e->deleted) {
        item_dead(it, "the entry was deleted from the stream before it was applied", NULL);
        return;
    }
    /* A type this read model does not handle is skipped without decoding the entry: on a
     * stream many read models share, each decodes only what it applies. */
    char peeked[BATCH_TYPE_MAX];
    if (event_peek_type(&e->fields, c->cfg->event_field, peeked, sizeof peeked) >= 0 &&
        model_find_handler(m, peeked) == NULL) {
        it->kind = ITEM_SKIP;
        return;
    }
    /* Every JSON node of the event lives in this thread's arena until jsonarena_end. */
    jsonarena_begin();
    if (event_decode(m->streams[e->stream], e->id_text, &e->fields, c->cfg->event_field, &event,
                     &err) < 0) {
        jsonarena_end();
        item_dead(it, err.message, NULL);
        return;
    }
    const json_t *type = json_object_get(event, "type");
    if (json_is_string(type))
        it->event_type = xstrdup(json_string_value(type));
    it->first_stmt = b->bound.count;
    int rc = applier_bind(c->plan, event, &b->bound, &err);
    json_decref(event);
    jsonarena_end();
    if (rc == APPLIER_UNHANDLED)
        it->kind = ITEM_SKIP;
    else if (rc < 0)
        item_dead(it, err.message, NULL);
    else
        item_apply(b, c, it);
}

void batch_run_classify(BatchRun *b, const BatchCtx *c)
{
    clear_items(b);
    xgrow((void **)&b->items, &b->items_cap, b->batch.count, sizeof *b->items);
    for (size_t i = 0; i < b->batch.count; i++) {
        Item *it = &b->items[b->nitems++];
        *it = (Item){.entry = &b->batch.entries[i]};
        classify(b, c, it);
    }
}

bool batch_run_top(const BatchRun *b, size_t s, StreamId *ret)
{
    bool any = false;
    for (size_t i = 0; i < b->nitems; i++) {
        const Item *it = &b->items[i];
        if (it->entry->stream != s || it->kind == ITEM_ACK_ONLY || it->kind == ITEM_HOLD)
            continue;
        if (!any || stream_id_cmp(it->entry->id, *ret) > 0)
            *ret = it->entry->id;
        any = true;
    }
    return any;
}

static uint64_t count_kind(const BatchRun *b, size_t s, ItemKind kind)
{
    uint64_t n = 0;
    for (size_t i = 0; i < b->nitems; i++)
        if (b->items[i].entry->stream == s && b->items[i].kind == kind)
            n++;
    return n;
}

static uint64_t count_applied(const BatchRun *b, size_t s)
{
    return count_kind(b, s, ITEM_APPLY) + count_kind(b, s, ITEM_DONE);
}

/* ---- gaps and held entries ---- */

/* The first entry of stream s in the batch that is above the checkpoint, if any. */
static bool first_new(const BatchRun *b, const BatchCtx *c, size_t s, StreamId *ret)
{
    bool any = false;
    for (size_t i = 0; i < b->batch.count; i++) {
        const Entry *e = &b->batch.entries[i];
        if (e->stream != s || stream_id_cmp(e->id, c->checkpoint[s]) <= 0)
            continue;
        if (!any || stream_id_cmp(e->id, *ret) < 0)
            *ret = e->id;
        any = true;
    }
    return any;
}

/* How many of this batch's entries of stream s are new deliveries (above the checkpoint). */
static uint64_t count_new(const BatchRun *b, const BatchCtx *c, size_t s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < b->batch.count; i++)
        n += b->batch.entries[i].stream == s &&
             stream_id_cmp(b->batch.entries[i].id, c->checkpoint[s]) > 0;
    return n;
}

static void log_gap(const BatchCtx *c, size_t s, StreamId first, uint64_t missing)
{
    char a[STREAM_ID_BUFSZ], b[STREAM_ID_BUFSZ], n[32] = "";
    if (missing > 0)
        snprintf(n, sizeof n, " (%" PRIu64 " entries)", missing);
    log_error(c->log_ctx,
              "gap in stream \"%s\": entries after %s and before %s were removed before this "
              "read model read them%s, continuing",
              c->m->streams[s], stream_id_format(c->checkpoint[s], a), stream_id_format(first, b),
              n);
    c->stats->gaps++;
}

/* Entries removed from a stream (trimmed or deleted) before this read model read them are
 * lost to it: Redis just delivers the next one. Redis 7 counts a group's position in
 * entries ever added (entries-read); the checkpoint keeps that position, so a batch whose
 * first entry stands further on than the checkpoint's next shows the gap, and an XDEL
 * between the two shows in max-deleted-entry-id. Either is logged loudly with the range. */
static void check_gaps(BatchRun *b, const BatchCtx *c)
{
    for (size_t s = 0; s < c->m->nstreams; s++) {
        StreamId first;
        const StreamCounts sc = b->counts[s];
        b->batch_position[s] = -1;
        if (!b->counts_valid || !first_new(b, c, s, &first))
            continue;
        int64_t n_new = (int64_t)count_new(b, c, s);
        int64_t before_first = sc.has_entries_read ? (int64_t)sc.entries_read - n_new : -1;
        if (before_first >= 0)
            b->batch_position[s] = (int64_t)sc.entries_read;
        if (before_first >= 0 && c->position[s] >= 0 && before_first > c->position[s])
            log_gap(c, s, first, (uint64_t)(before_first - c->position[s]));
        else if (stream_id_cmp(sc.max_deleted, c->checkpoint[s]) > 0 &&
                 stream_id_cmp(sc.max_deleted, first) < 0)
            log_gap(c, s, first, 0);
    }
}

/* on_error: stop. The read model stops at the bad event: it and every later entry of its
 * stream in the batch stay unsettled and unacknowledged (re-read after a restart); the
 * entries before it, and those of other streams, are still applied. */
static void hold_from(BatchRun *b, const BatchCtx *c, size_t bad)
{
    const Item *it = &b->items[bad];
    size_t s = it->entry->stream;
    if (*c->stop_reason == NULL)
        *c->stop_reason = xasprintf("cannot apply entry %s of stream \"%s\": %s",
                                    it->entry->id_text, c->m->streams[s],
                                    it->error != NULL ? it->error : "unknown error");
    for (size_t i = bad; i < b->nitems; i++)
        if (b->items[i].entry->stream == s && b->items[i].kind != ITEM_ACK_ONLY)
            b->items[i].kind = ITEM_HOLD;
}

void batch_run_prepare(BatchRun *b, const BatchCtx *c)
{
    check_gaps(b, c);
    if (c->m->on_error != ON_ERROR_STOP)
        return;
    for (size_t i = 0; i < b->nitems; i++)
        if (b->items[i].kind == ITEM_DEAD)
            hold_from(b, c, i);
}

/* The position the checkpoint of stream s takes with this batch (held entries are a
 * suffix of the stream's entries in the batch), or -1 when unknown. */
static int64_t settled_position(const BatchRun *b, size_t s)
{
    if (b->batch_position[s] < 0)
        return -1;
    return b->batch_position[s] - (int64_t)count_kind(b, s, ITEM_HOLD);
}

bool batch_run_any_to_settle(const BatchRun *b)
{
    for (size_t i = 0; i < b->nitems; i++)
        if (b->items[i].kind != ITEM_ACK_ONLY && b->items[i].kind != ITEM_HOLD)
            return true;
    return false;
}

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
    if (it->kind == ITEM_DEAD) {
        send_dead_letter(c, it);
        return;
    }
    if (it->kind != ITEM_APPLY)
        return;
    for (size_t k = 0; k < it->nstmts; k++) {
        const BoundStatement *bs = &b->bound.items[it->first_stmt + k];
        const PlanStatement *st = applier_plan_statement(c->plan, bs->statement);
        pg_pipeline_send(c->pg, st->name, bs->nparams, (const char *const *)bs->params, index);
    }
}

/* Lists the statements of the items of partition part (or all) in batch order, with the
 * item and the class of each, and sends the dead letters on the way; returns how many. */
static size_t gather_statements(BatchRun *b, const BatchCtx *c, int part)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nitems; i++) {
        const Item *it = &b->items[i];
        if (it->kind == ITEM_DEAD && (part == BATCH_PART_ALL || part == 0))
            send_dead_letter(c, it);
        if (it->kind != ITEM_APPLY || (part != BATCH_PART_ALL && it->part != part))
            continue;
        size_t cap = b->stmts_cap;
        xgrow((void **)&b->stmts, &b->stmts_cap, n + it->nstmts + 1, sizeof *b->stmts);
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

/* A group of one is sent as its plain statement, tagged with its item (so a failure names
 * the event); a larger group g as the set-based statement, tagged BATCH_TAG_GROUP_FIRST - g. */
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
                             (long)b->stmt_item[m]);
            continue;
        }
        const char *name;
        char **params = merge_statement(&b->merge, grp, b->stmts, st, &name);
        pg_pipeline_send(pg, name, st->nparams, (const char *const *)params,
                         BATCH_TAG_GROUP_FIRST - (long)g);
        merge_params_free(params, st->nparams);
    }
}

void batch_run_send_checkpoints(const BatchRun *b, const BatchCtx *c)
{
    for (size_t s = 0; s < c->m->nstreams; s++) {
        StreamId top;
        if (batch_run_top(b, s, &top))
            checkpoint_send(c->pg, c->m->name, c->m->streams[s], c->checkpoint[s], top,
                            count_applied(b, s), settled_position(b, s), -1);
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

/* PostgreSQL refused item failed for good (err): it is tried again after a pause until its
 * attempts are spent, then dead-lettered (or, with on_error: stop, held). Returns
 * -PJ_ESTOPPED when a stop comes during the pause, else 0: send the batch again. */
static int refused(BatchRun *b, const BatchCtx *c, long failed, const PjError *err)
{
    Item *it = &b->items[failed];
    const char *stream = c->m->streams[it->entry->stream];
    if (++it->attempts < c->cfg->retry_attempts) {
        int delay = c->hooks.retry_delay_ms(c->hooks.arg, it->attempts);
        log_warn(c->log_ctx, "could not apply entry %s of stream \"%s\" (attempt %d of %d): %s, "
                             "trying again in %d ms", it->entry->id_text,
                 stream, it->attempts, c->cfg->retry_attempts, err->message, delay);
        if (!c->hooks.pause(c->hooks.arg, delay))
            return -PJ_ESTOPPED; /* nothing committed: delivered again at the next start */
        return 0;
    }
    item_dead(it, err->message, err->sqlstate);
    if (c->m->on_error == ON_ERROR_STOP) {
        hold_from(b, c, (size_t)failed);
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
        long failed;
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
        if (refused(b, c, failed, err) < 0)
            return -PJ_ESTOPPED;
    }
    return pj_error_set(err, PJ_ETRANSIENT, "could not isolate the failing events of a batch");
}

/* ---- after the commit ---- */

static BoardOutcomeKind outcome_of(ItemKind kind)
{
    if (kind == ITEM_APPLY || kind == ITEM_DONE)
        return BOARD_OUTCOME_APPLIED;
    return kind == ITEM_DEAD ? BOARD_OUTCOME_DEAD_LETTERED : BOARD_OUTCOME_SKIPPED;
}

/* The outcomes of the entries of stream s that the batch settled, ascending, into out;
 * returns how many. */
static size_t stream_outcomes(const BatchRun *b, size_t s, BoardOutcome *out)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nitems; i++) {
        const Item *it = &b->items[i];
        if (it->entry->stream != s || it->kind == ITEM_ACK_ONLY || it->kind == ITEM_HOLD)
            continue;
        out[n++] = (BoardOutcome){
            .id = it->entry->id, .outcome = outcome_of(it->kind), .error = it->error};
    }
    return n;
}

void batch_run_publish(BatchRun *b, const BatchCtx *c)
{
    BoardOutcome *out = xmalloc((b->nitems + 1) * sizeof *out);
    for (size_t s = 0; s < c->m->nstreams; s++) {
        StreamId top;
        if (!batch_run_top(b, s, &top))
            continue;
        size_t n = stream_outcomes(b, s, out);
        assert(stream_id_cmp(top, c->checkpoint[s]) > 0);
        c->checkpoint[s] = top;
        c->position[s] = settled_position(b, s);
        board_committed(c->board, c->rm, s, top, out, n);
        c->stats->applied += count_applied(b, s);
        c->stats->skipped += count_kind(b, s, ITEM_SKIP);
        c->stats->dead += count_kind(b, s, ITEM_DEAD);
    }
    free(out);
}

int batch_run_ack(const BatchRun *b, const BatchCtx *c, PjError *err)
{
    const char **ids = xmalloc((b->nitems + 1) * sizeof *ids);
    int rc = 0;
    for (size_t s = 0; rc == 0 && s < c->m->nstreams; s++) {
        size_t n = 0;
        for (size_t i = 0; i < b->nitems; i++)
            if (b->items[i].entry->stream == s && b->items[i].kind != ITEM_HOLD)
                ids[n++] = b->items[i].entry->id_text;
        rc = reader_ack(c->reader, c->m->streams[s], c->group, ids, n, err);
    }
    free(ids);
    return rc;
}

/* ---- for parallel apply ---- */

bool batch_run_applies(const BatchRun *b, size_t i, size_t *ret_stream,
                       const BoundStatement **ret_stmts, size_t *ret_n)
{
    const Item *it = &b->items[i];
    if (it->kind != ITEM_APPLY)
        return false;
    *ret_stream = it->entry->stream;
    *ret_stmts = &b->bound.items[it->first_stmt];
    *ret_n = it->nstmts;
    return true;
}

void batch_run_set_part(BatchRun *b, size_t i, int part)
{
    assert(b->items[i].kind == ITEM_APPLY);
    b->items[i].part = part;
}

size_t batch_run_count_part(const BatchRun *b, int part)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nitems; i++)
        n += b->items[i].kind == ITEM_APPLY && b->items[i].part == part;
    return n;
}
