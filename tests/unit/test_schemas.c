/* test_schemas.c - the JSON Schemas in schemas/ against the documents the project ships
 * (readmodels/, tests/data/good/, deploy/projector.yaml, the sample feed), against the bad
 * fixtures it must reject, and against documents written here. Each folder's fixtures are
 * counted against the files present, so an empty or skipped folder fails. Runs
 * tests/schema_check.py with /usr/bin/python3 (jsonschema and yaml from Debian's
 * packages), as an editor or a CI step would.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "base/util.h"
#include "testenv.h"

#define PYTHON "/usr/bin/python3"

/* Runs the checker on paths[0 .. n); returns its exit code and its output in *out. */
static int schema_check_files(const char *schema, const char *const *paths, size_t n, char **out)
{
    StrBuf cmd = {0};
    strbuf_appendf(&cmd, "'%s' '%s/tests/schema_check.py' '%s/schemas/%s'", PYTHON,
                   PROJECTOR_SOURCE_DIR, PROJECTOR_SOURCE_DIR, schema);
    for (size_t i = 0; i < n; i++)
        strbuf_appendf(&cmd, " '%s'", paths[i]);
    strbuf_append(&cmd, " 2>&1");
    FILE *p = popen(cmd.buf, "r");
    StrBuf sb = {0};
    char buf[1024];
    size_t got;
    int status;

    cr_assert_not_null(p, "could not run \"%s\"", cmd.buf);
    strbuf_append(&sb, "");
    while ((got = fread(buf, 1, sizeof buf, p)) > 0)
        strbuf_appendn(&sb, buf, got);
    status = pclose(p);
    strbuf_done(&cmd);
    *out = strbuf_take(&sb);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int schema_check(const char *schema, const char *path, char **out)
{
    return schema_check_files(schema, &path, 1, out);
}

/* Entries of a folder, "." and ".." left out: what a glob over it should have found. */
static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    cr_assert_not_null(d, "cannot open \"%s\": %s", dir, strerror(errno));
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
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
            cr_expect_eq(code, 0, "%s does not validate against %s (exit %d):\n%s", g.gl_pathv[i],
                         schema, code, out);
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

/* Every file of the folder is a read model: one with another extension would be skipped
 * by the glob, and the count would say so. */
Test(schemas, shipped_read_models_validate)
{
    size_t present = count_entries(PROJECTOR_SOURCE_DIR "/readmodels");
    size_t checked = expect_all_valid("readmodel.schema.json", "readmodels/*.yaml");
    cr_assert_geq(checked, 3);
    cr_assert_eq(checked, present, "%zu read models checked, %zu files in readmodels/", checked,
                 present);
}

Test(schemas, good_fixtures_validate)
{
    size_t present = count_entries(PROJECTOR_SOURCE_DIR "/tests/data/good");
    size_t checked = expect_all_valid("readmodel.schema.json", "tests/data/good/*.yaml");
    cr_assert_gt(checked, 0, "no good fixture checked");
    cr_assert_eq(checked, present, "%zu good fixtures checked, %zu files in tests/data/good",
                 checked, present);
}

/* ---- the bad fixtures ---- */

#define BAD_DIR PROJECTOR_SOURCE_DIR "/tests/data/bad"

/* Bad fixtures whose mistake only the loader can see: a name that must match a column,
 * a table or another file, an expression, a type's bounds, a literal of the wrong type
 * for its column. The schema must reject every other one, so that an editor shows it. */
static const char *const loader_only[] = {
    "add_non_numeric.yaml",
    "array_path.yaml",
    "bad_condition.yaml",
    "bad_path.yaml",
    "default_not_boolean.yaml",
    "duplicate_name",
    "duplicate_table",
    "literal_not_integer.yaml",
    "literal_not_number.yaml",
    "lookup_cycle",
    "lookup_key_column.yaml",
    "lookup_unknown_column",
    "lookup_unknown_table.yaml",
    "lookup_where_unknown_column",
    "nullable_key.yaml",
    "numeric_precision.yaml",
    "numeric_scale.yaml",
    "set_and_add.yaml",
    "unknown_column_add.yaml",
    "unknown_column_index.yaml",
    "unknown_column_key.yaml",
    "unknown_column_upsert.yaml",
    "unknown_column_version.yaml",
    "unknown_column_where.yaml",
    "unknown_function.yaml",
    "unterminated_string.yaml",
    "upsert_missing_key.yaml",
    "upsert_missing_not_null.yaml",
    "varchar_length.yaml",
    "version_not_numeric.yaml",
    "wrong_argument_count.yaml",
};

static bool is_loader_only(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(loader_only); i++)
        if (strcmp(loader_only[i], name) == 0)
            return true;
    return false;
}

