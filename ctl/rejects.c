/* rejects.c: loyaltyctl rejects: the dead-letter store, newest last. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl.h"

#define REJECTS_SHOW_MAX 100000

static const char usage[] =
    "usage: loyaltyctl rejects [-n N] [--reason NAME] [--raw] [--json]\n"
    "\n"
    "Lists the events and messages loyaltyd rejected, from the dead-letter store in the\n"
    "ledger (--data; works beside the running daemon): the newest N (default 20), oldest\n"
    "first, each with its id in the store, when, the reason code, the event id (node/event, or\n"
    "'message' when a whole message was refused), the batch id and the message sent back.\n"
    "The store keeps the newest rejects_max records (daemon configuration).\n"
    "\n"
    "  -n N            how many (1..100000, default 20)\n"
    "  --reason NAME   only this reason (e.g. INVALID_QUANTITY)\n"
    "  --raw           also print what was received: the event as JSON when it decodes,\n"
    "                  else hex (the first 64 KiB)\n"
    "\n"
    "exit status: 0 ok, 1 the ledger cannot be read, 2 usage.\n";

typedef struct {
    int reason; /* -1: any */
    uint64_t n;
    uint64_t *ids; /* ring of the newest n matching ids */
    uint64_t seen;
} pick_ctx;

static int pick(void *ctx, uint64_t id, const uint8_t *rec, size_t len)
{
    pick_ctx *p = ctx;
    if (p->reason >= 0) {
        Loyalty__Rejected *r = loyalty__rejected__unpack(NULL, len, rec);
        bool match = r != NULL && (int)r->reason == p->reason;
        loyalty__rejected__free_unpacked(r, NULL);
        if (!match)
            return 0;
    }
    p->ids[p->seen++ % p->n] = id;
    return 0;
}

typedef struct {
    const ctl_globals *g;
    bool raw;
    uint64_t want; /* the id to print next */
} print_ctx;

static void print_raw(const Loyalty__Rejected *r, json_t *o)
{
    char hex[2 * 64 + 4] = "";
    Loyalty__Event *e =
        r->whole_message ? NULL : loyalty__event__unpack(NULL, r->raw.len, r->raw.data);
    if (e != NULL) {
        json_t *ev = json_pack("{s:s?,s:s?,s:s?,s:I,s:i}", "member", e->member_id, "card", e->card,
                               "store", e->store_id, "occurred_at", (json_int_t)e->occurred_at,
                               "body", (int)e->body_case);
        if (o != NULL)
            json_object_set_new(o, "received", ev);
        else {
            char *t = json_dumps(ev, JSON_COMPACT);
            printf("    event %s (%zu bytes)\n", t != NULL ? t : "?", r->raw.len);
            free(t);
            json_decref(ev);
        }
        loyalty__event__free_unpacked(e, NULL);
        return;
    }
    size_t n = r->raw.len < 64 ? r->raw.len : 64;
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", r->raw.data[i]);
    if (o != NULL)
        json_object_set_new(o, "raw_hex", json_string(hex));
    else
        printf("    raw %s%s (%u bytes)\n", hex, r->raw.len > n ? "..." : "", r->raw_bytes);
}

static int show(void *ctx, uint64_t id, const uint8_t *rec, size_t len)
{
    print_ctx *p = ctx;
    if (id != p->want)
        return 0;
    Loyalty__Rejected *r = loyalty__rejected__unpack(NULL, len, rec);
    if (r == NULL) {
        printf("%llu (record does not decode)\n", (unsigned long long)id);
        return 1;
    }
    const char *reason = lt_reason_name((int)r->reason);
    char when[40], who[48];
    ctl_fmt_time(r->at, when, sizeof when);
    if (r->id != NULL)
        snprintf(who, sizeof who, "%llu/%llu", (unsigned long long)r->id->node_id,
                 (unsigned long long)r->id->event_id);
    else
        snprintf(who, sizeof who, "message");
    if (p->g->json) {
        json_t *o =
            json_pack("{s:I,s:I,s:s,s:s,s:s?}", "id", (json_int_t)id, "at", (json_int_t)r->at,
                      "reason", reason, "event", who, "message", r->message);
        if (r->has_batch_id)
            json_object_set_new(o, "batch_id", json_integer((json_int_t)r->batch_id));
        if (p->raw && r->has_raw)
            print_raw(r, o);
        char *t = json_dumps(o, JSON_COMPACT);
        printf("%s\n", t != NULL ? t : "{}");
        free(t);
        json_decref(o);
    } else {
        printf("%-8llu %s  %-24s %-20s %s\n", (unsigned long long)id, when, reason, who,
               r->message != NULL ? r->message : "");
        if (p->raw && r->has_raw)
            print_raw(r, NULL);
    }
    loyalty__rejected__free_unpacked(r, NULL);
    return 1; /* found: stop this scan */
}

int ctl_cmd_rejects(ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {{"reason", required_argument, NULL, 'r'},
                                             {"raw", no_argument, NULL, 'x'},
                                             CTL_GLOBAL_LONGOPTS};
    uint64_t n = 20;
    int reason = -1;
    bool raw = false;
    int c, rc = 0;
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
        if (c == 'n')
            rc = ctl_parse_u64("-n", optarg, 1, REJECTS_SHOW_MAX, &n);
        else if (c == 'x')
            raw = true;
        else if (c == 'r') {
            reason = -2;
            for (int i = 1; i < LT_R__COUNT; i++) {
                if (strcmp(optarg, lt_reason_name(i)) == 0)
                    reason = i;
            }
            if (reason == -2) {
                ctl_errorf("rejects: --reason %s is not a reason code (see docs/protocol.md)",
                           optarg);
                rc = -1;
            }
        } else
            rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
    }
    if (rc == 0 && optind < argc) {
        ctl_errorf("rejects: unexpected argument '%s'", argv[optind]);
        rc = -1;
    }
    if (rc != 0)
        return ctl_usage(rc, usage, "rejects");
    ledger *l;
    if (ctl_ledger_open(g->data, &l) < 0)
        return CTL_EXIT_FAIL;
    pick_ctx pk = {reason, n, calloc(n, sizeof(uint64_t)), 0};
    if (pk.ids == NULL) {
        ledger_close(&l);
        return CTL_EXIT_FAIL;
    }
    uint64_t first, last, count;
    rc = ledger_rejects_range(l, &first, &last, &count);
    /* without a filter only the last n ids matter: start there */
    uint64_t from = reason < 0 && last >= n ? last - n + 1 : first;
    if (rc == 0)
        rc = ledger_scan_rejects(l, from, pick, &pk);
    uint64_t shown = pk.seen < n ? pk.seen : n;
    for (uint64_t i = 0; rc >= 0 && i < shown; i++) {
        print_ctx pc = {g, raw, pk.ids[(pk.seen - shown + i) % n]};
        rc = ledger_scan_rejects(l, pc.want, show, &pc);
        rc = rc == 1 ? 0 : rc;
    }
    if (rc < 0)
        ctl_errorf("rejects: reading %s: %s", g->data, ledger_strerror(rc));
    else if (!g->json)
        fprintf(stderr, "loyaltyctl: rejects: %llu shown, %llu kept in the store\n",
                (unsigned long long)shown, (unsigned long long)count);
    free(pk.ids);
    ledger_close(&l);
    return rc < 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}
