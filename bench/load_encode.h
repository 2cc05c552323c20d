/* load_encode.h: writes workload events as a loyalty.EventBatch in the protobuf wire format. */
#ifndef LT_BENCH_LOAD_ENCODE_H
#define LT_BENCH_LOAD_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "workload.h"

/* Writes an EventBatch with batch_id and the n events; event i gets id (node, first_id + i),
 * occurred_at `now` and the workload's store offset (R3). Returns the length written, or 0 if
 * it does not fit in cap bytes. */
size_t load_encode_batch(uint8_t *buf, size_t cap, uint64_t batch_id, uint64_t node,
                         uint64_t first_id, int64_t now, const wl_event *ev, uint32_t n);

#endif
