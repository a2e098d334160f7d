/*
 * cron_schedule.c - parse Dapr's cron schedules and find the next
 * activation in UTC.  See cron_schedule.h for the accepted grammar.
 *
 * The search for the next time follows the classic cron approach: starting
 * at the next whole second, find a matching month, then a matching day,
 * hour, minute and second; moving a field resets the smaller ones, and a
 * field that wraps around starts over from the month (a new month or day
 * may now fail to match).  Calendar arithmetic is done on plain fields
 * with a proleptic Gregorian calendar, so nothing depends on the process's
 * time zone or on libc's locale.
 */
#include "cron_schedule.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct bounds {
    unsigned min, max;
    const char *const *names; /* NULL-terminated; names[i] stands for min + i */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const struct bounds b_second = {0, 59, NULL};
static const struct bounds b_minute = {0, 59, NULL};
static const struct bounds b_hour = {0, 23, NULL};
static const struct bounds b_dom = {1, 31, NULL};
static const struct bounds b_month = {1, 12, month_names};
static const struct bounds b_dow = {0, 6, dow_names};

static void fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint64_t bits_range(unsigned lo, unsigned hi, unsigned step)
{
    uint64_t bits = 0;
    for (unsigned i = lo; i <= hi; i += step)
        bits |= 1ull << i;
    return bits;
}

static uint64_t all_of(const struct bounds *r)
{
    return bits_range(r->min, r->max, 1) | CRON_STAR_BIT;
}

