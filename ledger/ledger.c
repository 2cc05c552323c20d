/* ledger.c: the durable, append-only ledger in one LMDB environment (layout in ledger.h and
 * docs/ledger.md).
 *
 * All integers stored as keys or values are big-endian, so LMDB's byte order is numeric order:
 * entries append at the end of the tree (MDB_APPEND) and a till's event ids cluster at the end
 * of its own key range. The environment is opened without MDB_NOSYNC/MDB_NOMETASYNC: when
 * mdb_txn_commit() returns, the transaction is on disk.
 */
#include "ledger.h"
#include "entry.h"
#include "idmap.h"
#include "idsort.h"
#include "lmdb_util.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Format 2: member records may be version 4 (state.c), which builds of format 1 cannot read.
 * Format 3: the dedup index `events` may lag the entries (meta `events_seq`, below), which a
 * build of format 2 would not know: it would take an id of the newest entries for new. This
 * build reads all three; a writable open marks an older ledger as format 3 before it writes
 * anything, so that an older build refuses it by its format number instead of misreading it. */
#define LEDGER_FORMAT 3u
#define LEDGER_FORMAT_MIN 1u
#define LEDGER_MAP_BYTES_DEFAULT ((size_t)64 << 30)
#define LEDGER_DBS_MAX 8
#define LEDGER_PATH_MAX 4096

typedef idsort_key dedup_key;

struct ledger {
    MDB_env *env;
    MDB_dbi entries, events, members, cards, meta;
    MDB_dbi returns;  /* R18 checkpoint records */
    bool has_returns; /* false: a read-only open of a ledger written before returns existed */
    MDB_dbi rejects;  /* dead letters: id (u64 BE) -> encoded loyalty.Rejected */
    bool has_rejects;
    MDB_dbi stage; /* a checkpoint being written or merged (ledger_commit_ckpt) */
    bool has_stage;
    bool read_only;
    int lock_fd; /* DIR/daemon.lock held with flock(LOCK_EX), or -1 */
    /* One read transaction kept reset between calls, so find_event/get/last_seq cost no
     * reader-slot setup. Whoever holds the mutex may renew it; a caller that finds it busy
     * (another thread) opens a transaction of its own. */
    pthread_mutex_t rtxn_mu;
    MDB_txn *rtxn;
    dedup_key *keys;     /* ledger_commit scratch, grown on demand */
    idsort_scratch sort; /* the writer's: sorting ids for the index */
    size_t keys_cap;
    /* The writer's deferred dedup index (format 3): the ids of the entries committed after
     * meta events_seq, which ledger_index_flush() inserts into `events` many commits' worth at
     * a time, so that a till's leaf page is copied once per flush instead of once per commit.
     * Two generations: gen[collect] takes the ids of new commits; the other one, sorted, is
     * being inserted (flushing) a slice per step from flush_pos. The writer's thread changes
     * them; the sets also answer ledger_find_event() from other threads, under gen_mu (held
     * by the writer only while it changes a set, by a reader while it looks). */
    pthread_mutex_t gen_mu;
    struct id_gen {
        dedup_key *ids;
        size_t n, cap;
        idmap set; /* the same ids, for the duplicate check of a commit */
    } gen[2];
    int collect;
    /* The writer's highest event id per till among all entries (node -> v1): an id above it is
     * new without a lookup, which is every id of a till sending in order. */
    idmap node_max;
    bool flushing;
    size_t flush_pos;
    uint64_t flush_seq;     /* events_seq once the flushing generation is in */
    size_t ride_max;        /* a commit carries up to this many ids of a round (0: none) */
    size_t ride_k;          /* ... this commit's share, kept when it succeeds */
    uint64_t committed_seq; /* the last entry's seq */
    uint64_t events_seq;    /* meta events_seq: every id of an entry up to it is in `events` */
    char errmsg[256];
};

/* ------------------------------------------------------------------ helpers */

void ldb_fmt_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

int ldb_map_err(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_MAP_FULL:
        return LEDGER_ERR_MAP_FULL;
    case MDB_NOTFOUND:
        return LEDGER_ERR_NOT_FOUND;
    case MDB_KEYEXIST:
        return LEDGER_ERR_DUP;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE:
        return LEDGER_ERR_CORRUPT;
    case MDB_PANIC: /* a failed write or sync earlier: the environment must be reopened */
    case EIO:
    case ENOSPC:
    case EDQUOT:
    case EROFS:
    case EFBIG:
        return LEDGER_ERR_IO;
    default:
        return LEDGER_ERR_OTHER;
    }
}

const char *ledger_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case LEDGER_ERR_MAP_FULL:
        return "ledger map is full (raise map_bytes)";
    case LEDGER_ERR_IO:
        return "ledger I/O error";
    case LEDGER_ERR_CORRUPT:
        return "ledger data is corrupt or not in the expected format";
    case LEDGER_ERR_LOCKED:
        return "ledger directory is locked by another daemon";
    case LEDGER_ERR_NOT_FOUND:
        return "not found";
    case LEDGER_ERR_SEQ:
        return "sequence does not continue the ledger";
    case LEDGER_ERR_DUP:
        return "event id already in the ledger";
    case LEDGER_ERR_OTHER:
        return "ledger error";
    }
    return "unknown ledger error";
}

const char *ledger_errmsg(const ledger *l)
{
    return l->errmsg;
}

/* Begins a read-only transaction. A reader in another process than the writer may find that
 * the map was grown (MDB_MAP_RESIZED): adopt the new size and retry once. */
static int txn_begin_ro(ledger *l, MDB_txn **t)
{
    int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, t);
    if (rc == MDB_MAP_RESIZED && mdb_env_set_mapsize(l->env, 0) == 0)
        rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, t);
    return rc;
}

/* Gets a read transaction: the cached one if free, else a new one. Release with rtxn_end(). */
static int rtxn_begin(ledger *l, MDB_txn **t, bool *cached)
{
    *cached = false;
    if (pthread_mutex_trylock(&l->rtxn_mu) != 0)
        return txn_begin_ro(l, t);
    int rc = l->rtxn ? mdb_txn_renew(l->rtxn) : txn_begin_ro(l, &l->rtxn);
    if (rc != 0) {
        if (l->rtxn)
            mdb_txn_abort(l->rtxn);
        l->rtxn = NULL;
        pthread_mutex_unlock(&l->rtxn_mu);
        return txn_begin_ro(l, t);
    }
    *t = l->rtxn;
    *cached = true;
    return 0;
}

static void rtxn_end(ledger *l, MDB_txn *t, bool cached)
{
    if (!cached) {
        mdb_txn_abort(t);
        return;
    }
    mdb_txn_reset(t);
    pthread_mutex_unlock(&l->rtxn_mu);
}

/* ------------------------------------------------------------------ open / close */

/* Takes DIR/daemon.lock with flock(LOCK_EX|LOCK_NB) and writes our pid into it. The lock dies
 * with the process, so a crashed daemon never leaves a stale lock behind. */
static int take_lock(ledger *l, const char *dir, char *err, size_t err_len)
{
    char path[LEDGER_PATH_MAX];
    snprintf(path, sizeof(path), "%s/daemon.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        ldb_fmt_err(err, err_len, "%s: %s", path, strerror(errno));
        return ldb_map_err(errno);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK) {
            ldb_fmt_err(err, err_len, "%s: held by another loyaltyd (pid %s): stop it first", path,
                        pid[0] ? pid : "unknown");
            return LEDGER_ERR_LOCKED;
        }
        ldb_fmt_err(err, err_len, "%s: flock: %s", path, strerror(e));
        return LEDGER_ERR_OTHER;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* The pid is only a hint for the message above; the flock is what counts. */
    }
    l->lock_fd = fd;
    return 0;
}

static int last_seq_txn(ledger *l, MDB_txn *txn, uint64_t *seq);
static int index_catch_up(ledger *l, const char *dir, char *err, size_t err_len);
static int load_node_max(ledger *l, const char *dir, char *err, size_t err_len);

static void round_advance(ledger *l, size_t k);
static int scan_ids_txn(ledger *l, MDB_txn *txn, uint64_t after,
                        int (*fn)(void *ctx, lt_event_id id, uint64_t seq), void *ctx);

#define EVENTS_SEQ_KEY "events_seq"

/* Meta events_seq: every event id of an entry up to it is in `events` (format 3). A ledger of
 * an older format has none: each of its commits indexed its ids, so it is the last entry. */
static int events_seq_txn(ledger *l, MDB_txn *txn, uint64_t last, uint64_t *seq)
{
    MDB_val k = {sizeof(EVENTS_SEQ_KEY) - 1, (void *)EVENTS_SEQ_KEY}, v;
    int rc = mdb_get(txn, l->meta, &k, &v);
    *seq = last;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return ldb_map_err(rc);
    if (v.mv_size != 8 || get_be64(v.mv_data) > last)
        return LEDGER_ERR_CORRUPT;
    *seq = get_be64(v.mv_data);
    return 0;
}

