/* expr_value.c - the Value of the expression language: copies, conversion from JSON, the
 * text a SQL parameter carries (compact JSON with the shortest spelling of reals), and
 * reading a value as a number. A Value owns its text and one reference to its JSON; every
 * function here leaves its result a valid Value that value_done releases.
 */
#include "model/expr.h"
#include "model/expr_internal.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

void value_done(Value *v)
{
    free(v->text);
    json_decref(v->json);
    *v = (Value){.kind = EXPR_VAL_NULL};
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

void value_set_computed(Value *ret, double x)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.15g", x == 0 ? 0.0 : x);
    *ret = (Value){.kind = EXPR_VAL_NUMBER, .number = strtod(buf, NULL), .text = xstrdup(buf)};
}

void value_set_string(Value *ret, char *owned)
{
    *ret = (Value){.kind = EXPR_VAL_STRING, .text = owned};
}

void value_from_json(const json_t *j, Value *ret)
{
    *ret = (Value){.kind = EXPR_VAL_NULL};
    if (j == NULL)
        return;
    switch (json_typeof(j)) {
    case JSON_TRUE:
    case JSON_FALSE:
        *ret = (Value){.kind = EXPR_VAL_BOOL, .boolean = json_is_true(j)};
        break;
    case JSON_INTEGER:
        *ret = (Value){.kind = EXPR_VAL_NUMBER, .number = (double)json_integer_value(j)};
        ret->text = xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(j));
        break;
    case JSON_REAL:
        *ret = (Value){.kind = EXPR_VAL_NUMBER, .number = json_real_value(j)};
        ret->text = number_spell_real(ret->number);
        break;
    case JSON_STRING:
        value_set_string(ret, xstrndup(json_string_value(j), json_string_length(j)));
        break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        *ret = (Value){.kind = EXPR_VAL_JSON, .json = json_ref_const(j)};
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
    case EXPR_VAL_NULL:
        return NULL;
    case EXPR_VAL_BOOL:
        return xstrdup(v->boolean ? "true" : "false");
    case EXPR_VAL_NUMBER:
    case EXPR_VAL_STRING:
        return xstrdup(v->text);
    case EXPR_VAL_JSON: {
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
    assert(v->kind != EXPR_VAL_STRING || v->text != NULL);
    if (v->kind == EXPR_VAL_NUMBER) {
        *ret = v->number;
        return true;
    }
    return v->kind == EXPR_VAL_STRING && text_spells_number(v->text, ret);
}

void value_describe(const Value *v, char *buf, size_t size)
{
    const int shown = 60;
    switch (v->kind) {
    case EXPR_VAL_NULL:
        snprintf(buf, size, "null");
        break;
    case EXPR_VAL_BOOL:
        snprintf(buf, size, "%s", v->boolean ? "true" : "false");
        break;
    case EXPR_VAL_NUMBER:
        snprintf(buf, size, "%s", v->text);
        break;
    case EXPR_VAL_STRING:
        snprintf(buf, size, "\"%.*s%s\"", shown, v->text,
                 strlen(v->text) > (size_t)shown ? "..." : "");
        break;
    case EXPR_VAL_JSON:
        snprintf(buf, size, "%s", json_is_array(v->json) ? "an array" : "an object");
        break;
    }
}
