/* test_rules_due.c: rules_due(), the time-driven rules, on hand-built members: calendar expiry
 * (R19, worked example 5, UTC+8 stores, quarterly), rolling and no expiry, one EXPIRE entry per
 * member (R20), the points.expiring notice (R21), tier period ends (R24: to_qualified, one_step,
 * retain, several periods, nothing written when nothing changes), member.birthday (R28, 29
 * February) and member.dormant, and the period marker that enrolments and sales set.
 * Exactly-once through state_apply() is in test_state_due.c.
 */
#include "test_rules_fake.h"

#define DAY 86400

/* Only expiry: no notices, so the expiry tests see one entry. */
static const char *const QUIET = "version: \"due-1\"\n"
                                 "expiry:\n"
                                 "  notice_days: 0\n"
                                 "dormant_days: 0\n"
                                 "birthday_notice: false\n";

static fake F;
static lt_entry OUT[RULES_DUE_MAX];

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    memset(OUT, 0xA5, sizeof OUT);
    return 0;
}

/* Appends a lot (callers add them in spend order). */
static void lot(lt_member *m, int64_t points, int64_t earned_at, int64_t expires_at)
{
    assert_true(m->lots_n < FAKE_LOTS_MAX);
    m->lots[m->lots_n++] = (lt_lot){points, earned_at, expires_at};
}

/* A member enrolled on 1 January 2026 (store time), period marker set, no purchase yet. */
static lt_member *member(const rules *r, const char *tier)
{
    lt_member *m = fake_add(&F, "M1", tier, 0);
    m->enrolled_at = local_time(2026, 1, 1, 9, 0, CST);
    rules_period_of(r, m->enrolled_at, CST, &m->period_start_day);
    return m;
}

static int due(const rules *r, const lt_member *m, int64_t t)
{
    return rules_due(r, m, t, CST, OUT);
}

/* What applying an EXPIRE entry does to the fake member: FIFO debit (R17). */
static void debit_lots(lt_member *m, int64_t points)
{
    while (points > 0) {
        assert_true(m->lots_n > 0);
        int64_t take = m->lots[0].points < points ? m->lots[0].points : points;
        m->lots[0].points -= take;
        points -= take;
        if (m->lots[0].points == 0) {
            memmove(m->lots, m->lots + 1, (m->lots_n - 1) * sizeof *m->lots);
            m->lots_n--;
        }
    }
}

static void check_header(const lt_entry *e, lt_entry_kind kind, int64_t t)
{
    assert_int_equal(e->kind, kind);
    assert_int_equal(e->event_kind, LT_EV_NONE);
    assert_int_equal(e->seq, 0);
    assert_int_equal(e->id.node_id, 0);
    assert_int_equal(e->id.event_id, 0);
    assert_int_equal(e->occurred_at, t);
    assert_int_equal(e->utc_offset_min, CST);
    assert_string_equal(e->member_id, "M1");
    assert_string_equal(e->rules_version, "due-1");
    assert_int_equal(e->lines_n, 0);
    assert_int_equal(e->postings_n, 1);
    assert_string_equal(e->postings[0].member_id, "M1");
}

/* R19 worked example 5 with real sales in a UTC+8 store: 23:59 on 30 December earns points
 * that expire at 00:00 on 31 December; 00:00 on 31 December belongs to the next year. */
