/* state.h: member state as a projection of the ledger (R30).
 *
 * The state holds every member, every card link and what rating needs to look up, in memory.
 * It changes only through state_apply(), which applies a ledger entry's postings in order and
 * never re-rates: replaying the same entries rebuilds exactly the same state, whatever the rules
 * say now. state_hash() is independent of insertion order, so a replayed state can be proven
 * equal to the live one. Dirty tracking lets the daemon checkpoint only what changed.
 */
#ifndef LT_STATE_H
#define LT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "rules.h"

typedef struct state state;

/* Creates an empty state. Returns 0, or -1 on allocation failure. Caller owns *out. */
int state_new(state **out);
/* Frees everything and sets *s to NULL. Safe on NULL. */
void state_destroy(state **s);

/* Lookups. Returned pointers are valid until the next state_apply() or state_load_*(). */
const lt_member *state_member(const state *s, const char *member_id);
const char *state_card_owner(const state *s, const char *card);
/* A hint, no effect on the state: starts loading what a lookup of member_id will touch, so
 * that the lookup finds it in the cache. With 1,000,000 members the index slot, the member
 * record and its lots are each a cache miss, one after the other, and each stage reads only
 * what the one before loaded. So a caller about to work on event i calls it for events i + 1
 * to i + STATE_PREFETCH_AHEAD with `ahead` their distance: the index slot of the farthest, the
 * member record of the one after next, the lots of the next one (other distances do nothing).
 * member_id (len bytes, no NUL needed) may be NULL or anything a till sent. */
#define STATE_PREFETCH_AHEAD 3
void state_prefetch(const state *s, const char *member_id, size_t len, unsigned ahead);
/* Fills a rules_view over this state. Its `sale` lookup (R18) is left NULL: the state does not
 * keep ledger entries; the daemon supplies one (daemon/lookup.h). */
void state_view(state *s, rules_view *v);

/* Balance of a member: sum of lots minus debt (R18). */
int64_t state_balance(const lt_member *m);

/* Applies an entry's postings in order. Returns 0, or -1 if the entry is inconsistent with the
 * state (a posting's balance_after differs from the result, or a debit exceeds what the member
 * holds); err then says why. The state is unchanged on error only for the first failing
 * posting's member. Records e->seq as the last applied sequence.
 * R18: in a return entry (LT_ENTRY_RETURN), a posting with reason "return" may debit more than
 * the lots hold: the shortfall becomes debt. The entry's lines (index = the original sale's line,
 * quantity = units returned) are added to the returned quantities of sale e->original_seq.
 * R7: in a merge entry (LT_ENTRY_MERGE), a posting with merge_from moves that member's lots
 * (spend order kept), debt, spend totals, sales and cards to the posting's member and closes it,
 * or changes neither member if anything does not fit (docs/ledger.md).
 * R20, R21, R24, R28: a posting's non-zero set_* fields set the member's time-driven markers
 * (lt_member.period_start_day ...), so what rules_due() wrote is not due again. */
int state_apply(state *s, const lt_entry *e, char *err, size_t err_len);

/* Last sequence applied (0 for a new state). */
uint64_t state_seq(const state *s);
/* Sets the last applied sequence (after loading a checkpoint). */
void state_set_seq(state *s, uint64_t seq);
/* Number of members. */
size_t state_members(const state *s);
/* Number of linked cards. */
size_t state_cards(const state *s);
/* Order-independent 64-bit hash of every member, card link and returned-quantity record. */
uint64_t state_hash(const state *s);

/* Calls fn for every member (any order); stops early and returns fn's value if non-zero. */
int state_foreach(const state *s, int (*fn)(void *ctx, const lt_member *m), void *ctx);
/* A cursor over the members for work done in steps (the daemon's sweeps, R20): returns the
 * member at position *pos and advances *pos, or NULL once past the last member. Start with
 * *pos = 0. Members are never removed and new ones come last, so a pass that applies entries
 * between steps visits every member that existed when it started exactly once (and those
 * created meanwhile). The pointer is valid until the next state_apply() or state_load_*(). */
const lt_member *state_member_at(const state *s, size_t *pos);
/* Calls fn for every card link (card -> member, active cards only). */
int state_foreach_card(const state *s,
                       int (*fn)(void *ctx, const char *card, const char *member_id), void *ctx);
/* Cards linked to one member: fills up to max pointers, returns how many there are. */
size_t state_member_cards(const state *s, const char *member_id, const char **cards, size_t max);

/* ---- checkpoints: dirty tracking and (de)serialisation ---- */

/* Calls fn for every member and card changed since the last state_clear_dirty(). For a card
 * that was unlinked, member_id is NULL. */
int state_foreach_dirty(const state *s, int (*member_fn)(void *ctx, const lt_member *m),
                        int (*card_fn)(void *ctx, const char *card, const char *member_id),
                        void *ctx);
void state_clear_dirty(state *s);

/* Marks every member, active card link and returned-quantity record changed, so that the next
 * checkpoint holds all of them (a full one, into a fresh log: ckstore.h). The members are listed
 * by number without touching their records. Returns 0, or -1 out of memory (then nothing is
 * marked, none lost). */
int state_mark_all_dirty(state *s);

/* How many members changed since the last state_clear_dirty() or state_ckpt_begin(). */
size_t state_dirty_members(const state *s);

