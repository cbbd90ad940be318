/* expr_scan.c - the scanner under the expression parser: the position in the text, the
 * nesting depth, and the first error with the column it points at. Also answers whether a
 * YAML scalar is an expression at all. A parser records only its first error: later ones
 * are consequences of it.
 */
#include "model/expr.h"
#include "model/expr_internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool expr_is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

size_t expr_word_length(const char *s)
{
    return expr_is_name_start(s[0]) ? strspn(s, EXPR_NAME_CHARS) : 0;
}

bool expr_looks_like_expression(const char *text)
{
    if (strcmp(text, "$") == 0 || strstr(text, "$.") != NULL || strstr(text, "$[") != NULL)
        return true;
    if (text[0] == '(')
        return true;
    size_t n = expr_word_length(text);
    return n > 0 && text[n] == '(';
}

void expr_parser_init(ExprParser *p, const char *text, int line, int column)
{
    *p = (ExprParser){.text = text, .line = line, .column = column};
}

int expr_parser_column(const ExprParser *p, size_t pos)
{
    if (p->column <= 0)
        return 0;
    if (pos > (size_t)(INT_MAX - p->column))
        return INT_MAX;
    return p->column + (int)pos;
}

char expr_peek(const ExprParser *p)
{
    return p->text[p->pos];
}

void expr_skip_space(ExprParser *p)
{
    p->pos += strspn(p->text + p->pos, " \t\r\n");
}

bool expr_at_keyword(const ExprParser *p, const char *kw)
{
    size_t n = expr_word_length(p->text + p->pos);
    return n == strlen(kw) && memcmp(p->text + p->pos, kw, n) == 0;
}

int expr_token_length(const ExprParser *p, size_t pos)
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

void *expr_parser_fail(ExprParser *p, size_t pos, const char *fmt, ...)
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

bool expr_parser_enter(ExprParser *p)
{
    if (p->depth >= EXPR_DEPTH_MAX) {
        expr_parser_fail(p, p->pos, "expression is nested too deeply: at most %d levels",
                         EXPR_DEPTH_MAX);
        return false;
    }
    p->depth++;
    return true;
}

int expr_parser_report(const ExprParser *p, PjError *err, int *reterr_line, int *reterr_column)
{
    if (reterr_line != NULL)
        *reterr_line = p->line;
    if (reterr_column != NULL)
        *reterr_column = expr_parser_column(p, p->err_pos);
    return pj_error_set(err, PJ_EINVAL, "%s", p->error.message);
}
