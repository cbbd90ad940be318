/* test_ddl.c - the CREATE statements of the fixture models and the comparison of a model
 * with a described table (the live table is built by hand here; test_applier_pg reads a
 * real one).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply/ddl.h"
#include "model/model.h"
#include "testenv.h"

#define GOOD_DIR PROJECTOR_SOURCE_DIR "/tests/data/good/"

static ModelSet *load_good(void)
{
    static const char *const files[] = {GOOD_DIR "customers.yaml", GOOD_DIR "orders.yaml",
                                        GOOD_DIR "customer_stats.yaml"};
    ModelSet *set = testenv_load_models(files, ARRAY_SIZE(files));
    cr_assert_not_null(set, "fixtures do not load");
    return set;
}

static ModelSet *load_text(const char *name, const char *yaml)
{
    ModelSet *set = testenv_load_model_text(name, yaml);
    cr_assert_not_null(set, "%s does not load", name);
    return set;
}

static const Model *model_named(const ModelSet *set, const char *name)
{
    int i = model_set_find(set, name);
    cr_assert_geq(i, 0, "no read model \"%s\"", name);
    return &set->models[i];
}

Test(ddl, creates_orders_table_and_index)
{
    ModelSet *set = load_good();
    char *sql = ddl_create_sql(model_named(set, "orders"));

    cr_expect_str_eq(sql, "CREATE TABLE IF NOT EXISTS \"order_read_model\" (\n"
                          "    \"id\" text NOT NULL,\n"
                          "    \"customer_id\" text NOT NULL,\n"
                          "    \"customer_name\" text NOT NULL,\n"
                          "    \"status\" text NOT NULL,\n"
                          "    \"item_count\" integer NOT NULL DEFAULT CAST('0' AS integer),\n"
                          "    \"total\" numeric(12,2) NOT NULL,\n"
                          "    \"currency\" text NOT NULL,\n"
                          "    \"created_at\" timestamp with time zone NOT NULL,\n"
                          "    \"confirmed_at\" timestamp with time zone,\n"
                          "    \"version\" bigint NOT NULL,\n"
                          "    PRIMARY KEY (\"id\")\n"
                          ");\n"
                          "CREATE INDEX IF NOT EXISTS "
                          "\"order_read_model_customer_id_created_at_idx\" ON "
                          "\"order_read_model\" (\"customer_id\", \"created_at\");\n");
    free(sql);
    model_set_free(set);
}

Test(ddl, defaults_are_quoted_literals_cast_to_the_type)
{
    ModelSet *set = load_good();
    char *sql = ddl_create_sql(model_named(set, "customer_stats"));

    cr_expect_not_null(strstr(sql, "\"orders\" integer NOT NULL DEFAULT CAST('0' AS integer),\n"),
                       "%s", sql);
    cr_expect_not_null(
        strstr(sql, "\"total_spent\" numeric(14,2) NOT NULL DEFAULT CAST('0' AS numeric(14,2)),\n"),
        "%s", sql);
    free(sql);
    model_set_free(set);
}

static const char long_yaml[] = "readmodel: long\n"
                                "table: app.a_table_with_a_rather_long_name_for_testing\n"
                                "streams: [s]\n"
                                "key: [id]\n"
                                "columns:\n"
                                "  id: text\n"
                                "  first_long_column_name: text\n"
                                "  second_long_column_name: { type: text, default: \"it's\" }\n"
                                "indexes:\n"
                                "  - [first_long_column_name, second_long_column_name]\n"
                                "  - [second_long_column_name, first_long_column_name]\n"
                                "  - [id]\n"
                                "on:\n"
                                "  x.happened:\n"
                                "    upsert:\n"
                                "      id: $.aggregate_id\n"
                                "      first_long_column_name: $.payload.first\n";

/* Collects the quoted names that follow "CREATE INDEX IF NOT EXISTS ". */
static size_t index_names(const char *sql, char names[][80], size_t max)
{
    static const char marker[] = "CREATE INDEX IF NOT EXISTS \"";
    size_t n = 0;

    for (const char *p = strstr(sql, marker); p != NULL && n < max; p = strstr(p, marker)) {
        p += strlen(marker);
        size_t len = strcspn(p, "\"");
        cr_assert_lt(len, 80);
        memcpy(names[n], p, len);
        names[n++][len] = '\0';
    }
    return n;
}

