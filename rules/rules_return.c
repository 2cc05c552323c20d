/* rules_return.c: rating a return (R18): the original sale's per-line results, reversed pro rata
 * to the returned quantity, the points that paid for the returned units given back, spend
 * totals reduced, and `negative_balance: allow` (debt) or `clamp` when the points are spent.
 *
 * Pure and allocation-free like the rest of rules/: the original sale and the quantities
 * already returned come through rules_view.sale().
 */
#include <string.h>

#include "rules_internal.h"

/* Running sums of what a return reverses. */
typedef struct {
    int64_t points, given_back, paid, eligible, qualifying;
} reversal;

/* The part of a line's `total` that units (done, done + q] of its `qty` units carry:
 * floor(total * (done + q) / qty) - floor(total * done / qty). The parts of successive returns
 * of one line telescope, so returning every unit, in any number of returns, reverses exactly
 * `total`. Requires total >= 0, done >= 0, q >= 1 and done + q <= qty. */
static int64_t part(int64_t total, int64_t done, int64_t q, int64_t qty)
{
    LT_ASSERT(total >= 0 && done >= 0 && q >= 1 && qty >= done + q);
    __int128 upto = (__int128)total * (done + q) / qty;
    __int128 before = (__int128)total * done / qty;
    return (int64_t)(upto - before);
}

static bool add(int64_t *sum, int64_t v)
{
    return !__builtin_add_overflow(*sum, v, sum);
}

/* Fills out->lines[i] (i = the original line index) for one returned line and adds it to the
 * sums. Returns LT_R_NONE or why the return is refused. */
static int return_line(const lt_entry *sale, const int64_t *returned, const lt_return_line *rl,
                       lt_entry *out, reversal *sum)
{
    if (rl->line_index >= sale->lines_n)
        return LT_R_INVALID_FIELD;
    if (rl->quantity < 1 || rl->quantity > LT_QUANTITY_MAX)
        return LT_R_INVALID_QUANTITY;
    lt_line_result *lr = &out->lines[rl->line_index];
    if (lr->quantity != 0)
        return LT_R_INVALID_FIELD; /* the same line listed twice (ingest refuses it too) */
    const lt_line_result *sl = &sale->lines[rl->line_index];
    /* rating never writes negative line amounts: an entry that has some is not a sale */
    if (sl->paid_fen < 0 || sl->eligible_fen < 0 || sl->redeemed_fen < 0 ||
        sl->redeemed_points < 0 || sl->points < 0 || sl->qualifying_fen < 0)
        return LT_R_UNKNOWN_SALE;
    int64_t done = returned ? returned[rl->line_index] : 0;
    LT_ASSERT(done >= 0);
    if (sl->quantity < 1 || done > sl->quantity || sl->quantity - done < rl->quantity)
        return LT_R_RETURN_EXCEEDS_SALE;

    int64_t q = rl->quantity, qty = sl->quantity;
    lr->quantity = q;
    lr->unit_list_fen = sl->unit_list_fen; /* what was returned, as it was sold */
    lr->flags = sl->flags;
    memcpy(lr->sku, sl->sku, sizeof lr->sku);
    memcpy(lr->category, sl->category, sizeof lr->category);
    lr->paid_fen = part(sl->paid_fen, done, q, qty);
    lr->eligible_fen = part(sl->eligible_fen, done, q, qty);
    lr->redeemed_fen = part(sl->redeemed_fen, done, q, qty);
    lr->redeemed_points = part(sl->redeemed_points, done, q, qty);
    lr->points = part(sl->points, done, q, qty);
    lr->qualifying_fen = part(sl->qualifying_fen, done, q, qty);
    if (!add(&sum->points, lr->points) || !add(&sum->given_back, lr->redeemed_points) ||
        !add(&sum->paid, lr->paid_fen) || !add(&sum->eligible, lr->eligible_fen) ||
        !add(&sum->qualifying, lr->qualifying_fen))
        return LT_R_AMOUNT_OVERFLOW;
    return LT_R_NONE;
}

/* What a total may go down by: all of `by`, but never below zero (a total already lower, e.g.
 * after a tier period reset, only goes to zero). */
static int64_t reduce(int64_t total, int64_t by)
{
    if (total <= 0)
        return 0;
    return by < total ? by : total;
}

int rules__rate_return(const rules *r, const rules_view *view, const lt_event *ev,
                       const lt_member *m, int64_t balance, lt_entry *out)
{
    const lt_entry *sale = NULL;
    const int64_t *returned = NULL;
    uint64_t seq = 0;
    reversal sum = {0};
    int rc;

    LT_ASSERT(m != NULL && ev->return_lines_n <= LT_RETURN_LINES_MAX);
    if (ev->return_lines_n == 0)
        return LT_R_MISSING_FIELD;
    if (view->sale == NULL)
        return LT_R_UNKNOWN_SALE;
    if ((rc = view->sale(view->ctx, ev->original, &sale, &returned, &seq)) != 0)
        return rc == -1 ? LT_R_UNKNOWN_SALE : LT_R_INTERNAL_ERROR;
    LT_ASSERT(sale != NULL && sale != out);
    /* another member's sale is as unknown to this member as no sale at all */
    if (sale->kind != LT_ENTRY_SALE || strcmp(sale->member_id, m->id) != 0 ||
        sale->lines_n > LT_SALE_LINES_MAX)
        return LT_R_UNKNOWN_SALE;

    out->lines_n = sale->lines_n; /* lines not returned stay zero: index = original line */
    for (uint32_t k = 0; k < ev->return_lines_n; k++) {
        if ((rc = return_line(sale, returned, &ev->return_lines[k], out, &sum)))
            return rc;
    }
    out->original = ev->original;
    out->original_seq = seq;
    /* the summary is the change to the sale's totals: negative */
    out->paid_fen = -sum.paid;
    out->eligible_fen = -sum.eligible;
    out->points_earned = -sum.points;
    out->points_redeemed = -sum.given_back;

    lt_posting *p = &out->postings[out->postings_n++];
    rules__copy(p->member_id, sizeof p->member_id, m->id);
    rules__copy(p->reason, sizeof p->reason, "return");
    p->debit = sum.points;
    if (r->negative_balance == RULES_NEGATIVE_CLAMP) {
        /* take at most what the member holds once the give-back is in: no new debt */
        int64_t held, room;
        if (__builtin_add_overflow(balance, m->debt, &held) ||
            __builtin_add_overflow(held, sum.given_back, &room))
            return LT_R_AMOUNT_OVERFLOW;
        if (p->debit > room) {
            p->clamp = p->debit - room;
            p->debit = room;
        }
    }
    p->credit = sum.given_back;
    if (p->credit > 0)
        p->credit_expires_at = rules_lot_expires_at(r, ev->occurred_at, ev->utc_offset_min);
    if (__builtin_sub_overflow(balance, p->debit, &p->balance_after) ||
        __builtin_add_overflow(p->balance_after, p->credit, &p->balance_after))
        return LT_R_AMOUNT_OVERFLOW;
    int64_t qualifying = r->tier_basis == RULES_BASIS_POINTS ? sum.points : sum.qualifying;
    p->lifetime_delta_fen = -reduce(m->lifetime_fen, sum.paid);
    p->qualifying_delta = -reduce(m->qualifying, qualifying);
    /* tier_after stays empty: returns never downgrade mid-period (R24); referral bonuses the
     * sale triggered (R25) are not reversed; the sale count stays */
    return LT_R_NONE;
}
