/* respcut.c - the RESP of one XREADGROUP reply, rewritten as it arrives so that hiredis
 * never holds an entry over the limit, nor more entries than the read's budget.
 *
 * Owns the record of what it cut (entries, field lengths) and a small parser state that
 * carries over between calls: any byte may end a call. Knows RESP2's five types, as
 * hiredis 0.14 does. Levels in an XREADGROUP reply: the reply (0) holds [stream, entries]
 * pairs (1); a pair holds the name and the entries (2); the entries are [id, fields]
 * pairs (3); a pair holds the ID and the fields array (4), whose names and values are
 * level 5. An array's header is written out with the number of elements that pass; the
 * others are read and dropped, with everything they hold.
 */
#include "source/respcut.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LEVEL_ENTRY 3  /* an array that starts here in the target reply is an entry */
#define LEVEL_FIELDS 4 /* an array here is an entry's fields */
#define LEVEL_FIELD 5  /* a bulk string here is a field's name or value */
#define LEVEL_IDS 2    /* XRANGE, XINFO STREAM: an array from here on is entry content */

enum {
    CUT_TYPE,   /* expecting an item's type byte */
    CUT_SIMPLE, /* in a "+", "-" or ":" line: passed on up to its "\n" */
    CUT_HEAD,   /* in the number after "$" or "*" */
    CUT_BULK,   /* in a bulk string's bytes or its closing "\r\n" */
};

void respcut_begin(RespCut *c, size_t target, size_t max_entry_bytes, size_t max_read_bytes)
{
    assert(max_entry_bytes > 0 && max_read_bytes > 0);
    c->target = target;
    c->ids_only = false;
    c->max_entry_bytes = max_entry_bytes;
    c->max_read_bytes = max_read_bytes;
    c->nentries = c->nfields = c->kept = 0;
    c->state = CUT_TYPE;
    c->drop = false;
    c->head_len = c->depth = c->replies = 0;
}

void respcut_begin_ids(RespCut *c, size_t target)
{
    respcut_begin(c, target, SIZE_MAX, SIZE_MAX);
    c->ids_only = true;
}

bool respcut_done(const RespCut *c)
{
    return c->replies > c->target;
}

void respcut_free(RespCut *c)
{
    free(c->entries);
    free(c->field_lens);
    *c = (RespCut){0};
}

static bool in_target(const RespCut *c)
{
    return c->replies == c->target;
}

