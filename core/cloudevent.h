/*
 * cloudevent.h - the CloudEvent 1.0 envelope daprd wraps around published
 * payloads (reference §3.1) and unwraps on delivery (§3.5).
 */
#ifndef DAPRD_CLOUDEVENT_H
#define DAPRD_CLOUDEVENT_H

#include <jansson.h>
#include <stddef.h>
#include "kv_list.h"

typedef struct ce_publish {
    const unsigned char *body;
    size_t len;
    const char *content_type;  /* request Content-Type, NULL = none */
    const char *topic;
    const char *pubsub;
    const char *source;        /* publisher app id */
    const char *traceparent;   /* of this publish hop */
    const char *tracestate;    /* "" when absent */
    const kv_list *metadata;   /* request metadata.* (cloudevent.* overrides) */
    const char *expiration;    /* RFC 3339 UTC, or NULL */
} ce_publish;

/* Build the envelope.  Returns a new JSON object, or NULL with err set
 * (a CloudEvent passthrough body that is not a JSON object). */
json_t *cloudevent_build(const ce_publish *p, char *err, size_t errlen);

/* Wrap raw broker bytes for delivery with rawPayload (reference §3.5). */
json_t *cloudevent_wrap_raw(const unsigned char *data, size_t len, const char *topic,
                            const char *pubsub, const kv_list *msg_metadata);

/* Is the content type exactly application/json (parameters allowed)? */
int content_type_is_json(const char *ct);

/* Current time in RFC 3339 with seconds and local offset. */
void rfc3339_now(char *out, size_t len);

#endif
