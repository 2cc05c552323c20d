/* replay.h: the ledger's entries applied to a member state, read and applied by two threads
 * (ledger/replay.c). Used by the daemon's start-up recovery and by `loyaltyctl replay/verify`. */
#ifndef LT_REPLAY_H
#define LT_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "ledger.h"
#include "state.h"

/* Called by the applying thread every few thousand entries (may be NULL); the result has the
 * final count. */
typedef void (*state_replay_progress)(void *ctx, uint64_t applied);

typedef struct {
    uint64_t applied;  /* entries applied by this call */
    uint64_t last_seq; /* the last one's sequence, 0 if none */
} state_replay_result;

/* Applies the entries from..to (to = 0: to the end; from >= 1) to s, in order: this thread reads
 * and decodes them (entry_decode_state), a second one applies them (state_apply). Returns 0, or
 * -1 with the failing sequence and cause in err (an entry that does not decode, whose key and
 * seq differ, or that does not apply; a ledger read error). *r holds what was applied either
 * way. */
int state_replay(ledger *l, state *s, uint64_t from, uint64_t to, state_replay_progress progress,
                 void *progress_ctx, state_replay_result *r, char *err, size_t err_len);

#endif
