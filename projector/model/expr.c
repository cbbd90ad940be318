/* expr.c - the value language of read models: values, the parser that turns paths, literals,
 * function calls, arithmetic and `when:` conditions into trees, and the evaluator that runs
 * those trees against one normalized event.
 * Pure: no I/O, no state beyond the trees. A parse either returns a whole tree or frees
 * everything it built; an evaluation either fills its result or leaves it null.
 */
#include "model/expr.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"

/* Bounds how deeply parentheses, calls, unary minus and operator chains may nest, so that
 * parsing, evaluating and freeing a tree from a YAML file cannot exhaust the stack. */
#define EXPR_DEPTH_MAX 200

#define EXPR_NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
#define EXPR_DIGITS "0123456789"
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
    {"length", FUNC_LENGTH, 1, 1},
    {"sum", FUNC_SUM, 1, 1},
    {"coalesce", FUNC_COALESCE, 1, SIZE_MAX},
    {"lower", FUNC_LOWER, 1, 1},
    {"upper", FUNC_UPPER, 1, 1},
    {"concat", FUNC_CONCAT, 1, SIZE_MAX},
    {"now", FUNC_NOW, 0, 0},
};

/* ---------------------------------------------------------------- values */

/* jansson's reading API is not const-correct (object iteration) and keeps the reference
 * count inside the node; neither changes the JSON value that a const pointer promises. */
static json_t *json_unconst(const json_t *j)
{
    return (json_t *)(uintptr_t)j;
}

static json_t *json_ref_const(const json_t *j)
{
    return json_incref(json_unconst(j));
}

static json_t *json_array_new(void)
{
    json_t *a = json_array();
    if (a == NULL)
        abort(); /* out of memory: same policy as xmalloc */
    return a;
}

void value_done(Value *v)
{
    free(v->text);
    json_decref(v->json);
    *v = (Value){.kind = VAL_NULL};
}

void value_copy(const Value *v, Value *ret)
{
    *ret = *v;
    ret->text = v->text != NULL ? xstrdup(v->text) : NULL;
    ret->json = v->json != NULL ? json_ref_const(v->json) : NULL;
}

/* The shortest of %.15g, %.16g and %.17g that reads back as the same double. */
static char *number_spell_real(double x)
{
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    return xstrdup(buf);
}

/* A computed number: at most 15 significant digits, and the value is what the spelling
 * says, so that 3 * 19.99 both prints and compares as 59.97. */
static void value_set_computed(Value *ret, double x)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.15g", x == 0 ? 0.0 : x);
    *ret = (Value){.kind = VAL_NUMBER, .number = strtod(buf, NULL), .text = xstrdup(buf)};
}

static void value_set_string(Value *ret, char *owned)
{
    *ret = (Value){.kind = VAL_STRING, .text = owned};
}

void value_from_json(const json_t *j, Value *ret)
{
    *ret = (Value){.kind = VAL_NULL};
    if (j == NULL)
        return;
    switch (json_typeof(j)) {
    case JSON_TRUE:
    case JSON_FALSE:
        *ret = (Value){.kind = VAL_BOOL, .boolean = json_is_true(j)};
        break;
    case JSON_INTEGER:
        *ret = (Value){.kind = VAL_NUMBER, .number = (double)json_integer_value(j)};
        ret->text = xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(j));
        break;
    case JSON_REAL:
        *ret = (Value){.kind = VAL_NUMBER, .number = json_real_value(j)};
        ret->text = number_spell_real(ret->number);
        break;
    case JSON_STRING:
        value_set_string(ret, xstrndup(json_string_value(j), json_string_length(j)));
        break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        *ret = (Value){.kind = VAL_JSON, .json = json_ref_const(j)};
        break;
    case JSON_NULL:
        break;
    }
}

/* The letter of the two-character JSON escape for c, or 0. */
static char json_short_escape(unsigned char c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\b':
        return 'b';
    case '\f':
        return 'f';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    default:
        return 0;
    }
}

static void json_append_string(StrBuf *sb, const char *s, size_t len)
{
    strbuf_append(sb, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char e = json_short_escape(c);
        if (e != 0)
            strbuf_appendf(sb, "\\%c", e);
        else if (c < 0x20)
            strbuf_appendf(sb, "\\u%04X", c);
        else
            strbuf_appendn(sb, s + i, 1);
    }
    strbuf_append(sb, "\"");
}

static void json_append_compact(StrBuf *sb, const json_t *j);

