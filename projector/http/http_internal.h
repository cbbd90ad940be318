/* http_internal.h - what the http*.c files of the endpoints share, included by nothing
 * else. http_listen.c sits below http.c and knows nothing of the server.
 */
#ifndef PROJECTOR_HTTP_INTERNAL_H
#define PROJECTOR_HTTP_INTERNAL_H

#include "base/util.h"

/* ---- http_listen.c ---- */

/* Binds and listens on address: "host:port", "[v6]:port", or ":port" for every interface
 * (IPv6 and IPv4, or IPv4 alone on a machine without IPv6). On success *ret_fd is a
 * non-blocking, close-on-exec listening socket owned by the caller and *ret_port the port
 * bound. With err set, returns -PJ_EINVAL when address does not parse and -PJ_EIO when it
 * cannot be resolved or bound. */
int http_listen_open(const char *address, int *ret_fd, unsigned *ret_port,
                     PjError *err) PJ_MUSTCHECK;

#endif
