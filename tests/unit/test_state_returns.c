/* test_state_returns.c: returns in the state projection (R18, R30): returned quantities per
 * sale, debt from a return posting, the hash, checkpoint records (state and LMDB), and the
 * daemon's sale lookup (daemon/lookup.c) through rating, applying, committing and replaying.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "entry.h"
#include "test_state_fixture.h"
#include "ledger.h"
#include "state.h"

/* The daemon's hook is one small file with no daemon dependencies: test it here, where the
 * ledger and the state it glues together are linked. */
#include "../../daemon/lookup.c"

#define T0 1767225600 /* 2026-01-01 UTC */

/* Starts a fresh entry of `kind` with one posting for `member` and returns the posting. */
static lt_posting *entry_start(lt_entry_kind kind, const char *member, const char *reason)
{
    lt_posting *p = st_posting(kind, T0, member);
    strcpy(p->reason, reason);
    return p;
}

static void enrol(state *s, const char *member)
{
    entry_start(LT_ENTRY_ENROL, member, "enrol")->create = true;
    assert_int_equal(st_apply(s), 0);
}

static void credit(state *s, const char *member, int64_t points, int64_t balance_after)
{
    lt_posting *p = entry_start(LT_ENTRY_SALE, member, "sale");
    p->credit = points;
    p->balance_after = balance_after;
    assert_int_equal(st_apply(s), 0);
}

/* A return entry against sale `sale_seq` of `lines_n` lines; quantities set by the caller. */
static lt_posting *return_start(const char *member, uint64_t sale_seq, uint32_t lines_n)
{
    lt_posting *p = entry_start(LT_ENTRY_RETURN, member, "return");
    g_entry.original_seq = sale_seq;
    g_entry.lines_n = lines_n;
    return p;
}

static void expect_returned(const state *s, uint64_t sale_seq, const int64_t *want, uint32_t n)
{
    const int64_t *qty;
    uint32_t got_n;
    assert_int_equal(state_returned(s, sale_seq, &qty, &got_n), 0);
    assert_int_equal(got_n, n);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(qty[i], want[i]);
}

/* R18: each return entry adds its lines' quantities to its sale's record; bad entries are
 * refused and change nothing. */
static void test_state_R18_apply_return_tracks_quantities(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "M1");
    credit(s, "M1", 500, 500);
    const int64_t *qty;
    uint32_t n;
    assert_int_equal(state_returned(s, 7, &qty, &n), -1);
    assert_null(qty);
    assert_int_equal(n, 0);

    lt_posting *p = return_start("M1", 7, 3);
    g_entry.lines[1].quantity = 2;
    p->debit = 100;
    p->balance_after = 400;
    g_entry.seq = 10;
    assert_int_equal(st_apply(s), 0);
    assert_int_equal(state_seq(s), 10);
    expect_returned(s, 7, (int64_t[]){0, 2, 0}, 3);

    p = return_start("M1", 7, 3);
    g_entry.lines[1].quantity = 1;
    g_entry.lines[2].quantity = 1;
    p->debit = 10;
    p->credit = 5;
    p->balance_after = 395;
    assert_int_equal(st_apply(s), 0);
    expect_returned(s, 7, (int64_t[]){0, 3, 1}, 3);
    assert_int_equal(state_returns_count(s), 1);

    /* a different number of lines than the sale's record, a negative quantity, no sale, a
     * posting that does not apply: refused, nothing changed */
    p = return_start("M1", 7, 2);
    g_entry.lines[0].quantity = 1;
    p->balance_after = 395;
    assert_int_equal(st_apply(s), -1);
    assert_non_null(strstr(g_err, "lines"));
    p = return_start("M1", 7, 3);
    g_entry.lines[0].quantity = -1;
    p->balance_after = 395;
    assert_int_equal(st_apply(s), -1);
    p = return_start("M1", 0, 3);
    p->balance_after = 395;
    assert_int_equal(st_apply(s), -1);
    p = return_start("M1", 7, 3);
    g_entry.lines[0].quantity = 1;
    p->balance_after = 999;
    assert_int_equal(st_apply(s), -1);
    p = return_start("M1", 9, 1); /* a first return of sale 9 that fails leaves no record */
    g_entry.lines[0].quantity = 1;
    p->balance_after = 999;
    assert_int_equal(st_apply(s), -1);
    assert_int_equal(state_returned(s, 9, &qty, &n), -1);
    expect_returned(s, 7, (int64_t[]){0, 3, 1}, 3);
    assert_int_equal(state_balance(state_member(s, "M1")), 395);

    /* many sales: the index grows and every record stays findable */
    for (uint64_t seq = 100; seq < 400; seq++) {
        p = return_start("M1", seq, 2);
        g_entry.lines[seq % 2].quantity = (int64_t)seq;
        p->balance_after = 395;
        assert_int_equal(st_apply(s), 0);
    }
    assert_int_equal(state_returns_count(s), 301);
    for (uint64_t seq = 100; seq < 400; seq++) {
        int64_t want[2] = {0, 0};
        want[seq % 2] = (int64_t)seq;
        expect_returned(s, seq, want, 2);
    }
    expect_returned(s, 7, (int64_t[]){0, 3, 1}, 3);
    state_destroy(&s);
}

