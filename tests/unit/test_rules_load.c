/* test_rules_load.c: the rules file loader: the defaults reproduce the seed programme of
 * RULES.md, every option is read, and bad files are refused with the right FILE:LINE.
 */
#include <stdio.h>
#include <unistd.h>

#include "test_rules_fake.h"

static void test_defaults_are_the_seed_programme(void **state)
{
    (void)state;
    rules *r = load_ok("version: seed\n");
    assert_string_equal(rules_version(r), "seed");
    assert_int_equal(r->point_value_fen, 100);                /* R2 */
    assert_int_equal(r->earn_mode, RULES_EARN_POINTS);        /* R11 */
    assert_int_equal(r->unknown_member, RULES_UNKNOWN_ENROL); /* R8 */
    assert_false(r->staff_earns);                             /* R6 */
    assert_int_equal(r->excluded_n, 3);                       /* R9 */
    assert_string_equal(r->excluded[0], "tobacco");
    assert_string_equal(r->excluded[1], "alcohol");
    assert_string_equal(r->excluded[2], "special_price");
    assert_int_equal(r->excluded_flags, LT_LINE_GROUP_BUY | LT_LINE_PROMOTION);
    assert_int_equal(r->classes_n, 2); /* R11 */
    assert_string_equal(r->classes[r->class_default].name, "default");
    assert_int_equal(r->classes[r->class_default].unit_fen, 100);
    assert_int_equal(r->class_categories_n, 2);
    assert_int_equal(r->classes[r->class_categories[0].class_index].unit_fen, 5000);
    assert_int_equal(r->bands_n, 3); /* R12 */
    assert_int_equal(r->bands[0].min_paid_pct, 80);
    assert_int_equal(r->bands[0].rate_bp, 880);
    assert_int_equal(r->bands[1].rate_bp, 500);
    assert_int_equal(r->bands[2].rate_bp, 200);
    assert_int_equal(r->stacking, RULES_STACK_MAX); /* R13 */
    assert_int_equal(r->birthday_pct, 200);
    assert_int_equal(r->promotions_n, 0);
    assert_int_equal(r->skus_n, 0);  /* R14 */
    assert_int_equal(r->tiers_n, 5); /* R22 */
    assert_string_equal(rules_tier_base(r), "basic");
    assert_string_equal(r->tiers[4].name, "diamond");
    assert_int_equal(r->tiers[1].threshold, 100000);
    assert_int_equal(r->tiers[2].threshold, 300000);
    assert_int_equal(r->tiers[3].threshold, 500000);
    assert_int_equal(r->tiers[4].threshold, 1000000);
    assert_int_equal(r->tiers[4].retain, 1000000); /* R24 */
    assert_int_equal(r->tiers[1].multiplier_pct, 100);
    assert_int_equal(r->tiers[2].multiplier_pct, 200);
    assert_int_equal(r->tier_basis, RULES_BASIS_SPEND);
    assert_int_equal(r->tier_period_months, 12);
    assert_int_equal(r->downgrade, RULES_DOWNGRADE_TO_QUALIFIED);
    assert_int_equal(rules_expiry(r), RULES_EXPIRY_CALENDAR); /* R19 */
    assert_int_equal(r->cutoff_month * 100 + r->cutoff_day, 1231);
    assert_int_equal(r->expiry_period_months, 12);
    assert_int_equal(r->ttl_days, 365);
    assert_int_equal(rules_expiry_notice_days(r), 30); /* R21 */
    assert_false(rules_negative_balance_clamp(r));     /* R18 */
    assert_int_equal(r->referral_bonus, 100);          /* R25 */
    assert_int_equal(r->referral_trigger, RULES_TRIGGER_FIRST_SALE);
    assert_int_equal(r->referral_levels_n, 0);   /* R26 */
    assert_int_equal(rules_dormant_days(r), 90); /* R28 */
    assert_true(rules_birthday_notice(r));
    rules_destroy(&r);
    assert_null(r);
    rules_destroy(&r); /* safe on NULL */
    rules_destroy(NULL);
}

/* The shipped ops/rules.yaml spells out exactly the built-in defaults. */
static void test_default_file_equals_defaults(void **state)
{
    (void)state;
    const char *text = rules_default_text();
    rules *a = load_ok(text);
    char minimal[128];
    snprintf(minimal, sizeof minimal, "version: \"%s\"\n", rules_version(a));
    rules *b = load_ok(minimal);
    assert_memory_equal(a, b, sizeof *a);
    assert_true(strlen(text) > 100);
    rules_destroy(&a);
    rules_destroy(&b);
}

