/* batch_probe.c - while PostgreSQL refuses events of a read model, each batch is probed
 * before it is sent: the plan's probes (applier.h) name, in one query per probe, the events
 * whose lookup finds nothing for a NOT NULL column, and those are dead-lettered with
 * PostgreSQL's words at once, so the batch is not refused and isolated for them. Events
 * with the same where values are asked about once.
 *
 * Invariant: a probe only ever turns BATCH_ITEM_APPLY items into dead letters, before
 * anything of the batch is sent; an event it does not name is sent as before.
 */
#include "run/batch.h"
#include "run/batch_internal.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define PROBE_SQLSTATE "23502" /* not_null_violation: what PostgreSQL would answer */

/* The statements of plan statement st in the batch: their items in ret_items and the
 * statements in ret_stmts (both allocated, n entries). */
static size_t probe_collect(const BatchRun *b, size_t st, size_t **ret_items,
                            const BoundStatement ***ret_stmts)
{
    size_t n = 0;
    *ret_items = xcalloc(b->nitems + 1, sizeof **ret_items);
    *ret_stmts = xcalloc(b->nitems + 1, sizeof(const BoundStatement *));
    for (size_t i = 0; i < b->nitems; i++) {
        const Item *it = &b->items[i];
        if (it->kind != BATCH_ITEM_APPLY)
            continue;
        for (size_t k = 0; k < it->nstmts; k++) {
            const BoundStatement *bs = &b->bound.items[it->first_stmt + k];
            if (bs->statement == st) {
                (*ret_items)[n] = i;
                (*ret_stmts)[n++] = bs;
                break; /* one action of a type is one statement of the plan */
            }
        }
    }
    return n;
}

/* One statement of the batch under a probe: its item and its where values as one key. */
typedef struct ProbeRow {
    size_t item;
    const BoundStatement *stmt;
    char *key;    /* each where value as "<length>:<value>", or "-" when null */
    size_t group; /* rows with equal keys share one: the probe asks once per group */
} ProbeRow;

static char *probe_key(const PlanProbe *p, const BoundStatement *bs)
{
    StrBuf sb = {0};
    strbuf_append(&sb, "");
    for (int k = 1; k < p->nparams; k++) {
        const char *v = bs->params[p->where_params[k - 1]];
        if (v == NULL)
            strbuf_append(&sb, "-");
        else
            strbuf_appendf(&sb, "%zu:%s", strlen(v), v);
    }
    return strbuf_take(&sb);
}

static int probe_row_cmp(const void *a, const void *b)
{
    const ProbeRow *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : (x->item > y->item) - (x->item < y->item);
}

/* Sorts the rows by key and numbers their groups; returns how many groups. */
static size_t probe_group(ProbeRow *rows, size_t n)
{
    qsort(rows, n, sizeof *rows, probe_row_cmp);
    size_t groups = 0;
    for (size_t j = 0; j < n; j++) {
        if (j > 0 && strcmp(rows[j].key, rows[j - 1].key) != 0)
            groups++;
        rows[j].group = groups;
    }
    return n > 0 ? groups + 1 : 0;
}

/* The probe's parameters: the group numbers, then each where value's array, one element
 * per group (the values of its first row). */
static char **probe_params(const PlanProbe *p, const ProbeRow *rows, size_t n)
{
    char **params = xcalloc((size_t)p->nparams, sizeof *params);
    StrBuf sb = {0};
    for (int k = 0; k < p->nparams; k++) {
        strbuf_reset(&sb);
        strbuf_append(&sb, "{");
        for (size_t j = 0; j < n; j++) {
            if (j > 0 && rows[j].group == rows[j - 1].group)
                continue;
            strbuf_append(&sb, rows[j].group > 0 ? "," : "");
            if (k == 0)
                strbuf_appendf(&sb, "%zu", rows[j].group);
            else
                strbuf_append_array_element(&sb, rows[j].stmt->params[p->where_params[k - 1]]);
        }
        strbuf_append(&sb, "}");
        params[k] = xstrdup(sb.buf);
    }
    strbuf_done(&sb);
    return params;
}

/* Runs probe p over the n statements (items[j], stmts[j]); the items of every group it
 * names become dead letters. */
static int probe_run(BatchRun *b, const BatchCtx *c, const PlanProbe *p, const size_t *items,
                     const BoundStatement *const *stmts, size_t n, size_t *found, PjError *err)
{
    ProbeRow *rows = xcalloc(n + 1, sizeof *rows);
    for (size_t j = 0; j < n; j++)
        rows[j] = (ProbeRow){.item = items[j], .stmt = stmts[j], .key = probe_key(p, stmts[j])};
    size_t ngroups = probe_group(rows, n);
    char **params = probe_params(p, rows, n);
    PGresult *res = NULL;
    int rc = pg_prepare(c->pg, p->name, p->sql, p->nparams, err);
    if (rc == 0)
        rc = pg_query_prepared(c->pg, p->name, p->nparams, (const char *const *)params, &res, err);
    for (int k = 0; k < p->nparams; k++)
        free(params[k]);
    free(params);
    bool *empty = xcalloc(ngroups + 1, sizeof *empty); /* the groups whose lookup finds nothing */
    for (int r = 0; rc == 0 && r < PQntuples(res); r++) {
        size_t g = (size_t)strtoull(PQgetvalue(res, r, 0), NULL, 10);
        if (g < ngroups)
            empty[g] = true;
    }
    for (size_t j = 0; rc == 0 && j < n; j++) {
        Item *it = &b->items[rows[j].item];
        if (empty[rows[j].group] && it->kind == BATCH_ITEM_APPLY) {
            it->attempts = 1;
            batch_item_dead(it, p->refusal, PROBE_SQLSTATE);
            (*found)++;
        }
    }
    PQclear(res);
    free(empty);
    for (size_t j = 0; j < n; j++)
        free(rows[j].key);
    free(rows);
    return rc;
}

int batch_run_probe(BatchRun *b, const BatchCtx *c, PjError *err)
{
    size_t found = 0;
    for (size_t st = 0; st < applier_plan_count(c->plan); st++) {
        size_t nprobes = applier_plan_nprobes(c->plan, st);
        if (nprobes == 0)
            continue;
        size_t *items;
        const BoundStatement **stmts;
        size_t n = probe_collect(b, st, &items, &stmts);
        int rc = 0;
        for (size_t k = 0; rc == 0 && k < nprobes && n > 0; k++)
            rc = probe_run(b, c, applier_plan_probe(c->plan, st, k), items, stmts, n, &found, err);
        free(items);
        free(stmts);
        if (rc == -PJ_EPERMANENT) {
            /* a where value the probe cannot compare: the batch goes as it is */
            log_debug(c->log_ctx, "could not probe the batch: %s", err->message);
            return 0;
        }
        if (rc < 0)
            return rc;
    }
    if (found > 0) {
        c->refusals->probe = BATCH_REFUSING_BATCHES;
        c->refusals->isolate = 0; /* the batch may be clean now: it gets its first try */
        log_warn(c->log_ctx,
                 "dead-lettered %zu entries of a batch of %zu whose lookup found no row for a "
                 "NOT NULL column",
                 found, b->nitems);
    }
    return 0;
}
