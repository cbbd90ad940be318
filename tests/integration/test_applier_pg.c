/* test_applier_pg.c - the applier's statements and tables.c against a real PostgreSQL:
 * tables created by tables_ensure, every statement prepared, bound events executed one
 * after another, and the resulting rows checked with SQL. Each test has its own database.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply/applier.h"
#include "model/model.h"
#include "sink/tables.h"
#include "testenv.h"

#define GOOD_DIR PROJECTOR_SOURCE_DIR "/tests/data/good/"

/* A qualified table (its schema does not exist yet) and an update guarded by version. */
static const char accounts_yaml[] = "readmodel: accounts\n"
                                    "table: app.accounts\n"
                                    "streams: [accounts]\n"
                                    "key: [id]\n"
                                    "version: version\n"
                                    "columns:\n"
                                    "  id: text\n"
                                    "  owner: { type: text, nullable: true }\n"
                                    "  balance: { type: numeric(12,2), default: 0 }\n"
                                    "  version: { type: bigint, nullable: true }\n"
                                    "on:\n"
                                    "  account.opened:\n"
                                    "    upsert: { id: $.aggregate_id }\n"
                                    "  account.renamed:\n"
                                    "    update:\n"
                                    "      where: { id: $.aggregate_id }\n"
                                    "      set: { owner: $.payload.owner, version: $.version }\n";

typedef struct Ctx {
    char *conninfo;
    PGconn *conn;
    char *dir;
    char *files[5];
    size_t nfiles;
    ModelSet *set;
    ApplierPlan **plans; /* one per model */
} Ctx;

static Ctx ctx;

static void load_models(void)
{
    Diagnostics diag = {0};
    int r = model_load_files((const char *const *)ctx.files, ctx.nfiles, &ctx.set, &diag);
    if (r < 0)
        diag_print(&diag, stderr);
    cr_assert_eq(r, 0, "models do not load");
    diag_done(&diag);
}

static void ensure_tables(void)
{
    Diagnostics diag = {0};
    int r = tables_ensure(ctx.conn, ctx.set, &diag);
    if (r < 0)
        diag_print(&diag, stderr);
    cr_assert_eq(r, 0, "tables_ensure failed");
    cr_assert_eq(diag.count, 0);
    diag_done(&diag);
}

static char *statement_name(size_t model, const PlanStatement *st)
{
    return xasprintf("m%zu_%s", model, st->name);
}

static void prepare_all(void)
{
    ctx.plans = xcalloc(ctx.set->count, sizeof *ctx.plans);
    for (size_t m = 0; m < ctx.set->count; m++) {
        PjError err = {0};
        cr_assert_eq(applier_plan_new(ctx.set, m, &ctx.plans[m], &err), 0, "%s", err.message);
        for (size_t i = 0; i < applier_plan_count(ctx.plans[m]); i++) {
            const PlanStatement *st = applier_plan_statement(ctx.plans[m], i);
            char *name = statement_name(m, st);
            PGresult *res = PQprepare(ctx.conn, name, st->sql, st->nparams, NULL);
            cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "cannot prepare %s: %s\n%s", name,
                         PQerrorMessage(ctx.conn), st->sql);
            PQclear(res);
            free(name);
        }
    }
}

static void setup(void)
{
    if (!testenv_have_servers())
        cr_skip_test("PROJECTOR_TEST_PG and PROJECTOR_TEST_REDIS_URL are not set");
    ctx = (Ctx){0};
    ctx.conninfo = testenv_create_db("applier");
    ctx.conn = testenv_pg(ctx.conninfo);
    ctx.dir = testenv_tmpdir();
    ctx.files[ctx.nfiles++] = xstrdup(GOOD_DIR "customers.yaml");
    ctx.files[ctx.nfiles++] = xstrdup(GOOD_DIR "orders.yaml");
    ctx.files[ctx.nfiles++] = xstrdup(GOOD_DIR "customer_stats.yaml");
    ctx.files[ctx.nfiles++] = xstrdup(GOOD_DIR "order_lines.yaml");
    ctx.files[ctx.nfiles++] = testenv_write_file(ctx.dir, "accounts.yaml", accounts_yaml);
    load_models();
    ensure_tables();
    prepare_all();
}

