/* entry_wire.c: entry_decode(): loyalty.LedgerEntry bytes straight into an lt_entry.
 *
 * Replay and start-up decode every entry of the ledger; through protobuf-c's unpack that was
 * more than half of replay's time (descriptor-driven parsing into an intermediate message, then
 * a copy). This reader walks the wire format once and writes the lt_entry fields directly,
 * first along entry_encode()'s own field order (the fast path), then generically.
 *
 * It accepts exactly what protobuf-c's unpack followed by the field checks accepted
 * (entry_decode_pb(), kept as the reference; tests/unit/test_entry_wire.c compares the two on
 * valid entries and on hundreds of thousands of mutated ones):
 *   - unknown fields are skipped (varint, fixed64, length-delimited, fixed32); groups and wire
 *     types 6 and 7 are malformed, as is a known field with the wrong wire type;
 *   - a repeated scalar field keeps its last value; a repeated submessage field (id, original)
 *     merges into the one before, as protobuf-c merges; postings and lines append;
 *   - a string is cut at its first NUL and must fit its C array with the NUL;
 *   - a bool is read whatever its wire type (protobuf-c does not check it: see rd_bool());
 *   - varints longer than 10 bytes, tags and lengths longer than 5, field number 0, and
 *     lengths beyond the buffer are malformed.
 */
#include "entry.h"

#include <stdbool.h>
#include <string.h>

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_FIXED32 = 5 };

typedef struct {
    const uint8_t *p, *end;
} rd;

#define INLINE static inline __attribute__((always_inline))

static int rd_varint(rd *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (r->p == r->end)
            return -1;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << (shift < 64 ? shift : 63);
        if (b < 0x80) {
            *v = x;
            return 0;
        }
    }
    return -1; /* more than 10 bytes */
}

/* A length prefix: a varint of at most 5 bytes, read into 64 bits as protobuf-c reads it (a
 * value past 32 bits is longer than any buffer, not cut to its low bits). */
