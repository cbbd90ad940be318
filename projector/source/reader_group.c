/* reader_group.c - the consumer group's positions: the stream's last ID and counts, what a
 * group has read and has pending, claiming a dead consumer's entries, the lag sample, and
 * moving a group back to PostgreSQL's checkpoint. Commands through reader.c's helpers.
 */
#include "source/reader.h"
#include "source/reader_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Finds key in a flat [k, v, k, v...] array reply. */
static const redisReply *field_of(const redisReply *arr, const char *key)
{
    if (arr == NULL || arr->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < arr->elements; i += 2) {
        const redisReply *k = arr->element[i];
        if (k->type == REDIS_REPLY_STRING || k->type == REDIS_REPLY_STATUS)
            if (strcmp(k->str, key) == 0)
                return arr->element[i + 1];
    }
    return NULL;
}

static int reply_stream_id(const redisReply *v, StreamId *ret)
{
    if (v == NULL || (v->type != REDIS_REPLY_STRING && v->type != REDIS_REPLY_STATUS))
        return -PJ_EINVAL;
    return stream_id_parsen(v->str, v->len, ret);
}

/* One StreamId field of XINFO STREAM; a field Redis does not send reads as 0-0. */
static int stream_info_id(Reader *r, const char *stream, const char *field, StreamId *ret,
                          PjError *err)
{
    const char *argv[] = {"XINFO", "STREAM", stream};
    redisReply *reply = reader_command_ids(r, err, "read the stream info", 3, argv);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = 0;
    const redisReply *v = reply->type == REDIS_REPLY_ARRAY ? field_of(reply, field) : NULL;
    *ret = STREAM_ID_ZERO;
    if (reply->type == REDIS_REPLY_ERROR)
        rc = reader_reply_error(reply, err, "read the stream info");
    else if (reply->type != REDIS_REPLY_ARRAY || (v != NULL && reply_stream_id(v, ret) < 0))
        rc = pj_error_set(err, PJ_ETRANSIENT, "unexpected XINFO STREAM reply for \"%s\"", stream);
    freeReplyObject(reply);
    return rc;
}

int reader_last_id(Reader *r, const char *stream, StreamId *ret, PjError *err)
{
    return stream_info_id(r, stream, "last-generated-id", ret, err);
}

static bool reply_uint(const redisReply *v, uint64_t *ret)
{
    if (v == NULL || v->type != REDIS_REPLY_INTEGER || v->integer < 0)
        return false;
    *ret = (uint64_t)v->integer;
    return true;
}

static void group_entries_read(const redisReply *groups, const char *group, StreamCounts *c)
{
    for (size_t i = 0; groups->type == REDIS_REPLY_ARRAY && i < groups->elements; i++) {
        const redisReply *name = field_of(groups->element[i], "name");
        if (name != NULL && name->type == REDIS_REPLY_STRING && strcmp(name->str, group) == 0) {
            c->has_entries_read =
                reply_uint(field_of(groups->element[i], "entries-read"), &c->entries_read);
            c->has_lag = reply_uint(field_of(groups->element[i], "lag"), &c->lag);
            c->has_last_delivered =
                reply_stream_id(field_of(groups->element[i], "last-delivered-id"),
                                &c->last_delivered) == 0;
        }
    }
}

static int append_counts(Reader *r, const char *stream)
{
    const char *info[] = {"XINFO", "STREAM", stream};
    const char *groups[] = {"XINFO", "GROUPS", stream};
    if (redisAppendCommandArgv(r->ctx, 3, info, NULL) != REDIS_OK ||
        redisAppendCommandArgv(r->ctx, 3, groups, NULL) != REDIS_OK)
        return -PJ_ETRANSIENT;
    return 0;
}

/* After a read, only XINFO GROUPS: XINFO STREAM carries the stream's first and last
 * entries whole, which may be megabytes, on every read. */
int reader_append_group_counts(Reader *r, const char *stream)
{
    const char *groups[] = {"XINFO", "GROUPS", stream};
    return redisAppendCommandArgv(r->ctx, 3, groups, NULL) == REDIS_OK ? 0 : -PJ_ETRANSIENT;
}

/* Reads the reply of append_group_counts into *ret. */
int reader_read_group_counts(Reader *r, const char *group, StreamCounts *ret, PjError *err)
{
    StreamCounts c = {0};
    redisReply *groups = NULL;
    if (redisGetReply(r->ctx, (void **)&groups) != REDIS_OK || groups == NULL)
        return reader_context_error(r, err, "read the group info");
    int rc = 0;
    if (groups->type == REDIS_REPLY_ERROR)
        rc = reader_reply_error(groups, err, "read the group info");
    else
        group_entries_read(groups, group, &c);
    freeReplyObject(groups);
    if (rc == 0)
        *ret = c;
    return rc;
}

