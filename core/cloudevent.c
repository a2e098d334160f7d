/* cloudevent.c - CloudEvent envelopes for publish and delivery. */
#include "config.h"
#include "cloudevent.h"
#include "json_out.h"
#include "util.h"
#include "uuid_gen.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Compare the media type (before any ';') case-insensitively. */
static int media_type_is(const char *ct, const char *want)
{
    if (!ct)
        return 0;
    while (*ct == ' ') ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ') n--;
    return strlen(want) == n && strncasecmp(ct, want, n) == 0;
}

int content_type_is_json(const char *ct)
{
    return media_type_is(ct, "application/json");
}

void rfc3339_now(char *out, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char off[8];
    strftime(off, sizeof off, "%z", &tm); /* +0100 */
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (strcmp(off, "+0000") == 0 || !off[0])
        snprintf(out, len, "%sZ", base);
    else
        snprintf(out, len, "%s%.3s:%.2s", base, off, off + 3);
}

char *base64_encode(const unsigned char *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = xmalloc(((n + 2) / 3) * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

json_t *cloudevent_parse(const void *data, size_t len, size_t flags)
{
    json_t *v = json_loadb(data, len, flags | JSON_ALLOW_NUL, NULL);
    if (!v) /* Go reads integers of any size; jansson stops at int64 */
        v = json_loadb(data, len, flags | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
    return v;
}

/* Digits helper for rfc3339_parse. */
static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int rfc3339_parse(const char *s, time_t *out)
{
    int Y, M, D, h, m, sec;
    if (!s || strlen(s) < 20 || digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
        digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) || s[13] != ':' ||
        digits(s + 14, 2, &m) || s[16] != ':' || digits(s + 17, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p))
            p++;
    }
    long off = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        off = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 60L + om) * 60L * (*p == '-' ? -1 : 1);
    } else {
        return -1;
    }
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h, .tm_min = m,
                    .tm_sec = sec};
    *out = timegm(&tm) - off;
    return 0;
}

int cloudevent_expired(json_t *event)
{
    const char *exp = json_string_value(json_object_get(event, "expiration"));
    time_t when;
    /* Dapr ignores an expiration it cannot parse (logged there). */
    if (!exp || rfc3339_parse(exp, &when) != 0)
        return 0;
    return when < time(NULL);
}

static const char *meta(const ce_publish *p, const char *name)
{
    return p->metadata ? kv_list_get(p->metadata, name) : NULL;
}

/* The trace id part of a traceparent ("" when none). */
static void set_trace(json_t *ce, const char *traceparent, const char *tracestate, int only_if_missing)
{
    if (!only_if_missing || !json_object_get(ce, "traceid")) {
        json_object_set_new(ce, "traceid", json_string(traceparent ? traceparent : ""));
        json_object_set_new(ce, "traceparent", json_string(traceparent ? traceparent : ""));
    }
    if (!json_object_get(ce, "tracestate"))
        json_object_set_new(ce, "tracestate", json_string(tracestate ? tracestate : ""));
}

static int is_json_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Is the body one JSON value (whitespace around allowed)?  Its span
 * without the whitespace goes to *start, *n. */
static int json_span(const unsigned char *body, size_t len, size_t *start, size_t *n)
{
    json_t *v = cloudevent_parse(body, len, JSON_DECODE_ANY);
    if (!v)
        return 0;
    json_decref(v);
    size_t a = 0, b = len;
    while (a < b && is_json_ws(body[a])) a++;
    while (b > a && is_json_ws(body[b - 1])) b--;
    *start = a;
    *n = b - a;
    return 1;
}

