/* test_model.c - read-model loading: the example models in tests/data/good load with the
 * right structure, every fixture in tests/data/bad reports exactly the diagnostics its
 * "# expect:" lines record (file, line, column, message), and the helpers answer
 * questions about a loaded set.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"

#define GOOD_DIR PROJECTOR_SOURCE_DIR "/tests/data/good"
#define BAD_DIR PROJECTOR_SOURCE_DIR "/tests/data/bad"

/* ---------------------------------------------------------------- helpers */

/* Every diagnostic as "file:line:column: message\n", for assertion messages. */
static char *diag_text(const Diagnostics *d)
{
    StrBuf sb = {0};
    strbuf_append(&sb, "");
    for (size_t i = 0; i < d->count; i++)
        strbuf_appendf(&sb, "%s:%d:%d: %s\n", d->items[i].file ? d->items[i].file : "-",
                       d->items[i].line, d->items[i].column, d->items[i].message);
    return strbuf_take(&sb);
}

static ModelSet *load_good(void)
{
    Diagnostics d = {0};
    ModelSet *set = NULL;
    int rc = model_load_dir(GOOD_DIR, &set, &d);
    char *text = diag_text(&d);
    cr_assert_eq(rc, 0, "loading %s failed:\n%s", GOOD_DIR, text);
    cr_assert_eq(d.count, 0, "unexpected diagnostics:\n%s", text);
    free(text);
    diag_done(&d);
    return set;
}

static const Model *good_model(const ModelSet *set, const char *name)
{
    int i = model_set_find(set, name);
    cr_assert_geq(i, 0, "read model \"%s\" not loaded", name);
    return &set->models[i];
}

static const Column *column_of(const Model *m, const char *name)
{
    int i = model_find_column(m, name);
    cr_assert_geq(i, 0, "column \"%s\" missing from \"%s\"", name, m->name);
    return &m->columns[i];
}

static const Assign *assign_of(const Model *m, const Assign *items, size_t n, const char *col)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(m->columns[items[i].column].name, col) == 0)
            return &items[i];
    cr_assert_fail("no assignment of column \"%s\"", col);
    return NULL;
}

static const Action *action_of(const Model *m, const char *event, size_t i)
{
    const Handler *h = model_find_handler(m, event);
    cr_assert_not_null(h, "no handler for \"%s\" in \"%s\"", event, m->name);
    cr_assert_lt(i, h->nactions, "\"%s\" has %zu actions", event, h->nactions);
    return &h->actions[i];
}

