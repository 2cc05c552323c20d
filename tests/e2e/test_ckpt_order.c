/* test_ckpt_order.c: a checkpoint's records go into state/'s log in key order (R30).
 *
 * Each checkpoint appends the records changed since the last one to the end of state/'s log
 * (ledger/ckstore.h), which is keyed by (generation, kind, key): in key order they are appended
 * and fill their pages; out of order they are still stored, in the log's middle, and counted in
 * loyaltyd_checkpoint_records_unordered_total. The daemon keeps the order of all members
 * between checkpoints and merges in those enrolled since the last one (daemon/ckpt_order.h).
 * Here members are enrolled in no order of their ids, in waves that each end in a checkpoint,
 * each wave's ids falling between the earlier ones', and each wave also changes a subset of the
 * earlier members: every record is still appended, and a restart from state/ has every
 * member's balance. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define WAVES 4
#define PER_WAVE 150
#define MEMBERS (WAVES * PER_WAVE)
#define PER_MESSAGE 50

static lt_daemon g_d;
static unsigned g_sales[MEMBERS];
static uint64_t g_eid;
static int64_t g_per_sale = -1;

/* Member i's id: i times a number prime to 100,000, so that enrolment order is not id order. */
static void member_id(unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "o%05u", i * 7919u % 100000u);
}

static double metric(const char *name)
{
    static char body[1 << 16];
    assert_int_equal(h_http_get(&g_d, "/metrics", body, sizeof body), 200);
    return h_metric(body, name);
}

/* One sale of 10.00 yuan for each member listed, PER_MESSAGE to a message, all accepted. */
static void sell(const unsigned *who, size_t n, int64_t at)
{
    for (size_t i = 0; i < n; i += PER_MESSAGE) {
        Loyalty__Event *ev[PER_MESSAGE];
        size_t k = 0;
        for (; k < PER_MESSAGE && i + k < n; k++) {
            char m[16];
            member_id(who[i + k], m, sizeof m);
            ev[k] = h_sale(1, ++g_eid, m, at, 0);
            h_line(ev[k], "A", "groceries", 1, 1000, 1000, 0);
            g_sales[who[i + k]]++;
        }
        Loyalty__AckBatch *r = h_send(&g_d, h_batch(k, ev), 10000);
        assert_non_null(r);
        assert_int_equal(r->n_acks, k);
        for (size_t j = 0; j < k; j++) {
            assert_int_equal(r->acks[j]->status, LOYALTY__STATUS__ACCEPTED);
            if (g_per_sale < 0)
                g_per_sale = r->acks[j]->points_earned;
            assert_int_equal(r->acks[j]->points_earned, g_per_sale);
        }
        loyalty__ack_batch__free_unpacked(r, NULL);
        h_free_events();
    }
}

/* Waits until a checkpoint holds every entry written so far. */
static void await_checkpoint(void)
{
    double last = metric("loyaltyd_ledger_last_seq");
    for (int i = 0; i < 200 && metric("loyaltyd_checkpoint_seq") < last; i++)
        usleep(50 * 1000);
    assert_true(metric("loyaltyd_checkpoint_seq") >= last);
}

static void check_balances(const char *when)
{
    for (unsigned i = 0; i < MEMBERS; i++) {
        char m[16];
        member_id(i, m, sizeof m);
        int64_t got = h_balance(&g_d, m);
        if (got != (int64_t)g_sales[i] * g_per_sale)
            fail_msg("%s: member %s has %lld points, %u sales of %lld expected", when, m,
                     (long long)got, g_sales[i], (long long)g_per_sale);
    }
}

