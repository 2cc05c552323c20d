/* json_event.h: one JSON event object (docs/events-json.md) <-> loyalty.Event.
 *
 * The JSON shape mirrors loyalty.Event field for field with short names; the parser is strict
 * (unknown keys, wrong types and out-of-range numbers are errors) so that a typo in a file of
 * events is reported with its key instead of silently sending an event without that field.
 * Range checks on amounts are left to the daemon, which owns the limits (R1, lt.h); this module
 * only checks what JSON itself cannot express (types, integer ranges of the wire fields).
 */
#ifndef LT_CTL_JSON_EVENT_H
#define LT_CTL_JSON_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "loyalty.pb-c.h"

/* Defaults applied to events that omit a field (loyaltyctl send --node / --store / --tz). */
typedef struct {
    uint64_t node_id;     /* 0 = no default: "node" is then required */
    const char *store_id; /* NULL = none */
    int has_utc_offset;   /* utc_offset_min below is a default for "at" without an offset */
    int32_t utc_offset_min;
    /* Resolves "tz" for a local "at" without an offset: the zone's offset at UTC time t.
     * Returns 0, or -1 if the zone is unknown. NULL: such times are an error. */
    int (*zone_offset)(const char *zone, int64_t t, int32_t *off_min);
} json_event_defaults;

/* Converts one JSON object to a newly allocated Loyalty__Event. Returns 0 and *out (caller owns
 * it: json_event_free()), or -1 and a message naming the offending key in err. */
int json_event_from_json(const json_t *obj, const json_event_defaults *d, Loyalty__Event **out,
                         char *err, size_t err_len);

/* Parses one line of text (a JSON object) and converts it. Same contract as above; err also
 * carries the column of a JSON syntax error. */
int json_event_parse(const char *text, size_t len, const json_event_defaults *d,
                     Loyalty__Event **out, char *err, size_t err_len);

/* Frees an event from json_event_from_json() and sets *ev to NULL. Safe on NULL. */
void json_event_free(Loyalty__Event **ev);

/* Parses an ISO 8601 time "YYYY-MM-DDTHH:MM[:SS[.fff]][Z|+HH:MM|+HHMM|+HH]" (a space is accepted
 * for the T). Returns 0 and the UTC seconds; *has_offset tells whether the text carried an offset
 * (then *offset_min is it); without one the time is taken as UTC-local and the caller must apply
 * its own offset. Returns -1 if malformed. */
int json_event_parse_time(const char *s, int64_t *utc, int *has_offset, int32_t *offset_min);

/* Formats t (UTC seconds) at offset off_min as "YYYY-MM-DDTHH:MM:SS+HH:MM" into buf (>= 32). */
void json_event_format_time(int64_t t, int32_t off_min, char *buf, size_t cap);

/* Days since 1970-01-01 of a proleptic Gregorian date, and the inverse. */
int64_t json_event_days_from_civil(int y, int m, int d);
void json_event_civil_from_days(int64_t days, int *y, int *m, int *d);

#endif
