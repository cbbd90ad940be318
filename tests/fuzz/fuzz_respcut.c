/* fuzz_respcut.c - libFuzzer target: the input is what Redis might send on one connection,
 * after four bytes that choose how it is cut: the size of the pieces it arrives in, which
 * reply is the target, and the two limits. Owns nothing but the harness: it feeds the bytes
 * through a RespCut in the three ways the reader does (nothing to cut, an XREADGROUP's
 * limits, IDs only), checks that what passes when nothing is to be cut is byte for byte
 * what came, and hands what passes to hiredis's parser, then to the reader's batch when it
 * made one reply of the target.
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "source/reader.h"
#include "source/respcut.h"

#define FUZZ_CUT_REPLIES_MAX 16 /* replies taken from hiredis per input */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

/* Feeds data through c in pieces of chunk bytes into out; 0, or <0 when it was refused. */
static int cut(RespCut *c, const uint8_t *data, size_t size, size_t chunk, StrBuf *out)
{
    PjError err;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < size; i += chunk)
        rc =
            respcut_feed(c, (const char *)data + i, size - i < chunk ? size - i : chunk, out, &err);
    return rc;
}

/* Parses what passed; the target reply, if it is an XREADGROUP reply, becomes a batch. */
static void parse(const RespCut *c, const StrBuf *out)
{
    static const char *const streams[] = {"orders", "customers"};
    redisReader *rr = redisReaderCreate();
    void *reply = NULL;
    (void)redisReaderFeed(rr, out->buf, out->len);
    for (size_t k = 0; k < FUZZ_CUT_REPLIES_MAX; k++) {
        if (redisReaderGetReply(rr, &reply) != REDIS_OK || reply == NULL)
            break;
        if (k != c->target || c->ids_only) {
            freeReplyObject(reply);
            continue;
        }
        Batch b = {0};
        PjError err;
        if (reader_parse_batch(reply, streams, 2, c, &b, &err) == 0)
            for (size_t i = 0; i < b.count; i++)
                (void)entry_fields_cut(&b.entries[i].fields);
        batch_done(&b); /* owns the reply */
    }
    redisReaderFree(rr);
}

/* hiredis 0.14 allocates an array's elements as soon as it reads the count: a count in
 * the millions (which Redis does not send for these commands) is its allocation, not the
 * cut's, so such input is not parsed. Looks for "*" or "$" and seven digits. */
static bool hiredis_can_parse(const StrBuf *out)
{
    for (size_t i = 0; i + 7 < out->len; i++) {
        if (out->buf[i] != '*' && out->buf[i] != '$')
            continue;
        size_t d = 0;
        while (d < 7 && out->buf[i + 1 + d] >= '0' && out->buf[i + 1 + d] <= '9')
            d++;
        if (d == 7)
            return false;
    }
    return true;
}

/* Whether an entry was cut all the same: more fields than RESPCUT_FIELDS_MAX. */
static bool any_cut(const RespCut *c)
{
    for (size_t i = 0; i < c->nentries; i++)
        if (c->entries[i].oversize || c->entries[i].held)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    size_t chunk = 1 + data[0] % 64, target = data[1] % 3;
    size_t max_entry = 1 + (size_t)data[2] * 4, max_read = 1 + (size_t)data[3] * 16;
    data += 4;
    size -= 4;
    for (int mode = 0; mode < 3; mode++) {
        RespCut c = {0};
        StrBuf out = {0};
        if (mode == 0)
            respcut_begin(&c, target, SIZE_MAX, SIZE_MAX);
        else if (mode == 1)
            respcut_begin(&c, target, max_entry, max_read);
        else
            respcut_begin_ids(&c, target);
        int rc = cut(&c, data, size, chunk, &out);
        /* Nothing to cut: what passed is what came, but for an item not yet complete. */
        if (rc == 0 && mode == 0 && !any_cut(&c) && out.len > 0 &&
            (out.len > size || memcmp(out.buf, data, out.len) != 0))
            abort();
        if (rc == 0 && out.len > 0 && hiredis_can_parse(&out))
            parse(&c, &out);
        strbuf_done(&out);
        respcut_free(&c);
    }
    return 0;
}
