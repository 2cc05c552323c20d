/* test_state_due.c: the time-driven rules end to end through the state: events rated with
 * rules_rate() and what rules_due() finds applied with state_apply(), as the daemon does.
 * Exactly once (R20): once applied, the same question finds nothing, also in a state rebuilt
 * from member records (a restart); worked example 5 (R19); returns never downgrade
 * mid-period (R24); the markers are part of the member record and of the hash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "entry.h"
#include "rules.h"
#include "state.h"

#define DAY 86400
#define CST (8 * 60) /* UTC+8 */

static const char *const QUIET = "version: \"due-1\"\n"
                                 "expiry:\n"
                                 "  notice_days: 0\n"
                                 "dormant_days: 0\n"
                                 "birthday_notice: false\n";

static rules *R;
static state *S;
static rules_view V;
static lt_entry E, DUE[RULES_DUE_MAX];
static lt_event EV;
static uint64_t SEQ;
static lt_entry SALE; /* the last sale, for returns (R18) */
static uint64_t SALE_SEQ;

static int64_t local_time(int y, int mo, int d, int h, int mi)
{
    return rules_days_from_civil(y, mo, d) * DAY + h * 3600 + mi * 60 - (int64_t)CST * 60;
}

static int sale_lookup(void *ctx, lt_event_id id, const lt_entry **entry, const int64_t **qty,
                       uint64_t *seq)
{
    uint32_t n;
    if (SALE_SEQ == 0 || id.event_id != SALE.id.event_id)
        return -1;
    *entry = &SALE;
    *seq = SALE_SEQ;
    if (state_returned(ctx, SALE_SEQ, qty, &n) != 0)
        *qty = NULL;
    return 0;
}

static void start(const char *yaml)
{
    char err[256] = "";
    if (rules_load_string(yaml, strlen(yaml), "t.yaml", &R, err, sizeof err) != 0)
        fail_msg("rules: %s", err);
    assert_int_equal(state_new(&S), 0);
    state_view(S, &V);
    V.sale = sale_lookup;
    SEQ = 0;
    SALE_SEQ = 0;
}

static void stop(void)
{
    state_destroy(&S);
    rules_destroy(&R);
}

static void apply_entry(lt_entry *e)
{
    char err[256] = "";
    e->seq = ++SEQ;
    if (state_apply(S, e, err, sizeof err) != 0)
        fail_msg("state refused entry %d: %s", (int)e->kind, err);
}

/* Writes what is due for the member at t, as the daemon does; returns how many entries. */
static int due(const char *member, int64_t t)
{
    const lt_member *m = state_member(S, member);
    assert_non_null(m);
    int n = rules_due(R, m, t, CST, DUE);
    for (int i = 0; i < n; i++)
        apply_entry(&DUE[i]);
    /* exactly once: asking again at the same time finds nothing */
    static lt_entry again[RULES_DUE_MAX];
    assert_int_equal(rules_due(R, state_member(S, member), t, CST, again), 0);
    return n;
}

static void ev(lt_event_kind kind, const char *member, int64_t at)
{
    memset(&EV, 0, sizeof EV);
    EV.kind = kind;
    EV.id.node_id = 1;
    EV.id.event_id = SEQ + 100;
    strcpy(EV.member_id, member);
    strcpy(EV.store_id, "S1");
    EV.occurred_at = at;
    EV.utc_offset_min = CST;
}

/* Rates EV after writing what is due for its member at its time; applies the entry. */
static void rate(void)
{
    if (state_member(S, EV.member_id))
        due(EV.member_id, EV.occurred_at);
    assert_int_equal(rules_rate(R, &V, &EV, &E), LT_R_NONE);
    apply_entry(&E);
    if (E.kind == LT_ENTRY_SALE) {
        SALE = E;
        SALE_SEQ = E.seq;
    }
}

static void sale(const char *member, int64_t at, int64_t paid_fen)
{
    ev(LT_EV_SALE, member, at);
    EV.lines_n = 1;
    strcpy(EV.lines[0].sku, "A");
    strcpy(EV.lines[0].category, "groceries");
    EV.lines[0].quantity = 1;
    EV.lines[0].unit_list_fen = EV.lines[0].unit_paid_fen = paid_fen;
    rate();
}

/* R19 worked example 5 through the state: 300 earned at 23:59 on 30 December, 50 at 00:00 on
 * 31 December (UTC+8 store). The second sale's member first loses the 300. */
