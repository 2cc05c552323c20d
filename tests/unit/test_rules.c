/* test_rules.c: rules_rate() against RULES.md: one test per rule R1..R17, R22, R23, the worked
 * examples 1-5, referrals (R25), adjustments (R27) and invariants over random sales.
 */
#define RULES_TEST_DEFAULT_FIXTURE
#include "test_rules_fake.h"

/* An ordinary weekday in June, 12:00 store time: no birthday, no cut-off nearby. */
static int64_t noon(void)
{
    return local_time(2026, 6, 10, 12, 0, CST);
}

static void sale(const char *member_id, int64_t at)
{
    ev_init(&EV, LT_EV_SALE, member_id, at);
}

static int rate(const rules *r)
{
    return rules_rate(r, &V, &EV, &E);
}

/* ------------------------------------------------------------------ worked examples */

static void sale_example1(const char *member_id, int64_t at)
{
    sale(member_id, at);
    ev_line(&EV, "A", "groceries", 1, 12345, 12345, 0);
    ev_line(&EV, "B", "tobacco", 1, 5000, 5000, 0);
    ev_line(&EV, "C", "appliances", 1, 260000, 260000, 0);
}

static void test_example1_classes_and_exclusion(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 0);
    sale_example1("m1", noon());
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.kind, LT_ENTRY_SALE);
    assert_int_equal(E.seq, 0);
    assert_int_equal(E.base_points, 175);
    assert_int_equal(E.multiplier_pct, 100);
    assert_int_equal(E.points_earned, 175);
    assert_int_equal(E.paid_fen, 277345);
    assert_int_equal(E.eligible_fen, 272345);
    assert_int_equal(E.lines_n, 3);
    assert_int_equal(E.lines[1].points, 0);
    assert_int_equal(E.lines[1].eligible_fen, 0);
    assert_int_equal(E.lines[1].qualifying_fen, 0);
    /* 175 spread pro rata to eligible fen: 7.93 and 167.07, the leftover point to A */
    assert_int_equal(E.lines[0].points, 8);
    assert_int_equal(E.lines[2].points, 167);
    check_line_sums(&E);
    assert_int_equal(E.postings_n, 1);
    assert_int_equal(E.postings[0].credit, 175);
    assert_int_equal(E.postings[0].balance_after, 175);
    assert_int_equal(E.postings[0].lifetime_delta_fen, 277345);
    assert_int_equal(E.postings[0].qualifying_delta, 272345);
    assert_string_equal(E.postings[0].tier_after, "silver");
    assert_true(E.postings[0].count_sale);
    assert_false(E.postings[0].create);
}

static void test_example2_birthday_gold_stacking_max(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "gold", 0);
    m->birth_month = 6;
    m->birth_day = 10;
    m->qualifying = 300000;
    sale_example1("m1", noon());
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.base_points, 175);
    assert_int_equal(E.multiplier_pct, 200);
    assert_int_equal(E.points_earned, 350);
    check_line_sums(&E);
    assert_string_equal(E.postings[0].tier_after, "platinum");
}

static void test_example3_rebate_bands(void **state)
{
    (void)state;
    rules *r = load_ok("version: v\nearn_mode: rebate\n");
    fake_add(&F, "m1", "", 0);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 100000, 90000, 0);
    ev_line(&EV, "B", "groceries", 1, 100000, 60000, 0);
    ev_line(&EV, "C", "appliances", 1, 100000, 40000, 0); /* earn classes play no part */
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.base_points, 117);
    assert_int_equal(E.points_earned, 117);
    check_line_sums(&E);
    rules_destroy(&r);
    assert_null(r);
}

static void test_example4_points_paid_portion(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 100);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 50000, 50000, 0);
    EV.redeem_points = 100;
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.eligible_fen, 40000);
    assert_int_equal(E.points_earned, 400);
    assert_int_equal(E.points_redeemed, 100);
    assert_int_equal(E.lines[0].redeemed_fen, 10000);
    assert_int_equal(E.lines[0].redeemed_points, 100);
    assert_int_equal(E.postings[0].debit, 100);
    assert_int_equal(E.postings[0].credit, 400);
    assert_int_equal(E.postings[0].balance_after, 400);
    assert_int_equal(E.postings[0].qualifying_delta, 40000);
    assert_int_equal(E.postings[0].lifetime_delta_fen, 50000);
}

static void test_example5_calendar_expiry(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 0);
    sale("m1", local_time(2026, 12, 30, 10, 0, CST));
    ev_line(&EV, "A", "groceries", 1, 30000, 30000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].credit, 300);
    assert_int_equal(E.postings[0].credit_expires_at, local_time(2026, 12, 31, 0, 0, CST));

    sale("m1", local_time(2026, 12, 31, 10, 0, CST));
    ev_line(&EV, "A", "groceries", 1, 5000, 5000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].credit, 50);
    assert_int_equal(E.postings[0].credit_expires_at, local_time(2027, 12, 31, 0, 0, CST));

    /* the edges of the cut-off day, in store time */
    assert_int_equal(rules_lot_expires_at(DEF, local_time(2026, 12, 30, 23, 59, CST), CST),
                     local_time(2026, 12, 31, 0, 0, CST));
    assert_int_equal(rules_lot_expires_at(DEF, local_time(2026, 12, 31, 0, 0, CST), CST),
                     local_time(2027, 12, 31, 0, 0, CST));
}

