/*
 * tracing.c - spans, Dapr's sampler and the hooks into the API paths.
 *
 * The shape of a traced service invocation from app A to app B:
 *
 *   A's sidecar  SERVER  CallLocal/B/method    (the API call)
 *   A's sidecar  CLIENT  CallLocal/B/method    (the hop to B's sidecar)
 *   B's sidecar  SERVER  CallLocal/B/method    (the internal port)
 *   B's sidecar  CLIENT  POST /method          (the request to app B)
 *
 * and of a pub/sub message: the publish API call's SERVER span (its
 * context goes into the CloudEvent's traceparent), then on the
 * subscriber's sidecar a SERVER span "pubsub/{topic}" and the CLIENT span
 * of the delivery to the app.  Names and attributes follow Dapr's
 * pkg/diagnostics (dapr.api, dapr.protocol, dapr.status_code, db.*,
 * messaging.*, rpc.service, net.peer.name).
 *
 * Nothing here blocks: a finished sampled span is a pointer pushed onto
 * the exporter's bounded queue (trace_export.c).
 */
#include "config.h"
#include "tracing.h"
#include "trace_export.h"
#include "log.h"
#include "util.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define SCOPE "dapr.runtime.trace"
#define MAX_ATTRS 24
#define DEFAULT_RATE 0.0001 /* Dapr's default samplingRate */

struct trace_span {
    span_rec rec;            /* what is exported */
    int sampled;
    int flags;               /* trace-flags propagated to children */
    struct timespec mono;    /* start, for the duration */
    char *tracestate;
};

static struct {
    int enabled;             /* samplingRate not 0 */
    int exporting;           /* an exporter runs */
    uint64_t bound;          /* TraceIDRatioBased upper bound */
    int always;              /* rate >= 1 */
    trace_span *pending;     /* tracing_callback_span, for the next app call */
} T = {.enabled = 1, .bound = (uint64_t)(DEFAULT_RATE * 9223372036854775808.0)};

/* ---- set-up -------------------------------------------------------------- */

/* Split "http://host:port/path" (scheme optional) into its parts. */
static int split_url(const char *url, const char *default_path, char **host, int *port, char **path,
                     int *https)
{
    const char *p = url;
    *https = 0;
    if (strncasecmp(p, "http://", 7) == 0) {
        p += 7;
    } else if (strncasecmp(p, "https://", 8) == 0) {
        p += 8;
        *https = 1;
    }
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    char *hostport = xstrndup(p, hl);
    char *colon = strrchr(hostport, ':');
    int64_t prt = *https ? 443 : 80;
    if (colon && (!strchr(hostport, ']') || colon > strchr(hostport, ']'))) {
        if (parse_int64(colon + 1, &prt) != 0 || prt <= 0 || prt > 65535) {
            free(hostport);
            return -1;
        }
        *colon = '\0';
    }
    if (hostport[0] == '[') { /* [v6] */
        memmove(hostport, hostport + 1, strlen(hostport));
        char *rb = strchr(hostport, ']');
        if (rb) *rb = '\0';
    }
    if (!*hostport) {
        free(hostport);
        return -1;
    }
    *host = hostport;
    *port = (int)prt;
    *path = xstrdup(slash && slash[1] ? slash : default_path);
    return 0;
}

