/* test_event.c - both encodings decode to the same normalized event; bad entries fail
 * with a readable error; raw entries are always storable. */
#include <criterion/criterion.h>
#include <string.h>

#include "apply/event.h"

/* Builds EntryFields over a NULL-terminated list of name, value pairs. */
typedef struct Fields {
    const char *strs[32];
    size_t lens[32];
    EntryFields f;
} Fields;

static void fields_init(Fields *x, const char *const *pairs)
{
    size_t n = 0;
    while (pairs[2 * n] != NULL)
        n++;
    for (size_t i = 0; i < n; i++) {
        x->strs[i] = pairs[2 * i];
        x->strs[n + i] = pairs[2 * i + 1];
        x->lens[i] = strlen(pairs[2 * i]);
        x->lens[n + i] = strlen(pairs[2 * i + 1]);
    }
    x->f = (EntryFields){n, x->strs, x->lens, x->strs + n, x->lens + n};
}

static json_t *decode_ok(const char *const *pairs)
{
    Fields x;
    json_t *ev = NULL;
    PjError err;
    fields_init(&x, pairs);
    int rc = event_decode("orders", "1-0", &x.f, "event", &ev, &err);
    cr_assert_eq(rc, 0, "decode failed: %s", err.message);
    return ev;
}

static const char envelope[] =
    "{\"eventId\":\"e-1\",\"eventType\":\"order.placed\",\"aggregateId\":\"o-1\","
    "\"aggregateType\":\"Order\",\"timestamp\":\"2026-01-15T10:30:00Z\",\"version\":3,"
    "\"metadata\":{\"correlationId\":\"c-9\"},\"payload\":{\"orderId\":\"o-1\",\"total\":{"
    "\"amount\":\"9.50\"}}}";

Test(event, envelope_and_flat_fields_normalize_alike)
{
    const char *env[] = {"event", envelope, NULL};
    const char *flat[] = {"type",
                          "order.placed",
                          "event_id",
                          "e-1",
                          "aggregate_id",
                          "o-1",
                          "aggregate_type",
                          "Order",
                          "version",
                          "3",
                          "occurred_at",
                          "2026-01-15T10:30:00Z",
                          "payload",
                          "{\"orderId\":\"o-1\",\"total\":{\"amount\":\"9.50\"}}",
                          "metadata",
                          "{\"correlationId\":\"c-9\"}",
                          NULL};
    json_t *a = decode_ok(env), *b = decode_ok(flat);
    cr_assert(json_equal(a, b), "%s\n!=\n%s", json_dumps(a, JSON_SORT_KEYS),
              json_dumps(b, JSON_SORT_KEYS));
    cr_assert_str_eq(json_string_value(json_object_get(a, "type")), "order.placed");
    cr_assert_eq(json_integer_value(json_object_get(a, "version")), 3);
    cr_assert_str_eq(json_string_value(json_object_get(a, "stream")), "orders");
    cr_assert_str_eq(json_string_value(json_object_get(a, "entry_id")), "1-0");
    json_decref(a);
    json_decref(b);
}

Test(event, configurable_envelope_field)
{
    Fields x;
    json_t *ev = NULL;
    PjError err;
    const char *pairs[] = {"body", envelope, NULL};
    fields_init(&x, pairs);
    cr_assert_eq(event_decode("s", "1-1", &x.f, "body", &ev, &err), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "event_id")), "e-1");
    json_decref(ev);
}

Test(event, non_numeric_version_stays_a_string)
{
    const char *pairs[] = {"type", "t", "version", "v7", NULL};
    json_t *ev = decode_ok(pairs);
    cr_assert_str_eq(json_string_value(json_object_get(ev, "version")), "v7");
    cr_assert_null(json_object_get(ev, "payload"));
    json_decref(ev);
}

typedef struct BadCase {
    const char *pairs[5];
    const char *message;
} BadCase;

