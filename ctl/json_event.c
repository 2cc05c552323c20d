/* json_event.c: JSON event objects -> loyalty.Event, strictly, with errors that name the key.
 *
 * Every allocation below uses malloc/calloc/strdup, so the finished event is released with
 * protobuf-c's own loyalty__event__free_unpacked() (system allocator), which walks the tree.
 */
#include "json_event.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lt.h"

/* A JSON document line is small; this bounds error-path strings, not input. */
#define JE_PATH_MAX 96

typedef struct {
    char *err;
    size_t err_len;
} je_ctx;

static int fail(je_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(je_ctx *c, const char *path, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (path && path[0])
        snprintf(c->err, c->err_len, "%s: %s", path, msg);
    else
        snprintf(c->err, c->err_len, "%s", msg);
    return -1;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a fractional number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

/* Rejects keys not in `allowed` (NULL-terminated). Keys starting with '_' are comments. */
static void sub_path(char *out, size_t cap, const char *path, const char *key)
{
    /* a path longer than cap is cut: it only labels an error message */
    if (snprintf(out, cap, "%s%s%s", path, path[0] ? "." : "", key) >= (int)cap)
        out[cap - 1] = '\0';
}

static int check_keys(je_ctx *c, const char *path, const json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        (void)val;
        if (key[0] == '_')
            continue;
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char p[JE_PATH_MAX];
            sub_path(p, sizeof p, path, key);
            return fail(c, p, "unknown key (see docs/events-json.md)");
        }
    }
    return 0;
}