/* max-deleted-entry-id shows an XDEL gap, but only XINFO STREAM has it. It is fetched
 * unless the group has read everything there is (lag 0): then nothing was deleted ahead
 * of it either, since a deleted entry is counted as added but never as read. So a
 * caught-up read model pays nothing; one behind, or on a stream that ever saw an XDEL,
 * pays one more round trip per read. After every reply of the pipeline was read. */
int reader_complete_counts(Reader *r, const char *const *streams, size_t nstreams,
                           StreamCounts *counts, PjError *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nstreams; i++)
        if (!counts[i].has_entries_read || !counts[i].has_lag || counts[i].lag > 0)
            rc = stream_info_id(r, streams[i], "max-deleted-entry-id", &counts[i].max_deleted, err);
    return rc;
}

/* Reads the two replies append_counts asked for (the first through the cut). */
static int read_counts(Reader *r, const char *stream, const char *group, StreamCounts *ret,
                       PjError *err)
{
    StreamCounts c = {0};
    redisReply *info = NULL, *groups = NULL;
    if (reader_next_reply(r, &info, err, "read the stream info") < 0 ||
        reader_next_reply(r, &groups, err, "read the group info") < 0) {
        if (info != NULL)
            freeReplyObject(info);
        return -PJ_ETRANSIENT;
    }
    int rc = 0;
    if (info->type == REDIS_REPLY_ERROR)
        rc = reader_reply_error(info, err, "read the stream info");
    else if (info->type != REDIS_REPLY_ARRAY ||
             !reply_uint(field_of(info, "entries-added"), &c.added) ||
             !reply_uint(field_of(info, "length"), &c.length) ||
             (field_of(info, "max-deleted-entry-id") != NULL &&
              reply_stream_id(field_of(info, "max-deleted-entry-id"), &c.max_deleted) < 0))
        rc = pj_error_set(err, PJ_ETRANSIENT, "unexpected XINFO STREAM reply for \"%s\"", stream);
    else
        group_entries_read(groups, group, &c);
    freeReplyObject(info);
    freeReplyObject(groups);
    if (rc == 0)
        *ret = c;
    return rc;
}

int reader_stream_counts(Reader *r, const char *stream, const char *group, StreamCounts *ret,
                         PjError *err)
{
    int rc = reader_settle_acks(r, err);
    if (rc < 0)
        return rc;
    if (append_counts(r, stream) < 0)
        return reader_context_error(r, err, "read the stream info");
    respcut_begin_ids(&r->cut, r->acks_queued);
    if ((rc = reader_flush_and_cut(r, err, "read the stream info")) < 0)
        return rc;
    return read_counts(r, stream, group, ret, err);
}

#define CLAIM_COUNT "1000"      /* entries one XAUTOCLAIM takes over */
#define CLAIM_ROUNDS_MAX 100000 /* bounds the loop: 10^8 pending entries */

int reader_claim_all(Reader *r, const char *stream, const char *group, const char *consumer,
                     PjError *err)
{
    char cursor[STREAM_ID_BUFSZ] = "0-0";
    for (int rounds = 0; rounds < CLAIM_ROUNDS_MAX; rounds++) {
        const char *argv[] = {"XAUTOCLAIM", stream,  group,       consumer, "0",
                              cursor,       "COUNT", CLAIM_COUNT, "JUSTID"};
        redisReply *reply =
            reader_command(r, err, "claim pending entries", (int)ARRAY_SIZE(argv), argv, NULL);
        if (reply == NULL)
            return -PJ_ETRANSIENT;
        int rc = 0;
        StreamId next = STREAM_ID_ZERO;
        if (reply->type == REDIS_REPLY_ERROR)
            rc = reader_reply_error(reply, err, "claim pending entries");
        else if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
                 reply_stream_id(reply->element[0], &next) < 0)
            rc = pj_error_set(err, PJ_ETRANSIENT, "unexpected XAUTOCLAIM reply for \"%s\"", stream);
        freeReplyObject(reply);
        if (rc < 0)
            return rc;
        if (stream_id_is_zero(next))
            return 0;
        stream_id_format(next, cursor);
    }
    return 0;
}

/* entries_behind from XINFO GROUPS: lag (undelivered) + pending (delivered, not acked). */
static int group_behind(const redisReply *groups, const char *group, uint64_t *ret)
{
    if (groups->type != REDIS_REPLY_ARRAY)
        return -PJ_EINVAL;
    for (size_t i = 0; i < groups->elements; i++) {
        const redisReply *name = field_of(groups->element[i], "name");
        if (name == NULL || name->type != REDIS_REPLY_STRING || strcmp(name->str, group) != 0)
            continue;
        const redisReply *lag = field_of(groups->element[i], "lag");
        const redisReply *pending = field_of(groups->element[i], "pending");
        if (lag == NULL || lag->type != REDIS_REPLY_INTEGER || pending == NULL ||
            pending->type != REDIS_REPLY_INTEGER)
            return -PJ_EINVAL; /* lag is nil when Redis cannot tell (after XDEL/trim) */
        *ret = (uint64_t)lag->integer + (uint64_t)pending->integer;
        return 0;
    }
    return -PJ_ENOTFOUND;
}

