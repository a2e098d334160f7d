/*
 * trace_export.c - the exporter thread: finished spans in, batches out.
 *
 * The loop thread only ever takes a mutex for a pointer push
 * (trace_export_push); when the queue is full the span is dropped and
 * counted, so a dead or slow collector costs requests nothing.  This
 * thread owns its own event_base and libevent HTTP client connections:
 * every 200 ms (or at shutdown) it takes up to BATCH spans off the queue,
 * turns them into one payload per exporter and POSTs it:
 *
 *   zipkin  Zipkin v2 JSON (a list of spans) to endpointAddress,
 *           e.g. http://localhost:9411/api/v2/spans
 *   otlp    OTLP/HTTP (ExportTraceServiceRequest) to /v1/traces, as
 *           JSON or, chosen by OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf,
 *           as protobuf (encoded here: a dozen fields need no library)
 *   stdout  one log line per span (scope dapr.runtime.trace.stdout)
 *
 * Each exporter has one request in flight and at most MAX_PENDING
 * payloads waiting behind it; past that a payload is dropped and its
 * spans counted as failed.  Memory is thus bounded by queue_max spans
 * plus MAX_PENDING payloads per exporter.
 */
#include "config.h"
#include "trace_export.h"
#include "json_out.h"
#include "log.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCOPE "dapr.runtime.trace"
#define BATCH 512
#define MAX_PENDING 4
#define TICK_MS 200
#define REQUEST_TIMEOUT_S 10

struct payload {
    char *body;
    size_t len;
    size_t spans;
};

struct exporter {
    const char *what;            /* "zipkin" or "otlp" */
    int protobuf;                /* otlp: protobuf body */
    char *host;
    int port;
    char *path;
    struct evhttp_connection *conn;
    int inflight;
    struct payload pending[MAX_PENDING];
    size_t n_pending;
    int64_t last_warn_ms;
};

static struct {
    pthread_mutex_t mu;
    span_rec **q;                /* ring of queue_max */
    size_t head, n, max, high;
    uint64_t queued, dropped, exported, failed;
    int running, stopping;
    int64_t deadline_ms;
    pthread_t thread;
    struct event_base *base;
    struct event *tick;
    const char *service;
    int log_spans;
    struct exporter ex[2];
    size_t n_ex;
} X = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- the queue (any thread) ------------------------------------------------- */

int trace_export_push(span_rec *s)
{
    int rc = -1;
    pthread_mutex_lock(&X.mu);
    if (X.running && !X.stopping && X.n < X.max) {
        X.q[(X.head + X.n) % X.max] = s;
        X.n++;
        if (X.n > X.high)
            X.high = X.n;
        X.queued++;
        rc = 0;
    } else if (X.running) {
        X.dropped++;
    }
    pthread_mutex_unlock(&X.mu);
    return rc;
}

void trace_export_counts(uint64_t *queued, uint64_t *dropped, uint64_t *exported, uint64_t *failed,
                         size_t *high, size_t *max)
{
    pthread_mutex_lock(&X.mu);
    *queued = X.queued;
    *dropped = X.dropped;
    *exported = X.exported;
    *failed = X.failed;
    *high = X.high;
    *max = X.max;
    pthread_mutex_unlock(&X.mu);
}

static size_t take(span_rec **out, size_t max)
{
    pthread_mutex_lock(&X.mu);
    size_t k = 0;
    while (k < max && X.n) {
        out[k++] = X.q[X.head];
        X.head = (X.head + 1) % X.max;
        X.n--;
    }
    pthread_mutex_unlock(&X.mu);
    return k;
}

static void count(uint64_t *which, size_t n)
{
    pthread_mutex_lock(&X.mu);
    *which += n;
    pthread_mutex_unlock(&X.mu);
}

/* ---- encodings ---------------------------------------------------------------- */

static const char *zipkin_kind(int kind)
{
    switch (kind) {
    case 2: return "SERVER";
    case 3: return "CLIENT";
    case 4: return "PRODUCER";
    case 5: return "CONSUMER";
    default: return NULL;
    }
}

