/* test_ingest_ack.c: ingest_ack_batch_encode() writes exactly the bytes protobuf-c packs for
 * the AckBatch the daemon used to build (acceptances, duplicates, rejections with and without
 * a message, whole-message refusals, extreme values, 1,000 random acks), and refuses a buffer
 * that is too small. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest.h"
#include "test_rng.h"

#define BUF_BYTES (LT_BATCH_EVENTS_MAX * 512 + 4096)

/* Everything one protobuf-c AckBatch needs, as the daemon filled it before the direct writer. */
typedef struct {
    Loyalty__AckBatch ab;
    Loyalty__Ack ack_pb[LT_BATCH_EVENTS_MAX];
    Loyalty__Ack *ack_ptrs[LT_BATCH_EVENTS_MAX];
    Loyalty__EventId ids[LT_BATCH_EVENTS_MAX];
    uint8_t want[BUF_BYTES], got[BUF_BYTES];
} fx;

/* The reference: the protobuf-c message the daemon used to build for the same acks. */
static size_t pack_reference(fx *f, bool has_batch_id, uint64_t batch_id, const ingest_ack *acks,
                             size_t n, int reason, const char *message)
{
    loyalty__ack_batch__init(&f->ab);
    f->ab.has_batch_id = has_batch_id;
    f->ab.batch_id = batch_id;
    if (reason != LT_R_NONE) {
        f->ab.has_reason = 1;
        f->ab.reason = (Loyalty__Reason)reason;
        f->ab.message = (char *)message;
    }
    for (size_t i = 0; i < n; i++) {
        const ingest_ack *a = &acks[i];
        Loyalty__Ack *p = &f->ack_pb[i];
        Loyalty__EventId *id = &f->ids[i];
        loyalty__ack__init(p);
        loyalty__event_id__init(id);
        id->has_node_id = id->has_event_id = 1;
        id->node_id = a->node_id;
        id->event_id = a->event_id;
        p->id = id;
        p->has_status = 1;
        p->status = (Loyalty__Status)a->status;
        if (a->status == LOYALTY__STATUS__REJECTED) {
            p->has_reason = 1;
            p->reason = (Loyalty__Reason)a->reason;
            p->message = (char *)a->message;
        } else {
            p->has_seq = 1;
            p->seq = a->seq;
        }
        if (a->status == LOYALTY__STATUS__ACCEPTED) {
            p->has_points_earned = p->has_points_redeemed = p->has_balance = 1;
            p->points_earned = a->points_earned;
            p->points_redeemed = a->points_redeemed;
            p->balance = a->balance;
        }
        f->ack_ptrs[i] = p;
    }
    f->ab.n_acks = n;
    f->ab.acks = f->ack_ptrs;
    size_t len = loyalty__ack_batch__get_packed_size(&f->ab);
    assert_true(len <= sizeof f->want);
    assert_int_equal(loyalty__ack_batch__pack(&f->ab, f->want), len);
    return len;
}

static void check_same(bool has_batch_id, uint64_t batch_id, const ingest_ack *acks, size_t n,
                       int reason, const char *message)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    size_t want = pack_reference(f, has_batch_id, batch_id, acks, n, reason, message);
    size_t got = SIZE_MAX;
    assert_int_equal(ingest_ack_batch_encode(has_batch_id, batch_id, acks, n, reason, message,
                                             f->got, sizeof f->got, &got),
                     0);
    assert_int_equal(got, want);
    assert_memory_equal(f->got, f->want, want);
    /* and it decodes to what was meant */
    Loyalty__AckBatch *back = loyalty__ack_batch__unpack(NULL, got, f->got);
    assert_non_null(back);
    assert_int_equal(back->n_acks, n);
    loyalty__ack_batch__free_unpacked(back, NULL);
    free(f);
}

static ingest_ack accepted(uint64_t node, uint64_t eid, uint64_t seq, int64_t earned,
                           int64_t redeemed, int64_t balance)
{
    ingest_ack a = {0};
    a.node_id = node, a.event_id = eid, a.seq = seq;
    a.status = LOYALTY__STATUS__ACCEPTED;
    a.points_earned = earned, a.points_redeemed = redeemed, a.balance = balance;
    return a;
}

static ingest_ack rejected(uint64_t node, uint64_t eid, int reason, const char *message)
{
    ingest_ack a = {0};
    a.node_id = node, a.event_id = eid;
    a.status = LOYALTY__STATUS__REJECTED;
    a.reason = (uint32_t)reason;
    a.message = message;
    a.seq = 99; /* ignored for a rejection */
    return a;
}

static void test_empty(void **state)
{
    (void)state;
    check_same(false, 0, NULL, 0, LT_R_NONE, NULL);
    check_same(true, 0, NULL, 0, LT_R_NONE, NULL);
    check_same(true, 12345, NULL, 0, LT_R_NONE, "ignored without a reason");
}

