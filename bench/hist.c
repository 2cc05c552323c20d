/* hist.c: a fixed-size log-linear histogram for latencies: constant memory, O(1) insert,
 * about 3% relative error, mergeable across threads. */
#include <time.h>

#include "bench.h"

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    unsigned idx = (msb - HIST_SUB_BITS + 1) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1));
    LT_ASSERT(idx < HIST_BUCKETS);
    return idx;
}

/* The largest value that falls in bucket idx. */
static uint64_t bucket_upper(unsigned idx)
{
    if (idx < HIST_SUB)
        return idx;
    unsigned msb = idx / HIST_SUB + HIST_SUB_BITS - 1;
    uint64_t sub = idx % HIST_SUB;
    unsigned shift = msb - HIST_SUB_BITS;
    return ((HIST_SUB + sub + 1) << shift) - 1;
}

void hist_add(hist *h, uint64_t v)
{
    h->counts[bucket_of(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

void hist_merge(hist *into, const hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->n += from->n;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_quantile(const hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n);
    if (rank >= h->n)
        rank = h->n - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen > rank) {
            uint64_t up = bucket_upper(i);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}

double bench_now_s(void)
{
    return (double)bench_now_ns() / 1e9;
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
