/*
 * api_state.c - Dapr's state management HTTP API (reference §2).
 *
 * Each handler validates the request on the loop thread, builds an
 * operation that owns copies of everything the plugin will read, hands it
 * to the plugin with component_dispatch() (inline for non-blocking
 * plugins, else on the worker pool), and answers from the loop thread when
 * the plugin's completion is posted back.  Nothing reaches the store
 * unless the whole request is valid.
 */
#include "config.h"
#include "api.h"
#include "component.h"
#include "json_out.h"
#include "kv_list.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "resiliency.h"
#include "runtime.h"
#include "util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SCOPE "dapr.runtime.state"
#define DEFAULT_BULK_PARALLELISM 10

/* Is a vtable slot present in the plugin's (possibly older) vtable? */
#define VT_HAS(vt, slot) \
    ((vt)->size >= offsetof(dapr_state_vtable, slot) + sizeof((vt)->slot) && (vt)->slot)

static const dapr_state_vtable *vtable_of(component *comp)
{
    return (const dapr_state_vtable *)comp->def->vtable;
}

/* ---- lookups and validation ------------------------------------------------ */

/* Returns the store, or NULL after answering the error. */
static component *lookup_store(api_call *c, const char *name, int app_id_meta)
{
    component *comp = component_find(DAPR_KIND_STATE, name);
    if (comp)
        return comp;
    json_t *meta = app_id_meta ? json_pack("{s:s}", "appID", rt.app_id) : NULL;
    if (components_count_kind(DAPR_KIND_STATE) == 0)
        api_reply_error_details(c, 500, "ERR_STATE_STORE_NOT_CONFIGURED",
                                json_pack("[o]", error_info("DAPR_STATE_NOT_CONFIGURED", meta)),
                                "state store %s is not configured", name);
    else
        api_reply_error_details(c, 400, "ERR_STATE_STORE_NOT_FOUND",
                                json_pack("[o]", error_info("DAPR_STATE_NOT_FOUND", meta)),
                                "state store %s is not found", name);
    return NULL;
}

/* Keys may not contain "||": it separates the prefix from the key. */
static int check_key(api_call *c, component *comp, const char *key)
{
    if (!strstr(key, "||"))
        return 0;
    char desc[256];
    snprintf(desc, sizeof desc, "input key/keyPrefix '%.200s' can't contain '||'", key);
    api_reply_error_details(c, 400, "ERR_MALFORMED_REQUEST",
                            json_pack("[o,o,o]", bad_request_field(key, desc),
                                      error_info("DAPR_STATE_ILLEGAL_KEY", NULL),
                                      resource_info("state", comp->name)),
                            "%s", desc);
    return -1;
}

static char *stored_key(component *comp, const char *key)
{
    return xasprintf("%s%s", comp->key_prefix, key);
}

/* The app's key back from a stored key (reference §2.2). */
static const char *original_key(component *comp, const char *stored)
{
    size_t pl = strlen(comp->key_prefix);
    if (pl && strncmp(stored, comp->key_prefix, pl) == 0)
        return stored + pl;
    const char *sep = strstr(stored, "||");
    return sep ? sep + 2 : stored;
}

/* Object member lookup ignoring case, as Go's JSON decoding does. */
static json_t *member(json_t *obj, const char *name)
{
    const char *k;
    json_t *v;
    json_t *exact = json_object_get(obj, name);
    if (exact)
        return exact;
    json_object_foreach(obj, k, v)
        if (strcasecmp(k, name) == 0)
            return v;
    return NULL;
}

/* Parse a JSON object of string values into l.  Returns 0, or -1 with a
 * message in err. */
static int parse_metadata_object(json_t *obj, kv_list *l, char *err, size_t errlen)
{
    if (!obj || json_is_null(obj))
        return 0;
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "metadata must be an object of strings");
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        if (!json_is_string(v)) {
            snprintf(err, errlen, "metadata value of '%.100s' must be a string", k);
            return -1;
        }
        kv_list_set(l, k, json_string_value(v));
    }
    return 0;
}

static void merge_request_metadata(api_call *c, kv_list *l)
{
    for (size_t i = 0; i < c->metadata.n; i++)
        kv_list_set(l, c->metadata.items[i].name, c->metadata.items[i].value);
}

static int parse_concurrency(const char *s, dapr_concurrency *out)
{
    if (!s || !*s) { *out = DAPR_CONCURRENCY_UNSPECIFIED; return 0; }
    if (strcmp(s, "first-write") == 0) { *out = DAPR_CONCURRENCY_FIRST_WRITE; return 0; }
    if (strcmp(s, "last-write") == 0) { *out = DAPR_CONCURRENCY_LAST_WRITE; return 0; }
    return -1;
}

static int parse_consistency(const char *s, dapr_consistency *out)
{
    if (!s || !*s) { *out = DAPR_CONSISTENCY_UNSPECIFIED; return 0; }
    if (strcmp(s, "eventual") == 0) { *out = DAPR_CONSISTENCY_EVENTUAL; return 0; }
    if (strcmp(s, "strong") == 0) { *out = DAPR_CONSISTENCY_STRONG; return 0; }
    return -1;
}

