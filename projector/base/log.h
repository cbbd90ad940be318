/* log.h - leveled logging to stderr with a per-read-model context prefix.
 *
 * Lines look like "2026-11-22T07:50:00.123Z info readmodel=orders: message". Thread-safe:
 * one line is written with one fputs under stderr's lock.
 */
#ifndef PROJECTOR_LOG_H
#define PROJECTOR_LOG_H

#include "base/util.h"

typedef enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } LogLevel;

/* Parses "error", "warn", "info", "debug"; returns -PJ_EINVAL otherwise. */
int log_level_parse(const char *s, LogLevel *ret) PJ_MUSTCHECK;
void log_set_level(LogLevel level);
bool log_enabled(LogLevel level);

/* ctx is a context prefix such as "readmodel=orders" or NULL. */
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
