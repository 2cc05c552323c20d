/* query.c: the query endpoint round-trip and the commands built on it: member show, status. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zmq.h>

#include "ctl.h"

/* A query reply is one member's view: lots and cards bound it well below this. */
#define CTL_REPLY_BYTES_MAX (16 << 20)

int ctl_query(void *zctx, const char *endpoint, const Loyalty__Query *q, int timeout_ms,
              Loyalty__QueryReply **out, char *err, size_t err_len)
{
    LT_ASSERT(zctx != NULL);
    LT_ASSERT(q != NULL);
    *out = NULL;
    void *sock = zmq_socket(zctx, ZMQ_DEALER);
    if (sock == NULL) {
        snprintf(err, err_len, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    int zero = 0, rc = -1;
    int64_t max_bytes = CTL_REPLY_BYTES_MAX;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_bytes, sizeof max_bytes);
    uint8_t *buf = NULL;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_connect(sock, endpoint) != 0) {
        snprintf(err, err_len, "cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto done;
    }
    size_t len = loyalty__query__get_packed_size(q);
    buf = malloc(len ? len : 1);
    if (buf == NULL) {
        snprintf(err, err_len, "out of memory");
        goto done;
    }
    loyalty__query__pack(q, buf);
    if (zmq_send(sock, buf, len, 0) < 0) {
        snprintf(err, err_len, "send to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto done;
    }
    zmq_pollitem_t pi = {sock, 0, ZMQ_POLLIN, 0};
    int n = zmq_poll(&pi, 1, timeout_ms);
    if (n < 0) {
        snprintf(err, err_len, "poll: %s", zmq_strerror(zmq_errno()));
        goto done;
    }
    if (n == 0) {
        snprintf(err, err_len, "no reply from %s within %d ms (is loyaltyd running?)", endpoint,
                 timeout_ms);
        goto done;
    }
    if (zmq_msg_recv(&msg, sock, 0) < 0) {
        snprintf(err, err_len, "receive from %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto done;
    }
    *out = loyalty__query_reply__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
    if (*out == NULL) {
        snprintf(err, err_len, "reply from %s is not a QueryReply (%zu bytes)", endpoint,
                 zmq_msg_size(&msg));
        goto done;
    }
    rc = 0;
done:
    zmq_msg_close(&msg);
    free(buf);
    zmq_close(sock);
    return rc;
}

/* Runs one query with a private context. Returns 0 and *out, or -1 (error printed). */
static int query_once(const ctl_globals *g, const Loyalty__Query *q, Loyalty__QueryReply **out)
{
    char err[CTL_ERR_MAX];
    void *zctx = zmq_ctx_new();
    if (zctx == NULL) {
        ctl_errorf("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    int rc = ctl_query(zctx, g->query, q, g->timeout_ms, out, err, sizeof err);
    zmq_ctx_term(zctx);
    if (rc < 0)
        ctl_errorf("%s", err);
    return rc;
}

/* ------------------------------------------------------------------ member show */

static const char member_usage[] =
    "usage: loyaltyctl member show [--json] MEMBER_ID\n"
    "\n"
    "Asks the daemon's query endpoint for one member and prints balance, tier, qualifying and\n"
    "lifetime spend, the points lots (points, earned, expires as local dates in TZ), cards and\n"
    "enrolment data. Exit 1 if the member is unknown or the daemon does not answer.\n"
    "\n";

static void member_print_text(const Loyalty__QueryReply *r, const Loyalty__MemberView *m)
{
    char a[64], b[64];
    printf("member        %s\n", m->member_id ? m->member_id : "?");
    printf("status        %s\n", m->status && m->status[0] ? m->status : "active");
    printf("tier          %s\n", m->tier && m->tier[0] ? m->tier : "(base)");
    printf("balance       %" PRId64 "\n", m->balance);
    if (m->debt)
        printf("debt          %" PRId64 "\n", m->debt);
    ctl_fmt_fen(m->qualifying, a, sizeof a);
    printf("qualifying    %" PRId64 " (%s yuan if spend-based)\n", m->qualifying, a);
    ctl_fmt_fen(m->lifetime_spend_fen, a, sizeof a);
    printf("lifetime      %s yuan (%" PRId64 " fen)\n", a, m->lifetime_spend_fen);
    printf("sales         %" PRIu32 "\n", m->sales);
    ctl_fmt_time(m->last_purchase_at, a, sizeof a);
    printf("last purchase %s\n", a);
    ctl_fmt_time(m->enrolled_at, a, sizeof a);
    printf("enrolled      %s\n", a);
    if (m->birth_month)
        printf("birthday      %02" PRIu32 "-%02" PRIu32 "\n", m->birth_month, m->birth_day);
    if (m->referrer && m->referrer[0])
        printf("referrer      %s\n", m->referrer);
    printf("staff         %s\n", m->staff ? "yes" : "no");
    printf("cards         ");
    for (size_t i = 0; i < m->n_cards; i++)
        printf("%s%s", i ? ", " : "", m->cards[i]);
    printf("%s\n", m->n_cards ? "" : "-");
    printf("lots          %zu\n", m->n_lots);
    if (m->n_lots)
        printf("  %12s  %-10s  %s\n", "points", "earned", "expires (at the start of)");
    for (size_t i = 0; i < m->n_lots; i++) {
        ctl_fmt_date(m->lots[i]->earned_at, a, sizeof a);
        ctl_fmt_minute(m->lots[i]->expires_at, b, sizeof b);
        printf("  %12" PRId64 "  %-10s  %s\n", m->lots[i]->points, a, b);
    }
    if (r->has_seq)
        printf("as of seq     %" PRIu64 "\n", r->seq);
}

static json_t *member_json(const Loyalty__QueryReply *r, const Loyalty__MemberView *m)
{
    char a[64];
    json_t *lots = json_array(), *cards = json_array();
    for (size_t i = 0; i < m->n_lots; i++) {
        json_t *lot = json_pack("{s:I,s:I,s:I}", "points", (json_int_t)m->lots[i]->points,
                                "earned_at", (json_int_t)m->lots[i]->earned_at, "expires_at",
                                (json_int_t)m->lots[i]->expires_at);
        ctl_fmt_date(m->lots[i]->earned_at, a, sizeof a);
        json_object_set_new(lot, "earned", json_string(a));
        ctl_fmt_date(m->lots[i]->expires_at, a, sizeof a);
        json_object_set_new(lot, "expires", json_string(a));
        json_array_append_new(lots, lot);
    }
    for (size_t i = 0; i < m->n_cards; i++)
        json_array_append_new(cards, json_string(m->cards[i]));
    json_t *o = json_pack(
        "{s:s?,s:s?,s:s?,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:o,s:o}", "member", m->member_id,
        "status", m->status, "tier", m->tier, "balance", (json_int_t)m->balance, "debt",
        (json_int_t)m->debt, "qualifying", (json_int_t)m->qualifying, "lifetime_spend_fen",
        (json_int_t)m->lifetime_spend_fen, "sales", (json_int_t)m->sales, "enrolled_at",
        (json_int_t)m->enrolled_at, "last_purchase_at", (json_int_t)m->last_purchase_at, "staff",
        (int)m->staff, "lots", lots, "cards", cards);
    if (m->birth_month)
        json_object_set_new(o, "birthday", json_sprintf("%02u-%02u", m->birth_month, m->birth_day));
    if (m->referrer && m->referrer[0])
        json_object_set_new(o, "referrer", json_string(m->referrer));
    if (r->has_seq)
        json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
    return o;
}

static void print_json_line(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(o);
}

int ctl_cmd_member(ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {CTL_GLOBAL_LONGOPTS};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
        if (rc != 0)
            return ctl_usage(rc, member_usage, argv[0]);
    }
    if (argc - optind != 2 || strcmp(argv[optind], "show") != 0) {
        ctl_errorf("member: expected 'member show MEMBER_ID'");
        ctl_usage(-1, member_usage, argv[0]);
        return CTL_EXIT_USAGE;
    }
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_MEMBER_ID;
    q.member_id = argv[optind + 1];
    Loyalty__QueryReply *r;
    if (query_once(g, &q, &r) < 0)
        return CTL_EXIT_FAIL;
    int code = CTL_EXIT_OK;
    if (!r->ok || r->member == NULL) {
        ctl_errorf("member %s: %s", q.member_id, r->error && r->error[0] ? r->error : "not found");
        code = CTL_EXIT_FAIL;
    } else if (g->json) {
        print_json_line(member_json(r, r->member));
    } else {
        member_print_text(r, r->member);
    }
    loyalty__query_reply__free_unpacked(r, NULL);
    return code;
}

/* ------------------------------------------------------------------ status */

static const char status_usage[] = "usage: loyaltyctl status [--json]\n"
                                   "\n"
                                   "Asks the daemon's query endpoint for its committed ledger\n"
                                   "sequence, member count and rules version.\n"
                                   "Exit 1 if the daemon does not answer within --timeout-ms.\n"
                                   "\n";

int ctl_cmd_status(ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {CTL_GLOBAL_LONGOPTS};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
        if (rc != 0)
            return ctl_usage(rc, status_usage, argv[0]);
    }
    if (optind != argc) {
        ctl_errorf("status: unexpected argument '%s'", argv[optind]);
        return CTL_EXIT_USAGE;
    }
    Loyalty__Query q = LOYALTY__QUERY__INIT;
    q.q_case = LOYALTY__QUERY__Q_STATUS;
    q.status = 1;
    Loyalty__QueryReply *r;
    if (query_once(g, &q, &r) < 0)
        return CTL_EXIT_FAIL;
    int code = r->ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    if (!r->ok)
        ctl_errorf("status: %s", r->error ? r->error : "daemon answered not ok");
    else if (g->json)
        print_json_line(json_pack("{s:s,s:I,s:I,s:s?}", "query", g->query, "seq",
                                  (json_int_t)r->seq, "members", (json_int_t)r->members,
                                  "rules_version", r->rules_version));
    else
        printf("daemon        %s\nseq           %" PRIu64 "\nmembers       %" PRIu64
               "\nrules version %s\n",
               g->query, r->seq, r->members, r->rules_version ? r->rules_version : "?");
    loyalty__query_reply__free_unpacked(r, NULL);
    return code;
}
