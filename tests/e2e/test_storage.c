/* test_storage.c: disk trouble. When the ledger cannot take a commit (here: the LMDB map is
 * full), the daemon answers STORAGE_UNAVAILABLE for everything not yet durable, keeps serving
 * queries, never acknowledges what is not on disk, keeps its state equal to the ledger, and
 * takes events again once there is room. */
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

#define MEMBERS 50

static lt_daemon g_d;

static char g_mnt[64]; /* a tmpfs mounted by a test, unmounted whatever the outcome */

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    if (g_mnt[0] != '\0') {
        char cmd[160], out[256];
        snprintf(cmd, sizeof cmd, "umount %s; rmdir %s", g_mnt, g_mnt);
        (void)h_run(cmd, out, sizeof out);
        g_mnt[0] = '\0';
    }
    return 0;
}

static void test_map_full_refuses_serves_and_recovers(void **state)
{
    (void)state;
    h_start(&g_d, "map_size_mb: 16\n");
    int64_t acked[MEMBERS] = {0};
    uint64_t eid = 0;
    int refused = 0, accepted = 0;
    for (int b = 0; b < 400 && refused == 0; b++) {
        Loyalty__Event *ev[500];
        for (int i = 0; i < 500; i++) {
            char m[16];
            snprintf(m, sizeof m, "m%d", (int)(eid % MEMBERS));
            ev[i] = h_sale(1, ++eid, m, h_now(), 0);
            /* several lines: bigger entries fill the map sooner */
            for (int l = 0; l < 6; l++)
                h_line(ev[i], "SKU-0000000000", "groceries", 1, 1000, 1000, 0);
        }
        Loyalty__AckBatch *r = h_send(&g_d, h_batch(500, ev), 30000);
        assert_non_null(r); /* the daemon always answers */
        for (size_t i = 0; i < r->n_acks; i++) {
            const Loyalty__Ack *a = r->acks[i];
            if (a->status == LOYALTY__STATUS__ACCEPTED) {
                accepted++;
                acked[(a->id->event_id - 1) % MEMBERS] = a->balance;
            } else {
                assert_int_equal(a->status, LOYALTY__STATUS__REJECTED);
                assert_int_equal(a->reason, LOYALTY__REASON__STORAGE_UNAVAILABLE);
                refused++;
            }
        }
        loyalty__ack_batch__free_unpacked(r, NULL);
        h_free_events();
    }
    assert_true(accepted > 1000);
    assert_true(refused > 0); /* the map did fill */

    /* still serving: queries answer, and the state equals the ledger's */
    for (int i = 0; i < MEMBERS; i++) {
        char m[16];
        snprintf(m, sizeof m, "m%d", i);
        Loyalty__QueryReply *q = h_member(&g_d, m);
        assert_non_null(q);
        assert_true(q->ok);
        assert_int_equal(q->member->balance, acked[i]); /* exactly what was acknowledged */
        loyalty__query_reply__free_unpacked(q, NULL);
    }
    h_verify(&g_d, "after map full");

    /* new events are refused with the reason while the map stays full */
    Loyalty__Event *e = h_sale(2, 1, "late", h_now(), 0);
    h_line(e, "A", "groceries", 1, 1000, 1000, 0);
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    bool refused_again =
        (r->has_reason && r->reason == LOYALTY__REASON__STORAGE_UNAVAILABLE) ||
        (r->n_acks == 1 && r->acks[0]->reason == LOYALTY__REASON__STORAGE_UNAVAILABLE);
    assert_true(refused_again);
    loyalty__ack_batch__free_unpacked(r, NULL);

    /* room again (a larger map): the same daemon data takes events */
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    FILE *f = fopen(g_d.config, "a");
    assert_non_null(f);
    fputs("map_size_mb: 256\n", f);
    fclose(f);
    h_restart(&g_d);
    r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    for (int i = 0; i < MEMBERS; i++) {
        char m[16];
        snprintf(m, sizeof m, "m%d", i);
        Loyalty__QueryReply *q = h_member(&g_d, m);
        assert_non_null(q);
        assert_int_equal(q->member->balance, acked[i]);
        loyalty__query_reply__free_unpacked(q, NULL);
    }
    h_verify(&g_d, "after recovery");
}

