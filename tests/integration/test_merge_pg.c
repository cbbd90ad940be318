/* test_merge_pg.c - set-based application (merge.h) against a real PostgreSQL: random
 * event sequences over a few keys are applied once statement by statement (one database)
 * and once as merge_build's groups through the set-based statements (another database),
 * in random batch sizes; both tables must be identical after every batch. The model has
 * every kind of statement: folding upserts with add:, sets and adds by key, deletes, a
 * fan-out update (a barrier), a version-guarded upsert (no folding), a float add: with a
 * default (no set-based form), and keys that need quoting inside an array literal.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply/applier.h"
#include "apply/merge.h"
#include "ledger.h"
#include "model/model.h"
#include "sink/pg.h"
#include "sink/tables.h"
#include "testenv.h"

static const char ledger_yaml[] =
    LEDGER_HEAD_YAML "  l.open:\n"
                     "    upsert:\n"
                     "      id: $.payload.id\n"
                     "      n: $.payload.n\n"
                     "      owner: $.payload.owner\n"
                     "      add: { count: 1, amount: $.payload.amount }\n"
                     "  l.tag:\n"
                     "    update:\n"
                     "      where: { id: $.payload.id, n: $.payload.n }\n"
                     "      set: { tag: $.payload.tag }\n"
                     "  l.add:\n"
                     "    update:\n"
                     "      where: { n: $.payload.n, id: $.payload.id }\n"
                     "      add: { count: $.payload.k, amount: $.payload.amount }\n"
                     "  l.close:\n"
                     "    delete:\n"
                     "      where: { id: $.payload.id, n: $.payload.n }\n"
                     "  l.owner:\n"
                     "    update:\n"
                     "      where: { owner: $.payload.owner }\n"
                     "      set: { tag: $.payload.tag }\n"
                     "  l.versioned:\n"
                     "    upsert:\n"
                     "      id: $.payload.id\n"
                     "      n: $.payload.n\n"
                     "      owner: $.payload.owner\n"
                     "      version: $.version\n"
                     "  l.score:\n"
                     "    - upsert:\n"
                     "        id: $.payload.id\n"
                     "        n: $.payload.n\n"
                     "        add: { score: $.payload.x }\n"
                     "    - update:\n"
                     "        when: \"$.payload.x > 1\"\n"
                     "        where: { id: $.payload.id, n: $.payload.n }\n"
                     "        add: { score: $.payload.x }\n";

#define MERGE_ROWS                                                                                 \
    "SELECT coalesce(string_agg(concat_ws('|', id, n, owner, tag, count, amount, score, "          \
    "version), E'\\n' ORDER BY id, n), '') FROM ledger"

/* Keys that an array literal must quote or escape; "NULL" must stay a string. */
static const char *const ids[] = {"a", "b", "k\"q", "back\\slash", "x,{y}", "NULL", " sp", "é"};

typedef struct Side {
    char *conninfo;
    PGconn *conn;
} Side;

typedef struct MergeCtx {
    char *dir;
    char *file;
    ModelSet *set;
    ApplierPlan *plan;
    Side one, set_based;
    unsigned rng;
} MergeCtx;

static MergeCtx mc;

static void prepare_side(Side *s, bool multi)
{
    s->conninfo = testenv_create_db("merge");
    s->conn = testenv_pg(s->conninfo);
    Diagnostics diag = {0};
    int r = tables_ensure(s->conn, mc.set, &diag);
    if (r < 0)
        diag_print(&diag, stderr);
    cr_assert_eq(r, 0, "tables_ensure failed");
    diag_done(&diag);
    for (size_t i = 0; i < applier_plan_count(mc.plan); i++) {
        const PlanStatement *st = applier_plan_statement(mc.plan, i);
        const char *name = multi && st->multi_name != NULL ? st->multi_name : st->name;
        const char *sql = multi && st->multi_sql != NULL ? st->multi_sql : st->sql;
        PGresult *res = PQprepare(s->conn, name, sql, st->nparams, NULL);
        cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "cannot prepare %s: %s\n%s", name,
                     PQerrorMessage(s->conn), sql);
        PQclear(res);
        if (multi && st->multi_name != NULL) { /* the single form too, for groups of one */
            res = PQprepare(s->conn, st->name, st->sql, st->nparams, NULL);
            cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s", PQerrorMessage(s->conn));
            PQclear(res);
        }
        if (multi && st->plain_name != NULL) { /* rows of distinct keys, or folded in C */
            res = PQprepare(s->conn, st->plain_name, st->plain_sql, st->nparams, NULL);
            cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s\n%s", PQerrorMessage(s->conn),
                         st->plain_sql);
            PQclear(res);
        }
        if (multi && st->check_name != NULL) { /* what a fold in C leaves out */
            res = PQprepare(s->conn, st->check_name, st->check_sql, st->check_nparams, NULL);
            cr_assert_eq(PQresultStatus(res), PGRES_COMMAND_OK, "%s\n%s", PQerrorMessage(s->conn),
                         st->check_sql);
            PQclear(res);
        }
    }
}

