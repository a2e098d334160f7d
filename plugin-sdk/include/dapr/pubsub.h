/*
 * dapr/pubsub.h - the pub/sub broker vtable (DAPR_KIND_PUBSUB).
 *
 * The host publishes the bytes it wants on the wire (a CloudEvent JSON
 * envelope unless the app asked for a raw payload) and gets back, for each
 * received message, exactly those bytes.
 *
 * Delivery is at-least-once: the plugin hands each message to the host's
 * handler together with an ack function, and acknowledges the message to
 * its broker only when the host calls that ack with SUCCESS or DROP.
 */
#ifndef DAPR_PUBSUB_H
#define DAPR_PUBSUB_H

#include <dapr/common.h>
#include <dapr/state.h> /* dapr_result, dapr_result_cb */

#ifdef __cplusplus
extern "C" {
#endif

#define DAPR_PUBSUB_SUBSCRIBE_WILDCARDS (1ull << 0) /* "SUBSCRIBE_WILDCARDS" */
#define DAPR_PUBSUB_BULK_PUBLISH        (1ull << 1)
#define DAPR_PUBSUB_BULK_SUBSCRIBE      (1ull << 2)
#define DAPR_PUBSUB_MESSAGE_TTL         (1ull << 3) /* broker enforces ttlInSeconds */

typedef struct dapr_pubsub_publish_req {
    const char *topic;
    dapr_bytes data;          /* the envelope (CloudEvent JSON) or raw payload */
    const char *content_type;
    dapr_kvs metadata;        /* request metadata.* (partitionKey, ttlInSeconds, ...) */
} dapr_pubsub_publish_req;

typedef struct dapr_pubsub_bulk_entry_result {
    const char *entry_id;
    dapr_status status;
    const char *message;
} dapr_pubsub_bulk_entry_result;

typedef struct dapr_pubsub_bulk_entry {
    const char *entry_id;
    dapr_bytes data;
    const char *content_type;
    dapr_kvs metadata;
} dapr_pubsub_bulk_entry;

typedef struct dapr_pubsub_bulk_publish_req {
    const char *topic;
    const dapr_pubsub_bulk_entry *entries;
    size_t n_entries;
    dapr_kvs metadata;
} dapr_pubsub_bulk_publish_req;

typedef struct dapr_pubsub_bulk_publish_result {
    dapr_status status;       /* DAPR_OK when every entry was published */
    const char *message;
    const dapr_pubsub_bulk_entry_result *failed; /* failed entries only */
    size_t n_failed;
} dapr_pubsub_bulk_publish_result;

typedef void (*dapr_pubsub_bulk_publish_cb)(void *ctx,
                                            const dapr_pubsub_bulk_publish_result *res);

/* A message received from the broker. */
typedef struct dapr_pubsub_message {
    const char *topic;
    dapr_bytes data;
    const char *content_type; /* may be NULL */
    dapr_kvs metadata;        /* broker metadata (headers, partition, ...) */
} dapr_pubsub_message;

typedef enum dapr_pubsub_ack {
    DAPR_PUBSUB_ACK_SUCCESS = 0, /* acknowledge to the broker */
    DAPR_PUBSUB_ACK_RETRY = 1,   /* redeliver later */
    DAPR_PUBSUB_ACK_DROP = 2     /* acknowledge, the app did not want it */
} dapr_pubsub_ack;

/* Called by the host exactly once per delivered message, from any thread,
 * possibly long after the handler returned (the app may be slow).  After
 * RETRY the plugin redelivers the message later (its broker's redelivery,
 * or its own backoff). */
typedef void (*dapr_pubsub_ack_fn)(void *ack_ctx, dapr_pubsub_ack verdict);

/* The host's handler.  The message is valid until the handler returns;
 * ack may be called later. */
typedef void (*dapr_pubsub_handler)(void *handler_ctx,
                                    const dapr_pubsub_message *msg,
                                    dapr_pubsub_ack_fn ack, void *ack_ctx);

typedef struct dapr_pubsub_subscribe_req {
    const char *topic;
    dapr_kvs metadata;        /* subscription metadata */
    dapr_pubsub_handler handler;
    void *handler_ctx;
    /* Back-pressure: the most messages the plugin may have handed to the
     * handler without having seen their ack yet.  The plugin stops
     * fetching (or stops acking its broker's flow control) at this bound;
     * 0 means the plugin's own default. */
    uint32_t max_in_flight;
} dapr_pubsub_subscribe_req;

typedef struct dapr_pubsub_vtable {
    uint32_t size;

    void (*publish)(void *inst, const dapr_pubsub_publish_req *req,
                    dapr_result_cb cb, void *ctx);
    /* NULL: the host publishes entry by entry. */
    void (*bulk_publish)(void *inst, const dapr_pubsub_bulk_publish_req *req,
                         dapr_pubsub_bulk_publish_cb cb, void *ctx);
    /* Start delivering a topic to the handler.  Returns a subscription id
     * > 0 in *sub_id before completing with DAPR_OK. */
    void (*subscribe)(void *inst, const dapr_pubsub_subscribe_req *req,
                      uint64_t *sub_id, dapr_result_cb cb, void *ctx);
    /* Stop a subscription; no handler call for it starts after this
     * completes.  Unacknowledged messages are left to redelivery. */
    void (*unsubscribe)(void *inst, uint64_t sub_id, dapr_result_cb cb, void *ctx);
} dapr_pubsub_vtable;

#ifdef __cplusplus
}
#endif
#endif /* DAPR_PUBSUB_H */