static void json_append_object(StrBuf *sb, const json_t *object)
{
    json_t *o = json_unconst(object);
    strbuf_append(sb, "{");
    for (void *it = json_object_iter(o); it != NULL; it = json_object_iter_next(o, it)) {
        if (it != json_object_iter(o))
            strbuf_append(sb, ",");
        json_append_string(sb, json_object_iter_key(it), json_object_iter_key_len(it));
        strbuf_append(sb, ":");
        json_append_compact(sb, json_object_iter_value(it));
    }
    strbuf_append(sb, "}");
}

/* Compact JSON as json_dumps(JSON_COMPACT) writes it, except that reals get the same
 * shortest spelling as scalar numbers: jansson prints 99.99 as 99.989999999999995, which
 * would then be stored as such in a jsonb column. */
static void json_append_compact(StrBuf *sb, const json_t *j)
{
    char *real;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        json_append_object(sb, j);
        break;
    case JSON_ARRAY:
        strbuf_append(sb, "[");
        for (size_t i = 0; i < json_array_size(j); i++) {
            strbuf_append(sb, i > 0 ? "," : "");
            json_append_compact(sb, json_array_get(j, i));
        }
        strbuf_append(sb, "]");
        break;
    case JSON_STRING:
        json_append_string(sb, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        strbuf_appendf(sb, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        break;
    case JSON_REAL:
        real = number_spell_real(json_real_value(j));
        strbuf_append(sb, real);
        free(real);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
    case JSON_NULL:
        strbuf_append(sb, json_is_true(j) ? "true" : json_is_false(j) ? "false" : "null");
        break;
    }
}

char *value_to_param(const Value *v)
{
    switch (v->kind) {
    case VAL_NULL:
        return NULL;
    case VAL_BOOL:
        return xstrdup(v->boolean ? "true" : "false");
    case VAL_NUMBER:
    case VAL_STRING:
        return xstrdup(v->text);
    case VAL_JSON: {
        StrBuf sb = {0};
        json_append_compact(&sb, v->json);
        return strbuf_take(&sb);
    }
    }
    return NULL;
}

/* True when all of s is a finite decimal number: no spaces, no hex, no inf or nan. */
static bool text_spells_number(const char *s, double *ret)
{
    char *end;
    if (s[0] == '\0' || s[strspn(s, EXPR_DIGITS "+-.eE")] != '\0')
        return false;
    double x = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(x))
        return false;
    *ret = x;
    return true;
}

bool value_as_number(const Value *v, double *ret)
{
    assert(v->kind != VAL_STRING || v->text != NULL);
    if (v->kind == VAL_NUMBER) {
        *ret = v->number;
        return true;
    }
    return v->kind == VAL_STRING && text_spells_number(v->text, ret);
}

/* A short description of v for error messages: "abc" quoted, numbers and bools as they
 * are, "an array" or "an object" for JSON. */
static void value_describe(const Value *v, char *buf, size_t size)
{
    const int shown = 60;
    switch (v->kind) {
    case VAL_NULL:
        snprintf(buf, size, "null");
        break;
    case VAL_BOOL:
        snprintf(buf, size, "%s", v->boolean ? "true" : "false");
        break;
    case VAL_NUMBER:
        snprintf(buf, size, "%s", v->text);
        break;
    case VAL_STRING:
        snprintf(buf, size, "\"%.*s%s\"", shown, v->text,
                 strlen(v->text) > (size_t)shown ? "..." : "");
        break;
    case VAL_JSON:
        snprintf(buf, size, "%s", json_is_array(v->json) ? "an array" : "an object");
        break;
    }
}

/* ---------------------------------------------------------------- trees */

Expr *expr_free(Expr *e)
{
    if (e == NULL)
        return NULL;
    value_done(&e->literal);
    for (size_t i = 0; i < e->nsteps; i++)
        free(e->steps[i].key);
    free(e->steps);
    for (size_t i = 0; i < e->nargs; i++)
        expr_free(e->args[i]);
    free(e->args);
    expr_free(e->left);
    expr_free(e->right);
    free(e->text);
    free(e);
    return NULL;
}

Cond *cond_free(Cond *c)
{
    if (c == NULL)
        return NULL;
    expr_free(c->left);
    expr_free(c->right);
    cond_free(c->a);
    cond_free(c->b);
    free(c);
    return NULL;
}

Expr *expr_new_literal(const char *text, bool is_null, int line, int column)
{
    Expr *e = xcalloc(1, sizeof *e);
    e->kind = EXPR_LITERAL;
    e->line = line;
    e->column = column;
    e->text = xstrdup(text != NULL ? text : "null");
    if (!is_null)
        value_set_string(&e->literal, xstrdup(e->text));
    return e;
}

static bool is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

