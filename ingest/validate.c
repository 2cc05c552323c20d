/* validate.c: loyalty.Event -> lt_event, checking everything a till can get wrong.
 *
 * Every check answers with a specific reason and a message naming the field, so that a till
 * integrator can fix the sender without reading our code. Nothing here trusts the peer: string
 * lengths, counts, ranges and sums are all bounded before rating sees them.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "ingest.h"
#include "ingest_raw.h"

#define REJECT(code, ...)                                                                          \
    do {                                                                                           \
        snprintf(msg, msg_len, __VA_ARGS__);                                                       \
        return (code);                                                                             \
    } while (0)

/* Copies an identifier into dst. Returns 0, 1 if missing/empty, 2 if too long or containing
 * control characters. */
static int copy_text(char *dst, size_t cap, ingest_str src)
{
    if (src.p == NULL || src.n == 0)
        return 1;
    if (src.n >= cap)
        return 2;
    for (size_t i = 0; i < src.n; i++) {
        if ((unsigned char)src.p[i] < 0x20 || src.p[i] == 0x7f)
            return 2;
    }
    memcpy(dst, src.p, src.n);
    dst[src.n] = '\0';
    return 0;
}

static bool str_present(ingest_str s)
{
    return s.p != NULL && s.n > 0;
}

/* strcmp(c, s) == 0 for a C string and a view */
static bool str_eq(const char *c, ingest_str s)
{
    size_t n = s.p != NULL ? s.n : 0;
    return strlen(c) == n && (n == 0 || memcmp(c, s.p, n) == 0);
}

/* Resets everything but the large arrays, which are only read up to their counts. */
void ingest_event_reset(lt_event *ev)
{
    memset(ev, 0, offsetof(lt_event, lines));
    size_t tail_from = offsetof(lt_event, birth_month);
    memset((char *)ev + tail_from, 0, offsetof(lt_event, return_lines) - tail_from);
    memset(ev->source_member, 0, sizeof ev->source_member);
}

static bool valid_birthday(uint32_t m, uint32_t d)
{
    static const uint8_t days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m >= 1 && m <= 12 && d >= 1 && d <= days[m - 1];
}

