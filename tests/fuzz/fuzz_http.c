/* fuzz_http.c - libFuzzer target: the input is the raw bytes a client sends to the HTTP
 * server. Owns nothing but the harness: it starts the real server (http_start on
 * 127.0.0.1, port 0) once, over a lag board built by hand in which one read model is
 * running with settled entries, one is catching up and one is stopped, so that /wait can
 * answer 200, 404, 400, 408 and 503. Per input: connect, send (ending the head if the
 * input does not) and say there is no more (the server keeps connections alive, so
 * without that a complete request would only end at its header deadline), read the answer
 * until the server closes; a client that gets no answer in time gives up, and the server
 * must then still answer /healthz. ASan and UBSan watch the server's thread too.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "board/board.h"
#include "board_models.h"
#include "fuzz.h"
#include "http/http.h"
#include "os/now.h"

/* libmicrohttpd's own request limit is far below this. */
#define FUZZ_HTTP_BYTES_MAX 65536
/* How long a client waits for the answer and the close before it gives up: past the
 * default /wait, before the longest, so that some waiters lose their client. */
#define FUZZ_HTTP_ANSWER_MS 50
/* How long the server may take to answer /healthz after a client gave up. */
#define FUZZ_HTTP_PROBE_MS 5000
#define FUZZ_HTTP_WAIT_DEFAULT_MS 10
#define FUZZ_HTTP_WAIT_MAX_MS 250

static Board *fuzz_board;
static Http *fuzz_http;
static struct sockaddr_in fuzz_addr;

static StreamId sid(uint64_t ms, uint64_t seq)
{
    return (StreamId){ms, seq};
}

/* orders: running, entries 5-0 (applied), 6-0 (dead-lettered), 7-0 (skipped) settled on
 * both streams; customer_stats: catching up at 5-0; customers: stopped. */
static void fill_board(Board *b)
{
    BoardOutcome o[] = {{sid(5, 0), BOARD_OUTCOME_APPLIED, NULL},
                        {sid(6, 0), BOARD_OUTCOME_DEAD_LETTERED, "cannot multiply \"abc\""},
                        {sid(7, 0), BOARD_OUTCOME_SKIPPED, NULL}};
    StreamBacklog behind = {.has_last_entry = true,
                            .last_entry = sid(1768471800000, 3),
                            .entries_behind = 12,
                            .oldest_unapplied_ms = 1768471700000};

    board_set_state(b, 0, BOARD_STATE_RUNNING, NULL);
    board_polled(b, 0);
    board_committed(b, 0, 0, sid(7, 0), o, 3);
    board_committed(b, 0, 1, sid(7, 0), o, 3);
    board_set_state(b, 1, BOARD_STATE_RUNNING, NULL);
    board_polled(b, 1);
    board_sampled(b, 1, 0, &behind);
    board_committed(b, 1, 0, sid(5, 0), o, 1);
    board_set_dead_letters(b, 1, 0, 4);
    board_set_state(b, 2, BOARD_STATE_STOPPED, "entry 9-0: cannot apply \"\\\"quoted\\\"\"");
}

static void stop_server(void)
{
    fuzz_http = http_stop(fuzz_http);
    fuzz_board = board_free(fuzz_board);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    HttpOptions opts = {.listen = "127.0.0.1:0",
                        .max_connections = 64,
                        .wait_timeout_default_ms = FUZZ_HTTP_WAIT_DEFAULT_MS,
                        .wait_timeout_max_ms = FUZZ_HTTP_WAIT_MAX_MS};
    PjError err = {0};

    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    fuzz_board = board_new(board_models_fixture());
    fill_board(fuzz_board);
    if (http_start(&opts, fuzz_board, &fuzz_http, &err) < 0) {
        fprintf(stderr, "fuzz_http: cannot start the server: %s\n", err.message);
        abort();
    }
    fuzz_addr = (struct sockaddr_in){.sin_family = AF_INET,
                                     .sin_port = htons((uint16_t)http_port(fuzz_http))};
    fuzz_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    atexit(stop_server);
    return 0;
}

/* A connect() that a signal interrupted (libFuzzer's timers) goes on in the background:
 * calling it again would only say EALREADY. It is done when the socket turns writable,
 * and SO_ERROR tells how it ended. Returns 0, or -1 with errno set. */
static int connect_finish(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0, r;
    socklen_t len = sizeof(err);

    do {
        r = poll(&p, 1, FUZZ_HTTP_PROBE_MS);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        errno = ETIMEDOUT;
    if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return -1;
    errno = err;
    return err == 0 ? 0 : -1;
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r = fd < 0 ? -1 : connect(fd, (const struct sockaddr *)&fuzz_addr, sizeof(fuzz_addr));

    if (r != 0 && fd >= 0 && errno == EINTR)
        r = connect_finish(fd);
    if (r != 0) {
        perror("fuzz_http: connect");
        abort();
    }
    return fd;
}

/* Sends what the server takes; it may close early (a request it refuses), which is fine. */
static void send_all(int fd, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        data += n;
        size -= (size_t)n;
    }
}

/* Reads until the server closes; returns false when the deadline passed first. The first
 * head_size - 1 bytes of the answer go to head (NUL-terminated) when head is not NULL. */
static bool drain(int fd, int deadline_ms, char *head, size_t head_size)
{
    char buf[4096];
    int64_t deadline = now_monotonic_ms() + deadline_ms;
    size_t got = 0;

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - now_monotonic_ms();
        ssize_t n;

        if (left <= 0)
            return false;
        if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
            return true;
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
        if (n > 0 && head != NULL && got + 1 < head_size) {
            size_t take = head_size - 1 - got < (size_t)n ? head_size - 1 - got : (size_t)n;
            memcpy(head + got, buf, take);
            got += take;
            head[got] = '\0';
        }
    }
}

/* Closes with a reset, as a client that gives up does: nothing lingers on either side. */
static void abort_close(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};

    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}

/* After a request that got no answer the server must still serve the next client. */
static void check_alive(void)
{
    static const char probe[] = "GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n";
    int fd = connect_server();
    char head[16] = "";

    send_all(fd, (const uint8_t *)probe, sizeof(probe) - 1);
    if (!drain(fd, FUZZ_HTTP_PROBE_MS, head, sizeof(head)) ||
        strncmp(head, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "fuzz_http: the server no longer answers /healthz within %d ms\n",
                FUZZ_HTTP_PROBE_MS);
        abort();
    }
    abort_close(fd);
}

static bool has_blank_line(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i + 4 <= size; i++) {
        if (memcmp(data + i, "\r\n\r\n", 4) == 0)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd;

    if (size > FUZZ_HTTP_BYTES_MAX)
        return -1;
    fd = connect_server();
    send_all(fd, data, size);
    /* Without the blank line that ends a head the server would only wait for more, so
     * the harness ends it: inputs mutate the request, not the wait for its end. */
    if (!has_blank_line(data, size))
        send_all(fd, (const uint8_t *)"\r\n\r\n", 4);
    (void)shutdown(fd, SHUT_WR);
    if (drain(fd, FUZZ_HTTP_ANSWER_MS, NULL, 0)) {
        close(fd);
        return 0;
    }
    /* No answer yet (a body still expected, a /wait longer than the client's patience):
     * the client leaves, and the server must go on serving others. */
    abort_close(fd);
    check_alive();
    return 0;
}
