/* rules_rate.c: rules_rate(), the pure rating function: member resolution (R4, R8), and the
 * non-sale events: enrolment (R5, R25), card links (R4, R7), account merges (R7), gifts (R16)
 * and manual adjustments (R27). Sales are rated in rules_sale.c, returns (R18) in rules_return.c.
 *
 * Nothing here allocates or does I/O: (rules, view, event) -> entry, or a rejection reason.
 */
#include <stddef.h>
#include <string.h>

#include "rules_internal.h"

/* Who an event is about, once resolved. */
typedef struct {
    const lt_member *m; /* NULL: the event enrols this member */
    char id[LT_ID_MAX];
    int64_t balance;
} who;

uint32_t rules__tier_index(const rules *r, const char *name)
{
    if (name[0] == '\0')
        return 0; /* "" = the lowest tier (tier names are never empty): most members */
    for (uint32_t i = 0; i < r->tiers_n; i++) {
        if (!strcmp(r->tiers[i].name, name))
            return i;
    }
    return 0;
}

bool rules__balance(const lt_member *m, int64_t *out)
{
    int64_t sum = 0;
    LT_ASSERT(m->lots_n == 0 || m->lots != NULL);
    for (uint32_t i = 0; i < m->lots_n; i++) {
        if (__builtin_add_overflow(sum, m->lots[i].points, &sum))
            return false;
    }
    return !__builtin_sub_overflow(sum, m->debt, out);
}

/* Resolves the event's member (R4). With may_enrol, an unknown member or card is enrolled on
 * the fly unless the rules say `unknown_member: reject` (R8). */
static int resolve(const rules *r, const rules_view *v, const char *member_id, const char *card,
                   bool may_enrol, who *w)
{
    bool enrol = may_enrol && r->unknown_member == RULES_UNKNOWN_ENROL;

    memset(w, 0, sizeof *w);
    if (member_id[0]) {
        rules__copy(w->id, sizeof w->id, member_id);
        w->m = v->member(v->ctx, w->id);
        if (!w->m && !enrol)
            return LT_R_UNKNOWN_MEMBER;
    } else if (card[0]) {
        const char *owner = v->card_owner(v->ctx, card);
        if (owner) {
            rules__copy(w->id, sizeof w->id, owner);
            w->m = v->member(v->ctx, w->id);
            if (!w->m)
                return LT_R_UNKNOWN_CARD; /* a card of a vanished member: never enrol over it */
        } else {
            /* the new member's id is the card number; a member already holding that id (but
             * not the card) is someone else, so refuse rather than merge them silently */
            if (!enrol || v->member(v->ctx, card))
                return LT_R_UNKNOWN_CARD;
            rules__copy(w->id, sizeof w->id, card);
        }
    } else {
        return LT_R_MISSING_FIELD;
    }
    if (!w->m)
        return LT_R_NONE;
    if (w->m->status != LT_MEMBER_ACTIVE)
        return LT_R_MEMBER_BLOCKED;
    if (!rules__balance(w->m, &w->balance))
        return LT_R_AMOUNT_OVERFLOW;
    return LT_R_NONE;
}

/* Clears the entry for rating, but of the lines array (27 KiB of the 30) only the first
 * lines_clear lines: a sale writes exactly ev->lines_n lines and nothing reads past lines_n,
 * as with entries decoded from the ledger (lines[lines_n..] are left as they were). */
static void entry_init(const rules *r, const lt_event *ev, lt_entry_kind kind, uint32_t lines_clear,
                       lt_entry *out)
{
    LT_ASSERT(lines_clear <= LT_SALE_LINES_MAX);
    memset(out, 0, offsetof(lt_entry, lines));
    memset(out->lines, 0, lines_clear * sizeof out->lines[0]);
    memset((uint8_t *)out + offsetof(lt_entry, reward_code), 0,
           sizeof *out - offsetof(lt_entry, reward_code));
    out->kind = kind;
    out->event_kind = ev->kind;
    out->id = ev->id;
    out->occurred_at = ev->occurred_at;
    out->utc_offset_min = ev->utc_offset_min;
    rules__copy(out->store_id, sizeof out->store_id, ev->store_id);
    rules__copy(out->rules_version, sizeof out->rules_version, r->version);
}