/* A fresh folder under /tmp, and files in it; remove_dir deletes both. */
static char *make_dir(void)
{
    char *dir = strdup("/tmp/pj_model_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    return dir;
}

static char *write_in(const char *dir, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    return path;
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *path = xasprintf("%s/%s", dir, e->d_name);
        unlink(path);
        free(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
    free(dir);
}

/* Loads one YAML text as a single file; returns the diagnostics as "line:column: message"
 * lines (caller frees) and the set (NULL on errors). */
static char *load_text(const char *text, ModelSet **ret)
{
    char *dir = make_dir();
    char *path = write_in(dir, "m.yaml", text);
    Diagnostics d = {0};
    const char *paths[] = {path};
    *ret = NULL;
    int rc = model_load_files(paths, 1, ret, &d);
    cr_assert_eq(rc<0, d.count> 0, "rc %d with %zu diagnostics", rc, d.count);
    cr_assert_eq(rc < 0, *ret == NULL, "rc %d but set %p", rc, (void *)*ret);
    StrBuf sb = {0};
    strbuf_append(&sb, "");
    for (size_t i = 0; i < d.count; i++) {
        cr_assert_str_eq(d.items[i].file, path);
        strbuf_appendf(&sb, "%d:%d: %s\n", d.items[i].line, d.items[i].column, d.items[i].message);
    }
    diag_done(&d);
    free(path);
    remove_dir(dir);
    return strbuf_take(&sb);
}

/* ---------------------------------------------------------------- the good models */

Test(model, loads_every_good_file_in_name_order)
{
    static const char *const names[] = {"customer_stats", "customers", "order_lines", "orders"};
    ModelSet *set = load_good();
    cr_assert_eq(set->count, ARRAY_SIZE(names));
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        cr_expect_str_eq(set->models[i].name, names[i]);
        char *file = xasprintf("%s/%s.yaml", GOOD_DIR, names[i]);
        cr_expect_str_eq(set->models[i].file, file);
        free(file);
    }
    model_set_free(set);
}

typedef struct ColumnCase {
    const char *name;
    const char *sql_type;
    ColumnKind kind;
    bool nullable;
    const char *default_text;
} ColumnCase;

Test(model, orders_columns_key_version_and_indexes)
{
    static const ColumnCase cases[] = {
        {"id", "text", MODEL_COL_TEXT, false, NULL},
        {"customer_id", "text", MODEL_COL_TEXT, false, NULL},
        {"item_count", "integer", MODEL_COL_INTEGER, false, "0"},
        {"total", "numeric(12,2)", MODEL_COL_NUMERIC, false, NULL},
        {"created_at", "timestamp with time zone", MODEL_COL_TIMESTAMPTZ, false, NULL},
        {"confirmed_at", "timestamp with time zone", MODEL_COL_TIMESTAMPTZ, true, NULL},
        {"version", "bigint", MODEL_COL_BIGINT, false, NULL},
    };
    ModelSet *set = load_good();
    const Model *m = good_model(set, "orders");
    cr_expect_str_eq(m->table, "order_read_model");
    cr_expect_null(m->table_schema);
    cr_expect_eq(m->ncolumns, 10);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const Column *c = column_of(m, cases[i].name);
        cr_expect_str_eq(c->sql_type, cases[i].sql_type, "column %s", c->name);
        cr_expect_eq(c->kind, cases[i].kind, "column %s", c->name);
        cr_expect_eq(c->nullable, cases[i].nullable, "column %s", c->name);
        if (cases[i].default_text == NULL)
            cr_expect_null(c->default_text, "column %s", c->name);
        else
            cr_expect_str_eq(c->default_text, cases[i].default_text);
        cr_expect_eq(c->in_key, strcmp(c->name, "id") == 0, "column %s", c->name);
    }
    cr_assert_eq(m->nstreams, 2);
    cr_expect_str_eq(m->streams[0], "orders");
    cr_expect_str_eq(m->streams[1], "customers");
    cr_expect_eq(m->start, MODEL_START_BEGINNING);
    cr_assert_eq(m->nkey, 1);
    cr_expect_eq(m->key[0], (size_t)model_find_column(m, "id"));
    cr_expect_eq(m->version_column, model_find_column(m, "version"));
    cr_assert_eq(m->nindexes, 1);
    cr_assert_eq(m->indexes[0].ncolumns, 2);
    cr_expect_eq(m->indexes[0].columns[0], (size_t)model_find_column(m, "customer_id"));
    cr_expect_eq(m->indexes[0].columns[1], (size_t)model_find_column(m, "created_at"));
    model_set_free(set);
}

Test(model, orders_upsert_with_lookup_and_version)
{
    ModelSet *set = load_good();
    const Model *m = good_model(set, "orders");
    const Model *customers = good_model(set, "customers");
    cr_expect_eq(m->nhandlers, 7);
    const Action *a = action_of(m, "order.placed", 0);
    cr_expect_eq(a->kind, MODEL_ACTION_UPSERT);
    cr_expect_eq(a->nset, 9);
    cr_expect_eq(a->nadd, 0);
    cr_expect(a->sets_version);
    cr_expect_null(a->when);

    const Assign *status = assign_of(m, a->set, a->nset, "status");
    cr_assert_not_null(status->expr);
    cr_expect_eq(status->expr->kind, EXPR_LITERAL);
    cr_expect_str_eq(status->expr->literal.text, "pending");
    const Assign *count = assign_of(m, a->set, a->nset, "item_count");
    cr_assert_not_null(count->expr);
    cr_expect_eq(count->expr->kind, EXPR_CALL);
    cr_expect_eq(count->expr->func, EXPR_FUNC_LENGTH);

    const Assign *name = assign_of(m, a->set, a->nset, "customer_name");
    cr_assert_null(name->expr);
    cr_assert_not_null(name->lookup);
    cr_expect_eq(name->lookup->model, (size_t)model_set_find(set, "customers"));
    cr_expect_eq(name->lookup->column, (size_t)model_find_column(customers, "name"));
    cr_assert_eq(name->lookup->nwhere, 1);
    cr_expect_eq(name->lookup->where[0].column, (size_t)model_find_column(customers, "id"));
    cr_assert_not_null(name->lookup->where[0].expr);
    cr_expect_eq(name->lookup->where[0].expr->kind, EXPR_PATH);

    cr_assert_eq(m->nlookup_models, 1);
    cr_expect_eq(m->lookup_models[0], (size_t)model_set_find(set, "customers"));
    cr_expect_eq(customers->nlookup_models, 0);
    model_set_free(set);
}

