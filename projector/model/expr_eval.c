/* expr_eval.c - runs expression and condition trees against one normalized event: paths,
 * the functions, arithmetic and comparisons. An evaluation either fills its result or
 * leaves it null (false for a condition), so the caller always owns a valid value.
 */
#include "model/expr.h"
#include "model/expr_internal.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

static json_t *json_array_new(void)
{
    json_t *a = json_array();
    if (a == NULL)
        abort(); /* out of memory: same policy as xmalloc */
    return a;
}

/* ---------------------------------------------------------------- evaluation: paths */

static bool path_has_all(const Expr *path)
{
    for (size_t i = 0; i < path->nsteps; i++)
        if (path->steps[i].kind == EXPR_PATH_ALL)
            return true;
    return false;
}

static json_t *path_step(const json_t *node, const PathStep *step)
{
    if (step->kind == EXPR_PATH_KEY)
        return json_is_object(node) ? json_object_get(node, step->key) : NULL;
    return json_is_array(node) ? json_array_get(node, step->index) : NULL;
}

/* Appends to out what the steps reach from every element of array; a further [*] step
 * flattens into the same list, and elements where the path is absent are left out. */
static void path_collect(const json_t *array, const PathStep *steps, size_t n, json_t *out)
{
    for (size_t k = 0; k < json_array_size(array); k++) {
        json_t *node = json_array_get(array, k);
        size_t i = 0;
        while (i < n && node != NULL && steps[i].kind != EXPR_PATH_ALL)
            node = path_step(node, &steps[i++]);
        if (node == NULL)
            continue;
        if (i == n)
            json_array_append(out, node);
        else if (json_is_array(node))
            path_collect(node, steps + i + 1, n - i - 1, out);
    }
}

/* A plain path gives the node or null; a [*] path gives an array of what it collected, or
 * null when the part before the first [*] does not lead to an array. */
static void eval_path(const Expr *e, const json_t *event, Value *ret)
{
    const json_t *node = event;
    size_t i = 0;
    *ret = (Value){.kind = EXPR_VAL_NULL};
    while (i < e->nsteps && node != NULL && e->steps[i].kind != EXPR_PATH_ALL)
        node = path_step(node, &e->steps[i++]);
    if (i == e->nsteps) {
        value_from_json(node, ret);
        return;
    }
    if (!json_is_array(node))
        return;
    json_t *out = json_array_new();
    path_collect(node, e->steps + i + 1, e->nsteps - i - 1, out);
    *ret = (Value){.kind = EXPR_VAL_JSON, .json = out};
}

/* ---------------------------------------------------------------- evaluation: functions */

static int eval_node(const Expr *e, const json_t *event, Value *ret, PjError *err);

static int fn_length(const Value *v, Value *ret, PjError *err)
{
    char what[128];
    if (v->kind == EXPR_VAL_NULL)
        return 0;
    if (v->kind == EXPR_VAL_STRING) {
        value_set_computed(ret, (double)utf8_length(v->text));
        return 0;
    }
    if (v->kind == EXPR_VAL_JSON) {
        size_t n = json_is_array(v->json) ? json_array_size(v->json) : json_object_size(v->json);
        value_set_computed(ret, (double)n);
        return 0;
    }
    value_describe(v, what, sizeof what);
    return pj_error_set(err, PJ_EPERMANENT,
                        "cannot take the length of %s: not a string, array or object", what);
}

/* One element of a sum: numbers and numeric strings add, nulls are skipped. */
static int sum_add(const json_t *j, double *total, PjError *err)
{
    Value v;
    double x;
    char what[128];
    value_from_json(j, &v);
    bool ok = v.kind == EXPR_VAL_NULL || value_as_number(&v, &x);
    if (ok && v.kind != EXPR_VAL_NULL)
        *total += x;
    if (!ok)
        value_describe(&v, what, sizeof what);
    value_done(&v);
    if (!ok)
        return pj_error_set(err, PJ_EPERMANENT, "cannot sum %s: not a number", what);
    return 0;
}

static int fn_sum(const Value *v, Value *ret, PjError *err)
{
    double total = 0;
    char what[128];
    if (v->kind == EXPR_VAL_NULL)
        return 0;
    if (value_as_number(v, &total)) {
        value_set_computed(ret, total);
        return 0;
    }
    if (v->kind != EXPR_VAL_JSON || !json_is_array(v->json)) {
        value_describe(v, what, sizeof what);
        return pj_error_set(err, PJ_EPERMANENT, "cannot sum %s: not an array of numbers", what);
    }
    for (size_t i = 0; i < json_array_size(v->json); i++) {
        int r = sum_add(json_array_get(v->json, i), &total, err);
        if (r < 0)
            return r;
    }
    if (!isfinite(total))
        return pj_error_set(err, PJ_EPERMANENT, "value out of range: overflow");
    value_set_computed(ret, total);
    return 0;
}

