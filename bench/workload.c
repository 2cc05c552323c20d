/* workload.c: the benchmark's event mix (workload.h). */
#include "workload.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENROL_PER_MILLE 10
#define RETURN_PER_MILLE 10
#define REDEEM_PER_MILLE 50

typedef struct {
    const char *name;
    unsigned weight;
    int64_t price_min, price_max; /* unit list price, fen */
    int qty_max;
    bool excluded, big_ticket; /* as the default rules (ops/rules.yaml) classify it */
} category;

/* Weights sum to 100. */
static const category categories[] = {
    {"groceries", 30, 200, 5000, 5, false, false},
    {"fresh", 14, 300, 8000, 3, false, false},
    {"household", 12, 500, 12000, 3, false, false},
    {"beverages", 10, 300, 3000, 6, false, false},
    {"snacks", 8, 200, 2500, 4, false, false},
    {"clothing", 6, 5000, 60000, 2, false, true},
    {"appliances", 2, 100000, 800000, 1, false, true},
    {"tobacco", 5, 1500, 10000, 2, true, false},
    {"alcohol", 5, 2000, 50000, 2, true, false},
    {"special_price", 8, 100, 3000, 3, true, false},
};

uint64_t wl_rnd(uint64_t *s)
{
    /* splitmix64: small, fast and good enough for a load mix */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t wl_rnd_below(uint64_t *s, uint64_t n)
{
    return n ? wl_rnd(s) % n : 0;
}

static int64_t rnd_range(uint64_t *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)wl_rnd_below(s, (uint64_t)(hi - lo + 1));
}

static double rnd_unit(uint64_t *s)
{
    return (double)(wl_rnd(s) >> 11) / (double)(1ull << 53);
}

int wl_model_init(wl_model *m, uint32_t members)
{
    memset(m, 0, sizeof *m);
    LT_ASSERT(members >= 1);
    m->members = members;
    m->skus = calloc(WL_SKUS, sizeof *m->skus);
    m->stores = calloc(WL_STORES, sizeof *m->stores);
    if (!m->skus || !m->stores) {
        wl_model_free(m);
        return -1;
    }
    for (int i = 0; i < WL_SKUS; i++)
        snprintf(m->skus[i], sizeof m->skus[i], "SKU%05d", i);
    for (int i = 0; i < WL_STORES; i++)
        snprintf(m->stores[i], sizeof m->stores[i], "S%02d", i + 1);
    m->zipf_log = log((double)members + 1.0);
    /* a prime multiplier is a permutation of 0..n-1 unless it divides n */
    m->perm_mult = 2654435761u % members == 0 ? 1 : 2654435761u;
    return 0;
}

void wl_model_free(wl_model *m)
{
    free(m->skus);
    free(m->stores);
    m->skus = NULL;
    m->stores = NULL;
}

uint32_t wl_pick_member(const wl_model *m, uint64_t *rng)
{
    /* rank r with probability ~ 1/r (inverse of the continuous CDF ln(1+x)/ln(1+n)) */
    double x = exp(rnd_unit(rng) * m->zipf_log) - 1.0;
    uint64_t rank = x < 0 ? 0 : (uint64_t)x;
    if (rank >= m->members)
        rank = m->members - 1;
    return (uint32_t)(rank * m->perm_mult % m->members);
}

void wl_member_id(uint32_t i, char out[LT_ID_MAX])
{
    snprintf(out, LT_ID_MAX, "139%08" PRIu32, i);
}

void wl_birthday(uint32_t i, uint8_t *month, uint8_t *day)
{
    uint32_t d = (uint32_t)((i * 2654435761u) % (12 * 28));
    *month = (uint8_t)(d / 28 + 1);
    *day = (uint8_t)(d % 28 + 1);
}

void wl_population(uint32_t i, wl_event *out)
{
    memset(out, 0, offsetof(wl_event, lines));
    out->kind = WL_ENROL;
    out->member = i;
    wl_member_id(i, out->member_id);
    wl_birthday(i, &out->birth_month, &out->birth_day);
    out->store = "S01";
}

static const category *pick_category(uint64_t *rng)
{
    unsigned w = (unsigned)wl_rnd_below(rng, 100);
    for (size_t i = 0; i < LT_ARRAY_LEN(categories); i++) {
        if (w < categories[i].weight)
            return &categories[i];
        w -= categories[i].weight;
    }
    return &categories[0];
}

static uint32_t pick_lines(uint64_t *rng)
{
    unsigned p = (unsigned)wl_rnd_below(rng, 100);
    if (p < 60)
        return (uint32_t)rnd_range(rng, 1, 3);
    if (p < 90)
        return (uint32_t)rnd_range(rng, 4, 10);
    return (uint32_t)rnd_range(rng, 11, WL_LINES_MAX);
}

