/* test_rules_returns.c: rules_rate() for returns (R18): per-line reversal pro rata to the
 * returned quantity with the cumulative floor, points given back, RETURN_EXCEEDS_SALE,
 * UNKNOWN_SALE, spend totals, negative_balance allow / clamp, no downgrade (R24), referrals kept
 * (R25), and the exact-total invariant over random sales and random partial returns.
 */
#define RULES_TEST_DEFAULT_FIXTURE
#include "test_rng.h"
#include "test_rules_fake.h"

#define SALE_SEQ 5
#define SALE_ID 42

/* An ordinary weekday in June, 12:00 store time. */
static int64_t noon(void)
{
    return local_time(2026, 6, 10, 12, 0, CST);
}

static int rate(const rules *r)
{
    return rules_rate(r, &V, &EV, &E);
}

/* Lots minus debt, as rating sees it. */
static int64_t state_balance_of(const lt_member *m)
{
    int64_t b;
    assert_true(rules__balance(m, &b));
    return b;
}

/* Sets a member's points to one never-expiring lot of `balance` (>= 0) or to debt (< 0). */
static void set_balance(lt_member *m, int64_t balance)
{
    m->lots_n = balance > 0;
    m->lots[0].points = balance > 0 ? balance : 0;
    m->debt = balance < 0 ? -balance : 0;
}

/* Rates the sale in EV (event id SALE_ID) and keeps it as the ledger's entry SALE_SEQ. */
static const lt_entry *sale_kept(const rules *r)
{
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.kind, LT_ENTRY_SALE);
    return &fake_keep_sale(&F, &E, SALE_SEQ)->entry;
}

/* Starts a return by `member` of the sale SALE_ID, an hour after noon. */
static void ret(const char *member, uint64_t event_id)
{
    ev_init(&EV, LT_EV_RETURN, member, noon() + 3600);
    EV.id.event_id = event_id;
    EV.original = (lt_event_id){7, SALE_ID};
}

static void ret_line(uint32_t index, int64_t qty)
{
    assert_true(EV.return_lines_n < LT_RETURN_LINES_MAX);
    EV.return_lines[EV.return_lines_n++] = (lt_return_line){index, qty};
}

/* Rates the return in EV, expecting success, and books it: returned quantities and balance. */
static void ret_ok(const rules *r, lt_member *m)
{
    assert_int_equal(rate(r), LT_R_NONE);
    fake_record_return(&F, &E);
    set_balance(m, E.postings[0].balance_after);
    m->qualifying += E.postings[0].qualifying_delta;
    m->lifetime_fen += E.postings[0].lifetime_delta_fen;
}

static void sale_example1(const char *member_id)
{
    ev_init(&EV, LT_EV_SALE, member_id, noon());
    EV.id.event_id = SALE_ID;
    ev_line(&EV, "A", "groceries", 1, 12345, 12345, 0);
    ev_line(&EV, "B", "tobacco", 1, 5000, 5000, 0);
    ev_line(&EV, "C", "appliances", 1, 260000, 260000, 0);
}

/* ------------------------------------------------------------------ reversal */

/* R18: returning every line reverses exactly the points each line earned (worked example 1:
 * 8 + 0 + 167), and spend totals go down by what was paid. */