lt_posting *rules__posting_add(lt_entry *out, const char *member_id, int64_t balance,
                               const char *reason)
{
    LT_ASSERT(out->postings_n < LT_POSTINGS_MAX);
    lt_posting *p = &out->postings[out->postings_n++];
    rules__copy(p->member_id, sizeof p->member_id, member_id);
    rules__copy(p->reason, sizeof p->reason, reason);
    p->balance_after = balance;
    return p;
}

int rules__referral_posting(const rules *r, const rules_view *view, const lt_event *ev,
                            const char *referrer_id, const char *member_id, lt_entry *out)
{
    int64_t balance;

    if (r->referral_bonus == 0 || !referrer_id[0] || !strcmp(referrer_id, member_id))
        return LT_R_NONE;
    const lt_member *ref = view->member(view->ctx, referrer_id);
    if (!ref || ref->status != LT_MEMBER_ACTIVE)
        return LT_R_NONE; /* no bonus to an unknown, blocked or closed referrer */
    if (!rules__balance(ref, &balance) ||
        __builtin_add_overflow(balance, r->referral_bonus, &balance))
        return LT_R_AMOUNT_OVERFLOW;
    lt_posting *p = rules__posting_add(out, ref->id, balance, "referral");
    p->credit = r->referral_bonus;
    p->credit_expires_at = rules_lot_expires_at(r, ev->occurred_at, ev->utc_offset_min);
    return LT_R_NONE;
}

/* R5, R25: explicit enrolment. The member id is the event's member_id, or its card. */
static int rate_enrol(const rules *r, const rules_view *v, const lt_event *ev, lt_entry *out)
{
    const char *id = ev->member_id[0] ? ev->member_id : ev->card;

    if (!id[0])
        return LT_R_MISSING_FIELD;
    if (v->member(v->ctx, id))
        return LT_R_MEMBER_EXISTS;
    if (ev->card[0] && v->card_owner(v->ctx, ev->card))
        return LT_R_CARD_IN_USE;
    if (ev->birth_month > 12 || (ev->birth_month == 0) != (ev->birth_day == 0) ||
        (ev->birth_month && ev->birth_day > rules__days_in_month(2000, ev->birth_month)))
        return LT_R_INVALID_FIELD;
    if (ev->referrer[0] && !strcmp(ev->referrer, id))
        return LT_R_INVALID_FIELD;

    entry_init(r, ev, LT_ENTRY_ENROL, 0, out);
    rules__copy(out->member_id, sizeof out->member_id, id);
    lt_posting *p = rules__posting_add(out, id, 0, "enrol");
    p->create = true;
    rules__period_mark(r, NULL, ev->occurred_at, ev->utc_offset_min, p); /* R24 */
    p->birth_month = ev->birth_month;
    p->birth_day = ev->birth_day;
    p->staff = ev->staff;
    rules__copy(p->referrer, sizeof p->referrer, ev->referrer);
    rules__copy(p->card, sizeof p->card, ev->card);
    if (r->referral_trigger == RULES_TRIGGER_ENROL)
        return rules__referral_posting(r, v, ev, ev->referrer, id, out);
    return LT_R_NONE;
}

/* R4 link a card; R7 replace a lost one. The member is member_id, else the owner of the card
 * being replaced. */
static int rate_card_link(const rules *r, const rules_view *v, const lt_event *ev, lt_entry *out)
{
    who w;
    int rc;

    if (!ev->card[0])
        return LT_R_MISSING_FIELD;
    if (ev->member_id[0]) {
        rc = resolve(r, v, ev->member_id, "", false, &w);
    } else if (ev->replaces_card[0]) {
        rc = resolve(r, v, "", ev->replaces_card, false, &w);
    } else {
        return LT_R_MISSING_FIELD;
    }
    if (rc)
        return rc;
    const char *owner = v->card_owner(v->ctx, ev->card);
    if (owner && strcmp(owner, w.id))
        return LT_R_CARD_IN_USE;
    if (ev->replaces_card[0]) {
        const char *old_owner = v->card_owner(v->ctx, ev->replaces_card);
        if (!old_owner || strcmp(old_owner, w.id))
            return LT_R_UNKNOWN_CARD;
        if (!strcmp(ev->replaces_card, ev->card))
            return LT_R_INVALID_FIELD;
    }

    entry_init(r, ev, LT_ENTRY_CARD_LINK, 0, out);
    rules__copy(out->member_id, sizeof out->member_id, w.id);
    lt_posting *p = rules__posting_add(out, w.id, w.balance, "card");
    rules__copy(p->card, sizeof p->card, ev->card);
    rules__copy(p->unlink_card, sizeof p->unlink_card, ev->replaces_card);
    return LT_R_NONE;
}

