/* latency.c - `latency SOURCE_URL TARGET_URL HTTP_PORT RATE COUNT WARMUP [DAEMON_PID]`: the
 * benchmark's read-your-writes latency under a steady load.
 *
 * Replays the feed found in SOURCE (gen_feed's streams, merged back into feed order by
 * their explicit IDs) into TARGET at RATE events/s, open loop: the sending thread XADDs
 * each event on its slot whatever earlier events are doing and sends a GET /wait for its
 * ID at once on its own connection; the receiving thread (epoll) stamps each answer as it
 * arrives. Latency is the time from before XADD to the 200's status line; the first WARMUP
 * events are not counted. Prints one JSON line.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "base/config.h"
#include "base/util.h"

#define LAT_MAX_OPEN 880 /* requests in flight; below http.max_waiters (896) */
#define LAT_WAIT_MS 10000
#define LAT_ARGS_MAX 32

/* One entry of the source feed. */
typedef struct Entry {
    unsigned long long seq; /* the sequence part of its explicit ID: its feed position */
    int argc;
    char **argv; /* XADD stream * field value ... (owned) */
    size_t *lens;
} Entry;

/* One event's /wait. */
typedef struct Req {
    int fd;
    const char *stream; /* borrowed from its Entry */
    char id[48];        /* the ID its XADD returned */
    bool sent;          /* connected, and the request sent */
    double t0;          /* before its XADD */
    double ms;          /* latency once answered 200; -1 for any other outcome */
    bool answered;
    char head[32]; /* the start of the answer, up to its status code */
    size_t head_len;
} Req;

typedef struct Lat {
    redisContext *target;
    int port;
    Entry *entries;
    size_t nentries, cap;
    Req *req; /* per event sent */
    long total, warmup;
    int epfd;
    pthread_mutex_t mu; /* guards req[], open and sending_done between the two threads */
    int open;           /* requests in flight */
    bool sending_done;
    long late;                    /* counted sends more than 1 ms behind their slot */
    double xadd_max, connect_max; /* seconds: the slowest XADD, the slowest connect() call */
    double first_send, last_send; /* of the counted events */
    double run_s;                 /* the whole run, warm-up included */
} Lat;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
    struct timespec ts = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - (double)(time_t)t) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "latency: %s: %s\n", what, detail != NULL ? detail : "");
    exit(1);
}

/* ---- the source feed ---- */

static redisContext *connect_redis(const char *url)
{
    RedisAddr addr = {0};
    PjError err = {0};
    redisContext *c;
    redisReply *r;

    if (redis_addr_parse(url, &addr, &err) != 0)
        die("bad Redis URL", err.message);
    c = redisConnect(addr.host, addr.port);
    if (c == NULL || c->err != 0)
        die("could not connect to Redis", c != NULL ? c->errstr : "out of memory");
    r = redisCommand(c, "SELECT %d", addr.db);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        die("could not select the Redis database", c->errstr);
    freeReplyObject(r);
    redis_addr_done(&addr);
    return c;
}

static void entry_add(Lat *l, const char *stream, const redisReply *e)
{
    const redisReply *fields = e->element[1];
    const char *dash = strchr(e->element[0]->str, '-');
    Entry *en;

    if (fields->elements + 3 > LAT_ARGS_MAX)
        die("entry with too many fields", e->element[0]->str);
    xgrow((void **)&l->entries, &l->cap, l->nentries + 1, sizeof *l->entries);
    en = &l->entries[l->nentries++];
    en->seq = dash != NULL ? strtoull(dash + 1, NULL, 10) : 0;
    en->argc = (int)fields->elements + 3;
    en->argv = xcalloc((size_t)en->argc, sizeof *en->argv);
    en->lens = xcalloc((size_t)en->argc, sizeof *en->lens);
    en->argv[0] = xstrdup("XADD");
    en->argv[1] = xstrdup(stream);
    en->argv[2] = xstrdup("*");
    for (size_t i = 0; i < fields->elements; i++)
        en->argv[3 + i] = xstrndup(fields->element[i]->str, fields->element[i]->len);
    for (int i = 0; i < en->argc; i++)
        en->lens[i] = strlen(en->argv[i]);
}

static void load_stream(Lat *l, redisContext *c, const char *stream)
{
    redisReply *r = redisCommand(c, "XRANGE %s - +", stream);

    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        die("XRANGE failed", r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
    for (size_t i = 0; i < r->elements; i++)
        entry_add(l, stream, r->element[i]);
    freeReplyObject(r);
}

static int entry_cmp(const void *a, const void *b)
{
    unsigned long long x = ((const Entry *)a)->seq, y = ((const Entry *)b)->seq;
    return x < y ? -1 : x > y;
}

/* ---- requests ---- */

/* Starts a non-blocking connection to the daemon: the sender never waits on it. */
static int wait_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS))
        die("could not connect to the daemon", strerror(errno));
    return fd;
}