Test(model, orders_updates_deletes_and_guarded_actions)
{
    ModelSet *set = load_good();
    const Model *m = good_model(set, "orders");
    const Action *added = action_of(m, "order.item_added", 0);
    cr_expect_eq(added->kind, MODEL_ACTION_UPDATE);
    cr_assert_eq(added->nwhere, 1);
    cr_expect_eq(added->where[0].column, (size_t)model_find_column(m, "id"));
    cr_assert_eq(added->nadd, 1);
    cr_expect_eq(added->add[0].column, (size_t)model_find_column(m, "item_count"));
    cr_expect_eq(added->nset, 0);
    cr_expect_not(added->sets_version);

    const Action *fan_out = action_of(m, "customer.renamed", 0);
    cr_assert_eq(fan_out->nwhere, 1);
    cr_expect_eq(fan_out->where[0].column, (size_t)model_find_column(m, "customer_id"));

    const Action *line = action_of(m, "order.line_added", 0);
    cr_assert_eq(line->nadd, 1);
    cr_expect_eq(line->add[0].expr->kind, EXPR_ARITH);
    cr_expect_eq(line->add[0].expr->op, '*');

    cr_expect_eq(action_of(m, "order.cancelled", 0)->kind, MODEL_ACTION_DELETE);
    const Handler *refunded = model_find_handler(m, "order.refunded");
    cr_assert_not_null(refunded);
    cr_assert_eq(refunded->nactions, 2);
    cr_expect_eq(refunded->actions[0].kind, MODEL_ACTION_UPDATE);
    cr_expect_null(refunded->actions[0].when);
    cr_expect_eq(refunded->actions[1].kind, MODEL_ACTION_DELETE);
    cr_assert_not_null(refunded->actions[1].when);
    cr_expect_eq(refunded->actions[1].when->kind, EXPR_COND_AND);
    model_set_free(set);
}

Test(model, counter_model_adds_inside_upsert)
{
    ModelSet *set = load_good();
    const Model *m = good_model(set, "customer_stats");
    cr_expect_eq(m->version_column, -1);
    cr_expect(column_of(m, "last_order_at")->nullable);
    cr_expect_str_eq(column_of(m, "total_spent")->sql_type, "numeric(14,2)");
    cr_expect_str_eq(column_of(m, "total_spent")->default_text, "0");
    const Action *placed = action_of(m, "order.placed", 0);
    cr_expect_eq(placed->kind, MODEL_ACTION_UPSERT);
    cr_expect_eq(placed->nset, 2);
    cr_expect_eq(placed->nadd, 2);
    cr_expect_not(placed->sets_version);
    assign_of(m, placed->add, placed->nadd, "orders");
    assign_of(m, placed->add, placed->nadd, "total_spent");
    const Action *cancelled = action_of(m, "order.cancelled", 0);
    cr_expect_eq(cancelled->nset, 1);
    cr_assert_eq(cancelled->nadd, 1);
    cr_expect_eq(cancelled->add[0].column, (size_t)model_find_column(m, "orders_cancelled"));
    model_set_free(set);
}

Test(model, composite_key_schema_table_and_indexes)
{
    ModelSet *set = load_good();
    const Model *m = good_model(set, "order_lines");
    cr_expect_str_eq(m->table, "app.order_lines");
    cr_expect_str_eq(m->table_schema, "app");
    cr_expect_str_eq(m->table_name, "order_lines");
    cr_expect_eq(m->start, MODEL_START_END);
    cr_assert_eq(m->nstreams, 1);
    cr_expect_str_eq(m->streams[0], "orders");
    cr_assert_eq(m->nkey, 2);
    cr_expect_eq(m->key[0], (size_t)model_find_column(m, "order_id"));
    cr_expect_eq(m->key[1], (size_t)model_find_column(m, "line_no"));
    cr_assert_eq(m->nindexes, 2);
    cr_assert_eq(m->indexes[0].ncolumns, 1);
    cr_expect_eq(m->indexes[0].columns[0], (size_t)model_find_column(m, "sku"));
    cr_assert_eq(m->indexes[1].ncolumns, 2);
    cr_expect_str_eq(column_of(m, "sku")->sql_type, "character varying(64)");
    cr_expect_str_eq(column_of(m, "sku_upper")->sql_type, "character varying(64)");
    cr_expect_str_eq(column_of(m, "unit_price")->sql_type, "numeric(12,2)");
    cr_expect_str_eq(column_of(m, "gift")->sql_type, "boolean");
    cr_expect_str_eq(column_of(m, "gift")->default_text, "false");
    cr_expect_eq(column_of(m, "options")->kind, MODEL_COL_JSONB);
    const Action *added = action_of(m, "order.line_added", 0);
    cr_assert_not_null(added->when);
    cr_expect_eq(added->when->kind, EXPR_COND_EXISTS);
    model_set_free(set);
}

