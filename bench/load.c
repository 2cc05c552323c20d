/* load.c: lt-bench's load: N till threads, each a DEALER with its own node id and increasing
 * event ids, keeping up to W batches in flight, sending a realistic mix of sales (Zipf-ish
 * members, 1-20 lines, excluded categories, big tickets, ~5% redemptions sized from the member's
 * last acknowledged balance) and a few enrolments. Every event and buffer is allocated before
 * the clock starts; the send loop only fills structs and packs them.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "bench.h"
#include "loyalty.pb-c.h"

#define LOAD_LINES_MAX 20
#define LOAD_SKUS 1000
#define LOAD_STORES 20
#define LOAD_POLL_MS 20
#define LOAD_DRAIN_S 10.0 /* after the sending time, wait this long for in-flight acks */
#define LOAD_UTC_OFFSET_MIN 480
#define LOAD_ENROL_PER_MILLE 10
#define LOAD_REDEEM_PER_MILLE 50
#define MEMBER_NONE UINT32_MAX

typedef struct {
    const char *name;
    unsigned weight;
    int64_t price_min, price_max; /* unit list price, fen */
    int qty_max;
} category;

/* Weights sum to 100. tobacco, alcohol and special_price are excluded by the default rules
 * (R9); appliances and clothing are the big_ticket earn class (R11). */
static const category categories[] = {
    {"groceries", 30, 200, 5000, 5},      {"fresh", 14, 300, 8000, 3},
    {"household", 12, 500, 12000, 3},     {"beverages", 10, 300, 3000, 6},
    {"snacks", 8, 200, 2500, 4},          {"clothing", 6, 5000, 60000, 2},
    {"appliances", 2, 100000, 800000, 1}, {"tobacco", 5, 1500, 10000, 2},
    {"alcohol", 5, 2000, 50000, 2},       {"special_price", 8, 100, 3000, 3},
};

typedef struct {
    Loyalty__Event ev;
    Loyalty__EventId id;
    Loyalty__Sale sale;
    Loyalty__Enrol enrol;
    Loyalty__SaleLine lines[LOAD_LINES_MAX];
    Loyalty__SaleLine *line_ptrs[LOAD_LINES_MAX];
    char member[LT_ID_MAX];
    char card[LT_ID_MAX];
} gen_event;

typedef struct {
    uint64_t batch_id;
    uint64_t send_ns;
    uint32_t n;
    uint32_t *members; /* member index per event (MEMBER_NONE for enrolments) */
    bool busy;
} inflight;

typedef struct shared shared;

typedef struct {
    shared *sh;
    int index;
    uint64_t node_id;
    uint64_t next_event_id;
    uint64_t next_batch_id;
    uint64_t rng;
    uint64_t enrolled;
    void *sock;
    gen_event *gen;        /* batch events */
    Loyalty__Event **ptrs; /* batch pointers into gen */
    uint8_t *buf;          /* packed message */
    inflight slots[BENCH_WINDOW_MAX];
    int inflight_n;
    uint64_t first_send_ns, last_ack_ns;
    int failed;
    load_result r; /* this till's counts */
} till;

struct shared {
    const load_opts *o;
    void *zctx;
    int64_t *balances; /* last acknowledged balance per member, relaxed atomics */
    char (*skus)[16];
    char (*stores)[8];
    double zipf_log;
    uint64_t perm_mult;
    pthread_barrier_t start;
    uint64_t start_ns, deadline_ns, drain_ns;
};

/* ------------------------------------------------------------------ generation */

static uint64_t rnd(uint64_t *s)
{
    /* splitmix64: small, fast and good enough for a load mix */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t *s, uint64_t n)
{
    return n ? rnd(s) % n : 0;
}

static int64_t rnd_range(uint64_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)rnd_below(s, (uint64_t)(hi - lo + 1));
}

static double rnd_unit(uint64_t *s)
{
    return (double)(rnd(s) >> 11) / (double)(1ull << 53);
}

/* Zipf-like (s = 1) over the population: rank r with probability ~ 1/r, then scattered by a
 * multiplicative permutation so hot members are not all low ids. */
static uint32_t pick_member(till *t)
{
    const shared *sh = t->sh;
    uint32_t n = sh->o->members;
    double x = exp(rnd_unit(&t->rng) * sh->zipf_log) - 1.0;
    uint64_t rank = x < 0 ? 0 : (uint64_t)x;
    if (rank >= n)
        rank = n - 1;
    return (uint32_t)(rank * sh->perm_mult % n);
}

