/* rules_internal.h: the layout of a loaded `rules` object and the helpers the rules/ sources
 * share. Private to rules/ (and its unit tests); other modules use rules.h only.
 */
#ifndef LT_RULES_INTERNAL_H
#define LT_RULES_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "rules.h"

/* ---- limits of a rules file, checked by the loader ---- */
#define RULES_FILE_BYTES_MAX (4 << 20)  /* a rules file */
#define RULES_CATEGORIES_MAX 256        /* excluded categories; categories over all earn classes */
#define RULES_KNOWN_STORES_MAX 4096     /* the optional list of known stores */
#define RULES_KNOWN_CATEGORIES_MAX 1024 /* the optional list of known categories */
#define RULES_CLASSES_MAX 16            /* earn classes */
#define RULES_BANDS_MAX 8               /* rebate bands */
#define RULES_PROMOTIONS_MAX 64         /* promotions */
#define RULES_PROMO_LIST_MAX 32         /* stores or categories of one promotion */
#define RULES_SKUS_MAX 100000           /* sku_points entries */
#define RULES_TIERS_MAX 16              /* tiers */
#define RULES_LEVELS_MAX 3              /* referral levels (R26) */
#define RULES_PCT_MAX 10000             /* any multiplier: x100 */
#define RULES_POINT_VALUE_FEN_MAX 1000000
#define RULES_SKU_POINTS_MAX 1000000 /* fixed points per unit of one sku (R14) */
#define RULES_DAYS_MAX 36500         /* ttl, notice and dormancy days */

typedef enum { RULES_EARN_POINTS = 0, RULES_EARN_REBATE = 1 } rules_earn_mode;
typedef enum { RULES_UNKNOWN_ENROL = 0, RULES_UNKNOWN_REJECT = 1 } rules_unknown_mode;
typedef enum { RULES_STACK_MAX = 0, RULES_STACK_MULTIPLY = 1 } rules_stacking;
typedef enum { RULES_BASIS_SPEND = 0, RULES_BASIS_POINTS = 1 } rules_tier_basis;
typedef enum { RULES_DOWNGRADE_TO_QUALIFIED = 0, RULES_DOWNGRADE_ONE_STEP = 1 } rules_downgrade;
typedef enum { RULES_NEGATIVE_ALLOW = 0, RULES_NEGATIVE_CLAMP = 1 } rules_negative;
typedef enum { RULES_TRIGGER_FIRST_SALE = 0, RULES_TRIGGER_ENROL = 1 } rules_referral_trigger;

typedef struct {
    char name[LT_ID_MAX];
    int64_t unit_fen; /* R11 */
} rules_class;

typedef struct {
    char category[LT_ID_MAX];
    uint32_t class_index; /* into rules.classes */
} rules_class_category;

typedef struct {
    int64_t min_paid_pct; /* band applies when paid*100 >= list*min_paid_pct (R12) */
    int64_t rate_bp;
} rules_band;

typedef struct {
    char name[LT_TEXT_MAX];
    uint32_t multiplier_pct;
    int64_t from_local, to_local; /* store-local seconds since 1970-01-01 00:00: [from, to) */
    uint32_t stores_n, categories_n;
    char stores[RULES_PROMO_LIST_MAX][LT_ID_MAX];     /* empty = every store */
    char categories[RULES_PROMO_LIST_MAX][LT_ID_MAX]; /* empty = every eligible line */
} rules_promotion;

typedef struct {
    char sku[LT_ID_MAX];
    int64_t points; /* per unit (R14) */
} rules_sku;

typedef struct {
    char name[LT_TIER_NAME_MAX];
    int64_t threshold; /* qualifying total that reaches the tier (R22) */
    int64_t retain;    /* qualifying total that keeps it at period end (R24) */
    uint32_t multiplier_pct;
} rules_tier;

/* What rating needs to know of one category named in the rules (R9, R11), found through a
 * hash index built at load time instead of scanning the lists per sale line. */
#define RULES_CATS_MAX (2 * RULES_CATEGORIES_MAX) /* excluded + earn class categories */
#define RULES_CAT_SLOTS (4 * RULES_CATS_MAX)      /* power of two: at most 25% load */
typedef struct {
    char name[LT_ID_MAX];
    bool excluded;        /* listed in excluded_categories (R9) */
    bool has_class;       /* listed in an earn class (R11) */
    uint32_t class_index; /* into rules.classes, when has_class */
} rules_cat;

struct rules {
    char version[LT_TEXT_MAX];         /* R31 */
    int64_t point_value_fen;           /* R2 */
    rules_earn_mode earn_mode;         /* R11 / R12 */
    rules_unknown_mode unknown_member; /* R8 */
    bool staff_earns;                  /* R6 */

