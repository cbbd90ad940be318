/* test_assign_pg.c - a value that does not fit its column is refused, never cut, on every
 * path of the daemon. For every column type the model language has, a table of values (one
 * that fits, ones at the boundary, ones that do not fit, are out of range or that an
 * explicit cast would quietly change) goes through a plain `INSERT INTO ref (v) VALUES
 * ($1)` with the text value: what it stores, or that it refuses, is the reference. Then
 * the daemon applies the same values as events: alone, last and not last of their key (so
 * a fold in C and a fold in SQL keep or leave out each), one by one (`set_based: false`),
 * set-based and with parallel apply. Each path must store exactly what the reference
 * stores, dead-letter exactly the events the reference refuses, with PostgreSQL's message,
 * its SQLSTATE and the column's name. `add:` counters of every numeric type run sequences
 * whose running sums leave the type's range (on a new row and on an existing one), against
 * plain `UPDATE ref SET a = a + CAST($1 AS type)` one amount at a time.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "testenv.h"

#define ASSIGN_STREAM "assign"
#define ASSIGN_BATCH 250
#define ASSIGN_MAX_SENT 2048

/* ---- the tables ---- */

typedef struct TypeCol {
    const char *column; /* of the read model; events "set.<column>" (or "add."/"bump.") */
    const char *type;   /* as the model and the reference table declare it */
    bool not_null;
} TypeCol;

static const TypeCol type_cols[] = {
    {"c_text", "text", false},
    {"c_varchar", "varchar", false},
    {"c_varchar4", "varchar(4)", false},
    {"c_nn", "varchar(4)", true},
    {"c_smallint", "smallint", false},
    {"c_integer", "integer", false},
    {"c_bigint", "bigint", false},
    {"c_numeric", "numeric", false},
    {"c_numeric52", "numeric(5,2)", false},
    {"c_real", "real", false},
    {"c_double", "double precision", false},
    {"c_boolean", "boolean", false},
    {"c_timestamptz", "timestamptz", false},
    {"c_timestamp", "timestamp", false},
    {"c_date", "date", false},
    {"c_uuid", "uuid", false},
    {"c_jsonb", "jsonb", false},
};

/* One value for a column; NULL text is a null (the field absent). The first value of each
 * column fits: it is the other event of the value's key. refused documents what the
 * reference does (and is checked against it). */
typedef struct Case {
    const char *column;
    const char *text;
    bool refused;
} Case;