static int put_events_seq(ledger *l, MDB_txn *txn, uint64_t seq)
{
    uint8_t b[8];
    put_be64(b, seq);
    MDB_val k = {sizeof(EVENTS_SEQ_KEY) - 1, (void *)EVENTS_SEQ_KEY}, v = {sizeof(b), b};
    return mdb_put(txn, l->meta, &k, &v, 0);
}

/* Opens the named databases and checks (or, for a new ledger, writes) the format number. */
static int open_dbs(ledger *l, const char *dir, char *err, size_t err_len)
{
    MDB_txn *txn;
    unsigned flags = l->read_only ? 0 : MDB_CREATE;
    int rc = l->read_only ? txn_begin_ro(l, &txn) : mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc != 0) {
        ldb_fmt_err(err, err_len, "%s: begin: %s", dir, mdb_strerror(rc));
        return ldb_map_err(rc);
    }
    const char *names[] = {"entries", "events", "members", "cards", "meta"};
    MDB_dbi *dbis[] = {&l->entries, &l->events, &l->members, &l->cards, &l->meta};
    for (size_t i = 0; i < LT_ARRAY_LEN(names) && rc == 0; i++)
        rc = mdb_dbi_open(txn, names[i], flags, dbis[i]);
    /* `returns` came later: a writer adds it to an older ledger, a reader does without it */
    if (rc == 0) {
        int rr = mdb_dbi_open(txn, "returns", flags, &l->returns);
        l->has_returns = rr == 0;
        if (rr != 0 && rr != MDB_NOTFOUND)
            rc = rr;
    }
    if (rc == 0) {
        int rr = mdb_dbi_open(txn, "rejects", flags, &l->rejects);
        l->has_rejects = rr == 0;
        if (rr != 0 && rr != MDB_NOTFOUND)
            rc = rr;
    }
    if (rc == 0) {
        int rr = mdb_dbi_open(txn, "stage", flags, &l->stage);
        l->has_stage = rr == 0;
        if (rr != 0 && rr != MDB_NOTFOUND)
            rc = rr;
    }
    if (rc == MDB_NOTFOUND) {
        ldb_fmt_err(err, err_len, "%s: not a loyaltyd ledger (database missing)", dir);
        mdb_txn_abort(txn);
        return LEDGER_ERR_CORRUPT;
    }
    MDB_val k = {6, (void *)"format"}, v;
    uint8_t fmt[4] = {0, 0, 0, LEDGER_FORMAT};
    if (rc == 0) {
        rc = mdb_get(txn, l->meta, &k, &v);
        uint32_t have = 0;
        if (rc == 0 && v.mv_size == 4) {
            const uint8_t *b = v.mv_data;
            have = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        }
        if (rc == 0 && (have < LEDGER_FORMAT_MIN || have > LEDGER_FORMAT)) {
            if (v.mv_size == 4)
                ldb_fmt_err(err, err_len,
                            "%s: unknown ledger format %u (this build reads formats %u to %u)", dir,
                            have, LEDGER_FORMAT_MIN, LEDGER_FORMAT);
            else
                ldb_fmt_err(err, err_len,
                            "%s: unknown ledger format (this build reads formats %u to %u)", dir,
                            LEDGER_FORMAT_MIN, LEDGER_FORMAT);
            mdb_txn_abort(txn);
            return LEDGER_ERR_CORRUPT;
        } else if ((rc == MDB_NOTFOUND || (rc == 0 && have < LEDGER_FORMAT)) && !l->read_only) {
            /* a new ledger, or an older format upgraded in place: its index holds every entry's
             * id (events_seq_txn() reads that from the missing events_seq), said explicitly */
            uint64_t last = 0;
            v = (MDB_val){sizeof(fmt), fmt};
            rc = mdb_put(txn, l->meta, &k, &v, 0);
            if (rc == 0 && (rc = last_seq_txn(l, txn, &last)) == 0)
                rc = put_events_seq(l, txn, last);
            if (rc < 0) { /* a LEDGER_ERR_* from last_seq_txn */
                ldb_fmt_err(err, err_len, "%s: %s", dir, ledger_strerror(rc));
                mdb_txn_abort(txn);
                return rc;
            }
        } else if (rc == MDB_NOTFOUND) {
            rc = 0; /* read-only beside a writer that has not committed its first txn */
        }
    }
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc != 0) {
        ldb_fmt_err(err, err_len, "%s: %s", dir, mdb_strerror(rc));
        return ldb_map_err(rc);
    }
    return 0;
}

int ldb_env_open(MDB_env **env, const char *path, unsigned maxdbs, size_t map_bytes, unsigned flags,
                 const char *what, char *err, size_t err_len)
{
    int rc = mdb_env_create(env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(*env, maxdbs);
    if (rc == 0 && !(flags & MDB_RDONLY))
        rc = mdb_env_set_mapsize(*env, map_bytes);
    if (rc == 0)
        rc = mdb_env_open(*env, path, flags, 0640);
    if (rc == ENOENT && (flags & MDB_RDONLY)) {
        ldb_fmt_err(err, err_len, "%s: no %s here", path, what);
        return LEDGER_ERR_NOT_FOUND;
    }
    if (rc != 0) {
        ldb_fmt_err(err, err_len, "%s: %s", path, mdb_strerror(rc));
        return ldb_map_err(rc);
    }
    int dead = 0;
    mdb_reader_check(*env, &dead); /* free slots of readers that died */
    return 0;
}

static int open_env(ledger *l, const ledger_opts *o, char *err, size_t err_len)
{
    /* MDB_NOTLS: read transactions are not tied to a thread (the cached one moves between
     * callers). MDB_NORDAHEAD: lookups are random; read-ahead only evicts useful pages; but a
     * scan wants it (ledger_readahead()). */
    unsigned flags =
        MDB_NOTLS | (o->readahead ? 0 : MDB_NORDAHEAD) | (o->read_only ? MDB_RDONLY : 0);
    return ldb_env_open(&l->env, o->dir, LEDGER_DBS_MAX,
                        o->map_bytes ? o->map_bytes : LEDGER_MAP_BYTES_DEFAULT, flags, "ledger",
                        err, err_len);
}

/* Finds LMDB's map among this process's mappings (LMDB does not say where it is unless the map
 * is fixed): the mapping that holds a key LMDB returns from its main database, which always
 * lists the named ones. By address, not by inode or size: an overlay file system may show
 * another inode, and the kernel rounds the map's length up to whole pages. */
static int find_map(ledger *l, void **base, size_t *len)
{
    MDB_txn *txn;
    MDB_dbi main_db;
    MDB_cursor *cur;
    MDB_val k, v;
    if (txn_begin_ro(l, &txn) != 0)
        return -1;
    int rc = mdb_dbi_open(txn, NULL, 0, &main_db);
    if (rc == 0 && (rc = mdb_cursor_open(txn, main_db, &cur)) == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn); /* k.mv_data stays an address in the map: only compared below */
    if (rc != 0)
        return -1;
    uintptr_t at = (uintptr_t)k.mv_data;
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return -1;
    char line[LEDGER_PATH_MAX + 128];
    int found = -1;
    bool line_start = true;
    while (found < 0 && fgets(line, sizeof line, f)) {
        unsigned long start, end;
        if (line_start && sscanf(line, "%lx-%lx", &start, &end) == 2 && start <= at && at < end) {
            *base = (void *)start;
            *len = end - start;
            found = 0;
        }
        line_start = strchr(line, '\n') != NULL; /* the rest of a long line is not a line */
    }
    fclose(f);
    return found;
}

int ledger_readahead(ledger *l, bool on)
{
    void *base;
    size_t len;
    if (find_map(l, &base, &len) != 0)
        return -1;
    return madvise(base, len, on ? MADV_NORMAL : MADV_RANDOM) == 0 ? 0 : -1;
}

int ledger_open(ledger **out, const ledger_opts *o, char *err, size_t err_len)
{
    LT_ASSERT(out && o && o->dir);
    *out = NULL;
    if (!o->read_only && mkdir(o->dir, 0750) != 0 && errno != EEXIST) {
        ldb_fmt_err(err, err_len, "%s: mkdir: %s", o->dir, strerror(errno));
        return ldb_map_err(errno);
    }
    ledger *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        ldb_fmt_err(err, err_len, "%s: out of memory", o->dir);
        return LEDGER_ERR_OTHER;
    }
    l->lock_fd = -1;
    l->read_only = o->read_only;
    pthread_mutex_init(&l->rtxn_mu, NULL);
    pthread_mutex_init(&l->gen_mu, NULL);
    int rc = o->exclusive ? take_lock(l, o->dir, err, err_len) : 0;
    if (rc == 0)
        rc = open_env(l, o, err, err_len);
    if (rc == 0)
        rc = open_dbs(l, o->dir, err, err_len);
    if (rc == 0 && !l->read_only &&
        (idmap_init(&l->gen[0].set, 1024) != 0 || idmap_init(&l->gen[1].set, 1024) != 0)) {
        ldb_fmt_err(err, err_len, "%s: out of memory", o->dir);
        rc = LEDGER_ERR_OTHER;
    }
    if (rc == 0 && !l->read_only)
        rc = index_catch_up(l, o->dir, err, err_len);
    if (rc == 0 && !l->read_only)
        rc = load_node_max(l, o->dir, err, err_len);
    if (rc != 0) {
        ledger_close(&l);
        return rc;
    }
    *out = l;
    return 0;
}