int tracing_init(const tracing_config *cfg)
{
    double rate = DEFAULT_RATE;
    if (cfg->sampling_rate && *cfg->sampling_rate) {
        char *end;
        double r = strtod(cfg->sampling_rate, &end);
        if (*end || end == cfg->sampling_rate)
            log_warn(SCOPE, "tracing.samplingRate '%s' is not a number: using Dapr's default %g",
                     cfg->sampling_rate, DEFAULT_RATE);
        else
            rate = r;
    }
    T.enabled = rate > 0;
    T.always = rate >= 1;
    T.bound = rate > 0 && rate < 1 ? (uint64_t)(rate * 9223372036854775808.0) : 0;

    export_config ec = {.service = cfg->app_id && *cfg->app_id ? cfg->app_id : "daprd",
                        .log_spans = cfg->stdout_exporter, .queue_max = cfg->queue_max ? cfg->queue_max : 2048};
    int https;
    if (cfg->zipkin_endpoint && *cfg->zipkin_endpoint) {
        if (split_url(cfg->zipkin_endpoint, "/api/v2/spans", &ec.zipkin_host, &ec.zipkin_port, &ec.zipkin_path,
                      &https) != 0) {
            log_error(SCOPE, "tracing.zipkin.endpointAddress '%s' is not a URL like http://host:9411/api/v2/spans",
                      cfg->zipkin_endpoint);
            return -1;
        }
        if (https) {
            log_error(SCOPE, "tracing.zipkin.endpointAddress '%s': https is not supported by this daprd "
                      "(send to an http endpoint, e.g. a local collector)", cfg->zipkin_endpoint);
            free(ec.zipkin_host);
            free(ec.zipkin_path);
            return -1;
        }
    }
    /* The Configuration's otel section, else OpenTelemetry's environment
     * variables (as Dapr reads them): OTEL_EXPORTER_OTLP_ENDPOINT (a base
     * URL: /v1/traces is appended), OTEL_EXPORTER_OTLP_PROTOCOL,
     * OTEL_EXPORTER_OTLP_INSECURE.  OTEL_EXPORTER_OTLP_PROTOCOL also picks
     * the body encoding: http/protobuf, else JSON. */
    const char *otel = cfg->otel_endpoint, *proto = cfg->otel_protocol;
    const char *env_proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL");
    int secure = cfg->otel_is_secure, from_env = 0;
    if ((!otel || !*otel) && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") && *getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        otel = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
        proto = env_proto && *env_proto ? env_proto : "http/protobuf"; /* OpenTelemetry's default */
        const char *insecure = getenv("OTEL_EXPORTER_OTLP_INSECURE");
        secure = !(insecure && parse_bool(insecure) == 1) && strncasecmp(otel, "http://", 7) != 0;
        from_env = 1;
    }
    if (otel && *otel) {
        const char *where = from_env ? "OTEL_EXPORTER_OTLP_ENDPOINT" : "tracing.otel.endpointAddress";
        if (!proto || !*proto)
            proto = "grpc"; /* Dapr's reading of an absent protocol */
        if (strcasecmp(proto, "http") != 0 && strcasecmp(proto, "http/json") != 0 &&
            strcasecmp(proto, "http/protobuf") != 0) {
            log_error(SCOPE, "%s: otel.protocol '%s' is not supported by this daprd: set protocol: http "
                      "(OTLP/HTTP to %s/v1/traces)", where, proto, otel);
            goto fail;
        }
        ec.otel_protobuf = strcasecmp(proto, "http/protobuf") == 0 ||
                           (env_proto && strcasecmp(env_proto, "http/protobuf") == 0);
        if (split_url(otel, "/v1/traces", &ec.otel_host, &ec.otel_port, &ec.otel_path, &https) != 0) {
            log_error(SCOPE, "%s '%s' is not host:port or a URL", where, otel);
            goto fail;
        }
        if (strncasecmp(otel, "http", 4) != 0 && !strchr(otel, ':')) {
            ec.otel_port = 4318; /* OTLP/HTTP's port */
        }
        size_t pl = strlen(ec.otel_path);
        if (from_env && (pl < 10 || strcmp(ec.otel_path + pl - 10, "/v1/traces") != 0)) {
            char *full = xasprintf("%s/v1/traces", strcmp(ec.otel_path, "/") == 0 ? "" : ec.otel_path);
            free(ec.otel_path);
            ec.otel_path = full;
        }
        if (https || secure) {
            log_error(SCOPE, "%s: TLS is not supported by this daprd (%s): send to a local collector over "
                      "plain http", where, from_env ? "use an http:// URL or OTEL_EXPORTER_OTLP_INSECURE=true"
                                                    : "set isSecure: false and an http endpoint");
            goto fail;
        }
    }
    if (!ec.zipkin_host && !ec.otel_host && !ec.log_spans)
        return 0; /* propagation only */
    if (trace_export_start(&ec) != 0) {
        log_error(SCOPE, "cannot start the trace exporter thread");
        goto fail;
    }
    T.exporting = 1;
    log_info(SCOPE, "tracing: samplingRate %g, exporting to%s%s%s", rate, ec.zipkin_host ? " zipkin" : "",
             ec.otel_host ? (ec.otel_protobuf ? " otlp/http (protobuf)" : " otlp/http (json)") : "",
             ec.log_spans ? " stdout" : "");
    return 0;
fail:
    free(ec.zipkin_host);
    free(ec.zipkin_path);
    free(ec.otel_host);
    free(ec.otel_path);
    return -1;
}

