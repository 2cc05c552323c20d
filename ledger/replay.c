/* replay.c: state_replay(), the ledger applied to a member state by two threads.
 *
 * This thread reads the ledger and decodes entries into a ring; a second one applies them in
 * order. Decoding and LMDB take about as long as applying, so the two overlap on two cores
 * (8 M entries: 0.95-0.99 M -> 1.62-1.66 M entries/s, docs/performance.md). The ring is
 * single-producer single-consumer: the reader publishes filled slots with a release store of
 * `head`, the applier frees it with a release store of `tail`; each waits for the other with a
 * short spin, then sched_yield().
 */
#include "replay.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"

#define RING 128 /* decoded entries in flight (an lt_entry is 30 KiB: 3.8 MiB) */
/* The reader publishes `head` every PUBLISH_EVERY entries (and before it waits, and at the
 * end), not per entry: each store moved head's cache line to the applier's core and back
 * (replay +3-7%, docs/performance.md) */
#define PUBLISH_EVERY 32
#define SPINS 64
#define ERR_MAX 512
#define PROGRESS_EVERY 4096 /* entries between progress calls (a call may read the clock) */

/* Each side writes its own cache line; what both only read sits on a third one. */
typedef struct {
    /* read-only while the threads run */
    _Alignas(64) state *s;
    lt_entry *ring; /* RING entries */
    state_replay_progress progress;
    void *progress_ctx;
    /* the reader's */
    _Alignas(64) uint64_t head; /* slots published to the applier */
    uint64_t filled;            /* slots filled (published every PUBLISH_EVERY) */
    uint64_t tail_seen;         /* its last look at tail */
    bool done;                  /* finished: head is final */
    char read_err[ERR_MAX];
    /* the applier's */
    _Alignas(64) uint64_t tail; /* slots applied */
    uint64_t applied, last_seq; /* copied to the caller's result at the end */
    bool failed;                /* stopped on an entry that does not apply */
    char apply_err[ERR_MAX];
} replay_ctx;

static void pause_briefly(unsigned *spins)
{
    if (++*spins < SPINS) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();
    }
}

/* Starts the cache misses of the members that the next entries will touch (state_prefetch()).
 * Without it, finding members is a third of the applier's time. */
static void prefetch_ahead(const replay_ctx *a, uint64_t t, uint64_t h)
{
    for (unsigned k = 1; k <= STATE_PREFETCH_AHEAD && t + k < h; k++) {
        const lt_entry *e = &a->ring[(t + k) % RING];
        for (uint32_t i = 0; i < e->postings_n; i++) {
            const char *id = e->postings[i].member_id;
            state_prefetch(a->s, id, strnlen(id, LT_ID_MAX), k);
        }
    }
}

static void *applier_main(void *arg)
{
    replay_ctx *a = arg;
    char why[ERR_MAX - 64] = "";
    for (;;) {
        uint64_t t = a->tail, h;
        unsigned spins = 0;
        while ((h = __atomic_load_n(&a->head, __ATOMIC_ACQUIRE)) == t) {
            if (__atomic_load_n(&a->done, __ATOMIC_ACQUIRE) &&
                __atomic_load_n(&a->head, __ATOMIC_ACQUIRE) == t)
                return NULL;
            pause_briefly(&spins);
        }
        for (; t < h; t++) {
            prefetch_ahead(a, t, h);
            const lt_entry *e = &a->ring[t % RING];
            if (state_apply(a->s, e, why, sizeof why) < 0) {
                snprintf(a->apply_err, sizeof a->apply_err, "entry %" PRIu64 " does not apply: %s",
                         e->seq, why);
                __atomic_store_n(&a->failed, true, __ATOMIC_RELEASE);
                return NULL;
            }
            a->last_seq = e->seq;
            if (++a->applied % PROGRESS_EVERY == 0 && a->progress != NULL)
                a->progress(a->progress_ctx, a->applied);
            __atomic_store_n(&a->tail, t + 1, __ATOMIC_RELEASE);
        }
    }
}

static int decode_one(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len)
{
    replay_ctx *a = ctx;
    uint64_t h = a->filled;
    unsigned spins = 0;
    /* `tail` is read again only when the ring looks full: reading it for every entry moved its
     * cache line between the cores each time (half of this function's samples) */
    while (h - a->tail_seen >= RING) {
        a->tail_seen = __atomic_load_n(&a->tail, __ATOMIC_ACQUIRE);
        if (h - a->tail_seen < RING)
            break;
        if (__atomic_load_n(&a->failed, __ATOMIC_ACQUIRE))
            return -1;
        if (spins == 0) /* the applier has everything before it waits */
            __atomic_store_n(&a->head, h, __ATOMIC_RELEASE);
        pause_briefly(&spins);
    }
    /* a failed applier is noticed once the ring fills: reading `failed` here for every entry
     * would share the applier's cache line again */
    lt_entry *e = &a->ring[h % RING];
    if (entry_decode_state(bytes, len, e) < 0) {
        snprintf(a->read_err, sizeof a->read_err, "entry %" PRIu64 " (%zu bytes) does not decode",
                 seq, len);
        return -1;
    }
    if (e->seq != seq) {
        snprintf(a->read_err, sizeof a->read_err, "entry under key %" PRIu64 " says seq %" PRIu64,
                 seq, e->seq);
        return -1;
    }
    a->filled = h + 1;
    if ((h + 1) % PUBLISH_EVERY == 0)
        __atomic_store_n(&a->head, h + 1, __ATOMIC_RELEASE);
    return 0;
}

int state_replay(ledger *l, state *s, uint64_t from, uint64_t to, state_replay_progress progress,
                 void *progress_ctx, state_replay_result *r, char *err, size_t err_len)
{
    LT_ASSERT(from >= 1);
    r->applied = 0;
    r->last_seq = 0;
    replay_ctx *a = aligned_alloc(64, sizeof *a);
    lt_entry *ring = malloc(RING * sizeof *ring);
    if (a == NULL || ring == NULL) {
        free(a);
        free(ring);
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    memset(a, 0, sizeof *a);
    a->s = s;
    a->ring = ring;
    a->progress = progress;
    a->progress_ctx = progress_ctx;
    pthread_t th;
    if (pthread_create(&th, NULL, applier_main, a) != 0) {
        free(ring);
        free(a);
        snprintf(err, err_len, "cannot start the replay thread");
        return -1;
    }
    int rc = ledger_scan(l, from, to, decode_one, a);
    __atomic_store_n(&a->head, a->filled, __ATOMIC_RELEASE);
    __atomic_store_n(&a->done, true, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    r->applied = a->applied;
    r->last_seq = a->last_seq;
    if (a->failed)
        snprintf(err, err_len, "%s", a->apply_err);
    else if (a->read_err[0])
        snprintf(err, err_len, "%s", a->read_err);
    else if (rc < -1)
        snprintf(err, err_len, "ledger scan: %s", ledger_strerror(rc));
    bool ok = rc == 0 && !a->failed;
    free(ring);
    free(a);
    return ok ? 0 : -1;
}
