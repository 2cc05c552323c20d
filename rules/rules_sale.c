/* rules_sale.c: rating a sale: exclusions (R9), the points-paid portion (R10), base points or
 * rebate (R11, R12), multipliers (R13), per-sku points (R14), redemption (R15), staff (R6),
 * tier-qualifying amounts and upgrades (R22, R23), the new lot's expiry (R19), the referral
 * bonus of a first sale (R25) and the multi-level referrer points (R26).
 *
 * Pure and allocation-free: the scratch arrays live on the stack, bounded by LT_SALE_LINES_MAX.
 */
#include <string.h>

#include "rules_internal.h"

#define N LT_SALE_LINES_MAX

/* Per-line working values; the results end up in lt_entry.lines. Only [0..n) is meaningful. */
typedef struct {
    uint32_t n;
    bool earns[N];   /* not excluded (R9), not staff (R6) */
    uint32_t cls[N]; /* earn class (R11) */
    int64_t paid[N];
    int64_t redeemed[N];
    int64_t eligible[N];
    int64_t points[N];
    uint32_t mult[N];
    int64_t paid_total, earning_paid; /* all lines; lines that earn (before R10) */
} sale;

/* Splits `amount` over the lines in `mask`, pro rata to `weight` whose masked sum is `total`:
 * each line gets floor(amount * weight / total), then the fen (or points) left over go one each,
 * in line order, to masked lines with weight > 0 that can take more (share below `cap`, when
 * given). The leftover is below the number of lines with a fractional share, so one pass always
 * places it. */
static void spread(int64_t amount, int64_t total, const int64_t *weight, const bool *mask,
                   const int64_t *cap, int64_t *out, uint32_t n)
{
    int64_t left = amount;

    LT_ASSERT(amount >= 0 && total >= 0);
    LT_ASSERT(amount == 0 || total > 0);
    for (uint32_t i = 0; i < n; i++) {
        out[i] = 0;
        if (mask[i] && amount > 0)
            out[i] = (int64_t)((__int128)amount * weight[i] / total);
        left -= out[i];
    }
    for (uint32_t i = 0; i < n && left > 0; i++) {
        if (mask[i] && weight[i] > 0 && (!cap || out[i] < cap[i])) {
            out[i]++;
            left--;
        }
    }
    LT_ASSERT(left == 0);
}

static bool listed(const char (*list)[LT_ID_MAX], uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++) {
        if (!strcmp(list[i], name))
            return true;
    }
    return false;
}

/* R9: excluded by its flags or its category (cat: the category's facts, NULL = unlisted). */
static bool line_excluded(const rules *r, const lt_line *l, const rules_cat *cat)
{
    return (l->flags & r->excluded_flags) != 0 || (cat != NULL && cat->excluded);
}

/* R11: the earn class of a category (the default class takes every unlisted category). */
static uint32_t class_of(const rules *r, const rules_cat *cat)
{
    return cat != NULL && cat->has_class ? cat->class_index : r->class_default;
}

/* R12: the rebate rate of a line, by how much of the list price was paid. */
static int64_t band_bp(const rules *r, const lt_line *l)
{
    /* unit prices <= LT_UNIT_FEN_MAX, so *100 cannot overflow; the ratio is the line's ratio */
    for (uint32_t i = 0; i < r->bands_n; i++) {
        if (l->unit_paid_fen * 100 >= l->unit_list_fen * r->bands[i].min_paid_pct)
            return r->bands[i].rate_bp;
    }
    return 0;
}

/* R13: folds one more multiplier into m. */
static uint32_t combine(const rules *r, uint32_t m, uint32_t f)
{
    if (r->stacking == RULES_STACK_MAX)
        return f > m ? f : m;
    uint64_t v = (uint64_t)m * f / 100; /* whole hundredths, combined left to right */
    return v > r->cap_pct ? r->cap_pct : (uint32_t)v;
}

