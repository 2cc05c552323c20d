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

#define REJECT(code, ...)                                                                          \
    do {                                                                                           \
        snprintf(msg, msg_len, __VA_ARGS__);                                                       \
        return (code);                                                                             \
    } while (0)

/* Copies an identifier into dst. Returns 0, 1 if missing/empty, 2 if too long or containing
 * control characters. */
static int copy_text(char *dst, size_t cap, const char *src)
{
    if (src == NULL || src[0] == '\0')
        return 1;
    size_t n = strlen(src);
    if (n >= cap)
        return 2;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)src[i] < 0x20 || src[i] == 0x7f)
            return 2;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

/* Resets everything but the large arrays, which are only read up to their counts. */
static void event_reset(lt_event *ev)
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

static int sale_from_pb(const Loyalty__Sale *s, lt_event *ev, char *msg, size_t msg_len)
{
    if (s->n_lines == 0)
        REJECT(LT_R_MISSING_FIELD, "sale has no lines");
    if (s->n_lines > LT_SALE_LINES_MAX)
        REJECT(LT_R_TOO_MANY_LINES, "sale has %zu lines, at most %d are allowed", s->n_lines,
               LT_SALE_LINES_MAX);
    if (s->has_redeem_points && (s->redeem_points < 0 || s->redeem_points > LT_POINTS_MAX))
        REJECT(LT_R_INVALID_FIELD, "redeem_points %lld is not in 0..%lld",
               (long long)s->redeem_points, (long long)LT_POINTS_MAX);
    ev->redeem_points = s->has_redeem_points ? s->redeem_points : 0;
    for (size_t i = 0; i < s->n_lines; i++) {
        const Loyalty__SaleLine *pl = s->lines[i];
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
    ev->lines_n = (uint32_t)s->n_lines;
    return LT_R_NONE;
}

static int return_from_pb(const Loyalty__ReturnSale *r, lt_event *ev, char *msg, size_t msg_len)
{
    if (r->original == NULL || !r->original->has_node_id || !r->original->has_event_id)
        REJECT(LT_R_MISSING_FIELD, "return_sale.original (node_id, event_id) is required");
    if (r->n_lines == 0)
        REJECT(LT_R_MISSING_FIELD, "return_sale has no lines");
    if (r->n_lines > LT_RETURN_LINES_MAX)
        REJECT(LT_R_TOO_MANY_LINES, "return_sale has %zu lines, at most %d", r->n_lines,
               LT_RETURN_LINES_MAX);
    ev->original.node_id = r->original->node_id;
    ev->original.event_id = r->original->event_id;
    for (size_t i = 0; i < r->n_lines; i++) {
        const Loyalty__ReturnLine *pl = r->lines[i];
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
    ev->return_lines_n = (uint32_t)r->n_lines;
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

static int body_from_pb(const Loyalty__Event *pe, lt_event *ev, char *msg, size_t msg_len)
{
    switch (pe->body_case) {
    case LOYALTY__EVENT__BODY_SALE:
        ev->kind = LT_EV_SALE;
        if (ev->store_id[0] == '\0')
            REJECT(LT_R_MISSING_FIELD, "store_id is required for a sale");
        return sale_from_pb(pe->sale, ev, msg, msg_len);
    case LOYALTY__EVENT__BODY_ENROL: {
        const Loyalty__Enrol *e = pe->enrol;
        ev->kind = LT_EV_ENROL;
        if (ev->member_id[0] == '\0')
            REJECT(LT_R_MISSING_FIELD, "member_id is required for an enrolment");
        uint32_t m = e->has_birth_month ? e->birth_month : 0;
        uint32_t d = e->has_birth_day ? e->birth_day : 0;
        if ((m != 0 || d != 0) && !valid_birthday(m, d))
            REJECT(LT_R_INVALID_FIELD, "birthday %u-%u is not a calendar date", m, d);
        ev->birth_month = (uint8_t)m;
        ev->birth_day = (uint8_t)d;
        ev->staff = e->has_staff && e->staff;
        TEXT_FIELD(ev->referrer, e->referrer, "enrol.referrer", false);
        if (strcmp(ev->referrer, ev->member_id) == 0)
            REJECT(LT_R_INVALID_FIELD, "a member cannot refer themselves");
        if (e->card != NULL && e->card[0] != '\0') {
            if (ev->card[0] != '\0' && strcmp(ev->card, e->card) != 0)
                REJECT(LT_R_INVALID_FIELD, "event card and enrol.card differ");
            TEXT_FIELD(ev->card, e->card, "enrol.card", false);
        }
        return LT_R_NONE;
    }
    case LOYALTY__EVENT__BODY_CARD_LINK: {
        const Loyalty__CardLink *c = pe->card_link;
        ev->kind = LT_EV_CARD_LINK;
        if (ev->member_id[0] == '\0')
            REJECT(LT_R_MISSING_FIELD, "member_id is required for a card link");
        TEXT_FIELD(ev->card, c->card, "card_link.card", true);
        TEXT_FIELD(ev->replaces_card, c->replaces_card, "card_link.replaces_card", false);
        if (strcmp(ev->card, ev->replaces_card) == 0)
            REJECT(LT_R_INVALID_FIELD, "a card cannot replace itself");
        return LT_R_NONE;
    }
    case LOYALTY__EVENT__BODY_GIFT: {
        const Loyalty__GiftRedemption *g = pe->gift;
        ev->kind = LT_EV_GIFT;
        if (!g->has_points || g->points < 1 || g->points > LT_POINTS_MAX)
            REJECT(LT_R_INVALID_FIELD, "gift.points %lld is not in 1..%lld", (long long)g->points,
                   (long long)LT_POINTS_MAX);
        ev->points = g->points;
        TEXT_FIELD(ev->reward_code, g->reward_code, "gift.reward_code", true);
        return LT_R_NONE;
    }
    case LOYALTY__EVENT__BODY_ADJUSTMENT: {
        const Loyalty__Adjustment *a = pe->adjustment;
        ev->kind = LT_EV_ADJUST;
        if (!a->has_points || a->points == 0 || a->points > LT_POINTS_MAX ||
            a->points < -LT_POINTS_MAX)
            REJECT(LT_R_INVALID_FIELD, "adjustment.points %lld is zero or beyond +-%lld",
                   (long long)a->points, (long long)LT_POINTS_MAX);
        ev->points = a->points;
        TEXT_FIELD(ev->reason_code, a->reason_code, "adjustment.reason_code", true);
        TEXT_FIELD(ev->operator_id, a->operator_id, "adjustment.operator_id", true);
        return LT_R_NONE;
    }
    case LOYALTY__EVENT__BODY_RETURN_SALE:
        ev->kind = LT_EV_RETURN;
        return return_from_pb(pe->return_sale, ev, msg, msg_len);
    case LOYALTY__EVENT__BODY_MERGE:
        ev->kind = LT_EV_MERGE;
        if (ev->member_id[0] == '\0')
            REJECT(LT_R_MISSING_FIELD, "member_id is required for a merge");
        TEXT_FIELD(ev->source_member, pe->merge->source_member, "merge.source_member", true);
        if (strcmp(ev->source_member, ev->member_id) == 0)
            REJECT(LT_R_INVALID_FIELD, "a member cannot be merged into itself");
        return LT_R_NONE;
    default:
        REJECT(LT_R_MISSING_FIELD, "event has no body (sale, enrol, card_link, gift, adjustment, "
                                   "return_sale or merge)");
    }
}

int ingest_event_from_pb(const Loyalty__Event *pe, const ingest_limits *lim, lt_event *ev,
                         char *msg, size_t msg_len)
{
    event_reset(ev);
    msg[0] = '\0';
    if (pe->id == NULL || !pe->id->has_node_id || !pe->id->has_event_id)
        REJECT(LT_R_MISSING_FIELD, "id (node_id, event_id) is required");
    if (pe->id->node_id == 0 || pe->id->event_id == 0)
        REJECT(LT_R_INVALID_FIELD, "id: node_id and event_id must be at least 1 (R29)");
    ev->id.node_id = pe->id->node_id;
    ev->id.event_id = pe->id->event_id;
    TEXT_FIELD(ev->member_id, pe->member_id, "member_id", false);
    TEXT_FIELD(ev->card, pe->card, "card", false);
    TEXT_FIELD(ev->store_id, pe->store_id, "store_id", false);
    if (ev->member_id[0] == '\0' && ev->card[0] == '\0')
        REJECT(LT_R_MISSING_FIELD, "member_id or card is required");
    if (!pe->has_occurred_at)
        REJECT(LT_R_MISSING_FIELD, "occurred_at is required");
    if (pe->occurred_at > lim->now + lim->future_skew_s_max ||
        pe->occurred_at < lim->now - lim->past_age_s_max)
        REJECT(LT_R_TIMESTAMP_OUT_OF_RANGE,
               "occurred_at %lld is outside now-%llds..now+%llds (now %lld)",
               (long long)pe->occurred_at, (long long)lim->past_age_s_max,
               (long long)lim->future_skew_s_max, (long long)lim->now);
    ev->occurred_at = pe->occurred_at;
    if (pe->time_zone != NULL && pe->time_zone[0] != '\0') {
        if (ingest_zone_offset(pe->time_zone, pe->occurred_at, &ev->utc_offset_min) != 0)
            REJECT(LT_R_UNKNOWN_TIME_ZONE, "time_zone \"%.40s\" is not a known zone",
                   pe->time_zone);
    } else if (pe->has_utc_offset_min) {
        if (pe->utc_offset_min < -14 * 60 || pe->utc_offset_min > 14 * 60)
            REJECT(LT_R_INVALID_FIELD, "utc_offset_min %d is not in -840..840", pe->utc_offset_min);
        ev->utc_offset_min = pe->utc_offset_min;
    } else {
        REJECT(LT_R_MISSING_FIELD, "utc_offset_min or time_zone is required (R3)");
    }
    return body_from_pb(pe, ev, msg, msg_len);
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
    /* the largest event: 200 lines of two strings and four numbers, plus the header */
    static uint8_t buf[LT_SALE_LINES_MAX * (2 * LT_ID_MAX + 5 * 8) + 16 * LT_TEXT_MAX];
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
