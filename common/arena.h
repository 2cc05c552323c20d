/* arena.h: a bump allocator for protobuf-c, so that unpacking a message costs no malloc per
 * field: alloc bumps a pointer, reset frees the whole message at once. Not thread-safe: one
 * arena per thread. */
#ifndef LT_ARENA_H
#define LT_ARENA_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct lt_arena lt_arena;

/* Returns NULL on allocation failure. Caller owns it: lt_arena_destroy(). */
lt_arena *lt_arena_new(size_t chunk_bytes);
/* Frees the arena and sets *a to NULL. Safe on NULL. */
void lt_arena_destroy(lt_arena **a);
/* Frees everything allocated since the last reset (keeps the first chunk). */
void lt_arena_reset(lt_arena *a);
/* The protobuf-c allocator over this arena; valid while the arena lives. */
ProtobufCAllocator *lt_arena_allocator(lt_arena *a);

#endif
