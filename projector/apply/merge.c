/* merge.c - groups a batch's bound statements into set-based statements.
 *
 * Owns the grouping of one batch (MergePlan) and the text[] parameters of a group.
 * Invariant: running the groups in order has the effect of running the statements one by
 * one in batch order. It holds because a group only ever gathers statements of one plan
 * statement on distinct rows (or, for a folding statement, consecutive ones on one row,
 * which its SQL folds as applier.h says), every statement goes to a group after the last
 * one that touched its row, and a statement that may touch rows it does not name (a
 * fan-out update, a lookup into its own table, a key not in canonical form) is a barrier:
 * alone in its group, after every earlier statement and before every later one.
 * Statements on distinct rows commute: each reads and writes only its own row. And a group
 * fails whenever one of its statements alone would (a value its column refuses, a running
 * sum out of range), so that the caller can split it until that statement runs alone and
 * is refused by itself; it may fail more often (a sum out of range that an existing row
 * brings back), which costs a split, never a result.
 */
#include "apply/merge.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define MERGE_NONE ((size_t)-1)

/* Open addressing from a row's key to the last group that touched it. */
typedef struct RowSlot {
    char *key; /* owned; NULL: empty */
    size_t group;
} RowSlot;

typedef struct RowTable {
    RowSlot *slots;
    size_t cap; /* a power of two, at least twice the statements */
} RowTable;

static void rows_init(RowTable *t, size_t n)
{
    t->cap = 16;
    while (t->cap < 2 * n)
        t->cap *= 2;
    t->slots = xcalloc(t->cap, sizeof *t->slots);
}

static void rows_done(RowTable *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i].key);
    free(t->slots);
}

/* The slot of key: its own, or the empty one where it goes. */
static RowSlot *rows_slot(RowTable *t, const char *key)
{
    size_t i = (size_t)fnv1a64(key, strlen(key), 0) & (t->cap - 1);
    while (t->slots[i].key != NULL && strcmp(t->slots[i].key, key) != 0)
        i = (i + 1) & (t->cap - 1);
    return &t->slots[i];
}

/* ---- grouping ---- */

static size_t new_group(MergePlan *mp, size_t statement, unsigned cls)
{
    xgrow((void **)&mp->groups, &mp->groups_cap, mp->ngroups + 1, sizeof *mp->groups);
    mp->groups[mp->ngroups] = (MergeGroup){.statement = statement, .cls = cls};
    return mp->ngroups++;
}

/* Lists each group's members contiguously, in batch order within a group. */
static void collect_members(MergePlan *mp, const size_t *group_of, size_t n)
{
    for (size_t g = 0; g < mp->ngroups; g++)
        mp->groups[g].count = 0;
    for (size_t i = 0; i < n; i++)
        mp->groups[group_of[i]].count++;
    size_t at = 0;
    for (size_t g = 0; g < mp->ngroups; g++) {
        mp->groups[g].first = at;
        at += mp->groups[g].count;
        mp->groups[g].count = 0;
    }
    for (size_t i = 0; i < n; i++) {
        MergeGroup *g = &mp->groups[group_of[i]];
        mp->members[g->first + g->count++] = i;
    }
}

void merge_build(MergePlan *mp, const ApplierPlan *plan, const BoundStatement *const *stmts,
                 const unsigned *classes, size_t n)
{
    size_t nplan = applier_plan_count(plan);
    size_t *open = xmalloc((nplan + 1) * sizeof *open); /* per plan statement: its last group */
    size_t *group_of = xmalloc((n + 1) * sizeof *group_of);
    size_t floor = 0; /* no statement goes before the last barrier */
    StrBuf key = {0};
    RowTable rows;

    rows_init(&rows, n);
    mp->ngroups = 0;
    xgrow((void **)&mp->members, &mp->members_cap, n + 1, sizeof *mp->members);
    for (size_t s = 0; s < nplan; s++)
        open[s] = MERGE_NONE;
    for (size_t i = 0; i < n; i++) {
        size_t st = stmts[i]->statement;
        unsigned cls = classes != NULL ? classes[i] : 0;
        if (!applier_row_key(plan, stmts[i], &key)) {
            group_of[i] = new_group(mp, st, cls);
            floor = group_of[i] + 1;
            continue;
        }
        RowSlot *slot = rows_slot(&rows, key.buf);
        size_t min = floor;
        /* Only statements of one class share a group. */
        bool joinable = open[st] != MERGE_NONE && mp->groups[open[st]].cls == cls;
        /* The row's last statement is in the open group of this one: a folding group
         * takes it as well (nothing else touched the row in between). */
        bool fold = slot->key != NULL && joinable && slot->group == open[st] &&
                    applier_plan_statement(plan, st)->multi_folds;
        if (slot->key != NULL && !fold && slot->group + 1 > min)
            min = slot->group + 1;
        const PlanStatement *ps = applier_plan_statement(plan, st);
        size_t g;
        if (ps->multi_sql == NULL) {
            g = new_group(mp, st, cls); /* alone, but no barrier: only its row's order binds it */
        } else {
            g = joinable && open[st] >= min ? open[st] : new_group(mp, st, cls);
            open[st] = g;
        }
        group_of[i] = g;
        if (fold && g == slot->group)
            mp->groups[g].repeats = true;
        if (slot->key == NULL)
            slot->key = xstrdup(key.buf);
        slot->group = g;
    }
    collect_members(mp, group_of, n);
    strbuf_done(&key);
    rows_done(&rows);
    free(group_of);
    free(open);
}

