/*
 * log.c - one line per event on stdout, in Dapr's formats:
 *
 *   text: time="..." level=info msg="..." app_id=x instance=h scope=s type=log ver=v
 *   json: {"app_id":..,"instance":..,"level":..,"msg":..,"scope":..,"time":..,"type":"log","ver":..}
 *
 * Lines are built in full and written with one fwrite so that lines from
 * several threads never interleave.  Callers never pass secret values.
 */
#include "config.h"
#include "log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Read by every logging thread, changed at run time by log_set_level(). */
static _Atomic int min_level = LOG_LEVEL_INFO;
static int json_output;
static char app_id_buf[256];
static char version_buf[64] = "unknown";
static char hostname_buf[256] = "localhost";

static const char *level_names[] = {"debug", "info", "warning", "error", "fatal"};

void log_setup(log_level level, int as_json, const char *app_id, const char *version)
{
    min_level = level;
    json_output = as_json;
    snprintf(app_id_buf, sizeof app_id_buf, "%s", app_id ? app_id : "");
    snprintf(version_buf, sizeof version_buf, "%s", version ? version : "");
    if (gethostname(hostname_buf, sizeof hostname_buf) != 0)
        snprintf(hostname_buf, sizeof hostname_buf, "localhost");
    hostname_buf[sizeof hostname_buf - 1] = '\0';
}

int log_level_parse(const char *name)
{
    static const char *accepted[] = {"debug", "info", "warn", "error", "fatal"};
    for (int i = 0; i < 5; i++)
        if (strcasecmp(name, accepted[i]) == 0)
            return i;
    if (strcasecmp(name, "warning") == 0)
        return LOG_LEVEL_WARN;
    return -1;
}

int log_enabled(log_level level)
{
    return (int)level >= min_level;
}

void log_set_level(log_level level)
{
    min_level = (int)level;
}

log_level log_get_level(void)
{
    return (log_level)min_level;
}

const char *log_level_name(log_level level)
{
    return level_names[level];
}

/* ---- secret scrubbing ------------------------------------------------------ */

#define REDACT_MIN_LEN 4
#define REDACT_MARK "***"

static pthread_rwlock_t redact_lock = PTHREAD_RWLOCK_INITIALIZER;
static char **redact_values; /* longest first, so a secret inside another is not half-replaced */
static size_t n_redact;

void log_redact_add(const char *value)
{
    if (!value || strlen(value) < REDACT_MIN_LEN)
        return;
    pthread_rwlock_wrlock(&redact_lock);
    size_t len = strlen(value), at = n_redact;
    for (size_t i = 0; i < n_redact; i++) {
        if (strcmp(redact_values[i], value) == 0) {
            pthread_rwlock_unlock(&redact_lock);
            return;
        }
        if (at == n_redact && strlen(redact_values[i]) < len)
            at = i;
    }
    char **grown = realloc(redact_values, (n_redact + 1) * sizeof *grown);
    char *copy = strdup(value);
    if (!grown || !copy) {
        /* Cannot remember it: better no log line than a leaked secret. */
        free(copy);
        if (grown) redact_values = grown;
        pthread_rwlock_unlock(&redact_lock);
        fputs("daprd: out of memory registering a secret for log scrubbing\n", stderr);
        abort();
    }
    redact_values = grown;
    memmove(redact_values + at + 1, redact_values + at, (n_redact - at) * sizeof *redact_values);
    redact_values[at] = copy;
    n_redact++;
    pthread_rwlock_unlock(&redact_lock);
}

void log_redact(char *buf, int truncated)
{
    pthread_rwlock_rdlock(&redact_lock);
    for (size_t i = 0; i < n_redact; i++) {
        const char *v = redact_values[i];
        size_t vl = strlen(v);
        /* The mark is shorter than any registered value, so the text only
         * shrinks and the replacement can run in place. */
        for (char *p = strstr(buf, v); p; p = strstr(p + sizeof REDACT_MARK - 1, v)) {
            memcpy(p, REDACT_MARK, sizeof REDACT_MARK - 1);
            memmove(p + sizeof REDACT_MARK - 1, p + vl, strlen(p + vl) + 1);
        }
        if (truncated) {
            /* A cut line may end with the first bytes of a secret. */
            size_t bl = strlen(buf);
            for (size_t k = vl - 1 < bl ? vl - 1 : bl; k > 0; k--) {
                if (memcmp(buf + bl - k, v, k) == 0) {
                    buf[bl - k] = '\0';
                    break;
                }
            }
        }
    }
    pthread_rwlock_unlock(&redact_lock);
}

void log_redact_clear(void)
{
    pthread_rwlock_wrlock(&redact_lock);
    for (size_t i = 0; i < n_redact; i++)
        free(redact_values[i]);
    free(redact_values);
    redact_values = NULL;
    n_redact = 0;
    pthread_rwlock_unlock(&redact_lock);
}

