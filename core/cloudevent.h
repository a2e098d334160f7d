/*
 * cloudevent.h - the CloudEvent 1.0 envelope daprd wraps around published
 * payloads (reference §3.1) and unwraps on delivery (§3.5).
 */
#ifndef DAPRD_CLOUDEVENT_H
#define DAPRD_CLOUDEVENT_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>
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

/* Build the envelope as compact JSON text with sorted keys (Dapr writes a
 * Go map).  A JSON body becomes "data" byte for byte, so numbers of any
 * size keep their exact text, as with Dapr's json.Number decoding.
 * Returns malloc'ed text (*len set), or NULL with err set (a CloudEvent
 * passthrough body that is not a JSON object). */
char *cloudevent_build(const ce_publish *p, size_t *len, char *err, size_t errlen);

/* Parse a delivered message as JSON the way Dapr does (Go decodes integers
 * of any size): jansson first, then with big integers read as reals.
 * Returns a new reference or NULL. */
json_t *cloudevent_parse(const void *data, size_t len, size_t flags);

/* Has the event an "expiration" (RFC 3339, any offset) in the past? */
int cloudevent_expired(json_t *event);

/* Parse RFC 3339 ("2006-01-02T15:04:05[.frac](Z|+hh:mm)").  Returns 0. */
int rfc3339_parse(const char *s, time_t *out);

/* Standard base64 (with padding) of n bytes; malloc'ed. */
char *base64_encode(const unsigned char *p, size_t n);

/* Wrap raw broker bytes for delivery with rawPayload (reference §3.5). */
json_t *cloudevent_wrap_raw(const unsigned char *data, size_t len, const char *topic,
                            const char *pubsub, const kv_list *msg_metadata);

/* Is the content type exactly application/json (parameters allowed)? */
int content_type_is_json(const char *ct);

/* Current time in RFC 3339 with seconds and local offset. */
void rfc3339_now(char *out, size_t len);

#endif
