/*
 * http_api.c - the HTTP server, router and reply helpers.
 *
 * Routing follows real Dapr (reference §1.2): repeated slashes collapse, a
 * trailing slash is ignored, path parameters are decoded segment by
 * segment with query rules ('+' is a space, %2F is a slash inside one
 * segment), and anything that matches no route goes to service invocation.
 */
#include "config.h"
#include "http_api.h"
#include "json_out.h"
#include "api.h"
#include "api_logging.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "runtime.h"
#include "tracing.h"
#include "util.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#define SCOPE "dapr.runtime.http"

#define MAX_LISTENERS 16

static struct evhttp *http, *internal_http;
static struct evhttp_bound_socket *listeners[MAX_LISTENERS];
static struct evhttp *listener_owner[MAX_LISTENERS];
static size_t n_listeners;
static size_t inflight;

/* ---- replies ------------------------------------------------------------ */

static void call_free(api_call *c)
{
    for (size_t i = 0; i < c->n_seg; i++) {
        free(c->seg[i]);
        free(c->raw_seg[i]);
    }
    free(c->seg);
    free(c->raw_seg);
    free(c->raw_query);
    evhttp_clear_headers(&c->query);
    kv_list_free(&c->metadata);
    free(c);
    inflight--;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 413: return "Request Entity Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "";
    }
}

void api_add_header(api_call *c, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(c->req), name, value);
}

/*
 * Every answered call passes here once, just before its reply is sent
 * (the request is still valid): the one place where observers of the API
 * (metrics, tracing, API logging) see the call with its final status and
 * response size.
 */
static void call_finished(api_call *c, int status, size_t response_bytes)
{
    api_logging_call(c, status);
    tracing_call_end(c, status);
    metrics_http_server(c, status, evbuffer_get_length(evhttp_request_get_input_buffer(c->req)),
                        response_bytes);
}

void api_reply_raw(api_call *c, int status, const char *content_type, const void *data, size_t len)
{
    struct evbuffer *out = evbuffer_new();
    if (len)
        evbuffer_add(out, data, len);
    if (content_type)
        api_add_header(c, "Content-Type", content_type);
    call_finished(c, status, len);
    /* If the client went away, libevent frees the request here. */
    evhttp_send_reply(c->req, status, reason_phrase(status), out);
    evbuffer_free(out);
    call_free(c);
}

void api_reply_buffer(api_call *c, int status, struct evbuffer *body)
{
    call_finished(c, status, body ? evbuffer_get_length(body) : 0);
    evhttp_send_reply(c->req, status, reason_phrase(status), body);
    call_free(c);
}

void api_reply_empty(api_call *c, int status)
{
    api_reply_raw(c, status, NULL, NULL, 0);
}

void api_reply_json(api_call *c, int status, json_t *body)
{
    size_t len;
    char *text = json_to_text(body, &len, 0);
    json_decref(body);
    api_reply_raw(c, status, "application/json", text, len);
    free(text);
}

static void reply_error_v(api_call *c, int status, const char *code, json_t *details,
                          const char *fmt, va_list ap)
{
    char msg[2048];
    int full = vsnprintf(msg, sizeof msg, fmt, ap);
    /* A plugin's error text may quote its metadata: never a secret. */
    log_redact(msg, full < 0 || (size_t)full >= sizeof msg);
    /* Messages can quote request data, which may not be valid UTF-8. */
    json_t *m = json_string(msg);
    if (!m)
        m = json_string("(message not valid UTF-8)");
    json_t *body = json_object();
    json_object_set_new(body, "errorCode", json_string(code));
    json_object_set_new(body, "message", m);
    if (details)
        json_object_set_new(body, "details", details);
    log_debug(SCOPE, "%s %s -> %d %s: %s", api_method_name(c),
              evhttp_request_get_uri(c->req), status, code, msg);
    api_reply_json(c, status, body);
}

void api_reply_error(api_call *c, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(c, status, code, NULL, fmt, ap);
    va_end(ap);
}