static void setup(void)
{
    if (!testenv_have_servers())
        cr_skip_test("PROJECTOR_TEST_PG and PROJECTOR_TEST_REDIS_URL are not set");
    mc = (MergeCtx){0};
    mc.dir = testenv_tmpdir();
    mc.file = testenv_write_file(mc.dir, "ledger.yaml", ledger_yaml);
    const char *files[] = {mc.file};
    Diagnostics diag = {0};
    int r = model_load_files(files, 1, &mc.set, &diag);
    if (r < 0)
        diag_print(&diag, stderr);
    cr_assert_eq(r, 0, "the ledger model does not load");
    diag_done(&diag);
    PjError err = {0};
    cr_assert_eq(applier_plan_new(mc.set, 0, &mc.plan, &err), 0, "%s", err.message);
    prepare_side(&mc.one, false);
    prepare_side(&mc.set_based, true);
}

static void teardown(void)
{
    Side *sides[] = {&mc.one, &mc.set_based};
    for (size_t i = 0; i < 2; i++) {
        if (sides[i]->conn != NULL)
            PQfinish(sides[i]->conn);
        free(sides[i]->conninfo);
    }
    applier_plan_free(mc.plan);
    model_set_free(mc.set);
    free(mc.file);
    free(mc.dir);
}

/* ---- the plan's forms ---- */

static const PlanStatement *statement_for(const char *type, size_t action)
{
    const Model *m = &mc.set->models[0];
    const Handler *h = model_find_handler(m, type);
    cr_assert_not_null(h, "no handler for %s", type);
    size_t index = 0;
    for (const Handler *p = m->handlers; p < h; p++)
        index += p->nactions;
    return applier_plan_statement(mc.plan, index + action);
}

Test(merge_pg, each_statement_gets_the_set_based_form_it_can_have, .init = setup, .fini = teardown)
{
    const PlanStatement *open = statement_for("l.open", 0);
    cr_assert_not_null(open->multi_sql);
    cr_expect(open->multi_folds, "an upsert with integer and numeric add: folds");
    cr_expect(strstr(open->multi_sql, "GROUP BY u.p1, u.p2") != NULL, "%s", open->multi_sql);
    /* each amount cast to the column's type before it is summed, as one by one */
    cr_expect(strstr(open->multi_sql, "CAST(w.p5 AS numeric(12,2)) AS p5") != NULL &&
                  strstr(open->multi_sql, "sum(u.p5) AS p5") != NULL,
              "%s", open->multi_sql);
    /* and each running sum checked from the row the key finds, if any */
    cr_expect(strstr(open->multi_sql, "LEFT JOIN \"ledger\" AS x ON x.\"id\" = ") != NULL &&
                  strstr(open->multi_sql, "COALESCE(x.\"amount\", CAST('0' AS numeric(12,2))) "
                                          "+ v.h5 AS numeric(12,2))") != NULL,
              "%s", open->multi_sql);
    cr_expect(strstr(open->multi_sql, "+ (EXCLUDED.\"amount\" - CAST(") != NULL, "%s",
              open->multi_sql);
    cr_expect(strstr(statement_for("l.close", 0)->multi_sql, " USING (SELECT") != NULL);
    cr_expect(strstr(statement_for("l.tag", 0)->multi_sql, "array_agg(u.p1 ORDER BY u.o DESC)") !=
                  NULL,
              "%s", statement_for("l.tag", 0)->multi_sql);
    cr_expect_null(statement_for("l.owner", 0)->multi_sql, "a fan-out update has no row key");
    const PlanStatement *versioned = statement_for("l.versioned", 0);
    cr_assert_not_null(versioned->multi_sql);
    cr_expect_not(versioned->multi_folds, "a version-guarded upsert must not fold");
    cr_expect(strstr(versioned->multi_sql, " AS v(p1, p2, p3, p4)") != NULL, "%s",
              versioned->multi_sql);
    cr_expect_null(statement_for("l.score", 0)->multi_sql,
                   "(default + x) - default may round for double precision");
    cr_expect_not_null(statement_for("l.score", 1)->multi_sql,
                       "an update's float add: needs no subtraction");
    cr_expect_not(statement_for("l.score", 1)->multi_folds, "float sums must not fold");
}

