/* expr_parse.c - the grammar of expr.h: text -> expression and condition trees, with the
 * column of the offending token in every error. A parse either returns a whole tree or
 * frees everything it built; nesting is bounded by EXPR_DEPTH_MAX (expr_scan.c).
 */
#include "model/expr.h"
#include "model/expr_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EXPR_EVENT_FIELDS_LIST                                                                     \
    "type, event_id, aggregate_id, aggregate_type, version, occurred_at, payload, metadata, "      \
    "stream, entry_id"
#define EXPR_FUNCS_LIST "length, sum, coalesce, lower, upper, concat, now"

static const char *const expr_event_fields[] = {
    "type",        "event_id", "aggregate_id", "aggregate_type", "version",
    "occurred_at", "payload",  "metadata",     "stream",         "entry_id",
};

typedef struct FuncInfo {
    const char *name;
    ExprFunc func;
    size_t args_min;
    size_t args_max;
} FuncInfo;

static const FuncInfo expr_funcs[] = {
    {"length", EXPR_FUNC_LENGTH, 1, 1},
    {"sum", EXPR_FUNC_SUM, 1, 1},
    {"coalesce", EXPR_FUNC_COALESCE, 1, SIZE_MAX},
    {"lower", EXPR_FUNC_LOWER, 1, 1},
    {"upper", EXPR_FUNC_UPPER, 1, 1},
    {"concat", EXPR_FUNC_CONCAT, 1, SIZE_MAX},
    {"now", EXPR_FUNC_NOW, 0, 0},
};

static Expr *expr_node(ExprKind kind, const ExprParser *p, size_t start)
{
    Expr *e = xcalloc(1, sizeof *e);
    e->kind = kind;
    e->line = p->line;
    e->column = expr_parser_column(p, start);
    return e;
}

/* The node's source text runs from start to the current position. */
static Expr *expr_finish(Expr *e, const ExprParser *p, size_t start)
{
    e->text = xstrndup(p->text + start, p->pos - start);
    return e;
}

/* ---------------------------------------------------------------- parser: expressions */

static Expr *parse_expr(ExprParser *p);

static bool is_event_field(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(expr_event_fields); i++)
        if (strcmp(name, expr_event_fields[i]) == 0)
            return true;
    return false;
}

/* [digits] or [*]; the current character is '['. */
static int parse_path_index(ExprParser *p, PathStep *ret)
{
    p->pos++;
    *ret = (PathStep){.kind = EXPR_PATH_ALL};
    if (expr_peek(p) == '*') {
        p->pos++;
    } else if (expr_peek(p) >= '0' && expr_peek(p) <= '9') {
        size_t start = p->pos, index = 0;
        for (; expr_peek(p) >= '0' && expr_peek(p) <= '9'; p->pos++) {
            size_t d = (size_t)(expr_peek(p) - '0');
            if (index > (SIZE_MAX - d) / 10) {
                expr_parser_fail(p, start, "array index is too large");
                return -PJ_EINVAL;
            }
            index = index * 10 + d;
        }
        *ret = (PathStep){.kind = EXPR_PATH_INDEX, .index = index};
    } else {
        expr_parser_fail(p, p->pos, "expected an array index or '*' after '['");
        return -PJ_EINVAL;
    }
    if (expr_peek(p) != ']') {
        expr_parser_fail(p, p->pos, "expected ']' after array index");
        return -PJ_EINVAL;
    }
    p->pos++;
    return 0;
}

/* One step: .name or [n] or [*]; the first step must name a field of the event. */
static int parse_path_step(ExprParser *p, bool first, PathStep *ret)
{
    if (expr_peek(p) == '[') {
        if (first) {
            expr_parser_fail(p, p->pos, "expected '.' and an event field after '$'");
            return -PJ_EINVAL;
        }
        return parse_path_index(p, ret);
    }
    p->pos++; /* '.' */
    size_t n = strspn(p->text + p->pos, EXPR_NAME_CHARS "-");
    if (n == 0) {
        expr_parser_fail(p, p->pos, "expected a field name after '.'");
        return -PJ_EINVAL;
    }
    char *key = xstrndup(p->text + p->pos, n);
    if (first && !is_event_field(key)) {
        expr_parser_fail(p, p->pos, "unknown event field \"%s\": expected one of %s", key,
                         EXPR_EVENT_FIELDS_LIST);
        free(key);
        return -PJ_EINVAL;
    }
    p->pos += n;
    *ret = (PathStep){.kind = EXPR_PATH_KEY, .key = key};
    return 0;
}

