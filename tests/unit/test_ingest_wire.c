/* test_ingest_wire.c: the direct EventBatch reader (ingest_batch_scan, ingest_event_from_wire)
 * against the reference path (protobuf-c unpack, then ingest_event_from_pb): the same verdict
 * on the message, the same ids and member ids, and for every event the same reason, message and
 * lt_event (through ingest_event_from_wire and through ingest_batch_event), on hand-made edge cases
 * of the wire format and on 300,000 mutated messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest.h"
#include "test_rng.h"

#define NOW 1767225600LL /* 2026-01-01T00:00:00Z */

static const ingest_limits LIM = {NOW, 300, 90LL * 86400};

static ingest_batch g_batch;
static lt_event g_a, g_b;
static uint64_t g_compared_events, g_valid_msgs;

/* Both paths on one message; fails the test on any difference. */
static void compare(const uint8_t *buf, size_t len)
{
    Loyalty__EventBatch *eb = loyalty__event_batch__unpack(NULL, len, buf);
    int rc = ingest_batch_scan(buf, len, &g_batch);
    if ((eb == NULL) != (rc != 0)) {
        fprintf(stderr, "verdict differs on %zu bytes: protobuf-c %s, scan %d\n", len,
                eb == NULL ? "NULL" : "ok", rc);
        fail();
    }
    if (eb == NULL)
        return;
    g_valid_msgs++;
    assert_int_equal(g_batch.has_batch_id, eb->has_batch_id);
    assert_true(g_batch.batch_id == eb->batch_id);
    assert_int_equal(g_batch.events_n, eb->n_events);
    for (size_t i = 0; i < eb->n_events && i < LT_BATCH_EVENTS_MAX; i++) {
        const Loyalty__Event *pe = eb->events[i];
        const ingest_event_span *s = &g_batch.events[i];
        assert_true(s->node_id == (pe->id != NULL ? pe->id->node_id : 0));
        assert_true(s->event_id == (pe->id != NULL ? pe->id->event_id : 0));
        if (pe->member_id == NULL) {
            assert_null(s->member_id);
        } else {
            assert_int_equal(s->member_id_len, strlen(pe->member_id));
            assert_memory_equal(s->member_id, pe->member_id, s->member_id_len);
        }
        char ma[256], mb[256];
        memset(&g_a, 0, sizeof g_a);
        memset(&g_b, 0, sizeof g_b);
        int ra = ingest_event_from_pb(pe, &LIM, &g_a, ma, sizeof ma);
        int rb = ingest_event_from_wire(s->p, s->n, &LIM, &g_b, mb, sizeof mb);
        if (ra != rb || strcmp(ma, mb) != 0) {
            fprintf(stderr, "event %zu: protobuf-c %d \"%s\", wire %d \"%s\"\n", i, ra, ma, rb, mb);
            fail();
        }
        assert_memory_equal(&g_a, &g_b, sizeof g_a);
        /* the daemon's path: the scanned span, not checked again */
        char mc[256];
        memset(&g_b, 0, sizeof g_b);
        assert_int_equal(ingest_batch_event(s, &LIM, &g_b, mc, sizeof mc), ra);
        assert_string_equal(mc, ma);
        assert_memory_equal(&g_a, &g_b, sizeof g_a);
        g_compared_events++;
    }
    loyalty__event_batch__free_unpacked(eb, NULL);
}

/* ------------------------------------------------------------------ building messages */

static size_t pack_batch(Loyalty__Event **evs, size_t n, bool with_id, uint8_t *out, size_t cap)
{
    Loyalty__EventBatch b = LOYALTY__EVENT_BATCH__INIT;
    b.has_batch_id = with_id;
    b.batch_id = 77;
    b.n_events = n;
    b.events = evs;
    size_t len = loyalty__event_batch__get_packed_size(&b);
    assert_true(len <= cap);
    return loyalty__event_batch__pack(&b, out);
}

