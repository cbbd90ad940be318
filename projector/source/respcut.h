/* respcut.h - one XREADGROUP reply cut down to a read's limits while its bytes arrive,
 * before hiredis builds it. Pure: bytes in, bytes out.
 *
 * hiredis holds a bulk string whole in its buffer, then copies it into the reply: an entry
 * of 100 MiB costs 200 MiB before anything can look at it, and the reply of one read holds
 * up to COUNT such entries per stream. It also allocates an array's element pointers as
 * soon as it reads the count. A RespCut sits between the socket and hiredis's reader and
 * rewrites the RESP of one reply (the target; those before and after it pass unchanged):
 *   - an entry whose names and values add up to more than max_entry_bytes is "oversize":
 *     from the field that crosses the limit on, each name or value reaches hiredis cut to
 *     its first RESPCUT_KEEP_BYTES (and those to RESPCUT_KEEP_MAX in all); an entry of
 *     more than RESPCUT_FIELDS_MAX names and values is oversize too, and only its first
 *     RESPCUT_FIELDS_KEEP reach hiredis;
 *   - an entry that begins once max_read_bytes of entry data have passed is "held": its ID
 *     passes, its fields reach hiredis as an empty array. Redis has delivered it; the
 *     reader leaves it pending and reads it again next. Each name and value counts as its
 *     length plus RESPCUT_FIELD_COST, what hiredis spends on it.
 * What was cut is recorded entry by entry, with every passed field's length in Redis. So a
 * reply never holds much more than max_read_bytes plus one entry of at most
 * max_entry_bytes. Bytes after the target reply pass unread, as they come.
 *
 * The replies of XRANGE and XINFO STREAM carry whole entries too, where only IDs and
 * counts are wanted: begun with respcut_begin_ids, a RespCut empties every array nested
 * two deep or more in the target (the fields of the entries in either).
 */
#ifndef PROJECTOR_RESPCUT_H
#define PROJECTOR_RESPCUT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/util.h"

#define RESPCUT_KEEP_BYTES 4096  /* kept of each field of an oversize entry */
#define RESPCUT_KEEP_MAX 65536   /* kept of all the cut fields of an oversize entry */
#define RESPCUT_FIELDS_MAX 65536 /* names and values of an entry, at most */
#define RESPCUT_FIELDS_KEEP 64   /* of those, kept of an entry that has more */
#define RESPCUT_FIELD_COST 64    /* bytes a name or value costs hiredis beyond its own */
#define RESPCUT_DEPTH_MAX 16     /* nesting of the replies it passes on */

/* One entry of the target reply, in reply order. */
typedef struct CutEntry {
    size_t bytes;     /* its names and values as Redis holds them, whole */
    size_t nwhole;    /* its names and values in Redis: twice its fields */
    size_t first;     /* its first name in RespCut.field_lens (names and values alternate) */
    size_t nfields;   /* names and values passed on */
    size_t kept;      /* bytes of its names and values passed on */
    size_t kept_over; /* of which from the field that crossed max_entry_bytes on */
    bool oversize;    /* over max_entry_bytes or RESPCUT_FIELDS_MAX: fields cut */
    bool held;        /* began past max_read_bytes: fields left out, to be read again */
} CutEntry;

/* An open array: how many of its elements are still to come, and how many of those pass
 * on (the rest, and what they hold, are read and dropped). */
typedef struct CutFrame {
    size_t left;
    size_t pass;
} CutFrame;

typedef struct RespCut {
    size_t target; /* the reply to cut: how many replies come before it */
    bool ids_only; /* respcut_begin_ids: arrays two deep and more pass empty */
    size_t max_entry_bytes;
    size_t max_read_bytes;
    /* what the target reply held */
    CutEntry *entries;
    size_t nentries, entries_cap;
    size_t *field_lens; /* the length in Redis of each name and value passed, in order */
    size_t nfields, fields_cap;
    size_t kept; /* entry data passed on so far, with RESPCUT_FIELD_COST per string */
    /* the parser, between two calls */
    int state;
    char type;                         /* of the item being read */
    bool drop;                         /* the item being read does not pass on */
    char head[24];                     /* the number after "$" or "*", up to its "\r" */
    size_t head_len;                   /* bytes in head */
    CutFrame stack[RESPCUT_DEPTH_MAX]; /* the open arrays */
    size_t depth;                      /* how many */
    size_t bulk_len;                   /* the bulk string being read: its length, */
    size_t bulk_pos;                   /* bytes of it (and of its "\r\n") read, */
    size_t bulk_keep;                  /* and how many of them pass on */
    size_t replies;                    /* replies complete */
} RespCut;

/* Starts on a new pipeline: the reply numbered target (0: the first) is cut to the limits.
 * Keeps the arrays of an earlier use. */
void respcut_begin(RespCut *c, size_t target, size_t max_entry_bytes, size_t max_read_bytes);
/* Starts on a new pipeline whose reply numbered target keeps only what is less than two
 * arrays deep (IDs, counts), for XRANGE and XINFO STREAM. */
void respcut_begin_ids(RespCut *c, size_t target);
/* Reads in[0 .. n) and appends to out what hiredis is to read. -PJ_ETRANSIENT with err set when
 * the bytes are not RESP (or nest deeper than RESPCUT_DEPTH_MAX). */
int respcut_feed(RespCut *c, const char *in, size_t n, StrBuf *out, PjError *err) PJ_MUSTCHECK;
/* True once the target reply has passed whole. */
bool respcut_done(const RespCut *c);
void respcut_free(RespCut *c);

#endif