void api_reply_error_details(api_call *c, int status, const char *code, json_t *details,
                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(c, status, code, details, fmt, ap);
    va_end(ap);
}

/* Detail objects are maps in Dapr, so their keys come out sorted; build
 * them in that order ("@type" sorts first). */
json_t *error_info(const char *reason, json_t *metadata)
{
    json_t *o = json_pack("{s:s, s:s}", "@type", "type.googleapis.com/google.rpc.ErrorInfo",
                          "domain", "dapr.io");
    if (metadata)
        json_object_set_new(o, "metadata", metadata);
    json_object_set_new(o, "reason", json_string(reason));
    return o;
}

json_t *resource_info(const char *type, const char *name)
{
    return json_pack("{s:s, s:s, s:s}", "@type", "type.googleapis.com/google.rpc.ResourceInfo",
                     "resource_name", name, "resource_type", type);
}

json_t *bad_request_field(const char *field, const char *description)
{
    json_t *o = json_pack("{s:s, s:[{s:s, s:s}]}", "@type", "type.googleapis.com/google.rpc.BadRequest",
                          "field_violations", "description", description, "field", field);
    if (!o) /* field came from the request and was not valid UTF-8 */
        o = json_pack("{s:s}", "@type", "type.googleapis.com/google.rpc.BadRequest");
    return o;
}

json_t *help_link(const char *description, const char *url)
{
    return json_pack("{s:s, s:[{s:s, s:s}]}", "@type", "type.googleapis.com/google.rpc.Help",
                     "links", "description", description, "url", url);
}

/* ---- request accessors ---------------------------------------------------- */

const char *api_header(api_call *c, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(c->req), name);
}

const char *api_query(api_call *c, const char *name)
{
    return evhttp_find_header(&c->query, name);
}

const unsigned char *api_body(api_call *c, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    *len = evbuffer_get_length(in);
    return *len ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
}

const char *api_method_name(api_call *c)
{
    switch (c->method) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    default: return "?";
    }
}

/* ---- route templates ------------------------------------------------- */

/* The names Dapr gives the parameters of each API path. */
static const char *param_name(const char *api, size_t i)
{
    static const struct { const char *api; const char *names[4]; } params[] = {
        {"state", {"storeName", "key"}},
        {"secrets", {"secretStoreName", "key"}},
        {"bindings", {"name"}},
        {"publish", {"pubsubname", "topic"}},
        {"invoke", {"id", NULL, "method"}},
        {"metadata", {"key"}},
    };
    for (size_t k = 0; k < sizeof params / sizeof params[0]; k++)
        if (strcmp(api, params[k].api) == 0)
            return i < 4 ? params[k].names[i] : NULL;
    return NULL;
}

/*
 * The path of c with its parameters replaced by their names, e.g.
 * "/v1.0/state/{storeName}/{key}": what API logging prints with
 * obfuscateURLs, and a label that cannot grow with the keys users choose.
 * Fixed words stay ("bulk", "transaction", "method", "outbound"); the rest
 * of an invoked method path becomes one "{method}".
 */
void api_path_template(api_call *c, char *out, size_t len)
{
    size_t pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < c->n_seg && pos + 1 < len; i++) {
        const char *s = c->seg[i];
        if (i >= 2 && c->n_seg >= 2) {
            const char *api = c->seg[1];
            const char *name = param_name(api, i - 2);
            int fixed = strcmp(s, "bulk") == 0 || strcmp(s, "transaction") == 0 ||
                        (strcmp(api, "invoke") == 0 && i == 3);
            if (strcmp(api, "publish") == 0 && strcmp(c->seg[2], "bulk") == 0 && i >= 3)
                name = param_name(api, i - 3);
            if (!fixed && name) {
                int n = snprintf(out + pos, len - pos, "/{%s}", name);
                pos = n > 0 && pos + (size_t)n < len ? pos + (size_t)n : len - 1;
                if (strcmp(api, "invoke") == 0 && i == 4)
                    break; /* the whole method path */
                continue;
            }
            if (!fixed && !name && i >= 2 && strcmp(api, "healthz") != 0) {
                int n = snprintf(out + pos, len - pos, "/{param}");
                pos = n > 0 && pos + (size_t)n < len ? pos + (size_t)n : len - 1;
                continue;
            }
        }
        int n = snprintf(out + pos, len - pos, "/%s", s);
        pos = n > 0 && pos + (size_t)n < len ? pos + (size_t)n : len - 1;
    }
    if (pos == 0)
        snprintf(out, len, "/");
}

