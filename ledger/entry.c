/* entry.c: the ledger entry codec: lt_entry <-> loyalty.LedgerEntry bytes, and a JSON printer.
 *
 * Encoding writes the protobuf wire format directly from the lt_entry (no allocation, no
 * intermediate message). Zero numbers and empty strings are left out to keep entries small;
 * decoding treats an absent field as zero or "". entry_decode() (entry_wire.c) reads the wire
 * format directly; entry_decode_pb() here, the reference it is tested against, uses protobuf-c's
 * unpack into a fixed per-thread arena, so it does not call malloc either; bytes too big for the
 * arena (far beyond any valid entry) return -2, no verdict.
 *
 * LedgerEntry has no event-kind field: lt_entry.event_kind is derived from the entry kind, whose
 * numbers 1..7 equal the event kinds; system entries (expire, tier period, notice) get LT_EV_NONE.
 */
#include "entry.h"
#include "pbwrite.h"

#include <inttypes.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "loyalty.pb-c.h"

/* The largest entry the codec can produce: every field at its widest varint (10 bytes) plus tag
 * and length bytes. ENTRY_BYTES_MAX must hold it: a buffer of that size never fails. */
#define VARINT_MAX 10
#define STR_FIELD(cap) (3 + 2 + (cap))
#define LINE_BYTES_MAX (3 + 9 * (1 + VARINT_MAX) + 2 * STR_FIELD(LT_ID_MAX))
#define POSTING_BYTES_MAX (3 + 5 * STR_FIELD(LT_ID_MAX) + 3 * STR_FIELD(LT_TIER_NAME_MAX) + 16 * 12)
#define ENTRY_FIXED_BYTES_MAX (4 * STR_FIELD(LT_TEXT_MAX) + 2 * STR_FIELD(LT_ID_MAX) + 40 * 12)
#define ENTRY_BOUND                                                                                \
    (ENTRY_FIXED_BYTES_MAX + LT_POSTINGS_MAX * POSTING_BYTES_MAX +                                 \
     LT_SALE_LINES_MAX * LINE_BYTES_MAX)
_Static_assert(ENTRY_BOUND <= ENTRY_BYTES_MAX, "ENTRY_BYTES_MAX too small for the largest entry");

/* Decoding arena: a valid entry needs about 45 KiB of unpacked structs. */
#define ENTRY_ARENA_BYTES (128 * 1024)

/* ------------------------------------------------------------------ encode */

/* A hand-written protobuf writer: fields in field-number order, as protobuf-c writes them, and
 * zero numbers and empty strings left out. It is about five times faster than
 * protobuf_c_message_pack(), which walks descriptors and sizes every submessage twice; the unit
 * tests check its output through protobuf-c's decoder. */

static void w_posting(wbuf *w, const lt_posting *p)
{
    uint8_t *at = w_sub_begin(w, 9);
    W_STR(w, 1, p->member_id);
    w_u64(w, 2, p->create);
    w_u64(w, 3, p->birth_month);
    w_u64(w, 4, p->birth_day);
    W_STR(w, 5, p->referrer);
    w_u64(w, 6, p->staff);
    w_i64(w, 7, p->debit);
    w_i64(w, 8, p->credit);
    w_i64(w, 9, p->credit_expires_at);
    w_i64(w, 10, p->lifetime_delta_fen);
    w_i64(w, 11, p->qualifying_delta);
    W_STR(w, 12, p->tier_after);
    W_STR(w, 19, p->tier_before);
    W_STR(w, 13, p->reason);
    w_i64(w, 14, p->balance_after);
    w_u64(w, 15, p->count_sale);
    W_STR(w, 16, p->card);
    W_STR(w, 17, p->unlink_card);
    w_i64(w, 18, p->clamp);
    W_STR(w, 20, p->merge_from);
    w_i64(w, 21, p->set_period_start_day); /* int32 fields: sign-extended varints */
    w_i64(w, 22, p->set_birthday_year);
    w_i64(w, 23, p->set_expiring_notified);
    w_i64(w, 24, p->set_dormant_notified);
    w_sub_end(w, at);
}

/* The line's position is its index, so `index` (field 1) is not written. */
static void w_line(wbuf *w, const lt_line_result *l)
{
    uint8_t *at = w_sub_begin(w, 10);
    W_STR(w, 2, l->sku);
    W_STR(w, 3, l->category);
    w_i64(w, 4, l->quantity);
    w_i64(w, 5, l->paid_fen);
    w_i64(w, 6, l->eligible_fen);
    w_i64(w, 7, l->redeemed_fen);
    w_i64(w, 8, l->points);
    w_i64(w, 9, l->qualifying_fen);
    w_i64(w, 10, l->redeemed_points);
    w_i64(w, 11, l->unit_list_fen);
    w_u64(w, 12, l->flags);
    w_sub_end(w, at);
}

