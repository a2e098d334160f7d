/* util.c - small parsing and allocation helpers. */
#include "config.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { fputs("daprd: out of memory\n", stderr); abort(); }
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) { fputs("daprd: out of memory\n", stderr); abort(); }
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) { fputs("daprd: out of memory\n", stderr); abort(); }
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    char *p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int64_t now_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int parse_int64(const char *s, int64_t *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || isspace((unsigned char)*s)) return -1;
    *out = v;
    return 0;
}

int parse_bool(const char *s)
{
    static const char *yes[] = {"true", "1", "yes", "on", "t", "y"};
    static const char *no[] = {"false", "0", "no", "off", "f", "n", ""};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (strcasecmp(s, yes[i]) == 0) return 1;
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (strcasecmp(s, no[i]) == 0) return 0;
    return -1;
}

int parse_duration_ms(const char *s, int64_t *out_ms)
{
    if (!s || !*s) return -1;
    /* A bare number means seconds (Dapr's metadata decoder accepts it). */
    int64_t whole;
    if (parse_int64(s, &whole) == 0) {
        if (whole < 0 || whole > INT64_MAX / 1000) return -1;
        *out_ms = whole * 1000;
        return 0;
    }
    static const struct { const char *unit; double ms; } units[] = {
        {"ns", 1e-6}, {"us", 1e-3}, {"µs", 1e-3}, {"ms", 1}, {"s", 1000},
        {"m", 60000}, {"h", 3600000},
    };
    const char *p = s;
    double total = 0;
    int negative = 0;
    if (*p == '-' || *p == '+') { negative = (*p == '-'); p++; }
    if (!*p) return -1;
    if (strcmp(p, "0") == 0) { *out_ms = 0; return 0; }
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '.') return -1;
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno) return -1;
        p = end;
        size_t best = 0;
        double mult = -1;
        for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
            size_t ul = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, ul) == 0 && ul > best) {
                best = ul;
                mult = units[i].ms;
            }
        }
        if (mult < 0) return -1;
        p += best;
        total += v * mult;
    }
    if (negative || !isfinite(total) || total > 9.2e15) return -1;
    *out_ms = (int64_t)llround(total);
    return 0;
}

int parse_quantity_bytes(const char *s, uint64_t *out)
{
    if (!s || !*s) return -1;
    static const struct { const char *suffix; uint64_t mult; } sfx[] = {
        {"Ki", 1ull << 10}, {"Mi", 1ull << 20}, {"Gi", 1ull << 30}, {"Ti", 1ull << 40},
        {"k", 1000ull}, {"K", 1000ull}, {"M", 1000000ull}, {"G", 1000000000ull},
        {"T", 1000000000000ull}, {"", 1},
    };
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return -1;
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        if (strcmp(end, sfx[i].suffix) == 0) {
            double bytes = v * (double)sfx[i].mult;
            if (bytes > 1.8e19) return -1;
            *out = (uint64_t)bytes;
            return 0;
        }
    }
    return -1;
}
