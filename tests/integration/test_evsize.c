/* test_evsize.c - the size limits of reading: an entry over max_event_bytes is dead-lettered
 * by every read model that reads it, with its size and a cut raw copy, while the entries
 * around it (one exactly at the limit among them) are applied and the daemon stays up; a
 * read of large entries is split to fit max_read_bytes, and the entries it leaves pending
 * come next, whole, in order, once each. The reader is also driven directly against Redis.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/util.h"
#include "source/reader.h"
#include "testenv.h"

#define LIMIT (1024 * 1024)   /* max_event_bytes in these tests */
#define MIDDLE (300 * 1024)   /* an entry well under it: three or four fill a read */
#define BIG (3 * 1024 * 1024) /* an entry over it */
#define NMIDDLE 12

typedef TestDaemon Env;

/* Two read models on one stream: an entry over the limit is each one's dead letter. */
static const char notes_yaml[] = "readmodel: %s\n"
                                 "table: %s\n"
                                 "streams: [notes]\n"
                                 "key: [id]\n"
                                 "columns:\n"
                                 "  id: text\n"
                                 "  body: text\n"
                                 "on:\n"
                                 "  note.added:\n"
                                 "    upsert:\n"
                                 "      id: $.payload.id\n"
                                 "      body: $.payload.text\n";

static char *write_models(void)
{
    char *dir = testenv_tmpdir();
    const char *names[] = {"notes_a", "notes_b"};
    for (size_t i = 0; i < 2; i++) {
        char *file = xasprintf("%s.yaml", names[i]);
        char *text = xasprintf(notes_yaml, names[i], names[i]);
        free(testenv_write_file(dir, file, text));
        free(file);
        free(text);
    }
    return dir;
}

/* XADD notes * type note.added payload {"id": id, "text": "xxx..."}, the text made so
 * long that the entry's names and values add up to bytes. */
static void publish_note(redisContext *redis, const char *id, size_t bytes, char *ret_id)
{
    const char *prefix = "{\"id\":\"", *middle = "\",\"text\":\"", *suffix = "\"}";
    size_t fixed = strlen("type") + strlen("note.added") + strlen("payload") + strlen(prefix) +
                   strlen(id) + strlen(middle) + strlen(suffix);
    cr_assert_gt(bytes, fixed);
    StrBuf p = {0};
    strbuf_appendf(&p, "%s%s%s", prefix, id, middle);
    for (size_t i = 0; i < bytes - fixed; i++)
        strbuf_appendn(&p, &"abcdefghijklmnopqrstuvwxyz"[i % 26], 1);
    strbuf_append(&p, suffix);
    const char *argv[] = {"XADD", "notes", "*", "type", "note.added", "payload", p.buf};
    size_t lens[] = {4, 5, 1, 4, 10, 7, p.len};
    redisReply *r = redisCommandArgv(redis, 7, argv, lens);
    cr_assert(r != NULL && r->type == REDIS_REPLY_STRING, "XADD failed");
    snprintf(ret_id, 48, "%s", r->str);
    freeReplyObject(r);
    strbuf_done(&p);
}

/* XADD notes * type note.added payload {...} f0 v f1 v ...: an entry of n + 2 fields, few
 * bytes, that hiredis would make n + 2 elements of. */
static void publish_many_fields(redisContext *redis, size_t n, char *ret_id)
{
    size_t argc = 7 + 2 * n;
    const char **argv = xcalloc(argc, sizeof *argv);
    char **owned = xcalloc(n, sizeof *owned);
    const char *head[] = {
        "XADD", "notes", "*", "type", "note.added", "payload", "{\"id\":\"many\",\"text\":\"x\"}"};
    memcpy(argv, head, sizeof head);
    for (size_t i = 0; i < n; i++) {
        owned[i] = xasprintf("f%zu", i);
        argv[7 + 2 * i] = owned[i];
        argv[8 + 2 * i] = "v";
    }
    redisReply *r = redisCommandArgv(redis, (int)argc, argv, NULL);
    cr_assert(r != NULL && r->type == REDIS_REPLY_STRING, "XADD failed");
    snprintf(ret_id, 48, "%s", r->str);
    freeReplyObject(r);
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(argv);
}

