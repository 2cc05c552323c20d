/* test_ledger_ckstore.c: the checkpoint store in DIR/state/ (ckstore.h), a log of generations:
 * a committed checkpoint reads back exactly, in log order (generation, kind, key) with later
 * versions of a key after earlier ones; an unfinished generation (an abort, a failed put, a
 * crash after durable chunks) is invisible and cleared by the next begin; a full checkpoint
 * replaces the log, and an abandoned one leaves it; card unlinks; bad puts abandon the
 * checkpoint; malformed log keys and meta values are LEDGER_ERR_CORRUPT; read-only opens (no
 * store, a writer that has not created its databases or committed yet), the format number, hot
 * copies, entry digests, and ckpt_load()'s choice between state/, the ledger's own tables and
 * none. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>
#include <xxhash.h>

#include "ckstore.h"
#include "ledger.h"

/* The tests' map size (valgrind cannot reserve the default 64 GiB) */
#define MAP_BYTES (64 << 20)
#define VIEW_MAX 64

typedef struct {
    char dir[64];
} fixture;

static int setup(void **st)
{
    fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/test_ledger_ckstore.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    fixture *f = *st;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static ckstore *open_store(const char *dir, bool read_only)
{
    ckstore_opts o = {.dir = dir, .map_bytes = MAP_BYTES, .read_only = read_only};
    ckstore *c = NULL;
    char err[256] = "";
    int rc = ckstore_open(&c, &o, err, sizeof(err));
    if (rc != 0)
        fail_msg("ckstore_open: %s (%s)", err, ledger_strerror(rc));
    return c;
}

static ledger *open_ledger(const char *dir)
{
    ledger_opts o = {.dir = dir, .map_bytes = MAP_BYTES, .exclusive = true};
    ledger *l = NULL;
    char err[256] = "";
    int rc = ledger_open(&l, &o, err, sizeof(err));
    if (rc != 0)
        fail_msg("ledger_open: %s (%s)", err, ledger_strerror(rc));
    return l;
}

/* Record payloads are "entry <seq>". */
static char g_payload[64][32];

/* Appends seqs from..to to the ledger, event ids (1, seq). */
static void append(ledger *l, uint64_t from, uint64_t to)
{
    ledger_record recs[64];
    size_t n = 0;
    for (uint64_t s = from; s <= to; s++) {
        char *p = g_payload[n];
        snprintf(p, sizeof(g_payload[0]), "entry %llu", (unsigned long long)s);
        recs[n++] = (ledger_record){s, {1, s}, (const uint8_t *)p, strlen(p)};
    }
    assert_int_equal(ledger_commit(l, recs, n, NULL, 0, 0), 0);
}

/* What a loader is given, every record version in log order: "m:<rec>", "c:<card>=<member>"
 * ("c:<card>=-" unlinked), "r:<seq>=<rec>". */
typedef struct {
    char items[VIEW_MAX][48];
    int n;
    int stop_at; /* > 0: the callback returns 99 on this item (1-based) */
} view;

static int v_add(view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int v_add(view *v, const char *fmt, ...)
{
    assert_true(v->n < VIEW_MAX);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->items[v->n++], sizeof(v->items[0]), fmt, ap);
    va_end(ap);
    return v->n == v->stop_at ? 99 : 0;
}

static int v_member(void *ctx, const uint8_t *rec, size_t len)
{
    return v_add(ctx, "m:%.*s", (int)len, (const char *)rec);
}

static int v_card(void *ctx, const char *card, const char *member)
{
    return v_add(ctx, "c:%s=%s", card, member ? member : "-");
}

static int v_returns(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    return v_add(ctx, "r:%llu=%.*s", (unsigned long long)seq, (int)len, (const char *)rec);
}

static void v_join(const view *v, char *out, size_t cap)
{
    out[0] = '\0';
    for (int i = 0; i < v->n; i++) {
        strncat(out, v->items[i], cap - strlen(out) - 1);
        strncat(out, " ", cap - strlen(out) - 1);
    }
}

/* The whole log up to the checkpoint's generation as one string; its seq and digest. */
static int load_view(ckstore *c, char *out, size_t cap, uint64_t *seq, uint64_t *digest)
{
    view v = {0};
    ckpt_loader ld = {v_member, v_card, v_returns, &v};
    int rc = ckstore_load(c, &ld, seq, digest);
    v_join(&v, out, cap);
    return rc;
}

static void assert_view(ckstore *c, const char *want, uint64_t want_seq, uint64_t want_digest)
{
    char got[1024];
    uint64_t seq = 1, digest = 1;
    assert_int_equal(load_view(c, got, sizeof(got), &seq, &digest), 0);
    assert_string_equal(got, want);
    assert_int_equal(seq, want_seq);
    assert_int_equal(digest, want_digest);
    assert_int_equal(ckstore_meta(c, &seq, &digest), 0);
    assert_int_equal(seq, want_seq);
    assert_int_equal(digest, want_digest);
}

/* The state a load builds, as state_load_*() do: a later record of a key replaces an earlier
 * one, an unlinked card goes. A member's key is its record up to the first digit (the tests'
 * member records are the id followed by a version: "a2" is member a's second). */
typedef struct {
    char kind; /* 'm', 'c', 'r' */
    char key[40];
    uint64_t seq; /* 'r': the sale */
    char val[40];
} sm_entry;

typedef struct {
    sm_entry e[VIEW_MAX];
    int n;
    int calls; /* records given to the loader, every version */
} state_map;

static int sm_set(state_map *m, char kind, const char *key, size_t klen, uint64_t seq,
                  const char *val, size_t vlen)
{
    m->calls++;
    int i = 0;
    while (i < m->n && !(m->e[i].kind == kind && strlen(m->e[i].key) == klen &&
                         memcmp(m->e[i].key, key, klen) == 0))
        i++;
    if (val == NULL) { /* unlinked: gone, if it was there at all */
        if (i < m->n)
            m->e[i] = m->e[--m->n];
        return 0;
    }
    if (i == m->n) {
        assert_true(m->n < VIEW_MAX);
        m->n++;
        m->e[i].kind = kind;
        snprintf(m->e[i].key, sizeof(m->e[i].key), "%.*s", (int)klen, key);
        m->e[i].seq = seq;
    }
    snprintf(m->e[i].val, sizeof(m->e[i].val), "%.*s", (int)vlen, val);
    return 0;
}

static int sm_member(void *ctx, const uint8_t *rec, size_t len)
{
    size_t klen = 0;
    while (klen < len && (rec[klen] < '0' || rec[klen] > '9'))
        klen++;
    return sm_set(ctx, 'm', (const char *)rec, klen, 0, (const char *)rec, len);
}

static int sm_card(void *ctx, const char *card, const char *member)
{
    return sm_set(ctx, 'c', card, strlen(card), 0, member, member ? strlen(member) : 0);
}

static int sm_returns(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    char key[24];
    int klen = snprintf(key, sizeof(key), "%llu", (unsigned long long)seq);
    return sm_set(ctx, 'r', key, (size_t)klen, seq, (const char *)rec, len);
}

static int sm_rank(char kind)
{
    return kind == 'm' ? 0 : kind == 'c' ? 1 : 2;
}

static int sm_cmp(const void *a, const void *b)
{
    const sm_entry *x = a, *y = b;
    if (x->kind != y->kind)
        return sm_rank(x->kind) - sm_rank(y->kind);
    if (x->kind == 'r')
        return x->seq < y->seq ? -1 : x->seq > y->seq;
    return strcmp(x->key, y->key);
}

/* The state after a load, "m:<id>=<rec> c:<card>=<member> r:<seq>=<rec> " in kind then key
 * order; the number of records the loader was given. */
static int load_state(ckstore *c, char *out, size_t cap, int *calls, uint64_t *seq,
                      uint64_t *digest)
{
    state_map m = {0};
    ckpt_loader ld = {sm_member, sm_card, sm_returns, &m};
    int rc = ckstore_load(c, &ld, seq, digest);
    qsort(m.e, (size_t)m.n, sizeof(m.e[0]), sm_cmp);
    out[0] = '\0';
    for (int i = 0; i < m.n; i++) {
        size_t at = strlen(out);
        snprintf(out + at, cap - at, "%c:%s=%s ", m.e[i].kind, m.e[i].key, m.e[i].val);
    }
    *calls = m.calls;
    return rc;
}

/* The state is want, from want_calls records (-1: any number), at want_seq. */
static void assert_state(ckstore *c, const char *want, int want_calls, uint64_t want_seq)
{
    char got[1024];
    int calls;
    uint64_t seq = 1, digest;
    assert_int_equal(load_state(c, got, sizeof(got), &calls, &seq, &digest), 0);
    assert_string_equal(got, want);
    if (want_calls >= 0)
        assert_int_equal(calls, want_calls);
    assert_int_equal(seq, want_seq);
}

static void assert_log_records(ckstore *c, uint64_t want)
{
    uint64_t n = 12345;
    assert_int_equal(ckstore_log_records(c, &n), 0);
    assert_int_equal(n, want);
}

#define M(key, rec)                                                                                \
    {                                                                                              \
        LEDGER_SNAP_MEMBER, (key), (const uint8_t *)(rec), sizeof(rec) - 1                         \
    }
#define C(card, member)                                                                            \
    {                                                                                              \
        LEDGER_SNAP_CARD, (card), (const uint8_t *)(member), sizeof(member) - 1                    \
    }
#define R(seq, rec)                                                                                \
    {                                                                                              \
        LEDGER_SNAP_RETURNS, (seq), (const uint8_t *)(rec), sizeof(rec) - 1                        \
    }
#define UNLINK(card)                                                                               \
    {                                                                                              \
        LEDGER_SNAP_CARD, (card), NULL, 0                                                          \
    }

/* Checkpoint A at seq 42, written out of key order (returns 200 sorts after 10 numerically,
 * before it as text): generation 1, 8 records. */
static const char view_a[] = "m:a1 m:b1 m:c1 c:k1=a c:k2=b r:3=x1 r:10=y1 r:200=z1 ";
static const char state_a[] = "m:a=a1 m:b=b1 m:c=c1 c:k1=a c:k2=b r:3=x1 r:10=y1 r:200=z1 ";
#define SEQ_A 42
#define DIGEST_A 0x0123456789abcdefull
#define RECORDS_A 8

static void commit_a(ckstore *c)
{
    ledger_snap s[] = {R("200", "z1"), M("c", "c1"), C("k2", "b"), M("a", "a1"),
                       R("3", "x1"),   C("k1", "a"), M("b", "b1"), R("10", "y1")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_true(ckstore_writing(c));
    assert_int_equal(ckstore_put(c, s, LT_ARRAY_LEN(s)), 0);
    assert_int_equal(ckstore_commit(c, SEQ_A, DIGEST_A), 0);
    assert_false(ckstore_writing(c));
    assert_string_equal(ckstore_errmsg(c), "");
}

/* Writes (set >= 0) and reads meta "format" of DIR/state with LMDB directly, as another build
 * would. 0: none. */
static uint32_t stored_format(const char *dir, int set)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/state", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    MDB_val k = {6, (void *)"format"}, v;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    if (set >= 0) {
        uint8_t b[4] = {0, 0, 0, (uint8_t)set};
        v = (MDB_val){4, b};
        assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    }
    uint32_t fmt = 0;
    if (mdb_get(txn, meta, &k, &v) == 0 && v.mv_size == 4) {
        const uint8_t *b = v.mv_data;
        fmt = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    return fmt;
}

/* Opens DIR/state with LMDB directly (the store must be closed: LMDB allows an environment
 * open once per process) and begins a write transaction on database db. */
static MDB_env *raw_open(const char *dir, const char *db, MDB_txn **txn, MDB_dbi *dbi)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/state", dir);
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, txn), 0);
    assert_int_equal(mdb_dbi_open(*txn, db, 0, dbi), 0);
    return env;
}

