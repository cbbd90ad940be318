/* reader.h - Redis Streams through hiredis: connect, consumer groups, XREADGROUP, XACK,
 * XAUTOCLAIM, and the lag sample of one stream. Every reply's shape is checked before use,
 * and no reply holds more than the read's limits allow, whatever the stream holds.
 *
 * A Reader owns one redisContext. Any error on it is reported as -PJ_ETRANSIENT (the
 * caller drops the Reader and reconnects) except replies that say the data is wrong
 * (a key that is not a stream: -PJ_EPERMANENT).
 */
#ifndef PROJECTOR_READER_H
#define PROJECTOR_READER_H

#include <hiredis/hiredis.h>

#include "base/config.h"
#include "base/entry.h"
#include "base/stream_id.h"
#include "base/util.h"
#include "source/respcut.h"

typedef struct Reader Reader;

/* How long past a command's own blocking time (BLOCK, connect) a reply may take before
 * the server counts as stalled. */
#define READER_REPLY_SLACK_MS 5000

/* The consumer group of a read model: "projector:<readmodel>". Caller frees. */
char *reader_group_name(const char *readmodel);

/* Connects, authenticates and selects the database. timeout_ms bounds the connect and
 * every command beyond block_ms (a stalled network is an error, not a hang). */
int reader_connect(const RedisAddr *addr, int connect_timeout_ms, int command_timeout_ms,
                   Reader **ret, PjError *err) PJ_MUSTCHECK;
Reader *reader_free(Reader *r);

/* Creates the group at 0 (from_beginning) or $ with MKSTREAM. *ret_created tells whether
 * it was created now (false: it already existed). */
int reader_ensure_group(Reader *r, const char *stream, const char *group, bool from_beginning,
                        bool *ret_created, PjError *err) PJ_MUSTCHECK;
/* The stream's last generated ID (0-0 for an empty stream). */
int reader_last_id(Reader *r, const char *stream, StreamId *ret, PjError *err) PJ_MUSTCHECK;
/* What Redis 7 tells about entries that left a stream, for gap detection. */
typedef struct StreamCounts {
    StreamId max_deleted;  /* highest ID removed by XDEL (0-0 when none) */
    uint64_t added;        /* entries ever added */
    uint64_t length;       /* entries there now */
    bool has_entries_read; /* Redis knows how many entries the group has read */
    uint64_t entries_read; /* ... and this is that number */
    bool has_lag;          /* Redis knows how many entries the group has yet to read */
    uint64_t lag;          /* ... and this is that number */
    bool has_last_delivered;
    StreamId last_delivered; /* the group's last-delivered-id */
} StreamCounts;

/* XINFO STREAM and XINFO GROUPS of one stream for one group, in one round trip. */
int reader_stream_counts(Reader *r, const char *stream, const char *group, StreamCounts *ret,
                         PjError *err) PJ_MUSTCHECK;
/* Moves the group back to id (XGROUP SETID), so that every entry after id is delivered
 * again, pending ones included; entries_read (-1: unknown) keeps Redis's lag exact. Then
 * acknowledges the group's pending entries at or below id, which are settled. */
int reader_rewind_group(Reader *r, const char *stream, const char *group, StreamId id,
                        int64_t entries_read, PjError *err) PJ_MUSTCHECK;
/* Takes over every pending entry of the group, from any consumer, for consumer. */
int reader_claim_all(Reader *r, const char *stream, const char *group, const char *consumer,
                     PjError *err) PJ_MUSTCHECK;

/* One entry of a batch; strings point into the batch's reply. */
typedef struct Entry {
    size_t stream; /* index into the streams passed to reader_read */
    StreamId id;
    char id_text[STREAM_ID_BUFSZ];
    bool deleted;        /* a pending entry whose content is gone (trimmed or XDEL) */
    size_t bytes;        /* its names and values as Redis holds them */
    size_t whole_fields; /* its fields (name-value pairs) in Redis */
    /* bytes > the read's max_entry_bytes, or more than RESPCUT_FIELDS_MAX names and values:
     * it was never read whole; fields holds at most RESPCUT_FIELDS_KEEP / 2 of its fields,
     * and of each name or value longer than RESPCUT_KEEP_BYTES its first bytes, then
     * ENTRY_CUT_MARK */
    bool oversize;
    EntryFields fields;
} Entry;

