/* config.c: loads loyaltyd's YAML configuration (a flat mapping of scalars) over the defaults. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config.h"
#include "lt.h"

void config_defaults(config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->data_dir, sizeof c->data_dir, "var/data");
    snprintf(c->ingest_endpoint, sizeof c->ingest_endpoint, "tcp://127.0.0.1:7700");
    snprintf(c->publish_endpoint, sizeof c->publish_endpoint, "tcp://127.0.0.1:7701");
    snprintf(c->query_endpoint, sizeof c->query_endpoint, "tcp://127.0.0.1:7702");
    snprintf(c->log_level, sizeof c->log_level, "info");
    snprintf(c->metrics_listen, sizeof c->metrics_listen, "127.0.0.1:9464");
    c->map_size_mb = 64 * 1024;
    c->batch_events_max = 4000;
    c->batches_max = 4;
    c->checkpoint_interval_ms = 10000;
    c->checkpoint_chunk = 4096;
    c->index_flush_ms = 200;
    c->future_skew_s = 86400;
    c->past_age_days = 3650;
    c->ingest_queue_max = 10000;
    c->heartbeat_ms = 1000;
    c->rejects_max = 1000000;
    c->sweep_interval_ms = 60000;
    c->sweep_utc_offset_min = 480;
    c->curve_publish = 1;
    c->curve_query = 1;
    c->io_thread_batch = 1;
}

typedef struct {
    const char *key;
    size_t str_off, str_len; /* string field, or */
    size_t int_off;          /* int64 field */
    int64_t lo, hi;
} config_key;

#define STR(k)                                                                                     \
    {                                                                                              \
#k, offsetof(config, k), sizeof(((config *)0)->k), 0, 0, 0                                 \
    }
#define INT(k, lo, hi)                                                                             \
    {                                                                                              \
#k, 0, 0, offsetof(config, k), lo, hi                                                      \
    }

static const config_key g_keys[] = {
    STR(data_dir),
    STR(ingest_endpoint),
    STR(publish_endpoint),
    STR(query_endpoint),
    STR(rules_file),
    STR(log_level),
    STR(metrics_listen),
    STR(curve_secret_key_file),
    STR(curve_allowlist_file),
    INT(map_size_mb, 16, 16 * 1024 * 1024),
    INT(batch_events_max, 1, 100000),
    INT(batches_max, 2, 64),
    INT(checkpoint_interval_ms, 100, 3600 * 1000),
    INT(checkpoint_chunk, 1, 1000000),
    INT(index_flush_ms, 1, 60000),
    INT(future_skew_s, 0, 365 * 86400),
    INT(past_age_days, 1, 100 * 365),
    INT(ingest_queue_max, 1, 10000000),
    INT(heartbeat_ms, 10, 3600 * 1000),
    INT(rejects_max, 0, 1000000000),
    INT(test_clock, 0, 1),
    INT(sweep_interval_ms, 100, 24 * 3600 * 1000),
    INT(sweep_utc_offset_min, -840, 840),
    INT(curve_publish, 0, 1),
    INT(curve_query, 0, 1),
    INT(allow_insecure_bind, 0, 1),
    INT(io_thread_batch, 0, 1),
};

static int set_key(config *c, const char *key, const char *val, char *err, size_t err_len,
                   const char *path, size_t line)
{
    for (size_t i = 0; i < LT_ARRAY_LEN(g_keys); i++) {
        const config_key *k = &g_keys[i];
        if (strcmp(k->key, key) != 0)
            continue;
        if (k->str_len > 0) {
            if (strlen(val) >= k->str_len) {
                snprintf(err, err_len, "%s:%zu: %s is longer than %zu bytes", path, line, key,
                         k->str_len - 1);
                return -1;
            }
            memcpy((char *)c + k->str_off, val, strlen(val) + 1);
            return 0;
        }
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno != 0 || end == val || *end != '\0' || v < k->lo || v > k->hi) {
            snprintf(err, err_len, "%s:%zu: %s must be an integer in %lld..%lld, not \"%s\"", path,
                     line, key, (long long)k->lo, (long long)k->hi, val);
            return -1;
        }
        *(int64_t *)((char *)c + k->int_off) = v;
        return 0;
    }
    snprintf(err, err_len, "%s:%zu: unknown key \"%s\"", path, line, key);
    return -1;
}

int config_load(config *c, const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    int rc = -1, depth = 0;
    char key[128] = "";
    bool have_key = false;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            snprintf(err, err_len, "%s:%zu: %s", path, p.problem_mark.line + 1,
                     p.problem != NULL ? p.problem : "YAML syntax error");
            break;
        }
        size_t line = ev.start_mark.line + 1;
        bool done = ev.type == YAML_STREAM_END_EVENT;
        bool bad = false;
        if (ev.type == YAML_MAPPING_START_EVENT) {
            if (++depth > 1) {
                snprintf(err, err_len, "%s:%zu: %s: nested values are not allowed", path, line,
                         key);
                bad = true;
            }
        } else if (ev.type == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (ev.type == YAML_SEQUENCE_START_EVENT) {
            snprintf(err, err_len, "%s:%zu: lists are not allowed here", path, line);
            bad = true;
        } else if (ev.type == YAML_SCALAR_EVENT) {
            const char *v = (const char *)ev.data.scalar.value;
            if (depth != 1) {
                snprintf(err, err_len, "%s:%zu: the file must be a mapping of keys", path, line);
                bad = true;
            } else if (!have_key) {
                snprintf(key, sizeof key, "%s", v);
                have_key = true;
            } else {
                bad = set_key(c, key, v, err, err_len, path, line) != 0;
                have_key = false;
            }
        }
        yaml_event_delete(&ev);
        if (bad)
            break;
        if (done) {
            rc = 0;
            break;
        }
    }
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}

int config_check(const config *c, char *err, size_t err_len)
{
    if (c->data_dir[0] == '\0') {
        snprintf(err, err_len, "data_dir must not be empty");
        return -1;
    }
    if (c->metrics_listen[0] != '\0') {
        const char *colon = strrchr(c->metrics_listen, ':');
        long port = colon != NULL ? strtol(colon + 1, NULL, 10) : 0;
        if (colon == NULL || colon == c->metrics_listen || port < 1 || port > 65535) {
            snprintf(err, err_len, "metrics_listen \"%s\" is not HOST:PORT (or \"\" for off)",
                     c->metrics_listen);
            return -1;
        }
    }
    if ((c->curve_secret_key_file[0] != '\0') != (c->curve_allowlist_file[0] != '\0')) {
        snprintf(err, err_len,
                 "curve_secret_key_file and curve_allowlist_file go together: "
                 "CURVE without an allowlist would admit anyone");
        return -1;
    }
    if (c->batch_events_max < 1) {
        snprintf(err, err_len, "batch_events_max must be at least 1");
        return -1;
    }
    return 0;
}

void config_print(const config *c, FILE *f)
{
    for (size_t i = 0; i < LT_ARRAY_LEN(g_keys); i++) {
        const config_key *k = &g_keys[i];
        if (k->str_len > 0)
            fprintf(f, "%s: \"%s\"\n", k->key, (const char *)c + k->str_off);
        else
            fprintf(f, "%s: %lld\n", k->key,
                    (long long)*(const int64_t *)((const char *)c + k->int_off));
    }
}
