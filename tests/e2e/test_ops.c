/* test_ops.c: end to end for operations: a hot backup taken while tills keep sending, restored
 * into a fresh directory and run by a second daemon whose state must equal the first one's at
 * the same sequence; the checkpoint store DATA_DIR/state/ in backups, restores (--force moves
 * it aside) and verify, and backups without it; the refusals of backup and restore;
 * loyaltyd --check-config on good and bad configuration and rules files (docs/operations.md). */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define LOAD_NODE 7
#define LOAD_BATCH_EVENTS 20
#define LOAD_MEMBERS 40
#define LOAD_BATCHES_MAX 2000 /* the load thread stops here whatever happens */
#define LOAD_BEFORE_BACKUP 10 /* batches acknowledged before the backup starts */
#define LOAD_AFTER_BACKUP 10  /* and after it returns */
#define WAIT_MS_MAX 30000
#define OUT_MAX 16384
#define STATE_YAML "checkpoint_interval_ms: 200\n" /* checkpoints into state/ soon after sales */

static lt_daemon g_a, g_b;
static int64_t g_t0; /* occurred_at base: events must be identical when resent */

static int setup(void **state)
{
    (void)state;
    memset(&g_a, 0, sizeof g_a);
    memset(&g_b, 0, sizeof g_b);
    g_t0 = h_now() - 3600;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_b.dir[0] != '\0')
        h_cleanup(&g_b);
    if (g_a.dir[0] != '\0')
        h_cleanup(&g_a);
    h_free_events();
    return 0;
}

/* Event eid of the load, always built the same way (a resend is a DUPLICATE, not a CONFLICT). */
static Loyalty__Event *load_event(uint64_t eid)
{
    static const char *categories[] = {"groceries", "appliances", "tobacco", "clothing"};
    char member[32], sku[32];
    snprintf(member, sizeof member, "ops%02u", (unsigned)(eid % LOAD_MEMBERS));
    snprintf(sku, sizeof sku, "SKU%u", (unsigned)(eid % 13));
    Loyalty__Event *e = h_sale(LOAD_NODE, eid, member, g_t0 + (int64_t)eid, 0);
    int64_t price = 1000 + (int64_t)(eid % 7) * 2500;
    h_line(e, sku, categories[eid % 4], 1 + (int64_t)(eid % 3), price, price, 0);
    h_line(e, "BREAD", "groceries", 1, 850, 800, 0);
    return e;
}

static Loyalty__EventBatch *load_batch(uint64_t k)
{
    Loyalty__Event *ev[LOAD_BATCH_EVENTS];
    for (uint64_t i = 0; i < LOAD_BATCH_EVENTS; i++)
        ev[i] = load_event(k * LOAD_BATCH_EVENTS + i + 1);
    return h_batch(LOAD_BATCH_EVENTS, ev);
}

typedef struct {
    lt_daemon *d;
    atomic_bool stop;
    atomic_uint batches; /* acknowledged, every event ACCEPTED */
    atomic_int errors;
} load_ctx;

/* A till sending batch after batch until told to stop. No cmocka asserts here (they longjmp);
 * failures are counted and checked by the main thread. The main thread builds no events while
 * this runs: the harness's event pool is not thread-safe. */
static void *load_thread(void *arg)
{
    load_ctx *c = arg;
    for (unsigned k = 0; k < LOAD_BATCHES_MAX && !atomic_load(&c->stop); k++) {
        Loyalty__AckBatch *r = h_send(c->d, load_batch(k), 10000);
        bool ok = r != NULL && r->n_acks == LOAD_BATCH_EVENTS;
        for (size_t i = 0; ok && i < r->n_acks; i++)
            ok = r->acks[i]->status == LOYALTY__STATUS__ACCEPTED;
        if (r != NULL)
            loyalty__ack_batch__free_unpacked(r, NULL);
        if (!ok) {
            atomic_fetch_add(&c->errors, 1);
            break;
        }
        atomic_fetch_add(&c->batches, 1);
    }
    return NULL;
}