/* `{ sku_upper: upper(coalesce($.a, $.b)), ... }`: YAML cuts the plain scalar at the
 * comma; the loader reads the whole call back from the source. */
Test(model, function_call_with_commas_in_flow_mapping)
{
    ModelSet *set = load_good();
    const Model *m = good_model(set, "order_lines");
    const Action *update = action_of(m, "order.line_removed", 0);
    cr_expect_eq(update->nset, 2);
    const Assign *upper = assign_of(m, update->set, update->nset, "sku_upper");
    cr_assert_not_null(upper->expr);
    cr_expect_eq(upper->expr->func, EXPR_FUNC_UPPER);
    cr_assert_eq(upper->expr->nargs, 1);
    cr_expect_eq(upper->expr->args[0]->func, EXPR_FUNC_COALESCE);
    cr_expect_eq(upper->expr->args[0]->nargs, 2);
    assign_of(m, update->set, update->nset, "updated_at");
    cr_assert_eq(update->nadd, 1);
    cr_expect_eq(update->nwhere, 2);
    model_set_free(set);
}

Test(model, fingerprint_is_fnv1a_of_the_file)
{
    ModelSet *set = load_good();
    for (size_t i = 0; i < set->count; i++) {
        char *text;
        size_t len;
        PjError err;
        cr_assert_eq(read_file(set->models[i].file, &text, &len, &err), 0);
        char want[17];
        snprintf(want, sizeof want, "%016" PRIx64, fnv1a64(text, len, 0));
        cr_expect_str_eq(set->models[i].fingerprint, want);
        free(text);
    }
    cr_expect_str_neq(set->models[0].fingerprint, set->models[1].fingerprint);
    model_set_free(set);
}

Test(model, helpers_find_and_quote)
{
    ModelSet *set = load_good();
    const Model *orders = good_model(set, "orders");
    cr_expect_eq(model_set_find(set, "nope"), -1);
    cr_expect_null(model_find_handler(orders, "order.shipped"));
    cr_expect_eq(model_find_column(orders, "nope"), -1);
    cr_expect_eq(model_find_stream(orders, "customers"), 1);
    cr_expect_eq(model_find_stream(orders, "nope"), -1);
    StrBuf sb = {0};
    model_append_table(&sb, orders);
    cr_expect_str_eq(sb.buf, "\"order_read_model\"");
    strbuf_reset(&sb);
    model_append_table(&sb, good_model(set, "order_lines"));
    cr_expect_str_eq(sb.buf, "\"app\".\"order_lines\"");
    strbuf_done(&sb);
    model_set_free(set);
    cr_expect_null(model_set_free(NULL));
}