/* Parse the body as JSON; NULL after answering 400 when it is not. */
static json_t *parse_body(api_call *c, int want_array)
{
    size_t len;
    const unsigned char *body = api_body(c, &len);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)body, len, JSON_ALLOW_NUL, &jerr);
    if (!j) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "failed to parse the request body as JSON: %s",
                        jerr.text);
        return NULL;
    }
    if (want_array ? !json_is_array(j) : !json_is_object(j)) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "the request body must be a JSON %s",
                        want_array ? "array" : "object");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Status of a store error for save and delete (reference §2.4, §2.5). */
static int write_error_status(dapr_status st)
{
    if (st == DAPR_ERR_ETAG_MISMATCH) return 409;
    if (st == DAPR_ERR_ETAG_INVALID) return 400;
    return 500;
}

static const char *status_text(dapr_status st, const char *msg)
{
    if (msg && *msg) return msg;
    switch (st) {
    case DAPR_ERR_ETAG_MISMATCH: return "possible etag mismatch";
    case DAPR_ERR_ETAG_INVALID: return "invalid etag value";
    case DAPR_ERR_NOT_SUPPORTED: return "not supported by the state store";
    case DAPR_ERR_UNAVAILABLE: return "state store unavailable";
    case DAPR_ERR_TIMEOUT: return "state store timed out";
    default: return "state store error";
    }
}

/* Start fn(op) on the store; on saturation answer 429 and return -1 (the
 * caller frees op). */
static int dispatch(api_call *c, component *comp, void (*fn)(void *), void *op, const char *code)
{
    atomic_fetch_add(&comp->inflight, 1);
    if (component_dispatch(comp, fn, op) == 0)
        return 0;
    atomic_fetch_sub(&comp->inflight, 1);
    api_reply_error(c, 429, code, "too many operations in flight on state store %s; try again later",
                    comp->name);
    return -1;
}

static void op_done(component *comp)
{
    atomic_fetch_sub(&comp->inflight, 1);
}

/* dispatch() under the store's outbound resiliency policy (timeouts,
 * retries, breaker): see resil_component_dispatch(). */
static int dispatch_res(api_call *c, component *comp, void (*fn)(void *), void *op, const char *code,
                        const resil_comp_ops *ops, resil_comp **slot)
{
    atomic_fetch_add(&comp->inflight, 1);
    if (resil_component_dispatch(comp, RESIL_KIND_STATE, fn, op, ops, slot) == 0)
        return 0;
    atomic_fetch_sub(&comp->inflight, 1);
    api_reply_error(c, 429, code, "too many operations in flight on state store %s; try again later",
                    comp->name);
    return -1;
}

/* Outcomes a retry cannot change.  An etag mismatch is never retried: a
 * retry would only repeat it, and first-write-wins must stay exact. */
static int permanent_status(dapr_status st)
{
    return st == DAPR_ERR_ETAG_MISMATCH || st == DAPR_ERR_ETAG_INVALID || st == DAPR_ERR_INVALID_ARGUMENT ||
           st == DAPR_ERR_NOT_SUPPORTED || st == DAPR_ERR_NOT_FOUND || st == DAPR_ERR_PERMISSION_DENIED ||
           st == DAPR_ERR_ALREADY_EXISTS || st == DAPR_ERR_TOO_MANY_OPERATIONS;
}

/*
 * The head of every operation that completes with a plain dapr_result
 * (save, delete, transaction): the completion copies the status and posts
 * the operation's own finish function to the loop.
 */
struct status_head {
    void (*finish)(void *op); /* runs on the loop thread */
    dapr_status st;
    char *msg;
    resil_comp *res;          /* resiliency runner while it lives */
};

static void status_done(void *ctx, const dapr_result *res)
{
    struct status_head *h = ctx;
    h->st = res->status;
    free(h->msg);
    h->msg = res->message ? xstrdup(res->message) : NULL;
    loop_post(h->finish, h);
}

/* ---- GET /v1.0/state/{store}/{key} ------------------------------------------ */

struct get_op {
    api_call *call;
    component *comp;
    char *app_key;
    char *key;
    kv_list meta;
    dapr_state_get_req req;
    /* result copy */
    dapr_status st;
    char *msg;
    int found;
    unsigned char *value;
    size_t value_len;
    char *etag;
    kv_list res_meta;
    resil_comp *res;
};

static void get_op_free(struct get_op *op)
{
    free(op->app_key);
    free(op->key);
    kv_list_free(&op->meta);
    free(op->msg);
    free(op->value);
    free(op->etag);
    kv_list_free(&op->res_meta);
    free(op);
}

static void get_finish(void *arg)
{
    struct get_op *op = arg;
    if (resil_component_done(&op->res, op->st != DAPR_OK, permanent_status(op->st)))
        return;
    api_call *c = op->call;
    op_done(op->comp);
    metrics_component_op(METRICS_STATE, op->comp->name, METRICS_OP_GET, op->st == DAPR_OK,
                         metrics_elapsed_ms(&c->started, NULL));
    if (op->st != DAPR_OK) {
        api_reply_error(c, 500, "ERR_STATE_GET", "fail to get %s from state store %s: %s", op->app_key,
                        op->comp->name, status_text(op->st, op->msg));
    } else if (!op->found) {
        api_reply_empty(c, 204);
    } else {
        if (op->etag)
            api_add_header(c, "ETag", op->etag);
        for (size_t i = 0; i < op->res_meta.n; i++) {
            char *h = xasprintf("metadata.%s", op->res_meta.items[i].name);
            api_add_header(c, h, op->res_meta.items[i].value);
            free(h);
        }
        api_reply_raw(c, 200, "application/json", op->value, op->value_len);
    }
    get_op_free(op);
}