INLINE int rd_length(rd *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < 5; i++) {
        if (r->p == r->end)
            return -1;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Skips an unknown field's value. */
static int rd_skip(rd *r, unsigned wt)
{
    uint64_t n;
    switch (wt) {
    case WT_VARINT:
        return rd_varint(r, &n);
    case WT_FIXED64:
        n = 8;
        break;
    case WT_FIXED32:
        n = 4;
        break;
    case WT_LEN:
        if (rd_length(r, &n) < 0)
            return -1;
        break;
    default:
        return -1;
    }
    if ((uint64_t)(r->end - r->p) < n)
        return -1;
    r->p += n;
    return 0;
}

/* A length-delimited value: *sub spans it and r moves past it. */
INLINE int rd_len(rd *r, rd *sub)
{
    uint64_t n;
    if (rd_length(r, &n) < 0 || (uint64_t)(r->end - r->p) < n)
        return -1;
    sub->p = r->p;
    sub->end = r->p + n;
    r->p += n;
    return 0;
}

/* A string field into its C array, cut at its first NUL. A value too long for the array is an
 * error only if no later value of the field replaces it (protobuf-c keeps a repeated field's
 * last value): it sets the field's bit in *too_long, a value that fits clears it, and the
 * message is refused at its end while a bit is set. */
static inline __attribute__((always_inline)) int rd_str(rd *r, char *dst, size_t cap,
                                                        uint32_t *too_long, uint32_t field)
{
    rd s;
    if (rd_len(r, &s) < 0)
        return -1;
    size_t n = (size_t)(s.end - s.p);
    const uint8_t *nul = memchr(s.p, 0, n);
    if (nul)
        n = (size_t)(nul - s.p);
    if (n >= cap) {
        *too_long |= 1u << field;
        n = 0;
    } else {
        *too_long &= ~(1u << field);
        memcpy(dst, s.p, n);
    }
    memset(dst + n, 0, cap - n); /* a repeated field leaves nothing of the longer one before */
    return 0;
}

/* field: the string's field number (< 32), for its bit in the message's too_long */
#define STR(r, dst, too_long, field) rd_str((r), (dst), sizeof(dst), (too_long), (field))
/* A string state_apply() does not read: skipped (its framing checked) when decoding for state */
#define TEXT(r, dst, too_long, field)                                                              \
    (state_only ? rd_skip((r), WT_LEN) : STR((r), (dst), (too_long), (field)))

/* The next field's number and wire type; 0 at the end, -1 when malformed. As protobuf-c's
 * parse_tag_and_wiretype(): at most 5 bytes, which carry 32 bits of field number. (Reading the
 * whole varint into 32 bits before taking off the wire type lost the number's top 3 bits and
 * let a wide unknown number pass for a known one.) */
static int rd_tag(rd *r, uint32_t *field, unsigned *wt)
{
    if (r->p == r->end)
        return 0;
    uint8_t b = *r->p;
    if ((b & 0xf8) == 0) /* field number 0 */
        return -1;
    *wt = b & 7;
    uint32_t f = (uint32_t)(b & 0x7f) >> 3;
    r->p++;
    if (b < 0x80) {
        *field = f;
        return 1;
    }
    for (unsigned i = 1, shift = 4; i < 5 && r->p < r->end; i++, shift += 7) {
        b = *r->p++;
        f |= (uint32_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            *field = f;
            return 1;
        }
    }
    return -1;
}

/* A bool field's value. protobuf-c does not check a bool's wire type: it is true when any byte
 * of the field's encoding (a length's prefix included) has a low bit set. Kept the same. */
static int rd_bool(rd *r, unsigned wt, uint64_t *v)
{
    const uint8_t *from = r->p;
    if (rd_skip(r, wt) < 0)
        return -1;
    *v = 0;
    for (const uint8_t *q = from; q < r->p; q++)
        if (*q & 0x7f)
            *v = 1;
    return 0;
}

/* Reads the value of a known field whose type is a varint. */
static int want_varint(rd *r, unsigned wt, uint64_t *v)
{
    return wt == WT_VARINT ? rd_varint(r, v) : -1;
}

/* ------------------------------------------------------------------ the fields
 *
 * Each message's fields are handled by one function: the generic loop (any order, repeats,
 * unknown fields) calls it with the tag it read, and the fast path (below) with constants. */

INLINE int id_field(rd *r, uint32_t f, unsigned wt, lt_event_id *id)
{
    uint64_t v;
    if (f != 1 && f != 2)
        return rd_skip(r, wt);
    if (want_varint(r, wt, &v) < 0)
        return -1;
    if (f == 1)
        id->node_id = v;
    else
        id->event_id = v;
    return 0;
}

typedef struct {
    lt_posting *p;
    uint32_t month, day;
    uint32_t too_long; /* string fields whose last value so far is too long (rd_str) */
    bool state_only;
} pctx;

INLINE int posting_field(rd *r, uint32_t f, unsigned wt, pctx *c)
{
    lt_posting *p = c->p;
    bool state_only = c->state_only;
    uint64_t v = 0;
    int rc;
    switch (f) {
    case 1:
        return wt == WT_LEN ? STR(r, p->member_id, &c->too_long, f) : -1;
    case 5:
        return wt == WT_LEN ? STR(r, p->referrer, &c->too_long, f) : -1;
    case 12:
        return wt == WT_LEN ? STR(r, p->tier_after, &c->too_long, f) : -1;
    case 13:
        return wt == WT_LEN ? STR(r, p->reason, &c->too_long, f) : -1;
    case 16:
        return wt == WT_LEN ? STR(r, p->card, &c->too_long, f) : -1;
    case 17:
        return wt == WT_LEN ? STR(r, p->unlink_card, &c->too_long, f) : -1;
    case 19:
        return wt == WT_LEN ? TEXT(r, p->tier_before, &c->too_long, f) : -1;
    case 20:
        return wt == WT_LEN ? STR(r, p->merge_from, &c->too_long, f) : -1;
    case 2:
    case 6:
    case 15:
        rc = rd_bool(r, wt, &v);
        break;
    case 3:
    case 4:
    case 7:
    case 8:
    case 9:
    case 10:
    case 11:
    case 14:
    case 18:
    case 21:
    case 22:
    case 23:
    case 24:
        rc = want_varint(r, wt, &v);
        break;
    default:
        return rd_skip(r, wt);
    }
    if (rc < 0)
        return -1;
    switch (f) {
    case 2:
        p->create = v != 0;
        break;
    case 3:
        c->month = (uint32_t)v;
        break;
    case 4:
        c->day = (uint32_t)v;
        break;
    case 6:
        p->staff = v != 0;
        break;
    case 7:
        p->debit = (int64_t)v;
        break;
    case 8:
        p->credit = (int64_t)v;
        break;
    case 9:
        p->credit_expires_at = (int64_t)v;
        break;
    case 10:
        p->lifetime_delta_fen = (int64_t)v;
        break;
    case 11:
        p->qualifying_delta = (int64_t)v;
        break;
    case 14:
        p->balance_after = (int64_t)v;
        break;
    case 15:
        p->count_sale = v != 0;
        break;
    case 18:
        p->clamp = (int64_t)v;
        break;
    case 21:
        p->set_period_start_day = (int32_t)(uint32_t)v;
        break;
    case 22:
        p->set_birthday_year = (int32_t)(uint32_t)v;
        break;
    case 23:
        p->set_expiring_notified = (int64_t)v;
        break;
    case 24:
        p->set_dormant_notified = (int64_t)v;
        break;
    }
    return 0;
}

INLINE int line_field(rd *r, uint32_t f, unsigned wt, lt_line_result *l, uint32_t *index,
                      uint32_t *too_long)
{
    uint64_t v = 0;
    if (f == 2)
        return wt == WT_LEN ? STR(r, l->sku, too_long, f) : -1;
    if (f == 3)
        return wt == WT_LEN ? STR(r, l->category, too_long, f) : -1;
    if (f != 1 && (f < 4 || f > 12))
        return rd_skip(r, wt);
    if (want_varint(r, wt, &v) < 0)
        return -1;
    switch (f) {
    case 1:
        *index = (uint32_t)v; /* the last one counts */
        break;
    case 4:
        l->quantity = (int64_t)v;
        break;
    case 5:
        l->paid_fen = (int64_t)v;
        break;
    case 6:
        l->eligible_fen = (int64_t)v;
        break;
    case 7:
        l->redeemed_fen = (int64_t)v;
        break;
    case 8:
        l->points = (int64_t)v;
        break;
    case 9:
        l->qualifying_fen = (int64_t)v;
        break;
    case 10:
        l->redeemed_points = (int64_t)v;
        break;
    case 11:
        l->unit_list_fen = (int64_t)v;
        break;
    case 12:
        l->flags = (uint32_t)v;
        break;
    }
    return 0;
}

/* ------------------------------------------------------------------ the fast path
 *
 * entry_encode() writes every field in one order, zero numbers and empty strings left out. The
 * fast path expects that order: for each field in turn, if the next bytes are exactly its tag
 * (one byte for fields 1-15, two for 16-31), it handles it with the field's own function, with
 * the field number and wire type as constants. It stops at the first byte it does not expect and
 * the generic loop goes on from there, so any input decodes exactly as the generic loop alone
 * would decode it: the fast path only saves the loop's dispatch (a tag read and an indirect jump
 * per field, most of the decoder's time: replay's reader, docs/performance.md). */

#define TAG1(f, wt) ((uint8_t)((f) << 3 | (wt)))
#define TAG2_LO(f, wt) ((uint8_t)(0x80 | (((f) << 3 | (wt)) & 0x7f)))
#define TAG2_HI(f, wt) ((uint8_t)(((f) << 3 | (wt)) >> 7))

INLINE bool at_tag1(const rd *r, uint32_t f, unsigned wt)
{
    return r->p < r->end && r->p[0] == TAG1(f, wt);
}

INLINE bool at_tag2(const rd *r, uint32_t f, unsigned wt)
{
    return r->end - r->p >= 2 && r->p[0] == TAG2_LO(f, wt) && r->p[1] == TAG2_HI(f, wt);
}

/* If the next field is f with wire type wt (tag of n bytes), reads it with call(r, f, wt, ...). */
#define FAST(n, r, f, wt, call, ...)                                                               \
    do {                                                                                           \
        if (at_tag##n((r), (f), (wt))) {                                                           \
            (r)->p += (n);                                                                         \
            if (call((r), (f), (wt), __VA_ARGS__) < 0)                                             \
                return -1;                                                                         \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------ the messages */

static int decode_id(rd *r, lt_event_id *id)
{
    rd s;
    if (rd_len(r, &s) < 0)
        return -1;
    FAST(1, &s, 1, WT_VARINT, id_field, id);
    FAST(1, &s, 2, WT_VARINT, id_field, id);
    uint32_t f;
    unsigned wt;
    int t;
    while ((t = rd_tag(&s, &f, &wt)) > 0)
        if (id_field(&s, f, wt, id) < 0)
            return -1;
    return t;
}

static int decode_posting(rd *r, lt_posting *p, bool state_only)
{
    rd s;
    if (rd_len(r, &s) < 0)
        return -1;
    pctx c = {.p = p, .state_only = state_only};
    /* entry_encode()'s order (w_posting): tier_before (19) is written after tier_after (12) */
    FAST(1, &s, 1, WT_LEN, posting_field, &c);
    FAST(1, &s, 2, WT_VARINT, posting_field, &c);
    FAST(1, &s, 3, WT_VARINT, posting_field, &c);
    FAST(1, &s, 4, WT_VARINT, posting_field, &c);
    FAST(1, &s, 5, WT_LEN, posting_field, &c);
    FAST(1, &s, 6, WT_VARINT, posting_field, &c);
    FAST(1, &s, 7, WT_VARINT, posting_field, &c);
    FAST(1, &s, 8, WT_VARINT, posting_field, &c);
    FAST(1, &s, 9, WT_VARINT, posting_field, &c);
    FAST(1, &s, 10, WT_VARINT, posting_field, &c);
    FAST(1, &s, 11, WT_VARINT, posting_field, &c);
    FAST(1, &s, 12, WT_LEN, posting_field, &c);
    FAST(2, &s, 19, WT_LEN, posting_field, &c);
    FAST(1, &s, 13, WT_LEN, posting_field, &c);
    FAST(1, &s, 14, WT_VARINT, posting_field, &c);
    FAST(1, &s, 15, WT_VARINT, posting_field, &c);
    FAST(2, &s, 16, WT_LEN, posting_field, &c);
    FAST(2, &s, 17, WT_LEN, posting_field, &c);
    FAST(2, &s, 18, WT_VARINT, posting_field, &c);
    FAST(2, &s, 20, WT_LEN, posting_field, &c);
    FAST(2, &s, 21, WT_VARINT, posting_field, &c);
    FAST(2, &s, 22, WT_VARINT, posting_field, &c);
    FAST(2, &s, 23, WT_VARINT, posting_field, &c);
    FAST(2, &s, 24, WT_VARINT, posting_field, &c);
    uint32_t f;
    unsigned wt;
    int t;
    while ((t = rd_tag(&s, &f, &wt)) > 0)
        if (posting_field(&s, f, wt, &c) < 0)
            return -1;
    if (t < 0 || c.month > 12 || c.day > 31 || c.too_long != 0)
        return -1;
    p->birth_month = (uint8_t)c.month;
    p->birth_day = (uint8_t)c.day;
    return 0;
}

static int decode_line(rd *r, uint32_t index, lt_line_result *l)
{
    rd s;
    if (rd_len(r, &s) < 0)
        return -1;
    memset(l, 0, sizeof *l);
    uint32_t got_index = index, too_long = 0;
    /* w_line(): the index (1) is not written */
    FAST(1, &s, 2, WT_LEN, line_field, l, &got_index, &too_long);
    FAST(1, &s, 3, WT_LEN, line_field, l, &got_index, &too_long);
    FAST(1, &s, 4, WT_VARINT, line_field, l, &got_index, &too_long);
    FAST(1, &s, 5, WT_VARINT, line_field, l, &got_index, &too_long);
    FAST(1, &s, 6, WT_VARINT, line_field, l, &got_index, &too_long);
    FAST(1, &s, 7, WT_VARINT, line_field, l, &got_index, &too_long);
    FAST(1, &s, 8, WT_VARINT, line_field, l, &got_index, &too_long);
    FAST(1, &s, 9, WT_VARINT, line_field, l, &got_index, &too_long);
    FAST(1, &s, 10, WT_VARINT, line_field, l, &got_index, &too_long);
    FAST(1, &s, 11, WT_VARINT, line_field, l, &got_index, &too_long);
    FAST(1, &s, 12, WT_VARINT, line_field, l, &got_index, &too_long);
    uint32_t f;
    unsigned wt;
    int t;
    while ((t = rd_tag(&s, &f, &wt)) > 0)
        if (line_field(&s, f, wt, l, &got_index, &too_long) < 0)
            return -1;
    return t < 0 || got_index != index || too_long != 0 ? -1 : 0;
}

typedef struct {
    lt_entry *e;
    bool state_only;
    int kind;
    uint32_t too_long;            /* as pctx's */
    uint32_t postings_n, lines_n; /* e's, stored at the end (not read back from the entry) */
} ectx;

INLINE int entry_field(rd *r, uint32_t f, unsigned wt, ectx *c)
{
    lt_entry *e = c->e;
    bool state_only = c->state_only;
    uint64_t v = 0;
    switch (f) {
    case 2:
        return wt == WT_LEN ? decode_id(r, &e->id) : -1;
    case 19:
        return wt == WT_LEN ? decode_id(r, &e->original) : -1;
    case 6:
        return wt == WT_LEN ? TEXT(r, e->store_id, &c->too_long, f) : -1;
    case 7:
        return wt == WT_LEN ? TEXT(r, e->member_id, &c->too_long, f) : -1;
    case 8:
        return wt == WT_LEN ? TEXT(r, e->rules_version, &c->too_long, f) : -1;
    case 16:
        return wt == WT_LEN ? TEXT(r, e->reward_code, &c->too_long, f) : -1;
    case 17:
        return wt == WT_LEN ? TEXT(r, e->reason_code, &c->too_long, f) : -1;
    case 18:
        return wt == WT_LEN ? TEXT(r, e->operator_id, &c->too_long, f) : -1;
    case 9:
        if (wt != WT_LEN || c->postings_n >= LT_POSTINGS_MAX)
            return -1;
        memset(&e->postings[c->postings_n], 0, sizeof e->postings[0]);
        return decode_posting(r, &e->postings[c->postings_n++], state_only);
    case 10: {
        if (wt != WT_LEN || c->lines_n >= LT_SALE_LINES_MAX)
            return -1;
        if (state_only && c->kind != 0 && c->kind != LT_ENTRY_RETURN) {
            rd skipped;
            return rd_len(r, &skipped);
        }
        int rc = decode_line(r, c->lines_n, &e->lines[c->lines_n]);
        c->lines_n++;
        return rc;
    }
    case 20:
        if (wt != WT_FIXED64 || r->end - r->p < 8)
            return -1;
        for (int i = 7; i >= 0; i--)
            v = v << 8 | r->p[i];
        r->p += 8;
        e->digest = v;
        return 0;
    case 1:
    case 3:
    case 4:
    case 5:
    case 11:
    case 12:
    case 13:
    case 14:
    case 15:
    case 21:
    case 22:
    case 23:
        if (want_varint(r, wt, &v) < 0)
            return -1;
        break;
    default:
        return rd_skip(r, wt);
    }
    switch (f) {
    case 1:
        e->seq = v;
        break;
    case 3:
        c->kind = (int)(int32_t)(uint32_t)v;
        break;
    case 4:
        e->occurred_at = (int64_t)v;
        break;
    case 5: /* sint32: zigzag */
        e->utc_offset_min = (int32_t)(((uint32_t)v >> 1) ^ (0u - ((uint32_t)v & 1)));
        break;
    case 11:
        e->base_points = (int64_t)v;
        break;
    case 12:
        e->multiplier_pct = (uint32_t)v;
        break;
    case 13:
        e->sku_points = (int64_t)v;
        break;
    case 14:
        e->points_earned = (int64_t)v;
        break;
    case 15:
        e->points_redeemed = (int64_t)v;
        break;
    case 21:
        e->paid_fen = (int64_t)v;
        break;
    case 22:
        e->eligible_fen = (int64_t)v;
        break;
    case 23:
        e->original_seq = v;
        break;
    }
    return 0;
}

static int decode(const uint8_t *buf, size_t len, lt_entry *e, bool state_only)
{
    /* everything but the postings and lines arrays: a posting is cleared when it is read,
     * and most entries have one or two of 8 postings and a handful of 200 lines */
    memset(e, 0, offsetof(lt_entry, postings));
    memset(&e->paid_fen, 0, offsetof(lt_entry, lines) - offsetof(lt_entry, paid_fen));
    memset((uint8_t *)e + offsetof(lt_entry, reward_code), 0,
           sizeof(*e) - offsetof(lt_entry, reward_code));
    rd r = {buf, buf + len};
    ectx c = {.e = e, .state_only = state_only};
    FAST(1, &r, 1, WT_VARINT, entry_field, &c);
    FAST(1, &r, 2, WT_LEN, entry_field, &c);
    FAST(1, &r, 3, WT_VARINT, entry_field, &c);
    FAST(1, &r, 4, WT_VARINT, entry_field, &c);
    FAST(1, &r, 5, WT_VARINT, entry_field, &c);
    FAST(1, &r, 6, WT_LEN, entry_field, &c);
    FAST(1, &r, 7, WT_LEN, entry_field, &c);
    FAST(1, &r, 8, WT_LEN, entry_field, &c);
    while (at_tag1(&r, 9, WT_LEN)) {
        r.p++;
        if (entry_field(&r, 9, WT_LEN, &c) < 0)
            return -1;
    }
    while (at_tag1(&r, 10, WT_LEN)) {
        r.p++;
        if (entry_field(&r, 10, WT_LEN, &c) < 0)
            return -1;
    }
    FAST(1, &r, 11, WT_VARINT, entry_field, &c);
    FAST(1, &r, 12, WT_VARINT, entry_field, &c);
    FAST(1, &r, 13, WT_VARINT, entry_field, &c);
    FAST(1, &r, 14, WT_VARINT, entry_field, &c);
    FAST(1, &r, 15, WT_VARINT, entry_field, &c);
    FAST(2, &r, 16, WT_LEN, entry_field, &c);
    FAST(2, &r, 17, WT_LEN, entry_field, &c);
    FAST(2, &r, 18, WT_LEN, entry_field, &c);
    FAST(2, &r, 19, WT_LEN, entry_field, &c);
    FAST(2, &r, 20, WT_FIXED64, entry_field, &c);
    FAST(2, &r, 21, WT_VARINT, entry_field, &c);
    FAST(2, &r, 22, WT_VARINT, entry_field, &c);
    FAST(2, &r, 23, WT_VARINT, entry_field, &c);
    uint32_t f;
    unsigned wt;
    int t;
    while ((t = rd_tag(&r, &f, &wt)) > 0)
        if (entry_field(&r, f, wt, &c) < 0)
            return -1;
    e->postings_n = c.postings_n;
    e->lines_n = c.lines_n;
    if (t < 0 || c.too_long != 0 || c.kind < LT_ENTRY_NONE || c.kind > LT_ENTRY_NOTICE)
        return -1;
    e->kind = (lt_entry_kind)c.kind;
    e->event_kind = c.kind <= LT_ENTRY_MERGE ? (lt_event_kind)c.kind : LT_EV_NONE;
    return 0;
}

int entry_decode(const uint8_t *buf, size_t len, lt_entry *e)
{
    return decode(buf, len, e, false);
}

int entry_decode_state(const uint8_t *buf, size_t len, lt_entry *e)
{
    return decode(buf, len, e, true);
}

int entry_decode_id(const uint8_t *buf, size_t len, lt_event_id *id)
{
    *id = (lt_event_id){0, 0};
    rd r = {buf, buf + len};
    uint32_t f;
    unsigned wt;
    int t;
    while ((t = rd_tag(&r, &f, &wt)) > 0) {
        if (f == 2 && wt == WT_LEN) {
            if (decode_id(&r, id) < 0) /* a second one merges into it, as in entry_decode() */
                return -1;
        } else if (rd_skip(&r, wt) < 0) {
            return -1;
        }
    }
    return t;
}