static void test_due_R19_worked_example_5(void **st)
{
    (void)st;
    rules *r = load_ok(QUIET);
    rules_view v = fake_view(&F);
    lt_member *m = member(r, "basic");
    lt_event ev;
    lt_entry e;

    int64_t t1 = local_time(2026, 12, 30, 23, 59, CST);
    ev_init(&ev, LT_EV_SALE, "M1", t1);
    ev_line(&ev, "A", "groceries", 1, 30000, 30000, 0);
    assert_int_equal(rules_rate(r, &v, &ev, &e), LT_R_NONE);
    assert_int_equal(e.postings[0].credit, 300);
    int64_t x1 = e.postings[0].credit_expires_at;
    assert_int_equal(x1, local_time(2026, 12, 31, 0, 0, CST));

    int64_t t2 = local_time(2026, 12, 31, 0, 0, CST);
    ev_init(&ev, LT_EV_SALE, "M1", t2);
    ev_line(&ev, "A", "groceries", 1, 5000, 5000, 0);
    assert_int_equal(rules_rate(r, &v, &ev, &e), LT_R_NONE);
    assert_int_equal(e.postings[0].credit, 50);
    int64_t x2 = e.postings[0].credit_expires_at;
    assert_int_equal(x2, local_time(2027, 12, 31, 0, 0, CST));

    lot(m, 300, t1, x1);
    lot(m, 50, t2, x2);
    m->last_purchase_at = t2;
    /* one second before the cut-off nothing is due; at 00:00 local the 300 go */
    assert_int_equal(due(r, m, x1 - 1), 0);
    assert_int_equal(due(r, m, x1), 1);
    check_header(&OUT[0], LT_ENTRY_EXPIRE, x1);
    assert_string_equal(OUT[0].postings[0].reason, "expire");
    assert_int_equal(OUT[0].postings[0].debit, 300);
    assert_int_equal(OUT[0].postings[0].credit, 0);
    assert_int_equal(OUT[0].postings[0].balance_after, 50);
    /* applied: the 50 stay until 2027-12-31 00:00 local */
    debit_lots(m, 300);
    assert_int_equal(due(r, m, x1), 0);
    assert_int_equal(due(r, m, x2 - 1), 0);
    assert_int_equal(due(r, m, x2), 1);
    assert_int_equal(OUT[0].postings[0].debit, 50);
    assert_int_equal(OUT[0].postings[0].balance_after, 0);
    rules_destroy(&r);
}

/* R20: every lot expired by t goes in one entry (one per member, not per lot); lots that do
 * not expire stay; debt stays outside the lots (R18). */
static void test_due_R20_one_entry_per_member(void **st)
{
    (void)st;
    rules *r = load_ok(QUIET);
    lt_member *m = member(r, "basic");
    int64_t c1 = local_time(2025, 12, 31, 0, 0, CST), c2 = local_time(2026, 12, 31, 0, 0, CST);
    lot(m, 10, c1 - 300 * DAY, c1);
    lot(m, 20, c1 - 10 * DAY, c1);
    lot(m, 30, c1 + DAY, c2);
    lot(m, 40, c1 + DAY, 0); /* never expires */
    m->debt = 5;
    int64_t t = c2 + 3600; /* long after both: one entry */
    assert_int_equal(due(r, m, t), 1);
    check_header(&OUT[0], LT_ENTRY_EXPIRE, t);
    assert_int_equal(OUT[0].postings[0].debit, 60);
    assert_int_equal(OUT[0].postings[0].balance_after, 40 - 5);
    int64_t b = 0;
    assert_true(rules__balance(m, &b));
    assert_int_equal(b, 95);
    /* between the cut-offs only the first two */
    assert_int_equal(due(r, m, c1), 1);
    assert_int_equal(OUT[0].postings[0].debit, 30);
    assert_int_equal(OUT[0].postings[0].balance_after, 95 - 30);
    rules_destroy(&r);
}