/* ---- keys ---- */

static bool row_key_of(const char *type, const char *id, const char *n, StrBuf *key)
{
    char *event = xasprintf("{\"type\": \"%s\", \"version\": 1, \"payload\": {\"id\": \"%s\", "
                            "\"n\": \"%s\", \"owner\": \"o\", \"tag\": \"t\", \"amount\": \"1\", "
                            "\"k\": 1}}",
                            type, id, n);
    json_error_t jerr;
    json_t *ev = json_loads(event, 0, &jerr);
    cr_assert_not_null(ev, "%s: %s", event, jerr.text);
    Bound b = {0};
    PjError err = {0};
    cr_assert_eq(applier_bind(mc.plan, ev, &b, &err), 0, "%s", err.message);
    cr_assert_eq(b.count, 1);
    bool ok = applier_row_key(mc.plan, &b.items[0], key);
    bound_done(&b);
    json_decref(ev);
    free(event);
    return ok;
}

Test(merge_pg, only_canonical_keys_name_a_row, .init = setup, .fini = teardown)
{
    StrBuf a = {0}, b = {0};
    cr_assert(row_key_of("l.open", "x", "12", &a));
    cr_assert(row_key_of("l.tag", "x", "12", &b), "the where of l.tag is the key");
    cr_expect_str_eq(a.buf, b.buf, "the same row under two statements");
    cr_expect(row_key_of("l.add", "x", "-3", &b), "where in another column order");
    cr_expect(row_key_of("l.close", "x", "0", &b));
    /* Spellings that cast to a value another spelling also casts to. */
    cr_expect_not(row_key_of("l.open", "x", "012", &b));
    cr_expect_not(row_key_of("l.open", "x", "+12", &b));
    cr_expect_not(row_key_of("l.open", "x", "-0", &b));
    cr_expect_not(row_key_of("l.open", "x", " 12", &b));
    cr_expect_not(row_key_of("l.open", "x", "1e3", &b));
    cr_expect_not(row_key_of("l.owner", "x", "12", &b), "fan-out");
    /* length-prefixed: ("ab", 1) and ("a", "b1")-like collisions cannot happen */
    cr_assert(row_key_of("l.open", "1:a", "1", &a));
    cr_assert(row_key_of("l.open", "1", "1", &b));
    cr_expect_str_neq(a.buf, b.buf);
    strbuf_done(&a);
    strbuf_done(&b);
}

/* ---- equivalence ---- */

static unsigned next_rand(unsigned bound)
{
    return (unsigned)rand_r(&mc.rng) % bound;
}

/* One random event, as JSON text. Amounts have up to three decimals, so the numeric(12,2)
 * casts round: a fold that summed before casting would differ. One in eight is written
 * with an exponent, which only PostgreSQL reads: its group must fold in SQL. */
static char *random_event(int seq)
{
    static const char *const types[] = {"l.open", "l.open",  "l.tag",       "l.add",
                                        "l.add",  "l.close", "l.versioned", "l.score"};
    /* the fan-out update is a barrier: rare, as renames are */
    const char *type = next_rand(40) == 0 ? "l.owner" : types[next_rand(ARRAY_SIZE(types))];
    const char *id = ids[next_rand(ARRAY_SIZE(ids))];
    json_t *id_value = json_string(id);
    char *id_json = json_dumps(id_value, JSON_ENCODE_ANY);
    json_decref(id_value);
    char *event = xasprintf(
        "{\"type\": \"%s\", \"version\": %u, \"payload\": {\"id\": %s, \"n\": %u, "
        "\"owner\": \"owner-%u\", \"tag\": \"t%d\", \"amount\": \"%s%u%s%03u\", \"k\": %u, "
        "\"x\": %u.25}}",
        type, next_rand(4), id_json, next_rand(3), next_rand(3), seq, next_rand(6) == 0 ? "-" : "",
        next_rand(50), next_rand(8) == 0 ? "e-" : ".", next_rand(1000), next_rand(5), next_rand(3));
    free(id_json);
    return event;
}

