/* http.h - the HTTP endpoints on libmicrohttpd: /lag, /lag/{readmodel}, /wait, /healthz,
 * /readyz, /metrics. Runs on libmicrohttpd's own polling thread; /wait long-polls are
 * suspended connections resumed by the commit that settles them (no thread or timer per
 * waiter, no sleep loop).
 */
#ifndef PROJECTOR_HTTP_H
#define PROJECTOR_HTTP_H

#include "lag.h"
#include "util.h"

typedef struct HttpOptions {
    const char *listen;             /* "127.0.0.1:8080", "[::1]:8080" or ":8080" */
    unsigned max_connections;       /* concurrent connections, waiters included */
    unsigned wait_timeout_default_ms; /* /wait without timeout_ms */
    unsigned wait_timeout_max_ms;     /* larger timeout_ms values are clamped */
} HttpOptions;

typedef struct Http Http;

/* Binds and starts serving. Borrows opts->listen only for the call; borrows board, which
 * must outlive the server. Returns -PJ_EIO with err set when the address cannot be bound
 * and -PJ_EINVAL when it does not parse. */
int http_start(const HttpOptions *opts, LagBoard *board, Http **ret, PjError *err) PJ_MUSTCHECK;
/* Answers pending waiters, stops the thread, closes the socket. Accepts NULL. */
Http *http_stop(Http *http);
/* The port actually bound (useful with port 0). */
unsigned http_port(const Http *http);

#endif
