/* test_ckpt_kill.c: a crash at each step of a staged checkpoint (R29, R30).
 *
 * The daemon is killed (SIGKILL, by its own test hook LOYALTYD_TEST_KILL_AFTER) right after the
 * durable commit that carries a chosen step of a checkpoint: a chunk of its records, the commit
 * that makes it the checkpoint, or one that moves its records into place. A kill from outside
 * (test_crash's storm) lands on these steps only by chance. After the restart nothing
 * acknowledged is lost and nothing is counted twice: every member's balance is its sales times
 * one sale's points, the unanswered last sale resent is accepted or a duplicate, `loyaltyctl
 * verify` passes, and a clean restart (the next checkpoint) gives the same balances. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define MEMBERS 40
#define SALES_MAX 20000

static lt_daemon g_d;

static void member(uint64_t eid, char *out, size_t cap)
{
    snprintf(out, cap, "k%02u", (unsigned)(eid % MEMBERS));
}

/* One sale of 10.00 yuan by eid's member, at a fixed time (a resend has the same content). */
static Loyalty__AckBatch *sale(uint64_t eid, int64_t at, int timeout_ms)
{
    char m[16];
    member(eid, m, sizeof m);
    Loyalty__Event *e = h_sale(1, eid, m, at, 0);
    h_line(e, "A", "groceries", 1, 1000, 1000, 0);
    return h_send(&g_d, h_batch(1, &e), timeout_ms);
}

static void check_balances(uint64_t sales, int64_t per_sale, const char *when)
{
    for (unsigned k = 0; k < MEMBERS; k++) {
        char m[16];
        member(k, m, sizeof m);
        int64_t n = 0;
        for (uint64_t eid = 1; eid <= sales; eid++)
            n += eid % MEMBERS == k;
        int64_t got = h_balance(&g_d, m);
        if (got != n * per_sale)
            fail_msg("%s: member %s has %lld points, %lld sales of %lld expected", when, m,
                     (long long)got, (long long)n, (long long)per_sale);
    }
}

static void kill_at(const char *step)
{
    setenv("LOYALTYD_TEST_KILL_AFTER", step, 1);
    h_start(&g_d, "checkpoint_interval_ms: 200\ncheckpoint_chunk: 3\n");
    unsetenv("LOYALTYD_TEST_KILL_AFTER");
    int64_t at = h_now();
    int64_t per_sale = -1;
    uint64_t eid = 1;
    for (;; eid++) {
        assert_true(eid < SALES_MAX); /* the hook fired long before */
        Loyalty__AckBatch *r = sale(eid, at, 2000);
        if (r == NULL)
            break; /* killed: eid was sent and not answered */
        assert_int_equal(r->n_acks, 1);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        if (per_sale < 0)
            per_sale = r->acks[0]->points_earned;
        assert_int_equal(r->acks[0]->points_earned, per_sale);
        loyalty__ack_batch__free_unpacked(r, NULL);
        h_free_events();
    }
    assert_true(per_sale > 0);
    assert_int_equal(h_stop(&g_d, SIGKILL), 128 + SIGKILL);
    char cmd[600], out[4096];
    snprintf(cmd, sizeof cmd,
             "grep -c 'test hook: SIGKILL after a checkpoint commit' %s/daemon.log", g_d.dir);
    if (h_run(cmd, out, sizeof out) != 0)
        fail_msg("the daemon stopped answering but its hook did not fire (%s)", step);

    h_restart(&g_d);
    /* the last sale: committed before the kill or not; either way it counts once now */
    Loyalty__AckBatch *r = sale(eid, at, 10000);
    assert_non_null(r);
    assert_int_equal(r->n_acks, 1);
    assert_true(r->acks[0]->status == LOYALTY__STATUS__ACCEPTED ||
                r->acks[0]->status == LOYALTY__STATUS__DUPLICATE);
    loyalty__ack_batch__free_unpacked(r, NULL);
    h_free_events();
    check_balances(eid, per_sale, "after the kill");
    h_verify(&g_d, "after the kill");
    /* and again from the checkpoint a clean stop writes */
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    h_restart(&g_d);
    check_balances(eid, per_sale, "after a clean restart");
    h_verify(&g_d, "after a clean restart");
    h_cleanup(&g_d);
}

static void test_R30_kill_after_a_staged_chunk(void **state)
{
    (void)state;
    kill_at("stage:2");
}

static void test_R30_kill_after_the_completing_commit(void **state)
{
    (void)state;
    kill_at("complete:2");
}

static void test_R30_kill_while_moving_into_place(void **state)
{
    (void)state;
    kill_at("merge:2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_R30_kill_after_a_staged_chunk),
        cmocka_unit_test(test_R30_kill_after_the_completing_commit),
        cmocka_unit_test(test_R30_kill_while_moving_into_place),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