/* What state_ckpt_begin() hands over and calls back, below. */
#define STATE_NO_MEMBER UINT32_MAX
typedef struct {
    char card[LT_ID_MAX];
    uint32_t owner; /* member number as of the card's last change; STATE_NO_MEMBER: unlinked */
    uint32_t rec;   /* the state's own: the card's record while it is linked */
} state_card_change;
typedef struct {
    uint64_t seq; /* the sale's ledger sequence */
    uint32_t rec; /* its record: state_ckpt_take_returns() */
    uint32_t unused;
} state_returns_change;
typedef struct {
    void (*member)(void *ctx, uint32_t number, const lt_member *m);
    void (*returns)(void *ctx, uint32_t rec, uint64_t sale_seq, const int64_t *qty, uint32_t n);
    void *ctx;
} state_ck_capture;
typedef struct {
    const uint32_t *members;
    uint32_t members_n;
    const state_card_change *cards;
    uint32_t cards_n;
    state_returns_change *returns; /* the caller may reorder it (a sort) */
    uint32_t returns_n;
} state_ckpt_list;

/* A checkpoint taken copy-on-write, so that starting one costs no encoding pause: everything
 * changed since the last checkpoint is handed over (*out, valid until the next
 * state_ckpt_begin()) and the dirty lists start empty.
 * - Members: a list of member numbers, each marked. Before state_apply() changes a marked
 *   member it calls cap->member(ctx, number, member) with the member as it still is (as of the
 *   checkpoint's start) and unmarks it. The caller encodes the others when it gets to them:
 *   state_ckpt_take() returns the member (unchanged since the start) and unmarks it, or NULL
 *   if it was captured.
 * - Cards: each with its link as of the start (the list keeps a card's link as of its last
 *   change), so nothing is captured. A card unlinked and linked again may be listed twice: the
 *   later entry is the link.
 * - Returned quantities (R18): a list of records by sale seq, each marked, taken as members are:
 *   cap->returns() before a return changes a marked one, state_ckpt_take_returns() for the
 *   others.
 * A checkpoint begun while another one still had marked records ends that one (they count as
 * done). Returns 0, or -1 out of memory (nothing handed over, nothing lost). */
int state_ckpt_begin(state *s, const state_ck_capture *cap, state_ckpt_list *out);
/* The member id of member number idx, without touching the record (no cache miss). The id's
 * bytes never change and the record never moves, so another thread may read them through the
 * returned pointer (a sort), though not call this while the state grows. */
const char *state_ckpt_member_id(const state *s, uint32_t idx);
const lt_member *state_ckpt_take(state *s, uint32_t idx);
/* Returned quantities record rec of the checkpoint's list, as of its start: true and *qty, *n
 * if it was not captured (it is then unmarked), false if it was. */
bool state_ckpt_take_returns(state *s, uint32_t rec, const int64_t **qty, uint32_t *n);
/* Where the member records are, copied (a pointer per 1,024 members) so that another thread can
 * find member ids while this one goes on changing and growing the state: the members that exist
 * at the copy, through state_ids_member_id() (the same pointer as state_ckpt_member_id()).
 * state_ids_take() reuses v's buffer; returns 0, or -1 out of memory (v unchanged). */
typedef struct {
    void **chunks;
    uint32_t chunks_n, chunks_cap;
    uint32_t members_n;
} state_ids;
int state_ids_take(const state *s, state_ids *v);
const char *state_ids_member_id(const state_ids *v, uint32_t idx);
void state_ids_free(state_ids *v);

/* Serialises a member into buf (a compact, versioned binary record: version 4, variable-length
 * integers). Returns the length, or 0 if cap is too small. */
size_t state_member_encode(const lt_member *m, uint8_t *buf, size_t cap);
/* The same member in the fixed-width version 3 layout: what state_hash() hashes (so that a hash
 * does not depend on the stored version) and what earlier versions wrote. Same contract. */
size_t state_member_encode_v3(const lt_member *m, uint8_t *buf, size_t cap);
/* Loads one serialised member into the state (replacing any with the same id). Returns 0, or
 * -1 if the record is malformed. Does not mark it dirty. */
int state_load_member(state *s, const uint8_t *buf, size_t len);
/* Loads one card link (member_id NULL: the card is unlinked, if it was linked). Returns 0 or
 * -1. Does not mark it dirty. */
int state_load_card(state *s, const char *card, const char *member_id);

/* ---- R18: cumulative returned quantities per original sale ----
 * Kept only for sales that had a return (one record: 8 bytes per line of the sale), rebuilt by
 * replaying return entries (R30) and checkpointed like members. state_clear_dirty() clears these
 * dirty records too: call state_foreach_dirty_returns() before it. */

/* Largest record state_returns_encode() writes. */
#define STATE_RETURNS_BYTES_MAX (5 + 8 * LT_SALE_LINES_MAX)

/* The quantities returned so far of each line of the sale at ledger sequence sale_seq. Returns 0
 * with *qty (n = the sale's lines; valid until the next state_apply() or state_load_*()), or -1
 * if nothing of that sale was returned yet (*qty NULL, *n 0). */
int state_returned(const state *s, uint64_t sale_seq, const int64_t **qty, uint32_t *n);
/* Calls fn for every returned-quantity record changed since the last state_clear_dirty(); stops
 * early and returns fn's value if non-zero. */
int state_foreach_dirty_returns(const state *s,
                                int (*fn)(void *ctx, uint64_t sale_seq, const int64_t *qty,
                                          uint32_t n),
                                void *ctx);
/* Serialises a record (u8 version, u32 n, n x i64, little-endian). Returns the length, or 0 if
 * cap is too small (STATE_RETURNS_BYTES_MAX always suffices). */
size_t state_returns_encode(const int64_t *qty, uint32_t n, uint8_t *buf, size_t cap);
/* Loads one serialised record for sale_seq (replacing any). Returns 0, or -1 if malformed or
 * out of memory. Does not mark it dirty. */
int state_load_returns(state *s, uint64_t sale_seq, const uint8_t *buf, size_t len);
/* Number of sales with returned-quantity records. */
size_t state_returns_count(const state *s);

#endif
