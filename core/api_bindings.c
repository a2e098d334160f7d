/*
 * api_bindings.c - output bindings over HTTP (reference §5.1).
 *
 *   POST|PUT /v1.0/bindings/{name}  {"operation", "data", "metadata"}
 *     -> 200 application/json + the binding's response, or 204 when it
 *        returned none; response metadata as metadata.<name> headers
 *        (on failure too); every failure is 500 ERR_INVOKE_OUTPUT_BINDING
 *        except a body that is not the request object (400
 *        ERR_MALFORMED_REQUEST).
 *
 * The request is decoded as Go's encoding/json decodes Dapr's request
 * struct: field names match case-insensitively (the exact name first),
 * numbers are float64 (so data re-encodes as Dapr re-encodes it), a JSON
 * null body is an empty request.  `data` is re-encoded as JSON before the
 * plugin sees it, as Dapr does: a string keeps its quotes.
 */
#include "config.h"
#include "api.h"
#include "component.h"
#include "json_out.h"
#include "resiliency.h"
#include "kv_list.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "trace.h"
#include "tracing.h"
#include "util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SCOPE "dapr.runtime.http"

struct invoke_op {
    api_call *call;
    component *comp;
    char *name;
    char *operation;
    char *data;
    size_t data_len;
    kv_list meta;
    dapr_binding_invoke_req req;
    /* the result, copied on the plugin's thread */
    dapr_status st;
    char *msg;
    int has_data;
    unsigned char *out;
    size_t out_len;
    kv_list out_meta;
    resil_comp *res;        /* outbound resiliency runner while it lives */
};

static void op_free(struct invoke_op *op)
{
    free(op->name);
    free(op->operation);
    free(op->data);
    kv_list_free(&op->meta);
    free(op->msg);
    free(op->out);
    kv_list_free(&op->out_meta);
    free(op);
}

/* A member by name as Go finds struct fields: exact first, then the first
 * case-insensitive match. */
static json_t *member(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    if (v)
        return v;
    const char *k;
    json_object_foreach(o, k, v)
        if (strcasecmp(k, name) == 0)
            return v;
    return NULL;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_TRUE: case JSON_FALSE: return "bool";
    case JSON_NULL: return "null";
    default: return "number";
    }
}

static const char *status_text(dapr_status st)
{
    switch (st) {
    case DAPR_ERR_INVALID_ARGUMENT: return "invalid argument";
    case DAPR_ERR_NOT_FOUND: return "not found";
    case DAPR_ERR_NOT_SUPPORTED: return "not supported";
    case DAPR_ERR_UNAVAILABLE: return "unavailable";
    case DAPR_ERR_TIMEOUT: return "timed out";
    case DAPR_ERR_PERMISSION_DENIED: return "permission denied";
    case DAPR_ERR_ALREADY_EXISTS: return "already exists";
    default: return "binding error";
    }
}

static int header_ok(const char *name, const char *value)
{
    for (const char *p = name; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p))
            return 0;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) /* UTF-8 (obs-text) passes, as in Go */
            return 0;
    return *name != '\0';
}

static void invoke_finish(void *arg)
{
    struct invoke_op *op = arg;
    if (resil_component_done(&op->res, op->st != DAPR_OK,
                             op->st == DAPR_ERR_INVALID_ARGUMENT || op->st == DAPR_ERR_NOT_SUPPORTED))
        return;
    api_call *c = op->call;
    atomic_fetch_sub(&op->comp->inflight, 1);
    metrics_component_op(METRICS_OUTPUT_BINDING, op->comp->name, op->operation, op->st == DAPR_OK,
                         metrics_elapsed_ms(&c->started, NULL));
    /* Response metadata goes back even on failure (Dapr 1.13+): the HTTP
     * binding's statusCode is how an app learns what the server said. */
    for (size_t i = 0; i < op->out_meta.n; i++) {
        const dapr_kv *kv = &op->out_meta.items[i];
        char *h = xasprintf("metadata.%s", kv->name);
        if (header_ok(h, kv->value))
            api_add_header(c, h, kv->value);
        free(h);
    }
    if (op->st != DAPR_OK) {
        api_reply_error(c, 500, "ERR_INVOKE_OUTPUT_BINDING", "error invoking output binding %s: %s", op->name,
                        op->msg && *op->msg ? op->msg : status_text(op->st));
    } else if (!op->has_data) {
        api_reply_empty(c, 204);
    } else {
        api_reply_raw(c, 200, "application/json", op->out, op->out_len);
    }
    op_free(op);
}

/* Any thread: copy what the plugin returned, then answer on the loop. */
static void invoke_done(void *ctx, const dapr_binding_invoke_result *res)
{
    struct invoke_op *op = ctx;
    op->st = res->status;
    op->msg = res->status != DAPR_OK && res->message ? xstrdup(res->message) : NULL;
    op->has_data = res->status == DAPR_OK && res->has_data;
    if (op->has_data && res->data.len && res->data.ptr) {
        op->out = xmalloc(res->data.len);
        memcpy(op->out, res->data.ptr, res->data.len);
        op->out_len = res->data.len;
    }
    op->out_meta = kv_list_copy(res->metadata);
    loop_post(invoke_finish, op);
}

static void invoke_run(void *arg)
{
    struct invoke_op *op = arg;
    ((const dapr_output_binding_vtable *)op->comp->def->vtable)->invoke(op->comp->instance, &op->req,
                                                                           invoke_done, op);
}

/* Before a retry: forget the failed attempt's result. */
static void invoke_reset(void *arg)
{
    struct invoke_op *op = arg;
    free(op->msg);
    free(op->out);
    kv_list_free(&op->out_meta);
    op->msg = NULL;
    op->out = NULL;
    op->out_len = 0;
    op->has_data = 0;
}

