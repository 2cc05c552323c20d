/* metrics.h: Prometheus metrics over HTTP (libmicrohttpd), GET /metrics.
 *
 * Counters are C11 atomics updated with relaxed ordering from whichever thread sees the event;
 * the HTTP server runs on its own thread and only reads them. Nothing here is on the hot path
 * beyond an atomic add. */
#ifndef LT_METRICS_H
#define LT_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "lt.h"
#include "model.h"

#define METRICS_KINDS 8 /* lt_event_kind 0..7 */
enum { METRIC_ACCEPTED = 0, METRIC_DUPLICATE = 1, METRIC_REJECTED = 2, METRIC_OUTCOMES = 3 };

#define HIST_BUCKETS_MAX 16
typedef struct {
    const char *name, *help;
    int n;
    double bounds[HIST_BUCKETS_MAX];
    _Atomic uint64_t counts[HIST_BUCKETS_MAX + 1]; /* last = +Inf */
    _Atomic uint64_t sum_micro;                    /* sum of observations x 1e6 */
} histogram;

typedef struct ledger ledger;

typedef struct metrics {
    _Atomic uint64_t events[METRICS_KINDS][METRIC_OUTCOMES];
    _Atomic uint64_t rejects[LT_R__COUNT];
    _Atomic uint64_t messages, messages_refused;
    _Atomic uint64_t commits, commit_failures, checkpoints, checkpoint_failures;
    _Atomic uint64_t checkpoint_unordered; /* ckstore_unordered() of state/, open since the start */
    _Atomic uint64_t index_flush_failures;
    _Atomic uint64_t last_seq, checkpoint_seq, members, cards_unused;
    _Atomic uint64_t pub_messages, pub_dropped, subscribers;
    _Atomic uint64_t query_requests, rules_reloads, rules_reload_failures;
    _Atomic uint64_t ingest_paused;       /* 1 while backpressure holds ingest */
    _Atomic uint64_t ingest_pauses;       /* times backpressure held ingest */
    _Atomic uint64_t storage_unavailable; /* 1 while a failed commit is being recovered */
    _Atomic uint64_t rejects_unkept;      /* rejections not kept as dead letters */
    _Atomic uint64_t sweep_passes;        /* sweep passes completed */
    _Atomic uint64_t sweep_position;      /* members visited in the current pass */
    _Atomic uint64_t sweep_running;       /* 1 while a pass runs */
    _Atomic uint64_t due_entries;         /* expiry, period-end and notice entries written */
    histogram commit_batch, commit_seconds, ack_seconds;
    ledger *ledger; /* for map use and sizes at scrape time */
    void *catchup;  /* catchup *, for its counters */
    char rules_version[LT_TEXT_MAX];
    void *mu; /* guards rules_version */
    void *http;
} metrics;

/* Initialises m. Returns 0 or -1. */
int metrics_init(metrics *m, ledger *l);
/* Starts the HTTP server on "HOST:PORT" (empty: no server). Returns 0, or -1 with err. */
int metrics_listen(metrics *m, const char *listen, char *err, size_t err_len);
void metrics_stop(metrics *m);

void metrics_observe(histogram *h, double v);
void metrics_set_rules_version(metrics *m, const char *v);
static inline void metrics_inc(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}
static inline void metrics_set(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

/* Renders the Prometheus text exposition into buf. Returns the length (truncated at cap). */
size_t metrics_render(metrics *m, char *buf, size_t cap);

#endif
