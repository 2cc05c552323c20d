/* rerate.c: loyaltyctl rerate: what-if re-rating of the recorded sales with another rules file.
 *
 * Read-only (R30): the ledger is replayed with its recorded effects, which rebuilds every
 * member exactly as it was just before each of its sales; each sale in the date range is then
 * rated again with the new rules against that state, and the points the new rules would have
 * issued are compared with those recorded, per tier, per store and in total. Nothing is
 * written; the live state and the ledger never see the new rules.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl.h"
#include "entry.h"
#include "progress.h"
#include "rules.h"

#define RERATE_GROUPS_MAX 4096 /* stores and tiers reported */

static const char usage[] =
    "usage: loyaltyctl rerate --rules FILE [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--json]\n"
    "\n"
    "What-if (R30): re-rates the recorded sales with the rules in FILE and reports the\n"
    "difference in points issued to the buying members, per tier (the member's tier when the\n"
    "sale was rated), per store and in total. The ledger (--data) is replayed with its recorded\n"
    "effects, so each sale is rated against the member exactly as it was; nothing is written\n"
    "and the daemon's rules are untouched. Works beside the running daemon.\n"
    "\n"
    "  --rules FILE     the rules to try (required)\n"
    "  --from DAY       only sales on or after this store-local day\n"
    "  --to DAY         only sales on or before this store-local day\n"
    "\n"
    "Sales the new rules would refuse (e.g. INSUFFICIENT_POINTS with another point value) are\n"
    "counted as refused; sales recorded before the ledger kept what was rated are counted as\n"
    "not re-ratable. Referral points and returns are not re-rated.\n"
    "\n"
    "exit status: 0 ok, 1 the ledger or the rules cannot be read, 2 usage.\n";

typedef struct {
    char name[LT_ID_MAX];
    uint64_t sales, refused;
    int64_t recorded, rerated;
} group;

typedef struct {
    group v[RERATE_GROUPS_MAX];
    size_t n;
} groups;

typedef struct {
    const rules *r;
    state *s;
    rules_view view;
    int64_t from_day, to_day; /* INT64_MIN / INT64_MAX when open */
    groups tiers, stores;
    group total;
    uint64_t entries, skipped, overflow;
    lt_entry *e, *scratch;
    lt_event *ev;
    ctl_progress progress;
    int bad;
} rerate_ctx;

static group *find_group(groups *g, const char *name, uint64_t *overflow)
{
    for (size_t i = 0; i < g->n; i++) {
        if (strcmp(g->v[i].name, name) == 0)
            return &g->v[i];
    }
    if (g->n == RERATE_GROUPS_MAX) {
        (*overflow)++;
        return NULL;
    }
    group *n = &g->v[g->n++];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    return n;
}

static void count(group *g, bool refused, int64_t recorded, int64_t rerated)
{
    if (g == NULL)
        return;
    g->sales++;
    g->recorded += recorded;
    if (refused)
        g->refused++;
    else
        g->rerated += rerated;
}

/* Rebuilds the sale's event from its entry: what was rated is recorded per line. Returns 0, or
 * -1 if the entry predates that (no sku or category). */
static int event_of(const lt_entry *e, lt_event *ev)
{
    memset(ev, 0, offsetof(lt_event, lines));
    ev->kind = LT_EV_SALE;
    ev->id = e->id;
    memcpy(ev->member_id, e->member_id, sizeof ev->member_id);
    memcpy(ev->store_id, e->store_id, sizeof ev->store_id);
    ev->occurred_at = e->occurred_at;
    ev->utc_offset_min = e->utc_offset_min;
    ev->redeem_points = e->points_redeemed;
    ev->lines_n = e->lines_n;
    for (uint32_t i = 0; i < e->lines_n; i++) {
        const lt_line_result *l = &e->lines[i];
        if (l->sku[0] == '\0' || l->category[0] == '\0' || l->quantity <= 0)
            return -1;
        lt_line *o = &ev->lines[i];
        memcpy(o->sku, l->sku, sizeof o->sku);
        memcpy(o->category, l->category, sizeof o->category);
        o->quantity = l->quantity;
        o->unit_list_fen = l->unit_list_fen;
        o->unit_paid_fen = l->paid_fen / l->quantity; /* paid_fen = quantity x unit paid */
        o->flags = l->flags;
    }
    return 0;
}

static int on_entry(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len)
{
    rerate_ctx *c = ctx;
    char err[256];
    if (entry_decode(bytes, len, c->e) != 0) {
        ctl_errorf("rerate: entry %" PRIu64 " does not decode", seq);
        c->bad = 1;
        return 1;
    }
    ctl_progress_update(&c->progress, ++c->entries);
    int64_t day = rules_local_day(c->e->occurred_at, c->e->utc_offset_min);
    if (c->e->kind == LT_ENTRY_SALE && day >= c->from_day && day <= c->to_day) {
        if (event_of(c->e, c->ev) != 0) {
            c->skipped++;
        } else {
            const lt_member *m = state_member(c->s, c->e->member_id);
            const char *tier = m != NULL && m->tier[0] ? m->tier : rules_tier_base(c->r);
            int rc = rules_rate(c->r, &c->view, c->ev, c->scratch);
            int64_t rerated = rc == LT_R_NONE ? c->scratch->points_earned : 0;
            bool refused = rc != LT_R_NONE;
            count(find_group(&c->tiers, tier, &c->overflow), refused, c->e->points_earned, rerated);
            count(find_group(&c->stores, c->e->store_id, &c->overflow), refused,
                  c->e->points_earned, rerated);
            count(&c->total, refused, c->e->points_earned, rerated);
        }
    }
    /* then the recorded effects, as replay does: the state stays the ledger's */
    if (state_apply(c->s, c->e, err, sizeof err) != 0) {
        ctl_errorf("rerate: entry %" PRIu64 " does not apply: %s", seq, err);
        c->bad = 1;
        return 1;
    }
    return 0;
}