static void exec_ok(PGconn *conn, const char *name, int nparams, const char *const *params,
                    const char *what)
{
    PGresult *res = PQexecPrepared(conn, name, nparams, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res); /* a check of a fold in C is a SELECT */
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s failed: %s", what, name,
              PQerrorMessage(conn));
    PQclear(res);
}

/* How the groups of two or more ran: plain (distinct rows), folded in C, folded in SQL. */
typedef struct Forms {
    size_t plain, c_folded, sql_folded, other;
} Forms;

static void count_form(Forms *f, const MergeGroup *g, const PlanStatement *st, const char *name)
{
    if (st->plain_name == NULL)
        f->other++;
    else if (strcmp(name, st->multi_name) == 0)
        f->sql_folded++;
    else if (g->repeats)
        f->c_folded++;
    else
        f->plain++;
}

/* Applies bound statements [0, n) one by one on side one and as groups on the other. */
static void apply_batch(const Bound *b, size_t *groups, Forms *forms)
{
    PQclear(testenv_sql(mc.one.conn, "BEGIN"));
    for (size_t i = 0; i < b->count; i++) {
        const BoundStatement *bs = &b->items[i];
        const PlanStatement *st = applier_plan_statement(mc.plan, bs->statement);
        exec_ok(mc.one.conn, st->name, bs->nparams, (const char *const *)bs->params, "one by one");
    }
    PQclear(testenv_sql(mc.one.conn, "COMMIT"));

    const BoundStatement **stmts = xcalloc(b->count + 1, sizeof *stmts);
    for (size_t i = 0; i < b->count; i++)
        stmts[i] = &b->items[i];
    MergePlan mp = {0};
    merge_build(&mp, mc.plan, stmts, NULL, b->count);
    PQclear(testenv_sql(mc.set_based.conn, "BEGIN"));
    size_t members = 0;
    for (size_t g = 0; g < mp.ngroups; g++) {
        const MergeGroup *grp = &mp.groups[g];
        const PlanStatement *st = applier_plan_statement(mc.plan, grp->statement);
        members += grp->count;
        if (grp->count == 1) {
            const BoundStatement *bs = stmts[mp.members[grp->first]];
            exec_ok(mc.set_based.conn, st->name, bs->nparams, (const char *const *)bs->params,
                    "group of one");
            continue;
        }
        cr_assert_not_null(st->multi_name,
                           "a group of %zu for a statement without a "
                           "set-based form",
                           grp->count);
        const char *name;
        char **check;
        char **params = merge_statement(&mp, grp, stmts, st, &name, &check);
        if (check != NULL)
            exec_ok(mc.set_based.conn, st->check_name, st->check_nparams,
                    (const char *const *)check, "check of a fold in C");
        exec_ok(mc.set_based.conn, name, st->nparams, (const char *const *)params, "set-based");
        merge_params_free(check, st->check_nparams);
        merge_params_free(params, st->nparams);
        count_form(forms, grp, st, name);
    }
    PQclear(testenv_sql(mc.set_based.conn, "COMMIT"));
    cr_assert_eq(members, b->count, "every statement is in exactly one group");
    *groups += mp.ngroups;
    merge_plan_done(&mp);
    free(stmts);
}

Test(merge_pg, set_based_groups_leave_the_same_rows_as_one_by_one, .init = setup, .fini = teardown,
     .timeout = 300)
{
    const char *seed = getenv("PROJECTOR_MERGE_SEED"); /* replays or explores */
    mc.rng = seed != NULL ? (unsigned)strtoul(seed, NULL, 10) : 20261203u;
    size_t statements = 0, groups = 0;
    Forms forms = {0};
    int seq = 0;
    for (int batch = 0; batch < 60; batch++) {
        Bound b = {0};
        unsigned size = 1 + next_rand(batch % 3 == 0 ? 8 : 120);
        for (unsigned i = 0; i < size; i++) {
            char *text = random_event(seq++);
            json_error_t jerr;
            json_t *ev = json_loads(text, 0, &jerr);
            cr_assert_not_null(ev, "%s: %s", text, jerr.text);
            PjError err = {0};
            cr_assert_geq(applier_bind(mc.plan, ev, &b, &err), 0, "%s: %s", text, err.message);
            json_decref(ev);
            free(text);
        }
        statements += b.count;
        apply_batch(&b, &groups, &forms);
        bound_done(&b);
        char *want = testenv_query_text(mc.one.conn, MERGE_ROWS);
        char *got = testenv_query_text(mc.set_based.conn, MERGE_ROWS);
        cr_assert_str_eq(got, want, "after batch %d (%u events), set-based:\n%s\none by one:\n%s",
                         batch, size, got, want);
        free(want);
        free(got);
    }
    size_t merged = forms.plain + forms.c_folded + forms.sql_folded + forms.other;
    cr_log_info("seed %u: %zu statements in %zu groups, %zu of them set-based: %zu on distinct "
                "rows, %zu folded in C, %zu folded in SQL, %zu of statements that do not fold",
                seed != NULL ? (unsigned)strtoul(seed, NULL, 10) : 20261203u, statements, groups,
                merged, forms.plain, forms.c_folded, forms.sql_folded, forms.other);
    cr_expect_lt(groups * 2, statements, "merging should at least halve the statements");
    cr_expect_gt(merged, 20);
    cr_expect_gt(forms.plain, 5);
    cr_expect_gt(forms.c_folded, 5);
    cr_expect_gt(forms.sql_folded, 5);
}

