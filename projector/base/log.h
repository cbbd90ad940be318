/* log.h - leveled logging to stderr, one line per event, logfmt or JSON.
 *
 * logfmt (the default):
 *   ts=2026-11-22T07:50:00.123Z level=info readmodel=orders msg="applied 10 events"
 * JSON (log_format: json): {"ts":"...","level":"info","readmodel":"orders","msg":"..."}
 * The context (ctx) is "key=value" pairs separated by spaces ("readmodel=orders"), or a
 * word ("http"), written as component=http. Event data in a message has its control
 * characters written out. Thread-safe: one line is written with one fputs under stderr's
 * lock.
 */
#ifndef PROJECTOR_LOG_H
#define PROJECTOR_LOG_H

#include "base/util.h"

typedef enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } LogLevel;
typedef enum { LOG_FORMAT_LOGFMT = 0, LOG_FORMAT_JSON } LogFormat;

/* Parses "error", "warn", "info", "debug"; returns -PJ_EINVAL otherwise. */
int log_level_parse(const char *s, LogLevel *ret) PJ_MUSTCHECK;
void log_set_level(LogLevel level);
/* Parses "logfmt", "json"; returns -PJ_EINVAL otherwise. */
int log_format_parse(const char *s, LogFormat *ret) PJ_MUSTCHECK;
void log_set_format(LogFormat format);
const char *log_level_name(LogLevel level);
const char *log_format_name(LogFormat format);
bool log_enabled(LogLevel level);

/* ctx is a context such as "readmodel=orders", "readmodel=orders stream=s entry=1-0", a
 * word, or NULL. */
void log_write(LogLevel level, const char *ctx, const char *fmt, ...) PJ_PRINTF(3, 4);

#define log_error(ctx, ...) log_write(LOG_ERROR, ctx, __VA_ARGS__)
#define log_warn(ctx, ...) log_write(LOG_WARN, ctx, __VA_ARGS__)
#define log_info(ctx, ...) log_write(LOG_INFO, ctx, __VA_ARGS__)
/* Checks the level before it evaluates the arguments. */
#define log_debug(ctx, ...)                                                                        \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_write(LOG_DEBUG, ctx, __VA_ARGS__);                                                \
    } while (0)

#endif