/* Reads an optional integer in [min, max]. Returns 0 (and *present), or -1. */
static int get_int(je_ctx *c, const char *path, const json_t *obj, const char *key, int64_t min,
                   int64_t max, int64_t *out, bool *present)
{
    char p[JE_PATH_MAX];
    json_t *v = json_object_get(obj, key);
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    sub_path(p, sizeof p, path, key);
    if (!json_is_integer(v))
        return fail(c, p, "expected an integer, got %s", type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return fail(c, p, "%lld is out of range [%lld, %lld]", (long long)x, (long long)min,
                    (long long)max);
    *out = x;
    return 0;
}

/* Reads an optional string into a fresh copy (*out stays NULL if absent). Returns 0 or -1. */
static int get_str(je_ctx *c, const char *path, const json_t *obj, const char *key, char **out)
{
    char p[JE_PATH_MAX];
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    sub_path(p, sizeof p, path, key);
    if (!json_is_string(v))
        return fail(c, p, "expected a string, got %s", type_name(v));
    *out = strdup(json_string_value(v));
    if (*out == NULL)
        return fail(c, p, "out of memory");
    return 0;
}

static int get_bool(je_ctx *c, const char *path, const json_t *obj, const char *key, bool *out,
                    bool *present)
{
    char p[JE_PATH_MAX];
    json_t *v = json_object_get(obj, key);
    *present = v != NULL && !json_is_null(v);
    if (!*present)
        return 0;
    sub_path(p, sizeof p, path, key);
    if (!json_is_boolean(v))
        return fail(c, p, "expected true or false, got %s", type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* Returns the object at key, NULL if absent; *bad set when present but not an object. */
static const json_t *get_obj(je_ctx *c, const char *path, const json_t *obj, const char *key,
                             bool *bad)
{
    char p[JE_PATH_MAX];
    json_t *v = json_object_get(obj, key);
    *bad = false;
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_object(v)) {
        sub_path(p, sizeof p, path, key);
        fail(c, p, "expected an object, got %s", type_name(v));
        *bad = true;
        return NULL;
    }
    return v;
}

/* ------------------------------------------------------------------ time */

int64_t json_event_days_from_civil(int y, int m, int d)
{
    /* H. Hinnant's days_from_civil: exact for the proleptic Gregorian calendar. */
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void json_event_civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* Reads exactly n digits at *s. Returns the value or -1. */
static int digits(const char **s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*s)[i];
        if (ch < '0' || ch > '9')
            return -1;
        v = v * 10 + (ch - '0');
    }
    *s += n;
    return v;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

static int parse_offset(const char *s, int32_t *off)
{
    int sign = *s == '-' ? -1 : 1;
    s++;
    int hh = digits(&s, 2), mm = 0;
    if (hh < 0)
        return -1;
    if (*s == ':')
        s++;
    if (*s) {
        mm = digits(&s, 2);
        if (mm < 0 || *s)
            return -1;
    }
    if (hh > 18 || mm > 59)
        return -1;
    *off = sign * (hh * 60 + mm);
    return 0;
}

int json_event_parse_time(const char *s, int64_t *utc, int *has_offset, int32_t *offset_min)
{
    int y = digits(&s, 4);
    if (y < 0 || *s++ != '-')
        return -1;
    int mo = digits(&s, 2);
    if (mo < 1 || mo > 12 || *s++ != '-')
        return -1;
    int d = digits(&s, 2);
    if (d < 1 || d > days_in_month(y, mo))
        return -1;
    if (*s != 'T' && *s != 't' && *s != ' ')
        return -1;
    s++;
    int hh = digits(&s, 2);
    if (hh < 0 || hh > 23 || *s++ != ':')
        return -1;
    int mi = digits(&s, 2), ss = 0;
    if (mi < 0 || mi > 59)
        return -1;
    if (*s == ':') {
        s++;
        ss = digits(&s, 2);
        if (ss < 0 || ss > 60) /* a leap second is read as the next second */
            return -1;
        if (*s == '.' || *s == ',') { /* fractions are dropped: the wire carries seconds */
            s++;
            if (*s < '0' || *s > '9')
                return -1;
            while (*s >= '0' && *s <= '9')
                s++;
        }
    }
    *has_offset = 0;
    *offset_min = 0;
    if (*s == 'Z' || *s == 'z') {
        if (s[1])
            return -1;
        *has_offset = 1;
    } else if (*s == '+' || *s == '-') {
        if (parse_offset(s, offset_min) < 0)
            return -1;
        *has_offset = 1;
    } else if (*s) {
        return -1;
    }
    int64_t local = json_event_days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss;
    *utc = local - (int64_t)*offset_min * 60;
    return 0;
}

void json_event_format_time(int64_t t, int32_t off_min, char *buf, size_t cap)
{
    int64_t local = t + (int64_t)off_min * 60;
    int64_t days = local / 86400, secs = local % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    int y, m, d;
    json_event_civil_from_days(days, &y, &m, &d);
    int a = off_min < 0 ? -off_min : off_min;
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", y, m, d, (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60), off_min < 0 ? '-' : '+', a / 60, a % 60);
}

/* The machine's own UTC offset at t, for "at": "now" without any other offset. */
static int32_t machine_offset_min(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (localtime_r(&tt, &tm) == NULL)
        return 0;
    return (int32_t)(tm.tm_gmtoff / 60);
}

/* Converts a local time in a named zone to UTC: the offset is taken at the local time read as
 * UTC, then re-taken at the resulting instant, which settles it except inside a DST gap. */
static int local_to_utc(const json_event_defaults *d, const char *zone, int64_t local, int64_t *utc,
                        int64_t *off_out)
{
    int32_t off1, off2;
    if (d->zone_offset(zone, local, &off1) < 0 ||
        d->zone_offset(zone, local - (int64_t)off1 * 60, &off2) < 0)
        return -1;
    *utc = local - (int64_t)off2 * 60;
    *off_out = off2;
    return 0;
}

/* Fills occurred_at, utc_offset_min and time_zone from "at", "utc_offset_min" and "tz". */
static int parse_when(je_ctx *c, const json_t *obj, const json_event_defaults *d,
                      Loyalty__Event *ev)
{
    int64_t off = 0;
    bool has_off = false;
    if (get_int(c, "", obj, "utc_offset_min", -18 * 60, 18 * 60, &off, &has_off) < 0)
        return -1;
    if (get_str(c, "", obj, "tz", &ev->time_zone) < 0)
        return -1;
    if (!has_off && d && d->has_utc_offset && ev->time_zone == NULL) {
        off = d->utc_offset_min;
        has_off = true;
    }
    json_t *at = json_object_get(obj, "at");
    if (at == NULL || json_is_null(at))
        return fail(c, "at", "missing: the time of the event is required");
    int64_t utc;
    if (json_is_integer(at)) {
        utc = json_integer_value(at);
        if (!has_off && ev->time_zone == NULL)
            return fail(c, "at",
                        "epoch seconds need \"utc_offset_min\" or \"tz\" (or --utc-offset)");
    } else if (json_is_string(at) && strcmp(json_string_value(at), "now") == 0) {
        utc = (int64_t)time(NULL);
        if (!has_off && ev->time_zone == NULL) {
            off = machine_offset_min(utc);
            has_off = true;
        }
    } else if (json_is_string(at)) {
        int has_text_off;
        int32_t text_off;
        if (json_event_parse_time(json_string_value(at), &utc, &has_text_off, &text_off) < 0)
            return fail(c, "at", "\"%s\" is not an ISO 8601 time like 2026-11-23T10:00:00+08:00",
                        json_string_value(at));
        if (has_text_off) {
            if (json_object_get(obj, "utc_offset_min") && has_off && off != text_off)
                return fail(c, "at", "offset %+d min disagrees with utc_offset_min %+lld", text_off,
                            (long long)off);
            off = text_off;
            has_off = true;
        } else if (has_off) {
            utc -= off * 60;
        } else if (ev->time_zone && d && d->zone_offset) {
            if (local_to_utc(d, ev->time_zone, utc, &utc, &off) < 0)
                return fail(c, "tz", "\"%s\" is not a known time zone", ev->time_zone);
            has_off = true;
        } else {
            return fail(c, "at",
                        "a local time without an offset needs \"utc_offset_min\", "
                        "\"tz\" or --utc-offset");
        }
    } else {
        return fail(c, "at", "expected an ISO 8601 string or epoch seconds, got %s", type_name(at));
    }
    ev->has_occurred_at = 1;
    ev->occurred_at = utc;
    if (has_off) {
        ev->has_utc_offset_min = 1;
        ev->utc_offset_min = (int32_t)off;
    }
    return 0;
}

/* ------------------------------------------------------------------ bodies */

static int parse_flags(je_ctx *c, const char *path, const json_t *line, Loyalty__SaleLine *sl)
{
    char p[JE_PATH_MAX];
    json_t *v = json_object_get(line, "flags");
    if (v == NULL || json_is_null(v))
        return 0;
    sub_path(p, sizeof p, path, "flags");
    sl->has_flags = 1;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0 || x > UINT32_MAX)
            return fail(c, p, "%lld is not a flag bit mask", (long long)x);
        sl->flags = (uint32_t)x;
        return 0;
    }
    if (!json_is_array(v))
        return fail(c, p, "expected an array of \"promotion\" / \"group_buy\", got %s",
                    type_name(v));
    size_t i;
    json_t *f;
    json_array_foreach(v, i, f)
    {
        const char *s = json_is_string(f) ? json_string_value(f) : "";
        if (strcmp(s, "promotion") == 0)
            sl->flags |= LOYALTY__LINE_FLAG__LINE_FLAG_PROMOTION;
        else if (strcmp(s, "group_buy") == 0)
            sl->flags |= LOYALTY__LINE_FLAG__LINE_FLAG_GROUP_BUY;
        else
            return fail(c, p, "item %zu: expected \"promotion\" or \"group_buy\"", i);
    }
    return 0;
}