static int sale_from_raw(const ingest_raw_event *r, lt_event *ev, char *msg, size_t msg_len)
{
    if (r->lines_n == 0)
        REJECT(LT_R_MISSING_FIELD, "sale has no lines");
    if (r->lines_n > LT_SALE_LINES_MAX)
        REJECT(LT_R_TOO_MANY_LINES, "sale has %zu lines, at most %d are allowed", r->lines_n,
               LT_SALE_LINES_MAX);
    if (r->has_redeem_points && (r->redeem_points < 0 || r->redeem_points > LT_POINTS_MAX))
        REJECT(LT_R_INVALID_FIELD, "redeem_points %lld is not in 0..%lld",
               (long long)r->redeem_points, (long long)LT_POINTS_MAX);
    ev->redeem_points = r->has_redeem_points ? r->redeem_points : 0;
    for (size_t i = 0; i < r->lines_n; i++) {
        const ingest_raw_line *pl = &r->lines[i];
        lt_line *l = &ev->lines[i];
        int rc = copy_text(l->sku, sizeof l->sku, pl->sku);
        if (rc != 0)
            REJECT(rc == 1 ? LT_R_MISSING_FIELD : LT_R_INVALID_FIELD, "line %zu: sku is %s", i,
                   rc == 1 ? "missing" : "too long or not printable");
        rc = copy_text(l->category, sizeof l->category, pl->category);
        if (rc != 0)
            REJECT(rc == 1 ? LT_R_MISSING_FIELD : LT_R_INVALID_FIELD, "line %zu: category is %s", i,
                   rc == 1 ? "missing" : "too long or not printable");
        if (!pl->has_quantity || pl->quantity < 1 || pl->quantity > LT_QUANTITY_MAX)
            REJECT(LT_R_INVALID_QUANTITY, "line %zu: quantity %lld is not in 1..%d", i,
                   (long long)pl->quantity, LT_QUANTITY_MAX);
        if (!pl->has_unit_list_fen || !pl->has_unit_paid_fen)
            REJECT(LT_R_MISSING_FIELD, "line %zu: unit_list_fen and unit_paid_fen are required", i);
        if (pl->unit_list_fen < 0 || pl->unit_list_fen > LT_UNIT_FEN_MAX)
            REJECT(LT_R_INVALID_PRICE, "line %zu: unit_list_fen %lld is not in 0..%lld", i,
                   (long long)pl->unit_list_fen, (long long)LT_UNIT_FEN_MAX);
        if (pl->unit_paid_fen < 0 || pl->unit_paid_fen > pl->unit_list_fen)
            REJECT(LT_R_INVALID_PRICE, "line %zu: unit_paid_fen %lld is not in 0..unit_list_fen", i,
                   (long long)pl->unit_paid_fen);
        if (pl->flags & ~(uint32_t)(LT_LINE_GROUP_BUY | LT_LINE_PROMOTION))
            REJECT(LT_R_INVALID_FIELD, "line %zu: unknown flag bits 0x%x", i, pl->flags);
        int64_t line_list;
        if (__builtin_mul_overflow(pl->quantity, pl->unit_list_fen, &line_list) ||
            line_list > LT_LINE_FEN_MAX)
            REJECT(LT_R_AMOUNT_OVERFLOW, "line %zu: quantity x unit_list_fen exceeds %lld fen", i,
                   (long long)LT_LINE_FEN_MAX);
        l->quantity = pl->quantity;
        l->unit_list_fen = pl->unit_list_fen;
        l->unit_paid_fen = pl->unit_paid_fen;
        l->flags = pl->flags;
    }
    ev->lines_n = (uint32_t)r->lines_n;
    return LT_R_NONE;
}

static int return_from_raw(const ingest_raw_event *r, lt_event *ev, char *msg, size_t msg_len)
{
    if (!r->has_original || !r->has_orig_node_id || !r->has_orig_event_id)
        REJECT(LT_R_MISSING_FIELD, "return_sale.original (node_id, event_id) is required");
    if (r->rlines_n == 0)
        REJECT(LT_R_MISSING_FIELD, "return_sale has no lines");
    if (r->rlines_n > LT_RETURN_LINES_MAX)
        REJECT(LT_R_TOO_MANY_LINES, "return_sale has %zu lines, at most %d", r->rlines_n,
               LT_RETURN_LINES_MAX);
    ev->original.node_id = r->orig_node_id;
    ev->original.event_id = r->orig_event_id;
    for (size_t i = 0; i < r->rlines_n; i++) {
        const ingest_raw_rline *pl = &r->rlines[i];
        if (!pl->has_line_index || pl->line_index >= LT_SALE_LINES_MAX)
            REJECT(LT_R_INVALID_FIELD, "return line %zu: line_index missing or over %d", i,
                   LT_SALE_LINES_MAX - 1);
        if (!pl->has_quantity || pl->quantity < 1 || pl->quantity > LT_QUANTITY_MAX)
            REJECT(LT_R_INVALID_QUANTITY, "return line %zu: quantity %lld is not in 1..%d", i,
                   (long long)pl->quantity, LT_QUANTITY_MAX);
        for (size_t j = 0; j < i; j++) {
            if (ev->return_lines[j].line_index == pl->line_index)
                REJECT(LT_R_INVALID_FIELD, "return line %zu: line_index %u is listed twice", i,
                       pl->line_index);
        }
        ev->return_lines[i].line_index = pl->line_index;
        ev->return_lines[i].quantity = pl->quantity;
    }
    ev->return_lines_n = (uint32_t)r->rlines_n;
    return LT_R_NONE;
}