void ledger_close(ledger **lp)
{
    if (lp == NULL || *lp == NULL)
        return;
    ledger *l = *lp;
    /* at most two rounds (the generation being flushed, then the newer one); after a failure
     * the next writable open indexes what is left */
    for (int i = 0; i < 2 && l->env && !l->read_only && l->committed_seq > l->events_seq; i++)
        if (ledger_index_flush(l, 0) != 0)
            break;
    if (l->rtxn)
        mdb_txn_abort(l->rtxn);
    if (l->env)
        mdb_env_close(l->env);
    if (l->lock_fd >= 0)
        close(l->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&l->rtxn_mu);
    pthread_mutex_destroy(&l->gen_mu);
    free(l->keys);
    idsort_free(&l->sort);
    for (int g = 0; g < 2; g++) {
        free(l->gen[g].ids);
        idmap_free(&l->gen[g].set);
    }
    idmap_free(&l->node_max);
    free(l);
    *lp = NULL;
}

/* ------------------------------------------------------------------ small reads */

static int last_seq_txn(ledger *l, MDB_txn *txn, uint64_t *seq)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, l->entries, &cur);
    if (rc != 0)
        return ldb_map_err(rc);
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    *seq = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return ldb_map_err(rc);
    if (k.mv_size != 8)
        return LEDGER_ERR_CORRUPT;
    *seq = get_be64(k.mv_data);
    return 0;
}

int ledger_last_seq(ledger *l, uint64_t *seq)
{
    MDB_txn *txn;
    bool cached;
    int rc = rtxn_begin(l, &txn, &cached);
    if (rc != 0)
        return ldb_map_err(rc);
    rc = last_seq_txn(l, txn, seq);
    rtxn_end(l, txn, cached);
    return rc;
}

int ledger_checkpoint_seq(ledger *l, uint64_t *seq)
{
    MDB_txn *txn;
    bool cached;
    int rc = rtxn_begin(l, &txn, &cached);
    if (rc != 0)
        return ldb_map_err(rc);
    MDB_val k = {14, (void *)"checkpoint_seq"}, v;
    rc = mdb_get(txn, l->meta, &k, &v);
    *seq = 0;
    if (rc == 0 && v.mv_size != 8)
        rc = MDB_CORRUPTED;
    else if (rc == 0)
        *seq = get_be64(v.mv_data);
    else if (rc == MDB_NOTFOUND)
        rc = 0;
    rtxn_end(l, txn, cached);
    return ldb_map_err(rc);
}

typedef struct {
    lt_event_id id;
    uint64_t seq;
} id_search;

static int match_id(void *ctx, lt_event_id id, uint64_t seq)
{
    id_search *s = ctx;
    if (id.node_id != s->id.node_id || id.event_id != s->id.event_id)
        return 0;
    s->seq = seq;
    return 1;
}

/* An id among the writer's committed and not indexed yet (either generation), or NULL. The
 * writer's thread, or another one under gen_mu. */
static const idmap_slot *gen_find(const ledger *l, uint64_t node_id, uint64_t event_id)
{
    const idmap_slot *s = NULL;
    for (int g = 0; g < 2 && s == NULL; g++)
        if (l->gen[g].set.cap > 0)
            s = idmap_get(&l->gen[g].set, node_id, event_id);
    return s;
}

/* The writer's ids committed and not indexed yet, from any thread. */
static bool find_unindexed(ledger *l, lt_event_id id, uint64_t *seq)
{
    pthread_mutex_lock(&l->gen_mu);
    const idmap_slot *s = gen_find(l, id.node_id, id.event_id);
    if (s != NULL)
        *seq = s->v1;
    pthread_mutex_unlock(&l->gen_mu);
    return s != NULL;
}

/* The handle that holds DIR/daemon.lock and writes: every entry after events_seq went through
 * its commits (its open indexed the ones before), so its generations hold their ids. */
static bool writer_knows_tail(const ledger *l)
{
    return !l->read_only && l->lock_fd >= 0;
}

static int find_event(ledger *l, lt_event_id id, uint64_t *seq, bool tail)
{
    /* memory first: an id leaves it only once its round is durable in `events`, so a read
     * transaction begun after this look sees it there */
    if (tail && writer_knows_tail(l) && find_unindexed(l, id, seq))
        return 0;
    uint8_t key[16];
    put_be64(key, id.node_id);
    put_be64(key + 8, id.event_id);
    MDB_txn *txn;
    bool cached;
    int rc = rtxn_begin(l, &txn, &cached);
    if (rc != 0)
        return ldb_map_err(rc);
    MDB_val k = {sizeof(key), key}, v;
    rc = mdb_get(txn, l->events, &k, &v);
    if (rc == 0 && v.mv_size != 8)
        rc = MDB_CORRUPTED;
    else if (rc == 0)
        *seq = get_be64(v.mv_data);
    rc = ldb_map_err(rc);
    uint64_t last, from;
    if (rc == LEDGER_ERR_NOT_FOUND && tail && !writer_knows_tail(l) &&
        (rc = last_seq_txn(l, txn, &last)) == 0 &&
        (rc = events_seq_txn(l, txn, last, &from)) == 0) {
        /* another process writes: the newest entries, committed after the index's last flush */
        id_search s = {id, 0};
        rc = from < last ? scan_ids_txn(l, txn, from, match_id, &s) : 0;
        if (rc == 1)
            *seq = s.seq, rc = 0;
        else if (rc == 0)
            rc = LEDGER_ERR_NOT_FOUND;
    }
    rtxn_end(l, txn, cached);
    return rc;
}

int ledger_find_event(ledger *l, lt_event_id id, uint64_t *seq)
{
    return find_event(l, id, seq, true);
}

int ledger_find_event_indexed(ledger *l, lt_event_id id, uint64_t *seq)
{
    return find_event(l, id, seq, false);
}

int ledger_scan_unindexed(ledger *l, int (*fn)(void *ctx, lt_event_id id, uint64_t seq), void *ctx)
{
    return ledger_scan_dedup(l, NULL, fn, ctx);
}

int ledger_get(ledger *l, uint64_t seq, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t key[8];
    put_be64(key, seq);
    MDB_txn *txn;
    bool cached;
    int rc = rtxn_begin(l, &txn, &cached);
    if (rc != 0)
        return ldb_map_err(rc);
    MDB_val k = {sizeof(key), key}, v;
    rc = ldb_map_err(mdb_get(txn, l->entries, &k, &v));
    if (rc == 0) {
        *len = v.mv_size;
        if (v.mv_size > cap)
            rc = LEDGER_ERR_OTHER;
        else
            memcpy(buf, v.mv_data, v.mv_size);
    }
    rtxn_end(l, txn, cached);
    return rc;
}

/* ------------------------------------------------------------------ commit */

/* Records what failed in l->errmsg and returns the LEDGER_ERR_* for rc, which may be an LMDB
 * code, an errno value or already a LEDGER_ERR_*. */
static int fail(ledger *l, int rc, const char *what)
{
    bool lmdb = rc > 0 || (rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE);
    snprintf(l->errmsg, sizeof(l->errmsg), "%s: %s", what,
             lmdb ? mdb_strerror(rc) : ledger_strerror(rc));
    return lmdb ? ldb_map_err(rc) : rc;
}

/* Appends the entries (MDB_APPEND through one cursor) after checking each seq is last + 1. */
static int put_entries(ledger *l, MDB_txn *txn, const ledger_record *recs, size_t n, uint64_t *last)
{
    int rc = last_seq_txn(l, txn, last);
    if (rc != 0)
        return fail(l, rc, "entries: last seq");
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, l->entries, &cur)) != 0)
        return fail(l, rc, "entries: cursor");
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (recs[i].seq != *last + 1) {
            snprintf(l->errmsg, sizeof(l->errmsg), "entries: seq %llu after %llu",
                     (unsigned long long)recs[i].seq, (unsigned long long)*last);
            mdb_cursor_close(cur);
            return LEDGER_ERR_SEQ;
        }
        uint8_t key[8];
        put_be64(key, recs[i].seq);
        MDB_val k = {sizeof(key), key}, v = {recs[i].len, (void *)recs[i].bytes};
        rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND);
        if (rc == 0)
            *last = recs[i].seq;
    }
    mdb_cursor_close(cur);
    return rc ? fail(l, rc, "entries: put") : 0;
}

/* Collects the records' event ids into l->keys, sorted, so that each till's run of keys is
 * written in order into the same few pages. Records with id (0, 0) are system entries and are
 * not indexed. *m is how many. */
static int collect_keys(ledger *l, const ledger_record *recs, size_t n, size_t *m)
{
    if (n > l->keys_cap) {
        size_t cap = n < 1024 ? 1024 : n;
        dedup_key *k = realloc(l->keys, cap * sizeof(*k));
        if (k == NULL)
            return fail(l, ENOMEM, "events: scratch");
        l->keys = k;
        l->keys_cap = cap;
    }
    *m = 0;
    for (size_t i = 0; i < n; i++)
        if (recs[i].id.node_id || recs[i].id.event_id)
            l->keys[(*m)++] = (dedup_key){recs[i].id.node_id, recs[i].id.event_id, recs[i].seq};
    idsort(l->keys, *m, &l->sort);
    return 0;
}

