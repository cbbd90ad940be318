/* applier.c - compiles a read model's actions into parameterized SQL once, then binds
 * normalized events to those statements. Pure: no I/O, no logging.
 *
 * Owns the plan (statement text and, per statement, where each parameter's value comes
 * from) and the parameters of bound statements. Invariant: parameter $n of a statement
 * is the n-th ParamSource recorded while its text was built, so binding never re-parses.
 */
#include "apply/applier.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a parameter is for: decides whether a null value fails the event. */
typedef enum {
    PARAM_VALUE,       /* a column value that may be null (the table's constraints decide) */
    PARAM_KEY,         /* a key column of an upsert */
    PARAM_WHERE,       /* a where column of an update or delete */
    PARAM_ADD,         /* the amount of an add: column */
    PARAM_LOOKUP_WHERE /* a where column of a lookup */
} ParamRole;

typedef struct ParamSource {
    const Expr *expr; /* borrowed from the model */
    ParamRole role;
    const char *column; /* the column the value is for (borrowed, for messages) */
    const char *target; /* PARAM_LOOKUP_WHERE: the column the lookup fills */
} ParamSource;

typedef struct StatementInfo {
    size_t handler;
    size_t action;
    ParamSource *params; /* owned; nparams entries, $1 first */
    /* Set when the statement touches exactly the row of its key values and reads no row of
     * its own table (see applier_row_key): key_params[i] is the 0-based parameter holding
     * the value of key column i of the model. Owned, model->nkey entries, or NULL. */
    size_t *key_params;
} StatementInfo;

struct ApplierPlan {
    const ModelSet *set;
    const Model *model;
    PlanStatement *statements; /* owned, count entries */
    StatementInfo *infos;      /* owned, parallel to statements */
    size_t count;
    size_t *first; /* per handler: index of its first statement (owned) */
};

/* Builds one statement: its text and the sources of its parameters. */
typedef struct Compiler {
    const ModelSet *set;
    const Model *m;
    bool multi;        /* the set-based form: parameter n is the column v.pn of unnest */
    bool fold;         /* ... whose rows of one key fold into one (see plan_can_fold) */
    bool reads_own;    /* a lookup reads the model's own table */
    size_t *key_params; /* per key column: its parameter (1-based), 0 when not a plain value */
    StrBuf sql;
    ParamSource *params;
    size_t nparams;
    size_t cap;
} Compiler;

/* ---------------------------------------------------------------------------------------
 * Compiling
 * --------------------------------------------------------------------------------------- */

static size_t plan_add_param(Compiler *c, const Expr *e, ParamRole role, const char *column,
                             const char *target)
{
    xgrow((void **)&c->params, &c->cap, c->nparams + 1, sizeof *c->params);
    c->params[c->nparams] =
        (ParamSource){.expr = e, .role = role, .column = column, .target = target};
    return ++c->nparams;
}

/* Appends CAST($n AS type) for a new parameter carrying e. */
static void plan_append_cast_param(Compiler *c, const Column *col, const Expr *e, ParamRole role,
                                   const char *target)
{
    size_t n = plan_add_param(c, e, role, col->name, target);
    strbuf_appendf(&c->sql, c->multi ? "CAST(v.p%zu AS %s)" : "CAST($%zu AS %s)", n,
                   col->sql_type);
}

static bool plan_param_is_key(const Compiler *c, size_t n)
{
    for (size_t k = 0; k < c->m->nkey; k++)
        if (c->key_params[k] == n)
            return true;
    return false;
}

/* The folding form's rows, one per key: "(SELECT u.pK AS pK, ..., the sum of every add:
 * amount (each cast to its column's type first, as one event at a time would), the last
 * value of every other parameter, FROM " (continued by plan_unnest_text). Every column
 * stays text, so the statement around it reads v.pn as in the plain set-based form. */
