/* test_state_record.c: member records, version 4 (variable-length integers, lots as
 * differences) against the fixed-width version 3 the state hash is defined over: every field
 * survives at its extremes, records are smaller, and malformed records are refused (R30: a
 * checkpoint must load back to the same state). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "state.h"
#include "test_rng.h"

#define REC_MAX 8192
#define LOTS_MAX 64

static uint64_t rng = TEST_RNG_SEED;

static uint64_t next(void)
{
    return test_rng_next(&rng);
}

/* A value of one of the shapes that matter to a varint: 0, small of either sign, a timestamp,
 * or an extreme. */
static int64_t any_i64(void)
{
    switch (next() % 6) {
    case 0:
        return 0;
    case 1:
        return (int64_t)(next() % 200) - 100;
    case 2:
        return 1700000000 + (int64_t)(next() % 100000000);
    case 3:
        return INT64_MAX - (int64_t)(next() % 3);
    case 4:
        return INT64_MIN + (int64_t)(next() % 3);
    default:
        return (int64_t)next();
    }
}

static int64_t any_nonneg(void)
{
    int64_t v = any_i64();
    return v < 0 ? (v == INT64_MIN ? 0 : -v) : v;
}

static int cmp_lot(const void *a, const void *b)
{
    const lt_lot *x = a, *y = b;
    uint64_t ex = x->expires_at ? (uint64_t)x->expires_at ^ (1ull << 63) : UINT64_MAX;
    uint64_t ey = y->expires_at ? (uint64_t)y->expires_at ^ (1ull << 63) : UINT64_MAX;
    if (ex != ey)
        return ex < ey ? -1 : 1;
    return x->earned_at < y->earned_at ? -1 : x->earned_at > y->earned_at;
}

/* A member with every field drawn at random within what the state accepts, and its lots in
 * FIFO order (expiry, never last, then earned). */
static void any_member(lt_member *m, lt_lot *lots, int i)
{
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "M%d", i);
    if (next() % 2)
        snprintf(m->tier, sizeof m->tier, "tier%d", (int)(next() % 9));
    if (next() % 3 == 0)
        memset(m->referrer, 'r', 1 + next() % (LT_ID_MAX - 2));
    m->birth_month = (uint8_t)(next() % 13);
    m->birth_day = (uint8_t)(next() % 32);
    m->staff = (uint8_t)(next() % 2);
    m->status = (uint8_t)(next() % 3);
    m->sales = (uint32_t)next();
    m->enrolled_at = any_i64();
    m->debt = any_nonneg();
    m->qualifying = any_i64();
    m->lifetime_fen = any_i64();
    m->last_purchase_at = any_i64();
    m->period_start_day = (int32_t)any_i64();
    m->birthday_notified_year = (int32_t)any_i64();
    m->expiring_notified_until = any_i64();
    m->dormant_notified_at = any_i64();
    m->offset_known = (uint8_t)(next() % 2);
    m->utc_offset_min = (int16_t)((int)(next() % 1681) - 840);
    m->lots_n = (uint32_t)(next() % 4 == 0 ? next() % LOTS_MAX : next() % 3);
    int64_t month_end = 1800000000;
    for (uint32_t k = 0; k < m->lots_n; k++) {
        lt_lot *l = &lots[k];
        l->points =
            next() % 8 == 0 ? INT64_MAX - (int64_t)(next() % 5) : 1 + (int64_t)(next() % 5000);
        l->earned_at = next() % 10 == 0 ? any_i64() : 1767225600 + (int64_t)(next() % 31536000);
        switch (next() % 4) {
        case 0:
            l->expires_at = 0; /* never (R19) */
            break;
        case 1:
            l->expires_at = any_i64();
            if (l->expires_at == 0)
                l->expires_at = 1;
            break;
        default:
            l->expires_at = month_end + (int64_t)(next() % 3) * 2678400; /* shared month ends */
        }
    }
    qsort(lots, m->lots_n, sizeof *lots, cmp_lot);
    m->lots = lots;
    m->lots_cap = m->lots_n;
}

/* m's version 3 record (every field, fixed width): two members are equal iff these are. */
static size_t v3(const lt_member *m, uint8_t *buf)
{
    size_t n = state_member_encode_v3(m, buf, REC_MAX);
    assert_true(n > 0);
    return n;
}

static void assert_round_trip(const lt_member *m)
{
    static uint8_t rec[REC_MAX], want[REC_MAX], got[REC_MAX];
    size_t len = state_member_encode(m, rec, sizeof rec);
    assert_true(len > 0);
    assert_int_equal(rec[0], 4);
    assert_int_equal(state_member_encode(m, rec, len - 1), 0); /* exact size */
    state *s;
    assert_int_equal(state_new(&s), 0);
    assert_int_equal(state_load_member(s, rec, len), 0);
    const lt_member *back = state_member(s, m->id);
    assert_non_null(back);
    size_t a = v3(m, want), b = v3(back, got);
    assert_int_equal(a, b);
    assert_memory_equal(want, got, a);
    state_destroy(&s);
}

