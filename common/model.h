/* model.h: the domain types every module speaks: events as validated by ingest, member state as
 * projected from the ledger, and ledger entries (the effects of rating, R30).
 *
 * These are plain fixed-size C structs, decoupled from protobuf, so that rating is pure and
 * allocation-free and unit tests can build them by hand. Strings are NUL-terminated and always
 * fit their arrays (ingest rejects longer input). Money is fen, points are whole, times are UTC
 * seconds (R1, R3).
 */
#ifndef LT_MODEL_H
#define LT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "lt.h"

/* ------------------------------------------------------------------ events */

typedef enum {
    LT_EV_NONE = 0,
    LT_EV_SALE = 1,
    LT_EV_ENROL = 2,
    LT_EV_CARD_LINK = 3,
    LT_EV_GIFT = 4,
    LT_EV_ADJUST = 5,
    LT_EV_RETURN = 6,
    LT_EV_MERGE = 7,
} lt_event_kind;

#define LT_LINE_GROUP_BUY 1u /* loyalty.LineFlag bits (R9) */
#define LT_LINE_PROMOTION 2u

typedef struct {
    char sku[LT_ID_MAX];
    char category[LT_ID_MAX];
    int64_t quantity;      /* 1..LT_QUANTITY_MAX */
    int64_t unit_list_fen; /* 0..LT_UNIT_FEN_MAX */
    int64_t unit_paid_fen; /* 0..unit_list_fen */
    uint32_t flags;        /* LT_LINE_* */
} lt_line;

typedef struct {
    uint32_t line_index;
    int64_t quantity;
} lt_return_line;

typedef struct {
    uint64_t node_id;
    uint64_t event_id;
} lt_event_id;

/* One validated event. Only the fields of its kind are meaningful; the rest are zero. */
typedef struct {
    lt_event_kind kind;
    lt_event_id id;
    char member_id[LT_ID_MAX]; /* resolved member id (ingest resolves cards, R4) */
    char card[LT_ID_MAX];      /* the card the till named, if any */
    char store_id[LT_ID_MAX];
    int64_t occurred_at;    /* UTC seconds */
    int32_t utc_offset_min; /* store's offset at occurred_at (R3) */

    /* LT_EV_SALE */
    int64_t redeem_points; /* R15 */
    uint32_t lines_n;
    lt_line lines[LT_SALE_LINES_MAX];

    /* LT_EV_ENROL */
    uint8_t birth_month, birth_day; /* 0 = unknown */
    bool staff;
    char referrer[LT_ID_MAX];
    /* enrol's first card is in `card` */

    /* LT_EV_CARD_LINK: link `card`; replaces_card is deactivated (R7) */
    char replaces_card[LT_ID_MAX];

    /* LT_EV_GIFT (points > 0) and LT_EV_ADJUST (points signed, R27) */
    int64_t points;
    char reward_code[LT_TEXT_MAX];
    char reason_code[LT_TEXT_MAX];
    char operator_id[LT_TEXT_MAX];

    /* LT_EV_RETURN */
    lt_event_id original;
    uint32_t return_lines_n;
    lt_return_line return_lines[LT_RETURN_LINES_MAX];

    /* LT_EV_MERGE */
    char source_member[LT_ID_MAX];
} lt_event;

/* ------------------------------------------------------------------ member state */

typedef struct {
    int64_t points;     /* remaining, > 0 while held */
    int64_t earned_at;  /* UTC seconds */
    int64_t expires_at; /* UTC seconds, 0 = never (R19) */
} lt_lot;

typedef enum { LT_MEMBER_ACTIVE = 0, LT_MEMBER_BLOCKED = 1, LT_MEMBER_CLOSED = 2 } lt_member_status;

/* A member as the ledger's projection holds it (R5). The state module owns `lots`. */
typedef struct {
    char id[LT_ID_MAX];
    char tier[LT_TIER_NAME_MAX]; /* tier name; "" = the rules' lowest tier */
    char referrer[LT_ID_MAX];
    uint8_t birth_month, birth_day;
    uint8_t staff;
    uint8_t status;         /* lt_member_status */
    uint8_t offset_known;   /* utc_offset_min was seen on one of the member's events */
    int16_t utc_offset_min; /* the store offset of the member's last event (R3: sweeps) */
    uint32_t sales;         /* eligible sales rated (R25 first_sale) */
    int64_t enrolled_at;
    int64_t debt;         /* R18: negative balance outside the lots, >= 0 */
    int64_t qualifying;   /* tier-period total: fen, or points with tier_basis points (R22) */
    int64_t lifetime_fen; /* lifetime spend */
    int64_t last_purchase_at;
    /* time-driven markers (R20, R21, R24, R28), so that rules_due() writes each effect once */
    int32_t period_start_day;        /* local day number of the tier period's first day (R24);
                                      * 0 = unknown (a member from before the markers) */
    int32_t birthday_notified_year;  /* last year member.birthday was published (R28) */
    int64_t expiring_notified_until; /* lot expiry of the last points.expiring (R21) */
    int64_t dormant_notified_at;     /* purchase (or enrolment) time of the last member.dormant */
    uint32_t lots_n, lots_cap;
    lt_lot *lots; /* sorted by (expires_at with 0 last, earned_at): FIFO spend order (R17) */
} lt_member;