static void test_R30_checkpoint_records_appended_in_key_order(void **state)
{
    (void)state;
    h_start(&g_d, "checkpoint_interval_ms: 100\n");
    int64_t at = h_now();
    unsigned who[MEMBERS];
    for (unsigned w = 0; w < WAVES; w++) {
        size_t n = 0;
        for (unsigned i = w * PER_WAVE; i < (w + 1) * PER_WAVE; i++)
            who[n++] = i; /* enrolled by their first sale */
        for (unsigned i = w; i < w * PER_WAVE; i += 3)
            who[n++] = i; /* and a subset of the earlier ones changed */
        sell(who, n, at);
        await_checkpoint();
    }
    assert_true(g_per_sale > 0);
    assert_true(metric("loyaltyd_checkpoints_total") >= WAVES);
    assert_true(metric("loyaltyd_checkpoint_failures_total") == 0);
    assert_true(metric("loyaltyd_checkpoint_records_unordered_total") == 0);
    check_balances("before the restart");

    /* a stop writes the last checkpoint; the start loads state/ and replays nothing */
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    h_restart(&g_d);
    if (h_log_count(&g_d, "checkpoint=state") == 0)
        fail_msg("the restart did not load state/");
    check_balances("after the restart");
    h_verify(&g_d, "after the restart");
    /* the restarted daemon numbers its members in state/'s order; its checkpoints append too */
    unsigned all[MEMBERS];
    for (unsigned i = 0; i < MEMBERS; i++)
        all[i] = MEMBERS - 1 - i;
    sell(all, MEMBERS, at);
    await_checkpoint();
    assert_true(metric("loyaltyd_checkpoint_records_unordered_total") == 0);
    check_balances("after the restart's checkpoint");
    h_cleanup(&g_d);
}

/* Sends one message of n events; each must be accepted. */
static void send_all(Loyalty__Event **ev, size_t n)
{
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(n, ev), 10000);
    assert_non_null(r);
    assert_int_equal(r->n_acks, n);
    for (size_t j = 0; j < n; j++)
        if (r->acks[j]->status != LOYALTY__STATUS__ACCEPTED)
            fail_msg("event %zu: status %d reason %d", j, r->acks[j]->status, r->acks[j]->reason);
    loyalty__ack_batch__free_unpacked(r, NULL);
    h_free_events();
}

/* R7, R4: a card replaced as lost (unlinked) and then linked to another member within one
 * checkpoint's interval is listed twice among the changed cards; the checkpoint writes it once,
 * appended like every other record, and a restart finds it linked to its new member. */
static void test_R7_card_moved_within_one_checkpoint_is_written_once(void **state)
{
    (void)state;
    h_start(&g_d, "checkpoint_interval_ms: 100\n");
    Loyalty__Event *enrols[2] = {h_enrol(1, 1, "ca", "c1", NULL, h_now()),
                                 h_enrol(1, 2, "cb", "cb1", NULL, h_now())};
    send_all(enrols, 2);
    await_checkpoint();
    Loyalty__Event *moves[2] = {h_card_link(1, 3, "ca", "c2", "c1", h_now()),  /* c1 lost */
                                h_card_link(1, 4, "cb", "c1", NULL, h_now())}; /* c1 to cb */
    send_all(moves, 2);
    await_checkpoint();
    assert_true(metric("loyaltyd_checkpoint_records_unordered_total") == 0);
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    h_restart(&g_d);
    /* a sale by card c1 earns for cb */
    Loyalty__Event *sale_ev = h_sale(1, 5, "", h_now(), 0);
    sale_ev->member_id = NULL;
    sale_ev->card = "c1";
    h_line(sale_ev, "A", "groceries", 1, 1000, 1000, 0);
    send_all(&sale_ev, 1);
    assert_true(h_balance(&g_d, "cb") > 0);
    assert_int_equal(h_balance(&g_d, "ca"), 0);
    h_verify(&g_d, "after the restart");
    h_cleanup(&g_d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_R30_checkpoint_records_appended_in_key_order),
        cmocka_unit_test(test_R7_card_moved_within_one_checkpoint_is_written_once),
    };
    return cmocka_run_group_tests_name("e2e_ckpt_order", tests, NULL, NULL);
}
