/* test_replay.c: the two-thread replay (ledger/replay.c: read and decode, apply) on ledgers
 * written directly, through `loyaltyctl replay` and through the daemon's start-up recovery:
 * every entry applied in order with the right hash and balances, and a clear failure naming
 * the entry when one does not apply or does not decode, wherever it sits in the pipeline
 * (R30): loyaltyctl exits 1, the daemon refuses to start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "entry.h"
#include "harness.h"
#include "ledger.h"

#define ENTRIES 5000
#define MEMBERS 300

static char g_dir[64];

/* Entry seq: enrols member seq-1 for the first MEMBERS, then credits 10 points to member
 * (seq % MEMBERS); bad_seq gets a wrong balance_after; garbage_seq is not an entry at all. */
static void write_ledger(uint64_t bad_seq, uint64_t garbage_seq)
{
    strcpy(g_dir, "/tmp/test_replay.XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    ledger *l = NULL;
    ledger_opts o = {.dir = g_dir, .map_bytes = 256 << 20, .exclusive = true};
    char err[256];
    assert_int_equal(ledger_open(&l, &o, err, sizeof err), 0);
    lt_entry *e = calloc(1, sizeof *e);
    uint8_t *buf = malloc(512 * 100);
    int64_t bal[MEMBERS] = {0};
    ledger_record recs[100];
    for (uint64_t seq = 1; seq <= ENTRIES; seq += 100) {
        for (int i = 0; i < 100; i++) {
            uint64_t sq = seq + (uint64_t)i;
            memset(e, 0, sizeof *e);
            e->seq = sq;
            e->id = (lt_event_id){1, sq};
            e->occurred_at = 1767225600;
            e->postings_n = 1;
            lt_posting *p = &e->postings[0];
            int m = sq <= MEMBERS ? (int)(sq - 1) : (int)(sq % MEMBERS);
            snprintf(p->member_id, sizeof p->member_id, "M%d", m);
            memcpy(e->member_id, p->member_id, sizeof e->member_id);
            if (sq <= MEMBERS) {
                e->kind = LT_ENTRY_ENROL;
                p->create = true;
            } else {
                e->kind = LT_ENTRY_GIFT;
                p->credit = 10;
                bal[m] += 10;
                p->balance_after = bal[m] + (sq == bad_seq ? 1 : 0);
            }
            uint8_t *at = buf + i * 512;
            size_t len = entry_encode(e, at, 512);
            assert_true(len > 0);
            if (sq == garbage_seq) {
                memset(at, 0xff, 16);
                len = 16;
            }
            recs[i] = (ledger_record){sq, e->id, at, len};
        }
        assert_int_equal(ledger_commit(l, recs, 100, NULL, 0, 0), 0);
    }
    ledger_close(&l);
    free(e);
    free(buf);
}

static void remove_ledger(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
}

static int replay(char *out, size_t cap)
{
    char cmd[512];
    const char *ctl = getenv("LOYALTYCTL");
    snprintf(cmd, sizeof cmd, "%s --data %s replay 2>&1", ctl ? ctl : "loyaltyctl", g_dir);
    return h_run(cmd, out, cap);
}

static void replays_every_entry(void **st)
{
    (void)st;
    char out[8192];
    write_ledger(0, 0);
    assert_int_equal(replay(out, sizeof out), 0);
    if (strstr(out, "entries     5000") == NULL || strstr(out, "members     300") == NULL ||
        strstr(out, "last seq    5000") == NULL)
        fail_msg("unexpected replay output: %s", out);
    /* the same hash twice: the order of application is the ledger's */
    char hash[40] = "";
    const char *h = strstr(out, "state hash");
    assert_non_null(h);
    snprintf(hash, sizeof hash, "%.28s", h);
    assert_int_equal(replay(out, sizeof out), 0);
    assert_non_null(strstr(out, hash));
    remove_ledger();
}

/* Replay of a ledger with one bad entry fails with exit 1 and says which and why. */
static void expect_failure(uint64_t bad_seq, uint64_t garbage_seq, const char *why)
{
    char out[8192];
    write_ledger(bad_seq, garbage_seq);
    assert_int_equal(replay(out, sizeof out), 1);
    if (strstr(out, why) == NULL)
        fail_msg("no clear failure (\"%s\"): %s", why, out);
    remove_ledger();
}

static void names_the_entry_that_does_not_apply(void **st)
{
    (void)st;
    expect_failure(4321, 0, "entry 4321 does not apply");
}

static void names_the_entry_that_does_not_decode(void **st)
{
    (void)st;
    expect_failure(0, 2500, "entry 2500 (16 bytes) does not decode");
}

/* The daemon recovers a ledger without a checkpoint by replaying all of it: the balances
 * are the entries' (member M(k) got 10 points from each entry seq > MEMBERS with seq %
 * MEMBERS == k). */
static void daemon_recovers_every_entry(void **st)
{
    (void)st;
    write_ledger(0, 0);
    lt_daemon d;
    h_start_data(&d, g_dir, NULL);
    int64_t m0 = 0, m7 = 0;
    for (uint64_t sq = MEMBERS + 1; sq <= ENTRIES; sq++) {
        m0 += sq % MEMBERS == 0 ? 10 : 0;
        m7 += sq % MEMBERS == 7 ? 10 : 0;
    }
    assert_int_equal(h_balance(&d, "M0"), m0);
    assert_int_equal(h_balance(&d, "M7"), m7);
    h_cleanup(&d);
    remove_ledger();
}

/* The daemon on a ledger with a bad entry: exit status 1 and a log line naming the entry,
 * never a crash, a hang or a partial state served. */
static void daemon_refuses_to_start(uint64_t bad_seq, uint64_t garbage_seq, const char *why)
{
    write_ledger(bad_seq, garbage_seq);
    char yaml[512], out[16384];
    snprintf(yaml, sizeof yaml,
             "data_dir: \"%s\"\nlog_level: \"info\"\ningest_endpoint: tcp://127.0.0.1:0\n"
             "publish_endpoint: tcp://127.0.0.1:0\nquery_endpoint: tcp://127.0.0.1:0\n"
             "metrics_listen: \"\"\n",
             g_dir);
    int rc = h_daemon_once(yaml, 60, out, sizeof out);
    if (rc != 1 || strstr(out, "ledger replay failed") == NULL || strstr(out, why) == NULL)
        fail_msg("exit %d; expected 1 with \"%s\": %s", rc, why, out);
    remove_ledger();
}

static void daemon_names_the_entry_that_does_not_apply(void **st)
{
    (void)st;
    daemon_refuses_to_start(4321, 0, "entry 4321 does not apply");
}

static void daemon_names_the_entry_that_does_not_decode(void **st)
{
    (void)st;
    daemon_refuses_to_start(0, 2500, "entry 2500 (16 bytes) does not decode");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(replays_every_entry),
        cmocka_unit_test(names_the_entry_that_does_not_apply),
        cmocka_unit_test(names_the_entry_that_does_not_decode),
        cmocka_unit_test(daemon_recovers_every_entry),
        cmocka_unit_test(daemon_names_the_entry_that_does_not_apply),
        cmocka_unit_test(daemon_names_the_entry_that_does_not_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
