/* subscribe.c: `loyaltyctl subscribe`: a SUB socket on the publisher, one line per update. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zmq.h>

#include "ctl.h"
#include "entry.h"

#define SUB_TOPIC_BYTES_MAX 64
#define SUB_MESSAGE_BYTES_MAX (4 << 20)

static const char subscribe_usage[] =
    "usage: loyaltyctl subscribe [--count N] [--wait-ms MS] [--pub EP] [--json] [TOPIC...]\n"
    "\n"
    "Subscribes to the daemon's publisher and prints each update as one line: the topic, the\n"
    "ledger sequence and the message's fields. Topics: member.updated, tier.changed,\n"
    "sale.rated, heartbeat; a TOPIC is a prefix (\"member.\" matches every member.* topic).\n"
    "Default: all topics. Runs until interrupted.\n"
    "\n"
    "  --count N     exit 0 after N messages\n"
    "  --wait-ms MS  exit 1 if no message arrives for MS milliseconds (default: wait forever)\n"
    "\n"
    "exit status: 0 interrupted or --count reached, 1 error or --wait-ms expired, 2 usage.\n"
    "\n";

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static json_t *id_json(const Loyalty__EventId *id)
{
    if (id == NULL)
        return json_null();
    return json_pack("{s:I,s:I}", "node", (json_int_t)id->node_id, "id", (json_int_t)id->event_id);
}

static json_t *member_update_json(const Loyalty__MemberUpdate *m)
{
    return json_pack("{s:I,s:s?,s:I,s:I,s:s?,s:s?,s:I,s:o}", "seq", (json_int_t)m->seq, "member",
                     m->member_id, "balance", (json_int_t)m->balance, "delta", (json_int_t)m->delta,
                     "tier", m->tier, "reason", m->reason, "occurred_at",
                     (json_int_t)m->occurred_at, "event", id_json(m->event_id));
}

static json_t *tier_change_json(const Loyalty__TierChange *t)
{
    return json_pack("{s:I,s:s?,s:s?,s:s?,s:b,s:I}", "seq", (json_int_t)t->seq, "member",
                     t->member_id, "from", t->from_tier, "to", t->to_tier, "upgrade",
                     (int)t->upgrade, "occurred_at", (json_int_t)t->occurred_at);
}

/* sale.rated carries the sale's ledger entry: the full breakdown, per line. */
static json_t *sale_rated_json(const lt_entry *e)
{
    json_t *lines = json_array();
    for (uint32_t i = 0; i < e->lines_n; i++) {
        const lt_line_result *l = &e->lines[i];
        json_array_append_new(
            lines, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "index", (json_int_t)i, "qty",
                             (json_int_t)l->quantity, "paid_fen", (json_int_t)l->paid_fen,
                             "eligible_fen", (json_int_t)l->eligible_fen, "redeemed_fen",
                             (json_int_t)l->redeemed_fen, "points", (json_int_t)l->points,
                             "qualifying_fen", (json_int_t)l->qualifying_fen));
    }
    json_t *ev = json_pack("{s:I,s:I}", "node_id", (json_int_t)e->id.node_id, "event_id",
                           (json_int_t)e->id.event_id);
    int64_t balance = e->postings_n > 0 ? e->postings[0].balance_after : 0;
    const char *tier = e->postings_n > 0 ? e->postings[0].tier_after : "";
    return json_pack("{s:I,s:o,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:I,s:o}", "seq",
                     (json_int_t)e->seq, "event", ev, "member", e->member_id, "store", e->store_id,
                     "occurred_at", (json_int_t)e->occurred_at, "paid_fen", (json_int_t)e->paid_fen,
                     "eligible_fen", (json_int_t)e->eligible_fen, "base_points",
                     (json_int_t)e->base_points, "multiplier_pct", (json_int_t)e->multiplier_pct,
                     "sku_points", (json_int_t)e->sku_points, "earned",
                     (json_int_t)e->points_earned, "redeemed", (json_int_t)e->points_redeemed,
                     "tier_changed_to", tier, "balance", (json_int_t)balance, "lines", lines);
}

/* Decodes one published body by topic. Returns a JSON object (caller owns), or NULL when the
 * body does not decode; *known tells whether the topic is one loyaltyctl knows. */
static json_t *decode(const char *topic, const uint8_t *b, size_t n, bool *known)
{
    json_t *o = NULL;
    *known = true;
    if (strcmp(topic, "member.updated") == 0) {
        Loyalty__MemberUpdate *m = loyalty__member_update__unpack(NULL, n, b);
        o = m ? member_update_json(m) : NULL;
        loyalty__member_update__free_unpacked(m, NULL);
    } else if (strcmp(topic, "tier.changed") == 0) {
        Loyalty__TierChange *t = loyalty__tier_change__unpack(NULL, n, b);
        o = t ? tier_change_json(t) : NULL;
        loyalty__tier_change__free_unpacked(t, NULL);
    } else if (strcmp(topic, "sale.rated") == 0) {
        static lt_entry e; /* large: not on the stack */
        o = entry_decode(b, n, &e) == 0 ? sale_rated_json(&e) : NULL;
    } else if (strcmp(topic, "heartbeat") == 0) {
        Loyalty__Heartbeat *h = loyalty__heartbeat__unpack(NULL, n, b);
        o = h ? json_pack("{s:I,s:I}", "seq", (json_int_t)h->seq, "at", (json_int_t)h->at) : NULL;
        loyalty__heartbeat__free_unpacked(h, NULL);
    } else {
        /* Other notices (R28: points.expiring, member.birthday, ...) carry a MemberUpdate. */
        *known = false;
        Loyalty__MemberUpdate *m = loyalty__member_update__unpack(NULL, n, b);
        o = m ? member_update_json(m) : NULL;
        loyalty__member_update__free_unpacked(m, NULL);
    }
    return o;
}