static void test_every_option_is_read(void **state)
{
    (void)state;
    rules *r = load_ok("version: \"2026-07 summer\"\n"
                       "point_value_fen: 50\n"
                       "earn_mode: rebate\n"
                       "unknown_member: reject\n"
                       "staff_earns: true\n"
                       "excluded_categories: [lottery]\n"
                       "excluded_flags: []\n"
                       "earn_classes:\n"
                       "  - {name: default, unit_fen: 200}\n"
                       "  - {name: jewels, unit_fen: 100_000, categories: [gold, jade]}\n"
                       "rebate_bands:\n"
                       "  - {min_paid_pct: 90, rate_bp: 1000}\n"
                       "  - {min_paid_pct: 10, rate_bp: 100}\n"
                       "multipliers: {stacking: multiply, cap_pct: 500, birthday_pct: 150}\n"
                       "promotions:\n"
                       "  - name: double days\n"
                       "    multiplier_pct: 200\n"
                       "    from: 2026-07-01 08:30\n"
                       "    to: 2026-07-03 22:00\n"
                       "    stores: [S1, S2]\n"
                       "sku_points:\n"
                       "  - {sku: Z9, points: 3}\n"
                       "  - {sku: A1, points: 7}\n"
                       "tiers:\n"
                       "  - {name: member, threshold: 0}\n"
                       "  - {name: vip, threshold: 2000, retain: 1500, multiplier_pct: 150}\n"
                       "tier_basis: points\n"
                       "tier_period_months: 6\n"
                       "downgrade: one_step\n"
                       "expiry:\n"
                       "  mode: rolling\n"
                       "  cutoff: \"06-30\"\n"
                       "  period_months: 3\n"
                       "  ttl_days: 730\n"
                       "  notice_days: 0\n"
                       "negative_balance: clamp\n"
                       "referral: {bonus: 0, trigger: enrol, levels_bp: [500, 200, 100]}\n"
                       "dormant_days: 0\n"
                       "birthday_notice: false\n");
    assert_string_equal(rules_version(r), "2026-07 summer");
    assert_int_equal(r->point_value_fen, 50);
    assert_int_equal(r->earn_mode, RULES_EARN_REBATE);
    assert_int_equal(r->unknown_member, RULES_UNKNOWN_REJECT);
    assert_true(r->staff_earns);
    assert_int_equal(r->excluded_n, 1);
    assert_int_equal(r->excluded_flags, 0);
    assert_int_equal(r->classes[1].unit_fen, 100000);
    assert_string_equal(r->class_categories[1].category, "jade");
    assert_int_equal(r->bands_n, 2);
    assert_int_equal(r->stacking, RULES_STACK_MULTIPLY);
    assert_int_equal(r->cap_pct, 500);
    assert_int_equal(r->birthday_pct, 150);
    assert_int_equal(r->promotions_n, 1);
    assert_int_equal(r->promotions[0].from_local,
                     rules_days_from_civil(2026, 7, 1) * 86400 + 8 * 3600 + 30 * 60);
    assert_int_equal(r->promotions[0].stores_n, 2);
    assert_int_equal(r->promotions[0].categories_n, 0);
    assert_int_equal(r->skus_n, 2);
    assert_string_equal(r->skus[0].sku, "A1"); /* sorted for lookup */
    assert_int_equal(r->tiers[1].retain, 1500);
    assert_int_equal(r->tiers[1].multiplier_pct, 150);
    assert_int_equal(r->tiers[0].multiplier_pct, 100);
    assert_int_equal(r->tier_basis, RULES_BASIS_POINTS);
    assert_int_equal(r->tier_period_months, 6);
    assert_int_equal(r->downgrade, RULES_DOWNGRADE_ONE_STEP);
    assert_int_equal(rules_expiry(r), RULES_EXPIRY_ROLLING);
    assert_int_equal(r->cutoff_month * 100 + r->cutoff_day, 630);
    assert_int_equal(r->expiry_period_months, 3);
    assert_int_equal(r->ttl_days, 730);
    assert_int_equal(rules_expiry_notice_days(r), 0);
    assert_true(rules_negative_balance_clamp(r));
    assert_int_equal(r->referral_bonus, 0);
    assert_int_equal(r->referral_trigger, RULES_TRIGGER_ENROL);
    assert_int_equal(r->referral_levels_n, 3);
    assert_int_equal(r->referral_levels_bp[2], 100);
    assert_int_equal(rules_dormant_days(r), 0);
    assert_false(rules_birthday_notice(r));
    rules_destroy(&r);
}

