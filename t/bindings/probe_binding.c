/*
 * probe_binding.c - bindings.probe, a test plugin that is both an input and
 * an output binding, to check what daprd does with such a type: one
 * instance per direction (the `direction` metadata), one metadata entry
 * with both capabilities, and the acks of input events.
 *
 * The output side's operations drive the input side through state shared
 * by the .so (the two directions are separate instances, as in Dapr):
 *   emit   hands the request's data to the started input instance of the
 *          same component (if any) as
 *          an event, `count` times (metadata; default 1), with the
 *          request metadata as event metadata; ignores max_in_flight when
 *          metadata ignoreBound is "true".  Answers {"readers": n}.
 *   stats  answers {"ok": n, "internal": n, "unavailable": n, "other": n,
 *          "last_response": "...", "last_message": "...", "max_in_flight": n,
 *          "starts": n, "stops": n, "outstanding": n}.
 * Built for make check only (never installed).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dapr/plugin.h>

#define MAX_READERS 8

typedef struct reader {
    char name[128];           /* the component: emit reaches its own readers only */
    int started;
    dapr_binding_handler handler;
    void *handler_ctx;
    uint32_t max_in_flight;
} reader;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static reader *readers[MAX_READERS];
static long n_ok, n_internal, n_unavailable, n_other, starts, stops, outstanding;
static uint32_t last_bound;
static char last_response[256], last_message[256];

static void acked(void *ctx, dapr_status st, const char *msg, dapr_bytes resp)
{
    (void)ctx;
    pthread_mutex_lock(&mu);
    outstanding--;
    if (st == DAPR_OK) n_ok++;
    else if (st == DAPR_ERR_INTERNAL) n_internal++;
    else if (st == DAPR_ERR_UNAVAILABLE) n_unavailable++;
    else n_other++;
    snprintf(last_response, sizeof last_response, "%.*s", (int)(resp.len < 200 ? resp.len : 200),
             resp.ptr ? (const char *)resp.ptr : "");
    snprintf(last_message, sizeof last_message, "%s", msg ? msg : "");
    pthread_mutex_unlock(&mu);
}

/* A JSON string's content: quotes and backslashes escaped, controls blanked. */
static void json_text(char *out, size_t n, const char *in)
{
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && k + 3 < n; p++) {
        if (*p == '"' || *p == '\\')
            out[k++] = '\\';
        out[k++] = *p < 0x20 ? ' ' : (char)*p;
    }
    out[k] = '\0';
}

/* ---- input side ------------------------------------------------------------ */

static dapr_status in_init(dapr_host *host, const dapr_host_api *api, void **inst, char *err, size_t errlen)
{
    reader *r = calloc(1, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", api->component_name(host));
    pthread_mutex_lock(&mu);
    int placed = 0;
    for (int i = 0; i < MAX_READERS && !placed; i++)
        if (!readers[i]) {
            readers[i] = r;
            placed = 1;
        }
    pthread_mutex_unlock(&mu);
    if (!placed) {
        free(r);
        snprintf(err, errlen, "too many probe readers");
        return DAPR_ERR_INTERNAL;
    }
    *inst = r;
    return DAPR_OK;
}

static void in_close(void *inst)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX_READERS; i++)
        if (readers[i] == inst)
            readers[i] = NULL;
    pthread_mutex_unlock(&mu);
    free(inst);
}

static void in_start(void *inst, const dapr_binding_read_req *req, dapr_result_cb cb, void *ctx)
{
    reader *r = inst;
    pthread_mutex_lock(&mu);
    r->handler = req->handler;
    r->handler_ctx = req->handler_ctx;
    r->max_in_flight = req->max_in_flight;
    last_bound = req->max_in_flight;
    r->started = 1;
    starts++;
    pthread_mutex_unlock(&mu);
    dapr_result res = {DAPR_OK, NULL};
    cb(ctx, &res);
}

static void in_stop(void *inst, dapr_result_cb cb, void *ctx)
{
    reader *r = inst;
    pthread_mutex_lock(&mu);
    r->started = 0;
    stops++;
    pthread_mutex_unlock(&mu);
    dapr_result res = {DAPR_OK, NULL};
    cb(ctx, &res);
}

/* ---- output side --------------------------------------------------------------- */

