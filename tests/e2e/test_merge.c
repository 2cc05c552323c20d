/* test_merge.c: account merges (R7) and multi-level referrer points (R26) through the real
 * daemon: balances, the higher tier and every card end up with the target, the closed source
 * answers MEMBER_BLOCKED, and all of it survives a restart with `loyaltyctl verify` passing. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static lt_daemon g_d;
static char g_rules_dir[64];

/* The merge submessage lives in static storage: the harness frees only what it allocated. */
static Loyalty__Merge g_merge;

static int setup(void **state)
{
    (void)state;
    g_rules_dir[0] = '\0';
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    if (g_rules_dir[0]) {
        char path[128];
        snprintf(path, sizeof path, "%s/rules.yaml", g_rules_dir);
        unlink(path);
        rmdir(g_rules_dir);
    }
    return 0;
}

static Loyalty__Event *enrol(uint64_t eid, const char *member, const char *card,
                             const char *referrer)
{
    return h_enrol(1, eid, member, card, referrer, h_now());
}

static Loyalty__Event *merge(uint64_t eid, const char *target, const char *source)
{
    loyalty__merge__init(&g_merge);
    g_merge.source_member = (char *)source;
    Loyalty__Event *e = h_event(1, eid, target, h_now());
    e->body_case = LOYALTY__EVENT__BODY_MERGE;
    e->merge = &g_merge;
    return e;
}

static Loyalty__Event *sale(uint64_t eid, const char *member, int64_t fen)
{
    Loyalty__Event *e = h_sale(1, eid, member, h_now(), 0);
    h_line(e, "A", "groceries", 1, fen, fen, 0);
    return e;
}

/* Sends one event and returns its ack's status (ACCEPTED) or reason (REJECTED); *balance gets
 * the ack's balance when not NULL. */
static int send1(Loyalty__Event *e, int64_t *balance)
{
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    assert_int_equal(r->n_acks, 1);
    int rc = r->acks[0]->status == LOYALTY__STATUS__ACCEPTED ? 0 : (int)r->acks[0]->reason;
    if (rc == 0 && balance)
        *balance = r->acks[0]->balance;
    loyalty__ack_batch__free_unpacked(r, NULL);
    return rc;
}

static bool has_card(const Loyalty__MemberView *m, const char *card)
{
    for (size_t i = 0; i < m->n_cards; i++) {
        if (!strcmp(m->cards[i], card))
            return true;
    }
    return false;
}

/* The member as the daemon shows it; caller frees the reply. */
static Loyalty__QueryReply *show(const char *member)
{
    Loyalty__QueryReply *q = h_member(&g_d, member);
    assert_non_null(q);
    assert_true(q->ok);
    assert_non_null(q->member);
    return q;
}

static void check_merged(void)
{
    Loyalty__QueryReply *q = show("T1");
    const Loyalty__MemberView *t = q->member;
    assert_int_equal(t->balance, 100 + 1500 + 20);
    assert_string_equal(t->tier, "silver"); /* the source's, the higher one */
    assert_int_equal(t->lifetime_spend_fen, 10000 + 150000 + 2000);
    assert_int_equal(t->n_cards, 3);
    assert_true(has_card(t, "CT1") && has_card(t, "CS1") && has_card(t, "CS2"));
    assert_string_equal(t->status, "active");
    loyalty__query_reply__free_unpacked(q, NULL);

    q = show("S1");
    const Loyalty__MemberView *s = q->member;
    assert_string_equal(s->status, "closed");
    assert_int_equal(s->balance, 0);
    assert_int_equal(s->n_lots, 0);
    assert_int_equal(s->n_cards, 0);
    assert_int_equal(s->lifetime_spend_fen, 0);
    loyalty__query_reply__free_unpacked(q, NULL);
}

