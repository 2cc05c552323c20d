/* test_returns.c: R18 returns through the real daemon: exact reversal, several partial returns,
 * RETURN_EXCEEDS_SALE, UNKNOWN_SALE, a return in the same message as its sale, a return after
 * the points were spent (negative balance), and the returned quantities surviving a restart. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static lt_daemon g_d;

/* what ret() allocates, freed at teardown (the harness's own pool is private to it) */
static void *g_allocs[256];
static size_t g_allocs_n;

static void *track(void *p)
{
    assert_non_null(p);
    assert_true(g_allocs_n < sizeof g_allocs / sizeof g_allocs[0]);
    g_allocs[g_allocs_n++] = p;
    return p;
}

static int setup(void **state)
{
    (void)state;
    h_start(&g_d, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    while (g_allocs_n > 0)
        free(g_allocs[--g_allocs_n]);
    return 0;
}

static Loyalty__Event *ret(uint64_t eid, const char *member, uint64_t orig_eid, uint32_t line,
                           int64_t qty)
{
    Loyalty__Event *e = h_event(1, eid, member, h_now());
    Loyalty__ReturnSale *r = track(calloc(1, sizeof *r));
    loyalty__return_sale__init(r);
    Loyalty__EventId *o = track(calloc(1, sizeof *o));
    loyalty__event_id__init(o);
    o->has_node_id = o->has_event_id = 1;
    o->node_id = 1;
    o->event_id = orig_eid;
    r->original = o;
    r->lines = track(calloc(1, sizeof *r->lines));
    Loyalty__ReturnLine *l = track(calloc(1, sizeof *l));
    loyalty__return_line__init(l);
    l->has_line_index = l->has_quantity = 1;
    l->line_index = line;
    l->quantity = qty;
    r->lines[0] = l;
    r->n_lines = 1;
    e->body_case = LOYALTY__EVENT__BODY_RETURN_SALE;
    e->return_sale = r;
    return e;
}

static Loyalty__AckBatch *send_n(size_t n, Loyalty__Event **ev)
{
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(n, ev), 10000);
    assert_non_null(r);
    assert_int_equal(r->n_acks, n);
    return r;
}

