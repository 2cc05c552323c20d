/* ckstore.c: the checkpoint of the member state in DIR/state/, an LMDB environment of its own
 * (layout in ckstore.h and docs/ledger.md).
 *
 * As in ledger.c, integers stored as keys or values are big-endian, and the environment is
 * opened without MDB_NOSYNC/MDB_NOMETASYNC: when mdb_txn_commit() returns, what it wrote is on
 * disk. No lock file of its own: the daemon's ledger_open() holds DIR/daemon.lock, and LMDB
 * allows one writer per environment anyway.
 */
#include "ckstore.h"
#include "lmdb_util.h"
#include "state.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define CKSTORE_FORMAT_MIN 1u
#define CKSTORE_MAP_BYTES_DEFAULT ((size_t)64 << 30)
#define CKSTORE_DBS_MAX 8
#define CKSTORE_PATH_MAX 4096
#define CKSTORE_KEY_MAX 511      /* LMDB's default maximum key size */
#define CKSTORE_KEY_PREFIX 9     /* a log key: generation (u64 BE), kind (u8), then the key */
#define CKSTORE_CARD_VAL_MAX 512 /* a card's member id as the loader copies it (plus NUL) */

struct ckstore {
    MDB_env *env;
    MDB_dbi log[2], meta;
    bool read_only;
    /* Read-only beside a writer that has not created the databases yet: false until a read
     * finds them (it opens them then). Guarded by dbs_mu: mdb_dbi_open() must not run in two
     * transactions at once. Always true for a writable open. */
    bool has_dbs;
    pthread_mutex_t dbs_mu;
    /* the checkpoint being written (the writing thread's) */
    bool writing;
    bool full;          /* into the other log, which replaces the active one at the commit */
    int target;         /* the log it goes into */
    uint64_t gen;       /* its number */
    uint64_t written;   /* records written so far */
    uint64_t unordered; /* records put into the log's middle, since the open (ckstore_unordered) */
    char path[CKSTORE_PATH_MAX];
    char errmsg[256];
};

/* ------------------------------------------------------------------ helpers */

/* Records what failed in c->errmsg and returns the LEDGER_ERR_* for rc, which may be an LMDB
 * code, an errno value or already a LEDGER_ERR_*. */
static int fail(ckstore *c, int rc, const char *what)
{
    bool lmdb = rc > 0 || (rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE);
    snprintf(c->errmsg, sizeof(c->errmsg), "%s: %s", what,
             lmdb ? mdb_strerror(rc) : ledger_strerror(rc));
    return lmdb ? ldb_map_err(rc) : rc;
}

/* Begins a read-only transaction. A reader in another process than the writer may find that
 * the map was grown (MDB_MAP_RESIZED): adopt the new size and retry once. */
static int txn_begin_ro(ckstore *c, MDB_txn **t)
{
    int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, t);
    if (rc == MDB_MAP_RESIZED && mdb_env_set_mapsize(c->env, 0) == 0)
        rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, t);
    return rc;
}

static uint32_t get_be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* ------------------------------------------------------------------ open / close */

/* Opens the four databases in txn (creating them if writable) and checks the format number,
 * writing it into a new store. Returns 0, with *missing set if read-only and the databases
 * are not there (the writer has not created them yet), or a LEDGER_ERR_* with err set. */
