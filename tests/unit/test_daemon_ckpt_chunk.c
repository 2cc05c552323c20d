/* test_daemon_ckpt_chunk.c: how much of a staged checkpoint a commit carries (ckpt_chunk.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ckpt_chunk.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idle_commit_takes_the_whole_chunk),
        cmocka_unit_test(busy_commit_takes_twice_its_entries),
        cmocka_unit_test(configured_chunk_is_the_ceiling),
        cmocka_unit_test(checkpoint_keeps_pace_with_the_entries),
    };
    return cmocka_run_group_tests_name("daemon_ckpt_chunk", tests, NULL, NULL);
}