/* R30: 20,000 members with fields at every extreme come back field for field. */
static void test_state_record_v4_round_trip_random(void **st)
{
    (void)st;
    static lt_lot lots[LOTS_MAX];
    lt_member m;
    for (int i = 0; i < 20000; i++) {
        any_member(&m, lots, i);
        assert_round_trip(&m);
    }
}

/* The shapes a varint gets wrong first: 0, every 7-bit boundary, both signs, the extremes. */
static void test_state_record_v4_boundaries(void **st)
{
    (void)st;
    static const int64_t vals[] = {0,
                                   1,
                                   -1,
                                   63,
                                   64,
                                   -64,
                                   -65,
                                   127,
                                   128,
                                   8191,
                                   8192,
                                   -8193,
                                   INT32_MAX,
                                   INT32_MIN,
                                   INT64_MAX,
                                   INT64_MIN,
                                   INT64_MAX - 1,
                                   INT64_MIN + 1};
    lt_lot lots[3];
    lt_member m;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        memset(&m, 0, sizeof m);
        strcpy(m.id, "B");
        m.enrolled_at = m.qualifying = m.lifetime_fen = m.last_purchase_at = vals[i];
        m.expiring_notified_until = m.dormant_notified_at = vals[i];
        m.period_start_day = m.birthday_notified_year = (int32_t)vals[i];
        m.debt = vals[i] < 0 ? 0 : vals[i];
        m.sales = (uint32_t)vals[i];
        /* expiries from the extreme up, and one that never expires, earned at the extreme */
        int64_t e = vals[i] == 0 ? 1 : vals[i];
        lots[0] = (lt_lot){1, vals[i], e};
        lots[1] = (lt_lot){INT64_MAX, vals[i] == INT64_MIN ? INT64_MAX : INT64_MIN, e};
        lots[2] = (lt_lot){7, vals[i], 0};
        if (cmp_lot(&lots[0], &lots[1]) > 0) {
            lt_lot t = lots[0];
            lots[0] = lots[1];
            lots[1] = t;
        }
        m.lots = lots;
        m.lots_n = m.lots_cap = 3;
        assert_round_trip(&m);
    }
}

/* What the version exists for: a member with 20 lots over three month ends takes under a third
 * of the bytes, and a member with no lots about half. */
static void test_state_record_v4_is_smaller(void **st)
{
    (void)st;
    lt_lot lots[20];
    lt_member m;
    memset(&m, 0, sizeof m);
    strcpy(m.id, "M00012345");
    strcpy(m.tier, "silver");
    m.sales = 40;
    m.enrolled_at = 1767225600;
    m.qualifying = 123400;
    m.lifetime_fen = 5678900;
    m.last_purchase_at = 1769000000;
    m.period_start_day = 20454;
    m.offset_known = 1;
    m.utc_offset_min = 480;
    uint8_t a[REC_MAX], b[REC_MAX];
    size_t n3 = state_member_encode_v3(&m, a, sizeof a), n4 = state_member_encode(&m, b, sizeof b);
    assert_true(n4 * 2 <= n3 + 8);
    for (int k = 0; k < 20; k++)
        lots[k] = (lt_lot){10 + k * 37, 1767225600 + k * 86400 + (k % 7) * 3600,
                           1830297600 + (k / 7) * 2678400};
    m.lots = lots;
    m.lots_n = m.lots_cap = 20;
    n3 = state_member_encode_v3(&m, a, sizeof a);
    n4 = state_member_encode(&m, b, sizeof b);
    assert_true(n4 * 3 < n3);
    assert_round_trip(&m);
}

static int load(const uint8_t *rec, size_t len)
{
    state *s;
    assert_int_equal(state_new(&s), 0);
    int rc = state_load_member(s, rec, len);
    state_destroy(&s);
    return rc;
}

/* Malformed version 4 records are refused, never half-read: every truncation, a byte too many,
 * an 11-byte varint, a lot count beyond the bytes, a lot of 0 points, lots out of order, an
 * expiry that decodes to 0 (which would read back as "never"). */
