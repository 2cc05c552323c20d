/* idsort.c: see idsort.h. */
#include "idsort.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct idsort_till {
    uint64_t node;
    uint32_t count; /* 0: the slot is free */
    uint32_t next;  /* where the till's next key goes in tmp */
};

int idsort_cmp(const void *a, const void *b)
{
    const idsort_key *x = a, *y = b;
    if (x->node_id != y->node_id)
        return x->node_id < y->node_id ? -1 : 1;
    if (x->event_id != y->event_id)
        return x->event_id < y->event_id ? -1 : 1;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static struct idsort_till *find_till(const idsort_scratch *s, uint64_t node)
{
    size_t mask = s->tab_size - 1;
    uint64_t h = node * 0x9E3779B97F4A7C15ull;
    for (size_t i = (size_t)(h ^ h >> 29) & mask;; i = (i + 1) & mask)
        if (s->tab[i].count == 0 || s->tab[i].node == node)
            return &s->tab[i];
}

/* p (holding *cap items of `size` bytes) grown to at least `want` items: the new pointer, or
 * NULL out of memory (p is then unchanged). */
static void *reserve(void *p, size_t *cap, size_t want, size_t size)
{
    if (*cap >= want)
        return p;
    size_t c = *cap ? *cap : 64;
    while (c < want && c <= SIZE_MAX / 2 / size)
        c *= 2;
    if (c < want)
        return NULL;
    void *q = realloc(p, c * size);
    if (q != NULL)
        *cap = c;
    return q;
}

/* Counts each till's keys in the table (at most half full: counted again in a larger one
 * otherwise; the first size from the last call's tills) and lists the distinct node ids in
 * s->nodes. Returns their number, or SIZE_MAX out of memory. */
static size_t count_tills(const idsort_key *keys, size_t n, idsort_scratch *s)
{
    size_t size = 64, guess = s->last_tills < n ? s->last_tills : n;
    while (size < 2 * guess)
        size *= 4;
    for (;; size *= 4) {
        struct idsort_till *tab = reserve(s->tab, &s->tab_cap, size, sizeof *tab);
        if (tab == NULL)
            return SIZE_MAX;
        s->tab = tab;
        s->tab_size = size;
        memset(s->tab, 0, size * sizeof *s->tab);
        size_t d = 0, i = 0;
        for (; i < n && d * 2 <= size; i++) {
            struct idsort_till *t = find_till(s, keys[i].node_id);
            if (t->count++ > 0)
                continue;
            uint64_t *nodes = reserve(s->nodes, &s->nodes_cap, d + 1, sizeof *nodes);
            if (nodes == NULL)
                return SIZE_MAX;
            s->nodes = nodes;
            t->node = keys[i].node_id;
            s->nodes[d++] = t->node;
        }
        if (i == n && d * 2 <= size) {
            s->last_tills = d;
            return d;
        }
    }
}

void idsort(idsort_key *keys, size_t n, idsort_scratch *s)
{
    if (n < 2)
        return;
    idsort_key *tmp = (uint64_t)n <= UINT32_MAX ? reserve(s->tmp, &s->tmp_cap, n, sizeof *tmp)
                                                : NULL; /* (a till's count is 32 bits) */
    if (tmp != NULL)
        s->tmp = tmp;
    size_t d = tmp != NULL ? count_tills(keys, n, s) : SIZE_MAX;
    if (d == SIZE_MAX) {
        qsort(keys, n, sizeof *keys, idsort_cmp); /* out of memory: the slow way */
        return;
    }
    /* each till's range in tmp, the tills in ascending order */
    qsort(s->nodes, d, sizeof *s->nodes, cmp_u64);
    uint32_t at = 0;
    for (size_t j = 0; j < d; j++) {
        struct idsort_till *t = find_till(s, s->nodes[j]);
        t->next = at;
        at += t->count;
    }
    /* scatter, stable: a till's keys keep their order */
    for (size_t i = 0; i < n; i++)
        s->tmp[find_till(s, keys[i].node_id)->next++] = keys[i];
    /* a till whose ids are not ascending gets a sort of its own */
    size_t start = 0;
    bool ascending = true;
    for (size_t i = 1; i <= n; i++) {
        if (i < n && s->tmp[i].node_id == s->tmp[start].node_id) {
            ascending = ascending && s->tmp[i].event_id > s->tmp[i - 1].event_id;
            continue;
        }
        if (!ascending)
            qsort(s->tmp + start, i - start, sizeof *s->tmp, idsort_cmp);
        start = i;
        ascending = true;
    }
    memcpy(keys, s->tmp, n * sizeof *keys);
}

void idsort_free(idsort_scratch *s)
{
    free(s->tmp);
    free(s->tab);
    free(s->nodes);
    memset(s, 0, sizeof *s);
}
