/* daemon.c: loyaltyd's core: recovery, the loop thread's event path, group commit and acks.
 *
 * Threads and who owns what:
 *   loop thread  ZeroMQ ingest and query sockets, rules, state, the open batch, acks;
 *   commit       ledger_commit() of sealed batches, in order, one fsync each;
 *   publisher    the PUB socket: entries of committed batches, heartbeats;
 *   checkpoint   DATA_DIR/state/ (ck_main): the chunks of a checkpoint the loop encodes;
 *   decode       the till message read ahead of the one the loop handles (dec_main).
 * A batch moves FREE -> OPEN (loop fills it) -> QUEUED (sealed) -> committed; it is FREE again
 * once the loop has sent its acks and the publisher has published it. All moves happen under
 * one mutex; the data inside a batch is written only by the loop thread while OPEN and only
 * read afterwards.
 *
 * The state in memory runs ahead of the disk by the batches not yet committed. That is safe
 * because nothing is acknowledged before its batch is durable; if a commit fails, the daemon
 * answers STORAGE_UNAVAILABLE for every event not yet durable and rebuilds the state from the
 * checkpoint and the ledger (storage_failure(), rebuild_state()).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <uv.h>
#include <zmq.h>

#include "auth.h"
#include "catchup.h"
#include "ckpt_order.h"
#include "ckpt_plan.h"
#include "ckstore.h"
#include "daemon.h"
#include "entry.h"
#include "idmap.h"
#include "index_plan.h"
#include "ingest.h"
#include "ledger.h"
#include "log.h"
#include "lookup.h"
#include "metrics.h"
#include "notify.h"
#include "loyalty.pb-c.h"
#include "pub.h"
#include "replay.h"
#include "rules.h"
#include "state.h"

#define IDENT_BYTES_MAX 255
#define REPLY_BYTES_MAX (LT_BATCH_EVENTS_MAX * 512 + 4096)
#define MSG_BYTES_MAX 200 /* one rejection message */

enum { B_FREE = 0, B_OPEN, B_QUEUED, B_COMMITTED };

/* Checkpoints (ledger/ckstore.h) go into DATA_DIR/state/, written by a thread of their own,
 * never into the ledger: a ledger commit (an acknowledgement) never waits for one. ckpt_start()
 * takes the members changed since the last one copy-on-write and sorts them by id (thread
 * pool); the loop thread encodes them into chunks of checkpoint_chunk records, spread over
 * half the checkpoint interval while events come in (ckpt_share()), and hands each to the
 * checkpoint thread (ck_main), which appends it to state/'s log in a durable transaction of its
 * own. Once every record is handed over and the ledger holds the checkpoint's sequence
 * durably, the thread completes it. */
enum { CK_IDLE = 0, CK_SORTING, CK_WRITING, CK_COMMITTING };
enum { CKJ_PUT, CKJ_COMMIT };
#define CK_BUFS 2           /* chunk buffers: one being filled while the thread writes the other */
#define CK_QUEUE 16         /* jobs: at most CK_BUFS chunks, a commit and aborts are ever queued */
#define CK_IDLE_NS 20000000 /* no batch sealed for this long: the loop is idle (20 ms) */
/* A full checkpoint (into a fresh log, ckstore.h) once the log holds more than this many times
 * the live records, plus CK_LOG_SLACK: a start loads at most about that many. */
#define CK_LOG_FACTOR 3
#define CK_LOG_SLACK 100000

typedef struct {
    uint8_t ident[IDENT_BYTES_MAX];
    uint8_t ident_len;
    bool delimiter; /* REQ-style envelope: echo an empty frame */
    bool has_batch_id;
    uint64_t batch_id;
    uint32_t ack_first, ack_n;
    uint64_t t0_ns; /* arrival, for the ack latency histogram */
} req_t;

/* One event of a till message, decoded and validated (ingest_batch_event()): its verdict, its
 * message if rejected, the event and its digest if not. */
typedef struct {
    int rc;          /* LT_R_* */
    uint64_t digest; /* ingest_event_digest_ev(), when rc is LT_R_NONE */
    char msg[MSG_BYTES_MAX];
    lt_event ev;
} dec_event;

/* A till message read from the ingest socket: its envelope, its payload, and the verdict of
 * ingest_batch_scan() on it (into eb). A message of DECODE_AHEAD_MIN events or more that is
 * read ahead of the one being handled is decoded by the decode thread meanwhile (dec_main()),
 * into dec; any other is decoded event by event as it is handled. */
enum { SCAN_OK = 0, SCAN_TOO_LARGE, SCAN_BAD };
#define DECODE_AHEAD_MIN 8
typedef struct {
    req_t r;
    zmq_msg_t payload;
    const char *uid; /* the connection's ZAP User-Id (CURVE), NULL without CURVE */
    int scan;        /* SCAN_* */
    ingest_batch eb;
    /* With the decode thread: it claims events one at a time (dec_claim), decodes each into
     * dec and then moves dec_upto past it; the loop handles event i from dec once i < dec_upto,
     * and otherwise takes the rest of the message (dec_claim to the end) and decodes as before.
     * So the loop never waits for the thread, only for its message's slot to be reused. */
    bool dec_sent;            /* handed to the decode thread (the loop's) */
    bool dec_busy;            /* in the decode thread's queue or being decoded (under dec_mu) */
    _Atomic size_t dec_claim; /* the next event not claimed yet */
    _Atomic size_t dec_upto;  /* the thread has decoded every event before this it claimed */
    ingest_limits lim;        /* what it is decoded against: the loop's limits when it was read */
    dec_event *dec;
    size_t dec_cap;
} inmsg;

typedef struct {
    uint64_t node, eid, seq;
    int64_t earned, redeemed, balance;
    uint8_t status, reason;
    uint8_t kind;     /* lt_event_kind, for the metrics */
    uint32_t msg_off; /* into batch msgs, or UINT32_MAX */
} ack_t;

/* One message for the publisher: its payload is in the batch's pub_bytes. */
typedef struct {
    uint8_t topic; /* pub_topic */
    uint32_t len;
    size_t off; /* into pub_bytes */
} pubmsg;

typedef struct batch {
    int state;
    uint64_t order; /* sealing order: commits and acks follow it */
    /* ledger records */
    uint32_t n, cap;
    ledger_record *recs;
    size_t *offs;
    pubmsg *pubs; /* what the publisher sends once the batch is committed */
    uint32_t pubs_n, pubs_cap;
    uint8_t *pub_bytes;
    size_t pub_len, pub_cap;
    uint8_t *bytes;
    size_t bytes_len, bytes_cap;
    /* replies */
    req_t *reqs;
    uint32_t reqs_n;
    ack_t *acks;
    uint32_t acks_n;
    char *msgs;
    size_t msgs_len, msgs_cap;
    /* dead letters: encoded loyalty.Rejected, written with the batch */
    ledger_blob *rejs;
    size_t *rej_off;
    uint32_t rejs_n, rejs_cap;
    uint8_t *rej_bytes;
    size_t rej_len, rej_cap;
    /* checkpoint */
    ledger_snap *snaps;
    size_t snaps_n, snaps_cap;
    size_t *snap_key_off, *snap_val_off;
    uint8_t *snap_bytes;
    size_t snap_len, snap_cap;
    /* results */
    int commit_rc;
    bool acked, published;
    struct batch *next_commit, *next_pub;
} batch;

/* A job for the checkpoint thread, and its answer (rc). */
typedef struct {
    int kind;         /* CKJ_* */
    bool begin, full; /* PUT: the checkpoint's first chunk begins it (full: into a fresh log) */
    int buf;          /* PUT: which chunk buffer (ck_buf), else -1 */
    uint64_t seq;     /* the checkpoint's sequence */
    uint64_t gen;     /* which checkpoint (ck_gen) */
    int rc;
} ckjob;

typedef struct {
    uint64_t accepted, duplicate, rejected;
    uint64_t by_reason[LT_R__COUNT];
    uint64_t messages, commits, committed_entries;
} daemon_stats;

typedef struct {
    const config *cfg;
    uv_loop_t loop;
    void *zctx;
    rules *rules;
    state *state;
    rules_view view;
    daemon_lookup lookup; /* the view's context: state plus the sale lookup for returns (R18) */
    ledger *ledger;
    pub *pub;
    catchup *catchup;
    auth *auth; /* CURVE allowlist and ZAP handler; NULL without CURVE */
    char curve_secret[41];
    void *ingest_sock, *query_sock; /* query_sock: PAIR to the catch-up thread's ROUTER */
    zwatch ingest_w, query_w;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t watchdog_timer;
    metrics m;
    uv_timer_t ckpt_timer;
    uv_async_t async;
    /* the till message being handled and the one read ahead of it (in_held), read in place
     * (ingest/wire.c): in[in_cur] is the next to handle */
    inmsg in[2];
    unsigned in_cur;
    bool in_held;
    /* the decode thread and its queue of messages (at most the two of in[]), under dec_mu */
    uv_thread_t dec_thread;
    uv_mutex_t dec_mu;
    uv_cond_t dec_cv, dec_done_cv;
    inmsg *dec_q[2];
    unsigned dec_q_head, dec_q_n;
    inmsg *dec_cur; /* the message it decodes, taken off the queue */
    bool dec_stop, dec_running;
    bool dec_hold;  /* test hook LOYALTYD_TEST_DECODE_HOLD: it starts on nothing until the stop */
    dec_event dec1; /* an event decoded as it is handled */
    ingest_limits lim;

    /* dedup: event ids of batches not acknowledged yet -> (seq, digest); per till: max event
     * id seen. Once acknowledged, the ledger finds an id (ledger_find_event(): its writer's
     * memory until the id's round of the index, then the index). */
    idmap pending, nodes;
    uint64_t indexed_seq;   /* commit thread: ledger_indexed_seq() at the last look */
    bool index_failing;     /* commit thread: the last flush failed */
    uint64_t next_seq;      /* sequence the next accepted event gets */
    uint64_t committed_seq; /* last durable sequence */
    uint64_t checkpoint_seq;

    /* the pipeline */
    uv_mutex_t mu;
    uv_cond_t commit_cv, pub_cv;
    uv_thread_t commit_thread, pub_thread;
    batch *batches;
    size_t batches_n;
    batch *open;
    uint64_t seal_order, ack_order;
    batch *commit_head, *commit_tail, *pub_head, *pub_tail;
    bool committing, threads_stop;
    uint64_t pub_committed_seq; /* for heartbeats, under mu */
    /* the checkpoint being written */
    ckstore *cks;     /* DATA_DIR/state/ */
    uint32_t *ck_ord; /* its members' numbers, in id order before they are written */
    size_t ck_ord_n, ck_ord_cap;
    state_ckpt_list ck_list;            /* what it covers (state_ckpt_begin), in no order */
    const state_card_change **ck_cards; /* its cards, in key order (the pool's sort), each once */
    size_t ck_cards_n, ck_cards_cap;
    state_ids ck_ids;    /* where their ids are, for the thread pool */
    ck_order ck_order;   /* every member in id order, kept between checkpoints (the pool's) */
    batch *ck_capd;      /* members and returns records captured before a change
                          * (state_ckpt_begin), as snaps */
    uint32_t *ck_cap_at; /* member number -> its snap in ck_capd, for the members captured
                          * by this checkpoint (stale for any other) */
    size_t ck_cap_at_n;
    uint32_t *ck_rcap_at; /* the same for returns records, by record number */
    size_t ck_rcap_at_n;
    size_t ck_next;          /* next member (ck_ord) to encode */
    size_t ck_other_next;    /* next of ck_cards, then of ck_list.returns, to encode */
    uint64_t ck_seq;         /* the sequence it covers */
    int ck_phase;            /* CK_IDLE, CK_SORTING, CK_WRITING, CK_COMMITTING */
    uv_work_t ck_sort;       /* sorts ck_ord (the members) by id in libuv's thread pool */
    bool ck_sort_busy;       /* until its after-work callback: ck_ord is the pool's */
    bool ck_full;            /* the next checkpoint writes everything, into a fresh log */
    bool ck_this_full;       /* the current one does */
    bool ck_final_done;      /* stopping: the last checkpoint was started */
    uint64_t ck_log_records; /* records in state/'s log (ckstore_log_records()) */
    uint64_t ck_written;     /* records the current checkpoint handed to the thread */
    uint64_t last_seal_ns;   /* when a batch with events was last sealed */
    uint64_t ck_gen;         /* which checkpoint: answers for an earlier one are stale */
    uint64_t ck_start_ns;
    uint64_t ck_cap_max_ns;   /* the longest single capture of this checkpoint (debug log) */
    size_t ck_rcaptured;      /* returns records it captured (debug log) */
    uint32_t ck_chunks;       /* chunks handed to the thread (the first begins the checkpoint) */
    batch *ck_buf[CK_BUFS];   /* chunk buffers */
    bool ck_buf_out[CK_BUFS]; /* with the thread */
    int ck_fill_i;            /* the buffer being filled, or -1 */
    uint32_t ck_inflight;     /* jobs handed over and not answered */
    /* the checkpoint thread and its queues (under ck_mu) */
    uv_thread_t ck_thread;
    uv_mutex_t ck_mu;
    uv_cond_t ck_cv;
    uv_async_t ck_async;
    uv_timer_t ck_timer; /* ckpt_pump_idle() */
    ckjob ck_q[CK_QUEUE], ck_done[CK_QUEUE];
    size_t ck_q_head, ck_q_n, ck_d_head, ck_d_n;
    bool ck_stop;

    /* query waiting for a quiet point (state hash) */
    req_t *hash_waiters;
    size_t hash_waiters_n;

    /* time-driven entries (R19-R21, R24, R28): sweeps over every member, in chunks */
    int64_t clock_s;      /* tests: the injected clock (UTC seconds); 0 = the real one */
    uint64_t due_written; /* system entries written so far */
    uv_timer_t sweep_timer;
    uv_idle_t sweep_idle;
    bool sweeping, sweep_blocked, sweep_again;
    size_t sweep_pos;       /* hash-table position of the pass */
    uint64_t sweep_visited; /* members visited in the pass */
    uint64_t sweep_pass, sweep_done_pass, sweep_written0, sweep_last_written;
    req_t *sweep_waiters;
    uint64_t *sweep_waiter_pass;
    size_t sweep_waiters_n;

    bool stopping, failed;
    bool recovering;          /* a commit failed: waiting for the pipeline, then rebuilding */
    uint64_t refuse_until_ms; /* after a failed commit: refuse events until then (backoff) */
    uint64_t refuse_backoff_ms;
    char refuse_why[128];
    int exit_code;
    daemon_stats st;

    /* the till message being handled (for dead letters) */
    const ingest_event_span *cur_event; /* the event being processed: its bytes, for dead letters */
    const req_t *cur_req;

    /* scratch (loop thread) */
    lt_event ev;
    lt_entry entry;
    uint8_t enc[ENTRY_BYTES_MAX];
    ingest_ack acks_out[LT_BATCH_EVENTS_MAX];
    uint8_t reply[REPLY_BYTES_MAX];
} daemon_t;

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

/* ------------------------------------------------------------------ batches */

static int batch_init(batch *b, uint32_t cap)
{
    memset(b, 0, sizeof *b);
    b->cap = cap;
    b->recs = calloc(cap, sizeof *b->recs);
    b->offs = calloc(cap, sizeof *b->offs);
    b->pubs_cap = cap * 3;
    b->pubs = calloc(b->pubs_cap, sizeof *b->pubs);
    b->pub_cap = (size_t)cap * 128;
    b->pub_bytes = malloc(b->pub_cap);
    b->reqs = calloc(cap, sizeof *b->reqs);
    b->acks = calloc(cap, sizeof *b->acks);
    b->bytes_cap = (size_t)cap * 512;
    b->bytes = malloc(b->bytes_cap);
    b->msgs_cap = 64 * 1024;
    b->msgs = malloc(b->msgs_cap);
    if (!b->recs || !b->offs || !b->pubs || !b->pub_bytes || !b->reqs || !b->acks || !b->bytes ||
        !b->msgs)
        return -1;
    return 0;
}

static void batch_free(batch *b)
{
    free(b->recs);
    free(b->offs);
    free(b->pubs);
    free(b->pub_bytes);
    free(b->reqs);
    free(b->acks);
    free(b->bytes);
    free(b->msgs);
    free(b->rejs);
    free(b->rej_off);
    free(b->rej_bytes);
    free(b->snaps);
    free(b->snap_key_off);
    free(b->snap_val_off);
    free(b->snap_bytes);
}

static void batch_reset(batch *b)
{
    b->n = 0;
    b->bytes_len = 0;
    b->pubs_n = 0;
    b->pub_len = 0;
    b->reqs_n = 0;
    b->acks_n = 0;
    b->msgs_len = 0;
    b->snaps_n = 0;
    b->snap_len = 0;
    b->rejs_n = 0;
    b->rej_len = 0;
    b->commit_rc = 0;
    b->acked = b->published = false;
    b->next_commit = b->next_pub = NULL;
}

static bool batch_full(const daemon_t *d, const batch *b)
{
    return b->n >= (uint32_t)d->cfg->batch_events_max ||
           b->acks_n >= (uint32_t)d->cfg->batch_events_max;
}

