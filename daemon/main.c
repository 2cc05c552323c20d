/* main.c: loyaltyd's command line. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "rules.h"

static void usage(FILE *f)
{
    fputs("NAME\n"
          "    loyaltyd - loyalty-points event processor\n"
          "\n"
          "SYNOPSIS\n"
          "    loyaltyd [--config FILE] [--log-level LEVEL]\n"
          "    loyaltyd --check-config [--config FILE]\n"
          "    loyaltyd --print-config [--config FILE]\n"
          "\n"
          "DESCRIPTION\n"
          "    Receives checkout events from tills over ZeroMQ, rates them with the rules file,\n"
          "    records the results in an append-only LMDB ledger and acknowledges each event\n"
          "    only once it is durable on disk. Member updates are published to subscribers.\n"
          "    Every setting has a built-in default (see docs/configuration.md): with no\n"
          "    --config the daemon keeps its data under var/data, listens on\n"
          "    tcp://127.0.0.1:7700 (tills), publishes on :7701, answers queries on :7702 and\n"
          "    uses the built-in rules (the seed programme of RULES.md).\n"
          "\n"
          "OPTIONS\n"
          "    -c, --config FILE     YAML configuration file\n"
          "    -l, --log-level L     debug, info, warn or error (overrides the file)\n"
          "        --check-config    validate the configuration and the rules file, then exit\n"
          "        --print-config    print the effective configuration, then exit\n"
          "    -V, --version         print the version\n"
          "    -h, --help            this text\n"
          "\n"
          "SIGNALS\n"
          "    SIGINT, SIGTERM       stop taking events, commit and acknowledge what is in\n"
          "                          flight, checkpoint, close the ledger, exit 0\n"
          "\n"
          "EXIT STATUS\n"
          "    0 clean stop, 1 start-up failure, 2 usage, 70 internal error, 71 out of\n"
          "    memory, 74 the ledger cannot be read back after a failed commit. A failed\n"
          "    commit alone does not stop the daemon: it refuses events (STORAGE_UNAVAILABLE),\n"
          "    reloads its state from the ledger and takes events again once a commit works\n",
          f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},
        {"log-level", required_argument, 0, 'l'},
        {"check-config", no_argument, 0, 'C'},
        {"print-config", no_argument, 0, 'P'},
        {"version", no_argument, 0, 'V'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *config_path = NULL, *level = NULL;
    bool check = false, print = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:l:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'l':
            level = optarg;
            break;
        case 'C':
            check = true;
            break;
        case 'P':
            print = true;
            break;
        case 'V':
            printf("loyaltyd %s\n", LT_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "loyaltyd: unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return 2;
    }
    config cfg;
    char err[1024];
    config_defaults(&cfg);
    if (config_path != NULL && config_load(&cfg, config_path, err, sizeof err) != 0) {
        fprintf(stderr, "loyaltyd: %s\n", err);
        return 1;
    }
    if (level != NULL)
        snprintf(cfg.log_level, sizeof cfg.log_level, "%s", level);
    lt_log_level lv;
    if (lt_log_parse_level(cfg.log_level, &lv) != 0) {
        fprintf(stderr, "loyaltyd: log level \"%s\" is not debug, info, warn or error\n",
                cfg.log_level);
        return 1;
    }
    lt_log_set_level(lv);
    if (config_check(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "loyaltyd: %s\n", err);
        return 1;
    }
    if (print) {
        config_print(&cfg, stdout);
        return 0;
    }
    if (check) {
        rules *r = NULL;
        int rc = cfg.rules_file[0] != '\0'
                     ? rules_load_file(cfg.rules_file, &r, err, sizeof err)
                     : rules_load_string(rules_default_text(), strlen(rules_default_text()),
                                         "<built-in rules>", &r, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "loyaltyd: %s\n", err);
            return 1;
        }
        printf("configuration ok; rules version \"%s\"\n", rules_version(r));
        rules_destroy(&r);
        return 0;
    }
    return daemon_run(&cfg);
}
