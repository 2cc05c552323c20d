/* test_reports.c: `loyaltyctl report liability|tiers|stores` against a ledger written by the real
 * daemon: sales in two stores on known store-local days (R3), a redemption (R15), gifts (R16),
 * a referral bonus (R25), under a rules file with point_value_fen 50
 * (R2) and no expiry (so no cut-off day can move a balance while the test runs).
 */
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
#include "rules.h"

#define OFFSET_MIN 480 /* the stores' UTC offset: +08:00 */
#define OUT_BYTES_MAX 65536

static const char rules_yaml[] = "version: \"report-test\"\n"
                                 "point_value_fen: 50\n"
                                 "expiry:\n"
                                 "  mode: none\n";

static lt_daemon g_d;
static char g_rules_path[64];
static int64_t g_day; /* day D: the store-local day three days ago */

static int setup(void **state)
{
    (void)state;
    snprintf(g_rules_path, sizeof g_rules_path, "/tmp/lt-report-rules-XXXXXX");
    int fd = mkstemp(g_rules_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, rules_yaml, strlen(rules_yaml)), (ssize_t)strlen(rules_yaml));
    close(fd);
    char extra[128];
    snprintf(extra, sizeof extra, "rules_file: %s\n", g_rules_path);
    h_start(&g_d, extra);
    g_day = rules_local_day(h_now(), OFFSET_MIN) - 3;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&g_d);
    h_free_events();
    unlink(g_rules_path);
    return 0;
}

/* UTC seconds of store-local day D + day_delta at hh:mm. */
static int64_t at(int day_delta, int hh, int mm)
{
    return (g_day + day_delta) * 86400 + hh * 3600 + mm * 60 - OFFSET_MIN * 60;
}

/* "YYYY-MM-DD" of day D + day_delta. */
static const char *date(int day_delta, char *buf, size_t cap)
{
    int y, m, d;
    rules_civil_from_days(g_day + day_delta, &y, &m, &d);
    snprintf(buf, cap, "%04d-%02d-%02d", y, m, d);
    return buf;
}

static uint64_t g_eid;

static Loyalty__Event *sale(const char *store, const char *member, int64_t t, int64_t paid,
                            int64_t redeem)
{
    Loyalty__Event *e = h_sale(7, ++g_eid, member, t, redeem);
    e->store_id = (char *)store;
    h_line(e, "SKU1", "groceries", 1, paid, paid, 0);
    return e;
}

static void send_ok(Loyalty__Event *e)
{
    Loyalty__AckBatch *r = h_send(&g_d, h_batch(1, &e), 10000);
    assert_non_null(r);
    assert_int_equal(r->n_acks, 1);
    if (r->acks[0]->status != LOYALTY__STATUS__ACCEPTED)
        fail_msg("event %llu not accepted: reason %d", (unsigned long long)e->id->event_id,
                 (int)r->acks[0]->reason);
    loyalty__ack_batch__free_unpacked(r, NULL);
}

/* The fixed history every test reads. Sales earn 1 point per yuan on groceries. */
static void send_history(void)
{
    static Loyalty__Enrol enrol = LOYALTY__ENROL__INIT;
    static Loyalty__GiftRedemption gift1 = LOYALTY__GIFT_REDEMPTION__INIT;
    static Loyalty__GiftRedemption gift2 = LOYALTY__GIFT_REDEMPTION__INIT;

    send_ok(sale("S1", "m1", at(0, 10, 0), 12345, 0)); /* eid 1: 123 points */
    send_ok(sale("S1", "m2", at(0, 11, 0), 10000, 0)); /* 100 */
    send_ok(sale("S2", "m1", at(0, 12, 0), 30000, 0)); /* 300 */
    /* 00:30 local on D+1 is 16:30 UTC on D: the store-local day counts (R3). 100 points pay
     * 5,000 fen at 50 fen a point, so 15,000 fen earn 150 (R10, R15). */
    send_ok(sale("S1", "m1", at(1, 0, 30), 20000, 100));

    Loyalty__Event *e = h_event(7, ++g_eid, "m3", at(1, 9, 0)); /* m3 referred by m1 */
    enrol.referrer = "m1";
    e->body_case = LOYALTY__EVENT__BODY_ENROL;
    e->enrol = &enrol;
    send_ok(e);
    send_ok(sale("S2", "m3", at(1, 10, 0), 8000, 0));   /* 80, and m1 gets 100 (R25) */
    send_ok(sale("S2", "m4", at(1, 11, 0), 150000, 0)); /* 1500; m4 reaches silver */

    e = h_event(7, ++g_eid, "m2", at(1, 15, 0)); /* a gift in S2: 40 points */
    e->store_id = "S2";
    gift1.has_points = 1;
    gift1.points = 40;
    gift1.reward_code = "MUG";
    e->body_case = LOYALTY__EVENT__BODY_GIFT;
    e->gift = &gift1;
    send_ok(e);

    e = h_event(7, ++g_eid, "m1", at(1, 16, 0)); /* a gift with no store: not in stores */
    e->store_id = NULL;
    gift2.has_points = 1;
    gift2.points = 10;
    gift2.reward_code = "PEN";
    e->body_case = LOYALTY__EVENT__BODY_GIFT;
    e->gift = &gift2;
    send_ok(e);

    send_ok(sale("S1", "m2", at(-1, 18, 0), 1000, 0)); /* a late sale on D-1: 10 */
}