#define TEXT_FIELD(dst, src, name, required)                                                       \
    do {                                                                                           \
        int rc_ = copy_text((dst), sizeof(dst), (src));                                            \
        if (rc_ == 2)                                                                              \
            REJECT(LT_R_INVALID_FIELD, "%s is too long (max %zu bytes) or not printable", (name),  \
                   sizeof(dst) - 1);                                                               \
        if (rc_ == 1 && (required))                                                                \
            REJECT(LT_R_MISSING_FIELD, "%s is required", (name));                                  \
    } while (0)

static int body_from_raw(const ingest_raw_event *r, lt_event *ev, char *msg, size_t msg_len)
{
    switch (r->body) {
    case LOYALTY__EVENT__BODY_SALE:
        ev->kind = LT_EV_SALE;
        if (ev->store_id[0] == '\0')
            REJECT(LT_R_MISSING_FIELD, "store_id is required for a sale");
        return sale_from_raw(r, ev, msg, msg_len);
    case LOYALTY__EVENT__BODY_ENROL: {
        ev->kind = LT_EV_ENROL;
        if (ev->member_id[0] == '\0')
            REJECT(LT_R_MISSING_FIELD, "member_id is required for an enrolment");
        uint32_t m = r->has_birth_month ? r->birth_month : 0;
        uint32_t d = r->has_birth_day ? r->birth_day : 0;
        if ((m != 0 || d != 0) && !valid_birthday(m, d))
            REJECT(LT_R_INVALID_FIELD, "birthday %u-%u is not a calendar date", m, d);
        ev->birth_month = (uint8_t)m;
        ev->birth_day = (uint8_t)d;
        ev->staff = r->has_staff && r->staff;
        TEXT_FIELD(ev->referrer, r->referrer, "enrol.referrer", false);
        if (strcmp(ev->referrer, ev->member_id) == 0)
            REJECT(LT_R_INVALID_FIELD, "a member cannot refer themselves");
        if (str_present(r->enrol_card)) {
            if (ev->card[0] != '\0' && !str_eq(ev->card, r->enrol_card))
                REJECT(LT_R_INVALID_FIELD, "event card and enrol.card differ");
            TEXT_FIELD(ev->card, r->enrol_card, "enrol.card", false);
        }
        return LT_R_NONE;
    }
    case LOYALTY__EVENT__BODY_CARD_LINK:
        ev->kind = LT_EV_CARD_LINK;
        if (ev->member_id[0] == '\0')
            REJECT(LT_R_MISSING_FIELD, "member_id is required for a card link");
        TEXT_FIELD(ev->card, r->link_card, "card_link.card", true);
        TEXT_FIELD(ev->replaces_card, r->replaces_card, "card_link.replaces_card", false);
        if (strcmp(ev->card, ev->replaces_card) == 0)
            REJECT(LT_R_INVALID_FIELD, "a card cannot replace itself");
        return LT_R_NONE;
    case LOYALTY__EVENT__BODY_GIFT:
        ev->kind = LT_EV_GIFT;
        if (!r->has_points || r->points < 1 || r->points > LT_POINTS_MAX)
            REJECT(LT_R_INVALID_FIELD, "gift.points %lld is not in 1..%lld", (long long)r->points,
                   (long long)LT_POINTS_MAX);
        ev->points = r->points;
        TEXT_FIELD(ev->reward_code, r->reward_code, "gift.reward_code", true);
        return LT_R_NONE;
    case LOYALTY__EVENT__BODY_ADJUSTMENT:
        ev->kind = LT_EV_ADJUST;
        if (!r->has_points || r->points == 0 || r->points > LT_POINTS_MAX ||
            r->points < -LT_POINTS_MAX)
            REJECT(LT_R_INVALID_FIELD, "adjustment.points %lld is zero or beyond +-%lld",
                   (long long)r->points, (long long)LT_POINTS_MAX);
        ev->points = r->points;
        TEXT_FIELD(ev->reason_code, r->reason_code, "adjustment.reason_code", true);
        TEXT_FIELD(ev->operator_id, r->operator_id, "adjustment.operator_id", true);
        return LT_R_NONE;
    case LOYALTY__EVENT__BODY_RETURN_SALE:
        ev->kind = LT_EV_RETURN;
        return return_from_raw(r, ev, msg, msg_len);
    case LOYALTY__EVENT__BODY_MERGE:
        ev->kind = LT_EV_MERGE;
        if (ev->member_id[0] == '\0')
            REJECT(LT_R_MISSING_FIELD, "member_id is required for a merge");
        TEXT_FIELD(ev->source_member, r->source_member, "merge.source_member", true);
        if (strcmp(ev->source_member, ev->member_id) == 0)
            REJECT(LT_R_INVALID_FIELD, "a member cannot be merged into itself");
        return LT_R_NONE;
    default:
        REJECT(LT_R_MISSING_FIELD, "event has no body (sale, enrol, card_link, gift, adjustment, "
                                   "return_sale or merge)");
    }
}