/* R18: a return posting may debit more than the lots hold: the shortfall becomes debt, which
 * later credits pay first. Any other debit beyond the lots stays an error. */
static void test_state_R18_debt_from_return(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "M1");
    credit(s, "M1", 50, 50);

    lt_posting *p = entry_start(LT_ENTRY_RETURN, "M1", "sale"); /* not a return posting */
    g_entry.original_seq = 3;
    g_entry.lines_n = 1;
    g_entry.lines[0].quantity = 1;
    p->debit = 175;
    p->balance_after = -125;
    assert_int_equal(st_apply(s), -1);
    assert_non_null(strstr(g_err, "exceeds"));
    p = entry_start(LT_ENTRY_GIFT, "M1", "return"); /* not a return entry */
    p->debit = 175;
    p->balance_after = -125;
    assert_int_equal(st_apply(s), -1);
    assert_int_equal(state_returned(s, 3, &(const int64_t *){NULL}, &(uint32_t){0}), -1);

    p = return_start("M1", 3, 1);
    g_entry.lines[0].quantity = 1;
    p->debit = 175;
    p->balance_after = -125;
    assert_int_equal(st_apply(s), 0);
    const lt_member *m = state_member(s, "M1");
    assert_int_equal(m->lots_n, 0);
    assert_int_equal(m->debt, 125);
    assert_int_equal(state_balance(m), -125);

    /* a return with a give-back: the debit beyond the lots is debt, the credit pays it */
    p = return_start("M1", 4, 1);
    g_entry.lines[0].quantity = 1;
    p->debit = 200;
    p->credit = 50;
    p->balance_after = -275;
    assert_int_equal(st_apply(s), 0);
    m = state_member(s, "M1");
    assert_int_equal(m->debt, 275);
    assert_int_equal(m->lots_n, 0);

    credit(s, "M1", 300, 25); /* pays the debt first, 25 is a new lot */
    m = state_member(s, "M1");
    assert_int_equal(m->debt, 0);
    assert_int_equal(m->lots_n, 1);
    assert_int_equal(m->lots[0].points, 25);
    state_destroy(&s);
}

/* R30: the returned quantities are part of the state's hash. */
static void test_state_R18_hash_includes_returns(void **st)
{
    (void)st;
    state *a, *b;
    assert_int_equal(state_new(&a), 0);
    assert_int_equal(state_new(&b), 0);
    enrol(a, "M1");
    enrol(b, "M1");
    credit(a, "M1", 100, 100);
    credit(b, "M1", 100, 100);
    assert_true(state_hash(a) == state_hash(b));

    lt_posting *p = return_start("M1", 5, 2);
    g_entry.lines[0].quantity = 1;
    p->debit = 10;
    p->balance_after = 90;
    assert_int_equal(st_apply(a), 0);
    p = entry_start(LT_ENTRY_ADJUSTMENT, "M1", "adjustment"); /* same member effect */
    p->debit = 10;
    p->balance_after = 90;
    assert_int_equal(st_apply(b), 0);
    uint8_t m1[256], m2[256];
    size_t n1 = state_member_encode(state_member(a, "M1"), m1, sizeof(m1));
    size_t n2 = state_member_encode(state_member(b, "M1"), m2, sizeof(m2));
    assert_int_equal(n1, n2);
    assert_memory_equal(m1, m2, n1);
    assert_true(state_hash(a) != state_hash(b));

    uint8_t rec[STATE_RETURNS_BYTES_MAX];
    size_t len = state_returns_encode((int64_t[]){1, 0}, 2, rec, sizeof(rec));
    assert_int_equal(len, 5 + 16);
    assert_int_equal(state_load_returns(b, 5, rec, len), 0);
    assert_true(state_hash(a) == state_hash(b));
    /* another quantity, or the same record under another sale, hashes differently */
    len = state_returns_encode((int64_t[]){0, 1}, 2, rec, sizeof(rec));
    assert_int_equal(state_load_returns(b, 5, rec, len), 0);
    assert_true(state_hash(a) != state_hash(b));
    len = state_returns_encode((int64_t[]){1, 0}, 2, rec, sizeof(rec));
    assert_int_equal(state_load_returns(b, 5, rec, len), 0);
    assert_true(state_hash(a) == state_hash(b));
    assert_int_equal(state_load_returns(b, 6, rec, len), 0);
    assert_true(state_hash(a) != state_hash(b));
    state_destroy(&a);
    state_destroy(&b);
}