void tracing_shutdown(void)
{
    if (T.pending) {
        tracing_span_end(T.pending);
        T.pending = NULL;
    }
    if (!T.exporting)
        return;
    trace_export_stop(3000);
    T.exporting = 0;
    tracing_stats st;
    tracing_get_stats(&st);
    log_info(SCOPE, "tracing: %llu spans sampled, %llu exported, %llu failed, %llu dropped (queue full); "
             "queue high-water mark %zu of %zu",
             (unsigned long long)st.sampled, (unsigned long long)st.exported, (unsigned long long)st.failed,
             (unsigned long long)st.dropped, st.queue_high, st.queue_max);
}

void tracing_get_stats(tracing_stats *out)
{
    memset(out, 0, sizeof *out);
    trace_export_counts(&out->sampled, &out->dropped, &out->exported, &out->failed, &out->queue_high,
                        &out->queue_max);
}

/* ---- spans ---------------------------------------------------------------- */

static void random_hex(char *out, size_t n_bytes)
{
    unsigned char b[16];
    if (getrandom(b, n_bytes, 0) != (ssize_t)n_bytes) {
        /* Never blocks after boot; a fallback that still differs per call. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        for (size_t i = 0; i < n_bytes; i++)
            b[i] = (unsigned char)((ts.tv_nsec >> (i % 4 * 8)) ^ (i * 131) ^ rand());
    }
    b[n_bytes - 1] |= 1; /* never all zeros */
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n_bytes; i++) {
        out[2 * i] = hx[b[i] >> 4];
        out[2 * i + 1] = hx[b[i] & 15];
    }
    out[2 * n_bytes] = '\0';
}

/* OpenTelemetry's TraceIDRatioBased: the low 8 bytes of the trace id,
 * shifted right once, below rate * 2^63. */
static int ratio_sampled(const char *trace_id)
{
    if (T.always)
        return 1;
    uint64_t x = 0;
    for (int i = 16; i < 32; i++) {
        char ch = trace_id[i];
        x = (x << 4) | (uint64_t)(ch >= 'a' ? ch - 'a' + 10 : ch - '0');
    }
    return (x >> 1) < T.bound;
}

trace_span *tracing_span_start(const char *name, span_kind kind, const char *parent, const char *tracestate)
{
    trace_span *s = xcalloc(1, sizeof *s);
    int parent_sampled = 0;
    if (trace_parent_valid(parent)) {
        memcpy(s->rec.trace_id, parent + 3, 32);
        memcpy(s->rec.parent_id, parent + 36, 16);
        unsigned flags = (unsigned)strtoul(parent + 53, NULL, 16);
        parent_sampled = flags & 1;
    } else {
        random_hex(s->rec.trace_id, 16);
    }
    random_hex(s->rec.span_id, 8);
    /* Dapr's sampler: a sampled parent wins, otherwise the ratio. */
    s->sampled = T.enabled && (parent_sampled || ratio_sampled(s->rec.trace_id));
    /* With tracing off (samplingRate "0") the caller's decision travels
     * on untouched, as Dapr forwards the incoming context. */
    s->flags = T.enabled || !trace_parent_valid(parent) ? s->sampled : (int)strtoul(parent + 53, NULL, 16);    s->rec.kind = kind;
    s->rec.name = xstrdup(name ? name : "");
    if (tracestate && *tracestate && strlen(tracestate) <= 512)
        s->tracestate = xstrdup(tracestate);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s->rec.start_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    clock_gettime(CLOCK_MONOTONIC, &s->mono);
    return s;
}