int ingest_event_from_raw(const ingest_raw_event *r, const ingest_limits *lim, lt_event *ev,
                          char *msg, size_t msg_len)
{
    ingest_event_reset(ev);
    msg[0] = '\0';
    if (!r->has_id || !r->has_node_id || !r->has_event_id)
        REJECT(LT_R_MISSING_FIELD, "id (node_id, event_id) is required");
    if (r->node_id == 0 || r->event_id == 0)
        REJECT(LT_R_INVALID_FIELD, "id: node_id and event_id must be at least 1 (R29)");
    ev->id.node_id = r->node_id;
    ev->id.event_id = r->event_id;
    TEXT_FIELD(ev->member_id, r->member_id, "member_id", false);
    TEXT_FIELD(ev->card, r->card, "card", false);
    TEXT_FIELD(ev->store_id, r->store_id, "store_id", false);
    if (ev->member_id[0] == '\0' && ev->card[0] == '\0')
        REJECT(LT_R_MISSING_FIELD, "member_id or card is required");
    if (!r->has_occurred_at)
        REJECT(LT_R_MISSING_FIELD, "occurred_at is required");
    if (r->occurred_at > lim->now + lim->future_skew_s_max ||
        r->occurred_at < lim->now - lim->past_age_s_max)
        REJECT(LT_R_TIMESTAMP_OUT_OF_RANGE,
               "occurred_at %lld is outside now-%llds..now+%llds (now %lld)",
               (long long)r->occurred_at, (long long)lim->past_age_s_max,
               (long long)lim->future_skew_s_max, (long long)lim->now);
    ev->occurred_at = r->occurred_at;
    if (str_present(r->time_zone)) {
        /* zone names are short (tz.c refuses 64 bytes or more): a longer one stays unknown */
        char zone[72];
        size_t zn = r->time_zone.n < sizeof zone - 1 ? r->time_zone.n : sizeof zone - 1;
        memcpy(zone, r->time_zone.p, zn);
        zone[zn] = '\0';
        if (ingest_zone_offset(zone, r->occurred_at, &ev->utc_offset_min) != 0)
            REJECT(LT_R_UNKNOWN_TIME_ZONE, "time_zone \"%.40s\" is not a known zone", zone);
    } else if (r->has_utc_offset_min) {
        if (r->utc_offset_min < -14 * 60 || r->utc_offset_min > 14 * 60)
            REJECT(LT_R_INVALID_FIELD, "utc_offset_min %d is not in -840..840", r->utc_offset_min);
        ev->utc_offset_min = r->utc_offset_min;
    } else {
        REJECT(LT_R_MISSING_FIELD, "utc_offset_min or time_zone is required (R3)");
    }
    return body_from_raw(r, ev, msg, msg_len);
}

/* ------------------------------------------------------------------ from protobuf-c */

ingest_raw_event *ingest_raw_begin(void)
{
    static _Thread_local ingest_raw_event raw;
    ingest_raw_event *r = &raw;
    memset(r, 0, offsetof(ingest_raw_event, lines));
    memset(&r->has_birth_month, 0,
           offsetof(ingest_raw_event, rlines) - offsetof(ingest_raw_event, has_birth_month));
    r->source_member = (ingest_str){NULL, 0};
    return r;
}

