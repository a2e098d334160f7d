/*
 * api_pubsub.c - publish and bulk publish (reference §3.1, §3.2).
 */
#include "config.h"
#include "api.h"
#include "cloudevent.h"
#include "component.h"
#include "json_out.h"
#include "log.h"
#include "pubsub.h"
#include "runtime.h"
#include "trace.h"
#include "tracing.h"
#include "util.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SCOPE "dapr.runtime.pubsub"

static void pubsub_error(api_call *c, int status, const char *code, const char *reason, const char *pubsub,
                         const char *topic, int resource, const char *fmt, ...) __attribute__((format(printf, 8, 9)));

static void pubsub_error(api_call *c, int status, const char *code, const char *reason, const char *pubsub,
                         const char *topic, int resource, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *meta = json_pack("{s:s}", "appID", rt.app_id);
    json_t *t = topic ? json_string(topic) : NULL; /* NULL: not valid UTF-8 */
    if (t)
        json_object_set_new(meta, "topic", t);
    json_t *details = json_pack("[o]", error_info(reason, meta));
    if (resource) {
        json_t *ri = resource_info("pubsub", pubsub);
        json_t *desc = json_string(msg);
        json_object_set_new(ri, "description", desc ? desc : json_string(""));
        json_array_append_new(details, ri);
    }
    api_reply_error_details(c, status, code, details, "%s", msg);
}

/* Topic: the rest of the path, segments joined by '/'. */
static char *topic_of(api_call *c, size_t first)
{
    size_t len = 1;
    for (size_t i = first; i < c->n_seg; i++)
        len += strlen(c->seg[i]) + 1;
    char *t = xmalloc(len);
    t[0] = '\0';
    for (size_t i = first; i < c->n_seg; i++) {
        if (i > first) strcat(t, "/");
        strcat(t, c->seg[i]);
    }
    return t;
}

/* Common checks; returns the component or NULL after answering. */
static component *publish_target(api_call *c, const char *pubsub, const char *topic)
{
    component *comp = component_find(DAPR_KIND_PUBSUB, pubsub);
    if (!comp) {
        pubsub_error(c, 404, "ERR_PUBSUB_NOT_FOUND", "DAPR_PUBSUB_NOT_FOUND", pubsub, NULL, 0,
                     "pubsub %s is not found", pubsub);
        return NULL;
    }
    if (!*topic) {
        pubsub_error(c, 404, "ERR_TOPIC_NAME_EMPTY", "DAPR_PUBSUB_TOPIC_NAME_EMPTY", pubsub, NULL, 0,
                     "topic is empty in pubsub %s", pubsub);
        return NULL;
    }
    json_t *valid = c->nul_in_path ? NULL : json_string(topic);
    if (!valid) {
        pubsub_error(c, 400, "ERR_PUBSUB_EVENTS_SER", "DAPR_PUBSUB_MARSHAL_EVENTS", pubsub, NULL, 1,
                     "topic name is not valid UTF-8 or holds a NUL byte");
        return NULL;
    }
    json_decref(valid);
    if (!pubsub_may_publish(comp, topic)) {
        pubsub_error(c, 403, "ERR_PUBSUB_FORBIDDEN", "DAPR_PUBSUB_FORBIDDEN", pubsub, topic, 1,
                     "topic %s is not allowed for app id %s", topic, rt.app_id);
        return NULL;
    }
    return comp;
}

/* ttlInSeconds / ttl metadata -> "expiration" when the broker has no
 * native TTL.  Returns 0, or -1 when the value is malformed. */
static int expiration_of(component *comp, const kv_list *meta, char *out, size_t len)
{
    out[0] = '\0';
    const char *ttl = kv_list_get(meta, "ttlInSeconds");
    if (!ttl) ttl = kv_list_get(meta, "ttl");
    if (!ttl)
        return 0;
    int64_t secs, ms;
    if (parse_int64(ttl, &secs) != 0) {
        if (parse_duration_ms(ttl, &ms) != 0)
            return -1;
        secs = ms / 1000;
    }
    if (secs <= 0 || (comp->def->features & DAPR_PUBSUB_MESSAGE_TTL))
        return 0;
    time_t when = time(NULL) + (time_t)secs;
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return 0;
}