static const Case cases[] = {
    {"c_text", "hello", false},
    {"c_text", "", false},
    {"c_text", "\xc3\xbcn\xc3\xaf \xf0\x9f\x98\x80 'q' \"d\" \\", false},
    {"c_varchar", "no length, so any length at all", false},
    {"c_varchar4", "ab", false},
    {"c_varchar4", "abcd", false},
    {"c_varchar4", "\xc3\xa4\xc3\xb6\xc3\xbc\xc3\x9f", false}, /* 4 characters, 8 bytes */
    {"c_varchar4", "abcd   ", false},                          /* blanks past 4: dropped */
    {"c_varchar4", "toolong1", true},
    {"c_varchar4", "abcd\xc3\xa9", true},
    {"c_varchar4", "ab  x", true},
    {"c_nn", "ok", false},
    {"c_nn", NULL, true},
    {"c_nn", "toolong1", true},
    {"c_smallint", "12", false},
    {"c_smallint", "32767", false},
    {"c_smallint", "-32768", false},
    {"c_smallint", "32768", true},
    {"c_smallint", "-32769", true},
    {"c_smallint", "1.5", true},
    {"c_smallint", "99999999999", true},
    {"c_integer", "7", false},
    {"c_integer", "2147483647", false},
    {"c_integer", "-2147483648", false},
    {"c_integer", "2147483648", true},
    {"c_integer", "1e3", true},
    {"c_bigint", "7", false},
    {"c_bigint", "9223372036854775807", false},
    {"c_bigint", "-9223372036854775808", false},
    {"c_bigint", "9223372036854775808", true},
    {"c_numeric", "1.5", false},
    {"c_numeric", "123456789012345678901234567890.123456789", false},
    {"c_numeric", "1e3", false},
    {"c_numeric", "abc", true},
    {"c_numeric52", "1.25", false},
    {"c_numeric52", "999.99", false},
    {"c_numeric52", "-999.99", false},
    {"c_numeric52", "999.994", false}, /* rounds to 999.99 */
    {"c_numeric52", "1.005", false},   /* rounds to 1.01 */
    {"c_numeric52", "999.995", true},  /* rounds to 1000.00 */
    {"c_numeric52", "1000", true},
    {"c_real", "1.5", false},
    {"c_real", "3.4e38", false},
    {"c_real", "3.5e38", true},
    {"c_real", "1e-46", true},
    {"c_double", "2.5", false},
    {"c_double", "1.7976931348623157e308", false},
    {"c_double", "1e309", true},
    {"c_boolean", "true", false},
    {"c_boolean", "no", false},
    {"c_boolean", "maybe", true},
    {"c_timestamptz", "2026-01-15T10:00:00Z", false},
    {"c_timestamptz", "2026-01-15T10:00:00.1234567+02:00", false}, /* rounds to microseconds */
    {"c_timestamptz", "294276-12-31T00:00:00Z", false},
    {"c_timestamptz", "294277-01-01T00:00:00Z", true},
    {"c_timestamptz", "2026-02-30T00:00:00Z", true},
    {"c_timestamp", "2026-01-15 10:00:00", false},
    {"c_timestamp", "2026-01-15T10:00:00+05:00", false}, /* the zone is ignored */
    {"c_timestamp", "2026-13-01 00:00:00", true},
    {"c_date", "2026-01-15", false},
    {"c_date", "2024-02-29", false},
    {"c_date", "5874897-12-31", false},
    {"c_date", "5874898-01-01", true},
    {"c_date", "2026-02-29", true},
    {"c_uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", false},
    {"c_uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", false},
    {"c_uuid", "{a0eebc999c0b4ef8bb6d6bb9bd380a11}", false},
    {"c_uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", true},
    {"c_jsonb", "{\"a\": 1}", false},
    {"c_jsonb", "[1, 2.50]", false},
    {"c_jsonb", "not json", true},
    {"c_jsonb", "\"\\u0000\"", true},
};

/* add: counters, one column per numeric type; a_real and a_double have no default, so
 * their upsert keeps a set-based form (floating point sums never fold). */
static const TypeCol add_cols[] = {
    {"a_smallint", "smallint", true},
    {"a_integer", "integer", true},
    {"a_bigint", "bigint", true},
    {"a_numeric52", "numeric(5,2)", true},
    {"a_numeric", "numeric", true},
    {"a_real", "real", false},
    {"a_double", "double precision", false},
};

#define ADD_MAX 4

/* Amounts for one key of a counter: first (by the upsert "add.<column>"; the first fits,
 * so the row exists), applied before then (by "add." or the update "bump.<column>"). */
typedef struct AddCase {
    const char *column;
    const char *then_by; /* "add" or "bump" */
    const char *first[ADD_MAX];
    const char *then[ADD_MAX];
} AddCase;

static const AddCase add_cases[] = {
    /* both signs: the second leaves the range and the third comes back */
    {"a_smallint", "add", {"30000", "30000", "-30000"}, {NULL}},
    {"a_smallint", "add", {"32000"}, {"1000", "-1000"}},
    {"a_smallint", "bump", {"32000"}, {"1000", "-1000"}},
    /* one sign: only the sum of all leaves the range */
    {"a_smallint", "bump", {"30000"}, {"2767", "1"}},
    {"a_smallint", "add", {"-32768"}, {"-1", "0"}},
    {"a_smallint", "add", {"1"}, {"32768"}},
    {"a_integer", "add", {"2147483647"}, {"1", "-5"}},
    {"a_integer", "bump", {"5"}, {"1.5", "2"}},
    {"a_bigint", "add", {"9223372036854775807"}, {"-1", "1", "1"}},
    {"a_bigint", "bump", {"0"}, {"9223372036854775808", "-9223372036854775808", "-1"}},
    {"a_numeric52", "add", {"999.99"}, {"0.004", "0.005"}},
    {"a_numeric52", "bump", {"500"}, {"499.99", "0.01", "-0.01"}},
    {"a_numeric52", "add", {"1"}, {"999.995", "-1"}},
    {"a_numeric", "add", {"1e3"}, {"0.5", "-2"}},
    {"a_real", "add", {"3e38"}, {"3e38", "-3e38"}},
    {"a_double", "add", {"1e308"}, {"1e308", "-1e308"}},
};