static bool log_has(const Env *e, const char *text)
{
    char *log = NULL;
    size_t len;
    PjError err;
    cr_assert_eq(read_file(e->log, &log, &len, &err), 0, "%s", err.message);
    bool found = strstr(log, text) != NULL;
    free(log);
    return found;
}

Test(evsize, an_entry_over_the_limit_is_dead_lettered_and_the_rest_applied, .timeout = 180)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    Env e;
    char *models = write_models();
    testenv_daemon_setup(&e, "evsize", models, 1000, 200);
    char line[128];
    snprintf(line, sizeof line, "max_event_bytes: %d\nmax_read_bytes: %d\n", LIMIT, LIMIT);
    testenv_append_file(e.config, line);
    char id[48];
    publish_note(e.redis, "a", 100, id);
    publish_note(e.redis, "big", BIG, id);
    publish_note(e.redis, "b", 100, id);
    for (int i = 1; i <= NMIDDLE; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%02d", i);
        publish_note(e.redis, name, MIDDLE, id);
    }
    publish_note(e.redis, "edge", LIMIT, id);      /* exactly at the limit: applied */
    publish_note(e.redis, "edge1", LIMIT + 1, id); /* one byte more: dead-lettered */
    publish_many_fields(e.redis, 40000, id);       /* small, but too many fields */
    publish_note(e.redis, "c", 100, e.last);
    testenv_daemon_settle(&e, "notes");

    /* Every entry but the two over the limit is applied, whole. */
    const char *rows = "SELECT string_agg(id || ':' || length(body), ',' ORDER BY id) FROM %s";
    char want[1024];
    StrBuf w = {0};
    size_t fixed = strlen("type") + strlen("note.added") + strlen("payload") +
                   strlen("{\"id\":\"\",\"text\":\"\"}");
    strbuf_appendf(&w, "a:%zu,b:%zu,c:%zu,edge:%zu", 100 - fixed - 1, 100 - fixed - 1,
                   100 - fixed - 1, LIMIT - fixed - 4);
    for (int i = 1; i <= NMIDDLE; i++)
        strbuf_appendf(&w, ",m%02d:%zu", i, MIDDLE - fixed - 3);
    snprintf(want, sizeof want, "%s", w.buf);
    strbuf_done(&w);
    for (int t = 0; t < 2; t++) {
        char sql[256];
        snprintf(sql, sizeof sql, rows, t == 0 ? "notes_a" : "notes_b");
        testenv_daemon_expect(&e, sql, want);
    }
    /* Both over the limit, by each read model, with the size, and a cut raw copy. */
    char dead[512];
    snprintf(dead, sizeof dead,
             "entry of %d bytes is over max_event_bytes (%d): not read; the raw copy keeps the "
             "first 4096 bytes of each field",
             BIG, LIMIT);
    char *sql = xasprintf(
        "SELECT readmodel, error = '%s' OR error LIKE 'entry of %d bytes is over %%', "
        "length(raw::text) < 8192, raw->>'type', raw->>'payload' LIKE '%%...[truncated: first "
        "4096 of %% bytes]' FROM projector.dead_letters ORDER BY readmodel, entry_ms, entry_seq",
        dead, LIMIT + 1);
    testenv_daemon_expect(&e, sql,
                          "notes_a|t|t|note.added|t\nnotes_a|t|t|note.added|t\n"
                          "notes_a|f|t|note.added|f\n"
                          "notes_b|t|t|note.added|t\nnotes_b|t|t|note.added|t\n"
                          "notes_b|f|t|note.added|f");
    free(sql);
    testenv_daemon_expect(&e,
                          "SELECT count(*) FROM projector.dead_letters WHERE error LIKE "
                          "'entry of 3145728 bytes is over max_event_bytes (1048576)%'",
                          "2");
    testenv_daemon_expect(&e,
                          "SELECT count(*) FROM projector.dead_letters WHERE error = 'entry of "
                          "40002 fields is over the 32768 an entry may have: not read; the raw "
                          "copy keeps the first 32' AND raw->>'f29' LIKE 'v...[truncated: first "
                          "32 of 40002 fields]'",
                          "2");
    /* The reads of the 300 KiB entries did not fit 1 MiB whole. */
    cr_expect(log_has(&e, "more left pending past max_read_bytes (1048576), read next"),
              "no read was split (log: %s)", e.log);
    char *body = NULL;
    cr_assert_eq(testenv_http_get(e.port, "/lag", &body), 200);
    cr_expect(strstr(body, "\"stopped\"") == NULL && strstr(body, "\"retrying\"") == NULL,
              "a read model is not running: %s", body);
    free(body);
    /* Still going: one more entry is applied. */
    publish_note(e.redis, "d", 100, e.last);
    char path[160];
    snprintf(path, sizeof path, "/wait?stream=notes&id=%s&timeout_ms=30000", e.last);
    cr_expect_eq(testenv_http_get(e.port, path, &body), 200, "%s", body);
    free(body);
    int code = testenv_kill(e.pid, SIGTERM);
    e.pid = 0;
    cr_expect_eq(code, 0, "exit %d on SIGTERM (log: %s)", code, e.log);
    /* The cut copies are never applied by a retry: cut values would land in the table. */
    const char *retry[] = {"dlq", "retry", "--all", "--config", e.config, NULL};
    char *out = NULL;
    code = testenv_run(retry, &out);
    cr_expect_eq(code, 1, "dlq retry exited %d: %s", code, out);
    free(out);
    testenv_daemon_expect(&e,
                          "SELECT count(*), count(*) FILTER (WHERE error LIKE '%cut copy of an "
                          "entry over max_event_bytes%'), (SELECT count(*) FROM notes_a WHERE id "
                          "LIKE 'big%' OR id LIKE 'edge1%') FROM projector.dead_letters",
                          "6|6|0");
    freeReplyObject(redisCommand(e.redis, "FLUSHDB"));
    testenv_daemon_done(&e);
    free(models);
}

