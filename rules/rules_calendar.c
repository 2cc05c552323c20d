/* rules_calendar.c: store-local calendar arithmetic (R3): day numbers, civil dates, birthdays
 * and the expiry time of a new lot (R19). Integer only; no libc time functions, so the daemon's
 * own time zone can never leak into rating.
 */
#include "rules_internal.h"

#define SECONDS_PER_DAY 86400

/* Floor division for a positive divisor (C division truncates toward zero). */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b) != 0 && a < 0)
        q--;
    return q;
}

int64_t rules_local_day(int64_t t, int32_t off_min)
{
    /* ingest bounds occurred_at to a sane range, so t + offset cannot overflow */
    return floor_div(t + (int64_t)off_min * 60, SECONDS_PER_DAY);
}

/* Howard Hinnant's days_from_civil / civil_from_days (public domain algorithms). */
int64_t rules_days_from_civil(int y, int m, int d)
{
    int64_t yy = (int64_t)y - (m <= 2);
    int64_t era = floor_div(yy, 400);
    int64_t yoe = yy - era * 400;
    int64_t mp = (m + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The date of the last day asked for, per thread: rating an event asks for the same few
 * days many times over (its local day, period starts, birthdays), and the divisions below are
 * slow. Only a cache of a pure function: no result depends on it. */
static _Thread_local struct {
    bool valid;
    int64_t days;
    int y, m, d;
} civil_memo;

void rules_civil_from_days(int64_t days, int *y, int *m, int *d)
{
    if (civil_memo.valid && civil_memo.days == days) {
        *y = civil_memo.y;
        *m = civil_memo.m;
        *d = civil_memo.d;
        return;
    }
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t dd = doy - (153 * mp + 2) / 5 + 1;
    int64_t mm = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yoe + era * 400 + (mm <= 2));
    *m = (int)mm;
    *d = (int)dd;
    civil_memo.valid = true;
    civil_memo.days = days;
    civil_memo.y = *y;
    civil_memo.m = *m;
    civil_memo.d = *d;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int rules__days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    LT_ASSERT(m >= 1 && m <= 12);
    return (m == 2 && is_leap(y)) ? 29 : dim[m - 1];
}

bool rules__is_birthday(int64_t t, int32_t off_min, uint8_t month, uint8_t day)
{
    int y, m, d;
    if (month == 0 || day == 0)
        return false;
    rules_civil_from_days(rules_local_day(t, off_min), &y, &m, &d);
    if (m == month && d == day)
        return true;
    /* 29 Feb birthdays are celebrated on 28 Feb in common years (R13) */
    return month == 2 && day == 29 && !is_leap(y) && m == 2 && d == 28;
}

/* The first cut-off day strictly after local day `day` (R19 calendar mode). The cut-off days are
 * the configured month-day and the same day every period_months from it, the day clamped to the
 * month's length: cutoff 12-31 with period_months 3 gives 03-31, 06-30, 09-30 and 12-31. */
static int64_t next_cutoff_day(const rules *r, int64_t day)
{
    int y, m, d;
    int64_t best = INT64_MAX;
    uint32_t per_year = 12 / r->expiry_period_months;

    rules_civil_from_days(day, &y, &m, &d);
    for (int yy = y; yy <= y + 1; yy++) {
        for (uint32_t k = 0; k < per_year; k++) {
            int cm = (int)((r->cutoff_month - 1 + k * r->expiry_period_months) % 12) + 1;
            int cd = (int)r->cutoff_day;
            if (cd > rules__days_in_month(yy, cm))
                cd = rules__days_in_month(yy, cm);
            int64_t cand = rules_days_from_civil(yy, cm, cd);
            if (cand > day && cand < best)
                best = cand;
        }
    }
    LT_ASSERT(best != INT64_MAX); /* every year holds each cut-off month */
    return best;
}

int64_t rules_lot_expires_at(const rules *r, int64_t t, int32_t off_min)
{
    int64_t day = rules_local_day(t, off_min);
    int64_t expiry_day;

    switch (r->expiry_mode) {
    case RULES_EXPIRY_NONE:
        return 0;
    case RULES_EXPIRY_ROLLING:
        expiry_day = day + r->ttl_days;
        break;
    case RULES_EXPIRY_CALENDAR:
    default:
        expiry_day = next_cutoff_day(r, day);
        break;
    }
    /* 00:00 store-local time of that day, as UTC */
    return expiry_day * SECONDS_PER_DAY - (int64_t)off_min * 60;
}