/* Counts entries after applied with XRANGE, up to a bound: the fallback when XINFO
 * GROUPS has no lag. */
static int count_after(Reader *r, const char *stream, const char *from, uint64_t *ret, PjError *err)
{
    const char *argv[] = {"XRANGE", stream, from, "+", "COUNT", "100000"};
    redisReply *reply = reader_command_ids(r, err, "count stream entries", 6, argv);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = reply->type == REDIS_REPLY_ARRAY
                 ? 0
                 : reader_reply_error(reply, err, "count stream entries");
    if (rc == 0)
        *ret = reply->elements;
    freeReplyObject(reply);
    return rc;
}

int reader_sample(Reader *r, const char *stream, const char *group, StreamId applied,
                  StreamBacklog *ret, PjError *err)
{
    char from[STREAM_ID_BUFSZ + 1] = "(";
    stream_id_format(applied, from + 1);
    const char *first[] = {"XRANGE", stream, from, "+", "COUNT", "1"};
    const char *groups[] = {"XINFO", "GROUPS", stream};
    StreamBacklog s = {.oldest_unapplied_ms = -1};
    int rc = reader_last_id(r, stream, &s.last_entry, err);
    if (rc < 0)
        return rc;
    s.has_last_entry = true;
    redisReply *reply = reader_command_ids(r, err, "read the first unapplied entry", 6, first);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reader_entry_shape_ok(reply->element[0])) {
        StreamId id;
        if (reply_stream_id(reply->element[0]->element[0], &id) == 0)
            s.oldest_unapplied_ms = (int64_t)id.ms;
    }
    freeReplyObject(reply);
    if (s.oldest_unapplied_ms < 0) {
        s.entries_behind = 0;
        *ret = s;
        return 0;
    }
    reply = reader_command(r, err, "read the group info", 3, groups, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    rc = group_behind(reply, group, &s.entries_behind);
    freeReplyObject(reply);
    if (rc < 0 && (rc = count_after(r, stream, from, &s.entries_behind, err)) < 0)
        return rc;
    *ret = s;
    return 0;
}

char *reader_group_name(const char *readmodel)
{
    assert(readmodel != NULL && readmodel[0] != '\0');
    return xasprintf("projector:%s", readmodel);
}

#define ACK_BELOW_COUNT 1000 /* pending entries one XPENDING of a rewind lists */

/* Acknowledges one page of the group's pending entries at or below id; *ret_more when a
 * full page came back. */
static int ack_pending_page(Reader *r, const char *stream, const char *group, const char *id,
                            bool *ret_more, PjError *err)
{
    char count[16];
    snprintf(count, sizeof count, "%d", ACK_BELOW_COUNT);
    const char *argv[] = {"XPENDING", stream, group, "-", id, count};
    redisReply *reply =
        reader_command(r, err, "list pending entries", (int)ARRAY_SIZE(argv), argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = 0;
    size_t n = 0;
    const char **ids = xcalloc(reply->elements + 1, sizeof *ids);
    if (reply->type == REDIS_REPLY_ERROR)
        rc = reader_reply_error(reply, err, "list pending entries");
    else if (reply->type != REDIS_REPLY_ARRAY)
        rc = pj_error_set(err, PJ_ETRANSIENT, "unexpected XPENDING reply for \"%s\"", stream);
    for (size_t i = 0; rc == 0 && i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            rc = pj_error_set(err, PJ_ETRANSIENT, "unexpected XPENDING reply for \"%s\"", stream);
        else
            ids[n++] = e->element[0]->str;
    }
    if (rc == 0 && n > 0)
        rc = reader_ack(r, stream, group, ids, n, err);
    if (rc == 0)
        rc = reader_flush(r, err);
    *ret_more = rc == 0 && n == ACK_BELOW_COUNT;
    free(ids);
    freeReplyObject(reply);
    return rc;
}

int reader_rewind_group(Reader *r, const char *stream, const char *group, StreamId id,
                        int64_t entries_read, PjError *err)
{
    char idt[STREAM_ID_BUFSZ], read_s[24];
    assert(r != NULL && stream != NULL && group != NULL);
    stream_id_format(id, idt);
    snprintf(read_s, sizeof read_s, "%lld", (long long)entries_read);
    const char *argv[] = {"XGROUP", "SETID", stream, group, idt, "ENTRIESREAD", read_s};
    redisReply *reply = reader_command(r, err, "move the consumer group back",
                                       entries_read >= 0 ? 7 : 5, argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = reply->type == REDIS_REPLY_ERROR
                 ? reader_reply_error(reply, err, "move the consumer group back")
                 : 0;
    freeReplyObject(reply);
    bool more = rc == 0;
    for (int page = 0; rc == 0 && more && page < CLAIM_ROUNDS_MAX; page++)
        rc = ack_pending_page(r, stream, group, idt, &more, err);
    return rc;
}
