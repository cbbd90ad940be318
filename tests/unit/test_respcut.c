/* test_respcut.c - the cut of an XREADGROUP reply as its bytes arrive: replies it must not
 * touch pass byte for byte, however the bytes are split; an entry over the limit reaches
 * hiredis cut, with its whole size recorded; entries past the read budget reach it empty
 * and are recorded as held; what comes out is RESP that hiredis reads, and the reader
 * makes a batch of it that says all of this. */
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "source/reader.h"
#include "source/respcut.h"

/* Feeds in[0 .. n) to c in pieces of chunk bytes; returns what came out (caller frees). */
static char *cut_all(RespCut *c, const char *in, size_t n, size_t chunk, size_t *ret_len)
{
    StrBuf out = {0};
    PjError err;
    for (size_t i = 0; i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        cr_assert_eq(respcut_feed(c, in + i, k, &out, &err), 0, "%s", err.message);
    }
    strbuf_append(&out, "");
    *ret_len = out.len;
    return strbuf_take(&out);
}

/* Every reply in bytes, as hiredis reads it, into replies[0 ..); returns how many. */
static size_t parse_all(const char *bytes, size_t len, redisReply **replies, size_t max)
{
    redisReader *rr = redisReaderCreate();
    size_t n = 0;
    cr_assert_eq(redisReaderFeed(rr, bytes, len), REDIS_OK);
    for (;;) {
        void *reply = NULL;
        cr_assert_eq(redisReaderGetReply(rr, &reply), REDIS_OK, "%s", rr->errstr);
        if (reply == NULL)
            break;
        cr_assert_lt(n, max);
        replies[n++] = reply;
    }
    cr_assert_eq(rr->pos, rr->len, "bytes left after the last reply");
    redisReaderFree(rr);
    return n;
}

/* A pipeline of an XACK's reply, then XREADGROUP's, then XINFO-like nesting. */
static const char pipeline[] = ":2\r\n"
                               "*1\r\n*2\r\n$6\r\norders\r\n*2\r\n"
                               "*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ntype\r\n$1\r\na\r\n"
                               "*2\r\n$3\r\n2-0\r\n*-1\r\n"
                               "*1\r\n*4\r\n$4\r\nname\r\n$1\r\ng\r\n$3\r\nlag\r\n$-1\r\n"
                               "+OK\r\n-ERR no\r\n*0\r\n$0\r\n\r\n";

Test(respcut, passes_what_it_need_not_cut_unchanged_whatever_the_split)
{
    for (size_t chunk = 1; chunk <= sizeof pipeline; chunk++) {
        RespCut c = {0};
        size_t len;
        respcut_begin(&c, 1, 1024, 1024);
        char *out = cut_all(&c, pipeline, sizeof pipeline - 1, chunk, &len);
        cr_assert_eq(len, sizeof pipeline - 1, "chunk %zu", chunk);
        cr_assert_eq(memcmp(out, pipeline, len), 0, "chunk %zu: %s", chunk, out);
        cr_assert(respcut_done(&c));
        cr_assert_eq(c.replies, 2, "it stops reading after the target");
        cr_assert_eq(c.nentries, 2);
        cr_assert_eq(c.entries[0].bytes, 5);
        cr_assert_not(c.entries[0].oversize || c.entries[0].held || c.entries[1].held);
        free(out);
        respcut_free(&c);
    }
}

/* Once the target reply has passed, the caller may stop feeding at any byte and give the
 * rest to hiredis as it comes: nothing of what was fed may be held back. */
Test(respcut, holds_nothing_back_once_the_target_has_passed)
{
    const char *target_end = strstr(pipeline, "*1\r\n*4\r\n");
    size_t from = (size_t)(target_end - pipeline);
    for (size_t p = from; p <= sizeof pipeline - 1; p++) {
        RespCut c = {0};
        size_t len;
        respcut_begin(&c, 1, 1024, 1024);
        char *out = cut_all(&c, pipeline, p, 5, &len);
        StrBuf all = {0};
        strbuf_appendn(&all, out, len);
        strbuf_appendn(&all, pipeline + p, sizeof pipeline - 1 - p);
        cr_assert_str_eq(all.buf, pipeline, "split at %zu", p);
        strbuf_done(&all);
        free(out);
        respcut_free(&c);
    }
}

