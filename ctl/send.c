/* send.c: `loyaltyctl send`: JSON-lines events -> EventBatch messages on a DEALER, with up to
 * --window batches in flight, one printed outcome per input line, in input order.
 *
 * Each batch is a slot in a ring. A slot collects items (an event, or a line that failed to
 * parse) until it holds --batch events or is about to exceed the message size limit; it is then
 * packed and sent. Replies are matched by batch_id; slots are printed from the ring's head as
 * soon as the head is complete, so output order is input order whatever order replies come in.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "ctl.h"
#include "ingest.h"
#include "json_event.h"

#define SEND_BATCH_DEFAULT 100
#define SEND_WINDOW_DEFAULT 4
#define SEND_WINDOW_MAX 64
#define SEND_ERRORS_PER_SLOT_MAX 64 /* invalid lines collected in one slot before it closes */
#define SEND_RETRIES_MAX 5          /* resends of a batch refused as OVERLOADED */
#define SEND_RETRY_BACKOFF_MS 50    /* doubled per retry */
#define SEND_LINE_BYTES_MAX LT_MESSAGE_BYTES_MAX
#define SEND_EVENT_OVERHEAD_BYTES 8 /* tag + length prefix of one event inside the batch */

typedef struct {
    uint64_t line;
    uint64_t node, id;
    char *error; /* set: the line was not sent; this says why */
} send_item;

typedef struct {
    uint64_t batch_id;
    send_item *items;
    size_t items_n;
    Loyalty__Event **events;
    size_t events_n;
    size_t bytes; /* packed size estimate of the batch */
    uint8_t *packed;
    size_t packed_len;
    Loyalty__AckBatch *reply;
    int retries;
    int state; /* SLOT_* */
} send_slot;

enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_SENT, SLOT_DONE };

typedef struct {
    ctl_globals *g;
    json_event_defaults defaults;
    size_t batch;
    size_t window;
    size_t items_cap;
    FILE *in;
    const char *in_name;
    uint64_t line_no;
    bool eof;
    bool check;              /* --check: validate locally, send nothing */
    Loyalty__Event *pending; /* parsed, but did not fit the previous slot */
    uint64_t pending_line;
    size_t pending_bytes;
    char *line;
    size_t line_cap;

    void *zctx, *sock;
    send_slot *ring; /* window slots */
    size_t head, used;
    uint64_t next_batch_id;

    /* outcome counts */
    uint64_t accepted, duplicate, rejected, invalid, unanswered, batches;
} send_ctx;

static const char send_usage[] =
    "usage: loyaltyctl send [OPTIONS] FILE|-\n"
    "\n"
    "Reads events, one JSON object per line (format: docs/events-json.md), from FILE or stdin\n"
    "('-'), sends them to the daemon's ingest endpoint in batches over a ZeroMQ DEALER and prints\n"
    "one line per input line, in input order:\n"
    "  line 3 node=1 id=42 ACCEPTED seq=17 earned=175 balance=175\n"
    "  line 4 node=1 id=42 DUPLICATE seq=17\n"
    "  line 5 node=1 id=43 REJECTED INSUFFICIENT_POINTS: message\n"
    "  line 6 ERROR sale.lines[0].qty: expected an integer, got a string\n"
    "Blank lines and lines starting with '#' are ignored. Invalid lines are reported and\n"
    "skipped. Acks arrive only after the events are durable. A batch refused as OVERLOADED is\n"
    "resent up to 5 times. Resending a file is safe: events already applied answer DUPLICATE.\n"
    "\n"
    "options:\n"
    "  --batch N          events per message (default 100, max 1000)\n"
    "  --window N         batches in flight at once (default 4, max 64)\n"
    "  --node N           node id for events without \"node\"\n"
    "  --store ID         store id for events without \"store\"\n"
    "  --utc-offset MIN   UTC offset (minutes) for events whose time has no offset\n"
    "  --check            validate every line with the daemon's own ingest checks and print\n"
    "                     'line N node=.. id=.. VALID kind' or 'INVALID REASON: message';\n"
    "                     nothing is sent (rating checks such as INSUFFICIENT_POINTS need\n"
    "                     the daemon)\n"
    "\n"
    "exit status: 0 if every event was ACCEPTED or DUPLICATE; 1 if any line was invalid,\n"
    "rejected or unanswered (timeout), or the input could not be read; 2 usage error.\n"
    "\n";