/* R19 quarterly cut-offs, rolling ttl_days and no expiry. */
static void test_due_R19_quarterly_rolling_none(void **st)
{
    (void)st;
    rules *q = load_ok("version: \"due-1\"\n"
                       "expiry:\n"
                       "  period_months: 3\n"
                       "  notice_days: 0\n"
                       "dormant_days: 0\n"
                       "birthday_notice: false\n");
    int64_t earned = local_time(2026, 2, 10, 12, 0, CST);
    int64_t x = rules_lot_expires_at(q, earned, CST);
    assert_int_equal(x, local_time(2026, 3, 31, 0, 0, CST));
    lt_member *m = member(q, "basic");
    lot(m, 70, earned, x);
    assert_int_equal(due(q, m, x - 1), 0);
    assert_int_equal(due(q, m, x), 1);
    assert_int_equal(OUT[0].postings[0].debit, 70);
    /* a lot earned on the cut-off day belongs to the next quarter */
    assert_int_equal(rules_lot_expires_at(q, x, CST), local_time(2026, 6, 30, 0, 0, CST));
    rules_destroy(&q);

    rules *ro = load_ok("version: \"due-1\"\n"
                        "expiry:\n"
                        "  mode: rolling\n"
                        "  ttl_days: 10\n"
                        "  notice_days: 0\n"
                        "dormant_days: 0\n"
                        "birthday_notice: false\n");
    memset(&F, 0, sizeof F);
    earned = local_time(2026, 5, 1, 23, 30, CST);
    x = rules_lot_expires_at(ro, earned, CST);
    assert_int_equal(x, local_time(2026, 5, 11, 0, 0, CST));
    m = member(ro, "basic");
    lot(m, 8, earned, x);
    assert_int_equal(due(ro, m, x - 1), 0);
    assert_int_equal(due(ro, m, x), 1);
    assert_int_equal(OUT[0].postings[0].debit, 8);
    rules_destroy(&ro);

    rules *no = load_ok("version: \"due-1\"\n"
                        "expiry:\n"
                        "  mode: none\n"
                        "dormant_days: 0\n"
                        "birthday_notice: false\n");
    memset(&F, 0, sizeof F);
    assert_int_equal(rules_lot_expires_at(no, earned, CST), 0);
    m = member(no, "basic");
    lot(m, 8, earned, 0);
    /* no expiry and no notice, however late (the marker is the current period's) */
    assert_int_equal(due(no, m, local_time(2026, 12, 31, 23, 0, CST)), 0);
    rules_destroy(&no);
}

/* R21: points.expiring once per member and expiry date, notice_days before it. */
static void test_due_R21_expiring_notice(void **st)
{
    (void)st;
    rules *r = load_ok("version: \"due-1\"\n"
                       "dormant_days: 0\n"
                       "birthday_notice: false\n"); /* notice_days 30 */
    lt_member *m = member(r, "basic");
    int64_t x1 = local_time(2026, 12, 31, 0, 0, CST), x2 = local_time(2027, 12, 31, 0, 0, CST);
    lot(m, 300, x1 - 20 * DAY, x1);
    lot(m, 50, x1 + 3600, x2);
    int64_t from = x1 - 30 * DAY; /* 2026-12-01 00:00 local */
    assert_int_equal(from, local_time(2026, 12, 1, 0, 0, CST));
    assert_int_equal(due(r, m, from - 1), 0);
    assert_int_equal(due(r, m, from), 1);
    check_header(&OUT[0], LT_ENTRY_NOTICE, from);
    assert_string_equal(OUT[0].postings[0].reason, "points.expiring");
    assert_int_equal(OUT[0].postings[0].set_expiring_notified, x1);
    assert_int_equal(OUT[0].postings[0].debit, 0);
    assert_int_equal(OUT[0].postings[0].balance_after, 350);
    m->expiring_notified_until = x1; /* applied */
    assert_int_equal(due(r, m, from), 0);
    assert_int_equal(due(r, m, x1 - 1), 0);
    /* at the cut-off: the 300 expire and the 50 (a year ahead) get no notice yet */
    assert_int_equal(due(r, m, x1), 1);
    assert_int_equal(OUT[0].kind, LT_ENTRY_EXPIRE);
    debit_lots(m, 300);
    assert_int_equal(due(r, m, x2 - 30 * DAY - 1), 0);
    assert_int_equal(due(r, m, x2 - 30 * DAY), 1);
    assert_int_equal(OUT[0].kind, LT_ENTRY_NOTICE);
    assert_int_equal(OUT[0].postings[0].set_expiring_notified, x2);

    /* a member seen only after an expiry: the expired lots go, and the next lot's notice
     * comes in the same call when it is due too (its points, not the expired ones) */
    memset(&F, 0, sizeof F);
    m = member(r, "basic");
    lot(m, 5, x1 - DAY, x1);
    lot(m, 6, x1 + DAY, x1 + 10 * DAY);
    assert_int_equal(due(r, m, x1 + 2 * DAY), 2);
    assert_int_equal(OUT[0].kind, LT_ENTRY_EXPIRE);
    assert_int_equal(OUT[0].postings[0].debit, 5);
    assert_int_equal(OUT[1].kind, LT_ENTRY_NOTICE);
    assert_int_equal(OUT[1].postings[0].set_expiring_notified, x1 + 10 * DAY);
    assert_int_equal(OUT[1].postings[0].balance_after, 6);
    rules_destroy(&r);
}