static void test_R18_full_return_reverses_line_points(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    sale_example1("m1");
    const lt_entry *sale = sale_kept(DEF);
    assert_int_equal(sale->lines[0].points, 8);
    assert_int_equal(sale->lines[2].points, 167);
    set_balance(m, 175);
    m->qualifying = 272345;
    m->lifetime_fen = 277345;
    strcpy(m->tier, "silver");

    ret("m1", 43);
    ret_line(2, 1);
    ret_line(0, 1);
    ret_line(1, 1);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.kind, LT_ENTRY_RETURN);
    assert_int_equal(E.event_kind, LT_EV_RETURN);
    assert_int_equal(E.seq, 0);
    assert_int_equal(E.id.event_id, 43);
    assert_string_equal(E.member_id, "m1");
    assert_string_equal(E.rules_version, rules_version(DEF));
    assert_int_equal(E.original.node_id, 7);
    assert_int_equal(E.original.event_id, SALE_ID);
    assert_int_equal(E.original_seq, SALE_SEQ);
    /* one line per line of the sale, in the sale's order */
    assert_int_equal(E.lines_n, 3);
    const lt_line_result *a = &E.lines[0], *b = &E.lines[1], *c = &E.lines[2];
    assert_int_equal(a->quantity, 1);
    assert_int_equal(a->paid_fen, 12345);
    assert_int_equal(a->eligible_fen, 12345);
    assert_int_equal(a->points, 8);
    assert_int_equal(a->qualifying_fen, 12345);
    assert_int_equal(b->quantity, 1);
    assert_int_equal(b->paid_fen, 5000);
    assert_int_equal(b->points, 0);
    assert_int_equal(b->qualifying_fen, 0);
    assert_int_equal(c->points, 167);
    assert_int_equal(c->paid_fen, 260000);
    /* the summary is the change to the sale's totals */
    assert_int_equal(E.paid_fen, -277345);
    assert_int_equal(E.eligible_fen, -272345);
    assert_int_equal(E.points_earned, -175);
    assert_int_equal(E.points_redeemed, 0);
    assert_int_equal(E.base_points, 0);

    assert_int_equal(E.postings_n, 1);
    const lt_posting *p = &E.postings[0];
    assert_string_equal(p->member_id, "m1");
    assert_string_equal(p->reason, "return");
    assert_int_equal(p->debit, 175);
    assert_int_equal(p->credit, 0);
    assert_int_equal(p->credit_expires_at, 0);
    assert_int_equal(p->clamp, 0);
    assert_int_equal(p->balance_after, 0);
    assert_int_equal(p->lifetime_delta_fen, -277345);
    assert_int_equal(p->qualifying_delta, -272345);
    assert_string_equal(p->tier_after, "");
    assert_false(p->count_sale);
    assert_false(p->create);
}

/* R18: a partial return reverses the returned units' share of the line. */
static void test_R18_partial_return(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    ev_init(&EV, LT_EV_SALE, "m1", noon());
    EV.id.event_id = SALE_ID;
    ev_line(&EV, "A", "groceries", 3, 10000, 10000, 0);
    ev_line(&EV, "B", "groceries", 1, 500, 500, 0);
    const lt_entry *sale = sale_kept(DEF);
    assert_int_equal(sale->lines[0].points, 300);
    assert_int_equal(sale->lines[1].points, 5);
    set_balance(m, 305);
    m->qualifying = m->lifetime_fen = 30500;

    ret("m1", 43);
    ret_line(0, 1);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.lines_n, 2);
    assert_int_equal(E.lines[0].quantity, 1);
    assert_int_equal(E.lines[0].points, 100);
    assert_int_equal(E.lines[0].paid_fen, 10000);
    assert_int_equal(E.lines[0].qualifying_fen, 10000);
    assert_int_equal(E.lines[1].quantity, 0); /* not returned: all zero */
    assert_int_equal(E.lines[1].paid_fen, 0);
    assert_int_equal(E.lines[1].points, 0);
    assert_int_equal(E.postings[0].debit, 100);
    assert_int_equal(E.postings[0].balance_after, 205);
    assert_int_equal(E.postings[0].lifetime_delta_fen, -10000);
    assert_int_equal(E.postings[0].qualifying_delta, -10000);
}

/* R18: several returns of one line reverse, in total, exactly what the line earned:
 * floor(100 * k / 3) cumulative gives 33, 33, 34. */