/* A string value jansson accepts (attributes can quote request bytes). */
static json_t *jstr(const char *s)
{
    json_t *v = json_string(s ? s : "");
    return v ? v : json_string("(not valid UTF-8)");
}

static json_t *zipkin_span(const span_rec *s, const char *service)
{
    json_t *o = json_object();
    json_object_set_new(o, "traceId", json_string(s->trace_id));
    json_object_set_new(o, "id", json_string(s->span_id));
    if (s->parent_id[0])
        json_object_set_new(o, "parentId", json_string(s->parent_id));
    json_object_set_new(o, "name", jstr(s->name));
    if (zipkin_kind(s->kind))
        json_object_set_new(o, "kind", json_string(zipkin_kind(s->kind)));
    json_int_t dur = (json_int_t)((s->end_ns - s->start_ns) / 1000);
    json_object_set_new(o, "timestamp", json_integer((json_int_t)(s->start_ns / 1000)));
    json_object_set_new(o, "duration", json_integer(dur > 0 ? dur : 1));
    json_object_set_new(o, "localEndpoint", json_pack("{s:s}", "serviceName", service));
    json_t *tags = json_object();
    for (size_t i = 0; i < s->n_attrs; i++)
        json_object_set_new(tags, s->attrs[2 * i], jstr(s->attrs[2 * i + 1]));
    if (s->status == 2) {
        /* What OpenTelemetry's Zipkin exporter writes for an error status. */
        json_object_set_new(tags, "otel.status_code", json_string("ERROR"));
        json_object_set_new(tags, "error", jstr(s->status_msg ? s->status_msg : "error"));
    }
    json_object_set_new(o, "tags", tags);
    return o;
}

static json_t *otlp_attr(const char *k, const char *v)
{
    return json_pack("{s:s, s:{s:o}}", "key", k, "value", "stringValue", jstr(v));
}

static json_t *otlp_span(const span_rec *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "traceId", json_string(s->trace_id));
    json_object_set_new(o, "spanId", json_string(s->span_id));
    if (s->parent_id[0])
        json_object_set_new(o, "parentSpanId", json_string(s->parent_id));
    json_object_set_new(o, "name", jstr(s->name));
    json_object_set_new(o, "kind", json_integer(s->kind));
    /* 64-bit integers are strings in OTLP/JSON (proto3 JSON mapping). */
    char t[32];
    snprintf(t, sizeof t, "%lld", (long long)s->start_ns);
    json_object_set_new(o, "startTimeUnixNano", json_string(t));
    snprintf(t, sizeof t, "%lld", (long long)s->end_ns);
    json_object_set_new(o, "endTimeUnixNano", json_string(t));
    json_t *attrs = json_array();
    for (size_t i = 0; i < s->n_attrs; i++)
        json_array_append_new(attrs, otlp_attr(s->attrs[2 * i], s->attrs[2 * i + 1]));
    json_object_set_new(o, "attributes", attrs);
    json_t *st = json_object();
    if (s->status)
        json_object_set_new(st, "code", json_integer(s->status));
    if (s->status == 2 && s->status_msg)
        json_object_set_new(st, "message", jstr(s->status_msg));
    json_object_set_new(o, "status", st);
    return o;
}

/* ---- OTLP protobuf: just the fields we send, in field-number order ---- */

typedef struct pb {
    unsigned char *p;
    size_t len, cap;
} pb;