/* XREADGROUP's reply: one entry on "orders" per (name, value) given, in that order. */
static char *reply_of(const size_t *value_lens, size_t n, size_t *ret_len)
{
    StrBuf sb = {0};
    strbuf_appendf(&sb, "*1\r\n*2\r\n$6\r\norders\r\n*%zu\r\n", n);
    for (size_t i = 0; i < n; i++) {
        char id[24];
        snprintf(id, sizeof id, "%zu-0", i + 1);
        strbuf_appendf(&sb, "*2\r\n$%zu\r\n%s\r\n*4\r\n$4\r\ntype\r\n$1\r\nt\r\n", strlen(id), id);
        strbuf_appendf(&sb, "$5\r\nevent\r\n$%zu\r\n", value_lens[i]);
        for (size_t k = 0; k < value_lens[i]; k++)
            strbuf_appendn(&sb, &"0123456789"[k % 10], 1);
        strbuf_append(&sb, "\r\n");
    }
    *ret_len = sb.len;
    return strbuf_take(&sb);
}

static const char *const streams[] = {"orders"};

/* Cuts reply through c in chunks and makes a batch of it. */
static void cut_to_batch(RespCut *c, const char *reply, size_t len, size_t chunk, Batch *b)
{
    size_t out_len;
    char *out = cut_all(c, reply, len, chunk, &out_len);
    redisReply *parsed[1];
    cr_assert_eq(parse_all(out, out_len, parsed, 1), 1);
    PjError err;
    cr_assert_eq(reader_parse_batch(parsed[0], streams, 1, c, b, &err), 0, "%s", err.message);
    free(out);
}

Test(respcut, an_entry_over_the_limit_arrives_cut_with_its_size)
{
    const size_t lens[] = {10, 100000, 20};
    size_t len;
    char *reply = reply_of(lens, 3, &len);
    for (size_t chunk = 7; chunk <= 16384; chunk *= 3) {
        RespCut c = {0};
        Batch b = {0};
        respcut_begin(&c, 0, 50000, 1 << 20);
        cut_to_batch(&c, reply, len, chunk, &b);
        cr_assert_eq(b.count, 3);
        cr_assert_eq(b.nheld, 0);
        cr_assert_not(b.entries[0].oversize);
        cr_assert_eq(b.entries[0].bytes, 4 + 1 + 5 + 10);
        cr_assert(b.entries[1].oversize);
        cr_assert_eq(b.entries[1].bytes, 4 + 1 + 5 + 100000);
        const Entry *e = &b.entries[1];
        char mark[96];
        snprintf(mark, sizeof mark, ENTRY_CUT_MARK, (size_t)RESPCUT_KEEP_BYTES, (size_t)100000);
        cr_assert_eq(e->fields.value_lens[1], RESPCUT_KEEP_BYTES + strlen(mark));
        cr_assert_eq(memcmp(e->fields.values[1], "0123456789", 10), 0);
        cr_assert_eq(memcmp(e->fields.values[1] + RESPCUT_KEEP_BYTES, mark, strlen(mark)), 0);
        cr_assert_eq(e->fields.value_lens[0], 1, "the small field stays as it is");
        cr_assert_not(b.entries[2].oversize);
        cr_assert_eq(b.entries[2].fields.value_lens[1], 20);
        cr_assert(entry_fields_cut(&b.entries[1].fields), "the cut copy is marked");
        cr_assert_not(entry_fields_cut(&b.entries[0].fields));
        /* What the reply held of the big entry: the first bytes only. */
        cr_assert_eq(c.entries[1].kept, 4 + 1 + 5 + RESPCUT_KEEP_BYTES);
        batch_done(&b);
        respcut_free(&c);
    }
    free(reply);
}

