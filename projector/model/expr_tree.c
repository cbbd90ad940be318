/* expr_tree.c - the life of expression and condition trees: freeing them, and the literal
 * node built from a YAML scalar. A tree owns all its nodes; freeing the root frees them
 * all.
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
