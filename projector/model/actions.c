/* actions.c - the `on:` section of a read model: event types -> handlers -> actions
 * (upsert, update, delete), their column values, `when:` conditions and lookups.
 *
 * Values are parsed here (expressions through model/expr.h); lookups are queued while files are
 * read and resolved once every model is known. Columns, key and version must be parsed
 * before this file's functions run.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "model/loader.h"

/* What a value is for, which decides the rules it follows. */
typedef enum {
    USE_SET,         /* upsert columns and update set: (lookups allowed on non-key columns) */
    USE_ADD,         /* add: numeric columns only */
    USE_WHERE,       /* update and delete where: */
    USE_LOOKUP_WHERE /* a lookup's where: (names the source model's columns) */
} ValueUse;

typedef struct ValueCtx {
    const Model *target; /* whose columns the mapping names */
    ValueUse use;
    const char *section; /* for messages: "upsert", "set", "add", "where", ... */
    bool *seen;          /* per target column: named in this mapping (may be NULL) */
} ValueCtx;

typedef struct Assigns {
    Assign *items;
    size_t count;
} Assigns;

#define LOOKUP_FORM "{lookup: table.column, where: {...}}"

/* ---------------------------------------------------------------- expressions */

/* A path with [*] outside any function call: it yields an array, which only a jsonb
 * column can take as it is and arithmetic never can. */
static const Expr *bare_array_path(const Expr *e)
{
    const Expr *p;
    switch (e->kind) {
    case EXPR_PATH:
        for (size_t i = 0; i < e->nsteps; i++)
            if (e->steps[i].kind == EXPR_PATH_ALL)
                return e;
        return NULL;
    case EXPR_ARITH:
        p = bare_array_path(e->left);
        return p != NULL ? p : bare_array_path(e->right);
    case EXPR_NEGATE:
        return bare_array_path(e->left);
    default:
        return NULL;
    }
}

/* The position of the scalar's first character of text: one past an opening quote; 0
 * (unknown) for block scalars (| and >), whose text starts on a later line. */
static int scalar_text_column(const YamlNode *n)
{
    yaml_scalar_style_t style = n->data.scalar.style;
    if (style == YAML_LITERAL_SCALAR_STYLE || style == YAML_FOLDED_SCALAR_STYLE)
        return 0;
    return yamlsrc_column(n) + (yamlsrc_scalar_quoted(n) ? 1 : 0);
}

static void report_parse_error(ModelFile *f, const YamlNode *n, const PjError *err, int line,
                               int column)
{
    if (line <= 0 || column <= 0) {
        line = yamlsrc_line(n);
        column = yamlsrc_column(n);
    }
    model_error_at(f, line, column, "%s", err->message);
}

static Expr *parse_expression(ModelFile *f, const YamlNode *n, const Column *c)
{
    Expr *e;
    PjError err;
    int line = 0, column = 0;
    if (expr_parse(model_text(f, n), yamlsrc_line(n), scalar_text_column(n), &e, &err, &line,
                   &column) < 0) {
        report_parse_error(f, n, &err, line, column);
        return NULL;
    }
    const Expr *arr = bare_array_path(e);
    if (arr != NULL && !(arr == e && c->kind == MODEL_COL_JSONB)) {
        model_error_at(f, arr->line > 0 ? arr->line : yamlsrc_line(n),
                       arr->column > 0 ? arr->column : yamlsrc_column(n),
                       "path \"%s\" collects an array: use it inside sum() or length(), or "
                       "as the whole value of a jsonb column",
                       arr->text);
        return expr_free(e);
    }
    return e;
}

static void parse_when(ModelFile *f, const YamlNode *n, Action *a)
{
    PjError err;
    int line = 0, column = 0;
    if (model_scalar(f, n, "when", "a condition") == NULL)
        return;
    if (cond_parse(model_text(f, n), yamlsrc_line(n), scalar_text_column(n), &a->when, &err, &line,
                   &column) < 0)
        report_parse_error(f, n, &err, line, column);
}

/* ---------------------------------------------------------------- values */