static void test_R18_partial_returns_reverse_exactly(void **state)
{
    (void)state;
    /* 3 units at 99.99 yuan and one at 12.34: floor(31231 / 100) = 312 points (R11: the class
     * total is floored once); per line 300 and 12 (pro rata, the leftover to line A) */
    Loyalty__Event *sale = h_sale(1, 1, "r1", h_now(), 0);
    h_line(sale, "A", "groceries", 3, 9999, 9999, 0);
    h_line(sale, "B", "groceries", 1, 1234, 1234, 0);
    Loyalty__AckBatch *r = send_n(1, &sale);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    int64_t earned = r->acks[0]->points_earned;
    loyalty__ack_batch__free_unpacked(r, NULL);
    assert_int_equal(earned, 312);

    /* line A back one unit at a time: the three reversals add up to line A's points */
    int64_t reversed = 0;
    for (uint64_t i = 0; i < 3; i++) {
        Loyalty__Event *e = ret(10 + i, "r1", 1, 0, 1);
        r = send_n(1, &e);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        reversed += -r->acks[0]->points_earned;
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    int64_t left = h_balance(&g_d, "r1");
    assert_int_equal(left, earned - reversed);
    assert_int_equal(left, 12); /* what line B earned */

    /* a fourth unit of line A was never sold */
    Loyalty__Event *e = ret(20, "r1", 1, 0, 1);
    r = send_n(1, &e);
    assert_int_equal(r->acks[0]->reason, LOYALTY__REASON__RETURN_EXCEEDS_SALE);
    loyalty__ack_batch__free_unpacked(r, NULL);

    /* the returned quantities survive a restart (checkpoint + replay) */
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    h_restart(&g_d);
    e = ret(21, "r1", 1, 0, 1);
    r = send_n(1, &e);
    assert_int_equal(r->acks[0]->reason, LOYALTY__REASON__RETURN_EXCEEDS_SALE);
    loyalty__ack_batch__free_unpacked(r, NULL);
    h_verify(&g_d, "at the end");
}

static void test_R18_unknown_sale_and_same_message(void **state)
{
    (void)state;
    /* the sale and its return in one message: the sale is not yet committed when the return
     * is rated */
    Loyalty__Event *ev[2];
    Loyalty__AckBatch *r;
    ev[0] = h_sale(1, 2, "r2", h_now(), 0);
    h_line(ev[0], "A", "groceries", 2, 5000, 5000, 0);
    ev[1] = ret(3, "r2", 2, 0, 2);
    r = send_n(2, ev);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    assert_int_equal(r->acks[1]->status, LOYALTY__STATUS__ACCEPTED);
    assert_int_equal(r->acks[1]->points_earned, -100);
    assert_int_equal(r->acks[1]->balance, 0);
    loyalty__ack_batch__free_unpacked(r, NULL);

    /* a known member, a sale that never was */
    Loyalty__Event *e = ret(5, "r2", 999, 0, 1);
    r = send_n(1, &e);
    assert_int_equal(r->acks[0]->reason, LOYALTY__REASON__UNKNOWN_SALE);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

static void test_R18_return_after_spending_goes_negative(void **state)
{
    (void)state;
    Loyalty__Event *sale = h_sale(1, 1, "r3", h_now(), 0);
    h_line(sale, "A", "groceries", 1, 50000, 50000, 0); /* 500 points */
    Loyalty__AckBatch *r = send_n(1, &sale);
    loyalty__ack_batch__free_unpacked(r, NULL);
    Loyalty__Event *gift = h_event(1, 2, "r3", h_now());
    Loyalty__GiftRedemption g = LOYALTY__GIFT_REDEMPTION__INIT;
    g.has_points = 1;
    g.points = 450;
    g.reward_code = "MUG";
    gift->body_case = LOYALTY__EVENT__BODY_GIFT;
    gift->gift = &g;
    r = send_n(1, &gift);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    Loyalty__Event *e = ret(3, "r3", 1, 0, 1);
    r = send_n(1, &e);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    assert_int_equal(r->acks[0]->balance, -450); /* negative_balance: allow (default) */
    loyalty__ack_batch__free_unpacked(r, NULL);
    /* points earned later pay the debt first */
    Loyalty__Event *later = h_sale(1, 4, "r3", h_now(), 0);
    h_line(later, "A", "groceries", 1, 60000, 60000, 0);
    r = send_n(1, &later);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    assert_int_equal(r->acks[0]->balance, 150);
    loyalty__ack_batch__free_unpacked(r, NULL);
    h_verify(&g_d, "at the end");
}

/* A metric's value from the daemon's /metrics now, or -1. */
static double metric(const char *name);

/* R29 and R18 while event ids wait for the ledger's dedup index (index_flush_ms longer than the
 * test): a resend is the duplicate of the committed entry and a return finds its sale, once the
 * sale's batch is gone; a kill -9 leaves them out of the index, and the restart indexes them
 * before it takes events. */
static void test_R29_R18_ids_not_in_the_index_yet(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_start(&g_d, "index_flush_ms: 60000\n");
    const int64_t t0 = h_now();
    Loyalty__Event *sale = h_sale(1, 1, "ix", t0, 0);
    h_line(sale, "A", "groceries", 3, 1000, 1000, 0);
    Loyalty__AckBatch *r = send_n(1, &sale);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    uint64_t seq = r->acks[0]->seq;
    loyalty__ack_batch__free_unpacked(r, NULL);
    for (uint64_t i = 0; i < 12;
         i++) { /* more batches than the pipeline has: the sale's is reused */
        Loyalty__Event *e = h_sale(1, 100 + i, "other", h_now(), 0);
        h_line(e, "A", "groceries", 1, 1000, 1000, 0);
        r = send_n(1, &e);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    assert_int_equal(metric("loyaltyd_ledger_events_indexed"), 0); /* all still waiting */

    for (int round = 0; round < 2; round++) {
        Loyalty__Event *again = h_sale(1, 1, "ix", t0, 0);
        h_line(again, "A", "groceries", 3, 1000, 1000, 0);
        r = send_n(1, &again);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__DUPLICATE);
        assert_int_equal(r->acks[0]->seq, seq);
        loyalty__ack_batch__free_unpacked(r, NULL);
        Loyalty__Event *e = ret(200 + (uint64_t)round, "ix", 1, 0, 1);
        r = send_n(1, &e);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        assert_int_equal(r->acks[0]->points_earned, -10);
        loyalty__ack_batch__free_unpacked(r, NULL);
        if (round == 0) {
            assert_int_equal(h_stop(&g_d, SIGKILL), 128 + SIGKILL);
            h_restart(&g_d);
            /* the open indexed them: 1 sale, 12 others, 1 return */
            assert_int_equal(metric("loyaltyd_ledger_events_indexed"), 14);
        }
    }
    assert_int_equal(h_balance(&g_d, "ix"), 30 - 20);
    h_verify(&g_d, "at the end");
}

static double metric(const char *name)
{
    static char body[1 << 20];
    assert_int_equal(h_http_get(&g_d, "/metrics", body, sizeof body), 200);
    return h_metric(body, name);
}

#define SPREAD_MEMBERS 20
#define SPREAD_RETURNED 10

/* R29: the commit thread indexes event ids in a transaction of its own only once commits have
 * stopped for a while (under load the rounds ride on the commits); a daemon gone quiet still
 * gets every id into the index, and a resend is still the duplicate afterwards. */
static void test_R29_ids_indexed_once_the_daemon_is_quiet(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_start(&g_d, "index_flush_ms: 50\n");
    const int64_t t0 = h_now();
    for (uint64_t i = 1; i <= 5; i++) {
        Loyalty__Event *e = h_sale(1, i, "quiet", t0, 0);
        h_line(e, "A", "groceries", 1, 1000, 1000, 0);
        Loyalty__AckBatch *r = send_n(1, &e);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    double indexed = -1;
    for (int i = 0; i < 100 && (indexed = metric("loyaltyd_ledger_events_indexed")) < 5; i++)
        usleep(50 * 1000);
    assert_int_equal(indexed, 5);
    Loyalty__Event *again = h_sale(1, 3, "quiet", t0, 0);
    h_line(again, "A", "groceries", 1, 1000, 1000, 0);
    Loyalty__AckBatch *r = send_n(1, &again);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__DUPLICATE);
    loyalty__ack_batch__free_unpacked(r, NULL);
    h_verify(&g_d, "quiet");
}

/* A checkpoint's changed cards and returned quantities go to the ledger a chunk per commit like
 * its members (checkpoint_chunk: 3 here: 20 cards and 10 returns records take ten commits), and
 * a restart from that checkpoint alone, with nothing to replay, still has every card (R5) and
 * every returned quantity (R18). */
static void test_R18_checkpoint_spreads_cards_and_returns_over_commits(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_start(&g_d, "checkpoint_chunk: 3\n");
    static Loyalty__Enrol en[SPREAD_MEMBERS];
    static char ids[SPREAD_MEMBERS][16], cards[SPREAD_MEMBERS][16];
    Loyalty__Event *ev[SPREAD_MEMBERS];
    for (int i = 0; i < SPREAD_MEMBERS; i++) {
        snprintf(ids[i], sizeof ids[i], "sp%02d", i);
        snprintf(cards[i], sizeof cards[i], "K%02d", i);
        loyalty__enrol__init(&en[i]);
        en[i].card = cards[i];
        ev[i] = h_event(1, 1 + (uint64_t)i, ids[i], h_now());
        ev[i]->body_case = LOYALTY__EVENT__BODY_ENROL;
        ev[i]->enrol = &en[i];
    }
    Loyalty__AckBatch *r = send_n(SPREAD_MEMBERS, ev);
    for (int i = 0; i < SPREAD_MEMBERS; i++)
        assert_int_equal(r->acks[i]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    for (int i = 0; i < SPREAD_RETURNED; i++) { /* a sale of 2 units, then 1 of them back */
        ev[0] = h_sale(1, 101 + (uint64_t)i, ids[i], h_now(), 0);
        h_line(ev[0], "A", "groceries", 2, 5000, 5000, 0);
        ev[1] = ret(201 + (uint64_t)i, ids[i], 101 + (uint64_t)i, 0, 1);
        r = send_n(2, ev);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        assert_int_equal(r->acks[1]->status, LOYALTY__STATUS__ACCEPTED);
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    /* a checkpoint covers the last entry; then a kill, so that no final checkpoint is written */
    double last = metric("loyaltyd_ledger_last_seq");
    assert_true(last >= SPREAD_MEMBERS + 2 * SPREAD_RETURNED);
    for (int i = 0; i < 200 && metric("loyaltyd_checkpoint_seq") < last; i++)
        usleep(50 * 1000);
    assert_true(metric("loyaltyd_checkpoint_seq") >= last);
    assert_int_equal(h_stop(&g_d, SIGKILL), 128 + SIGKILL);
    h_restart(&g_d);

    /* every card still finds its member: a sale by card alone */
    for (int i = 0; i < SPREAD_MEMBERS; i++) {
        int64_t before = h_balance(&g_d, ids[i]);
        ev[0] = h_sale(1, 301 + (uint64_t)i, "", h_now(), 0);
        ev[0]->member_id = NULL;
        ev[0]->card = cards[i];
        h_line(ev[0], "A", "groceries", 1, 1000, 1000, 0);
        r = send_n(1, ev);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        loyalty__ack_batch__free_unpacked(r, NULL);
        assert_true(h_balance(&g_d, ids[i]) > before);
    }
    /* every sale has exactly one unit left to return */
    for (int i = 0; i < SPREAD_RETURNED; i++) {
        ev[0] = ret(401 + (uint64_t)i, ids[i], 101 + (uint64_t)i, 0, 2);
        r = send_n(1, ev);
        assert_int_equal(r->acks[0]->reason, LOYALTY__REASON__RETURN_EXCEEDS_SALE);
        loyalty__ack_batch__free_unpacked(r, NULL);
        ev[0] = ret(501 + (uint64_t)i, ids[i], 101 + (uint64_t)i, 0, 1);
        r = send_n(1, ev);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    h_verify(&g_d, "at the end");
}

#define COW_MEMBERS 3000
#define COW_RETURNED 20
#define COW_PER_MESSAGE 100

/* Member i's id. */
static void cow_id(char id[16], int i)
{
    snprintf(id, 16, "cow%04d", i);
}

/* Sends each of the COW_MEMBERS members an enrolment (enrol) or else a sale of 1 unit, event
 * ids from *eid on, in messages of COW_PER_MESSAGE events (their acks not checked). */
static void cow_to_all(uint64_t *eid, bool enrol)
{
    for (int i = 0; i < COW_MEMBERS; i += COW_PER_MESSAGE) {
        Loyalty__Event *ev[COW_PER_MESSAGE];
        for (int k = 0; k < COW_PER_MESSAGE; k++) {
            char id[16];
            cow_id(id, i + k);
            if (enrol) {
                ev[k] = h_enrol(1, (*eid)++, id, NULL, NULL, h_now());
            } else {
                ev[k] = h_sale(1, (*eid)++, id, h_now(), 0);
                h_line(ev[k], "A", "groceries", 1, 1000, 1000, 0);
            }
        }
        loyalty__ack_batch__free_unpacked(send_n(COW_PER_MESSAGE, ev), NULL);
        h_free_events();
    }
}

/* One sale of 1 unit by member "cowfill" (eid), acknowledged: keeps the daemon's loop from
 * going idle, so that a checkpoint follows its schedule instead of writing whole chunks. */
static void cow_fill(uint64_t eid)
{
    Loyalty__Event *e = h_sale(1, eid, "cowfill", h_now(), 0);
    h_line(e, "A", "groceries", 1, 1000, 1000, 0);
    Loyalty__AckBatch *r = send_n(1, &e);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    h_free_events();
}

/* One return of `qty` units of line 0 for each of the first COW_RETURNED members' sales
 * (event ids 10,001...), event ids from eid on, in one message; each `status`. */
static void cow_returns(uint64_t eid, int64_t qty, Loyalty__Status status)
{
    Loyalty__Event *ev[COW_RETURNED];
    for (int i = 0; i < COW_RETURNED; i++) {
        char id[16];
        cow_id(id, i);
        ev[i] = ret(eid + (uint64_t)i, id, 10001 + (uint64_t)i, 0, qty);
    }
    Loyalty__AckBatch *r = send_n(COW_RETURNED, ev);
    for (int i = 0; i < COW_RETURNED; i++)
        assert_int_equal(r->acks[i]->status, status);
    loyalty__ack_batch__free_unpacked(r, NULL);
    h_free_events();
    while (g_allocs_n > 0)
        free(g_allocs[--g_allocs_n]);
}

/* Waits (up to 20 s), sending fill sales from *eid on, until the log has more than `seen` lines
 * matching what. */
static void cow_await_log(const char *what, int seen, uint64_t *eid)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        if (h_log_count(&g_d, what) > seen)
            return;
        cow_fill((*eid)++);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 20);
    fail_msg("no new log line \"%s\" in 20 s", what);
}

/* R18, R30: returned quantities changed while a checkpoint is being written go into it as they
 * were at its start (copy-on-write: captured before the return changes them), and a restart
 * from that checkpoint replays the return once. The checkpoint is spread over half of
 * checkpoint_interval_ms while events come in and writes its members (3,000 here) before the
 * returns records, so returns sent right after its start change records it has not written
 * yet; its debug log line says they were captured. Each sale: 10 units; one returned before
 * the checkpoint, one more while it is written, so after the restart 8 are left. */
static void test_R18_R30_returns_during_a_checkpoint_count_once(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_start(&g_d, "checkpoint_interval_ms: 4000\ncheckpoint_chunk: 64\nlog_level: debug\n");
    uint64_t eid = 1;
    cow_to_all(&eid, true); /* enrol everybody */
    Loyalty__Event *ev[COW_RETURNED];
    for (int i = 0; i < COW_RETURNED; i++) { /* the sales: event ids 10,001... */
        char id[16];
        cow_id(id, i);
        ev[i] = h_sale(1, 10001 + (uint64_t)i, id, h_now(), 0);
        h_line(ev[i], "A", "groceries", 10, 1000, 1000, 0);
    }
    Loyalty__AckBatch *r = send_n(COW_RETURNED, ev);
    for (int i = 0; i < COW_RETURNED; i++)
        assert_int_equal(r->acks[i]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    h_free_events();
    uint64_t fill = 1000000; /* the fill sales' event ids */
    /* right after a checkpoint starts, every member and returns record changes: all of them
     * are the next checkpoint's, which starts about 4 s later */
    cow_await_log("checkpoint started", h_log_count(&g_d, "checkpoint started"), &fill);
    int started = h_log_count(&g_d, "checkpoint started");
    cow_returns(30001, 1, LOYALTY__STATUS__ACCEPTED);
    cow_to_all(&eid, false);
    assert_int_equal(h_log_count(&g_d, "checkpoint started"), started); /* still the same one */
    /* the next checkpoint starts: one more unit back of each sale, at once */
    cow_await_log("checkpoint started", started, &fill);
    cow_returns(30101, 1, LOYALTY__STATUS__ACCEPTED);
    int committed = h_log_count(&g_d, "checkpoint committed"); /* the one before this */
    cow_await_log("checkpoint committed", committed, &fill);
    assert_int_equal(h_log_count(&g_d, "checkpoint committed.*captured_returns=20 "), 1);
    assert_int_equal(h_stop(&g_d, SIGKILL), 128 + SIGKILL);
    h_restart(&g_d);
    cow_returns(30201, 9, LOYALTY__STATUS__REJECTED); /* 2 of 10 are back: 9 exceed */
    cow_returns(30301, 8, LOYALTY__STATUS__ACCEPTED);
    cow_returns(30401, 1, LOYALTY__STATUS__REJECTED);
    h_verify(&g_d, "after the restart");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_R18_partial_returns_reverse_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_R18_unknown_sale_and_same_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_R29_R18_ids_not_in_the_index_yet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_R29_ids_indexed_once_the_daemon_is_quiet, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_R18_checkpoint_spreads_cards_and_returns_over_commits,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_R18_return_after_spending_goes_negative, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_R18_R30_returns_during_a_checkpoint_count_once, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("e2e_returns", tests, NULL, NULL);
}
