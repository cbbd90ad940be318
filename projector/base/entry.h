/* entry.h - what the source layer hands up the data path: one stream entry's raw fields
 * (and how a cut copy of them is marked) and how far a stream is ahead of a position.
 * Value types and readings of them; pure.
 */
#ifndef PROJECTOR_ENTRY_H
#define PROJECTOR_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/stream_id.h"

/* The fields of one entry as Redis returned them: names[i]/values[i] of lengths
 * name_lens[i]/value_lens[i], not NUL-terminated, possibly not valid UTF-8. */
typedef struct EntryFields {
    size_t count;
    const char *const *names;
    const size_t *name_lens;
    const char *const *values;
    const size_t *value_lens;
} EntryFields;

/* What ends a name or value of an entry over max_event_bytes, after the first bytes kept
 * of it (source/reader.c): kept and whole sizes. */
#define ENTRY_CUT_MARK "...[truncated: first %zu of %zu bytes]"
/* What ends the last value of an entry whose later fields were left out: kept and whole
 * numbers of fields. */
#define ENTRY_CUT_FIELDS_MARK "...[truncated: first %zu of %zu fields]"

/* True when a name or value of f ends with either mark: the fields are a cut copy of an
 * entry over the size limit (a dead letter's raw copy, say), never to be applied. */
bool entry_fields_cut(const EntryFields *f);

/* How far a consumer group's committed position is behind its stream. */
typedef struct StreamBacklog {
    bool has_last_entry;
    StreamId last_entry;         /* the stream's last entry ID in Redis */
    uint64_t entries_behind;     /* entries not yet applied (undelivered + pending) */
    int64_t oldest_unapplied_ms; /* ms part of the oldest entry not yet applied, -1 if none */
} StreamBacklog;

/* The lag in seconds: the age at now_wall_ms of the oldest entry not yet applied; 0 when
 * nothing is behind, the age is unknown, or the clocks disagree (never negative). */
double stream_backlog_lag_seconds(const StreamBacklog *backlog, int64_t now_wall_ms);

#endif