/* ---- routing ---------------------------------------------------------- */

static int seg_is(api_call *c, size_t i, const char *s)
{
    return i < c->n_seg && strcmp(c->seg[i], s) == 0;
}

static int is_write(api_call *c)
{
    return c->method == EVHTTP_REQ_POST || c->method == EVHTTP_REQ_PUT;
}

/* Match the path against daprd's routes; returns 1 when handled. */
static int route(api_call *c)
{
    if (c->n_seg < 2)
        return 0;
    int v1 = seg_is(c, 0, "v1.0");
    int alpha1 = seg_is(c, 0, "v1.0-alpha1");
    enum evhttp_cmd_type m = c->method;

    if (v1 && seg_is(c, 1, "healthz") && m == EVHTTP_REQ_GET) {
        if (c->n_seg == 2) { api_healthz(c); return 1; }
        if (c->n_seg == 3 && seg_is(c, 2, "outbound")) { api_healthz_outbound(c); return 1; }
        return 0;
    }
    if (v1 && seg_is(c, 1, "metadata")) {
        if (c->n_seg == 2 && m == EVHTTP_REQ_GET) { api_metadata_get(c); return 1; }
        if (c->n_seg == 3 && m == EVHTTP_REQ_PUT) { api_metadata_put(c, c->seg[2]); return 1; }
        return 0;
    }
    if (v1 && seg_is(c, 1, "shutdown") && c->n_seg == 2 && m == EVHTTP_REQ_POST) {
        api_shutdown(c);
        return 1;
    }
    if (v1 && seg_is(c, 1, "secrets") && c->n_seg == 4 && m == EVHTTP_REQ_GET) {
        /* The fixed word wins: a secret named "bulk" is unreachable, as in Dapr. */
        if (seg_is(c, 3, "bulk"))
            api_secrets_bulk_get(c, c->seg[2]);
        else
            api_secrets_get(c, c->seg[2], c->seg[3]);
        return 1;
    }
    if (v1 && seg_is(c, 1, "bindings") && c->n_seg == 3 && is_write(c)) {
        api_bindings_invoke(c, c->seg[2]);
        return 1;
    }
    if (v1 && seg_is(c, 1, "state")) {
        if (c->n_seg == 3 && is_write(c)) { api_state_save(c, c->seg[2]); return 1; }
        if (c->n_seg == 4 && is_write(c) && seg_is(c, 3, "bulk")) { api_state_bulk_get(c, c->seg[2]); return 1; }
        if (c->n_seg == 4 && is_write(c) && seg_is(c, 3, "transaction")) {
            api_state_transaction(c, c->seg[2]);
            return 1;
        }
        if (c->n_seg == 4 && m == EVHTTP_REQ_GET) { api_state_get(c, c->seg[2], c->seg[3]); return 1; }
        if (c->n_seg == 4 && m == EVHTTP_REQ_DELETE) { api_state_delete(c, c->seg[2], c->seg[3]); return 1; }
        return 0;
    }
    if ((v1 || alpha1) && seg_is(c, 1, "publish") && is_write(c)) {
        /* The fixed word wins: /publish/bulk/... is bulk publish. */
        if (seg_is(c, 2, "bulk") && c->n_seg >= 5) {
            api_bulk_publish(c, 3);
            return 1;
        }
        if (v1 && c->n_seg >= 4) {
            api_publish(c, 2);
            return 1;
        }
        return 0;
    }
    if (alpha1 && seg_is(c, 1, "state") && c->n_seg == 4 && seg_is(c, 3, "query") && is_write(c)) {
        api_state_query(c, c->seg[2]);
        return 1;
    }
    return 0;
}

