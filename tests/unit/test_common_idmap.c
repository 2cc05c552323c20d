/* test_common_idmap.c: the (u64, u64) -> (u64, u64) hash map: put, get, overwrite, remove,
 * growth, and backward-shift deletion checked against a brute-force reference under many random
 * operations, including long probe runs that wrap around the end of the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "idmap.h"
#include "lt.h"

/* xorshift64*: deterministic, so a failure reproduces */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* Every used slot must be reachable from its home slot without crossing an empty one; that is
 * what lookups rely on and what a wrong backward shift breaks. Also counts the used slots. */
static void check_invariants(const idmap *m)
{
    assert_true(m->cap >= 16);
    assert_int_equal(m->cap & (m->cap - 1), 0);
    assert_true(m->n * 2 <= m->cap);
    size_t used = 0;
    for (size_t i = 0; i < m->cap; i++) {
        const idmap_slot *s = &m->slots[i];
        if (!s->used)
            continue;
        used++;
        idmap_slot *g = idmap_get(m, s->a, s->b);
        assert_ptr_equal(g, s);
    }
    assert_int_equal(used, m->n);
}

static void test_put_get_overwrite_remove(void **state)
{
    (void)state;
    idmap m;
    assert_int_equal(idmap_init(&m, 0), 0);
    assert_int_equal(m.n, 0);
    assert_null(idmap_get(&m, 1, 2));
    assert_int_equal(idmap_put(&m, 1, 2, 10, 20), 0);
    assert_int_equal(idmap_put(&m, 2, 1, 30, 40), 0); /* (a, b) order matters */
    assert_int_equal(idmap_put(&m, 0, 0, 0, 0), 0);   /* all-zero key and values are legal */
    assert_int_equal(m.n, 3);
    idmap_slot *s = idmap_get(&m, 1, 2);
    assert_non_null(s);
    assert_int_equal(s->v1, 10);
    assert_int_equal(s->v2, 20);
    s = idmap_get(&m, 2, 1);
    assert_non_null(s);
    assert_int_equal(s->v1, 30);
    assert_non_null(idmap_get(&m, 0, 0));
    assert_null(idmap_get(&m, 1, 1));

    assert_int_equal(idmap_put(&m, 1, 2, 11, 21), 0);
    assert_int_equal(m.n, 3);
    s = idmap_get(&m, 1, 2);
    assert_int_equal(s->v1, 11);
    assert_int_equal(s->v2, 21);

    idmap_remove(&m, 1, 2);
    assert_int_equal(m.n, 2);
    assert_null(idmap_get(&m, 1, 2));
    assert_non_null(idmap_get(&m, 2, 1));
    idmap_remove(&m, 1, 2); /* absent: no-op */
    idmap_remove(&m, 99, 99);
    assert_int_equal(m.n, 2);
    assert_int_equal(idmap_put(&m, UINT64_MAX, UINT64_MAX, UINT64_MAX, 1), 0);
    assert_int_equal(idmap_get(&m, UINT64_MAX, UINT64_MAX)->v1, UINT64_MAX);
    check_invariants(&m);
    idmap_free(&m);
    assert_null(m.slots);
    assert_int_equal(m.n, 0);
}

static void test_init_capacity(void **state)
{
    (void)state;
    idmap m;
    assert_int_equal(idmap_init(&m, 4096), 0);
    assert_true(m.cap >= 8192); /* load factor at most 1/2 without growing */
    size_t cap = m.cap;
    for (uint64_t i = 0; i < 4096; i++)
        assert_int_equal(idmap_put(&m, 1, i, i, 0), 0);
    assert_int_equal(m.cap, cap);
    idmap_free(&m);
}

static void test_growth(void **state)
{
    (void)state;
    idmap m;
    assert_int_equal(idmap_init(&m, 0), 0);
    size_t caps_seen = 0, last_cap = m.cap;
    const uint64_t n = 50000;
    for (uint64_t i = 0; i < n; i++) {
        assert_int_equal(idmap_put(&m, i % 7, i, i * 3, ~i), 0);
        if (m.cap != last_cap) {
            assert_true(m.cap > last_cap);
            last_cap = m.cap;
            caps_seen++;
        }
    }
    assert_true(caps_seen >= 10);
    assert_int_equal(m.n, n);
    for (uint64_t i = 0; i < n; i++) {
        idmap_slot *s = idmap_get(&m, i % 7, i);
        assert_non_null(s);
        assert_int_equal(s->v1, i * 3);
        assert_int_equal(s->v2, ~i);
        assert_null(idmap_get(&m, i % 7 + 7, i));
    }
    check_invariants(&m);
    /* remove every other key, the rest stays */
    for (uint64_t i = 0; i < n; i += 2)
        idmap_remove(&m, i % 7, i);
    assert_int_equal(m.n, n / 2);
    for (uint64_t i = 0; i < n; i++)
        assert_true((idmap_get(&m, i % 7, i) != NULL) == (i % 2 == 1));
    check_invariants(&m);
    idmap_free(&m);
}

