/* test_daemon_ckpt_order.c: the order of all members kept between checkpoints, and a
 * checkpoint's members taken from it in id order (ckpt_order.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ckpt_order.h"

enum { MAX = 30000, ID = 32 };

static char ids[MAX][ID];
static size_t id_calls;

static const char *id_of(const void *ctx, uint32_t idx)
{
    const char(*t)[ID] = ctx;
    assert_true(idx < MAX);
    id_calls++;
    return t[idx];
}

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

/* A random id, unique by its suffix: a small alphabet and shared prefixes make ties in the
 * first 16 bytes (ck_ord's prefix keys) common; some bytes above 0x7f. */
static void random_id(char *out, uint64_t *x, uint32_t unique)
{
    size_t len = rnd(x) % 24;
    size_t k = 0;
    for (; k < len; k++) {
        uint64_t r = rnd(x);
        out[k] = k < 14 && (r & 3) != 0 ? 'M' : (char)(0x30 + r % 0x40);
        if (r % 97 == 0)
            out[k] = (char)0xe4;
    }
    snprintf(out + k, (size_t)(ID - k), "#%u", unique);
}

/* Asserts that o holds members 0..n-1, each once, in strcmp order of their ids. */
static void assert_is_the_order(const ck_order *o, uint32_t n)
{
    assert_int_equal(o->n, n);
    static unsigned char seen[MAX];
    memset(seen, 0, sizeof seen);
    for (uint32_t p = 0; p < n; p++) {
        assert_true(o->by_id[p] < n);
        assert_int_equal(seen[o->by_id[p]], 0);
        seen[o->by_id[p]] = 1;
        if (p > 0)
            assert_true(strcmp(ids[o->by_id[p - 1]], ids[o->by_id[p]]) < 0);
    }
}

static int cmp_by_id(const void *a, const void *b)
{
    return strcmp(ids[*(const uint32_t *)a], ids[*(const uint32_t *)b]);
}

/* Selects a random subset (about one in every `every`) of o's members and compares it with
 * the same subset sorted by strcmp. */
static void assert_select_sorts(ck_order *o, uint64_t *x, uint32_t every)
{
    static uint32_t list[MAX], out[MAX + 1], want[MAX];
    size_t n = 0;
    for (uint32_t i = 0; i < o->n; i++)
        if (rnd(x) % every == 0)
            list[n++] = i;
    for (size_t i = n; i > 1; i--) { /* the list comes in no order */
        size_t j = rnd(x) % i;
        uint32_t t = list[i - 1];
        list[i - 1] = list[j];
        list[j] = t;
    }
    memcpy(want, list, n * sizeof *want);
    qsort(want, n, sizeof *want, cmp_by_id);
    memset(out, 0xff, sizeof out);
    assert_int_equal(ck_order_select(o, list, n, out), 0);
    assert_memory_equal(out, want, n * sizeof *out);
    assert_int_equal(out[n], UINT32_MAX); /* nothing written past n */
}

/* Members enrolled in steps of every size, their ids anywhere among the others': after each
 * step the order is every member once, in id order, and a checkpoint's members (a subset in no
 * order: none, one, a few, most, all) come out in id order. */
static void grown_order_is_id_order(void **st)
{
    (void)st;
    uint64_t x = 88172645463325252ULL;
    for (uint32_t i = 0; i < MAX; i++)
        random_id(ids[i], &x, i);
    ck_order o = {0};
    /* a checkpoint of nothing, before any member (the daemon's first, when idle) */
    assert_int_equal(ck_order_grow(&o, 0, id_of, ids), 0);
    assert_int_equal(ck_order_select(&o, NULL, 0, NULL), 0);
    const uint32_t steps[] = {0, 1, 2, 3, 100, 101, 5000, 5037, 20000, MAX};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        assert_int_equal(ck_order_grow(&o, steps[s], id_of, ids), 0);
        assert_is_the_order(&o, steps[s]);
        if (steps[s] == 0)
            continue;
        assert_select_sorts(&o, &x, 1);
        assert_select_sorts(&o, &x, 3);
        assert_select_sorts(&o, &x, 1000);
        assert_select_sorts(&o, &x, 1000000);
    }
    ck_order_free(&o);
}

