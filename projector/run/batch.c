/* batch.c - one batch of a read model: the entries read, what each is made into, the gaps
 * before them, and once the batch has committed (batch_commit.c), the outcomes told to the
 * board and the entries acknowledged.
 *
 * Owns the entries read, their bound statements and the set-based plan of the batch.
 * Invariant: batch_run_ack is only called once the transaction that settled its entries
 * has committed (worker.c), so an entry is never acknowledged before it is settled.
 */
#include "run/batch.h"
#include "run/batch_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>

#include "apply/event.h"
#include "apply/merge.h"
#include "base/jsonarena.h"
#include "base/log.h"

#define BATCH_TYPE_MAX 256 /* longer event types are found by decoding */

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
    ReadLimits limits = {
        .count = c->cfg->batch,
        .max_entry_bytes = (size_t)c->cfg->max_event_bytes,
        .max_read_bytes = (size_t)c->cfg->max_read_bytes,
    };
    int rc =
        reader_read(c->reader, c->group, c->cfg->consumer, (const char *const *)m->streams, after,
                    m->nstreams, &limits, block_ms, &b->batch, in_history ? NULL : b->counts, err);
    if (rc == 0 && b->batch.nheld > 0)
        log_debug(c->log_ctx,
                  "read %zu entries (%zu bytes); %zu more left pending past max_read_bytes (%d), "
                  "read next",
                  b->batch.count, b->batch.bytes, b->batch.nheld, c->cfg->max_read_bytes);
    return rc;
}

const Batch *batch_run_entries(const BatchRun *b)
{
    return &b->batch;
}

size_t batch_run_size(const BatchRun *b)
{
    return b->batch.count;
}

void batch_item_dead(Item *it, const char *error, const char *sqlstate)
{
    it->kind = BATCH_ITEM_DEAD;
    free(it->error);
    it->error = xstrdup(error);
    snprintf(it->sqlstate, sizeof it->sqlstate, "%s", sqlstate != NULL ? sqlstate : "");
}

/* An event with statements to run; unless a partition of an interrupted batch has applied
 * them already. */
static void item_apply(BatchRun *b, const BatchCtx *c, Item *it)
{
    it->kind = BATCH_ITEM_APPLY;
    it->nstmts = b->bound.count - it->first_stmt;
    if (c->recovery->nparts > 0) {
        StrBuf key = {0};
        int part = partition_of(c->plan, &b->bound.items[it->first_stmt], it->nstmts,
                                c->recovery->nparts, &key);
        strbuf_done(&key);
        if (partition_applied(c->recovery, it->entry->stream, part, it->entry->id))
            it->kind = BATCH_ITEM_DONE;
    }
}

/* Decodes the entry and binds its statements into the batch's Bound. Returns 0,
 * APPLIER_UNHANDLED, or a negative code with err set: the entry is to be dead-lettered. */
static int bind_entry(BatchRun *b, const BatchCtx *c, Item *it, PjError *err)
{
    const Entry *e = it->entry;
    json_t *event = NULL;
    /* Every JSON node of the event lives in this thread's arena until jsonarena_end. */
    jsonarena_begin();
    int rc = event_decode(c->m->streams[e->stream], e->id_text, &e->fields, c->cfg->event_field,
                          &event, err);
    if (rc < 0) {
        jsonarena_end();
        return rc;
    }
    const json_t *type = json_object_get(event, "type");
    if (json_is_string(type))
        it->event_type = xstrdup(json_string_value(type));
    it->first_stmt = b->bound.count;
    rc = applier_bind(c->plan, event, &b->bound, err);
    json_decref(event);
    jsonarena_end();
    return rc;
}