static void get_done(void *ctx, const dapr_state_get_result *res)
{
    struct get_op *op = ctx;
    op->st = res->status;
    op->msg = res->message ? xstrdup(res->message) : NULL;
    op->found = res->status == DAPR_OK && res->found;
    if (op->found) {
        op->value = xmalloc(res->value.len + 1);
        if (res->value.len)
            memcpy(op->value, res->value.ptr, res->value.len);
        op->value_len = res->value.len;
        op->etag = res->etag ? xstrdup(res->etag) : NULL;
        op->res_meta = kv_list_copy(res->metadata);
    }
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
    free(op->value);
    free(op->etag);
    kv_list_free(&op->res_meta);
    op->msg = NULL;
    op->value = NULL;
    op->etag = NULL;
    op->found = 0;
}

static void get_fail(void *arg, const char *err)
{
    struct get_op *op = arg;
    api_reply_error(op->call, 500, "ERR_STATE_GET", "fail to get %s from state store %s: %s", op->app_key,
                    op->comp->name, err);
}

static void get_free_cb(void *arg)
{
    get_op_free(arg);
}

static const resil_comp_ops get_res_ops = {get_reset, get_fail, get_free_cb};

void api_state_get(api_call *c, const char *store, const char *key)
{
    component *comp = lookup_store(c, store, 1);
    if (!comp || check_key(c, comp, key) != 0)
        return;
    dapr_consistency cons;
    if (parse_consistency(api_query(c, "consistency"), &cons) != 0) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "consistency must be eventual or strong");
        return;
    }
    struct get_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->comp = comp;
    op->app_key = xstrdup(key);
    op->key = stored_key(comp, key);
    merge_request_metadata(c, &op->meta);
    op->req = (dapr_state_get_req){.key = op->key, .consistency = cons,
                                   .metadata = kv_list_view(&op->meta)};
    if (dispatch_res(c, comp, get_run, op, "ERR_STATE_GET", &get_res_ops, &op->res) != 0)
        get_op_free(op);
}

/* ---- POST /v1.0/state/{store} --------------------------------------------- */

struct set_item {
    char *app_key;
    char *key;
    char *value;
    size_t value_len;
    char *etag;
    kv_list meta;
};

static void set_items_free(struct set_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].app_key);
        free(items[i].key);
        free(items[i].value);
        free(items[i].etag);
        kv_list_free(&items[i].meta);
    }
    free(items);
}

/* Fill a set request from one JSON item ({key, value, etag, metadata,
 * options}).  Returns 0, or answers the error and returns -1. */
static int parse_set_item(api_call *c, component *comp, json_t *item, struct set_item *si,
                          dapr_state_set_req *req, const char *err_code)
{
    if (!json_is_object(item)) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "each state item must be a JSON object");
        return -1;
    }
    json_t *jkey = member(item, "key");
    if (jkey && !json_is_string(jkey)) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "\"key\" must be a string");
        return -1;
    }
    const char *key = jkey ? json_string_value(jkey) : "";
    if (!*key) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "\"key\" is a required field");
        return -1;
    }
    if (strlen(key) != json_string_length(jkey)) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "\"key\" must not contain NUL characters");
        return -1;
    }
    if (check_key(c, comp, key) != 0)
        return -1;
    json_t *jetag = member(item, "etag");
    if (jetag && !json_is_string(jetag) && !json_is_null(jetag)) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "\"etag\" must be a string");
        return -1;
    }
    char err[256];
    if (parse_metadata_object(member(item, "metadata"), &si->meta, err, sizeof err) != 0) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "%s", err);
        return -1;
    }
    merge_request_metadata(c, &si->meta);
    json_t *opts = member(item, "options");
    dapr_concurrency conc = DAPR_CONCURRENCY_UNSPECIFIED;
    dapr_consistency cons = DAPR_CONSISTENCY_UNSPECIFIED;
    if (opts && !json_is_null(opts)) {
        if (!json_is_object(opts)) {
            api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "\"options\" must be an object");
            return -1;
        }
        json_t *jc = member(opts, "concurrency"), *js = member(opts, "consistency");
        if ((jc && !json_is_string(jc) && !json_is_null(jc)) ||
            (js && !json_is_string(js) && !json_is_null(js))) {
            api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "options must be strings");
            return -1;
        }
        /* Dapr reports an unknown option value as a store error (500). */
        if (parse_concurrency(json_string_value(jc), &conc) != 0) {
            api_reply_error(c, 500, err_code, "unrecognized concurrency model '%s'", json_string_value(jc));
            return -1;
        }
        if (parse_consistency(json_string_value(js), &cons) != 0) {
            api_reply_error(c, 500, err_code, "unrecognized consistency model '%s'", json_string_value(js));
            return -1;
        }
    }
    json_t *value = member(item, "value");
    si->app_key = xstrdup(key);
    si->key = stored_key(comp, key);
    si->value = value ? json_to_text(value, &si->value_len, 1) : xstrdup("null");
    if (!value)
        si->value_len = 4;
    const char *etag = json_string_value(jetag);
    si->etag = etag && *etag ? xstrdup(etag) : NULL;
    *req = (dapr_state_set_req){
        .key = si->key,
        .value = {(const uint8_t *)si->value, si->value_len},
        .etag = si->etag,
        .concurrency = conc,
        .consistency = cons,
        .metadata = kv_list_view(&si->meta),
    };
    return 0;
}

