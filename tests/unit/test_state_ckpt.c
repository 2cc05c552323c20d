/* test_state_ckpt.c: copy-on-write checkpoints (state_ckpt_begin): the members changed before
 * the start are handed over and, when an event changes one before it is encoded, captured as it
 * was at the start; changes after the start are the next checkpoint's; merges (R7) capture both
 * members. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "state.h"
#include "test_state_fixture.h"

#define T0 1767225600 /* 2026-01-01 */

static lt_posting *posting(const char *member)
{
    return st_posting(LT_ENTRY_NONE, T0, member);
}

static void apply(state *s)
{
    if (st_apply(s) != 0)
        fail_msg("state_apply: %s", g_err);
}

static void enrol(state *s, const char *member)
{
    posting(member)->create = true;
    apply(s);
}

static void credit(state *s, const char *member, int64_t points, int64_t balance_after)
{
    lt_posting *p = posting(member);
    p->credit = points;
    p->balance_after = balance_after;
    apply(s);
}

typedef struct {
    char id[8][LT_ID_MAX];
    int64_t balance[8];
    int n;
    uint32_t rec[8]; /* returns records captured */
    uint64_t seq[8];
    int64_t qty0[8]; /* their first line's quantity */
    int rn;
} captured;

static void capture(void *ctx, uint32_t number, const lt_member *m)
{
    (void)number;
    captured *c = ctx;
    assert_true(c->n < 8);
    strcpy(c->id[c->n], m->id);
    c->balance[c->n++] = state_balance(m);
}

static void capture_returns(void *ctx, uint32_t rec, uint64_t sale_seq, const int64_t *qty,
                            uint32_t n)
{
    captured *c = ctx;
    assert_true(c->rn < 8);
    assert_true(n > 0);
    c->rec[c->rn] = rec;
    c->seq[c->rn] = sale_seq;
    c->qty0[c->rn++] = qty[0];
}

/* state_ckpt_begin() with the captures into c; the members' list into *list, *n. */
static state_ckpt_list begin(state *s, captured *c, const uint32_t **list, uint32_t *n)
{
    static state_ck_capture cap; /* kept by the state until the next begin */
    cap = (state_ck_capture){capture, capture_returns, c};
    state_ckpt_list l;
    assert_int_equal(state_ckpt_begin(s, &cap, &l), 0);
    *list = l.members;
    *n = l.members_n;
    return l;
}

/* A new state with members A, B and C enrolled (numbers 0, 1, 2). */
static state *new_abc(void)
{
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "A");
    enrol(s, "B");
    enrol(s, "C");
    return s;
}

static int count_dirty(void *ctx, const lt_member *m)
{
    (void)m;
    ++*(int *)ctx;
    return 0;
}

static uint32_t number_of(const state *s, const uint32_t *list, uint32_t n, const char *id)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(state_ckpt_member_id(s, list[i]), id) == 0)
            return list[i];
    fail_msg("%s is not in the checkpoint", id);
    return 0;
}

static void changes_before_encoding_are_captured_as_at_the_start(void **st)
{
    (void)st;
    state *s = new_abc();
    credit(s, "A", 10, 10);
    credit(s, "B", 20, 20);
    state_clear_dirty(s); /* a checkpoint happened: C, A, B clean */
    credit(s, "A", 5, 15);
    credit(s, "B", 5, 25);

    captured cap = {0};
    const uint32_t *list;
    uint32_t n;
    begin(s, &cap, &list, &n);
    assert_int_equal(n, 2); /* A and B changed since the last checkpoint; C did not */
    uint32_t a = number_of(s, list, n, "A"), b = number_of(s, list, n, "B");
    int dirty = 0;
    state_foreach_dirty(s, count_dirty, NULL, &dirty);
    assert_int_equal(dirty, 0); /* the dirty list starts empty */

    /* B changes before it was encoded: captured as it was (25), once */
    credit(s, "B", 100, 125);
    credit(s, "B", 1, 126);
    assert_int_equal(cap.n, 1);
    assert_string_equal(cap.id[0], "B");
    assert_int_equal(cap.balance[0], 25);
    assert_null(state_ckpt_take(s, b)); /* already captured */
    /* A unchanged: taken as it is, once; a change after that is not captured */
    const lt_member *ma = state_ckpt_take(s, a);
    assert_non_null(ma);
    assert_int_equal(state_balance(ma), 15);
    assert_null(state_ckpt_take(s, a));
    credit(s, "A", 1, 16);
    assert_int_equal(cap.n, 1);
    /* C, never in the checkpoint, is not captured when it changes */
    credit(s, "C", 7, 7);
    assert_int_equal(cap.n, 1);
    /* what changed after the start is the next checkpoint's */
    dirty = 0;
    state_foreach_dirty(s, count_dirty, NULL, &dirty);
    assert_int_equal(dirty, 3); /* A, B, C */
    state_destroy(&s);
}

