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

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct pub pub;

/* Tier names around one posting, filled by the daemon after applying the entry (the ledger
 * entry only records a tier when it changes). */
typedef struct {
    char before[LT_TIER_NAME_MAX];
    char after[LT_TIER_NAME_MAX];
} pub_tiers;

typedef struct {
    uint64_t messages; /* sent */
    uint64_t dropped;  /* refused by ZeroMQ (high-water mark) */
    uint64_t entries;  /* entries published */
} pub_stats;

/* Creates a PUB socket in zctx bound to endpoint. Returns 0 and *out (caller owns:
 * pub_destroy()), or -1 with err set. The socket may then be used from one other thread. */
int pub_new(void *zctx, const char *endpoint, pub **out, char *err, size_t err_len);
/* Closes the socket and frees. Safe on NULL. */
void pub_destroy(pub **p);

/* Publishes everything one committed entry means: member.updated per posting, tier.changed when
 * a tier changed, sale.rated for a sale. tiers has one element per posting. Returns 0, or -1 if
 * the bytes do not decode (counted, not fatal). */
int pub_entry(pub *p, const uint8_t *bytes, size_t len, const pub_tiers *tiers, size_t tiers_n);

/* Publishes a heartbeat carrying the latest committed sequence. */
void pub_heartbeat(pub *p, uint64_t seq, int64_t now);

void pub_get_stats(const pub *p, pub_stats *st);

#endif
