/* test_state_merge.c: state_apply() of account merges (R7): the source's lots move into the
 * target in spend order (R17), debt, spend totals and sales follow, every card relinks, the
 * source is closed with nothing left, the hash and the checkpoint records see all of it (R30),
 * and an inconsistent merge posting changes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "entry.h"
#include "state.h"
#include "test_state_fixture.h"

#define T0 1767225600 /* 2026-01-01 UTC */
#define DAY 86400

static void enrol(state *s, const char *member, const char *card)
{
    lt_posting *p = st_posting(LT_ENTRY_ENROL, T0, member);
    p->create = true;
    if (card)
        strcpy(p->card, card);
    assert_int_equal(st_apply(s), 0);
}

static void link(state *s, const char *member, const char *card, int64_t balance)
{
    lt_posting *p = st_posting(LT_ENTRY_CARD_LINK, T0, member);
    strcpy(p->card, card);
    p->balance_after = balance;
    assert_int_equal(st_apply(s), 0);
}

/* A sale-like credit: a lot earned at `at`, spend totals, one sale. */
static void earn(state *s, const char *member, int64_t at, int64_t points, int64_t expires_at,
                 int64_t fen, int64_t balance_after)
{
    lt_posting *p = st_posting(LT_ENTRY_SALE, at, member);
    p->credit = points;
    p->credit_expires_at = expires_at;
    p->lifetime_delta_fen = fen;
    p->qualifying_delta = fen;
    p->count_sale = true;
    p->balance_after = balance_after;
    assert_int_equal(st_apply(s), 0);
}

/* The merge entry rating writes (rules_rate.c): [0] target with merge_from, [1] the source. */
static void merge_entry(const char *target, const char *source, int64_t target_after,
                        const char *tier_after)
{
    lt_posting *p = st_posting(LT_ENTRY_MERGE, T0 + 100 * DAY, target);
    strcpy(p->merge_from, source);
    strcpy(p->reason, "merge");
    strcpy(p->tier_after, tier_after);
    p->balance_after = target_after;
    lt_posting *q = &g_entry.postings[g_entry.postings_n++];
    strcpy(q->member_id, source);
    strcpy(q->reason, "merged");
    strcpy(g_entry.member_id, target);
}

/* Loads a member record with the given debt (R18: a negative balance outside the lots). */
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

/* Target T: lots (D+10, earned T0+1) 10 and (never) 5; source S: (D+5) 7, (D+10, T0+1) 3 (the
 * same key as T's first lot), (D+10, T0+2) 4, (never, later) 2. */
static void build_pair(state *s)
{
    const int64_t d5 = T0 + 5 * DAY, d10 = T0 + 10 * DAY;
    enrol(s, "T", "CT");
    enrol(s, "S", "CS1");
    link(s, "S", "CS2", 0);
    earn(s, "T", T0 + 1, 10, d10, 1000, 10);
    earn(s, "T", T0 + 3, 5, 0, 500, 15);
    earn(s, "S", T0 + 1, 3, d10, 300, 3);
    earn(s, "S", T0 + 2, 4, d10, 400, 7);
    earn(s, "S", T0 + 4, 7, d5, 700, 14);
    earn(s, "S", T0 + 9, 2, 0, 200, 16);
}

static void test_state_R7_merge_moves_lots_in_fifo_order(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    build_pair(s);
    merge_entry("T", "S", 31, "gold");
    assert_int_equal(st_apply(s), 0);

    const lt_member *t = state_member(s, "T"), *f = state_member(s, "S");
    assert_int_equal(t->lots_n, 5); /* equal keys (D+10, T0+1) fold into one: 10 + 3 */
    assert_int_equal(t->lots[0].points, 7);
    assert_int_equal(t->lots[0].expires_at, T0 + 5 * DAY);
    assert_int_equal(t->lots[1].points, 13);
    assert_int_equal(t->lots[1].earned_at, T0 + 1);
    assert_int_equal(t->lots[2].points, 4);
    assert_int_equal(t->lots[2].earned_at, T0 + 2);
    assert_int_equal(t->lots[3].points, 5); /* never expiring, earned first */
    assert_int_equal(t->lots[3].expires_at, 0);
    assert_int_equal(t->lots[4].points, 2); /* the source's later "never" lot comes last */
    assert_int_equal(t->lots[4].earned_at, T0 + 9);
    assert_int_equal(state_balance(t), 31);
    assert_string_equal(t->tier, "gold");
    assert_int_equal(t->lifetime_fen, 3100);
    assert_int_equal(t->qualifying, 3100);
    assert_int_equal(t->sales, 6);
    assert_int_equal(t->last_purchase_at, T0 + 9);

    assert_int_equal(f->status, LT_MEMBER_CLOSED);
    assert_int_equal(f->lots_n, 0);
    assert_null(f->lots);
    assert_int_equal(state_balance(f), 0);
    assert_int_equal(f->lifetime_fen + f->qualifying + f->sales + f->debt, 0);

    /* R17: spending now takes the lot that expires first, wherever it came from */
    lt_posting *p = st_posting(LT_ENTRY_GIFT, T0 + 101 * DAY, "T");
    p->debit = 9;
    p->balance_after = 22;
    assert_int_equal(st_apply(s), 0);
    assert_int_equal(t->lots[0].points, 11);
    assert_int_equal(t->lots[0].earned_at, T0 + 1);
    state_destroy(&s);
}