static void test_R18_several_returns_reverse_exactly_the_line(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    ev_init(&EV, LT_EV_SALE, "m1", noon());
    EV.id.event_id = SALE_ID;
    ev_line(&EV, "A", "groceries", 3, 3334, 3334, 0); /* 10002 fen: 100 points */
    const lt_entry *sale = sale_kept(DEF);
    assert_int_equal(sale->lines[0].points, 100);
    set_balance(m, 100);
    m->qualifying = m->lifetime_fen = 10002;

    int64_t want_points[] = {33, 33, 34}, want_paid[] = {3334, 3334, 3334};
    int64_t points = 0, paid = 0;
    for (int k = 0; k < 3; k++) {
        ret("m1", 43 + (uint64_t)k);
        ret_line(0, 1);
        ret_ok(DEF, m);
        assert_int_equal(E.lines[0].points, want_points[k]);
        assert_int_equal(E.lines[0].paid_fen, want_paid[k]);
        points += E.lines[0].points;
        paid += E.lines[0].paid_fen;
    }
    assert_int_equal(points, 100);
    assert_int_equal(paid, 10002);
    assert_int_equal(m->lots_n, 0); /* every point the sale earned is gone again */
    assert_int_equal(m->qualifying, 0);
    assert_int_equal(m->lifetime_fen, 0);

    /* the same sale returned as 2 units then 1: 66, then 34 */
    F.sales[0].has_returned = false;
    memset(F.sales[0].returned, 0, sizeof F.sales[0].returned);
    set_balance(m, 100);
    ret("m1", 50);
    ret_line(0, 2);
    ret_ok(DEF, m);
    assert_int_equal(E.lines[0].points, 66);
    assert_int_equal(E.lines[0].paid_fen, 6668);
    ret("m1", 51);
    ret_line(0, 1);
    ret_ok(DEF, m);
    assert_int_equal(E.lines[0].points, 34);
    assert_int_equal(E.lines[0].paid_fen, 3334);
}

/* R18: cumulative returns of a line may not exceed its quantity. */
static void test_R18_return_exceeds_sale(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 1000);
    ev_init(&EV, LT_EV_SALE, "m1", noon());
    EV.id.event_id = SALE_ID;
    ev_line(&EV, "A", "groceries", 2, 1000, 1000, 0);
    ev_line(&EV, "B", "groceries", 1, 1000, 1000, 0);
    sale_kept(DEF);

    ret("m1", 43);
    ret_line(0, 3);
    assert_int_equal(rate(DEF), LT_R_RETURN_EXCEEDS_SALE);
    ret("m1", 43);
    ret_line(1, 1);
    ret_line(0, 1);
    ret_ok(DEF, m);
    ret("m1", 44);
    ret_line(0, 2); /* 1 of 2 left */
    assert_int_equal(rate(DEF), LT_R_RETURN_EXCEEDS_SALE);
    ret("m1", 44);
    ret_line(1, 1); /* none left */
    assert_int_equal(rate(DEF), LT_R_RETURN_EXCEEDS_SALE);
    ret("m1", 44);
    ret_line(0, 1);
    ret_ok(DEF, m);
    assert_int_equal(F.sales[0].returned[0], 2);
    assert_int_equal(F.sales[0].returned[1], 1);
    ret("m1", 45);
    ret_line(0, 1);
    assert_int_equal(rate(DEF), LT_R_RETURN_EXCEEDS_SALE);
}

/* R18: UNKNOWN_SALE for an id the ledger does not have, an entry that is not a sale, another
 * member's sale, or a view without a sale lookup; a failing lookup is INTERNAL_ERROR. */
static void test_R18_unknown_sale(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 1000);
    fake_add(&F, "m2", "", 1000);
    ret("m1", 43);
    ret_line(0, 1);
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_SALE); /* no sale at all */

    sale_example1("m1");
    sale_kept(DEF);
    ret("m2", 43); /* m1's sale */
    ret_line(0, 1);
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_SALE);
    ret("m1", 43);
    ret_line(0, 1);
    EV.original.node_id = 8; /* same event id, other till */
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_SALE);
    EV.original.node_id = 7;
    assert_int_equal(rate(DEF), LT_R_NONE);

    F.sales[0].entry.kind = LT_ENTRY_GIFT; /* the id names a gift */
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_SALE);
    F.sales[0].entry.kind = LT_ENTRY_SALE;

    F.sale_rc = -2; /* the ledger cannot be read now */
    assert_int_equal(rate(DEF), LT_R_INTERNAL_ERROR);
    F.sale_rc = 0;

    V.sale = NULL; /* a caller without the lookup */
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_SALE);
}

