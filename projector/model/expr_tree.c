/* expr_tree.c - the life and shape of expression and condition trees: freeing them, the
 * literal node built from a YAML scalar, and the analyses the model loader asks of a tree
 * (can it be null, which paths it reads). A tree owns all its nodes; freeing the root
 * frees them all.
 */
#include "model/expr.h"
#include "model/expr_internal.h"

#include <stdlib.h>

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