static void pb_put(pb *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void pb_varint(pb *b, uint64_t v)
{
    unsigned char x[10];
    size_t n = 0;
    do {
        x[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) x[n] |= 0x80;
        n++;
    } while (v);
    pb_put(b, x, n);
}

static void pb_tag(pb *b, unsigned field, unsigned wire) { pb_varint(b, (uint64_t)field << 3 | wire); }

static void pb_bytes(pb *b, unsigned field, const void *d, size_t n)
{
    pb_tag(b, field, 2);
    pb_varint(b, n);
    pb_put(b, d, n);
}

/* proto3: empty strings and zero numbers are not on the wire. */
static void pb_string(pb *b, unsigned field, const char *s)
{
    if (s && *s)
        pb_bytes(b, field, s, strlen(s));
}

static void pb_uint(pb *b, unsigned field, uint64_t v)
{
    if (v) {
        pb_tag(b, field, 0);
        pb_varint(b, v);
    }
}

static void pb_fixed64(pb *b, unsigned field, uint64_t v)
{
    unsigned char x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    pb_tag(b, field, 1);
    pb_put(b, x, 8);
}

/* Append child as submessage field (child is consumed). */
static void pb_message(pb *b, unsigned field, pb *child)
{
    pb_bytes(b, field, child->p ? child->p : (unsigned char *)"", child->len);
    free(child->p);
    *child = (pb){0};
}

static void pb_hex(pb *b, unsigned field, const char *hex)
{
    unsigned char raw[16];
    size_t n = strlen(hex) / 2;
    if (!n || n > sizeof raw)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned hi = (unsigned)(hex[2 * i] <= '9' ? hex[2 * i] - '0' : hex[2 * i] - 'a' + 10);
        unsigned lo = (unsigned)(hex[2 * i + 1] <= '9' ? hex[2 * i + 1] - '0' : hex[2 * i + 1] - 'a' + 10);
        raw[i] = (unsigned char)(hi << 4 | lo);
    }
    pb_bytes(b, field, raw, n);
}

/* KeyValue{key = 1, value = 2: AnyValue{string_value = 1}} */
static void pb_attr(pb *b, unsigned field, const char *k, const char *v)
{
    pb any = {0}, kv = {0};
    pb_string(&any, 1, v);
    pb_string(&kv, 1, k);
    pb_message(&kv, 2, &any);
    pb_message(b, field, &kv);
}

static char *otlp_protobuf(span_rec **spans, size_t n, size_t *len)
{
    pb scope_spans = {0}, scope = {0};
    pb_string(&scope, 1, "dapr");                        /* InstrumentationScope.name */
    pb_message(&scope_spans, 1, &scope);                 /* ScopeSpans.scope */
    for (size_t i = 0; i < n; i++) {
        const span_rec *s = spans[i];
        pb sp = {0};
        pb_hex(&sp, 1, s->trace_id);                     /* Span.trace_id */
        pb_hex(&sp, 2, s->span_id);                      /* span_id */
        if (s->parent_id[0])
            pb_hex(&sp, 4, s->parent_id);                /* parent_span_id */
        pb_string(&sp, 5, s->name);                      /* name */
        pb_uint(&sp, 6, (uint64_t)s->kind);              /* kind */
        pb_fixed64(&sp, 7, (uint64_t)s->start_ns);       /* start_time_unix_nano */
        pb_fixed64(&sp, 8, (uint64_t)s->end_ns);         /* end_time_unix_nano */
        for (size_t a = 0; a < s->n_attrs; a++)
            pb_attr(&sp, 9, s->attrs[2 * a], s->attrs[2 * a + 1]);
        if (s->status) {
            pb st = {0};
            if (s->status == 2)
                pb_string(&st, 2, s->status_msg);        /* Status.message */
            pb_uint(&st, 3, (uint64_t)s->status);        /* Status.code */
            pb_message(&sp, 15, &st);                    /* Span.status */
        }
        pb_message(&scope_spans, 2, &sp);                /* ScopeSpans.spans */
    }
    pb resource = {0}, rs = {0}, req = {0};
    pb_attr(&resource, 1, "service.name", X.service);   /* Resource.attributes */
    pb_message(&rs, 1, &resource);                       /* ResourceSpans.resource */
    pb_message(&rs, 2, &scope_spans);                    /* ResourceSpans.scope_spans */
    pb_message(&req, 1, &rs);                            /* ExportTraceServiceRequest.resource_spans */
    *len = req.len;
    return (char *)req.p;
}