void tracing_span_traceparent(const trace_span *s, char *out)
{
    snprintf(out, TRACEPARENT_LEN + 1, "00-%s-%s-%02x", s->rec.trace_id, s->rec.span_id, (unsigned)s->flags & 0xff);
}

const char *tracing_span_tracestate(const trace_span *s) { return s->tracestate; }
int tracing_span_sampled(const trace_span *s) { return s && s->sampled; }

void tracing_span_attr(trace_span *s, const char *key, const char *value)
{
    if (!s || !s->sampled || !value || !*value || s->rec.n_attrs >= MAX_ATTRS)
        return;
    for (size_t i = 0; i < s->rec.n_attrs; i++)
        if (strcmp(s->rec.attrs[2 * i], key) == 0)
            return; /* first one wins */
    /* Redact: a registered secret (a resolved secretKeyRef) becomes "***". */
    char buf[1024];
    size_t n = strlen(value);
    int truncated = n >= sizeof buf;
    snprintf(buf, sizeof buf, "%s", value);
    log_redact(buf, truncated);
    s->rec.attrs = xrealloc(s->rec.attrs, (s->rec.n_attrs + 1) * 2 * sizeof *s->rec.attrs);
    s->rec.attrs[2 * s->rec.n_attrs] = xstrdup(key);
    s->rec.attrs[2 * s->rec.n_attrs + 1] = xstrdup(buf);
    s->rec.n_attrs++;
}

void tracing_span_rename(trace_span *s, const char *name)
{
    if (!s)
        return;
    free(s->rec.name);
    s->rec.name = xstrdup(name);
}

/* Dapr's mapping of HTTP statuses to (gRPC-named) span statuses. */
void tracing_span_http_status(trace_span *s, int status)
{
    if (!s)
        return;
    const char *code = NULL;
    switch (status) {
    case 0: code = "Unavailable"; break;
    case 401: code = "Unauthenticated"; break;
    case 403: code = "PermissionDenied"; break;
    case 404: code = "NotFound"; break;
    case 429: code = "ResourceExhausted"; break;
    case 501: code = "Unimplemented"; break;
    case 503: code = "Unavailable"; break;
    case 504: code = "DeadlineExceeded"; break;
    default:
        if (status >= 100 && status < 300) code = NULL;
        else if (status < 400) code = "DeadlineExceeded";
        else if (status < 500) code = "InvalidArgument";
        else code = "Internal";
    }
    free(s->rec.status_msg);
    s->rec.status_msg = code ? xstrdup(code) : NULL;
    s->rec.status = code ? 2 : 1;
}

void span_rec_free(span_rec *r)
{
    free(r->name);
    free(r->status_msg);
    for (size_t i = 0; i < 2 * r->n_attrs; i++)
        free(r->attrs[i]);
    free(r->attrs);
}

void tracing_span_end(trace_span *s)
{
    if (!s)
        return;
    if (s->sampled && T.exporting) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t d = (int64_t)(now.tv_sec - s->mono.tv_sec) * 1000000000 + (now.tv_nsec - s->mono.tv_nsec);
        s->rec.end_ns = s->rec.start_ns + (d > 0 ? d : 1000);
        span_rec *r = xmalloc(sizeof *r);
        *r = s->rec; /* the record moves to the queue */
        if (trace_export_push(r) != 0) {
            span_rec_free(r); /* dropped (and counted) */
            free(r);
        }
        free(s->tracestate);
        free(s);
        return;
    }
    span_rec_free(&s->rec);
    free(s->tracestate);
    free(s);
}

/* ---- runtime callbacks and app calls ---------------------------------------- */

