/* util.c - allocation, errors, diagnostics, string buffers, SQL quoting, clocks.
 *
 * Owns nothing long-lived. Allocation failure aborts the process on purpose (see util.h).
 */
#include "base/util.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int pj_error_set(PjError *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        err->code = code;
        err->sqlstate[0] = '\0';
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return -code;
}

/* err's message with text before (": " between) or after (" " between) it. */
static int error_reword(PjError *err, bool before, const char *fmt, va_list ap)
{
    char text[sizeof err->message];
    StrBuf sb = {0};

    if (err == NULL)
        return -PJ_EINVAL;
    assert(err->code > 0);
    vsnprintf(text, sizeof text, fmt, ap);
    if (before)
        strbuf_appendf(&sb, "%s: %s", text, err->message);
    else
        strbuf_appendf(&sb, "%s %s", err->message, text);
    /* Cut to fit, like every message. */
    snprintf(err->message, sizeof err->message, "%s", sb.buf);
    strbuf_done(&sb);
    return -err->code;
}

int pj_error_prefix(PjError *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = error_reword(err, true, fmt, ap);
    va_end(ap);
    return rc;
}

int pj_error_suffix(PjError *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = error_reword(err, false, fmt, ap);
    va_end(ap);
    return rc;
}

void diag_addv(Diagnostics *d, const char *file, int line, int column, const char *fmt, va_list ap)
{
    StrBuf sb = {0};
    char tmp[1024];

    vsnprintf(tmp, sizeof tmp, fmt, ap);
    strbuf_append(&sb, tmp);
    xgrow((void **)&d->items, &d->cap, d->count + 1, sizeof *d->items);
    d->items[d->count++] = (Diagnostic){
        .file = file != NULL ? xstrdup(file) : NULL,
        .line = line,
        .column = column,
        .message = strbuf_take(&sb),
    };
}

void diag_add(Diagnostics *d, const char *file, int line, int column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_addv(d, file, line, column, fmt, ap);
    va_end(ap);
}

void diag_format(const Diagnostic *g, StrBuf *sb)
{
    if (g->file != NULL && g->line > 0)
        strbuf_appendf(sb, "%s:%d:%d: %s", g->file, g->line, g->column, g->message);
    else if (g->file != NULL)
        strbuf_appendf(sb, "%s: %s", g->file, g->message);
    else
        strbuf_append(sb, g->message);
}

void diag_print(const Diagnostics *d, FILE *out)
{
    StrBuf sb = {0};

    for (size_t i = 0; i < d->count; i++) {
        strbuf_reset(&sb);
        diag_format(&d->items[i], &sb);
        fprintf(out, "%s\n", sb.buf);
    }
    strbuf_done(&sb);
}

void diag_done(Diagnostics *d)
{
    for (size_t i = 0; i < d->count; i++) {
        free(d->items[i].file);
        free(d->items[i].message);
    }
    free(d->items);
    *d = (Diagnostics){0};
}

static void out_of_memory(size_t size)
{
    fprintf(stderr, "projector: out of memory (%zu bytes requested)\n", size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size != 0 ? size : 1);
    if (p == NULL)
        out_of_memory(size);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count != 0 ? count : 1, size != 0 ? size : 1);
    if (p == NULL)
        out_of_memory(count * size);
    return p;
}

void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size != 0 ? size : 1);
    if (p == NULL)
        out_of_memory(size);
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = xmalloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void xgrow(void **items, size_t *cap, size_t need, size_t elem_size)
{
    if (need <= *cap)
        return;
    size_t next = *cap != 0 ? *cap * 2 : 8;
    while (next < need)
        next *= 2;
    *items = xrealloc(*items, next * elem_size);
    *cap = next;
}

void strbuf_appendn(StrBuf *sb, const char *s, size_t n)
{
    xgrow((void **)&sb->buf, &sb->cap, sb->len + n + 1, 1);
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void strbuf_append(StrBuf *sb, const char *s)
{
    strbuf_appendn(sb, s, strlen(s));
}

void strbuf_appendf(StrBuf *sb, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        xgrow((void **)&sb->buf, &sb->cap, sb->len + (size_t)n + 1, 1);
        vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap2);
        sb->len += (size_t)n;
    }
    va_end(ap2);
}

void strbuf_reset(StrBuf *sb)
{
    sb->len = 0;
    if (sb->buf != NULL)
        sb->buf[0] = '\0';
}

char *strbuf_take(StrBuf *sb)
{
    char *p = sb->buf != NULL ? sb->buf : xstrdup("");
    *sb = (StrBuf){0};
    return p;
}

void strbuf_done(StrBuf *sb)
{
    free(sb->buf);
    *sb = (StrBuf){0};
}

static void append_control(StrBuf *sb, unsigned char c)
{
    switch (c) {
    case '\n':
        strbuf_append(sb, "\\n");
        break;
    case '\t':
        strbuf_append(sb, "\\t");
        break;
    case '\r':
        strbuf_append(sb, "\\r");
        break;
    default:
        strbuf_appendf(sb, "\\x%02x", c);
    }
}

void strbuf_append_array_element(StrBuf *sb, const char *v)
{
    if (v == NULL) {
        strbuf_append(sb, "NULL");
        return;
    }
    strbuf_append(sb, "\"");
    for (const char *p = v;;) {
        size_t run = strcspn(p, "\"\\");
        strbuf_appendn(sb, p, run);
        p += run;
        if (*p == '\0')
            break;
        strbuf_appendn(sb, "\\", 1);
        strbuf_appendn(sb, p++, 1);
    }
    strbuf_append(sb, "\"");
}

void strbuf_append_visible(StrBuf *sb, const char *s, bool keep_lines)
{
    const unsigned char *p = (const unsigned char *)s, *run = p;

    assert(s != NULL);
    for (; *p != '\0'; p++) {
        bool c0 = *p < 0x20 || *p == 0x7f;
        bool c1 = *p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f; /* U+0080..U+009F in UTF-8 */
        if (!c0 && !c1)
            continue;
        if (c0 && keep_lines && (*p == '\n' || *p == '\t'))
            continue;
        strbuf_appendn(sb, (const char *)run, (size_t)(p - run));
        if (c1)
            strbuf_appendf(sb, "\\u%04x", *++p);
        else
            append_control(sb, *p);
        run = p + 1;
    }
    strbuf_appendn(sb, (const char *)run, (size_t)(p - run));
}

bool sql_ident_is_safe(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

void sql_append_ident(StrBuf *sb, const char *s)
{
    assert(sql_ident_is_safe(s));
    strbuf_append(sb, "\"");
    strbuf_append(sb, s);
    strbuf_append(sb, "\"");
}

void sql_append_literal(StrBuf *sb, const char *s)
{
    strbuf_append(sb, "'");
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\'')
            strbuf_append(sb, "''");
        else
            strbuf_appendn(sb, p, 1);
    }
    strbuf_append(sb, "'");
}

int read_file(const char *path, char **ret_text, size_t *ret_len, PjError *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return pj_error_set(err, PJ_EIO, "could not open file \"%s\": %s", path, strerror(errno));
    StrBuf sb = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        strbuf_appendn(&sb, chunk, n);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        strbuf_done(&sb);
        return pj_error_set(err, PJ_EIO, "could not read file \"%s\"", path);
    }
    if (ret_len != NULL)
        *ret_len = sb.len;
    *ret_text = strbuf_take(&sb);
    return 0;
}

void format_wall_ms(int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

size_t utf8_length(const char *s)
{
    size_t n = 0;

    assert(s != NULL);
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

uint64_t fnv1a64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = seed != 0 ? seed : 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}
