/* test_pipeline.c: end to end through the real daemon: tills -> ingest -> rating -> LMDB ledger
 * -> acks and published updates; duplicates (R29), rejections, restart and crash recovery,
 * replay and verify (R30). */
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
#include <zmq.h>

#include "harness.h"

static lt_daemon g_d;

static int setup(void **state)
{
    (void)state;
    h_start(&g_d, "heartbeat_ms: 100\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    return 0;
}

/* Worked example 1 of RULES.md as one sale. */
static Loyalty__Event *example1(uint64_t eid, const char *member)
{
    Loyalty__Event *e = h_sale(1, eid, member, h_now(), 0);
    h_line(e, "A", "groceries", 1, 12345, 12345, 0);
    h_line(e, "B", "tobacco", 1, 5000, 5000, 0);
    h_line(e, "C", "appliances", 1, 260000, 260000, 0);
    return e;
}

static Loyalty__AckBatch *send1(Loyalty__Event *e)
{
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    assert_int_equal(r->n_acks, 1);
    return r;
}

static void *subscribe_all(void)
{
    void *sub = zmq_socket(g_d.zctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(sub, g_d.publish), 0);
    /* a heartbeat proves the subscription has reached the publisher (slow joiner) */
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    for (;;) {
        assert_true(zmq_poll(&it, 1, 5000) > 0);
        char topic[64] = "";
        int n = zmq_recv(sub, topic, sizeof topic - 1, 0);
        assert_true(n > 0);
        topic[n] = '\0';
        char payload[4096];
        assert_true(zmq_recv(sub, payload, sizeof payload, 0) >= 0);
        if (strcmp(topic, "heartbeat") == 0)
            return sub;
    }
}

/* Receives the next non-heartbeat message; returns its payload length, topic in topic. */
static int next_update(void *sub, char *topic, size_t tlen, uint8_t *buf, size_t blen)
{
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    for (;;) {
        if (zmq_poll(&it, 1, 5000) <= 0)
            return -1;
        int n = zmq_recv(sub, topic, tlen - 1, 0);
        assert_true(n > 0);
        topic[n] = '\0';
        int m = zmq_recv(sub, buf, blen, 0);
        assert_true(m >= 0);
        if (strcmp(topic, "heartbeat") != 0)
            return m;
    }
}

static void test_sale_is_rated_acked_and_published(void **state)
{
    (void)state;
    void *sub = subscribe_all();
    Loyalty__AckBatch *r = send1(example1(1, "13800000001"));
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    assert_int_equal(r->acks[0]->seq, 1);
    assert_int_equal(r->acks[0]->points_earned, 175); /* RULES.md worked example 1 */
    assert_int_equal(r->acks[0]->balance, 175);
    loyalty__ack_batch__free_unpacked(r, NULL);
    assert_int_equal(h_balance(&g_d, "13800000001"), 175);

    bool got_update = false, got_sale = false, got_tier = false;
    for (int i = 0; i < 3; i++) {
        char topic[64];
        uint8_t buf[8192];
        int n = next_update(sub, topic, sizeof topic, buf, sizeof buf);
        assert_true(n >= 0);
        if (strcmp(topic, "member.updated") == 0) {
            Loyalty__MemberUpdate *u = loyalty__member_update__unpack(NULL, (size_t)n, buf);
            assert_non_null(u);
            assert_int_equal(u->seq, 1);
            assert_string_equal(u->member_id, "13800000001");
            assert_int_equal(u->balance, 175);
            assert_int_equal(u->delta, 175);
            /* 272,345 fen qualifying lifts a new member to silver at once (R22, R23) */
            assert_string_equal(u->tier, "silver");
            assert_int_equal(u->part, 1);
            assert_int_equal(u->parts, 3);
            loyalty__member_update__free_unpacked(u, NULL);
            got_update = true;
        } else if (strcmp(topic, "sale.rated") == 0) {
            /* sale.rated carries the sale's ledger entry: the full breakdown */
            Loyalty__SaleRated *sr = loyalty__sale_rated__unpack(NULL, (size_t)n, buf);
            assert_non_null(sr);
            assert_int_equal(sr->seq, 1);
            assert_int_equal(sr->part, 3); /* member.updated, tier.changed, sale.rated */
            assert_int_equal(sr->parts, 3);
            Loyalty__LedgerEntry *s = sr->entry;
            assert_non_null(s);
            assert_int_equal(s->seq, 1);
            assert_int_equal(s->points_earned, 175);
            assert_int_equal(s->paid_fen, 277345);
            assert_int_equal(s->n_lines, 3);
            assert_int_equal(s->lines[1]->points, 0); /* tobacco earns nothing (R9) */
            assert_int_equal(s->lines[0]->points + s->lines[2]->points, 175);
            loyalty__sale_rated__free_unpacked(sr, NULL);
            got_sale = true;
        } else if (strcmp(topic, "tier.changed") == 0) {
            Loyalty__TierChange *t = loyalty__tier_change__unpack(NULL, (size_t)n, buf);
            assert_non_null(t);
            assert_string_equal(t->from_tier, "basic");
            assert_string_equal(t->to_tier, "silver");
            assert_true(t->upgrade);
            assert_int_equal(t->part, 2);
            loyalty__tier_change__free_unpacked(t, NULL);
            got_tier = true;
        }
    }
    assert_true(got_update && got_sale && got_tier);
    zmq_close(sub);
}

static void test_R29_resend_is_duplicate_with_original_seq(void **state)
{
    (void)state;
    Loyalty__Event *ev[3] = {example1(1, "m1"), example1(2, "m2"), example1(3, "m1")};
    Loyalty__EventBatch *b = h_batch(3, ev);
    Loyalty__AckBatch *r = h_send(&g_d, b, 10000);
    assert_non_null(r);
    uint64_t seqs[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r->acks[i]->status, LOYALTY__STATUS__ACCEPTED);
        seqs[i] = r->acks[i]->seq;
    }
    assert_int_equal(seqs[0] + 1, seqs[1]);
    assert_int_equal(seqs[1] + 1, seqs[2]);
    loyalty__ack_batch__free_unpacked(r, NULL);
    int64_t before = h_balance(&g_d, "m1");
    assert_int_equal(before, 350);

    r = h_send(&g_d, b, 10000); /* the very same events again */
    assert_non_null(r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r->acks[i]->status, LOYALTY__STATUS__DUPLICATE);
        assert_int_equal(r->acks[i]->seq, seqs[i]);
    }
    loyalty__ack_batch__free_unpacked(r, NULL);
    assert_int_equal(h_balance(&g_d, "m1"), before);

    /* same id, different content: CONFLICT, and nothing applied */
    Loyalty__Event *other = h_sale(1, 2, "m2", h_now(), 0);
    h_line(other, "X", "groceries", 1, 100, 100, 0);
    r = send1(other);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__REJECTED);
    assert_int_equal(r->acks[0]->reason, LOYALTY__REASON__CONFLICT);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

