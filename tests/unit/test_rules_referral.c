/* test_rules_referral.c: multi-level referrer points (R26): off by default, the levels and
 * their floor, together with the first-sale bonus (R25), cycles, unknown, blocked, closed and
 * staff referrers, and the limit of three levels. */
#include "test_rules_fake.h"

static rules *DEF, *LEVELS;
static fake F;
static rules_view V;
static lt_event EV;
static lt_entry E;

static int group_setup(void **state)
{
    (void)state;
    const char *text = rules_default_text();
    char err[256];
    if (rules_load_string(text, strlen(text), "default", &DEF, err, sizeof err))
        return -1;
    static const char levels[] = "version: levels\nreferral: {levels_bp: [1000, 500, 250]}\n";
    return rules_load_string(levels, strlen(levels), "levels", &LEVELS, err, sizeof err);
}

static int group_teardown(void **state)
{
    (void)state;
    rules_destroy(&DEF);
    rules_destroy(&LEVELS);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    memset(&EV, 0, sizeof EV);
    memset(&E, 0xA5, sizeof E);
    V = fake_view(&F);
    return 0;
}

static int64_t noon(void)
{
    return local_time(2026, 6, 10, 12, 0, CST);
}

/* A member referred by `referrer` ("" = none) who already had a sale (no R25 bonus). */
static lt_member *member(const char *id, const char *referrer, int64_t points)
{
    lt_member *m = fake_add(&F, id, "", points);
    strcpy(m->referrer, referrer);
    m->sales = 1;
    return m;
}

/* A sale of 123.45 yuan of groceries: 123 points (R11). */
static int rate_sale(const rules *r, const char *member_id)
{
    ev_init(&EV, LT_EV_SALE, member_id, noon());
    ev_line(&EV, "A", "groceries", 1, 12345, 12345, 0);
    return rules_rate(r, &V, &EV, &E);
}

static void check_referral(const lt_posting *p, const char *id, int64_t credit, int64_t balance)
{
    assert_string_equal(p->member_id, id);
    assert_string_equal(p->reason, "referral");
    assert_int_equal(p->credit, credit);
    assert_int_equal(p->balance_after, balance);
    assert_int_equal(p->debit, 0);
    /* a new lot with the normal expiry (R19), not tier-qualifying, not a sale */
    assert_int_equal(p->credit_expires_at, local_time(2026, 12, 31, 0, 0, CST));
    assert_int_equal(p->qualifying_delta, 0);
    assert_int_equal(p->lifetime_delta_fen, 0);
    assert_string_equal(p->tier_after, "");
    assert_false(p->count_sale);
    assert_false(p->create);
}

static void test_R26_off_by_default(void **state)
{
    (void)state;
    member("r1", "", 0);
    member("m1", "r1", 0);
    assert_int_equal(rate_sale(DEF, "m1"), LT_R_NONE);
    assert_int_equal(E.points_earned, 123);
    assert_int_equal(E.postings_n, 1);
}

static void test_R26_three_levels_floor_each(void **state)
{
    (void)state;
    member("r4", "", 0);
    member("r3", "r4", 0);
    member("r2", "r3", 7);
    member("r1", "r2", 10);
    member("m1", "r1", 0);
    assert_int_equal(rate_sale(LEVELS, "m1"), LT_R_NONE);
    assert_int_equal(E.points_earned, 123);
    assert_int_equal(E.postings_n, 4); /* r4 is a fourth level: none */
    assert_string_equal(E.postings[0].member_id, "m1");
    assert_int_equal(E.postings[0].credit, 123);  /* the buyer's own points are untouched */
    check_referral(&E.postings[1], "r1", 12, 22); /* floor(123 * 1000 / 10000) = 12.3 */
    check_referral(&E.postings[2], "r2", 6, 13);  /* 6.15 */
    check_referral(&E.postings[3], "r3", 3, 3);   /* 3.075 */
}

static void test_R26_with_the_first_sale_bonus(void **state)
{
    (void)state;
    member("r2", "", 0);
    member("r1", "r2", 10);
    lt_member *m = member("m1", "r1", 0);
    m->sales = 0; /* R25: the first sale also credits r1 its bonus */
    assert_int_equal(rate_sale(LEVELS, "m1"), LT_R_NONE);
    assert_int_equal(E.postings_n, 4);
    assert_string_equal(E.postings[1].member_id, "r1");
    assert_int_equal(E.postings[1].credit, 100);
    assert_int_equal(E.postings[1].balance_after, 110);
    check_referral(&E.postings[2], "r1", 12, 122); /* after the bonus of the same entry */
    check_referral(&E.postings[3], "r2", 6, 6);
    assert_true(E.postings_n <= LT_POSTINGS_MAX);
}

