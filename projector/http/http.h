/* http.h - the HTTP endpoints on libmicrohttpd: /lag, /lag/{readmodel}, /wait, /healthz,
 * /readyz, /metrics. Runs on libmicrohttpd's own polling thread; /wait long-polls are
 * suspended connections resumed by the commit that settles them (no thread or timer per
 * waiter, no sleep loop). An optional bearer token guards every endpoint but /healthz.
 * Connections, request size, waiters and the time a request head may take are bounded by
 * the options, and some connections are kept free for new requests whatever slow clients
 * and waiters hold.
 */
#ifndef PROJECTOR_HTTP_H
#define PROJECTOR_HTTP_H

#include <stdbool.h>

#include "base/util.h"
#include "board/board.h"

/* A field left at 0 (or NULL) takes the default named beside it. */
typedef struct HttpOptions {
    const char *listen;               /* "127.0.0.1:8080", "[::1]:8080" or ":8080" */
    const char *token;                /* bearer token; NULL or "" for none; never logged */
    unsigned max_connections;         /* concurrent connections, waiters included; 1024 */
    unsigned reserved_connections;    /* kept free of waiters and idle clients; 1/8 of
                                         max_connections, at most 64 */
    unsigned max_request_bytes;       /* per request: request line and headers; 16384 */
    unsigned max_waiters;             /* /wait requests suspended at once; max_connections
                                         minus twice reserved_connections */
    unsigned header_timeout_ms;       /* for a request head to arrive (and its answer to
                                         leave); 5000 */
    unsigned wait_timeout_default_ms; /* /wait without timeout_ms; 5000 */
    unsigned wait_timeout_max_ms;     /* larger timeout_ms values are clamped; 60000 */
    bool has_listener;                /* serve listener_fd (taken over) instead of binding */
    int listener_fd;                  /* a listening socket kept by http_stop_keep */
} HttpOptions;

typedef struct Http Http;

/* Binds and starts serving. Borrows opts->listen and opts->token only for the call (the
 * token is copied, and wiped when the server stops); borrows board, which must outlive the
 * server. Logs a warning when it binds to an address other than loopback without a token.
 * Returns -PJ_EIO with err set when the address cannot be bound, and -PJ_EINVAL when it
 * does not parse or the options do not fit together (a token shorter than CONFIG_TOKEN_MIN,
 * reserved_connections not below max_connections, max_waiters not below max_connections
 * minus reserved_connections); a listener_fd given is closed on every error. */
int http_start(const HttpOptions *opts, Board *board, Http **ret, PjError *err) PJ_MUSTCHECK;
/* Answers pending waiters, stops the thread, closes the socket. Accepts NULL. */
Http *http_stop(Http *http);
/* The same, but the listening socket stays open and is returned in *ret_fd (-1 if there
 * is none): a server started on it next (has_listener) answers the connections that
 * queued meanwhile, so a restart never refuses one. The caller owns the socket. */
Http *http_stop_keep(Http *http, int *ret_fd);
/* The port actually bound (useful with port 0). */
unsigned http_port(const Http *http);

/* For the command line: GET path from the daemon listening on listen (a wildcard address
 * is reached on loopback), with the bearer token when there is one, within timeout_ms.
 * On 0, *ret_status is the answer's status and *ret_body (the caller's) its body; -PJ_EIO
 * when nothing answers in time, -PJ_EINVAL when listen does not parse. */
int http_get_local(const char *listen, const char *token, const char *path, int timeout_ms,
                   unsigned *ret_status, char **ret_body, PjError *err) PJ_MUSTCHECK;

#endif