static int parse_sale_line(je_ctx *c, const char *path, const json_t *line, Loyalty__SaleLine **out)
{
    static const char *const keys[] = {"sku", "category", "qty", "list", "paid", "flags", NULL};
    if (!json_is_object(line))
        return fail(c, path, "expected an object, got %s", type_name(line));
    Loyalty__SaleLine *sl = malloc(sizeof *sl);
    if (sl == NULL)
        return fail(c, path, "out of memory");
    loyalty__sale_line__init(sl);
    *out = sl;
    if (check_keys(c, path, line, keys) < 0)
        return -1;
    if (get_str(c, path, line, "sku", &sl->sku) < 0 ||
        get_str(c, path, line, "category", &sl->category) < 0)
        return -1;
    bool has_qty, has_list, has_paid;
    int64_t qty = 1, list = 0, paid = 0;
    if (get_int(c, path, line, "qty", INT64_MIN, INT64_MAX, &qty, &has_qty) < 0 ||
        get_int(c, path, line, "list", INT64_MIN, INT64_MAX, &list, &has_list) < 0 ||
        get_int(c, path, line, "paid", INT64_MIN, INT64_MAX, &paid, &has_paid) < 0)
        return -1;
    if (!has_paid && !has_list)
        return fail(c, path, "needs \"paid\" (unit price paid, fen) and/or \"list\"");
    sl->has_quantity = 1;
    sl->quantity = qty;
    sl->has_unit_list_fen = 1;
    sl->unit_list_fen = has_list ? list : paid;
    sl->has_unit_paid_fen = 1;
    sl->unit_paid_fen = has_paid ? paid : list;
    return parse_flags(c, path, line, sl);
}