static void plan_append_fold_select(const Compiler *c, StrBuf *sb)
{
    strbuf_append(sb, "(SELECT ");
    for (size_t i = 1; i <= c->nparams; i++) {
        const ParamSource *ps = &c->params[i - 1];
        strbuf_append(sb, i > 1 ? ", " : "");
        if (plan_param_is_key(c, i)) {
            strbuf_appendf(sb, "u.p%zu", i);
        } else if (ps->role == PARAM_ADD) {
            const Column *col = &c->m->columns[model_find_column(c->m, ps->column)];
            strbuf_appendf(sb, "CAST(sum(CAST(u.p%zu AS %s)) AS text)", i, col->sql_type);
        } else {
            strbuf_appendf(sb, "(array_agg(u.p%zu ORDER BY u.o DESC))[1]", i);
        }
        strbuf_appendf(sb, " AS p%zu", i);
    }
    strbuf_append(sb, " FROM ");
}

/* The set-based form's row source: unnest($1::text[], ...) AS v(p1, ...), one text array
 * per parameter of the single-row form, all of the same length; or, folding, a grouped
 * select over it with one row per key. */
static char *plan_unnest_text(const Compiler *c)
{
    StrBuf sb = {0};

    if (c->fold)
        plan_append_fold_select(c, &sb);
    strbuf_append(&sb, "unnest(");
    for (size_t i = 1; i <= c->nparams; i++)
        strbuf_appendf(&sb, "%s$%zu::text[]", i > 1 ? ", " : "", i);
    strbuf_append(&sb, c->fold ? ") WITH ORDINALITY AS u(" : ") AS v(");
    for (size_t i = 1; i <= c->nparams; i++)
        strbuf_appendf(&sb, "%sp%zu", i > 1 ? ", " : "", i);
    if (c->fold) {
        strbuf_append(&sb, ", o) GROUP BY ");
        size_t nkeys = 0;
        for (size_t i = 1; i <= c->nparams; i++)
            if (plan_param_is_key(c, i))
                strbuf_appendf(&sb, "%su.p%zu", nkeys++ > 0 ? ", " : "", i);
        strbuf_append(&sb, ") AS v");
    } else {
        strbuf_append(&sb, ")");
    }
    return strbuf_take(&sb);
}

/* Inserts " <keyword> <row source>" at byte offset at of the statement (set-based form). */
static void plan_splice_unnest(Compiler *c, size_t at, const char *keyword)
{
    char *src = plan_unnest_text(c), *tail = xstrdup(c->sql.buf + at);

    c->sql.len = at;
    c->sql.buf[at] = '\0';
    strbuf_appendf(&c->sql, " %s %s%s", keyword, src, tail);
    free(src);
    free(tail);
}

/* (SELECT s."col" FROM source AS s WHERE s."w" = CAST($j AS type) AND ... LIMIT 1) */
static void plan_append_lookup(Compiler *c, const Lookup *lk, const char *target)
{
    const Model *src = &c->set->models[lk->model];

    if (src == c->m)
        c->reads_own = true;

    strbuf_append(&c->sql, "(SELECT s.");
    sql_append_ident(&c->sql, src->columns[lk->column].name);
    strbuf_append(&c->sql, " FROM ");
    model_append_table(&c->sql, src);
    strbuf_append(&c->sql, " AS s WHERE ");
    for (size_t i = 0; i < lk->nwhere; i++) {
        const Column *wc = &src->columns[lk->where[i].column];
        assert(lk->where[i].lookup == NULL);
        if (i > 0)
            strbuf_append(&c->sql, " AND ");
        strbuf_append(&c->sql, "s.");
        sql_append_ident(&c->sql, wc->name);
        strbuf_append(&c->sql, " = ");
        plan_append_cast_param(c, wc, lk->where[i].expr, PARAM_LOOKUP_WHERE, target);
    }
    strbuf_append(&c->sql, " LIMIT 1)");
}

/* The value of one assignment: a cast parameter or a lookup subquery. */
static void plan_append_value(Compiler *c, const Assign *a, ParamRole role)
{
    const Column *col = &c->m->columns[a->column];
    if (a->lookup != NULL)
        plan_append_lookup(c, a->lookup, col->name);
    else
        plan_append_cast_param(c, col, a->expr, role, NULL);
}

/* The starting value of an add: column: its default cast to the type, or 0. */
static void plan_append_default(Compiler *c, const Column *col)
{
    if (col->default_text == NULL) {
        strbuf_append(&c->sql, "0");
        return;
    }
    strbuf_append(&c->sql, "CAST(");
    sql_append_literal(&c->sql, col->default_text);
    strbuf_appendf(&c->sql, " AS %s)", col->sql_type);
}

