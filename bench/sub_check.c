/* sub_check.c: the place of a published message in the stream, and the stream's gaps. */
#include "sub_check.h"

#include <string.h>

/* The payload's fields that carry seq, part and parts, by topic (publisher/pub.c). */
typedef struct {
    const char *topic;
    uint32_t part, parts; /* field numbers; seq is field 1 in all */
} topic_fields;

static const topic_fields g_fields[] = {
    {"member.updated", 9, 10},  {"points.expired", 9, 10}, {"points.expiring", 9, 10},
    {"member.birthday", 9, 10}, {"member.dormant", 9, 10}, {"tier.changed", 7, 8},
    {"sale.rated", 2, 3},
};

static const uint8_t *read_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (p == end)
            return NULL;
        uint8_t b = *p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            *v = x;
            return p;
        }
    }
    return NULL;
}

int sub_read_place(const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                   sub_place *out)
{
    const topic_fields *f = NULL;
    for (size_t i = 0; i < sizeof g_fields / sizeof g_fields[0]; i++) {
        if (strlen(g_fields[i].topic) == topic_len &&
            memcmp(g_fields[i].topic, topic, topic_len) == 0)
            f = &g_fields[i];
    }
    if (f == NULL) /* a heartbeat carries no place; anything else is a topic unknown here */
        return topic_len == 9 && memcmp(topic, "heartbeat", 9) == 0 ? 0 : -1;
    uint64_t seq = 0, part = 0, parts = 0;
    const uint8_t *p = payload, *end = payload + len;
    while (p < end) {
        uint64_t tag, v = 0;
        if ((p = read_varint(p, end, &tag)) == NULL)
            return -1;
        switch (tag & 7) {
        case 0:
            if ((p = read_varint(p, end, &v)) == NULL)
                return -1;
            break;
        case 1: /* fixed64 and fixed32: skipped */
        case 5: {
            long k = (tag & 7) == 1 ? 8 : 4;
            if (end - p < k)
                return -1;
            p += k;
            continue;
        }
        case 2:
            if ((p = read_varint(p, end, &v)) == NULL || v > (uint64_t)(end - p))
                return -1;
            p += v;
            continue;
        default:
            return -1;
        }
        uint64_t field = tag >> 3;
        if (field == 1)
            seq = v;
        else if (field == f->part)
            part = v;
        else if (field == f->parts)
            parts = v;
    }
    if (seq == 0 || part == 0 || part > parts || parts > UINT32_MAX)
        return -1;
    *out = (sub_place){seq, (uint32_t)part, (uint32_t)parts};
    return 1;
}

void sub_track_reset(sub_track *t)
{
    t->started = false;
}

void sub_track_add(sub_track *t, const sub_place *p)
{
    t->messages++;
    if (t->started) {
        sub_place want = t->last.part < t->last.parts
                             ? (sub_place){t->last.seq, t->last.part + 1, t->last.parts}
                             : (sub_place){t->last.seq + 1, 1, 0};
        if (p->seq != want.seq || p->part != want.part) {
            t->gaps++;
            /* the entries from the one expected up to this one, and this one too if it is
             * entered past its first part; a step back (a restarted daemon) counts one */
            if (p->seq < want.seq)
                t->missed++;
            else
                t->missed += p->seq - want.seq + (p->part > 1 ? 1 : 0);
        }
    }
    t->started = true;
    t->last = *p;
}