/* Puts one raw record into database db of DIR/state. */
static void raw_put(const char *dir, const char *db, const char *key, size_t klen, const char *val,
                    size_t vlen)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_env *env = raw_open(dir, db, &txn, &dbi);
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* The number of records in database db of DIR/state: what is on disk, finished or not. */
static size_t raw_count(const char *dir, const char *db)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_env *env = raw_open(dir, db, &txn, &dbi);
    MDB_stat s;
    assert_int_equal(mdb_stat(txn, dbi, &s), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return s.ms_entries;
}

/* ------------------------------------------------------------------ the store */

/* A writable open creates DIR (one level, as ledger_open) and DIR/state with an empty store
 * of this build's format; an empty store loads nothing and has no log records. */
static void test_ckstore_open_creates_empty_store(void **st)
{
    fixture *f = *st;
    char dir[96];
    snprintf(dir, sizeof(dir), "%s/data", f->dir);
    ckstore *c = open_store(dir, false);
    char path[128];
    snprintf(path, sizeof(path), "%s/state/data.mdb", dir);
    assert_int_equal(access(path, F_OK), 0);
    assert_false(ckstore_writing(c));
    assert_view(c, "", 0, 0);
    assert_log_records(c, 0);
    ckstore_close(&c);
    assert_null(c);
    ckstore_close(&c); /* safe on NULL */
    assert_int_equal(stored_format(dir, -1), CKSTORE_FORMAT);
    assert_int_equal(raw_count(dir, "log0"), 0);
    assert_int_equal(raw_count(dir, "log1"), 0);
    c = open_store(dir, false); /* reopens */
    assert_view(c, "", 0, 0);
    ckstore_close(&c);
}

/* What is committed loads back exactly: members, cards, returns in seq order, seq and digest;
 * across a reopen too, writable or not. */
static void test_ckstore_commit_then_load(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    commit_a(c);
    assert_view(c, view_a, SEQ_A, DIGEST_A);
    assert_log_records(c, RECORDS_A);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), RECORDS_A);
    assert_int_equal(raw_count(f->dir, "log1"), 0);
    c = open_store(f->dir, false);
    assert_view(c, view_a, SEQ_A, DIGEST_A);
    ckstore_close(&c);
    c = open_store(f->dir, true);
    assert_view(c, view_a, SEQ_A, DIGEST_A);
    assert_state(c, state_a, RECORDS_A, SEQ_A);
    assert_log_records(c, RECORDS_A);
    /* NULL callbacks are skipped; a callback's non-zero return stops the load */
    view v = {.stop_at = 2};
    ckpt_loader ld = {NULL, v_card, v_returns, &v};
    uint64_t seq, digest;
    assert_int_equal(ckstore_load(c, &ld, &seq, &digest), 99);
    assert_int_equal(v.n, 2);
    assert_string_equal(v.items[0], "c:k1=a");
    assert_string_equal(v.items[1], "c:k2=b");
    ckstore_close(&c);
}

