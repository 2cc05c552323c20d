/* idmap.h: a hash map from a pair of u64 (node id, event id) to a pair of u64 values.
 *
 * Open addressing with linear probing and backward-shift deletion (no tombstones), so lookups
 * stay short however many inserts and removes go through it. Used for the daemon's pending
 * (unacknowledged) event ids and its per-till high-water marks, and the ledger writer's ids not
 * indexed yet and per-till maxima. Not thread-safe.
 */
#ifndef LT_IDMAP_H
#define LT_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t a, b;   /* key */
    uint64_t v1, v2; /* values */
    bool used;
} idmap_slot;

typedef struct {
    idmap_slot *slots;
    size_t cap; /* power of two */
    size_t n;
} idmap;

/* Initialises an empty map. Returns 0 or -1 (out of memory). */
int idmap_init(idmap *m, size_t cap_hint);
void idmap_free(idmap *m);
/* Inserts or overwrites. Returns 0 or -1 (out of memory). */
int idmap_put(idmap *m, uint64_t a, uint64_t b, uint64_t v1, uint64_t v2);
/* Puts (a, b) -> (v1, 0) if the key is absent, else raises its v1 to v1 if that is larger (a
 * high-water mark). Returns 0 or -1 (out of memory). */
int idmap_put_max(idmap *m, uint64_t a, uint64_t b, uint64_t v1);
/* Returns the slot or NULL. Valid until the next put or remove. */
idmap_slot *idmap_get(const idmap *m, uint64_t a, uint64_t b);
/* Removes a key if present. */
void idmap_remove(idmap *m, uint64_t a, uint64_t b);
/* Whether `more` keys beyond those present fit without growing (at most half full). */
static inline bool idmap_has_room(const idmap *m, size_t more)
{
    return (m->n + more) * 2 <= m->cap;
}
/* Makes room for `more` keys beyond those present, so that that many puts cannot fail.
 * Returns 0 or -1 (out of memory; the map is unchanged). */
int idmap_reserve(idmap *m, size_t more);
/* Fills *dst (uninitialised) with src's keys and room for `more` beyond them; src is unchanged.
 * Returns 0 or -1 (out of memory). */
int idmap_copy(idmap *dst, const idmap *src, size_t more);
/* Removes every key and keeps the table. */
void idmap_clear(idmap *m);

#endif
