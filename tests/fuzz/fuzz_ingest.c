/* fuzz_ingest.c: libFuzzer target over the till edge, everything a till's bytes reach before
 * the ledger: loyalty__event_batch__unpack() -> ingest_event_from_pb() for each event (and the
 * daemon's own reader, ingest_batch_scan() -> ingest_batch_event(), which must agree) ->
 * rules_rate() against a small fixed state with the built-in rules -> entry_encode() ->
 * entry_decode() -> entry_encode() again, which must give the same bytes. The same input is also
 * decoded as a ledger entry (a damaged ledger must be refused, not crash loyaltyctl), and
 * whatever decodes must re-encode stably.
 *
 * Built with clang, -fsanitize=fuzzer,address,undefined (cmake -DLT_FUZZ=ON; `make fuzz`).
 * Invariants are checked with LT_ASSERT, so a violation aborts and libFuzzer keeps the input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "ingest.h"
#include "loyalty.pb-c.h"
#include "rules.h"

#define FUZZ_NOW 1795399200 /* 2026-11-23 12:00 +0800: fixed, so runs are reproducible */
#define FUZZ_MEMBERS 4
#define FUZZ_LOTS 4
#define FUZZ_CARDS 2

/* ------------------------------------------------------------------ a small fixed state */

typedef struct {
    lt_member members[FUZZ_MEMBERS];
    lt_lot lots[FUZZ_MEMBERS][FUZZ_LOTS];
    char cards[FUZZ_CARDS][2][LT_ID_MAX]; /* card, owner */
    lt_entry sale;                        /* a rated sale of m1, node 1 event 1, for returns */
    int64_t returned[LT_SALE_LINES_MAX];  /* what was returned of it so far */
} fuzz_state;

static fuzz_state g_state, g_pristine;
static rules *g_rules;
static lt_event g_ev;
static lt_entry g_entry, g_back, g_ref;
static uint8_t g_buf[ENTRY_BYTES_MAX], g_buf2[ENTRY_BYTES_MAX];
static bool g_verbose; /* FUZZ_INGEST_VERBOSE=1: one line per event (corpus upkeep) */

static const lt_member *view_member(void *ctx, const char *id)
{
    fuzz_state *s = ctx;
    for (size_t i = 0; i < FUZZ_MEMBERS; i++) {
        if (strcmp(s->members[i].id, id) == 0)
            return &s->members[i];
    }
    return NULL;
}

static const char *view_card_owner(void *ctx, const char *card)
{
    fuzz_state *s = ctx;
    for (size_t i = 0; i < FUZZ_CARDS; i++) {
        if (strcmp(s->cards[i][0], card) == 0)
            return s->cards[i][1];
    }
    return NULL;
}

static int view_sale(void *ctx, lt_event_id id, const lt_entry **entry, const int64_t **returned,
                     uint64_t *seq)
{
    fuzz_state *s = ctx;
    if (s->sale.kind == LT_ENTRY_NONE || id.node_id != 1 || id.event_id != 1)
        return -1;
    *entry = &s->sale;
    *returned = s->returned;
    *seq = s->sale.seq;
    return 0;
}

static const rules_view g_view = {
    .ctx = &g_state, .member = view_member, .card_owner = view_card_owner, .sale = view_sale};

static void add_member(size_t i, const char *id, const char *tier, int64_t points, uint8_t status)
{
    lt_member *m = &g_state.members[i];
    snprintf(m->id, sizeof m->id, "%s", id);
    snprintf(m->tier, sizeof m->tier, "%s", tier);
    m->status = status;
    m->enrolled_at = FUZZ_NOW - 400 * 86400;
    m->lots = g_state.lots[i];
    m->lots_cap = FUZZ_LOTS;
    if (points > 0) {
        m->lots[0] = (lt_lot){.points = points, .earned_at = FUZZ_NOW - 86400, .expires_at = 0};
        m->lots_n = 1;
    }
}

/* m1 basic with points and a card and a past sale; m2 gold (x2) with a birthday today and
 * debt; m3 blocked; staff member s1. Ids the corpus uses. */