/* Waits until the load has n batches acknowledged. Returns false on errors or a timeout. */
static bool wait_batches(load_ctx *c, unsigned n)
{
    for (int ms = 0; atomic_load(&c->batches) < n; ms += 5) {
        if (ms > WAIT_MS_MAX || atomic_load(&c->errors) > 0)
            return false;
        usleep(5000);
    }
    return true;
}

typedef struct {
    uint64_t seq, members, hash;
} live_hash;

static live_hash query_hash(lt_daemon *d)
{
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_STATE_HASH;
    q.state_hash = 1;
    Loyalty__QueryReply *r = h_query(d, &q, 10000);
    assert_non_null(r);
    assert_true(r->ok);
    assert_true(r->has_state_hash);
    live_hash h = {r->seq, r->members, r->state_hash};
    loyalty__query_reply__free_unpacked(r, NULL);
    return h;
}

/* The number after label in out (e.g. "last seq    42"), or fails. */
static uint64_t field_u64(const char *out, const char *label)
{
    const char *p = strstr(out, label);
    if (p == NULL)
        fail_msg("'%s' not in output:\n%s", label, out);
    p += strlen(label);
    while (*p == ' ' || *p == ':' || *p == '"')
        p++;
    return strtoull(p, NULL, 10);
}

/* The state hash in `loyaltyctl replay --json` output. */
static uint64_t replay_hash(const char *out)
{
    const char *p = strstr(out, "\"state_hash\":\"");
    if (p == NULL)
        fail_msg("no state_hash in:\n%s", out);
    return strtoull(p + strlen("\"state_hash\":\""), NULL, 16);
}

static void expect_ctl(lt_daemon *d, const char *args, int rc_want, const char *needle)
{
    char out[OUT_MAX];
    int rc = h_ctl(d, args, out, sizeof out);
    if (rc != rc_want || (needle != NULL && strstr(out, needle) == NULL))
        fail_msg("loyaltyctl %s: exit %d (want %d), output lacks '%s':\n%s", args, rc, rc_want,
                 needle ? needle : "", out);
}

/* Sends every batch of the load again, to d: the events the backup holds must answer
 * DUPLICATE, the others ACCEPTED, in the same order as the first time. */
