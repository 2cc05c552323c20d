/* test_year.c: a simulated year through the real daemon, driven by its injectable clock (never
 * sleeping). Thousands of members enrol (some with referrers, some on the fly at their first
 * sale), buy (several lines, excluded categories and flags, redemptions), redeem gifts and
 * return goods (some after the points were spent: debt, R18), day by day from 2026-02-01 to
 * 2027-01-31 (store-local, UTC+8), one message per day and a sweep per day. Twice: with the
 * default rules (calendar expiry on 31 December, R19) and with rolling expiry (90 days).
 *
 * Afterwards the ledger is read (LMDB, read-only) and replayed through an independent model of
 * lots (R17, R18, R20) and of rating (R9-R11, R13, R15, R18, R22, R23, R25): every entry is
 * checked against it (EXPIRE debits exactly the lots due, nothing is rated against a lot that
 * was due, each new lot's expiry, each sale's points, each return's reversal), and every
 * member's state in the daemon must equal the model (balance = credits - debits = the last
 * balance_after, lots, debt, totals, tier). `loyaltyctl verify` passes online and offline.
 * Then (R30) the rules file changes (point value, earn classes, exclusions) and the daemon
 * restarts: verify passes and no member's state moved.
 *
 * Reproducible: LT_YEAR_SEED (printed) fixes every event; LT_YEAR_MEMBERS the member count. */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "entry.h"
#include "harness.h"
#include "ledger.h"

#define YEAR_SEED_DEFAULT 20260201u
#define MEMBERS_DEFAULT 3000
#define DAYS 365
#define OFF_S (8 * 3600) /* the stores' UTC offset: UTC+8 */
#define MAXL 5           /* lines per generated sale */
#define DAY_EVENTS_MAX 1000
#define POINT_FEN 100

/* ------------------------------------------------------------------ deterministic randomness */

static uint64_t g_rnd;

