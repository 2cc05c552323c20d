/* test_rules_index.c: the lookups rating leans on per sale line: the category index built at
 * load time answers exactly what a scan of the rules' lists answers (excluded categories R9,
 * earn class categories R11), for the default rules and for full lists; the tier lookup's fast
 * path for the lowest tier; and the civil-date memo never answers for another day. */
#include <stdio.h>

#include "test_rules_fake.h"

/* The reference: the lists scanned in order, as rating did before the index. */
static bool ref_excluded(const rules *r, const char *name)
{
    for (uint32_t i = 0; i < r->excluded_n; i++) {
        if (!strcmp(r->excluded[i], name))
            return true;
    }
    return false;
}

static uint32_t ref_class(const rules *r, const char *name)
{
    for (uint32_t i = 0; i < r->class_categories_n; i++) {
        if (!strcmp(r->class_categories[i].category, name))
            return r->class_categories[i].class_index;
    }
    return r->class_default;
}

static void check_name(const rules *r, const char *name)
{
    const rules_cat *c = rules__category(r, name);
    bool listed = ref_excluded(r, name) || ref_class(r, name) != r->class_default;
    if (!listed) {
        /* a category of the default class may still be named, e.g. as excluded */
        assert_true(c == NULL || !c->has_class || c->class_index == r->class_default);
    }
    assert_int_equal(c != NULL && c->excluded, ref_excluded(r, name));
    assert_int_equal(c != NULL && c->has_class ? c->class_index : r->class_default,
                     ref_class(r, name));
    if (c != NULL)
        assert_string_equal(c->name, name);
}

static void test_default_rules(void **state)
{
    (void)state;
    rules *r = load_ok("version: seed\n");
    const char *names[] = {"tobacco", "alcohol",  "special_price", "appliances", "clothing",
                           "grocery", "",         "tobacc",        "tobaccoo",   "Appliances",
                           "jade",    "clothing "};
    for (size_t i = 0; i < LT_ARRAY_LEN(names); i++)
        check_name(r, names[i]);
    assert_true(rules__category(r, "tobacco")->excluded);
    assert_int_equal(rules__category(r, "appliances")->class_index, 1);
    assert_null(rules__category(r, "grocery"));
    rules_destroy(&r);
}

static void test_full_lists(void **state)
{
    (void)state;
    /* 256 excluded categories and 256 categories over three classes, half of them also
     * excluded: the index at its largest */
    size_t cap = 64 * 1024, len = 0;
    char *y = malloc(cap);
    assert_non_null(y);
    len += (size_t)snprintf(y + len, cap - len, "version: t\nexcluded_categories: [");
    for (int i = 0; i < RULES_CATEGORIES_MAX; i++)
        len += (size_t)snprintf(y + len, cap - len, "%sx%d", i ? ", " : "", i * 2);
    len += (size_t)snprintf(y + len, cap - len,
                            "]\nearn_classes:\n  - {name: default, unit_fen: 100}\n");
    for (int k = 1; k <= 3; k++) {
        len += (size_t)snprintf(y + len, cap - len,
                                "  - name: c%d\n    unit_fen: %d\n"
                                "    categories: [",
                                k, 100 * k);
        int from = (k - 1) * 86, to = k == 3 ? RULES_CATEGORIES_MAX : k * 86;
        for (int i = from; i < to; i++)
            len += (size_t)snprintf(y + len, cap - len, "%sx%d", i > from ? ", " : "", i);
        len += (size_t)snprintf(y + len, cap - len, "]\n");
    }
    assert_true(len < cap);
    rules *r = load_ok(y);
    free(y);
    assert_int_equal(r->excluded_n, RULES_CATEGORIES_MAX);
    assert_int_equal(r->class_categories_n, RULES_CATEGORIES_MAX);
    char name[LT_ID_MAX];
    for (int i = 0; i < 4 * RULES_CATEGORIES_MAX; i++) {
        snprintf(name, sizeof name, "x%d", i);
        check_name(r, name);
        snprintf(name, sizeof name, "y%d", i);
        check_name(r, name);
    }
    rules_destroy(&r);
}

static void test_tier_index(void **state)
{
    (void)state;
    rules *r = load_ok("version: seed\n");
    assert_int_equal(rules__tier_index(r, ""), 0);
    assert_int_equal(rules__tier_index(r, "basic"), 0);
    assert_int_equal(rules__tier_index(r, "gold"), 2);
    assert_int_equal(rules__tier_index(r, "diamond"), 4);
    assert_int_equal(rules__tier_index(r, "unknown"), 0);
    rules_destroy(&r);
}

/* rules_civil_from_days() keeps the last answer: asking for days in any order, repeated or
 * alternating, gives what the round trip through rules_days_from_civil() says. */
static void test_civil_from_days_memo(void **state)
{
    (void)state;
    static const int64_t days[] = {0,     0,       1,       0,       -1, -1, 20528, 20528, 20529,
                                   20528, -719468, -719469, 2932896, 59, 60, 60,    59,    20528};
    for (size_t i = 0; i < LT_ARRAY_LEN(days); i++) {
        int y, m, d;
        rules_civil_from_days(days[i], &y, &m, &d);
        assert_int_equal(rules_days_from_civil(y, m, d), days[i]);
        assert_true(m >= 1 && m <= 12 && d >= 1 && d <= rules__days_in_month(y, m));
    }
    for (int64_t day = -800000; day < 800000; day += 997) {
        int y1, m1, d1, y2, m2, d2;
        rules_civil_from_days(day, &y1, &m1, &d1);
        rules_civil_from_days(day + 1, &y2, &m2, &d2);
        assert_int_equal(rules_days_from_civil(y1, m1, d1), day);
        assert_int_equal(rules_days_from_civil(y2, m2, d2), day + 1);
        rules_civil_from_days(day, &y2, &m2, &d2);
        assert_true(y1 == y2 && m1 == m2 && d1 == d2);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_rules),
        cmocka_unit_test(test_full_lists),
        cmocka_unit_test(test_tier_index),
        cmocka_unit_test(test_civil_from_days_memo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
