/*
 * tracing_api.c - the server spans of API calls (tracing.h): started when
 * a request arrives on the API or internal port, named and given Dapr's
 * attributes when it is answered (http_api.c's call_finished).  Kept apart
 * from tracing.c so that code using spans without the HTTP server (unit
 * tests, plugins' hosts) does not pull the server in.
 */
#include "config.h"
#include "tracing.h"
#include "http_api.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- API calls -------------------------------------------------------------- */

/* Dapr (isHealthzRequest): no span for health checks. */
static int is_health(const char *path)
{
    return strstr(path, "/healthz") != NULL;
}

void tracing_call_start(api_call *c)
{
    const char *target = evhttp_request_get_uri(c->req);
    char path[512];
    size_t n = strcspn(target, "?#");
    snprintf(path, sizeof path, "%.*s", (int)(n < sizeof path ? n : sizeof path - 1), target);
    if (is_health(path))
        return;
    const char *tp = api_header(c, "traceparent");
    const char *ts = api_header(c, "tracestate");
    c->span = tracing_span_start(path, SPAN_KIND_SERVER, tp, ts);
}

static const char *seg(api_call *c, size_t i) { return i < c->n_seg ? c->seg[i] : ""; }

/* The rest of the path from segment i on, '/'-joined. */
static void join_from(api_call *c, size_t i, char *out, size_t len)
{
    size_t pos = 0;
    out[0] = '\0';
    for (; i < c->n_seg && pos + 1 < len; i++) {
        int k = snprintf(out + pos, len - pos, "%s%s", pos ? "/" : "", c->seg[i]);
        pos = k > 0 && pos + (size_t)k < len ? pos + (size_t)k : len - 1;
    }
}

void tracing_call_end(api_call *c, int status)
{
    trace_span *s = c->span;
    if (!s)
        return;
    c->span = NULL;
    tracing_span_http_status(s, status);
    char buf[600], path[512];
    const char *target = evhttp_request_get_uri(c->req);
    size_t n = strcspn(target, "?#");
    snprintf(path, sizeof path, "%.*s", (int)(n < sizeof path ? n : sizeof path - 1), target);
    const char *method = api_method_name(c);
    if (tracing_span_sampled(s)) {
        char st[16];
        snprintf(st, sizeof st, "%d", status);
        snprintf(buf, sizeof buf, "%s %s", method, path);
        tracing_span_attr(s, "dapr.api", buf);
        tracing_span_attr(s, "dapr.protocol", "http");
        tracing_span_attr(s, "dapr.status_code", st);
        const char *api = seg(c, 1);
        const char *db_system = NULL, *db_name = NULL;
        const char *app_hdr = api_header(c, "dapr-app-id");
        if (c->internal || (app_hdr && *app_hdr) ||
            (strcmp(api, "invoke") == 0 && strcmp(seg(c, 3), "method") == 0)) {
            char m[512];
            const char *target_id;
            if (c->internal) {
                const char *callee = api_header(c, "dapr-callee-app-id");
                target_id = callee ? callee : "";
                join_from(c, 0, m, sizeof m);
            } else if (app_hdr && *app_hdr) {
                target_id = app_hdr;
                join_from(c, 0, m, sizeof m);
            } else {
                target_id = seg(c, 2);
                join_from(c, 4, m, sizeof m);
            }
            snprintf(buf, sizeof buf, "CallLocal/%s/%s", target_id, m);
            tracing_span_rename(s, buf);
            tracing_span_attr(s, "rpc.service", "ServiceInvocation");
            tracing_span_attr(s, "net.peer.name", target_id);
            tracing_span_attr(s, "dapr.invoke_method", m);
        } else if (strcmp(api, "state") == 0) {
            db_system = "state";
            db_name = seg(c, 2);
        } else if (strcmp(api, "secrets") == 0) {
            db_system = "secrets";
            db_name = seg(c, 2);
        } else if (strcmp(api, "bindings") == 0) {
            db_system = "bindings";
            db_name = seg(c, 2);
        } else if (strcmp(api, "publish") == 0) {
            size_t t = strcmp(seg(c, 2), "bulk") == 0 ? 4 : 3;
            char topic[256];
            join_from(c, t, topic, sizeof topic);
            tracing_span_attr(s, "messaging.system", "pubsub");
            tracing_span_attr(s, "messaging.destination", topic);
            tracing_span_attr(s, "messaging.destination_kind", "topic");
        }
        if (db_name && *db_name) {
            tracing_span_attr(s, "db.system", db_system);
            tracing_span_attr(s, "db.name", db_name);
            snprintf(buf, sizeof buf, "%s %s", method, path);
            tracing_span_attr(s, "db.statement", buf);
            tracing_span_attr(s, "db.connection_string", db_system);
        }
        /* Dapr adds the caller's dapr-* headers; never the API token. */
        struct evkeyvalq *in = evhttp_request_get_input_headers(c->req);
        for (struct evkeyval *h = in->tqh_first; h; h = h->next.tqe_next) {
            if (strncasecmp(h->key, "dapr-", 5) != 0 || strcasecmp(h->key, "dapr-api-token") == 0)
                continue;
            char key[128];
            size_t kl = strlen(h->key);
            if (kl >= sizeof key)
                continue;
            for (size_t i = 0; i <= kl; i++)
                key[i] = (h->key[i] >= 'A' && h->key[i] <= 'Z') ? (char)(h->key[i] + 32) : h->key[i];
            tracing_span_attr(s, key, h->value);
        }
    }
    /* Dapr answers with the call's trace context when the handler did not. */
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);
    if (!evhttp_find_header(out, "traceparent")) {
        char tp[TRACEPARENT_LEN + 1];
        tracing_span_traceparent(s, tp);
        evhttp_add_header(out, "traceparent", tp);
    }
    tracing_span_end(s);
}

void tracing_call_traceparent(api_call *c, char *out)
{
    if (c->span)
        tracing_span_traceparent(c->span, out);
    else
        trace_next_hop(api_header(c, "traceparent"), out);
}