/* ---- the read model ---- */

static char *model_yaml(void)
{
    StrBuf sb = {0};
    strbuf_append(&sb, "readmodel: assign\ntable: assign\nstreams: [" ASSIGN_STREAM "]\n"
                       "key: [id]\ncolumns:\n  id: text\n  n: { type: integer, default: 0 }\n");
    for (size_t i = 0; i < ARRAY_SIZE(type_cols); i++) {
        const TypeCol *t = &type_cols[i];
        strbuf_appendf(&sb, "  %s:\n    type: %s\n", t->column, t->type);
        strbuf_append(&sb, t->not_null ? "    default: d\n" : "    nullable: true\n");
    }
    for (size_t i = 0; i < ARRAY_SIZE(add_cols); i++) {
        const TypeCol *t = &add_cols[i];
        strbuf_appendf(&sb, "  %s:\n    type: %s\n", t->column, t->type);
        strbuf_append(&sb, t->not_null ? "    default: 0\n" : "    nullable: true\n");
    }
    strbuf_append(&sb, "on:\n");
    for (size_t i = 0; i < ARRAY_SIZE(type_cols); i++)
        strbuf_appendf(&sb,
                       "  set.%s:\n    upsert:\n      id: $.payload.id\n      %s: $.payload.v\n"
                       "      add: { n: $.payload.inc }\n",
                       type_cols[i].column, type_cols[i].column);
    for (size_t i = 0; i < ARRAY_SIZE(add_cols); i++)
        strbuf_appendf(&sb,
                       "  add.%s:\n    upsert:\n      id: $.payload.id\n"
                       "      add: { %s: $.payload.v }\n"
                       "  bump.%s:\n    update:\n      where: { id: $.payload.id }\n"
                       "      add: { %s: $.payload.v }\n",
                       add_cols[i].column, add_cols[i].column, add_cols[i].column,
                       add_cols[i].column);
    return strbuf_take(&sb);
}

/* ---- the reference: plain SQL, one value at a time ---- */

typedef struct Outcome {
    bool refused;
    char *text;       /* stored, as v::text (NULL: null) */
    char sqlstate[6]; /* refused */
    char *message;    /* refused: PostgreSQL's primary message */
} Outcome;

static void outcome_done(Outcome *o)
{
    free(o->text);
    free(o->message);
    *o = (Outcome){0};
}

/* Runs sql with the given text parameters (untyped, as a client would send them). */
static Outcome run_plain(PGconn *conn, const char *sql, int n, const char *const *params)
{
    Outcome o = {0};
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_FATAL_ERROR) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        o.refused = true;
        snprintf(o.sqlstate, sizeof o.sqlstate, "%s", state != NULL ? state : "");
        o.message = xstrdup(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    } else {
        cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQerrorMessage(conn));
        if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
            o.text = xstrdup(PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return o;
}

static const TypeCol *type_col(const char *column)
{
    for (size_t i = 0; i < ARRAY_SIZE(type_cols); i++)
        if (strcmp(type_cols[i].column, column) == 0)
            return &type_cols[i];
    for (size_t i = 0; i < ARRAY_SIZE(add_cols); i++)
        if (strcmp(add_cols[i].column, column) == 0)
            return &add_cols[i];
    cr_assert_fail("no column %s", column);
    return NULL;
}

/* INSERT INTO ref (v) VALUES ($1) for every case, into a table of the column's type. */
static void reference_values(PGconn *conn, Outcome *ref)
{
    for (size_t i = 0; i < ARRAY_SIZE(type_cols); i++) {
        char *sql = xasprintf("CREATE TABLE ref_%s (v %s%s)", type_cols[i].column,
                              type_cols[i].type, type_cols[i].not_null ? " NOT NULL" : "");
        PQclear(testenv_sql(conn, sql));
        free(sql);
    }
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *sql =
            xasprintf("INSERT INTO ref_%s (v) VALUES ($1) RETURNING v::text", cases[i].column);
        ref[i] = run_plain(conn, sql, 1, &cases[i].text);
        free(sql);
        cr_assert_eq(
            ref[i].refused, cases[i].refused, "the table says %s \"%s\" is %s, PostgreSQL: %s",
            cases[i].column, cases[i].text != NULL ? cases[i].text : "(null)",
            cases[i].refused ? "refused" : "stored", ref[i].refused ? ref[i].message : ref[i].text);
    }
}

