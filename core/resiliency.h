/*
 * resiliency.h - Dapr's Resiliency manifests (dapr.io/v1alpha1, kind
 * Resiliency): timeouts, retries and circuit breakers applied to service
 * invocation (targets.apps), component operations (targets.components,
 * outbound = sidecar -> component, inbound = sidecar -> app) and actors.
 *
 * Three parts:
 *   - loading: resiliency_load_yaml() is called by the manifest reader for
 *     every Resiliency document; several manifests merge (later names of
 *     the same policy or target replace earlier ones, as Dapr's maps do);
 *   - lookup: resiliency_app_policy() / resiliency_component_policy() give
 *     the policy that applies to one call (named target policy first, then
 *     the Default*Policy names, then Dapr's built-in policies);
 *   - running: a resil_run drives one operation through breaker, per-attempt
 *     timeout and retries with the policy's spacing, on the loop with
 *     timers (nothing ever sleeps).
 *
 * Everything except loading runs on the loop thread.
 */
#ifndef DAPRD_RESILIENCY_H
#define DAPRD_RESILIENCY_H

#include <stddef.h>
#include <stdint.h>

/* ---- policies --------------------------------------------------------------- */

typedef enum { RESIL_CONSTANT, RESIL_EXPONENTIAL } resil_backoff;

typedef struct resil_retry {
    char *name;
    resil_backoff policy;
    int64_t duration_ms;          /* constant spacing (default 5s) */
    int64_t initial_interval_ms;  /* exponential start (500ms) */
    int64_t max_interval_ms;      /* exponential cap (60s) */
    int64_t max_retries;          /* -1 = unlimited (default) */
    int exact;                    /* built-in only: x2 steps, no jitter */
    /* matching.httpStatusCodes / gRPCStatusCodes as [lo, hi] ranges; none
     * listed = every error is retried. */
    int (*http_codes)[2];
    size_t n_http_codes;
    int (*grpc_codes)[2];
    size_t n_grpc_codes;
} resil_retry;

typedef struct resil_cb_policy {
    char *name;
    uint32_t max_requests;        /* half-open probes (0 = 1, as gobreaker) */
    int64_t interval_ms;          /* closed-state counting window, 0 = never cleared */
    int64_t timeout_ms;           /* open -> half-open (default 60s) */
    char *trip;                   /* CEL over requests, totalSuccesses, ... */
    struct cel_program *prog;
} resil_cb_policy;

/* Gobreaker's counters, which trip expressions read. */
typedef struct resil_counts {
    uint32_t requests;
    uint32_t total_successes;
    uint32_t total_failures;
    uint32_t consecutive_successes;
    uint32_t consecutive_failures;
} resil_counts;

/* What applies to one call.  Any part may be absent. */
typedef struct resil_policy {
    int64_t timeout_ms;             /* 0 = none */
    const char *timeout_name;
    const resil_retry *retry;       /* NULL = no retries */
    int retry_is_user;              /* 0 for Dapr's built-in retries */
    const resil_cb_policy *cb;
    const char *resiliency_name;    /* metadata.name of the manifest (metrics) */
    const char *flow;               /* "outbound" / "inbound" (metrics) */
    char target[160];               /* "app_x", "statestore_y" (metrics, breaker key) */
    int64_t cb_cache_size;          /* apps: breakers kept per target (default 100) */
} resil_policy;

typedef enum {
    RESIL_KIND_STATE, RESIL_KIND_PUBSUB, RESIL_KIND_BINDING, RESIL_KIND_SECRETSTORE,
    RESIL_KIND_CONFIGURATION, RESIL_KIND_LOCK, RESIL_KIND_OTHER
} resil_kind;

/* Forget every loaded manifest (start-up and tests). */
void resiliency_reset(void);
/* One Resiliency document (libyaml's document and root mapping, opaque
 * here so that callers need not include yaml.h).  Returns 1 when loaded,
 * 0 when out of scope for app_id, -1 with a malloc'ed message naming the
 * file, the manifest and the field in *err (nothing of it is kept). */
int resiliency_load_yaml(void *doc, void *root, const char *origin, const char *app_id, char **err);
/* Load Resiliency documents from a YAML string (unit tests). */
int resiliency_load_string(const char *yaml, const char *origin, const char *app_id, char **err);
size_t resiliency_count(void);

/* The policy for a service invocation of app_id (fills *out; returns 1 when
 * anything applies).  remote: the call goes to another sidecar (Dapr's
 * built-in service retries apply to those only). */
int resiliency_app_policy(const char *app_id, int remote, resil_policy *out);
/* The policy for an operation on a component; inbound = delivery to the app. */
int resiliency_component_policy(const char *component, resil_kind kind, int inbound, resil_policy *out);
/* Same for an actor type (no actors yet: used by tests and the metadata). */
int resiliency_actor_policy(const char *actor_type, resil_policy *out);

/* Does the retry policy retry an answer with this HTTP status (0 = no answer)? */
int resil_retry_matches_http(const resil_retry *r, int status);
/* The wait before retry number n (1-based), or -1 when no retry is left. */
int64_t resil_retry_delay(const resil_retry *r, int64_t n);

