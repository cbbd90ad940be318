/* stream_id.c - Redis stream IDs. Pure: no I/O, no allocation. */
#include "base/stream_id.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int parse_u64(const char *s, size_t len, uint64_t *ret)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return -PJ_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -PJ_EINVAL;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -PJ_EINVAL;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

int stream_id_parsen(const char *s, size_t len, StreamId *ret)
{
    const char *dash = memchr(s, '-', len);
    StreamId id;
    if (dash == NULL)
        return -PJ_EINVAL;
    size_t mslen = (size_t)(dash - s);
    if (parse_u64(s, mslen, &id.ms) < 0 || parse_u64(dash + 1, len - mslen - 1, &id.seq) < 0)
        return -PJ_EINVAL;
    *ret = id;
    return 0;
}

int stream_id_parse(const char *s, StreamId *ret)
{
    return stream_id_parsen(s, strlen(s), ret);
}

int stream_id_cmp(StreamId a, StreamId b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    if (a.seq != b.seq)
        return a.seq < b.seq ? -1 : 1;
    return 0;
}

bool stream_id_is_zero(StreamId id)
{
    return id.ms == 0 && id.seq == 0;
}

char *stream_id_format(StreamId id, char buf[STREAM_ID_BUFSZ])
{
    snprintf(buf, STREAM_ID_BUFSZ, "%" PRIu64 "-%" PRIu64, id.ms, id.seq);
    return buf;
}

void stream_id_format_parts(StreamId id, char ms[STREAM_ID_PART_BUFSZ],
                            char seq[STREAM_ID_PART_BUFSZ])
{
    snprintf(ms, STREAM_ID_PART_BUFSZ, "%" PRIu64, id.ms);
    snprintf(seq, STREAM_ID_PART_BUFSZ, "%" PRIu64, id.seq);
}

size_t stream_id_lower_bound(size_t n, StreamId (*id_at)(const void *ctx, size_t i),
                             const void *ctx, StreamId id)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (stream_id_cmp(id_at(ctx, mid), id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    assert(lo <= n);
    return lo;
}
