/* test_applier.c - the applier without servers: the SQL compiled for every action kind of
 * the fixture models, and the parameters bound for sample normalized events, including
 * the events that must fail (null key, where and add values, bad expressions).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply/applier.h"
#include "model/model.h"
#include "testenv.h"

#define GOOD_DIR PROJECTOR_SOURCE_DIR "/tests/data/good/"

/* A model that exercises what the fixtures do not: a qualified table, an update that sets
 * the version column, a handler whose second action can fail, a key-only upsert, a
 * handler whose only action is guarded by `when:`. */
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
                                    "  account.renamed:\n"
                                    "    update:\n"
                                    "      where: { id: $.aggregate_id }\n"
                                    "      set: { owner: $.payload.owner, version: $.version }\n"
                                    "  account.moved:\n"
                                    "    - update:\n"
                                    "        where: { id: $.aggregate_id }\n"
                                    "        add: { balance: $.payload.amount }\n"
                                    "    - delete:\n"
                                    "        where: { id: $.payload.closeId }\n"
                                    "  account.opened:\n"
                                    "    upsert:\n"
                                    "      id: $.aggregate_id\n"
                                    "  account.closed:\n"
                                    "    delete:\n"
                                    "      when: \"$.payload.final == true\"\n"
                                    "      where: { id: $.aggregate_id }\n";

static ModelSet *load_good(void)
{
    static const char *const files[] = {GOOD_DIR "customers.yaml", GOOD_DIR "orders.yaml",
                                        GOOD_DIR "customer_stats.yaml"};
    ModelSet *set = testenv_load_models(files, ARRAY_SIZE(files));
    cr_assert_not_null(set, "fixtures do not load");
    return set;
}

static ModelSet *load_accounts(void)
{
    ModelSet *set = testenv_load_model_text("accounts.yaml", accounts_yaml);
    cr_assert_not_null(set, "accounts model does not load");
    return set;
}

static ApplierPlan *plan_for(const ModelSet *set, const char *model)
{
    int mi = model_set_find(set, model);
    cr_assert_geq(mi, 0, "no read model \"%s\"", model);
    ApplierPlan *plan = NULL;
    PjError err = {0};
    cr_assert_eq(applier_plan_new(set, (size_t)mi, &plan, &err), 0, "%s", err.message);
    return plan;
}

/* The plan statement of action `action` (0-based) of the handler for event_type. */
static size_t statement_of(const ModelSet *set, const ApplierPlan *plan, const char *model,
                           const char *event_type, size_t action)
{
    const Model *m = &set->models[model_set_find(set, model)];
    const Handler *h = model_find_handler(m, event_type);
    cr_assert_not_null(h, "no handler for \"%s\"", event_type);
    char *name = xasprintf("a%zu_%zu", (size_t)(h - m->handlers), action);
    for (size_t i = 0; i < applier_plan_count(plan); i++) {
        if (strcmp(applier_plan_statement(plan, i)->name, name) == 0) {
            free(name);
            return i;
        }
    }
    cr_assert_fail("no statement %s", name);
    return 0;
}

static int bind_text(const ApplierPlan *plan, const char *json, Bound *out, PjError *err)
{
    json_error_t jerr;
    json_t *event = json_loads(json, 0, &jerr);
    cr_assert_not_null(event, "bad test event: %s", jerr.text);
    int r = applier_bind(plan, event, out, err);
    json_decref(event);
    return r;
}

/* Asserts the parameters of one bound statement; "\\N" stands for NULL. */
static void assert_params(const BoundStatement *bs, const char *const *want, int n)
{
    cr_assert_eq(bs->nparams, n);
    for (int i = 0; i < n; i++) {
        if (strcmp(want[i], "\\N") == 0)
            cr_expect_null(bs->params[i], "parameter $%d is \"%s\"", i + 1, bs->params[i]);
        else
            cr_expect_str_eq(bs->params[i] != NULL ? bs->params[i] : "(null)", want[i],
                             "parameter $%d", i + 1);
    }
}