static void test_typical_batch(void **state)
{
    (void)state;
    ingest_ack acks[] = {
        accepted(1, 1, 1, 175, 0, 175),
        accepted(1, 2, 2, 0, 0, 0), /* zeros are still written: has_ is set */
        accepted(1, 3, 3, 10, 500, -320),
        {.node_id = 1, .event_id = 4, .status = LOYALTY__STATUS__DUPLICATE, .seq = 2},
        rejected(1, 5, LT_R_INSUFFICIENT_POINTS, "not enough points"),
        rejected(1, 6, LT_R_INVALID_QUANTITY, "line 2: quantity 0 is not in 1..1000000"),
        rejected(1, 7, LT_R_CONFLICT, NULL),
        rejected(1, 8, LT_R_MISSING_FIELD, ""), /* present but empty: written */
    };
    check_same(true, 77, acks, LT_ARRAY_LEN(acks), LT_R_NONE, NULL);
    check_same(false, 0, acks, LT_ARRAY_LEN(acks), LT_R_NONE, NULL);
}

static void test_extremes(void **state)
{
    (void)state;
    char long_msg[200];
    memset(long_msg, 'x', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = '\0';
    ingest_ack acks[] = {
        accepted(UINT64_MAX, UINT64_MAX, UINT64_MAX, INT64_MAX, INT64_MAX, INT64_MIN),
        accepted(0, 0, 0, -1, -1, -1),
        {.status = 0, .seq = 5}, /* no status set (an event the daemon left unanswered) */
        {.node_id = 3, .event_id = 4, .status = 2, .seq = 1ull << 63},
        rejected(0, 0, LT_R_UNKNOWN_CATEGORY, long_msg), /* an ack over 127 bytes */
        rejected(9, 9, LT_R__COUNT + 100, "a reason the encoder does not know"),
    };
    check_same(true, UINT64_MAX, acks, LT_ARRAY_LEN(acks), LT_R_NONE, NULL);
}

static void test_refusals(void **state)
{
    (void)state;
    check_same(false, 0, NULL, 0, LT_R_DECODE_ERROR, "message is not a valid loyalty.EventBatch");
    check_same(true, 5, NULL, 0, LT_R_BATCH_TOO_LARGE, "1001 events in one message, at most 1000");
    check_same(true, 5, NULL, 0, LT_R_SHUTTING_DOWN, NULL);
    check_same(true, 5, NULL, 0, LT_R_STORAGE_UNAVAILABLE, "");
}

static void test_random_full_batches(void **state)
{
    (void)state;
    static ingest_ack acks[LT_BATCH_EVENTS_MAX];
    static char msgs[LT_BATCH_EVENTS_MAX][200];
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 20; round++) {
        size_t n = round == 0 ? LT_BATCH_EVENTS_MAX : 1 + test_rng_next(&s) % LT_BATCH_EVENTS_MAX;
        for (size_t i = 0; i < n; i++) {
            uint64_t k = test_rng_next(&s);
            /* values of every varint length */
            uint64_t big = test_rng_next(&s) >> (test_rng_next(&s) % 64);
            if (k % 4 == 0) {
                size_t len = test_rng_next(&s) % sizeof msgs[i];
                memset(msgs[i], 'a' + (int)(i % 26), len);
                msgs[i][len] = '\0';
                acks[i] = rejected(k % 7, big, 1 + (int)(test_rng_next(&s) % (LT_R__COUNT - 1)),
                                   k % 16 == 0 ? NULL : msgs[i]);
            } else if (k % 4 == 1) {
                acks[i] = (ingest_ack){.node_id = k % 5,
                                       .event_id = big,
                                       .status = LOYALTY__STATUS__DUPLICATE,
                                       .seq = test_rng_next(&s) >> 20};
            } else {
                acks[i] = accepted(k % 3 + 1, big, test_rng_next(&s) >> 30,
                                   (int64_t)(test_rng_next(&s) >> 40),
                                   (int64_t)(test_rng_next(&s) >> 50), (int64_t)test_rng_next(&s));
            }
        }
        check_same(round % 2 == 0, test_rng_next(&s), acks, n, LT_R_NONE, NULL);
    }
}

static void test_too_small(void **state)
{
    (void)state;
    ingest_ack acks[] = {
        accepted(1, 1, 1, 175, 0, 175),
        rejected(1, 5, LT_R_INSUFFICIENT_POINTS, "not enough points"),
    };
    uint8_t buf[BUF_BYTES];
    size_t full = 0, len = 0;
    assert_int_equal(
        ingest_ack_batch_encode(true, 1, acks, 2, LT_R_NONE, NULL, buf, sizeof buf, &full), 0);
    for (size_t cap = 0; cap < full; cap++)
        assert_int_equal(ingest_ack_batch_encode(true, 1, acks, 2, LT_R_NONE, NULL, buf, cap, &len),
                         -1);
    assert_int_equal(ingest_ack_batch_encode(true, 1, acks, 2, LT_R_NONE, NULL, buf, full, &len),
                     0);
    assert_int_equal(len, full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_typical_batch),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_random_full_batches),
        cmocka_unit_test(test_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
