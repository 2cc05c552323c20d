/* report.c: lt-bench's output: the table, OUT/bench-result.json, the timeline and its plot. */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The performance issue's targets (this 2-core machine, load generator on it too). */
#define TARGET_BATCHED_EPS 1000000.0
#define TARGET_SINGLE_EPS 300000.0
#define TARGET_P99_MS 5.0
#define TARGET_REPLAY_EPS 3000000.0
#define TARGET_BYTES_PER_MEMBER 256.0
#define TARGET_PG_RATIO 20.0

int bench_results_alloc(bench_results *r)
{
    r->population = calloc(1, sizeof *r->population);
    r->closed = calloc(1, sizeof *r->closed);
    r->batch1 = calloc(1, sizeof *r->batch1);
    r->open = calloc(1, sizeof *r->open);
    r->pg = calloc(1, sizeof *r->pg);
    r->pg_rc = -2; /* not run */
    return r->population && r->closed && r->batch1 && r->open && r->pg ? 0 : -1;
}

void bench_results_free(bench_results *r)
{
    load_result *runs[] = {r->population, r->closed, r->batch1, r->open};
    for (size_t i = 0; i < LT_ARRAY_LEN(runs); i++)
        if (runs[i]) {
            bench_load_free(runs[i]);
            free(runs[i]);
        }
    free(r->pg);
}

int bench_replay(const char *ctl, const char *data_dir, replay_result *r)
{
    memset(r, 0, sizeof *r);
    char cmd[3 * BENCH_PATH_MAX];
    snprintf(cmd, sizeof cmd, "'%s' --data '%s' replay --json", ctl, data_dir);
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        fprintf(stderr, "lt-bench: cannot run %s: %s\n", ctl, strerror(errno));
        return -1;
    }
    char line[1024] = "";
    bool got = false;
    while (fgets(line, sizeof line, p)) {
        const char *e = strstr(line, "\"entries\":"), *s = strstr(line, "\"elapsed_s\":");
        if (e && s) {
            r->entries = strtoull(e + 10, NULL, 10);
            r->elapsed_s = strtod(s + 12, NULL);
            got = true;
        }
    }
    int st = pclose(p);
    if (!got || st != 0 || r->elapsed_s <= 0) {
        fprintf(stderr, "lt-bench: '%s' failed (status %d)\n", cmd, st);
        return -1;
    }
    r->rate = (double)r->entries / r->elapsed_s;
    return 0;
}

/* ------------------------------------------------------------------ numbers */

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static double zmq_rate(const zmq_raw_result *z)
{
    return z->elapsed_s > 0 ? (double)z->messages / z->elapsed_s : 0;
}

static double lmdb_rate(const raw_result *l)
{
    return l->elapsed_s > 0 ? (double)l->records / l->elapsed_s : 0;
}

static double pg_rate(const bench_results *r)
{
    return r->pg_rc == 0 ? bench_pg_rate(r->pg) : 0;
}

static double mem_per_member(const bench_results *r)
{
    return r->mem.members ? (double)r->mem.bytes / (double)r->mem.members : 0;
}

/* The lowest one-second throughput of a run, leaving out its first and its last two seconds
 * (ramp-up, and the partial second and drain at the end): what "sustained" means here. */
