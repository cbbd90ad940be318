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
#include "source/reader_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK 16384 /* bytes one read() of a cut reply takes, as hiredis's own */

/* hiredis says a read that timed out with errno's words ("Resource temporarily
 * unavailable"): the message says what it was. */
int reader_context_error(Reader *r, PjError *err, const char *what)
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
int reader_next_reply(Reader *r, redisReply **ret, PjError *err, const char *what)
{
    *ret = NULL;
    if (r->cutting)
        return cut_reply(r, ret, err, what);
    if (redisGetReply(r->ctx, (void **)ret) != REDIS_OK || *ret == NULL)
        return reader_context_error(r, err, what);
    return 0;
}

/* Reads the replies of the queued XACKs (sending them first if they are still buffered);
 * they come before the reply of any command appended after them. */
int reader_settle_acks(Reader *r, PjError *err)
{
    int rc = 0;
    for (; r->acks_queued > 0; r->acks_queued--) {
        redisReply *reply = NULL;
        if (reader_next_reply(r, &reply, err, "acknowledge entries") < 0)
            return -PJ_ETRANSIENT;
        assert(reply != NULL);
        if (rc == 0 && reply->type == REDIS_REPLY_ERROR)
            rc = reader_reply_error(reply, err, "acknowledge entries");
        freeReplyObject(reply);
    }
    return rc;
}

int reader_flush(Reader *r, PjError *err)
{
    return reader_settle_acks(r, err);
}

/* ---- commands ---- */

/* Sends argv and returns the reply, or NULL with err set (transient). */
redisReply *reader_command(Reader *r, PjError *err, const char *what, int argc, const char **argv,
                           const size_t *lens)
{
    if (reader_settle_acks(r, err) < 0)
        return NULL;
    redisReply *reply = redisCommandArgv(r->ctx, argc, argv, lens);
    if (reply == NULL) {
        reader_context_error(r, err, what);
        return NULL;
    }
    return reply;
}

/* Writes everything queued; the replies from the first command after the queued
 * acknowledgements up to the cut's target are then read through r->cut, which the caller
 * has begun (respcut_begin or respcut_begin_ids, target r->acks_queued). */
int reader_flush_and_cut(Reader *r, PjError *err, const char *what)
{
    int done = 0, rc = 0;
    while (rc == 0 && !done)
        rc = redisBufferWrite(r->ctx, &done) == REDIS_OK ? 0 : -PJ_ETRANSIENT;
    if (rc < 0)
        return reader_context_error(r, err, what);
    /* Nothing is unread from earlier commands: every reply from here on passes the cut. */
    if (r->ctx->reader->pos != r->ctx->reader->len)
        return broken(r, err, what, "bytes left unread by an earlier reply");
    r->cutting = true;
    r->cut_seen = 0;
    return 0;
}

/* Like reader_command(), for XRANGE and XINFO STREAM, whose replies carry whole entries of which
 * only IDs and counts are read: the entries' names and values reach hiredis empty, so an
 * entry of any size costs nothing here. */
redisReply *reader_command_ids(Reader *r, PjError *err, const char *what, int argc,
                               const char **argv)
{
    redisReply *reply = NULL;
    if (redisAppendCommandArgv(r->ctx, argc, argv, NULL) != REDIS_OK) {
        reader_context_error(r, err, what);
        return NULL;
    }
    respcut_begin_ids(&r->cut, r->acks_queued);
    if (reader_flush_and_cut(r, err, what) < 0 || reader_settle_acks(r, err) < 0 ||
        reader_next_reply(r, &reply, err, what) < 0) {
        (void)broken(r, NULL, what, "a reply left unread");
        return NULL;
    }
    return reply;
}

/* Classifies an error reply: WRONGTYPE is the data's fault, the rest is transient. */
int reader_reply_error(const redisReply *reply, PjError *err, const char *what)
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
    redisReply *reply = reader_command(r, err, what, argc, argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = reply->type == REDIS_REPLY_ERROR ? reader_reply_error(reply, err, what) : 0;
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
    redisReply *reply = reader_command(r, err, "create the consumer group", 6, argv, NULL);
    if (reply == NULL)
        return -PJ_ETRANSIENT;
    int rc = 0;
    *ret_created = true;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "BUSYGROUP", 9) == 0)
            *ret_created = false;
        else
            rc = reader_reply_error(reply, err, "create the consumer group");
    }
    freeReplyObject(reply);
    return rc;
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
        rc = reader_append_group_counts(r, streams[i]);
    if (rc < 0)
        return reader_context_error(r, err, "read from Redis");
    respcut_begin(&r->cut, r->acks_queued, l->max_entry_bytes, l->max_read_bytes);
    return reader_flush_and_cut(r, err, "read from Redis");
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
        rc = reader_settle_acks(r, err);
    if (rc == 0)
        rc = reader_next_reply(r, &reply, err, "read from Redis");
    if (rc == 0)
        rc = reader_parse_batch(reply, streams, nstreams, &r->cut, ret, err);
    for (size_t i = 0; rc == 0 && counts != NULL && i < nstreams; i++)
        rc = reader_read_group_counts(r, group, &counts[i], err);
    if (rc == 0) {
        resume_update(r, sent, ret);
        note_cost(r);
    }
    if (rc == 0 && counts != NULL) {
        forget_positions(r, ids, sent, ret, counts);
        rc = reader_complete_counts(r, streams, nstreams, counts, err);
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
        return reader_reply_error(reply, err, "read from Redis");
    if (!reader_read_shape_ok(reply))
        return pj_error_set(err, PJ_ETRANSIENT, "unexpected XREADGROUP reply");
    return reader_fill_batch(ret, streams, nstreams, cut, err);
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
        return reader_context_error(r, err, "acknowledge entries");
    r->acks_queued++;
    return 0;
}