/* Grows a byte buffer to hold `need` more bytes. Returns 0 or -1. */
static int grow_bytes(uint8_t **buf, size_t *cap, size_t len, size_t need)
{
    if (len + need <= *cap)
        return 0;
    size_t ncap = *cap * 2;
    while (ncap < len + need)
        ncap *= 2;
    uint8_t *nb = realloc(*buf, ncap);
    if (nb == NULL)
        return -1;
    *buf = nb;
    *cap = ncap;
    return 0;
}

/* ------------------------------------------------------------------ checkpoint records */

static int snap_add(batch *b, ledger_snap_kind kind, const char *key, const uint8_t *val,
                    size_t len, bool del)
{
    if (b->snaps_n == b->snaps_cap) {
        size_t ncap = b->snaps_cap ? b->snaps_cap * 2 : 1024;
        ledger_snap *ns = realloc(b->snaps, ncap * sizeof *ns);
        if (ns == NULL)
            return -1;
        b->snaps = ns;
        size_t *nk = realloc(b->snap_key_off, ncap * sizeof *nk);
        if (nk == NULL)
            return -1;
        b->snap_key_off = nk;
        size_t *nv = realloc(b->snap_val_off, ncap * sizeof *nv);
        if (nv == NULL)
            return -1;
        b->snap_val_off = nv;
        b->snaps_cap = ncap;
    }
    size_t klen = strlen(key) + 1;
    if (b->snap_cap == 0) {
        b->snap_cap = 1 << 20;
        b->snap_bytes = malloc(b->snap_cap);
        if (b->snap_bytes == NULL)
            return -1;
    }
    if (grow_bytes(&b->snap_bytes, &b->snap_cap, b->snap_len, klen + len) != 0)
        return -1;
    size_t i = b->snaps_n++;
    b->snaps[i].kind = kind;
    b->snaps[i].len = del ? 0 : len;
    b->snap_key_off[i] = b->snap_len;
    memcpy(b->snap_bytes + b->snap_len, key, klen);
    b->snap_len += klen;
    b->snap_val_off[i] = del ? SIZE_MAX : b->snap_len;
    if (!del) {
        memcpy(b->snap_bytes + b->snap_len, val, len);
        b->snap_len += len;
    }
    return 0;
}

static int snap_member(batch *b, const lt_member *m)
{
    /* a member's record grows with its lots: size the buffer to fit, never truncate */
    static uint8_t *buf;
    static size_t cap;
    size_t need = 512 + (size_t)m->lots_n * 64;
    if (need > cap) {
        uint8_t *nb = realloc(buf, need);
        if (nb == NULL)
            return -1;
        buf = nb;
        cap = need;
    }
    size_t n = state_member_encode(m, buf, cap);
    if (n == 0)
        return -1;
    return snap_add(b, LEDGER_SNAP_MEMBER, m->id, buf, n, false);
}

/* v in decimal, without leading zeros, NUL-terminated, into key (at least 21 bytes).
 * snprintf() took 4-12 ms for 26,000 returns records (when they were encoded at a checkpoint's
 * start). */
static void u64_decimal(char *key, uint64_t v)
{
    char rev[20];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        key[i] = rev[n - 1 - i];
    key[n] = '\0';
}

static int snap_returns(batch *b, uint64_t sale_seq, const int64_t *qty, uint32_t n)
{
    uint8_t buf[STATE_RETURNS_BYTES_MAX];
    char key[24];
    size_t len = state_returns_encode(qty, n, buf, sizeof buf);
    if (len == 0)
        return -1;
    u64_decimal(key, sale_seq);
    return snap_add(b, LEDGER_SNAP_RETURNS, key, buf, len, false);
}

static int snap_card(batch *b, const char *card, const char *member_id)
{
    if (member_id == NULL)
        return snap_add(b, LEDGER_SNAP_CARD, card, NULL, 0, true);
    return snap_add(b, LEDGER_SNAP_CARD, card, (const uint8_t *)member_id, strlen(member_id),
                    false);
}

/* Points a batch's snaps at its bytes (done by the commit thread for queued batches). */
static void snaps_fix(batch *b)
{
    for (size_t i = 0; i < b->snaps_n; i++) {
        b->snaps[i].key = (const char *)b->snap_bytes + b->snap_key_off[i];
        b->snaps[i].value =
            b->snap_val_off[i] == SIZE_MAX ? NULL : b->snap_bytes + b->snap_val_off[i];
    }
}

/* Cards in the order of their keys in the log (ckstore.h), by their bytes; a card listed twice
 * (unlinked and linked again, state.h) in the list's order, which is the order of the entries'
 * addresses. */
static int ck_card_cmp(const void *a, const void *b)
{
    const state_card_change *x = *(const state_card_change *const *)a;
    const state_card_change *y = *(const state_card_change *const *)b;
    int c = strcmp(x->card, y->card);
    if (c != 0)
        return c;
    return x < y ? -1 : x > y;
}

/* Returns records in the order of their keys in the log: by sale seq (each is listed once). */
static int ck_ret_cmp(const void *a, const void *b)
{
    const state_returns_change *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The checkpoint's cards into ck_cards (room made at its start), and with sort the cards and the
 * returns list (in place) in key order, so that they are appended at the log's end like the
 * members. Of a card listed twice only the later entry is kept, its link as of the start;
 * unsorted, both are written in the list's order and the later one replaces the earlier (a
 * record of the same key in one generation). Touches only the lists handed over, which the loop
 * thread no longer writes. */
static void ck_other_fill(daemon_t *d, bool sort)
{
    const state_ckpt_list *l = &d->ck_list;
    for (uint32_t i = 0; i < l->cards_n; i++)
        d->ck_cards[i] = &l->cards[i];
    d->ck_cards_n = l->cards_n;
    if (!sort)
        return;
    qsort(d->ck_cards, d->ck_cards_n, sizeof *d->ck_cards, ck_card_cmp);
    size_t k = 0;
    for (size_t i = 0; i < d->ck_cards_n; i++) {
        if (k > 0 && strcmp(d->ck_cards[k - 1]->card, d->ck_cards[i]->card) == 0)
            k--; /* the later entry of the same card replaces the earlier */
        d->ck_cards[k++] = d->ck_cards[i];
    }
    d->ck_cards_n = k;
    if (l->returns_n > 1) /* else l->returns may be NULL */
        qsort(l->returns, l->returns_n, sizeof *l->returns, ck_ret_cmp);
}

/* The checkpoint's members into ck_ord in no particular order, when they cannot be sorted (the
 * loop thread or the pool's, like the other threads that log): the same checkpoint, in more
 * pages. */
static void ck_ord_unsorted(daemon_t *d, const char *why)
{
    lt_log(LT_WARN, "checkpoint members not sorted; written in more pages",
           "members=%zu reason=\"%s\"", d->ck_ord_n, why);
    if (d->ck_ord_n > 0) /* else ck_ord may be NULL */
        memcpy(d->ck_ord, d->ck_list.members, d->ck_ord_n * sizeof *d->ck_ord);
}

static const char *ck_member_id(const void *ids, uint32_t idx)
{
    return state_ids_member_id(ids, idx);
}

/* Thread pool: the checkpoint's members in key order, so that each chunk is appended at the
 * end of state/'s log, filling its pages (into the ledger's member table, sorting took 600,000
 * records of a 1 M member ledger from 5.9 s of commits to 0.34 s). The order of all members
 * is kept between checkpoints (ckpt_order.h): only those enrolled since the last one are
 * sorted. Reads only member ids, which never change; the records never move. In the pool, not
 * on the loop thread: reading 1 M ids is 1 M cache misses (a 40-57 ms pause at the
 * checkpoint's start when the loop thread did it). */
static void ckpt_sort_work(uv_work_t *w)
{
    daemon_t *d = w->data;
    if (ck_order_grow(&d->ck_order, d->ck_ids.members_n, ck_member_id, &d->ck_ids) != 0 ||
        ck_order_select(&d->ck_order, d->ck_list.members, d->ck_ord_n, d->ck_ord) != 0)
        ck_ord_unsorted(d, "out of memory");
    /* the cards and returns too, in the log's key order: then every record of the checkpoint
     * is appended at the log's end (ckstore_put), filling its pages */
    ck_other_fill(d, true);
}

static void ckpt_pump(daemon_t *d, size_t budget);
static void final_checkpoint_and_stop(daemon_t *d);
static void rebuild_state(daemon_t *d);
static void fatal(daemon_t *d, int code, const char *what);

/* Whether the loop has nothing else to do: no events for CK_IDLE_NS. A checkpoint may then
 * take whole chunks, one after the other; otherwise each sealed batch encodes its share
 * (ckpt_share()). Back-to-back chunks whenever the pipeline was momentarily empty, between two
 * messages at 140,000 events/s, put the ack p99 at 57-184 ms during a checkpoint. */
static bool quiet(daemon_t *d);

static bool ckpt_loop_idle(daemon_t *d)
{
    return quiet(d) && uv_hrtime() - d->last_seal_ns > CK_IDLE_NS;
}

static void on_ck_timer(uv_timer_t *h);

/* Moves the checkpoint on when no sealed batch does: whole chunks if the loop is idle; if not,
 * the sealed batches do, and a timer looks again in case the events stop. */
static void ckpt_pump_idle(daemon_t *d)
{
    bool idle = ckpt_loop_idle(d);
    ckpt_pump(d, idle ? (size_t)d->cfg->checkpoint_chunk : 0);
    if (d->ck_phase == CK_WRITING && !idle && !d->stopping)
        uv_timer_start(&d->ck_timer, on_ck_timer, CK_IDLE_NS / 1000000 + 1, 0);
}

static void on_ck_timer(uv_timer_t *h)
{
    daemon_t *d = h->data;
    if (!d->recovering && !d->failed)
        ckpt_pump_idle(d);
}

static void ckpt_sort_done(uv_work_t *w, int status)
{
    daemon_t *d = w->data;
    (void)status;
    d->ck_sort_busy = false;
    if (d->failed)
        return;
    lt_log(LT_DEBUG, "checkpoint sorted", "members=%zu ms=%.1f", d->ck_ord_n,
           (double)(uv_hrtime() - d->ck_start_ns) / 1e6);
    if (d->ck_phase == CK_SORTING)
        d->ck_phase = CK_WRITING;
    if (d->recovering && !d->stopping)
        rebuild_state(d); /* it waited for the sort: the state it reads is about to go */
    else if (d->stopping)
        final_checkpoint_and_stop(d);
    else
        ckpt_pump_idle(d);
}

/* state_apply() is about to change a member the checkpoint has not written yet: keep it as it
 * is (as of the checkpoint's start). */
static void ckpt_capture(void *ctx, uint32_t idx, const lt_member *m)
{
    daemon_t *d = ctx;
    if (d->ck_phase == CK_IDLE)
        return; /* a checkpoint that failed or was dropped: its members need no keeping */
    uint64_t t0 = uv_hrtime();
    LT_ASSERT(idx < d->ck_cap_at_n); /* a member of the checkpoint's start */
    d->ck_cap_at[idx] = (uint32_t)d->ck_capd->snaps_n;
    if (snap_member(d->ck_capd, m) != 0)
        fatal(d, 71, "out of memory keeping a member for the checkpoint");
    uint64_t took = uv_hrtime() - t0;
    if (took > d->ck_cap_max_ns)
        d->ck_cap_max_ns = took;
}

/* A return is about to change a returns record the checkpoint has not written yet: keep it as
 * it is (as of the checkpoint's start). */
static void ckpt_capture_returns(void *ctx, uint32_t rec, uint64_t sale_seq, const int64_t *qty,
                                 uint32_t n)
{
    daemon_t *d = ctx;
    if (d->ck_phase == CK_IDLE)
        return;
    LT_ASSERT(rec < d->ck_rcap_at_n); /* a record of the checkpoint's start */
    d->ck_rcap_at[rec] = (uint32_t)d->ck_capd->snaps_n;
    if (snap_returns(d->ck_capd, sale_seq, qty, n) != 0)
        fatal(d, 71, "out of memory keeping a returns record for the checkpoint");
    d->ck_rcaptured++;
}

/* Room for n elements of size sz (at least one): p if its capacity *cap holds them, else p
 * reallocated with an eighth to spare, as the state grows between checkpoints (*cap then the
 * new capacity); NULL out of memory (p is kept). */
static void *ck_room(void *p, size_t *cap, size_t n, size_t sz)
{
    if (n == 0)
        n = 1;
    if (p != NULL && n <= *cap)
        return p;
    size_t ncap = n + n / 8;
    void *np = realloc(p, ncap * sz);
    if (np != NULL)
        *cap = ncap;
    return np;
}

/* Starts a checkpoint of everything changed since the last one (of everything, after a failed
 * one or a start without a usable state/), as of now. Taken copy-on-write (state_ckpt_begin):
 * only lists now. Cards and returned quantities were encoded here until the sixteenth session:
 * 21,000-36,000 records, 2.8-4.4 ms of the start's pause on the loop thread. */
static int ckpt_start(daemon_t *d)
{
    uint64_t t0 = uv_hrtime();
    uint64_t live = state_members(d->state) + state_cards(d->state) + state_returns_count(d->state);
    if (d->ck_log_records > CK_LOG_FACTOR * live + CK_LOG_SLACK)
        d->ck_full = true; /* the log is mostly old versions: start a fresh one */
    if (d->ck_full && state_mark_all_dirty(d->state) != 0)
        return -1;
    size_t n_dirty = state_dirty_members(d->state);
    if (d->ck_capd == NULL && (d->ck_capd = calloc(1, sizeof *d->ck_capd)) == NULL)
        return -1;
    batch_reset(d->ck_capd);
    /* where each capture goes, by member and returns record number: 4 bytes each, kept between
     * checkpoints. A hash map grown from 1,024 held the loop thread 6 ms in a capture that
     * rehashed it, 45-55 ms in the first (full) checkpoint's */
    uint32_t *at = ck_room(d->ck_cap_at, &d->ck_cap_at_n, state_members(d->state), sizeof *at);
    if (at == NULL)
        return -1;
    d->ck_cap_at = at;
    at = ck_room(d->ck_rcap_at, &d->ck_rcap_at_n, state_returns_count(d->state), sizeof *at);
    if (at == NULL)
        return -1;
    d->ck_rcap_at = at;
    uint32_t *ord = ck_room(d->ck_ord, &d->ck_ord_cap, n_dirty, sizeof *ord);
    if (ord == NULL)
        return -1;
    d->ck_ord = ord;
    if (state_ids_take(d->state, &d->ck_ids) != 0)
        return -1;
    const state_ck_capture cap = {ckpt_capture, ckpt_capture_returns, d};
    if (state_ckpt_begin(d->state, &cap, &d->ck_list) != 0)
        return -1;
    LT_ASSERT(d->ck_list.members_n == n_dirty);
    /* room for the sort's output; if there is none, this checkpoint is dropped and the next
     * one is a full one (as after a failure): what was handed over is listed again */
    const state_card_change **cards =
        ck_room(d->ck_cards, &d->ck_cards_cap, d->ck_list.cards_n, sizeof *cards);
    if (cards == NULL) {
        d->ck_full = true;
        return -1;
    }
    d->ck_cards = cards;
    d->ck_ord_n = d->ck_list.members_n;
    d->ck_cards_n = 0; /* until the sort fills it */
    d->ck_this_full = d->ck_full;
    d->ck_full = false;
    d->ck_gen++;
    d->ck_written = 0;
    d->ck_seq = d->next_seq - 1;
    d->ck_next = 0;
    d->ck_other_next = 0;
    d->ck_phase = CK_SORTING;
    d->ck_start_ns = uv_hrtime();
    d->ck_chunks = 0;
    d->ck_cap_max_ns = 0;
    d->ck_rcaptured = 0;
    lt_log(LT_DEBUG, "checkpoint started",
           "checkpoint_seq=%llu members=%zu cards=%u returns=%u full=%d ms=%.1f",
           (unsigned long long)d->ck_seq, d->ck_ord_n, d->ck_list.cards_n, d->ck_list.returns_n,
           d->ck_this_full, (double)(uv_hrtime() - t0) / 1e6);
    d->ck_sort.data = d;
    if (uv_queue_work(&d->loop, &d->ck_sort, ckpt_sort_work, ckpt_sort_done) == 0) {
        d->ck_sort_busy = true;
    } else {
        ck_ord_unsorted(d, "no thread pool");
        ck_other_fill(d, false);
        d->ck_phase = CK_WRITING;
    }
    return 0;
}

/* Records of the checkpoint other than members (the sort's output). */
static size_t ckpt_others(const daemon_t *d)
{
    return d->ck_cards_n + d->ck_list.returns_n;
}

/* Whether every record of the checkpoint has been encoded into a chunk. */
static bool ckpt_filled(const daemon_t *d)
{
    return d->ck_other_next == ckpt_others(d) && d->ck_next == d->ck_ord_n;
}

/* Puts record c of the checkpoint's captures (ck_capd) into b's snaps. Returns 0, or -1 out of
 * memory. */
static int ckpt_copy_captured(const daemon_t *d, batch *b, uint32_t c)
{
    const batch *cp = d->ck_capd;
    LT_ASSERT(c < cp->snaps_n);
    return snap_add(b, cp->snaps[c].kind, (const char *)cp->snap_bytes + cp->snap_key_off[c],
                    cp->snap_bytes + cp->snap_val_off[c], cp->snaps[c].len, false);
}

/* Puts the checkpoint's next card or returns record into b's snaps, as of the checkpoint's
 * start. Returns 0, or -1 out of memory. */