static void gen_sale(const wl_model *m, uint64_t *rng, const int64_t *balances, wl_event *e)
{
    uint32_t member = wl_pick_member(m, rng);
    e->kind = WL_SALE;
    e->member = member;
    wl_member_id(member, e->member_id);
    e->lines_n = pick_lines(rng);
    for (uint32_t i = 0; i < e->lines_n; i++) {
        wl_line *l = &e->lines[i];
        const category *c = pick_category(rng);
        l->sku = m->skus[wl_rnd_below(rng, WL_SKUS)];
        l->category = c->name;
        l->excluded = c->excluded;
        l->big_ticket = c->big_ticket;
        l->quantity = rnd_range(rng, 1, c->qty_max);
        l->unit_list_fen = rnd_range(rng, c->price_min, c->price_max);
        l->unit_paid_fen = l->unit_list_fen;
        if (wl_rnd_below(rng, 100) < 30) /* discounted: 60..99% of list */
            l->unit_paid_fen = l->unit_list_fen * rnd_range(rng, 60, 99) / 100;
        unsigned f = (unsigned)wl_rnd_below(rng, 100);
        l->flags = f < 8 ? WL_FLAG_PROMOTION : f < 11 ? WL_FLAG_GROUP_BUY : 0;
        e->paid_fen += l->quantity * l->unit_paid_fen;
    }
    if (balances != NULL && wl_rnd_below(rng, 1000) < REDEEM_PER_MILLE) {
        /* small enough: at most a quarter of what the member last had, and of the sale's
         * value at the default point value of 100 fen (R15) */
        int64_t bal = __atomic_load_n(&balances[member], __ATOMIC_RELAXED);
        int64_t cap = e->paid_fen / 100;
        e->redeem_points = (bal < cap ? bal : cap) / 4;
    }
}

static void gen_enrol(uint64_t *rng, uint64_t node, uint64_t *enrolled, wl_event *e)
{
    uint64_t k = ++*enrolled;
    e->kind = WL_ENROL;
    e->member = WL_MEMBER_NONE;
    snprintf(e->member_id, sizeof e->member_id, "N%03" PRIu64 "%010" PRIu64, node % 1000, k);
    snprintf(e->card, sizeof e->card, "C%03" PRIu64 "%010" PRIu64, node % 1000, k);
    e->birth_month = (uint8_t)rnd_range(rng, 1, 12);
    e->birth_day = (uint8_t)rnd_range(rng, 1, 28);
}

/* A return of one unit of a recent accepted sale not returned yet; false if there is none. */
static bool gen_return(uint64_t *rng, wl_history *h, wl_event *e)
{
    if (h == NULL || h->n == 0)
        return false;
    wl_past *p = &h->ring[wl_rnd_below(rng, h->n)];
    if (p->returned)
        return false;
    p->returned = true;
    e->kind = WL_RETURN;
    e->member = p->member;
    wl_member_id(p->member, e->member_id);
    e->return_of = p->event_id;
    e->return_node = p->node_id;
    e->return_line = p->line;
    e->return_unit_paid_fen = p->unit_paid_fen;
    return true;
}

void wl_next(const wl_model *m, uint64_t *rng, uint64_t node, uint64_t *enrolled,
             const int64_t *balances, wl_history *h, wl_event *out)
{
    memset(out, 0, offsetof(wl_event, lines));
    out->store = m->stores[wl_rnd_below(rng, WL_STORES)];
    unsigned p = (unsigned)wl_rnd_below(rng, 1000);
    if (p < ENROL_PER_MILLE) {
        gen_enrol(rng, node, enrolled, out);
        return;
    }
    if (p < ENROL_PER_MILLE + RETURN_PER_MILLE && gen_return(rng, h, out))
        return;
    gen_sale(m, rng, balances, out);
}

void wl_past_of(const wl_event *sale, uint64_t event_id, wl_past *out)
{
    memset(out, 0, sizeof *out);
    out->event_id = event_id;
    out->member = sale->member;
    /* the last line: any line will do, and it is the cheapest to find in a receipt */
    out->line = sale->lines_n ? sale->lines_n - 1 : 0;
    out->unit_paid_fen = sale->lines_n ? sale->lines[out->line].unit_paid_fen : 0;
}

void wl_history_add(wl_history *h, const wl_past *p)
{
    h->ring[h->next] = *p;
    h->next = (h->next + 1) % WL_HISTORY;
    if (h->n < WL_HISTORY)
        h->n++;
}