/* ------------------------------------------------------------------ slots */

static void slot_reset(send_slot *s)
{
    for (size_t i = 0; i < s->items_n; i++)
        free(s->items[i].error);
    for (size_t i = 0; i < s->events_n; i++)
        json_event_free(&s->events[i]);
    free(s->packed);
    if (s->reply)
        loyalty__ack_batch__free_unpacked(s->reply, NULL);
    s->items_n = s->events_n = s->bytes = s->packed_len = 0;
    s->packed = NULL;
    s->reply = NULL;
    s->retries = 0;
    s->state = SLOT_FREE;
}

static bool slot_full(const send_ctx *c, const send_slot *s, size_t next_bytes)
{
    return s->events_n == c->batch || s->items_n == c->items_cap ||
           (s->events_n > 0 && s->bytes + next_bytes > LT_MESSAGE_BYTES_MAX);
}

/* ------------------------------------------------------------------ output */

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(o);
}

static void print_error_item(send_ctx *c, const send_item *it)
{
    c->invalid++;
    if (c->g->json)
        print_json(json_pack("{s:I,s:s,s:s}", "line", (json_int_t)it->line, "status", "ERROR",
                             "error", it->error));
    else
        printf("line %" PRIu64 " ERROR %s\n", it->line, it->error);
}

/* Prints an event that got no per-event ack: refused batch (reason) or no reply (reason < 0). */
static void print_unacked(send_ctx *c, const send_item *it, int reason, const char *msg)
{
    const char *name = reason < 0 ? "NO_REPLY" : lt_reason_name(reason);
    const char *label = reason < 0 ? "UNANSWERED" : c->check ? "INVALID" : "REJECTED";
    if (reason < 0)
        c->unanswered++;
    else
        c->rejected++;
    if (c->g->json)
        print_json(json_pack("{s:I,s:I,s:I,s:s,s:s,s:s}", "line", (json_int_t)it->line, "node",
                             (json_int_t)it->node, "id", (json_int_t)it->id, "status", label,
                             "reason", name, "message", msg));
    else
        printf("line %" PRIu64 " node=%" PRIu64 " id=%" PRIu64 " %s %s: %s\n", it->line, it->node,
               it->id, label, name, msg);
}

static void print_ack(send_ctx *c, const send_item *it, const Loyalty__Ack *a)
{
    const char *st = ctl_status_name(a->status);
    if (a->status == LOYALTY__STATUS__ACCEPTED)
        c->accepted++;
    else if (a->status == LOYALTY__STATUS__DUPLICATE)
        c->duplicate++;
    else
        c->rejected++;
    const char *msg = a->message && a->message[0] ? a->message : lt_reason_msg(a->reason);
    if (c->g->json) {
        json_t *o = json_pack("{s:I,s:I,s:I,s:s}", "line", (json_int_t)it->line, "node",
                              (json_int_t)it->node, "id", (json_int_t)it->id, "status", st);
        if (a->status == LOYALTY__STATUS__ACCEPTED || a->status == LOYALTY__STATUS__DUPLICATE)
            json_object_set_new(o, "seq", json_integer((json_int_t)a->seq));
        if (a->status == LOYALTY__STATUS__ACCEPTED) {
            json_object_set_new(o, "earned", json_integer(a->points_earned));
            json_object_set_new(o, "redeemed", json_integer(a->points_redeemed));
            json_object_set_new(o, "balance", json_integer(a->balance));
        }
        if (a->status != LOYALTY__STATUS__ACCEPTED && a->status != LOYALTY__STATUS__DUPLICATE) {
            json_object_set_new(o, "reason", json_string(lt_reason_name(a->reason)));
            json_object_set_new(o, "message", json_string(msg));
        }
        print_json(o);
        return;
    }
    printf("line %" PRIu64 " node=%" PRIu64 " id=%" PRIu64 " %s", it->line, it->node, it->id, st);
    if (a->status == LOYALTY__STATUS__ACCEPTED) {
        printf(" seq=%" PRIu64 " earned=%" PRId64, a->seq, a->points_earned);
        if (a->points_redeemed)
            printf(" redeemed=%" PRId64, a->points_redeemed);
        printf(" balance=%" PRId64 "\n", a->balance);
    } else if (a->status == LOYALTY__STATUS__DUPLICATE) {
        printf(" seq=%" PRIu64 "\n", a->seq);
    } else {
        printf(" %s: %s\n", lt_reason_name(a->reason), msg);
    }
}

