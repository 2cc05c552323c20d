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
        cmocka_unit_test(order_is_strcmp_order),
    };
    return cmocka_run_group_tests_name("daemon_ckpt_plan", tests, NULL, NULL);
}