typedef struct {
    const char *yaml;
    const char *error; /* expected prefix of the message */
} bad_case;

static const bad_case BAD[] = {
    {"", "t.yaml:1: the rules file is empty"},
    {"- a\n", "t.yaml:1: the rules file must be a mapping"},
    {"version: v\nversion: w\n", "t.yaml:2: duplicate key 'version'"},
    {"version: v\n\nfoo: 1\n", "t.yaml:3: unknown key 'foo' in the rules file"},
    {"point_value_fen: 100\n", "t.yaml:1: the rules file needs a version (R31)"},
    {"version: \"\"\n", "t.yaml:1: version must not be empty"},
    {"version: [a]\n", "t.yaml:1: version must be a string"},
    {"version: v\npoint_value_fen: 1.5\n",
     "t.yaml:2: point_value_fen must be a whole number, not '1.5' (R1: no fractions)"},
    {"version: v\npoint_value_fen: 0\n",
     "t.yaml:2: point_value_fen must be between 1 and 1000000, not 0"},
    {"version: v\npoint_value_fen: 99999999999999999999\n",
     "t.yaml:2: point_value_fen is out of range"},
    {"version: v\ndormant_days: \"90\"\n", "t.yaml:2: dormant_days must be a whole number"},
    {"version: v\nearn_mode: bonus\n", "t.yaml:2: earn_mode must be one of: points, rebate"},
    {"version: v\nstaff_earns: yes\n", "t.yaml:2: staff_earns must be true or false"},
    {"version: v\nexcluded_categories: tobacco\n", "t.yaml:2: excluded_categories must be a list"},
    {"version: v\nexcluded_categories: [a, b, a]\n",
     "t.yaml:2: 'a' is listed twice in excluded_categories"},
    {"version: v\nexcluded_flags: [vip]\n",
     "t.yaml:2: an excluded flag must be one of: group_buy, promotion"},
    {"version: v\nearn_classes:\n  - {name: x, unit_fen: 100}\n",
     "t.yaml:3: earn_classes needs a class named 'default'"},
    {"version: v\nearn_classes:\n  - {name: default, unit_fen: 100}\n"
     "  - {name: a, unit_fen: 10, categories: [tv]}\n"
     "  - {name: b, unit_fen: 10, categories: [tv]}\n",
     "t.yaml:5: category 'tv' is in two earn classes"},
    {"version: v\nearn_classes:\n  - {name: default, unit_fen: 0}\n",
     "t.yaml:3: unit_fen must be between 1 and"},
    {"version: v\nearn_classes:\n  - {name: default, unit_fen: 100, categories: [x]}\n",
     "t.yaml:3: the default class takes every other category"},
    {"version: v\nearn_classes:\n  - name: default\n    unit_fen: 100\n    colour: red\n",
     "t.yaml:5: unknown key 'colour' in an earn class"},
    {"version: v\nrebate_bands:\n  - {min_paid_pct: 50, rate_bp: 500}\n"
     "  - {min_paid_pct: 80, rate_bp: 880}\n",
     "t.yaml:4: rebate bands must be ordered by min_paid_pct, highest first"},
    {"version: v\nrebate_bands:\n  - {min_paid_pct: 50, rate_bp: 10001}\n",
     "t.yaml:3: rate_bp must be between 0 and 10000"},
    {"version: v\nmultipliers:\n  birthday_pct: 50\n",
     "t.yaml:3: birthday_pct must be between 100 and 10000, not 50"},
    {"version: v\nmultipliers:\n  stacking: add\n",
     "t.yaml:3: stacking must be one of: max, multiply"},
    {"version: v\npromotions:\n  - name: p\n    multiplier_pct: 200\n"
     "    from: 2026-05-08 00:00\n    to: 2026-05-01 00:00\n",
     "t.yaml:6: promotion 'p' ends before it starts"},
    {"version: v\npromotions:\n  - name: p\n    multiplier_pct: 200\n"
     "    from: 2026-02-30 00:00\n    to: 2026-05-01 00:00\n",
     "t.yaml:5: from is not a valid date and time"},
    {"version: v\npromotions:\n  - name: p\n    multiplier_pct: 200\n"
     "    from: tomorrow\n    to: 2026-05-01 00:00\n",
     "t.yaml:5: from must be a local time \"YYYY-MM-DD HH:MM\""},
    {"version: v\npromotions:\n  - {name: p, from: 2026-05-01 00:00, to: 2026-05-02 00:00}\n",
     "t.yaml:3: promotion 'p' needs multiplier_pct"},
    {"version: v\nsku_points:\n  - {sku: A, points: 1}\n  - {sku: A, points: 2}\n",
     "t.yaml:3: sku 'A' is listed twice in sku_points"},
    {"version: v\nsku_points:\n  - {sku: A, points: -1}\n", "t.yaml:3: points must be between"},
    {"version: v\ntiers:\n  - {name: a, threshold: 0}\n  - {name: a, threshold: 5}\n",
     "t.yaml:4: tier 'a' is defined twice"},
    {"version: v\ntiers:\n  - {name: a, threshold: 0}\n  - {name: b, threshold: 0}\n",
     "t.yaml:4: tier thresholds must increase: 'b' is not above 'a'"},
    {"version: v\ntiers:\n  - {name: a, threshold: 10}\n",
     "t.yaml:3: the lowest tier 'a' must have threshold 0"},
    {"version: v\ntiers:\n  - {name: a, threshold: 0}\n"
     "  - {name: b, threshold: 10, retain: 11}\n",
     "t.yaml:4: retain must be between 0 and 10, not 11"},
    {"version: v\ntiers:\n  - {name: averyveryverylongname, threshold: 0}\n",
     "t.yaml:3: tier name is longer than 15 bytes"},
    {"version: v\ntiers: []\n", "t.yaml:2: tiers needs at least one tier"},
    {"version: v\ntier_period_months: 5\n", "t.yaml:2: tier_period_months must divide the year"},
    {"version: v\nexpiry:\n  cutoff: \"13-01\"\n",
     "t.yaml:3: cutoff '13-01' is not a day of the year"},
    {"version: v\nexpiry:\n  cutoff: 1231\n", "t.yaml:3: cutoff must be a month-day"},
    {"version: v\nexpiry:\n  mode: weekly\n",
     "t.yaml:3: expiry mode must be one of: calendar, rolling, none"},
    {"version: v\nexpiry:\n  ttl_days: 0\n", "t.yaml:3: ttl_days must be between 1 and 36500"},
    {"version: v\nnegative_balance: forbid\n",
     "t.yaml:2: negative_balance must be one of: allow, clamp"},
    {"version: v\nreferral:\n  levels_bp: [1, 2, 3, 4]\n",
     "t.yaml:3: levels_bp has more than 3 entries"},
    {"version: v\nreferral:\n  trigger: later\n",
     "t.yaml:3: referral trigger must be one of: first_sale, enrol"},
    {"version: v\nexpiry: calendar\n", "t.yaml:2: expiry must be a mapping"},
    {"version: v\n---\nversion: w\n", "t.yaml:3: only one YAML document is allowed"},
    {"version: v\ntiers: [\n", "t.yaml:3: YAML syntax error"},
};