/* Entries read by one XREADGROUP, in reply order (per stream in stream order). Owns the
 * reply; reset it before the next read. */
typedef struct Batch {
    redisReply *reply;
    Entry *entries;
    size_t count;
    size_t cap;
    /* storage for the EntryFields arrays */
    const char **strs;
    size_t *lens;
    size_t strs_cap;
    /* the cut copies of oversize entries' fields, owned */
    char **cut;
    size_t ncut, cut_cap;
    /* entries Redis delivered past the read's max_read_bytes: left pending, read next (only
     * stream, id and id_text are set) */
    Entry *held;
    size_t nheld, held_cap;
    size_t bytes; /* names and values of entries the batch holds (cut ones as cut) */
} Batch;

void batch_reset(Batch *b);
void batch_done(Batch *b);

/* What one read may take. */
typedef struct ReadLimits {
    int count;              /* entries per stream (XREADGROUP COUNT), at most */
    size_t max_entry_bytes; /* a larger entry comes cut (Entry.oversize), never whole */
    size_t max_read_bytes;  /* entries that begin past this much entry data are held */
} ReadLimits;

/* XREADGROUP GROUP group consumer COUNT n [BLOCK block_ms] STREAMS s... ids...
 * ids[i] is NULL for ">" (new entries) or the ID after which to re-read this consumer's
 * pending entries. BLOCK is only sent when every id is ">" and block_ms >= 0 (a negative
 * block_ms answers at once, empty when nothing is there). Fills *ret (reset first).
 *
 * Memory is bounded by the limits, not by what the stream holds: the reply is cut as it
 * arrives (respcut.h), so it holds at most max_read_bytes plus one entry, and an entry
 * over max_entry_bytes only in part. n is limits->count, lowered to what fits
 * max_read_bytes at the size of the entries the last read met. Entries held past
 * max_read_bytes stay pending: every following read of their stream given ">" re-reads
 * them first (from this consumer's pending entries), in stream order, until all have
 * come whole.
 *
 * When counts is not NULL, counts[i] gets stream i's group position as it stands right
 * after the read (XINFO GROUPS pipelined behind it: no extra round trip); added and
 * length stay 0, and max_deleted is only fetched (one more round trip) when the group
 * has not read everything there is. has_entries_read is false for a stream whose entries
 * were held or re-read: the group's count then says nothing of the batch. */
int reader_read(Reader *r, const char *group, const char *consumer, const char *const *streams,
                const char *const *ids, size_t nstreams, const ReadLimits *limits, int block_ms,
                Batch *ret, StreamCounts *counts, PjError *err) PJ_MUSTCHECK;

/* Checks the shape of an XREADGROUP reply and fills *ret (reset first) from it. Takes
 * ownership of reply. A nil reply is an empty batch. cut is what cut the reply as it
 * arrived (NULL: nothing did). Exposed for tests, which feed recorded RESP bytes through
 * hiredis's redisReader (and a RespCut). */
int reader_parse_batch(redisReply *reply, const char *const *streams, size_t nstreams,
                       const RespCut *cut, Batch *ret, PjError *err) PJ_MUSTCHECK;

/* XACK stream group id...: queued, not waited for. It goes out with the next command
 * (the next reader_read's XREADGROUP, in the same write) and that command reads its reply
 * first, so an acknowledgement costs no round trip of its own; an error in it is that
 * command's error. reader_flush sends and settles what is queued (before a clean stop).
 * Entries whose acknowledgement is lost with the connection are simply delivered again. */
int reader_ack(Reader *r, const char *stream, const char *group, const char *const *ids, size_t n,
               PjError *err) PJ_MUSTCHECK;
int reader_flush(Reader *r, PjError *err) PJ_MUSTCHECK;

/* The lag of one stream for a group whose committed position is applied: last entry ID,
 * entries after applied (exact up to a bound, via XINFO GROUPS lag + pending when
 * available), and the ms part of the first entry after applied. */
int reader_sample(Reader *r, const char *stream, const char *group, StreamId applied,
                  StreamBacklog *ret, PjError *err) PJ_MUSTCHECK;

#endif
