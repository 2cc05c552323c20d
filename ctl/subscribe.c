/* subscribe.c: `loyaltyctl subscribe`: prints the daemon's published updates, one line each.
 *
 * Two modes. Live (the default): a SUB socket with the TOPIC prefixes as socket filters; what
 * ZeroMQ drops is lost. Tracking (--from SEQ or --state-file F): the join algorithm of
 * docs/subscribers.md. The SUB socket takes every topic and buffers while a DEALER on the query
 * endpoint replays the ledger from the position (catch-up); every message is then checked by
 * (seq, part, parts): the next one is printed, a repeat is skipped, and a gap (or a heartbeat
 * beyond the last complete entry) starts another catch-up from the first incomplete entry.
 * TOPICs filter on the client side, so a filtered message is never mistaken for a lost one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "ctl.h"

#define SUB_TOPIC_BYTES_MAX 64
#define SUB_MESSAGE_BYTES_MAX (4 << 20)
#define SUB_BUFFER_MSGS_MAX 200000       /* live messages held during a catch-up; more: dropped */
#define SUB_BUFFER_BYTES_MAX (256 << 20) /* and their bytes; a drop is repaired by a catch-up */
#define SUB_CATCHUP_ENTRIES 1000         /* entries asked for per catch-up request */
#define SUB_BACKOFF_MS_MIN 100           /* first retry delay after a failed catch-up */
#define SUB_BACKOFF_MS_MAX 5000
#define SUB_SAVE_MS 200         /* the state file is written at most this often ... */
#define SUB_SAVE_ENTRIES 1000   /* ... unless this many entries completed since */
#define SUB_POLL_MS 100         /* longest wait before looking at signals and timers */
#define SUB_STATE_BYTES_MAX 128 /* a state file: "SEQ PART\n" */

static const char subscribe_usage[] =
    "usage: loyaltyctl subscribe [--count N] [--wait-ms MS] [--pub EP] [--json] [TOPIC...]\n"
    "       loyaltyctl subscribe --from SEQ | --state-file F [--query EP] [--rcvhwm N]\n"
    "                            [--count N] [--wait-ms MS] [--pub EP] [--json] [TOPIC...]\n"
    "\n"
    "Subscribes to the daemon's publisher and prints each update as one line: the topic, the\n"
    "ledger sequence, the part (part/parts of that entry's messages) and the message's fields.\n"
    "Topics: member.updated, tier.changed, sale.rated, heartbeat; a TOPIC is a prefix\n"
    "(\"member.\" matches every member.* topic). Default: all topics. Runs until interrupted.\n"
    "\n"
    "With --from or --state-file nothing is missed or repeated (docs/subscribers.md): the\n"
    "updates of every entry from SEQ on are printed once, in order, catching up from the\n"
    "ledger (--query) at the start and whenever messages were lost. Heartbeats are then only\n"
    "printed when a TOPIC asks for them.\n"
    "\n"
    "  --from SEQ      start at ledger sequence SEQ (1: everything)\n"
    "  --state-file F  keep the position (the last entry printed completely) in F, written\n"
    "                  atomically at least every 200 ms while it moves and at exit. If F exists\n"
    "                  it wins over --from: printing resumes just after the stored position. If\n"
    "                  not, printing starts at --from, or with the next entry without --from.\n"
    "  --rcvhwm N      receive high-water mark of the SUB socket (default: ZeroMQ's, 1000)\n"
    "  --count N       exit 0 after N messages printed\n"
    "  --wait-ms MS    exit 1 if no message arrives for MS milliseconds (default: wait forever)\n"
    "\n"
    "A failed catch-up (daemon down or restarting) is retried with backoff up to 5 s; only\n"
    "--count, --wait-ms, SIGINT or SIGTERM end the command. --timeout-ms bounds the wait for\n"
    "each catch-up reply frame.\n"
    "\n"
    "exit status: 0 interrupted or --count reached, 1 error or --wait-ms expired, 2 usage.\n"
    "\n";

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ decoding and printing */

static json_t *id_json(const Loyalty__EventId *id)
{
    if (id == NULL)
        return json_null();
    return json_pack("{s:I,s:I}", "node", (json_int_t)id->node_id, "id", (json_int_t)id->event_id);
}

static json_t *member_update_json(const Loyalty__MemberUpdate *m)
{
    return json_pack("{s:I,s:I,s:I,s:s?,s:I,s:I,s:s?,s:s?,s:I,s:o}", "seq", (json_int_t)m->seq,
                     "part", (json_int_t)m->part, "parts", (json_int_t)m->parts, "member",
                     m->member_id, "balance", (json_int_t)m->balance, "delta", (json_int_t)m->delta,
                     "tier", m->tier, "reason", m->reason, "occurred_at",
                     (json_int_t)m->occurred_at, "event", id_json(m->event_id));
}