static int open_dbs_txn(ckstore *c, MDB_txn *txn, bool *missing, char *err, size_t err_len)
{
    *missing = false;
    unsigned flags = c->read_only ? 0 : MDB_CREATE;
    const char *names[] = {"log0", "log1", "meta"};
    MDB_dbi *dbis[] = {&c->log[0], &c->log[1], &c->meta};
    int rc = 0;
    for (size_t i = 0; i < LT_ARRAY_LEN(names) && rc == 0; i++)
        rc = mdb_dbi_open(txn, names[i], flags, dbis[i]);
    if (rc == MDB_NOTFOUND && c->read_only) {
        *missing = true;
        return 0;
    }
    if (rc != 0) {
        ldb_fmt_err(err, err_len, "%s: open databases: %s", c->path, mdb_strerror(rc));
        return ldb_map_err(rc);
    }
    MDB_val k = {6, (void *)"format"}, v;
    rc = mdb_get(txn, c->meta, &k, &v);
    if (rc == 0) {
        uint32_t have = v.mv_size == 4 ? get_be32(v.mv_data) : 0;
        if (have >= CKSTORE_FORMAT_MIN && have <= CKSTORE_FORMAT)
            return 0;
        if (v.mv_size == 4)
            ldb_fmt_err(
                err, err_len,
                "%s: unknown checkpoint store format %u (this build reads formats %u to %u)",
                c->path, have, CKSTORE_FORMAT_MIN, CKSTORE_FORMAT);
        else
            ldb_fmt_err(err, err_len,
                        "%s: unknown checkpoint store format (this build reads formats %u to %u)",
                        c->path, CKSTORE_FORMAT_MIN, CKSTORE_FORMAT);
        return LEDGER_ERR_CORRUPT;
    }
    if (rc == MDB_NOTFOUND && !c->read_only) { /* a new store */
        uint8_t fmt[4] = {(uint8_t)(CKSTORE_FORMAT >> 24), (uint8_t)(CKSTORE_FORMAT >> 16),
                          (uint8_t)(CKSTORE_FORMAT >> 8), (uint8_t)CKSTORE_FORMAT};
        v = (MDB_val){sizeof(fmt), fmt};
        rc = mdb_put(txn, c->meta, &k, &v, 0);
    } else if (rc == MDB_NOTFOUND) {
        rc = 0; /* read-only: the writer creates the databases and the format in one txn */
    }
    if (rc != 0) {
        ldb_fmt_err(err, err_len, "%s: format: %s", c->path, mdb_strerror(rc));
        return ldb_map_err(rc);
    }
    return 0;
}

/* The read path's databases, in txn: 0 with *have true if they exist, 0 with *have false if
 * not yet, or a LEDGER_ERR_*. If this call opens them, *dbs_locked is set and dbs_mu stays
 * held until read_end(), which keeps the handles by committing txn. */
static int read_dbs(ckstore *c, MDB_txn *txn, bool *have, bool *dbs_locked)
{
    *dbs_locked = false;
    *have = true;
    if (!c->read_only)
        return 0;
    pthread_mutex_lock(&c->dbs_mu);
    if (c->has_dbs) {
        pthread_mutex_unlock(&c->dbs_mu);
        return 0;
    }
    *dbs_locked = true;
    bool missing;
    int rc = open_dbs_txn(c, txn, &missing, NULL, 0);
    *have = rc == 0 && !missing;
    return rc;
}

static void read_end(ckstore *c, MDB_txn *txn, bool keep, bool dbs_locked);

/* Begins a read: 0 with *txn, or 0 with *txn NULL if the databases do not exist yet (nothing
 * to read), or a LEDGER_ERR_*. End it with read_end(c, *txn, true, *locked). */
static int read_begin(ckstore *c, MDB_txn **txn, bool *locked)
{
    *locked = false;
    int rc = txn_begin_ro(c, txn);
    if (rc != 0) {
        *txn = NULL;
        return ldb_map_err(rc);
    }
    bool have;
    rc = read_dbs(c, *txn, &have, locked);
    if (rc != 0 || !have) {
        read_end(c, *txn, false, *locked);
        *txn = NULL;
    }
    return rc;
}

/* Ends a read transaction begun before read_dbs(). A transaction that opened the databases is
 * committed when keep is set, so that LMDB keeps their handles for the environment (aborting
 * it would close them). */
static void read_end(ckstore *c, MDB_txn *txn, bool keep, bool dbs_locked)
{
    if (dbs_locked && keep) {
        if (mdb_txn_commit(txn) == 0)
            c->has_dbs = true;
    } else {
        mdb_txn_abort(txn);
    }
    if (dbs_locked)
        pthread_mutex_unlock(&c->dbs_mu);
}

