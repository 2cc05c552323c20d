/* test_bench_sub.c: lt-bench's subscribers read each published message's place in the stream,
 * (seq, part of parts), from payloads as the daemon renders them (pub_render(), R28), and count
 * the places skipped: messages a publisher dropped at a subscriber's high-water mark. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "entry.h"
#include "pub.h"
#include "sub_check.h"

static uint8_t g_enc[ENTRY_BYTES_MAX];
static uint8_t g_render[ENTRY_BYTES_MAX + PUB_PARTS_MAX * PUB_PART_BYTES_MAX];

static lt_entry *new_entry(lt_entry_kind kind, uint64_t seq)
{
    lt_entry *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->kind = kind;
    e->seq = seq;
    e->id = (lt_event_id){7, seq + 1000};
    e->occurred_at = 1790000000;
    strcpy(e->store_id, "S1");
    strcpy(e->member_id, "M1");
    return e;
}

static lt_posting *add_posting(lt_entry *e, const char *member, const char *before,
                               const char *after, const char *reason)
{
    lt_posting *p = &e->postings[e->postings_n++];
    strcpy(p->member_id, member);
    strcpy(p->tier_before, before);
    strcpy(p->tier_after, after);
    strcpy(p->reason, reason);
    return p;
}

/* Renders e and checks every message reads back as (e->seq, k of n) with its topic. */
static void expect_places(const lt_entry *e, const pub_topic *topics, int n)
{
    size_t len = entry_encode(e, g_enc, sizeof g_enc);
    assert_true(len > 0);
    pub_part parts[PUB_PARTS_MAX];
    assert_int_equal(pub_render(e, g_enc, len, g_render, sizeof g_render, parts), n);
    for (int k = 0; k < n; k++) {
        assert_int_equal(parts[k].topic, topics[k]);
        const char *name = pub_topic_name(parts[k].topic);
        pub_place p = {0};
        assert_int_equal(
            sub_read_place(name, strlen(name), g_render + parts[k].off, parts[k].len, &p), 1);
        assert_int_equal(p.seq, e->seq);
        assert_int_equal(p.part, k + 1);
        assert_int_equal(p.parts, n);
    }
}

static void test_sale_with_tier_change(void **state)
{
    (void)state;
    lt_entry *e = new_entry(LT_ENTRY_SALE, 41);
    lt_posting *p = add_posting(e, "M1", "silver", "gold", "sale");
    p->credit = 1200;
    p->balance_after = 5300;
    e->points_earned = 1200;
    const pub_topic t[] = {PUB_MEMBER_UPDATED, PUB_TIER_CHANGED, PUB_SALE_RATED};
    expect_places(e, t, 3);
    free(e);
}

static void test_referral_two_members(void **state)
{
    (void)state;
    lt_entry *e = new_entry(LT_ENTRY_SALE, 300000);
    add_posting(e, "M1", "base", "base", "sale")->credit = 10;
    add_posting(e, "M2", "base", "base", "referral")->credit = 500;
    const pub_topic t[] = {PUB_MEMBER_UPDATED, PUB_MEMBER_UPDATED, PUB_SALE_RATED};
    expect_places(e, t, 3);
    free(e);
}

static void test_expiry_and_notice(void **state)
{
    (void)state;
    lt_entry *e = new_entry(LT_ENTRY_EXPIRE, 9);
    add_posting(e, "M1", "base", "base", "expire")->debit = 40;
    const pub_topic t[] = {PUB_MEMBER_UPDATED, PUB_POINTS_EXPIRED};
    expect_places(e, t, 2);
    free(e);
    e = new_entry(LT_ENTRY_NOTICE, 10);
    add_posting(e, "M1", "base", "base", "points.expiring");
    const pub_topic n[] = {PUB_POINTS_EXPIRING};
    expect_places(e, n, 1);
    free(e);
}

