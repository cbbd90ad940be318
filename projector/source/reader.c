/* reader.c - hiredis calls for consumer groups, with every reply shape checked.
 *
 * Owns one redisContext per Reader. Errors leave the context unusable from the caller's
 * point of view: it frees the Reader and reconnects. Replies are freed here except a
 * batch's, which the Batch owns until batch_reset.
 */
#include "source/reader.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct Reader {
    redisContext *ctx;
    size_t acks_queued; /* XACKs sent (or buffered) whose replies are not read yet */
};

static int context_error(Reader *r, PjError *err, const char *what)
{
    const char *detail = r->ctx != NULL && r->ctx->err ? r->ctx->errstr : "no reply";
    return pj_error_set(err, PJ_ETRANSIENT, "could not %s: %s", what, detail);
}

static int reply_error(const redisReply *reply, PjError *err, const char *what);

/* Reads the replies of the queued XACKs (sending them first if they are still buffered);
 * they come before the reply of any command appended after them. */
static int settle_acks(Reader *r, PjError *err)
{
    int rc = 0;
    for (; r->acks_queued > 0; r->acks_queued--) {
        redisReply *reply = NULL;
        if (redisGetReply(r->ctx, (void **)&reply) != REDIS_OK || reply == NULL)
            return context_error(r, err, "acknowledge entries");
        if (rc == 0 && reply->type == REDIS_REPLY_ERROR)
            rc = reply_error(reply, err, "acknowledge entries");
        freeReplyObject(reply);
    }
    return rc;
}

int reader_flush(Reader *r, PjError *err)
{
    return settle_acks(r, err);
}

/* Sends argv and returns the reply, or NULL with err set (transient). */
static redisReply *command(Reader *r, PjError *err, const char *what, int argc, const char **argv,
                           const size_t *lens)
{
    if (settle_acks(r, err) < 0)
        return NULL;
    redisReply *reply = redisCommandArgv(r->ctx, argc, argv, lens);
    if (reply == NULL) {
        context_error(r, err, what);
        return NULL;
    }
    return reply;
}

/* Classifies an error reply: WRONGTYPE is the data's fault, the rest is transient. */
static int reply_error(const redisReply *reply, PjError *err, const char *what)
{
    int code = strncmp(reply->str, "WRONGTYPE", 9) == 0 ? PJ_EPERMANENT : PJ_ETRANSIENT;
    return pj_error_set(err, code, "could not %s: %s", what, reply->str);
}

static struct timeval tv_ms(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

static int simple(Reader *r, PjError *err, const char *what, int argc, const char **argv)
{
    redisReply *reply = command(r, err, what, argc, argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = reply->type == REDIS_REPLY_ERROR ? reply_error(reply, err, what) : 0;
    freeReplyObject(reply);
    return rc;
}

int reader_connect(const RedisAddr *addr, int connect_timeout_ms, int command_timeout_ms,
                   Reader **ret, PjError *err)
{
    Reader *r = xcalloc(1, sizeof *r);
    r->ctx = redisConnectWithTimeout(addr->host, addr->port, tv_ms(connect_timeout_ms));
    if (r->ctx == NULL || r->ctx->err) {
        pj_error_set(err, PJ_ETRANSIENT, "could not connect to Redis at %s:%d: %s", addr->host,
                     addr->port, r->ctx != NULL ? r->ctx->errstr : "out of memory");
        reader_free(r);
        return -PJ_ETRANSIENT;
    }
    redisSetTimeout(r->ctx, tv_ms(command_timeout_ms));
    int rc = 0;
    if (addr->password != NULL) {
        const char *argv[3] = {"AUTH", addr->user != NULL ? addr->user : addr->password,
                               addr->password};
        rc = simple(r, err, "authenticate to Redis", addr->user != NULL ? 3 : 2, argv);
    }
    if (rc == 0 && addr->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", addr->db);
        const char *argv[2] = {"SELECT", db};
        rc = simple(r, err, "select the Redis database", 2, argv);
    }
    if (rc < 0) {
        reader_free(r);
        return -PJ_ETRANSIENT;
    }
    *ret = r;
    return 0;
}

Reader *reader_free(Reader *r)
{
    if (r != NULL) {
        if (r->ctx != NULL)
            redisFree(r->ctx);
        free(r);
    }
    return NULL;
}

int reader_ensure_group(Reader *r, const char *stream, const char *group, bool from_beginning,
                        bool *ret_created, PjError *err)
{
    const char *argv[] = {"XGROUP",  "CREATE", stream, group, from_beginning ? "0" : "$",
                          "MKSTREAM"};
    redisReply *reply = command(r, err, "create the consumer group", 6, argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = 0;
    *ret_created = true;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "BUSYGROUP", 9) == 0)
            *ret_created = false;
        else
            rc = reply_error(reply, err, "create the consumer group");
    }
    freeReplyObject(reply);
    return rc;
}

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
    redisReply *reply = command(r, err, "read the stream info", 3, argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = 0;
    const redisReply *v = reply->type == REDIS_REPLY_ARRAY ? field_of(reply, field) : NULL;
    *ret = STREAM_ID_ZERO;
    if (reply->type == REDIS_REPLY_ERROR)
        rc = reply_error(reply, err, "read the stream info");
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
static int append_group_counts(Reader *r, const char *stream)
{
    const char *groups[] = {"XINFO", "GROUPS", stream};
    return redisAppendCommandArgv(r->ctx, 3, groups, NULL) == REDIS_OK ? 0 : -PJ_ETRANSIENT;
}

/* Reads the reply of append_group_counts into *ret. */
static int read_group_counts(Reader *r, const char *group, StreamCounts *ret, PjError *err)
{
    StreamCounts c = {0};
    redisReply *groups = NULL;
    if (redisGetReply(r->ctx, (void **)&groups) != REDIS_OK || groups == NULL)
        return context_error(r, err, "read the group info");
    int rc = 0;
    if (groups->type == REDIS_REPLY_ERROR)
        rc = reply_error(groups, err, "read the group info");
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
static int complete_counts(Reader *r, const char *const *streams, size_t nstreams,
                           StreamCounts *counts, PjError *err)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < nstreams; i++)
        if (!counts[i].has_entries_read || !counts[i].has_lag || counts[i].lag > 0)
            rc = stream_info_id(r, streams[i], "max-deleted-entry-id", &counts[i].max_deleted, err);
    return rc;
}

