/* reader.c - hiredis calls for consumer groups, with every reply shape checked.
 *
 * Owns one redisContext per Reader, and what bounds its memory: the replies that carry
 * entries (XREADGROUP, XRANGE, XINFO STREAM) are read from the socket here, through a
 * RespCut (respcut.h), and only what it lets through reaches hiredis's parser; entries a
 * read held back are remembered per stream and read next. Errors leave the context
 * unusable from the caller's point of view: it frees the Reader and reconnects. Replies
 * are freed here except a batch's, which the Batch owns until batch_reset.
 */
#include "source/reader.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK 16384 /* bytes one read() of a cut reply takes, as hiredis's own */

/* Entries held past a read's budget, on one stream: re-read before anything new. */
typedef struct Resume {
    bool active;
    StreamId after; /* re-read this consumer's pending entries after this one */
    StreamId until; /* the last entry held */
} Resume;

struct Reader {
    redisContext *ctx;
    size_t acks_queued; /* XACKs sent (or buffered) whose replies are not read yet */
    RespCut cut;        /* cuts the reply of each XREADGROUP */
    bool cutting;       /* replies are read through cut, up to its target */
    size_t cut_seen;    /* replies returned since cutting began */
    StrBuf fed;         /* bytes cut, on their way to hiredis's reader */
    Resume *resume;     /* per stream of the last read */
    size_t nresume;
    size_t entry_cost; /* bytes per entry in the last read that met any (0: none yet) */
    int command_timeout_ms;
};

/* hiredis says a read that timed out with errno's words ("Resource temporarily
 * unavailable"): the message says what it was. */
static int context_error(Reader *r, PjError *err, const char *what)
{
    const char *detail = r->ctx != NULL && r->ctx->err ? r->ctx->errstr : "no reply";
    if (r->ctx != NULL && r->ctx->err == REDIS_ERR_IO &&
        (strcmp(detail, strerror(EAGAIN)) == 0 || strcmp(detail, strerror(EWOULDBLOCK)) == 0))
        return pj_error_set(err, PJ_ETRANSIENT,
                            "could not %s: Redis did not answer within %d ms (read timeout)", what,
                            r->command_timeout_ms);
    return pj_error_set(err, PJ_ETRANSIENT, "could not %s: %s", what, detail);
}

/* The connection is out of step (a reply half read): every later command fails at once,
 * so the caller drops the Reader. */
static int broken(Reader *r, PjError *err, const char *what, const char *detail)
{
    if (!r->ctx->err) {
        r->ctx->err = REDIS_ERR_IO;
        size_t n = strlen(detail);
        n = n < sizeof r->ctx->errstr ? n : sizeof r->ctx->errstr - 1; /* cut to hiredis's room */
        memcpy(r->ctx->errstr, detail, n);
        r->ctx->errstr[n] = '\0';
    }
    r->cutting = false;
    return pj_error_set(err, PJ_ETRANSIENT, "could not %s: %s", what, detail);
}

/* ---- replies read through the cut (respcut.h) ---- */

/* Why read() gave n: the connection closed, the receive timeout, or errno's text. */
static const char *read_failure(ssize_t n, int errnum, char *buf, size_t size)
{
    if (n == 0)
        return "connection closed";
    if (errnum == EAGAIN || errnum == EWOULDBLOCK)
        return "Redis did not answer in time (read timeout)";
    if (strerror_r(errnum, buf, size) != 0)
        snprintf(buf, size, "error %d", errnum);
    return buf;
}

/* Reads what the socket has (up to READ_CHUNK bytes, waiting up to its receive timeout,
 * set by redisSetTimeout) and feeds it to hiredis's reader through r->cut. */