static dapr_status out_init(dapr_host *host, const dapr_host_api *api, void **inst, char *err, size_t errlen)
{
    (void)err; (void)errlen;
    *inst = strdup(api->component_name(host));
    return DAPR_OK;
}

static void out_close(void *inst) { free(inst); }

static const char *meta(const dapr_binding_invoke_req *req, const char *name)
{
    for (size_t i = 0; i < req->metadata.n; i++)
        if (strcmp(req->metadata.items[i].name, name) == 0)
            return req->metadata.items[i].value;
    return NULL;
}

static void out_invoke(void *inst, const dapr_binding_invoke_req *req, dapr_binding_invoke_cb cb, void *ctx)
{
    const char *name = inst;
    char out[2048];
    if (strcmp(req->operation, "stats") == 0) {
        char resp[520], msg[520];
        pthread_mutex_lock(&mu);
        json_text(resp, sizeof resp, last_response);
        json_text(msg, sizeof msg, last_message);
        snprintf(out, sizeof out,
                 "{\"ok\":%ld,\"internal\":%ld,\"unavailable\":%ld,\"other\":%ld,\"last_response\":\"%s\","
                 "\"last_message\":\"%s\",\"max_in_flight\":%u,\"starts\":%ld,\"stops\":%ld,\"outstanding\":%ld}",
                 n_ok, n_internal, n_unavailable, n_other, resp, msg, last_bound, starts, stops,
                 outstanding);
        pthread_mutex_unlock(&mu);
    } else {
        const char *c = meta(req, "count");
        long count = c ? strtol(c, NULL, 10) : 1;
        const char *ib = meta(req, "ignoreBound");
        int ignore = ib && strcmp(ib, "true") == 0;
        int n_readers = 0;
        for (int i = 0; i < MAX_READERS; i++) {
            pthread_mutex_lock(&mu);
            reader *r = readers[i];
            int go = r && r->started && strcmp(r->name, name) == 0;
            dapr_binding_handler h = go ? r->handler : NULL;
            void *hctx = go ? r->handler_ctx : NULL;
            uint32_t bound = go ? r->max_in_flight : 0;
            pthread_mutex_unlock(&mu);
            if (!go)
                continue;
            n_readers++;
            for (long k = 0; k < count; k++) {
                pthread_mutex_lock(&mu);
                int allowed = ignore || outstanding < (long)bound;
                if (allowed)
                    outstanding++;
                pthread_mutex_unlock(&mu);
                if (!allowed)
                    break;
                dapr_binding_event ev = {.data = req->data, .metadata = req->metadata, .content_type = NULL};
                h(hctx, &ev, acked, NULL);
            }
        }
        snprintf(out, sizeof out, "{\"readers\":%d}", n_readers);
    }
    dapr_binding_invoke_result r = {.status = DAPR_OK, .has_data = 1,
                                    .data = {(const uint8_t *)out, strlen(out)},
                                    .metadata = {(const dapr_kv[]){{"probe", "yes"}}, 1}};
    cb(ctx, &r);
}

/* ---- descriptor ---------------------------------------------------------------- */

static const char *const ops[] = {"emit", "stats", NULL};

static const dapr_input_binding_vtable in_vtable = {
    .size = sizeof(dapr_input_binding_vtable), .start = in_start, .stop = in_stop,
};

static const dapr_output_binding_vtable out_vtable = {
    .size = sizeof(dapr_output_binding_vtable), .operations = ops, .invoke = out_invoke,
};

static const dapr_component_def in_def = {
    .size = sizeof(dapr_component_def), .kind = DAPR_KIND_INPUT_BINDING, .type = "bindings.probe",
    .version = "v1", .flags = DAPR_COMPONENT_NONBLOCKING, .init = in_init, .close = in_close,
    .vtable = &in_vtable,
};

static const dapr_component_def out_def = {
    .size = sizeof(dapr_component_def), .kind = DAPR_KIND_OUTPUT_BINDING, .type = "bindings.probe",
    .version = "v1", .flags = DAPR_COMPONENT_NONBLOCKING, .init = out_init, .close = out_close,
    .vtable = &out_vtable,
};

static const dapr_component_def *const defs[] = {&in_def, &out_def};

static const dapr_plugin_descriptor descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "bindings-probe",
    .version = "0.0.1",
    .description = "test plugin: an input and output binding driven by its own output side",
    .components = defs,
    .n_components = 2,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &descriptor;
}