/* R18: the return's member is resolved like any event's (R4), never enrolled (R8). */
static void test_R18_member_resolution(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    fake_card(&F, "card-1", "m1");
    sale_example1("m1");
    sale_kept(DEF);
    set_balance(m, 175);

    ret("", 43);
    strcpy(EV.card, "card-1");
    ret_line(0, 1);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_string_equal(E.member_id, "m1");
    ret("nobody", 43);
    ret_line(0, 1);
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_MEMBER);
    ret("", 43);
    strcpy(EV.card, "card-9");
    ret_line(0, 1);
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_CARD);
    m->status = LT_MEMBER_BLOCKED;
    ret("m1", 43);
    ret_line(0, 1);
    assert_int_equal(rate(DEF), LT_R_MEMBER_BLOCKED);
}

/* R18: a line index beyond the sale's lines, a line listed twice, or no lines at all. */
static void test_R18_line_index_out_of_range(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 1000);
    sale_example1("m1");
    sale_kept(DEF);
    ret("m1", 43);
    ret_line(3, 1);
    assert_int_equal(rate(DEF), LT_R_INVALID_FIELD);
    ret("m1", 43);
    ret_line(0, 1);
    ret_line(LT_SALE_LINES_MAX - 1, 1);
    assert_int_equal(rate(DEF), LT_R_INVALID_FIELD);
    ret("m1", 43);
    ret_line(1, 1);
    ret_line(1, 1);
    assert_int_equal(rate(DEF), LT_R_INVALID_FIELD);
    ret("m1", 43);
    ret_line(1, 0);
    assert_int_equal(rate(DEF), LT_R_INVALID_QUANTITY);
    ret("m1", 43);
    assert_int_equal(rate(DEF), LT_R_MISSING_FIELD);
}

/* ------------------------------------------------------------------ give-back and balance */

/* R18, worked example 4 style: 2 units of 25,000 fen, 100 points paid 10,000 fen of it. Each
 * returned unit reverses 200 of the 400 points and gives back 50 of the 100 redeemed ones. */
