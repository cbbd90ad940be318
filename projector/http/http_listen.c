/* http_listen.c - the listening socket of the HTTP server: parses the listen address and
 * binds the first of its resolutions that accepts, with a deep backlog, and tells whether
 * the socket is bound to loopback only. Knows nothing of libmicrohttpd; the socket it
 * returns is the caller's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_internal.h"

/* Capped by net.core.somaxconn; deep for bursts of new /wait connections. */
#define HTTP_LISTEN_BACKLOG 4096

static bool parse_port(const char *s, char port[6])
{
    size_t n = strlen(s);
    long v;

    if (n == 0 || n > 5 || strspn(s, "0123456789") != n)
        return false;
    v = strtol(s, NULL, 10);
    if (v > 65535)
        return false;
    memcpy(port, s, n + 1);
    return true;
}

int http_listen_parse(const char *address, char **ret_host, char port[6], PjError *err)
{
    const char *colon;

    if (address[0] == '[') {
        const char *close = strchr(address, ']');
        if (close && close > address + 1 && close[1] == ':' && parse_port(close + 2, port)) {
            *ret_host = xstrndup(address + 1, (size_t)(close - address - 1));
            return 0;
        }
    } else if ((colon = strrchr(address, ':')) != NULL &&
               memchr(address, ':', (size_t)(colon - address)) == NULL &&
               parse_port(colon + 1, port)) {
        *ret_host = colon == address ? NULL : xstrndup(address, (size_t)(colon - address));
        return 0;
    }
    return pj_error_set(err, PJ_EINVAL,
                        "invalid listen address \"%s\": expected host:port, [v6]:port or :port",
                        address);
}

static int bind_one(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int on = 1, off = 0, saved;

    if (fd < 0)
        return -1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    /* The wildcard IPv6 socket also takes IPv4 connections. */
    if (ai->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, HTTP_LISTEN_BACKLOG) == 0)
        return fd;
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int http_listen_open(const char *address, int *ret_fd, unsigned *ret_port, PjError *err)
{
    char *host = NULL, port[6];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int rc, fd = -1, saved = EADDRNOTAVAIL;

    rc = http_listen_parse(address, &host, port, err);
    if (rc < 0)
        return rc;
    hints.ai_family = host ? AF_UNSPEC : AF_INET6;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 && !host) {
        hints.ai_family = AF_INET; /* no IPv6 on this machine */
        rc = getaddrinfo(host, port, &hints, &res);
    }
    free(host);
    if (rc != 0)
        return pj_error_set(err, PJ_EIO, "could not resolve listen address \"%s\": %s", address,
                            gai_strerror(rc));
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = bind_one(ai);
        if (fd < 0)
            saved = errno;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return pj_error_set(err, PJ_EIO, "could not listen on \"%s\": %s", address,
                            strerror(saved));
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0)
        *ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    *ret_fd = fd;
    return 0;
}

bool http_listen_is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}