static int read_chunk(Reader *r, PjError *err, const char *what)
{
    char buf[READ_CHUNK];
    ssize_t n;
    do
        n = read(r->ctx->fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        char why[128];
        return broken(r, err, what, read_failure(n, errno, why, sizeof why));
    }
    PjError cut_err;
    strbuf_reset(&r->fed);
    if (respcut_feed(&r->cut, buf, (size_t)n, &r->fed, &cut_err) < 0)
        return broken(r, err, what, cut_err.message);
    if (redisReaderFeed(r->ctx->reader, r->fed.buf, r->fed.len) != REDIS_OK)
        return broken(r, err, what, r->ctx->reader->errstr);
    return 0;
}

/* Reads from the socket until hiredis has the next reply, every byte through r->cut. The
 * target's reply may be whole for hiredis before it has all come (the elements left out
 * of an array come after it): it is read to its end, so that nothing of it is left for
 * the next command. */
static int cut_reply(Reader *r, redisReply **ret, PjError *err, const char *what)
{
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(r->ctx->reader, &reply) != REDIS_OK)
            return broken(r, err, what, r->ctx->reader->errstr);
        if (reply == NULL) {
            int rc = read_chunk(r, err, what);
            if (rc < 0)
                return rc;
            continue;
        }
        int rc = 0;
        if (r->cut_seen++ == r->cut.target)
            while (rc == 0 && !respcut_done(&r->cut))
                rc = read_chunk(r, err, what);
        if (rc < 0) {
            freeReplyObject(reply);
            return rc;
        }
        r->cutting = r->cut_seen <= r->cut.target;
        *ret = reply;
        return 0;
    }
}

/* The next reply of the pipeline: through the cut while one is under way (the replies
 * after its target pass through it unchanged, so hiredis takes over from there). */
static int next_reply(Reader *r, redisReply **ret, PjError *err, const char *what)
{
    *ret = NULL;
    if (r->cutting)
        return cut_reply(r, ret, err, what);
    if (redisGetReply(r->ctx, (void **)ret) != REDIS_OK || *ret == NULL)
        return context_error(r, err, what);
    return 0;
}

static int reply_error(const redisReply *reply, PjError *err, const char *what);

/* Reads the replies of the queued XACKs (sending them first if they are still buffered);
 * they come before the reply of any command appended after them. */