/* "c" = COALESCE(t."c", default) + CAST($k AS type), reusing parameter k. */
static void plan_append_add_update(Compiler *c, const Column *col, size_t k)
{
    sql_append_ident(&c->sql, col->name);
    strbuf_append(&c->sql, " = COALESCE(t.");
    sql_append_ident(&c->sql, col->name);
    strbuf_append(&c->sql, ", ");
    plan_append_default(c, col);
    strbuf_appendf(&c->sql, c->multi ? ") + CAST(v.p%zu AS %s)" : ") + CAST($%zu AS %s)", k,
                   col->sql_type);
}

/* Column col was just given the last parameter: remember it when col is a key column. */
static void plan_note_key(Compiler *c, size_t col)
{
    for (size_t k = 0; k < c->m->nkey; k++)
        if (c->m->key[k] == col)
            c->key_params[k] = c->nparams;
}

/* The set-based upsert's DO UPDATE cannot name the row source, only EXCLUDED, whose add:
 * column holds default + amount: "c" = COALESCE(t."c", default) + (EXCLUDED."c" - default),
 * exact for integers and numeric (the only add: columns given a set-based form when they
 * have a default; see plan_row_key). */
static void plan_append_add_excluded(Compiler *c, const Column *col)
{
    sql_append_ident(&c->sql, col->name);
    strbuf_append(&c->sql, " = COALESCE(t.");
    sql_append_ident(&c->sql, col->name);
    strbuf_append(&c->sql, ", ");
    plan_append_default(c, col);
    strbuf_append(&c->sql, ") + (EXCLUDED.");
    sql_append_ident(&c->sql, col->name);
    strbuf_append(&c->sql, " - ");
    plan_append_default(c, col);
    strbuf_append(&c->sql, ")");
}

static void plan_append_where(Compiler *c, const Action *a)
{
    strbuf_append(&c->sql, " WHERE ");
    for (size_t i = 0; i < a->nwhere; i++) {
        assert(a->where[i].lookup == NULL);
        if (i > 0)
            strbuf_append(&c->sql, " AND ");
        strbuf_append(&c->sql, "t.");
        sql_append_ident(&c->sql, c->m->columns[a->where[i].column].name);
        strbuf_append(&c->sql, " = ");
        plan_append_value(c, &a->where[i], PARAM_WHERE);
        plan_note_key(c, a->where[i].column);
    }
}

/* True when the action sets (rather than adds to) the model's version column: only then
 * is there a new version to compare with the row's. */
static bool plan_guards_version(const Model *m, const Action *a)
{
    if (!a->sets_version || m->version_column < 0)
        return false;
    for (size_t i = 0; i < a->nset; i++)
        if (a->set[i].column == (size_t)m->version_column)
            return true;
    return false;
}

/* ON CONFLICT (key) DO UPDATE SET ... [WHERE guard], or DO NOTHING. add_params[i] is the
 * parameter of a->add[i] in the VALUES list. */
static void plan_append_on_conflict(Compiler *c, const Action *a, const size_t *add_params)
{
    const Model *m = c->m;
    size_t nupdated = 0;

    strbuf_append(&c->sql, " ON CONFLICT (");
    for (size_t i = 0; i < m->nkey; i++) {
        if (i > 0)
            strbuf_append(&c->sql, ", ");
        sql_append_ident(&c->sql, m->columns[m->key[i]].name);
    }
    strbuf_append(&c->sql, ") DO UPDATE SET ");
    for (size_t i = 0; i < a->nset; i++) {
        const Column *col = &m->columns[a->set[i].column];
        if (col->in_key)
            continue;
        strbuf_append(&c->sql, nupdated++ > 0 ? ", " : "");
        sql_append_ident(&c->sql, col->name);
        strbuf_append(&c->sql, " = EXCLUDED.");
        sql_append_ident(&c->sql, col->name);
    }
    for (size_t i = 0; i < a->nadd; i++) {
        strbuf_append(&c->sql, nupdated++ > 0 ? ", " : "");
        if (c->multi)
            plan_append_add_excluded(c, &m->columns[a->add[i].column]);
        else
            plan_append_add_update(c, &m->columns[a->add[i].column], add_params[i]);
    }
    if (nupdated == 0) {
        /* Every column is a key column: the row existing is all there is to say. */
        c->sql.len -= strlen("DO UPDATE SET ");
        c->sql.buf[c->sql.len] = '\0';
        strbuf_append(&c->sql, "DO NOTHING");
        return;
    }
    if (plan_guards_version(m, a)) {
        const char *v = m->columns[m->version_column].name;
        strbuf_append(&c->sql, " WHERE t.");
        sql_append_ident(&c->sql, v);
        strbuf_append(&c->sql, " IS NULL OR t.");
        sql_append_ident(&c->sql, v);
        strbuf_append(&c->sql, " < EXCLUDED.");
        sql_append_ident(&c->sql, v);
    }
}

