/* test_jsonarena.c - the per-thread arena behind jansson: JSON made in a scope comes from
 * it and is recycled at its end, JSON made outside goes through malloc even when freed
 * inside, large documents get a chunk of their own, and a scope can follow another. The
 * sanitizer build checks that nothing is freed twice, leaked, or used after its scope.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "base/jsonarena.h"
#include "base/util.h"

static json_t *sample(void)
{
    json_error_t jerr;
    json_t *j =
        json_loads("{\"a\": [1, 2.5, \"three\", null, {\"b\": true}], \"c\": \"d\"}", 0, &jerr);
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

#define ARENA_THREADS 4
#define ARENA_ROUNDS 1000

static const char sample_text[] = "{\"a\":[1,2.5,\"three\",null,{\"b\":true}],\"c\":\"d\"}";

/* What one thread saw of its own arena. */
typedef struct ArenaView {
    int index;
    pthread_barrier_t *all_made; /* every thread holds JSON from its open scope */
    pthread_barrier_t *churned;  /* threads 1.. have ended and reopened scopes many times */
    size_t made;                 /* used() once its sample was made */
    size_t seen;                 /* used() when every thread had made its own */
    size_t after_churn;          /* thread 0: used() after the others recycled theirs */
    bool intact;                 /* thread 0: its JSON still read back as made */
} ArenaView;

static void *thread_body(void *arg)
{
    ArenaView *v = arg;
    jsonarena_begin();
    json_t *j = sample();
    v->made = jsonarena_used();
    pthread_barrier_wait(v->all_made);
    v->seen = jsonarena_used();
    if (v->index == 0) {
        /* hold j in this scope while the others end theirs and reuse their memory */
        pthread_barrier_wait(v->churned);
        v->after_churn = jsonarena_used();
        /* json_dumps would return arena memory, which free() must not see */
        char text[sizeof sample_text];
        size_t n = json_dumpb(j, text, sizeof text, JSON_COMPACT);
        v->intact = n == sizeof text - 1 && memcmp(text, sample_text, n) == 0;
        json_decref(j);
        jsonarena_end();
    } else {
        json_decref(j);
        jsonarena_end();
        for (int i = 0; i < ARENA_ROUNDS; i++) {
            jsonarena_begin();
            json_t *k = sample();
            json_object_set_new(k, "c", json_string("overwritten"));
            json_decref(k);
            jsonarena_end();
        }
        pthread_barrier_wait(v->churned);
    }
    jsonarena_thread_done();
    return NULL;
}

Test(jsonarena, threads_have_arenas_of_their_own)
{
    pthread_barrier_t all_made, churned;
    pthread_t t[ARENA_THREADS];
    ArenaView v[ARENA_THREADS];

    jsonarena_install();
    cr_assert_eq(pthread_barrier_init(&all_made, NULL, ARENA_THREADS + 1), 0);
    cr_assert_eq(pthread_barrier_init(&churned, NULL, ARENA_THREADS), 0);
    for (int i = 0; i < ARENA_THREADS; i++) {
        v[i] = (ArenaView){.index = i, .all_made = &all_made, .churned = &churned};
        cr_assert_eq(pthread_create(&t[i], NULL, thread_body, &v[i]), 0);
    }
    pthread_barrier_wait(&all_made);
    /* this thread, with no scope, keeps using malloc meanwhile */
    cr_expect_eq(jsonarena_used(), 0, "the other threads' scopes count here");
    for (int i = 0; i < ARENA_ROUNDS; i++)
        json_decref(sample());
    for (int i = 0; i < ARENA_THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&all_made);
    pthread_barrier_destroy(&churned);
    for (int i = 0; i < ARENA_THREADS; i++) {
        cr_expect_gt(v[i].made, 0, "thread %d: its JSON did not come from an arena", i);
        cr_expect_eq(v[i].seen, v[i].made,
                     "thread %d: %zu bytes in its scope once all had made theirs, %zu of its own",
                     i, v[i].seen, v[i].made);
    }
    cr_expect_eq(v[0].after_churn, v[0].made,
                 "another thread's scope ending changed this one's (%zu bytes, %zu made)",
                 v[0].after_churn, v[0].made);
    cr_expect(v[0].intact, "JSON held in a scope changed while other threads reused theirs");
    cr_expect_eq(jsonarena_used(), 0);
}
