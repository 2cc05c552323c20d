/* test_ledger.c: the LMDB ledger: append and read back, gaps, dedup (R29), checkpoints, node
 * scans, the daemon lock, readers beside a writer, durability across reopen, full maps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "ledger.h"

typedef struct {
    char dir[64];
} fixture;

static int setup(void **st)
{
    fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/test_ledger.XXXXXX");
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

/* The tests' map size (valgrind cannot reserve the default 64 GiB) */
#define MAP_BYTES (64 << 20)

static ledger *open_dir(const char *dir, bool read_only, bool exclusive)
{
    ledger_opts o = {
        .dir = dir, .map_bytes = MAP_BYTES, .read_only = read_only, .exclusive = exclusive};
    ledger *l = NULL;
    char err[256];
    int rc = ledger_open(&l, &o, err, sizeof(err));
    if (rc != 0)
        fail_msg("ledger_open: %s (%s)", err, ledger_strerror(rc));
    return l;
}

/* Record payloads are a LedgerEntry's framing: the event id (field 2, which the ledger reads
 * back for the ids its index does not hold yet) and the text "entry <seq>" (field 6, last), so
 * reads can be checked against the seq. */
static uint8_t g_payload[256][64];

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

static ledger_record rec(uint64_t seq, uint64_t node, uint64_t event)
{
    uint8_t *p = g_payload[seq % 256], id[24];
    size_t n = 0, idn = 0;
    if (node || event) {
        id[idn++] = 0x08;
        idn += put_varint(id + idn, node);
        id[idn++] = 0x10;
        idn += put_varint(id + idn, event);
        p[n++] = 0x12;
        p[n++] = (uint8_t)idn;
        memcpy(p + n, id, idn);
        n += idn;
    }
    char text[32];
    int tn = snprintf(text, sizeof text, "entry %llu", (unsigned long long)seq);
    p[n++] = 0x32;
    p[n++] = (uint8_t)tn;
    memcpy(p + n, text, (size_t)tn);
    n += (size_t)tn;
    return (ledger_record){seq, {node, event}, p, n};
}

/* Whether bytes end with "entry <seq>" (rec()'s text). */
static bool ends_with_seq(const uint8_t *bytes, size_t len, uint64_t seq)
{
    char want[32];
    size_t wn = (size_t)snprintf(want, sizeof(want), "entry %llu", (unsigned long long)seq);
    return len > wn && memcmp(bytes + len - wn, want, wn) == 0;
}

/* Appends seqs from..to, event ids (node, base + seq). */
static int append(ledger *l, uint64_t from, uint64_t to, uint64_t node, uint64_t base)
{
    ledger_record recs[256];
    assert_true(to - from < 256); /* recs[] and rec()'s payloads */
    size_t n = 0;
    for (uint64_t s = from; s <= to; s++)
        recs[n++] = rec(s, node, base + s);
    return ledger_commit(l, recs, n, NULL, 0, 0);
}

/* In a forked child (no cmocka asserts there): a writable handle on dir, or NULL. */
static ledger *child_writer(const char *dir)
{
    ledger_opts o = {.dir = dir, .map_bytes = MAP_BYTES};
    ledger *w = NULL;
    return ledger_open(&w, &o, NULL, 0) == 0 ? w : NULL;
}

/* Waits for a forked child and checks that it exited 0 (its own checks passed). */
static void child_ok(pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

typedef struct {
    uint64_t first, last, count, stop_at;
    int bad;
} scan_seen;

static int on_entry(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len)
{
    scan_seen *s = ctx;
    if (!ends_with_seq(bytes, len, seq))
        s->bad++;
    if (s->count++ == 0)
        s->first = seq;
    s->last = seq;
    return seq == s->stop_at ? 7 : 0;
}

static void test_ledger_commit_scan_get(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, false);
    uint64_t seq = 99;
    assert_int_equal(ledger_last_seq(l, &seq), 0);
    assert_int_equal(seq, 0);
    assert_int_equal(append(l, 1, 10, 1, 100), 0);
    assert_int_equal(append(l, 11, 20, 2, 0), 0);
    assert_int_equal(ledger_last_seq(l, &seq), 0);
    assert_int_equal(seq, 20);

    uint8_t buf[64];
    size_t len;
    assert_int_equal(ledger_get(l, 7, buf, sizeof(buf), &len), 0);
    assert_true(ends_with_seq(buf, len, 7));
    size_t want = len;
    assert_int_equal(ledger_get(l, 21, buf, sizeof(buf), &len), LEDGER_ERR_NOT_FOUND);
    assert_int_equal(ledger_get(l, 7, buf, 3, &len), LEDGER_ERR_OTHER);
    assert_int_equal(len, want);

    scan_seen s = {0};
    assert_int_equal(ledger_scan(l, 0, 0, on_entry, &s), 0);
    assert_int_equal(s.count, 20);
    assert_int_equal(s.first, 1);
    assert_int_equal(s.last, 20);
    assert_int_equal(s.bad, 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(ledger_scan(l, 5, 12, on_entry, &s), 0);
    assert_int_equal(s.count, 8);
    memset(&s, 0, sizeof(s));
    s.stop_at = 15;
    assert_int_equal(ledger_scan(l, 10, 0, on_entry, &s), 7);
    assert_int_equal(s.last, 15);

    ledger_stats stats;
    assert_int_equal(ledger_stat(l, &stats), 0);
    assert_int_equal(stats.entries, 20);
    assert_int_equal(stats.events, 0); /* the ids wait for ledger_index_flush() */
    assert_int_equal(ledger_unindexed(l), 20);
    assert_int_equal(ledger_index_flush(l, 0), 0);
    assert_int_equal(ledger_stat(l, &stats), 0);
    assert_int_equal(stats.events, 20);
    assert_int_equal(stats.map_bytes, MAP_BYTES);
    assert_true(stats.used_bytes > 0 && stats.page_bytes >= 4096);
    ledger_close(&l);
    assert_null(l);
    ledger_close(&l); /* safe on NULL */
}

static void test_ledger_gap_is_refused(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, false);
    assert_int_equal(append(l, 2, 3, 1, 0), LEDGER_ERR_SEQ); /* must start at 1 */
    assert_int_equal(append(l, 1, 5, 1, 0), 0);
    assert_int_equal(append(l, 7, 8, 1, 0), LEDGER_ERR_SEQ);
    assert_non_null(strstr(ledger_errmsg(l), "seq 7 after 5"));
    assert_int_equal(append(l, 5, 6, 1, 0), LEDGER_ERR_SEQ); /* overlap */
    /* A gap inside a batch: the good first record is not written either. */
    ledger_record recs[] = {rec(6, 1, 6), rec(8, 1, 8)};
    assert_int_equal(ledger_commit(l, recs, 2, NULL, 0, 0), LEDGER_ERR_SEQ);
    uint64_t seq;
    assert_int_equal(ledger_last_seq(l, &seq), 0);
    assert_int_equal(seq, 5);
    assert_int_equal(ledger_find_event(l, (lt_event_id){1, 6}, &seq), LEDGER_ERR_NOT_FOUND);
    assert_int_equal(append(l, 6, 6, 1, 0), 0);
    ledger_close(&l);
}