static void ctl_ok(const char *args, char *out)
{
    int rc = h_ctl(&g_d, args, out, OUT_BYTES_MAX);
    if (rc != 0)
        fail_msg("loyaltyctl %s: exit %d: %s", args, rc, out);
}

static void test_stores_csv_per_store_and_local_day(void **state)
{
    (void)state;
    static char out[OUT_BYTES_MAX], want[2048], args[128];
    char dm1[16], d0[16], d1[16];
    send_history();
    date(-1, dm1, sizeof dm1);
    date(0, d0, sizeof d0);
    date(1, d1, sizeof d1);

    ctl_ok("report stores --csv", out);
    snprintf(want, sizeof want,
             "store,day,sales,paid_fen,paid_yuan,points_issued,referral_points,gifts,"
             "points_redeemed\n"
             "S1,%s,1,1000,10.00,10,0,0,0\n"
             "S1,%s,2,22345,223.45,223,0,0,0\n"
             "S1,%s,1,20000,200.00,150,0,0,100\n"
             "S2,%s,1,30000,300.00,300,0,0,0\n"
             "S2,%s,2,158000,1580.00,1580,100,1,40\n",
             dm1, d0, d1, d0, d1);
    assert_string_equal(out, want);

    /* inclusive range: only day D */
    snprintf(args, sizeof args, "report stores --csv --from %s --to %s", d0, d0);
    ctl_ok(args, out);
    snprintf(want, sizeof want,
             "store,day,sales,paid_fen,paid_yuan,points_issued,referral_points,gifts,"
             "points_redeemed\n"
             "S1,%s,2,22345,223.45,223,0,0,0\n"
             "S2,%s,1,30000,300.00,300,0,0,0\n",
             d0, d0);
    assert_string_equal(out, want);

    /* JSON lines: one object per row */
    snprintf(args, sizeof args, "report stores --json --from %s", d1);
    ctl_ok(args, out);
    snprintf(want, sizeof want,
             "{\"store\":\"S1\",\"day\":\"%s\",\"sales\":1,\"paid_fen\":20000,\"paid_yuan\":"
             "\"200.00\",\"points_issued\":150,\"referral_points\":0,\"gifts\":0,"
             "\"points_redeemed\":100}\n"
             "{\"store\":\"S2\",\"day\":\"%s\",\"sales\":2,\"paid_fen\":158000,\"paid_yuan\":"
             "\"1580.00\",\"points_issued\":1580,\"referral_points\":100,\"gifts\":1,"
             "\"points_redeemed\":40}\n",
             d1, d1);
    assert_string_equal(out, want);

    /* the table ends with the totals */
    ctl_ok("report stores", out);
    assert_non_null(strstr(out, "points_redeemed\n"));
    const char *total = strstr(out, "\ntotal ");
    assert_non_null(total);
    assert_non_null(strstr(total, " 7 "));      /* sales */
    assert_non_null(strstr(total, " 231345 ")); /* paid_fen */
    assert_non_null(strstr(total, " 2313.45 "));
    assert_non_null(strstr(total, " 2263 ")); /* points issued */
    assert_non_null(strstr(total, " 140\n")); /* points redeemed */

    assert_int_equal(h_ctl(&g_d, "report stores --from 2026-02-30", out, OUT_BYTES_MAX), 2);
    assert_int_equal(h_ctl(&g_d, "report stores --csv --json", out, OUT_BYTES_MAX), 2);
    assert_int_equal(h_ctl(&g_d, "report bogus", out, OUT_BYTES_MAX), 2);
}

/* The integer after "key": in a JSON line, or fails. */
static int64_t json_int(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (p == NULL)
        fail_msg("no %s in %s", key, json);
    return strtoll(p + strlen(pat), NULL, 10);
}

