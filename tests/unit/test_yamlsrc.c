/* test_yamlsrc.c - the libyaml wrapper: 1-based line and column of every kind of node
 * (keys, plain and quoted scalars, block and flow collections, nested ones), positions of
 * syntax errors, null spellings, and the empty document.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "base/yamlsrc.h"

/* Columns are counted by hand from this text; keep the two together. */
static const char doc[] = "readmodel: orders\n"                                /* 1 */
                          "columns:\n"                                         /* 2 */
                          "  id: text\n"                                       /* 3 */
                          "  total: { type: \"numeric(12,2)\", default: 0 }\n" /* 4 */
                          "streams: [a, 'b']\n"                                /* 5 */
                          "on:\n"                                              /* 6 */
                          "  - x: ~\n"                                         /* 7 */
                          "    y: null\n";                                     /* 8 */

static YamlSrc *load(const char *text)
{
    YamlSrc *src = NULL;
    Diagnostics d = {0};
    int r = yamlsrc_load_string("doc.yaml", text, strlen(text), &src, &d);
    if (r < 0)
        diag_print(&d, stderr);
    cr_assert_eq(r, 0);
    cr_assert_eq(d.count, 0);
    diag_done(&d);
    return src;
}

/* The node at path: keys and sequence indexes separated by '/', "!key" for a key node
 * itself; "" is the root. */
static YamlNode *walk(const YamlSrc *src, const char *path)
{
    YamlNode *n = yamlsrc_root(src);
    char *copy = xstrdup(path), *save = NULL;
    for (char *seg = strtok_r(copy, "/", &save); seg != NULL; seg = strtok_r(NULL, "/", &save)) {
        cr_assert_not_null(n, "%s: nothing at \"%s\"", path, seg);
        if (yamlsrc_is_sequence(n)) {
            size_t i = strtoul(seg, NULL, 10);
            cr_assert_lt(i, yamlsrc_seq_count(n), "%s: no item %zu", path, i);
            n = yamlsrc_seq_item(src, n, i);
        } else if (seg[0] == '!') {
            YamlNode *key = NULL;
            for (size_t i = 0; i < yamlsrc_map_count(n) && key == NULL; i++)
                if (strcmp(yamlsrc_scalar(yamlsrc_map_key(src, n, i)), seg + 1) == 0)
                    key = yamlsrc_map_key(src, n, i);
            n = key;
        } else {
            n = yamlsrc_map_get(src, n, seg);
        }
    }
    free(copy);
    cr_assert_not_null(n, "nothing at %s", path);
    return n;
}

typedef struct PosCase {
    char path[32];
    int line, column;
    char kind[12]; /* yamlsrc_kind_name */
    char text[16]; /* a scalar's text */
    bool quoted;
} PosCase;

