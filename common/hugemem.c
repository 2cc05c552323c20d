/* hugemem.c: large arrays on transparent huge pages (hugemem.h). */
#include "hugemem.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

static _Atomic size_t g_mapped;

static size_t huge_round(size_t n)
{
    return (n + LT_HUGE_PAGE - 1) & ~(LT_HUGE_PAGE - 1);
}

void *lt_huge_alloc(size_t n)
{
    if (n == 0 || n > SIZE_MAX / 2)
        return NULL;
    if (n < LT_HUGE_MIN)
        return calloc(1, n);
    size_t len = huge_round(n);
    /* map one huge page more than needed and trim both ends to an aligned range: mmap()
     * itself promises only 4 KiB alignment */
    uint8_t *p =
        mmap(NULL, len + LT_HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)p + LT_HUGE_PAGE - 1) & ~(uintptr_t)(LT_HUGE_PAGE - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (a + len < p + len + LT_HUGE_PAGE)
        munmap(a + len, (size_t)(p + len + LT_HUGE_PAGE - (a + len)));
#ifdef MADV_HUGEPAGE
    (void)madvise(a, len, MADV_HUGEPAGE); /* a hint: EINVAL without THP changes nothing */
#endif
    atomic_fetch_add_explicit(&g_mapped, len, memory_order_relaxed);
    return a;
}

void lt_huge_free(void *p, size_t n)
{
    if (p == NULL || n == 0)
        return;
    if (n < LT_HUGE_MIN) {
        free(p);
        return;
    }
    munmap(p, huge_round(n));
    atomic_fetch_sub_explicit(&g_mapped, huge_round(n), memory_order_relaxed);
}

size_t lt_huge_mapped(void)
{
    return atomic_load_explicit(&g_mapped, memory_order_relaxed);
}