static void plan_compile_upsert(Compiler *c, const Action *a)
{
    const Model *m = c->m;
    size_t *add_params = xcalloc(a->nadd, sizeof *add_params);

    strbuf_append(&c->sql, "INSERT INTO ");
    model_append_table(&c->sql, m);
    strbuf_append(&c->sql, " AS t (");
    for (size_t i = 0; i < a->nset + a->nadd; i++) {
        const Assign *as = i < a->nset ? &a->set[i] : &a->add[i - a->nset];
        strbuf_append(&c->sql, i > 0 ? ", " : "");
        sql_append_ident(&c->sql, m->columns[as->column].name);
    }
    strbuf_append(&c->sql, c->multi ? ") SELECT " : ") VALUES (");
    for (size_t i = 0; i < a->nset; i++) {
        bool key = m->columns[a->set[i].column].in_key;
        strbuf_append(&c->sql, i > 0 ? ", " : "");
        plan_append_value(c, &a->set[i], key ? PARAM_KEY : PARAM_VALUE);
        if (key && a->set[i].lookup == NULL)
            plan_note_key(c, a->set[i].column);
    }
    for (size_t i = 0; i < a->nadd; i++) {
        const Column *col = &m->columns[a->add[i].column];
        strbuf_append(&c->sql, a->nset + i > 0 ? ", " : "");
        plan_append_default(c, col);
        strbuf_append(&c->sql, " + ");
        plan_append_cast_param(c, col, a->add[i].expr, PARAM_ADD, NULL);
        add_params[i] = c->nparams;
    }
    if (c->multi)
        plan_splice_unnest(c, c->sql.len, "FROM");
    else
        strbuf_append(&c->sql, ")");
    plan_append_on_conflict(c, a, add_params);
    free(add_params);
}

static void plan_compile_update(Compiler *c, const Action *a)
{
    const Model *m = c->m;
    bool guard = plan_guards_version(m, a);
    char *version_value = NULL;

    strbuf_append(&c->sql, "UPDATE ");
    model_append_table(&c->sql, m);
    strbuf_append(&c->sql, " AS t SET ");
    for (size_t i = 0; i < a->nset; i++) {
        strbuf_append(&c->sql, i > 0 ? ", " : "");
        sql_append_ident(&c->sql, m->columns[a->set[i].column].name);
        strbuf_append(&c->sql, " = ");
        size_t start = c->sql.len;
        plan_append_value(c, &a->set[i], PARAM_VALUE);
        /* The guard compares with the very expression the row is set to. */
        if (guard && a->set[i].column == (size_t)m->version_column)
            version_value = xstrndup(c->sql.buf + start, c->sql.len - start);
    }
    for (size_t i = 0; i < a->nadd; i++) {
        const Column *col = &m->columns[a->add[i].column];
        strbuf_append(&c->sql, a->nset + i > 0 ? ", " : "");
        size_t k = plan_add_param(c, a->add[i].expr, PARAM_ADD, col->name, NULL);
        plan_append_add_update(c, col, k);
    }
    size_t from_at = c->sql.len;
    plan_append_where(c, a);
    if (version_value != NULL) {
        const char *v = m->columns[m->version_column].name;
        strbuf_append(&c->sql, " AND (t.");
        sql_append_ident(&c->sql, v);
        strbuf_append(&c->sql, " IS NULL OR t.");
        sql_append_ident(&c->sql, v);
        strbuf_appendf(&c->sql, " < %s)", version_value);
        free(version_value);
    }
    if (c->multi)
        plan_splice_unnest(c, from_at, "FROM");
}

