/* pub.c: the PUB socket and the encoders of what it publishes. */
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "loyalty.pb-c.h"
#include "pbwrite.h"
#include "pub.h"

#define PUB_SNDHWM 100000

struct pub {
    void *sock;
    void *monitor; /* PAIR receiving the PUB socket's connect/disconnect events */
    uint64_t subscribers;
    pub_stats st;
};

static const char *const g_topics[PUB__TOPICS] = {
    "member.updated", "tier.changed",    "sale.rated",      "heartbeat",
    "points.expired", "points.expiring", "member.birthday", "member.dormant"};

/* Where each topic's payload carries its place in the stream: seq is field 1 in all; the part
 * and parts fields by topic (0: none, the heartbeat). The encoders below write these numbers and
 * pub_read_place() reads them. */
enum { MU_PART = 9, MU_PARTS = 10, TC_PART = 7, TC_PARTS = 8, SR_PART = 2, SR_PARTS = 3 };
static const struct {
    uint8_t part, parts;
} g_place[PUB__TOPICS] = {
    [PUB_MEMBER_UPDATED] = {MU_PART, MU_PARTS},  [PUB_TIER_CHANGED] = {TC_PART, TC_PARTS},
    [PUB_SALE_RATED] = {SR_PART, SR_PARTS},      [PUB_HEARTBEAT] = {0, 0},
    [PUB_POINTS_EXPIRED] = {MU_PART, MU_PARTS},  [PUB_POINTS_EXPIRING] = {MU_PART, MU_PARTS},
    [PUB_MEMBER_BIRTHDAY] = {MU_PART, MU_PARTS}, [PUB_MEMBER_DORMANT] = {MU_PART, MU_PARTS},
};

/* The notice a posting of a NOTICE entry stands for (its reason names it), or -1. */
static int notice_topic(const lt_posting *p)
{
    for (int t = PUB_POINTS_EXPIRING; t <= PUB_MEMBER_DORMANT; t++) {
        if (strcmp(p->reason, g_topics[t]) == 0)
            return t;
    }
    return -1;
}

const char *pub_topic_name(pub_topic t)
{
    LT_ASSERT(t < PUB__TOPICS);
    return g_topics[t];
}

int pub_topic_of(const char *name, size_t len)
{
    for (int t = 0; t < PUB__TOPICS; t++)
        if (strlen(g_topics[t]) == len && memcmp(g_topics[t], name, len) == 0)
            return t;
    return -1;
}

int pub_secure(void *sock, const char *secret_z85, const char *domain)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_z85, 40) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0)
        return -1;
    return 0;
}

