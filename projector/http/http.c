/* http.c - the HTTP endpoints on libmicrohttpd: routing, the bearer token, query parsing,
 * JSON and text responses, /wait long-polls as suspended connections, and the limits of a
 * request. The listening socket comes from http_listen.c; the connections' deadlines and
 * the reserve of free connections are kept by http_conns.c.
 *
 * A suspended /wait connection is owned by its waiter in the lag board until the board
 * wakes it (commit, timeout, stop, shutdown); the waiter is freed when the request
 * completes. http_stop answers every waiter before it stops the server, because
 * libmicrohttpd must not be stopped while a connection is still suspended.
 *
 * Hostile input is bounded here: libmicrohttpd refuses connections past max_connections;
 * a request head that is not in within header_timeout_ms is closed, and so are idle
 * connections when fewer than reserved_connections are free; a request line or head
 * larger than max_request_bytes, or with more fields than its memory holds, gets 414 or
 * 431; /wait refuses to suspend more than max_waiters connections, which leaves room for
 * the reserve. The token is compared in constant time, wiped when the server stops, and
 * never logged.
 */
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "base/json_text.h"
#include "base/log.h"
#include "http/http.h"
#include "http/http_internal.h"
#include "http/metrics.h"
#include "os/now.h"
#include "os/thread.h"

#define HTTP_IDLE_TIMEOUT_S 30       /* libmicrohttpd's own, behind header_timeout_ms */
#define HTTP_STOP_DRAIN_MS 2000      /* how long http_stop lets answered waiters flush */
#define HTTP_STOP_FINISH_MS 250      /* and other requests already accepted finish */
#define HTTP_STOP_SETTLE_MS 50       /* late accepts after the quiesce (see finish_connections) */
#define HTTP_WAIT_DEFAULT_MS 5000    /* when the options leave it at 0 */
#define HTTP_WAIT_MAX_MS 60000       /* when the options leave it at 0 */
#define HTTP_MAX_CONNECTIONS 1024    /* when the options leave it at 0 */
#define HTTP_RESERVED_MAX 64         /* the default reserve: 1/8 of the connections, at most this */
#define HTTP_MAX_REQUEST_BYTES 16384 /* when the options leave it at 0 */
#define HTTP_HEADER_TIMEOUT_MS 5000  /* when the options leave it at 0 */
#define HTTP_OPEN_PATH "/healthz"    /* the one endpoint the token does not guard */
#define HTTP_REALM "Bearer realm=\"projector\""

/* libmicrohttpd (0.9.75) keeps a request in one memory pool per connection. Half of it is
 * the read buffer; from the other end it takes a record (56 bytes, 64 aligned) for every
 * header field, query parameter and cookie it parses, and a copy of a Cookie header; what
 * is left holds the answer's headers. When the query parameters overflow the pool it
 * neither answers nor closes, and when the records leave no room for the answer's headers
 * it closes without one. So the pool is sized for max_request_bytes in the read half and
 * for max_request_bytes / HTTP_FIELD_BYTES records plus HTTP_ANSWER_ROOM in the other, and
 * a request with more (or a request too large) is refused before libmicrohttpd parses
 * it, or before it answers. */
#define HTTP_FIELD_BYTES 32   /* one field allowed per this many bytes of max_request_bytes */
#define HTTP_FIELD_COST 64    /* pool bytes one parsed field takes */
#define HTTP_ANSWER_ROOM 4096 /* pool bytes kept for the answer's headers */
/* The read half then holds any request of max_request_bytes with room to spare, so its
 * read buffer never grows into the records' half. */
static_assert(HTTP_FIELD_COST >= HTTP_FIELD_BYTES, "the read half must hold a whole request");

struct Http {
    struct MHD_Daemon *daemon;
    HttpConns *conns; /* deadlines and the reserve; outlives the daemon */
    Board *board;
    unsigned port;
    unsigned wait_default_ms;
    unsigned wait_max_ms;
    size_t request_bytes; /* max_request_bytes */
    size_t fields_max;    /* header fields, query parameters and cookies of one request */
    pthread_mutex_t mu;   /* guards stopping, active_waits and waits_refused */
    pthread_cond_t cond;  /* CLOCK_MONOTONIC; active_waits dropped */
    bool stopping;
    size_t active_waits;  /* /wait requests suspended and not yet completed */
    size_t waiters_max;   /* active_waits never goes past it */
    size_t waits_refused; /* /wait answered 503 because waiters_max were waiting */
    char *token;          /* NULL when none is required; wiped before it is freed */
    size_t token_len;
    atomic_size_t unauthorized; /* requests answered 401 */
    atomic_size_t too_large;    /* requests refused with 414 or 431 here */
};

