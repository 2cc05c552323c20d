/* idmap.c: see idmap.h. */
#include <stdlib.h>
#include <string.h>

#include "idmap.h"
#include "lt.h"

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* A key's home slot. Event ids of one till that differ only in their last three bits share a
 * hash and take neighbouring slots in it, ascending: a till's ids, put in order and removed in
 * order, touch the same few cache lines instead of one random line each. Keys with other b
 * patterns land as anywhere else: linear probing is correct for any home. */
static inline __attribute__((always_inline)) size_t home(const idmap *m, uint64_t a, uint64_t b)
{
    return ((mix(a, b >> 3) << 3) | (b & 7)) & (m->cap - 1);
}

int idmap_init(idmap *m, size_t cap_hint)
{
    size_t cap = 16;
    while (cap < cap_hint * 2)
        cap <<= 1;
    m->slots = calloc(cap, sizeof *m->slots);
    if (m->slots == NULL)
        return -1;
    m->cap = cap;
    m->n = 0;
    return 0;
}

void idmap_free(idmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

int idmap_copy(idmap *dst, const idmap *src, size_t more)
{
    if (idmap_init(dst, src->n + more) != 0)
        return -1;
    for (size_t i = 0; i < src->cap; i++) {
        const idmap_slot *s = &src->slots[i];
        if (s->used) /* cannot fail: dst has room for src->n + more */
            (void)idmap_put(dst, s->a, s->b, s->v1, s->v2);
    }
    return 0;
}

/* The slot holding (a, b), or the free one where it would go. Inlined: every lookup of the
 * loop thread's hot path goes through it. */
static inline __attribute__((always_inline)) idmap_slot *probe(const idmap *m, uint64_t a,
                                                               uint64_t b)
{
    size_t mask = m->cap - 1;
    for (size_t i = home(m, a, b);; i = (i + 1) & mask) {
        idmap_slot *s = &m->slots[i];
        if (!s->used || (s->a == a && s->b == b))
            return s;
    }
}

/* The slot for (a, b), taken if it was free (with v1, v2 = 0), or NULL out of memory. */
static idmap_slot *slot_for(idmap *m, uint64_t a, uint64_t b, uint64_t v1)
{
    if (!idmap_has_room(m, 1) && idmap_reserve(m, 1) != 0) /* full: twice the capacity */
        return NULL;
    idmap_slot *s = probe(m, a, b);
    if (!s->used) {
        *s = (idmap_slot){a, b, v1, 0, true};
        m->n++;
    }
    return s;
}

int idmap_put(idmap *m, uint64_t a, uint64_t b, uint64_t v1, uint64_t v2)
{
    idmap_slot *s = slot_for(m, a, b, v1);
    if (s == NULL)
        return -1;
    s->v1 = v1;
    s->v2 = v2;
    return 0;
}

int idmap_put_max(idmap *m, uint64_t a, uint64_t b, uint64_t v1)
{
    idmap_slot *s = slot_for(m, a, b, v1);
    if (s == NULL)
        return -1;
    if (v1 > s->v1)
        s->v1 = v1;
    return 0;
}

int idmap_reserve(idmap *m, size_t more)
{
    if (idmap_has_room(m, more))
        return 0;
    idmap bigger; /* one rehash, straight to the size needed */
    if (idmap_copy(&bigger, m, more) != 0)
        return -1;
    free(m->slots);
    *m = bigger;
    return 0;
}

void idmap_clear(idmap *m)
{
    if (m->n > 0)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
}

idmap_slot *idmap_get(const idmap *m, uint64_t a, uint64_t b)
{
    idmap_slot *s = probe(m, a, b);
    return s->used ? s : NULL;
}

void idmap_remove(idmap *m, uint64_t a, uint64_t b)
{
    idmap_slot *found = probe(m, a, b);
    if (!found->used)
        return;
    size_t mask = m->cap - 1;
    size_t i = (size_t)(found - m->slots);
    /* backward-shift: pull later members of the probe run into the hole */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; m->slots[j].used; j = (j + 1) & mask) {
        size_t h = home(m, m->slots[j].a, m->slots[j].b);
        /* move j into the hole if its home is not cyclically within (hole, j] */
        bool between = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j);
        if (!between) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].used = false;
    m->n--;
    LT_ASSERT(m->n < m->cap);
}
