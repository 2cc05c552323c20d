/* ckpt_order.c: a checkpoint's members in id order, from the order of all members kept between
 * checkpoints (ckpt_order.h). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_order.h"
#include "ckpt_plan.h"
#include "lt.h"

/* Whether member number idx's id sorts before id. */
static bool before(uint32_t idx, const char *id, ck_id_fn id_of, const void *ctx)
{
    return strcmp(id_of(ctx, idx), id) < 0;
}

/* How many of o's members sort before id, knowing that the first lo of them do: probes lo,
 * lo + 1, lo + 3, lo + 7, ... until one does not, then a binary search in the last step. */
static uint32_t place(const ck_order *o, uint32_t lo, const char *id, ck_id_fn id_of,
                      const void *ctx)
{
    size_t hi = lo, step = 1;
    while (hi < o->n && before(o->by_id[hi], id, id_of, ctx)) {
        lo = (uint32_t)hi + 1;
        hi += step;
        step *= 2;
    }
    if (hi > o->n)
        hi = o->n;
    /* the members before lo sort before id; the one at hi (if any) does not */
    while (lo < hi) {
        uint32_t mid = lo + (uint32_t)((hi - lo) / 2);
        if (before(o->by_id[mid], id, id_of, ctx))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int ck_order_grow(ck_order *o, uint32_t members_n, ck_id_fn id_of, const void *ctx)
{
    if (members_n < o->n)
        o->n = 0; /* fewer members: another state's order */
    uint32_t from = o->n, k = members_n - from;
    if (k == 0)
        return 0;
    if (members_n > o->cap) {
        size_t cap = (size_t)members_n + members_n / 8;
        uint32_t *v = realloc(o->by_id, cap * sizeof *v);
        if (v == NULL)
            return -1;
        o->by_id = v;
        o->cap = cap;
    }
    ck_ord *add = malloc((size_t)k * sizeof *add);
    uint32_t *at = malloc((size_t)k * sizeof *at);
    if (add == NULL || at == NULL) {
        free(add);
        free(at);
        return -1;
    }
    /* the new members' keys: their records were allocated in number order, so this reads
     * memory in order */
    bool sorted = true;
    for (uint32_t i = 0; i < k; i++) {
        add[i] = ck_ord_make(id_of(ctx, from + i), from + i);
        if (i > 0 && sorted && ck_ord_cmp(&add[i - 1], &add[i]) > 0)
            sorted = false;
    }
    if (!sorted)
        qsort(add, k, sizeof *add, ck_ord_cmp);
    uint32_t lo = 0;
    for (uint32_t j = 0; j < k; j++)
        at[j] = lo = place(o, lo, add[j].id, id_of, ctx);
    /* merged in place from the back: new member j goes after the at[j] old ones before it and
     * the j new ones */
    uint32_t end = o->n;
    for (uint32_t j = k; j-- > 0;) {
        uint32_t p = at[j];
        memmove(&o->by_id[p + j + 1], &o->by_id[p], (size_t)(end - p) * sizeof *o->by_id);
        o->by_id[p + j] = add[j].idx;
        end = p;
    }
    o->n = members_n;
    free(add);
    free(at);
    return 0;
}

int ck_order_select(ck_order *o, const uint32_t *list, size_t n, uint32_t *out)
{
    LT_ASSERT(n <= o->n);
    if (n == o->n) { /* every member (none twice), or none (by_id may be NULL) */
        if (n > 0)
            memcpy(out, o->by_id, n * sizeof *out);
        return 0;
    }
    size_t words = ((size_t)o->n + 63) / 64;
    if (words > o->bits_cap) {
        uint64_t *b = realloc(o->bits, words * sizeof *b);
        if (b == NULL)
            return -1;
        o->bits = b;
        o->bits_cap = words;
    }
    memset(o->bits, 0, words * sizeof *o->bits);
    for (size_t i = 0; i < n; i++) {
        LT_ASSERT(list[i] < o->n);
        o->bits[list[i] / 64] |= 1ULL << (list[i] % 64);
    }
    size_t k = 0;
    for (uint32_t p = 0; p < o->n && k < n; p++) {
        uint32_t idx = o->by_id[p];
        if (o->bits[idx / 64] >> (idx % 64) & 1)
            out[k++] = idx;
    }
    LT_ASSERT(k == n); /* else the list named a member twice */
    return 0;
}

void ck_order_reset(ck_order *o)
{
    o->n = 0;
}

void ck_order_free(ck_order *o)
{
    free(o->by_id);
    free(o->bits);
    *o = (ck_order){0};
}