static void state_init(void)
{
    add_member(0, "m1", "basic", 500, LT_MEMBER_ACTIVE);
    add_member(1, "m2", "gold", 20000, LT_MEMBER_ACTIVE);
    g_state.members[1].birth_month = 11;
    g_state.members[1].birth_day = 23;
    g_state.members[1].debt = 30;
    g_state.members[1].qualifying = 350000;
    add_member(2, "m3", "silver", 100, LT_MEMBER_BLOCKED);
    add_member(3, "s1", "basic", 0, LT_MEMBER_ACTIVE);
    g_state.members[3].staff = 1;
    snprintf(g_state.cards[0][0], LT_ID_MAX, "c1");
    snprintf(g_state.cards[0][1], LT_ID_MAX, "m1");
    snprintf(g_state.cards[1][0], LT_ID_MAX, "c2");
    snprintf(g_state.cards[1][1], LT_ID_MAX, "m2");

    lt_event *ev = &g_ev;
    memset(ev, 0, sizeof *ev);
    ev->kind = LT_EV_SALE;
    ev->id = (lt_event_id){1, 1};
    snprintf(ev->member_id, sizeof ev->member_id, "m1");
    snprintf(ev->store_id, sizeof ev->store_id, "S1");
    ev->occurred_at = FUZZ_NOW - 3600;
    ev->utc_offset_min = 480;
    ev->redeem_points = 100;
    const char *cats[3] = {"groceries", "tobacco", "appliances"};
    for (uint32_t i = 0; i < 3; i++) {
        lt_line *l = &ev->lines[ev->lines_n++];
        snprintf(l->sku, sizeof l->sku, "K%u", i);
        snprintf(l->category, sizeof l->category, "%s", cats[i]);
        l->quantity = 2 + i;
        l->unit_list_fen = 30000;
        l->unit_paid_fen = 25000;
    }
    int rc = rules_rate(g_rules, &g_view, ev, &g_state.sale);
    LT_ASSERT(rc == LT_R_NONE);
    g_state.sale.seq = 7;
    g_state.returned[0] = 1; /* one unit of line 0 came back already */
    g_pristine = g_state;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    const char *text = rules_default_text();
    int rc = rules_load_string(text, strlen(text), "built-in", &g_rules, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "fuzz_ingest: built-in rules do not load: %s\n", err);
        abort();
    }
    state_init();
    g_verbose = getenv("FUZZ_INGEST_VERBOSE") != NULL;
    return 0;
}

/* ------------------------------------------------------------------ checks */

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

/* What ingest promises rating: every string fits, every count and amount is in range. */
static void check_event(const lt_event *ev)
{
    LT_ASSERT(ev->kind >= LT_EV_SALE && ev->kind <= LT_EV_MERGE);
    LT_ASSERT(ev->id.node_id >= 1 && ev->id.event_id >= 1);
    LT_ASSERT(terminated(ev->member_id, sizeof ev->member_id));
    LT_ASSERT(terminated(ev->card, sizeof ev->card));
    LT_ASSERT(ev->member_id[0] != '\0' || ev->card[0] != '\0');
    LT_ASSERT(terminated(ev->store_id, sizeof ev->store_id));
    LT_ASSERT(ev->utc_offset_min >= -14 * 60 && ev->utc_offset_min <= 14 * 60);
    LT_ASSERT(ev->lines_n <= LT_SALE_LINES_MAX);
    LT_ASSERT(ev->return_lines_n <= LT_RETURN_LINES_MAX);
    LT_ASSERT(ev->redeem_points >= 0 && ev->redeem_points <= LT_POINTS_MAX);
    for (uint32_t i = 0; i < ev->lines_n; i++) {
        const lt_line *l = &ev->lines[i];
        LT_ASSERT(terminated(l->sku, sizeof l->sku) && terminated(l->category, sizeof l->category));
        LT_ASSERT(l->quantity >= 1 && l->quantity <= LT_QUANTITY_MAX);
        LT_ASSERT(l->unit_paid_fen >= 0 && l->unit_paid_fen <= l->unit_list_fen);
        LT_ASSERT(l->unit_list_fen <= LT_UNIT_FEN_MAX);
    }
    LT_ASSERT(terminated(ev->reward_code, sizeof ev->reward_code));
    LT_ASSERT(terminated(ev->reason_code, sizeof ev->reason_code));
    LT_ASSERT(terminated(ev->operator_id, sizeof ev->operator_id));
    LT_ASSERT(ev->points >= -LT_POINTS_MAX && ev->points <= LT_POINTS_MAX);
}

