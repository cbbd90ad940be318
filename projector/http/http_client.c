/* http_client.c - a GET to the daemon's own HTTP listener, for the command line: the
 * listen address of projector.yaml (a wildcard reached on loopback), the bearer token, one
 * request on its own connection, a deadline for the whole exchange, a bounded answer.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "http/http_internal.h"
#include "os/now.h"

#define CLIENT_ANSWER_MAX (4u << 20) /* bytes of an answer kept; more is an error */

/* Connects to host:port (NULL host: loopback) before deadline; -1 on failure. */
static int client_connect(const char *host, const char *port, int64_t deadline)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    bool wildcard = host == NULL || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
    if (getaddrinfo(wildcard ? "localhost" : host, port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof err;
        int left = (int)(deadline - now_monotonic_ms());
        if (errno != EINPROGRESS || left <= 0 || poll(&p, 1, left) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* Writes all of buf, or reads until the peer closes, before deadline. */
static bool client_io(int fd, bool out, StrBuf *buf, int64_t deadline)
{
    size_t at = 0;
    for (;;) {
        int left = (int)(deadline - now_monotonic_ms());
        struct pollfd p = {.fd = fd, .events = out ? POLLOUT : POLLIN};
        if (left <= 0 || poll(&p, 1, left) != 1)
            return false;
        if (out) {
            ssize_t n = send(fd, buf->buf + at, buf->len - at, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN)
                return false;
            at += n > 0 ? (size_t)n : 0;
            if (at == buf->len)
                return true;
            continue;
        }
        char chunk[8192];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n == 0)
            return true;
        if ((n < 0 && errno != EAGAIN) || buf->len + (size_t)(n > 0 ? n : 0) > CLIENT_ANSWER_MAX)
            return false;
        if (n > 0)
            strbuf_appendn(buf, chunk, (size_t)n);
    }
}

int http_get_local(const char *listen, const char *token, const char *path, int timeout_ms,
                   unsigned *ret_status, char **ret_body, PjError *err)
{
    char *host = NULL, port[6];
    int rc = http_listen_parse(listen, &host, port, err);
    if (rc < 0)
        return rc;
    int64_t deadline = now_monotonic_ms() + timeout_ms;
    int fd = client_connect(host, port, deadline);
    free(host);
    if (fd < 0)
        return pj_error_set(err, PJ_EIO, "nothing answers on %s", listen);
    StrBuf io = {0};
    strbuf_appendf(&io, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", path);
    if (token != NULL && token[0] != '\0')
        strbuf_appendf(&io, "Authorization: Bearer %s\r\n", token);
    strbuf_append(&io, "\r\n");
    bool sent = client_io(fd, true, &io, deadline);
    explicit_bzero(io.buf, io.len); /* the token */
    strbuf_reset(&io);
    bool read = sent && client_io(fd, false, &io, deadline);
    close(fd);
    const char *body = io.buf != NULL ? strstr(io.buf, "\r\n\r\n") : NULL;
    unsigned status = 0;
    if (!read || body == NULL || sscanf(io.buf, "HTTP/1.%*d %u", &status) != 1) {
        strbuf_done(&io);
        return pj_error_set(err, PJ_EIO, "no answer from %s within %d ms", listen, timeout_ms);
    }
    *ret_status = status;
    *ret_body = xstrdup(body + 4);
    strbuf_done(&io);
    return 0;
}