/* What one counter's amounts do, one at a time: refs[0 .. 2 * ADD_MAX) per amount (first,
 * then), *final the value left. */
static void reference_adds(PGconn *conn, const AddCase *a, size_t index, Outcome *refs,
                           char **final)
{
    const TypeCol *t = type_col(a->column);
    char key[16];
    snprintf(key, sizeof key, "k%zu", index);
    char *sql = xasprintf("CREATE TABLE IF NOT EXISTS refadd_%s (k text PRIMARY KEY, a %s "
                          "NOT NULL DEFAULT 0)",
                          t->column, t->type);
    PQclear(testenv_sql(conn, sql));
    free(sql);
    sql = xasprintf("INSERT INTO refadd_%s (k) VALUES ($1)", t->column);
    const char *kp[] = {key};
    Outcome made = run_plain(conn, sql, 1, kp);
    cr_assert_not(made.refused);
    outcome_done(&made);
    free(sql);
    sql = xasprintf("UPDATE refadd_%s SET a = a + CAST($1 AS %s) WHERE k = $2", t->column, t->type);
    for (size_t j = 0; j < 2 * ADD_MAX; j++) {
        const char *amount = j < ADD_MAX ? a->first[j] : a->then[j - ADD_MAX];
        if (amount == NULL)
            continue;
        const char *params[] = {amount, key};
        refs[j] = run_plain(conn, sql, 2, params);
        cr_assert(j > 0 || !refs[j].refused, "the first amount of a counter must fit");
    }
    free(sql);
    char *get = xasprintf("SELECT a::text FROM refadd_%s WHERE k = $1", t->column);
    Outcome v = run_plain(conn, get, 1, kp);
    *final = v.text;
    free(v.message);
    free(get);
}

/* ---- publishing ---- */

/* One event sent and what it must come to. */
typedef struct Sent {
    char entry[48];
    const char *column;  /* the column a refusal must name */
    const Outcome *want; /* the reference's outcome */
} Sent;

typedef struct Run {
    TestDaemon d;
    Outcome ref[ARRAY_SIZE(cases)];
    Outcome add_ref[ARRAY_SIZE(add_cases)][2 * ADD_MAX];
    char *add_final[ARRAY_SIZE(add_cases)];
    Sent sent[ASSIGN_MAX_SENT];
    size_t nsent;
    StrBuf wrong; /* every difference found, one a line */
} Run;

static void send_event(Run *r, const char *type, const char *key, const char *v, const char *inc,
                       const char *column, const Outcome *want)
{
    cr_assert_lt(r->nsent, ASSIGN_MAX_SENT);
    json_t *payload = json_pack("{s:s}", "id", key);
    if (v != NULL)
        json_object_set_new(payload, "v", json_string(v));
    if (inc != NULL)
        json_object_set_new(payload, "inc", json_string(inc));
    json_t *envelope =
        json_pack("{s:s, s:i, s:o}", "eventType", type, "version", 1, "payload", payload);
    char *text = json_dumps(envelope, JSON_COMPACT);
    json_t *fields = json_pack("{s:s}", "event", text);
    Sent *s = &r->sent[r->nsent++];
    testenv_xadd(r->d.redis, ASSIGN_STREAM, fields, s->entry);
    snprintf(r->d.last, sizeof r->d.last, "%s", s->entry);
    s->column = column;
    s->want = want;
    json_decref(fields);
    json_decref(envelope);
    free(text);
}

/* The scenarios of one value (case i), each on its own key: alone; last and not last of
 * two, both folded in C (every amount plainly "1"); and both folded in SQL (an amount
 * "+1", which only PostgreSQL reads). */
static const char *const scenarios[][2] = {
    {"alone", NULL}, {"c-last", "1"}, {"c-first", "1"}, {"sql-last", "+1"}, {"sql-first", "+1"},
};

static size_t first_case_of(const char *column)
{
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        if (strcmp(cases[i].column, column) == 0)
            return i;
    cr_assert_fail("no case for %s", column);
    return 0;
}

