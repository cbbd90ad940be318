/* stats.c - what /metrics counts beyond /lag, per read model: batches, retries by cause,
 * the state of the worker's sessions, and histograms of batch size, apply time and
 * end-to-end latency (from the time in an entry's ID to its commit). Guarded by the
 * board's mutex like the rest (board.c takes it).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "board/board_internal.h"
#include "os/now.h"

static const double batch_size_bounds[] = {1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
static const double apply_seconds_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,   0.25,   0.5,   1,    2.5,   10};
static const double end_to_end_bounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                           1,     2.5,   5,    10,    30,   60,  300};
static_assert(ARRAY_SIZE(end_to_end_bounds) <= BOARD_HIST_MAX, "bounds fit a histogram");

static const char *const retry_cause_names[BOARD_RETRY_COUNT] = {"connection", "serialization",
                                                                 "deadlock", "timeout", "other"};

const char *board_retry_cause_name(BoardRetryCause cause)
{
    assert(cause < BOARD_RETRY_COUNT);
    return retry_cause_names[cause];
}

static void hist_init(BoardHistogram *h, const double *bounds, size_t n)
{
    assert(n <= BOARD_HIST_MAX);
    *h = (BoardHistogram){.bounds = bounds, .nbounds = n};
}

static void hist_observe(BoardHistogram *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

static json_t *hist_json(const BoardHistogram *h)
{
    json_t *bounds = json_array(), *counts = json_array();
    for (size_t i = 0; i < h->nbounds; i++)
        json_array_append_new(bounds, json_real(h->bounds[i]));
    for (size_t i = 0; i <= h->nbounds; i++)
        json_array_append_new(counts, json_integer((json_int_t)h->counts[i]));
    return json_pack("{s:o, s:o, s:I, s:f}", "bounds", bounds, "counts", counts, "count",
                     (json_int_t)h->count, "sum", h->sum);
}

void stats_init(RmStats *st)
{
    *st = (RmStats){0};
    hist_init(&st->batch_size, batch_size_bounds, ARRAY_SIZE(batch_size_bounds));
    hist_init(&st->apply_seconds, apply_seconds_bounds, ARRAY_SIZE(apply_seconds_bounds));
    hist_init(&st->end_to_end_seconds, end_to_end_bounds, ARRAY_SIZE(end_to_end_bounds));
}

void stats_count_commit(RmStats *st, const BoardOutcome *o, size_t n, int64_t now_wall)
{
    for (size_t i = 0; i < n; i++) {
        if (o[i].outcome != BOARD_OUTCOME_APPLIED && o[i].outcome != BOARD_OUTCOME_DEAD_LETTERED)
            continue;
        int64_t age_ms = now_wall - (int64_t)o[i].id.ms;
        hist_observe(&st->end_to_end_seconds, age_ms > 0 ? (double)age_ms / 1000.0 : 0.0);
    }
}

void board_batch_done(Board *b, size_t rm, size_t entries, int64_t apply_ms)
{
    assert(rm < b->set->count);
    pthread_mutex_lock(&b->mu);
    RmStats *st = &b->rms[rm].stats;
    st->batches++;
    hist_observe(&st->batch_size, (double)entries);
    hist_observe(&st->apply_seconds, apply_ms > 0 ? (double)apply_ms / 1000.0 : 0.0);
    pthread_mutex_unlock(&b->mu);
}

void board_retried(Board *b, size_t rm, BoardRetryCause cause)
{
    assert(rm < b->set->count && cause < BOARD_RETRY_COUNT);
    pthread_mutex_lock(&b->mu);
    b->rms[rm].stats.retries[cause]++;
    pthread_mutex_unlock(&b->mu);
}

void board_connections(Board *b, size_t rm, bool redis_up, bool postgres_up)
{
    assert(rm < b->set->count);
    pthread_mutex_lock(&b->mu);
    b->rms[rm].stats.redis_up = redis_up;
    b->rms[rm].stats.postgres_up = postgres_up;
    pthread_mutex_unlock(&b->mu);
}

static json_t *rm_stats_json(const char *name, const RmStats *st)
{
    json_t *retries = json_object();
    for (int c = 0; c < BOARD_RETRY_COUNT; c++)
        json_object_set_new(retries, retry_cause_names[c],
                            json_integer((json_int_t)st->retries[c]));
    json_t *hists = json_pack("{s:o, s:o, s:o}", "batch_size", hist_json(&st->batch_size),
                              "apply_seconds", hist_json(&st->apply_seconds), "end_to_end_seconds",
                              hist_json(&st->end_to_end_seconds));
    return json_pack("{s:s, s:I, s:o, s:b, s:b, s:o}", "name", name, "batches",
                     (json_int_t)st->batches, "retries", retries, "redis_up", st->redis_up,
                     "postgres_up", st->postgres_up, "histograms", hists);
}

json_t *board_metrics_json(Board *b)
{
    json_t *rms = json_array();
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->set->count; i++)
        json_array_append_new(rms, rm_stats_json(b->set->models[i].name, &b->rms[i].stats));
    pthread_mutex_unlock(&b->mu);
    return json_pack("{s:o}", "readmodels", rms);
}

/* ---- the tally kept across a reload ---- */