/* Decides what to do with one entry: acknowledge only, skip, dead-letter, or apply. */
static void classify(BatchRun *b, const BatchCtx *c, Item *it)
{
    const Entry *e = it->entry;
    PjError err;
    if (stream_id_cmp(e->id, c->checkpoint[e->stream]) <= 0) {
        it->kind = BATCH_ITEM_ACK_ONLY; /* settled before a crash, not yet acknowledged */
        return;
    }
    if (e->deleted) {
        batch_item_dead(it, "the entry was deleted from the stream before it was applied", NULL);
        return;
    }
    /* Before anything looks into it, for every read model alike: the reader never took it
     * whole, and its fields hold only their first bytes. */
    if (e->oversize) {
        char *msg =
            e->whole_fields > RESPCUT_FIELDS_MAX / 2
                ? xasprintf("entry of %zu fields is over the %d an entry may have: not "
                            "read; the raw copy keeps the first %d",
                            e->whole_fields, RESPCUT_FIELDS_MAX / 2, RESPCUT_FIELDS_KEEP / 2)
                : xasprintf("entry of %zu bytes is over max_event_bytes (%d): not read; "
                            "the raw copy keeps the first %d bytes of each field",
                            e->bytes, c->cfg->max_event_bytes, RESPCUT_KEEP_BYTES);
        batch_item_dead(it, msg, NULL);
        free(msg);
        return;
    }
    /* A type this read model does not handle is skipped without decoding the entry: on a
     * stream many read models share, each decodes only what it applies. */
    char peeked[BATCH_TYPE_MAX];
    if (event_peek_type(&e->fields, c->cfg->event_field, peeked, sizeof peeked) >= 0 &&
        model_find_handler(c->m, peeked) == NULL) {
        it->kind = BATCH_ITEM_SKIP;
        return;
    }
    int rc = bind_entry(b, c, it, &err);
    if (rc == APPLIER_UNHANDLED)
        it->kind = BATCH_ITEM_SKIP;
    else if (rc < 0)
        batch_item_dead(it, err.message, NULL);
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
        if (it->entry->stream != s || it->kind == BATCH_ITEM_ACK_ONLY ||
            it->kind == BATCH_ITEM_HOLD)
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

uint64_t batch_run_count_applied(const BatchRun *b, size_t s)
{
    return count_kind(b, s, BATCH_ITEM_APPLY) + count_kind(b, s, BATCH_ITEM_DONE);
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
void batch_run_hold_from(BatchRun *b, const BatchCtx *c, size_t bad)
{
    const Item *it = &b->items[bad];
    size_t s = it->entry->stream;
    if (*c->stop_reason == NULL)
        *c->stop_reason =
            xasprintf("cannot apply entry %s of stream \"%s\": %s", it->entry->id_text,
                      c->m->streams[s], it->error != NULL ? it->error : "unknown error");
    for (size_t i = bad; i < b->nitems; i++)
        if (b->items[i].entry->stream == s && b->items[i].kind != BATCH_ITEM_ACK_ONLY)
            b->items[i].kind = BATCH_ITEM_HOLD;
}

void batch_run_prepare(BatchRun *b, const BatchCtx *c)
{
    check_gaps(b, c);
    if (c->m->on_error != MODEL_ON_ERROR_STOP)
        return;
    for (size_t i = 0; i < b->nitems; i++)
        if (b->items[i].kind == BATCH_ITEM_DEAD)
            batch_run_hold_from(b, c, i);
}

/* The position the checkpoint of stream s takes with this batch (held entries are a
 * suffix of the stream's entries in the batch), or -1 when unknown. */
int64_t batch_run_settled_position(const BatchRun *b, size_t s)
{
    if (b->batch_position[s] < 0)
        return -1;
    return b->batch_position[s] - (int64_t)count_kind(b, s, BATCH_ITEM_HOLD);
}

bool batch_run_any_to_settle(const BatchRun *b)
{
    for (size_t i = 0; i < b->nitems; i++)
        if (b->items[i].kind != BATCH_ITEM_ACK_ONLY && b->items[i].kind != BATCH_ITEM_HOLD)
            return true;
    return false;
}

/* ---- after the commit ---- */

static BoardOutcomeKind outcome_of(ItemKind kind)
{
    if (kind == BATCH_ITEM_APPLY || kind == BATCH_ITEM_DONE)
        return BOARD_OUTCOME_APPLIED;
    return kind == BATCH_ITEM_DEAD ? BOARD_OUTCOME_DEAD_LETTERED : BOARD_OUTCOME_SKIPPED;
}

/* The outcomes of the entries of stream s that the batch settled, ascending, into out;
 * returns how many. */
static size_t stream_outcomes(const BatchRun *b, size_t s, BoardOutcome *out)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nitems; i++) {
        const Item *it = &b->items[i];
        if (it->entry->stream != s || it->kind == BATCH_ITEM_ACK_ONLY ||
            it->kind == BATCH_ITEM_HOLD)
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
        c->position[s] = batch_run_settled_position(b, s);
        board_committed(c->board, c->rm, s, top, out, n);
        c->stats->applied += batch_run_count_applied(b, s);
        c->stats->skipped += count_kind(b, s, BATCH_ITEM_SKIP);
        c->stats->dead += count_kind(b, s, BATCH_ITEM_DEAD);
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
            if (b->items[i].entry->stream == s && b->items[i].kind != BATCH_ITEM_HOLD)
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
    if (it->kind != BATCH_ITEM_APPLY)
        return false;
    *ret_stream = it->entry->stream;
    *ret_stmts = &b->bound.items[it->first_stmt];
    *ret_n = it->nstmts;
    return true;
}

void batch_run_set_part(BatchRun *b, size_t i, int part)
{
    assert(b->items[i].kind == BATCH_ITEM_APPLY);
    b->items[i].part = part;
}

size_t batch_run_count_part(const BatchRun *b, int part)
{
    size_t n = 0;
    for (size_t i = 0; i < b->nitems; i++)
        n += b->items[i].kind == BATCH_ITEM_APPLY && b->items[i].part == part;
    return n;
}