static ingest_str cstr(const char *s)
{
    return (ingest_str){s, s != NULL ? strlen(s) : 0};
}

int ingest_event_from_pb(const Loyalty__Event *pe, const ingest_limits *lim, lt_event *ev,
                         char *msg, size_t msg_len)
{
    /* the raw event is large (the lines): one per thread, its header cleared per call */
    ingest_raw_event *r = ingest_raw_begin();
    if (pe->id != NULL) {
        r->has_id = true;
        r->has_node_id = pe->id->has_node_id;
        r->has_event_id = pe->id->has_event_id;
        r->node_id = pe->id->node_id;
        r->event_id = pe->id->event_id;
    }
    r->member_id = cstr(pe->member_id);
    r->card = cstr(pe->card);
    r->store_id = cstr(pe->store_id);
    r->time_zone = cstr(pe->time_zone);
    r->has_occurred_at = pe->has_occurred_at;
    r->occurred_at = pe->occurred_at;
    r->has_utc_offset_min = pe->has_utc_offset_min;
    r->utc_offset_min = pe->utc_offset_min;
    r->body = (uint32_t)pe->body_case;
    switch (pe->body_case) {
    case LOYALTY__EVENT__BODY_SALE:
        r->lines_n = pe->sale->n_lines;
        r->has_redeem_points = pe->sale->has_redeem_points;
        r->redeem_points = pe->sale->redeem_points;
        for (size_t i = 0; i < pe->sale->n_lines && i < LT_SALE_LINES_MAX; i++) {
            const Loyalty__SaleLine *l = pe->sale->lines[i];
            r->lines[i] =
                (ingest_raw_line){cstr(l->sku),         cstr(l->category),    l->has_quantity,
                                  l->has_unit_list_fen, l->has_unit_paid_fen, l->quantity,
                                  l->unit_list_fen,     l->unit_paid_fen,     l->flags};
        }
        break;
    case LOYALTY__EVENT__BODY_ENROL:
        r->has_birth_month = pe->enrol->has_birth_month;
        r->birth_month = pe->enrol->birth_month;
        r->has_birth_day = pe->enrol->has_birth_day;
        r->birth_day = pe->enrol->birth_day;
        r->has_staff = pe->enrol->has_staff;
        r->staff = pe->enrol->staff;
        r->referrer = cstr(pe->enrol->referrer);
        r->enrol_card = cstr(pe->enrol->card);
        break;
    case LOYALTY__EVENT__BODY_CARD_LINK:
        r->link_card = cstr(pe->card_link->card);
        r->replaces_card = cstr(pe->card_link->replaces_card);
        break;
    case LOYALTY__EVENT__BODY_GIFT:
        r->has_points = pe->gift->has_points;
        r->points = pe->gift->points;
        r->reward_code = cstr(pe->gift->reward_code);
        break;
    case LOYALTY__EVENT__BODY_ADJUSTMENT:
        r->has_points = pe->adjustment->has_points;
        r->points = pe->adjustment->points;
        r->reason_code = cstr(pe->adjustment->reason_code);
        r->operator_id = cstr(pe->adjustment->operator_id);
        break;
    case LOYALTY__EVENT__BODY_RETURN_SALE: {
        const Loyalty__ReturnSale *rs = pe->return_sale;
        if (rs->original != NULL) {
            r->has_original = true;
            r->has_orig_node_id = rs->original->has_node_id;
            r->has_orig_event_id = rs->original->has_event_id;
            r->orig_node_id = rs->original->node_id;
            r->orig_event_id = rs->original->event_id;
        }
        r->rlines_n = rs->n_lines;
        for (size_t i = 0; i < rs->n_lines && i < LT_RETURN_LINES_MAX; i++)
            r->rlines[i] =
                (ingest_raw_rline){rs->lines[i]->has_line_index, rs->lines[i]->has_quantity,
                                   rs->lines[i]->line_index, rs->lines[i]->quantity};
        break;
    }
    case LOYALTY__EVENT__BODY_MERGE:
        r->source_member = cstr(pe->merge->source_member);
        break;
    default:
        break;
    }
    return ingest_event_from_raw(r, lim, ev, msg, msg_len);
}