static void resend_load(lt_daemon *d, unsigned batches, uint64_t backup_seq)
{
    uint64_t dup = 0, acc = 0;
    for (unsigned k = 0; k < batches; k++) {
        Loyalty__AckBatch *r = h_send(d, load_batch(k), 10000);
        assert_non_null(r);
        assert_int_equal(r->n_acks, LOAD_BATCH_EVENTS);
        for (size_t i = 0; i < r->n_acks; i++) {
            uint64_t eid = k * LOAD_BATCH_EVENTS + i + 1;
            int want = eid <= backup_seq ? LOYALTY__STATUS__DUPLICATE : LOYALTY__STATUS__ACCEPTED;
            if ((int)r->acks[i]->status != want)
                fail_msg("event %" PRIu64 ": status %d, expected %d (backup seq %" PRIu64 ")", eid,
                         r->acks[i]->status, want, backup_seq);
            dup += want == LOYALTY__STATUS__DUPLICATE;
            acc += want == LOYALTY__STATUS__ACCEPTED;
        }
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
    assert_int_equal(dup, backup_seq);
    assert_true(acc > 0);
}

/* Backup while a till sends, restore into a fresh directory, run a second daemon on it: same
 * state hash as the first daemon at the backup's sequence, and again once the events after
 * the backup are resent; verify passes on both. */
static void test_backup_under_load_restore_and_run(void **state)
{
    (void)state;
    char bk[400], rdir[400], args[1024], out[OUT_MAX];
    h_start(&g_a, NULL);
    snprintf(bk, sizeof bk, "%s/backup", g_a.dir);
    snprintf(rdir, sizeof rdir, "%s/restored", g_a.dir);

    load_ctx c = {.d = &g_a};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, load_thread, &c), 0);
    bool ok = wait_batches(&c, LOAD_BEFORE_BACKUP);
    unsigned before = atomic_load(&c.batches);
    setenv("LOYALTYCTL_PROGRESS", "all", 1);
    snprintf(args, sizeof args, "backup %s", bk);
    int rc = h_ctl(&g_a, args, out, sizeof out);
    unsetenv("LOYALTYCTL_PROGRESS");
    unsigned during = atomic_load(&c.batches) - before;
    ok = ok && wait_batches(&c, atomic_load(&c.batches) + LOAD_AFTER_BACKUP);
    /* The thread is stopped before anything can fail: it uses g_a's socket. */
    atomic_store(&c.stop, true);
    pthread_join(t, NULL);
    if (!ok || atomic_load(&c.errors) != 0)
        fail_msg("load: %u batches acknowledged, %d errors", atomic_load(&c.batches),
                 atomic_load(&c.errors));
    if (rc != 0 || strstr(out, "backup: done") == NULL)
        fail_msg("backup failed (%d):\n%s", rc, out);
    unsigned batches = atomic_load(&c.batches);
    uint64_t backup_seq = field_u64(out, "last seq");
    print_message("backup at seq %" PRIu64 " while %u batches were acknowledged; load %u batches\n",
                  backup_seq, during, batches);
    live_hash a = query_hash(&g_a);
    assert_int_equal(a.seq, (uint64_t)batches * LOAD_BATCH_EVENTS);
    assert_true(backup_seq >= (uint64_t)before * LOAD_BATCH_EVENTS);
    assert_true(backup_seq < a.seq);
    /* The first daemon's ledger, replayed to the backup's sequence: the reference hash. */
    snprintf(args, sizeof args, "replay --to %" PRIu64 " --json", backup_seq);
    assert_int_equal(h_ctl(&g_a, args, out, sizeof out), 0);
    uint64_t hash_at_backup = replay_hash(out);

    snprintf(args, sizeof args, "restore %s --data %s", bk, rdir);
    rc = h_ctl(&g_a, args, out, sizeof out);
    if (rc != 0)
        fail_msg("restore failed (%d):\n%s", rc, out);
    assert_int_equal(field_u64(out, "last seq"), backup_seq);

    h_start_data(&g_b, rdir, NULL);
    live_hash b = query_hash(&g_b);
    assert_int_equal(b.seq, backup_seq);
    assert_int_equal(b.hash, hash_at_backup);
    expect_ctl(&g_b, "verify --online", 0, "PASS");

    resend_load(&g_b, batches, backup_seq);
    b = query_hash(&g_b);
    assert_int_equal(b.seq, a.seq);
    assert_int_equal(b.members, a.members);
    assert_int_equal(b.hash, a.hash);
    expect_ctl(&g_b, "verify --online", 0, "PASS");
    expect_ctl(&g_a, "verify --online", 0, "PASS");
    assert_int_equal(h_stop(&g_b, SIGTERM), 0);
    expect_ctl(&g_b, "verify --offline", 0, "PASS");
}

/* backup refuses a non-empty directory; restore refuses a target that holds a ledger or other
 * files (unless --force), a directory a daemon runs on, and a live data directory as source. */
