/* test_daemon_index_plan.c: when the commit thread puts event ids into the ledger's dedup
 * index (index_plan.h, R29): rounds index_flush_ms after the first id, steps of its own only
 * when the daemon is quiet or the ids pile up, and never a wait without end while ids wait. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "index_plan.h"

#define MS 1000000ull

/* No id waits: nothing to do, and the thread waits until a batch comes. */
static void nothing_waits_waits_for_a_batch(void **st)
{
    (void)st;
    index_view v = {.flush_ns = 200 * MS};
    uint64_t due = 0, until = 1;
    assert_false(index_step_now(&v, 1000 * MS, 0, &due, &until));
    assert_int_equal(due, 0);
    assert_int_equal(until, 0);
}

/* The first id seen waiting starts the round's clock; the thread wakes when it is due. */
static void a_round_is_due_index_flush_ms_after_the_first_id(void **st)
{
    (void)st;
    index_view v = {.waiting = 5, .flush_ns = 200 * MS};
    uint64_t due = 0, until = 0;
    assert_false(index_step_now(&v, 1000 * MS, 990 * MS, &due, &until));
    assert_int_equal(due, 1200 * MS);
    assert_int_equal(until, 1200 * MS);
    assert_false(index_due(&v, 1199 * MS, &due));
    assert_true(index_due(&v, 1200 * MS, &due));
    /* due, and the last commit long ago: a step now */
    assert_true(index_step_now(&v, 1200 * MS, 990 * MS, &due, &until));
}

/* A round under way while commits come: no step of its own until INDEX_IDLE_NS after the last
 * commit (the commits carry the round); then steps back to back. */
static void steps_wait_for_a_quiet_commit_thread(void **st)
{
    (void)st;
    index_view v = {.flushing = true, .waiting = 3000, .flush_ns = 200 * MS};
    uint64_t due = 0, until = 0;
    uint64_t last = 5000 * MS;
    assert_false(index_step_now(&v, last + 1 * MS, last, &due, &until));
    assert_int_equal(until, last + INDEX_IDLE_NS);
    assert_false(index_step_now(&v, last + INDEX_IDLE_NS - 1, last, &due, &until));
    assert_true(index_step_now(&v, last + INDEX_IDLE_NS, last, &due, &until));
    assert_true(index_step_now(&v, last + INDEX_IDLE_NS + 3 * MS, last, &due, &until));
}

/* Rides carry at most INDEX_RIDE_MAX a commit: with larger batches the ids pile up, and once
 * INDEX_FLUSH_IDS wait the thread steps whenever it has nothing to commit. */
static void piled_up_ids_are_stepped_without_waiting(void **st)
{
    (void)st;
    index_view v = {.flushing = true, .waiting = INDEX_FLUSH_IDS, .flush_ns = 200 * MS};
    uint64_t due = 0, until = 0, last = 5000 * MS;
    assert_true(index_step_now(&v, last + 1, last, &due, &until));
    v.flushing = false; /* no round yet: one starts at once */
    assert_true(index_due(&v, last + 1, &due));
    assert_true(index_step_now(&v, last + 1, last, &due, &until));
}

/* The bug the first version had: a round ended by a step (index_note() sets due to 0) while
 * ids committed during that round wait. The next look must wake at index_flush_ms, not wait
 * for a batch that may never come (it read *due before index_due() set it). */
static void ids_left_when_a_round_ends_get_a_wake_up(void **st)
{
    (void)st;
    index_view v = {.flushing = false, .waiting = 12, .flush_ns = 50 * MS};
    uint64_t due = 0, until = 0; /* the round just ended */
    uint64_t now = 7000 * MS, last = 6000 * MS;
    assert_false(index_step_now(&v, now, last, &due, &until));
    assert_int_equal(due, now + 50 * MS);
    assert_int_equal(until, now + 50 * MS);
    assert_true(index_step_now(&v, until, last, &due, &until)); /* quiet: the next round */
}

/* After a failed step the next try waits until *due, round or not. */
static void a_failed_step_waits_before_the_next_try(void **st)
{
    (void)st;
    index_view v = {.flushing = true, .waiting = 100, .failing = true, .flush_ns = 200 * MS};
    uint64_t due = 3000 * MS, until = 0;
    assert_false(index_step_now(&v, 2900 * MS, 0, &due, &until));
    assert_int_equal(until, 3000 * MS);
    assert_true(index_step_now(&v, 3000 * MS, 0, &due, &until));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_waits_waits_for_a_batch),
        cmocka_unit_test(a_round_is_due_index_flush_ms_after_the_first_id),
        cmocka_unit_test(steps_wait_for_a_quiet_commit_thread),
        cmocka_unit_test(piled_up_ids_are_stepped_without_waiting),
        cmocka_unit_test(ids_left_when_a_round_ends_get_a_wake_up),
        cmocka_unit_test(a_failed_step_waits_before_the_next_try),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