static int open_dbs(ckstore *c, char *err, size_t err_len)
{
    MDB_txn *txn;
    int rc = c->read_only ? txn_begin_ro(c, &txn) : mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc != 0) {
        ldb_fmt_err(err, err_len, "%s: begin: %s", c->path, mdb_strerror(rc));
        return ldb_map_err(rc);
    }
    bool missing;
    if ((rc = open_dbs_txn(c, txn, &missing, err, err_len)) != 0 || missing) {
        mdb_txn_abort(txn); /* missing: not created yet, each read tries again */
        return rc;
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        ldb_fmt_err(err, err_len, "%s: commit: %s", c->path, mdb_strerror(rc));
        return ldb_map_err(rc);
    }
    c->has_dbs = true;
    return 0;
}

static int open_env(ckstore *c, const ckstore_opts *o, char *err, size_t err_len)
{
    /* MDB_NOTLS: read transactions are not tied to a thread. Read-ahead stays on: the store is
     * only ever read through, by a load (from a cold page cache, one page per fault took a
     * 1.1 M-member checkpoint 3.2 s to load instead of 0.65 s, docs/performance.md), and
     * written with pwrite. */
    unsigned flags = MDB_NOTLS | (o->read_only ? MDB_RDONLY : 0);
    return ldb_env_open(&c->env, c->path, CKSTORE_DBS_MAX,
                        o->map_bytes ? o->map_bytes : CKSTORE_MAP_BYTES_DEFAULT, flags,
                        "checkpoint store", err, err_len);
}

int ckstore_open(ckstore **out, const ckstore_opts *o, char *err, size_t err_len)
{
    LT_ASSERT(out && o && o->dir);
    *out = NULL;
    char path[CKSTORE_PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", o->dir, CKSTORE_SUBDIR) >= sizeof(path)) {
        ldb_fmt_err(err, err_len, "%s: path too long", o->dir);
        return LEDGER_ERR_OTHER;
    }
    if (!o->read_only) {
        const char *dirs[] = {o->dir, path};
        for (size_t i = 0; i < LT_ARRAY_LEN(dirs); i++) {
            if (mkdir(dirs[i], 0750) != 0 && errno != EEXIST) {
                ldb_fmt_err(err, err_len, "%s: mkdir: %s", dirs[i], strerror(errno));
                return ldb_map_err(errno);
            }
        }
    }
    ckstore *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ldb_fmt_err(err, err_len, "%s: out of memory", path);
        return LEDGER_ERR_OTHER;
    }
    memcpy(c->path, path, sizeof(path));
    c->read_only = o->read_only;
    pthread_mutex_init(&c->dbs_mu, NULL);
    int rc = open_env(c, o, err, err_len);
    if (rc == 0)
        rc = open_dbs(c, err, err_len);
    if (rc != 0) {
        ckstore_close(&c);
        return rc;
    }
    *out = c;
    return 0;
}

void ckstore_close(ckstore **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    ckstore *c = *cp;
    ckstore_abort(c);
    if (c->env)
        mdb_env_close(c->env);
    pthread_mutex_destroy(&c->dbs_mu);
    free(c);
    *cp = NULL;
}

const char *ckstore_errmsg(const ckstore *c)
{
    return c->errmsg;
}

/* ------------------------------------------------------------------ writing */

static int meta_get_u64(ckstore *c, MDB_txn *txn, const char *name, uint64_t *v);

static int meta_put_u64(ckstore *c, MDB_txn *txn, const char *name, uint64_t v)
{
    uint8_t val[8];
    put_be64(val, v);
    MDB_val k = {strlen(name), (void *)name}, d = {sizeof(val), val};
    return mdb_put(txn, c->meta, &k, &d, 0);
}

/* Deletes every record of log dbi from generation gen on (a checkpoint never completed). */
static int drop_from(MDB_txn *txn, MDB_dbi dbi, uint64_t gen)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return rc;
    uint8_t kb[8];
    put_be64(kb, gen);
    MDB_val k = {sizeof(kb), kb}, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT))
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == EINVAL ? 0 : rc;
}

