/* test_common_hugemem.c: lt_huge_alloc() gives zeroed, writable memory aligned to a huge page and
 * advised for transparent huge pages (the member state's slabs and index, docs/performance.md),
 * and small arrays from calloc(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <unistd.h>

#include "hugemem.h"

/* The VmFlags line of the mapping holding p in /proc/self/smaps, or "" if none was found. */
static void vm_flags(const void *p, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[512];
    bool in = false;
    uintptr_t a = (uintptr_t)p;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = a >= lo && a < hi;
            continue;
        }
        if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, cap, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

static void test_huge_alloc_aligned_zeroed_writable(void **st)
{
    (void)st;
    size_t n = 3 * LT_HUGE_PAGE + 12345, mapped = lt_huge_mapped();
    uint8_t *p = lt_huge_alloc(n);
    assert_non_null(p);
    assert_int_equal(lt_huge_mapped(), mapped + 4 * LT_HUGE_PAGE); /* whole huge pages */
    assert_int_equal((uintptr_t)p % LT_HUGE_PAGE, 0);
    for (size_t i = 0; i < n; i += 4096)
        assert_int_equal(p[i], 0);
    assert_int_equal(p[n - 1], 0);
    memset(p, 0xab, n);
    assert_int_equal(p[n - 1], 0xab);
    lt_huge_free(p, n);
    assert_int_equal(lt_huge_mapped(), mapped);

    /* one page at a time, again and again: what one call maps the other unmaps */
    for (int i = 0; i < 64; i++) {
        uint8_t *q = lt_huge_alloc(LT_HUGE_PAGE);
        assert_non_null(q);
        q[0] = q[LT_HUGE_PAGE - 1] = 1;
        lt_huge_free(q, LT_HUGE_PAGE);
    }
    assert_null(lt_huge_alloc(0));
    assert_null(lt_huge_alloc(SIZE_MAX));
    lt_huge_free(NULL, 10); /* nothing */
    assert_int_equal(lt_huge_mapped(), mapped);
}

/* Below LT_HUGE_MIN the memory comes from calloc(): no huge page taken for a small array. */
static void test_small_alloc_from_calloc(void **st)
{
    (void)st;
    size_t mapped = lt_huge_mapped();
    uint8_t *p = lt_huge_alloc(LT_HUGE_MIN - 1);
    assert_non_null(p);
    assert_int_equal(lt_huge_mapped(), mapped);
    for (size_t i = 0; i < LT_HUGE_MIN - 1; i += 4096)
        assert_int_equal(p[i], 0);
    p[LT_HUGE_MIN - 2] = 1;
    lt_huge_free(p, LT_HUGE_MIN - 1);
    uint8_t *q = lt_huge_alloc(LT_HUGE_MIN);
    assert_non_null(q);
    assert_int_equal(lt_huge_mapped(), mapped + LT_HUGE_PAGE);
    lt_huge_free(q, LT_HUGE_MIN);
    assert_int_equal(lt_huge_mapped(), mapped);
}

static void test_huge_alloc_is_advised_for_huge_pages(void **st)
{
    (void)st;
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0)
        skip(); /* a kernel without THP: the advice is refused and nothing else changes */
    uint8_t *p = lt_huge_alloc(LT_HUGE_PAGE);
    assert_non_null(p);
    char flags[512];
    vm_flags(p, flags, sizeof flags);
    assert_non_null(strstr(flags, " hg")); /* VM_HUGEPAGE: madvise(MADV_HUGEPAGE) took */
    lt_huge_free(p, LT_HUGE_PAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_huge_alloc_aligned_zeroed_writable),
        cmocka_unit_test(test_small_alloc_from_calloc),
        cmocka_unit_test(test_huge_alloc_is_advised_for_huge_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
