/* columns.c - the columns of a read model and everything that names them by the
 * model's own declaration: column types (PostgreSQL's canonical spellings), nullable and
 * default, the key, the version column and the indexes.
 *
 * Invariant: a column with any error in its declaration keeps sql_type NULL and is still
 * added, so later references to it do not report it as unknown; checks that would only
 * repeat its error (type rules, required upsert columns) skip it.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model/loader.h"

#define MODEL_VARCHAR_MAX 10485760L
#define MODEL_NUMERIC_MAX 1000L

/* ---------------------------------------------------------------- column types */

typedef struct TypeName {
    const char *spelling; /* lower case, single spaces */
    ColumnKind kind;
    const char *canonical;
} TypeName;

static const TypeName model_type_names[] = {
    {"text", MODEL_COL_TEXT, "text"},
    {"smallint", MODEL_COL_SMALLINT, "smallint"},
    {"int2", MODEL_COL_SMALLINT, "smallint"},
    {"integer", MODEL_COL_INTEGER, "integer"},
    {"int", MODEL_COL_INTEGER, "integer"},
    {"int4", MODEL_COL_INTEGER, "integer"},
    {"bigint", MODEL_COL_BIGINT, "bigint"},
    {"int8", MODEL_COL_BIGINT, "bigint"},
    {"numeric", MODEL_COL_NUMERIC, "numeric"},
    {"decimal", MODEL_COL_NUMERIC, "numeric"},
    {"real", MODEL_COL_REAL, "real"},
    {"float4", MODEL_COL_REAL, "real"},
    {"double precision", MODEL_COL_DOUBLE, "double precision"},
    {"float8", MODEL_COL_DOUBLE, "double precision"},
    {"double", MODEL_COL_DOUBLE, "double precision"},
    {"boolean", MODEL_COL_BOOLEAN, "boolean"},
    {"bool", MODEL_COL_BOOLEAN, "boolean"},
    {"timestamptz", MODEL_COL_TIMESTAMPTZ, "timestamp with time zone"},
    {"timestamp with time zone", MODEL_COL_TIMESTAMPTZ, "timestamp with time zone"},
    {"timestamp", MODEL_COL_TIMESTAMP, "timestamp without time zone"},
    {"timestamp without time zone", MODEL_COL_TIMESTAMP, "timestamp without time zone"},
    {"date", MODEL_COL_DATE, "date"},
    {"uuid", MODEL_COL_UUID, "uuid"},
    {"jsonb", MODEL_COL_JSONB, "jsonb"},
    {"varchar", MODEL_COL_VARCHAR, "character varying"},
    {"character varying", MODEL_COL_VARCHAR, "character varying"},
};

/* Lower case, runs of blanks collapsed to one space, no blanks around "(", "," and ")". */
static char *type_normalize(const char *text)
{
    StrBuf sb = {0};
    bool blank = false;
    for (const char *p = text; *p != '\0'; p++) {
        char c = *p;
        if (c == ' ' || c == '\t') {
            blank = true;
            continue;
        }
        bool glue = strchr("(,)", c) != NULL;
        if (blank && sb.len > 0 && !glue && strchr("(,", sb.buf[sb.len - 1]) == NULL)
            strbuf_append(&sb, " ");
        blank = false;
        char lower = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        strbuf_appendn(&sb, &lower, 1);
    }
    return strbuf_take(&sb);
}

/* Parses "(a)" or "(a,b)" at s (digits only); returns the number of values or -1. */
static int type_modifiers(const char *s, long *a, long *b)
{
    char *end;
    if (s[0] != '(' || !(s[1] >= '0' && s[1] <= '9'))
        return -1;
    *a = strtol(s + 1, &end, 10);
    if (end[0] == ')' && end[1] == '\0')
        return 1;
    if (end[0] != ',' || !(end[1] >= '0' && end[1] <= '9'))
        return -1;
    *b = strtol(end + 1, &end, 10);
    return (end[0] == ')' && end[1] == '\0') ? 2 : -1;
}

