/* wait_latency.c - read-your-writes latency: XADD an order event at a steady rate, then
 * GET /wait for its ID, and report the time from XADD to the 200 (p50/p99/max).
 *
 *   wait_latency REDIS_URL HTTP_PORT [EVENTS_PER_S] [COUNT]
 * Needs a running daemon on the shipped read models. Prints figures; never fails on time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/config.h"
#include "testenv.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static redisContext *connect_redis(const char *url)
{
    RedisAddr addr;
    PjError err;
    if (redis_addr_parse(url, &addr, &err) < 0) {
        fprintf(stderr, "wait_latency: %s\n", err.message);
        exit(2);
    }
    redisContext *c = redisConnect(addr.host, addr.port);
    if (c == NULL || c->err) {
        fprintf(stderr, "wait_latency: could not connect to Redis\n");
        exit(1);
    }
    if (addr.db != 0)
        freeReplyObject(redisCommand(c, "SELECT %d", addr.db));
    redis_addr_done(&addr);
    return c;
}

/* Sends one event and waits for it; returns the latency in ms, or -1. */
static double one(redisContext *c, int port, int i)
{
    char id[48], path[160], payload[256];
    snprintf(payload, sizeof payload,
             "{\"orderId\":\"lat-%d\",\"customerId\":\"lat-c\",\"items\":[1],"
             "\"total\":{\"amount\":\"1.00\",\"currency\":\"EUR\"}}",
             i);
    json_t *f =
        json_pack("{s:s, s:s, s:s}", "type", "order.placed", "version", "1", "payload", payload);
    double t0 = now_ms();
    testenv_xadd(c, "orders", f, id);
    json_decref(f);
    snprintf(path, sizeof path, "/wait?stream=orders&id=%s&timeout_ms=5000", id);
    int status = testenv_http_get(port, path, NULL);
    return status == 200 ? now_ms() - t0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: wait_latency REDIS_URL HTTP_PORT [EVENTS_PER_S] [COUNT]\n");
        return 2;
    }
    int port = atoi(argv[2]);
    double rate = argc > 3 ? atof(argv[3]) : 200;
    int count = argc > 4 ? atoi(argv[4]) : 2000;
    redisContext *c = connect_redis(argv[1]);
    json_t *reg = json_pack("{s:s, s:s}", "type", "customer.registered", "payload",
                            "{\"customerId\":\"lat-c\",\"name\":\"Latency\"}");
    char id[48];
    testenv_xadd(c, "customers", reg, id);
    json_decref(reg);
    double *lat = calloc((size_t)count, sizeof *lat);
    int ok = 0, failed = 0;
    double start = now_ms();
    for (int i = 0; i < count; i++) {
        double slot = start + i * 1000.0 / rate;
        while (now_ms() < slot) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        double ms = one(c, port, i);
        if (ms < 0)
            failed++;
        else
            lat[ok++] = ms;
    }
    qsort(lat, (size_t)ok, sizeof *lat, cmp_double);
    if (ok > 0)
        printf("wait latency over %d events at %.0f/s: p50 %.2f ms, p99 %.2f ms, max %.2f ms, "
               "%d failed\n",
               ok, rate, lat[ok / 2], lat[(int)(ok * 0.99)], lat[ok - 1], failed);
    free(lat);
    redisFree(c);
    return failed > 0;
}
