/* report.c: `loyaltyctl report liability|tiers|stores`: finance and operations figures computed
 * from the LMDB ledger in the data directory, read-only (safe beside a running daemon).
 *
 * liability and tiers rebuild member state (the checkpoint plus the entries after it, or a full
 * replay with --replay, R30) and sum over the members; stores scans every entry once and
 * aggregates sales and redemptions per store and store-local day (R3). Each report prints an
 * aligned table (default), CSV (--csv) or JSON lines (--json, one object per row).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl.h"
#include "entry.h"
#include "progress.h"
#include "report.h"
#include "rules.h"
/* rules.h has no accessor for the point value (R2) or the tier list (R22) yet: rules_facts()
 * reads them from the loaded object, read-only, and is the only code here that touches it. */

#define REPORT_STORE_DAYS_MAX (1u << 22) /* (store, day) rows in one stores report */
#define REPORT_TIERS_MAX 64              /* distinct tier names counted by report tiers */
#define REPORT_COLS_MAX 16               /* columns of one report */
#define REPORT_CELL_MAX 48               /* one formatted cell (an id, a number, a date) */
#define REPORT_INDEX_CAP_MIN 1024        /* initial slots of the store-day hash index */

/* ------------------------------------------------------------------ usage */

static const char report_usage[] =
    "usage: loyaltyctl report liability [--rules FILE] [--replay] [--csv | --json]\n"
    "       loyaltyctl report tiers [--rules FILE] [--replay] [--csv | --json]\n"
    "       loyaltyctl report stores [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--csv | --json]\n"
    "\n"
    "Finance and operations reports computed from the ledger in the data directory (--data),\n"
    "read-only: safe while loyaltyd runs. Run 'loyaltyctl report REPORT --help' for each.\n"
    "\n"
    "  liability   outstanding points, debt (R18) and their value in yuan (R2)\n"
    "  tiers       members per tier, with their share\n"
    "  stores      sales and points per store and store-local day (R3)\n"
    "\n"
    "Output: an aligned table (default); --csv: a header line, then one line per row, no totals;\n"
    "--json: JSON lines, one object per row, no totals (yuan amounts are strings, exact).\n"
    "\n"
    "exit status: 0 ok, 1 the ledger or rules cannot be read, 2 usage.\n"
    "\n";

static const char liability_usage[] =
    "usage: loyaltyctl report liability [--rules FILE] [--replay] [--csv | --json] [--data DIR]\n"
    "\n"
    "The programme's points liability at the ledger's last sequence. Member state is the\n"
    "checkpoint in the data directory plus every entry after it (--replay: a full replay from\n"
    "sequence 1 instead; slower, same result). Every member the ledger knows is included,\n"
    "whatever its status. A member's balance is its lots minus its debt (R18).\n"
    "\n"
    "  seq                  last ledger sequence applied\n"
    "  rules_version        version of the rules the point value was taken from\n"
    "  point_value_fen      fen one point is worth when redeemed (R2)\n"
    "  members              members in the state\n"
    "  members_with_points  members whose balance is > 0\n"
    "  members_in_debt      members whose balance is < 0 (R18)\n"
    "  outstanding_points   sum of the positive balances\n"
    "  outstanding_fen, outstanding_yuan   outstanding_points * point_value_fen (/ 100)\n"
    "  debt_points          sum of the negative balances, as a positive number\n"
    "  debt_fen, debt_yuan  debt_points * point_value_fen (/ 100)\n"
    "  net_points, net_fen, net_yuan       outstanding minus debt\n"
    "\n"
    "  --rules FILE   take the point value from this rules file (default: the built-in rules);\n"
    "                 give the daemon's file if it runs with one. A warning is printed when the\n"
    "                 last entry was rated with another rules version.\n"
    "  --replay       rebuild state by a full replay, ignoring the checkpoint\n"
    "  --csv          a header line and one data line\n"
    "\n"
    "Table mode prints one 'name value' line per figure; --json prints one object.\n"
    "exit status: 0 ok, 1 the ledger or rules cannot be read or a sum overflows, 2 usage.\n"
    "\n";

static const char tiers_usage[] =
    "usage: loyaltyctl report tiers [--rules FILE] [--replay] [--csv | --json] [--data DIR]\n"
    "\n"
    "Members per tier at the ledger's last sequence (state as for 'report liability'). A member\n"
    "whose tier is \"\" holds the rules' base tier (the lowest). Closed members (the sources of\n"
    "account merges, R7) are not counted. Rows: every tier of the rules, lowest first (zero\n"
    "rows included), then any tier name the rules do not know (rated under older rules), by\n"
    "name.\n"
    "\n"
    "  tier       tier name\n"
    "  members    members holding it\n"
    "  share_pct  members / all counted members * 100, two decimals (rounded down)\n"
    "\n"
    "  --rules FILE   the rules giving the tier order and base tier (default: built-in)\n"
    "  --replay       rebuild state by a full replay, ignoring the checkpoint\n"
    "  --csv          CSV instead of the table\n"
    "\n"
    "The table ends with a totals row. exit status: 0 ok, 1 error, 2 usage.\n"
    "\n";