/* A fixture and the files it stands for: itself, or the files of its folder. */
typedef struct BadFixture {
    char *name;
    char **files;
    size_t nfiles;
} BadFixture;

static int cmp_fixtures(const void *a, const void *b)
{
    return strcmp(((const BadFixture *)a)->name, ((const BadFixture *)b)->name);
}

static size_t list_bad(BadFixture **ret)
{
    DIR *d = opendir(BAD_DIR);
    BadFixture *list = NULL;
    size_t n = 0, cap = 0;
    cr_assert_not_null(d, "cannot open %s: %s", BAD_DIR, strerror(errno));
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        xgrow((void **)&list, &cap, n + 1, sizeof *list);
        BadFixture *f = &list[n++];
        char *path = xasprintf("%s/%s", BAD_DIR, e->d_name);
        glob_t g = {0};
        char *pattern = xasprintf("%s/*.yaml", path);
        *f = (BadFixture){.name = xstrdup(e->d_name)};
        if (glob(pattern, 0, NULL, &g) == 0) {
            f->nfiles = g.gl_pathc;
            f->files = xcalloc(g.gl_pathc, sizeof *f->files);
            for (size_t i = 0; i < g.gl_pathc; i++)
                f->files[i] = xstrdup(g.gl_pathv[i]);
            free(path);
        } else {
            f->nfiles = 1;
            f->files = xcalloc(1, sizeof *f->files);
            f->files[0] = path;
        }
        globfree(&g);
        free(pattern);
    }
    closedir(d);
    qsort(list, n, sizeof *list, cmp_fixtures);
    *ret = list;
    return n;
}

/* True when the checker's output has an error line for path ("PATH: ..." or
 * "PATH:LINE: ..."). */