static void test_state_R7_merge_keeps_distinct_never_lots(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "T", NULL);
    enrol(s, "S", NULL);
    earn(s, "T", T0 + 5, 5, 0, 0, 5);
    earn(s, "S", T0 + 1, 2, 0, 0, 2); /* earned before T's: goes first */
    earn(s, "S", T0 + 9, 3, 0, 0, 5);
    merge_entry("T", "S", 10, "");
    assert_int_equal(st_apply(s), 0);
    const lt_member *t = state_member(s, "T");
    assert_int_equal(t->lots_n, 3);
    assert_int_equal(t->lots[0].points, 2);
    assert_int_equal(t->lots[1].points, 5);
    assert_int_equal(t->lots[2].points, 3);
    assert_string_equal(t->tier, ""); /* tier_after "" leaves it */
    state_destroy(&s);
}

static void test_state_R7_merge_moves_debt(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "T", NULL);
    earn(s, "T", T0, 100, 0, 0, 100);
    load_with_debt(s, "S", 40);
    merge_entry("T", "S", 60, "");
    assert_int_equal(st_apply(s), 0);
    const lt_member *t = state_member(s, "T");
    assert_int_equal(t->debt, 40);
    assert_int_equal(state_balance(t), 60);
    assert_int_equal(state_member(s, "S")->debt, 0);
    /* R18: the next credit pays the debt first */
    earn(s, "T", T0 + 200 * DAY, 10, 0, 0, 70);
    assert_int_equal(t->debt, 30);
    assert_int_equal(t->lots_n, 1);
    state_destroy(&s);
}

typedef struct {
    int members, cards, cards_to_t;
} dirty_seen;

static int seen_member(void *ctx, const lt_member *m)
{
    (void)m;
    ((dirty_seen *)ctx)->members++;
    return 0;
}

static int seen_card(void *ctx, const char *card, const char *member_id)
{
    dirty_seen *d = ctx;
    (void)card;
    d->cards++;
    d->cards_to_t += member_id != NULL && strcmp(member_id, "T") == 0;
    return 0;
}

static void test_state_R7_merge_relinks_cards_and_marks_dirty(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    build_pair(s);
    state_clear_dirty(s);
    merge_entry("T", "S", 31, "");
    assert_int_equal(st_apply(s), 0);

    assert_string_equal(state_card_owner(s, "CS1"), "T");
    assert_string_equal(state_card_owner(s, "CS2"), "T");
    assert_string_equal(state_card_owner(s, "CT"), "T");
    const char *cards[4];
    assert_int_equal(state_member_cards(s, "T", cards, 4), 3);
    assert_int_equal(state_member_cards(s, "S", cards, 4), 0);

    dirty_seen d = {0};
    assert_int_equal(state_foreach_dirty(s, seen_member, seen_card, &d), 0);
    assert_int_equal(d.members, 2);
    assert_int_equal(d.cards, 2);
    assert_int_equal(d.cards_to_t, 2);

    /* the relinked cards can be unlinked from their new owner */
    lt_posting *p = st_posting(LT_ENTRY_CARD_LINK, T0 + 101 * DAY, "T");
    strcpy(p->card, "CN");
    strcpy(p->unlink_card, "CS1");
    p->balance_after = 31;
    assert_int_equal(st_apply(s), 0);
    assert_null(state_card_owner(s, "CS1"));
    assert_int_equal(state_member_cards(s, "T", cards, 4), 3);
    state_destroy(&s);
}

static int copy_member(void *ctx, const lt_member *m)
{
    uint8_t buf[1024];
    size_t len = state_member_encode(m, buf, sizeof(buf));
    assert_true(len > 0);
    return state_load_member(ctx, buf, len);
}

