/* test_entry.c: the ledger entry codec: round trips of every entry kind, rejection of bad bytes,
 * and the JSON printer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "entry.h"
#include "loyalty.pb-c.h"

static lt_entry *entry_new(lt_entry_kind kind)
{
    lt_entry *e = calloc(1, sizeof(*e));
    e->seq = 42;
    e->kind = kind;
    e->event_kind = kind <= LT_ENTRY_MERGE ? (lt_event_kind)kind : LT_EV_NONE;
    e->id = (lt_event_id){7, 1001};
    e->occurred_at = 1767225600;
    e->utc_offset_min = 480;
    strcpy(e->store_id, "S001");
    strcpy(e->member_id, "M0001");
    strcpy(e->rules_version, "2026.1");
    e->digest = 0xfedcba9876543210ull;
    return e;
}

static lt_entry *sale_entry(uint32_t lines_n)
{
    lt_entry *e = entry_new(LT_ENTRY_SALE);
    e->paid_fen = 1234567;
    e->eligible_fen = 1200000;
    e->base_points = 12000;
    e->multiplier_pct = 200;
    e->sku_points = 50;
    e->points_earned = 24050;
    e->points_redeemed = 100;
    e->lines_n = lines_n;
    for (uint32_t i = 0; i < lines_n; i++) {
        lt_line_result *l = &e->lines[i];
        l->quantity = i + 1;
        l->paid_fen = 1000 * (i + 1);
        l->eligible_fen = i % 3 ? 900 * (i + 1) : 0;
        l->redeemed_fen = i % 5;
        l->redeemed_points = i % 7;
        l->points = i * 3;
        l->qualifying_fen = -(int64_t)i; /* negative values must survive too */
    }
    e->postings_n = 3;
    lt_posting *p = &e->postings[0];
    strcpy(p->member_id, "M0001");
    p->debit = 100;
    p->credit = 24050;
    p->credit_expires_at = 1798761600;
    p->lifetime_delta_fen = 1234567;
    p->qualifying_delta = 1234567;
    strcpy(p->tier_after, "gold");
    strcpy(p->reason, "sale");
    p->balance_after = 30000;
    p->count_sale = true;
    p = &e->postings[1];
    strcpy(p->member_id, "M0002");
    p->credit = 500;
    strcpy(p->reason, "referral");
    p->balance_after = 500;
    p = &e->postings[2];
    strcpy(p->member_id, "M0003");
    p->create = true;
    p->birth_month = 12;
    p->birth_day = 31;
    p->staff = true;
    strcpy(p->referrer, "M0002");
    strcpy(p->card, "C9");
    strcpy(p->unlink_card, "C8");
    strcpy(p->reason, "enrol");
    return e;
}

/* Encodes, decodes and compares the whole struct (lines past lines_n are zero in both). */
static void round_trip(const lt_entry *e)
{
    uint8_t buf[ENTRY_BYTES_MAX];
    size_t len = entry_encode(e, buf, sizeof(buf));
    assert_true(len > 0);
    lt_entry *d = calloc(1, sizeof(*d));
    assert_int_equal(entry_decode(buf, len, d), 0);
    assert_memory_equal(e, d, sizeof(*e));
    free(d);
}

static void test_entry_sale_200_lines_round_trip(void **st)
{
    (void)st;
    lt_entry *e = sale_entry(LT_SALE_LINES_MAX);
    round_trip(e);
    uint8_t buf[ENTRY_BYTES_MAX];
    size_t len = entry_encode(e, buf, sizeof(buf));
    assert_true(len < 16 * 1024);
    /* A small buffer is refused, not overrun. */
    assert_int_equal(entry_encode(e, buf, len - 1), 0);
    assert_int_equal(entry_encode(e, buf, len), len);
    free(e);
}