Test(respcut, only_the_whole_mark_says_cut)
{
    static const char *const values[] = {
        "x...[truncated: first 4096 of 67108869 bytes]",
        "...[truncated: first 0 of 5 bytes]",
        "x...[truncated: first of 5 bytes]",
        "x...[truncated: first 1 of  bytes]",
        "x..[truncated: first 1 of 5 bytes]",
        "x...[truncated: first 1 of 5 bytes] ",
        "bytes]",
        "",
        "x...[truncated: first 32 of 40000 fields]",
        "x...[truncated: first 32 of 40000 field]",
    };
    static const bool cut[] = {true, true, false, false, false, false, false, false, true, false};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        const char *name = "event";
        size_t name_len = 5, len = strlen(values[i]);
        EntryFields f = {.count = 1,
                         .names = &name,
                         .name_lens = &name_len,
                         .values = &values[i],
                         .value_lens = &len};
        cr_expect_eq(entry_fields_cut(&f), cut[i], "\"%s\"", values[i]);
    }
}

/* An entry made of many fields that are each small crosses the limit in the middle: from
 * there on its fields are cut, and all of them together to RESPCUT_KEEP_MAX. */
Test(respcut, many_fields_together_over_the_limit_are_cut_too)
{
    StrBuf sb = {0};
    size_t nf = 200;
    strbuf_appendf(&sb, "*1\r\n*2\r\n$6\r\norders\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*%zu\r\n", 2 * nf);
    for (size_t i = 0; i < nf; i++) {
        strbuf_appendf(&sb, "$6\r\nf%05zu\r\n$5000\r\n", i);
        for (size_t k = 0; k < 5000; k++)
            strbuf_append(&sb, "v");
        strbuf_append(&sb, "\r\n");
    }
    RespCut c = {0};
    Batch b = {0};
    respcut_begin(&c, 0, 100000, 1 << 30);
    cut_to_batch(&c, sb.buf, sb.len, 4096, &b);
    cr_assert_eq(b.count, 1);
    cr_assert(b.entries[0].oversize);
    cr_assert_eq(b.entries[0].bytes, nf * (6 + 5000));
    cr_assert_eq(b.entries[0].fields.count, nf);
    cr_assert_leq(c.entries[0].kept_over, RESPCUT_KEEP_MAX);
    cr_assert_leq(c.entries[0].kept, 100000 + RESPCUT_KEEP_MAX);
    for (size_t i = 0; i < nf; i++)
        cr_assert_leq(b.entries[0].fields.value_lens[i], RESPCUT_KEEP_BYTES + 64);
    batch_done(&b);
    respcut_free(&c);
    strbuf_done(&sb);
}

/* An entry of more names and values than RESPCUT_FIELDS_MAX, each of them empty: hiredis
 * would make an element of each. It is oversize, and only its first fields pass. */
Test(respcut, an_entry_of_too_many_fields_is_oversize)
{
    StrBuf sb = {0};
    size_t n = RESPCUT_FIELDS_MAX + 2;
    strbuf_appendf(&sb, "*1\r\n*2\r\n$6\r\norders\r\n*2\r\n*2\r\n$3\r\n1-0\r\n*%zu\r\n", n);
    for (size_t i = 0; i < n; i++)
        strbuf_append(&sb, i % 2 == 0 ? "$1\r\nf\r\n" : "$0\r\n\r\n");
    strbuf_append(&sb, "*2\r\n$3\r\n2-0\r\n*2\r\n$4\r\ntype\r\n$1\r\nt\r\n");
    RespCut c = {0};
    Batch b = {0};
    respcut_begin(&c, 0, 1 << 20, 1 << 30);
    cut_to_batch(&c, sb.buf, sb.len, 4000, &b);
    cr_assert_eq(b.count, 2);
    cr_assert(b.entries[0].oversize);
    cr_assert_eq(b.entries[0].fields.count, RESPCUT_FIELDS_KEEP / 2);
    cr_assert_eq(b.entries[0].bytes, n / 2, "the names that did not pass count too");
    cr_assert_eq(c.entries[0].nwhole, n);
    cr_assert_eq(b.entries[0].whole_fields, n / 2);
    cr_assert(entry_fields_cut(&b.entries[0].fields), "the raw copy says fields are missing");
    cr_assert_not(b.entries[1].oversize);
    cr_assert_str_eq(b.entries[1].id_text, "2-0");
    batch_done(&b);
    respcut_free(&c);
    strbuf_done(&sb);
}

