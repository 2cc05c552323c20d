/* log.h: structured logs, one logfmt line per notable event, to stderr (journald-friendly).
 *
 *   lt_log(LT_INFO, "ledger opened", "dir=%s entries=%llu", dir, n);
 * prints: level=info msg="ledger opened" dir=var/data entries=12
 * Nothing is logged per event on the hot path unless the level is debug.
 */
#ifndef LT_LOG_H
#define LT_LOG_H

typedef enum { LT_DEBUG = 0, LT_INFO = 1, LT_WARN = 2, LT_ERROR = 3 } lt_log_level;

/* Sets the minimum level printed (default LT_INFO). */
void lt_log_set_level(lt_log_level level);
/* Parses "debug", "info", "warn", "error". Returns 0 or -1. */
int lt_log_parse_level(const char *s, lt_log_level *out);
int lt_log_enabled(lt_log_level level);
/* msg is quoted; fields (printf format, may be NULL) are appended as they are. */
void lt_log(lt_log_level level, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
