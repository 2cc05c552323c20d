/* test_state.c: the member state projection: postings, FIFO lots (R17), debt (R18), cards,
 * order-independent hashing (R30), member records and dirty tracking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "state.h"
#include "test_state_fixture.h"

#define T0 1767225600 /* 2026-01-01 UTC */
#define DAY 86400

static lt_posting *posting(int64_t at, const char *member)
{
    return st_posting(LT_ENTRY_NONE, at, member);
}

static int apply(state *s)
{
    return st_apply(s);
}

static void enrol(state *s, const char *member, const char *card)
{
    lt_posting *p = posting(T0, member);
    p->create = true;
    if (card)
        strcpy(p->card, card);
    assert_int_equal(apply(s), 0);
}

static void credit(state *s, const char *member, int64_t at, int64_t points, int64_t expires_at,
                   int64_t balance_after)
{
    lt_posting *p = posting(at, member);
    p->credit = points;
    p->credit_expires_at = expires_at;
    p->balance_after = balance_after;
    assert_int_equal(apply(s), 0);
}

static void test_state_create_and_attributes(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    lt_posting *p = posting(T0 + 5, "M1");
    p->create = true;
    p->birth_month = 3;
    p->birth_day = 14;
    p->staff = true;
    strcpy(p->referrer, "M0");
    p->credit = 100;
    p->lifetime_delta_fen = 5000;
    p->qualifying_delta = 5000;
    p->count_sale = true;
    p->balance_after = 100;
    g_entry.seq = 9;
    assert_int_equal(apply(s), 0);
    const lt_member *m = state_member(s, "M1");
    assert_non_null(m);
    assert_string_equal(m->id, "M1");
    assert_string_equal(m->tier, ""); /* base tier until a posting sets one */
    assert_string_equal(m->referrer, "M0");
    assert_int_equal(m->birth_month, 3);
    assert_int_equal(m->birth_day, 14);
    assert_int_equal(m->staff, 1);
    assert_int_equal(m->enrolled_at, T0 + 5);
    assert_int_equal(m->sales, 1);
    assert_int_equal(m->last_purchase_at, T0 + 5);
    assert_int_equal(m->lifetime_fen, 5000);
    assert_int_equal(state_balance(m), 100);
    assert_int_equal(state_seq(s), 9);
    assert_int_equal(state_members(s), 1);

    p = posting(T0, "M1");
    strcpy(p->tier_after, "silver");
    p->balance_after = 100;
    assert_int_equal(apply(s), 0);
    assert_string_equal(state_member(s, "M1")->tier, "silver");

    /* Enrolling twice, or posting to an unknown member, is an inconsistent entry. */
    p = posting(T0, "M1");
    p->create = true;
    assert_int_equal(apply(s), -1);
    assert_non_null(strstr(g_err, "exists"));
    posting(T0, "M2");
    assert_int_equal(apply(s), -1);
    assert_non_null(strstr(g_err, "unknown"));
    assert_null(state_member(s, "M2"));
    state_destroy(&s);
    assert_null(s);
}

/* R17: the lots expiring first are spent first; never-expiring lots last; ties by earning. */
static void test_state_R17_debit_fifo_by_expiry(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "M1", NULL);
    credit(s, "M1", T0 + 1, 50, 0, 50);                /* never expires */
    credit(s, "M1", T0 + 2, 100, T0 + 300 * DAY, 150); /* expires last of the dated */
    credit(s, "M1", T0 + 3, 30, T0 + 100 * DAY, 180);  /* expires first */
    credit(s, "M1", T0 + 1, 20, T0 + 300 * DAY, 200);  /* same expiry, earned earlier */
    const lt_member *m = state_member(s, "M1");
    assert_int_equal(m->lots_n, 4);
    int64_t want[][3] = {{30, T0 + 3, T0 + 100 * DAY},
                         {20, T0 + 1, T0 + 300 * DAY},
                         {100, T0 + 2, T0 + 300 * DAY},
                         {50, T0 + 1, 0}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(m->lots[i].points, want[i][0]);
        assert_int_equal(m->lots[i].earned_at, want[i][1]);
        assert_int_equal(m->lots[i].expires_at, want[i][2]);
    }
    lt_posting *p = posting(T0 + 10, "M1");
    p->debit = 60; /* all 30, then 30 of the 20 + 100 run */
    p->balance_after = 140;
    assert_int_equal(apply(s), 0);
    m = state_member(s, "M1");
    assert_int_equal(m->lots_n, 2);
    assert_int_equal(m->lots[0].points, 90);
    assert_int_equal(m->lots[0].earned_at, T0 + 2);
    assert_int_equal(m->lots[1].points, 50);

    /* A debit beyond what is held is refused and changes nothing. */
    p = posting(T0 + 11, "M1");
    p->debit = 141;
    p->balance_after = -1;
    assert_int_equal(apply(s), -1);
    assert_non_null(strstr(g_err, "exceeds"));
    assert_int_equal(state_balance(state_member(s, "M1")), 140);

    /* Spending everything leaves no lots; negative amounts are refused. */
    p = posting(T0 + 12, "M1");
    p->debit = 140;
    assert_int_equal(apply(s), 0);
    assert_int_equal(state_member(s, "M1")->lots_n, 0);
    p = posting(T0 + 13, "M1");
    p->credit = -5;
    p->balance_after = -5;
    assert_int_equal(apply(s), -1);
    state_destroy(&s);
}