/* Metadata for the broker: request metadata.* without envelope overrides. */
static void broker_metadata(const kv_list *in, kv_list *out)
{
    for (size_t i = 0; i < in->n; i++)
        if (strncmp(in->items[i].name, "cloudevent.", 11) != 0)
            kv_list_set(out, in->items[i].name, in->items[i].value);
}

/* ---- single publish ----------------------------------------------------------- */

struct publish_op {
    api_call *call;
    char *pubsub, *topic;
};

static void publish_answer(void *arg, dapr_status st, const char *msg)
{
    struct publish_op *op = arg;
    if (st != DAPR_OK)
        pubsub_error(op->call, 500, "ERR_PUBSUB_PUBLISH_MESSAGE", "DAPR_PUBSUB_PUBLISH_MESSAGE", op->pubsub,
                     op->topic, 1, "error when publishing to topic %s in pubsub %s: %s", op->topic, op->pubsub,
                     msg && *msg ? msg : "broker error");
    else
        api_reply_empty(op->call, 204);
    free(op->pubsub);
    free(op->topic);
    free(op);
}

void api_publish(api_call *c, size_t pubsub_seg)
{
    const char *pubsub = c->seg[pubsub_seg];
    char *topic = topic_of(c, pubsub_seg + 1);
    component *comp = publish_target(c, pubsub, topic);
    if (!comp) {
        free(topic);
        return;
    }
    const char *raw_s = kv_list_get(&c->metadata, "rawPayload");
    int raw = 0;
    if (raw_s && (raw = parse_bool(raw_s)) < 0) {
        pubsub_error(c, 400, "ERR_PUBSUB_REQUEST_METADATA", "DAPR_PUBSUB_METADATA_DESERIALIZATION", pubsub, topic,
                     1, "rawPayload value '%s' is not a boolean", raw_s);
        free(topic);
        return;
    }
    char expiration[40];
    if (expiration_of(comp, &c->metadata, expiration, sizeof expiration) != 0) {
        pubsub_error(c, 400, "ERR_PUBSUB_REQUEST_METADATA", "DAPR_PUBSUB_METADATA_DESERIALIZATION", pubsub, topic,
                     1, "ttlInSeconds is not a number of seconds");
        free(topic);
        return;
    }
    size_t len;
    const unsigned char *body = api_body(c, &len);
    const char *ct = api_header(c, "Content-Type");
    char tp[TRACEPARENT_LEN + 1];
    tracing_call_traceparent(c, tp); /* the publish call's span (Dapr) */
    kv_list meta = {0};
    broker_metadata(&c->metadata, &meta);
    char *payload = NULL;
    size_t payload_len = len;
    const char *payload_ct = ct;
    if (!raw) {
        const char *ts = api_header(c, "tracestate");
        ce_publish p = {.body = body, .len = len, .content_type = ct, .topic = topic, .pubsub = pubsub,
                        .source = rt.app_id, .traceparent = tp, .tracestate = ts ? ts : "",
                        .metadata = &c->metadata, .expiration = expiration[0] ? expiration : NULL};
        char err[256];
        payload = cloudevent_build(&p, &payload_len, err, sizeof err);
        if (!payload) {
            pubsub_error(c, 500, "ERR_PUBSUB_CLOUD_EVENTS_SER", "DAPR_PUBSUB_CLOUD_EVENT_CREATION", pubsub, topic,
                         1, "error when creating the CloudEvent for topic %s: %s", topic, err);
            kv_list_free(&meta);
            free(topic);
            return;
        }
        payload_ct = "application/cloudevents+json";
    }
    struct publish_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->pubsub = xstrdup(pubsub);
    op->topic = topic;
    if (pubsub_publish(comp, topic, payload ? payload : (const char *)body, payload_len, payload_ct, &meta,
                       publish_answer, op) != 0)
        publish_answer(op, DAPR_ERR_UNAVAILABLE, "too many operations in flight; try again later");
    free(payload);
    kv_list_free(&meta);
}