/* Incremental checkpoints append generations: a load gives every version of a key in log
 * order (generation, then kind, then key), the last one winning; a card unlinked in a later
 * generation is given with member NULL; a generation may be written in several chunks or none;
 * log_records counts every record written. */
static void test_ckstore_incremental_generations(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    ledger_snap g1[] = {R("3", "x1"), M("b", "b1"), C("k2", "b"), M("a", "a1"), C("k1", "a")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g1, LT_ARRAY_LEN(g1)), 0);
    assert_int_equal(ckstore_commit(c, 10, 100), 0);
    assert_view(c, "m:a1 m:b1 c:k1=a c:k2=b r:3=x1 ", 10, 100);
    assert_log_records(c, 5);

    ledger_snap g2[] = {UNLINK("k1"), R("3", "x2"), M("a", "a2")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g2, LT_ARRAY_LEN(g2)), 0);
    assert_int_equal(ckstore_commit(c, 20, 200), 0);
    assert_view(c, "m:a1 m:b1 c:k1=a c:k2=b r:3=x1 m:a2 c:k1=- r:3=x2 ", 20, 200);
    assert_state(c, "m:a=a2 m:b=b1 c:k2=b r:3=x2 ", 8, 20);
    assert_log_records(c, 8);

    /* two chunks: k1 linked again, to b; an unlink of a card never linked is only a marker */
    ledger_snap g3a[] = {M("b", "b3"), UNLINK("k7")}, g3b[] = {C("k1", "b")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g3a, LT_ARRAY_LEN(g3a)), 0);
    assert_int_equal(ckstore_put(c, g3b, LT_ARRAY_LEN(g3b)), 0);
    assert_true(ckstore_writing(c));
    assert_int_equal(ckstore_commit(c, 30, 300), 0);
    assert_view(c, "m:a1 m:b1 c:k1=a c:k2=b r:3=x1 m:a2 c:k1=- r:3=x2 m:b3 c:k1=b c:k7=- ", 30,
                300);
    assert_state(c, "m:a=a2 m:b=b3 c:k1=b c:k2=b r:3=x2 ", 11, 30);
    assert_log_records(c, 11);

    /* a generation without records moves seq and digest only */
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_commit(c, 31, 301), 0);
    assert_state(c, "m:a=a2 m:b=b3 c:k1=b c:k2=b r:3=x2 ", 11, 31);
    assert_log_records(c, 11);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), 11);

    c = open_store(f->dir, true);
    assert_state(c, "m:a=a2 m:b=b3 c:k1=b c:k2=b r:3=x2 ", 11, 31);
    assert_log_records(c, 11);
    ckstore_close(&c);
}

/* Records in key order (members by id, then cards, then returns by sale seq, in one chunk or
 * several) are appended; each one that sorts before a key already in the log is counted (the
 * daemon exports the count: loyaltyd_checkpoint_records_unordered_total), and still stored. */
static void test_ckstore_counts_records_out_of_key_order(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    ledger_snap g1a[] = {M("a", "a1"), M("b", "b1")}, g1b[] = {C("k1", "a"), R("3", "x1")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g1a, LT_ARRAY_LEN(g1a)), 0);
    assert_int_equal(ckstore_put(c, g1b, LT_ARRAY_LEN(g1b)), 0);
    assert_int_equal(ckstore_commit(c, 10, 100), 0);
    assert_int_equal(ckstore_unordered(c), 0);

    /* the next generation's first member sorts after every record of the last one */
    ledger_snap g2a[] = {M("a", "a2"), R("10", "y1")}, g2b[] = {M("b", "b2"), R("200", "z1")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g2a, LT_ARRAY_LEN(g2a)), 0);
    assert_int_equal(ckstore_unordered(c), 0);
    assert_int_equal(ckstore_put(c, g2b, LT_ARRAY_LEN(g2b)), 0); /* b after returns 10 */
    assert_int_equal(ckstore_unordered(c), 1);
    assert_int_equal(ckstore_commit(c, 20, 200), 0);
    assert_state(c, "m:a=a2 m:b=b2 c:k1=a r:3=x1 r:10=y1 r:200=z1 ", 8, 20);
    ckstore_close(&c);
}

/* The chunks of a generation that never completes are durable but invisible: a load stops at
 * the last complete generation; the next begin deletes them, so the next commit does not
 * include them. */
static void test_ckstore_unfinished_generation_invisible_then_cleared(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    ledger_snap g1[] = {M("a", "a1"), M("b", "b1")}, g2[] = {M("a", "a2")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g1, LT_ARRAY_LEN(g1)), 0);
    assert_int_equal(ckstore_commit(c, 10, 1), 0);
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g2, LT_ARRAY_LEN(g2)), 0);
    assert_int_equal(ckstore_commit(c, 20, 2), 0);

    ledger_snap g3[] = {M("a", "a3"), C("k3", "a")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g3, LT_ARRAY_LEN(g3)), 0);
    assert_view(c, "m:a1 m:b1 m:a2 ", 20, 2); /* while being written */
    ckstore_abort(c);
    assert_false(ckstore_writing(c));
    assert_view(c, "m:a1 m:b1 m:a2 ", 20, 2);
    assert_state(c, "m:a=a2 m:b=b1 ", 3, 20);
    assert_log_records(c, 3);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), 5); /* the abandoned chunk is on disk */

    c = open_store(f->dir, false);
    assert_state(c, "m:a=a2 m:b=b1 ", 3, 20);
    ledger_snap g3b[] = {M("b", "b3")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g3b, LT_ARRAY_LEN(g3b)), 0);
    assert_int_equal(ckstore_commit(c, 30, 3), 0);
    assert_view(c, "m:a1 m:b1 m:a2 m:b3 ", 30, 3);
    assert_state(c, "m:a=a2 m:b=b3 ", 4, 30);
    assert_log_records(c, 4);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), 4);
}

#define BIG_N 3000
#define BIG_CHUNK 500
#define BIG_REC 200

static int count_member(void *ctx, const uint8_t *rec, size_t len)
{
    (void)rec;
    (void)len;
    ++*(int *)ctx;
    return 0;
}

/* Big enough to span many pages: what an unfinished generation of thousands of records left
 * (abandoned, then a crash) is deleted to the last record by the next begin. */
static void test_ckstore_large_unfinished_generation_cleared(void **st)
{
    fixture *f = *st;
    static char keys[2][BIG_N][8];
    static uint8_t rec[BIG_REC];
    static ledger_snap s[2][BIG_N];
    memset(rec, 'r', sizeof(rec));
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < BIG_N; i++) {
            snprintf(keys[r][i], sizeof(keys[r][i]), "%c%05d", "no"[r], i);
            s[r][i] = (ledger_snap){LEDGER_SNAP_MEMBER, keys[r][i], rec, sizeof(rec)};
        }
    }
    ckstore *c = open_store(f->dir, false);
    commit_a(c);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(ckstore_begin(c, false), 0);
        for (int i = 0; i < BIG_N; i += BIG_CHUNK)
            assert_int_equal(ckstore_put(c, s[round] + i, BIG_CHUNK), 0);
        if (round == 0)
            ckstore_abort(c);
        ckstore_close(&c); /* round 1: a crash before the commit */
        /* round 1: other keys; the begin cleared round 0's */
        assert_int_equal(raw_count(f->dir, "log0"), RECORDS_A + BIG_N);
        c = open_store(f->dir, false);
        int n = 0;
        ckpt_loader ld = {count_member, NULL, NULL, &n};
        uint64_t seq, digest;
        assert_int_equal(ckstore_load(c, &ld, &seq, &digest), 0);
        assert_int_equal(n, 3);
        assert_int_equal(seq, SEQ_A);
    }
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_commit(c, 50, 5), 0);
    assert_view(c, view_a, 50, 5);
    assert_log_records(c, RECORDS_A);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), RECORDS_A);
}

