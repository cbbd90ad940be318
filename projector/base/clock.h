/* clock.h - the one clock the pure layers read: a function the program installs at start
 * (cli/main.c installs the system's wall clock), so that the read-model language, the
 * event compiler and the log never read the system clock themselves and a test can fix
 * the time they see.
 */
#ifndef PROJECTOR_CLOCK_H
#define PROJECTOR_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch. */
typedef int64_t (*ClockFn)(void);

/* Installs fn (NULL: none). Call before any thread that reads the clock starts. */
void clock_install(ClockFn fn);
/* What the installed clock says; 0 (the epoch) while none is installed. */
int64_t clock_wall_ms(void);

#endif
