/* test_rejects.c: rejections are counted and kept in the dead-letter store with what was
 * received; loyaltyctl rejects lists them; the store stays within rejects_max. */
#include <setjmp.h>
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
static char g_out[1 << 16];

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    return 0;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Runs `loyaltyctl args` until its output has want lines (the dead letters are written with
 * the next commit, just after the answer to the till). */
static void ctl_until(const char *args, int want)
{
    for (int i = 0; i < 100; i++) {
        int rc = h_ctl(&g_d, args, g_out, sizeof g_out);
        assert_int_equal(rc, 0);
        if (count_lines(g_out) >= want)
            return;
        usleep(50 * 1000);
    }
    fail_msg("loyaltyctl %s: wanted %d lines, got:\n%s", args, want, g_out);
}

static void test_dead_letters_kept_and_listed(void **state)
{
    (void)state;
    h_start(&g_d, NULL);
    Loyalty__Event *ev[3];
    ev[0] = h_sale(5, 1, "dl", h_now(), 0);
    h_line(ev[0], "BAD", "groceries", 0, 100, 100, 0); /* INVALID_QUANTITY */
    ev[1] = h_sale(5, 2, "dl", h_now(), 0);
    h_line(ev[1], "OK", "groceries", 1, 100, 100, 0);
    ev[2] = h_sale(5, 3, "dl", h_now(), 999); /* INSUFFICIENT_POINTS */
    h_line(ev[2], "R", "groceries", 1, 100000, 100000, 0);
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(3, ev), 10000);
    assert_non_null(r);
    assert_int_equal(r->acks[1]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    const char junk[] = "not protobuf at all \xff\xff";
    r = h_send_raw(&g_d, junk, sizeof junk - 1, 10000);
    assert_non_null(r);
    assert_int_equal(r->reason, LOYALTY__REASON__DECODE_ERROR);
    loyalty__ack_batch__free_unpacked(r, NULL);

    ctl_until("--json rejects --raw", 3);
    assert_int_equal(count_lines(g_out), 3);
    const char *a = strstr(g_out, "\"reason\":\"INVALID_QUANTITY\"");
    const char *b = strstr(g_out, "\"reason\":\"INSUFFICIENT_POINTS\"");
    const char *c = strstr(g_out, "\"reason\":\"DECODE_ERROR\"");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c); /* oldest first */
    assert_non_null(strstr(g_out, "\"event\":\"5/1\""));
    assert_non_null(strstr(g_out, "\"event\":\"message\""));
    assert_non_null(strstr(g_out, "\"member\":\"dl\""));        /* the raw event decodes */
    assert_non_null(strstr(g_out, "6e6f742070726f746f627566")); /* "not protobuf" in hex */

    assert_int_equal(
        h_ctl(&g_d, "--json rejects --reason INSUFFICIENT_POINTS", g_out, sizeof g_out), 0);
    assert_int_equal(count_lines(g_out), 1);
    assert_non_null(strstr(g_out, "\"event\":\"5/3\""));
    assert_int_equal(h_ctl(&g_d, "--json rejects -n 1", g_out, sizeof g_out), 0);
    assert_int_equal(count_lines(g_out), 1);
    assert_non_null(strstr(g_out, "DECODE_ERROR"));
    assert_int_equal(h_ctl(&g_d, "rejects --reason NOPE", g_out, sizeof g_out), 2);
}

static void test_dead_letter_store_is_bounded(void **state)
{
    (void)state;
    h_start(&g_d, "rejects_max: 5\n");
    for (uint64_t i = 1; i <= 8; i++) {
        Loyalty__Event *e = h_sale(6, i, "b", h_now(), 0);
        h_line(e, "BAD", "groceries", 0, 100, 100, 0);
        Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
        assert_non_null(r);
        loyalty__ack_batch__free_unpacked(r, NULL);
        usleep(20 * 1000); /* separate commits */
    }
    Loyalty__Event *e = h_sale(6, 100, "b", h_now(), 0);
    h_line(e, "OK", "groceries", 1, 100, 100, 0);
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000); /* a commit after them all */
    loyalty__ack_batch__free_unpacked(r, NULL);
    ctl_until("--json rejects -n 100", 5);
    assert_int_equal(count_lines(g_out), 5);
    assert_null(strstr(g_out, "\"event\":\"6/3\"")); /* the oldest were trimmed */
    assert_non_null(strstr(g_out, "\"event\":\"6/8\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_dead_letters_kept_and_listed, teardown),
        cmocka_unit_test_teardown(test_dead_letter_store_is_bounded, teardown),
    };
    return cmocka_run_group_tests_name("e2e_rejects", tests, NULL, NULL);
}