/* An aborted checkpoint, full or not, leaves the previous one; so does a second begin, which
 * is refused and keeps the first checkpoint going. */
static void test_ckstore_abort_keeps_previous(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    commit_a(c);
    ledger_snap s[] = {M("a", "a2"), UNLINK("k1"), R("5", "q2")};
    for (int full = 1; full >= 0; full--) {
        assert_int_equal(ckstore_begin(c, full), 0);
        assert_int_equal(ckstore_put(c, s, LT_ARRAY_LEN(s)), 0);
        ckstore_abort(c);
        assert_false(ckstore_writing(c));
        ckstore_abort(c); /* nothing being written: nothing to do */
        assert_view(c, view_a, SEQ_A, DIGEST_A);
        assert_log_records(c, RECORDS_A);
        assert_int_equal(ckstore_commit(c, 99, 9), LEDGER_ERR_OTHER); /* nothing to commit */
        assert_view(c, view_a, SEQ_A, DIGEST_A);
    }

    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_begin(c, false), LEDGER_ERR_OTHER);
    assert_int_equal(ckstore_begin(c, true), LEDGER_ERR_OTHER);
    assert_true(ckstore_writing(c));
    assert_string_not_equal(ckstore_errmsg(c), "");
    assert_int_equal(ckstore_put(c, s, 1), 0);
    assert_int_equal(ckstore_commit(c, 43, 7), 0);
    assert_string_equal(ckstore_errmsg(c), "");
    assert_view(c, "m:a1 m:b1 m:c1 c:k1=a c:k2=b r:3=x1 r:10=y1 r:200=z1 m:a2 ", 43, 7);
    assert_state(c, "m:a=a2 m:b=b1 m:c=c1 c:k1=a c:k2=b r:3=x1 r:10=y1 r:200=z1 ", 9, 43);
    assert_log_records(c, RECORDS_A + 1);
    ckstore_close(&c);
}

/* A crash in the middle of a checkpoint, after a chunk was put (durably): the reopened store
 * has the previous checkpoint, and the next checkpoint does not include the chunk. */
static void test_ckstore_close_without_commit_keeps_previous(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    commit_a(c);
    ledger_snap s[] = {M("a", "a9"), M("z", "z9"), UNLINK("k1"), R("5", "q9")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, s, LT_ARRAY_LEN(s)), 0);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), RECORDS_A + LT_ARRAY_LEN(s));

    c = open_store(f->dir, false);
    assert_false(ckstore_writing(c));
    assert_view(c, view_a, SEQ_A, DIGEST_A);
    assert_log_records(c, RECORDS_A);
    ledger_snap s2[] = {M("b", "b2")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, s2, 1), 0);
    assert_int_equal(ckstore_commit(c, 43, 7), 0);
    assert_view(c, "m:a1 m:b1 m:c1 c:k1=a c:k2=b r:3=x1 r:10=y1 r:200=z1 m:b2 ", 43, 7);
    assert_state(c, "m:a=a1 m:b=b2 m:c=c1 c:k1=a c:k2=b r:3=x1 r:10=y1 r:200=z1 ", 9, 43);
    assert_log_records(c, RECORDS_A + 1);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), RECORDS_A + 1);
}

/* A full checkpoint writes everything into the other log, which replaces the active one at
 * the commit: a load gives only what it wrote (a member, card or returns record it did not
 * rewrite is gone) and the old log is emptied; log_records restarts from its records. The next
 * incremental checkpoint appends to the new log, the next full one goes back to the first. */
static void test_ckstore_full_replaces_log(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    ledger_snap g1[] = {M("a", "a1"), M("b", "b1"), M("gone", "gone1"), C("k1", "a"),
                        C("k2", "b"), R("3", "x1"), R("7", "y1")};
    ledger_snap g2[] = {M("a", "a2"), UNLINK("k1")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g1, LT_ARRAY_LEN(g1)), 0);
    assert_int_equal(ckstore_commit(c, 10, 1), 0);
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g2, LT_ARRAY_LEN(g2)), 0);
    assert_int_equal(ckstore_commit(c, 20, 2), 0);
    assert_state(c, "m:a=a2 m:b=b1 m:gone=gone1 c:k2=b r:3=x1 r:7=y1 ", 9, 20);
    assert_log_records(c, 9);

    ledger_snap full1[] = {M("a", "a2"), M("b", "b1")}, full2[] = {C("k2", "b"), R("3", "x1")};
    assert_int_equal(ckstore_begin(c, true), 0);
    assert_int_equal(ckstore_put(c, full1, LT_ARRAY_LEN(full1)), 0);
    assert_int_equal(ckstore_put(c, full2, LT_ARRAY_LEN(full2)), 0);
    assert_state(c, "m:a=a2 m:b=b1 m:gone=gone1 c:k2=b r:3=x1 r:7=y1 ", 9, 20); /* not yet */
    assert_int_equal(ckstore_commit(c, 30, 3), 0);
    assert_view(c, "m:a2 m:b1 c:k2=b r:3=x1 ", 30, 3);
    assert_state(c, "m:a=a2 m:b=b1 c:k2=b r:3=x1 ", 4, 30);
    assert_log_records(c, 4);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), 0);
    assert_int_equal(raw_count(f->dir, "log1"), 4);

    c = open_store(f->dir, false);
    assert_view(c, "m:a2 m:b1 c:k2=b r:3=x1 ", 30, 3);
    ledger_snap g4[] = {M("c", "c4"), UNLINK("k2")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g4, LT_ARRAY_LEN(g4)), 0);
    assert_int_equal(ckstore_commit(c, 40, 4), 0);
    assert_view(c, "m:a2 m:b1 c:k2=b r:3=x1 m:c4 c:k2=- ", 40, 4);
    assert_state(c, "m:a=a2 m:b=b1 m:c=c4 r:3=x1 ", 6, 40);
    assert_log_records(c, 6);

    ledger_snap full3[] = {M("a", "a5")};
    assert_int_equal(ckstore_begin(c, true), 0);
    assert_int_equal(ckstore_put(c, full3, 1), 0);
    assert_int_equal(ckstore_commit(c, 50, 5), 0);
    assert_view(c, "m:a5 ", 50, 5);
    assert_log_records(c, 1);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), 1);
    assert_int_equal(raw_count(f->dir, "log1"), 0);
    c = open_store(f->dir, true);
    assert_view(c, "m:a5 ", 50, 5);
    assert_log_records(c, 1);
    ckstore_close(&c);
}

/* A full checkpoint begun, partly written and abandoned (an abort, a failed put, a crash)
 * leaves the active log whole; what it wrote into the other log is never loaded, and the next
 * full checkpoint starts that log empty again. */