static void publish_values(Run *r)
{
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const Case *c = &cases[i];
        size_t f = first_case_of(c->column);
        char type[64];
        snprintf(type, sizeof type, "set.%s", c->column);
        for (size_t s = 0; s < ARRAY_SIZE(scenarios); s++) {
            const char *name = scenarios[s][0], *other_inc = scenarios[s][1];
            char key[64];
            snprintf(key, sizeof key, "%s-%zu", name, i);
            if (other_inc == NULL) {
                send_event(r, type, key, c->text, "1", c->column, &r->ref[i]);
            } else if (strstr(name, "last") != NULL) {
                send_event(r, type, key, cases[f].text, other_inc, c->column, &r->ref[f]);
                send_event(r, type, key, c->text, "1", c->column, &r->ref[i]);
            } else {
                send_event(r, type, key, c->text, other_inc, c->column, &r->ref[i]);
                send_event(r, type, key, cases[f].text, "1", c->column, &r->ref[f]);
            }
        }
    }
}

static void publish_adds(Run *r, bool then)
{
    for (size_t i = 0; i < ARRAY_SIZE(add_cases); i++) {
        const AddCase *a = &add_cases[i];
        char key[32], type[64];
        snprintf(key, sizeof key, "add-%zu", i);
        snprintf(type, sizeof type, "%s.%s", then ? a->then_by : "add", a->column);
        for (size_t j = 0; j < ADD_MAX; j++) {
            const char *amount = then ? a->then[j] : a->first[j];
            if (amount != NULL)
                send_event(r, type, key, amount, NULL, a->column,
                           &r->add_ref[i][j + (then ? ADD_MAX : 0)]);
        }
    }
}

/* ---- comparing ---- */

/* The row key holds, per the reference: absent when no event of it was applied. */
static void expect_row(Run *r, const char *key, const char *column, const char *want)
{
    char *sql = xasprintf("SELECT coalesce(%s::text, '(null)') FROM assign WHERE id = $1", column);
    const char *params[] = {key};
    PGresult *res = PQexecParams(r->d.pg, sql, 1, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(r->d.pg));
    const char *got = PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "(no row)";
    if (strcmp(got, want) != 0)
        strbuf_appendf(&r->wrong, "row %s: %s is %s, a plain statement gives %s\n", key, column,
                       got, want);
    PQclear(res);
    free(sql);
}

/* The stored value and counter of every value's keys. */
static void compare_values(Run *r)
{
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const Case *c = &cases[i];
        const Outcome *x = &r->ref[i], *f = &r->ref[first_case_of(c->column)];
        for (size_t s = 0; s < ARRAY_SIZE(scenarios); s++) {
            const char *name = scenarios[s][0];
            char key[64], n[16];
            snprintf(key, sizeof key, "%s-%zu", name, i);
            bool x_last = scenarios[s][1] == NULL || strstr(name, "last") != NULL;
            int applied = (scenarios[s][1] != NULL) + !x->refused;
            const Outcome *kept = x_last && !x->refused ? x : f;
            snprintf(n, sizeof n, "%d", applied);
            if (applied == 0) {
                expect_row(r, key, "n", "(no row)");
                continue;
            }
            expect_row(r, key, c->column, kept->text != NULL ? kept->text : "(null)");
            expect_row(r, key, "n", n);
        }
    }
    for (size_t i = 0; i < ARRAY_SIZE(add_cases); i++) {
        char key[32];
        snprintf(key, sizeof key, "add-%zu", i);
        expect_row(r, key, add_cases[i].column, r->add_final[i]);
    }
}

/* Exactly the events the reference refuses are dead letters, each with PostgreSQL's
 * SQLSTATE and message and the name of its column. */
