/* test_ckpt_kill.c: a crash or a failure at each step of a checkpoint (R29, R30).
 *
 * Checkpoints go into DATA_DIR/state/'s log, written by the daemon's checkpoint thread
 * (ledger/ckstore.h): a chunk of records per durable transaction, then a completing one. The
 * daemon is killed (SIGKILL, by its own test hook LOYALTYD_TEST_KILL_AFTER) right after a chosen
 * step of a checkpoint: a chunk appended (the checkpoint not complete), or its completion; in
 * a fresh data directory (its first checkpoint, a full one) or after a clean restart (an
 * incremental one after a complete one, whose unfinished records the next must clear). A kill from
 * outside (test_crash's storm) lands on these steps only by chance. After the restart nothing
 * acknowledged is lost and nothing is counted twice: every member's balance is its sales times one
 * sale's points, the unanswered last sale resent is accepted or a duplicate, `loyaltyctl verify`
 * passes, and a clean restart (the next checkpoint) gives the same balances.
 *
 * Also: a checkpoint whose commit fails (the hook's `fail`) is followed by one that writes every
 * member, and a state/ that belongs to another ledger is not used. */
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

static int64_t sell(uint64_t from, uint64_t to, int64_t at, bool only_first);

/* warm: first sales and a clean stop (a complete checkpoint), then the armed restart. check
 * (may be NULL) looks at the daemon's log before it is removed. */
static void kill_at(const char *step, bool warm, void (*check)(void))
{
    int64_t at = h_now();
    int64_t per_sale = -1;
    uint64_t eid = 1;
    if (warm) {
        h_start(&g_d, "checkpoint_interval_ms: 200\ncheckpoint_chunk: 3\n");
        per_sale = sell(1, 2 * MEMBERS, at, false);
        eid = 2 * MEMBERS + 1;
        assert_int_equal(h_stop(&g_d, SIGTERM), 0);
        setenv("LOYALTYD_TEST_KILL_AFTER", step, 1);
        h_restart(&g_d);
    } else {
        setenv("LOYALTYD_TEST_KILL_AFTER", step, 1);
        h_start(&g_d, "checkpoint_interval_ms: 200\ncheckpoint_chunk: 3\n");
    }
    unsetenv("LOYALTYD_TEST_KILL_AFTER");
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
    if (h_log_count(&g_d, "test hook: SIGKILL after a checkpoint step") == 0)
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
    if (check != NULL)
        check();
    h_cleanup(&g_d);
}

static void test_R30_kill_after_a_chunk_is_written(void **state)
{
    (void)state;
    kill_at("write:2", false, NULL);
}

/* The start after the kill recovered from state/, from a checkpoint before the killed one (its
 * records were not loaded: the balances would count the sales after it twice). */
static void recovered_from_before_the_kill(void)
{
    char cmd[800], out[64] = "";
    snprintf(cmd, sizeof cmd,
             "awk '/test hook: SIGKILL/ { match($0, /checkpoint_seq=[0-9]+/); "
             "k = substr($0, RSTART + 15, RLENGTH - 15) } "
             "/state recovered/ && k != \"\" { match($0, /checkpoint_seq=[0-9]+/); "
             "r = substr($0, RSTART + 15, RLENGTH - 15); "
             "print ($0 ~ /checkpoint=state/ && r + 0 < k + 0) ? \"ok\" : \"bad\"; exit }' "
             "%s/daemon.log",
             g_d.dir);
    assert_int_equal(h_run(cmd, out, sizeof out), 0);
    assert_string_equal(out, "ok\n");
}

static void test_R30_kill_after_a_chunk_of_an_incremental_checkpoint(void **state)
{
    (void)state;
    kill_at("write:2", true, recovered_from_before_the_kill);
}

static void test_R30_kill_after_the_checkpoint_commits(void **state)
{
    (void)state;
    kill_at("complete:2", false, NULL);
}

