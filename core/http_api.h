/*
 * http_api.h - daprd's HTTP API server: one evhttp on the loop thread,
 * Dapr's path rules (collapsed slashes, per-segment query-style decoding,
 * fallback to service invocation), token auth, and reply helpers that
 * produce Dapr's error shape.
 *
 * A handler receives an api_call and must answer it exactly once with one
 * of the api_reply_* functions, now or later from the loop thread; the
 * reply frees the call.
 */
#ifndef DAPRD_HTTP_API_H
#define DAPRD_HTTP_API_H

#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stddef.h>
#include <time.h>
#include "kv_list.h"

typedef struct api_call {
    struct evhttp_request *req;
    enum evhttp_cmd_type method;
    char **seg;            /* decoded path segments ("v1.0", "state", ...) */
    size_t n_seg;
    char **raw_seg;        /* the same segments as received (percent-encoded) */
    char *raw_query;       /* the query string as received, or NULL */
    struct evkeyvalq query;
    kv_list metadata;      /* metadata.<name>=<value> query parameters */
    int internal;          /* arrived on the sidecar-to-sidecar port */
    int nul_in_path;       /* a segment decoded to a NUL byte (seg is cut there) */
    struct timespec started; /* CLOCK_MONOTONIC when the request arrived */
    struct trace_span *span; /* the call's server span (tracing.h), or NULL */
} api_call;

/* Start listening on each address (comma list) at port.  Returns 0/-1. */
int http_api_start(const char *addresses, int port, size_t max_body);
/* Start the sidecar-to-sidecar server (port 0 = any free port); every
 * request on it goes to api_invoke_internal().  *bound_port gets the port.
 * Returns 0/-1. */
int http_api_start_internal(const char *addresses, int port, size_t max_body, int *bound_port);
/* Stop accepting new connections (in-flight requests finish). */
void http_api_stop_accepting(void);
/* Calls received and not yet answered. */
size_t http_api_inflight(void);
void http_api_free(void);

/* Request accessors. */
const char *api_header(api_call *c, const char *name);
const char *api_query(api_call *c, const char *name);
/* The request body (not NUL-terminated; may contain NULs). */
const unsigned char *api_body(api_call *c, size_t *len);
const char *api_method_name(api_call *c);
/* The path with its parameters named, e.g. "/v1.0/state/{storeName}/{key}"
 * (see http_api.c). */
void api_path_template(api_call *c, char *out, size_t len);

/* Replies (each frees c). */
void api_reply_empty(api_call *c, int status);
void api_reply_raw(api_call *c, int status, const char *content_type, const void *data, size_t len);
/* Takes ownership of body (json_decref'd). */
void api_reply_json(api_call *c, int status, json_t *body);
/* Reply with the contents of body (drained). */
void api_reply_buffer(api_call *c, int status, struct evbuffer *body);
void api_reply_error(api_call *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* With a details array (ownership taken; may be NULL). */
void api_reply_error_details(api_call *c, int status, const char *code, json_t *details,
                             const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void api_add_header(api_call *c, const char *name, const char *value);

/* google.rpc detail objects for rich errors (new references). */
json_t *error_info(const char *reason, json_t *metadata);
json_t *resource_info(const char *type, const char *name);
json_t *bad_request_field(const char *field, const char *description);
json_t *help_link(const char *description, const char *url);

#endif
