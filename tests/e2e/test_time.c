/* test_time.c: time-driven rules through the real daemon, driven by its injectable clock, never
 * by sleeping: calendar expiry (R19, R20, worked example 5), points.expiring once (R21),
 * member.birthday once (R28), and sweeps that neither repeat nor skip across a restart. */
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
#include <zmq.h>

#include "harness.h"

static lt_daemon g_d;

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    return 0;
}

/* UTC seconds of a store-local time at UTC+8. */
static int64_t cst(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm) - 8 * 3600;
}

static void set_clock(int64_t t)
{
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_SET_CLOCK;
    q.set_clock = t;
    Loyalty__QueryReply *r = h_query(&g_d, &q, 5000);
    assert_non_null(r);
    assert_true(r->ok);
    loyalty__query_reply__free_unpacked(r, NULL);
}

static uint64_t sweep(void)
{
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_SWEEP;
    q.sweep = 1;
    Loyalty__QueryReply *r = h_query(&g_d, &q, 10000);
    assert_non_null(r);
    assert_true(r->ok);
    uint64_t n = r->swept;
    loyalty__query_reply__free_unpacked(r, NULL);
    return n;
}

static Loyalty__AckBatch *sale_at(uint64_t eid, const char *member, int64_t at, int64_t fen)
{
    Loyalty__Event *e = h_sale(1, eid, member, at, 0);
    h_line(e, "A", "groceries", 1, fen, fen, 0);
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    return r;
}