Test(model, numeric_kinds)
{
    static const struct {
        ColumnKind kind;
        bool numeric;
    } cases[] = {
        {MODEL_COL_TEXT, false},      {MODEL_COL_SMALLINT, true}, {MODEL_COL_INTEGER, true},
        {MODEL_COL_BIGINT, true},     {MODEL_COL_NUMERIC, true},  {MODEL_COL_REAL, true},
        {MODEL_COL_DOUBLE, true},     {MODEL_COL_BOOLEAN, false}, {MODEL_COL_TIMESTAMPTZ, false},
        {MODEL_COL_TIMESTAMP, false}, {MODEL_COL_DATE, false},    {MODEL_COL_UUID, false},
        {MODEL_COL_JSONB, false},     {MODEL_COL_VARCHAR, false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        cr_expect_eq(column_kind_is_numeric(cases[i].kind), cases[i].numeric, "kind %d",
                     (int)cases[i].kind);
}

/* ---------------------------------------------------------------- column types */

/* Parameters cross into the test's own process: no pointers, only arrays. */
typedef struct TypeCase {
    char spelling[32];
    char canonical[32];
    ColumnKind kind;
} TypeCase;

ParameterizedTestParameters(model, canonical_type_spelling)
{
    static TypeCase cases[] = {
        {"text", "text", MODEL_COL_TEXT},
        {"TEXT", "text", MODEL_COL_TEXT},
        {"varchar(20)", "character varying(20)", MODEL_COL_VARCHAR},
        {"character varying(5)", "character varying(5)", MODEL_COL_VARCHAR},
        {"smallint", "smallint", MODEL_COL_SMALLINT},
        {"int2", "smallint", MODEL_COL_SMALLINT},
        {"integer", "integer", MODEL_COL_INTEGER},
        {"int", "integer", MODEL_COL_INTEGER},
        {"INT4", "integer", MODEL_COL_INTEGER},
        {"bigint", "bigint", MODEL_COL_BIGINT},
        {"int8", "bigint", MODEL_COL_BIGINT},
        {"numeric", "numeric", MODEL_COL_NUMERIC},
        {"numeric(10)", "numeric(10,0)", MODEL_COL_NUMERIC},
        {"decimal(12, 2)", "numeric(12,2)", MODEL_COL_NUMERIC},
        {"Numeric (1000,1000)", "numeric(1000,1000)", MODEL_COL_NUMERIC},
        {"real", "real", MODEL_COL_REAL},
        {"float4", "real", MODEL_COL_REAL},
        {"double precision", "double precision", MODEL_COL_DOUBLE},
        {"Double   Precision", "double precision", MODEL_COL_DOUBLE},
        {"float8", "double precision", MODEL_COL_DOUBLE},
        {"double", "double precision", MODEL_COL_DOUBLE},
        {"boolean", "boolean", MODEL_COL_BOOLEAN},
        {"bool", "boolean", MODEL_COL_BOOLEAN},
        {"timestamptz", "timestamp with time zone", MODEL_COL_TIMESTAMPTZ},
        {"timestamp with time zone", "timestamp with time zone", MODEL_COL_TIMESTAMPTZ},
        {"timestamp", "timestamp without time zone", MODEL_COL_TIMESTAMP},
        {"date", "date", MODEL_COL_DATE},
        {"uuid", "uuid", MODEL_COL_UUID},
        {"jsonb", "jsonb", MODEL_COL_JSONB},
    };
    return cr_make_param_array(TypeCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(TypeCase *tc, model, canonical_type_spelling)
{
    char *yaml = xasprintf("readmodel: t\ntable: t\nstreams: s\nkey: id\ncolumns:\n"
                           "  id: text\n  c:\n    type: %s\n    nullable: true\n"
                           "on:\n  e:\n    upsert: { id: $.aggregate_id }\n",
                           tc->spelling);
    ModelSet *set;
    char *errs = load_text(yaml, &set);
    cr_assert_str_empty(errs, "type \"%s\": %s", tc->spelling, errs);
    const Column *c = column_of(&set->models[0], "c");
    cr_expect_str_eq(c->sql_type, tc->canonical, "type \"%s\"", tc->spelling);
    cr_expect_eq(c->kind, tc->kind, "type \"%s\"", tc->spelling);
    model_set_free(set);
    free(errs);
    free(yaml);
}

/* ---------------------------------------------------------------- the bad fixtures */

typedef struct BadCase {
    char name[128]; /* a file or folder under tests/data/bad */
} BadCase;

typedef struct Expect {
    char *file;
    int line, column;
    char *message;
} Expect;

typedef struct Expects {
    Expect *items;
    size_t count;
} Expects;

static int cmp_names(const void *a, const void *b)
{
    return strcmp(((const BadCase *)a)->name, ((const BadCase *)b)->name);
}

static void free_cases(struct criterion_test_params *params)
{
    cr_free(params->params);
}

ParameterizedTestParameters(model, bad_fixture_reports_expected_diagnostics)
{
    DIR *d = opendir(BAD_DIR);
    size_t n = 0;
    BadCase *cases = cr_malloc(256 * sizeof *cases);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL && n < 256;) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof cases[n].name)
            continue;
        strcpy(cases[n++].name, e->d_name);
    }
    if (d != NULL)
        closedir(d);
    qsort(cases, n, sizeof *cases, cmp_names);
    return cr_make_param_array(BadCase, cases, n, free_cases);
}

/* "{dir}" in a message stands for the fixture's folder. */
static char *expand_dir(const char *message, const char *dir)
{
    StrBuf sb = {0};
    strbuf_append(&sb, "");
    for (const char *p = message; *p != '\0';) {
        const char *at = strstr(p, "{dir}");
        if (at == NULL || dir == NULL) {
            strbuf_append(&sb, p);
            break;
        }
        strbuf_appendn(&sb, p, (size_t)(at - p));
        strbuf_append(&sb, dir);
        p = at + strlen("{dir}");
    }
    return strbuf_take(&sb);
}

/* Reads the leading "# expect: LINE:COLUMN: message" lines of path. */
static void read_expects(const char *path, const char *dir, Expects *out)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot read %s", path);
    char line[2048];
    while (fgets(line, sizeof line, f) != NULL && strncmp(line, "# expect: ", 10) == 0) {
        int l, c, used = 0;
        line[strcspn(line, "\n")] = '\0';
        cr_assert_eq(sscanf(line + 10, "%d:%d: %n", &l, &c, &used), 2, "bad line in %s: %s", path,
                     line);
        out->items = realloc(out->items, (out->count + 1) * sizeof *out->items);
        out->items[out->count++] = (Expect){.file = strdup(path),
                                            .line = l,
                                            .column = c,
                                            .message = expand_dir(line + 10 + used, dir)};
    }
    fclose(f);
}

