/* catchup.c: see catchup.h. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>
#include <zmq.h>

#include "catchup.h"
#include "entry.h"
#include "log.h"
#include "loyalty.pb-c.h"
#include "pub.h"

#define FRAMES_MAX 4
#define SEND_TIMEOUT_MS 5000

struct catchup {
    void *router, *pair;
    ledger *ledger;
    uv_thread_t thread;
    bool started;
    atomic_bool stop;
    _Atomic uint64_t requests, entries, messages, errors;
    /* scratch for the thread */
    lt_entry entry;
    uint8_t render[ENTRY_BYTES_MAX + PUB_PARTS_MAX * PUB_PART_BYTES_MAX];
};

typedef struct {
    catchup *c;
    const zmq_msg_t *ident;
    uint64_t next_seq;
    uint32_t left;
    int failed;
} serve_ctx;

/* Sends [identity][topic][payload]; blocks up to SEND_TIMEOUT_MS for a slow asker (this thread
 * only serves catch-up, so waiting here delays no event). Returns 0 or -1. */
static int send_msg(catchup *c, const zmq_msg_t *ident, const char *topic, const void *payload,
                    size_t len)
{
    if (zmq_send(c->router, zmq_msg_data((zmq_msg_t *)ident), zmq_msg_size((zmq_msg_t *)ident),
                 ZMQ_SNDMORE) < 0 ||
        zmq_send(c->router, topic, strlen(topic), ZMQ_SNDMORE) < 0 ||
        zmq_send(c->router, payload, len, 0) < 0)
        return -1;
    atomic_fetch_add_explicit(&c->messages, 1, memory_order_relaxed);
    return 0;
}

static int serve_entry(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len)
{
    serve_ctx *s = ctx;
    catchup *c = s->c;
    if (s->left == 0)
        return 1; /* bounded: the asker resumes from next_seq */
    if (entry_decode(bytes, len, &c->entry) != 0) {
        lt_log(LT_ERROR, "catch-up: ledger entry does not decode", "seq=%llu",
               (unsigned long long)seq);
        s->failed = 1;
        return -1;
    }
    pub_part parts[PUB_PARTS_MAX];
    int n = pub_render(&c->entry, bytes, len, c->render, sizeof c->render, parts);
    if (n < 0) {
        s->failed = 1;
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (send_msg(c, s->ident, pub_topic_name(parts[i].topic), c->render + parts[i].off,
                     parts[i].len) != 0) {
            s->failed = 1;
            return -1;
        }
    }
    s->next_seq = seq + 1;
    s->left--;
    atomic_fetch_add_explicit(&c->entries, 1, memory_order_relaxed);
    return 0;
}

static void serve(catchup *c, const zmq_msg_t *ident, const Loyalty__CatchUp *q)
{
    atomic_fetch_add_explicit(&c->requests, 1, memory_order_relaxed);
    uint64_t from = q->has_from_seq && q->from_seq > 0 ? q->from_seq : 1;
    uint32_t max = q->has_max_entries && q->max_entries > 0 ? q->max_entries : CATCHUP_ENTRIES_MAX;
    if (max > CATCHUP_ENTRIES_MAX)
        max = CATCHUP_ENTRIES_MAX;
    serve_ctx s = {c, ident, from, max, 0};
    uint64_t last = 0;
    Loyalty__CatchUpEnd end = LOYALTY__CATCH_UP_END__INIT;
    if (ledger_last_seq(c->ledger, &last) != 0 ||
        (from <= last && ledger_scan(c->ledger, from, 0, serve_entry, &s) < 0) || s.failed) {
        atomic_fetch_add_explicit(&c->errors, 1, memory_order_relaxed);
        end.error = "catch-up failed; ask again";
    }
    if (s.next_seq > last + 1)
        last = s.next_seq - 1; /* entries committed while we read */
    end.has_next_seq = 1, end.next_seq = s.next_seq;
    end.has_last_seq = 1, end.last_seq = last;
    end.has_more = 1, end.more = s.next_seq <= last;
    uint8_t buf[256];
    size_t n = loyalty__catch_up_end__pack(&end, buf);
    send_msg(c, ident, "catchup.end", buf, n);
}