int pub_new(void *zctx, const char *endpoint, const char *curve_secret, pub **out, char *err,
            size_t err_len)
{
    pub *p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    p->sock = zmq_socket(zctx, ZMQ_PUB);
    int hwm = PUB_SNDHWM, linger = 0;
    if (p->sock == NULL) {
        snprintf(err, err_len, "cannot create PUB socket: %s", zmq_strerror(zmq_errno()));
        pub_destroy(&p);
        return -1;
    }
    zmq_setsockopt(p->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (curve_secret != NULL && pub_secure(p->sock, curve_secret, "publish") != 0) {
        snprintf(err, err_len, "cannot set CURVE on the publisher: %s", zmq_strerror(zmq_errno()));
        pub_destroy(&p);
        return -1;
    }
    if (zmq_bind(p->sock, endpoint) != 0) {
        snprintf(err, err_len, "cannot bind publisher to %s: %s", endpoint,
                 zmq_strerror(zmq_errno()));
        pub_destroy(&p);
        return -1;
    }
    /* a unique inproc name per publisher, so several may live in one process (tests) */
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://pub-monitor-%p", (void *)p);
    if (zmq_socket_monitor(p->sock, mon, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) == 0) {
        p->monitor = zmq_socket(zctx, ZMQ_PAIR);
        if (p->monitor != NULL) {
            zmq_setsockopt(p->monitor, ZMQ_LINGER, &linger, sizeof linger);
            if (zmq_connect(p->monitor, mon) != 0) {
                zmq_close(p->monitor);
                p->monitor = NULL;
            }
        }
    }
    *out = p;
    return 0;
}

uint64_t pub_subscribers(pub *p)
{
    if (p->monitor == NULL)
        return 0;
    for (;;) {
        uint8_t ev[6];
        char addr[256];
        int n = zmq_recv(p->monitor, ev, sizeof ev, ZMQ_DONTWAIT);
        if (n < 0)
            break;
        if (zmq_recv(p->monitor, addr, sizeof addr, 0) < 0)
            break;
        uint16_t id = (uint16_t)(ev[0] | ev[1] << 8);
        if (id == ZMQ_EVENT_ACCEPTED)
            p->subscribers++;
        else if (id == ZMQ_EVENT_DISCONNECTED && p->subscribers > 0)
            p->subscribers--;
    }
    return p->subscribers;
}

void pub_destroy(pub **pp)
{
    pub *p = *pp;
    if (p == NULL)
        return;
    if (p->sock != NULL) {
        zmq_socket_monitor(p->sock, NULL, 0);
        zmq_close(p->sock);
    }
    if (p->monitor != NULL)
        zmq_close(p->monitor);
    free(p);
    *pp = NULL;
}

static size_t member_update(const lt_entry *e, const lt_posting *p, uint32_t part, uint32_t parts,
                            uint8_t *buf, size_t cap)
{
    wbuf w = w_init(buf, cap);
    w_u64(&w, 1, e->seq);
    W_STR(&w, 2, p->member_id);
    w_i64(&w, 3, p->balance_after);
    w_i64(&w, 4, p->credit - p->debit);
    W_STR(&w, 5, p->tier_after);
    W_STR(&w, 6, p->reason);
    w_i64(&w, 7, e->occurred_at);
    w_id(&w, 8, e->id);
    w_u64(&w, MU_PART, part);
    w_u64(&w, MU_PARTS, parts);
    W_STR(&w, 11, e->store_id);
    w_sint32(&w, 12, e->utc_offset_min);
    return w.full ? 0 : (size_t)(w.p - buf);
}

static size_t tier_change(const lt_entry *e, const lt_posting *p, uint32_t part, uint32_t parts,
                          uint8_t *buf, size_t cap)
{
    wbuf w = w_init(buf, cap);
    w_u64(&w, 1, e->seq);
    W_STR(&w, 2, p->member_id);
    W_STR(&w, 3, p->tier_before);
    W_STR(&w, 4, p->tier_after);
    /* mid-period changes are upgrades (R23); downgrades come from period ends (R24) */
    w_u64(&w, 5, e->kind != LT_ENTRY_TIER_PERIOD);
    w_i64(&w, 6, e->occurred_at);
    w_u64(&w, TC_PART, part);
    w_u64(&w, TC_PARTS, parts);
    return w.full ? 0 : (size_t)(w.p - buf);
}

static size_t sale_rated(const lt_entry *e, const uint8_t *entry, size_t entry_len, uint32_t part,
                         uint32_t parts, uint8_t *buf, size_t cap)
{
    wbuf w = w_init(buf, cap);
    w_u64(&w, 1, e->seq);
    w_u64(&w, SR_PART, part);
    w_u64(&w, SR_PARTS, parts);
    w_tag(&w, 4, WT_LEN);
    w_varint(&w, entry_len);
    if (w.full || (size_t)(w.end - w.p) < entry_len)
        return 0;
    memcpy(w.p, entry, entry_len);
    w.p += entry_len;
    return (size_t)(w.p - buf);
}

static bool tier_moved(const lt_posting *p)
{
    return p->tier_before[0] != '\0' && p->tier_after[0] != '\0' &&
           strcmp(p->tier_before, p->tier_after) != 0;
}

/* What one posting publishes, in order, into topics[] (at most 3). */
static int posting_topics(const lt_entry *e, const lt_posting *p, pub_topic *topics)
{
    int n = 0;
    if (e->kind == LT_ENTRY_NOTICE) {
        int t = notice_topic(p); /* a notice changes nothing: only the notice itself */
        if (t >= 0)
            topics[n++] = (pub_topic)t;
        return n;
    }
    topics[n++] = PUB_MEMBER_UPDATED;
    if (tier_moved(p))
        topics[n++] = PUB_TIER_CHANGED;
    if (e->kind == LT_ENTRY_EXPIRE && p->debit > 0)
        topics[n++] = PUB_POINTS_EXPIRED;
    return n;
}

int pub_render(const lt_entry *e, const uint8_t *entry_bytes, size_t entry_len, uint8_t *buf,
               size_t cap, pub_part *parts)
{
    pub_topic topics[3];
    uint32_t total = e->kind == LT_ENTRY_SALE ? 1 : 0;
    for (uint32_t i = 0; i < e->postings_n; i++)
        total += (uint32_t)posting_topics(e, &e->postings[i], topics);
    LT_ASSERT(total <= PUB_PARTS_MAX);
    uint32_t n = 0;
    size_t off = 0;
    for (uint32_t i = 0; i < e->postings_n; i++) {
        const lt_posting *p = &e->postings[i];
        int k = posting_topics(e, p, topics);
        for (int j = 0; j < k; j++) {
            size_t len = topics[j] == PUB_TIER_CHANGED
                             ? tier_change(e, p, n + 1, total, buf + off, cap - off)
                             : member_update(e, p, n + 1, total, buf + off, cap - off);
            if (len == 0)
                return -1;
            parts[n++] = (pub_part){topics[j], (uint32_t)off, (uint32_t)len};
            off += len;
        }
    }
    if (e->kind == LT_ENTRY_SALE) {
        size_t len = sale_rated(e, entry_bytes, entry_len, n + 1, total, buf + off, cap - off);
        if (len == 0)
            return -1;
        parts[n++] = (pub_part){PUB_SALE_RATED, (uint32_t)off, (uint32_t)len};
    }
    LT_ASSERT(n == total);
    return (int)n;
}

static const uint8_t *read_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (p == end)
            return NULL;
        uint8_t b = *p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            *v = x;
            return p;
        }
    }
    return NULL;
}