/* Random puts and removes against a dense reference table over a small key space.
 * `keys` small keeps the map in its smallest tables, where probe runs are long and wrap. */
/* idmap_reserve: the puts it made room for never grow the table (the ledger relies on it after
 * a commit, where a failed allocation would lose an id); idmap_clear keeps the table. */
static void test_reserve_and_clear(void **state)
{
    (void)state;
    idmap m;
    assert_int_equal(idmap_init(&m, 1), 0);
    assert_int_equal(idmap_reserve(&m, 1000), 0);
    size_t cap = m.cap;
    assert_true(cap >= 2000);
    idmap_slot *before = m.slots;
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(idmap_put(&m, 7, i, i, 0), 0);
    assert_ptr_equal(m.slots, before); /* not grown */
    assert_int_equal(m.cap, cap);
    check_invariants(&m);
    assert_int_equal(idmap_reserve(&m, 0), 0);
    assert_int_equal(m.cap, cap);
    idmap_clear(&m);
    assert_int_equal(m.n, 0);
    assert_int_equal(m.cap, cap);
    assert_null(idmap_get(&m, 7, 5));
    check_invariants(&m);
    assert_int_equal(idmap_put(&m, 7, 5, 1, 2), 0);
    assert_non_null(idmap_get(&m, 7, 5));
    idmap_free(&m);
}

/* idmap_put_max: a high-water mark (R29's per-till maxima) only rises; idmap_copy: a copy with
 * room for more, the source untouched. */
static void test_put_max_and_copy(void **state)
{
    (void)state;
    idmap m;
    assert_int_equal(idmap_init(&m, 1), 0);
    for (uint64_t node = 1; node <= 100; node++)
        assert_int_equal(idmap_put_max(&m, node, 0, 10), 0);
    assert_int_equal(idmap_put_max(&m, 5, 0, 12), 0);
    assert_int_equal(idmap_put_max(&m, 5, 0, 11), 0); /* lower: kept at 12 */
    assert_int_equal(idmap_put_max(&m, 6, 0, 10), 0);
    assert_int_equal(m.n, 100);
    assert_int_equal(idmap_get(&m, 5, 0)->v1, 12);
    assert_int_equal(idmap_get(&m, 6, 0)->v1, 10);
    assert_int_equal(idmap_get(&m, 7, 0)->v2, 0);
    check_invariants(&m);

    idmap c;
    assert_int_equal(idmap_copy(&c, &m, 1000), 0);
    assert_int_equal(c.n, 100);
    assert_true(c.cap >= 2 * 1100);
    for (uint64_t node = 1; node <= 100; node++)
        assert_int_equal(idmap_get(&c, node, 0)->v1, node == 5 ? 12 : 10);
    idmap_slot *before = c.slots;
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(idmap_put(&c, 9, i + 1, i, 0), 0);
    assert_ptr_equal(c.slots, before); /* the room was there */
    check_invariants(&c);
    assert_int_equal(m.n, 100); /* the source is untouched */
    assert_null(idmap_get(&m, 9, 1));
    idmap_free(&c);
    idmap_free(&m);
}

/* Random puts and removes of `keys` keys, (k % 5, k / 5 * stride): stride 1 gives each node
 * consecutive ids (home() groups them by 8), a large odd stride scattered ones. */
static void random_ops(size_t keys, size_t ops, uint64_t seed, size_t check_every, uint64_t stride)
{
    idmap m;
    assert_int_equal(idmap_init(&m, 0), 0);
    bool *present = calloc(keys, sizeof *present);
    uint64_t *val = calloc(keys, sizeof *val);
    assert_non_null(present);
    assert_non_null(val);
    size_t count = 0;
    uint64_t s = seed;
    for (size_t op = 0; op < ops; op++) {
        uint64_t r = rng_next(&s);
        size_t k = (size_t)(r % keys);
        uint64_t a = k % 5, b = k / 5 * stride; /* node-like a */
        if ((r >> 32) % 100 < 55) {
            assert_int_equal(idmap_put(&m, a, b, r, k), 0);
            if (!present[k])
                count++;
            present[k] = true;
            val[k] = r;
        } else {
            idmap_remove(&m, a, b);
            if (present[k])
                count--;
            present[k] = false;
        }
        assert_int_equal(m.n, count);
        /* the touched key and one random other key agree with the reference */
        for (int t = 0; t < 2; t++) {
            size_t q = t == 0 ? k : (size_t)(rng_next(&s) % keys);
            idmap_slot *sl = idmap_get(&m, q % 5, q / 5 * stride);
            if (!present[q]) {
                assert_null(sl);
            } else {
                assert_non_null(sl);
                assert_int_equal(sl->v1, val[q]);
                assert_int_equal(sl->v2, q);
            }
        }
        if (op % check_every == 0) {
            check_invariants(&m);
            for (size_t q = 0; q < keys; q++)
                assert_true((idmap_get(&m, q % 5, q / 5 * stride) != NULL) == present[q]);
        }
    }
    check_invariants(&m);
    for (size_t q = 0; q < keys; q++) {
        idmap_slot *sl = idmap_get(&m, q % 5, q / 5 * stride);
        assert_true((sl != NULL) == present[q]);
        if (sl != NULL)
            assert_int_equal(sl->v1, val[q]);
    }
    free(present);
    free(val);
    idmap_free(&m);
}