static void test_backup_and_restore_refusals(void **state)
{
    (void)state;
    char bk[400], rdir[400], junk[400], args[1024], out[OUT_MAX];
    h_start(&g_a, NULL);
    Loyalty__Event *e = load_event(1);
    Loyalty__AckBatch *r = h_send(&g_a, h_batch(1, &e), 10000);
    assert_non_null(r);
    loyalty__ack_batch__free_unpacked(r, NULL);
    snprintf(bk, sizeof bk, "%s/backup", g_a.dir);
    snprintf(rdir, sizeof rdir, "%s/restored", g_a.dir);
    snprintf(junk, sizeof junk, "%s/junk", g_a.dir);

    snprintf(args, sizeof args, "backup %s", bk);
    expect_ctl(&g_a, args, 0, "last seq    1");
    struct stat st;
    snprintf(out, sizeof out, "%s/data.mdb", bk);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    expect_ctl(&g_a, args, 1, "is not empty");

    /* a target holding something else */
    assert_int_equal(mkdir(junk, 0750), 0);
    snprintf(out, sizeof out, "%s/notes.txt", junk);
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    fputs("not a ledger\n", f);
    fclose(f);
    snprintf(args, sizeof args, "restore %s --data %s", bk, junk);
    expect_ctl(&g_a, args, 1, "is not empty");

    /* a target holding a ledger: refused, then replaced with --force (the old one kept) */
    snprintf(args, sizeof args, "restore %s --data %s", bk, rdir);
    expect_ctl(&g_a, args, 0, "last seq    1");
    expect_ctl(&g_a, args, 1, "already holds a ledger");
    snprintf(args, sizeof args, "restore %s --data %s --force", bk, rdir);
    expect_ctl(&g_a, args, 0, "kept as");

    /* the running daemon's own directory: refused, even with --force */
    snprintf(args, sizeof args, "restore %s --data %s --force", bk, g_a.data);
    expect_ctl(&g_a, args, 1, "in use by a running loyaltyd");
    /* a live data directory is not a backup */
    snprintf(args, sizeof args, "restore %s --data %s/other", g_a.data, g_a.dir);
    expect_ctl(&g_a, args, 1, "not a backup");
    /* not a backup at all */
    snprintf(args, sizeof args, "restore %s --data %s/other", junk, g_a.dir);
    expect_ctl(&g_a, args, 1, "data.mdb");
    /* usage */
    expect_ctl(&g_a, "backup --help", 0, "usage: loyaltyctl backup DIR");
    expect_ctl(&g_a, "restore --help", 0, "usage: loyaltyctl restore BACKUP_DIR");
    expect_ctl(&g_a, "backup", 2, "expected one directory");
    const char *ctl = getenv("LOYALTYCTL");
    assert_non_null(ctl);
    snprintf(args, sizeof args, "%s restore %s", ctl, bk);
    assert_int_equal(h_run(args, out, sizeof out), 2);
    assert_non_null(strstr(out, "--data DIR"));
}

/* ------------------------------------------------------------------ state/ */

/* Sends batches k0..k1-1 of the load to d; every event must be ACCEPTED. */
static void send_load(lt_daemon *d, unsigned k0, unsigned k1)
{
    for (unsigned k = k0; k < k1; k++) {
        Loyalty__AckBatch *r = h_send(d, load_batch(k), 10000);
        assert_non_null(r);
        assert_int_equal(r->n_acks, LOAD_BATCH_EVENTS);
        for (size_t i = 0; i < r->n_acks; i++)
            assert_int_equal(r->acks[i]->status, LOYALTY__STATUS__ACCEPTED);
        loyalty__ack_batch__free_unpacked(r, NULL);
    }
}

/* Waits (more than 0.5 s, then until the gauge says so) until d has committed a checkpoint
 * into state/ at sequence seq. */
static void wait_checkpoint(lt_daemon *d, uint64_t seq)
{
    static char body[1 << 20];
    usleep(600 * 1000);
    double have = -1;
    for (int ms = 0; ms <= WAIT_MS_MAX; ms += 50) {
        assert_int_equal(h_http_get(d, "/metrics", body, sizeof body), 200);
        have = h_metric(body, "loyaltyd_checkpoint_seq");
        if (have == (double)seq)
            return;
        usleep(50 * 1000);
    }
    fail_msg("no checkpoint at seq %" PRIu64 " (the gauge says %.0f)", seq, have);
}

/* The last "state recovered" line of d's daemon.log. */
static void last_recovery(lt_daemon *d, char *out, size_t cap)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "grep 'state recovered' %s/daemon.log | tail -n 1", d->dir);
    assert_int_equal(h_run(cmd, out, cap), 0);
    if (strstr(out, "state recovered") == NULL)
        fail_msg("no 'state recovered' line in %s/daemon.log", d->dir);
}