static uint64_t rnd_next(void)
{
    uint64_t z = (g_rnd += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int64_t rnd_range(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd_next() % (uint64_t)(hi - lo + 1));
}

static bool chance(int per_mille)
{
    return rnd_range(0, 999) < per_mille;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ calendar (UTC+8) */

static int64_t days_from_civil(int y, int m, int d)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    return (int64_t)timegm(&tm) / 86400;
}

/* UTC seconds of local midnight starting local day number `day`. */
static int64_t local_midnight(int64_t day)
{
    return day * 86400 - OFF_S;
}

static int64_t local_day(int64_t t)
{
    int64_t l = t + OFF_S;
    return l >= 0 ? l / 86400 : -((-l + 86399) / 86400);
}

static void civil(int64_t day, int *y, int *m, int *d)
{
    time_t t = (time_t)(day * 86400);
    struct tm tm;
    gmtime_r(&t, &tm);
    *y = tm.tm_year + 1900;
    *m = tm.tm_mon + 1;
    *d = tm.tm_mday;
}

typedef enum { MODE_CALENDAR, MODE_ROLLING } expiry_mode;

/* R19 and docs/rules.md "Expiry of new lots": the expiry of a lot earned at t. */
static int64_t expected_expiry(expiry_mode mode, int64_t t)
{
    int64_t day = local_day(t);
    if (mode == MODE_ROLLING)
        return local_midnight(day + 90);
    int y, m, d;
    civil(day, &y, &m, &d);
    int64_t cut = days_from_civil(y, 12, 31);
    if (day >= cut)
        cut = days_from_civil(y + 1, 12, 31);
    return local_midnight(cut);
}

/* ------------------------------------------------------------------ categories and tiers */

static const char *const k_cats[] = {"groceries", "dairy",   "household", "appliances",
                                     "clothing",  "tobacco", "alcohol",   "special_price"};
static const int k_cat_weight[] = {40, 15, 10, 5, 8, 8, 8, 6}; /* percent */

static bool cat_excluded(int c)
{
    return c >= 5; /* tobacco, alcohol, special_price (R9 defaults) */
}

static bool cat_big_ticket(int c)
{
    return c == 3 || c == 4; /* appliances, clothing: 1 point per 50 yuan (R11) */
}

static const char *const k_tiers[] = {"basic", "silver", "gold", "platinum", "diamond"};
static const int64_t k_tier_threshold[] = {0, 100000, 300000, 500000, 1000000};

static int tier_rank(const char *name)
{
    for (int i = 0; i < 5; i++) {
        if (strcmp(name, k_tiers[i]) == 0)
            return i;
    }
    return name[0] == '\0' ? 0 : -1;
}

static int tier_for(int64_t qualifying)
{
    int t = 0;
    for (int i = 0; i < 5; i++) {
        if (qualifying >= k_tier_threshold[i])
            t = i;
    }
    return t;
}

/* ------------------------------------------------------------------ generated events */

typedef enum { YE_ENROL = 1, YE_SALE, YE_GIFT, YE_RETURN } ye_kind;

typedef struct {
    uint8_t kind;
    uint8_t nlines;
    int member;
    int64_t at;
    int64_t redeem; /* sale: redeem_points; gift: points */
    uint8_t cat[MAXL], flags[MAXL];
    int64_t qty[MAXL], list[MAXL], paid[MAXL]; /* sale: unit prices; return: qty returned */
    uint32_t orig;                             /* return: the sale's event id */
    /* the till's side */
    bool accepted;
    uint64_t ack_seq;
    int64_t gen_ret[MAXL]; /* sale: units returned (sent) */
    /* the ledger scan */
    uint64_t seq;
    bool in_ledger;
    int64_t lr_points[MAXL], lr_red[MAXL], scan_ret[MAXL];
} yev;

typedef struct {
    int enrol_day;
    bool walkin; /* no enrolment: enrolled on the fly by its first sale (R8) */
    bool staff;
    bool exists; /* acknowledged by the daemon */
    int referrer;
    uint8_t bm, bd;
    int64_t bal; /* what the acks said (a lower bound, as far as redemptions go) */
} ymem;

/* What the daemon showed for a member. */
typedef struct {
    bool ok;
    int64_t balance, debt, qualifying, lifetime;
    char tier[16];
    size_t n_lots;
    lt_lot *lots;
} yview;

/* The model's member, from the ledger. */
typedef struct {
    bool exists;
    int referrer;
    uint32_t sales;
    int64_t debt, credits, debits, last_after, qual, life;
    bool posted;
    char tier[16];
    uint32_t lots_n, lots_cap;
    lt_lot *lots;
} ymodel;

typedef struct {
    uint64_t enrols, sales, sales_redeeming, gifts, returns, returns_into_debt, walkins;
    uint64_t rejected_insufficient, sweeps, swept;
    uint64_t entries, expire_entries, expire_members, tier_entries, tier_changes, notices;
    uint64_t referral_bonuses, sales_birthday, sales_tier_mult, cutoff_day_credits, duplicates;
    int64_t first_expire_at, first_tier_at;
} ystats;

static lt_daemon g_d;
static int g_members = MEMBERS_DEFAULT;
static ymem *g_m;
static yev *g_ev; /* by event id (1..g_ev_n) */
static size_t g_ev_n, g_ev_cap;
static uint32_t *g_sales; /* accepted sales, for returns */
static size_t g_sales_n, g_sales_cap;
static yview *g_view;
static ymodel *g_model;
static expiry_mode g_mode;
static int64_t g_start_day, g_end_clock;
static ystats g_st;
static char g_rules_dir[64], g_rules_path[128];
static uint32_t g_day_first[DAYS + 1]; /* the first event id of each day */

static void member_name(int m, char *out, size_t cap)
{
    snprintf(out, cap, "y%05d", m);
}

static int member_index(const char *id)
{
    int m;
    char tail;
    if (sscanf(id, "y%d%c", &m, &tail) != 1 || m < 0 || m >= g_members)
        return -1;
    return m;
}

static void *grow_array(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    void *q = realloc(p, n * elem);
    assert_non_null(q);
    memset((char *)q + *cap * elem, 0, (n - *cap) * elem);
    *cap = n;
    return q;
}

static yev *new_event(ye_kind kind, int member)
{
    g_ev = grow_array(g_ev, &g_ev_cap, g_ev_n + 2, sizeof *g_ev);
    yev *e = &g_ev[++g_ev_n]; /* ids from 1 */
    memset(e, 0, sizeof *e);
    e->kind = (uint8_t)kind;
    e->member = member;
    return e;
}

/* ------------------------------------------------------------------ the daemon */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void set_clock(int64_t t)
{
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_SET_CLOCK;
    q.set_clock = t;
    Loyalty__QueryReply *r = h_query(&g_d, &q, 10000);
    assert_non_null(r);
    if (!r->ok)
        fail_msg("set_clock: %s", r->error ? r->error : "?");
    loyalty__query_reply__free_unpacked(r, NULL);
}

static uint64_t sweep(void)
{
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_SWEEP;
    q.sweep = 1;
    Loyalty__QueryReply *r = h_query(&g_d, &q, 60000);
    assert_non_null(r);
    assert_true(r->ok);
    uint64_t n = r->swept;
    loyalty__query_reply__free_unpacked(r, NULL);
    return n;
}

static void ctl_ok(const char *args)
{
    static char out[16384];
    int rc = h_ctl(&g_d, args, out, sizeof out);
    if (rc != 0 || strstr(out, "PASS") == NULL)
        fail_msg("loyaltyctl %s failed (%d): %s", args, rc, out);
}

/* ------------------------------------------------------------------ generating a day */

/* protobuf pieces for the day's events that the harness does not build (reset every day) */
static Loyalty__Enrol g_enrols[DAY_EVENTS_MAX];
static Loyalty__GiftRedemption g_gifts[DAY_EVENTS_MAX];
static Loyalty__ReturnSale g_rets[DAY_EVENTS_MAX];
static Loyalty__EventId g_orig[DAY_EVENTS_MAX];
static Loyalty__ReturnLine g_rlines[DAY_EVENTS_MAX][MAXL];
static Loyalty__ReturnLine *g_rline_ptrs[DAY_EVENTS_MAX][MAXL];
static char g_names[DAY_EVENTS_MAX][16], g_refs[DAY_EVENTS_MAX][16];

static int pick_category(void)
{
    int x = (int)rnd_range(0, 99);
    for (int c = 0; c < 8; c++) {
        if (x < k_cat_weight[c])
            return c;
        x -= k_cat_weight[c];
    }
    return 0;
}

static void gen_sale(int m)
{
    yev *e = new_event(YE_SALE, m);
    e->nlines = (uint8_t)rnd_range(1, MAXL);
    int64_t eligible = 0;
    for (int i = 0; i < e->nlines; i++) {
        int c = pick_category();
        e->cat[i] = (uint8_t)c;
        e->qty[i] = c == 3 ? 1 : rnd_range(1, 3);
        e->list[i] = c == 3   ? rnd_range(20000, 300000)
                     : c == 4 ? rnd_range(5000, 60000)
                              : rnd_range(200, 8000);
        e->paid[i] = chance(300) ? e->list[i] * rnd_range(70, 99) / 100 : e->list[i];
        if (chance(40))
            e->flags[i] = chance(500) ? LOYALTY__LINE_FLAG__LINE_FLAG_GROUP_BUY
                                      : LOYALTY__LINE_FLAG__LINE_FLAG_PROMOTION;
        if (!cat_excluded(c) && e->flags[i] == 0)
            eligible += e->qty[i] * e->paid[i];
    }
    /* R15: pay part with points the acks say the member has; no more than the eligible lines
     * are worth, so that R10 takes the value off them in full */
    int64_t most = eligible / POINT_FEN;
    if (g_m[m].bal < most)
        most = g_m[m].bal;
    if (most >= 5 && chance(150)) {
        e->redeem = rnd_range(1, most);
        g_m[m].bal -= e->redeem;
        g_st.sales_redeeming++;
    }
    g_st.sales++;
}

static void gen_return(uint32_t sale_id)
{
    yev *s = &g_ev[sale_id];
    yev *e = new_event(YE_RETURN, s->member);
    e->orig = sale_id;
    e->nlines = s->nlines;
    bool any = false;
    for (int i = 0; i < s->nlines; i++) {
        int64_t left = s->qty[i] - s->gen_ret[i];
        if (left > 0 && (chance(500) || (!any && i == s->nlines - 1))) {
            e->qty[i] = rnd_range(1, left);
            s->gen_ret[i] += e->qty[i];
            any = true;
        }
    }
    if (!any) { /* nothing left on the last line: take any line with units left */
        for (int i = 0; i < s->nlines && !any; i++) {
            if (s->qty[i] - s->gen_ret[i] > 0) {
                e->qty[i] = 1;
                s->gen_ret[i]++;
                any = true;
            }
        }
    }
    if (!any) {
        g_ev_n--; /* fully returned already */
        return;
    }
    g_st.returns++;
}

/* The protobuf event for generated event id. */
static Loyalty__Event *build(uint32_t id, size_t slot)
{
    yev *y = &g_ev[id];
    member_name(y->member, g_names[slot], sizeof g_names[slot]);
    Loyalty__Event *e;
    switch (y->kind) {
    case YE_ENROL: {
        e = h_event(1, id, g_names[slot], y->at);
        Loyalty__Enrol *en = &g_enrols[slot];
        loyalty__enrol__init(en);
        const ymem *m = &g_m[y->member];
        if (m->bm) {
            en->has_birth_month = en->has_birth_day = 1;
            en->birth_month = m->bm;
            en->birth_day = m->bd;
        }
        if (m->referrer >= 0) {
            member_name(m->referrer, g_refs[slot], sizeof g_refs[slot]);
            en->referrer = g_refs[slot];
        }
        if (m->staff) {
            en->has_staff = 1;
            en->staff = 1;
        }
        e->body_case = LOYALTY__EVENT__BODY_ENROL;
        e->enrol = en;
        return e;
    }
    case YE_SALE:
        e = h_sale(1, id, g_names[slot], y->at, y->redeem);
        for (int i = 0; i < y->nlines; i++) {
            char sku[16];
            snprintf(sku, sizeof sku, "K%d-%d", y->cat[i], i);
            h_line(e, sku, k_cats[y->cat[i]], y->qty[i], y->list[i], y->paid[i], y->flags[i]);
        }
        return e;
    case YE_GIFT: {
        e = h_event(1, id, g_names[slot], y->at);
        Loyalty__GiftRedemption *g = &g_gifts[slot];
        loyalty__gift_redemption__init(g);
        g->has_points = 1;
        g->points = y->redeem;
        g->reward_code = "MUG";
        e->body_case = LOYALTY__EVENT__BODY_GIFT;
        e->gift = g;
        return e;
    }
    default: {
        e = h_event(1, id, g_names[slot], y->at);
        Loyalty__ReturnSale *r = &g_rets[slot];
        loyalty__return_sale__init(r);
        Loyalty__EventId *o = &g_orig[slot];
        loyalty__event_id__init(o);
        o->has_node_id = o->has_event_id = 1;
        o->node_id = 1;
        o->event_id = y->orig;
        r->original = o;
        r->lines = g_rline_ptrs[slot];
        r->n_lines = 0;
        for (int i = 0; i < y->nlines; i++) {
            if (y->qty[i] == 0)
                continue;
            Loyalty__ReturnLine *l = &g_rlines[slot][r->n_lines];
            loyalty__return_line__init(l);
            l->has_line_index = l->has_quantity = 1;
            l->line_index = (uint32_t)i;
            l->quantity = y->qty[i];
            r->lines[r->n_lines++] = l;
        }
        e->body_case = LOYALTY__EVENT__BODY_RETURN_SALE;
        e->return_sale = r;
        return e;
    }
    }
}

static void on_ack(uint32_t id, const Loyalty__Ack *a)
{
    yev *y = &g_ev[id];
    ymem *m = &g_m[y->member];
    char name[16];
    member_name(y->member, name, sizeof name);
    if (a->status == LOYALTY__STATUS__ACCEPTED) {
        y->accepted = true;
        y->ack_seq = a->seq;
        m->exists = true;
        m->bal = a->balance;
        if (y->kind == YE_SALE) {
            g_sales = grow_array(g_sales, &g_sales_cap, g_sales_n + 1, sizeof *g_sales);
            g_sales[g_sales_n++] = id;
        }
        if (y->kind == YE_RETURN && a->balance < 0)
            g_st.returns_into_debt++;
        return;
    }
    /* R15, R16: the acks' balance may be stale (expiry by a sweep): the only refusal allowed */
    if (a->status == LOYALTY__STATUS__REJECTED &&
        a->reason == LOYALTY__REASON__INSUFFICIENT_POINTS && y->redeem > 0 &&
        (y->kind == YE_SALE || y->kind == YE_GIFT)) {
        g_st.rejected_insufficient++;
        m->bal = 0;
        return;
    }
    fail_msg("event %u (%s, kind %d) answered status %d reason %d: %s", id, name, y->kind,
             a->status, a->reason, a->message ? a->message : "");
}

static void send_day(uint32_t first, uint32_t last)
{
    static Loyalty__Event *evs[DAY_EVENTS_MAX];
    for (uint32_t lo = first; lo <= last; lo += DAY_EVENTS_MAX) {
        uint32_t hi = lo + DAY_EVENTS_MAX - 1 < last ? lo + DAY_EVENTS_MAX - 1 : last;
        size_t n = 0;
        for (uint32_t id = lo; id <= hi; id++, n++)
            evs[n] = build(id, n);
        Loyalty__AckBatch *r = h_send(&g_d, h_batch(n, evs), 60000);
        assert_non_null(r);
        if (r->has_reason && r->reason != LOYALTY__REASON__REASON_NONE)
            fail_msg("message of %zu events refused: reason %d: %s", n, r->reason,
                     r->message ? r->message : "");
        assert_int_equal(r->n_acks, n);
        for (size_t i = 0; i < n; i++)
            on_ack(lo + (uint32_t)i, r->acks[i]);
        loyalty__ack_batch__free_unpacked(r, NULL);
        h_free_events();
    }
}

/* One simulated day: its events in time order, one message, then the day's sweep. */
static void run_day(int d)
{
    int64_t day = g_start_day + d;
    uint32_t first = (uint32_t)g_ev_n + 1;
    g_day_first[d] = first;
    /* returns first in the list (the morning), of sales from earlier days */
    int nret = (int)rnd_range(0, 8);
    for (int k = 0; k < nret && g_sales_n > 0; k++)
        gen_return(g_sales[rnd_range(0, (int64_t)g_sales_n - 1)]);
    for (int m = 0; m < g_members; m++) {
        ymem *mm = &g_m[m];
        if (!mm->exists) {
            if (mm->enrol_day > d)
                continue;
            if (mm->walkin) {
                if (chance(300)) { /* its first sale enrols it (R8) */
                    gen_sale(m);
                    g_st.walkins++;
                }
            } else {
                /* a referrer among the members already known, never staff */
                if (!mm->staff && mm->referrer == -2) {
                    mm->referrer = -1;
                    if (chance(400)) {
                        int r = (int)rnd_range(0, g_members - 1);
                        if (r != m && g_m[r].exists && !g_m[r].staff)
                            mm->referrer = r;
                    }
                }
                new_event(YE_ENROL, m);
                g_st.enrols++;
                mm->enrol_day = -1000000; /* sent: wait for the ack */
            }
            continue;
        }
        if (chance(60))
            gen_sale(m);
        if (mm->bal >= 20 && chance(6)) {
            yev *g = new_event(YE_GIFT, m);
            g->redeem = mm->bal * rnd_range(50, 100) / 100; /* often nearly all of it */
            mm->bal -= g->redeem;
            g_st.gifts++;
        }
    }
    uint32_t last = (uint32_t)g_ev_n;
    int64_t open = local_midnight(day) + 8 * 3600, span = 14 * 3600;
    for (uint32_t id = first; id <= last; id++)
        g_ev[id].at = open + (int64_t)(id - first) * span / (int64_t)(last - first + 1);
    set_clock(local_midnight(day) + 22 * 3600);
    if (last >= first)
        send_day(first, last);
    g_st.swept += sweep();
    g_st.sweeps++;
}

/* ------------------------------------------------------------------ the model of the ledger */

static int64_t model_lots(const ymodel *m)
{
    int64_t s = 0;
    for (uint32_t i = 0; i < m->lots_n; i++)
        s += m->lots[i].points;
    return s;
}

static int64_t model_balance(const ymodel *m)
{
    return model_lots(m) - m->debt;
}

static bool lot_before(const lt_lot *a, const lt_lot *b)
{
    int64_t ea = a->expires_at ? a->expires_at : INT64_MAX;
    int64_t eb = b->expires_at ? b->expires_at : INT64_MAX;
    return ea != eb ? ea < eb : a->earned_at < b->earned_at;
}

/* R18: a credit pays the debt first; the rest is a new lot, in spend order (R17). */
static void model_credit(ymodel *m, int64_t credit, int64_t earned_at, int64_t expires_at)
{
    int64_t pay = credit < m->debt ? credit : m->debt;
    m->debt -= pay;
    credit -= pay;
    if (credit == 0)
        return;
    lt_lot lot = {credit, earned_at, expires_at};
    uint32_t i = m->lots_n;
    while (i > 0 && lot_before(&lot, &m->lots[i - 1]))
        i--;
    if (i > 0 && m->lots[i - 1].expires_at == expires_at && m->lots[i - 1].earned_at == earned_at) {
        m->lots[i - 1].points += credit;
        return;
    }
    if (m->lots_n == m->lots_cap) {
        m->lots_cap = m->lots_cap ? 2 * m->lots_cap : 8;
        m->lots = realloc(m->lots, m->lots_cap * sizeof *m->lots);
        assert_non_null(m->lots);
    }
    memmove(m->lots + i + 1, m->lots + i, (m->lots_n - i) * sizeof *m->lots);
    m->lots[i] = lot;
    m->lots_n++;
}

/* R17: FIFO by expiry; beyond the lots (returns only) the rest is debt. Returns the debt
 * created. */
static int64_t model_debit(ymodel *m, int64_t debit)
{
    uint32_t gone = 0;
    while (debit > 0 && gone < m->lots_n) {
        lt_lot *l = &m->lots[gone];
        int64_t take = l->points < debit ? l->points : debit;
        l->points -= take;
        debit -= take;
        if (l->points == 0)
            gone++;
    }
    if (gone > 0) /* m->lots may be NULL when empty: no memmove of nothing from NULL (UB) */
        memmove(m->lots, m->lots + gone, (m->lots_n - gone) * sizeof *m->lots);
    m->lots_n -= gone;
    m->debt += debit;
    return debit;
}

/* points of lots due by t */
static int64_t model_due(const ymodel *m, int64_t t)
{
    int64_t s = 0;
    for (uint32_t i = 0; i < m->lots_n; i++) {
        if (m->lots[i].expires_at != 0 && m->lots[i].expires_at <= t)
            s += m->lots[i].points;
    }
    return s;
}

typedef struct {
    lt_entry e;
    uint64_t last_seq;
    char err[1024];
} yscan;

#define YFAIL(...)                                                                                 \
    do {                                                                                           \
        snprintf(c->err, sizeof c->err, __VA_ARGS__);                                              \
        return 1;                                                                                  \
    } while (0)

static int64_t share(int64_t x, int64_t qty, int64_t done, int64_t q)
{
    return (int64_t)((__int128)x * (done + q) / qty - (__int128)x * done / qty);
}

/* The independent rating of sale y (R9-R11, R13, R15, R22, R23, R25) against entry e. */
static int check_sale(yscan *c, uint64_t seq, const lt_entry *e, yev *y, const ymodel *mm,
                      bool created)
{
    const ymem *gm = &g_m[y->member];
    const lt_posting *p = &e->postings[0];
    if (e->points_redeemed != y->redeem || p->debit != y->redeem)
        YFAIL("seq %" PRIu64 " %s: redeemed %" PRId64 " (debit %" PRId64 "), the sale redeemed "
              "%" PRId64,
              seq, e->member_id, e->points_redeemed, p->debit, y->redeem);
    if (e->lines_n != y->nlines)
        YFAIL("seq %" PRIu64 ": %u line results for %u lines", seq, e->lines_n, y->nlines);
    for (int i = 0; i < y->nlines; i++) {
        y->lr_points[i] = e->lines[i].points;
        y->lr_red[i] = e->lines[i].redeemed_points;
    }
    if (gm->staff) { /* R6 */
        if (e->points_earned != 0 || p->qualifying_delta != 0)
            YFAIL("seq %" PRIu64 " staff %s earned %" PRId64 " qualifying %" PRId64, seq,
                  e->member_id, e->points_earned, p->qualifying_delta);
        return 0;
    }
    /* R9, R10: eligible lines lose the points-paid value pro rata, leftover fen in line order */
    int64_t value = y->redeem * POINT_FEN, elig_paid = 0, elig[MAXL] = {0};
    bool ok[MAXL];
    for (int i = 0; i < y->nlines; i++) {
        ok[i] = !cat_excluded(y->cat[i]) && y->flags[i] == 0;
        if (ok[i])
            elig_paid += y->qty[i] * y->paid[i];
    }
    int64_t left = value;
    for (int i = 0; i < y->nlines; i++) {
        if (!ok[i])
            continue;
        int64_t lp = y->qty[i] * y->paid[i];
        int64_t loss = elig_paid ? (int64_t)((__int128)value * lp / elig_paid) : 0;
        elig[i] = lp - loss;
        left -= loss;
    }
    for (int i = 0; i < y->nlines && left > 0; i++) {
        if (ok[i] && elig[i] > 0) { /* to earning lines not yet fully paid with points */
            elig[i]--;
            left--;
        }
    }
    int64_t def = 0, big = 0;
    for (int i = 0; i < y->nlines; i++) {
        if (e->lines[i].eligible_fen != elig[i])
            YFAIL("seq %" PRIu64 " %s line %d (%s): eligible %" PRId64 ", expected %" PRId64, seq,
                  e->member_id, i, k_cats[y->cat[i]], e->lines[i].eligible_fen, elig[i]);
        if (cat_big_ticket(y->cat[i]))
            big += elig[i];
        else
            def += elig[i];
    }
    int64_t eligible = def + big;
    int64_t base = def / 100 + big / 5000; /* R11 */
    /* R13: birthday x2 on the local date, tier x2 from gold, stacking max */
    int yy, mo, dd;
    civil(local_day(e->occurred_at), &yy, &mo, &dd);
    bool bday = gm->bm != 0 && gm->bm == mo && gm->bd == dd;
    int rank = created ? 0 : tier_rank(mm->tier);
    uint32_t mult = (bday || rank >= 2) ? 200 : 100;
    if (eligible == 0) /* docs/rules.md: 100 when no line earns */
        mult = e->multiplier_pct;
    int64_t points = base * mult / 100;
    g_st.sales_birthday += bday;
    g_st.sales_tier_mult += rank >= 2;
    if (e->eligible_fen != eligible || e->base_points != base || e->multiplier_pct != mult ||
        e->points_earned != points || p->credit != points)
        YFAIL("seq %" PRIu64 " %s (event %" PRIu64 "): eligible %" PRId64 " base %" PRId64
              " x%u points %" PRId64 " credit %" PRId64 "; expected %" PRId64 " %" PRId64
              " x%u %" PRId64 " (birthday %d, tier %s)",
              seq, e->member_id, e->id.event_id, e->eligible_fen, e->base_points, e->multiplier_pct,
              e->points_earned, p->credit, eligible, base, mult, points, bday,
              created ? "new" : mm->tier);
    int64_t paid = 0;
    for (int i = 0; i < y->nlines; i++)
        paid += y->qty[i] * y->paid[i];
    if (p->lifetime_delta_fen != paid || e->paid_fen != paid) /* R9: every line, points too */
        YFAIL("seq %" PRIu64 " %s: lifetime delta %" PRId64 " paid %" PRId64 ", expected %" PRId64,
              seq, e->member_id, p->lifetime_delta_fen, e->paid_fen, paid);
    if (p->qualifying_delta != eligible) /* R22 */
        YFAIL("seq %" PRIu64 " %s: qualifying %" PRId64 ", expected %" PRId64, seq, e->member_id,
              p->qualifying_delta, eligible);
    /* R23: straight to the highest tier the new total reaches, never down */
    int64_t qual = (created ? 0 : mm->qual) + eligible;
    int want = tier_for(qual) > rank ? tier_for(qual) : rank;
    int got = p->tier_after[0] ? tier_rank(p->tier_after) : rank;
    if (got != want)
        YFAIL("seq %" PRIu64 " %s: tier after %s (was %s, qualifying %" PRId64 "), expected %s",
              seq, e->member_id, p->tier_after[0] ? p->tier_after : "(unchanged)",
              created ? "new" : mm->tier, qual, k_tiers[want]);
    /* R25: the referred member's first sale with an earning base pays the referrer */
    bool bonus = !created && mm->referrer >= 0 && mm->sales == 0 && eligible > 0 &&
                 g_model[mm->referrer].exists;
    bool has = e->postings_n > 1 && strcmp(e->postings[1].reason, "referral") == 0;
    if (bonus != has || (has && e->postings[1].credit != 100))
        YFAIL("seq %" PRIu64 " %s: referral posting %s, expected %s", seq, e->member_id,
              has ? "present" : "absent", bonus ? "100 points to the referrer" : "none");
    if (has) {
        char rn[16];
        member_name(mm->referrer, rn, sizeof rn);
        if (strcmp(e->postings[1].member_id, rn) != 0)
            YFAIL("seq %" PRIu64 ": referral to %s, the referrer is %s", seq,
                  e->postings[1].member_id, rn);
        g_st.referral_bonuses++;
    }
    return 0;
}

/* R18: the reversal of return y against the kept line results of its sale. */
static int check_return(yscan *c, uint64_t seq, const lt_entry *e, yev *y)
{
    yev *s = &g_ev[y->orig];
    if (!s->in_ledger || e->original_seq != s->seq)
        YFAIL("seq %" PRIu64 ": return of event %u names sale seq %" PRIu64 ", it is at %" PRIu64,
              seq, y->orig, e->original_seq, s->seq);
    int64_t rev = 0, back = 0;
    for (int i = 0; i < s->nlines; i++) {
        if (y->qty[i] == 0)
            continue;
        rev += share(s->lr_points[i], s->qty[i], s->scan_ret[i], y->qty[i]);
        back += share(s->lr_red[i], s->qty[i], s->scan_ret[i], y->qty[i]);
        s->scan_ret[i] += y->qty[i];
    }
    const lt_posting *p = &e->postings[0];
    /* the daemon stamps tier_after = tier_before when it does not change (daemon.c) */
    const char *tier = g_model[y->member].tier;
    if (e->postings_n != 1 || p->debit != rev || p->credit != back ||
        (p->tier_after[0] && strcmp(p->tier_after, tier) != 0))
        YFAIL("seq %" PRIu64 " %s: return of sale seq %" PRIu64 " debits %" PRId64
              " credits %" PRId64 " (tier '%s'), expected %" PRId64 " and %" PRId64 " and tier %s",
              seq, e->member_id, s->seq, p->debit, p->credit, p->tier_after, rev, back, tier);
    return 0;
}

static int apply_postings(yscan *c, uint64_t seq, const lt_entry *e)
{
    for (uint32_t i = 0; i < e->postings_n; i++) {
        const lt_posting *p = &e->postings[i];
        int mi = member_index(p->member_id);
        if (mi < 0)
            YFAIL("seq %" PRIu64 ": posting for unknown member id '%s'", seq, p->member_id);
        ymodel *m = &g_model[mi];
        if (p->create) {
            if (m->exists)
                YFAIL("seq %" PRIu64 ": %s created twice", seq, p->member_id);
            m->exists = true;
            m->referrer = p->referrer[0] ? member_index(p->referrer) : -1;
            snprintf(m->tier, sizeof m->tier, "basic");
        } else if (!m->exists) {
            YFAIL("seq %" PRIu64 ": posting for %s before it exists", seq, p->member_id);
        }
        if (p->debit < 0 || p->credit < 0)
            YFAIL("seq %" PRIu64 " %s: debit %" PRId64 " credit %" PRId64, seq, p->member_id,
                  p->debit, p->credit);
        /* a new lot's expiry (R19), for every credit an event makes */
        if (p->credit > 0 && (e->id.node_id != 0 || e->id.event_id != 0) &&
            p->credit_expires_at != expected_expiry(g_mode, e->occurred_at))
            YFAIL("seq %" PRIu64 " %s: credit of %" PRId64 " at %" PRId64 " expires at %" PRId64
                  ", expected %" PRId64,
                  seq, p->member_id, p->credit, e->occurred_at, p->credit_expires_at,
                  expected_expiry(g_mode, e->occurred_at));
        if (p->credit > 0 && e->kind == LT_ENTRY_SALE) {
            int y, mo, d;
            civil(local_day(e->occurred_at), &y, &mo, &d);
            g_st.cutoff_day_credits += mo == 12 && d == 31;
        }
        int64_t held = model_lots(m);
        if (p->debit > held && !(e->kind == LT_ENTRY_RETURN && strcmp(p->reason, "return") == 0))
            YFAIL("seq %" PRIu64 " %s: debit %" PRId64 " beyond the %" PRId64
                  " points held (entry kind %d)",
                  seq, p->member_id, p->debit, held, e->kind);
        model_debit(m, p->debit);
        model_credit(m, p->credit, e->occurred_at, p->credit_expires_at);
        m->credits += p->credit;
        m->debits += p->debit;
        m->qual += p->qualifying_delta;
        m->life += p->lifetime_delta_fen;
        if (p->tier_after[0])
            snprintf(m->tier, sizeof m->tier, "%s", p->tier_after);
        if (p->count_sale)
            m->sales++;
        m->last_after = p->balance_after;
        m->posted = true;
        if (model_balance(m) != p->balance_after)
            YFAIL("seq %" PRIu64 " %s: balance_after %" PRId64 ", the model gives %" PRId64
                  " (lots %" PRId64 ", debt %" PRId64 ")",
                  seq, p->member_id, p->balance_after, model_balance(m), model_lots(m), m->debt);
        if (m->credits - m->debits != model_balance(m))
            YFAIL("seq %" PRIu64 " %s: credits - debits %" PRId64 " != balance %" PRId64, seq,
                  p->member_id, m->credits - m->debits, model_balance(m));
    }
    return 0;
}

static int scan_system(yscan *c, uint64_t seq, const lt_entry *e)
{
    int mi = member_index(e->member_id);
    if (mi < 0 || !g_model[mi].exists)
        YFAIL("seq %" PRIu64 ": system entry for unknown member '%s'", seq, e->member_id);
    ymodel *m = &g_model[mi];
    if (e->kind == LT_ENTRY_EXPIRE) {
        /* R20: exactly the lots due by its time, all of them */
        int64_t due = model_due(m, e->occurred_at);
        if (e->postings_n != 1 || e->postings[0].debit != due || due == 0)
            YFAIL("seq %" PRIu64 " %s: EXPIRE at %" PRId64 " debits %" PRId64
                  ", the lots due by then hold %" PRId64,
                  seq, e->member_id, e->occurred_at, e->postings_n ? e->postings[0].debit : -1,
                  due);
        g_st.expire_entries++;
        if (g_st.first_expire_at == 0 || e->occurred_at < g_st.first_expire_at)
            g_st.first_expire_at = e->occurred_at;
        if (g_mode == MODE_CALENDAR &&
            e->occurred_at < local_midnight(days_from_civil(2026, 12, 31)))
            YFAIL("seq %" PRIu64 " %s: EXPIRE at %" PRId64 ", before the first cut-off", seq,
                  e->member_id, e->occurred_at);
    } else if (e->kind == LT_ENTRY_TIER_PERIOD) {
        /* R24: the period ends at 1 January local; the total starts again from zero */
        if (e->occurred_at < local_midnight(days_from_civil(2027, 1, 1)))
            YFAIL("seq %" PRIu64 " %s: TIER_PERIOD at %" PRId64 ", before 2027-01-01", seq,
                  e->member_id, e->occurred_at);
        if (e->postings_n < 1 || e->postings[0].qualifying_delta != -m->qual)
            YFAIL("seq %" PRIu64 " %s: TIER_PERIOD qualifying delta %" PRId64
                  ", total was %" PRId64,
                  seq, e->member_id, e->postings_n ? e->postings[0].qualifying_delta : 0, m->qual);
        /* to_qualified: the tier the ended period's total reaches when below retain */
        int rank = tier_rank(m->tier), want = rank;
        if (rank < 0)
            YFAIL("seq %" PRIu64 " %s: unknown tier '%s'", seq, e->member_id, m->tier);
        if (m->qual < k_tier_threshold[rank])
            want = tier_for(m->qual);
        int got = e->postings[0].tier_after[0] ? tier_rank(e->postings[0].tier_after) : rank;
        if (got != want)
            YFAIL("seq %" PRIu64 " %s: TIER_PERIOD tier %s -> %s with total %" PRId64
                  ", expected %s",
                  seq, e->member_id, m->tier, k_tiers[got < 0 ? 0 : got], m->qual, k_tiers[want]);
        g_st.tier_entries++;
        g_st.tier_changes += got != rank;
        if (g_st.first_tier_at == 0)
            g_st.first_tier_at = e->occurred_at;
    } else if (e->kind == LT_ENTRY_NOTICE) {
        for (uint32_t i = 0; i < e->postings_n; i++) {
            if (e->postings[i].debit || e->postings[i].credit)
                YFAIL("seq %" PRIu64 ": a notice moves points", seq);
        }
        g_st.notices++;
    } else {
        YFAIL("seq %" PRIu64 ": system entry of kind %d", seq, e->kind);
    }
    return apply_postings(c, seq, e);
}

static int scan_entry(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len)
{
    yscan *c = ctx;
    lt_entry *e = &c->e;
    if (seq != c->last_seq + 1)
        YFAIL("ledger gap: seq %" PRIu64 " after %" PRIu64, seq, c->last_seq);
    c->last_seq = seq;
    g_st.entries++;
    if (entry_decode(bytes, len, e) != 0)
        YFAIL("seq %" PRIu64 ": entry does not decode", seq);
    if (e->id.node_id == 0 && e->id.event_id == 0)
        return scan_system(c, seq, e);
    if (e->id.node_id != 1 || e->id.event_id < 1 || e->id.event_id > g_ev_n)
        YFAIL("seq %" PRIu64 ": unknown event %" PRIu64 "/%" PRIu64, seq, e->id.node_id,
              e->id.event_id);
    yev *y = &g_ev[e->id.event_id];
    if (y->in_ledger || !y->accepted)
        YFAIL("seq %" PRIu64 ": event %" PRIu64 " in the ledger %s", seq, e->id.event_id,
              y->in_ledger ? "twice" : "but it was not accepted");
    y->in_ledger = true;
    y->seq = seq;
    if (y->ack_seq != seq)
        YFAIL("event %" PRIu64 " is at seq %" PRIu64 ", its ack said %" PRIu64, e->id.event_id, seq,
              y->ack_seq);
    char name[16];
    member_name(y->member, name, sizeof name);
    if (strcmp(e->member_id, name) != 0 || e->postings_n < 1 ||
        strcmp(e->postings[0].member_id, name) != 0)
        YFAIL("seq %" PRIu64 ": entry of %s for event of %s", seq, e->member_id, name);
    ymodel *m = &g_model[y->member];
    /* R20: whatever fell due by the event's time was written before it */
    if (m->exists && model_due(m, e->occurred_at) != 0)
        YFAIL("seq %" PRIu64 " %s: event %" PRIu64 " at %" PRId64 " rated while %" PRId64
              " points were due to expire by then",
              seq, name, e->id.event_id, e->occurred_at, model_due(m, e->occurred_at));
    int rc = 0;
    switch (y->kind) {
    case YE_ENROL:
        if (e->kind != LT_ENTRY_ENROL || !e->postings[0].create)
            YFAIL("seq %" PRIu64 ": enrolment recorded as kind %d", seq, e->kind);
        break;
    case YE_SALE:
        if (e->kind != LT_ENTRY_SALE)
            YFAIL("seq %" PRIu64 ": sale recorded as kind %d", seq, e->kind);
        rc = check_sale(c, seq, e, y, m, !m->exists);
        break;
    case YE_GIFT:
        if (e->kind != LT_ENTRY_GIFT || e->postings[0].debit != y->redeem ||
            e->postings[0].credit != 0)
            YFAIL("seq %" PRIu64 ": gift of %" PRId64 " recorded as kind %d debit %" PRId64, seq,
                  y->redeem, e->kind, e->postings[0].debit);
        break;
    default:
        if (e->kind != LT_ENTRY_RETURN)
            YFAIL("seq %" PRIu64 ": return recorded as kind %d", seq, e->kind);
        rc = check_return(c, seq, e, y);
        break;
    }
    return rc != 0 ? rc : apply_postings(c, seq, e);
}

/* ------------------------------------------------------------------ member views */

static void view_free(yview *v)
{
    free(v->lots);
    memset(v, 0, sizeof *v);
}

static void take_views(yview *out)
{
    for (int i = 0; i < g_members; i++) {
        char name[16];
        member_name(i, name, sizeof name);
        Loyalty__QueryReply *q = h_member(&g_d, name);
        assert_non_null(q);
        yview *v = &out[i];
        view_free(v);
        if (q->ok && q->member != NULL) {
            const Loyalty__MemberView *mv = q->member;
            v->ok = true;
            v->balance = mv->balance;
            v->debt = mv->debt;
            v->qualifying = mv->qualifying;
            v->lifetime = mv->lifetime_spend_fen;
            snprintf(v->tier, sizeof v->tier, "%s", mv->tier ? mv->tier : "");
            v->n_lots = mv->n_lots;
            v->lots = calloc(mv->n_lots + 1, sizeof *v->lots);
            assert_non_null(v->lots);
            for (size_t k = 0; k < mv->n_lots; k++)
                v->lots[k] =
                    (lt_lot){mv->lots[k]->points, mv->lots[k]->earned_at, mv->lots[k]->expires_at};
        }
        loyalty__query_reply__free_unpacked(q, NULL);
    }
}

static void compare_views(const yview *a, const yview *b, const char *what)
{
    for (int i = 0; i < g_members; i++) {
        char name[16];
        member_name(i, name, sizeof name);
        bool same = a[i].ok == b[i].ok && a[i].balance == b[i].balance && a[i].debt == b[i].debt &&
                    a[i].qualifying == b[i].qualifying && a[i].lifetime == b[i].lifetime &&
                    strcmp(a[i].tier, b[i].tier) == 0 && a[i].n_lots == b[i].n_lots;
        for (size_t k = 0; same && k < a[i].n_lots; k++)
            same = memcmp(&a[i].lots[k], &b[i].lots[k], sizeof(lt_lot)) == 0;
        if (!same)
            fail_msg("%s: %s changed: balance %" PRId64 " -> %" PRId64 ", tier %s -> %s, "
                     "qualifying %" PRId64 " -> %" PRId64 ", %zu -> %zu lots",
                     what, name, a[i].balance, b[i].balance, a[i].tier, b[i].tier, a[i].qualifying,
                     b[i].qualifying, a[i].n_lots, b[i].n_lots);
    }
}

/* Every member the daemon shows against the model of its ledger postings. */
static void check_members(void)
{
    uint64_t debtors = 0, lots = 0, existing = 0;
    for (int i = 0; i < g_members; i++) {
        char name[16];
        member_name(i, name, sizeof name);
        const yview *v = &g_view[i];
        const ymodel *m = &g_model[i];
        if (v->ok != m->exists)
            fail_msg("%s: the daemon %s it, the ledger %s", name, v->ok ? "knows" : "does not know",
                     m->exists ? "creates it" : "does not");
        if (!m->exists)
            continue;
        existing++;
        int64_t sum = m->credits - m->debits;
        if (v->balance != sum || !m->posted || v->balance != m->last_after)
            fail_msg("%s: balance %" PRId64 ", ledger credits - debits %" PRId64
                     ", last balance_after %" PRId64,
                     name, v->balance, sum, m->last_after);
        if (v->debt != m->debt || v->qualifying != m->qual || v->lifetime != m->life ||
            tier_rank(v->tier) != tier_rank(m->tier))
            fail_msg("%s: debt %" PRId64 " qualifying %" PRId64 " lifetime %" PRId64 " tier %s; "
                     "from the ledger %" PRId64 " %" PRId64 " %" PRId64 " %s",
                     name, v->debt, v->qualifying, v->lifetime, v->tier, m->debt, m->qual, m->life,
                     m->tier);
        /* R23: never below the tier the current total reaches */
        if (tier_rank(v->tier) < tier_for(v->qualifying))
            fail_msg("%s: tier %s with qualifying %" PRId64, name, v->tier, v->qualifying);
        if (v->n_lots != m->lots_n)
            fail_msg("%s: %zu lots, the ledger gives %u", name, v->n_lots, m->lots_n);
        int64_t held = 0;
        for (size_t k = 0; k < v->n_lots; k++) {
            const lt_lot *a = &v->lots[k], *b = &m->lots[k];
            if (a->points <= 0 && v->balance >= 0)
                fail_msg("%s: lot %zu holds %" PRId64 " points (balance %" PRId64 ")", name, k,
                         a->points, v->balance);
            if (a->points != b->points || a->earned_at != b->earned_at ||
                a->expires_at != b->expires_at)
                fail_msg("%s: lot %zu is (%" PRId64 ", earned %" PRId64 ", expires %" PRId64
                         "), the ledger gives (%" PRId64 ", %" PRId64 ", %" PRId64 ")",
                         name, k, a->points, a->earned_at, a->expires_at, b->points, b->earned_at,
                         b->expires_at);
            /* the last sweep (at the end clock) left nothing overdue (R20) */
            if (a->expires_at != 0 && a->expires_at <= g_end_clock)
                fail_msg("%s: lot %zu expired at %" PRId64 " but is still held at %" PRId64, name,
                         k, a->expires_at, g_end_clock);
            held += a->points;
        }
        if (held - v->debt != v->balance)
            fail_msg("%s: lots %" PRId64 " - debt %" PRId64 " != balance %" PRId64, name, held,
                     v->debt, v->balance);
        debtors += v->balance < 0;
        lots += v->n_lots;
    }
    fprintf(stderr, "year: %" PRIu64 " members, %" PRIu64 " in debt, %" PRIu64 " lots held\n",
            existing, debtors, lots);
    assert_true(debtors > 0 || g_st.returns_into_debt > 0);
}

static void scan_ledger(void)
{
    ledger *l = NULL;
    char err[256];
    ledger_opts o = {.dir = g_d.data, .read_only = true};
    if (ledger_open(&l, &o, err, sizeof err) != 0)
        fail_msg("ledger_open: %s", err);
    yscan *c = calloc(1, sizeof *c);
    assert_non_null(c);
    int rc = ledger_scan(l, 1, 0, scan_entry, c);
    ledger_close(&l);
    if (rc != 0)
        fail_msg("ledger: %s", c->err[0] ? c->err : ledger_strerror(rc));
    free(c);
    for (size_t id = 1; id <= g_ev_n; id++) {
        if (g_ev[id].accepted && !g_ev[id].in_ledger)
            fail_msg("event %zu was accepted but is not in the ledger", id);
    }
}

/* ------------------------------------------------------------------ the year */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    return s != NULL && *s != '\0' ? strtoull(s, NULL, 0) : dflt;
}