static int ckpt_fill_other(daemon_t *d, batch *b, size_t i)
{
    if (i < d->ck_cards_n) {
        const state_card_change *c = d->ck_cards[i];
        return snap_card(b, c->card,
                         c->owner == STATE_NO_MEMBER ? NULL
                                                     : state_ids_member_id(&d->ck_ids, c->owner));
    }
    const state_returns_change *r = &d->ck_list.returns[i - d->ck_cards_n];
    const int64_t *qty;
    uint32_t n;
    if (state_ckpt_take_returns(d->state, r->rec, &qty, &n)) /* not changed since the start */
        return snap_returns(b, r->seq, qty, n);
    return ckpt_copy_captured(d, b, d->ck_rcap_at[r->rec]);
}

/* Puts the checkpoint's next records, up to max, into b's snaps: the members first, then the
 * changed cards and returns (sorted with them: their keys follow the members' in the log), each
 * counted against max. Returns 0, or -1 out of memory. */
static int ckpt_fill(daemon_t *d, batch *b, size_t max)
{
    size_t k = 0;
    for (; k < max && d->ck_next < d->ck_ord_n; k++, d->ck_next++) {
        uint32_t idx = d->ck_ord[d->ck_next];
        const lt_member *m = state_ckpt_take(d->state, idx);
        int rc;
        if (m != NULL) /* not captured, so not changed since the start */
            rc = snap_member(b, m);
        else
            rc = ckpt_copy_captured(d, b, d->ck_cap_at[idx]);
        if (rc != 0)
            return -1;
    }
    for (size_t others = ckpt_others(d); k < max && d->ck_other_next < others;
         k++, d->ck_other_next++) {
        if (ckpt_fill_other(d, b, d->ck_other_next) != 0)
            return -1;
    }
    return 0;
}

/* Hands a job to the checkpoint thread. */
static void ck_push(daemon_t *d, ckjob j)
{
    uv_mutex_lock(&d->ck_mu);
    LT_ASSERT(d->ck_q_n < CK_QUEUE);
    d->ck_q[(d->ck_q_head + d->ck_q_n++) % CK_QUEUE] = j;
    uv_cond_signal(&d->ck_cv);
    uv_mutex_unlock(&d->ck_mu);
    d->ck_inflight++;
}

/* The chunk buffer being filled, or a free one (NULL: both are with the thread). */
static batch *ckpt_fill_buf(daemon_t *d)
{
    if (d->ck_fill_i >= 0)
        return d->ck_buf[d->ck_fill_i];
    for (int i = 0; i < CK_BUFS; i++) {
        if (d->ck_buf_out[i])
            continue;
        if (d->ck_buf[i] == NULL && (d->ck_buf[i] = calloc(1, sizeof *d->ck_buf[i])) == NULL)
            return NULL;
        batch_reset(d->ck_buf[i]);
        d->ck_fill_i = i;
        return d->ck_buf[i];
    }
    return NULL;
}

static void ckpt_send_fill(daemon_t *d)
{
    int i = d->ck_fill_i;
    LT_ASSERT(i >= 0);
    d->ck_buf_out[i] = true;
    d->ck_fill_i = -1;
    ck_push(d, (ckjob){.kind = CKJ_PUT,
                       .begin = d->ck_chunks == 0,
                       .full = d->ck_this_full,
                       .buf = i,
                       .seq = d->ck_seq,
                       .gen = d->ck_gen});
    d->ck_chunks++;
    d->ck_written += d->ck_buf[i]->snaps_n;
}

/* The records a batch of n entries, sealed at now_ns while the checkpoint is being written,
 * encodes: what the checkpoint's schedule, half of checkpoint_interval_ms from its start, says
 * is due, at most twice the entries (ckpt_share()). */
static size_t ckpt_seal_share(const daemon_t *d, uint32_t n, uint64_t now_ns)
{
    return ckpt_share((size_t)d->cfg->checkpoint_chunk, n, d->ck_ord_n + ckpt_others(d),
                      d->ck_next + d->ck_other_next, (now_ns - d->ck_start_ns) / 1000,
                      (uint64_t)d->cfg->checkpoint_interval_ms * 1000 / 2);
}

/* Moves the checkpoint being written on: encodes up to budget more records into chunks (while
 * events come in, a sealed batch's share, ckpt_seal_share()); hands each full chunk
 * (checkpoint_chunk records) to the thread, and the last one once every record is encoded; and
 * once everything is handed over and the ledger holds the checkpoint's sequence durably, the
 * commit. A part-filled chunk waits for more records even when the thread is idle: a
 * checkpoint spread over seconds would otherwise write a small durable transaction for nearly
 * every batch (190-594 chunks of a checkpoint of 330,000 members instead of 87-100). The
 * thread's answers come back through ck_async. */
static void ckpt_pump(daemon_t *d, size_t budget)
{
    if (d->ck_phase != CK_WRITING || d->failed)
        return;
    size_t max = (size_t)d->cfg->checkpoint_chunk;
    while (!ckpt_filled(d) && budget > 0) {
        batch *f = ckpt_fill_buf(d);
        if (f == NULL)
            break;
        size_t k = max - f->snaps_n;
        if (k > budget)
            k = budget;
        if (ckpt_fill(d, f, k) != 0) {
            fatal(d, 71, "out of memory writing a checkpoint");
            return;
        }
        budget -= k;
        if (f->snaps_n >= max)
            ckpt_send_fill(d);
    }
    bool filled = ckpt_filled(d);
    if (filled && d->ck_chunks == 0)
        ckpt_fill_buf(d); /* nothing to write: an empty chunk opens the transaction */
    if (d->ck_fill_i >= 0 && filled && (d->ck_buf[d->ck_fill_i]->snaps_n > 0 || d->ck_chunks == 0))
        ckpt_send_fill(d);
    if (filled && d->ck_fill_i < 0 && d->ck_chunks > 0 && d->committed_seq >= d->ck_seq) {
        ck_push(d, (ckjob){.kind = CKJ_COMMIT,
                           .full = d->ck_this_full,
                           .buf = -1,
                           .seq = d->ck_seq,
                           .gen = d->ck_gen});
        d->ck_phase = CK_COMMITTING;
    }
}

/* The checkpoint being written failed (the thread logged why): the members it took are no
 * longer marked changed, so the next one writes everything. */
static void ckpt_failed(daemon_t *d, int rc)
{
    lt_log(LT_WARN, "checkpoint failed; the next one writes every member",
           "checkpoint_seq=%llu error=\"%s\"", (unsigned long long)d->ck_seq, ledger_strerror(rc));
    metrics_inc(&d->m.checkpoint_failures, 1);
    d->ck_full = true;
    if (d->ck_fill_i >= 0)
        d->ck_fill_i = -1; /* its records are dropped with the rest */
    d->ck_gen++;
    d->ck_phase = CK_IDLE;
}

/* Drops a checkpoint being written (its state is gone: rebuild_state()). */
static void ckpt_abandon(daemon_t *d)
{
    if (d->ck_phase != CK_WRITING && d->ck_phase != CK_SORTING)
        return;
    d->ck_fill_i = -1;
    d->ck_gen++;
    d->ck_phase = CK_IDLE; /* what it wrote, the next checkpoint's first chunk clears */
}

static void on_ck_async(uv_async_t *h)
{
    daemon_t *d = h->data;
    for (;;) {
        uv_mutex_lock(&d->ck_mu);
        if (d->ck_d_n == 0) {
            uv_mutex_unlock(&d->ck_mu);
            break;
        }
        ckjob j = d->ck_done[d->ck_d_head];
        d->ck_d_head = (d->ck_d_head + 1) % CK_QUEUE;
        d->ck_d_n--;
        uv_mutex_unlock(&d->ck_mu);
        d->ck_inflight--;
        if (j.buf >= 0)
            d->ck_buf_out[j.buf] = false;
        if (j.kind == CKJ_COMMIT && j.rc == 0) {
            d->checkpoint_seq = j.seq;
            d->ck_log_records = (j.full ? 0 : d->ck_log_records) + d->ck_written;
            metrics_inc(&d->m.checkpoints, 1);
            metrics_set(&d->m.checkpoint_seq, d->checkpoint_seq);
            lt_log(LT_DEBUG, "checkpoint committed",
                   "checkpoint_seq=%llu members=%zu chunks=%u full=%d ms=%.1f captured=%zu "
                   "captured_returns=%zu capture_max_ms=%.2f",
                   (unsigned long long)j.seq, d->ck_ord_n, d->ck_chunks, d->ck_this_full,
                   (double)(uv_hrtime() - d->ck_start_ns) / 1e6,
                   d->ck_capd ? d->ck_capd->snaps_n : 0, d->ck_rcaptured,
                   (double)d->ck_cap_max_ns / 1e6);
            if (j.gen == d->ck_gen && d->ck_phase == CK_COMMITTING)
                d->ck_phase = CK_IDLE;
        } else if (j.rc != 0 && j.gen == d->ck_gen) {
            ckpt_failed(d, j.rc);
        }
    }
    if (d->failed)
        return;
    if (d->stopping) {
        final_checkpoint_and_stop(d);
        return;
    }
    if (!d->recovering)
        ckpt_pump_idle(d);
}

/* Test hook (tests/e2e/test_ckpt_kill.c): LOYALTYD_TEST_KILL_AFTER="STEP:N" makes the checkpoint
 * thread SIGKILL the daemon right after the Nth time it completes that step: `write` (a chunk
 * appended durably to DATA_DIR/state/'s log, the checkpoint not complete) or `complete` (the
 * checkpoint's completing commit); or, with `fail`, makes the Nth checkpoint's completion fail
 * as a full disk would. A crash or a failure at a chosen step, where a kill from outside lands at
 * random. Unset (production): no effect. */
typedef enum { KILL_NONE, KILL_WRITE, KILL_COMPLETE, KILL_FAIL } kill_step;
static kill_step g_kill_step; /* set before the checkpoint thread starts, then its own */
static unsigned long g_kill_n;

static void test_kill_parse(void)
{
    static const char *const names[] = {"", "write", "complete", "fail"};
    const char *v = getenv("LOYALTYD_TEST_KILL_AFTER");
    g_kill_step = KILL_NONE;
    if (v == NULL)
        return;
    for (int k = KILL_WRITE; k <= KILL_FAIL; k++) {
        size_t n = strlen(names[k]);
        if (strncmp(v, names[k], n) == 0 && v[n] == ':' &&
            (g_kill_n = strtoul(v + n + 1, NULL, 10)) > 0) {
            g_kill_step = (kill_step)k;
            lt_log(LT_WARN, "test hook armed at a checkpoint step", "step=%s n=%lu", names[k],
                   g_kill_n);
            return;
        }
    }
    lt_log(LT_WARN, "LOYALTYD_TEST_KILL_AFTER ignored (STEP:N, STEP write, complete or fail)",
           "value=\"%s\"", v);
}

/* Returns whether the hook makes this commit fail (`fail`). */
static bool test_kill_check(kill_step step, uint64_t seq)
{
    if (g_kill_step == KILL_NONE || step != g_kill_step || --g_kill_n != 0)
        return false;
    if (step == KILL_FAIL) {
        lt_log(LT_WARN, "test hook: the checkpoint commit fails", "checkpoint_seq=%llu",
               (unsigned long long)seq);
        return true;
    }
    lt_log(LT_WARN, "test hook: SIGKILL after a checkpoint step", "checkpoint_seq=%llu",
           (unsigned long long)seq);
    raise(SIGKILL);
    return false;
}

/* The checkpoint thread: the only writer of DATA_DIR/state/. A checkpoint's first chunk begins
 * it, each chunk is appended in a durable transaction, the commit job completes it; after a
 * failure the rest of that checkpoint's jobs report the failure without writing. */
static void ck_main(void *arg)
{
    daemon_t *d = arg;
    for (;;) {
        uv_mutex_lock(&d->ck_mu);
        while (d->ck_q_n == 0 && !d->ck_stop)
            uv_cond_wait(&d->ck_cv, &d->ck_mu);
        if (d->ck_stop) {
            uv_mutex_unlock(&d->ck_mu);
            break;
        }
        ckjob j = d->ck_q[d->ck_q_head];
        d->ck_q_head = (d->ck_q_head + 1) % CK_QUEUE;
        d->ck_q_n--;
        uv_mutex_unlock(&d->ck_mu);

        /* a job of a checkpoint that failed already (ckstore no longer writing) only says so:
         * its first failure was logged and answered */
        bool tried = j.begin || ckstore_writing(d->cks);
        int rc = tried ? 0 : LEDGER_ERR_OTHER;
        if (tried && j.kind == CKJ_PUT) {
            batch *chunk = d->ck_buf[j.buf];
            if (j.begin) {
                ckstore_abort(d->cks);
                rc = ckstore_begin(d->cks, j.full);
            }
            if (rc == 0) {
                snaps_fix(chunk);
                rc = ckstore_put(d->cks, chunk->snaps, chunk->snaps_n);
                metrics_set(&d->m.checkpoint_unordered, ckstore_unordered(d->cks));
            }
            if (rc == 0)
                (void)test_kill_check(KILL_WRITE, j.seq);
        } else if (tried) {
            uint64_t digest = 0;
            if ((rc = ckstore_entry_digest(d->ledger, j.seq, &digest)) != 0 ||
                (test_kill_check(KILL_FAIL, j.seq) && (rc = LEDGER_ERR_IO) != 0))
                ckstore_abort(d->cks);
            else if ((rc = ckstore_commit(d->cks, j.seq, digest)) == 0)
                (void)test_kill_check(KILL_COMPLETE, j.seq);
        }
        if (rc != 0 && tried)
            lt_log(LT_ERROR, "checkpoint write failed",
                   "checkpoint_seq=%llu error=\"%s\" detail=\"%s\"", (unsigned long long)j.seq,
                   ledger_strerror(rc), ckstore_errmsg(d->cks));
        j.rc = rc;
        uv_mutex_lock(&d->ck_mu);
        LT_ASSERT(d->ck_d_n < CK_QUEUE);
        d->ck_done[(d->ck_d_head + d->ck_d_n++) % CK_QUEUE] = j;
        uv_mutex_unlock(&d->ck_mu);
        uv_async_send(&d->ck_async);
    }
    ckstore_abort(d->cks);
}

/* ------------------------------------------------------------------ commit and publisher threads
 */

/* The dedup index's rounds and steps: index_plan.h. */
#define INDEX_FLUSH_NS(d) ((uint64_t)(d)->cfg->index_flush_ms * 1000000u)

/* Commit thread: what the ledger's writer (which only this thread touches) reports. */
static index_view index_view_of(const daemon_t *d)
{
    return (index_view){ledger_index_flushing(d->ledger), ledger_unindexed(d->ledger),
                        d->index_failing, INDEX_FLUSH_NS(d)};
}

/* Commit thread: once a round has ended, the next round's clock starts with its first id. */
static void index_note(daemon_t *d, uint64_t *due)
{
    uint64_t s = ledger_indexed_seq(d->ledger);
    if (s > d->indexed_seq) {
        d->indexed_seq = s;
        *due = 0;
    }
}

/* Commit thread, nothing to commit and quiet (index_step_now()): a step of the round in a
 * transaction of its own (starting one if due). It does not count as committing: the loop
 * thread seals its open batch meanwhile (maybe_seal()), which is committed right after the
 * step. Marked committing, back-to-back steps kept the loop from sealing until the round ended:
 * ack p99 13-40 ms instead of 4-8. A failure leaves the ids in the ledger's memory and the step
 * is tried again index_flush_ms later. */
static void index_step(daemon_t *d, uint64_t *due)
{
    int rc = ledger_index_flush(d->ledger, INDEX_FLUSH_STEP);
    if (rc != 0) {
        metrics_inc(&d->m.index_flush_failures, 1);
        if (!d->index_failing)
            lt_log(LT_ERROR, "dedup index flush failed; its event ids stay in memory",
                   "error=\"%s\" detail=\"%s\" ids=%zu", ledger_strerror(rc),
                   ledger_errmsg(d->ledger), ledger_unindexed(d->ledger));
        d->index_failing = true;
        *due = uv_hrtime() + INDEX_FLUSH_NS(d);
        return;
    }
    if (d->index_failing)
        lt_log(LT_INFO, "dedup index flush works again", NULL);
    d->index_failing = false;
    index_note(d, due);
}

