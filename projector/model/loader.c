/* loader.c - what every part of the read-model loader needs: diagnostics at a YAML node,
 * the text of a scalar as the author meant it, mapping keys checked against what a
 * section allows (with a hint for misspellings), and the literal rules of column kinds.
 *
 * Adds diagnostics and never stops: the caller carries on so one run reports every error.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model/loader.h"

/* ---------------------------------------------------------------- diagnostics helpers */

void model_error_at(ModelFile *f, int line, int column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_addv(f->load->diag, f->file, line, column, fmt, ap);
    va_end(ap);
}

void model_error(ModelFile *f, const YamlNode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_addv(f->load->diag, f->file, yamlsrc_line(n), yamlsrc_column(n), fmt, ap);
    va_end(ap);
}

const char *model_found_name(const YamlNode *n)
{
    return yamlsrc_scalar_is_null(n) ? "null" : yamlsrc_kind_name(n);
}

ModelFile model_file_of(ModelLoad *l, size_t i)
{
    return (ModelFile){.load = l,
                       .src = l->meta[i].src,
                       .file = l->models[i].file,
                       .text = l->meta[i].text,
                       .len = l->meta[i].len,
                       .m = &l->models[i],
                       .index = i};
}

/* ---------------------------------------------------------------- flow scalars */

/* In a flow collection a plain scalar ends at the first ',', so `{type: numeric(12,2)}` or
 * `{name: concat($.a, $.b)}` reaches us as "numeric(12" followed by a key "2)" with a null
 * value. The contract's own examples are written that way, so a plain scalar that stops
 * at a ',' with a '(' still open is read again from the source, through the balancing ')'
 * to the ',', '}' or ']' that really ends it. The entries its text swallowed are then
 * skipped. (YAML still rejects '[', ']', '{' and '}' in such a scalar: those need quotes.) */