static void test_ckstore_full_abandoned_keeps_active(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    commit_a(c);
    ledger_snap g2[] = {M("a", "a2"), UNLINK("k1")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g2, LT_ARRAY_LEN(g2)), 0);
    assert_int_equal(ckstore_commit(c, 43, 3), 0);
    const char want[] = "m:a1 m:b1 m:c1 c:k1=a c:k2=b r:3=x1 r:10=y1 r:200=z1 m:a2 c:k1=- ";
    const char want_state[] = "m:a=a2 m:b=b1 m:c=c1 c:k2=b r:3=x1 r:10=y1 r:200=z1 ";
    assert_view(c, want, 43, 3);

    ledger_snap z[] = {M("z", "z9")}, y[] = {M("y", "y9")}, x[] = {M("x", "x9")};
    ledger_snap bad[] = {{LEDGER_SNAP_MEMBER, "w", NULL, 0}};
    assert_int_equal(ckstore_begin(c, true), 0); /* abort */
    assert_int_equal(ckstore_put(c, z, 1), 0);
    ckstore_abort(c);
    assert_view(c, want, 43, 3);
    assert_log_records(c, RECORDS_A + 2);
    assert_int_equal(ckstore_begin(c, true), 0); /* a failed put */
    assert_int_equal(ckstore_put(c, y, 1), 0);
    assert_int_equal(ckstore_put(c, bad, 1), LEDGER_ERR_OTHER);
    assert_false(ckstore_writing(c));
    assert_view(c, want, 43, 3);
    assert_int_equal(ckstore_begin(c, true), 0); /* a crash */
    assert_int_equal(ckstore_put(c, x, 1), 0);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), RECORDS_A + 2);
    assert_int_equal(raw_count(f->dir, "log1"), 1); /* x9: each full begin emptied it */

    c = open_store(f->dir, false);
    assert_view(c, want, 43, 3);
    assert_state(c, want_state, RECORDS_A + 2, 43);
    assert_log_records(c, RECORDS_A + 2);
    /* an incremental checkpoint goes on in the active log, without the leftovers */
    ledger_snap g3[] = {M("b", "b3")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, g3, 1), 0);
    assert_int_equal(ckstore_commit(c, 44, 4), 0);
    assert_state(c, "m:a=a2 m:b=b3 m:c=c1 c:k2=b r:3=x1 r:10=y1 r:200=z1 ", RECORDS_A + 3, 44);
    /* a full one does not find x9 in its log */
    ledger_snap full[] = {M("q", "q1")};
    assert_int_equal(ckstore_begin(c, true), 0);
    assert_int_equal(ckstore_put(c, full, 1), 0);
    assert_int_equal(ckstore_commit(c, 45, 5), 0);
    assert_view(c, "m:q1 ", 45, 5);
    assert_log_records(c, 1);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), 0);
    assert_int_equal(raw_count(f->dir, "log1"), 1);
}

/* A member's record cannot be NULL or empty (only a card's value can: unlinked): the put fails
 * with LEDGER_ERR_OTHER, writes nothing of its chunk, and abandons the checkpoint; its earlier
 * chunks are never loaded and not part of the next checkpoint. */
static void test_ckstore_put_member_without_record_abandons(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    commit_a(c);
    const ledger_snap none[] = {{LEDGER_SNAP_MEMBER, "b", NULL, 0},
                                {LEDGER_SNAP_MEMBER, "b", (const uint8_t *)"", 0}};
    for (size_t i = 0; i < LT_ARRAY_LEN(none); i++) {
        ledger_snap good[] = {M("a", "a2")}, s[] = {M("c", "c2"), none[i]};
        assert_int_equal(ckstore_begin(c, false), 0);
        assert_int_equal(ckstore_put(c, good, 1), 0);
        assert_int_equal(ckstore_put(c, s, LT_ARRAY_LEN(s)), LEDGER_ERR_OTHER);
        assert_false(ckstore_writing(c));
        assert_non_null(strstr(ckstore_errmsg(c), "members"));
        assert_int_equal(ckstore_put(c, good, 1), LEDGER_ERR_OTHER); /* abandoned */
        assert_int_equal(ckstore_commit(c, 50, 5), LEDGER_ERR_OTHER);
        assert_view(c, view_a, SEQ_A, DIGEST_A);
        ckstore_close(&c);
        /* the first chunk is on disk, not the failed one's c2 */
        assert_int_equal(raw_count(f->dir, "log0"), RECORDS_A + 1);
        c = open_store(f->dir, false);
    }
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_commit(c, 50, 5), 0);
    assert_view(c, view_a, 50, 5);
    assert_log_records(c, RECORDS_A);
    ckstore_close(&c);
}

/* The length of the longest member id a card was given. */
static int card_len(void *ctx, const char *card, const char *member)
{
    (void)card;
    size_t *max = ctx;
    if (member && strlen(member) > *max)
        *max = strlen(member);
    return 0;
}

/* A returns key that is not a sale seq, an empty or over-long key, a returns record missing,
 * or a card's member id that could not be loaded back fails the put with LEDGER_ERR_OTHER and
 * aborts its transaction; puts and commits without a checkpoint, and writes on a read-only
 * store, are refused. */
static void test_ckstore_bad_put_aborts(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    commit_a(c);
    static char long_key[504]; /* 9 bytes of log key prefix + 503 > 511, LMDB's maximum */
    memset(long_key, 'k', 503);
    static uint8_t long_val[513];
    memset(long_val, 'm', sizeof(long_val));
    const ledger_snap bad[] = {
        R("", "v"),
        R("0", "v"),
        R("007", "v"),
        R("12a", "v"),
        R("-5", "v"),
        R("+5", "v"),
        R("18446744073709551616", "v"), /* UINT64_MAX + 1 */
        R("99999999999999999999", "v"),
        {LEDGER_SNAP_RETURNS, "5", NULL, 0},
        {LEDGER_SNAP_RETURNS, "5", (const uint8_t *)"", 0},
        M("", "v"),
        {LEDGER_SNAP_MEMBER, NULL, (const uint8_t *)"v", 1},
        {LEDGER_SNAP_MEMBER, long_key, (const uint8_t *)"v", 1},
        {LEDGER_SNAP_CARD, "k5", long_val, sizeof(long_val)},
        {LEDGER_SNAP_CARD, "k5", long_val, 0},
        {(ledger_snap_kind)9, "x", (const uint8_t *)"v", 1},
        {(ledger_snap_kind)0, "x", (const uint8_t *)"v", 1},
    };
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        ledger_snap s[] = {M("a", "a2"), bad[i]};
        assert_int_equal(ckstore_begin(c, false), 0);
        assert_int_equal(ckstore_put(c, s, LT_ARRAY_LEN(s)), LEDGER_ERR_OTHER);
        assert_false(ckstore_writing(c));
        assert_string_not_equal(ckstore_errmsg(c), "");
        assert_int_equal(ckstore_commit(c, 99, 9), LEDGER_ERR_OTHER); /* nothing to commit */
    }
    assert_int_equal(ckstore_put(c, bad, 0), LEDGER_ERR_OTHER);
    assert_view(c, view_a, SEQ_A, DIGEST_A);
    ckstore_close(&c);
    assert_int_equal(raw_count(f->dir, "log0"), RECORDS_A); /* no put wrote its a2 */

    /* the edges that are good: the largest seq, a 502-byte key, a 512-byte member id */
    c = open_store(f->dir, false);
    long_key[502] = '\0';
    ledger_snap good[] = {R("18446744073709551615", "big"),
                          {LEDGER_SNAP_MEMBER, long_key, (const uint8_t *)"L", 1},
                          {LEDGER_SNAP_CARD, "k5", long_val, 512}};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, good, LT_ARRAY_LEN(good)), 0);
    assert_int_equal(ckstore_commit(c, 44, 4), 0);
    size_t max = 0;
    ckpt_loader ld = {NULL, card_len, NULL, &max};
    uint64_t seq, digest;
    assert_int_equal(ckstore_load(c, &ld, &seq, &digest), 0);
    assert_int_equal(max, 512);
    ckstore_close(&c);

    c = open_store(f->dir, true);
    assert_view(c,
                "m:a1 m:b1 m:c1 c:k1=a c:k2=b r:3=x1 r:10=y1 r:200=z1 m:L "
                "c:k5=mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm r:18446744073709551615=big ",
                44, 4);
    assert_int_equal(ckstore_begin(c, false), LEDGER_ERR_OTHER);
    assert_false(ckstore_writing(c));
    assert_int_equal(ckstore_begin(c, true), LEDGER_ERR_OTHER);
    assert_false(ckstore_writing(c));
    ckstore_close(&c);
}