/* Length of the identifier [A-Za-z_][A-Za-z0-9_]* at s, or 0. */
static size_t word_length(const char *s)
{
    return is_name_start(s[0]) ? strspn(s, EXPR_NAME_CHARS) : 0;
}

bool expr_looks_like_expression(const char *text)
{
    if (strcmp(text, "$") == 0 || strstr(text, "$.") != NULL || strstr(text, "$[") != NULL)
        return true;
    if (text[0] == '(')
        return true;
    size_t n = word_length(text);
    return n > 0 && text[n] == '(';
}

/* ---------------------------------------------------------------- parser: scanning */

typedef struct Parser {
    const char *text;
    size_t pos;       /* byte offset of the next character to read */
    int line, column; /* position of text[0] in the file */
    int depth;        /* current nesting, at most EXPR_DEPTH_MAX */
    bool failed;
    size_t err_pos; /* byte offset the first error points at */
    PjError error;
} Parser;

static void parser_init(Parser *p, const char *text, int line, int column)
{
    *p = (Parser){.text = text, .line = line, .column = column};
}

static int parser_column(const Parser *p, size_t pos)
{
    if (p->column <= 0)
        return 0;
    if (pos > (size_t)(INT_MAX - p->column))
        return INT_MAX;
    return p->column + (int)pos;
}

static char peek(const Parser *p)
{
    return p->text[p->pos];
}

static void skip_space(Parser *p)
{
    p->pos += strspn(p->text + p->pos, " \t\r\n");
}

/* True when the word at the current position is exactly kw (case-sensitive). */
static bool at_keyword(const Parser *p, const char *kw)
{
    size_t n = word_length(p->text + p->pos);
    return n == strlen(kw) && memcmp(p->text + p->pos, kw, n) == 0;
}

/* The length of the token at pos, for messages: a word, a two-character operator, or one
 * (possibly multi-byte UTF-8) character. */
static int token_length(const Parser *p, size_t pos)
{
    static const char *const pairs[] = {"==", "!=", "<=", ">=", "&&", "||"};
    const char *s = p->text + pos;
    size_t n = strspn(s, EXPR_NAME_CHARS);
    if (n > 0)
        return n > 64 ? 64 : (int)n;
    for (size_t i = 0; i < ARRAY_SIZE(pairs); i++)
        if (strncmp(s, pairs[i], 2) == 0)
            return 2;
    n = 1;
    while (n < 4 && (s[n] & 0xC0) == 0x80)
        n++;
    return (int)n;
}

/* Records the first error (later ones are consequences) and returns NULL for chaining. */
static void *parser_fail(Parser *p, size_t pos, const char *fmt, ...) PJ_PRINTF(3, 4);
static void *parser_fail(Parser *p, size_t pos, const char *fmt, ...)
{
    if (p->failed)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error.message, sizeof p->error.message, fmt, ap);
    va_end(ap);
    p->failed = true;
    p->err_pos = pos;
    return NULL;
}

static bool parser_enter(Parser *p)
{
    if (p->depth >= EXPR_DEPTH_MAX) {
        parser_fail(p, p->pos, "expression is nested too deeply: at most %d levels",
                    EXPR_DEPTH_MAX);
        return false;
    }
    p->depth++;
    return true;
}

static int parser_report(const Parser *p, PjError *err, int *reterr_line, int *reterr_column)
{
    if (reterr_line != NULL)
        *reterr_line = p->line;
    if (reterr_column != NULL)
        *reterr_column = parser_column(p, p->err_pos);
    return pj_error_set(err, PJ_EINVAL, "%s", p->error.message);
}

static Expr *expr_node(ExprKind kind, const Parser *p, size_t start)
{
    Expr *e = xcalloc(1, sizeof *e);
    e->kind = kind;
    e->line = p->line;
    e->column = parser_column(p, start);
    return e;
}

/* The node's source text runs from start to the current position. */
static Expr *expr_finish(Expr *e, const Parser *p, size_t start)
{
    e->text = xstrndup(p->text + start, p->pos - start);
    return e;
}

/* ---------------------------------------------------------------- parser: expressions */

static Expr *parse_expr(Parser *p);

static bool is_event_field(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(expr_event_fields); i++)
        if (strcmp(name, expr_event_fields[i]) == 0)
            return true;
    return false;
}

