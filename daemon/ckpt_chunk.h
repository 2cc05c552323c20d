/* ckpt_chunk.h: how much of a staged checkpoint one commit carries (daemon.c, ckpt_attach). */
#ifndef LT_CKPT_CHUNK_H
#define LT_CKPT_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#define CK_CHUNK_MIN 64

/* Checkpoint records (staged, or moved into place) that a batch of n entries carries. A batch
 * with no entries (the daemon is idle) takes the whole checkpoint_chunk (max); one with entries
 * takes twice its entries, at least CK_CHUNK_MIN, never more than max. A commit's checkpoint
 * work then grows with the commit instead of adding a fixed 4096 records to a 100-event commit
 * (open loop at 80,000 events/s, 1 M members: ack p99 43 ms -> 12.5 ms, docs/performance.md),
 * and a checkpoint still keeps pace with the events: an event dirties one member (two for a
 * referral or a merge) and each dirty member costs two records (staged, then moved). */
static inline size_t ckpt_chunk(size_t max, uint32_t n)
{
    if (n == 0)
        return max;
    size_t c = (size_t)n * 2;
    if (c < CK_CHUNK_MIN)
        c = CK_CHUNK_MIN;
    return c < max ? c : max;
}

#endif
