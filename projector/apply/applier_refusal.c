/* applier_refusal.c - the column a statement refused by PostgreSQL is about, for the
 * error of a dead letter. PostgreSQL names the column of a null it refuses, but of a value
 * that does not convert or does not fit only the type ("value too long for type character
 * varying(4)"); this finds the column from the parameter it reports or from that type.
 *
 * Pure: reads the refusal's fields, the statement's parameter sources and its action. It
 * only ever adds a name to PostgreSQL's message; a refusal it cannot place stays as it is.
 */
#include "apply/applier.h"
#include "apply/applier_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFUSAL_MAX_COLUMNS 32 /* candidates named at most; an action has few */

/* The parameter number in the context PostgreSQL gives a value that failed to convert
 * while the statement was bound ("unnamed portal parameter $3 = '...'"; the "$n" stays
 * the same in every language); 0 when there is none. */
static size_t refusal_param(const char *context)
{
    const char *p = context != NULL ? strchr(context, '$') : NULL;
    while (p != NULL && !isdigit((unsigned char)p[1]))
        p = strchr(p + 1, '$');
    return p != NULL ? (size_t)strtoul(p + 1, NULL, 10) : 0;
}

/* `column "c"`, or for a lookup's where value what applier_bind says of its null. */
static void refusal_describe_param(const ParamSource *ps, StrBuf *ret)
{
    if (ps->role == APPLIER_PARAM_LOOKUP_WHERE)
        strbuf_appendf(ret, "where column \"%s\" of the lookup for \"%s\"", ps->column, ps->target);
    else
        strbuf_appendf(ret, "column \"%s\"", ps->column);
}

/* True when word occurs in text on its own: not inside a longer name, nor followed by a
 * "(" that would give it a modifier ("character varying" is not "character varying(4)"). */
static bool refusal_has_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = text != NULL ? strstr(text, word) : NULL; p != NULL;
         p = strstr(p + 1, word)) {
        bool starts = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
        char after = p[n];
        if (starts && !(isalnum((unsigned char)after) || after == '_' || after == '('))
            return true;
    }
    return false;
}

/* numeric(p,s) refuses an overflow with "numeric field overflow" and, in the detail, "A
 * field with precision p, scale s must round to ...". */
static bool refusal_names_scale(const Column *col, const char *detail)
{
    int p, s;
    char want[64];
    if (detail == NULL || col->kind != MODEL_COL_NUMERIC ||
        sscanf(col->sql_type, "numeric(%d,%d)", &p, &s) != 2)
        return false;
    snprintf(want, sizeof want, "precision %d, scale %d", p, s);
    return strstr(detail, want) != NULL;
}

/* True when the message names a type of the model's (so it is not about another). */
static bool refusal_names_a_type(const char *primary)
{
    static const char *const types[] = {"smallint", "integer", "bigint",    "numeric", "real",
                                        "double",   "text",    "character", "boolean", "timestamp",
                                        "date",     "uuid",    "json"};
    for (size_t i = 0; i < ARRAY_SIZE(types); i++)
        if (primary != NULL && strstr(primary, types[i]) != NULL)
            return true;
    return false;
}

/* The columns an action gives a value to or compares with, each once. */
static size_t refusal_columns(const Model *m, const Action *a, const Column **cols)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nset + a->nadd + a->nwhere; i++) {
        const Assign *as = i < a->nset             ? &a->set[i]
                           : i < a->nset + a->nadd ? &a->add[i - a->nset]
                                                   : &a->where[i - a->nset - a->nadd];
        const Column *col = &m->columns[as->column];
        bool seen = false;
        for (size_t j = 0; j < n; j++)
            seen |= cols[j] == col;
        if (!seen && n < REFUSAL_MAX_COLUMNS)
            cols[n++] = col;
    }
    return n;
}

/* Keeps the columns of cols[0 .. n) that tier says the refusal names; returns how many. */
static size_t refusal_filter(const Column **cols, size_t n, int tier, const ApplierRefusal *r)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const Column *col = cols[i];
        bool keep;
        if (tier == 0)
            keep = refusal_names_scale(col, r->detail);
        else if (tier == 1)
            keep = refusal_has_word(r->primary, col->sql_type);
        else /* floating point overflow names no type: "value out of range: overflow" */
            keep = strcmp(r->sqlstate, "22003") == 0 && !refusal_names_a_type(r->primary) &&
                   (col->kind == MODEL_COL_REAL || col->kind == MODEL_COL_DOUBLE);
        if (keep)
            cols[kept++] = col;
    }
    return kept;
}

/* True when value v would be too long for col, a varchar(n), on a UTF-8 server: more than
 * n characters once trailing blanks (which an assignment drops) are gone. */
static bool refusal_too_long(const Column *col, const char *v)
{
    long n;
    if (v == NULL || col->kind != MODEL_COL_VARCHAR ||
        sscanf(col->sql_type, "character varying(%ld)", &n) != 1)
        return false;
    size_t len = strlen(v);
    while (len > 0 && v[len - 1] == ' ')
        len--;
    char *trimmed = xstrndup(v, len);
    bool too_long = utf8_length(trimmed) > (size_t)n;
    free(trimmed);
    return too_long;
}

/* Of several varchar(n) candidates, those whose value is too long, when any is. */
static size_t refusal_by_value(const StatementInfo *info, const BoundStatement *b,
                               const Column **cols, size_t n)
{
    const Column *longer[REFUSAL_MAX_COLUMNS];
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        bool too_long = false;
        for (int k = 0; k < b->nparams; k++)
            too_long |= info->params[k].col == cols[i] &&
                        info->params[k].role != APPLIER_PARAM_LOOKUP_WHERE &&
                        refusal_too_long(cols[i], b->params[k]);
        if (too_long)
            longer[kept++] = cols[i];
    }
    if (kept == 0)
        return n;
    for (size_t i = 0; i < kept; i++)
        cols[i] = longer[i];
    return kept;
}

bool applier_refused_column(const ApplierPlan *plan, const BoundStatement *b,
                            const ApplierRefusal *r, StrBuf *ret)
{
    const StatementInfo *info = &plan->infos[b->statement];
    const Model *m = plan->model;
    const Column *cols[REFUSAL_MAX_COLUMNS];

    /* data exceptions only: a constraint's refusal names its column or constraint */
    if (r->sqlstate == NULL || strncmp(r->sqlstate, "22", 2) != 0)
        return false;
    size_t param = refusal_param(r->context);
    if (param > 0 && param <= (size_t)b->nparams) {
        refusal_describe_param(&info->params[param - 1], ret);
        return true;
    }
    const Action *a = &m->handlers[info->handler].actions[info->action];
    size_t n = 0;
    for (int tier = 0; tier < 3 && n == 0; tier++)
        n = refusal_filter(cols, refusal_columns(m, a, cols), tier, r);
    if (n == 0)
        return false;
    if (n > 1)
        n = refusal_by_value(info, b, cols, n);
    strbuf_append(ret, "column ");
    for (size_t i = 0; i < n; i++)
        strbuf_appendf(ret, "%s\"%s\"", i == 0 ? "" : i + 1 < n ? ", " : " or ", cols[i]->name);
    return true;
}