static bool diag_matches(const Diagnostics *d, const Expect *e)
{
    for (size_t i = 0; i < d->count; i++) {
        const Diagnostic *g = &d->items[i];
        if (g->file != NULL && strcmp(g->file, e->file) == 0 && g->line == e->line &&
            g->column == e->column && strcmp(g->message, e->message) == 0)
            return true;
    }
    return false;
}

/* Loads one fixture (a file, or a folder through model_load_dir) and its expectations. */
static int load_fixture(const char *path, Diagnostics *d, Expects *ex)
{
    struct stat st;
    ModelSet *set = NULL;
    int rc;
    cr_assert_eq(stat(path, &st), 0, "missing %s", path);
    if (S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(path);
        for (struct dirent *e; (e = readdir(dir)) != NULL;) {
            if (e->d_name[0] == '.')
                continue;
            char *file = xasprintf("%s/%s", path, e->d_name);
            read_expects(file, path, ex);
            free(file);
        }
        closedir(dir);
        rc = model_load_dir(path, &set, d);
    } else {
        const char *paths[] = {path};
        read_expects(path, NULL, ex);
        rc = model_load_files(paths, 1, &set, d);
    }
    cr_expect_null(set, "a set was returned despite errors");
    return rc;
}

ParameterizedTest(BadCase *bc, model, bad_fixture_reports_expected_diagnostics)
{
    char *path = xasprintf("%s/%s", BAD_DIR, bc->name);
    Diagnostics d = {0};
    Expects ex = {0};
    int rc = load_fixture(path, &d, &ex);
    char *got = diag_text(&d);
    cr_expect_eq(rc, -PJ_EINVAL, "%s: rc %d", bc->name, rc);
    cr_expect_gt(ex.count, 0, "%s records no \"# expect:\" line", bc->name);
    for (size_t i = 0; i < ex.count; i++)
        cr_expect(diag_matches(&d, &ex.items[i]), "%s: expected\n%s:%d:%d: %s\ngot\n%s", bc->name,
                  ex.items[i].file, ex.items[i].line, ex.items[i].column, ex.items[i].message, got);
    cr_expect_eq(d.count, ex.count, "%s: %zu diagnostics for %zu expected:\n%s", bc->name, d.count,
                 ex.count, got);
    for (size_t i = 0; i < ex.count; i++) {
        free(ex.items[i].file);
        free(ex.items[i].message);
    }
    free(ex.items);
    free(got);
    diag_done(&d);
    free(path);
}

Test(model, bad_fixtures_cover_enough_cases)
{
    DIR *d = opendir(BAD_DIR);
    cr_assert_not_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    cr_expect_geq(n, 30, "only %zu fixtures in %s", n, BAD_DIR);
}

/* ---------------------------------------------------------------- loading behaviour */

Test(model, reports_errors_of_every_file_in_one_run)
{
    char *dir = make_dir();
    free(write_in(dir, "a.yaml",
                  "readmodel: a\ntable: a\nstreams: [s]\nkey: id\n"
                  "columns:\n  id: txt\non:\n  e:\n    delete:\n"
                  "      where: { idd: $.aggregate_id }\n"));
    free(write_in(dir, "b.yml",
                  "readmodel: b\ntable: b\nstreams: [s]\nkey: id\n"
                  "columns: { id: text }\non:\n  e:\n"
                  "    delete: { where: { id: $.nope } }\n"));
    free(write_in(dir, "c.txt", "not a read model"));
    Diagnostics d = {0};
    ModelSet *set = NULL;
    cr_expect_eq(model_load_dir(dir, &set, &d), -PJ_EINVAL);
    cr_expect_null(set);
    char *got = diag_text(&d);
    char *want =
        xasprintf("%s/a.yaml:6:7: unknown column type \"txt\": expected one of text, varchar(n), "
                  "smallint, integer, bigint, numeric(p,s), real, double precision, boolean, "
                  "timestamptz, timestamp, date, uuid, jsonb\n"
                  "%s/a.yaml:10:16: unknown column \"idd\" in where: the columns are id\n"
                  "%s/b.yml:8:30: unknown event field \"nope\": expected one of type, event_id, "
                  "aggregate_id, aggregate_type, version, occurred_at, payload, metadata, stream, "
                  "entry_id\n",
                  dir, dir, dir);
    cr_expect_str_eq(got, want);
    free(want);
    free(got);
    diag_done(&d);
    remove_dir(dir);
}