/* ---------------------------------------------------------------------------------------
 * Compiled SQL, one row per action kind
 * --------------------------------------------------------------------------------------- */

typedef struct SqlCase {
    const char *model;
    const char *event_type;
    size_t action;
    int nparams;
    const char *sql;
} SqlCase;

static const SqlCase sql_cases[] = {
    {"orders", "order.placed", 0, 9,
     "INSERT INTO \"order_read_model\" AS t (\"id\", \"customer_id\", \"customer_name\", "
     "\"status\", \"item_count\", \"total\", \"currency\", \"created_at\", \"version\") VALUES "
     "(CAST($1 AS text), CAST($2 AS text), (SELECT s.\"name\" FROM \"customers\" AS s WHERE "
     "s.\"id\" = CAST($3 AS text) LIMIT 1), CAST($4 AS text), CAST($5 AS integer), "
     "CAST($6 AS numeric(12,2)), CAST($7 AS text), CAST($8 AS timestamp with time zone), "
     "CAST($9 AS bigint)) ON CONFLICT (\"id\") DO UPDATE SET \"customer_id\" = "
     "EXCLUDED.\"customer_id\", \"customer_name\" = EXCLUDED.\"customer_name\", \"status\" = "
     "EXCLUDED.\"status\", \"item_count\" = EXCLUDED.\"item_count\", \"total\" = "
     "EXCLUDED.\"total\", \"currency\" = EXCLUDED.\"currency\", \"created_at\" = "
     "EXCLUDED.\"created_at\", \"version\" = EXCLUDED.\"version\" WHERE t.\"version\" IS NULL "
     "OR t.\"version\" < EXCLUDED.\"version\""},
    {"orders", "order.item_added", 0, 2,
     "UPDATE \"order_read_model\" AS t SET \"item_count\" = COALESCE(t.\"item_count\", "
     "CAST('0' AS integer)) + CAST($1 AS integer) WHERE t.\"id\" = CAST($2 AS text)"},
    {"orders", "order.confirmed", 0, 3,
     "UPDATE \"order_read_model\" AS t SET \"status\" = CAST($1 AS text), \"confirmed_at\" = "
     "CAST($2 AS timestamp with time zone) WHERE t.\"id\" = CAST($3 AS text)"},
    {"orders", "order.cancelled", 0, 1,
     "DELETE FROM \"order_read_model\" AS t WHERE t.\"id\" = CAST($1 AS text)"},
    {"orders", "customer.renamed", 0, 2,
     "UPDATE \"order_read_model\" AS t SET \"customer_name\" = CAST($1 AS text) WHERE "
     "t.\"customer_id\" = CAST($2 AS text)"},
    {"orders", "order.line_added", 0, 2,
     "UPDATE \"order_read_model\" AS t SET \"total\" = COALESCE(t.\"total\", 0) + "
     "CAST($1 AS numeric(12,2)) WHERE t.\"id\" = CAST($2 AS text)"},
    {"orders", "order.refunded", 1, 1,
     "DELETE FROM \"order_read_model\" AS t WHERE t.\"id\" = CAST($1 AS text)"},
    {"customer_stats", "order.placed", 0, 4,
     "INSERT INTO \"customer_stats\" AS t (\"customer_id\", \"last_order_at\", \"orders\", "
     "\"total_spent\") VALUES (CAST($1 AS text), CAST($2 AS timestamp with time zone), "
     "CAST('0' AS integer) + CAST($3 AS integer), CAST('0' AS numeric(14,2)) + "
     "CAST($4 AS numeric(14,2))) ON CONFLICT (\"customer_id\") DO UPDATE SET "
     "\"last_order_at\" = EXCLUDED.\"last_order_at\", \"orders\" = COALESCE(t.\"orders\", "
     "CAST('0' AS integer)) + CAST($3 AS integer), \"total_spent\" = "
     "COALESCE(t.\"total_spent\", CAST('0' AS numeric(14,2))) + CAST($4 AS numeric(14,2))"},
    {"accounts", "account.renamed", 0, 3,
     "UPDATE \"app\".\"accounts\" AS t SET \"owner\" = CAST($1 AS text), \"version\" = "
     "CAST($2 AS bigint) WHERE t.\"id\" = CAST($3 AS text) AND (t.\"version\" IS NULL OR "
     "t.\"version\" < CAST($2 AS bigint))"},
    {"accounts", "account.opened", 0, 1,
     "INSERT INTO \"app\".\"accounts\" AS t (\"id\") VALUES (CAST($1 AS text)) ON CONFLICT "
     "(\"id\") DO NOTHING"},
};

