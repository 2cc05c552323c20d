/* lt.h: what every loyaltyd module shares: the always-on assert, named limits and the
 * rejection reason table.
 *
 * The reason numbers equal loyalty.Reason in proto/loyalty.proto; they are part of the protocol.
 */
#ifndef LT_H
#define LT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Invariants (programmer errors) abort in every build, production included. Errors that come
 * from outside (bad input, full disk, lost peer) are handled and reported, never asserted. */
#define LT_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define LT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Asks the CPU for the cache lines of the n bytes at p, a hint that never faults (p may lie
 * outside any object). Always inlined: GCC 12 finds a function that only prefetches free of
 * side effects and drops its calls unless it is inlined (docs/performance.md). */
static inline __attribute__((always_inline)) void lt_prefetch(const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p, end = a + n;
    for (a &= ~(uintptr_t)63; a < end; a += 64)
        __builtin_prefetch((const void *)a);
}

/* ---- limits, checked at the edge (ingest) ---- */
#define LT_ID_MAX 32          /* member ids, cards, skus, categories, stores: incl. NUL */
#define LT_TEXT_MAX 64        /* reward codes, reason codes, operator ids: incl. NUL */
#define LT_TIER_NAME_MAX 16   /* incl. NUL */
#define LT_SALE_LINES_MAX 200 /* lines per sale */
#define LT_RETURN_LINES_MAX LT_SALE_LINES_MAX
#define LT_BATCH_EVENTS_MAX 1000        /* events per till message */
#define LT_MESSAGE_BYTES_MAX (1 << 20)  /* one till message */
#define LT_QUANTITY_MAX 1000000         /* units on one line */
#define LT_UNIT_FEN_MAX 10000000000LL   /* 100 million yuan per unit */
#define LT_LINE_FEN_MAX 1000000000000LL /* quantity * unit price */
#define LT_POINTS_MAX 1000000000000LL   /* any single points amount in an event */
#define LT_POSTINGS_MAX 8               /* member postings per ledger entry */

/* ---- rejection reasons: X(name, number, default message) ---- */
#define LT_REASON_MAP(X)                                                                           \
    X(NONE, 0, "ok")                                                                               \
    X(DECODE_ERROR, 1, "message is not a valid EventBatch")                                        \
    X(MESSAGE_TOO_LARGE, 2, "message exceeds the size limit")                                      \
    X(BATCH_TOO_LARGE, 3, "too many events in one message")                                        \
    X(MISSING_FIELD, 4, "a required field is missing")                                             \
    X(INVALID_FIELD, 5, "a field is out of range or malformed")                                    \
    X(TOO_MANY_LINES, 6, "too many lines in one sale")                                             \
    X(INVALID_QUANTITY, 7, "quantity must be between 1 and the limit")                             \
    X(INVALID_PRICE, 8, "price out of range")                                                      \
    X(AMOUNT_OVERFLOW, 9, "amounts exceed the supported range")                                    \
    X(TIMESTAMP_OUT_OF_RANGE, 10, "occurred_at is too far in the past or future")                  \
    X(UNKNOWN_TIME_ZONE, 11, "unknown time zone")                                                  \
    X(UNKNOWN_MEMBER, 12, "unknown member")                                                        \
    X(UNKNOWN_CARD, 13, "unknown card")                                                            \
    X(MEMBER_BLOCKED, 14, "member is blocked or closed")                                           \
    X(INSUFFICIENT_POINTS, 15, "not enough points")                                                \
    X(REDEMPTION_EXCEEDS_TOTAL, 16, "redeemed value exceeds the sale's paid total")                \
    X(UNKNOWN_SALE, 17, "the original sale is unknown")                                            \
    X(RETURN_EXCEEDS_SALE, 18, "returned quantity exceeds the quantity sold")                      \
    X(MEMBER_EXISTS, 19, "member already enrolled")                                                \
    X(CARD_IN_USE, 20, "card is linked to another member")                                         \
    X(CONFLICT, 21, "event id reused with different content")                                      \
    X(OVERLOADED, 22, "daemon is overloaded, resend later")                                        \
    X(SHUTTING_DOWN, 23, "daemon is shutting down, resend later")                                  \
    X(INTERNAL_ERROR, 24, "internal error, nothing applied, resend later")                         \
    X(UNSUPPORTED_EVENT, 25, "event kind not supported")                                           \
    X(NODE_NOT_ALLOWED, 26, "this till may not submit for that node id")                           \
    X(STORAGE_UNAVAILABLE, 27, "the ledger cannot take writes now, resend later")                  \
    X(UNKNOWN_STORE, 28, "store is not in the rules file's list of stores")                        \
    X(UNKNOWN_CATEGORY, 29, "category is not in the rules file's list of categories")

typedef enum {
#define LT_REASON_ENUM(name, num, msg) LT_R_##name = num,
    LT_REASON_MAP(LT_REASON_ENUM)
#undef LT_REASON_ENUM
        LT_R__COUNT
} lt_reason;

/* Returns the reason's protocol name ("INSUFFICIENT_POINTS"), or "UNKNOWN". Static storage. */
const char *lt_reason_name(int reason);
/* Returns the reason's default message. Static storage. */
const char *lt_reason_msg(int reason);

#endif