static json_t *tier_change_json(const Loyalty__TierChange *t)
{
    return json_pack("{s:I,s:I,s:I,s:s?,s:s?,s:s?,s:b,s:I}", "seq", (json_int_t)t->seq, "part",
                     (json_int_t)t->part, "parts", (json_int_t)t->parts, "member", t->member_id,
                     "from", t->from_tier, "to", t->to_tier, "upgrade", (int)t->upgrade,
                     "occurred_at", (json_int_t)t->occurred_at);
}

static json_t *lines_json(const Loyalty__LedgerEntry *e)
{
    json_t *lines = json_array();
    for (size_t i = 0; i < e->n_lines; i++) {
        const Loyalty__LineResult *l = e->lines[i];
        json_array_append_new(
            lines, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "index", (json_int_t)i, "qty",
                             (json_int_t)l->quantity, "paid_fen", (json_int_t)l->paid_fen,
                             "eligible_fen", (json_int_t)l->eligible_fen, "redeemed_fen",
                             (json_int_t)l->redeemed_fen, "points", (json_int_t)l->points,
                             "qualifying_fen", (json_int_t)l->qualifying_fen));
    }
    return lines;
}

/* sale.rated carries the sale's ledger entry: the full breakdown, per line. */
static json_t *sale_rated_json(const Loyalty__SaleRated *s)
{
    static const Loyalty__LedgerEntry empty = LOYALTY__LEDGER_ENTRY__INIT;
    const Loyalty__LedgerEntry *e = s->entry != NULL ? s->entry : &empty;
    const Loyalty__Posting *p0 = e->n_postings > 0 ? e->postings[0] : NULL;
    json_t *o = json_pack("{s:I,s:I,s:I,s:o,s:s?,s:s?,s:I,s:I,s:I}", "seq", (json_int_t)s->seq,
                          "part", (json_int_t)s->part, "parts", (json_int_t)s->parts, "event",
                          id_json(e->id), "member", e->member_id, "store", e->store_id,
                          "occurred_at", (json_int_t)e->occurred_at, "paid_fen",
                          (json_int_t)e->paid_fen, "eligible_fen", (json_int_t)e->eligible_fen);
    json_t *rest = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:s?,s:I,s:o}", "base_points", (json_int_t)e->base_points,
        "multiplier_pct", (json_int_t)e->multiplier_pct, "sku_points", (json_int_t)e->sku_points,
        "earned", (json_int_t)e->points_earned, "redeemed", (json_int_t)e->points_redeemed,
        "tier_changed_to", p0 != NULL ? p0->tier_after : NULL, "balance",
        (json_int_t)(p0 != NULL ? p0->balance_after : 0), "lines", lines_json(e));
    if (o != NULL && rest != NULL)
        json_object_update(o, rest);
    json_decref(rest);
    return o;
}

/* Decodes one published body by topic. Returns a JSON object (caller owns), or NULL when the
 * body does not decode. Topics loyaltyctl does not know (R28 notices: points.expiring,
 * member.birthday, ...) carry a MemberUpdate. */
static json_t *decode(const char *topic, const uint8_t *b, size_t n)
{
    json_t *o = NULL;
    if (strcmp(topic, "tier.changed") == 0) {
        Loyalty__TierChange *t = loyalty__tier_change__unpack(NULL, n, b);
        o = t ? tier_change_json(t) : NULL;
        loyalty__tier_change__free_unpacked(t, NULL);
    } else if (strcmp(topic, "sale.rated") == 0) {
        Loyalty__SaleRated *s = loyalty__sale_rated__unpack(NULL, n, b);
        o = s ? sale_rated_json(s) : NULL;
        loyalty__sale_rated__free_unpacked(s, NULL);
    } else if (strcmp(topic, "heartbeat") == 0) {
        Loyalty__Heartbeat *h = loyalty__heartbeat__unpack(NULL, n, b);
        o = h ? json_pack("{s:I,s:I}", "seq", (json_int_t)h->seq, "at", (json_int_t)h->at) : NULL;
        loyalty__heartbeat__free_unpacked(h, NULL);
    } else {
        Loyalty__MemberUpdate *m = loyalty__member_update__unpack(NULL, n, b);
        o = m ? member_update_json(m) : NULL;
        loyalty__member_update__free_unpacked(m, NULL);
    }
    return o;
}

/* Prints "topic k=v k=v ..." from the decoded object: flat fields, "part=P/PARTS", an event
 * id as node/id and an array as its length. */