/* Reads the two replies append_counts asked for. */
static int read_counts(Reader *r, const char *stream, const char *group, StreamCounts *ret,
                       PjError *err)
{
    StreamCounts c = {0};
    redisReply *info = NULL, *groups = NULL;
    if (redisGetReply(r->ctx, (void **)&info) != REDIS_OK ||
        redisGetReply(r->ctx, (void **)&groups) != REDIS_OK) {
        if (info != NULL)
            freeReplyObject(info);
        return context_error(r, err, "read the stream info");
    }
    int rc = 0;
    if (info->type == REDIS_REPLY_ERROR)
        rc = reply_error(info, err, "read the stream info");
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
    int rc = settle_acks(r, err);
    if (rc < 0)
        return rc;
    if (append_counts(r, stream) < 0)
        return context_error(r, err, "read the stream info");
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
            command(r, err, "claim pending entries", (int)ARRAY_SIZE(argv), argv, NULL);
        if (reply == NULL)
            return -PJ_ETRANSIENT;
        int rc = 0;
        StreamId next = STREAM_ID_ZERO;
        if (reply->type == REDIS_REPLY_ERROR)
            rc = reply_error(reply, err, "claim pending entries");
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

void batch_reset(Batch *b)
{
    if (b->reply != NULL)
        freeReplyObject(b->reply);
    b->reply = NULL;
    b->count = 0;
}

void batch_done(Batch *b)
{
    batch_reset(b);
    free(b->entries);
    free(b->strs);
    free(b->lens);
    *b = (Batch){0};
}

/* Counts the strings the batch needs, so the arrays are sized before pointers into
 * them are handed out. */
static size_t count_fields(const redisReply *reply)
{
    size_t n = 0;
    for (size_t s = 0; s < reply->elements; s++) {
        const redisReply *entries = reply->element[s]->element[1];
        for (size_t e = 0; e < entries->elements; e++) {
            const redisReply *fields = entries->element[e]->element[1];
            if (fields->type == REDIS_REPLY_ARRAY)
                n += fields->elements;
        }
    }
    return n;
}

static bool entry_shape_ok(const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return false;
    const redisReply *f = e->element[1];
    if (f->type == REDIS_REPLY_NIL)
        return true;
    if (f->type != REDIS_REPLY_ARRAY || f->elements % 2 != 0)
        return false;
    for (size_t i = 0; i < f->elements; i++)
        if (f->element[i]->type != REDIS_REPLY_STRING)
            return false;
    return true;
}

static bool read_shape_ok(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t s = 0; s < reply->elements; s++) {
        const redisReply *sr = reply->element[s];
        if (sr->type != REDIS_REPLY_ARRAY || sr->elements != 2 ||
            sr->element[0]->type != REDIS_REPLY_STRING || sr->element[1]->type != REDIS_REPLY_ARRAY)
            return false;
        for (size_t e = 0; e < sr->element[1]->elements; e++)
            if (!entry_shape_ok(sr->element[1]->element[e]))
                return false;
    }
    return true;
}