static Expr *parse_path(ExprParser *p)
{
    size_t start = p->pos, cap = 0;
    Expr *e = expr_node(EXPR_PATH, p, start);
    p->pos++; /* '$' */
    if (strchr(EXPR_NAME_CHARS, expr_peek(p)) != NULL && expr_peek(p) != '\0') {
        expr_parser_fail(p, p->pos, "expected '.' or '[' after '$'");
        return expr_free(e);
    }
    while (expr_peek(p) == '.' || expr_peek(p) == '[') {
        PathStep step;
        if (parse_path_step(p, e->nsteps == 0, &step) < 0)
            return expr_free(e);
        xgrow((void **)&e->steps, &cap, e->nsteps + 1, sizeof *e->steps);
        e->steps[e->nsteps++] = step;
    }
    return expr_finish(e, p, start);
}

/* digits ['.' digits] [('e'|'E') ['+'|'-'] digits], kept with its own spelling. */
static Expr *parse_number(ExprParser *p)
{
    size_t start = p->pos;
    const char *s = p->text + start;
    size_t n = strspn(s, EXPR_DIGITS);
    if (s[n] == '.')
        n += 1 + strspn(s + n + 1, EXPR_DIGITS);
    if (s[n] == 'e' || s[n] == 'E') {
        size_t m = n + 1 + (s[n + 1] == '+' || s[n + 1] == '-');
        size_t digits = strspn(s + m, EXPR_DIGITS);
        if (digits > 0)
            n = m + digits;
    }
    char *spelling = xstrndup(s, n);
    double x = strtod(spelling, NULL);
    if (!isfinite(x)) {
        expr_parser_fail(p, start, "number \"%s\" is out of range", spelling);
        free(spelling);
        return NULL;
    }
    Expr *e = expr_node(EXPR_LITERAL, p, start);
    e->literal = (Value){.kind = EXPR_VAL_NUMBER, .number = x, .text = spelling};
    p->pos += n;
    return expr_finish(e, p, start);
}

/* 'text' where '' stands for one quote. */
static Expr *parse_string(ExprParser *p)
{
    size_t start = p->pos;
    StrBuf sb = {0};
    p->pos++;
    for (;;) {
        const char *s = p->text + p->pos;
        const char *quote = strchr(s, '\'');
        if (quote == NULL) {
            strbuf_done(&sb);
            return expr_parser_fail(p, start, "unterminated string literal");
        }
        strbuf_appendn(&sb, s, (size_t)(quote - s));
        p->pos += (size_t)(quote - s) + 1;
        if (expr_peek(p) != '\'')
            break;
        strbuf_append(&sb, "'");
        p->pos++;
    }
    Expr *e = expr_node(EXPR_LITERAL, p, start);
    value_set_string(&e->literal, strbuf_take(&sb));
    return expr_finish(e, p, start);
}

static const FuncInfo *func_lookup(const char *name, size_t n)
{
    for (size_t i = 0; i < ARRAY_SIZE(expr_funcs); i++)
        if (strlen(expr_funcs[i].name) == n && memcmp(expr_funcs[i].name, name, n) == 0)
            return &expr_funcs[i];
    return NULL;
}

static Expr *check_arity(ExprParser *p, Expr *e, const FuncInfo *f, size_t start)
{
    size_t n = e->nargs;
    if (n >= f->args_min && n <= f->args_max)
        return expr_finish(e, p, start);
    expr_free(e);
    if (f->args_max == 0)
        return expr_parser_fail(p, start, "function \"%s\" takes no arguments, got %zu", f->name,
                                n);
    if (f->args_min == f->args_max)
        return expr_parser_fail(p, start, "function \"%s\" takes %zu argument%s, got %zu", f->name,
                                f->args_min, f->args_min == 1 ? "" : "s", n);
    return expr_parser_fail(p, start, "function \"%s\" takes at least %zu argument%s, got %zu",
                            f->name, f->args_min, f->args_min == 1 ? "" : "s", n);
}

