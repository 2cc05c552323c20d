/* ctl.h: loyaltyctl's internal interface: global options, the command table, and the helpers
 * the commands share (query round-trip, ledger access, output formatting).
 */
#ifndef LT_CTL_H
#define LT_CTL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ckstore.h"
#include "ledger.h"
#include "loyalty.pb-c.h"
#include "state.h"

/* Exit codes of every command. */
#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2

#define CTL_DEFAULT_ENDPOINT "tcp://127.0.0.1:7700"
#define CTL_DEFAULT_PUB "tcp://127.0.0.1:7701"
#define CTL_DEFAULT_QUERY "tcp://127.0.0.1:7702"
#define CTL_DEFAULT_DATA "var/data"
#define CTL_DEFAULT_TIMEOUT_MS 10000
#define CTL_TIMEOUT_MS_MAX (24 * 3600 * 1000)
#define CTL_ERR_MAX 512

/* Options every command accepts, before or after the command name. */
typedef struct {
    const char *endpoint; /* ingest ROUTER */
    const char *query;    /* query ROUTER */
    const char *pub;      /* publisher PUB */
    const char *data;     /* data directory (LMDB ledger) */
    int timeout_ms;
    bool json;
    bool timeout_given; /* --timeout-ms was on the command line */
    bool data_given;    /* --data was on the command line (restore insists on it) */
} ctl_globals;

/* getopt_long ids of the global options; command options use ids below CTL_OPT_GLOBAL. */
enum {
    CTL_OPT_GLOBAL = 1000,
    CTL_OPT_ENDPOINT,
    CTL_OPT_QUERY,
    CTL_OPT_PUB,
    CTL_OPT_DATA,
    CTL_OPT_TIMEOUT,
    CTL_OPT_JSON,
    CTL_OPT_HELP,
};

#define CTL_GLOBAL_LONGOPTS                                                                        \
    {"endpoint", required_argument, NULL, CTL_OPT_ENDPOINT},                                       \
        {"query", required_argument, NULL, CTL_OPT_QUERY},                                         \
        {"pub", required_argument, NULL, CTL_OPT_PUB},                                             \
        {"data", required_argument, NULL, CTL_OPT_DATA},                                           \
        {"timeout-ms", required_argument, NULL, CTL_OPT_TIMEOUT},                                  \
        {"json", no_argument, NULL, CTL_OPT_JSON}, {"help", no_argument, NULL, CTL_OPT_HELP},      \
    {                                                                                              \
        NULL, 0, NULL, 0                                                                           \
    }

/* Handles a global option id from getopt_long. Returns 0, 1 for --help, or -1 on a bad value
 * (message printed). */
int ctl_global_opt(ctl_globals *g, int id, const char *arg);

/* The text printed after each command's own usage: the global options. */
extern const char ctl_global_usage[];

/* Ends option parsing: rc > 0 (--help) prints usage and the global options to stdout and
 * returns CTL_EXIT_OK; otherwise prints a hint to stderr and returns CTL_EXIT_USAGE. */
int ctl_usage(int rc, const char *usage, const char *cmd);

/* Parses a non-negative integer option value in [min, max]. Returns 0 or -1 (message printed). */
int ctl_parse_u64(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out);

/* Prints "loyaltyctl: <msg>" to stderr. */
void ctl_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- commands: argv[0] is the command name; return an exit code ---- */
int ctl_cmd_send(ctl_globals *g, int argc, char **argv);
int ctl_cmd_member(ctl_globals *g, int argc, char **argv);
int ctl_cmd_status(ctl_globals *g, int argc, char **argv);
int ctl_cmd_subscribe(ctl_globals *g, int argc, char **argv);
int ctl_cmd_ledger(ctl_globals *g, int argc, char **argv);
int ctl_cmd_replay(ctl_globals *g, int argc, char **argv);
int ctl_cmd_verify(ctl_globals *g, int argc, char **argv);
int ctl_cmd_backup(ctl_globals *g, int argc, char **argv);
int ctl_cmd_restore(ctl_globals *g, int argc, char **argv);
int ctl_cmd_keygen(ctl_globals *g, int argc, char **argv);
int ctl_cmd_rejects(ctl_globals *g, int argc, char **argv);
int ctl_cmd_rerate(ctl_globals *g, int argc, char **argv);

/* ---- query endpoint (ctl/query.c) ---- */

/* Sends q to the query endpoint on a fresh DEALER and waits up to timeout_ms for the reply.
 * Returns 0 and *out (caller frees with loyalty__query_reply__free_unpacked(*out, NULL)), or -1
 * and a message in err (a timeout says the daemon may not be running). */
int ctl_query(void *zctx, const char *endpoint, const Loyalty__Query *q, int timeout_ms,
              Loyalty__QueryReply **out, char *err, size_t err_len);

/* ---- ledger replay (ctl/replay.c) ---- */

typedef struct {
    uint64_t entries;  /* entries applied */
    uint64_t last_seq; /* last sequence applied */
    uint64_t members;  /* members in the rebuilt state */
    uint64_t hash;     /* state_hash() */
    double elapsed_s;  /* wall time of the replay */
} ctl_replay_result;

/* Opens the ledger in dir read-only. Returns 0 and *out, or -1 (message printed). */
int ctl_ledger_open(const char *dir, ledger **out);
/* Opens the checkpoint store dir/state/ read-only (beside a running daemon, or in a backup).
 * Returns 0 with *out (ckstore_close()), or with *out NULL if dir has no state/ (data written
 * before state/ existed, or a backup of it); -1 if it cannot be opened (message printed, prefixed
 * with cmd). */
int ctl_ckstore_open(const char *cmd, const char *dir, ckstore **out);
/* Loads the checkpoint a daemon started on dir would recover from (ckpt_load(): dir/state/ if
 * it belongs to the ledger l, else the ledger's own checkpoint tables, else none) into a new
 * state, retrying if a checkpoint lands meanwhile. A state/ that is there but not used is
 * reported on stderr as a note. Returns 0 with *out (caller destroys), *cp_seq and *src (may
 * be NULL), or -1 (message printed). */
int ctl_load_checkpoint(ledger *l, const char *dir, state **out, uint64_t *cp_seq,
                        ckpt_source *src);

/* Applies entries from..to (to = 0: to the end) to s. Returns 0, or -1 with the failing
 * sequence and cause in err. */
int ctl_replay_range(ledger *l, state *s, uint64_t from, uint64_t to, ctl_replay_result *r,
                     char *err, size_t err_len);

/* ---- formatting (ctl/fmt.c) ---- */

/* Local date "YYYY-MM-DD" of UTC time t in loyaltyctl's time zone (TZ), "never" for 0. */
void ctl_fmt_date(int64_t t, char *buf, size_t cap);
/* Local "YYYY-MM-DD HH:MM +zzzz" of UTC time t, "never" for 0 (lot expiry). */
void ctl_fmt_minute(int64_t t, char *buf, size_t cap);
/* Local "YYYY-MM-DD HH:MM:SS +zzzz" of UTC time t, "-" for 0. */
void ctl_fmt_time(int64_t t, char *buf, size_t cap);
/* Fen as yuan "1234.56". */
void ctl_fmt_fen(int64_t fen, char *buf, size_t cap);
/* "ACCEPTED" / "DUPLICATE" / "REJECTED" / "UNSPECIFIED". */
const char *ctl_status_name(int status);

#endif