/* Periods of tier_period_months from 1 January, store-local. */
static void test_due_R24_period_of(void **st)
{
    (void)st;
    rules *y = load_ok(QUIET);
    rules *q = load_ok("version: \"due-1\"\ntier_period_months: 3\n");
    int32_t d;
    rules_period_of(y, local_time(2026, 12, 31, 23, 59, CST), CST, &d);
    assert_int_equal(d, rules_days_from_civil(2026, 1, 1));
    rules_period_of(y, local_time(2027, 1, 1, 0, 0, CST), CST, &d);
    assert_int_equal(d, rules_days_from_civil(2027, 1, 1));
    /* 2027-01-01 00:30 in UTC+8 is still 2026 in UTC */
    rules_period_of(y, local_time(2027, 1, 1, 0, 30, CST), 0, &d);
    assert_int_equal(d, rules_days_from_civil(2026, 1, 1));
    rules_period_of(q, local_time(2026, 3, 31, 23, 59, CST), CST, &d);
    assert_int_equal(d, rules_days_from_civil(2026, 1, 1));
    rules_period_of(q, local_time(2026, 4, 1, 0, 0, CST), CST, &d);
    assert_int_equal(d, rules_days_from_civil(2026, 4, 1));
    rules_period_of(q, local_time(2026, 12, 5, 0, 0, CST), CST, &d);
    assert_int_equal(d, rules_days_from_civil(2026, 10, 1));
    rules_destroy(&y);
    rules_destroy(&q);
}

/* R24 to_qualified (default): below the tier's threshold at period end -> the tier the total
 * reaches; the total starts again from zero; nothing mid-period. */
static void test_due_R24_to_qualified(void **st)
{
    (void)st;
    rules *r = load_ok(QUIET);
    lt_member *m = member(r, "gold");
    m->qualifying = 150000; /* silver's 1,000 yuan, not gold's 3,000 */
    int64_t end = local_time(2027, 1, 1, 0, 0, CST);
    assert_int_equal(due(r, m, end - 1), 0); /* never mid-period */
    assert_int_equal(due(r, m, end), 1);
    check_header(&OUT[0], LT_ENTRY_TIER_PERIOD, end);
    const lt_posting *p = &OUT[0].postings[0];
    assert_string_equal(p->reason, "tier_period");
    assert_string_equal(p->tier_before, "gold");
    assert_string_equal(p->tier_after, "silver");
    assert_int_equal(p->qualifying_delta, -150000);
    assert_int_equal(p->set_period_start_day, rules_days_from_civil(2027, 1, 1));
    assert_int_equal(p->debit, 0);
    assert_int_equal(p->credit, 0);

    /* a total that reaches the tier keeps it, and still starts the new period from zero */
    m->qualifying = 300000;
    assert_int_equal(due(r, m, end), 1);
    assert_string_equal(OUT[0].postings[0].tier_after, "");
    assert_int_equal(OUT[0].postings[0].qualifying_delta, -300000);

    /* nothing at all: down to the base tier */
    m->qualifying = 0;
    assert_int_equal(due(r, m, end), 1);
    assert_string_equal(OUT[0].postings[0].tier_after, "basic");
    rules_destroy(&r);
}

/* R24 one_step and retain thresholds. */
static void test_due_R24_one_step_and_retain(void **st)
{
    (void)st;
    rules *r = load_ok("version: \"due-1\"\n"
                       "downgrade: one_step\n"
                       "tiers:\n"
                       "  - {name: basic, threshold: 0}\n"
                       "  - {name: silver, threshold: 100000}\n"
                       "  - {name: gold, threshold: 300000, retain: 200000}\n"
                       "  - {name: diamond, threshold: 1000000}\n"
                       "expiry:\n"
                       "  notice_days: 0\n"
                       "dormant_days: 0\n"
                       "birthday_notice: false\n");
    lt_member *m = member(r, "diamond");
    int64_t end = local_time(2027, 1, 1, 0, 0, CST);
    m->qualifying = 0; /* one step, however low */
    assert_int_equal(due(r, m, end), 1);
    assert_string_equal(OUT[0].postings[0].tier_after, "gold");
    /* gold keeps with 200,000 (its retain), not with 199,999 */
    strcpy(m->tier, "gold");
    m->qualifying = 200000;
    assert_int_equal(due(r, m, end), 1);
    assert_string_equal(OUT[0].postings[0].tier_after, "");
    m->qualifying = 199999;
    assert_int_equal(due(r, m, end), 1);
    assert_string_equal(OUT[0].postings[0].tier_after, "silver");
    /* never an upgrade at period end: a total above the tier changes nothing */
    strcpy(m->tier, "silver");
    m->qualifying = 2000000;
    assert_int_equal(due(r, m, end), 1);
    assert_string_equal(OUT[0].postings[0].tier_after, "");
    rules_destroy(&r);
}