/* ------------------------------------------------------------------ R1 .. R17 */

static void test_R1_integer_floor_once(void **state)
{
    (void)state;
    /* rebate fen is summed over lines and divided once: 2 x 499.928 -> 999, not 998 */
    rules *r = load_ok("version: v\nearn_mode: rebate\npoint_value_fen: 1\n");
    fake_add(&F, "m1", "", 0);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 5681, 5681, 0);
    ev_line(&EV, "B", "groceries", 1, 5681, 5681, 0);
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.points_earned, 999);
    rules_destroy(&r);

    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 19999, 19999, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 199);
}

static void test_R2_point_value(void **state)
{
    (void)state;
    rules *r = load_ok("version: v\npoint_value_fen: 50\n");
    fake_add(&F, "m1", "", 300);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    EV.redeem_points = 100; /* worth 5,000 fen */
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.lines[0].redeemed_fen, 5000);
    assert_int_equal(E.eligible_fen, 5000);
    assert_int_equal(E.points_earned, 50);
    EV.redeem_points = 201; /* 10,050 fen > 10,000 paid */
    assert_int_equal(rate(r), LT_R_REDEMPTION_EXCEEDS_TOTAL);
    EV.redeem_points = 200;
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.points_earned, 0);
    rules_destroy(&r);
}

static void test_R3_store_local_date(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    m->birth_month = 3;
    m->birth_day = 15;
    /* 2026-03-14 17:00 UTC is already 03-15 01:00 in the store (UTC+8) */
    int64_t t = local_time(2026, 3, 14, 17, 0, 0);
    sale("m1", t);
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 200);
    EV.utc_offset_min = 0; /* a store on UTC: still 03-14 */
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 100);
    EV.utc_offset_min = -300; /* west of UTC: 03-14 12:00 */
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 100);
    assert_int_equal(E.utc_offset_min, -300);

    assert_int_equal(rules_local_day(t, CST), rules_days_from_civil(2026, 3, 15));
    assert_int_equal(rules_local_day(t, 0), rules_days_from_civil(2026, 3, 14));
    assert_int_equal(rules_local_day(-1, 0), -1); /* floor, not truncation */
    int y, mo, d;
    rules_civil_from_days(rules_days_from_civil(2024, 2, 29), &y, &mo, &d);
    assert_int_equal(y * 10000 + mo * 100 + d, 20240229);
}

static void test_R4_card_resolves_to_account(void **state)
{
    (void)state;
    fake_add(&F, "13800000001", "", 0);
    fake_card(&F, "CARD-1", "13800000001");
    fake_card(&F, "CARD-2", "13800000001"); /* family sharing */
    sale("", noon());
    strcpy(EV.card, "CARD-2");
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_string_equal(E.member_id, "13800000001");
    assert_string_equal(E.postings[0].member_id, "13800000001");
    assert_false(E.postings[0].create);
    assert_string_equal(E.postings[0].card, "");
    assert_int_equal(E.points_earned, 100);
}

static void test_R5_enrol_records_attributes(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 0);
    ev_init(&EV, LT_EV_ENROL, "m2", noon());
    EV.birth_month = 2;
    EV.birth_day = 29;
    EV.staff = true;
    strcpy(EV.referrer, "m1");
    strcpy(EV.card, "CARD-9");
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.kind, LT_ENTRY_ENROL);
    assert_string_equal(E.member_id, "m2");
    assert_int_equal(E.postings_n, 1); /* first_sale trigger: no bonus yet */
    const lt_posting *p = &E.postings[0];
    assert_true(p->create);
    assert_int_equal(p->birth_month, 2);
    assert_int_equal(p->birth_day, 29);
    assert_true(p->staff);
    assert_string_equal(p->referrer, "m1");
    assert_string_equal(p->card, "CARD-9");
    assert_string_equal(p->reason, "enrol");
    assert_int_equal(p->balance_after, 0);

    EV.birth_day = 30; /* 30 Feb */
    assert_int_equal(rate(DEF), LT_R_INVALID_FIELD);
    EV.birth_day = 29;
    strcpy(EV.referrer, "m2");
    assert_int_equal(rate(DEF), LT_R_INVALID_FIELD);
    strcpy(EV.referrer, "");
    strcpy(EV.member_id, "m1");
    assert_int_equal(rate(DEF), LT_R_MEMBER_EXISTS);
    fake_card(&F, "CARD-9", "m1");
    strcpy(EV.member_id, "m3");
    assert_int_equal(rate(DEF), LT_R_CARD_IN_USE);
}

