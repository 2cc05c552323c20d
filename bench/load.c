/* load.c: lt-bench's load: N till threads, each a DEALER with its own node id (or K of them,
 * --nodes, its messages taking them in turn) and increasing event ids, sending the workload of
 * workload.h as EventBatch messages.
 *
 * Closed loop keeps `window` messages in flight per till (the maximum rate). Open loop sends at
 * a fixed offered rate: message k of a till is due at start + k * interval and its latency is
 * measured from that intended time, not from when it was actually sent, so a stall shows as
 * latency instead of silently lowering the offered load (no coordinated omission). A till
 * sleeps until its next message is due or a reply comes, to the microsecond (ppoll() on the
 * socket's ZMQ_FD): zmq_poll() counts in whole milliseconds, and rounding a wait up to the next
 * one added 0-1 ms of the generator's own to every open-loop latency.
 *
 * Messages are written directly in the protobuf wire format (common/pbwrite.h) instead of
 * through protobuf-c's descriptor-driven pack, so the load generator leaves the CPU to the
 * daemon on this 2-core machine; tests/unit/test_bench_encode.c checks the bytes decode as the
 * EventBatch that was meant.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "bench.h"
#include "ingest.h"
#include "load_encode.h"
#include "loyalty.pb-c.h"

#define LOAD_POLL_NS 20000000ull /* the longest sleep: the deadline and stop are looked at */
#define LOAD_DRAIN_S 10.0        /* after the sending time, wait this long for in-flight acks */

typedef struct {
    uint64_t batch_id;
    uint64_t send_ns; /* intended send time in open loop */
    uint32_t n;
    wl_past *past; /* per event: what a later return needs (member WL_MEMBER_NONE: no sale) */
    bool busy;
} inflight;

typedef struct shared shared;

typedef struct {
    shared *sh;
    int index;
    uint64_t node_id;       /* its first node id; the others add (j << 32) (load_opts.nodes) */
    uint32_t node_next;     /* the node id the next message comes from */
    uint64_t next_event_id; /* one sequence over its node ids: increasing for each */
    uint64_t next_batch_id;
    uint64_t rng;
    uint64_t enrolled;
    uint32_t next_population; /* LOAD_POLLUATION: next member index of this till */
    uint64_t next_due_ns;     /* LOAD_OPEN */
    uint64_t interval_ns;
    void *sock;
    int sock_fd; /* its ZMQ_FD: readable when the socket's state may have changed */
    wl_event *gen;
    wl_history history;
    uint8_t *buf; /* packed message */
    inflight slots[BENCH_WINDOW_MAX];
    int inflight_n;
    uint64_t first_send_ns, last_ack_ns;
    int failed;
    load_second *seconds; /* this till's timeline */
    uint32_t seconds_cap;
    load_result r; /* this till's counts */
} till;

struct shared {
    const load_opts *o;
    void *zctx;
    int64_t *balances; /* last acknowledged balance per member, relaxed atomics */
    wl_model model;
    pthread_barrier_t start;
    uint64_t start_ns, deadline_ns, drain_ns;
};

/* ------------------------------------------------------------------ sending */

static inflight *free_slot(till *t)
{
    for (int i = 0; i < t->sh->o->window; i++)
        if (!t->slots[i].busy)
            return &t->slots[i];
    return NULL;
}

/* Fills t->gen with the next message's events; returns how many (0: nothing left to send). */
static uint32_t next_events(till *t)
{
    const load_opts *o = t->sh->o;
    uint32_t n = 0;
    if (o->mode == LOAD_POPULATION) {
        while (n < (uint32_t)o->batch && t->next_population < o->members) {
            wl_population(t->next_population, &t->gen[n++]);
            t->next_population += (uint32_t)o->tills;
        }
        return n;
    }
    for (; n < (uint32_t)o->batch; n++)
        wl_next(&t->sh->model, &t->rng, t->node_id, &t->enrolled, t->sh->balances, &t->history,
                &t->gen[n]);
    return n;
}