/* Parameters cross a process boundary by copy (the test runs in a fresh process whose
 * addresses differ), so they carry an index into the table, not pointers. */
ParameterizedTestParameters(applier, compiles_sql)
{
    static size_t cases[ARRAY_SIZE(sql_cases)];
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        cases[i] = i;
    return cr_make_param_array(size_t, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(size_t *index, applier, compiles_sql)
{
    const SqlCase *c = &sql_cases[*index];
    ModelSet *set = strcmp(c->model, "accounts") == 0 ? load_accounts() : load_good();
    ApplierPlan *plan = plan_for(set, c->model);
    size_t i = statement_of(set, plan, c->model, c->event_type, c->action);
    const PlanStatement *st = applier_plan_statement(plan, i);

    cr_expect_str_eq(st->sql, c->sql, "%s action %zu", c->event_type, c->action + 1);
    cr_expect_eq(st->nparams, c->nparams);
    applier_plan_free(plan);
    model_set_free(set);
}

Test(applier, one_statement_per_action_with_unique_names)
{
    ModelSet *set = load_good();
    ApplierPlan *plan = plan_for(set, "orders");
    const Model *m = &set->models[model_set_find(set, "orders")];
    size_t actions = 0;

    for (size_t h = 0; h < m->nhandlers; h++)
        actions += m->handlers[h].nactions;
    cr_assert_eq(applier_plan_count(plan), actions);
    for (size_t i = 0; i < actions; i++)
        for (size_t j = i + 1; j < actions; j++)
            cr_expect_str_neq(applier_plan_statement(plan, i)->name,
                              applier_plan_statement(plan, j)->name);
    applier_plan_free(plan);
    model_set_free(set);
}

/* ---------------------------------------------------------------------------------------
 * Binding events
 * --------------------------------------------------------------------------------------- */

#define PLACED                                                                                     \
    "{\"type\": \"order.placed\", \"event_id\": \"e1\", \"aggregate_id\": \"o-1\", "               \
    "\"version\": 3, \"occurred_at\": \"2026-01-15T10:30:00Z\", \"stream\": \"orders\", "          \
    "\"entry_id\": \"1-0\", \"metadata\": {}, \"payload\": {\"orderId\": \"o-1\", "                \
    "\"customerId\": \"c-9\", \"items\": [{\"qty\": 1}, {\"qty\": 2}], "                           \
    "\"total\": {\"amount\": \"99.99\", \"currency\": \"EUR\"}}}"

Test(applier, binds_upsert_parameters_in_statement_order)
{
    ModelSet *set = load_good();
    ApplierPlan *plan = plan_for(set, "orders");
    Bound b = {0};
    PjError err = {0};
    static const char *const want[] = {
        "o-1", "c-9", "c-9", "pending", "2", "99.99", "EUR", "2026-01-15T10:30:00Z", "3"};

    cr_assert_eq(bind_text(plan, PLACED, &b, &err), 0, "%s", err.message);
    cr_assert_eq(b.count, 1);
    cr_expect_eq(b.items[0].statement, statement_of(set, plan, "orders", "order.placed", 0));
    assert_params(&b.items[0], want, 9);
    bound_done(&b);
    applier_plan_free(plan);
    model_set_free(set);
}

Test(applier, binds_counter_upsert_amounts)
{
    ModelSet *set = load_good();
    ApplierPlan *plan = plan_for(set, "customer_stats");
    Bound b = {0};
    PjError err = {0};
    static const char *const want[] = {"c-9", "2026-01-15T10:30:00Z", "1", "99.99"};

    cr_assert_eq(bind_text(plan, PLACED, &b, &err), 0, "%s", err.message);
    cr_assert_eq(b.count, 1);
    assert_params(&b.items[0], want, 4);
    bound_done(&b);
    applier_plan_free(plan);
    model_set_free(set);
}

Test(applier, null_value_of_a_nullable_column_binds_as_sql_null)
{
    ModelSet *set = load_good();
    ApplierPlan *plan = plan_for(set, "orders");
    Bound b = {0};
    PjError err = {0};
    static const char *const want[] = {"\\N", "c-9"};

    int r = bind_text(
        plan, "{\"type\": \"customer.renamed\", \"payload\": {\"customerId\": \"c-9\"}}", &b, &err);
    cr_assert_eq(r, 0, "%s", err.message);
    cr_assert_eq(b.count, 1);
    assert_params(&b.items[0], want, 2);
    bound_done(&b);
    applier_plan_free(plan);
    model_set_free(set);
}

Test(applier, computed_add_amount)
{
    ModelSet *set = load_good();
    ApplierPlan *plan = plan_for(set, "orders");
    Bound b = {0};
    PjError err = {0};
    static const char *const want[] = {"59.97", "o-1"};

    int r = bind_text(plan,
                      "{\"type\": \"order.line_added\", \"payload\": {\"orderId\": \"o-1\", "
                      "\"qty\": 3, \"unitPrice\": \"19.99\"}}",
                      &b, &err);
    cr_assert_eq(r, 0, "%s", err.message);
    cr_assert_eq(b.count, 1);
    assert_params(&b.items[0], want, 2);
    bound_done(&b);
    applier_plan_free(plan);
    model_set_free(set);
}

typedef struct FailCase {
    const char *model;
    const char *event;
    const char *message; /* exact, or a prefix when prefix is set */
    bool prefix;
} FailCase;

static const FailCase fail_cases[] = {
    {"orders", "{\"type\": \"order.confirmed\", \"payload\": {}}",
     "where column \"id\" of action 1 for \"order.confirmed\" is null ($.payload.orderId)", false},
    {"orders", "{\"type\": \"order.placed\", \"payload\": {\"customerId\": \"c-1\"}}",
     "key column \"id\" of action 1 for \"order.placed\" is null ($.payload.orderId)", false},
    {"orders", "{\"type\": \"order.placed\", \"payload\": {\"orderId\": \"o-1\"}}",
     "where column \"id\" of the lookup for \"customer_name\" in action 1 for \"order.placed\" "
     "is null ($.payload.customerId)",
     false},
    {"orders", "{\"type\": \"order.item_added\", \"payload\": {\"orderId\": \"o-1\"}}",
     "add column \"item_count\" of action 1 for \"order.item_added\" is null ($.payload.qty)",
     false},
    {"customer_stats", "{\"type\": \"order.placed\", \"payload\": {\"customerId\": \"c-1\"}}",
     "add column \"total_spent\" of action 1 for \"order.placed\" is null "
     "($.payload.total.amount)",
     false},
    {"orders",
     "{\"type\": \"order.line_added\", \"payload\": {\"orderId\": \"o-1\", \"qty\": \"abc\", "
     "\"unitPrice\": 2}}",
     "column \"total\": ", true},
    {"orders", "{\"payload\": {}}", "event has no type", false},
    {"orders", "{\"type\": 7}", "event has no type", false},
    {"accounts",
     "{\"type\": \"account.moved\", \"aggregate_id\": \"a-1\", \"payload\": "
     "{\"amount\": 5}}",
     "where column \"id\" of action 2 for \"account.moved\" is null ($.payload.closeId)", false},
};

ParameterizedTestParameters(applier, rejects_events)
{
    static size_t cases[ARRAY_SIZE(fail_cases)];
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        cases[i] = i;
    return cr_make_param_array(size_t, cases, ARRAY_SIZE(cases));
}

/* A failing event appends nothing, even after earlier actions bound, and leaves what
 * other events appended before it alone. */
ParameterizedTest(size_t *index, applier, rejects_events)
{
    const FailCase *c = &fail_cases[*index];
    ModelSet *set = strcmp(c->model, "accounts") == 0 ? load_accounts() : load_good();
    ApplierPlan *plan = plan_for(set, c->model);
    Bound b = {0};
    PjError err = {0};
    const char *before = strcmp(c->model, "accounts") == 0
                             ? "{\"type\": \"account.opened\", \"aggregate_id\": \"a-0\"}"
                             : PLACED;

    cr_assert_eq(bind_text(plan, before, &b, &err), 0, "%s", err.message);
    cr_assert_eq(b.count, 1);
    char *first = xstrdup(b.items[0].params[0]);
    int r = bind_text(plan, c->event, &b, &err);
    cr_expect_eq(r, -PJ_EPERMANENT);
    if (c->prefix)
        cr_expect(strncmp(err.message, c->message, strlen(c->message)) == 0 &&
                      strlen(err.message) > strlen(c->message),
                  "message \"%s\" does not start with \"%s\"", err.message, c->message);
    else
        cr_expect_str_eq(err.message, c->message);
    cr_expect_eq(b.count, 1, "a failed event appended %zu statements", b.count - 1);
    cr_expect_str_eq(b.items[0].params[0], first);
    free(first);
    bound_done(&b);
    applier_plan_free(plan);
    model_set_free(set);
}

Test(applier, when_false_skips_the_action)
{
    ModelSet *set = load_good();
    ApplierPlan *plan = plan_for(set, "orders");
    Bound b = {0};
    PjError err = {0};

    int r = bind_text(plan,
                      "{\"type\": \"order.refunded\", \"payload\": {\"orderId\": \"o-1\", "
                      "\"reason\": \"fraud\", \"amount\": 50}}",
                      &b, &err);
    cr_assert_eq(r, 0, "%s", err.message);
    cr_assert_eq(b.count, 1, "the guarded delete must be skipped");
    cr_expect_eq(b.items[0].statement, statement_of(set, plan, "orders", "order.refunded", 0));

    r = bind_text(plan,
                  "{\"type\": \"order.refunded\", \"payload\": {\"orderId\": \"o-2\", "
                  "\"reason\": \"fraud\", \"amount\": 150}}",
                  &b, &err);
    cr_assert_eq(r, 0, "%s", err.message);
    cr_assert_eq(b.count, 3);
    cr_expect_eq(b.items[1].statement, statement_of(set, plan, "orders", "order.refunded", 0));
    cr_expect_eq(b.items[2].statement, statement_of(set, plan, "orders", "order.refunded", 1));
    cr_expect_str_eq(b.items[2].params[0], "o-2");
    bound_done(&b);
    applier_plan_free(plan);
    model_set_free(set);
}

Test(applier, when_false_on_the_only_action_appends_nothing)
{
    ModelSet *set = load_accounts();
    ApplierPlan *plan = plan_for(set, "accounts");
    Bound b = {0};
    PjError err = {0};

    int r = bind_text(plan,
                      "{\"type\": \"account.closed\", \"aggregate_id\": \"a-1\", \"payload\": "
                      "{\"final\": false}}",
                      &b, &err);
    cr_expect_eq(r, 0, "%s", err.message);
    cr_expect_eq(b.count, 0);
    r = bind_text(plan,
                  "{\"type\": \"account.closed\", \"aggregate_id\": \"a-1\", \"payload\": "
                  "{\"final\": true}}",
                  &b, &err);
    cr_expect_eq(r, 0, "%s", err.message);
    cr_expect_eq(b.count, 1);
    bound_done(&b);
    applier_plan_free(plan);
    model_set_free(set);
}

Test(applier, unhandled_type_appends_nothing)
{
    ModelSet *set = load_good();
    ApplierPlan *plan = plan_for(set, "orders");
    Bound b = {0};
    PjError err = {0};

    cr_assert_eq(bind_text(plan, PLACED, &b, &err), 0, "%s", err.message);
    int r = bind_text(plan, "{\"type\": \"order.shipped\", \"payload\": {\"orderId\": \"o-1\"}}",
                      &b, &err);
    cr_expect_eq(r, APPLIER_UNHANDLED);
    cr_expect_eq(b.count, 1);
    bound_done(&b);
    applier_plan_free(plan);
    model_set_free(set);
}

Test(applier, version_guard_reuses_the_version_parameter)
{
    ModelSet *set = load_accounts();
    ApplierPlan *plan = plan_for(set, "accounts");
    Bound b = {0};
    PjError err = {0};
    static const char *const want[] = {"Ada", "12", "a-1"};

    int r = bind_text(plan,
                      "{\"type\": \"account.renamed\", \"aggregate_id\": \"a-1\", \"version\": 12, "
                      "\"payload\": {\"owner\": \"Ada\"}}",
                      &b, &err);
    cr_assert_eq(r, 0, "%s", err.message);
    cr_assert_eq(b.count, 1);
    assert_params(&b.items[0], want, 3);
    bound_done(&b);
    applier_plan_free(plan);
    model_set_free(set);
}

Test(applier, bound_reset_keeps_memory_and_empties)
{
    ModelSet *set = load_good();
    ApplierPlan *plan = plan_for(set, "orders");
    Bound b = {0};
    PjError err = {0};

    for (int i = 0; i < 20; i++)
        cr_assert_eq(bind_text(plan, PLACED, &b, &err), 0, "%s", err.message);
    cr_expect_eq(b.count, 20);
    size_t cap = b.cap;
    bound_reset(&b);
    cr_expect_eq(b.count, 0);
    cr_expect_eq(b.cap, cap);
    cr_expect_not_null(b.items);
    bound_done(&b);
    cr_expect_null(b.items);
    applier_plan_free(plan);
    model_set_free(set);
}

/* The probes: the orders upsert puts the lookup of customers.name into its NOT NULL
 * customer_name, so it has one, asking with the statement's own subquery; statements
 * without such a lookup have none. */
Test(applier, a_lookup_into_a_not_null_column_of_an_upsert_has_a_probe)
{
    ModelSet *set = load_good();
    ApplierPlan *plan = plan_for(set, "orders");
    size_t placed = statement_of(set, plan, "orders", "order.placed", 0);
    cr_assert_eq(applier_plan_nprobes(plan, placed), 1);
    const PlanProbe *p = applier_plan_probe(plan, placed, 0);
    cr_assert_str_eq(p->name, "q0_0_0");
    cr_assert_eq(p->nparams, 2);
    cr_assert_str_eq(p->sql, "SELECT v.n FROM unnest($1::bigint[], $2::text[]) AS v(n, p1) WHERE "
                             "(SELECT s.\"name\" FROM \"customers\" AS s WHERE s.\"id\" = "
                             "CAST(v.p1 AS text) LIMIT 1) IS NULL");
    /* where value: the statement's parameter that carries customerId for the lookup */
    const PlanStatement *st = applier_plan_statement(plan, placed);
    cr_assert(strstr(st->sql, "(SELECT s.\"name\" FROM \"customers\" AS s WHERE s.\"id\" = ") !=
              NULL);
    char ref[32];
    snprintf(ref, sizeof ref, "CAST($%zu AS text) LIMIT 1)", p->where_params[0] + 1);
    cr_assert(strstr(st->sql, ref) != NULL, "%s not in %s", ref, st->sql);
    cr_assert(strstr(p->refusal, "null value in column \"customer_name\" of relation "
                                 "\"order_read_model\" violates not-null constraint") != NULL,
              "%s", p->refusal);
    for (size_t i = 0; i < applier_plan_count(plan); i++)
        if (i != placed)
            cr_expect_eq(applier_plan_nprobes(plan, i), 0, "statement %s",
                         applier_plan_statement(plan, i)->name);
    applier_plan_free(plan);
    plan = plan_for(set, "customer_stats");
    for (size_t i = 0; i < applier_plan_count(plan); i++)
        cr_expect_eq(applier_plan_nprobes(plan, i), 0);
    applier_plan_free(plan);
    model_set_free(set);
}

/* ---------------------------------------------------------------------------------------
 * Values that do not fit: assignment, not explicit casts; the column a refusal names
 * --------------------------------------------------------------------------------------- */

static const char codes_yaml[] = "readmodel: codes\n"
                                 "table: codes\n"
                                 "streams: [codes]\n"
                                 "key: [code]\n"
                                 "columns:\n"
                                 "  code: varchar(4)\n"
                                 "  label: { type: \"varchar(4)\", nullable: true }\n"
                                 "  name: { type: \"varchar(8)\", nullable: true }\n"
                                 "  price: { type: \"numeric(5,2)\", nullable: true }\n"
                                 "  hits: { type: smallint, default: 0 }\n"
                                 "  score: { type: real, nullable: true }\n"
                                 "on:\n"
                                 "  code.set:\n"
                                 "    upsert:\n"
                                 "      code: $.payload.code\n"
                                 "      label: $.payload.label\n"
                                 "      name: $.payload.name\n"
                                 "      price: $.payload.price\n"
                                 "      add: { hits: $.payload.hits }\n"
                                 "  code.scored:\n"
                                 "    update:\n"
                                 "      where: { code: $.payload.code }\n"
                                 "      add: { score: $.payload.score }\n"
                                 "  code.relabelled:\n"
                                 "    update:\n"
                                 "      where: { code: $.payload.code }\n"
                                 "      set: { label: $.payload.label }\n";

static ModelSet *load_codes(void)
{
    ModelSet *set = testenv_load_model_text("codes.yaml", codes_yaml);
    cr_assert_not_null(set, "codes model does not load");
    return set;
}

/* An explicit cast to varchar(4) cuts "toolong1" to "tool"; an assignment refuses it. */
Test(applier, varchar_with_a_length_is_cast_without_it)
{
    ModelSet *set = load_codes();
    ApplierPlan *plan = plan_for(set, "codes");
    const PlanStatement *st =
        applier_plan_statement(plan, statement_of(set, plan, "codes", "code.relabelled", 0));
    cr_expect_str_eq(st->sql, "UPDATE \"codes\" AS t SET \"label\" = CAST($1 AS character "
                              "varying) WHERE t.\"code\" = CAST($2 AS character varying)");
    cr_expect(strstr(st->multi_sql, "(4)") == NULL, "%s", st->multi_sql);
    st = applier_plan_statement(plan, statement_of(set, plan, "codes", "code.set", 0));
    cr_expect(strstr(st->sql, "(4)") == NULL && strstr(st->sql, "(8)") == NULL, "%s", st->sql);
    /* numeric(p,s) rounds and refuses alike either way, and an amount is rounded first */
    cr_expect(strstr(st->sql, "CAST($4 AS numeric(5,2))") != NULL, "%s", st->sql);
    /* folding, every value is converted, with varchar's length as an assignment checks it */
    cr_expect(strstr(st->multi_sql, "pg_catalog.\"varchar\"(CAST(w.p2 AS character varying), "
                                    "8, false)") != NULL,
              "%s", st->multi_sql);
    cr_expect(strstr(st->check_sql, "count(pg_catalog.\"varchar\"(CAST(v.p1 AS character "
                                    "varying), 8, false))") != NULL,
              "%s", st->check_sql);
    cr_expect_eq(st->check_nparams, 3, "label, name and price are left out by a fold in C");
    applier_plan_free(plan);
    model_set_free(set);
}

/* A varchar(n) key names one row unless blanks past the length could be dropped. */
Test(applier, varchar_key_names_a_row_unless_it_ends_in_a_blank)
{
    ModelSet *set = load_codes();
    ApplierPlan *plan = plan_for(set, "codes");
    static const char *const keys[] = {"ab", "abcd", "toolong1", "ab ", "abcd "};
    static const bool names_row[] = {true, true, true, false, false};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        Bound b = {0};
        PjError err = {0};
        StrBuf key = {0};
        char *json = xasprintf("{\"type\": \"code.relabelled\", \"payload\": {\"code\": \"%s\", "
                               "\"label\": \"x\"}}",
                               keys[i]);
        cr_assert_eq(bind_text(plan, json, &b, &err), 0, "%s", err.message);
        cr_expect_eq(applier_row_key(plan, &b.items[0], &key), names_row[i], "\"%s\"", keys[i]);
        strbuf_done(&key);
        bound_done(&b);
        free(json);
    }
    applier_plan_free(plan);
    model_set_free(set);
}

typedef struct RefusalCase {
    const char *payload; /* of a code.set event, or with "scored" of a code.scored one */
    ApplierRefusal r;
    const char *named; /* NULL: none */
} RefusalCase;

#define CODE_SET(label, name) "\"label\": \"" label "\", \"name\": \"" name "\""

static const RefusalCase refusal_cases[] = {
    /* bound: the parameter PostgreSQL reports ($5 is hits) */
    {CODE_SET("x", "y"),
     {"22P02", "invalid input syntax for type smallint: \"z\"", NULL,
      "unnamed portal parameter $5 = '...'"},
     "column \"hits\""},
    /* executed: by the type named, then by the value that is too long */
    {CODE_SET("toolong1", "y"),
     {"22001", "value too long for type character varying(4)", NULL, NULL},
     "column \"label\""},
    {CODE_SET("x", "y"),
     {"22001", "value too long for type character varying(4)", NULL, NULL},
     "column \"code\" or \"label\""},
    {CODE_SET("x", "\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4z"),
     {"22001", "value too long for type character varying(8)", NULL, NULL},
     "column \"name\""},
    {CODE_SET("x", "y"),
     {"22003", "numeric field overflow",
      "A field with precision 5, scale 2 must round to an absolute value less than 10^3.", NULL},
     "column \"price\""},
    {CODE_SET("x", "y"), {"22003", "smallint out of range", NULL, NULL}, "column \"hits\""},
    {"\"scored\": 1", {"22003", "value out of range: overflow", NULL, NULL}, "column \"score\""},
    {"\"scored\": 1", {"22003", "smallint out of range", NULL, NULL}, NULL},
    /* not about a value's type, or no column of that type */
    {CODE_SET("x", "y"),
     {"23505", "duplicate key value violates unique constraint \"codes_pkey\"", NULL, NULL},
     NULL},
    {CODE_SET("x", "y"), {"22008", "date out of range: \"x\"", NULL, NULL}, NULL},
    {CODE_SET("x", "y"), {"22003", "integer out of range", NULL, NULL}, NULL},
};

ParameterizedTestParameters(applier, names_the_column_of_a_refused_value)
{
    static size_t cases[ARRAY_SIZE(refusal_cases)];
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        cases[i] = i;
    return cr_make_param_array(size_t, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(size_t *index, applier, names_the_column_of_a_refused_value)
{
    const RefusalCase *c = &refusal_cases[*index];
    ModelSet *set = load_codes();
    ApplierPlan *plan = plan_for(set, "codes");
    Bound b = {0};
    PjError err = {0};
    StrBuf got = {0};
    char *json = xasprintf("{\"type\": \"code.%s\", \"payload\": {%s, \"price\": \"1\", "
                           "\"hits\": \"z\", \"score\": \"1\", \"code\": \"ab\"}}",
                           strstr(c->payload, "scored") != NULL ? "scored" : "set", c->payload);
    cr_assert_eq(bind_text(plan, json, &b, &err), 0, "%s", err.message);
    bool named = applier_refused_column(plan, &b.items[0], &c->r, &got);
    if (c->named != NULL)
        cr_expect(named && strcmp(got.buf, c->named) == 0, "%s: got %s, want %s", c->r.primary,
                  named ? got.buf : "nothing", c->named);
    else
        cr_expect_not(named, "%s: named %s", c->r.primary, got.buf);
    strbuf_done(&got);
    bound_done(&b);
    free(json);
    applier_plan_free(plan);
    model_set_free(set);
}