/* What rating promises the ledger. */
static void check_entry(const lt_entry *e, const lt_event *ev)
{
    LT_ASSERT(e->kind != LT_ENTRY_NONE);
    LT_ASSERT(e->id.node_id == ev->id.node_id && e->id.event_id == ev->id.event_id);
    LT_ASSERT(e->postings_n <= LT_POSTINGS_MAX);
    LT_ASSERT(e->lines_n <= LT_SALE_LINES_MAX);
    LT_ASSERT(terminated(e->member_id, sizeof e->member_id));
    for (uint32_t i = 0; i < e->postings_n; i++) {
        const lt_posting *p = &e->postings[i];
        LT_ASSERT(terminated(p->member_id, sizeof p->member_id) && p->member_id[0] != '\0');
        LT_ASSERT(terminated(p->tier_after, sizeof p->tier_after));
        LT_ASSERT(terminated(p->reason, sizeof p->reason));
        LT_ASSERT(p->debit >= 0 && p->credit >= 0);
    }
    if (e->kind == LT_ENTRY_SALE) {
        int64_t pts = 0, redeemed = 0;
        for (uint32_t i = 0; i < e->lines_n; i++) {
            LT_ASSERT(e->lines[i].eligible_fen >= 0);
            LT_ASSERT(e->lines[i].redeemed_fen <= e->lines[i].paid_fen);
            pts += e->lines[i].points;
            redeemed += e->lines[i].redeemed_points;
        }
        LT_ASSERT(pts == e->points_earned);
        LT_ASSERT(redeemed == e->points_redeemed);
        LT_ASSERT(e->points_earned >= 0 && e->points_redeemed == ev->redeem_points);
    }
}

/* encode -> decode -> encode gives the same bytes, and the fields survive. */
static void round_trip(const lt_entry *e)
{
    size_t n = entry_encode(e, g_buf, sizeof g_buf);
    LT_ASSERT(n > 0); /* ENTRY_BYTES_MAX holds any entry */
    LT_ASSERT(entry_decode(g_buf, n, &g_back) == 0);
    LT_ASSERT(g_back.seq == e->seq && g_back.kind == e->kind);
    LT_ASSERT(g_back.id.node_id == e->id.node_id && g_back.id.event_id == e->id.event_id);
    LT_ASSERT(strcmp(g_back.member_id, e->member_id) == 0);
    LT_ASSERT(g_back.points_earned == e->points_earned);
    LT_ASSERT(g_back.points_redeemed == e->points_redeemed);
    LT_ASSERT(g_back.digest == e->digest);
    LT_ASSERT(g_back.postings_n == e->postings_n && g_back.lines_n == e->lines_n);
    for (uint32_t i = 0; i < e->postings_n; i++) {
        const lt_posting *a = &e->postings[i], *b = &g_back.postings[i];
        LT_ASSERT(strcmp(a->member_id, b->member_id) == 0);
        LT_ASSERT(a->debit == b->debit && a->credit == b->credit);
        LT_ASSERT(a->balance_after == b->balance_after);
        LT_ASSERT(a->create == b->create && strcmp(a->tier_after, b->tier_after) == 0);
    }
    /* field by field: after their NUL the name arrays may hold anything */
    for (uint32_t i = 0; i < e->lines_n; i++) {
        const lt_line_result *a = &e->lines[i], *b = &g_back.lines[i];
        LT_ASSERT(a->quantity == b->quantity && a->paid_fen == b->paid_fen);
        LT_ASSERT(a->eligible_fen == b->eligible_fen && a->redeemed_fen == b->redeemed_fen);
        LT_ASSERT(a->redeemed_points == b->redeemed_points && a->points == b->points);
        LT_ASSERT(a->qualifying_fen == b->qualifying_fen);
        LT_ASSERT(a->unit_list_fen == b->unit_list_fen && a->flags == b->flags);
        LT_ASSERT(strcmp(a->sku, b->sku) == 0 && strcmp(a->category, b->category) == 0);
    }
    size_t n2 = entry_encode(&g_back, g_buf2, sizeof g_buf2);
    LT_ASSERT(n2 == n && memcmp(g_buf, g_buf2, n) == 0);
}