void tracing_callback_span(const char *name, const char *parent, const char *tracestate,
                           const char *const *attrs, char *out)
{
    if (T.pending) /* never adopted: end it rather than leak it */
        tracing_span_end(T.pending);
    trace_span *s = tracing_span_start(name, SPAN_KIND_SERVER, parent, tracestate);
    for (size_t i = 0; attrs && attrs[i] && attrs[i + 1]; i += 2)
        tracing_span_attr(s, attrs[i], attrs[i + 1]);
    tracing_span_traceparent(s, out);
    T.pending = s;
}

struct traced_call {
    trace_span *client;
    trace_span *server;      /* adopted callback span, or NULL */
    http_response_cb cb;
    void *arg;
};

static void traced_call_done(struct traced_call *t, int status)
{
    tracing_span_http_status(t->client, status);
    if (status) {
        char st[16];
        snprintf(st, sizeof st, "%d", status);
        tracing_span_attr(t->client, "http.response.status_code", st);
    }
    tracing_span_end(t->client);
    if (t->server) {
        tracing_span_http_status(t->server, status);
        tracing_span_end(t->server);
    }
}

static void traced_response(void *arg, const http_response *r)
{
    struct traced_call *t = arg;
    traced_call_done(t, r->status);
    t->cb(t->arg, r);
    free(t);
}

void *tracing_app_call_begin(enum evhttp_cmd_type method, const char *uri, struct evkeyvalq *headers,
                             http_response_cb *cb, void **arg)
{
    trace_span *server = T.pending;
    T.pending = NULL;
    const char *tp = evhttp_find_header(headers, "traceparent");
    if (server) {
        /* Adopt the callback span only for the request it was made for
         * (its traceparent in the headers): a caller that returned early
         * (breaker open, ...) must not hand it to an unrelated call. */
        char own[TRACEPARENT_LEN + 1];
        tracing_span_traceparent(server, own);
        if (!tp || strcmp(tp, own) != 0) {
            tracing_span_http_status(server, 503);
            tracing_span_end(server);
            server = NULL;
        }
    }
    if (!tp && !server)
        return NULL;
    char parent[TRACEPARENT_LEN + 1];
    if (server)
        tracing_span_traceparent(server, parent);
    else
        snprintf(parent, sizeof parent, "%s", trace_parent_valid(tp) ? tp : "");
    const char *mname = "POST";
    switch (method) {
    case EVHTTP_REQ_GET: mname = "GET"; break;
    case EVHTTP_REQ_PUT: mname = "PUT"; break;
    case EVHTTP_REQ_DELETE: mname = "DELETE"; break;
    case EVHTTP_REQ_PATCH: mname = "PATCH"; break;
    case EVHTTP_REQ_HEAD: mname = "HEAD"; break;
    case EVHTTP_REQ_OPTIONS: mname = "OPTIONS"; break;
    default: break;
    }
    char name[600];
    size_t n = strcspn(uri, "?#");
    snprintf(name, sizeof name, "%s %.*s", mname, (int)(n < 512 ? n : 512), uri);
    struct traced_call *t = xcalloc(1, sizeof *t);
    t->server = server;
    t->client = tracing_span_start(name, SPAN_KIND_CLIENT, parent,
                                   server ? tracing_span_tracestate(server) : evhttp_find_header(headers, "tracestate"));
    tracing_span_attr(t->client, "http.request.method", mname);
    tracing_span_attr(t->client, "url.path", name + strlen(mname) + 1);
    char next[TRACEPARENT_LEN + 1];
    tracing_span_traceparent(t->client, next);
    evhttp_remove_header(headers, "traceparent");
    evhttp_add_header(headers, "traceparent", next);
    t->cb = *cb;
    t->arg = *arg;
    *cb = traced_response;
    *arg = t;
    return t;
}

void tracing_app_call_cancel(void *handle)
{
    struct traced_call *t = handle;
    if (!t)
        return;
    traced_call_done(t, 429);
    free(t);
}
