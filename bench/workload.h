/* workload.h: the benchmark's event mix, independent of how it is sent.
 *
 * One generator feeds both loyaltyd (load.c: protobuf over ZeroMQ) and the PostgreSQL baseline
 * (pg.c: SQL), so the two are measured on the same workload:
 *   - members "139%08u" 0..members-1, Zipf-distributed (s = 1, scattered by a multiplicative
 *     permutation so hot members are not all low ids); the population is enrolled first
 *     (wl_population), each with a birthday spread over the year, so some sales fall on one;
 *   - sales of 1-20 lines over 10 categories (groceries ... appliances; tobacco, alcohol and
 *     special_price are excluded by the default rules, appliances and clothing are big-ticket),
 *     30% of lines discounted, some promotion and group-buy lines;
 *   - ~5% of sales redeem points, sized from the member's last acknowledged balance;
 *   - ~1% returns of one unit of a line of a recent accepted sale of the same till;
 *   - ~1% enrolments of new members, with a card.
 * Everything here is a pure function of the rng state and the caller's history: no I/O.
 */
#ifndef LT_BENCH_WORKLOAD_H
#define LT_BENCH_WORKLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "lt.h"

#define WL_LINES_MAX 20
#define WL_SKUS 1000
#define WL_STORES 20
#define WL_UTC_OFFSET_MIN 480
#define WL_HISTORY 256 /* recent accepted sales a till remembers for returns */
#define WL_MEMBER_NONE UINT32_MAX

typedef enum { WL_SALE = 1, WL_ENROL = 2, WL_RETURN = 3 } wl_kind;

/* loyalty.LineFlag bits */
#define WL_FLAG_PROMOTION 1u
#define WL_FLAG_GROUP_BUY 2u

typedef struct {
    const char *sku;
    const char *category;
    int64_t quantity;
    int64_t unit_list_fen;
    int64_t unit_paid_fen;
    uint32_t flags;
    bool excluded;   /* the default rules exclude the category (R9) */
    bool big_ticket; /* the default rules' big_ticket earn class (R11) */
} wl_line;

typedef struct {
    wl_kind kind;
    uint32_t member;                /* member index for sales and returns, WL_MEMBER_NONE else */
    char member_id[LT_ID_MAX];      /* every kind */
    char card[LT_ID_MAX];           /* WL_ENROL */
    uint8_t birth_month, birth_day; /* WL_ENROL */
    const char *store;
    int64_t paid_fen; /* WL_SALE: sum of quantity * unit_paid_fen */
    int64_t redeem_points;
    uint32_t lines_n;
    wl_line lines[WL_LINES_MAX];
    /* WL_RETURN: one unit of line return_line of the till's earlier sale return_of */
    uint64_t return_of;   /* event id */
    uint64_t return_node; /* ... of this node; 0: the message's own */
    uint32_t return_line;
    int64_t return_unit_paid_fen;
} wl_event;

/* A till's recent accepted sales, for returns. */
typedef struct {
    uint64_t node_id; /* the node that sent it (0: the till's only one) */
    uint64_t event_id;
    uint32_t member;
    uint32_t line; /* the line a return would take one unit of */
    int64_t unit_paid_fen;
    bool returned;
} wl_past;

typedef struct {
    wl_past ring[WL_HISTORY];
    uint32_t n, next;
} wl_history;

typedef struct {
    uint32_t members;
    double zipf_log;
    uint64_t perm_mult;
    char (*skus)[16];
    char (*stores)[8];
} wl_model;

/* members >= 1. Returns 0, or -1 on allocation failure. */
int wl_model_init(wl_model *m, uint32_t members);
void wl_model_free(wl_model *m);

uint64_t wl_rnd(uint64_t *s);
uint64_t wl_rnd_below(uint64_t *s, uint64_t n);

/* A Zipf-distributed member index. */
uint32_t wl_pick_member(const wl_model *m, uint64_t *rng);
/* The member id of index i ("139%08u"). */
void wl_member_id(uint32_t i, char out[LT_ID_MAX]);
/* The birthday of population member i: spread over the year, 28 days a month. */
void wl_birthday(uint32_t i, uint8_t *month, uint8_t *day);

/* The next event of a till: node is its node id, *enrolled counts its enrolments, balances
 * (may be NULL) holds the last acknowledged balance per member, h (may be NULL) its recent
 * accepted sales. A return marks its history entry used. */
void wl_next(const wl_model *m, uint64_t *rng, uint64_t node, uint64_t *enrolled,
             const int64_t *balances, wl_history *h, wl_event *out);

/* The population enrolment of member i (kind WL_ENROL, no card). */
void wl_population(uint32_t i, wl_event *out);

/* What a till keeps of a sale it sent (event id event_id) until it is acknowledged. */
void wl_past_of(const wl_event *sale, uint64_t event_id, wl_past *out);
/* Records an accepted sale for later returns. */
void wl_history_add(wl_history *h, const wl_past *p);

#endif