static void test_R18_redeemed_points_given_back_pro_rata(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 100);
    ev_init(&EV, LT_EV_SALE, "m1", noon());
    EV.id.event_id = SALE_ID;
    ev_line(&EV, "A", "groceries", 2, 25000, 25000, 0);
    EV.redeem_points = 100;
    const lt_entry *sale = sale_kept(DEF);
    assert_int_equal(sale->lines[0].points, 400);
    assert_int_equal(sale->lines[0].redeemed_points, 100);
    assert_int_equal(sale->lines[0].qualifying_fen, 40000);
    set_balance(m, 400);
    m->qualifying = 40000;
    m->lifetime_fen = 50000;

    int64_t expires = rules_lot_expires_at(DEF, noon() + 3600, CST);
    for (int k = 0; k < 2; k++) {
        ret("m1", 43 + (uint64_t)k);
        ret_line(0, 1);
        int64_t before = k ? 250 : 400;
        ret_ok(DEF, m);
        const lt_posting *p = &E.postings[0];
        assert_int_equal(E.lines[0].points, 200);
        assert_int_equal(E.lines[0].redeemed_points, 50);
        assert_int_equal(E.lines[0].redeemed_fen, 5000);
        assert_int_equal(E.lines[0].eligible_fen, 20000);
        assert_int_equal(E.points_redeemed, -50);
        assert_int_equal(p->debit, 200);
        assert_int_equal(p->credit, 50); /* a new lot with the normal expiry (R19) */
        assert_int_equal(p->credit_expires_at, expires);
        assert_int_equal(p->balance_after, before - 200 + 50);
        assert_int_equal(p->qualifying_delta, -20000);
        assert_int_equal(p->lifetime_delta_fen, -25000);
    }
    assert_int_equal(m->qualifying, 0);
    assert_int_equal(m->lifetime_fen, 0);

    /* two lines: the 100 redeemed points were split 60 / 40 by the lines' paid amounts */
    memset(&F, 0, sizeof F);
    V = fake_view(&F);
    m = fake_add(&F, "m1", "", 100);
    ev_init(&EV, LT_EV_SALE, "m1", noon());
    EV.id.event_id = SALE_ID;
    ev_line(&EV, "A", "groceries", 1, 30000, 30000, 0);
    ev_line(&EV, "B", "groceries", 1, 20000, 20000, 0);
    EV.redeem_points = 100;
    sale = sale_kept(DEF);
    assert_int_equal(sale->lines[1].redeemed_points, 40);
    assert_int_equal(sale->lines[1].points, 160);
    set_balance(m, 400);
    ret("m1", 43);
    ret_line(1, 1);
    ret_ok(DEF, m);
    assert_int_equal(E.postings[0].debit, 160);
    assert_int_equal(E.postings[0].credit, 40);
    assert_int_equal(E.postings[0].balance_after, 280);
    assert_int_equal(E.lines[0].quantity, 0);
    assert_int_equal(E.lines[0].redeemed_points, 0);
}

/* R18 `negative_balance: allow` (default): points already spent leave a negative balance, a
 * debt outside the lots (the state turns the debit beyond the lots into debt). */
static void test_R18_spent_points_allow_debt(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    sale_example1("m1");
    sale_kept(DEF);
    set_balance(m, 50); /* 125 of the 175 were spent */
    ret("m1", 43);
    ret_line(0, 1);
    ret_line(2, 1);
    ret_ok(DEF, m);
    assert_int_equal(E.postings[0].debit, 175);
    assert_int_equal(E.postings[0].clamp, 0);
    assert_int_equal(E.postings[0].balance_after, -125);
    assert_int_equal(m->debt, 125);
    assert_false(rules_negative_balance_clamp(DEF));
}

/* R18 `negative_balance: clamp`: the debit is limited to what the member holds once the
 * give-back is in; the rest is recorded in the posting's clamp and forgiven. */
static void test_R18_spent_points_clamp(void **state)
{
    (void)state;
    rules *r = load_ok("version: v\nnegative_balance: clamp\n");
    assert_true(rules_negative_balance_clamp(r));
    lt_member *m = fake_add(&F, "m1", "", 0);
    sale_example1("m1");
    sale_kept(r);
    set_balance(m, 50);
    ret("m1", 43);
    ret_line(0, 1);
    ret_line(2, 1);
    ret_ok(r, m);
    assert_int_equal(E.lines[0].points + E.lines[2].points, 175); /* the lines say what */
    assert_int_equal(E.points_earned, -175);
    assert_int_equal(E.postings[0].debit, 50);
    assert_int_equal(E.postings[0].clamp, 125);
    assert_int_equal(E.postings[0].balance_after, 0);

    /* with a give-back: 200 reversed, 50 given back, nothing held -> debit 50, clamp 150 */
    memset(&F, 0, sizeof F);
    V = fake_view(&F);
    m = fake_add(&F, "m1", "", 100);
    ev_init(&EV, LT_EV_SALE, "m1", noon());
    EV.id.event_id = SALE_ID;
    ev_line(&EV, "A", "groceries", 2, 25000, 25000, 0);
    EV.redeem_points = 100;
    sale_kept(r);
    set_balance(m, 0);
    ret("m1", 43);
    ret_line(0, 1);
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.postings[0].debit, 50);
    assert_int_equal(E.postings[0].credit, 50);
    assert_int_equal(E.postings[0].clamp, 150);
    assert_int_equal(E.postings[0].balance_after, 0);

    /* an existing debt (from an earlier `allow`) is not made bigger */
    set_balance(m, -30);
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.postings[0].debit, 50);
    assert_int_equal(E.postings[0].clamp, 150);
    assert_int_equal(E.postings[0].balance_after, -30);

    /* enough held: no clamp */
    set_balance(m, 1000);
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.postings[0].debit, 200);
    assert_int_equal(E.postings[0].clamp, 0);
    assert_int_equal(E.postings[0].balance_after, 850);
    rules_destroy(&r);
}