static void print_text(const char *topic, json_t *o)
{
    const char *key;
    json_t *v;
    fputs(topic, stdout);
    json_object_foreach(o, key, v)
    {
        if (json_is_null(v) || strcmp(key, "parts") == 0)
            continue;
        if (strcmp(key, "part") == 0)
            printf(" part=%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT, json_integer_value(v),
                   json_integer_value(json_object_get(o, "parts")));
        else if (json_is_string(v))
            printf(" %s=%s", key, json_string_value(v));
        else if (json_is_integer(v))
            printf(" %s=%" JSON_INTEGER_FORMAT, key, json_integer_value(v));
        else if (json_is_boolean(v))
            printf(" %s=%s", key, json_is_true(v) ? "true" : "false");
        else if (json_is_object(v) && json_object_get(v, "node"))
            printf(" %s=%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT, key,
                   json_integer_value(json_object_get(v, "node")),
                   json_integer_value(json_object_get(v, "id")));
        else if (json_is_array(v))
            printf(" %s=%zu", key, json_array_size(v));
    }
    putchar('\n');
}

/* Prints one message as a line of text or JSON. */
static void print_msg(const ctl_globals *g, const char *topic, const uint8_t *b, size_t n)
{
    json_t *o = decode(topic, b, n);
    if (o == NULL)
        o = json_pack("{s:s,s:I}", "undecoded", "body is not the expected message", "bytes",
                      (json_int_t)n);
    if (g->json) {
        json_t *line = json_pack("{s:s}", "topic", topic);
        json_object_update(line, o);
        char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s)
            puts(s);
        free(s);
        json_decref(line);
    } else {
        print_text(topic, o);
    }
    json_decref(o);
    fflush(stdout);
}

/* ------------------------------------------------------------------ messages */

/* One received two-frame message; buffered ones are linked in arrival order. */
typedef struct sub_msg {
    struct sub_msg *next;
    size_t len;
    char topic[SUB_TOPIC_BYTES_MAX];
    uint8_t body[];
} sub_msg;

typedef enum { MSG_DATA, MSG_HEARTBEAT, MSG_END, MSG_BAD } msg_kind;

/* What the gap check needs of a message. */
typedef struct {
    msg_kind kind;
    uint64_t seq; /* data: the entry; heartbeat: the last durable entry */
    uint32_t part, parts;
    uint64_t next_seq, last_seq; /* catchup.end */
    bool more;
    bool refused; /* catchup.end with an error */
} msg_meta;

static void msg_meta_decode(const sub_msg *m, msg_meta *out)
{
    memset(out, 0, sizeof *out);
    out->kind = MSG_BAD;
    if (strcmp(m->topic, "heartbeat") == 0) {
        Loyalty__Heartbeat *h = loyalty__heartbeat__unpack(NULL, m->len, m->body);
        if (h != NULL)
            *out = (msg_meta){.kind = MSG_HEARTBEAT, .seq = h->seq};
        loyalty__heartbeat__free_unpacked(h, NULL);
    } else if (strcmp(m->topic, "catchup.end") == 0) {
        Loyalty__CatchUpEnd *e = loyalty__catch_up_end__unpack(NULL, m->len, m->body);
        if (e != NULL)
            *out = (msg_meta){.kind = MSG_END,
                              .next_seq = e->next_seq,
                              .last_seq = e->last_seq,
                              .more = e->more,
                              .refused = e->error != NULL && e->error[0] != '\0'};
        if (e != NULL && out->refused)
            ctl_errorf("subscribe: catch-up refused: %s", e->error);
        loyalty__catch_up_end__free_unpacked(e, NULL);
    } else if (strcmp(m->topic, "tier.changed") == 0) {
        Loyalty__TierChange *t = loyalty__tier_change__unpack(NULL, m->len, m->body);
        if (t != NULL)
            *out = (msg_meta){.kind = MSG_DATA, .seq = t->seq, .part = t->part, .parts = t->parts};
        loyalty__tier_change__free_unpacked(t, NULL);
    } else if (strcmp(m->topic, "sale.rated") == 0) {
        Loyalty__SaleRated *s = loyalty__sale_rated__unpack(NULL, m->len, m->body);
        if (s != NULL)
            *out = (msg_meta){.kind = MSG_DATA, .seq = s->seq, .part = s->part, .parts = s->parts};
        loyalty__sale_rated__free_unpacked(s, NULL);
    } else {
        Loyalty__MemberUpdate *u = loyalty__member_update__unpack(NULL, m->len, m->body);
        if (u != NULL)
            *out = (msg_meta){.kind = MSG_DATA, .seq = u->seq, .part = u->part, .parts = u->parts};
        loyalty__member_update__free_unpacked(u, NULL);
    }
    if (out->kind == MSG_DATA && (out->seq == 0 || out->part == 0 || out->part > out->parts))
        out->kind = MSG_BAD;
}

