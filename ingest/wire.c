/* wire.c: a till's loyalty.EventBatch read straight from its bytes (the daemon's hot path).
 *
 * protobuf-c's unpack allocates and fills a message tree for every event and line and copies
 * every string; with the conversion to lt_event it was 21% of the loop thread in a profile of
 * the closed loop, this reader and the same conversion 18.5% (docs/performance.md). Here the
 * message is checked once as a whole (ingest_batch_scan), then each event is decoded on its
 * own into ingest_raw_event (views into the message, no copies) and validated by the same code
 * as ingest_event_from_pb.
 *
 * The answer must be protobuf-c's for every input (tests/unit/test_ingest_wire.c and the fuzz
 * target compare them), so its rules are followed exactly, quirks included:
 *  - a tag is at most 5 bytes and its first byte must carry field bits; wire types 3, 4, 6
 *    and 7 (groups, invalid) fail the whole message; a varint is at most 10 bytes, a length
 *    prefix at most 5; unknown fields are skipped;
 *  - a known field with the wrong wire type fails the whole message, except a bool, which is
 *    true if any byte of the field's value (its length prefix included) has a low bit set;
 *  - a uint32/sint32 takes the low 32 bits of the varint; a scalar or string given twice: the
 *    last one; a message field given twice (id, return_sale.original): the two merged, field by
 *    field; a oneof member (the event's body) given twice: the last one only; strings end at
 *    their first NUL, as C strings do.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ingest.h"
#include "ingest_raw.h"

enum { WT_VARINT = 0, WT_64 = 1, WT_LEN = 2, WT_32 = 5 };

typedef struct {
    const uint8_t *p, *end;
} rd;

/* One field: its number, wire type and value bytes [v, v_end) (for WT_LEN the payload, with
 * the prefix starting at pre). */
typedef struct {
    uint32_t num;
    int wt;
    const uint8_t *pre, *v, *v_end;
} fld;

/* The next field of a message, as protobuf-c scans it. Returns 1 with *f, 0 at the end, -1 if
 * the bytes are not a valid message. */
static inline __attribute__((always_inline)) int next_field(rd *r, fld *f)
{
    if (r->p >= r->end)
        return 0;
    size_t rem = (size_t)(r->end - r->p);
    const uint8_t *d = r->p;
    /* the common case: a one-byte tag, then a one-byte varint or length prefix */
    if (rem >= 2 && (d[0] & 0x80) == 0 && (d[0] & 0xf8) != 0 && (d[1] & 0x80) == 0) {
        f->num = (uint32_t)d[0] >> 3;
        f->wt = d[0] & 7;
        f->pre = d + 1;
        if (f->wt == WT_VARINT) {
            f->v = d + 1;
            f->v_end = d + 2;
            r->p = d + 2;
            return 1;
        }
        if (f->wt == WT_LEN && (size_t)d[1] <= rem - 2) {
            f->v = d + 2;
            f->v_end = d + 2 + d[1];
            r->p = f->v_end;
            return 1;
        }
    }
    if ((d[0] & 0xf8) == 0)
        return -1;
    uint32_t tag = (uint32_t)(d[0] & 0x7f) >> 3;
    f->wt = d[0] & 7;
    size_t used = 0;
    if ((d[0] & 0x80) == 0) {
        used = 1;
    } else {
        size_t max = rem > 5 ? 5 : rem;
        unsigned shift = 4;
        for (size_t i = 1; i < max; i++) {
            if (d[i] & 0x80) {
                tag |= (uint32_t)(d[i] & 0x7f) << shift;
                shift += 7;
            } else {
                tag |= (uint32_t)d[i] << shift;
                used = i + 1;
                break;
            }
        }
        if (used == 0)
            return -1;
    }
    f->num = tag;
    d += used;
    rem -= used;
    f->pre = d;
    switch (f->wt) {
    case WT_VARINT: {
        size_t max = rem < 10 ? rem : 10, i;
        for (i = 0; i < max; i++)
            if ((d[i] & 0x80) == 0)
                break;
        if (i == max)
            return -1;
        f->v = d;
        f->v_end = d + i + 1;
        break;
    }
    case WT_64:
        if (rem < 8)
            return -1;
        f->v = d;
        f->v_end = d + 8;
        break;
    case WT_32:
        if (rem < 4)
            return -1;
        f->v = d;
        f->v_end = d + 4;
        break;
    case WT_LEN: {
        size_t max = rem < 5 ? rem : 5, i, val = 0;
        unsigned shift = 0;
        for (i = 0; i < max; i++) {
            val |= ((size_t)d[i] & 0x7f) << shift;
            shift += 7;
            if ((d[i] & 0x80) == 0)
                break;
        }
        if (i == max || val > rem - (i + 1))
            return -1;
        f->v = d + i + 1;
        f->v_end = f->v + val;
        break;
    }
    default:
        return -1;
    }
    r->p = f->v_end;
    return 1;
}