Test(ddl, long_index_names_are_shortened_with_a_hash)
{
    ModelSet *set = load_text("long.yaml", long_yaml);
    char *sql = ddl_create_sql(model_named(set, "long"));
    char names[3][80];

    cr_assert_eq(index_names(sql, names, 3), 3, "%s", sql);
    for (size_t i = 0; i < 2; i++) {
        cr_expect_eq(strlen(names[i]), 63, "\"%s\"", names[i]);
        cr_expect(sql_ident_is_safe(names[i]), "\"%s\"", names[i]);
        cr_expect_str_eq(names[i] + 59, "_idx");
    }
    cr_expect_str_neq(names[0], names[1]);
    cr_expect_str_eq(names[2], "a_table_with_a_rather_long_name_for_testing_id_idx");
    cr_expect_not_null(strstr(sql, "CREATE TABLE IF NOT EXISTS "
                                   "\"app\".\"a_table_with_a_rather_long_name_for_testing\" (\n"));
    cr_expect_not_null(strstr(sql, " ON \"app\".\"a_table_with_a_rather_long_name_for_testing\" "
                                   "(\"first_long_column_name\", \"second_long_column_name\");\n"));
    cr_expect_not_null(strstr(sql, "DEFAULT CAST('it''s' AS text)"), "%s", sql);

    /* The same model always gets the same names. */
    char *again = ddl_create_sql(model_named(set, "long"));
    cr_expect_str_eq(again, sql);
    free(again);
    free(sql);
    model_set_free(set);
}

/* ---------------------------------------------------------------------------------------
 * Reconciling with an existing table
 * --------------------------------------------------------------------------------------- */

/* The live table that matches m exactly. */
static void live_from_model(const Model *m, LiveTable *t)
{
    *t = (LiveTable){.exists = true};
    t->columns = xcalloc(m->ncolumns, sizeof *t->columns);
    for (size_t i = 0; i < m->ncolumns; i++)
        t->columns[i] = (LiveColumn){.name = xstrdup(m->columns[i].name),
                                     .sql_type = xstrdup(m->columns[i].sql_type),
                                     .not_null = !m->columns[i].nullable};
    t->ncolumns = m->ncolumns;
    t->key = xcalloc(m->nkey, sizeof *t->key);
    for (size_t i = 0; i < m->nkey; i++)
        t->key[i] = xstrdup(m->columns[m->key[i]].name);
    t->nkey = m->nkey;
}

static LiveColumn *live_column(LiveTable *t, const char *name)
{
    for (size_t i = 0; i < t->ncolumns; i++)
        if (strcmp(t->columns[i].name, name) == 0)
            return &t->columns[i];
    cr_assert_fail("no live column \"%s\"", name);
    return NULL;
}

static void drop_live_column(LiveTable *t, const char *name)
{
    LiveColumn *c = live_column(t, name);
    free(c->name);
    free(c->sql_type);
    *c = t->columns[--t->ncolumns];
}

typedef enum {
    MUT_NONE,
    MUT_MISSING_TABLE,
    MUT_EXTRA_COLUMN,
    MUT_DROP_COLUMN,
    MUT_TYPE,
    MUT_NOT_NULL,
    MUT_NULLABLE,
    MUT_NO_KEY,
    MUT_OTHER_KEY
} Mutation;

typedef struct ReconcileCase {
    Mutation mutation;
    int result;
    const char *alter_sql;
    const char *message; /* the one diagnostic expected, or NULL for none */
    int line;            /* its line: the column's declaration, 0 for the table */
} ReconcileCase;

