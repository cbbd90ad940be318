/* test_expr.c - the value language: parsing expressions and conditions (trees, messages and
 * columns), evaluating them against sample normalized events, and the Value helpers.
 * Trees are checked by rendering them as prefix notation, so precedence shows directly.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/util.h"
#include "model/expr.h"
#include "model/expr_internal.h"

/* The line and column the parsed text starts at in the pretend YAML file. */
#define TEXT_LINE 7
#define TEXT_COLUMN 5

static const char sample_event_json[] =
    "{\"type\": \"order.placed\", \"event_id\": \"e-1\", \"aggregate_id\": \"o-1\","
    " \"aggregate_type\": null, \"version\": 3, \"occurred_at\": \"2026-01-15T10:30:00Z\","
    " \"stream\": \"orders\", \"entry_id\": \"1700000000000-0\","
    " \"metadata\": {\"userId\": \"u-7\", \"correlationId\": null},"
    " \"payload\": {\"orderId\": \"o-1\", \"customerId\": \"C-42\", \"name\": \"Ada Lovelace\","
    "  \"status\": \"PENDING\", \"reason\": \"it's fraud\","
    "  \"items\": [{\"sku\": \"A\", \"qty\": 2, \"price\": \"19.99\"},"
    "            {\"sku\": \"B\", \"qty\": 3, \"price\": 10.5},"
    "            {\"sku\": \"C\", \"note\": null}],"
    "  \"total\": {\"amount\": 99.99, \"currency\": \"EUR\"},"
    "  \"qtyText\": \"99.99\", \"zero\": 0, \"word\": \"abc\", \"flag\": true, \"empty\": [],"
    "  \"nested\": [{\"tags\": [\"x\", \"y\"]}, {\"tags\": [\"z\"]}, {\"tags\": []}, {}],"
    "  \"nums\": [1, null, \"2.5\"], \"bad\": [1, \"x\"], \"greek\": \"\xce\xb1\xce\xb2\xce\xb3\","
    "  \"big\": 9007199254740993, \"order-id\": \"h-1\"}}";

static json_t *load_json(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    cr_assert_not_null(j, "bad test JSON: %s", je.text);
    return j;
}

/* ---------------------------------------------------------------- rendering trees */

static const char *const func_names[] = {
    [EXPR_FUNC_LENGTH] = "length", [EXPR_FUNC_SUM] = "sum",     [EXPR_FUNC_COALESCE] = "coalesce",
    [EXPR_FUNC_LOWER] = "lower",   [EXPR_FUNC_UPPER] = "upper", [EXPR_FUNC_CONCAT] = "concat",
    [EXPR_FUNC_NOW] = "now",
};

static void render_literal(StrBuf *sb, const Value *v)
{
    switch (v->kind) {
    case EXPR_VAL_NULL:
        strbuf_append(sb, "null");
        break;
    case EXPR_VAL_BOOL:
        strbuf_append(sb, v->boolean ? "true" : "false");
        break;
    case EXPR_VAL_NUMBER:
        strbuf_append(sb, v->text);
        break;
    case EXPR_VAL_STRING:
        strbuf_append(sb, "'");
        for (const char *c = v->text; *c != '\0'; c++)
            strbuf_append(sb, *c == '\'' ? "''" : (char[]){*c, '\0'});
        strbuf_append(sb, "'");
        break;
    case EXPR_VAL_JSON:
        strbuf_append(sb, "<json>");
        break;
    }
}

static void render_expr(StrBuf *sb, const Expr *e)
{
    switch (e->kind) {
    case EXPR_LITERAL:
        render_literal(sb, &e->literal);
        break;
    case EXPR_PATH:
        strbuf_append(sb, "$");
        for (size_t i = 0; i < e->nsteps; i++) {
            const PathStep *s = &e->steps[i];
            if (s->kind == EXPR_PATH_KEY)
                strbuf_appendf(sb, ".%s", s->key);
            else if (s->kind == EXPR_PATH_INDEX)
                strbuf_appendf(sb, "[%zu]", s->index);
            else
                strbuf_append(sb, "[*]");
        }
        break;
    case EXPR_CALL:
        strbuf_appendf(sb, "%s(", func_names[e->func]);
        for (size_t i = 0; i < e->nargs; i++) {
            strbuf_append(sb, i > 0 ? ", " : "");
            render_expr(sb, e->args[i]);
        }
        strbuf_append(sb, ")");
        break;
    case EXPR_ARITH:
        strbuf_appendf(sb, "(%c ", e->op);
        render_expr(sb, e->left);
        strbuf_append(sb, " ");
        render_expr(sb, e->right);
        strbuf_append(sb, ")");
        break;
    case EXPR_NEGATE:
        strbuf_append(sb, "(neg ");
        render_expr(sb, e->left);
        strbuf_append(sb, ")");
        break;
    }
}

static void render_cond(StrBuf *sb, const Cond *c)
{
    static const char *const ops[] = {
        [EXPR_CMP_EQ] = "==", [EXPR_CMP_NE] = "!=", [EXPR_CMP_LT] = "<",
        [EXPR_CMP_LE] = "<=", [EXPR_CMP_GT] = ">",  [EXPR_CMP_GE] = ">="};
    switch (c->kind) {
    case EXPR_COND_CMP:
        strbuf_appendf(sb, "(%s ", ops[c->op]);
        render_expr(sb, c->left);
        strbuf_append(sb, " ");
        render_expr(sb, c->right);
        break;
    case EXPR_COND_EXISTS:
        strbuf_append(sb, "(exists ");
        render_expr(sb, c->left);
        break;
    case EXPR_COND_NOT:
        strbuf_append(sb, "(not ");
        render_cond(sb, c->a);
        break;
    case EXPR_COND_AND:
    case EXPR_COND_OR:
        strbuf_append(sb, c->kind == EXPR_COND_AND ? "(and " : "(or ");
        render_cond(sb, c->a);
        strbuf_append(sb, " ");
        render_cond(sb, c->b);
        break;
    }
    strbuf_append(sb, ")");
}

static char *parse_and_render_expr(const char *text)
{
    PjError err = {0};
    Expr *e = NULL;
    int r = expr_parse(text, TEXT_LINE, TEXT_COLUMN, &e, &err, NULL, NULL);
    cr_assert_eq(r, 0, "expr_parse(\"%s\") failed: %s", text, err.message);
    StrBuf sb = {0};
    render_expr(&sb, e);
    expr_free(e);
    return strbuf_take(&sb);
}