/* ------------------------------------------------------------------ checkpoints */

typedef struct {
    state *to;
    int n;
} copy_ctx;

static int copy_member(void *ctx, const lt_member *m)
{
    uint8_t buf[4096];
    size_t len = state_member_encode(m, buf, sizeof(buf));
    assert_true(len > 0);
    return state_load_member(((copy_ctx *)ctx)->to, buf, len);
}

static int copy_returns(void *ctx, uint64_t sale_seq, const int64_t *qty, uint32_t n)
{
    uint8_t buf[STATE_RETURNS_BYTES_MAX];
    size_t len = state_returns_encode(qty, n, buf, sizeof(buf));
    assert_true(len > 0);
    ((copy_ctx *)ctx)->n++;
    return state_load_returns(((copy_ctx *)ctx)->to, sale_seq, buf, len);
}

/* A state with members and three sales' returned quantities. */
static void build_returns(state *s)
{
    enrol(s, "M1");
    enrol(s, "M2");
    credit(s, "M1", 1000, 1000);
    credit(s, "M2", 10, 10);
    uint64_t sales[] = {3, 4, 1ull << 40};
    for (int i = 0; i < 3; i++) {
        lt_posting *p = return_start(i ? "M1" : "M2", sales[i], (uint32_t)(i + 1));
        g_entry.lines[i].quantity = 5 + i;
        p->debit = i ? 100 : 20;
        p->balance_after = i == 0 ? -10 : i == 1 ? 900 : 800;
        assert_int_equal(st_apply(s), 0);
    }
}

/* R30: dirty returned-quantity records rebuild the same state (the checkpoint path), and
 * malformed records are refused. */
