/* ledger.h: the durable, append-only ledger in one LMDB environment.
 *
 * Databases inside the environment:
 *   entries  seq (u64, big-endian) -> encoded loyalty.LedgerEntry, gap-free from 1, MDB_APPEND
 *   events   (node_id, event_id) big-endian -> seq: the dedup index (R29). A till's event ids
 *            grow, so each till's inserts land at the end of its own key range: a few pages
 *            per commit, not a random page per event.
 *   members  member id -> state_member_encode() record   (checkpoint of the projection)
 *   cards    card -> member id                           (checkpoint of the projection)
 *   returns  sale seq (u64, big-endian) -> state_returns_encode() record (checkpoint, R18)
 *   meta     "checkpoint_seq" -> u64, "format" -> u32
 *   rejects  id (u64, big-endian) -> loyalty.Rejected: the dead-letter store (bounded)
 *
 * One writer (the daemon's commit thread) calls ledger_commit(); any number of readers, in this
 * or other processes (loyaltyctl), read concurrently. ledger_commit() returns only after the data
 * is durable on disk (LMDB commit with fsync): only then may an event be acknowledged.
 */
#ifndef LT_LEDGER_H
#define LT_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct ledger ledger;

/* Error codes (negative), see ledger_strerror(). */
#define LEDGER_ERR_MAP_FULL (-2)  /* the map is full: grow map_bytes */
#define LEDGER_ERR_IO (-3)        /* the disk refused (EIO, ENOSPC, ...) */
#define LEDGER_ERR_CORRUPT (-4)   /* data not in the expected form */
#define LEDGER_ERR_LOCKED (-5)    /* another daemon holds the data directory */
#define LEDGER_ERR_NOT_FOUND (-6) /* no such key */
#define LEDGER_ERR_SEQ (-7)       /* appended sequence is not last + 1 */
#define LEDGER_ERR_OTHER (-8)
#define LEDGER_ERR_DUP (-9) /* ledger_commit: an event id is already indexed (R29) */

typedef struct {
    const char *dir;  /* data directory, created if missing (unless read_only) */
    size_t map_bytes; /* LMDB map size; 0 = 64 GiB */
    bool read_only;   /* loyaltyctl: open for reading beside a running daemon */
    bool exclusive;   /* daemon: refuse if another daemon holds dir (LEDGER_ERR_LOCKED) */
    bool readahead;   /* whole-ledger scans (loyaltyctl): let the kernel read ahead on page
                       * faults; off (the default), each fault reads one page (see below) */
} ledger_opts;

/* Opens (creating if needed) the ledger. Returns 0 and *out (caller owns: ledger_close()), or a
 * negative LEDGER_ERR_*; err gets a message naming the path and the cause. read_only on a
 * directory without a ledger returns LEDGER_ERR_NOT_FOUND. */
int ledger_open(ledger **out, const ledger_opts *o, char *err, size_t err_len);
/* Closes the environment and sets *l to NULL. Safe on NULL. */
void ledger_close(ledger **l);
/* Turns the kernel's read-ahead on the ledger's map on (scans) or off (random lookups: the
 * daemon's dedup, returns and catch-up reads, where read-ahead evicts useful pages). From a
 * cold page cache a scan with it off reads one 4 KiB page per fault: replay 120,000 against
 * 1,000,000 entries/s (docs/performance.md). The daemon turns it on for its start-up recovery.
 * Returns 0, or -1 if the map could not be found (Linux only): a hint, nothing else changes.
 * Not while another thread may resize the map; LMDB's own advice comes back if it remaps. */
int ledger_readahead(ledger *l, bool on);

const char *ledger_strerror(int code);
/* What the last failed ledger_commit() tripped over, with LMDB's own message ("" after success).
 * For the committing thread; valid until its next ledger_commit(). */
const char *ledger_errmsg(const ledger *l);

/* Highest sequence in the ledger (0 when empty). */
int ledger_last_seq(ledger *l, uint64_t *seq);
/* Sequence covered by the latest checkpoint (0 when none). */
int ledger_checkpoint_seq(ledger *l, uint64_t *seq);

/* ---- the write path (one thread) ---- */

typedef struct {
    uint64_t seq;
    lt_event_id id;
    const uint8_t *bytes; /* encoded entry (entry_encode()) */
    size_t len;
} ledger_record;

typedef enum {
    LEDGER_SNAP_MEMBER = 1,
    LEDGER_SNAP_CARD = 2,
    LEDGER_SNAP_RETURNS = 3, /* R18 returned quantities of one sale */
} ledger_snap_kind;

