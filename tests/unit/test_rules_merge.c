/* test_rules_merge.c: rating account merges (R7): the MERGE entry and its two postings, the
 * higher tier, debt, the refusals, and every later event of the closed source refused with
 * MEMBER_BLOCKED. Applying the entry is tested in test_state_merge.c. */
#define RULES_TEST_DEFAULT_FIXTURE
#include "test_rules_fake.h"

static int64_t noon(void)
{
    return local_time(2026, 6, 10, 12, 0, CST);
}

static void merge(const char *target, const char *source)
{
    ev_init(&EV, LT_EV_MERGE, target, noon());
    strcpy(EV.source_member, source);
}

static int rate(void)
{
    return rules_rate(DEF, &V, &EV, &E);
}

static void test_R7_merge_entry_and_postings(void **state)
{
    (void)state;
    fake_add(&F, "T", "silver", 100);
    lt_member *s = fake_add(&F, "S", "gold", 40);
    s->qualifying = 350000;
    fake_card(&F, "CS", "S");
    merge("T", "S");
    assert_int_equal(rate(), LT_R_NONE);
    assert_int_equal(E.kind, LT_ENTRY_MERGE);
    assert_int_equal(E.event_kind, LT_EV_MERGE);
    assert_string_equal(E.member_id, "T");
    assert_string_equal(E.rules_version, rules_version(DEF)); /* R31 */
    assert_int_equal(E.postings_n, 2);

    const lt_posting *t = &E.postings[0], *f = &E.postings[1];
    assert_string_equal(t->member_id, "T");
    assert_string_equal(t->merge_from, "S");
    assert_string_equal(t->reason, "merge");
    assert_int_equal(t->balance_after, 140);
    assert_string_equal(t->tier_after, "gold"); /* the higher of silver and gold */
    assert_int_equal(t->debit + t->credit + t->lifetime_delta_fen + t->qualifying_delta, 0);
    assert_false(t->create);
    assert_false(t->count_sale);
    assert_string_equal(t->card, "");

    assert_string_equal(f->member_id, "S");
    assert_string_equal(f->merge_from, "");
    assert_string_equal(f->reason, "merged");
    assert_int_equal(f->balance_after, 0);
    assert_string_equal(f->tier_after, "");
    assert_int_equal(f->debit + f->credit, 0);
    assert_int_equal(E.lines_n, 0);
    assert_int_equal(E.points_earned, 0);
}

static void test_R7_merge_keeps_the_higher_tier(void **state)
{
    (void)state;
    fake_add(&F, "T", "platinum", 0);
    fake_add(&F, "S", "silver", 0);
    merge("T", "S");
    assert_int_equal(rate(), LT_R_NONE);
    assert_string_equal(E.postings[0].tier_after, ""); /* the target's own tier stays */

    /* a tier name the rules do not know counts as the base tier (rules.md) */
    strcpy(F.members[0].tier, "");
    strcpy(F.members[1].tier, "ruby");
    assert_int_equal(rate(), LT_R_NONE);
    assert_string_equal(E.postings[0].tier_after, "");
    strcpy(F.members[1].tier, "diamond");
    assert_int_equal(rate(), LT_R_NONE);
    assert_string_equal(E.postings[0].tier_after, "diamond");
}

static void test_R7_merge_moves_debt(void **state)
{
    (void)state;
    fake_add(&F, "T", "", 100);
    lt_member *s = fake_add(&F, "S", "", 0);
    s->debt = 130; /* R18: the source is in debt */
    merge("T", "S");
    assert_int_equal(rate(), LT_R_NONE);
    assert_int_equal(E.postings[0].balance_after, -30);
    assert_int_equal(E.postings[1].balance_after, 0);

    /* a target in debt takes a source with points the same way */
    F.members[0].debt = 500;
    s->debt = 0;
    s->lots[0].points = 20;
    s->lots_n = 1;
    assert_int_equal(rate(), LT_R_NONE);
    assert_int_equal(E.postings[0].balance_after, 100 - 500 + 20);
}

static void test_R7_merge_refusals(void **state)
{
    (void)state;
    fake_add(&F, "T", "", 10);
    fake_add(&F, "S", "", 10);
    merge("nobody", "S");
    assert_int_equal(rate(), LT_R_UNKNOWN_MEMBER);
    merge("T", "nobody");
    assert_int_equal(rate(), LT_R_UNKNOWN_MEMBER);
    merge("T", "");
    assert_int_equal(rate(), LT_R_MISSING_FIELD);
    merge("", "S");
    assert_int_equal(rate(), LT_R_MISSING_FIELD);
    merge("T", "T");
    assert_int_equal(rate(), LT_R_INVALID_FIELD);

    merge("T", "S");
    F.members[0].status = LT_MEMBER_BLOCKED;
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    F.members[0].status = LT_MEMBER_CLOSED;
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    F.members[0].status = LT_MEMBER_ACTIVE;
    F.members[1].status = LT_MEMBER_BLOCKED;
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    F.members[1].status = LT_MEMBER_CLOSED; /* merged once already */
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    F.members[1].status = LT_MEMBER_ACTIVE;
    assert_int_equal(rate(), LT_R_NONE);

    /* sums the state could not hold are refused */
    F.members[1].lots[0].points = INT64_MAX - 5;
    assert_int_equal(rate(), LT_R_AMOUNT_OVERFLOW);
    F.members[1].lots[0].points = 10;
    F.members[1].lifetime_fen = INT64_MAX;
    F.members[0].lifetime_fen = 1;
    assert_int_equal(rate(), LT_R_AMOUNT_OVERFLOW);
}

/* After a merge the state holds the source closed (test_state_merge.c) and its cards are the
 * target's: every event naming the source is MEMBER_BLOCKED, its old cards reach the target. */
static void test_R7_closed_source_answers_member_blocked(void **state)
{
    (void)state;
    fake_add(&F, "T", "", 50);
    lt_member *s = fake_add(&F, "S", "", 0);
    s->status = LT_MEMBER_CLOSED;
    fake_card(&F, "CS", "T"); /* relinked by the merge */

    ev_init(&EV, LT_EV_SALE, "S", noon());
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    ev_init(&EV, LT_EV_GIFT, "S", noon());
    EV.points = 1;
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    ev_init(&EV, LT_EV_ADJUST, "S", noon());
    EV.points = 5;
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    ev_init(&EV, LT_EV_CARD_LINK, "S", noon());
    strcpy(EV.card, "NEW");
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    ev_init(&EV, LT_EV_RETURN, "S", noon());
    EV.return_lines_n = 1;
    EV.return_lines[0].quantity = 1;
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    merge("S", "T");
    assert_int_equal(rate(), LT_R_MEMBER_BLOCKED);
    ev_init(&EV, LT_EV_ENROL, "S", noon()); /* the id stays taken */
    assert_int_equal(rate(), LT_R_MEMBER_EXISTS);

    /* the source's old card now earns for the target */
    ev_init(&EV, LT_EV_SALE, "", noon());
    strcpy(EV.card, "CS");
    ev_line(&EV, "A", "groceries", 1, 10000, 10000, 0);
    assert_int_equal(rate(), LT_R_NONE);
    assert_string_equal(E.member_id, "T");
    assert_int_equal(E.postings[0].balance_after, 150);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_R7_merge_entry_and_postings, setup),
        cmocka_unit_test_setup(test_R7_merge_keeps_the_higher_tier, setup),
        cmocka_unit_test_setup(test_R7_merge_moves_debt, setup),
        cmocka_unit_test_setup(test_R7_merge_refusals, setup),
        cmocka_unit_test_setup(test_R7_closed_source_answers_member_blocked, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