static double sustained(const load_result *r)
{
    if (r->seconds_n < 4)
        return 0;
    double lo = -1;
    for (uint32_t s = 1; s + 2 < r->seconds_n; s++)
        if (lo < 0 || (double)r->seconds[s].events < lo)
            lo = (double)r->seconds[s].events;
    return lo < 0 ? 0 : lo;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

/* ------------------------------------------------------------------ the table */

static void row(FILE *f, const char *name, const load_result *r)
{
    if (r->messages_sent == 0)
        return;
    fprintf(f,
            "%-26s %11.0f %8.2f %8.2f %8.2f %8.2f %10" PRIu64 " %6" PRIu64 " %8" PRIu64 " %7" PRIu64
            " %5" PRIu64 "\n",
            name, bench_load_rate(r), ms(hist_quantile(&r->latency_us, 0.50)),
            ms(hist_quantile(&r->latency_us, 0.99)), ms(hist_quantile(&r->latency_us, 0.999)),
            ms(r->latency_us.max), r->accepted, r->duplicate, r->rejected, r->refused_batches,
            r->lost_batches);
}

static void reasons(FILE *f, const char *name, const load_result *r)
{
    bool any = false;
    for (int i = 1; i < LT_R__COUNT; i++) {
        if (r->reasons[i] == 0)
            continue;
        fprintf(f, "%s%s=%" PRIu64, any ? " " : "  rejections (", lt_reason_name(i), r->reasons[i]);
        any = true;
    }
    if (any)
        fprintf(f, ") in the %s run\n", name);
}

static void target(FILE *f, const char *what, double got, const char *unit, double goal,
                   bool at_most, bool measured)
{
    const char *verdict = !measured                               ? "not measured"
                          : (at_most ? got <= goal : got >= goal) ? "met"
                                                                  : "MISSED";
    fprintf(f, "  %-44s %14.1f %-10s %s %12.1f  %s\n", what, got, unit, at_most ? "<=" : ">=", goal,
            verdict);
}

/* CPU steal: on a VM, time the hypervisor gave this machine's CPUs to something else. Stalls of
 * every thread at once (the daemon's and the tills') show here and not in any profile. */
static void steal(FILE *f, const bench_results *r)
{
    const load_result *runs[] = {r->closed, r->batch1, r->open};
    const char *names[] = {"batched", "one-event", "open loop"};
    fprintf(f, "  CPU steal (the hypervisor's, all CPUs):");
    for (int i = 0; i < 3; i++) {
        if (runs[i] == NULL || runs[i]->elapsed_s <= 0)
            continue;
        if (runs[i]->steal_ms < 0)
            fprintf(f, " %s unknown;", names[i]);
        else
            fprintf(f, " %s %.0f ms in %.0f s;", names[i], runs[i]->steal_ms, runs[i]->elapsed_s);
    }
    fprintf(f, "\n");
}

/* What the subscribers received in each run, and whether the stream had gaps. */
static void published(FILE *f, const bench_cfg *b, const bench_results *r)
{
    if (b->subscribers == 0) {
        fprintf(f, "  published: no subscriber (--subscribers 0): messages handed to the PUB "
                   "socket, none delivered\n");
        return;
    }
    const load_result *runs[] = {r->closed, r->batch1, r->open};
    const char *names[] = {"batched", "one-event", "open loop"};
    fprintf(f,
            "  published, received per subscriber (%d, every topic; gaps summed):", b->subscribers);
    for (int i = 0; i < 3; i++) {
        const load_result *x = runs[i];
        if (x == NULL || x->elapsed_s <= 0)
            continue;
        double each = (double)x->published.messages / b->subscribers;
        fprintf(f, " %s %.0f msg/s (%.2f per accepted event), ", names[i], each / x->elapsed_s,
                x->accepted ? each / (double)x->accepted : 0);
        if (x->published.messages == 0)
            fprintf(f, "NOTHING received;"); /* every entry publishes: the subscriber is broken */
        else if (x->published.gaps == 0)
            fprintf(f, "no gaps;");
        else
            fprintf(f, "%" PRIu64 " gaps, %" PRIu64 " entries missed at the high-water mark;",
                    x->published.gaps, x->published.missed);
    }
    fprintf(f, "\n");
}

void bench_report_print(const bench_cfg *b, const bench_results *r, FILE *f)
{
    char name[64];
    double closed = bench_load_rate(r->closed);
    fprintf(f,
            "\nlt-bench: %d tills (%d node ids) x %d messages in flight (%d with one event per "
            "message), %" PRIu32 " Zipf members, seed %" PRIu64 ", %.0f s in all\n\n",
            b->tills, b->tills * b->nodes, b->window, b->batch1_window, b->members, b->seed,
            r->total_s);
    fprintf(f, "%-26s %11s %8s %8s %8s %8s %10s %6s %8s %7s %5s\n", "run (latency per message)",
            "events/s", "p50 ms", "p99 ms", "p999 ms", "max ms", "accepted", "dup", "rejected",
            "refused", "lost");
    row(f, "enrol population", r->population);
    snprintf(name, sizeof name, "closed, %d/message", b->batch);
    row(f, name, r->closed);
    row(f, "closed, 1/message", r->batch1);
    snprintf(name, sizeof name, "open %.0f/s, %d/message", r->open_rate, b->batch);
    row(f, name, r->open);
    if (r->pg_rc == 0)
        fprintf(f,
                "%-26s %11.0f %8.2f %8.2f %8.2f %8.2f %10" PRIu64 "   (per transaction, one "
                "in flight per client)\n",
                "PostgreSQL, same workload", pg_rate(r), ms(hist_quantile(&r->pg->latency_us, 0.5)),
                ms(hist_quantile(&r->pg->latency_us, 0.99)),
                ms(hist_quantile(&r->pg->latency_us, 0.999)), ms(r->pg->latency_us.max),
                r->pg->events);
    else if (r->pg_rc == 1)
        fprintf(f, "PostgreSQL skipped: %s\n", r->pg->skipped);
    else if (r->pg_rc == -1)
        fprintf(f, "PostgreSQL failed (see above)\n");
    fprintf(f,
            "\nmix of the batched run: %" PRIu64 " sales (%" PRIu64 " redeeming points), %" PRIu64
            " returns, %" PRIu64 " enrolments\n",
            r->closed->sales, r->closed->redemptions, r->closed->returns, r->closed->enrolments);
    reasons(f, "batched", r->closed);
    reasons(f, "one-event", r->batch1);
    reasons(f, "open-loop", r->open);
    steal(f, r);
    published(f, b, r);

    fprintf(f, "\nceilings on this machine, and loyaltyd's share of them:\n");
    double zb = zmq_rate(&r->zmq_batch), z1 = zmq_rate(&r->zmq_one), lm = lmdb_rate(&r->lmdb);
    fprintf(f,
            "  ZeroMQ loopback, %5zu-byte messages  %11.0f msg/s = %11.0f events/s  loyaltyd "
            "%5.1f%%\n",
            r->zmq_batch.message_bytes, zb, zb * b->batch, 100 * ratio(closed, zb * b->batch));
    fprintf(f,
            "  ZeroMQ loopback, %5zu-byte messages  %11.0f msg/s = %11.0f events/s  loyaltyd "
            "%5.1f%%\n",
            r->zmq_one.message_bytes, z1, z1, 100 * ratio(bench_load_rate(r->batch1), z1));
    fprintf(f,
            "  LMDB append, %zu-byte records, 1000/commit  %11.0f records/s        loyaltyd "
            "%5.1f%%\n",
            r->lmdb.record_bytes, lm, 100 * ratio(closed, lm));
    if (r->fresh.bytes > 0)
        fprintf(f,
                "  fresh memory, first write to %zu MiB     %8.2f us per 4 KiB page (at once "
                "again: %.2f us)\n",
                r->fresh.bytes >> 20, r->fresh.first_us, r->fresh.again_us);
    else
        fprintf(f, "  fresh memory: not measured\n");
    if (r->pg_rc == 0)
        fprintf(f,
                "  PostgreSQL %s, same workload: %.0f events/s; loyaltyd = %.1fx (%" PRIu64
                " deadlock retries; its tables checked after the run: %s)\n",
                r->pg->version, pg_rate(r), ratio(closed, pg_rate(r)), r->pg->retries,
                r->pg->verified ? "consistent" : "NOT consistent");

    fprintf(f,
            "\nthe daemon after the runs: %" PRIu64 " entries, %" PRIu64
            " members, %.0f MiB anonymous RSS (%.0f bytes per member, all included)\n",
            r->daemon_seq, r->daemon_members, r->daemon_rss_anon_kib / 1024.0,
            r->daemon_members ? r->daemon_rss_anon_kib * 1024.0 / (double)r->daemon_members : 0);
    fprintf(f,
            "ledger: %.0f MiB in use for %" PRIu64 " entries = %.0f bytes per entry (with the "
            "dedup index; checkpoints are in state/)\n",
            r->ledger_used_bytes / 1048576.0, r->ledger_entries,
            r->ledger_entries ? (double)r->ledger_used_bytes / (double)r->ledger_entries : 0);
    if (r->replay.entries)
        fprintf(f, "replay (loyaltyctl replay): %" PRIu64 " entries in %.2f s = %.0f entries/s\n",
                r->replay.entries, r->replay.elapsed_s, r->replay.rate);
    if (r->mem.members)
        fprintf(f,
                "member state: %" PRIu64 " members (one lot each) in %.0f MiB = %.0f bytes per "
                "member (built in %.1f s)\n",
                r->mem.members, r->mem.bytes / 1048576.0, mem_per_member(r), r->mem.elapsed_s);

    fprintf(f, "\ntargets (docs/performance.md):\n");
    snprintf(name, sizeof name, "events/s, %d per message, %.0f s", b->batch, b->seconds);
    target(f, name, closed, "events/s", TARGET_BATCHED_EPS, false, closed > 0);
    target(f, "  ... lowest one-second rate in that run", sustained(r->closed), "events/s",
           TARGET_BATCHED_EPS, false, r->closed->seconds_n >= 4);
    target(f, "events/s, one event per message", bench_load_rate(r->batch1), "events/s",
           TARGET_SINGLE_EPS, false, r->batch1->messages_sent > 0);
    snprintf(name, sizeof name, "ack p99 at %.0f events/s (open loop)", r->open_rate);
    target(f, name, ms(hist_quantile(&r->open->latency_us, 0.99)), "ms", TARGET_P99_MS, true,
           r->open->messages_sent > 0);
    target(f, "replay", r->replay.rate, "entries/s", TARGET_REPLAY_EPS, false,
           r->replay.entries > 0);
    snprintf(name, sizeof name, "RAM per member at %" PRIu64 " members", r->mem.members);
    if (r->mem.members > 0 && r->mem.bytes == 0) /* built, but no growth seen */
        fprintf(f,
                "  %-44s %14s %-10s    %12s  unmeasurable: the allocator showed no growth "
                "(a sanitizer build)\n",
                name, "-", "bytes", "");
    else
        target(f, name, mem_per_member(r), "bytes", TARGET_BYTES_PER_MEMBER, true,
               r->mem.bytes > 0);
    target(f, "loyaltyd / PostgreSQL, same workload", ratio(closed, pg_rate(r)), "x",
           TARGET_PG_RATIO, false, pg_rate(r) > 0);
    fprintf(f, "\n");
}

/* ------------------------------------------------------------------ files */

/* Returns 0 (plotted), 1 (no gnuplot: data and script only) or -1. */
static int write_plot(const bench_cfg *b);

static void json_run(FILE *f, const char *key, const load_result *r, bool last)
{
    fprintf(f,
            "  \"%s\": {\"events_per_s\": %.0f, \"elapsed_s\": %.3f, \"messages\": %" PRIu64
            ", \"accepted\": %" PRIu64 ", \"duplicate\": %" PRIu64 ", \"rejected\": %" PRIu64
            ", \"refused_messages\": %" PRIu64 ", \"lost_messages\": %" PRIu64
            ", \"latency_ms\": {\"p50\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}, "
            "\"lowest_second_events\": %.0f, \"cpu_steal_ms\": %.0f, \"published\": "
            "{\"messages\": %" PRIu64 ", \"gaps\": %" PRIu64 ", \"missed_entries\": %" PRIu64
            ", \"unreadable\": %" PRIu64 "}, \"per_second_events\": [",
            key, bench_load_rate(r), r->elapsed_s, r->messages_sent, r->accepted, r->duplicate,
            r->rejected, r->refused_batches, r->lost_batches,
            ms(hist_quantile(&r->latency_us, 0.5)), ms(hist_quantile(&r->latency_us, 0.99)),
            ms(hist_quantile(&r->latency_us, 0.999)), ms(r->latency_us.max), sustained(r),
            r->steal_ms, r->published.messages, r->published.gaps, r->published.missed,
            r->published.bad);
    for (uint32_t s = 0; s < r->seconds_n; s++)
        fprintf(f, "%s%" PRIu64, s ? ", " : "", r->seconds[s].events);
    fprintf(f, "]}%s\n", last ? "" : ",");
}

/* Opens OUT/name for writing (its path in path). Returns the file, or NULL (message printed). */
static FILE *open_out(const bench_cfg *b, const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", b->out, name);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fprintf(stderr, "lt-bench: cannot write %s: %s\n", path, strerror(errno));
    return f;
}

static int write_json(const bench_cfg *b, const bench_results *r)
{
    char path[BENCH_PATH_MAX + 32];
    FILE *f = open_out(b, "bench-result.json", path, sizeof path);
    if (f == NULL)
        return -1;
    double closed = bench_load_rate(r->closed);
    fprintf(f,
            "{\n  \"config\": {\"tills\": %d, \"nodes_per_till\": %d, \"window\": %d, "
            "\"batch1_window\": %d, \"batch\": %d, \"subscribers\": %d, \"members\": %" PRIu32
            ", \"seconds\": %.1f, \"seed\": %" PRIu64 ", \"open_rate\": %.0f},\n",
            b->tills, b->nodes, b->window, b->batch1_window, b->batch, b->subscribers, b->members,
            b->seconds, b->seed, r->open_rate);
    json_run(f, "population", r->population, false);
    json_run(f, "closed_batched", r->closed, false);
    json_run(f, "closed_single", r->batch1, false);
    json_run(f, "open_batched", r->open, false);
    fprintf(f,
            "  \"ceilings\": {\"zmq_batch_msg_per_s\": %.0f, \"zmq_batch_msg_bytes\": %zu, "
            "\"zmq_single_msg_per_s\": %.0f, \"zmq_single_msg_bytes\": %zu, "
            "\"lmdb_append_per_s\": %.0f, \"lmdb_record_bytes\": %zu, "
            "\"fresh_memory_bytes\": %zu, \"fresh_page_first_us\": %.3f, "
            "\"fresh_page_again_us\": %.3f},\n",
            zmq_rate(&r->zmq_batch), r->zmq_batch.message_bytes, zmq_rate(&r->zmq_one),
            r->zmq_one.message_bytes, lmdb_rate(&r->lmdb), r->lmdb.record_bytes, r->fresh.bytes,
            r->fresh.first_us, r->fresh.again_us);
    fprintf(f,
            "  \"ratios\": {\"of_zmq_ceiling\": %.4f, \"of_lmdb_ceiling\": %.4f, "
            "\"over_postgresql\": %.2f},\n",
            ratio(closed, zmq_rate(&r->zmq_batch) * b->batch), ratio(closed, lmdb_rate(&r->lmdb)),
            ratio(closed, pg_rate(r)));
    fprintf(f,
            "  \"postgresql\": {\"status\": \"%s\", \"events_per_s\": %.0f, \"version\": \"%s\", "
            "\"p99_ms\": %.3f},\n",
            r->pg_rc == 0    ? "measured"
            : r->pg_rc == 1  ? "skipped"
            : r->pg_rc == -1 ? "failed"
                             : "not run",
            pg_rate(r), r->pg_rc == 0 ? r->pg->version : "",
            r->pg_rc == 0 ? ms(hist_quantile(&r->pg->latency_us, 0.99)) : 0.0);
    fprintf(f,
            "  \"daemon\": {\"entries\": %" PRIu64 ", \"members\": %" PRIu64
            ", \"rss_anon_bytes\": %ld, \"ledger_used_bytes\": %" PRIu64
            ", \"ledger_bytes_per_entry\": %.1f},\n",
            r->daemon_seq, r->daemon_members, r->daemon_rss_anon_kib * 1024, r->ledger_used_bytes,
            r->ledger_entries ? (double)r->ledger_used_bytes / (double)r->ledger_entries : 0);
    fprintf(f,
            "  \"replay\": {\"entries\": %" PRIu64
            ", \"elapsed_s\": %.3f, \"entries_per_s\": %.0f},\n",
            r->replay.entries, r->replay.elapsed_s, r->replay.rate);
    fprintf(f,
            "  \"memory\": {\"members\": %" PRIu64 ", \"bytes\": %" PRIu64
            ", \"bytes_per_member\": %.1f},\n",
            r->mem.members, r->mem.bytes, mem_per_member(r));
    fprintf(f, "  \"total_s\": %.1f\n}\n", r->total_s);
    return fclose(f) == 0 ? 0 : -1;
}

/* timeline.dat: one gnuplot data block per run (separated by two blank lines), each line
 * "second-of-the-session events/s p99-ms", the runs one after another on one time axis. */
static int write_timeline(const bench_cfg *b, const bench_results *r)
{
    char path[BENCH_PATH_MAX + 32];
    FILE *f = open_out(b, "timeline.dat", path, sizeof path);
    if (f == NULL)
        return -1;
    const load_result *runs[] = {r->population, r->closed, r->batch1, r->open};
    const char *names[] = {"enrol population", "closed loop, batched", "closed loop, 1/message",
                           "open loop, batched"};
    uint32_t t = 0;
    for (size_t i = 0; i < LT_ARRAY_LEN(runs); i++) {
        fprintf(f, "%s# %s\n", i ? "\n\n" : "", names[i]);
        if (runs[i]->seconds_n == 0)
            fprintf(f, "%u NaN NaN\n", t); /* an empty block keeps the block numbers */
        for (uint32_t s = 0; s < runs[i]->seconds_n; s++) {
            const load_second *ls = &runs[i]->seconds[s];
            fprintf(f, "%u %" PRIu64 " %.3f\n", t + s, ls->events,
                    ls->latency_us.n ? ms(hist_quantile(&ls->latency_us, 0.99)) : 0.0 / 0.0);
        }
        t += runs[i]->seconds_n + 2;
    }
    return fclose(f) == 0 ? 0 : -1;
}

static int write_plot(const bench_cfg *b)
{
    char path[BENCH_PATH_MAX + 32];
    FILE *f = open_out(b, "timeline.gp", path, sizeof path);
    if (f == NULL)
        return -1;
    fprintf(f,
            "# written by lt-bench: gnuplot %s/timeline.gp -> timeline.png\n"
            "set terminal pngcairo size 1200,800 noenhanced\n"
            "set output '%s/timeline.png'\n"
            "set multiplot layout 2,1 title 'loyaltyd: throughput and ack latency, per second'\n"
            "set grid\n"
            "set key outside right\n"
            "set ylabel 'events/s acknowledged'\n"
            "array T[4] = ['enrol population', 'closed loop, batched', "
            "'closed loop, 1 per message', 'open loop, batched']\n"
            "set format y '%%.0s%%c'\n"
            "plot for [i=1:4] '%s/timeline.dat' index (i-1) using 1:2 with lines lw 2 "
            "title T[i]\n"
            "set ylabel 'p99 ack latency, ms'\n"
            "set xlabel 'seconds (runs one after another)'\n"
            "set logscale y\n"
            "set format y '%%g'\n"
            "plot for [i=1:4] '%s/timeline.dat' index (i-1) using 1:3 with linespoints pt 7 "
            "ps 0.4 title T[i]\n"
            "unset multiplot\n",
            b->out, b->out, b->out, b->out);
    if (fclose(f) != 0)
        return -1;
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr,
                "lt-bench: gnuplot is not installed: no %s/timeline.png "
                "(ops/install-deps.sh installs gnuplot-nox)\n",
                b->out);
        return 1;
    }
    char cmd[BENCH_PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "gnuplot '%s'", path);
    int st = system(cmd);
    if (st != 0) {
        fprintf(stderr, "lt-bench: '%s' failed (status %d)\n", cmd, st);
        return -1;
    }
    return 0;
}

int bench_report_files(const bench_cfg *b, const bench_results *r)
{
    int rc = write_json(b, r);
    rc |= write_timeline(b, r);
    int plot = write_plot(b);
    if (rc == 0 && plot >= 0)
        fprintf(stderr, "lt-bench: wrote %s/bench-result.json, %s/timeline.dat%s%s%s\n", b->out,
                b->out, plot == 0 ? ", " : "", plot == 0 ? b->out : "",
                plot == 0 ? "/timeline.png" : "");
    return rc < 0 || plot < 0 ? -1 : 0;
}
