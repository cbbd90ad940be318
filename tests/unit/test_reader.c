/* test_reader.c - XREADGROUP replies, recorded as RESP bytes and parsed by hiredis's own
 * redisReader, go through the reader's shape checks without a server. */
#include <criterion/criterion.h>
#include <string.h>

#include "source/reader.h"

static redisReply *parse_resp(const char *bytes)
{
    redisReader *rr = redisReaderCreate();
    void *reply = NULL;
    cr_assert_eq(redisReaderFeed(rr, bytes, strlen(bytes)), REDIS_OK);
    cr_assert_eq(redisReaderGetReply(rr, &reply), REDIS_OK);
    cr_assert_not_null(reply, "incomplete RESP in test");
    redisReaderFree(rr);
    return reply;
}

static const char *const streams[] = {"orders", "customers"};

Test(reader, parses_two_streams_with_fields)
{
    const char *resp =
        "*2\r\n"
        "*2\r\n$6\r\norders\r\n*2\r\n"
        "*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ntype\r\n$1\r\na\r\n"
        "*2\r\n$3\r\n2-5\r\n*4\r\n$4\r\ntype\r\n$1\r\nb\r\n$7\r\npayload\r\n$2\r\n{}\r\n"
        "*2\r\n$9\r\ncustomers\r\n*1\r\n"
        "*2\r\n$3\r\n1-1\r\n*2\r\n$5\r\nevent\r\n$2\r\n{}\r\n";
    Batch b = {0};
    PjError err;
    cr_assert_eq(reader_parse_batch(parse_resp(resp), streams, 2, NULL, &b, &err), 0, "%s",
                 err.message);
    cr_assert_eq(b.count, 3);
    cr_assert_eq(b.entries[0].stream, 0);
    cr_assert_str_eq(b.entries[1].id_text, "2-5");
    cr_assert_eq(b.entries[1].fields.count, 2);
    cr_assert_eq(memcmp(b.entries[1].fields.names[1], "payload", 7), 0);
    cr_assert_eq(b.entries[1].fields.value_lens[1], 2);
    cr_assert_eq(b.entries[2].stream, 1);
    cr_assert_eq(b.entries[2].id.seq, 1);
    cr_assert_not(b.entries[2].deleted);
    batch_done(&b);
}

Test(reader, nil_reply_is_an_empty_batch)
{
    Batch b = {0};
    PjError err;
    cr_assert_eq(reader_parse_batch(parse_resp("*-1\r\n"), streams, 2, NULL, &b, &err), 0);
    cr_assert_eq(b.count, 0);
    batch_done(&b);
}

Test(reader, deleted_pending_entry_is_marked)
{
    const char *resp = "*1\r\n*2\r\n$6\r\norders\r\n*1\r\n*2\r\n$3\r\n7-0\r\n*-1\r\n";
    Batch b = {0};
    PjError err;
    cr_assert_eq(reader_parse_batch(parse_resp(resp), streams, 2, NULL, &b, &err), 0);
    cr_assert_eq(b.count, 1);
    cr_assert(b.entries[0].deleted);
    cr_assert_eq(b.entries[0].fields.count, 0);
    batch_done(&b);
}

Test(reader, rejects_wrong_shapes)
{
    static const char *bad[] = {
        ":1\r\n",                             /* not an array */
        "*1\r\n*2\r\n$6\r\norders\r\n:5\r\n", /* entries not an array */
        "*1\r\n*2\r\n$6\r\norders\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\na\r\n", /* odd fields */
        "*1\r\n*2\r\n$5\r\nother\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*0\r\n",  /* unknown stream */
        "*1\r\n*2\r\n$6\r\norders\r\n*1\r\n*2\r\n$3\r\nabc\r\n*0\r\n", /* bad entry ID */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Batch b = {0};
        PjError err;
        cr_assert_eq(reader_parse_batch(parse_resp(bad[i]), streams, 2, NULL, &b, &err),
                     -PJ_ETRANSIENT, "case %zu accepted", i);
        batch_done(&b);
    }
}

Test(reader, error_reply_classified)
{
    Batch b = {0};
    PjError err;
    cr_assert_eq(reader_parse_batch(parse_resp("-WRONGTYPE Operation against a key\r\n"), streams,
                                    2, NULL, &b, &err),
                 -PJ_EPERMANENT);
    cr_assert_eq(
        reader_parse_batch(parse_resp("-NOGROUP No such key\r\n"), streams, 2, NULL, &b, &err),
        -PJ_ETRANSIENT);
    cr_assert(strstr(err.message, "NOGROUP") != NULL);
    batch_done(&b);
}
