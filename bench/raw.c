/* raw.c: the ceiling loyaltyd is measured against: appending the same number of ledger records
 * straight into LMDB through ledger_commit() (one durable transaction per chunk), with no
 * network, validation, rating or state. Only the commits are timed, not building the records.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "entry.h"
#include "ledger.h"

#define RAW_CHUNK_MAX 10000

/* A typical small sale's entry: four lines, one posting (about 200 bytes encoded). */
static void fake_entry(lt_entry *e, uint64_t seq)
{
    memset(e, 0, sizeof *e);
    e->seq = seq;
    e->event_kind = LT_EV_SALE;
    e->kind = LT_ENTRY_SALE;
    e->id.node_id = 999;
    e->id.event_id = seq;
    e->occurred_at = 1795000000 + (int64_t)seq;
    e->utc_offset_min = 480;
    snprintf(e->store_id, sizeof e->store_id, "S%02" PRIu64, seq % 20 + 1);
    snprintf(e->member_id, sizeof e->member_id, "139%08" PRIu64, seq % 100000);
    snprintf(e->rules_version, sizeof e->rules_version, "seed-2026.1");
    e->digest = seq * 0x9e3779b97f4a7c15ull;
    e->postings_n = 1;
    lt_posting *p = &e->postings[0];
    snprintf(p->member_id, sizeof p->member_id, "%s", e->member_id);
    p->credit = 175;
    p->credit_expires_at = 1830000000;
    p->lifetime_delta_fen = 272345;
    p->qualifying_delta = 272345;
    snprintf(p->reason, sizeof p->reason, "sale");
    p->balance_after = 175 + (int64_t)seq;
    p->count_sale = true;
    e->paid_fen = 282345;
    e->eligible_fen = 272345;
    e->base_points = 175;
    e->multiplier_pct = 100;
    e->points_earned = 175;
    e->lines_n = 4;
    e->lines[0] = (lt_line_result){1, 12345, 12345, 0, 0, 123, 12345};
    e->lines[1] = (lt_line_result){1, 260000, 260000, 0, 0, 52, 260000};
    e->lines[2] = (lt_line_result){2, 5000, 0, 0, 0, 0, 0};
    e->lines[3] = (lt_line_result){3, 4770, 4770, 0, 0, 47, 4770};
}

int bench_raw_run(const char *dir, uint64_t records, size_t per_commit, raw_result *r)
{
    char err[256] = "";
    LT_ASSERT(per_commit >= 1 && per_commit <= RAW_CHUNK_MAX);
    memset(r, 0, sizeof *r);
    ledger *l = NULL;
    ledger_opts o = {0};
    o.dir = dir;
    o.exclusive = true;
    int rc = ledger_open(&l, &o, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "lt-bench: raw: %s\n", err[0] ? err : ledger_strerror(rc));
        return -1;
    }
    lt_entry *e = malloc(sizeof *e);
    ledger_record *recs = calloc(per_commit, sizeof *recs);
    uint8_t *bytes = malloc(per_commit * 512);
    LT_ASSERT(e && recs && bytes);
    uint64_t seq = 0, total_bytes = 0;
    while (rc == 0 && seq < records) {
        size_t n = records - seq < per_commit ? (size_t)(records - seq) : per_commit;
        for (size_t i = 0; i < n; i++) {
            fake_entry(e, seq + 1 + i);
            recs[i].seq = e->seq;
            recs[i].id = e->id;
            recs[i].bytes = bytes + i * 512;
            recs[i].len = entry_encode(e, bytes + i * 512, 512);
            LT_ASSERT(recs[i].len > 0);
            total_bytes += recs[i].len;
        }
        double t0 = bench_now_s();
        rc = ledger_commit(l, recs, n, NULL, 0, 0);
        r->elapsed_s += bench_now_s() - t0;
        seq += n;
    }
    if (rc < 0)
        fprintf(stderr, "lt-bench: raw: ledger_commit: %s\n", ledger_strerror(rc));
    r->records = rc == 0 ? seq : 0;
    r->record_bytes = seq ? (size_t)(total_bytes / seq) : 0;
    free(bytes);
    free(recs);
    free(e);
    ledger_close(&l);
    return rc == 0 ? 0 : -1;
}