/* R13: each earning line's multiplier: birthday, tier held before this sale, then the matching
 * promotions in file order. */
static void line_multipliers(const rules *r, const lt_event *ev, const lt_member *m, sale *s)
{
    uint32_t member_mult = 100;
    int64_t local = ev->occurred_at + (int64_t)ev->utc_offset_min * 60;
    uint32_t tier = m ? rules__tier_index(r, m->tier) : 0;

    if (m && rules__is_birthday(ev->occurred_at, ev->utc_offset_min, m->birth_month, m->birth_day))
        member_mult = combine(r, member_mult, r->birthday_pct);
    member_mult = combine(r, member_mult, r->tiers[tier].multiplier_pct);

    for (uint32_t i = 0; i < s->n; i++) {
        s->mult[i] = member_mult;
        if (!s->earns[i])
            continue;
        for (uint32_t k = 0; k < r->promotions_n; k++) {
            const rules_promotion *p = &r->promotions[k];
            if (local < p->from_local || local >= p->to_local)
                continue;
            if (p->stores_n && !listed(p->stores, p->stores_n, ev->store_id))
                continue;
            if (p->categories_n && !listed(p->categories, p->categories_n, ev->lines[i].category))
                continue;
            s->mult[i] = combine(r, s->mult[i], p->multiplier_pct);
        }
    }
}

/* R11 or R12 base points of the lines in `in`, each class (or the rebate) floored once. */
static int group_base(const rules *r, const lt_event *ev, const sale *s, const bool *in,
                      int64_t *base)
{
    if (r->earn_mode == RULES_EARN_REBATE) {
        int64_t rebate_x10000 = 0, t;
        for (uint32_t i = 0; i < s->n; i++) {
            if (!in[i])
                continue;
            if (__builtin_mul_overflow(s->eligible[i], band_bp(r, &ev->lines[i]), &t) ||
                __builtin_add_overflow(rebate_x10000, t, &rebate_x10000))
                return LT_R_AMOUNT_OVERFLOW;
        }
        *base = rebate_x10000 / 10000 / r->point_value_fen;
        return LT_R_NONE;
    }
    int64_t class_fen[RULES_CLASSES_MAX] = {0};
    for (uint32_t i = 0; i < s->n; i++) {
        if (in[i])
            class_fen[s->cls[i]] += s->eligible[i]; /* <= paid total */
    }
    *base = 0;
    for (uint32_t c = 0; c < r->classes_n; c++)
        *base += class_fen[c] / r->classes[c].unit_fen;
    return LT_R_NONE;
}

/* R11-R13: groups the earning lines by multiplier, rates each group and spreads its points
 * over its lines pro rata to their eligible amounts. */
static int earn(const rules *r, const lt_event *ev, sale *s, lt_entry *out)
{
    bool done[N] = {false}, in[N];
    int64_t share[N];
    uint32_t mult_max = 100; /* no earning line: x1 */

    for (uint32_t i = 0; i < s->n; i++) {
        if (!s->earns[i] || done[i])
            continue;
        uint32_t mult = s->mult[i];
        int64_t base, pts, group_fen = 0;
        for (uint32_t j = 0; j < s->n; j++) {
            in[j] = s->earns[j] && !done[j] && s->mult[j] == mult;
            done[j] = done[j] || in[j];
            group_fen += in[j] ? s->eligible[j] : 0;
        }
        int rc = group_base(r, ev, s, in, &base);
        if (rc)
            return rc;
        if (__builtin_mul_overflow(base, (int64_t)mult, &pts))
            return LT_R_AMOUNT_OVERFLOW;
        pts /= 100; /* R13: floored once */
        spread(pts, group_fen, s->eligible, in, NULL, share, s->n);
        for (uint32_t j = 0; j < s->n; j++)
            s->points[j] += share[j];
        if (__builtin_add_overflow(out->base_points, base, &out->base_points) ||
            __builtin_add_overflow(out->points_earned, pts, &out->points_earned))
            return LT_R_AMOUNT_OVERFLOW;
        /* with several groups the summary shows the largest multiplier */
        mult_max = mult > mult_max ? mult : mult_max;
    }
    out->multiplier_pct = mult_max;
    return LT_R_NONE;
}

