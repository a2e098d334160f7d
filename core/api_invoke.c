/*
 * api_invoke.c - service invocation (reference §4).
 *
 * Every request that matches no building-block route lands here, as in
 * Dapr.  The target app comes from the dapr-app-id header, the
 * /v1.0/invoke/{id}/method/... path, or Basic auth "dapr-app-id:{id}".
 * The own app id goes straight to the app channel; another id is resolved
 * by the name resolver and sent over HTTP/1.1 to that sidecar's internal
 * port, whose daprd forwards it to its app (api_invoke_internal).  The
 * app's status, headers and body come back unchanged.
 */
#include "config.h"
#include "api.h"
#include "app_channel.h"
#include "http_client.h"
#include "log.h"
#include "nameres.h"
#include "resiliency.h"
#include "runtime.h"
#include "trace.h"
#include "tracing.h"
#include "util.h"

#include <ctype.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SCOPE "dapr.runtime.invoke"
#define PEER_CONNS 64
#define PEER_QUEUE 1024
#define PEER_TIMEOUT_MS (300 * 1000)
#define MAX_PEERS 1024

/* Keep-alive pools to other sidecars, by "host:port". */
struct peer {
    char *address;
    http_pool *pool;
};
static struct peer *peers;
static size_t n_peers;
static const char *own_namespace = "";

void api_invoke_init(void)
{
    const char *ns = getenv("NAMESPACE");
    own_namespace = ns ? ns : "";
}

void api_invoke_free(void)
{
    for (size_t i = 0; i < n_peers; i++) {
        http_pool_free(peers[i].pool);
        free(peers[i].address);
    }
    free(peers);
    peers = NULL;
    n_peers = 0;
}

static http_pool *peer_pool(const char *address)
{
    for (size_t i = 0; i < n_peers; i++)
        if (strcmp(peers[i].address, address) == 0)
            return peers[i].pool;
    const char *colon = strrchr(address, ':');
    int64_t port;
    if (!colon || parse_int64(colon + 1, &port) != 0 || port <= 0 || port > 65535)
        return NULL;
    if (n_peers == MAX_PEERS) {
        /* Bounded: drop the oldest idle pool to make room. */
        for (size_t i = 0; i < n_peers; i++) {
            if (http_pool_active(peers[i].pool) == 0 && http_pool_waiting(peers[i].pool) == 0) {
                http_pool_free(peers[i].pool);
                free(peers[i].address);
                memmove(&peers[i], &peers[i + 1], (n_peers - i - 1) * sizeof *peers);
                n_peers--;
                break;
            }
        }
        if (n_peers == MAX_PEERS)
            return NULL;
    }
    char *host = xstrndup(address, (size_t)(colon - address));
    /* [v6]:port */
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    peers = xrealloc(peers, (n_peers + 1) * sizeof *peers);
    peers[n_peers].address = xstrdup(address);
    peers[n_peers].pool = http_pool_new(host, (int)port, 0, PEER_CONNS, PEER_QUEUE, PEER_TIMEOUT_MS, 0);
    free(host);
    return peers[n_peers++].pool;
}

/* ---- one invocation ----------------------------------------------------- */

struct invoke_op {
    api_call *call;
    char *app_id;          /* target app (without namespace) */
    char *target;          /* as the caller wrote it, for messages */
    char *ns;
    char *uri;             /* "/method?query" sent downstream */
    struct evkeyvalq headers;
    struct evbuffer *body;
    char traceparent[TRACEPARENT_LEN + 1];
    trace_span *span;      /* CLIENT span of the hop to another sidecar */
    resil_run *rs;         /* resiliency policy applied to the call, or NULL */
    char *peer_address;    /* remote target "host:port"; NULL = own app */
    int judge_status;      /* an app's 4xx/5xx answer counts as a failure */
};