ParameterizedTestParameters(yamlsrc, node_positions)
{
    static PosCase cases[] = {
        {"", 1, 1, "a mapping", "", false},
        {"!readmodel", 1, 1, "a scalar", "readmodel", false},
        {"readmodel", 1, 12, "a scalar", "orders", false},
        {"!columns", 2, 1, "a scalar", "columns", false},
        {"columns", 3, 3, "a mapping", "", false}, /* a block mapping starts at its first key */
        {"columns/!id", 3, 3, "a scalar", "id", false},
        {"columns/id", 3, 7, "a scalar", "text", false},
        {"columns/!total", 4, 3, "a scalar", "total", false},
        {"columns/total", 4, 10, "a mapping", "", false}, /* at its '{' */
        {"columns/total/!type", 4, 12, "a scalar", "type", false},
        {"columns/total/type", 4, 18, "a scalar", "numeric(12,2)", true}, /* at the quote */
        {"columns/total/!default", 4, 35, "a scalar", "default", false},
        {"columns/total/default", 4, 44, "a scalar", "0", false},
        {"streams", 5, 10, "a sequence", "", false}, /* at its '[' */
        {"streams/0", 5, 11, "a scalar", "a", false},
        {"streams/1", 5, 14, "a scalar", "b", true},
        {"!on", 6, 1, "a scalar", "on", false},
        {"on", 7, 3, "a sequence", "", false}, /* at the first '-' */
        {"on/0", 7, 5, "a mapping", "", false},
        {"on/0/x", 7, 8, "a scalar", "~", false},
        {"on/0/!y", 8, 5, "a scalar", "y", false},
        {"on/0/y", 8, 8, "a scalar", "null", false},
    };
    return cr_make_param_array(PosCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(PosCase *c, yamlsrc, node_positions)
{
    YamlSrc *src = load(doc);
    YamlNode *n = walk(src, c->path);
    cr_expect_eq(yamlsrc_line(n), c->line, "\"%s\": line %d, expected %d", c->path, yamlsrc_line(n),
                 c->line);
    cr_expect_eq(yamlsrc_column(n), c->column, "\"%s\": column %d, expected %d", c->path,
                 yamlsrc_column(n), c->column);
    cr_expect_str_eq(yamlsrc_kind_name(n), c->kind, "\"%s\"", c->path);
    if (yamlsrc_is_scalar(n))
        cr_expect_str_eq(yamlsrc_scalar(n), c->text, "\"%s\"", c->path);
    else
        cr_expect_null(yamlsrc_scalar(n), "\"%s\" is not a scalar", c->path);
    cr_expect_eq(yamlsrc_scalar_quoted(n), c->quoted, "\"%s\"", c->path);
    yamlsrc_free(src);
}

Test(yamlsrc, counts_and_missing_keys)
{
    YamlSrc *src = load(doc);
    YamlNode *root = yamlsrc_root(src);
    cr_expect_eq(yamlsrc_map_count(root), 4);
    cr_expect_eq(yamlsrc_seq_count(root), 0, "a mapping has no items");
    cr_expect_eq(yamlsrc_seq_count(walk(src, "streams")), 2);
    cr_expect_eq(yamlsrc_map_count(walk(src, "streams")), 0, "a sequence has no keys");
    cr_expect_eq(yamlsrc_map_count(walk(src, "columns/total")), 2);
    cr_expect_null(yamlsrc_map_get(src, root, "colums"));
    cr_expect_null(yamlsrc_map_get(src, walk(src, "streams"), "a"), "a sequence has no keys");
    cr_expect_str_eq(yamlsrc_file(src), "doc.yaml");
    yamlsrc_free(src);
}

typedef struct NullCase {
    char text[24];
    bool is_null;
} NullCase;

ParameterizedTestParameters(yamlsrc, null_spellings)
{
    static NullCase cases[] = {
        {"v:", true},
        {"v: ~", true},
        {"v: null", true},
        {"v: Null", true},
        {"v: NULL", true},
        {"v: nULL", false},
        {"v: nul", false},
        {"v: 'null'", false},
        {"v: \"~\"", false},
        {"v: ''", false},
        {"v: 0", false},
        {"v: none", false},
        {"v: |\n  null\n", false},
    };
    return cr_make_param_array(NullCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(NullCase *c, yamlsrc, null_spellings)
{
    YamlSrc *src = load(c->text);
    YamlNode *v = yamlsrc_map_get(src, yamlsrc_root(src), "v");
    cr_assert_not_null(v, "%s", c->text);
    cr_expect_eq(yamlsrc_scalar_is_null(v), c->is_null, "\"%s\": expected %s", c->text,
                 c->is_null ? "null" : "not null");
    yamlsrc_free(src);
}

Test(yamlsrc, empty_document_has_no_root)
{
    static const char *const texts[] = {"", "# a comment only\n", "\n\n"};
    for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
        YamlSrc *src = load(texts[i]);
        cr_expect_null(yamlsrc_root(src), "\"%s\"", texts[i]);
        yamlsrc_free(src);
    }
    /* a document marker alone starts a document whose root is an empty (null) scalar */
    YamlSrc *src = load("---\n");
    cr_expect(yamlsrc_scalar_is_null(yamlsrc_root(src)));
    yamlsrc_free(src);
}

typedef struct ErrorCase {
    char text[48];
    int line, column;
    char message[96]; /* a substring of the diagnostic */
} ErrorCase;

ParameterizedTestParameters(yamlsrc, syntax_error_positions)
{
    static ErrorCase cases[] = {
        /* at the second ':' */
        {"a: b: c\n", 1, 5, "mapping values are not allowed"},
        /* where the next key shows the sequence was never closed */
        {"streams: [a\nkey: [id]\n", 2, 4,
         "did not find expected ',' or ']' while parsing a flow sequence"},
        /* the end of the input, where the closing quote should have been */
        {"a: 'open\n", 2, 1, "found unexpected end of stream"},
        {"x: 1\n\tb: 2\n", 2, 1, "found a tab character that violates indentation"},
        {"a:\n  - 1\n  b: 2\n", 3, 3, "did not find expected '-' indicator"},
    };
    return cr_make_param_array(ErrorCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(ErrorCase *c, yamlsrc, syntax_error_positions)
{
    YamlSrc *src = NULL;
    Diagnostics d = {0};
    int r = yamlsrc_load_string("bad.yaml", c->text, strlen(c->text), &src, &d);
    cr_assert_eq(r, -PJ_EINVAL, "\"%s\" loaded", c->text);
    cr_assert_null(src);
    cr_assert_eq(d.count, 1);
    cr_expect_str_eq(d.items[0].file, "bad.yaml");
    cr_expect_eq(d.items[0].line, c->line, "\"%s\": line %d, expected %d (%s)", c->text,
                 d.items[0].line, c->line, d.items[0].message);
    cr_expect_eq(d.items[0].column, c->column, "\"%s\": column %d, expected %d (%s)", c->text,
                 d.items[0].column, c->column, d.items[0].message);
    cr_expect(strstr(d.items[0].message, c->message) != NULL, "\"%s\": message \"%s\"", c->text,
              d.items[0].message);
    cr_expect_eq(strncmp(d.items[0].message, "invalid YAML: ", 14), 0);
    diag_done(&d);
}

Test(yamlsrc, missing_file_is_an_io_error_naming_it)
{
    YamlSrc *src = NULL;
    Diagnostics d = {0};
    const char *path = "/nonexistent/pj/readmodel.yaml";
    cr_expect_eq(yamlsrc_load_file(path, &src, &d), -PJ_EIO);
    cr_expect_null(src);
    cr_assert_eq(d.count, 1);
    cr_expect_str_eq(d.items[0].file, path);
    cr_expect(strstr(d.items[0].message, "could not open file") != NULL, "%s", d.items[0].message);
    diag_done(&d);
}