/* ---- the reader against Redis ---- */

typedef struct ReaderEnv {
    int db;
    redisContext *redis;
    Reader *reader;
} ReaderEnv;

static void reader_env_setup(ReaderEnv *r)
{
    if (!testenv_have_servers())
        cr_skip_test("no test servers (run tests/run.sh)");
    r->db = testenv_redis_db();
    r->redis = testenv_redis(r->db);
    char *url = testenv_redis_url(r->db);
    RedisAddr addr;
    PjError err;
    cr_assert_eq(redis_addr_parse(url, &addr, &err), 0, "%s", err.message);
    cr_assert_eq(reader_connect(&addr, 2000, 10000, &r->reader, &err), 0, "%s", err.message);
    redis_addr_done(&addr);
    free(url);
    bool created;
    cr_assert_eq(reader_ensure_group(r->reader, "notes", "g", true, &created, &err), 0, "%s",
                 err.message);
}

static void reader_env_done(ReaderEnv *r)
{
    freeReplyObject(redisCommand(r->redis, "FLUSHDB"));
    reader_free(r->reader);
    redisFree(r->redis);
}

/* Reads ">" until nothing comes (at most max_reads reads), acknowledging each batch;
 * returns the IDs in order, one per line, and the largest batch in *ret_max. */
static char *drain(ReaderEnv *r, const ReadLimits *l, int max_reads, size_t *ret_max,
                   size_t *ret_reads)
{
    StrBuf ids = {0};
    const char *streams[] = {"notes"}, *after[] = {NULL};
    Batch b = {0};
    PjError err;
    strbuf_append(&ids, "");
    *ret_max = *ret_reads = 0;
    for (int i = 0; i < max_reads; i++) {
        cr_assert_eq(reader_read(r->reader, "g", "c", streams, after, 1, l, -1, &b, NULL, &err), 0,
                     "%s", err.message);
        if (b.count == 0 && b.nheld == 0)
            break;
        (*ret_reads)++;
        *ret_max = b.bytes > *ret_max ? b.bytes : *ret_max;
        const char **acks = xcalloc(b.count + 1, sizeof *acks);
        for (size_t k = 0; k < b.count; k++) {
            strbuf_appendf(&ids, "%s:%zu\n", b.entries[k].id_text, b.entries[k].bytes);
            cr_assert_not(b.entries[k].oversize);
            cr_assert_eq(b.entries[k].fields.value_lens[1] + 4 + 10 + 7, b.entries[k].bytes,
                         "entry %s did not come whole", b.entries[k].id_text);
            acks[k] = b.entries[k].id_text;
        }
        cr_assert_eq(reader_ack(r->reader, "notes", "g", acks, b.count, &err), 0, "%s",
                     err.message);
        free(acks);
    }
    cr_assert_eq(reader_flush(r->reader, &err), 0, "%s", err.message);
    batch_done(&b);
    return strbuf_take(&ids);
}

