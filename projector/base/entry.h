/* entry.h - what the source layer hands up the data path: one stream entry's raw fields
 * and how far a stream is ahead of a position. Value types and one reading of them; pure.
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
