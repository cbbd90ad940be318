/* clock.c - the installed clock of the pure layers. */
#include "base/clock.h"

#include <stddef.h>

static ClockFn installed_clock = NULL;

void clock_install(ClockFn fn)
{
    installed_clock = fn;
}

int64_t clock_wall_ms(void)
{
    return installed_clock != NULL ? installed_clock() : 0;
}