static char *encode(const struct exporter *e, span_rec **spans, size_t n, size_t *len)
{
    json_t *doc;
    if (e->protobuf)
        return otlp_protobuf(spans, n, len);
    if (strcmp(e->what, "zipkin") == 0) {
        doc = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(doc, zipkin_span(spans[i], X.service));
    } else {
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(list, otlp_span(spans[i]));
        doc = json_pack("{s:[{s:{s:[o]}, s:[{s:{s:s}, s:o}]}]}", "resourceSpans", "resource", "attributes",
                        otlp_attr("service.name", X.service), "scopeSpans", "scope", "name", "dapr", "spans",
                        list);
    }
    char *text = json_to_text(doc, len, 0);
    json_decref(doc);
    return text;
}

/* ---- sending ----------------------------------------------------------------- */

static void send_next(struct exporter *e);

static void warn_limited(struct exporter *e, const char *detail)
{
    int64_t now = now_monotonic_ms();
    if (e->last_warn_ms && now - e->last_warn_ms < 30000)
        return;
    e->last_warn_ms = now;
    log_warn(SCOPE, "tracing: the %s collector at %s:%d%s %s (spans are dropped, requests are not slowed)",
             e->what, e->host, e->port, e->path, detail);
}

static void pop_pending(struct exporter *e)
{
    free(e->pending[0].body);
    memmove(&e->pending[0], &e->pending[1], (e->n_pending - 1) * sizeof e->pending[0]);
    e->n_pending--;
}

static void request_done(struct evhttp_request *req, void *arg)
{
    struct exporter *e = arg;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    size_t n = e->pending[0].spans;
    e->inflight = 0;
    if (code >= 200 && code < 300) {
        count(&X.exported, n);
    } else {
        count(&X.failed, n);
        char detail[96];
        if (code)
            snprintf(detail, sizeof detail, "refused spans: HTTP %d", code);
        else
            snprintf(detail, sizeof detail, "did not answer (refused or timed out)");
        warn_limited(e, detail);
    }
    pop_pending(e);
    send_next(e);
}

static void send_next(struct exporter *e)
{
    if (e->inflight || !e->n_pending)
        return;
    if (!e->conn) {
        e->conn = evhttp_connection_base_new(X.base, NULL, e->host, (unsigned short)e->port);
        if (!e->conn) {
            count(&X.failed, e->pending[0].spans);
            pop_pending(e);
            return;
        }
        evhttp_connection_set_timeout(e->conn, REQUEST_TIMEOUT_S);
        evhttp_connection_set_retries(e->conn, 0);
    }
    struct evhttp_request *req = evhttp_request_new(request_done, e);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char host[300];
    snprintf(host, sizeof host, "%s:%d", e->host, e->port);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Content-Type", e->protobuf ? "application/x-protobuf" : "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), e->pending[0].body, e->pending[0].len);
    e->inflight = 1;
    if (evhttp_make_request(e->conn, req, EVHTTP_REQ_POST, e->path) != 0) {
        /* libevent freed req; the connection is unusable: start over. */
        e->inflight = 0;
        count(&X.failed, e->pending[0].spans);
        pop_pending(e);
        evhttp_connection_free(e->conn);
        e->conn = NULL;
    }
}

