/* test_daemon_ckpt_plan.c: the order of a checkpoint's members and how much of it the loop
 * thread encodes per sealed batch (ckpt_plan.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ckpt_plan.h"

/* An idle commit (no entries) takes the whole configured chunk: finish while nothing waits. */
static void idle_commit_takes_the_whole_chunk(void **st)
{
    (void)st;
    assert_int_equal(ckpt_chunk(4096, 0), 4096);
    assert_int_equal(ckpt_chunk(7, 0), 7);
}

/* A commit with entries takes twice its entries, at least CK_CHUNK_MIN, at most the chunk. */
static void busy_commit_takes_twice_its_entries(void **st)
{
    (void)st;
    assert_int_equal(ckpt_chunk(4096, 1), CK_CHUNK_MIN);
    assert_int_equal(ckpt_chunk(4096, 32), CK_CHUNK_MIN);
    assert_int_equal(ckpt_chunk(4096, 33), 66);
    assert_int_equal(ckpt_chunk(4096, 100), 200);
    assert_int_equal(ckpt_chunk(4096, 2048), 4096);
    assert_int_equal(ckpt_chunk(4096, 100000), 4096);
}

/* A configured chunk below the minimum wins (test_crash runs with checkpoint_chunk: 7). */
static void configured_chunk_is_the_ceiling(void **st)
{
    (void)st;
    assert_int_equal(ckpt_chunk(7, 1), 7);
    assert_int_equal(ckpt_chunk(7, 1000), 7);
    assert_int_equal(ckpt_chunk(1, 5), 1);
}

/* Pace: over any run of commits carrying E entries in all, a checkpoint advances by at least
 * min(2E, chunk per commit): enough for the members those entries dirtied (one or two each). */
static void checkpoint_keeps_pace_with_the_entries(void **st)
{
    (void)st;
    size_t done = 0, entries = 0;
    for (uint32_t n = 1; n <= 1000; n++) {
        done += ckpt_chunk(4096, n);
        entries += n;
    }
    assert_true(done >= 2 * entries);
}

/* A checkpoint of total records written by batches of n entries sealed every batch_us: how many
 * batches until every record is encoded, and the largest share one batch took. */
static uint64_t run_schedule(uint64_t total, uint32_t n, uint64_t batch_us, uint64_t spread_us,
                             size_t *largest)
{
    uint64_t done = 0, batches = 0;
    *largest = 0;
    while (done < total) {
        batches++;
        size_t s = ckpt_share(4096, n, total, done, batches * batch_us, spread_us);
        assert_true(s <= ckpt_chunk(4096, n)); /* never more than the old pace */
        if (s > *largest)
            *largest = s;
        done += s;
        assert_true(batches < 1000000);
    }
    assert_int_equal(done, total);
    return batches;
}

/* On schedule, a batch encodes what the even schedule says is due and not encoded yet: nothing
 * when ahead. */
static void share_is_what_is_due(void **st)
{
    (void)st;
    /* 10,000 records over 1 s; 100 ms in: 1,000 due */
    assert_int_equal(ckpt_share(4096, 1000, 10000, 0, 0, 1000000), 0);
    assert_int_equal(ckpt_share(4096, 1000, 10000, 0, 100000, 1000000), 1000);
    assert_int_equal(ckpt_share(4096, 1000, 10000, 600, 100000, 1000000), 400);
    assert_int_equal(ckpt_share(4096, 1000, 10000, 1000, 100000, 1000000), 0);
    assert_int_equal(ckpt_share(4096, 1000, 10000, 1500, 100000, 1000000), 0);
    /* at and after the spread's end, everything left is due */
    assert_int_equal(ckpt_share(4096, 1000, 10000, 9990, 1000000, 1000000), 10);
    assert_int_equal(ckpt_share(4096, 1000, 10000, 9990, 5000000, 1000000), 10);
    assert_int_equal(ckpt_share(4096, 1000, 10000, 10000, 5000000, 1000000), 0);
    /* no spread: as early as it can, at ckpt_chunk()'s pace */
    assert_int_equal(ckpt_share(4096, 100, 10000, 0, 0, 0), 200);
    /* half an hour into an hour: total times elapsed would not fit 64 bits */
    assert_int_equal(
        ckpt_share(4096, 2048, 20000000000ULL, 9999999000ULL, 1800000000ULL, 3600000000ULL), 1000);
}