static void test_R6_staff_earn_nothing(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "s1", "", 500);
    m->staff = 1;
    sale("s1", noon());
    ev_line(&EV, "A", "groceries", 1, 200000, 200000, 0);
    ev_line(&EV, "B", "appliances", 1, 100000, 100000, 0);
    EV.redeem_points = 100; /* staff may still spend points they hold */
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 0);
    assert_int_equal(E.eligible_fen, 0);
    assert_int_equal(E.postings[0].qualifying_delta, 0);
    assert_int_equal(E.postings[0].lifetime_delta_fen, 300000);
    assert_string_equal(E.postings[0].tier_after, "");
    assert_int_equal(E.postings[0].debit, 100);
    assert_int_equal(E.postings[0].balance_after, 400);
    check_line_sums(&E);

    rules *r = load_ok("version: v\nstaff_earns: true\n");
    assert_int_equal(rate(r), LT_R_NONE);
    assert_true(E.points_earned > 0);
    rules_destroy(&r);
}

static void test_R7_card_replacement_keeps_points(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 250);
    fake_add(&F, "m2", "", 0);
    fake_card(&F, "OLD", "m1");
    fake_card(&F, "M2CARD", "m2");
    ev_init(&EV, LT_EV_CARD_LINK, "m1", noon());
    strcpy(EV.card, "NEW");
    strcpy(EV.replaces_card, "OLD");
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.kind, LT_ENTRY_CARD_LINK);
    assert_string_equal(E.postings[0].card, "NEW");
    assert_string_equal(E.postings[0].unlink_card, "OLD");
    assert_int_equal(E.postings[0].balance_after, 250);
    assert_int_equal(E.postings[0].debit + E.postings[0].credit, 0);

    strcpy(EV.member_id, ""); /* the lost card names the account */
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_string_equal(E.member_id, "m1");

    strcpy(EV.member_id, "m1");
    strcpy(EV.replaces_card, "M2CARD");
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_CARD);
    strcpy(EV.replaces_card, "NOSUCH");
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_CARD);
    strcpy(EV.replaces_card, "");
    strcpy(EV.card, "M2CARD");
    assert_int_equal(rate(DEF), LT_R_CARD_IN_USE);
    strcpy(EV.card, "");
    assert_int_equal(rate(DEF), LT_R_MISSING_FIELD);
}

static void test_R8_unknown_member_enrol_or_reject(void **state)
{
    (void)state;
    sale("newbie", noon());
    strcpy(EV.card, "FRESH");
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_true(E.postings[0].create);
    assert_string_equal(E.postings[0].member_id, "newbie");
    assert_string_equal(E.postings[0].card, "FRESH");
    assert_int_equal(E.postings[0].balance_after, 100);

    strcpy(EV.member_id, ""); /* card only: the card number becomes the member id */
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_string_equal(E.member_id, "FRESH");
    assert_true(E.postings[0].create);
    assert_string_equal(E.postings[0].card, "FRESH");

    EV.redeem_points = 1; /* a new member has nothing to spend */
    assert_int_equal(rate(DEF), LT_R_INSUFFICIENT_POINTS);
    EV.redeem_points = 0;

    rules *r = load_ok("version: v\nunknown_member: reject\n");
    assert_int_equal(rate(r), LT_R_UNKNOWN_CARD);
    strcpy(EV.member_id, "newbie");
    assert_int_equal(rate(r), LT_R_UNKNOWN_MEMBER);
    rules_destroy(&r);

    lt_member *b = fake_add(&F, "blocked", "", 100);
    b->status = LT_MEMBER_BLOCKED;
    strcpy(EV.member_id, "blocked");
    assert_int_equal(rate(DEF), LT_R_MEMBER_BLOCKED);
    b->status = LT_MEMBER_CLOSED;
    assert_int_equal(rate(DEF), LT_R_MEMBER_BLOCKED);

    strcpy(EV.member_id, "");
    strcpy(EV.card, "");
    assert_int_equal(rate(DEF), LT_R_MISSING_FIELD);
}

static void test_R9_exclusions(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 0);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    ev_line(&EV, "B", "alcohol", 1, 10000, 10000, 0);
    ev_line(&EV, "C", "special_price", 1, 10000, 10000, 0);
    ev_line(&EV, "D", "groceries", 1, 10000, 10000, LT_LINE_GROUP_BUY);
    ev_line(&EV, "E", "groceries", 1, 10000, 10000, LT_LINE_PROMOTION);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 100);
    assert_int_equal(E.postings[0].lifetime_delta_fen, 50000);
    assert_int_equal(E.postings[0].qualifying_delta, 10000);
    for (int i = 1; i < 5; i++) {
        assert_int_equal(E.lines[i].points, 0);
        assert_int_equal(E.lines[i].qualifying_fen, 0);
        assert_int_equal(E.lines[i].paid_fen, 10000);
    }

    rules *r = load_ok("version: v\nexcluded_categories: []\nexcluded_flags: [promotion]\n");
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.points_earned, 400);
    assert_int_equal(E.lines[4].points, 0);
    rules_destroy(&r);
}