/* Inserts m ids, sorted (idsort()), into `events`. An id
 * there already with the same seq is skipped: a flush that a crash cut off after some of its
 * steps left it, and the next open indexes from events_seq again. With another seq, or twice in
 * keys, it is MDB_KEYEXIST. */
static int index_put(ledger *l, MDB_txn *txn, const dedup_key *keys, size_t m)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, l->events, &cur);
    if (rc != 0)
        return fail(l, rc, "events: cursor");
    for (size_t i = 0; i < m && rc == 0; i++) {
        if (i > 0 && idsort_cmp(&keys[i - 1], &keys[i]) == 0)
            rc = MDB_KEYEXIST;
        uint8_t key[16], val[8];
        put_be64(key, keys[i].node_id);
        put_be64(key + 8, keys[i].event_id);
        put_be64(val, keys[i].seq);
        MDB_val k = {sizeof(key), key}, v = {sizeof(val), val};
        if (rc != 0)
            break; /* twice in keys: not the tolerated case below */
        rc = mdb_cursor_put(cur, &k, &v, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST && v.mv_size == 8 && get_be64(v.mv_data) == keys[i].seq)
            rc = 0; /* v is the item there */
    }
    mdb_cursor_close(cur);
    return rc ? fail(l, rc, "events: put") : 0;
}

/* Room for `more` ids in g's array. Returns 0 or -1 (out of memory). */
static int gen_reserve(struct id_gen *g, size_t more)
{
    if (g->n + more <= g->cap)
        return 0;
    size_t cap = g->cap ? g->cap : 4096;
    while (cap < g->n + more)
        cap *= 2;
    dedup_key *u = realloc(g->ids, cap * sizeof(*u));
    if (u == NULL)
        return -1;
    g->ids = u;
    g->cap = cap;
    return 0;
}

/* Room for `more` ids in g's set. Grown outside gen_mu (only the writer's thread changes a set)
 * and swapped in under it, so a reader waits for the swap, not for a rehash of 65,536 ids.
 * Returns 0 or -1 (out of memory; the set is unchanged). */
static int gen_set_reserve(ledger *l, struct id_gen *g, size_t more)
{
    if (idmap_has_room(&g->set, more))
        return 0;
    idmap bigger;
    if (idmap_copy(&bigger, &g->set, more) != 0)
        return -1;
    pthread_mutex_lock(&l->gen_mu);
    idmap old = g->set;
    g->set = bigger;
    pthread_mutex_unlock(&l->gen_mu);
    idmap_free(&old);
    return 0;
}

/* R29 for a commit, without writing the index: an id twice in the call, among the ids committed
 * but not indexed yet, or in `events` is MDB_KEYEXIST (LEDGER_ERR_DUP). An id above its till's
 * highest (node_max) needs neither lookup. Lookups only read pages. Then makes room for the
 * ids in the current generation and for their tills in node_max, so that keeping them after
 * the commit cannot fail. *m: the ids, in l->keys. */
static int check_events(ledger *l, MDB_txn *txn, const ledger_record *recs, size_t n, size_t *m)
{
    int rc = collect_keys(l, recs, n, m);
    if (rc != 0)
        return rc;
    size_t tills = 0;
    for (size_t i = 0; i < *m; i++) {
        const dedup_key *d = &l->keys[i];
        bool dup = i > 0 && idsort_cmp(&l->keys[i - 1], d) == 0;
        tills += i == 0 || l->keys[i - 1].node_id != d->node_id;
        const idmap_slot *hw = idmap_get(&l->node_max, d->node_id, 0);
        if (!dup && (hw == NULL || d->event_id > hw->v1))
            continue; /* above the till's highest id: new */
        if (dup || gen_find(l, d->node_id, d->event_id) != NULL)
            return fail(l, MDB_KEYEXIST, "events: put");
        uint8_t key[16];
        put_be64(key, d->node_id);
        put_be64(key + 8, d->event_id);
        MDB_val k = {sizeof(key), key}, v;
        rc = mdb_get(txn, l->events, &k, &v);
        if (rc == 0)
            return fail(l, MDB_KEYEXIST, "events: put");
        if (rc != MDB_NOTFOUND)
            return fail(l, rc, "events: get");
    }
    struct id_gen *g = &l->gen[l->collect];
    if (gen_reserve(g, *m) != 0 || idmap_reserve(&l->node_max, tills) != 0)
        return fail(l, ENOMEM, "events: ids to index");
    return gen_set_reserve(l, g, *m) != 0 ? fail(l, ENOMEM, "events: ids to index") : 0;
}

/* After the commit of the ids check_events() found: they wait for ledger_index_flush(). */
static void keep_unindexed(ledger *l, size_t m)
{
    if (m == 0)
        return; /* (no arrays yet before the first id: memcpy of NULL is undefined) */
    struct id_gen *g = &l->gen[l->collect];
    memcpy(g->ids + g->n, l->keys, m * sizeof(*g->ids));
    g->n += m;
    pthread_mutex_lock(&l->gen_mu);
    for (size_t i = 0; i < m; i++) {
        const dedup_key *d = &l->keys[i];
        int rc = idmap_put(&g->set, d->node_id, d->event_id, d->seq, 0);
        LT_ASSERT(rc == 0); /* room was made before the commit */
        (void)rc;
    }
    pthread_mutex_unlock(&l->gen_mu);
    for (size_t i = 0; i < m; i++) { /* keys are sorted: a till's highest comes last */
        const dedup_key *d = &l->keys[i];
        if (i + 1 < m && l->keys[i + 1].node_id == d->node_id)
            continue;
        int rc = idmap_put_max(&l->node_max, d->node_id, 0, d->event_id);
        LT_ASSERT(rc == 0); /* room was made before the commit */
        (void)rc;
    }
}

/* Calls fn for the id of each entry after `after` (system entries, without one, are skipped).
 * Stops at fn's first non-zero return and returns it. */
static int scan_ids_txn(ledger *l, MDB_txn *txn, uint64_t after,
                        int (*fn)(void *ctx, lt_event_id id, uint64_t seq), void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, l->entries, &cur);
    if (rc != 0)
        return ldb_map_err(rc);
    uint8_t key[8];
    put_be64(key, after + 1);
    MDB_val k = {sizeof(key), key}, v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && ret == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        lt_event_id id;
        if (k.mv_size != 8 || entry_decode_id(v.mv_data, v.mv_size, &id) != 0)
            ret = LEDGER_ERR_CORRUPT;
        else if (id.node_id || id.event_id)
            ret = fn(ctx, id, get_be64(k.mv_data));
    }
    mdb_cursor_close(cur);
    if (ret == 0 && rc != MDB_NOTFOUND)
        ret = ldb_map_err(rc);
    return ret;
}

static int collect_id(void *ctx, lt_event_id id, uint64_t seq)
{
    struct id_gen *g = ctx;
    if (gen_reserve(g, 1) != 0)
        return LEDGER_ERR_OTHER;
    g->ids[g->n++] = (dedup_key){id.node_id, id.event_id, seq};
    return 0;
}

/* A writable open: indexes the ids of the entries after events_seq (a process that stopped
 * without ledger_index_flush(): a crash), so that the index is whole before anyone reads it. */
static int index_catch_up(ledger *l, const char *dir, char *err, size_t err_len)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    uint64_t last = 0, from = 0;
    if (rc != 0)
        rc = ldb_map_err(rc);
    if (rc == 0)
        rc = last_seq_txn(l, txn, &last);
    if (rc == 0)
        rc = events_seq_txn(l, txn, last, &from);
    struct id_gen *g = &l->gen[0]; /* its array as scratch */
    g->n = 0;
    if (rc == 0 && from < last) {
        rc = scan_ids_txn(l, txn, from, collect_id, g);
        if (rc == 0) {
            idsort(g->ids, g->n, &l->sort);
            rc = index_put(l, txn, g->ids, g->n);
        }
        if (rc == 0 && (rc = put_events_seq(l, txn, last)) != 0)
            rc = fail(l, rc, "meta: events_seq");
        if (rc == 0) {
            if ((rc = mdb_txn_commit(txn)) != 0) /* frees txn whatever the outcome */
                rc = fail(l, rc, "commit");
            txn = NULL;
        }
    }
    if (txn != NULL)
        mdb_txn_abort(txn);
    if (rc != 0) {
        ldb_fmt_err(err, err_len, "%s: indexing the event ids of entries %llu..%llu: %s", dir,
                    (unsigned long long)from + 1, (unsigned long long)last,
                    l->errmsg[0] ? l->errmsg : ledger_strerror(rc));
        return rc;
    }
    g->n = 0;
    l->committed_seq = l->events_seq = last;
    return 0;
}

static int note_node_max(void *ctx, uint64_t node_id, uint64_t event_id_max)
{
    ledger *l = ctx;
    return idmap_put(&l->node_max, node_id, 0, event_id_max, 0) == 0 ? 0
                                                                     : fail(l, ENOMEM, "node_max");
}