/* The options with their defaults filled in. */
typedef struct HttpLimits {
    unsigned connections, reserved, waiters, request_bytes, header_timeout_ms;
} HttpLimits;

/* ---- the bearer token ---- */

/* True when given equals the token, byte for byte and in length. The loop runs over every
 * byte of given whatever they hold, with no early exit and no branch on the token's bytes
 * or length (past its end, a mask makes it compare with the token's first byte; the length
 * difference has already failed it), so the time taken depends on the client's input
 * alone. Requires token_len > 0. */
static bool token_equal(const char *given, size_t given_len, const char *token, size_t token_len)
{
    volatile unsigned char diff = (unsigned char)(given_len != token_len);

    for (size_t i = 0; i < given_len; i++) {
        size_t in_token = (size_t)0 - (size_t)(i < token_len); /* all ones, or 0 */
        diff |= (unsigned char)((unsigned char)given[i] ^ (unsigned char)token[i & in_token]);
    }
    return diff == 0;
}

typedef enum { AUTH_OK, AUTH_MISSING, AUTH_INVALID } HttpAuth;

/* Checks "Authorization: Bearer <token>" (the scheme is case-insensitive, RFC 7235). */
static HttpAuth check_token(const Http *h, struct MHD_Connection *c)
{
    const char *value =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t len;

    if (!value || strncasecmp(value, "Bearer ", 7) != 0)
        return AUTH_MISSING;
    value += 7;
    value += strspn(value, " ");
    len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    return token_equal(value, len, h->token, h->token_len) ? AUTH_OK : AUTH_INVALID;
}

static enum MHD_Result respond_unauthorized(Http *h, struct MHD_Connection *c, HttpAuth auth)
{
    HttpHeader challenge = {MHD_HTTP_HEADER_WWW_AUTHENTICATE, HTTP_REALM};

    atomic_fetch_add(&h->unauthorized, 1);
    if (auth == AUTH_MISSING)
        return http_respond_error_with(c, MHD_HTTP_UNAUTHORIZED, "missing bearer token", challenge);
    challenge.value = HTTP_REALM ", error=\"invalid_token\"";
    return http_respond_error_with(c, MHD_HTTP_UNAUTHORIZED, "invalid bearer token", challenge);
}

/* ---- /wait ---- */

static void http_resume(void *arg)
{
    MHD_resume_connection(arg);
}

static enum MHD_Result wait_answer(struct MHD_Connection *c, const BoardWaiter *w)
{
    unsigned status;
    json_t *doc = board_wait_result(w, &status);

    return http_respond_json(c, status, doc);
}

/* A non-negative decimal integer; values past max are clamped to max. */
static bool parse_timeout(const char *s, unsigned max, unsigned *ret)
{
    uint64_t v = 0;

    if (!*s)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        if (v <= max)
            v = v * 10 + (uint64_t)(*p - '0');
    }
    *ret = v > max ? max : (unsigned)v;
    return true;
}

static int wait_parse(const Http *h, struct MHD_Connection *c, BoardWaitRequest *req, PjError *err)
{
    const char *stream = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "stream");
    const char *id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "id");
    const char *rm = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "readmodel");
    const char *timeout = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "timeout_ms");

    *req = (BoardWaitRequest){.stream = stream, .readmodel = rm, .timeout_ms = h->wait_default_ms};
    if (!stream || !*stream)
        return pj_error_set(err, PJ_EINVAL, "missing query parameter \"stream\"");
    if (!id || !*id)
        return pj_error_set(err, PJ_EINVAL, "missing query parameter \"id\"");
    if (stream_id_parse(id, &req->id) < 0)
        return pj_error_set(err, PJ_EINVAL, "invalid entry ID \"%s\": expected <ms>-<seq>", id);
    if (rm && !*rm)
        return pj_error_set(err, PJ_EINVAL, "empty query parameter \"readmodel\"");
    if (timeout && !parse_timeout(timeout, h->wait_max_ms, &req->timeout_ms))
        return pj_error_set(err, PJ_EINVAL,
                            "invalid timeout_ms \"%s\": expected a non-negative integer", timeout);
    if (req->timeout_ms > h->wait_max_ms)
        req->timeout_ms = h->wait_max_ms;
    return 0;
}

