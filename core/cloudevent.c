/* cloudevent.c - CloudEvent envelopes for publish and delivery. */
#include "config.h"
#include "cloudevent.h"
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

static char *base64(const unsigned char *p, size_t n)
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

json_t *cloudevent_build(const ce_publish *p, char *err, size_t errlen)
{
    char now[40];
    rfc3339_now(now, sizeof now);

    if (media_type_is(p->content_type, "application/cloudevents+json")) {
        json_error_t jerr;
        json_t *ce = json_loadb((const char *)p->body, p->len, 0, &jerr);
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
        return ce;
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
    if (media_type_is(ct, "application/octet-stream")) {
        char *b = base64(p->body, p->len);
        json_object_set_new(ce, "data_base64", json_string(b));
        free(b);
    } else {
        json_t *data = NULL;
        if (content_type_is_json(ct))
            data = json_loadb((const char *)p->body, p->len, JSON_DECODE_ANY, NULL);
        if (!data)
            data = json_stringn((const char *)p->body, p->len);
        if (!data) { /* not valid UTF-8: keep the bytes rather than fail */
            char *b = base64(p->body, p->len);
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
    return ce;
}

json_t *cloudevent_wrap_raw(const unsigned char *data, size_t len, const char *topic,
                            const char *pubsub, const kv_list *msg_metadata)
{
    char uuid[37];
    uuid_v4(uuid);
    char *b = base64(data, len);
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