typedef struct {
    const char *what;
    Loyalty__Event *e;
    Loyalty__Reason reason;
} bad_case;

static void test_invalid_events_rejected_with_reason(void **state)
{
    (void)state;
    int64_t now = h_now();
    bad_case cases[16];
    size_t n = 0;

    Loyalty__Event *e = h_sale(2, 1, "m", now, 0);
    h_line(e, "A", "groceries", 0, 100, 100, 0);
    cases[n++] = (bad_case){"quantity 0", e, LOYALTY__REASON__INVALID_QUANTITY};

    e = h_sale(2, 2, "m", now, 0);
    h_line(e, "A", "groceries", 1, 100, 200, 0);
    cases[n++] = (bad_case){"paid above list", e, LOYALTY__REASON__INVALID_PRICE};

    e = h_sale(2, 3, "m", now, 0);
    h_line(e, "A", "groceries", 1, -5, -5, 0);
    cases[n++] = (bad_case){"negative price", e, LOYALTY__REASON__INVALID_PRICE};

    e = h_sale(2, 4, "m", now, 0);
    for (int i = 0; i < 201; i++)
        h_line(e, "A", "groceries", 1, 100, 100, 0);
    cases[n++] = (bad_case){"201 lines", e, LOYALTY__REASON__TOO_MANY_LINES};

    e = h_sale(2, 5, "m", now + 30 * 86400, 0);
    h_line(e, "A", "groceries", 1, 100, 100, 0);
    cases[n++] = (bad_case){"a month ahead", e, LOYALTY__REASON__TIMESTAMP_OUT_OF_RANGE};

    e = h_sale(2, 6, "m", now, 0);
    h_line(e, "A", "groceries", 1, 100, 100, 0);
    e->has_utc_offset_min = 0;
    cases[n++] = (bad_case){"no offset", e, LOYALTY__REASON__MISSING_FIELD};

    e = h_sale(2, 7, "m", now, 0);
    cases[n++] = (bad_case){"no lines", e, LOYALTY__REASON__MISSING_FIELD};

    e = h_event(2, 8, "m", now);
    cases[n++] = (bad_case){"no body", e, LOYALTY__REASON__MISSING_FIELD};

    e = h_sale(2, 9, "m", now, 0);
    h_line(e, "A", "groceries", 1000000, 10000000000LL, 10000000000LL, 0);
    cases[n++] = (bad_case){"line total overflow", e, LOYALTY__REASON__AMOUNT_OVERFLOW};

    e = h_sale(2, 10, "m", now, 500);
    h_line(e, "A", "groceries", 1, 100000, 100000, 0);
    cases[n++] = (bad_case){"redeem without points", e, LOYALTY__REASON__INSUFFICIENT_POINTS};

    e = h_sale(2, 11, "m", now, 0);
    e->time_zone = "Mars/Olympus_Mons";
    e->has_utc_offset_min = 0;
    h_line(e, "A", "groceries", 1, 100, 100, 0);
    cases[n++] = (bad_case){"unknown zone", e, LOYALTY__REASON__UNKNOWN_TIME_ZONE};

    e = h_sale(2, 12, NULL, now, 0);
    h_line(e, "A", "groceries", 1, 100, 100, 0);
    cases[n++] = (bad_case){"no member", e, LOYALTY__REASON__MISSING_FIELD};

    e = h_sale(2, 13, "m", now, 0);
    h_line(e, "A", "groceries", 1, 100, 100, 4);
    cases[n++] = (bad_case){"unknown flag", e, LOYALTY__REASON__INVALID_FIELD};

    Loyalty__Event *all[16];
    for (size_t i = 0; i < n; i++)
        all[i] = cases[i].e;
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(n, all), 10000);
    assert_non_null(r);
    assert_int_equal(r->n_acks, n);
    for (size_t i = 0; i < n; i++) {
        if (r->acks[i]->status != LOYALTY__STATUS__REJECTED ||
            r->acks[i]->reason != cases[i].reason)
            fail_msg("%s: got status %d reason %d (%s), want REJECTED %d", cases[i].what,
                     r->acks[i]->status, r->acks[i]->reason,
                     r->acks[i]->message ? r->acks[i]->message : "", cases[i].reason);
        assert_non_null(r->acks[i]->message);
        assert_true(strlen(r->acks[i]->message) > 0);
    }
    loyalty__ack_batch__free_unpacked(r, NULL);
    /* nothing of it reached the ledger: the next good event is seq 1 */
    Loyalty__Event *good = h_sale(2, 100, "m", now, 0);
    h_line(good, "A", "groceries", 1, 100, 100, 0);
    r = send1(good);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    assert_int_equal(r->acks[0]->seq, 1);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

