/* test_schemas.c - the JSON Schemas in schemas/ against the documents the project ships
 * (readmodels/, tests/data/good/, deploy/projector.yaml, the sample feed) and against documents
 * that must be rejected. Runs tests/schema_check.py with /usr/bin/python3 (jsonschema and
 * yaml from Debian's packages), as an editor or a CI step would.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testenv.h"
#include "base/util.h"

#define PYTHON "/usr/bin/python3"

/* Runs the checker on one file; returns its exit code and its output in *out. */
static int schema_check(const char *schema, const char *path, char **out)
{
    char *cmd = xasprintf("'%s' '%s/tests/schema_check.py' '%s/schemas/%s' '%s' 2>&1", PYTHON,
                          PROJECTOR_SOURCE_DIR, PROJECTOR_SOURCE_DIR, schema, path);
    FILE *p = popen(cmd, "r");
    StrBuf sb = {0};
    char buf[1024];
    size_t n;
    int status;

    cr_assert_not_null(p, "could not run \"%s\"", cmd);
    strbuf_append(&sb, "");
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        strbuf_appendn(&sb, buf, n);
    status = pclose(p);
    free(cmd);
    *out = strbuf_take(&sb);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Checks every file matching pattern (relative to the source folder); returns how many. */
static size_t expect_all_valid(const char *schema, const char *pattern)
{
    char *full = xasprintf("%s/%s", PROJECTOR_SOURCE_DIR, pattern);
    glob_t g = {0};
    size_t count = 0;

    if (glob(full, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char *out = NULL;
            int code = schema_check(schema, g.gl_pathv[i], &out);
            cr_expect_eq(code, 0, "%s does not validate against %s (exit %d):\n%s",
                         g.gl_pathv[i], schema, code, out);
            free(out);
            count++;
        }
    }
    globfree(&g);
    free(full);
    return count;
}

Test(schemas, python_and_jsonschema_are_installed)
{
    char *out = NULL;
    int code = schema_check("readmodel.schema.json", "--version-probe-does-not-exist", &out);
    /* Exit 1 with "cannot read file" proves the interpreter, the modules and the schema. */
    cr_assert_eq(code, 1, "schema_check.py did not run (exit %d):\n%s", code, out);
    cr_assert(strstr(out, "cannot read file") != NULL, "unexpected output:\n%s", out);
    free(out);
}

Test(schemas, shipped_read_models_validate)
{
    cr_assert_geq(expect_all_valid("readmodel.schema.json", "readmodels/*.yaml"), 3);
    expect_all_valid("readmodel.schema.json", "tests/data/good/*.yaml");
}

Test(schemas, example_config_validates)
{
    cr_assert_eq(expect_all_valid("config.schema.json", "deploy/projector.yaml"), 1);
}

Test(schemas, sample_feed_validates)
{
    cr_assert_eq(expect_all_valid("event.schema.json", "deploy/sample/feed.jsonl"), 1);
}

/* ---- documents written here, checked by content ---- */

typedef struct SchemaCase {
    char name[32];      /* file name: its extension picks YAML, JSON or feed */
    char schema[32];
    char text[640];
    int exit_code;      /* 0 accepted, 1 rejected */
    char expect[96];    /* a substring of the output ("" for none) */
} SchemaCase;

#define RM "readmodel.schema.json"
#define CFG "config.schema.json"
#define EV "event.schema.json"
#define MINIMAL_RM "readmodel: t\ntable: t\nstreams: [s]\nkey: [id]\n"

ParameterizedTestParameters(schemas, documents)
{
    static SchemaCase cases[] = {
        {"missing_on.yaml", RM, MINIMAL_RM "columns: {id: text}\n", 1,
         "'on' is a required property"},
        {"unknown_key.yaml", RM, MINIMAL_RM "columns: {id: text}\non: {a: {delete: {where: "
         "{id: $.x}}}}\ncolums: {}\n", 1, "'colums' was unexpected"},
        {"unknown_type.yaml", RM, MINIMAL_RM "columns: {id: strng}\non: {a: {delete: {where: "
         "{id: $.x}}}}\n", 1, "$.columns.id: 'strng'"},
        {"two_verbs.yaml", RM, MINIMAL_RM "columns: {id: text}\non:\n  a:\n    delete: {where: "
         "{id: $.x}}\n    update: {where: {id: $.x}, set: {id: $.y}}\n", 1, "$.on.a"},
        {"reserved_column.yaml", RM, MINIMAL_RM "columns: {id: text, add: integer}\non: {a: "
         "{delete: {where: {id: $.x}}}}\n", 1, "$.columns"},
        {"duplicate_key.yaml", RM, MINIMAL_RM "key: [id]\ncolumns: {id: text}\n", 1,
         "duplicate key \"key\""},
        {"yaml_12_and_flow.yaml", RM, MINIMAL_RM "columns:\n  id: TEXT\n  n: {type: numeric(12,"
         " 2), default: 0}\n  ok: {type: Boolean, nullable: yes}\non:\n  a:\n    upsert: {id: "
         "concat($.a, $.b), add: {n: 1}}\n", 1, "$.columns.ok.nullable: 'yes'"},
        {"flow_and_case_ok.yaml", RM, MINIMAL_RM "columns:\n  id: TEXT\n  n: {type: numeric(12,"
         " 2), default: 0}\non:\n  a:\n    upsert: {id: concat($.a, $.b), add: {n: 1}}\n", 0,
         ""},
        {"batch_zero.yaml", CFG, "batch: 0\n", 1, "$.batch"},
        {"misspelled.yaml", CFG, "bacth: 10\n", 1, "'bacth' was unexpected"},
        {"log_level.yaml", CFG, "log_level: verbose\nhttp: {listen: ':8080'}\n", 1,
         "$.log_level"},
        {"env_ok.yaml", CFG, "batch: ${BATCH}\nredis: {url: '${REDIS_URL}'}\n", 0, ""},
        {"no_type.jsonl", EV, "{\"stream\":\"s\",\"fields\":{\"event_id\":\"1\",\"aggregate_id\":"
         "\"a\",\"aggregate_type\":\"A\",\"version\":\"1\",\"occurred_at\":"
         "\"2026-01-15T10:00:00Z\"}}\n", 1, "no_type.jsonl:1: $: 'type' is a required"},
        {"bad_envelope.jsonl", EV, "# ok\n{\"stream\":\"s\",\"envelope\":{\"eventId\":\"1\","
         "\"eventType\":\"t\",\"aggregateId\":\"a\",\"aggregateType\":\"A\",\"timestamp\":"
         "\"2026-01-15T10:00:00Z\",\"version\":1,\"payload\":[]}}\n", 1,
         "bad_envelope.jsonl:2: $.payload"},
        {"not_json.jsonl", EV, "{\"stream\":\n", 1, "not_json.jsonl:1: invalid JSON"},
    };
    return cr_make_param_array(SchemaCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(SchemaCase *c, schemas, documents)
{
    char *dir = testenv_tmpdir();
    char *path = testenv_write_file(dir, c->name, c->text);
    char *out = NULL;
    int code = schema_check(c->schema, path, &out);

    cr_expect_eq(code, c->exit_code, "%s: expected exit %d, got %d:\n%s", c->name,
                 c->exit_code, code, out);
    cr_expect(strstr(out, c->expect) != NULL, "%s: expected \"%s\" in:\n%s", c->name,
              c->expect, out);
    free(out);
    free(path);
    free(dir);
}
