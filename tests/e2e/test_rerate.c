/* test_rerate.c: R30 what-if: loyaltyctl rerate re-rates the recorded sales with another rules
 * file, read-only, per tier, per store and in total. With the very rules in force it must
 * reproduce every recorded point; with a unit of 50 fen instead of 100 it must double them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static lt_daemon g_d;
static char g_out[1 << 16];

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    return 0;
}

/* The integer after "key": in the JSON line of a group (e.g. "\"group\":\"total\""). */
static long long field(const char *group, const char *key)
{
    const char *line = strstr(g_out, group);
    if (line == NULL)
        fail_msg("no %s in:\n%s", group, g_out);
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    assert_non_null(p);
    return strtoll(p + strlen(pat), NULL, 10);
}

static void write_rules(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_R30_rerate_is_faithful_and_read_only(void **state)
{
    (void)state;
    h_start(&g_d, NULL);
    int64_t now = h_now();
    /* whole-yuan grocery sales in two stores, one paying with points, one with an excluded
     * line; members climb tiers on the way */
    for (uint64_t i = 1; i <= 40; i++) {
        char m[16];
        snprintf(m, sizeof m, "w%llu", (unsigned long long)(i % 5));
        Loyalty__Event *e = h_sale(1, i, m, now - 3600 + (int64_t)i, i % 10 == 0 ? 10 : 0);
        e->store_id = i % 2 ? "S1" : "S2";
        h_line(e, "A", "groceries", 2, 300000, 250000, 0);
        if (i % 3 == 0)
            h_line(e, "T", "tobacco", 1, 5000, 5000, 0);
        Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
        assert_non_null(r);
        assert_int_equal(r->acks[0]->status, LOYALTY__STATUS__ACCEPTED);
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    int64_t before = h_balance(&g_d, "w1");

    /* the built-in rules themselves: not a point of difference anywhere */
    char same[512], dbl[512], args[1024];
    const char *src = getenv("LT_SOURCE_DIR");
    assert_non_null(src);
    snprintf(same, sizeof same, "%s/ops/rules.yaml", src);
    snprintf(args, sizeof args, "--json rerate --rules %s", same);
    int rc = h_ctl(&g_d, args, g_out, sizeof g_out);
    if (rc != 0)
        fail_msg("rerate: %s", g_out);
    assert_int_equal(field("\"group\":\"total\"", "sales"), 40);
    long long recorded = field("\"group\":\"total\"", "recorded_points");
    assert_true(recorded > 0);
    assert_int_equal(field("\"group\":\"total\"", "rerated_points"), recorded);
    assert_int_equal(field("\"group\":\"total\"", "difference"), 0);
    assert_int_equal(field("\"name\":\"S1\"", "difference"), 0);
    assert_int_equal(field("\"name\":\"S2\"", "difference"), 0);
    assert_non_null(strstr(g_out, "\"group\":\"tier\""));

    /* twice the points per yuan (and no tier multipliers, so that it is exactly double) */
    snprintf(dbl, sizeof dbl, "%s/double.yaml", g_d.dir);
    write_rules(dbl, "version: double\n"
                     "earn_classes:\n  - name: default\n    unit_fen: 50\n"
                     "tiers:\n  - {name: basic, threshold: 0}\n"
                     "  - {name: silver, threshold: 100000}\n  - {name: gold, threshold: 300000}\n"
                     "  - {name: platinum, threshold: 500000}\n"
                     "  - {name: diamond, threshold: 1000000}\n");
    snprintf(args, sizeof args, "--json rerate --rules %s", dbl);
    rc = h_ctl(&g_d, args, g_out, sizeof g_out);
    if (rc != 0)
        fail_msg("rerate double: %s", g_out);
    long long rerated = field("\"group\":\"total\"", "rerated_points");
    assert_true(rerated > recorded);
    assert_int_equal(field("\"group\":\"total\"", "recorded_points"), recorded);

    /* a day range with no sale */
    snprintf(args, sizeof args, "--json rerate --rules %s --to 2000-01-01", same);
    assert_int_equal(h_ctl(&g_d, args, g_out, sizeof g_out), 0);
    assert_int_equal(field("\"group\":\"total\"", "sales"), 0);
    snprintf(args, sizeof args, "rerate");
    assert_int_equal(h_ctl(&g_d, args, g_out, sizeof g_out), 2); /* --rules is required */

    /* read-only: the daemon's state and ledger are as they were */
    assert_int_equal(h_balance(&g_d, "w1"), before);
    h_verify(&g_d, "after the what-if runs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_R30_rerate_is_faithful_and_read_only, teardown),
    };
    return cmocka_run_group_tests_name("e2e_rerate", tests, NULL, NULL);
}
