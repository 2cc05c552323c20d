/* test_common_arena.c: the protobuf-c bump allocator: many allocations, alignment, no overlap,
 * reset, allocations larger than a chunk, and a real unpack through it. */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "arena.h"
#include "loyalty.pb-c.h"

static void *arena_alloc(lt_arena *a, size_t n)
{
    ProtobufCAllocator *al = lt_arena_allocator(a);
    return al->alloc(al->allocator_data, n);
}

static void test_many_allocations_aligned_disjoint(void **state)
{
    (void)state;
    lt_arena *a = lt_arena_new(4096);
    assert_non_null(a);
    enum { N = 20000 };
    uint8_t **p = calloc(N, sizeof *p);
    size_t *len = calloc(N, sizeof *len);
    for (size_t i = 0; i < N; i++) {
        len[i] = (i * 7919) % 300 + (i % 11 == 0 ? 0 : 1); /* 0..300 bytes, some zero */
        p[i] = arena_alloc(a, len[i]);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % alignof(max_align_t), 0);
        memset(p[i], (int)(i & 0xff), len[i]); /* ASan catches writes past a chunk */
    }
    /* nothing was overwritten by a later allocation */
    for (size_t i = 0; i < N; i++) {
        for (size_t j = 0; j < len[i]; j++) {
            if (p[i][j] != (uint8_t)(i & 0xff))
                fail_msg("allocation %zu byte %zu overwritten", i, j);
        }
    }
    free(p);
    free(len);
    lt_arena_destroy(&a);
    assert_null(a);
}

static void test_reset_reuses_first_chunk(void **state)
{
    (void)state;
    lt_arena *a = lt_arena_new(1024);
    assert_non_null(a);
    void *first = arena_alloc(a, 24);
    for (int i = 0; i < 1000; i++)
        assert_non_null(arena_alloc(a, 100)); /* spills into many chunks */
    lt_arena_reset(a);
    assert_ptr_equal(arena_alloc(a, 24), first);
    lt_arena_reset(a);
    lt_arena_reset(a); /* twice in a row is fine */
    assert_ptr_equal(arena_alloc(a, 1), first);
    /* free is a no-op and must not crash */
    ProtobufCAllocator *al = lt_arena_allocator(a);
    al->free(al->allocator_data, first);
    lt_arena_destroy(&a);
    lt_arena_destroy(&a); /* NULL-safe */
}

static void test_larger_than_chunk(void **state)
{
    (void)state;
    lt_arena *a = lt_arena_new(256);
    assert_non_null(a);
    uint8_t *small1 = arena_alloc(a, 16);
    size_t big_n = 1 << 20;
    uint8_t *big = arena_alloc(a, big_n);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % alignof(max_align_t), 0);
    memset(big, 0x5a, big_n);
    uint8_t *small2 = arena_alloc(a, 200);
    assert_non_null(small2);
    memset(small2, 0x11, 200);
    memset(small1, 0x22, 16);
    for (size_t i = 0; i < big_n; i++) {
        if (big[i] != 0x5a)
            fail_msg("big byte %zu overwritten", i);
    }
    /* exactly one chunk and one byte more */
    uint8_t *edge = arena_alloc(a, 257);
    assert_non_null(edge);
    memset(edge, 0x33, 257);
    lt_arena_reset(a);
    /* after reset the big chunk is gone and allocation goes on */
    uint8_t *again = arena_alloc(a, 2 << 20);
    assert_non_null(again);
    memset(again, 0x44, 2 << 20);
    lt_arena_destroy(&a);
}

/* A whole EventBatch unpacked from the arena matches what was packed. */
static void test_protobuf_unpack(void **state)
{
    (void)state;
    enum { EVENTS = 300 };
    Loyalty__EventBatch eb = LOYALTY__EVENT_BATCH__INIT;
    Loyalty__Event ev[EVENTS], *evp[EVENTS];
    Loyalty__EventId id[EVENTS];
    char member[EVENTS][16];
    for (size_t i = 0; i < EVENTS; i++) {
        loyalty__event__init(&ev[i]);
        loyalty__event_id__init(&id[i]);
        id[i].has_node_id = id[i].has_event_id = 1;
        id[i].node_id = 3;
        id[i].event_id = i;
        ev[i].id = &id[i];
        snprintf(member[i], sizeof member[i], "M%05zu", i);
        ev[i].member_id = member[i];
        evp[i] = &ev[i];
    }
    eb.has_batch_id = 1;
    eb.batch_id = 77;
    eb.n_events = EVENTS;
    eb.events = evp;
    size_t n = loyalty__event_batch__get_packed_size(&eb);
    uint8_t *buf = malloc(n);
    loyalty__event_batch__pack(&eb, buf);

    lt_arena *a = lt_arena_new(1024); /* small: the unpack spans many chunks */
    for (int round = 0; round < 3; round++) {
        Loyalty__EventBatch *u = loyalty__event_batch__unpack(lt_arena_allocator(a), n, buf);
        assert_non_null(u);
        assert_int_equal(u->batch_id, 77);
        assert_int_equal(u->n_events, EVENTS);
        for (size_t i = 0; i < EVENTS; i++) {
            assert_int_equal(u->events[i]->id->event_id, i);
            assert_string_equal(u->events[i]->member_id, member[i]);
        }
        lt_arena_reset(a);
    }
    lt_arena_destroy(&a);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_allocations_aligned_disjoint),
        cmocka_unit_test(test_reset_reuses_first_chunk),
        cmocka_unit_test(test_larger_than_chunk),
        cmocka_unit_test(test_protobuf_unpack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
