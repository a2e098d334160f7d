/*
 * api_secrets.c - Dapr's secrets HTTP API (reference §6).
 *
 *   GET /v1.0/secrets/{store}/{key}   -> 200 {"k":"v",...} | 204
 *   GET /v1.0/secrets/{store}/bulk    -> 200 {"secret":{"k":"v"},...}
 *
 * metadata.* query parameters go to the plugin.  The Configuration's
 * secret scopes decide which keys the app may read: a denied key is 403,
 * and bulk answers leave denied secrets out.  The plugin runs on the
 * worker pool unless it is non-blocking; the reply is built on the loop
 * thread from a copy of the result, and every copy of a secret is wiped
 * before it is freed.  Nothing here logs a secret value: error lines
 * carry names and the plugin's message only.
 */
#include "config.h"
#include "api.h"
#include "component.h"
#include "json_out.h"
#include "kv_list.h"
#include "log.h"
#include "resiliency.h"
#include "loop.h"
#include "metrics.h"
#include "secrets.h"
#include "util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SCOPE "dapr.runtime.secrets"

static const dapr_secretstore_vtable *vtable_of(component *comp)
{
    return (const dapr_secretstore_vtable *)comp->def->vtable;
}

/* Is a vtable slot present in the plugin's (possibly older) vtable? */
#define VT_HAS(vt, slot) \
    ((vt) && (vt)->size >= offsetof(dapr_secretstore_vtable, slot) + sizeof((vt)->slot) && (vt)->slot)

/* Returns the store, or NULL after answering Dapr's error. */
static component *lookup_store(api_call *c, const char *name)
{
    if (components_count_kind(DAPR_KIND_SECRET_STORE) == 0) {
        api_reply_error(c, 500, "ERR_SECRET_STORES_NOT_CONFIGURED", "secret store is not configured");
        return NULL;
    }
    component *comp = component_find(DAPR_KIND_SECRET_STORE, name);
    if (!comp)
        api_reply_error(c, 401, "ERR_SECRET_STORE_NOT_FOUND", "failed finding secret store with key %s", name);
    return comp;
}

/* Go's %q for the permission message: the text in double quotes with
 * backslash escapes for quotes, backslashes and control bytes. */