/* A writable open, once the index is whole: each till's highest id (one seek per till). */
static int load_node_max(ledger *l, const char *dir, char *err, size_t err_len)
{
    l->errmsg[0] = '\0';
    int rc = idmap_init(&l->node_max, 1024) == 0 ? ledger_scan_nodes(l, note_node_max, l)
                                                 : fail(l, ENOMEM, "node_max");
    if (rc != 0)
        ldb_fmt_err(err, err_len, "%s: reading each till's highest event id: %s", dir,
                    l->errmsg[0] ? l->errmsg : ledger_strerror(rc));
    return rc;
}

/* Inserts the round's next *k ids (fewer if fewer are left: *k says how many) in txn, and at
 * the round's end events_seq too; round_advance() after the commit. Both a step of its own
 * (ledger_index_flush()) and a commit's slice (ride_round()) write it so. */
static int round_slice(ledger *l, MDB_txn *txn, size_t *k)
{
    const struct id_gen *f = &l->gen[1 - l->collect];
    if (*k > f->n - l->flush_pos)
        *k = f->n - l->flush_pos;
    int rc = index_put(l, txn, f->ids + l->flush_pos, *k);
    if (rc == 0 && l->flush_pos + *k == f->n && (rc = put_events_seq(l, txn, l->flush_seq)) != 0)
        rc = fail(l, rc, "meta: events_seq");
    return rc;
}

int ledger_index_start(ledger *l)
{
    if (l->read_only || l->flushing || l->events_seq == l->committed_seq)
        return 0;
    /* a new round: the ids collected so far, sorted, are inserted from here on */
    struct id_gen *c = &l->gen[l->collect];
    idsort(c->ids, c->n, &l->sort); /* linear for tills sending in order (idsort.h) */
    l->collect = 1 - l->collect;
    LT_ASSERT(l->gen[l->collect].n == 0);
    l->flushing = true;
    l->flush_pos = 0;
    l->flush_seq = l->committed_seq;
    return 0;
}

void ledger_index_ride(ledger *l, size_t max)
{
    l->ride_max = max;
}

int ledger_index_flush(ledger *l, size_t max)
{
    if (l->read_only)
        return fail(l, LEDGER_ERR_OTHER, "index flush on a read-only ledger");
    ledger_index_start(l);
    if (!l->flushing)
        return 0;
    size_t k = max > 0 ? max : SIZE_MAX;
    l->errmsg[0] = '\0';
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc != 0)
        return fail(l, rc, "index: begin");
    rc = round_slice(l, txn, &k);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc; /* the ids stay: the next step tries again */
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        return fail(l, rc, "index: commit");
    round_advance(l, k);
    return 0;
}

bool ledger_index_flushing(const ledger *l)
{
    return l->flushing;
}

size_t ledger_unindexed(const ledger *l)
{
    return l->gen[l->collect].n + (l->flushing ? l->gen[1 - l->collect].n - l->flush_pos : 0);
}

uint64_t ledger_indexed_seq(const ledger *l)
{
    return l->events_seq;
}

/* Parses a decimal sale seq (1..UINT64_MAX, no sign, no leading zero). Returns 0 or -1. */
static int parse_seq(const char *key, uint64_t *seq)
{
    uint64_t v = 0;
    if (key[0] == '0')
        return -1;
    for (const char *p = key; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *seq = v;
    return 0;
}

/* The key a snap has in its own database (returns: the sale seq as u64 BE). */
static int snap_key(const ledger_snap *s, uint8_t *buf, MDB_val *k)
{
    if (s->kind == LEDGER_SNAP_RETURNS) {
        uint64_t seq;
        if (parse_seq(s->key, &seq) != 0)
            return -1;
        put_be64(buf, seq);
        *k = (MDB_val){8, buf};
        return 0;
    }
    *k = (MDB_val){strlen(s->key), (void *)s->key};
    return 0;
}

static MDB_dbi kind_dbi(const ledger *l, int kind)
{
    return kind == LEDGER_SNAP_MEMBER ? l->members
           : kind == LEDGER_SNAP_CARD ? l->cards
                                      : l->returns;
}

static int put_snaps(ledger *l, MDB_txn *txn, const ledger_snap *snaps, size_t n)
{
    static const char *const what[] = {"", "members: put", "cards: put", "returns: put"};
    for (size_t i = 0; i < n; i++) {
        const ledger_snap *s = &snaps[i];
        LT_ASSERT(s->key && s->key[0]);
        LT_ASSERT(s->kind == LEDGER_SNAP_MEMBER || s->kind == LEDGER_SNAP_CARD ||
                  s->kind == LEDGER_SNAP_RETURNS);
        uint8_t seq_key[8];
        MDB_val k, v = {s->len, (void *)s->value};
        if (snap_key(s, seq_key, &k) != 0)
            return fail(l, LEDGER_ERR_OTHER, "returns: key is not a sale seq");
        MDB_dbi dbi = kind_dbi(l, s->kind);
        int rc = s->value ? mdb_put(txn, dbi, &k, &v, 0) : mdb_del(txn, dbi, &k, NULL);
        if (rc != 0 && !(rc == MDB_NOTFOUND && s->value == NULL))
            return fail(l, rc, what[s->kind]);
    }
    return 0;
}

/* Appends dead letters under the next ids and trims the oldest beyond max (a bounded number
 * per commit, so one commit never turns into a long purge). */
static int put_rejects(ledger *l, MDB_txn *txn, const ledger_blob *rj, size_t n, uint64_t max)
{
    if (n == 0)
        return 0;
    if (!l->has_rejects)
        return fail(l, LEDGER_ERR_OTHER, "rejects: database missing");
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, l->rejects, &cur);
    if (rc != 0)
        return fail(l, rc, "rejects: cursor");
    MDB_val k, v;
    uint64_t next = 1;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8)
        next = get_be64(k.mv_data) + 1;
    for (size_t i = 0; i < n && (rc == 0 || rc == MDB_NOTFOUND); i++) {
        uint8_t key[8];
        put_be64(key, next++);
        k = (MDB_val){sizeof key, key};
        v = (MDB_val){rj[i].len, (void *)rj[i].bytes};
        rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_cursor_close(cur);
        return fail(l, rc, "rejects: put");
    }
    MDB_stat st;
    rc = mdb_stat(txn, l->rejects, &st);
    for (size_t extra = st.ms_entries > max ? st.ms_entries - max : 0, i = 0;
         rc == 0 && i < extra && i < n + 1000; i++) {
        if ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0)
            rc = mdb_cursor_del(cur, 0);
    }
    mdb_cursor_close(cur);
    return rc != 0 && rc != MDB_NOTFOUND ? fail(l, rc, "rejects: trim") : 0;
}

/* ------------------------------------------------------------------ staged checkpoints
 *
 * A checkpoint written in one transaction rewrites every member changed since the last one: at
 * a million active members that is a multi-second commit that every acknowledgement waits for.
 * ledger_commit_ckpt() spreads it: the records go into the `stage` database a chunk per commit
 * (key: one byte of ledger_snap_kind, then the key as in its own database; an empty value
 * deletes), and the commit with the last chunk sets checkpoint_seq and meta `stage_seq` to the
 * checkpoint's sequence: from then on the checkpoint is the main databases overlaid with the
 * stage (ledger_scan_snapshot/ledger_scan_returns read it so). Later commits move the stage
 * into place a chunk at a time; when it is empty `stage_seq` is deleted. A stage without
 * `stage_seq` is an unfinished checkpoint (a crash while writing it): it is ignored by readers
 * and cleared by the next one. The previous checkpoint stays valid until the new one is
 * complete, so a crash at any point recovers.
 */

#define STAGE_KEY_MAX (1 + 64)

static const char stage_seq_key[] = "stage_seq";

static int meta_get_u64(ledger *l, MDB_txn *txn, const char *name, uint64_t *v)
{
    MDB_val k = {strlen(name), (void *)name}, d;
    int rc = mdb_get(txn, l->meta, &k, &d);
    if (rc == MDB_NOTFOUND) {
        *v = 0;
        return 0;
    }
    if (rc != 0)
        return rc;
    if (d.mv_size != 8)
        return MDB_CORRUPTED;
    *v = get_be64(d.mv_data);
    return 0;
}