/* Go's time.ParseDuration (with unit; "0" alone allowed).  0 or -1. */
int resil_parse_duration(const char *s, int64_t *ms);
/* "500-599,429" into ranges (bounds lo..hi).  0 or -1 with err. */
int resil_parse_codes(const char *s, int lo, int hi, int (**out)[2], size_t *n, char *err, size_t errlen);

/* ---- circuit breakers ----------------------------------------------------- */

typedef enum { RESIL_CB_CLOSED, RESIL_CB_HALF_OPEN, RESIL_CB_OPEN } resil_cb_state;

typedef struct resil_breaker resil_breaker;

/* The breaker of a policy for one key (created closed on first use). */
resil_breaker *resil_breaker_get(const resil_policy *p, const char *key);
/* May a call go through now?  0 yes (the call is counted), or -1 with
 * Dapr's error text ("circuit breaker is open" / "too many requests"). */
int resil_breaker_allow(resil_breaker *b, const char **why, uint64_t *generation);
/* The outcome of a call allowed under `generation` (older ones ignored). */
void resil_breaker_record(resil_breaker *b, uint64_t generation, int failed);
resil_cb_state resil_breaker_state(resil_breaker *b);
/* Evaluate a trip expression on counts: 1 trip, 0 not (errors count as 0). */
int resil_trip(const resil_cb_policy *cb, const resil_counts *c);

/* Read-only view of every breaker, for the metrics code and tests. */
typedef struct resil_breaker_info {
    const char *policy;       /* circuit breaker policy name */
    const char *key;          /* the breaker's key: target, or target:endpoint */
    const char *flow;
    resil_cb_state state;
    resil_counts counts;
} resil_breaker_info;
size_t resiliency_breakers(resil_breaker_info *out, size_t max);
const char *resil_cb_state_name(resil_cb_state s);

/* ---- running one operation -------------------------------------------------- */

typedef struct resil_run resil_run;

typedef struct resil_hooks {
    /* Start one attempt.  It ends with resil_complete() (possibly before
     * attempt() returns). */
    void (*attempt)(void *arg);
    /* The attempt timed out: stop it.  Return 1 when it is stopped (its
     * completion already ran, inside cancel, or will never run), 0 when it
     * still runs and will complete later (a plugin call): the runner then
     * waits for that completion before a retry, and the caller's arg must
     * stay alive until resil_complete() says RESIL_LATE_FREE.  NULL = 0. */
    int (*cancel)(void *arg);
    /* The runner gives up by itself: deadline exceeded, breaker open.
     * late_pending: an attempt still runs (see cancel); free arg only
     * when its completion returns RESIL_LATE_FREE. */
    void (*fail)(void *arg, const char *err, int late_pending);
} resil_hooks;

enum {
    RESIL_FINISH,     /* done: answer with this attempt's outcome */
    RESIL_RETRY,      /* the runner retries later: keep arg, do nothing */
    RESIL_IGNORE,     /* completion of a cancelled attempt: do nothing */
    RESIL_LATE_FREE,  /* late completion after fail(): free arg, no answer */
};

/* Make a runner (p is copied; endpoint: breaker key suffix or NULL).  The
 * caller stores it where its completion can find it, then calls
 * resil_run_go(), which starts the first attempt (or calls fail() at once
 * when the breaker is open).  The runner frees itself when resil_complete()
 * returns RESIL_FINISH / RESIL_LATE_FREE or when it calls fail() without
 * late_pending. */
resil_run *resil_run_new(const resil_policy *p, const char *endpoint, const resil_hooks *h, void *arg);
void resil_run_go(resil_run *r);
/* An attempt ended (r may be NULL: then RESIL_FINISH).  failed: it did not succeed; status: the HTTP status
 * (0 = none); permanent: never retried (etag mismatch, bad request). */
int resil_complete(resil_run *r, int failed, int status, int permanent);
/* Shutdown: no more retries; runners waiting for one give up now. */
void resiliency_shutdown(void);
/* Attempts started so far (1 for the first). */
int resil_run_attempts(const resil_run *r);

/* ---- component operations --------------------------------------------------------- */

struct component;
typedef struct resil_comp resil_comp;

/* What the runner needs to know of a component operation `op`. */
typedef struct resil_comp_ops {
    /* Before a retry: forget the previous attempt's result (NULL = none). */
    void (*reset)(void *op);
    /* The runner gave up (deadline, breaker, saturation): answer the
     * caller with err.  Do not free op here. */
    void (*fail)(void *op, const char *err);
    void (*free_op)(void *op);
} resil_comp_ops;

/*
 * Run fn(op) on comp (component_dispatch) under the component's outbound
 * policy.  The caller counted the operation in comp->inflight; the count
 * is released here when the runner answers by itself, else by the caller's
 * finish as before.  Returns 0, or -1 when the worker pool is saturated on
 * the first attempt (nothing ran: the caller answers 429 and frees op).
 * *slot holds the runner while it lives.
 */
int resil_component_dispatch(struct component *comp, resil_kind kind, void (*fn)(void *), void *op,
                             const resil_comp_ops *ops, resil_comp **slot);
/*
 * First thing in the operation's finish (loop thread): 0 = this is the
 * final outcome, answer as usual; 1 = return at once (a retry follows, or
 * this was the late completion of a timed-out attempt and op was freed).
 * permanent: an outcome a retry cannot change (etag mismatch, bad input).
 */
int resil_component_done(resil_comp **slot, int failed, int permanent);

#endif