static const category *pick_category(uint64_t *rng)
{
    unsigned w = (unsigned)rnd_below(rng, 100);
    for (size_t i = 0; i < LT_ARRAY_LEN(categories); i++) {
        if (w < categories[i].weight)
            return &categories[i];
        w -= categories[i].weight;
    }
    return &categories[0];
}

static uint32_t pick_lines(uint64_t *rng)
{
    unsigned p = (unsigned)rnd_below(rng, 100);
    if (p < 60)
        return (uint32_t)rnd_range(rng, 1, 3);
    if (p < 90)
        return (uint32_t)rnd_range(rng, 4, 10);
    return (uint32_t)rnd_range(rng, 11, LOAD_LINES_MAX);
}

static void gen_common(till *t, gen_event *g, int64_t now)
{
    loyalty__event__init(&g->ev);
    loyalty__event_id__init(&g->id);
    g->id.has_node_id = g->id.has_event_id = 1;
    g->id.node_id = t->node_id;
    g->id.event_id = t->next_event_id++;
    g->ev.id = &g->id;
    g->ev.member_id = g->member;
    g->ev.store_id = t->sh->stores[rnd_below(&t->rng, LOAD_STORES)];
    g->ev.has_occurred_at = 1;
    g->ev.occurred_at = now;
    g->ev.has_utc_offset_min = 1;
    g->ev.utc_offset_min = LOAD_UTC_OFFSET_MIN;
}

static void gen_sale(till *t, gen_event *g, uint32_t m)
{
    snprintf(g->member, sizeof g->member, "139%08" PRIu32, m);
    loyalty__sale__init(&g->sale);
    g->ev.body_case = LOYALTY__EVENT__BODY_SALE;
    g->ev.sale = &g->sale;
    uint32_t n = pick_lines(&t->rng);
    int64_t paid_total = 0;
    for (uint32_t i = 0; i < n; i++) {
        Loyalty__SaleLine *l = &g->lines[i];
        const category *c = pick_category(&t->rng);
        loyalty__sale_line__init(l);
        l->sku = t->sh->skus[rnd_below(&t->rng, LOAD_SKUS)];
        l->category = (char *)c->name;
        l->has_quantity = l->has_unit_list_fen = l->has_unit_paid_fen = 1;
        l->quantity = rnd_range(&t->rng, 1, c->qty_max);
        l->unit_list_fen = rnd_range(&t->rng, c->price_min, c->price_max);
        l->unit_paid_fen = l->unit_list_fen;
        if (rnd_below(&t->rng, 100) < 30) /* discounted: 60..99% of list */
            l->unit_paid_fen = l->unit_list_fen * rnd_range(&t->rng, 60, 99) / 100;
        unsigned f = (unsigned)rnd_below(&t->rng, 100);
        if (f < 8)
            l->has_flags = 1, l->flags = LOYALTY__LINE_FLAG__LINE_FLAG_PROMOTION;
        else if (f < 11)
            l->has_flags = 1, l->flags = LOYALTY__LINE_FLAG__LINE_FLAG_GROUP_BUY;
        paid_total += l->quantity * l->unit_paid_fen;
        g->line_ptrs[i] = l;
    }
    g->sale.n_lines = n;
    g->sale.lines = g->line_ptrs;
    if (rnd_below(&t->rng, 1000) < LOAD_REDEEM_PER_MILLE) {
        /* small enough: at most a quarter of what the member last had, and of the sale's
         * value at the default point value of 100 fen (R15) */
        int64_t bal = __atomic_load_n(&t->sh->balances[m], __ATOMIC_RELAXED);
        int64_t cap = paid_total / 100;
        int64_t redeem = (bal < cap ? bal : cap) / 4;
        if (redeem > 0) {
            g->sale.has_redeem_points = 1;
            g->sale.redeem_points = redeem;
            t->r.redemptions++;
        }
    }
}

