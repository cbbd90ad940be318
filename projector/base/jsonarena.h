/* jsonarena.h - a per-thread bump allocator for jansson while one event is decoded and
 * bound. Decoding builds many small JSON nodes that all die together a few microseconds
 * later; taking them from one block and dropping the block at once costs a fraction of a
 * malloc and free per node.
 *
 * jsonarena_install() makes jansson allocate through here (process-wide, once, before any
 * JSON is made). Outside a scope, and on threads without one, that is plain malloc/free.
 * Between jsonarena_begin() and jsonarena_end() on a thread, JSON made by that thread comes
 * from its arena, and freeing it is a no-op; everything made in the scope must be freed
 * (json_decref) before jsonarena_end(), which recycles the memory. JSON made outside the
 * scope may be freed inside it (it goes back to malloc).
 */
#ifndef PROJECTOR_JSONARENA_H
#define PROJECTOR_JSONARENA_H

#include <stddef.h>

void jsonarena_install(void);
void jsonarena_begin(void);
void jsonarena_end(void);
/* Frees this thread's arena; call before a thread that used one ends. */
void jsonarena_thread_done(void);
/* Bytes handed out in this thread's current scope (0 outside one): for tests. */
size_t jsonarena_used(void);

#endif