static void op_free(struct invoke_op *op)
{
    free(op->app_id);
    free(op->target);
    free(op->ns);
    free(op->uri);
    evhttp_clear_headers(&op->headers);
    if (op->body)
        evbuffer_free(op->body);
    tracing_span_end(op->span);
    free(op->peer_address);
    free(op);
}

static void fail(struct invoke_op *op, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct invoke_op *op, int status, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (op->span)
        tracing_span_http_status(op->span, status);
    api_reply_error(op->call, status, "ERR_DIRECT_INVOKE", "failed to invoke, id: %s, err: %s", op->target,
                    detail);
    op->call = NULL;
    op_free(op);
}

/* Names listed in the request's Connection header are hop-by-hop too. */
static int listed_in_connection(const char *connection, const char *name)
{
    if (!connection)
        return 0;
    size_t n = strlen(name);
    for (const char *p = connection; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > p && t[-1] == ' ') t--;
        if ((size_t)(t - p) == n && strncasecmp(p, name, n) == 0)
            return 1;
        p = e;
    }
    return 0;
}

/* Copy the headers a proxy forwards (reference §4.2). */
static void copy_forwarded_headers(struct evkeyvalq *in, struct evkeyvalq *out, int drop_dapr_routing)
{
    const char *connection = evhttp_find_header(in, "Connection");
    for (struct evkeyval *h = in->tqh_first; h; h = h->next.tqe_next) {
        if (http_header_is_hop_by_hop(h->key) || listed_in_connection(connection, h->key) ||
            strcasecmp(h->key, "Content-Length") == 0 || strcasecmp(h->key, "Host") == 0 ||
            strcasecmp(h->key, "traceparent") == 0)
            continue;
        if (drop_dapr_routing &&
            (strcasecmp(h->key, "dapr-app-id") == 0 || strcasecmp(h->key, "dapr-caller-app-id") == 0 ||
             strcasecmp(h->key, "dapr-caller-namespace") == 0 || strcasecmp(h->key, "dapr-callee-app-id") == 0))
            continue;
        evhttp_add_header(out, h->key, h->value);
    }
}

static void relay_response(void *arg, const http_response *r)
{
    struct invoke_op *op = arg;
    if (op->rs) {
        int failed = r->status == 0 || (r->status >= 400 && op->judge_status);
        switch (resil_complete(op->rs, failed, r->status, 0)) {
        case RESIL_RETRY:
        case RESIL_IGNORE:
            return;
        case RESIL_LATE_FREE:
            op_free(op);
            return;
        default:
            op->rs = NULL;
        }
    }
    if (r->status == 0) {
        fail(op, 500, "%s", r->error ? r->error : "no response");
        return;
    }
    if (op->span)
        tracing_span_http_status(op->span, r->status);
    struct evkeyvalq *out = evhttp_request_get_output_headers(op->call->req);
    int has_trace = 0;
    for (struct evkeyval *h = r->headers->tqh_first; h; h = h->next.tqe_next) {
        if (http_header_is_hop_by_hop(h->key) || strcasecmp(h->key, "Content-Length") == 0 ||
            strcasecmp(h->key, "Date") == 0)
            continue;
        if (strcasecmp(h->key, "traceparent") == 0)
            has_trace = 1;
        evhttp_add_header(out, h->key, h->value);
    }
    if (!has_trace)
        evhttp_add_header(out, "traceparent", op->traceparent);
    api_reply_buffer(op->call, r->status, r->body);
    op->call = NULL;
    op_free(op);
}

static void send_to_app(struct invoke_op *op)
{
    if (!app_channel_enabled()) {
        fail(op, 500, "app channel is not initialized: daprd was started without --app-port");
        return;
    }
    if (!app_channel_healthy()) {
        fail(op, 500, "app is not in a healthy state");
        return;
    }
    if (app_channel_send(op->call->method, op->uri, &op->headers, op->body, relay_response, op) != 0) {
        api_reply_error(op->call, 429, "ERR_DIRECT_INVOKE",
                        "failed to invoke, id: %s, err: too many requests in flight to the app (--app-max-concurrency)",
                        op->target);
        op->call = NULL;
        op_free(op);
    }
}

