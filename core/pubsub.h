/*
 * pubsub.h - the pub/sub runtime: publishing through broker plugins,
 * subscriptions (declarative and from the app's /dapr/subscribe), routing
 * by CEL rules, delivery to the app with at-least-once acks, dead letters.
 * Loop thread only.
 */
#ifndef DAPRD_PUBSUB_H
#define DAPRD_PUBSUB_H

#include <jansson.h>
#include <stddef.h>
#include "component.h"
#include "kv_list.h"
#include "manifest.h"

/* Remember the declarative subscriptions (compiling their rules).
 * Returns 0, or -1 after logging a rule that cannot be compiled. */
int pubsub_init(const component_list *resources);

/* After the app is reachable: ask it for subscriptions, subscribe to the
 * brokers, then call done() once (on the loop). */
void pubsub_start(void (*done)(void));

/* Stop every subscription and fail pending retries back to the brokers
 * (RETRY): called when shutdown starts. */
void pubsub_stop(void);
/* Deliveries in flight (shutdown waits for 0). */
size_t pubsub_inflight(void);
void pubsub_free(void);

/* Publishing scopes (component metadata publishingScopes, allowedTopics,
 * protectedTopics).  Returns 1 when the app may publish to topic. */
int pubsub_may_publish(component *c, const char *topic);

/* Publish bytes to a topic; cb runs on the loop with the broker's
 * status.  Returns 0, or -1 when the worker pool is saturated. */
typedef void (*pubsub_publish_cb)(void *arg, dapr_status st, const char *msg);
int pubsub_publish(component *c, const char *topic, const void *data, size_t len,
                   const char *content_type, const kv_list *metadata, pubsub_publish_cb cb, void *arg);

/* "subscriptions" of the metadata API (new reference; NULL when none). */
json_t *pubsub_metadata(void);

#endif