static const TypeName *type_lookup(const char *base, size_t n)
{
    for (size_t i = 0; i < ARRAY_SIZE(model_type_names); i++)
        if (strlen(model_type_names[i].spelling) == n &&
            memcmp(model_type_names[i].spelling, base, n) == 0)
            return &model_type_names[i];
    return NULL;
}

/* Checks the modifiers of varchar(n) and numeric(p[,s]) and returns the canonical
 * spelling, or NULL after reporting the range that was expected. */
static char *type_with_modifiers(ModelFile *f, const YamlNode *n, const TypeName *t, int count,
                                 long a, long b)
{
    const char *text = model_text(f, n);
    if (t->kind == MODEL_COL_VARCHAR) {
        if (a < 1 || a > MODEL_VARCHAR_MAX) {
            model_error(f, n, "invalid type \"%s\": length must be 1..%ld", text,
                        MODEL_VARCHAR_MAX);
            return NULL;
        }
        return xasprintf("character varying(%ld)", a);
    }
    if (a < 1 || a > MODEL_NUMERIC_MAX) {
        model_error(f, n, "invalid type \"%s\": precision must be 1..%ld", text, MODEL_NUMERIC_MAX);
        return NULL;
    }
    if (count == 1)
        b = 0;
    if (b < 0 || b > a) {
        model_error(f, n, "invalid type \"%s\": scale must be 0..%ld", text, a);
        return NULL;
    }
    return xasprintf("numeric(%ld,%ld)", a, b);
}

/* Sets c->sql_type and c->kind from the type scalar n; reports unknown types. */
static void parse_type(ModelFile *f, const YamlNode *n, Column *c)
{
    const char *text = model_scalar(f, n, "type", "a column type");
    if (text == NULL)
        return;
    char *norm = type_normalize(text);
    const char *paren = strchr(norm, '(');
    size_t base_len = paren != NULL ? (size_t)(paren - norm) : strlen(norm);
    const TypeName *t = type_lookup(norm, base_len);
    long a = 0, b = 0;
    int count = paren != NULL ? type_modifiers(paren, &a, &b) : 0;
    bool takes_mods = t != NULL && (t->kind == MODEL_COL_VARCHAR || t->kind == MODEL_COL_NUMERIC);
    if (t == NULL || count < 0 || (count > 0 && !takes_mods) ||
        (t->kind == MODEL_COL_VARCHAR && count > 1)) {
        model_error(f, n,
                    "unknown column type \"%s\": expected one of text, varchar(n), smallint, "
                    "integer, bigint, numeric(p,s), real, double precision, boolean, "
                    "timestamptz, timestamp, date, uuid, jsonb",
                    text);
    } else if (count == 0) {
        c->kind = t->kind;
        c->sql_type = xstrdup(t->canonical);
    } else {
        c->kind = t->kind;
        c->sql_type = type_with_modifiers(f, n, t, count, a, b);
    }
    free(norm);
}

/* ---------------------------------------------------------------- columns */

static const char *const column_keys[] = {"type", "nullable", "default"};

static void parse_nullable(ModelFile *f, const YamlNode *n, Column *c)
{
    const char *text = yamlsrc_scalar(n);
    bool plain = text != NULL && !yamlsrc_scalar_quoted(n);
    if (plain && strcasecmp(text, "true") == 0)
        c->nullable = true;
    else if (plain && strcasecmp(text, "false") == 0)
        c->nullable = false;
    else if (text != NULL)
        model_error(f, n, "invalid value \"%s\" for \"nullable\": expected true or false", text);
    else
        model_error(f, n, "invalid value for \"nullable\": expected true or false, found %s",
                    model_found_name(n));
}

static void parse_default(ModelFile *f, const YamlNode *n, Column *c)
{
    if (yamlsrc_scalar_is_null(n))
        return;
    const char *text = model_scalar(f, n, "default", "a literal");
    if (text == NULL)
        return;
    c->default_text = xstrdup(text);
    const char *problem = c->sql_type != NULL ? model_literal_problem(c->kind, text) : NULL;
    if (problem != NULL)
        model_error(f, n, "default \"%s\" for column \"%s\" %s", text, c->name, problem);
}