/* Answers at once when it can; otherwise suspends the connection until the board wakes it.
 * Holding h->mu from registration to arming means http_stop, which takes it to set
 * stopping, finds every waiter of this server registered. */
static enum MHD_Result wait_start(Http *h, struct MHD_Connection *c, HttpConn *conn)
{
    BoardWaitRequest req;
    PjError err = {0};
    BoardWaiter *w;
    enum MHD_Result ret;

    if (wait_parse(h, c, &req, &err) < 0)
        return http_respond_error(c, MHD_HTTP_BAD_REQUEST, err.message);
    req.owner = h;
    req.wake = http_resume;
    req.wake_arg = c;
    pthread_mutex_lock(&h->mu);
    if (h->stopping) {
        pthread_mutex_unlock(&h->mu);
        return http_respond_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down");
    }
    if (board_wait_begin(h->board, &req, &w, &err) < 0) {
        pthread_mutex_unlock(&h->mu);
        return http_respond_error(c, MHD_HTTP_NOT_FOUND, err.message);
    }
    if (board_wait_done(h->board, w)) {
        pthread_mutex_unlock(&h->mu);
        ret = wait_answer(c, w);
        (void)board_wait_free(h->board, w);
        return ret;
    }
    if (h->active_waits >= h->waiters_max) {
        h->waits_refused++;
        pthread_mutex_unlock(&h->mu);
        (void)board_wait_free(h->board, w);
        return http_respond_error_with(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many waiters",
                                       (HttpHeader){MHD_HTTP_HEADER_RETRY_AFTER, "1"});
    }
    conn->waiter = w;
    h->active_waits++;
    http_conns_enter(h->conns, conn, HTTP_CONN_WAITING);
    MHD_suspend_connection(c);
    if (board_wait_arm(h->board, w))
        MHD_resume_connection(c); /* finished in between: nobody else will wake it */
    pthread_mutex_unlock(&h->mu);
    return MHD_YES;
}

/* The request is over (answered, or its client gone): a waiter is freed, and the
 * connection waits for its next request head. */
static void http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    Http *h = cls;
    HttpConn *conn = *con_cls;
    BoardWaiter *w;

    (void)c;
    (void)toe;
    if (!conn)
        return;
    w = conn->waiter;
    conn->waiter = NULL;
    conn->in_request = false;
    http_conns_enter(h->conns, conn, HTTP_CONN_HEAD);
    http_conns_check_end(h->conns, conn);
    if (!w)
        return;
    (void)board_wait_free(h->board, w);
    pthread_mutex_lock(&h->mu);
    h->active_waits--;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->mu);
}

/* ---- the other endpoints ---- */

static enum MHD_Result serve_lag_one(Http *h, struct MHD_Connection *c, const char *name)
{
    int rm = model_set_find(board_models(h->board), name);
    char *message;
    enum MHD_Result ret;

    if (rm >= 0)
        return http_respond_json(c, MHD_HTTP_OK, board_json(h->board, rm));
    message = xasprintf("unknown read model \"%s\"", name);
    ret = http_respond_error(c, MHD_HTTP_NOT_FOUND, message);
    free(message);
    return ret;
}

static enum MHD_Result serve_readyz(Http *h, struct MHD_Connection *c)
{
    bool ready = board_ready(h->board);
    json_t *lag = board_json(h->board, -1), *doc = json_object(), *rms = json_array();
    json_t *rm;
    size_t i;

    json_array_foreach(json_object_get(lag, "readmodels"), i, rm)
    {
        json_t *o = json_object();
        json_object_set(o, "name", json_object_get(rm, "name"));
        json_object_set(o, "state", json_object_get(rm, "state"));
        json_object_set(o, "reason", json_object_get(rm, "reason"));
        json_array_append_new(rms, o);
    }
    json_decref(lag);
    json_object_set_new(doc, "status", json_string(ready ? "ready" : "not_ready"));
    json_object_set_new(doc, "readmodels", rms);
    return http_respond_json(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, doc);
}

