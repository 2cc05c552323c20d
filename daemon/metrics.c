/* metrics.c: see metrics.h. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "catchup.h"
#include "ledger.h"
#include "metrics.h"

#define RENDER_BYTES_MAX (256 * 1024)

static const char *const g_kinds[METRICS_KINDS] = {"unknown", "sale",       "enrol",  "card_link",
                                                   "gift",    "adjustment", "return", "merge"};
static const char *const g_outcomes[METRIC_OUTCOMES] = {"accepted", "duplicate", "rejected"};

static void hist_init(histogram *h, const char *name, const char *help, int n, const double *bounds)
{
    LT_ASSERT(n <= HIST_BUCKETS_MAX);
    h->name = name;
    h->help = help;
    h->n = n;
    memcpy(h->bounds, bounds, sizeof(double) * (size_t)n);
}

int metrics_init(metrics *m, ledger *l)
{
    memset(m, 0, sizeof *m);
    static const double batch[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
    static const double secs[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                  0.01,   0.025,   0.05,   0.1,   0.25,   1};
    hist_init(&m->commit_batch, "loyaltyd_commit_entries", "Ledger entries per group commit.",
              (int)LT_ARRAY_LEN(batch), batch);
    hist_init(&m->commit_seconds, "loyaltyd_commit_seconds",
              "Time of one durable LMDB commit (write and fsync).", (int)LT_ARRAY_LEN(secs), secs);
    hist_init(&m->ack_seconds, "loyaltyd_ack_seconds",
              "Time from a till message's arrival to its acknowledgement.", (int)LT_ARRAY_LEN(secs),
              secs);
    m->ledger = l;
    uv_mutex_t *mu = malloc(sizeof *mu);
    if (mu == NULL || uv_mutex_init(mu) != 0) {
        free(mu);
        return -1;
    }
    m->mu = mu;
    return 0;
}

void metrics_observe(histogram *h, double v)
{
    int i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_micro, (uint64_t)(v * 1e6), memory_order_relaxed);
}

void metrics_set_rules_version(metrics *m, const char *v)
{
    uv_mutex_lock(m->mu);
    snprintf(m->rules_version, sizeof m->rules_version, "%s", v);
    uv_mutex_unlock(m->mu);
}

typedef struct {
    char *buf;
    size_t cap, len;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...)
{
    if (o->len >= o->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len;
}

static uint64_t rd(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void counter(out *o, const char *name, const char *help, uint64_t v)
{
    put(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
        (unsigned long long)v);
}

static void gauge(out *o, const char *name, const char *help, uint64_t v)
{
    put(o, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
        (unsigned long long)v);
}

static void hist(out *o, histogram *h)
{
    put(o, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
    uint64_t cum = 0;
    for (int i = 0; i <= h->n; i++) {
        cum += rd(&h->counts[i]);
        if (i < h->n)
            put(o, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->bounds[i], (unsigned long long)cum);
        else
            put(o, "%s_bucket{le=\"+Inf\"} %llu\n", h->name, (unsigned long long)cum);
    }
    put(o, "%s_sum %.6f\n%s_count %llu\n", h->name, (double)rd(&h->sum_micro) / 1e6, h->name,
        (unsigned long long)cum);
}

size_t metrics_render(metrics *m, char *buf, size_t cap)
{
    out o = {buf, cap, 0};
    char rv[LT_TEXT_MAX];
    uv_mutex_lock(m->mu);
    snprintf(rv, sizeof rv, "%s", m->rules_version);
    uv_mutex_unlock(m->mu);
    put(&o,
        "# HELP loyaltyd_build_info Build and rules version in force.\n"
        "# TYPE loyaltyd_build_info gauge\n"
        "loyaltyd_build_info{version=\"%s\",rules_version=\"%s\"} 1\n",
        LT_VERSION, rv);
    put(&o, "# HELP loyaltyd_events_total Events by type and outcome.\n"
            "# TYPE loyaltyd_events_total counter\n");
    for (int k = 0; k < METRICS_KINDS; k++) {
        for (int r = 0; r < METRIC_OUTCOMES; r++) {
            uint64_t v = rd(&m->events[k][r]);
            if (v > 0 || k == 1)
                put(&o, "loyaltyd_events_total{type=\"%s\",outcome=\"%s\"} %llu\n", g_kinds[k],
                    g_outcomes[r], (unsigned long long)v);
        }
    }
    put(&o, "# HELP loyaltyd_rejects_total Rejected events and refused messages by reason.\n"
            "# TYPE loyaltyd_rejects_total counter\n");
    for (int r = 1; r < LT_R__COUNT; r++)
        put(&o, "loyaltyd_rejects_total{reason=\"%s\"} %llu\n", lt_reason_name(r),
            (unsigned long long)rd(&m->rejects[r]));
    counter(&o, "loyaltyd_messages_total", "Till messages received.", rd(&m->messages));
    counter(&o, "loyaltyd_messages_refused_total",
            "Till messages refused whole (undecodable, too large, ...).", rd(&m->messages_refused));
    counter(&o, "loyaltyd_commits_total", "Durable group commits.", rd(&m->commits));
    counter(&o, "loyaltyd_commit_failures_total", "Commits that failed.", rd(&m->commit_failures));
    counter(&o, "loyaltyd_checkpoints_total", "State checkpoints written (DATA_DIR/state).",
            rd(&m->checkpoints));
    counter(&o, "loyaltyd_checkpoint_failures_total",
            "Checkpoints that failed to write (the next one writes every member).",
            rd(&m->checkpoint_failures));
    counter(&o, "loyaltyd_checkpoint_records_unordered_total",
            "Checkpoint records not in key order, so put into the middle of state/'s log "
            "instead of appended (more pages written; 0 unless the members could not be sorted).",
            rd(&m->checkpoint_unordered));
    counter(&o, "loyaltyd_index_flush_failures_total",
            "Dedup index flushes that failed (their event ids stay in memory and are tried again).",
            rd(&m->index_flush_failures));
    hist(&o, &m->commit_batch);
    hist(&o, &m->commit_seconds);
    hist(&o, &m->ack_seconds);
    gauge(&o, "loyaltyd_ledger_last_seq", "Last durable ledger sequence.", rd(&m->last_seq));
    gauge(&o, "loyaltyd_checkpoint_seq", "Ledger sequence of the last checkpoint.",
          rd(&m->checkpoint_seq));
    gauge(&o, "loyaltyd_members", "Members in the state.", rd(&m->members));
    gauge(&o, "loyaltyd_subscribers", "Subscribers connected to the publisher.",
          rd(&m->subscribers));
    gauge(&o, "loyaltyd_ingest_paused", "1 while ingest is paused by backpressure.",
          rd(&m->ingest_paused));
    counter(&o, "loyaltyd_ingest_pauses_total",
            "Times ingest was paused by backpressure (every batch in the pipeline).",
            rd(&m->ingest_pauses));
    gauge(&o, "loyaltyd_storage_unavailable",
          "1 while the daemon recovers from a failed commit (map or disk full, I/O error).",
          rd(&m->storage_unavailable));
    counter(&o, "loyaltyd_sweep_passes_total", "Sweep passes over all members completed.",
            rd(&m->sweep_passes));
    gauge(&o, "loyaltyd_sweep_running", "1 while a sweep pass runs.", rd(&m->sweep_running));
    gauge(&o, "loyaltyd_sweep_members_visited", "Members visited by the current sweep pass.",
          rd(&m->sweep_position));
    counter(&o, "loyaltyd_due_entries_total",
            "Expiry, tier-period and notice entries written (R19-R21, R24, R28).",
            rd(&m->due_entries));
    counter(&o, "loyaltyd_rejects_unkept_total",
            "Rejections not kept in the dead-letter store (no batch free, or no memory).",
            rd(&m->rejects_unkept));
    counter(&o, "loyaltyd_published_total", "Messages published.", rd(&m->pub_messages));
    counter(
        &o, "loyaltyd_publish_dropped_total",
        "Messages the PUB socket refused. A slow subscriber's own losses at its high-water mark "
        "are silent by ZeroMQ's design; subscribers detect and repair them by seq/part and "
        "catch-up (docs/subscribers.md).",
        rd(&m->pub_dropped));
    counter(&o, "loyaltyd_query_requests_total", "Requests on the query endpoint.",
            rd(&m->query_requests));
    counter(&o, "loyaltyd_rules_reloads_total", "Successful rules reloads (SIGHUP).",
            rd(&m->rules_reloads));
    counter(&o, "loyaltyd_rules_reload_failures_total", "Refused rules reloads (bad file).",
            rd(&m->rules_reload_failures));
    if (m->catchup != NULL) {
        catchup_stats cs;
        catchup_get_stats(m->catchup, &cs);
        counter(&o, "loyaltyd_catchup_requests_total", "Catch-up requests served.", cs.requests);
        counter(&o, "loyaltyd_catchup_entries_total", "Ledger entries replayed by catch-up.",
                cs.entries);
        counter(&o, "loyaltyd_catchup_errors_total", "Catch-up requests that failed.", cs.errors);
    }
    ledger_stats st;
    if (m->ledger != NULL && ledger_stat(m->ledger, &st) == 0) {
        gauge(&o, "loyaltyd_ledger_entries", "Entries in the ledger.", st.entries);
        gauge(&o, "loyaltyd_ledger_events_indexed", "Event ids in the dedup index.", st.events);
        gauge(&o, "loyaltyd_lmdb_map_bytes", "LMDB map size.", st.map_bytes);
        gauge(&o, "loyaltyd_lmdb_used_bytes", "LMDB pages in use, in bytes.", st.used_bytes);
    }
    return o.len;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **con_cls)
{
    (void)version, (void)upload, (void)upload_len, (void)con_cls;
    metrics *m = cls;
    struct MHD_Response *r;
    unsigned status = MHD_HTTP_OK;
    if (strcmp(method, "GET") != 0) {
        static const char msg[] = "only GET\n";
        r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (strcmp(url, "/metrics") != 0) {
        static const char msg[] = "not found: try /metrics\n";
        r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_FOUND;
    } else {
        char *buf = malloc(RENDER_BYTES_MAX);
        if (buf == NULL)
            return MHD_NO;
        size_t n = metrics_render(m, buf, RENDER_BYTES_MAX);
        r = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    }
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

int metrics_listen(metrics *m, const char *listen, char *err, size_t err_len)
{
    if (listen == NULL || listen[0] == '\0')
        return 0;
    char host[64];
    const char *colon = strrchr(listen, ':');
    long port = colon != NULL ? strtol(colon + 1, NULL, 10) : 0;
    size_t hlen = colon != NULL ? (size_t)(colon - listen) : 0;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (colon == NULL || hlen == 0 || hlen >= sizeof host || port <= 0 || port > 65535) {
        snprintf(err, err_len, "metrics_listen \"%s\" is not HOST:PORT", listen);
        return -1;
    }
    memcpy(host, listen, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(err, err_len, "metrics_listen host \"%s\" is not an IPv4 address", host);
        return -1;
    }
    sa.sin_port = htons((uint16_t)port);
    m->http =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL, on_request, m,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
                         64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (m->http == NULL) {
        snprintf(err, err_len, "cannot serve metrics on %s (port in use?)", listen);
        return -1;
    }
    return 0;
}

void metrics_stop(metrics *m)
{
    if (m->http != NULL)
        MHD_stop_daemon(m->http);
    m->http = NULL;
    if (m->mu != NULL) {
        uv_mutex_destroy(m->mu);
        free(m->mu);
        m->mu = NULL;
    }
}
