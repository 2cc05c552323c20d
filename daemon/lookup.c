/* lookup.c: the daemon's R18 hook: the original sale of a return, from the ledger (or a pending
 * batch) and the state's returned quantities, behind rules_view.sale. */
#include "lookup.h"

#include <string.h>

#include "entry.h"
#include "log.h"

int daemon_sale_from_bytes(state *s, const uint8_t *bytes, size_t len, uint64_t seq,
                           lt_entry *scratch, const lt_entry **entry, const int64_t **returned)
{
    uint32_t n;
    if (entry_decode(bytes, len, scratch) != 0 || scratch->kind != LT_ENTRY_SALE)
        return -1;
    if (state_returned(s, seq, returned, &n) != 0)
        *returned = NULL;
    else if (n != scratch->lines_n)
        return -1; /* a record that does not fit the sale: refuse rather than misread it */
    *entry = scratch;
    return 0;
}

int daemon_sale_lookup(ledger *l, state *s, lt_event_id id, lt_entry *scratch,
                       const lt_entry **entry, const int64_t **returned, uint64_t *seq)
{
    static uint8_t buf[ENTRY_BYTES_MAX]; /* loop thread only */
    size_t len;
    uint64_t at;

    LT_ASSERT(l != NULL && s != NULL && scratch != NULL);
    int rc = ledger_find_event(l, id, &at);
    if (rc == LEDGER_ERR_NOT_FOUND)
        return -1;
    if (rc == 0)
        rc = ledger_get(l, at, buf, sizeof buf, &len);
    if (rc != 0) {
        lt_log(LT_ERROR, "original sale unreadable", "node=%llu id=%llu error=\"%s\"",
               (unsigned long long)id.node_id, (unsigned long long)id.event_id,
               ledger_strerror(rc));
        return -2;
    }
    if (daemon_sale_from_bytes(s, buf, len, at, scratch, entry, returned) != 0)
        return -1;
    *seq = at;
    return 0;
}

static const lt_member *view_member(void *ctx, const char *member_id)
{
    return state_member(((daemon_lookup *)ctx)->state, member_id);
}

static const char *view_card_owner(void *ctx, const char *card)
{
    return state_card_owner(((daemon_lookup *)ctx)->state, card);
}

static int view_sale(void *ctx, lt_event_id id, const lt_entry **entry, const int64_t **returned,
                     uint64_t *seq)
{
    daemon_lookup *lk = ctx;
    const uint8_t *bytes;
    size_t len;

    if (lk->pending && lk->pending(lk->pending_ctx, id, &bytes, &len, seq) == 0)
        return daemon_sale_from_bytes(lk->state, bytes, len, *seq, &lk->scratch, entry, returned);
    return daemon_sale_lookup(lk->ledger, lk->state, id, &lk->scratch, entry, returned, seq);
}

void daemon_lookup_view(daemon_lookup *lk, ledger *l, state *s, rules_view *v)
{
    lk->ledger = l;
    lk->state = s;
    lk->pending = NULL;
    lk->pending_ctx = NULL;
    v->ctx = lk;
    v->member = view_member;
    v->card_owner = view_card_owner;
    v->sale = view_sale;
}