/* The server's own counters ride along in the document metrics_render reads. */
static json_t *http_counters(Http *h)
{
    json_int_t refused, unauthorized = (json_int_t)atomic_load(&h->unauthorized);
    json_int_t too_large = (json_int_t)atomic_load(&h->too_large);
    HttpConnsStats cs = http_conns_stats(h->conns);

    pthread_mutex_lock(&h->mu);
    refused = (json_int_t)h->waits_refused;
    pthread_mutex_unlock(&h->mu);
    return json_pack("{s:I,s:I,s:I,s:I,s:I}", "waits_refused", refused, "unauthorized",
                     unauthorized, "too_large", too_large, "header_timeouts",
                     (json_int_t)cs.timeouts, "evictions", (json_int_t)cs.evictions);
}

static enum MHD_Result serve_metrics(Http *h, struct MHD_Connection *c)
{
    json_t *lag = board_json(h->board, -1);
    char *text;

    json_object_set_new(lag, "http", http_counters(h));
    json_object_set_new(lag, "stats", board_metrics_json(h->board));
    text = metrics_render(lag, board_wait_pending(h->board));
    json_decref(lag);
    return http_queue_body(c, MHD_HTTP_OK, text, "text/plain; version=0.0.4; charset=utf-8",
                           (HttpHeader){NULL, NULL});
}

static enum MHD_Result serve_not_found(struct MHD_Connection *c, const char *url)
{
    char *message = xasprintf("unknown path \"%s\"", url);
    enum MHD_Result ret = http_respond_error(c, MHD_HTTP_NOT_FOUND, message);

    free(message);
    return ret;
}

static enum MHD_Result serve_not_allowed(struct MHD_Connection *c, const char *method)
{
    json_t *doc = json_object();
    char *message = xasprintf("method \"%s\" is not allowed", method);
    char *text;

    json_object_set_new(doc, "error", json_text_string(message));
    free(message);
    text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(doc);
    message = xasprintf("%s\n", text ? text : "{}");
    free(text);
    return http_queue_body(c, MHD_HTTP_METHOD_NOT_ALLOWED, message, "application/json",
                           (HttpHeader){MHD_HTTP_HEADER_ALLOW, "GET, HEAD"});
}

/* ---- request limits ---- */

static HttpConn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    assert(info != NULL && info->socket_context != NULL);
    return info->socket_context;
}

/* The query parameters libmicrohttpd will make of uri: one more than the '&'s after '?'. */
static size_t query_fields(const char *uri)
{
    const char *q = strchr(uri, '?');
    size_t n = 1;

    if (!q || !q[1])
        return 0;
    for (q++; *q; q++)
        n += *q == '&';
    return n;
}

/* Answers status with {"error": message} on the socket itself, and closes the connection:
 * for a request that libmicrohttpd's memory would leave unanswered. */
static void refuse(Http *h, HttpConn *conn, unsigned status, const char *message)
{
    json_t *doc = json_object();
    char *text, *body, *answer;

    json_object_set_new(doc, "error", json_text_string(message));
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    body = xasprintf("%s\n", text ? text : "{}");
    answer = xasprintf("HTTP/1.1 %u %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                       "Cache-Control: no-store\r\nContent-Length: %zu\r\n\r\n%s",
                       status, MHD_get_reason_phrase_for(status), strlen(body), body);
    log_debug("http", "refused a request with %u: %s", status, message);
    http_conns_refuse(h->conns, conn, answer, strlen(answer));
    atomic_fetch_add(&h->too_large, 1);
    free(answer);
    free(body);
    free(text);
}

/* libmicrohttpd calls this with the request target as soon as the request line is in, and
 * before it parses the query: the one moment a query with more parameters than the pool
 * holds can still be answered. Returns the request's context, the connection. */
