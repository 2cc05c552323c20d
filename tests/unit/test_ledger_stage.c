/* test_ledger_stage.c: staged checkpoints (ledger_commit_ckpt): a checkpoint written a chunk per
 * commit is invisible until complete, then read as the main records overlaid with the stage,
 * moved into place a chunk at a time with the same view throughout; an unfinished one (a crash)
 * is ignored and cleared; a direct checkpoint settles the stage first. Members, cards (with a
 * deletion) and R18 returned-quantity records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ledger.h"

#define VIEW_MAX 64

typedef struct {
    char dir[64];
    ledger *l;
} fixture;

static ledger *open_dir(const char *dir)
{
    ledger_opts o = {.dir = dir, .map_bytes = 64 << 20, .exclusive = true};
    ledger *l = NULL;
    char err[256];
    int rc = ledger_open(&l, &o, err, sizeof(err));
    if (rc != 0)
        fail_msg("ledger_open: %s (%s)", err, ledger_strerror(rc));
    return l;
}

static int setup(void **st)
{
    fixture *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/test_ledger_stage.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    f->l = open_dir(f->dir);
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    fixture *f = *st;
    ledger_close(&f->l);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static char g_payload[32];

/* Appends entries from..to (event ids (9, seq)). */
static void append(ledger *l, uint64_t from, uint64_t to)
{
    ledger_record recs[64];
    size_t n = 0;
    for (uint64_t s = from; s <= to; s++)
        recs[n++] = (ledger_record){s, {9, s}, (const uint8_t *)g_payload, 5};
    assert_int_equal(ledger_commit(l, recs, n, NULL, 0, 0), 0);
}

/* What a reader sees of the checkpoint: "m:<rec>", "c:<card>=<member>", "r:<seq>=<rec>". */
typedef struct {
    char items[VIEW_MAX][48];
    int n;
} view;

static int v_member(void *ctx, const uint8_t *rec, size_t len)
{
    view *v = ctx;
    assert_true(v->n < VIEW_MAX);
    snprintf(v->items[v->n++], sizeof(v->items[0]), "m:%.*s", (int)len, (const char *)rec);
    return 0;
}

static int v_card(void *ctx, const char *card, const char *member)
{
    view *v = ctx;
    assert_true(v->n < VIEW_MAX);
    snprintf(v->items[v->n++], sizeof(v->items[0]), "c:%s=%s", card, member);
    return 0;
}

static int v_returns(void *ctx, uint64_t seq, const uint8_t *rec, size_t len)
{
    view *v = ctx;
    assert_true(v->n < VIEW_MAX);
    snprintf(v->items[v->n++], sizeof(v->items[0]), "r:%llu=%.*s", (unsigned long long)seq,
             (int)len, (const char *)rec);
    return 0;
}

/* The whole view as one string, in scan order. */
static void read_view(ledger *l, char *out, size_t cap, uint64_t *ckpt)
{
    view v = {0};
    assert_int_equal(ledger_scan_snapshot(l, v_member, v_card, &v), 0);
    assert_int_equal(ledger_scan_returns(l, v_returns, &v), 0);
    assert_int_equal(ledger_checkpoint_seq(l, ckpt), 0);
    out[0] = '\0';
    for (int i = 0; i < v.n; i++) {
        strncat(out, v.items[i], cap - strlen(out) - 1);
        strncat(out, " ", cap - strlen(out) - 1);
    }
}

/* A member snap whose record is its own key plus a version: "a1", "b2", ... */
#define M(key, rec)                                                                                \
    {                                                                                              \
        LEDGER_SNAP_MEMBER, (key), (const uint8_t *)(rec), sizeof(rec) - 1                         \
    }
#define C(card, member)                                                                            \
    {                                                                                              \
        LEDGER_SNAP_CARD, (card), (const uint8_t *)(member), sizeof(member) - 1                    \
    }
#define C_DEL(card)                                                                                \
    {                                                                                              \
        LEDGER_SNAP_CARD, (card), NULL, 0                                                          \
    }