/* A plain YAML null: fine where the column may be null, never in where: or add:. */
static bool null_allowed(ModelFile *f, const YamlNode *n, const Column *c, const ValueCtx *ctx)
{
    if (ctx->use == USE_ADD) {
        model_error(f, n, "value null for column \"%s\" is not a number", c->name);
        return false;
    }
    if (ctx->use == USE_WHERE || ctx->use == USE_LOOKUP_WHERE) {
        model_error(f, n, "value null for column \"%s\" in where matches no row", c->name);
        return false;
    }
    if (!c->nullable) {
        model_error(f, n, "value null for column \"%s\", which is not nullable", c->name);
        return false;
    }
    return true;
}

static Expr *parse_scalar_value(ModelFile *f, const YamlNode *n, const Column *c,
                                const ValueCtx *ctx)
{
    const char *text = model_text(f, n);
    if (yamlsrc_scalar_is_null(n)) {
        if (!null_allowed(f, n, c, ctx))
            return NULL;
        return expr_new_literal(text, true, yamlsrc_line(n), yamlsrc_column(n));
    }
    if (expr_looks_like_expression(text))
        return parse_expression(f, n, c);
    const char *problem = c->sql_type != NULL ? model_literal_problem(c->kind, text) : NULL;
    if (problem != NULL) {
        model_error(f, n, "value \"%s\" for column \"%s\" %s", text, c->name, problem);
        return NULL;
    }
    return expr_new_literal(text, false, yamlsrc_line(n), yamlsrc_column(n));
}

static void queue_lookup(ModelFile *f, const YamlNode *ref, const YamlNode *where, Assign *a)
{
    ModelLoad *l = f->load;
    a->lookup = xcalloc(1, sizeof *a->lookup);
    xgrow((void **)&l->pending, &l->pending_cap, l->npending + 1, sizeof *l->pending);
    l->pending[l->npending++] =
        (ModelPendingLookup){.owner = f->index, .lookup = a->lookup, .ref = ref, .where = where};
}

/* {lookup: table.column, where: {...}}: checked here as far as this file allows; the
 * table, column and where are resolved by model_resolve_lookups. */
static bool parse_lookup(ModelFile *f, const YamlNode *map, const Column *c, const ValueCtx *ctx,
                         Assign *a)
{
    static const char *const keys[] = {"lookup", "where"};
    const YamlNode *ref = yamlsrc_map_get(f->src, map, "lookup");
    const YamlNode *where = yamlsrc_map_get(f->src, map, "where");
    if (ctx->use != USE_SET || c->in_key) {
        const char *place = ctx->use == USE_SET   ? "for a key column"
                            : ctx->use == USE_ADD ? "in add"
                                                  : "in where";
        model_error(f, map,
                    "a lookup cannot be used %s: lookups are only allowed as upsert and set "
                    "values of non-key columns",
                    place);
        return false;
    }
    model_check_keys(f, map, keys, ARRAY_SIZE(keys));
    const char *text = model_scalar(f, ref, "lookup", "table.column");
    if (text == NULL)
        return false;
    const char *dot = strrchr(text, '.');
    if (dot == NULL || dot == text || dot[1] == '\0') {
        model_error(f, ref, "invalid lookup \"%s\": expected table.column", text);
        return false;
    }
    if (where == NULL) {
        if (!model_key_missing(f, map, "where", keys, ARRAY_SIZE(keys)))
            return false;
        model_error(f, map,
                    "lookup \"%s\" has no \"where\": expected a mapping of the source table's "
                    "columns to values",
                    text);
        return false;
    }
    queue_lookup(f, ref, where, a);
    return true;
}

static bool parse_value(ModelFile *f, const YamlNode *n, const Column *c, const ValueCtx *ctx,
                        Assign *a)
{
    bool is_lookup = yamlsrc_map_get(f->src, n, "lookup") != NULL;
    if (yamlsrc_is_mapping(n) && is_lookup)
        return parse_lookup(f, n, c, ctx, a);
    if (yamlsrc_is_scalar(n)) {
        a->expr = parse_scalar_value(f, n, c, ctx);
        return a->expr != NULL;
    }
    bool lookup_ok = ctx->use == USE_SET && !c->in_key;
    model_error(f, n, "invalid value for column \"%s\": expected %s, found %s", c->name,
                lookup_ok ? "a value or " LOOKUP_FORM : "a value", yamlsrc_kind_name(n));
    return false;
}

