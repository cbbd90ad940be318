/* log.c - the logger: level filter, timestamp (from the installed clock), the context's
 * fields and the message, in logfmt or JSON, one write per line. */
#include "base/log.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/json_text.h"

/* Set by the main thread (at start, on SIGHUP), read by every thread. */
static atomic_int log_level = LOG_INFO;
static atomic_int log_format = LOG_FORMAT_LOGFMT;
static const char *const log_format_names[] = {
    [LOG_FORMAT_LOGFMT] = "logfmt", [LOG_FORMAT_JSON] = "json"};
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
    atomic_store(&log_level, (int)level);
}

int log_format_parse(const char *s, LogFormat *ret)
{
    for (size_t i = 0; i < ARRAY_SIZE(log_format_names); i++) {
        if (strcmp(s, log_format_names[i]) == 0) {
            *ret = (LogFormat)i;
            return 0;
        }
    }
    return -PJ_EINVAL;
}

void log_set_format(LogFormat format)
{
    atomic_store(&log_format, (int)format);
}

const char *log_level_name(LogLevel level)
{
    assert(level <= LOG_DEBUG);
    return log_names[level];
}

const char *log_format_name(LogFormat format)
{
    assert(format <= LOG_FORMAT_JSON);
    return log_format_names[format];
}

bool log_enabled(LogLevel level)
{
    return (int)level <= atomic_load(&log_level);
}

/* A logfmt value: bare when it is a plain word, else double-quoted with \ and " escaped
 * first and control characters then written out (\x1b), so every backslash is read back
 * one way. */
static void logfmt_value(StrBuf *line, const char *v, size_t n)
{
    bool bare = n > 0;
    for (size_t i = 0; bare && i < n; i++)
        bare = (unsigned char)v[i] > 0x20 && (unsigned char)v[i] < 0x7f && v[i] != '"' &&
               v[i] != '=' && v[i] != '\\';
    if (bare) {
        strbuf_appendn(line, v, n);
        return;
    }
    StrBuf esc = {0};
    strbuf_append(&esc, "");
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"' || v[i] == '\\')
            strbuf_append(&esc, "\\");
        strbuf_appendn(&esc, &v[i], 1);
    }
    strbuf_append(line, "\"");
    strbuf_append_visible(line, esc.buf, false);
    strbuf_append(line, "\"");
    strbuf_done(&esc);
}

/* Calls field(key, value) for each "key=value" of ctx; a word without "=" is a component. */
typedef void (*CtxField)(StrBuf *line, const char *key, size_t klen, const char *value, size_t vlen,
                         json_t *obj);

static void ctx_fields(const char *ctx, CtxField field, StrBuf *line, json_t *obj)
{
    for (const char *p = ctx; p != NULL && *p != '\0';) {
        p += strspn(p, " ");
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        const char *eq = memchr(p, '=', n);
        if (eq != NULL)
            field(line, p, (size_t)(eq - p), eq + 1, n - (size_t)(eq - p) - 1, obj);
        else
            field(line, "component", 9, p, n, obj);
        p += n;
    }
}

static void logfmt_field(StrBuf *line, const char *key, size_t klen, const char *value, size_t vlen,
                         json_t *obj)
{
    (void)obj;
    strbuf_append(line, " ");
    strbuf_appendn(line, key, klen);
    strbuf_append(line, "=");
    logfmt_value(line, value, vlen);
}

static void json_field(StrBuf *line, const char *key, size_t klen, const char *value, size_t vlen,
                       json_t *obj)
{
    (void)line;
    char *k = xstrndup(key, klen), *v = xstrndup(value, vlen);
    json_object_set_new(obj, k, json_text_string(v));
    free(k);
    free(v);
}

static void format_logfmt(StrBuf *line, const char *when, LogLevel level, const char *ctx,
                          const char *msg)
{
    strbuf_appendf(line, "ts=%s level=%s", when, log_names[level]);
    ctx_fields(ctx, logfmt_field, line, NULL);
    strbuf_append(line, " msg=");
    logfmt_value(line, msg, strlen(msg));
}

static void format_json(StrBuf *line, const char *when, LogLevel level, const char *ctx,
                        const char *msg)
{
    json_t *o = json_pack("{s:s, s:s}", "ts", when, "level", log_names[level]);
    ctx_fields(ctx, json_field, line, o);
    json_object_set_new(o, "msg", json_text_string(msg));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    strbuf_append(line, text != NULL ? text : "{}");
    free(text);
    json_decref(o);
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
    if (atomic_load(&log_format) == LOG_FORMAT_JSON)
        format_json(&line, when, level, ctx, msg);
    else
        format_logfmt(&line, when, level, ctx, msg);
    strbuf_append(&line, "\n");
    /* stdio's own lock keeps lines of concurrent threads whole. */
    flockfile(stderr);
    fputs(line.buf, stderr);
    fflush(stderr);
    funlockfile(stderr);
    strbuf_done(&line);
}
