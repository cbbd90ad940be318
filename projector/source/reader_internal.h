/* reader_internal.h - what the files of the Reader share: reader.c (the connection, the
 * commands, the reads through the cut), reader_batch.c (a reply made into a Batch) and
 * reader_group.c (the group's positions). Not an interface: only those files include it.
 */
#ifndef PROJECTOR_READER_INTERNAL_H
#define PROJECTOR_READER_INTERNAL_H

#include "source/reader.h"

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

/* ---- reader.c ---- */

/* err from the context's failure (a read timeout said in words); -PJ_ETRANSIENT. */
int reader_context_error(Reader *r, PjError *err, const char *what);
/* err from an error reply; -PJ_ETRANSIENT. */
int reader_reply_error(const redisReply *reply, PjError *err, const char *what);
/* Sends a command and reads its reply, the acknowledgements queued before it settled first
 * (NULL with err set on failure; lens NULL: the arguments are strings). */
redisReply *reader_command(Reader *r, PjError *err, const char *what, int argc, const char **argv,
                           const size_t *lens);
/* The same for XRANGE and XINFO STREAM: their entries' content is cut away on the way. */
redisReply *reader_command_ids(Reader *r, PjError *err, const char *what, int argc,
                               const char **argv);
/* The next reply of a pipeline (through the cut when one is under way). */
int reader_next_reply(Reader *r, redisReply **ret, PjError *err, const char *what);
/* Reads the replies of the acknowledgements sent so far. */
int reader_settle_acks(Reader *r, PjError *err);
/* Writes everything queued; the replies after the queued acknowledgements, up to the cut's
 * target, are then read through r->cut, which the caller has begun. */
int reader_flush_and_cut(Reader *r, PjError *err, const char *what);

/* ---- reader_group.c ---- */

/* Queues XINFO GROUPS of stream after a read (not XINFO STREAM, whose entries may be
 * megabytes). */
int reader_append_group_counts(Reader *r, const char *stream);
/* Reads the reply of reader_append_group_counts into *ret, the counts of group. */
int reader_read_group_counts(Reader *r, const char *group, StreamCounts *ret, PjError *err);
/* Fills in the entries-added count a group's reply cannot give (one more round trip, only
 * for a group that has not read everything); after every reply of the pipeline was read. */
int reader_complete_counts(Reader *r, const char *const *streams, size_t nstreams,
                           StreamCounts *counts, PjError *err);

/* ---- reader_batch.c ---- */

/* An entry of a reply: [ID, [name, value, ...]] with strings where strings belong. */
bool reader_entry_shape_ok(const redisReply *e);
/* An XREADGROUP reply: [[stream, [entry, ...]], ...]. */
bool reader_read_shape_ok(const redisReply *reply);
/* Points b's entries into b->reply (checked by reader_read_shape_ok), in stream order per
 * stream; cut (NULL: none) says what the read's cut did to each entry. */
int reader_fill_batch(Batch *b, const char *const *streams, size_t nstreams, const RespCut *cut,
                      PjError *err) PJ_MUSTCHECK;

#endif