static void *http_uri_seen(void *cls, const char *uri, struct MHD_Connection *c)
{
    Http *h = cls;
    HttpConn *conn = conn_of(c);
    char message[96];

    if (!uri) /* no target: libmicrohttpd answers 400 */
        return conn;
    if (strlen(uri) > h->request_bytes) {
        snprintf(message, sizeof(message), "request target longer than %zu bytes",
                 h->request_bytes);
        refuse(h, conn, MHD_HTTP_URI_TOO_LONG, message);
    } else if (query_fields(uri) > h->fields_max) {
        snprintf(message, sizeof(message), "more than %zu query parameters", h->fields_max);
        refuse(h, conn, MHD_HTTP_URI_TOO_LONG, message);
    }
    return conn;
}

/* Whether the request head, all in, is within the limits; refuses it if not. The fields'
 * records and the copy of a Cookie header must leave HTTP_ANSWER_ROOM of the pool. */
static bool head_fits(Http *h, struct MHD_Connection *c, HttpConn *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    const char *cookie = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_COOKIE);
    enum MHD_ValueKind kinds =
        (enum MHD_ValueKind)(MHD_HEADER_KIND | MHD_COOKIE_KIND | MHD_GET_ARGUMENT_KIND);
    size_t fields = (size_t)MHD_get_connection_values(c, kinds, NULL, NULL);
    size_t records = fields * HTTP_FIELD_COST + (cookie ? strlen(cookie) + 1 : 0);
    char message[96];

    assert(info != NULL); /* known once the head is in */
    if (info->header_size > h->request_bytes) {
        snprintf(message, sizeof(message), "request head longer than %zu bytes", h->request_bytes);
        refuse(h, conn, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, message);
        return false;
    }
    if (records > h->fields_max * HTTP_FIELD_COST) {
        snprintf(message, sizeof(message), "more than %zu header fields and query parameters",
                 h->fields_max);
        refuse(h, conn, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, message);
        return false;
    }
    return true;
}

/* ---- routing ---- */

static enum MHD_Result route(Http *h, struct MHD_Connection *c, HttpConn *conn, const char *url,
                             const char *method)
{
    if (h->token && strcmp(url, HTTP_OPEN_PATH) != 0) {
        HttpAuth auth = check_token(h, c);
        if (auth != AUTH_OK)
            return respond_unauthorized(h, c, auth);
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return serve_not_allowed(c, method);
    if (strcmp(url, "/wait") == 0)
        return wait_start(h, c, conn);
    if (strcmp(url, "/lag") == 0 || strcmp(url, "/lag/") == 0)
        return http_respond_json(c, MHD_HTTP_OK, board_json(h->board, -1));
    if (strncmp(url, "/lag/", 5) == 0)
        return serve_lag_one(h, c, url + 5);
    if (strcmp(url, "/healthz") == 0)
        return http_respond_json(c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
    if (strcmp(url, "/readyz") == 0)
        return serve_readyz(h, c);
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(h, c);
    return serve_not_found(c, url);
}

/* True when the request says it has a body, which no endpoint takes. */
static bool has_body(struct MHD_Connection *c)
{
    const char *length =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);

    return (length && strcmp(length, "0") != 0) ||
           MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
}

/* libmicrohttpd calls this once the request head is in, again when the body (none here)
 * is in, and again for a /wait the board resumed. Answering on the second call, not the
 * first, is what keeps the connection open for the next request: an answer queued on the
 * first call makes libmicrohttpd close the connection after it. */
static enum MHD_Result http_handle(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    Http *h = cls;
    HttpConn *conn = *con_cls;

    (void)version;
    (void)upload_data;
    assert(conn != NULL); /* set by http_uri_seen */
    if (conn->refused)
        return MHD_NO; /* answered already; libmicrohttpd closes the connection */
    if (conn->waiter) {
        http_conns_enter(h->conns, conn, HTTP_CONN_BUSY);
        return wait_answer(c, conn->waiter); /* a /wait resumed by the board */
    }
    if (!conn->in_request) {
        conn->in_request = true;
        http_conns_enter(h->conns, conn, HTTP_CONN_BUSY);
        if (!head_fits(h, c, conn))
            return MHD_NO;
        /* A body is never read: answered now, and the connection closed after. */
        if (!has_body(c))
            return MHD_YES;
    }
    *upload_data_size = 0;
    return route(h, c, conn, url, method);
}

/* ---- connections ---- */

/* A connection opens (its deadline starts) or is about to be closed by libmicrohttpd. */
static void http_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                            enum MHD_ConnectionNotificationCode toe)
{
    Http *h = cls;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        assert(info != NULL);
        *socket_context = http_conns_open(h->conns, (int)info->connect_fd);
    } else if (*socket_context) {
        http_conns_close(h->conns, *socket_context);
        *socket_context = NULL;
    }
}

