/* pbwrite.h: a minimal protobuf wire-format writer for the hot path.
 *
 * protobuf_c_message_pack() walks descriptors and sizes every submessage twice; for the few
 * messages written per event (ledger entries, member updates) these direct writers are several
 * times faster. Zero-valued scalars and empty strings are omitted, as proto2 optional fields
 * with has_ unset would be. Output is checked by decoding it with protobuf-c in the tests.
 */
#ifndef LT_PBWRITE_H
#define LT_PBWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "model.h"

#ifndef VARINT_MAX
#define VARINT_MAX 10
#endif

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2 };

typedef struct {
    uint8_t *p, *end;
    bool full; /* ran out of room: nothing more is written */
} wbuf;

static inline size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline void w_varint(wbuf *w, uint64_t v)
{
    if (__builtin_expect(w->full || w->end - w->p < VARINT_MAX, 0) &&
        (w->full || (size_t)(w->end - w->p) < varint_len(v))) {
        w->full = true;
        return;
    }
    uint8_t *p = w->p; /* a local: stores through uint8_t * would make w->p reload per byte */
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    w->p = p;
}

static inline void w_tag(wbuf *w, uint32_t field, int wire_type)
{
    w_varint(w, (uint64_t)field << 3 | (uint64_t)wire_type);
}

/* int64, uint64, uint32, bool and enum fields: plain varints (negative int64 take 10 bytes). */
static inline void w_u64(wbuf *w, uint32_t field, uint64_t v)
{
    if (v == 0)
        return;
    w_tag(w, field, WT_VARINT);
    w_varint(w, v);
}

static inline void w_i64(wbuf *w, uint32_t field, int64_t v)
{
    w_u64(w, field, (uint64_t)v);
}

static inline void w_sint32(wbuf *w, uint32_t field, int32_t v)
{
    w_u64(w, field, ((uint32_t)v << 1) ^ (uint32_t)(v >> 31));
}

/* A proto2 optional varint field whose has_ flag is set: written even when zero. Enums and
 * int64 are passed as their uint64 bit pattern (negative values take 10 bytes). */
static inline void w_u64_set(wbuf *w, uint32_t field, uint64_t v)
{
    w_tag(w, field, WT_VARINT);
    w_varint(w, v);
}

/* A proto2 optional string field that is present (non-NULL): written even when empty. */
static inline void w_str_set(wbuf *w, uint32_t field, const char *s, size_t n)
{
    w_tag(w, field, WT_LEN);
    w_varint(w, n);
    if (w->full || (size_t)(w->end - w->p) < n) {
        w->full = true;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

static inline void w_fixed64(wbuf *w, uint32_t field, uint64_t v)
{
    if (v == 0)
        return;
    w_tag(w, field, WT_FIXED64);
    if (w->full || w->end - w->p < 8) {
        w->full = true;
        return;
    }
    for (int i = 0; i < 8; i++, v >>= 8)
        *w->p++ = (uint8_t)v;
}

static inline void w_str(wbuf *w, uint32_t field, const char *s, size_t cap)
{
    if (s[0] == '\0')
        return;
    size_t n = strnlen(s, cap);
    LT_ASSERT(n < cap);
    w_str_set(w, field, s, n);
}

#define W_STR(w, field, s) w_str((w), (field), (s), sizeof(s))

/* A submessage: one length byte is reserved and widened to two if the body needs it (every
 * submessage here is under 16 KiB). */
static inline uint8_t *w_sub_begin(wbuf *w, uint32_t field)
{
    w_tag(w, field, WT_LEN);
    if (w->full || w->p == w->end) {
        w->full = true;
        return NULL;
    }
    return w->p++;
}

static inline void w_sub_end(wbuf *w, uint8_t *len_at)
{
    if (w->full)
        return;
    size_t n = (size_t)(w->p - (len_at + 1));
    if (n < 0x80) {
        *len_at = (uint8_t)n;
        return;
    }
    LT_ASSERT(n < 0x4000);
    if (w->p == w->end) {
        w->full = true;
        return;
    }
    memmove(len_at + 2, len_at + 1, n);
    len_at[0] = (uint8_t)(n | 0x80);
    len_at[1] = (uint8_t)(n >> 7);
    w->p++;
}

static inline void w_id(wbuf *w, uint32_t field, lt_event_id id)
{
    if (id.node_id == 0 && id.event_id == 0)
        return;
    uint8_t *at = w_sub_begin(w, field);
    w_u64(w, 1, id.node_id);
    w_u64(w, 2, id.event_id);
    w_sub_end(w, at);
}

/* Starts writing into buf[0..cap). */
static inline wbuf w_init(uint8_t *buf, size_t cap)
{
    wbuf w = {buf, buf + cap, false};
    return w;
}

#endif