static void merge_captures_both_members_and_next_begin_ends_the_last(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "T");
    enrol(s, "F");
    credit(s, "T", 10, 10);
    credit(s, "F", 30, 30);
    captured cap = {0};
    const uint32_t *list;
    uint32_t n;
    begin(s, &cap, &list, &n);
    assert_int_equal(n, 2);
    lt_posting *p = posting("T"); /* R7: F folded into T */
    g_entry.kind = LT_ENTRY_MERGE;
    strcpy(p->merge_from, "F");
    p->balance_after = 40;
    apply(s);
    assert_int_equal(cap.n, 2);
    int64_t t_bal = strcmp(cap.id[0], "T") == 0 ? cap.balance[0] : cap.balance[1];
    int64_t f_bal = strcmp(cap.id[0], "F") == 0 ? cap.balance[0] : cap.balance[1];
    assert_int_equal(t_bal, 10);
    assert_int_equal(f_bal, 30);
    /* a new checkpoint while nothing of the first is left: T and F changed since its start */
    captured cap2 = {0};
    begin(s, &cap2, &list, &n);
    assert_int_equal(n, 2);
    /* begun again without taking them: the first of those is over, nothing captured twice */
    captured cap3 = {0};
    credit(s, "T", 1, 41);
    assert_int_equal(cap2.n, 1); /* T captured for the second checkpoint */
    begin(s, &cap3, &list, &n);
    assert_int_equal(n, 1); /* only T changed since */
    state_destroy(&s);
}

static int count_card(void *ctx, const char *card, const char *member_id)
{
    assert_string_equal(card, "CARD1");
    assert_string_equal(member_id, "B");
    ++*(int *)ctx;
    return 0;
}

static int count_returns(void *ctx, uint64_t sale_seq, const int64_t *qty, uint32_t n)
{
    assert_int_equal(sale_seq, 7);
    assert_int_equal(n, 2);
    assert_int_equal(qty[1], 3);
    ++*(int *)ctx;
    return 0;
}

/* After a checkpoint failed to write, the next one must hold everything (R30): every member,
 * active card link and returned-quantity record is marked changed, each once. */