/* One `column: value` entry of a mapping; appended to out when it parses. */
static void parse_assign(ModelFile *f, const YamlNode *key, const YamlNode *val,
                         const ValueCtx *ctx, Assigns *out)
{
    const char *name = yamlsrc_scalar(key);
    int col = model_find_column(ctx->target, name);
    if (col < 0) {
        if (ctx->target->ncolumns > 0)
            model_error_unknown_column(f, yamlsrc_line(key), yamlsrc_column(key), ctx->target, name,
                                       ctx->section);
        return;
    }
    const Column *c = &ctx->target->columns[col];
    if (ctx->seen != NULL)
        ctx->seen[col] = true;
    if (ctx->use == USE_ADD && c->sql_type != NULL && !column_kind_is_numeric(c->kind)) {
        model_error(f, key, "add: column \"%s\" is %s, not a number", name, c->sql_type);
        return;
    }
    Assign a = {.column = (size_t)col, .line = yamlsrc_line(key), .column_no = yamlsrc_column(key)};
    if (!parse_value(f, val, c, ctx, &a))
        return;
    out->items = xrealloc(out->items, (out->count + 1) * sizeof *out->items);
    out->items[out->count++] = a;
}

/* A mapping of columns to values: set:, add:, where: or a lookup's where:. */
static void parse_assign_map(ModelFile *f, const YamlNode *map, const char *key_name,
                             const ValueCtx *ctx, Assigns *out)
{
    if (!yamlsrc_is_mapping(map)) {
        model_error(f, map,
                    "invalid value for \"%s\": expected a mapping of columns to values, "
                    "found %s",
                    key_name, model_found_name(map));
        return;
    }
    if (yamlsrc_map_count(map) == 0) {
        model_error(f, map, "\"%s\" is empty: expected at least one column", key_name);
        return;
    }
    model_check_keys(f, map, NULL, 0);
    for (size_t i = 0; i < yamlsrc_map_count(map); i++)
        if (model_map_key(f, map, i) != NULL)
            parse_assign(f, yamlsrc_map_key(f->src, map, i), yamlsrc_map_value(f->src, map, i), ctx,
                         out);
}

/* ---------------------------------------------------------------- actions */

/* Columns an action names, to check completeness without cascading from values that
 * failed to parse. */
typedef struct Seen {
    bool *set;
    bool *add;
} Seen;

static void seen_init(Seen *s, const Model *m)
{
    s->set = xcalloc(m->ncolumns + 1, sizeof *s->set);
    s->add = xcalloc(m->ncolumns + 1, sizeof *s->add);
}

static void seen_done(Seen *s)
{
    free(s->set);
    free(s->add);
}

static void store_assigns(const Assigns *as, Assign **items, size_t *n)
{
    *items = as->items;
    *n = as->count;
}

/* A column may be set or added, not both. */
static void check_set_and_add(ModelFile *f, const Action *a, const Seen *seen)
{
    for (size_t i = 0; i < a->nadd; i++)
        if (seen->set[a->add[i].column])
            model_error_at(f, a->add[i].line, a->add[i].column_no,
                           "column \"%s\" appears in both set and add",
                           f->m->columns[a->add[i].column].name);
}

static void mark_sets_version(const Model *m, Action *a)
{
    for (size_t i = 0; i < a->nset && m->version_column >= 0; i++)
        if (a->set[i].column == (size_t)m->version_column)
            a->sets_version = true;
}

/* An upsert writes a whole row: every key column, and every NOT NULL column without a
 * default, must get a value. */
static void check_upsert_complete(ModelFile *f, const YamlNode *verb, const char *event,
                                  const Seen *seen)
{
    const Model *m = f->m;
    for (size_t i = 0; i < m->nkey; i++)
        if (!seen->set[m->key[i]])
            model_error(f, verb, "upsert for \"%s\" does not set key column \"%s\"", event,
                        m->columns[m->key[i]].name);
    for (size_t i = 0; i < m->ncolumns; i++) {
        const Column *c = &m->columns[i];
        if (c->in_key || c->nullable || c->default_text != NULL || c->sql_type == NULL ||
            seen->set[i] || seen->add[i])
            continue;
        model_error(f, verb,
                    "upsert for \"%s\" does not set column \"%s\", which is not nullable and "
                    "has no default",
                    event, c->name);
    }
}