/* [digits] or [*]; the current character is '['. */
static int parse_path_index(Parser *p, PathStep *ret)
{
    p->pos++;
    *ret = (PathStep){.kind = PATH_ALL};
    if (peek(p) == '*') {
        p->pos++;
    } else if (peek(p) >= '0' && peek(p) <= '9') {
        size_t start = p->pos, index = 0;
        for (; peek(p) >= '0' && peek(p) <= '9'; p->pos++) {
            size_t d = (size_t)(peek(p) - '0');
            if (index > (SIZE_MAX - d) / 10) {
                parser_fail(p, start, "array index is too large");
                return -PJ_EINVAL;
            }
            index = index * 10 + d;
        }
        *ret = (PathStep){.kind = PATH_INDEX, .index = index};
    } else {
        parser_fail(p, p->pos, "expected an array index or '*' after '['");
        return -PJ_EINVAL;
    }
    if (peek(p) != ']') {
        parser_fail(p, p->pos, "expected ']' after array index");
        return -PJ_EINVAL;
    }
    p->pos++;
    return 0;
}

/* One step: .name or [n] or [*]; the first step must name a field of the event. */
static int parse_path_step(Parser *p, bool first, PathStep *ret)
{
    if (peek(p) == '[') {
        if (first) {
            parser_fail(p, p->pos, "expected '.' and an event field after '$'");
            return -PJ_EINVAL;
        }
        return parse_path_index(p, ret);
    }
    p->pos++; /* '.' */
    size_t n = strspn(p->text + p->pos, EXPR_NAME_CHARS "-");
    if (n == 0) {
        parser_fail(p, p->pos, "expected a field name after '.'");
        return -PJ_EINVAL;
    }
    char *key = xstrndup(p->text + p->pos, n);
    if (first && !is_event_field(key)) {
        parser_fail(p, p->pos, "unknown event field \"%s\": expected one of %s", key,
                    EXPR_EVENT_FIELDS_LIST);
        free(key);
        return -PJ_EINVAL;
    }
    p->pos += n;
    *ret = (PathStep){.kind = PATH_KEY, .key = key};
    return 0;
}

static Expr *parse_path(Parser *p)
{
    size_t start = p->pos, cap = 0;
    Expr *e = expr_node(EXPR_PATH, p, start);
    p->pos++; /* '$' */
    if (strchr(EXPR_NAME_CHARS, peek(p)) != NULL && peek(p) != '\0') {
        parser_fail(p, p->pos, "expected '.' or '[' after '$'");
        return expr_free(e);
    }
    while (peek(p) == '.' || peek(p) == '[') {
        PathStep step;
        if (parse_path_step(p, e->nsteps == 0, &step) < 0)
            return expr_free(e);
        xgrow((void **)&e->steps, &cap, e->nsteps + 1, sizeof *e->steps);
        e->steps[e->nsteps++] = step;
    }
    return expr_finish(e, p, start);
}

/* digits ['.' digits] [('e'|'E') ['+'|'-'] digits], kept with its own spelling. */
static Expr *parse_number(Parser *p)
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
        parser_fail(p, start, "number \"%s\" is out of range", spelling);
        free(spelling);
        return NULL;
    }
    Expr *e = expr_node(EXPR_LITERAL, p, start);
    e->literal = (Value){.kind = VAL_NUMBER, .number = x, .text = spelling};
    p->pos += n;
    return expr_finish(e, p, start);
}