/* R16: points for a reward, spent FIFO (R17) by the state module. */
static int rate_gift(const rules *r, const rules_view *v, const lt_event *ev, lt_entry *out)
{
    who w;
    int rc = resolve(r, v, ev->member_id, ev->card, false, &w);

    if (rc)
        return rc;
    if (ev->points <= 0)
        return LT_R_INVALID_FIELD;
    if (ev->points > w.balance)
        return LT_R_INSUFFICIENT_POINTS;

    entry_init(r, ev, LT_ENTRY_GIFT, 0, out);
    rules__copy(out->member_id, sizeof out->member_id, w.id);
    rules__copy(out->reward_code, sizeof out->reward_code, ev->reward_code);
    lt_posting *p = rules__posting_add(out, w.id, w.balance - ev->points, "gift");
    p->debit = ev->points;
    return LT_R_NONE;
}

/* R27: a manual grant (a new lot with the normal expiry) or deduction. A deduction larger than
 * the balance is refused with INSUFFICIENT_POINTS: debt only ever comes from returns (R18). */
static int rate_adjust(const rules *r, const rules_view *v, const lt_event *ev, lt_entry *out)
{
    who w;
    int64_t after;
    int rc = resolve(r, v, ev->member_id, ev->card, false, &w);

    if (rc)
        return rc;
    if (ev->points == 0 || ev->points < -LT_POINTS_MAX || ev->points > LT_POINTS_MAX)
        return LT_R_INVALID_FIELD;
    if (ev->points < 0 && -ev->points > w.balance)
        return LT_R_INSUFFICIENT_POINTS;
    if (__builtin_add_overflow(w.balance, ev->points, &after))
        return LT_R_AMOUNT_OVERFLOW;

    entry_init(r, ev, LT_ENTRY_ADJUSTMENT, 0, out);
    rules__copy(out->member_id, sizeof out->member_id, w.id);
    rules__copy(out->reason_code, sizeof out->reason_code, ev->reason_code);
    rules__copy(out->operator_id, sizeof out->operator_id, ev->operator_id);
    lt_posting *p = rules__posting_add(out, w.id, after, "adjustment");
    if (ev->points > 0) {
        p->credit = ev->points;
        p->credit_expires_at = rules_lot_expires_at(r, ev->occurred_at, ev->utc_offset_min);
    } else {
        p->debit = -ev->points;
    }
    return LT_R_NONE;
}

static int rate_sale(const rules *r, const rules_view *v, const lt_event *ev, lt_entry *out)
{
    who w;
    int rc = resolve(r, v, ev->member_id, ev->card, true, &w);

    if (rc)
        return rc;
    entry_init(r, ev, LT_ENTRY_SALE, ev->lines_n, out);
    rules__copy(out->member_id, sizeof out->member_id, w.id);
    return rules__rate_sale(r, v, ev, w.m, w.balance, out);
}

/* R18: the return's member (member_id or card, never enrolled) must own the original sale. */
static int rate_return(const rules *r, const rules_view *v, const lt_event *ev, lt_entry *out)
{
    who w;
    int rc = resolve(r, v, ev->member_id, ev->card, false, &w);

    if (rc)
        return rc;
    /* a return fills the lines of the sale's line indexes it names, and tells a line listed
     * twice by its quantity already set: all of them start cleared */
    entry_init(r, ev, LT_ENTRY_RETURN, LT_SALE_LINES_MAX, out);
    rules__copy(out->member_id, sizeof out->member_id, w.id);
    return rules__rate_return(r, v, ev, w.m, w.balance, out);
}

/* Sum of a member's lots (R20), debt left out. Returns false on int64 overflow. */
static bool lots_held(const lt_member *m, int64_t *out)
{
    *out = 0;
    for (uint32_t i = 0; i < m->lots_n; i++) {
        if (__builtin_add_overflow(*out, m->lots[i].points, out))
            return false;
    }
    return true;
}