/* A second daemon on the same data directory is refused, and the first goes on serving. */
static void test_second_daemon_on_same_data_refused(void **state)
{
    (void)state;
    h_start(&g_d, NULL);
    char yaml[512], out[4096];
    snprintf(yaml, sizeof yaml,
             "data_dir: %s\ningest_endpoint: tcp://127.0.0.1:0\npublish_endpoint: "
             "tcp://127.0.0.1:0\nquery_endpoint: tcp://127.0.0.1:0\nmetrics_listen: \"\"\n",
             g_d.data);
    assert_int_equal(h_daemon_once(yaml, 10, out, sizeof out), 1);
    if (strstr(out, "held by another loyaltyd") == NULL)
        fail_msg("no clear refusal: %s", out);
    Loyalty__Event *e = h_sale(1, 1, "still", h_now(), 0);
    h_line(e, "A", "groceries", 1, 1000, 1000, 0);
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

/* A real full disk (a 6 MiB tmpfs): commits fail, nothing not durable is acknowledged, the
 * daemon serves on, and once there is room again it takes events without a restart. Needs
 * root to mount; skipped where mounting is not allowed. */
static void test_disk_full_refuses_then_recovers_without_restart(void **state)
{
    (void)state;
    char mnt[] = "/tmp/lt-full-XXXXXX", cmd[512], out[4096], cfg[256];
    assert_non_null(mkdtemp(mnt));
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=6m tmpfs %s", mnt);
    if (h_run(cmd, out, sizeof out) != 0) {
        rmdir(mnt);
        skip(); /* not allowed here (no root, or a container without mount rights) */
    }
    snprintf(g_mnt, sizeof g_mnt, "%s", mnt);
    snprintf(cfg, sizeof cfg, "%s/data", mnt);
    /* index_flush_ms: the event ids stay out of the dedup index, so after the rebuild that
     * follows the failed commit only the ledger writer's memory knows them (R29, at the end) */
    h_start_data(&g_d, cfg, "index_flush_ms: 60000\n");
    int64_t acked[MEMBERS] = {0};
    uint64_t eid = 0, first_seq = 0;
    const int64_t t0 = h_now();
    int refused = 0, accepted = 0;
    for (int b = 0; b < 200 && refused == 0; b++) {
        Loyalty__Event *ev[500];
        for (int i = 0; i < 500; i++) {
            char m[16];
            snprintf(m, sizeof m, "d%d", (int)(eid % MEMBERS));
            ev[i] = h_sale(3, ++eid, m, t0, 0);
            for (int l = 0; l < 6; l++)
                h_line(ev[i], "SKU-0000000000", "groceries", 1, 1000, 1000, 0);
        }
        Loyalty__AckBatch *r = h_send(&g_d, h_batch(500, ev), 30000);
        assert_non_null(r);
        if (r->n_acks == 0) {
            /* refused whole: a commit failed before this message (one that carried only
             * checkpoint work, when the disk filled there) and the daemon is in its refusal
             * window: nothing of it was taken */
            assert_int_equal(r->reason, LOYALTY__REASON__STORAGE_UNAVAILABLE);
            refused += 500;
        }
        for (size_t i = 0; i < r->n_acks; i++) {
            if (r->acks[i]->status == LOYALTY__STATUS__ACCEPTED) {
                if (r->acks[i]->id->event_id == 1)
                    first_seq = r->acks[i]->seq;
                accepted++;
                acked[(r->acks[i]->id->event_id - 1) % MEMBERS] = r->acks[i]->balance;
            } else {
                assert_int_equal(r->acks[i]->reason, LOYALTY__REASON__STORAGE_UNAVAILABLE);
                refused++;
            }
        }
        loyalty__ack_batch__free_unpacked(r, NULL);
        h_free_events();
    }
    if (!(accepted > 0 && refused > 0)) /* the disk did fill */
        fail_msg("accepted %d, refused %d of %llu events", accepted, refused,
                 (unsigned long long)eid);
    for (int i = 0; i < MEMBERS; i++) {
        char m[16];
        snprintf(m, sizeof m, "d%d", i);
        assert_int_equal(h_balance(&g_d, m), acked[i]);
    }
    /* room again: the same daemon, no restart, takes events after its refusal window */
    snprintf(cmd, sizeof cmd, "mount -o remount,size=64m %s", mnt);
    assert_int_equal(h_run(cmd, out, sizeof out), 0);
    bool ok = false;
    for (int i = 0; i < 200 && !ok; i++) {
        Loyalty__Event *e = h_sale(4, (uint64_t)i + 1, "after", h_now(), 0);
        h_line(e, "A", "groceries", 1, 1000, 1000, 0);
        Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
        assert_non_null(r);
        ok = r->n_acks == 1 && r->acks[0]->status == LOYALTY__STATUS__ACCEPTED;
        loyalty__ack_batch__free_unpacked(r, NULL);
        if (!ok)
            usleep(100 * 1000);
    }
    assert_true(ok);
    /* R29: the first event, resent after the rebuild, is the duplicate of the entry it made
     * (among the entries the index did not hold; its digest read from the entry) */
    assert_true(first_seq > 0);
    Loyalty__Event *again = h_sale(3, 1, "d0", t0, 0);
    for (int l = 0; l < 6; l++)
        h_line(again, "SKU-0000000000", "groceries", 1, 1000, 1000, 0);
    Loyalty__AckBatch *ra = h_send(&g_d, h_batch(1, &again), 10000);
    assert_non_null(ra);
    assert_int_equal(ra->n_acks, 1);
    assert_int_equal(ra->acks[0]->status, LOYALTY__STATUS__DUPLICATE);
    assert_int_equal(ra->acks[0]->seq, first_seq);
    loyalty__ack_batch__free_unpacked(ra, NULL);
    h_verify(&g_d, "after the disk filled");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_second_daemon_on_same_data_refused, teardown),
        cmocka_unit_test_teardown(test_map_full_refuses_serves_and_recovers, teardown),
        cmocka_unit_test_teardown(test_disk_full_refuses_then_recovers_without_restart, teardown),
    };
    return cmocka_run_group_tests_name("e2e_storage", tests, NULL, NULL);
}
