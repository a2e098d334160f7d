/*
 * metrics.h - Prometheus metrics for daprd, with Dapr's metric names,
 * labels and histogram buckets (pkg/diagnostics in Dapr).
 *
 * Two layers:
 *
 *  1. A small registry of metric families (counter, gauge, histogram) whose
 *     series are keyed by label values.  Every update function is
 *     thread-safe (one mutex per family, held for a hash lookup and an
 *     add) and may be called from the loop thread, worker threads and
 *     broker threads alike.  The number of series per family is capped
 *     (METRICS_MAX_SERIES); updates that would create more are dropped and
 *     counted in dapr_metrics_series_dropped_total, so memory never grows
 *     without bound whatever label values arrive.
 *
 *  2. Typed helpers for each Dapr metric (metrics_component_op(),
 *     metrics_resiliency_activation(), ...).  Call sites use these; they
 *     fill in app_id and namespace themselves.
 *
 * Every function is a no-op (and cheap) before metrics_init() or when
 * metrics are disabled, so call sites need no "if enabled" checks and unit
 * tests that never call metrics_init() still link and run.
 *
 * Latencies are in milliseconds (as in Dapr); pass the elapsed time from
 * metrics_elapsed_ms() on two CLOCK_MONOTONIC timestamps.
 */
#ifndef DAPRD_METRICS_H
#define DAPRD_METRICS_H

#include <stddef.h>
#include <time.h>

/* ---- setup ---------------------------------------------------------------- */

/* Maximum series (label value combinations) kept per family. */
#define METRICS_MAX_SERIES 1000

typedef struct metrics_config {
    const char *app_id;
    const char *ns;               /* namespace label: $NAMESPACE, else "default" (as Dapr) */
    int increased_cardinality;    /* spec.metrics.http.increasedCardinality */
} metrics_config;

/* Register Dapr's metric families.  Call once on the main thread before any
 * other thread starts; enables recording.  Returns 0/-1. */
int metrics_init(const metrics_config *cfg);
/* 1 after metrics_init() and before metrics_shutdown(). */
int metrics_enabled(void);
/* Serve GET /metrics on address:port with an evhttp on the loop's event
 * base.  When the port cannot be bound logs one error and returns -1 (the
 * caller keeps running without the endpoint).  *bound_port (may be NULL)
 * gets the port (useful with port 0). */
int metrics_listen(const char *address, int port, int *bound_port);
/* Stop the listener and free every family.  Loop thread, at exit. */
void metrics_shutdown(void);

/* Render the whole registry in Prometheus text format 0.0.4 into a new
 * malloc'd NUL-terminated string (*len set when not NULL); NULL when
 * disabled.  Thread-safe. */
char *metrics_render(size_t *len);

/* Milliseconds between two CLOCK_MONOTONIC timestamps (end NULL = now). */
double metrics_elapsed_ms(const struct timespec *start, const struct timespec *end);

/* ---- generic registry ----------------------------------------------------- */

typedef enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type;
typedef struct metric_family metric_family;

/* Register a family (any thread, after metrics_init(); it lives until
 * metrics_shutdown(), so keep the pointer).  label_names is
 * NULL-terminated and copied; buckets (ascending upper bounds, without
 * +Inf) are copied and used only by histograms.  Returns NULL when metrics
 * are disabled or on bad arguments. */
metric_family *metrics_family(const char *name, const char *help, metric_type type,
                              const char *const *label_names, const double *buckets,
                              size_t n_buckets);
/* Label values are given in the order of the family's label names; a NULL
 * value is rendered as "".  f may be NULL (no-op). */
void metrics_counter_add(metric_family *f, const char *const *label_values, double v);
void metrics_gauge_set(metric_family *f, const char *const *label_values, double v);
void metrics_gauge_add(metric_family *f, const char *const *label_values, double v);
void metrics_histogram_observe(metric_family *f, const char *const *label_values, double v);

/* Dapr's bucket sets. */
extern const double metrics_latency_buckets_ms[]; /* 1 .. 100000 ms */
extern const size_t metrics_latency_buckets_n;
extern const double metrics_size_buckets[];       /* 1 KiB .. 4 GiB */
extern const size_t metrics_size_buckets_n;

/* ---- HTTP server (daprd's API) and client (to the app, to other sidecars) - */