/* Once connected, sends event i's GET /wait and waits for the answer; false when the
 * connection failed. Called with l->mu held. */
static bool send_request(Lat *l, long i)
{
    Req *q = &l->req[i];
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
    char req[256];
    int err = 0, len;
    socklen_t errlen = sizeof err;

    if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &errlen) != 0 || err != 0)
        return false;
    len = snprintf(req, sizeof req,
                   "GET /wait?stream=%s&id=%s&timeout_ms=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Connection: close\r\n\r\n",
                   q->stream, q->id, LAT_WAIT_MS);
    if (send(q->fd, req, (size_t)len, MSG_NOSIGNAL) != len)
        return false; /* a fresh socket's buffer always takes a few hundred bytes */
    q->sent = true;
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, q->fd, &ev) != 0)
        die("epoll_ctl", strerror(errno));
    return true;
}

/* Reads what the answer of event i has; true when its connection is done (EOF or
 * error). Called with l->mu held. */
static bool read_answer(Lat *l, long i, double t)
{
    Req *q = &l->req[i];
    char buf[4096];
    int status;

    for (;;) {
        ssize_t n = recv(q->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (n <= 0) {
            if (!q->answered)
                q->ms = -1; /* closed without an answer */
            q->answered = true;
            return true;
        }
        size_t room = sizeof q->head - 1 - q->head_len, take = (size_t)n < room ? (size_t)n : room;
        memcpy(q->head + q->head_len, buf, take);
        q->head_len += take;
        q->head[q->head_len] = '\0';
        if (!q->answered && sscanf(q->head, "HTTP/%*d.%*d %d ", &status) == 1 &&
            strchr(q->head + 9, ' ') != NULL) {
            q->answered = true;
            q->ms = status == 200 ? (t - q->t0) * 1e3 : -1;
        }
    }
}

/* The receiving thread: stamps answers as they come until every request is done. */
static void *receiver(void *arg)
{
    Lat *l = arg;
    struct epoll_event ev[64];

    for (;;) {
        pthread_mutex_lock(&l->mu);
        bool done = l->sending_done && l->open == 0;
        pthread_mutex_unlock(&l->mu);
        if (done)
            return NULL;
        int n = epoll_wait(l->epfd, ev, (int)ARRAY_SIZE(ev), 50);
        double t = now_s();
        pthread_mutex_lock(&l->mu);
        for (int k = 0; k < n; k++) {
            long i = (long)ev[k].data.u64;
            bool failed = !l->req[i].sent && !send_request(l, i);
            if (failed)
                l->req[i].ms = -1;
            if (failed || (l->req[i].sent && read_answer(l, i, t))) {
                close(l->req[i].fd);
                l->open--;
            }
        }
        pthread_mutex_unlock(&l->mu);
    }
}

static int open_requests(Lat *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->open;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* XADDs event i to the target and sends its /wait. */
static void send_event(Lat *l, long i, double t0)
{
    const Entry *en = &l->entries[i];
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
    const char *args[LAT_ARGS_MAX]; /* the owned strings, as redisCommandArgv takes them */
    for (int k = 0; k < en->argc; k++)
        args[k] = en->argv[k];
    redisReply *r = redisCommandArgv(l->target, en->argc, args, en->lens);
    double t1 = now_s(), t2;
    int fd;

    if (r == NULL || r->type != REDIS_REPLY_STRING)
        die("XADD failed", r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : l->target->errstr);
    if ((size_t)r->len >= sizeof l->req[i].id)
        die("XADD returned an unexpected ID", r->str);
    fd = wait_connect(l->port);
    t2 = now_s();
    l->xadd_max = t1 - t0 > l->xadd_max ? t1 - t0 : l->xadd_max;
    l->connect_max = t2 - t1 > l->connect_max ? t2 - t1 : l->connect_max;
    pthread_mutex_lock(&l->mu);
    l->req[i] = (Req){.fd = fd, .t0 = t0, .stream = en->argv[1]};
    memcpy(l->req[i].id, r->str, (size_t)r->len + 1);
    l->open++;
    pthread_mutex_unlock(&l->mu);
    freeReplyObject(r);
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl", strerror(errno));
}

/* ---- the run ---- */

/* utime + stime of pid in seconds; 0 when unknown. */
static double proc_cpu(long pid)
{
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    const char *p;
    size_t n;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (pid <= 0 || (f = fopen(path, "r")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if ((p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Sends every event on its slot (late ones at once) while the receiver collects. */
static void run(Lat *l, double rate)
{
    pthread_t th;
    double start = now_s() + 0.01;

    if (pthread_create(&th, NULL, receiver, l) != 0)
        die("could not start the receiving thread", strerror(errno));
    for (long i = 0; i < l->total; i++) {
        double slot = start + (double)i / rate, t;
        sleep_until(slot);
        while (open_requests(l) >= LAT_MAX_OPEN)
            sleep_until(now_s() + 1e-4);
        t = now_s();
        if (i == l->warmup)
            l->first_send = t;
        l->late += i >= l->warmup && t - slot > 1e-3;
        send_event(l, i, t);
        l->last_send = t;
    }
    pthread_mutex_lock(&l->mu);
    l->sending_done = true;
    pthread_mutex_unlock(&l->mu);
    pthread_join(th, NULL);
    l->run_s = now_s() - start;
}

/* TcpExt ListenOverflows of /proc/net/netstat: SYNs dropped because a listen queue was
 * full, each one a connect() retried a second later. Counts the whole host. */
static long listen_overflows(void)
{
    char names[4096], values[4096];
    long found = -1;
    FILE *f = fopen("/proc/net/netstat", "r");

    while (f != NULL && fgets(names, sizeof names, f) != NULL &&
           fgets(values, sizeof values, f) != NULL) {
        if (strncmp(names, "TcpExt:", 7) != 0)
            continue;
        char *sn, *sv, *n = strtok_r(names, " \n", &sn), *v = strtok_r(values, " \n", &sv);
        for (; n != NULL && v != NULL;
             n = strtok_r(NULL, " \n", &sn), v = strtok_r(NULL, " \n", &sv))
            if (strcmp(n, "ListenOverflows") == 0)
                found = atol(v);
    }
    if (f != NULL)
        fclose(f);
    return found;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, long n, double p)
{
    long i = (long)(p * (double)n);
    return n == 0 ? 0 : v[i < n ? i : n - 1];
}

static void report(const Lat *l, double rate, double cpu, long overflows)
{
    long count = l->total - l->warmup, ok = 0;
    double *ms = xcalloc((size_t)count, sizeof *ms), sum = 0, span = l->last_send - l->first_send;

    for (long i = l->warmup; i < l->total; i++)
        if (l->req[i].ms >= 0) {
            ms[ok++] = l->req[i].ms;
            sum += l->req[i].ms;
        }
    qsort(ms, (size_t)ok, sizeof *ms, cmp_double);
    printf("{\"events\":%ld,\"warmup\":%ld,\"rate\":%.0f,\"achieved_rate\":%.1f,\"ok\":%ld,"
           "\"failed\":%ld,\"late_sends\":%ld,\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"daemon_cpu_seconds\":%.2f,"
           "\"daemon_cpu_percent\":%.1f,\"xadd_max_ms\":%.3f,\"connect_max_ms\":%.3f,"
           "\"listen_overflows\":%ld}\n",
           count, l->warmup, rate, span > 0 ? (double)(count - 1) / span : 0.0, ok, count - ok,
           l->late, ok > 0 ? sum / (double)ok : 0.0, pct(ms, ok, 0.50), pct(ms, ok, 0.90),
           pct(ms, ok, 0.99), pct(ms, ok, 0.999), ok > 0 ? ms[ok - 1] : 0.0, cpu,
           l->run_s > 0 ? cpu * 100.0 / l->run_s : 0.0, l->xadd_max * 1e3, l->connect_max * 1e3,
           overflows);
    free(ms);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void load_feed(Lat *l, const char *url)
{
    redisContext *src = connect_redis(url);

    load_stream(l, src, "customers");
    load_stream(l, src, "orders");
    redisFree(src);
    qsort(l->entries, l->nentries, sizeof *l->entries, entry_cmp);
}

int main(int argc, char **argv)
{
    Lat l = {.mu = PTHREAD_MUTEX_INITIALIZER};
    double rate, cpu0;
    long pid, overflows0;

    if (argc < 7 || argc > 8) {
        fprintf(stderr, "usage: latency SOURCE_URL TARGET_URL HTTP_PORT RATE COUNT WARMUP "
                        "[DAEMON_PID]\n");
        return 2;
    }
    l.port = atoi(argv[3]);
    rate = atof(argv[4]);
    l.warmup = atol(argv[6]);
    l.total = l.warmup + atol(argv[5]);
    pid = argc > 7 ? atol(argv[7]) : 0;
    if (l.port <= 0 || rate <= 0 || l.total <= l.warmup || l.warmup < 0)
        die("bad arguments", "PORT, RATE and COUNT must be positive");
    raise_fd_limit();
    load_feed(&l, argv[1]);
    if ((long)l.nentries < l.total)
        die("the source feed is too short", argv[1]);
    l.target = connect_redis(argv[2]);
    l.req = xcalloc((size_t)l.total, sizeof *l.req);
    if ((l.epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        die("epoll_create1", strerror(errno));
    cpu0 = proc_cpu(pid);
    overflows0 = listen_overflows();
    run(&l, rate);
    report(&l, rate, proc_cpu(pid) - cpu0, listen_overflows() - overflows0);
    for (size_t i = 0; i < l.nentries; i++) {
        for (int k = 0; k < l.entries[i].argc; k++)
            free(l.entries[i].argv[k]);
        free(l.entries[i].argv);
        free(l.entries[i].lens);
    }
    free(l.entries);
    free(l.req);
    close(l.epfd);
    redisFree(l.target);
    return 0;
}
