/* fmt.c: loyaltyctl's human-readable formatting of times, money and statuses.
 *
 * Dates are shown in loyaltyctl's own time zone (the TZ environment variable), because the
 * query reply carries UTC seconds only; set TZ to the store's zone to read local expiry dates.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "ctl.h"

/* Local time of t in fmt; `none` for 0; "@seconds" if it cannot be formatted. */
static void fmt_local(int64_t t, const char *fmt, const char *none, char *buf, size_t cap)
{
    if (t == 0) {
        snprintf(buf, cap, "%s", none);
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    if (localtime_r(&tt, &tm) == NULL || strftime(buf, cap, fmt, &tm) == 0)
        snprintf(buf, cap, "@%" PRId64, t);
}

void ctl_fmt_date(int64_t t, char *buf, size_t cap)
{
    fmt_local(t, "%Y-%m-%d", "never", buf, cap);
}

void ctl_fmt_minute(int64_t t, char *buf, size_t cap)
{
    fmt_local(t, "%Y-%m-%d %H:%M %z", "never", buf, cap);
}

void ctl_fmt_time(int64_t t, char *buf, size_t cap)
{
    fmt_local(t, "%Y-%m-%d %H:%M:%S %z", "-", buf, cap);
}

void ctl_fmt_fen(int64_t fen, char *buf, size_t cap)
{
    /* Unsigned magnitude: INT64_MIN has no positive counterpart. */
    uint64_t a = fen < 0 ? (uint64_t)0 - (uint64_t)fen : (uint64_t)fen;
    snprintf(buf, cap, "%s%" PRIu64 ".%02" PRIu64, fen < 0 ? "-" : "", a / 100, a % 100);
}

const char *ctl_status_name(int status)
{
    switch (status) {
    case LOYALTY__STATUS__ACCEPTED:
        return "ACCEPTED";
    case LOYALTY__STATUS__DUPLICATE:
        return "DUPLICATE";
    case LOYALTY__STATUS__REJECTED:
        return "REJECTED";
    }
    return "UNSPECIFIED";
}
