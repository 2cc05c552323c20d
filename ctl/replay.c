/* replay.c: `loyaltyctl replay` and `loyaltyctl verify`: rebuild member state from the ledger
 * alone (R30) and prove it equal to the daemon's live state, or to the checkpointed state.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <zmq.h>

#include "ctl.h"
#include "entry.h"
#include "progress.h"
#include "replay.h"

#define VERIFY_PROBE_MS 2000        /* status probe before the state-hash query */
#define VERIFY_SNAPSHOT_TRIES_MAX 3 /* re-reads when a checkpoint lands during the read */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ctl_ledger_open(const char *dir, ledger **out)
{
    char err[CTL_ERR_MAX] = "";
    ledger_opts o = {0};
    o.dir = dir;
    o.read_only = true;
    o.readahead = true; /* loyaltyctl's commands read the ledger through, not by lookups */
    int rc = ledger_open(out, &o, err, sizeof err);
    if (rc < 0) {
        ctl_errorf("cannot open the ledger in %s: %s", dir, err[0] ? err : ledger_strerror(rc));
        return -1;
    }
    return 0;
}

/* The applier's progress line (state_replay calls it every few thousand entries). */
static void on_progress(void *ctx, uint64_t applied)
{
    ctl_progress_update(ctx, applied);
}

int ctl_replay_range(ledger *l, state *s, uint64_t from, uint64_t to, ctl_replay_result *r,
                     char *err, size_t err_len)
{
    LT_ASSERT(from >= 1);
    uint64_t end = to;
    if (end == 0 && ledger_last_seq(l, &end) < 0)
        end = 0; /* unknown: the scan itself reports the error */
    ctl_progress progress;
    ctl_progress_start(&progress, "replay", "entries", end >= from ? end - from + 1 : 0, false);
    double t0 = now_s();
    state_replay_result sr;
    int rc = state_replay(l, s, from, to, on_progress, &progress, &sr, err, err_len);
    r->elapsed_s += now_s() - t0;
    ctl_progress_done(&progress, sr.applied);
    r->entries += sr.applied;
    if (sr.applied > 0)
        r->last_seq = sr.last_seq;
    if (rc == 0 && to != 0 && r->last_seq != to) {
        snprintf(err, err_len, "the ledger ends at %" PRIu64 ", before %" PRIu64, r->last_seq, to);
        rc = -1;
    }
    r->members = state_members(s);
    r->hash = state_hash(s);
    return rc == 0 ? 0 : -1;
}

/* Full replay of 1..to into a fresh state (to = 0: to the end; to = 0 with an empty ledger is
 * the empty state). Returns 0 or -1 (message printed). */
static int replay_fresh(ledger *l, uint64_t to, bool to_is_end, ctl_replay_result *r)
{
    char err[CTL_ERR_MAX];
    state *s;
    memset(r, 0, sizeof *r);
    if (state_new(&s) < 0) {
        ctl_errorf("replay: out of memory");
        return -1;
    }
    int rc = 0;
    if (to > 0 || to_is_end)
        rc = ctl_replay_range(l, s, 1, to, r, err, sizeof err);
    else {
        r->members = state_members(s);
        r->hash = state_hash(s);
    }
    if (rc < 0)
        ctl_errorf("replay: %s", err);
    state_destroy(&s);
    return rc;
}

static void print_json(json_t *o)
{
    char *t = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (t) {
        puts(t);
        free(t);
    }
    json_decref(o);
}

static json_t *result_json(const ctl_replay_result *r)
{
    char h[24];
    snprintf(h, sizeof h, "%016" PRIx64, r->hash);
    double rate = r->elapsed_s > 0 ? (double)r->entries / r->elapsed_s : 0;
    return json_pack("{s:I,s:I,s:I,s:s,s:f,s:f}", "entries", (json_int_t)r->entries, "seq",
                     (json_int_t)r->last_seq, "members", (json_int_t)r->members, "state_hash", h,
                     "elapsed_s", r->elapsed_s, "entries_per_s", rate);
}