/* Prints "topic k=v k=v ..." from the decoded object (flat fields; nested ones as JSON). */
static void print_text(const char *topic, json_t *o)
{
    const char *key;
    json_t *v;
    fputs(topic, stdout);
    json_object_foreach(o, key, v)
    {
        if (json_is_null(v))
            continue;
        if (json_is_string(v))
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

/* Receives one two-frame message. Returns 1 printed, 0 nothing (timeout/interrupt), -1 error. */
static int receive_one(const ctl_globals *g, void *sock, int wait_ms)
{
    zmq_pollitem_t pi = {sock, 0, ZMQ_POLLIN, 0};
    int n = zmq_poll(&pi, 1, wait_ms > 0 ? wait_ms : -1);
    if (n < 0)
        return zmq_errno() == EINTR ? 0 : -1;
    if (n == 0)
        return 0;
    char topic[SUB_TOPIC_BYTES_MAX];
    int tn = zmq_recv(sock, topic, sizeof topic - 1, 0);
    if (tn < 0)
        return zmq_errno() == EINTR ? 0 : -1;
    topic[tn < (int)sizeof topic - 1 ? tn : (int)sizeof topic - 1] = '\0';
    int more = 0;
    size_t more_len = sizeof more;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len);
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (more && zmq_msg_recv(&msg, sock, 0) < 0) {
        zmq_msg_close(&msg);
        return -1;
    }
    /* Drain any unexpected further frames so the next read starts at a topic. */
    for (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len); more;
         zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len)) {
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        zmq_msg_recv(&extra, sock, 0);
        zmq_msg_close(&extra);
    }
    bool known;
    json_t *o = decode(topic, zmq_msg_data(&msg), zmq_msg_size(&msg), &known);
    if (o == NULL)
        o = json_pack("{s:s,s:I}", "undecoded", "body is not the expected message", "bytes",
                      (json_int_t)zmq_msg_size(&msg));
    zmq_msg_close(&msg);
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
    return 1;
}

int ctl_cmd_subscribe(ctl_globals *g, int argc, char **argv)
{
    enum { O_COUNT = 1, O_WAIT };
    static const struct option longopts[] = {{"count", required_argument, NULL, O_COUNT},
                                             {"wait-ms", required_argument, NULL, O_WAIT},
                                             CTL_GLOBAL_LONGOPTS};
    uint64_t count = 0, wait_ms = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = 0;
        if (c == O_COUNT)
            rc = ctl_parse_u64("--count", optarg, 1, UINT64_MAX, &count);
        else if (c == O_WAIT)
            rc = ctl_parse_u64("--wait-ms", optarg, 1, CTL_TIMEOUT_MS_MAX, &wait_ms);
        else
            rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
        if (rc != 0)
            return ctl_usage(rc, subscribe_usage, argv[0]);
    }
    void *zctx = zmq_ctx_new();
    void *sock = zctx ? zmq_socket(zctx, ZMQ_SUB) : NULL;
    if (sock == NULL) {
        ctl_errorf("subscribe: zmq: %s", zmq_strerror(zmq_errno()));
        return CTL_EXIT_FAIL;
    }
    int zero = 0;
    int64_t max_bytes = SUB_MESSAGE_BYTES_MAX;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_bytes, sizeof max_bytes);
    if (optind == argc)
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
    for (int i = optind; i < argc; i++)
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, argv[i], strlen(argv[i]));
    int code = CTL_EXIT_OK;
    if (zmq_connect(sock, g->pub) != 0) {
        ctl_errorf("subscribe: cannot connect to %s: %s", g->pub, zmq_strerror(zmq_errno()));
        code = CTL_EXIT_FAIL;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    for (uint64_t got = 0; code == CTL_EXIT_OK && !stop_requested && (!count || got < count);) {
        int rc = receive_one(g, sock, (int)wait_ms);
        if (rc < 0) {
            ctl_errorf("subscribe: %s", zmq_strerror(zmq_errno()));
            code = CTL_EXIT_FAIL;
        } else if (rc == 0 && !stop_requested && wait_ms > 0) {
            ctl_errorf("subscribe: no message from %s within %" PRIu64 " ms", g->pub, wait_ms);
            code = CTL_EXIT_FAIL;
        }
        got += (uint64_t)rc;
    }
    zmq_close(sock);
    zmq_ctx_term(zctx);
    return code;
}