/* Receives one two-frame message without waiting. Returns 1 and *out (caller frees), 0 when
 * nothing is there (or a signal came), -1 on a socket error. Extra frames are dropped. */
static int msg_recv(void *sock, sub_msg **out)
{
    *out = NULL;
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    int rc = 0;
    if (zmq_msg_recv(&topic, sock, ZMQ_DONTWAIT) < 0) {
        rc = zmq_errno() == EAGAIN || zmq_errno() == EINTR ? 0 : -1;
        goto done;
    }
    if (zmq_msg_more(&topic) && zmq_msg_recv(&body, sock, 0) < 0) {
        rc = -1;
        goto done;
    }
    /* drain unexpected further frames so the next read starts at a topic */
    for (int more = zmq_msg_more(&body); more;) {
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        more = zmq_msg_recv(&extra, sock, 0) >= 0 && zmq_msg_more(&extra);
        zmq_msg_close(&extra);
    }
    size_t len = zmq_msg_size(&body);
    sub_msg *m = malloc(sizeof *m + (len ? len : 1));
    if (m == NULL) {
        errno = ENOMEM;
        rc = -1;
        goto done;
    }
    size_t tn = zmq_msg_size(&topic);
    tn = tn < sizeof m->topic - 1 ? tn : sizeof m->topic - 1;
    memcpy(m->topic, zmq_msg_data(&topic), tn);
    m->topic[tn] = '\0';
    memcpy(m->body, zmq_msg_data(&body), len);
    m->len = len;
    m->next = NULL;
    *out = m;
    rc = 1;
done:
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    return rc;
}

/* ------------------------------------------------------------------ live mode */

/* Live mode: socket-level topic filters, print whatever arrives. Returns an exit code. */
static int run_live(const ctl_globals *g, void *sock, char **topics, int topics_n, uint64_t count,
                    uint64_t wait_ms)
{
    if (topics_n == 0)
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
    for (int i = 0; i < topics_n; i++)
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, topics[i], strlen(topics[i]));
    int64_t last_ms = now_ms();
    for (uint64_t got = 0; !stop_requested && (!count || got < count);) {
        zmq_pollitem_t pi = {sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&pi, 1, SUB_POLL_MS);
        if (n < 0 && zmq_errno() != EINTR) {
            ctl_errorf("subscribe: %s", zmq_strerror(zmq_errno()));
            return CTL_EXIT_FAIL;
        }
        sub_msg *m = NULL;
        int rc = n > 0 ? msg_recv(sock, &m) : 0;
        if (rc < 0) {
            ctl_errorf("subscribe: %s", zmq_strerror(zmq_errno()));
            return CTL_EXIT_FAIL;
        }
        if (rc == 0) {
            if (wait_ms > 0 && now_ms() - last_ms >= (int64_t)wait_ms && !stop_requested) {
                ctl_errorf("subscribe: no message from %s within %" PRIu64 " ms", g->pub, wait_ms);
                return CTL_EXIT_FAIL;
            }
            continue;
        }
        last_ms = now_ms();
        print_msg(g, m->topic, m->body, m->len);
        free(m);
        got++;
    }
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ tracking mode */

typedef enum { NEXT, REPEAT, GAP } verdict;

typedef struct {
    const ctl_globals *g;
    void *zctx, *sub, *dealer;
    char **topics; /* client-side prefix filters; none: every data topic */
    int topics_n;
    uint64_t count, wait_ms, printed;
    /* position: entries <= done_seq printed completely, parts 1..part_done of done_seq + 1 */
    uint64_t done_seq;
    uint32_t part_done;
    bool need_catchup;
    /* live messages that arrived during a catch-up, in order */
    sub_msg *buf_head, *buf_tail;
    size_t buf_n, buf_bytes;
    uint64_t buf_dropped;
    /* the state file */
    const char *state_path;
    uint64_t saved_seq;
    uint32_t saved_part;
    int64_t saved_ms;
    bool save_failed;
    int64_t activity_ms; /* last message from either socket, for --wait-ms */
    bool warned_bad;
} tracker;

static bool done(const tracker *t)
{
    return stop_requested || (t->count && t->printed >= t->count);
}