void merge_plan_done(MergePlan *mp)
{
    free(mp->groups);
    free(mp->members);
    *mp = (MergePlan){0};
}

/* ---- parameters ---- */

/* The parameters of group g's set-based statement: parameter k is the text[] literal of
 * the k-th parameter of every member, in member order (NULL stays NULL). Owned by the
 * caller: merge_params_free. */
static char **merge_params(const MergePlan *mp, const MergeGroup *g,
                           const BoundStatement *const *stmts, int nparams)
{
    char **params = xcalloc((size_t)nparams + 1, sizeof *params);
    StrBuf sb = {0};

    for (int k = 0; k < nparams; k++) {
        strbuf_reset(&sb);
        strbuf_append(&sb, "{");
        for (size_t j = 0; j < g->count; j++) {
            const BoundStatement *b = stmts[mp->members[g->first + j]];
            assert(b->nparams == nparams);
            if (j > 0)
                strbuf_append(&sb, ",");
            strbuf_append_array_element(&sb, b->params[k]);
        }
        strbuf_append(&sb, "}");
        params[k] = xstrdup(sb.buf);
    }
    strbuf_done(&sb);
    return params;
}

/* ---- folding in C ---- */

/* "-?[0-9]+" within lo..hi. Other spellings PostgreSQL accepts (" 7", "+7") are left to
 * it: false. */
static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *ret)
{
    bool neg = *s == '-';
    int64_t v = 0;
    s += neg;
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || __builtin_mul_overflow(v, 10, &v) ||
            __builtin_sub_overflow(v, *s - '0', &v)) /* negative: reaches INT64_MIN */
            return false;
    }
    if (!neg && __builtin_mul_overflow(v, -1, &v))
        return false;
    *ret = v;
    return v >= lo && v <= hi;
}

/* "-?[0-9]+(.[0-9]+)?" as numeric(precision, scale) would store it, scaled by 10^scale:
 * rounded half away from zero at the scale, fewer than precision digits in all. */
static bool parse_decimal(const char *s, int precision, int scale, int64_t *ret)
{
    bool neg = *s == '-';
    int64_t v = 0, limit = 1;
    int frac = -1; /* digits seen after the point; -1 before it */
    s += neg;
    if (*s < '0' || *s > '9')
        return false;
    for (int i = 0; i < precision; i++)
        limit *= 10;
    for (; *s != '\0'; s++) {
        if (*s == '.' && frac < 0 && s[1] >= '0' && s[1] <= '9') {
            frac = 0;
            continue;
        }
        if (*s < '0' || *s > '9')
            return false;
        if (frac >= scale) { /* the first digit dropped decides the rounding */
            if (frac == scale && *s >= '5')
                v++;
            frac++;
            continue;
        }
        if (__builtin_mul_overflow(v, 10, &v) || (v += *s - '0') >= limit)
            return false;
        frac += frac >= 0;
    }
    for (int f = frac < 0 ? 0 : frac; f < scale; f++)
        if (__builtin_mul_overflow(v, 10, &v))
            return false;
    *ret = neg ? -v : v;
    return v < limit;
}

static void append_decimal(StrBuf *sb, int64_t v, int scale)
{
    char digits[32];
    uint64_t m = v < 0 ? -(uint64_t)v : (uint64_t)v;
    int n = snprintf(digits, sizeof digits, "%0*llu", scale + 1, (unsigned long long)m);
    strbuf_appendf(sb, "%s%.*s", v < 0 ? "-" : "", n - scale, digits);
    if (scale > 0)
        strbuf_appendf(sb, ".%s", digits + n - scale);
}