/* Behind schedule (due exceeds what one batch may take), a batch takes ckpt_chunk()'s share. */
static void behind_schedule_takes_the_whole_share(void **st)
{
    (void)st;
    assert_int_equal(ckpt_share(4096, 100, 1000000, 0, 1000000, 1000000), 200);
    assert_int_equal(ckpt_share(4096, 100, 1000000, 0, 500000, 1000000), 200);
    assert_int_equal(ckpt_share(4096, 10, 1000000, 0, 500000, 1000000), CK_CHUNK_MIN);
    assert_int_equal(ckpt_share(4096, 5000, 1000000, 0, 500000, 1000000), 4096);
    assert_int_equal(ckpt_share(7, 5000, 1000000, 0, 500000, 1000000), 7);
}

/* Spread: 330,000 records, batches of 100 entries every 0.6 ms (166,000 events/s), a 5 s
 * spread. The old pace (200 a batch) was done in 1,650 batches (1 s); on schedule it takes the
 * whole spread, in about a fifth of the records per batch. */
static void checkpoint_is_spread_over_the_spread(void **st)
{
    (void)st;
    size_t largest;
    uint64_t b = run_schedule(330000, 100, 600, 5000000, &largest);
    assert_true(b * 600 >= 5000000 - 600 && b * 600 <= 5000000 + 600);
    assert_true(largest <= 330000 * 600 / 5000000 + 1); /* 39.6: 40 */
    uint64_t old = run_schedule(330000, 100, 600, 0, &largest);
    assert_int_equal(old, 1650);
    assert_int_equal(largest, 200);
}

/* Pace: a checkpoint ends by the spread's end, or as soon as the old pace (twice the entries)
 * would end it, whichever is later: events that change two members each cannot make each
 * checkpoint longer than the one before. */
static void checkpoint_keeps_pace_behind_schedule(void **st)
{
    (void)st;
    size_t largest;
    /* 1,000,000 records at 200 a batch need 5,000 batches, more than the spread's 1,000 */
    uint64_t b = run_schedule(1000000, 100, 1000, 1000000, &largest);
    assert_true(b <= 5000 + 1);
    assert_int_equal(largest, 200);
    /* in between: 300,000 records, 1,000 batches in the spread could take 200,000 */
    b = run_schedule(300000, 100, 1000, 1000000, &largest);
    assert_true(b <= 1500 + 1);
    /* a first, full checkpoint of 10,000,000 records */
    b = run_schedule(10000000, 1000, 1000, 5000000, &largest);
    assert_true(b <= 5000 + 1);
    assert_int_equal(largest, 2000);
}

static int cmp_strcmp(const void *a, const void *b)
{
    return strcmp(((const ck_ord *)a)->id, ((const ck_ord *)b)->id);
}

/* The prefix keys sort exactly as strcmp: ids shorter than, as long as and longer than the
 * 16-byte prefix, sharing long prefixes, with bytes above 0x7f. */
static void order_is_strcmp_order(void **st)
{
    (void)st;
    enum { N = 20000 };
    static char ids[N][32];
    static ck_ord a[N], b[N];
    uint64_t x = 88172645463325252ULL;
    for (uint32_t i = 0; i < N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = 1 + x % 30;
        for (size_t k = 0; k < len; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* a small alphabet and shared prefixes make ties in the first 16 bytes common */
            ids[i][k] = k < 14 && (x & 3) != 0 ? 'M' : (char)(0x30 + x % 0x60);
            if (x % 97 == 0)
                ids[i][k] = (char)0xe4;
        }
        ids[i][len] = '\0';
        a[i] = b[i] = ck_ord_make(ids[i], i);
    }
    snprintf(ids[0], sizeof ids[0], "139%08d", 12345678); /* a bench-style phone number id */
    a[0] = b[0] = ck_ord_make(ids[0], 0);
    qsort(a, N, sizeof a[0], ck_ord_cmp);
    qsort(b, N, sizeof b[0], cmp_strcmp);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(strcmp(a[i].id, b[i].id), 0);
    for (uint32_t i = 1; i < N; i++)
        assert_true(strcmp(a[i - 1].id, a[i].id) <= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idle_commit_takes_the_whole_chunk),
        cmocka_unit_test(busy_commit_takes_twice_its_entries),
        cmocka_unit_test(configured_chunk_is_the_ceiling),
        cmocka_unit_test(checkpoint_keeps_pace_with_the_entries),
        cmocka_unit_test(share_is_what_is_due),
        cmocka_unit_test(behind_schedule_takes_the_whole_share),
        cmocka_unit_test(checkpoint_is_spread_over_the_spread),
        cmocka_unit_test(checkpoint_keeps_pace_behind_schedule),
        cmocka_unit_test(order_is_strcmp_order),
    };
    return cmocka_run_group_tests_name("daemon_ckpt_plan", tests, NULL, NULL);
}
