/* progress.c: progress bars and progress lines on stderr for long loyaltyctl operations (see
 * progress.h for what is shown when).
 */
#include "progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lt.h"

#define PROGRESS_BAR_WIDTH 20
#define PROGRESS_QTY_MAX 32   /* one formatted quantity */
#define PROGRESS_LINE_MAX 256 /* one report line */

/* A coarse monotonic clock: a few ms of resolution is plenty for 100 ms redraws, and reading
 * it costs almost nothing, so updates can be called once per entry. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static ctl_progress_mode mode_from_env(void)
{
    const char *v = getenv("LOYALTYCTL_PROGRESS");
    if (v == NULL)
        return CTL_PROGRESS_AUTO;
    if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0)
        return CTL_PROGRESS_OFF;
    if (strcmp(v, "all") == 0)
        return CTL_PROGRESS_ALL;
    return CTL_PROGRESS_AUTO;
}

void ctl_progress_start(ctl_progress *p, const char *label, const char *unit, uint64_t total,
                        bool quiet_on_tty)
{
    LT_ASSERT(p != NULL);
    LT_ASSERT(label != NULL && unit != NULL);
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->unit = unit;
    p->total = total;
    p->mode = mode_from_env();
    p->tty = isatty(STDERR_FILENO) == 1;
    p->enabled = p->mode != CTL_PROGRESS_OFF && !(p->tty && quiet_on_tty);
    p->start_s = now_s();
    p->next_s = p->start_s + (p->mode == CTL_PROGRESS_ALL ? 0 : CTL_PROGRESS_DELAY_MS / 1000.0);
}

/* "1.3M", "412k", "987" for counts; "1.3 GiB", "12.0 MiB", "512 B" for bytes. */
static void fmt_qty(char *buf, size_t cap, double v, bool bytes)
{
    if (bytes) {
        static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        size_t i = 0;
        while (v >= 1024 && i + 1 < LT_ARRAY_LEN(units)) {
            v /= 1024;
            i++;
        }
        snprintf(buf, cap, i == 0 ? "%.0f %s" : "%.1f %s", v, units[i]);
        return;
    }
    if (v >= 1e9)
        snprintf(buf, cap, "%.1fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, cap, "%.1fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, cap, "%.0fk", v / 1e3);
    else
        snprintf(buf, cap, "%.0f", v);
}

/* "1:02:03" or "2:03"; "?" when unknown. */
static void fmt_eta(char *buf, size_t cap, double s)
{
    if (s < 0 || s > 99 * 3600.0) {
        snprintf(buf, cap, "?");
        return;
    }
    unsigned t = (unsigned)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%u:%02u:%02u", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%u:%02u", t / 60, t % 60);
}

/* Percent done, held below 100 until the end (a byte total may be an estimate). */
static unsigned percent(const ctl_progress *p)
{
    if (p->total == 0)
        return 0;
    double pct = 100.0 * (double)p->done / (double)p->total;
    return pct >= 99 ? 99 : (unsigned)pct;
}

static void draw_tty(ctl_progress *p, double elapsed_s)
{
    bool bytes = strcmp(p->unit, "bytes") == 0;
    double rate = elapsed_s > 0 ? (double)p->done / elapsed_s : 0;
    char done[PROGRESS_QTY_MAX], total[PROGRESS_QTY_MAX], r[PROGRESS_QTY_MAX];
    char eta[PROGRESS_QTY_MAX], line[PROGRESS_LINE_MAX];
    fmt_qty(done, sizeof done, (double)p->done, bytes);
    fmt_qty(r, sizeof r, rate, bytes);
    if (p->total > 0) {
        unsigned pct = percent(p);
        char bar[PROGRESS_BAR_WIDTH + 1];
        size_t fill = (size_t)pct * PROGRESS_BAR_WIDTH / 100;
        memset(bar, '#', fill);
        memset(bar + fill, '-', PROGRESS_BAR_WIDTH - fill);
        bar[PROGRESS_BAR_WIDTH] = '\0';
        fmt_qty(total, sizeof total, (double)p->total, bytes);
        double left = p->total > p->done ? (double)(p->total - p->done) : 0;
        fmt_eta(eta, sizeof eta, rate > 0 ? left / rate : -1);
        snprintf(line, sizeof line, "%s [%s] %3u%%  %s/%s%s%s  %s/s  ETA %s", p->label, bar, pct,
                 done, total, bytes ? "" : " ", bytes ? "" : p->unit, r, eta);
    } else {
        snprintf(line, sizeof line, "%s  %s%s%s  %s/s", p->label, done, bytes ? "" : " ",
                 bytes ? "" : p->unit, r);
    }
    /* \r back to column 0, then erase what a longer previous line left behind. */
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    p->on_screen = true;
}

static void draw_line(ctl_progress *p, double elapsed_s)
{
    double rate = elapsed_s > 0 ? (double)p->done / elapsed_s : 0;
    if (p->total > 0) {
        char eta[PROGRESS_QTY_MAX];
        double left = p->total > p->done ? (double)(p->total - p->done) : 0;
        fmt_eta(eta, sizeof eta, rate > 0 ? left / rate : -1);
        fprintf(stderr, "loyaltyctl: %s: %u%% %" PRIu64 "/%" PRIu64 " %s, %.0f %s/s, ETA %s\n",
                p->label, percent(p), p->done, p->total, p->unit, rate, p->unit, eta);
    } else {
        fprintf(stderr, "loyaltyctl: %s: %" PRIu64 " %s, %.0f %s/s\n", p->label, p->done, p->unit,
                rate, p->unit);
    }
    fflush(stderr);
}

void ctl_progress_update(ctl_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    double t = now_s();
    if (t < p->next_s)
        return;
    if (p->tty)
        draw_tty(p, t - p->start_s);
    else
        draw_line(p, t - p->start_s);
    p->shown = true;
    p->next_s = t + (p->tty ? CTL_PROGRESS_TTY_MS : CTL_PROGRESS_LINE_MS) / 1000.0;
}

void ctl_progress_done(ctl_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    if (p->on_screen) {
        fputs("\r\033[K", stderr);
        p->on_screen = false;
    }
    if ((p->shown && !p->tty) || p->mode == CTL_PROGRESS_ALL) {
        double elapsed_s = now_s() - p->start_s;
        fprintf(stderr, "loyaltyctl: %s: done, %" PRIu64 " %s in %.1f s\n", p->label, done, p->unit,
                elapsed_s);
    }
    fflush(stderr);
    p->enabled = false; /* a second call prints nothing */
}