static void test_R7_merge_through_the_daemon(void **state)
{
    (void)state;
    int64_t bal = 0;
    h_start(&g_d, NULL);
    assert_int_equal(send1(enrol(1, "T1", "CT1", NULL), NULL), 0);
    assert_int_equal(send1(enrol(2, "S1", "CS1", NULL), NULL), 0);
    assert_int_equal(send1(h_card_link(1, 3, "S1", "CS2", NULL, h_now()), NULL), 0);
    assert_int_equal(send1(sale(4, "T1", 10000), &bal), 0); /* 100 points, basic */
    assert_int_equal(bal, 100);
    assert_int_equal(send1(sale(5, "S1", 150000), &bal), 0); /* 1500 points, silver (R23) */
    assert_int_equal(bal, 1500);

    assert_int_equal(send1(merge(6, "T1", "S1"), &bal), 0);
    assert_int_equal(bal, 1600); /* the ack's balance is the target's */
    assert_int_equal(send1(merge(7, "T1", "nobody"), NULL), LOYALTY__REASON__UNKNOWN_MEMBER);

    /* the source is closed: anything naming it is refused; its cards now earn for T1 */
    assert_int_equal(send1(sale(8, "S1", 1000), NULL), LOYALTY__REASON__MEMBER_BLOCKED);
    assert_int_equal(send1(merge(9, "T1", "S1"), NULL), LOYALTY__REASON__MEMBER_BLOCKED);
    assert_int_equal(send1(merge(10, "S1", "T1"), NULL), LOYALTY__REASON__MEMBER_BLOCKED);
    Loyalty__Event *e = h_sale(1, 11, "", h_now(), 0);
    e->member_id = NULL;
    e->card = "CS2";
    h_line(e, "A", "groceries", 1, 2000, 2000, 0);
    assert_int_equal(send1(e, &bal), 0);
    assert_int_equal(bal, 1620);
    check_merged();

    /* a checkpointed or replayed restart rebuilds the same state (R30) */
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    h_restart(&g_d);
    check_merged();
    assert_int_equal(send1(sale(12, "S1", 1000), NULL), LOYALTY__REASON__MEMBER_BLOCKED);
    h_verify(&g_d, "at the end");
}

static void test_R26_referrer_levels_through_the_daemon(void **state)
{
    (void)state;
    char path[128], cfg[256];
    snprintf(g_rules_dir, sizeof g_rules_dir, "/tmp/lt-r26-XXXXXX");
    assert_non_null(mkdtemp(g_rules_dir));
    snprintf(path, sizeof path, "%s/rules.yaml", g_rules_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("version: r26\nreferral: {levels_bp: [1000, 500]}\n", f);
    fclose(f);
    snprintf(cfg, sizeof cfg, "rules_file: %s\n", path);
    h_start(&g_d, cfg);

    assert_int_equal(send1(enrol(1, "R2", NULL, NULL), NULL), 0);
    assert_int_equal(send1(enrol(2, "R1", NULL, "R2"), NULL), 0);
    assert_int_equal(send1(enrol(3, "M1", NULL, "R1"), NULL), 0);
    int64_t bal = 0;
    assert_int_equal(send1(sale(4, "M1", 12345), &bal), 0);
    assert_int_equal(bal, 123);

    Loyalty__QueryReply *q = show("R1");
    assert_int_equal(q->member->balance, 100 + 12); /* R25 first-sale bonus + 10% of 123 */
    assert_int_equal(q->member->qualifying, 0);     /* referral points are not tier-qualifying */
    loyalty__query_reply__free_unpacked(q, NULL);
    q = show("R2");
    assert_int_equal(q->member->balance, 6); /* 5% of 123, floored */
    loyalty__query_reply__free_unpacked(q, NULL);

    assert_int_equal(send1(sale(5, "M1", 20000), NULL), 0); /* 200: 20 and 10, no bonus now */
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    h_restart(&g_d);
    q = show("R1");
    assert_int_equal(q->member->balance, 132);
    loyalty__query_reply__free_unpacked(q, NULL);
    q = show("R2");
    assert_int_equal(q->member->balance, 16);
    loyalty__query_reply__free_unpacked(q, NULL);
    h_verify(&g_d, "at the end");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_R7_merge_through_the_daemon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_R26_referrer_levels_through_the_daemon, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
