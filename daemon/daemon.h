/* daemon.h: loyaltyd's core: the loop thread, the commit thread and the publisher thread.
 *
 * The loop thread (libuv) reads till messages, validates, deduplicates, rates and applies each
 * event to the in-memory state, encodes its ledger entry into the open batch, and sends acks
 * when a batch's commit is durable. The commit thread writes whole batches to LMDB, one
 * transaction and one fsync each (group commit). The publisher thread publishes committed
 * entries. While one batch commits, the next one fills: batches grow with load, so the cost of
 * an fsync is shared by every event that arrived during the previous one.
 */
#ifndef LT_DAEMON_H
#define LT_DAEMON_H

#include "config.h"

/* Runs the daemon until SIGINT/SIGTERM. Returns the process exit code. */
int daemon_run(const config *cfg);

#endif