/* Split the raw path on '/', dropping empty segments, and decode each. */
static int split_path(api_call *c, const char *raw)
{
    const char *p = raw;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *enc = xstrndup(p, n);
        /* Go's query unescaping fails on a '%' without two hex digits;
         * evhttp would pass it through, so check first. */
        for (const char *e = strchr(enc, '%'); e; e = strchr(e + 1, '%')) {
            if (!isxdigit((unsigned char)e[1]) || !isxdigit((unsigned char)e[2])) {
                free(enc);
                return -1;
            }
        }
        size_t dlen = 0;
        char *dec = evhttp_uridecode(enc, 1, &dlen);
        if (!dec) {
            free(enc);
            return -1;
        }
        /* %00: no API takes a NUL in a name, but service invocation must
         * answer with its own error (ERR_DIRECT_INVOKE) as Dapr does, so
         * remember it rather than refusing the path here. */
        if (strlen(dec) != dlen)
            c->nul_in_path = 1;
        c->seg = xrealloc(c->seg, (c->n_seg + 1) * sizeof *c->seg);
        c->raw_seg = xrealloc(c->raw_seg, (c->n_seg + 1) * sizeof *c->raw_seg);
        c->raw_seg[c->n_seg] = enc;
        c->seg[c->n_seg++] = dec;
        p += n;
    }
    return 0;
}

static int is_health_path(api_call *c)
{
    return seg_is(c, 0, "v1.0") && seg_is(c, 1, "healthz") && c->method == EVHTTP_REQ_GET;
}

static void handle_request(struct evhttp_request *req, void *unused)
{
    (void)unused;
    api_call *c = xcalloc(1, sizeof *c);
    inflight++;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    c->req = req;
    c->method = evhttp_request_get_command(req);
    TAILQ_INIT(&c->query);
    tracing_call_start(c);

    /* Work on the raw request target: evhttp's URI parser would read
     * "//v1.0/state" as an authority, while Dapr collapses the slashes. */
    const char *target = evhttp_request_get_uri(req);
    if (strncmp(target, "http://", 7) == 0 || strncmp(target, "https://", 8) == 0) {
        const char *p = strchr(strstr(target, "//") + 2, '/');
        target = p ? p : "/";
    }
    size_t path_len = strcspn(target, "?#");
    char *raw_path = xstrndup(target, path_len);
    int bad_path = split_path(c, raw_path);
    free(raw_path);
    int is_invoke = seg_is(c, 0, "v1.0") && seg_is(c, 1, "invoke");
    if (bad_path || (c->nul_in_path && !is_invoke && !api_header(c, "dapr-app-id"))) {
        static const char msg[] = "invalid path\n";
        api_reply_raw(c, 400, "text/plain", msg, sizeof msg - 1);
        return;
    }
    if (target[path_len] == '?') {
        /* Kept raw for service invocation; a query evhttp cannot parse
         * just yields no parameters, as Go's lenient parser would. */
        c->raw_query = xstrndup(target + path_len + 1, strcspn(target + path_len + 1, "#"));
        if (evhttp_parse_query_str(c->raw_query, &c->query) != 0) {
            evhttp_clear_headers(&c->query);
            TAILQ_INIT(&c->query);
        }
    }
    for (struct evkeyval *kv = c->query.tqh_first; kv; kv = kv->next.tqe_next)
        if (strncmp(kv->key, "metadata.", 9) == 0 && kv->key[9])
            kv_list_add_first(&c->metadata, kv->key + 9, kv->value);

    /* API token: plain-text 401, health endpoints exempt (reference §1.4). */
    if (rt.api_token && !is_health_path(c)) {
        const char *tok = api_header(c, "dapr-api-token");
        if (!tok || strcmp(tok, rt.api_token) != 0) {
            static const char msg[] = "invalid api token\n";
            api_reply_raw(c, 401, "text/plain", msg, sizeof msg - 1);
            return;
        }
    }
    if (rt.api_token)
        evhttp_remove_header(evhttp_request_get_input_headers(req), "dapr-api-token");

    if (!route(c))
        api_invoke_fallback(c);
}