/* 'text' where '' stands for one quote. */
static Expr *parse_string(Parser *p)
{
    size_t start = p->pos;
    StrBuf sb = {0};
    p->pos++;
    for (;;) {
        const char *s = p->text + p->pos;
        const char *quote = strchr(s, '\'');
        if (quote == NULL) {
            strbuf_done(&sb);
            return parser_fail(p, start, "unterminated string literal");
        }
        strbuf_appendn(&sb, s, (size_t)(quote - s));
        p->pos += (size_t)(quote - s) + 1;
        if (peek(p) != '\'')
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

static Expr *check_arity(Parser *p, Expr *e, const FuncInfo *f, size_t start)
{
    size_t n = e->nargs;
    if (n >= f->args_min && n <= f->args_max)
        return expr_finish(e, p, start);
    expr_free(e);
    if (f->args_max == 0)
        return parser_fail(p, start, "function \"%s\" takes no arguments, got %zu", f->name, n);
    if (f->args_min == f->args_max)
        return parser_fail(p, start, "function \"%s\" takes %zu argument%s, got %zu", f->name,
                           f->args_min, f->args_min == 1 ? "" : "s", n);
    return parser_fail(p, start, "function \"%s\" takes at least %zu argument%s, got %zu", f->name,
                       f->args_min, f->args_min == 1 ? "" : "s", n);
}

/* name '(' [expr (',' expr)*] ')'; the current character is '('. */
static Expr *parse_call(Parser *p, const FuncInfo *f, size_t start)
{
    Expr *e = expr_node(EXPR_CALL, p, start);
    size_t cap = 0;
    e->func = f->func;
    if (!parser_enter(p))
        return expr_free(e);
    p->pos++;
    skip_space(p);
    if (peek(p) == ')')
        p->pos++;
    else
        for (;;) {
            Expr *arg = parse_expr(p);
            if (arg == NULL)
                return expr_free(e);
            xgrow((void **)&e->args, &cap, e->nargs + 1, sizeof *e->args);
            e->args[e->nargs++] = arg;
            skip_space(p);
            char c = peek(p);
            p->pos++;
            if (c == ')')
                break;
            if (c != ',') {
                p->pos--;
                expr_free(e);
                return parser_fail(p, p->pos, "expected ')' after function arguments");
            }
        }
    p->depth--;
    return check_arity(p, e, f, start);
}

/* A word that is not a value here; the current position is just after it. */
static Expr *parse_bad_word(Parser *p, size_t start, size_t n)
{
    static const char *const keywords[] = {"null", "true", "false"};
    static const char *const cond_words[] = {"and", "or", "not", "exists"};
    const char *w = p->text + start;
    int len = n > 64 ? 64 : (int)n;
    const FuncInfo *f = func_lookup(w, n);
    if (f != NULL)
        return parser_fail(p, p->pos, "expected '(' after function name \"%s\"", f->name);
    for (size_t i = 0; i < ARRAY_SIZE(keywords); i++)
        if (strlen(keywords[i]) == n && strncasecmp(w, keywords[i], n) == 0)
            return parser_fail(p, start, "unexpected word \"%.*s\": keywords are lower case (%s)",
                               len, w, keywords[i]);
    for (size_t i = 0; i < ARRAY_SIZE(cond_words); i++)
        if (strlen(cond_words[i]) == n && strncmp(w, cond_words[i], n) == 0)
            return parser_fail(p, start,
                               "unexpected \"%s\": expected a path, literal, function call or '('",
                               cond_words[i]);
    return parser_fail(p, start,
                       "unexpected word \"%.*s\": string literals are written in single quotes, "
                       "as in '%.*s'",
                       len, w, len, w);
}

/* null, true, false, or a function call. */
static Expr *parse_word(Parser *p)
{
    size_t start = p->pos, n = word_length(p->text + start);
    const char *w = p->text + start;
    if (at_keyword(p, "null") || at_keyword(p, "true") || at_keyword(p, "false")) {
        Expr *e = expr_node(EXPR_LITERAL, p, start);
        if (w[0] != 'n')
            e->literal = (Value){.kind = VAL_BOOL, .boolean = w[0] == 't'};
        p->pos += n;
        return expr_finish(e, p, start);
    }
    p->pos += n;
    skip_space(p);
    if (peek(p) != '(')
        return parse_bad_word(p, start, n);
    const FuncInfo *f = func_lookup(w, n);
    if (f == NULL)
        return parser_fail(p, start, "unknown function \"%.*s\": expected one of %s",
                           n > 64 ? 64 : (int)n, w, EXPR_FUNCS_LIST);
    return parse_call(p, f, start);
}

/* '(' expr ')'; the node keeps the inner expression's text. */
static Expr *parse_group(Parser *p)
{
    if (!parser_enter(p))
        return NULL;
    p->pos++;
    Expr *inner = parse_expr(p);
    p->depth--;
    if (inner == NULL)
        return NULL;
    skip_space(p);
    if (peek(p) != ')') {
        expr_free(inner);
        return parser_fail(p, p->pos, "expected ')' after expression in parentheses");
    }
    p->pos++;
    return inner;
}

static Expr *parse_primary(Parser *p)
{
    skip_space(p);
    char c = peek(p), next = c != '\0' ? p->text[p->pos + 1] : '\0';
    if (c == '$')
        return parse_path(p);
    if ((c >= '0' && c <= '9') || (c == '.' && next >= '0' && next <= '9'))
        return parse_number(p);
    if (c == '\'')
        return parse_string(p);
    if (c == '(')
        return parse_group(p);
    if (is_name_start(c))
        return parse_word(p);
    if (c == '\0')
        return parser_fail(p, p->pos,
                           "unexpected end of input: expected a path, literal, "
                           "function call or '('");
    return parser_fail(p, p->pos,
                       "unexpected '%.*s': expected a path, literal, function call or '('",
                       token_length(p, p->pos), p->text + p->pos);
}

static Expr *parse_unary(Parser *p)
{
    skip_space(p);
    if (peek(p) != '-')
        return parse_primary(p);
    size_t start = p->pos;
    if (!parser_enter(p))
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
static Expr *parse_binary(Parser *p, const char *ops, Expr *(*operand)(Parser *))
{
    skip_space(p);
    size_t start = p->pos;
    int depth = p->depth;
    Expr *left = operand(p);
    if (left == NULL)
        return NULL;
    for (;;) {
        size_t save = p->pos;
        skip_space(p);
        char c = peek(p);
        if (c == '\0' || strchr(ops, c) == NULL) {
            p->pos = save;
            break;
        }
        p->pos++;
        Expr *right = parser_enter(p) ? operand(p) : NULL;
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

static Expr *parse_term(Parser *p)
{
    return parse_binary(p, "*/", parse_unary);
}

static Expr *parse_expr(Parser *p)
{
    return parse_binary(p, "+-", parse_term);
}

int expr_parse(const char *text, int line, int column, Expr **ret, PjError *err, int *reterr_line,
               int *reterr_column)
{
    Parser p;
    parser_init(&p, text, line, column);
    *ret = NULL;
    Expr *e = parse_expr(&p);
    skip_space(&p);
    if (e != NULL && peek(&p) != '\0') {
        e = expr_free(e);
        parser_fail(&p, p.pos, "unexpected '%.*s' after expression", token_length(&p, p.pos),
                    p.text + p.pos);
    }
    if (e == NULL)
        return parser_report(&p, err, reterr_line, reterr_column);
    *ret = e;
    return 0;
}

/* ---------------------------------------------------------------- parser: conditions */

static Cond *parse_disj(Parser *p);

static Cond *cond_node(CondKind kind, const Parser *p, size_t start)
{
    Cond *c = xcalloc(1, sizeof *c);
    c->kind = kind;
    c->line = p->line;
    c->column = parser_column(p, start);
    return c;
}

/* The comparison operator at the current position and its length, or 0. */
static size_t cmp_op_at(const Parser *p, CmpOp *ret)
{
    static const struct {
        const char *text;
        CmpOp op;
    } ops[] = {{"==", CMP_EQ}, {"!=", CMP_NE}, {"<=", CMP_LE},
               {">=", CMP_GE}, {"<", CMP_LT},  {">", CMP_GT}};
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
static Cond *parse_compare(Parser *p)
{
    skip_space(p);
    size_t start = p->pos, n;
    CmpOp op;
    Expr *left = parse_expr(p);
    if (left == NULL)
        return NULL;
    skip_space(p);
    if ((n = cmp_op_at(p, &op)) == 0) {
        if (peek(p) == '=')
            parser_fail(p, p->pos, "unexpected '=': use '==' to compare");
        else
            parser_fail(p, p->pos,
                        "expected a comparison operator (==, !=, <, <=, >, >=) after \"%.60s\"",
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
    Cond *c = cond_node(COND_CMP, p, start);
    c->op = op;
    c->left = left;
    c->right = right;
    return c;
}

/* exists '(' path ')'; the current word is "exists". */
static Cond *parse_exists(Parser *p)
{
    size_t start = p->pos;
    p->pos += strlen("exists");
    skip_space(p);
    if (peek(p) != '(')
        return parser_fail(p, p->pos, "expected '(' after \"exists\"");
    p->pos++;
    skip_space(p);
    if (peek(p) != '$')
        return parser_fail(p, p->pos, "expected a path after \"exists(\"");
    Expr *path = parse_path(p);
    if (path == NULL)
        return NULL;
    skip_space(p);
    if (peek(p) != ')') {
        expr_free(path);
        return parser_fail(p, p->pos, "expected ')' after the path of \"exists\"");
    }
    p->pos++;
    Cond *c = cond_node(COND_EXISTS, p, start);
    c->left = path;
    return c;
}

/* '(' cond ')' */
static Cond *parse_cond_group(Parser *p)
{
    if (!parser_enter(p))
        return NULL;
    p->pos++;
    Cond *inner = parse_disj(p);
    p->depth--;
    if (inner == NULL)
        return NULL;
    skip_space(p);
    if (peek(p) != ')') {
        cond_free(inner);
        return parser_fail(p, p->pos, "expected ')' after condition in parentheses");
    }
    p->pos++;
    return inner;
}

/* '(' opens either a condition, "($.a == 1 or $.b == 2)", or an arithmetic operand,
 * "($.a + 1) > 2". Try the comparison first; when neither reading parses, report the error
 * of the one that got further, which is the one the author most likely meant. */
static Cond *parse_paren(Parser *p)
{
    Parser saved = *p;
    Cond *c = parse_compare(p);
    if (c != NULL)
        return c;
    Parser as_compare = *p;
    *p = saved;
    c = parse_cond_group(p);
    if (c == NULL && as_compare.err_pos > p->err_pos)
        *p = as_compare;
    return c;
}

/* 'not' neg | '(' cond ')' | exists(path) | expr cmp expr */
static Cond *parse_neg(Parser *p)
{
    skip_space(p);
    size_t start = p->pos;
    if (at_keyword(p, "not")) {
        if (!parser_enter(p))
            return NULL;
        p->pos += strlen("not");
        Cond *inner = parse_neg(p);
        p->depth--;
        if (inner == NULL)
            return NULL;
        Cond *c = cond_node(COND_NOT, p, start);
        c->a = inner;
        return c;
    }
    if (at_keyword(p, "exists"))
        return parse_exists(p);
    if (peek(p) == '(')
        return parse_paren(p);
    return parse_compare(p);
}

/* operand (kw operand)*, left-associative. */
static Cond *parse_logic(Parser *p, const char *kw, CondKind kind, Cond *(*operand)(Parser *))
{
    skip_space(p);
    size_t start = p->pos;
    int depth = p->depth;
    Cond *left = operand(p);
    if (left == NULL)
        return NULL;
    for (;;) {
        size_t save = p->pos;
        skip_space(p);
        if (!at_keyword(p, kw)) {
            p->pos = save;
            break;
        }
        p->pos += strlen(kw);
        Cond *right = parser_enter(p) ? operand(p) : NULL;
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

static Cond *parse_conj(Parser *p)
{
    return parse_logic(p, "and", COND_AND, parse_neg);
}

static Cond *parse_disj(Parser *p)
{
    return parse_logic(p, "or", COND_OR, parse_conj);
}

int cond_parse(const char *text, int line, int column, Cond **ret, PjError *err, int *reterr_line,
               int *reterr_column)
{
    Parser p;
    parser_init(&p, text, line, column);
    *ret = NULL;
    Cond *c = parse_disj(&p);
    skip_space(&p);
    if (c != NULL && peek(&p) != '\0') {
        c = cond_free(c);
        parser_fail(&p, p.pos, "unexpected '%.*s' after condition", token_length(&p, p.pos),
                    p.text + p.pos);
    }
    if (c == NULL)
        return parser_report(&p, err, reterr_line, reterr_column);
    *ret = c;
    return 0;
}

/* ---------------------------------------------------------------- evaluation: paths */

static bool path_has_all(const Expr *path)
{
    for (size_t i = 0; i < path->nsteps; i++)
        if (path->steps[i].kind == PATH_ALL)
            return true;
    return false;
}

static json_t *path_step(const json_t *node, const PathStep *step)
{
    if (step->kind == PATH_KEY)
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
        while (i < n && node != NULL && steps[i].kind != PATH_ALL)
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
    *ret = (Value){.kind = VAL_NULL};
    while (i < e->nsteps && node != NULL && e->steps[i].kind != PATH_ALL)
        node = path_step(node, &e->steps[i++]);
    if (i == e->nsteps) {
        value_from_json(node, ret);
        return;
    }
    if (!json_is_array(node))
        return;
    json_t *out = json_array_new();
    path_collect(node, e->steps + i + 1, e->nsteps - i - 1, out);
    *ret = (Value){.kind = VAL_JSON, .json = out};
}

/* ---------------------------------------------------------------- evaluation: functions */

static int eval_node(const Expr *e, const json_t *event, Value *ret, PjError *err);

static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int fn_length(const Value *v, Value *ret, PjError *err)
{
    char what[128];
    if (v->kind == VAL_NULL)
        return 0;
    if (v->kind == VAL_STRING) {
        value_set_computed(ret, (double)utf8_length(v->text));
        return 0;
    }
    if (v->kind == VAL_JSON) {
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
    bool ok = v.kind == VAL_NULL || value_as_number(&v, &x);
    if (ok && v.kind != VAL_NULL)
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
    if (v->kind == VAL_NULL)
        return 0;
    if (value_as_number(v, &total)) {
        value_set_computed(ret, total);
        return 0;
    }
    if (v->kind != VAL_JSON || !json_is_array(v->json)) {
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
    if (v->kind == VAL_NULL)
        return 0;
    if (v->kind == VAL_JSON)
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
        if (r < 0 || ret->kind != VAL_NULL)
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
    case FUNC_COALESCE:
        return fn_coalesce(e, event, ret, err);
    case FUNC_CONCAT:
        return fn_concat(e, event, ret, err);
    case FUNC_NOW:
        format_wall_ms(clock_wall_ms(), now, sizeof now);
        value_set_string(ret, xstrdup(now));
        return 0;
    case FUNC_LENGTH:
    case FUNC_SUM:
    case FUNC_LOWER:
    case FUNC_UPPER:
        break;
    }
    assert(e->nargs == 1);
    if ((r = eval_node(e->args[0], event, &arg, err)) < 0)
        return r;
    if (e->func == FUNC_LENGTH)
        r = fn_length(&arg, ret, err);
    else if (e->func == FUNC_SUM)
        r = fn_sum(&arg, ret, err);
    else
        r = fn_case(&arg, e->func == FUNC_UPPER, ret, err);
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
    Value a, b = {.kind = VAL_NULL};
    int r = eval_node(e->left, event, &a, err);
    if (r == 0)
        r = eval_node(e->right, event, &b, err);
    if (r == 0 && a.kind != VAL_NULL && b.kind != VAL_NULL)
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
    if (r == 0 && v.kind != VAL_NULL) {
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
    *ret = (Value){.kind = VAL_NULL};
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
    return op == CMP_EQ ? equal : op == CMP_NE ? !equal : false;
}

static bool cmp_ordered(CmpOp op, int sign)
{
    switch (op) {
    case CMP_EQ:
        return sign == 0;
    case CMP_NE:
        return sign != 0;
    case CMP_LT:
        return sign < 0;
    case CMP_LE:
        return sign <= 0;
    case CMP_GT:
        return sign > 0;
    case CMP_GE:
        return sign >= 0;
    }
    return false;
}

static int cmp_values(CmpOp op, const Value *a, const Value *b, bool *ret, PjError *err)
{
    double x, y;
    if (a->kind == VAL_NULL || b->kind == VAL_NULL) {
        *ret = cmp_unordered(op, a->kind == b->kind);
    } else if (a->kind == VAL_JSON || b->kind == VAL_JSON) {
        const Value *j = a->kind == VAL_JSON ? a : b;
        if (op != CMP_EQ && op != CMP_NE)
            return pj_error_set(err, PJ_EPERMANENT,
                                "cannot order %s: arrays and objects compare only with == and !=",
                                json_is_array(j->json) ? "an array" : "an object");
        *ret = cmp_unordered(op, a->kind == b->kind && json_equal(a->json, b->json));
    } else if (value_as_number(a, &x) && value_as_number(b, &y)) {
        *ret = cmp_ordered(op, (x > y) - (x < y));
    } else if (a->kind == VAL_STRING && b->kind == VAL_STRING) {
        assert(a->text != NULL && b->text != NULL);
        int sign = strcmp(a->text, b->text);
        *ret = cmp_ordered(op, (sign > 0) - (sign < 0));
    } else {
        *ret = cmp_unordered(op, a->kind == VAL_BOOL && b->kind == VAL_BOOL &&
                                     a->boolean == b->boolean);
    }
    return 0;
}

static int cond_compare(const Cond *c, const json_t *event, bool *ret, PjError *err)
{
    Value a, b = {.kind = VAL_NULL};
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
    found = v.kind != VAL_NULL;
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
    case COND_CMP:
        return cond_compare(c, event, ret, err);
    case COND_EXISTS:
        *ret = path_exists(c->left, event);
        return 0;
    case COND_NOT:
        r = cond_node_eval(c->a, event, ret, err);
        *ret = r == 0 && !*ret;
        return r;
    case COND_AND:
    case COND_OR:
        /* short-circuit: the right side is not evaluated once the left decides */
        r = cond_node_eval(c->a, event, ret, err);
        if (r < 0 || *ret == (c->kind == COND_OR))
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

/* ---------------------------------------------------------------- analysis */

bool expr_never_null(const Expr *e)
{
    switch (e->kind) {
    case EXPR_LITERAL:
        return e->literal.kind != VAL_NULL;
    case EXPR_PATH:
        return false;
    case EXPR_ARITH:
        return expr_never_null(e->left) && expr_never_null(e->right);
    case EXPR_NEGATE:
        return expr_never_null(e->left);
    case EXPR_CALL:
        break;
    }
    switch (e->func) {
    case FUNC_NOW:
    case FUNC_CONCAT:
        return true;
    case FUNC_COALESCE:
        for (size_t i = 0; i < e->nargs; i++)
            if (expr_never_null(e->args[i]))
                return true;
        return false;
    case FUNC_LENGTH:
    case FUNC_SUM:
    case FUNC_LOWER:
    case FUNC_UPPER:
        break;
    }
    return expr_never_null(e->args[0]);
}

void expr_walk_paths(const Expr *e, void (*fn)(const Expr *path, void *arg), void *arg)
{
    if (e == NULL)
        return;
    if (e->kind == EXPR_PATH)
        fn(e, arg);
    for (size_t i = 0; i < e->nargs; i++)
        expr_walk_paths(e->args[i], fn, arg);
    expr_walk_paths(e->left, fn, arg);
    expr_walk_paths(e->right, fn, arg);
}