struct save_op {
    struct status_head head; /* first: status_done casts to it */
    api_call *call;
    component *comp;
    struct set_item *items;
    dapr_state_set_req *reqs;
    size_t n;
    size_t next;          /* next item for the one-by-one fallback */
    int use_bulk;
};

static void save_op_free(struct save_op *op)
{
    set_items_free(op->items, op->n);
    free(op->reqs);
    free(op->head.msg);
    free(op);
}

static void save_run(void *arg);

static void save_reset(void *arg)
{
    struct save_op *op = arg;
    if (!op->use_bulk && op->next > 0)
        op->next--; /* the same item again */
}

static void save_fail(void *arg, const char *err)
{
    struct save_op *op = arg;
    api_reply_error(op->call, 500, "ERR_STATE_SAVE", "failed saving state in state store %s: %s", op->comp->name,
                    err);
}

static void save_free_cb(void *arg)
{
    save_op_free(arg);
}

static const resil_comp_ops save_res_ops = {save_reset, save_fail, save_free_cb};

static void save_step(void *arg)
{
    struct save_op *op = arg;
    if (resil_component_done(&op->head.res, op->head.st != DAPR_OK, permanent_status(op->head.st)))
        return;
    op_done(op->comp);
    if (op->head.st == DAPR_OK && !op->use_bulk && op->next < op->n) {
        /* One-by-one fallback: next item. */
        if (dispatch_res(op->call, op->comp, save_run, op, "ERR_STATE_SAVE", &save_res_ops, &op->head.res) != 0)
            save_op_free(op);
        return;
    }
    metrics_component_op(METRICS_STATE, op->comp->name, METRICS_OP_SET, op->head.st == DAPR_OK,
                         metrics_elapsed_ms(&op->call->started, NULL));
    if (op->head.st != DAPR_OK)
        api_reply_error(op->call, write_error_status(op->head.st), "ERR_STATE_SAVE",
                        "failed saving state in state store %s: %s", op->comp->name,
                        status_text(op->head.st, op->head.msg));
    else
        api_reply_empty(op->call, 204);
    save_op_free(op);
}

static void save_run(void *arg)
{
    struct save_op *op = arg;
    const dapr_state_vtable *vt = vtable_of(op->comp);
    if (op->use_bulk)
        vt->bulk_set(op->comp->instance, op->reqs, op->n, status_done, op);
    else
        vt->set(op->comp->instance, &op->reqs[op->next++], status_done, op);
}

void api_state_save(api_call *c, const char *store)
{
    component *comp = lookup_store(c, store, 1);
    if (!comp)
        return;
    json_t *arr = parse_body(c, 1);
    if (!arr)
        return;
    size_t n = json_array_size(arr);
    if (n == 0) {
        json_decref(arr);
        api_reply_empty(c, 204);
        return;
    }
    struct save_op *op = xcalloc(1, sizeof *op);
    op->head.finish = save_step;
    op->call = c;
    op->comp = comp;
    op->items = xcalloc(n, sizeof *op->items);
    op->reqs = xcalloc(n, sizeof *op->reqs);
    op->n = n;
    for (size_t i = 0; i < n; i++) {
        if (parse_set_item(c, comp, json_array_get(arr, i), &op->items[i], &op->reqs[i],
                           "ERR_STATE_SAVE") != 0) {
            json_decref(arr);
            save_op_free(op);
            return;
        }
    }
    json_decref(arr);
    op->use_bulk = n > 1 && VT_HAS(vtable_of(comp), bulk_set);
    if (dispatch_res(c, comp, save_run, op, "ERR_STATE_SAVE", &save_res_ops, &op->head.res) != 0)
        save_op_free(op);
}

/* ---- DELETE /v1.0/state/{store}/{key} --------------------------------------- */

struct delete_op {
    struct status_head head; /* first: status_done casts to it */
    api_call *call;
    component *comp;
    char *app_key;
    char *key;
    char *etag;
    kv_list meta;
    dapr_state_delete_req req;
};

static void delete_op_free(struct delete_op *op)
{
    free(op->app_key);
    free(op->key);
    free(op->etag);
    kv_list_free(&op->meta);
    free(op->head.msg);
    free(op);
}

static void delete_finish(void *arg)
{
    struct delete_op *op = arg;
    if (resil_component_done(&op->head.res, op->head.st != DAPR_OK, permanent_status(op->head.st)))
        return;
    op_done(op->comp);
    metrics_component_op(METRICS_STATE, op->comp->name, METRICS_OP_DELETE, op->head.st == DAPR_OK,
                         metrics_elapsed_ms(&op->call->started, NULL));
    if (op->head.st != DAPR_OK)
        api_reply_error(op->call, write_error_status(op->head.st), "ERR_STATE_DELETE",
                        "failed deleting state with key %s: %s", op->app_key,
                        status_text(op->head.st, op->head.msg));
    else
        api_reply_empty(op->call, 204);
    delete_op_free(op);
}

static void delete_run(void *arg)
{
    struct delete_op *op = arg;
    vtable_of(op->comp)->del(op->comp->instance, &op->req, status_done, op);
}

static void delete_fail(void *arg, const char *err)
{
    struct delete_op *op = arg;
    api_reply_error(op->call, 500, "ERR_STATE_DELETE", "failed deleting state with key %s: %s", op->app_key, err);
}

