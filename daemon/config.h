/* config.h: loyaltyd's configuration: built-in defaults, overridden by a YAML file.
 * Every key is documented in docs/configuration.md. */
#ifndef LT_CONFIG_H
#define LT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_PATH_MAX 512

typedef struct {
    char data_dir[CONFIG_PATH_MAX];
    char ingest_endpoint[CONFIG_PATH_MAX];
    char publish_endpoint[CONFIG_PATH_MAX];
    char query_endpoint[CONFIG_PATH_MAX];
    char rules_file[CONFIG_PATH_MAX]; /* "" = built-in default rules */
    char metrics_listen[64];          /* "HOST:PORT" of the Prometheus endpoint; "" = off */
    char log_level[16];
    char curve_secret_key_file[CONFIG_PATH_MAX]; /* "" = no CURVE */
    char curve_allowlist_file[CONFIG_PATH_MAX];
    int64_t curve_publish;          /* 1: subscribers need an allowlisted key too */
    int64_t curve_query;            /* 1: the query / catch-up endpoint too */
    int64_t allow_insecure_bind;    /* 1: allow a non-loopback endpoint without CURVE */
    int64_t map_size_mb;            /* LMDB map size */
    int64_t batch_events_max;       /* events per group commit */
    int64_t batches_max;            /* batches in the pipeline (queue depth) */
    int64_t checkpoint_interval_ms; /* how often member state is checkpointed */
    int64_t checkpoint_chunk;       /* checkpoint records written (and moved) per commit */
    int64_t index_flush_ms;    /* committed event ids wait at most this long for the dedup index */
    int64_t future_skew_s;     /* occurred_at may be this far ahead of the daemon's clock */
    int64_t past_age_days;     /* and this far behind */
    int64_t ingest_queue_max;  /* ZeroMQ receive high-water mark, messages */
    int64_t heartbeat_ms;      /* idle heartbeat interval */
    int64_t test_clock;        /* 1: queries may set the daemon's clock (tests only) */
    int64_t sweep_interval_ms; /* how often time-driven entries are swept for */
    int64_t sweep_utc_offset_min; /* store offset for a member with no event yet */
    int64_t rejects_max;          /* dead letters kept (oldest trimmed); 0 = none kept */
    int64_t io_thread_batch;      /* 1: ZeroMQ's I/O thread under SCHED_BATCH */
} config;

/* Fills c with the built-in defaults. */
void config_defaults(config *c);
/* Overrides c from a YAML mapping file. Returns 0, or -1 with "FILE:LINE: message" in err. */
int config_load(config *c, const char *path, char *err, size_t err_len);
/* Checks cross-field constraints. Returns 0, or -1 with err. */
int config_check(const config *c, char *err, size_t err_len);
/* Prints the effective configuration as YAML. */
void config_print(const config *c, FILE *f);

#endif