/* R18: a member in debt still buys and earns; the new points pay the debt first (the state
 * does that with the credit); paying with points waits until the balance is positive. */
static void test_R18_sale_in_debt_earns(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    set_balance(m, -67);
    ev_init(&EV, LT_EV_SALE, "m1", noon());
    ev_line(&EV, "A", "groceries", 2, 10000, 10000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].credit, 200);
    assert_int_equal(E.postings[0].debit, 0);
    assert_int_equal(E.postings[0].balance_after, 133);
    EV.redeem_points = 1;
    assert_int_equal(rate(DEF), LT_R_INSUFFICIENT_POINTS);
    ev_init(&EV, LT_EV_GIFT, "m1", noon());
    EV.points = 1;
    assert_int_equal(rate(DEF), LT_R_INSUFFICIENT_POINTS);
}

/* ------------------------------------------------------------------ spend and tiers */

/* R18, R22: lifetime spend goes down by the returned paid amount (excluded lines too),
 * qualifying by the lines' qualifying amounts (or points with tier_basis points); neither goes
 * below zero. Staff sales earned nothing and reverse nothing but lifetime spend. */
static void test_R18_spend_totals_reduced(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    sale_example1("m1");
    sale_kept(DEF);
    set_balance(m, 1000);
    m->lifetime_fen = 1000000;
    m->qualifying = 1000000;
    ret("m1", 43);
    ret_line(1, 1); /* tobacco: lifetime only */
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].lifetime_delta_fen, -5000);
    assert_int_equal(E.postings[0].qualifying_delta, 0);
    assert_int_equal(E.postings[0].debit, 0);
    assert_int_equal(E.postings[0].balance_after, 1000);

    m->qualifying = 100000; /* a total already lower (a new tier period) stops at zero */
    m->lifetime_fen = 200000;
    ret("m1", 43);
    ret_line(2, 1);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].qualifying_delta, -100000);
    assert_int_equal(E.postings[0].lifetime_delta_fen, -200000);

    /* tier_basis points: qualifying goes down by the reversed points */
    rules *r = load_ok("version: v\ntier_basis: points\ntiers:\n  - {name: basic, threshold: 0}\n"
                       "  - {name: silver, threshold: 1000}\n");
    memset(&F, 0, sizeof F);
    V = fake_view(&F);
    m = fake_add(&F, "m1", "", 0);
    sale_example1("m1");
    sale_kept(r);
    set_balance(m, 175);
    m->qualifying = 175;
    m->lifetime_fen = 277345;
    ret("m1", 43);
    ret_line(2, 1);
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.postings[0].qualifying_delta, -167);
    assert_int_equal(E.postings[0].lifetime_delta_fen, -260000);
    rules_destroy(&r);

    /* staff (R6): nothing earned, nothing reversed; lifetime spend still goes down */
    memset(&F, 0, sizeof F);
    V = fake_view(&F);
    m = fake_add(&F, "s1", "", 0);
    m->staff = 1;
    sale_example1("s1");
    sale_kept(DEF);
    m->lifetime_fen = 277345;
    ret("s1", 43);
    ret_line(0, 1);
    ret_line(2, 1);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].debit, 0);
    assert_int_equal(E.postings[0].qualifying_delta, 0);
    assert_int_equal(E.postings[0].lifetime_delta_fen, -272345);
}