/* ---- bulk publish ----------------------------------------------------------------- */

struct bulk_op {
    api_call *call;
    char *pubsub, *topic;
    size_t pending;
    json_t *failed;
    int started;
};

struct bulk_entry {
    struct bulk_op *op;
    char *entry_id;
};

static void bulk_maybe_reply(struct bulk_op *op)
{
    if (op->pending || !op->started)
        return;
    if (json_array_size(op->failed)) {
        json_t *body = json_pack("{s:O, s:s}", "failedEntries", op->failed, "errorCode", "ERR_PUBSUB_PUBLISH_MESSAGE");
        size_t len;
        char *text = json_to_text(body, &len, 0);
        api_add_header(op->call, "metadata.responseData", text);
        api_add_header(op->call, "metadata.error", "some entries failed to publish");
        free(text);
        api_reply_json(op->call, 500, body);
    } else {
        api_reply_empty(op->call, 204);
    }
    json_decref(op->failed);
    free(op->pubsub);
    free(op->topic);
    free(op);
}

static void bulk_entry_done(void *arg, dapr_status st, const char *msg)
{
    struct bulk_entry *e = arg;
    struct bulk_op *op = e->op;
    if (st != DAPR_OK)
        json_array_append_new(op->failed, json_pack("{s:s, s:s}", "entryId", e->entry_id, "error",
                                                    msg && *msg ? msg : "broker error"));
    free(e->entry_id);
    free(e);
    op->pending--;
    bulk_maybe_reply(op);
}

/* A member as Go's encoding/json finds a struct field: the exact name,
 * else the first name equal ignoring case. */
static json_t *member_ci(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    if (v || !json_is_object(o))
        return v;
    const char *k;
    json_object_foreach(o, k, v)
        if (strcasecmp(k, name) == 0)
            return v;
    return NULL;
}

static int decode_base64(const char *in, unsigned char **out, size_t *len)
{
    size_t n = strlen(in);
    if (n % 4)
        return -1;
    *out = xmalloc(n / 4 * 3 + 1);
    int l = EVP_DecodeBlock(*out, (const unsigned char *)in, (int)n);
    if (l < 0) {
        free(*out);
        return -1;
    }
    while (n > 0 && in[n - 1] == '=') { l--; n--; }
    *len = (size_t)l;
    return 0;
}