static void *subscribe(void)
{
    void *sub = zmq_socket(g_d.zctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(sub, g_d.publish), 0);
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    char buf[4096];
    assert_true(zmq_poll(&it, 1, 5000) > 0); /* a heartbeat: the subscription is in place */
    assert_true(zmq_recv(sub, buf, sizeof buf, 0) >= 0);
    assert_true(zmq_recv(sub, buf, sizeof buf, 0) >= 0);
    return sub;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Counts messages with this topic arriving within ms (heartbeats keep coming: a deadline). */
static int count_topic(void *sub, const char *topic, int ms)
{
    int n = 0;
    int64_t end = now_ms() + ms;
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    while (now_ms() < end && zmq_poll(&it, 1, (long)(end - now_ms())) > 0) {
        char t[64] = "", buf[65536];
        int k = zmq_recv(sub, t, sizeof t - 1, 0);
        assert_true(k > 0);
        t[k] = '\0';
        assert_true(zmq_recv(sub, buf, sizeof buf, 0) >= 0);
        n += strcmp(t, topic) == 0;
    }
    return n;
}

static void test_R19_R20_calendar_expiry_worked_example_5(void **state)
{
    (void)state;
    h_start(&g_d, "test_clock: 1\nsweep_interval_ms: 3600000\nheartbeat_ms: 100\n");
    set_clock(cst(2026, 12, 30, 12, 0));
    void *sub = subscribe();
    Loyalty__AckBatch *r = sale_at(1, "x", cst(2026, 12, 30, 12, 0), 30000); /* 300 points */
    assert_int_equal(r->acks[0]->balance, 300);
    loyalty__ack_batch__free_unpacked(r, NULL);
    /* R21: the 300 expire tomorrow, within notice_days: a points.expiring notice is written as
     * soon as that is observed, right after the sale (R20), and a sweep finds nothing more */
    assert_int_equal(count_topic(sub, "points.expiring", 500), 1);
    assert_int_equal(sweep(), 0); /* once per member and expiry date */

    /* 2026-12-31 00:00 local: the 300 expire (worked example 5) */
    set_clock(cst(2026, 12, 31, 0, 1));
    assert_int_equal(sweep(), 1);
    assert_int_equal(h_balance(&g_d, "x"), 0);
    assert_int_equal(count_topic(sub, "points.expired", 1000), 1);
    assert_int_equal(sweep(), 0); /* exactly once */

    /* a sale on 31 December belongs to the next period: 50 points until 2027-12-31 */
    r = sale_at(2, "x", cst(2026, 12, 31, 10, 0), 5000);
    assert_int_equal(r->acks[0]->balance, 50);
    loyalty__ack_batch__free_unpacked(r, NULL);
    Loyalty__QueryReply *q = h_member(&g_d, "x");
    assert_non_null(q);
    assert_int_equal(q->member->n_lots, 1);
    assert_int_equal(q->member->lots[0]->expires_at, cst(2027, 12, 31, 0, 0));
    loyalty__query_reply__free_unpacked(q, NULL);

    /* R21: 30 days before 2027-12-31 a points.expiring notice, once, also across a restart */
    set_clock(cst(2027, 12, 2, 9, 0));
    /* also due by now: the end of the 2026 tier period (R24) and dormancy (R28) */
    assert_true(sweep() >= 2);
    assert_int_equal(count_topic(sub, "points.expiring", 1000), 1);
    zmq_close(sub);
    assert_int_equal(h_stop(&g_d, SIGKILL), 128 + SIGKILL); /* the clock is lost: set again */
    h_restart(&g_d);
    set_clock(cst(2027, 12, 3, 9, 0));
    assert_int_equal(sweep(), 0); /* the marker came back from the ledger */
    assert_int_equal(h_balance(&g_d, "x"), 50);
    h_verify(&g_d, "after the sweeps");
}

static void test_R20_expiry_is_written_before_the_event_that_sees_it(void **state)
{
    (void)state;
    h_start(&g_d, "test_clock: 1\nsweep_interval_ms: 3600000\n");
    set_clock(cst(2026, 12, 30, 12, 0));
    Loyalty__AckBatch *r = sale_at(1, "y", cst(2026, 12, 30, 12, 0), 30000);
    loyalty__ack_batch__free_unpacked(r, NULL);
    /* no sweep ran: the member's next event, on 31 December, observes the expiry first and
     * cannot redeem the expired points */
    set_clock(cst(2026, 12, 31, 10, 0));
    Loyalty__Event *e = h_sale(1, 2, "y", cst(2026, 12, 31, 10, 0), 100);
    h_line(e, "A", "groceries", 1, 20000, 20000, 0);
    r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__REJECTED);
    assert_int_equal(r->acks[0]->reason, LOYALTY__REASON__INSUFFICIENT_POINTS);
    loyalty__ack_batch__free_unpacked(r, NULL);
    assert_int_equal(h_balance(&g_d, "y"), 0);
    char out[16384];
    assert_int_equal(h_ctl(&g_d, "ledger dump", out, sizeof out), 0);
    assert_non_null(strstr(out, "\"kind\":\"expire\""));
}

static void test_R28_birthday_notice_once_a_year(void **state)
{
    (void)state;
    h_start(&g_d, "test_clock: 1\nsweep_interval_ms: 3600000\nheartbeat_ms: 100\n");
    set_clock(cst(2026, 11, 20, 12, 0));
    Loyalty__Event *e = h_event(1, 1, "bday", cst(2026, 11, 20, 12, 0));
    Loyalty__Enrol en = LOYALTY__ENROL__INIT;
    en.has_birth_month = en.has_birth_day = 1;
    en.birth_month = 11;
    en.birth_day = 25;
    e->body_case = LOYALTY__EVENT__BODY_ENROL;
    e->enrol = &en;
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
    void *sub = subscribe();
    set_clock(cst(2026, 11, 25, 9, 0));
    assert_true(sweep() >= 1);
    assert_int_equal(count_topic(sub, "member.birthday", 1000), 1);
    set_clock(cst(2026, 11, 25, 18, 0));
    assert_int_equal(sweep(), 0); /* once a year */
    zmq_close(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_R19_R20_calendar_expiry_worked_example_5, teardown),
        cmocka_unit_test_teardown(test_R20_expiry_is_written_before_the_event_that_sees_it,
                                  teardown),
        cmocka_unit_test_teardown(test_R28_birthday_notice_once_a_year, teardown),
    };
    return cmocka_run_group_tests_name("e2e_time", tests, NULL, NULL);
}