/* ---- resiliency (targets.apps) -------------------------------------------- */

static void invoke_attempt_once(struct invoke_op *op);

static void invoke_attempt(void *arg)
{
    struct invoke_op *op = arg;
    const char *why = NULL;
    int status = 500;
    http_pool *pool = op->peer_address ? peer_pool(op->peer_address) : NULL;
    if (op->peer_address && !pool)
        why = "no connection pool for the peer";
    else if (!pool && !app_channel_enabled())
        why = "app channel is not initialized: daprd was started without --app-port";
    else if (!pool && !app_channel_healthy())
        why = "app is not in a healthy state";
    if (!why) {
        /* Each attempt sends its own copy of the body. */
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, evbuffer_pullup(op->body, -1), evbuffer_get_length(op->body));
        http_client_tag_next(op);
        int rc = pool ? http_pool_send(pool, op->call->method, op->uri, &op->headers, b, relay_response, op)
                      : app_channel_send(op->call->method, op->uri, &op->headers, b, relay_response, op);
        http_client_tag_next(NULL);
        evbuffer_free(b);
        if (rc == 0)
            return;
        status = 429;
        why = pool ? "too many requests in flight to the peer"
                   : "too many requests in flight to the app (--app-max-concurrency)";
    }
    /* Not sent: this attempt failed for good. */
    if (resil_complete(op->rs, 1, 0, 1) == RESIL_FINISH) {
        op->rs = NULL;
        fail(op, status, "%s", why);
    }
}

static int invoke_cancel(void *arg)
{
    struct invoke_op *op = arg;
    http_pool *pool = op->peer_address ? peer_pool(op->peer_address) : NULL;
    if (pool)
        http_pool_cancel(pool, op);
    else if (!op->peer_address)
        app_channel_cancel(op);
    return 1; /* answered inside the cancel, or it was not pending at all */
}

static void invoke_fail(void *arg, const char *err, int late_pending)
{
    (void)late_pending; /* HTTP attempts are always cancelled */
    struct invoke_op *op = arg;
    op->rs = NULL;
    fail(op, 500, "%s", err);
}

static const resil_hooks invoke_hooks = {invoke_attempt, invoke_cancel, invoke_fail};

/* Send through the policy of the target app: breaker, per-attempt
 * timeout, retries (Dapr's built-in ones between sidecars). */
static void send_resilient(struct invoke_op *op)
{
    resil_policy pol;
    if (!resiliency_app_policy(op->app_id, op->peer_address != NULL, &pol)) {
        if (op->peer_address)
            invoke_attempt_once(op);
        else
            send_to_app(op);
        return;
    }
    op->judge_status = pol.retry_is_user || pol.cb;
    /* Breakers per app and method, as Dapr's endpoint policies. */
    const char *q = strchr(op->uri, '?');
    char *method = xstrndup(op->uri + 1, q ? (size_t)(q - op->uri - 1) : strlen(op->uri + 1));
    op->rs = resil_run_new(&pol, method, &invoke_hooks, op);
    free(method);
    resil_run_go(op->rs);
}

static void resolved(void *arg, dapr_status st, const char *msg, const char *address)
{
    struct invoke_op *op = arg;
    if (st != DAPR_OK) {
        fail(op, 500, "failed to resolve address for '%s': %s", op->target, msg ? msg : "not found");
        return;
    }
    http_pool *pool = peer_pool(address);
    if (!pool) {
        fail(op, 500, "the name resolver returned an unusable address '%s'", address);
        return;
    }
    op->peer_address = xstrdup(address);
    send_resilient(op);
}

