/* ckstore.h: the checkpoint of the member state in an LMDB environment of its own,
 * DATA_DIR/state/ (docs/ledger.md).
 *
 * The ledger (ledger.h) is the truth; the checkpoint only shortens recovery: the members, cards
 * and returned quantities as of ledger sequence `seq`, so that a start loads them and replays
 * the entries after `seq` instead of the whole ledger. Kept apart from the ledger so that
 * writing it never delays a ledger commit (an acknowledgement): the daemon writes it on a
 * thread of its own and completes it only once the ledger holds `seq` durably.
 *
 * A log, not a table: each checkpoint appends the records changed since the previous one as a
 * new generation (key: generation, kind, key), in chunks, each its own durable transaction, and
 * a last transaction completes it (meta `gen`). A load reads the log in key order, a later
 * record of a key replacing an earlier one, and stops at the last complete generation: a crash
 * while a checkpoint is being written leaves the previous one, and the next checkpoint clears
 * what it left. Writing a member's record rewrites only the end of the log, where a table
 * rewrites the page the member is on: a checkpoint of 290,000 changed members out of 1 M in a
 * table rewrote nearly every page of it (200 MB) and its fsync stalled the ledger's for 45-80 ms
 * (docs/performance.md). When the log has grown to several times what is live, a full
 * checkpoint writes everything into the other log, which replaces it when it completes.
 *
 * Databases inside the environment:
 *   log0, log1  generation (u64 BE), kind (u8 ledger_snap_kind), key -> record; the key is the
 *               member id, the card, or the sale seq (u64 BE); the record is the member
 *               (state_member_encode()), the card's member id (empty: unlinked) or the
 *               returned quantities (state_returns_encode())
 *   meta        "active" -> u64: which log; "gen" -> u64: its last complete generation;
 *               "records" -> u64: records in it; "seq" -> u64 and "digest" -> u64: see below;
 *               "format" -> u32
 *
 * `seq` is the ledger sequence the checkpoint covers and `digest` ckstore_digest() of the ledger
 * entry at `seq` (0 when seq is 0). The digest ties the checkpoint to its ledger: a state/
 * beside another ledger (a restore, a copied directory) does not match, and ckpt_load() does
 * not use it.
 */
#ifndef LT_CKSTORE_H
#define LT_CKSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ledger.h"

typedef struct ckstore ckstore;

#define CKSTORE_SUBDIR "state"
#define CKSTORE_FORMAT 1u

typedef struct {
    const char *dir;  /* the data directory: the environment is DIR/state/ (created if missing,
                       * unless read_only) */
    size_t map_bytes; /* LMDB map size; 0 = 64 GiB (sparse) */
    bool read_only;   /* loyaltyctl beside a running daemon */
} ckstore_opts;

/* Opens (creating if needed) DIR/state/. Returns 0 and *out (ckstore_close()), or a negative
 * LEDGER_ERR_* with a message in err naming the path; read_only on a directory without
 * state/ returns LEDGER_ERR_NOT_FOUND. An unknown format is LEDGER_ERR_CORRUPT. */
int ckstore_open(ckstore **out, const ckstore_opts *o, char *err, size_t err_len);
/* Closes the environment (a checkpoint being written is abandoned) and sets *c to NULL. Safe on
 * NULL. */
void ckstore_close(ckstore **c);
/* What the last failed call tripped over, with LMDB's message ("" after success); for the
 * writing thread. */
const char *ckstore_errmsg(const ckstore *c);

/* ---- writing: one thread; a checkpoint is begun, written in chunks, then committed ---- */

/* Starts a checkpoint: the next generation of the active log, or with full a new log that
 * will hold everything (it replaces the active one at the commit). Clears what an unfinished
 * checkpoint left (one durable transaction). LEDGER_ERR_OTHER if one is being written. */
int ckstore_begin(ckstore *c, bool full);
/* Appends records to the checkpoint, in one durable transaction: LEDGER_SNAP_MEMBER, _CARD and
 * _RETURNS (key: the sale's seq in decimal); a card's value NULL unlinks it. Members in key
 * order write fewer pages. On error the checkpoint is abandoned (ckstore_writing() false). */