static void commit_main(void *arg)
{
    daemon_t *d = arg;
    uint64_t flush_due = 0;   /* when the next round of the index starts (0: no id waits) */
    uint64_t last_commit = 0; /* when the last commit ended */
    for (;;) {
        uv_mutex_lock(&d->mu);
        while (d->commit_head == NULL && !d->threads_stop) {
            uint64_t now = uv_hrtime(), until;
            index_view v = index_view_of(d);
            if (index_step_now(&v, now, last_commit, &flush_due, &until))
                break;
            if (until == 0)
                uv_cond_wait(&d->commit_cv, &d->mu);
            else if (now < until)
                (void)uv_cond_timedwait(&d->commit_cv, &d->mu, until - now);
        }
        if (d->commit_head == NULL && !d->threads_stop) { /* idle: a step of the index */
            uv_mutex_unlock(&d->mu);
            index_step(d, &flush_due);
            continue;
        }
        if (d->commit_head == NULL) {
            uv_mutex_unlock(&d->mu);
            return; /* ledger_close() flushes what is left */
        }
        batch *b = d->commit_head;
        d->commit_head = b->next_commit;
        if (d->commit_head == NULL)
            d->commit_tail = NULL;
        d->committing = true;
        uv_mutex_unlock(&d->mu);

        for (uint32_t i = 0; i < b->n; i++)
            b->recs[i].bytes = b->bytes + b->offs[i];
        for (uint32_t i = 0; i < b->rejs_n; i++)
            b->rejs[i].bytes = b->rej_bytes + b->rej_off[i];
        int rc = 0;
        if (b->n > 0 || b->rejs_n > 0) {
            uint64_t t0 = uv_hrtime();
            rc = ledger_commit_all(d->ledger, b->recs, b->n, NULL, 0, 0, b->rejs, b->rejs_n,
                                   (uint64_t)d->cfg->rejects_max);
            last_commit = uv_hrtime();
            metrics_observe(&d->m.commit_seconds, (double)(last_commit - t0) / 1e9);
            metrics_observe(&d->m.commit_batch, b->n);
            if (rc != 0) {
                metrics_inc(&d->m.commit_failures, 1);
                lt_log(LT_ERROR, "commit failed", "error=\"%s\" detail=\"%s\"", ledger_strerror(rc),
                       ledger_errmsg(d->ledger));
            }
        }

        uv_mutex_lock(&d->mu);
        b->commit_rc = rc;
        b->state = B_COMMITTED;
        d->committing = false;
        if (rc == 0) {
            if (b->n > 0)
                d->pub_committed_seq = b->recs[b->n - 1].seq;
            b->next_pub = NULL;
            if (d->pub_tail != NULL)
                d->pub_tail->next_pub = b;
            else
                d->pub_head = b;
            d->pub_tail = b;
            uv_cond_signal(&d->pub_cv);
        } else {
            b->published = true; /* nothing to publish */
        }
        uv_mutex_unlock(&d->mu);
        uv_async_send(&d->async);

        /* the batch may have carried a round's last slice; the next ones carry a new round */
        if (rc == 0)
            index_note(d, &flush_due);
        index_view v = index_view_of(d);
        if (!v.flushing && index_due(&v, uv_hrtime(), &flush_due))
            ledger_index_start(d->ledger);
    }
}

static void pub_main(void *arg)
{
    daemon_t *d = arg;
    uint64_t last_hb_seq = 0;
    for (;;) {
        uv_mutex_lock(&d->mu);
        if (d->pub_head == NULL && !d->threads_stop) {
            uint64_t timeout_ns = (uint64_t)d->cfg->heartbeat_ms * 1000000u;
            if (uv_cond_timedwait(&d->pub_cv, &d->mu, timeout_ns) == UV_ETIMEDOUT &&
                d->pub_head == NULL) {
                last_hb_seq = d->pub_committed_seq;
                uv_mutex_unlock(&d->mu);
                pub_heartbeat(d->pub, last_hb_seq, now_s());
                metrics_set(&d->m.subscribers, pub_subscribers(d->pub));
                continue;
            }
        }
        if (d->pub_head == NULL) {
            bool stop = d->threads_stop;
            uv_mutex_unlock(&d->mu);
            if (stop)
                return;
            continue;
        }
        batch *b = d->pub_head;
        d->pub_head = b->next_pub;
        if (d->pub_head == NULL)
            d->pub_tail = NULL;
        uv_mutex_unlock(&d->mu);

        for (uint32_t i = 0; i < b->pubs_n; i++) {
            const pubmsg *m = &b->pubs[i];
            pub_send(d->pub, (pub_topic)m->topic, b->pub_bytes + m->off, m->len);
        }

        pub_stats ps;
        pub_get_stats(d->pub, &ps);
        metrics_set(&d->m.pub_messages, ps.messages);
        metrics_set(&d->m.pub_dropped, ps.dropped);
        metrics_set(&d->m.subscribers, pub_subscribers(d->pub));
        uv_mutex_lock(&d->mu);
        b->published = true;
        uv_mutex_unlock(&d->mu);
        uv_async_send(&d->async);
    }
}

/* ------------------------------------------------------------------ replies */

static void send_frames(daemon_t *d, void *sock, const req_t *r, const void *payload, size_t n)
{
    int rc = zmq_send(sock, r->ident, r->ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0 && r->delimiter)
        rc = zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0)
        rc = zmq_send(sock, payload, n, ZMQ_DONTWAIT);
    if (rc < 0)
        lt_log(LT_WARN, "reply not sent", "error=\"%s\"", zmq_strerror(zmq_errno()));
    (void)d;
}

/* Sends one AckBatch for a request from the acks in b (or a whole-message refusal). */
static void send_acks(daemon_t *d, const req_t *r, const batch *b, int reason, const char *msg)
{
    uint32_t n = b != NULL ? r->ack_n : 0;
    LT_ASSERT(n <= LT_ARRAY_LEN(d->acks_out));
    for (uint32_t i = 0; i < n; i++) {
        const ack_t *a = &b->acks[r->ack_first + i];
        ingest_ack *p = &d->acks_out[i];
        p->node_id = a->node;
        p->event_id = a->eid;
        p->status = a->status;
        p->reason = a->reason;
        p->message = NULL;
        if (a->status == LOYALTY__STATUS__REJECTED)
            p->message = a->msg_off != UINT32_MAX ? b->msgs + a->msg_off : lt_reason_msg(a->reason);
        p->seq = a->seq;
        p->points_earned = a->earned;
        p->points_redeemed = a->redeemed;
        p->balance = a->balance;
    }
    size_t len = 0;
    int rc = ingest_ack_batch_encode(r->has_batch_id, r->batch_id, d->acks_out, n, reason, msg,
                                     d->reply, sizeof d->reply, &len);
    LT_ASSERT(rc == 0); /* the reply buffer holds the largest AckBatch */
    send_frames(d, d->ingest_sock, r, d->reply, len);
    metrics_observe(&d->m.ack_seconds, (double)(uv_hrtime() - r->t0_ns) / 1e9);
}

/* A failure on the loop thread that leaves the in-memory state out of step with what will be
 * committed: stop taking events, never checkpoint again, and exit; the next start rebuilds
 * the state from the ledger. Nothing unacknowledged is lost: tills resend. */
static void fatal(daemon_t *d, int code, const char *why)
{
    if (d->failed)
        return;
    lt_log(LT_ERROR, "stopping after an internal failure", "code=%d why=\"%s\"", code, why);
    d->failed = true;
    d->exit_code = code;
    zwatch_pause(&d->ingest_w);
    uv_timer_stop(&d->ckpt_timer);
    uv_stop(&d->loop);
}

/* For returns (R18) of a sale in a batch not acknowledged yet: its encoded entry in the batch
 * (a batch is recycled only after its ack, when its ids have left pending). */
static int pending_sale(void *ctx, lt_event_id id, const uint8_t **bytes, size_t *len,
                        uint64_t *seq)
{
    daemon_t *d = ctx;
    idmap_slot *p = idmap_get(&d->pending, id.node_id, id.event_id);
    if (p == NULL)
        return -1;
    for (size_t i = 0; i < d->batches_n; i++) {
        batch *b = &d->batches[i];
        /* only the loop thread writes a batch, and only while OPEN: reading here is safe */
        if (b->state == B_FREE || b->n == 0 || b->recs[0].seq > p->v1 ||
            b->recs[b->n - 1].seq < p->v1)
            continue;
        uint32_t k = (uint32_t)(p->v1 - b->recs[0].seq);
        LT_ASSERT(b->recs[k].seq == p->v1);
        *bytes = b->bytes + b->offs[k];
        *len = b->recs[k].len;
        *seq = p->v1;
        return 0;
    }
    return -1; /* (none: the ledger has it then) */
}

static void view_init(daemon_t *d)
{
    daemon_lookup_view(&d->lookup, d->ledger, d->state, &d->view);
    d->lookup.pending = pending_sale;
    d->lookup.pending_ctx = d;
}

/* ------------------------------------------------------------------ the event path */

static batch *open_batch(daemon_t *d)
{
    if (d->open != NULL)
        return d->open;
    uv_mutex_lock(&d->mu);
    batch *found = NULL;
    for (size_t i = 0; i < d->batches_n; i++) {
        if (d->batches[i].state == B_FREE) {
            found = &d->batches[i];
            break;
        }
    }
    if (found != NULL) {
        batch_reset(found);
        found->state = B_OPEN;
    }
    uv_mutex_unlock(&d->mu);
    d->open = found;
    return found;
}

static void seal(daemon_t *d)
{
    batch *b = d->open;
    if (b == NULL || d->failed || d->recovering)
        return;
    d->open = NULL;
    uv_mutex_lock(&d->mu);
    b->state = B_QUEUED;
    b->order = ++d->seal_order;
    b->next_commit = NULL;
    if (d->commit_tail != NULL)
        d->commit_tail->next_commit = b;
    else
        d->commit_head = b;
    d->commit_tail = b;
    uv_cond_signal(&d->commit_cv);
    uv_mutex_unlock(&d->mu);
    if (b->n == 0)
        return; /* duplicates, rejections: no checkpoint share; whole chunks are for an idle
                 * loop (ckpt_pump_idle()) */
    d->last_seal_ns = uv_hrtime();
    if (d->ck_phase == CK_WRITING) /* after the hand-over */
        ckpt_pump(d, ckpt_seal_share(d, b->n, d->last_seal_ns));
}

/* Seals the open batch when the commit thread is idle (group commit: whatever arrived during the
 * previous fsync goes in one transaction) or when it is full. */
static void maybe_seal(daemon_t *d)
{
    batch *b = d->open;
    if (b == NULL || (b->n == 0 && b->reqs_n == 0 && b->rejs_n == 0))
        return;
    uv_mutex_lock(&d->mu);
    bool idle = d->commit_head == NULL && !d->committing;
    uv_mutex_unlock(&d->mu);
    if (idle || batch_full(d, b))
        seal(d);
}

static uint32_t add_msg(batch *b, const char *msg)
{
    size_t n = strnlen(msg, MSG_BYTES_MAX - 1);
    if (b->msgs_len + n + 1 > b->msgs_cap) {
        size_t ncap = b->msgs_cap * 2;
        char *nm = realloc(b->msgs, ncap);
        if (nm == NULL)
            return UINT32_MAX;
        b->msgs = nm;
        b->msgs_cap = ncap;
    }
    uint32_t off = (uint32_t)b->msgs_len;
    memcpy(b->msgs + off, msg, n);
    b->msgs[off + n] = '\0';
    b->msgs_len += n + 1;
    return off;
}

#define DEAD_LETTER_RAW_MAX (64 * 1024)

/* Keeps a rejected event (raw: its loyalty.Event bytes as the till sent them) or a refused
 * message (raw: its bytes) in the dead-letter store, written with the open batch's commit. Best
 * effort: with no open batch or no memory it is only counted. */
static void dead_letter(daemon_t *d, int reason, const char *msg, const lt_event_id *id,
                        const ingest_event_span *event, const uint8_t *raw, size_t raw_len,
                        const req_t *r)
{
    batch *b = d->open;
    /* transient refusals are not the sender's fault and would only add writes while the daemon
     * is stopping or cannot write: not kept */
    if (d->cfg->rejects_max == 0 || reason == LT_R_SHUTTING_DOWN ||
        reason == LT_R_STORAGE_UNAVAILABLE || reason == LT_R_OVERLOADED ||
        reason == LT_R_INTERNAL_ERROR)
        return;
    if (b == NULL) {
        metrics_inc(&d->m.rejects_unkept, 1);
        return;
    }
    Loyalty__Rejected rj = LOYALTY__REJECTED__INIT;
    Loyalty__EventId pid = LOYALTY__EVENT_ID__INIT;
    rj.has_at = 1, rj.at = d->lim.now;
    rj.has_reason = 1, rj.reason = (Loyalty__Reason)reason;
    rj.message = (char *)(msg != NULL && msg[0] ? msg : lt_reason_msg(reason));
    if (id != NULL) {
        pid.has_node_id = pid.has_event_id = 1;
        pid.node_id = id->node_id;
        pid.event_id = id->event_id;
        rj.id = &pid;
    }
    if (event != NULL) {
        rj.has_raw_bytes = 1, rj.raw_bytes = (uint32_t)event->n;
        if (event->n <= DEAD_LETTER_RAW_MAX)
            rj.has_raw = 1, rj.raw.data = (uint8_t *)event->p, rj.raw.len = event->n;
    } else if (raw != NULL) {
        rj.has_whole_message = 1, rj.whole_message = 1;
        rj.has_raw_bytes = 1, rj.raw_bytes = (uint32_t)raw_len;
        rj.has_raw = 1, rj.raw.data = (uint8_t *)raw;
        rj.raw.len = raw_len < DEAD_LETTER_RAW_MAX ? raw_len : DEAD_LETTER_RAW_MAX;
    }
    if (r != NULL && r->has_batch_id)
        rj.has_batch_id = 1, rj.batch_id = r->batch_id;
    size_t need = loyalty__rejected__get_packed_size(&rj);
    if (b->rejs_n == b->rejs_cap) {
        uint32_t ncap = b->rejs_cap ? b->rejs_cap * 2 : 256;
        ledger_blob *nr = realloc(b->rejs, ncap * sizeof *nr);
        if (nr != NULL)
            b->rejs = nr;
        size_t *no = nr != NULL ? realloc(b->rej_off, ncap * sizeof *no) : NULL;
        if (no == NULL) {
            metrics_inc(&d->m.rejects_unkept, 1);
            return;
        }
        b->rej_off = no;
        b->rejs_cap = ncap;
    }
    if (b->rej_cap == 0) {
        if ((b->rej_bytes = malloc(64 * 1024)) == NULL) {
            metrics_inc(&d->m.rejects_unkept, 1);
            return;
        }
        b->rej_cap = 64 * 1024;
    }
    if (grow_bytes(&b->rej_bytes, &b->rej_cap, b->rej_len, need) != 0) {
        metrics_inc(&d->m.rejects_unkept, 1);
        return;
    }
    loyalty__rejected__pack(&rj, b->rej_bytes + b->rej_len);
    b->rej_off[b->rejs_n] = b->rej_len;
    b->rejs[b->rejs_n].len = need;
    b->rejs_n++;
    b->rej_len += need;
}

static void reject(daemon_t *d, batch *b, ack_t *a, int reason, const char *msg)
{
    a->status = LOYALTY__STATUS__REJECTED;
    a->reason = (uint8_t)reason;
    a->msg_off = msg != NULL && msg[0] != '\0' ? add_msg(b, msg) : UINT32_MAX;
    LT_ASSERT(reason > 0 && reason < LT_R__COUNT);
    d->st.rejected++;
    d->st.by_reason[reason]++;
    metrics_inc(&d->m.events[a->kind < METRICS_KINDS ? a->kind : 0][METRIC_REJECTED], 1);
    metrics_inc(&d->m.rejects[reason], 1);
    lt_event_id id = {a->node, a->eid};
    dead_letter(d, reason, msg, &id, d->cur_event, NULL, 0, d->cur_req);
    if (lt_log_enabled(LT_DEBUG))
        lt_log(LT_DEBUG, "event rejected", "node=%llu id=%llu reason=%s detail=\"%s\"",
               (unsigned long long)a->node, (unsigned long long)a->eid, lt_reason_name(reason),
               msg != NULL ? msg : "");
}

/* Looks for an earlier application of this event id (R29). Returns 1 with *seq and *digest if
 * found, 0 if new, -1 on a ledger read error. *pending tells whether the original is still
 * waiting for its commit. */
static int find_duplicate(daemon_t *d, lt_event_id id, uint64_t *seq, uint64_t *digest,
                          bool *pending)
{
    *pending = false;
    idmap_slot *hw = idmap_get(&d->nodes, id.node_id, 0);
    if (hw == NULL || id.event_id > hw->v1)
        return 0; /* above this till's high-water mark: certainly new */
    idmap_slot *p = idmap_get(&d->pending, id.node_id, id.event_id);
    if (p != NULL) {
        *seq = p->v1;
        *digest = p->v2;
        *pending = true; /* its batch is not acknowledged yet (ids leave pending at the ack) */
        return 1;
    }
    /* acknowledged: in the ledger's memory until its round of the index, then in the index */
    int rc = ledger_find_event(d->ledger, id, seq);
    if (rc == LEDGER_ERR_NOT_FOUND)
        return 0;
    if (rc != 0)
        return -1;
    size_t len;
    if (ledger_get(d->ledger, *seq, d->enc, sizeof d->enc, &len) != 0 ||
        entry_decode(d->enc, len, &d->entry) != 0)
        return -1;
    *digest = d->entry.digest;
    return 1;
}

/* snprintf(dst, cap, "%s", src) without the format machinery: at most cap - 1 bytes. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    LT_ASSERT(cap > 0);
    size_t n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static const char *tier_name(daemon_t *d, const char *member_id)
{
    const lt_member *m = state_member(d->state, member_id);
    if (m == NULL || m->tier[0] == '\0')
        return rules_tier_base(d->rules);
    return m->tier;
}

/* Renders what subscribers get for entry e (encoded as enc[0..len)) into the batch: the same
 * pub_render() catch-up uses, so live and replayed messages are identical (R28). */