static int settle_acks(Reader *r, PjError *err)
{
    int rc = 0;
    for (; r->acks_queued > 0; r->acks_queued--) {
        redisReply *reply = NULL;
        if (next_reply(r, &reply, err, "acknowledge entries") < 0)
            return -PJ_ETRANSIENT;
        assert(reply != NULL);
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

/* ---- commands ---- */

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

/* Writes everything queued; the replies from the first command after the queued
 * acknowledgements up to the cut's target are then read through r->cut, which the caller
 * has begun (respcut_begin or respcut_begin_ids, target r->acks_queued). */
static int flush_and_cut(Reader *r, PjError *err, const char *what)
{
    int done = 0, rc = 0;
    while (rc == 0 && !done)
        rc = redisBufferWrite(r->ctx, &done) == REDIS_OK ? 0 : -PJ_ETRANSIENT;
    if (rc < 0)
        return context_error(r, err, what);
    /* Nothing is unread from earlier commands: every reply from here on passes the cut. */
    if (r->ctx->reader->pos != r->ctx->reader->len)
        return broken(r, err, what, "bytes left unread by an earlier reply");
    r->cutting = true;
    r->cut_seen = 0;
    return 0;
}

/* Like command(), for XRANGE and XINFO STREAM, whose replies carry whole entries of which
 * only IDs and counts are read: the entries' names and values reach hiredis empty, so an
 * entry of any size costs nothing here. */
static redisReply *command_ids(Reader *r, PjError *err, const char *what, int argc,
                               const char **argv)
{
    redisReply *reply = NULL;
    if (redisAppendCommandArgv(r->ctx, argc, argv, NULL) != REDIS_OK) {
        context_error(r, err, what);
        return NULL;
    }
    respcut_begin_ids(&r->cut, r->acks_queued);
    if (flush_and_cut(r, err, what) < 0 || settle_acks(r, err) < 0 ||
        next_reply(r, &reply, err, what) < 0) {
        (void)broken(r, NULL, what, "a reply left unread");
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
    r->command_timeout_ms = command_timeout_ms;
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
        respcut_free(&r->cut);
        strbuf_done(&r->fed);
        free(r->resume);
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
    redisReply *reply = command_ids(r, err, "read the stream info", 3, argv);
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

/* Reads the two replies append_counts asked for (the first through the cut). */
static int read_counts(Reader *r, const char *stream, const char *group, StreamCounts *ret,
                       PjError *err)
{
    StreamCounts c = {0};
    redisReply *info = NULL, *groups = NULL;
    if (next_reply(r, &info, err, "read the stream info") < 0 ||
        next_reply(r, &groups, err, "read the group info") < 0) {
        if (info != NULL)
            freeReplyObject(info);
        return -PJ_ETRANSIENT;
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
    respcut_begin_ids(&r->cut, r->acks_queued);
    if ((rc = flush_and_cut(r, err, "read the stream info")) < 0)
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
    for (size_t i = 0; i < b->ncut; i++)
        free(b->cut[i]);
    b->ncut = 0;
    b->nheld = 0;
    b->bytes = 0;
}

void batch_done(Batch *b)
{
    batch_reset(b);
    free(b->entries);
    free(b->strs);
    free(b->lens);
    free(b->cut);
    free(b->held);
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

/* The first bytes of a name or value of an oversize entry, then ENTRY_CUT_MARK; owned by
 * the batch. whole is its length in Redis, *len what the reply holds of it. */
static const char *cut_copy(Batch *b, const char *str, size_t *len, size_t whole)
{
    size_t kept = *len < RESPCUT_KEEP_BYTES ? *len : RESPCUT_KEEP_BYTES;
    if (whole <= kept)
        return str;
    StrBuf sb = {0};
    strbuf_appendn(&sb, str, kept);
    strbuf_appendf(&sb, ENTRY_CUT_MARK, kept, whole);
    *len = sb.len;
    xgrow((void **)&b->cut, &b->cut_cap, b->ncut + 1, sizeof *b->cut);
    b->cut[b->ncut++] = sb.buf;
    return sb.buf;
}

/* The value at index k of the batch's strings, with ENTRY_CUT_FIELDS_MARK after it: the
 * fields of its entry after it were left out. */
static void mark_fields_cut(Batch *b, size_t k, size_t kept, size_t whole)
{
    StrBuf sb = {0};
    strbuf_appendn(&sb, b->strs[k], b->lens[k]);
    strbuf_appendf(&sb, ENTRY_CUT_FIELDS_MARK, kept, whole);
    b->lens[k] = sb.len;
    xgrow((void **)&b->cut, &b->cut_cap, b->ncut + 1, sizeof *b->cut);
    b->cut[b->ncut++] = sb.buf;
    b->strs[k] = sb.buf;
}

/* Fills the name or value at index k of the batch's strings from element el, as cut. */
static void put_string(Batch *b, size_t k, const redisReply *el, const CutEntry *ce,
                       const size_t *whole)
{
    b->lens[k] = el->len;
    b->strs[k] = el->str;
    if (ce != NULL && ce->oversize) {
        assert(whole != NULL);
        b->strs[k] = cut_copy(b, el->str, &b->lens[k], whole[0]);
    }
    b->bytes += b->lens[k];
}

/* Appends one entry; its field arrays live in b->strs/b->lens at *slot. ce is what the cut
 * recorded of it (NULL: nothing was cut), whole the lengths in Redis of its fields. */
static int add_entry(Batch *b, size_t stream, const redisReply *e, const CutEntry *ce,
                     const size_t *whole, size_t *slot)
{
    Entry entry = {.stream = stream};
    if (stream_id_parsen(e->element[0]->str, e->element[0]->len, &entry.id) < 0)
        return -PJ_EINVAL;
    stream_id_format(entry.id, entry.id_text);
    const redisReply *f = e->element[1];
    entry.deleted = f->type == REDIS_REPLY_NIL;
    entry.oversize = ce != NULL && ce->oversize;
    size_t n = entry.deleted ? 0 : f->elements / 2;
    /* names in [slot, slot+n), values in [slot+n, slot+2n) */
    for (size_t i = 0; i < n; i++) {
        put_string(b, *slot + i, f->element[2 * i], ce, whole != NULL ? whole + 2 * i : NULL);
        put_string(b, *slot + n + i, f->element[2 * i + 1], ce,
                   whole != NULL ? whole + 2 * i + 1 : NULL);
        entry.bytes += f->element[2 * i]->len + f->element[2 * i + 1]->len;
    }
    entry.whole_fields = n;
    if (ce != NULL) { /* sizes as Redis holds them, of the fields cut or left out too */
        entry.bytes = ce->bytes;
        entry.whole_fields = ce->nwhole / 2;
    }
    if (n > 0 && entry.whole_fields > n)
        mark_fields_cut(b, *slot + 2 * n - 1, n, entry.whole_fields);
    if (n > 0) /* no arrays for an entry without fields (none may be allocated) */
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

/* Notes an entry held past the read's budget: only its stream and ID. */
static int add_held(Batch *b, size_t stream, const redisReply *e)
{
    Entry entry = {.stream = stream};
    if (stream_id_parsen(e->element[0]->str, e->element[0]->len, &entry.id) < 0)
        return -PJ_EINVAL;
    stream_id_format(entry.id, entry.id_text);
    xgrow((void **)&b->held, &b->held_cap, b->nheld + 1, sizeof *b->held);
    b->held[b->nheld++] = entry;
    return 0;
}

/* Entry k of the reply as the cut recorded it, when the cut saw the same entries (with
 * the same number of names and values); NULL without a cut. */
static int cut_entry(const RespCut *cut, size_t k, const redisReply *e, const CutEntry **ret)
{
    *ret = NULL;
    if (cut == NULL)
        return 0;
    size_t n = e->element[1]->type == REDIS_REPLY_ARRAY ? e->element[1]->elements : 0;
    if (k >= cut->nentries || cut->entries[k].nfields != n)
        return -PJ_EINVAL;
    *ret = &cut->entries[k];
    return 0;
}

static int fill_stream(Batch *b, size_t idx, const redisReply *entries, const RespCut *cut,
                       size_t *k, size_t *slot)
{
    for (size_t e = 0; e < entries->elements; e++, (*k)++) {
        const redisReply *el = entries->element[e];
        const CutEntry *ce;
        int rc = cut_entry(cut, *k, el, &ce);
        if (rc == 0 && ce != NULL && ce->held)
            rc = add_held(b, idx, el);
        else if (rc == 0)
            rc =
                add_entry(b, idx, el, ce,
                          ce != NULL && ce->nfields > 0 ? cut->field_lens + ce->first : NULL, slot);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int fill_batch(Batch *b, const char *const *streams, size_t nstreams, const RespCut *cut,
                      PjError *err)
{
    const redisReply *reply = b->reply;
    size_t need = count_fields(reply);
    if (need > b->strs_cap) {
        b->strs = xrealloc(b->strs, need * sizeof *b->strs);
        b->lens = xrealloc(b->lens, need * sizeof *b->lens);
        b->strs_cap = need;
    }
    size_t slot = 0, k = 0;
    for (size_t s = 0; s < reply->elements; s++) {
        const redisReply *sr = reply->element[s];
        int idx = stream_index(streams, nstreams, sr->element[0]);
        if (idx < 0)
            return pj_error_set(err, PJ_ETRANSIENT, "XREADGROUP returned an unknown stream");
        if (fill_stream(b, (size_t)idx, sr->element[1], cut, &k, &slot) < 0)
            return pj_error_set(err, PJ_ETRANSIENT, "XREADGROUP returned an invalid entry");
    }
    if (cut != NULL && k != cut->nentries)
        return pj_error_set(err, PJ_ETRANSIENT, "XREADGROUP returned an invalid entry");
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

/* ---- memory-bounded reads ---- */

/* The entry just before id in stream order: re-reading pending entries "after" it starts
 * with id. */
static StreamId id_before(StreamId id)
{
    assert(!stream_id_is_zero(id));
    if (id.seq > 0)
        return (StreamId){.ms = id.ms, .seq = id.seq - 1};
    return (StreamId){.ms = id.ms - 1, .seq = UINT64_MAX};
}

/* One Resume per stream of this read; a Reader serves one read model, so the streams only
 * change with a new set (then nothing is held: start afresh). */
static void resume_fit(Reader *r, size_t nstreams)
{
    if (r->nresume == nstreams)
        return;
    free(r->resume);
    r->resume = xcalloc(nstreams, sizeof *r->resume);
    r->nresume = nstreams;
}

/* The IDs this read sends: the caller's, or where it asks for new entries (NULL) of a
 * stream with entries held, the held ones first. buf holds the formatted IDs. */
static void resume_ids(const Reader *r, const char *const *ids, size_t nstreams, const char **ret,
                       char (*buf)[STREAM_ID_BUFSZ])
{
    for (size_t i = 0; i < nstreams; i++) {
        ret[i] = ids[i];
        if (ret[i] == NULL && r->resume[i].active)
            ret[i] = stream_id_format(r->resume[i].after, buf[i]);
    }
}

/* The first and last entries of stream s in list[0 .. n); false when there is none. */
static bool stream_range(const Entry *list, size_t n, size_t s, StreamId *first, StreamId *last)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (list[i].stream != s)
            continue;
        if (!any)
            *first = list[i].id;
        *last = list[i].id;
        any = true;
    }
    return any;
}

/* After a read: a stream with entries held re-reads them from the first held; one that
 * re-read pending entries (sent[s] not NULL) is done once it has taken the last held (or
 * found nothing more pending). */
static void resume_update(Reader *r, const char *const *sent, const Batch *b)
{
    for (size_t s = 0; s < r->nresume; s++) {
        Resume *rs = &r->resume[s];
        StreamId first = {0}, last = {0};
        if (stream_range(b->held, b->nheld, s, &first, &last)) {
            rs->until = rs->active && stream_id_cmp(rs->until, last) > 0 ? rs->until : last;
            rs->after = id_before(first);
            rs->active = true;
        } else if (rs->active && sent[s] != NULL) {
            bool any = stream_range(b->entries, b->count, s, &first, &last);
            rs->active = any && stream_id_cmp(last, rs->until) < 0;
            if (any)
                rs->after = last;
        }
    }
}

/* COUNT: the caller's, lowered to what fits max_read_bytes at the last read's entry size,
 * so that a stream of large entries is read in batches that fit and not delivered whole
 * to be held. */
static int read_count(const Reader *r, const ReadLimits *l)
{
    if (r->entry_cost == 0)
        return l->count;
    size_t fit = l->max_read_bytes / r->entry_cost;
    return fit < 1 ? 1 : fit < (size_t)l->count ? (int)fit : l->count;
}

/* The bytes an entry of this read took (a cut one as cut, a held one as it would have). */
static void note_cost(Reader *r)
{
    size_t total = 0;
    const RespCut *c = &r->cut;
    if (c->nentries == 0)
        return;
    for (size_t i = 0; i < c->nentries; i++)
        total += c->entries[i].oversize ? c->entries[i].kept : c->entries[i].bytes;
    r->entry_cost = total / c->nentries > 0 ? total / c->nentries : 1;
}

/* The group's entries-read says where the batch ends only when it holds every entry the
 * read delivered and those were new deliveries. */
static void forget_positions(const Reader *r, const char *const *ids, const char *const *sent,
                             const Batch *b, StreamCounts *counts)
{
    for (size_t s = 0; s < r->nresume; s++) {
        StreamId first = {0}, last = {0};
        if ((ids[s] == NULL && sent[s] != NULL) ||
            stream_range(b->held, b->nheld, s, &first, &last))
            counts[s].has_entries_read = false;
    }
}

/* Sends the queued acknowledgements, the XREADGROUP and (counts) an XINFO GROUPS per
 * stream, all in one write, and starts cutting the XREADGROUP's reply. */
static int send_read(Reader *r, const char **argv, int argc, const char *const *streams,
                     size_t nstreams, bool counts, const ReadLimits *l, PjError *err)
{
    /* The XINFO commands queue behind XREADGROUP on the server, so their answers describe
     * the streams just after this read, at no extra round trip. */
    int rc = redisAppendCommandArgv(r->ctx, argc, argv, NULL) == REDIS_OK ? 0 : -PJ_ETRANSIENT;
    for (size_t i = 0; rc == 0 && counts && i < nstreams; i++)
        rc = append_group_counts(r, streams[i]);
    if (rc < 0)
        return context_error(r, err, "read from Redis");
    respcut_begin(&r->cut, r->acks_queued, l->max_entry_bytes, l->max_read_bytes);
    return flush_and_cut(r, err, "read from Redis");
}

int reader_read(Reader *r, const char *group, const char *consumer, const char *const *streams,
                const char *const *ids, size_t nstreams, const ReadLimits *limits, int block_ms,
                Batch *ret, StreamCounts *counts, PjError *err)
{
    assert(r != NULL && r->ctx != NULL && group != NULL && consumer != NULL);
    assert(nstreams > 0 && streams != NULL && ids != NULL && limits->count > 0);
    resume_fit(r, nstreams);
    const char **argv = xmalloc((READ_ARGS_FIXED + 2 * nstreams) * sizeof *argv);
    const char **sent = xmalloc(nstreams * sizeof *sent);
    char(*idbuf)[STREAM_ID_BUFSZ] = xmalloc(nstreams * sizeof *idbuf);
    char count_s[16], block_s[16];
    resume_ids(r, ids, nstreams, sent, idbuf);
    snprintf(count_s, sizeof count_s, "%d", read_count(r, limits));
    snprintf(block_s, sizeof block_s, "%d", block_ms);
    int argc = read_args(argv, group, consumer, streams, sent, nstreams, count_s,
                         block_ms >= 0 ? block_s : NULL);
    batch_reset(ret);
    int rc = send_read(r, argv, argc, streams, nstreams, counts != NULL, limits, err);
    free(argv);
    redisReply *reply = NULL;
    /* The acknowledgements of the last batch went out in the same write, just before. */
    if (rc == 0)
        rc = settle_acks(r, err);
    if (rc == 0)
        rc = next_reply(r, &reply, err, "read from Redis");
    if (rc == 0)
        rc = reader_parse_batch(reply, streams, nstreams, &r->cut, ret, err);
    for (size_t i = 0; rc == 0 && counts != NULL && i < nstreams; i++)
        rc = read_group_counts(r, group, &counts[i], err);
    if (rc == 0) {
        resume_update(r, sent, ret);
        note_cost(r);
    }
    if (rc == 0 && counts != NULL) {
        forget_positions(r, ids, sent, ret, counts);
        rc = complete_counts(r, streams, nstreams, counts, err);
    }
    if (rc < 0 && !r->ctx->err) /* replies may be left unread: the connection is done */
        (void)broken(r, NULL, "read from Redis", "a reply left unread");
    free(sent);
    free(idbuf);
    return rc;
}

int reader_parse_batch(redisReply *reply, const char *const *streams, size_t nstreams,
                       const RespCut *cut, Batch *ret, PjError *err)
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
    return fill_batch(ret, streams, nstreams, cut, err);
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
    redisReply *reply = command_ids(r, err, "count stream entries", 6, argv);
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
    redisReply *reply = command_ids(r, err, "read the first unapplied entry", 6, first);
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