static void test_state_due_worked_example_5(void **st)
{
    (void)st;
    start(QUIET);
    sale("M1", local_time(2026, 12, 30, 23, 59), 30000);
    const lt_member *m = state_member(S, "M1");
    assert_int_equal(m->period_start_day, rules_days_from_civil(2026, 1, 1));
    sale("M1", local_time(2026, 12, 31, 0, 0), 5000);
    m = state_member(S, "M1");
    assert_int_equal(SEQ, 3); /* sale, expire, sale */
    assert_int_equal(state_balance(m), 50);
    assert_int_equal(m->lots_n, 1);
    assert_int_equal(m->lots[0].expires_at, local_time(2027, 12, 31, 0, 0));
    /* in 2027, 2026's period has ended: its 350 yuan are reset, basic stays basic */
    assert_int_equal(due("M1", local_time(2027, 12, 30, 23, 59)), 1);
    assert_int_equal(DUE[0].kind, LT_ENTRY_TIER_PERIOD);
    assert_int_equal(DUE[0].postings[0].qualifying_delta, -35000);
    assert_string_equal(DUE[0].postings[0].tier_after, "");
    /* a year later, 00:00 on 31 December: the 50 expire */
    assert_int_equal(due("M1", local_time(2027, 12, 31, 0, 0)), 1);
    assert_int_equal(DUE[0].kind, LT_ENTRY_EXPIRE);
    assert_int_equal(DUE[0].postings[0].debit, 50);
    m = state_member(S, "M1");
    assert_int_equal(state_balance(m), 0);
    assert_int_equal(m->qualifying, 0);
    assert_int_equal(m->period_start_day, rules_days_from_civil(2027, 1, 1));
    stop();
}

/* Every kind at once, applied, then nothing more: at the same time, later the same day, and
 * in a state rebuilt from the member records (a restart). */
static void test_state_due_exactly_once(void **st)
{
    (void)st;
    start("version: \"due-1\"\n");
    ev(LT_EV_ENROL, "M1", local_time(2026, 1, 5, 10, 0));
    EV.birth_month = 1;
    EV.birth_day = 2;
    rate();
    sale("M1", local_time(2026, 3, 1, 10, 0), 400000); /* gold */
    const lt_member *m = state_member(S, "M1");
    assert_string_equal(m->tier, "gold");
    int64_t t = local_time(2027, 1, 2, 9, 0);
    uint64_t before = state_hash(S);
    /* the 4,000 points expired on 31 December, 2026 ended (4,000 yuan keep gold), and it is
     * the birthday, 10 months after the last purchase */
    assert_int_equal(due("M1", t), 3);
    assert_int_equal(DUE[0].kind, LT_ENTRY_EXPIRE);
    assert_int_equal(DUE[0].postings[0].debit, 4000);
    assert_int_equal(DUE[1].kind, LT_ENTRY_TIER_PERIOD);
    assert_string_equal(DUE[1].postings[0].tier_after, "");
    assert_int_equal(DUE[2].kind, LT_ENTRY_NOTICE);
    assert_int_equal(DUE[2].postings_n, 2);
    assert_string_equal(DUE[2].postings[0].reason, "member.birthday");
    assert_string_equal(DUE[2].postings[1].reason, "member.dormant");
    assert_true(state_hash(S) != before);
    m = state_member(S, "M1");
    assert_int_equal(state_balance(m), 0);
    assert_int_equal(m->qualifying, 0);
    assert_string_equal(m->tier, "gold");
    assert_int_equal(m->period_start_day, rules_days_from_civil(2027, 1, 1));
    assert_int_equal(m->birthday_notified_year, 2027);
    assert_int_equal(m->dormant_notified_at, local_time(2026, 3, 1, 10, 0));
    assert_int_equal(due("M1", t + 12 * 3600), 0);

    /* a restart: the member record holds the markers */
    uint8_t buf[512];
    size_t len = state_member_encode(m, buf, sizeof buf);
    assert_true(len > 0);
    state *s2;
    assert_int_equal(state_new(&s2), 0);
    assert_int_equal(state_load_member(s2, buf, len), 0);
    assert_int_equal(state_hash(s2), state_hash(S));
    assert_int_equal(rules_due(R, state_member(s2, "M1"), t, CST, DUE), 0);
    state_destroy(&s2);

    /* a year on: the birthday again, and 2027 had nothing: down to the base tier */
    assert_int_equal(due("M1", local_time(2028, 1, 2, 9, 0)), 2);
    assert_int_equal(DUE[0].kind, LT_ENTRY_TIER_PERIOD);
    assert_string_equal(DUE[0].postings[0].tier_after, "basic");
    assert_int_equal(DUE[1].postings_n, 1);
    assert_string_equal(DUE[1].postings[0].reason, "member.birthday");
    stop();
}

