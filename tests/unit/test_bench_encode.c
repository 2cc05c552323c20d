/* test_bench_encode.c: the load generator's direct EventBatch writer (bench/load_encode.c)
 * produces bytes that protobuf-c decodes as exactly the workload events meant, and the workload
 * (bench/workload.c) keeps its mix: sales, redemptions, returns of earlier sales, enrolments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "load_encode.h"
#include "loyalty.pb-c.h"
#include "workload.h"

#define N 1000
#define NODE 7
#define FIRST_ID 1000
#define NOW 1790000000

static void check_event(const Loyalty__Event *pe, const wl_event *e, uint64_t id)
{
    assert_non_null(pe->id);
    assert_int_equal(pe->id->node_id, NODE);
    assert_int_equal(pe->id->event_id, id);
    assert_string_equal(pe->member_id, e->member_id);
    assert_string_equal(pe->store_id, e->store);
    assert_true(pe->has_occurred_at);
    assert_int_equal(pe->occurred_at, NOW);
    assert_true(pe->has_utc_offset_min);
    assert_int_equal(pe->utc_offset_min, WL_UTC_OFFSET_MIN);
    switch (e->kind) {
    case WL_SALE:
        assert_int_equal(pe->body_case, LOYALTY__EVENT__BODY_SALE);
        assert_int_equal(pe->sale->n_lines, e->lines_n);
        for (uint32_t i = 0; i < e->lines_n; i++) {
            const Loyalty__SaleLine *l = pe->sale->lines[i];
            assert_string_equal(l->sku, e->lines[i].sku);
            assert_string_equal(l->category, e->lines[i].category);
            assert_int_equal(l->quantity, e->lines[i].quantity);
            assert_int_equal(l->unit_list_fen, e->lines[i].unit_list_fen);
            assert_int_equal(l->unit_paid_fen, e->lines[i].unit_paid_fen);
            assert_int_equal(l->has_flags ? l->flags : 0, e->lines[i].flags);
        }
        assert_int_equal(pe->sale->has_redeem_points ? pe->sale->redeem_points : 0,
                         e->redeem_points);
        break;
    case WL_ENROL:
        assert_int_equal(pe->body_case, LOYALTY__EVENT__BODY_ENROL);
        assert_int_equal(pe->enrol->birth_month, e->birth_month);
        assert_int_equal(pe->enrol->birth_day, e->birth_day);
        assert_string_equal(pe->enrol->card, e->card);
        break;
    case WL_RETURN:
        assert_int_equal(pe->body_case, LOYALTY__EVENT__BODY_RETURN_SALE);
        assert_int_equal(pe->return_sale->original->node_id,
                         e->return_node ? e->return_node : NODE);
        assert_int_equal(pe->return_sale->original->event_id, e->return_of);
        assert_int_equal(pe->return_sale->n_lines, 1);
        /* line_index 0 must be present, not omitted as a default */
        assert_true(pe->return_sale->lines[0]->has_line_index);
        assert_int_equal(pe->return_sale->lines[0]->line_index, e->return_line);
        assert_int_equal(pe->return_sale->lines[0]->quantity, 1);
        break;
    }
}