static void parse_upsert(ModelFile *f, const YamlNode *verb, const YamlNode *body,
                         const char *event, Action *a)
{
    Seen seen;
    Assigns set = {0}, add = {0};
    seen_init(&seen, f->m);
    ValueCtx set_ctx = {.target = f->m, .use = USE_SET, .section = "upsert", .seen = seen.set};
    ValueCtx add_ctx = {.target = f->m, .use = USE_ADD, .section = "add", .seen = seen.add};
    model_check_keys(f, body, NULL, 0);
    for (size_t i = 0; i < yamlsrc_map_count(body); i++) {
        const char *name = model_map_key(f, body, i);
        const YamlNode *val = yamlsrc_map_value(f->src, body, i);
        if (name == NULL)
            continue;
        if (strcmp(name, "when") == 0)
            parse_when(f, val, a);
        else if (strcmp(name, "add") == 0)
            parse_assign_map(f, val, "add", &add_ctx, &add);
        else
            parse_assign(f, yamlsrc_map_key(f->src, body, i), val, &set_ctx, &set);
    }
    store_assigns(&set, &a->set, &a->nset);
    store_assigns(&add, &a->add, &a->nadd);
    check_set_and_add(f, a, &seen);
    check_upsert_complete(f, verb, event, &seen);
    mark_sets_version(f->m, a);
    seen_done(&seen);
}

static void parse_where(ModelFile *f, const YamlNode *verb, const YamlNode *body, const char *event,
                        const char *const *keys, size_t nkeys, Action *a)
{
    ValueCtx ctx = {.target = f->m, .use = USE_WHERE, .section = "where"};
    Assigns where = {0};
    const YamlNode *n = yamlsrc_map_get(f->src, body, "where");
    if (n == NULL) {
        if (!model_key_missing(f, body, "where", keys, nkeys))
            return;
        model_error(f, verb,
                    "%s for \"%s\" has no \"where\": expected a mapping of columns to values "
                    "that selects the rows",
                    yamlsrc_scalar(verb), event);
        return;
    }
    parse_assign_map(f, n, "where", &ctx, &where);
    store_assigns(&where, &a->where, &a->nwhere);
}

static void parse_update(ModelFile *f, const YamlNode *verb, const YamlNode *body,
                         const char *event, Action *a)
{
    static const char *const keys[] = {"where", "set", "add", "when"};
    Seen seen;
    Assigns set = {0}, add = {0};
    seen_init(&seen, f->m);
    ValueCtx set_ctx = {.target = f->m, .use = USE_SET, .section = "set", .seen = seen.set};
    ValueCtx add_ctx = {.target = f->m, .use = USE_ADD, .section = "add", .seen = seen.add};
    const YamlNode *set_node = yamlsrc_map_get(f->src, body, "set");
    const YamlNode *add_node = yamlsrc_map_get(f->src, body, "add");
    const YamlNode *when = yamlsrc_map_get(f->src, body, "when");
    model_check_keys(f, body, keys, ARRAY_SIZE(keys));
    parse_where(f, verb, body, event, keys, ARRAY_SIZE(keys), a);
    if (model_key_missing(f, body, "set", keys, ARRAY_SIZE(keys)) &&
        model_key_missing(f, body, "add", keys, ARRAY_SIZE(keys)))
        model_error(f, verb,
                    "update for \"%s\" has neither \"set\" nor \"add\": expected at least one "
                    "of them",
                    event);
    if (set_node != NULL)
        parse_assign_map(f, set_node, "set", &set_ctx, &set);
    if (add_node != NULL)
        parse_assign_map(f, add_node, "add", &add_ctx, &add);
    if (when != NULL)
        parse_when(f, when, a);
    store_assigns(&set, &a->set, &a->nset);
    store_assigns(&add, &a->add, &a->nadd);
    check_set_and_add(f, a, &seen);
    mark_sets_version(f->m, a);
    seen_done(&seen);
}