/* R24 several periods at once: the member's total is its own period's; the periods after it
 * had nothing, and each drops as the rules say. */
static void test_due_R24_several_periods(void **st)
{
    (void)st;
    rules *tq = load_ok(QUIET);
    rules *os = load_ok("version: \"due-1\"\n"
                        "downgrade: one_step\n"
                        "expiry:\n"
                        "  notice_days: 0\n"
                        "dormant_days: 0\n"
                        "birthday_notice: false\n");
    lt_member *m = member(tq, "diamond");
    m->qualifying = 1000000;                       /* keeps diamond for 2026 */
    int64_t t = local_time(2028, 6, 1, 0, 0, CST); /* 2026 and 2027 ended */
    assert_int_equal(due(tq, m, t), 1);
    assert_string_equal(OUT[0].postings[0].tier_after, "basic"); /* 2027: nothing */
    assert_int_equal(OUT[0].postings[0].set_period_start_day, rules_days_from_civil(2028, 1, 1));
    assert_int_equal(rules_due(os, m, t, CST, OUT), 1);
    assert_string_equal(OUT[0].postings[0].tier_after, "platinum"); /* one step for 2027 */
    /* 2026 kept, 2027 and 2028 empty: two steps */
    assert_int_equal(rules_due(os, m, local_time(2029, 1, 1, 0, 0, CST), CST, OUT), 1);
    assert_string_equal(OUT[0].postings[0].tier_after, "gold");
    rules_destroy(&tq);
    rules_destroy(&os);
}

/* R24: a period end that would change nothing (base tier, nothing qualified) is not written;
 * the next sale moves the lagging marker, and enrolments and first sales set it. */
static void test_due_R24_noop_and_marker(void **st)
{
    (void)st;
    rules *r = load_ok(QUIET);
    rules_view v = fake_view(&F);
    lt_member *m = member(r, "basic");
    int64_t t = local_time(2028, 3, 1, 10, 0, CST);
    assert_int_equal(due(r, m, t), 0);

    lt_event ev;
    lt_entry e;
    ev_init(&ev, LT_EV_SALE, "M1", t);
    ev_line(&ev, "A", "groceries", 1, 1000, 1000, 0);
    assert_int_equal(rules_rate(r, &v, &ev, &e), LT_R_NONE);
    assert_int_equal(e.postings[0].set_period_start_day, rules_days_from_civil(2028, 1, 1));
    /* with the marker current, sales leave it */
    m->period_start_day = rules_days_from_civil(2028, 1, 1);
    assert_int_equal(rules_rate(r, &v, &ev, &e), LT_R_NONE);
    assert_int_equal(e.postings[0].set_period_start_day, 0);
    /* a sale that enrols its member starts its period */
    ev_init(&ev, LT_EV_SALE, "NEW", t);
    ev_line(&ev, "A", "groceries", 1, 1000, 1000, 0);
    assert_int_equal(rules_rate(r, &v, &ev, &e), LT_R_NONE);
    assert_true(e.postings[0].create);
    assert_int_equal(e.postings[0].set_period_start_day, rules_days_from_civil(2028, 1, 1));
    /* so does an enrolment */
    ev_init(&ev, LT_EV_ENROL, "NEW2", local_time(2027, 12, 31, 23, 59, CST));
    assert_int_equal(rules_rate(r, &v, &ev, &e), LT_R_NONE);
    assert_int_equal(e.postings[0].set_period_start_day, rules_days_from_civil(2027, 1, 1));

    /* a merge into a member whose marker lags moves it too: the source's total comes along */
    m->period_start_day = rules_days_from_civil(2026, 1, 1);
    lt_member *src = fake_add(&F, "M2", "gold", 0);
    src->qualifying = 300000;
    ev_init(&ev, LT_EV_MERGE, "M1", t);
    strcpy(ev.source_member, "M2");
    assert_int_equal(rules_rate(r, &v, &ev, &e), LT_R_NONE);
    assert_int_equal(e.kind, LT_ENTRY_MERGE);
    assert_int_equal(e.postings[0].set_period_start_day, rules_days_from_civil(2028, 1, 1));
    assert_int_equal(e.postings[1].set_period_start_day, 0);

    /* a member from before the markers (0): its period is that of its last purchase */
    m->period_start_day = 0;
    m->tier[0] = '\0';
    m->qualifying = 20000;
    m->last_purchase_at = local_time(2027, 5, 1, 10, 0, CST);
    assert_int_equal(due(r, m, local_time(2027, 12, 31, 23, 0, CST)), 0);
    assert_int_equal(due(r, m, local_time(2028, 1, 1, 0, 0, CST)), 1);
    assert_int_equal(OUT[0].kind, LT_ENTRY_TIER_PERIOD);
    assert_int_equal(OUT[0].postings[0].qualifying_delta, -20000);
    rules_destroy(&r);
}

