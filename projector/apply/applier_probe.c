/* applier_probe.c - the probes of a plan: for an upsert whose insert puts a lookup's value
 * into a NOT NULL column, one set-based query that names the events of a batch whose
 * lookup finds nothing, so they can be dead-lettered before the batch is sent instead of
 * being refused by PostgreSQL one at a time (see applier.h). Pure: SQL text only.
 *
 * The probe evaluates the very subquery the statement runs (applier_append_lookup, in its
 * set-based form), so it finds nothing exactly where the statement would.
 */
#include "apply/applier.h"
#include "apply/applier_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* True when the insert of upsert a puts assignment as (a lookup) into a NOT NULL column,
 * from another read model's table: nothing found is then always refused. */
static bool probe_applies(const Model *m, const Action *a, const Assign *as)
{
    return a->kind == MODEL_ACTION_UPSERT && as->lookup != NULL && !m->columns[as->column].nullable;
}

/* The statement's parameters that carry the where values of the lookup filling column:
 * the APPLIER_PARAM_LOOKUP_WHERE parameters for it, in order (the order of lk->where). */
static size_t *probe_where_params(const Compiler *c, const char *column, size_t nwhere)
{
    size_t *out = xcalloc(nwhere + 1, sizeof *out), n = 0;
    for (size_t i = 0; i < c->nparams; i++) {
        const ParamSource *ps = &c->params[i];
        if (ps->role == APPLIER_PARAM_LOOKUP_WHERE && strcmp(ps->target, column) == 0)
            out[n++] = i;
    }
    assert(n == nwhere);
    return out;
}

/* SELECT v.n FROM unnest($1::bigint[], $2::text[], ...) AS v(n, p1, ...)
 * WHERE (SELECT s."col" FROM source AS s WHERE s."w" = CAST(v.p1 AS type) ...) IS NULL */
static char *probe_sql(const ModelSet *set, const Model *m, const Lookup *lk, const char *column)
{
    Compiler q = {.set = set, .m = m, .multi = true};
    applier_append_lookup(&q, lk, column);
    assert(q.nparams == lk->nwhere);
    StrBuf sb = {0};
    strbuf_append(&sb, "SELECT v.n FROM unnest($1::bigint[]");
    for (size_t i = 1; i <= q.nparams; i++)
        strbuf_appendf(&sb, ", $%zu::text[]", i + 1);
    strbuf_append(&sb, ") AS v(n");
    for (size_t i = 1; i <= q.nparams; i++)
        strbuf_appendf(&sb, ", p%zu", i);
    strbuf_appendf(&sb, ") WHERE %s IS NULL", q.sql.buf);
    strbuf_done(&q.sql);
    free(q.params);
    free(q.key_params);
    return strbuf_take(&sb);
}

/* PostgreSQL's words for the refusal, and why. */
static char *probe_refusal(const ModelSet *set, const Model *m, const Lookup *lk,
                           const char *column)
{
    const Model *src = &set->models[lk->model];
    return xasprintf("could not apply: null value in column \"%s\" of relation \"%s\" violates "
                     "not-null constraint (the lookup of %s.%s found no row)",
                     column, m->table_name, src->table, src->columns[lk->column].name);
}

void applier_probes_compile(const ModelSet *set, const Model *m, const Action *a, const Compiler *c,
                            StatementInfo *info)
{
    if (c->reads_own)
        return; /* what a lookup into the model's own table finds depends on the batch */
    for (size_t i = 0; i < a->nset; i++) {
        const Assign *as = &a->set[i];
        if (!probe_applies(m, a, as))
            continue;
        const char *column = m->columns[as->column].name;
        info->probes = xrealloc(info->probes, (info->nprobes + 1) * sizeof *info->probes);
        info->probes[info->nprobes] = (PlanProbe){
            .name = xasprintf("q%zu_%zu_%zu", info->handler, info->action, info->nprobes),
            .sql = probe_sql(set, m, as->lookup, column),
            .nparams = (int)as->lookup->nwhere + 1,
            .where_params = probe_where_params(c, column, as->lookup->nwhere),
            .refusal = probe_refusal(set, m, as->lookup, column),
        };
        info->nprobes++;
    }
}

void applier_probes_free(StatementInfo *info)
{
    for (size_t k = 0; k < info->nprobes; k++) {
        free(info->probes[k].name);
        free(info->probes[k].sql);
        free(info->probes[k].where_params);
        free(info->probes[k].refusal);
    }
    free(info->probes);
    info->probes = NULL;
    info->nprobes = 0;
}