void api_bulk_publish(api_call *c, size_t pubsub_seg)
{
    const char *pubsub = c->seg[pubsub_seg];
    char *topic = topic_of(c, pubsub_seg + 1);
    component *comp = publish_target(c, pubsub, topic);
    if (!comp) {
        free(topic);
        return;
    }
    size_t blen;
    const unsigned char *body = api_body(c, &blen);
    json_t *arr = json_loadb((const char *)body, blen, 0, NULL);
    if (!json_is_array(arr)) {
        json_decref(arr);
        pubsub_error(c, 400, "ERR_PUBSUB_EVENTS_SER", "DAPR_PUBSUB_UNMARSHAL_EVENTS", pubsub, topic, 1,
                     "error when unmarshaling the request: the body must be a JSON array of entries");
        free(topic);
        return;
    }
    /* Validate every entry before publishing any.  Field names match as
     * Go's decoder matches them: exactly, else ignoring case (the JS SDK
     * sends "entryID"). */
    size_t i;
    json_t *e;
    const char *problem = NULL;
    json_t *seen = json_object(); /* entry ids so far: a hash set */
    json_array_foreach(arr, i, e) {
        const char *id = json_string_value(member_ci(e, "entryId"));
        const char *ct = json_string_value(member_ci(e, "contentType"));
        json_t *ev = member_ci(e, "event");
        if (!json_is_object(e)) { problem = "every entry must be a JSON object"; break; }
        if (!id || !*id) { problem = "every entry needs an entryId"; break; }
        if (json_object_get(seen, id)) { problem = "entryId values must be unique"; break; }
        json_object_set_new(seen, id, json_true());
        if (!ev) { problem = "every entry needs an event"; break; }
        if (ct && strncasecmp(ct, "application/cloudevents+json", 28) == 0) {
            if (!json_is_object(ev)) { problem = "a CloudEvent entry's event must be a JSON object"; break; }
        } else if (!ct || content_type_is_json(ct)) {
            continue; /* any JSON value */
        } else if (strncasecmp(ct, "text/", 5) == 0 || strncasecmp(ct, "application/xml", 15) == 0) {
            if (!json_is_string(ev)) { problem = "a text or XML entry's event must be a JSON string"; break; }
        } else if (strncasecmp(ct, "application/octet-stream", 24) == 0) {
            unsigned char *tmp;
            size_t tl;
            if (!json_is_string(ev) || decode_base64(json_string_value(ev), &tmp, &tl) != 0) {
                problem = "an application/octet-stream entry's event must be base64";
                break;
            }
            free(tmp);
        } else {
            problem = "unsupported entry contentType";
            break;
        }
    }
    json_decref(seen);
    if (problem) {
        pubsub_error(c, 400, "ERR_PUBSUB_EVENTS_SER", "DAPR_PUBSUB_MARSHAL_EVENTS", pubsub, topic, 1,
                     "error when marshaling the bulk request: entry %zu: %s", i, problem);
        json_decref(arr);
        free(topic);
        return;
    }
    struct bulk_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->pubsub = xstrdup(pubsub);
    op->topic = topic;
    op->failed = json_array();
    json_array_foreach(arr, i, e) {
        const char *id = json_string_value(member_ci(e, "entryId"));
        const char *ct = json_string_value(member_ci(e, "contentType"));
        json_t *ev = member_ci(e, "event");
        kv_list meta = {0};
        broker_metadata(&c->metadata, &meta);
        const char *k;
        json_t *v;
        json_object_foreach(member_ci(e, "metadata"), k, v)
            if (json_is_string(v))
                kv_list_set(&meta, k, json_string_value(v));
        unsigned char *raw = NULL;
        size_t raw_len = 0;
        if (ct && strncasecmp(ct, "application/octet-stream", 24) == 0) {
            decode_base64(json_string_value(ev), &raw, &raw_len);
        } else if (json_is_string(ev) && !(ct && (content_type_is_json(ct)))) {
            raw = (unsigned char *)xstrdup(json_string_value(ev));
            raw_len = json_string_length(ev);
        } else {
            raw = (unsigned char *)json_to_text(ev, &raw_len, 0);
        }
        char tp[TRACEPARENT_LEN + 1];
        tracing_call_traceparent(c, tp);
        char expiration[40] = "";
        expiration_of(comp, &meta, expiration, sizeof expiration);
        const char *raw_meta = kv_list_get(&meta, "rawPayload");
        char *payload = NULL;
        size_t payload_len = raw_len;
        const char *payload_ct = ct ? ct : "application/json";
        if (!(raw_meta && parse_bool(raw_meta) == 1)) {
            ce_publish p = {.body = raw, .len = raw_len, .content_type = ct ? ct : "application/json",
                            .topic = topic, .pubsub = pubsub, .source = rt.app_id, .traceparent = tp,
                            .tracestate = "", .metadata = &meta, .expiration = expiration[0] ? expiration : NULL};
            char err[256];
            payload = cloudevent_build(&p, &payload_len, err, sizeof err);
            if (payload)
                payload_ct = "application/cloudevents+json";
        }
        struct bulk_entry *be = xcalloc(1, sizeof *be);
        be->op = op;
        be->entry_id = xstrdup(id);
        op->pending++;
        if (pubsub_publish(comp, topic, payload ? payload : (char *)raw, payload ? payload_len : raw_len, payload_ct,
                           &meta, bulk_entry_done, be) != 0)
            bulk_entry_done(be, DAPR_ERR_UNAVAILABLE, "too many operations in flight");
        free(payload);
        free(raw);
        kv_list_free(&meta);
    }
    json_decref(arr);
    op->started = 1;
    bulk_maybe_reply(op);
}
