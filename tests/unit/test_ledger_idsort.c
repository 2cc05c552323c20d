/* test_ledger_idsort.c: the dedup index's id sort (R29) gives qsort()'s order on every shape of
 * input: a round's commit-sorted runs from many tills, random order, one till, a till per id,
 * duplicates, the extreme node and event ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "idsort.h"

static uint64_t g_x = 0x2545F4914F6CDD1Dull;

static uint64_t rnd(void)
{
    g_x ^= g_x << 13;
    g_x ^= g_x >> 7;
    g_x ^= g_x << 17;
    return g_x;
}

/* Sorts a copy with idsort() (reusing s) and one with qsort(): the (node, event) sequences
 * must match, a key unique in (node, event) must carry its own seq, and every key must still be
 * there (the seqs, all different, sum the same). */
static void check_sorts(const idsort_key *in, size_t n, idsort_scratch *s)
{
    idsort_key *a = malloc((n ? n : 1) * sizeof *a), *b = malloc((n ? n : 1) * sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    memcpy(a, in, n * sizeof *a);
    memcpy(b, in, n * sizeof *b);
    idsort(a, n, s);
    qsort(b, n, sizeof *b, idsort_cmp);
    uint64_t sa = 0, sb = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].node_id != b[i].node_id || a[i].event_id != b[i].event_id)
            fail_msg("key %zu: (%llu, %llu) against (%llu, %llu)", i,
                     (unsigned long long)a[i].node_id, (unsigned long long)a[i].event_id,
                     (unsigned long long)b[i].node_id, (unsigned long long)b[i].event_id);
        bool dup = (i > 0 && idsort_cmp(&b[i - 1], &b[i]) == 0) ||
                   (i + 1 < n && idsort_cmp(&b[i + 1], &b[i]) == 0);
        if (!dup && a[i].seq != b[i].seq)
            fail_msg("key %zu: seq %llu against %llu", i, (unsigned long long)a[i].seq,
                     (unsigned long long)b[i].seq);
        sa += a[i].seq * 0x9E3779B97F4A7C15ull;
        sb += b[i].seq * 0x9E3779B97F4A7C15ull;
    }
    assert_true(sa == sb);
    free(a);
    free(b);
}

/* A round as the daemon makes it: commits of `per` ids from `tills` tills, each commit's ids
 * sorted, each till's ids ascending across commits; `disorder` in 1,000 ids sent out of
 * order. */
static size_t make_round(idsort_key *k, size_t n, size_t tills, size_t per, unsigned disorder)
{
    uint64_t *next = calloc(tills, sizeof *next);
    assert_non_null(next);
    size_t m = 0;
    for (uint64_t seq = 1; m < n;) {
        size_t c0 = m;
        for (size_t j = 0; j < per && m < n; j++, seq++) {
            size_t t = rnd() % tills;
            uint64_t node = 1000 + t * 7 + ((uint64_t)t << 32);
            uint64_t ev = rnd() % 1000 < disorder ? rnd() % (next[t] + 1) * 2 + 1 : 2 * ++next[t];
            k[m++] = (idsort_key){node, ev, seq};
        }
        qsort(k + c0, m - c0, sizeof *k, idsort_cmp); /* collect_keys() sorts a commit */
    }
    free(next);
    return m;
}

static void test_R29_idsort_rounds_from_many_tills(void **st)
{
    (void)st;
    idsort_scratch s = {0};
    size_t n = 70000;
    idsort_key *k = malloc(n * sizeof *k);
    assert_non_null(k);
    size_t shapes[][3] = {{1000, 250, 0},  {1000, 250, 5}, {4, 1000, 0},     {1, 300, 0},
                          {70000, 500, 0}, {30, 1, 100},   {5000, 64, 1000}, {1000, 7, 0}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        for (size_t len = 0; len < n; len = len * 3 + 1) {
            size_t m = make_round(k, len, shapes[i][0], shapes[i][1], (unsigned)shapes[i][2]);
            check_sorts(k, m, &s); /* the scratch is reused across sizes and shapes */
        }
        size_t m = make_round(k, n, shapes[i][0], shapes[i][1], (unsigned)shapes[i][2]);
        check_sorts(k, m, &s);
    }
    idsort_free(&s);
    free(k);
}

static void test_R29_idsort_random_and_extreme_ids(void **st)
{
    (void)st;
    idsort_scratch s = {0};
    idsort_key k[4096];
    for (int round = 0; round < 50; round++) {
        size_t n = rnd() % 4096;
        uint64_t nodes = 1 + rnd() % 600;
        for (size_t i = 0; i < n; i++) {
            uint64_t node = rnd() % nodes, ev = rnd() % 50;
            if (node == 1)
                node = UINT64_MAX;
            if (ev == 1)
                ev = UINT64_MAX;
            k[i] = (idsort_key){node, ev, i + 1}; /* duplicates of (node, event) included */
        }
        check_sorts(k, n, &s);
    }
    /* a till per id, descending */
    for (size_t i = 0; i < 4096; i++)
        k[i] = (idsort_key){4096 - i, 1, i + 1};
    check_sorts(k, 4096, &s);
    /* one till, descending events */
    for (size_t i = 0; i < 4096; i++)
        k[i] = (idsort_key){9, 4096 - i, i + 1};
    check_sorts(k, 4096, &s);
    idsort_free(&s);
    idsort(k, 0, &s); /* nothing to do, nothing allocated */
    idsort(k, 1, &s);
    assert_null(s.tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_R29_idsort_rounds_from_many_tills),
        cmocka_unit_test(test_R29_idsort_random_and_extreme_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