/* Log keys: generation (u64 BE), kind, key. */
#define G1 "\0\0\0\0\0\0\0\001"
#define G2 "\0\0\0\0\0\0\0\002"
#define BE8(b) "\0\0\0\0\0\0\0" b

/* Keys and values a build of this format cannot have written, in the active log up to its
 * last generation or in meta: LEDGER_ERR_CORRUPT. The same beyond the last generation (an
 * unfinished checkpoint) or in the other log is never read. */
static void test_ckstore_malformed_records_are_corrupt(void **st)
{
    fixture *f = *st;
    static char long_val[600];
    memset(long_val, 'm', sizeof(long_val));
    const struct {
        const char *db, *key;
        size_t klen;
        const char *val;
        size_t vlen;
        bool corrupt;
        bool in_meta;  /* ckstore_meta() reads it (seq, digest) */
        bool in_begin; /* ckstore_begin() reads it (active, gen) */
    } bad[] = {
#define RAW(db, k, v) (db), (k), sizeof(k) - 1, (v), sizeof(v) - 1
        {RAW("log0", "\0\0\0\0\001", "v"), true, false, false},     /* shorter than 9 bytes */
        {RAW("log0", G1, "v"), true, false, false},                 /* the generation only */
        {RAW("log0", G1 "\001", "v"), true, false, false},          /* no key after the kind */
        {RAW("log0", G1 "\000x", "v"), true, false, false},         /* kind 0 */
        {RAW("log0", G1 "\004x", "v"), true, false, false},         /* kind 4 */
        {RAW("log0", G1 "\377x", "v"), true, false, false},         /* kind 255 */
        {RAW("log0", G1 "\003abc", "v"), true, false, false},       /* returns key not 8 bytes */
        {RAW("log0", G1 "\003123456789", "v"), true, false, false}, /* nor 9 */
        {RAW("log0", G1 "\001q", ""), true, false, false},          /* a member without record */
        {"log0", G1 "\002k9", 11, long_val, sizeof(long_val), true, false, false}, /* card */
        {RAW("meta", "seq", "1234"), true, true, false},
        {RAW("meta", "digest", "123456789"), true, true, false},
        {RAW("meta", "active", BE8("\002")), true, false, true}, /* no log 2 */
        {RAW("meta", "active", "\0\0\0\0"), true, false, true},
        {RAW("meta", "gen", "\001"), true, false, true},
        {RAW("log0", G2 "\011x", "v"), false, false, false}, /* after the last generation */
        {RAW("log1", G1 "\011x", "v"), false, false, false}, /* in the other log */
        {RAW("log0", G1 "\003" BE8("\011"), "v"), false, false, false}, /* a good one: r:9=v */
#undef RAW
    };
    for (size_t i = 0; i < LT_ARRAY_LEN(bad); i++) {
        char sub[96];
        snprintf(sub, sizeof(sub), "%s/d%zu", f->dir, i);
        ckstore *c = open_store(sub, false);
        commit_a(c); /* generation 1 in log0 */
        ckstore_close(&c);
        raw_put(sub, bad[i].db, bad[i].key, bad[i].klen, bad[i].val, bad[i].vlen);
        for (int ro = 1; ro >= 0; ro--) {
            c = open_store(sub, ro);
            char got[1024];
            uint64_t seq, digest;
            int rc = load_view(c, got, sizeof(got), &seq, &digest);
            if (bad[i].corrupt) {
                assert_int_equal(rc, LEDGER_ERR_CORRUPT);
            } else {
                assert_int_equal(rc, 0);
                assert_string_equal(got, i == LT_ARRAY_LEN(bad) - 1
                                             ? "m:a1 m:b1 m:c1 c:k1=a c:k2=b r:3=x1 r:9=v "
                                               "r:10=y1 r:200=z1 "
                                             : view_a);
            }
            assert_int_equal(ckstore_meta(c, &seq, &digest),
                             bad[i].in_meta ? LEDGER_ERR_CORRUPT : 0);
            if (!ro) {
                assert_int_equal(ckstore_begin(c, false), bad[i].in_begin ? LEDGER_ERR_CORRUPT : 0);
                assert_int_equal(ckstore_writing(c), !bad[i].in_begin);
                ckstore_abort(c);
            }
            ckstore_close(&c);
        }
    }
    /* the begins above cleared what was after the last generation, not the other log */
    char sub[96];
    snprintf(sub, sizeof(sub), "%s/d15", f->dir);
    assert_int_equal(raw_count(sub, "log0"), RECORDS_A);
    snprintf(sub, sizeof(sub), "%s/d16", f->dir);
    assert_int_equal(raw_count(sub, "log0"), RECORDS_A);
    assert_int_equal(raw_count(sub, "log1"), 1);
    snprintf(sub, sizeof(sub), "%s/d17", f->dir);
    assert_int_equal(raw_count(sub, "log0"), RECORDS_A + 1);
}

/* Read-only never creates: no DIR, or a DIR without state/, is LEDGER_ERR_NOT_FOUND. */
static void test_ckstore_read_only_without_store_is_not_found(void **st)
{
    fixture *f = *st;
    char none[96];
    snprintf(none, sizeof(none), "%s/none", f->dir);
    const char *dirs[] = {none, f->dir};
    for (size_t i = 0; i < LT_ARRAY_LEN(dirs); i++) {
        ckstore_opts o = {.dir = dirs[i], .read_only = true};
        ckstore *c = NULL;
        char err[256] = "";
        assert_int_equal(ckstore_open(&c, &o, err, sizeof(err)), LEDGER_ERR_NOT_FOUND);
        assert_null(c);
        assert_non_null(strstr(err, "/state"));
        assert_non_null(strstr(err, dirs[i]));
    }
    assert_int_equal(access(none, F_OK), -1);
    char state_dir[96];
    snprintf(state_dir, sizeof(state_dir), "%s/state", f->dir);
    assert_int_equal(access(state_dir, F_OK), -1);
}

/* Creates DIR/state as an LMDB environment without any database: a writer between
 * mdb_env_open() and its first commit. */
static void bare_env(const char *dir)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/state", dir);
    assert_int_equal(mkdir(path, 0750), 0);
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_mapsize(env, MAP_BYTES), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0640), 0);
    mdb_env_close(env);
}