static void check_liability(const char *args, int64_t pos, int64_t debt)
{
    static char out[OUT_BYTES_MAX];
    ctl_ok(args, out);
    assert_int_equal(json_int(out, "seq"), 10);
    assert_int_equal(json_int(out, "point_value_fen"), 50);
    assert_int_equal(json_int(out, "members"), 4);
    assert_int_equal(json_int(out, "members_with_points"), 4);
    assert_int_equal(json_int(out, "members_in_debt"), debt > 0);
    assert_int_equal(json_int(out, "outstanding_points"), pos);
    assert_int_equal(json_int(out, "debt_points"), debt);
    assert_int_equal(json_int(out, "net_points"), pos - debt);
    assert_int_equal(json_int(out, "outstanding_fen"), pos * 50);
    assert_int_equal(json_int(out, "debt_fen"), debt * 50);
    assert_non_null(strstr(out, "\"rules_version\":\"report-test\""));
}

static void test_liability_sums_member_balances(void **state)
{
    (void)state;
    static char out[OUT_BYTES_MAX], args[256];
    send_history();
    const char *members[] = {"m1", "m2", "m3", "m4"};
    int64_t pos = 0, debt = 0;
    for (size_t i = 0; i < 4; i++) {
        int64_t b = h_balance(&g_d, members[i]);
        pos += b > 0 ? b : 0;
        debt += b < 0 ? -b : 0;
    }
    /* m1 123+300-100+150+100-10, m2 100+10-40, m3 80, m4 1500. No debt: returns (R18), the
     * only source of it, are not supported by the daemon yet (UNSUPPORTED_EVENT). */
    assert_int_equal(pos, 563 + 70 + 80 + 1500);
    assert_int_equal(debt, 0);

    snprintf(args, sizeof args, "report liability --json --rules %s", g_rules_path);
    check_liability(args, pos, debt); /* whatever the checkpoint holds, plus the tail */
    snprintf(args, sizeof args, "report liability --json --replay --rules %s", g_rules_path);
    check_liability(args, pos, debt);
    usleep(1200 * 1000); /* a checkpoint (every 500 ms) now covers the whole ledger */
    snprintf(args, sizeof args, "report liability --json --rules %s", g_rules_path);
    check_liability(args, pos, debt);

    snprintf(args, sizeof args, "report liability --rules %s", g_rules_path);
    ctl_ok(args, out);
    assert_non_null(strstr(out, "outstanding_yuan     1106.50\n"));
    assert_non_null(strstr(out, "debt_yuan            0.00\n"));
    assert_non_null(strstr(out, "net_yuan             1106.50\n"));

    /* the built-in rules: 100 fen a point, and a warning that the ledger used other rules */
    ctl_ok("report liability --csv", out);
    assert_non_null(strstr(out, "warning"));
    assert_non_null(strstr(out, ",100,4,4,0,2213,221300,2213.00,0,0,0.00,2213,221300,"
                                "2213.00\n"));
}

static void test_tiers_counts(void **state)
{
    (void)state;
    static char out[OUT_BYTES_MAX], args[256];
    send_history();
    snprintf(args, sizeof args, "report tiers --csv --rules %s", g_rules_path);
    ctl_ok(args, out);
    assert_string_equal(out, "tier,members,share_pct\n"
                             "basic,3,75.00\n"
                             "silver,1,25.00\n"
                             "gold,0,0.00\n"
                             "platinum,0,0.00\n"
                             "diamond,0,0.00\n");
    snprintf(args, sizeof args, "report tiers --json --rules %s", g_rules_path);
    ctl_ok(args, out);
    assert_non_null(strstr(out, "{\"tier\":\"basic\",\"members\":3,\"share_pct\":75.0}\n"));
    snprintf(args, sizeof args, "report tiers --rules %s", g_rules_path);
    ctl_ok(args, out);
    assert_non_null(strstr(out, "tier      members  share_pct\n"));
    assert_non_null(strstr(out, "\ntotal           4     100.00\n"));

    assert_int_equal(h_ctl(&g_d, "report tiers --help", out, OUT_BYTES_MAX), 0);
    assert_non_null(strstr(out, "usage: loyaltyctl report tiers"));
    assert_int_equal(h_ctl(&g_d, "report --help", out, OUT_BYTES_MAX), 0);
    assert_non_null(strstr(out, "report stores"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stores_csv_per_store_and_local_day, setup, teardown),
        cmocka_unit_test_setup_teardown(test_liability_sums_member_balances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiers_counts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
