/* rules_due.c: the time-driven rules: expiry of lots (R19, R20), the end of a tier period
 * (R24) and the notices (R21 points.expiring, R28 member.birthday and member.dormant).
 *
 * "Decided by event time and written when first observed" (R20): rules_due() answers, for one
 * member and a time t, which system entries are due; the daemon asks before each of the
 * member's events (t = the event's time) and in its sweeps (t = now), and writes them first.
 * Each entry sets a marker in the member (lt_posting.set_*), so that once it is applied the same
 * question has no answer: exactly once, across restarts too, since the markers are part of the
 * member state that checkpoints hold and replay rebuilds (R30).
 *
 * Pure and allocation-free, like rules_rate().
 */
#include <stddef.h>
#include <string.h>

#include "rules_internal.h"

#define SECONDS_PER_DAY 86400

/* ------------------------------------------------------------------ tier periods (R24) */

/* Months since year 0 of a day's civil month: y * 12 + (m - 1). */
static int64_t month_index(int64_t day)
{
    int y, m, d;
    rules_civil_from_days(day, &y, &m, &d);
    return (int64_t)y * 12 + (m - 1);
}

int32_t rules__period_start(const rules *r, int64_t day)
{
    int y, m, d;
    LT_ASSERT(r->tier_period_months >= 1 && 12 % r->tier_period_months == 0);
    rules_civil_from_days(day, &y, &m, &d);
    int first = (int)(((uint32_t)(m - 1) / r->tier_period_months) * r->tier_period_months) + 1;
    return (int32_t)rules_days_from_civil(y, first, 1);
}

/* The first day of the period after the one holding `day`. */
static int32_t period_after(const rules *r, int64_t day)
{
    int y, m, d;
    rules_civil_from_days(rules__period_start(r, day), &y, &m, &d);
    m += (int)r->tier_period_months;
    if (m > 12) {
        m -= 12;
        y++;
    }
    return (int32_t)rules_days_from_civil(y, m, 1);
}

void rules_period_of(const rules *r, int64_t t, int32_t off_min, int32_t *start_day)
{
    LT_ASSERT(r != NULL && start_day != NULL);
    *start_day = rules__period_start(r, rules_local_day(t, off_min));
}

/* The member's current period: its marker, or for a member from before the markers (0) the
 * period of its last purchase (else its enrolment), which its qualifying total belongs to. */
static int32_t member_period(const rules *r, const lt_member *m, int32_t off_min)
{
    if (m->period_start_day != 0)
        return m->period_start_day;
    int64_t at = m->last_purchase_at ? m->last_purchase_at : m->enrolled_at;
    return rules__period_start(r, rules_local_day(at, off_min));
}

/* Would a period end change nothing? Nothing qualified, and an empty period keeps the tier
 * (its retain threshold is 0: the base tier, or a tier configured so). Such period ends are
 * not written, so that members without activity cost no entry at every period end; the
 * member's marker then lags behind, and the next posting that can add qualifying spend or a
 * tier moves it (rules__period_mark()). */
static bool period_noop(const rules *r, const lt_member *m)
{
    return m->qualifying == 0 && r->tiers[rules__tier_index(r, m->tier)].retain <= 0;
}

void rules__period_mark(const rules *r, const lt_member *m, int64_t t, int32_t off_min,
                        lt_posting *p)
{
    int32_t day = rules__period_start(r, rules_local_day(t, off_min));
    if (m == NULL) {
        p->set_period_start_day = day;
        return;
    }
    int32_t cur = member_period(r, m, off_min);
    if (m->period_start_day != 0 && (day <= cur || !period_noop(r, m)))
        return; /* current, or a late event of an earlier period: the marker stays */
    p->set_period_start_day = day > cur ? day : cur;
}

/* R24: the tier after a period with qualifying `total` ended, from tier index `tier`: kept if
 * the total reaches the tier's retain threshold; else the tier the total reaches
 * (to_qualified) or one tier down (one_step). Never higher. */
static uint32_t period_end_tier(const rules *r, uint32_t tier, int64_t total)
{
    if (total >= r->tiers[tier].retain || tier == 0)
        return tier;
    if (r->downgrade == RULES_DOWNGRADE_ONE_STEP)
        return tier - 1;
    uint32_t reached = 0;
    for (uint32_t i = 0; i < tier; i++) {
        if (r->tiers[i].threshold <= total)
            reached = i;
    }
    return reached;
}

/* ------------------------------------------------------------------ entries */

static void due_init(const rules *r, const lt_member *m, int64_t t, int32_t off_min,
                     lt_entry_kind kind, lt_entry *e)
{
    memset(e, 0, offsetof(lt_entry, lines)); /* no lines: the 11 KiB tail stays as it was */
    memset((uint8_t *)e + offsetof(lt_entry, reward_code), 0,
           sizeof *e - offsetof(lt_entry, reward_code));
    e->kind = kind;
    e->event_kind = LT_EV_NONE;
    e->occurred_at = t;
    e->utc_offset_min = off_min;
    rules__copy(e->member_id, sizeof e->member_id, m->id);
    rules__copy(e->rules_version, sizeof e->rules_version, r->version);
}

/* R19, R20: one EXPIRE entry debiting every lot expired by t. Lots are in spend order with
 * the dated ones first by expiry (R17), so the expired lots are the first `*live` lots and
 * the FIFO debit of their sum removes exactly them. Returns 1 (entry written) or 0. */