static void plan_compile_delete(Compiler *c, const Action *a)
{
    strbuf_append(&c->sql, "DELETE FROM ");
    model_append_table(&c->sql, c->m);
    strbuf_append(&c->sql, " AS t");
    size_t using_at = c->sql.len;
    plan_append_where(c, a);
    if (c->multi)
        plan_splice_unnest(c, using_at, "USING");
}

/* Checks the shape a loaded model guarantees, so a broken loader fails loudly here
 * instead of producing SQL that cannot run. */
static int plan_check_action(const Model *m, const Handler *h, size_t ai, PjError *err)
{
    const Action *a = &h->actions[ai];
    bool ok;

    switch (a->kind) {
    case ACTION_UPSERT:
        ok = a->nset > 0 && m->nkey > 0 && a->nwhere == 0;
        break;
    case ACTION_UPDATE:
        ok = a->nset + a->nadd > 0 && a->nwhere > 0;
        break;
    case ACTION_DELETE:
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

/* Compiles one form of an action into c (which starts empty). */
static void plan_compile_form(Compiler *c, const Action *a)
{
    c->key_params = xcalloc(c->m->nkey, sizeof *c->key_params);
    if (a->kind == ACTION_UPSERT)
        plan_compile_upsert(c, a);
    else if (a->kind == ACTION_UPDATE)
        plan_compile_update(c, a);
    else
        plan_compile_delete(c, a);
}

/* The 0-based parameters of the key columns when the statement targets one row by its
 * whole key (an upsert whose key values are plain values, or an update or delete whose
 * where is exactly the key) and reads nothing of its own table; otherwise NULL. */
static size_t *plan_row_key(const Compiler *c, const Action *a)
{
    if (c->reads_own || (a->kind != ACTION_UPSERT && a->nwhere != c->m->nkey))
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
    for (size_t i = 0; a->kind == ACTION_UPSERT && i < a->nadd; i++) {
        const Column *col = &m->columns[a->add[i].column];
        if (col->default_text != NULL && (col->kind == COL_REAL || col->kind == COL_DOUBLE))
            return false;
    }
    return true;
}

/* Several events of one action on one key may fold into one row of the set-based form
 * when the result is the same as applying them one by one: no version guard (each would
 * compare with the row the previous one left), and every add: column an integer or
 * numeric one, whose sums are exact in any order (floating point sums are not). Set
 * columns take the last event's value, as the last statement would leave them. */
static bool plan_can_fold(const Model *m, const Action *a)
{
    if (plan_guards_version(m, a))
        return false;
    for (size_t i = 0; i < a->nadd; i++) {
        ColumnKind k = m->columns[a->add[i].column].kind;
        if (k != COL_SMALLINT && k != COL_INTEGER && k != COL_BIGINT && k != COL_NUMERIC)
            return false;
    }
    return true;
}

/* How parameter k of a folding statement folds (PostgreSQL's ranges of its integers). */
static FoldParam plan_fold_param(const Compiler *c, size_t k)
{
    const ParamSource *ps = &c->params[k - 1];
    if (plan_param_is_key(c, k))
        return (FoldParam){.kind = FOLD_KEY};
    if (ps->role != PARAM_ADD)
        return (FoldParam){.kind = FOLD_LAST};
    const Column *col = &c->m->columns[model_find_column(c->m, ps->column)];
    FoldParam f = {.kind = FOLD_INT};
    switch (col->kind) {
    case COL_SMALLINT:
        f.lo = INT16_MIN, f.hi = INT16_MAX;
        return f;
    case COL_INTEGER:
        f.lo = INT32_MIN, f.hi = INT32_MAX;
        return f;
    case COL_BIGINT:
        f.lo = INT64_MIN, f.hi = INT64_MAX;
        return f;
    default:
        break;
    }
    /* numeric(p,s) with p <= 18: every value, scaled by 10^s, fits in 64 bits */
    if (sscanf(col->sql_type, "numeric(%d,%d)", &f.precision, &f.scale) == 2 &&
        f.precision <= 18 && f.scale >= 0 && f.scale <= f.precision)
        return (FoldParam){.kind = FOLD_DECIMAL, .precision = f.precision, .scale = f.scale};
    return (FoldParam){.kind = FOLD_SQL};
}

static void plan_compile_action(ApplierPlan *p, size_t hi, size_t ai)
{
    const Action *a = &p->model->handlers[hi].actions[ai];
    Compiler c = {.set = p->set, .m = p->model};
    Compiler multi = {.set = p->set, .m = p->model, .multi = true};
    Compiler plain = {.set = p->set, .m = p->model, .multi = true};
    FoldParam *fold = NULL;
    size_t i = p->count++;

    plan_compile_form(&c, a);
    size_t *key_params = plan_row_key(&c, a);
    bool merges = key_params != NULL && plan_can_merge(p->model, a);
    if (merges) {
        multi.fold = plan_can_fold(p->model, a);
        plan_compile_form(&multi, a);
        assert(multi.nparams == c.nparams);
    }
    if (merges && multi.fold) {
        plan_compile_form(&plain, a);
        fold = xcalloc(multi.nparams + 1, sizeof *fold);
        for (size_t k = 1; k <= multi.nparams; k++)
            fold[k - 1] = plan_fold_param(&multi, k);
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
    };
    p->infos[i] = (StatementInfo){
        .handler = hi, .action = ai, .params = c.params, .key_params = key_params};
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
        free(plan->infos[i].params);
        free(plan->infos[i].key_params);
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

/* ---------------------------------------------------------------------------------------
 * Binding
 * --------------------------------------------------------------------------------------- */

static const char *bind_role_name(ParamRole role)
{
    switch (role) {
    case PARAM_KEY:
        return "key";
    case PARAM_ADD:
        return "add";
    default:
        return "where";
    }
}

/* The error for a parameter that must not be null but is. */
static int bind_null_error(const ApplierPlan *p, const StatementInfo *info, const ParamSource *ps,
                           PjError *err)
{
    const char *type = p->model->handlers[info->handler].event_type;
    const char *text = ps->expr->text != NULL ? ps->expr->text : "null";

    if (ps->role == PARAM_LOOKUP_WHERE)
        return pj_error_set(err, PJ_EPERMANENT,
                            "where column \"%s\" of the lookup for \"%s\" in action %zu for "
                            "\"%s\" is null (%s)",
                            ps->column, ps->target, info->action + 1, type, text);
    return pj_error_set(err, PJ_EPERMANENT,
                        "%s column \"%s\" of action %zu for \"%s\" is null (%s)",
                        bind_role_name(ps->role), ps->column, info->action + 1, type, text);
}

/* Rewrites err's message as "<prefix>: <message>". */
static int bind_prefix_error(PjError *err, const char *prefix)
{
    char message[sizeof err->message];

    snprintf(message, sizeof message, "%s", err->message);
    return pj_error_set(err, PJ_EPERMANENT, "%s: %s", prefix, message);
}

static bool bind_null_allowed(ParamRole role)
{
    return role == PARAM_VALUE;
}

/* Evaluates every parameter of statement si. On error frees what it made. */
static int bind_statement(const ApplierPlan *p, size_t si, const json_t *event, BoundStatement *ret,
                          PjError *err)
{
    const StatementInfo *info = &p->infos[si];
    size_t n = (size_t)p->statements[si].nparams;
    char **params = xcalloc(n, sizeof *params);
    int r = 0;

    for (size_t i = 0; i < n && r == 0; i++) {
        const ParamSource *ps = &info->params[i];
        const char *column = ps->role == PARAM_LOOKUP_WHERE ? ps->target : ps->column;
        Value v = {0};

        r = expr_eval(ps->expr, event, &v, err);
        if (r < 0) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "column \"%s\"", column);
            r = bind_prefix_error(err, prefix);
        } else if (v.kind == VAL_NULL && !bind_null_allowed(ps->role))
            r = bind_null_error(p, info, ps, err);
        else
            params[i] = value_to_param(&v);
        value_done(&v);
    }
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            free(params[i]);
        free(params);
        return r;
    }
    *ret = (BoundStatement){.statement = si, .nparams = (int)n, .params = params};
    return 0;
}

