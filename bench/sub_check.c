/* sub_check.c: the place of a published message in the stream (read by the publisher's own
 * pub_read_place()), and the stream's gaps. */
#include "sub_check.h"

int sub_read_place(const char *topic, size_t topic_len, const uint8_t *payload, size_t len,
                   pub_place *out)
{
    int t = pub_topic_of(topic, topic_len);
    if (t < 0)
        return -1; /* a topic unknown to the publisher this bench was built with */
    if (t == PUB_HEARTBEAT)
        return 0;
    return pub_read_place((pub_topic)t, payload, len, out) == 0 ? 1 : -1;
}

void sub_track_reset(sub_track *t)
{
    t->started = false;
}

void sub_track_add(sub_track *t, const pub_place *p)
{
    t->messages++;
    if (t->started) {
        pub_place want = t->last.part < t->last.parts
                             ? (pub_place){t->last.seq, t->last.part + 1, t->last.parts}
                             : (pub_place){t->last.seq + 1, 1, 0};
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
