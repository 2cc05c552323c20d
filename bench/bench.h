/* bench.h: lt-bench's internal interface: the latency histogram, the daemon it starts, the load
 * run (till threads) and the raw LMDB ceiling.
 */
#ifndef LT_BENCH_H
#define LT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "lt.h"

#define BENCH_ENDPOINT_MAX 64
#define BENCH_PATH_MAX 512
#define BENCH_TILLS_MAX 64
#define BENCH_NODES_MAX 4096 /* node ids per till thread */
#define BENCH_WINDOW_MAX 512 /* messages in flight per till (a slot: 40 B + its batch's past) */

/* ---- histogram (hist.c): log-linear, 32 sub-buckets per power of two (~3% resolution) ---- */

#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64 * HIST_SUB)

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t n;
    uint64_t max;
} hist;

void hist_add(hist *h, uint64_t v);
void hist_merge(hist *into, const hist *from);
/* Value at quantile q (0..1): the upper bound of the bucket holding it; 0 when empty. */
uint64_t hist_quantile(const hist *h, double q);

/* ---- the daemon under test (daemon.c) ---- */

typedef struct {
    pid_t pid;
    char dir[BENCH_PATH_MAX]; /* temp dir: config, data, log */
    char log[BENCH_PATH_MAX + 32];
    char ingest[BENCH_ENDPOINT_MAX];
    char query[BENCH_ENDPOINT_MAX];
    char pub[BENCH_ENDPOINT_MAX];
} bench_daemon;

/* Creates a temp dir, writes a config with free loopback ports, starts `loyaltyd --config` and
 * waits (up to wait_ms) until it answers a status query. Returns 0, or -1 (message printed;
 * the log's tail is shown if the daemon died). */
int bench_daemon_start(bench_daemon *d, const char *loyaltyd_path, int wait_ms);
/* Sends SIGTERM, waits up to wait_ms, then SIGKILL. Returns the exit status, -1 if killed. */
int bench_daemon_stop(bench_daemon *d, int wait_ms);
/* Removes the temp dir. */
void bench_daemon_cleanup(bench_daemon *d);
/* Asks the query endpoint for status. Returns 0 and the committed seq, or -1. */
int bench_status(const char *query_endpoint, int timeout_ms, uint64_t *seq, uint64_t *members);

/* Where temp dirs go: $TMPDIR, or /tmp. */
const char *bench_tmp_dir(void);
/* Removes a directory tree (the temp dirs). Returns 0 or -1. */
int bench_rm_tree(const char *dir);

/* ---- subscribers (sub.c): what the daemon publishes, received and checked ---- */

#define BENCH_SUBS_MAX 8

typedef struct bench_subs bench_subs;

typedef struct {
    uint64_t messages; /* entries' messages received (heartbeats not counted) */
    uint64_t gaps;     /* messages that did not follow the one before (sub_check.h) */
    uint64_t missed;   /* entries with a message skipped: lost at a high-water mark */
    uint64_t bad;      /* messages that did not parse */
} bench_sub_counts;

/* Starts n subscribers (0: none, *out NULL) on the publish endpoint, each a SUB socket on every
 * topic in a thread of its own. Returns 0, or -1 (message printed). */
int bench_subs_start(bench_subs **out, const char *endpoint, int n);
/* The counts so far, summed over the subscribers (all zero for NULL). */
void bench_subs_read(bench_subs *b, bench_sub_counts *c);
/* Waits up to timeout_ms until every subscriber has received a message of entry seq or later
 * (the daemon's last committed entry: what a run published has then arrived, unless it was
 * dropped). Returns whether they all had. */
bool bench_subs_wait(bench_subs *b, uint64_t seq, int timeout_ms);
/* Stops the threads, closes the sockets and frees. Safe on NULL. */
void bench_subs_stop(bench_subs **b);

/* ---- the load run (load.c) ---- */

#define BENCH_TIMELINE_MAX 3600 /* seconds of per-second throughput and latency */

typedef enum {
    LOAD_CLOSED = 0,     /* keep `window` messages in flight per till: the maximum rate */
    LOAD_OPEN = 1,       /* send at a fixed offered rate, latency from each intended send time */
    LOAD_POPULATION = 2, /* enrol members 0..members-1 once, closed-loop */
} load_mode;