static int send_batch(till *t, uint64_t intended_ns)
{
    inflight *s = free_slot(t);
    LT_ASSERT(s != NULL);
    uint32_t n = next_events(t);
    if (n == 0)
        return 1;
    int64_t now = (int64_t)time(NULL);
    uint64_t first_id = t->next_event_id;
    for (uint32_t i = 0; i < n; i++) {
        const wl_event *e = &t->gen[i];
        load_result *r = &t->r;
        r->sales += e->kind == WL_SALE;
        r->redemptions += e->kind == WL_SALE && e->redeem_points > 0;
        r->returns += e->kind == WL_RETURN;
        r->enrolments += e->kind == WL_ENROL;
        if (e->kind == WL_SALE)
            wl_past_of(e, first_id + i, &s->past[i]);
        else
            s->past[i].member = WL_MEMBER_NONE;
    }
    s->batch_id = ++t->next_batch_id;
    uint64_t node = t->node_id;
    if (t->sh->o->nodes > 1) {
        node += (uint64_t)t->node_next << 32;
        t->node_next = (t->node_next + 1) % (uint32_t)t->sh->o->nodes;
        for (uint32_t i = 0; i < n; i++)
            s->past[i].node_id = node; /* a later return names the sale's node */
    }
    size_t len = load_encode_batch(t->buf, LT_MESSAGE_BYTES_MAX, s->batch_id, node, first_id, now,
                                   t->gen, n);
    LT_ASSERT(len > 0); /* 1000 events of 20 lines fit well inside the message limit */
    t->next_event_id += n;
    s->n = n;
    uint64_t now_ns = bench_now_ns();
    s->send_ns = intended_ns ? intended_ns : now_ns;
    if (t->first_send_ns == 0)
        t->first_send_ns = now_ns;
    if (zmq_send(t->sock, t->buf, len, 0) < 0) {
        fprintf(stderr, "lt-bench: till %d: send: %s\n", t->index, zmq_strerror(zmq_errno()));
        return -1;
    }
    s->busy = true;
    t->inflight_n++;
    t->r.events_sent += n;
    t->r.messages_sent++;
    return 0;
}

/* ------------------------------------------------------------------ replies */

static void count_acks(till *t, const inflight *s, const Loyalty__AckBatch *a)
{
    load_result *r = &t->r;
    if (a->n_acks == 0) {
        r->refused_batches++;
        r->reasons[(int)a->reason < (int)LT_R__COUNT ? (int)a->reason : LT_R_NONE]++;
        return;
    }
    for (size_t i = 0; i < a->n_acks && i < s->n; i++) {
        const Loyalty__Ack *k = a->acks[i];
        if (k->status == LOYALTY__STATUS__ACCEPTED) {
            r->accepted++;
            const wl_past *p = &s->past[i];
            if (p->member != WL_MEMBER_NONE) {
                __atomic_store_n(&t->sh->balances[p->member], k->balance, __ATOMIC_RELAXED);
                wl_history_add(&t->history, p);
            }
        } else if (k->status == LOYALTY__STATUS__DUPLICATE) {
            r->duplicate++;
        } else {
            r->rejected++;
            r->reasons[(int)k->reason < (int)LT_R__COUNT ? (int)k->reason : LT_R_NONE]++;
        }
    }
}

static void add_second(till *t, uint64_t now, uint64_t events, uint64_t latency_us)
{
    uint64_t sec = (now - t->sh->start_ns) / 1000000000u;
    if (sec >= t->seconds_cap)
        return;
    load_second *ls = &t->seconds[sec];
    ls->events += events;
    hist_add(&ls->latency_us, latency_us);
}

/* Receives every waiting reply. Returns 0 or -1 on a socket error. */
static int drain_replies(till *t)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, t->sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&m);
            return e == EAGAIN || e == EINTR ? 0 : -1;
        }
        uint64_t now = bench_now_ns();
        Loyalty__AckBatch *a = loyalty__ack_batch__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        zmq_msg_close(&m);
        if (a == NULL)
            continue;
        for (int i = 0; i < t->sh->o->window; i++) {
            inflight *s = &t->slots[i];
            if (!s->busy || s->batch_id != a->batch_id)
                continue;
            uint64_t lat_us = now > s->send_ns ? (now - s->send_ns) / 1000 : 0;
            hist_add(&t->r.latency_us, lat_us);
            add_second(t, now, a->n_acks, lat_us);
            count_acks(t, s, a);
            t->r.batches_acked++;
            t->last_ack_ns = now;
            s->busy = false;
            t->inflight_n--;
            break;
        }
        loyalty__ack_batch__free_unpacked(a, NULL);
    }
}

/* ------------------------------------------------------------------ the till thread */

/* Sends what the mode allows now. Returns how long to wait for a reply before looking again
 * (ns), or -1 on a send error; *done is set once nothing more will be sent. */
static int64_t send_due(till *t, uint64_t now, bool *done)
{
    const load_opts *o = t->sh->o;
    if (t->failed || bench_stop || (o->mode != LOAD_POPULATION && now >= t->sh->deadline_ns)) {
        *done = true;
        return (int64_t)LOAD_POLL_NS;
    }
    if (o->mode == LOAD_OPEN) {
        while (t->next_due_ns <= now && t->inflight_n < o->window) {
            if (send_batch(t, t->next_due_ns) < 0)
                return -1;
            t->next_due_ns += t->interval_ns;
        }
        if (t->next_due_ns <= now) /* the window is full: wait for a reply */
            return (int64_t)LOAD_POLL_NS;
        uint64_t wait = t->next_due_ns - now;
        return (int64_t)(wait < LOAD_POLL_NS ? wait : LOAD_POLL_NS);
    }
    while (t->inflight_n < o->window) {
        int rc = send_batch(t, 0);
        if (rc < 0)
            return -1;
        if (rc > 0) { /* population enrolled */
            *done = true;
            break;
        }
    }
    return (int64_t)LOAD_POLL_NS;
}

