/* backoff.h - capped exponential backoff with full jitter, the pace of every retry: the
 * sessions of a read model, one event PostgreSQL refuses, the daemon waiting for its
 * database. Pure: the caller seeds it and does the waiting.
 *
 * Invariant: 1 <= min_ms <= max_ms, and every delay lies in [min_ms/2, min_ms/2 + cap).
 */
#ifndef PROJECTOR_BACKOFF_H
#define PROJECTOR_BACKOFF_H

#include <stdint.h>

typedef struct Backoff {
    int min_ms, max_ms; /* retry.backoff_min_ms, retry.backoff_max_ms */
    int cap_ms;         /* the cap of the next step; 0 before the first */
    uint64_t state;     /* the jitter's generator; never 0 */
} Backoff;

/* Starts at step 0; seed (any value) decorrelates the jitter of different callers. */
void backoff_init(Backoff *b, int min_ms, int max_ms, uint64_t seed);
/* Back to step 0, after a success. */
void backoff_reset(Backoff *b);
/* The delay before the next try: its cap doubles from min_ms at each call, up to max_ms;
 * the delay is drawn evenly from [min_ms/2, min_ms/2 + cap). */
int backoff_next(Backoff *b);
/* The delay of step k (0, 1, ...) of the same schedule, without moving b along. */
int backoff_at(Backoff *b, int k);

#endif