/* Loads a member record with the given debt (R18: negative balance outside the lots). */
static void load_with_debt(state *s, const char *id, int64_t debt)
{
    lt_member m;
    memset(&m, 0, sizeof(m));
    strcpy(m.id, id);
    m.debt = debt;
    uint8_t buf[256];
    size_t len = state_member_encode(&m, buf, sizeof(buf));
    assert_true(len > 0);
    assert_int_equal(state_load_member(s, buf, len), 0);
}

static void test_state_R18_credit_pays_debt_first(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    load_with_debt(s, "M1", 40);
    assert_int_equal(state_balance(state_member(s, "M1")), -40);
    credit(s, "M1", T0, 10, 0, -30); /* all of it pays debt, no lot */
    const lt_member *m = state_member(s, "M1");
    assert_int_equal(m->debt, 30);
    assert_int_equal(m->lots_n, 0);
    credit(s, "M1", T0 + 1, 100, T0 + DAY, 70); /* 30 pays the rest, 70 becomes a lot */
    m = state_member(s, "M1");
    assert_int_equal(m->debt, 0);
    assert_int_equal(m->lots_n, 1);
    assert_int_equal(m->lots[0].points, 70);
    assert_int_equal(m->lots[0].expires_at, T0 + DAY);
    state_destroy(&s);
}

static void test_state_balance_after_mismatch_leaves_member(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "M1", "C1");
    credit(s, "M1", T0, 100, 0, 100);
    uint8_t before[256], after[256];
    size_t n1 = state_member_encode(state_member(s, "M1"), before, sizeof(before));
    lt_posting *p = posting(T0 + 1, "M1");
    p->credit = 10;
    p->debit = 5;
    p->count_sale = true;
    strcpy(p->card, "C2");
    p->balance_after = 104; /* should be 105 */
    assert_int_equal(apply(s), -1);
    assert_non_null(strstr(g_err, "105"));
    size_t n2 = state_member_encode(state_member(s, "M1"), after, sizeof(after));
    assert_int_equal(n1, n2);
    assert_memory_equal(before, after, n1);
    assert_null(state_card_owner(s, "C2"));
    p->balance_after = 105;
    assert_int_equal(apply(s), 0);
    assert_string_equal(state_card_owner(s, "C2"), "M1");
    state_destroy(&s);
}

static void test_state_cards_link_unlink(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "M1", "C1");
    enrol(s, "M2", "C2");
    assert_string_equal(state_card_owner(s, "C1"), "M1");
    assert_null(state_card_owner(s, "C9"));

    lt_posting *p = posting(T0, "M1"); /* R7: replace lost C1 by C3 */
    strcpy(p->card, "C3");
    strcpy(p->unlink_card, "C1");
    assert_int_equal(apply(s), 0);
    assert_null(state_card_owner(s, "C1"));
    assert_string_equal(state_card_owner(s, "C3"), "M1");

    p = posting(T0, "M1"); /* another member's card */
    strcpy(p->card, "C2");
    assert_int_equal(apply(s), -1);
    p = posting(T0, "M1"); /* unlink a card that is not this member's */
    strcpy(p->unlink_card, "C2");
    assert_int_equal(apply(s), -1);
    p = posting(T0, "M1"); /* linking an own card again is a no-op */
    strcpy(p->card, "C3");
    assert_int_equal(apply(s), 0);

    p = posting(T0, "M1");
    strcpy(p->card, "C4");
    assert_int_equal(apply(s), 0);
    const char *cards[4];
    assert_int_equal(state_member_cards(s, "M1", cards, 4), 2);
    assert_true((strcmp(cards[0], "C3") == 0 && strcmp(cards[1], "C4") == 0) ||
                (strcmp(cards[0], "C4") == 0 && strcmp(cards[1], "C3") == 0));
    assert_int_equal(state_member_cards(s, "M1", cards, 1), 2);
    assert_int_equal(state_member_cards(s, "nobody", cards, 4), 0);

    /* C1 is free again: another member may take it. */
    p = posting(T0, "M2");
    strcpy(p->card, "C1");
    assert_int_equal(apply(s), 0);
    assert_string_equal(state_card_owner(s, "C1"), "M2");

    rules_view v;
    state_view(s, &v);
    assert_string_equal(v.card_owner(v.ctx, "C4"), "M1");
    assert_string_equal(v.member(v.ctx, "M2")->id, "M2");
    assert_null(v.member(v.ctx, "M3"));
    state_destroy(&s);
}