/* Waits up to timeout_ns for a reply to read. Returns 1 if one can be read, 0 at the timeout,
 * -1 on an error. ZMQ_FD signals changes of the socket's state, not waiting messages, so
 * zsock_readable() is asked before each sleep (a send may have taken the signal). */
static int till_wait(till *t, uint64_t timeout_ns)
{
    uint64_t until = bench_now_ns() + timeout_ns;
    for (;;) {
        if (zsock_readable(t->sock))
            return 1;
        uint64_t now = bench_now_ns();
        if (now >= until)
            return 0;
        uint64_t left = until - now;
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        struct pollfd p = {t->sock_fd, POLLIN, 0};
        if (ppoll(&p, 1, &ts, NULL) < 0 && errno != EINTR)
            return -1;
    }
}

static void *till_main(void *arg)
{
    till *t = arg;
    shared *sh = t->sh;
    pthread_barrier_wait(&sh->start);
    t->next_due_ns = sh->start_ns + t->interval_ns * (uint64_t)t->index / (uint64_t)sh->o->tills;
    bool done = false;
    for (;;) {
        uint64_t now = bench_now_ns();
        int64_t timeout = (int64_t)LOAD_POLL_NS;
        if (!done) {
            timeout = send_due(t, now, &done);
            if (timeout < 0) {
                t->failed = 1;
                done = true;
                timeout = (int64_t)LOAD_POLL_NS;
            }
        }
        if (done && (t->inflight_n == 0 || now > sh->drain_ns))
            break;
        int n = till_wait(t, (uint64_t)timeout);
        if (n < 0 || (n > 0 && drain_replies(t) < 0)) {
            fprintf(stderr, "lt-bench: till %d: %s\n", t->index, zmq_strerror(zmq_errno()));
            t->failed = 1;
            break;
        }
    }
    t->r.lost_batches = (uint64_t)t->inflight_n;
    return NULL;
}

/* ------------------------------------------------------------------ set-up */

static int shared_init(shared *sh, const load_opts *o)
{
    memset(sh, 0, sizeof *sh);
    sh->o = o;
    sh->zctx = zmq_ctx_new();
    sh->balances = calloc(o->members, sizeof *sh->balances);
    if (sh->zctx == NULL || sh->balances == NULL || wl_model_init(&sh->model, o->members) < 0)
        return -1;
    return 0;
}

static void shared_free(shared *sh)
{
    if (sh->zctx)
        zmq_ctx_term(sh->zctx);
    free(sh->balances);
    wl_model_free(&sh->model);
}

static int till_init(till *t, shared *sh, int index)
{
    const load_opts *o = sh->o;
    memset(t, 0, sizeof *t);
    t->sh = sh;
    t->index = index;
    t->node_id = o->node_base + (uint64_t)index + 1;
    t->next_event_id = 1;
    t->next_population = (uint32_t)index;
    t->rng = o->seed ^ (0x9e3779b97f4a7c15ull * (t->node_id + 1));
    if (o->mode == LOAD_OPEN) {
        double per_till = o->rate / o->tills;
        t->interval_ns = (uint64_t)(1e9 * o->batch / per_till);
        if (t->interval_ns == 0)
            t->interval_ns = 1;
    }
    t->gen = calloc((size_t)o->batch, sizeof *t->gen);
    t->buf = malloc(LT_MESSAGE_BYTES_MAX);
    t->seconds_cap = (uint32_t)(o->seconds + LOAD_DRAIN_S + 2);
    if (o->mode == LOAD_POPULATION || t->seconds_cap > BENCH_TIMELINE_MAX)
        t->seconds_cap = BENCH_TIMELINE_MAX;
    t->seconds = calloc(t->seconds_cap, sizeof *t->seconds);
    if (!t->gen || !t->buf || !t->seconds)
        return -1;
    for (int i = 0; i < o->window; i++) {
        t->slots[i].past = calloc((size_t)o->batch, sizeof *t->slots[i].past);
        if (t->slots[i].past == NULL)
            return -1;
    }
    t->sock = zmq_socket(sh->zctx, ZMQ_DEALER);
    if (t->sock == NULL)
        return -1;
    int zero = 0;
    zmq_setsockopt(t->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(t->sock, o->ingest) != 0) {
        fprintf(stderr, "lt-bench: connect %s: %s\n", o->ingest, zmq_strerror(zmq_errno()));
        return -1;
    }
    size_t fd_len = sizeof t->sock_fd;
    if (zmq_getsockopt(t->sock, ZMQ_FD, &t->sock_fd, &fd_len) != 0)
        return -1;
    return 0;
}