static void parse_delete(ModelFile *f, const YamlNode *verb, const YamlNode *body,
                         const char *event, Action *a)
{
    static const char *const keys[] = {"where", "when"};
    const YamlNode *when = yamlsrc_map_get(f->src, body, "when");
    model_check_keys(f, body, keys, ARRAY_SIZE(keys));
    parse_where(f, verb, body, event, keys, ARRAY_SIZE(keys), a);
    if (when != NULL)
        parse_when(f, when, a);
}

/* ---------------------------------------------------------------- handlers */

static const char *const verbs[] = {[MODEL_ACTION_UPSERT] = "upsert",
                                    [MODEL_ACTION_UPDATE] = "update",
                                    [MODEL_ACTION_DELETE] = "delete"};
static_assert(ARRAY_SIZE(verbs) == MODEL_ACTION_DELETE + 1, "a verb for every kind of action");

static void parse_verb(ModelFile *f, const YamlNode *verb, const YamlNode *body, const char *event,
                       Handler *h)
{
    const char *name = yamlsrc_scalar(verb);
    if (!yamlsrc_is_mapping(body)) {
        model_error(f, body, "invalid value for \"%s\": expected a mapping, found %s", name,
                    model_found_name(body));
        return;
    }
    Action a = {.line = yamlsrc_line(verb), .column = yamlsrc_column(verb)};
    if (strcmp(name, "upsert") == 0) {
        a.kind = MODEL_ACTION_UPSERT;
        parse_upsert(f, verb, body, event, &a);
    } else if (strcmp(name, "update") == 0) {
        a.kind = MODEL_ACTION_UPDATE;
        parse_update(f, verb, body, event, &a);
    } else {
        a.kind = MODEL_ACTION_DELETE;
        parse_delete(f, verb, body, event, &a);
    }
    h->actions = xrealloc(h->actions, (h->nactions + 1) * sizeof *h->actions);
    h->actions[h->nactions++] = a;
}

/* One action: a mapping with exactly one of upsert, update, delete. */
static void parse_action(ModelFile *f, const YamlNode *n, const char *event, Handler *h)
{
    if (!yamlsrc_is_mapping(n)) {
        model_error(f, n,
                    "invalid action for event type \"%s\": expected a mapping with one of "
                    "upsert, update, delete, found %s",
                    event, model_found_name(n));
        return;
    }
    if (yamlsrc_map_count(n) == 0) {
        model_error(f, n,
                    "empty action for event type \"%s\": expected one of upsert, "
                    "update, delete",
                    event);
        return;
    }
    model_check_keys(f, n, verbs, ARRAY_SIZE(verbs));
    const char *first = NULL;
    for (size_t i = 0; i < yamlsrc_map_count(n); i++) {
        const char *name = model_map_key(f, n, i);
        const YamlNode *key = yamlsrc_map_key(f->src, n, i);
        if (name == NULL || (strcmp(name, "upsert") != 0 && strcmp(name, "update") != 0 &&
                             strcmp(name, "delete") != 0))
            continue;
        if (first != NULL) {
            model_error(f, key,
                        "action has both \"%s\" and \"%s\": expected exactly one of upsert, "
                        "update, delete",
                        first, name);
            continue;
        }
        first = name;
        parse_verb(f, key, yamlsrc_map_value(f->src, n, i), event, h);
    }
}

static void parse_handler(ModelFile *f, const YamlNode *key, const YamlNode *val)
{
    const char *event = yamlsrc_scalar(key);
    Handler h = {
        .event_type = xstrdup(event), .line = yamlsrc_line(key), .column = yamlsrc_column(key)};
    if (event[0] == '\0')
        model_error(f, key, "invalid event type: expected a non-empty name");
    if (yamlsrc_is_mapping(val)) {
        parse_action(f, val, event, &h);
    } else if (!yamlsrc_is_sequence(val)) {
        model_error(f, val,
                    "invalid actions for event type \"%s\": expected an action or a sequence "
                    "of actions, found %s",
                    event, model_found_name(val));
    } else if (yamlsrc_seq_count(val) == 0) {
        model_error(f, val, "no actions for event type \"%s\": expected at least one action",
                    event);
    } else {
        for (size_t i = 0; i < yamlsrc_seq_count(val); i++)
            parse_action(f, yamlsrc_seq_item(f->src, val, i), event, &h);
    }
    Model *m = f->m;
    m->handlers = xrealloc(m->handlers, (m->nhandlers + 1) * sizeof *m->handlers);
    m->handlers[m->nhandlers++] = h;
}

