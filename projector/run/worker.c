/* worker.c - the read loop of one read model: session set-up, batches, retries.
 *
 * Owns its Redis and PostgreSQL sessions, the compiled applier plan and the in-memory
 * copy of its checkpoints. Invariant: an entry is acknowledged in Redis only after the
 * transaction that settled it (applied, skipped or dead-lettered, together with the
 * checkpoint covering it) has committed; so after any crash, entries are either pending
 * (re-read, and skipped if at or below the checkpoint) or done.
 */
#include "run/worker.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apply/applier.h"
#include "sink/checkpoint.h"
#include "apply/event.h"
#include "base/jsonarena.h"
#include "base/log.h"
#include "apply/merge.h"
#include "sink/partition.h"
#include "sink/pg.h"
#include "source/reader.h"
#include "os/now.h"

#define SAMPLE_EVERY_MS 250
#define LOOKUP_WAIT_SLICE_MS 1000
#define IDLE_PG_CHECK_MS 3000
#define WORKER_TYPE_MAX 256 /* longer event types are found by decoding */
#define TAG_GROUP_FIRST (-16L) /* pipeline tag of set-based group g: TAG_GROUP_FIRST - g */
#define PART_ALL (-1)    /* send_merged: every statement of the batch */
#define PART_SERIAL (-2) /* Item.part: after the partitions, on the main session (parallel apply) */

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
    size_t first_stmt, nstmts; /* ITEM_APPLY: range in the worker's Bound */
    char *event_type;          /* may be NULL */
    char *error;               /* ITEM_DEAD */
    char sqlstate[6];
    int attempts; /* times PostgreSQL refused it in this batch */
    int part;     /* parallel apply: the partition of its statements, or PART_SERIAL */
    unsigned cls; /* merge_build's class: set-based groups are split by it to find a bad event */
} Item;

/* One batch in the worker's hands: the entries read and what is made of them. */
typedef struct Slot {
    Batch batch;
    Bound bound;
    Item *items;
    size_t nitems, items_cap;
    int64_t *batch_position; /* per stream: position of the batch's last entry, -1 unknown */
    StreamCounts *counts;    /* per stream: as Redis reported them right after the read */
    bool counts_valid;
} Slot;

struct Worker {
    WorkerOpts o;
    const Model *m;
    pthread_t thread;
    char ctx[96]; /* log context */
    char *group;
    Reader *reader;
    Pg *pg;
    Pg *parts[PARTITION_MAX]; /* parallel apply: the sessions of partitions 1.. */
    Recovery recovery;        /* partitions applied ahead of the checkpoint */
    bool *serial;             /* per stream: this batch's events run after the partitions */
    ApplierPlan *plan;
    StreamId *checkpoint;  /* per stream: last committed (settled) entry */
    char (*cursor)[STREAM_ID_BUFSZ]; /* per stream, history phase: re-read pending after this */
    bool *history;         /* per stream: still re-reading pending entries */
    Slot cur;   /* the batch being applied */
    Slot ahead; /* the next one, read and classified while cur commits (or empty) */
    MergePlan merge;
    const BoundStatement **stmts; /* ITEM_APPLY statements in batch order (set-based run) */
    size_t *stmt_item;            /* the item of each */
    unsigned *stmt_cls;           /* the class of each (its item's) */
    unsigned next_cls;            /* the last class given out in this batch */
    size_t stmts_cap;
    int backoff_ms;
    bool faulted;
    int64_t next_sample_ms;
    int64_t next_stats_ms;
    int64_t next_pg_check_ms;
    uint64_t stat_applied, stat_skipped, stat_dead;
    char *stop_reason; /* on_error: stop - why the read model stopped */
    uint64_t gaps;     /* gaps in streams reported since start */
    int64_t *position; /* per stream: the checkpoint's entries-read position, -1 unknown */
};

/* ---- small helpers ---- */

static bool stopping(const Worker *w)
{
    return atomic_load(w->o.stop);
}