Test(respcut, entries_past_the_read_budget_are_held)
{
    const size_t lens[] = {3000, 3000, 3000, 3000, 10};
    size_t len;
    char *reply = reply_of(lens, 5, &len);
    for (size_t chunk = 1; chunk < len; chunk = chunk * 2 + 1) {
        RespCut c = {0};
        Batch b = {0};
        respcut_begin(&c, 0, 1 << 20, 5000);
        cut_to_batch(&c, reply, len, chunk, &b);
        cr_assert_eq(b.count, 2, "chunk %zu", chunk);
        cr_assert_eq(b.nheld, 3, "chunk %zu", chunk);
        batch_done(&b);
        respcut_free(&c);
    }
    RespCut c = {0};
    Batch b = {0};
    respcut_begin(&c, 0, 1 << 20, 5000);
    cut_to_batch(&c, reply, len, 1000, &b);
    /* Two entries make 6020 bytes: from the third on, every entry is held. */
    cr_assert_eq(b.count, 2);
    cr_assert_str_eq(b.entries[1].id_text, "2-0");
    cr_assert_eq(b.entries[1].fields.value_lens[1], 3000);
    cr_assert_eq(b.nheld, 3);
    cr_assert_str_eq(b.held[0].id_text, "3-0");
    cr_assert_str_eq(b.held[2].id_text, "5-0");
    cr_assert_eq(c.kept, 2 * (4 + 1 + 5 + 3000 + 4 * RESPCUT_FIELD_COST));
    cr_assert_eq(c.entries[2].nfields, 0, "a held entry's fields do not pass");
    cr_assert_eq(c.entries[3].bytes, 4 + 1 + 5 + 3000, "a held entry's size is known");
    batch_done(&b);
    respcut_free(&c);
    free(reply);
}

Test(respcut, the_first_entry_is_never_held)
{
    const size_t lens[] = {9000, 1};
    size_t len;
    char *reply = reply_of(lens, 2, &len);
    RespCut c = {0};
    Batch b = {0};
    respcut_begin(&c, 0, 1 << 20, 1024);
    cut_to_batch(&c, reply, len, 512, &b);
    cr_assert_eq(b.count, 1);
    cr_assert_eq(b.nheld, 1);
    cr_assert_not(b.entries[0].oversize);
    batch_done(&b);
    respcut_free(&c);
    free(reply);
}

/* Only the target reply is cut: a large string in the reply before it passes whole. */
Test(respcut, cuts_only_the_target_reply)
{
    const size_t lens[] = {6000};
    size_t len;
    char *reply = reply_of(lens, 1, &len);
    StrBuf sb = {0};
    strbuf_append(&sb, reply);
    strbuf_appendn(&sb, reply, len);
    RespCut c = {0};
    respcut_begin(&c, 1, 1024, 1024);
    size_t out_len;
    char *out = cut_all(&c, sb.buf, sb.len, 333, &out_len);
    redisReply *parsed[2];
    cr_assert_eq(parse_all(out, out_len, parsed, 2), 2);
    cr_assert_eq(parsed[0]->element[0]->element[1]->element[0]->element[1]->element[3]->len, 6000);
    cr_assert_eq(parsed[1]->element[0]->element[1]->element[0]->element[1]->element[3]->len,
                 RESPCUT_KEEP_BYTES);
    cr_assert_eq(c.nentries, 1);
    freeReplyObject(parsed[0]);
    freeReplyObject(parsed[1]);
    free(out);
    respcut_free(&c);
    strbuf_done(&sb);
    free(reply);
}