/* A varint's value: bits past 64 dropped (parse_uint64). */
static uint64_t varint(const fld *f)
{
    uint64_t v = 0;
    unsigned shift = 0;
    for (const uint8_t *q = f->v; q < f->v_end; q++, shift += 7) {
        if (shift < 64)
            v |= (uint64_t)(*q & 0x7f) << shift;
    }
    return v;
}

/* A bool as protobuf-c reads it, whatever the wire type: any value byte with a low bit set. */
static bool boolean(const fld *f)
{
    for (const uint8_t *q = f->wt == WT_LEN ? f->pre : f->v; q < f->v_end; q++)
        if (*q & 0x7f)
            return true;
    return false;
}

static ingest_str text(const fld *f)
{
    size_t n = (size_t)(f->v_end - f->v);
    const uint8_t *nul = n > 0 ? memchr(f->v, 0, n) : NULL;
    return (ingest_str){(const char *)f->v, nul != NULL ? (size_t)(nul - f->v) : n};
}

/* ------------------------------------------------------------------ the schema, for the scan */

enum { K_NONE = 0, K_VARINT, K_BOOL, K_LEN, K_MSG };

#define WMSG_FIELDS 17 /* field numbers 0..16 */

typedef struct wmsg wmsg;
struct wmsg {
    uint8_t kind[WMSG_FIELDS];
    const wmsg *sub[WMSG_FIELDS];
};

static const wmsg m_event_id = {{[1] = K_VARINT, [2] = K_VARINT}, {0}};
static const wmsg m_sale_line = {
    {[1] = K_LEN, [2] = K_LEN, [3] = K_VARINT, [4] = K_VARINT, [5] = K_VARINT, [6] = K_VARINT},
    {0}};
static const wmsg m_sale = {{[1] = K_MSG, [2] = K_VARINT}, {[1] = &m_sale_line}};
static const wmsg m_enrol = {
    {[1] = K_VARINT, [2] = K_VARINT, [3] = K_LEN, [4] = K_BOOL, [5] = K_LEN}, {0}};
static const wmsg m_card_link = {{[1] = K_LEN, [2] = K_LEN}, {0}};
static const wmsg m_merge = {{[1] = K_LEN}, {0}};
static const wmsg m_gift = {{[1] = K_VARINT, [2] = K_LEN}, {0}};
static const wmsg m_adjustment = {{[1] = K_VARINT, [2] = K_LEN, [3] = K_LEN}, {0}};
static const wmsg m_return_line = {{[1] = K_VARINT, [2] = K_VARINT}, {0}};
static const wmsg m_return_sale = {{[1] = K_MSG, [2] = K_MSG},
                                   {[1] = &m_event_id, [2] = &m_return_line}};
static const wmsg m_event = {{[1] = K_MSG,
                              [2] = K_LEN,
                              [3] = K_LEN,
                              [4] = K_LEN,
                              [5] = K_VARINT,
                              [6] = K_VARINT,
                              [7] = K_LEN,
                              [10] = K_MSG,
                              [11] = K_MSG,
                              [12] = K_MSG,
                              [13] = K_MSG,
                              [14] = K_MSG,
                              [15] = K_MSG,
                              [16] = K_MSG},
                             {[1] = &m_event_id,
                              [10] = &m_sale,
                              [11] = &m_enrol,
                              [12] = &m_card_link,
                              [13] = &m_gift,
                              [14] = &m_adjustment,
                              [15] = &m_return_sale,
                              [16] = &m_merge}};

/* Whether field f of a message of type m is acceptable, a message field's contents included. */
static bool check(const uint8_t *p, size_t n, const wmsg *m);

static inline bool check_field(const fld *f, const wmsg *m)
{
    int k = f->num < WMSG_FIELDS ? m->kind[f->num] : K_NONE;
    if (k == K_NONE || k == K_BOOL)
        return true;
    if (k == K_VARINT ? f->wt != WT_VARINT : f->wt != WT_LEN)
        return false;
    return k != K_MSG || check(f->v, (size_t)(f->v_end - f->v), m->sub[f->num]);
}

