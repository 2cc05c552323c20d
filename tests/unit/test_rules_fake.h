/* test_rules_fake.h: shared helpers of the rules unit tests: a fake rules_view over an array
 * of members, cards and rated sales (R18), event builders and store-local time.
 */
#ifndef TEST_RULES_FAKE_H
#define TEST_RULES_FAKE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "rules.h"
#include "rules_internal.h"

#define FAKE_MEMBERS_MAX 16
#define FAKE_LOTS_MAX 8
#define FAKE_CARDS_MAX 16
#define FAKE_SALES_MAX 4
#define CST (8 * 60) /* China Standard Time, UTC+8 */

/* A rated sale as the ledger would hold it, with what was returned of it so far (R18). */
typedef struct {
    lt_entry entry;
    uint64_t seq;
    bool has_returned;
    int64_t returned[LT_SALE_LINES_MAX];
} fake_sale;

typedef struct {
    fake_sale sales[FAKE_SALES_MAX];
    size_t sales_n;
    int sale_rc; /* non-zero: the sale lookup fails with it (a ledger read error) */
    lt_member members[FAKE_MEMBERS_MAX];
    lt_lot lots[FAKE_MEMBERS_MAX][FAKE_LOTS_MAX];
    size_t members_n;
    char cards[FAKE_CARDS_MAX][2][LT_ID_MAX]; /* card, owner */
    size_t cards_n;
} fake;

static inline const lt_member *fake_member(void *ctx, const char *id)
{
    fake *f = ctx;
    for (size_t i = 0; i < f->members_n; i++) {
        if (!strcmp(f->members[i].id, id))
            return &f->members[i];
    }
    return NULL;
}

static inline const char *fake_card_owner(void *ctx, const char *card)
{
    fake *f = ctx;
    for (size_t i = 0; i < f->cards_n; i++) {
        if (!strcmp(f->cards[i][0], card))
            return f->cards[i][1];
    }
    return NULL;
}

static inline int fake_sale_lookup(void *ctx, lt_event_id id, const lt_entry **entry,
                                   const int64_t **returned, uint64_t *seq)
{
    fake *f = ctx;
    if (f->sale_rc)
        return f->sale_rc;
    for (size_t i = 0; i < f->sales_n; i++) {
        fake_sale *s = &f->sales[i];
        if (s->entry.id.node_id == id.node_id && s->entry.id.event_id == id.event_id) {
            *entry = &s->entry;
            *returned = s->has_returned ? s->returned : NULL;
            *seq = s->seq;
            return 0;
        }
    }
    return -1;
}

static inline rules_view fake_view(fake *f)
{
    rules_view v = {
        .ctx = f, .member = fake_member, .card_owner = fake_card_owner, .sale = fake_sale_lookup};
    return v;
}

/* Keeps a rated entry as the ledger's entry at `seq`, found by its event id. */
static inline fake_sale *fake_keep_sale(fake *f, const lt_entry *e, uint64_t seq)
{
    assert_true(f->sales_n < FAKE_SALES_MAX);
    fake_sale *s = &f->sales[f->sales_n++];
    memset(s, 0, sizeof *s);
    s->entry = *e;
    s->entry.seq = seq;
    s->seq = seq;
    return s;
}

/* Records a rated return's quantities against its sale, as the state would (R18). */
static inline void fake_record_return(fake *f, const lt_entry *ret)
{
    for (size_t i = 0; i < f->sales_n; i++) {
        fake_sale *s = &f->sales[i];
        if (s->seq != ret->original_seq)
            continue;
        assert_int_equal(ret->lines_n, s->entry.lines_n);
        for (uint32_t k = 0; k < ret->lines_n; k++)
            s->returned[k] += ret->lines[k].quantity;
        s->has_returned = true;
        return;
    }
    fail_msg("return against an unknown sale seq");
}

/* Adds an active member with `points` in one lot that never expires (none if 0). */
static inline lt_member *fake_add(fake *f, const char *id, const char *tier, int64_t points)
{
    assert_true(f->members_n < FAKE_MEMBERS_MAX);
    size_t i = f->members_n++;
    lt_member *m = &f->members[i];
    memset(m, 0, sizeof *m);
    strcpy(m->id, id);
    strcpy(m->tier, tier);
    m->lots = f->lots[i];
    m->lots_cap = FAKE_LOTS_MAX;
    if (points > 0) {
        m->lots[0].points = points;
        m->lots_n = 1;
    }
    return m;
}

static inline void fake_card(fake *f, const char *card, const char *owner)
{
    assert_true(f->cards_n < FAKE_CARDS_MAX);
    strcpy(f->cards[f->cards_n][0], card);
    strcpy(f->cards[f->cards_n][1], owner);
    f->cards_n++;
}

/* UTC seconds of a store-local time at offset off_min. */
static inline int64_t local_time(int y, int mo, int d, int h, int mi, int32_t off_min)
{
    return rules_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 - (int64_t)off_min * 60;
}

static inline void ev_init(lt_event *ev, lt_event_kind kind, const char *member_id, int64_t at)
{
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->id.node_id = 7;
    ev->id.event_id = 42;
    strcpy(ev->member_id, member_id);
    strcpy(ev->store_id, "S1");
    ev->occurred_at = at;
    ev->utc_offset_min = CST;
}

/* Appends a sale line of `qty` units at unit list / paid prices. */
static inline void ev_line(lt_event *ev, const char *sku, const char *category, int64_t qty,
                           int64_t list, int64_t paid, uint32_t flags)
{
    assert_true(ev->lines_n < LT_SALE_LINES_MAX);
    lt_line *l = &ev->lines[ev->lines_n++];
    strcpy(l->sku, sku);
    strcpy(l->category, category);
    l->quantity = qty;
    l->unit_list_fen = list;
    l->unit_paid_fen = paid;
    l->flags = flags;
}

static inline rules *load_ok(const char *yaml)
{
    rules *r = NULL;
    char err[256] = "";
    int rc = rules_load_string(yaml, strlen(yaml), "t.yaml", &r, err, sizeof err);
    if (rc != 0)
        fail_msg("rules did not load: %s", err);
    assert_non_null(r);
    return r;
}

/* Sum of the lines' points and of their redeemed points: must equal the summary. */
static inline void check_line_sums(const lt_entry *e)
{
    int64_t pts = 0, rp = 0;
    for (uint32_t i = 0; i < e->lines_n; i++) {
        pts += e->lines[i].points;
        rp += e->lines[i].redeemed_points;
        assert_true(e->lines[i].eligible_fen >= 0);
        assert_true(e->lines[i].redeemed_fen <= e->lines[i].paid_fen);
    }
    assert_int_equal(pts, e->points_earned);
    assert_int_equal(rp, e->points_redeemed);
}

#ifdef RULES_TEST_DEFAULT_FIXTURE
/* The fixture of the rating tests: the built-in rules loaded once per group, and a fresh fake
 * state, event and poisoned entry for every test. Define RULES_TEST_DEFAULT_FIXTURE before
 * including this header to use it. */
static rules *DEF; /* the built-in default rules (ops/rules.yaml) */
static fake F;
static rules_view V;
static lt_event EV;
static lt_entry E;

static int group_setup(void **state)
{
    (void)state;
    const char *text = rules_default_text();
    char err[256];
    return rules_load_string(text, strlen(text), "default", &DEF, err, sizeof err);
}

static int group_teardown(void **state)
{
    (void)state;
    rules_destroy(&DEF);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    memset(&EV, 0, sizeof EV);
    memset(&E, 0xA5, sizeof E); /* rating must overwrite everything */
    V = fake_view(&F);
    return 0;
}
#endif

#endif