static int copy_card(void *ctx, const char *card, const char *member_id)
{
    return state_load_card(ctx, card, member_id);
}

static void test_state_R30_merge_hash_replay_and_records(void **st)
{
    (void)st;
    state *a, *b, *c;
    assert_int_equal(state_new(&a), 0);
    assert_int_equal(state_new(&b), 0);
    assert_int_equal(state_new(&c), 0);
    build_pair(a);
    build_pair(b);
    assert_true(state_hash(a) == state_hash(b));
    uint64_t before = state_hash(a);
    merge_entry("T", "S", 31, "gold");
    lt_entry merge = g_entry;
    assert_int_equal(st_apply(a), 0);
    assert_true(state_hash(a) != before);

    /* replay: the same entry, through the codec, gives the same state */
    static uint8_t buf[ENTRY_BYTES_MAX];
    size_t len = entry_encode(&merge, buf, sizeof(buf));
    assert_true(len > 0);
    static lt_entry decoded;
    assert_int_equal(entry_decode(buf, len, &decoded), 0);
    assert_string_equal(decoded.postings[0].merge_from, "S");
    assert_string_equal(decoded.postings[1].merge_from, "");
    assert_int_equal(state_apply(b, &decoded, g_err, sizeof(g_err)), 0);
    assert_true(state_hash(a) == state_hash(b));

    /* a checkpoint copy (members + cards) of the merged state, closed member included */
    assert_int_equal(state_foreach(a, copy_member, c), 0);
    assert_int_equal(state_foreach_card(a, copy_card, c), 0);
    assert_true(state_hash(a) == state_hash(c));
    const lt_member *f = state_member(c, "S");
    assert_non_null(f);
    assert_int_equal(f->status, LT_MEMBER_CLOSED);
    assert_int_equal(f->lots_n, 0);
    assert_string_equal(state_card_owner(c, "CS2"), "T");

    /* the closed status alone changes the member's record and so the hash */
    uint8_t rec[256];
    size_t rlen = state_member_encode(f, rec, sizeof(rec));
    assert_true(rlen > 0);
    lt_member m = *f;
    m.status = LT_MEMBER_ACTIVE;
    uint8_t rec2[256];
    assert_int_equal(state_member_encode(&m, rec2, sizeof(rec2)), rlen);
    assert_memory_not_equal(rec, rec2, rlen);
    state_destroy(&a);
    state_destroy(&b);
    state_destroy(&c);
}

static void test_state_R7_inconsistent_merges_change_nothing(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    build_pair(s);
    uint64_t h = state_hash(s);

    merge_entry("T", "S", 30, ""); /* wrong balance */
    assert_int_equal(st_apply(s), -1);
    assert_non_null(strstr(g_err, "balance"));
    merge_entry("T", "nobody", 15, "");
    assert_int_equal(st_apply(s), -1);
    merge_entry("T", "T", 15, "");
    assert_int_equal(st_apply(s), -1);
    merge_entry("T", "S", 41, "");
    g_entry.postings[0].credit = 10; /* a merge posting moves, it does not earn */
    assert_int_equal(st_apply(s), -1);
    merge_entry("T", "S", 31, "");
    g_entry.kind = LT_ENTRY_SALE; /* merge_from only in a MERGE entry */
    assert_int_equal(st_apply(s), -1);
    assert_true(state_hash(s) == h);
    assert_int_equal(state_member(s, "S")->status, LT_MEMBER_ACTIVE);
    assert_string_equal(state_card_owner(s, "CS1"), "S");

    merge_entry("T", "S", 31, "");
    assert_int_equal(st_apply(s), 0);
    merge_entry("T", "S", 31, ""); /* the source is closed now */
    assert_int_equal(st_apply(s), -1);
    assert_non_null(strstr(g_err, "closed"));
    enrol(s, "U", NULL);
    merge_entry("S", "U", 0, ""); /* nor can a closed member take one in */
    assert_int_equal(st_apply(s), -1);
    state_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_R7_merge_moves_lots_in_fifo_order),
        cmocka_unit_test(test_state_R7_merge_keeps_distinct_never_lots),
        cmocka_unit_test(test_state_R7_merge_moves_debt),
        cmocka_unit_test(test_state_R7_merge_relinks_cards_and_marks_dirty),
        cmocka_unit_test(test_state_R30_merge_hash_replay_and_records),
        cmocka_unit_test(test_state_R7_inconsistent_merges_change_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