static void delete_free_cb(void *arg)
{
    delete_op_free(arg);
}

static const resil_comp_ops delete_res_ops = {NULL, delete_fail, delete_free_cb};

void api_state_delete(api_call *c, const char *store, const char *key)
{
    component *comp = lookup_store(c, store, 1);
    if (!comp || check_key(c, comp, key) != 0)
        return;
    dapr_concurrency conc;
    dapr_consistency cons;
    if (parse_concurrency(api_query(c, "concurrency"), &conc) != 0) {
        api_reply_error(c, 500, "ERR_STATE_DELETE", "unrecognized concurrency model '%s'",
                        api_query(c, "concurrency"));
        return;
    }
    if (parse_consistency(api_query(c, "consistency"), &cons) != 0) {
        api_reply_error(c, 500, "ERR_STATE_DELETE", "unrecognized consistency model '%s'",
                        api_query(c, "consistency"));
        return;
    }
    struct delete_op *op = xcalloc(1, sizeof *op);
    op->head.finish = delete_finish;
    op->call = c;
    op->comp = comp;
    op->app_key = xstrdup(key);
    op->key = stored_key(comp, key);
    const char *if_match = api_header(c, "If-Match");
    op->etag = if_match && *if_match ? xstrdup(if_match) : NULL;
    merge_request_metadata(c, &op->meta);
    op->req = (dapr_state_delete_req){.key = op->key, .etag = op->etag, .concurrency = conc,
                                      .consistency = cons, .metadata = kv_list_view(&op->meta)};
    if (dispatch_res(c, comp, delete_run, op, "ERR_STATE_DELETE", &delete_res_ops, &op->head.res) != 0)
        delete_op_free(op);
}

/* ---- POST /v1.0/state/{store}/bulk ------------------------------------------ */

struct bulk_result {
    int done;
    dapr_status st;
    char *msg;
    int found;
    unsigned char *value;
    size_t value_len;
    char *etag;
    kv_list meta;
};

struct bulk_op {
    api_call *call;
    component *comp;
    char **app_keys;
    char **keys;
    size_t n;
    kv_list meta;
    uint32_t parallelism;
    struct bulk_result *results;
    /* plugin bulk_get: whole-call status */
    int use_bulk;
    dapr_status st;
    char *msg;
    /* one-by-one fallback */
    size_t next, running, completed;
};

struct bulk_single {
    struct bulk_op *op;
    size_t index;
    dapr_state_get_req req;
};

static void bulk_op_free(struct bulk_op *op)
{
    for (size_t i = 0; i < op->n; i++) {
        free(op->app_keys[i]);
        free(op->keys[i]);
        free(op->results[i].msg);
        free(op->results[i].value);
        free(op->results[i].etag);
        kv_list_free(&op->results[i].meta);
    }
    free(op->app_keys);
    free(op->keys);
    free(op->results);
    kv_list_free(&op->meta);
    free(op->msg);
    free(op);
}

static void copy_bulk_result(struct bulk_result *r, dapr_status st, const char *msg, int found,
                             dapr_bytes value, const char *etag, dapr_kvs meta)
{
    r->done = 1;
    r->st = st;
    r->msg = msg ? xstrdup(msg) : NULL;
    r->found = st == DAPR_OK && found;
    if (r->found) {
        r->value = xmalloc(value.len + 1);
        if (value.len)
            memcpy(r->value, value.ptr, value.len);
        r->value_len = value.len;
        r->etag = etag ? xstrdup(etag) : NULL;
        r->meta = kv_list_copy(meta);
    }
}