static void test_random_small_table(void **state)
{
    (void)state;
    random_ops(12, 100000, 0x9E3779B97F4A7C15ull, 1, 1000003u);
}

static void test_random_medium(void **state)
{
    (void)state;
    random_ops(3000, 100000, 42, 997, 1000003u);
}

static void test_random_many_seeds(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 50; seed++)
        random_ops(9, 4000, seed * 7919, 1, 1000003u);
}

/* Consecutive ids of a few nodes: groups of 8 neighbouring homes, probe runs that meet and
 * wrap around the table's end, removes shifting members of one group past another's. */
static void test_random_consecutive_ids(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 50; seed++)
        random_ops(40, 4000, seed * 104729, 1, 1);
    random_ops(3000, 200000, 77, 997, 1);
}

/* Finds keys whose home slot in a 16-slot table is `home`: a lone key sits in its home. */
static size_t keys_with_home(size_t home, uint64_t *out, size_t want, uint64_t from)
{
    size_t n = 0;
    for (uint64_t b = from; n < want; b++) {
        idmap m;
        assert_int_equal(idmap_init(&m, 0), 0);
        assert_int_equal(m.cap, 16);
        idmap_put(&m, 3, b, 0, 0);
        size_t at = (size_t)(idmap_get(&m, 3, b) - m.slots);
        idmap_free(&m);
        if (at == home)
            out[n++] = b;
    }
    return n;
}

/* A cluster that starts in the last slot and wraps to the front; removing from its head must
 * shift the wrapped members back across the end of the table. */
static void test_remove_wrapping_cluster(void **state)
{
    (void)state;
    uint64_t at15[3], at0[2], at1[1];
    keys_with_home(15, at15, 3, 0);
    keys_with_home(0, at0, 2, 0);
    keys_with_home(1, at1, 1, 0);
    uint64_t order[][6] = {{at15[0], at15[1], at0[0], at15[2], at0[1], at1[0]}};
    for (size_t victim = 0; victim < 6; victim++) {
        idmap m;
        assert_int_equal(idmap_init(&m, 0), 0);
        for (size_t i = 0; i < 6; i++)
            assert_int_equal(idmap_put(&m, 3, order[0][i], i, 0), 0);
        assert_int_equal(m.cap, 16);
        check_invariants(&m);
        idmap_remove(&m, 3, order[0][victim]);
        assert_int_equal(m.n, 5);
        check_invariants(&m);
        for (size_t i = 0; i < 6; i++) {
            idmap_slot *s = idmap_get(&m, 3, order[0][i]);
            if (i == victim) {
                assert_null(s);
            } else {
                assert_non_null(s);
                assert_int_equal(s->v1, i);
            }
        }
        /* then empty it in another order */
        for (size_t i = 6; i-- > 0;)
            idmap_remove(&m, 3, order[0][i]);
        assert_int_equal(m.n, 0);
        for (size_t i = 0; i < m.cap; i++)
            assert_false(m.slots[i].used);
        idmap_free(&m);
    }
}

/* A till's consecutive event ids sit in neighbouring slots, ascending (home(): one hash per 8
 * ids), so a batch's puts and a commit's removes touch a few cache lines, not one each. */
static void test_consecutive_ids_neighbouring_slots(void **state)
{
    (void)state;
    idmap m;
    assert_int_equal(idmap_init(&m, 4096), 0);
    for (uint64_t id = 800; id < 864; id++)
        assert_int_equal(idmap_put(&m, 42, id, id, 0), 0);
    size_t runs = 0;
    for (uint64_t id = 800; id < 864; id += 8) {
        idmap_slot *first = idmap_get(&m, 42, id);
        assert_non_null(first);
        for (uint64_t k = 1; k < 8; k++)
            assert_ptr_equal(idmap_get(&m, 42, id + k), first + k);
        runs += (size_t)(first - m.slots) % 8 == 0;
    }
    assert_int_equal(runs, 8); /* each group of 8 starts at a multiple of 8: never split */
    for (uint64_t id = 800; id < 864; id++)
        idmap_remove(&m, 42, id);
    assert_int_equal(m.n, 0);
    idmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_overwrite_remove),
        cmocka_unit_test(test_reserve_and_clear),
        cmocka_unit_test(test_put_max_and_copy),
        cmocka_unit_test(test_init_capacity),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_random_small_table),
        cmocka_unit_test(test_random_medium),
        cmocka_unit_test(test_random_many_seeds),
        cmocka_unit_test(test_random_consecutive_ids),
        cmocka_unit_test(test_consecutive_ids_neighbouring_slots),
        cmocka_unit_test(test_remove_wrapping_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
