/* ingest.h: the edge where till bytes become validated events.
 *
 * Two parts:
 *  - validation: a decoded loyalty.Event becomes an lt_event, or a specific rejection reason with
 *    a message naming the field (ingest_event_from_pb()); the daemon reads till messages in
 *    place instead (ingest_batch_scan(), ingest_batch_event(): wire.c), with the same answers;
 *  - zwatch: a ZeroMQ socket on a libuv loop. ZMQ_FD is edge-triggered, so the watcher drains
 *    until EAGAIN and re-checks ZMQ_EVENTS after every send (zwatch_after_send()), or the loop
 *    would stall with messages waiting.
 */
#ifndef LT_INGEST_H
#define LT_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "loyalty.pb-c.h"
#include "model.h"

/* ------------------------------------------------------------------ validation */

typedef struct {
    int64_t now;               /* UTC seconds, from the caller's clock (tests inject it) */
    int64_t future_skew_s_max; /* occurred_at may be at most this far ahead of now */
    int64_t past_age_s_max;    /* and at most this far behind */
} ingest_limits;

/* Validates and converts one event. Returns LT_R_NONE and fills *out, or an lt_reason with a
 * specific message in msg ("line 2: quantity 0 is not in 1..1000000"). The big arrays of *out
 * are written only up to their counts; everything else is reset. */
int ingest_event_from_pb(const Loyalty__Event *pe, const ingest_limits *lim, lt_event *out,
                         char *msg, size_t msg_len);

/* ------------------------------------------------------------------ straight from the wire */

/* One event of an EventBatch: its bytes inside the message, and what the daemon needs before
 * decoding it: its id (0 where not given; the ack carries it even for a rejection) and its
 * member id (a prefetch hint; not validated, not NUL-terminated, NULL if absent). */
typedef struct {
    const uint8_t *p;
    size_t n;
    uint64_t node_id, event_id;
    const char *member_id;
    size_t member_id_len;
} ingest_event_span;

typedef struct {
    bool has_batch_id;
    uint64_t batch_id;
    size_t events_n;                               /* every event in the message */
    ingest_event_span events[LT_BATCH_EVENTS_MAX]; /* the first LT_BATCH_EVENTS_MAX of them */
} ingest_batch;

/* Checks a whole loyalty.EventBatch without building it, and finds its events. Returns 0, or -1
 * where loyalty__event_batch__unpack() would return NULL (anything malformed anywhere in it):
 * the same verdict for every input. *out points into data. */
int ingest_batch_scan(const uint8_t *data, size_t len, ingest_batch *out);

/* ingest_event_from_pb() for an event's bytes (an ingest_event_span of a scanned batch): the
 * same result, message and *out as unpacking it with protobuf-c and calling that. Bytes that
 * are not a valid loyalty.Event give LT_R_DECODE_ERROR. */
int ingest_event_from_wire(const uint8_t *p, size_t n, const ingest_limits *lim, lt_event *out,
                           char *msg, size_t msg_len);

/* The same for an event of a batch that ingest_batch_scan() accepted (already checked: the
 * daemon's path). */
int ingest_batch_event(const ingest_event_span *e, const ingest_limits *lim, lt_event *out,
                       char *msg, size_t msg_len);

/* A 64-bit digest of an event's content, for CONFLICT detection (same id, other content). */
uint64_t ingest_event_digest(const Loyalty__Event *pe);

/* The same purpose from a validated event, without re-encoding it (the daemon's hot path):
 * equal events give equal digests whatever bytes the till used. Never 0. */
uint64_t ingest_event_digest_ev(const lt_event *ev);

/* Resolves an IANA zone name (e.g. "Asia/Shanghai") to its UTC offset in minutes at UTC time t,
 * from the system's zoneinfo files (cached). Returns 0, or -1 if the zone is unknown. */
int ingest_zone_offset(const char *zone, int64_t t, int32_t *off_min);

/* ------------------------------------------------------------------ acknowledgements */

/* One event's answer (loyalty.Ack) as the daemon keeps it until the ack is sent. */
typedef struct {
    uint64_t node_id, event_id;
    uint32_t status;                                 /* loyalty.Status */
    uint32_t reason;                                 /* loyalty.Reason, REJECTED only */
    const char *message;                             /* REJECTED only; NULL = none */
    uint64_t seq;                                    /* all but REJECTED */
    int64_t points_earned, points_redeemed, balance; /* ACCEPTED only */
} ingest_ack;

/* Writes a loyalty.AckBatch straight into buf[0..cap) (the hot path: no protobuf-c message is
 * built). The bytes equal what loyalty__ack_batch__pack() produces for the message the daemon
 * used to build: every ack carries its id (both fields) and its status; a rejection its reason
 * and message, anything else its seq; an acceptance also its points and balance. reason is
 * LT_R_NONE, or the reason a whole message was refused (then message, if not NULL, goes with
 * it; without a reason message is ignored). Returns 0 with the byte count in *len, or -1 if
 * cap is too small (buf then holds a partial message). */
int ingest_ack_batch_encode(bool has_batch_id, uint64_t batch_id, const ingest_ack *acks,
                            size_t acks_n, int reason, const char *message, uint8_t *buf,
                            size_t cap, size_t *len);

/* ------------------------------------------------------------------ zwatch */

typedef struct zwatch zwatch;
/* Called when the socket may be readable. Receive with ZMQ_DONTWAIT until EAGAIN or until
 * budget messages were handled; return the number handled. */
typedef size_t (*zwatch_read_cb)(zwatch *w, size_t budget);

struct zwatch {
    uv_poll_t poll;
    uv_idle_t idle; /* keeps draining while more may be waiting */
    void *sock;
    zwatch_read_cb on_read;
    void *data; /* the owner's */
    bool paused;
    bool closing;
};

/* Starts watching a ZeroMQ socket on the loop. Returns 0 or a negative uv error. */
int zwatch_start(uv_loop_t *loop, zwatch *w, void *sock, zwatch_read_cb on_read, void *data);
/* Stops reading (backpressure) / resumes. Resume re-checks for waiting messages. */
void zwatch_pause(zwatch *w);
void zwatch_resume(zwatch *w);
/* Must be called after sending on the socket: a send can make queued input visible without a
 * new edge on ZMQ_FD. */
void zwatch_after_send(zwatch *w);
/* Closes the libuv handles (not the socket). */
void zwatch_close(zwatch *w);
/* Whether a message can be read from sock now (ZMQ_EVENTS has POLLIN; false on an error). Its
 * ZMQ_FD signals changes of state, not waiting messages, so ask this before sleeping on it. */
bool zsock_readable(void *sock);

#endif
