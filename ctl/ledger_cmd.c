/* ledger_cmd.c: `loyaltyctl ledger tail|dump`: print ledger entries as JSON lines, reading the
 * LMDB environment directly (read-only, beside a running daemon).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "entry.h"
#include "progress.h"

#define TAIL_DEFAULT_N 10
#define FOLLOW_POLL_MS 200

static const char ledger_usage[] =
    "usage: loyaltyctl ledger tail [-n N] [--follow] [--data DIR]\n"
    "       loyaltyctl ledger dump [--from SEQ] [--to SEQ] [--data DIR]\n"
    "\n"
    "Prints ledger entries, one JSON object per line, in sequence order, reading the LMDB\n"
    "environment in the data directory read-only (safe while loyaltyd runs).\n"
    "\n"
    "  tail            the last N entries (default 10)\n"
    "    -n N          how many\n"
    "    -f, --follow  keep polling for new entries (every 200 ms) until interrupted\n"
    "  dump            all entries, or the range --from SEQ (default 1) --to SEQ (default last)\n"
    "\n"
    "exit status: 0 ok, 1 the ledger cannot be opened or an entry does not decode, 2 usage.\n"
    "\n";

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct {
    lt_entry *entry; /* one decode buffer: an entry is ~12 KiB with 200 lines */
    uint64_t printed;
    uint64_t last;
    ctl_progress *progress; /* dump only: NULL for tail */
} print_ctx;

static int print_one(void *ctx, uint64_t seq, const uint8_t *bytes, size_t len)
{
    print_ctx *p = ctx;
    if (entry_decode(bytes, len, p->entry) < 0) {
        ctl_errorf("ledger: entry %" PRIu64 " (%zu bytes) does not decode", seq, len);
        return -1;
    }
    if (p->entry->seq == 0)
        p->entry->seq = seq; /* the key is authoritative */
    if (entry_print_json(p->entry, stdout) < 0) {
        ctl_errorf("ledger: writing entry %" PRIu64 ": %s", seq, strerror(errno));
        return -1;
    }
    p->printed++;
    p->last = seq;
    if (p->progress != NULL)
        ctl_progress_update(p->progress, p->printed);
    return stop_requested ? 1 : 0;
}

/* Prints entries from..to. Returns 0 or -1 (message printed). */
static int print_range(ledger *l, print_ctx *p, uint64_t from, uint64_t to)
{
    int rc = ledger_scan(l, from, to, print_one, p);
    fflush(stdout);
    if (rc == 1 || rc == 0)
        return 0;
    if (rc != -1) /* -1 is print_one's own failure, already reported */
        ctl_errorf("ledger: scan: %s", ledger_strerror(rc));
    return -1;
}

static int follow(ledger *l, print_ctx *p)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop_requested) {
        struct timespec ts = {0, FOLLOW_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
        uint64_t last;
        int rc = ledger_last_seq(l, &last);
        if (rc < 0) {
            ctl_errorf("ledger: %s", ledger_strerror(rc));
            return -1;
        }
        if (last > p->last && print_range(l, p, p->last + 1, last) < 0)
            return -1;
    }
    return 0;
}

/* Prints from..to with a progress report on stderr for a long dump (none when stdout and stderr
 * are the same terminal: the bar would be written over the entries). */
static int dump_range(ledger *l, print_ctx *p, uint64_t from, uint64_t to)
{
    uint64_t end = to;
    if (end == 0 && ledger_last_seq(l, &end) < 0)
        end = 0;
    ctl_progress progress;
    ctl_progress_start(&progress, "dump", "entries", end >= from ? end - from + 1 : 0,
                       isatty(STDOUT_FILENO) == 1);
    p->progress = &progress;
    int rc = print_range(l, p, from, to);
    ctl_progress_done(&progress, p->printed);
    p->progress = NULL;
    return rc;
}

int ctl_cmd_ledger(ctl_globals *g, int argc, char **argv)
{
    enum { O_FROM = 1, O_TO };
    static const struct option longopts[] = {{"from", required_argument, NULL, O_FROM},
                                             {"to", required_argument, NULL, O_TO},
                                             {"follow", no_argument, NULL, 'f'},
                                             CTL_GLOBAL_LONGOPTS};
    uint64_t n = TAIL_DEFAULT_N, from = 1, to = 0;
    bool follow_on = false, range_given = false, n_given = false;
    int c;
    while ((c = getopt_long(argc, argv, "hn:f", longopts, NULL)) != -1) {
        int rc = 0;
        if (c == 'n')
            rc = ctl_parse_u64("-n", optarg, 0, UINT64_MAX, &n), n_given = true;
        else if (c == 'f')
            follow_on = true;
        else if (c == O_FROM)
            rc = ctl_parse_u64("--from", optarg, 1, UINT64_MAX, &from), range_given = true;
        else if (c == O_TO)
            rc = ctl_parse_u64("--to", optarg, 1, UINT64_MAX, &to), range_given = true;
        else
            rc = c == 'h' ? 1 : c == '?' ? -1 : ctl_global_opt(g, c, optarg);
        if (rc != 0)
            return ctl_usage(rc, ledger_usage, argv[0]);
    }
    const char *sub = optind < argc ? argv[optind] : "";
    bool tail = strcmp(sub, "tail") == 0, dump = strcmp(sub, "dump") == 0;
    if ((!tail && !dump) || optind + 1 != argc || (tail && range_given) ||
        (dump && (follow_on || n_given)) || (to && from > to)) {
        ctl_errorf("ledger: expected 'ledger tail [-n N] [--follow]' or "
                   "'ledger dump [--from SEQ] [--to SEQ]' (with from <= to)");
        ctl_usage(-1, ledger_usage, argv[0]);
        return CTL_EXIT_USAGE;
    }
    ledger *l;
    if (ctl_ledger_open(g->data, &l) < 0)
        return CTL_EXIT_FAIL;
    print_ctx p = {0};
    p.entry = malloc(sizeof *p.entry);
    LT_ASSERT(p.entry != NULL);
    int rc = 0;
    if (tail) {
        uint64_t last = 0;
        rc = ledger_last_seq(l, &last);
        if (rc < 0)
            ctl_errorf("ledger: %s", ledger_strerror(rc));
        else {
            p.last = last > n ? last - n : 0;
            rc = n > 0 && last > 0 ? print_range(l, &p, p.last + 1, last) : 0;
            p.last = last;
        }
        if (rc == 0 && follow_on)
            rc = follow(l, &p);
    } else {
        rc = dump_range(l, &p, from, to);
    }
    free(p.entry);
    ledger_close(&l);
    return rc < 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}