Test(model, empty_and_missing_folders_are_errors)
{
    char *dir = make_dir();
    Diagnostics d = {0};
    ModelSet *set = NULL;
    cr_expect_eq(model_load_dir(dir, &set, &d), -PJ_EINVAL);
    cr_assert_eq(d.count, 1);
    cr_expect(strstr(d.items[0].message, "no read-model files") != NULL, "%s", d.items[0].message);
    diag_done(&d);
    char *missing = xasprintf("%s/nope", dir);
    cr_expect_eq(model_load_dir(missing, &set, &d), -PJ_EIO);
    cr_expect_eq(d.count, 1);
    cr_expect_null(set);
    free(missing);
    diag_done(&d);
    cr_expect_eq(model_load_files(NULL, 0, &set, &d), -PJ_EINVAL);
    cr_expect_eq(d.count, 1);
    diag_done(&d);
    remove_dir(dir);
}

Test(model, self_lookup_is_allowed_and_not_a_dependency)
{
    ModelSet *set;
    char *errs = load_text("readmodel: tree\ntable: tree\nstreams: [s]\nkey: id\n"
                           "columns:\n  id: text\n  parent: { type: text, nullable: true }\n"
                           "  parent_name: { type: text, nullable: true }\n  name: text\n"
                           "on:\n  node.added:\n    upsert:\n      id: $.aggregate_id\n"
                           "      name: $.payload.name\n      parent: $.payload.parent\n"
                           "      parent_name:\n        lookup: tree.name\n"
                           "        where: { id: $.payload.parent }\n",
                           &set);
    cr_assert_str_empty(errs, "%s", errs);
    const Model *m = &set->models[0];
    const Action *a = action_of(m, "node.added", 0);
    const Assign *pn = assign_of(m, a->set, a->nset, "parent_name");
    cr_assert_not_null(pn->lookup);
    cr_expect_eq(pn->lookup->model, 0);
    cr_expect_eq(pn->lookup->column, (size_t)model_find_column(m, "name"));
    cr_expect_eq(m->nlookup_models, 0);
    model_set_free(set);
    free(errs);
}

Test(model, lookup_cycle_through_three_models)
{
    static const char *const names[] = {"a", "b", "c"};
    char *dir = make_dir();
    for (size_t i = 0; i < 3; i++) {
        char *text = xasprintf("readmodel: %s\ntable: %s\nstreams: [s]\nkey: id\n"
                               "columns:\n  id: text\n  v: { type: text, nullable: true }\n"
                               "on:\n  e:\n    upsert:\n      id: $.aggregate_id\n"
                               "      v: { lookup: %s.v, where: { id: $.aggregate_id } }\n",
                               names[i], names[i], names[(i + 1) % 3]);
        char *file = xasprintf("%s.yaml", names[i]);
        free(write_in(dir, file, text));
        free(file);
        free(text);
    }
    Diagnostics d = {0};
    ModelSet *set = NULL;
    cr_expect_eq(model_load_dir(dir, &set, &d), -PJ_EINVAL);
    cr_assert_eq(d.count, 1, "%zu diagnostics", d.count);
    cr_expect_eq(d.items[0].line, 12);
    cr_expect_eq(d.items[0].column, 20);
    cr_expect_str_eq(d.items[0].message,
                     "lookups form a cycle: \"a\" -> \"b\" -> \"c\" -> \"a\": a read model "
                     "cannot wait for one that waits for it");
    diag_done(&d);
    remove_dir(dir);
}

Test(model, lookups_of_one_model_count_once)
{
    char *dir = make_dir();
    free(write_in(dir, "a.yaml",
                  "readmodel: a\ntable: a\nstreams: [s]\nkey: id\n"
                  "columns:\n  id: text\n  name: text\n  email: text\n"
                  "on:\n  e:\n    upsert:\n"
                  "      id: $.aggregate_id\n"
                  "      name: $.payload.name\n"
                  "      email: $.payload.email\n"));
    free(write_in(dir, "b.yaml",
                  "readmodel: b\ntable: app.b\nstreams: [s]\nkey: id\ncolumns:\n  id: text\n"
                  "  n: { type: text, nullable: true }\n  m: { type: text, nullable: true }\n"
                  "on:\n  e:\n    upsert:\n      id: $.aggregate_id\n"
                  "      n: { lookup: a.name, where: { id: $.payload.a } }\n"
                  "  f:\n    update:\n      where: { id: $.aggregate_id }\n"
                  "      set: { m: { lookup: a.email, where: { name: $.payload.a } } }\n"));
    Diagnostics d = {0};
    ModelSet *set = NULL;
    int rc = model_load_dir(dir, &set, &d);
    char *got = diag_text(&d);
    cr_assert_eq(rc, 0, "%s", got);
    cr_assert_eq(set->models[1].nlookup_models, 1);
    cr_expect_eq(set->models[1].lookup_models[0], 0);
    const Action *f = action_of(&set->models[1], "f", 0);
    cr_assert_eq(f->nset, 1);
    cr_expect_eq(f->set[0].lookup->where[0].column, 1);
    free(got);
    diag_done(&d);
    model_set_free(set);
    remove_dir(dir);
}