/* name '(' [expr (',' expr)*] ')'; the current character is '('. */
static Expr *parse_call(ExprParser *p, const FuncInfo *f, size_t start)
{
    Expr *e = expr_node(EXPR_CALL, p, start);
    size_t cap = 0;
    e->func = f->func;
    if (!expr_parser_enter(p))
        return expr_free(e);
    p->pos++;
    expr_skip_space(p);
    if (expr_peek(p) == ')')
        p->pos++;
    else
        for (;;) {
            Expr *arg = parse_expr(p);
            if (arg == NULL)
                return expr_free(e);
            xgrow((void **)&e->args, &cap, e->nargs + 1, sizeof(Expr *));
            e->args[e->nargs++] = arg;
            expr_skip_space(p);
            char c = expr_peek(p);
            p->pos++;
            if (c == ')')
                break;
            if (c != ',') {
                p->pos--;
                expr_free(e);
                return expr_parser_fail(p, p->pos, "expected ')' after function arguments");
            }
        }
    p->depth--;
    return check_arity(p, e, f, start);
}

/* A word that is not a value here; the current position is just after it. */
static Expr *parse_bad_word(ExprParser *p, size_t start, size_t n)
{
    static const char *const keywords[] = {"null", "true", "false"};
    static const char *const cond_words[] = {"and", "or", "not", "exists"};
    const char *w = p->text + start;
    int len = n > 64 ? 64 : (int)n;
    const FuncInfo *f = func_lookup(w, n);
    if (f != NULL)
        return expr_parser_fail(p, p->pos, "expected '(' after function name \"%s\"", f->name);
    for (size_t i = 0; i < ARRAY_SIZE(keywords); i++)
        if (strlen(keywords[i]) == n && strncasecmp(w, keywords[i], n) == 0)
            return expr_parser_fail(p, start,
                                    "unexpected word \"%.*s\": keywords are lower case (%s)", len,
                                    w, keywords[i]);
    for (size_t i = 0; i < ARRAY_SIZE(cond_words); i++)
        if (strlen(cond_words[i]) == n && strncmp(w, cond_words[i], n) == 0)
            return expr_parser_fail(
                p, start, "unexpected \"%s\": expected a path, literal, function call or '('",
                cond_words[i]);
    return expr_parser_fail(
        p, start,
        "unexpected word \"%.*s\": string literals are written in single quotes, "
        "as in '%.*s'",
        len, w, len, w);
}

/* null, true, false, or a function call. */
static Expr *parse_word(ExprParser *p)
{
    size_t start = p->pos, n = expr_word_length(p->text + start);
    const char *w = p->text + start;
    if (expr_at_keyword(p, "null") || expr_at_keyword(p, "true") || expr_at_keyword(p, "false")) {
        Expr *e = expr_node(EXPR_LITERAL, p, start);
        if (w[0] != 'n')
            e->literal = (Value){.kind = EXPR_VAL_BOOL, .boolean = w[0] == 't'};
        p->pos += n;
        return expr_finish(e, p, start);
    }
    p->pos += n;
    expr_skip_space(p);
    if (expr_peek(p) != '(')
        return parse_bad_word(p, start, n);
    const FuncInfo *f = func_lookup(w, n);
    if (f == NULL)
        return expr_parser_fail(p, start, "unknown function \"%.*s\": expected one of %s",
                                n > 64 ? 64 : (int)n, w, EXPR_FUNCS_LIST);
    return parse_call(p, f, start);
}

/* '(' expr ')'; the node keeps the inner expression's text. */
static Expr *parse_group(ExprParser *p)
{
    if (!expr_parser_enter(p))
        return NULL;
    p->pos++;
    Expr *inner = parse_expr(p);
    p->depth--;
    if (inner == NULL)
        return NULL;
    expr_skip_space(p);
    if (expr_peek(p) != ')') {
        expr_free(inner);
        return expr_parser_fail(p, p->pos, "expected ')' after expression in parentheses");
    }
    p->pos++;
    return inner;
}

static Expr *parse_primary(ExprParser *p)
{
    expr_skip_space(p);
    char c = expr_peek(p), next = c != '\0' ? p->text[p->pos + 1] : '\0';
    if (c == '$')
        return parse_path(p);
    if ((c >= '0' && c <= '9') || (c == '.' && next >= '0' && next <= '9'))
        return parse_number(p);
    if (c == '\'')
        return parse_string(p);
    if (c == '(')
        return parse_group(p);
    if (expr_is_name_start(c))
        return parse_word(p);
    if (c == '\0')
        return expr_parser_fail(p, p->pos,
                                "unexpected end of input: expected a path, literal, "
                                "function call or '('");
    return expr_parser_fail(p, p->pos,
                            "unexpected '%.*s': expected a path, literal, function call or '('",
                            expr_token_length(p, p->pos), p->text + p->pos);
}

