/* test_stream_id.c - parsing, ordering and formatting of Redis stream IDs. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "base/stream_id.h"

Test(stream_id, parses_and_formats_round_trip)
{
    StreamId id;
    char buf[STREAM_ID_BUFSZ];
    cr_assert_eq(stream_id_parse("1700000000000-42", &id), 0);
    cr_assert_eq(id.ms, 1700000000000ULL);
    cr_assert_eq(id.seq, 42);
    cr_assert_str_eq(stream_id_format(id, buf), "1700000000000-42");
    cr_assert_eq(stream_id_parse("18446744073709551615-18446744073709551615", &id), 0);
    cr_assert_eq(id.ms, UINT64_MAX);
}

/* Parameters cross a process boundary by copy, so they hold text, not pointers. */
typedef struct BadId {
    char text[48];
} BadId;

ParameterizedTestParameters(stream_id, rejects_malformed)
{
    static BadId bad[] = {{""},       {"123"},  {"-1"},    {"1-"},
                          {"a-1"},    {"1-b"},  {"1--2"},  {" 1-2"},
                          {"1-2 "},   {"+1-2"}, {"1-2-3"}, {"18446744073709551616-0"},
                          {"0x10-1"}, {"1.5-2"}};
    return cr_make_param_array(BadId, bad, sizeof bad / sizeof bad[0]);
}

ParameterizedTest(BadId *b, stream_id, rejects_malformed)
{
    StreamId id = {7, 7};
    cr_assert_eq(stream_id_parse(b->text, &id), -PJ_EINVAL, "accepted \"%s\"", b->text);
    cr_assert_eq(id.ms, 7, "changed the output on \"%s\"", b->text);
}

Test(stream_id, orders_by_ms_then_seq)
{
    StreamId a = {1, 5}, b = {2, 0}, c = {2, 1};
    cr_assert_lt(stream_id_cmp(a, b), 0);
    cr_assert_lt(stream_id_cmp(b, c), 0);
    cr_assert_gt(stream_id_cmp(c, a), 0);
    cr_assert_eq(stream_id_cmp(c, c), 0);
    cr_assert(stream_id_is_zero(STREAM_ID_ZERO));
    cr_assert_not(stream_id_is_zero(a));
}

Test(stream_id, parses_counted_strings)
{
    StreamId id;
    const char text[] = "5-6XYZ";
    cr_assert_eq(stream_id_parsen(text, 3, &id), 0);
    cr_assert_eq(id.ms, 5);
    cr_assert_eq(id.seq, 6);
    cr_assert_lt(stream_id_parsen(text, 4, &id), 0);
}