static int stream_index(const char *const *streams, size_t n, const redisReply *name)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(streams[i]) == name->len && memcmp(streams[i], name->str, name->len) == 0)
            return (int)i;
    return -1;
}

/* Appends one entry; its field arrays live in b->strs/b->lens at *slot. */
static int add_entry(Batch *b, size_t stream, const redisReply *e, size_t *slot)
{
    Entry entry = {.stream = stream};
    if (stream_id_parsen(e->element[0]->str, e->element[0]->len, &entry.id) < 0)
        return -PJ_EINVAL;
    stream_id_format(entry.id, entry.id_text);
    const redisReply *f = e->element[1];
    entry.deleted = f->type == REDIS_REPLY_NIL;
    size_t n = entry.deleted ? 0 : f->elements / 2;
    /* names in [slot, slot+n), values in [slot+n, slot+2n) */
    for (size_t i = 0; i < n; i++) {
        b->strs[*slot + i] = f->element[2 * i]->str;
        b->lens[*slot + i] = f->element[2 * i]->len;
        b->strs[*slot + n + i] = f->element[2 * i + 1]->str;
        b->lens[*slot + n + i] = f->element[2 * i + 1]->len;
    }
    entry.fields = (EntryFields){
        .count = n,
        .names = b->strs + *slot,
        .name_lens = b->lens + *slot,
        .values = b->strs + *slot + n,
        .value_lens = b->lens + *slot + n,
    };
    *slot += 2 * n;
    xgrow((void **)&b->entries, &b->cap, b->count + 1, sizeof *b->entries);
    b->entries[b->count++] = entry;
    return 0;
}

static int fill_batch(Batch *b, const char *const *streams, size_t nstreams, PjError *err)
{
    const redisReply *reply = b->reply;
    size_t need = count_fields(reply);
    if (need > b->strs_cap) {
        b->strs = xrealloc(b->strs, need * sizeof *b->strs);
        b->lens = xrealloc(b->lens, need * sizeof *b->lens);
        b->strs_cap = need;
    }
    size_t slot = 0;
    for (size_t s = 0; s < reply->elements; s++) {
        const redisReply *sr = reply->element[s];
        int idx = stream_index(streams, nstreams, sr->element[0]);
        if (idx < 0)
            return pj_error_set(err, PJ_ETRANSIENT, "XREADGROUP returned an unknown stream");
        for (size_t e = 0; e < sr->element[1]->elements; e++)
            if (add_entry(b, (size_t)idx, sr->element[1]->element[e], &slot) < 0)
                return pj_error_set(err, PJ_ETRANSIENT, "XREADGROUP returned an invalid entry ID");
    }
    return 0;
}

/* XREADGROUP GROUP g c COUNT n BLOCK ms STREAMS: the arguments besides the streams and IDs. */
#define READ_ARGS_FIXED 9

/* Builds the XREADGROUP arguments; returns argc. argv must hold READ_ARGS_FIXED + 2 * nstreams. */
static int read_args(const char **argv, const char *group, const char *consumer,
                     const char *const *streams, const char *const *ids, size_t nstreams,
                     const char *count_s, const char *block_s)
{
    int argc = 0;
    bool all_new = true;
    for (size_t i = 0; i < nstreams; i++)
        all_new = all_new && ids[i] == NULL;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = group;
    argv[argc++] = consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count_s;
    if (all_new && block_s != NULL) {
        argv[argc++] = "BLOCK";
        argv[argc++] = block_s;
    }
    argv[argc++] = "STREAMS";
    for (size_t i = 0; i < nstreams; i++)
        argv[argc++] = streams[i];
    for (size_t i = 0; i < nstreams; i++)
        argv[argc++] = ids[i] != NULL ? ids[i] : ">";
    assert((size_t)argc <= READ_ARGS_FIXED + 2 * nstreams);
    return argc;
}