static const char stores_usage[] =
    "usage: loyaltyctl report stores [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--csv | --json]\n"
    "                                [--data DIR]\n"
    "\n"
    "Scans every ledger entry and aggregates, per store and store-local day (occurred_at +\n"
    "utc_offset_min * 60, R3), the sale entries and the gift entries that name a store. Returns,\n"
    "adjustments, expiry and other entries are not counted. Rows are sorted by store, then day;\n"
    "days without a sale or gift in a store have no row.\n"
    "\n"
    "  store            the entry's store id\n"
    "  day              store-local date\n"
    "  sales            sale entries\n"
    "  paid_fen         sum of the sales' paid totals (after discounts, including the part paid\n"
    "                   with points), in fen; paid_yuan: the same in yuan\n"
    "  points_issued    points the sale entries credited to the buying member (base points x\n"
    "                   multiplier + sku points, R11-R14)\n"
    "  referral_points  points the sale entries credited to other members (referral bonus, R25)\n"
    "  gifts            gift redemption entries (R16)\n"
    "  points_redeemed  points redeemed: the sales' redeem_points (R15) plus the gifts' points\n"
    "\n"
    "  --from DAY, --to DAY   only store-local days in [from, to], both inclusive\n"
    "  --csv                  CSV instead of the table\n"
    "\n"
    "The table ends with a totals row. exit status: 0 ok, 1 the ledger cannot be read, an entry\n"
    "does not decode or a sum overflows, 2 usage.\n"
    "\n";

/* ------------------------------------------------------------------ output */

typedef enum { REP_TABLE, REP_CSV, REP_JSON } rep_format;

typedef enum {
    COL_TEXT, /* text; "-" in the table when empty */
    COL_INT,  /* int64 */
    COL_YUAN, /* int64 fen shown as yuan "1234.56"; a JSON string, exact */
    COL_PCT,  /* int64 hundredths of a percent shown as "12.34"; a JSON number */
} col_kind;

typedef struct {
    const char *name;
    col_kind kind;
} rep_col;

typedef struct {
    const char *text;
    int64_t v;
} rep_cell;

/* Fills the cells of row i (i == rows_n: the totals row). */
typedef void (*rep_fill_fn)(void *ctx, size_t i, rep_cell *cells);

typedef struct {
    rep_format format;
    const rep_col *cols;
    size_t cols_n;
    size_t rows_n;
    bool totals; /* table mode: a totals row after the rows */
    rep_fill_fn fill;
    void *ctx;
} rep_table;

static void cell_format(const rep_col *col, const rep_cell *c, bool table, char *buf, size_t cap)
{
    switch (col->kind) {
    case COL_TEXT:
        snprintf(buf, cap, "%s", c->text && c->text[0] ? c->text : table ? "-" : "");
        return;
    case COL_INT:
        snprintf(buf, cap, "%" PRId64, c->v);
        return;
    case COL_YUAN:
        ctl_fmt_fen(c->v, buf, cap);
        return;
    case COL_PCT:
        ctl_fmt_fen(c->v, buf, cap); /* same shape: hundredths with two decimals */
        return;
    }
    LT_ASSERT(0);
}

