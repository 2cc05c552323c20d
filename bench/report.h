/* report.h: lt-bench's configuration, results, and how they are reported (table, JSON,
 * timeline and plot). */
#ifndef LT_BENCH_REPORT_H
#define LT_BENCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bench.h"
#include "pg.h"

typedef struct {
    double seconds, batch1_seconds, open_seconds, open_rate, pg_seconds;
    int tills, window, batch1_window, batch;
    int subscribers; /* --subscribers: SUB sockets reading every topic during the runs */
    int nodes;       /* node ids per till (--nodes) */
    uint32_t members, mem_members;
    size_t fresh_mib; /* the fresh-memory probe's mapping */
    bool replay, keep;
    uint64_t seed;
    char out[BENCH_PATH_MAX];
    char daemon_path[BENCH_PATH_MAX];
    char ctl_path[BENCH_PATH_MAX];
} bench_cfg;

typedef struct {
    uint64_t entries;
    double elapsed_s;
    double rate;
} replay_result;

typedef struct {
    zmq_raw_result zmq_batch, zmq_one;
    raw_result lmdb;
    fresh_result fresh;
    mem_result mem;
    load_result *population, *closed, *batch1, *open; /* heap: they hold histograms */
    double open_rate;
    uint64_t daemon_seq, daemon_members;
    long daemon_rss_anon_kib;
    uint64_t ledger_used_bytes, ledger_entries;
    replay_result replay;
    pg_result *pg;
    int pg_rc; /* 0 measured, 1 skipped, -1 failed; not run when pg_seconds is 0 */
    double total_s;
} bench_results;

int bench_results_alloc(bench_results *r);
void bench_results_free(bench_results *r);

/* Runs `ctl --data data_dir replay --json` and reads its rate. Returns 0 or -1. */
int bench_replay(const char *ctl, const char *data_dir, replay_result *r);

/* The table: every run, the ceilings and ratios, and each target of the issue met or missed. */
void bench_report_print(const bench_cfg *b, const bench_results *r, FILE *out);
/* OUT/bench-result.json, OUT/timeline.dat, OUT/timeline.gp and OUT/timeline.png (if gnuplot
 * is installed). Returns 0 or -1. */
int bench_report_files(const bench_cfg *b, const bench_results *r);

#endif