static void test_bad_files_name_file_and_line(void **state)
{
    (void)state;
    for (size_t i = 0; i < LT_ARRAY_LEN(BAD); i++) {
        rules *r = (rules *)&r; /* must be reset to NULL */
        char err[256] = "";
        int rc = rules_load_string(BAD[i].yaml, strlen(BAD[i].yaml), "t.yaml", &r, err, sizeof err);
        if (rc != -1 || strncmp(err, BAD[i].error, strlen(BAD[i].error)) != 0)
            fail_msg("case %zu: rc %d, got \"%s\", want \"%s...\"", i, rc, err, BAD[i].error);
        assert_null(r);
    }
}

static void test_load_file_and_errors(void **state)
{
    (void)state;
    char path[] = "/tmp/test_rules_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *yaml = "version: from-file\nearn_mode: rebate\nbogus: 1\n";
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);

    rules *r = NULL;
    char err[512], want[512];
    assert_int_equal(rules_load_file(path, &r, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3: unknown key 'bogus' in the rules file", path);
    assert_string_equal(err, want);
    assert_null(r);

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("version: from-file\n", f);
    fclose(f);
    assert_int_equal(rules_load_file(path, &r, err, sizeof err), 0);
    assert_string_equal(rules_version(r), "from-file");
    rules_destroy(&r);
    unlink(path);

    assert_int_equal(rules_load_file(path, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
    assert_null(r);

    /* a tiny error buffer truncates but stays a string */
    char small[8];
    assert_int_equal(rules_load_string("x: 1\n", 5, "t.yaml", &r, small, sizeof small), -1);
    assert_string_equal(small, "t.yaml:");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_the_seed_programme),
        cmocka_unit_test(test_default_file_equals_defaults),
        cmocka_unit_test(test_every_option_is_read),
        cmocka_unit_test(test_bad_files_name_file_and_line),
        cmocka_unit_test(test_load_file_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