static void csv_field(const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static void table_line(const rep_table *t, const size_t *w, rep_cell *cells, bool header)
{
    char buf[REPORT_CELL_MAX];
    for (size_t c = 0; c < t->cols_n; c++) {
        const rep_col *col = &t->cols[c];
        const char *s = header ? col->name : buf;
        if (!header)
            cell_format(col, &cells[c], true, buf, sizeof buf);
        bool left = col->kind == COL_TEXT, last = c + 1 == t->cols_n;
        printf("%s%*s", c ? "  " : "", left ? (last ? 0 : -(int)w[c]) : (int)w[c], s);
    }
    putchar('\n');
}

static void table_rule(const rep_table *t, const size_t *w)
{
    size_t n = 0;
    for (size_t c = 0; c < t->cols_n; c++)
        n += w[c] + (c ? 2 : 0);
    for (size_t i = 0; i < n; i++)
        putchar('-');
    putchar('\n');
}

static void print_table(const rep_table *t)
{
    size_t w[REPORT_COLS_MAX];
    rep_cell cells[REPORT_COLS_MAX];
    char buf[REPORT_CELL_MAX];
    size_t rows = t->rows_n + (t->totals ? 1 : 0);
    for (size_t c = 0; c < t->cols_n; c++)
        w[c] = strlen(t->cols[c].name);
    for (size_t i = 0; i < rows; i++) {
        t->fill(t->ctx, i, cells);
        for (size_t c = 0; c < t->cols_n; c++) {
            cell_format(&t->cols[c], &cells[c], true, buf, sizeof buf);
            size_t n = strlen(buf);
            w[c] = n > w[c] ? n : w[c];
        }
    }
    table_line(t, w, NULL, true);
    table_rule(t, w);
    for (size_t i = 0; i < rows; i++) {
        if (t->totals && i == t->rows_n)
            table_rule(t, w);
        t->fill(t->ctx, i, cells);
        table_line(t, w, cells, false);
    }
}

static json_t *json_row(const rep_table *t, const rep_cell *cells)
{
    char buf[REPORT_CELL_MAX];
    json_t *o = json_object();
    LT_ASSERT(o != NULL);
    for (size_t c = 0; c < t->cols_n; c++) {
        const rep_col *col = &t->cols[c];
        json_t *v;
        if (col->kind == COL_TEXT)
            v = json_string(cells[c].text ? cells[c].text : "");
        else if (col->kind == COL_INT)
            v = json_integer((json_int_t)cells[c].v);
        else if (col->kind == COL_PCT)
            v = json_real((double)cells[c].v / 100.0);
        else {
            cell_format(col, &cells[c], false, buf, sizeof buf);
            v = json_string(buf);
        }
        LT_ASSERT(v != NULL);
        json_object_set_new(o, col->name, v);
    }
    return o;
}

/* Prints the report in t->format. Returns 0, or -1 if stdout failed (message printed). */
static int rep_print(const rep_table *t)
{
    rep_cell cells[REPORT_COLS_MAX];
    char buf[REPORT_CELL_MAX];
    LT_ASSERT(t->cols_n <= REPORT_COLS_MAX);
    if (t->format == REP_TABLE)
        print_table(t);
    for (size_t c = 0; t->format == REP_CSV && c < t->cols_n; c++)
        printf("%s%s", c ? "," : "", t->cols[c].name);
    if (t->format == REP_CSV)
        putchar('\n');
    for (size_t i = 0; t->format != REP_TABLE && i < t->rows_n; i++) {
        t->fill(t->ctx, i, cells);
        if (t->format == REP_JSON) {
            json_t *o = json_row(t, cells);
            /* 15 significant digits: a share of 33.33 prints as 33.33, not 33.329999999999998 */
            char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
            LT_ASSERT(s != NULL);
            puts(s);
            free(s);
            json_decref(o);
            continue;
        }
        for (size_t c = 0; c < t->cols_n; c++) {
            cell_format(&t->cols[c], &cells[c], false, buf, sizeof buf);
            if (c)
                putchar(',');
            csv_field(buf);
        }
        putchar('\n');
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_errorf("report: writing the output failed");
        return -1;
    }
    return 0;
}

/* A one-row report in table mode: one "name  value" line per column. */
static int rep_print_record(const rep_table *t)
{
    rep_cell cells[REPORT_COLS_MAX];
    char buf[REPORT_CELL_MAX];
    if (t->format != REP_TABLE)
        return rep_print(t);
    LT_ASSERT(t->rows_n == 1 && t->cols_n <= REPORT_COLS_MAX);
    size_t w = 0;
    for (size_t c = 0; c < t->cols_n; c++)
        w = strlen(t->cols[c].name) > w ? strlen(t->cols[c].name) : w;
    t->fill(t->ctx, 0, cells);
    for (size_t c = 0; c < t->cols_n; c++) {
        cell_format(&t->cols[c], &cells[c], true, buf, sizeof buf);
        printf("%-*s  %s\n", (int)w, t->cols[c].name, buf);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_errorf("report: writing the output failed");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ options */

typedef enum { REP_NONE, REP_LIABILITY, REP_TIERS, REP_STORES } rep_kind;

typedef struct {
    rep_kind kind;
    rep_format format;
    const char *rules_path; /* NULL: the built-in rules */
    bool replay;            /* full replay instead of checkpoint + tail */
    bool from_given, to_given;
    int64_t from_day, to_day; /* days since 1970-01-01, store-local */
} rep_opts;

/* Parses a strict YYYY-MM-DD into a day number. Returns 0, or -1 (message printed). */
static int parse_day(const char *opt, const char *arg, int64_t *out)
{
    int y, m, d;
    bool shape = strlen(arg) == 10 && arg[4] == '-' && arg[7] == '-';
    for (int i = 0; shape && i < 10; i++)
        shape = i == 4 || i == 7 || isdigit((unsigned char)arg[i]);
    if (shape && sscanf(arg, "%4d-%2d-%2d", &y, &m, &d) == 3 && m >= 1 && m <= 12 && d >= 1 &&
        d <= 31) {
        int64_t day = rules_days_from_civil(y, m, d);
        int yy, mm, dd;
        rules_civil_from_days(day, &yy, &mm, &dd);
        if (yy == y && mm == m && dd == d) {
            *out = day;
            return 0;
        }
    }
    ctl_errorf("%s: '%s' is not a date YYYY-MM-DD", opt, arg);
    return -1;
}

static rep_kind kind_of(const char *name)
{
    if (name == NULL)
        return REP_NONE;
    if (strcmp(name, "liability") == 0)
        return REP_LIABILITY;
    if (strcmp(name, "tiers") == 0)
        return REP_TIERS;
    if (strcmp(name, "stores") == 0)
        return REP_STORES;
    return REP_NONE;
}

static const char *usage_of(rep_kind k)
{
    return k == REP_LIABILITY ? liability_usage
           : k == REP_TIERS   ? tiers_usage
           : k == REP_STORES  ? stores_usage
                              : report_usage;
}

/* Checks the combination of options. Returns 0, or -1 (message printed). */
static int check_opts(const ctl_globals *g, rep_opts *o, bool csv, bool extra)
{
    if (o->kind == REP_NONE || extra) {
        ctl_errorf("report: expected one of 'liability', 'tiers' or 'stores'");
        return -1;
    }
    if (csv && g->json) {
        ctl_errorf("report: --csv and --json exclude each other");
        return -1;
    }
    o->format = csv ? REP_CSV : g->json ? REP_JSON : REP_TABLE;
    if (o->kind != REP_STORES && (o->from_given || o->to_given)) {
        ctl_errorf("report: --from and --to are options of 'report stores'");
        return -1;
    }
    if (o->kind == REP_STORES && (o->rules_path || o->replay)) {
        ctl_errorf("report: --rules and --replay are options of 'report liability|tiers'");
        return -1;
    }
    if (o->from_given && o->to_given && o->from_day > o->to_day) {
        ctl_errorf("report: --from is after --to");
        return -1;
    }
    return 0;
}

/* Parses report's options. Returns 0, 1 after printing help, or -1 after a usage error. */
static int parse_opts(ctl_globals *g, int argc, char **argv, rep_opts *o)
{
    enum { O_RULES = 1, O_CSV, O_FROM, O_TO, O_REPLAY };
    static const struct option longopts[] = {
        {"rules", required_argument, NULL, O_RULES}, {"csv", no_argument, NULL, O_CSV},
        {"from", required_argument, NULL, O_FROM},   {"to", required_argument, NULL, O_TO},
        {"replay", no_argument, NULL, O_REPLAY},     CTL_GLOBAL_LONGOPTS};
    bool csv = false, help = false, bad = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int rc = 0;
        if (c == O_RULES)
            o->rules_path = optarg;
        else if (c == O_CSV)
            csv = true;
        else if (c == O_FROM)
            rc = parse_day("--from", optarg, &o->from_day), o->from_given = true;
        else if (c == O_TO)
            rc = parse_day("--to", optarg, &o->to_day), o->to_given = true;
        else if (c == O_REPLAY)
            o->replay = true;
        else
            rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
        help |= rc > 0;
        bad |= rc < 0;
    }
    o->kind = kind_of(optind < argc ? argv[optind] : NULL);
    if (help) { /* report --help, or report REPORT --help */
        ctl_usage(1, usage_of(o->kind), argv[0]);
        return 1;
    }
    if (bad || check_opts(g, o, csv, optind + 1 < argc) < 0) {
        fprintf(stderr, "Try 'loyaltyctl report%s%s --help'.\n", o->kind ? " " : "",
                o->kind ? argv[optind] : "");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ rules and state */

/* Loads --rules FILE or the built-in rules. Returns 0 and *out (caller destroys), or -1. */
static int load_rules(const char *path, rules **out)
{
    char err[CTL_ERR_MAX] = "";
    const char *text = rules_default_text();
    int rc = path ? rules_load_file(path, out, err, sizeof err)
                  : rules_load_string(text, strlen(text), "built-in rules", out, err, sizeof err);
    if (rc < 0) {
        ctl_errorf("report: %s", err);
        return -1;
    }
    return 0;
}

static int64_t rules_point_value(const rules *r)
{
    return rules_point_value_fen(r);
}

static size_t rules_tiers(const rules *r, const char **names, size_t max)
{
    size_t n = rules_tier_names(r, names, max);
    LT_ASSERT(n >= 1 && n <= max);
    return n;
}

/* Warns when the ledger's entry seq was rated with rules other than r (R31). */
static void warn_rules_version(ledger *l, uint64_t seq, const rules *r)
{
    if (seq == 0)
        return;
    uint8_t *buf = malloc(ENTRY_BYTES_MAX);
    lt_entry *e = malloc(sizeof *e);
    LT_ASSERT(buf != NULL && e != NULL);
    size_t len = 0;
    if (ledger_get(l, seq, buf, ENTRY_BYTES_MAX, &len) == 0 && entry_decode(buf, len, e) == 0 &&
        e->rules_version[0] && strcmp(e->rules_version, rules_version(r)) != 0)
        ctl_errorf("report: warning: using rules version '%s', but entry %" PRIu64
                   " was rated with '%s' (give the daemon's rules file with --rules FILE)",
                   rules_version(r), seq, e->rules_version);
    free(e);
    free(buf);
}

/* Member state at the ledger's end: the checkpoint in dir (unless full; ctl_load_checkpoint())
 * plus the entries after it.
 * Returns 0, *out (caller destroys) and *seq, the last sequence applied; or -1 (printed). */
static int load_state(ledger *l, const char *dir, bool full, state **out, uint64_t *seq)
{
    char err[CTL_ERR_MAX] = "";
    state *s = NULL;
    uint64_t cp = 0;
    if (full && state_new(&s) < 0) {
        ctl_errorf("report: out of memory");
        return -1;
    }
    if (!full && ctl_load_checkpoint(l, dir, &s, &cp, NULL) < 0)
        return -1;
    ctl_replay_result r = {0};
    r.last_seq = cp;
    if (ctl_replay_range(l, s, cp + 1, 0, &r, err, sizeof err) < 0) {
        ctl_errorf("report: %s", err);
        state_destroy(&s);
        return -1;
    }
    *out = s;
    *seq = r.last_seq;
    return 0;
}

/* Opens the ledger, loads rules and state. Returns 0 or -1 (printed); on 0 the caller frees
 * all three. */
static int open_all(const ctl_globals *g, const rep_opts *o, ledger **l, rules **r, state **s,
                    uint64_t *seq)
{
    if (load_rules(o->rules_path, r) < 0)
        return -1;
    if (ctl_ledger_open(g->data, l) < 0) {
        rules_destroy(r);
        return -1;
    }
    if (load_state(*l, g->data, o->replay, s, seq) < 0) {
        ledger_close(l);
        rules_destroy(r);
        return -1;
    }
    warn_rules_version(*l, *seq, *r);
    return 0;
}

/* ------------------------------------------------------------------ liability */

typedef struct {
    uint64_t seq;
    const char *version;
    int64_t point_value_fen;
    uint64_t members, with_points, in_debt;
    int64_t outstanding, debt; /* points, both >= 0 */
    int64_t outstanding_fen, debt_fen;
    bool overflow;
} liability;

static int liability_add(void *ctx, const lt_member *m)
{
    liability *a = ctx;
    int64_t b = state_balance(m);
    a->members++;
    if (b > 0) {
        a->with_points++;
        a->overflow = __builtin_add_overflow(a->outstanding, b, &a->outstanding);
    } else if (b < 0) {
        a->in_debt++;
        a->overflow = b == INT64_MIN || __builtin_sub_overflow(a->debt, b, &a->debt);
    }
    return a->overflow ? 1 : 0;
}

static void liability_fill(void *ctx, size_t i, rep_cell *c)
{
    const liability *a = ctx;
    LT_ASSERT(i == 0);
    int64_t net = a->outstanding - a->debt, net_fen = a->outstanding_fen - a->debt_fen;
    rep_cell v[] = {{NULL, (int64_t)a->seq},
                    {a->version, 0},
                    {NULL, a->point_value_fen},
                    {NULL, (int64_t)a->members},
                    {NULL, (int64_t)a->with_points},
                    {NULL, (int64_t)a->in_debt},
                    {NULL, a->outstanding},
                    {NULL, a->outstanding_fen},
                    {NULL, a->outstanding_fen},
                    {NULL, a->debt},
                    {NULL, a->debt_fen},
                    {NULL, a->debt_fen},
                    {NULL, net},
                    {NULL, net_fen},
                    {NULL, net_fen}};
    memcpy(c, v, sizeof v);
}

static int report_liability(const ctl_globals *g, const rep_opts *o)
{
    static const rep_col cols[] = {{"seq", COL_INT},
                                   {"rules_version", COL_TEXT},
                                   {"point_value_fen", COL_INT},
                                   {"members", COL_INT},
                                   {"members_with_points", COL_INT},
                                   {"members_in_debt", COL_INT},
                                   {"outstanding_points", COL_INT},
                                   {"outstanding_fen", COL_INT},
                                   {"outstanding_yuan", COL_YUAN},
                                   {"debt_points", COL_INT},
                                   {"debt_fen", COL_INT},
                                   {"debt_yuan", COL_YUAN},
                                   {"net_points", COL_INT},
                                   {"net_fen", COL_INT},
                                   {"net_yuan", COL_YUAN}};
    ledger *l;
    rules *r;
    state *s;
    liability a = {0};
    if (open_all(g, o, &l, &r, &s, &a.seq) < 0)
        return CTL_EXIT_FAIL;
    a.version = rules_version(r);
    a.point_value_fen = rules_point_value(r);
    state_foreach(s, liability_add, &a);
    /* both sums >= 0, so their difference cannot overflow */
    a.overflow = a.overflow ||
                 __builtin_mul_overflow(a.outstanding, a.point_value_fen, &a.outstanding_fen) ||
                 __builtin_mul_overflow(a.debt, a.point_value_fen, &a.debt_fen);
    rep_table t = {o->format, cols, LT_ARRAY_LEN(cols), 1, false, liability_fill, &a};
    int rc = a.overflow ? -1 : rep_print_record(&t);
    if (a.overflow)
        ctl_errorf("report liability: a sum does not fit 64 bits");
    state_destroy(&s);
    rules_destroy(&r);
    ledger_close(&l);
    return rc < 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ tiers */

typedef struct {
    char name[LT_TIER_NAME_MAX];
    uint64_t members;
} tier_row;

typedef struct {
    tier_row rows[REPORT_TIERS_MAX];
    size_t n, known_n; /* rows; the first known_n are the rules' tiers, lowest first */
    uint64_t total;
    const char *base;
    bool full;
} tier_count;

static int tier_add(void *ctx, const lt_member *m)
{
    tier_count *t = ctx;
    if (m->status == LT_MEMBER_CLOSED)
        return 0;
    const char *name = m->tier[0] ? m->tier : t->base;
    size_t i = 0;
    while (i < t->n && strcmp(t->rows[i].name, name) != 0)
        i++;
    if (i == t->n) {
        if (t->n == REPORT_TIERS_MAX) {
            t->full = true;
            return 1;
        }
        snprintf(t->rows[t->n++].name, sizeof t->rows[0].name, "%s", name);
    }
    t->rows[i].members++;
    t->total++;
    return 0;
}

static int tier_cmp(const void *a, const void *b)
{
    return strcmp(((const tier_row *)a)->name, ((const tier_row *)b)->name);
}

/* Share of n in total, in hundredths of a percent, rounded down. */
static int64_t share_hundredths(uint64_t n, uint64_t total)
{
    if (total == 0)
        return 0;
    unsigned __int128 v = (unsigned __int128)n * 10000u / total;
    return (int64_t)v;
}

static void tiers_fill(void *ctx, size_t i, rep_cell *c)
{
    const tier_count *t = ctx;
    if (i == t->n) {
        c[0] = (rep_cell){"total", 0};
        c[1] = (rep_cell){NULL, (int64_t)t->total};
        c[2] = (rep_cell){NULL, t->total ? 10000 : 0};
        return;
    }
    LT_ASSERT(i < t->n);
    c[0] = (rep_cell){t->rows[i].name, 0};
    c[1] = (rep_cell){NULL, (int64_t)t->rows[i].members};
    c[2] = (rep_cell){NULL, share_hundredths(t->rows[i].members, t->total)};
}

static int report_tiers(const ctl_globals *g, const rep_opts *o)
{
    static const rep_col cols[] = {
        {"tier", COL_TEXT}, {"members", COL_INT}, {"share_pct", COL_PCT}};
    const char *names[REPORT_TIERS_MAX];
    ledger *l;
    rules *r;
    state *s;
    uint64_t seq;
    if (open_all(g, o, &l, &r, &s, &seq) < 0)
        return CTL_EXIT_FAIL;
    tier_count *t = calloc(1, sizeof *t);
    LT_ASSERT(t != NULL);
    t->base = rules_tier_base(r);
    t->known_n = t->n = rules_tiers(r, names, REPORT_TIERS_MAX);
    for (size_t i = 0; i < t->n; i++)
        snprintf(t->rows[i].name, sizeof t->rows[i].name, "%s", names[i]);
    state_foreach(s, tier_add, t);
    qsort(t->rows + t->known_n, t->n - t->known_n, sizeof t->rows[0], tier_cmp);
    rep_table tt = {o->format, cols, LT_ARRAY_LEN(cols), t->n, true, tiers_fill, t};
    int rc = t->full ? -1 : rep_print(&tt);
    if (t->full)
        ctl_errorf("report tiers: more than %d distinct tier names", REPORT_TIERS_MAX);
    free(t);
    state_destroy(&s);
    rules_destroy(&r);
    ledger_close(&l);
    return rc < 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ stores */

typedef struct {
    char store[LT_ID_MAX];
    int64_t day; /* store-local, days since 1970-01-01 */
    uint64_t sales, gifts;
    int64_t paid_fen, points_issued, referral_points, points_redeemed;
} store_day;

typedef struct {
    store_day *rows;
    size_t n, cap;
    uint32_t *index;  /* open addressing: row + 1, 0 = free */
    size_t index_cap; /* a power of two, more than twice n */
    int64_t from_day, to_day;
    lt_entry *entry;
    ctl_progress progress;
    uint64_t scanned;
    store_day total;               /* every row summed, store "total" */
    char day_buf[REPORT_CELL_MAX]; /* fill: the current row's date */
    char err[CTL_ERR_MAX];
} store_scan;

static uint64_t store_day_hash(const char *store, int64_t day)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (const char *p = store; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211u;
    return (h ^ (uint64_t)day) * 1099511628211u;
}

/* Rebuilds the index with cap slots. Returns 0, or -1 out of memory. */
static int index_grow(store_scan *s, size_t cap)
{
    uint32_t *ix = calloc(cap, sizeof *ix);
    if (ix == NULL)
        return -1;
    for (size_t r = 0; r < s->n; r++) {
        size_t i = store_day_hash(s->rows[r].store, s->rows[r].day) & (cap - 1);
        while (ix[i] != 0)
            i = (i + 1) & (cap - 1);
        ix[i] = (uint32_t)(r + 1);
    }
    free(s->index);
    s->index = ix;
    s->index_cap = cap;
    return 0;
}

/* The row of (store, day), added if new. Returns NULL (err set) past the row limit or out of
 * memory. */
static store_day *store_day_get(store_scan *s, const char *store, int64_t day)
{
    size_t i = store_day_hash(store, day) & (s->index_cap - 1);
    for (; s->index[i] != 0; i = (i + 1) & (s->index_cap - 1)) {
        store_day *row = &s->rows[s->index[i] - 1];
        if (row->day == day && strcmp(row->store, store) == 0)
            return row;
    }
    if (s->n == REPORT_STORE_DAYS_MAX) {
        snprintf(s->err, sizeof s->err, "more than %u (store, day) rows; narrow --from/--to",
                 REPORT_STORE_DAYS_MAX);
        return NULL;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : REPORT_INDEX_CAP_MIN / 2;
        store_day *rows = realloc(s->rows, cap * sizeof *rows);
        if (rows == NULL || index_grow(s, cap * 2) < 0) {
            s->rows = rows ? rows : s->rows;
            snprintf(s->err, sizeof s->err, "out of memory at %zu (store, day) rows", s->n);
            return NULL;
        }
        s->rows = rows;
        s->cap = cap;
        i = store_day_hash(store, day) & (s->index_cap - 1);
        while (s->index[i] != 0)
            i = (i + 1) & (s->index_cap - 1);
    }
    store_day *row = &s->rows[s->n];
    memset(row, 0, sizeof *row);
    snprintf(row->store, sizeof row->store, "%s", store);
    row->day = day;
    s->index[i] = (uint32_t)++s->n;
    return row;
}

/* Adds one sale or gift entry to its row. Returns false if a sum overflows. */
static bool store_day_add(store_day *row, const lt_entry *e)
{
    bool ovf = false;
    if (e->kind == LT_ENTRY_SALE) {
        row->sales++;
        ovf |= __builtin_add_overflow(row->paid_fen, e->paid_fen, &row->paid_fen);
        ovf |=
            __builtin_add_overflow(row->points_redeemed, e->points_redeemed, &row->points_redeemed);
        for (uint32_t p = 0; p < e->postings_n; p++) {
            const lt_posting *po = &e->postings[p];
            int64_t *to = strcmp(po->member_id, e->member_id) == 0 ? &row->points_issued
                                                                   : &row->referral_points;
            ovf |= __builtin_add_overflow(*to, po->credit, to);
        }
        return !ovf;
    }
    row->gifts++;
    for (uint32_t p = 0; p < e->postings_n; p++)
        ovf |= __builtin_add_overflow(row->points_redeemed, e->postings[p].debit,
                                      &row->points_redeemed);
    return !ovf;
}

static int store_entry(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len)
{
    store_scan *s = ctx;
    lt_entry *e = s->entry;
    if (entry_decode(bytes, len, e) < 0) {
        snprintf(s->err, sizeof s->err, "entry %" PRIu64 " (%zu bytes) does not decode", seq, len);
        return -1;
    }
    ctl_progress_update(&s->progress, ++s->scanned);
    bool sale = e->kind == LT_ENTRY_SALE, gift = e->kind == LT_ENTRY_GIFT && e->store_id[0];
    if (!sale && !gift)
        return 0;
    int64_t day = rules_local_day(e->occurred_at, e->utc_offset_min);
    if (day < s->from_day || day > s->to_day)
        return 0;
    store_day *row = store_day_get(s, e->store_id, day);
    if (row == NULL)
        return -1;
    if (!store_day_add(row, e) || !store_day_add(&s->total, e)) {
        snprintf(s->err, sizeof s->err, "entry %" PRIu64 ": a sum does not fit 64 bits", seq);
        return -1;
    }
    return 0;
}

static int store_day_cmp(const void *a, const void *b)
{
    const store_day *x = a, *y = b;
    int c = strcmp(x->store, y->store);
    return c ? c : (x->day > y->day) - (x->day < y->day);
}

static void stores_fill(void *ctx, size_t i, rep_cell *c)
{
    store_scan *s = ctx;
    const store_day *row = &s->total;
    s->day_buf[0] = '\0';
    if (i < s->n) {
        int y, m, d;
        row = &s->rows[i];
        rules_civil_from_days(row->day, &y, &m, &d);
        snprintf(s->day_buf, sizeof s->day_buf, "%04d-%02d-%02d", y, m, d);
    }
    LT_ASSERT(i <= s->n);
    rep_cell v[] = {{row->store, 0},
                    {s->day_buf, 0},
                    {NULL, (int64_t)row->sales},
                    {NULL, row->paid_fen},
                    {NULL, row->paid_fen},
                    {NULL, row->points_issued},
                    {NULL, row->referral_points},
                    {NULL, (int64_t)row->gifts},
                    {NULL, row->points_redeemed}};
    memcpy(c, v, sizeof v);
}

/* Scans the whole ledger into s. Returns 0 or -1 (message printed). */
static int stores_scan(ledger *l, store_scan *s)
{
    uint64_t last = 0;
    if (ledger_last_seq(l, &last) < 0)
        last = 0; /* unknown: the scan itself reports the error */
    if (index_grow(s, REPORT_INDEX_CAP_MIN) < 0) {
        ctl_errorf("report stores: out of memory");
        return -1;
    }
    ctl_progress_start(&s->progress, "report", "entries", last, false);
    int rc = ledger_scan(l, 1, 0, store_entry, s);
    ctl_progress_done(&s->progress, s->scanned);
    if (rc == -1)
        ctl_errorf("report stores: %s", s->err);
    else if (rc < 0)
        ctl_errorf("report stores: ledger scan: %s", ledger_strerror(rc));
    return rc < 0 ? -1 : 0;
}

static int report_stores(const ctl_globals *g, const rep_opts *o)
{
    static const rep_col cols[] = {
        {"store", COL_TEXT},          {"day", COL_TEXT},       {"sales", COL_INT},
        {"paid_fen", COL_INT},        {"paid_yuan", COL_YUAN}, {"points_issued", COL_INT},
        {"referral_points", COL_INT}, {"gifts", COL_INT},      {"points_redeemed", COL_INT}};
    ledger *l;
    if (ctl_ledger_open(g->data, &l) < 0)
        return CTL_EXIT_FAIL;
    store_scan *s = calloc(1, sizeof *s);
    LT_ASSERT(s != NULL);
    s->entry = malloc(sizeof *s->entry);
    LT_ASSERT(s->entry != NULL);
    s->from_day = o->from_given ? o->from_day : INT64_MIN;
    s->to_day = o->to_given ? o->to_day : INT64_MAX;
    snprintf(s->total.store, sizeof s->total.store, "total");
    int rc = stores_scan(l, s);
    ledger_close(&l);
    if (rc == 0) {
        if (s->n > 0) /* rows is NULL when nothing matched */
            qsort(s->rows, s->n, sizeof s->rows[0], store_day_cmp);
        rep_table t = {o->format, cols, LT_ARRAY_LEN(cols), s->n, true, stores_fill, s};
        rc = rep_print(&t);
    }
    free(s->entry);
    free(s->index);
    free(s->rows);
    free(s);
    return rc < 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ the command */

int ctl_cmd_report(ctl_globals *g, int argc, char **argv)
{
    rep_opts o = {0};
    int rc = parse_opts(g, argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? CTL_EXIT_OK : CTL_EXIT_USAGE;
    switch (o.kind) {
    case REP_LIABILITY:
        return report_liability(g, &o);
    case REP_TIERS:
        return report_tiers(g, &o);
    case REP_STORES:
        return report_stores(g, &o);
    case REP_NONE:
        break;
    }
    LT_ASSERT(0);
    return CTL_EXIT_FAIL;
}
