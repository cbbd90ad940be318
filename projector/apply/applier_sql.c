/* applier_sql.c - the SQL text of one action's statement, in the single-row form and the
 * set-based forms over unnest(...) (see applier.h for the shapes). The text comes only
 * from quoted identifiers, fixed keywords and $n; each $n is recorded as a ParamSource in
 * the order it appears, so parameter n's value is known without reading the text again.
 */
#include "apply/applier.h"
#include "apply/applier_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

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
    strbuf_appendf(&c->sql, c->multi ? "CAST(v.p%zu AS %s)" : "CAST($%zu AS %s)", n, col->sql_type);
}

bool applier_param_is_key(const Compiler *c, size_t n)
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
        if (applier_param_is_key(c, i)) {
            strbuf_appendf(sb, "u.p%zu", i);
        } else if (ps->role == APPLIER_PARAM_ADD) {
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
            if (applier_param_is_key(c, i))
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
void applier_append_lookup(Compiler *c, const Lookup *lk, const char *target)
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
        plan_append_cast_param(c, wc, lk->where[i].expr, APPLIER_PARAM_LOOKUP_WHERE, target);
    }
    strbuf_append(&c->sql, " LIMIT 1)");
}

/* The value of one assignment: a cast parameter or a lookup subquery. */
static void plan_append_value(Compiler *c, const Assign *a, ParamRole role)
{
    const Column *col = &c->m->columns[a->column];
    if (a->lookup != NULL)
        applier_append_lookup(c, a->lookup, col->name);
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
        plan_append_value(c, &a->where[i], APPLIER_PARAM_WHERE);
        plan_note_key(c, a->where[i].column);
    }
}

bool applier_guards_version(const Model *m, const Action *a)
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
    if (applier_guards_version(m, a)) {
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
        plan_append_value(c, &a->set[i], key ? APPLIER_PARAM_KEY : APPLIER_PARAM_VALUE);
        if (key && a->set[i].lookup == NULL)
            plan_note_key(c, a->set[i].column);
    }
    for (size_t i = 0; i < a->nadd; i++) {
        const Column *col = &m->columns[a->add[i].column];
        strbuf_append(&c->sql, a->nset + i > 0 ? ", " : "");
        plan_append_default(c, col);
        strbuf_append(&c->sql, " + ");
        plan_append_cast_param(c, col, a->add[i].expr, APPLIER_PARAM_ADD, NULL);
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
    bool guard = applier_guards_version(m, a);
    char *version_value = NULL;

    strbuf_append(&c->sql, "UPDATE ");
    model_append_table(&c->sql, m);
    strbuf_append(&c->sql, " AS t SET ");
    for (size_t i = 0; i < a->nset; i++) {
        strbuf_append(&c->sql, i > 0 ? ", " : "");
        sql_append_ident(&c->sql, m->columns[a->set[i].column].name);
        strbuf_append(&c->sql, " = ");
        size_t start = c->sql.len;
        plan_append_value(c, &a->set[i], APPLIER_PARAM_VALUE);
        /* The guard compares with the very expression the row is set to. */
        if (guard && a->set[i].column == (size_t)m->version_column)
            version_value = xstrndup(c->sql.buf + start, c->sql.len - start);
    }
    for (size_t i = 0; i < a->nadd; i++) {
        const Column *col = &m->columns[a->add[i].column];
        strbuf_append(&c->sql, a->nset + i > 0 ? ", " : "");
        size_t k = plan_add_param(c, a->add[i].expr, APPLIER_PARAM_ADD, col->name, NULL);
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

void applier_compile_form(Compiler *c, const Action *a)
{
    c->key_params = xcalloc(c->m->nkey, sizeof *c->key_params);
    if (a->kind == MODEL_ACTION_UPSERT)
        plan_compile_upsert(c, a);
    else if (a->kind == MODEL_ACTION_UPDATE)
        plan_compile_update(c, a);
    else
        plan_compile_delete(c, a);
}