static void invoke_fail(void *arg, const char *err)
{
    struct invoke_op *op = arg;
    api_reply_error(op->call, 500, "ERR_INVOKE_OUTPUT_BINDING", "error invoking output binding %s: %s", op->name,
                    err);
}

static void invoke_free_cb(void *arg)
{
    op_free(arg);
}

static const resil_comp_ops invoke_res_ops = {invoke_reset, invoke_fail, invoke_free_cb};

static component *find_output(const char *name)
{
    for (size_t i = 0; i < components_count(); i++) {
        component *c = component_at(i);
        if (c->kind == DAPR_KIND_OUTPUT_BINDING && strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

/* Decode the body into op (operation, data, metadata).  Returns 0, or -1
 * after answering. */
static int decode(api_call *c, struct invoke_op *op)
{
    size_t len;
    const unsigned char *body = api_body(c, &len);
    json_error_t jerr;
    /* Numbers as doubles: Go decodes `data` into interface{} (float64). */
    json_t *j = json_loadb((const char *)body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                           &jerr);
    if (!j) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "failed deserializing HTTP body: %s", jerr.text);
        return -1;
    }
    if (json_is_null(j)) { /* Go: null leaves the struct empty */
        json_decref(j);
        op->operation = xstrdup("");
        op->data = xstrdup("null");
        op->data_len = 4;
        return 0;
    }
    const char *bad_field = NULL, *want = NULL;
    json_t *bad = NULL;
    if (!json_is_object(j)) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST",
                        "failed deserializing HTTP body: json: cannot unmarshal %s into Go value of type "
                        "http.OutputBindingRequest", json_kind(j));
        json_decref(j);
        return -1;
    }
    json_t *opv = member(j, "operation"), *data = member(j, "data"), *meta = member(j, "metadata");
    if (opv && !json_is_string(opv) && !json_is_null(opv)) {
        bad_field = "operation", want = "string", bad = opv;
    } else if (meta && !json_is_object(meta) && !json_is_null(meta)) {
        bad_field = "metadata", want = "map[string]string", bad = meta;
    } else if (json_is_object(meta)) {
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v)
            if (!json_is_string(v) && !json_is_null(v)) {
                bad_field = "metadata", want = "string", bad = v;
                break;
            }
    }
    if (bad_field) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST",
                        "failed deserializing HTTP body: json: cannot unmarshal %s into Go struct field "
                        "OutputBindingRequest.%s of type %s", json_kind(bad), bad_field, want);
        json_decref(j);
        return -1;
    }
    op->operation = xstrdup(json_is_string(opv) ? json_string_value(opv) : "");
    /* Go's map order when it re-encodes: sorted keys. */
    op->data = json_to_text(data ? data : json_null(), &op->data_len, 1);
    if (json_is_object(meta)) {
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v)
            kv_list_set(&op->meta, k, json_is_string(v) ? json_string_value(v) : "");
    }
    json_decref(j);
    return 0;
}

void api_bindings_invoke(api_call *c, const char *name)
{
    struct invoke_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->name = xstrdup(name);
    if (decode(c, op) != 0) {
        op_free(op);
        return;
    }
    /* The call's trace context travels to the binding as metadata (the
     * HTTP binding turns it into headers), as in Dapr. */
    char tp[TRACEPARENT_LEN + 1];
    tracing_call_traceparent(c, tp);
    kv_list_set(&op->meta, "traceparent", tp);
    const char *ts = api_header(c, "tracestate");
    if (ts && *ts)
        kv_list_set(&op->meta, "tracestate", ts);
    /* Dapr's order: the operation first, then the binding, then whether it
     * supports the operation. */
    if (!*op->operation) {
        api_reply_error(c, 500, "ERR_INVOKE_OUTPUT_BINDING",
                        "error invoking output binding %s: operation field is missing from request", name);
        op_free(op);
        return;
    }
    component *comp = find_output(name);
    if (!comp) {
        api_reply_error(c, 500, "ERR_INVOKE_OUTPUT_BINDING",
                        "error invoking output binding %s: couldn't find output binding %s", name, name);
        op_free(op);
        return;
    }
    const dapr_output_binding_vtable *vt = comp->def->vtable;
    int supported = 0;
    size_t list_len = 1;
    for (const char *const *o = vt->operations; o && *o; o++) {
        supported |= strcmp(*o, op->operation) == 0;
        list_len += strlen(*o) + 1;
    }
    if (!supported || !vt->invoke) {
        char *list = xcalloc(1, list_len);
        for (const char *const *o = vt->operations; o && *o; o++) {
            if (*list)
                strcat(list, " ");
            strcat(list, *o);
        }
        api_reply_error(c, 500, "ERR_INVOKE_OUTPUT_BINDING",
                        "error invoking output binding %s: binding %s does not support operation %s. "
                        "supported operations:%s", name, name, op->operation, list);
        free(list);
        op_free(op);
        return;
    }
    op->comp = comp;
    op->req = (dapr_binding_invoke_req){.operation = op->operation,
                                        .data = {.ptr = (const uint8_t *)op->data, .len = op->data_len},
                                        .metadata = kv_list_view(&op->meta)};
    atomic_fetch_add(&comp->inflight, 1);
    if (resil_component_dispatch(comp, RESIL_KIND_BINDING, invoke_run, op, &invoke_res_ops, &op->res) != 0) {
        atomic_fetch_sub(&comp->inflight, 1);
        api_reply_error(c, 429, "ERR_INVOKE_OUTPUT_BINDING",
                        "error invoking output binding %s: too many operations in flight; try again later", name);
        op_free(op);
    }
}