    /* known stores and categories: empty = any; sorted, for bsearch */
    uint32_t known_stores_n, known_categories_n;
    char known_stores[RULES_KNOWN_STORES_MAX][LT_ID_MAX];
    char known_categories[RULES_KNOWN_CATEGORIES_MAX][LT_ID_MAX];
    uint32_t excluded_n; /* R9 */
    char excluded[RULES_CATEGORIES_MAX][LT_ID_MAX];
    uint32_t excluded_flags; /* LT_LINE_* bits */

    uint32_t classes_n, class_default; /* R11 */
    rules_class classes[RULES_CLASSES_MAX];
    uint32_t class_categories_n;
    rules_class_category class_categories[RULES_CATEGORIES_MAX];

    uint32_t bands_n; /* R12, highest min_paid_pct first */
    rules_band bands[RULES_BANDS_MAX];

    rules_stacking stacking; /* R13 */
    uint32_t cap_pct, birthday_pct;
    uint32_t promotions_n;
    rules_promotion promotions[RULES_PROMOTIONS_MAX];

    uint32_t skus_n; /* R14, sorted by sku */
    rules_sku *skus;

    uint32_t tiers_n; /* R22, lowest first */
    rules_tier tiers[RULES_TIERS_MAX];
    rules_tier_basis tier_basis;
    uint32_t tier_period_months;
    rules_downgrade downgrade; /* R24 */

    rules_expiry_mode expiry_mode; /* R19 */
    uint32_t cutoff_month, cutoff_day, expiry_period_months;
    int64_t ttl_days, notice_days; /* R19, R21 */

    rules_negative negative_balance; /* R18 */

    int64_t referral_bonus; /* R25 */
    rules_referral_trigger referral_trigger;
    uint32_t referral_levels_n; /* R26 */
    int64_t referral_levels_bp[RULES_LEVELS_MAX];

    int64_t dormant_days; /* R28 */
    bool birthday_notice; /* R28 */

    /* the category index (rules__index_categories()): cats[cat_slots[i] - 1]; 0 = empty */
    uint32_t cats_n;
    rules_cat cats[RULES_CATS_MAX];
    uint16_t cat_slots[RULES_CAT_SLOTS];
};

/* Builds the category index from excluded and class_categories. The loader calls it once the
 * whole file is read; nothing may change those lists afterwards. */
void rules__index_categories(rules *r);

/* The category's facts, or NULL for a category the rules do not name (not excluded, in the
 * default earn class). */
const rules_cat *rules__category(const rules *r, const char *name);

/* Index of the tier named `name` ("" = the lowest); a name the rules do not know counts as the
 * lowest tier. */
uint32_t rules__tier_index(const rules *r, const char *name);

/* Balance of a member (R18): sum of lots minus debt. Returns false on int64 overflow. */
bool rules__balance(const lt_member *m, int64_t *out);

/* Is the store-local date of t the birthday month/day (R13; 29 Feb counts on 28 Feb in common
 * years)? False when the birthday is unknown. */
bool rules__is_birthday(int64_t t, int32_t off_min, uint8_t month, uint8_t day);

/* Days in month m of year y. */
int rules__days_in_month(int y, int m);

/* Rates a sale (rules_sale.c). `m` is NULL for a member this sale enrols. The entry header and
 * out->member_id are already set; the function adds the postings and the sale summary. */
int rules__rate_sale(const rules *r, const rules_view *view, const lt_event *ev, const lt_member *m,
                     int64_t balance, lt_entry *out);

/* Rates a return (rules_return.c, R18) for member `m` (never NULL) whose balance is `balance`.
 * The entry header and out->member_id are already set; the function adds the posting, the
 * reversed lines and the summary. */
int rules__rate_return(const rules *r, const rules_view *view, const lt_event *ev,
                       const lt_member *m, int64_t balance, lt_entry *out);

/* Appends the referral bonus posting for `referrer_id` (R25) if the rules grant one and the
 * referrer exists, is active and is not `member_id`. Returns LT_R_NONE or a reason. */
int rules__referral_posting(const rules *r, const rules_view *view, const lt_event *ev,
                            const char *referrer_id, const char *member_id, lt_entry *out);

/* R24: the first day of the tier period holding local day `day`. */
int32_t rules__period_start(const rules *r, int64_t day);

/* R24: marks posting p (of an event at UTC t, offset off_min, for member m; NULL = the posting
 * creates it) with the tier period it starts, when the member's own marker is unknown (0) or
 * stale (rules_due() skipped a period end that changed nothing, and this posting may now add
 * qualifying spend or a tier). Used by enrolments, sales and merges. */
void rules__period_mark(const rules *r, const lt_member *m, int64_t t, int32_t off_min,
                        lt_posting *p);

/* Appends a posting for member_id with balance_after and reason set, the rest zero. The entry
 * must have room (LT_POSTINGS_MAX: every rating path stays below it). */
lt_posting *rules__posting_add(lt_entry *out, const char *member_id, int64_t balance,
                               const char *reason);

/* Bounded copy of a NUL-terminated string into dst[cap]. */
void rules__copy(char *dst, size_t cap, const char *src);

#endif