static void invoke_attempt_once(struct invoke_op *op)
{
    http_pool *pool = peer_pool(op->peer_address);
    const char *address = op->peer_address;
    if (!pool) {
        fail(op, 500, "the name resolver returned an unusable address '%s'", address);
        return;
    }
    if (http_pool_send(pool, op->call->method, op->uri, &op->headers, op->body, relay_response, op) != 0) {
        api_reply_error(op->call, 429, "ERR_DIRECT_INVOKE",
                        "failed to invoke, id: %s, err: too many requests in flight to %s", op->target, address);
        op->call = NULL;
        op_free(op);
    }
}

/* "." and ".." segments of the method are resolved, as Go's path.Clean. */
static char *clean_method(char **segs, size_t n)
{
    const char **keep = xcalloc(n ? n : 1, sizeof *keep);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(segs[i], ".") == 0)
            continue;
        if (strcmp(segs[i], "..") == 0) {
            if (k) k--;
            continue;
        }
        keep[k++] = segs[i];
    }
    size_t len = 2;
    for (size_t i = 0; i < k; i++)
        len += strlen(keep[i]) + 1;
    char *out = xmalloc(len);
    size_t pos = 0;
    for (size_t i = 0; i < k; i++)
        pos += (size_t)sprintf(out + pos, "%s%s", i ? "/" : "", keep[i]);
    out[pos] = '\0';
    free(keep);
    return out;
}

/* The app id from "Authorization: Basic base64(dapr-app-id:{id})". */
static char *app_id_from_basic_auth(api_call *c)
{
    const char *auth = api_header(c, "Authorization");
    if (!auth || strncasecmp(auth, "Basic ", 6) != 0)
        return NULL;
    const char *b64 = auth + 6;
    size_t n = strlen(b64);
    if (n == 0 || n > 1024 || n % 4)
        return NULL;
    unsigned char buf[800];
    int len = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n);
    if (len < 0)
        return NULL;
    while (len > 0 && n > 0 && b64[n - 1] == '=') { len--; n--; }
    buf[len] = '\0';
    if (strncmp((char *)buf, "dapr-app-id:", 12) != 0 || !buf[12])
        return NULL;
    return xstrdup((char *)buf + 12);
}

static int method_is_valid(char **decoded, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (const unsigned char *p = (const unsigned char *)decoded[i]; *p; p++)
            if (*p == '#' || *p == '?' || *p < 0x20 || *p == 0x7f)
                return 0;
    return 1;
}