/* Byte offset of libyaml's character index (it counts code points, after any BOM). */
static size_t char_to_byte(const char *text, size_t len, size_t index)
{
    size_t b = (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    for (size_t c = 0; b < len; b++) {
        if (((unsigned char)text[b] & 0xC0) == 0x80)
            continue;
        if (c++ == index)
            return b;
    }
    return len;
}

/* The end (exclusive) of the flow scalar starting at from when commas inside parentheses
 * are not separators: the first ',', '}' or ']' outside parentheses and '...' literals,
 * with blanks before it trimmed. 0 when the parentheses do not balance on this line. */
static size_t balanced_end(const char *text, size_t len, size_t from)
{
    int depth = 0;
    bool quoted = false;
    size_t b = from;
    for (; b < len && text[b] != '\n' && depth >= 0; b++) {
        char c = text[b];
        if (quoted)
            quoted = c != '\'';
        else if (c == '\'')
            quoted = true;
        else if (c == '(')
            depth++;
        else if (c == ')')
            depth--;
        else if (depth == 0 && (c == ',' || c == '}' || c == ']'))
            break;
        else if (depth > 0 && (c == '}' || c == ']'))
            return 0;
    }
    if (depth != 0 || quoted)
        return 0;
    while (b > from && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
        b--;
    return b;
}

/* The byte span of n's intended text when n was cut short at a ',', else false. */
static bool flow_span(const ModelFile *f, const YamlNode *n, size_t *ret_from, size_t *ret_to)
{
    if (!yamlsrc_is_scalar(n) || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || f->text == NULL)
        return false;
    const char *s = yamlsrc_scalar(n);
    int open = 0;
    for (const char *p = s; *p != '\0'; p++)
        open += (*p == '(') - (*p == ')');
    if (open <= 0)
        return false;
    size_t from = char_to_byte(f->text, f->len, n->start_mark.index);
    size_t end = char_to_byte(f->text, f->len, n->end_mark.index);
    while (end < f->len && (f->text[end] == ' ' || f->text[end] == '\t'))
        end++;
    if (end >= f->len || f->text[end] != ',')
        return false;
    size_t to = balanced_end(f->text, f->len, from);
    if (to == 0)
        return false;
    *ret_from = from;
    *ret_to = to;
    return true;
}

const char *model_text(ModelFile *f, const YamlNode *n)
{
    size_t from, to;
    if (!flow_span(f, n, &from, &to))
        return yamlsrc_scalar(n);
    ModelLoad *l = f->load;
    xgrow((void **)&l->strings, &l->strings_cap, l->nstrings + 1, sizeof *l->strings);
    l->strings[l->nstrings] = xstrndup(f->text + from, to - from);
    return l->strings[l->nstrings++];
}

/* True when the i-th entry of map lies inside an earlier value's repaired text. */
static bool entry_swallowed(const ModelFile *f, const YamlNode *map, size_t i)
{
    const YamlNode *key = yamlsrc_map_key(f->src, map, i);
    for (size_t j = 0; j < i; j++) {
        size_t from, to;
        if (!flow_span(f, yamlsrc_map_value(f->src, map, j), &from, &to))
            continue;
        size_t at = char_to_byte(f->text, f->len, key->start_mark.index);
        if (at > from && at < to)
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------- scalars */

const char *model_scalar(ModelFile *f, const YamlNode *n, const char *what, const char *expected)
{
    if (yamlsrc_is_scalar(n) && !yamlsrc_scalar_is_null(n))
        return model_text(f, n);
    model_error(f, n, "invalid value for \"%s\": expected %s, found %s", what, expected,
                model_found_name(n));
    return NULL;
}

static void append_list(StrBuf *sb, const char *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            strbuf_append(sb, ", ");
        strbuf_append(sb, items[i]);
    }
}

void model_error_unknown_column(ModelFile *f, int line, int column, const Model *m,
                                const char *name, const char *context)
{
    StrBuf sb = {0};
    for (size_t i = 0; i < m->ncolumns; i++) {
        if (i > 0)
            strbuf_append(&sb, ", ");
        strbuf_append(&sb, m->columns[i].name);
    }
    model_error_at(f, line, column, "unknown column \"%s\" in %s: the columns are %s", name,
                   context, sb.buf != NULL ? sb.buf : "");
    strbuf_done(&sb);
}

/* ---------------------------------------------------------------- mapping keys */

/* The index of the first key of map spelled like the i-th (i itself when it is first). */
static size_t first_key_index(const YamlSrc *src, const YamlNode *map, size_t i, const char *k)
{
    for (size_t j = 0; j < i; j++) {
        const char *prev = yamlsrc_scalar(yamlsrc_map_key(src, map, j));
        if (prev != NULL && strcmp(prev, k) == 0)
            return j;
    }
    return i;
}

static bool name_in(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

void model_check_keys(ModelFile *f, const YamlNode *map, const char *const *allowed,
                      size_t nallowed)
{
    size_t n = yamlsrc_map_count(map);
    for (size_t i = 0; i < n; i++) {
        const YamlNode *key = yamlsrc_map_key(f->src, map, i);
        const char *k = yamlsrc_scalar(key);
        if (entry_swallowed(f, map, i))
            continue;
        size_t first = k != NULL ? first_key_index(f->src, map, i, k) : i;
        if (k == NULL) {
            model_error(f, key, "invalid key: expected a scalar, found %s", yamlsrc_kind_name(key));
        } else if (first != i) {
            model_error(f, key, "duplicate key \"%s\": first given at line %d", k,
                        yamlsrc_line(yamlsrc_map_key(f->src, map, first)));
        } else if (allowed != NULL && !name_in(k, allowed, nallowed)) {
            StrBuf sb = {0};
            append_list(&sb, allowed, nallowed);
            model_error(f, key, "unrecognized key \"%s\": expected one of %s", k, sb.buf);
            strbuf_done(&sb);
        }
    }
}

/* Edit distance, capped: strings longer than 32 bytes count as far apart. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), row[33];
    if (na > 32 || nb > 32)
        return SIZE_MAX;
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            best = up + 1 < best ? up + 1 : best;
            best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
            diag = up;
            row[j] = best;
        }
    }
    return row[nb];
}

bool model_key_missing(ModelFile *f, const YamlNode *map, const char *wanted,
                       const char *const *allowed, size_t nallowed)
{
    if (yamlsrc_map_get(f->src, map, wanted) != NULL)
        return false;
    for (size_t i = 0; i < yamlsrc_map_count(map); i++) {
        const char *k = yamlsrc_scalar(yamlsrc_map_key(f->src, map, i));
        size_t near = strlen(wanted) <= 3 ? 1 : 2;
        if (k != NULL && !name_in(k, allowed, nallowed) && edit_distance(k, wanted) <= near)
            return false;
    }
    return true;
}

const char *model_map_key(ModelFile *f, const YamlNode *map, size_t i)
{
    const char *k = yamlsrc_scalar(yamlsrc_map_key(f->src, map, i));
    if (k == NULL || first_key_index(f->src, map, i, k) != i || entry_swallowed(f, map, i))
        return NULL;
    return k;
}

/* ---------------------------------------------------------------- literals */

/* [+-] digits ['.' [digits]] | [+-] '.' digits, then an optional exponent. */
static bool spells_number(const char *s)
{
    size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    size_t int_digits = strspn(s + i, "0123456789"), frac_digits = 0;
    i += int_digits;
    if (s[i] == '.') {
        frac_digits = strspn(s + i + 1, "0123456789");
        i += 1 + frac_digits;
    }
    if (int_digits + frac_digits == 0)
        return false;
    if (s[i] == 'e' || s[i] == 'E') {
        size_t j = i + 1 + ((s[i + 1] == '+' || s[i + 1] == '-') ? 1 : 0);
        size_t exp_digits = strspn(s + j, "0123456789");
        if (exp_digits == 0)
            return false;
        i = j + exp_digits;
    }
    return s[i] == '\0';
}

static bool spells_integer(const char *s)
{
    size_t i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
    size_t digits = strspn(s + i, "0123456789");
    return digits > 0 && s[i + digits] == '\0';
}

const char *model_literal_problem(ColumnKind kind, const char *text)
{
    switch (kind) {
    case MODEL_COL_SMALLINT:
    case MODEL_COL_INTEGER:
    case MODEL_COL_BIGINT:
        if (!spells_number(text))
            return "is not a number";
        return spells_integer(text) ? NULL : "is not an integer";
    case MODEL_COL_NUMERIC:
    case MODEL_COL_REAL:
    case MODEL_COL_DOUBLE:
        return spells_number(text) ? NULL : "is not a number";
    case MODEL_COL_BOOLEAN:
        if (strcasecmp(text, "true") == 0 || strcasecmp(text, "false") == 0)
            return NULL;
        return "is not a boolean: expected true or false";
    default:
        return NULL;
    }
}