static int parse_sale(je_ctx *c, const json_t *o, Loyalty__Event *ev)
{
    static const char *const keys[] = {"lines", "redeem_points", NULL};
    Loyalty__Sale *s = malloc(sizeof *s);
    if (s == NULL)
        return fail(c, "sale", "out of memory");
    loyalty__sale__init(s);
    ev->body_case = LOYALTY__EVENT__BODY_SALE;
    ev->sale = s;
    if (check_keys(c, "sale", o, keys) < 0)
        return -1;
    bool has;
    if (get_int(c, "sale", o, "redeem_points", INT64_MIN, INT64_MAX, &s->redeem_points, &has) < 0)
        return -1;
    s->has_redeem_points = has;
    json_t *lines = json_object_get(o, "lines");
    if (lines == NULL || !json_is_array(lines))
        return fail(c, "sale.lines", "expected an array of lines");
    size_t n = json_array_size(lines);
    if (n == 0)
        return 0; /* the daemon decides whether an empty sale is acceptable */
    s->lines = calloc(n, sizeof *s->lines);
    if (s->lines == NULL)
        return fail(c, "sale.lines", "out of memory");
    for (size_t i = 0; i < n; i++) {
        char p[JE_PATH_MAX];
        snprintf(p, sizeof p, "sale.lines[%zu]", i);
        int rc = parse_sale_line(c, p, json_array_get(lines, i), &s->lines[i]);
        if (s->lines[i])
            s->n_lines = i + 1;
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* "birthday": "MM-DD" or "YYYY-MM-DD" (the year is ignored), or birth_month + birth_day. */
static int parse_birthday(je_ctx *c, const json_t *o, Loyalty__Enrol *en)
{
    const json_t *b = json_object_get(o, "birthday");
    if (b && !json_is_null(b)) {
        const char *s = json_is_string(b) ? json_string_value(b) : "";
        size_t len = strlen(s);
        if (len == 10)
            s += 5;
        int m = -1, d = -1;
        if (strlen(s) == 5 && s[2] == '-') {
            const char *q = s;
            m = digits(&q, 2);
            q++;
            d = digits(&q, 2);
        }
        if (m < 1 || m > 12 || d < 1 || d > days_in_month(2000, m))
            return fail(c, "enrol.birthday", "expected \"MM-DD\" or \"YYYY-MM-DD\"");
        en->has_birth_month = en->has_birth_day = 1;
        en->birth_month = (uint32_t)m;
        en->birth_day = (uint32_t)d;
        return 0;
    }
    int64_t m = 0, d = 0;
    bool hm, hd;
    if (get_int(c, "enrol", o, "birth_month", 0, 12, &m, &hm) < 0 ||
        get_int(c, "enrol", o, "birth_day", 0, 31, &d, &hd) < 0)
        return -1;
    en->has_birth_month = hm;
    en->birth_month = (uint32_t)m;
    en->has_birth_day = hd;
    en->birth_day = (uint32_t)d;
    return 0;
}

static int parse_enrol(je_ctx *c, const json_t *o, Loyalty__Event *ev)
{
    static const char *const keys[] = {"birthday", "birth_month", "birth_day", "referrer",
                                       "staff",    "card",        NULL};
    Loyalty__Enrol *en = malloc(sizeof *en);
    if (en == NULL)
        return fail(c, "enrol", "out of memory");
    loyalty__enrol__init(en);
    ev->body_case = LOYALTY__EVENT__BODY_ENROL;
    ev->enrol = en;
    if (check_keys(c, "enrol", o, keys) < 0 || parse_birthday(c, o, en) < 0)
        return -1;
    bool staff = false, has;
    if (get_bool(c, "enrol", o, "staff", &staff, &has) < 0)
        return -1;
    en->has_staff = has;
    en->staff = staff;
    if (get_str(c, "enrol", o, "referrer", &en->referrer) < 0 ||
        get_str(c, "enrol", o, "card", &en->card) < 0)
        return -1;
    return 0;
}

static int parse_card_link(je_ctx *c, const json_t *o, Loyalty__Event *ev)
{
    static const char *const keys[] = {"card", "replaces", NULL};
    Loyalty__CardLink *cl = malloc(sizeof *cl);
    if (cl == NULL)
        return fail(c, "card_link", "out of memory");
    loyalty__card_link__init(cl);
    ev->body_case = LOYALTY__EVENT__BODY_CARD_LINK;
    ev->card_link = cl;
    if (check_keys(c, "card_link", o, keys) < 0 ||
        get_str(c, "card_link", o, "card", &cl->card) < 0 ||
        get_str(c, "card_link", o, "replaces", &cl->replaces_card) < 0)
        return -1;
    if (cl->card == NULL)
        return fail(c, "card_link.card", "missing: the card to link is required");
    return 0;
}

static int parse_gift(je_ctx *c, const json_t *o, Loyalty__Event *ev)
{
    static const char *const keys[] = {"points", "reward", NULL};
    Loyalty__GiftRedemption *g = malloc(sizeof *g);
    if (g == NULL)
        return fail(c, "gift", "out of memory");
    loyalty__gift_redemption__init(g);
    ev->body_case = LOYALTY__EVENT__BODY_GIFT;
    ev->gift = g;
    bool has;
    if (check_keys(c, "gift", o, keys) < 0 ||
        get_int(c, "gift", o, "points", INT64_MIN, INT64_MAX, &g->points, &has) < 0 ||
        get_str(c, "gift", o, "reward", &g->reward_code) < 0)
        return -1;
    if (!has)
        return fail(c, "gift.points", "missing: the points to redeem are required");
    g->has_points = 1;
    return 0;
}

static int parse_adjustment(je_ctx *c, const json_t *o, Loyalty__Event *ev)
{
    static const char *const keys[] = {"points", "reason", "operator", NULL};
    Loyalty__Adjustment *a = malloc(sizeof *a);
    if (a == NULL)
        return fail(c, "adjustment", "out of memory");
    loyalty__adjustment__init(a);
    ev->body_case = LOYALTY__EVENT__BODY_ADJUSTMENT;
    ev->adjustment = a;
    bool has;
    if (check_keys(c, "adjustment", o, keys) < 0 ||
        get_int(c, "adjustment", o, "points", INT64_MIN, INT64_MAX, &a->points, &has) < 0 ||
        get_str(c, "adjustment", o, "reason", &a->reason_code) < 0 ||
        get_str(c, "adjustment", o, "operator", &a->operator_id) < 0)
        return -1;
    if (!has)
        return fail(c, "adjustment.points", "missing: signed points are required");
    a->has_points = 1;
    return 0;
}

static int parse_return_line(je_ctx *c, const char *path, const json_t *line,
                             Loyalty__ReturnLine **out)
{
    static const char *const keys[] = {"line", "qty", NULL};
    if (!json_is_object(line))
        return fail(c, path, "expected an object, got %s", type_name(line));
    Loyalty__ReturnLine *rl = malloc(sizeof *rl);
    if (rl == NULL)
        return fail(c, path, "out of memory");
    loyalty__return_line__init(rl);
    *out = rl;
    int64_t idx = 0, qty = 0;
    bool hi, hq;
    if (check_keys(c, path, line, keys) < 0 ||
        get_int(c, path, line, "line", 0, UINT32_MAX, &idx, &hi) < 0 ||
        get_int(c, path, line, "qty", INT64_MIN, INT64_MAX, &qty, &hq) < 0)
        return -1;
    if (!hi)
        return fail(c, path, "needs \"line\" (index into the original sale's lines, from 0)");
    rl->has_line_index = 1;
    rl->line_index = (uint32_t)idx;
    rl->has_quantity = 1;
    rl->quantity = hq ? qty : 1;
    return 0;
}

static int parse_return(je_ctx *c, const json_t *o, Loyalty__Event *ev)
{
    static const char *const keys[] = {"original", "lines", NULL};
    static const char *const okeys[] = {"node", "id", NULL};
    Loyalty__ReturnSale *r = malloc(sizeof *r);
    if (r == NULL)
        return fail(c, "return", "out of memory");
    loyalty__return_sale__init(r);
    ev->body_case = LOYALTY__EVENT__BODY_RETURN_SALE;
    ev->return_sale = r;
    bool bad;
    if (check_keys(c, "return", o, keys) < 0)
        return -1;
    const json_t *orig = get_obj(c, "return", o, "original", &bad);
    if (bad)
        return -1;
    if (orig == NULL)
        return fail(c, "return.original", "missing: {\"node\":N,\"id\":N} of the sale");
    r->original = malloc(sizeof *r->original);
    if (r->original == NULL)
        return fail(c, "return", "out of memory");
    loyalty__event_id__init(r->original);
    int64_t node = 0, id = 0;
    bool hn, hid;
    if (check_keys(c, "return.original", orig, okeys) < 0 ||
        get_int(c, "return.original", orig, "node", 0, INT64_MAX, &node, &hn) < 0 ||
        get_int(c, "return.original", orig, "id", 0, INT64_MAX, &id, &hid) < 0)
        return -1;
    if (!hid)
        return fail(c, "return.original.id", "missing");
    r->original->has_node_id = 1;
    r->original->node_id = hn ? (uint64_t)node : ev->id->node_id; /* same till by default */
    r->original->has_event_id = 1;
    r->original->event_id = (uint64_t)id;
    json_t *lines = json_object_get(o, "lines");
    if (lines == NULL || !json_is_array(lines))
        return fail(c, "return.lines", "expected an array of {\"line\":i,\"qty\":n}");
    size_t n = json_array_size(lines);
    if (n == 0)
        return 0;
    r->lines = calloc(n, sizeof *r->lines);
    if (r->lines == NULL)
        return fail(c, "return.lines", "out of memory");
    for (size_t i = 0; i < n; i++) {
        char p[JE_PATH_MAX];
        snprintf(p, sizeof p, "return.lines[%zu]", i);
        int rc = parse_return_line(c, p, json_array_get(lines, i), &r->lines[i]);
        if (r->lines[i])
            r->n_lines = i + 1;
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int parse_merge(je_ctx *c, const json_t *o, Loyalty__Event *ev)
{
    static const char *const keys[] = {"source", NULL};
    Loyalty__Merge *m = malloc(sizeof *m);
    if (m == NULL)
        return fail(c, "merge", "out of memory");
    loyalty__merge__init(m);
    ev->body_case = LOYALTY__EVENT__BODY_MERGE;
    ev->merge = m;
    if (check_keys(c, "merge", o, keys) < 0 || get_str(c, "merge", o, "source", &m->source_member))
        return -1;
    if (m->source_member == NULL)
        return fail(c, "merge.source", "missing: the member folded into this one");
    return 0;
}

typedef int (*body_fn)(je_ctx *c, const json_t *o, Loyalty__Event *ev);

static const struct {
    const char *key;
    body_fn fn;
} bodies[] = {
    {"sale", parse_sale},   {"enrol", parse_enrol},           {"card_link", parse_card_link},
    {"gift", parse_gift},   {"adjustment", parse_adjustment}, {"return", parse_return},
    {"merge", parse_merge},
};

static int parse_body(je_ctx *c, const json_t *obj, Loyalty__Event *ev)
{
    const char *found = NULL;
    body_fn fn = NULL;
    for (size_t i = 0; i < LT_ARRAY_LEN(bodies); i++) {
        if (json_object_get(obj, bodies[i].key) == NULL)
            continue;
        if (found)
            return fail(c, bodies[i].key, "an event has one kind, but \"%s\" is also present",
                        found);
        found = bodies[i].key;
        fn = bodies[i].fn;
    }
    if (found == NULL)
        return fail(c, "",
                    "no event kind: expected one of sale, enrol, card_link, gift, "
                    "adjustment, return, merge");
    bool bad;
    const json_t *o = get_obj(c, "", obj, found, &bad);
    if (bad || o == NULL)
        return bad ? -1 : fail(c, found, "expected an object, got null");
    return fn(c, o, ev);
}

static int parse_event(je_ctx *c, const json_t *obj, const json_event_defaults *d,
                       Loyalty__Event *ev)
{
    static const char *const keys[] = {
        "node", "id",    "member",    "card", "store",      "at",     "utc_offset_min", "tz",
        "sale", "enrol", "card_link", "gift", "adjustment", "return", "merge",          NULL};
    if (!json_is_object(obj))
        return fail(c, "", "expected a JSON object per line, got %s", type_name(obj));
    if (check_keys(c, "", obj, keys) < 0)
        return -1;
    int64_t node = 0, id = 0;
    bool hn, hid;
    if (get_int(c, "", obj, "node", 0, INT64_MAX, &node, &hn) < 0 ||
        get_int(c, "", obj, "id", 0, INT64_MAX, &id, &hid) < 0)
        return -1;
    if (!hn && (d == NULL || d->node_id == 0))
        return fail(c, "node", "missing: the till's node id is required (or --node)");
    if (!hid)
        return fail(c, "id", "missing: the event id is required");
    ev->id = malloc(sizeof *ev->id);
    if (ev->id == NULL)
        return fail(c, "", "out of memory");
    loyalty__event_id__init(ev->id);
    ev->id->has_node_id = ev->id->has_event_id = 1;
    ev->id->node_id = hn ? (uint64_t)node : d->node_id;
    ev->id->event_id = (uint64_t)id;
    if (get_str(c, "", obj, "member", &ev->member_id) < 0 ||
        get_str(c, "", obj, "card", &ev->card) < 0 ||
        get_str(c, "", obj, "store", &ev->store_id) < 0)
        return -1;
    if (ev->member_id == NULL && ev->card == NULL)
        return fail(c, "member", "missing: an event names a \"member\" or a \"card\"");
    if (ev->store_id == NULL && d && d->store_id) {
        ev->store_id = strdup(d->store_id);
        if (ev->store_id == NULL)
            return fail(c, "store", "out of memory");
    }
    if (parse_when(c, obj, d, ev) < 0)
        return -1;
    return parse_body(c, obj, ev);
}

int json_event_from_json(const json_t *obj, const json_event_defaults *d, Loyalty__Event **out,
                         char *err, size_t err_len)
{
    LT_ASSERT(obj != NULL);
    LT_ASSERT(out != NULL);
    je_ctx c = {err, err_len};
    Loyalty__Event *ev = malloc(sizeof *ev);
    *out = NULL;
    if (ev == NULL)
        return fail(&c, "", "out of memory");
    loyalty__event__init(ev);
    if (parse_event(&c, obj, d, ev) < 0) {
        json_event_free(&ev);
        return -1;
    }
    *out = ev;
    return 0;
}

int json_event_parse(const char *text, size_t len, const json_event_defaults *d,
                     Loyalty__Event **out, char *err, size_t err_len)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    *out = NULL;
    if (root == NULL) {
        snprintf(err, err_len, "invalid JSON at column %d: %s", je.column, je.text);
        return -1;
    }
    int rc = json_event_from_json(root, d, out, err, err_len);
    json_decref(root);
    return rc;
}

void json_event_free(Loyalty__Event **ev)
{
    if (ev == NULL || *ev == NULL)
        return;
    loyalty__event__free_unpacked(*ev, NULL);
    *ev = NULL;
}
