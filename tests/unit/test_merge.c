/* test_merge.c - merge.h without a server: which bound statements of a batch share a
 * set-based group (one plan statement, distinct rows, one class), which stand alone
 * (barriers, statements without a set-based form), that a row's statements keep their
 * order, that folding statements take repeats of a row into one group, and the text[]
 * parameters and C folding of a group. test_merge_pg checks the same groups against
 * PostgreSQL.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply/applier.h"
#include "apply/merge.h"
#include "ledger.h"
#include "model/model.h"
#include "testenv.h"

static const char ledger_yaml[] =
    LEDGER_HEAD_YAML "  open:\n" /* folds: adds to integer and numeric(12,2) */
                     "    upsert:\n"
                     "      id: $.payload.id\n"
                     "      n: $.payload.n\n"
                     "      owner: $.payload.owner\n"
                     "      add: { count: $.payload.k, amount: $.payload.amount }\n"
                     "  tag:\n" /* by key, set only */
                     "    update:\n"
                     "      where: { id: $.payload.id, n: $.payload.n }\n"
                     "      set: { tag: $.payload.tag }\n"
                     "  close:\n"
                     "    delete:\n"
                     "      where: { id: $.payload.id, n: $.payload.n }\n"
                     "  retag:\n" /* fan-out: no row key, a barrier */
                     "    update:\n"
                     "      where: { owner: $.payload.owner }\n"
                     "      set: { tag: $.payload.tag }\n"
                     "  versioned:\n" /* merges, never folds: version guard */
                     "    upsert:\n"
                     "      id: $.payload.id\n"
                     "      n: $.payload.n\n"
                     "      owner: $.payload.owner\n"
                     "      version: $.version\n"
                     "  score:\n" /* float add: with a default: no set-based form */
                     "    upsert:\n"
                     "      id: $.payload.id\n"
                     "      n: $.payload.n\n"
                     "      add: { score: $.payload.x }\n";

static ModelSet *set;
static ApplierPlan *plan;
static Bound bound;
static MergePlan mp;

static void setup(void)
{
    PjError err = {0};

    set = testenv_load_model_text("ledger.yaml", ledger_yaml);
    cr_assert_not_null(set, "ledger model does not load");
    cr_assert_eq(applier_plan_new(set, 0, &plan, &err), 0, "%s", err.message);
}

static void teardown(void)
{
    merge_plan_done(&mp);
    bound_done(&bound);
    plan = applier_plan_free(plan);
    model_set_free(set);
    set = NULL;
}

TestSuite(merge, .init = setup, .fini = teardown);

/* Binds one event: "type id n" plus optional JSON payload members. */
static void ev(const char *type, const char *id, int n, const char *more)
{
    char *text =
        xasprintf("{\"type\":\"%s\",\"version\":1,\"payload\":{\"id\":\"%s\",\"n\":%d,"
                  "\"owner\":\"o\",\"k\":1,\"amount\":\"1.50\",\"tag\":\"t\",\"x\":0.5%s%s}}",
                  type, id, n, more != NULL ? "," : "", more != NULL ? more : "");
    json_error_t jerr;
    json_t *event = json_loads(text, 0, &jerr);
    PjError err = {0};
    cr_assert_not_null(event, "%s: %s", text, jerr.text);
    size_t before = bound.count;
    cr_assert_eq(applier_bind(plan, event, &bound, &err), 0, "%s: %s", text, err.message);
    cr_assert_eq(bound.count, before + 1, "%s bound %zu statements", text, bound.count - before);
    json_decref(event);
    free(text);
}

/* merge_build over every statement bound so far; classes may be NULL. */
static void build(const unsigned *classes)
{
    const BoundStatement *stmts[64];
    cr_assert_leq(bound.count, ARRAY_SIZE(stmts));
    for (size_t i = 0; i < bound.count; i++)
        stmts[i] = &bound.items[i];
    merge_build(&mp, plan, stmts, classes, bound.count);
}

/* The groups as text: members (batch indexes) of each group, in run order, "|" between
 * groups, "*" after a folding group with repeats: "0,2|1|3,4*". */
static char *groups_text(void)
{
    StrBuf sb = {0};
    strbuf_append(&sb, "");
    for (size_t g = 0; g < mp.ngroups; g++) {
        const MergeGroup *grp = &mp.groups[g];
        if (g > 0)
            strbuf_append(&sb, "|");
        for (size_t j = 0; j < grp->count; j++)
            strbuf_appendf(&sb, "%s%zu", j > 0 ? "," : "", mp.members[grp->first + j]);
        if (grp->repeats)
            strbuf_append(&sb, "*");
        for (size_t j = 0; j < grp->count; j++)
            cr_assert_eq(bound.items[mp.members[grp->first + j]].statement, grp->statement,
                         "group %zu mixes plan statements", g);
    }
    return strbuf_take(&sb);
}

