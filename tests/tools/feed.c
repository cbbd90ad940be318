/* feed.c - `feed REDIS_URL FILE`: publishes a feed file (one JSON entry a line, see
 * tests/support/testenv.h) to Redis with XADD, then prints how many entries it sent and
 * the last entry ID of each stream. Used by deploy/local.sh and the benchmarks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/util.h"
#include "testenv.h"

/* Connects to the URL's server and database (AUTH first when the URL has a password). */
static redisContext *feed_connect(const RedisAddr *addr)
{
    struct timeval tv = {.tv_sec = 5};
    redisContext *c = redisConnectWithTimeout(addr->host, addr->port, tv);
    redisReply *reply;

    if (c == NULL || c->err != 0) {
        fprintf(stderr, "feed: could not connect to Redis at %s:%d: %s\n", addr->host, addr->port,
                c != NULL ? c->errstr : "out of memory");
        exit(1);
    }
    if (addr->password != NULL) {
        reply = addr->user != NULL ? redisCommand(c, "AUTH %s %s", addr->user, addr->password)
                                   : redisCommand(c, "AUTH %s", addr->password);
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "feed: could not authenticate to Redis: %s\n",
                    reply != NULL ? reply->str : c->errstr);
            exit(1);
        }
        freeReplyObject(reply);
    }
    reply = redisCommand(c, "SELECT %d", addr->db);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "feed: could not select database %d: %s\n", addr->db,
                reply != NULL ? reply->str : c->errstr);
        exit(1);
    }
    freeReplyObject(reply);
    return c;
}

int main(int argc, char **argv)
{
    RedisAddr addr = {0};
    PjError err = {0};
    redisContext *c;
    json_t *last = NULL, *id;
    const char *stream;
    int n;

    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("usage: feed REDIS_URL FILE\n");
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: feed REDIS_URL FILE\n");
        return 2;
    }
    if (redis_addr_parse(argv[1], &addr, &err) != 0) {
        fprintf(stderr, "feed: %s\n", err.message);
        return 2;
    }
    c = feed_connect(&addr);
    n = testenv_publish_file(c, argv[2], &last);
    printf("published %d entries\n", n);
    json_object_foreach(last, stream, id)
    {
        printf("%s %s\n", stream, json_string_value(id));
    }
    json_decref(last);
    redisFree(c);
    redis_addr_done(&addr);
    return 0;
}