static void expect_recovery(lt_daemon *d, const char *needle)
{
    char line[2048];
    last_recovery(d, line, sizeof line);
    if (strstr(line, needle) == NULL)
        fail_msg("the daemon's recovery lacks '%s':\n%s", needle, line);
}

static bool path_exists(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return lstat(path, &st) == 0;
}

/* How many entries of dir match the shell glob pattern. */
static int count_glob(const char *dir, const char *pattern)
{
    char cmd[800], out[64];
    snprintf(cmd, sizeof cmd, "ls -d %s/%s 2>/dev/null | wc -l", dir, pattern);
    assert_int_equal(h_run(cmd, out, sizeof out), 0);
    return atoi(out);
}

static void shell(const char *cmd)
{
    char out[OUT_MAX];
    if (h_run(cmd, out, sizeof out) != 0)
        fail_msg("%s:\n%s", cmd, out);
}

/* The balances of the load's members on d. */
static void balances(lt_daemon *d, int64_t *out)
{
    for (unsigned k = 0; k < LOAD_MEMBERS; k++) {
        char m[16];
        snprintf(m, sizeof m, "ops%02u", k);
        out[k] = h_balance(d, m);
    }
}

static void expect_balances(lt_daemon *d, const int64_t *want, const char *when)
{
    int64_t have[LOAD_MEMBERS];
    balances(d, have);
    for (unsigned k = 0; k < LOAD_MEMBERS; k++)
        if (have[k] != want[k])
            fail_msg("%s: member ops%02u has %lld points, %lld expected", when, k,
                     (long long)have[k], (long long)want[k]);
}

/* A backup of a running daemon that has written a checkpoint holds state/ (data files only, no
 * lock files); restored, it is what a new daemon recovers from (checkpoint=state at the
 * backup's checkpoint), with the balances at the backup; verify --offline starts from it. */
static void test_backup_holds_state_and_a_restore_recovers_from_it(void **state)
{
    (void)state;
    char bk[400], rdir[400], args[1400], out[OUT_MAX];
    h_start(&g_a, STATE_YAML);
    snprintf(bk, sizeof bk, "%s/backup", g_a.dir);
    snprintf(rdir, sizeof rdir, "%s/restored", g_a.dir);
    send_load(&g_a, 0, 3);
    wait_checkpoint(&g_a, 3 * LOAD_BATCH_EVENTS);
    int64_t want[LOAD_MEMBERS];
    balances(&g_a, want);

    /* verify --offline on the live directory starts from state/ */
    int rc = h_ctl(&g_a, "verify --offline", out, sizeof out);
    if (rc != 0 || strstr(out, "PASS") == NULL || strstr(out, "(state)") == NULL ||
        strstr(out, "note:") != NULL || field_u64(out, "checkpoint  at seq") == 0)
        fail_msg("verify --offline on the live directory (%d):\n%s", rc, out);

    snprintf(args, sizeof args, "backup %s", bk);
    rc = h_ctl(&g_a, args, out, sizeof out);
    if (rc != 0 || strstr(out, "checkpoint  60 (state)") == NULL ||
        strstr(out, "members     40 (checkpointed)") == NULL || strstr(out, "note:") != NULL)
        fail_msg("backup (%d):\n%s", rc, out);
    assert_int_equal(field_u64(out, "last seq"), 3 * LOAD_BATCH_EVENTS);
    assert_true(path_exists(bk, "state/data.mdb"));
    assert_false(path_exists(bk, "state/lock.mdb"));
    assert_false(path_exists(bk, "lock.mdb"));
    struct stat st;
    snprintf(out, sizeof out, "%s/state/data.mdb", bk);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    send_load(&g_a, 3, 4); /* the source moves on; the backup does not */

    snprintf(args, sizeof args, "restore %s --data %s --json", bk, rdir);
    rc = h_ctl(&g_a, args, out, sizeof out);
    if (rc != 0 || strstr(out, "\"checkpoint_seq\":60,\"checkpoint_source\":\"state\"") == NULL ||
        strstr(out, "\"members\":40") == NULL)
        fail_msg("restore (%d):\n%s", rc, out);
    assert_true(path_exists(rdir, "state/data.mdb"));
    assert_false(path_exists(rdir, "state.restoring"));
    snprintf(args, sizeof args, "verify --offline --data %s", rdir);
    expect_ctl(&g_a, args, 0, "checkpoint  at seq 60 (state), then 0 entries applied");

    h_start_data(&g_b, rdir, NULL);
    expect_recovery(&g_b, "checkpoint=state checkpoint_seq=60 last_seq=60 replayed=0");
    expect_balances(&g_b, want, "restored from a backup with state/");
    h_verify(&g_b, "restored from a backup with state/");
}

