/* fuzz_expr.c - libFuzzer target: the input is the text of a read-model value or `when:`
 * condition. Owns nothing but the harness: it parses the text as an expression and as a
 * condition (expr_parse, cond_parse) and evaluates whatever parses against every sample
 * event, with the helpers the loader and the applier call on a parsed expression.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "model/expr.h"
#include "model/expr_internal.h"

/* Expression texts come from YAML scalars; longer ones only repeat what shorter ones do. */
#define FUZZ_EXPR_MAX 4096

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    for (size_t i = 0; i < fuzz_sample_count(); i++)
        (void)fuzz_sample_event(i);
    return 0;
}

static void eval_expr(const Expr *e)
{
    for (size_t i = 0; i < fuzz_sample_count(); i++) {
        Value v = {0}, copy = {0};
        PjError err = {0};
        double d;

        if (expr_eval(e, fuzz_sample_event(i), &v, &err) < 0)
            continue;
        /* The applier turns every value into a parameter; numbers are compared. */
        free(value_to_param(&v));
        (void)value_as_number(&v, &d);
        value_copy(&v, &copy);
        value_done(&copy);
        value_done(&v);
    }
}

static void eval_cond(const Cond *c)
{
    for (size_t i = 0; i < fuzz_sample_count(); i++) {
        PjError err = {0};
        bool holds;

        if (cond_eval(c, fuzz_sample_event(i), &holds, &err) < 0)
            continue;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;
    Expr *e = NULL;
    Cond *c = NULL;
    PjError err = {0};
    int line = 0, column = 0;

    if (size > FUZZ_EXPR_MAX)
        return -1;
    /* A YAML scalar never holds NUL: the text ends at the first one. */
    text = xstrndup((const char *)data, size);
    if (expr_parse(text, 3, 7, &e, &err, &line, &column) == 0) {
        eval_expr(e);
        e = expr_free(e);
    }
    if (cond_parse(text, 3, 7, &c, &err, &line, &column) == 0) {
        eval_cond(c);
        c = cond_free(c);
    }
    (void)expr_looks_like_expression(text);
    free(text);
    return 0;
}