/* The child's side of test_ckstore_read_only_beside_writer: 0 when all it saw was right. */
static int reader_child(const char *dir, int from_parent, int to_parent)
{
    ckstore_opts o = {.dir = dir, .read_only = true};
    ckstore *c = NULL;
    char got[1024], step;
    uint64_t seq = 1, digest = 1;
    int bad = 0;
    /* 1: no databases yet: empty, not an error */
    if (ckstore_open(&c, &o, NULL, 0) != 0)
        return 1;
    uint64_t records = 1;
    bad |= ckstore_meta(c, &seq, &digest) != 0 || seq != 0 || digest != 0;
    bad |= load_view(c, got, sizeof(got), &seq, &digest) != 0 || got[0] || seq || digest;
    bad |= ckstore_log_records(c, &records) != 0 || records != 0;
    bad |= write(to_parent, "1", 1) != 1;
    /* 2: the writer created them and has put a chunk (durable), not committed */
    bad |= read(from_parent, &step, 1) != 1;
    bad |= ckstore_meta(c, &seq, &digest) != 0 || seq != 0 || digest != 0;
    bad |= load_view(c, got, sizeof(got), &seq, &digest) != 0 || got[0] || seq || digest;
    bad |= ckstore_log_records(c, &records) != 0 || records != 0;
    bad |= write(to_parent, "2", 1) != 1;
    /* 3: committed */
    bad |= read(from_parent, &step, 1) != 1;
    bad |= ckstore_meta(c, &seq, &digest) != 0 || seq != SEQ_A || digest != DIGEST_A;
    bad |= load_view(c, got, sizeof(got), &seq, &digest) != 0 || strcmp(got, view_a) != 0;
    bad |= seq != SEQ_A || digest != DIGEST_A;
    bad |= ckstore_log_records(c, &records) != 0 || records != RECORDS_A;
    ckstore_close(&c);
    return bad;
}

/* Waits (10 s at most) for the child's next step; it says nothing if it failed. */
static void wait_child(int fd)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    char c;
    if (poll(&pfd, 1, 10000) == 1)
        assert_int_equal(read(fd, &c, 1), 1);
}

/* loyaltyctl beside the daemon, in another process: read-only before the writer has created
 * the databases (empty), while it writes its first checkpoint (still empty, though a chunk is
 * on disk), after it commits (the checkpoint, without the abandoned chunk), on the same handle
 * throughout. */
static void test_ckstore_read_only_beside_writer(void **st)
{
    fixture *f = *st;
    bare_env(f->dir);
    int to_child[2], to_parent[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(reader_child(f->dir, to_child[0], to_parent[1]));
    wait_child(to_parent[0]);
    ckstore *c = open_store(f->dir, false);
    ledger_snap s[] = {M("a", "a1")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, s, 1), 0);
    assert_int_equal(write(to_child[1], "2", 1), 1);
    wait_child(to_parent[0]);
    ckstore_abort(c);
    commit_a(c);
    assert_int_equal(write(to_child[1], "3", 1), 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ckstore_close(&c);
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);
}

/* A format this build does not know is refused with its number, writable or not. */
static void test_ckstore_unknown_format_is_corrupt(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    commit_a(c);
    ckstore_close(&c);
    for (int bad = 0; bad <= 99; bad += 99) {
        assert_int_equal(stored_format(f->dir, bad), (uint32_t)bad);
        for (int ro = 0; ro <= 1; ro++) {
            ckstore_opts o = {.dir = f->dir, .map_bytes = MAP_BYTES, .read_only = ro};
            char err[256] = "";
            assert_int_equal(ckstore_open(&c, &o, err, sizeof(err)), LEDGER_ERR_CORRUPT);
            assert_null(c);
            char want[96];
            snprintf(want, sizeof(want), "unknown checkpoint store format %d", bad);
            assert_non_null(strstr(err, want));
            assert_non_null(strstr(err, "/state"));
        }
    }
    assert_int_equal(stored_format(f->dir, 1), 1);
    c = open_store(f->dir, false);
    assert_view(c, view_a, SEQ_A, DIGEST_A);
    ckstore_close(&c);
}

/* A hot copy holds the committed checkpoint, not the one being written (its chunks come along,
 * invisible, and the copy's next checkpoint clears them); it opens as a store of its own
 * (DIR2/state); a copy into a directory holding one fails. */
static void test_ckstore_copy_round_trip(void **st)
{
    fixture *f = *st;
    ckstore *c = open_store(f->dir, false);
    commit_a(c);
    ledger_snap s[] = {M("a", "a2")};
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_put(c, s, 1), 0);
    char dir2[96], state2[128];
    snprintf(dir2, sizeof(dir2), "%s/backup", f->dir);
    snprintf(state2, sizeof(state2), "%s/state", dir2);
    assert_int_equal(mkdir(dir2, 0750), 0);
    char err[256] = "";
    assert_int_equal(ckstore_copy(c, state2, err, sizeof(err)), 0);
    assert_int_equal(ckstore_copy(c, state2, err, sizeof(err)), LEDGER_ERR_OTHER);
    assert_non_null(strstr(err, state2));
    ckstore_abort(c);
    ckstore_close(&c);

    c = open_store(dir2, true);
    assert_view(c, view_a, SEQ_A, DIGEST_A);
    assert_log_records(c, RECORDS_A);
    ckstore_close(&c);
    assert_int_equal(raw_count(dir2, "log0"), RECORDS_A + 1); /* the chunk came along */
    c = open_store(dir2, false);
    assert_view(c, view_a, SEQ_A, DIGEST_A);
    /* the copy's next checkpoint clears it */
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_commit(c, 50, 5), 0);
    assert_view(c, view_a, 50, 5);
    ckstore_close(&c);
    assert_int_equal(raw_count(dir2, "log0"), RECORDS_A);
}

/* ------------------------------------------------------------------ digests, ckpt_load */

/* The digest of entry seq is XXH3 of its bytes, whatever their size; 0 for seq 0; a seq past
 * the end is LEDGER_ERR_NOT_FOUND. */