static bool wanted(const tracker *t, const char *topic, bool heartbeat)
{
    if (t->topics_n == 0)
        return !heartbeat;
    for (int i = 0; i < t->topics_n; i++)
        if (strncmp(topic, t->topics[i], strlen(t->topics[i])) == 0)
            return !heartbeat || t->topics[i][0] != '\0';
    return false;
}

static verdict judge(const tracker *t, const msg_meta *mm)
{
    if (mm->kind == MSG_HEARTBEAT)
        return mm->seq > t->done_seq ? GAP : REPEAT;
    LT_ASSERT(mm->kind == MSG_DATA);
    uint64_t want = t->done_seq + 1;
    if (mm->seq < want || (mm->seq == want && mm->part <= t->part_done))
        return REPEAT;
    if (mm->seq == want && mm->part == t->part_done + 1)
        return NEXT;
    return GAP;
}

/* ---- the state file: "SEQ PART\n", the position; PART parts of SEQ + 1 already printed */

/* Reads the position from path. Returns 1 and the position, 0 if the file does not exist, or
 * -1 (message printed) if it cannot be read or does not hold a position. */
static int state_load(const char *path, uint64_t *seq, uint32_t *part)
{
    FILE *f = fopen(path, "r");
    if (f == NULL && errno == ENOENT)
        return 0;
    if (f == NULL) {
        ctl_errorf("subscribe: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    char text[SUB_STATE_BYTES_MAX] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    unsigned long long s = 0;
    unsigned p = 0;
    int got = sscanf(text, "%llu %u", &s, &p);
    if (got < 1) {
        ctl_errorf("subscribe: %s does not hold a position (\"SEQ PART\")", path);
        return -1;
    }
    *seq = s;
    *part = got == 2 ? p : 0;
    return 1;
}

/* Writes the position atomically (temp file, fsync, rename). Returns 0 or -1 (message
 * printed once per run of failures). */
static int state_save(tracker *t)
{
    char tmp[4096], text[SUB_STATE_BYTES_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", t->state_path) >= sizeof tmp) {
        ctl_errorf("subscribe: state file path too long");
        return -1;
    }
    int n = snprintf(text, sizeof text, "%" PRIu64 " %" PRIu32 "\n", t->done_seq, t->part_done);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    if (fd >= 0)
        ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, t->state_path) == 0;
    t->saved_ms = now_ms();
    if (!ok) {
        if (!t->save_failed)
            ctl_errorf("subscribe: cannot write %s: %s", t->state_path, strerror(errno));
        t->save_failed = true;
        return -1;
    }
    t->save_failed = false;
    t->saved_seq = t->done_seq;
    t->saved_part = t->part_done;
    return 0;
}

static void state_maybe_save(tracker *t)
{
    if (t->state_path == NULL || (t->saved_seq == t->done_seq && t->saved_part == t->part_done))
        return;
    if (now_ms() - t->saved_ms >= SUB_SAVE_MS || t->done_seq - t->saved_seq >= SUB_SAVE_ENTRIES)
        state_save(t);
}

/* ---- delivery */

/* Handles one message by the gap rules: prints it if it is the next one (and wanted). Returns
 * the verdict, and the message's meta in mm; the caller acts on GAP. */
static verdict handle(tracker *t, const sub_msg *m, msg_meta *out)
{
    msg_meta mm;
    msg_meta_decode(m, &mm);
    *out = mm;
    if (mm.kind == MSG_BAD || mm.kind == MSG_END) {
        if (!t->warned_bad)
            ctl_errorf("subscribe: skipping a '%s' message without seq/part/parts (is the "
                       "daemon older than this loyaltyctl?)",
                       m->topic);
        t->warned_bad = true;
        return REPEAT;
    }
    verdict v = judge(t, &mm);
    if (mm.kind == MSG_HEARTBEAT) {
        if (v != GAP && wanted(t, m->topic, true) && !done(t)) {
            print_msg(t->g, m->topic, m->body, m->len);
            t->printed++;
        }
        return v;
    }
    if (v != NEXT)
        return v;
    if (wanted(t, m->topic, false)) {
        print_msg(t->g, m->topic, m->body, m->len);
        t->printed++;
    }
    if (mm.part == mm.parts) {
        t->done_seq++;
        t->part_done = 0;
    } else {
        t->part_done++;
    }
    state_maybe_save(t);
    return NEXT;
}

static void buffer_push_back(tracker *t, sub_msg *m)
{
    if (t->buf_n >= SUB_BUFFER_MSGS_MAX || t->buf_bytes + m->len > SUB_BUFFER_BYTES_MAX) {
        /* like a ZeroMQ drop: the gap rules notice it and a catch-up repairs it */
        t->buf_dropped++;
        free(m);
        return;
    }
    m->next = NULL;
    if (t->buf_tail != NULL)
        t->buf_tail->next = m;
    else
        t->buf_head = m;
    t->buf_tail = m;
    t->buf_n++;
    t->buf_bytes += m->len;
}

static void buffer_push_front(tracker *t, sub_msg *m)
{
    m->next = t->buf_head;
    t->buf_head = m;
    if (t->buf_tail == NULL)
        t->buf_tail = m;
    t->buf_n++;
    t->buf_bytes += m->len;
}

static sub_msg *buffer_pop(tracker *t)
{
    sub_msg *m = t->buf_head;
    if (m == NULL)
        return NULL;
    t->buf_head = m->next;
    if (t->buf_head == NULL)
        t->buf_tail = NULL;
    t->buf_n--;
    t->buf_bytes -= m->len;
    return m;
}

/* Moves what the SUB socket holds into the buffer. Returns 0, or -1 on a socket error. */
static int sub_drain(tracker *t)
{
    for (;;) {
        sub_msg *m;
        int rc = msg_recv(t->sub, &m);
        if (rc <= 0)
            return rc;
        t->activity_ms = now_ms();
        buffer_push_back(t, m);
    }
}

/* ---- catch-up */

static void dealer_close(tracker *t)
{
    if (t->dealer != NULL)
        zmq_close(t->dealer);
    t->dealer = NULL;
}

/* Sends a catch-up request from t->done_seq + 1 on a fresh DEALER. Returns 0 or -1. */
static int catchup_request(tracker *t)
{
    dealer_close(t);
    t->dealer = zmq_socket(t->zctx, ZMQ_DEALER);
    if (t->dealer == NULL)
        return -1;
    int zero = 0;
    int64_t max_bytes = SUB_MESSAGE_BYTES_MAX;
    zmq_setsockopt(t->dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(t->dealer, ZMQ_RCVHWM, &zero, sizeof zero); /* a reply is bounded */
    zmq_setsockopt(t->dealer, ZMQ_MAXMSGSIZE, &max_bytes, sizeof max_bytes);
    if (zmq_connect(t->dealer, t->g->query) != 0)
        return -1;
    Loyalty__CatchUp cu = LOYALTY__CATCH_UP__INIT;
    cu.has_from_seq = cu.has_max_entries = 1;
    cu.from_seq = t->done_seq + 1;
    cu.max_entries = SUB_CATCHUP_ENTRIES;
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_CATCH_UP;
    q.catch_up = &cu;
    uint8_t buf[64];
    size_t n = loyalty__query__get_packed_size(&q);
    LT_ASSERT(n <= sizeof buf);
    loyalty__query__pack(&q, buf);
    return zmq_send(t->dealer, buf, n, ZMQ_DONTWAIT) == (int)n ? 0 : -1;
}

/* Waits up to ms while buffering the live stream. Returns 0, or -1 on a socket error. */
static int pause_buffering(tracker *t, int64_t ms)
{
    for (int64_t end = now_ms() + ms; !stop_requested && now_ms() < end;) {
        zmq_pollitem_t pi = {t->sub, 0, ZMQ_POLLIN, 0};
        int64_t left = end - now_ms();
        if (zmq_poll(&pi, 1, left < SUB_POLL_MS ? (long)left : SUB_POLL_MS) > 0 && sub_drain(t) < 0)
            return -1;
    }
    return 0;
}

/* One catch-up round trip: delivers the reply's messages and buffers the live stream meanwhile.
 * Returns 1 with *end when the reply is complete, 0 on a timeout or a refusal, -1 on a socket
 * error. */
static int catchup_round(tracker *t, msg_meta *end)
{
    if (catchup_request(t) != 0)
        return 0;
    int64_t deadline = now_ms() + t->g->timeout_ms;
    while (!done(t)) {
        zmq_pollitem_t pi[2] = {{t->dealer, 0, ZMQ_POLLIN, 0}, {t->sub, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(pi, 2, SUB_POLL_MS) < 0 && zmq_errno() != EINTR)
            return -1;
        if ((pi[1].revents & ZMQ_POLLIN) && sub_drain(t) < 0)
            return -1;
        for (sub_msg *m; !done(t);) {
            int rc = msg_recv(t->dealer, &m);
            if (rc < 0)
                return -1;
            if (rc == 0)
                break;
            t->activity_ms = now_ms();
            deadline = t->activity_ms + t->g->timeout_ms;
            if (strcmp(m->topic, "catchup.end") == 0) {
                msg_meta_decode(m, end);
                free(m);
                return end->kind == MSG_END && !end->refused ? 1 : 0;
            }
            /* a hole inside the reply (never expected) leaves the position behind: the next
             * round asks again from there */
            msg_meta mm;
            handle(t, m, &mm);
            free(m);
        }
        if (now_ms() >= deadline) {
            ctl_errorf("subscribe: no catch-up reply from %s within %d ms", t->g->query,
                       t->g->timeout_ms);
            return 0;
        }
    }
    return 0;
}

/* Catches up from the first incomplete entry until the daemon has nothing more, retrying with
 * backoff. Returns 0 (caught up, or told to stop), or -1 on a socket error. */
static int catch_up(tracker *t)
{
    int64_t backoff_ms = SUB_BACKOFF_MS_MIN;
    while (!done(t)) {
        uint64_t before = t->done_seq;
        msg_meta end;
        int rc = catchup_round(t, &end);
        if (rc < 0)
            return -1;
        if (rc == 1 && !end.more && t->done_seq + 1 >= end.next_seq)
            break;
        if (rc == 1 && t->done_seq > before) {
            backoff_ms = SUB_BACKOFF_MS_MIN;
            continue; /* more to come */
        }
        if (rc == 1)
            ctl_errorf("subscribe: catch-up from %" PRIu64 " made no progress (next %" PRIu64
                       ", last %" PRIu64 "); retrying",
                       before + 1, end.next_seq, end.last_seq);
        dealer_close(t);
        if (pause_buffering(t, backoff_ms) < 0)
            return -1;
        backoff_ms = backoff_ms * 2 < SUB_BACKOFF_MS_MAX ? backoff_ms * 2 : SUB_BACKOFF_MS_MAX;
    }
    dealer_close(t);
    t->need_catchup = false;
    return 0;
}

/* ---- the main loop */

/* Waits for the first message on the SUB socket (the subscription has reached the publisher)
 * and buffers it. Without a start position it starts with that message's entry (the next one
 * after a heartbeat). Returns 1 connected, 0 stopped or timed out, -1 socket error. */
static int wait_connected(tracker *t, bool have_position)
{
    while (!done(t) && t->buf_head == NULL) {
        zmq_pollitem_t pi = {t->sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, SUB_POLL_MS) < 0 && zmq_errno() != EINTR)
            return -1;
        if (sub_drain(t) < 0)
            return -1;
        if (t->wait_ms && t->buf_head == NULL && now_ms() - t->activity_ms >= (int64_t)t->wait_ms)
            return 0;
    }
    if (t->buf_head == NULL)
        return 0;
    if (!have_position) {
        msg_meta mm;
        msg_meta_decode(t->buf_head, &mm);
        t->done_seq = mm.kind == MSG_HEARTBEAT ? mm.seq : mm.seq > 0 ? mm.seq - 1 : 0;
        t->part_done = 0;
    }
    return 1;
}

/* Tracking mode. Returns an exit code. */
static int run_tracking(tracker *t, bool have_position)
{
    zmq_setsockopt(t->sub, ZMQ_SUBSCRIBE, "", 0); /* filters on the socket would hide gaps */
    t->activity_ms = now_ms();
    int rc = wait_connected(t, have_position);
    t->need_catchup = true;
    while (rc > 0 && !done(t)) {
        if (t->need_catchup) {
            if (catch_up(t) < 0) {
                rc = -1;
                break;
            }
            continue; /* --count may have been reached */
        }
        sub_msg *m = buffer_pop(t);
        if (m == NULL) {
            zmq_pollitem_t pi = {t->sub, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&pi, 1, SUB_POLL_MS) < 0 && zmq_errno() != EINTR) {
                rc = -1;
                break;
            }
            if (sub_drain(t) < 0) {
                rc = -1;
                break;
            }
            state_maybe_save(t);
            if (t->wait_ms && t->buf_head == NULL &&
                now_ms() - t->activity_ms >= (int64_t)t->wait_ms) {
                rc = 0;
                break;
            }
            continue;
        }
        msg_meta mm;
        if (handle(t, m, &mm) == GAP) {
            if (t->buf_dropped > 0)
                ctl_errorf("subscribe: %" PRIu64 " live messages dropped while catching up",
                           t->buf_dropped);
            ctl_errorf("subscribe: gap: expected seq %" PRIu64 " part %" PRIu32
                       ", got %s seq %" PRIu64 " part %" PRIu32 "/%" PRIu32 ": catching up",
                       t->done_seq + 1, t->part_done + 1, m->topic, mm.seq, mm.part, mm.parts);
            t->buf_dropped = 0;
            t->need_catchup = true;
            buffer_push_front(t, m); /* judged again after the catch-up */
            continue;
        }
        free(m);
    }
    if (rc < 0)
        ctl_errorf("subscribe: %s", zmq_strerror(zmq_errno()));
    int code = rc < 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
    if (rc == 0 && !done(t)) {
        ctl_errorf("subscribe: no message from %s within %" PRIu64 " ms", t->g->pub, t->wait_ms);
        code = CTL_EXIT_FAIL;
    }
    if (t->state_path != NULL && state_save(t) < 0)
        code = CTL_EXIT_FAIL;
    for (sub_msg *m; (m = buffer_pop(t)) != NULL;)
        free(m);
    dealer_close(t);
    return code;
}

/* Sets the start position: the state file's if it exists, else --from (from > 0). Returns 0
 * and whether a position is known, or -1 (message printed) if the state file is unreadable. */
static int position_init(tracker *t, uint64_t from, bool *have_position)
{
    *have_position = from > 0;
    if (from > 0)
        t->done_seq = from - 1;
    if (t->state_path == NULL)
        return 0;
    int rc = state_load(t->state_path, &t->saved_seq, &t->saved_part);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        t->saved_seq = UINT64_MAX; /* nothing saved yet: the first save always writes */
        return 0;
    }
    t->done_seq = t->saved_seq;
    t->part_done = t->saved_part;
    *have_position = true;
    return 0;
}