static int sku_cmp(const void *a, const void *b)
{
    return strcmp(((const rules_sku *)a)->sku, ((const rules_sku *)b)->sku);
}

/* R14: fixed points per unit of listed skus, on earning lines, after multipliers. */
static int sku_points(const rules *r, const lt_event *ev, sale *s, lt_entry *out)
{
    for (uint32_t i = 0; i < s->n; i++) {
        if (!s->earns[i] || r->skus_n == 0)
            continue;
        rules_sku key;
        rules__copy(key.sku, sizeof key.sku, ev->lines[i].sku);
        const rules_sku *hit = bsearch(&key, r->skus, r->skus_n, sizeof *r->skus, sku_cmp);
        if (!hit)
            continue;
        int64_t pts;
        if (__builtin_mul_overflow(hit->points, ev->lines[i].quantity, &pts) ||
            __builtin_add_overflow(s->points[i], pts, &s->points[i]) ||
            __builtin_add_overflow(out->sku_points, pts, &out->sku_points))
            return LT_R_AMOUNT_OVERFLOW;
    }
    if (__builtin_add_overflow(out->points_earned, out->sku_points, &out->points_earned))
        return LT_R_AMOUNT_OVERFLOW;
    return LT_R_NONE;
}

/* R10: the redeemed value comes off the earning lines pro rata to their paid amounts; what
 * exceeds their total (all of it when no line earns) comes off the other lines the same way. */
static void take_redeemed(int64_t value, sale *s)
{
    bool others[N] = {false}; /* only [0..n) is read; the init keeps -Wmaybe-uninitialized quiet */
    int64_t from_earning[N], from_others[N];
    int64_t on_earning = value < s->earning_paid ? value : s->earning_paid;

    for (uint32_t i = 0; i < s->n; i++)
        others[i] = !s->earns[i];
    spread(on_earning, s->earning_paid, s->paid, s->earns, s->paid, from_earning, s->n);
    spread(value - on_earning, s->paid_total - s->earning_paid, s->paid, others, s->paid,
           from_others, s->n);
    for (uint32_t i = 0; i < s->n; i++) {
        s->redeemed[i] = s->earns[i] ? from_earning[i] : from_others[i];
        s->eligible[i] = s->earns[i] ? s->paid[i] - s->redeemed[i] : 0;
    }
}

static int prepare(const rules *r, const lt_event *ev, const lt_member *m, sale *s)
{
    bool staff = m && m->staff && !r->staff_earns; /* R6 */

    /* every reader stops at s->n: only the lines the sale has are cleared (all 200 are 8 KiB) */
    s->n = ev->lines_n;
    s->paid_total = s->earning_paid = 0;
    LT_ASSERT(s->n <= N);
    for (uint32_t i = 0; i < s->n; i++) {
        const lt_line *l = &ev->lines[i];
        s->earns[i] = false;
        s->paid[i] = s->redeemed[i] = s->eligible[i] = s->points[i] = 0;
        s->mult[i] = 0;
        s->cls[i] = 0;
        if (__builtin_mul_overflow(l->quantity, l->unit_paid_fen, &s->paid[i]) ||
            __builtin_add_overflow(s->paid_total, s->paid[i], &s->paid_total))
            return LT_R_AMOUNT_OVERFLOW;
        const rules_cat *cat = rules__category(r, l->category);
        s->earns[i] = !staff && !line_excluded(r, l, cat);
        s->cls[i] = class_of(r, cat);
        if (s->earns[i])
            s->earning_paid += s->paid[i];
    }
    return LT_R_NONE;
}

