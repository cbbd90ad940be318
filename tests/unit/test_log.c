/* test_log.c - the log line in both formats: logfmt's fields and quoting (event data with
 * quotes, backslashes and control characters), the context's fields and components, and
 * JSON lines that parse back to the same fields. stderr is sent to a file for the test. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/util.h"

static char path[64];

static int64_t fixed_clock(void)
{
    return 1796686000123; /* 2026-12-07T... */
}

static void capture(void)
{
    snprintf(path, sizeof path, "/tmp/pj-log-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_not_null(freopen(path, "w", stderr));
    clock_install(fixed_clock);
    log_set_level(LOG_DEBUG);
}

/* What the log wrote since capture(). */
static char *captured(void)
{
    fflush(stderr);
    char *text = NULL;
    PjError err;
    cr_assert_eq(read_file(path, &text, NULL, &err), 0, "%s", err.message);
    unlink(path);
    log_set_format(LOG_FORMAT_LOGFMT);
    return text;
}

Test(log, logfmt_fields_and_quoting)
{
    capture();
    log_warn("readmodel=orders stream=orders", "could not apply \"%s\" \\ %s", "x", "\x1b[31m");
    log_debug("http", "hung up");
    log_info(NULL, "plain");
    char *text = captured();
    cr_assert(strstr(text, "level=warn readmodel=orders stream=orders msg=\"could not apply "
                           "\\\"x\\\" \\\\ \\x1b[31m\"\n") != NULL,
              "%s", text);
    cr_assert(strstr(text, "level=debug component=http msg=\"hung up\"\n") != NULL, "%s", text);
    cr_assert(strstr(text, "level=info msg=plain\n") != NULL, "%s", text);
    cr_assert(strncmp(text, "ts=2026-12-07T", 14) == 0, "%s", text);
    free(text);
}

Test(log, json_lines_parse_back)
{
    capture();
    log_set_format(LOG_FORMAT_JSON);
    log_error("readmodel=orders", "bad \"%s\"\x07", "é");
    char *text = captured();
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    cr_assert_not_null(o, "%s: %s", jerr.text, text);
    cr_assert_str_eq(json_string_value(json_object_get(o, "level")), "error");
    cr_assert_str_eq(json_string_value(json_object_get(o, "readmodel")), "orders");
    cr_assert_str_eq(json_string_value(json_object_get(o, "msg")), "bad \"é\"\x07");
    cr_assert(strstr(text, "\\u0007") != NULL, "the bell is not escaped: %s", text);
    json_decref(o);
    free(text);
}

Test(log, levels_and_formats_parse)
{
    LogLevel l;
    LogFormat f;
    cr_assert_eq(log_level_parse("warn", &l), 0);
    cr_assert_eq(l, LOG_WARN);
    cr_assert_lt(log_level_parse("loud", &l), 0);
    cr_assert_eq(log_format_parse("json", &f), 0);
    cr_assert_eq(f, LOG_FORMAT_JSON);
    cr_assert_lt(log_format_parse("xml", &f), 0);
    cr_assert_str_eq(log_format_name(LOG_FORMAT_LOGFMT), "logfmt");
    cr_assert_str_eq(log_level_name(LOG_DEBUG), "debug");
}
