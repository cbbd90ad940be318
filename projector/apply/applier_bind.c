/* applier_bind.c - one normalized event through a compiled plan: evaluates the parameters
 * of every action whose `when:` holds, and tells whether a bound statement touches exactly
 * one row by its key. An event binds whole or not at all: on error nothing is appended.
 */
#include "apply/applier.h"
#include "apply/applier_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *bind_role_name(ParamRole role)
{
    switch (role) {
    case APPLIER_PARAM_KEY:
        return "key";
    case APPLIER_PARAM_ADD:
        return "add";
    default:
        return "where";
    }
}

/* The error for a parameter that must not be null but is. */
static int bind_null_error(const ApplierPlan *p, const StatementInfo *info, const ParamSource *ps,
                           PjError *err)
{
    const char *type = p->model->handlers[info->handler].event_type;
    const char *text = ps->expr->text != NULL ? ps->expr->text : "null";

    if (ps->role == APPLIER_PARAM_LOOKUP_WHERE)
        return pj_error_set(err, PJ_EPERMANENT,
                            "where column \"%s\" of the lookup for \"%s\" in action %zu for "
                            "\"%s\" is null (%s)",
                            ps->column, ps->target, info->action + 1, type, text);
    return pj_error_set(err, PJ_EPERMANENT,
                        "%s column \"%s\" of action %zu for \"%s\" is null (%s)",
                        bind_role_name(ps->role), ps->column, info->action + 1, type, text);
}

/* Rewrites err's message as "<prefix>: <message>". */
static int bind_prefix_error(PjError *err, const char *prefix)
{
    err->code = PJ_EPERMANENT;
    return pj_error_prefix(err, "%s", prefix);
}

static bool bind_null_allowed(ParamRole role)
{
    return role == APPLIER_PARAM_VALUE;
}

/* Evaluates every parameter of statement si. On error frees what it made. */
static int bind_statement(const ApplierPlan *p, size_t si, const json_t *event, BoundStatement *ret,
                          PjError *err)
{
    const StatementInfo *info = &p->infos[si];
    size_t n = (size_t)p->statements[si].nparams;
    char **params = xcalloc(n, sizeof *params);
    int r = 0;

    for (size_t i = 0; i < n && r == 0; i++) {
        const ParamSource *ps = &info->params[i];
        const char *column = ps->role == APPLIER_PARAM_LOOKUP_WHERE ? ps->target : ps->column;
        Value v = {0};

        r = expr_eval(ps->expr, event, &v, err);
        if (r < 0) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "column \"%s\"", column);
            r = bind_prefix_error(err, prefix);
        } else if (v.kind == EXPR_VAL_NULL && !bind_null_allowed(ps->role))
            r = bind_null_error(p, info, ps, err);
        else
            params[i] = value_to_param(&v);
        value_done(&v);
    }
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            free(params[i]);
        free(params);
        return r;
    }
    *ret = (BoundStatement){.statement = si, .nparams = (int)n, .params = params};
    return 0;
}

static void bound_truncate(Bound *b, size_t count)
{
    while (b->count > count) {
        BoundStatement *s = &b->items[--b->count];
        for (int i = 0; i < s->nparams; i++)
            free(s->params[i]);
        free(s->params);
    }
}

/* Binds one action of the handler unless its `when:` is false. */
static int bind_action(const ApplierPlan *p, size_t hi, size_t ai, const json_t *event, Bound *ret,
                       PjError *err)
{
    const Handler *h = &p->model->handlers[hi];
    const Action *a = &h->actions[ai];
    BoundStatement bs;

    if (a->when != NULL) {
        bool holds = false;
        if (cond_eval(a->when, event, &holds, err) < 0) {
            char prefix[384];
            snprintf(prefix, sizeof prefix, "condition of action %zu for \"%s\"", ai + 1,
                     h->event_type);
            return bind_prefix_error(err, prefix);
        }
        if (!holds)
            return 0;
    }
    int r = bind_statement(p, p->first[hi] + ai, event, &bs, err);
    if (r < 0)
        return r;
    xgrow((void **)&ret->items, &ret->cap, ret->count + 1, sizeof *ret->items);
    ret->items[ret->count++] = bs;
    return 0;
}

int applier_bind(const ApplierPlan *plan, const json_t *event, Bound *ret, PjError *err)
{
    const json_t *type = json_object_get(event, "type");

    if (!json_is_string(type))
        return pj_error_set(err, PJ_EPERMANENT, "event has no type");
    const Handler *h = model_find_handler(plan->model, json_string_value(type));
    if (h == NULL)
        return APPLIER_UNHANDLED;

    size_t hi = (size_t)(h - plan->model->handlers);
    size_t mark = ret->count;
    for (size_t ai = 0; ai < h->nactions; ai++) {
        int r = bind_action(plan, hi, ai, event, ret, err);
        if (r < 0) {
            /* An event applies whole or not at all. */
            bound_truncate(ret, mark);
            return r;
        }
    }
    return 0;
}

/* Integers as PostgreSQL prints them: no sign but "-", no leading zero, no blank. */
static bool canonical_integer(const char *s)
{
    if (strcmp(s, "0") == 0)
        return true;
    if (*s == '-')
        s++;
    if (*s < '1' || *s > '9')
        return false;
    size_t n = strspn(s, "0123456789");
    return n <= 18 && s[n] == '\0';
}

/* A uuid as PostgreSQL prints it: lower case, 8-4-4-4-12. */
static bool canonical_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : strchr("0123456789abcdef", s[i]) == NULL)
            return false;
    }
    return true;
}

/* True when text, cast to col's type, is equal to another canonical value only if the
 * two texts are equal. */
static bool canonical_key(const Column *col, const char *text)
{
    switch (col->kind) {
    case MODEL_COL_TEXT:
        return true;
    case MODEL_COL_VARCHAR:
        /* A value is stored as it is or refused, never cut (applier.h), but an assignment
         * drops blanks past the length: in varchar(4), "abcd " is the row "abcd". */
        return strcmp(col->sql_type, "character varying") == 0 || text[0] == '\0' ||
               text[strlen(text) - 1] != ' ';
    case MODEL_COL_SMALLINT:
    case MODEL_COL_INTEGER:
    case MODEL_COL_BIGINT:
        return canonical_integer(text);
    case MODEL_COL_UUID:
        return canonical_uuid(text);
    default:
        return false;
    }
}

bool applier_row_key(const ApplierPlan *plan, const BoundStatement *b, StrBuf *ret_key)
{
    const StatementInfo *info = &plan->infos[b->statement];
    const Model *m = plan->model;

    if (info->key_params == NULL)
        return false;
    strbuf_reset(ret_key);
    for (size_t k = 0; k < m->nkey; k++) {
        const char *v = b->params[info->key_params[k]];
        if (v == NULL || !canonical_key(&m->columns[m->key[k]], v))
            return false;
        /* length-prefixed, so no value can run into the next */
        strbuf_appendf(ret_key, "%zu:", strlen(v));
        strbuf_append(ret_key, v);
    }
    return true;
}

void bound_reset(Bound *b)
{
    bound_truncate(b, 0);
}

void bound_done(Bound *b)
{
    bound_reset(b);
    free(b->items);
    *b = (Bound){0};
}
