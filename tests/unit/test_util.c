/* test_util.c - the SQL quoting of util.h: which identifiers are safe to put in SQL text
 * (lower case, digits, underscores, 1..63 bytes, PostgreSQL's NAMEDATALEN - 1), how they
 * are quoted, and string literals with their quotes doubled and nothing else changed.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "base/util.h"

typedef struct IdentCase {
    char text[80];
    bool safe;
} IdentCase;

#define A10 "aaaaaaaaaa"
#define A60 A10 A10 A10 A10 A10 A10

ParameterizedTestParameters(util, ident_is_safe)
{
    static IdentCase cases[] = {
        {"a", true},
        {"_", true},
        {"orders", true},
        {"order_lines2", true},
        {"_9", true},
        {A60 "abc", true}, /* 63 bytes: the longest name PostgreSQL keeps whole */
        {A60 "abcd", false},
        {"", false},
        {"1a", false},
        {"Orders", false},
        {"aB", false},
        {"a-b", false},
        {"a b", false},
        {"a\"b", false},
        {"a'b", false},
        {"a;b", false},
        {"a.b", false},
        {"a$", false},
        {"\xc3\xa9t\xc3\xa9", false}, /* UTF-8 letters */
    };
    return cr_make_param_array(IdentCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(IdentCase *c, util, ident_is_safe)
{
    cr_expect_eq(sql_ident_is_safe(c->text), c->safe, "\"%s\" (%zu bytes): expected %s", c->text,
                 strlen(c->text), c->safe ? "safe" : "unsafe");
}

Test(util, append_ident_double_quotes_after_what_is_there)
{
    StrBuf sb = {0};
    strbuf_append(&sb, "SELECT ");
    sql_append_ident(&sb, "order_lines");
    strbuf_append(&sb, ".");
    sql_append_ident(&sb, "id");
    cr_expect_str_eq(sb.buf, "SELECT \"order_lines\".\"id\"");
    cr_expect_eq(sb.len, strlen(sb.buf));
    strbuf_done(&sb);
}

typedef struct LiteralCase {
    char text[40];
    char want[48];
} LiteralCase;

ParameterizedTestParameters(util, append_literal)
{
    static LiteralCase cases[] = {
        {"", "''"},
        {"abc", "'abc'"},
        {"O'Brien", "'O''Brien'"},
        {"'", "''''"},
        {"''", "''''''"},
        {"'lead and trail'", "'''lead and trail'''"},
        /* standard_conforming_strings: a backslash is an ordinary character */
        {"back\\slash", "'back\\slash'"},
        {"\\'", "'\\'''"},
        {"a\"b", "'a\"b'"},
        {"line\nbreak\ttab", "'line\nbreak\ttab'"},
        {"x'); DROP TABLE t; --", "'x''); DROP TABLE t; --'"},
        {"Zo\xc3\xab", "'Zo\xc3\xab'"},
    };
    return cr_make_param_array(LiteralCase, cases, ARRAY_SIZE(cases));
}

ParameterizedTest(LiteralCase *c, util, append_literal)
{
    StrBuf sb = {0};
    strbuf_append(&sb, "= ");
    sql_append_literal(&sb, c->text);
    cr_expect_str_eq(sb.buf + 2, c->want, "literal of \"%s\"", c->text);
    cr_expect_eq(strncmp(sb.buf, "= ", 2), 0, "what was in the buffer changed");
    cr_expect_eq(sb.len, strlen(sb.buf));
    strbuf_done(&sb);
}

Test(util, an_error_reworded_keeps_its_code_and_sqlstate)
{
    PjError err;
    pj_error_set(&err, PJ_EPERMANENT, "duplicate key");
    memcpy(err.sqlstate, "23505", 6);
    cr_expect_eq(pj_error_prefix(&err, "migration \"%s\" failed", "004"), -PJ_EPERMANENT);
    cr_expect_str_eq(err.message, "migration \"004\" failed: duplicate key");
    cr_expect_eq(pj_error_suffix(&err, "(%s)", "hint"), -PJ_EPERMANENT);
    cr_expect_str_eq(err.message, "migration \"004\" failed: duplicate key (hint)");
    cr_expect_str_eq(err.sqlstate, "23505");
    cr_expect_eq(err.code, PJ_EPERMANENT);
}

typedef struct VisibleCase {
    const char *text;
    bool keep_lines;
    const char *shown;
} VisibleCase;

Test(util, control_characters_are_written_out_and_text_is_kept)
{
    static const VisibleCase cases[] = {
        {"plain text, caf\xc3\xa9, \xc2\xa0nbsp", false, "plain text, caf\xc3\xa9, \xc2\xa0nbsp"},
        {"\x1b]0;title\x07", false, "\\x1b]0;title\\x07"},
        {"a\nb\tc\rd", false, "a\\nb\\tc\\rd"},
        {"a\nb\tc\rd", true, "a\nb\tc\\rd"},
        {"del\x7f", false, "del\\x7f"},
        {"csi\xc2\x9b"
         "31m",
         false, "csi\\u009b31m"},
        {"\xc2\x80\xc2\x9f\xc2\xa0", false, "\\u0080\\u009f\xc2\xa0"},
        {"", false, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        StrBuf sb = {0};
        strbuf_append(&sb, "");
        strbuf_append_visible(&sb, cases[i].text, cases[i].keep_lines);
        cr_expect_str_eq(sb.buf, cases[i].shown, "case %zu", i);
        strbuf_done(&sb);
    }
}

/* An array literal element: NULL bare, anything else quoted with " and \ escaped. */
Test(util, array_elements_are_quoted_and_escaped)
{
    StrBuf sb = {0};
    strbuf_append(&sb, "{");
    strbuf_append_array_element(&sb, "plain");
    strbuf_append(&sb, ",");
    strbuf_append_array_element(&sb, NULL);
    strbuf_append(&sb, ",");
    strbuf_append_array_element(&sb, "a\"b\\c,{}");
    strbuf_append(&sb, ",");
    strbuf_append_array_element(&sb, "");
    strbuf_append(&sb, "}");
    cr_assert_str_eq(sb.buf, "{\"plain\",NULL,\"a\\\"b\\\\c,{}\",\"\"}");
    strbuf_done(&sb);
}