/* restore --force over a directory whose daemon checkpointed past the backup: its state/ and
 * ledger are moved aside (state.replaced-*, data.mdb.replaced-*), and the daemon recovers
 * from the backup's state/. Without --force the refusal names both; a target holding only a
 * state/ is refused too. A state/ that does not belong to the backup's ledger is not restored,
 * and verify says it is not used. */
static void test_restore_force_moves_state_aside(void **state)
{
    (void)state;
    char bk[400], bk2[400], rdir[400], other[400], r2[400], args[2400], out[OUT_MAX];
    h_start(&g_a, STATE_YAML);
    snprintf(bk, sizeof bk, "%s/backup", g_a.dir);
    snprintf(bk2, sizeof bk2, "%s/backup2", g_a.dir);
    snprintf(rdir, sizeof rdir, "%s/restored", g_a.dir);
    snprintf(other, sizeof other, "%s/other", g_a.dir);
    send_load(&g_a, 0, 2);
    wait_checkpoint(&g_a, 2 * LOAD_BATCH_EVENTS);
    int64_t want[LOAD_MEMBERS];
    balances(&g_a, want);
    snprintf(args, sizeof args, "backup %s", bk);
    expect_ctl(&g_a, args, 0, "checkpoint  40 (state)");

    /* a daemon on the restored copy goes on past the backup and checkpoints there */
    snprintf(args, sizeof args, "restore %s --data %s", bk, rdir);
    expect_ctl(&g_a, args, 0, "checkpoint  40 (state)");
    h_start_data(&g_b, rdir, STATE_YAML);
    expect_recovery(&g_b, "checkpoint=state checkpoint_seq=40");
    send_load(&g_b, 2, 4);
    wait_checkpoint(&g_b, 4 * LOAD_BATCH_EVENTS);
    assert_int_equal(h_stop(&g_b, SIGTERM), 0);

    snprintf(args, sizeof args, "restore %s --data %s", bk, rdir);
    expect_ctl(&g_a, args, 1, "already holds a ledger (data.mdb and state/)");
    assert_int_equal(mkdir(other, 0750), 0);
    snprintf(out, sizeof out, "%s/state", other);
    assert_int_equal(mkdir(out, 0750), 0);
    snprintf(args, sizeof args, "restore %s --data %s", bk, other);
    expect_ctl(&g_a, args, 1, "already holds a checkpoint store (state/)");

    snprintf(args, sizeof args, "restore %s --data %s --force", bk, rdir);
    int rc = h_ctl(&g_a, args, out, sizeof out);
    if (rc != 0 || strstr(out, "the previous state/ was kept as") == NULL ||
        strstr(out, "the previous ledger was kept as") == NULL ||
        strstr(out, "checkpoint  40 (state)") == NULL)
        fail_msg("restore --force (%d):\n%s", rc, out);
    assert_int_equal(count_glob(rdir, "state.replaced-*"), 1);
    assert_int_equal(count_glob(rdir, "state.replaced-*/data.mdb"), 1);
    assert_int_equal(count_glob(rdir, "data.mdb.replaced-*"), 1);
    assert_true(path_exists(rdir, "state/data.mdb"));

    /* the moved-aside state/ (at seq 80, of the other ledger) beside the backup's ledger (ends
     * at 40): not restored, and not used by verify */
    snprintf(args, sizeof args,
             "cp -a %s %s && rm -rf %s/state && cp -a %s/state.replaced-* %s/state", bk, bk2, bk2,
             rdir, bk2);
    shell(args);
    snprintf(args, sizeof args, "verify --offline --data %s", bk2);
    rc = h_ctl(&g_a, args, out, sizeof out);
    if (rc != 0 || strstr(out, "state/ is not used") == NULL ||
        strstr(out, "past the ledger's last entry") == NULL ||
        strstr(out, "checkpoint  at seq 0 (none)") == NULL)
        fail_msg("verify --offline beside a foreign state/ (%d):\n%s", rc, out);
    snprintf(r2, sizeof r2, "%s/r2", g_a.dir);
    snprintf(args, sizeof args, "restore %s --data %s", bk2, r2);
    rc = h_ctl(&g_a, args, out, sizeof out);
    if (rc != 0 || strstr(out, "is not restored") == NULL ||
        strstr(out, "checkpoint  0 (none)") == NULL)
        fail_msg("restore of a backup with a foreign state/ (%d):\n%s", rc, out);
    assert_false(path_exists(r2, "state"));

    h_restart(&g_b);
    expect_recovery(&g_b, "checkpoint=state checkpoint_seq=40 last_seq=40 replayed=0");
    expect_balances(&g_b, want, "after restore --force");
    h_verify(&g_b, "after restore --force");
    assert_int_equal(h_stop(&g_b, SIGTERM), 0);

    /* twice within a second: nothing moved aside is overwritten */
    snprintf(args, sizeof args, "restore %s --data %s --force", bk, rdir);
    expect_ctl(&g_a, args, 0, "kept as");
    expect_ctl(&g_a, args, 0, "kept as");
    assert_int_equal(count_glob(rdir, "state.replaced-*"), 3);
    assert_int_equal(count_glob(rdir, "data.mdb.replaced-*"), 3);
}

