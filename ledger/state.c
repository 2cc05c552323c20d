/* state.c: member state as a projection of the ledger (R30): members, lots, cards, dirty sets.
 *
 * Members live by value in fixed-size chunks (pointers stay valid as the state grows; members
 * are never deleted), carved out of 2 MiB slabs on transparent huge pages (hugemem.h), and are
 * found through an open-addressing index of 8-byte slots (32-bit hash tag + member number),
 * linear probing, grown at 70% load: about 160 bytes per member plus 24 per lot. Cards live in a
 * record array with a free list, indexed the same way (deleted with backward shift, no tombstones),
 * and chained per member so a member's cards are found without a scan.
 *
 * state_apply() checks a posting completely and reserves every allocation it may need before
 * changing anything, so a failing posting leaves its member as it was.
 *
 * A merge posting (R7) folds one member into another, lots, cards and all, and closes it; like
 * any posting it is checked and reserved in full first.
 *
 * Returned quantities (R18) live in one record per sale that had a return (sale seq, one int64
 * per line of the sale), found through their own open-addressing index of record numbers.
 */
#include "state.h"

#include "hugemem.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <xxhash.h>

#define CHUNK_SHIFT 10
#define CHUNK_MEMBERS (1u << CHUNK_SHIFT)
#define SLAB_CHUNKS ((uint32_t)(LT_HUGE_PAGE / (CHUNK_MEMBERS * sizeof(mrec))))
#define NIL UINT32_MAX
#define MEMBERS_MAX (UINT32_MAX - 1)
#define TABLE_SLOTS_MIN 1024u
#define MEMBER_REC_VERSION 4 /* written; versions 1 to 3 (fixed width) are read */
#define MEMBER_REC_VERSION_V1 1
#define MEMBER_REC_VERSION_V2 2
#define MEMBER_REC_VERSION_V3 3
#define MEMBER_REC_FIXED_V1 (1 + 3 + 4 + 4 + 5 * 8 + 4) /* without strings and lots */
#define MEMBER_REC_MARKERS (4 + 4 + 8 + 8)              /* version 2: the time-driven markers */
#define MEMBER_REC_OFFSET (1 + 2) /* version 3: u8 offset_known, i16 utc_offset_min */
#define MEMBER_REC_FIXED (MEMBER_REC_FIXED_V1 + MEMBER_REC_MARKERS + MEMBER_REC_OFFSET)
#define LOT_REC_BYTES 24
#define HASH_SEED_MEMBER 0x6d656d62ull
#define HASH_SEED_CARD 0x63617264ull
#define HASH_SEED_RETURNS 0x72657475ull
#define RETURNS_REC_VERSION 1
#define RETURNS_SLOTS_MIN 64u

typedef struct {
    lt_member m;
    uint32_t cards;     /* first card record of this member, or NIL */
    uint32_t dirty_gen; /* == state.dirty_gen, or its number below state.all_dirty_n: on the
                         * dirty list (no pass over members to clear) */
} mrec;
_Static_assert(SLAB_CHUNKS >= 1, "a member chunk fits a huge page");

typedef struct {
    char card[LT_ID_MAX];
    uint32_t member;   /* member number, NIL while the record is free */
    uint32_t next;     /* next card of the same member, or next free record */
    uint32_t dirty_at; /* its entry in the dirty cards list, if that entry's rec is this record
                        * (card_entry()); NIL until the link is marked */
} crec;

typedef struct {
    uint32_t tag; /* low 32 bits of the key's hash; its low bits pick the home slot */
    uint32_t idx; /* member or card record number, NIL = empty */
} slot;

typedef struct {
    slot *slots;
    uint32_t mask; /* slots - 1, slots a power of two */
    uint32_t n;
} table;

/* R18: what was returned so far of one sale. */
typedef struct {
    uint64_t seq; /* the sale's ledger sequence */
    int64_t *qty; /* n cumulative returned quantities, one per line of the sale */
    uint32_t n;
    uint32_t dirty_gen; /* == state.rest_gen: on the dirty list */
} rrec;

/* One bit per member or returns record number, the copy-on-write checkpoint's marks. */
typedef struct {
    uint64_t *w;
    uint32_t words;
} bitmap;

struct state {
    mrec **chunks; /* carved from 2 MiB slabs, SLAB_CHUNKS each; a slab's first is the slab */
    uint32_t chunks_n, chunks_cap;
    uint32_t members_n;
    table mtab, ctab;
    crec *crecs;
    uint32_t crecs_n, crecs_cap, cfree;
    uint32_t *dirty_members;
    uint32_t dirty_members_n, dirty_members_cap;
    state_card_change *dirty_cards; /* each with its link as of its last change */
    uint32_t dirty_cards_n, dirty_cards_cap;
    rrec *rrecs; /* R18 returned quantities */
    uint32_t rrecs_n, rrecs_cap;
    uint32_t *rslots; /* record numbers, NIL = empty; linear probing on the seq's hash */
    uint32_t rmask;   /* rslots - 1 */
    state_returns_change *dirty_returns;
    uint32_t dirty_returns_n, dirty_returns_cap;
    uint64_t seq;
    uint32_t dirty_gen;   /* members marked with it are dirty; never 0 */
    uint32_t all_dirty_n; /* and those numbered below it (state_mark_all_dirty(), until the next
                           * generation), whatever their mark says */
    uint32_t rest_gen;    /* the same for returns records (state_clear_dirty()) */
    /* copy-on-write checkpoint: members still to be encoded as of its start, one bit each */
    bitmap ck_mbits;
    uint32_t *ck_members;
    uint32_t ck_members_n, ck_members_cap;
    state_ck_capture ck_cap;
    /* and its cards and returns records: the lists handed over; returns marked one bit each */
    state_card_change *ck_cards;
    uint32_t ck_cards_n, ck_cards_cap;
    state_returns_change *ck_returns;
    uint32_t ck_returns_n, ck_returns_cap;
    bitmap ck_rbits;
};

/* ------------------------------------------------------------------ small helpers */

static mrec *member_at(const state *s, uint32_t i)
{
    LT_ASSERT(i < s->members_n);
    return &s->chunks[i >> CHUNK_SHIFT][i & (CHUNK_MEMBERS - 1)];
}

static uint32_t hash_key(const char *key)
{
    return (uint32_t)XXH3_64bits(key, strlen(key));
}

static void seterr(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Grows *p (an array of `size`-byte items with capacity *cap) to hold at least `need` items.
 * Returns 0, or -1 on allocation failure (*p unchanged). */
static int grow(void **p, uint32_t *cap, uint32_t need, size_t size, uint32_t min)
{
    if (need <= *cap)
        return 0;
    uint64_t c = *cap ? *cap : min;
    while (c < need)
        c *= 2;
    if (c > UINT32_MAX)
        c = UINT32_MAX;
    void *q = realloc(*p, (size_t)c * size);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = (uint32_t)c;
    return 0;
}

/* ------------------------------------------------------------------ hash index */

static const char *key_at(const state *s, const table *t, uint32_t idx)
{
    return t == &s->mtab ? member_at(s, idx)->m.id : s->crecs[idx].card;
}

/* Returns the slot holding key, or the empty slot where it would go. */
static slot *tab_lookup(const state *s, const table *t, uint32_t h, const char *key)
{
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        slot *sl = &t->slots[i];
        if (sl->idx == NIL || (sl->tag == h && strcmp(key_at(s, t, sl->idx), key) == 0))
            return sl;
    }
}

/* An index of n slots (a power of two) filled with NIL, on huge pages once it is large (1 M
 * members have 2 M slots, 16 MiB, probed at random). */
static slot *slots_alloc(uint64_t n)
{
    slot *p = lt_huge_alloc((size_t)n * sizeof(slot));
    if (p != NULL)
        memset(p, 0xff, (size_t)n * sizeof(slot));
    return p;
}

static void slots_free(table *t)
{
    if (t->slots != NULL)
        lt_huge_free(t->slots, ((size_t)t->mask + 1) * sizeof(slot));
    t->slots = NULL;
}

/* Makes room for one more key (70% load). Returns 0 or -1 on allocation failure. */
static int tab_reserve(table *t)
{
    uint64_t slots = t->slots ? (uint64_t)t->mask + 1 : 0;
    if (((uint64_t)t->n + 1) * 10 <= slots * 7)
        return 0;
    uint64_t nslots = slots ? slots * 2 : TABLE_SLOTS_MIN;
    if (nslots > ((uint64_t)1 << 32))
        return -1;
    slot *ns = slots_alloc(nslots);
    if (ns == NULL)
        return -1;
    uint32_t mask = (uint32_t)(nslots - 1);
    for (uint64_t i = 0; i < slots; i++) {
        if (t->slots[i].idx == NIL)
            continue;
        uint32_t j = t->slots[i].tag & mask;
        while (ns[j].idx != NIL)
            j = (j + 1) & mask;
        ns[j] = t->slots[i];
    }
    slots_free(t);
    t->slots = ns;
    t->mask = mask;
    return 0;
}