/* R18, R24: a return never downgrades mid-period, even below the tier's threshold. */
static void test_R18_no_downgrade(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "gold", 0);
    m->qualifying = 300000;
    sale_example1("m1");
    sale_kept(DEF);
    set_balance(m, 350);
    m->qualifying = 572345;
    strcpy(m->tier, "platinum");
    ret("m1", 43);
    ret_line(2, 1);
    ret_ok(DEF, m);
    assert_int_equal(m->qualifying, 312345);
    assert_string_equal(E.postings[0].tier_after, ""); /* unchanged */
    ret("m1", 44);
    ret_line(0, 1);
    ret_ok(DEF, m);
    assert_int_equal(m->qualifying, 300000);
    assert_string_equal(E.postings[0].tier_after, "");
}

/* R18, R25: the referral bonus a first sale triggered is not reversed by its return. */
static void test_R18_referral_bonus_not_reversed(void **state)
{
    (void)state;
    fake_add(&F, "ref", "", 0);
    lt_member *m = fake_add(&F, "m2", "", 0);
    strcpy(m->referrer, "ref");
    sale_example1("m2");
    const lt_entry *sale = sale_kept(DEF);
    assert_int_equal(sale->postings_n, 2);
    assert_string_equal(sale->postings[1].reason, "referral");
    set_balance(m, 175);
    m->sales = 1;
    ret("m2", 43);
    ret_line(0, 1);
    ret_line(1, 1);
    ret_line(2, 1);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings_n, 1);
    assert_string_equal(E.postings[0].member_id, "m2");
    assert_int_equal(E.postings[0].debit, 175);
}

/* ------------------------------------------------------------------ invariants */

static uint64_t rng_state = TEST_RNG_SEED;

static uint64_t rng(uint64_t n)
{
    uint64_t v = test_rng_next(&rng_state);
    return n ? v % n : 0;
}

/* R18 multi-line rounding, R30: random sales (promotions, sku points, exclusions, redemption)
 * returned in random pieces: every line's reversed points, given-back points, paid and
 * qualifying amounts add up exactly to the sale's, each return's posting matches its lines,
 * and rating is deterministic. */
