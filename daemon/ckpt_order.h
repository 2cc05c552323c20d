/* ckpt_order.h: a checkpoint's members in id order, taken from an order of all members that is
 * kept between checkpoints (daemon.c, ckpt_sort_work()).
 *
 * state/'s log is appended in key order, so each checkpoint writes its members sorted by id.
 * Sorting them afresh every time took 146 ms for 330,000 members and 182 ms for 1 M on the
 * other core, and the open loop's p99 rose in the windows after each start
 * (docs/performance.md). Members are numbered in the order they were enrolled, never removed
 * and never renumbered while the state lives, and an id never changes: so the order of all of
 * them can be kept, and only the members enrolled since the last checkpoint need sorting (most
 * often none, or a few thousand) and merging in. A checkpoint's members are then a filter over
 * that order: one pass over 4 bytes a member.
 *
 * One thread at a time: the daemon's thread pool grows and selects during a checkpoint's sort;
 * the loop thread resets or frees it only while no sort runs (daemon.c, ck_sort_busy). */
#ifndef LT_CKPT_ORDER_H
#define LT_CKPT_ORDER_H

#include <stddef.h>
#include <stdint.h>

/* The id of member number idx (the member exists); ctx is the caller's. */
typedef const char *(*ck_id_fn)(const void *ctx, uint32_t idx);

typedef struct {
    uint32_t *by_id; /* member numbers 0..n-1, each once, in id order (strcmp's) */
    uint32_t n;
    size_t cap;
    uint64_t *bits; /* ck_order_select()'s scratch: a bit per member */
    size_t bits_cap;
} ck_order;

/* Brings o up to members 0..members_n-1: those numbered o->n and above are sorted by id and
 * merged in (a member's place among the others found by galloping from the previous one's, so
 * members enrolled in id order, or all after the others, cost a few comparisons each). An o
 * with more members than members_n belongs to a state that is gone: it starts again. Returns
 * 0, or -1 out of memory (o's order as it was, or empty if it was another state's). */
int ck_order_grow(ck_order *o, uint32_t members_n, ck_id_fn id_of, const void *ctx);

/* The n member numbers of list (each below o->n, none twice) into out, in id order. Returns 0,
 * or -1 out of memory (out not written). */
int ck_order_select(ck_order *o, const uint32_t *list, size_t n, uint32_t *out);

/* Forgets the order (the state it was for is gone), keeping the memory. */
void ck_order_reset(ck_order *o);

void ck_order_free(ck_order *o);

#endif