/* The bench's case, and a restart's: members enrolled in id order, and members enrolled later
 * whose ids all sort after the others'. Neither needs a sort, and placing each of them among the
 * others costs a few comparisons (galloping from the previous one's place), not a search of all. */
static void members_in_order_cost_a_few_comparisons_each(void **st)
{
    (void)st;
    for (uint32_t i = 0; i < 20000; i++)
        snprintf(ids[i], ID, "139%08u", i);
    for (uint32_t i = 20000; i < MAX; i++)
        snprintf(ids[i], ID, "N%03u%010u", i % 7, i); /* after every 139... */
    ck_order o = {0};
    id_calls = 0;
    assert_int_equal(ck_order_grow(&o, 20000, id_of, ids), 0);
    assert_true(id_calls <= 20000 + 64); /* each id read once for its key, no search */
    assert_is_the_order(&o, 20000);
    id_calls = 0;
    assert_int_equal(ck_order_grow(&o, MAX, id_of, ids), 0);
    /* keys (10,000), the first's place (2 log2 20,000 + a few), none for the others (each
     * starts where the last one went: at the end) */
    assert_true(id_calls <= 10000 + 64 + 2 * 10000);
    assert_is_the_order(&o, MAX);
    ck_order_free(&o);
}

/* A few members enrolled among 30,000: each placed by a search, not a scan of all of them. */
static void few_new_members_are_searched_for(void **st)
{
    (void)st;
    uint64_t x = 2463534242ULL;
    for (uint32_t i = 0; i < MAX; i++)
        random_id(ids[i], &x, i);
    ck_order o = {0};
    assert_int_equal(ck_order_grow(&o, MAX - 10, id_of, ids), 0);
    id_calls = 0;
    assert_int_equal(ck_order_grow(&o, MAX, id_of, ids), 0);
    assert_true(id_calls <= 10 * (1 + 2 * 15 + 2)); /* 2 log2(30,000) each, at most */
    assert_is_the_order(&o, MAX);
    ck_order_free(&o);
}

/* Nothing new: grow reads nothing. Fewer members than the order holds, none included: the order
 * was another state's (the daemon rebuilt it), so it is made again from the ids it is given now;
 * and after a reset it is made again too. */
static void another_state_starts_again(void **st)
{
    (void)st;
    uint64_t x = 42;
    for (uint32_t i = 0; i < MAX; i++)
        random_id(ids[i], &x, i);
    ck_order o = {0};
    assert_int_equal(ck_order_grow(&o, 1000, id_of, ids), 0);
    id_calls = 0;
    assert_int_equal(ck_order_grow(&o, 1000, id_of, ids), 0);
    assert_int_equal(id_calls, 0);
    for (uint32_t i = 0; i < 500; i++) /* the new state's members: other ids, other numbers */
        random_id(ids[i], &x, MAX + i);
    assert_int_equal(ck_order_grow(&o, 500, id_of, ids), 0);
    assert_is_the_order(&o, 500);
    for (uint32_t i = 0; i < 1000; i++)
        random_id(ids[i], &x, 2 * MAX + i);
    ck_order_reset(&o);
    assert_int_equal(o.n, 0);
    assert_int_equal(ck_order_grow(&o, 1000, id_of, ids), 0);
    assert_is_the_order(&o, 1000);
    assert_select_sorts(&o, &x, 2);
    assert_int_equal(ck_order_grow(&o, 0, id_of, ids), 0); /* a state with no members yet */
    assert_int_equal(o.n, 0);
    ck_order_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grown_order_is_id_order),
        cmocka_unit_test(members_in_order_cost_a_few_comparisons_each),
        cmocka_unit_test(few_new_members_are_searched_for),
        cmocka_unit_test(another_state_starts_again),
    };
    return cmocka_run_group_tests_name("daemon_ckpt_order", tests, NULL, NULL);
}
