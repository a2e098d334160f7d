/*
 * tracing.h - distributed tracing as Dapr does it: spans, sampling and the
 * hooks the API, invocation, pub/sub and bindings code calls.
 *
 * A span exists for every traced step whether or not it is sampled: its
 * ids are what travels in traceparent headers and CloudEvents, so the
 * trace a collector sees has exactly the parent links the headers showed.
 * Only sampled spans are exported, by the exporter thread
 * (trace_export.c), through a bounded queue: when it is full, spans are
 * dropped and counted, and requests never wait for a collector.
 *
 * Sampling is Dapr's: a parent whose traceparent has the sampled flag is
 * always followed; otherwise the trace id decides against samplingRate
 * (OpenTelemetry's TraceIDRatioBased, so every sidecar of one trace
 * decides alike).  samplingRate "0" turns tracing off: nothing is
 * exported whatever the parent says.
 *
 * Everything here runs on the loop thread, except tracing_shutdown().
 */
#ifndef DAPRD_TRACING_H
#define DAPRD_TRACING_H

#include <stddef.h>
#include <stdint.h>
#include "http_client.h"
#include "trace.h"

struct api_call;
struct evkeyvalq;
typedef struct trace_span trace_span;

/* OTLP's SpanKind numbers (Zipkin's names are derived from them). */
typedef enum span_kind {
    SPAN_KIND_INTERNAL = 1,
    SPAN_KIND_SERVER = 2,
    SPAN_KIND_CLIENT = 3,
    SPAN_KIND_PRODUCER = 4,
    SPAN_KIND_CONSUMER = 5
} span_kind;

/* Configuration spec.tracing (strings as in the manifest; NULL = absent). */
typedef struct tracing_config {
    const char *app_id;
    const char *sampling_rate;   /* "0".."1"; NULL/"" = Dapr's default 0.0001 */
    const char *zipkin_endpoint; /* zipkin.endpointAddress, a full URL */
    const char *otel_endpoint;   /* otel.endpointAddress, host:port or URL */
    int otel_is_secure;          /* otel.isSecure */
    const char *otel_protocol;   /* otel.protocol: "http" (grpc is refused) */
    int stdout_exporter;         /* stdout: true */
    size_t queue_max;            /* spans waiting for export; 0 = default 2048 */
} tracing_config;

/* Set up sampling and start the exporter thread when an exporter is
 * configured.  Call after loop_init().  Returns 0, or -1 with a logged
 * error for a configuration that cannot work. */
int tracing_init(const tracing_config *cfg);
/* Export what is queued (bounded by a short deadline), stop the exporter
 * thread and log the totals.  Safe without tracing_init(). */
void tracing_shutdown(void);

/* Start a span whose parent is the traceparent string parent (NULL or
 * invalid: a new trace).  tracestate travels along unchanged.  Never
 * NULL. */
trace_span *tracing_span_start(const char *name, span_kind kind, const char *parent, const char *tracestate);
/* The traceparent that makes a callee a child of s (TRACEPARENT_LEN + 1). */
void tracing_span_traceparent(const trace_span *s, char *out);
const char *tracing_span_tracestate(const trace_span *s);
int tracing_span_sampled(const trace_span *s);
/* Attributes of sampled spans (ignored otherwise).  Values pass through
 * log_redact(): a registered secret never reaches a collector. */
void tracing_span_attr(trace_span *s, const char *key, const char *value);
void tracing_span_rename(trace_span *s, const char *name);
/* Status from an HTTP status (0 = no response). */
void tracing_span_http_status(trace_span *s, int status);
/* End and hand to the exporter (sampled) or free.  NULL is ignored. */
void tracing_span_end(trace_span *s);

/* ---- hooks -------------------------------------------------------------- */

/* A call arrived on the API (or internal) port: its server span. */
void tracing_call_start(struct api_call *c);
/* The call is answered with status: name, attributes, end. */
void tracing_call_end(struct api_call *c, int status);
/* The traceparent a call's downstream work carries: its span's, or the
 * next hop of the incoming header for untraced calls (health checks). */
void tracing_call_traceparent(struct api_call *c, char *out);

/* A span for work the runtime starts by itself on behalf of a message
 * (pub/sub delivery "pubsub/{topic}", input binding "bindings/{name}"):
 * a SERVER span, child of the message's traceparent.  Its traceparent goes
 * to out; the next app_channel_send whose traceparent header is out adopts
 * it and ends it with the app's answer (any other call ends it as not
 * delivered, so a caller that returns early leaks nothing). */
void tracing_callback_span(const char *name, const char *parent, const char *tracestate,
                           const char *const *attrs, char *out);

/* app_channel_send: a CLIENT span for the request to the app when the
 * headers carry a traceparent (which is replaced by the span's).  *cb and
 * *arg are wrapped.  Returns a handle for tracing_app_call_cancel(), for
 * when the request could not be sent; NULL when untraced. */
void *tracing_app_call_begin(enum evhttp_cmd_type method, const char *uri, struct evkeyvalq *headers,
                             http_response_cb *cb, void **arg);
void tracing_app_call_cancel(void *handle);

/* Counters (tests, shutdown log). */
typedef struct tracing_stats {
    uint64_t sampled;     /* spans queued for export */
    uint64_t dropped;     /* spans dropped: queue full */
    uint64_t exported;    /* spans a collector accepted (per exporter, summed) */
    uint64_t failed;      /* spans a collector refused or never answered */
    size_t queue_high;    /* the queue's high-water mark */
    size_t queue_max;
} tracing_stats;
void tracing_get_stats(tracing_stats *out);

#endif