static void mark_all_dirty_lists_every_record_once(void **st)
{
    (void)st;
    state *s = new_abc();
    assert_int_equal(state_load_card(s, "CARD1", "B"), 0);
    int64_t qty[2] = {0, 3};
    uint8_t rec[STATE_RETURNS_BYTES_MAX];
    size_t len = state_returns_encode(qty, 2, rec, sizeof rec);
    assert_true(len > 0);
    assert_int_equal(state_load_returns(s, 7, rec, len), 0);
    state_clear_dirty(s);
    assert_int_equal(state_dirty_members(s), 0);
    credit(s, "A", 5, 5); /* A is already on the list: not twice */
    for (int round = 0; round < 2; round++) {
        assert_int_equal(state_mark_all_dirty(s), 0);
        assert_int_equal(state_dirty_members(s), 3);
        int members = 0, cards = 0, returns = 0;
        assert_int_equal(state_foreach_dirty(s, count_dirty, count_card, &members), 0);
        assert_int_equal(members, 3 + 1); /* count_card counts into the same int */
        assert_int_equal(state_foreach_dirty(s, NULL, count_card, &cards), 0);
        assert_int_equal(cards, 1);
        assert_int_equal(state_foreach_dirty_returns(s, count_returns, &returns), 0);
        assert_int_equal(returns, 1);
    }
    /* the list is written without marking the records: a change to a listed member keeps it
     * listed once, a member enrolled after it is added, and after the list is cleared a change
     * lists a member again */
    credit(s, "B", 5, 5);
    assert_int_equal(state_dirty_members(s), 3);
    enrol(s, "D");
    assert_int_equal(state_dirty_members(s), 4);
    credit(s, "D", 5, 5);
    assert_int_equal(state_dirty_members(s), 4);
    state_clear_dirty(s);
    assert_int_equal(state_dirty_members(s), 0);
    credit(s, "C", 5, 5);
    assert_int_equal(state_dirty_members(s), 1);
    /* the same through a checkpoint's start, which hands the list over */
    assert_int_equal(state_mark_all_dirty(s), 0);
    assert_int_equal(state_dirty_members(s), 4);
    captured c = {0};
    const uint32_t *list;
    uint32_t n;
    begin(s, &c, &list, &n);
    assert_int_equal(n, 4);
    int listed[4] = {0};
    for (uint32_t i = 0; i < n; i++) {
        assert_true(list[i] < 4);
        listed[list[i]]++;
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(listed[i], 1);
    assert_int_equal(state_dirty_members(s), 0);
    credit(s, "A", 5, 10); /* captured as at the start, and the next checkpoint's */
    assert_int_equal(c.n, 1);
    assert_string_equal(c.id[0], "A");
    assert_int_equal(state_dirty_members(s), 1);
    state_destroy(&s);
}

typedef struct {
    int seen[200];
    char owner[200][LT_ID_MAX];
    int returns_seen[150];
    int64_t qty_sum;
} handed;

static int hand_card(void *ctx, const char *card, const char *member_id)
{
    handed *h = ctx;
    int i = atoi(card + 4);
    assert_in_range(i, 0, 199);
    h->seen[i]++;
    strcpy(h->owner[i], member_id != NULL ? member_id : "-");
    return 0;
}

static int hand_returns(void *ctx, uint64_t sale_seq, const int64_t *qty, uint32_t n)
{
    handed *h = ctx;
    assert_in_range(sale_seq, 1000, 1149);
    assert_int_equal(n, 2);
    h->returns_seen[sale_seq - 1000]++;
    assert_int_equal(qty[1], (int64_t)sale_seq);
    h->qty_sum += qty[1];
    return 0;
}

/* The passes over dirty cards and returns records ask for records ahead of the one handed over
 * (a lookahead of 24): with more of them than that, each is still handed over, once (an
 * unlinked card at most twice), with its owner as of now (an unlinked card: nobody), and
 * state_clear_dirty() cleans them all at once. */
static void many_dirty_cards_and_returns_are_each_handed_over_once(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    char id[LT_ID_MAX], card[LT_ID_MAX];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "M%d", i);
        snprintf(card, sizeof card, "CARD%d", i);
        enrol(s, id);
        assert_int_equal(state_load_card(s, card, id), 0);
    }
    uint8_t rec[STATE_RETURNS_BYTES_MAX];
    for (int i = 0; i < 150; i++) {
        int64_t qty[2] = {0, 1000 + i};
        size_t len = state_returns_encode(qty, 2, rec, sizeof rec);
        assert_true(len > 0);
        assert_int_equal(state_load_returns(s, (uint64_t)(1000 + i), rec, len), 0);
    }
    state_clear_dirty(s);
    handed h = {0};
    assert_int_equal(state_foreach_dirty(s, NULL, hand_card, &h), 0);
    assert_int_equal(state_foreach_dirty_returns(s, hand_returns, &h), 0);
    for (int i = 0; i < 200; i++)
        assert_int_equal(h.seen[i], 0);
    /* every card and returns record dirty; every seventh card then unlinked by an event */
    assert_int_equal(state_mark_all_dirty(s), 0);
    for (int i = 0; i < 200; i += 7) {
        snprintf(id, sizeof id, "M%d", i);
        lt_posting *p = posting(id);
        snprintf(p->unlink_card, sizeof p->unlink_card, "CARD%d", i);
        apply(s);
    }
    memset(&h, 0, sizeof h);
    assert_int_equal(state_foreach_dirty(s, NULL, hand_card, &h), 0);
    assert_int_equal(state_foreach_dirty_returns(s, hand_returns, &h), 0);
    for (int i = 0; i < 200; i++) {
        /* an unlinked card may be on the list twice (mark_card()): the same write again */
        if (i % 7 == 0)
            assert_in_range(h.seen[i], 1, 2);
        else
            assert_int_equal(h.seen[i], 1);
        snprintf(id, sizeof id, "M%d", i);
        assert_string_equal(h.owner[i], i % 7 == 0 ? "-" : id);
    }
    for (int i = 0; i < 150; i++)
        assert_int_equal(h.returns_seen[i], 1);
    assert_int_equal(h.qty_sum, 150 * 1000 + 149 * 150 / 2);
    state_clear_dirty(s);
    memset(&h, 0, sizeof h);
    assert_int_equal(state_foreach_dirty(s, NULL, hand_card, &h), 0);
    assert_int_equal(state_foreach_dirty_returns(s, hand_returns, &h), 0);
    for (int i = 0; i < 200; i++)
        assert_int_equal(h.seen[i], 0);
    for (int i = 0; i < 150; i++)
        assert_int_equal(h.returns_seen[i], 0);
    /* cleaned: a card unlinked now goes on the list again, once */
    lt_posting *p = posting("M1");
    strcpy(p->unlink_card, "CARD1");
    apply(s);
    assert_int_equal(state_foreach_dirty(s, NULL, hand_card, &h), 0);
    assert_int_equal(h.seen[1], 1);
    assert_string_equal(h.owner[1], "-");
    assert_int_equal(h.seen[2], 0);
    state_destroy(&s);
}