/* The markers and the member's store offset are in the member record (version 4, and the
 * hash's version 3); version 2 records (no offset) and version 1 records (no markers either)
 * still load. */
static void test_state_due_markers_in_record(void **st)
{
    (void)st;
    start(QUIET);
    sale("M1", local_time(2026, 3, 1, 10, 0), 1000);
    const lt_member *m = state_member(S, "M1");
    /* R3: an event tells the member's store offset; sweeps use it */
    assert_int_equal(m->offset_known, 1);
    assert_int_equal(m->utc_offset_min, CST);
    uint8_t v2[512], v1[512];
    size_t len2 = state_member_encode_v3(m, v2, sizeof v2);
    uint64_t h0 = state_hash(S);
    /* each marker changes the hash and survives encode / load */
    lt_entry e;
    memset(&e, 0, sizeof e);
    e.kind = LT_ENTRY_NOTICE;
    e.occurred_at = local_time(2026, 3, 2, 0, 0);
    e.postings_n = 1;
    lt_posting *p = &e.postings[0];
    strcpy(p->member_id, "M1");
    strcpy(p->reason, "member.birthday");
    p->balance_after = 10;
    p->set_period_start_day = 20000;
    p->set_birthday_year = 2026;
    p->set_expiring_notified = 1800000000;
    p->set_dormant_notified = 1700000000;
    apply_entry(&e);
    m = state_member(S, "M1");
    assert_int_equal(m->period_start_day, 20000);
    assert_int_equal(m->birthday_notified_year, 2026);
    assert_int_equal(m->expiring_notified_until, 1800000000);
    assert_int_equal(m->dormant_notified_at, 1700000000);
    uint64_t h1 = state_hash(S);
    assert_true(h1 != h0);
    uint8_t buf[512], v4[512];
    size_t len = state_member_encode_v3(m, buf, sizeof buf);
    assert_int_equal(len, len2);
    assert_int_equal(buf[0], 3);
    size_t len4 = state_member_encode(m, v4, sizeof v4);
    assert_int_equal(v4[0], 4);
    assert_true(len4 < len);
    state *s2;
    assert_int_equal(state_new(&s2), 0);
    assert_int_equal(state_load_member(s2, v4, len4), 0);
    assert_int_equal(state_hash(s2), h1);
    assert_int_equal(state_load_member(s2, buf, len), 0);
    const lt_member *m2 = state_member(s2, "M1");
    assert_int_equal(m2->period_start_day, 20000);
    assert_int_equal(m2->birthday_notified_year, 2026);
    assert_int_equal(m2->expiring_notified_until, 1800000000);
    assert_int_equal(m2->dormant_notified_at, 1700000000);
    assert_int_equal(state_hash(s2), h1);
    /* a posting with 0 leaves them */
    p->set_period_start_day = p->set_birthday_year = 0;
    p->set_expiring_notified = p->set_dormant_notified = 0;
    apply_entry(&e);
    assert_int_equal(state_hash(S), h1);

    assert_int_equal(m2->offset_known, 1);
    assert_int_equal(m2->utc_offset_min, CST);

    /* version 2: the same record without the 3 offset bytes (just before u32 lots_n) */
    uint8_t v3[512];
    memcpy(v3, buf, len); /* the record with the markers set */
    size_t off_at = len2 - 4 - 24 * m->lots_n - 3;
    memcpy(v2, v3, off_at);
    memcpy(v2 + off_at, v3 + off_at + 3, len2 - off_at - 3);
    v2[0] = 2;
    size_t len_v2 = len2 - 3;
    assert_int_equal(state_load_member(s2, v2, len_v2), 0);
    m2 = state_member(s2, "M1");
    assert_int_equal(m2->offset_known, 0); /* unknown: sweeps use the configured offset */
    assert_int_equal(m2->period_start_day, 20000);

    /* version 1: also without the 24 marker bytes (they follow the five i64s) */
    size_t at = off_at - 24;
    memcpy(v1, v2, at);
    memcpy(v1 + at, v2 + at + 24, len_v2 - at - 24);
    v1[0] = 1;
    assert_int_equal(state_load_member(s2, v1, len_v2 - 24), 0);
    m2 = state_member(s2, "M1");
    assert_int_equal(m2->period_start_day, 0);
    assert_int_equal(m2->birthday_notified_year, 0);
    assert_int_equal(m2->lots_n, 1);
    assert_int_equal(state_balance(m2), 10);
    assert_int_equal(state_load_member(s2, v1, len_v2 - 23), -1);
    v1[0] = 5; /* a version this build does not know */
    assert_int_equal(state_load_member(s2, v1, len_v2 - 24), -1);
    state_destroy(&s2);
    stop();
}

