/* now.h - the system's clocks, for the layers that talk to servers and run threads. The
 * pure layers read time only through base/clock.h.
 */
#ifndef PROJECTOR_NOW_H
#define PROJECTOR_NOW_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC, and since the Unix epoch on CLOCK_REALTIME. */
int64_t now_monotonic_ms(void);
int64_t now_wall_ms(void);

#endif
