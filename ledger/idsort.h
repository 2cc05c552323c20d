/* idsort.h: sorts event ids by (node id, event id) for the dedup index (R29).
 *
 * A round of the index takes up to 65,536 ids committed over 200 ms; the commit thread sorts
 * them before it inserts them, and the acks of the commit after the round's start wait for the
 * sort. qsort() with a comparator took about 0.19 us per id (9 ms for a round at 250,000
 * events/s). Each till's ids are nearly always ascending in commit order, so a stable
 * distribution by till (a count, a prefix sum over the tills in order, a scatter) gives the
 * order in a few passes, and only a till whose ids are out of order gets a sort of its own.
 */
#ifndef LT_IDSORT_H
#define LT_IDSORT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t node_id, event_id, seq;
} idsort_key;

/* Scratch kept between calls (zero-initialise; idsort_free() releases it). */
typedef struct {
    idsort_key *tmp;
    size_t tmp_cap;
    struct idsort_till *tab; /* open addressing by node id: tab_size slots in use */
    size_t tab_cap, tab_size;
    uint64_t *nodes; /* the distinct node ids */
    size_t nodes_cap;
    size_t last_tills; /* the last call's distinct tills: the table's first size */
} idsort_scratch;

/* Sorts keys[0..n) by node id, then event id (keys equal in both end up next to each other, in
 * no particular order). Out of memory it falls back to qsort(): it cannot fail. */
void idsort(idsort_key *keys, size_t n, idsort_scratch *s);
void idsort_free(idsort_scratch *s);

/* The order idsort() sorts by, as a qsort() comparator. */
int idsort_cmp(const void *a, const void *b);

#endif