#define R(seq, rec)                                                                                \
    {                                                                                              \
        LEDGER_SNAP_RETURNS, (seq), (const uint8_t *)(rec), sizeof(rec) - 1                        \
    }

static const char base_view[] = "m:a1 m:b1 m:c1 c:k1=a c:k2=b r:3=x1 ";
static const char new_view[] = "m:a1 m:b2 m:c2 m:d2 c:k1=a c:k3=d r:3=x2 r:10=y2 ";

/* The base checkpoint at seq 5, written directly. */
static void base(ledger *l)
{
    append(l, 1, 12);
    ledger_snap s[] = {M("a", "a1"), M("b", "b1"), M("c", "c1"),
                       C("k1", "a"), C("k2", "b"), R("3", "x1")};
    assert_int_equal(ledger_commit(l, NULL, 0, s, LT_ARRAY_LEN(s), 5), 0);
}

/* The new checkpoint at seq 10 in two chunks (out of key order on purpose); the view must stay
 * the base one until the second chunk completes it. */
static void stage_new(ledger *l, bool complete)
{
    char got[1024];
    uint64_t ckpt;
    ledger_snap c1[] = {M("d", "d2"), C_DEL("k2"), M("b", "b2")};
    ledger_snap c2[] = {R("10", "y2"), M("c", "c2"), C("k3", "d"), R("3", "x2")};
    ledger_ckpt ck = {.stage_begin = true, .stage = c1, .stage_n = LT_ARRAY_LEN(c1)};
    ledger_ckpt_state cs;
    assert_int_equal(ledger_commit_ckpt(l, NULL, 0, &ck, NULL, 0, 0, &cs), 0);
    assert_false(cs.merging);
    read_view(l, got, sizeof got, &ckpt);
    assert_string_equal(got, base_view);
    assert_int_equal(ckpt, 5);
    if (!complete)
        return;
    ck = (ledger_ckpt){.stage = c2, .stage_n = LT_ARRAY_LEN(c2), .stage_complete_seq = 10};
    assert_int_equal(ledger_commit_ckpt(l, NULL, 0, &ck, NULL, 0, 0, &cs), 0);
    assert_true(cs.merging);
    assert_int_equal(cs.stage_left, 7);
    read_view(l, got, sizeof got, &ckpt);
    assert_string_equal(got, new_view);
    assert_int_equal(ckpt, 10);
}

static void complete_stage_is_the_checkpoint_while_it_merges(void **st)
{
    fixture *f = *st;
    base(f->l);
    stage_new(f->l, true);
    /* building the next checkpoint before this one is in place is refused */
    ledger_snap s[] = {M("a", "a3")};
    ledger_ckpt next = {.stage_begin = true, .stage = s, .stage_n = 1};
    assert_int_equal(ledger_commit_ckpt(f->l, NULL, 0, &next, NULL, 0, 0, NULL), LEDGER_ERR_OTHER);
    /* merge 3 at a time: the view never changes, and it ends */
    char got[1024];
    uint64_t ckpt, left = 7;
    ledger_ckpt_state cs = {.merging = true};
    int steps = 0;
    while (cs.merging) {
        ledger_ckpt ck = {.merge_max = 3};
        append(f->l, 13 + (uint64_t)steps, 13 + (uint64_t)steps); /* commits go on meanwhile */
        assert_int_equal(ledger_commit_ckpt(f->l, NULL, 0, &ck, NULL, 0, 0, &cs), 0);
        assert_true(cs.stage_left < left || !cs.merging);
        left = cs.stage_left;
        read_view(f->l, got, sizeof got, &ckpt);
        assert_string_equal(got, new_view);
        assert_int_equal(ckpt, 10);
        steps++;
    }
    assert_int_equal(steps, 3);
    /* and survives a reopen, with the stage gone */
    ledger_close(&f->l);
    f->l = open_dir(f->dir);
    read_view(f->l, got, sizeof got, &ckpt);
    assert_string_equal(got, new_view);
    /* now the next one may be built */
    assert_int_equal(ledger_commit_ckpt(f->l, NULL, 0, &next, NULL, 0, 0, NULL), 0);
}