uint64_t ingest_event_digest(const Loyalty__Event *pe)
{
    uint8_t stack[4096];
    size_t n = loyalty__event__get_packed_size(pe);
    if (n <= sizeof stack) {
        loyalty__event__pack(pe, stack);
        return XXH3_64bits(stack, n);
    }
    uint8_t *heap = malloc(n);
    if (heap == NULL)
        return 0; /* digest unknown: CONFLICT detection degrades, correctness does not */
    loyalty__event__pack(pe, heap);
    uint64_t h = XXH3_64bits(heap, n);
    free(heap);
    return h;
}

/* Canonical bytes of a validated event: every field of its kind, strings with their NUL. */
typedef struct {
    uint8_t *p, *end;
} dbuf;

static void d_bytes(dbuf *b, const void *v, size_t n)
{
    LT_ASSERT((size_t)(b->end - b->p) >= n);
    memcpy(b->p, v, n);
    b->p += n;
}

static void d_str(dbuf *b, const char *s)
{
    d_bytes(b, s, strlen(s) + 1);
}

static void d_i64(dbuf *b, int64_t v)
{
    d_bytes(b, &v, sizeof v);
}

uint64_t ingest_event_digest_ev(const lt_event *ev)
{
    /* the largest event: 200 lines of two strings and four numbers, plus the header; one per
     * thread, as the daemon's loop and decode threads digest at the same time */
    static _Thread_local uint8_t
        buf[LT_SALE_LINES_MAX * (2 * LT_ID_MAX + 5 * 8) + 16 * LT_TEXT_MAX];
    dbuf b = {buf, buf + sizeof buf};
    d_i64(&b, ev->kind);
    d_str(&b, ev->member_id);
    d_str(&b, ev->card);
    d_str(&b, ev->store_id);
    d_i64(&b, ev->occurred_at);
    d_i64(&b, ev->utc_offset_min);
    switch (ev->kind) {
    case LT_EV_SALE:
        d_i64(&b, ev->redeem_points);
        for (uint32_t i = 0; i < ev->lines_n; i++) {
            const lt_line *l = &ev->lines[i];
            d_str(&b, l->sku);
            d_str(&b, l->category);
            d_i64(&b, l->quantity);
            d_i64(&b, l->unit_list_fen);
            d_i64(&b, l->unit_paid_fen);
            d_i64(&b, l->flags);
        }
        break;
    case LT_EV_ENROL:
        d_i64(&b, ev->birth_month * 100 + ev->birth_day);
        d_i64(&b, ev->staff);
        d_str(&b, ev->referrer);
        break;
    case LT_EV_CARD_LINK:
        d_str(&b, ev->replaces_card);
        break;
    case LT_EV_GIFT:
    case LT_EV_ADJUST:
        d_i64(&b, ev->points);
        d_str(&b, ev->reward_code);
        d_str(&b, ev->reason_code);
        d_str(&b, ev->operator_id);
        break;
    case LT_EV_RETURN:
        d_i64(&b, (int64_t)ev->original.node_id);
        d_i64(&b, (int64_t)ev->original.event_id);
        for (uint32_t i = 0; i < ev->return_lines_n; i++) {
            d_i64(&b, ev->return_lines[i].line_index);
            d_i64(&b, ev->return_lines[i].quantity);
        }
        break;
    case LT_EV_MERGE:
        d_str(&b, ev->source_member);
        break;
    default:
        break;
    }
    uint64_t h = XXH3_64bits(buf, (size_t)(b.p - buf));
    return h != 0 ? h : 1;
}