static void encodes_what_protobuf_c_decodes(void **st)
{
    (void)st;
    wl_model m;
    assert_int_equal(wl_model_init(&m, 1000000), 0);
    int64_t *balances = calloc(m.members, sizeof *balances);
    wl_history *h = calloc(1, sizeof *h);
    wl_event *ev = calloc(N, sizeof *ev);
    uint8_t *buf = malloc(LT_MESSAGE_BYTES_MAX);
    assert_true(balances && h && ev && buf);
    uint64_t rng = 42, enrolled = 0;
    unsigned kinds[4] = {0}, redeem = 0;
    for (int round = 0; round < 5; round++) {
        for (uint32_t i = 0; i < N; i++) {
            wl_next(&m, &rng, NODE, &enrolled, balances, h, &ev[i]);
            kinds[ev[i].kind]++;
            redeem += ev[i].kind == WL_SALE && ev[i].redeem_points > 0;
        }
        size_t len = load_encode_batch(buf, LT_MESSAGE_BYTES_MAX, 99 + (uint64_t)round, NODE,
                                       FIRST_ID, NOW, ev, N);
        assert_true(len > 0);
        Loyalty__EventBatch *b = loyalty__event_batch__unpack(NULL, len, buf);
        assert_non_null(b);
        assert_int_equal(b->batch_id, 99 + (uint64_t)round);
        assert_int_equal(b->n_events, N);
        for (uint32_t i = 0; i < N; i++) {
            check_event(b->events[i], &ev[i], FIRST_ID + i);
            if (ev[i].kind == WL_SALE) { /* "acknowledged": returnable, balance known */
                wl_past p;
                wl_past_of(&ev[i], FIRST_ID + i, &p);
                wl_history_add(h, &p);
                balances[ev[i].member] += ev[i].paid_fen / 100;
            }
        }
        loyalty__event_batch__free_unpacked(b, NULL);
    }
    /* the mix: mostly sales, ~1% enrolments and returns, ~5% of sales redeem */
    assert_in_range(kinds[WL_SALE], 4500, 5000);
    assert_in_range(kinds[WL_ENROL], 20, 100);
    assert_in_range(kinds[WL_RETURN], 10, 100);
    assert_in_range(redeem, 30, 400); /* only members with a balance redeem */
    /* too small a buffer is refused, not overrun */
    assert_int_equal(load_encode_batch(buf, 100, 1, NODE, FIRST_ID, NOW, ev, N), 0);
    free(buf);
    free(ev);
    free(h);
    free(balances);
    wl_model_free(&m);
}

/* --nodes: a till sends from several node ids; a return names its sale's node, not the node
 * of the message that carries it. */
static void a_return_names_the_node_of_its_sale(void **st)
{
    (void)st;
    wl_model m;
    assert_int_equal(wl_model_init(&m, 1000), 0);
    int64_t *balances = calloc(m.members, sizeof *balances);
    wl_history *h = calloc(1, sizeof *h);
    uint8_t *buf = malloc(LT_MESSAGE_BYTES_MAX);
    assert_true(balances && h && buf);
    const uint64_t other = ((uint64_t)3 << 32) + NODE;
    wl_event sale = {0}, ev = {0};
    uint64_t rng = 9, enrolled = 0;
    do
        wl_next(&m, &rng, NODE, &enrolled, balances, NULL, &sale);
    while (sale.kind != WL_SALE);
    wl_past p;
    wl_past_of(&sale, 41, &p);
    p.node_id = other;
    wl_history_add(h, &p);
    for (int i = 0; i < 100000 && ev.kind != WL_RETURN; i++)
        wl_next(&m, &rng, NODE, &enrolled, balances, h, &ev);
    assert_int_equal(ev.kind, WL_RETURN);
    assert_int_equal(ev.return_node, other);
    size_t len = load_encode_batch(buf, LT_MESSAGE_BYTES_MAX, 1, NODE, FIRST_ID, NOW, &ev, 1);
    assert_true(len > 0);
    Loyalty__EventBatch *b = loyalty__event_batch__unpack(NULL, len, buf);
    assert_non_null(b);
    assert_int_equal(b->events[0]->id->node_id, NODE);
    assert_int_equal(b->events[0]->return_sale->original->node_id, other);
    assert_int_equal(b->events[0]->return_sale->original->event_id, 41);
    loyalty__event_batch__free_unpacked(b, NULL);
    free(buf);
    free(h);
    free(balances);
    wl_model_free(&m);
}

static void population_and_zipf(void **st)
{
    (void)st;
    wl_model m;
    assert_int_equal(wl_model_init(&m, 1000000), 0);
    wl_event e;
    wl_population(1234567 % m.members, &e);
    assert_int_equal(e.kind, WL_ENROL);
    assert_string_equal(e.member_id, "13900234567");
    assert_in_range(e.birth_month, 1, 12);
    assert_in_range(e.birth_day, 1, 28);
    /* Zipf: the hottest member takes several percent of the picks, and the picks stay inside
     * the population */
    uint64_t rng = 1;
    unsigned hot = 0, n = 100000;
    uint32_t first = 0; /* rank 0 maps to index 0 under the permutation */
    for (unsigned i = 0; i < n; i++) {
        uint32_t k = wl_pick_member(&m, &rng);
        assert_true(k < m.members);
        hot += k == first;
    }
    assert_in_range(hot, n / 40, n / 10); /* P(rank 0) = ln 2 / ln(1e6 + 1), about 5% */
    wl_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encodes_what_protobuf_c_decodes),
        cmocka_unit_test(a_return_names_the_node_of_its_sale),
        cmocka_unit_test(population_and_zipf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
