/* progress.h: progress reports on stderr for loyaltyctl's long operations (replay, verify's
 * replay, backup, restore, large ledger dumps).
 *
 * Nothing is shown for a run that finishes within CTL_PROGRESS_DELAY_MS. After that, on a
 * terminal (isatty(2)) one line is redrawn in place, at most every CTL_PROGRESS_TTY_MS:
 *
 *   replay [##########----------]  51%  1.3M/2.6M entries  412k/s  ETA 0:03
 *
 * and when stderr is not a terminal (a log, a pipe) a plain line is printed every
 * CTL_PROGRESS_LINE_MS instead, plus a final one if any was printed:
 *
 *   loyaltyctl: replay: 51% 1300000/2600000 entries, 412000 entries/s, ETA 3 s
 *
 * The environment variable LOYALTYCTL_PROGRESS changes this: "off" shows nothing, "all" shows
 * progress from the start (no delay) and always ends with a final plain line (tests use it).
 *
 * The struct is embedded by the caller and needs no cleanup beyond ctl_progress_done().
 */
#ifndef LT_CTL_PROGRESS_H
#define LT_CTL_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#define CTL_PROGRESS_DELAY_MS 1000 /* runs shorter than this show nothing */
#define CTL_PROGRESS_TTY_MS 100    /* terminal redraws: at most ~10 per second */
#define CTL_PROGRESS_LINE_MS 2000  /* plain lines when stderr is not a terminal */
#define CTL_PROGRESS_LABEL_MAX 24

typedef enum { CTL_PROGRESS_AUTO, CTL_PROGRESS_OFF, CTL_PROGRESS_ALL } ctl_progress_mode;

typedef struct {
    char label[CTL_PROGRESS_LABEL_MAX]; /* "replay", "backup" */
    const char *unit;                   /* "entries", "bytes" (static string) */
    uint64_t total;                     /* 0 = unknown: no percent, no ETA */
    uint64_t done;
    ctl_progress_mode mode;
    bool tty;       /* stderr is a terminal: redraw one line */
    bool shown;     /* something was printed */
    bool on_screen; /* a terminal line is drawn and must be cleared */
    bool enabled;
    double start_s, next_s; /* monotonic seconds: start, and the earliest next report */
} ctl_progress;

/* Starts a report: label names the operation, unit is a static string, total the amount
 * expected (0 if unknown). Progress is off when stderr is a terminal and quiet_on_tty is true
 * (a command printing to the same terminal, like ledger dump, would be garbled). */
void ctl_progress_start(ctl_progress *p, const char *label, const char *unit, uint64_t total,
                        bool quiet_on_tty);

/* Records that done units are finished; prints if it is time to. Cheap enough to call per
 * entry: it reads a coarse clock and returns. */
void ctl_progress_update(ctl_progress *p, uint64_t done);

/* Ends the report: clears the terminal line, or prints a final plain line if lines were
 * printed (or the mode is "all"). Call before printing the command's own result. */
void ctl_progress_done(ctl_progress *p, uint64_t done);

#endif