static void test_R10_redeemed_value_pro_rata(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 1000);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    ev_line(&EV, "T", "tobacco", 1, 5000, 5000, 0);
    ev_line(&EV, "B", "groceries", 1, 20000, 20000, 0);
    ev_line(&EV, "C", "groceries", 1, 30001, 30001, 0);
    EV.redeem_points = 100; /* 10,000 fen off 60,001 eligible */
    assert_int_equal(rate(DEF), LT_R_NONE);
    /* floors 1666 + 3333 + 5000 = 9999; the leftover fen goes to A, the first line */
    assert_int_equal(E.lines[0].redeemed_fen, 1667);
    assert_int_equal(E.lines[1].redeemed_fen, 0);
    assert_int_equal(E.lines[2].redeemed_fen, 3333);
    assert_int_equal(E.lines[3].redeemed_fen, 5000);
    assert_int_equal(E.lines[0].eligible_fen, 8333);
    assert_int_equal(E.eligible_fen, 50001);
    assert_int_equal(E.points_earned, 500);
    /* redeem_points split the same way: 16.67, 33.33, 50 -> 17, 33, 50 */
    assert_int_equal(E.lines[0].redeemed_points, 17);
    assert_int_equal(E.lines[2].redeemed_points, 33);
    assert_int_equal(E.lines[3].redeemed_points, 50);
    check_line_sums(&E);

    /* more redeemed than the eligible lines paid: the rest comes off the excluded lines */
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 3000, 3000, 0);
    ev_line(&EV, "T", "tobacco", 1, 7000, 7000, 0);
    EV.redeem_points = 50;
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.lines[0].redeemed_fen, 3000);
    assert_int_equal(E.lines[1].redeemed_fen, 2000);
    assert_int_equal(E.eligible_fen, 0);
    assert_int_equal(E.points_earned, 0);
    assert_int_equal(E.lines[0].redeemed_points + E.lines[1].redeemed_points, 50);
    assert_int_equal(E.lines[0].redeemed_points, 30);
}

static void test_R11_big_ticket_class(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 0);
    sale("m1", noon());
    ev_line(&EV, "TV", "appliances", 1, 9999, 9999, 0);
    ev_line(&EV, "M", "groceries", 1, 99, 99, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 1); /* 9999/5000 = 1, 99/100 = 0 */

    /* amounts are summed per class before the floor */
    sale("m1", noon());
    ev_line(&EV, "S", "clothing", 1, 2500, 2500, 0);
    ev_line(&EV, "P", "clothing", 1, 2500, 2500, 0);
    ev_line(&EV, "M", "groceries", 2, 75, 75, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.base_points, 2);
    check_line_sums(&E);

    rules *r = load_ok("version: v\nearn_classes:\n  - {name: default, unit_fen: 1000}\n"
                       "  - {name: fresh, unit_fen: 10, categories: [groceries]}\n");
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.base_points, 5 + 15); /* clothing is default here: 5000/1000 */
    rules_destroy(&r);
}

static void test_R12_rebate_band_edges(void **state)
{
    (void)state;
    rules *r = load_ok("version: v\nearn_mode: rebate\npoint_value_fen: 1\n");
    fake_add(&F, "m1", "", 0);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 10000, 8000, 0); /* exactly 80%: 880 bp */
    ev_line(&EV, "B", "groceries", 1, 10000, 7999, 0); /* 500 bp */
    ev_line(&EV, "C", "groceries", 1, 10000, 5000, 0); /* 500 bp */
    ev_line(&EV, "D", "groceries", 1, 10000, 4999, 0); /* 200 bp */
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.points_earned, (8000 * 880 + 7999 * 500 + 5000 * 500 + 4999 * 200) / 10000);
    assert_int_equal(E.points_earned, 1453);
    rules_destroy(&r);
    r = load_ok("version: v\nearn_mode: rebate\n");
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.points_earned, 14);
    rules_destroy(&r);
}

static void test_R13_multipliers(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "gold", 0);
    m->birth_month = 6;
    m->birth_day = 10;
    m->qualifying = 300000;
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    rules *r = load_ok("version: v\nmultipliers: {stacking: multiply, cap_pct: 300}\n");
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.multiplier_pct, 300); /* 2 x 2 = 4, capped at 3 */
    assert_int_equal(E.points_earned, 300);
    rules_destroy(&r);
    r = load_ok("version: v\nmultipliers: {stacking: multiply, cap_pct: 1000}\n");
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.points_earned, 400);
    rules_destroy(&r);

    /* tier multiplier of the tier held before the sale: silver (x1) upgraded to gold */
    lt_member *s = fake_add(&F, "m2", "silver", 0);
    s->qualifying = 250000;
    sale("m2", noon());
    ev_line(&EV, "A", "groceries", 1, 60000, 60000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 600);
    assert_string_equal(E.postings[0].tier_after, "gold");
}