void api_invoke_fallback(api_call *c)
{
    char *target = NULL;
    size_t first = 0; /* first segment of the method */
    const char *hdr = api_header(c, "dapr-app-id");
    if (hdr && *hdr) {
        target = xstrdup(hdr);
    } else if (c->n_seg >= 4 && strcmp(c->seg[0], "v1.0") == 0 && strcmp(c->seg[1], "invoke") == 0 &&
               strcmp(c->seg[3], "method") == 0) {
        target = xstrdup(c->seg[2]);
        first = 4;
    } else {
        target = app_id_from_basic_auth(c);
    }
    if (!target) {
        api_reply_error(c, 404, "ERR_DIRECT_INVOKE",
                        "failed getting app id either from the URL path or the header dapr-app-id");
        return;
    }
    struct invoke_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->target = target;
    TAILQ_INIT(&op->headers);
    if (c->nul_in_path || !method_is_valid(c->seg + first, c->n_seg - first)) {
        fail(op, 500, "invalid method name");
        return;
    }
    /* "app.namespace"; more than one dot is an error. */
    const char *dot = strchr(target, '.');
    if (dot && strchr(dot + 1, '.')) {
        fail(op, 500, "invalid app id '%s': at most one '.' (app.namespace)", target);
        return;
    }
    op->app_id = dot ? xstrndup(target, (size_t)(dot - target)) : xstrdup(target);
    op->ns = xstrdup(dot ? dot + 1 : own_namespace);
    if (!*op->app_id) {
        fail(op, 500, "empty app id");
        return;
    }
    char *method = clean_method(c->raw_seg + first, c->n_seg - first);
    op->uri = c->raw_query ? xasprintf("/%s?%s", method, c->raw_query) : xasprintf("/%s", method);
    free(method);

    struct evkeyvalq *in = evhttp_request_get_input_headers(c->req);
    copy_forwarded_headers(in, &op->headers, 1);
    int local = strcmp(op->app_id, rt.app_id) == 0 && strcmp(op->ns, own_namespace) == 0;
    evhttp_add_header(&op->headers, "dapr-caller-app-id", rt.app_id);
    evhttp_add_header(&op->headers, "dapr-caller-namespace", own_namespace);
    evhttp_add_header(&op->headers, "dapr-callee-app-id", op->app_id);
    /* Local: the app call is a child of this call's span (app_channel).
     * Remote: a CLIENT span for the hop to the other sidecar. */
    if (!local && c->span) {
        char name[600];
        const char *sl = strchr(op->uri + 1, '?');
        snprintf(name, sizeof name, "CallLocal/%s/%.*s", op->app_id,
                 (int)(sl ? (size_t)(sl - op->uri - 1) : strlen(op->uri + 1)), op->uri + 1);
        char parent[TRACEPARENT_LEN + 1];
        tracing_call_traceparent(c, parent);
        op->span = tracing_span_start(name, SPAN_KIND_CLIENT, parent, api_header(c, "tracestate"));
        tracing_span_attr(op->span, "rpc.service", "ServiceInvocation");
        tracing_span_attr(op->span, "net.peer.name", op->app_id);
        tracing_span_traceparent(op->span, op->traceparent);
    } else {
        tracing_call_traceparent(c, op->traceparent);
    }
    evhttp_add_header(&op->headers, "traceparent", op->traceparent);
    op->body = evbuffer_new();
    evbuffer_add_buffer(op->body, evhttp_request_get_input_buffer(c->req));

    if (local) {
        send_resilient(op);
        return;
    }
    /* Across sidecars, say who the original client was. */
    struct evhttp_connection *conn = evhttp_request_get_connection(c->req);
    char *peer = NULL;
    ev_uint16_t peer_port = 0;
    if (conn)
        evhttp_connection_get_peer(conn, &peer, &peer_port);
    const char *host = evhttp_find_header(in, "Host");
    if (peer) {
        evhttp_add_header(&op->headers, "X-Forwarded-For", peer);
        char fwd[512];
        snprintf(fwd, sizeof fwd, "for=%s;by=%s;host=%s", peer, rt.app_id, host ? host : "");
        evhttp_add_header(&op->headers, "Forwarded", fwd);
    }
    if (host)
        evhttp_add_header(&op->headers, "X-Forwarded-Host", host);
    nameres_resolve(op->app_id, op->ns, resolved, op);
}

void api_invoke_internal(api_call *c)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(c->req);
    const char *callee = evhttp_find_header(in, "dapr-callee-app-id");
    struct invoke_op *op = xcalloc(1, sizeof *op);
    op->call = c;
    op->target = xstrdup(callee ? callee : "");
    TAILQ_INIT(&op->headers);
    if (!callee || strcmp(callee, rt.app_id) != 0) {
        fail(op, 500, "this sidecar serves app '%s', not '%s'", rt.app_id, callee ? callee : "");
        return;
    }
    const char *t = evhttp_request_get_uri(c->req);
    op->uri = xstrdup(t && *t == '/' ? t : "/");
    copy_forwarded_headers(in, &op->headers, 0);
    tracing_call_traceparent(c, op->traceparent);
    evhttp_add_header(&op->headers, "traceparent", op->traceparent);
    op->body = evbuffer_new();
    evbuffer_add_buffer(op->body, evhttp_request_get_input_buffer(c->req));
    send_to_app(op);
}