char *cloudevent_build(const ce_publish *p, size_t *out_len, char *err, size_t errlen)
{
    char now[40];
    rfc3339_now(now, sizeof now);

    if (media_type_is(p->content_type, "application/cloudevents+json")) {
        json_error_t jerr;
        json_t *ce = json_loadb((const char *)p->body, p->len, JSON_ALLOW_NUL, &jerr);
        if (!ce)
            ce = cloudevent_parse(p->body, p->len, 0);
        if (!ce || !json_is_object(ce)) {
            json_decref(ce);
            snprintf(err, errlen, "the body is not a CloudEvent JSON object: %s", ce ? "not an object" : jerr.text);
            return NULL;
        }
        json_object_set_new(ce, "topic", json_string(p->topic));
        json_object_set_new(ce, "pubsubname", json_string(p->pubsub));
        if (!json_object_get(ce, "time"))
            json_object_set_new(ce, "time", json_string(now));
        set_trace(ce, p->traceparent, p->tracestate, 1);
        if (!json_object_get(ce, "source"))
            json_object_set_new(ce, "source", json_string("Dapr"));
        if (!json_object_get(ce, "type"))
            json_object_set_new(ce, "type", json_string("com.dapr.event.sent"));
        if (!json_object_get(ce, "specversion"))
            json_object_set_new(ce, "specversion", json_string("1.0"));
        if (p->expiration && !json_object_get(ce, "expiration"))
            json_object_set_new(ce, "expiration", json_string(p->expiration));
        char *text = json_to_text(ce, out_len, 1);
        json_decref(ce);
        return text;
    }

    const char *ct = p->content_type && *p->content_type ? p->content_type : "text/plain";
    char uuid[37];
    uuid_v4(uuid);
    const char *id = meta(p, "cloudevent.id");
    const char *source = meta(p, "cloudevent.source");
    const char *type = meta(p, "cloudevent.type");
    const char *subject = meta(p, "cloudevent.subject");
    const char *tp = meta(p, "cloudevent.traceparent");
    if (!tp) tp = meta(p, "cloudevent.traceid");
    const char *ts = meta(p, "cloudevent.tracestate");

    json_t *ce = json_object();
    json_object_set_new(ce, "id", json_string(id ? id : uuid));
    json_object_set_new(ce, "source", json_string(source ? source : p->source));
    json_object_set_new(ce, "type", json_string(type ? type : "com.dapr.event.sent"));
    json_object_set_new(ce, "specversion", json_string("1.0"));
    json_object_set_new(ce, "datacontenttype", json_string(ct));
    size_t raw_start = 0, raw_n = 0;
    int splice = 0;
    if (media_type_is(ct, "application/octet-stream")) {
        char *b = base64_encode(p->body, p->len);
        json_object_set_new(ce, "data_base64", json_string(b));
        free(b);
    } else if (content_type_is_json(ct) && json_span(p->body, p->len, &raw_start, &raw_n)) {
        splice = 1; /* the body itself, added below */
    } else {
        json_t *data = json_stringn((const char *)p->body, p->len);
        if (!data) { /* not valid UTF-8: keep the bytes rather than fail */
            char *b = base64_encode(p->body, p->len);
            json_object_set_new(ce, "data_base64", json_string(b));
            free(b);
        } else {
            json_object_set_new(ce, "data", data);
        }
    }
    json_object_set_new(ce, "topic", json_string(p->topic));
    json_object_set_new(ce, "pubsubname", json_string(p->pubsub));
    set_trace(ce, tp ? tp : p->traceparent, ts ? ts : p->tracestate, 0);
    json_object_set_new(ce, "time", json_string(now));
    if (subject)
        json_object_set_new(ce, "subject", json_string(subject));
    if (p->expiration)
        json_object_set_new(ce, "expiration", json_string(p->expiration));
    size_t len;
    char *text = json_to_text(ce, &len, 1);
    json_decref(ce);
    if (!splice) {
        *out_len = len;
        return text;
    }
    /* "data" sorts before every other key: {"data":<body>,<the rest>. */
    static const char head[] = "{\"data\":";
    size_t total = sizeof head - 1 + raw_n + 1 + (len - 1);
    char *out = xmalloc(total + 1);
    size_t o = 0;
    memcpy(out, head, sizeof head - 1);
    o += sizeof head - 1;
    memcpy(out + o, p->body + raw_start, raw_n);
    o += raw_n;
    out[o++] = ',';
    memcpy(out + o, text + 1, len - 1);
    o += len - 1;
    out[o] = '\0';
    free(text);
    *out_len = o;
    return out;
}

json_t *cloudevent_wrap_raw(const unsigned char *data, size_t len, const char *topic,
                            const char *pubsub, const kv_list *msg_metadata)
{
    char uuid[37];
    uuid_v4(uuid);
    char *b = base64_encode(data, len);
    json_t *ce = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", uuid, "specversion", "1.0",
                           "datacontenttype", "application/octet-stream", "source", "Dapr", "type",
                           "com.dapr.event.sent", "topic", topic, "pubsubname", pubsub, "data_base64", b);
    free(b);
    static const char *trace_keys[] = {"traceid", "traceparent", "tracestate"};
    for (size_t i = 0; msg_metadata && i < 3; i++) {
        const char *v = kv_list_get(msg_metadata, trace_keys[i]);
        if (v)
            json_object_set_new(ce, trace_keys[i], json_string(v));
    }
    return ce;
}