/* A message with one event of every kind, valid ones and some the validation rejects. */
static size_t sample(uint8_t *out, size_t cap)
{
    static Loyalty__EventId ids[9], orig;
    static Loyalty__Event ev[9];
    static Loyalty__Event *evp[9];
    static Loyalty__Sale sale;
    static Loyalty__SaleLine ln[3], *lnp[3];
    static Loyalty__Enrol enrol;
    static Loyalty__CardLink link;
    static Loyalty__GiftRedemption gift;
    static Loyalty__Adjustment adj;
    static Loyalty__ReturnSale ret;
    static Loyalty__ReturnLine rl[2], *rlp[2];
    static Loyalty__Merge merge;
    for (int i = 0; i < 9; i++) {
        loyalty__event_id__init(&ids[i]);
        ids[i].has_node_id = ids[i].has_event_id = 1;
        ids[i].node_id = 3;
        ids[i].event_id = (uint64_t)i + 1;
        loyalty__event__init(&ev[i]);
        ev[i].id = &ids[i];
        ev[i].member_id = "M0001";
        ev[i].store_id = "S1";
        ev[i].has_occurred_at = 1;
        ev[i].occurred_at = NOW - 60;
        ev[i].has_utc_offset_min = 1;
        ev[i].utc_offset_min = 480;
        evp[i] = &ev[i];
    }
    loyalty__sale__init(&sale);
    for (int i = 0; i < 3; i++) {
        loyalty__sale_line__init(&ln[i]);
        ln[i].sku = i == 1 ? "SKU-2" : "SKU-1";
        ln[i].category = i == 2 ? "tobacco" : "grocery";
        ln[i].has_quantity = ln[i].has_unit_list_fen = ln[i].has_unit_paid_fen = 1;
        ln[i].quantity = i + 1;
        ln[i].unit_list_fen = 1000;
        ln[i].unit_paid_fen = 900;
        ln[i].flags = (uint32_t)i;
        lnp[i] = &ln[i];
    }
    sale.n_lines = 3;
    sale.lines = lnp;
    sale.has_redeem_points = 1;
    sale.redeem_points = 10;
    ev[0].body_case = LOYALTY__EVENT__BODY_SALE, ev[0].sale = &sale;
    loyalty__enrol__init(&enrol);
    enrol.has_birth_month = enrol.has_birth_day = enrol.has_staff = 1;
    enrol.birth_month = 2, enrol.birth_day = 29, enrol.staff = 1;
    enrol.referrer = "M0002";
    enrol.card = "C1";
    ev[1].body_case = LOYALTY__EVENT__BODY_ENROL, ev[1].enrol = &enrol;
    loyalty__card_link__init(&link);
    link.card = "C2", link.replaces_card = "C1";
    ev[2].body_case = LOYALTY__EVENT__BODY_CARD_LINK, ev[2].card_link = &link;
    loyalty__gift_redemption__init(&gift);
    gift.has_points = 1, gift.points = 500, gift.reward_code = "MUG";
    ev[3].body_case = LOYALTY__EVENT__BODY_GIFT, ev[3].gift = &gift;
    loyalty__adjustment__init(&adj);
    adj.has_points = 1, adj.points = -20, adj.reason_code = "FIX", adj.operator_id = "op";
    ev[4].body_case = LOYALTY__EVENT__BODY_ADJUSTMENT, ev[4].adjustment = &adj;
    loyalty__return_sale__init(&ret);
    loyalty__event_id__init(&orig);
    orig.has_node_id = orig.has_event_id = 1, orig.node_id = 3, orig.event_id = 1;
    ret.original = &orig;
    for (int i = 0; i < 2; i++) {
        loyalty__return_line__init(&rl[i]);
        rl[i].has_line_index = rl[i].has_quantity = 1;
        rl[i].line_index = (uint32_t)i;
        rl[i].quantity = 1;
        rlp[i] = &rl[i];
    }
    ret.n_lines = 2, ret.lines = rlp;
    ev[5].body_case = LOYALTY__EVENT__BODY_RETURN_SALE, ev[5].return_sale = &ret;
    loyalty__merge__init(&merge);
    merge.source_member = "M0009";
    ev[6].body_case = LOYALTY__EVENT__BODY_MERGE, ev[6].merge = &merge;
    /* a sale by card with an IANA zone instead of an offset */
    ev[7].member_id = NULL;
    ev[7].card = "C2";
    ev[7].has_utc_offset_min = 0;
    ev[7].time_zone = "Asia/Shanghai";
    ev[7].body_case = LOYALTY__EVENT__BODY_SALE, ev[7].sale = &sale;
    /* no body */
    return pack_batch(evp, 9, true, out, cap);
}

/* ------------------------------------------------------------------ tests */

static void valid_messages_agree(void **st)
{
    (void)st;
    uint8_t buf[8192];
    size_t n = sample(buf, sizeof buf);
    g_compared_events = 0;
    compare(buf, n);
    assert_int_equal(g_compared_events, 9);
    /* the reference accepted 8 of them and rejected the one without a body */
    compare(buf, 0); /* empty message: a valid, empty batch */
    assert_int_equal(g_batch.events_n, 0);
}

/* ------------------------------------------------------------------ hand-made bytes */

typedef struct {
    uint8_t b[512];
    size_t n;
} wbuf;

static void w_raw(wbuf *w, const void *p, size_t n)
{
    assert_true(w->n + n <= sizeof w->b);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_var(wbuf *w, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            c |= 0x80;
        w_raw(w, &c, 1);
    } while (v != 0);
}

