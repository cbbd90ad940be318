/* test_backoff.c - the retry pace: bounds of every delay, the doubling cap, reset. */
#include <criterion/criterion.h>

#include "base/backoff.h"

#define DRAWS 2000

Test(backoff, every_delay_lies_within_half_the_minimum_and_the_cap)
{
    Backoff b;
    backoff_init(&b, 100, 1000, 42);
    int caps[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (size_t step = 0; step < sizeof caps / sizeof caps[0]; step++) {
        int d = backoff_next(&b);
        cr_expect(d >= 50 && d < 50 + caps[step], "step %zu: %d ms", step, d);
    }
}

Test(backoff, the_cap_doubles_to_the_maximum_and_a_reset_starts_over)
{
    Backoff b;
    int max_first = 0, max_late = 0;
    for (int i = 0; i < DRAWS; i++) {
        backoff_init(&b, 100, 1000, (uint64_t)i);
        int first = backoff_next(&b);
        for (int k = 0; k < 5; k++)
            (void)backoff_next(&b);
        int late = backoff_next(&b);
        max_first = first > max_first ? first : max_first;
        max_late = late > max_late ? late : max_late;
        backoff_reset(&b);
        cr_expect_lt(backoff_next(&b), 150, "after a reset the first cap again");
    }
    cr_expect_lt(max_first, 150);
    cr_expect_gt(max_late, 900, "%d draws at the maximum reach near it", DRAWS);
}

Test(backoff, a_step_by_attempt_follows_the_same_schedule)
{
    Backoff b;
    backoff_init(&b, 10, 10000, 7);
    for (int k = 0; k < 12; k++) {
        int cap = 10 << (k < 10 ? k : 10);
        cap = cap > 10000 ? 10000 : cap;
        int d = backoff_at(&b, k);
        cr_expect(d >= 5 && d < 5 + cap, "step %d: %d ms (cap %d)", k, d, cap);
    }
    cr_expect_eq(b.cap_ms, 0, "backoff_at does not move the schedule");
}

Test(backoff, the_jitter_spreads_and_depends_on_the_seed)
{
    Backoff a, b;
    int same = 0, distinct_low = 0;
    backoff_init(&a, 1000, 1000, 1);
    backoff_init(&b, 1000, 1000, 2);
    for (int i = 0; i < DRAWS; i++) {
        int x = backoff_next(&a), y = backoff_next(&b);
        same += x == y;
        distinct_low += x < 1000;
    }
    cr_expect_lt(same, DRAWS / 10, "two seeds, two sequences");
    cr_expect(distinct_low > DRAWS / 3 && distinct_low < 2 * DRAWS / 3,
              "half the draws below the middle of [500, 1500): %d", distinct_low);
}