/* R28: member.birthday on the store-local birthday, once a year; 29 February on 28 February
 * in common years. */
static void test_due_R28_birthday(void **st)
{
    (void)st;
    rules *r = load_ok("version: \"due-1\"\n"
                       "expiry:\n"
                       "  notice_days: 0\n"
                       "dormant_days: 0\n");
    lt_member *m = member(r, "basic");
    m->birth_month = 3;
    m->birth_day = 14;
    /* 2026-03-14 01:00 in UTC+8 is still the 13th in UTC */
    int64_t t = local_time(2026, 3, 14, 1, 0, CST);
    assert_int_equal(rules_due(r, m, t, 0, OUT), 0);
    assert_int_equal(due(r, m, t - 2 * 3600), 0);
    assert_int_equal(due(r, m, t), 1);
    check_header(&OUT[0], LT_ENTRY_NOTICE, t);
    assert_string_equal(OUT[0].postings[0].reason, "member.birthday");
    assert_int_equal(OUT[0].postings[0].set_birthday_year, 2026);
    m->birthday_notified_year = 2026;
    assert_int_equal(due(r, m, t + 10 * 3600), 0);
    assert_int_equal(due(r, m, local_time(2027, 3, 14, 9, 0, CST)), 1);
    assert_int_equal(OUT[0].postings[0].set_birthday_year, 2027);

    m->birth_month = 2;
    m->birth_day = 29;
    m->birthday_notified_year = 2026;
    assert_int_equal(due(r, m, local_time(2027, 2, 28, 9, 0, CST)), 1); /* common year */
    assert_int_equal(OUT[0].postings[0].set_birthday_year, 2027);
    m->birthday_notified_year = 2027;
    assert_int_equal(due(r, m, local_time(2027, 3, 1, 9, 0, CST)), 0);
    assert_int_equal(due(r, m, local_time(2028, 2, 28, 9, 0, CST)), 0); /* leap year */
    assert_int_equal(due(r, m, local_time(2028, 2, 29, 9, 0, CST)), 1);
    assert_int_equal(OUT[0].postings[0].set_birthday_year, 2028);

    /* switched off, or no birthday known: nothing */
    rules *off = load_ok(QUIET);
    assert_int_equal(rules_due(off, m, local_time(2028, 2, 29, 9, 0, CST), CST, OUT), 0);
    m->birth_month = m->birth_day = 0;
    assert_int_equal(due(r, m, local_time(2028, 2, 29, 9, 0, CST)), 0);
    rules_destroy(&off);
    rules_destroy(&r);
}