void model_parse_handlers(ModelFile *f, const YamlNode *on)
{
    if (!yamlsrc_is_mapping(on)) {
        model_error(f, on,
                    "invalid value for \"on\": expected a mapping of event types to actions, "
                    "found %s",
                    model_found_name(on));
        return;
    }
    if (yamlsrc_map_count(on) == 0) {
        model_error(f, on, "\"on\" is empty: expected at least one event type");
        return;
    }
    model_check_keys(f, on, NULL, 0);
    for (size_t i = 0; i < yamlsrc_map_count(on); i++)
        if (model_map_key(f, on, i) != NULL)
            parse_handler(f, yamlsrc_map_key(f->src, on, i), yamlsrc_map_value(f->src, on, i));
}

/* ---------------------------------------------------------------- lookups */

static int find_table(const ModelLoad *l, const char *table)
{
    for (size_t i = 0; i < l->nmodels; i++)
        if (l->models[i].table != NULL && strcmp(l->models[i].table, table) == 0)
            return (int)i;
    return -1;
}

static void report_unknown_table(ModelFile *f, const YamlNode *ref, const char *table)
{
    const ModelLoad *l = f->load;
    StrBuf sb = {0};
    for (size_t i = 0; i < l->nmodels; i++) {
        if (l->models[i].table == NULL)
            continue;
        strbuf_append(&sb, sb.len > 0 ? ", " : "");
        strbuf_append(&sb, l->models[i].table);
    }
    model_error(f, ref, "lookup of unknown table \"%s\": the tables are %s", table,
                sb.buf != NULL ? sb.buf : "(none)");
    strbuf_done(&sb);
}

static void add_lookup_model(Model *m, size_t owner, size_t source)
{
    if (source == owner)
        return;
    for (size_t i = 0; i < m->nlookup_models; i++)
        if (m->lookup_models[i] == source)
            return;
    m->lookup_models = xrealloc(m->lookup_models, (m->nlookup_models + 1) * sizeof(size_t));
    m->lookup_models[m->nlookup_models++] = source;
}

static void resolve_lookup(ModelLoad *l, ModelPendingLookup *p)
{
    ModelFile f = model_file_of(l, p->owner);
    const char *text = yamlsrc_scalar(p->ref);
    const char *dot = strrchr(text, '.');
    char *table = xstrndup(text, (size_t)(dot - text));
    int source = find_table(l, table);
    if (source < 0) {
        report_unknown_table(&f, p->ref, table);
        free(table);
        return;
    }
    const Model *src_model = &l->models[source];
    int col = model_find_column(src_model, dot + 1);
    if (col < 0 && src_model->ncolumns > 0) {
        char *context = xasprintf("lookup of table \"%s\"", table);
        int at = scalar_text_column(p->ref);
        at = at > 0 ? at + (int)(dot - text) + 1 : yamlsrc_column(p->ref);
        model_error_unknown_column(&f, yamlsrc_line(p->ref), at, src_model, dot + 1, context);
        free(context);
    }
    free(table);
    char *section = xasprintf("where of lookup \"%s\"", text);
    ValueCtx ctx = {.target = src_model, .use = USE_LOOKUP_WHERE, .section = section};
    Assigns where = {0};
    parse_assign_map(&f, p->where, "where", &ctx, &where);
    free(section);
    store_assigns(&where, &p->lookup->where, &p->lookup->nwhere);
    if (col < 0)
        return;
    p->lookup->model = (size_t)source;
    p->lookup->column = (size_t)col;
    p->resolved = true;
    add_lookup_model(&l->models[p->owner], p->owner, (size_t)source);
}

void model_resolve_lookups(ModelLoad *load)
{
    for (size_t i = 0; i < load->npending; i++)
        resolve_lookup(load, &load->pending[i]);
}