size_t entry_encode(const lt_entry *e, uint8_t *buf, size_t cap)
{
    LT_ASSERT(e->postings_n <= LT_POSTINGS_MAX);
    LT_ASSERT(e->lines_n <= LT_SALE_LINES_MAX);
    wbuf w = {buf, buf + cap, false};
    w_u64(&w, 1, e->seq);
    w_id(&w, 2, e->id);
    w_u64(&w, 3, (uint64_t)e->kind);
    w_i64(&w, 4, e->occurred_at);
    w_sint32(&w, 5, e->utc_offset_min);
    W_STR(&w, 6, e->store_id);
    W_STR(&w, 7, e->member_id);
    W_STR(&w, 8, e->rules_version);
    for (uint32_t i = 0; i < e->postings_n; i++)
        w_posting(&w, &e->postings[i]);
    for (uint32_t i = 0; i < e->lines_n; i++)
        w_line(&w, &e->lines[i]);
    w_i64(&w, 11, e->base_points);
    w_u64(&w, 12, e->multiplier_pct);
    w_i64(&w, 13, e->sku_points);
    w_i64(&w, 14, e->points_earned);
    w_i64(&w, 15, e->points_redeemed);
    W_STR(&w, 16, e->reward_code);
    W_STR(&w, 17, e->reason_code);
    W_STR(&w, 18, e->operator_id);
    w_id(&w, 19, e->original);
    w_fixed64(&w, 20, e->digest);
    w_i64(&w, 21, e->paid_fen);
    w_i64(&w, 22, e->eligible_fen);
    w_u64(&w, 23, e->original_seq);
    return w.full ? 0 : (size_t)(w.p - buf);
}

/* ------------------------------------------------------------------ decode */

typedef struct {
    uint8_t *base;
    size_t used, cap;
    bool exhausted; /* an allocation did not fit */
} arena;

static void *arena_alloc(void *ctx, size_t size)
{
    arena *a = ctx;
    size_t at = (a->used + 15) & ~(size_t)15;
    if (size > a->cap || at > a->cap - size) {
        a->exhausted = true;
        return NULL;
    }
    a->used = at + size;
    return a->base + at;
}

static void arena_free(void *ctx, void *p)
{
    (void)ctx;
    (void)p;
}

