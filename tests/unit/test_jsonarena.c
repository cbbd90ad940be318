/* test_jsonarena.c - the per-thread arena behind jansson: JSON made in a scope comes from
 * it and is recycled at its end, JSON made outside goes through malloc even when freed
 * inside, large documents get a chunk of their own, and a scope can follow another. The
 * sanitizer build checks that nothing is freed twice, leaked, or used after its scope.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>

#include "base/jsonarena.h"
#include "base/util.h"

static json_t *sample(void)
{
    json_error_t jerr;
    json_t *j = json_loads("{\"a\": [1, 2.5, \"three\", null, {\"b\": true}], \"c\": \"d\"}", 0,
                           &jerr);
    cr_assert_not_null(j, "%s", jerr.text);
    return j;
}

Test(jsonarena, scoped_json_comes_from_the_arena_and_is_recycled)
{
    jsonarena_install();
    json_t *outside = sample();
    cr_assert_eq(jsonarena_used(), 0, "nothing is counted outside a scope");
    for (int round = 0; round < 3; round++) {
        jsonarena_begin();
        json_t *inside = sample();
        cr_assert_gt(jsonarena_used(), 0);
        cr_assert_str_eq(json_string_value(json_object_get(inside, "c")), "d");
        cr_assert_eq(json_array_size(json_object_get(inside, "a")), 5);
        json_decref(inside);
        jsonarena_end();
        cr_assert_eq(jsonarena_used(), 0);
    }
    /* Outside a scope, jansson's own strings are plain malloc: free() is right. */
    char *text = json_dumps(outside, JSON_COMPACT);
    cr_assert_str_eq(text, "{\"a\":[1,2.5,\"three\",null,{\"b\":true}],\"c\":\"d\"}");
    free(text);
    /* Made before the scope, freed inside it: back to malloc, not to the arena. */
    jsonarena_begin();
    json_decref(outside);
    jsonarena_end();
    jsonarena_thread_done();
}

Test(jsonarena, a_large_document_gets_a_chunk_of_its_own)
{
    jsonarena_install();
    size_t n = 3 * 1024 * 1024;
    char *big = xmalloc(n + 3);
    big[0] = '"';
    memset(big + 1, 'x', n);
    big[n + 1] = '"';
    big[n + 2] = '\0';
    jsonarena_begin();
    json_error_t jerr;
    json_t *j = json_loads(big, JSON_DECODE_ANY, &jerr);
    cr_assert_not_null(j, "%s", jerr.text);
    cr_assert_eq(json_string_length(j), n);
    cr_assert_geq(jsonarena_used(), n);
    json_decref(j);
    jsonarena_end();
    /* and the next scope starts small again */
    jsonarena_begin();
    json_t *s = sample();
    cr_assert_lt(jsonarena_used(), 4096);
    json_decref(s);
    jsonarena_end();
    jsonarena_thread_done();
    free(big);
}

static void *thread_body(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        jsonarena_begin();
        json_t *j = sample();
        json_decref(j);
        jsonarena_end();
    }
    jsonarena_thread_done();
    return NULL;
}

Test(jsonarena, threads_have_arenas_of_their_own)
{
    jsonarena_install();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, thread_body, NULL), 0);
    /* this thread, with no scope, keeps using malloc meanwhile */
    for (int i = 0; i < 1000; i++)
        json_decref(sample());
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(jsonarena_used(), 0);
}