static void test_state_R18_checkpoint_round_trip(void **st)
{
    (void)st;
    state *a, *b;
    assert_int_equal(state_new(&a), 0);
    assert_int_equal(state_new(&b), 0);
    build_returns(a);
    copy_ctx c = {b, 0};
    assert_int_equal(state_foreach_dirty(a, copy_member, NULL, &c), 0);
    assert_int_equal(state_foreach_dirty_returns(a, copy_returns, &c), 0);
    assert_int_equal(c.n, 3);
    assert_true(state_hash(a) == state_hash(b));
    expect_returned(b, 1ull << 40, (int64_t[]){0, 0, 7}, 3);
    assert_int_equal(state_returns_count(b), 3);

    /* cleared with the members; only what changes next is dirty again; loads are not dirty */
    state_clear_dirty(a);
    c.n = 0;
    assert_int_equal(state_foreach_dirty_returns(a, copy_returns, &c), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(state_foreach_dirty_returns(b, copy_returns, &c), 0);
    assert_int_equal(c.n, 0);
    lt_posting *p = return_start("M1", 4, 2);
    g_entry.lines[0].quantity = 1;
    p->balance_after = 800;
    assert_int_equal(st_apply(a), 0);
    p = return_start("M1", 4, 2); /* twice in one checkpoint: listed once */
    g_entry.lines[0].quantity = 1;
    p->balance_after = 800;
    assert_int_equal(st_apply(a), 0);
    assert_int_equal(state_foreach_dirty_returns(a, copy_returns, &c), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(state_foreach_dirty(a, copy_member, NULL, &c), 0);
    assert_true(state_hash(a) == state_hash(b));
    expect_returned(b, 4, (int64_t[]){2, 6}, 2);

    /* malformed records */
    uint8_t rec[STATE_RETURNS_BYTES_MAX + 8];
    size_t len = state_returns_encode((int64_t[]){1, 2}, 2, rec, sizeof(rec));
    assert_int_equal(state_returns_encode((int64_t[]){1, 2}, 2, rec, len - 1), 0);
    assert_int_equal(state_load_returns(b, 0, rec, len), -1);     /* no sale seq */
    assert_int_equal(state_load_returns(b, 9, rec, len - 1), -1); /* short */
    rec[len] = 0;
    assert_int_equal(state_load_returns(b, 9, rec, len + 1), -1); /* long */
    rec[0] = 2;
    assert_int_equal(state_load_returns(b, 9, rec, len), -1); /* version */
    len = state_returns_encode((int64_t[]){-1, 2}, 2, rec, sizeof(rec));
    assert_int_equal(state_load_returns(b, 9, rec, len), -1); /* negative */
    len = state_returns_encode(NULL, 0, rec, sizeof(rec));
    assert_int_equal(state_load_returns(b, 9, rec, len), -1); /* no lines */
    uint8_t big[8 + 8 * (LT_SALE_LINES_MAX + 1)] = {1, LT_SALE_LINES_MAX + 1};
    assert_int_equal(state_load_returns(b, 9, big, 5 + 8 * (LT_SALE_LINES_MAX + 1)), -1);
    assert_int_equal(state_returned(b, 9, &(const int64_t *){NULL}, &(uint32_t){0}), -1);
    state_destroy(&a);
    state_destroy(&b);
}

/* ------------------------------------------------------------------ with the ledger */

static char g_dir[64];

static ledger *ledger_tmp(void)
{
    strcpy(g_dir, "/tmp/lt-state-returns-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    ledger *l = NULL;
    ledger_opts o = {.dir = g_dir, .map_bytes = 64 << 20};
    char err[256];
    assert_int_equal(ledger_open(&l, &o, err, sizeof(err)), 0);
    return l;
}

static void ledger_tmp_close(ledger **l)
{
    ledger_close(l);
    char path[128];
    const char *files[] = {"data.mdb", "lock.mdb", "daemon.lock"};
    for (size_t i = 0; i < LT_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", g_dir, files[i]);
        unlink(path);
    }
    rmdir(g_dir);
}

/* Collects a checkpoint as the daemon does: members, cards and (new) returned quantities. */
typedef struct {
    ledger_snap snaps[64];
    char keys[64][LT_ID_MAX];
    uint8_t vals[64][STATE_RETURNS_BYTES_MAX];
    size_t n;
} ckpt;

static int ckpt_member(void *ctx, const lt_member *m)
{
    ckpt *c = ctx;
    assert_true(c->n < 64);
    size_t len = state_member_encode(m, c->vals[c->n], sizeof(c->vals[0]));
    assert_true(len > 0);
    snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", m->id);
    c->snaps[c->n] = (ledger_snap){LEDGER_SNAP_MEMBER, c->keys[c->n], c->vals[c->n], len};
    c->n++;
    return 0;
}

static int ckpt_returns(void *ctx, uint64_t sale_seq, const int64_t *qty, uint32_t n)
{
    ckpt *c = ctx;
    assert_true(c->n < 64);
    size_t len = state_returns_encode(qty, n, c->vals[c->n], sizeof(c->vals[0]));
    assert_true(len > 0);
    snprintf(c->keys[c->n], sizeof(c->keys[0]), "%llu", (unsigned long long)sale_seq);
    c->snaps[c->n] = (ledger_snap){LEDGER_SNAP_RETURNS, c->keys[c->n], c->vals[c->n], len};
    c->n++;
    return 0;
}

static int load_member(void *ctx, const uint8_t *rec, size_t len)
{
    return state_load_member(ctx, rec, len);
}

static int load_returns(void *ctx, uint64_t sale_seq, const uint8_t *rec, size_t len)
{
    return state_load_returns(ctx, sale_seq, rec, len);
}

/* R30: returned quantities go through an LMDB checkpoint (LEDGER_SNAP_RETURNS) and come back
 * with ledger_scan_returns(); bad keys are refused. */
static void test_state_R18_ledger_checkpoint_round_trip(void **st)
{
    (void)st;
    ledger *l = ledger_tmp();
    state *a, *b;
    assert_int_equal(state_new(&a), 0);
    assert_int_equal(state_new(&b), 0);
    uint64_t none = 0;
    assert_int_equal(ledger_scan_returns(l, load_returns, &none), 0); /* nothing yet */
    build_returns(a);
    static ckpt c;
    c.n = 0;
    assert_int_equal(state_foreach_dirty(a, ckpt_member, NULL, &c), 0);
    assert_int_equal(state_foreach_dirty_returns(a, ckpt_returns, &c), 0);
    assert_int_equal(c.n, 5);
    assert_int_equal(ledger_commit(l, NULL, 0, c.snaps, c.n, 0), 0);

    assert_int_equal(ledger_scan_snapshot(l, load_member, NULL, b), 0);
    assert_int_equal(ledger_scan_returns(l, load_returns, b), 0);
    assert_int_equal(state_returns_count(b), 3);
    assert_true(state_hash(a) == state_hash(b));

    /* a key that is not a decimal sale seq fails the whole commit */
    const char *bad[] = {"0", "012", "12a", "-1", "18446744073709551616"};
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        ledger_snap s = {LEDGER_SNAP_RETURNS, bad[i], c.vals[4], c.snaps[4].len};
        assert_int_equal(ledger_commit(l, NULL, 0, &s, 1, 0), LEDGER_ERR_OTHER);
    }
    ledger_snap max = {LEDGER_SNAP_RETURNS, "18446744073709551615", c.vals[4], c.snaps[4].len};
    assert_int_equal(ledger_commit(l, NULL, 0, &max, 1, 0), 0);
    state_destroy(&b);
    assert_int_equal(state_new(&b), 0);
    assert_int_equal(ledger_scan_returns(l, load_returns, b), 0);
    assert_int_equal(state_returns_count(b), 4);
    expect_returned(b, UINT64_MAX, (int64_t[]){0, 0, 7}, 3);
    state_destroy(&a);
    state_destroy(&b);
    ledger_tmp_close(&l);
}

/* ------------------------------------------------------------------ rate, apply, commit, replay */

typedef struct {
    ledger *l;
    state *s;
    rules *r;
    daemon_lookup lk;
    rules_view v;
    uint64_t next_seq;
    lt_entry e;
    uint8_t enc[ENTRY_BYTES_MAX];
    /* the last entry rated but not committed: what daemon_lookup.pending finds */
    bool held;
    lt_event_id held_id;
    size_t held_len;
} pipe_t;

static int pipe_pending(void *ctx, lt_event_id id, const uint8_t **bytes, size_t *len,
                        uint64_t *seq)
{
    pipe_t *p = ctx;
    if (!p->held || p->held_id.node_id != id.node_id || p->held_id.event_id != id.event_id)
        return -1;
    *bytes = p->enc;
    *len = p->held_len;
    *seq = p->next_seq - 1;
    return 0;
}

/* Rates ev, applies the entry and, unless hold, commits it, like the daemon's event path. */
static int pipe_event(pipe_t *p, const lt_event *ev, bool hold)
{
    int rc = rules_rate(p->r, &p->v, ev, &p->e);
    if (rc != LT_R_NONE)
        return rc;
    p->e.seq = p->next_seq++;
    char err[256];
    assert_int_equal(state_apply(p->s, &p->e, err, sizeof(err)), 0);
    size_t len = entry_encode(&p->e, p->enc, sizeof(p->enc));
    assert_true(len > 0);
    p->held = hold;
    p->held_id = p->e.id;
    p->held_len = len;
    if (!hold) {
        ledger_record rec = {p->e.seq, p->e.id, p->enc, len};
        assert_int_equal(ledger_commit(p->l, &rec, 1, NULL, 0, 0), 0);
        /* into the dedup index at once: daemon_sale_lookup() reads the index alone (the
         * daemon's pending map covers what waits for the flush) */
        assert_int_equal(ledger_index_flush(p->l, 0), 0);
    }
    return LT_R_NONE;
}

static void ev_start(lt_event *ev, lt_event_kind kind, uint64_t id)
{
    memset(ev, 0, sizeof(*ev));
    ev->kind = kind;
    ev->id = (lt_event_id){3, id};
    strcpy(ev->member_id, "M1");
    strcpy(ev->store_id, "S1");
    ev->occurred_at = T0 + 180 * 86400 + (int64_t)id;
    ev->utc_offset_min = 480;
}

static void ev_sale_line(lt_event *ev, const char *cat, int64_t qty, int64_t unit_fen)
{
    lt_line *l = &ev->lines[ev->lines_n++];
    strcpy(l->sku, "SKU");
    strcpy(l->category, cat);
    l->quantity = qty;
    l->unit_list_fen = l->unit_paid_fen = unit_fen;
}

static void ev_return(lt_event *ev, uint64_t id, uint64_t original, uint32_t line, int64_t qty)
{
    ev_start(ev, LT_EV_RETURN, id);
    ev->original = (lt_event_id){3, original};
    ev->return_lines[0] = (lt_return_line){line, qty};
    ev->return_lines_n = 1;
}

typedef struct {
    state *s;
    lt_entry *e;
} replay_t;

static int replay_one(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len)
{
    replay_t *r = ctx;
    char err[256];
    (void)seq;
    assert_int_equal(entry_decode(bytes, len, r->e), 0);
    assert_int_equal(state_apply(r->s, r->e, err, sizeof(err)), 0);
    return 0;
}

/* R18 end to end in the pure layers plus the daemon's lookup: sales and returns rated against
 * the live state and the committed ledger, a return refused when its sale is not committed
 * (unless the pending hook finds it), debt, a checkpoint, and a replay giving the same hash. */
static void test_state_R18_lookup_rate_apply_replay(void **st)
{
    (void)st;
    static pipe_t p;
    static lt_event ev;
    static lt_entry scratch;
    memset(&p, 0, sizeof(p));
    p.l = ledger_tmp();
    assert_int_equal(state_new(&p.s), 0);
    const char *text = rules_default_text();
    char err[256];
    assert_int_equal(rules_load_string(text, strlen(text), "default", &p.r, err, sizeof(err)), 0);
    daemon_lookup_view(&p.lk, p.l, p.s, &p.v);
    assert_ptr_equal(p.v.ctx, &p.lk);
    p.next_seq = 1;

    ev_start(&ev, LT_EV_SALE, 1); /* enrols M1: 3 x 3334 groceries = 100 points */
    ev_sale_line(&ev, "groceries", 3, 3334);
    ev_sale_line(&ev, "tobacco", 1, 5000);
    assert_int_equal(pipe_event(&p, &ev, false), LT_R_NONE);
    assert_int_equal(state_balance(state_member(p.s, "M1")), 100);

    const lt_entry *sale;
    const int64_t *returned;
    uint64_t seq;
    assert_int_equal(
        daemon_sale_lookup(p.l, p.s, (lt_event_id){3, 1}, &scratch, &sale, &returned, &seq), 0);
    assert_ptr_equal(sale, &scratch);
    assert_int_equal(seq, 1);
    assert_null(returned);
    assert_int_equal(sale->lines[0].points, 100);
    assert_int_equal(
        daemon_sale_lookup(p.l, p.s, (lt_event_id){3, 99}, &scratch, &sale, &returned, &seq), -1);

    ev_return(&ev, 2, 1, 0, 1);
    assert_int_equal(pipe_event(&p, &ev, false), LT_R_NONE);
    assert_int_equal(p.e.lines[0].points, 33);
    assert_int_equal(p.e.original_seq, 1);
    assert_int_equal(
        daemon_sale_lookup(p.l, p.s, (lt_event_id){3, 1}, &scratch, &sale, &returned, &seq), 0);
    assert_non_null(returned);
    assert_int_equal(returned[0], 1);
    assert_int_equal(returned[1], 0);
    /* a return is not a sale: returning it is UNKNOWN_SALE */
    ev_return(&ev, 3, 2, 0, 1);
    assert_int_equal(pipe_event(&p, &ev, false), LT_R_UNKNOWN_SALE);

    /* spend what is left (67), then return the rest: 67 reversed, debt 67 - 0 (allow) */
    ev_start(&ev, LT_EV_GIFT, 4);
    ev.points = 67;
    assert_int_equal(pipe_event(&p, &ev, false), LT_R_NONE);
    ev_return(&ev, 5, 1, 0, 2);
    assert_int_equal(pipe_event(&p, &ev, false), LT_R_NONE);
    assert_int_equal(p.e.postings[0].debit, 67);
    const lt_member *m = state_member(p.s, "M1");
    assert_int_equal(m->debt, 67);
    assert_int_equal(state_balance(m), -67);
    ev_return(&ev, 6, 1, 0, 1);
    assert_int_equal(pipe_event(&p, &ev, false), LT_R_RETURN_EXCEEDS_SALE);

    /* checkpoint here, then more entries after it */
    static ckpt c;
    c.n = 0;
    assert_int_equal(state_foreach_dirty(p.s, ckpt_member, NULL, &c), 0);
    assert_int_equal(state_foreach_dirty_returns(p.s, ckpt_returns, &c), 0);
    state_clear_dirty(p.s);
    uint64_t ckpt_seq = p.next_seq - 1;
    assert_int_equal(ledger_commit(p.l, NULL, 0, c.snaps, c.n, ckpt_seq), 0);

    /* a sale not committed yet: unknown to the ledger lookup, found by the pending hook */
    ev_start(&ev, LT_EV_SALE, 7);
    ev_sale_line(&ev, "groceries", 2, 10000); /* 200 points: 67 pay the debt */
    assert_int_equal(pipe_event(&p, &ev, true), LT_R_NONE);
    ev_return(&ev, 8, 7, 0, 1);
    assert_int_equal(rules_rate(p.r, &p.v, &ev, &p.e), LT_R_UNKNOWN_SALE);
    ledger_record rec = {p.next_seq - 1, (lt_event_id){3, 7}, p.enc, p.held_len};
    p.lk.pending = pipe_pending;
    p.lk.pending_ctx = &p;
    assert_int_equal(rules_rate(p.r, &p.v, &ev, &p.e), LT_R_NONE);
    assert_int_equal(p.e.original_seq, rec.seq);
    assert_int_equal(ledger_commit(p.l, &rec, 1, NULL, 0, 0), 0); /* the batch commits */
    assert_int_equal(ledger_index_flush(p.l, 0), 0);
    p.held = false;
    assert_int_equal(pipe_event(&p, &ev, false), LT_R_NONE);
    assert_int_equal(p.e.postings[0].debit, 100);
    assert_int_equal(state_balance(state_member(p.s, "M1")), 33);

    /* recovery: checkpoint + tail, and a full replay, both equal the live state */
    uint64_t live = state_hash(p.s);
    replay_t r = {NULL, &scratch};
    assert_int_equal(state_new(&r.s), 0);
    assert_int_equal(ledger_scan(p.l, 1, 0, replay_one, &r), 0);
    assert_true(state_hash(r.s) == live);
    state_destroy(&r.s);
    assert_int_equal(state_new(&r.s), 0);
    uint64_t cs = 0;
    assert_int_equal(ledger_checkpoint_seq(p.l, &cs), 0);
    assert_int_equal(cs, ckpt_seq);
    assert_int_equal(ledger_scan_snapshot(p.l, load_member, NULL, r.s), 0);
    assert_int_equal(ledger_scan_returns(p.l, load_returns, r.s), 0);
    assert_int_equal(ledger_scan(p.l, cs + 1, 0, replay_one, &r), 0);
    assert_true(state_hash(r.s) == live);
    expect_returned(r.s, 1, (int64_t[]){3, 0}, 2);
    expect_returned(r.s, rec.seq, (int64_t[]){1}, 1);
    state_destroy(&r.s);

    rules_destroy(&p.r);
    state_destroy(&p.s);
    ledger_tmp_close(&p.l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_R18_apply_return_tracks_quantities),
        cmocka_unit_test(test_state_R18_debt_from_return),
        cmocka_unit_test(test_state_R18_hash_includes_returns),
        cmocka_unit_test(test_state_R18_checkpoint_round_trip),
        cmocka_unit_test(test_state_R18_ledger_checkpoint_round_trip),
        cmocka_unit_test(test_state_R18_lookup_rate_apply_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