/* R7: folds `source_member` into the event's member (the target). One MERGE entry, two
 * postings: [0] the target with merge_from = the source (the state moves the source's lots,
 * debt, spend totals, sales and cards, docs/ledger.md), balance = both balances, tier = the
 * higher of the two; [1] the source, closed with balance 0. Both must be active members. */
static int rate_merge(const rules *r, const rules_view *v, const lt_event *ev, lt_entry *out)
{
    who t;
    int64_t from_balance, after;

    if (!ev->member_id[0] || !ev->source_member[0])
        return LT_R_MISSING_FIELD;
    if (!strcmp(ev->member_id, ev->source_member))
        return LT_R_INVALID_FIELD;
    int rc = resolve(r, v, ev->member_id, "", false, &t);
    if (rc)
        return rc;
    const lt_member *from = v->member(v->ctx, ev->source_member);
    if (!from)
        return LT_R_UNKNOWN_MEMBER;
    if (from->status != LT_MEMBER_ACTIVE)
        return LT_R_MEMBER_BLOCKED;
    /* every sum the state forms must fit, or it would refuse the entry */
    int64_t sum, to_held, from_held;
    uint32_t sales;
    if (!rules__balance(from, &from_balance) ||
        __builtin_add_overflow(t.balance, from_balance, &after) || !lots_held(t.m, &to_held) ||
        !lots_held(from, &from_held) || __builtin_add_overflow(to_held, from_held, &sum) ||
        __builtin_add_overflow(t.m->lifetime_fen, from->lifetime_fen, &sum) ||
        __builtin_add_overflow(t.m->qualifying, from->qualifying, &sum) ||
        __builtin_add_overflow(t.m->debt, from->debt, &sum) ||
        __builtin_add_overflow(t.m->sales, from->sales, &sales))
        return LT_R_AMOUNT_OVERFLOW;

    entry_init(r, ev, LT_ENTRY_MERGE, 0, out);
    rules__copy(out->member_id, sizeof out->member_id, t.id);
    lt_posting *p = rules__posting_add(out, t.id, after, "merge");
    rules__copy(p->merge_from, sizeof p->merge_from, from->id);
    rules__period_mark(r, t.m, ev->occurred_at, ev->utc_offset_min, p); /* R24 */
    uint32_t ti = rules__tier_index(r, t.m->tier), fi = rules__tier_index(r, from->tier);
    if (fi > ti)
        rules__copy(p->tier_after, sizeof p->tier_after, r->tiers[fi].name);
    rules__posting_add(out, from->id, 0, "merged");
    return LT_R_NONE;
}

static bool known(const char (*list)[LT_ID_MAX], uint32_t n, const char *name)
{
    return n == 0 || bsearch(name, list, n, LT_ID_MAX, (int (*)(const void *, const void *))strcmp);
}

int rules_rate(const rules *r, const rules_view *view, const lt_event *ev, lt_entry *out)
{
    LT_ASSERT(r != NULL && view != NULL && ev != NULL && out != NULL);
    LT_ASSERT(view->member != NULL && view->card_owner != NULL);

    /* where the rules list the stores and categories, anything else is refused */
    if (ev->store_id[0] != '\0' && !known(r->known_stores, r->known_stores_n, ev->store_id))
        return LT_R_UNKNOWN_STORE;
    for (uint32_t i = 0; ev->kind == LT_EV_SALE && i < ev->lines_n; i++) {
        if (!known(r->known_categories, r->known_categories_n, ev->lines[i].category))
            return LT_R_UNKNOWN_CATEGORY;
    }

    switch (ev->kind) {
    case LT_EV_SALE:
        return rate_sale(r, view, ev, out);
    case LT_EV_ENROL:
        return rate_enrol(r, view, ev, out);
    case LT_EV_CARD_LINK:
        return rate_card_link(r, view, ev, out);
    case LT_EV_GIFT:
        return rate_gift(r, view, ev, out);
    case LT_EV_ADJUST:
        return rate_adjust(r, view, ev, out);
    case LT_EV_RETURN:
        return rate_return(r, view, ev, out);
    case LT_EV_MERGE:
        return rate_merge(r, view, ev, out);
    case LT_EV_NONE:
    default:
        return LT_R_UNSUPPORTED_EVENT;
    }
}