static void teardown(void)
{
    for (size_t m = 0; ctx.plans != NULL && m < ctx.set->count; m++)
        applier_plan_free(ctx.plans[m]);
    free(ctx.plans);
    model_set_free(ctx.set);
    for (size_t i = 0; i < ctx.nfiles; i++)
        free(ctx.files[i]);
    free(ctx.dir);
    if (ctx.conn != NULL)
        PQfinish(ctx.conn);
    free(ctx.conninfo);
}

/* Binds the event (JSON text) for one read model and runs its statements in a
 * transaction. Returns "" when everything ran (or the type is not handled), else the
 * SQLSTATE of the first failure; "bind" when binding failed. */
static const char *apply(const char *model, const char *json)
{
    static char state[8];
    int mi = model_set_find(ctx.set, model);
    Bound b = {0};
    PjError err = {0};
    json_error_t jerr;
    json_t *event = json_loads(json, 0, &jerr);

    cr_assert_not_null(event, "bad test event: %s", jerr.text);
    cr_assert_geq(mi, 0);
    int r = applier_bind(ctx.plans[mi], event, &b, &err);
    json_decref(event);
    if (r < 0)
        return "bind";
    snprintf(state, sizeof state, "%s", "");
    PQclear(testenv_sql(ctx.conn, "BEGIN"));
    for (size_t i = 0; i < b.count && state[0] == '\0'; i++) {
        const BoundStatement *bs = &b.items[i];
        char *name =
            statement_name((size_t)mi, applier_plan_statement(ctx.plans[mi], bs->statement));
        PGresult *res = PQexecPrepared(ctx.conn, name, bs->nparams, (const char *const *)bs->params,
                                       NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
            snprintf(state, sizeof state, "%s", PQresultErrorField(res, PG_DIAG_SQLSTATE));
        PQclear(res);
        free(name);
    }
    PQclear(testenv_sql(ctx.conn, state[0] == '\0' ? "COMMIT" : "ROLLBACK"));
    bound_done(&b);
    return state;
}

static void apply_ok(const char *model, const char *json)
{
    const char *state = apply(model, json);
    cr_assert_str_eq(state, "", "event failed (%s): %s", state, json);
}

static void expect_rows(const char *sql, const char *want)
{
    char *got = testenv_query_text(ctx.conn, sql);
    cr_expect_str_eq(got, want, "%s", sql);
    free(got);
}

/* Events, spelled once. */
static char *placed(const char *order, const char *customer, const char *amount, int version)
{
    return xasprintf("{\"type\": \"order.placed\", \"version\": %d, \"occurred_at\": "
                     "\"2026-01-15T10:30:00Z\", \"payload\": {\"orderId\": \"%s\", "
                     "\"customerId\": \"%s\", \"items\": [{\"qty\": 1}, {\"qty\": 1}], "
                     "\"total\": {\"amount\": \"%s\", \"currency\": \"EUR\"}}}",
                     version, order, customer, amount);
}

static void place(const char *model, const char *order, const char *customer, const char *amount,
                  int version)
{
    char *e = placed(order, customer, amount, version);
    apply_ok(model, e);
    free(e);
}

static void add_customer(const char *id, const char *name)
{
    char *e = xasprintf("{\"type\": \"customer.registered\", \"payload\": {\"customerId\": "
                        "\"%s\", \"name\": \"%s\"}}",
                        id, name);
    apply_ok("customers", e);
    free(e);
}

#define ORDERS_ROWS                                                                                \
    "SELECT id, customer_name, status, item_count, total, confirmed_at IS NOT NULL, version "      \
    "FROM order_read_model ORDER BY id"

Test(applier_pg, upsert_then_update_set_and_add, .init = setup, .fini = teardown)
{
    add_customer("c-9", "Ada");
    place("orders", "o-1", "c-9", "99.99", 3);
    expect_rows(ORDERS_ROWS, "o-1|Ada|pending|2|99.99|f|3");

    apply_ok("orders", "{\"type\": \"order.item_added\", \"payload\": {\"orderId\": \"o-1\", "
                       "\"qty\": 3}}");
    apply_ok("orders", "{\"type\": \"order.confirmed\", \"occurred_at\": \"2026-01-15T11:00:00Z\","
                       " \"payload\": {\"orderId\": \"o-1\"}}");
    apply_ok("orders", "{\"type\": \"order.line_added\", \"payload\": {\"orderId\": \"o-1\", "
                       "\"qty\": 3, \"unitPrice\": \"0.5\"}}");
    expect_rows(ORDERS_ROWS, "o-1|Ada|confirmed|5|101.49|t|3");
    /* An update that matches no row changes nothing and is no error. */
    apply_ok("orders", "{\"type\": \"order.confirmed\", \"occurred_at\": \"2026-01-15T11:00:00Z\","
                       " \"payload\": {\"orderId\": \"o-404\"}}");
    expect_rows("SELECT count(*) FROM order_read_model", "1");
}

Test(applier_pg, fan_out_update_by_a_non_key_column, .init = setup, .fini = teardown)
{
    add_customer("c-9", "Ada");
    add_customer("c-8", "Cy");
    place("orders", "o-1", "c-9", "1", 1);
    place("orders", "o-2", "c-9", "2", 1);
    place("orders", "o-3", "c-8", "3", 1);

    apply_ok("orders", "{\"type\": \"customer.renamed\", \"payload\": {\"customerId\": \"c-9\", "
                       "\"name\": \"Bea\"}}");
    expect_rows("SELECT id, customer_name FROM order_read_model ORDER BY id",
                "o-1|Bea\no-2|Bea\no-3|Cy");
}

Test(applier_pg, delete_and_guarded_delete, .init = setup, .fini = teardown)
{
    add_customer("c-9", "Ada");
    place("orders", "o-1", "c-9", "1", 1);
    place("orders", "o-2", "c-9", "2", 1);
    place("orders", "o-3", "c-9", "3", 1);

    apply_ok("orders", "{\"type\": \"order.cancelled\", \"payload\": {\"orderId\": \"o-1\"}}");
    apply_ok("orders", "{\"type\": \"order.refunded\", \"payload\": {\"orderId\": \"o-2\", "
                       "\"reason\": \"fraud\", \"amount\": 150}}");
    apply_ok("orders", "{\"type\": \"order.refunded\", \"payload\": {\"orderId\": \"o-3\", "
                       "\"reason\": \"fraud\", \"amount\": 99}}");
    expect_rows("SELECT id, status FROM order_read_model ORDER BY id", "o-3|refunded");
}

Test(applier_pg, lookup_reads_the_other_table, .init = setup, .fini = teardown)
{
    add_customer("c-9", "Ada");
    place("orders", "o-1", "c-9", "1", 1);
    expect_rows("SELECT customer_name FROM order_read_model", "Ada");
    /* customer_name is NOT NULL: an order of an unknown customer is a constraint error. */
    char *e = placed("o-2", "c-unknown", "1", 1);
    cr_expect_str_eq(apply("orders", e), "23502");
    free(e);
    expect_rows("SELECT count(*) FROM order_read_model", "1");
}

Test(applier_pg, version_guard_on_upsert, .init = setup, .fini = teardown)
{
    add_customer("c-9", "Ada");
    place("orders", "o-1", "c-9", "10", 3);
    place("orders", "o-1", "c-9", "20", 3); /* equal: ignored */
    place("orders", "o-1", "c-9", "30", 2); /* older: ignored */
    expect_rows("SELECT total, version FROM order_read_model", "10.00|3");
    place("orders", "o-1", "c-9", "40", 4);
    expect_rows("SELECT total, version FROM order_read_model", "40.00|4");
}

static void rename_account(const char *owner, int version)
{
    char *e = xasprintf("{\"type\": \"account.renamed\", \"aggregate_id\": \"a-1\", "
                        "\"version\": %d, \"payload\": {\"owner\": \"%s\"}}",
                        version, owner);
    apply_ok("accounts", e);
    free(e);
}

Test(applier_pg, version_guard_on_update, .init = setup, .fini = teardown)
{
    apply_ok("accounts", "{\"type\": \"account.opened\", \"aggregate_id\": \"a-1\"}");
    apply_ok("accounts", "{\"type\": \"account.opened\", \"aggregate_id\": \"a-1\"}");
    expect_rows("SELECT id, owner, balance, version FROM app.accounts", "a-1|\\N|0.00|\\N");
    rename_account("Ada", 5); /* a row without a version takes any */
    rename_account("Bob", 5); /* equal: ignored */
    rename_account("Cy", 4);  /* older: ignored */
    expect_rows("SELECT owner, version FROM app.accounts", "Ada|5");
    rename_account("Dee", 6);
    expect_rows("SELECT owner, version FROM app.accounts", "Dee|6");
}

Test(applier_pg, counters_start_from_the_default, .init = setup, .fini = teardown)
{
    place("customer_stats", "o-1", "c-9", "10.50", 1);
    expect_rows("SELECT customer_id, orders, total_spent FROM customer_stats", "c-9|1|10.50");
    place("customer_stats", "o-2", "c-9", "2.25", 2);
    place("customer_stats", "o-3", "c-8", "1", 3);
    expect_rows("SELECT customer_id, orders, total_spent FROM customer_stats ORDER BY 1",
                "c-8|1|1.00\nc-9|2|12.75");
}

Test(applier_pg, value_that_does_not_cast_fails_with_22P02, .init = setup, .fini = teardown)
{
    add_customer("c-9", "Ada");
    place("orders", "o-1", "c-9", "1", 1);
    cr_expect_str_eq(apply("orders", "{\"type\": \"order.item_added\", \"payload\": "
                                     "{\"orderId\": \"o-1\", \"qty\": \"abc\"}}"),
                     "22P02");
    char *e = placed("o-2", "c-9", "ten", 1);
    cr_expect_str_eq(apply("orders", e), "22P02");
    free(e);
    expect_rows("SELECT id, item_count FROM order_read_model", "o-1|2");
}

/* ---------------------------------------------------------------------------------------
 * tables_ensure and tables_describe on existing tables
 * --------------------------------------------------------------------------------------- */

#define CATALOG_STATE                                                                              \
    "SELECT c.relname, c.xmin, c.relnatts, (SELECT count(*) FROM pg_index i WHERE "                \
    "i.indrelid = c.oid) FROM pg_class c WHERE c.oid IN ('order_read_model'::regclass, "           \
    "'customer_stats'::regclass, 'app.accounts'::regclass) ORDER BY 1"

Test(applier_pg, ensure_on_matching_tables_changes_nothing, .init = setup, .fini = teardown)
{
    add_customer("c-9", "Ada");
    place("orders", "o-1", "c-9", "1", 1);
    char *before = testenv_query_text(ctx.conn, CATALOG_STATE);
    ensure_tables();
    expect_rows(CATALOG_STATE, before);
    expect_rows("SELECT id FROM order_read_model", "o-1");
    free(before);
}

Test(applier_pg, ensure_adds_a_new_yaml_column, .init = setup, .fini = teardown)
{
    add_customer("c-9", "Ada");
    place("orders", "o-1", "c-9", "1", 1);
    PQclear(testenv_sql(ctx.conn, "ALTER TABLE order_read_model DROP COLUMN confirmed_at"));
    ensure_tables();
    expect_rows("SELECT id, confirmed_at FROM order_read_model", "o-1|\\N");
    expect_rows("SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute WHERE "
                "attrelid = 'order_read_model'::regclass AND attname = 'confirmed_at'",
                "timestamp with time zone|f");
}

Test(applier_pg, ensure_reports_a_mismatch_and_changes_nothing, .init = setup, .fini = teardown)
{
    PQclear(testenv_sql(ctx.conn, "ALTER TABLE order_read_model ALTER COLUMN total TYPE "
                                  "numeric(10,2)"));
    PQclear(testenv_sql(ctx.conn, "ALTER TABLE order_read_model DROP COLUMN confirmed_at"));
    Diagnostics diag = {0};

    int r = tables_ensure(ctx.conn, ctx.set, &diag);
    cr_expect_eq(r, -PJ_EINVAL);
    cr_assert_eq(diag.count, 1);
    cr_expect_str_eq(diag.items[0].message,
                     "column \"total\" of table \"order_read_model\" has type numeric(10,2) in "
                     "the database, but the read model declares numeric(12,2)");
    cr_expect_not_null(strstr(diag.items[0].file, "orders.yaml"), "%s", diag.items[0].file);
    cr_expect_gt(diag.items[0].line, 0);
    /* The missing column was not added, and the session is usable again. */
    expect_rows("SELECT count(*) FROM pg_attribute WHERE attrelid = 'order_read_model'::regclass "
                "AND attname = 'confirmed_at' AND NOT attisdropped",
                "0");
    cr_expect_eq(PQtransactionStatus(ctx.conn), PQTRANS_IDLE);
    diag_done(&diag);
}

Test(applier_pg, ensure_reports_a_column_it_cannot_add, .init = setup, .fini = teardown)
{
    /* A NOT NULL column without default cannot be added to a table that has rows. */
    add_customer("c-9", "Ada");
    place("orders", "o-1", "c-9", "1", 1);
    PQclear(testenv_sql(ctx.conn, "ALTER TABLE order_read_model DROP COLUMN currency"));
    Diagnostics diag = {0};

    cr_expect_eq(tables_ensure(ctx.conn, ctx.set, &diag), -PJ_EINVAL);
    cr_assert_eq(diag.count, 1);
    cr_expect_not_null(strstr(diag.items[0].message, "\"order_read_model\""), "%s",
                       diag.items[0].message);
    cr_expect_not_null(strstr(diag.items[0].message, "currency"), "%s", diag.items[0].message);
    cr_expect_not_null(strstr(diag.items[0].file, "orders.yaml"), "%s", diag.items[0].file);
    expect_rows("SELECT count(*) FROM pg_attribute WHERE attrelid = 'order_read_model'::regclass "
                "AND attname = 'currency' AND NOT attisdropped",
                "0");
    cr_expect_eq(PQtransactionStatus(ctx.conn), PQTRANS_IDLE);
    diag_done(&diag);
}

Test(applier_pg, describe_reads_columns_and_key, .init = setup, .fini = teardown)
{
    const Model *m = &ctx.set->models[model_set_find(ctx.set, "orders")];
    LiveTable live = {0};
    PjError err = {0};

    cr_assert_eq(tables_describe(ctx.conn, m, &live, &err), 0, "%s", err.message);
    cr_expect(live.exists);
    cr_assert_eq(live.ncolumns, m->ncolumns);
    for (size_t i = 0; i < m->ncolumns; i++) {
        cr_expect_str_eq(live.columns[i].name, m->columns[i].name);
        cr_expect_str_eq(live.columns[i].sql_type, m->columns[i].sql_type);
        cr_expect_eq(live.columns[i].not_null, !m->columns[i].nullable);
    }
    cr_assert_eq(live.nkey, 1);
    cr_expect_str_eq(live.key[0], "id");
    live_table_done(&live);

    /* An unqualified table is the first one on the search_path. */
    PQclear(testenv_sql(ctx.conn, "CREATE SCHEMA other"));
    PQclear(testenv_sql(ctx.conn, "CREATE TABLE other.order_read_model (a int, b text, "
                                  "PRIMARY KEY (b, a))"));
    PQclear(testenv_sql(ctx.conn, "SET search_path = other, public"));
    cr_assert_eq(tables_describe(ctx.conn, m, &live, &err), 0, "%s", err.message);
    cr_assert_eq(live.ncolumns, 2);
    cr_assert_eq(live.nkey, 2);
    cr_expect_str_eq(live.key[0], "b");
    cr_expect_str_eq(live.key[1], "a");
    live_table_done(&live);

    PQclear(testenv_sql(ctx.conn, "DROP TABLE other.order_read_model"));
    PQclear(testenv_sql(ctx.conn, "DROP TABLE public.order_read_model"));
    cr_assert_eq(tables_describe(ctx.conn, m, &live, &err), 0, "%s", err.message);
    cr_expect_not(live.exists);
    live_table_done(&live);

    PQclear(testenv_sql(ctx.conn, "CREATE VIEW order_read_model AS SELECT 1 AS id"));
    cr_expect_eq(tables_describe(ctx.conn, m, &live, &err), -PJ_EINVAL);
}