static void test_R26_cycle_stops_the_walk(void **state)
{
    (void)state;
    member("r1", "m1", 0); /* m1 -> r1 -> m1 */
    member("m1", "r1", 0);
    assert_int_equal(rate_sale(LEVELS, "m1"), LT_R_NONE);
    assert_int_equal(E.postings_n, 2);
    check_referral(&E.postings[1], "r1", 12, 12);

    memset(&F, 0, sizeof F);
    member("r1", "r2", 0); /* m1 -> r1 -> r2 -> r1 */
    member("r2", "r1", 0);
    member("m1", "r1", 0);
    assert_int_equal(rate_sale(LEVELS, "m1"), LT_R_NONE);
    assert_int_equal(E.postings_n, 3);
    check_referral(&E.postings[1], "r1", 12, 12);
    check_referral(&E.postings[2], "r2", 6, 6);
}

static void test_R26_unknown_blocked_closed_staff_referrers(void **state)
{
    (void)state;
    member("m1", "ghost", 0); /* unknown: nobody earns, the walk ends */
    assert_int_equal(rate_sale(LEVELS, "m1"), LT_R_NONE);
    assert_int_equal(E.postings_n, 1);

    memset(&F, 0, sizeof F);
    member("r3", "", 0);
    lt_member *r2 = member("r2", "r3", 0);
    lt_member *r1 = member("r1", "r2", 0);
    member("m1", "r1", 0);
    r1->status = LT_MEMBER_BLOCKED; /* forfeits level 0; r2 and r3 keep theirs */
    assert_int_equal(rate_sale(LEVELS, "m1"), LT_R_NONE);
    assert_int_equal(E.postings_n, 3);
    check_referral(&E.postings[1], "r2", 6, 6);
    check_referral(&E.postings[2], "r3", 3, 3);

    r1->status = LT_MEMBER_ACTIVE;
    r2->status = LT_MEMBER_CLOSED; /* merged away (R7) */
    assert_int_equal(rate_sale(LEVELS, "m1"), LT_R_NONE);
    assert_int_equal(E.postings_n, 3);
    check_referral(&E.postings[1], "r1", 12, 12);
    check_referral(&E.postings[2], "r3", 3, 3);

    r2->status = LT_MEMBER_ACTIVE;
    r1->staff = 1; /* R6: staff earn nothing, unless staff_earns */
    assert_int_equal(rate_sale(LEVELS, "m1"), LT_R_NONE);
    assert_int_equal(E.postings_n, 3);
    assert_string_equal(E.postings[1].member_id, "r2");
    rules *r = load_ok("version: s\nstaff_earns: true\nreferral: {levels_bp: [1000]}\n");
    assert_int_equal(rate_sale(r, "m1"), LT_R_NONE);
    assert_int_equal(E.postings_n, 2);
    check_referral(&E.postings[1], "r1", 12, 12);
    rules_destroy(&r);
}

static void test_R26_nothing_earned_nothing_shared(void **state)
{
    (void)state;
    member("r1", "", 0);
    lt_member *m = member("m1", "r1", 0);
    ev_init(&EV, LT_EV_SALE, "m1", noon()); /* 5 points: 10% is 0.5, floored to nothing */
    ev_line(&EV, "A", "groceries", 1, 500, 500, 0);
    assert_int_equal(rules_rate(LEVELS, &V, &EV, &E), LT_R_NONE);
    assert_int_equal(E.points_earned, 5);
    assert_int_equal(E.postings_n, 1);

    ev_init(&EV, LT_EV_SALE, "m1", noon()); /* excluded category (R9) */
    ev_line(&EV, "T", "tobacco", 1, 50000, 50000, 0);
    assert_int_equal(rules_rate(LEVELS, &V, &EV, &E), LT_R_NONE);
    assert_int_equal(E.postings_n, 1);

    m->staff = 1; /* a staff buyer earns nothing (R6), so shares nothing */
    assert_int_equal(rate_sale(LEVELS, "m1"), LT_R_NONE);
    assert_int_equal(E.points_earned, 0);
    assert_int_equal(E.postings_n, 1);

    /* a sale that enrols its member has no referrer yet */
    assert_int_equal(rate_sale(LEVELS, "newcomer"), LT_R_NONE);
    assert_int_equal(E.postings_n, 1);
}

static void test_R26_levels_of_full_share(void **state)
{
    (void)state;
    rules *r = load_ok("version: f\nreferral: {bonus: 0, levels_bp: [10000, 0, 10000]}\n");
    member("r3", "", 0);
    member("r2", "r3", 0);
    member("r1", "r2", 0);
    lt_member *m = member("m1", "r1", 0);
    m->sales = 0; /* bonus 0: R25 is off */
    assert_int_equal(rate_sale(r, "m1"), LT_R_NONE);
    assert_int_equal(E.postings_n, 3); /* level 1 is worth 0: no posting */
    check_referral(&E.postings[1], "r1", 123, 123);
    check_referral(&E.postings[2], "r3", 123, 123);
    rules_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_R26_off_by_default, setup),
        cmocka_unit_test_setup(test_R26_three_levels_floor_each, setup),
        cmocka_unit_test_setup(test_R26_with_the_first_sale_bonus, setup),
        cmocka_unit_test_setup(test_R26_cycle_stops_the_walk, setup),
        cmocka_unit_test_setup(test_R26_unknown_blocked_closed_staff_referrers, setup),
        cmocka_unit_test_setup(test_R26_nothing_earned_nothing_shared, setup),
        cmocka_unit_test_setup(test_R26_levels_of_full_share, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
