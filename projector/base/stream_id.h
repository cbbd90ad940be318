/* stream_id.h - Redis stream entry IDs ("<ms>-<seq>"): parse, compare, format. Pure. */
#ifndef PROJECTOR_STREAM_ID_H
#define PROJECTOR_STREAM_ID_H

#include "base/util.h"

typedef struct StreamId {
    uint64_t ms;
    uint64_t seq;
} StreamId;

/* Large enough for "18446744073709551615-18446744073709551615". */
#define STREAM_ID_BUFSZ 48

static const StreamId STREAM_ID_ZERO = {0, 0};

/* Parses exactly "<ms>-<seq>" (both decimal, no sign, no spaces, no overflow).
 * Returns -PJ_EINVAL for anything else. */
int stream_id_parse(const char *s, StreamId *ret) PJ_MUSTCHECK;
/* Same for a counted string that need not be NUL-terminated. */
int stream_id_parsen(const char *s, size_t len, StreamId *ret) PJ_MUSTCHECK;
int stream_id_cmp(StreamId a, StreamId b);
bool stream_id_is_zero(StreamId id);
/* Writes "<ms>-<seq>" into buf and returns buf. */
char *stream_id_format(StreamId id, char buf[STREAM_ID_BUFSZ]);

/* Large enough for one decimal uint64_t. */
#define STREAM_ID_PART_BUFSZ 21

/* Writes the two parts as decimal text, as statement parameters carry them. */
void stream_id_format_parts(StreamId id, char ms[STREAM_ID_PART_BUFSZ],
                            char seq[STREAM_ID_PART_BUFSZ]);

/* The index of the first of n ascending IDs that is not below id (n when none is);
 * id_at(ctx, i) gives the i-th. The sequence is the caller's: an array, a ring. */
size_t stream_id_lower_bound(size_t n, StreamId (*id_at)(const void *ctx, size_t i),
                             const void *ctx, StreamId id);

#endif
