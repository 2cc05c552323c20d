/* pg.h: lt-bench's PostgreSQL baseline: the same workload (workload.h) stored by a PostgreSQL
 * server that the bench starts itself on a private Unix socket, so loyaltyd's numbers come with
 * the number a straightforward SQL design reaches on the same machine in the same run.
 */
#ifndef LT_BENCH_PG_H
#define LT_BENCH_PG_H

#include <stdbool.h>
#include <stdint.h>

#include "bench.h"

#define PG_CLIENTS_MAX BENCH_TILLS_MAX

typedef struct {
    int clients;      /* connections, one thread and one node id each (like the tills), 1..64 */
    int batch;        /* events per transaction (loyaltyd's events per message), 1..1000 */
    double seconds;   /* measuring time, > 0 */
    uint32_t members; /* population, >= 1 (Zipf etc. via wl_model) */
    uint64_t seed;    /* client i uses the rng seed of loyaltyd's till i (node id i + 1) */
    bool keep;        /* keep the temp dir (data dir, server log) */
    bool verbose;     /* print each set-up step and the server's log path */
} pg_opts;

typedef struct {
    double elapsed_s;  /* first transaction sent to last one returned */
    uint64_t events;   /* committed: events of transactions whose commit returned success */
    uint64_t batches;  /* committed transactions */
    uint64_t inserted; /* ledger rows inserted by them (events less ON CONFLICT duplicates) */
    uint64_t retries;  /* transactions re-run after a deadlock or serialization failure */
    uint64_t sales, redemptions, returns, enrolments; /* of the committed events */
    hist latency_us;      /* per transaction: statement sent to its commit returned, retries in */
    char version[64];     /* server_version */
    char skipped[256];    /* why it did not run, when bench_pg_run returns 1 */
    double setup_s;       /* initdb + start + population (not part of the measurement) */
    double teardown_s;    /* checks after the run + stop + removal of the temp dir */
    bool verified;        /* the checks after the run passed (a failure is also printed) */
    uint64_t ledger_rows; /* count(*) of the ledger after the run */
} pg_result;

/* Finds PostgreSQL's server binaries (/usr/lib/postgresql/N/bin, the newest N), creates a temp
 * dir under $TMPDIR or /tmp, runs initdb and the server there (as the `postgres` user when run
 * as root, since PostgreSQL refuses root), loads the population, runs `clients` connections for
 * `seconds`, checks the tables against what was committed, stops the server and removes the dir
 * (unless keep), on errors too.
 * Returns 0 measured (*r filled), 1 skipped (no PostgreSQL found; the reason in r->skipped), or
 * -1 error (message on stderr; *r holds what was measured before it). The caller owns *r: it
 * holds a histogram, allocate it on the heap rather than on a small stack. */
int bench_pg_run(const pg_opts *o, pg_result *r);

/* events committed per second, 0 if nothing was measured */
double bench_pg_rate(const pg_result *r);

#endif