/* R28: member.dormant after dormant_days without a purchase, once per last purchase. */
static void test_due_R28_dormant(void **st)
{
    (void)st;
    rules *r = load_ok("version: \"due-1\"\n"
                       "expiry:\n"
                       "  notice_days: 0\n"
                       "birthday_notice: false\n"); /* dormant_days 90 */
    lt_member *m = member(r, "basic");
    /* never bought: counted from the enrolment */
    assert_int_equal(due(r, m, m->enrolled_at + 90 * DAY - 1), 0);
    assert_int_equal(due(r, m, m->enrolled_at + 90 * DAY), 1);
    check_header(&OUT[0], LT_ENTRY_NOTICE, m->enrolled_at + 90 * DAY);
    assert_string_equal(OUT[0].postings[0].reason, "member.dormant");
    assert_int_equal(OUT[0].postings[0].set_dormant_notified, m->enrolled_at);
    m->dormant_notified_at = m->enrolled_at;
    assert_int_equal(due(r, m, m->enrolled_at + 200 * DAY), 0);
    /* a purchase starts a new count */
    m->last_purchase_at = local_time(2026, 6, 1, 12, 0, CST);
    assert_int_equal(due(r, m, m->last_purchase_at + 89 * DAY), 0);
    assert_int_equal(due(r, m, m->last_purchase_at + 90 * DAY), 1);
    assert_int_equal(OUT[0].postings[0].set_dormant_notified, m->last_purchase_at);
    m->dormant_notified_at = m->last_purchase_at;
    assert_int_equal(due(r, m, m->last_purchase_at + 400 * DAY - 3600), 0);
    rules_destroy(&r);
}

/* Everything at once, in order: EXPIRE, TIER_PERIOD, NOTICE (its postings in the order
 * expiring, birthday, dormant); balances follow the expiry. Blocked members get no notices,
 * closed ones nothing. */
static void test_due_order_and_status(void **st)
{
    (void)st;
    rules *r = load_ok("version: \"due-1\"\n");
    lt_member *m = member(r, "gold");
    m->qualifying = 10;
    m->birth_month = 1;
    m->birth_day = 2;
    int64_t x = local_time(2026, 12, 31, 0, 0, CST);
    lot(m, 100, x - DAY, x);
    lot(m, 7, x + DAY, local_time(2027, 1, 20, 0, 0, CST));
    int64_t t = local_time(2027, 1, 2, 8, 0, CST);
    assert_int_equal(due(r, m, t), 3);
    assert_int_equal(OUT[0].kind, LT_ENTRY_EXPIRE);
    assert_int_equal(OUT[0].postings[0].balance_after, 7);
    assert_int_equal(OUT[1].kind, LT_ENTRY_TIER_PERIOD);
    assert_int_equal(OUT[1].postings[0].balance_after, 7);
    assert_string_equal(OUT[1].postings[0].tier_after, "basic");
    assert_int_equal(OUT[2].kind, LT_ENTRY_NOTICE);
    assert_int_equal(OUT[2].postings_n, 3);
    assert_string_equal(OUT[2].postings[0].reason, "points.expiring");
    assert_string_equal(OUT[2].postings[1].reason, "member.birthday");
    assert_string_equal(OUT[2].postings[2].reason, "member.dormant");
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(OUT[2].postings[i].balance_after, 7);
        assert_int_equal(OUT[2].postings[i].debit, 0);
        assert_int_equal(OUT[2].postings[i].credit, 0);
    }
    m->status = LT_MEMBER_BLOCKED;
    assert_int_equal(due(r, m, t), 2);
    m->status = LT_MEMBER_CLOSED;
    assert_int_equal(due(r, m, t), 0);
    rules_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_due_R19_worked_example_5, setup),
        cmocka_unit_test_setup(test_due_R20_one_entry_per_member, setup),
        cmocka_unit_test_setup(test_due_R19_quarterly_rolling_none, setup),
        cmocka_unit_test_setup(test_due_R21_expiring_notice, setup),
        cmocka_unit_test_setup(test_due_R24_period_of, setup),
        cmocka_unit_test_setup(test_due_R24_to_qualified, setup),
        cmocka_unit_test_setup(test_due_R24_one_step_and_retain, setup),
        cmocka_unit_test_setup(test_due_R24_several_periods, setup),
        cmocka_unit_test_setup(test_due_R24_noop_and_marker, setup),
        cmocka_unit_test_setup(test_due_R28_birthday, setup),
        cmocka_unit_test_setup(test_due_R28_dormant, setup),
        cmocka_unit_test_setup(test_due_order_and_status, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