/* {type: ..., nullable: ..., default: ...} */
static void parse_column_spec(ModelFile *f, const YamlNode *map, Column *c)
{
    model_check_keys(f, map, column_keys, ARRAY_SIZE(column_keys));
    const YamlNode *type = yamlsrc_map_get(f->src, map, "type");
    const YamlNode *nullable = yamlsrc_map_get(f->src, map, "nullable");
    const YamlNode *def = yamlsrc_map_get(f->src, map, "default");
    if (type != NULL)
        parse_type(f, type, c);
    else if (model_key_missing(f, map, "type", column_keys, ARRAY_SIZE(column_keys)))
        model_error(f, map, "missing required key \"type\" in column \"%s\"", c->name);
    if (nullable != NULL)
        parse_nullable(f, nullable, c);
    if (def != NULL)
        parse_default(f, def, c);
}

static void parse_column(ModelFile *f, const YamlNode *key, const YamlNode *val)
{
    const char *name = yamlsrc_scalar(key);
    size_t errors_before = f->load->diag->count;
    Column c = {.name = xstrdup(name), .line = yamlsrc_line(key), .column = yamlsrc_column(key)};
    if (!sql_ident_is_safe(name))
        model_error(f, key, "invalid column name \"%s\": " MODEL_IDENT_RULE, name);
    else if (strcmp(name, "add") == 0 || strcmp(name, "when") == 0)
        model_error(f, key, "invalid column name \"%s\": add and when are reserved words", name);
    if (yamlsrc_is_mapping(val))
        parse_column_spec(f, val, &c);
    else if (yamlsrc_is_scalar(val) && !yamlsrc_scalar_is_null(val))
        parse_type(f, val, &c);
    else
        model_error(f, val,
                    "invalid value for column \"%s\": expected a type or a mapping with type, "
                    "nullable and default, found %s",
                    name, model_found_name(val));
    /* Kept even when broken, so that references to it do not report it as unknown; a
     * NULL type marks it broken, and checks that would only repeat its error skip it. */
    if (f->load->diag->count > errors_before) {
        free(c.sql_type);
        c.sql_type = NULL;
    }
    Model *m = f->m;
    m->columns = xrealloc(m->columns, (m->ncolumns + 1) * sizeof *m->columns);
    m->columns[m->ncolumns++] = c;
}

void model_parse_columns(ModelFile *f, const YamlNode *n)
{
    if (!yamlsrc_is_mapping(n)) {
        model_error(f, n,
                    "invalid value for \"columns\": expected a mapping of column names to "
                    "types, found %s",
                    model_found_name(n));
        return;
    }
    if (yamlsrc_map_count(n) == 0) {
        model_error(f, n, "\"columns\" is empty: expected at least one column");
        return;
    }
    model_check_keys(f, n, NULL, 0);
    for (size_t i = 0; i < yamlsrc_map_count(n); i++)
        if (model_map_key(f, n, i) != NULL)
            parse_column(f, yamlsrc_map_key(f->src, n, i), yamlsrc_map_value(f->src, n, i));
}

/* ---------------------------------------------------------------- key, version, indexes */

/* How a list of column names is named in messages: `key` or `indexes` entries. */
typedef struct ColumnList {
    const char *what;  /* "key" or "index" */
    const char *owner; /* `for "key"` or `in "indexes"` */
} ColumnList;