/* Sleeps ms, waking early on stop. Only used between retries. */
static void pause_ms(const Worker *w, int ms)
{
    int64_t until = now_monotonic_ms() + ms;
    while (!stopping(w)) {
        int64_t left = until - now_monotonic_ms();
        if (left <= 0)
            return;
        int slice = left > 50 ? 50 : (int)left;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)slice * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Full jitter: a delay drawn evenly from [min/2, cap). */
static int jitter_ms(const Worker *w, int cap)
{
    unsigned seed = (unsigned)now_monotonic_ms() ^ (unsigned)(uintptr_t)w;
    return w->o.cfg->backoff_min_ms / 2 + (int)(rand_r(&seed) % (unsigned)cap);
}

/* The cap of step k (0, 1, ...) of a capped exponential backoff. */
static int backoff_cap(const Worker *w, int k)
{
    int64_t cap = w->o.cfg->backoff_min_ms;
    for (int i = 0; i < k && cap < w->o.cfg->backoff_max_ms; i++)
        cap *= 2;
    return cap > w->o.cfg->backoff_max_ms ? w->o.cfg->backoff_max_ms : (int)cap;
}

/* Capped exponential backoff with full jitter (retry.backoff_min_ms .. backoff_max_ms). */
static int next_backoff(Worker *w)
{
    w->backoff_ms = w->backoff_ms == 0 ? backoff_cap(w, 0) : w->backoff_ms * 2;
    if (w->backoff_ms > w->o.cfg->backoff_max_ms)
        w->backoff_ms = w->o.cfg->backoff_max_ms;
    return jitter_ms(w, w->backoff_ms);
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
    w->backoff_ms = 0;
    board_set_state(w->o.board, w->o.rm, BOARD_STATE_RUNNING, NULL);
}

static void slot_clear(Slot *sl)
{
    for (size_t i = 0; i < sl->nitems; i++) {
        free(sl->items[i].event_type);
        free(sl->items[i].error);
    }
    sl->nitems = 0;
    bound_reset(&sl->bound);
}

static void items_reset(Worker *w)
{
    slot_clear(&w->cur);
}

static void slot_init(Slot *sl, size_t nstreams)
{
    sl->batch_position = xcalloc(nstreams, sizeof *sl->batch_position);
    sl->counts = xcalloc(nstreams, sizeof *sl->counts);
}

static void slot_done(Slot *sl)
{
    slot_clear(sl);
    free(sl->items);
    bound_done(&sl->bound);
    batch_done(&sl->batch);
    free(sl->batch_position);
    free(sl->counts);
}

static void swap_slots(Worker *w)
{
    Slot t = w->cur;
    w->cur = w->ahead;
    w->ahead = t;
}

static void drop_session(Worker *w)
{
    batch_reset(&w->cur.batch);
    slot_clear(&w->ahead); /* read ahead but not applied: delivered again */
    batch_reset(&w->ahead.batch);
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
        int rc = reader_ensure_group(w->reader, m->streams[s], w->group, m->start == START_BEGINNING,
                                     &created, err);
        if (rc < 0)
            return rc;
        if (created)
            log_info(w->ctx, "created consumer group \"%s\" on stream \"%s\"", w->group, m->streams[s]);
        if (created && m->start == START_END) {
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
    int rc = pg_query(w->pg, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", 1, params, &res, err);
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

static int open_session(Worker *w, PjError *err)
{
    const Config *cfg = w->o.cfg;
    uint64_t *dead = xcalloc(w->m->nstreams, sizeof *dead);
    int rc = pg_connect(cfg->pg_conninfo, &w->pg, err);
    if (rc == 0)
        rc = lock_read_model(w, err);
    if (rc == 0)
        rc = reader_connect(&cfg->redis, cfg->connect_timeout_ms,
                            cfg->block_ms + cfg->connect_timeout_ms + 5000, &w->reader, err);
    if (rc == 0)
        rc = prepare_statements(w, w->pg, false, err);
    if (rc == 0)
        rc = open_partitions(w, err);
    if (rc == 0)
        rc = ensure_groups(w, err);
    if (rc == 0)
        rc = checkpoint_load(w->pg, cfg->pg_schema, w->m, w->checkpoint, w->position, err);
    if (rc == 0)
        rc = partition_load(w->pg, cfg->pg_schema, w->m, w->checkpoint, &w->recovery, err);
    if (rc == 0 && partition_recovery_pending(&w->recovery, w->checkpoint))
        log_info(w->ctx, "a batch over %d sessions was interrupted after some of its "
                         "partitions committed; their share is not applied again",
                 w->recovery.nparts);
    if (rc == 0)
        rc = checkpoint_count_dead(w->pg, cfg->pg_schema, w->m, dead, err);
    if (rc == 0) {
        for (size_t s = 0; s < w->m->nstreams; s++) {
            w->history[s] = true;
            snprintf(w->cursor[s], STREAM_ID_BUFSZ, "0-0");
        }
        publish_positions(w, dead);
    }
    free(dead);
    if (rc < 0)
        drop_session(w);
    return rc;
}

/* ---- one batch ---- */


static void item_dead(Item *it, const char *error, const char *sqlstate)
{
    it->kind = ITEM_DEAD;
    free(it->error);
    it->error = xstrdup(error);
    snprintf(it->sqlstate, sizeof it->sqlstate, "%s", sqlstate != NULL ? sqlstate : "");
}

/* Decides what to do with one entry: acknowledge only, skip, dead-letter, or apply. */
static void classify(Worker *w, Item *it)
{
    const Entry *e = it->entry;
    const Model *m = w->m;
    PjError err;
    json_t *event = NULL;
    if (stream_id_cmp(e->id, w->checkpoint[e->stream]) <= 0) {
        it->kind = ITEM_ACK_ONLY; /* settled before a crash, not yet acknowledged */
        return;
    }
    if (e->deleted) {
        item_dead(it, "the entry was deleted from the stream before it was applied", NULL);
        return;
    }
    /* A type this read model does not handle is skipped without decoding the entry: on a
     * stream many read models share, each decodes only what it applies. */
    char peeked[WORKER_TYPE_MAX];
    if (event_peek_type(&e->fields, w->o.cfg->event_field, peeked, sizeof peeked) >= 0 &&
        model_find_handler(m, peeked) == NULL) {
        it->kind = ITEM_SKIP;
        return;
    }
    /* Every JSON node of the event lives in this thread's arena until jsonarena_end. */
    jsonarena_begin();
    if (event_decode(m->streams[e->stream], e->id_text, &e->fields, w->o.cfg->event_field, &event,
                     &err) < 0) {
        jsonarena_end();
        item_dead(it, err.message, NULL);
        return;
    }
    const json_t *type = json_object_get(event, "type");
    if (json_is_string(type))
        it->event_type = xstrdup(json_string_value(type));
    it->first_stmt = w->cur.bound.count;
    int rc = applier_bind(w->plan, event, &w->cur.bound, &err);
    json_decref(event);
    jsonarena_end();
    if (rc == APPLIER_UNHANDLED)
        it->kind = ITEM_SKIP;
    else if (rc < 0)
        item_dead(it, err.message, NULL);
    else {
        it->kind = ITEM_APPLY;
        it->nstmts = w->cur.bound.count - it->first_stmt;
        if (w->recovery.nparts > 0) {
            StrBuf key = {0};
            int part = partition_of(w->plan, &w->cur.bound.items[it->first_stmt], it->nstmts,
                                    w->recovery.nparts, &key);
            strbuf_done(&key);
            if (partition_applied(&w->recovery, e->stream, part, e->id))
                it->kind = ITEM_DONE;
        }
    }
}

static void classify_batch(Worker *w)
{
    items_reset(w);
    xgrow((void **)&w->cur.items, &w->cur.items_cap, w->cur.batch.count, sizeof *w->cur.items);
    for (size_t i = 0; i < w->cur.batch.count; i++) {
        Item *it = &w->cur.items[w->cur.nitems++];
        *it = (Item){.entry = &w->cur.batch.entries[i]};
        classify(w, it);
    }
}

/* The highest entry of stream s in the batch that this transaction settles, if any. */
static bool batch_max(const Worker *w, size_t s, StreamId *ret)
{
    bool any = false;
    for (size_t i = 0; i < w->cur.nitems; i++) {
        const Item *it = &w->cur.items[i];
        if (it->entry->stream != s || it->kind == ITEM_ACK_ONLY || it->kind == ITEM_HOLD)
            continue;
        if (!any || stream_id_cmp(it->entry->id, *ret) > 0)
            *ret = it->entry->id;
        any = true;
    }
    return any;
}

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
            (void)batch_max(w, s, &target);
            bool announced = false;
            for (;;) {
                int rc = board_wait_position(w->o.board, other, (size_t)os, target, LOOKUP_WAIT_SLICE_MS);
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

static void send_dead_letter(Worker *w, const Item *it)
{
    json_t *raw = event_raw_json(&it->entry->fields);
    char *raw_text = json_dumps(raw, JSON_COMPACT);
    DeadLetter d = {
        .readmodel = w->m->name,
        .stream = w->m->streams[it->entry->stream],
        .id = it->entry->id,
        .event_type = it->event_type,
        .raw_json = raw_text != NULL ? raw_text : "{}",
        .error = it->error,
        .sqlstate = it->sqlstate,
        .attempts = it->attempts > 0 ? it->attempts : 1,
    };
    checkpoint_send_dead_letter(w->pg, &d, -1);
    free(raw_text);
    json_decref(raw);
}

static void send_item(Worker *w, long index)
{
    const Item *it = &w->cur.items[index];
    if (it->kind == ITEM_DEAD) {
        send_dead_letter(w, it);
        return;
    }
    if (it->kind != ITEM_APPLY)
        return;
    for (size_t k = 0; k < it->nstmts; k++) {
        const BoundStatement *b = &w->cur.bound.items[it->first_stmt + k];
        const PlanStatement *st = applier_plan_statement(w->plan, b->statement);
        pg_pipeline_send(w->pg, st->name, b->nparams, (const char *const *)b->params, index);
    }
}

/* The set-based run on session pg: dead letters (with PART_ALL or partition 0), then the
 * statements of the batch (of items whose part is part, or all) in the groups of merge.h.
 * A group of one is sent as its plain statement, tagged with its item (so a failure names
 * the event); a larger group g as the set-based statement, tagged TAG_GROUP_FIRST - g. */
static void send_merged(Worker *w, Pg *pg, int part)
{
    size_t n = 0;
    for (size_t i = 0; i < w->cur.nitems; i++) {
        const Item *it = &w->cur.items[i];
        if (it->kind == ITEM_DEAD && (part == PART_ALL || part == 0))
            send_dead_letter(w, it);
        if (it->kind != ITEM_APPLY || (part != PART_ALL && it->part != part))
            continue;
        size_t cap = w->stmts_cap;
        xgrow((void **)&w->stmts, &w->stmts_cap, n + it->nstmts + 1, sizeof *w->stmts);
        if (w->stmts_cap != cap || w->stmt_item == NULL) {
            w->stmt_item = xrealloc(w->stmt_item, w->stmts_cap * sizeof *w->stmt_item);
            w->stmt_cls = xrealloc(w->stmt_cls, w->stmts_cap * sizeof *w->stmt_cls);
        }
        for (size_t k = 0; k < it->nstmts; k++) {
            w->stmts[n] = &w->cur.bound.items[it->first_stmt + k];
            w->stmt_cls[n] = it->cls;
            w->stmt_item[n++] = i;
        }
    }
    merge_build(&w->merge, w->plan, w->stmts, w->stmt_cls, n);
    for (size_t g = 0; g < w->merge.ngroups; g++) {
        const MergeGroup *grp = &w->merge.groups[g];
        const PlanStatement *st = applier_plan_statement(w->plan, grp->statement);
        if (grp->count == 1) {
            size_t m = w->merge.members[grp->first];
            const BoundStatement *b = w->stmts[m];
            pg_pipeline_send(pg, st->name, b->nparams, (const char *const *)b->params,
                             (long)w->stmt_item[m]);
            continue;
        }
        const char *name;
        char **params = merge_statement(&w->merge, grp, w->stmts, st, &name);
        pg_pipeline_send(pg, name, st->nparams, (const char *const *)params,
                         TAG_GROUP_FIRST - (long)g);
        merge_params_free(params, st->nparams);
    }
}

static uint64_t count_kind(const Worker *w, size_t s, ItemKind kind)
{
    uint64_t n = 0;
    for (size_t i = 0; i < w->cur.nitems; i++)
        if (w->cur.items[i].entry->stream == s && w->cur.items[i].kind == kind)
            n++;
    return n;
}

static uint64_t count_applied(const Worker *w, size_t s)
{
    return count_kind(w, s, ITEM_APPLY) + count_kind(w, s, ITEM_DONE);
}

/* on_error: stop. The read model stops at the bad event: it and every later entry of its
 * stream in the batch stay unsettled and unacknowledged (re-read after a restart); the
 * entries before it, and those of other streams, are still applied. */
static void hold_from(Worker *w, size_t bad)
{
    const Item *it = &w->cur.items[bad];
    size_t s = it->entry->stream;
    if (w->stop_reason == NULL)
        w->stop_reason = xasprintf("cannot apply entry %s of stream \"%s\": %s", it->entry->id_text,
                                   w->m->streams[s], it->error != NULL ? it->error : "unknown error");
    for (size_t i = bad; i < w->cur.nitems; i++)
        if (w->cur.items[i].entry->stream == s && w->cur.items[i].kind != ITEM_ACK_ONLY)
            w->cur.items[i].kind = ITEM_HOLD;
}

static void hold_dead_items(Worker *w)
{
    if (w->m->on_error != ON_ERROR_STOP)
        return;
    for (size_t i = 0; i < w->cur.nitems; i++)
        if (w->cur.items[i].kind == ITEM_DEAD)
            hold_from(w, i);
}

/* The position the checkpoint of stream s takes with this batch (held entries are a
 * suffix of the stream's entries in the batch), or -1 when unknown. */
static int64_t settled_position(const Worker *w, size_t s)
{
    if (w->cur.batch_position[s] < 0)
        return -1;
    return w->cur.batch_position[s] - (int64_t)count_kind(w, s, ITEM_HOLD);
}

/* Sends the whole batch and its checkpoints as one pipeline (one transaction). The
 * checkpoints go first: their row locks serialise concurrent batches of this read model,
 * and one that finds a checkpoint moved under it fails before applying anything. */
static void send_checkpoints(Worker *w)
{
    for (size_t s = 0; s < w->m->nstreams; s++) {
        StreamId top;
        if (batch_max(w, s, &top))
            checkpoint_send(w->pg, w->m->name, w->m->streams[s], w->checkpoint[s], top,
                            count_applied(w, s), settled_position(w, s), -1);
    }
}

static int send_batch(Worker *w, bool set_based, PjError *err)
{
    int rc = pg_pipeline_begin(w->pg, err);
    if (rc < 0)
        return rc;
    send_checkpoints(w);
    if (set_based) {
        send_merged(w, w->pg, PART_ALL);
    } else {
        for (size_t i = 0; i < w->cur.nitems; i++)
            send_item(w, (long)i);
    }
    return pg_pipeline_flush(w->pg, err);
}

static int run_once(Worker *w, bool set_based, long *failed, PjError *err)
{
    int rc = send_batch(w, set_based, err);
    return rc < 0 ? rc : pg_pipeline_finish(w->pg, failed, err);
}

/* Reads the next batch: first this consumer's pending entries (left by a crash or taken
 * over from a dead consumer), stream by stream, then new ones. */
static int read_batch(Worker *w, int block_ms, PjError *err)
{
    const Model *m = w->m;
    const char **ids = xmalloc(m->nstreams * sizeof *ids);
    bool in_history = false;
    for (size_t s = 0; s < m->nstreams; s++) {
        ids[s] = w->history[s] ? w->cursor[s] : NULL;
        in_history = in_history || w->history[s];
    }
    /* Positions are only meaningful for new deliveries, not for re-read pending entries. */
    w->cur.counts_valid = !in_history;
    int rc = reader_read(w->reader, w->group, w->o.cfg->consumer, (const char *const *)m->streams, ids,
                         m->nstreams, w->o.cfg->batch, block_ms, &w->cur.batch,
                         in_history ? NULL : w->cur.counts, err);
    free(ids);
    if (rc < 0 || !in_history)
        return rc;
    for (size_t s = 0; s < m->nstreams; s++) {
        bool seen = false;
        for (size_t i = 0; i < w->cur.batch.count; i++) {
            if (w->cur.batch.entries[i].stream == s) {
                seen = true;
                memcpy(w->cursor[s], w->cur.batch.entries[i].id_text, STREAM_ID_BUFSZ);
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
 * read ahead are pending in the group like any others until their batch is settled. */
static void read_ahead(Worker *w)
{
    /* A batch well short of the limit means the read model has caught up: then the next
     * read would find little or nothing, and would only delay this batch's answer. */
    if (w->m->on_error == ON_ERROR_STOP || stopping(w) || w->ahead.batch.count > 0 ||
        w->cur.batch.count * 2 < (size_t)w->o.cfg->batch)
        return;
    for (size_t s = 0; s < w->m->nstreams; s++)
        if (w->history[s])
            return;
    PjError err;
    swap_slots(w);
    if (read_batch(w, -1, &err) == 0) {
        classify_batch(w);
    } else {
        batch_reset(&w->cur.batch); /* nothing half-read is ever applied */
        log_debug(w->ctx, "could not read ahead: %s", err.message);
    }
    swap_slots(w);
}

/* ---- parallel apply (partition.h) ---- */

static Pg *session(const Worker *w, int part)
{
    return part == 0 ? w->pg : w->parts[part];
}

/* A batch goes over several sessions when parallel_apply allows, the read model is behind
 * (the batch is at least half the limit, as for reading ahead), and no interrupted batch
 * is being recovered. Statements on rows of different partitions commute, so each
 * partition applying its share in batch order has the effect of the whole batch in order.
 * A stream whose events in the batch include one that may touch rows it does not name (a
 * fan-out update, a lookup into the model's own table) is not split: its events run in
 * order on the main session after the partitions have committed (the order between
 * streams is free, and so the serial part sees every row as the partitions left it). */
static bool assign_partitions(Worker *w)
{
    const Config *cfg = w->o.cfg;
    int n = cfg->parallel_apply;
    if (n < 2 || !cfg->set_based || w->m->on_error == ON_ERROR_STOP ||
        w->cur.batch.count * 2 < (size_t)cfg->batch ||
        partition_recovery_pending(&w->recovery, w->checkpoint))
        return false;
    StrBuf key = {0};
    bool *serial = w->serial, any_split = false;
    memset(serial, 0, w->m->nstreams * sizeof *serial);
    for (size_t i = 0; i < w->cur.nitems; i++) {
        Item *it = &w->cur.items[i];
        if (it->kind != ITEM_APPLY)
            continue;
        it->part = partition_of(w->plan, &w->cur.bound.items[it->first_stmt], it->nstmts, n, &key);
        serial[it->entry->stream] |= it->part == PARTITION_NONE;
    }
    strbuf_done(&key);
    for (size_t i = 0; i < w->cur.nitems; i++) {
        Item *it = &w->cur.items[i];
        if (it->kind == ITEM_APPLY && serial[it->entry->stream])
            it->part = PART_SERIAL;
        any_split = any_split || (it->kind == ITEM_APPLY && it->part != PART_SERIAL);
    }
    return any_split;
}

static size_t count_serial(const Worker *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->cur.nitems; i++)
        n += w->cur.items[i].kind == ITEM_APPLY && w->cur.items[i].part == PART_SERIAL;
    return n;
}

/* The serial part, in the main session's open transaction once the partitions have
 * committed. Any failure is reported as transient: the partitions are committed, so the
 * batch must be delivered again to a new session, which knows what they applied (and then
 * isolates a bad event on one session). */
static int send_serial(Worker *w, PjError *err)
{
    long failed;
    int rc = pg_pipeline_begin(w->pg, err);
    if (rc < 0)
        return rc;
    send_merged(w, w->pg, PART_SERIAL);
    return pg_pipeline_run(w->pg, &failed, err) < 0 ? -PJ_ETRANSIENT : 0;
}

/* Sends partition part's share in a transaction that stays open: the main session (0) also
 * moves the checkpoints and writes the dead letters; the others their partition rows. */
static int send_partition(Worker *w, int part, PjError *err)
{
    Pg *pg = session(w, part);
    int rc = pg_pipeline_begin(pg, err);
    if (rc < 0)
        return rc;
    pg_pipeline_send_begin(pg);
    if (part == 0)
        send_checkpoints(w);
    send_merged(w, pg, part);
    for (size_t s = 0; part > 0 && s < w->m->nstreams; s++) {
        StreamId top;
        /* A serial stream's events are the main session's: no partition applies them. */
        if (!w->serial[s] && batch_max(w, s, &top))
            partition_send_checkpoint(pg, w->m->name, w->m->streams[s], part,
                                      w->o.cfg->parallel_apply, top);
    }
    return pg_pipeline_flush(pg, err);
}

/* Commits or rolls back the open transactions of partitions [first, last), all at once. */
static int end_partitions(Worker *w, int first, int last, bool commit, PjError *err)
{
    int rc = 0;
    bool sent[PARTITION_MAX] = {false};
    PjError e;
    for (int p = first; p < last; p++) {
        int r = pg_tx_end_send(session(w, p), commit, &e);
        sent[p] = r == 0;
        if (r < 0 && rc == 0) {
            rc = r;
            *err = e;
        }
    }
    for (int p = first; p < last; p++) {
        int r = sent[p] ? pg_tx_end_wait(session(w, p), commit, &e) : 0;
        if (r < 0 && rc == 0) {
            rc = r;
            *err = e;
        }
    }
    return rc < 0 ? -PJ_ETRANSIENT : 0;
}

/* Applies the batch over parallel_apply sessions; *done stays false when it was not tried,
 * or when PostgreSQL refused an event of a partition: then every partition rolls back and
 * the batch takes the one-session way, which isolates the event. Partitions 1.. commit
 * first, then the main session runs the serial part and commits with the checkpoints. A
 * failure between the two leaves partition rows ahead of the checkpoint, which the next
 * session (any error renews them) honours. */
static int commit_parallel(Worker *w, bool *done, PjError *err)
{
    *done = false;
    if (!assign_partitions(w))
        return 0;
    int n = w->o.cfg->parallel_apply, rc = 0;
    for (int p = 0; rc == 0 && p < n; p++)
        rc = send_partition(w, p, err);
    if (rc < 0)
        return rc;
    read_ahead(w); /* while the server runs the batch */
    bool refused = false;
    for (int p = 0; p < n; p++) {
        long failed;
        PjError e;
        int r = pg_pipeline_finish(session(w, p), &failed, &e);
        if (r == -PJ_EPERMANENT && failed != -1) {
            refused = true;
            log_debug(w->ctx, "partition %d of a batch failed (%s), applying it on one session",
                      p, e.message);
        } else if (r < 0 && rc == 0) {
            rc = -PJ_ETRANSIENT; /* a bookkeeping statement or the connection */
            *err = e;
        }
    }
    if (rc == 0 && refused)
        return end_partitions(w, 0, n, false, err);
    if (rc == 0)
        rc = end_partitions(w, 1, n, true, err);
    size_t serial = count_serial(w);
    if (rc == 0 && serial > 0)
        rc = send_serial(w, err);
    if (rc == 0)
        rc = end_partitions(w, 0, 1, true, err);
    *done = rc == 0;
    if (*done)
        log_debug(w->ctx, "applied a batch of %zu entries over %d sessions, %zu events after "
                          "them on the main session", w->cur.nitems, n, serial);
    return rc;
}

/* A set-based group failed: its events get two new classes, one per half, so the batch is
 * sent again with that group split in two (the rest merged as before). */
static void split_group(Worker *w, size_t g)
{
    const MergeGroup *grp = &w->merge.groups[g];
    unsigned halves[2] = {w->next_cls + 1, w->next_cls + 2};
    w->next_cls += 2;
    for (size_t j = 0; j < grp->count; j++) {
        size_t item = w->stmt_item[w->merge.members[grp->first + j]];
        w->cur.items[item].cls = halves[j * 2 >= grp->count];
    }
}

/* Commits the batch. A statement of one event that fails permanently isolates that event:
 * it is dead-lettered and the batch is sent again without it, so each bad event costs
 * one more round trip and the good ones are applied exactly once. A set-based statement
 * that fails does not say which of its events is at fault: the batch is sent again with
 * that statement's events split in two halves, and so on, until a statement of one event
 * fails and names it: about log2(events of the statement) more round trips per bad event,
 * each still set-based. */
static int commit_batch(Worker *w, PjError *err)
{
    bool done;
    int prc = commit_parallel(w, &done, err);
    if (prc < 0 || done)
        return prc;
    bool set_based = w->o.cfg->set_based;
    /* a split or a dead letter per try: at most 2 per event, and attempts per bad one */
    size_t tries = (w->cur.nitems + 1) * (size_t)(w->o.cfg->retry_attempts + 2) + 1;
    w->next_cls = 0;
    for (size_t attempt = 0; attempt <= tries; attempt++) {
        long failed;
        int rc;
        if (attempt == 0) {
            /* While the server runs the batch, the next one is read and classified. */
            rc = send_batch(w, set_based, err);
            if (rc == 0) {
                read_ahead(w);
                rc = pg_pipeline_finish(w->pg, &failed, err);
            }
        } else {
            rc = run_once(w, set_based, &failed, err);
        }
        if (rc == 0)
            return 0;
        if (rc == -PJ_EPERMANENT && failed <= TAG_GROUP_FIRST && set_based) {
            size_t g = (size_t)(TAG_GROUP_FIRST - failed);
            log_debug(w->ctx, "a set-based statement of %zu events failed (%s), splitting it",
                      w->merge.groups[g].count, err->message);
            split_group(w, g);
            continue;
        }
        if (rc != -PJ_EPERMANENT || failed < 0)
            return rc == -PJ_EPERMANENT ? -PJ_ETRANSIENT : rc; /* bookkeeping failed: retry */
        Item *it = &w->cur.items[failed];
        if (++it->attempts < w->o.cfg->retry_attempts) {
            int delay = jitter_ms(w, backoff_cap(w, it->attempts - 1));
            log_warn(w->ctx, "could not apply entry %s of stream \"%s\" (attempt %d of %d): %s, "
                             "trying again in %d ms", it->entry->id_text,
                     w->m->streams[it->entry->stream], it->attempts, w->o.cfg->retry_attempts,
                     err->message, delay);
            pause_ms(w, delay);
            if (stopping(w))
                return -PJ_ESTOPPED; /* nothing committed: delivered again at the next start */
            continue;
        }
        item_dead(it, err->message, err->sqlstate);
        if (w->m->on_error == ON_ERROR_STOP) {
            hold_from(w, (size_t)failed);
        } else {
            log_warn(w->ctx, "could not apply entry %s of stream \"%s\": %s, dead-lettering it",
                     it->entry->id_text, w->m->streams[it->entry->stream], err->message);
        }
    }
    return pj_error_set(err, PJ_ETRANSIENT, "could not isolate the failing events of a batch");
}

static int ack_batch(Worker *w, PjError *err)
{
    const char **ids = xmalloc((w->cur.nitems + 1) * sizeof *ids);
    int rc = 0;
    for (size_t s = 0; rc == 0 && s < w->m->nstreams; s++) {
        size_t n = 0;
        for (size_t i = 0; i < w->cur.nitems; i++)
            if (w->cur.items[i].entry->stream == s && w->cur.items[i].kind != ITEM_HOLD)
                ids[n++] = w->cur.items[i].entry->id_text;
        rc = reader_ack(w->reader, w->m->streams[s], w->group, ids, n, err);
    }
    free(ids);
    return rc;
}

static BoardOutcomeKind outcome_of(ItemKind kind)
{
    return kind == ITEM_APPLY || kind == ITEM_DONE ? BOARD_OUTCOME_APPLIED : kind == ITEM_DEAD ? BOARD_OUTCOME_DEAD_LETTERED : BOARD_OUTCOME_SKIPPED;
}

/* Moves the in-memory checkpoints and tells the board (which wakes /wait callers). */
static void publish_commit(Worker *w)
{
    BoardOutcome *out = xmalloc((w->cur.nitems + 1) * sizeof *out);
    for (size_t s = 0; s < w->m->nstreams; s++) {
        StreamId top;
        if (!batch_max(w, s, &top))
            continue;
        size_t n = 0;
        for (size_t i = 0; i < w->cur.nitems; i++) {
            const Item *it = &w->cur.items[i];
            if (it->entry->stream != s || it->kind == ITEM_ACK_ONLY || it->kind == ITEM_HOLD)
                continue;
            out[n++] = (BoardOutcome){.id = it->entry->id, .outcome = outcome_of(it->kind),
                                      .error = it->error};
        }
        assert(stream_id_cmp(top, w->checkpoint[s]) > 0);
        w->checkpoint[s] = top;
        w->position[s] = settled_position(w, s);
        board_committed(w->o.board, w->o.rm, s, top, out, n);
        w->stat_applied += count_applied(w, s);
        w->stat_skipped += count_kind(w, s, ITEM_SKIP);
        w->stat_dead += count_kind(w, s, ITEM_DEAD);
    }
    free(out);
}

static bool any_to_settle(const Worker *w)
{
    for (size_t i = 0; i < w->cur.nitems; i++)
        if (w->cur.items[i].kind != ITEM_ACK_ONLY && w->cur.items[i].kind != ITEM_HOLD)
            return true;
    return false;
}

/* The first entry of stream s in the batch that is above the checkpoint, if any. */
static bool batch_first_new(const Worker *w, size_t s, StreamId *ret)
{
    bool any = false;
    for (size_t i = 0; i < w->cur.batch.count; i++) {
        const Entry *e = &w->cur.batch.entries[i];
        if (e->stream != s || stream_id_cmp(e->id, w->checkpoint[s]) <= 0)
            continue;
        if (!any || stream_id_cmp(e->id, *ret) < 0)
            *ret = e->id;
        any = true;
    }
    return any;
}

/* How many of this batch's entries of stream s are new deliveries (above the checkpoint). */
static uint64_t batch_count_new(const Worker *w, size_t s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < w->cur.batch.count; i++)
        n += w->cur.batch.entries[i].stream == s &&
             stream_id_cmp(w->cur.batch.entries[i].id, w->checkpoint[s]) > 0;
    return n;
}

static void log_gap(Worker *w, size_t s, StreamId first, uint64_t missing)
{
    char a[STREAM_ID_BUFSZ], b[STREAM_ID_BUFSZ], n[32] = "";
    if (missing > 0)
        snprintf(n, sizeof n, " (%" PRIu64 " entries)", missing);
    log_error(w->ctx,
              "gap in stream \"%s\": entries after %s and before %s were removed before this "
              "read model read them%s, continuing",
              w->m->streams[s], stream_id_format(w->checkpoint[s], a), stream_id_format(first, b), n);
    w->gaps++;
}

/* Entries removed from a stream (trimmed or deleted) before this read model read them are
 * lost to it: Redis just delivers the next one. Redis 7 counts a group's position in
 * entries ever added (entries-read); the checkpoint keeps that position, so a batch whose
 * first entry stands further on than the checkpoint's next shows the gap, and an XDEL
 * between the two shows in max-deleted-entry-id. Either is logged loudly with the range. */
static void check_gaps(Worker *w)
{
    for (size_t s = 0; s < w->m->nstreams; s++) {
        StreamId first;
        const StreamCounts c = w->cur.counts[s];
        w->cur.batch_position[s] = -1;
        if (!w->cur.counts_valid || !batch_first_new(w, s, &first))
            continue;
        int64_t n_new = (int64_t)batch_count_new(w, s);
        int64_t before_first = c.has_entries_read ? (int64_t)c.entries_read - n_new : -1;
        if (before_first >= 0)
            w->cur.batch_position[s] = (int64_t)c.entries_read;
        if (before_first >= 0 && w->position[s] >= 0 && before_first > w->position[s])
            log_gap(w, s, first, (uint64_t)(before_first - w->position[s]));
        else if (stream_id_cmp(c.max_deleted, w->checkpoint[s]) > 0 &&
                 stream_id_cmp(c.max_deleted, first) < 0)
            log_gap(w, s, first, 0);
    }
}

static int process_batch(Worker *w, PjError *err)
{
    check_gaps(w);
    hold_dead_items(w);
    int rc = wait_for_lookups(w);
    if (rc == -PJ_ESTOPPED)
        return rc;
    bool any = any_to_settle(w);
    if (any && (rc = commit_batch(w, err)) < 0)
        return rc;
    /* Committed: the rows are visible, so /wait callers are told now, before the
     * acknowledgement (if that fails, the entries come back and are skipped). */
    if (any)
        publish_commit(w);
    return ack_batch(w, err);
}

/* ---- the loop ---- */


static void sample_lag(Worker *w, bool force)
{
    int64_t now = now_monotonic_ms();
    if (!force && now < w->next_sample_ms)
        return;
    w->next_sample_ms = now + SAMPLE_EVERY_MS;
    for (size_t s = 0; s < w->m->nstreams; s++) {
        StreamBacklog sample;
        PjError err;
        if (reader_sample(w->reader, w->m->streams[s], w->group, w->checkpoint[s], &sample, &err) == 0)
            board_sampled(w->o.board, w->o.rm, s, &sample);
        else
            log_debug(w->ctx, "could not sample the lag of stream \"%s\": %s", w->m->streams[s],
                      err.message);
    }
}

static void log_stats(Worker *w)
{
    int interval = w->o.cfg->stats_interval_s;
    int64_t now = now_monotonic_ms();
    if (interval <= 0 || now < w->next_stats_ms)
        return;
    if (w->next_stats_ms != 0)
        log_info(w->ctx, "last %d s: %llu applied (%.1f/s), %llu skipped, %llu dead-lettered", interval,
                 (unsigned long long)w->stat_applied, (double)w->stat_applied / interval,
                 (unsigned long long)w->stat_skipped, (unsigned long long)w->stat_dead);
    w->stat_applied = w->stat_skipped = w->stat_dead = 0;
    w->next_stats_ms = now + (int64_t)interval * 1000;
}

/* An idle read model does not touch PostgreSQL, so it would look healthy through an
 * outage; a cheap query every few idle seconds keeps its state (and /readyz) honest. */
static int check_idle_pg(Worker *w, PjError *err)
{
    int64_t now = now_monotonic_ms();
    if (now < w->next_pg_check_ms)
        return 0;
    w->next_pg_check_ms = now + IDLE_PG_CHECK_MS;
    return pg_exec(w->pg, "SELECT 1", err);
}

/* One step of the loop; returns <0 on a fault that needs a new session. */
static int step(Worker *w, PjError *err)
{
    int rc = 0;
    if (w->ahead.batch.count > 0) {
        swap_slots(w); /* read and classified while the last batch committed */
        slot_clear(&w->ahead); /* the batch done last: never to be taken again */
        batch_reset(&w->ahead.batch);
    } else {
        rc = read_batch(w, w->o.cfg->block_ms, err);
        if (rc < 0)
            return rc;
        classify_batch(w);
    }
    board_polled(w->o.board, w->o.rm);
    if (w->cur.batch.count > 0 && (rc = process_batch(w, err)) < 0)
        return rc;
    sample_lag(w, w->cur.batch.count == 0);
    log_stats(w);
    return w->cur.batch.count == 0 ? check_idle_pg(w, err) : 0;
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
        pause_ms(w, 1000);
    }
}

/* On a stop, a batch read ahead is applied and acknowledged like the one in flight, so a
 * clean stop leaves nothing pending. */
static void settle_read_ahead(Worker *w)
{
    PjError err;
    if (w->pg == NULL || w->reader == NULL || w->ahead.batch.count == 0)
        return;
    swap_slots(w);
    board_polled(w->o.board, w->o.rm);
    int rc = process_batch(w, &err);
    if (rc < 0 && rc != -PJ_ESTOPPED)
        log_warn(w->ctx, "could not apply the batch read ahead: %s (it will be delivered "
                         "again)", err.message);
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    PjError err;
    while (!stopping(w)) {
        if (w->pg == NULL) {
            if (open_session(w, &err) < 0) {
                set_fault(w, err.message);
                pause_ms(w, next_backoff(w));
                continue;
            }
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
            pause_ms(w, next_backoff(w));
        }
    }
    settle_read_ahead(w);
    close_session(w);
    jsonarena_thread_done();
    log_info(w->ctx, "stopped");
    return NULL;
}

/* Frees everything a worker owns; its thread has ended or never started. */
static void worker_free(Worker *w)
{
    slot_done(&w->cur);
    slot_done(&w->ahead);
    merge_plan_done(&w->merge);
    free(w->stmts);
    free(w->stmt_item);
    free(w->stmt_cls);
    applier_plan_free(w->plan);
    free(w->group);
    free(w->checkpoint);
    free(w->cursor);
    free(w->history);
    free(w->position);
    partition_recovery_done(&w->recovery);
    free(w->serial);
    free(w->stop_reason);
    free(w);
}

int worker_start(const WorkerOpts *opts, Worker **ret, PjError *err)
{
    Worker *w = xcalloc(1, sizeof *w);
    w->o = *opts;
    w->m = &opts->set->models[opts->rm];
    snprintf(w->ctx, sizeof w->ctx, "readmodel=%s", w->m->name);
    w->group = xasprintf("projector:%s", w->m->name);
    w->checkpoint = xcalloc(w->m->nstreams, sizeof *w->checkpoint);
    w->cursor = xcalloc(w->m->nstreams, sizeof *w->cursor);
    w->history = xcalloc(w->m->nstreams, sizeof *w->history);
    w->position = xcalloc(w->m->nstreams, sizeof *w->position);
    w->serial = xcalloc(w->m->nstreams, sizeof *w->serial);
    slot_init(&w->cur, w->m->nstreams);
    slot_init(&w->ahead, w->m->nstreams);
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