static void bulk_reply(struct bulk_op *op)
{
    api_call *c = op->call;
    metrics_component_op(METRICS_STATE, op->comp->name, METRICS_OP_BULK_GET, op->st == DAPR_OK,
                         metrics_elapsed_ms(&c->started, NULL));
    if (op->st != DAPR_OK) {
        api_reply_error(c, 500, "ERR_STATE_BULK_GET", "failed getting state in bulk from state store %s: %s",
                        op->comp->name, status_text(op->st, op->msg));
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < op->n; i++) {
        struct bulk_result *r = &op->results[i];
        json_t *item = json_pack("{s:s}", "key", op->app_keys[i]);
        if (r->st != DAPR_OK) {
            json_object_set_new(item, "error", json_string(status_text(r->st, r->msg)));
        } else if (r->found) {
            json_t *data = json_loadb((const char *)r->value, r->value_len,
                                      JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            /* Values written outside the HTTP API may not be JSON. */
            if (!data)
                data = json_stringn(r->value ? (const char *)r->value : "", r->value_len);
            json_object_set_new(item, "data", data ? data : json_null());
            if (r->etag)
                json_object_set_new(item, "etag", json_string(r->etag));
            if (r->meta.n) {
                json_t *m = json_object();
                for (size_t k = 0; k < r->meta.n; k++)
                    json_object_set_new(m, r->meta.items[k].name, json_string(r->meta.items[k].value));
                json_object_set_new(item, "metadata", m);
            }
        }
        json_array_append_new(arr, item);
    }
    api_reply_json(c, 200, arr);
}

static void bulk_whole_finish(void *arg)
{
    struct bulk_op *op = arg;
    op_done(op->comp);
    bulk_reply(op);
    bulk_op_free(op);
}

static void bulk_whole_done(void *ctx, const dapr_state_bulk_get_result *res)
{
    struct bulk_op *op = ctx;
    op->st = res->status;
    op->msg = res->message ? xstrdup(res->message) : NULL;
    if (res->status == DAPR_OK) {
        /* Match items to keys by stored key (plugins return request order,
         * but matching by name is robust to a plugin that does not). */
        for (size_t i = 0; i < res->n_items; i++) {
            const dapr_state_bulk_item *it = &res->items[i];
            for (size_t k = 0; k < op->n; k++) {
                size_t idx = (i + k) % op->n;
                if (!op->results[idx].done && it->key && strcmp(it->key, op->keys[idx]) == 0) {
                    copy_bulk_result(&op->results[idx], it->status, it->message, it->found, it->value,
                                     it->etag, it->metadata);
                    break;
                }
            }
        }
    }
    loop_post(bulk_whole_finish, op);
}

static void bulk_whole_run(void *arg)
{
    struct bulk_op *op = arg;
    dapr_state_bulk_get_req req = {.keys = (const char *const *)op->keys, .n_keys = op->n,
                                   .metadata = kv_list_view(&op->meta),
                                   .parallelism = op->parallelism};
    vtable_of(op->comp)->bulk_get(op->comp->instance, &req, bulk_whole_done, op);
}

static void bulk_single_run(void *arg);

/* Start gets until `parallelism` are running; answer when all are done. */
static void bulk_pump(struct bulk_op *op)
{
    while (op->next < op->n && op->running < op->parallelism) {
        struct bulk_single *s = xcalloc(1, sizeof *s);
        s->op = op;
        s->index = op->next++;
        s->req = (dapr_state_get_req){.key = op->keys[s->index], .metadata = kv_list_view(&op->meta)};
        op->running++;
        atomic_fetch_add(&op->comp->inflight, 1);
        if (component_dispatch(op->comp, bulk_single_run, s) != 0) {
            atomic_fetch_sub(&op->comp->inflight, 1);
            copy_bulk_result(&op->results[s->index], DAPR_ERR_UNAVAILABLE,
                             "too many operations in flight; try again later", 0, (dapr_bytes){0}, NULL,
                             (dapr_kvs){0});
            op->running--;
            op->completed++;
            free(s);
        }
    }
    if (op->completed == op->n) {
        bulk_reply(op);
        bulk_op_free(op);
    }
}

static void bulk_single_finish(void *arg)
{
    struct bulk_single *s = arg;
    struct bulk_op *op = s->op;
    op_done(op->comp);
    op->running--;
    op->completed++;
    free(s);
    bulk_pump(op);
}

static void bulk_single_done(void *ctx, const dapr_state_get_result *res)
{
    struct bulk_single *s = ctx;
    copy_bulk_result(&s->op->results[s->index], res->status, res->message, res->found, res->value,
                     res->etag, res->metadata);
    loop_post(bulk_single_finish, s);
}

static void bulk_single_run(void *arg)
{
    struct bulk_single *s = arg;
    vtable_of(s->op->comp)->get(s->op->comp->instance, &s->req, bulk_single_done, s);
}

void api_state_bulk_get(api_call *c, const char *store)
{
    component *comp = lookup_store(c, store, 1);
    if (!comp)
        return;
    json_t *body = parse_body(c, 0);
    if (!body)
        return;
    json_t *keys = member(body, "keys");
    json_t *par = member(body, "parallelism");
    if ((keys && !json_is_array(keys) && !json_is_null(keys)) || (par && !json_is_integer(par) && !json_is_null(par))) {
        json_decref(body);
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "\"keys\" must be an array of strings and \"parallelism\" an integer");
        return;
    }
    size_t n = json_array_size(keys);
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get(keys, i);
        if (!json_is_string(k) || strlen(json_string_value(k)) != json_string_length(k)) {
            json_decref(body);
            api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "\"keys\" must be an array of strings");
            return;
        }
        if (check_key(c, comp, json_string_value(k)) != 0) {
            json_decref(body);
            return;
        }
    }
    struct bulk_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->comp = comp;
    char err[256];
    if (parse_metadata_object(member(body, "metadata"), &op->meta, err, sizeof err) != 0) {
        json_decref(body);
        bulk_op_free(op);
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "%s", err);
        return;
    }
    merge_request_metadata(c, &op->meta);
    json_int_t p = par ? json_integer_value(par) : 0;
    op->parallelism = p > 0 ? (uint32_t)(p > 1000 ? 1000 : p) : DEFAULT_BULK_PARALLELISM;
    if (n == 0) {
        json_decref(body);
        bulk_op_free(op);
        api_reply_json(c, 200, json_array());
        return;
    }
    op->n = n;
    op->app_keys = xcalloc(n, sizeof *op->app_keys);
    op->keys = xcalloc(n, sizeof *op->keys);
    op->results = xcalloc(n, sizeof *op->results);
    for (size_t i = 0; i < n; i++) {
        op->app_keys[i] = xstrdup(json_string_value(json_array_get(keys, i)));
        op->keys[i] = stored_key(comp, op->app_keys[i]);
    }
    json_decref(body);
    if (VT_HAS(vtable_of(comp), bulk_get)) {
        op->use_bulk = 1;
        if (dispatch(c, comp, bulk_whole_run, op, "ERR_STATE_BULK_GET") != 0)
            bulk_op_free(op);
        return;
    }
    bulk_pump(op);
}