static void list_add_name(ModelFile *f, const YamlNode *n, const ColumnList *cl, size_t **cols,
                          size_t *ncols)
{
    const char *name = yamlsrc_scalar(n);
    if (name == NULL || yamlsrc_scalar_is_null(n)) {
        model_error(f, n, "invalid column name in %s: expected a scalar, found %s", cl->what,
                    model_found_name(n));
        return;
    }
    int col = model_find_column(f->m, name);
    if (col < 0) {
        if (f->m->ncolumns > 0)
            model_error_unknown_column(f, yamlsrc_line(n), yamlsrc_column(n), f->m, name, cl->what);
        return;
    }
    for (size_t i = 0; i < *ncols; i++) {
        if ((*cols)[i] == (size_t)col) {
            model_error(f, n, "duplicate column \"%s\" in %s", name, cl->what);
            return;
        }
    }
    *cols = xrealloc(*cols, (*ncols + 1) * sizeof **cols);
    (*cols)[(*ncols)++] = (size_t)col;
}

/* A sequence of column names or one name, resolved to column indices. */
static void parse_column_list(ModelFile *f, const YamlNode *n, const ColumnList *cl, size_t **cols,
                              size_t *ncols)
{
    if (yamlsrc_is_scalar(n) && !yamlsrc_scalar_is_null(n)) {
        list_add_name(f, n, cl, cols, ncols);
    } else if (!yamlsrc_is_sequence(n)) {
        model_error(f, n,
                    "invalid value %s: expected a sequence of column names or one name, "
                    "found %s",
                    cl->owner, model_found_name(n));
    } else if (yamlsrc_seq_count(n) == 0) {
        model_error(f, n, "%s is empty: expected at least one column name",
                    strcmp(cl->what, "key") == 0 ? "\"key\"" : "index");
    } else {
        for (size_t i = 0; i < yamlsrc_seq_count(n); i++)
            list_add_name(f, yamlsrc_seq_item(f->src, n, i), cl, cols, ncols);
    }
}

void model_parse_key(ModelFile *f, const YamlNode *n)
{
    static const ColumnList cl = {.what = "key", .owner = "for \"key\""};
    Model *m = f->m;
    parse_column_list(f, n, &cl, &m->key, &m->nkey);
    for (size_t i = 0; i < m->nkey; i++) {
        Column *c = &m->columns[m->key[i]];
        c->in_key = true;
        if (c->nullable)
            model_error_at(f, c->line, c->column, "key column \"%s\" cannot be nullable", c->name);
    }
}

void model_parse_version(ModelFile *f, const YamlNode *n)
{
    Model *m = f->m;
    const char *name = model_scalar(f, n, "version", "a column name");
    if (name == NULL)
        return;
    int col = model_find_column(m, name);
    if (col < 0) {
        if (m->ncolumns > 0)
            model_error_unknown_column(f, yamlsrc_line(n), yamlsrc_column(n), m, name, "version");
        return;
    }
    const Column *c = &m->columns[col];
    bool integral = c->kind == MODEL_COL_SMALLINT || c->kind == MODEL_COL_INTEGER ||
                    c->kind == MODEL_COL_BIGINT || c->kind == MODEL_COL_NUMERIC;
    if (c->sql_type != NULL && !integral) {
        model_error(f, n,
                    "version column \"%s\" is %s: expected smallint, integer, bigint or numeric",
                    name, c->sql_type);
        return;
    }
    m->version_column = col;
}

void model_parse_indexes(ModelFile *f, const YamlNode *n)
{
    static const ColumnList cl = {.what = "index", .owner = "in \"indexes\""};
    Model *m = f->m;
    if (!yamlsrc_is_sequence(n)) {
        model_error(f, n,
                    "invalid value for \"indexes\": expected a sequence of indexes, "
                    "found %s",
                    model_found_name(n));
        return;
    }
    for (size_t i = 0; i < yamlsrc_seq_count(n); i++) {
        Index ix = {0};
        parse_column_list(f, yamlsrc_seq_item(f->src, n, i), &cl, &ix.columns, &ix.ncolumns);
        if (ix.ncolumns == 0) {
            free(ix.columns);
            continue;
        }
        m->indexes = xrealloc(m->indexes, (m->nindexes + 1) * sizeof *m->indexes);
        m->indexes[m->nindexes++] = ix;
    }
}