typedef struct {
    ledger_snap_kind kind;
    /* member id, card, or (RETURNS) the sale's seq in decimal ("1234"), NUL-terminated */
    const char *key;
    /* member record, member id bytes, or state_returns_encode() record; NULL = delete the key */
    const uint8_t *value;
    size_t len;
} ledger_snap;

/* Appends records (seqs must continue the ledger without a gap, ascending), checks their event
 * ids (records with id (0, 0), system entries, have none; an id already in the ledger, or twice
 * in the call, fails with LEDGER_ERR_DUP) and, if snaps_n > 0 or checkpoint_seq > 0, writes the
 * checkpoint records and sets checkpoint_seq, all in one transaction, then commits durably.
 * Returns 0, or a negative LEDGER_ERR_*: nothing of the call is then on disk.
 *
 * The ids go into the dedup index `events` later, many commits' worth at a time, with
 * ledger_index_flush() (or ledger_close(), or the next writable open after a crash): with one
 * insert per commit, 1,000 tills sending one event per message copied a leaf page of the index
 * per event and halved the rate (docs/performance.md). Meta events_seq says how far the index
 * goes; ledger_find_event() finds the ids after it in the writer's memory (or, from another
 * handle, in the entries). */
int ledger_commit(ledger *l, const ledger_record *recs, size_t n, const ledger_snap *snaps,
                  size_t snaps_n, uint64_t checkpoint_seq);

typedef struct {
    const uint8_t *bytes;
    size_t len;
} ledger_blob;

/* ledger_commit() plus dead letters: rejected events (encoded loyalty.Rejected), appended in
 * the same transaction under the next ids; the oldest beyond rejects_max are trimmed. */
int ledger_commit_all(ledger *l, const ledger_record *recs, size_t n, const ledger_snap *snaps,
                      size_t snaps_n, uint64_t checkpoint_seq, const ledger_blob *rejects,
                      size_t rejects_n, uint64_t rejects_max);

/* One step of putting the ids of the entries committed so far into `events`. A round takes the
 * ids committed since the last one, sorted (each till's leaf page is then copied once a round),
 * and inserts them at most `max` per step (0: all), each step one durable transaction, so that a
 * step holds the writer up briefly; the last step moves events_seq to the last entry the round
 * took. Commits may go on between steps (their ids wait for the next round). Returns 0 (also
 * when there is nothing to do), or a negative LEDGER_ERR_*: the step is then tried again. The
 * writer's thread only, between commits. */
int ledger_index_flush(ledger *l, size_t max);
/* Whether a round is under way (more steps to go). */
bool ledger_index_flushing(const ledger *l);
/* Starts a round (the ids committed so far, sorted) if none is under way and ids wait; no
 * transaction. Returns 0. */
int ledger_index_start(ledger *l);
/* From now on each commit also carries the next slice of a round under way, in its own
 * transaction (twice its entries, at least 256, at most max ids; 0: none, the default): a
 * round then costs no transaction of its own. */
void ledger_index_ride(ledger *l, size_t max);
/* Ids committed and not in `events` yet (the writer's handle). */
size_t ledger_unindexed(const ledger *l);
/* events_seq as the writer last flushed it: every id of an entry up to it is in `events`. */
uint64_t ledger_indexed_seq(const ledger *l);

/* A checkpoint written over many commits (ledger.c, "staged checkpoints"). */
typedef struct {
    bool stage_begin;         /* first chunk of a new checkpoint: clear an unfinished stage */
    const ledger_snap *stage; /* this commit's chunk of its records */
    size_t stage_n;
    uint64_t stage_complete_seq; /* non-zero: the chunks so far are the whole checkpoint of this
                                  * sequence: it becomes the checkpoint in this transaction */
    size_t merge_max;            /* move up to this many records of a complete checkpoint's
                                  * stage into place (0: none this time) */
} ledger_ckpt;

typedef struct {
    bool merging;        /* a complete checkpoint is still partly in the stage */
    uint64_t stage_left; /* its records not moved yet */
} ledger_ckpt_state;

/* ledger_commit_all() without direct checkpoint records, plus one step of a staged checkpoint:
 * a chunk into the stage, its completion, and/or moving merge_max staged records into place.
 * Building a new checkpoint while the previous one is still being merged fails
 * (LEDGER_ERR_OTHER). *out (may be NULL) tells whether merging goes on. A direct checkpoint
 * (ledger_commit*() with snaps or checkpoint_seq) settles any stage first: it moves a complete
 * one into place and drops an unfinished one. */
int ledger_commit_ckpt(ledger *l, const ledger_record *recs, size_t n, const ledger_ckpt *ck,
                       const ledger_blob *rejects, size_t rejects_n, uint64_t rejects_max,
                       ledger_ckpt_state *out);