static void test_R13_promotion_window_store_category(void **state)
{
    (void)state;
    rules *r = load_ok("version: v\npromotions:\n"
                       "  - name: dairy week\n"
                       "    multiplier_pct: 150\n"
                       "    from: 2026-05-01 00:00\n"
                       "    to: 2026-05-08 00:00\n"
                       "    stores: [S1]\n"
                       "    categories: [dairy]\n");
    fake_add(&F, "m1", "", 0);
    sale("m1", local_time(2026, 5, 7, 23, 59, CST));
    ev_line(&EV, "G", "groceries", 1, 10000, 10000, 0);
    ev_line(&EV, "D", "dairy", 1, 10100, 10100, 0);
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.multiplier_pct, 150);
    assert_int_equal(E.base_points, 100 + 101);
    assert_int_equal(E.points_earned, 100 + 151); /* 101 * 1.5 = 151.5, floored */
    assert_int_equal(E.lines[0].points, 100);
    assert_int_equal(E.lines[1].points, 151);
    check_line_sums(&E);

    EV.occurred_at = local_time(2026, 5, 8, 0, 0, CST); /* the window is [from, to) */
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.points_earned, 201);
    assert_int_equal(E.multiplier_pct, 100);
    EV.occurred_at = local_time(2026, 5, 1, 0, 0, CST);
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.points_earned, 251);
    strcpy(EV.store_id, "S2");
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.points_earned, 201);
    rules_destroy(&r);
}

static void test_R14_sku_points_after_multipliers(void **state)
{
    (void)state;
    rules *r = load_ok("version: v\nsku_points:\n  - {sku: P1, points: 5}\n"
                       "  - {sku: CIG, points: 9}\n");
    lt_member *m = fake_add(&F, "m1", "", 0);
    m->birth_month = 6;
    m->birth_day = 10;
    sale("m1", noon());
    ev_line(&EV, "P1", "groceries", 3, 1000, 1000, 0);
    ev_line(&EV, "CIG", "tobacco", 2, 1000, 1000, 0); /* excluded: no sku points either */
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.base_points, 30);
    assert_int_equal(E.sku_points, 15);
    assert_int_equal(E.points_earned, 30 * 2 + 15);
    assert_int_equal(E.lines[0].points, 75);
    assert_int_equal(E.lines[1].points, 0);
    check_line_sums(&E);
    rules_destroy(&r);
}

static void test_R15_redemption_limits(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 50);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    EV.redeem_points = 51;
    assert_int_equal(rate(DEF), LT_R_INSUFFICIENT_POINTS);
    EV.redeem_points = -1;
    assert_int_equal(rate(DEF), LT_R_INVALID_FIELD);
    EV.redeem_points = 50;
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].debit, 50);
    assert_int_equal(E.postings[0].credit, 50);
    assert_int_equal(E.postings[0].balance_after, 50);

    fake_add(&F, "m2", "", 1000);
    strcpy(EV.member_id, "m2");
    EV.redeem_points = 101;
    assert_int_equal(rate(DEF), LT_R_REDEMPTION_EXCEEDS_TOTAL);
    EV.redeem_points = 100; /* the whole sale paid with points earns nothing */
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 0);
    assert_int_equal(E.postings[0].credit_expires_at, 0);
    assert_int_equal(E.postings[0].balance_after, 900);
}

static void test_R16_gift_redemption(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 500);
    ev_init(&EV, LT_EV_GIFT, "m1", noon());
    EV.points = 200;
    strcpy(EV.reward_code, "MUG-01");
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.kind, LT_ENTRY_GIFT);
    assert_int_equal(E.event_kind, LT_EV_GIFT);
    assert_string_equal(E.reward_code, "MUG-01");
    assert_int_equal(E.postings[0].debit, 200);
    assert_int_equal(E.postings[0].credit, 0);
    assert_int_equal(E.postings[0].balance_after, 300);
    assert_string_equal(E.postings[0].reason, "gift");
    EV.points = 501;
    assert_int_equal(rate(DEF), LT_R_INSUFFICIENT_POINTS);
    EV.points = 0;
    assert_int_equal(rate(DEF), LT_R_INVALID_FIELD);
    EV.points = 1;
    strcpy(EV.member_id, "ghost"); /* gifts never enrol */
    assert_int_equal(rate(DEF), LT_R_UNKNOWN_MEMBER);
}

static void test_R17_spend_counts_every_lot_less_debt(void **state)
{
    (void)state;
    /* rating debits one amount; the state spends it FIFO. The available balance is every
     * lot, whatever its expiry, less the debt. */
    lt_member *m = fake_add(&F, "m1", "", 0);
    m->lots[0] = (lt_lot){.points = 100, .earned_at = 1, .expires_at = 1000};
    m->lots[1] = (lt_lot){.points = 50, .earned_at = 2, .expires_at = 0};
    m->lots_n = 2;
    m->debt = 20;
    ev_init(&EV, LT_EV_GIFT, "m1", noon());
    EV.points = 131;
    assert_int_equal(rate(DEF), LT_R_INSUFFICIENT_POINTS);
    EV.points = 130;
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].debit, 130);
    assert_int_equal(E.postings[0].balance_after, 0);
    /* lots earned later never expire earlier, so expiry order is earning order */
    int64_t a = rules_lot_expires_at(DEF, local_time(2026, 3, 1, 9, 0, CST), CST);
    int64_t b = rules_lot_expires_at(DEF, local_time(2026, 12, 31, 9, 0, CST), CST);
    assert_true(a < b);
}

