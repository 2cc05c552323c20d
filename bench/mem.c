/* mem.c: RAM per member of the daemon's member state (ledger/state.c) at a given population:
 * members created through state_apply() exactly as replay and the daemon do, each enrolled by
 * a posting that also credits one lot of points (a member who bought once), measured as the
 * growth of the heap in use (mallinfo2: allocated chunks with their headers, and mmapped
 * blocks) plus the huge pages the state maps itself (lt_huge_mapped(): its member slabs and
 * indexes), which unlike RSS does not depend on what earlier phases freed; the growth of
 * anonymous RSS where mallinfo2 sees nothing (under a sanitizer's allocator).
 */
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "hugemem.h"
#include "state.h"

long bench_rss_anon_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static uint64_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}

int bench_mem_run(uint32_t members, mem_result *r)
{
    memset(r, 0, sizeof *r);
    state *s = NULL;
    lt_entry *e = calloc(1, sizeof *e);
    uint64_t before = heap_in_use(), huge_before = lt_huge_mapped();
    long rss_before = bench_rss_anon_kib(getpid());
    if (e == NULL || state_new(&s) < 0) {
        fprintf(stderr, "lt-bench: memory: out of memory\n");
        free(e);
        return -1;
    }
    char err[256] = "";
    int rc = 0;
    double t0 = bench_now_s();
    e->kind = LT_ENTRY_ENROL;
    e->event_kind = LT_EV_ENROL;
    e->postings_n = 1;
    lt_posting *p = &e->postings[0];
    for (uint32_t i = 0; i < members && rc == 0 && !bench_stop; i++) {
        e->seq = (uint64_t)i + 1;
        e->occurred_at = 1795000000;
        snprintf(e->member_id, sizeof e->member_id, "139%08" PRIu32, i);
        memcpy(p->member_id, e->member_id, sizeof p->member_id);
        p->create = true;
        p->birth_month = (uint8_t)(i % 12 + 1);
        p->birth_day = (uint8_t)(i % 28 + 1);
        p->credit = 100;
        p->credit_expires_at = 1830000000;
        p->balance_after = 100;
        snprintf(p->reason, sizeof p->reason, "enrol");
        rc = state_apply(s, e, err, sizeof err);
    }
    r->elapsed_s = bench_now_s() - t0;
    uint64_t after = heap_in_use();
    if (rc < 0)
        fprintf(stderr, "lt-bench: memory: state_apply: %s\n", err);
    r->members = state_members(s);
    uint64_t huge = lt_huge_mapped() - huge_before;
    r->bytes = after > before ? after - before + huge : 0;
    if (r->bytes == 0) {
        /* an allocator mallinfo2 does not see (a sanitizer's): the growth of resident memory */
        long rss_after = bench_rss_anon_kib(getpid());
        if (rss_before >= 0 && rss_after > rss_before)
            r->bytes = (uint64_t)(rss_after - rss_before) * 1024;
    }
    state_destroy(&s);
    free(e);
    return rc < 0 || r->members != members ? -1 : 0;
}