static void reset(void)
{
    free(g_m);
    free(g_ev);
    free(g_sales);
    if (g_model != NULL) {
        for (int i = 0; i < g_members; i++)
            free(g_model[i].lots);
    }
    free(g_model);
    if (g_view != NULL) {
        for (int i = 0; i < g_members; i++)
            view_free(&g_view[i]);
    }
    free(g_view);
    g_m = NULL;
    g_ev = NULL;
    g_sales = NULL;
    g_model = NULL;
    g_view = NULL;
    g_ev_n = g_ev_cap = g_sales_n = g_sales_cap = 0;
    memset(&g_st, 0, sizeof g_st);
}

/* Stops the daemon (SIGKILL: acked events are durable; SIGTERM: exit 0) after day d, starts it
 * again, and resends day d's accepted events: each is DUPLICATE with its original seq (R29). */
static void restart_and_resend(int d, int sig)
{
    assert_int_equal(h_stop(&g_d, sig), sig == SIGKILL ? 128 + SIGKILL : 0);
    h_restart(&g_d);
    set_clock(local_midnight(g_start_day + d) + 22 * 3600 + 60);
    static Loyalty__Event *evs[DAY_EVENTS_MAX];
    static uint32_t ids[DAY_EVENTS_MAX];
    size_t n = 0;
    for (uint32_t id = g_day_first[d]; id <= g_ev_n && n < DAY_EVENTS_MAX; id++) {
        if (g_ev[id].accepted) {
            ids[n] = id;
            evs[n] = build(id, n);
            n++;
        }
    }
    assert_true(n > 0);
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(n, evs), 60000);
    assert_non_null(r);
    assert_int_equal(r->n_acks, n);
    for (size_t i = 0; i < n; i++) {
        if (r->acks[i]->status != LOYALTY__STATUS__DUPLICATE ||
            r->acks[i]->seq != g_ev[ids[i]].ack_seq)
            fail_msg("resent event %u after restart: status %d seq %" PRIu64
                     ", expected DUPLICATE seq %" PRIu64 " (reason %d: %s)",
                     ids[i], r->acks[i]->status, r->acks[i]->seq, g_ev[ids[i]].ack_seq,
                     r->acks[i]->reason, r->acks[i]->message ? r->acks[i]->message : "");
    }
    g_st.duplicates += n;
    loyalty__ack_batch__free_unpacked(r, NULL);
    h_free_events();
    /* nothing new fell due since the day's sweep: the markers came back with the state */
    assert_int_equal(sweep(), 0);
}