int ckstore_begin(ckstore *c, bool full)
{
    c->errmsg[0] = '\0';
    if (c->read_only)
        return fail(c, LEDGER_ERR_OTHER, "begin on a read-only checkpoint store");
    if (c->writing)
        return fail(c, LEDGER_ERR_OTHER, "begin: a checkpoint is already being written");
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc != 0)
        return fail(c, rc, "begin");
    uint64_t active = 0, gen = 0;
    if ((rc = meta_get_u64(c, txn, "active", &active)) != 0 ||
        (rc = meta_get_u64(c, txn, "gen", &gen)) != 0 || active > 1) {
        mdb_txn_abort(txn);
        return fail(c, rc ? rc : LEDGER_ERR_CORRUPT, "meta: active log");
    }
    int target = full ? 1 - (int)active : (int)active;
    /* a full checkpoint starts from an empty log; one that adds to the active log first clears
     * what an unfinished one (a crash, a failure) left after its last generation */
    rc = full ? mdb_drop(txn, c->log[target], 0) : drop_from(txn, c->log[target], gen + 1);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc != 0)
        return fail(c, rc, full ? "log: empty" : "log: clear an unfinished checkpoint");
    c->writing = true;
    c->full = full;
    c->target = target;
    c->gen = gen + 1;
    c->written = 0;
    return 0;
}

/* Parses a decimal sale seq (1..UINT64_MAX, digits only, no leading zero; as ledger.c reads
 * the same keys). Returns 0 or -1. */
static int parse_seq(const char *key, uint64_t *seq)
{
    uint64_t v = 0;
    if (key[0] < '1' || key[0] > '9')
        return -1;
    for (const char *p = key; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *seq = v;
    return 0;
}

/* fail() for a chunk: the transaction is aborted and the checkpoint abandoned. */
static int fail_chunk(ckstore *c, MDB_txn *txn, int rc, const char *what)
{
    mdb_txn_abort(txn);
    c->writing = false;
    return fail(c, rc, what);
}

int ckstore_put(ckstore *c, const ledger_snap *snaps, size_t n)
{
    LT_ASSERT(n == 0 || snaps);
    c->errmsg[0] = '\0';
    if (!c->writing)
        return fail(c, LEDGER_ERR_OTHER, "put: no checkpoint is being written (ckstore_begin)");
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc != 0) {
        c->writing = false;
        return fail(c, rc, "put: begin");
    }
    uint8_t kb[CKSTORE_KEY_MAX];
    put_be64(kb, c->gen);
    for (size_t i = 0; i < n; i++) {
        const ledger_snap *s = &snaps[i];
        if (s->kind != LEDGER_SNAP_MEMBER && s->kind != LEDGER_SNAP_CARD &&
            s->kind != LEDGER_SNAP_RETURNS)
            return fail_chunk(c, txn, LEDGER_ERR_OTHER, "put: unknown record kind");
        size_t klen = s->key ? strlen(s->key) : 0;
        if (klen == 0 || klen > CKSTORE_KEY_MAX - CKSTORE_KEY_PREFIX)
            return fail_chunk(c, txn, LEDGER_ERR_OTHER, "put: key empty or too long");
        if (s->kind == LEDGER_SNAP_CARD && s->value &&
            (s->len == 0 || s->len > CKSTORE_CARD_VAL_MAX))
            return fail_chunk(c, txn, LEDGER_ERR_OTHER, "cards: member id empty or too long");
        if (s->kind == LEDGER_SNAP_MEMBER && (s->value == NULL || s->len == 0))
            return fail_chunk(c, txn, LEDGER_ERR_OTHER, "members: empty record");
        if (s->kind == LEDGER_SNAP_RETURNS && (s->value == NULL || s->len == 0))
            return fail_chunk(c, txn, LEDGER_ERR_OTHER, "returns: empty record");
        kb[8] = (uint8_t)s->kind;
        if (s->kind == LEDGER_SNAP_RETURNS) {
            uint64_t seq;
            if (parse_seq(s->key, &seq) != 0)
                return fail_chunk(c, txn, LEDGER_ERR_OTHER, "returns: key is not a sale seq");
            put_be64(kb + CKSTORE_KEY_PREFIX, seq);
            klen = 8;
        } else {
            memcpy(kb + CKSTORE_KEY_PREFIX, s->key, klen);
        }
        MDB_val k = {CKSTORE_KEY_PREFIX + klen, kb},
                v = {s->value ? s->len : 0, (void *)(s->value ? s->value : kb)};
        /* a checkpoint's records in key order go at the log's end: appended, pages filled
         * (an insert elsewhere splits pages in half); any other order still goes in */
        rc = mdb_put(txn, c->log[c->target], &k, &v, MDB_APPEND);
        if (rc == MDB_KEYEXIST && (rc = mdb_put(txn, c->log[c->target], &k, &v, 0)) == 0)
            c->unordered++;
        if (rc != 0)
            return fail_chunk(c, txn, rc, "log: put");
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        c->writing = false;
        return fail(c, rc, "put: commit");
    }
    c->written += n;
    return 0;
}