static int bad_resp(PjError *err, const char *what)
{
    return pj_error_set(err, PJ_ETRANSIENT, "unexpected bytes from Redis: %s", what);
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* The entry the reply is in, in the target reply of a read; NULL elsewhere. */
static CutEntry *current_entry(RespCut *c)
{
    if (!in_target(c) || c->ids_only || c->depth <= LEVEL_ENTRY || c->nentries == 0)
        return NULL;
    return &c->entries[c->nentries - 1];
}

/* An item is complete: it counts in its array, and so may complete that array. */
static void item_done(RespCut *c)
{
    c->drop = false;
    for (;;) {
        if (c->depth == 0) {
            c->replies++;
            return;
        }
        if (--c->stack[c->depth - 1].left > 0)
            return;
        c->depth--;
    }
}

/* An item begins (its type byte read): it passes on unless its array passes no more. */
static void item_begin(RespCut *c)
{
    CutFrame *parent = c->depth > 0 ? &c->stack[c->depth - 1] : NULL;
    c->drop = parent != NULL && parent->pass == 0;
    if (parent != NULL && parent->pass > 0)
        parent->pass--;
}

/* An entry begins; it is held when the read has taken its budget already. */
static void entry_begin(RespCut *c)
{
    xgrow((void **)&c->entries, &c->entries_cap, c->nentries + 1, sizeof *c->entries);
    c->entries[c->nentries++] = (CutEntry){
        .first = c->nfields,
        .held = c->kept >= c->max_read_bytes,
    };
}

/* A name or value of len bytes passing on in entry e: records it, and returns how many of
 * its bytes pass. */
static size_t field_keep(RespCut *c, CutEntry *e, size_t len)
{
    xgrow((void **)&c->field_lens, &c->fields_cap, c->nfields + 1, sizeof *c->field_lens);
    c->field_lens[c->nfields++] = len;
    e->nfields++;
    e->bytes += len;
    e->oversize = e->oversize || e->bytes > c->max_entry_bytes;
    size_t keep = len;
    if (e->oversize) {
        size_t room = e->kept_over < RESPCUT_KEEP_MAX ? RESPCUT_KEEP_MAX - e->kept_over : 0;
        keep = min_size(min_size(len, RESPCUT_KEEP_BYTES), room);
        e->kept_over += keep;
    }
    e->kept += keep;
    c->kept += keep + RESPCUT_FIELD_COST;
    return keep;
}

/* How many of the n elements of the array now opening pass on. */
static size_t array_pass(RespCut *c, size_t n)
{
    if (!in_target(c))
        return n;
    if (c->ids_only)
        return c->depth >= LEVEL_IDS ? 0 : n;
    CutEntry *e = current_entry(c);
    if (e == NULL || c->depth != LEVEL_FIELDS)
        return n;
    e->nwhole = n;
    if (e->held)
        return 0;
    if (n > RESPCUT_FIELDS_MAX) {
        e->oversize = true;
        return RESPCUT_FIELDS_KEEP;
    }
    return n;
}

/* The number in c->head: a length or a count, -1 for nil. */
static int head_number(const RespCut *c, long long *ret)
{
    if (c->head_len == 2 && memcmp(c->head, "-1", 2) == 0) {
        *ret = -1;
        return 0;
    }
    if (c->head_len == 0 || c->head_len > 18 || (c->head_len > 1 && c->head[0] == '0'))
        return -1; /* Redis writes no leading zeros: what is passed on is what came */
    long long v = 0;
    for (size_t i = 0; i < c->head_len; i++) {
        if (c->head[i] < '0' || c->head[i] > '9')
            return -1;
        v = v * 10 + (c->head[i] - '0');
    }
    *ret = v;
    return 0;
}

/* "*N": written with the elements that pass; opens an array unless it is empty or nil. */
static int array_head(RespCut *c, long long n, StrBuf *out, PjError *err)
{
    size_t pass = n > 0 && !c->drop ? array_pass(c, (size_t)n) : 0;
    if (!c->drop && n <= 0)
        strbuf_appendf(out, "*%lld\r\n", n);
    else if (!c->drop)
        strbuf_appendf(out, "*%zu\r\n", pass);
    if (n <= 0) {
        item_done(c);
        return 0;
    }
    if (c->depth == RESPCUT_DEPTH_MAX)
        return bad_resp(err, "a reply nested too deep");
    c->stack[c->depth++] = (CutFrame){.left = (size_t)n, .pass = pass};
    c->drop = false;
    return 0;
}

/* "$L": decides how much of the string passes on, and says so in a new header. A name or
 * value that does not pass still counts in its entry's size. */
static void bulk_head(RespCut *c, long long len, StrBuf *out)
{
    if (len < 0) {
        if (!c->drop)
            strbuf_append(out, "$-1\r\n");
        item_done(c);
        return;
    }
    c->bulk_len = (size_t)len;
    c->bulk_pos = 0;
    c->bulk_keep = c->drop ? 0 : c->bulk_len;
    CutEntry *e = c->depth == LEVEL_FIELD ? current_entry(c) : NULL;
    if (e != NULL && c->drop)
        e->bytes += c->bulk_len;
    else if (e != NULL)
        c->bulk_keep = field_keep(c, e, c->bulk_len);
    if (!c->drop)
        strbuf_appendf(out, "$%zu\r\n", c->bulk_keep);
    c->state = CUT_BULK;
}

/* The end of a "$" or "*" header: *i is past its "\n". */
static int head_done(RespCut *c, StrBuf *out, PjError *err)
{
    long long n;
    if (c->head_len == 0 || c->head[c->head_len - 1] != '\r')
        return bad_resp(err, "a length without \"\\r\\n\"");
    c->head_len--;
    if (head_number(c, &n) < 0)
        return bad_resp(err, "an invalid length");
    c->state = CUT_TYPE;
    if (c->type == '*')
        return array_head(c, n, out, err);
    bulk_head(c, n, out);
    return 0;
}

static int feed_type(RespCut *c, char ch, StrBuf *out, PjError *err)
{
    c->type = ch;
    c->head_len = 0;
    item_begin(c);
    if (ch == '+' || ch == '-' || ch == ':') {
        if (!c->drop)
            strbuf_appendn(out, &ch, 1);
        c->state = CUT_SIMPLE;
        return 0;
    }
    if (ch != '$' && ch != '*')
        return bad_resp(err, "an unknown reply type");
    if (ch == '*' && !c->drop && in_target(c) && !c->ids_only && c->depth == LEVEL_ENTRY)
        entry_begin(c);
    c->state = CUT_HEAD;
    return 0;
}

/* Passes a simple line on, up to and with its "\n"; returns the bytes used. */
static size_t feed_simple(RespCut *c, const char *in, size_t n, StrBuf *out)
{
    const char *nl = memchr(in, '\n', n);
    size_t used = nl != NULL ? (size_t)(nl - in) + 1 : n;
    if (!c->drop)
        strbuf_appendn(out, in, used);
    if (nl != NULL) {
        c->state = CUT_TYPE;
        item_done(c);
    }
    return used;
}

/* Gathers the header's bytes; returns the bytes used, or -1 on a header too long. */
static long feed_head(RespCut *c, const char *in, size_t n, bool *ret_complete)
{
    const char *nl = memchr(in, '\n', n);
    size_t take = nl != NULL ? (size_t)(nl - in) : n;
    *ret_complete = nl != NULL;
    if (c->head_len + take > sizeof c->head)
        return -1;
    memcpy(c->head + c->head_len, in, take);
    c->head_len += take;
    return (long)(take + (nl != NULL));
}

/* Passes on the kept part of a bulk string, skips the rest, checks its "\r\n"; returns
 * the bytes used, or -1 when the string does not end with "\r\n". */
static long feed_bulk(RespCut *c, const char *in, size_t n, StrBuf *out)
{
    size_t used = 0;
    if (c->bulk_pos < c->bulk_len) {
        used = min_size(n, c->bulk_len - c->bulk_pos);
        if (c->bulk_pos < c->bulk_keep)
            strbuf_appendn(out, in, min_size(used, c->bulk_keep - c->bulk_pos));
        c->bulk_pos += used;
    }
    for (; used < n && c->bulk_pos < c->bulk_len + 2; used++, c->bulk_pos++)
        if (in[used] != (c->bulk_pos == c->bulk_len ? '\r' : '\n'))
            return -1;
    if (c->bulk_pos == c->bulk_len + 2) {
        if (!c->drop)
            strbuf_append(out, "\r\n");
        c->state = CUT_TYPE;
        item_done(c);
    }
    return (long)used;
}

int respcut_feed(RespCut *c, const char *in, size_t n, StrBuf *out, PjError *err)
{
    strbuf_append(out, "");
    for (size_t i = 0; i < n;) {
        /* Past the target, bytes pass as they come: the caller may stop feeding at any
         * byte and let hiredis read the rest itself, so nothing may be withheld. */
        if (respcut_done(c)) {
            strbuf_appendn(out, in + i, n - i);
            return 0;
        }
        long used = 0;
        bool complete = false;
        int rc = 0;
        switch (c->state) {
        case CUT_TYPE:
            rc = feed_type(c, in[i], out, err);
            used = 1;
            break;
        case CUT_SIMPLE:
            used = (long)feed_simple(c, in + i, n - i, out);
            break;
        case CUT_HEAD:
            used = feed_head(c, in + i, n - i, &complete);
            if (used < 0)
                return bad_resp(err, "a length too long");
            if (complete)
                rc = head_done(c, out, err);
            break;
        default:
            used = feed_bulk(c, in + i, n - i, out);
            if (used < 0)
                return bad_resp(err, "a string without \"\\r\\n\" after it");
            break;
        }
        if (rc < 0)
            return rc;
        i += (size_t)used;
    }
    return 0;
}