static int add_publications(batch *b, const lt_entry *e, const uint8_t *enc, size_t len)
{
    size_t need = len + PUB_PARTS_MAX * PUB_PART_BYTES_MAX;
    if (grow_bytes(&b->pub_bytes, &b->pub_cap, b->pub_len, need) != 0)
        return -1;
    if (b->pubs_n + PUB_PARTS_MAX > b->pubs_cap) {
        uint32_t ncap = b->pubs_cap * 2;
        pubmsg *np = realloc(b->pubs, ncap * sizeof *np);
        if (np == NULL)
            return -1;
        b->pubs = np;
        b->pubs_cap = ncap;
    }
    pub_part parts[PUB_PARTS_MAX];
    int n = pub_render(e, enc, len, b->pub_bytes + b->pub_len, need, parts);
    LT_ASSERT(n >= 0);
    for (int i = 0; i < n; i++) {
        pubmsg *m = &b->pubs[b->pubs_n++];
        m->topic = (uint8_t)parts[i].topic;
        m->off = b->pub_len + parts[i].off;
        m->len = parts[i].len;
    }
    b->pub_len += n > 0 ? parts[n - 1].off + parts[n - 1].len : 0;
    return 0;
}

/* Makes room for k more records in b (records per event vary: due entries come with it). */
static int batch_reserve(batch *b, uint32_t k)
{
    if (b->n + k <= b->cap)
        return 0;
    uint32_t ncap = b->cap * 2 > b->n + k ? b->cap * 2 : b->n + k;
    ledger_record *nr = realloc(b->recs, ncap * sizeof *nr);
    if (nr == NULL)
        return -1;
    b->recs = nr;
    size_t *no = realloc(b->offs, ncap * sizeof *no);
    if (no == NULL)
        return -1;
    b->offs = no;
    b->cap = ncap;
    return 0;
}

/* Gives entry e the next sequence, stamps its tiers, applies it to the state and appends it to
 * batch b with its publications: the one path every entry takes, an event's or the daemon's
 * own (expiry, period ends, notices). Returns 0; or -1 if the state refused it (a rating bug:
 * logged; the daemon stops if the state was half-changed) or memory ran out (the daemon
 * stops). */
static int record_entry(daemon_t *d, batch *b, lt_entry *e)
{
    e->seq = d->next_seq;
    /* record every posting's tier before and after, so that the entry alone renders its
     * publications (catch-up reads them from the ledger). Stamped before applying: live state
     * and replay apply the very same entry. */
    for (uint32_t i = 0; i < e->postings_n; i++) {
        lt_posting *po = &e->postings[i];
        copy_str(po->tier_before, sizeof po->tier_before, tier_name(d, po->member_id));
        if (po->tier_after[0] == '\0')
            memcpy(po->tier_after, po->tier_before, sizeof po->tier_after);
    }
    char err[256];
    if (state_apply(d->state, e, err, sizeof err) != 0) {
        lt_log(LT_ERROR, "entry refused by state", "seq=%llu kind=%d error=\"%s\"",
               (unsigned long long)e->seq, (int)e->kind, err);
        if (e->postings_n > 1)
            fatal(d, 70, "state refused a later posting: state half-changed");
        return -1;
    }
    size_t len = entry_encode(e, d->enc, sizeof d->enc);
    LT_ASSERT(len > 0);
    if (batch_reserve(b, 1) != 0 || add_publications(b, e, d->enc, len) != 0 ||
        grow_bytes(&b->bytes, &b->bytes_cap, b->bytes_len, len) != 0) {
        fatal(d, 71, "out of memory for a batch");
        return -1;
    }
    memcpy(b->bytes + b->bytes_len, d->enc, len);
    ledger_record *r = &b->recs[b->n];
    r->seq = e->seq;
    r->id = e->id;
    r->len = len;
    r->bytes = NULL; /* fixed up at commit: bytes may move while the batch fills */
    b->offs[b->n] = b->bytes_len;
    b->bytes_len += len;
    b->n++;
    d->next_seq++;
    if (e->id.node_id == 0 && e->id.event_id == 0)
        return 0; /* the daemon's own entry: not an event, not deduplicated */
    if (idmap_put(&d->pending, e->id.node_id, e->id.event_id, e->seq, e->digest) != 0 ||
        idmap_put_max(&d->nodes, e->id.node_id, 0, e->id.event_id) != 0) {
        fatal(d, 71, "out of memory for the dedup maps"); /* or a resend would apply twice */
        return -1;
    }
    return 0;
}

/* Writes what fell due for a member by time t (rules_due(): expiry R19-R20, the end of a tier
 * period R24, notices R21/R28), before and after its events and in sweeps. Exactly once: the
 * entries set markers in the member's state, so asking again for the same t finds nothing.
 * Returns how many entries were written, or -1 if the daemon must stop. */
static int apply_due(daemon_t *d, batch *b, const char *member_id, int64_t t, int32_t off_min)
{
    static lt_entry due[RULES_DUE_MAX];
    const lt_member *m = state_member(d->state, member_id);
    if (m == NULL || m->status == LT_MEMBER_CLOSED)
        return 0;
    int n = rules_due(d->rules, m, t, off_min, due);
    for (int i = 0; i < n; i++) {
        if (record_entry(d, b, &due[i]) != 0)
            return -1;
    }
    d->due_written += (uint64_t)n;
    if (n > 0)
        metrics_inc(&d->m.due_entries, (uint64_t)n);
    return n;
}

/* Rates, applies and records one event. Returns true if the request must wait for a commit.
 * user_id is the connection's ZAP User-Id (CURVE), NULL without CURVE. */
static bool process_event(daemon_t *d, batch *b, const ingest_event_span *pe, const dec_event *dv,
                          const char *user_id, ack_t *a)
{
    char msg[MSG_BYTES_MAX];
    memset(a, 0, sizeof *a);
    a->msg_off = UINT32_MAX;
    d->cur_event = pe;
    a->kind = (uint8_t)dv->ev.kind;
    a->node = pe->node_id;
    a->eid = pe->event_id;
    int rc = dv->rc;
    if (rc == LT_R_TIMESTAMP_OUT_OF_RANGE) {
        /* a resend of an event applied long ago is still a DUPLICATE (R29), however late */
        ingest_limits any = {d->lim.now, INT64_MAX / 4, INT64_MAX / 4};
        char msg2[MSG_BYTES_MAX];
        uint64_t seq = 0, orig = 0;
        bool pend;
        int again = ingest_batch_event(pe, &any, &d->ev, msg2, sizeof msg2);
        a->kind = (uint8_t)d->ev.kind; /* counted by the event as decoded again */
        if (again == LT_R_NONE && find_duplicate(d, d->ev.id, &seq, &orig, &pend) == 1 &&
            orig == ingest_event_digest_ev(&d->ev)) {
            a->status = LOYALTY__STATUS__DUPLICATE;
            a->seq = seq;
            d->st.duplicate++;
            metrics_inc(&d->m.events[d->ev.kind][METRIC_DUPLICATE], 1);
            return pend;
        }
    }
    if (rc != LT_R_NONE) {
        reject(d, b, a, rc, dv->msg);
        return false;
    }
    const lt_event *ev = &dv->ev;
    if (d->auth != NULL && !auth_node_allowed(user_id, ev->id.node_id)) {
        snprintf(msg, sizeof msg, "this till's key may not submit events for node %llu",
                 (unsigned long long)ev->id.node_id);
        reject(d, b, a, LT_R_NODE_NOT_ALLOWED, msg);
        return false;
    }
    uint64_t digest = dv->digest;
    uint64_t seq = 0, orig_digest = 0;
    bool pending;
    int dup = find_duplicate(d, ev->id, &seq, &orig_digest, &pending);
    if (dup < 0) {
        reject(d, b, a, LT_R_INTERNAL_ERROR, "ledger read failed");
        return false;
    }
    if (dup == 1) {
        if (orig_digest != 0 && digest != 0 && orig_digest != digest) {
            snprintf(msg, sizeof msg, "event id was applied at seq %llu with other content",
                     (unsigned long long)seq);
            reject(d, b, a, LT_R_CONFLICT, msg);
            return pending;
        }
        a->status = LOYALTY__STATUS__DUPLICATE;
        a->seq = seq;
        d->st.duplicate++;
        metrics_inc(&d->m.events[ev->kind][METRIC_DUPLICATE], 1);
        return pending;
    }
    /* R20: what fell due for this member by the event's time is written first (expiry, the
     * end of a tier period, notices), so that the event is rated against it */
    const char *mid =
        ev->member_id[0] != '\0' ? ev->member_id : state_card_owner(d->state, ev->card);
    if (mid != NULL && apply_due(d, b, mid, ev->occurred_at, ev->utc_offset_min) < 0)
        return false;
    rc = rules_rate(d->rules, &d->view, ev, &d->entry);
    if (rc != LT_R_NONE) {
        reject(d, b, a, rc, NULL);
        /* the rejection rests on state that may not be durable yet (MEMBER_EXISTS,
         * INSUFFICIENT_POINTS, ...): answer it only after that state is committed */
        return d->committed_seq + 1 < d->next_seq;
    }
    lt_entry *e = &d->entry;
    e->digest = digest;
    int rr = record_entry(d, b, e);
    if (rr != 0) {
        reject(d, b, a, LT_R_INTERNAL_ERROR, "rating produced an inconsistent entry");
        return false;
    }
    /* R20: a late sale whose points' expiry has passed by now is credited and expired in
     * one step; likewise anything else now due for this member */
    if (apply_due(d, b, e->member_id, d->lim.now, e->utc_offset_min) < 0)
        return false;
    a->status = LOYALTY__STATUS__ACCEPTED;
    a->seq = e->seq;
    a->earned = e->points_earned;
    a->redeemed = e->points_redeemed;
    a->balance = e->postings_n > 0 ? e->postings[0].balance_after : 0;
    return true; /* counted as accepted when acknowledged, once durable */
}

static void refuse_message(daemon_t *d, const req_t *r, int reason, const char *msg,
                           const uint8_t *data, size_t len)
{
    dead_letter(d, reason, msg, NULL, NULL, data, len, r);
    d->st.by_reason[reason]++;
    metrics_inc(&d->m.rejects[reason], 1);
    metrics_inc(&d->m.messages_refused, 1);
    send_acks(d, r, NULL, reason, msg);
    zwatch_after_send(&d->ingest_w);
}

/* Memory hints for the events after events[i]: the member index slot, record and lots of
 * the next few members (1,000,000 members do not fit in the cache; each is a miss, and each
 * needs the one before). A hint only: what is prefetched changes nothing. */
static void prefetch_ahead(const daemon_t *d, const ingest_batch *eb, size_t i)
{
    for (unsigned k = 1; k <= STATE_PREFETCH_AHEAD && i + k < eb->events_n; k++) {
        const ingest_event_span *e = &eb->events[i + k];
        state_prefetch(d->state, e->member_id, e->member_id_len, k);
    }
}

/* ------------------------------------------------------------------ the decode thread */

static void decode_one(const ingest_event_span *pe, const ingest_limits *lim, dec_event *out)
{
    out->rc = ingest_batch_event(pe, lim, &out->ev, out->msg, sizeof out->msg);
    out->digest = out->rc == LT_R_NONE ? ingest_event_digest_ev(&out->ev) : 0;
}

/* Decodes the messages the loop reads ahead (dec_q), in order, while the loop handles the one
 * before: decoding is a fifth of the loop thread's work per event (docs/performance.md), and it
 * needs nothing but the message's bytes and the limits. */
static void dec_main(void *arg)
{
    daemon_t *d = arg;
    /* Woken once per message, it would preempt the loop thread on the loop's own core while the
     * other core idles; under SCHED_BATCH it waits for a free core or the loop's time slice, as
     * ZeroMQ's I/O thread does (io_thread_batch) */
    struct sched_param sp = {0};
    if (sched_getscheduler(0) == SCHED_OTHER)
        (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    uv_mutex_lock(&d->dec_mu);
    for (;;) {
        while ((d->dec_q_n == 0 || d->dec_hold) && !d->dec_stop)
            uv_cond_wait(&d->dec_cv, &d->dec_mu);
        if (d->dec_q_n == 0)
            break; /* stopping, and nothing handed over is left undone */
        inmsg *m = d->dec_q[d->dec_q_head];
        d->dec_q_head = (d->dec_q_head + 1) % 2;
        d->dec_q_n--;
        d->dec_cur = m;
        uv_mutex_unlock(&d->dec_mu);
        for (;;) {
            size_t i = atomic_fetch_add_explicit(&m->dec_claim, 1, memory_order_relaxed);
            if (i >= m->eb.events_n)
                break; /* done, or the loop took the rest */
            decode_one(&m->eb.events[i], &m->lim, &m->dec[i]);
            atomic_store_explicit(&m->dec_upto, i + 1, memory_order_release);
        }
        uv_mutex_lock(&d->dec_mu);
        d->dec_cur = NULL;
        m->dec_busy = false;
        uv_cond_signal(&d->dec_done_cv);
    }
    uv_mutex_unlock(&d->dec_mu);
}

/* Takes the events of m the decode thread has not claimed: the loop decodes them itself. */
static void decode_take_rest(inmsg *m)
{
    atomic_store_explicit(&m->dec_claim, m->eb.events_n, memory_order_relaxed);
}

/* Before m's slot takes a new message: takes its last one off the decode thread's queue if the
 * thread has not started on it, or else waits until the thread is done with it (it claims no
 * more events of it: at most the one it decodes is left). */
static void decode_release(daemon_t *d, inmsg *m)
{
    if (!m->dec_sent)
        return;
    decode_take_rest(m);
    uv_mutex_lock(&d->dec_mu);
    if (m->dec_busy && d->dec_cur != m) {
        /* queued, at the head or behind the other slot's message: a turn of on_ingest() that
         * ends on its budget handles m's slot without reading ahead, and the next turn reads
         * into that slot again while the other one still waits before it */
        unsigned k = 0;
        while (k < d->dec_q_n && d->dec_q[(d->dec_q_head + k) % 2] != m)
            k++;
        LT_ASSERT(k < d->dec_q_n);
        if (k == 0)
            d->dec_q_head = (d->dec_q_head + 1) % 2;
        d->dec_q_n--; /* the tail (k == 1) just drops off */
        m->dec_busy = false;
    }
    while (m->dec_busy)
        uv_cond_wait(&d->dec_done_cv, &d->dec_mu);
    uv_mutex_unlock(&d->dec_mu);
    m->dec_sent = false;
}

/* Hands message m, just read, to the decode thread if it is worth it: a scanned message of
 * DECODE_AHEAD_MIN events or more. Without memory for its events, m is decoded as it is
 * handled. */
static void decode_ahead(daemon_t *d, inmsg *m)
{
    if (!d->dec_running || m->scan != SCAN_OK || m->eb.events_n < DECODE_AHEAD_MIN ||
        m->eb.events_n > LT_BATCH_EVENTS_MAX)
        return;
    size_t n = m->eb.events_n;
    if (m->dec_cap < n) {
        dec_event *nd = realloc(m->dec, n * sizeof *nd);
        if (nd == NULL)
            return;
        m->dec = nd;
        m->dec_cap = n;
    }
    m->lim = d->lim;
    atomic_store_explicit(&m->dec_claim, 0, memory_order_relaxed);
    atomic_store_explicit(&m->dec_upto, 0, memory_order_relaxed);
    m->dec_sent = true;
    uv_mutex_lock(&d->dec_mu);
    LT_ASSERT(d->dec_q_n < 2);
    m->dec_busy = true;
    d->dec_q[(d->dec_q_head + d->dec_q_n) % 2] = m;
    d->dec_q_n++;
    uv_cond_signal(&d->dec_cv);
    uv_mutex_unlock(&d->dec_mu);
}

/* Event i of message m is about to be handled: its decoding, from the decode thread if it
 * has done it, or else decoded here into d->dec1. (*rest: whether the loop took the rest.) */
static const dec_event *decode_get(daemon_t *d, inmsg *m, size_t i, bool *rest)
{
    if (m->dec_sent) {
        if (i < atomic_load_explicit(&m->dec_upto, memory_order_acquire))
            return &m->dec[i];
        if (!*rest) {
            decode_take_rest(m);
            *rest = true;
        }
    }
    decode_one(&m->eb.events[i], &d->lim, &d->dec1);
    return &d->dec1;
}

/* Starts the decode thread; if it cannot start (logged), dec_running stays false and the loop
 * thread decodes every event itself. */
static void dec_start(daemon_t *d)
{
    /* Test hook: the thread takes nothing off its queue, so every message handed to it is one
     * the loop takes back (the queue full, messages released before the thread started them),
     * whatever the timing. Unset (production): no effect. */
    d->dec_hold = getenv("LOYALTYD_TEST_DECODE_HOLD") != NULL;
    if (d->dec_hold)
        lt_log(LT_WARN, "test hook: the decode thread starts on nothing", NULL);
    if (uv_mutex_init(&d->dec_mu) != 0 || uv_cond_init(&d->dec_cv) != 0 ||
        uv_cond_init(&d->dec_done_cv) != 0 || uv_thread_create(&d->dec_thread, dec_main, d) != 0) {
        lt_log(LT_WARN, "no decode thread: events are decoded on the loop thread", NULL);
        return;
    }
    d->dec_running = true;
}

static void dec_stop(daemon_t *d)
{
    if (!d->dec_running)
        return;
    uv_mutex_lock(&d->dec_mu);
    d->dec_stop = true;
    uv_cond_signal(&d->dec_cv);
    uv_mutex_unlock(&d->dec_mu);
    uv_thread_join(&d->dec_thread);
    d->dec_running = false;
}

/* Memory hints for the first events of a till message read ahead of the one being handled,
 * at one stage of state_prefetch(): one-event messages get the same head start as the events
 * inside a message (prefetch_ahead()). */
static void prefetch_message(const daemon_t *d, const ingest_batch *eb, unsigned stage)
{
    for (size_t k = 0; k < STATE_PREFETCH_AHEAD && k < eb->events_n; k++)
        state_prefetch(d->state, eb->events[k].member_id, eb->events[k].member_id_len, stage);
}

/* Handles till message m; next is the message read ahead of it (scanned), or NULL. */
static void handle_message(daemon_t *d, inmsg *m, const inmsg *next)
{
    char msg[MSG_BYTES_MAX];
    req_t *r = &m->r;
    const uint8_t *data = zmq_msg_data(&m->payload);
    size_t len = zmq_msg_size(&m->payload);
    d->st.messages++;
    metrics_inc(&d->m.messages, 1);
    d->cur_req = r;
    if (m->scan == SCAN_TOO_LARGE) {
        snprintf(msg, sizeof msg, "message of %zu bytes exceeds the limit of %d", len,
                 LT_MESSAGE_BYTES_MAX);
        refuse_message(d, r, LT_R_MESSAGE_TOO_LARGE, msg, data, len);
        return;
    }
    if (m->scan == SCAN_BAD) {
        refuse_message(d, r, LT_R_DECODE_ERROR, "message is not a valid loyalty.EventBatch", data,
                       len);
        return;
    }
    const ingest_batch *eb = &m->eb;
    r->has_batch_id = eb->has_batch_id;
    r->batch_id = eb->batch_id;
    if (eb->events_n > LT_BATCH_EVENTS_MAX) {
        snprintf(msg, sizeof msg, "%zu events in one message, at most %d", eb->events_n,
                 LT_BATCH_EVENTS_MAX);
        refuse_message(d, r, LT_R_BATCH_TOO_LARGE, msg, data, len);
        return;
    }
    if (d->stopping) {
        refuse_message(d, r, LT_R_SHUTTING_DOWN, "daemon is shutting down, resend later", data,
                       len);
        return;
    }
    if (d->refuse_until_ms > uv_now(&d->loop)) {
        refuse_message(d, r, LT_R_STORAGE_UNAVAILABLE, d->refuse_why, data, len);
        return;
    }
    batch *b = d->open;
    LT_ASSERT(b != NULL && b->acks_n + LT_BATCH_EVENTS_MAX <= b->cap);
    size_t msgs_mark = b->msgs_len;
    r->ack_first = b->acks_n;
    r->ack_n = (uint32_t)eb->events_n;
    bool wait = false;
    bool rest = false; /* the loop took the rest of m from the decode thread */
    for (size_t i = 0; i < eb->events_n && !d->failed; i++) {
        prefetch_ahead(d, eb, i);
        const dec_event *dv = decode_get(d, m, i, &rest);
        wait |= process_event(d, b, &eb->events[i], dv, m->uid, &b->acks[b->acks_n + i]);
    }
    if (d->failed)
        return;
    if (next != NULL && next->scan == SCAN_OK) /* its index slots were asked for on reading */
        prefetch_message(d, &next->eb, 2);
    if (wait) {
        b->acks_n += r->ack_n;
        b->reqs[b->reqs_n++] = *r;
    } else {
        /* nothing waits for a commit: answer now and give the space back */
        b->acks_n += r->ack_n;
        send_acks(d, r, b, LT_R_NONE, NULL);
        zwatch_after_send(&d->ingest_w);
        b->acks_n -= r->ack_n;
        b->msgs_len = msgs_mark;
    }
}

/* Reads one multipart message: identity, optional empty delimiter, payload. Returns 1 if one
 * was read, 0 on EAGAIN, -1 if it was malformed (consumed and dropped). */
static int recv_request(void *sock, req_t *r, zmq_msg_t *payload)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return 0;
    }
    size_t ilen = zmq_msg_size(&part);
    r->ident_len = (uint8_t)(ilen <= IDENT_BYTES_MAX ? ilen : IDENT_BYTES_MAX);
    memcpy(r->ident, zmq_msg_data(&part), r->ident_len);
    r->delimiter = false;
    r->has_batch_id = false;
    r->t0_ns = uv_hrtime();
    int frames = 1;
    bool more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    while (more) {
        zmq_msg_close(payload);
        zmq_msg_init(payload);
        if (zmq_msg_recv(payload, sock, 0) < 0)
            return -1;
        more = zmq_msg_more(payload);
        frames++;
        if (frames == 2 && more && zmq_msg_size(payload) == 0)
            r->delimiter = true;
    }
    if (frames < 2 || frames > 3 || (frames == 3 && !r->delimiter))
        return -1;
    return 1;
}