/* ------------------------------------------------------------------ ledger entries (effects) */

typedef enum {
    LT_ENTRY_NONE = 0,
    LT_ENTRY_SALE = 1,
    LT_ENTRY_ENROL = 2,
    LT_ENTRY_CARD_LINK = 3,
    LT_ENTRY_GIFT = 4,
    LT_ENTRY_ADJUSTMENT = 5,
    LT_ENTRY_RETURN = 6,
    LT_ENTRY_MERGE = 7,
    LT_ENTRY_EXPIRE = 8,
    LT_ENTRY_TIER_PERIOD = 9,
    LT_ENTRY_NOTICE = 10,
} lt_entry_kind;

/* One member's change (loyalty.Posting). Applied in order by state_apply(); never re-rated. */
typedef struct {
    char member_id[LT_ID_MAX];
    bool create; /* enrol the member with the attributes below */
    uint8_t birth_month, birth_day;
    bool staff;
    char referrer[LT_ID_MAX];
    int64_t debit;             /* FIFO spend (R17) */
    int64_t credit;            /* pays debt first, the rest is a new lot (R18) */
    int64_t credit_expires_at; /* 0 = never */
    int64_t lifetime_delta_fen;
    int64_t qualifying_delta;
    char tier_after[LT_TIER_NAME_MAX];  /* "" = unchanged; the daemon records it always */
    char tier_before[LT_TIER_NAME_MAX]; /* the tier before (informational: publications) */
    char reason[16];                    /* sale, return, gift, adjustment, referral, enrol, ... */
    int64_t balance_after;              /* balance once applied */
    bool count_sale;                    /* bump sales count, set last_purchase_at */
    char card[LT_ID_MAX];               /* link this card */
    char unlink_card[LT_ID_MAX];        /* deactivate this card */
    int64_t clamp; /* R18 negative_balance clamp: points not debited (informational) */
    /* R7: fold this member into the posting's member: its lots (FIFO order kept), debt, spend
     * totals, sales and cards move over and it is closed with nothing left. */
    char merge_from[LT_ID_MAX];
    /* set the member's time-driven markers (lt_member; 0 = unchanged): written by rules_due()
     * and, for the tier period, by enrolments, sales and merges that start one (R24) */
    int32_t set_period_start_day;
    int32_t set_birthday_year;
    int64_t set_expiring_notified;
    int64_t set_dormant_notified;
} lt_posting;

/* Per-line result of rating a sale (loyalty.LineResult), kept for returns (R18). */
typedef struct {
    int64_t quantity;
    int64_t paid_fen;        /* quantity * unit_paid_fen */
    int64_t eligible_fen;    /* after exclusions (R9) and the points-paid share (R10) */
    int64_t redeemed_fen;    /* share of the points-paid value (R10) */
    int64_t redeemed_points; /* share of redeem_points, for pro-rata give-back (R18) */
    int64_t points;          /* points this line earned, sku points included */
    int64_t qualifying_fen;  /* tier-qualifying amount (R22) */
    /* what was rated, so that a sale can be re-rated from the ledger alone (R30 what-if) */
    int64_t unit_list_fen;
    uint32_t flags;
    char sku[LT_ID_MAX];
    char category[LT_ID_MAX];
} lt_line_result;

/* A ledger entry: what one event did (loyalty.LedgerEntry). */
typedef struct {
    uint64_t seq; /* assigned by the daemon; 0 while rating */
    lt_event_kind event_kind;
    lt_entry_kind kind;
    lt_event_id id;
    int64_t occurred_at;
    int32_t utc_offset_min;
    char store_id[LT_ID_MAX];
    char member_id[LT_ID_MAX];
    char rules_version[LT_TEXT_MAX]; /* R31 */
    uint64_t digest;                 /* hash of the event's content (CONFLICT detection) */

    uint32_t postings_n;
    lt_posting postings[LT_POSTINGS_MAX];

    /* sale summary */
    int64_t paid_fen, eligible_fen;
    int64_t base_points;
    uint32_t multiplier_pct;
    int64_t sku_points;
    int64_t points_earned, points_redeemed;
    uint32_t lines_n;
    lt_line_result lines[LT_SALE_LINES_MAX];

    /* gift, adjustment, return */
    char reward_code[LT_TEXT_MAX];
    char reason_code[LT_TEXT_MAX];
    char operator_id[LT_TEXT_MAX];
    lt_event_id original;
    uint64_t original_seq;
} lt_entry;

#endif
