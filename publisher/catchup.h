/* catchup.h: the catch-up endpoint (docs/subscribers.md).
 *
 * A thread of its own owns the query ROUTER socket. "Send me every update from sequence N" is
 * served here, from the ledger (its own LMDB read transactions), rendered by pub_render()
 * exactly as the live stream published it, bounded per request and resumable; it never touches
 * the daemon's loop, so it never blocks ingest. Every other query (member state, status, state
 * hash) is forwarded as it is over an inproc PAIR to the loop thread, whose answers come back
 * the same way and go out to the asker.
 */
#ifndef LT_CATCHUP_H
#define LT_CATCHUP_H

#include <stddef.h>
#include <stdint.h>

#include "ledger.h"

#define CATCHUP_ENTRIES_MAX 10000 /* per request */

typedef struct catchup catchup;

typedef struct {
    uint64_t requests, entries, messages, errors;
} catchup_stats;

/* Binds endpoint and starts the thread. loop_pair_endpoint (an inproc:// name) is bound here;
 * the loop thread connects a PAIR socket to it and reads forwarded queries from it: frames
 * [identity][payload], answered with [identity][reply]. Returns 0 and *out (caller owns:
 * catchup_stop()), or -1 with err. */
int catchup_start(void *zctx, const char *endpoint, const char *loop_pair_endpoint, ledger *l,
                  const char *curve_secret, catchup **out, char *err, size_t err_len);
/* Stops the thread, closes its sockets and frees. Safe on NULL. */
void catchup_stop(catchup **c);
void catchup_get_stats(catchup *c, catchup_stats *st);

#endif
