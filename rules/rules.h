/* rules.h: the rules file and the pure rating function.
 *
 * rules_load_*() parse a YAML rules file (format in docs/rules.md) into an immutable `rules`
 * object, validating every value with file:line messages. rules_rate() turns (member state,
 * event, rules) into a ledger entry (the effects), with no I/O and no allocation: the same
 * inputs always give the same entry (R30). State changes happen elsewhere (state_apply()).
 */
#ifndef LT_RULES_H
#define LT_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct rules rules;

/* Read-only lookups into the current state that rating may need (the event's member, a card's
 * owner, a referrer, an original sale). Pure: the callbacks must not change anything. */
typedef struct {
    void *ctx;
    /* Returns the member or NULL if unknown. Valid until the state changes. */
    const lt_member *(*member)(void *ctx, const char *member_id);
    /* Returns the member id a card is linked to, or NULL. Valid until the state changes. */
    const char *(*card_owner)(void *ctx, const char *card);
    /* R18: finds the ledger entry of event `id`. Returns 0 with *entry (valid until the next
     * call; never the entry being rated), *returned_qty (the cumulative quantities already
     * returned of each of the entry's lines_n lines, or NULL when nothing was returned yet;
     * valid until the state changes) and *seq (the entry's ledger sequence); -1 if the event
     * is unknown (UNKNOWN_SALE); another negative value if it cannot be read now
     * (INTERNAL_ERROR: the till resends). The entry may be of any kind: rating checks that it
     * is a sale of the return's member. May be NULL: every return is then UNKNOWN_SALE. */
    int (*sale)(void *ctx, lt_event_id id, const lt_entry **entry, const int64_t **returned_qty,
                uint64_t *seq);
} rules_view;

/* Loads a rules file. On success returns 0 and *out (caller owns it: rules_destroy()).
 * On error returns -1 and writes "FILE:LINE: what is wrong" into err. */
int rules_load_file(const char *path, rules **out, char *err, size_t err_len);

/* The same from memory; `name` stands for the file name in messages. */
int rules_load_string(const char *text, size_t len, const char *name, rules **out, char *err,
                      size_t err_len);

/* The built-in default rules (the seed programme of RULES.md), as YAML text. Static storage. */
const char *rules_default_text(void);

/* Frees the rules and sets *r to NULL. Safe on NULL. */
void rules_destroy(rules **r);

/* The rules' version string (R31), as given in the file. Valid while the rules live. */
const char *rules_version(const rules *r);

/* The name of the lowest tier (new members start there). Valid while the rules live. */
const char *rules_tier_base(const rules *r);

/* What one point is worth in fen when redeemed (R2). */
int64_t rules_point_value_fen(const rules *r);

/* The tiers' names, lowest first (R22): fills up to max pointers (valid while the rules live)
 * and returns how many tiers there are. */
size_t rules_tier_names(const rules *r, const char **names, size_t max);

/* Rates one validated event against the current state.
 * Returns LT_R_NONE (0) and fills *out with the complete entry (seq left 0, rules_version set),
 * or returns the lt_reason why the event is rejected (*out is then undefined). Never fails for
 * any other reason: every input ingest lets through is either rated or rejected. Of the lines
 * array only lines[0..lines_n) is written; the rest is left as it was (as entry_decode() does),
 * which spares a sale clearing 27 KiB of lines it does not have. */
int rules_rate(const rules *r, const rules_view *view, const lt_event *ev, lt_entry *out);

/* ---- options the state module and the sweeps read (R18, R19, R21, R28) ---- */

typedef enum {
    RULES_EXPIRY_CALENDAR = 0, /* cut-off day(s) every period_months (R19, default) */
    RULES_EXPIRY_ROLLING = 1,  /* ttl_days after the earning date */
    RULES_EXPIRY_NONE = 2,
} rules_expiry_mode;

/* Expiry time (UTC seconds, 0 = never) of a lot earned at UTC time t by an event whose store
 * offset is off_min (R19): always 00:00 store-local time of the expiry day. */
int64_t rules_lot_expires_at(const rules *r, int64_t t, int32_t off_min);
/* The expiry mode (R19). */
rules_expiry_mode rules_expiry(const rules *r);
/* Days before a lot's expiry at which points.expiring is published; 0 = never (R21). */
int64_t rules_expiry_notice_days(const rules *r);
/* True with `negative_balance: clamp`, false with `allow` (R18). */
int rules_negative_balance_clamp(const rules *r);
/* Days without a purchase after which member.dormant is published; 0 = never (R28). */
int64_t rules_dormant_days(const rules *r);
/* True if member.birthday notices are published (R28). */
int rules_birthday_notice(const rules *r);

/* ---- time-driven rules (R19-R21, R24, R28): what falls due by a time ---- */

/* At most this many entries come out of one rules_due() call: EXPIRE, TIER_PERIOD, NOTICE. */
#define RULES_DUE_MAX 4

/* Time-driven entries due for member m at UTC time t (R19-R21, R24, R28), in the order to
 * apply them: expiry of lots expired by t (LT_ENTRY_EXPIRE, reason "expire", publishes
 * points.expired), the end of a tier period (LT_ENTRY_TIER_PERIOD, R24), and notices
 * (LT_ENTRY_NOTICE: points.expiring R21, member.birthday, member.dormant R28). off_min is the
 * UTC offset to answer calendar questions in (the member's last known store offset, R3).
 * Fills out[0..n) (seq 0, id (0,0), rules_version set) and returns n (0..RULES_DUE_MAX). Pure.
 *
 * Exactly once: every entry sets markers in the member (lt_posting.set_*), so once the entries
 * are applied (state_apply(), in order) the same call returns 0. A closed member gets nothing;
 * a blocked one gets expiry and period ends but no notices. Details: docs/rules.md. */
int rules_due(const rules *r, const lt_member *m, int64_t t, int32_t off_min, lt_entry *out);

/* The first day (local day number, as rules_local_day()) of the tier period (R24) that holds
 * UTC time t at offset off_min: periods of tier_period_months starting 1 January local. */
void rules_period_of(const rules *r, int64_t t, int32_t off_min, int32_t *start_day);

/* ---- calendar helpers (R3), exposed for sweeps and tests ---- */

/* Days since 1970-01-01 of the store-local date of UTC time t at offset off_min. */
int64_t rules_local_day(int64_t t, int32_t off_min);
/* Civil date of a day number. */
void rules_civil_from_days(int64_t days, int *y, int *m, int *d);
/* Day number of a civil date (proleptic Gregorian). */
int64_t rules_days_from_civil(int y, int m, int d);

#endif