Test(evsize, reader_splits_a_read_of_large_entries_to_the_budget, .timeout = 60)
{
    ReaderEnv r;
    reader_env_setup(&r);
    StrBuf want = {0};
    strbuf_append(&want, "");
    for (int i = 0; i < 10; i++) {
        char id[48];
        publish_note(r.redis, "n", 100 * 1024, id);
        strbuf_appendf(&want, "%s:%d\n", id, 100 * 1024);
    }
    /* COUNT 100 takes all ten from Redis at once, unless the reader holds some back. */
    ReadLimits l = {.count = 100, .max_entry_bytes = LIMIT, .max_read_bytes = 250 * 1024};
    size_t max_bytes, reads;
    char *got = drain(&r, &l, 100, &max_bytes, &reads);
    cr_assert_str_eq(got, want.buf, "every entry once, whole, in order");
    cr_expect_leq(max_bytes, l.max_read_bytes + 100 * 1024, "a read held %zu bytes", max_bytes);
    cr_expect_geq(reads, 4, "ten entries of 100 KiB came in %zu reads of 250 KiB", reads);
    redisReply *p = redisCommand(r.redis, "XPENDING notes g");
    cr_expect(p != NULL && p->type == REDIS_REPLY_ARRAY && p->element[0]->integer == 0,
              "entries left pending");
    freeReplyObject(p);
    /* Small entries go back to whole batches. */
    strbuf_reset(&want);
    strbuf_append(&want, "");
    for (int i = 0; i < 50; i++) {
        char id[48];
        publish_note(r.redis, "s", 100, id);
        strbuf_appendf(&want, "%s:100\n", id);
    }
    free(got);
    got = drain(&r, &l, 100, &max_bytes, &reads);
    cr_assert_str_eq(got, want.buf);
    cr_expect_leq(reads, 2, "fifty small entries took %zu reads", reads);
    free(got);
    strbuf_done(&want);
    reader_env_done(&r);
}

Test(evsize, reader_cuts_an_entry_over_the_limit, .timeout = 60)
{
    ReaderEnv r;
    reader_env_setup(&r);
    char ids[3][48];
    publish_note(r.redis, "a", 100, ids[0]);
    publish_note(r.redis, "big", BIG, ids[1]);
    publish_note(r.redis, "b", 100, ids[2]);
    ReadLimits l = {.count = 10, .max_entry_bytes = LIMIT, .max_read_bytes = 4 * LIMIT};
    const char *streams[] = {"notes"}, *after[] = {NULL};
    Batch b = {0};
    PjError err;
    cr_assert_eq(reader_read(r.reader, "g", "c", streams, after, 1, &l, -1, &b, NULL, &err), 0,
                 "%s", err.message);
    cr_assert_eq(b.count, 3);
    cr_assert_eq(b.nheld, 0);
    cr_assert_not(b.entries[0].oversize || b.entries[2].oversize);
    cr_assert(b.entries[1].oversize);
    cr_assert_str_eq(b.entries[1].id_text, ids[1]);
    cr_assert_eq(b.entries[1].bytes, BIG);
    cr_assert_lt(b.entries[1].fields.value_lens[1], RESPCUT_KEEP_BYTES + 64);
    cr_assert_lt(b.bytes, 2 * RESPCUT_KEEP_BYTES);
    cr_assert_str_eq(b.entries[2].id_text, ids[2]);
    batch_done(&b);
    reader_env_done(&r);
}
