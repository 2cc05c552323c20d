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

static const char *const g_topics[PUB__TOPICS] = {"member.updated", "tier.changed", "sale.rated",
                                                  "heartbeat"};

const char *pub_topic_name(pub_topic t)
{
    LT_ASSERT(t < PUB__TOPICS);
    return g_topics[t];
}

int pub_new(void *zctx, const char *endpoint, pub **out, char *err, size_t err_len)
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

size_t pub_encode_member_update(const lt_entry *e, const lt_posting *p, const char *tier,
                                uint8_t *buf, size_t cap)
{
    wbuf w = w_init(buf, cap);
    w_u64(&w, 1, e->seq);
    W_STR(&w, 2, p->member_id);
    w_i64(&w, 3, p->balance_after);
    w_i64(&w, 4, p->credit - p->debit);
    w_str(&w, 5, tier, LT_TIER_NAME_MAX);
    W_STR(&w, 6, p->reason);
    w_i64(&w, 7, e->occurred_at);
    w_id(&w, 8, e->id);
    return w.full ? 0 : (size_t)(w.p - buf);
}

size_t pub_encode_tier_change(const lt_entry *e, const char *member_id, const char *from,
                              const char *to, bool upgrade, uint8_t *buf, size_t cap)
{
    wbuf w = w_init(buf, cap);
    w_u64(&w, 1, e->seq);
    w_str(&w, 2, member_id, LT_ID_MAX);
    w_str(&w, 3, from, LT_TIER_NAME_MAX);
    w_str(&w, 4, to, LT_TIER_NAME_MAX);
    w_u64(&w, 5, upgrade);
    w_i64(&w, 6, e->occurred_at);
    return w.full ? 0 : (size_t)(w.p - buf);
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