static void compare_dead_letters(Run *r)
{
    PGresult *res = PQexec(r->d.pg, "SELECT entry_id, coalesce(sqlstate, ''), error "
                                    "FROM projector.dead_letters");
    cr_assert_eq(PQresultStatus(res), PGRES_TUPLES_OK, "%s", PQerrorMessage(r->d.pg));
    size_t found = 0, want = 0;
    for (size_t i = 0; i < r->nsent; i++) {
        const Sent *s = &r->sent[i];
        int row = -1;
        for (int k = 0; k < PQntuples(res) && row < 0; k++)
            if (strcmp(PQgetvalue(res, k, 0), s->entry) == 0)
                row = k;
        want += s->want->refused;
        found += row >= 0;
        if (!s->want->refused && row >= 0) {
            strbuf_appendf(&r->wrong, "entry %s (%s) dead-lettered: %s\n", s->entry, s->column,
                           PQgetvalue(res, row, 2));
            continue;
        }
        if (!s->want->refused)
            continue;
        if (row < 0) {
            strbuf_appendf(&r->wrong, "entry %s (%s) applied, a plain statement refuses it: %s\n",
                           s->entry, s->column, s->want->message);
            continue;
        }
        const char *state = PQgetvalue(res, row, 1), *error = PQgetvalue(res, row, 2);
        char named[80];
        snprintf(named, sizeof named, "column \"%s\"", s->column);
        bool same_message = strcmp(state, "23502") == 0 || strstr(error, s->want->message);
        if (strcmp(state, s->want->sqlstate) != 0 || !same_message || !strstr(error, named))
            strbuf_appendf(&r->wrong,
                           "entry %s: dead letter [%s] \"%s\", a plain statement: [%s] \"%s\", "
                           "naming %s\n",
                           s->entry, state, error, s->want->sqlstate, s->want->message, named);
    }
    if (found != (size_t)PQntuples(res))
        strbuf_appendf(&r->wrong, "%d dead letters, %zu of them for the events sent\n",
                       PQntuples(res), found);
    cr_log_info("%zu events, %zu refused by a plain statement", r->nsent, want);
    PQclear(res);
}

/* ---- a run of the daemon ---- */

/* Publishes every value and the counters' first amounts, lets the daemon (configured with
 * config_extra) apply them and stop, then the counters' next amounts (so that they too
 * wait in one batch, onto rows that exist), lets it apply those, and compares. */
static void run_path(const char *name, const char *config_extra)
{
    if (!testenv_have_servers())
        cr_skip_test("PROJECTOR_TEST_PG and PROJECTOR_TEST_REDIS_URL are not set");
    Run *r = xcalloc(1, sizeof *r);
    char *dir = testenv_tmpdir();
    char *yaml = model_yaml();
    free(testenv_write_file(dir, "assign.yaml", yaml));
    testenv_daemon_setup(&r->d, name, dir, ASSIGN_BATCH, 100);
    testenv_append_file(r->d.config, config_extra);

    reference_values(r->d.pg, r->ref);
    for (size_t i = 0; i < ARRAY_SIZE(add_cases); i++)
        reference_adds(r->d.pg, &add_cases[i], i, r->add_ref[i], &r->add_final[i]);

    publish_values(r);
    publish_adds(r, false);
    testenv_daemon_settle(&r->d, ASSIGN_STREAM);
    cr_assert_eq(testenv_kill(r->d.pid, SIGTERM), 0, "log: %s", r->d.log);
    r->d.pid = 0;
    publish_adds(r, true);
    testenv_daemon_settle(&r->d, ASSIGN_STREAM);

    compare_values(r);
    compare_dead_letters(r);
    char *status = testenv_query_text(r->d.pg, "SELECT count(*) FROM assign");
    cr_log_info("%s: %s rows", name, status);
    free(status);
    cr_expect_eq(r->wrong.len, 0, "%s differs from plain statements (log: %s):\n%s", name, r->d.log,
                 r->wrong.buf);

    strbuf_done(&r->wrong);
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
        outcome_done(&r->ref[i]);
    for (size_t i = 0; i < ARRAY_SIZE(add_cases); i++) {
        for (size_t j = 0; j < 2 * ADD_MAX; j++)
            outcome_done(&r->add_ref[i][j]);
        free(r->add_final[i]);
    }
    testenv_daemon_done(&r->d);
    free(yaml);
    free(dir);
    free(r);
}

Test(assign_pg, one_by_one_refuses_what_a_plain_insert_refuses, .timeout = 240)
{
    run_path("assign_one", "set_based: false\n");
}

Test(assign_pg, set_based_refuses_what_a_plain_insert_refuses, .timeout = 240)
{
    run_path("assign_set", "set_based: true\n");
}

Test(assign_pg, parallel_apply_refuses_what_a_plain_insert_refuses, .timeout = 240)
{
    run_path("assign_par", "set_based: true\nparallel_apply: 2\n");
}