static void test_state_record_v4_malformed(void **st)
{
    (void)st;
    lt_lot lots[3] = {{5, 1767225600, 1830297600}, {6, 1767225700, 1830297600}, {7, 1767225800, 0}};
    lt_member m;
    memset(&m, 0, sizeof m);
    strcpy(m.id, "X1");
    m.lots = lots;
    m.lots_n = m.lots_cap = 3;
    uint8_t rec[256], bad[512];
    size_t len = state_member_encode(&m, rec, sizeof rec);
    assert_int_equal(load(rec, len), 0);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(load(rec, cut), -1);
    memcpy(bad, rec, len);
    bad[len] = 0;
    assert_int_equal(load(bad, len + 1), -1);

    /* the fixed part: version, 3 strings ("X1", "", ""), 5 bytes, then sales (0: one byte) */
    size_t sales_at = 1 + 3 + 1 + 1 + 5;
    assert_int_equal(rec[sales_at], 0);
    memcpy(bad, rec, sales_at);
    memset(bad + sales_at, 0x80, 10); /* sales as 11 bytes: continues past 64 bits */
    bad[sales_at + 10] = 0;
    memcpy(bad + sales_at + 11, rec + sales_at + 1, len - sales_at - 1);
    assert_int_equal(load(bad, len + 10), -1);
    memset(bad + sales_at, 0x80, 9); /* 10 bytes whose last carries more than bit 63 */
    bad[sales_at + 9] = 0x02;
    memcpy(bad + sales_at + 10, rec + sales_at + 1, len - sales_at - 1);
    assert_int_equal(load(bad, len + 9), -1);
    bad[sales_at + 9] = 0x00; /* the same length, in range: a (long) encoding of 0 */
    assert_int_equal(load(bad, len + 9), 0);

    /* the same member without lots: its last byte is lots_n, where the lots begin above */
    m.lots_n = 0;
    uint8_t head[256];
    size_t lots_at = state_member_encode(&m, head, sizeof head) - 1;
    m.lots_n = 3;
    assert_int_equal(rec[lots_at], 3);
    assert_memory_equal(rec, head, lots_at);

    /* 1,000,000 lots claimed in a few bytes: refused before allocating */
    memcpy(bad, rec, lots_at);
    bad[lots_at] = 0xc0; /* 1,000,000 = 0xf4240 */
    bad[lots_at + 1] = 0x84;
    bad[lots_at + 2] = 0x3d;
    memcpy(bad + lots_at + 3, rec + lots_at + 1, len - lots_at - 1);
    assert_int_equal(load(bad, len + 2), -1);

    /* the first lot's points code: 5 << 1 = 10; 0 points (code 0 or 1) is refused */
    size_t lot0 = lots_at + 1;
    assert_int_equal(rec[lot0], 10);
    memcpy(bad, rec, len);
    bad[lot0] = 0;
    assert_int_equal(load(bad, len), -1);
    bad[lot0] = 1;
    assert_int_equal(load(bad, len), -1);

    /* out of order: the never-expiring lot first */
    lt_lot swapped[3] = {lots[2], lots[0], lots[1]};
    m.lots = swapped;
    size_t n = state_member_encode(&m, bad, sizeof bad);
    assert_int_equal(load(bad, n), -1);

    /* one lot: points code 10, expiry difference, earned difference. An expiry difference of 0
     * from 0 would make an expiring lot never expire: refused */
    memcpy(bad, head, lots_at);
    bad[lots_at] = 1;
    bad[lots_at + 1] = 10;
    bad[lots_at + 2] = 2; /* zigzag 1: expires at 1 */
    bad[lots_at + 3] = 0;
    assert_int_equal(load(bad, lots_at + 4), 0);
    bad[lots_at + 2] = 0;
    assert_int_equal(load(bad, lots_at + 4), -1);
    bad[lots_at + 1] = 11; /* the same lot, never expiring: no expiry difference */
    assert_int_equal(load(bad, lots_at + 3), 0);
    assert_int_equal(load(bad, lots_at + 4), -1); /* and a byte too many */
}

/* 200,000 records with bytes changed, cut or added: each is refused or loads to a member that
 * encodes and loads back the same (`make asan` runs it under ASan and UBSan: no read outside
 * the record, no leak, no overflow). */
static void test_state_record_v4_mutations(void **st)
{
    (void)st;
    static lt_lot lots[LOTS_MAX];
    static uint8_t rec[REC_MAX + 16], again[REC_MAX], a[REC_MAX], b[REC_MAX];
    lt_member m;
    int loaded = 0;
    for (int i = 0; i < 200000; i++) {
        any_member(&m, lots, i);
        size_t len = state_member_encode(&m, rec, REC_MAX);
        assert_true(len > 0);
        switch (next() % 4) {
        case 0:
            len = next() % len;
            break;
        case 1:
            rec[len++] = (uint8_t)next();
            break;
        default:
            for (int k = 0, n = 1 + (int)(next() % 3); k < n; k++)
                rec[1 + next() % (len - 1)] = (uint8_t)next();
        }
        state *s1;
        assert_int_equal(state_new(&s1), 0);
        if (state_load_member(s1, rec, len) == 0) {
            loaded++;
            assert_int_equal(state_members(s1), 1);
            const lt_member *got = state_member(s1, state_ckpt_member_id(s1, 0));
            assert_non_null(got);
            size_t n = state_member_encode(got, again, sizeof again);
            state *s2;
            assert_int_equal(state_new(&s2), 0);
            assert_int_equal(state_load_member(s2, again, n), 0);
            size_t x = v3(got, a), y = v3(state_member(s2, got->id), b);
            assert_int_equal(x, y);
            assert_memory_equal(a, b, x);
            state_destroy(&s2);
        }
        state_destroy(&s1);
    }
    assert_true(loaded > 1000); /* the mutations reach past the checks, too */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_record_v4_round_trip_random),
        cmocka_unit_test(test_state_record_v4_boundaries),
        cmocka_unit_test(test_state_record_v4_is_smaller),
        cmocka_unit_test(test_state_record_v4_malformed),
        cmocka_unit_test(test_state_record_v4_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