/* Whether [p, p+n) is a valid message of type m, everything in it included. */
static bool check(const uint8_t *p, size_t n, const wmsg *m)
{
    rd r = {p, p + n};
    fld f;
    int rc;
    while ((rc = next_field(&r, &f)) == 1) {
        if (!check_field(&f, m))
            return false;
    }
    return rc == 0;
}

/* ------------------------------------------------------------------ the batch */

int ingest_batch_scan(const uint8_t *data, size_t len, ingest_batch *out)
{
    out->has_batch_id = false;
    out->batch_id = 0;
    out->events_n = 0;
    rd r = {data, data + len};
    fld f;
    int rc;
    while ((rc = next_field(&r, &f)) == 1) {
        if (f.num == 1) {
            if (f.wt != WT_VARINT)
                return -1;
            out->has_batch_id = true;
            out->batch_id = varint(&f);
        } else if (f.num == 2) {
            if (f.wt != WT_LEN)
                return -1;
            /* checked in one walk, taking the id (the ack needs it even for a rejection) and
             * the member id (a prefetch hint) on the way */
            ingest_event_span sp = {f.v, (size_t)(f.v_end - f.v), 0, 0, NULL, 0};
            rd e = {f.v, f.v_end};
            fld g;
            int erc;
            while ((erc = next_field(&e, &g)) == 1) {
                if (!check_field(&g, &m_event))
                    return -1;
                if (g.num == 1) {
                    rd id = {g.v, g.v_end};
                    fld h;
                    while (next_field(&id, &h) == 1) {
                        if (h.num == 1)
                            sp.node_id = varint(&h);
                        else if (h.num == 2)
                            sp.event_id = varint(&h);
                    }
                } else if (g.num == 2) {
                    ingest_str m = text(&g);
                    sp.member_id = m.p;
                    sp.member_id_len = m.n;
                }
            }
            if (erc != 0)
                return -1;
            if (out->events_n < LT_BATCH_EVENTS_MAX)
                out->events[out->events_n] = sp;
            out->events_n++;
        }
    }
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ one event */

static void event_id_merge(const fld *f, bool *has_node, uint64_t *node, bool *has_event,
                           uint64_t *event)
{
    rd r = {f->v, f->v_end};
    fld g;
    while (next_field(&r, &g) == 1) {
        if (g.num == 1 && g.wt == WT_VARINT)
            *has_node = true, *node = varint(&g);
        else if (g.num == 2 && g.wt == WT_VARINT)
            *has_event = true, *event = varint(&g);
    }
}

static void sale_line(const fld *f, ingest_raw_line *l)
{
    *l = (ingest_raw_line){0};
    rd r = {f->v, f->v_end};
    fld g;
    while (next_field(&r, &g) == 1) {
        switch (g.num) {
        case 1:
            l->sku = text(&g);
            break;
        case 2:
            l->category = text(&g);
            break;
        case 3:
            l->has_quantity = true, l->quantity = (int64_t)varint(&g);
            break;
        case 4:
            l->has_unit_list_fen = true, l->unit_list_fen = (int64_t)varint(&g);
            break;
        case 5:
            l->has_unit_paid_fen = true, l->unit_paid_fen = (int64_t)varint(&g);
            break;
        case 6:
            l->flags = (uint32_t)varint(&g);
            break;
        default:
            break;
        }
    }
}

/* The event's body (the last one given) into r. */
static void body(const fld *f, ingest_raw_event *r)
{
    rd b = {f->v, f->v_end};
    fld g;
    r->body = f->num;
    while (next_field(&b, &g) == 1) {
        /* every body's known fields are numbered below 100; a higher one is unknown, and in
         * the key below would stand for another body's field (gift 13, field 101 = 1401 =
         * adjustment 14, field 1) */
        if (g.num >= 100)
            continue;
        switch (f->num * 100 + g.num) {
        case LOYALTY__EVENT__BODY_SALE * 100 + 1:
            if (r->lines_n < LT_SALE_LINES_MAX)
                sale_line(&g, &r->lines[r->lines_n]);
            r->lines_n++;
            break;
        case LOYALTY__EVENT__BODY_SALE * 100 + 2:
            r->has_redeem_points = true, r->redeem_points = (int64_t)varint(&g);
            break;
        case LOYALTY__EVENT__BODY_ENROL * 100 + 1:
            r->has_birth_month = true, r->birth_month = (uint32_t)varint(&g);
            break;
        case LOYALTY__EVENT__BODY_ENROL * 100 + 2:
            r->has_birth_day = true, r->birth_day = (uint32_t)varint(&g);
            break;
        case LOYALTY__EVENT__BODY_ENROL * 100 + 3:
            r->referrer = text(&g);
            break;
        case LOYALTY__EVENT__BODY_ENROL * 100 + 4:
            r->has_staff = true, r->staff = boolean(&g);
            break;
        case LOYALTY__EVENT__BODY_ENROL * 100 + 5:
            r->enrol_card = text(&g);
            break;
        case LOYALTY__EVENT__BODY_CARD_LINK * 100 + 1:
            r->link_card = text(&g);
            break;
        case LOYALTY__EVENT__BODY_CARD_LINK * 100 + 2:
            r->replaces_card = text(&g);
            break;
        case LOYALTY__EVENT__BODY_GIFT * 100 + 1:
        case LOYALTY__EVENT__BODY_ADJUSTMENT * 100 + 1:
            r->has_points = true, r->points = (int64_t)varint(&g);
            break;
        case LOYALTY__EVENT__BODY_GIFT * 100 + 2:
            r->reward_code = text(&g);
            break;
        case LOYALTY__EVENT__BODY_ADJUSTMENT * 100 + 2:
            r->reason_code = text(&g);
            break;
        case LOYALTY__EVENT__BODY_ADJUSTMENT * 100 + 3:
            r->operator_id = text(&g);
            break;
        case LOYALTY__EVENT__BODY_RETURN_SALE * 100 + 1:
            r->has_original = true;
            event_id_merge(&g, &r->has_orig_node_id, &r->orig_node_id, &r->has_orig_event_id,
                           &r->orig_event_id);
            break;
        case LOYALTY__EVENT__BODY_RETURN_SALE * 100 + 2:
            if (r->rlines_n < LT_RETURN_LINES_MAX) {
                ingest_raw_rline *l = &r->rlines[r->rlines_n];
                *l = (ingest_raw_rline){0};
                rd q = {g.v, g.v_end};
                fld h;
                while (next_field(&q, &h) == 1) {
                    if (h.num == 1)
                        l->has_line_index = true, l->line_index = (uint32_t)varint(&h);
                    else if (h.num == 2)
                        l->has_quantity = true, l->quantity = (int64_t)varint(&h);
                }
            }
            r->rlines_n++;
            break;
        case LOYALTY__EVENT__BODY_MERGE * 100 + 1:
            r->source_member = text(&g);
            break;
        default:
            break;
        }
    }
}

/* Decodes a valid event (checked) into the raw form and validates it. */
static int decode_event(const uint8_t *p, size_t n, const ingest_limits *lim, lt_event *out,
                        char *msg, size_t msg_len)
{
    ingest_raw_event *r = ingest_raw_begin();
    rd e = {p, p + n};
    fld f, last_body = {0};
    bool has_body = false;
    while (next_field(&e, &f) == 1) {
        switch (f.num) {
        case 1:
            r->has_id = true;
            event_id_merge(&f, &r->has_node_id, &r->node_id, &r->has_event_id, &r->event_id);
            break;
        case 2:
            r->member_id = text(&f);
            break;
        case 3:
            r->card = text(&f);
            break;
        case 4:
            r->store_id = text(&f);
            break;
        case 5:
            r->has_occurred_at = true, r->occurred_at = (int64_t)varint(&f);
            break;
        case 6: {
            uint32_t z = (uint32_t)varint(&f);
            r->has_utc_offset_min = true;
            r->utc_offset_min = (z & 1) ? -(int32_t)(z >> 1) - 1 : (int32_t)(z >> 1);
            break;
        }
        case 7:
            r->time_zone = text(&f);
            break;
        default:
            if (f.num >= LOYALTY__EVENT__BODY_SALE && f.num <= LOYALTY__EVENT__BODY_MERGE) {
                last_body = f;
                has_body = true;
            }
            break;
        }
    }
    if (has_body)
        body(&last_body, r);
    return ingest_event_from_raw(r, lim, out, msg, msg_len);
}

int ingest_event_from_wire(const uint8_t *p, size_t n, const ingest_limits *lim, lt_event *out,
                           char *msg, size_t msg_len)
{
    if (!check(p, n, &m_event)) {
        ingest_event_reset(out);
        snprintf(msg, msg_len, "event is not a valid loyalty.Event");
        return LT_R_DECODE_ERROR;
    }
    return decode_event(p, n, lim, out, msg, msg_len);
}

int ingest_batch_event(const ingest_event_span *e, const ingest_limits *lim, lt_event *out,
                       char *msg, size_t msg_len)
{
    return decode_event(e->p, e->n, lim, out, msg, msg_len);
}