static int meta_put_u64(ledger *l, MDB_txn *txn, const char *name, uint64_t v)
{
    uint8_t val[8];
    put_be64(val, v);
    MDB_val k = {strlen(name), (void *)name}, d = {sizeof(val), val};
    if (v == 0) {
        int rc = mdb_del(txn, l->meta, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    return mdb_put(txn, l->meta, &k, &d, 0);
}

static int cmp_snap_ptr(const void *a, const void *b)
{
    const ledger_snap *x = *(const ledger_snap *const *)a, *y = *(const ledger_snap *const *)b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return strcmp(x->key, y->key);
}

/* Writes snaps into the stage, in key order (neighbouring keys share pages). */
static int put_stage(ledger *l, MDB_txn *txn, const ledger_snap *snaps, size_t n)
{
    if (n == 0)
        return 0;
    const ledger_snap **order = malloc(n * sizeof(*order));
    if (order == NULL)
        return fail(l, LEDGER_ERR_OTHER, "stage: out of memory");
    for (size_t i = 0; i < n; i++)
        order[i] = &snaps[i];
    qsort(order, n, sizeof(*order), cmp_snap_ptr);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const ledger_snap *s = order[i];
        LT_ASSERT(s->key && s->key[0]);
        LT_ASSERT(s->kind >= LEDGER_SNAP_MEMBER && s->kind <= LEDGER_SNAP_RETURNS);
        uint8_t kb[8], sk[STAGE_KEY_MAX];
        MDB_val k;
        if (snap_key(s, kb, &k) != 0) {
            rc = fail(l, LEDGER_ERR_OTHER, "stage: returns key is not a sale seq");
            break;
        }
        if (k.mv_size + 1 > sizeof(sk)) {
            rc = fail(l, LEDGER_ERR_OTHER, "stage: key too long");
            break;
        }
        sk[0] = (uint8_t)s->kind;
        memcpy(sk + 1, k.mv_data, k.mv_size);
        MDB_val key = {k.mv_size + 1, sk}, v = {s->value ? s->len : 0, (void *)s->value};
        if ((rc = mdb_put(txn, l->stage, &key, &v, 0)) != 0)
            rc = fail(l, rc, "stage: put");
    }
    free(order);
    return rc;
}

/* Records in the stage. */
static int stage_count(ledger *l, MDB_txn *txn, uint64_t *n)
{
    MDB_stat st;
    int rc = mdb_stat(txn, l->stage, &st);
    if (rc != 0)
        return fail(l, rc, "stage: stat");
    *n = st.ms_entries;
    return 0;
}

/* Moves up to max records of the stage into their databases. *left: records still staged. */
static int merge_stage(ledger *l, MDB_txn *txn, size_t max, uint64_t *left)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, l->stage, &cur);
    if (rc != 0)
        return fail(l, rc, "stage: cursor");
    MDB_val k, v;
    size_t moved = 0;
    while (moved < max && (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        const uint8_t *kp = k.mv_data;
        if (k.mv_size < 2 || kp[0] < LEDGER_SNAP_MEMBER || kp[0] > LEDGER_SNAP_RETURNS ||
            (kp[0] == LEDGER_SNAP_RETURNS && k.mv_size != 9)) {
            rc = MDB_CORRUPTED;
            break;
        }
        MDB_val mk = {k.mv_size - 1, (void *)(kp + 1)};
        MDB_dbi dbi = kind_dbi(l, kp[0]);
        if (v.mv_size > 0)
            rc = mdb_put(txn, dbi, &mk, &v, 0);
        else if ((rc = mdb_del(txn, dbi, &mk, NULL)) == MDB_NOTFOUND)
            rc = 0;
        if (rc == 0)
            rc = mdb_cursor_del(cur, 0);
        if (rc != 0)
            break;
        moved++;
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return fail(l, rc, "stage: merge");
    return stage_count(l, txn, left);
}

static int set_checkpoint(ledger *l, MDB_txn *txn, uint64_t checkpoint_seq, uint64_t last)
{
    if (checkpoint_seq > last) {
        snprintf(l->errmsg, sizeof(l->errmsg), "checkpoint %llu beyond last seq %llu",
                 (unsigned long long)checkpoint_seq, (unsigned long long)last);
        return LEDGER_ERR_SEQ;
    }
    int rc = meta_put_u64(l, txn, "checkpoint_seq", checkpoint_seq);
    return rc ? fail(l, rc, "meta: put") : 0;
}

/* A checkpoint written directly: whatever the stage holds is settled first (a complete one
 * moved into place, an unfinished one dropped) so it cannot overlay the new records. */
static int settle_stage(ledger *l, MDB_txn *txn)
{
    uint64_t stage_seq, left = 0;
    int rc = meta_get_u64(l, txn, stage_seq_key, &stage_seq);
    if (rc != 0)
        return fail(l, rc, "meta: get");
    if (stage_seq != 0 && (rc = merge_stage(l, txn, SIZE_MAX, &left)) != 0)
        return rc;
    if ((rc = mdb_drop(txn, l->stage, 0)) != 0)
        return fail(l, rc, "stage: clear");
    rc = meta_put_u64(l, txn, stage_seq_key, 0);
    return rc ? fail(l, rc, "meta: put") : 0;
}

static int apply_ckpt(ledger *l, MDB_txn *txn, const ledger_ckpt *ck, uint64_t last,
                      ledger_ckpt_state *out)
{
    uint64_t stage_seq, left = 0;
    int rc = meta_get_u64(l, txn, stage_seq_key, &stage_seq);
    if (rc != 0)
        return fail(l, rc, "meta: get");
    bool building = ck->stage_begin || ck->stage_n > 0 || ck->stage_complete_seq > 0;
    if (building && stage_seq != 0)
        return fail(l, LEDGER_ERR_OTHER, "stage: the previous checkpoint is still being merged");
    if (ck->stage_begin && (rc = mdb_drop(txn, l->stage, 0)) != 0)
        return fail(l, rc, "stage: clear");
    if ((rc = put_stage(l, txn, ck->stage, ck->stage_n)) != 0)
        return rc;
    if (ck->stage_complete_seq > 0) {
        uint64_t current;
        if ((rc = meta_get_u64(l, txn, "checkpoint_seq", &current)) != 0)
            return fail(l, rc, "meta: get");
        if (ck->stage_complete_seq < current)
            return fail(l, LEDGER_ERR_SEQ, "stage: checkpoint older than the current one");
        if ((rc = set_checkpoint(l, txn, ck->stage_complete_seq, last)) != 0)
            return rc;
        uint64_t staged = 0;
        if ((rc = stage_count(l, txn, &staged)) != 0)
            return rc;
        stage_seq = staged > 0 ? ck->stage_complete_seq : 0;
        if ((rc = meta_put_u64(l, txn, stage_seq_key, stage_seq)) != 0)
            return fail(l, rc, "meta: put");
    }
    if (stage_seq != 0 && ck->merge_max > 0) {
        if ((rc = merge_stage(l, txn, ck->merge_max, &left)) != 0)
            return rc;
        if (left == 0 && (rc = meta_put_u64(l, txn, stage_seq_key, 0)) != 0)
            return fail(l, rc, "meta: put");
        if (left == 0)
            stage_seq = 0;
    } else if (stage_seq != 0 && (rc = stage_count(l, txn, &left)) != 0) {
        return rc;
    }
    if (out) {
        out->merging = stage_seq != 0;
        out->stage_left = stage_seq != 0 ? left : 0;
    }
    return 0;
}

/* The index round's next slice, in the commit's own transaction (ledger_index_ride()): twice
 * the commit's entries, at least 256, at most ride_max, so that a round keeps ahead of the ids
 * coming in and each commit carries work in proportion to its own. The round's last slice moves
 * events_seq in the same transaction. */
static int ride_round(ledger *l, MDB_txn *txn, size_t n)
{
    l->ride_k = 0;
    if (!l->flushing || l->ride_max == 0)
        return 0;
    size_t k = 2 * n < 256 ? 256 : 2 * n;
    if (k > l->ride_max)
        k = l->ride_max;
    int rc = round_slice(l, txn, &k);
    if (rc == 0)
        l->ride_k = k;
    return rc;
}

/* After a durable transaction that inserted k more ids of the round: at its end, events_seq
 * moves and the generation empties. */
static void round_advance(ledger *l, size_t k)
{
    if (!l->flushing)
        return;
    struct id_gen *f = &l->gen[1 - l->collect];
    l->flush_pos += k;
    if (l->flush_pos < f->n)
        return;
    l->flushing = false;
    l->events_seq = l->flush_seq;
    size_t flushed = f->n;
    f->n = 0;
    /* readers see the set empty while it is cleared outside the lock (only this thread
     * changes it): those ids are in `events` now. A burst may have grown the set far beyond a
     * round's worth: let it go then (a failed init leaves an empty map of capacity 0, which the
     * next commit grows). */
    pthread_mutex_lock(&l->gen_mu);
    idmap set = f->set;
    f->set = (idmap){0};
    pthread_mutex_unlock(&l->gen_mu);
    if (set.cap > 4096 && set.cap > 8 * flushed) {
        idmap_free(&set);
        (void)idmap_init(&set, flushed);
    } else {
        idmap_clear(&set);
    }
    pthread_mutex_lock(&l->gen_mu);
    f->set = set;
    pthread_mutex_unlock(&l->gen_mu);
}

/* One write transaction: entries, their dedup keys, dead letters, and either a direct
 * checkpoint (snaps, checkpoint_seq) or a step of a staged one (ck); then a durable commit. */
static int commit_txn(ledger *l, const ledger_record *recs, size_t n, const ledger_snap *snaps,
                      size_t snaps_n, uint64_t checkpoint_seq, const ledger_blob *rejects,
                      size_t rejects_n, uint64_t rejects_max, const ledger_ckpt *ck,
                      ledger_ckpt_state *out)
{
    LT_ASSERT(n == 0 || recs);
    LT_ASSERT(snaps_n == 0 || snaps);
    LT_ASSERT(rejects_n == 0 || rejects);
    LT_ASSERT(ck == NULL || ck->stage_n == 0 || ck->stage);
    l->errmsg[0] = '\0';
    if (l->read_only)
        return fail(l, LEDGER_ERR_OTHER, "commit on a read-only ledger");
    if (ck != NULL && !l->has_stage)
        return fail(l, LEDGER_ERR_OTHER, "no stage database");
    MDB_txn *txn;
    int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc != 0)
        return fail(l, rc, "begin");
    uint64_t last = 0;
    size_t ids = 0;
    rc = put_entries(l, txn, recs, n, &last);
    if (rc == 0)
        rc = check_events(l, txn, recs, n, &ids);
    if (rc == 0)
        rc = ride_round(l, txn, n);
    if (rc == 0 && (snaps_n > 0 || checkpoint_seq > 0) && l->has_stage)
        rc = settle_stage(l, txn);
    if (rc == 0)
        rc = put_snaps(l, txn, snaps, snaps_n);
    if (rc == 0)
        rc = put_rejects(l, txn, rejects, rejects_n, rejects_max);
    if (rc == 0 && checkpoint_seq > 0)
        rc = set_checkpoint(l, txn, checkpoint_seq, last);
    if (rc == 0 && ck != NULL)
        rc = apply_ckpt(l, txn, ck, last, out);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = mdb_txn_commit(txn); /* frees txn whatever the outcome */
    if (rc != 0)
        return fail(l, rc, "commit");
    keep_unindexed(l, ids);
    l->committed_seq = last;
    round_advance(l, l->ride_k);
    return 0;
}