static void bound_truncate(Bound *b, size_t count)
{
    while (b->count > count) {
        BoundStatement *s = &b->items[--b->count];
        for (int i = 0; i < s->nparams; i++)
            free(s->params[i]);
        free(s->params);
    }
}

/* Binds one action of the handler unless its `when:` is false. */
static int bind_action(const ApplierPlan *p, size_t hi, size_t ai, const json_t *event, Bound *out,
                       PjError *err)
{
    const Handler *h = &p->model->handlers[hi];
    const Action *a = &h->actions[ai];
    BoundStatement bs;

    if (a->when != NULL) {
        bool holds = false;
        if (cond_eval(a->when, event, &holds, err) < 0) {
            char prefix[384];
            snprintf(prefix, sizeof prefix, "condition of action %zu for \"%s\"", ai + 1,
                     h->event_type);
            return bind_prefix_error(err, prefix);
        }
        if (!holds)
            return 0;
    }
    int r = bind_statement(p, p->first[hi] + ai, event, &bs, err);
    if (r < 0)
        return r;
    xgrow((void **)&out->items, &out->cap, out->count + 1, sizeof *out->items);
    out->items[out->count++] = bs;
    return 0;
}

int applier_bind(const ApplierPlan *plan, const json_t *event, Bound *out, PjError *err)
{
    const json_t *type = json_object_get(event, "type");

    if (!json_is_string(type))
        return pj_error_set(err, PJ_EPERMANENT, "event has no type");
    const Handler *h = model_find_handler(plan->model, json_string_value(type));
    if (h == NULL)
        return APPLIER_UNHANDLED;

    size_t hi = (size_t)(h - plan->model->handlers);
    size_t mark = out->count;
    for (size_t ai = 0; ai < h->nactions; ai++) {
        int r = bind_action(plan, hi, ai, event, out, err);
        if (r < 0) {
            /* An event applies whole or not at all. */
            bound_truncate(out, mark);
            return r;
        }
    }
    return 0;
}

