/* thread.h - the small pieces of POSIX threads that several layers repeat: condition
 * variables that time out on the monotonic clock, so that a wall-clock step never
 * stretches or cuts a wait.
 */
#ifndef PROJECTOR_THREAD_H
#define PROJECTOR_THREAD_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Initializes cond to time its waits on CLOCK_MONOTONIC; destroy it with
 * pthread_cond_destroy. */
void thread_cond_init_monotonic(pthread_cond_t *cond);
/* The absolute CLOCK_MONOTONIC time of ms (as now_monotonic_ms counts) for
 * pthread_cond_timedwait on such a condition variable. */
struct timespec thread_monotonic_timespec(int64_t ms);

#endif
