/* entry.c - readings of entry fields: the mark of a cut copy; the lag that a stream's
 * backlog amounts to. */
#include "base/entry.h"

#include <string.h>

/* The digits that end s[0 .. end): their start (end itself when there are none). */
static size_t digits_before(const char *s, size_t end)
{
    while (end > 0 && s[end - 1] >= '0' && s[end - 1] <= '9')
        end--;
    return end;
}

/* Whether s[0 .. end) ends with what. */
static bool ends_with(const char *s, size_t end, const char *what)
{
    size_t n = strlen(what);
    return end >= n && memcmp(s + end - n, what, n) == 0;
}

/* "...[truncated: first N of M bytes]" (or "fields]") at the end of s[0 .. len). */
static bool ends_with_cut_mark(const char *s, size_t len)
{
    static const char head[] = "...[truncated: first ", of[] = " of ";
    const char *tail = ends_with(s, len, " bytes]") ? " bytes]" : " fields]";
    if (!ends_with(s, len, tail))
        return false;
    size_t end = len - strlen(tail), whole = digits_before(s, end);
    if (whole == end || !ends_with(s, whole, of))
        return false;
    end = whole - (sizeof of - 1);
    size_t kept = digits_before(s, end);
    return kept < end && ends_with(s, kept, head);
}

bool entry_fields_cut(const EntryFields *f)
{
    for (size_t i = 0; i < f->count; i++)
        if (ends_with_cut_mark(f->names[i], f->name_lens[i]) ||
            ends_with_cut_mark(f->values[i], f->value_lens[i]))
            return true;
    return false;
}

double stream_backlog_lag_seconds(const StreamBacklog *b, int64_t now_wall_ms)
{
    if (b->entries_behind == 0 || b->oldest_unapplied_ms < 0 ||
        now_wall_ms <= b->oldest_unapplied_ms)
        return 0.0;
    return (double)(now_wall_ms - b->oldest_unapplied_ms) / 1000.0;
}