/* R22, R23: the highest tier the new qualifying total reaches, if above the current one. */
static int upgrade(const rules *r, const lt_member *m, int64_t delta, lt_posting *p)
{
    uint32_t cur = m ? rules__tier_index(r, m->tier) : 0, reached = 0;
    int64_t total;

    if (__builtin_add_overflow(m ? m->qualifying : 0, delta, &total))
        return LT_R_AMOUNT_OVERFLOW;
    for (uint32_t i = 0; i < r->tiers_n; i++) {
        if (r->tiers[i].threshold <= total)
            reached = i;
    }
    if (reached > cur)
        rules__copy(p->tier_after, sizeof p->tier_after, r->tiers[reached].name);
    return LT_R_NONE;
}

static void fill_lines(const lt_event *ev, const sale *s, const int64_t *redeemed_points,
                       lt_entry *out)
{
    out->lines_n = s->n;
    for (uint32_t i = 0; i < s->n; i++) {
        lt_line_result *lr = &out->lines[i];
        lr->quantity = ev->lines[i].quantity;
        lr->unit_list_fen = ev->lines[i].unit_list_fen;
        lr->flags = ev->lines[i].flags;
        memcpy(lr->sku, ev->lines[i].sku, sizeof lr->sku);
        memcpy(lr->category, ev->lines[i].category, sizeof lr->category);
        lr->paid_fen = s->paid[i];
        lr->eligible_fen = s->eligible[i];
        lr->redeemed_fen = s->redeemed[i];
        lr->redeemed_points = redeemed_points[i];
        lr->points = s->points[i];
        lr->qualifying_fen = s->eligible[i];
        out->eligible_fen += s->eligible[i];
    }
}

/* The balance of `m` once the entry's postings so far are applied: the last one of its
 * postings says it (R25 and R26 may credit one referrer twice). */
static bool balance_in_entry(const lt_member *m, const lt_entry *out, int64_t *balance)
{
    for (uint32_t i = out->postings_n; i > 0; i--) {
        if (!strcmp(out->postings[i - 1].member_id, m->id)) {
            *balance = out->postings[i - 1].balance_after;
            return true;
        }
    }
    return rules__balance(m, balance);
}

/* R26: the buyer's referrer earns referral_levels_bp[0] bp of the points this sale earned
 * (floor), the referrer's referrer [1], and so on, each as a new lot with the normal expiry
 * that is not tier-qualifying. An unknown referrer ends the walk; a blocked, closed or staff
 * (R6, unless staff_earns) referrer forfeits its level and the walk goes on to its own
 * referrer; a member met again (a cycle, the buyer included) ends it. Levels worth 0 points
 * add no posting. */
static int referral_levels(const rules *r, const rules_view *view, const lt_event *ev,
                           const lt_member *m, lt_entry *out)
{
    const char *seen[RULES_LEVELS_MAX + 1];
    uint32_t seen_n = 0;

    if (!m || r->referral_levels_n == 0 || out->points_earned <= 0)
        return LT_R_NONE;
    LT_ASSERT(r->referral_levels_n <= RULES_LEVELS_MAX);
    seen[seen_n++] = m->id;
    const char *next = m->referrer;
    for (uint32_t level = 0; level < r->referral_levels_n && next[0]; level++) {
        for (uint32_t k = 0; k < seen_n; k++) {
            if (!strcmp(seen[k], next))
                return LT_R_NONE; /* a cycle */
        }
        const lt_member *ref = view->member(view->ctx, next);
        if (!ref)
            return LT_R_NONE;
        seen[seen_n++] = ref->id;
        next = ref->referrer;
        if (ref->status != LT_MEMBER_ACTIVE || (ref->staff && !r->staff_earns))
            continue;
        LT_ASSERT(r->referral_levels_bp[level] >= 0 && r->referral_levels_bp[level] <= 10000);
        int64_t points =
            (int64_t)((__int128)out->points_earned * r->referral_levels_bp[level] / 10000);
        int64_t balance;
        if (points == 0)
            continue;
        if (!balance_in_entry(ref, out, &balance) ||
            __builtin_add_overflow(balance, points, &balance))
            return LT_R_AMOUNT_OVERFLOW;
        lt_posting *p = rules__posting_add(out, ref->id, balance, "referral");
        p->credit = points;
        p->credit_expires_at = rules_lot_expires_at(r, ev->occurred_at, ev->utc_offset_min);
    }
    return LT_R_NONE;
}