static void go_quote(char *out, size_t outlen, const char *s)
{
    size_t k = 0;
    if (outlen < 3)
        return;
    out[k++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p && k + 6 < outlen; p++) {
        if (*p == '"' || *p == '\\') {
            out[k++] = '\\';
            out[k++] = (char)*p;
        } else if (*p == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else if (*p == '\t') {
            out[k++] = '\\';
            out[k++] = 't';
        } else if (*p < 0x20 || *p == 0x7f) {
            k += (size_t)snprintf(out + k, outlen - k, "\\x%02x", *p);
        } else {
            out[k++] = (char)*p;
        }
    }
    out[k++] = '"';
    out[k] = '\0';
}

static const char *status_text(dapr_status st, const char *msg)
{
    if (msg && *msg) return msg;
    switch (st) {
    case DAPR_ERR_NOT_FOUND: return "secret not found";
    case DAPR_ERR_NOT_SUPPORTED: return "not supported by the secret store";
    case DAPR_ERR_PERMISSION_DENIED: return "permission denied by the secret store";
    case DAPR_ERR_UNAVAILABLE: return "secret store unavailable";
    case DAPR_ERR_TIMEOUT: return "secret store timed out";
    default: return "secret store error";
    }
}

/* A JSON string of a secret value.  Go's encoder replaces bytes that are
 * not UTF-8 with U+FFFD, where jansson refuses the whole string: do as Go
 * does, so that a value with stray bytes still comes back. */
static json_t *secret_string(const char *v)
{
    json_t *j = json_string(v);
    if (j)
        return j;
    size_t n = strlen(v), k = 0;
    char *fixed = xmalloc(n * 3 + 1);
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)v[i];
        size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
        json_t *probe = len && i + len <= n ? json_stringn(v + i, len) : NULL;
        if (probe) {
            memcpy(fixed + k, v + i, len);
            k += len;
            i += len;
            json_decref(probe);
        } else {
            memcpy(fixed + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
    }
    j = json_stringn(fixed, k);
    explicit_bzero(fixed, n * 3 + 1);
    free(fixed);
    return j ? j : json_string("");
}

static json_t *pairs_object(const kv_list *l)
{
    json_t *o = json_object();
    for (size_t i = 0; i < l->n; i++)
        json_object_set_new(o, l->items[i].name, secret_string(l->items[i].value));
    return o;
}

/* Wipe a JSON text holding secrets, then free it. */
static void wipe_text(char *text, size_t len)
{
    if (text) {
        explicit_bzero(text, len);
        free(text);
    }
}

static void kv_list_wipe(kv_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        explicit_bzero((char *)l->items[i].value, strlen(l->items[i].value));
    kv_list_free(l);
}

/* jansson keeps its own copies of the values: the text it renders is wiped
 * here, but the json_t tree is freed by jansson without wiping (its
 * allocator cannot be told which strings are secret). */
static void reply_secret_json(api_call *c, json_t *body)
{
    size_t len;
    char *text = json_to_text(body, &len, 1); /* Go's map order: sorted keys */
    json_decref(body);
    api_reply_raw(c, 200, "application/json", text, len);
    wipe_text(text, len);
}

/* ---- GET /v1.0/secrets/{store}/{key} --------------------------------------- */

struct get_op {
    api_call *call;
    component *comp;
    char *key;
    kv_list meta;
    dapr_secret_get_req req;
    dapr_status st;
    char *msg;
    kv_list values;
    resil_comp *res;   /* outbound resiliency runner while it lives */
};

static void get_op_free(struct get_op *op)
{
    free(op->key);
    kv_list_free(&op->meta);
    free(op->msg);
    kv_list_wipe(&op->values);
    free(op);
}

static void get_finish(void *arg)
{
    struct get_op *op = arg;
    if (resil_component_done(&op->res, op->st != DAPR_OK,
                             op->st == DAPR_ERR_NOT_FOUND || op->st == DAPR_ERR_INVALID_ARGUMENT ||
                                 op->st == DAPR_ERR_NOT_SUPPORTED || op->st == DAPR_ERR_PERMISSION_DENIED))
        return;
    api_call *c = op->call;
    atomic_fetch_sub(&op->comp->inflight, 1);
    metrics_component_op(METRICS_SECRET, op->comp->name, METRICS_OP_GET, op->st == DAPR_OK,
                         metrics_elapsed_ms(&c->started, NULL));
    if (op->st != DAPR_OK) {
        api_reply_error(c, 500, "ERR_SECRET_GET", "failed getting secret with key %s from secret store %s: %s",
                        op->key, op->comp->name, status_text(op->st, op->msg));
    } else if (op->values.n == 0) {
        api_reply_empty(c, 204);
    } else {
        reply_secret_json(c, pairs_object(&op->values));
    }
    get_op_free(op);
}

static void get_done(void *ctx, const dapr_secret_get_result *res)
{
    struct get_op *op = ctx;
    op->st = res->status;
    op->msg = res->message ? xstrdup(res->message) : NULL;
    if (res->status == DAPR_OK)
        op->values = kv_list_copy(res->values);
    loop_post(get_finish, op);
}

static void get_run(void *arg)
{
    struct get_op *op = arg;
    vtable_of(op->comp)->get(op->comp->instance, &op->req, get_done, op);
}

static void get_reset(void *arg)
{
    struct get_op *op = arg;
    free(op->msg);
    op->msg = NULL;
    kv_list_wipe(&op->values);
}

static void get_fail(void *arg, const char *err)
{
    struct get_op *op = arg;
    api_reply_error(op->call, 500, "ERR_SECRET_GET", "failed getting secret with key %s from secret store %s: %s",
                    op->key, op->comp->name, err);
}

static void get_free_cb(void *arg)
{
    get_op_free(arg);
}

static const resil_comp_ops get_res_ops = {get_reset, get_fail, get_free_cb};

void api_secrets_get(api_call *c, const char *store, const char *key)
{
    component *comp = lookup_store(c, store);
    if (!comp)
        return;
    if (!secrets_allowed(store, key)) {
        char qk[512], qs[512];
        go_quote(qk, sizeof qk, key);
        go_quote(qs, sizeof qs, store);
        api_reply_error(c, 403, "ERR_PERMISSION_DENIED", "access denied by policy to get %s from %s", qk, qs);
        return;
    }
    if (!VT_HAS(vtable_of(comp), get)) {
        api_reply_error(c, 500, "ERR_SECRET_GET", "failed getting secret with key %s from secret store %s: %s",
                        key, store, status_text(DAPR_ERR_NOT_SUPPORTED, NULL));
        return;
    }
    struct get_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->comp = comp;
    op->key = xstrdup(key);
    for (size_t i = 0; i < c->metadata.n; i++)
        kv_list_set(&op->meta, c->metadata.items[i].name, c->metadata.items[i].value);
    op->req = (dapr_secret_get_req){.name = op->key, .metadata = kv_list_view(&op->meta)};
    atomic_fetch_add(&comp->inflight, 1);
    if (resil_component_dispatch(comp, RESIL_KIND_SECRETSTORE, get_run, op, &get_res_ops, &op->res) != 0) {
        atomic_fetch_sub(&comp->inflight, 1);
        api_reply_error(c, 429, "ERR_SECRET_GET", "too many operations in flight on secret store %s; try again later",
                        store);
        get_op_free(op);
    }
}

/* ---- GET /v1.0/secrets/{store}/bulk -------------------------------------------- */

struct bulk_op {
    api_call *call;
    component *comp;
    kv_list meta;
    dapr_status st;
    char *msg;
    json_t *body;      /* built in the completion: {"secret": {"k": "v"}} */
    size_t n_denied;
};

static void bulk_op_free(struct bulk_op *op)
{
    kv_list_free(&op->meta);
    free(op->msg);
    json_decref(op->body);
    free(op);
}

static void bulk_finish(void *arg)
{
    struct bulk_op *op = arg;
    api_call *c = op->call;
    atomic_fetch_sub(&op->comp->inflight, 1);
    metrics_component_op(METRICS_SECRET, op->comp->name, METRICS_OP_BULK_GET, op->st == DAPR_OK,
                         metrics_elapsed_ms(&c->started, NULL));
    if (op->st != DAPR_OK) {
        api_reply_error(c, 500, "ERR_SECRET_GET", "failed getting secrets from secret store %s: %s",
                        op->comp->name, status_text(op->st, op->msg));
    } else {
        if (op->n_denied)
            log_debug(SCOPE, "bulk get from secret store %s: %zu secrets left out by the secret scopes",
                      op->comp->name, op->n_denied);
        json_t *body = op->body;
        op->body = NULL;
        reply_secret_json(c, body);
    }
    bulk_op_free(op);
}

/* Runs on the plugin's thread: filter by scope while copying, so denied
 * secrets never leave the plugin's memory.  secrets_allowed reads
 * configuration that is fixed before the API starts. */
static void bulk_done(void *ctx, const dapr_secret_bulk_result *res)
{
    struct bulk_op *op = ctx;
    op->st = res->status;
    op->msg = res->message ? xstrdup(res->message) : NULL;
    if (res->status == DAPR_OK) {
        op->body = json_object();
        for (size_t i = 0; i < res->n_secrets; i++) {
            const dapr_secret_entry *e = &res->secrets[i];
            if (!e->name)
                continue;
            if (!secrets_allowed(op->comp->name, e->name)) {
                op->n_denied++;
                continue;
            }
            json_t *pairs = json_object();
            for (size_t k = 0; k < e->values.n; k++)
                if (e->values.items[k].name && e->values.items[k].value)
                    json_object_set_new(pairs, e->values.items[k].name, secret_string(e->values.items[k].value));
            /* A name that is not UTF-8 cannot be a JSON key: left out. */
            if (json_object_set_new(op->body, e->name, pairs) != 0)
                log_debug(SCOPE, "bulk get from secret store %s: a secret name is not valid UTF-8 and is left out",
                          op->comp->name);
        }
    }
    loop_post(bulk_finish, op);
}

static void bulk_run(void *arg)
{
    struct bulk_op *op = arg;
    vtable_of(op->comp)->bulk_get(op->comp->instance, kv_list_view(&op->meta), bulk_done, op);
}

void api_secrets_bulk_get(api_call *c, const char *store)
{
    component *comp = lookup_store(c, store);
    if (!comp)
        return;
    if (!VT_HAS(vtable_of(comp), bulk_get)) {
        api_reply_error(c, 500, "ERR_SECRET_GET", "failed getting secrets from secret store %s: %s", store,
                        status_text(DAPR_ERR_NOT_SUPPORTED, NULL));
        return;
    }
    struct bulk_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->comp = comp;
    for (size_t i = 0; i < c->metadata.n; i++)
        kv_list_set(&op->meta, c->metadata.items[i].name, c->metadata.items[i].value);
    atomic_fetch_add(&comp->inflight, 1);
    if (component_dispatch(comp, bulk_run, op) != 0) {
        atomic_fetch_sub(&comp->inflight, 1);
        api_reply_error(c, 429, "ERR_SECRET_GET", "too many operations in flight on secret store %s; try again later",
                        store);
        bulk_op_free(op);
    }
}