static void till_free(till *t)
{
    if (t->sock)
        zmq_close(t->sock);
    for (int i = 0; i < BENCH_WINDOW_MAX; i++)
        free(t->slots[i].past);
    free(t->gen);
    free(t->buf);
    free(t->seconds);
}

static void merge_result(load_result *r, const till *t)
{
    const load_result *f = &t->r;
    r->events_sent += f->events_sent;
    r->messages_sent += f->messages_sent;
    r->batches_acked += f->batches_acked;
    r->accepted += f->accepted;
    r->duplicate += f->duplicate;
    r->rejected += f->rejected;
    r->refused_batches += f->refused_batches;
    r->lost_batches += f->lost_batches;
    r->sales += f->sales;
    r->redemptions += f->redemptions;
    r->returns += f->returns;
    r->enrolments += f->enrolments;
    for (int i = 0; i < LT_R__COUNT; i++)
        r->reasons[i] += f->reasons[i];
    hist_merge(&r->latency_us, &f->latency_us);
    for (uint32_t s = 0; s < t->seconds_cap && s < r->seconds_n; s++) {
        r->seconds[s].events += t->seconds[s].events;
        hist_merge(&r->seconds[s].latency_us, &t->seconds[s].latency_us);
    }
}

int bench_load_run(const load_opts *o, load_result *r)
{
    LT_ASSERT(o->tills >= 1 && o->tills <= BENCH_TILLS_MAX);
    LT_ASSERT(o->window >= 1 && o->window <= BENCH_WINDOW_MAX);
    LT_ASSERT(o->batch >= 1 && o->batch <= LT_BATCH_EVENTS_MAX);
    LT_ASSERT(o->members >= 1);
    LT_ASSERT(o->mode != LOAD_OPEN || o->rate > 0);
    memset(r, 0, sizeof *r);
    shared sh;
    memset(&sh, 0, sizeof sh);
    till *tills = calloc((size_t)o->tills, sizeof *tills);
    pthread_t th[BENCH_TILLS_MAX];
    int rc = tills && shared_init(&sh, o) == 0 ? 0 : -1;
    for (int i = 0; rc == 0 && i < o->tills; i++)
        rc = till_init(&tills[i], &sh, i);
    if (rc == 0) {
        r->seconds_n = tills[0].seconds_cap;
        r->seconds = calloc(r->seconds_n, sizeof *r->seconds);
        rc = r->seconds ? 0 : -1;
    }
    if (rc < 0) {
        fprintf(stderr, "lt-bench: cannot set up the tills (out of memory or zmq)\n");
    } else {
        pthread_barrier_init(&sh.start, NULL, (unsigned)o->tills + 1);
        double steal0 = bench_steal_ms();
        sh.start_ns = bench_now_ns();
        sh.deadline_ns = sh.start_ns + (uint64_t)(o->seconds * 1e9);
        sh.drain_ns = sh.deadline_ns + (uint64_t)(LOAD_DRAIN_S * 1e9);
        if (o->mode == LOAD_POPULATION)
            sh.drain_ns = UINT64_MAX;
        for (int i = 0; i < o->tills; i++)
            pthread_create(&th[i], NULL, till_main, &tills[i]);
        pthread_barrier_wait(&sh.start);
        uint64_t last = sh.start_ns;
        for (int i = 0; i < o->tills; i++) {
            pthread_join(th[i], NULL);
            merge_result(r, &tills[i]);
            if (tills[i].last_ack_ns > last)
                last = tills[i].last_ack_ns;
            rc |= tills[i].failed ? -1 : 0;
        }
        pthread_barrier_destroy(&sh.start);
        double steal1 = bench_steal_ms();
        r->steal_ms = steal0 >= 0 && steal1 >= steal0 ? steal1 - steal0 : -1;
        r->elapsed_s = (double)(last - sh.start_ns) / 1e9;
        while (r->seconds_n > 0 && r->seconds[r->seconds_n - 1].events == 0)
            r->seconds_n--;
    }
    for (int i = 0; tills && i < o->tills; i++)
        till_free(&tills[i]);
    free(tills);
    shared_free(&sh);
    return rc;
}

void bench_load_free(load_result *r)
{
    free(r->seconds);
    r->seconds = NULL;
    r->seconds_n = 0;
}

double bench_steal_ms(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    long tick = sysconf(_SC_CLK_TCK);
    if (n != 8 || tick <= 0)
        return -1;
    return (double)v[7] * 1000.0 / (double)tick; /* the 8th: steal */
}

double bench_load_rate(const load_result *r)
{
    uint64_t acked = r->accepted + r->duplicate + r->rejected;
    return r->elapsed_s > 0 ? (double)acked / r->elapsed_s : 0;
}