/* ---- POST /v1.0/state/{store}/transaction ------------------------------------ */

struct txn_op {
    struct status_head head; /* first: status_done casts to it */
    api_call *call;
    component *comp;
    struct set_item *items;   /* one per operation (delete uses key/etag/meta) */
    dapr_state_op *ops;
    size_t n;
    kv_list meta;
};

static void txn_op_free(struct txn_op *op)
{
    set_items_free(op->items, op->n);
    free(op->ops);
    kv_list_free(&op->meta);
    free(op->head.msg);
    free(op);
}

static void txn_fail(void *arg, const char *err)
{
    struct txn_op *op = arg;
    api_reply_error(op->call, 500, "ERR_STATE_TRANSACTION", "error while executing state transaction: %s", err);
}

static void txn_free_cb(void *arg)
{
    txn_op_free(arg);
}

static const resil_comp_ops txn_res_ops = {NULL, txn_fail, txn_free_cb};

static void txn_finish(void *arg)
{
    struct txn_op *op = arg;
    /* A transaction is atomic: one that failed can be run again whole. */
    if (resil_component_done(&op->head.res, op->head.st != DAPR_OK, permanent_status(op->head.st)))
        return;
    op_done(op->comp);
    metrics_component_op(METRICS_STATE, op->comp->name, METRICS_OP_TRANSACTION, op->head.st == DAPR_OK,
                         metrics_elapsed_ms(&op->call->started, NULL));
    if (op->head.st != DAPR_OK)
        api_reply_error(op->call, 500, "ERR_STATE_TRANSACTION", "error while executing state transaction: %s",
                        status_text(op->head.st, op->head.msg));
    else
        api_reply_empty(op->call, 204);
    txn_op_free(op);
}

static void txn_run(void *arg)
{
    struct txn_op *op = arg;
    dapr_state_txn_req req = {.ops = op->ops, .n_ops = op->n, .metadata = kv_list_view(&op->meta)};
    vtable_of(op->comp)->transact(op->comp->instance, &req, status_done, op);
}

void api_state_transaction(api_call *c, const char *store)
{
    component *comp = lookup_store(c, store, 1);
    if (!comp)
        return;
    const dapr_state_vtable *vt = vtable_of(comp);
    if (!(comp->def->features & DAPR_STATE_TRANSACTIONAL) || !VT_HAS(vt, transact)) {
        api_reply_error_details(
            c, 500, "ERR_STATE_STORE_NOT_SUPPORTED",
            json_pack("[o,o]", error_info("DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED", json_pack("{s:s}", "appID", rt.app_id)),
                      help_link("Check the list of state stores and the features they support",
                                "https://docs.dapr.io/reference/components-reference/supported-state-stores/")),
            "state store %s doesn't support transactions", store);
        return;
    }
    json_t *body = parse_body(c, 0);
    if (!body)
        return;
    json_t *ops = member(body, "operations");
    if (ops && !json_is_array(ops) && !json_is_null(ops)) {
        json_decref(body);
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "\"operations\" must be an array");
        return;
    }
    size_t n = json_array_size(ops);
    if (n == 0) {
        json_decref(body);
        api_reply_empty(c, 204);
        return;
    }
    struct txn_op *op = xcalloc(1, sizeof *op);
    op->head.finish = txn_finish;
    op->call = c;
    op->comp = comp;
    op->n = n;
    op->items = xcalloc(n, sizeof *op->items);
    op->ops = xcalloc(n, sizeof *op->ops);
    char err[256];
    if (parse_metadata_object(member(body, "metadata"), &op->meta, err, sizeof err) != 0) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "%s", err);
        goto fail;
    }
    merge_request_metadata(c, &op->meta);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(ops, i);
        json_t *kind = json_is_object(o) ? member(o, "operation") : NULL;
        json_t *req = json_is_object(o) ? member(o, "request") : NULL;
        if (!json_is_object(o) || (kind && !json_is_string(kind))) {
            api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "each operation must be an object with a string \"operation\"");
            goto fail;
        }
        const char *k = kind ? json_string_value(kind) : "";
        int is_upsert = strcmp(k, "upsert") == 0, is_delete = strcmp(k, "delete") == 0;
        if (!is_upsert && !is_delete) {
            api_reply_error(c, 400, "ERR_NOT_SUPPORTED_STATE_OPERATION", "operation type %s not supported", k);
            goto fail;
        }
        if (!json_is_object(req)) {
            api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "operation %zu has no \"request\" object", i);
            goto fail;
        }
        dapr_state_set_req sr;
        if (parse_set_item(c, comp, req, &op->items[i], &sr, "ERR_STATE_TRANSACTION") != 0)
            goto fail;
        if (is_upsert) {
            op->ops[i].kind = DAPR_STATE_OP_UPSERT;
            op->ops[i].set = sr;
        } else {
            op->ops[i].kind = DAPR_STATE_OP_DELETE;
            op->ops[i].del = (dapr_state_delete_req){.key = sr.key, .etag = sr.etag,
                                                     .concurrency = sr.concurrency,
                                                     .consistency = sr.consistency,
                                                     .metadata = sr.metadata};
        }
    }
    if (vt->size >= offsetof(dapr_state_vtable, max_transaction_ops) + sizeof vt->max_transaction_ops &&
        vt->max_transaction_ops && n > vt->max_transaction_ops) {
        char cur[32], max[32];
        snprintf(cur, sizeof cur, "%zu", n);
        snprintf(max, sizeof max, "%u", vt->max_transaction_ops);
        api_reply_error_details(
            c, 400, "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS",
            json_pack("[o]", error_info("DAPR_STATE_TOO_MANY_TRANSACTIONS",
                                        json_pack("{s:s, s:s}", "currentOpsTransaction", cur,
                                                  "maxOpsPerTransaction", max))),
            "the transaction contains %zu operations, which is more than what the state store supports: %u",
            n, vt->max_transaction_ops);
        goto fail;
    }
    json_decref(body);
    if (dispatch_res(c, comp, txn_run, op, "ERR_STATE_TRANSACTION", &txn_res_ops, &op->head.res) != 0)
        txn_op_free(op);
    return;
