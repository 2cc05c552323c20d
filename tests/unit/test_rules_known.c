/* test_rules_known.c: where the rules file lists the stores and categories, events naming
 * others are refused with UNKNOWN_STORE / UNKNOWN_CATEGORY; without lists anything goes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_rules_fake.h"

static lt_event g_ev;
static lt_entry g_out;
static fake g_f;

static int rate(const rules *r)
{
    rules_view v = fake_view(&g_f);
    return rules_rate(r, &v, &g_ev, &g_out);
}

static void test_known_stores_and_categories(void **state)
{
    (void)state;
    rules *r = load_ok("version: k1\nstores: [S9, S1, S5]\ncategories: [groceries, tobacco]\n");
    memset(&g_f, 0, sizeof g_f);
    ev_init(&g_ev, LT_EV_SALE, "m1", local_time(2026, 11, 23, 10, 0, CST));
    ev_line(&g_ev, "A", "groceries", 1, 1000, 1000, 0);
    assert_int_equal(rate(r), LT_R_NONE); /* S1 listed (the list is sorted at load) */
    strcpy(g_ev.store_id, "S2");
    assert_int_equal(rate(r), LT_R_UNKNOWN_STORE);
    strcpy(g_ev.store_id, "S9");
    assert_int_equal(rate(r), LT_R_NONE);
    ev_line(&g_ev, "B", "toys", 1, 1000, 1000, 0);
    assert_int_equal(rate(r), LT_R_UNKNOWN_CATEGORY);
    rules_destroy(&r);
}

static void test_no_lists_means_any(void **state)
{
    (void)state;
    rules *r = load_ok("version: k2\n");
    memset(&g_f, 0, sizeof g_f);
    ev_init(&g_ev, LT_EV_SALE, "m1", local_time(2026, 11, 23, 10, 0, CST));
    strcpy(g_ev.store_id, "ANY-STORE");
    ev_line(&g_ev, "A", "whatever", 1, 1000, 1000, 0);
    assert_int_equal(rate(r), LT_R_NONE);
    rules_destroy(&r);
}

static void test_lists_validated(void **state)
{
    (void)state;
    rules *r = NULL;
    char err[256];
    const char *y = "version: k3\nstores: [S1, S1]\n";
    assert_int_equal(rules_load_string(y, strlen(y), "t.yaml", &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "t.yaml:2:"));
    assert_non_null(strstr(err, "listed twice"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_stores_and_categories),
        cmocka_unit_test(test_no_lists_means_any),
        cmocka_unit_test(test_lists_validated),
    };
    return cmocka_run_group_tests_name("rules_known", tests, NULL, NULL);
}
