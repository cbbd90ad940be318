/* util.h - allocation that never returns NULL, error codes, diagnostics, string buffers.
 *
 * Everything here is pure and thread-safe. The x* allocators abort with the requested
 * size when memory runs out: a daemon that cannot allocate cannot make progress, and this
 * removes NULL checks from every caller.
 */
#ifndef PROJECTOR_UTIL_H
#define PROJECTOR_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PJ_MUSTCHECK __attribute__((warn_unused_result))
#define PJ_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The process's exit codes, as the product promises them (0 is EXIT_SUCCESS). */
#define PJ_EXIT_RUNTIME 1 /* a runtime failure */
#define PJ_EXIT_USAGE 2   /* a usage or configuration error */

/* Error codes; functions return 0 or the negated code. */
enum {
    PJ_OK = 0,
    PJ_EINVAL = 1, /* bad input: configuration, YAML, event data */
    PJ_ENOTFOUND,  /* a named thing does not exist */
    PJ_ERANGE,     /* a value is outside its bounds */
    PJ_EIO,        /* file or socket failure */
    PJ_ETRANSIENT, /* a server fault that a later attempt may survive */
    PJ_EPERMANENT, /* an event that can never be applied */
    PJ_ETIMEDOUT,  /* a bounded wait ran out */
    PJ_ESTOPPED,   /* shutdown was requested while waiting */
};

/* One error: its code, its message, and the SQLSTATE when PostgreSQL gave one. Positions in
 * files travel as Diagnostics instead. */
typedef struct PjError {
    int code;
    char message[1024];
    char sqlstate[6]; /* five characters and NUL when the error came from PostgreSQL */
} PjError;

/* Formats the message into err (which may be NULL) and returns -code. */
int pj_error_set(PjError *err, int code, const char *fmt, ...) PJ_PRINTF(3, 4);
/* Puts the formatted text and ": " before err's message, or " " and the text after it,
 * keeping its code and SQLSTATE (err may be NULL). Both return -err->code. */
int pj_error_prefix(PjError *err, const char *fmt, ...) PJ_PRINTF(2, 3);
int pj_error_suffix(PjError *err, const char *fmt, ...) PJ_PRINTF(2, 3);

/* A growable NUL-terminated string. Zero-initialise, append, then take or free buf. */
typedef struct StrBuf {
    char *buf;
    size_t len;
    size_t cap;
} StrBuf;

void strbuf_append(StrBuf *sb, const char *s);
void strbuf_appendn(StrBuf *sb, const char *s, size_t n);
void strbuf_appendf(StrBuf *sb, const char *fmt, ...) PJ_PRINTF(2, 3);
void strbuf_reset(StrBuf *sb);
/* Returns the buffer (never NULL, caller frees) and leaves sb empty. */
char *strbuf_take(StrBuf *sb);
void strbuf_done(StrBuf *sb);

/* A list of diagnostics printed as "file:line:column: message", compiler style. */
typedef struct Diagnostic {
    char *file; /* owned */
    int line;
    int column;
    char *message; /* owned */
} Diagnostic;

typedef struct Diagnostics {
    Diagnostic *items;
    size_t count;
    size_t cap;
} Diagnostics;

/* Appends one diagnostic; file may be NULL. Copies everything it is given. */
void diag_add(Diagnostics *d, const char *file, int line, int column, const char *fmt, ...)
    PJ_PRINTF(5, 6);
void diag_addv(Diagnostics *d, const char *file, int line, int column, const char *fmt, va_list ap)
    PJ_PRINTF(5, 0);
/* Appends g as "file:line:column: message" ("file: message" without a position). */
void diag_format(const Diagnostic *g, StrBuf *sb);
/* Prints every diagnostic, one a line, in the order added. */
void diag_print(const Diagnostics *d, FILE *out);
void diag_done(Diagnostics *d);

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PJ_PRINTF(1, 2);

/* Grows *items (of *cap elements of elem_size) so that it holds at least need elements. */
void xgrow(void **items, size_t *cap, size_t need, size_t elem_size);

/* Appends s with every control character a terminal would obey written out instead: C0
 * and DEL as \n, \t, \r or \xHH, C1 (U+0080..U+009F) as \uHHHH. With keep_lines, line
 * breaks and tabs stay as they are (for text that is laid out in lines already). For event
 * data and server messages on their way to a terminal or a log. */
void strbuf_append_visible(StrBuf *sb, const char *s, bool keep_lines);
/* Appends v as an element of a PostgreSQL array literal: NULL, or double-quoted with
 * backslash and double quote escaped. */
void strbuf_append_array_element(StrBuf *sb, const char *v);

/* True when s is a safe SQL identifier: [a-z_][a-z0-9_]*, at most 63 bytes. */
bool sql_ident_is_safe(const char *s);
/* Appends s as a double-quoted identifier; s must pass sql_ident_is_safe. */
void sql_append_ident(StrBuf *sb, const char *s);
/* Appends s as a single-quoted SQL string literal (standard_conforming_strings). */
void sql_append_literal(StrBuf *sb, const char *s);

/* Reads a whole file; returns 0 or -PJ_EIO with err set. *ret_len may be NULL. */
int read_file(const char *path, char **ret_text, size_t *ret_len, PjError *err) PJ_MUSTCHECK;

/* Formats epoch milliseconds as "2026-01-15T10:30:00.123Z" into buf (at least 32 bytes). */
void format_wall_ms(int64_t ms, char *buf, size_t size);

/* Characters (code points) of a NUL-terminated UTF-8 string: bytes that do not continue a
 * sequence. Invalid UTF-8 counts as it happens to fall. */
size_t utf8_length(const char *s);

/* 64-bit FNV-1a, for fingerprints (not for security). */
uint64_t fnv1a64(const void *data, size_t len, uint64_t seed);

#endif