int ckstore_put(ckstore *c, const ledger_snap *snaps, size_t n);
/* Completes the checkpoint with seq and digest, durably. Returns 0, or a negative LEDGER_ERR_*:
 * the previous checkpoint then stays. */
int ckstore_commit(ckstore *c, uint64_t seq, uint64_t digest);
/* Abandons the checkpoint being written, if any: the previous one stays. */
void ckstore_abort(ckstore *c);
/* Whether a checkpoint is being written. */
bool ckstore_writing(const ckstore *c);
/* Records put since the open that did not sort after every key in the log, so went into its
 * middle instead of being appended (a checkpoint's records out of key order: the same log, in
 * more pages). The writing thread's, like the calls that write. */
uint64_t ckstore_unordered(const ckstore *c);
/* Records in the active log (every generation): against the records live, how much a full
 * checkpoint would shrink it. */
int ckstore_log_records(ckstore *c, uint64_t *records);

/* ---- reading: each call in one read transaction of its own; any thread of a writable handle.
 * A read-only handle opened before the writer created the databases opens them at its first
 * read that finds them: use it from one thread (loyaltyctl's are). ---- */

typedef struct {
    int (*member)(void *ctx, const uint8_t *rec, size_t len);
    int (*card)(void *ctx, const char *card, const char *member_id);
    int (*returns)(void *ctx, uint64_t sale_seq, const uint8_t *rec, size_t len);
    void *ctx;
} ckpt_loader;

typedef struct state state;
/* A loader that puts every record into s (state_load_member(), _card(), _returns(): a later
 * record replaces an earlier one); a record s refuses is LEDGER_ERR_CORRUPT. */
ckpt_loader ckpt_state_loader(state *s);

/* seq and digest of the checkpoint (0, 0 when none was committed). */
int ckstore_meta(ckstore *c, uint64_t *seq, uint64_t *digest);
/* Calls the loader for every record of the checkpoint (any callback may be NULL) and gives seq
 * and digest, all from one read transaction. Records come in log order: a later record of the
 * same member, card or sale replaces an earlier one (state_load_*() do), and a card with
 * member_id NULL is unlinked. A callback's non-zero return stops the load and is returned; a
 * malformed record is LEDGER_ERR_CORRUPT. */
int ckstore_load(ckstore *c, const ckpt_loader *ld, uint64_t *seq, uint64_t *digest);
/* Hot copy with compaction into an empty directory (backup). */
int ckstore_copy(ckstore *c, const char *dir, char *err, size_t err_len);

/* The digest of a ledger entry's bytes (XXH3, 64 bits). */
uint64_t ckstore_digest(const uint8_t *bytes, size_t len);
/* The digest of ledger entry seq (0 for seq 0). Returns 0, LEDGER_ERR_NOT_FOUND, or error. */
int ckstore_entry_digest(ledger *l, uint64_t seq, uint64_t *digest);

/* ---- the checkpoint to recover from ---- */

typedef enum {
    CKPT_SRC_NONE = 0, /* no checkpoint: replay the whole ledger */
    CKPT_SRC_STATE,    /* DIR/state/ */
    CKPT_SRC_LEDGER,   /* the ledger's own tables (data written by an older loyaltyd) */
} ckpt_source;

/* "none", "state" or "ledger": how the recovery log and loyaltyctl name a source. */
const char *ckpt_source_name(ckpt_source src);

/* Loads the checkpoint a start recovers from, into the loader: state/'s (c may be NULL) if it
 * belongs to this ledger (its seq is at most the ledger's last and the entry there has its
 * digest); else the ledger's own checkpoint tables, if any; else none. *seq is the sequence it
 * covers (0 for none), *src where it came from; why (may be NULL) says why state/ was not used
 * ("" if it was, or there was none). A callback's non-zero return or a read error is returned
 * (negative LEDGER_ERR_* or the callback's value); the loader may then have been given part of
 * a checkpoint. */
int ckpt_load(ledger *l, ckstore *c, const ckpt_loader *ld, uint64_t *seq, ckpt_source *src,
              char *why, size_t why_len);

#endif
