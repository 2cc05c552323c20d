/* main.c: lt-bench: the benchmark behind `make bench`.
 *
 * One run, in this order (docs/performance.md explains each number):
 *   1. what fresh memory costs on this machine (bench/fresh.c: 2 GiB, 128 MiB with --quick);
 *      ceilings: ZeroMQ tcp loopback (the run's batch message and a one-event message) and
 *      LMDB sequential append with the daemon's commit size;
 *   2. RAM per member: a member state of --mem-members members built through state_apply();
 *   3. loyaltyd, started on a temp data dir and free loopback ports, with --subscribers
 *      subscribers reading every topic it publishes (bench/sub.c): the population enrolled
 *      (closed loop), the maximum with --batch events per message (closed loop, --seconds), the
 *      maximum with one event per message, and an open-loop run at half the batched maximum
 *      for latency; then its RAM, ledger bytes per event, and a replay of its ledger with
 *      `loyaltyctl replay`;
 *   4. PostgreSQL on the same workload (bench/pg.c);
 *   5. a table with every target of the performance issue, a JSON result, and a PNG of
 *      throughput and p99 latency over the run (gnuplot) in --out.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "ledger.h"
#include "load_encode.h"
#include "pg.h"
#include "report.h"

#define DAEMON_START_WAIT_MS 15000
#define DAEMON_STOP_WAIT_MS 60000
#define RAW_RECORDS 1000000
#define RAW_PER_COMMIT 1000
#define ZMQ_CEILING_S 1.0
#define OPEN_FRACTION 0.5

static const char usage[] =
    "usage: lt-bench [OPTIONS]\n"
    "\n"
    "The loyaltyd benchmark (`make bench`): what fresh memory costs, raw ceilings (ZeroMQ\n"
    "loopback, LMDB append), RAM per member, loyaltyd closed-loop maximum (batched and one\n"
    "event per message) with a subscriber reading what it publishes, open-loop latency at\n"
    "half the maximum, ledger replay, and PostgreSQL on the same workload. Prints a table\n"
    "with each target, writes OUT/bench-result.json, OUT/timeline.dat and (with gnuplot)\n"
    "OUT/timeline.png. Exit status: 0 the runs completed without losing an acknowledgement\n"
    "(a missed target is reported, not an error), 1 a run failed or a published message\n"
    "could not be read, 2 usage.\n"
    "\n"
    "options:\n"
    "  --seconds S        closed-loop batched run (default 60)\n"
    "  --batch1-seconds S one-event-per-message run (default 15; 0 = skip)\n"
    "  --open-seconds S   open-loop latency run (default 20; 0 = skip)\n"
    "  --open-rate R      its offered events/s (default: half the batched maximum)\n"
    "  --tills N          till threads, one DEALER each (default 4, max 64)\n"
    "  --nodes K          node ids per till thread, its messages taking them in turn, so\n"
    "                     that the daemon sees N x K tills (default 250: 1,000 tills; max\n"
    "                     4096)\n"
    "  --window W         messages in flight per till thread, batched runs (default 128,\n"
    "                     max 512)\n"
    "  --batch1-window W  ... in the one-event-per-message run (default 256)\n"
    "  --batch N          events per message (default 100, max 1000)\n"
    "  --subscribers N    subscribers on every topic during the daemon's runs, each a SUB\n"
    "                     socket in a thread of lt-bench, checking the stream's order\n"
    "                     (default 1, max 8; 0 = none)\n"
    "  --members N        Zipf member population, enrolled first (default 1000000)\n"
    "  --mem-members N    members for the RAM measurement (default 10000000; 0 = skip)\n"
    "  --pg-seconds S     PostgreSQL run (default 20; 0 = skip)\n"
    "  --no-replay        skip the ledger replay\n"
    "  --out DIR          where results go (default bench-out)\n"
    "  --daemon PATH      loyaltyd binary (default $LOYALTYD or next to lt-bench)\n"
    "  --seed N           random seed (default: time)\n"
    "  --keep             keep temp directories (data, config, logs)\n"
    "  --quick            a short smoke run: 3 s runs, 100000 members, 1000000 for RAM\n"
    "\n";

/* ------------------------------------------------------------------ options */

