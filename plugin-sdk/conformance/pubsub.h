/*
 * pubsub.h - the pub/sub part of dapr-plugin-conformance.
 *
 * pubsub_ops.c calls a broker plugin's vtable the way daprd does (on the
 * op pool, waiting for each completion) and records what its handler
 * receives in a ps_sub; acks go back from a kit thread, as daprd acks from
 * its loop, or from the test itself ("manual" subscriptions).
 * suite_pubsub.c holds the tests.
 */
#ifndef CONFORMANCE_PUBSUB_H
#define CONFORMANCE_PUBSUB_H

#include "conformance.h"

#include <pthread.h>
#include <stdatomic.h>

/* One message as the handler saw it (copied). */
typedef struct ps_msg {
    char *topic;
    char *content_type;        /* NULL when the plugin gave none */
    uint8_t *data;             /* NUL-terminated copy, len bytes */
    size_t len;
} ps_msg;

struct ps_sub;

/* Auto-ack policy: the verdict for one received message (called with the
 * subscription locked, in delivery order).  NULL: always SUCCESS. */
typedef dapr_pubsub_ack (*ps_decide_fn)(struct ps_sub *s, const ps_msg *m, void *arg);

typedef struct ps_pending {
    dapr_pubsub_ack_fn ack;
    void *ack_ctx;
    size_t msg;                /* index in msgs */
} ps_pending;

typedef struct ps_sub {
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* broadcast on each delivery */
    char *topic;
    uint64_t id;
    uint32_t max_in_flight;
    int active;                /* subscribed and not unsubscribed */
    atomic_int unsubscribed;   /* unsubscribe completed (read on handler entry) */
    int manual;                /* the test acks (ps_ack) */
    ps_decide_fn decide;
    void *decide_arg;
    ps_msg *msgs;              /* everything received, in order */
    size_t n_msgs, cap_msgs;
    ps_pending *pending;       /* manual: handed out, not acked yet */
    size_t n_pending, cap_pending;
    uint32_t unacked, max_unacked;
    long late_calls;           /* handler calls after unsubscribe completed */
    char bad[256];             /* first contract violation seen in the handler */
    struct ps_sub *next;       /* all subscriptions of the run */
    int in_test;               /* created by the running test */
} ps_sub;

typedef struct ps_reply {
    int completed;
    dapr_status status;
    char message[512];
    char failure[256];         /* why completed is 0 */
} ps_reply;

/* Synchronous calls; 0 when the completion came exactly once in time. */
int ps_publish(const char *topic, const void *data, size_t len,
               const char *content_type, ps_reply *rep);
/* Subscribe; returns the subscription (even on failure: see rep) */
ps_sub *ps_subscribe(const char *topic, uint32_t max_in_flight, int manual,
                     ps_decide_fn decide, void *decide_arg, ps_reply *rep);
int ps_unsubscribe(ps_sub *s, ps_reply *rep);

/* Wait until s received at least n messages / has n pending (manual);
 * 0, or -1 after timeout_ms. */
int ps_wait_msgs(ps_sub *s, size_t n, int timeout_ms);
int ps_wait_pending(ps_sub *s, size_t n, int timeout_ms);
/* Manual ack of pending[i] (removed from the list). */
void ps_ack(ps_sub *s, size_t i, dapr_pubsub_ack verdict);
size_t ps_count(ps_sub *s);
size_t ps_npending(ps_sub *s);
void ps_sleep_ms(int ms);
double ps_now_ms(void);

/* A topic name unique to this run: "<run id>-<name>" (letters, digits,
 * '-' only, so every broker accepts it). */
void ps_topic(char *buf, size_t len, const char *name);

/* After each test: unsubscribe what is still subscribed, ack what is
 * pending, wait until the kit's ack queue is empty, and report handler
 * contract violations (calls after unsubscribe, too many unacked). */
void ps_teardown(ck_test *t);
/* After close: free every record. */
void ps_shutdown(void);
long ps_double_callbacks(void);

extern const ck_case ck_pubsub_cases[];
extern const size_t ck_n_pubsub_cases;

#endif