int ckstore_commit(ckstore *c, uint64_t seq, uint64_t digest)
{
    c->errmsg[0] = '\0';
    if (!c->writing)
        return fail(c, LEDGER_ERR_OTHER, "commit: no checkpoint is being written");
    c->writing = false;
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc != 0)
        return fail(c, rc, "commit: begin");
    uint64_t records = 0;
    if (!c->full)
        rc = meta_get_u64(c, txn, "records", &records);
    if (rc == 0 && c->full) /* the log it replaces */
        rc = mdb_drop(txn, c->log[1 - c->target], 0);
    if (rc == 0)
        rc = meta_put_u64(c, txn, "seq", seq);
    if (rc == 0)
        rc = meta_put_u64(c, txn, "digest", digest);
    if (rc == 0)
        rc = meta_put_u64(c, txn, "active", (uint64_t)c->target);
    if (rc == 0)
        rc = meta_put_u64(c, txn, "gen", c->gen);
    if (rc == 0)
        rc = meta_put_u64(c, txn, "records", records + c->written);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return fail(c, rc, "meta: put");
    }
    rc = mdb_txn_commit(txn); /* frees the transaction whatever the outcome */
    return rc ? fail(c, rc, "commit") : 0;
}

void ckstore_abort(ckstore *c)
{
    c->writing = false; /* what it wrote is cleared by the next ckstore_begin() */
}

uint64_t ckstore_unordered(const ckstore *c)
{
    return c->unordered;
}

bool ckstore_writing(const ckstore *c)
{
    return c->writing;
}

/* ------------------------------------------------------------------ reading */

static int meta_get_u64(ckstore *c, MDB_txn *txn, const char *name, uint64_t *v)
{
    MDB_val k = {strlen(name), (void *)name}, d;
    int rc = mdb_get(txn, c->meta, &k, &d);
    *v = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return ldb_map_err(rc);
    if (d.mv_size != 8)
        return LEDGER_ERR_CORRUPT;
    *v = get_be64(d.mv_data);
    return 0;
}

static int meta_txn(ckstore *c, MDB_txn *txn, uint64_t *seq, uint64_t *digest)
{
    int rc = meta_get_u64(c, txn, "seq", seq);
    return rc ? rc : meta_get_u64(c, txn, "digest", digest);
}

int ckstore_log_records(ckstore *c, uint64_t *records)
{
    *records = 0;
    MDB_txn *txn;
    bool locked;
    int rc = read_begin(c, &txn, &locked);
    if (rc != 0 || txn == NULL)
        return rc;
    rc = meta_get_u64(c, txn, "records", records);
    read_end(c, txn, true, locked);
    return rc;
}

int ckstore_meta(ckstore *c, uint64_t *seq, uint64_t *digest)
{
    *seq = *digest = 0;
    MDB_txn *txn;
    bool locked;
    int rc = read_begin(c, &txn, &locked);
    if (rc != 0 || txn == NULL)
        return rc;
    rc = meta_txn(c, txn, seq, digest);
    read_end(c, txn, true, locked);
    return rc;
}

/* Copies an LMDB string (not NUL-terminated) into a C array. Returns 0 or -1 if empty or too
 * long. */
static int copy_val(char *dst, size_t cap, const MDB_val *v)
{
    if (v->mv_size == 0 || v->mv_size >= cap)
        return -1;
    memcpy(dst, v->mv_data, v->mv_size);
    dst[v->mv_size] = '\0';
    return 0;
}

/* Calls the loader for each record of the active log up to generation gen, in key order
 * (generation, then kind, then key): a later record of a key replaces an earlier one. Returns
 * the callback's non-zero value, 0, or a LEDGER_ERR_*. */
