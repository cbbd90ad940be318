/* applier_sql.c - the SQL text of one action's statement, in the single-row form and the
 * set-based forms over unnest(...) (see applier.h for the shapes). The text comes only
 * from quoted identifiers, fixed keywords and $n; each $n is recorded as a ParamSource in
 * the order it appears, so parameter n's value is known without reading the text again.
 *
 * Invariant: a column receives its value as an INSERT or UPDATE assigns it, in every form,
 * so a value that does not fit its column is refused, never cut to fit.
 */
#include "apply/applier.h"
#include "apply/applier_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A parameter is cast explicitly, so that its type never depends on where $n appears. But
 * an explicit cast to varchar(n) cuts a longer value to n characters where an assignment
 * refuses it ("value too long for type character varying(n)"): a varchar(n) value is cast
 * to varchar and the assignment into the column applies the length. Every other type of
 * the model converts the same either way (numeric(p,s) rounds to its scale and refuses an
 * overflow in both), and keeps its modifier, so an add: amount is rounded before it is
 * added, as one event at a time would. */
const char *applier_param_type(const Column *col)
{
    return col->kind == MODEL_COL_VARCHAR ? "character varying" : col->sql_type;
}

/* The n of varchar(n), or 0 for varchar without a length and every other type. */
static long plan_varchar_length(const Column *col)
{
    long n = 0;
    if (col->kind != MODEL_COL_VARCHAR || sscanf(col->sql_type, "character varying(%ld)", &n) != 1)
        return 0;
    return n;
}

void applier_append_converted(StrBuf *sb, const Column *col, const char *ref)
{
    long n = plan_varchar_length(col);
    if (n == 0) {
        strbuf_appendf(sb, "CAST(%s AS %s)", ref, applier_param_type(col));
        return;
    }
    /* varchar's length coercion, called as an assignment calls it (isExplicit false); the
     * type modifier of varchar(n) is n plus the 4-byte length header */
    strbuf_appendf(sb, "pg_catalog.\"varchar\"(CAST(%s AS character varying), %ld, false)", ref,
                   n + 4);
}

static size_t plan_add_param(Compiler *c, const Expr *e, ParamRole role, const Column *col,
                             const char *target)
{
    xgrow((void **)&c->params, &c->cap, c->nparams + 1, sizeof *c->params);
    c->params[c->nparams] =
        (ParamSource){.expr = e, .role = role, .col = col, .column = col->name, .target = target};
    return ++c->nparams;
}

/* Appends CAST($n AS type) for a new parameter carrying e. */
static void plan_append_cast_param(Compiler *c, const Column *col, const Expr *e, ParamRole role,
                                   const char *target)
{
    size_t n = plan_add_param(c, e, role, col, target);
    strbuf_appendf(&c->sql, c->multi ? "CAST(v.p%zu AS %s)" : "CAST($%zu AS %s)", n,
                   applier_param_type(col));
}

bool applier_param_is_key(const Compiler *c, size_t n)
{
    for (size_t k = 0; k < c->m->nkey; k++)
        if (c->key_params[k] == n)
            return true;
    return false;
}

/* An add: column whose type has a range that a running sum may leave: the integers and
 * numeric(p,s) (numeric without a modifier takes any sum; floating point never folds). */
static bool plan_add_ranged(const Column *col)
{
    return col->kind == MODEL_COL_SMALLINT || col->kind == MODEL_COL_INTEGER ||
           col->kind == MODEL_COL_BIGINT ||
           (col->kind == MODEL_COL_NUMERIC && strcmp(col->sql_type, "numeric") != 0);
}

static void plan_append_names(const Compiler *c, StrBuf *sb)
{
    for (size_t i = 1; i <= c->nparams; i++)
        strbuf_appendf(sb, "%sp%zu", i > 1 ? ", " : "", i);
}