static void w_key(wbuf *w, uint32_t num, int wt)
{
    w_var(w, (uint64_t)num << 3 | (uint64_t)wt);
}

static void w_len(wbuf *w, uint32_t num, const void *p, size_t n)
{
    w_key(w, num, 2);
    w_var(w, n);
    w_raw(w, p, n);
}

/* A valid gift event (node 3, event 1, member "M1"), then the extra bytes, as one batch. */
static void event_with(const void *extra, size_t extra_n, wbuf *msg)
{
    wbuf ev = {0}, id = {0}, gift = {0};
    w_key(&id, 1, 0), w_var(&id, 3), w_key(&id, 2, 0), w_var(&id, 1);
    w_len(&ev, 1, id.b, id.n);
    w_len(&ev, 2, "M1", 2);
    w_key(&ev, 5, 0), w_var(&ev, (uint64_t)(NOW - 60));
    w_key(&ev, 6, 0), w_var(&ev, 960); /* zigzag(480) */
    w_key(&gift, 1, 0), w_var(&gift, 5), w_len(&gift, 2, "MUG", 3);
    w_len(&ev, 13, gift.b, gift.n);
    w_raw(&ev, extra, extra_n);
    msg->n = 0;
    w_len(msg, 2, ev.b, ev.n);
}

/* Sends the event with the extra bytes through both paths; returns whether it was valid. */
static bool try_extra(const void *extra, size_t n)
{
    wbuf m;
    event_with(extra, n, &m);
    g_valid_msgs = 0;
    compare(m.b, m.n);
    return g_valid_msgs == 1;
}

