/* zmqraw.c: the transport ceiling: one DEALER pushing the same message as fast as it can to a
 * ROUTER over tcp loopback, in two threads of this process (as tills and the daemon's socket
 * would), for a fixed time. No decoding, no replies: what ZeroMQ alone can move.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "bench.h"

#define ZRAW_HWM 100000
#define ZRAW_CHECK_EVERY 1024

typedef struct {
    void *sock;
    uint64_t received;
    uint64_t stop_after; /* set by the sender when done: messages it sent */
    int failed;
} sink;

static void *sink_main(void *arg)
{
    sink *k = arg;
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (;;) {
        if (__atomic_load_n(&k->stop_after, __ATOMIC_ACQUIRE) != 0 &&
            k->received >= __atomic_load_n(&k->stop_after, __ATOMIC_ACQUIRE))
            break;
        /* ROUTER: identity frame, then the message */
        if (zmq_msg_recv(&m, k->sock, 0) < 0) {
            if (zmq_errno() == EAGAIN)
                continue; /* receive timeout: re-check stop_after */
            k->failed = 1;
            break;
        }
        if (!zmq_msg_more(&m))
            k->received++;
    }
    zmq_msg_close(&m);
    return NULL;
}

int bench_zmq_run(const void *msg, size_t len, double seconds, zmq_raw_result *r)
{
    memset(r, 0, sizeof *r);
    void *ctx = zmq_ctx_new();
    void *rs = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    void *ds = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    int rc = -1, hwm = ZRAW_HWM, zero = 0, timeout_ms = 100;
    char ep[64];
    size_t ep_len = sizeof ep;
    sink k = {0};
    pthread_t th;
    if (!rs || !ds)
        goto done;
    zmq_setsockopt(rs, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(ds, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(rs, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(ds, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(rs, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(rs, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(rs, ZMQ_LAST_ENDPOINT, ep, &ep_len) != 0 || zmq_connect(ds, ep) != 0) {
        fprintf(stderr, "lt-bench: zmq ceiling: %s\n", zmq_strerror(zmq_errno()));
        goto done;
    }
    k.sock = rs;
    if (pthread_create(&th, NULL, sink_main, &k) != 0)
        goto done;
    uint64_t sent = 0, t0 = bench_now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    for (;;) {
        if (zmq_send(ds, msg, len, 0) < 0) {
            fprintf(stderr, "lt-bench: zmq ceiling: send: %s\n", zmq_strerror(zmq_errno()));
            break;
        }
        sent++;
        if (sent % ZRAW_CHECK_EVERY == 0 && bench_now_ns() >= end)
            break;
    }
    __atomic_store_n(&k.stop_after, sent ? sent : 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    r->elapsed_s = (double)(bench_now_ns() - t0) / 1e9;
    r->messages = k.received;
    r->message_bytes = len;
    rc = k.failed || k.received != sent ? -1 : 0;
done:
    if (ds)
        zmq_close(ds);
    if (rs)
        zmq_close(rs);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}
