/* notify.h - telling the service manager how the daemon is (systemd's notify protocol,
 * through libsystemd's sd_notify): ready, reloading, stopping, a status line, and the
 * watchdog's keep-alive. Without $NOTIFY_SOCKET every call does nothing.
 */
#ifndef PROJECTOR_NOTIFY_H
#define PROJECTOR_NOTIFY_H

#include <stdint.h>

/* READY=1 (with the status line, NULL: none). */
void notify_ready(const char *status);
/* RELOADING=1: a reload of the read models begins (READY=1 again when it ends). */
void notify_reloading(void);
/* STOPPING=1: a stop begins. */
void notify_stopping(void);
/* STATUS=<status>: one line for `systemctl status`. */
void notify_status(const char *status);
/* WATCHDOG=1: the daemon is alive. */
void notify_watchdog(void);
/* The watchdog interval the service manager asked for ($WATCHDOG_USEC), in ms; 0 when
 * none was. */
int64_t notify_watchdog_ms(void);

#endif
