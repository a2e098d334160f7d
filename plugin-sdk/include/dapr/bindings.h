/*
 * dapr/bindings.h - input and output binding vtables
 * (DAPR_KIND_OUTPUT_BINDING, DAPR_KIND_INPUT_BINDING).
 *
 * Output bindings: the app calls POST /v1.0/bindings/{name} with
 * {"operation", "data", "metadata"}; the host checks the operation against
 * the vtable's list and calls invoke().  Input bindings: the plugin reads
 * events from the outside world and hands each to the host's handler; the
 * host POSTs it to the app and reports the app's verdict through the ack.
 *
 * A type that is both an input and an output binding (bindings.kafka, ...)
 * lists two component definitions with the same type name, one of each
 * kind.  As in Dapr, the host makes one instance per direction in use --
 * each with its own init() and close() -- so a plugin never sees both
 * directions on one instance.  The component metadata `direction`
 * ("input", "output" or "input, output"; both when absent) says which
 * directions the host creates; `route` (the app path for input events,
 * default the component name) is the host's business too.
 *
 * Threading: as for every kind (plugin.h), invoke/start/stop run on the
 * host's worker pool unless the definition is DAPR_COMPONENT_NONBLOCKING,
 * and every callback may be called from any thread.
 */
#ifndef DAPR_BINDINGS_H
#define DAPR_BINDINGS_H

#include <dapr/common.h>
#include <dapr/state.h> /* dapr_result, dapr_result_cb */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- output bindings ------------------------------------------------------ */

typedef struct dapr_binding_invoke_req {
    const char *operation;    /* one of the vtable's operations ("create", "get", ...) */
    /* The request's "data" re-encoded as JSON, as Dapr hands it to its
     * components: an object stays JSON, a string arrives with its quotes
     * ("\"hi\""), a missing data is the 4 bytes null. */
    dapr_bytes data;
    /* The request's "metadata" (case-sensitive names, as Dapr's map), plus
     * traceparent/tracestate of the call. */
    dapr_kvs metadata;
} dapr_binding_invoke_req;

typedef struct dapr_binding_invoke_result {
    dapr_status status;
    const char *message;      /* why, when status is not DAPR_OK */
    /* 0: the binding returned no response (the app gets 204).  1: data is
     * the response body (the app gets 200, even when data is empty). */
    int has_data;
    dapr_bytes data;
    const char *content_type; /* may be NULL; the HTTP API always says application/json, as Dapr */
    /* Response metadata, returned to the app as metadata.<name> headers --
     * on failure too (the HTTP binding reports statusCode that way). */
    dapr_kvs metadata;
} dapr_binding_invoke_result;

typedef void (*dapr_binding_invoke_cb)(void *ctx, const dapr_binding_invoke_result *res);

typedef struct dapr_output_binding_vtable {
    uint32_t size;
    /* NULL-terminated list of the supported operations; the host refuses
     * any other operation before calling invoke (Dapr's error message
     * lists these). */
    const char *const *operations;
    /* The request is valid until cb is called; cb is called exactly once. */
    void (*invoke)(void *inst, const dapr_binding_invoke_req *req,
                   dapr_binding_invoke_cb cb, void *ctx);
} dapr_output_binding_vtable;

/* ---- input bindings -------------------------------------------------------- */

/* An event read from the outside world.  The host copies what it keeps
 * before the handler returns. */
typedef struct dapr_binding_event {
    dapr_bytes data;          /* the POST body the app receives */
    dapr_kvs metadata;        /* each pair becomes a request header to the app */
    const char *content_type; /* may be NULL; HTTP delivery always says application/json, as Dapr */
} dapr_binding_event;

/*
 * The host's verdict on one event, called exactly once per event handed
 * to the handler, from any thread, possibly long after the handler
 * returned (the app may be slow) and possibly after stop() completed;
 * never after the host called close().  Keep ack_ctx valid until then.
 *
 *   DAPR_OK              the app answered 2xx; response is its body
 *   DAPR_ERR_INTERNAL    the app answered another status (message says
 *                        which; response is its body)
 *   DAPR_ERR_UNAVAILABLE the app could not be reached, is unhealthy, or
 *                        daprd is shutting down (response is empty)
 *
 * On any failure the plugin applies its own retry semantics: redeliver
 * later, leave the message unacknowledged at its broker, or drop it when
 * the source cannot redeliver (a cron tick).  response and message are
 * valid only during the call.  The host usually calls this from its event
 * loop: return quickly (take a lock, queue work for your own thread).
 */
typedef void (*dapr_binding_ack_fn)(void *ack_ctx, dapr_status status, const char *message,
                                    dapr_bytes response);

/* The host's handler: copies the event, queues it and returns at once (it
 * never blocks).  May be called from any thread. */
typedef void (*dapr_binding_handler)(void *handler_ctx, const dapr_binding_event *event,
                                     dapr_binding_ack_fn ack, void *ack_ctx);

typedef struct dapr_binding_read_req {
    dapr_binding_handler handler;
    void *handler_ctx;
    /* Back-pressure: the most events the plugin may have handed to the
     * handler without having seen their ack yet (never 0).  At the bound a
     * plugin stops reading from its source; a timer-driven source skips
     * the tick instead.  The host acks events beyond it at once with
     * DAPR_ERR_UNAVAILABLE. */
    uint32_t max_in_flight;
} dapr_binding_read_req;

typedef struct dapr_input_binding_vtable {
    uint32_t size;
    /* Start reading.  req is valid during the call only (copy it).  The
     * handler may be called as soon as start was called, until stop
     * completes.  Complete cb once reading has started, or with an error
     * (the host then logs it and does not deliver from this binding). */
    void (*start)(void *inst, const dapr_binding_read_req *req,
                  dapr_result_cb cb, void *ctx);
    /* Stop reading: no handler call starts after cb was called.  Events
     * still unacknowledged get their ack later.  The host may call start
     * again after stop completed: it stops reading while the app is
     * unhealthy and starts again when it recovers, as Dapr does. */
    void (*stop)(void *inst, dapr_result_cb cb, void *ctx);
} dapr_input_binding_vtable;

#ifdef __cplusplus
}
#endif
#endif /* DAPR_BINDINGS_H */