/* ------------------------------------------------------------------ R22, R23 tiers */

static void test_R22_qualifying_after_points_paid(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 1000);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 110000, 110000, 0);
    ev_line(&EV, "T", "tobacco", 1, 50000, 50000, 0);
    EV.redeem_points = 200; /* 20,000 fen: 90,000 qualifying, below silver */
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].qualifying_delta, 90000);
    assert_int_equal(E.lines[0].qualifying_fen, 90000);
    assert_string_equal(E.postings[0].tier_after, "");
    EV.redeem_points = 0;
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_string_equal(E.postings[0].tier_after, "silver");

    rules *r = load_ok("version: v\ntier_basis: points\ntiers:\n"
                       "  - {name: c, threshold: 0}\n  - {name: b, threshold: 1000}\n"
                       "  - {name: a, threshold: 5000}\n");
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.postings[0].qualifying_delta, 1100);
    assert_string_equal(E.postings[0].tier_after, "b");
    rules_destroy(&r);
}

static void test_R23_upgrade_immediately_never_down(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 0);
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 600000, 600000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_string_equal(E.postings[0].tier_after, "platinum"); /* two tiers at once */

    lt_member *d = fake_add(&F, "m2", "diamond", 0);
    d->qualifying = 0;
    strcpy(EV.member_id, "m2");
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_string_equal(E.postings[0].tier_after, "");

    lt_member *s = fake_add(&F, "m3", "basic", 0);
    s->qualifying = 99900;
    sale("m3", noon());
    ev_line(&EV, "A", "groceries", 1, 100, 100, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_string_equal(E.postings[0].tier_after, "silver"); /* threshold reached exactly */

    sale("brand-new", noon()); /* a new member starts at the base tier */
    ev_line(&EV, "A", "groceries", 1, 350000, 350000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_string_equal(rules_tier_base(DEF), "basic");
    assert_string_equal(E.postings[0].tier_after, "gold");
    assert_int_equal(E.points_earned, 3500); /* basic: x1 */
}

/* ------------------------------------------------------------------ beyond the rule list */

static void test_R19_quarterly_and_rolling_expiry(void **state)
{
    (void)state;
    rules *q = load_ok("version: v\nexpiry: {period_months: 3}\n");
    assert_int_equal(rules_lot_expires_at(q, local_time(2026, 2, 10, 9, 0, CST), CST),
                     local_time(2026, 3, 31, 0, 0, CST));
    assert_int_equal(rules_lot_expires_at(q, local_time(2026, 3, 31, 9, 0, CST), CST),
                     local_time(2026, 6, 30, 0, 0, CST));
    assert_int_equal(rules_lot_expires_at(q, local_time(2026, 11, 1, 9, 0, CST), CST),
                     local_time(2026, 12, 31, 0, 0, CST));
    rules_destroy(&q);
    q = load_ok("version: v\nexpiry: {cutoff: \"02-29\"}\n"); /* common years: 28 Feb */
    assert_int_equal(rules_lot_expires_at(q, local_time(2026, 3, 1, 9, 0, CST), CST),
                     local_time(2027, 2, 28, 0, 0, CST));
    assert_int_equal(rules_lot_expires_at(q, local_time(2027, 3, 1, 9, 0, CST), CST),
                     local_time(2028, 2, 29, 0, 0, CST));
    rules_destroy(&q);
    rules *r = load_ok("version: v\nexpiry: {mode: rolling, ttl_days: 365}\n");
    assert_int_equal(rules_expiry(r), RULES_EXPIRY_ROLLING);
    assert_int_equal(rules_lot_expires_at(r, local_time(2026, 3, 1, 23, 30, CST), CST),
                     local_time(2027, 3, 1, 0, 0, CST));
    rules_destroy(&r);
    r = load_ok("version: v\nexpiry: {mode: none}\n");
    assert_int_equal(rules_lot_expires_at(r, noon(), CST), 0);
    rules_destroy(&r);
}

static void test_R13_leap_day_birthday(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    m->birth_month = 2;
    m->birth_day = 29;
    sale("m1", local_time(2026, 2, 28, 12, 0, CST));
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 200);
    EV.occurred_at = local_time(2028, 2, 28, 12, 0, CST); /* leap year: not yet */
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 100);
    EV.occurred_at = local_time(2028, 2, 29, 12, 0, CST);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.points_earned, 200);
}

static void test_R25_referral_first_sale(void **state)
{
    (void)state;
    fake_add(&F, "ref", "", 40);
    lt_member *m = fake_add(&F, "m1", "", 0);
    strcpy(m->referrer, "ref");
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings_n, 2);
    assert_string_equal(E.postings[1].member_id, "ref");
    assert_int_equal(E.postings[1].credit, 100);
    assert_int_equal(E.postings[1].balance_after, 140);
    assert_string_equal(E.postings[1].reason, "referral");
    assert_int_equal(E.postings[1].credit_expires_at, local_time(2026, 12, 31, 0, 0, CST));
    assert_false(E.postings[1].count_sale);

    sale("m1", noon()); /* nothing eligible: no bonus */
    ev_line(&EV, "T", "tobacco", 1, 10000, 10000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings_n, 1);

    m->sales = 1; /* not the first sale any more */
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings_n, 1);

    m->sales = 0;
    F.members[0].status = LT_MEMBER_BLOCKED;
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings_n, 1);
}