/* "alias.pK, ..." for every key parameter: what the rows of one key share. */
static void plan_append_keys(const Compiler *c, StrBuf *sb, const char *alias)
{
    size_t nkeys = 0;
    for (size_t i = 1; i <= c->nparams; i++)
        if (applier_param_is_key(c, i))
            strbuf_appendf(sb, "%s%s.p%zu", nkeys++ > 0 ? ", " : "", alias, i);
}

/* The folding form's rows before grouping, one per event, in batch order (w.o): keys as
 * text, every other value converted as its column receives it (so a value of an event
 * that is not the key's last is refused as well), and for an add: column of a ranged type
 * the running sum of its amounts within the key (r). */
static void plan_append_fold_rows(const Compiler *c, StrBuf *sb)
{
    strbuf_append(sb, "(SELECT ");
    for (size_t i = 1; i <= c->nparams; i++) {
        const ParamSource *ps = &c->params[i - 1];
        char ref[32];
        snprintf(ref, sizeof ref, "w.p%zu", i);
        strbuf_append(sb, i > 1 ? ", " : "");
        if (applier_param_is_key(c, i))
            strbuf_append(sb, ref);
        else
            applier_append_converted(sb, ps->col, ref);
        strbuf_appendf(sb, " AS p%zu", i);
        if (ps->role == APPLIER_PARAM_ADD && plan_add_ranged(ps->col)) {
            strbuf_append(sb, ", sum(");
            applier_append_converted(sb, ps->col, ref);
            strbuf_append(sb, ") OVER (PARTITION BY ");
            plan_append_keys(c, sb, "w");
            strbuf_appendf(sb, " ORDER BY w.o) AS r%zu", i);
        }
    }
    strbuf_append(sb, ", w.o FROM unnest(");
    for (size_t i = 1; i <= c->nparams; i++)
        strbuf_appendf(sb, "%s$%zu::text[]", i > 1 ? ", " : "", i);
    strbuf_append(sb, ") WITH ORDINALITY AS w(");
    plan_append_names(c, sb);
    strbuf_append(sb, ", o)) AS u");
}

/* The folding form's row source, one row per key: every add: amount summed; for a ranged
 * one also its largest and smallest amount (a, b) and running sum (h, l), which the
 * statement checks against the column's type as one event at a time would (see
 * plan_append_fold_check); every other value the last event's, but a null one for a NOT
 * NULL column first, so that its assignment refuses the statement as it would refuse that
 * event alone. */
static char *plan_fold_source(const Compiler *c)
{
    StrBuf sb = {0};

    strbuf_append(&sb, "(SELECT ");
    for (size_t i = 1; i <= c->nparams; i++) {
        const ParamSource *ps = &c->params[i - 1];
        strbuf_append(&sb, i > 1 ? ", " : "");
        if (applier_param_is_key(c, i)) {
            strbuf_appendf(&sb, "u.p%zu AS p%zu", i, i);
        } else if (ps->role == APPLIER_PARAM_ADD) {
            strbuf_appendf(&sb, "sum(u.p%zu) AS p%zu", i, i);
            if (plan_add_ranged(ps->col))
                strbuf_appendf(&sb,
                               ", max(u.p%zu) AS a%zu, min(u.p%zu) AS b%zu, "
                               "max(u.r%zu) AS h%zu, min(u.r%zu) AS l%zu",
                               i, i, i, i, i, i, i, i);
        } else {
            strbuf_appendf(&sb, "(array_agg(u.p%zu ORDER BY ", i);
            if (!ps->col->nullable)
                strbuf_appendf(&sb, "u.p%zu IS NULL DESC, ", i);
            strbuf_appendf(&sb, "u.o DESC))[1] AS p%zu", i);
        }
    }
    strbuf_append(&sb, " FROM ");
    plan_append_fold_rows(c, &sb);
    strbuf_append(&sb, " GROUP BY ");
    plan_append_keys(c, &sb, "u");
    strbuf_append(&sb, ") AS v");
    return strbuf_take(&sb);
}

/* The set-based form's row source: unnest($1::text[], ...) AS v(p1, ...), one text array
 * per parameter of the single-row form, all of the same length; or, folding, a grouped
 * select over it with one row per key. */
