/* main.c: loyaltyctl's entry point: global options, the command table and usage text. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "report.h"

static const char usage_text[] =
    "usage: loyaltyctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Operator tool for loyaltyd.\n"
    "\n"
    "commands:\n"
    "  send FILE|-              send JSON-lines events (docs/events-json.md) to the daemon\n"
    "  member show ID           show one member's balance, tier, lots and cards\n"
    "  subscribe [--from SEQ] [--state-file F] [TOPIC...]\n"
    "                           print published updates; with --from, none missed\n"
    "  ledger tail [-n N] [--follow]\n"
    "  ledger dump [--from SEQ] [--to SEQ]\n"
    "                           print ledger entries as JSON lines (reads the data dir)\n"
    "  replay                   rebuild member state from the ledger alone, print its hash\n"
    "  verify [--offline]       compare the daemon's state hash with a replay of the ledger\n"
    "  status                   daemon status: committed sequence, members, rules version\n"
    "  backup DIR               hot, compacted copy of the ledger into a new or empty DIR\n"
    "  restore BACKUP_DIR --data DIR [--force]\n"
    "                           put a backup into a data directory (daemon stopped)\n"
    "  keygen [PREFIX]          a CURVE key pair for the daemon, a till or a client\n"
    "  rerate --rules FILE [--from DAY] [--to DAY]\n"
    "                           what-if: points the recorded sales would earn under FILE\n"
    "  rejects [-n N] [--reason NAME] [--raw]\n"
    "                           rejected events and messages (the dead-letter store)\n"
    "  report liability|tiers|stores\n"
    "                           points liability, members per tier, sales per store and day\n"
    "\n"
    "Run 'loyaltyctl COMMAND --help' for a command's options.\n"
    "\n";

const char ctl_global_usage[] =
    "global options (before or after the command):\n"
    "  --endpoint EP      ingest endpoint (default " CTL_DEFAULT_ENDPOINT ")\n"
    "  --query EP         query endpoint (default " CTL_DEFAULT_QUERY ")\n"
    "  --pub EP           publisher endpoint (default " CTL_DEFAULT_PUB ")\n"
    "  --data DIR         data directory holding the ledger (default " CTL_DEFAULT_DATA ")\n"
    "  --timeout-ms MS    how long to wait for the daemon (default 10000)\n"
    "  --json             machine-readable output, one JSON object per line\n"
    "  --help             this text\n"
    "\n"
    "exit status: 0 success, 1 failure, 2 usage error.\n";

static const struct {
    const char *name;
    int (*fn)(ctl_globals *g, int argc, char **argv);
} commands[] = {
    {"send", ctl_cmd_send},     {"member", ctl_cmd_member}, {"subscribe", ctl_cmd_subscribe},
    {"ledger", ctl_cmd_ledger}, {"replay", ctl_cmd_replay}, {"verify", ctl_cmd_verify},
    {"status", ctl_cmd_status}, {"backup", ctl_cmd_backup}, {"restore", ctl_cmd_restore},
    {"keygen", ctl_cmd_keygen}, {"report", ctl_cmd_report}, {"rejects", ctl_cmd_rejects},
    {"rerate", ctl_cmd_rerate},
};

void ctl_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loyaltyctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int ctl_parse_u64(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (arg == NULL || arg[0] < '0' || arg[0] > '9') {
        ctl_errorf("%s: expected a number, got '%s'", opt, arg ? arg : "");
        return -1;
    }
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno || *end || v < min || v > max) {
        ctl_errorf("%s: '%s' is not a number in [%" PRIu64 ", %" PRIu64 "]", opt, arg, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int ctl_global_opt(ctl_globals *g, int id, const char *arg)
{
    uint64_t v;
    switch (id) {
    case CTL_OPT_ENDPOINT:
        g->endpoint = arg;
        return 0;
    case CTL_OPT_QUERY:
        g->query = arg;
        return 0;
    case CTL_OPT_PUB:
        g->pub = arg;
        return 0;
    case CTL_OPT_DATA:
        g->data = arg;
        g->data_given = true;
        return 0;
    case CTL_OPT_TIMEOUT:
        if (ctl_parse_u64("--timeout-ms", arg, 1, CTL_TIMEOUT_MS_MAX, &v) < 0)
            return -1;
        g->timeout_ms = (int)v;
        g->timeout_given = true;
        return 0;
    case CTL_OPT_JSON:
        g->json = true;
        return 0;
    case CTL_OPT_HELP:
        return 1;
    }
    return -1;
}

int ctl_usage(int rc, const char *usage, const char *cmd)
{
    if (rc > 0) {
        fputs(usage, stdout);
        fputs(ctl_global_usage, stdout);
        return CTL_EXIT_OK;
    }
    fprintf(stderr, "Try 'loyaltyctl %s --help'.\n", cmd);
    return CTL_EXIT_USAGE;
}

static int main_usage(FILE *f, int code)
{
    fputs(usage_text, f);
    fputs(ctl_global_usage, f);
    return code;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {CTL_GLOBAL_LONGOPTS};
    ctl_globals g = {CTL_DEFAULT_ENDPOINT,
                     CTL_DEFAULT_QUERY,
                     CTL_DEFAULT_PUB,
                     CTL_DEFAULT_DATA,
                     CTL_DEFAULT_TIMEOUT_MS,
                     false,
                     false,
                     false};
    int c;
    /* '+': stop at the command name; the command parses the rest (globals included). */
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        if (c == 'h')
            return main_usage(stdout, CTL_EXIT_OK);
        if (c == '?')
            return main_usage(stderr, CTL_EXIT_USAGE);
        int rc = ctl_global_opt(&g, c, optarg);
        if (rc == 1)
            return main_usage(stdout, CTL_EXIT_OK);
        if (rc < 0)
            return CTL_EXIT_USAGE;
    }
    if (optind >= argc) {
        ctl_errorf("no command given");
        return main_usage(stderr, CTL_EXIT_USAGE);
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0)
        return main_usage(stdout, CTL_EXIT_OK);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(name, commands[i].name) == 0) {
            int sub_argc = argc - optind;
            char **sub_argv = argv + optind;
            optind = 0; /* 0 reinitialises glibc's getopt for the command's own parse */
            return commands[i].fn(&g, sub_argc, sub_argv);
        }
    }
    ctl_errorf("unknown command '%s'", name);
    return main_usage(stderr, CTL_EXIT_USAGE);
}
