/* ack.c: loyalty.AckBatch written directly in the protobuf wire format.
 *
 * The daemon answers every till message with an AckBatch of up to LT_BATCH_EVENTS_MAX acks.
 * Building protobuf-c messages for them and packing them walked the descriptors of every ack
 * twice (size, then pack); writing the fields in field-number order, as protobuf-c does, gives
 * the same bytes at a fraction of the cost. The unit test compares the two byte for byte.
 */
#include <string.h>

#include "ingest.h"
#include "pbwrite.h"

/* Fields of loyalty.AckBatch, loyalty.Ack and loyalty.EventId (proto/loyalty.proto). */
enum { AB_BATCH_ID = 1, AB_ACKS = 2, AB_REASON = 3, AB_MESSAGE = 4 };
enum {
    ACK_ID = 1,
    ACK_STATUS = 2,
    ACK_SEQ = 3,
    ACK_REASON = 4,
    ACK_MESSAGE = 5,
    ACK_POINTS_EARNED = 6,
    ACK_POINTS_REDEEMED = 7,
    ACK_BALANCE = 8,
};
enum { ID_NODE_ID = 1, ID_EVENT_ID = 2 };

/* loyalty.Status values the layout depends on */
#define ACK_STATUS_ACCEPTED 1u
#define ACK_STATUS_REJECTED 3u

static void write_ack(wbuf *w, const ingest_ack *a)
{
    uint8_t *ack_at = w_sub_begin(w, AB_ACKS);
    uint8_t *id_at = w_sub_begin(w, ACK_ID);
    w_u64_set(w, ID_NODE_ID, a->node_id);
    w_u64_set(w, ID_EVENT_ID, a->event_id);
    w_sub_end(w, id_at);
    /* enums are int32 on the wire: sign-extended like protobuf-c does */
    w_u64_set(w, ACK_STATUS, (uint64_t)(int64_t)(int32_t)a->status);
    if (a->status == ACK_STATUS_REJECTED) {
        w_u64_set(w, ACK_REASON, (uint64_t)(int64_t)(int32_t)a->reason);
        if (a->message != NULL)
            w_str_set(w, ACK_MESSAGE, a->message, strlen(a->message));
    } else {
        w_u64_set(w, ACK_SEQ, a->seq);
    }
    if (a->status == ACK_STATUS_ACCEPTED) {
        w_u64_set(w, ACK_POINTS_EARNED, (uint64_t)a->points_earned);
        w_u64_set(w, ACK_POINTS_REDEEMED, (uint64_t)a->points_redeemed);
        w_u64_set(w, ACK_BALANCE, (uint64_t)a->balance);
    }
    w_sub_end(w, ack_at);
}

int ingest_ack_batch_encode(bool has_batch_id, uint64_t batch_id, const ingest_ack *acks,
                            size_t acks_n, int reason, const char *message, uint8_t *buf,
                            size_t cap, size_t *len)
{
    LT_ASSERT(buf != NULL && len != NULL);
    LT_ASSERT(acks_n == 0 || acks != NULL);
    wbuf w = w_init(buf, cap);
    if (has_batch_id)
        w_u64_set(&w, AB_BATCH_ID, batch_id);
    for (size_t i = 0; i < acks_n && !w.full; i++)
        write_ack(&w, &acks[i]);
    if (reason != LT_R_NONE) {
        w_u64_set(&w, AB_REASON, (uint64_t)(int64_t)reason);
        if (message != NULL)
            w_str_set(&w, AB_MESSAGE, message, strlen(message));
    }
    *len = w.full ? 0 : (size_t)(w.p - buf);
    return w.full ? -1 : 0;
}