/* Reads the next till message into m and checks it (ingest_batch_scan()). Returns 1 if one was
 * read, 0 if none is waiting; *done counts what was taken off the socket, malformed envelopes
 * (dropped) included. */
static int read_message(daemon_t *d, inmsg *m, size_t *done)
{
    decode_release(d, m);
    for (;;) {
        int rc = recv_request(d->ingest_sock, &m->r, &m->payload);
        if (rc == 0)
            return 0;
        ++*done;
        if (rc > 0)
            break;
        lt_log(LT_WARN, "malformed envelope dropped", NULL);
    }
    size_t len = zmq_msg_size(&m->payload);
    m->uid = d->auth != NULL ? zmq_msg_gets(&m->payload, "User-Id") : NULL;
    if (len > LT_MESSAGE_BYTES_MAX)
        m->scan = SCAN_TOO_LARGE;
    else
        m->scan =
            ingest_batch_scan(zmq_msg_data(&m->payload), len, &m->eb) == 0 ? SCAN_OK : SCAN_BAD;
    return 1;
}

/* Drains the ingest socket, one message read ahead of the one being handled: the decode thread
 * decodes it meanwhile (decode_ahead()), and its first members' index slots and records are on
 * their way from memory. A message read ahead stays held (in_held) only when the loop stops
 * taking messages before handling it: no free batch (handled on resume) or a fatal failure. */
static size_t on_ingest(zwatch *w, size_t budget)
{
    daemon_t *d = w->data;
    size_t done = 0;
    while (!d->failed) {
        batch *b = open_batch(d);
        if (b != NULL && batch_full(d, b)) {
            seal(d);
            b = open_batch(d);
        }
        if (b == NULL) {
            zwatch_pause(w); /* every batch is in the pipeline: backpressure to ZeroMQ */
            metrics_set(&d->m.ingest_paused, 1);
            metrics_inc(&d->m.ingest_pauses, 1);
            break;
        }
        inmsg *cur = &d->in[d->in_cur], *next = &d->in[d->in_cur ^ 1u];
        if (!d->in_held && (done >= budget || read_message(d, cur, &done) == 0))
            break;
        d->in_held = false;
        bool ahead = done < budget && read_message(d, next, &done) == 1;
        if (ahead && next->scan == SCAN_OK) {
            prefetch_message(d, &next->eb, STATE_PREFETCH_AHEAD);
            decode_ahead(d, next);
        }
        handle_message(d, cur, ahead ? next : NULL);
        if (ahead) {
            d->in_cur ^= 1u;
            d->in_held = true;
        }
    }
    if (!d->failed)
        maybe_seal(d);
    return done;
}

/* ------------------------------------------------------------------ sweeps */

#define SWEEP_CHUNK 5000 /* members per loop turn: the loop stays responsive */

static void sweep_step(daemon_t *d);

static void answer_sweep_waiters(daemon_t *d);

static void on_sweep_idle(uv_idle_t *h)
{
    uv_idle_stop(h);
    sweep_step(h->data);
}

static void start_sweep_pass(daemon_t *d)
{
    if (d->sweeping || d->stopping || d->failed || d->recovering)
        return;
    d->sweeping = true;
    d->sweep_pos = 0;
    d->sweep_pass++;
    d->sweep_written0 = d->due_written;
    metrics_set(&d->m.sweep_running, 1);
    metrics_set(&d->m.sweep_position, 0);
    d->sweep_visited = 0;
    uv_idle_start(&d->sweep_idle, on_sweep_idle);
}

static void on_sweep_timer(uv_timer_t *h)
{
    start_sweep_pass(h->data);
}

/* One chunk of a pass: what is due for each member at the daemon's clock goes into the open
 * batch like any entry; a pass interrupted by a crash is simply done again after the restart,
 * and finds only what is still due (the markers are in the state). */
static void sweep_step(daemon_t *d)
{
    if (!d->sweeping || d->stopping || d->failed || d->recovering)
        return;
    for (int i = 0; i < SWEEP_CHUNK; i++) {
        batch *b = open_batch(d);
        if (b != NULL && batch_full(d, b)) {
            seal(d);
            b = open_batch(d);
        }
        if (b == NULL) {
            d->sweep_blocked = true; /* on_async resumes once a batch is free */
            return;
        }
        const lt_member *m = state_member_at(d->state, &d->sweep_pos);
        if (m == NULL) {
            d->sweeping = false;
            d->sweep_done_pass = d->sweep_pass;
            metrics_set(&d->m.sweep_running, 0);
            metrics_inc(&d->m.sweep_passes, 1);
            d->sweep_last_written = d->due_written - d->sweep_written0;
            if (d->sweep_last_written > 0)
                lt_log(LT_INFO, "sweep done", "entries=%llu members=%zu",
                       (unsigned long long)d->sweep_last_written, state_members(d->state));
            maybe_seal(d);
            answer_sweep_waiters(d);
            if (d->sweep_again) {
                d->sweep_again = false;
                start_sweep_pass(d);
            }
            return;
        }
        char id[LT_ID_MAX];
        memcpy(id, m->id, sizeof id); /* m may move once entries apply */
        d->sweep_visited++;
        /* calendar questions in the member's own store time (R3): the offset of its last
         * event, or the configured one for a member without any */
        int32_t off = m->offset_known ? m->utc_offset_min : (int32_t)d->cfg->sweep_utc_offset_min;
        if (apply_due(d, b, id, d->lim.now, off) < 0)
            return;
    }
    metrics_set(&d->m.sweep_position, d->sweep_visited);
    maybe_seal(d);
    uv_idle_start(&d->sweep_idle, on_sweep_idle);
}

/* ------------------------------------------------------------------ queries */

static void send_query_reply(daemon_t *d, const req_t *r, const Loyalty__QueryReply *qr)
{
    size_t n = loyalty__query_reply__get_packed_size(qr);
    uint8_t *buf = n <= sizeof d->reply ? d->reply : malloc(n);
    if (buf == NULL)
        return;
    loyalty__query_reply__pack(qr, buf);
    send_frames(d, d->query_sock, r, buf, n);
    if (buf != d->reply)
        free(buf);
    zwatch_after_send(&d->query_w);
}

static void reply_member(daemon_t *d, const req_t *r, const char *id)
{
    Loyalty__QueryReply qr = LOYALTY__QUERY_REPLY__INIT;
    Loyalty__MemberView mv = LOYALTY__MEMBER_VIEW__INIT;
    const lt_member *m = state_member(d->state, id);
    qr.has_seq = 1;
    qr.seq = d->committed_seq;
    if (m == NULL) {
        qr.has_ok = 1, qr.ok = 0;
        qr.error = "unknown member";
        send_query_reply(d, r, &qr);
        return;
    }
    static const char *const status[] = {"active", "blocked", "closed"};
    Loyalty__Lot lots_pb[256], *lots[256];
    const char *cards[64];
    mv.member_id = (char *)m->id;
    mv.has_balance = 1, mv.balance = state_balance(m);
    mv.tier = (char *)(m->tier[0] ? m->tier : rules_tier_base(d->rules));
    mv.has_qualifying = 1, mv.qualifying = m->qualifying;
    mv.has_lifetime_spend_fen = 1, mv.lifetime_spend_fen = m->lifetime_fen;
    mv.n_lots = m->lots_n < 256 ? m->lots_n : 256;
    for (size_t i = 0; i < mv.n_lots; i++) {
        loyalty__lot__init(&lots_pb[i]);
        lots_pb[i].has_points = lots_pb[i].has_earned_at = lots_pb[i].has_expires_at = 1;
        lots_pb[i].points = m->lots[i].points;
        lots_pb[i].earned_at = m->lots[i].earned_at;
        lots_pb[i].expires_at = m->lots[i].expires_at;
        lots[i] = &lots_pb[i];
    }
    mv.lots = lots;
    size_t nc = state_member_cards(d->state, m->id, cards, 64);
    mv.n_cards = nc < 64 ? nc : 64;
    mv.cards = (char **)cards;
    mv.has_birth_month = mv.has_birth_day = 1;
    mv.birth_month = m->birth_month;
    mv.birth_day = m->birth_day;
    mv.has_staff = 1, mv.staff = m->staff;
    mv.status = (char *)status[m->status < 3 ? m->status : 0];
    mv.has_enrolled_at = 1, mv.enrolled_at = m->enrolled_at;
    mv.referrer = (char *)m->referrer;
    mv.has_debt = 1, mv.debt = m->debt;
    mv.has_last_purchase_at = 1, mv.last_purchase_at = m->last_purchase_at;
    mv.has_sales = 1, mv.sales = m->sales;
    qr.has_ok = 1, qr.ok = 1;
    qr.member = &mv;
    send_query_reply(d, r, &qr);
}

static bool quiet(daemon_t *d)
{
    return d->committed_seq + 1 == d->next_seq && (d->open == NULL || d->open->n == 0);
}

static void answer_hash_waiters(daemon_t *d)
{
    if (d->hash_waiters_n == 0 || d->recovering || !quiet(d))
        return;
    Loyalty__QueryReply qr = LOYALTY__QUERY_REPLY__INIT;
    qr.has_ok = 1, qr.ok = 1;
    qr.has_seq = 1, qr.seq = d->committed_seq;
    qr.has_state_hash = 1, qr.state_hash = state_hash(d->state);
    qr.has_members = 1, qr.members = state_members(d->state);
    qr.rules_version = (char *)rules_version(d->rules);
    for (size_t i = 0; i < d->hash_waiters_n; i++)
        send_query_reply(d, &d->hash_waiters[i], &qr);
    d->hash_waiters_n = 0;
    if (!d->stopping)
        zwatch_resume(&d->ingest_w);
}

/* A sweep query is answered once a pass that began after it has ended and what it wrote is
 * committed. */
static void answer_sweep_waiters(daemon_t *d)
{
    if (d->sweep_waiters_n == 0 || d->recovering || !quiet(d))
        return;
    size_t kept = 0;
    for (size_t i = 0; i < d->sweep_waiters_n; i++) {
        if (d->sweep_waiter_pass[i] > d->sweep_done_pass) {
            d->sweep_waiters[kept] = d->sweep_waiters[i];
            d->sweep_waiter_pass[kept++] = d->sweep_waiter_pass[i];
            continue;
        }
        Loyalty__QueryReply qr = LOYALTY__QUERY_REPLY__INIT;
        qr.has_ok = 1, qr.ok = 1;
        qr.has_seq = 1, qr.seq = d->committed_seq;
        qr.has_swept = 1, qr.swept = d->sweep_last_written;
        qr.has_clock = 1, qr.clock = d->lim.now;
        send_query_reply(d, &d->sweep_waiters[i], &qr);
    }
    d->sweep_waiters_n = kept;
}

static void handle_query(daemon_t *d, const req_t *r, const uint8_t *data, size_t len)
{
    metrics_inc(&d->m.query_requests, 1);
    Loyalty__QueryReply qr = LOYALTY__QUERY_REPLY__INIT;
    Loyalty__Query *q = loyalty__query__unpack(NULL, len, data);
    if (q == NULL) {
        qr.has_ok = 1, qr.ok = 0;
        qr.error = "not a loyalty.Query";
        send_query_reply(d, r, &qr);
        return;
    }
    switch (q->q_case) {
    case LOYALTY__QUERY__Q_MEMBER_ID:
        reply_member(d, r, q->member_id);
        break;
    case LOYALTY__QUERY__Q_STATE_HASH:
        if (d->hash_waiters_n < 64) {
            d->hash_waiters[d->hash_waiters_n++] = *r;
            zwatch_pause(&d->ingest_w); /* let the pipeline drain to a quiet point */
            if (d->open != NULL && d->open->n > 0)
                seal(d);
            answer_hash_waiters(d);
        } else {
            qr.has_ok = 1, qr.ok = 0;
            qr.error = "too many state hash requests waiting";
            send_query_reply(d, r, &qr);
        }
        break;
    case LOYALTY__QUERY__Q_SET_CLOCK:
        if (!d->cfg->test_clock) {
            qr.has_ok = 1, qr.ok = 0;
            qr.error = "set_clock needs test_clock: 1 in the configuration";
        } else {
            d->clock_s = q->set_clock;
            d->lim.now = q->set_clock != 0 ? q->set_clock : now_s();
            qr.has_ok = 1, qr.ok = 1;
            qr.has_clock = 1, qr.clock = d->lim.now;
        }
        send_query_reply(d, r, &qr);
        break;
    case LOYALTY__QUERY__Q_SWEEP:
        if (d->sweep_waiters_n >= 64) {
            qr.has_ok = 1, qr.ok = 0;
            qr.error = "too many sweep requests waiting";
            send_query_reply(d, r, &qr);
            break;
        }
        /* a pass that starts after this request: the next one if one is running */
        d->sweep_waiters[d->sweep_waiters_n] = *r;
        d->sweep_waiter_pass[d->sweep_waiters_n++] = d->sweep_pass + 1;
        if (!d->sweeping)
            start_sweep_pass(d);
        else
            d->sweep_again = true;
        break;
    case LOYALTY__QUERY__Q_CATCH_UP:
        qr.has_ok = 1, qr.ok = 0;
        qr.error = "catch-up needs a DEALER (no REQ envelope): see docs/subscribers.md";
        send_query_reply(d, r, &qr);
        break;
    case LOYALTY__QUERY__Q_STATUS:
        qr.has_ok = 1, qr.ok = 1;
        qr.has_seq = 1, qr.seq = d->committed_seq;
        qr.has_members = 1, qr.members = state_members(d->state);
        qr.rules_version = (char *)rules_version(d->rules);
        send_query_reply(d, r, &qr);
        break;
    default:
        qr.has_ok = 1, qr.ok = 0;
        qr.error = "empty query";
        send_query_reply(d, r, &qr);
    }
    loyalty__query__free_unpacked(q, NULL);
}

