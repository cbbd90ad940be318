/* applier_plan.c - the plan of a read model: one statement per action, compiled once at
 * start with its set-based and folding forms where they give the same result as one row
 * at a time. Owns the statements' text and parameter sources until applier_plan_free.
 */
#include "apply/applier.h"
#include "apply/applier_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

/* Checks the shape a loaded model guarantees, so a broken loader fails loudly here
 * instead of producing SQL that cannot run. */
static int plan_check_action(const Model *m, const Handler *h, size_t ai, PjError *err)
{
    const Action *a = &h->actions[ai];
    bool ok;

    switch (a->kind) {
    case MODEL_ACTION_UPSERT:
        ok = a->nset > 0 && m->nkey > 0 && a->nwhere == 0;
        break;
    case MODEL_ACTION_UPDATE:
        ok = a->nset + a->nadd > 0 && a->nwhere > 0;
        break;
    case MODEL_ACTION_DELETE:
        ok = a->nwhere > 0 && a->nset + a->nadd == 0;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok)
        return pj_error_set(err, PJ_EINVAL,
                            "action %zu for \"%s\" of read model \"%s\" is malformed", ai + 1,
                            h->event_type, m->name);
    return 0;
}

/* The 0-based parameters of the key columns when the statement targets one row by its
 * whole key (an upsert whose key values are plain values, or an update or delete whose
 * where is exactly the key) and reads nothing of its own table; otherwise NULL. */
static size_t *plan_row_key(const Compiler *c, const Action *a)
{
    if (c->reads_own || (a->kind != MODEL_ACTION_UPSERT && a->nwhere != c->m->nkey))
        return NULL;
    size_t *keys = xcalloc(c->m->nkey, sizeof *keys);
    for (size_t k = 0; k < c->m->nkey; k++) {
        if (c->key_params[k] == 0) {
            free(keys);
            return NULL;
        }
        keys[k] = c->key_params[k] - 1;
    }
    return keys;
}

/* Whether the action has a set-based form: an upsert's DO UPDATE computes an add: amount
 * as (default + amount) - default, which may round for floating point columns. */
static bool plan_can_merge(const Model *m, const Action *a)
{
    for (size_t i = 0; a->kind == MODEL_ACTION_UPSERT && i < a->nadd; i++) {
        const Column *col = &m->columns[a->add[i].column];
        if (col->default_text != NULL &&
            (col->kind == MODEL_COL_REAL || col->kind == MODEL_COL_DOUBLE))
            return false;
    }
    return true;
}

/* Several events of one action on one key may fold into one row of the set-based form
 * when the result is the same as applying them one by one: no version guard (each would
 * compare with the row the previous one left), no lookup (only the last event's would
 * run, so one that finds no row or reads a value its column refuses would pass unseen),
 * and every add: column an integer or numeric one, whose sums are exact in any order
 * (floating point sums are not). Set columns take the last event's value, as the last
 * statement would leave them. */
static bool plan_can_fold(const Model *m, const Action *a)
{
    if (applier_guards_version(m, a))
        return false;
    for (size_t i = 0; i < a->nset; i++)
        if (a->set[i].lookup != NULL)
            return false;
    for (size_t i = 0; i < a->nadd; i++) {
        ColumnKind k = m->columns[a->add[i].column].kind;
        if (k != MODEL_COL_SMALLINT && k != MODEL_COL_INTEGER && k != MODEL_COL_BIGINT &&
            k != MODEL_COL_NUMERIC)
            return false;
    }
    return true;
}

/* How parameter k of a folding statement folds (PostgreSQL's ranges of its integers). */
static FoldParam plan_fold_param(const Compiler *c, size_t k)
{
    const ParamSource *ps = &c->params[k - 1];
    const Column *col = ps->col;
    if (applier_param_is_key(c, k))
        return (FoldParam){.kind = APPLIER_FOLD_KEY};
    if (ps->role != APPLIER_PARAM_ADD)
        return (FoldParam){.kind = APPLIER_FOLD_LAST, .not_null = !col->nullable};
    FoldParam f = {.kind = APPLIER_FOLD_INT};
    switch (col->kind) {
    case MODEL_COL_SMALLINT:
        f.lo = INT16_MIN, f.hi = INT16_MAX;
        return f;
    case MODEL_COL_INTEGER:
        f.lo = INT32_MIN, f.hi = INT32_MAX;
        return f;
    case MODEL_COL_BIGINT:
        f.lo = INT64_MIN, f.hi = INT64_MAX;
        return f;
    default:
        break;
    }
    /* numeric(p,s) with p <= 18: every value, scaled by 10^s, fits in 64 bits */
    if (sscanf(col->sql_type, "numeric(%d,%d)", &f.precision, &f.scale) == 2 && f.precision <= 18 &&
        f.scale >= 0 && f.scale <= f.precision)
        return (FoldParam){
            .kind = APPLIER_FOLD_DECIMAL, .precision = f.precision, .scale = f.scale};
    return (FoldParam){.kind = APPLIER_FOLD_SQL};
}

/* The check statement of a fold in C (see PlanStatement): "SELECT count(<value of p1>),
 * ... FROM unnest($1::text[], ...) AS v(p1, ...)", one array per APPLIER_FOLD_LAST
 * parameter; count() has PostgreSQL convert every value. NULL when there is none. */