/* Prints a finished slot's outcomes in item order. */
static void slot_print(send_ctx *c, send_slot *s, const char *no_reply_msg)
{
    const Loyalty__AckBatch *r = s->reply;
    size_t ev = 0;
    for (size_t i = 0; i < s->items_n; i++) {
        const send_item *it = &s->items[i];
        if (it->error) {
            print_error_item(c, it);
            continue;
        }
        if (r == NULL)
            print_unacked(c, it, -1, no_reply_msg);
        else if (r->n_acks == 0)
            print_unacked(c, it, r->reason ? (int)r->reason : LT_R_INTERNAL_ERROR,
                          r->message && r->message[0] ? r->message : lt_reason_msg(r->reason));
        else if (ev < r->n_acks)
            print_ack(c, it, r->acks[ev]);
        else
            print_unacked(c, it, -1, "the daemon's reply has fewer acks than events");
        ev++;
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------ input */

/* Reads the next line into c->line. Returns 1, 0 at EOF, -1 on a read error. */
static int read_line(send_ctx *c, size_t *len)
{
    errno = 0;
    ssize_t n = getline(&c->line, &c->line_cap, c->in);
    if (n < 0) {
        if (ferror(c->in)) {
            ctl_errorf("send: reading %s: %s", c->in_name, strerror(errno ? errno : EIO));
            return -1;
        }
        return 0;
    }
    c->line_no++;
    while (n > 0 && (c->line[n - 1] == '\n' || c->line[n - 1] == '\r'))
        c->line[--n] = '\0';
    *len = (size_t)n;
    return 1;
}

static bool is_blank(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == '\0' || *s == '#';
}

static void slot_add_event(send_slot *s, send_item *it, Loyalty__Event *ev, size_t bytes)
{
    it->node = ev->id->node_id;
    it->id = ev->id->event_id;
    s->events[s->events_n++] = ev;
    s->bytes += bytes;
    s->items_n++;
}

/* Fills the slot from input until it is full or the input ends. Returns 0, or -1 on a read
 * error (the input then counts as ended). */
static int slot_fill(send_ctx *c, send_slot *s)
{
    char err[CTL_ERR_MAX];
    if (c->pending) {
        send_item *it = &s->items[0];
        LT_ASSERT(s->items_n == 0);
        memset(it, 0, sizeof *it);
        it->line = c->pending_line;
        slot_add_event(s, it, c->pending, c->pending_bytes);
        c->pending = NULL;
    }
    while (!c->eof && !slot_full(c, s, 0)) {
        size_t len;
        int rc = read_line(c, &len);
        if (rc <= 0) {
            c->eof = true;
            return rc;
        }
        if (is_blank(c->line))
            continue;
        send_item *it = &s->items[s->items_n];
        memset(it, 0, sizeof *it);
        it->line = c->line_no;
        Loyalty__Event *ev = NULL;
        if (len > SEND_LINE_BYTES_MAX) {
            snprintf(err, sizeof err, "line is longer than %d bytes", SEND_LINE_BYTES_MAX);
            rc = -1;
        } else {
            rc = json_event_parse(c->line, len, &c->defaults, &ev, err, sizeof err);
        }
        if (rc < 0) {
            it->error = strdup(err);
            LT_ASSERT(it->error != NULL);
            s->items_n++;
        } else {
            size_t bytes = loyalty__event__get_packed_size(ev) + SEND_EVENT_OVERHEAD_BYTES;
            if (slot_full(c, s, bytes)) {
                /* does not fit under the message size limit: it opens the next slot */
                c->pending = ev;
                c->pending_line = c->line_no;
                c->pending_bytes = bytes;
                return 0;
            }
            slot_add_event(s, it, ev, bytes);
        }
        if (slot_full(c, s, 0))
            return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ network */

static int slot_send(send_ctx *c, send_slot *s)
{
    if (s->packed == NULL) {
        Loyalty__EventBatch b = LOYALTY__EVENT_BATCH__INIT;
        b.has_batch_id = 1;
        b.batch_id = s->batch_id;
        b.n_events = s->events_n;
        b.events = s->events;
        s->packed_len = loyalty__event_batch__get_packed_size(&b);
        s->packed = malloc(s->packed_len ? s->packed_len : 1);
        LT_ASSERT(s->packed != NULL);
        loyalty__event_batch__pack(&b, s->packed);
    }
    if (zmq_send(c->sock, s->packed, s->packed_len, 0) < 0) {
        ctl_errorf("send: sending to %s: %s", c->g->endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    s->state = SLOT_SENT;
    c->batches++;
    return 0;
}

static send_slot *slot_by_batch(send_ctx *c, uint64_t batch_id)
{
    for (size_t i = 0; i < c->used; i++) {
        send_slot *s = &c->ring[(c->head + i) % c->window];
        if (s->state == SLOT_SENT && s->batch_id == batch_id)
            return s;
    }
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Receives one reply and attaches it to its slot. Returns 0, or -1 on a socket error. */
static int recv_reply(send_ctx *c)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, c->sock, 0) < 0) {
        ctl_errorf("send: receiving from %s: %s", c->g->endpoint, zmq_strerror(zmq_errno()));
        zmq_msg_close(&msg);
        return -1;
    }
    Loyalty__AckBatch *r = loyalty__ack_batch__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
    zmq_msg_close(&msg);
    if (r == NULL) {
        ctl_errorf("send: a reply from %s is not an AckBatch; ignored", c->g->endpoint);
        return 0;
    }
    send_slot *s = slot_by_batch(c, r->batch_id);
    if (s == NULL) {
        ctl_errorf("send: reply for unknown batch %" PRIu64 " ignored", r->batch_id);
        loyalty__ack_batch__free_unpacked(r, NULL);
        return 0;
    }
    if (r->n_acks == 0 && r->reason == LOYALTY__REASON__OVERLOADED &&
        s->retries < SEND_RETRIES_MAX) {
        loyalty__ack_batch__free_unpacked(r, NULL);
        sleep_ms(SEND_RETRY_BACKOFF_MS << s->retries);
        s->retries++;
        return slot_send(c, s);
    }
    s->reply = r;
    s->state = SLOT_DONE;
    return 0;
}

/* Prints and frees complete slots at the head of the ring. */
static void flush_head(send_ctx *c)
{
    while (c->used > 0 && c->ring[c->head].state == SLOT_DONE) {
        slot_print(c, &c->ring[c->head], NULL);
        slot_reset(&c->ring[c->head]);
        c->head = (c->head + 1) % c->window;
        c->used--;
    }
}

/* Opens free slots from input and sends them while the window has room. */
static int fill_window(send_ctx *c)
{
    while ((!c->eof || c->pending) && c->used < c->window) {
        send_slot *s = &c->ring[(c->head + c->used) % c->window];
        LT_ASSERT(s->state == SLOT_FREE);
        s->state = SLOT_FILLING;
        s->batch_id = c->next_batch_id++;
        c->used++;
        int rc = slot_fill(c, s);
        if (s->events_n == 0)
            s->state = SLOT_DONE; /* only invalid lines (or nothing): nothing to send */
        else if (slot_send(c, s) < 0)
            return -1;
        if (rc < 0)
            return -1;
        flush_head(c);
    }
    return 0;
}

static int run(send_ctx *c)
{
    int rc = 0;
    while (rc == 0) {
        if (fill_window(c) < 0) {
            rc = -1;
            break;
        }
        flush_head(c);
        if (c->used == 0 && c->eof && c->pending == NULL)
            break;
        zmq_pollitem_t pi = {c->sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&pi, 1, c->g->timeout_ms);
        if (n < 0 && zmq_errno() == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                ctl_errorf("send: no reply from %s within %d ms (is loyaltyd running?)",
                           c->g->endpoint, c->g->timeout_ms);
            else
                ctl_errorf("send: poll: %s", zmq_strerror(zmq_errno()));
            rc = -1;
            break;
        }
        rc = recv_reply(c);
    }
    /* Whatever is still in flight gets an UNANSWERED line, in order. */
    while (c->used > 0) {
        send_slot *s = &c->ring[c->head];
        slot_print(c, s, "no reply; the event may or may not be applied, resending is safe");
        slot_reset(s);
        c->head = (c->head + 1) % c->window;
        c->used--;
    }
    return rc;
}

/* ------------------------------------------------------------------ --check */

static const char *kind_name(Loyalty__Event__BodyCase k)
{
    switch (k) {
    case LOYALTY__EVENT__BODY_SALE:
        return "sale";
    case LOYALTY__EVENT__BODY_ENROL:
        return "enrol";
    case LOYALTY__EVENT__BODY_CARD_LINK:
        return "card_link";
    case LOYALTY__EVENT__BODY_GIFT:
        return "gift";
    case LOYALTY__EVENT__BODY_ADJUSTMENT:
        return "adjustment";
    case LOYALTY__EVENT__BODY_RETURN_SALE:
        return "return";
    case LOYALTY__EVENT__BODY_MERGE:
        return "merge";
    default:
        return "none";
    }
}

/* Validates each event as ingest would (limits as the daemon's defaults), sends nothing. */
static int run_check(send_ctx *c)
{
    ingest_limits lim = {(int64_t)time(NULL), 86400, 3650 * 86400LL};
    lt_event *ev = malloc(sizeof *ev);
    LT_ASSERT(ev != NULL);
    send_slot *s = &c->ring[0];
    while (!c->eof || c->pending) {
        s->batch_id = c->next_batch_id++;
        int rc = slot_fill(c, s);
        size_t e = 0;
        for (size_t i = 0; i < s->items_n; i++) {
            const send_item *it = &s->items[i];
            if (it->error) {
                print_error_item(c, it);
                continue;
            }
            char msg[CTL_ERR_MAX] = "";
            const Loyalty__Event *pe = s->events[e++];
            int reason = ingest_event_from_pb(pe, &lim, ev, msg, sizeof msg);
            if (reason != LT_R_NONE) {
                print_unacked(c, it, reason, msg[0] ? msg : lt_reason_msg(reason));
                continue;
            }
            c->accepted++;
            if (c->g->json)
                print_json(json_pack("{s:I,s:I,s:I,s:s,s:s}", "line", (json_int_t)it->line, "node",
                                     (json_int_t)it->node, "id", (json_int_t)it->id, "status",
                                     "VALID", "kind", kind_name(pe->body_case)));
            else
                printf("line %" PRIu64 " node=%" PRIu64 " id=%" PRIu64 " VALID %s\n", it->line,
                       it->node, it->id, kind_name(pe->body_case));
        }
        slot_reset(s);
        if (rc < 0)
            break;
    }
    free(ev);
    return 0;
}

/* ------------------------------------------------------------------ setup */

static int parse_args(send_ctx *c, int argc, char **argv, const char **path)
{
    enum { O_BATCH = 1, O_WINDOW, O_NODE, O_STORE, O_OFFSET, O_CHECK };
    static const struct option longopts[] = {{"batch", required_argument, NULL, O_BATCH},
                                             {"window", required_argument, NULL, O_WINDOW},
                                             {"node", required_argument, NULL, O_NODE},
                                             {"store", required_argument, NULL, O_STORE},
                                             {"utc-offset", required_argument, NULL, O_OFFSET},
                                             {"check", no_argument, NULL, O_CHECK},
                                             CTL_GLOBAL_LONGOPTS};
    int opt;
    uint64_t v;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = 0;
        if (opt == O_BATCH)
            rc = ctl_parse_u64("--batch", optarg, 1, LT_BATCH_EVENTS_MAX, &v), c->batch = v;
        else if (opt == O_WINDOW)
            rc = ctl_parse_u64("--window", optarg, 1, SEND_WINDOW_MAX, &v), c->window = v;
        else if (opt == O_NODE)
            rc = ctl_parse_u64("--node", optarg, 1, INT64_MAX, &v), c->defaults.node_id = v;
        else if (opt == O_STORE)
            c->defaults.store_id = optarg;
        else if (opt == O_CHECK)
            c->check = true;
        else if (opt == O_OFFSET) {
            char *end;
            long off = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || off < -18 * 60 || off > 18 * 60) {
                ctl_errorf("--utc-offset: '%s' is not minutes in [-1080, 1080]", optarg);
                rc = -1;
            }
            c->defaults.has_utc_offset = 1;
            c->defaults.utc_offset_min = (int32_t)off;
        } else
            rc = opt == 'h' ? 1 : opt == '?' ? -1 : ctl_global_opt(c->g, opt, optarg);
        if (rc != 0)
            return ctl_usage(rc, send_usage, argv[0]) == CTL_EXIT_OK ? 1 : -1;
    }
    if (argc - optind != 1) {
        ctl_errorf("send: expected one FILE (or - for stdin)");
        ctl_usage(-1, send_usage, argv[0]);
        return -1;
    }
    *path = argv[optind];
    return 0;
}

static int setup(send_ctx *c, const char *path)
{
    c->in_name = strcmp(path, "-") == 0 ? "stdin" : path;
    c->in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (c->in == NULL) {
        ctl_errorf("send: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    c->items_cap = c->batch + SEND_ERRORS_PER_SLOT_MAX;
    c->ring = calloc(c->window, sizeof *c->ring);
    LT_ASSERT(c->ring != NULL);
    for (size_t i = 0; i < c->window; i++) {
        c->ring[i].items = calloc(c->items_cap, sizeof *c->ring[i].items);
        c->ring[i].events = calloc(c->batch, sizeof *c->ring[i].events);
        LT_ASSERT(c->ring[i].items != NULL && c->ring[i].events != NULL);
    }
    c->defaults.zone_offset = ingest_zone_offset;
    if (c->check)
        return 0;
    c->zctx = zmq_ctx_new();
    c->sock = c->zctx ? zmq_socket(c->zctx, ZMQ_DEALER) : NULL;
    if (c->sock == NULL) {
        ctl_errorf("send: zmq: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(c->sock, c->g->endpoint) != 0) {
        ctl_errorf("send: cannot connect to %s: %s", c->g->endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    c->next_batch_id = 1;
    return 0;
}

static void teardown(send_ctx *c)
{
    if (c->ring) {
        for (size_t i = 0; i < c->window; i++) {
            slot_reset(&c->ring[i]);
            free(c->ring[i].items);
            free(c->ring[i].events);
        }
        free(c->ring);
    }
    if (c->sock)
        zmq_close(c->sock);
    if (c->zctx)
        zmq_ctx_term(c->zctx);
    if (c->in && c->in != stdin)
        fclose(c->in);
    json_event_free(&c->pending);
    free(c->line);
}

int ctl_cmd_send(ctl_globals *g, int argc, char **argv)
{
    send_ctx c = {0};
    c.g = g;
    c.batch = SEND_BATCH_DEFAULT;
    c.window = SEND_WINDOW_DEFAULT;
    const char *path = NULL;
    int rc = parse_args(&c, argc, argv, &path);
    if (rc != 0)
        return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    if (setup(&c, path) < 0) {
        teardown(&c);
        return CTL_EXIT_FAIL;
    }
    rc = c.check ? run_check(&c) : run(&c);
    if (c.check)
        fprintf(stderr,
                "loyaltyctl: send --check: %" PRIu64 " lines: %" PRIu64 " valid, %" PRIu64
                " invalid events, %" PRIu64 " unparsable lines\n",
                c.line_no, c.accepted, c.rejected, c.invalid);
    else
        fprintf(stderr,
                "loyaltyctl: send: %" PRIu64 " lines in %" PRIu64 " batches: %" PRIu64
                " accepted, %" PRIu64 " duplicate, %" PRIu64 " rejected, %" PRIu64
                " invalid, %" PRIu64 " unanswered\n",
                c.line_no, c.batches, c.accepted, c.duplicate, c.rejected, c.invalid, c.unanswered);
    teardown(&c);
    bool ok = rc == 0 && c.rejected == 0 && c.invalid == 0 && c.unanswered == 0;
    return ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