/* R24: a return inside the period lowers the total but never the tier; the period end does. */
static void test_state_due_returns_never_downgrade_mid_period(void **st)
{
    (void)st;
    start(QUIET);
    sale("M1", local_time(2026, 3, 1, 10, 0), 350000);
    assert_string_equal(state_member(S, "M1")->tier, "gold");
    ev(LT_EV_RETURN, "M1", local_time(2026, 3, 5, 10, 0));
    EV.original = SALE.id;
    EV.return_lines_n = 1;
    EV.return_lines[0].line_index = 0;
    EV.return_lines[0].quantity = 1;
    rate();
    assert_int_equal(E.kind, LT_ENTRY_RETURN);
    const lt_member *m = state_member(S, "M1");
    assert_string_equal(m->tier, "gold");
    assert_int_equal(m->qualifying, 0);
    assert_int_equal(due("M1", local_time(2026, 12, 31, 23, 59)), 0);
    assert_int_equal(due("M1", local_time(2027, 1, 1, 0, 0)), 1);
    assert_int_equal(DUE[0].kind, LT_ENTRY_TIER_PERIOD);
    m = state_member(S, "M1");
    assert_string_equal(m->tier, "basic");
    stop();
}

/* The system entries survive the ledger codec (Posting fields 21..24), and the sweep cursor
 * visits every member once. */
static void test_state_due_codec_and_cursor(void **st)
{
    (void)st;
    start("version: \"due-1\"\n");
    ev(LT_EV_ENROL, "M1", local_time(2026, 1, 5, 10, 0));
    EV.birth_month = 1;
    EV.birth_day = 2;
    rate();
    sale("M2", local_time(2026, 3, 1, 10, 0), 400000);
    int n = rules_due(R, state_member(S, "M2"), local_time(2027, 1, 2, 9, 0), CST, DUE);
    assert_int_equal(n, 3);
    static uint8_t buf[ENTRY_BYTES_MAX];
    static lt_entry back;
    for (int i = 0; i < n; i++) {
        size_t len = entry_encode(&DUE[i], buf, sizeof buf);
        assert_true(len > 0);
        assert_int_equal(entry_decode(buf, len, &back), 0);
        assert_int_equal(back.kind, DUE[i].kind);
        assert_int_equal(back.event_kind, LT_EV_NONE);
        assert_int_equal(back.postings_n, DUE[i].postings_n);
        assert_string_equal(back.rules_version, "due-1");
        for (uint32_t k = 0; k < back.postings_n; k++)
            assert_memory_equal(&back.postings[k], &DUE[i].postings[k], sizeof(lt_posting));
    }
    assert_int_equal(DUE[1].postings[0].set_period_start_day, rules_days_from_civil(2027, 1, 1));
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_int_equal(entry_print_json(&DUE[1], f), 0);
    fclose(f);
    assert_non_null(strstr(text, "\"kind\":\"tier_period\""));
    assert_non_null(strstr(text, "\"set_period_start_day\":20819,"));
    free(text);

    size_t pos = 0, seen = 0;
    const lt_member *m;
    while ((m = state_member_at(S, &pos)) != NULL) {
        assert_true(!strcmp(m->id, "M1") || !strcmp(m->id, "M2"));
        seen++;
    }
    assert_int_equal(seen, 2);
    assert_int_equal(pos, 2);
    assert_null(state_member_at(S, &pos));
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_due_worked_example_5),
        cmocka_unit_test(test_state_due_exactly_once),
        cmocka_unit_test(test_state_due_markers_in_record),
        cmocka_unit_test(test_state_due_codec_and_cursor),
        cmocka_unit_test(test_state_due_returns_never_downgrade_mid_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