static char *plan_check_sql(const Compiler *c, const FoldParam *fold, int *ret_n)
{
    StrBuf sb = {0};
    int n = 0;

    for (size_t k = 1; k <= c->nparams; k++) {
        if (fold[k - 1].kind != APPLIER_FOLD_LAST)
            continue;
        char ref[32];
        snprintf(ref, sizeof ref, "v.p%d", ++n);
        strbuf_append(&sb, n > 1 ? ", count(" : "SELECT count(");
        applier_append_converted(&sb, c->params[k - 1].col, ref);
        strbuf_append(&sb, ")");
    }
    *ret_n = n;
    if (n == 0)
        return NULL;
    strbuf_append(&sb, " FROM unnest(");
    for (int j = 1; j <= n; j++)
        strbuf_appendf(&sb, "%s$%d::text[]", j > 1 ? ", " : "", j);
    strbuf_append(&sb, ") AS v(");
    for (int j = 1; j <= n; j++)
        strbuf_appendf(&sb, "%sp%d", j > 1 ? ", " : "", j);
    strbuf_append(&sb, ")");
    return strbuf_take(&sb);
}

static void plan_compile_action(ApplierPlan *p, size_t hi, size_t ai)
{
    const Action *a = &p->model->handlers[hi].actions[ai];
    Compiler c = {.set = p->set, .m = p->model};
    Compiler multi = {.set = p->set, .m = p->model, .multi = true};
    Compiler plain = {.set = p->set, .m = p->model, .multi = true};
    FoldParam *fold = NULL;
    char *check_sql = NULL;
    int check_nparams = 0;
    size_t i = p->count++;

    applier_compile_form(&c, a);
    size_t *key_params = plan_row_key(&c, a);
    bool merges = key_params != NULL && plan_can_merge(p->model, a);
    if (merges) {
        multi.fold = plan_can_fold(p->model, a);
        applier_compile_form(&multi, a);
        assert(multi.nparams == c.nparams);
    }
    if (merges && multi.fold) {
        applier_compile_form(&plain, a);
        fold = xcalloc(multi.nparams + 1, sizeof *fold);
        for (size_t k = 1; k <= multi.nparams; k++)
            fold[k - 1] = plan_fold_param(&multi, k);
        check_sql = plan_check_sql(&multi, fold, &check_nparams);
    }
    p->statements[i] = (PlanStatement){
        .name = xasprintf("a%zu_%zu", hi, ai),
        .sql = strbuf_take(&c.sql),
        .nparams = (int)c.nparams,
        .multi_name = merges ? xasprintf("m%zu_%zu", hi, ai) : NULL,
        .multi_sql = merges ? strbuf_take(&multi.sql) : NULL,
        .multi_folds = multi.fold,
        .plain_name = fold != NULL ? xasprintf("p%zu_%zu", hi, ai) : NULL,
        .plain_sql = fold != NULL ? strbuf_take(&plain.sql) : NULL,
        .fold = fold,
        .check_name = check_sql != NULL ? xasprintf("c%zu_%zu", hi, ai) : NULL,
        .check_sql = check_sql,
        .check_nparams = check_nparams,
    };
    p->infos[i] =
        (StatementInfo){.handler = hi, .action = ai, .params = c.params, .key_params = key_params};
    applier_probes_compile(p->set, p->model, a, &c, &p->infos[i]);
    free(c.key_params);
    free(multi.key_params);
    free(multi.params);
    strbuf_done(&plain.sql);
    free(plain.key_params);
    free(plain.params);
}

int applier_plan_new(const ModelSet *set, size_t model, ApplierPlan **ret, PjError *err)
{
    assert(model < set->count);
    const Model *m = &set->models[model];
    size_t total = 0;

    for (size_t h = 0; h < m->nhandlers; h++) {
        for (size_t a = 0; a < m->handlers[h].nactions; a++) {
            int r = plan_check_action(m, &m->handlers[h], a, err);
            if (r < 0)
                return r;
        }
        total += m->handlers[h].nactions;
    }
    ApplierPlan *p = xcalloc(1, sizeof *p);
    p->set = set;
    p->model = m;
    p->statements = xcalloc(total, sizeof *p->statements);
    p->infos = xcalloc(total, sizeof *p->infos);
    p->first = xcalloc(m->nhandlers, sizeof *p->first);
    for (size_t h = 0; h < m->nhandlers; h++) {
        p->first[h] = p->count;
        for (size_t a = 0; a < m->handlers[h].nactions; a++)
            plan_compile_action(p, h, a);
    }
    assert(p->count == total);
    *ret = p;
    return 0;
}

ApplierPlan *applier_plan_free(ApplierPlan *plan)
{
    if (plan == NULL)
        return NULL;
    for (size_t i = 0; i < plan->count; i++) {
        free(plan->statements[i].name);
        free(plan->statements[i].sql);
        free(plan->statements[i].multi_name);
        free(plan->statements[i].multi_sql);
        free(plan->statements[i].plain_name);
        free(plan->statements[i].plain_sql);
        free(plan->statements[i].fold);
        free(plan->statements[i].check_name);
        free(plan->statements[i].check_sql);
        free(plan->infos[i].params);
        free(plan->infos[i].key_params);
        applier_probes_free(&plan->infos[i]);
    }
    free(plan->statements);
    free(plan->infos);
    free(plan->first);
    free(plan);
    return NULL;
}

size_t applier_plan_count(const ApplierPlan *plan)
{
    return plan->count;
}

const PlanStatement *applier_plan_statement(const ApplierPlan *plan, size_t i)
{
    assert(i < plan->count);
    return &plan->statements[i];
}

size_t applier_plan_nprobes(const ApplierPlan *plan, size_t i)
{
    assert(i < plan->count);
    return plan->infos[i].nprobes;
}

const PlanProbe *applier_plan_probe(const ApplierPlan *plan, size_t i, size_t k)
{
    assert(i < plan->count && k < plan->infos[i].nprobes);
    return &plan->infos[i].probes[k];
}