static const ReconcileCase reconcile_cases[] = {
    {MUT_NONE, 0, "", NULL, 0},
    {MUT_MISSING_TABLE, 0, "", NULL, 0},
    {MUT_EXTRA_COLUMN, 0, "", NULL, 0},
    {MUT_DROP_COLUMN, 0,
     "ALTER TABLE \"order_read_model\" ADD COLUMN \"confirmed_at\" timestamp with time zone;\n",
     NULL, 0},
    {MUT_TYPE, -PJ_EINVAL, "",
     "column \"total\" of table \"order_read_model\" has type numeric(10,2) in the database, "
     "but the read model declares numeric(12,2)",
     1},
    {MUT_NOT_NULL, -PJ_EINVAL, "",
     "column \"confirmed_at\" of table \"order_read_model\" is NOT NULL in the database, but "
     "the read model declares it nullable",
     1},
    {MUT_NULLABLE, -PJ_EINVAL, "",
     "column \"status\" of table \"order_read_model\" is nullable in the database, but the "
     "read model declares it NOT NULL",
     1},
    {MUT_NO_KEY, -PJ_EINVAL, "",
     "table \"order_read_model\" has no primary key in the database, but the read model "
     "declares key (id)",
     0},
    {MUT_OTHER_KEY, -PJ_EINVAL, "",
     "table \"order_read_model\" has primary key (id, customer_id) in the database, but the "
     "read model declares key (id)",
     0},
};

static void mutate(LiveTable *t, Mutation mut)
{
    switch (mut) {
    case MUT_MISSING_TABLE:
        live_table_done(t);
        break;
    case MUT_EXTRA_COLUMN:
        t->columns = xrealloc(t->columns, (t->ncolumns + 1) * sizeof *t->columns);
        t->columns[t->ncolumns++] =
            (LiveColumn){.name = xstrdup("legacy"), .sql_type = xstrdup("integer")};
        break;
    case MUT_DROP_COLUMN:
        drop_live_column(t, "confirmed_at");
        break;
    case MUT_TYPE:
        free(live_column(t, "total")->sql_type);
        live_column(t, "total")->sql_type = xstrdup("numeric(10,2)");
        break;
    case MUT_NOT_NULL:
        live_column(t, "confirmed_at")->not_null = true;
        break;
    case MUT_NULLABLE:
        live_column(t, "status")->not_null = false;
        break;
    case MUT_NO_KEY:
        free(t->key[0]);
        t->nkey = 0;
        break;
    case MUT_OTHER_KEY:
        t->key = xrealloc(t->key, 2 * sizeof *t->key);
        t->key[1] = xstrdup("customer_id");
        t->nkey = 2;
        break;
    case MUT_NONE:
        break;
    }
}

/* Parameters cross a process boundary by copy (the test runs in a fresh process whose
 * addresses differ), so they carry an index into the table, not pointers. */
ParameterizedTestParameters(ddl, reconciles_with_the_live_table)
{
    static size_t cases[ARRAY_SIZE(reconcile_cases)];
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        cases[i] = i;
    return cr_make_param_array(size_t, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(size_t *index, ddl, reconciles_with_the_live_table)
{
    const ReconcileCase *c = &reconcile_cases[*index];
    ModelSet *set = load_good();
    const Model *m = model_named(set, "orders");
    LiveTable live;
    StrBuf alter = {0};
    Diagnostics diag = {0};

    live_from_model(m, &live);
    mutate(&live, c->mutation);
    int r = ddl_reconcile(m, &live, &alter, &diag);
    cr_expect_eq(r, c->result, "mutation %d", (int)c->mutation);
    cr_expect_str_eq(alter.buf != NULL ? alter.buf : "", c->alter_sql);
    if (c->message == NULL) {
        cr_expect_eq(diag.count, 0);
    } else {
        cr_assert_eq(diag.count, 1);
        cr_expect_str_eq(diag.items[0].message, c->message);
        cr_expect_str_eq(diag.items[0].file, m->file);
        if (c->line != 0)
            cr_expect_gt(diag.items[0].line, 0, "a column mismatch names its line");
        else
            cr_expect_eq(diag.items[0].line, 0);
    }
    live_table_done(&live);
    strbuf_done(&alter);
    diag_done(&diag);
    model_set_free(set);
}

Test(ddl, reports_every_mismatch_at_once)
{
    ModelSet *set = load_good();
    const Model *m = model_named(set, "orders");
    LiveTable live;
    StrBuf alter = {0};
    Diagnostics diag = {0};

    live_from_model(m, &live);
    mutate(&live, MUT_TYPE);
    mutate(&live, MUT_NULLABLE);
    mutate(&live, MUT_DROP_COLUMN);
    cr_expect_eq(ddl_reconcile(m, &live, &alter, &diag), -PJ_EINVAL);
    cr_expect_eq(diag.count, 2);
    live_table_done(&live);
    strbuf_done(&alter);
    diag_done(&diag);
    model_set_free(set);
}
