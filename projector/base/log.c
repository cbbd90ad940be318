/* log.c - the logger: level filter, timestamp (from the installed clock), context prefix,
 * one write per line. */
#include "base/log.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"

static LogLevel log_level = LOG_INFO;
static const char *const log_names[] = {
    [LOG_ERROR] = "error", [LOG_WARN] = "warn", [LOG_INFO] = "info", [LOG_DEBUG] = "debug"};
static_assert(ARRAY_SIZE(log_names) == LOG_DEBUG + 1, "a name for every log level");

int log_level_parse(const char *s, LogLevel *ret)
{
    for (size_t i = 0; i < ARRAY_SIZE(log_names); i++) {
        if (strcmp(s, log_names[i]) == 0) {
            *ret = (LogLevel)i;
            return 0;
        }
    }
    return -PJ_EINVAL;
}

void log_set_level(LogLevel level)
{
    log_level = level;
}

bool log_enabled(LogLevel level)
{
    return level <= log_level;
}

void log_write(LogLevel level, const char *ctx, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char when[40], msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One event, one line: server messages carry newlines and tabs of their own. */
    for (char *p = msg; *p != '\0'; p++)
        if (*p == '\n' || *p == '\t' || *p == '\r')
            *p = ' ';
    format_wall_ms(clock_wall_ms(), when, sizeof when);

    StrBuf line = {0};
    strbuf_appendf(&line, "%s %s ", when, log_names[level]);
    if (ctx != NULL)
        strbuf_appendf(&line, "%s: ", ctx);
    /* Event data reaches messages: a terminal tailing the log must not obey it. */
    strbuf_append_visible(&line, msg, false);
    strbuf_append(&line, "\n");
    /* stdio's own lock keeps lines of concurrent threads whole. */
    flockfile(stderr);
    fputs(line.buf, stderr);
    fflush(stderr);
    funlockfile(stderr);
    strbuf_done(&line);
}
