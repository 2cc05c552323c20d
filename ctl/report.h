/* report.h: `loyaltyctl report liability|tiers|stores` (ctl/report.c): finance and operations
 * figures computed from the ledger in the data directory, read-only.
 */
#ifndef LT_CTL_REPORT_H
#define LT_CTL_REPORT_H

#include "ctl.h"

/* The `report` command: argv[0] is "report". Returns a CTL_EXIT_* code. */
int ctl_cmd_report(ctl_globals *g, int argc, char **argv);

#endif
