/* lookup.h: the daemon's R18 hook: finds a return's original sale in the ledger, with the
 * quantities already returned from the state, for rules_view.sale.
 *
 * Rating is pure (rules.h); the daemon supplies the lookup through the view. The state does not
 * keep ledger entries, so the sale is read from LMDB (ledger_find_event + ledger_get) and
 * decoded into a caller-owned scratch entry, which must not be the entry being rated.
 */
#ifndef LT_DAEMON_LOOKUP_H
#define LT_DAEMON_LOOKUP_H

#include <stddef.h>
#include <stdint.h>

#include "ledger.h"
#include "model.h"
#include "rules.h"
#include "state.h"

/* Finds the committed sale with event id `id`: decodes it into *scratch and returns 0 with
 * *entry = scratch, *returned = its cumulative returned quantities (state_returned(), NULL when
 * none yet; valid until the state changes) and *seq = its ledger sequence. Returns -1 if the id
 * is not in the ledger or is not a sale (rating answers UNKNOWN_SALE), -2 if the ledger cannot
 * be read (logged; rating answers INTERNAL_ERROR). An original still in an uncommitted batch is
 * not in LMDB yet: see daemon_lookup.pending; a committed one is found by ledger_find_event()
 * whether or not the dedup index has it yet. Loop thread only (one static read buffer). */
int daemon_sale_lookup(ledger *l, state *s, lt_event_id id, lt_entry *scratch,
                       const lt_entry **entry, const int64_t **returned, uint64_t *seq);

/* Like daemon_sale_lookup(), from an entry's encoded bytes at sequence seq (e.g. one still in
 * an uncommitted batch). Returns 0 or -1 (does not decode, or not a sale). */
int daemon_sale_from_bytes(state *s, const uint8_t *bytes, size_t len, uint64_t seq,
                           lt_entry *scratch, const lt_entry **entry, const int64_t **returned);

/* The view's context: state lookups plus the sale lookup. Embed it in the daemon (the scratch
 * entry is about 13 KiB) and keep it alive as long as the view. */
typedef struct {
    ledger *ledger;
    state *state;
    /* Optional: finds an event that is accepted but not yet committed. Returns 0 with the
     * encoded entry's bytes (valid until the next call) and its seq, or -1. Tried first. */
    int (*pending)(void *ctx, lt_event_id id, const uint8_t **bytes, size_t *len, uint64_t *seq);
    void *pending_ctx;
    lt_entry scratch;
} daemon_lookup;

/* Fills *v with member, card_owner (over s, as state_view() does) and sale (pending, then the
 * ledger), all with ctx = lk. lk->pending starts NULL. */
void daemon_lookup_view(daemon_lookup *lk, ledger *l, state *s, rules_view *v);

#endif