/* A backup without state/ (one made from a data directory written by an older loyaltyd) restores;
 * the daemon recovers without a checkpoint in state/, with the right balances; a backup of that
 * directory has no state/ either, and says so. */
static void test_restore_backup_without_state(void **state)
{
    (void)state;
    char bk[400], bk2[400], rdir[400], args[1400], out[OUT_MAX];
    h_start(&g_a, STATE_YAML);
    snprintf(bk, sizeof bk, "%s/backup", g_a.dir);
    snprintf(bk2, sizeof bk2, "%s/backup2", g_a.dir);
    snprintf(rdir, sizeof rdir, "%s/restored", g_a.dir);
    send_load(&g_a, 0, 2);
    wait_checkpoint(&g_a, 2 * LOAD_BATCH_EVENTS);
    int64_t want[LOAD_MEMBERS];
    balances(&g_a, want);
    snprintf(args, sizeof args, "backup %s", bk);
    expect_ctl(&g_a, args, 0, "checkpoint  40 (state)");
    snprintf(args, sizeof args, "rm -rf %s/state", bk);
    shell(args);

    snprintf(args, sizeof args, "restore %s --data %s", bk, rdir);
    int rc = h_ctl(&g_a, args, out, sizeof out);
    if (rc != 0 || strstr(out, "the backup has no state/") == NULL ||
        strstr(out, "last seq    40") == NULL)
        fail_msg("restore without state/ (%d):\n%s", rc, out);
    assert_false(path_exists(rdir, "state"));
    snprintf(args, sizeof args, "backup %s --data %s", bk2, rdir);
    rc = h_ctl(&g_a, args, out, sizeof out);
    if (rc != 0 || strstr(out, "has no state/") == NULL || strstr(out, "last seq    40") == NULL)
        fail_msg("backup of a directory without state/ (%d):\n%s", rc, out);
    assert_false(path_exists(bk2, "state"));
    snprintf(args, sizeof args, "verify --offline --data %s", rdir);
    expect_ctl(&g_a, args, 0, "PASS");

    h_start_data(&g_b, rdir, NULL);
    char line[2048];
    last_recovery(&g_b, line, sizeof line);
    if ((strstr(line, "checkpoint=none") == NULL && strstr(line, "checkpoint=ledger") == NULL) ||
        strstr(line, "last_seq=40") == NULL)
        fail_msg("recovery of a restore without state/:\n%s", line);
    expect_balances(&g_b, want, "restored from a backup without state/");
    h_verify(&g_b, "restored from a backup without state/");
}