/* Go's strconv.Atoi, then "not negative".  s is [p, p+n). */
static int parse_uint(const char *p, size_t n, unsigned *out, char *err, size_t errlen)
{
    const char *s = p;
    size_t k = n;
    int neg = 0;
    if (k && (*s == '+' || *s == '-')) {
        neg = *s == '-';
        s++;
        k--;
    }
    if (k == 0) {
        fail(err, errlen, "failed to parse int from %.*s", (int)n, p);
        return -1;
    }
    unsigned long long v = 0;
    for (size_t i = 0; i < k; i++) {
        if (!isdigit((unsigned char)s[i])) {
            fail(err, errlen, "failed to parse int from %.*s", (int)n, p);
            return -1;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
        if (v > (unsigned long long)INT_MAX) {
            fail(err, errlen, "failed to parse int from %.*s: value out of range", (int)n, p);
            return -1;
        }
    }
    if (neg && v) {
        fail(err, errlen, "negative number (-%llu) not allowed: %.*s", v, (int)n, p);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int parse_int_or_name(const char *p, size_t n, const struct bounds *r, unsigned *out, char *err,
                             size_t errlen)
{
    if (r->names)
        for (unsigned i = 0; r->names[i]; i++)
            if (strlen(r->names[i]) == n && strncasecmp(p, r->names[i], n) == 0) {
                *out = r->min + i;
                return 0;
            }
    return parse_uint(p, n, out, err, errlen);
}

/* One range expression: `*`, `?`, N, N-M, each with an optional /step. */
static int parse_range(const char *p, size_t n, const struct bounds *r, uint64_t *out, char *err, size_t errlen)
{
    const char *slash = memchr(p, '/', n);
    size_t range_len = slash ? (size_t)(slash - p) : n;
    if (slash && memchr(slash + 1, '/', n - range_len - 1)) {
        fail(err, errlen, "too many slashes: %.*s", (int)n, p);
        return -1;
    }
    const char *hyphen = memchr(p, '-', range_len);
    size_t low_len = hyphen ? (size_t)(hyphen - p) : range_len;
    int single = hyphen == NULL;
    unsigned start, end, step = 1;
    uint64_t extra = 0;
    if ((low_len == 1 && (p[0] == '*' || p[0] == '?'))) {
        /* As Dapr (and robfig/cron) do, whatever follows "*-" is ignored. */
        start = r->min;
        end = r->max;
        extra = CRON_STAR_BIT;
    } else {
        if (parse_int_or_name(p, low_len, r, &start, err, errlen) != 0)
            return -1;
        if (!hyphen) {
            end = start;
        } else {
            const char *hi = hyphen + 1;
            size_t hi_len = range_len - low_len - 1;
            if (memchr(hi, '-', hi_len)) {
                fail(err, errlen, "too many hyphens: %.*s", (int)n, p);
                return -1;
            }
            if (parse_int_or_name(hi, hi_len, r, &end, err, errlen) != 0)
                return -1;
        }
    }
    if (slash) {
        if (parse_uint(slash + 1, n - range_len - 1, &step, err, errlen) != 0)
            return -1;
        if (single) /* "N/step" means "N-max/step" */
            end = r->max;
        if (step > 1)
            extra = 0; /* a stepped star restricts the field */
    }
    if (start < r->min) {
        fail(err, errlen, "beginning of range (%u) below minimum (%u): %.*s", start, r->min, (int)n, p);
        return -1;
    }
    if (end > r->max) {
        fail(err, errlen, "end of range (%u) above maximum (%u): %.*s", end, r->max, (int)n, p);
        return -1;
    }
    if (start > end) {
        fail(err, errlen, "beginning of range (%u) beyond end of range (%u): %.*s", start, end, (int)n, p);
        return -1;
    }
    if (step == 0) {
        fail(err, errlen, "step of range should be a positive number: %.*s", (int)n, p);
        return -1;
    }
    *out = bits_range(start, end, step) | extra;
    return 0;
}

/* A field: a comma list of ranges (empty items are skipped, as Go's
 * strings.FieldsFunc does). */
static int parse_field(const char *p, size_t n, const struct bounds *r, uint64_t *out, char *err, size_t errlen)
{
    uint64_t bits = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != ',')
            j++;
        if (j > i) {
            uint64_t b;
            if (parse_range(p + i, j - i, r, &b, err, errlen) != 0)
                return -1;
            bits |= b;
        }
        i = j + 1;
    }
    *out = bits;
    return 0;
}

int cron_parse_go_duration(const char *s, int64_t *out_ns)
{
    static const struct { const char *unit; int64_t ns; } units[] = {
        {"ns", 1}, {"us", 1000}, {"\xc2\xb5s", 1000}, {"\xce\xbcs", 1000}, {"ms", 1000000},
        {"s", 1000000000LL}, {"m", 60 * 1000000000LL}, {"h", 3600 * 1000000000LL},
    };
    const char *p = s;
    int neg = 0;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (strcmp(p, "0") == 0) {
        *out_ns = 0;
        return 0;
    }
    if (!*p)
        return -1;
    long double total = 0;
    while (*p) {
        const char *start = p;
        unsigned long long whole = 0;
        int digits = 0;
        while (isdigit((unsigned char)*p)) {
            if (whole > (ULLONG_MAX - 9) / 10)
                return -1;
            whole = whole * 10 + (unsigned)(*p++ - '0');
            digits++;
        }
        long double frac = 0, scale = 1;
        if (*p == '.') {
            p++;
            while (isdigit((unsigned char)*p)) {
                scale /= 10;
                frac += (*p++ - '0') * scale;
                digits++;
            }
        }
        if (!digits || p == start)
            return -1;
        size_t ulen = 0;
        int64_t unit = 0;
        for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
            size_t l = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, l) == 0 && l > ulen) {
                ulen = l;
                unit = units[i].ns;
            }
        }
        /* "m" must not swallow the start of "ms": the longest unit wins above. */
        if (!unit)
            return -1; /* missing or unknown unit */
        p += ulen;
        total += ((long double)whole + frac) * (long double)unit;
        if (total > (long double)INT64_MAX)
            return -1;
    }
    *out_ns = (int64_t)(neg ? -total : total);
    return 0;
}

