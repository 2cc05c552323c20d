/* pub.c: turns committed ledger entries into published messages. */
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "arena.h"
#include "loyalty.pb-c.h"
#include "pub.h"

#define PUB_SNDHWM 100000
#define PUB_PAYLOAD_MAX (128 * 1024)

struct pub {
    void *sock;
    lt_arena *arena;
    pub_stats st;
    uint8_t buf[PUB_PAYLOAD_MAX];
};

int pub_new(void *zctx, const char *endpoint, pub **out, char *err, size_t err_len)
{
    pub *p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    p->arena = lt_arena_new(256 * 1024);
    p->sock = zmq_socket(zctx, ZMQ_PUB);
    int hwm = PUB_SNDHWM, linger = 0;
    if (p->arena == NULL || p->sock == NULL) {
        snprintf(err, err_len, "cannot create PUB socket: %s", zmq_strerror(zmq_errno()));
        pub_destroy(&p);
        return -1;
    }
    zmq_setsockopt(p->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(p->sock, endpoint) != 0) {
        snprintf(err, err_len, "cannot bind publisher to %s: %s", endpoint,
                 zmq_strerror(zmq_errno()));
        pub_destroy(&p);
        return -1;
    }
    *out = p;
    return 0;
}

void pub_destroy(pub **pp)
{
    pub *p = *pp;
    if (p == NULL)
        return;
    if (p->sock != NULL)
        zmq_close(p->sock);
    lt_arena_destroy(&p->arena);
    free(p);
    *pp = NULL;
}

static void send2(pub *p, const char *topic, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > sizeof p->buf) {
        p->st.dropped++;
        return;
    }
    protobuf_c_message_pack(m, p->buf);
    if (zmq_send(p->sock, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(p->sock, p->buf, n, ZMQ_DONTWAIT) < 0) {
        p->st.dropped++;
        return;
    }
    p->st.messages++;
}

static void publish_sale(pub *p, const Loyalty__LedgerEntry *e, const char *tier, int64_t balance)
{
    Loyalty__SaleRated s = LOYALTY__SALE_RATED__INIT;
    s.has_seq = 1, s.seq = e->seq;
    s.event_id = e->id;
    s.member_id = e->member_id;
    s.store_id = e->store_id;
    s.has_occurred_at = 1, s.occurred_at = e->occurred_at;
    s.has_paid_fen = 1, s.paid_fen = e->paid_fen;
    s.has_eligible_fen = 1, s.eligible_fen = e->eligible_fen;
    s.has_base_points = 1, s.base_points = e->base_points;
    s.has_multiplier_pct = 1, s.multiplier_pct = e->multiplier_pct;
    s.has_sku_points = 1, s.sku_points = e->sku_points;
    s.has_points_earned = 1, s.points_earned = e->points_earned;
    s.has_points_redeemed = 1, s.points_redeemed = e->points_redeemed;
    s.tier = (char *)tier;
    s.has_balance = 1, s.balance = balance;
    s.n_lines = e->n_lines;
    s.lines = e->lines;
    send2(p, "sale.rated", &s.base);
}

int pub_entry(pub *p, const uint8_t *bytes, size_t len, const pub_tiers *tiers, size_t tiers_n)
{
    lt_arena_reset(p->arena);
    Loyalty__LedgerEntry *e =
        loyalty__ledger_entry__unpack(lt_arena_allocator(p->arena), len, bytes);
    if (e == NULL) {
        p->st.dropped++;
        return -1;
    }
    p->st.entries++;
    for (size_t i = 0; i < e->n_postings; i++) {
        const Loyalty__Posting *po = e->postings[i];
        const pub_tiers *t = i < tiers_n ? &tiers[i] : NULL;
        Loyalty__MemberUpdate u = LOYALTY__MEMBER_UPDATE__INIT;
        u.has_seq = 1, u.seq = e->seq;
        u.member_id = po->member_id;
        u.has_balance = 1, u.balance = po->balance_after;
        u.has_delta = 1, u.delta = po->credit - po->debit;
        u.tier = t != NULL ? (char *)t->after : po->tier_after;
        u.reason = po->reason;
        u.has_occurred_at = 1, u.occurred_at = e->occurred_at;
        u.event_id = e->id;
        send2(p, "member.updated", &u.base);
        if (t != NULL && strcmp(t->before, t->after) != 0) {
            Loyalty__TierChange c = LOYALTY__TIER_CHANGE__INIT;
            c.has_seq = 1, c.seq = e->seq;
            c.member_id = po->member_id;
            c.from_tier = (char *)t->before;
            c.to_tier = (char *)t->after;
            c.has_upgrade = 1, c.upgrade = po->tier_after != NULL && po->tier_after[0] != '\0' &&
                                           e->kind != LOYALTY__ENTRY_KIND__ENTRY_TIER_PERIOD;
            c.has_occurred_at = 1, c.occurred_at = e->occurred_at;
            send2(p, "tier.changed", &c.base);
        }
    }
    if (e->kind == LOYALTY__ENTRY_KIND__ENTRY_SALE) {
        const char *tier = tiers_n > 0 ? tiers[0].after : "";
        int64_t bal = e->n_postings > 0 ? e->postings[0]->balance_after : 0;
        publish_sale(p, e, tier, bal);
    }
    return 0;
}

void pub_heartbeat(pub *p, uint64_t seq, int64_t now)
{
    Loyalty__Heartbeat h = LOYALTY__HEARTBEAT__INIT;
    h.has_seq = 1, h.seq = seq;
    h.has_at = 1, h.at = now;
    send2(p, "heartbeat", &h.base);
}

void pub_get_stats(const pub *p, pub_stats *st)
{
    *st = p->st;
}