static void expect_groups(const char *want)
{
    char *got = groups_text();
    cr_expect_str_eq(got, want);
    free(got);
}

Test(merge, plan_has_the_forms_the_model_implies)
{
    ev("open", "a", 1, NULL);
    ev("tag", "a", 1, NULL);
    ev("close", "a", 1, NULL);
    ev("retag", "a", 1, NULL);
    ev("versioned", "a", 1, NULL);
    ev("score", "a", 1, NULL);
    const PlanStatement *st[6];
    for (size_t i = 0; i < 6; i++)
        st[i] = applier_plan_statement(plan, bound.items[i].statement);
    cr_expect(st[0]->multi_sql != NULL && st[0]->multi_folds && st[0]->fold != NULL, "open");
    cr_expect(st[1]->multi_sql != NULL, "tag");
    cr_expect(st[2]->multi_sql != NULL, "close");
    cr_expect(st[4]->multi_sql != NULL && !st[4]->multi_folds, "versioned must not fold");
    cr_expect_null(st[5]->multi_sql, "a float add: with a default has no set-based form");
    StrBuf key = {0};
    cr_expect_not(applier_row_key(plan, &bound.items[3], &key), "retag has no single row");
    strbuf_done(&key);
}

Test(merge, distinct_rows_of_one_statement_share_a_group_in_batch_order)
{
    ev("open", "a", 1, NULL);
    ev("open", "b", 1, NULL);
    ev("open", "a", 2, NULL);
    ev("open", "c", 7, NULL);
    build(NULL);
    expect_groups("0,1,2,3");
}

Test(merge, empty_batch_has_no_groups)
{
    build(NULL);
    cr_expect_eq(mp.ngroups, 0);
}

Test(merge, statements_of_different_plan_statements_go_to_different_groups)
{
    ev("open", "a", 1, NULL);
    ev("tag", "b", 1, NULL);
    ev("open", "c", 1, NULL);
    ev("tag", "d", 1, NULL);
    build(NULL);
    expect_groups("0,2|1,3");
}

Test(merge, a_folding_statement_takes_repeats_of_a_row)
{
    ev("open", "a", 1, NULL);
    ev("open", "b", 1, NULL);
    ev("open", "a", 1, NULL);
    build(NULL);
    expect_groups("0,1,2*");
}

Test(merge, a_statement_that_does_not_fold_starts_a_new_group_on_a_repeated_row)
{
    ev("versioned", "a", 1, NULL);
    ev("versioned", "b", 1, NULL);
    ev("versioned", "a", 1, NULL);
    ev("versioned", "c", 1, NULL);
    build(NULL);
    /* c has no earlier statement on its row: it joins its statement's open group, which
     * is the latest one */
    expect_groups("0,1|2,3");
}

Test(merge, a_row_keeps_the_order_of_its_statements)
{
    ev("open", "a", 1, NULL);
    ev("tag", "a", 1, NULL);
    ev("open", "a", 1, NULL); /* after the tag: cannot fold into the first open */
    ev("close", "a", 1, NULL);
    ev("open", "b", 1, NULL); /* its own row: joins the open group of its statement */
    build(NULL);
    expect_groups("0|1|2,4|3");
}

Test(merge, a_fan_out_statement_is_a_barrier)
{
    ev("open", "a", 1, NULL);
    ev("retag", "x", 0, NULL);
    ev("open", "b", 1, NULL); /* another row, yet not before the barrier */
    ev("tag", "c", 1, NULL);
    build(NULL);
    expect_groups("0|1|2|3");
}

Test(merge, a_statement_without_set_based_form_stands_alone_but_is_no_barrier)
{
    ev("open", "a", 1, NULL);
    ev("score", "b", 1, NULL);
    ev("open", "c", 1, NULL);
    ev("score", "d", 1, NULL);
    ev("open", "b", 1, NULL); /* after score on b */
    build(NULL);
    expect_groups("0,2|1|3|4");
}

Test(merge, a_key_not_in_canonical_form_is_a_barrier)
{
    ev("open", "a", 1, NULL);
    ev("open", "b", 1, "\"n\":\"01\"");
    ev("open", "c", 1, NULL);
    build(NULL);
    expect_groups("0|1|2");
}