/* XRANGE and XINFO STREAM: the entries' fields pass as empty arrays, IDs and counts whole. */
Test(respcut, ids_only_empties_the_entries_of_xrange_and_xinfo)
{
    const size_t lens[] = {6000, 10};
    size_t len;
    char *xread = reply_of(lens, 2, &len);
    /* XRANGE's reply is XREADGROUP's list of entries for one stream. */
    const char *entries = strstr(xread, "*2\r\n*2\r\n$3\r\n1-0");
    const char *info =
        "*6\r\n$6\r\nlength\r\n:2\r\n$17\r\nlast-generated-id\r\n$3\r\n2-0\r\n"
        "$10\r\nlast-entry\r\n*2\r\n$3\r\n2-0\r\n*2\r\n$5\r\nevent\r\n$4\r\nbody\r\n";
    const char *cases[] = {entries, info};
    for (size_t i = 0; i < 2; i++) {
        RespCut c = {0};
        size_t out_len;
        respcut_begin_ids(&c, 0);
        char *out = cut_all(&c, cases[i], strlen(cases[i]), 100, &out_len);
        redisReply *parsed[1];
        cr_assert_eq(parse_all(out, out_len, parsed, 1), 1);
        const redisReply *r = parsed[0];
        if (i == 0) {
            cr_assert_eq(r->elements, 2);
            cr_assert_str_eq(r->element[1]->element[0]->str, "2-0");
            cr_assert_eq(r->element[0]->element[1]->type, REDIS_REPLY_ARRAY);
            cr_assert_eq(r->element[0]->element[1]->elements, 0);
        } else {
            cr_assert_eq(r->element[1]->integer, 2);
            cr_assert_str_eq(r->element[3]->str, "2-0");
            cr_assert_str_eq(r->element[5]->element[0]->str, "2-0");
            cr_assert_eq(r->element[5]->element[1]->elements, 0);
        }
        cr_assert_eq(c.nentries, 0);
        freeReplyObject(parsed[0]);
        free(out);
        respcut_free(&c);
    }
    free(xread);
}

Test(respcut, refuses_what_is_not_resp)
{
    static const char *const bad[] = {
        "?1\r\n",                      /* unknown type */
        "$3\r\nabcXY",                 /* no \r\n after the string */
        "*x\r\n",                      /* not a number */
        "$-2\r\n",                     /* negative length */
        "$5\n",                        /* \n without \r */
        "$1234567890123456789012\r\n", /* length too long */
        "*01\r\n",                     /* a leading zero, which Redis never writes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        RespCut c = {0};
        StrBuf out = {0};
        PjError err;
        respcut_begin(&c, 0, 1024, 1024);
        cr_expect_lt(respcut_feed(&c, bad[i], strlen(bad[i]), &out, &err), 0, "case %zu", i);
        strbuf_done(&out);
        respcut_free(&c);
    }
    RespCut c = {0};
    StrBuf out = {0};
    PjError err;
    respcut_begin(&c, 0, 1024, 1024);
    int rc = 0;
    for (int i = 0; rc == 0 && i <= RESPCUT_DEPTH_MAX; i++)
        rc = respcut_feed(&c, "*1\r\n", 4, &out, &err);
    cr_expect_lt(rc, 0, "nesting deeper than RESPCUT_DEPTH_MAX is refused");
    strbuf_done(&out);
    respcut_free(&c);
}

/* hiredis has the reply once the held entries' emptied fields arrays are out, before
 * their fields have come: the cut is done only with the reply's last byte, so the reader
 * knows to read on. */
Test(respcut, is_done_only_with_the_last_byte_of_the_target)
{
    const size_t lens[] = {3000, 3000, 3000};
    size_t len;
    char *reply = reply_of(lens, 3, &len);
    RespCut c = {0};
    size_t out_len;
    respcut_begin(&c, 0, 1 << 20, 1000);
    char *out = cut_all(&c, reply, len - 1, 512, &out_len);
    redisReply *parsed[1];
    cr_assert_eq(parse_all(out, out_len, parsed, 1), 1, "hiredis has it all already");
    cr_assert_not(respcut_done(&c));
    StrBuf rest = {0};
    PjError err;
    cr_assert_eq(respcut_feed(&c, reply + len - 1, 1, &rest, &err), 0);
    cr_assert(respcut_done(&c));
    cr_assert_eq(rest.len, 0);
    freeReplyObject(parsed[0]);
    strbuf_done(&rest);
    free(out);
    respcut_free(&c);
    free(reply);
}