/* RFC 3339 with nanoseconds, UTC: 2026-11-28T13:00:00.123456789Z */
static void format_time(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%09ldZ", ts.tv_nsec);
}

/* Append s to the text line, quoting as logrus does when needed. */
static void append_text_value(char *out, size_t outlen, size_t *pos, const char *s)
{
    int quote = (*s == '\0');
    for (const char *p = s; *p && !quote; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20)
            quote = 1;
    if (!quote) {
        int n = snprintf(out + *pos, outlen - *pos, "%s", s);
        if (n > 0) *pos = (*pos + (size_t)n < outlen) ? *pos + (size_t)n : outlen - 1;
        return;
    }
    if (*pos + 1 < outlen) out[(*pos)++] = '"';
    for (const char *p = s; *p && *pos + 3 < outlen; p++) {
        if (*p == '"' || *p == '\\') {
            out[(*pos)++] = '\\';
            out[(*pos)++] = *p;
        } else if (*p == '\n') {
            out[(*pos)++] = '\\';
            out[(*pos)++] = 'n';
        } else {
            out[(*pos)++] = *p;
        }
    }
    if (*pos + 1 < outlen) out[(*pos)++] = '"';
    out[*pos] = '\0';
}

/* One field of a line: the standard ones and a caller's extra ones. */
typedef struct field {
    const char *name;
    const char *value;
} field;

static int field_cmp(const void *a, const void *b)
{
    return strcmp(((const field *)a)->name, ((const field *)b)->name);
}

#define MAX_EXTRA_FIELDS 16

static void write_line(log_level level, const char *scope, const char *const *extra, const char *fmt,
                       va_list ap)
{
    if ((int)level < min_level)
        return;
    char msg[4096];
    int full = vsnprintf(msg, sizeof msg, fmt, ap);
    log_redact(msg, full < 0 || (size_t)full >= sizeof msg);
    char when[64];
    format_time(when, sizeof when);

    /* Extra values are scrubbed too: they may quote request data. */
    field f[8 + MAX_EXTRA_FIELDS];
    char extra_buf[MAX_EXTRA_FIELDS][512];
    size_t n = 0;
    f[n++] = (field){"app_id", app_id_buf};
    f[n++] = (field){"instance", hostname_buf};
    f[n++] = (field){"scope", scope};
    f[n++] = (field){"type", "log"};
    f[n++] = (field){"ver", version_buf};
    for (size_t i = 0; extra && extra[i] && extra[i + 1] && i / 2 < MAX_EXTRA_FIELDS; i += 2) {
        char *v = extra_buf[i / 2];
        int len = snprintf(v, sizeof extra_buf[0], "%s", extra[i + 1]);
        log_redact(v, len < 0 || (size_t)len >= sizeof extra_buf[0]);
        f[n++] = (field){extra[i], v};
    }

    if (json_output) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "level", level_names[level], "msg", msg, "time", when);
        for (size_t i = 0; o && i < n; i++) {
            json_t *v = json_string(f[i].value);
            if (!v) {
                json_decref(o);
                o = NULL;
                break;
            }
            json_object_set_new(o, f[i].name, v);
        }
        /* msg may not be valid UTF-8 (it can quote request data). */
        if (!o)
            o = json_pack("{s:s, s:s, s:s, s:s}", "level", level_names[level],
                          "msg", "(log message was not valid UTF-8)",
                          "scope", scope, "time", when);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (line) {
            size_t len = strlen(line);
            line[len] = '\n';
            fwrite(line, 1, len + 1, stdout);
            line[len] = '\0';
            free(line);
        }
        json_decref(o);
    } else {
        /* logrus's text format: time, level, msg, then the fields sorted. */
        qsort(f, n, sizeof f[0], field_cmp);
        char line[8192];
        size_t pos = 0;
        pos += (size_t)snprintf(line, sizeof line, "time=\"%s\" level=%s msg=", when,
                                level_names[level]);
        append_text_value(line, sizeof line, &pos, msg);
        for (size_t i = 0; i < n && pos + 2 < sizeof line; i++) {
            int k = snprintf(line + pos, sizeof line - pos, " %s=", f[i].name);
            if (k > 0)
                pos = (pos + (size_t)k < sizeof line) ? pos + (size_t)k : sizeof line - 1;
            append_text_value(line, sizeof line, &pos, f[i].value);
        }
        if (pos >= sizeof line - 1)
            pos = sizeof line - 2;
        line[pos++] = '\n';
        fwrite(line, 1, pos, stdout);
    }
    fflush(stdout);
}

void log_vwrite(log_level level, const char *scope, const char *fmt, va_list ap)
{
    write_line(level, scope, NULL, fmt, ap);
}

void log_write_fields(log_level level, const char *scope, const char *const *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_line(level, scope, fields, fmt, ap);
    va_end(ap);
}

void log_write(log_level level, const char *scope, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, scope, fmt, ap);
    va_end(ap);
}