int reader_read(Reader *r, const char *group, const char *consumer, const char *const *streams,
                const char *const *ids, size_t nstreams, int count, int block_ms, Batch *ret,
                StreamCounts *counts, PjError *err)
{
    assert(r != NULL && r->ctx != NULL && group != NULL && consumer != NULL);
    assert(nstreams > 0 && streams != NULL && ids != NULL && count > 0);
    const char **argv = xmalloc((READ_ARGS_FIXED + 2 * nstreams) * sizeof *argv);
    char count_s[16], block_s[16];
    snprintf(count_s, sizeof count_s, "%d", count);
    snprintf(block_s, sizeof block_s, "%d", block_ms);
    int argc = read_args(argv, group, consumer, streams, ids, nstreams, count_s,
                         block_ms >= 0 ? block_s : NULL);
    /* The XINFO commands queue behind XREADGROUP on the server, so their answers describe
     * the streams just after this read, at no extra round trip. */
    int rc = redisAppendCommandArgv(r->ctx, argc, argv, NULL) == REDIS_OK ? 0 : -PJ_ETRANSIENT;
    for (size_t i = 0; rc == 0 && counts != NULL && i < nstreams; i++)
        rc = append_group_counts(r, streams[i]);
    free(argv);
    redisReply *reply = NULL;
    batch_reset(ret);
    if (rc < 0)
        return context_error(r, err, "read from Redis");
    /* The acknowledgements of the last batch went out in the same write, just before. */
    if ((rc = settle_acks(r, err)) < 0)
        return rc;
    if (redisGetReply(r->ctx, (void **)&reply) != REDIS_OK || reply == NULL)
        return context_error(r, err, "read from Redis");
    rc = reader_parse_batch(reply, streams, nstreams, ret, err);
    for (size_t i = 0; rc == 0 && counts != NULL && i < nstreams; i++)
        rc = read_group_counts(r, group, &counts[i], err);
    if (rc == 0 && counts != NULL)
        rc = complete_counts(r, streams, nstreams, counts, err);
    return rc;
}

int reader_parse_batch(redisReply *reply, const char *const *streams, size_t nstreams, Batch *ret,
                       PjError *err)
{
    assert(reply != NULL && (nstreams == 0 || streams != NULL));
    batch_reset(ret);
    ret->reply = reply;
    if (reply->type == REDIS_REPLY_NIL)
        return 0;
    if (reply->type == REDIS_REPLY_ERROR)
        return reply_error(reply, err, "read from Redis");
    if (!read_shape_ok(reply))
        return pj_error_set(err, PJ_ETRANSIENT, "unexpected XREADGROUP reply");
    return fill_batch(ret, streams, nstreams, err);
}

int reader_ack(Reader *r, const char *stream, const char *group, const char *const *ids, size_t n,
               PjError *err)
{
    assert(r != NULL && stream != NULL && group != NULL && (n == 0 || ids != NULL));
    if (n == 0)
        return 0;
    const char **argv = xmalloc((n + 3) * sizeof *argv);
    argv[0] = "XACK";
    argv[1] = stream;
    argv[2] = group;
    memcpy(argv + 3, ids, n * sizeof *ids);
    int rc = redisAppendCommandArgv(r->ctx, (int)(n + 3), argv, NULL) == REDIS_OK ? 0 : -1;
    free(argv);
    if (rc < 0)
        return context_error(r, err, "acknowledge entries");
    r->acks_queued++;
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
    redisReply *reply = command(r, err, "count stream entries", 6, argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = reply->type == REDIS_REPLY_ARRAY ? 0 : reply_error(reply, err, "count stream entries");
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
    redisReply *reply = command(r, err, "read the first unapplied entry", 6, first, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        entry_shape_ok(reply->element[0])) {
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
    reply = command(r, err, "read the group info", 3, groups, NULL);
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
    redisReply *reply = command(r, err, "list pending entries", (int)ARRAY_SIZE(argv), argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = 0;
    size_t n = 0;
    const char **ids = xcalloc(reply->elements + 1, sizeof *ids);
    if (reply->type == REDIS_REPLY_ERROR)
        rc = reply_error(reply, err, "list pending entries");
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
    redisReply *reply =
        command(r, err, "move the consumer group back", entries_read >= 0 ? 7 : 5, argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = reply->type == REDIS_REPLY_ERROR
                 ? reply_error(reply, err, "move the consumer group back")
                 : 0;
    freeReplyObject(reply);
    bool more = rc == 0;
    for (int page = 0; rc == 0 && more && page < CLAIM_ROUNDS_MAX; page++)
        rc = ack_pending_page(r, stream, group, idt, &more, err);
    return rc;
}