static size_t on_query(zwatch *w, size_t budget)
{
    daemon_t *d = w->data;
    size_t done = 0;
    zmq_msg_t payload;
    zmq_msg_init(&payload);
    while (done < budget) {
        req_t r;
        int rc = recv_request(d->query_sock, &r, &payload);
        if (rc == 0)
            break;
        done++;
        if (rc > 0)
            handle_query(d, &r, zmq_msg_data(&payload), zmq_msg_size(&payload));
    }
    zmq_msg_close(&payload);
    return done;
}

/* ------------------------------------------------------------------ completion, shutdown */

static void final_checkpoint_and_stop(daemon_t *d);

/* A commit failed: nothing from this batch on is durable. Tell every waiting till, then stop;
 * the next start rebuilds the state from the ledger. */
/* A commit failed (map or disk full, I/O error): nothing from that batch on is durable, and
 * the ledger refuses any later batch (its sequences would leave a gap). Every event not yet
 * durable is answered STORAGE_UNAVAILABLE; once the pipeline is empty the state is rebuilt from
 * the ledger in place (rebuild_state()) while queries go on being answered, and events are
 * refused for a while (doubling up to a minute) before the next try. Nothing acknowledged is
 * affected and nothing half-applied survives. */
static void storage_failure(daemon_t *d, int rc)
{
    if (!d->recovering) {
        lt_log(LT_ERROR, "commit failed: refusing events not yet durable, rebuilding state",
               "error=\"%s\"", ledger_strerror(rc));
        uint64_t backoff = d->refuse_backoff_ms ? d->refuse_backoff_ms * 2 : 1000;
        d->refuse_backoff_ms = backoff < 60000 ? backoff : 60000;
        d->refuse_until_ms = uv_now(&d->loop) + d->refuse_backoff_ms;
        snprintf(d->refuse_why, sizeof d->refuse_why,
                 "ledger cannot take writes (%s); nothing applied, resend later",
                 ledger_strerror(rc));
    }
    d->recovering = true;
    metrics_set(&d->m.storage_unavailable, 1);
    zwatch_pause(&d->ingest_w);
    for (size_t i = 0; i < d->batches_n; i++) {
        batch *b = &d->batches[i];
        uv_mutex_lock(&d->mu);
        bool skip =
            b->state == B_FREE || b->acked || (b->state == B_COMMITTED && b->commit_rc == 0);
        uv_mutex_unlock(&d->mu);
        if (skip)
            continue;
        /* every answer in these batches rests on state that never became durable */
        for (uint32_t j = 0; j < b->acks_n; j++) {
            ack_t *a = &b->acks[j];
            if (a->status != LOYALTY__STATUS__REJECTED) {
                d->st.rejected++;
                metrics_inc(&d->m.events[a->kind < METRICS_KINDS ? a->kind : 0][METRIC_REJECTED],
                            1);
                metrics_inc(&d->m.rejects[LT_R_STORAGE_UNAVAILABLE], 1);
            }
            a->status = LOYALTY__STATUS__REJECTED;
            a->reason = LT_R_STORAGE_UNAVAILABLE;
            a->msg_off = UINT32_MAX;
        }
        for (uint32_t j = 0; j < b->reqs_n; j++)
            send_acks(d, &b->reqs[j], b, LT_R_NONE, NULL);
        b->acked = true;
        b->reqs_n = 0;
    }
    zwatch_after_send(&d->ingest_w);
}

static int recover(daemon_t *d);

/* Once no batch is in flight: drop the un-durable state and load it again from the ledger. */
static void rebuild_state(daemon_t *d)
{
    bool busy = false;
    uv_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->batches_n; i++) {
        batch *b = &d->batches[i];
        if (b->state == B_QUEUED || (b->state == B_COMMITTED && !b->published))
            busy = true;
    }
    busy |= d->ck_sort_busy; /* the sort reads the state's member ids: ckpt_sort_done() returns */
    if (!busy) {
        for (size_t i = 0; i < d->batches_n; i++)
            d->batches[i].state = B_FREE;
    }
    uv_mutex_unlock(&d->mu);
    if (busy)
        return; /* on_async comes back when the commit thread is done */
    d->open = NULL;
    d->ack_order = d->seal_order;
    ckpt_abandon(d); /* its members are the state's about to go */
    state_destroy(&d->state);
    ck_order_reset(&d->ck_order); /* the new state numbers its members afresh */
    idmap_free(&d->pending);
    idmap_free(&d->nodes);
    if (state_new(&d->state) != 0 || idmap_init(&d->pending, 4096) != 0 ||
        idmap_init(&d->nodes, 1024) != 0) {
        fatal(d, 71, "out of memory rebuilding the state");
        return;
    }
    view_init(d);
    if (recover(d) != 0) {
        fatal(d, 74, "the ledger cannot be read back after a failed commit");
        return;
    }
    d->recovering = false;
    metrics_set(&d->m.storage_unavailable, 0);
    lt_log(LT_WARN, "state rebuilt from the ledger; events refused for a while", "refuse_ms=%llu",
           (unsigned long long)d->refuse_backoff_ms);
    open_batch(d);
    if (!d->stopping)
        zwatch_resume(&d->ingest_w);
}

static void on_async(uv_async_t *h)
{
    daemon_t *d = h->data;
    for (;;) {
        /* ack the next batch in sealing order once it is committed */
        batch *next = NULL;
        uv_mutex_lock(&d->mu);
        for (size_t i = 0; i < d->batches_n; i++) {
            batch *b = &d->batches[i];
            if (b->state == B_COMMITTED && !b->acked && b->order == d->ack_order + 1)
                next = b;
        }
        uv_mutex_unlock(&d->mu);
        if (next == NULL || d->failed)
            break;
        if (next->commit_rc != 0) {
            storage_failure(d, next->commit_rc);
            break;
        }
        d->refuse_backoff_ms = 0; /* the ledger takes writes again */
        for (uint32_t i = 0; i < next->acks_n; i++) {
            const ack_t *a = &next->acks[i];
            if (a->status == LOYALTY__STATUS__ACCEPTED) {
                d->st.accepted++;
                metrics_inc(&d->m.events[a->kind < METRICS_KINDS ? a->kind : 0][METRIC_ACCEPTED],
                            1);
            }
        }
        for (uint32_t i = 0; i < next->reqs_n; i++)
            send_acks(d, &next->reqs[i], next, LT_R_NONE, NULL);
        /* the ledger finds its ids from here on (ledger_find_event()) */
        for (uint32_t i = 0; i < next->n; i++)
            idmap_remove(&d->pending, next->recs[i].id.node_id, next->recs[i].id.event_id);
        if (next->n > 0)
            d->committed_seq = next->recs[next->n - 1].seq;
        d->st.commits++;
        d->st.committed_entries += next->n;
        metrics_inc(&d->m.commits, 1);
        metrics_set(&d->m.last_seq, d->committed_seq);
        metrics_set(&d->m.checkpoint_seq, d->checkpoint_seq);
        metrics_set(&d->m.members, state_members(d->state));
        d->ack_order = next->order;
        uv_mutex_lock(&d->mu);
        next->acked = true;
        uv_mutex_unlock(&d->mu);
    }
    /* recycle batches both acked and published */
    bool freed = false;
    uv_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->batches_n; i++) {
        batch *b = &d->batches[i];
        if (b->state == B_COMMITTED && b->acked && b->published) {
            b->state = B_FREE;
            freed = true;
        }
    }
    uv_mutex_unlock(&d->mu);
    if (d->failed) {
        zwatch_after_send(&d->ingest_w);
        uv_stop(&d->loop);
        return;
    }
    if (d->recovering) {
        if (d->stopping) {
            final_checkpoint_and_stop(d); /* stops without a checkpoint: state is ahead */
            return;
        }
        rebuild_state(d);
        if (d->recovering || d->failed)
            return;
    }
    zwatch_after_send(&d->ingest_w);
    if (d->hash_waiters_n > 0) {
        if (d->open != NULL && d->open->n > 0)
            seal(d);
        answer_hash_waiters(d);
    }
    if (d->sweep_blocked && freed) {
        d->sweep_blocked = false;
        uv_idle_start(&d->sweep_idle, on_sweep_idle);
    }
    answer_sweep_waiters(d);
    if (freed && !d->stopping && d->hash_waiters_n == 0) {
        metrics_set(&d->m.ingest_paused, 0);
        zwatch_resume(&d->ingest_w);
    }
    if (d->open == NULL && !d->stopping)
        open_batch(d);
    maybe_seal(d);
    ckpt_pump(d, 0); /* its sequence may be durable now */
    if (d->stopping)
        final_checkpoint_and_stop(d);
}

static bool pipeline_empty(daemon_t *d)
{
    bool empty = true;
    uv_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->batches_n; i++) {
        if (d->batches[i].state != B_FREE && d->batches[i].state != B_OPEN)
            empty = false;
    }
    uv_mutex_unlock(&d->mu);
    return empty && (d->open == NULL || (d->open->n == 0 && d->open->reqs_n == 0));
}

static void final_checkpoint_and_stop(daemon_t *d)
{
    if (d->recovering) {
        /* the state holds events that never became durable: no checkpoint of it; the next
         * start rebuilds from the ledger. Wait only for the commit thread to go idle. */
        bool busy = false;
        uv_mutex_lock(&d->mu);
        for (size_t i = 0; i < d->batches_n; i++)
            busy |= d->batches[i].state == B_QUEUED;
        uv_mutex_unlock(&d->mu);
        if (!busy)
            uv_stop(&d->loop);
        return;
    }
    if (d->open != NULL && (d->open->n > 0 || d->open->reqs_n > 0)) {
        seal(d);
        return; /* on_async comes back when it is committed */
    }
    if (!pipeline_empty(d))
        return;
    /* the commit thread is idle: a checkpoint being written is finished, then one more of
     * what changed since takes the last events (their members may still be being sorted:
     * ckpt_sort_done() and the checkpoint thread's answers come back here) */
    if (d->ck_sort_busy)
        return;
    if (d->ck_phase != CK_IDLE) {
        ckpt_pump(d, SIZE_MAX);
        return;
    }
    if (!d->ck_final_done && (d->ck_full || d->checkpoint_seq + 1 != d->next_seq)) {
        d->ck_final_done = true;
        if (ckpt_start(d) == 0) {
            if (d->ck_phase == CK_WRITING)
                ckpt_pump(d, SIZE_MAX); /* not sorted: no callback */
            return;
        }
        lt_log(LT_WARN, "final checkpoint failed (out of memory); the next start replays more",
               NULL);
    }
    uv_stop(&d->loop);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_t *d = h->data;
    if (d->stopping)
        return;
    lt_log(LT_INFO, "stopping: finishing events in flight", "signal=%d", signum);
    notify_send("STOPPING=1");
    d->stopping = true;
    zwatch_pause(&d->ingest_w);
    Loyalty__QueryReply qr = LOYALTY__QUERY_REPLY__INIT;
    qr.has_ok = 1, qr.ok = 0;
    qr.error = "daemon is shutting down";
    for (size_t i = 0; i < d->hash_waiters_n; i++)
        send_query_reply(d, &d->hash_waiters[i], &qr);
    d->hash_waiters_n = 0;
    final_checkpoint_and_stop(d);
}

static void on_ckpt_timer(uv_timer_t *h)
{
    daemon_t *d = h->data;
    if (d->stopping || d->failed || d->recovering || d->ck_phase != CK_IDLE || d->ck_sort_busy ||
        (!d->ck_full && d->checkpoint_seq + 1 == d->next_seq))
        return;
    if (ckpt_start(d) != 0)
        lt_log(LT_WARN, "checkpoint skipped: out of memory", NULL);
    else if (d->ck_phase == CK_WRITING)
        ckpt_pump_idle(d);
}

/* SIGHUP: reload the rules file. A file that does not load is refused and the rules in force
 * stay; the version in force is logged and recorded on every ledger entry from now on (R31). */
static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    daemon_t *d = h->data;
    char err[512];
    rules *nr = NULL;
    notify_send("RELOADING=1");
    int rc = d->cfg->rules_file[0] != '\0'
                 ? rules_load_file(d->cfg->rules_file, &nr, err, sizeof err)
                 : rules_load_string(rules_default_text(), strlen(rules_default_text()),
                                     "<built-in rules>", &nr, err, sizeof err);
    if (rc != 0) {
        metrics_inc(&d->m.rules_reload_failures, 1);
        lt_log(LT_ERROR, "rules reload refused; the rules in force stay",
               "error=\"%s\" version=\"%s\"", err, rules_version(d->rules));
    } else {
        lt_log(LT_INFO, "rules reloaded", "old_version=\"%s\" version=\"%s\" file=\"%s\"",
               rules_version(d->rules), rules_version(nr),
               d->cfg->rules_file[0] ? d->cfg->rules_file : "<built-in>");
        rules_destroy(&d->rules); /* only the loop thread rates: nothing else holds it */
        d->rules = nr;
        metrics_inc(&d->m.rules_reloads, 1);
        metrics_set_rules_version(&d->m, rules_version(d->rules));
    }
    if (d->auth != NULL) {
        if (auth_reload(d->auth, err, sizeof err) != 0)
            lt_log(LT_ERROR, "allowlist reload refused; the list in force stays", "error=\"%s\"",
                   err);
        else
            lt_log(LT_INFO, "allowlist reloaded", "keys=%zu", auth_keys(d->auth));
    }
    notify_send("READY=1");
}

static void on_watchdog(uv_timer_t *h)
{
    (void)h;
    notify_send("WATCHDOG=1"); /* the loop turns: the daemon is alive */
}

/* ------------------------------------------------------------------ start-up */

static int load_node(void *ctx, uint64_t node_id, uint64_t event_id_max)
{
    return idmap_put(&((daemon_t *)ctx)->nodes, node_id, 0, event_id_max, 0);
}

/* An id the ledger's index does not hold yet (committed since its last flush; none at a start,
 * which indexes them when it opens the ledger; some after a failed commit): into the till's
 * high-water mark. The ledger's writer finds the id in its memory from here on: checked, since
 * a resend of an id it lost would be applied twice (a recovery that fails here exits and the
 * next start indexes the entries). */
static int load_unindexed(void *ctx, lt_event_id id, uint64_t seq)
{
    daemon_t *d = ctx;
    uint64_t at = 0;
    if (ledger_find_event(d->ledger, id, &at) != 0 || at != seq) {
        lt_log(LT_ERROR, "ledger writer lost an unindexed event id", "node=%llu id=%llu seq=%llu",
               (unsigned long long)id.node_id, (unsigned long long)id.event_id,
               (unsigned long long)seq);
        return -1;
    }
    return idmap_put_max(&d->nodes, id.node_id, 0, id.event_id);
}

static int recover_state(daemon_t *d)
{
    uint64_t ckpt = 0, last = 0;
    uv_update_time(&d->loop);
    uint64_t t0 = uv_hrtime();
    if (ledger_last_seq(d->ledger, &last) != 0)
        return -1;
    ckpt_loader ld = ckpt_state_loader(d->state);
    ckpt_source src;
    char why[256];
    int rc = ckpt_load(d->ledger, d->cks, &ld, &ckpt, &src, why, sizeof why);
    if (rc != 0) {
        lt_log(LT_ERROR,
               "checkpoint does not load (to start from the ledger alone, move DATA_DIR/state "
               "aside)",
               "error=\"%s\" detail=\"%s\"", ledger_strerror(rc), why);
        return -1;
    }
    if (why[0] != '\0')
        lt_log(LT_WARN, "checkpoint in state/ not used: recovering without it", "reason=\"%s\"",
               why);
    state_set_seq(d->state, ckpt);
    /* the entries after the checkpoint: read and applied by two threads (ledger/replay.c) */
    state_replay_result rr = {0, 0};
    char err[512];
    if (last > ckpt &&
        state_replay(d->ledger, d->state, ckpt + 1, 0, NULL, NULL, &rr, err, sizeof err) != 0) {
        lt_log(LT_ERROR, "ledger replay failed", "error=\"%s\" applied=%llu", err,
               (unsigned long long)rr.applied);
        return -1;
    }
    /* one snapshot: the commit thread may end a round meanwhile (a rebuild after a failed
     * commit) */
    if (ledger_scan_dedup(d->ledger, load_node, load_unindexed, d) != 0)
        return -1;
    d->next_seq = last + 1;
    d->committed_seq = last;
    d->checkpoint_seq = ckpt;
    /* not recovered from state/ (it has no checkpoint, or another ledger's, or the start fell
     * back to the ledger's own tables): the first checkpoint writes everything into a fresh log.
     * From state/, the members replayed since its checkpoint are the changed ones. */
    d->ck_full = src != CKPT_SRC_STATE;
    d->ck_log_records = 0;
    if (src == CKPT_SRC_STATE && ckstore_log_records(d->cks, &d->ck_log_records) != 0)
        d->ck_full = true;
    d->pub_committed_seq = last;
    lt_log(LT_INFO, "state recovered",
           "checkpoint=%s checkpoint_seq=%llu last_seq=%llu replayed=%llu members=%zu ms=%.1f",
           ckpt_source_name(src), (unsigned long long)ckpt, (unsigned long long)last,
           (unsigned long long)rr.applied, state_members(d->state),
           (double)(uv_hrtime() - t0) / 1e6);
    return 0;
}

