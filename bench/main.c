/* main.c: lt-bench: a self-contained load benchmark for `make bench`.
 *
 * Starts loyaltyd on a temp data dir and free loopback ports, runs the till load twice (batched,
 * then one event per message), stops the daemon with SIGTERM, measures the raw LMDB append
 * ceiling for the same number of records, and prints one table.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define DAEMON_START_WAIT_MS 15000
#define DAEMON_STOP_WAIT_MS 15000
#define RAW_RECORDS_MIN 10000
#define RAW_RECORDS_MAX 2000000
#define RAW_PER_COMMIT 1000

typedef struct {
    char daemon_path[BENCH_PATH_MAX];
    const char *ingest; /* set: use a running daemon, start none */
    const char *query;
    load_opts load;
    bool batch1;
    uint64_t raw_records; /* 0 = as many as the batched run acknowledged */
    bool keep;
} bench_opts;

static const char usage[] =
    "usage: lt-bench [OPTIONS]\n"
    "\n"
    "Load benchmark for loyaltyd. Starts loyaltyd (--daemon, $LOYALTYD, or 'loyaltyd' next to\n"
    "lt-bench) with a temp data dir and free loopback ports, runs N till threads against it for\n"
    "--seconds with --batch events per message, then again with one event per message, stops it\n"
    "with SIGTERM, and measures the raw LMDB append ceiling (the same number of ~200-byte\n"
    "ledger records, 1000 per durable commit). Prints events/s, per-batch ack latency\n"
    "percentiles (send to ack) and outcome counts.\n"
    "\n"
    "options:\n"
    "  --daemon PATH     loyaltyd binary\n"
    "  --ingest EP       benchmark an already running daemon at this ingest endpoint\n"
    "  --query EP        ... and this query endpoint (default tcp://127.0.0.1:7702)\n"
    "  --seconds S       sending time per run (default 10)\n"
    "  --tills N         till threads, one node id each (default 4, max 64)\n"
    "  --window W        batches in flight per till (default 8, max 64)\n"
    "  --batch N         events per message in the first run (default 100, max 1000)\n"
    "  --members N       member population, Zipf-ish (default 100000)\n"
    "  --no-batch1       skip the one-event-per-message run\n"
    "  --raw-records N   records for the raw ceiling (default: events of the first run)\n"
    "  --seed N          random seed (default: time)\n"
    "  --keep            keep the temp directory (data, config, log)\n"
    "\n";

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