static void test_time_zone_name_is_resolved(void **state)
{
    (void)state;
    Loyalty__Event *e = h_sale(3, 1, "tz", h_now(), 0);
    e->has_utc_offset_min = 0;
    e->time_zone = "Asia/Shanghai";
    h_line(e, "A", "groceries", 1, 1000, 1000, 0);
    Loyalty__AckBatch *r = send1(e);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

static void test_undecodable_and_oversized_messages_refused(void **state)
{
    (void)state;
    const char junk[] = "\xff\xff\xff\xff this is not protobuf";
    Loyalty__AckBatch *r = h_send_raw(&g_d, junk, sizeof junk, 5000);
    assert_non_null(r);
    assert_true(r->has_reason);
    assert_int_equal(r->reason, LOYALTY__REASON__DECODE_ERROR);
    assert_int_equal(r->n_acks, 0);
    loyalty__ack_batch__free_unpacked(r, NULL);

    size_t big = (1 << 20) + 100;
    uint8_t *buf = calloc(1, big);
    r = h_send_raw(&g_d, buf, big, 5000);
    free(buf);
    assert_non_null(r);
    assert_int_equal(r->reason, LOYALTY__REASON__MESSAGE_TOO_LARGE);
    loyalty__ack_batch__free_unpacked(r, NULL);

    Loyalty__Event *many[1001];
    for (int i = 0; i < 1001; i++) {
        many[i] = h_sale(4, (uint64_t)i + 1, "x", h_now(), 0);
        h_line(many[i], "A", "groceries", 1, 100, 100, 0);
    }
    r = h_send(&g_d, h_batch(1001, many), 5000);
    assert_non_null(r);
    assert_int_equal(r->reason, LOYALTY__REASON__BATCH_TOO_LARGE);
    loyalty__ack_batch__free_unpacked(r, NULL);

    /* the daemon is still serving */
    r = send1(example1(5, "still-alive"));
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

static void test_R15_redemption_through_daemon(void **state)
{
    (void)state;
    Loyalty__AckBatch *r = send1(example1(1, "red")); /* 175 points */
    loyalty__ack_batch__free_unpacked(r, NULL);
    /* worked example 4: paid 50,000 with 100 points -> 400 earned, balance 175 - 100 + 400 */
    Loyalty__Event *e = h_sale(1, 2, "red", h_now(), 100);
    h_line(e, "D", "groceries", 1, 50000, 50000, 0);
    r = send1(e);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    assert_int_equal(r->acks[0]->points_earned, 400);
    assert_int_equal(r->acks[0]->points_redeemed, 100);
    assert_int_equal(r->acks[0]->balance, 475);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

static void send_nowait(Loyalty__EventBatch *eb, uint64_t batch_id)
{
    eb->has_batch_id = 1;
    eb->batch_id = batch_id;
    size_t n = loyalty__event_batch__get_packed_size(eb);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    loyalty__event_batch__pack(eb, buf);
    assert_true(zmq_send(g_d.dealer, buf, n, 0) >= 0);
    free(buf);
}

static Loyalty__AckBatch *recv_acks(uint64_t batch_id)
{
    zmq_pollitem_t it = {g_d.dealer, 0, ZMQ_POLLIN, 0};
    assert_true(zmq_poll(&it, 1, 10000) > 0);
    static uint8_t buf[65536];
    int n = zmq_recv(g_d.dealer, buf, sizeof buf, 0);
    assert_true(n > 0);
    Loyalty__AckBatch *r = loyalty__ack_batch__unpack(NULL, (size_t)n, buf);
    assert_non_null(r);
    assert_int_equal(r->batch_id, batch_id);
    return r;
}

/* Sends `messages` messages of `per` sales (two units of 15.00 groceries each) from till node,
 * event ids 1, 2, ..., to members "<prefix>0" .. "<prefix><members - 1>" in turn, batch ids
 * batch0, batch0 + 1, ..., without waiting for acks (pipelined). */
static void send_sales(uint64_t node, int messages, int per, const char *prefix, int members,
                       uint64_t batch0)
{
    Loyalty__Event *ev[100];
    assert_true(per >= 1 && per <= 100);
    for (int m = 0; m < messages; m++) {
        for (int i = 0; i < per; i++) {
            char member[32];
            snprintf(member, sizeof member, "%s%d", prefix, (m * per + i) % members);
            ev[i] = h_sale(node, (uint64_t)(m * per + i + 1), member, h_now(), 0);
            h_line(ev[i], "A", "groceries", 2, 1550, 1500, 0);
        }
        send_nowait(h_batch((size_t)per, ev), batch0 + (uint64_t)m);
        h_free_events();
    }
}

/* Reads the acks of send_sales(): in request order, `per` each, every event ACCEPTED (earning
 * `earned` points, unless earned < 0) with sequences 1, 2, ... gap-free. */
static void expect_accepted(int messages, int per, uint64_t batch0, int64_t earned)
{
    uint64_t expect = 1;
    for (int m = 0; m < messages; m++) {
        Loyalty__AckBatch *r = recv_acks(batch0 + (uint64_t)m); /* replies in request order */
        assert_int_equal(r->n_acks, per);
        for (size_t i = 0; i < r->n_acks; i++) {
            assert_int_equal(r->acks[i]->status, LOYALTY__STATUS__ACCEPTED);
            if (earned >= 0)
                assert_int_equal(r->acks[i]->points_earned, earned);
            assert_int_equal(r->acks[i]->seq, expect++);
        }
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    assert_int_equal(expect, (uint64_t)messages * (uint64_t)per + 1);
}

static void test_pipelined_batches_get_gap_free_sequences(void **state)
{
    (void)state;
    enum { BATCHES = 30, PER = 100 };
    send_sales(7, BATCHES, PER, "p", 97, 1000);
    expect_accepted(BATCHES, PER, 1000, 30);
}

/* Two rejection messages are the same but for the daemon's clock in a "(now T)" part: the
 * event sent alone is judged later, and under valgrind that can be the next second. */
static void assert_same_but_now(const char *a, const char *b)
{
    const char *na = strstr(a, " (now "), *nb = strstr(b, " (now ");
    size_t la = na != NULL ? (size_t)(na - a) : strlen(a);
    size_t lb = nb != NULL ? (size_t)(nb - b) : strlen(b);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    assert_true((na == NULL) == (nb == NULL));
}

/* A message sent right behind another is read ahead and decoded by the daemon's decode thread
 * while the first is handled (daemon.c, decode_ahead()): its valid events, rejections (with
 * their messages), a late event and a resend of an event of the first message (still waiting
 * for its commit: R29) are answered exactly as in a message of their own. */
static void test_events_decoded_ahead_answered_as_alone(void **state)
{
    (void)state;
    int64_t now = h_now();
    Loyalty__Event *first[10];
    for (int i = 0; i < 10; i++) {
        first[i] = h_sale(12, (uint64_t)i + 1, "ahead", now, 0);
        h_line(first[i], "A", "groceries", 2, 1550, 1500, 0);
    }
    send_nowait(h_batch(10, first), 1);
    Loyalty__Event *second[12];
    for (int i = 0; i < 12; i++) {
        second[i] = h_sale(12, (uint64_t)i + 11, "ahead", now, 0);
        h_line(second[i], "A", "groceries", 2, 1550, 1500, 0);
    }
    second[2] = h_sale(12, 13, "ahead", now, 0);
    h_line(second[2], "A", "groceries", 0, 100, 100, 0); /* quantity 0 */
    second[5] = h_sale(12, 16, "ahead", now + 30 * 86400, 0);
    h_line(second[5], "A", "groceries", 1, 100, 100, 0); /* a month ahead */
    second[7] = h_sale(12, 3, "ahead", now, 0);
    h_line(second[7], "A", "groceries", 2, 1550, 1500, 0); /* a resend of event 3 */
    second[9] = h_sale(12, 20, "ahead", now, 0);
    h_line(second[9], "A", "groceries", 1, 100, 200, 0); /* paid above list */
    send_nowait(h_batch(12, second), 2);

    Loyalty__AckBatch *r1 = recv_acks(1);
    assert_int_equal(r1->n_acks, 10);
    for (size_t i = 0; i < 10; i++) {
        assert_int_equal(r1->acks[i]->status, LOYALTY__STATUS__ACCEPTED);
        assert_int_equal(r1->acks[i]->seq, i + 1);
    }
    Loyalty__AckBatch *r2 = recv_acks(2);
    assert_int_equal(r2->n_acks, 12);
    uint64_t seq = 11;
    for (size_t i = 0; i < 12; i++) {
        const Loyalty__Ack *a = r2->acks[i];
        if (i == 2 || i == 5 || i == 9) {
            int want = i == 2   ? LOYALTY__REASON__INVALID_QUANTITY
                       : i == 5 ? LOYALTY__REASON__TIMESTAMP_OUT_OF_RANGE
                                : LOYALTY__REASON__INVALID_PRICE;
            assert_int_equal(a->status, LOYALTY__STATUS__REJECTED);
            assert_int_equal(a->reason, want);
            /* the same answer as the event alone, message included */
            second[i]->id->event_id += 1000;
            Loyalty__AckBatch *alone = h_send(&g_d, h_batch(1, &second[i]), 10000);
            assert_non_null(alone);
            assert_int_equal(alone->acks[0]->reason, want);
            assert_non_null(a->message);
            assert_same_but_now(a->message, alone->acks[0]->message);
            loyalty__ack_batch__free_unpacked(alone, NULL);
        } else if (i == 7) {
            assert_int_equal(a->status, LOYALTY__STATUS__DUPLICATE);
            assert_int_equal(a->seq, r1->acks[2]->seq);
        } else {
            assert_int_equal(a->status, LOYALTY__STATUS__ACCEPTED);
            assert_int_equal(a->seq, seq++);
        }
    }
    assert_int_equal(seq, 11 + 8);
    loyalty__ack_batch__free_unpacked(r1, NULL);
    loyalty__ack_batch__free_unpacked(r2, NULL);
    h_verify(&g_d, "after messages decoded ahead");
}

/* One event per message, sent without waiting, into a pipeline of two one-event batches: the
 * daemon runs out of batches over and over, each time holding the message it read ahead of the
 * one it handled (daemon.c, on_ingest()), and must answer every one, in order, gap-free. */
static void test_read_ahead_message_answered_after_backpressure(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_start(&g_d, "heartbeat_ms: 100\nbatches_max: 2\nbatch_events_max: 1\n");
    enum { MESSAGES = 2000 };
    send_sales(9, MESSAGES, 1, "bp", 53, 1);
    expect_accepted(MESSAGES, 1, 1, -1);
    char body[65536];
    assert_int_equal(h_http_get(&g_d, "/metrics", body, sizeof body), 200);
    assert_true(h_metric(body, "loyaltyd_ingest_pauses_total") > 0); /* it did run out */
    assert_int_equal((int)h_metric(body, "loyaltyd_messages_total"), MESSAGES);
}

/* More messages waiting than one turn of the loop reads (256) while the decode thread has
 * started on neither message slot: the slot handled last in a turn, with no read-ahead, is read
 * into again at the next turn while the other slot still waits in the thread's queue before it.
 * That release once found its message behind the queue's head and aborted the daemon (batches_max
 * 8 in the bench). LOYALTYD_TEST_DECODE_HOLD keeps the thread from starting on anything. */
static void test_read_ahead_released_behind_queue_head(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    setenv("LOYALTYD_TEST_DECODE_HOLD", "1", 1);
    h_start(&g_d, "heartbeat_ms: 100\nbatches_max: 64\nbatch_events_max: 100000\n");
    unsetenv("LOYALTYD_TEST_DECODE_HOLD");
    enum { MESSAGES = 1500, PER = 10 }; /* decoded ahead: 8 events or more */
    send_sales(11, MESSAGES, PER, "rh", 89, 1);
    expect_accepted(MESSAGES, PER, 1, -1);
    char body[65536];
    assert_int_equal(h_http_get(&g_d, "/metrics", body, sizeof body), 200);
    assert_int_equal((int)h_metric(body, "loyaltyd_messages_total"), MESSAGES);
    h_verify(&g_d, "after messages taken back from the decode thread");
}

static void test_sigterm_restart_keeps_state(void **state)
{
    (void)state;
    Loyalty__Event *first = example1(1, "keep");
    Loyalty__AckBatch *r = send1(first);
    uint64_t seq = r->acks[0]->seq;
    loyalty__ack_batch__free_unpacked(r, NULL);
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    h_restart(&g_d);
    assert_int_equal(h_balance(&g_d, "keep"), 175);
    r = send1(first); /* the identical event, resent after the restart */
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__DUPLICATE);
    assert_int_equal(r->acks[0]->seq, seq);
    loyalty__ack_batch__free_unpacked(r, NULL);
    r = send1(example1(2, "keep"));
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    assert_int_equal(r->acks[0]->seq, seq + 1);
    assert_int_equal(r->acks[0]->balance, 350);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

static void test_sigkill_loses_nothing_acknowledged(void **state)
{
    (void)state;
    int64_t acked_balance = 0;
    for (uint64_t i = 1; i <= 60; i++) {
        if (i == 51)
            usleep(700 * 1000); /* let a checkpoint happen: recovery = checkpoint + tail */
        Loyalty__AckBatch *r = send1(example1(i, "crash"));
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        acked_balance = r->acks[0]->balance;
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    /* 175 + 175, then platinum and diamond earn x2 (R13, R23): 175 + 175 + 58 x 350 */
    assert_int_equal(acked_balance, 20650);
    assert_int_equal(h_stop(&g_d, SIGKILL), 128 + SIGKILL);
    h_restart(&g_d);
    assert_int_equal(h_balance(&g_d, "crash"), acked_balance);
    h_verify(&g_d, "after SIGKILL");
}

/* A member record over 64 KiB (thousands of lots) once made the checkpoint fail half-way,
 * writing newer member records under an old checkpoint_seq: recovery then counted entries
 * twice. */
static void test_checkpoint_of_member_with_thousands_of_lots(void **state)
{
    (void)state;
    enum { LOTS = 3000, SMALL = 40 };
    int64_t now = h_now();
    int64_t big = 0, small[SMALL];
    for (int b = 0; b < LOTS / 100; b++) {
        Loyalty__Event *ev[100];
        for (int i = 0; i < 100; i++) {
            /* distinct earning times: one lot each */
            ev[i] = h_sale(8, (uint64_t)(b * 100 + i + 1), "big", now - (b * 100 + i), 0);
            h_line(ev[i], "A", "groceries", 1, 100, 100, 0);
        }
        Loyalty__AckBatch *r = h_send(&g_d, h_batch(100, ev), 10000);
        assert_non_null(r);
        big = r->acks[99]->balance;
        loyalty__ack_batch__free_unpacked(r, NULL);
        h_free_events();
    }
    assert_int_equal(big, LOTS);
    for (int round = 0; round < 2; round++) {
        if (round == 1)
            usleep(800 * 1000); /* a checkpoint holds the big member and the small ones */
        for (int i = 0; i < SMALL; i++) {
            char m[16];
            snprintf(m, sizeof m, "s%d", i);
            Loyalty__AckBatch *r = send1(example1((uint64_t)(10000 + round * SMALL + i), m));
            small[i] = r->acks[0]->balance;
            loyalty__ack_batch__free_unpacked(r, NULL);
        }
    }
    assert_int_equal(h_stop(&g_d, SIGKILL), 128 + SIGKILL);
    h_restart(&g_d);
    assert_int_equal(h_balance(&g_d, "big"), big);
    for (int i = 0; i < SMALL; i++) {
        char m[16];
        snprintf(m, sizeof m, "s%d", i);
        assert_int_equal(h_balance(&g_d, m), small[i]);
    }
}

/* R29: an event applied long ago stays a DUPLICATE when resent after it has become older
 * than the age limit (it was once answered TIMESTAMP_OUT_OF_RANGE). */
static void test_R29_old_resend_after_age_limit_is_duplicate(void **state)
{
    (void)state;
    Loyalty__Event *e = h_sale(9, 1, "old", h_now() - 10 * 86400, 0);
    h_line(e, "A", "groceries", 1, 1000, 1000, 0);
    Loyalty__AckBatch *r = send1(e);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
    uint64_t seq = r->acks[0]->seq;
    loyalty__ack_batch__free_unpacked(r, NULL);
    assert_int_equal(h_stop(&g_d, SIGTERM), 0);
    FILE *f = fopen(g_d.config, "a");
    assert_non_null(f);
    fputs("past_age_days: 1\n", f);
    fclose(f);
    h_restart(&g_d);
    r = send1(e);
    assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__DUPLICATE);
    assert_int_equal(r->acks[0]->seq, seq);
    loyalty__ack_batch__free_unpacked(r, NULL);
    /* a new event that old is still refused */
    Loyalty__Event *n = h_sale(9, 2, "old", h_now() - 10 * 86400, 0);
    h_line(n, "A", "groceries", 1, 1000, 1000, 0);
    r = send1(n);
    assert_int_equal(r->acks[0]->reason, LOYALTY__REASON__TIMESTAMP_OUT_OF_RANGE);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

static void test_R30_replay_and_verify(void **state)
{
    (void)state;
    for (uint64_t i = 1; i <= 20; i++) {
        char member[16];
        snprintf(member, sizeof member, "v%llu", (unsigned long long)(i % 7));
        Loyalty__AckBatch *r = send1(example1(i, member));
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    char out[8192];
    int rc = h_ctl(&g_d, "verify", out, sizeof out);
    if (rc != 0)
        fail_msg("verify failed (%d): %s", rc, out);
    assert_non_null(strstr(out, "PASS"));
    rc = h_ctl(&g_d, "replay", out, sizeof out);
    if (rc != 0)
        fail_msg("replay failed (%d): %s", rc, out);
    rc = h_ctl(&g_d, "member show v1", out, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "v1"));
    rc = h_ctl(&g_d, "ledger dump --from 20", out, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"seq\":20"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sale_is_rated_acked_and_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_R29_resend_is_duplicate_with_original_seq, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_invalid_events_rejected_with_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_time_zone_name_is_resolved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_and_oversized_messages_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_R15_redemption_through_daemon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_batches_get_gap_free_sequences, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_events_decoded_ahead_answered_as_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_ahead_message_answered_after_backpressure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_read_ahead_released_behind_queue_head, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_restart_keeps_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_loses_nothing_acknowledged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_of_member_with_thousands_of_lots, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_R29_old_resend_after_age_limit_is_duplicate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_R30_replay_and_verify, setup, teardown),
    };
    return cmocka_run_group_tests_name("e2e_pipeline", tests, NULL, NULL);
}