static char *parse_and_render_cond(const char *text)
{
    PjError err = {0};
    Cond *c = NULL;
    int r = cond_parse(text, TEXT_LINE, TEXT_COLUMN, &c, &err, NULL, NULL);
    cr_assert_eq(r, 0, "cond_parse(\"%s\") failed: %s", text, err.message);
    StrBuf sb = {0};
    render_cond(&sb, c);
    cond_free(c);
    return strbuf_take(&sb);
}

/* ---------------------------------------------------------------- parsing expressions */

typedef struct {
    const char *text;
    const char *tree;
} TreeCase;

Test(expr, parses_good_expressions)
{
    static const TreeCase cases[] = {
        {"$.payload.items[0].qty", "$.payload.items[0].qty"},
        {"$.payload.items[*].qty", "$.payload.items[*].qty"},
        {"$.payload.order-id", "$.payload.order-id"},
        /* '-' is a name character, so a subtraction right after a name needs a space */
        {"$.payload.a-1", "$.payload.a-1"},
        {"$.payload.a - 1", "(- $.payload.a 1)"},
        {"$", "$"},
        {"$.entry_id", "$.entry_id"},
        {"  $.type\t", "$.type"},
        {"42", "42"},
        {"1.50", "1.50"},
        {"1.5e3", "1.5e3"},
        {".5", ".5"},
        {"'it''s'", "'it''s'"},
        {"''", "''"},
        {"'a, b (c)'", "'a, b (c)'"},
        {"null", "null"},
        {"true", "true"},
        {"false", "false"},
        {"1 + 2 * 3", "(+ 1 (* 2 3))"},
        {"1 * 2 + 3", "(+ (* 1 2) 3)"},
        {"(1 + 2) * 3", "(* (+ 1 2) 3)"},
        {"1 - 2 - 3", "(- (- 1 2) 3)"},
        {"8 / 4 / 2", "(/ (/ 8 4) 2)"},
        {"-$.version * 2", "(* (neg $.version) 2)"},
        {"- - 1", "(neg (neg 1))"},
        {"2*-3", "(* 2 (neg 3))"},
        {"-(1 + 2)", "(neg (+ 1 2))"},
        {"$.payload.a+$.payload.b", "(+ $.payload.a $.payload.b)"},
        {"length($.payload.items)", "length($.payload.items)"},
        {"sum($.payload.items[*].qty)", "sum($.payload.items[*].qty)"},
        {"coalesce($.payload.a, 'x', null)", "coalesce($.payload.a, 'x', null)"},
        {"concat( 'a' ,\t$.type )", "concat('a', $.type)"},
        {"now()", "now()"},
        {"now ( )", "now()"},
        {"lower(upper('x'))", "lower(upper('x'))"},
        {"$.payload.qty * $.payload.unitPrice", "(* $.payload.qty $.payload.unitPrice)"},
        {"length($.payload.items) * 2 + 1", "(+ (* length($.payload.items) 2) 1)"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *tree = parse_and_render_expr(cases[i].text);
        cr_expect_str_eq(tree, cases[i].tree, "\"%s\" parsed as %s, expected %s", cases[i].text,
                         tree, cases[i].tree);
        free(tree);
    }
}

Test(expr, string_literal_unescapes_quotes)
{
    PjError err;
    Expr *e;
    cr_assert_eq(expr_parse("'it''s ''quoted'''", 1, 1, &e, &err, NULL, NULL), 0);
    cr_assert_eq(e->kind, EXPR_LITERAL);
    cr_assert_eq(e->literal.kind, EXPR_VAL_STRING);
    cr_expect_str_eq(e->literal.text, "it's 'quoted'");
    expr_free(e);
}

Test(expr, nodes_remember_text_and_position)
{
    PjError err;
    Expr *e;
    int r = expr_parse("length($.payload.items) + 1", 4, 20, &e, &err, NULL, NULL);
    cr_assert_eq(r, 0, "%s", err.message);
    cr_expect_eq(e->kind, EXPR_ARITH);
    cr_expect_str_eq(e->text, "length($.payload.items) + 1");
    cr_expect_eq(e->line, 4);
    cr_expect_eq(e->column, 20);
    cr_expect_str_eq(e->left->text, "length($.payload.items)");
    cr_expect_str_eq(e->left->args[0]->text, "$.payload.items");
    cr_expect_eq(e->left->args[0]->column, 27);
    cr_expect_str_eq(e->right->text, "1");
    cr_expect_eq(e->right->column, 46);
    expr_free(e);
}

/* Criterion hands parameters to a freshly started test process, where pointers into the
 * parent's string literals are not valid: the strings travel inside the struct. */
typedef struct {
    char text[64];
    int offset; /* byte offset of the offending token in text */
    char message[192];
} ErrorCase;

#define UNKNOWN_FIELD(name)                                                                        \
    "unknown event field \"" name "\": expected one of type, event_id, aggregate_id, "             \
    "aggregate_type, version, occurred_at, payload, metadata, stream, entry_id"
#define EXPECTED_VALUE "expected a path, literal, function call or '('"

ParameterizedTestParameters(expr, rejects_bad_expressions)
{
    static ErrorCase cases[] = {
        {"foo(1)", 0,
         "unknown function \"foo\": expected one of length, sum, coalesce, lower, upper, concat, "
         "now"},
        {"1 + Length($.type)", 4,
         "unknown function \"Length\": expected one of length, sum, coalesce, lower, upper, "
         "concat, now"},
        {"length(1, 2)", 0, "function \"length\" takes 1 argument, got 2"},
        {"sum()", 0, "function \"sum\" takes 1 argument, got 0"},
        {"1 + lower('a', 'b')", 4, "function \"lower\" takes 1 argument, got 2"},
        {"upper()", 0, "function \"upper\" takes 1 argument, got 0"},
        {"coalesce()", 0, "function \"coalesce\" takes at least 1 argument, got 0"},
        {"concat()", 0, "function \"concat\" takes at least 1 argument, got 0"},
        {"now(1)", 0, "function \"now\" takes no arguments, got 1"},
        {"length", 6, "expected '(' after function name \"length\""},
        {"length($.payload.items", 22, "expected ')' after function arguments"},
        {"length($.payload.items 1)", 23, "expected ')' after function arguments"},
        {"concat('a'; 'b')", 10, "expected ')' after function arguments"},
        {"$.", 2, "expected a field name after '.'"},
        {"$.payload.", 10, "expected a field name after '.'"},
        {"$.payload..x", 10, "expected a field name after '.'"},
        {"'abc", 0, "unterminated string literal"},
        {"concat('a', 'b)", 12, "unterminated string literal"},
        {"'it''s", 0, "unterminated string literal"},
        {"$.type x", 7, "unexpected 'x' after expression"},
        {"$.type == 'a'", 7, "unexpected '==' after expression"},
        {"1 2", 2, "unexpected '2' after expression"},
        {"(1 + 2))", 7, "unexpected ')' after expression"},
        {"1 \xc3\xa9", 2, "unexpected '\xc3\xa9' after expression"},
        {"$.foo", 2, UNKNOWN_FIELD("foo")},
        {"1 + $.Type", 6, UNKNOWN_FIELD("Type")},
        {"$.payloads.x", 2, UNKNOWN_FIELD("payloads")},
        {"$[0]", 1, "expected '.' and an event field after '$'"},
        {"$payload", 1, "expected '.' or '[' after '$'"},
        {"$.payload.items[", 16, "expected an array index or '*' after '['"},
        {"$.payload.items[-1]", 16, "expected an array index or '*' after '['"},
        {"$.payload.items[1", 17, "expected ']' after array index"},
        {"$.payload.items[*", 17, "expected ']' after array index"},
        {"$.payload.items[99999999999999999999999]", 16, "array index is too large"},
        {"(1 + 2", 6, "expected ')' after expression in parentheses"},
        {"", 0, "unexpected end of input: " EXPECTED_VALUE},
        {"   ", 3, "unexpected end of input: " EXPECTED_VALUE},
        {"1 +", 3, "unexpected end of input: " EXPECTED_VALUE},
        {"1 + * 2", 4, "unexpected '*': " EXPECTED_VALUE},
        {"concat(, 'a')", 7, "unexpected ',': " EXPECTED_VALUE},
        {"1 + and", 4, "unexpected \"and\": " EXPECTED_VALUE},
        {"pending", 0,
         "unexpected word \"pending\": string literals are written in single quotes, as in "
         "'pending'"},
        {"NULL", 0, "unexpected word \"NULL\": keywords are lower case (null)"},
        {"1 + True", 4, "unexpected word \"True\": keywords are lower case (true)"},
        {"1e999", 0, "number \"1e999\" is out of range"},
    };
    return cr_make_param_array(ErrorCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(ErrorCase *c, expr, rejects_bad_expressions)
{
    PjError err = {0};
    Expr *e = (Expr *)&err; /* must be reset to NULL on failure */
    int line = -1, column = -1;
    int r = expr_parse(c->text, TEXT_LINE, TEXT_COLUMN, &e, &err, &line, &column);
    cr_assert_eq(r, -PJ_EINVAL, "\"%s\" should not parse", c->text);
    cr_expect_null(e);
    cr_expect_eq(err.code, PJ_EINVAL);
    cr_expect_str_eq(err.message, c->message, "\"%s\": got message %s", c->text, err.message);
    cr_expect_eq(line, TEXT_LINE);
    cr_expect_eq(column, TEXT_COLUMN + c->offset, "\"%s\": got column %d, expected %d", c->text,
                 column, TEXT_COLUMN + c->offset);
}

Test(expr, error_position_outputs_are_optional)
{
    PjError err;
    Expr *e;
    cr_expect_eq(expr_parse("$.nope", 1, 1, &e, &err, NULL, NULL), -PJ_EINVAL);
    Cond *c;
    cr_expect_eq(cond_parse("$.type", 1, 1, &c, NULL, NULL, NULL), -PJ_EINVAL);
}

Test(expr, unknown_column_reports_zero)
{
    PjError err;
    Expr *e;
    int line = -1, column = -1;
    cr_assert_eq(expr_parse("1 +", 0, 0, &e, &err, &line, &column), -PJ_EINVAL);
    cr_expect_eq(line, 0);
    cr_expect_eq(column, 0);
}

static void expect_too_deep(const char *open, const char *middle, const char *close, int n)
{
    StrBuf sb = {0};
    for (int i = 0; i < n; i++)
        strbuf_append(&sb, open);
    strbuf_append(&sb, middle);
    for (int i = 0; i < n; i++)
        strbuf_append(&sb, close);
    PjError err = {0};
    Expr *e;
    int r = expr_parse(sb.buf, 1, 1, &e, &err, NULL, NULL);
    cr_expect_eq(r, -PJ_EINVAL, "%d levels of \"%s\" should be refused", n, open);
    cr_expect(strstr(err.message, "nested too deeply") != NULL, "got: %s", err.message);
    strbuf_done(&sb);
}

Test(expr, refuses_unbounded_nesting)
{
    expect_too_deep("(", "1", ")", 5000);
    expect_too_deep("-", "1", "", 5000);
    expect_too_deep("lower(", "'a'", ")", 5000);
    expect_too_deep("1 + ", "1", "", 5000);

    PjError err;
    Cond *c;
    StrBuf sb = {0};
    for (int i = 0; i < 5000; i++)
        strbuf_append(&sb, "not ");
    strbuf_append(&sb, "$.version == 1");
    cr_expect_eq(cond_parse(sb.buf, 1, 1, &c, &err, NULL, NULL), -PJ_EINVAL);
    strbuf_done(&sb);
}

Test(expr, accepts_reasonable_nesting)
{
    char *tree = parse_and_render_expr("((((((((((1))))))))))+-(-(2))");
    cr_expect_str_eq(tree, "(+ 1 (neg (neg 2)))");
    free(tree);
}

/* ---------------------------------------------------------------- parsing conditions */

Test(cond, parses_good_conditions)
{
    static const TreeCase cases[] = {
        {"$.type == 'a'", "(== $.type 'a')"},
        {"$.version != 1", "(!= $.version 1)"},
        {"$.version < 1", "(< $.version 1)"},
        {"$.version <= 1", "(<= $.version 1)"},
        {"$.version > 1", "(> $.version 1)"},
        {"$.version >= 1", "(>= $.version 1)"},
        {"$.version>=1", "(>= $.version 1)"},
        {"$.version == 1 and $.type == 'a' or $.stream == 's'",
         "(or (and (== $.version 1) (== $.type 'a')) (== $.stream 's'))"},
        {"$.version == 1 or $.type == 'a' and $.stream == 's'",
         "(or (== $.version 1) (and (== $.type 'a') (== $.stream 's')))"},
        {"not $.version == 1 and $.type == 'a'", "(and (not (== $.version 1)) (== $.type 'a'))"},
        {"not ($.version == 1 or $.type == 'a')", "(not (or (== $.version 1) (== $.type 'a')))"},
        {"not not exists($.type)", "(not (not (exists $.type)))"},
        {"exists($.payload.x)", "(exists $.payload.x)"},
        {"exists ( $.payload.items[*].qty )", "(exists $.payload.items[*].qty)"},
        {"($.version + 1) * 2 > 3", "(> (* (+ $.version 1) 2) 3)"},
        {"(($.version == 1))", "(== $.version 1)"},
        {"(($.version + 1) > 2 and (exists($.type)))",
         "(and (> (+ $.version 1) 2) (exists $.type))"},
        {"length($.payload.items) >= 3", "(>= length($.payload.items) 3)"},
        {"$.payload.reason == 'fraud' and $.payload.amount >= 100",
         "(and (== $.payload.reason 'fraud') (>= $.payload.amount 100))"},
        {"$.payload.android == 'x' and $.payload.notes == 'y'",
         "(and (== $.payload.android 'x') (== $.payload.notes 'y'))"},
        {"$.payload.s == 'a and b'", "(== $.payload.s 'a and b')"},
        {"null == $.type", "(== null $.type)"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *tree = parse_and_render_cond(cases[i].text);
        cr_expect_str_eq(tree, cases[i].tree, "\"%s\" parsed as %s, expected %s", cases[i].text,
                         tree, cases[i].tree);
        free(tree);
    }
}

#define EXPECTED_CMP "expected a comparison operator (==, !=, <, <=, >, >=) after "

ParameterizedTestParameters(cond, rejects_bad_conditions)
{
    static ErrorCase cases[] = {
        {"$.version = 3", 10, "unexpected '=': use '==' to compare"},
        {"$.version", 9, EXPECTED_CMP "\"$.version\""},
        {"$.version 3", 10, EXPECTED_CMP "\"$.version\""},
        {"$.type", 6, EXPECTED_CMP "\"$.type\""},
        {"$.version == ", 13, "unexpected end of input: " EXPECTED_VALUE},
        {"($.version == 3", 15, "expected ')' after condition in parentheses"},
        {"($.version + 1 > 2", 18, "expected ')' after condition in parentheses"},
        {"exists $.x", 7, "expected '(' after \"exists\""},
        {"exists('a')", 7, "expected a path after \"exists(\""},
        {"exists($.type", 13, "expected ')' after the path of \"exists\""},
        {"exists($.nope)", 9, UNKNOWN_FIELD("nope")},
        {"$.version == 3 and", 18, "unexpected end of input: " EXPECTED_VALUE},
        {"$.version == 3 && $.type == 'a'", 15, "unexpected '&&' after condition"},
        {"$.version == 3 AND $.type == 'a'", 15, "unexpected 'AND' after condition"},
        {"$.version == 3)", 14, "unexpected ')' after condition"},
        {"not", 3, "unexpected end of input: " EXPECTED_VALUE},
        {"$.type == pending", 10,
         "unexpected word \"pending\": string literals are written in single quotes, as in "
         "'pending'"},
        {"$.type == 'pending", 10, "unterminated string literal"},
        {"", 0, "unexpected end of input: " EXPECTED_VALUE},
        {"$.version == 1 or foo($.type) == 1", 18,
         "unknown function \"foo\": expected one of length, sum, coalesce, lower, upper, concat, "
         "now"},
    };
    return cr_make_param_array(ErrorCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(ErrorCase *c, cond, rejects_bad_conditions)
{
    PjError err = {0};
    Cond *cond = (Cond *)&err; /* must be reset to NULL on failure */
    int line = -1, column = -1;
    int r = cond_parse(c->text, TEXT_LINE, TEXT_COLUMN, &cond, &err, &line, &column);
    cr_assert_eq(r, -PJ_EINVAL, "\"%s\" should not parse", c->text);
    cr_expect_null(cond);
    cr_expect_eq(err.code, PJ_EINVAL);
    cr_expect_str_eq(err.message, c->message, "\"%s\": got message %s", c->text, err.message);
    cr_expect_eq(line, TEXT_LINE);
    cr_expect_eq(column, TEXT_COLUMN + c->offset, "\"%s\": got column %d, expected %d", c->text,
                 column, TEXT_COLUMN + c->offset);
}

Test(cond, nodes_remember_position)
{
    PjError err;
    Cond *c;
    cr_assert_eq(cond_parse("$.version == 1 or exists($.type)", 2, 3, &c, &err, NULL, NULL), 0);
    cr_expect_eq(c->kind, EXPR_COND_OR);
    cr_expect_eq(c->b->kind, EXPR_COND_EXISTS);
    cr_expect_eq(c->b->line, 2);
    cr_expect_eq(c->b->column, 3 + 18);
    cr_expect_eq(c->a->left->column, 3);
    cond_free(c);
}

/* ---------------------------------------------------------------- evaluating expressions */

typedef struct {
    const char *text;
    const char *param; /* what value_to_param gives; NULL for null */
    ValueKind kind;
} EvalCase;

static void check_eval(const json_t *event, const EvalCase *c)
{
    PjError err = {0};
    Expr *e;
    Value v;
    cr_assert_eq(expr_parse(c->text, 1, 1, &e, &err, NULL, NULL), 0, "\"%s\": %s", c->text,
                 err.message);
    int r = expr_eval(e, event, &v, &err);
    cr_expect_eq(r, 0, "\"%s\" failed: %s", c->text, err.message);
    char *param = value_to_param(&v);
    if (c->param == NULL)
        cr_expect_null(param, "\"%s\" gave %s, expected null", c->text, param);
    else if (param == NULL)
        cr_expect_fail("\"%s\" gave null, expected %s", c->text, c->param);
    else
        cr_expect_str_eq(param, c->param, "\"%s\" gave %s, expected %s", c->text, param, c->param);
    cr_expect_eq(v.kind, c->kind, "\"%s\" gave kind %d, expected %d", c->text, v.kind, c->kind);
    free(param);
    value_done(&v);
    expr_free(e);
}

Test(expr, evaluates_against_an_event)
{
    static const EvalCase cases[] = {
        /* paths */
        {"$.type", "order.placed", EXPR_VAL_STRING},
        {"$.version", "3", EXPR_VAL_NUMBER},
        {"$.aggregate_type", NULL, EXPR_VAL_NULL},
        {"$.payload.missing", NULL, EXPR_VAL_NULL},
        {"$.payload.missing.deeper[2]", NULL, EXPR_VAL_NULL},
        {"$.payload.name.first", NULL, EXPR_VAL_NULL},
        {"$.payload.total[0]", NULL, EXPR_VAL_NULL},
        {"$.metadata.userId", "u-7", EXPR_VAL_STRING},
        {"$.metadata.correlationId", NULL, EXPR_VAL_NULL},
        {"$.payload.order-id", "h-1", EXPR_VAL_STRING},
        {"$.payload.items[0].sku", "A", EXPR_VAL_STRING},
        {"$.payload.items[2].sku", "C", EXPR_VAL_STRING},
        {"$.payload.items[3].sku", NULL, EXPR_VAL_NULL},
        {"$.payload.items[0]", "{\"sku\":\"A\",\"qty\":2,\"price\":\"19.99\"}", EXPR_VAL_JSON},
        {"$.payload.total", "{\"amount\":99.99,\"currency\":\"EUR\"}", EXPR_VAL_JSON},
        {"$.payload.total.amount", "99.99", EXPR_VAL_NUMBER},
        {"$.payload.big", "9007199254740993", EXPR_VAL_NUMBER},
        {"$.payload.flag", "true", EXPR_VAL_BOOL},
        {"$.payload.qtyText", "99.99", EXPR_VAL_STRING},
        /* [*] collects, leaving out elements where the path is absent */
        {"$.payload.items[*].qty", "[2,3]", EXPR_VAL_JSON},
        {"$.payload.items[*].sku", "[\"A\",\"B\",\"C\"]", EXPR_VAL_JSON},
        {"$.payload.items[*].note", "[null]", EXPR_VAL_JSON},
        {"$.payload.items[*].missing", "[]", EXPR_VAL_JSON},
        {"$.payload.nested[*].tags[*]", "[\"x\",\"y\",\"z\"]", EXPR_VAL_JSON},
        {"$.payload.nested[*].tags[0]", "[\"x\",\"z\"]", EXPR_VAL_JSON},
        {"$.payload.empty[*]", "[]", EXPR_VAL_JSON},
        {"$.payload.missing[*].qty", NULL, EXPR_VAL_NULL},
        {"$.payload.total[*]", NULL, EXPR_VAL_NULL},
        /* functions */
        {"sum($.payload.items[*].qty)", "5", EXPR_VAL_NUMBER},
        {"sum($.payload.nums)", "3.5", EXPR_VAL_NUMBER},
        {"sum($.payload.empty)", "0", EXPR_VAL_NUMBER},
        {"sum($.payload.missing)", NULL, EXPR_VAL_NULL},
        {"sum($.payload.items[*].missing)", "0", EXPR_VAL_NUMBER},
        {"sum($.payload.qtyText)", "99.99", EXPR_VAL_NUMBER},
        {"length($.payload.items)", "3", EXPR_VAL_NUMBER},
        {"length($.payload.empty)", "0", EXPR_VAL_NUMBER},
        {"length($.payload.total)", "2", EXPR_VAL_NUMBER},
        {"length($.payload.name)", "12", EXPR_VAL_NUMBER},
        {"length($.payload.greek)", "3", EXPR_VAL_NUMBER},
        {"length('')", "0", EXPR_VAL_NUMBER},
        {"length($.payload.missing)", NULL, EXPR_VAL_NULL},
        {"length($.aggregate_type)", NULL, EXPR_VAL_NULL},
        {"coalesce($.payload.missing, $.aggregate_type, 'none')", "none", EXPR_VAL_STRING},
        {"coalesce($.payload.orderId, 'x')", "o-1", EXPR_VAL_STRING},
        {"coalesce($.payload.missing, $.version)", "3", EXPR_VAL_NUMBER},
        {"coalesce(null, $.payload.missing)", NULL, EXPR_VAL_NULL},
        /* coalesce stops at the first non-null: the division is never evaluated */
        {"coalesce($.type, 1 / 0)", "order.placed", EXPR_VAL_STRING},
        {"lower($.payload.status)", "pending", EXPR_VAL_STRING},
        {"upper($.payload.name)", "ADA LOVELACE", EXPR_VAL_STRING},
        {"upper('stra\xc3\x9f"
         "e')",
         "STRA\xc3\x9f"
         "E",
         EXPR_VAL_STRING},
        {"lower($.payload.missing)", NULL, EXPR_VAL_NULL},
        {"lower($.payload.flag)", "true", EXPR_VAL_STRING},
        {"upper(1.5e3)", "1.5E3", EXPR_VAL_STRING},
        {"concat($.payload.customerId, '/', $.payload.missing, $.version)", "C-42/3",
         EXPR_VAL_STRING},
        {"concat($.payload.flag, ' ', $.payload.items[*].qty)", "true [2,3]", EXPR_VAL_STRING},
        {"concat(null)", "", EXPR_VAL_STRING},
        {"concat('a''', 'b')", "a'b", EXPR_VAL_STRING},
        /* literals */
        {"'it''s'", "it's", EXPR_VAL_STRING},
        {"true", "true", EXPR_VAL_BOOL},
        {"false", "false", EXPR_VAL_BOOL},
        {"null", NULL, EXPR_VAL_NULL},
        {"1.50", "1.50", EXPR_VAL_NUMBER},
        /* arithmetic */
        {"1 + 2 * 3", "7", EXPR_VAL_NUMBER},
        {"(1 + 2) * 3", "9", EXPR_VAL_NUMBER},
        {"10 - 4 - 3", "3", EXPR_VAL_NUMBER},
        {"2 * -3", "-6", EXPR_VAL_NUMBER},
        {"-(1 + 2)", "-3", EXPR_VAL_NUMBER},
        {"- -2", "2", EXPR_VAL_NUMBER},
        {"7 / 2", "3.5", EXPR_VAL_NUMBER},
        {"6 / 3", "2", EXPR_VAL_NUMBER},
        {"0 * -1", "0", EXPR_VAL_NUMBER},
        {"0.1 + 0.2", "0.3", EXPR_VAL_NUMBER},
        {"3 * 19.99", "59.97", EXPR_VAL_NUMBER},
        {"1.50 * 1", "1.5", EXPR_VAL_NUMBER},
        {"$.payload.qtyText * 2", "199.98", EXPR_VAL_NUMBER},
        {"$.payload.items[0].price * $.payload.items[0].qty", "39.98", EXPR_VAL_NUMBER},
        {"$.payload.total.amount - 0.99", "99", EXPR_VAL_NUMBER},
        {"$.version * 2 + length($.payload.items)", "9", EXPR_VAL_NUMBER},
        {"1e15 + 1", "1e+15", EXPR_VAL_NUMBER},
        /* arithmetic with null is null */
        {"$.payload.missing + 1", NULL, EXPR_VAL_NULL},
        {"2 * $.aggregate_type", NULL, EXPR_VAL_NULL},
        {"-$.payload.missing", NULL, EXPR_VAL_NULL},
        {"null / 0", NULL, EXPR_VAL_NULL},
        {"($.payload.missing + 1) * 3", NULL, EXPR_VAL_NULL},
    };
    json_t *event = load_json(sample_event_json);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        check_eval(event, &cases[i]);
    json_decref(event);
}

Test(expr, absent_and_null_event_parts_give_null)
{
    static const char *const events[] = {"{}", "{\"payload\": null, \"metadata\": null}",
                                         "{\"payload\": [], \"metadata\": \"x\"}"};
    static const EvalCase cases[] = {
        {"$.payload.x", NULL, EXPR_VAL_NULL},
        {"$.metadata.userId", NULL, EXPR_VAL_NULL},
        {"$.payload.items[0].qty", NULL, EXPR_VAL_NULL},
        {"$.payload.items[*].qty", NULL, EXPR_VAL_NULL},
        {"sum($.payload.items[*].qty)", NULL, EXPR_VAL_NULL},
        {"length($.payload.items)", NULL, EXPR_VAL_NULL},
        {"$.version + 1", NULL, EXPR_VAL_NULL},
        {"coalesce($.type, 'unknown')", "unknown", EXPR_VAL_STRING},
        {"concat($.type, $.stream)", "", EXPR_VAL_STRING},
    };
    for (size_t k = 0; k < ARRAY_SIZE(events); k++) {
        json_t *event = load_json(events[k]);
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
            check_eval(event, &cases[i]);
        json_decref(event);
    }
}

Test(expr, whole_event_path)
{
    json_t *event = load_json("{\"type\": \"t\", \"version\": 1}");
    PjError err;
    Expr *e;
    Value v;
    cr_assert_eq(expr_parse("$", 1, 1, &e, &err, NULL, NULL), 0);
    cr_assert_eq(expr_eval(e, event, &v, &err), 0);
    cr_expect_eq(v.kind, EXPR_VAL_JSON);
    cr_expect(json_equal(v.json, event));
    value_done(&v);
    expr_free(e);
    json_decref(event);
}

typedef struct {
    const char *text;
    const char *message;
} EvalErrorCase;

Test(expr, reports_data_errors)
{
    static const EvalErrorCase cases[] = {
        {"1 / 0", "division by zero"},
        {"$.version / $.payload.zero", "division by zero"},
        {"$.version / (1 - 1)", "division by zero"},
        {"$.payload.word * 2", "cannot multiply \"abc\": not a number"},
        {"$.payload.word + 1", "cannot add \"abc\": not a number"},
        {"1 - $.payload.flag", "cannot subtract true: not a number"},
        {"$.payload.items / 2", "cannot divide an array: not a number"},
        {"$.payload.total + 1", "cannot add an object: not a number"},
        {"' 1' + 1", "cannot add \" 1\": not a number"},
        {"'1 ' + 1", "cannot add \"1 \": not a number"},
        {"'0x10' + 1", "cannot add \"0x10\": not a number"},
        {"'inf' + 1", "cannot add \"inf\": not a number"},
        {"'nan' + 1", "cannot add \"nan\": not a number"},
        {"'' + 1", "cannot add \"\": not a number"},
        {"-$.payload.word", "cannot negate \"abc\": not a number"},
        {"sum($.payload.bad)", "cannot sum \"x\": not a number"},
        {"sum($.payload.word)", "cannot sum \"abc\": not an array of numbers"},
        {"sum($.payload.total)", "cannot sum an object: not an array of numbers"},
        {"length($.version)", "cannot take the length of 3: not a string, array or object"},
        {"length(true)", "cannot take the length of true: not a string, array or object"},
        {"upper($.payload.items)", "function \"upper\" expects a string, got an array"},
        {"lower($.payload.total)", "function \"lower\" expects a string, got an object"},
        /* a null on one side does not hide an error on the other */
        {"$.payload.missing + $.payload.word * 2", "cannot multiply \"abc\": not a number"},
        {"concat('a', 1 / 0)", "division by zero"},
        {"1e308 * 10", "value out of range: overflow"},
    };
    json_t *event = load_json(sample_event_json);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        PjError err = {0};
        Expr *e;
        Value v;
        cr_assert_eq(expr_parse(cases[i].text, 1, 1, &e, &err, NULL, NULL), 0, "\"%s\": %s",
                     cases[i].text, err.message);
        int r = expr_eval(e, event, &v, &err);
        cr_expect_eq(r, -PJ_EPERMANENT, "\"%s\" should fail", cases[i].text);
        cr_expect_eq(err.code, PJ_EPERMANENT);
        cr_expect_str_eq(err.message, cases[i].message, "\"%s\": got %s", cases[i].text,
                         err.message);
        cr_expect_eq(v.kind, EXPR_VAL_NULL, "\"%s\": a failed evaluation leaves null",
                     cases[i].text);
        value_done(&v);
        expr_free(e);
    }
    json_decref(event);
}

Test(expr, long_strings_are_shortened_in_messages)
{
    char text[200];
    memset(text, 'x', sizeof text);
    text[0] = '\'';
    text[sizeof text - 2] = '\'';
    text[sizeof text - 1] = '\0';
    StrBuf sb = {0};
    strbuf_appendf(&sb, "%s * 2", text);
    PjError err;
    Expr *e;
    Value v;
    cr_assert_eq(expr_parse(sb.buf, 1, 1, &e, &err, NULL, NULL), 0);
    cr_assert_eq(expr_eval(e, NULL, &v, &err), -PJ_EPERMANENT);
    cr_expect(strlen(err.message) < 100, "message too long: %s", err.message);
    cr_expect(strstr(err.message, "...\"") != NULL, "no ellipsis: %s", err.message);
    expr_free(e);
    strbuf_done(&sb);
}

/* 2026-01-15T10:30:00.123Z */
static int64_t fixed_clock_ms(void)
{
    return INT64_C(1768473000123);
}

Test(expr, now_reads_the_installed_clock_as_utc_iso8601)
{
    PjError err;
    Expr *e;
    Value v;
    cr_assert_eq(expr_parse("now()", 1, 1, &e, &err, NULL, NULL), 0);
    clock_install(fixed_clock_ms);
    cr_assert_eq(expr_eval(e, NULL, &v, &err), 0);
    clock_install(NULL);
    cr_assert_eq(v.kind, EXPR_VAL_STRING);
    cr_expect_str_eq(v.text, "2026-01-15T10:30:00.123Z");
    value_done(&v);
    cr_assert_eq(expr_eval(e, NULL, &v, &err), 0);
    cr_expect_str_eq(v.text, "1970-01-01T00:00:00.000Z", "no clock installed: the epoch");
    value_done(&v);
    expr_free(e);
}

/* ---------------------------------------------------------------- evaluating conditions */

typedef struct {
    const char *text;
    bool expected;
} CondCase;

Test(cond, evaluates_against_an_event)
{
    static const CondCase cases[] = {
        {"$.type == 'order.placed'", true},
        {"$.type != 'order.placed'", false},
        {"$.version >= 3", true},
        {"$.version > 3", false},
        {"$.version <= 3", true},
        /* numbers compare as numbers, not as text */
        {"$.version < 10", true},
        {"'10' > '9'", true},
        {"'05' == '5'", true},
        {"$.payload.qtyText == 99.99", true},
        {"$.payload.total.amount == $.payload.qtyText", true},
        {"$.payload.items[0].price < 20", true},
        {"3 * 19.99 == 59.97", true},
        /* strings compare bytewise */
        {"'abc' < 'abd'", true},
        {"'b' > 'a'", true},
        {"'B' > 'a'", false},
        {"$.payload.reason == 'it''s fraud'", true},
        {"$.payload.word == 1", false},
        {"$.payload.word != 1", true},
        {"$.payload.word < 1", false},
        /* bools */
        {"$.payload.flag == true", true},
        {"$.payload.flag != false", true},
        {"$.payload.flag == 'true'", false},
        {"$.payload.flag > false", false},
        /* null equals only null and has no order */
        {"$.aggregate_type == null", true},
        {"$.payload.missing == null", true},
        {"$.payload.missing == $.aggregate_type", true},
        {"$.payload.missing != 1", true},
        {"$.payload.missing == 1", false},
        {"$.payload.missing < 1", false},
        {"$.payload.missing >= 1", false},
        {"$.type != null", true},
        {"$.payload.missing + 1 == null", true},
        /* arrays and objects compare by value */
        {"$.payload.total == $.payload.total", true},
        {"$.payload.items[*].qty == $.payload.items[*].qty", true},
        {"$.payload.total != $.payload.items", true},
        {"$.payload.total == 'x'", false},
        {"$.payload.empty == $.payload.missing", false},
        {"$.payload.empty != $.payload.missing", true},
        /* exists */
        {"exists($.payload.orderId)", true},
        {"exists($.payload.missing)", false},
        {"exists($.aggregate_type)", false},
        {"exists($.payload.empty)", true},
        {"exists($.payload.items[*].qty)", true},
        {"exists($.payload.items[*].note)", false},
        {"exists($.payload.items[*].missing)", false},
        {"exists($.payload.empty[*])", false},
        {"exists($.payload.missing[*])", false},
        {"exists($)", true},
        /* logic and precedence */
        {"not exists($.payload.missing)", true},
        {"not not $.version == 3", true},
        {"$.version == 1 or $.version == 3", true},
        {"$.version == 3 and $.type == 'x'", false},
        {"$.version == 3 or $.version == 1 and $.type == 'x'", true},
        {"($.version == 3 or $.version == 1) and $.type == 'x'", false},
        {"not $.version == 1 and $.version == 3", true},
        {"not ($.version == 3 and $.type == 'x')", true},
        {"($.version + 1) * 2 == 8", true},
        {"$.version + 1 * 2 == 5", true},
        {"length($.payload.items) >= 3 and sum($.payload.items[*].qty) == 5", true},
        {"lower($.payload.status) == 'pending'", true},
        {"$.payload.reason == 'fraud' and $.payload.amount >= 100", false},
        /* the right side of and/or is not evaluated once the left decides */
        {"$.version == 1 and $.payload.word * 2 > 1", false},
        {"$.version == 3 or $.payload.word * 2 > 1", true},
    };
    json_t *event = load_json(sample_event_json);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        PjError err = {0};
        Cond *c;
        bool got = !cases[i].expected;
        cr_assert_eq(cond_parse(cases[i].text, 1, 1, &c, &err, NULL, NULL), 0, "\"%s\": %s",
                     cases[i].text, err.message);
        int r = cond_eval(c, event, &got, &err);
        cr_expect_eq(r, 0, "\"%s\" failed: %s", cases[i].text, err.message);
        cr_expect_eq(got, cases[i].expected, "\"%s\" gave %s", cases[i].text,
                     got ? "true" : "false");
        cond_free(c);
    }
    json_decref(event);
}

Test(cond, reports_data_errors)
{
    static const EvalErrorCase cases[] = {
        {"$.payload.word * 2 > 1", "cannot multiply \"abc\": not a number"},
        {"$.payload.items < 2", "cannot order an array: arrays and objects compare only with == "
                                "and !="},
        {"1 >= $.payload.total", "cannot order an object: arrays and objects compare only with == "
                                 "and !="},
        {"not 1 / 0 == 1", "division by zero"},
        {"$.version == 3 and $.version / 0 == 1", "division by zero"},
    };
    json_t *event = load_json(sample_event_json);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        PjError err = {0};
        Cond *c;
        bool got = true;
        cr_assert_eq(cond_parse(cases[i].text, 1, 1, &c, &err, NULL, NULL), 0, "\"%s\": %s",
                     cases[i].text, err.message);
        cr_expect_eq(cond_eval(c, event, &got, &err), -PJ_EPERMANENT, "\"%s\" should fail",
                     cases[i].text);
        cr_expect_str_eq(err.message, cases[i].message, "\"%s\": got %s", cases[i].text,
                         err.message);
        cr_expect_not(got, "\"%s\": a failed condition reads as false", cases[i].text);
        cond_free(c);
    }
    json_decref(event);
}

/* ---------------------------------------------------------------- values */

typedef struct {
    const char *json;
    ValueKind kind;
    const char *param;
} FromJsonCase;

Test(value, from_json_keeps_spelling)
{
    static const FromJsonCase cases[] = {
        {"42", EXPR_VAL_NUMBER, "42"},
        {"-7", EXPR_VAL_NUMBER, "-7"},
        {"0", EXPR_VAL_NUMBER, "0"},
        {"9223372036854775807", EXPR_VAL_NUMBER, "9223372036854775807"},
        {"99.99", EXPR_VAL_NUMBER, "99.99"},
        {"0.1", EXPR_VAL_NUMBER, "0.1"},
        {"100.0", EXPR_VAL_NUMBER, "100"},
        {"1e300", EXPR_VAL_NUMBER, "1e+300"},
        {"0.3333333333333333", EXPR_VAL_NUMBER, "0.3333333333333333"},
        {"0.30000000000000004", EXPR_VAL_NUMBER, "0.30000000000000004"},
        {"\"x y\"", EXPR_VAL_STRING, "x y"},
        {"\"\"", EXPR_VAL_STRING, ""},
        {"true", EXPR_VAL_BOOL, "true"},
        {"false", EXPR_VAL_BOOL, "false"},
        {"null", EXPR_VAL_NULL, NULL},
        {"[1, 2]", EXPR_VAL_JSON, "[1,2]"},
        {"{\"a\": [1, \"b\"]}", EXPR_VAL_JSON, "{\"a\":[1,\"b\"]}"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        json_t *j = load_json(cases[i].json);
        Value v;
        double x;
        value_from_json(j, &v);
        cr_expect_eq(v.kind, cases[i].kind, "%s: kind %d", cases[i].json, v.kind);
        char *param = value_to_param(&v);
        if (cases[i].param == NULL)
            cr_expect_null(param, "%s gave %s", cases[i].json, param);
        else
            cr_expect_str_eq(param, cases[i].param, "%s gave %s", cases[i].json, param);
        if (json_is_real(j))
            cr_expect(strtod(v.text, NULL) == json_real_value(j) && v.number == json_real_value(j),
                      "%s does not read back from %s", cases[i].json, v.text);
        cr_expect_eq(value_as_number(&v, &x), json_is_number(j), "%s", cases[i].json);
        free(param);
        value_done(&v);
        json_decref(j);
    }
}

Test(value, json_params_are_compact_json)
{
    /* Without reals the text is exactly what json_dumps writes; reals are spelled shortest
     * (jansson would write 99.989999999999995) and still read back as the same document. */
    static const char *const docs[] = {
        "[]",
        "{}",
        "{\"a\": [1, -2, true, false, null], \"b\": {\"c\": \"d\"}}",
        "[\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001f\\u007fÃ©\"]",
        "{\"k\\\"ey\\n\": \"\", \"Î±\": [[], {}]}",
        "{\"amount\": 99.99, \"tiny\": 1e-300, \"third\": 0.3333333333333333, \"n\": [0.1]}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(docs); i++) {
        json_t *j = load_json(docs[i]);
        Value v;
        value_from_json(j, &v);
        char *param = value_to_param(&v);
        char *reference = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        if (strstr(docs[i], ".") == NULL && strstr(docs[i], "e-") == NULL)
            cr_expect_str_eq(param, reference, "%s", docs[i]);
        json_t *back = load_json(param);
        cr_expect(json_equal(back, j), "%s came back as %s", docs[i], param);
        cr_expect(strstr(param, ": ") == NULL && strstr(param, ", ") == NULL, "%s", param);
        json_decref(back);
        free(reference);
        free(param);
        value_done(&v);
        json_decref(j);
    }
    json_t *money = load_json("{\"amount\": 99.99, \"n\": [0.1, 1e-300]}");
    Value v;
    value_from_json(money, &v);
    char *param = value_to_param(&v);
    cr_expect_str_eq(param, "{\"amount\":99.99,\"n\":[0.1,1e-300]}");
    free(param);
    value_done(&v);
    json_decref(money);
}

Test(value, from_absent_json_is_null)
{
    Value v = {.kind = EXPR_VAL_STRING};
    value_from_json(NULL, &v);
    cr_expect_eq(v.kind, EXPR_VAL_NULL);
    cr_expect_null(value_to_param(&v));
    value_done(&v);
}

typedef struct {
    const char *text;
    bool is_number;
    double number;
} NumericCase;

Test(value, strings_that_spell_numbers)
{
    static const NumericCase cases[] = {
        {"99.99", true, 99.99}, {"-3.5e2", true, -350}, {"0", true, 0},    {"+4", true, 4},
        {".5", true, 0.5},      {"5.", true, 5},        {"", false, 0},    {" 1", false, 0},
        {"1 ", false, 0},       {"0x10", false, 0},     {"inf", false, 0}, {"-Infinity", false, 0},
        {"nan", false, 0},      {"1e999", false, 0},    {"1,5", false, 0}, {"e5", false, 0},
        {"-", false, 0},        {"1e", false, 0},       {"abc", false, 0}, {"1-2", false, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        Value v = {.kind = EXPR_VAL_STRING, .text = (char *)(uintptr_t)cases[i].text};
        double x = -12345;
        bool got = value_as_number(&v, &x);
        cr_expect_eq(got, cases[i].is_number, "\"%s\"", cases[i].text);
        if (got)
            cr_expect_eq(x, cases[i].number, "\"%s\" gave %g", cases[i].text, x);
    }
    Value b = {.kind = EXPR_VAL_BOOL, .boolean = true};
    double x;
    cr_expect_not(value_as_number(&b, &x));
}

Test(value, copy_is_independent)
{
    json_t *arr = load_json("[1, 2]");
    Value s = {.kind = EXPR_VAL_STRING, .text = xstrdup("abc")};
    Value j = {.kind = EXPR_VAL_JSON, .json = arr};
    Value s2, j2;
    value_copy(&s, &s2);
    value_copy(&j, &j2);
    cr_expect_neq(s2.text, s.text);
    cr_expect_str_eq(s2.text, "abc");
    cr_expect_eq(j2.json, arr);
    cr_expect_eq(arr->refcount, 2);
    value_done(&s);
    value_done(&j);
    cr_expect_str_eq(s2.text, "abc");
    cr_expect_eq(json_array_size(j2.json), 2);
    value_done(&s2);
    value_done(&j2);
    cr_expect_eq(s2.kind, EXPR_VAL_NULL);
}

/* ---------------------------------------------------------------- analysis */

typedef struct {
    const char *text;
    bool expected;
} BoolCase;

Test(expr, looks_like_expression)
{
    static const BoolCase cases[] = {
        {"$.payload.x", true}, {"$", true},      {"$[0]", true},
        {"length($.a)", true}, {"now()", true},  {"(1)", true},
        {"x(y", true},         {"_f(", true},    {"cost $.payload.x", true},
        {"pending", false},    {"US$ 5", false}, {"$5", false},
        {"f (x)", false},      {"", false},      {"1(2)", false},
        {"a.b(c)", false},     {"-5", false},    {"it's (not) one", false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        cr_expect_eq(expr_looks_like_expression(cases[i].text), cases[i].expected, "\"%s\"",
                     cases[i].text);
}

Test(expr, literal_from_yaml)
{
    Expr *e = expr_new_literal("5", false, 3, 9);
    Expr *n = expr_new_literal("null", true, 4, 2);
    Value v;
    double x;
    cr_expect_eq(e->kind, EXPR_LITERAL);
    cr_expect_eq(e->literal.kind, EXPR_VAL_STRING);
    cr_expect(value_as_number(&e->literal, &x) && x == 5);
    cr_expect_eq(e->line, 3);
    cr_expect_eq(e->column, 9);
    cr_expect_str_eq(e->text, "5");
    cr_expect_eq(expr_eval(e, NULL, &v, NULL), 0);
    cr_expect_str_eq(v.text, "5");
    value_done(&v);
    cr_expect_eq(n->literal.kind, EXPR_VAL_NULL);
    cr_expect_eq(expr_eval(n, NULL, &v, NULL), 0);
    cr_expect_eq(v.kind, EXPR_VAL_NULL);
    cr_expect_null(expr_free(e));
    cr_expect_null(expr_free(n));
    cr_expect_null(expr_free(NULL));
    cr_expect_null(cond_free(NULL));
}