/* One add: amount as fold[k] reads it. */
static bool parse_amount(const FoldParam *f, const char *s, int64_t *ret)
{
    if (s == NULL)
        return false;
    if (f->kind == APPLIER_FOLD_INT)
        return parse_int(s, f->lo, f->hi, ret);
    return f->kind == APPLIER_FOLD_DECIMAL && parse_decimal(s, f->precision, f->scale, ret);
}

/* True when a sum of amounts still fits the column as one amount would: a sum past it is
 * left to the SQL folding form, whose arithmetic does not stop at the column's range (a
 * row holding a negative count may take it). */
static bool sum_fits(const FoldParam *f, int64_t sum)
{
    int64_t limit = 1;

    if (f->kind == APPLIER_FOLD_INT)
        return sum >= f->lo && sum <= f->hi;
    assert(f->kind == APPLIER_FOLD_DECIMAL && f->precision <= 18);
    for (int i = 0; i < f->precision; i++)
        limit *= 10;
    return sum > -limit && sum < limit;
}

/* Amounts of one sign only (zero goes with either): then every running sum lies between
 * the row's value and the row's value plus the whole sum, so the plain form, which checks
 * the latter, refuses exactly when one of the events alone would. With both signs a
 * running sum may leave the column's range and come back: the SQL folding form, which
 * checks each, must run. *sign is the sign so far (0: none yet). */
static bool same_sign(signed char *sign, int64_t x)
{
    signed char s = x > 0 ? 1 : x < 0 ? -1 : 0;
    if (s != 0 && *sign == -s)
        return false;
    if (s != 0)
        *sign = s;
    return true;
}

/* Adds the amount spelled s to *sum (the key's first: sets it), keeping to one sign
 * (*sign) and to the column's range. */
static bool fold_amount(const FoldParam *f, const char *s, bool first, int64_t *sum,
                        signed char *sign)
{
    int64_t x, total;
    if (!parse_amount(f, s, &x) || !same_sign(sign, x))
        return false;
    if (first)
        total = x;
    else if (__builtin_add_overflow(*sum, x, &total))
        return false;
    if (!sum_fits(f, total))
        return false;
    *sum = total;
    return true;
}

/* A key's rows folded so far: per parameter, its last value or the sum and sign of its
 * amounts. */
typedef struct FoldRow {
    const char **vals;
    int64_t *sums;
    signed char *signs;
} FoldRow;

/* A value the fold leaves out (a row that is not its key's last): PostgreSQL must still
 * convert it, so it goes into the check statement's array. False when it is a null for a
 * NOT NULL column, which only the SQL folding form refuses as that event alone would be. */
static bool fold_drop(const FoldParam *f, const char *v, StrBuf *check)
{
    if (v == NULL)
        return !f->not_null;
    strbuf_append(check, check->len > 0 ? "," : "");
    strbuf_append_array_element(check, v);
    return true;
}

/* The row of member b into the rows of its key: row r's values (last wins) and sums. */
static bool fold_member(const PlanStatement *st, const BoundStatement *b, bool first,
                        const FoldRow *r, StrBuf *checks)
{
    int j = 0; /* the check parameter of the next APPLIER_FOLD_LAST parameter */
    for (int k = 0; k < st->nparams; k++) {
        const FoldParam *f = &st->fold[k];
        if (f->kind == APPLIER_FOLD_KEY) {
            r->vals[k] = b->params[k];
        } else if (f->kind == APPLIER_FOLD_LAST) {
            if (!first && !fold_drop(f, r->vals[k], &checks[j]))
                return false;
            r->vals[k] = b->params[k];
            j++;
        } else if (!fold_amount(f, b->params[k], first, &r->sums[k], &r->signs[k])) {
            return false;
        }
    }
    return true;
}

/* The parameters of the plain form for the nrows folded rows (one per key). */
static char **fold_params(const PlanStatement *st, const FoldRow *r, size_t nrows)
{
    size_t np = (size_t)st->nparams;
    char **params = xcalloc(np + 1, sizeof *params);
    StrBuf sb = {0};

    for (size_t k = 0; k < np; k++) {
        const FoldParam *f = &st->fold[k];
        strbuf_reset(&sb);
        strbuf_append(&sb, "{");
        for (size_t row = 0; row < nrows; row++) {
            if (row > 0)
                strbuf_append(&sb, ",");
            if (f->kind == APPLIER_FOLD_KEY || f->kind == APPLIER_FOLD_LAST)
                strbuf_append_array_element(&sb, r->vals[row * np + k]);
            else
                append_decimal(&sb, r->sums[row * np + k],
                               f->kind == APPLIER_FOLD_INT ? 0 : f->scale);
        }
        strbuf_append(&sb, "}");
        params[k] = xstrdup(sb.buf);
    }
    strbuf_done(&sb);
    return params;
}