int pub_read_place(pub_topic t, const uint8_t *payload, size_t len, pub_place *out)
{
    LT_ASSERT(t < PUB__TOPICS);
    if (g_place[t].part == 0)
        return -1; /* the heartbeat */
    uint64_t seq = 0, part = 0, parts = 0;
    const uint8_t *p = payload, *end = payload + len;
    while (p < end) {
        uint64_t tag, v = 0;
        if ((p = read_varint(p, end, &tag)) == NULL)
            return -1;
        switch (tag & 7) {
        case WT_VARINT:
            if ((p = read_varint(p, end, &v)) == NULL)
                return -1;
            break;
        case WT_FIXED64: /* and fixed32: skipped */
        case 5: {
            long k = (tag & 7) == WT_FIXED64 ? 8 : 4;
            if (end - p < k)
                return -1;
            p += k;
            continue;
        }
        case WT_LEN: /* strings, the event id, a sale's whole entry: skipped */
            if ((p = read_varint(p, end, &v)) == NULL || v > (uint64_t)(end - p))
                return -1;
            p += v;
            continue;
        default:
            return -1;
        }
        uint64_t field = tag >> 3;
        if (field == 1)
            seq = v;
        else if (field == g_place[t].part)
            part = v;
        else if (field == g_place[t].parts)
            parts = v;
    }
    if (seq == 0 || part == 0 || part > parts || parts > UINT32_MAX)
        return -1;
    *out = (pub_place){seq, (uint32_t)part, (uint32_t)parts};
    return 0;
}

void pub_send(pub *p, pub_topic t, const uint8_t *payload, size_t len)
{
    const char *topic = pub_topic_name(t);
    if (zmq_send(p->sock, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(p->sock, payload, len, ZMQ_DONTWAIT) < 0) {
        p->st.dropped++;
        return;
    }
    p->st.messages++;
}

void pub_heartbeat(pub *p, uint64_t seq, int64_t now)
{
    Loyalty__Heartbeat h = LOYALTY__HEARTBEAT__INIT;
    uint8_t buf[64];
    h.has_seq = 1, h.seq = seq;
    h.has_at = 1, h.at = now;
    size_t n = loyalty__heartbeat__pack(&h, buf);
    pub_send(p, PUB_HEARTBEAT, buf, n);
}

void pub_get_stats(const pub *p, pub_stats *st)
{
    *st = p->st;
}
