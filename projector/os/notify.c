/* notify.c - sd_notify(3) calls; see notify.h. The messages never carry event data or
 * secrets: states, counts and the lag. */
#include "os/notify.h"

#include <stdio.h>
#include <systemd/sd-daemon.h>

static void notify(const char *state)
{
    (void)sd_notify(0, state); /* < 0 or 0: no manager listening; nothing to do */
}

void notify_ready(const char *status)
{
    if (status == NULL) {
        notify("READY=1");
        return;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status);
    notify(msg);
}

void notify_reloading(void)
{
    notify("RELOADING=1");
}

void notify_stopping(void)
{
    notify("STOPPING=1");
}

void notify_status(const char *status)
{
    char msg[512];
    snprintf(msg, sizeof msg, "STATUS=%s", status);
    notify(msg);
}

void notify_watchdog(void)
{
    notify("WATCHDOG=1");
}

int64_t notify_watchdog_ms(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? (int64_t)(usec / 1000) : 0;
}