static int load_log(MDB_txn *txn, MDB_dbi dbi, uint64_t gen, const ckpt_loader *ld)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return ldb_map_err(rc);
    char key[CKSTORE_KEY_MAX + 1], member[CKSTORE_CARD_VAL_MAX + 1];
    MDB_val k, v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && ret == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= CKSTORE_KEY_PREFIX) {
            ret = LEDGER_ERR_CORRUPT;
            break;
        }
        const uint8_t *kp = k.mv_data;
        if (get_be64(kp) > gen)
            break; /* an unfinished checkpoint's records */
        MDB_val rest = {k.mv_size - CKSTORE_KEY_PREFIX, (void *)(kp + CKSTORE_KEY_PREFIX)};
        switch (kp[8]) {
        case LEDGER_SNAP_MEMBER:
            if (ld->member)
                ret =
                    v.mv_size == 0 ? LEDGER_ERR_CORRUPT : ld->member(ld->ctx, v.mv_data, v.mv_size);
            break;
        case LEDGER_SNAP_CARD:
            if (ld->card)
                ret = copy_val(key, sizeof(key), &rest) ||
                              (v.mv_size > 0 && copy_val(member, sizeof(member), &v))
                          ? LEDGER_ERR_CORRUPT
                          : ld->card(ld->ctx, key, v.mv_size > 0 ? member : NULL);
            break;
        case LEDGER_SNAP_RETURNS:
            if (ld->returns)
                ret = rest.mv_size != 8
                          ? LEDGER_ERR_CORRUPT
                          : ld->returns(ld->ctx, get_be64(rest.mv_data), v.mv_data, v.mv_size);
            break;
        default:
            ret = LEDGER_ERR_CORRUPT;
        }
    }
    mdb_cursor_close(cur);
    return ret ? ret : rc == MDB_NOTFOUND || rc == 0 ? 0 : ldb_map_err(rc);
}

int ckstore_load(ckstore *c, const ckpt_loader *ld, uint64_t *seq, uint64_t *digest)
{
    LT_ASSERT(ld != NULL);
    *seq = *digest = 0;
    MDB_txn *txn;
    bool locked;
    int rc = read_begin(c, &txn, &locked);
    if (rc != 0 || txn == NULL)
        return rc;
    uint64_t active = 0, gen = 0;
    rc = meta_txn(c, txn, seq, digest);
    if (rc == 0)
        rc = meta_get_u64(c, txn, "active", &active);
    if (rc == 0)
        rc = meta_get_u64(c, txn, "gen", &gen);
    if (rc == 0 && active > 1)
        rc = LEDGER_ERR_CORRUPT;
    if (rc == 0 && gen > 0)
        rc = load_log(txn, c->log[active], gen, ld);
    read_end(c, txn, true, locked);
    return rc;
}

int ckstore_copy(ckstore *c, const char *dir, char *err, size_t err_len)
{
    return ldb_env_copy(c->env, dir, err, err_len); /* never a checkpoint half written */
}

/* ------------------------------------------------------------------ loading into a state */

static int to_state_member(void *ctx, const uint8_t *rec, size_t len)
{
    return state_load_member(ctx, rec, len) == 0 ? 0 : LEDGER_ERR_CORRUPT;
}

static int to_state_card(void *ctx, const char *card, const char *member_id)
{
    return state_load_card(ctx, card, member_id) == 0 ? 0 : LEDGER_ERR_CORRUPT;
}

static int to_state_returns(void *ctx, uint64_t sale_seq, const uint8_t *rec, size_t len)
{
    return state_load_returns(ctx, sale_seq, rec, len) == 0 ? 0 : LEDGER_ERR_CORRUPT;
}

ckpt_loader ckpt_state_loader(state *s)
{
    return (ckpt_loader){to_state_member, to_state_card, to_state_returns, s};
}

/* ------------------------------------------------------------------ digests */

uint64_t ckstore_digest(const uint8_t *bytes, size_t len)
{
    return XXH3_64bits(bytes, len);
}

