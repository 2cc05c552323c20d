/* load_encode.c: EventBatch writer for the load generator (load_encode.h).
 *
 * Field numbers are those of proto/loyalty.proto; tests/unit/test_bench_encode.c decodes the
 * output with protobuf-c and compares every field.
 */
#include "load_encode.h"

#include <string.h>

#include "pbwrite.h"

/* A varint field written even when zero (a return line's line_index 0 must be present). */
static void w_u64_always(wbuf *w, uint32_t field, uint64_t v)
{
    w_tag(w, field, WT_VARINT);
    w_varint(w, v);
}

static void w_cstr(wbuf *w, uint32_t field, const char *s)
{
    if (s != NULL)
        w_str(w, field, s, LT_ID_MAX);
}

static void write_sale(wbuf *w, const wl_event *e)
{
    uint8_t *sale = w_sub_begin(w, 10);
    for (uint32_t i = 0; i < e->lines_n; i++) {
        const wl_line *l = &e->lines[i];
        uint8_t *line = w_sub_begin(w, 1);
        w_cstr(w, 1, l->sku);
        w_cstr(w, 2, l->category);
        w_i64(w, 3, l->quantity);
        w_i64(w, 4, l->unit_list_fen);
        w_i64(w, 5, l->unit_paid_fen);
        w_u64(w, 6, l->flags);
        w_sub_end(w, line);
    }
    w_i64(w, 2, e->redeem_points);
    w_sub_end(w, sale);
}

static void write_enrol(wbuf *w, const wl_event *e)
{
    uint8_t *enrol = w_sub_begin(w, 11);
    w_u64(w, 1, e->birth_month);
    w_u64(w, 2, e->birth_day);
    w_cstr(w, 5, e->card);
    w_sub_end(w, enrol);
}

static void write_return(wbuf *w, const wl_event *e, uint64_t node)
{
    uint8_t *ret = w_sub_begin(w, 15);
    w_id(
        w, 1,
        (lt_event_id){.node_id = e->return_node ? e->return_node : node, .event_id = e->return_of});
    uint8_t *line = w_sub_begin(w, 2);
    w_u64_always(w, 1, e->return_line);
    w_i64(w, 2, 1);
    w_sub_end(w, line);
    w_sub_end(w, ret);
}

size_t load_encode_batch(uint8_t *buf, size_t cap, uint64_t batch_id, uint64_t node,
                         uint64_t first_id, int64_t now, const wl_event *ev, uint32_t n)
{
    wbuf w = w_init(buf, cap);
    w_u64(&w, 1, batch_id);
    for (uint32_t i = 0; i < n; i++) {
        const wl_event *e = &ev[i];
        uint8_t *at = w_sub_begin(&w, 2);
        w_id(&w, 1, (lt_event_id){.node_id = node, .event_id = first_id + i});
        w_cstr(&w, 2, e->member_id);
        w_cstr(&w, 4, e->store);
        w_i64(&w, 5, now);
        w_sint32(&w, 6, WL_UTC_OFFSET_MIN);
        switch (e->kind) {
        case WL_SALE:
            write_sale(&w, e);
            break;
        case WL_ENROL:
            write_enrol(&w, e);
            break;
        case WL_RETURN:
            write_return(&w, e, node);
            break;
        }
        w_sub_end(&w, at);
    }
    return w.full ? 0 : (size_t)(w.p - buf);
}