Test(merge, classes_split_groups)
{
    ev("open", "a", 1, NULL);
    ev("open", "b", 1, NULL);
    ev("open", "c", 1, NULL);
    ev("open", "d", 1, NULL);
    static const unsigned classes[] = {0, 0, 1, 1};
    build(classes);
    expect_groups("0,1|2,3");
    cr_expect_eq(mp.groups[0].cls, 0);
    cr_expect_eq(mp.groups[1].cls, 1);
}

Test(merge, a_repeat_in_another_class_does_not_fold)
{
    ev("open", "a", 1, NULL);
    ev("open", "a", 1, NULL);
    static const unsigned classes[] = {0, 1};
    build(classes);
    expect_groups("0|1");
}

Test(merge, plan_is_reused_from_batch_to_batch)
{
    ev("open", "a", 1, NULL);
    ev("tag", "b", 1, NULL);
    ev("close", "c", 1, NULL);
    build(NULL);
    expect_groups("0|1|2");
    bound_reset(&bound);
    ev("open", "a", 1, NULL);
    ev("open", "a", 2, NULL);
    build(NULL);
    expect_groups("0,1");
}

/* ---- parameters ---- */

static const BoundStatement *stmt_ptrs[64];

static const BoundStatement *const *ptrs(void)
{
    for (size_t i = 0; i < bound.count; i++)
        stmt_ptrs[i] = &bound.items[i];
    return stmt_ptrs;
}

/* The parameter of statement 0 holding value v (its first occurrence). */
static int param_of(const char *v)
{
    const BoundStatement *b = &bound.items[0];
    for (int k = 0; k < b->nparams; k++)
        if (b->params[k] != NULL && strcmp(b->params[k], v) == 0)
            return k;
    cr_assert_fail("no parameter \"%s\"", v);
    return -1;
}

Test(merge, params_are_array_literals_with_quotes_escaped)
{
    ev("tag", "plain", 1, "\"tag\":\"T0\"");
    ev("tag", "k\\\"q", 1, "\"tag\":null");
    ev("tag", "back\\\\slash", 1, "\"tag\":\"NULL\"");
    ev("tag", "x,{y}", 1, "\"tag\":\"\"");
    build(NULL);
    cr_assert_eq(mp.ngroups, 1);
    int id = param_of("plain"), tag = param_of("T0");
    const PlanStatement *st = applier_plan_statement(plan, mp.groups[0].statement);
    const char *name = NULL;
    char **check = NULL;
    char **params = merge_statement(&mp, &mp.groups[0], ptrs(), st, &name, &check);
    cr_expect_str_eq(name, st->plain_name, "distinct rows: the plain form");
    cr_expect_null(check);
    cr_expect_str_eq(params[id], "{\"plain\",\"k\\\"q\",\"back\\\\slash\",\"x,{y}\"}");
    /* SQL NULL unquoted; the string "NULL" quoted, so it stays a string */
    cr_expect_str_eq(params[tag], "{\"T0\",NULL,\"NULL\",\"\"}");
    merge_params_free(params, st->nparams);
}

Test(merge, distinct_rows_run_the_plain_form_of_a_folding_statement)
{
    ev("open", "a", 1, NULL);
    ev("open", "b", 1, NULL);
    build(NULL);
    const PlanStatement *st = applier_plan_statement(plan, mp.groups[0].statement);
    const char *name = NULL;
    char **check = NULL;
    char **params = merge_statement(&mp, &mp.groups[0], ptrs(), st, &name, &check);
    cr_expect_str_eq(name, st->plain_name);
    cr_expect_null(check);
    cr_expect_str_eq(params[param_of("a")], "{\"a\",\"b\"}");
    merge_params_free(params, st->nparams);
}