static Expr *parse_unary(ExprParser *p)
{
    expr_skip_space(p);
    if (expr_peek(p) != '-')
        return parse_primary(p);
    size_t start = p->pos;
    if (!expr_parser_enter(p))
        return NULL;
    p->pos++;
    Expr *operand = parse_unary(p);
    p->depth--;
    if (operand == NULL)
        return NULL;
    Expr *e = expr_node(EXPR_NEGATE, p, start);
    e->left = operand;
    return expr_finish(e, p, start);
}

/* operand (op operand)*, left-associative; each operator deepens the tree by one. */
static Expr *parse_binary(ExprParser *p, const char *ops, Expr *(*operand)(ExprParser *))
{
    expr_skip_space(p);
    size_t start = p->pos;
    int depth = p->depth;
    Expr *left = operand(p);
    if (left == NULL)
        return NULL;
    for (;;) {
        size_t save = p->pos;
        expr_skip_space(p);
        char c = expr_peek(p);
        if (c == '\0' || strchr(ops, c) == NULL) {
            p->pos = save;
            break;
        }
        p->pos++;
        Expr *right = expr_parser_enter(p) ? operand(p) : NULL;
        if (right == NULL) {
            left = expr_free(left);
            break;
        }
        Expr *e = expr_node(EXPR_ARITH, p, start);
        e->op = c;
        e->left = left;
        e->right = right;
        left = expr_finish(e, p, start);
    }
    p->depth = depth;
    return left;
}

static Expr *parse_term(ExprParser *p)
{
    return parse_binary(p, "*/", parse_unary);
}

static Expr *parse_expr(ExprParser *p)
{
    return parse_binary(p, "+-", parse_term);
}

int expr_parse(const char *text, int line, int column, Expr **ret, PjError *err, int *reterr_line,
               int *reterr_column)
{
    ExprParser p;
    expr_parser_init(&p, text, line, column);
    *ret = NULL;
    Expr *e = parse_expr(&p);
    expr_skip_space(&p);
    if (e != NULL && expr_peek(&p) != '\0') {
        e = expr_free(e);
        expr_parser_fail(&p, p.pos, "unexpected '%.*s' after expression",
                         expr_token_length(&p, p.pos), p.text + p.pos);
    }
    if (e == NULL)
        return expr_parser_report(&p, err, reterr_line, reterr_column);
    *ret = e;
    return 0;
}

/* ---------------------------------------------------------------- parser: conditions */

static Cond *parse_disj(ExprParser *p);

static Cond *cond_node(CondKind kind, const ExprParser *p, size_t start)
{
    Cond *c = xcalloc(1, sizeof *c);
    c->kind = kind;
    c->line = p->line;
    c->column = expr_parser_column(p, start);
    return c;
}

/* The comparison operator at the current position and its length, or 0. */
static size_t cmp_op_at(const ExprParser *p, CmpOp *ret)
{
    static const struct {
        const char *text;
        CmpOp op;
    } ops[] = {{"==", EXPR_CMP_EQ}, {"!=", EXPR_CMP_NE}, {"<=", EXPR_CMP_LE},
               {">=", EXPR_CMP_GE}, {"<", EXPR_CMP_LT},  {">", EXPR_CMP_GT}};
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
        size_t n = strlen(ops[i].text);
        if (strncmp(p->text + p->pos, ops[i].text, n) == 0) {
            *ret = ops[i].op;
            return n;
        }
    }
    return 0;
}

/* expr cmp expr */
static Cond *parse_compare(ExprParser *p)
{
    expr_skip_space(p);
    size_t start = p->pos, n;
    CmpOp op;
    Expr *left = parse_expr(p);
    if (left == NULL)
        return NULL;
    expr_skip_space(p);
    if ((n = cmp_op_at(p, &op)) == 0) {
        if (expr_peek(p) == '=')
            expr_parser_fail(p, p->pos, "unexpected '=': use '==' to compare");
        else
            expr_parser_fail(
                p, p->pos, "expected a comparison operator (==, !=, <, <=, >, >=) after \"%.60s\"",
                left->text);
        expr_free(left);
        return NULL;
    }
    p->pos += n;
    Expr *right = parse_expr(p);
    if (right == NULL) {
        expr_free(left);
        return NULL;
    }
    Cond *c = cond_node(EXPR_COND_CMP, p, start);
    c->op = op;
    c->left = left;
    c->right = right;
    return c;
}