/* R29: an event id maps to its seq for ever, across reopen; it cannot be indexed twice. */
static void test_ledger_R29_dedup_across_reopen(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, false);
    /* Interleaved tills, unsorted within the batch. */
    ledger_record recs[] = {rec(1, 5, 30), rec(2, 3, 10), rec(3, 5, 10), rec(4, 3, 5),
                            rec(5, 0, 0)};
    assert_int_equal(ledger_commit(l, recs, 5, NULL, 0, 0), 0);
    ledger_close(&l);

    l = open_dir(f->dir, false, true);
    uint64_t seq = 0;
    assert_int_equal(ledger_find_event(l, (lt_event_id){5, 30}, &seq), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(ledger_find_event(l, (lt_event_id){3, 5}, &seq), 0);
    assert_int_equal(seq, 4);
    assert_int_equal(ledger_find_event(l, (lt_event_id){3, 6}, &seq), LEDGER_ERR_NOT_FOUND);
    assert_int_equal(ledger_find_event(l, (lt_event_id){0, 0}, &seq), LEDGER_ERR_NOT_FOUND);

    ledger_record again[] = {rec(6, 3, 11), rec(7, 5, 10)};
    assert_int_equal(ledger_commit(l, again, 2, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_record twice[] = {rec(6, 9, 1), rec(7, 9, 1)};
    assert_int_equal(ledger_commit(l, twice, 2, NULL, 0, 0), LEDGER_ERR_DUP);
    /* System entries (id 0, 0) are not indexed, so any number of them may be written. */
    ledger_record sys[] = {rec(6, 0, 0), rec(7, 0, 0)};
    assert_int_equal(ledger_commit(l, sys, 2, NULL, 0, 0), 0);
    /* a till's highest id as the open read it is refused; a new id below it (out of order) is
     * taken, and an id above it needs no lookup */
    ledger_record top[] = {rec(8, 5, 30)};
    assert_int_equal(ledger_commit(l, top, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_record below[] = {rec(8, 3, 7), rec(9, 5, 31)};
    assert_int_equal(ledger_commit(l, below, 2, NULL, 0, 0), 0);
    ledger_record top2[] = {rec(10, 5, 31)};
    assert_int_equal(ledger_commit(l, top2, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    assert_int_equal(ledger_index_flush(l, 0), 0);
    ledger_stats stats;
    assert_int_equal(ledger_stat(l, &stats), 0);
    assert_int_equal(stats.entries, 9);
    assert_int_equal(stats.events, 6);
    ledger_close(&l);
}

typedef struct {
    int members, cards;
    char last_card[LT_ID_MAX], last_owner[LT_ID_MAX];
    size_t rec_len;
} snap_seen;

static int on_member(void *ctx, const uint8_t *rec_bytes, size_t len)
{
    snap_seen *s = ctx;
    (void)rec_bytes;
    s->members++;
    s->rec_len += len;
    return 0;
}

static int on_card(void *ctx, const char *card, const char *member_id)
{
    snap_seen *s = ctx;
    s->cards++;
    strcpy(s->last_card, card);
    strcpy(s->last_owner, member_id);
    return 0;
}

static void test_ledger_checkpoint_round_trip(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, false);
    uint64_t seq = 1;
    assert_int_equal(ledger_checkpoint_seq(l, &seq), 0);
    assert_int_equal(seq, 0);
    assert_int_equal(append(l, 1, 3, 1, 0), 0);
    const uint8_t m1[] = {1, 2, 3}, m2[] = {4, 5};
    ledger_snap snaps[] = {
        {LEDGER_SNAP_MEMBER, "M1", m1, sizeof(m1)},
        {LEDGER_SNAP_MEMBER, "M2", m2, sizeof(m2)},
        {LEDGER_SNAP_CARD, "C1", (const uint8_t *)"M1", 2},
        {LEDGER_SNAP_CARD, "C2", (const uint8_t *)"M2", 2},
    };
    assert_int_equal(ledger_commit(l, NULL, 0, snaps, 4, 3), 0);
    assert_int_equal(ledger_checkpoint_seq(l, &seq), 0);
    assert_int_equal(seq, 3);
    /* A checkpoint cannot cover entries the ledger does not have. */
    assert_int_equal(ledger_commit(l, NULL, 0, snaps, 1, 4), LEDGER_ERR_SEQ);

    /* Entries and their checkpoint in one transaction; a card unlinked (deleted). */
    ledger_record r4 = rec(4, 1, 4);
    ledger_snap next[] = {{LEDGER_SNAP_CARD, "C1", NULL, 0},
                          {LEDGER_SNAP_CARD, "C9", NULL, 0}}; /* absent: fine */
    assert_int_equal(ledger_commit(l, &r4, 1, next, 2, 4), 0);
    ledger_close(&l);

    l = open_dir(f->dir, true, false);
    assert_int_equal(ledger_checkpoint_seq(l, &seq), 0);
    assert_int_equal(seq, 4);
    snap_seen s = {0};
    assert_int_equal(ledger_scan_snapshot(l, on_member, on_card, &s), 0);
    assert_int_equal(s.members, 2);
    assert_int_equal(s.rec_len, 5);
    assert_int_equal(s.cards, 1);
    assert_string_equal(s.last_card, "C2");
    assert_string_equal(s.last_owner, "M2");
    ledger_close(&l);
}

typedef struct {
    uint64_t node[8], max[8];
    int n;
} nodes_seen;

static int on_node(void *ctx, uint64_t node_id, uint64_t event_id_max)
{
    nodes_seen *s = ctx;
    if (s->n < 8) {
        s->node[s->n] = node_id;
        s->max[s->n] = event_id_max;
    }
    s->n++;
    return 0;
}

static void test_ledger_R29_scan_nodes_max_event(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, false);
    nodes_seen s = {0};
    assert_int_equal(ledger_scan_nodes(l, on_node, &s), 0);
    assert_int_equal(s.n, 0);
    ledger_record recs[] = {rec(1, 7, 3),          rec(2, 7, 900),         rec(3, 7, 12),
                            rec(4, 0, 5),          rec(5, 2, 1),           rec(6, UINT64_MAX, 4),
                            rec(7, UINT64_MAX, 2), rec(8, 256, 1ull << 40)};
    assert_int_equal(ledger_commit(l, recs, LT_ARRAY_LEN(recs), NULL, 0, 0), 0);
    assert_int_equal(ledger_scan_nodes(l, on_node, &s), 0);
    assert_int_equal(s.n, 0); /* the index alone: not flushed yet */
    assert_int_equal(ledger_index_flush(l, 0), 0);
    assert_int_equal(ledger_scan_nodes(l, on_node, &s), 0);
    assert_int_equal(s.n, 5);
    uint64_t want_node[] = {0, 2, 7, 256, UINT64_MAX}, want_max[] = {5, 1, 900, 1ull << 40, 4};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(s.node[i], want_node[i]);
        assert_int_equal(s.max[i], want_max[i]);
    }
    ledger_close(&l);
}

static void test_ledger_exclusive_lock_refuses_second_daemon(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, true);
    ledger_opts o = {.dir = f->dir, .map_bytes = MAP_BYTES, .exclusive = true};
    ledger *l2 = NULL;
    char err[256] = "";
    assert_int_equal(ledger_open(&l2, &o, err, sizeof(err)), LEDGER_ERR_LOCKED);
    assert_null(l2);
    assert_non_null(strstr(err, "daemon.lock"));
    char pid[32];
    snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
    assert_non_null(strstr(err, pid));
    ledger_close(&l);
    /* Released on close. */
    assert_int_equal(ledger_open(&l2, &o, err, sizeof(err)), 0);
    ledger_close(&l2);
}

/* loyaltyctl reads beside a running daemon: another process, read-only, while the writer holds
 * the lock and keeps committing. */
static void test_ledger_read_only_beside_writer(void **st)
{
    fixture *f = *st;
    ledger *w = open_dir(f->dir, false, true);
    assert_int_equal(append(w, 1, 10, 4, 0), 0);
    int to_child[2], to_parent[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ledger_opts o = {.dir = f->dir, .read_only = true};
        ledger *r = NULL;
        uint64_t seq = 0, seq2 = 0;
        int ok = ledger_open(&r, &o, NULL, 0) == 0 && ledger_last_seq(r, &seq) == 0 && seq == 10 &&
                 ledger_commit(r, NULL, 0, NULL, 0, 1) == LEDGER_ERR_OTHER;
        ok = ok && write(to_parent[1], "r", 1) == 1; /* seen 10: the writer may go on */
        char c;
        ok = ok && read(to_child[0], &c, 1) == 1; /* the writer committed 11..20 */
        ok = ok && ledger_last_seq(r, &seq) == 0 && seq == 20 &&
             ledger_find_event(r, (lt_event_id){4, 15}, &seq2) == 0 && seq2 == 15;
        ledger_close(&r);
        _exit(ok ? 0 : 1);
    }
    char c;
    /* the child has read seq 10 before 11..20 are written (or has failed and says nothing) */
    struct pollfd pfd = {to_parent[0], POLLIN, 0};
    if (poll(&pfd, 1, 10000) == 1)
        assert_int_equal(read(to_parent[0], &c, 1), 1);
    assert_int_equal(append(w, 11, 20, 4, 0), 0);
    assert_int_equal(write(to_child[1], "x", 1), 1);
    child_ok(pid);
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);
    ledger_close(&w);

    char empty[80];
    snprintf(empty, sizeof(empty), "%s/none", f->dir);
    ledger_opts o = {.dir = empty, .read_only = true};
    ledger *r = NULL;
    assert_int_equal(ledger_open(&r, &o, NULL, 0), LEDGER_ERR_NOT_FOUND);
    assert_int_equal(access(empty, F_OK), -1); /* read-only never creates */
}

typedef struct {
    uint64_t n, last_seq, sum_event;
    int out_of_order;
} ids_seen;

static int on_id(void *ctx, lt_event_id id, uint64_t seq)
{
    ids_seen *s = ctx;
    s->out_of_order += seq <= s->last_seq;
    s->last_seq = seq;
    s->sum_event += id.event_id;
    s->n++;
    (void)id;
    return 0;
}

/* ledger_scan_dedup()'s two callbacks share one context */
typedef struct {
    nodes_seen n;
    ids_seen i;
} dedup_seen;

static int on_dedup_node(void *ctx, uint64_t node_id, uint64_t event_id_max)
{
    return on_node(&((dedup_seen *)ctx)->n, node_id, event_id_max);
}

static int on_dedup_id(void *ctx, lt_event_id id, uint64_t seq)
{
    return on_id(&((dedup_seen *)ctx)->i, id, seq);
}

/* R29 with the deferred index: ids committed but not flushed are found (ledger_find_event reads
 * the newest entries; the index alone does not have them), a second commit of one is refused,
 * and ledger_index_flush() puts them in the index and moves events_seq. */
static void test_ledger_R29_ids_found_before_the_index_flush(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, false);
    assert_int_equal(append(l, 1, 10, 4, 100), 0); /* ids (4, 101..110) */
    assert_int_equal(ledger_index_flush(l, 0), 0);
    assert_int_equal(ledger_indexed_seq(l), 10);
    ledger_record more[] = {rec(11, 5, 7), rec(12, 0, 0), rec(13, 4, 113)};
    assert_int_equal(ledger_commit(l, more, 3, NULL, 0, 0), 0);
    assert_int_equal(ledger_unindexed(l), 2); /* the system entry has no id */
    assert_int_equal(ledger_indexed_seq(l), 10);
    uint64_t seq = 0;
    assert_int_equal(ledger_find_event(l, (lt_event_id){5, 7}, &seq), 0);
    assert_int_equal(seq, 11);
    assert_int_equal(ledger_find_event(l, (lt_event_id){4, 105}, &seq), 0);
    assert_int_equal(seq, 5);
    assert_int_equal(ledger_find_event_indexed(l, (lt_event_id){5, 7}, &seq), LEDGER_ERR_NOT_FOUND);
    assert_int_equal(ledger_find_event(l, (lt_event_id){5, 8}, &seq), LEDGER_ERR_NOT_FOUND);
    ids_seen s = {0};
    assert_int_equal(ledger_scan_unindexed(l, on_id, &s), 0);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.sum_event, 7 + 113);
    assert_int_equal(s.out_of_order, 0);
    /* refused whether the first is flushed (4, 105) or not (5, 7) */
    ledger_record dup1[] = {rec(14, 9, 1), rec(15, 5, 7)};
    assert_int_equal(ledger_commit(l, dup1, 2, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_record dup2[] = {rec(14, 4, 105)};
    assert_int_equal(ledger_commit(l, dup2, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    assert_int_equal(ledger_unindexed(l), 2); /* a refused commit keeps nothing */
    assert_int_equal(ledger_index_flush(l, 0), 0);
    assert_int_equal(ledger_indexed_seq(l), 13);
    assert_int_equal(ledger_unindexed(l), 0);
    assert_int_equal(ledger_find_event_indexed(l, (lt_event_id){5, 7}, &seq), 0);
    assert_int_equal(seq, 11);
    memset(&s, 0, sizeof s);
    assert_int_equal(ledger_scan_unindexed(l, on_id, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(ledger_index_flush(l, 0), 0); /* nothing to do */
    ledger_record dup3[] = {rec(14, 5, 7)};
    assert_int_equal(ledger_commit(l, dup3, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_close(&l);
}

/* A process that dies between a commit and the index flush (kill -9), here in the middle of a
 * round: a reader finds the ids in the entries; the next writable open indexes them (again,
 * for those the cut-off round put in already) before anyone reads the index. */
static void test_ledger_R29_crash_before_the_index_flush(void **st)
{
    fixture *f = *st;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ledger *w = child_writer(f->dir);
        int ok = w != NULL;
        for (uint64_t s = 1; ok && s <= 200; s += 50)
            ok = append(w, s, s + 49, 6, 0) == 0;
        ok = ok && ledger_index_flush(w, 0) == 0; /* 1..200 indexed */
        for (uint64_t s = 201; ok && s <= 300; s += 50)
            ok = append(w, s, s + 49, 7, 0) == 0;
        /* one step of the next round: (7, 201..230) in the index, events_seq still 200 */
        ok = ok && ledger_index_flush(w, 30) == 0 && ledger_index_flushing(w) &&
             ledger_indexed_seq(w) == 200;
        _exit(ok ? 0 : 1); /* no ledger_close(): the round is cut off */
    }
    child_ok(pid);

    ledger *r = open_dir(f->dir, true, false);
    ids_seen s = {0};
    assert_int_equal(ledger_scan_unindexed(r, on_id, &s), 0);
    assert_int_equal(s.n, 100);
    assert_int_equal(s.last_seq, 300);
    uint64_t seq = 0;
    assert_int_equal(ledger_find_event(r, (lt_event_id){7, 250}, &seq), 0);
    assert_int_equal(seq, 250);
    assert_int_equal(ledger_find_event_indexed(r, (lt_event_id){7, 250}, &seq),
                     LEDGER_ERR_NOT_FOUND);
    assert_int_equal(ledger_find_event_indexed(r, (lt_event_id){7, 230}, &seq), 0);
    nodes_seen ns = {0};
    assert_int_equal(ledger_scan_nodes(r, on_node, &ns), 0);
    assert_int_equal(ns.n, 2);
    assert_int_equal(ns.max[1], 230); /* as far as the cut-off round went */
    /* the index and what it lacks, as of one moment */
    dedup_seen b = {0};
    assert_int_equal(ledger_scan_dedup(r, on_dedup_node, on_dedup_id, &b), 0);
    assert_int_equal(b.n.n, 2);
    assert_int_equal(b.n.max[1], 230);
    assert_int_equal(b.i.n, 100);
    assert_int_equal(b.i.last_seq, 300);
    ledger_close(&r);

    ledger *l = open_dir(f->dir, false, false);
    assert_int_equal(ledger_indexed_seq(l), 300);
    assert_int_equal(ledger_unindexed(l), 0);
    assert_int_equal(ledger_find_event_indexed(l, (lt_event_id){7, 300}, &seq), 0);
    assert_int_equal(seq, 300);
    memset(&ns, 0, sizeof ns);
    assert_int_equal(ledger_scan_nodes(l, on_node, &ns), 0);
    assert_int_equal(ns.n, 2);
    assert_int_equal(ns.max[1], 300);
    ledger_record dup[] = {rec(301, 7, 201)};
    assert_int_equal(ledger_commit(l, dup, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_stats st2;
    assert_int_equal(ledger_stat(l, &st2), 0);
    assert_int_equal(st2.events, 300);
    ledger_close(&l);
}

/* A round in steps: events_seq moves at its last step only; commits between steps wait for the
 * next round; an id of the round being inserted is still refused. */
static void test_ledger_R29_index_flush_in_steps(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, false);
    assert_int_equal(append(l, 1, 10, 3, 0), 0);
    assert_int_equal(append(l, 11, 20, 2, 0), 0);
    assert_false(ledger_index_flushing(l));
    assert_int_equal(ledger_index_flush(l, 8), 0); /* (2, 11..18) */
    assert_true(ledger_index_flushing(l));
    assert_int_equal(ledger_indexed_seq(l), 0);
    assert_int_equal(ledger_unindexed(l), 12);
    assert_int_equal(append(l, 21, 25, 1, 0), 0); /* the next round's */
    assert_int_equal(ledger_unindexed(l), 17);
    ledger_record dup[] = {rec(26, 3, 4)}; /* in the round, not inserted yet */
    assert_int_equal(ledger_commit(l, dup, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_record dup2[] = {rec(26, 2, 12)}; /* in the round, inserted */
    assert_int_equal(ledger_commit(l, dup2, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    uint64_t seq = 0;
    assert_int_equal(ledger_find_event_indexed(l, (lt_event_id){2, 12}, &seq), 0);
    assert_int_equal(ledger_find_event_indexed(l, (lt_event_id){3, 4}, &seq), LEDGER_ERR_NOT_FOUND);
    assert_int_equal(ledger_find_event(l, (lt_event_id){3, 4}, &seq), 0);
    assert_int_equal(seq, 4);
    assert_int_equal(ledger_index_flush(l, 8), 0);
    assert_int_equal(ledger_indexed_seq(l), 0);
    assert_int_equal(ledger_index_flush(l, 8), 0); /* the last 4 */
    assert_false(ledger_index_flushing(l));
    assert_int_equal(ledger_indexed_seq(l), 20);
    assert_int_equal(ledger_unindexed(l), 5);
    assert_int_equal(ledger_index_flush(l, 0), 0); /* the next round, whole */
    assert_int_equal(ledger_indexed_seq(l), 25);
    assert_int_equal(ledger_unindexed(l), 0);
    ledger_stats stats;
    assert_int_equal(ledger_stat(l, &stats), 0);
    assert_int_equal(stats.events, 25);
    ledger_record dup3[] = {rec(26, 3, 4)};
    assert_int_equal(ledger_commit(l, dup3, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_close(&l);
}

/* ledger_index_ride(): commits carry a round's slices in their own transactions (twice their
 * entries, at least 256, at most the limit) and its last slice moves events_seq. */
static void test_ledger_R29_commits_carry_the_round(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, false);
    for (uint64_t s = 1; s <= 600; s += 60)
        assert_int_equal(append(l, s, s + 59, 8, 0), 0);
    ledger_index_ride(l, 300);
    assert_int_equal(ledger_index_start(l), 0);
    assert_true(ledger_index_flushing(l));
    assert_int_equal(ledger_unindexed(l), 600);
    assert_int_equal(append(l, 601, 610, 9, 0), 0); /* carries 256 (twice 10 is less) */
    assert_int_equal(ledger_unindexed(l), 600 - 256 + 10);
    assert_int_equal(append(l, 611, 770, 9, 0), 0); /* 300: the limit */
    assert_int_equal(ledger_unindexed(l), 600 - 556 + 170);
    assert_int_equal(ledger_indexed_seq(l), 0);
    uint64_t seq = 0;
    assert_int_equal(ledger_find_event_indexed(l, (lt_event_id){8, 556}, &seq), 0);
    assert_int_equal(ledger_find_event_indexed(l, (lt_event_id){8, 557}, &seq),
                     LEDGER_ERR_NOT_FOUND);
    assert_int_equal(append(l, 771, 771, 9, 0), 0); /* the last 44: the round ends */
    assert_false(ledger_index_flushing(l));
    assert_int_equal(ledger_indexed_seq(l), 600);
    assert_int_equal(ledger_unindexed(l), 171);
    ledger_record dup[] = {rec(772, 8, 600)};
    assert_int_equal(ledger_commit(l, dup, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_close(&l); /* flushes the rest */
    l = open_dir(f->dir, true, false);
    ledger_stats stats;
    assert_int_equal(ledger_stat(l, &stats), 0);
    assert_int_equal(stats.events, 771);
    ledger_close(&l);
}

/* R29 from the daemon's side: the writing handle (exclusive) finds the ids it committed and
 * has not indexed yet in its memory, from another thread while it commits and runs rounds
 * (ledger_find_event() takes the generations' mutex; an id leaves them only once its round is
 * durable in the index). Every id whose commit has returned must be found at its seq. */
typedef struct {
    ledger *l;
    _Atomic uint64_t committed; /* the last seq whose ledger_commit() returned */
    _Atomic bool done;
    uint64_t lookups, wrong;
} finder;

static void *find_committed(void *arg)
{
    finder *fd = arg;
    uint64_t x = 88172645463325252ull; /* xorshift: which ids to ask for */
    while (!atomic_load(&fd->done)) {
        uint64_t last = atomic_load(&fd->committed);
        if (last == 0)
            continue;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* mostly the newest (not indexed yet), sometimes any */
        uint64_t s = x % 4 ? last - x % (last < 200 ? last : 200) : 1 + x % last;
        uint64_t seq = 0;
        if (ledger_find_event(fd->l, (lt_event_id){1 + s % 7, s}, &seq) != 0 || seq != s)
            fd->wrong++;
        fd->lookups++;
    }
    return NULL;
}

static void test_ledger_R29_writer_finds_unindexed_ids_from_any_thread(void **st)
{
    fixture *f = *st;
    finder fd = {.l = open_dir(f->dir, false, true)};
    ledger_index_ride(fd.l, 300);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, find_committed, &fd), 0);
    uint64_t s = 1;
    for (int c = 0; c < 400; c++) {
        ledger_record recs[50];
        for (size_t i = 0; i < 50; i++, s++)
            recs[i] = rec(s, 1 + s % 7, s);
        assert_int_equal(ledger_commit(fd.l, recs, 50, NULL, 0, 0), 0);
        atomic_store(&fd.committed, s - 1);
        if (c % 10 == 9)
            assert_int_equal(ledger_index_start(fd.l), 0); /* commits carry it */
        if (c % 25 == 24)
            assert_int_equal(ledger_index_flush(fd.l, 64), 0); /* and steps */
    }
    atomic_store(&fd.done, true);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_true(fd.lookups > 100);
    assert_int_equal(fd.wrong, 0);
    /* the newest ids are in memory only: the index lacks them, the writer finds them (a writer
     * reads no entries for it) */
    assert_true(ledger_unindexed(fd.l) > 0);
    uint64_t seq = 0;
    lt_event_id newest = {1 + (s - 1) % 7, s - 1};
    assert_int_equal(ledger_find_event_indexed(fd.l, newest, &seq), LEDGER_ERR_NOT_FOUND);
    assert_int_equal(ledger_find_event(fd.l, newest, &seq), 0);
    assert_int_equal(seq, s - 1);
    assert_int_equal(ledger_find_event(fd.l, (lt_event_id){1 + s % 7, s}, &seq),
                     LEDGER_ERR_NOT_FOUND);
    ledger_close(&fd.l);
}

/* R29 after a failed commit (the daemon then rebuilds its state without reopening the ledger,
 * and its pending map no longer holds acknowledged ids): the writer's memory still finds the
 * ids committed and not indexed, and refuses them again, before and after their round. */
static void test_ledger_R29_failed_commit_keeps_the_unindexed_ids(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, true);
    assert_int_equal(append(l, 1, 40, 3, 0), 0);
    assert_int_equal(ledger_index_start(l), 0); /* a round of 1..40 under way */
    assert_int_equal(append(l, 41, 60, 3, 0), 0);
    ledger_record gap[] = {rec(62, 3, 62)}; /* 61 missing: refused, nothing written */
    assert_true(ledger_commit(l, gap, 1, NULL, 0, 0) != 0);
    uint64_t seq = 0;
    for (uint64_t s = 1; s <= 60; s++) {
        assert_int_equal(ledger_find_event(l, (lt_event_id){3, s}, &seq), 0);
        assert_int_equal(seq, s);
    }
    assert_int_equal(ledger_find_event_indexed(l, (lt_event_id){3, 50}, &seq),
                     LEDGER_ERR_NOT_FOUND);
    ledger_record again[] = {rec(61, 3, 50)};
    assert_int_equal(ledger_commit(l, again, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_record again2[] = {rec(61, 3, 20)};
    assert_int_equal(ledger_commit(l, again2, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    while (ledger_indexed_seq(l) < 60) /* both rounds to their end */
        assert_int_equal(ledger_index_flush(l, 7), 0);
    assert_int_equal(ledger_unindexed(l), 0);
    assert_int_equal(ledger_find_event(l, (lt_event_id){3, 50}, &seq), 0);
    assert_int_equal(seq, 50);
    assert_int_equal(ledger_commit(l, again, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    assert_int_equal(ledger_commit(l, again2, 1, NULL, 0, 0), LEDGER_ERR_DUP);
    ledger_record next[] = {rec(61, 3, 61)};
    assert_int_equal(ledger_commit(l, next, 1, NULL, 0, 0), 0);
    ledger_close(&l);
}

/* Entries whose ids repeat (here written with record ids that differ from the ids inside
 * their bytes, which only a damaged or forged ledger has): the open's indexing of the entries
 * after events_seq refuses them instead of indexing one of the two. */
static void test_ledger_R29_open_refuses_an_id_twice_in_the_entries(void **st)
{
    fixture *f = *st;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ledger_record r[] = {rec(1, 5, 5), rec(2, 5, 5)};
        r[1].id.event_id = 6; /* the bytes still say (5, 5) */
        ledger *w = child_writer(f->dir);
        int ok = w != NULL && ledger_commit(w, r, 2, NULL, 0, 0) == 0;
        _exit(ok ? 0 : 1); /* no flush */
    }
    child_ok(pid);
    ledger_opts o = {.dir = f->dir, .map_bytes = MAP_BYTES};
    ledger *l = NULL;
    char err[256] = "";
    assert_int_equal(ledger_open(&l, &o, err, sizeof err), LEDGER_ERR_DUP);
    assert_null(l);
    assert_non_null(strstr(err, "indexing the event ids of entries 1..2"));
}

static void test_ledger_durable_after_reopen_and_copy(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, true);
    for (uint64_t s = 1; s <= 200; s += 20)
        assert_int_equal(append(l, s, s + 19, 9, 1000), 0);
    char copy[80];
    snprintf(copy, sizeof(copy), "%s/backup", f->dir);
    char err[256];
    assert_int_equal(ledger_copy(l, copy, err, sizeof(err)), 0);
    assert_int_equal(ledger_copy(l, copy, err, sizeof(err)), LEDGER_ERR_OTHER); /* not empty */
    ledger_close(&l);

    const char *dirs[] = {f->dir, copy};
    for (int i = 0; i < 2; i++) {
        l = open_dir(dirs[i], false, false);
        uint64_t seq;
        assert_int_equal(ledger_last_seq(l, &seq), 0);
        assert_int_equal(seq, 200);
        assert_int_equal(ledger_find_event(l, (lt_event_id){9, 1150}, &seq), 0);
        assert_int_equal(seq, 150);
        scan_seen s = {0};
        assert_int_equal(ledger_scan(l, 1, 0, on_entry, &s), 0);
        assert_int_equal(s.count, 200);
        assert_int_equal(s.bad, 0);
        assert_int_equal(append(l, 201, 201, 9, 1000), 0);
        ledger_close(&l);
    }
}

/* A full map fails the commit with LEDGER_ERR_MAP_FULL and leaves the ledger as it was. */
static void test_ledger_map_full(void **st)
{
    fixture *f = *st;
    ledger_opts o = {.dir = f->dir, .map_bytes = 1 << 20};
    ledger *l = NULL;
    assert_int_equal(ledger_open(&l, &o, NULL, 0), 0);
    static uint8_t big[64 * 1024];
    uint64_t seq = 0;
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        ledger_record r = {seq + 1, {1, seq + 1}, big, sizeof(big)};
        rc = ledger_commit(l, &r, 1, NULL, 0, 0);
        if (rc == 0)
            seq++;
    }
    assert_int_equal(rc, LEDGER_ERR_MAP_FULL);
    assert_non_null(strstr(ledger_errmsg(l), "MDB_MAP_FULL"));
    uint64_t last;
    assert_int_equal(ledger_last_seq(l, &last), 0);
    assert_int_equal(last, seq);
    ledger_record small = rec(seq + 1, 2, 1);
    assert_int_equal(ledger_commit(l, &small, 1, NULL, 0, 0), 0); /* still usable */
    ledger_close(&l);
}

/* The format number as stored (u32 big-endian under meta "format"), read with LMDB directly as
 * another build would find it, after writing `set` there unless it is negative. 0: none. */
static uint32_t stored_format(const char *dir, int set)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta;
    MDB_val k = {6, (void *)"format"}, v;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0640), 0);
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

/* Format 3 (a dedup index that may lag, meta events_seq): a new ledger is format 3; a format 1
 * ledger is read as it is by a reader and marked format 3 by the first writable open (so that
 * an older build refuses it by number); a format this build does not know is refused with its
 * number. */
static void test_ledger_format_upgrade_and_unknown(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, false);
    assert_int_equal(append(l, 1, 3, 1, 0), 0);
    ledger_close(&l);
    assert_int_equal(stored_format(f->dir, -1), 3);

    assert_int_equal(stored_format(f->dir, 1), 1); /* as a format 1 build left it */
    l = open_dir(f->dir, true, false);
    uint64_t seq = 0;
    assert_int_equal(ledger_last_seq(l, &seq), 0);
    assert_int_equal(seq, 3);
    ledger_close(&l);
    assert_int_equal(stored_format(f->dir, -1), 1); /* a reader changes nothing */
    l = open_dir(f->dir, false, false);
    ledger_close(&l);
    assert_int_equal(stored_format(f->dir, -1), 3);

    ledger_opts o = {.dir = f->dir, .map_bytes = MAP_BYTES};
    char err[256] = "";
    for (int bad = 0; bad <= 4; bad += 4) { /* 0 and 4: neither is a format this build reads */
        assert_int_equal(stored_format(f->dir, bad), (uint32_t)bad);
        ledger *l2 = NULL;
        assert_int_equal(ledger_open(&l2, &o, err, sizeof(err)), LEDGER_ERR_CORRUPT);
        assert_null(l2);
        char want[64];
        snprintf(want, sizeof want, "unknown ledger format %d (this build reads formats 1 to 3)",
                 bad);
        assert_non_null(strstr(err, want));
    }
}

/* Whether this process's map of DIR/data.mdb is marked for random reads ("rr" in its VmFlags,
 * MADV_RANDOM: no read-ahead): 1 or 0, or -1 if there is no such map. */
static int map_random(const char *dir)
{
    char want[PATH_MAX + 16], line[1024];
    char *real = realpath(dir, NULL);
    assert_non_null(real);
    snprintf(want, sizeof want, "%s/data.mdb", real);
    free(real);
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    int found = -1;
    bool in = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        size_t n = strlen(line), w = strlen(want);
        /* a mapping's header: "start-end perms offset dev inode path" (lower-case hex);
         * its fields follow as "Name: value" lines */
        const char *sp = strchr(line, ' '), *dash = strchr(line, '-');
        bool header = sp && dash && dash < sp &&
                      ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'));
        if (header)
            in = n >= w && strcmp(line + n - w, want) == 0;
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            found = strstr(line, " rr") != NULL;
            break;
        }
    }
    fclose(f);
    return found;
}

/* Turns read-ahead on, then off again, checking the map's flags after each. */
static void toggle_readahead(ledger *l, const char *dir)
{
    assert_int_equal(ledger_readahead(l, true), 0);
    assert_int_equal(map_random(dir), 0);
    assert_int_equal(ledger_readahead(l, false), 0);
    assert_int_equal(map_random(dir), 1);
}

/* Read-ahead is off for the daemon's lookups, on for loyaltyctl's scans, and the daemon turns
 * it on for its recovery and off again (ledger_readahead): from a cold page cache a scan
 * without it reads one 4 KiB page per fault, 8-10x slower (docs/performance.md). */
static void test_ledger_readahead_on_for_scans_off_for_lookups(void **st)
{
    fixture *f = *st;
    ledger *l = open_dir(f->dir, false, true);
    assert_int_equal(append(l, 1, 10, 4, 0), 0);
    assert_int_equal(map_random(f->dir), 1); /* the daemon's default */
    toggle_readahead(l, f->dir);
    ledger_close(&l);
    assert_int_equal(map_random(f->dir), -1);

    ledger_opts o = {.dir = f->dir, .read_only = true, .readahead = true};
    assert_int_equal(ledger_open(&l, &o, NULL, 0), 0);
    assert_int_equal(map_random(f->dir), 0); /* loyaltyctl */
    uint64_t seq = 0;
    assert_int_equal(ledger_last_seq(l, &seq), 0);
    assert_int_equal(seq, 10);
    ledger_close(&l);
    o.readahead = false;
    assert_int_equal(ledger_open(&l, &o, NULL, 0), 0);
    assert_int_equal(map_random(f->dir), 1);
    ledger_close(&l);

    /* a map size that is not whole pages: the kernel's mapping is longer than LMDB's size */
    ledger_opts w = {.dir = f->dir, .map_bytes = MAP_BYTES + 100, .exclusive = true};
    assert_int_equal(ledger_open(&l, &w, NULL, 0), 0);
    toggle_readahead(l, f->dir);
    ledger_close(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ledger_commit_scan_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_gap_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_R29_dedup_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_checkpoint_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_R29_scan_nodes_max_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_exclusive_lock_refuses_second_daemon, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ledger_read_only_beside_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_R29_ids_found_before_the_index_flush, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ledger_R29_crash_before_the_index_flush, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ledger_R29_index_flush_in_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_R29_commits_carry_the_round, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_R29_writer_finds_unindexed_ids_from_any_thread,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_R29_failed_commit_keeps_the_unindexed_ids,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_R29_open_refuses_an_id_twice_in_the_entries,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_durable_after_reopen_and_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_format_upgrade_and_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_readahead_on_for_scans_off_for_lookups, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