static void test_entry_every_kind_round_trip(void **st)
{
    (void)st;
    for (int k = LT_ENTRY_NONE; k <= LT_ENTRY_NOTICE; k++) {
        lt_entry *e = entry_new((lt_entry_kind)k);
        switch (k) {
        case LT_ENTRY_GIFT:
            strcpy(e->reward_code, "MUG-2026");
            break;
        case LT_ENTRY_ADJUSTMENT:
            strcpy(e->reason_code, "goodwill \"quoted\"");
            strcpy(e->operator_id, "op-17");
            e->utc_offset_min = -570; /* sint32: zigzag */
            break;
        case LT_ENTRY_RETURN: /* R18: lines indexed as the sale's, clamp (Posting field 18) */
            e->original = (lt_event_id){7, 999};
            e->original_seq = 41;
            e->lines_n = 3;
            e->lines[1].quantity = 2;
            e->lines[1].points = 33;
            e->lines[1].redeemed_points = 5;
            e->points_earned = -33;
            e->points_redeemed = -5;
            e->paid_fen = -6668;
            e->postings[0].clamp = 125;
            e->postings[0].credit = 5;
            break;
        case LT_ENTRY_EXPIRE:
            e->id = (lt_event_id){0, 0};
            break;
        default:
            break;
        }
        e->postings_n = 1;
        strcpy(e->postings[0].member_id, "M0001");
        e->postings[0].debit = k;
        e->postings[0].balance_after = -5; /* R18 debt */
        round_trip(e);
        free(e);
    }
}

/* Every buffer shorter than the entry is refused without a byte written past its end (ASan
 * watches the exact-size heap buffers); a posting over 127 bytes needs a 2-byte length. */
static void test_entry_small_buffers_and_long_postings(void **st)
{
    (void)st;
    lt_entry *e = sale_entry(3);
    lt_posting *p = &e->postings[2];
    memset(p->member_id, 'm', LT_ID_MAX - 1);
    memset(p->referrer, 'r', LT_ID_MAX - 1);
    memset(p->card, 'c', LT_ID_MAX - 1);
    memset(p->unlink_card, 'u', LT_ID_MAX - 1);
    p->debit = INT64_MAX;
    p->balance_after = INT64_MIN;
    round_trip(e);
    uint8_t full[ENTRY_BYTES_MAX];
    size_t len = entry_encode(e, full, sizeof(full));
    for (size_t cap = 0; cap <= len; cap++) {
        uint8_t *buf = malloc(cap ? cap : 1);
        size_t n = entry_encode(e, buf, cap);
        assert_int_equal(n, cap == len ? len : 0);
        if (n)
            assert_memory_equal(buf, full, len);
        free(buf);
    }
    free(e);
}

static void test_entry_zero_fields_are_omitted(void **st)
{
    (void)st;
    lt_entry *e = calloc(1, sizeof(*e));
    uint8_t buf[64];
    assert_int_equal(entry_encode(e, buf, sizeof(buf)), 0); /* nothing to write */
    e->kind = LT_ENTRY_ENROL;
    assert_int_equal(entry_encode(e, buf, sizeof(buf)), 2);
    free(e);
}

static void test_entry_decode_rejects_garbage(void **st)
{
    (void)st;
    lt_entry *d = calloc(1, sizeof(*d));
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    assert_int_equal(entry_decode(junk, sizeof(junk), d), -1);
    const uint8_t truncated[] = {0x32, 0x10, 0x08}; /* id: length 16, 1 byte present */
    assert_int_equal(entry_decode(truncated, sizeof(truncated), d), -1);
    /* Truncations of a valid entry must never crash (most are rejected). */
    lt_entry *e = sale_entry(20);
    uint8_t buf[ENTRY_BYTES_MAX];
    size_t len = entry_encode(e, buf, sizeof(buf));
    for (size_t i = 0; i < len; i++)
        (void)entry_decode(buf, i, d);
    /* Bit flips likewise. */
    for (size_t i = 0; i < len; i += 7) {
        buf[i] ^= 0x5a;
        (void)entry_decode(buf, len, d);
        buf[i] ^= 0x5a;
    }
    free(e);
    free(d);
}

/* Packs a hand-made LedgerEntry and tries to decode it. */
static int decode_msg(Loyalty__LedgerEntry *m)
{
    static uint8_t buf[256 * 1024];
    size_t len = loyalty__ledger_entry__pack(m, buf);
    lt_entry *d = calloc(1, sizeof(*d));
    int rc = entry_decode(buf, len, d);
    free(d);
    return rc;
}