/* Parses a command's options (globals plus --to / --offline / --online). */
static int parse_opts(ctl_globals *g, int argc, char **argv, const char *usage, uint64_t *to,
                      int *offline, int *online)
{
    enum { O_TO = 1, O_OFFLINE, O_ONLINE };
    const struct option longopts[] = {{"to", required_argument, NULL, O_TO},
                                      {"offline", no_argument, NULL, O_OFFLINE},
                                      {"online", no_argument, NULL, O_ONLINE},
                                      CTL_GLOBAL_LONGOPTS};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = 0;
        if (c == O_TO && to)
            rc = ctl_parse_u64("--to", optarg, 1, UINT64_MAX, to);
        else if (c == O_OFFLINE && offline)
            *offline = 1;
        else if (c == O_ONLINE && online)
            *online = 1;
        else if (c == O_TO || c == O_OFFLINE || c == O_ONLINE)
            rc = -1, ctl_errorf("option not valid for this command");
        else
            rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
        if (rc != 0)
            return ctl_usage(rc, usage, argv[0]) == CTL_EXIT_OK ? 1 : -1;
    }
    if (optind != argc) {
        ctl_errorf("%s: unexpected argument '%s'", argv[0], argv[optind]);
        ctl_usage(-1, usage, argv[0]);
        return -1;
    }
    if (offline && online && *offline && *online) {
        ctl_errorf("%s: --offline and --online exclude each other", argv[0]);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ replay */

static const char replay_usage[] =
    "usage: loyaltyctl replay [--data DIR] [--to SEQ] [--json]\n"
    "\n"
    "Rebuilds member state from the ledger alone: a fresh state, every entry from sequence 1\n"
    "(to SEQ, default the last) decoded and applied in order, never re-rated (R30). Prints the\n"
    "entries applied, members, the order-independent state hash, elapsed time and entries/s.\n"
    "Reads the data directory read-only; safe while loyaltyd runs.\n"
    "\n"
    "exit status: 0 ok, 1 the ledger cannot be read or an entry does not apply, 2 usage.\n"
    "\n";

int ctl_cmd_replay(ctl_globals *g, int argc, char **argv)
{
    uint64_t to = 0;
    int rc = parse_opts(g, argc, argv, replay_usage, &to, NULL, NULL);
    if (rc != 0)
        return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    ledger *l;
    if (ctl_ledger_open(g->data, &l) < 0)
        return CTL_EXIT_FAIL;
    ctl_replay_result r;
    rc = replay_fresh(l, to, true, &r);
    ledger_close(&l);
    if (rc < 0)
        return CTL_EXIT_FAIL;
    if (g->json) {
        print_json(result_json(&r));
    } else {
        printf("entries     %" PRIu64 "\n", r.entries);
        printf("last seq    %" PRIu64 "\n", r.last_seq);
        printf("members     %" PRIu64 "\n", r.members);
        printf("state hash  %016" PRIx64 "\n", r.hash);
        printf("elapsed     %.3f s\n", r.elapsed_s);
        printf("rate        %.0f entries/s\n",
               r.elapsed_s > 0 ? (double)r.entries / r.elapsed_s : 0.0);
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ verify */

static const char verify_usage[] =
    "usage: loyaltyctl verify [--offline | --online] [--data DIR] [--query EP] [--json]\n"
    "\n"
    "Proves that member state is a pure function of the ledger (R30).\n"
    "\n"
    "Online (the daemon answers on --query): asks the daemon for its committed sequence SEQ and\n"
    "the hash of its live state at that sequence, replays the ledger from 1 to SEQ into a fresh\n"
    "state and compares hashes and member counts.\n"
    "\n"
    "Offline (--offline, or the daemon does not answer a status probe within 2 s): loads the\n"
    "checkpoint a daemon started on the data directory would recover from (DIR/state/ if it\n"
    "belongs to the ledger, else the ledger's own checkpoint, which an older loyaltyd wrote,\n"
    "else none; printed as 'checkpoint  at seq N (state|ledger|none)'), applies the entries\n"
    "after it, and compares the result with a full replay from sequence 1. A state/ that is\n"
    "there but not used is named in a note on stderr, with the reason.\n"
    "\n"
    "  --offline   do not contact the daemon\n"
    "  --online    fail (exit 1) instead of falling back when the daemon does not answer\n"
    "\n"
    "Prints both sides and PASS or FAIL. exit status: 0 PASS, 1 FAIL or error, 2 usage.\n"
    "\n";

typedef struct {
    const char *label;
    uint64_t seq, members, hash;
} verify_side;

static int verify_report(const ctl_globals *g, const char *mode, const verify_side *a,
                         const verify_side *b, const ctl_replay_result *r)
{
    bool pass = a->seq == b->seq && a->hash == b->hash && a->members == b->members;
    if (g->json) {
        char ha[24], hb[24];
        snprintf(ha, sizeof ha, "%016" PRIx64, a->hash);
        snprintf(hb, sizeof hb, "%016" PRIx64, b->hash);
        print_json(json_pack(
            "{s:s,s:{s:s,s:I,s:I,s:s},s:{s:s,s:I,s:I,s:s},s:I,s:f,s:s}", "mode", mode, "expected",
            "source", a->label, "seq", (json_int_t)a->seq, "members", (json_int_t)a->members,
            "state_hash", ha, "replay", "source", b->label, "seq", (json_int_t)b->seq, "members",
            (json_int_t)b->members, "state_hash", hb, "entries", (json_int_t)r->entries,
            "elapsed_s", r->elapsed_s, "result", pass ? "PASS" : "FAIL"));
    } else {
        printf("mode        %s\n", mode);
        printf("%-11s seq=%" PRIu64 " members=%" PRIu64 " hash=%016" PRIx64 "\n", a->label, a->seq,
               a->members, a->hash);
        printf("%-11s seq=%" PRIu64 " members=%" PRIu64 " hash=%016" PRIx64 " (%" PRIu64
               " entries in %.3f s)\n",
               b->label, b->seq, b->members, b->hash, r->entries, r->elapsed_s);
        printf("%s\n", pass ? "PASS" : "FAIL");
    }
    return pass ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

int ctl_ckstore_open(const char *cmd, const char *dir, ckstore **out)
{
    char err[CTL_ERR_MAX] = "";
    ckstore_opts o = {.dir = dir, .read_only = true};
    int rc = ckstore_open(out, &o, err, sizeof err);
    if (rc == LEDGER_ERR_NOT_FOUND) {
        *out = NULL;
        return 0;
    }
    if (rc < 0) {
        ctl_errorf("%s: cannot open the checkpoint store: %s", cmd,
                   err[0] ? err : ledger_strerror(rc));
        return -1;
    }
    return 0;
}

/* ckpt_load()'s message when a checkpoint was committed to state/ between its check and its
 * load (a daemon is running): the load is tried again. */
#define CKPT_MOVED_WHY "the checkpoint moved while loading"

int ctl_load_checkpoint(ledger *l, const char *dir, state **out, uint64_t *cp_seq,
                        ckpt_source *src_out)
{
    ckstore *cks;
    if (ctl_ckstore_open("checkpoint", dir, &cks) < 0)
        return -1;
    char why[256] = "";
    int ret = -1;
    for (int attempt = 0; attempt < VERIFY_SNAPSHOT_TRIES_MAX && ret < 0; attempt++) {
        state *s = NULL;
        uint64_t seq = 0, after = 0;
        ckpt_source src = CKPT_SRC_NONE;
        if (state_new(&s) < 0) {
            ctl_errorf("checkpoint: out of memory");
            break;
        }
        ckpt_loader ld = ckpt_state_loader(s);
        int rc = ckpt_load(l, cks, &ld, &seq, &src, why, sizeof why);
        bool moved =
            rc == LEDGER_ERR_OTHER && strncmp(why, CKPT_MOVED_WHY, strlen(CKPT_MOVED_WHY)) == 0;
        /* The ledger's own tables are read in more than one transaction: an older loyaltyd
         * writing a checkpoint meanwhile shows in their seq. */
        if (rc == 0 && src == CKPT_SRC_LEDGER && (rc = ledger_checkpoint_seq(l, &after)) == 0)
            moved = after != seq;
        if (moved) {
            state_destroy(&s);
            if (attempt + 1 == VERIFY_SNAPSHOT_TRIES_MAX)
                ctl_errorf("the checkpoint keeps moving (the daemon is writing); try again");
            continue;
        }
        if (rc != 0) {
            ctl_errorf("reading the checkpoint in %s: %s", dir,
                       rc == LEDGER_ERR_CORRUPT
                           ? "a checkpointed member, card or returns record is malformed"
                           : ledger_strerror(rc));
            state_destroy(&s);
            break;
        }
        if (why[0] != '\0')
            ctl_errorf("note: %s/%s/ is not used (%s); %s", dir, CKSTORE_SUBDIR, why,
                       src == CKPT_SRC_LEDGER ? "using the ledger's own checkpoint instead"
                                              : "replaying the ledger from sequence 1");
        state_set_seq(s, seq);
        *out = s;
        *cp_seq = seq;
        if (src_out != NULL)
            *src_out = src;
        ret = 0;
    }
    ckstore_close(&cks);
    return ret;
}

static int verify_offline(const ctl_globals *g, ledger *l)
{
    char err[CTL_ERR_MAX];
    state *cs;
    uint64_t cp, last;
    ckpt_source src;
    if (ctl_load_checkpoint(l, g->data, &cs, &cp, &src) < 0)
        return CTL_EXIT_FAIL;
    int rc = ledger_last_seq(l, &last);
    if (rc < 0 || last < cp) {
        ctl_errorf("verify: %s",
                   rc < 0 ? ledger_strerror(rc) : "checkpoint is past the ledger end");
        state_destroy(&cs);
        return CTL_EXIT_FAIL;
    }
    ctl_replay_result tail = {0}, full;
    tail.last_seq = cp;
    if (last > cp && ctl_replay_range(l, cs, cp + 1, last, &tail, err, sizeof err) < 0) {
        ctl_errorf("verify: checkpoint + tail: %s", err);
        state_destroy(&cs);
        return CTL_EXIT_FAIL;
    }
    verify_side a = {"checkpoint", last, state_members(cs), state_hash(cs)};
    state_destroy(&cs);
    if (!g->json)
        printf("checkpoint  at seq %" PRIu64 " (%s), then %" PRIu64 " entries applied\n", cp,
               ckpt_source_name(src), tail.entries);
    if (replay_fresh(l, last, false, &full) < 0)
        return CTL_EXIT_FAIL;
    verify_side b = {"replay", last, full.members, full.hash};
    return verify_report(g, "offline", &a, &b, &full);
}

/* Asks the daemon for (seq, hash). Returns 0, 1 if it does not answer, -1 on another error. */
static int daemon_hash(const ctl_globals *g, verify_side *d)
{
    char err[CTL_ERR_MAX];
    void *zctx = zmq_ctx_new();
    LT_ASSERT(zctx != NULL);
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    Loyalty__QueryReply *r = NULL;
    int probe_ms = g->timeout_given ? g->timeout_ms : VERIFY_PROBE_MS;
    q.q_case = LOYALTY__QUERY__Q_STATUS;
    q.status = 1;
    int rc = ctl_query(zctx, g->query, &q, probe_ms, &r, err, sizeof err);
    if (rc == 0) {
        loyalty__query_reply__free_unpacked(r, NULL);
        q.q_case = LOYALTY__QUERY__Q_STATE_HASH;
        q.state_hash = 1;
        rc = ctl_query(zctx, g->query, &q, g->timeout_ms, &r, err, sizeof err);
        if (rc < 0)
            ctl_errorf("verify: state hash query: %s", err);
        else if (!r->ok || !r->has_state_hash) {
            ctl_errorf("verify: the daemon did not give a state hash: %s",
                       r->error ? r->error : "no hash in the reply");
            rc = -1;
        } else {
            d->label = "daemon";
            d->seq = r->seq;
            d->members = r->members;
            d->hash = r->state_hash;
        }
        if (r)
            loyalty__query_reply__free_unpacked(r, NULL);
    } else {
        ctl_errorf("verify: %s", err);
        rc = 1;
    }
    zmq_ctx_term(zctx);
    return rc;
}

int ctl_cmd_verify(ctl_globals *g, int argc, char **argv)
{
    int offline = 0, online = 0;
    int rc = parse_opts(g, argc, argv, verify_usage, NULL, &offline, &online);
    if (rc != 0)
        return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    verify_side d = {0};
    if (!offline) {
        rc = daemon_hash(g, &d);
        if (rc < 0 || (rc == 1 && online))
            return CTL_EXIT_FAIL;
        if (rc == 1) {
            ctl_errorf("verify: daemon not reachable; verifying the checkpoint offline");
            offline = 1;
        }
    }
    ledger *l;
    if (ctl_ledger_open(g->data, &l) < 0)
        return CTL_EXIT_FAIL;
    if (offline) {
        rc = verify_offline(g, l);
        ledger_close(&l);
        return rc;
    }
    ctl_replay_result r;
    rc = replay_fresh(l, d.seq, false, &r);
    ledger_close(&l);
    if (rc < 0)
        return CTL_EXIT_FAIL;
    verify_side b = {"replay", r.last_seq, r.members, r.hash};
    return verify_report(g, "online", &d, &b, &r);
}