/* ---- lifecycle ---- */

/* The default reserve: an eighth of the connections, at most HTTP_RESERVED_MAX. */
static unsigned default_reserved(unsigned connections)
{
    unsigned eighth = connections / 8;

    if (eighth == 0)
        return 1;
    return eighth < HTTP_RESERVED_MAX ? eighth : HTTP_RESERVED_MAX;
}

/* The default waiter limit: the connections beside twice the reserve (1024 - 128 = 896,
 * as the configuration's default), so that they fit with room for other requests. */
static unsigned default_waiters(unsigned connections, unsigned reserved)
{
    return connections > 2 * reserved ? connections - 2 * reserved : 1;
}

/* The options with their defaults filled in, and checked against each other. */
static int resolve_limits(const HttpOptions *opts, HttpLimits *l, PjError *err)
{
    size_t token_len = opts->token ? strlen(opts->token) : 0;

    l->connections = opts->max_connections ? opts->max_connections : HTTP_MAX_CONNECTIONS;
    l->reserved =
        opts->reserved_connections ? opts->reserved_connections : default_reserved(l->connections);
    l->waiters =
        opts->max_waiters ? opts->max_waiters : default_waiters(l->connections, l->reserved);
    l->request_bytes = opts->max_request_bytes ? opts->max_request_bytes : HTTP_MAX_REQUEST_BYTES;
    l->header_timeout_ms =
        opts->header_timeout_ms ? opts->header_timeout_ms : HTTP_HEADER_TIMEOUT_MS;
    if (token_len > 0 && token_len < CONFIG_TOKEN_MIN)
        return pj_error_set(err, PJ_EINVAL, "the token is shorter than %d characters",
                            CONFIG_TOKEN_MIN);
    if (l->reserved >= l->connections)
        return pj_error_set(err, PJ_EINVAL,
                            "reserved_connections (%u) must be below max_connections (%u)",
                            l->reserved, l->connections);
    if (l->waiters >= l->connections - l->reserved)
        return pj_error_set(err, PJ_EINVAL,
                            "max_waiters (%u) must be below max_connections (%u) minus "
                            "reserved_connections (%u)",
                            l->waiters, l->connections, l->reserved);
    return 0;
}

/* libmicrohttpd's memory for one connection (see HTTP_FIELD_BYTES). */
static size_t pool_bytes(const Http *h)
{
    return 2 * (h->fields_max * HTTP_FIELD_COST + HTTP_ANSWER_ROOM);
}

static struct MHD_Daemon *start_daemon(Http *h, const HttpLimits *l, int fd)
{
    unsigned flags =
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

    /* The logger comes first so that libmicrohttpd reports every later option through it. */
    return MHD_start_daemon(
        flags, 0, NULL, NULL, http_handle, h, MHD_OPTION_EXTERNAL_LOGGER, http_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT, l->connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool_bytes(h), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)HTTP_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION, http_connection, h,
        MHD_OPTION_URI_LOG_CALLBACK, http_uri_seen, h, MHD_OPTION_NOTIFY_COMPLETED, http_completed,
        h, MHD_OPTION_END);
}

static Http *http_alloc(const HttpOptions *opts, const HttpLimits *l, Board *board)
{
    Http *h = xcalloc(1, sizeof(*h));
    HttpConnsOptions co = {.head_timeout_ms = l->header_timeout_ms,
                           .soft_limit = l->connections - l->reserved};

    h->board = board;
    h->wait_max_ms = opts->wait_timeout_max_ms ? opts->wait_timeout_max_ms : HTTP_WAIT_MAX_MS;
    h->wait_default_ms =
        opts->wait_timeout_default_ms ? opts->wait_timeout_default_ms : HTTP_WAIT_DEFAULT_MS;
    if (h->wait_default_ms > h->wait_max_ms)
        h->wait_default_ms = h->wait_max_ms;
    h->waiters_max = l->waiters;
    h->request_bytes = l->request_bytes;
    h->fields_max = l->request_bytes / HTTP_FIELD_BYTES;
    if (opts->token && *opts->token) {
        h->token = xstrdup(opts->token);
        h->token_len = strlen(h->token);
    }
    atomic_init(&h->unauthorized, 0);
    atomic_init(&h->too_large, 0);
    pthread_mutex_init(&h->mu, NULL);
    thread_cond_init_monotonic(&h->cond);
    h->conns = http_conns_new(&co);
    return h;
}