int ctl_cmd_subscribe(ctl_globals *g, int argc, char **argv)
{
    enum { O_COUNT = 1, O_WAIT, O_FROM, O_STATE, O_RCVHWM };
    static const struct option longopts[] = {{"count", required_argument, NULL, O_COUNT},
                                             {"wait-ms", required_argument, NULL, O_WAIT},
                                             {"from", required_argument, NULL, O_FROM},
                                             {"state-file", required_argument, NULL, O_STATE},
                                             {"rcvhwm", required_argument, NULL, O_RCVHWM},
                                             CTL_GLOBAL_LONGOPTS};
    uint64_t count = 0, wait_ms = 0, from = 0, rcvhwm = 0;
    const char *state_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = 0;
        if (c == O_COUNT)
            rc = ctl_parse_u64("--count", optarg, 1, UINT64_MAX, &count);
        else if (c == O_WAIT)
            rc = ctl_parse_u64("--wait-ms", optarg, 1, CTL_TIMEOUT_MS_MAX, &wait_ms);
        else if (c == O_FROM)
            rc = ctl_parse_u64("--from", optarg, 1, UINT64_MAX - 1, &from);
        else if (c == O_RCVHWM)
            rc = ctl_parse_u64("--rcvhwm", optarg, 1, 1000000, &rcvhwm);
        else if (c == O_STATE)
            state_path = optarg;
        else
            rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
        if (rc != 0)
            return ctl_usage(rc, subscribe_usage, argv[0]);
    }
    if (state_path != NULL && state_path[0] == '\0') {
        ctl_errorf("--state-file: empty path");
        return ctl_usage(-1, subscribe_usage, argv[0]);
    }
    tracker t = {.g = g,
                 .topics = argv + optind,
                 .topics_n = argc - optind,
                 .count = count,
                 .wait_ms = wait_ms,
                 .state_path = state_path};
    bool have_position;
    if (position_init(&t, from, &have_position) < 0)
        return CTL_EXIT_FAIL;

    t.zctx = zmq_ctx_new();
    t.sub = t.zctx ? zmq_socket(t.zctx, ZMQ_SUB) : NULL;
    if (t.sub == NULL) {
        ctl_errorf("subscribe: zmq: %s", zmq_strerror(zmq_errno()));
        return CTL_EXIT_FAIL;
    }
    int zero = 0, hwm = (int)rcvhwm;
    int64_t max_bytes = SUB_MESSAGE_BYTES_MAX;
    zmq_setsockopt(t.sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(t.sub, ZMQ_MAXMSGSIZE, &max_bytes, sizeof max_bytes);
    if (rcvhwm > 0)
        zmq_setsockopt(t.sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    int code = CTL_EXIT_OK;
    if (zmq_connect(t.sub, g->pub) != 0) {
        ctl_errorf("subscribe: cannot connect to %s: %s", g->pub, zmq_strerror(zmq_errno()));
        code = CTL_EXIT_FAIL;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (code == CTL_EXIT_OK && (from > 0 || state_path != NULL))
        code = run_tracking(&t, have_position);
    else if (code == CTL_EXIT_OK)
        code = run_live(g, t.sub, t.topics, t.topics_n, count, wait_ms);
    zmq_close(t.sub);
    zmq_ctx_term(t.zctx);
    return code;
}