/* Removes a slot, shifting later members of the probe run back (no tombstones). */
static void tab_delete(table *t, slot *sl)
{
    uint32_t i = (uint32_t)(sl - t->slots), j = i;
    t->n--;
    for (;;) {
        t->slots[i].idx = NIL;
        for (;;) {
            j = (j + 1) & t->mask;
            if (t->slots[j].idx == NIL)
                return;
            uint32_t home = t->slots[j].tag & t->mask;
            /* slot j may move back to i unless its home lies cyclically in (i, j] */
            bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays)
                break;
        }
        t->slots[i] = t->slots[j];
        i = j;
    }
}

/* ------------------------------------------------------------------ lookups */

/* Returns the member's number, or NIL. */
static uint32_t find_member_idx(const state *s, const char *id)
{
    return s->mtab.n ? tab_lookup(s, &s->mtab, hash_key(id), id)->idx : NIL;
}

static mrec *find_member(const state *s, const char *id)
{
    uint32_t idx = find_member_idx(s, id);
    return idx == NIL ? NULL : member_at(s, idx);
}

static crec *find_card(const state *s, const char *card)
{
    if (s->ctab.n == 0)
        return NULL;
    slot *sl = tab_lookup(s, &s->ctab, hash_key(card), card);
    return sl->idx == NIL ? NULL : &s->crecs[sl->idx];
}

void state_prefetch(const state *s, const char *member_id, size_t len, unsigned ahead)
{
    if (member_id == NULL || len == 0 || len >= LT_ID_MAX || s->mtab.n == 0 || ahead < 1 ||
        ahead > STATE_PREFETCH_AHEAD)
        return; /* absent, too long (ingest refuses it), or no stage at that distance */
    const table *t = &s->mtab;
    uint32_t h = (uint32_t)XXH3_64bits(member_id, len);
    if (ahead == STATE_PREFETCH_AHEAD) { /* the farthest: its index slot */
        __builtin_prefetch(&t->slots[h & t->mask]);
        return;
    }
    /* the first slot with the key's tag is almost always the member: no string compare here,
     * which would wait for the record this is about to prefetch */
    for (uint32_t i = h & t->mask, probes = 0; probes <= t->mask; i = (i + 1) & t->mask, probes++) {
        const slot *sl = &t->slots[i];
        if (sl->idx == NIL)
            return;
        if (sl->tag != h)
            continue;
        const mrec *r = member_at(s, sl->idx);
        if (ahead == 2) /* the one after next: its record */
            lt_prefetch(r, sizeof *r);
        else if (r->m.lots_n > 0 && r->m.lots != NULL) /* the oldest lots: FIFO spends them */
            lt_prefetch(r->m.lots, r->m.lots_n < 16 ? r->m.lots_n * sizeof *r->m.lots
                                                    : 16 * sizeof *r->m.lots);
        return;
    }
}

const lt_member *state_member(const state *s, const char *member_id)
{
    mrec *r = find_member(s, member_id);
    return r ? &r->m : NULL;
}

const char *state_card_owner(const state *s, const char *card)
{
    crec *c = find_card(s, card);
    return c ? member_at(s, c->member)->m.id : NULL;
}

static const lt_member *view_member(void *ctx, const char *member_id)
{
    return state_member(ctx, member_id);
}

static const char *view_card_owner(void *ctx, const char *card)
{
    return state_card_owner(ctx, card);
}

void state_view(state *s, rules_view *v)
{
    v->ctx = s;
    v->member = view_member;
    v->card_owner = view_card_owner;
    v->sale = NULL;
}

static int64_t lots_sum(const lt_member *m);

int64_t state_balance(const lt_member *m)
{
    return lots_sum(m) - m->debt;
}

uint64_t state_seq(const state *s)
{
    return s->seq;
}

void state_set_seq(state *s, uint64_t seq)
{
    s->seq = seq;
}

size_t state_members(const state *s)
{
    return s->members_n;
}

size_t state_cards(const state *s)
{
    return s->ctab.n;
}

/* ------------------------------------------------------------------ new / destroy */

int state_new(state **out)
{
    state *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    s->cfree = NIL;
    s->dirty_gen = 1; /* members start at 0: clean */
    s->rest_gen = 1;  /* and returns records */
    *out = s;
    return 0;
}

void state_destroy(state **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    state *s = *sp;
    for (uint32_t i = 0; i < s->members_n; i++)
        free(member_at(s, i)->m.lots);
    for (uint32_t i = 0; i < s->chunks_n; i += SLAB_CHUNKS) /* a slab's first chunk */
        lt_huge_free(s->chunks[i], LT_HUGE_PAGE);
    free(s->chunks);
    slots_free(&s->mtab);
    slots_free(&s->ctab);
    free(s->crecs);
    free(s->dirty_members);
    free(s->ck_members);
    free(s->ck_mbits.w);
    free(s->dirty_cards);
    free(s->ck_cards);
    free(s->ck_returns);
    free(s->ck_rbits.w);
    for (uint32_t i = 0; i < s->rrecs_n; i++)
        free(s->rrecs[i].qty);
    free(s->rrecs);
    free(s->rslots);
    free(s->dirty_returns);
    free(s);
    *sp = NULL;
}

/* ------------------------------------------------------------------ lots (R17, R18, R20) */

/* Spend-order key: expiring first (0 = never, last), then earlier earned. */
static bool lot_before(const lt_lot *a, const lt_lot *b)
{
    int64_t ea = a->expires_at ? a->expires_at : INT64_MAX;
    int64_t eb = b->expires_at ? b->expires_at : INT64_MAX;
    return ea != eb ? ea < eb : a->earned_at < b->earned_at;
}

static int lots_reserve(lt_member *m, uint32_t need)
{
    void *p = m->lots;
    if (grow(&p, &m->lots_cap, need, sizeof(lt_lot), 1) != 0)
        return -1;
    m->lots = p;
    return 0;
}

/* Takes `points` from the lots in spend order (caller checked they suffice). */
static void lots_debit(lt_member *m, int64_t points)
{
    uint32_t gone = 0;
    while (points > 0) {
        LT_ASSERT(gone < m->lots_n);
        lt_lot *lot = &m->lots[gone];
        int64_t take = lot->points < points ? lot->points : points;
        lot->points -= take;
        points -= take;
        if (lot->points == 0)
            gone++;
    }
    memmove(m->lots, m->lots + gone, (m->lots_n - gone) * sizeof(lt_lot));
    m->lots_n -= gone;
}

/* Members who spend everything give the lots' memory back. */
static void lots_trim(lt_member *m)
{
    if (m->lots_n == 0 && m->lots) {
        free(m->lots);
        m->lots = NULL;
        m->lots_cap = 0;
    }
}

static int64_t lots_sum(const lt_member *m)
{
    int64_t held = 0;
    for (uint32_t i = 0; i < m->lots_n; i++)
        held += m->lots[i].points;
    return held;
}

/* Inserts a lot after every lot that is not after it (ties keep insertion order); a lot with
 * the same key as its predecessor is merged into it, which spends identically. Capacity for
 * one more lot must be reserved. */
static void lots_add(lt_member *m, lt_lot lot)
{
    uint32_t i = m->lots_n;
    while (i > 0 && lot_before(&lot, &m->lots[i - 1]))
        i--;
    if (i > 0 && m->lots[i - 1].expires_at == lot.expires_at &&
        m->lots[i - 1].earned_at == lot.earned_at) {
        m->lots[i - 1].points += lot.points;
        return;
    }
    LT_ASSERT(m->lots_n < m->lots_cap);
    memmove(m->lots + i + 1, m->lots + i, (m->lots_n - i) * sizeof(lt_lot));
    m->lots[i] = lot;
    m->lots_n++;
}

/* ------------------------------------------------------------------ dirty tracking */

/* Clears bit i; returns whether it was set. */
static bool bits_take(bitmap *b, uint32_t i)
{
    if (i / 64 >= b->words)
        return false;
    uint64_t bit = 1ull << (i % 64), *w = &b->w[i / 64];
    if (!(*w & bit))
        return false;
    *w &= ~bit;
    return true;
}

static void bits_set(bitmap *b, uint32_t i)
{
    LT_ASSERT(i / 64 < b->words);
    b->w[i / 64] |= 1ull << (i % 64);
}

/* Grows b to cover n bits (new words clear). Returns 0 or -1. */
static int bits_grow(bitmap *b, uint32_t n)
{
    uint32_t old = b->words;
    void *p = b->w;
    if (grow(&p, &b->words, (n + 63) / 64, sizeof(uint64_t), 1024) != 0)
        return -1;
    b->w = p;
    if (b->words > old) /* else b->w may still be NULL */
        memset(b->w + old, 0, (size_t)(b->words - old) * sizeof *b->w);
    return 0;
}

/* Before a member changes: if the checkpoint being taken has not encoded it yet, it gets the
 * member as it is now (as of the checkpoint's start) first. */
static void ck_touch(state *s, uint32_t idx)
{
    if (bits_take(&s->ck_mbits, idx))
        s->ck_cap.member(s->ck_cap.ctx, idx, &member_at(s, idx)->m);
}

#define DIRTY_AHEAD 8 /* lookahead of the pass over dirty returns records */