/* Many members and cards: the indexes grow, and deletions keep every probe run intact. */
static void test_state_many_members_and_cards(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enum { N = 20000 };
    char id[LT_ID_MAX], card[LT_ID_MAX];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "M%d", i);
        snprintf(card, sizeof(card), "C%d", i);
        enrol(s, id, card);
    }
    for (int i = 0; i < N; i += 2) {
        snprintf(id, sizeof(id), "M%d", i);
        lt_posting *p = posting(T0, id);
        snprintf(p->unlink_card, sizeof(p->unlink_card), "C%d", i);
        assert_int_equal(apply(s), 0);
    }
    assert_int_equal(state_members(s), N);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "M%d", i);
        snprintf(card, sizeof(card), "C%d", i);
        assert_non_null(state_member(s, id));
        const char *owner = state_card_owner(s, card);
        if (i % 2)
            assert_string_equal(owner, id);
        else
            assert_null(owner);
    }
    state_destroy(&s);
}

/* R30: the same entries give the same hash whatever order members were created in. */
static void build(state *s, const int *order, int n)
{
    char id[LT_ID_MAX], card[LT_ID_MAX];
    for (int k = 0; k < n; k++) {
        int i = order[k];
        snprintf(id, sizeof(id), "M%d", i);
        snprintf(card, sizeof(card), "C%d", i);
        enrol(s, id, card);
        credit(s, id, T0 + i, 10 * (i + 1), T0 + 365 * DAY, 10 * (i + 1));
    }
}

static void test_state_R30_hash_order_independent(void **st)
{
    (void)st;
    enum { N = 50 };
    int fwd[N], rev[N];
    for (int i = 0; i < N; i++) {
        fwd[i] = i;
        rev[i] = N - 1 - i;
    }
    state *a, *b;
    assert_int_equal(state_new(&a), 0);
    assert_int_equal(state_new(&b), 0);
    uint64_t empty = state_hash(a);
    build(a, fwd, N);
    build(b, rev, N);
    assert_true(state_hash(a) != empty);
    assert_true(state_hash(a) == state_hash(b));

    /* One point more changes it; so does a card moving. */
    credit(b, "M7", T0, 1, 0, 81);
    assert_true(state_hash(a) != state_hash(b));
    credit(a, "M7", T0, 1, 0, 81);
    assert_true(state_hash(a) == state_hash(b));
    lt_posting *p = posting(T0, "M7");
    strcpy(p->unlink_card, "C7");
    p->balance_after = 81;
    assert_int_equal(apply(b), 0);
    assert_true(state_hash(a) != state_hash(b));
    state_destroy(&a);
    state_destroy(&b);
}

static int copy_member(void *ctx, const lt_member *m)
{
    uint8_t buf[4096];
    size_t len = state_member_encode(m, buf, sizeof(buf));
    assert_true(len > 0);
    return state_load_member(ctx, buf, len);
}

static int copy_card(void *ctx, const char *card, const char *member_id)
{
    return state_load_card(ctx, card, member_id);
}