static void run_year(expiry_mode mode)
{
    reset();
    uint64_t seed = env_u64("LT_YEAR_SEED", YEAR_SEED_DEFAULT);
    g_members = (int)env_u64("LT_YEAR_MEMBERS", MEMBERS_DEFAULT);
    if (g_members < 10 || g_members > 99999)
        g_members = MEMBERS_DEFAULT;
    g_rnd = seed;
    g_mode = mode;
    const char *mname = mode == MODE_CALENDAR ? "calendar" : "rolling";
    fprintf(stderr, "year (%s): seed %" PRIu64 " (LT_YEAR_SEED), %d members (LT_YEAR_MEMBERS)\n",
            mname, seed, g_members);
    int64_t t0 = now_ms();

    snprintf(g_rules_dir, sizeof g_rules_dir, "/tmp/lt-year-XXXXXX");
    assert_non_null(mkdtemp(g_rules_dir));
    snprintf(g_rules_path, sizeof g_rules_path, "%s/rules.yaml", g_rules_dir);
    const char *expiry_yaml =
        mode == MODE_ROLLING ? "expiry:\n  mode: rolling\n  ttl_days: 90\n" : "";
    char rules[512], cfg[512];
    snprintf(rules, sizeof rules, "version: year-%s\n%s", mname, expiry_yaml);
    write_file(g_rules_path, rules);
    snprintf(cfg, sizeof cfg, "test_clock: 1\nsweep_interval_ms: 86400000\nrules_file: %s\n",
             g_rules_path);
    h_start(&g_d, cfg);

    g_m = calloc((size_t)g_members, sizeof *g_m);
    g_model = calloc((size_t)g_members, sizeof *g_model);
    g_view = calloc((size_t)g_members, sizeof *g_view);
    assert_non_null(g_m);
    assert_non_null(g_model);
    assert_non_null(g_view);
    for (int i = 0; i < g_members; i++) {
        ymem *m = &g_m[i];
        m->enrol_day = chance(500) ? (int)rnd_range(0, 27) : (int)rnd_range(0, 330);
        m->walkin = chance(100);
        m->staff = !m->walkin && chance(10);
        m->referrer = -2; /* chosen at enrolment */
        if (!m->walkin && chance(700)) {
            m->bm = (uint8_t)rnd_range(1, 12);
            m->bd = (uint8_t)rnd_range(1, 28);
        }
        g_model[i].referrer = -1;
    }
    g_start_day = days_from_civil(2026, 2, 1);
    for (int d = 0; d < DAYS; d++) {
        run_day(d);
        if (d == 150 || d == 300) /* mid-year restarts: the clock is lost, set again */
            restart_and_resend(d, d == 150 ? SIGKILL : SIGTERM);
    }
    g_day_first[DAYS] = (uint32_t)g_ev_n + 1;
    g_end_clock = local_midnight(g_start_day + DAYS - 1) + 22 * 3600;
    int64_t t_sim = now_ms();

    /* online: verify, then what every member looks like */
    ctl_ok("verify --online");
    take_views(g_view);
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    ctl_ok("verify --offline");
    scan_ledger();
    check_members();

    fprintf(stderr,
            "year (%s): %zu events: %" PRIu64 " enrolments, %" PRIu64 " sales (%" PRIu64
            " redeeming, %" PRIu64 " enrolling walk-ins), %" PRIu64 " gifts, %" PRIu64
            " returns (%" PRIu64 " into debt), %" PRIu64 " refused INSUFFICIENT_POINTS; %" PRIu64
            " sweeps wrote %" PRIu64 "\n"
            "year (%s): ledger %" PRIu64 " entries: %" PRIu64 " EXPIRE (first %" PRId64
            "), %" PRIu64 " TIER_PERIOD (%" PRIu64 " tier changes), %" PRIu64 " NOTICE; %" PRIu64
            " referral bonuses, %" PRIu64 " birthday sales, %" PRIu64 " sales at x2 tier, %" PRIu64
            " resent as DUPLICATE\n",
            mname, g_ev_n, g_st.enrols, g_st.sales, g_st.sales_redeeming, g_st.walkins, g_st.gifts,
            g_st.returns, g_st.returns_into_debt, g_st.rejected_insufficient, g_st.sweeps,
            g_st.swept, mname, g_st.entries, g_st.expire_entries, g_st.first_expire_at,
            g_st.tier_entries, g_st.tier_changes, g_st.notices, g_st.referral_bonuses,
            g_st.sales_birthday, g_st.sales_tier_mult, g_st.duplicates);

    /* what the year must have exercised */
    assert_true(g_st.returns_into_debt > 0);
    assert_true(g_st.referral_bonuses > 0);
    assert_true(g_st.sales_tier_mult > 0);
    assert_true(g_st.expire_entries > 0);
    if (mode == MODE_CALENDAR) {
        /* R19: the first expiry is the cut-off, 2026-12-31 00:00 local; R24: periods end */
        assert_true(g_st.first_expire_at >= local_midnight(days_from_civil(2026, 12, 31)));
        assert_true(g_st.first_expire_at < local_midnight(days_from_civil(2027, 1, 1)));
        assert_true(g_st.expire_entries >= (uint64_t)g_members / 4);
        assert_true(g_st.cutoff_day_credits > 0); /* earned on 31 December: next year's lots */
    } else {
        /* R19 rolling: nothing expires in the first 90 days */
        assert_true(g_st.first_expire_at >= local_midnight(g_start_day + 90));
        assert_true(g_st.first_expire_at < local_midnight(g_start_day + 100));
    }
    assert_true(g_st.tier_entries > 0);

    /* R30: another rules file (point value, earn classes, exclusions); the same state */
    snprintf(rules, sizeof rules,
             "version: year-changed\npoint_value_fen: 50\nearn_classes:\n  - name: default\n"
             "    unit_fen: 200\n  - name: big_ticket\n    unit_fen: 1000\n"
             "    categories: [appliances]\nexcluded_categories: [tobacco]\n%s",
             expiry_yaml);
    write_file(g_rules_path, rules);
    h_restart(&g_d);
    set_clock(g_end_clock);
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_STATUS;
    q.status = 1;
    Loyalty__QueryReply *r = h_query(&g_d, &q, 10000);
    assert_non_null(r);
    assert_string_equal(r->rules_version, "year-changed");
    loyalty__query_reply__free_unpacked(r, NULL);
    ctl_ok("verify --online");
    yview *after = calloc((size_t)g_members, sizeof *after);
    assert_non_null(after);
    take_views(after);
    compare_views(g_view, after, "after the rules change and restart (R30)");
    /* everything due at the end clock was written once, before the restart */
    assert_int_equal(sweep(), 0);
    for (int i = 0; i < g_members; i++)
        view_free(&after[i]);
    free(after);
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    ctl_ok("verify --offline");
    fprintf(stderr, "year (%s): simulated in %.1f s, checked in %.1f s\n", mname,
            (double)(t_sim - t0) / 1000, (double)(now_ms() - t_sim) / 1000);
}

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    reset();
    if (g_rules_dir[0] != '\0') {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_rules_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_rules_dir);
        g_rules_dir[0] = '\0';
    }
    return 0;
}

static void test_year_calendar_expiry(void **state)
{
    (void)state;
    run_year(MODE_CALENDAR);
}

static void test_year_rolling_expiry_90_days(void **state)
{
    (void)state;
    run_year(MODE_ROLLING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_year_calendar_expiry, teardown),
        cmocka_unit_test_teardown(test_year_rolling_expiry_90_days, teardown),
    };
    return cmocka_run_group_tests_name("e2e_year", tests, NULL, NULL);
}