/* The check statement's parameters: "{...}" around each array of values left out, or
 * NULL when none was (every one left out a null). */
static char **fold_checks(const PlanStatement *st, StrBuf *checks)
{
    bool any = false;
    for (int j = 0; j < st->check_nparams; j++)
        any |= checks[j].len > 0;
    if (!any)
        return NULL;
    char **params = xcalloc((size_t)st->check_nparams + 1, sizeof *params);
    for (int j = 0; j < st->check_nparams; j++)
        params[j] = xasprintf("{%s}", checks[j].len > 0 ? checks[j].buf : "");
    return params;
}

/* Folds group g of a folding statement in C, as its SQL would: one row per key, add:
 * amounts summed (each rounded to its column's scale first), other values from the key's
 * last member. Returns the parameters of the plain form (st->plain_sql) and, in
 * *ret_check, those of st->check_sql for the values it left out (NULL: none); or NULL when
 * C cannot fold the group exactly as PostgreSQL would take its events one by one (an
 * amount in a spelling PostgreSQL would have to read, out of the column's range, of
 * either sign, a numeric without precision, a null left out for a NOT NULL column): then
 * the folding form must run. */
static char **merge_fold(const MergePlan *mp, const MergeGroup *g,
                         const BoundStatement *const *stmts, const PlanStatement *st,
                         char ***ret_check)
{
    size_t np = (size_t)st->nparams, nrows = 0;
    FoldRow rows_of = {
        .vals = xcalloc(g->count * np + 1, sizeof *rows_of.vals),
        .sums = xcalloc(g->count * np + 1, sizeof *rows_of.sums),
        .signs = xcalloc(g->count * np + 1, sizeof *rows_of.signs),
    };
    StrBuf *checks = xcalloc((size_t)st->check_nparams + 1, sizeof *checks);
    StrBuf key = {0};
    RowTable rows;
    bool ok = st->fold != NULL;

    *ret_check = NULL;
    rows_init(&rows, g->count);
    for (size_t j = 0; ok && j < g->count; j++) {
        const BoundStatement *b = stmts[mp->members[g->first + j]];
        strbuf_reset(&key);
        strbuf_append(&key, "");
        for (size_t k = 0; k < np; k++)
            if (st->fold[k].kind == APPLIER_FOLD_KEY)
                strbuf_appendf(&key, "%zu:%s", strlen(b->params[k]), b->params[k]);
        RowSlot *slot = rows_slot(&rows, key.buf);
        bool first = slot->key == NULL;
        if (first) {
            slot->key = xstrdup(key.buf);
            slot->group = nrows++;
        }
        size_t at = slot->group * np;
        FoldRow r = {rows_of.vals + at, rows_of.sums + at, rows_of.signs + at};
        ok = fold_member(st, b, first, &r, checks);
    }
    char **params = ok ? fold_params(st, &rows_of, nrows) : NULL;
    if (ok)
        *ret_check = fold_checks(st, checks);
    for (int j = 0; j < st->check_nparams; j++)
        strbuf_done(&checks[j]);
    free(checks);
    strbuf_done(&key);
    rows_done(&rows);
    free(rows_of.vals);
    free(rows_of.sums);
    free(rows_of.signs);
    return params;
}

char **merge_statement(const MergePlan *mp, const MergeGroup *g, const BoundStatement *const *stmts,
                       const PlanStatement *st, const char **ret_name, char ***ret_check)
{
    *ret_check = NULL;
    /* distinct rows need no folding; repeated ones fold here when C sums them exactly */
    char **params = st->plain_name == NULL ? NULL
                    : g->repeats           ? merge_fold(mp, g, stmts, st, ret_check)
                                           : merge_params(mp, g, stmts, st->nparams);
    *ret_name = params != NULL ? st->plain_name : st->multi_name;
    return params != NULL ? params : merge_params(mp, g, stmts, st->nparams);
}

void merge_params_free(char **params, int nparams)
{
    if (params == NULL)
        return;
    for (int k = 0; k < nparams; k++)
        free(params[k]);
    free(params);
}