struct api_call;
/* One answered API call (from http_api.c's call_finished(); loop thread).
 * Labels as Dapr's low-cardinality default: method is Dapr's endpoint name
 * ("GetState", "PublishEvent", "InvokeService/<appid>", ...); with
 * increasedCardinality the HTTP method and the path normalised as Dapr
 * does (state keys and actor ids removed). */
void metrics_http_server(const struct api_call *c, int status, size_t request_bytes,
                         size_t response_bytes);
/* One finished outgoing HTTP request.  status 0 = no response (error). */
void metrics_http_client(const char *method, const char *path, int status,
                         size_t sent_bytes, size_t received_bytes, double ms);

/* ---- components ----------------------------------------------------------- */

typedef enum {
    METRICS_STATE,          /* dapr_component_state_{count,latencies} */
    METRICS_SECRET,         /* dapr_component_secret_* */
    METRICS_CONFIGURATION,  /* dapr_component_configuration_* */
    METRICS_OUTPUT_BINDING, /* dapr_component_output_binding_* */
} metrics_component_kind;

/* Operation names used by Dapr (the "operation" label). */
#define METRICS_OP_GET "get"
#define METRICS_OP_SET "set"
#define METRICS_OP_DELETE "delete"
#define METRICS_OP_BULK_GET "bulk_get"
#define METRICS_OP_BULK_DELETE "bulk_delete"
#define METRICS_OP_TRANSACTION "transaction"
#define METRICS_OP_QUERY "query"

/* One operation on a component: operation is a METRICS_OP_* name (or the
 * binding operation); success 1/0; ms the component's latency. */
void metrics_component_op(metrics_component_kind kind, const char *component,
                          const char *operation, int success, double ms);
/* A message published to a broker (dapr_component_pubsub_egress_*). */
void metrics_pubsub_egress(const char *component, const char *topic, int success, double ms);
/* A message delivered to the app (dapr_component_pubsub_ingress_*).
 * process_status is "success", "retry" or "drop" (Dapr's values); status
 * the same unless the app's answer says otherwise (NULL = process_status);
 * ms the app's processing time. */
void metrics_pubsub_ingress(const char *component, const char *topic,
                            const char *process_status, const char *status, double ms);
/* An input binding event delivered to the app (dapr_component_input_binding_*). */
void metrics_input_binding(const char *component, int success, double ms);

/* ---- runtime -------------------------------------------------------------- */

/* A component was loaded and initialised (dapr_runtime_component_loaded,
 * dapr_runtime_component_init_total with its type, e.g. "state.redis"). */
void metrics_component_loaded(const char *type);
/* A component failed to initialise (dapr_runtime_component_init_fail_total);
 * reason is Dapr's word ("init", "load", ...). */
void metrics_component_init_fail(const char *type, const char *reason, const char *name);

/* ---- resiliency ----------------------------------------------------------- */

/* Dapr's label values. */
#define METRICS_POLICY_RETRY "retry"
#define METRICS_POLICY_TIMEOUT "timeout"
#define METRICS_POLICY_CIRCUIT_BREAKER "circuitbreaker"
#define METRICS_FLOW_OUTBOUND "outbound"
#define METRICS_FLOW_INBOUND "inbound"
/* Circuit breaker states (status label of cb_state). */
#define METRICS_CB_CLOSED "closed"
#define METRICS_CB_HALF_OPEN "half-open"
#define METRICS_CB_OPEN "open"

/* A Resiliency resource was loaded (dapr_resiliency_loaded). */
void metrics_resiliency_loaded(const char *resiliency_name);
/* A policy was applied to a call (dapr_resiliency_count).  target follows
 * Dapr: "app_<appid>", "<kind>_<component>" (e.g. "statestore_mystore"),
 * "actor_<type>"; status may be NULL/"" (a cb state for circuit breakers). */
void metrics_resiliency_count(const char *resiliency_name, const char *policy,
                              const char *flow_direction, const char *target,
                              const char *status);
/* A policy was activated: a retry after a failure, a timeout fired, a
 * breaker changed state (dapr_resiliency_activations_total). */
void metrics_resiliency_activation(const char *resiliency_name, const char *policy,
                                   const char *flow_direction, const char *target,
                                   const char *status);
/* A breaker's current state (dapr_resiliency_cb_state): sets the gauge of
 * state to 1 and of the other states to 0, as Dapr does. */
void metrics_resiliency_cb_state(const char *resiliency_name, const char *flow_direction,
                                 const char *target, const char *state);

#endif