static int parse_num(const char *opt, const char *arg, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || *end || end == arg || v < min || v > max) {
        fprintf(stderr, "lt-bench: %s: '%s' is not a number in [%g, %g]\n", opt, arg, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, bench_cfg *b)
{
    enum {
        O_SECONDS = 1,
        O_B1S,
        O_OPENS,
        O_OPENR,
        O_TILLS,
        O_NODES,
        O_WINDOW,
        O_B1W,
        O_BATCH,
        O_SUBS,
        O_MEMBERS,
        O_MEMM,
        O_PGS,
        O_NOREPLAY,
        O_OUT,
        O_DAEMON,
        O_SEED,
        O_KEEP,
        O_QUICK,
        O_HELP
    };
    static const struct option longopts[] = {{"seconds", required_argument, NULL, O_SECONDS},
                                             {"batch1-seconds", required_argument, NULL, O_B1S},
                                             {"open-seconds", required_argument, NULL, O_OPENS},
                                             {"open-rate", required_argument, NULL, O_OPENR},
                                             {"tills", required_argument, NULL, O_TILLS},
                                             {"nodes", required_argument, NULL, O_NODES},
                                             {"window", required_argument, NULL, O_WINDOW},
                                             {"batch1-window", required_argument, NULL, O_B1W},
                                             {"batch", required_argument, NULL, O_BATCH},
                                             {"subscribers", required_argument, NULL, O_SUBS},
                                             {"members", required_argument, NULL, O_MEMBERS},
                                             {"mem-members", required_argument, NULL, O_MEMM},
                                             {"pg-seconds", required_argument, NULL, O_PGS},
                                             {"no-replay", no_argument, NULL, O_NOREPLAY},
                                             {"out", required_argument, NULL, O_OUT},
                                             {"daemon", required_argument, NULL, O_DAEMON},
                                             {"seed", required_argument, NULL, O_SEED},
                                             {"keep", no_argument, NULL, O_KEEP},
                                             {"quick", no_argument, NULL, O_QUICK},
                                             {"help", no_argument, NULL, O_HELP},
                                             {NULL, 0, NULL, 0}};
    int c;
    double v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case O_SECONDS:
            rc = parse_num("--seconds", optarg, 0.5, 3000, &b->seconds);
            break;
        case O_B1S:
            rc = parse_num("--batch1-seconds", optarg, 0, 3000, &b->batch1_seconds);
            break;
        case O_OPENS:
            rc = parse_num("--open-seconds", optarg, 0, 3000, &b->open_seconds);
            break;
        case O_OPENR:
            rc = parse_num("--open-rate", optarg, 1, 1e8, &b->open_rate);
            break;
        case O_TILLS:
            rc = parse_num("--tills", optarg, 1, BENCH_TILLS_MAX, &v), b->tills = (int)v;
            break;
        case O_NODES:
            rc = parse_num("--nodes", optarg, 1, BENCH_NODES_MAX, &v), b->nodes = (int)v;
            break;
        case O_WINDOW:
            rc = parse_num("--window", optarg, 1, BENCH_WINDOW_MAX, &v), b->window = (int)v;
            break;
        case O_B1W:
            rc = parse_num("--batch1-window", optarg, 1, BENCH_WINDOW_MAX, &v),
            b->batch1_window = (int)v;
            break;
        case O_BATCH:
            rc = parse_num("--batch", optarg, 1, LT_BATCH_EVENTS_MAX, &v), b->batch = (int)v;
            break;
        case O_SUBS:
            rc = parse_num("--subscribers", optarg, 0, BENCH_SUBS_MAX, &v), b->subscribers = (int)v;
            break;
        case O_MEMBERS:
            rc = parse_num("--members", optarg, 1, 99999999, &v), b->members = (uint32_t)v;
            break;
        case O_MEMM:
            rc = parse_num("--mem-members", optarg, 0, 99999999, &v), b->mem_members = (uint32_t)v;
            break;
        case O_PGS:
            rc = parse_num("--pg-seconds", optarg, 0, 3000, &b->pg_seconds);
            break;
        case O_NOREPLAY:
            b->replay = false;
            break;
        case O_OUT:
            snprintf(b->out, sizeof b->out, "%s", optarg);
            break;
        case O_DAEMON:
            snprintf(b->daemon_path, sizeof b->daemon_path, "%s", optarg);
            break;
        case O_SEED:
            rc = parse_num("--seed", optarg, 0, 1e18, &v), b->seed = (uint64_t)v;
            break;
        case O_KEEP:
            b->keep = true;
            break;
        case O_QUICK:
            b->seconds = b->batch1_seconds = b->open_seconds = b->pg_seconds = 3;
            b->members = 100000;
            b->mem_members = 1000000;
            b->fresh_mib = 128;
            break;
        case O_HELP:
        case 'h':
            fputs(usage, stdout);
            return 1;
        default:
            fputs(usage, stderr);
            return -1;
        }
        if (rc < 0)
            return -1;
    }
    if (optind != argc) {
        fprintf(stderr, "lt-bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* A program next to lt-bench (loyaltyd, loyaltyctl), unless env names one. */
static void sibling_path(char *out, size_t cap, const char *argv0, const char *env,
                         const char *name)
{
    const char *e = getenv(env);
    if (e && e[0]) {
        snprintf(out, cap, "%s", e);
        return;
    }
    char self[BENCH_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0)
        self[n] = '\0';
    else
        snprintf(self, sizeof self, "%s", argv0);
    snprintf(out, cap, "%s/%s", dirname(self), name);
}

/* ------------------------------------------------------------------ phases */

static int run_ceilings(const bench_cfg *b, bench_results *res)
{
    /* a side measurement: at most a quarter of the memory available, and not fatal */
    size_t mib = b->fresh_mib, avail = bench_mem_available_mib();
    if (avail > 0 && mib > avail / 4)
        mib = avail / 4;
    fprintf(stderr, "lt-bench: fresh memory, first write to %zu MiB ...\n", mib);
    if (mib == 0 || bench_fresh_run(mib << 20, &res->fresh) < 0)
        fprintf(stderr, "lt-bench: fresh memory not measured; going on\n");

    /* one message of the run's batch size, and one of a single event, from the workload */
    wl_model m;
    wl_event *ev = calloc((size_t)b->batch, sizeof *ev);
    uint8_t *buf = malloc(LT_MESSAGE_BYTES_MAX);
    if (!ev || !buf || wl_model_init(&m, b->members) < 0) {
        free(ev);
        free(buf);
        return -1;
    }
    uint64_t rng = b->seed, enrolled = 0;
    for (int i = 0; i < b->batch; i++)
        wl_next(&m, &rng, 1, &enrolled, NULL, NULL, &ev[i]);
    size_t len_batch = load_encode_batch(buf, LT_MESSAGE_BYTES_MAX, 1, 1, 1, (int64_t)time(NULL),
                                         ev, (uint32_t)b->batch);
    fprintf(stderr, "lt-bench: ZeroMQ loopback ceiling (%zu-byte and one-event messages) ...\n",
            len_batch);
    int rc = bench_zmq_run(buf, len_batch, ZMQ_CEILING_S, &res->zmq_batch);
    size_t len_one =
        load_encode_batch(buf, LT_MESSAGE_BYTES_MAX, 1, 1, 1, (int64_t)time(NULL), ev, 1);
    if (rc == 0)
        rc = bench_zmq_run(buf, len_one, ZMQ_CEILING_S, &res->zmq_one);
    wl_model_free(&m);
    free(ev);
    free(buf);

    char dir[BENCH_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/lt-bench-raw.XXXXXX", bench_tmp_dir());
    if (rc == 0 && mkdtemp(dir) == NULL) {
        fprintf(stderr, "lt-bench: mkdtemp: %s\n", strerror(errno));
        rc = -1;
    }
    if (rc == 0) {
        fprintf(stderr, "lt-bench: LMDB append ceiling, %d records, %d per commit ...\n",
                RAW_RECORDS, RAW_PER_COMMIT);
        rc = bench_raw_run(dir, RAW_RECORDS, RAW_PER_COMMIT, &res->lmdb);
        bench_rm_tree(dir);
    }
    return rc;
}

#define SUBS_CATCH_UP_MS 2000 /* after a run, the longest wait for its publications */

/* One load run against daemon d; with subscribers, r->published is what they received from its
 * start until they had the daemon's last committed entry (at most SUBS_CATCH_UP_MS after the
 * run). */
static int run_load(const bench_cfg *b, const bench_daemon *d, bench_subs *subs, load_mode mode,
                    int batch, int window, double seconds, double rate, uint64_t node_base,
                    load_result *r)
{
    static const char *names[] = {"closed loop", "open loop", "population"};
    load_opts o = {0};
    o.ingest = d->ingest;
    o.mode = mode;
    o.tills = b->tills;
    o.nodes = b->nodes;
    o.window = window;
    o.batch = batch;
    o.seconds = seconds;
    o.rate = rate;
    o.members = b->members;
    o.node_base = node_base;
    o.seed = b->seed + node_base;
    if (mode == LOAD_POPULATION)
        fprintf(stderr, "lt-bench: enrolling %" PRIu32 " members ...\n", b->members);
    else
        fprintf(stderr, "lt-bench: %s, %d events/message, %d tills, %.0f s%s ...\n", names[mode],
                batch, o.tills, seconds, mode == LOAD_OPEN ? " at a fixed rate" : "");
    if (mode == LOAD_OPEN)
        fprintf(stderr, "lt-bench:   offered %.0f events/s\n", rate);
    bench_sub_counts c0, c1;
    bench_subs_read(subs, &c0);
    int rc = bench_load_run(&o, r);
    uint64_t seq = 0, members = 0;
    if (subs != NULL && bench_status(d->query, 5000, &seq, &members) == 0 &&
        !bench_subs_wait(subs, seq, SUBS_CATCH_UP_MS))
        fprintf(stderr,
                "lt-bench: the subscribers had not received entry %" PRIu64 " %d ms after the "
                "run (dropped, or slow)\n",
                seq, SUBS_CATCH_UP_MS);
    bench_subs_read(subs, &c1);
    r->published = (bench_sub_counts){c1.messages - c0.messages, c1.gaps - c0.gaps,
                                      c1.missed - c0.missed, c1.bad - c0.bad};
    return rc;
}

/* The daemon's part: population, the load runs, its RAM and ledger, then a replay. */
static int run_daemon(const bench_cfg *b, bench_results *res)
{
    bench_daemon d;
    fprintf(stderr, "lt-bench: starting %s ...\n", b->daemon_path);
    if (bench_daemon_start(&d, b->daemon_path, DAEMON_START_WAIT_MS) < 0) {
        bench_daemon_cleanup(&d);
        return -1;
    }
    /* connected before the population, so that they have joined by the measured runs */
    bench_subs *subs = NULL;
    int rc = bench_subs_start(&subs, d.pub, b->subscribers);
    if (rc == 0)
        rc = run_load(b, &d, subs, LOAD_POPULATION, b->batch, b->window, 0, 0, 1000,
                      res->population);
    if (rc == 0 && !bench_stop)
        rc = run_load(b, &d, subs, LOAD_CLOSED, b->batch, b->window, b->seconds, 0, 0, res->closed);
    if (rc == 0 && b->batch1_seconds > 0 && !bench_stop)
        rc = run_load(b, &d, subs, LOAD_CLOSED, 1, b->batch1_window, b->batch1_seconds, 0, 100,
                      res->batch1);
    res->open_rate = b->open_rate > 0 ? b->open_rate : OPEN_FRACTION * bench_load_rate(res->closed);
    if (rc == 0 && b->open_seconds > 0 && res->open_rate >= 1 && !bench_stop) {
        /* the window only bounds memory here: a message waiting for a free slot still
         * counts its latency from when it was due */
        rc = run_load(b, &d, subs, LOAD_OPEN, b->batch, BENCH_WINDOW_MAX, b->open_seconds,
                      res->open_rate, 200, res->open);
    }
    bench_subs_stop(&subs);
    uint64_t seq = 0, members = 0;
    if (bench_status(d.query, 5000, &seq, &members) == 0) {
        res->daemon_seq = seq;
        res->daemon_members = members;
    } else {
        fprintf(stderr, "lt-bench: no answer to a status query after the runs\n");
        rc = -1;
    }
    res->daemon_rss_anon_kib = bench_rss_anon_kib(d.pid);
    fprintf(stderr, "lt-bench: stopping loyaltyd ...\n");
    int stop_rc = bench_daemon_stop(&d, DAEMON_STOP_WAIT_MS);
    if (stop_rc != 0) {
        fprintf(stderr, "lt-bench: loyaltyd exited with status %d (log: %s)\n", stop_rc, d.log);
        rc = -1;
    }

    char data[BENCH_PATH_MAX + 16], err[256] = "";
    snprintf(data, sizeof data, "%s/data", d.dir);
    ledger *l = NULL;
    ledger_opts lo = {0};
    lo.dir = data;
    lo.read_only = true;
    ledger_stats st = {0};
    if (ledger_open(&l, &lo, err, sizeof err) == 0 && ledger_stat(l, &st) == 0) {
        res->ledger_used_bytes = st.used_bytes;
        res->ledger_entries = st.entries;
    } else {
        fprintf(stderr, "lt-bench: cannot read the ledger's size: %s\n", err);
    }
    ledger_close(&l);

    if (b->replay && !bench_stop) {
        fprintf(stderr, "lt-bench: loyaltyctl replay of %" PRIu64 " entries ...\n", st.entries);
        if (bench_replay(b->ctl_path, data, &res->replay) < 0)
            rc = -1;
    }
    if (b->keep)
        fprintf(stderr, "lt-bench: kept %s (config, data, loyaltyd.log)\n", d.dir);
    else
        bench_daemon_cleanup(&d);
    return rc;
}

static int run_pg(const bench_cfg *b, bench_results *res)
{
    pg_opts o = {0};
    o.clients = b->tills;
    o.batch = b->batch;
    o.seconds = b->pg_seconds;
    o.members = b->members;
    o.seed = b->seed;
    o.keep = b->keep;
    fprintf(stderr,
            "lt-bench: PostgreSQL, same workload, %d clients, %d events/transaction, "
            "%.0f s ...\n",
            o.clients, o.batch, o.seconds);
    res->pg_rc = bench_pg_run(&o, res->pg);
    if (res->pg_rc == 1)
        fprintf(stderr, "lt-bench: PostgreSQL skipped: %s\n", res->pg->skipped);
    return res->pg_rc < 0 ? -1 : 0;
}

volatile sig_atomic_t bench_stop;

static void on_stop_signal(int sig)
{
    bench_stop = sig;
}

/* Ctrl-C (or a SIGTERM) stops the runs, not the clean-up: without it an interrupted bench left
 * its PostgreSQL server running and its temp directories behind. */
static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int main(int argc, char **argv)
{
    bench_cfg b = {0};
    b.seconds = 60;
    b.batch1_seconds = 15;
    b.open_seconds = 20;
    b.pg_seconds = 20;
    b.tills = 4;
    b.nodes = 250; /* 1,000 tills: a retailer's, not 4 (docs/performance.md) */
    /* enough in flight that a closed loop measures the daemon, not the round trip: with
     * 4 x 64 one-event messages the run was bound by Little's law (256 / 3.3 ms = 78,000/s
     * whatever the daemon could do; 4 x 256: 117,000/s), docs/performance.md; and 4 x 32
     * batches (12,800 events) fitted in the daemon's pipeline (4 batches of up to 4,000), which
     * left its loop thread waiting: 286,000-313,000 events/s where 4 x 96 or more reached
     * 324,000-340,000 */
    b.window = 128;
    b.batch1_window = 256;
    b.batch = 100;
    /* one reporting service on every topic: without a reader, a PUB socket drops what it is
     * handed almost for free, and "published" would not be measured (docs/performance.md) */
    b.subscribers = 1;
    b.members = 1000000;
    b.mem_members = 10000000;
    b.fresh_mib = 2048;
    b.replay = true;
    b.seed = (uint64_t)time(NULL);
    snprintf(b.out, sizeof b.out, "bench-out");
    int rc = parse_args(argc, argv, &b);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (b.daemon_path[0] == '\0')
        sibling_path(b.daemon_path, sizeof b.daemon_path, argv[0], "LOYALTYD", "loyaltyd");
    sibling_path(b.ctl_path, sizeof b.ctl_path, argv[0], "LOYALTYCTL", "loyaltyctl");
    if (mkdir(b.out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "lt-bench: cannot create %s: %s\n", b.out, strerror(errno));
        return 1;
    }

    bench_results *res = calloc(1, sizeof *res);
    if (res == NULL || bench_results_alloc(res) < 0) {
        fprintf(stderr, "lt-bench: out of memory\n");
        return 1;
    }
    catch_stop_signals();
    double t0 = bench_now_s();
    int fail = 0;
    if (run_ceilings(&b, res) < 0)
        fail = 1;
    if (b.mem_members > 0 && !bench_stop) {
        fprintf(stderr, "lt-bench: RAM per member: building a state of %" PRIu32 " members ...\n",
                b.mem_members);
        if (bench_mem_run(b.mem_members, &res->mem) < 0)
            fail = 1;
    }
    if (!bench_stop && run_daemon(&b, res) < 0)
        fail = 1;
    if (b.pg_seconds > 0 && !bench_stop && run_pg(&b, res) < 0)
        fail = 1;
    if (bench_stop) {
        fprintf(stderr,
                "lt-bench: interrupted by signal %d: stopped and cleaned up, no results "
                "written\n",
                (int)bench_stop);
        bench_results_free(res);
        free(res);
        return 130;
    }
    res->total_s = bench_now_s() - t0;

    bench_report_print(&b, res, stdout);
    if (bench_report_files(&b, res) < 0)
        fail = 1;
    bool lost = res->closed->lost_batches || res->batch1->lost_batches || res->open->lost_batches ||
                res->population->lost_batches;
    if (lost)
        fprintf(stderr, "lt-bench: acknowledgements missing: see 'lost' in the table\n");
    uint64_t bad = res->population->published.bad + res->closed->published.bad +
                   res->batch1->published.bad + res->open->published.bad;
    if (bad > 0) {
        fprintf(stderr, "lt-bench: %" PRIu64 " published messages did not parse\n", bad);
        fail = 1;
    }
    bench_results_free(res);
    free(res);
    return fail || lost ? 1 : 0;
}