static void gen_enrol(till *t, gen_event *g)
{
    uint64_t k = ++t->enrolled;
    snprintf(g->member, sizeof g->member, "N%03" PRIu64 "%010" PRIu64, t->node_id, k);
    snprintf(g->card, sizeof g->card, "C%03" PRIu64 "%010" PRIu64, t->node_id, k);
    loyalty__enrol__init(&g->enrol);
    g->ev.body_case = LOYALTY__EVENT__BODY_ENROL;
    g->ev.enrol = &g->enrol;
    g->enrol.has_birth_month = g->enrol.has_birth_day = 1;
    g->enrol.birth_month = (uint32_t)rnd_range(&t->rng, 1, 12);
    g->enrol.birth_day = (uint32_t)rnd_range(&t->rng, 1, 28);
    g->enrol.card = g->card;
    t->r.enrolments++;
}

/* ------------------------------------------------------------------ network */

static inflight *free_slot(till *t)
{
    for (int i = 0; i < t->sh->o->window; i++)
        if (!t->slots[i].busy)
            return &t->slots[i];
    return NULL;
}

static int send_batch(till *t)
{
    const load_opts *o = t->sh->o;
    inflight *s = free_slot(t);
    LT_ASSERT(s != NULL);
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < o->batch; i++) {
        gen_event *g = &t->gen[i];
        gen_common(t, g, now);
        if (rnd_below(&t->rng, 1000) < LOAD_ENROL_PER_MILLE) {
            gen_enrol(t, g);
            s->members[i] = MEMBER_NONE;
        } else {
            uint32_t m = pick_member(t);
            gen_sale(t, g, m);
            s->members[i] = m;
        }
        t->ptrs[i] = &g->ev;
    }
    Loyalty__EventBatch b = LOYALTY__EVENT_BATCH__INIT;
    b.has_batch_id = 1;
    b.batch_id = ++t->next_batch_id;
    b.n_events = (size_t)o->batch;
    b.events = t->ptrs;
    size_t len = loyalty__event_batch__get_packed_size(&b);
    LT_ASSERT(len <= LT_MESSAGE_BYTES_MAX); /* 1000 events of 20 lines fit well inside */
    loyalty__event_batch__pack(&b, t->buf);
    s->batch_id = b.batch_id;
    s->n = (uint32_t)o->batch;
    s->send_ns = bench_now_ns();
    if (t->first_send_ns == 0)
        t->first_send_ns = s->send_ns;
    if (zmq_send(t->sock, t->buf, len, 0) < 0) {
        fprintf(stderr, "lt-bench: till %d: send: %s\n", t->index, zmq_strerror(zmq_errno()));
        return -1;
    }
    s->busy = true;
    t->inflight_n++;
    t->r.events_sent += s->n;
    return 0;
}

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
            if (s->members[i] != MEMBER_NONE)
                __atomic_store_n(&t->sh->balances[s->members[i]], k->balance, __ATOMIC_RELAXED);
        } else if (k->status == LOYALTY__STATUS__DUPLICATE) {
            r->duplicate++;
        } else {
            r->rejected++;
            r->reasons[(int)k->reason < (int)LT_R__COUNT ? (int)k->reason : LT_R_NONE]++;
        }
    }
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
            hist_add(&t->r.latency_us, (now - s->send_ns) / 1000);
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