typedef struct {
    const char *ingest;
    load_mode mode;
    int tills;          /* threads, one DEALER each */
    int nodes;          /* node ids per till thread (0 or 1: one), taken in turn per message */
    int window;         /* messages in flight per till (open loop: at most) */
    int batch;          /* events per message */
    double seconds;     /* sending time; then in-flight messages drain */
    double rate;        /* LOAD_OPEN: offered events/s, all tills together */
    uint32_t members;   /* Zipf population */
    uint64_t node_base; /* node ids node_base + 1 .. node_base + tills, each + (j << 32) for
                         * its till's node j = 1 .. nodes - 1 */
    uint64_t seed;
} load_opts;

/* One second of a run: events acknowledged in it and their latency. */
typedef struct {
    uint64_t events;
    hist latency_us;
} load_second;

typedef struct {
    double elapsed_s; /* first send to last ack */
    uint64_t events_sent, messages_sent;
    uint64_t batches_acked;
    uint64_t accepted, duplicate, rejected;
    uint64_t refused_batches; /* whole message refused (OVERLOADED, ...) */
    uint64_t lost_batches;    /* no reply before the drain deadline */
    uint64_t sales, redemptions, returns, enrolments;
    uint64_t reasons[LT_R__COUNT];
    hist latency_us;            /* per message: (intended) send to ack */
    bench_sub_counts published; /* what the subscribers received during the run, summed */
    double steal_ms; /* CPU time the hypervisor gave this machine's CPUs to others during the
                      * run (/proc/stat "steal", all CPUs), or -1: a VM's stalls show here */
    uint32_t seconds_n;
    load_second *seconds; /* timeline, seconds_n entries; free with bench_load_free */
} load_result;

/* Runs the load against a daemon. Returns 0, or -1 if the tills could not start or failed.
 * The caller owns *r (it holds a histogram: allocate it, not on a small stack) and frees its
 * timeline with bench_load_free(). */
int bench_load_run(const load_opts *o, load_result *r);
void bench_load_free(load_result *r);
double bench_load_rate(const load_result *r); /* acknowledged events per second */
/* The machine's CPU steal so far, in ms (all CPUs, /proc/stat), or -1 if unknown. */
double bench_steal_ms(void);

/* ---- the raw ceiling (raw.c) ---- */

typedef struct {
    uint64_t records;
    size_t record_bytes;
    double elapsed_s;
} raw_result;

/* Appends `records` encoded sale entries of ~200 bytes to a fresh ledger in dir, per_commit per
 * ledger_commit() (durable, like the daemon's). Returns 0 or -1 (message printed). */
int bench_raw_run(const char *dir, uint64_t records, size_t per_commit, raw_result *r);

/* ---- the transport ceiling (zmqraw.c) ---- */

typedef struct {
    uint64_t messages;
    size_t message_bytes;
    double elapsed_s;
} zmq_raw_result;

/* Sends msg (len bytes) DEALER -> ROUTER over tcp loopback for `seconds`. Returns 0 or -1. */
int bench_zmq_run(const void *msg, size_t len, double seconds, zmq_raw_result *r);

/* ---- fresh memory (fresh.c) ---- */

typedef struct {
    size_t bytes;    /* 0: not measured */
    double first_us; /* per 4 KiB page, the first write to a fresh mapping */
    double again_us; /* the same at once after unmapping it */
} fresh_result;

/* Writes a byte into each page of a fresh anonymous mapping of `bytes`, twice. Returns 0 or
 * -1 (message printed). */
int bench_fresh_run(size_t bytes, fresh_result *r);
/* MemAvailable from /proc/meminfo in MiB, or 0 if unknown. */
size_t bench_mem_available_mib(void);

/* ---- RAM per member (mem.c) ---- */

typedef struct {
    uint64_t members;
    uint64_t bytes; /* growth of the heap in use (mallinfo2) while the state was built */
    double elapsed_s;
} mem_result;

/* Builds a member state of `members` members, one lot each, through state_apply(). Returns 0
 * or -1 (message printed). */
int bench_mem_run(uint32_t members, mem_result *r);
/* Anonymous resident memory of a process in KiB (RssAnon in /proc/PID/status), or -1. */
long bench_rss_anon_kib(pid_t pid);

/* Set (to the signal number) by SIGINT, SIGTERM or SIGHUP: every run stops early, the daemon
 * and PostgreSQL are stopped and their temp directories removed, and lt-bench exits with 130
 * without writing results (main.c). */
extern volatile sig_atomic_t bench_stop;

/* Monotonic seconds / nanoseconds. */
double bench_now_s(void);
uint64_t bench_now_ns(void);

#endif