Test(model, version_guard_on_update_set)
{
    ModelSet *set;
    char *errs = load_text("readmodel: v\ntable: v\nstreams: [s]\nkey: id\nversion: rev\n"
                           "columns:\n  id: text\n  rev: { type: integer, default: 0 }\n"
                           "  note: { type: text, nullable: true }\n"
                           "on:\n  a:\n    update:\n      where: { id: $.aggregate_id }\n"
                           "      set: { rev: $.version, note: null }\n"
                           "  b:\n    update:\n      where: { note: \"x\" }\n"
                           "      add: { rev: 1 }\n",
                           &set);
    cr_assert_str_empty(errs, "%s", errs);
    const Model *m = &set->models[0];
    cr_expect_eq(m->version_column, 1);
    const Action *a = action_of(m, "a", 0);
    cr_expect(a->sets_version);
    const Assign *note = assign_of(m, a->set, a->nset, "note");
    cr_expect_eq(note->expr->kind, EXPR_LITERAL);
    cr_expect_eq(note->expr->literal.kind, EXPR_VAL_NULL);
    cr_expect_not(action_of(m, "b", 0)->sets_version);
    model_set_free(set);
    free(errs);
}

typedef struct TextCase {
    const char *yaml;
    const char *errors;
} TextCase;

/* Small inline cases: positions inside quoted scalars and flow mappings, and rules that
 * the fixtures do not show. */
Test(model, inline_cases)
{
    static const TextCase cases[] = {
        {"readmodel: t\ntable: t\nstreams: s\nkey: id\ncolumns: { id: text }\non:\n"
         "  e: { upsert: { id: \"lenght($.aggregate_id)\" } }\n",
         "7:23: unknown function \"lenght\": expected one of length, sum, coalesce, lower, "
         "upper, concat, now\n"},
        {"readmodel: t\ntable: t\nstreams: s\nkey: id\ncolumns: { id: text, n: int }\non:\n"
         "  e: { upsert: { id: $.aggregate_id, n: coalesce($.payload.n, $.payload.m) x } }\n",
         "7:76: unexpected 'x' after expression\n"},
        {"readmodel: t\ntable: t\nstreams: s\nkey: id\ncolumns: { id: text, n: int }\non:\n"
         "  e: { upsert: { id: $.aggregate_id, n: null } }\n",
         "7:41: value null for column \"n\", which is not nullable\n"},
        {"readmodel: t\ntable: t\nstreams: s\nkey: id\ncolumns: { id: text, n: jsonb }\non:\n"
         "  e:\n    upsert:\n      id: $.aggregate_id\n      n: $.payload.items[*]\n",
         ""},
        {"readmodel: t\ntable: t\nstreams: s\nkey: id\ncolumns: { id: text, n: int }\non:\n"
         "  e:\n    upsert:\n      id: $.aggregate_id\n      n: 1 + $.payload.items[*].qty\n",
         "10:14: path \"$.payload.items[*].qty\" collects an array: use it inside sum() or "
         "length(), or as the whole value of a jsonb column\n"},
        {"readmodel: t\ntable: t\nstreams: s\nkey: id\ncolumns: { id: text }\non:\n"
         "  e:\n    delete:\n      where: { id: $.aggregate_id }\n      when: |\n"
         "        $.payload.a == 1 and\n        $.payload.b ==\n",
         "10:13: unexpected end of input: expected a path, literal, function call or '('\n"},
        {"- just\n- a list\n", "1:1: invalid read-model file: expected a mapping, found a "
                               "sequence\n"},
        {"readmodel: t\ntable: t\nstreams: s\nkey: id\ncolumns: { id: text }\non:\n"
         "  e: { update: { where: { id: $.aggregate_id }, set: { id: x }, when: 1 } }\n",
         "7:72: expected a comparison operator (==, !=, <, <=, >, >=) after \"1\"\n"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        ModelSet *set;
        char *errs = load_text(cases[i].yaml, &set);
        cr_expect_str_eq(errs, cases[i].errors, "case %zu: got \"%s\"", i, errs);
        model_set_free(set);
        free(errs);
    }
}