/* Writes text to dir/name; the path goes into path. */
static void write_file(const char *dir, const char *name, const char *text, char *path,
                       size_t path_len)
{
    snprintf(path, path_len, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_config_check(const char *config, int ok, const char *needle)
{
    char cmd[1024], out[OUT_MAX];
    const char *bin = getenv("LOYALTYD");
    assert_non_null(bin);
    snprintf(cmd, sizeof cmd, "%s --check-config --config %s", bin, config);
    int rc = h_run(cmd, out, sizeof out);
    if ((ok ? rc != 0 : rc == 0) || strstr(out, needle) == NULL)
        fail_msg("%s: exit %d, expected %s with '%s':\n%s", cmd, rc, ok ? "0" : "non-zero", needle,
                 out);
}

/* loyaltyd --check-config: exit 0 for good files, non-zero with FILE:LINE for bad ones. */
static void test_check_config(void **state)
{
    (void)state;
    char dir[] = "/tmp/lt-e2e-cfg-XXXXXX", path[512], rules[512], text[1024], needle[600];
    assert_non_null(mkdtemp(dir));
    const char *src = getenv("LT_SOURCE_DIR");
    assert_non_null(src);

    write_file(dir, "good.yaml", "data_dir: /tmp/x\nlog_level: warn\nbatches_max: 8\n", path,
               sizeof path);
    expect_config_check(path, 1, "configuration ok");

    write_file(dir, "range.yaml", "data_dir: /tmp/x\n\nbatches_max: 1\n", path, sizeof path);
    snprintf(needle, sizeof needle, "%s:3:", path);
    expect_config_check(path, 0, needle);

    write_file(dir, "unknown.yaml", "data_dir: /tmp/x\nbatch_size: 10\n", path, sizeof path);
    snprintf(needle, sizeof needle, "%s:2: unknown key", path);
    expect_config_check(path, 0, needle);

    write_file(dir, "syntax.yaml", "data_dir: /tmp/x\nlog_level: [info\n", path, sizeof path);
    snprintf(needle, sizeof needle, "%s:", path);
    expect_config_check(path, 0, needle);

    /* a bad rules file: the error names the rules file and the line */
    write_file(dir, "bad-rules.yaml", "version: \"t1\"\n\npoint_value_fen: -5\n", rules,
               sizeof rules);
    snprintf(text, sizeof text, "data_dir: /tmp/x\nrules_file: %s\n", rules);
    write_file(dir, "with-bad-rules.yaml", text, path, sizeof path);
    snprintf(needle, sizeof needle, "%s:3:", rules);
    expect_config_check(path, 0, needle);

    /* the shipped rules file, and the documented example configuration */
    snprintf(text, sizeof text, "data_dir: /tmp/x\nrules_file: %s/ops/rules.yaml\n", src);
    write_file(dir, "with-rules.yaml", text, path, sizeof path);
    expect_config_check(path, 1, "seed-2026.1");
    snprintf(path, sizeof path, "%s/ops/loyaltyd.yaml", src);
    expect_config_check(path, 1, "configuration ok");

    snprintf(text, sizeof text, "rm -rf %s", dir);
    assert_int_equal(h_run(text, path, sizeof path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backup_under_load_restore_and_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_and_restore_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_holds_state_and_a_restore_recovers_from_it,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_force_moves_state_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_backup_without_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