static void test_R18_random_returns_sum_to_the_sale(void **state)
{
    (void)state;
    static const char *const cats[] = {"dairy", "groceries", "tobacco", "appliances", "toys"};
    static lt_entry again;
    rules *r = load_ok("version: v\npromotions:\n"
                       "  - {name: p, multiplier_pct: 175, from: 2026-01-01 00:00,"
                       " to: 2027-01-01 00:00, categories: [dairy]}\n"
                       "sku_points: [{sku: S3, points: 2}]\n");
    for (int round = 0; round < 200; round++) {
        memset(&F, 0, sizeof F);
        V = fake_view(&F);
        lt_member *m = fake_add(&F, "m1", "gold", 1000000);
        ev_init(&EV, LT_EV_SALE, "m1", noon());
        EV.id.event_id = SALE_ID;
        uint32_t n = 1 + (uint32_t)rng(8);
        int64_t total = 0;
        for (uint32_t i = 0; i < n; i++) {
            int64_t list = 1 + (int64_t)rng(200000);
            int64_t paid = (int64_t)rng((uint64_t)list + 1);
            int64_t qty = 1 + (int64_t)rng(7);
            char sku[8];
            snprintf(sku, sizeof sku, "S%u", (unsigned)rng(5));
            ev_line(&EV, sku, cats[rng(5)], qty, list, paid, rng(5) == 4 ? LT_LINE_PROMOTION : 0);
            total += qty * paid;
        }
        EV.redeem_points = (int64_t)rng((uint64_t)total / 100 + 1);
        const lt_entry *sale = sale_kept(r);
        set_balance(m, 1000000);
        m->qualifying = m->lifetime_fen = 1000000000;

        lt_line_result sum[LT_SALE_LINES_MAX];
        memset(sum, 0, sizeof sum);
        int64_t left = 0;
        for (uint32_t i = 0; i < n; i++)
            left += sale->lines[i].quantity;
        for (uint64_t eid = 100; left > 0; eid++) {
            ret("m1", eid);
            for (uint32_t i = 0; i < n; i++) {
                int64_t rest = sale->lines[i].quantity - F.sales[0].returned[i];
                if (rest > 0 && rng(2))
                    ret_line(i, 1 + (int64_t)rng((uint64_t)rest));
            }
            if (EV.return_lines_n == 0)
                continue;
            int64_t before = state_balance_of(m);
            memset(&again, 0x5A, sizeof again);
            assert_int_equal(rules_rate(r, &V, &EV, &again), LT_R_NONE);
            ret_ok(r, m);
            assert_memory_equal(&again, &E, sizeof E); /* deterministic (R30) */
            int64_t pts = 0, given = 0, paid = 0;
            for (uint32_t i = 0; i < n; i++) {
                const lt_line_result *l = &E.lines[i];
                sum[i].quantity += l->quantity;
                sum[i].points += l->points;
                sum[i].redeemed_points += l->redeemed_points;
                sum[i].paid_fen += l->paid_fen;
                sum[i].qualifying_fen += l->qualifying_fen;
                sum[i].eligible_fen += l->eligible_fen;
                sum[i].redeemed_fen += l->redeemed_fen;
                pts += l->points;
                given += l->redeemed_points;
                paid += l->paid_fen;
                left -= l->quantity;
            }
            const lt_posting *p = &E.postings[0];
            assert_int_equal(p->debit, pts);
            assert_int_equal(p->credit, given);
            assert_int_equal(p->lifetime_delta_fen, -paid);
            assert_int_equal(E.points_earned, -pts);
            assert_int_equal(p->balance_after, before - pts + given);
        }
        for (uint32_t i = 0; i < n; i++) {
            const lt_line_result *l = &sale->lines[i];
            assert_int_equal(sum[i].quantity, l->quantity);
            assert_int_equal(sum[i].points, l->points);
            assert_int_equal(sum[i].redeemed_points, l->redeemed_points);
            assert_int_equal(sum[i].paid_fen, l->paid_fen);
            assert_int_equal(sum[i].qualifying_fen, l->qualifying_fen);
            assert_int_equal(sum[i].eligible_fen, l->eligible_fen);
            assert_int_equal(sum[i].redeemed_fen, l->redeemed_fen);
        }
        /* everything is back: the balance is the sale's, undone */
        assert_int_equal(state_balance_of(m),
                         1000000 - sale->points_earned + sale->points_redeemed);
        ret("m1", 99);
        ret_line((uint32_t)rng(n), 1);
        assert_int_equal(rate(r), LT_R_RETURN_EXCEEDS_SALE);
    }
    rules_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_R18_full_return_reverses_line_points, setup),
        cmocka_unit_test_setup(test_R18_partial_return, setup),
        cmocka_unit_test_setup(test_R18_several_returns_reverse_exactly_the_line, setup),
        cmocka_unit_test_setup(test_R18_return_exceeds_sale, setup),
        cmocka_unit_test_setup(test_R18_unknown_sale, setup),
        cmocka_unit_test_setup(test_R18_member_resolution, setup),
        cmocka_unit_test_setup(test_R18_line_index_out_of_range, setup),
        cmocka_unit_test_setup(test_R18_redeemed_points_given_back_pro_rata, setup),
        cmocka_unit_test_setup(test_R18_spent_points_allow_debt, setup),
        cmocka_unit_test_setup(test_R18_spent_points_clamp, setup),
        cmocka_unit_test_setup(test_R18_sale_in_debt_earns, setup),
        cmocka_unit_test_setup(test_R18_spend_totals_reduced, setup),
        cmocka_unit_test_setup(test_R18_no_downgrade, setup),
        cmocka_unit_test_setup(test_R18_referral_bonus_not_reversed, setup),
        cmocka_unit_test_setup(test_R18_random_returns_sum_to_the_sale, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