/* Requests on the internal port: always service invocation. */
static void handle_internal(struct evhttp_request *req, void *unused)
{
    (void)unused;
    api_call *c = xcalloc(1, sizeof *c);
    inflight++;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    c->req = req;
    c->method = evhttp_request_get_command(req);
    c->internal = 1;
    TAILQ_INIT(&c->query);
    tracing_call_start(c);
    const char *target = evhttp_request_get_uri(req);
    size_t path_len = strcspn(target, "?#");
    char *raw_path = xstrndup(target, path_len);
    int bad_path = split_path(c, raw_path);
    free(raw_path);
    if (bad_path || c->nul_in_path) {
        static const char msg[] = "invalid path\n";
        api_reply_raw(c, 400, "text/plain", msg, sizeof msg - 1);
        return;
    }
    if (target[path_len] == '?')
        c->raw_query = xstrndup(target + path_len + 1, strcspn(target + path_len + 1, "#"));
    api_invoke_internal(c);
}

static struct evhttp *new_server(void (*cb)(struct evhttp_request *, void *), size_t max_body)
{
    struct evhttp *h = evhttp_new(loop_base());
    if (!h)
        return NULL;
    evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                      EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                      EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(h, (ev_ssize_t)max_body);
    evhttp_set_max_headers_size(h, 64 * 1024);
    evhttp_set_timeout(h, 60);
    evhttp_set_gencb(h, cb, NULL);
    return h;
}

/* Bind every address of a comma list; returns the number bound or -1. */
static int bind_all(struct evhttp *h, const char *addresses, int port, int *bound_port, const char *what)
{
    char *list = xstrdup(addresses && *addresses ? addresses : "127.0.0.1");
    int bound = 0;
    for (char *save = NULL, *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        while (*a == ' ') a++;
        if (!*a) continue;
        struct evhttp_bound_socket *b = evhttp_bind_socket_with_handle(h, a, (ev_uint16_t)port);
        if (!b || n_listeners == MAX_LISTENERS) {
            log_error(SCOPE, "cannot listen on %s:%d for the %s", a, port, what);
            free(list);
            return -1;
        }
        listener_owner[n_listeners] = h;
        listeners[n_listeners++] = b;
        if (port == 0) {
            /* The first bind picked a free port: use it for the others. */
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            if (getsockname(evhttp_bound_socket_get_fd(b), (struct sockaddr *)&ss, &len) == 0)
                port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                      : ((struct sockaddr_in *)&ss)->sin_port);
        }
        log_info(SCOPE, "%s is running on %s:%d", what, a, port);
        bound++;
    }
    free(list);
    if (bound_port)
        *bound_port = port;
    return bound ? bound : -1;
}

int http_api_start_internal(const char *addresses, int port, size_t max_body, int *bound_port)
{
    internal_http = new_server(handle_internal, max_body);
    if (!internal_http)
        return -1;
    return bind_all(internal_http, addresses, port, bound_port, "internal (sidecar-to-sidecar) HTTP server") < 0 ? -1 : 0;
}

int http_api_start(const char *addresses, int port, size_t max_body)
{
    http = new_server(handle_request, max_body);
    if (!http)
        return -1;
    return bind_all(http, addresses, port, NULL, "HTTP server") < 0 ? -1 : 0;
}

void http_api_stop_accepting(void)
{
    for (size_t i = 0; i < n_listeners; i++)
        evhttp_del_accept_socket(listener_owner[i], listeners[i]);
    n_listeners = 0;
}

size_t http_api_inflight(void) { return inflight; }

void http_api_free(void)
{
    if (http)
        evhttp_free(http);
    if (internal_http)
        evhttp_free(internal_http);
    http = internal_http = NULL;
}