static int descriptor(const char *spec, cron_schedule *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->second = 1ull << b_second.min;
    o->minute = 1ull << b_minute.min;
    o->hour = 1ull << b_hour.min;
    o->dom = all_of(&b_dom);
    o->month = all_of(&b_month);
    o->dow = all_of(&b_dow);
    if (strcmp(spec, "@yearly") == 0 || strcmp(spec, "@annually") == 0) {
        o->dom = 1ull << b_dom.min;
        o->month = 1ull << b_month.min;
    } else if (strcmp(spec, "@monthly") == 0) {
        o->dom = 1ull << b_dom.min;
    } else if (strcmp(spec, "@weekly") == 0) {
        o->dow = 1ull << b_dow.min;
    } else if (strcmp(spec, "@daily") == 0 || strcmp(spec, "@midnight") == 0) {
        /* as initialised */
    } else if (strcmp(spec, "@hourly") == 0) {
        o->hour = all_of(&b_hour);
    } else if (strncmp(spec, "@every ", 7) == 0) {
        int64_t ns;
        if (cron_parse_go_duration(spec + 7, &ns) != 0) {
            fail(err, errlen, "failed to parse duration %s: invalid duration \"%s\"", spec, spec + 7);
            return -1;
        }
        o->every = 1;
        o->delay_ms = ns < 1000000 ? 1 : ns / 1000000; /* at least 1 ms, whole ms */
    } else {
        fail(err, errlen, "unrecognized descriptor: %s", spec);
        return -1;
    }
    return 0;
}

int cron_parse(const char *spec, cron_schedule *out, char *err, size_t errlen)
{
    if (!spec || !*spec) {
        fail(err, errlen, "empty spec string");
        return -1;
    }
    if (strncmp(spec, "TZ=", 3) == 0 || strncmp(spec, "CRON_TZ=", 8) == 0) {
        const char *eq = strchr(spec, '=') + 1;
        size_t zl = 0;
        while (eq[zl] && !isspace((unsigned char)eq[zl]))
            zl++;
        if (!eq[zl]) {
            fail(err, errlen, "timezone prefix %s is not followed by a schedule", spec);
            return -1;
        }
        static const char *const utc[] = {"UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", "UCT", "Etc/UCT", "Zulu",
                                          "Etc/Zulu", "Universal", "Etc/Universal", "Etc/Greenwich",
                                          "Greenwich"};
        int ok = 0;
        for (size_t i = 0; i < sizeof utc / sizeof *utc && !ok; i++)
            ok = strlen(utc[i]) == zl && strncmp(eq, utc[i], zl) == 0;
        if (!ok) {
            fail(err, errlen, "time zone %.*s is not supported: schedules are evaluated in UTC", (int)zl, eq);
            return -1;
        }
        spec = eq + zl;
        while (isspace((unsigned char)*spec))
            spec++;
    }
    if (spec[0] == '@')
        return descriptor(spec, out, err, errlen);
    /* Split on white space. */
    const char *f[7];
    size_t fl[7], nf = 0;
    for (const char *p = spec; *p;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (nf < 7) {
            f[nf] = s;
            fl[nf] = (size_t)(p - s);
        }
        nf++;
    }
    if (nf < 5 || nf > 6) {
        fail(err, errlen, "expected 5 to 6 fields, found %zu: %s", nf, spec);
        return -1;
    }
    size_t o = 0;
    memset(out, 0, sizeof *out);
    if (nf == 5) {
        out->second = 1ull; /* a missing seconds field means second 0 */
    } else {
        if (parse_field(f[0], fl[0], &b_second, &out->second, err, errlen) != 0)
            return -1;
        o = 1;
    }
    if (parse_field(f[o], fl[o], &b_minute, &out->minute, err, errlen) != 0 ||
        parse_field(f[o + 1], fl[o + 1], &b_hour, &out->hour, err, errlen) != 0 ||
        parse_field(f[o + 2], fl[o + 2], &b_dom, &out->dom, err, errlen) != 0 ||
        parse_field(f[o + 3], fl[o + 3], &b_month, &out->month, err, errlen) != 0 ||
        parse_field(f[o + 4], fl[o + 4], &b_dow, &out->dow, err, errlen) != 0)
        return -1;
    return 0;
}

