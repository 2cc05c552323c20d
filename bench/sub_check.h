/* sub_check.h: what lt-bench's subscribers check in each message the daemon publishes (R28):
 * the message's place in the stream, (seq, part of parts), read from its payload, and whether
 * it follows the message before it. A place skipped is a message the publisher dropped for
 * this subscriber at its high-water mark (docs/subscribers.md), so the bench can say whether a
 * subscriber kept up with the rate it measured.
 */
#ifndef LT_BENCH_SUB_CHECK_H
#define LT_BENCH_SUB_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pub.h"

/* Reads the place of a message on topic (topic_len bytes, no NUL) from its payload with the
 * publisher's own pub_read_place(). Returns 1 (an entry's message: *out set), 0 (a heartbeat:
 * no place) or -1 (a topic the publisher does not have, as from a daemon newer than this
 * bench, which fails the bench instead of showing as gaps; a payload that does not parse; or
 * an impossible place: seq 0, part 0, part > parts). */
int sub_read_place(const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                   pub_place *out);

/* A subscriber's view of the stream: the last place seen and what was skipped. Zero it to
 * start: the first message sets where the subscriber joined. */
typedef struct {
    bool started;
    pub_place last;
    uint64_t messages; /* entries' messages seen (heartbeats not counted) */
    uint64_t gaps;     /* messages that did not follow the one before */
    uint64_t missed;   /* entries with a message skipped, summed over the gaps */
} sub_track;

/* Forgets the last place: after a message that could not be read, the next one starts afresh
 * instead of counting as a gap. */
void sub_track_reset(sub_track *t);

/* Adds the message at place p. In order, (s, k of n) is followed by (s, k + 1 of n) while
 * k < n, and (s, n of n) by (s + 1, 1): every entry publishes at least one message. */
void sub_track_add(sub_track *t, const pub_place *p);

#endif