int ledger_commit_ckpt(ledger *l, const ledger_record *recs, size_t n, const ledger_ckpt *ck,
                       const ledger_blob *rejects, size_t rejects_n, uint64_t rejects_max,
                       ledger_ckpt_state *out)
{
    LT_ASSERT(ck != NULL);
    return commit_txn(l, recs, n, NULL, 0, 0, rejects, rejects_n, rejects_max, ck, out);
}

int ledger_commit(ledger *l, const ledger_record *recs, size_t n, const ledger_snap *snaps,
                  size_t snaps_n, uint64_t checkpoint_seq)
{
    return ledger_commit_all(l, recs, n, snaps, snaps_n, checkpoint_seq, NULL, 0, 0);
}

int ledger_commit_all(ledger *l, const ledger_record *recs, size_t n, const ledger_snap *snaps,
                      size_t snaps_n, uint64_t checkpoint_seq, const ledger_blob *rejects,
                      size_t rejects_n, uint64_t rejects_max)
{
    if (n == 0 && snaps_n == 0 && checkpoint_seq == 0 && rejects_n == 0 && !l->read_only)
        return 0;
    return commit_txn(l, recs, n, snaps, snaps_n, checkpoint_seq, rejects, rejects_n, rejects_max,
                      NULL, NULL);
}

/* ------------------------------------------------------------------ scans */

/* Cache lines below an entry's node that ledger_scan() prefetches: the next entry, as a rule */
#define SCAN_AHEAD_LINES 8
/* Larger values are not in the leaf page: LMDB puts a value of more than about half a page
 * (2,022 bytes with 4 KiB pages) in overflow pages of its own, and the bytes below it are not
 * the next entry. Such an entry has its first SCAN_BIG_LINES lines prefetched, no more. */
#define SCAN_LEAF_VALUE_MAX 2000
#define SCAN_BIG_LINES 8

/* Starts the cache misses of a scan's next steps while the caller reads this entry. An entry
 * spans 6-8 cache lines, and both LMDB's step to the next node and a decoder skipping over
 * the entry's fields load one line after another, each waiting for the one before: the
 * hardware's prefetcher does not see that pattern in time. Entries go in with MDB_APPEND, and
 * LMDB places each new node of a leaf page below the one before it (a node is an 8-byte
 * header and the 8-byte key, then the value; mdb_node_add()), so the bytes just under this
 * one's node are, as a rule, the next entry: all of it up to about 490 bytes (most entries),
 * else its tail. For the lowest node of a page (1 in 9) it misses: below it are the page's
 * free space and node offsets. A wrong guess fetches a line for nothing; it never faults. Measured
 * on a 26 M-entry ledger, scan and entry_decode_state() in one thread: 1.97 -> 3.46 M
 * entries/s (docs/performance.md). Always inlined, as lt_prefetch() is and for its reason. */
static inline __attribute__((always_inline)) void scan_prefetch(const MDB_val *v)
{
    bool big = v->mv_size > SCAN_LEAF_VALUE_MAX;
    lt_prefetch(v->mv_data, big ? 64 * SCAN_BIG_LINES : v->mv_size);
    if (big)
        return;
    /* one prefetch per line, unrolled (lt_prefetch()'s loop here was 3-4% slower) */
    uintptr_t node = (uintptr_t)v->mv_data - 16; /* an address, not a pointer: off the value */
    for (uintptr_t i = 1; i <= SCAN_AHEAD_LINES; i++)
        __builtin_prefetch((const void *)(node - 64 * i));
}

int ledger_scan(ledger *l, uint64_t from, uint64_t to,
                int (*fn)(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len), void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin_ro(l, &txn);
    if (rc != 0)
        return ldb_map_err(rc);
    if ((rc = mdb_cursor_open(txn, l->entries, &cur)) != 0) {
        mdb_txn_abort(txn);
        return ldb_map_err(rc);
    }
    uint8_t key[8];
    put_be64(key, from);
    MDB_val k = {sizeof(key), key}, v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8) {
            ret = LEDGER_ERR_CORRUPT;
            break;
        }
        uint64_t seq = get_be64(k.mv_data);
        if (to != 0 && seq > to)
            break;
        scan_prefetch(&v);
        if ((ret = fn(ctx, seq, v.mv_data, v.mv_size)) != 0)
            break;
    }
    if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
        ret = ldb_map_err(rc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return ret;
}

/* Copies an LMDB string (not NUL-terminated) into a C array. Returns 0 or -1 if too long. */
static int copy_val(char *dst, size_t cap, const MDB_val *v)
{
    if (v->mv_size == 0 || v->mv_size >= cap)
        return -1;
    memcpy(dst, v->mv_data, v->mv_size);
    dst[v->mv_size] = '\0';
    return 0;
}

/* Stage cursor helpers for scan_overlay(): positioned on the records of one kind. */
static int stage_step(MDB_cursor *sc, int kind, MDB_cursor_op op, MDB_val *k, MDB_val *v)
{
    uint8_t kb = (uint8_t)kind;
    if (op == MDB_SET_RANGE)
        *k = (MDB_val){1, &kb};
    int rc = mdb_cursor_get(sc, k, v, op);
    if (rc == 0 && (k->mv_size < 2 || ((const uint8_t *)k->mv_data)[0] != kb))
        rc = MDB_NOTFOUND;
    if (rc == 0)
        *k = (MDB_val){k->mv_size - 1, (uint8_t *)k->mv_data + 1};
    return rc;
}

/* LMDB's default key order: bytes, then the shorter first. */
static int key_cmp(const MDB_val *a, const MDB_val *b)
{
    size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    int c = memcmp(a->mv_data, b->mv_data, n);
    return c ? c : a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size ? 1 : 0;
}

/* Calls fn for each record of dbi in key order, overlaid with the stage's records of `kind`
 * when the stage holds the current checkpoint: a staged record replaces the one with its key,
 * an empty one deletes it. Returns fn's non-zero value, 0, or a LEDGER_ERR_*. */
static int scan_overlay(ledger *l, MDB_txn *txn, MDB_dbi dbi, int kind,
                        int (*fn)(void *ctx, const MDB_val *k, const MDB_val *v), void *ctx)
{
    uint64_t stage_seq = 0;
    int rc = l->has_stage ? meta_get_u64(l, txn, stage_seq_key, &stage_seq) : 0;
    if (rc != 0)
        return ldb_map_err(rc);
    MDB_cursor *mc = NULL, *sc = NULL;
    if ((rc = mdb_cursor_open(txn, dbi, &mc)) != 0 ||
        (stage_seq != 0 && (rc = mdb_cursor_open(txn, l->stage, &sc)) != 0)) {
        if (mc)
            mdb_cursor_close(mc);
        return ldb_map_err(rc);
    }
    MDB_val mk, mv, sk, sv;
    int mrc = mdb_cursor_get(mc, &mk, &mv, MDB_FIRST);
    int src = sc ? stage_step(sc, kind, MDB_SET_RANGE, &sk, &sv) : MDB_NOTFOUND;
    int ret = 0;
    while (ret == 0 && (mrc == 0 || src == 0)) {
        int c = mrc != 0 ? 1 : src != 0 ? -1 : key_cmp(&mk, &sk);
        if (c < 0) {
            ret = fn(ctx, &mk, &mv);
            mrc = mdb_cursor_get(mc, &mk, &mv, MDB_NEXT);
            continue;
        }
        if (sv.mv_size > 0)
            ret = fn(ctx, &sk, &sv);
        if (c == 0)
            mrc = mdb_cursor_get(mc, &mk, &mv, MDB_NEXT);
        src = stage_step(sc, kind, MDB_NEXT, &sk, &sv);
    }
    mdb_cursor_close(mc);
    if (sc)
        mdb_cursor_close(sc);
    if (ret)
        return ret;
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        return ldb_map_err(mrc);
    return src != 0 && src != MDB_NOTFOUND ? ldb_map_err(src) : 0;
}