static void rate_one(const Loyalty__Event *pe)
{
    static const ingest_limits lim = {
        .now = FUZZ_NOW, .future_skew_s_max = 300, .past_age_s_max = 30 * 86400};
    char msg[256];
    int rc = ingest_event_from_pb(pe, &lim, &g_ev, msg, sizeof msg);
    LT_ASSERT(rc >= 0 && rc < LT_R__COUNT);
    LT_ASSERT(terminated(msg, sizeof msg));
    (void)ingest_event_digest(pe);
    if (rc != LT_R_NONE) {
        if (g_verbose)
            fprintf(stderr, "fuzz_ingest: ingest %s: %s\n", lt_reason_name(rc), msg);
        LT_ASSERT(msg[0] != '\0'); /* every rejection names its field */
        return;
    }
    check_event(&g_ev);
    uint64_t digest = ingest_event_digest_ev(&g_ev);
    LT_ASSERT(digest != 0);
    rc = rules_rate(g_rules, &g_view, &g_ev, &g_entry);
    LT_ASSERT(rc >= 0 && rc < LT_R__COUNT);
    LT_ASSERT(memcmp(&g_state, &g_pristine, sizeof g_state) == 0); /* rating is pure */
    if (g_verbose)
        fprintf(stderr, "fuzz_ingest: rate %s: kind %d, earned %lld\n", lt_reason_name(rc),
                g_entry.kind, (long long)g_entry.points_earned);
    if (rc != LT_R_NONE)
        return;
    check_entry(&g_entry, &g_ev);
    g_entry.seq = 42;
    g_entry.digest = digest;
    round_trip(&g_entry);
}

/* The daemon's reader (ingest/wire.c) must agree with protobuf-c + ingest_event_from_pb on
 * every input: the verdict on the message, and each event's reason, message and lt_event. */
static ingest_batch g_scan;
static lt_event g_ev_pb, g_ev_wire;

static void same_as_wire(const Loyalty__EventBatch *b, int scan_rc)
{
    LT_ASSERT((b == NULL) == (scan_rc != 0));
    if (b == NULL)
        return;
    LT_ASSERT(g_scan.events_n == b->n_events && g_scan.has_batch_id == b->has_batch_id &&
              g_scan.batch_id == b->batch_id);
    static const ingest_limits lim = {
        .now = FUZZ_NOW, .future_skew_s_max = 300, .past_age_s_max = 30 * 86400};
    for (size_t i = 0; i < b->n_events && i < LT_BATCH_EVENTS_MAX; i++) {
        char ma[256], mb[256];
        memset(&g_ev_pb, 0, sizeof g_ev_pb);
        memset(&g_ev_wire, 0, sizeof g_ev_wire);
        int ra = ingest_event_from_pb(b->events[i], &lim, &g_ev_pb, ma, sizeof ma);
        int rb = ingest_batch_event(&g_scan.events[i], &lim, &g_ev_wire, mb, sizeof mb);
        LT_ASSERT(ra == rb && strcmp(ma, mb) == 0);
        LT_ASSERT(memcmp(&g_ev_pb, &g_ev_wire, sizeof g_ev_pb) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > LT_MESSAGE_BYTES_MAX)
        return 0; /* the daemon refuses it before decoding (MESSAGE_TOO_LARGE) */
    Loyalty__EventBatch *b = loyalty__event_batch__unpack(NULL, size, data);
    same_as_wire(b, ingest_batch_scan(data, size, &g_scan));
    if (b != NULL) {
        if (b->n_events <= LT_BATCH_EVENTS_MAX) { /* else BATCH_TOO_LARGE, as the daemon */
            for (size_t i = 0; i < b->n_events; i++)
                rate_one(b->events[i]);
        }
        loyalty__event_batch__free_unpacked(b, NULL);
    }
    /* the same bytes as a stored ledger entry: refused or decoded, and then stable. (An entry
     * of kind 0 encodes to nothing, which entry_encode() cannot tell from "too small".) The
     * direct reader (with its fast path for entry_encode()'s field order) must agree with
     * protobuf-c's unpack, its reference, on the verdict and on the entry (unless the input
     * is too big for the reference's arena: -2, no verdict). */
    memset(&g_back, 0, sizeof g_back); /* both from zero: on success the same bytes */
    memset(&g_ref, 0, sizeof g_ref);
    int direct = entry_decode(data, size, &g_back), ref = entry_decode_pb(data, size, &g_ref);
    LT_ASSERT(ref == -2 || ref == direct);
    LT_ASSERT(ref != 0 || memcmp(&g_ref, &g_back, sizeof g_back) == 0);
    if (direct == 0 && g_back.kind != LT_ENTRY_NONE) {
        g_entry = g_back;
        round_trip(&g_entry);
    }
    return 0;
}