static int parse_args(int argc, char **argv, bench_opts *b)
{
    enum {
        O_DAEMON = 1,
        O_INGEST,
        O_QUERY,
        O_SECONDS,
        O_TILLS,
        O_WINDOW,
        O_BATCH,
        O_MEMBERS,
        O_NOB1,
        O_RAW,
        O_SEED,
        O_KEEP,
        O_HELP
    };
    static const struct option longopts[] = {{"daemon", required_argument, NULL, O_DAEMON},
                                             {"ingest", required_argument, NULL, O_INGEST},
                                             {"query", required_argument, NULL, O_QUERY},
                                             {"seconds", required_argument, NULL, O_SECONDS},
                                             {"tills", required_argument, NULL, O_TILLS},
                                             {"window", required_argument, NULL, O_WINDOW},
                                             {"batch", required_argument, NULL, O_BATCH},
                                             {"members", required_argument, NULL, O_MEMBERS},
                                             {"no-batch1", no_argument, NULL, O_NOB1},
                                             {"raw-records", required_argument, NULL, O_RAW},
                                             {"seed", required_argument, NULL, O_SEED},
                                             {"keep", no_argument, NULL, O_KEEP},
                                             {"help", no_argument, NULL, O_HELP},
                                             {NULL, 0, NULL, 0}};
    int c;
    double v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case O_DAEMON:
            snprintf(b->daemon_path, sizeof b->daemon_path, "%s", optarg);
            break;
        case O_INGEST:
            b->ingest = optarg;
            break;
        case O_QUERY:
            b->query = optarg;
            break;
        case O_SECONDS:
            rc = parse_num("--seconds", optarg, 0.1, 3600, &b->load.seconds);
            break;
        case O_TILLS:
            rc = parse_num("--tills", optarg, 1, BENCH_TILLS_MAX, &v), b->load.tills = (int)v;
            break;
        case O_WINDOW:
            rc = parse_num("--window", optarg, 1, BENCH_WINDOW_MAX, &v), b->load.window = (int)v;
            break;
        case O_BATCH:
            rc = parse_num("--batch", optarg, 1, LT_BATCH_EVENTS_MAX, &v), b->load.batch = (int)v;
            break;
        case O_MEMBERS:
            rc = parse_num("--members", optarg, 1, 1e9, &v), b->load.members = (uint32_t)v;
            break;
        case O_NOB1:
            b->batch1 = false;
            break;
        case O_RAW:
            rc = parse_num("--raw-records", optarg, 1, 1e9, &v), b->raw_records = (uint64_t)v;
            break;
        case O_SEED:
            rc = parse_num("--seed", optarg, 0, 1e18, &v), b->load.seed = (uint64_t)v;
            break;
        case O_KEEP:
            b->keep = true;
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

static void default_daemon_path(char *out, size_t cap, const char *argv0)
{
    const char *env = getenv("LOYALTYD");
    if (env && env[0]) {
        snprintf(out, cap, "%s", env);
        return;
    }
    char self[BENCH_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0)
        self[n] = '\0';
    else
        snprintf(self, sizeof self, "%s", argv0);
    snprintf(out, cap, "%s/loyaltyd", dirname(self));
}

/* ------------------------------------------------------------------ output */

static void print_header(void)
{
    printf("%-22s %11s %8s %8s %8s %8s %10s %6s %9s %8s %5s\n", "run", "events/s", "p50 ms",
           "p99 ms", "p999 ms", "max ms", "accepted", "dup", "rejected", "refused", "lost");
}

static void print_row(const char *name, const load_result *r)
{
    uint64_t acked = r->accepted + r->duplicate + r->rejected;
    double rate = r->elapsed_s > 0 ? (double)acked / r->elapsed_s : 0;
    printf("%-22s %11.0f %8.2f %8.2f %8.2f %8.2f %10" PRIu64 " %6" PRIu64 " %9" PRIu64 " %8" PRIu64
           " %5" PRIu64 "\n",
           name, rate, hist_quantile(&r->latency_us, 0.50) / 1000.0,
           hist_quantile(&r->latency_us, 0.99) / 1000.0,
           hist_quantile(&r->latency_us, 0.999) / 1000.0, r->latency_us.max / 1000.0, r->accepted,
           r->duplicate, r->rejected, r->refused_batches, r->lost_batches);
}

static void print_reasons(const char *name, const load_result *r)
{
    bool any = false;
    for (int i = 1; i < LT_R__COUNT; i++) {
        if (r->reasons[i] == 0)
            continue;
        if (!any)
            printf("  %s rejections:", name);
        printf(" %s=%" PRIu64, lt_reason_name(i), r->reasons[i]);
        any = true;
    }
    if (any)
        putchar('\n');
}

static double load_rate(const load_result *r)
{
    uint64_t acked = r->accepted + r->duplicate + r->rejected;
    return r->elapsed_s > 0 ? (double)acked / r->elapsed_s : 0;
}

/* ------------------------------------------------------------------ runs */

static int run_load(const bench_opts *b, const char *ingest, int batch, uint64_t node_base,
                    load_result *r)
{
    load_opts o = b->load;
    o.ingest = ingest;
    o.batch = batch;
    o.node_base = node_base;
    o.seed = b->load.seed + node_base;
    fprintf(stderr, "lt-bench: run: batch %d, %d tills x %d in flight, %.0f s ...\n", batch,
            o.tills, o.window, o.seconds);
    return bench_load_run(&o, r);
}

static int run_raw(const bench_opts *b, uint64_t records, raw_result *raw)
{
    char dir[BENCH_PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/lt-bench-raw.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "lt-bench: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    fprintf(stderr, "lt-bench: raw LMDB append of %" PRIu64 " records ...\n", records);
    int rc = bench_raw_run(dir, records, RAW_PER_COMMIT, raw);
    if (!b->keep)
        bench_rm_tree(dir);
    else
        fprintf(stderr, "lt-bench: kept %s\n", dir);
    return rc;
}

int main(int argc, char **argv)
{
    bench_opts b = {0};
    b.load.tills = 4;
    b.load.window = 8;
    b.load.batch = 100;
    b.load.seconds = 10;
    b.load.members = 100000;
    b.load.seed = (uint64_t)time(NULL);
    b.batch1 = true;
    int rc = parse_args(argc, argv, &b);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (b.daemon_path[0] == '\0')
        default_daemon_path(b.daemon_path, sizeof b.daemon_path, argv[0]);

    bench_daemon d;
    memset(&d, 0, sizeof d);
    const char *ingest = b.ingest, *query = b.query ? b.query : "tcp://127.0.0.1:7702";
    if (ingest == NULL) {
        fprintf(stderr, "lt-bench: starting %s ...\n", b.daemon_path);
        if (bench_daemon_start(&d, b.daemon_path, DAEMON_START_WAIT_MS) < 0) {
            bench_daemon_cleanup(&d);
            return 1;
        }
        ingest = d.ingest;
        query = d.query;
    }
    load_result *r1 = calloc(1, sizeof *r1), *r2 = calloc(1, sizeof *r2);
    LT_ASSERT(r1 && r2);
    rc = run_load(&b, ingest, b.load.batch, 0, r1);
    if (rc == 0 && b.batch1)
        rc = run_load(&b, ingest, 1, 100, r2);
    uint64_t seq = 0, members = 0;
    int status_rc = bench_status(query, 5000, &seq, &members);
    int stop_rc = 0;
    if (b.ingest == NULL) {
        stop_rc = bench_daemon_stop(&d, DAEMON_STOP_WAIT_MS);
        if (stop_rc != 0)
            fprintf(stderr, "lt-bench: loyaltyd exited with status %d (log: %s)\n", stop_rc, d.log);
    }

    uint64_t records = b.raw_records ? b.raw_records : r1->accepted;
    records = records < RAW_RECORDS_MIN ? RAW_RECORDS_MIN : records;
    records = !b.raw_records && records > RAW_RECORDS_MAX ? RAW_RECORDS_MAX : records;
    raw_result raw = {0};
    int raw_rc = run_raw(&b, records, &raw);

    printf("\nlt-bench: %d tills x %d batches in flight, %" PRIu32 " members, %.0f s per run\n\n",
           b.load.tills, b.load.window, b.load.members, b.load.seconds);
    print_header();
    char name[32];
    snprintf(name, sizeof name, "loyaltyd batch=%d", b.load.batch);
    print_row(name, r1);
    if (b.batch1)
        print_row("loyaltyd batch=1", r2);
    double raw_rate = raw.elapsed_s > 0 ? (double)raw.records / raw.elapsed_s : 0;
    if (raw_rc == 0)
        printf("%-22s %11.0f   (%" PRIu64 " records of ~%zu bytes, %d per commit, %.2f s)\n",
               "raw LMDB append", raw_rate, raw.records, raw.record_bytes, RAW_PER_COMMIT,
               raw.elapsed_s);
    printf("\n");
    if (raw_rc == 0 && raw_rate > 0) {
        printf("loyaltyd batch=%d reaches %.1f%% of the raw append ceiling", b.load.batch,
               100.0 * load_rate(r1) / raw_rate);
        if (b.batch1)
            printf("; batch=1 reaches %.1f%%", 100.0 * load_rate(r2) / raw_rate);
        printf(".\n");
    }
    printf("mix: %" PRIu64 " redemptions, %" PRIu64 " enrolments sent (batched run)\n",
           r1->redemptions, r1->enrolments);
    print_reasons("batched", r1);
    if (b.batch1)
        print_reasons("batch=1", r2);
    if (status_rc == 0)
        printf("daemon after the runs: committed seq %" PRIu64 ", %" PRIu64 " members\n", seq,
               members);
    else
        printf("daemon after the runs: no answer to a status query\n");
    if (b.ingest == NULL && b.keep)
        printf("kept %s (config, data, loyaltyd.log)\n", d.dir);
    else if (b.ingest == NULL)
        bench_daemon_cleanup(&d);
    bool lost = r1->lost_batches || r2->lost_batches;
    free(r1);
    free(r2);
    return rc == 0 && raw_rc == 0 && !lost && status_rc == 0 && stop_rc == 0 ? 0 : 1;
}
