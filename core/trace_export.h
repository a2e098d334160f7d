/*
 * trace_export.h - the span exporter thread (Zipkin v2 JSON, OTLP/HTTP
 * JSON, log lines), fed by tracing.c through a bounded queue.
 */
#ifndef DAPRD_TRACE_EXPORT_H
#define DAPRD_TRACE_EXPORT_H

#include <stddef.h>
#include <stdint.h>

/* A finished span, owned by the queue once pushed. */
typedef struct span_rec {
    char trace_id[33];
    char span_id[17];
    char parent_id[17];      /* "" for a root span */
    int kind;                /* span_kind (OTLP numbers) */
    char *name;
    int64_t start_ns;        /* Unix epoch */
    int64_t end_ns;
    int status;              /* 0 unset, 1 ok, 2 error (OTLP) */
    char *status_msg;        /* for errors, or NULL */
    char **attrs;            /* key, value, key, value ... */
    size_t n_attrs;          /* pairs */
} span_rec;

void span_rec_free(span_rec *s);

typedef struct export_config {
    const char *service;     /* app id */
    char *zipkin_host;       /* NULL: no Zipkin exporter */
    int zipkin_port;
    char *zipkin_path;
    char *otel_host;         /* NULL: no OTLP exporter */
    int otel_port;
    char *otel_path;
    int otel_protobuf;       /* application/x-protobuf instead of JSON */
    int log_spans;           /* stdout exporter */
    size_t queue_max;
} export_config;

/* Start the thread (takes over the strings in cfg).  Returns 0/-1. */
int trace_export_start(export_config *cfg);
/* Queue a span (any thread).  Returns 0, or -1 when the queue is full or
 * the exporter is not running: the caller keeps (and frees) the span. */
int trace_export_push(span_rec *s);
/* Flush for at most deadline_ms, stop and join the thread. */
void trace_export_stop(int64_t deadline_ms);
void trace_export_counts(uint64_t *queued, uint64_t *dropped, uint64_t *exported, uint64_t *failed,
                         size_t *high, size_t *max);

#endif