static void http_release(Http *h)
{
    h->conns = http_conns_free(h->conns);
    if (h->token)
        explicit_bzero(h->token, h->token_len);
    free(h->token);
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

/* Anyone who can reach an address other than loopback can read the lag and the metrics and
 * hold connections with /wait: said once, when the socket is bound. */
static void warn_if_open(const HttpOptions *opts, int fd)
{
    if ((opts->token && *opts->token) || http_listen_is_loopback(fd))
        return;
    log_warn("http",
             "listening on \"%s\", which is not a loopback address, without a token: anyone "
             "who reaches it can read /lag and /metrics and hold connections with /wait; set "
             "http.token",
             opts->listen);
}

int http_start(const HttpOptions *opts, Board *board, Http **ret, PjError *err)
{
    HttpLimits limits;
    Http *h;
    int fd = -1, rc;
    unsigned port = 0;

    assert(opts != NULL && board != NULL && ret != NULL);
    rc = resolve_limits(opts, &limits, err);
    if (rc < 0) {
        if (opts->has_listener)
            close(opts->listener_fd);
        return rc;
    }
    if (opts->has_listener) {
        fd = opts->listener_fd;
    } else if ((rc = http_listen_open(opts->listen, &fd, &port, err)) < 0) {
        return rc;
    } else {
        warn_if_open(opts, fd);
    }
    h = http_alloc(opts, &limits, board);
    h->port = port;
    h->daemon = start_daemon(h, &limits, fd);
    if (!h->daemon) {
        close(fd);
        http_release(h);
        return pj_error_set(err, PJ_EIO, "could not start the HTTP server on \"%s\"", opts->listen);
    }
    *ret = h;
    return 0;
}

/* Lets the answered waiters reach their clients, for at most HTTP_STOP_DRAIN_MS. */
static void drain_waits(Http *h)
{
    int64_t deadline = now_monotonic_ms() + HTTP_STOP_DRAIN_MS;
    struct timespec ts = thread_monotonic_timespec(deadline);

    pthread_mutex_lock(&h->mu);
    while (h->active_waits > 0) {
        if (pthread_cond_timedwait(&h->cond, &h->mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&h->mu);
}

Http *http_stop(Http *h)
{
    int fd;

    h = http_stop_keep(h, &fd);
    if (fd >= 0)
        close(fd);
    return h;
}

/* Lets the connections accepted before the quiesce finish their request (an idle
 * keep-alive one holds this for at most HTTP_STOP_FINISH_MS). libmicrohttpd's thread may
 * still accept a connection for a short while after MHD_quiesce_daemon returns, so none
 * left is only believed after HTTP_STOP_SETTLE_MS. */
static void finish_connections(Http *h)
{
    int64_t now = now_monotonic_ms();
    int64_t settled = now + HTTP_STOP_SETTLE_MS, deadline = now + HTTP_STOP_FINISH_MS;

    for (;;) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        now = now_monotonic_ms();
        if (!info || (info->num_connections == 0 && now >= settled) || now >= deadline)
            return;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&ts, NULL);
    }
}

Http *http_stop_keep(Http *h, int *ret_fd)
{
    MHD_socket fd;

    *ret_fd = -1;
    if (!h)
        return NULL;
    pthread_mutex_lock(&h->mu);
    h->stopping = true;
    pthread_mutex_unlock(&h->mu);
    fd = MHD_quiesce_daemon(h->daemon);
    board_wait_abort_owner(h->board, h);
    drain_waits(h);
    finish_connections(h);
    /* Every connection is reported closed to h->conns, which http_release then frees. */
    MHD_stop_daemon(h->daemon);
    if (fd != MHD_INVALID_SOCKET)
        *ret_fd = fd;
    http_release(h);
    return NULL;
}

unsigned http_port(const Http *h)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);

    if (info && info->port != 0)
        return info->port;
    return h->port;
}