static char *plan_unnest_text(const Compiler *c)
{
    if (c->fold)
        return plan_fold_source(c);
    StrBuf sb = {0};
    strbuf_append(&sb, "unnest(");
    for (size_t i = 1; i <= c->nparams; i++)
        strbuf_appendf(&sb, "%s$%zu::text[]", i > 1 ? ", " : "", i);
    strbuf_append(&sb, ") AS v(");
    plan_append_names(c, &sb);
    strbuf_append(&sb, ")");
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

/* " + 0 * CAST(base + v.<which>k AS type)", base being the row's value (COALESCE(alias."c",
 * default)) or, without an alias, the default. It adds nothing, but refuses, as the
 * column's type does, a value that one event at a time would have come to and been refused
 * for: a folding statement refuses whenever one of its events alone would. */
static void plan_append_fold_check(Compiler *c, const Column *col, const char *alias, char which,
                                   size_t k)
{
    strbuf_append(&c->sql, " + 0 * CAST(");
    if (alias != NULL) {
        strbuf_appendf(&c->sql, "COALESCE(%s.", alias);
        sql_append_ident(&c->sql, col->name);
        strbuf_append(&c->sql, ", ");
        plan_append_default(c, col);
        strbuf_append(&c->sql, ")");
    } else {
        plan_append_default(c, col);
    }
    strbuf_appendf(&c->sql, " + v.%c%zu AS %s)", which, k, col->sql_type);
}

/* "c" = COALESCE(t."c", default) + CAST($k AS type), reusing parameter k; folding, the row
 * must also hold every running sum of the key's amounts (its highest and lowest). */
static void plan_append_add_update(Compiler *c, const Column *col, size_t k)
{
    sql_append_ident(&c->sql, col->name);
    strbuf_append(&c->sql, " = COALESCE(t.");
    sql_append_ident(&c->sql, col->name);
    strbuf_append(&c->sql, ", ");
    plan_append_default(c, col);
    strbuf_appendf(&c->sql, c->multi ? ") + CAST(v.p%zu AS %s)" : ") + CAST($%zu AS %s)", k,
                   col->sql_type);
    if (c->fold && plan_add_ranged(col)) {
        plan_append_fold_check(c, col, "t", 'h', k);
        plan_append_fold_check(c, col, "t", 'l', k);
    }
}

/* " LEFT JOIN table AS x ON x."k" = CAST(v.pK AS type) AND ...": the row, if any, that each
 * key of a folding upsert finds, whose value its running sums start from. */
static void plan_append_current_row(Compiler *c)
{
    const Model *m = c->m;

    strbuf_append(&c->sql, " LEFT JOIN ");
    model_append_table(&c->sql, m);
    strbuf_append(&c->sql, " AS x ON ");
    for (size_t k = 0; k < m->nkey; k++) {
        const Column *col = &m->columns[m->key[k]];
        assert(c->key_params[k] > 0);
        strbuf_append(&c->sql, k > 0 ? " AND x." : "x.");
        sql_append_ident(&c->sql, col->name);
        strbuf_appendf(&c->sql, " = CAST(v.p%zu AS %s)", c->key_params[k], applier_param_type(col));
    }
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
    bool current_row = false;

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
        if (c->fold && plan_add_ranged(col)) {
            /* each event's own VALUES, and the row it would have left: as one by one */
            plan_append_fold_check(c, col, NULL, 'a', c->nparams);
            plan_append_fold_check(c, col, NULL, 'b', c->nparams);
            plan_append_fold_check(c, col, "x", 'h', c->nparams);
            plan_append_fold_check(c, col, "x", 'l', c->nparams);
            current_row = true;
        }
    }
    if (c->multi)
        plan_splice_unnest(c, c->sql.len, "FROM");
    else
        strbuf_append(&c->sql, ")");
    if (current_row)
        plan_append_current_row(c);
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
        size_t k = plan_add_param(c, a->add[i].expr, APPLIER_PARAM_ADD, col, NULL);
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