static void test_heartbeat_and_bad_payloads(void **state)
{
    (void)state;
    pub_place p = {0};
    const uint8_t hb[] = {0x08, 0x05, 0x10, 0x01};
    assert_int_equal(sub_read_place("heartbeat", 9, hb, sizeof hb, &p), 0);
    /* a topic unknown here is an error, not a message to skip (it would show as gaps) */
    assert_int_equal(sub_read_place("some.new.topic", 14, hb, sizeof hb, &p), -1);
    /* sale.rated: seq 5, part 1, parts 1, then a length running past the end */
    const uint8_t cut[] = {0x08, 0x05, 0x10, 0x01, 0x18, 0x01, 0x22, 0x7f, 0x00};
    assert_int_equal(sub_read_place("sale.rated", 10, cut, sizeof cut, &p), -1);
    const uint8_t part0[] = {0x08, 0x05, 0x18, 0x01}; /* no part */
    assert_int_equal(sub_read_place("sale.rated", 10, part0, sizeof part0, &p), -1);
    const uint8_t over[] = {0x08, 0x05, 0x10, 0x03, 0x18, 0x02}; /* part 3 of 2 */
    assert_int_equal(sub_read_place("sale.rated", 10, over, sizeof over, &p), -1);
    const uint8_t ok[] = {0x08, 0x05, 0x10, 0x02, 0x18, 0x02};
    assert_int_equal(sub_read_place("sale.rated", 10, ok, sizeof ok, &p), 1);
    assert_int_equal(p.seq, 5);
    assert_int_equal(p.part, 2);
    assert_int_equal(p.parts, 2);
    /* fixed64 (field 11) and fixed32 (field 12) fields are skipped; cut short, refused */
    const uint8_t fixed[] = {0x08, 0x06, 0x59, 1, 2, 3, 4,    5,    6,    7,
                             8,    0x65, 1,    2, 3, 4, 0x10, 0x01, 0x18, 0x01};
    assert_int_equal(sub_read_place("sale.rated", 10, fixed, sizeof fixed, &p), 1);
    assert_int_equal(p.seq, 6);
    assert_int_equal(p.parts, 1);
    assert_int_equal(sub_read_place("sale.rated", 10, fixed, 9, &p), -1);
    const uint8_t unended[] = {0x08, 0x85}; /* a varint without its last byte */
    assert_int_equal(sub_read_place("member.updated", 14, unended, sizeof unended, &p), -1);
}

static void add(sub_track *t, uint64_t seq, uint32_t part, uint32_t parts)
{
    pub_place p = {seq, part, parts};
    sub_track_add(t, &p);
}

static void test_track_in_order(void **state)
{
    (void)state;
    sub_track t = {0};
    add(&t, 100, 2, 3); /* joined mid-entry: not a gap */
    add(&t, 100, 3, 3);
    uint64_t sent = 2;
    for (uint64_t s = 101; s < 1000; s++) {
        uint32_t n = 1 + (uint32_t)(s % 3);
        for (uint32_t k = 1; k <= n; k++, sent++)
            add(&t, s, k, n);
    }
    assert_int_equal(t.gaps, 0);
    assert_int_equal(t.missed, 0);
    assert_int_equal(t.messages, sent);
    add(&t, 1000, 2, 2); /* and the first message after that lost */
    assert_int_equal(t.gaps, 1);
    assert_int_equal(t.missed, 1);
}

static void test_track_gaps(void **state)
{
    (void)state;
    sub_track t = {0};
    add(&t, 1, 1, 2);
    add(&t, 1, 2, 2);
    add(&t, 2, 1, 3); /* 2 of 3 lost: entry 2 */
    add(&t, 2, 3, 3);
    assert_int_equal(t.gaps, 1);
    assert_int_equal(t.missed, 1);
    add(&t, 5, 1, 1); /* entries 3 and 4 lost whole */
    assert_int_equal(t.gaps, 2);
    assert_int_equal(t.missed, 3);
    add(&t, 6, 2, 2); /* entry 6's first part lost */
    assert_int_equal(t.gaps, 3);
    assert_int_equal(t.missed, 4);
    add(&t, 7, 1, 2); /* entry 7 part 2 and entry 8 part 1 lost */
    add(&t, 8, 2, 2);
    assert_int_equal(t.gaps, 4);
    assert_int_equal(t.missed, 6);
    add(&t, 3, 1, 1); /* a step back */
    assert_int_equal(t.gaps, 5);
    assert_int_equal(t.missed, 7);
    add(&t, 4, 1, 1);
    assert_int_equal(t.gaps, 5);
    assert_int_equal(t.messages, 10);
    sub_track_reset(&t); /* a message that could not be read: the next starts afresh */
    add(&t, 9, 2, 3);
    assert_int_equal(t.gaps, 5);
    add(&t, 11, 1, 1);
    assert_int_equal(t.gaps, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sale_with_tier_change),
        cmocka_unit_test(test_referral_two_members),
        cmocka_unit_test(test_expiry_and_notice),
        cmocka_unit_test(test_heartbeat_and_bad_payloads),
        cmocka_unit_test(test_track_in_order),
        cmocka_unit_test(test_track_gaps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