static void *till_main(void *arg)
{
    till *t = arg;
    shared *sh = t->sh;
    pthread_barrier_wait(&sh->start);
    for (;;) {
        uint64_t now = bench_now_ns();
        bool sending = now < sh->deadline_ns && !t->failed;
        while (sending && t->inflight_n < sh->o->window)
            if (send_batch(t) < 0) {
                t->failed = 1;
                sending = false;
            }
        if (!sending && (t->inflight_n == 0 || now > sh->drain_ns))
            break;
        zmq_pollitem_t pi = {t->sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&pi, 1, LOAD_POLL_MS);
        if ((n < 0 && zmq_errno() != EINTR) || (n > 0 && drain_replies(t) < 0)) {
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
    sh->skus = calloc(LOAD_SKUS, sizeof *sh->skus);
    sh->stores = calloc(LOAD_STORES, sizeof *sh->stores);
    if (sh->zctx == NULL || !sh->balances || !sh->skus || !sh->stores)
        return -1;
    for (int i = 0; i < LOAD_SKUS; i++)
        snprintf(sh->skus[i], sizeof sh->skus[i], "SKU%05d", i);
    for (int i = 0; i < LOAD_STORES; i++)
        snprintf(sh->stores[i], sizeof sh->stores[i], "S%02d", i + 1);
    sh->zipf_log = log((double)o->members + 1.0);
    /* a prime multiplier is a permutation of 0..n-1 unless it divides n */
    sh->perm_mult = 2654435761u % o->members == 0 ? 1 : 2654435761u;
    return 0;
}

static void shared_free(shared *sh)
{
    if (sh->zctx)
        zmq_ctx_term(sh->zctx);
    free(sh->balances);
    free(sh->skus);
    free(sh->stores);
}

static int till_init(till *t, shared *sh, int index)
{
    const load_opts *o = sh->o;
    memset(t, 0, sizeof *t);
    t->sh = sh;
    t->index = index;
    t->node_id = o->node_base + (uint64_t)index + 1;
    t->next_event_id = 1;
    t->rng = o->seed ^ (0x9e3779b97f4a7c15ull * (t->node_id + 1));
    t->gen = calloc((size_t)o->batch, sizeof *t->gen);
    t->ptrs = calloc((size_t)o->batch, sizeof *t->ptrs);
    t->buf = malloc(LT_MESSAGE_BYTES_MAX);
    if (!t->gen || !t->ptrs || !t->buf)
        return -1;
    for (int i = 0; i < o->window; i++) {
        t->slots[i].members = calloc((size_t)o->batch, sizeof *t->slots[i].members);
        if (t->slots[i].members == NULL)
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
    return 0;
}

static void till_free(till *t)
{
    if (t->sock)
        zmq_close(t->sock);
    for (int i = 0; i < BENCH_WINDOW_MAX; i++)
        free(t->slots[i].members);
    free(t->gen);
    free(t->ptrs);
    free(t->buf);
}

static void merge_result(load_result *r, const load_result *t)
{
    r->events_sent += t->events_sent;
    r->batches_acked += t->batches_acked;
    r->accepted += t->accepted;
    r->duplicate += t->duplicate;
    r->rejected += t->rejected;
    r->refused_batches += t->refused_batches;
    r->lost_batches += t->lost_batches;
    r->redemptions += t->redemptions;
    r->enrolments += t->enrolments;
    for (int i = 0; i < LT_R__COUNT; i++)
        r->reasons[i] += t->reasons[i];
    hist_merge(&r->latency_us, &t->latency_us);
}

int bench_load_run(const load_opts *o, load_result *r)
{
    LT_ASSERT(o->tills >= 1 && o->tills <= BENCH_TILLS_MAX);
    LT_ASSERT(o->window >= 1 && o->window <= BENCH_WINDOW_MAX);
    LT_ASSERT(o->batch >= 1 && o->batch <= LT_BATCH_EVENTS_MAX);
    LT_ASSERT(o->members >= 1);
    memset(r, 0, sizeof *r);
    shared sh;
    memset(&sh, 0, sizeof sh);
    till *tills = calloc((size_t)o->tills, sizeof *tills);
    pthread_t th[BENCH_TILLS_MAX];
    int rc = tills && shared_init(&sh, o) == 0 ? 0 : -1;
    for (int i = 0; rc == 0 && i < o->tills; i++)
        rc = till_init(&tills[i], &sh, i);
    if (rc < 0) {
        fprintf(stderr, "lt-bench: cannot set up the tills (out of memory or zmq)\n");
    } else {
        pthread_barrier_init(&sh.start, NULL, (unsigned)o->tills + 1);
        for (int i = 0; i < o->tills; i++)
            pthread_create(&th[i], NULL, till_main, &tills[i]);
        sh.start_ns = bench_now_ns();
        sh.deadline_ns = sh.start_ns + (uint64_t)(o->seconds * 1e9);
        sh.drain_ns = sh.deadline_ns + (uint64_t)(LOAD_DRAIN_S * 1e9);
        pthread_barrier_wait(&sh.start);
        uint64_t last = sh.start_ns;
        for (int i = 0; i < o->tills; i++) {
            pthread_join(th[i], NULL);
            merge_result(r, &tills[i].r);
            if (tills[i].last_ack_ns > last)
                last = tills[i].last_ack_ns;
            rc |= tills[i].failed ? -1 : 0;
        }
        pthread_barrier_destroy(&sh.start);
        r->elapsed_s = (double)(last - sh.start_ns) / 1e9;
    }
    for (int i = 0; tills && i < o->tills; i++)
        till_free(&tills[i]);
    free(tills);
    shared_free(&sh);
    return rc;
}
