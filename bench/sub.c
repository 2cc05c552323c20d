/* sub.c: lt-bench's subscribers: SUB sockets on the daemon's publish endpoint, subscribed to
 * every topic, as a reporting service would be, one thread each. The daemon's figures then
 * include delivering what it publishes (R28), not only handing it to a PUB socket nobody reads,
 * and each subscriber checks the stream's order (sub_check.h) so the bench can say whether it
 * kept up.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "bench.h"
#include "sub_check.h"

#define SUB_RCVHWM 100000  /* as the daemon's PUB side (publisher/pub.c) */
#define SUB_RCVTIMEO_MS 50 /* how soon a subscriber sees the stop */
#define SUB_WAIT_STEP_US 2000

typedef struct {
    void *sock;
    pthread_t th;
    bool running;
    atomic_int *stop;
    sub_track t; /* the thread's own */
    /* copies for bench_subs_read(), written after every message (one writer) */
    _Atomic uint64_t messages, gaps, missed, bad, last_seq;
} subscriber;

struct bench_subs {
    void *ctx;
    int n;
    atomic_int stop;
    subscriber s[BENCH_SUBS_MAX];
};

static void share(subscriber *s, uint64_t bad)
{
    atomic_store_explicit(&s->messages, s->t.messages, memory_order_relaxed);
    atomic_store_explicit(&s->gaps, s->t.gaps, memory_order_relaxed);
    atomic_store_explicit(&s->missed, s->t.missed, memory_order_relaxed);
    atomic_store_explicit(&s->bad, bad, memory_order_relaxed);
    atomic_store_explicit(&s->last_seq, s->t.started ? s->t.last.seq : 0, memory_order_release);
}

/* Receives one message: its topic and payload frames. Returns 1, 0 (the receive timed out)
 * or -1 (not two frames: the frames are consumed). */
static int recv_message(void *sock, zmq_msg_t *topic, zmq_msg_t *payload)
{
    if (zmq_msg_recv(topic, sock, 0) < 0)
        return 0;
    if (!zmq_msg_more(topic))
        return -1;
    if (zmq_msg_recv(payload, sock, 0) < 0)
        return -1;
    if (!zmq_msg_more(payload))
        return 1;
    while (zmq_msg_more(payload) && zmq_msg_recv(payload, sock, 0) >= 0)
        ; /* more frames than two: not a publication */
    return -1;
}

static void *sub_main(void *arg)
{
    subscriber *s = arg;
    zmq_msg_t topic, payload;
    zmq_msg_init(&topic);
    zmq_msg_init(&payload);
    uint64_t bad = 0;
    while (!atomic_load_explicit(s->stop, memory_order_relaxed)) {
        int rc = recv_message(s->sock, &topic, &payload); /* 0: timed out */
        pub_place p;
        if (rc == 1) /* 1: an entry's message; 0: a heartbeat */
            rc = sub_read_place(zmq_msg_data(&topic), zmq_msg_size(&topic), zmq_msg_data(&payload),
                                zmq_msg_size(&payload), &p);
        if (rc < 0) {
            bad++;
            sub_track_reset(&s->t); /* the next message starts afresh, not as a gap */
        } else if (rc == 1) {
            sub_track_add(&s->t, &p);
        }
        share(s, bad);
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&payload);
    return NULL;
}

int bench_subs_start(bench_subs **out, const char *endpoint, int n)
{
    *out = NULL;
    if (n <= 0)
        return 0;
    LT_ASSERT(n <= BENCH_SUBS_MAX);
    bench_subs *b = calloc(1, sizeof *b);
    if (b == NULL || (b->ctx = zmq_ctx_new()) == NULL) {
        free(b);
        fprintf(stderr, "lt-bench: cannot set up the subscribers (out of memory or zmq)\n");
        return -1;
    }
    int hwm = SUB_RCVHWM, timeout = SUB_RCVTIMEO_MS, linger = 0;
    for (int i = 0; i < n; i++) {
        subscriber *s = &b->s[i];
        s->stop = &b->stop;
        s->sock = zmq_socket(b->ctx, ZMQ_SUB);
        if (s->sock == NULL || zmq_setsockopt(s->sock, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0 ||
            zmq_setsockopt(s->sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
            zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
            zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, "", 0) != 0 ||
            zmq_connect(s->sock, endpoint) != 0) {
            fprintf(stderr, "lt-bench: cannot connect a subscriber to %s: %s\n", endpoint,
                    zmq_strerror(zmq_errno()));
            b->n = i + 1;
            bench_subs_stop(&b);
            return -1;
        }
        b->n = i + 1;
        if (pthread_create(&s->th, NULL, sub_main, s) != 0) {
            fprintf(stderr, "lt-bench: cannot start a subscriber thread\n");
            bench_subs_stop(&b);
            return -1;
        }
        s->running = true;
    }
    *out = b;
    return 0;
}

void bench_subs_read(bench_subs *b, bench_sub_counts *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; b != NULL && i < b->n; i++) {
        subscriber *s = &b->s[i];
        c->messages += atomic_load_explicit(&s->messages, memory_order_relaxed);
        c->gaps += atomic_load_explicit(&s->gaps, memory_order_relaxed);
        c->missed += atomic_load_explicit(&s->missed, memory_order_relaxed);
        c->bad += atomic_load_explicit(&s->bad, memory_order_relaxed);
    }
}

bool bench_subs_wait(bench_subs *b, uint64_t seq, int timeout_ms)
{
    for (int waited_us = 0;; waited_us += SUB_WAIT_STEP_US) {
        bool all = true;
        for (int i = 0; b != NULL && i < b->n; i++)
            all &= atomic_load_explicit(&b->s[i].last_seq, memory_order_acquire) >= seq;
        if (all)
            return true;
        if (waited_us >= timeout_ms * 1000)
            return false;
        usleep(SUB_WAIT_STEP_US);
    }
}

void bench_subs_stop(bench_subs **pb)
{
    bench_subs *b = *pb;
    if (b == NULL)
        return;
    atomic_store(&b->stop, 1);
    for (int i = 0; i < b->n; i++) {
        if (b->s[i].running)
            pthread_join(b->s[i].th, NULL);
        if (b->s[i].sock != NULL)
            zmq_close(b->s[i].sock);
    }
    zmq_ctx_term(b->ctx);
    free(b);
    *pb = NULL;
}