typedef struct TallyStream {
    char *readmodel, *stream;
    uint64_t applied, skipped, dead_letters;
    RingEntry *ring; /* the stream's recent outcomes, moved out of the board that stopped */
    size_t ring_start, ring_count;
} TallyStream;

typedef struct TallyModel {
    char *readmodel;
    RmStats stats;
} TallyModel;

struct BoardTally {
    TallyStream *streams;
    size_t nstreams;
    TallyModel *models;
    size_t nmodels;
};

BoardTally *board_tally_take(Board *b)
{
    BoardTally *t = xcalloc(1, sizeof *t);
    pthread_mutex_lock(&b->mu);
    t->models = xcalloc(b->set->count + 1, sizeof *t->models);
    for (size_t i = 0; i < b->set->count; i++) {
        const Model *m = &b->set->models[i];
        t->models[t->nmodels++] = (TallyModel){xstrdup(m->name), b->rms[i].stats};
        t->streams = xrealloc(t->streams, (t->nstreams + m->nstreams + 1) * sizeof *t->streams);
        for (size_t s = 0; s < m->nstreams; s++) {
            StreamBoard *sb = &b->rms[i].streams[s];
            t->streams[t->nstreams++] =
                (TallyStream){xstrdup(m->name), xstrdup(m->streams[s]), sb->applied,
                              sb->skipped,      sb->dead_letters,       sb->ring,
                              sb->ring_start,   sb->ring_count};
            sb->ring = NULL; /* moved: the board that starts answers /wait from it */
            sb->ring_start = sb->ring_count = 0;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return t;
}

static void hist_add(BoardHistogram *to, const BoardHistogram *from)
{
    assert(to->nbounds == from->nbounds);
    for (size_t i = 0; i <= to->nbounds; i++)
        to->counts[i] += from->counts[i];
    to->count += from->count;
    to->sum += from->sum;
}

static void stats_add(RmStats *to, const RmStats *from)
{
    to->batches += from->batches;
    for (int c = 0; c < BOARD_RETRY_COUNT; c++)
        to->retries[c] += from->retries[c];
    hist_add(&to->batch_size, &from->batch_size);
    hist_add(&to->apply_seconds, &from->apply_seconds);
    hist_add(&to->end_to_end_seconds, &from->end_to_end_seconds);
}

void board_tally_restore(Board *b, BoardTally *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->set->count; i++) {
        const Model *m = &b->set->models[i];
        for (size_t k = 0; k < t->nmodels; k++)
            if (strcmp(t->models[k].readmodel, m->name) == 0)
                stats_add(&b->rms[i].stats, &t->models[k].stats);
        for (size_t s = 0; s < m->nstreams; s++) {
            StreamBoard *sb = &b->rms[i].streams[s];
            for (size_t k = 0; k < t->nstreams; k++) {
                TallyStream *ts = &t->streams[k];
                if (strcmp(ts->readmodel, m->name) != 0 || strcmp(ts->stream, m->streams[s]) != 0)
                    continue;
                sb->applied += ts->applied;
                sb->skipped += ts->skipped;
                sb->dead_letters += ts->dead_letters;
                if (sb->ring == NULL && ts->ring != NULL) { /* outcomes survive the reload */
                    sb->ring = ts->ring;
                    sb->ring_start = ts->ring_start;
                    sb->ring_count = ts->ring_count;
                    ts->ring = NULL;
                }
            }
        }
    }
    pthread_mutex_unlock(&b->mu);
}

BoardTally *board_tally_free(BoardTally *t)
{
    if (t == NULL)
        return NULL;
    for (size_t k = 0; k < t->nmodels; k++)
        free(t->models[k].readmodel);
    for (size_t k = 0; k < t->nstreams; k++) {
        TallyStream *ts = &t->streams[k];
        for (size_t e = 0; ts->ring != NULL && e < ts->ring_count; e++)
            free(ts->ring[(ts->ring_start + e) % BOARD_RING_SIZE].error);
        free(ts->ring);
        free(ts->readmodel);
        free(ts->stream);
    }
    free(t->models);
    free(t->streams);
    free(t);
    return NULL;
}
