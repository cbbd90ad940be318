/* backoff.c - capped exponential backoff with full jitter (xorshift64* as the generator). */
#include "base/backoff.h"

#include <assert.h>

void backoff_init(Backoff *b, int min_ms, int max_ms, uint64_t seed)
{
    assert(min_ms >= 1 && min_ms <= max_ms);
    *b = (Backoff){.min_ms = min_ms, .max_ms = max_ms, .state = seed | 1};
}

void backoff_reset(Backoff *b)
{
    b->cap_ms = 0;
}

static uint64_t next_random(Backoff *b)
{
    b->state ^= b->state >> 12;
    b->state ^= b->state << 25;
    b->state ^= b->state >> 27;
    return b->state * UINT64_C(2685821657736338717);
}

/* Full jitter over the cap, never under half the minimum: [min/2, min/2 + cap). */
static int jitter(Backoff *b, int cap_ms)
{
    assert(cap_ms >= b->min_ms && cap_ms <= b->max_ms);
    return b->min_ms / 2 + (int)(next_random(b) % (uint64_t)cap_ms);
}

static int cap_of_step(const Backoff *b, int k)
{
    int64_t cap = b->min_ms;

    for (int i = 0; i < k && cap < b->max_ms; i++)
        cap *= 2;
    return cap > b->max_ms ? b->max_ms : (int)cap;
}

int backoff_next(Backoff *b)
{
    b->cap_ms = b->cap_ms == 0 ? b->min_ms : b->cap_ms;
    int delay = jitter(b, b->cap_ms);
    b->cap_ms = b->cap_ms > b->max_ms / 2 ? b->max_ms : b->cap_ms * 2;
    return delay;
}

int backoff_at(Backoff *b, int k)
{
    assert(k >= 0);
    return jitter(b, cap_of_step(b, k));
}