static void unfinished_stage_is_ignored_and_cleared(void **st)
{
    fixture *f = *st;
    char got[1024];
    uint64_t ckpt;
    base(f->l);
    stage_new(f->l, false); /* one chunk, then a "crash" */
    ledger_close(&f->l);
    f->l = open_dir(f->dir);
    read_view(f->l, got, sizeof got, &ckpt);
    assert_string_equal(got, base_view);
    assert_int_equal(ckpt, 5);
    /* the next checkpoint starts over: nothing of the unfinished one (d2, b2, k2 deleted) */
    ledger_snap s[] = {M("c", "c3")};
    ledger_ckpt ck = {.stage_begin = true, .stage = s, .stage_n = 1, .stage_complete_seq = 11};
    assert_int_equal(ledger_commit_ckpt(f->l, NULL, 0, &ck, NULL, 0, 0, NULL), 0);
    read_view(f->l, got, sizeof got, &ckpt);
    assert_string_equal(got, "m:a1 m:b1 m:c3 c:k1=a c:k2=b r:3=x1 ");
    assert_int_equal(ckpt, 11);
}

static void direct_checkpoint_settles_the_stage(void **st)
{
    fixture *f = *st;
    char got[1024];
    uint64_t ckpt;
    base(f->l);
    stage_new(f->l, true);
    /* a direct checkpoint (as at shutdown) on top of a complete, unmerged stage */
    ledger_snap s[] = {M("b", "b4"), C_DEL("k3")};
    assert_int_equal(ledger_commit(f->l, NULL, 0, s, LT_ARRAY_LEN(s), 12), 0);
    read_view(f->l, got, sizeof got, &ckpt);
    assert_string_equal(got, "m:a1 m:b4 m:c2 m:d2 c:k1=a r:3=x2 r:10=y2 ");
    assert_int_equal(ckpt, 12);
    /* an unfinished stage is dropped by a direct checkpoint */
    ledger_snap u[] = {M("a", "a9")};
    ledger_ckpt ck = {.stage_begin = true, .stage = u, .stage_n = 1};
    assert_int_equal(ledger_commit_ckpt(f->l, NULL, 0, &ck, NULL, 0, 0, NULL), 0);
    assert_int_equal(ledger_commit(f->l, NULL, 0, NULL, 0, 12), 0);
    ck = (ledger_ckpt){.stage_complete_seq = 12};
    assert_int_equal(ledger_commit_ckpt(f->l, NULL, 0, &ck, NULL, 0, 0, NULL), 0);
    read_view(f->l, got, sizeof got, &ckpt);
    assert_string_equal(got, "m:a1 m:b4 m:c2 m:d2 c:k1=a r:3=x2 r:10=y2 ");
}

static void completion_sequence_is_checked(void **st)
{
    fixture *f = *st;
    base(f->l); /* entries 1..12, checkpoint 5 */
    ledger_ckpt ck = {.stage_begin = true, .stage_complete_seq = 13};
    assert_int_equal(ledger_commit_ckpt(f->l, NULL, 0, &ck, NULL, 0, 0, NULL), LEDGER_ERR_SEQ);
    ck.stage_complete_seq = 4; /* older than the checkpoint in force */
    assert_int_equal(ledger_commit_ckpt(f->l, NULL, 0, &ck, NULL, 0, 0, NULL), LEDGER_ERR_SEQ);
    /* an empty checkpoint completes without a stage to merge */
    ck.stage_complete_seq = 12;
    ledger_ckpt_state cs = {.merging = true};
    assert_int_equal(ledger_commit_ckpt(f->l, NULL, 0, &ck, NULL, 0, 0, &cs), 0);
    assert_false(cs.merging);
    uint64_t ckpt;
    assert_int_equal(ledger_checkpoint_seq(f->l, &ckpt), 0);
    assert_int_equal(ckpt, 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(complete_stage_is_the_checkpoint_while_it_merges, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(unfinished_stage_is_ignored_and_cleared, setup, teardown),
        cmocka_unit_test_setup_teardown(direct_checkpoint_settles_the_stage, setup, teardown),
        cmocka_unit_test_setup_teardown(completion_sequence_is_checked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
