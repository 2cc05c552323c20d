/* ckpt_plan.h: the order of a checkpoint's members and how much of it the loop thread encodes
 * per sealed batch (daemon.c: ckpt_start, ckpt_sort_work, ckpt_pump). */
#ifndef LT_CKPT_PLAN_H
#define LT_CKPT_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A member of the checkpoint being written: its number, its id, and the id's first 16 bytes as
 * two big-endian numbers (NUL-padded) so that the sort compares in its own array instead of
 * following a pointer into the member table for every comparison (1 M members, thread pool:
 * 306 ms -> see docs/performance.md). The order is strcmp's, the ledger's key order. */
typedef struct {
    uint64_t k0, k1;
    const char *id;
    uint32_t idx;
} ck_ord;

static inline ck_ord ck_ord_make(const char *id, uint32_t idx)
{
    uint8_t b[16] = {0};
    memcpy(b, id, strnlen(id, sizeof b));
    uint64_t k0 = 0, k1 = 0;
    for (int i = 0; i < 8; i++) {
        k0 = k0 << 8 | b[i];
        k1 = k1 << 8 | b[8 + i];
    }
    return (ck_ord){k0, k1, id, idx};
}

static inline int ck_ord_cmp(const void *a, const void *b)
{
    const ck_ord *x = a, *y = b;
    if (x->k0 != y->k0)
        return x->k0 < y->k0 ? -1 : 1;
    if (x->k1 != y->k1)
        return x->k1 < y->k1 ? -1 : 1;
    return strcmp(x->id, y->id);
}

#define CK_CHUNK_MIN 64

/* The most checkpoint records the loop thread encodes when it seals a batch of n entries
 * (ckpt_share() takes what its schedule says is due, up to this). n = 0 (the daemon is idle)
 * takes the whole checkpoint_chunk (max); a batch with entries, twice its entries, at least
 * CK_CHUNK_MIN, never more than max. The encoding then grows with the events handled instead of
 * pausing the loop for whole chunks (when checkpoints rode on ledger commits: open loop at
 * 80,000 events/s, 1 M members, ack p99 43 ms -> 12.5 ms, docs/performance.md), and a
 * checkpoint behind its schedule still keeps pace with the events: an event changes one member
 * (two for a referral or a merge), and each changed member costs one record. */
static inline size_t ckpt_chunk(size_t max, uint32_t n)
{
    if (n == 0)
        return max;
    size_t c = (size_t)n * 2;
    if (c < CK_CHUNK_MIN)
        c = CK_CHUNK_MIN;
    return c < max ? c : max;
}

/* Checkpoint records the loop thread encodes when it seals a batch of n entries (n > 0), for a
 * checkpoint of total records of which done are encoded, elapsed_us into its spread_us: what an
 * even schedule (total records over spread_us) says is due by now and not encoded yet, at most
 * ckpt_chunk(max, n). On schedule, the encoding is spread over the whole spread instead of
 * being done at ckpt_chunk()'s pace as early as it can (a checkpoint of 330,000 members in about
 * a second at 166,000 events/s: the open-loop p99 rose to 13-48 ms in its seconds,
 * docs/performance.md). Behind schedule (a first, full checkpoint; events that change two
 * members each) it is ckpt_chunk()'s, so a checkpoint still keeps pace with the events. */
static inline size_t ckpt_share(size_t max, uint32_t n, uint64_t total, uint64_t done,
                                uint64_t elapsed_us, uint64_t spread_us)
{
    size_t cap = ckpt_chunk(max, n);
    uint64_t due = total;
    if (elapsed_us < spread_us)
        due = (uint64_t)((double)total * (double)elapsed_us / (double)spread_us);
    if (due <= done)
        return 0;
    return due - done < cap ? (size_t)(due - done) : cap;
}

#endif