/* Each rule of the wire format that a direct reader could get wrong. */
static void wire_format_edge_cases(void **st)
{
    (void)st;
    assert_true(try_extra("", 0));
    assert_true(g_batch.events[0].node_id == 3 && g_batch.events[0].event_id == 1);
    /* the id given again with only event_id: merged, node stays 3 */
    static const uint8_t id2[] = {0x0a, 0x02, 0x10, 0x09};
    assert_true(try_extra(id2, sizeof id2));
    assert_true(g_batch.events[0].node_id == 3 && g_batch.events[0].event_id == 9);
    /* member_id again, with an embedded NUL: the last one, cut at the NUL */
    static const uint8_t nul[] = {0x12, 0x03, 'M', 0x00, 'X'};
    assert_true(try_extra(nul, sizeof nul));
    assert_int_equal(g_batch.events[0].member_id_len, 1);
    /* a second body: the last one wins whole (an enrolment) */
    static const uint8_t body2[] = {0x5a, 0x02, 0x08, 0x01};
    assert_true(try_extra(body2, sizeof body2));
    assert_int_equal(g_b.kind, LT_EV_ENROL); /* then rejected: birthday 1-0 */
    /* a body's unknown field numbered 100 or more is skipped: a gift (13) with field 101 and
     * no points, which the reader once took for an adjustment's points (14 * 100 + 1 is
     * 13 * 100 + 101; a fuzz finding) */
    static const uint8_t far[] = {0x6a, 0x03, 0xa8, 0x06, 0x05};
    assert_true(try_extra(far, sizeof far));
    assert_int_equal(g_b.kind, LT_EV_GIFT); /* then rejected: no points */
    /* a non-canonical two-byte tag for store_id (field 4): 0xa2 0x00 */
    static const uint8_t tag2[] = {0xa2, 0x00, 0x02, 'S', '1'};
    assert_true(try_extra(tag2, sizeof tag2));
    /* unknown fields of every valid wire type: skipped */
    static const uint8_t unk[] = {0xf8, 0x01, 0x01, 0xf9, 0x01, 1,    2,    3, 4, 5, 6, 7,
                                  8,    0xfa, 0x01, 0x01, 0x00, 0xfd, 0x01, 1, 2, 3, 4};
    assert_true(try_extra(unk, sizeof unk));
    /* a group (wire type 3) or wire type 7: the whole message fails */
    static const uint8_t grp[] = {0xfb, 0x01};
    assert_false(try_extra(grp, sizeof grp));
    static const uint8_t wt7[] = {0xff, 0x01};
    assert_false(try_extra(wt7, sizeof wt7));
    /* a known varint field sent length-delimited, a string field as a varint: fail */
    static const uint8_t wrongwt[] = {0x2a, 0x01, 0x05};
    assert_false(try_extra(wrongwt, sizeof wrongwt));
    static const uint8_t wrongwt2[] = {0x20, 0x05};
    assert_false(try_extra(wrongwt2, sizeof wrongwt2));
    /* a tag byte without field bits: fails */
    static const uint8_t tag0[] = {0x02, 0x00};
    assert_false(try_extra(tag0, sizeof tag0));
    /* an 11-byte varint fails; a 10-byte one is read with its high bits dropped */
    static const uint8_t v11[] = {0x28, 0x80, 0x80, 0x80, 0x80, 0x80,
                                  0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
    assert_false(try_extra(v11, sizeof v11));
    static const uint8_t v10[] = {0x30, 0xc0, 0x87, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f};
    assert_true(try_extra(v10, sizeof v10));
    /* a sint32 from a varint wider than 32 bits: its low 32 bits */
    static const uint8_t wide[] = {0x30, 0xc0, 0x87, 0x80, 0x80, 0x70};
    assert_true(try_extra(wide, sizeof wide));
    /* enrol.staff (a bool) as a varint, length-delimited, fixed64 and fixed32 */
    static const uint8_t staff_var[] = {0x5a, 0x02, 0x20, 0x00};
    static const uint8_t staff_len[] = {0x5a, 0x04, 0x22, 0x02, 0x00, 0x00};
    static const uint8_t staff_f64[] = {0x5a, 0x09, 0x21, 0, 0, 0, 0, 0, 0, 0, 0x80};
    static const uint8_t staff_f32[] = {0x5a, 0x05, 0x25, 0, 0x01, 0, 0};
    assert_true(try_extra(staff_var, sizeof staff_var));
    assert_true(try_extra(staff_len, sizeof staff_len));
    assert_true(try_extra(staff_f64, sizeof staff_f64));
    assert_true(try_extra(staff_f32, sizeof staff_f32));
    /* a length prefix of 5 bytes is read; of 6 it fails */
    static const uint8_t p5[] = {0x12, 0x80, 0x80, 0x80, 0x80, 0x00};
    static const uint8_t p6[] = {0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    compare(p5, sizeof p5);
    compare(p6, sizeof p6);
    /* batch_id as the wrong wire type; events as a varint */
    static const uint8_t bad_id[] = {0x0a, 0x00};
    compare(bad_id, sizeof bad_id);
    static const uint8_t bad_events[] = {0x10, 0x01};
    compare(bad_events, sizeof bad_events);
}

/* More events than a message may carry: all checked, the first LT_BATCH_EVENTS_MAX kept. */
static void too_many_events_are_counted(void **st)
{
    (void)st;
    static uint8_t buf[(LT_BATCH_EVENTS_MAX + 5) * 2];
    size_t n = 0;
    for (int i = 0; i < LT_BATCH_EVENTS_MAX + 5; i++)
        buf[n++] = 0x12, buf[n++] = 0x00;
    compare(buf, n);
    assert_int_equal(g_batch.events_n, LT_BATCH_EVENTS_MAX + 5);
}

static uint64_t g_rng = TEST_RNG_SEED;
static uint32_t rnd(void)
{
    return (uint32_t)(test_rng_next(&g_rng) >> 11);
}

/* 300,000 mutations of the sample: byte changes, cuts, insertions, repeated slices. */
static void mutated_messages_agree(void **st)
{
    (void)st;
    uint8_t base[8192], m[16384];
    size_t bn = sample(base, sizeof base);
    g_valid_msgs = 0;
    g_compared_events = 0;
    for (int it = 0; it < 300000; it++) {
        size_t n = bn;
        memcpy(m, base, bn);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits && n > 0; e++) {
            size_t at = rnd() % n;
            switch (rnd() % 5) {
            case 0: /* a byte changed */
                m[at] = (uint8_t)rnd();
                break;
            case 1: /* a small change of a byte (a length or a value off by one) */
                m[at] = (uint8_t)(m[at] + (rnd() & 1 ? 1 : -1));
                break;
            case 2: /* cut */
                n = at;
                break;
            case 3: /* a byte inserted */
                if (n + 1 < sizeof m) {
                    memmove(m + at + 1, m + at, n - at);
                    m[at] = (uint8_t)rnd();
                    n++;
                }
                break;
            default: { /* a slice repeated: fields given twice */
                size_t len = 1 + rnd() % 64;
                if (at + len > n)
                    len = n - at;
                if (n + len < sizeof m) {
                    memmove(m + at + len, m + at, n - at);
                    n += len;
                }
                break;
            }
            }
        }
        compare(m, n);
    }
    /* the mutations must reach the event decoder, not only the message check */
    assert_true(g_valid_msgs > 10000);
    assert_true(g_compared_events > 50000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_messages_agree),
        cmocka_unit_test(wire_format_edge_cases),
        cmocka_unit_test(too_many_events_are_counted),
        cmocka_unit_test(mutated_messages_agree),
    };
    return cmocka_run_group_tests_name("ingest_wire", tests, NULL, NULL);
}
