/* http_log.c - what libmicrohttpd says, logged at the level it deserves: a client's own
 * fault (a malformed request, a hang-up, a timeout) at debug, so that a hostile client
 * cannot flood the log; anything else as a warning.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "http/http_internal.h"

/* What libmicrohttpd reports about one client's request or connection: the client gets its
 * answer (400, 413, 414, 431, ...), hangs up or loses its connection, and nothing is wrong
 * with the server. Logged at debug level, so that a hostile client cannot flood the log. */
static bool http_log_is_client_fault(const char *message)
{
    static const char *const client_faults[] = {
        "Error processing request",
        "Content-Length",
        "Not enough memory in pool",
        "connection limit",
        "Failed to receive data",
        "Failed to send", /* the headers, the body, ...: the client is gone */
        "malformed",
        "timed out",
        "Host' header",
        "Connection reset",
        "closed by remote side",            /* a client that hung up mid-request */
        "disconnected when reading",        /* the same, seen by the read */
        "closed when reading",              /* a read that failed: reset, shut down here */
        "Too late",                         /* an error after the answer began: closed */
        "Application reported internal",    /* a request refused here, then closed */
        "failed to create response header", /* a request that left no room for them */
        /* libmicrohttpd 0.9.75 says this even when the logger is the first option. */
        "MHD_OPTION_EXTERNAL_LOGGER is not the first option",
    };

    for (size_t i = 0; i < ARRAY_SIZE(client_faults); i++)
        if (strstr(message, client_faults[i]) != NULL)
            return true;
    return false;
}

void http_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    size_t n;

    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '.'))
        buf[--n] = '\0';
    if (http_log_is_client_fault(buf))
        log_debug("http", "%s", buf);
    else
        log_warn("http", "%s", buf);
}
