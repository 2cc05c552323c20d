/* index_plan.h: when the commit thread puts event ids into the ledger's dedup index (daemon.c,
 * commit_main). Pure functions of what the ledger reports, so that the rules are tested alone
 * (tests/unit/test_daemon_index_plan.c).
 *
 * The ids of committed entries go into the index in rounds: one starts index_flush_ms after the
 * first id waiting (or once INDEX_FLUSH_IDS wait) and takes them all, sorted; the commits that
 * follow carry its slices in their own transactions (ledger_index_ride(): twice their entries,
 * at most INDEX_RIDE_MAX). With nothing to commit, the thread takes steps of INDEX_FLUSH_STEP
 * in transactions of their own, but only once no commit has ended for INDEX_IDLE_NS, or when
 * INDEX_FLUSH_IDS ids wait (the rides are not keeping up: batches of more than INDEX_RIDE_MAX / 2
 * entries). A step is a synced transaction (about 1 ms), and a batch sealed meanwhile waits for
 * it: steps whenever the thread was idle put the seal-to-commit p99 at 1.1 ms in the open loop
 * (0.3 ms without). Each till's leaf page is copied about once a round, where one insert per
 * commit halved the rate with 1,000 tills (ledger.h, ledger_commit); a round of its own
 * transactions after every commit, measured first, took an fsync each and put the ack p99 at
 * 30-40 ms. Until its round ends, the ledger finds an id in its memory (ledger_find_event()). */
#ifndef LT_INDEX_PLAN_H
#define LT_INDEX_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INDEX_FLUSH_IDS 65536u
#define INDEX_FLUSH_STEP 1024u
#define INDEX_RIDE_MAX 4096u
#define INDEX_IDLE_NS 20000000u

/* What the ledger's writer reports (ledger_index_flushing(), ledger_unindexed()), and the
 * daemon's own. */
typedef struct {
    bool flushing;     /* a round is under way */
    size_t waiting;    /* ids committed and not in the index */
    bool failing;      /* the last step failed: the next try waits until *due */
    uint64_t flush_ns; /* index_flush_ms */
} index_view;

/* Whether a round is under way or due to start at `now`. *due is when the next round starts:
 * set index_flush_ns after the first id seen waiting (0: none waits; reset when a round ends),
 * or, after a failed step, when to try again. */
static inline bool index_due(const index_view *v, uint64_t now, uint64_t *due)
{
    if (v->failing && *due != 0 && now < *due)
        return false;
    if (v->flushing)
        return true;
    if (v->waiting == 0)
        return false;
    if (*due == 0)
        *due = now + v->flush_ns;
    return v->waiting >= INDEX_FLUSH_IDS || now >= *due;
}

/* The commit thread with nothing to commit: true to take a step now; false to wait until
 * *until (0: until a batch comes). last_commit is when the last commit ended. */
static inline bool index_step_now(const index_view *v, uint64_t now, uint64_t last_commit,
                                  uint64_t *due, uint64_t *until)
{
    if (index_due(v, now, due)) {
        *until = last_commit + INDEX_IDLE_NS;
        return now >= *until || v->waiting >= INDEX_FLUSH_IDS;
    }
    *until = *due; /* read after index_due(), which may have set it */
    return false;
}

#endif