int ckstore_entry_digest(ledger *l, uint64_t seq, uint64_t *digest)
{
    *digest = 0;
    if (seq == 0)
        return 0;
    uint8_t small[4096];
    uint8_t *buf = small, *big = NULL;
    size_t cap = sizeof(small), len = 0;
    int rc;
    /* Entries are at most ENTRY_BYTES_MAX (entry.h), most far less: grow when told the size. */
    while ((rc = ledger_get(l, seq, buf, cap, &len)) == LEDGER_ERR_OTHER && len > cap) {
        uint8_t *p = realloc(big, len);
        if (p == NULL) {
            rc = LEDGER_ERR_OTHER;
            break;
        }
        buf = big = p;
        cap = len;
    }
    if (rc == 0)
        *digest = ckstore_digest(buf, len);
    free(big);
    return rc;
}

/* ------------------------------------------------------------------ recovery */

/* Whether checkpoint (s, dg) belongs to the ledger: 0 and *ok, or an error. Says why not. */
static int state_matches(ledger *l, uint64_t s, uint64_t dg, bool *ok, char *why, size_t why_len)
{
    *ok = false;
    uint64_t last, have;
    int rc = ledger_last_seq(l, &last);
    if (rc != 0)
        return rc;
    if (s > last) {
        ldb_fmt_err(why, why_len,
                    "state/ checkpoint at seq %llu is past the ledger's last entry %llu (not this "
                    "ledger's, or ahead of it)",
                    (unsigned long long)s, (unsigned long long)last);
        return 0;
    }
    if ((rc = ckstore_entry_digest(l, s, &have)) != 0)
        return rc;
    if (have != dg) {
        ldb_fmt_err(
            why, why_len,
            "state/ checkpoint at seq %llu does not match the ledger's entry there (another "
            "ledger's)",
            (unsigned long long)s);
        return 0;
    }
    *ok = true;
    return 0;
}

const char *ckpt_source_name(ckpt_source src)
{
    switch (src) {
    case CKPT_SRC_STATE:
        return "state";
    case CKPT_SRC_LEDGER:
        return "ledger";
    case CKPT_SRC_NONE:
        break;
    }
    return "none";
}

int ckpt_load(ledger *l, ckstore *c, const ckpt_loader *ld, uint64_t *seq, ckpt_source *src,
              char *why, size_t why_len)
{
    LT_ASSERT(l && ld && seq && src);
    *seq = 0;
    *src = CKPT_SRC_NONE;
    ldb_fmt_err(why, why_len, "%s", "");
    uint64_t s = 0, dg = 0;
    int rc = c ? ckstore_meta(c, &s, &dg) : 0;
    if (rc != 0)
        return rc;
    bool ok = false;
    if ((s != 0 || dg != 0) && (rc = state_matches(l, s, dg, &ok, why, why_len)) != 0)
        return rc;
    if (ok) {
        uint64_t s2, dg2;
        if ((rc = ckstore_load(c, ld, &s2, &dg2)) != 0)
            return rc;
        /* The loader has what the load's transaction saw. The daemon is the only writer and
         * loads before it writes, so for it that is the checkpoint validated above; only
         * loyaltyctl beside a running daemon can see a checkpoint committed in between. Then
         * the one it loaded must belong to the ledger too (it does, unless written wrong); if
         * not, the loader holds a checkpoint that cannot be used and the caller must retry. */
        if (s2 != s || dg2 != dg) {
            if ((rc = state_matches(l, s2, dg2, &ok, NULL, 0)) != 0)
                return rc;
            if (!ok || (s2 == 0 && dg2 == 0)) {
                ldb_fmt_err(why, why_len, "%s", "the checkpoint moved while loading; try again");
                return LEDGER_ERR_OTHER;
            }
        }
        *seq = s2;
        *src = CKPT_SRC_STATE;
        return 0;
    }
    /* The ledger's own checkpoint tables (data written by an older loyaltyd). */
    uint64_t cs = 0;
    if ((rc = ledger_checkpoint_seq(l, &cs)) != 0)
        return rc;
    if (cs == 0)
        return 0;
    if ((ld->member || ld->card) &&
        (rc = ledger_scan_snapshot(l, ld->member, ld->card, ld->ctx)) != 0)
        return rc;
    if (ld->returns && (rc = ledger_scan_returns(l, ld->returns, ld->ctx)) != 0)
        return rc;
    *seq = cs;
    *src = CKPT_SRC_LEDGER;
    return 0;
}