/* ---- the read path (any thread; each call uses its own read transaction) ----
 * find_event, get, last_seq and checkpoint_seq reuse one reset read transaction per handle
 * (renewed per call, no reader-slot setup); a concurrent caller from another thread finds it
 * busy and opens its own, so they stay safe from any thread but are fastest from one. The
 * scans always open their own. */

/* Looks up an event id. The writing handle (writable, holding DIR/daemon.lock) looks among the
 * ids it committed that are not indexed yet (in memory, under a mutex: any thread) and then in
 * the dedup index; an id whose ledger_commit*() has returned is found. Any other handle looks in
 * the index, then among the entries after events_seq (read and decoded one by one: a fraction
 * of a second's worth behind a running daemon, none after a writable open). Returns 0 and
 * *seq, LEDGER_ERR_NOT_FOUND, or error. */
int ledger_find_event(ledger *l, lt_event_id id, uint64_t *seq);
/* The index alone. */
int ledger_find_event_indexed(ledger *l, lt_event_id id, uint64_t *seq);
/* Calls fn with the id and seq of each entry after events_seq (in seq order; system entries
 * have no id and are skipped), in one read transaction. Stops at fn's first non-zero return and
 * returns it. */
int ledger_scan_unindexed(ledger *l, int (*fn)(void *ctx, lt_event_id id, uint64_t seq), void *ctx);

/* Reads one entry's bytes into a caller buffer. Returns 0 and *len, LEDGER_ERR_NOT_FOUND,
 * LEDGER_ERR_OTHER if cap is too small (*len is then the size needed), or another error. */
int ledger_get(ledger *l, uint64_t seq, uint8_t *buf, size_t cap, size_t *len);

/* Calls fn for each entry with from <= seq <= to (to = 0: to the end), in order, inside one
 * read transaction: bytes are valid only during the call. Stops when fn returns non-zero and
 * returns that value. */
int ledger_scan(ledger *l, uint64_t from, uint64_t to,
                int (*fn)(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len), void *ctx);

/* Calls fn for each checkpointed member record and card link. */
int ledger_scan_snapshot(ledger *l, int (*member_fn)(void *ctx, const uint8_t *rec, size_t len),
                         int (*card_fn)(void *ctx, const char *card, const char *member_id),
                         void *ctx);

/* Calls fn for each checkpointed returned-quantity record (R18) with the sale's seq, in seq
 * order. A ledger written before returns existed has none (returns 0 without calling fn). A key
 * that is not 8 bytes is LEDGER_ERR_CORRUPT. Records are valid only during the call. */
int ledger_scan_returns(ledger *l,
                        int (*fn)(void *ctx, uint64_t sale_seq, const uint8_t *rec, size_t len),
                        void *ctx);

/* Calls fn for each dead letter with id >= from_id, oldest first; records are valid only during
 * the call. Stops when fn returns non-zero and returns that value. */
int ledger_scan_rejects(ledger *l, uint64_t from_id,
                        int (*fn)(void *ctx, uint64_t id, const uint8_t *rec, size_t len),
                        void *ctx);
/* The ids of the oldest and newest dead letter and how many there are (all 0 when none). */
int ledger_rejects_range(ledger *l, uint64_t *first_id, uint64_t *last_id, uint64_t *count);

/* ledger_scan_nodes() and ledger_scan_unindexed() in one read transaction: what the dedup index
 * holds and what it lacks, as of one moment (two transactions, with a round's last step
 * committed between them, miss the ids of that step: a recovery's high-water marks then let a
 * resend of them through). Either callback may be NULL. */
int ledger_scan_dedup(ledger *l, int (*node_fn)(void *ctx, uint64_t node_id, uint64_t event_id_max),
                      int (*id_fn)(void *ctx, lt_event_id id, uint64_t seq), void *ctx);

/* Calls fn once per node id in the dedup index with the highest event id in it (the index
 * alone: ledger_scan_unindexed() gives the rest). */
int ledger_scan_nodes(ledger *l, int (*fn)(void *ctx, uint64_t node_id, uint64_t event_id_max),
                      void *ctx);

typedef struct {
    uint64_t entries;
    uint64_t events;
    uint64_t members, cards;
    uint64_t map_bytes, used_bytes; /* map size and pages in use * page size */
    uint64_t page_bytes;
} ledger_stats;

int ledger_stat(ledger *l, ledger_stats *st);

/* Hot copy with compaction into an empty directory (backup). */
int ledger_copy(ledger *l, const char *dir, char *err, size_t err_len);

#endif