static void test_R25_referral_at_enrol(void **state)
{
    (void)state;
    rules *r = load_ok("version: v\nreferral: {bonus: 250, trigger: enrol}\n");
    fake_add(&F, "ref", "", 0);
    ev_init(&EV, LT_EV_ENROL, "m9", noon());
    strcpy(EV.referrer, "ref");
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.postings_n, 2);
    assert_int_equal(E.postings[1].credit, 250);
    assert_int_equal(E.postings[1].balance_after, 250);
    strcpy(EV.referrer, "nobody"); /* recorded, but no bonus */
    assert_int_equal(rate(r), LT_R_NONE);
    assert_int_equal(E.postings_n, 1);
    assert_string_equal(E.postings[0].referrer, "nobody");
    rules_destroy(&r);
}

static void test_R27_adjustments(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 100);
    ev_init(&EV, LT_EV_ADJUST, "m1", noon());
    EV.points = 50;
    strcpy(EV.reason_code, "GOODWILL");
    strcpy(EV.operator_id, "op7");
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.kind, LT_ENTRY_ADJUSTMENT);
    assert_string_equal(E.reason_code, "GOODWILL");
    assert_string_equal(E.operator_id, "op7");
    assert_int_equal(E.postings[0].credit, 50);
    assert_int_equal(E.postings[0].credit_expires_at, local_time(2026, 12, 31, 0, 0, CST));
    assert_int_equal(E.postings[0].balance_after, 150);
    EV.points = -100;
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.postings[0].debit, 100);
    assert_int_equal(E.postings[0].balance_after, 0);
    EV.points = -101;
    assert_int_equal(rate(DEF), LT_R_INSUFFICIENT_POINTS);
    EV.points = 0;
    assert_int_equal(rate(DEF), LT_R_INVALID_FIELD);
}

static void test_entry_header_and_unsupported(void **state)
{
    (void)state;
    fake_add(&F, "m1", "", 0);
    sale("m1", noon());
    EV.id.node_id = 99;
    EV.id.event_id = 12345;
    ev_line(&EV, "A", "groceries", 1, 100, 100, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.id.node_id, 99);
    assert_int_equal(E.id.event_id, 12345);
    assert_int_equal(E.event_kind, LT_EV_SALE);
    assert_int_equal(E.occurred_at, noon());
    assert_string_equal(E.store_id, "S1");
    assert_string_equal(E.rules_version, rules_version(DEF)); /* R31 */
    assert_int_equal(E.digest, 0);

    EV.kind = LT_EV_RETURN; /* R18, rated in test_rules_returns.c: this one names no lines */
    assert_int_equal(rate(DEF), LT_R_MISSING_FIELD);
    EV.kind = LT_EV_MERGE; /* R7, rated in test_rules_merge.c: this one names no source */
    assert_int_equal(rate(DEF), LT_R_MISSING_FIELD);
    EV.kind = LT_EV_NONE;
    assert_int_equal(rate(DEF), LT_R_UNSUPPORTED_EVENT);
}

static void test_overflow_rejected(void **state)
{
    (void)state;
    lt_member *m = fake_add(&F, "m1", "", 0);
    m->lots[0].points = INT64_MAX - 5;
    m->lots[1].points = 10;
    m->lots_n = 2;
    sale("m1", noon());
    ev_line(&EV, "A", "groceries", 1, 100, 100, 0);
    assert_int_equal(rate(DEF), LT_R_AMOUNT_OVERFLOW);

    /* the biggest sale ingest lets through still rates exactly */
    m->lots_n = 0;
    sale("m1", noon());
    for (int i = 0; i < LT_SALE_LINES_MAX; i++)
        ev_line(&EV, "X", "groceries", LT_QUANTITY_MAX, 1000000, 1000000, 0);
    assert_int_equal(rate(DEF), LT_R_NONE);
    assert_int_equal(E.paid_fen, (int64_t)LT_SALE_LINES_MAX * LT_LINE_FEN_MAX);
    assert_int_equal(E.points_earned, (int64_t)LT_SALE_LINES_MAX * LT_LINE_FEN_MAX / 100);
    check_line_sums(&E);
}