typedef struct {
    int (*member_fn)(void *ctx, const uint8_t *rec, size_t len);
    int (*card_fn)(void *ctx, const char *card, const char *member_id);
    int (*returns_fn)(void *ctx, uint64_t sale_seq, const uint8_t *rec, size_t len);
    void *ctx;
} snap_scan;

static int on_member(void *ctx, const MDB_val *k, const MDB_val *v)
{
    (void)k;
    const snap_scan *sc = ctx;
    return sc->member_fn(sc->ctx, v->mv_data, v->mv_size);
}

static int on_card(void *ctx, const MDB_val *k, const MDB_val *v)
{
    const snap_scan *sc = ctx;
    char card[LT_ID_MAX], member[LT_ID_MAX];
    if (copy_val(card, sizeof(card), k) || copy_val(member, sizeof(member), v))
        return LEDGER_ERR_CORRUPT;
    return sc->card_fn(sc->ctx, card, member);
}

static int on_returns(void *ctx, const MDB_val *k, const MDB_val *v)
{
    const snap_scan *sc = ctx;
    if (k->mv_size != 8)
        return LEDGER_ERR_CORRUPT;
    return sc->returns_fn(sc->ctx, get_be64(k->mv_data), v->mv_data, v->mv_size);
}

int ledger_scan_snapshot(ledger *l, int (*member_fn)(void *ctx, const uint8_t *rec, size_t len),
                         int (*card_fn)(void *ctx, const char *card, const char *member_id),
                         void *ctx)
{
    MDB_txn *txn;
    int rc = txn_begin_ro(l, &txn);
    if (rc != 0)
        return ldb_map_err(rc);
    /* Members first: a card can only be loaded once its member exists. */
    snap_scan sc = {member_fn, card_fn, NULL, ctx};
    rc = member_fn ? scan_overlay(l, txn, l->members, LEDGER_SNAP_MEMBER, on_member, &sc) : 0;
    if (rc == 0 && card_fn)
        rc = scan_overlay(l, txn, l->cards, LEDGER_SNAP_CARD, on_card, &sc);
    mdb_txn_abort(txn);
    return rc;
}

/* Calls fn for each record of a database keyed by u64 (big-endian) from key `from` on, inside
 * one read transaction. Returns fn's non-zero value, 0, or a LEDGER_ERR_*. */
static int scan_u64_keys(ledger *l, MDB_dbi dbi, uint64_t from,
                         int (*fn)(void *ctx, uint64_t key, const uint8_t *rec, size_t len),
                         void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin_ro(l, &txn);
    if (rc != 0)
        return ldb_map_err(rc);
    if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
        mdb_txn_abort(txn);
        return ldb_map_err(rc);
    }
    uint8_t key[8];
    put_be64(key, from);
    MDB_val k = {sizeof key, key}, v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && ret == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        ret = k.mv_size != 8 ? LEDGER_ERR_CORRUPT
                             : fn(ctx, get_be64(k.mv_data), v.mv_data, v.mv_size);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return ret ? ret : rc == MDB_NOTFOUND ? 0 : ldb_map_err(rc);
}

int ledger_scan_returns(ledger *l,
                        int (*fn)(void *ctx, uint64_t sale_seq, const uint8_t *rec, size_t len),
                        void *ctx)
{
    if (!l->has_returns)
        return 0;
    MDB_txn *txn;
    int rc = txn_begin_ro(l, &txn);
    if (rc != 0)
        return ldb_map_err(rc);
    snap_scan sc = {NULL, NULL, fn, ctx};
    rc = scan_overlay(l, txn, l->returns, LEDGER_SNAP_RETURNS, on_returns, &sc);
    mdb_txn_abort(txn);
    return rc;
}

int ledger_scan_rejects(ledger *l, uint64_t from_id,
                        int (*fn)(void *ctx, uint64_t id, const uint8_t *rec, size_t len),
                        void *ctx)
{
    return l->has_rejects ? scan_u64_keys(l, l->rejects, from_id, fn, ctx) : 0;
}

int ledger_rejects_range(ledger *l, uint64_t *first_id, uint64_t *last_id, uint64_t *count)
{
    *first_id = *last_id = *count = 0;
    if (!l->has_rejects)
        return 0;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = txn_begin_ro(l, &txn);
    if (rc != 0)
        return ldb_map_err(rc);
    MDB_stat st;
    if ((rc = mdb_stat(txn, l->rejects, &st)) == 0 &&
        (rc = mdb_cursor_open(txn, l->rejects, &cur)) == 0) {
        MDB_val k, v;
        *count = st.ms_entries;
        if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0 && k.mv_size == 8)
            *first_id = get_be64(k.mv_data);
        if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
            *last_id = get_be64(k.mv_data);
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return rc ? ldb_map_err(rc) : 0;
}

/* For each node: seek past its last key, step back one. O(nodes * log n), not O(events). */
static int scan_nodes_cur(MDB_cursor *cur,
                          int (*fn)(void *ctx, uint64_t node_id, uint64_t event_id_max), void *ctx)
{
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size != 16)
            return LEDGER_ERR_CORRUPT;
        uint64_t node = get_be64(k.mv_data);
        uint8_t next[16] = {0};
        bool last_node = node == UINT64_MAX;
        if (!last_node) {
            put_be64(next, node + 1);
            k = (MDB_val){sizeof(next), next};
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        }
        rc = (last_node || rc == MDB_NOTFOUND) ? mdb_cursor_get(cur, &k, &v, MDB_LAST)
             : rc == 0                         ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
                                               : rc;
        if (rc != 0)
            return ldb_map_err(rc);
        LT_ASSERT(k.mv_size == 16 && get_be64(k.mv_data) == node);
        int ret = fn(ctx, node, get_be64((const uint8_t *)k.mv_data + 8));
        if (ret != 0)
            return ret;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    return rc == MDB_NOTFOUND ? 0 : ldb_map_err(rc);
}

int ledger_scan_dedup(ledger *l, int (*node_fn)(void *ctx, uint64_t node_id, uint64_t event_id_max),
                      int (*id_fn)(void *ctx, lt_event_id id, uint64_t seq), void *ctx)
{
    MDB_txn *txn;
    int rc = txn_begin_ro(l, &txn);
    if (rc != 0)
        return ldb_map_err(rc);
    MDB_cursor *cur;
    if (node_fn != NULL && (rc = ldb_map_err(mdb_cursor_open(txn, l->events, &cur))) == 0) {
        rc = scan_nodes_cur(cur, node_fn, ctx);
        mdb_cursor_close(cur);
    }
    uint64_t last, from;
    if (rc == 0 && id_fn != NULL && (rc = last_seq_txn(l, txn, &last)) == 0 &&
        (rc = events_seq_txn(l, txn, last, &from)) == 0 && from < last)
        rc = scan_ids_txn(l, txn, from, id_fn, ctx);
    mdb_txn_abort(txn);
    return rc;
}

int ledger_scan_nodes(ledger *l, int (*fn)(void *ctx, uint64_t node_id, uint64_t event_id_max),
                      void *ctx)
{
    return ledger_scan_dedup(l, fn, NULL, ctx);
}

/* ------------------------------------------------------------------ stat, copy */

int ledger_stat(ledger *l, ledger_stats *st)
{
    memset(st, 0, sizeof(*st));
    MDB_txn *txn;
    int rc = txn_begin_ro(l, &txn);
    if (rc != 0)
        return ldb_map_err(rc);
    MDB_stat ms;
    MDB_dbi dbis[] = {l->entries, l->events, l->members, l->cards};
    uint64_t *outs[] = {&st->entries, &st->events, &st->members, &st->cards};
    for (size_t i = 0; i < LT_ARRAY_LEN(dbis) && rc == 0; i++)
        if ((rc = mdb_stat(txn, dbis[i], &ms)) == 0)
            *outs[i] = ms.ms_entries;
    MDB_envinfo info;
    if (rc == 0)
        rc = mdb_env_info(l->env, &info);
    if (rc == 0)
        rc = mdb_env_stat(l->env, &ms);
    if (rc == 0) {
        st->map_bytes = info.me_mapsize;
        st->page_bytes = ms.ms_psize;
        st->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    }
    mdb_txn_abort(txn);
    return ldb_map_err(rc);
}

int ldb_env_copy(MDB_env *env, const char *dir, char *err, size_t err_len)
{
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        ldb_fmt_err(err, err_len, "%s: mkdir: %s", dir, strerror(errno));
        return ldb_map_err(errno);
    }
    int rc = mdb_env_copy2(env, dir, MDB_CP_COMPACT);
    if (rc != 0) {
        ldb_fmt_err(err, err_len, "%s: copy: %s", dir, mdb_strerror(rc));
        return ldb_map_err(rc);
    }
    return 0;
}

int ledger_copy(ledger *l, const char *dir, char *err, size_t err_len)
{
    return ldb_env_copy(l->env, dir, err, err_len);
}