/* Sends sales eid from..to, each to member(eid) (or to k00 when only_first), all accepted. */
static int64_t sell(uint64_t from, uint64_t to, int64_t at, bool only_first)
{
    int64_t per_sale = -1;
    for (uint64_t eid = from; eid <= to; eid++) {
        char m[16] = "k00";
        if (!only_first)
            member(eid, m, sizeof m);
        Loyalty__Event *e = h_sale(1, eid, m, at, 0);
        h_line(e, "A", "groceries", 1, 1000, 1000, 0);
        Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 5000);
        assert_non_null(r);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        per_sale = r->acks[0]->points_earned;
        loyalty__ack_batch__free_unpacked(r, NULL);
        h_free_events();
    }
    return per_sale;
}

static bool log_has(const char *what)
{
    return h_log_count(&g_d, what) > 0;
}

/* A failed checkpoint took its members off the changed list: the next one must write them all,
 * or a restart from it would miss the points of members not changed since. Every member buys
 * before the failure, only k00 after it. */
static void test_R30_after_a_failed_checkpoint_the_next_writes_everything(void **state)
{
    (void)state;
    setenv("LOYALTYD_TEST_KILL_AFTER", "fail:1", 1);
    h_start(&g_d, "checkpoint_interval_ms: 200\ncheckpoint_chunk: 3\n");
    unsetenv("LOYALTYD_TEST_KILL_AFTER");
    int64_t at = h_now();
    int64_t per_sale = sell(1, 2 * MEMBERS, at, false);
    for (int i = 0; i < 100 && !log_has("checkpoint failed; the next one writes every member"); i++)
        usleep(100000);
    assert_true(log_has("test hook: the checkpoint commit fails"));
    assert_true(log_has("checkpoint failed; the next one writes every member"));
    assert_int_equal(sell(2 * MEMBERS + 1, 2 * MEMBERS + 5, at, true), per_sale);
    assert_int_equal(h_stop(&g_d, SIGTERM), 0); /* the final checkpoint */
    h_restart(&g_d);
    assert_true(log_has("checkpoint=state"));
    for (unsigned k = 0; k < MEMBERS; k++) {
        char m[16];
        snprintf(m, sizeof m, "k%02u", k);
        int64_t want = (2 + (k == 0 ? 5 : 0)) * per_sale;
        if (h_balance(&g_d, m) != want)
            fail_msg("member %s has %lld points, %lld expected", m, (long long)h_balance(&g_d, m),
                     (long long)want);
    }
    h_verify(&g_d, "after the failed checkpoint");
    h_cleanup(&g_d);
}

/* state/ copied from another data directory (or left beside a restored ledger) does not match
 * this ledger's entry at its sequence: the daemon recovers from the ledger alone, then writes
 * its own. */
static void test_R30_a_foreign_state_dir_is_not_used(void **state)
{
    (void)state;
    lt_daemon other;
    memset(&other, 0, sizeof other);
    h_start(&g_d, NULL);
    int64_t at = h_now();
    int64_t per_sale = sell(1, MEMBERS, at, false);
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    /* another ledger: different sales, more of them, its own checkpoint */
    lt_daemon keep = g_d;
    h_start(&g_d, NULL);
    other = g_d;
    sell(1, 3 * MEMBERS, at - 60, true);
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    g_d = keep;
    char cmd[1200], out[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s/data/state && cp -a %s/data/state %s/data/state", g_d.dir,
             other.dir, g_d.dir);
    assert_int_equal(h_run(cmd, out, sizeof out), 0);
    h_restart(&g_d);
    assert_true(log_has("checkpoint in state/ not used"));
    for (unsigned k = 0; k < MEMBERS; k++) {
        char m[16];
        snprintf(m, sizeof m, "k%02u", k);
        assert_int_equal(h_balance(&g_d, m), per_sale);
    }
    h_verify(&g_d, "beside a foreign state/");
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    h_restart(&g_d); /* from its own checkpoint now */
    assert_true(log_has("checkpoint=state"));
    assert_int_equal(h_balance(&g_d, "k01"), per_sale);
    h_cleanup(&g_d);
    g_d = other;
    h_cleanup(&g_d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_R30_kill_after_a_chunk_is_written),
        cmocka_unit_test(test_R30_kill_after_a_chunk_of_an_incremental_checkpoint),
        cmocka_unit_test(test_R30_kill_after_the_checkpoint_commits),
        cmocka_unit_test(test_R30_after_a_failed_checkpoint_the_next_writes_everything),
        cmocka_unit_test(test_R30_a_foreign_state_dir_is_not_used),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