/* lower/upper: ASCII case mapping of a string, number or bool. */
static int fn_case(const Value *v, bool upper, Value *ret, PjError *err)
{
    if (v->kind == EXPR_VAL_NULL)
        return 0;
    if (v->kind == EXPR_VAL_JSON)
        return pj_error_set(err, PJ_EPERMANENT, "function \"%s\" expects a string, got %s",
                            upper ? "upper" : "lower",
                            json_is_array(v->json) ? "an array" : "an object");
    char *s = value_to_param(v);
    for (char *c = s; *c != '\0'; c++) {
        if (upper && *c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
        else if (!upper && *c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    }
    value_set_string(ret, s);
    return 0;
}

/* The first non-null argument; later arguments are not evaluated. */
static int fn_coalesce(const Expr *e, const json_t *event, Value *ret, PjError *err)
{
    for (size_t i = 0; i < e->nargs; i++) {
        int r = eval_node(e->args[i], event, ret, err);
        if (r < 0 || ret->kind != EXPR_VAL_NULL)
            return r;
    }
    return 0;
}

static int fn_concat(const Expr *e, const json_t *event, Value *ret, PjError *err)
{
    StrBuf sb = {0};
    for (size_t i = 0; i < e->nargs; i++) {
        Value v;
        int r = eval_node(e->args[i], event, &v, err);
        if (r < 0) {
            strbuf_done(&sb);
            return r;
        }
        char *s = value_to_param(&v);
        if (s != NULL)
            strbuf_append(&sb, s);
        free(s);
        value_done(&v);
    }
    value_set_string(ret, strbuf_take(&sb));
    return 0;
}

static int eval_call(const Expr *e, const json_t *event, Value *ret, PjError *err)
{
    char now[40];
    Value arg;
    int r;
    switch (e->func) {
    case EXPR_FUNC_COALESCE:
        return fn_coalesce(e, event, ret, err);
    case EXPR_FUNC_CONCAT:
        return fn_concat(e, event, ret, err);
    case EXPR_FUNC_NOW:
        format_wall_ms(clock_wall_ms(), now, sizeof now);
        value_set_string(ret, xstrdup(now));
        return 0;
    case EXPR_FUNC_LENGTH:
    case EXPR_FUNC_SUM:
    case EXPR_FUNC_LOWER:
    case EXPR_FUNC_UPPER:
        break;
    }
    assert(e->nargs == 1);
    if ((r = eval_node(e->args[0], event, &arg, err)) < 0)
        return r;
    if (e->func == EXPR_FUNC_LENGTH)
        r = fn_length(&arg, ret, err);
    else if (e->func == EXPR_FUNC_SUM)
        r = fn_sum(&arg, ret, err);
    else
        r = fn_case(&arg, e->func == EXPR_FUNC_UPPER, ret, err);
    value_done(&arg);
    return r;
}

/* ---------------------------------------------------------------- evaluation: arithmetic */

static const char *arith_verb(char op)
{
    switch (op) {
    case '+':
        return "add";
    case '-':
        return "subtract";
    case '*':
        return "multiply";
    default:
        return "divide";
    }
}

static int not_a_number(const char *verb, const Value *v, PjError *err)
{
    char what[128];
    value_describe(v, what, sizeof what);
    return pj_error_set(err, PJ_EPERMANENT, "cannot %s %s: not a number", verb, what);
}

static int arith_apply(char op, const Value *a, const Value *b, Value *ret, PjError *err)
{
    double x, y, z;
    if (!value_as_number(a, &x))
        return not_a_number(arith_verb(op), a, err);
    if (!value_as_number(b, &y))
        return not_a_number(arith_verb(op), b, err);
    if (op == '/' && y == 0)
        return pj_error_set(err, PJ_EPERMANENT, "division by zero");
    z = op == '+' ? x + y : op == '-' ? x - y : op == '*' ? x * y : x / y;
    if (!isfinite(z))
        return pj_error_set(err, PJ_EPERMANENT, "value out of range: overflow");
    value_set_computed(ret, z);
    return 0;
}

/* Both operands are evaluated so that an error in either surfaces even next to a null. */
static int eval_arith(const Expr *e, const json_t *event, Value *ret, PjError *err)
{
    Value a, b = {.kind = EXPR_VAL_NULL};
    int r = eval_node(e->left, event, &a, err);
    if (r == 0)
        r = eval_node(e->right, event, &b, err);
    if (r == 0 && a.kind != EXPR_VAL_NULL && b.kind != EXPR_VAL_NULL)
        r = arith_apply(e->op, &a, &b, ret, err);
    value_done(&a);
    value_done(&b);
    return r;
}

static int eval_negate(const Expr *e, const json_t *event, Value *ret, PjError *err)
{
    Value v;
    double x;
    int r = eval_node(e->left, event, &v, err);
    if (r == 0 && v.kind != EXPR_VAL_NULL) {
        if (value_as_number(&v, &x))
            value_set_computed(ret, -x);
        else
            r = not_a_number("negate", &v, err);
    }
    value_done(&v);
    return r;
}

/* Leaves *ret null on error, so callers always own a valid value. */
static int eval_node(const Expr *e, const json_t *event, Value *ret, PjError *err)
{
    *ret = (Value){.kind = EXPR_VAL_NULL};
    switch (e->kind) {
    case EXPR_LITERAL:
        value_copy(&e->literal, ret);
        return 0;
    case EXPR_PATH:
        eval_path(e, event, ret);
        return 0;
    case EXPR_CALL:
        return eval_call(e, event, ret, err);
    case EXPR_ARITH:
        return eval_arith(e, event, ret, err);
    case EXPR_NEGATE:
        return eval_negate(e, event, ret, err);
    }
    assert(!"unknown expression kind");
    return -PJ_EINVAL;
}

int expr_eval(const Expr *e, const json_t *event, Value *ret, PjError *err)
{
    int r = eval_node(e, event, ret, err);
    if (r < 0)
        value_done(ret);
    return r;
}

/* ---------------------------------------------------------------- evaluation: conditions */

/* ==, != and orderings between values that have no order: only equality means anything. */
static bool cmp_unordered(CmpOp op, bool equal)
{
    return op == EXPR_CMP_EQ ? equal : op == EXPR_CMP_NE ? !equal : false;
}

static bool cmp_ordered(CmpOp op, int sign)
{
    switch (op) {
    case EXPR_CMP_EQ:
        return sign == 0;
    case EXPR_CMP_NE:
        return sign != 0;
    case EXPR_CMP_LT:
        return sign < 0;
    case EXPR_CMP_LE:
        return sign <= 0;
    case EXPR_CMP_GT:
        return sign > 0;
    case EXPR_CMP_GE:
        return sign >= 0;
    }
    return false;
}

static int cmp_values(CmpOp op, const Value *a, const Value *b, bool *ret, PjError *err)
{
    double x, y;
    if (a->kind == EXPR_VAL_NULL || b->kind == EXPR_VAL_NULL) {
        *ret = cmp_unordered(op, a->kind == b->kind);
    } else if (a->kind == EXPR_VAL_JSON || b->kind == EXPR_VAL_JSON) {
        const Value *j = a->kind == EXPR_VAL_JSON ? a : b;
        if (op != EXPR_CMP_EQ && op != EXPR_CMP_NE)
            return pj_error_set(err, PJ_EPERMANENT,
                                "cannot order %s: arrays and objects compare only with == and !=",
                                json_is_array(j->json) ? "an array" : "an object");
        *ret = cmp_unordered(op, a->kind == b->kind && json_equal(a->json, b->json));
    } else if (value_as_number(a, &x) && value_as_number(b, &y)) {
        *ret = cmp_ordered(op, (x > y) - (x < y));
    } else if (a->kind == EXPR_VAL_STRING && b->kind == EXPR_VAL_STRING) {
        assert(a->text != NULL && b->text != NULL);
        int sign = strcmp(a->text, b->text);
        *ret = cmp_ordered(op, (sign > 0) - (sign < 0));
    } else {
        *ret = cmp_unordered(op, a->kind == EXPR_VAL_BOOL && b->kind == EXPR_VAL_BOOL &&
                                     a->boolean == b->boolean);
    }
    return 0;
}

static int cond_compare(const Cond *c, const json_t *event, bool *ret, PjError *err)
{
    Value a, b = {.kind = EXPR_VAL_NULL};
    int r = eval_node(c->left, event, &a, err);
    if (r == 0)
        r = eval_node(c->right, event, &b, err);
    if (r == 0)
        r = cmp_values(c->op, &a, &b, ret, err);
    value_done(&a);
    value_done(&b);
    return r;
}

/* Present and not null; a [*] path needs at least one element that is not null. */
static bool path_exists(const Expr *path, const json_t *event)
{
    Value v;
    bool found;
    eval_path(path, event, &v);
    found = v.kind != EXPR_VAL_NULL;
    if (found && path_has_all(path)) {
        found = false;
        for (size_t i = 0; i < json_array_size(v.json) && !found; i++)
            found = !json_is_null(json_array_get(v.json, i));
    }
    value_done(&v);
    return found;
}

static int cond_node_eval(const Cond *c, const json_t *event, bool *ret, PjError *err)
{
    int r;
    *ret = false;
    switch (c->kind) {
    case EXPR_COND_CMP:
        return cond_compare(c, event, ret, err);
    case EXPR_COND_EXISTS:
        *ret = path_exists(c->left, event);
        return 0;
    case EXPR_COND_NOT:
        r = cond_node_eval(c->a, event, ret, err);
        *ret = r == 0 && !*ret;
        return r;
    case EXPR_COND_AND:
    case EXPR_COND_OR:
        /* short-circuit: the right side is not evaluated once the left decides */
        r = cond_node_eval(c->a, event, ret, err);
        if (r < 0 || *ret == (c->kind == EXPR_COND_OR))
            return r;
        return cond_node_eval(c->b, event, ret, err);
    }
    assert(!"unknown condition kind");
    return -PJ_EINVAL;
}

int cond_eval(const Cond *c, const json_t *event, bool *ret, PjError *err)
{
    int r = cond_node_eval(c, event, ret, err);
    if (r < 0)
        *ret = false;
    return r;
}