/* A state rebuilt from its member records and card links (a checkpoint) hashes the same. */
static void test_state_R30_records_round_trip(void **st)
{
    (void)st;
    int order[] = {3, 1, 4, 0, 2};
    state *a, *b;
    assert_int_equal(state_new(&a), 0);
    assert_int_equal(state_new(&b), 0);
    build(a, order, 5);
    lt_posting *p = posting(T0 + 7, "M2");
    p->debit = 5;
    p->credit = 7;
    p->credit_expires_at = 0;
    strcpy(p->tier_after, "gold");
    p->lifetime_delta_fen = -300;
    p->count_sale = true;
    p->balance_after = 32;
    assert_int_equal(apply(a), 0);
    load_with_debt(a, "D1", 12);

    assert_int_equal(state_foreach(a, copy_member, b), 0);
    assert_int_equal(state_foreach_card(a, copy_card, b), 0);
    assert_int_equal(state_members(b), 6);
    assert_true(state_hash(a) == state_hash(b));
    const lt_member *m = state_member(b, "M2");
    assert_string_equal(m->tier, "gold");
    assert_int_equal(m->lots_n, 2);
    assert_int_equal(m->sales, 1);
    assert_int_equal(m->lifetime_fen, -300);
    assert_int_equal(state_balance(m), 32);
    assert_string_equal(state_card_owner(b, "C2"), "M2");

    /* Loading a record again replaces the member. */
    uint8_t buf[512];
    size_t len = state_member_encode(state_member(a, "M1"), buf, sizeof(buf));
    assert_int_equal(state_member_encode(state_member(a, "M1"), buf, len - 1), 0);
    assert_int_equal(state_load_member(b, buf, len), 0);
    assert_int_equal(state_members(b), 6);

    /* Malformed records are refused. */
    assert_int_equal(state_load_member(b, buf, len - 1), -1);
    uint8_t bad[512];
    memcpy(bad, buf, len);
    bad[0] = 99; /* version */
    assert_int_equal(state_load_member(b, bad, len), -1);
    memcpy(bad, buf, len);
    bad[1] = LT_ID_MAX; /* id length without room for the NUL */
    assert_int_equal(state_load_member(b, bad, len), -1);
    assert_int_equal(state_load_member(b, buf, 0), -1);
    assert_int_equal(state_load_card(b, "CX", "nobody"), -1);
    state_destroy(&a);
    state_destroy(&b);
}

typedef struct {
    int members, cards, unlinked;
    char last_member[LT_ID_MAX];
} dirty_seen;

static int seen_member(void *ctx, const lt_member *m)
{
    dirty_seen *d = ctx;
    d->members++;
    strcpy(d->last_member, m->id);
    return 0;
}

static int seen_card(void *ctx, const char *card, const char *member_id)
{
    dirty_seen *d = ctx;
    (void)card;
    d->cards++;
    d->unlinked += member_id == NULL;
    return 0;
}

static void test_state_dirty_tracking(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "M1", "C1");
    enrol(s, "M2", NULL);
    credit(s, "M1", T0, 10, 0, 10);
    dirty_seen d = {0};
    assert_int_equal(state_foreach_dirty(s, seen_member, seen_card, &d), 0);
    assert_int_equal(d.members, 2); /* M1 once, though changed twice */
    assert_int_equal(d.cards, 1);
    state_clear_dirty(s);
    memset(&d, 0, sizeof(d));
    assert_int_equal(state_foreach_dirty(s, seen_member, seen_card, &d), 0);
    assert_int_equal(d.members + d.cards, 0);

    lt_posting *p = posting(T0, "M1");
    strcpy(p->unlink_card, "C1");
    p->balance_after = 10;
    assert_int_equal(apply(s), 0);
    assert_int_equal(state_foreach_dirty(s, seen_member, seen_card, &d), 0);
    assert_int_equal(d.members, 1);
    assert_string_equal(d.last_member, "M1");
    assert_int_equal(d.cards, 1);
    assert_int_equal(d.unlinked, 1); /* deletion: member_id NULL */
    state_clear_dirty(s);

    /* Loaded records are not dirty. */
    load_with_debt(s, "M3", 1);
    assert_int_equal(state_load_card(s, "C3", "M3"), 0);
    memset(&d, 0, sizeof(d));
    assert_int_equal(state_foreach_dirty(s, seen_member, seen_card, &d), 0);
    assert_int_equal(d.members + d.cards, 0);
    state_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_create_and_attributes),
        cmocka_unit_test(test_state_R17_debit_fifo_by_expiry),
        cmocka_unit_test(test_state_R18_credit_pays_debt_first),
        cmocka_unit_test(test_state_balance_after_mismatch_leaves_member),
        cmocka_unit_test(test_state_cards_link_unlink),
        cmocka_unit_test(test_state_many_members_and_cards),
        cmocka_unit_test(test_state_R30_hash_order_independent),
        cmocka_unit_test(test_state_R30_records_round_trip),
        cmocka_unit_test(test_state_dirty_tracking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
