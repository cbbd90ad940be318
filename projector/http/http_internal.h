/* http_internal.h - what the http*.c files of the endpoints share, included by nothing
 * else. http_listen.c and http_conns.c sit below http.c and know nothing of the endpoints;
 * http_respond.c writes the answers, http_log.c takes libmicrohttpd's messages.
 */
#ifndef PROJECTOR_HTTP_INTERNAL_H
#define PROJECTOR_HTTP_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdint.h>

#include "base/util.h"

/* ---- http_listen.c ---- */

/* "host:port", "[v6]:port" or ":port"; *ret_host (the caller's) is NULL for all
 * interfaces. */
int http_listen_parse(const char *address, char **ret_host, char port[6],
                      PjError *err) PJ_MUSTCHECK;

/* Binds and listens on address: "host:port", "[v6]:port", or ":port" for every interface
 * (IPv6 and IPv4, or IPv4 alone on a machine without IPv6). On success *ret_fd is a
 * non-blocking, close-on-exec listening socket owned by the caller and *ret_port the port
 * bound. With err set, returns -PJ_EINVAL when address does not parse and -PJ_EIO when it
 * cannot be resolved or bound. */
int http_listen_open(const char *address, int *ret_fd, unsigned *ret_port,
                     PjError *err) PJ_MUSTCHECK;
/* True when the listening socket fd is bound to a loopback address (127.0.0.0/8, ::1, or
 * an IPv4-mapped 127.x); false for a wildcard or any other address. */
bool http_listen_is_loopback(int fd);

/* ---- http_conns.c ---- */

/* Where a connection is, as the deadlines and the reserve see it. */
typedef enum {
    HTTP_CONN_HEAD,    /* waiting for a request head, or reading one: has a deadline */
    HTTP_CONN_BUSY,    /* its head arrived and it is being answered: has a deadline */
    HTTP_CONN_WAITING, /* a suspended /wait: its own timeout bounds it */
    HTTP_CONN_CLOSING, /* shut down here; libmicrohttpd has yet to close it */
    HTTP_CONN_PHASES
} HttpConnPhase;

typedef struct HttpConns HttpConns;

/* One open connection. The first fields belong to http_conns.c (under its lock); the
 * request fields belong to http.c and are touched only on libmicrohttpd's thread. */
typedef struct HttpConn {
    struct HttpConn *prev, *next; /* in the list of its phase, oldest first */
    int fd;                       /* libmicrohttpd's socket: shut down here, never closed */
    HttpConnPhase phase;
    int64_t since_ms; /* monotonic: when it entered its phase */
    void *waiter;     /* the BoardWaiter of a suspended /wait, else NULL */
    bool in_request;  /* the handler has seen this request's head */
    bool refused;     /* answered by http_conns_refuse: the handler only closes it */
} HttpConn;

/* What the deadlines and the reserve are. */
typedef struct HttpConnsOptions {
    unsigned head_timeout_ms; /* for a request head to arrive, and for its answer to leave */
    size_t soft_limit;        /* more open connections than this close the idlest ones */
} HttpConnsOptions;

/* Counters since the start, for /metrics. */
typedef struct HttpConnsStats {
    uint64_t timeouts;  /* closed for a late request head or answer */
    uint64_t evictions; /* closed, waiting for a request, to keep the reserve free */
} HttpConnsStats;

/* Starts the sweeper thread that enforces the deadlines and the reserve. Free with
 * http_conns_free once libmicrohttpd has closed every connection. */
HttpConns *http_conns_new(const HttpConnsOptions *opts);
/* Stops the sweeper; asserts that no connection is left. Accepts NULL; returns NULL. */
HttpConns *http_conns_free(HttpConns *cs);
/* A new connection on socket fd, in phase HTTP_CONN_HEAD. The record is owned by the
 * registry until http_conns_close. */
HttpConn *http_conns_open(HttpConns *cs, int fd);
/* libmicrohttpd is about to close c's socket: c is forgotten and freed. */
void http_conns_close(HttpConns *cs, HttpConn *c);
/* Moves c to phase (anything but HTTP_CONN_CLOSING), its clock restarted; a connection
 * already shut down stays closing. */
void http_conns_enter(HttpConns *cs, HttpConn *c, HttpConnPhase phase);
/* Sends answer (a whole HTTP response, len bytes) on c's socket as far as the socket
 * takes it without blocking, then shuts the socket down: for a request libmicrohttpd's
 * memory cannot hold, which it would leave unanswered. Marks c refused and closing. */
void http_conns_refuse(HttpConns *cs, HttpConn *c, const char *answer, size_t len);
/* After a request on c: when its client has said it sends nothing more, shuts c's socket
 * for reading, which makes libmicrohttpd read that end and close the connection once any
 * pipelined requests it holds are answered. On libmicrohttpd's thread only. */
void http_conns_check_end(HttpConns *cs, HttpConn *c);
HttpConnsStats http_conns_stats(HttpConns *cs);

/* ---- http_respond.c ---- */

/* A response header beyond Content-Type and Cache-Control; name NULL for none. */
typedef struct HttpHeader {
    const char *name;
    const char *value;
} HttpHeader;

/* Queues body (taken: freed whatever happens) with its content type and extra. */
enum MHD_Result http_queue_body(struct MHD_Connection *c, unsigned status, char *body,
                                const char *content_type, HttpHeader extra);
/* Takes the reference to doc. */
enum MHD_Result http_respond_json_with(struct MHD_Connection *c, unsigned status, json_t *doc,
                                       HttpHeader extra);
enum MHD_Result http_respond_json(struct MHD_Connection *c, unsigned status, json_t *doc);
/* {"error": message} */
enum MHD_Result http_respond_error_with(struct MHD_Connection *c, unsigned status,
                                        const char *message, HttpHeader extra);
enum MHD_Result http_respond_error(struct MHD_Connection *c, unsigned status, const char *message);

/* ---- http_log.c ---- */

/* libmicrohttpd's logger (MHD_OPTION_EXTERNAL_LOGGER). */
void http_log(void *cls, const char *fmt, va_list ap);

#endif