Test(event, bad_entries_fail_with_readable_errors)
{
    static const BadCase cases[] = {
        {{"event", "{not json", NULL}, "invalid JSON in field \"event\" at line 1 column "},
        {{"event", "[1,2]", NULL}, "the envelope in field \"event\" is not a JSON object"},
        {{"type", "t", "payload", "{\"a\":", NULL}, "invalid JSON in field \"payload\""},
        {{"type", "t", "payload", "\xff\xfe", NULL},
         "the value of field \"payload\" is not valid UTF-8"},
        {{NULL}, "the entry has no fields"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Fields x;
        json_t *ev = NULL;
        PjError err;
        fields_init(&x, cases[i].pairs);
        cr_assert_eq(event_decode("s", "1-1", &x.f, "event", &ev, &err), -PJ_EPERMANENT, "case %zu",
                     i);
        cr_assert_null(ev);
        cr_assert(strncmp(err.message, cases[i].message, strlen(cases[i].message)) == 0,
                  "case %zu: got \"%s\"", i, err.message);
    }
}

Test(event, raw_json_keeps_every_field_and_replaces_bad_bytes)
{
    Fields x;
    const char *pairs[] = {"type", "t", "blob",
                           "a\xff"
                           "b",
                           NULL};
    fields_init(&x, pairs);
    json_t *raw = event_raw_json(&x.f);
    cr_assert_str_eq(json_string_value(json_object_get(raw, "type")), "t");
    cr_assert_str_eq(json_string_value(json_object_get(raw, "blob")), "a\xEF\xBF\xBD"
                                                                      "b");
    json_decref(raw);
}

Test(event, raw_json_replaces_nul_bytes)
{
    static const char value[] = {'x', '\0', 'y'};
    const char *strs[] = {"k", value};
    size_t lens[] = {1, 3};
    EntryFields f = {1, strs, lens, strs + 1, lens + 1};
    json_t *raw = event_raw_json(&f);
    cr_assert_str_eq(json_string_value(json_object_get(raw, "k")), "x\xEF\xBF\xBDy");
    json_decref(raw);
}

/* A field whose value holds a NUL byte is refused: the C string would end there, so
 * "order.placed\0junk" would be applied as "order.placed" and "ab\0cd" key the row "ab". */
Test(event, a_nul_byte_in_a_flat_field_is_refused)
{
    static const char type[] = "order.placed\0junk", key[] = "ab\0cd";
    static const char name[] = {'k', '\0', 'x'};
    const struct {
        const char *strs[4];
        size_t lens[4];
        const char *message;
    } cases[] = {
        {{"type", "aggregate_id", type, "o-1"},
         {4, 12, sizeof type - 1, 3},
         "the value of field \"type\" holds a NUL byte"},
        {{"type", "aggregate_id", "t", key},
         {4, 12, 1, sizeof key - 1},
         "the value of field \"aggregate_id\" holds a NUL byte"},
        {{"type", name, "t", "v"},
         {4, sizeof name, 1, 1},
         "field name 2 is not valid UTF-8 without NUL bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        EntryFields f = {2, cases[i].strs, cases[i].lens, cases[i].strs + 2, cases[i].lens + 2};
        json_t *ev = NULL;
        PjError err;
        cr_expect_eq(event_decode("s", "1-1", &f, "event", &ev, &err), -PJ_EPERMANENT, "case %zu",
                     i);
        cr_expect_null(ev);
        cr_expect_str_eq(err.message, cases[i].message, "case %zu", i);
        json_decref(ev);
    }
}

/* ---- the type without decoding ---- */

/* event_peek_type on one envelope text; "" when it cannot tell. */
static const char *peek_envelope_text(const char *text)
{
    static char buf[64];
    const char *pairs[] = {"event", text, NULL};
    Fields x;
    fields_init(&x, pairs);
    return event_peek_type(&x.f, "event", buf, sizeof buf) >= 0 ? buf : "";
}

Test(event, the_type_is_found_without_decoding)
{
    cr_expect_str_eq(peek_envelope_text(envelope), "order.placed");
    cr_expect_str_eq(peek_envelope_text(" {\n\"payload\" : {\"eventType\": \"nested\", \"a\": [1, "
                                        "{\"b\": \"}]\\\"{\"}], \"c\": null}, \"eventType\" : "
                                        "\"order.shipped\" , \"version\": -1.5e3, \"ok\": true}\t"),
                     "order.shipped");
    /* what event_decode says for every entry it accepts */
    const char *texts[] = {envelope, "{\"eventType\":\"x\",\"payload\":[[[]]],\"n\":0}",
                           "{\"metadata\":\"}\",\"eventType\":\"y\"}"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        const char *env[] = {"event", texts[i], NULL};
        json_t *ev = decode_ok(env);
        cr_expect_str_eq(peek_envelope_text(texts[i]),
                         json_string_value(json_object_get(ev, "type")), "%s", texts[i]);
        json_decref(ev);
    }
    const char *flat[] = {"payload", "{not json", "type", "customer.renamed", NULL};
    Fields x;
    char buf[64];
    fields_init(&x, flat);
    cr_expect_eq(event_peek_type(&x.f, "event", buf, sizeof buf), 16);
    cr_expect_str_eq(buf, "customer.renamed");
}

Test(event, the_type_is_not_guessed)
{
    const char *unsure[] = {
        "",                                                  /* nothing */
        "[{\"eventType\":\"a\"}]",                           /* not an object */
        "{\"payload\":{\"eventType\":\"a\"}}",               /* only nested */
        "{\"eventType\":\"a\",\"eventType\":\"b\"}",         /* a duplicate */
        "{\"eventType\":\"a\\u002eb\"}",                     /* an escape in the type */
        "{\"event\\u0054ype\":\"a\"}",                       /* an escape in a key */
        "{\"eventType\":7}",                                 /* not a string */
        "{\"eventType\":\"a\"} trailing",                    /* more after the object */
        "{\"eventType\":\"a\",",                             /* cut short */
        "{\"payload\":\"unterminated, \"eventType\":\"a\"}", /* the type is inside a string */
        "{\"eventType\":\"a-type-name-that-is-far-too-long-for-the-sixty-four-byte-buffer-given\"}",
    };
    for (size_t i = 0; i < sizeof unsure / sizeof *unsure; i++)
        cr_expect_str_eq(peek_envelope_text(unsure[i]), "", "guessed a type in %s", unsure[i]);
    const char *flat[] = {"event_id", "e-1", "payload", "{}", NULL};
    Fields x;
    char buf[64];
    fields_init(&x, flat);
    cr_expect_eq(event_peek_type(&x.f, "event", buf, sizeof buf), -1, "a flat entry without type");
}

/* The log fields of an entry: where it is, and the IDs that tie it to its request; a value
 * that is not one plain word is left out. */
Test(event, log_context_names_the_entry_and_its_correlation)
{
    Fields x;
    const char *const env[] = {"event", envelope, NULL};
    fields_init(&x, env);
    StrBuf ctx = {0};
    strbuf_append(&ctx, "readmodel=orders");
    event_log_context("orders", "1-0", &x.f, "event", &ctx);
    cr_assert_str_eq(ctx.buf,
                     "readmodel=orders stream=orders entry=1-0 event_id=e-1 correlation_id=c-9");
    strbuf_reset(&ctx);
    const char *const flat[] = {"type",     "t",
                                "event_id", "id with spaces",
                                "metadata", "{\"causationId\":\"cmd=7\",\"correlationId\":\"k\"}",
                                NULL};
    fields_init(&x, flat);
    event_log_context("s", "2-0", &x.f, "event", &ctx);
    cr_assert_str_eq(ctx.buf, " stream=s entry=2-0 correlation_id=k");
    strbuf_reset(&ctx);
    const char *const bad[] = {"event", "{not json", NULL};
    fields_init(&x, bad);
    event_log_context("s", "3-0", &x.f, "event", &ctx);
    cr_assert_str_eq(ctx.buf, " stream=s entry=3-0");
    strbuf_done(&ctx);
}