/* ---- plans ---- */

/* The plan PostgreSQL picks, on session conn, for the set-based l.tag over 1,000 rows of a
 * 50,000-row table. */
static char *plan_of_large_update(PGconn *conn)
{
    Bound b = {0};
    for (int i = 1; i <= 1000; i++) {
        char *text = xasprintf("{\"type\": \"l.tag\", \"payload\": {\"id\": \"r%d\", \"n\": %d, "
                               "\"tag\": \"t\"}}",
                               i * 37, i * 37);
        json_t *ev = json_loads(text, 0, NULL);
        PjError err = {0};
        cr_assert_eq(applier_bind(mc.plan, ev, &b, &err), 0, "%s", err.message);
        json_decref(ev);
        free(text);
    }
    const BoundStatement **stmts = xcalloc(b.count + 1, sizeof *stmts);
    for (size_t i = 0; i < b.count; i++)
        stmts[i] = &b.items[i];
    MergePlan mp = {0};
    merge_build(&mp, mc.plan, stmts, NULL, b.count);
    cr_assert_eq(mp.ngroups, 1);
    const PlanStatement *st = applier_plan_statement(mc.plan, mp.groups[0].statement);
    const char *name;
    char **check;
    char **params = merge_statement(&mp, &mp.groups[0], stmts, st, &name, &check);
    cr_assert_str_eq(name, st->plain_name, "rows of distinct keys run the plain form");
    cr_assert_null(check, "nothing folded, nothing left out");
    char *sql = xasprintf("EXPLAIN %s", st->plain_sql);
    PGresult *res =
        PQexecParams(conn, sql, st->nparams, NULL, (const char *const *)params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(conn));
    StrBuf plan = {0};
    for (int r = 0; r < PQntuples(res); r++)
        strbuf_appendf(&plan, "%s\n", PQgetvalue(res, r, 0));
    PQclear(res);
    free(sql);
    merge_params_free(params, st->nparams);
    merge_plan_done(&mp);
    free(stmts);
    bound_done(&b);
    return strbuf_take(&plan);
}

/* Trap 2 of set-based statements: joined to a large batch, a large table is hashed whole
 * instead of looked up row by row; the daemon's sessions keep to lookups by key. */
Test(merge_pg, a_large_set_based_update_looks_each_row_up_by_its_key, .init = setup,
     .fini = teardown)
{
    PQclear(testenv_sql(mc.set_based.conn, "INSERT INTO ledger (id, n) SELECT 'r' || g, g FROM "
                                           "generate_series(1, 50000) AS g"));
    PQclear(testenv_sql(mc.set_based.conn, "ANALYZE ledger"));
    char *plain = plan_of_large_update(mc.set_based.conn);
    cr_expect(strstr(plain, "Hash Join") != NULL,
              "a plain session would hash the table "
              "(if not, this test shows nothing):\n%s",
              plain);
    Pg *pg;
    PjError err = {0};
    cr_assert_eq(pg_connect(mc.set_based.conninfo, &pg, &err), 0, "%s", err.message);
    char *ours = plan_of_large_update(pg_conn(pg));
    cr_expect(strstr(ours, "Nested Loop") != NULL && strstr(ours, "Index Scan") != NULL &&
                  strstr(ours, "Seq Scan") == NULL,
              "the daemon's session:\n%s", ours);
    pg_free(pg);
    free(plain);
    free(ours);
}