/* Integers as PostgreSQL prints them: no sign but "-", no leading zero, no blank. */
static bool canonical_integer(const char *s)
{
    if (strcmp(s, "0") == 0)
        return true;
    if (*s == '-')
        s++;
    if (*s < '1' || *s > '9')
        return false;
    size_t n = strspn(s, "0123456789");
    return s[n] == '\0' && n <= 18;
}

/* A uuid as PostgreSQL prints it: lower case, 8-4-4-4-12. */
static bool canonical_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : strchr("0123456789abcdef", s[i]) == NULL)
            return false;
    }
    return true;
}

/* True when text, cast to col's type, is equal to another canonical value only if the
 * two texts are equal. */
static bool canonical_key(const Column *col, const char *text)
{
    switch (col->kind) {
    case COL_TEXT:
        return true;
    case COL_VARCHAR: /* a length limit would cut two texts to one */
        return strcmp(col->sql_type, "character varying") == 0;
    case COL_SMALLINT:
    case COL_INTEGER:
    case COL_BIGINT:
        return canonical_integer(text);
    case COL_UUID:
        return canonical_uuid(text);
    default:
        return false;
    }
}

bool applier_row_key(const ApplierPlan *plan, const BoundStatement *b, StrBuf *key)
{
    const StatementInfo *info = &plan->infos[b->statement];
    const Model *m = plan->model;

    if (info->key_params == NULL)
        return false;
    strbuf_reset(key);
    for (size_t k = 0; k < m->nkey; k++) {
        const char *v = b->params[info->key_params[k]];
        if (v == NULL || !canonical_key(&m->columns[m->key[k]], v))
            return false;
        /* length-prefixed, so no value can run into the next */
        strbuf_appendf(key, "%zu:", strlen(v));
        strbuf_append(key, v);
    }
    return true;
}

void bound_reset(Bound *b)
{
    bound_truncate(b, 0);
}

void bound_done(Bound *b)
{
    bound_reset(b);
    free(b->items);
    *b = (Bound){0};
}