/* Recovery reads the checkpoint and the entries after it through: with the kernel's read-ahead
 * on, not one page per fault (a cold page cache after a reboot: 1.1 M members loaded in 3.2 s
 * without it, docs/performance.md); then back off for the lookups of normal running. */
static int recover(daemon_t *d)
{
    bool ra = ledger_readahead(d->ledger, true) == 0;
    int rc = recover_state(d);
    if (ra && ledger_readahead(d->ledger, false) != 0)
        lt_log(LT_WARN, "ledger read-ahead stays on after recovery", NULL);
    return rc;
}

/* CURVE: only allowlisted keys connect. Without it, only endpoints on this machine may be
 * bound, unless allow_insecure_bind says otherwise. */
static int start_security(daemon_t *d)
{
    char err[512];
    const config *c = d->cfg;
    if (c->curve_secret_key_file[0] == '\0') {
        const char *eps[] = {c->ingest_endpoint, c->publish_endpoint, c->query_endpoint};
        for (size_t i = 0; i < LT_ARRAY_LEN(eps); i++) {
            if (!auth_endpoint_is_local(eps[i]) && !c->allow_insecure_bind) {
                lt_log(LT_ERROR, "refusing a non-loopback endpoint without CURVE",
                       "endpoint=%s hint=\"set curve_secret_key_file and curve_allowlist_file, "
                       "or allow_insecure_bind: 1\"",
                       eps[i]);
                return -1;
            }
        }
        return 0;
    }
    if (auth_read_secret(c->curve_secret_key_file, d->curve_secret, err, sizeof err) != 0 ||
        auth_start(d->zctx, c->curve_allowlist_file, &d->auth, err, sizeof err) != 0) {
        lt_log(LT_ERROR, "cannot start CURVE", "error=\"%s\"", err);
        return -1;
    }
    lt_log(LT_INFO, "CURVE on", "allowlist=%s keys=%zu publish=%s query=%s",
           c->curve_allowlist_file, auth_keys(d->auth), c->curve_publish ? "yes" : "no",
           c->curve_query ? "yes" : "no");
    return 0;
}

static void *make_router(daemon_t *d, const char *endpoint, int rcvhwm)
{
    void *s = zmq_socket(d->zctx, ZMQ_ROUTER);
    if (s == NULL)
        return NULL;
    if (d->auth != NULL && pub_secure(s, d->curve_secret, AUTH_DOMAIN_INGEST) != 0) {
        zmq_close(s);
        return NULL;
    }
    int linger = 2000, sndhwm = 100000;
    int64_t maxmsg = (int64_t)LT_MESSAGE_BYTES_MAX * 4; /* hard cap; the soft one replies */
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_bind(s, endpoint) != 0) {
        lt_log(LT_ERROR, "cannot bind", "endpoint=%s error=\"%s\"", endpoint,
               zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

static int mkdir_p(const char *path)
{
    char buf[CONFIG_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0750) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, 0750) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int load_rules(daemon_t *d)
{
    char err[512];
    int rc;
    if (d->cfg->rules_file[0] != '\0')
        rc = rules_load_file(d->cfg->rules_file, &d->rules, err, sizeof err);
    else
        rc = rules_load_string(rules_default_text(), strlen(rules_default_text()),
                               "<built-in rules>", &d->rules, err, sizeof err);
    if (rc != 0) {
        lt_log(LT_ERROR, "rules file refused", "error=\"%s\"", err);
        return -1;
    }
    lt_log(LT_INFO, "rules loaded", "version=\"%s\" file=\"%s\"", rules_version(d->rules),
           d->cfg->rules_file[0] ? d->cfg->rules_file : "<built-in>");
    return 0;
}

static int start(daemon_t *d)
{
    test_kill_parse();
    char err[512];
    if (load_rules(d) != 0)
        return -1;
    if (mkdir_p(d->cfg->data_dir) != 0) {
        lt_log(LT_ERROR, "cannot create data directory", "dir=%s error=\"%s\"", d->cfg->data_dir,
               strerror(errno));
        return -1;
    }
    ledger_opts lo = {.dir = d->cfg->data_dir,
                      .map_bytes = (size_t)d->cfg->map_size_mb << 20,
                      .read_only = false,
                      .exclusive = true};
    if (ledger_open(&d->ledger, &lo, err, sizeof err) != 0) {
        lt_log(LT_ERROR, "cannot open ledger", "error=\"%s\"", err);
        return -1;
    }
    ckstore_opts co = {.dir = d->cfg->data_dir, .map_bytes = (size_t)d->cfg->map_size_mb << 20};
    if (ckstore_open(&d->cks, &co, err, sizeof err) != 0) {
        lt_log(LT_ERROR,
               "cannot open the checkpoint store (to start from the ledger alone, move "
               "DATA_DIR/state aside)",
               "error=\"%s\"", err);
        return -1;
    }
    if (metrics_init(&d->m, d->ledger) != 0)
        return -1;
    metrics_set_rules_version(&d->m, rules_version(d->rules));
    if (state_new(&d->state) != 0 || idmap_init(&d->pending, 4096) != 0 ||
        idmap_init(&d->nodes, 1024) != 0)
        return -1;
    view_init(d);
    if (recover(d) != 0)
        return -1;
    d->zctx = zmq_ctx_new();
    if (d->zctx == NULL)
        return -1;
    /* Waking ZeroMQ's I/O thread to send an ack or a publication made it preempt the loop thread
     * on its own core, hundreds of times a second under load; under SCHED_BATCH a woken I/O
     * thread waits for a free core or the loop's time slice instead (docs/performance.md,
     * "The loop thread shares its core"). Set before the first socket starts the thread, which
     * applies it itself and aborts the process if the kernel refuses (libzmq's posix_assert):
     * so only from the policies that may always move to SCHED_BATCH. A daemon started under a
     * real-time or SCHED_IDLE policy keeps it for its I/O thread. Never ZMQ_THREAD_PRIORITY:
     * with a policy other than FIFO or RR libzmq then calls nice(-20), and aborts unprivileged. */
    if (d->cfg->io_thread_batch) {
        int policy = sched_getscheduler(0);
        if (policy != SCHED_OTHER && policy != SCHED_BATCH)
            lt_log(LT_WARN, "io_thread_batch skipped: the daemon runs under another policy",
                   "policy=%d", policy);
        else if (zmq_ctx_set(d->zctx, ZMQ_THREAD_SCHED_POLICY, SCHED_BATCH) != 0)
            lt_log(LT_WARN, "cannot set the ZeroMQ I/O thread's scheduling policy", "error=\"%s\"",
                   zmq_strerror(zmq_errno()));
    }
    if (start_security(d) != 0)
        return -1;
    const char *secret = d->auth != NULL ? d->curve_secret : NULL;
    if (pub_new(d->zctx, d->cfg->publish_endpoint, d->cfg->curve_publish ? secret : NULL, &d->pub,
                err, sizeof err) != 0) {
        lt_log(LT_ERROR, "cannot start publisher", "error=\"%s\"", err);
        return -1;
    }
    d->ingest_sock = make_router(d, d->cfg->ingest_endpoint, (int)d->cfg->ingest_queue_max);
    if (d->ingest_sock == NULL)
        return -1;
    /* the query endpoint is the catch-up thread's; other queries come here over a PAIR */
    char pair_ep[64];
    snprintf(pair_ep, sizeof pair_ep, "inproc://loyaltyd-query-%p", (void *)d);
    if (catchup_start(d->zctx, d->cfg->query_endpoint, pair_ep, d->ledger,
                      d->cfg->curve_query ? secret : NULL, &d->catchup, err, sizeof err) != 0) {
        lt_log(LT_ERROR, "cannot start the query and catch-up endpoint", "error=\"%s\"", err);
        return -1;
    }
    d->m.catchup = d->catchup;
    d->query_sock = zmq_socket(d->zctx, ZMQ_PAIR);
    int linger = 1000;
    if (d->query_sock == NULL ||
        zmq_setsockopt(d->query_sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(d->query_sock, pair_ep) != 0)
        return -1;

    d->batches_n = (size_t)d->cfg->batches_max;
    d->batches = calloc(d->batches_n, sizeof *d->batches);
    if (d->batches == NULL)
        return -1;
    uint32_t cap = (uint32_t)d->cfg->batch_events_max + LT_BATCH_EVENTS_MAX;
    for (size_t i = 0; i < d->batches_n; i++) {
        if (batch_init(&d->batches[i], cap) != 0)
            return -1;
    }
    d->hash_waiters = calloc(64, sizeof *d->hash_waiters);
    if (d->hash_waiters == NULL)
        return -1;
    d->lim.future_skew_s_max = d->cfg->future_skew_s;
    d->lim.past_age_s_max = d->cfg->past_age_days * 86400;

    uv_mutex_init(&d->mu);
    uv_cond_init(&d->commit_cv);
    uv_cond_init(&d->pub_cv);
    uv_async_init(&d->loop, &d->async, on_async);
    d->async.data = d;
    uv_mutex_init(&d->ck_mu);
    uv_cond_init(&d->ck_cv);
    uv_async_init(&d->loop, &d->ck_async, on_ck_async);
    d->ck_async.data = d;
    uv_timer_init(&d->loop, &d->ck_timer);
    d->ck_timer.data = d;
    d->ck_fill_i = -1;
    d->indexed_seq = ledger_indexed_seq(d->ledger); /* the open indexed every entry */
    ledger_index_ride(d->ledger, INDEX_RIDE_MAX);
    if (uv_thread_create(&d->commit_thread, commit_main, d) != 0 ||
        uv_thread_create(&d->pub_thread, pub_main, d) != 0 ||
        uv_thread_create(&d->ck_thread, ck_main, d) != 0)
        return -1;
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sigterm);
    d->sigint.data = d->sigterm.data = d;
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_init(&d->loop, &d->sighup);
    d->sighup.data = d;
    uv_signal_start(&d->sighup, on_sighup, SIGHUP);
    uint64_t wd_ms = notify_watchdog_ms();
    uv_timer_init(&d->loop, &d->watchdog_timer);
    if (wd_ms > 0)
        uv_timer_start(&d->watchdog_timer, on_watchdog, wd_ms / 2, wd_ms / 2);
    if (metrics_listen(&d->m, d->cfg->metrics_listen, err, sizeof err) != 0) {
        lt_log(LT_ERROR, "cannot start metrics", "error=\"%s\"", err);
        return -1;
    }
    uv_timer_init(&d->loop, &d->sweep_timer);
    uv_idle_init(&d->loop, &d->sweep_idle);
    d->sweep_timer.data = d->sweep_idle.data = d;
    d->sweep_waiters = calloc(64, sizeof *d->sweep_waiters);
    d->sweep_waiter_pass = calloc(64, sizeof *d->sweep_waiter_pass);
    if (d->sweep_waiters == NULL || d->sweep_waiter_pass == NULL)
        return -1;
    uv_timer_start(&d->sweep_timer, on_sweep_timer, (uint64_t)d->cfg->sweep_interval_ms,
                   (uint64_t)d->cfg->sweep_interval_ms);
    uv_timer_init(&d->loop, &d->ckpt_timer);
    d->ckpt_timer.data = d;
    uv_timer_start(&d->ckpt_timer, on_ckpt_timer, (uint64_t)d->cfg->checkpoint_interval_ms,
                   (uint64_t)d->cfg->checkpoint_interval_ms);
    open_batch(d);
    if (zwatch_start(&d->loop, &d->ingest_w, d->ingest_sock, on_ingest, d) != 0 ||
        zwatch_start(&d->loop, &d->query_w, d->query_sock, on_query, d) != 0)
        return -1;
    metrics_set(&d->m.last_seq, d->committed_seq);
    metrics_set(&d->m.checkpoint_seq, d->checkpoint_seq);
    metrics_set(&d->m.members, state_members(d->state));
    notify_send("READY=1");
    lt_log(LT_INFO, "loyaltyd ready",
           "version=%s ingest=%s publish=%s query=%s metrics=%s data=%s next_seq=%llu", LT_VERSION,
           d->cfg->ingest_endpoint, d->cfg->publish_endpoint, d->cfg->query_endpoint,
           d->cfg->metrics_listen, d->cfg->data_dir, (unsigned long long)d->next_seq);
    return 0;
}

static void on_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* The loop is refreshed in the libuv helper so that the limits use the daemon's clock. */
static void on_prepare(uv_prepare_t *h)
{
    daemon_t *d = h->data;
    d->lim.now = d->clock_s != 0 ? d->clock_s : now_s();
}

int daemon_run(const config *cfg)
{
    daemon_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return 1;
    d->cfg = cfg;
    for (int i = 0; i < 2; i++)
        zmq_msg_init(&d->in[i].payload);
    uv_loop_init(&d->loop);
    uv_prepare_t prep;
    uv_prepare_init(&d->loop, &prep);
    prep.data = d;
    uv_prepare_start(&prep, on_prepare);
    d->lim.now = now_s();
    int code = 0;
    bool threads = false;
    if (start(d) != 0) {
        code = 1;
    } else {
        threads = true;
        dec_start(d);
        uv_run(&d->loop, UV_RUN_DEFAULT);
        code = d->failed ? d->exit_code : 0;
        dec_stop(d);
    }
    if (threads) {
        uv_mutex_lock(&d->mu);
        d->threads_stop = true;
        uv_cond_broadcast(&d->commit_cv);
        uv_cond_broadcast(&d->pub_cv);
        uv_mutex_unlock(&d->mu);
        uv_thread_join(&d->commit_thread);
        uv_thread_join(&d->pub_thread);
        uv_mutex_lock(&d->ck_mu);
        d->ck_stop = true;
        uv_cond_signal(&d->ck_cv);
        uv_mutex_unlock(&d->ck_mu);
        uv_thread_join(&d->ck_thread);
    }
    lt_log(code == 0 ? LT_INFO : LT_ERROR, "loyaltyd stopped",
           "code=%d accepted=%llu duplicate=%llu rejected=%llu commits=%llu last_seq=%llu "
           "checkpoint_seq=%llu",
           code, (unsigned long long)d->st.accepted, (unsigned long long)d->st.duplicate,
           (unsigned long long)d->st.rejected, (unsigned long long)d->st.commits,
           (unsigned long long)d->committed_seq, (unsigned long long)d->checkpoint_seq);
    metrics_stop(&d->m); /* first: its HTTP thread reads what is torn down below */
    if (d->ingest_w.sock != NULL)
        zwatch_close(&d->ingest_w);
    if (d->query_w.sock != NULL)
        zwatch_close(&d->query_w);
    uv_run(&d->loop, UV_RUN_NOWAIT); /* let the poll handles close before their sockets */
    if (d->ingest_sock)
        zmq_close(d->ingest_sock);
    if (d->query_sock)
        zmq_close(d->query_sock);
    catchup_stop(&d->catchup);
    pub_destroy(&d->pub);
    auth_stop(&d->auth); /* its ZAP socket must close before the context ends */
    if (d->zctx)
        zmq_ctx_term(d->zctx);
    uv_walk(&d->loop, on_close_walk, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
    ckstore_close(&d->cks);
    ledger_close(&d->ledger);
    state_destroy(&d->state);
    rules_destroy(&d->rules);
    if (d->batches != NULL) {
        for (size_t i = 0; i < d->batches_n; i++)
            batch_free(&d->batches[i]);
        free(d->batches);
    }
    free(d->ck_cards);
    free(d->ck_rcap_at);
    free(d->ck_ord);
    ck_order_free(&d->ck_order);
    state_ids_free(&d->ck_ids);
    if (d->ck_capd != NULL) {
        batch_free(d->ck_capd);
        free(d->ck_capd);
    }
    for (int i = 0; i < CK_BUFS; i++) {
        if (d->ck_buf[i] != NULL) {
            batch_free(d->ck_buf[i]);
            free(d->ck_buf[i]);
        }
    }
    free(d->ck_cap_at);
    idmap_free(&d->pending);
    idmap_free(&d->nodes);
    free(d->hash_waiters);
    free(d->sweep_waiters);
    free(d->sweep_waiter_pass);
    for (int i = 0; i < 2; i++) {
        zmq_msg_close(&d->in[i].payload);
        free(d->in[i].dec);
    }
    free(d);
    return code;
}
