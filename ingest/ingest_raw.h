/* ingest_raw.h (private to ingest/): one loyalty.Event as decoded but not yet validated.
 *
 * Both decoders fill it: validate.c from a protobuf-c Loyalty__Event (ingest_event_from_pb),
 * wire.c straight from the wire bytes (ingest_event_from_wire). validate.c then checks and
 * converts it with one code path, so both give the same answer for the same event. Strings are
 * (pointer, length) views into the caller's data, cut at the first NUL as a C string would be.
 */
#ifndef LT_INGEST_RAW_H
#define LT_INGEST_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest.h"

typedef struct {
    const char *p; /* NULL: absent */
    size_t n;
} ingest_str;

typedef struct {
    ingest_str sku, category;
    bool has_quantity, has_unit_list_fen, has_unit_paid_fen;
    int64_t quantity, unit_list_fen, unit_paid_fen;
    uint32_t flags;
} ingest_raw_line;

typedef struct {
    bool has_line_index, has_quantity;
    uint32_t line_index;
    int64_t quantity;
} ingest_raw_rline;

typedef struct {
    bool has_id, has_node_id, has_event_id;
    uint64_t node_id, event_id;
    ingest_str member_id, card, store_id, time_zone;
    bool has_occurred_at, has_utc_offset_min;
    int64_t occurred_at;
    int32_t utc_offset_min;
    uint32_t body; /* Loyalty__Event__BodyCase */
    /* sale: lines_n counts every line; the first LT_SALE_LINES_MAX are in lines[] */
    size_t lines_n;
    bool has_redeem_points;
    int64_t redeem_points;
    ingest_raw_line lines[LT_SALE_LINES_MAX];
    /* enrol */
    bool has_birth_month, has_birth_day, has_staff, staff;
    uint32_t birth_month, birth_day;
    ingest_str referrer, enrol_card;
    /* card_link */
    ingest_str link_card, replaces_card;
    /* gift, adjustment */
    bool has_points;
    int64_t points;
    ingest_str reward_code, reason_code, operator_id;
    /* return_sale: rlines_n counts every line; the first LT_RETURN_LINES_MAX are in rlines[] */
    bool has_original, has_orig_node_id, has_orig_event_id;
    uint64_t orig_node_id, orig_event_id;
    size_t rlines_n;
    ingest_raw_rline rlines[LT_RETURN_LINES_MAX];
    /* merge */
    ingest_str source_member;
} ingest_raw_event;

/* The calling thread's raw event (it is large: the lines), cleared but for the line arrays,
 * which are read only up to their counts. Both decoders fill it, then validate it. */
ingest_raw_event *ingest_raw_begin(void);

/* Clears an event as validation does before filling it. */
void ingest_event_reset(lt_event *ev);

/* Validates and converts a decoded event (validate.c): ingest_event_from_pb's contract. */
int ingest_event_from_raw(const ingest_raw_event *r, const ingest_limits *lim, lt_event *ev,
                          char *msg, size_t msg_len);

#endif
