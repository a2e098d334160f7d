/*
 * dapr/bindings.h - input and output binding vtables
 * (DAPR_KIND_OUTPUT_BINDING, DAPR_KIND_INPUT_BINDING).
 *
 * Draft for ABI 1.0: fixed so that binding plugins can be added without a
 * major bump; the host side lands with the bindings building block.  A
 * plugin that is both an input and an output binding lists two component
 * definitions with the same type name and different kinds.
 */
#ifndef DAPR_BINDINGS_H
#define DAPR_BINDINGS_H

#include <dapr/common.h>
#include <dapr/state.h> /* dapr_result */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dapr_binding_invoke_req {
    const char *operation;    /* "create", "get", ... */
    dapr_bytes data;          /* JSON-encoded "data" of the request */
    dapr_kvs metadata;
} dapr_binding_invoke_req;

typedef struct dapr_binding_invoke_result {
    dapr_status status;
    const char *message;
    int has_data;             /* 0: the binding returned nothing (204) */
    dapr_bytes data;
    const char *content_type; /* may be NULL */
    dapr_kvs metadata;        /* returned as metadata.* headers */
} dapr_binding_invoke_result;

typedef void (*dapr_binding_invoke_cb)(void *ctx, const dapr_binding_invoke_result *res);

typedef struct dapr_output_binding_vtable {
    uint32_t size;
    /* NULL-terminated list of supported operations. */
    const char *const *operations;
    void (*invoke)(void *inst, const dapr_binding_invoke_req *req,
                   dapr_binding_invoke_cb cb, void *ctx);
} dapr_output_binding_vtable;

/* An event read from the outside world. */
typedef struct dapr_binding_event {
    dapr_bytes data;
    dapr_kvs metadata;
} dapr_binding_event;

/* The host's answer to one event: status DAPR_OK when the app answered
 * 2xx; response is the app's body. */
typedef void (*dapr_binding_ack_fn)(void *ack_ctx, dapr_status status,
                                    dapr_bytes response);

typedef void (*dapr_binding_handler)(void *handler_ctx,
                                     const dapr_binding_event *event,
                                     dapr_binding_ack_fn ack, void *ack_ctx);

typedef struct dapr_input_binding_vtable {
    uint32_t size;
    /* Start reading; events go to handler until stop completes. */
    void (*start)(void *inst, dapr_binding_handler handler, void *handler_ctx,
                  dapr_result_cb cb, void *ctx);
    void (*stop)(void *inst, dapr_result_cb cb, void *ctx);
} dapr_input_binding_vtable;

#ifdef __cplusplus
}
#endif
#endif /* DAPR_BINDINGS_H */