static void test_ckstore_entry_digest(void **st)
{
    fixture *f = *st;
    ledger *l = open_ledger(f->dir);
    append(l, 1, 3);
    static uint8_t big[20000]; /* bigger than the first buffer tried */
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    ledger_record r = {4, {1, 4}, big, sizeof(big)};
    assert_int_equal(ledger_commit(l, &r, 1, NULL, 0, 0), 0);
    uint64_t d = 1;
    assert_int_equal(ckstore_entry_digest(l, 0, &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(ckstore_entry_digest(l, 2, &d), 0);
    assert_int_equal(d, XXH3_64bits("entry 2", 7));
    assert_int_equal(d, ckstore_digest((const uint8_t *)"entry 2", 7));
    assert_int_equal(ckstore_entry_digest(l, 4, &d), 0);
    assert_int_equal(d, XXH3_64bits(big, sizeof(big)));
    assert_int_equal(ckstore_entry_digest(l, 5, &d), LEDGER_ERR_NOT_FOUND);
    ledger_close(&l);
}

/* The ledger's own checkpoint tables at seq 5 (as data written by an older loyaltyd has them). */
static const char view_ledger[] = "m:p5 c:q=p r:2=v5 ";

static void ledger_own_checkpoint(ledger *l)
{
    ledger_snap s[] = {M("p", "p5"), C("q", "p"), R("2", "v5")};
    assert_int_equal(ledger_commit(l, NULL, 0, s, LT_ARRAY_LEN(s), 5), 0);
}

/* Runs ckpt_load; returns its result, with the loader's view in got. */
static int run_ckpt_load(ledger *l, ckstore *c, char *got, size_t cap, uint64_t *seq,
                         ckpt_source *src, char *why, size_t why_len)
{
    view v = {0};
    ckpt_loader ld = {v_member, v_card, v_returns, &v};
    *seq = 12345;
    *src = (ckpt_source)77;
    int rc = ckpt_load(l, c, &ld, seq, src, why, why_len);
    v_join(&v, got, cap);
    return rc;
}

/* state/ belongs to the ledger (its seq at most the last, the entry there has its digest): it
 * is what a start recovers from, not the ledger's older tables. */
static void test_ckpt_load_uses_state(void **st)
{
    fixture *f = *st;
    ledger *l = open_ledger(f->dir);
    append(l, 1, 10);
    ledger_own_checkpoint(l);
    ckstore *c = open_store(f->dir, false);
    uint64_t d;
    assert_int_equal(ckstore_entry_digest(l, 7, &d), 0);
    ledger_snap s[] = {M("a", "a7"), C("k", "a"), R("6", "x7")};
    assert_int_equal(ckstore_begin(c, true), 0);
    assert_int_equal(ckstore_put(c, s, LT_ARRAY_LEN(s)), 0);
    assert_int_equal(ckstore_commit(c, 7, d), 0);
    char got[1024], why[256] = "stale";
    uint64_t seq;
    ckpt_source src;
    assert_int_equal(run_ckpt_load(l, c, got, sizeof(got), &seq, &src, why, sizeof(why)), 0);
    assert_int_equal(src, CKPT_SRC_STATE);
    assert_int_equal(seq, 7);
    assert_string_equal(got, "m:a7 c:k=a r:6=x7 ");
    assert_string_equal(why, "");
    /* at the ledger's very last entry too; why may be NULL */
    assert_int_equal(ckstore_entry_digest(l, 10, &d), 0);
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_commit(c, 10, d), 0);
    assert_int_equal(run_ckpt_load(l, c, got, sizeof(got), &seq, &src, NULL, 0), 0);
    assert_int_equal(src, CKPT_SRC_STATE);
    assert_int_equal(seq, 10);
    assert_string_equal(got, "m:a7 c:k=a r:6=x7 ");
    /* a loader's non-zero return is returned */
    view v = {.stop_at = 1};
    ckpt_loader ld = {v_member, v_card, v_returns, &v};
    assert_int_equal(ckpt_load(l, c, &ld, &seq, &src, why, sizeof(why)), 99);
    ckstore_close(&c);
    ledger_close(&l);
}

/* state/ committed with a digest that is not that of the ledger's entry (another ledger's
 * state/): the ledger's own tables are used, and why says so. */
static void test_ckpt_load_digest_mismatch_falls_back(void **st)
{
    fixture *f = *st;
    ledger *l = open_ledger(f->dir);
    append(l, 1, 10);
    ledger_own_checkpoint(l);
    ckstore *c = open_store(f->dir, false);
    uint64_t d;
    assert_int_equal(ckstore_entry_digest(l, 7, &d), 0);
    ledger_snap s[] = {M("a", "a7")};
    assert_int_equal(ckstore_begin(c, true), 0);
    assert_int_equal(ckstore_put(c, s, 1), 0);
    assert_int_equal(ckstore_commit(c, 7, d ^ 1), 0);
    char got[1024], why[256] = "";
    uint64_t seq;
    ckpt_source src;
    assert_int_equal(run_ckpt_load(l, c, got, sizeof(got), &seq, &src, why, sizeof(why)), 0);
    assert_int_equal(src, CKPT_SRC_LEDGER);
    assert_int_equal(seq, 5);
    assert_string_equal(got, view_ledger);
    assert_string_equal(why, "state/ checkpoint at seq 7 does not match the ledger's entry there "
                             "(another ledger's)");
    /* NULL callbacks are skipped on this path too */
    view v = {0};
    ckpt_loader ld = {NULL, NULL, v_returns, &v};
    assert_int_equal(ckpt_load(l, c, &ld, &seq, &src, NULL, 0), 0);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.items[0], "r:2=v5");
    ckstore_close(&c);
    ledger_close(&l);
}

/* state/ past the ledger's last entry (ahead of a restored ledger, or another's): fallback. */
static void test_ckpt_load_past_last_falls_back(void **st)
{
    fixture *f = *st;
    ledger *l = open_ledger(f->dir);
    append(l, 1, 10);
    ledger_own_checkpoint(l);
    ckstore *c = open_store(f->dir, false);
    ledger_snap s[] = {M("a", "a7")};
    assert_int_equal(ckstore_begin(c, true), 0);
    assert_int_equal(ckstore_put(c, s, 1), 0);
    assert_int_equal(ckstore_commit(c, 11, 1), 0);
    char got[1024], why[256] = "";
    uint64_t seq;
    ckpt_source src;
    assert_int_equal(run_ckpt_load(l, c, got, sizeof(got), &seq, &src, why, sizeof(why)), 0);
    assert_int_equal(src, CKPT_SRC_LEDGER);
    assert_int_equal(seq, 5);
    assert_string_equal(got, view_ledger);
    assert_string_equal(why, "state/ checkpoint at seq 11 is past the ledger's last entry 10 "
                             "(not this ledger's, or ahead of it)");
    ckstore_close(&c);
    ledger_close(&l);
}

/* No checkpoint anywhere (an empty state/, no state/ at all, no ledger tables): replay all. An
 * unusable state/ without ledger tables is none too, with its why. */
static void test_ckpt_load_none(void **st)
{
    fixture *f = *st;
    ledger *l = open_ledger(f->dir);
    append(l, 1, 3);
    ckstore *c = open_store(f->dir, false);
    char got[1024], why[256] = "stale";
    uint64_t seq;
    ckpt_source src;
    for (int with_store = 0; with_store <= 1; with_store++) {
        assert_int_equal(
            run_ckpt_load(l, with_store ? c : NULL, got, sizeof(got), &seq, &src, why, sizeof(why)),
            0);
        assert_int_equal(src, CKPT_SRC_NONE);
        assert_int_equal(seq, 0);
        assert_string_equal(got, "");
        assert_string_equal(why, "");
    }
    assert_int_equal(ckstore_begin(c, false), 0);
    assert_int_equal(ckstore_commit(c, 2, 3), 0);
    assert_int_equal(run_ckpt_load(l, c, got, sizeof(got), &seq, &src, why, sizeof(why)), 0);
    assert_int_equal(src, CKPT_SRC_NONE);
    assert_int_equal(seq, 0);
    assert_string_equal(got, "");
    assert_non_null(strstr(why, "does not match"));
    ckstore_close(&c);
    ledger_close(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ckstore_open_creates_empty_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_commit_then_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_incremental_generations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_counts_records_out_of_key_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_unfinished_generation_invisible_then_cleared,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_large_unfinished_generation_cleared, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_abort_keeps_previous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_close_without_commit_keeps_previous, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_full_replaces_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_full_abandoned_keeps_active, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_put_member_without_record_abandons, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_bad_put_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_malformed_records_are_corrupt, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_read_only_without_store_is_not_found, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_read_only_beside_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_unknown_format_is_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_copy_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckstore_entry_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckpt_load_uses_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckpt_load_digest_mismatch_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckpt_load_past_last_falls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ckpt_load_none, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