/* state_ids_take() copies where the member records are: another thread (the checkpoint's sort)
 * finds the ids of the members that existed at the copy while the state grows (its chunk
 * array reallocated), and a second take reuses the buffer. */
static void member_ids_are_found_through_a_copy_while_the_state_grows(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    char id[LT_ID_MAX];
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof id, "M%d", i);
        enrol(s, id);
    }
    state_ids v = {0};
    assert_int_equal(state_ids_take(s, &v), 0);
    const char *before[3000];
    for (uint32_t i = 0; i < 3000; i++)
        before[i] = state_ckpt_member_id(s, i);
    for (int i = 3000; i < 40000; i++) {
        snprintf(id, sizeof id, "M%d", i);
        enrol(s, id);
    }
    for (uint32_t i = 0; i < 3000; i++) {
        snprintf(id, sizeof id, "M%u", i);
        assert_ptr_equal(state_ids_member_id(&v, i), before[i]);
        assert_ptr_equal(state_ids_member_id(&v, i), state_ckpt_member_id(s, i));
        assert_string_equal(state_ids_member_id(&v, i), id);
    }
    assert_int_equal(state_ids_take(s, &v), 0);
    assert_string_equal(state_ids_member_id(&v, 39999), "M39999");
    state_ids_free(&v);
    assert_null(v.chunks);
    state_destroy(&s);
}

/* A checkpoint log (ckstore.h) records an unlinked card as a link to nobody: loading it unlinks
 * the card loaded before; an unknown card is no error. */
static void loading_a_card_without_member_unlinks_it(void **st)
{
    (void)st;
    state *s;
    const char *cards[2];
    assert_int_equal(state_new(&s), 0);
    enrol(s, "B");
    assert_int_equal(state_load_card(s, "CARD1", "B"), 0);
    assert_int_equal(state_member_cards(s, "B", cards, 2), 1);
    assert_int_equal(state_load_card(s, "CARD1", NULL), 0);
    assert_int_equal(state_member_cards(s, "B", cards, 2), 0);
    assert_int_equal(state_load_card(s, "NEVER", NULL), 0);
    assert_int_equal(state_load_card(s, "CARD1", "B"), 0); /* linked again later in the log */
    assert_int_equal(state_member_cards(s, "B", cards, 2), 1);
    state_destroy(&s);
}

static void link_card(state *s, const char *member, const char *card)
{
    strcpy(posting(member)->card, card);
    apply(s);
}

