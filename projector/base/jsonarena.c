/* jsonarena.c - the per-thread arena behind jansson's allocations (see jsonarena.h).
 *
 * Owns each thread's chunks: the first (JSONARENA_CHUNK bytes) is kept from scope to scope,
 * larger or further ones are freed at jsonarena_end. Under AddressSanitizer the unused
 * and recycled parts of a chunk are poisoned, so a use after the scope still reports.
 */
#include "base/jsonarena.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/util.h"

#if defined(__SANITIZE_ADDRESS__)
#define JSONARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JSONARENA_ASAN 1
#endif
#endif
#ifdef JSONARENA_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define JSONARENA_CHUNK ((size_t)256 * 1024)
#define JSONARENA_ALIGN 16

typedef struct Chunk {
    struct Chunk *next;
    size_t size, used; /* of data */
    _Alignas(JSONARENA_ALIGN) unsigned char data[];
} Chunk;

typedef struct Arena {
    bool active;
    Chunk *chunks; /* the newest first; the last is the kept one */
    size_t handed;
} Arena;

static _Thread_local Arena arena;

static Chunk *chunk_new(size_t size)
{
    Chunk *c = xmalloc(sizeof *c + size);
    c->next = NULL;
    c->size = size;
    c->used = 0;
    POISON(c->data, size);
    return c;
}

static bool in_arena(const void *p)
{
    const unsigned char *b = p;
    for (const Chunk *c = arena.chunks; c != NULL; c = c->next)
        if (b >= c->data && b < c->data + c->size)
            return true;
    return false;
}

static void *arena_malloc(size_t n)
{
    if (!arena.active)
        return malloc(n);
    size_t need = (n + JSONARENA_ALIGN - 1) & ~(size_t)(JSONARENA_ALIGN - 1);
    if (need == 0)
        need = JSONARENA_ALIGN;
    Chunk *c = arena.chunks;
    if (c == NULL || c->size - c->used < need) {
        c = chunk_new(need > JSONARENA_CHUNK ? need : JSONARENA_CHUNK);
        c->next = arena.chunks;
        arena.chunks = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    arena.handed += n;
    UNPOISON(p, n);
    return p;
}

static void arena_free(void *p)
{
    if (p == NULL || (arena.active && in_arena(p)))
        return;
    free(p);
}

void jsonarena_install(void)
{
    json_set_alloc_funcs(arena_malloc, arena_free);
}

void jsonarena_begin(void)
{
    arena.active = true;
    arena.handed = 0;
}

/* Frees every chunk but the last (the kept one, JSONARENA_CHUNK bytes) and empties it. */
void jsonarena_end(void)
{
    Chunk *c = arena.chunks;
    while (c != NULL && c->next != NULL) {
        Chunk *next = c->next;
        free(c);
        c = next;
    }
    arena.chunks = c;
    if (c != NULL && c->size != JSONARENA_CHUNK) {
        free(c); /* one large allocation only: keep nothing */
        arena.chunks = NULL;
    } else if (c != NULL) {
        POISON(c->data, c->used);
        c->used = 0;
    }
    arena.active = false;
    arena.handed = 0;
}

size_t jsonarena_used(void)
{
    return arena.handed;
}

void jsonarena_thread_done(void)
{
    Chunk *c = arena.chunks;
    while (c != NULL) {
        Chunk *next = c->next;
        free(c);
        c = next;
    }
    arena = (Arena){0};
}