Test(merge, repeats_fold_in_c_amounts_summed_last_value_kept)
{
    ev("open", "a", 1, "\"k\":2,\"amount\":\"1.005\",\"owner\":\"first\"");
    ev("open", "b", 1, "\"k\":-7,\"amount\":\"-0.5\",\"owner\":\"other\"");
    ev("open", "a", 1, "\"k\":40,\"amount\":\"2.5\",\"owner\":\"last\"");
    build(NULL);
    expect_groups("0,1,2*");
    int id = param_of("a"), owner = param_of("first"), k = param_of("2"),
        amount = param_of("1.005");
    const PlanStatement *st = applier_plan_statement(plan, mp.groups[0].statement);
    const char *name = NULL;
    char **check = NULL;
    char **params = merge_statement(&mp, &mp.groups[0], ptrs(), st, &name, &check);
    cr_expect_str_eq(name, st->plain_name, "C folds these: the plain form runs");
    cr_expect_str_eq(params[id], "{\"a\",\"b\"}", "one row per key, in first-seen order");
    cr_expect_str_eq(params[owner], "{\"last\",\"other\"}");
    cr_expect_str_eq(params[k], "{42,-7}");
    /* each rounded to the column's scale first, half away from zero: 1.01 + 2.50 */
    cr_expect_str_eq(params[amount], "{3.51,-0.50}");
    /* the owner left out still goes to PostgreSQL, to be converted as its column would */
    cr_assert_not_null(check);
    cr_expect_eq(st->check_nparams, 1);
    cr_expect_str_eq(check[0], "{\"first\"}");
    merge_params_free(check, st->check_nparams);
    merge_params_free(params, st->nparams);
}

typedef struct FoldCase {
    char more1[48], more2[48];
    bool in_c; /* folds in C (plain form), else the set-based folding form runs */
    char why[64];
} FoldCase;

ParameterizedTestParameters(merge, amounts_c_cannot_sum_exactly_leave_folding_to_sql)
{
    static FoldCase cases[] = {
        {"\"k\":1", "\"k\":2", true, "plain integers"},
        {"\"k\":\"+1\"", "\"k\":2", false, "a sign PostgreSQL would read"},
        {"\"k\":\" 1\"", "\"k\":2", false, "a blank PostgreSQL would read"},
        {"\"k\":\"1e3\"", "\"k\":2", false, "an exponent"},
        {"\"k\":2147483648", "\"k\":2", false, "beyond integer"},
        {"\"amount\":\"1e2\"", "\"amount\":\"1\"", false, "a numeric exponent"},
        {"\"amount\":\"10000000000\"", "\"amount\":\"1\"", false, "beyond numeric(12,2)"},
        {"\"amount\":\"9999999999.99\"", "\"amount\":\"0\"", true, "the largest numeric(12,2)"},
        {"\"amount\":\".5\"", "\"amount\":\"1\"", false, "no digit before the point"},
        /* a running sum of amounts of both signs may leave the range and come back */
        {"\"k\":5", "\"k\":-2", false, "amounts of both signs"},
        {"\"amount\":\"-0.5\"", "\"amount\":\"0.5\"", false, "numeric of both signs"},
        {"\"k\":0", "\"k\":-2", true, "zero goes with either sign"},
        {"\"amount\":\"0.004\"", "\"amount\":\"-1\"", true, "rounds to zero first"},
    };
    return cr_make_param_array(FoldCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(FoldCase *c, merge, amounts_c_cannot_sum_exactly_leave_folding_to_sql)
{
    ev("open", "a", 1, c->more1);
    ev("open", "a", 1, c->more2);
    build(NULL);
    cr_assert_eq(mp.ngroups, 1);
    cr_assert(mp.groups[0].repeats);
    const PlanStatement *st = applier_plan_statement(plan, mp.groups[0].statement);
    const char *name = NULL;
    char **check = NULL;
    char **params = merge_statement(&mp, &mp.groups[0], ptrs(), st, &name, &check);
    cr_expect_str_eq(name, c->in_c ? st->plain_name : st->multi_name, "%s", c->why);
    merge_params_free(check, st->check_nparams);
    merge_params_free(params, st->nparams);
}

/* Each amount is in range, their sum is not: cast to the column's type, the folded sum
 * fails where the statements one by one succeed on a row holding a negative count (and the
 * SQL folding form, which sums in bigint and numeric, too). merge.h says such a group
 * folds in SQL; merge_fold checks each amount's range but not the sum's. Enable once
 * merge_fold checks the sums. */
Test(merge, a_sum_beyond_the_column_range_is_left_to_sql)
{
    ev("open", "a", 1, "\"k\":2147483647");
    ev("open", "a", 1, "\"k\":1");
    ev("open", "b", 1, "\"amount\":\"9999999999.99\"");
    ev("open", "b", 1, "\"amount\":\"0.01\"");
    build(NULL);
    cr_assert_eq(mp.ngroups, 1);
    const PlanStatement *st = applier_plan_statement(plan, mp.groups[0].statement);
    const char *name = NULL;
    char **check = NULL;
    char **params = merge_statement(&mp, &mp.groups[0], ptrs(), st, &name, &check);
    cr_expect_str_eq(name, st->multi_name);
    cr_expect_null(check, "the folding form converts every value itself");
    merge_params_free(params, st->nparams);
}