static bool reported(const char *out, const char *path)
{
    size_t len = strlen(path);
    for (const char *line = out; *line != '\0';) {
        if (strncmp(line, path, len) == 0 && line[len] == ':')
            return true;
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return false;
}

Test(schemas, bad_fixtures_are_rejected_unless_only_the_loader_can_tell)
{
    BadFixture *bad = NULL;
    size_t n = list_bad(&bad), nfiles = 0, checked = 0;
    const char **paths = NULL;
    size_t paths_cap = 0;

    for (size_t i = 0; i < n; i++) {
        xgrow((void **)&paths, &paths_cap, nfiles + bad[i].nfiles, sizeof *paths);
        for (size_t k = 0; k < bad[i].nfiles; k++)
            paths[nfiles++] = bad[i].files[k];
    }
    char *out = NULL;
    int code = schema_check_files("readmodel.schema.json", paths, nfiles, &out);
    cr_assert(code == 0 || code == 1, "schema_check.py failed (exit %d):\n%s", code, out);
    for (size_t i = 0; i < n; i++) {
        bool rejected = false;
        for (size_t k = 0; k < bad[i].nfiles; k++)
            rejected = rejected || reported(out, bad[i].files[k]);
        if (is_loader_only(bad[i].name))
            cr_expect(!rejected, "%s is listed as loader-only, yet the schema rejects it:\n%s",
                      bad[i].name, out);
        else
            cr_expect(rejected,
                      "the schema accepts %s: reject it there, or list it in "
                      "loader_only with the reason no schema can tell",
                      bad[i].name);
        checked++;
    }
    for (size_t k = 0; k < ARRAY_SIZE(loader_only); k++) {
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(bad[i].name, loader_only[k]) == 0;
        cr_expect(found, "loader_only names %s, which is not in %s", loader_only[k], BAD_DIR);
    }
    size_t present = count_entries(BAD_DIR);
    cr_assert_gt(checked, ARRAY_SIZE(loader_only), "no fixture the schema must reject");
    cr_assert_eq(checked, present, "%zu bad fixtures checked, %zu entries in %s", checked, present,
                 BAD_DIR);
    free(out);
    free(paths);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < bad[i].nfiles; k++)
            free(bad[i].files[k]);
        free(bad[i].files);
        free(bad[i].name);
    }
    free(bad);
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
    char name[32]; /* file name: its extension picks YAML, JSON or feed */
    char schema[32];
    char text[640];
    int exit_code;   /* 0 accepted, 1 rejected */
    char expect[96]; /* a substring of the output ("" for none) */
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
        {"unknown_key.yaml", RM,
         MINIMAL_RM "columns: {id: text}\non: {a: {delete: {where: "
                    "{id: $.x}}}}\ncolums: {}\n",
         1, "'colums' was unexpected"},
        {"unknown_type.yaml", RM,
         MINIMAL_RM "columns: {id: strng}\non: {a: {delete: {where: "
                    "{id: $.x}}}}\n",
         1, "$.columns.id: 'strng'"},
        {"two_verbs.yaml", RM,
         MINIMAL_RM "columns: {id: text}\non:\n  a:\n    delete: {where: "
                    "{id: $.x}}\n    update: {where: {id: $.x}, set: {id: $.y}}\n",
         1, "$.on.a"},
        {"reserved_column.yaml", RM,
         MINIMAL_RM "columns: {id: text, add: integer}\non: {a: "
                    "{delete: {where: {id: $.x}}}}\n",
         1, "$.columns"},
        {"duplicate_key.yaml", RM, MINIMAL_RM "key: [id]\ncolumns: {id: text}\n", 1,
         "duplicate key \"key\""},
        {"yaml_12_and_flow.yaml", RM,
         MINIMAL_RM
         "columns:\n  id: TEXT\n  n: {type: numeric(12,"
         " 2), default: 0}\n  ok: {type: Boolean, nullable: yes}\non:\n  a:\n    upsert: {id: "
         "concat($.a, $.b), add: {n: 1}}\n",
         1, "$.columns.ok.nullable: 'yes'"},
        {"flow_and_case_ok.yaml", RM,
         MINIMAL_RM
         "columns:\n  id: TEXT\n  n: {type: numeric(12,"
         " 2), default: 0}\non:\n  a:\n    upsert: {id: concat($.a, $.b), add: {n: 1}}\n",
         0, ""},
        {"batch_zero.yaml", CFG, "batch: 0\n", 1, "$.batch"},
        {"event_size.yaml", CFG, "max_event_bytes: 512\n", 1, "$.max_event_bytes"},
        {"read_size.yaml", CFG, "max_event_bytes: 1024\nmax_read_bytes: 1024\n", 0, ""},
        {"misspelled.yaml", CFG, "bacth: 10\n", 1, "'bacth' was unexpected"},
        {"log_level.yaml", CFG, "log_level: verbose\nhttp: {listen: ':8080'}\n", 1, "$.log_level"},
        {"env_ok.yaml", CFG, "batch: ${BATCH}\nredis: {url: '${REDIS_URL}'}\n", 0, ""},
        {"no_type.jsonl", EV,
         "{\"stream\":\"s\",\"fields\":{\"event_id\":\"1\",\"aggregate_id\":"
         "\"a\",\"aggregate_type\":\"A\",\"version\":\"1\",\"occurred_at\":"
         "\"2026-01-15T10:00:00Z\"}}\n",
         1, "no_type.jsonl:1: $: 'type' is a required"},
        {"bad_envelope.jsonl", EV,
         "# ok\n{\"stream\":\"s\",\"envelope\":{\"eventId\":\"1\","
         "\"eventType\":\"t\",\"aggregateId\":\"a\",\"aggregateType\":\"A\",\"timestamp\":"
         "\"2026-01-15T10:00:00Z\",\"version\":1,\"payload\":[]}}\n",
         1, "bad_envelope.jsonl:2: $.payload"},
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

    cr_expect_eq(code, c->exit_code, "%s: expected exit %d, got %d:\n%s", c->name, c->exit_code,
                 code, out);
    cr_expect(strstr(out, c->expect) != NULL, "%s: expected \"%s\" in:\n%s", c->name, c->expect,
              out);
    free(out);
    free(path);
    free(dir);
}
