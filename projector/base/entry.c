/* entry.c - the lag that a stream's backlog amounts to. */
#include "base/entry.h"

double stream_backlog_lag_seconds(const StreamBacklog *b, int64_t now_wall_ms)
{
    if (b->entries_behind == 0 || b->oldest_unapplied_ms < 0 ||
        now_wall_ms <= b->oldest_unapplied_ms)
        return 0.0;
    return (double)(now_wall_ms - b->oldest_unapplied_ms) / 1000.0;
}
