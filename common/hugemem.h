/* hugemem.h: large arrays on transparent huge pages.
 *
 * The member records and their index are read at random, one member per event: with 4 KiB
 * pages nearly every such read also misses the TLB, and in a virtual machine a page walk is a
 * walk of two page tables. One 2 MiB page covers what 512 small ones do (docs/performance.md,
 * "Huge pages for the member state"). */
#ifndef LT_HUGEMEM_H
#define LT_HUGEMEM_H

#include <stddef.h>

#define LT_HUGE_PAGE ((size_t)2 << 20)
#define LT_HUGE_MIN (LT_HUGE_PAGE / 2) /* smaller arrays come from calloc() */

/* n bytes (n > 0) of zeroes, or NULL if the memory cannot be had. From LT_HUGE_MIN up, whole
 * huge pages aligned to LT_HUGE_PAGE and advised for transparent huge pages
 * (madvise(MADV_HUGEPAGE); without THP in the kernel they are small pages, nothing else
 * changes); below, calloc(), as an array that may still grow past it takes no 2 MiB early.
 * Free with lt_huge_free() and the same n. */
void *lt_huge_alloc(size_t n);

void lt_huge_free(void *p, size_t n);

/* Bytes the process holds from lt_huge_alloc() (whole huge pages), for memory accounting:
 * malloc's own statistics (mallinfo2()) do not see them. */
size_t lt_huge_mapped(void);

#endif
