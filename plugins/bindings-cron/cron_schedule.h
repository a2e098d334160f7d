/*
 * cron_schedule.h - Dapr's cron schedule format, in UTC.
 *
 * The grammar is the one Dapr's bindings.cron accepts (robfig/cron as
 * forked into dapr/kit, with an optional seconds field and descriptors):
 *
 *   [TZ=zone | CRON_TZ=zone] <5 or 6 fields> | @yearly | @annually |
 *   @monthly | @weekly | @daily | @midnight | @hourly | @every <duration>
 *
 * Fields: [second] minute hour day-of-month month day-of-week.  Each is a
 * comma list of `*`, `?`, `N`, `N-M`, with an optional `/step` (`N/step`
 * means N to the field's maximum).  Months take JAN..DEC and days of the
 * week SUN..SAT (0..6), case-insensitively.  When both day fields are
 * restricted (neither starts with * or ?), a day matches when EITHER
 * matches; otherwise both must (`*` with a step > 1 counts as restricted).
 * `@every` takes a Go duration ("1m30s", "500ms"), truncated to the
 * millisecond and at least 1 ms, counted from the previous activation.
 *
 * Time zone: schedules are evaluated in UTC.  A TZ=/CRON_TZ= prefix is
 * accepted only for UTC (UTC, Etc/UTC, GMT, Etc/GMT, Z); any other zone
 * is refused with an error rather than silently evaluated in UTC.
 */
#ifndef DAPR_CRON_SCHEDULE_H
#define DAPR_CRON_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cron_schedule {
    int every;           /* 1: a constant delay (@every) */
    int64_t delay_ms;    /* the delay of @every */
    /* bit sets of the allowed values; bit 63 records a `*`/`?` */
    uint64_t second, minute, hour, dom, month, dow;
} cron_schedule;

#define CRON_STAR_BIT (1ull << 63)

/* Parse spec.  Returns 0, or -1 with a one-line reason in err. */
int cron_parse(const char *spec, cron_schedule *out, char *err, size_t errlen);

/* The first activation strictly after t_ms (milliseconds since the Unix
 * epoch, UTC), in the same unit; -1 when none comes within five years
 * (e.g. "0 0 0 30 2 *"), as in Dapr. */
int64_t cron_next(const cron_schedule *s, int64_t t_ms);

/* Parse a Go duration into nanoseconds ("1h30m", "1.5s", "-2m", "0").
 * Returns 0, or -1 on a malformed or overflowing value. */
int cron_parse_go_duration(const char *s, int64_t *out_ns);

#endif