static int due_expiry(const rules *r, const lt_member *m, int64_t t, int32_t off_min,
                      int64_t *balance, uint32_t *live, lt_entry *e)
{
    int64_t sum = 0;
    uint32_t k = 0;
    for (; k < m->lots_n && m->lots[k].expires_at != 0 && m->lots[k].expires_at <= t; k++) {
        LT_ASSERT(k == 0 || m->lots[k].expires_at >= m->lots[k - 1].expires_at);
        sum += m->lots[k].points; /* a part of the lots' sum, which fits (rules__balance) */
    }
    *live = k;
    if (sum == 0)
        return 0;
    due_init(r, m, t, off_min, LT_ENTRY_EXPIRE, e);
    *balance -= sum;
    lt_posting *p = rules__posting_add(e, m->id, *balance, "expire");
    p->debit = sum;
    return 1;
}

/* R24: one TIER_PERIOD entry when t lies in a later tier period than the member's. The
 * member's qualifying total is that of its period (the first one that ended); every further
 * period that ended before t's had no activity (total 0). Each is evaluated in turn, so a
 * member away for two periods drops as the rules say per period. The total goes to 0 and the
 * marker to t's period. Returns 1 or 0. */
static int due_tier_period(const rules *r, const lt_member *m, int64_t t, int32_t off_min,
                           int64_t balance, lt_entry *e)
{
    int32_t cur = member_period(r, m, off_min);
    int32_t now = rules__period_start(r, rules_local_day(t, off_min));
    if (now <= cur || period_noop(r, m))
        return 0;
    int64_t ended =
        1 + (month_index(now) - month_index(period_after(r, cur))) / (int64_t)r->tier_period_months;
    LT_ASSERT(ended >= 1);
    uint32_t was = rules__tier_index(r, m->tier);
    uint32_t tier = period_end_tier(r, was, m->qualifying);
    /* empty periods: each may drop one more step; tiers_n of them reach the fixed point */
    for (int64_t i = 1; i < ended && i <= (int64_t)r->tiers_n; i++)
        tier = period_end_tier(r, tier, 0);

    due_init(r, m, t, off_min, LT_ENTRY_TIER_PERIOD, e);
    lt_posting *p = rules__posting_add(e, m->id, balance, "tier_period");
    p->qualifying_delta = -m->qualifying;
    p->set_period_start_day = now;
    rules__copy(p->tier_before, sizeof p->tier_before, m->tier);
    if (tier != was)
        rules__copy(p->tier_after, sizeof p->tier_after, r->tiers[tier].name);
    return 1;
}

/* Appends a notice posting to e, starting the NOTICE entry at the first. */
static lt_posting *notice(const rules *r, const lt_member *m, int64_t t, int32_t off_min,
                          int64_t balance, const char *topic, lt_entry *e, bool *started)
{
    if (!*started)
        due_init(r, m, t, off_min, LT_ENTRY_NOTICE, e);
    *started = true;
    return rules__posting_add(e, m->id, balance, topic);
}

/* R21, R28: one NOTICE entry with a posting per notice due (reason = the topic), each moving
 * its marker. `live` is the first lot not expired by t. Returns 1 or 0 (*e untouched). */
static int due_notices(const rules *r, const lt_member *m, int64_t t, int32_t off_min,
                       int64_t balance, uint32_t live, lt_entry *e)
{
    bool started = false;
    /* R21: the earliest expiry still ahead, once per expiry date */
    if (r->notice_days > 0 && live < m->lots_n) {
        int64_t at = m->lots[live].expires_at;
        if (at != 0 && t >= at - r->notice_days * SECONDS_PER_DAY &&
            m->expiring_notified_until < at) {
            lt_posting *p = notice(r, m, t, off_min, balance, "points.expiring", e, &started);
            p->set_expiring_notified = at;
        }
    }
    /* R28: on the birthday (store-local date of t; 29 Feb on 28 Feb in common years), once a
     * year */
    if (r->birthday_notice && rules__is_birthday(t, off_min, m->birth_month, m->birth_day)) {
        int y, mo, d;
        rules_civil_from_days(rules_local_day(t, off_min), &y, &mo, &d);
        if (y > m->birthday_notified_year) {
            lt_posting *p = notice(r, m, t, off_min, balance, "member.birthday", e, &started);
            p->set_birthday_year = y;
        }
    }
    /* R28: dormant_days without a purchase since the last one (or the enrolment), once per
     * such purchase */
    int64_t since = m->last_purchase_at ? m->last_purchase_at : m->enrolled_at;
    if (r->dormant_days > 0 && since != 0 && t - since >= r->dormant_days * SECONDS_PER_DAY &&
        since > m->dormant_notified_at) {
        lt_posting *p = notice(r, m, t, off_min, balance, "member.dormant", e, &started);
        p->set_dormant_notified = since;
    }
    return started ? 1 : 0;
}

int rules_due(const rules *r, const lt_member *m, int64_t t, int32_t off_min, lt_entry *out)
{
    int64_t balance;
    uint32_t live = 0;
    int n = 0;

    LT_ASSERT(r != NULL && m != NULL && out != NULL);
    LT_ASSERT(m->lots_n == 0 || m->lots != NULL);
    /* a closed member holds nothing; a balance beyond int64 cannot be posted (rating refuses
     * the member's events with AMOUNT_OVERFLOW too) */
    if (m->status == LT_MEMBER_CLOSED || !rules__balance(m, &balance))
        return 0;
    n += due_expiry(r, m, t, off_min, &balance, &live, &out[n]);
    n += due_tier_period(r, m, t, off_min, balance, &out[n]);
    if (m->status == LT_MEMBER_ACTIVE)
        n += due_notices(r, m, t, off_min, balance, live, &out[n]);
    LT_ASSERT(n <= RULES_DUE_MAX);
    return n;
}