/* A tiny deterministic generator for the invariant test. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(uint64_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (rng_state >> 33) % n;
}

static void test_invariants_random_sales(void **state)
{
    (void)state;
    static const char *cats[] = {"groceries", "tobacco", "appliances", "dairy", "clothing"};
    static lt_entry again;
    rules *r = load_ok("version: v\npromotions:\n"
                       "  - {name: p, multiplier_pct: 175, from: 2026-01-01 00:00,"
                       " to: 2027-01-01 00:00, categories: [dairy]}\n"
                       "sku_points: [{sku: S3, points: 2}]\n");
    lt_member *m = fake_add(&F, "m1", "gold", 1000000);
    for (int round = 0; round < 300; round++) {
        m->birth_month = (uint8_t)(1 + rng(12));
        m->birth_day = 10;
        sale("m1", noon());
        uint32_t n = 1 + (uint32_t)rng(12);
        int64_t total = 0;
        for (uint32_t i = 0; i < n; i++) {
            int64_t list = (int64_t)rng(200000);
            int64_t paid = list ? (int64_t)rng((uint64_t)list + 1) : 0;
            int64_t qty = 1 + (int64_t)rng(5);
            char sku[8];
            snprintf(sku, sizeof sku, "S%u", (unsigned)rng(5));
            ev_line(&EV, sku, cats[rng(5)], qty, list, paid, (uint32_t)rng(4) == 3 ? 1u : 0u);
            total += qty * paid;
        }
        EV.redeem_points = (int64_t)rng((uint64_t)total / 100 + 1);
        assert_int_equal(rules_rate(r, &V, &EV, &E), LT_R_NONE);
        check_line_sums(&E);
        int64_t red = 0, qual = 0;
        for (uint32_t i = 0; i < E.lines_n; i++) {
            red += E.lines[i].redeemed_fen;
            qual += E.lines[i].qualifying_fen;
            assert_true(E.lines[i].eligible_fen + E.lines[i].redeemed_fen <= E.lines[i].paid_fen);
        }
        assert_int_equal(red, EV.redeem_points * 100);
        assert_int_equal(qual, E.postings[0].qualifying_delta);
        assert_int_equal(E.paid_fen, total);
        assert_int_equal(E.postings[0].balance_after, 1000000 - EV.redeem_points + E.points_earned);
        /* deterministic (R30): the same inputs give the same bytes, every byte but the lines
         * past lines_n (rules_rate() leaves those as they were) */
        memset(&again, 0x5A, sizeof again);
        assert_int_equal(rules_rate(r, &V, &EV, &again), LT_R_NONE);
        size_t used = offsetof(lt_entry, lines) + E.lines_n * sizeof E.lines[0];
        size_t tail = offsetof(lt_entry, reward_code);
        assert_memory_equal(&again, &E, used);
        assert_memory_equal((const uint8_t *)&again + tail, (const uint8_t *)&E + tail,
                            sizeof E - tail);
        for (size_t i = used; i < tail; i++)
            assert_int_equal(((const uint8_t *)&again)[i], 0x5A);
    }
    rules_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_example1_classes_and_exclusion, setup),
        cmocka_unit_test_setup(test_example2_birthday_gold_stacking_max, setup),
        cmocka_unit_test_setup(test_example3_rebate_bands, setup),
        cmocka_unit_test_setup(test_example4_points_paid_portion, setup),
        cmocka_unit_test_setup(test_example5_calendar_expiry, setup),
        cmocka_unit_test_setup(test_R1_integer_floor_once, setup),
        cmocka_unit_test_setup(test_R2_point_value, setup),
        cmocka_unit_test_setup(test_R3_store_local_date, setup),
        cmocka_unit_test_setup(test_R4_card_resolves_to_account, setup),
        cmocka_unit_test_setup(test_R5_enrol_records_attributes, setup),
        cmocka_unit_test_setup(test_R6_staff_earn_nothing, setup),
        cmocka_unit_test_setup(test_R7_card_replacement_keeps_points, setup),
        cmocka_unit_test_setup(test_R8_unknown_member_enrol_or_reject, setup),
        cmocka_unit_test_setup(test_R9_exclusions, setup),
        cmocka_unit_test_setup(test_R10_redeemed_value_pro_rata, setup),
        cmocka_unit_test_setup(test_R11_big_ticket_class, setup),
        cmocka_unit_test_setup(test_R12_rebate_band_edges, setup),
        cmocka_unit_test_setup(test_R13_multipliers, setup),
        cmocka_unit_test_setup(test_R13_promotion_window_store_category, setup),
        cmocka_unit_test_setup(test_R13_leap_day_birthday, setup),
        cmocka_unit_test_setup(test_R14_sku_points_after_multipliers, setup),
        cmocka_unit_test_setup(test_R15_redemption_limits, setup),
        cmocka_unit_test_setup(test_R16_gift_redemption, setup),
        cmocka_unit_test_setup(test_R17_spend_counts_every_lot_less_debt, setup),
        cmocka_unit_test_setup(test_R19_quarterly_and_rolling_expiry, setup),
        cmocka_unit_test_setup(test_R22_qualifying_after_points_paid, setup),
        cmocka_unit_test_setup(test_R23_upgrade_immediately_never_down, setup),
        cmocka_unit_test_setup(test_R25_referral_first_sale, setup),
        cmocka_unit_test_setup(test_R25_referral_at_enrol, setup),
        cmocka_unit_test_setup(test_R27_adjustments, setup),
        cmocka_unit_test_setup(test_entry_header_and_unsupported, setup),
        cmocka_unit_test_setup(test_overflow_rejected, setup),
        cmocka_unit_test_setup(test_invariants_random_sales, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
