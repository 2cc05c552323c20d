/* arena.c: a bump allocator for protobuf-c unpacking.
 *
 * A till message unpacks into many small allocations (a struct per line, a copy per string).
 * From an arena they cost a pointer bump, and the whole message is freed at once by a reset.
 * Chunks beyond the first are kept only until the next reset, so one huge message does not pin
 * memory for ever.
 */
#include <stdlib.h>

#include "arena.h"

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    max_align_t data[];
} chunk;

struct lt_arena {
    ProtobufCAllocator alloc;
    size_t chunk_bytes;
    chunk *first; /* kept across resets */
    chunk *cur;
};

static chunk *chunk_new(size_t cap)
{
    chunk *c = malloc(sizeof *c + cap);
    if (c == NULL)
        return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    return c;
}

static void *arena_alloc(void *ctx, size_t size)
{
    lt_arena *a = ctx;
    size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (a->cur->cap - a->cur->used < size) {
        chunk *c = chunk_new(size > a->chunk_bytes ? size : a->chunk_bytes);
        if (c == NULL)
            return NULL;
        a->cur->next = c;
        a->cur = c;
    }
    void *p = (char *)a->cur->data + a->cur->used;
    a->cur->used += size;
    return p;
}

static void arena_free(void *ctx, void *p)
{
    (void)ctx;
    (void)p; /* freed all at once by lt_arena_reset() */
}

lt_arena *lt_arena_new(size_t chunk_bytes)
{
    lt_arena *a = malloc(sizeof *a);
    if (a == NULL)
        return NULL;
    a->first = chunk_new(chunk_bytes);
    if (a->first == NULL) {
        free(a);
        return NULL;
    }
    a->chunk_bytes = chunk_bytes;
    a->cur = a->first;
    a->alloc.alloc = arena_alloc;
    a->alloc.free = arena_free;
    a->alloc.allocator_data = a;
    return a;
}

void lt_arena_reset(lt_arena *a)
{
    chunk *c = a->first->next;
    while (c != NULL) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
    a->first->next = NULL;
    a->first->used = 0;
    a->cur = a->first;
}

void lt_arena_destroy(lt_arena **ap)
{
    if (*ap == NULL)
        return;
    lt_arena_reset(*ap);
    free((*ap)->first);
    free(*ap);
    *ap = NULL;
}

ProtobufCAllocator *lt_arena_allocator(lt_arena *a)
{
    return &a->alloc;
}