static void test_entry_decode_rejects_long_strings_and_counts(void **st)
{
    (void)st;
    char id_long[LT_ID_MAX + 1], id_fits[LT_ID_MAX];
    memset(id_long, 'x', LT_ID_MAX);
    id_long[LT_ID_MAX] = '\0';
    memset(id_fits, 'x', LT_ID_MAX - 1);
    id_fits[LT_ID_MAX - 1] = '\0';

    Loyalty__LedgerEntry m = LOYALTY__LEDGER_ENTRY__INIT;
    m.member_id = id_fits;
    assert_int_equal(decode_msg(&m), 0);
    m.member_id = id_long; /* LT_ID_MAX chars leave no room for the NUL */
    assert_int_equal(decode_msg(&m), -1);
    m.member_id = NULL;

    Loyalty__Posting p = LOYALTY__POSTING__INIT, *pp[LT_POSTINGS_MAX + 1];
    char tier_long[LT_TIER_NAME_MAX + 1];
    memset(tier_long, 't', LT_TIER_NAME_MAX);
    tier_long[LT_TIER_NAME_MAX] = '\0';
    p.tier_after = tier_long;
    pp[0] = &p;
    m.postings = pp;
    m.n_postings = 1;
    assert_int_equal(decode_msg(&m), -1);
    p.tier_after = NULL;
    assert_int_equal(decode_msg(&m), 0);
    for (size_t i = 0; i < LT_ARRAY_LEN(pp); i++)
        pp[i] = &p;
    m.n_postings = LT_POSTINGS_MAX + 1;
    assert_int_equal(decode_msg(&m), -1);
    m.n_postings = 0;

    static Loyalty__LineResult lines[LT_SALE_LINES_MAX + 1];
    static Loyalty__LineResult *lp[LT_SALE_LINES_MAX + 1];
    for (size_t i = 0; i < LT_ARRAY_LEN(lines); i++) {
        loyalty__line_result__init(&lines[i]);
        lp[i] = &lines[i];
    }
    m.lines = lp;
    m.n_lines = LT_SALE_LINES_MAX;
    assert_int_equal(decode_msg(&m), 0);
    m.n_lines = LT_SALE_LINES_MAX + 1;
    assert_int_equal(decode_msg(&m), -1);
    /* A line index that disagrees with its position. */
    m.n_lines = 2;
    lines[1].has_index = 1;
    lines[1].index = 5;
    assert_int_equal(decode_msg(&m), -1);
    lines[1].index = 1;
    assert_int_equal(decode_msg(&m), 0);
    m.n_lines = 0;

    m.has_kind = 1;
    m.kind = 99;
    assert_int_equal(decode_msg(&m), -1);
}

static void test_entry_print_json(void **st)
{
    (void)st;
    lt_entry *e = sale_entry(2);
    strcpy(e->reason_code, "a\"b\\c\n\x01");
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_int_equal(entry_print_json(e, f), 0);
    fclose(f);
    assert_non_null(strstr(text, "\"seq\":42,\"kind\":\"sale\""));
    assert_non_null(strstr(text, "\"reason_code\":\"a\\\"b\\\\c\\n\\u0001\""));
    assert_non_null(strstr(text, "\"digest\":\"fedcba9876543210\""));
    assert_non_null(strstr(text, "\"tier_after\":\"gold\""));
    assert_non_null(strstr(text, "\"lines\":[{\"quantity\":1,"));
    assert_non_null(strstr(text, "\"unlink_card\":\"C8\",\"clamp\":0}"));
    /* One line: the only newline is the last character. */
    assert_ptr_equal(strchr(text, '\n'), text + size - 1);
    free(text);
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_sale_200_lines_round_trip),
        cmocka_unit_test(test_entry_every_kind_round_trip),
        cmocka_unit_test(test_entry_small_buffers_and_long_postings),
        cmocka_unit_test(test_entry_zero_fields_are_omitted),
        cmocka_unit_test(test_entry_decode_rejects_garbage),
        cmocka_unit_test(test_entry_decode_rejects_long_strings_and_counts),
        cmocka_unit_test(test_entry_print_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