/* ---- calendar ------------------------------------------------------------ */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned mp = m > 2 ? m - 3 : m + 9;
    unsigned doy = (153 * mp + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

struct tm_utc {
    int64_t year;
    unsigned month, day, hour, minute, second;
};

static unsigned weekday(const struct tm_utc *t)
{
    int64_t days = days_from_civil(t->year, t->month, t->day);
    int64_t w = (days + 4) % 7; /* 1970-01-01 was a Thursday */
    return (unsigned)(w < 0 ? w + 7 : w);
}

static int day_matches(const cron_schedule *s, const struct tm_utc *t)
{
    int dom = (s->dom >> t->day) & 1;
    int dow = (s->dow >> weekday(t)) & 1;
    if ((s->dom & CRON_STAR_BIT) || (s->dow & CRON_STAR_BIT))
        return dom && dow;
    return dom || dow;
}

/* Advance by one day; returns 1 when that started a new month. */
static int next_day(struct tm_utc *t)
{
    if (++t->day > days_in_month(t->year, t->month)) {
        t->day = 1;
        if (++t->month > 12) {
            t->month = 1;
            t->year++;
        }
        return 1;
    }
    return 0;
}

int64_t cron_next(const cron_schedule *s, int64_t t_ms)
{
    if (s->every)
        return t_ms + s->delay_ms;
    /* The earliest candidate: the next whole second. */
    int64_t secs = (t_ms >= 0 ? t_ms / 1000 : (t_ms - 999) / 1000) + 1;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int64_t sod = secs - days * 86400;
    struct tm_utc t;
    civil_from_days(days, &t.year, &t.month, &t.day);
    t.hour = (unsigned)(sod / 3600);
    t.minute = (unsigned)(sod % 3600 / 60);
    t.second = (unsigned)(sod % 60);
    int64_t year_limit = t.year + 5;
    int added = 0;

wrap:
    if (t.year > year_limit)
        return -1;
    while (!((s->month >> t.month) & 1)) {
        if (!added) {
            added = 1;
            t.day = 1;
            t.hour = t.minute = t.second = 0;
        }
        t.day = 1; /* only ever reached on day 1 once added (see above) */
        if (++t.month > 12) {
            t.month = 1;
            t.year++;
            goto wrap;
        }
    }
    while (!day_matches(s, &t)) {
        if (!added) {
            added = 1;
            t.hour = t.minute = t.second = 0;
        }
        if (next_day(&t))
            goto wrap;
    }
    while (!((s->hour >> t.hour) & 1)) {
        if (!added) {
            added = 1;
            t.minute = t.second = 0;
        }
        if (++t.hour == 24) {
            t.hour = 0;
            next_day(&t);
            goto wrap;
        }
    }
    while (!((s->minute >> t.minute) & 1)) {
        if (!added) {
            added = 1;
            t.second = 0;
        }
        if (++t.minute == 60) {
            t.minute = 0;
            if (++t.hour == 24) {
                t.hour = 0;
                next_day(&t);
            }
            goto wrap;
        }
    }
    while (!((s->second >> t.second) & 1)) {
        added = 1;
        if (++t.second == 60) {
            t.second = 0;
            if (++t.minute == 60) {
                t.minute = 0;
                if (++t.hour == 24) {
                    t.hour = 0;
                    next_day(&t);
                }
            }
            goto wrap;
        }
    }
    int64_t d = days_from_civil(t.year, t.month, t.day);
    return ((d * 86400) + t.hour * 3600 + t.minute * 60 + t.second) * 1000;
}