/* Moves one whole multipart message from one socket to another. */
static void forward(void *from, void *to)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, from, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        int more = zmq_msg_more(&m);
        zmq_msg_send(&m, to, more ? ZMQ_SNDMORE : 0);
        zmq_msg_close(&m);
        if (!more)
            return;
    }
}

/* One request from the ROUTER: a catch-up is served here, anything else goes to the loop. */
static void on_request(catchup *c)
{
    zmq_msg_t f[FRAMES_MAX];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < FRAMES_MAX)
            f[n++] = m;
        else
            zmq_msg_close(&m); /* malformed: too many frames, dropped below */
    }
    if (n >= 2 && n <= 3) {
        zmq_msg_t *payload = &f[n - 1];
        Loyalty__Query *q =
            loyalty__query__unpack(NULL, zmq_msg_size(payload), zmq_msg_data(payload));
        if (q != NULL && q->q_case == LOYALTY__QUERY__Q_CATCH_UP && n == 2) {
            serve(c, &f[0], q->catch_up);
        } else {
            for (int i = 0; i < n; i++)
                zmq_msg_send(&f[i], c->pair, i + 1 < n ? ZMQ_SNDMORE : 0);
        }
        if (q != NULL)
            loyalty__query__free_unpacked(q, NULL);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void run(void *arg)
{
    catchup *c = arg;
    while (!atomic_load(&c->stop)) {
        zmq_pollitem_t items[2] = {{c->router, 0, ZMQ_POLLIN, 0}, {c->pair, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, 100) <= 0)
            continue;
        if (items[0].revents & ZMQ_POLLIN)
            on_request(c);
        if (items[1].revents & ZMQ_POLLIN)
            forward(c->pair, c->router);
    }
}

int catchup_start(void *zctx, const char *endpoint, const char *loop_pair_endpoint, ledger *l,
                  const char *curve_secret, catchup **out, char *err, size_t err_len)
{
    catchup *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    c->ledger = l;
    c->router = zmq_socket(zctx, ZMQ_ROUTER);
    c->pair = zmq_socket(zctx, ZMQ_PAIR);
    int linger = 1000, hwm = 200000, mandatory = 1, timeout = SEND_TIMEOUT_MS;
    int64_t maxmsg = 64 * 1024;
    if (c->router == NULL || c->pair == NULL) {
        snprintf(err, err_len, "cannot create sockets: %s", zmq_strerror(zmq_errno()));
        catchup_stop(&c);
        return -1;
    }
    zmq_setsockopt(c->router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->router, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory);
    zmq_setsockopt(c->router, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(c->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(c->pair, ZMQ_LINGER, &linger, sizeof linger);
    if (curve_secret != NULL && pub_secure(c->router, curve_secret, "query") != 0) {
        snprintf(err, err_len, "cannot set CURVE: %s", zmq_strerror(zmq_errno()));
        catchup_stop(&c);
        return -1;
    }
    if (zmq_bind(c->router, endpoint) != 0) {
        snprintf(err, err_len, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        catchup_stop(&c);
        return -1;
    }
    if (zmq_bind(c->pair, loop_pair_endpoint) != 0) {
        snprintf(err, err_len, "cannot bind %s: %s", loop_pair_endpoint, zmq_strerror(zmq_errno()));
        catchup_stop(&c);
        return -1;
    }
    if (uv_thread_create(&c->thread, run, c) != 0) {
        snprintf(err, err_len, "cannot start the catch-up thread");
        catchup_stop(&c);
        return -1;
    }
    c->started = true;
    *out = c;
    return 0;
}

void catchup_stop(catchup **cp)
{
    catchup *c = *cp;
    if (c == NULL)
        return;
    if (c->started) {
        atomic_store(&c->stop, true);
        uv_thread_join(&c->thread);
    }
    if (c->router != NULL)
        zmq_close(c->router);
    if (c->pair != NULL)
        zmq_close(c->pair);
    free(c);
    *cp = NULL;
}

void catchup_get_stats(catchup *c, catchup_stats *st)
{
    st->requests = atomic_load_explicit(&c->requests, memory_order_relaxed);
    st->entries = atomic_load_explicit(&c->entries, memory_order_relaxed);
    st->messages = atomic_load_explicit(&c->messages, memory_order_relaxed);
    st->errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
}