static void log_span(const span_rec *s)
{
    json_t *o = zipkin_span(s, X.service);
    size_t len;
    char *text = json_to_text(o, &len, 0);
    json_decref(o);
    log_info(SCOPE ".stdout", "span %s", text);
    free(text);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    span_rec *batch[BATCH];
    size_t n;
    while ((n = take(batch, BATCH)) > 0) {
        for (size_t i = 0; i < X.n_ex; i++) {
            struct exporter *e = &X.ex[i];
            if (e->n_pending == MAX_PENDING) {
                count(&X.failed, n); /* the collector is behind: drop this batch */
                warn_limited(e, "is behind");
                continue;
            }
            struct payload *p = &e->pending[e->n_pending++];
            p->body = encode(e, batch, n, &p->len);
            p->spans = n;
        }
        for (size_t i = 0; i < n; i++) {
            if (X.log_spans)
                log_span(batch[i]);
            span_rec_free(batch[i]);
            free(batch[i]);
        }
        if (X.log_spans && !X.n_ex)
            count(&X.exported, n);
        if (n < BATCH)
            break;
    }
    int idle = 1;
    for (size_t i = 0; i < X.n_ex; i++) {
        send_next(&X.ex[i]);
        if (X.ex[i].inflight || X.ex[i].n_pending)
            idle = 0;
    }
    pthread_mutex_lock(&X.mu);
    int stopping = X.stopping, empty = X.n == 0;
    int64_t deadline = X.deadline_ms;
    pthread_mutex_unlock(&X.mu);
    if (stopping && ((idle && empty) || now_monotonic_ms() >= deadline))
        event_base_loopbreak(X.base);
}

static void *thread_main(void *unused)
{
    (void)unused;
    event_base_dispatch(X.base);
    /* Freeing a connection drops its requests without their callbacks. */
    for (size_t i = 0; i < X.n_ex; i++) {
        struct exporter *e = &X.ex[i];
        if (e->conn)
            evhttp_connection_free(e->conn);
        e->conn = NULL;
        size_t lost = 0;
        while (e->n_pending) {
            lost += e->pending[0].spans;
            pop_pending(e);
        }
        count(&X.failed, lost);
    }
    return NULL;
}

int trace_export_start(export_config *cfg)
{
    /* Fresh counters and flags (a second start after a stop). */
    X.head = X.n = X.high = 0;
    X.queued = X.dropped = X.exported = X.failed = 0;
    X.stopping = 0;
    X.n_ex = 0;
    X.service = cfg->service;
    X.log_spans = cfg->log_spans;
    X.max = cfg->queue_max;
    X.q = xcalloc(X.max, sizeof *X.q);
    if (cfg->zipkin_host)
        X.ex[X.n_ex++] = (struct exporter){.what = "zipkin", .host = cfg->zipkin_host, .port = cfg->zipkin_port,
                                           .path = cfg->zipkin_path};
    if (cfg->otel_host)
        X.ex[X.n_ex++] = (struct exporter){.what = "otlp", .host = cfg->otel_host, .port = cfg->otel_port,
                                           .path = cfg->otel_path, .protobuf = cfg->otel_protobuf};
    X.base = event_base_new();
    if (!X.base)
        return -1;
    X.tick = event_new(X.base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {.tv_sec = 0, .tv_usec = TICK_MS * 1000};
    event_add(X.tick, &tv);
    /* The thread must not take the process's signals (daprd waits for
     * them on the loop); the caller's mask is inherited, see daprd.c. */
    X.running = 1;
    if (pthread_create(&X.thread, NULL, thread_main, NULL) != 0) {
        X.running = 0;
        event_free(X.tick);
        event_base_free(X.base);
        X.base = NULL;
        return -1;
    }
    return 0;
}

void trace_export_stop(int64_t deadline_ms)
{
    if (!X.running)
        return;
    pthread_mutex_lock(&X.mu);
    X.stopping = 1;
    X.deadline_ms = now_monotonic_ms() + deadline_ms;
    pthread_mutex_unlock(&X.mu);
    pthread_join(X.thread, NULL);
    /* Spans pushed after the last tick. */
    span_rec *s;
    while (take(&s, 1) == 1) {
        count(&X.failed, 1);
        span_rec_free(s);
        free(s);
    }
    event_free(X.tick);
    event_base_free(X.base);
    X.base = NULL;
    X.tick = NULL;
    for (size_t i = 0; i < X.n_ex; i++) {
        free(X.ex[i].host);
        free(X.ex[i].path);
    }
    X.n_ex = 0;
    free(X.q);
    X.q = NULL;
    pthread_mutex_lock(&X.mu);
    X.running = 0;
    pthread_mutex_unlock(&X.mu);
}