/* The next dirty generation: every member is clean at once. */
static void next_dirty_gen(state *s)
{
    if (++s->dirty_gen == 0)
        s->dirty_gen = 1;
    s->all_dirty_n = 0;
}

static void next_rest_gen(state *s)
{
    if (++s->rest_gen == 0)
        s->rest_gen = 1;
}

static void mark_member(state *s, uint32_t idx)
{
    if (idx < s->all_dirty_n)
        return; /* listed by state_mark_all_dirty() */
    mrec *r = member_at(s, idx);
    if (r->dirty_gen == s->dirty_gen)
        return;
    LT_ASSERT(s->dirty_members_n < s->dirty_members_cap);
    r->dirty_gen = s->dirty_gen;
    s->dirty_members[s->dirty_members_n++] = idx;
}

/* Returns record rec changed: listed once per generation, with its sale seq (a checkpoint sorts
 * the list by it without reading the records). */
static void mark_returns(state *s, uint32_t rec)
{
    rrec *r = &s->rrecs[rec];
    if (r->dirty_gen == s->rest_gen)
        return;
    LT_ASSERT(s->dirty_returns_n < s->dirty_returns_cap);
    r->dirty_gen = s->rest_gen;
    s->dirty_returns[s->dirty_returns_n++] = (state_returns_change){r->seq, rec, 0};
}

/* The dirty list holds each changed card with its link as of its last change, so a checkpoint
 * takes the list as it is: no lookups at its start (each card was three cache misses there:
 * the index, the record, the member's id). A linked card's record points at its entry
 * (dirty_at), which a later change updates; the entry is this record's only while its rec is
 * the record's number, so a list cleared or handed over needs no pass over the records. */
static state_card_change *card_entry(state *s, uint32_t ci)
{
    const crec *c = &s->crecs[ci];
    if (c->dirty_at < s->dirty_cards_n && s->dirty_cards[c->dirty_at].rec == ci)
        return &s->dirty_cards[c->dirty_at];
    return NULL;
}

static void card_entry_add(state *s, const char *card, uint32_t owner, uint32_t rec)
{
    LT_ASSERT(s->dirty_cards_n < s->dirty_cards_cap);
    state_card_change *e = &s->dirty_cards[s->dirty_cards_n++];
    strcpy(e->card, card);
    e->owner = owner;
    e->rec = rec;
}

/* Card record ci was linked or moved to another member: its entry gets the owner. */
static void mark_card(state *s, uint32_t ci)
{
    crec *c = &s->crecs[ci];
    state_card_change *e = card_entry(s, ci);
    if (e != NULL) {
        e->owner = c->member;
        return;
    }
    c->dirty_at = s->dirty_cards_n;
    card_entry_add(s, c->card, c->member, ci);
}

/* Card record ci was unlinked (its record freed, its name still in it): its entry says so. A
 * card unlinked and linked again gets a second entry with its new record: a checkpoint keeps
 * the later one (daemon.c, ckpt_sort_work()). */
static void mark_card_unlinked(state *s, uint32_t ci)
{
    state_card_change *e = card_entry(s, ci);
    if (e != NULL) {
        e->owner = STATE_NO_MEMBER;
        e->rec = NIL;
        return;
    }
    card_entry_add(s, s->crecs[ci].card, STATE_NO_MEMBER, NIL);
}