static void unlink_card(state *s, const char *member, const char *card)
{
    strcpy(posting(member)->unlink_card, card);
    apply(s);
}

/* R7: member `from` folded into `into`, whose balance is then balance_after. */
static void merge(state *s, const char *into, const char *from, int64_t balance_after)
{
    lt_posting *p = posting(into);
    g_entry.kind = LT_ENTRY_MERGE;
    strcpy(p->merge_from, from);
    p->balance_after = balance_after;
    apply(s);
}

/* The owner's id of the last entry for card in l (NULL: unlinked); fails if it is not listed.
 * *times is how often it is listed. */
static const char *listed_owner(const state *s, const state_ckpt_list *l, const char *card,
                                int *times)
{
    const state_card_change *last = NULL;
    *times = 0;
    for (uint32_t i = 0; i < l->cards_n; i++) {
        if (strcmp(l->cards[i].card, card) == 0) {
            last = &l->cards[i];
            ++*times;
        }
    }
    if (last == NULL)
        fail_msg("card %s is not in the checkpoint", card);
    return last->owner == STATE_NO_MEMBER ? NULL : state_ckpt_member_id(s, last->owner);
}

typedef struct {
    char card[8][LT_ID_MAX];
    char owner[8][LT_ID_MAX];
    int n;
} card_seen;

static int see_card(void *ctx, const char *card, const char *member_id)
{
    card_seen *c = ctx;
    assert_true(c->n < 8);
    strcpy(c->card[c->n], card);
    strcpy(c->owner[c->n++], member_id ? member_id : "-");
    return 0;
}

/* A checkpoint's start takes the changed cards without looking them up: each is listed with
 * its link as of its last change (so as of the start), once per record; a card unlinked and
 * linked again is listed twice, the later entry its link. Changes after the start (an unlink,
 * a merge moving a card, R7) are the next checkpoint's and leave the list handed over as it
 * was. */
static void cards_are_handed_over_with_their_link_as_of_the_start(void **st)
{
    (void)st;
    state *s = new_abc();
    link_card(s, "A", "K0"); /* linked before the last checkpoint: not listed */
    state_clear_dirty(s);
    link_card(s, "A", "K1");
    link_card(s, "B", "K2");
    link_card(s, "C", "K3");
    unlink_card(s, "C", "K3");
    link_card(s, "A", "K3"); /* a new record: a second entry */
    merge(s, "C", "B", 0);   /* K2 moves to C: its entry updated, not added */
    captured cap = {0};
    const uint32_t *list;
    uint32_t n;
    state_ckpt_list l = begin(s, &cap, &list, &n);
    assert_int_equal(l.cards_n, 4); /* K1, K2, K3 twice */
    int times;
    assert_string_equal(listed_owner(s, &l, "K1", &times), "A");
    assert_int_equal(times, 1);
    assert_string_equal(listed_owner(s, &l, "K2", &times), "C");
    assert_int_equal(times, 1);
    assert_string_equal(listed_owner(s, &l, "K3", &times), "A");
    assert_int_equal(times, 2);
    for (uint32_t i = 0; i < l.cards_n; i++) /* K3's first entry: unlinked, as it was then */
        if (strcmp(l.cards[i].card, "K3") == 0)
            assert_int_equal(l.cards[i].owner, i == l.cards_n - 1 ? 0 : STATE_NO_MEMBER);
    card_seen seen = {0};
    assert_int_equal(state_foreach_dirty(s, NULL, see_card, &seen), 0);
    assert_int_equal(seen.n, 0); /* the dirty list starts empty */

    /* after the start: K1 unlinked, C (with K2) folded into A, K4 linked */
    unlink_card(s, "A", "K1");
    merge(s, "A", "C", 0);
    link_card(s, "B", "K4");
    assert_string_equal(listed_owner(s, &l, "K1", &times), "A");
    assert_string_equal(listed_owner(s, &l, "K2", &times), "C");
    assert_string_equal(listed_owner(s, &l, "K3", &times), "A");
    assert_int_equal(cap.n, 3); /* members A, C (merge) and B: never cards */
    assert_int_equal(state_foreach_dirty(s, NULL, see_card, &seen), 0);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.card[0], "K1");
    assert_string_equal(seen.owner[0], "-");
    assert_string_equal(seen.card[1], "K2");
    assert_string_equal(seen.owner[1], "A");
    assert_string_equal(seen.card[2], "K4");
    assert_string_equal(seen.owner[2], "B");
    /* the next start hands those over, and the list before is done with */
    l = begin(s, &cap, &list, &n);
    assert_int_equal(l.cards_n, 3);
    assert_null(listed_owner(s, &l, "K1", &times));
    assert_string_equal(listed_owner(s, &l, "K2", &times), "A");
    state_destroy(&s);
}

