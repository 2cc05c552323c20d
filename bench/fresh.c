/* fresh.c: what memory the kernel has not handed out lately costs on this machine.
 *
 * The first write to a fresh page costs a page fault and zeroing the page (about 1.5 us per
 * 4 KiB on this machine class). On a virtual machine whose host takes free memory back (free
 * page reporting, as on the machines this project is measured on), a page the guest freed a
 * while ago also costs the host's fault when it is touched again: 3-11 us here. The daemon's
 * ledger grows into fresh page cache and the member state into fresh heap, so the same build
 * measures slower on a machine whose memory is "cold". The probe writes one byte per page of
 * a fresh mapping, then does it again at once (pages just freed, still backed), and lt-bench
 * prints both beside the ceilings so that a result can be read with the state of the machine
 * (docs/performance.md, "Why this machine's speed moves").
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"

#define PAGE 4096u

/* Microseconds per page to write one byte into each page of a fresh mapping of `bytes`. */
static int touch_fresh(size_t bytes, double *us_per_page)
{
    volatile char *p =
        mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, "lt-bench: fresh memory: mmap %zu bytes: %s\n", bytes, strerror(errno));
        return -1;
    }
    double t0 = bench_now_s();
    for (size_t off = 0; off < bytes; off += PAGE)
        p[off] = 1;
    double dt = bench_now_s() - t0;
    munmap((void *)p, bytes);
    *us_per_page = dt * 1e6 / (double)(bytes / PAGE);
    return 0;
}

size_t bench_mem_available_mib(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL)
        return 0;
    char line[256];
    unsigned long kib = 0;
    while (fgets(line, sizeof line, f) && sscanf(line, "MemAvailable: %lu kB", &kib) != 1)
        ;
    fclose(f);
    return kib / 1024;
}

int bench_fresh_run(size_t bytes, fresh_result *r)
{
    memset(r, 0, sizeof *r);
    if (bytes < PAGE)
        return -1;
    if (touch_fresh(bytes, &r->first_us) < 0 || touch_fresh(bytes, &r->again_us) < 0)
        return -1;
    r->bytes = bytes;
    return 0;
}