int state_foreach_dirty(const state *s, int (*member_fn)(void *ctx, const lt_member *m),
                        int (*card_fn)(void *ctx, const char *card, const char *member_id),
                        void *ctx)
{
    for (uint32_t i = 0; member_fn && i < s->dirty_members_n; i++) {
        int rc = member_fn(ctx, &member_at(s, s->dirty_members[i])->m);
        if (rc != 0)
            return rc;
    }
    for (uint32_t i = 0; card_fn && i < s->dirty_cards_n; i++) {
        const state_card_change *e = &s->dirty_cards[i];
        const char *owner = e->owner == STATE_NO_MEMBER ? NULL : member_at(s, e->owner)->m.id;
        int rc = card_fn(ctx, e->card, owner);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Hands dirty list `what` (dirty_what, _n, _cap) over to the checkpoint (ck_what, _n, _cap);
 * the dirty side gets the checkpoint's old buffer, empty. */
#define HAND_OVER(s, what)                                                                         \
    do {                                                                                           \
        void *buf_ = (s)->ck_##what;                                                               \
        uint32_t cap_ = (s)->ck_##what##_cap;                                                      \
        (s)->ck_##what = (s)->dirty_##what;                                                        \
        (s)->ck_##what##_n = (s)->dirty_##what##_n;                                                \
        (s)->ck_##what##_cap = (s)->dirty_##what##_cap;                                            \
        (s)->dirty_##what = buf_;                                                                  \
        (s)->dirty_##what##_cap = cap_;                                                            \
        (s)->dirty_##what##_n = 0;                                                                 \
    } while (0)

int state_ckpt_begin(state *s, const state_ck_capture *cap, state_ckpt_list *out)
{
    LT_ASSERT(cap != NULL && cap->member != NULL && cap->returns != NULL);
    if (bits_grow(&s->ck_mbits, s->members_n) != 0 || bits_grow(&s->ck_rbits, s->rrecs_n) != 0)
        return -1;
    /* one not finished: its records are done */
    for (uint32_t i = 0; i < s->ck_members_n; i++)
        bits_take(&s->ck_mbits, s->ck_members[i]);
    for (uint32_t i = 0; i < s->ck_returns_n; i++)
        bits_take(&s->ck_rbits, s->ck_returns[i].rec);
    /* each dirty list becomes the checkpoint's, and the checkpoint's old one takes new changes
     * (the reserve functions grow it on demand) */
    HAND_OVER(s, members);
    HAND_OVER(s, cards);
    HAND_OVER(s, returns);
    next_dirty_gen(s);
    next_rest_gen(s);
    for (uint32_t i = 0; i < s->ck_members_n; i++)
        bits_set(&s->ck_mbits, s->ck_members[i]);
    for (uint32_t i = 0; i < s->ck_returns_n; i++)
        bits_set(&s->ck_rbits, s->ck_returns[i].rec);
    s->ck_cap = *cap;
    *out = (state_ckpt_list){s->ck_members, s->ck_members_n, s->ck_cards,
                             s->ck_cards_n, s->ck_returns,   s->ck_returns_n};
    return 0;
}

size_t state_dirty_members(const state *s)
{
    return s->dirty_members_n;
}

const char *state_ckpt_member_id(const state *s, uint32_t idx)
{
    return s->chunks[idx >> CHUNK_SHIFT][idx & (CHUNK_MEMBERS - 1)].m.id;
}

int state_ids_take(const state *s, state_ids *v)
{
    if (s->chunks_n > v->chunks_cap) {
        void **nc = realloc(v->chunks, (size_t)s->chunks_n * sizeof *nc);
        if (nc == NULL)
            return -1;
        v->chunks = nc;
        v->chunks_cap = s->chunks_n;
    }
    for (uint32_t i = 0; i < s->chunks_n; i++)
        v->chunks[i] = s->chunks[i];
    v->chunks_n = s->chunks_n;
    v->members_n = s->members_n;
    return 0;
}

const char *state_ids_member_id(const state_ids *v, uint32_t idx)
{
    LT_ASSERT(idx < v->members_n);
    const mrec *chunk = v->chunks[idx >> CHUNK_SHIFT];
    return chunk[idx & (CHUNK_MEMBERS - 1)].m.id;
}

void state_ids_free(state_ids *v)
{
    free(v->chunks);
    *v = (state_ids){0};
}

const lt_member *state_ckpt_take(state *s, uint32_t idx)
{
    return bits_take(&s->ck_mbits, idx) ? &member_at(s, idx)->m : NULL;
}

bool state_ckpt_take_returns(state *s, uint32_t rec, const int64_t **qty, uint32_t *n)
{
    if (!bits_take(&s->ck_rbits, rec))
        return false;
    LT_ASSERT(rec < s->rrecs_n);
    *qty = s->rrecs[rec].qty;
    *n = s->rrecs[rec].n;
    return true;
}

void state_clear_dirty(state *s)
{
    next_dirty_gen(s);
    next_rest_gen(s);
    s->dirty_members_n = 0;
    s->dirty_cards_n = 0;
    s->dirty_returns_n = 0;
}

int state_mark_all_dirty(state *s)
{
    void *dm = s->dirty_members, *dc = s->dirty_cards, *dr = s->dirty_returns;
    if (grow(&dm, &s->dirty_members_cap, s->members_n + 1, sizeof(uint32_t), 256) != 0)
        return -1;
    s->dirty_members = dm;
    if (grow(&dc, &s->dirty_cards_cap, s->dirty_cards_n + s->crecs_n + 1, sizeof(state_card_change),
             64) != 0)
        return -1;
    s->dirty_cards = dc;
    if (grow(&dr, &s->dirty_returns_cap, s->rrecs_n + 1, sizeof(state_returns_change), 64) != 0)
        return -1;
    s->dirty_returns = dr;
    /* the list is every member number, written without touching the records: marking each of
     * 1,016,592 records took 9.3-15.5 ms of a full checkpoint's 13.7-21.3 ms start on the loop
     * thread, listing them 1.7 ms */
    for (uint32_t i = 0; i < s->members_n; i++)
        s->dirty_members[i] = i;
    s->dirty_members_n = s->members_n;
    s->all_dirty_n = s->members_n;
    for (uint32_t i = 0; i < s->crecs_n; i++) {
        if (s->crecs[i].member != NIL)
            mark_card(s, i);
    }
    for (uint32_t i = 0; i < s->rrecs_n; i++)
        mark_returns(s, i);
    return 0;
}

/* ------------------------------------------------------------------ members and cards */

/* Makes room for one more member (chunk and index). Returns 0 or -1. */
static int member_reserve(state *s)
{
    if (s->members_n >= MEMBERS_MAX || tab_reserve(&s->mtab) != 0)
        return -1;
    if (s->members_n < s->chunks_n * CHUNK_MEMBERS)
        return 0;
    void *p = s->chunks;
    if (grow(&p, &s->chunks_cap, s->chunks_n + 1, sizeof(mrec *), 16) != 0)
        return -1;
    s->chunks = p;
    /* chunk k of a slab lies k chunks into it, so the slab's first chunk is the slab */
    uint32_t k = s->chunks_n % SLAB_CHUNKS;
    mrec *slab = k == 0 ? lt_huge_alloc(LT_HUGE_PAGE) : s->chunks[s->chunks_n - k];
    if (slab == NULL)
        return -1;
    s->chunks[s->chunks_n++] = slab + (size_t)k * CHUNK_MEMBERS;
    return 0;
}

/* Adds a member (room reserved, id not present) and returns its number. */
static uint32_t member_add(state *s, const lt_member *m)
{
    uint32_t idx = s->members_n++;
    mrec *r = member_at(s, idx);
    r->m = *m;
    r->cards = NIL;
    r->dirty_gen = 0;
    uint32_t h = hash_key(m->id);
    slot *sl = tab_lookup(s, &s->mtab, h, m->id);
    LT_ASSERT(sl->idx == NIL);
    *sl = (slot){h, idx};
    s->mtab.n++;
    return idx;
}

/* Makes room for one more card link. Returns 0 or -1. */
static int card_reserve(state *s)
{
    if (tab_reserve(&s->ctab) != 0)
        return -1;
    if (s->cfree != NIL)
        return 0;
    void *p = s->crecs;
    if (s->crecs_n == NIL || grow(&p, &s->crecs_cap, s->crecs_n + 1, sizeof(crec), 64) != 0)
        return -1;
    s->crecs = p;
    return 0;
}

static uint32_t card_link(state *s, const char *card, uint32_t member)
{
    uint32_t idx;
    if (s->cfree != NIL) {
        idx = s->cfree;
        s->cfree = s->crecs[idx].next;
    } else {
        LT_ASSERT(s->crecs_n < s->crecs_cap);
        idx = s->crecs_n++;
    }
    crec *c = &s->crecs[idx];
    memset(c->card, 0, sizeof(c->card));
    strcpy(c->card, card);
    mrec *r = member_at(s, member);
    c->member = member;
    c->next = r->cards;
    c->dirty_at = NIL;
    r->cards = idx;
    uint32_t h = hash_key(card);
    slot *sl = tab_lookup(s, &s->ctab, h, card);
    LT_ASSERT(sl->idx == NIL);
    *sl = (slot){h, idx};
    s->ctab.n++;
    return idx;
}

/* Unlinks a card; returns its record's number (now free). */
static uint32_t card_unlink(state *s, const char *card)
{
    slot *sl = tab_lookup(s, &s->ctab, hash_key(card), card);
    LT_ASSERT(sl->idx != NIL);
    uint32_t idx = sl->idx;
    crec *c = &s->crecs[idx];
    uint32_t *link = &member_at(s, c->member)->cards;
    while (*link != idx) {
        LT_ASSERT(*link != NIL);
        link = &s->crecs[*link].next;
    }
    *link = c->next;
    tab_delete(&s->ctab, sl);
    c->member = NIL;
    c->next = s->cfree;
    s->cfree = idx;
    return idx;
}

size_t state_member_cards(const state *s, const char *member_id, const char **cards, size_t max)
{
    mrec *r = find_member(s, member_id);
    size_t n = 0;
    for (uint32_t i = r ? r->cards : NIL; i != NIL; i = s->crecs[i].next, n++)
        if (n < max)
            cards[n] = s->crecs[i].card;
    return n;
}

int state_foreach(const state *s, int (*fn)(void *ctx, const lt_member *m), void *ctx)
{
    for (uint32_t i = 0; i < s->members_n; i++) {
        int rc = fn(ctx, &member_at(s, i)->m);
        if (rc != 0)
            return rc;
    }
    return 0;
}

const lt_member *state_member_at(const state *s, size_t *pos)
{
    if (*pos >= s->members_n)
        return NULL;
    return &member_at(s, (uint32_t)(*pos)++)->m;
}

int state_foreach_card(const state *s,
                       int (*fn)(void *ctx, const char *card, const char *member_id), void *ctx)
{
    for (uint32_t i = 0; i < s->crecs_n; i++) {
        const crec *c = &s->crecs[i];
        if (c->member == NIL)
            continue;
        int rc = fn(ctx, c->card, member_at(s, c->member)->m.id);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ returned quantities (R18) */

/* Spreads a sale seq over the index (seqs are dense: mix them). */
static uint32_t returns_hash(uint64_t seq)
{
    seq ^= seq >> 33;
    seq *= 0xff51afd7ed558ccdull;
    seq ^= seq >> 33;
    return (uint32_t)seq;
}

/* Returns the slot holding seq's record number, or the empty slot where it would go. */
static uint32_t *returns_slot(const state *s, uint64_t seq)
{
    for (uint32_t i = returns_hash(seq) & s->rmask;; i = (i + 1) & s->rmask) {
        uint32_t *sl = &s->rslots[i];
        if (*sl == NIL || s->rrecs[*sl].seq == seq)
            return sl;
    }
}

static rrec *returns_find(const state *s, uint64_t seq)
{
    if (s->rrecs_n == 0)
        return NULL;
    uint32_t idx = *returns_slot(s, seq);
    return idx == NIL ? NULL : &s->rrecs[idx];
}

/* Makes room for one more record (array and index at 70% load). Returns 0 or -1. */
static int returns_reserve(state *s)
{
    void *p = s->rrecs;
    if (s->rrecs_n >= MEMBERS_MAX || grow(&p, &s->rrecs_cap, s->rrecs_n + 1, sizeof(rrec), 16))
        return -1;
    s->rrecs = p;
    uint64_t slots = s->rslots ? (uint64_t)s->rmask + 1 : 0;
    if (((uint64_t)s->rrecs_n + 1) * 10 <= slots * 7)
        return 0;
    uint64_t nslots = slots ? slots * 2 : RETURNS_SLOTS_MIN;
    if (nslots > ((uint64_t)1 << 32))
        return -1;
    uint32_t *ns = malloc(nslots * sizeof(*ns));
    if (ns == NULL)
        return -1;
    memset(ns, 0xff, nslots * sizeof(*ns));
    free(s->rslots);
    s->rslots = ns;
    s->rmask = (uint32_t)(nslots - 1);
    for (uint32_t i = 0; i < s->rrecs_n; i++)
        *returns_slot(s, s->rrecs[i].seq) = i;
    return 0;
}

/* Adds a record that owns qty (room reserved, seq not present). */
static void returns_add(state *s, uint64_t seq, int64_t *qty, uint32_t n)
{
    LT_ASSERT(s->rrecs_n < s->rrecs_cap);
    uint32_t *sl = returns_slot(s, seq);
    LT_ASSERT(*sl == NIL);
    *sl = s->rrecs_n;
    s->rrecs[s->rrecs_n++] = (rrec){seq, qty, n, 0};
}

/* What applying a return entry will do to the records, decided before anything changes. */
typedef struct {
    rrec *rec;      /* the sale's record, or NULL: fresh becomes a new one */
    int64_t *fresh; /* zeroed quantities for a sale's first return */
} rplan;

/* Checks a return entry's lines against the sale's record and reserves what applying it needs.
 * Returns 0, or -1 with err set (nothing changed; rp->fresh is NULL). */
static int returns_prepare(state *s, const lt_entry *e, rplan *rp, char *err, size_t err_len)
{
    rp->rec = NULL;
    rp->fresh = NULL;
    if (e->original_seq == 0 || e->lines_n == 0 || e->lines_n > LT_SALE_LINES_MAX) {
        seterr(err, err_len, "return: no original sale or no lines");
        return -1;
    }
    rp->rec = returns_find(s, e->original_seq);
    if (rp->rec && rp->rec->n != e->lines_n) {
        seterr(err, err_len, "return: sale %" PRIu64 " has %" PRIu32 " lines, the entry %" PRIu32,
               e->original_seq, rp->rec->n, e->lines_n);
        return -1;
    }
    for (uint32_t i = 0; i < e->lines_n; i++) {
        int64_t sum, q = e->lines[i].quantity;
        if (q < 0 || __builtin_add_overflow(rp->rec ? rp->rec->qty[i] : 0, q, &sum)) {
            seterr(err, err_len, "return: line %" PRIu32 " quantity %" PRId64 " is invalid", i, q);
            return -1;
        }
    }
    void *d = s->dirty_returns;
    if (grow(&d, &s->dirty_returns_cap, s->dirty_returns_n + 1, sizeof(state_returns_change), 64) !=
        0)
        goto oom;
    s->dirty_returns = d;
    if (rp->rec == NULL) {
        if (returns_reserve(s) != 0 || (rp->fresh = calloc(e->lines_n, sizeof(int64_t))) == NULL)
            goto oom;
    }
    return 0;
oom:
    seterr(err, err_len, "return: out of memory");
    return -1;
}

/* Adds the entry's returned quantities (checked and reserved by returns_prepare). */
static void returns_commit(state *s, const lt_entry *e, rplan *rp)
{
    if (rp->rec == NULL) {
        returns_add(s, e->original_seq, rp->fresh, e->lines_n);
        rp->rec = &s->rrecs[s->rrecs_n - 1];
    }
    uint32_t rec = (uint32_t)(rp->rec - s->rrecs);
    if (bits_take(&s->ck_rbits, rec)) /* the checkpoint's, not encoded yet: as it is, first */
        s->ck_cap.returns(s->ck_cap.ctx, rec, rp->rec->seq, rp->rec->qty, rp->rec->n);
    for (uint32_t i = 0; i < e->lines_n; i++)
        rp->rec->qty[i] += e->lines[i].quantity;
    mark_returns(s, rec);
}

int state_returned(const state *s, uint64_t sale_seq, const int64_t **qty, uint32_t *n)
{
    const rrec *r = returns_find(s, sale_seq);
    *qty = r ? r->qty : NULL;
    *n = r ? r->n : 0;
    return r ? 0 : -1;
}

size_t state_returns_count(const state *s)
{
    return s->rrecs_n;
}

int state_foreach_dirty_returns(const state *s,
                                int (*fn)(void *ctx, uint64_t sale_seq, const int64_t *qty,
                                          uint32_t n),
                                void *ctx)
{
    /* two cache misses each, the record and its quantities: asked for ahead as the cards are */
    uint32_t n = s->dirty_returns_n;
    for (uint32_t i = 0; i < n; i++) {
        if (i + 2 * DIRTY_AHEAD < n)
            __builtin_prefetch(&s->rrecs[s->dirty_returns[i + 2 * DIRTY_AHEAD].rec]);
        if (i + DIRTY_AHEAD < n)
            __builtin_prefetch(s->rrecs[s->dirty_returns[i + DIRTY_AHEAD].rec].qty);
        const rrec *r = &s->rrecs[s->dirty_returns[i].rec];
        int rc = fn(ctx, r->seq, r->qty, r->n);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ apply (R17, R18, R30) */

typedef struct {
    int64_t from_lots;         /* the part of the debit the lots pay */
    int64_t debt, credit_rest; /* debt after, points left for a new lot */
    bool link, unlink;
} plan;

/* Checks a posting against the member (NULL when created) without changing anything. With
 * debt_ok (R18 return postings) a debit beyond the lots turns the shortfall into debt; any
 * other such debit is an inconsistent entry. Returns 0 and the plan, or -1 with err set. */
static int check_posting(const state *s, const lt_posting *p, const mrec *r, uint32_t midx,
                         bool debt_ok, plan *pl, char *err, size_t err_len)
{
    const char *id = p->member_id;
    if (p->debit < 0 || p->credit < 0) {
        seterr(err, err_len, "%s: negative debit or credit", id);
        return -1;
    }
    int64_t held = r ? lots_sum(&r->m) : 0, debt = r ? r->m.debt : 0;
    pl->from_lots = p->debit;
    if (p->debit > held) {
        if (!debt_ok) {
            seterr(err, err_len, "%s: debit %" PRId64 " exceeds the %" PRId64 " points held", id,
                   p->debit, held);
            return -1;
        }
        pl->from_lots = held;
        if (__builtin_add_overflow(debt, p->debit - held, &debt)) {
            seterr(err, err_len, "%s: debt overflows", id);
            return -1;
        }
    }
    int64_t pay = p->credit < debt ? p->credit : debt;
    pl->debt = debt - pay;
    pl->credit_rest = p->credit - pay;
    int64_t balance = held - pl->from_lots + pl->credit_rest - pl->debt;
    if (balance != p->balance_after) {
        seterr(err, err_len, "%s: balance after is %" PRId64 ", the entry says %" PRId64, id,
               balance, p->balance_after);
        return -1;
    }
    const crec *c = p->card[0] ? find_card(s, p->card) : NULL;
    if (c && (r == NULL || c->member != midx)) {
        seterr(err, err_len, "%s: card %s is linked to another member", id, p->card);
        return -1;
    }
    pl->link = p->card[0] && c == NULL;
    c = p->unlink_card[0] ? find_card(s, p->unlink_card) : NULL;
    if (p->unlink_card[0] &&
        (c == NULL || r == NULL || c->member != midx || strcmp(p->card, p->unlink_card) == 0)) {
        seterr(err, err_len, "%s: card %s to unlink is not this member's", id, p->unlink_card);
        return -1;
    }
    pl->unlink = c != NULL;
    return 0;
}

/* Reserves every allocation the posting may make. Returns 0 or -1. */
static int reserve_posting(state *s, const lt_posting *p, mrec *r, const plan *pl)
{
    if (p->create && member_reserve(s) != 0)
        return -1;
    if (r && pl->credit_rest > 0 && lots_reserve(&r->m, r->m.lots_n + 1) != 0)
        return -1;
    if (pl->link && card_reserve(s) != 0)
        return -1;
    void *dm = s->dirty_members, *dc = s->dirty_cards;
    if (grow(&dm, &s->dirty_members_cap, s->dirty_members_n + 1, sizeof(uint32_t), 256) != 0)
        return -1;
    s->dirty_members = dm;
    if (grow(&dc, &s->dirty_cards_cap, s->dirty_cards_n + 2, sizeof(state_card_change), 64) != 0)
        return -1;
    s->dirty_cards = dc;
    return 0;
}

/* Creates the member of a create posting (room reserved). Returns its number, or NIL if the
 * first lot cannot be allocated. */
static uint32_t create_member(state *s, const lt_entry *e, const lt_posting *p, const plan *pl)
{
    lt_member m;
    memset(&m, 0, sizeof(m));
    strcpy(m.id, p->member_id);
    strcpy(m.referrer, p->referrer);
    m.birth_month = p->birth_month;
    m.birth_day = p->birth_day;
    m.staff = p->staff;
    m.status = LT_MEMBER_ACTIVE;
    m.enrolled_at = e->occurred_at;
    if (pl->credit_rest > 0 && lots_reserve(&m, 1) != 0)
        return NIL;
    return member_add(s, &m);
}

/* ------------------------------------------------------------------ merge (R7) */

static bool lot_same_key(const lt_lot *a, const lt_lot *b)
{
    return a->expires_at == b->expires_at && a->earned_at == b->earned_at;
}

/* Checks a merge posting (p->merge_from folded into member tidx) without changing anything:
 * it is in a MERGE entry, both members exist, differ and are not closed, the posting carries no
 * other points or card change, no total overflows and the combined balance is p->balance_after.
 * Returns the source's number, or NIL with err set. */
static uint32_t check_merge(const state *s, const lt_entry *e, const lt_posting *p, uint32_t tidx,
                            char *err, size_t err_len)
{
    const char *id = p->member_id;
    uint32_t sidx = find_member_idx(s, p->merge_from);
    if (e->kind != LT_ENTRY_MERGE) {
        seterr(err, err_len, "%s: merge_from outside a merge entry", id);
        return NIL;
    }
    if (p->create || p->debit != 0 || p->credit != 0 || p->card[0] || p->unlink_card[0]) {
        seterr(err, err_len, "%s: a merge posting carries other changes", id);
        return NIL;
    }
    if (tidx == NIL || sidx == NIL || sidx == tidx) {
        seterr(err, err_len, "%s: cannot merge %s into it", id, p->merge_from);
        return NIL;
    }
    const lt_member *t = &member_at(s, tidx)->m, *f = &member_at(s, sidx)->m;
    if (t->status == LT_MEMBER_CLOSED || f->status == LT_MEMBER_CLOSED) {
        seterr(err, err_len, "%s: merge with a closed member (%s)", id, p->merge_from);
        return NIL;
    }
    int64_t held, debt, life, qual, balance;
    uint32_t sales;
    if (__builtin_add_overflow(lots_sum(t), lots_sum(f), &held) ||
        __builtin_add_overflow(t->debt, f->debt, &debt) ||
        __builtin_add_overflow(t->lifetime_fen, f->lifetime_fen, &life) ||
        __builtin_add_overflow(life, p->lifetime_delta_fen, &life) ||
        __builtin_add_overflow(t->qualifying, f->qualifying, &qual) ||
        __builtin_add_overflow(qual, p->qualifying_delta, &qual) ||
        __builtin_add_overflow(t->sales, f->sales, &sales) ||
        (uint64_t)t->lots_n + f->lots_n > UINT32_MAX / 2 ||
        __builtin_sub_overflow(held, debt, &balance)) {
        seterr(err, err_len, "%s: merging %s overflows", id, p->merge_from);
        return NIL;
    }
    if (balance != p->balance_after) {
        seterr(err, err_len, "%s: balance after the merge is %" PRId64 ", the entry says %" PRId64,
               id, balance, p->balance_after);
        return NIL;
    }
    return sidx;
}

/* Reserves what a merge may allocate: the target's lots and the dirty lists (both members,
 * every card of the source). Returns 0 or -1. */
static int reserve_merge(state *s, uint32_t tidx, uint32_t sidx)
{
    lt_member *t = &member_at(s, tidx)->m;
    const mrec *f = member_at(s, sidx);
    uint32_t cards = 0;
    for (uint32_t c = f->cards; c != NIL; c = s->crecs[c].next)
        cards++;
    if (lots_reserve(t, t->lots_n + f->m.lots_n) != 0)
        return -1;
    void *dm = s->dirty_members, *dc = s->dirty_cards;
    if (grow(&dm, &s->dirty_members_cap, s->dirty_members_n + 2, sizeof(uint32_t), 256) != 0)
        return -1;
    s->dirty_members = dm;
    if (grow(&dc, &s->dirty_cards_cap, s->dirty_cards_n + cards, sizeof(state_card_change), 64) !=
        0)
        return -1;
    s->dirty_cards = dc;
    return 0;
}

/* Moves src's lots into dst (capacity reserved), keeping the spend order (R17): a merge of two
 * sorted runs from the back, the target's lot first among equal keys, then lots with equal
 * keys folded into one (as lots_add() does; they spend identically). */
static void merge_lots(lt_member *dst, lt_member *src)
{
    uint32_t i = dst->lots_n, j = src->lots_n, k = i + j;
    LT_ASSERT(k <= dst->lots_cap);
    while (j > 0) {
        if (i > 0 && lot_before(&src->lots[j - 1], &dst->lots[i - 1]))
            dst->lots[--k] = dst->lots[--i];
        else
            dst->lots[--k] = src->lots[--j];
    }
    uint32_t n = dst->lots_n + src->lots_n, w = 0;
    for (uint32_t r = 0; r < n; r++) {
        if (w > 0 && lot_same_key(&dst->lots[w - 1], &dst->lots[r]))
            dst->lots[w - 1].points += dst->lots[r].points;
        else
            dst->lots[w++] = dst->lots[r];
    }
    dst->lots_n = w;
    src->lots_n = 0;
    lots_trim(src);
}

/* Relinks every card of member `from` to member `to` (the card index is keyed by card, so only
 * the records and the chains change) and marks them for the checkpoint. */
static void relink_cards(state *s, uint32_t from, uint32_t to)
{
    mrec *f = member_at(s, from), *t = member_at(s, to);
    uint32_t last = NIL;
    for (uint32_t c = f->cards; c != NIL; c = s->crecs[c].next) {
        s->crecs[c].member = to;
        mark_card(s, c);
        last = c;
    }
    if (last == NIL)
        return;
    s->crecs[last].next = t->cards;
    t->cards = f->cards;
    f->cards = NIL;
}

/* Sets the time-driven markers a posting carries (0 = unchanged; R20, R21, R24, R28). */
static void apply_markers(lt_member *m, const lt_posting *p)
{
    if (p->set_period_start_day != 0)
        m->period_start_day = p->set_period_start_day;
    if (p->set_birthday_year != 0)
        m->birthday_notified_year = p->set_birthday_year;
    if (p->set_expiring_notified != 0)
        m->expiring_notified_until = p->set_expiring_notified;
    if (p->set_dormant_notified != 0)
        m->dormant_notified_at = p->set_dormant_notified;
}

/* R7: folds p->merge_from into the posting's member and closes it. Checks and reserves first,
 * so a failing merge changes neither member. Returns 0, or -1 with err set. */
static int apply_merge(state *s, const lt_entry *e, const lt_posting *p, uint32_t tidx, char *err,
                       size_t err_len)
{
    uint32_t sidx = check_merge(s, e, p, tidx, err, err_len);
    if (sidx == NIL)
        return -1;
    if (reserve_merge(s, tidx, sidx) != 0) {
        seterr(err, err_len, "%s: out of memory", p->member_id);
        return -1;
    }
    ck_touch(s, tidx);
    ck_touch(s, sidx);
    lt_member *t = &member_at(s, tidx)->m, *f = &member_at(s, sidx)->m;
    merge_lots(t, f);
    t->debt += f->debt;
    t->lifetime_fen += f->lifetime_fen + p->lifetime_delta_fen;
    t->qualifying += f->qualifying + p->qualifying_delta;
    t->sales += f->sales;
    if (f->last_purchase_at > t->last_purchase_at)
        t->last_purchase_at = f->last_purchase_at;
    if (p->tier_after[0])
        strcpy(t->tier, p->tier_after);
    apply_markers(t, p);
    relink_cards(s, sidx, tidx);
    f->debt = f->lifetime_fen = f->qualifying = f->last_purchase_at = 0;
    f->sales = 0;
    f->status = LT_MEMBER_CLOSED;
    mark_member(s, tidx);
    mark_member(s, sidx);
    LT_ASSERT(state_balance(t) == p->balance_after && state_balance(f) == 0);
    return 0;
}

static int apply_posting(state *s, const lt_entry *e, const lt_posting *p, char *err,
                         size_t err_len)
{
    LT_ASSERT(memchr(p->member_id, 0, sizeof(p->member_id)) != NULL);
    uint32_t midx = p->member_id[0] ? find_member_idx(s, p->member_id) : NIL;
    mrec *r = midx == NIL ? NULL : member_at(s, midx);
    if (p->member_id[0] == 0 || (p->create && r) || (!p->create && !r)) {
        seterr(err, err_len, "%s: %s", p->member_id[0] ? p->member_id : "(no id)",
               p->create ? "member already exists" : "unknown member");
        return -1;
    }
    if (p->merge_from[0])
        return apply_merge(s, e, p, midx, err, err_len);
    plan pl;
    bool debt_ok = e->kind == LT_ENTRY_RETURN && strcmp(p->reason, "return") == 0;
    if (check_posting(s, p, r, midx, debt_ok, &pl, err, err_len) != 0)
        return -1;
    if (reserve_posting(s, p, r, &pl) != 0 ||
        (p->create && (midx = create_member(s, e, p, &pl)) == NIL)) {
        seterr(err, err_len, "%s: out of memory", p->member_id);
        return -1;
    }
    ck_touch(s, midx);
    lt_member *m = &member_at(s, midx)->m;
    if (pl.from_lots > 0)
        lots_debit(m, pl.from_lots);
    m->debt = pl.debt;
    if (pl.credit_rest > 0)
        lots_add(m, (lt_lot){pl.credit_rest, e->occurred_at, p->credit_expires_at});
    lots_trim(m);
    m->lifetime_fen += p->lifetime_delta_fen;
    m->qualifying += p->qualifying_delta;
    if (p->tier_after[0])
        strcpy(m->tier, p->tier_after);
    if (p->count_sale) {
        m->sales++;
        m->last_purchase_at = e->occurred_at;
    }
    apply_markers(m, p);
    if (pl.unlink)
        mark_card_unlinked(s, card_unlink(s, p->unlink_card));
    if (pl.link)
        mark_card(s, card_link(s, p->card, midx));
    mark_member(s, midx);
    LT_ASSERT(state_balance(m) == p->balance_after);
    return 0;
}

int state_apply(state *s, const lt_entry *e, char *err, size_t err_len)
{
    LT_ASSERT(e->postings_n <= LT_POSTINGS_MAX);
    rplan rp = {NULL, NULL};
    if (e->kind == LT_ENTRY_RETURN && returns_prepare(s, e, &rp, err, err_len) != 0)
        return -1;
    for (uint32_t i = 0; i < e->postings_n; i++) {
        if (apply_posting(s, e, &e->postings[i], err, err_len) != 0) {
            free(rp.fresh);
            return -1;
        }
    }
    if (e->kind == LT_ENTRY_RETURN)
        returns_commit(s, e, &rp);
    /* an event (not the daemon's own entry) tells where its member shops: sweeps answer that
     * member's calendar questions in this store's offset (R3) */
    if (e->postings_n > 0 && (e->id.node_id != 0 || e->id.event_id != 0)) {
        mrec *r = find_member(s, e->postings[0].member_id);
        if (r != NULL) {
            r->m.utc_offset_min = (int16_t)e->utc_offset_min;
            r->m.offset_known = 1;
        }
    }
    s->seq = e->seq;
    return 0;
}

/* ------------------------------------------------------------------ records and hash */

/* Record layout, version 3 (fixed width, integers little-endian):
 *   u8 version, u8 len + id, u8 len + tier, u8 len + referrer,
 *   u8 birth_month, u8 birth_day, u8 staff, u8 status, u32 sales,
 *   i64 enrolled_at, debt, qualifying, lifetime_fen, last_purchase_at,
 *   i32 period_start_day, i32 birthday_notified_year,
 *   i64 expiring_notified_until, i64 dormant_notified_at,
 *   u8 offset_known, i16 utc_offset_min,
 *   u32 lots_n, lots_n * (i64 points, i64 earned_at, i64 expires_at)
 * Version 2 is the same without the offset (read as unknown); version 1 also without the
 * four markers (read as 0). The state hash is defined over version 3, whatever the ledger
 * stores, so hashes stay comparable across versions.
 *
 * Version 4, what checkpoints write: the same fields in variable-length integers (LEB128;
 * "s" marks a zigzag-coded signed one), lots as differences from the lot before:
 *   u8 version, u8 len + id, u8 len + tier, u8 len + referrer,
 *   u8 birth_month, u8 birth_day, u8 staff, u8 status, u8 offset_known,
 *   sales, s enrolled_at, debt, s qualifying, s lifetime_fen, s last_purchase_at,
 *   s period_start_day, s birthday_notified_year, s expiring_notified_until,
 *   s dormant_notified_at, s utc_offset_min, lots_n,
 *   lots_n * (points << 1 | never_expires, [s expires_at - the last expires_at before, if it
 *             expires], s earned_at - the earned_at before)
 * Lots are kept in expiry order and most share an expiry date, so a lot is about 5 bytes
 * instead of 24 and a member record about half its version 3 size: checkpoints write and
 * rewrite half the bytes (docs/performance.md). */

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++, v >>= 8)
        *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_i64(uint8_t *p, int64_t sv)
{
    uint64_t v = (uint64_t)sv;
    for (int i = 0; i < 8; i++, v >>= 8)
        *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_str(uint8_t *p, const char *str)
{
    size_t n = strlen(str);
    *p++ = (uint8_t)n;
    memcpy(p, str, n);
    return p + n;
}

static size_t member_v3_bytes(const lt_member *m)
{
    return MEMBER_REC_FIXED + strlen(m->id) + strlen(m->tier) + strlen(m->referrer) +
           (size_t)m->lots_n * LOT_REC_BYTES;
}

size_t state_member_encode_v3(const lt_member *m, uint8_t *buf, size_t cap)
{
    size_t need = member_v3_bytes(m);
    if (need > cap)
        return 0;
    uint8_t *p = buf;
    *p++ = MEMBER_REC_VERSION_V3;
    p = put_str(p, m->id);
    p = put_str(p, m->tier);
    p = put_str(p, m->referrer);
    *p++ = m->birth_month;
    *p++ = m->birth_day;
    *p++ = m->staff;
    *p++ = m->status;
    p = put_u32(p, m->sales);
    p = put_i64(p, m->enrolled_at);
    p = put_i64(p, m->debt);
    p = put_i64(p, m->qualifying);
    p = put_i64(p, m->lifetime_fen);
    p = put_i64(p, m->last_purchase_at);
    p = put_u32(p, (uint32_t)m->period_start_day);
    p = put_u32(p, (uint32_t)m->birthday_notified_year);
    p = put_i64(p, m->expiring_notified_until);
    p = put_i64(p, m->dormant_notified_at);
    *p++ = m->offset_known;
    *p++ = (uint8_t)((uint16_t)m->utc_offset_min & 0xff);
    *p++ = (uint8_t)((uint16_t)m->utc_offset_min >> 8);
    p = put_u32(p, m->lots_n);
    for (uint32_t i = 0; i < m->lots_n; i++) {
        p = put_i64(p, m->lots[i].points);
        p = put_i64(p, m->lots[i].earned_at);
        p = put_i64(p, m->lots[i].expires_at);
    }
    LT_ASSERT((size_t)(p - buf) == need);
    return need;
}

/* Version 4's writer: with p == NULL it only counts, so that one function both sizes and
 * writes a record. */
typedef struct {
    uint8_t *p;
    size_t n;
} vwriter;

static void vw_byte(vwriter *w, uint8_t b)
{
    if (w->p != NULL)
        w->p[w->n] = b;
    w->n++;
}

static void vw_uvar(vwriter *w, uint64_t v)
{
    while (v >= 0x80) {
        vw_byte(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    vw_byte(w, (uint8_t)v);
}

/* zigzag: small magnitudes of either sign in few bytes */
static void vw_svar(vwriter *w, uint64_t v) /* v: an int64 as two's complement */
{
    vw_uvar(w, (v << 1) ^ (0 - (v >> 63)));
}

static void vw_str(vwriter *w, const char *str)
{
    size_t n = strlen(str);
    vw_byte(w, (uint8_t)n);
    for (size_t i = 0; i < n; i++)
        vw_byte(w, (uint8_t)str[i]);
}

static void member_v4(vwriter *w, const lt_member *m)
{
    vw_byte(w, MEMBER_REC_VERSION);
    vw_str(w, m->id);
    vw_str(w, m->tier);
    vw_str(w, m->referrer);
    vw_byte(w, m->birth_month);
    vw_byte(w, m->birth_day);
    vw_byte(w, m->staff);
    vw_byte(w, m->status);
    vw_byte(w, m->offset_known);
    vw_uvar(w, m->sales);
    vw_svar(w, (uint64_t)m->enrolled_at);
    vw_uvar(w, (uint64_t)m->debt);
    vw_svar(w, (uint64_t)m->qualifying);
    vw_svar(w, (uint64_t)m->lifetime_fen);
    vw_svar(w, (uint64_t)m->last_purchase_at);
    vw_svar(w, (uint64_t)(int64_t)m->period_start_day);
    vw_svar(w, (uint64_t)(int64_t)m->birthday_notified_year);
    vw_svar(w, (uint64_t)m->expiring_notified_until);
    vw_svar(w, (uint64_t)m->dormant_notified_at);
    vw_svar(w, (uint64_t)(int64_t)m->utc_offset_min);
    vw_uvar(w, m->lots_n);
    uint64_t exp = 0, earned = 0; /* the lot before's (differences wrap: no overflow) */
    for (uint32_t i = 0; i < m->lots_n; i++) {
        const lt_lot *l = &m->lots[i];
        vw_uvar(w, (uint64_t)l->points << 1 | (l->expires_at == 0));
        if (l->expires_at != 0) {
            vw_svar(w, (uint64_t)l->expires_at - exp);
            exp = (uint64_t)l->expires_at;
        }
        vw_svar(w, (uint64_t)l->earned_at - earned);
        earned = (uint64_t)l->earned_at;
    }
}

/* The most member_v4() can write for m: its strings, and every number at 10 bytes (12 in the
 * header, 3 per lot). */
static size_t member_v4_bound(const lt_member *m)
{
    return 1 + 3 + strlen(m->id) + strlen(m->tier) + strlen(m->referrer) + 5 + 12 * 10 +
           (size_t)m->lots_n * 3 * 10;
}

size_t state_member_encode(const lt_member *m, uint8_t *buf, size_t cap)
{
    if (cap < member_v4_bound(m)) { /* maybe too small: count first (callers rarely need it) */
        vwriter count = {NULL, 0};
        member_v4(&count, m);
        if (count.n > cap)
            return 0;
    }
    vwriter w = {buf, 0};
    member_v4(&w, m);
    LT_ASSERT(w.n <= cap);
    return w.n;
}

typedef struct {
    const uint8_t *p, *end;
    bool bad;
} reader;

static uint64_t get_le(reader *r, int bytes)
{
    if (r->end - r->p < bytes) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | r->p[i];
    r->p += bytes;
    return v;
}

/* LEB128, at most 10 bytes, nothing beyond 64 bits */
static uint64_t get_uvar(reader *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p == r->end) {
            r->bad = true;
            return 0;
        }
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1) {
            r->bad = true;
            return 0;
        }
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->bad = true;
    return 0;
}

static uint64_t get_svar(reader *r) /* an int64 as two's complement */
{
    uint64_t z = get_uvar(r);
    return (z >> 1) ^ (0 - (z & 1));
}

static void get_str(reader *r, char *dst, size_t cap)
{
    size_t n = (size_t)get_le(r, 1);
    if (r->bad || n >= cap || (size_t)(r->end - r->p) < n || memchr(r->p, 0, n)) {
        r->bad = true;
        dst[0] = '\0';
        return;
    }
    memcpy(dst, r->p, n);
    dst[n] = '\0';
    r->p += n;
}

/* Version 4's fields after the strings. Returns lots_n (the lots follow at r->p). */
static uint64_t member_v4_fields(reader *r, lt_member *m)
{
    m->birth_month = (uint8_t)get_le(r, 1);
    m->birth_day = (uint8_t)get_le(r, 1);
    m->staff = (uint8_t)get_le(r, 1);
    m->status = (uint8_t)get_le(r, 1);
    m->offset_known = (uint8_t)get_le(r, 1);
    uint64_t sales = get_uvar(r);
    m->sales = (uint32_t)sales;
    m->enrolled_at = (int64_t)get_svar(r);
    uint64_t debt = get_uvar(r);
    m->debt = (int64_t)debt;
    m->qualifying = (int64_t)get_svar(r);
    m->lifetime_fen = (int64_t)get_svar(r);
    m->last_purchase_at = (int64_t)get_svar(r);
    int64_t period = (int64_t)get_svar(r), year = (int64_t)get_svar(r);
    m->period_start_day = (int32_t)period;
    m->birthday_notified_year = (int32_t)year;
    m->expiring_notified_until = (int64_t)get_svar(r);
    m->dormant_notified_at = (int64_t)get_svar(r);
    int64_t off = (int64_t)get_svar(r);
    m->utc_offset_min = (int16_t)off;
    if (sales > UINT32_MAX || debt > INT64_MAX || period != m->period_start_day ||
        year != m->birthday_notified_year || off != m->utc_offset_min)
        r->bad = true;
    return get_uvar(r);
}

/* Decodes a record into *m, allocating m->lots. Returns 0, or -1 if malformed. */
static int member_decode(const uint8_t *buf, size_t len, lt_member *m)
{
    memset(m, 0, sizeof(*m));
    reader r = {buf, buf + len, false};
    uint64_t version = get_le(&r, 1);
    if (version < MEMBER_REC_VERSION_V1 || version > MEMBER_REC_VERSION)
        return -1;
    bool v4 = version == MEMBER_REC_VERSION;
    get_str(&r, m->id, sizeof(m->id));
    get_str(&r, m->tier, sizeof(m->tier));
    get_str(&r, m->referrer, sizeof(m->referrer));
    uint64_t lots_n;
    if (v4) {
        lots_n = member_v4_fields(&r, m);
    } else {
        m->birth_month = (uint8_t)get_le(&r, 1);
        m->birth_day = (uint8_t)get_le(&r, 1);
        m->staff = (uint8_t)get_le(&r, 1);
        m->status = (uint8_t)get_le(&r, 1);
        m->sales = (uint32_t)get_le(&r, 4);
        m->enrolled_at = (int64_t)get_le(&r, 8);
        m->debt = (int64_t)get_le(&r, 8);
        m->qualifying = (int64_t)get_le(&r, 8);
        m->lifetime_fen = (int64_t)get_le(&r, 8);
        m->last_purchase_at = (int64_t)get_le(&r, 8);
        if (version >= MEMBER_REC_VERSION_V2) {
            m->period_start_day = (int32_t)(uint32_t)get_le(&r, 4);
            m->birthday_notified_year = (int32_t)(uint32_t)get_le(&r, 4);
            m->expiring_notified_until = (int64_t)get_le(&r, 8);
            m->dormant_notified_at = (int64_t)get_le(&r, 8);
        }
        if (version >= MEMBER_REC_VERSION_V3) {
            m->offset_known = (uint8_t)get_le(&r, 1);
            m->utc_offset_min = (int16_t)(uint16_t)get_le(&r, 2);
        }
        lots_n = get_le(&r, 4);
    }
    size_t left = (size_t)(r.end - r.p);
    /* a version 4 lot takes at least 2 bytes: the count is checked before allocating */
    if (r.bad || m->id[0] == 0 || m->status > LT_MEMBER_CLOSED || m->staff > 1 || m->debt < 0 ||
        m->birth_month > 12 || m->birth_day > 31 || m->offset_known > 1 ||
        m->utc_offset_min < -840 || m->utc_offset_min > 840 ||
        (v4 ? lots_n > left / 2 : left != lots_n * LOT_REC_BYTES))
        return -1;
    if (lots_n && lots_reserve(m, (uint32_t)lots_n) != 0)
        return -1;
    uint64_t exp = 0, earned = 0;
    for (uint32_t i = 0; i < lots_n; i++) {
        lt_lot *lot = &m->lots[i];
        if (v4) {
            uint64_t code = get_uvar(&r);
            lot->points = (int64_t)(code >> 1);
            if (!(code & 1))
                exp += get_svar(&r);
            lot->expires_at = (code & 1) ? 0 : (int64_t)exp;
            earned += get_svar(&r);
            lot->earned_at = (int64_t)earned;
            if (!(code & 1) && exp == 0)
                r.bad = true; /* an expiry of 0 would read back as never */
        } else {
            lot->points = (int64_t)get_le(&r, 8);
            lot->earned_at = (int64_t)get_le(&r, 8);
            lot->expires_at = (int64_t)get_le(&r, 8);
        }
        m->lots_n++;
        if (r.bad || lot->points <= 0 || (i > 0 && lot_before(lot, lot - 1))) {
            free(m->lots);
            return -1;
        }
    }
    if (r.p != r.end) { /* version 4: bytes after the last lot */
        free(m->lots);
        return -1;
    }
    return 0;
}

int state_load_member(state *s, const uint8_t *buf, size_t len)
{
    lt_member m;
    if (member_decode(buf, len, &m) != 0)
        return -1;
    mrec *r = find_member(s, m.id);
    if (r) {
        free(r->m.lots);
        r->m = m;
        return 0;
    }
    if (member_reserve(s) != 0) {
        free(m.lots);
        return -1;
    }
    member_add(s, &m);
    return 0;
}

int state_load_card(state *s, const char *card, const char *member_id)
{
    size_t n = strlen(card);
    if (n == 0 || n >= LT_ID_MAX)
        return -1;
    if (member_id == NULL) { /* unlinked since an earlier record (ckstore.h) */
        const crec *c = find_card(s, card);
        if (c != NULL && c->member != NIL)
            card_unlink(s, card);
        return 0;
    }
    uint32_t midx = find_member_idx(s, member_id);
    if (midx == NIL)
        return -1;
    crec *c = find_card(s, card);
    if (c && c->member == midx)
        return 0;
    if (c)
        card_unlink(s, card);
    if (card_reserve(s) != 0)
        return -1;
    card_link(s, card, midx);
    return 0;
}

/* Returned-quantity record, version 1, little-endian: u8 version, u32 n, n * i64 quantity. */
size_t state_returns_encode(const int64_t *qty, uint32_t n, uint8_t *buf, size_t cap)
{
    size_t need = 5 + (size_t)n * 8;
    LT_ASSERT(n <= LT_SALE_LINES_MAX);
    if (need > cap)
        return 0;
    uint8_t *p = buf;
    *p++ = RETURNS_REC_VERSION;
    p = put_u32(p, n);
    for (uint32_t i = 0; i < n; i++)
        p = put_i64(p, qty[i]);
    LT_ASSERT((size_t)(p - buf) == need);
    return need;
}

int state_load_returns(state *s, uint64_t sale_seq, const uint8_t *buf, size_t len)
{
    reader r = {buf, buf + len, false};
    if (sale_seq == 0 || get_le(&r, 1) != RETURNS_REC_VERSION)
        return -1;
    uint32_t n = (uint32_t)get_le(&r, 4);
    if (r.bad || n == 0 || n > LT_SALE_LINES_MAX || (size_t)(r.end - r.p) != (size_t)n * 8)
        return -1;
    int64_t *qty = malloc((size_t)n * sizeof(*qty));
    if (qty == NULL)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        qty[i] = (int64_t)get_le(&r, 8);
        if (qty[i] < 0) {
            free(qty);
            return -1;
        }
    }
    rrec *old = returns_find(s, sale_seq);
    if (old) {
        free(old->qty);
        old->qty = qty;
        old->n = n;
        return 0;
    }
    if (returns_reserve(s) != 0) {
        free(qty);
        return -1;
    }
    returns_add(s, sale_seq, qty, n);
    return 0;
}

/* Adds each member's, card link's and returned-quantity record's hash: a sum does not depend
 * on the order. */
uint64_t state_hash(const state *s)
{
    uint8_t stack_buf[4096], *buf = stack_buf;
    size_t cap = sizeof(stack_buf);
    uint64_t h = 0;
    for (uint32_t i = 0; i < s->members_n; i++) {
        const lt_member *m = &member_at(s, i)->m;
        size_t need = member_v3_bytes(m);
        if (need > cap) {
            if (buf != stack_buf)
                free(buf);
            buf = malloc(need);
            LT_ASSERT(buf != NULL); /* a hash cannot fail: without memory there is no answer */
            cap = need;
        }
        size_t len = state_member_encode_v3(m, buf, cap);
        h += XXH3_64bits_withSeed(buf, len, HASH_SEED_MEMBER);
    }
    if (buf != stack_buf)
        free(buf);
    for (uint32_t i = 0; i < s->crecs_n; i++) {
        const crec *c = &s->crecs[i];
        if (c->member == NIL)
            continue;
        uint8_t pair[2 * LT_ID_MAX];
        size_t a = strlen(c->card), b = strlen(member_at(s, c->member)->m.id);
        memcpy(pair, c->card, a + 1);
        memcpy(pair + a + 1, member_at(s, c->member)->m.id, b);
        h += XXH3_64bits_withSeed(pair, a + 1 + b, HASH_SEED_CARD);
    }
    for (uint32_t i = 0; i < s->rrecs_n; i++) {
        uint8_t rec[8 + STATE_RETURNS_BYTES_MAX];
        put_i64(rec, (int64_t)s->rrecs[i].seq);
        size_t len = state_returns_encode(s->rrecs[i].qty, s->rrecs[i].n, rec + 8, sizeof(rec) - 8);
        h += XXH3_64bits_withSeed(rec, 8 + len, HASH_SEED_RETURNS);
    }
    return h;
}