fail:
    json_decref(body);
    txn_op_free(op);
}

/* ---- POST /v1.0-alpha1/state/{store}/query ------------------------------------- */

struct query_op {
    api_call *call;
    component *comp;
    char *query;
    size_t query_len;
    kv_list meta;
    dapr_status st;
    char *msg;
    json_t *response;     /* built in the completion (jansson is thread-safe per object) */
};

static void query_op_free(struct query_op *op)
{
    free(op->query);
    kv_list_free(&op->meta);
    free(op->msg);
    json_decref(op->response);
    free(op);
}

static void query_finish(void *arg)
{
    struct query_op *op = arg;
    op_done(op->comp);
    metrics_component_op(METRICS_STATE, op->comp->name, METRICS_OP_QUERY, op->st == DAPR_OK,
                         metrics_elapsed_ms(&op->call->started, NULL));
    if (op->st != DAPR_OK) {
        api_reply_error_details(op->call, 500, "ERR_STATE_QUERY",
                                json_pack("[o]", error_info("DAPR_STATE_QUERY_FAILED", NULL)),
                                "failed query in state store %s: %s", op->comp->name,
                                status_text(op->st, op->msg));
    } else if (json_array_size(json_object_get(op->response, "results")) == 0) {
        api_reply_empty(op->call, 204);
    } else {
        api_reply_json(op->call, 200, op->response);
        op->response = NULL;
    }
    query_op_free(op);
}

static void query_done(void *ctx, const dapr_state_query_result *res)
{
    struct query_op *op = ctx;
    op->st = res->status;
    op->msg = res->message ? xstrdup(res->message) : NULL;
    if (res->status == DAPR_OK) {
        json_t *results = json_array();
        for (size_t i = 0; i < res->n_items; i++) {
            const dapr_state_query_item *it = &res->items[i];
            json_t *item = json_object();
            json_object_set_new(item, "key", json_string(original_key(op->comp, it->key ? it->key : "")));
            json_t *data = json_loadb((const char *)it->data.ptr, it->data.len,
                                      JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            if (!data)
                data = json_stringn(it->data.ptr ? (const char *)it->data.ptr : "", it->data.len);
            json_object_set_new(item, "data", data ? data : json_null());
            if (it->etag)
                json_object_set_new(item, "etag", json_string(it->etag));
            if (it->error)
                json_object_set_new(item, "error", json_string(it->error));
            json_array_append_new(results, item);
        }
        op->response = json_pack("{s:o}", "results", results);
        if (res->token && *res->token)
            json_object_set_new(op->response, "token", json_string(res->token));
        if (res->metadata.n) {
            json_t *m = json_object();
            for (size_t i = 0; i < res->metadata.n; i++)
                json_object_set_new(m, res->metadata.items[i].name, json_string(res->metadata.items[i].value));
            json_object_set_new(op->response, "metadata", m);
        }
    }
    loop_post(query_finish, op);
}

static void query_run(void *arg)
{
    struct query_op *op = arg;
    dapr_state_query_req req = {.query_json = {(const uint8_t *)op->query, op->query_len},
                                .metadata = kv_list_view(&op->meta),
                                .key_prefix = op->comp->key_prefix};
    vtable_of(op->comp)->query(op->comp->instance, &req, query_done, op);
}

void api_state_query(api_call *c, const char *store)
{
    component *comp = lookup_store(c, store, 0);
    if (!comp)
        return;
    if (!(comp->def->features & DAPR_STATE_QUERY) || !VT_HAS(vtable_of(comp), query)) {
        api_reply_error_details(c, 500, "ERR_STATE_STORE_NOT_SUPPORTED",
                                json_pack("[o]", error_info("DAPR_STATE_QUERYING_NOT_SUPPORTED", NULL)),
                                "state store does not support querying");
        return;
    }
    size_t len;
    const unsigned char *body = api_body(c, &len);
    json_error_t jerr;
    json_t *q = json_loadb((const char *)body, len, 0, &jerr);
    if (!q || !json_is_object(q)) {
        json_decref(q);
        api_reply_error_details(c, 500, "ERR_STATE_QUERY",
                                json_pack("[o]", error_info("DAPR_STATE_QUERY_FAILED", NULL)),
                                "failed to parse the query: %s", q ? "not a JSON object" : jerr.text);
        return;
    }
    json_decref(q);
    struct query_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->comp = comp;
    op->query = xstrndup((const char *)body, len);
    op->query_len = len;
    merge_request_metadata(c, &op->meta);
    if (dispatch(c, comp, query_run, op, "ERR_STATE_QUERY") != 0)
        query_op_free(op);
}