int rules__rate_sale(const rules *r, const rules_view *view, const lt_event *ev, const lt_member *m,
                     int64_t balance, lt_entry *out)
{
    sale s;
    int64_t redeemed_value, redeemed_points[N], after;
    bool redeemed_mask[N];
    int rc;

    if ((rc = prepare(r, ev, m, &s)))
        return rc;
    /* R15: the balance before this sale pays; this sale's points never do */
    if (ev->redeem_points < 0)
        return LT_R_INVALID_FIELD;
    /* a member in debt (R18) may still buy and earn, only not pay with points */
    if (ev->redeem_points > 0 && ev->redeem_points > balance)
        return LT_R_INSUFFICIENT_POINTS;
    if (__builtin_mul_overflow(ev->redeem_points, r->point_value_fen, &redeemed_value))
        return LT_R_AMOUNT_OVERFLOW;
    if (redeemed_value > s.paid_total)
        return LT_R_REDEMPTION_EXCEEDS_TOTAL;

    take_redeemed(redeemed_value, &s);
    for (uint32_t i = 0; i < s.n; i++)
        redeemed_mask[i] = s.redeemed[i] > 0;
    spread(ev->redeem_points, redeemed_value, s.redeemed, redeemed_mask, NULL, redeemed_points,
           s.n);
    line_multipliers(r, ev, m, &s);
    if ((rc = earn(r, ev, &s, out)) || (rc = sku_points(r, ev, &s, out)))
        return rc;

    fill_lines(ev, &s, redeemed_points, out);
    out->paid_fen = s.paid_total;
    out->points_redeemed = ev->redeem_points;

    lt_posting *p = &out->postings[out->postings_n++];
    rules__copy(p->member_id, sizeof p->member_id, out->member_id);
    rules__copy(p->reason, sizeof p->reason, "sale");
    if (!m) { /* R8: enrolled by this sale; a card it names (and nobody holds) is linked */
        p->create = true;
        if (ev->card[0] && !view->card_owner(view->ctx, ev->card))
            rules__copy(p->card, sizeof p->card, ev->card);
    }
    p->debit = ev->redeem_points;
    p->credit = out->points_earned;
    if (p->credit > 0)
        p->credit_expires_at = rules_lot_expires_at(r, ev->occurred_at, ev->utc_offset_min);
    p->lifetime_delta_fen = s.paid_total;
    p->qualifying_delta =
        r->tier_basis == RULES_BASIS_POINTS ? out->points_earned : out->eligible_fen;
    p->count_sale = true;
    rules__period_mark(r, m, ev->occurred_at, ev->utc_offset_min, p); /* R24 */
    if (__builtin_add_overflow(balance - ev->redeem_points, out->points_earned, &after))
        return LT_R_AMOUNT_OVERFLOW;
    p->balance_after = after;
    if ((rc = upgrade(r, m, p->qualifying_delta, p)))
        return rc;

    /* R25: the referred member's first sale with an earning base credits the referrer */
    if (m && m->referrer[0] && m->sales == 0 && out->eligible_fen > 0 &&
        r->referral_trigger == RULES_TRIGGER_FIRST_SALE &&
        (rc = rules__referral_posting(r, view, ev, m->referrer, m->id, out)))
        return rc;
    return referral_levels(r, view, ev, m, out);
}
