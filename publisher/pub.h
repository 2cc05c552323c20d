/* pub.h: publishing member updates to subscribers (R28) on a ZeroMQ PUB socket.
 *
 * Each message is two frames: the topic (member.updated, tier.changed, sale.rated, heartbeat)
 * and the packed protobuf payload, which carries the ledger sequence. Publishing happens only
 * after the entry is committed, from the daemon's publisher thread; sends never block
 * (ZMQ_DONTWAIT): a slow subscriber loses messages at its high-water mark and must catch up
 * from the ledger, never slow down ingest.
 */
#ifndef LT_PUB_H
#define LT_PUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct pub pub;

typedef enum {
    PUB_MEMBER_UPDATED = 0,  /* loyalty.MemberUpdate */
    PUB_TIER_CHANGED = 1,    /* loyalty.TierChange */
    PUB_SALE_RATED = 2,      /* loyalty.LedgerEntry of the sale: the full breakdown, per line */
    PUB_HEARTBEAT = 3,       /* loyalty.Heartbeat */
    PUB_POINTS_EXPIRED = 4,  /* loyalty.MemberUpdate (R20) */
    PUB_POINTS_EXPIRING = 5, /* loyalty.MemberUpdate (R21) */
    PUB_MEMBER_BIRTHDAY = 6, /* loyalty.MemberUpdate (R28) */
    PUB_MEMBER_DORMANT = 7,  /* loyalty.MemberUpdate (R28) */
    PUB__TOPICS
} pub_topic;

typedef struct {
    uint64_t messages; /* sent */
    uint64_t dropped;  /* refused by ZeroMQ (high-water mark) */
} pub_stats;

/* The topic string ("member.updated", ...). Static storage. */
const char *pub_topic_name(pub_topic t);
/* The topic whose string is name[0..len) (no NUL needed), or -1. */
int pub_topic_of(const char *name, size_t len);

/* Makes sock a CURVE server with a Z85 secret key (40 characters), authenticated by the ZAP
 * handler in the given domain (see daemon/auth.h). Call before bind. Returns 0 or -1. */
int pub_secure(void *sock, const char *secret_z85, const char *domain);

/* Creates a PUB socket in zctx bound to endpoint; with curve_secret (NULL: plain) it is a CURVE
 * server in ZAP domain "publish". Returns 0 and *out (caller owns: pub_destroy()), or -1 with
 * err set. The socket may then be used from one other thread. */
int pub_new(void *zctx, const char *endpoint, const char *curve_secret, pub **out, char *err,
            size_t err_len);
/* Closes the socket and frees. Safe on NULL. */
void pub_destroy(pub **p);

/* What one ledger entry publishes, rendered from the entry alone, so that the live stream and
 * catch-up (which reads the ledger) send exactly the same messages: member.updated per posting,
 * tier.changed where tier_before and tier_after differ, then sale.rated for a sale. Each
 * carries seq, part (1..parts) and parts. */
#define PUB_PARTS_MAX (3 * LT_POSTINGS_MAX + 1)
#define PUB_PART_BYTES_MAX 512 /* any part but sale.rated */

typedef struct {
    pub_topic topic;
    uint32_t off, len; /* payload within the render buffer */
} pub_part;

/* Renders entry e (whose encoded bytes are entry_bytes, for sale.rated) into buf. Returns the
 * number of parts written to parts, or -1 if cap is too small: cap of entry_len +
 * PUB_PARTS_MAX * PUB_PART_BYTES_MAX always suffices. Every entry kind the rules produce has a
 * posting, so every entry publishes at least one message. */
int pub_render(const lt_entry *e, const uint8_t *entry_bytes, size_t entry_len, uint8_t *buf,
               size_t cap, pub_part *parts);

/* A message's place in the stream (docs/subscribers.md): the entry's seq, and the message's
 * part of that entry's parts. */
typedef struct {
    uint64_t seq;
    uint32_t part, parts; /* 1 .. parts */
} pub_place;

/* Reads the place of a payload pub_render() wrote for topic t, without decoding the rest (a
 * sale.rated's entry is skipped, not parsed): cheap enough for a reader of every message.
 * Returns 0 and *out, or -1: the topic carries no place (the heartbeat), the payload does not
 * parse, or the place is impossible (seq 0, part 0, part > parts). */
int pub_read_place(pub_topic t, const uint8_t *payload, size_t len, pub_place *out);

/* Sends one message (topic frame + payload) without blocking; counts a drop if ZeroMQ refuses. */
void pub_send(pub *p, pub_topic t, const uint8_t *payload, size_t len);

/* Publishes a heartbeat carrying the latest committed sequence. */
void pub_heartbeat(pub *p, uint64_t seq, int64_t now);

void pub_get_stats(const pub *p, pub_stats *st);

/* Connected subscribers, from the socket's monitor events (same thread as the sends). */
uint64_t pub_subscribers(pub *p);

#endif