/* Copies a decoded string into a C array. Returns 0, or -1 if it does not fit. */
static int copy_str(char *dst, size_t cap, const char *src)
{
    if (src == NULL) {
        dst[0] = '\0';
        return 0;
    }
    size_t n = strlen(src);
    if (n >= cap)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

#define COPY(dst, src) copy_str((dst), sizeof(dst), (src))
#define GET(msg, field) ((msg)->has_##field ? (msg)->field : 0)

static int decode_posting(const Loyalty__Posting *m, lt_posting *p)
{
    uint32_t month = GET(m, birth_month), day = GET(m, birth_day);
    if (month > 12 || day > 31)
        return -1;
    p->birth_month = (uint8_t)month;
    p->birth_day = (uint8_t)day;
    p->create = GET(m, create) != 0;
    p->staff = GET(m, staff) != 0;
    p->count_sale = GET(m, count_sale) != 0;
    p->debit = GET(m, debit);
    p->credit = GET(m, credit);
    p->credit_expires_at = GET(m, credit_expires_at);
    p->lifetime_delta_fen = GET(m, lifetime_delta_fen);
    p->qualifying_delta = GET(m, qualifying_delta);
    p->balance_after = GET(m, balance_after);
    p->clamp = GET(m, clamp);
    p->set_period_start_day = GET(m, set_period_start_day);
    p->set_birthday_year = GET(m, set_birthday_year);
    p->set_expiring_notified = GET(m, set_expiring_notified);
    p->set_dormant_notified = GET(m, set_dormant_notified);
    if (COPY(p->member_id, m->member_id) || COPY(p->referrer, m->referrer) ||
        COPY(p->tier_after, m->tier_after) || COPY(p->tier_before, m->tier_before) ||
        COPY(p->reason, m->reason) || COPY(p->card, m->card) ||
        COPY(p->unlink_card, m->unlink_card) || COPY(p->merge_from, m->merge_from))
        return -1;
    return 0;
}

static int decode_line(const Loyalty__LineResult *m, uint32_t index, lt_line_result *l)
{
    if (m->has_index && m->index != index)
        return -1;
    l->quantity = GET(m, quantity);
    l->paid_fen = GET(m, paid_fen);
    l->eligible_fen = GET(m, eligible_fen);
    l->redeemed_fen = GET(m, redeemed_fen);
    l->redeemed_points = GET(m, redeemed_points);
    l->points = GET(m, points);
    l->qualifying_fen = GET(m, qualifying_fen);
    l->unit_list_fen = GET(m, unit_list_fen);
    l->flags = (uint32_t)GET(m, flags);
    l->sku[0] = l->category[0] = '\0';
    if (COPY(l->sku, m->sku) || COPY(l->category, m->category))
        return -1;
    return 0;
}

static lt_event_id decode_id(const Loyalty__EventId *m)
{
    lt_event_id id = {0, 0};
    if (m) {
        id.node_id = GET(m, node_id);
        id.event_id = GET(m, event_id);
    }
    return id;
}

static int decode_msg(const Loyalty__LedgerEntry *m, lt_entry *e)
{
    if (m->n_postings > LT_POSTINGS_MAX || m->n_lines > LT_SALE_LINES_MAX)
        return -1;
    int kind = m->has_kind ? (int)m->kind : 0;
    if (kind < LT_ENTRY_NONE || kind > LT_ENTRY_NOTICE)
        return -1;
    e->kind = (lt_entry_kind)kind;
    e->event_kind = kind <= LT_ENTRY_MERGE ? (lt_event_kind)kind : LT_EV_NONE;
    e->seq = GET(m, seq);
    e->id = decode_id(m->id);
    e->occurred_at = GET(m, occurred_at);
    e->utc_offset_min = GET(m, utc_offset_min);
    e->digest = GET(m, digest);
    e->paid_fen = GET(m, paid_fen);
    e->eligible_fen = GET(m, eligible_fen);
    e->base_points = GET(m, base_points);
    e->multiplier_pct = GET(m, multiplier_pct);
    e->sku_points = GET(m, sku_points);
    e->points_earned = GET(m, points_earned);
    e->points_redeemed = GET(m, points_redeemed);
    e->original = decode_id(m->original);
    e->original_seq = GET(m, original_seq);
    if (COPY(e->store_id, m->store_id) || COPY(e->member_id, m->member_id) ||
        COPY(e->rules_version, m->rules_version) || COPY(e->reward_code, m->reward_code) ||
        COPY(e->reason_code, m->reason_code) || COPY(e->operator_id, m->operator_id))
        return -1;
    e->postings_n = (uint32_t)m->n_postings;
    for (uint32_t i = 0; i < e->postings_n; i++)
        if (decode_posting(m->postings[i], &e->postings[i]) != 0)
            return -1;
    e->lines_n = (uint32_t)m->n_lines;
    for (uint32_t i = 0; i < e->lines_n; i++)
        if (decode_line(m->lines[i], i, &e->lines[i]) != 0)
            return -1;
    return 0;
}

int entry_decode_pb(const uint8_t *buf, size_t len, lt_entry *out)
{
    static _Thread_local alignas(16) uint8_t arena_buf[ENTRY_ARENA_BYTES];
    arena a = {arena_buf, 0, sizeof(arena_buf), false};
    ProtobufCAllocator alloc = {arena_alloc, arena_free, &a};

    /* Everything but the lines array is cleared; lines[lines_n..] are left as they were: the
     * struct is 13 KiB, 11 of them lines, and most entries have a handful of lines. */
    memset(out, 0, offsetof(lt_entry, lines));
    memset((uint8_t *)out + offsetof(lt_entry, reward_code), 0,
           sizeof(*out) - offsetof(lt_entry, reward_code));
    Loyalty__LedgerEntry *m = loyalty__ledger_entry__unpack(&alloc, len, buf);
    if (m == NULL)
        return a.exhausted ? -2 : -1;
    return decode_msg(m, out);
}

/* ------------------------------------------------------------------ JSON */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static const char *kind_name(lt_entry_kind k)
{
    static const char *const names[] = {"none",   "sale",        "enrol",  "card_link",
                                        "gift",   "adjustment",  "return", "merge",
                                        "expire", "tier_period", "notice"};
    return (unsigned)k < LT_ARRAY_LEN(names) ? names[k] : "unknown";
}

static void json_id(FILE *f, const char *name, lt_event_id id)
{
    fprintf(f, ",\"%s\":{\"node_id\":%" PRIu64 ",\"event_id\":%" PRIu64 "}", name, id.node_id,
            id.event_id);
}

static void json_kv_str(FILE *f, const char *name, const char *v)
{
    fprintf(f, ",\"%s\":", name);
    json_str(f, v);
}

static void json_posting(FILE *f, const lt_posting *p)
{
    fputs("{\"member_id\":", f);
    json_str(f, p->member_id);
    fprintf(f, ",\"create\":%s,\"birth_month\":%u,\"birth_day\":%u,\"staff\":%s",
            p->create ? "true" : "false", p->birth_month, p->birth_day,
            p->staff ? "true" : "false");
    json_kv_str(f, "referrer", p->referrer);
    fprintf(f,
            ",\"debit\":%" PRId64 ",\"credit\":%" PRId64 ",\"credit_expires_at\":%" PRId64
            ",\"lifetime_delta_fen\":%" PRId64 ",\"qualifying_delta\":%" PRId64,
            p->debit, p->credit, p->credit_expires_at, p->lifetime_delta_fen, p->qualifying_delta);
    json_kv_str(f, "tier_before", p->tier_before);
    json_kv_str(f, "tier_after", p->tier_after);
    json_kv_str(f, "reason", p->reason);
    fprintf(f, ",\"balance_after\":%" PRId64 ",\"count_sale\":%s", p->balance_after,
            p->count_sale ? "true" : "false");
    fprintf(f,
            ",\"set_period_start_day\":%" PRId32 ",\"set_birthday_year\":%" PRId32
            ",\"set_expiring_notified\":%" PRId64 ",\"set_dormant_notified\":%" PRId64,
            p->set_period_start_day, p->set_birthday_year, p->set_expiring_notified,
            p->set_dormant_notified);
    json_kv_str(f, "merge_from", p->merge_from);
    json_kv_str(f, "card", p->card);
    json_kv_str(f, "unlink_card", p->unlink_card);
    fprintf(f, ",\"clamp\":%" PRId64 "}", p->clamp);
}

static void json_line(FILE *f, const lt_line_result *l)
{
    fprintf(f,
            "{\"quantity\":%" PRId64 ",\"paid_fen\":%" PRId64 ",\"eligible_fen\":%" PRId64
            ",\"redeemed_fen\":%" PRId64 ",\"redeemed_points\":%" PRId64 ",\"points\":%" PRId64
            ",\"qualifying_fen\":%" PRId64 "}",
            l->quantity, l->paid_fen, l->eligible_fen, l->redeemed_fen, l->redeemed_points,
            l->points, l->qualifying_fen);
}

int entry_print_json(const lt_entry *e, FILE *f)
{
    LT_ASSERT(e->postings_n <= LT_POSTINGS_MAX && e->lines_n <= LT_SALE_LINES_MAX);
    fprintf(f, "{\"seq\":%" PRIu64 ",\"kind\":\"%s\"", e->seq, kind_name(e->kind));
    json_id(f, "id", e->id);
    fprintf(f, ",\"occurred_at\":%" PRId64 ",\"utc_offset_min\":%" PRId32, e->occurred_at,
            e->utc_offset_min);
    json_kv_str(f, "store_id", e->store_id);
    json_kv_str(f, "member_id", e->member_id);
    json_kv_str(f, "rules_version", e->rules_version);
    /* The digest is a full 64-bit value, beyond JSON's safe integers: print it as hex. */
    fprintf(f, ",\"digest\":\"%016" PRIx64 "\",\"postings\":[", e->digest);
    for (uint32_t i = 0; i < e->postings_n; i++) {
        if (i)
            fputc(',', f);
        json_posting(f, &e->postings[i]);
    }
    fprintf(f,
            "],\"paid_fen\":%" PRId64 ",\"eligible_fen\":%" PRId64 ",\"base_points\":%" PRId64
            ",\"multiplier_pct\":%" PRIu32 ",\"sku_points\":%" PRId64 ",\"points_earned\":%" PRId64
            ",\"points_redeemed\":%" PRId64 ",\"lines\":[",
            e->paid_fen, e->eligible_fen, e->base_points, e->multiplier_pct, e->sku_points,
            e->points_earned, e->points_redeemed);
    for (uint32_t i = 0; i < e->lines_n; i++) {
        if (i)
            fputc(',', f);
        json_line(f, &e->lines[i]);
    }
    fputc(']', f);
    json_kv_str(f, "reward_code", e->reward_code);
    json_kv_str(f, "reason_code", e->reason_code);
    json_kv_str(f, "operator_id", e->operator_id);
    json_id(f, "original", e->original);
    fprintf(f, ",\"original_seq\":%" PRIu64 "}\n", e->original_seq);
    return ferror(f) ? -1 : 0;
}