static void print_group(const ctl_globals *g, const char *kind, const group *x)
{
    int64_t diff = x->rerated - x->recorded;
    double pct = x->recorded != 0 ? 100.0 * (double)diff / (double)x->recorded : 0.0;
    if (g->json) {
        json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "group", kind, "name", x->name,
                              "sales", (json_int_t)x->sales, "refused", (json_int_t)x->refused,
                              "recorded_points", (json_int_t)x->recorded, "rerated_points",
                              (json_int_t)x->rerated, "difference", (json_int_t)diff);
        char *t = json_dumps(o, JSON_COMPACT);
        printf("%s\n", t != NULL ? t : "{}");
        free(t);
        json_decref(o);
        return;
    }
    printf("%-6s %-20s %10" PRIu64 " %8" PRIu64 " %14" PRId64 " %14" PRId64 " %+14" PRId64
           " %+8.2f%%\n",
           kind, x->name, x->sales, x->refused, x->recorded, x->rerated, diff, pct);
}

static int parse_day_opt(const char *opt, const char *arg, int64_t *out)
{
    int y, m, d, used = 0;
    if (sscanf(arg, "%4d-%2d-%2d%n", &y, &m, &d, &used) != 3 || arg[used] != '\0' || m < 1 ||
        m > 12 || d < 1 || d > 31) {
        ctl_errorf("rerate: %s %s is not a day YYYY-MM-DD", opt, arg);
        return -1;
    }
    *out = rules_days_from_civil(y, m, d);
    return 0;
}

int ctl_cmd_rerate(ctl_globals *g, int argc, char **argv)
{
    static const struct option longopts[] = {{"rules", required_argument, NULL, 'r'},
                                             {"from", required_argument, NULL, 'f'},
                                             {"to", required_argument, NULL, 't'},
                                             CTL_GLOBAL_LONGOPTS};
    const char *rules_path = NULL;
    int64_t from = INT64_MIN, to = INT64_MAX;
    int c, rc = 0;
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'r')
            rules_path = optarg;
        else if (c == 'f')
            rc = parse_day_opt("--from", optarg, &from);
        else if (c == 't')
            rc = parse_day_opt("--to", optarg, &to);
        else
            rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
    }
    if (rc == 0 && (rules_path == NULL || optind < argc)) {
        ctl_errorf("rerate: %s",
                   rules_path == NULL ? "--rules FILE is required" : "unexpected argument");
        rc = -1;
    }
    if (rc != 0)
        return ctl_usage(rc, usage, "rerate");
    char err[512];
    rules *r = NULL;
    if (rules_load_file(rules_path, &r, err, sizeof err) != 0) {
        ctl_errorf("rerate: %s", err);
        return CTL_EXIT_FAIL;
    }
    ledger *l;
    if (ctl_ledger_open(g->data, &l) < 0) {
        rules_destroy(&r);
        return CTL_EXIT_FAIL;
    }
    rerate_ctx *x = calloc(1, sizeof *x);
    uint64_t last = 0;
    int out = CTL_EXIT_FAIL;
    if (x == NULL || (x->e = malloc(sizeof *x->e)) == NULL ||
        (x->scratch = malloc(sizeof *x->scratch)) == NULL ||
        (x->ev = malloc(sizeof *x->ev)) == NULL || state_new(&x->s) != 0)
        goto done;
    x->r = r;
    x->from_day = from;
    x->to_day = to;
    snprintf(x->total.name, sizeof x->total.name, "all");
    state_view(x->s, &x->view);
    ledger_last_seq(l, &last);
    ctl_progress_start(&x->progress, "rerate", "entries", last, false);
    rc = ledger_scan(l, 1, last, on_entry, x);
    ctl_progress_done(&x->progress, x->entries);
    if (rc < 0 || x->bad) {
        if (rc < 0)
            ctl_errorf("rerate: reading %s: %s", g->data, ledger_strerror(rc));
        goto done;
    }
    if (!g->json)
        printf("%-6s %-20s %10s %8s %14s %14s %14s %9s\n", "group", "name", "sales", "refused",
               "recorded", "rerated", "difference", "change");
    for (size_t i = 0; i < x->tiers.n; i++)
        print_group(g, "tier", &x->tiers.v[i]);
    for (size_t i = 0; i < x->stores.n; i++)
        print_group(g, "store", &x->stores.v[i]);
    print_group(g, "total", &x->total);
    fprintf(stderr,
            "loyaltyctl: rerate: %" PRIu64 " entries replayed with rules '%s'; %" PRIu64
            " sales not re-ratable (recorded before lines kept what was rated)%s\n",
            x->entries, rules_version(r), x->skipped,
            x->overflow ? "; some stores or tiers not listed (too many)" : "");
    out = CTL_EXIT_OK;
done:
    if (x != NULL) {
        state_destroy(&x->s);
        free(x->e);
        free(x->scratch);
        free(x->ev);
        free(x);
    }
    ledger_close(&l);
    rules_destroy(&r);
    return out;
}