/* exists '(' path ')'; the current word is "exists". */
static Cond *parse_exists(ExprParser *p)
{
    size_t start = p->pos;
    p->pos += strlen("exists");
    expr_skip_space(p);
    if (expr_peek(p) != '(')
        return expr_parser_fail(p, p->pos, "expected '(' after \"exists\"");
    p->pos++;
    expr_skip_space(p);
    if (expr_peek(p) != '$')
        return expr_parser_fail(p, p->pos, "expected a path after \"exists(\"");
    Expr *path = parse_path(p);
    if (path == NULL)
        return NULL;
    expr_skip_space(p);
    if (expr_peek(p) != ')') {
        expr_free(path);
        return expr_parser_fail(p, p->pos, "expected ')' after the path of \"exists\"");
    }
    p->pos++;
    Cond *c = cond_node(EXPR_COND_EXISTS, p, start);
    c->left = path;
    return c;
}

/* '(' cond ')' */
static Cond *parse_cond_group(ExprParser *p)
{
    if (!expr_parser_enter(p))
        return NULL;
    p->pos++;
    Cond *inner = parse_disj(p);
    p->depth--;
    if (inner == NULL)
        return NULL;
    expr_skip_space(p);
    if (expr_peek(p) != ')') {
        cond_free(inner);
        return expr_parser_fail(p, p->pos, "expected ')' after condition in parentheses");
    }
    p->pos++;
    return inner;
}

/* '(' opens either a condition, "($.a == 1 or $.b == 2)", or an arithmetic operand,
 * "($.a + 1) > 2". Try the comparison first; when neither reading parses, report the error
 * of the one that got further, which is the one the author most likely meant. */
static Cond *parse_paren(ExprParser *p)
{
    ExprParser saved = *p;
    Cond *c = parse_compare(p);
    if (c != NULL)
        return c;
    ExprParser as_compare = *p;
    *p = saved;
    c = parse_cond_group(p);
    if (c == NULL && as_compare.err_pos > p->err_pos)
        *p = as_compare;
    return c;
}

/* 'not' neg | '(' cond ')' | exists(path) | expr cmp expr */
static Cond *parse_neg(ExprParser *p)
{
    expr_skip_space(p);
    size_t start = p->pos;
    if (expr_at_keyword(p, "not")) {
        if (!expr_parser_enter(p))
            return NULL;
        p->pos += strlen("not");
        Cond *inner = parse_neg(p);
        p->depth--;
        if (inner == NULL)
            return NULL;
        Cond *c = cond_node(EXPR_COND_NOT, p, start);
        c->a = inner;
        return c;
    }
    if (expr_at_keyword(p, "exists"))
        return parse_exists(p);
    if (expr_peek(p) == '(')
        return parse_paren(p);
    return parse_compare(p);
}

/* operand (kw operand)*, left-associative. */
static Cond *parse_logic(ExprParser *p, const char *kw, CondKind kind,
                         Cond *(*operand)(ExprParser *))
{
    expr_skip_space(p);
    size_t start = p->pos;
    int depth = p->depth;
    Cond *left = operand(p);
    if (left == NULL)
        return NULL;
    for (;;) {
        size_t save = p->pos;
        expr_skip_space(p);
        if (!expr_at_keyword(p, kw)) {
            p->pos = save;
            break;
        }
        p->pos += strlen(kw);
        Cond *right = expr_parser_enter(p) ? operand(p) : NULL;
        if (right == NULL) {
            left = cond_free(left);
            break;
        }
        Cond *c = cond_node(kind, p, start);
        c->a = left;
        c->b = right;
        left = c;
    }
    p->depth = depth;
    return left;
}

static Cond *parse_conj(ExprParser *p)
{
    return parse_logic(p, "and", EXPR_COND_AND, parse_neg);
}

static Cond *parse_disj(ExprParser *p)
{
    return parse_logic(p, "or", EXPR_COND_OR, parse_conj);
}

int cond_parse(const char *text, int line, int column, Cond **ret, PjError *err, int *reterr_line,
               int *reterr_column)
{
    ExprParser p;
    expr_parser_init(&p, text, line, column);
    *ret = NULL;
    Cond *c = parse_disj(&p);
    expr_skip_space(&p);
    if (c != NULL && expr_peek(&p) != '\0') {
        c = cond_free(c);
        expr_parser_fail(&p, p.pos, "unexpected '%.*s' after condition",
                         expr_token_length(&p, p.pos), p.text + p.pos);
    }
    if (c == NULL)
        return expr_parser_report(&p, err, reterr_line, reterr_column);
    *ret = c;
    return 0;
}