/* R18 with a return of `qty` units of line 0 of sale sale_seq (2 lines) by member. */
static void return_units(state *s, const char *member, uint64_t sale_seq, int64_t qty)
{
    lt_posting *p = posting(member);
    g_entry.kind = LT_ENTRY_RETURN;
    g_entry.original_seq = sale_seq;
    g_entry.lines_n = 2;
    g_entry.lines[0].quantity = qty;
    strcpy(p->reason, "return");
    apply(s);
}

/* Returned quantities (R18) are taken copy-on-write like members: a record the checkpoint lists
 * is captured as of the start when a return changes it first, and taken as it is otherwise;
 * each once. A record made after the start is the next checkpoint's only. */
static void returns_records_are_captured_as_at_the_start(void **st)
{
    (void)st;
    state *s;
    assert_int_equal(state_new(&s), 0);
    enrol(s, "A");
    return_units(s, "A", 100, 1);
    state_clear_dirty(s);
    return_units(s, "A", 101, 2);
    return_units(s, "A", 102, 3);
    return_units(s, "A", 101, 1); /* listed once */
    captured cap = {0};
    const uint32_t *list;
    uint32_t n;
    state_ckpt_list l = begin(s, &cap, &list, &n);
    assert_int_equal(l.returns_n, 2);
    uint32_t r101 = l.returns[0].seq == 101 ? l.returns[0].rec : l.returns[1].rec;
    uint32_t r102 = l.returns[0].seq == 102 ? l.returns[0].rec : l.returns[1].rec;
    assert_int_not_equal(r101, r102);
    /* 101 changes before it is taken: captured as it was (3 units), once */
    return_units(s, "A", 101, 5);
    return_units(s, "A", 101, 1);
    assert_int_equal(cap.rn, 1);
    assert_int_equal(cap.rec[0], r101);
    assert_int_equal(cap.seq[0], 101);
    assert_int_equal(cap.qty0[0], 3);
    const int64_t *qty;
    uint32_t qn;
    assert_false(state_ckpt_take_returns(s, r101, &qty, &qn)); /* captured */
    /* 102 unchanged: taken as it is, once; a change after that is not captured */
    assert_true(state_ckpt_take_returns(s, r102, &qty, &qn));
    assert_int_equal(qn, 2);
    assert_int_equal(qty[0], 3);
    assert_false(state_ckpt_take_returns(s, r102, &qty, &qn));
    return_units(s, "A", 102, 1);
    /* 100 (not listed) and 103 (new) are not captured */
    return_units(s, "A", 100, 1);
    return_units(s, "A", 103, 1);
    assert_int_equal(cap.rn, 1);
    /* all four changed since the start: the next checkpoint's; a begin ends this one, so its
     * records are not captured for it any more */
    captured cap2 = {0};
    l = begin(s, &cap2, &list, &n);
    assert_int_equal(l.returns_n, 4);
    state_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(changes_before_encoding_are_captured_as_at_the_start),
        cmocka_unit_test(merge_captures_both_members_and_next_begin_ends_the_last),
        cmocka_unit_test(mark_all_dirty_lists_every_record_once),
        cmocka_unit_test(loading_a_card_without_member_unlinks_it),
        cmocka_unit_test(many_dirty_cards_and_returns_are_each_handed_over_once),
        cmocka_unit_test(member_ids_are_found_through_a_copy_while_the_state_grows),
        cmocka_unit_test(cards_are_handed_over_with_their_link_as_of_the_start),
        cmocka_unit_test(returns_records_are_captured_as_at_the_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
