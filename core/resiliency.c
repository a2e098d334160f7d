/*
 * resiliency.c - Resiliency manifests: loading, policy lookup, circuit
 * breakers and the runner that applies a policy to one operation.
 *
 * Semantics follow Dapr (pkg/resiliency and the gobreaker it uses):
 *   - a timeout bounds each attempt, not the whole operation; a timed-out
 *     attempt counts as a failure and may be retried;
 *   - the breaker wraps each attempt; an open breaker (or a half-open one
 *     with maxRequests probes out) fails the attempt at once, and that
 *     error is permanent: retries stop there;
 *   - retries wait with the policy's spacing (constant duration, or
 *     exponential from 500ms, x1.5 with +-50% jitter, capped at
 *     maxInterval), on loop timers;
 *   - several manifests merge into one set of named policies and targets;
 *     a later definition of the same name replaces the earlier one.
 */
#include "config.h"
#include "resiliency.h"
#include "cel.h"
#include "component.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "util.h"

#include <ctype.h>
#include <stdatomic.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define SCOPE "dapr.runtime.resiliency"
#define MAX_BREAKERS 4096            /* bound on breakers kept in memory */
#define DEFAULT_CB_CACHE 100         /* circuitBreakerCacheSize default */

/* ---- loaded policies --------------------------------------------------------- */

struct named_timeout {
    char *name;
    int64_t ms;
};

/* A target's policy names (NULL = none named). */
struct names {
    char *timeout, *retry, *cb;
};

struct target {
    char *name;             /* app id, actor type or component name */
    char *res_name;         /* the manifest that defined it */
    struct names out;       /* apps/actors: the policy; components: outbound */
    struct names in;        /* components: inbound */
    int64_t cb_cache_size;
};

static struct named_timeout *timeouts;
static size_t n_timeouts;
static resil_retry **retries;
static size_t n_retries;
static resil_cb_policy **cbs;
static size_t n_cbs;
static struct target *apps, *actors, *comps;
static size_t n_apps, n_actors, n_comps;
static size_t n_loaded;
static char *first_res_name;  /* for metrics of the default policies */

/* Dapr's built-in retries, used when nothing else applies. */
static resil_retry builtin_service = {.name = "DaprBuiltInServiceRetries", .policy = RESIL_CONSTANT,
                                      .duration_ms = 1000, .max_retries = 3};
/* Deliveries to the app that fail are retried a few times here before
 * the message goes back to its broker (or to a dead-letter topic). */
static resil_retry builtin_pubsub_inbound = {.name = "DaprBuiltInPubsubInboundRetries",
                                             .policy = RESIL_EXPONENTIAL, .initial_interval_ms = 200,
                                             .max_interval_ms = 800, .max_retries = 3, .exact = 1};

static void retry_free(resil_retry *r)
{
    if (!r) return;
    free(r->name);
    free(r->http_codes);
    free(r->grpc_codes);
    free(r);
}

static void cb_free(resil_cb_policy *c)
{
    if (!c) return;
    free(c->name);
    free(c->trip);
    cel_free(c->prog);
    free(c);
}

static void names_free(struct names *n)
{
    free(n->timeout);
    free(n->retry);
    free(n->cb);
}

static void targets_free(struct target *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].res_name);
        names_free(&t[i].out);
        names_free(&t[i].in);
    }
    free(t);
}

static void breakers_free(void);

void resiliency_reset(void)
{
    for (size_t i = 0; i < n_timeouts; i++)
        free(timeouts[i].name);
    free(timeouts);
    for (size_t i = 0; i < n_retries; i++)
        retry_free(retries[i]);
    free(retries);
    for (size_t i = 0; i < n_cbs; i++)
        cb_free(cbs[i]);
    free(cbs);
    targets_free(apps, n_apps);
    targets_free(actors, n_actors);
    targets_free(comps, n_comps);
    timeouts = NULL; retries = NULL; cbs = NULL; apps = actors = comps = NULL;
    n_timeouts = n_retries = n_cbs = n_apps = n_actors = n_comps = n_loaded = 0;
    free(first_res_name);
    first_res_name = NULL;
    breakers_free();
}

size_t resiliency_count(void) { return n_loaded; }

static const struct named_timeout *find_timeout(const char *name)
{
    for (size_t i = n_timeouts; name && i-- > 0;)
        if (strcmp(timeouts[i].name, name) == 0)
            return &timeouts[i];
    return NULL;
}

static const resil_retry *find_retry(const char *name)
{
    for (size_t i = n_retries; name && i-- > 0;)
        if (strcmp(retries[i]->name, name) == 0)
            return retries[i];
    return NULL;
}

static const resil_cb_policy *find_cb(const char *name)
{
    for (size_t i = n_cbs; name && i-- > 0;)
        if (strcmp(cbs[i]->name, name) == 0)
            return cbs[i];
    return NULL;
}

static const struct target *find_target(const struct target *t, size_t n, const char *name)
{
    for (size_t i = n; i-- > 0;)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

/* ---- parsing helpers --------------------------------------------------------- */

int resil_parse_duration(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return -1;
    /* Go wants a unit on every number except a lone "0". */
    if (strcmp(s, "0") != 0) {
        int has_unit = 0;
        for (const char *p = s; *p; p++)
            if (isalpha((unsigned char)*p) || (unsigned char)*p >= 0x80)
                has_unit = 1;
        if (!has_unit)
            return -1;
    }
    return parse_duration_ms(s, ms);
}

int resil_parse_codes(const char *s, int lo, int hi, int (**out)[2], size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!s)
        return 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p)
            break;
        const char *e = p;
        while (*e && *e != ',') e++;
        char item[64];
        size_t len = (size_t)(e - p);
        while (len && p[len - 1] == ' ') len--;
        if (len >= sizeof item) {
            snprintf(err, errlen, "'%.*s' is not a status code or range", (int)len, p);
            goto bad;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        int64_t a, b;
        char *dash = strchr(item + 1, '-');
        if (dash) {
            *dash = '\0';
            if (parse_int64(item, &a) != 0 || parse_int64(dash + 1, &b) != 0) {
                *dash = '-';
                snprintf(err, errlen, "'%s' is not a status code or range", item);
                goto bad;
            }
        } else if (parse_int64(item, &a) == 0) {
            b = a;
        } else {
            snprintf(err, errlen, "'%s' is not a status code or range", item);
            goto bad;
        }
        if (a < lo || b > hi || a > b) {
            snprintf(err, errlen, "status code range %lld-%lld is outside %d-%d or reversed", (long long)a,
                     (long long)b, lo, hi);
            goto bad;
        }
        *out = xrealloc(*out, (*n + 1) * sizeof **out);
        (*out)[*n][0] = (int)a;
        (*out)[*n][1] = (int)b;
        (*n)++;
        p = e;
    }
    return 0;
bad:
    free(*out);
    *out = NULL;
    *n = 0;
    return -1;
}

/* ---- trip expressions -------------------------------------------------------- */

static const char *const count_names[] = {"requests", "totalSuccesses", "totalFailures",
                                          "consecutiveSuccesses", "consecutiveFailures"};

/* The CEL evaluator binds one variable, `event`: the counters become its
 * members ("consecutiveFailures > 5" -> "event.consecutiveFailures > 5").
 * Strings are copied as they are. */
static char *rewrite_trip(const char *expr)
{
    size_t cap = strlen(expr) * 3 + 16, o = 0;
    char *out = xmalloc(cap);
    for (const char *p = expr; *p;) {
        if (*p == '\'' || *p == '"') {
            char q = *p;
            out[o++] = *p++;
            while (*p && *p != q) {
                if (*p == '\\' && p[1])
                    out[o++] = *p++;
                out[o++] = *p++;
            }
            if (*p)
                out[o++] = *p++;
            continue;
        }
        if (isalpha((unsigned char)*p) || *p == '_') {
            const char *s = p;
            while (isalnum((unsigned char)*p) || *p == '_') p++;
            size_t len = (size_t)(p - s);
            const char *prev = s;
            while (prev > expr && prev[-1] == ' ') prev--;
            int member = prev > expr && prev[-1] == '.';
            int is_count = 0;
            for (size_t i = 0; i < 5 && !member; i++)
                if (strlen(count_names[i]) == len && strncmp(s, count_names[i], len) == 0)
                    is_count = 1;
            if (is_count) {
                memcpy(out + o, "event.", 6);
                o += 6;
            }
            memcpy(out + o, s, len);
            o += len;
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}

int resil_trip(const resil_cb_policy *cb, const resil_counts *c)
{
    if (!cb->prog)
        return c->consecutive_failures > 5;
    json_t *ev = json_pack("{s:I, s:I, s:I, s:I, s:I}", "requests", (json_int_t)c->requests, "totalSuccesses",
                           (json_int_t)c->total_successes, "totalFailures", (json_int_t)c->total_failures,
                           "consecutiveSuccesses", (json_int_t)c->consecutive_successes,
                           "consecutiveFailures", (json_int_t)c->consecutive_failures);
    char err[256] = "";
    int r = cel_eval_bool(cb->prog, ev, err, sizeof err);
    json_decref(ev);
    if (err[0])
        log_debug(SCOPE, "circuit breaker %s: trip '%s' could not be evaluated: %s", cb->name, cb->trip, err);
    return r == 1;
}

/* ---- YAML ---------------------------------------------------------------------- */

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static int is_null(yaml_node_t *n)
{
    if (!n)
        return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0;
}

struct ctx {
    yaml_document_t *doc;
    const char *origin;
    const char *name;
    char **err;
};

static int perr(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int perr(struct ctx *c, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    *c->err = xasprintf("%s: resiliency '%s': %s", c->origin, c->name, what);
    return -1;
}

/* A scalar field as text: -1 (with error) when present and not a scalar. */
static int get_str(struct ctx *c, yaml_node_t *map, const char *key, const char *field, const char **out)
{
    yaml_node_t *n = map_get(c->doc, map, key);
    *out = NULL;
    if (is_null(n))
        return 0;
    if (n->type != YAML_SCALAR_NODE)
        return perr(c, "%s.%s must be a string", field, key);
    *out = (const char *)n->data.scalar.value;
    return 0;
}

static int get_duration(struct ctx *c, yaml_node_t *map, const char *key, const char *field, int64_t *ms)
{
    const char *s;
    if (get_str(c, map, key, field, &s) != 0)
        return -1;
    if (!s)
        return 0;
    if (resil_parse_duration(s, ms) != 0)
        return perr(c, "%s.%s: '%s' is not a duration (e.g. 500ms, 5s, 1m30s)", field, key, s);
    return 0;
}

static int get_int(struct ctx *c, yaml_node_t *map, const char *key, const char *field, int64_t *v)
{
    const char *s;
    if (get_str(c, map, key, field, &s) != 0)
        return -1;
    if (!s)
        return 0;
    if (parse_int64(s, v) != 0)
        return perr(c, "%s.%s: '%s' is not an integer", field, key, s);
    return 0;
}

static int need_map(struct ctx *c, yaml_node_t *n, const char *field)
{
    if (is_null(n))
        return 1;
    if (n->type != YAML_MAPPING_NODE)
        return perr(c, "%s must be a mapping", field), -1;
    return 0;
}

#define FOREACH_PAIR(doc, map, kname, vnode)                                                             \
    for (yaml_node_pair_t *pp_ = (map)->data.mapping.pairs.start; pp_ < (map)->data.mapping.pairs.top; pp_++) \
        for (const char *kname = (const char *)yaml_document_get_node(doc, pp_->key)->data.scalar.value; kname; \
             kname = NULL)                                                                               \
            for (yaml_node_t *vnode = yaml_document_get_node(doc, pp_->value); vnode; vnode = NULL)

/* Staged results of one manifest, committed only when all of it is valid. */
struct staged {
    struct named_timeout *t; size_t nt;
    resil_retry **r; size_t nr;
    resil_cb_policy **cb; size_t ncb;
    struct target *apps, *actors, *comps;
    size_t napps, nactors, ncomps;
};

static void staged_free(struct staged *s)
{
    for (size_t i = 0; i < s->nt; i++) free(s->t[i].name);
    free(s->t);
    for (size_t i = 0; i < s->nr; i++) retry_free(s->r[i]);
    free(s->r);
    for (size_t i = 0; i < s->ncb; i++) cb_free(s->cb[i]);
    free(s->cb);
    targets_free(s->apps, s->napps);
    targets_free(s->actors, s->nactors);
    targets_free(s->comps, s->ncomps);
}

static int keys_are_scalars(struct ctx *c, yaml_node_t *map, const char *field)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (!k || k->type != YAML_SCALAR_NODE || !*(const char *)k->data.scalar.value)
            return perr(c, "%s: every key must be a non-empty name", field);
    }
    return 0;
}

static int parse_retry(struct ctx *c, const char *name, yaml_node_t *n, resil_retry **out)
{
    char field[300];
    snprintf(field, sizeof field, "spec.policies.retries.%s", name);
    int m = need_map(c, n, field);
    if (m < 0) return -1;
    resil_retry *r = xcalloc(1, sizeof *r);
    r->name = xstrdup(name);
    r->policy = RESIL_CONSTANT;
    r->duration_ms = 5000;
    r->initial_interval_ms = 500;
    r->max_interval_ms = 60000;
    r->max_retries = -1;
    *out = r;
    if (m == 1)
        return 0;
    const char *pol;
    if (get_str(c, n, "policy", field, &pol) != 0) return -1;
    if (pol && *pol) {
        if (strcmp(pol, "constant") == 0) r->policy = RESIL_CONSTANT;
        else if (strcmp(pol, "exponential") == 0) r->policy = RESIL_EXPONENTIAL;
        else return perr(c, "%s.policy: '%s' is not constant or exponential", field, pol);
    }
    if (get_duration(c, n, "duration", field, &r->duration_ms) != 0 ||
        get_duration(c, n, "initialInterval", field, &r->initial_interval_ms) != 0 ||
        get_duration(c, n, "maxInterval", field, &r->max_interval_ms) != 0 ||
        get_int(c, n, "maxRetries", field, &r->max_retries) != 0)
        return -1;
    if (r->max_retries < -1)
        return perr(c, "%s.maxRetries: %lld (use -1 for unlimited)", field, (long long)r->max_retries);
    yaml_node_t *match = map_get(c->doc, n, "matching");
    char mfield[340];
    snprintf(mfield, sizeof mfield, "%s.matching", field);
    m = need_map(c, match, mfield);
    if (m < 0) return -1;
    if (m == 0) {
        const char *codes;
        char why[200];
        if (get_str(c, match, "httpStatusCodes", mfield, &codes) != 0) return -1;
        if (resil_parse_codes(codes, 100, 599, &r->http_codes, &r->n_http_codes, why, sizeof why) != 0)
            return perr(c, "%s.httpStatusCodes: %s", mfield, why);
        if (get_str(c, match, "gRPCStatusCodes", mfield, &codes) != 0) return -1;
        if (resil_parse_codes(codes, 0, 16, &r->grpc_codes, &r->n_grpc_codes, why, sizeof why) != 0)
            return perr(c, "%s.gRPCStatusCodes: %s", mfield, why);
    }
    return 0;
}

static int parse_cb(struct ctx *c, const char *name, yaml_node_t *n, resil_cb_policy **out)
{
    char field[300];
    snprintf(field, sizeof field, "spec.policies.circuitBreakers.%s", name);
    int m = need_map(c, n, field);
    if (m < 0) return -1;
    resil_cb_policy *cb = xcalloc(1, sizeof *cb);
    cb->name = xstrdup(name);
    cb->timeout_ms = 60000;
    *out = cb;
    int64_t maxreq = 0;
    const char *trip = NULL;
    if (m == 0) {
        if (get_int(c, n, "maxRequests", field, &maxreq) != 0 ||
            get_duration(c, n, "interval", field, &cb->interval_ms) != 0 ||
            get_duration(c, n, "timeout", field, &cb->timeout_ms) != 0 ||
            get_str(c, n, "trip", field, &trip) != 0)
            return -1;
    }
    if (maxreq < 0 || maxreq > UINT32_MAX)
        return perr(c, "%s.maxRequests: %lld is out of range", field, (long long)maxreq);
    cb->max_requests = (uint32_t)maxreq;
    cb->trip = xstrdup(trip && *trip ? trip : "consecutiveFailures > 5");
    char *expr = rewrite_trip(cb->trip);
    char why[512];
    cb->prog = cel_compile(expr, why, sizeof why);
    free(expr);
    if (!cb->prog)
        return perr(c, "%s.trip: '%s' is not a valid expression: %s", field, cb->trip, why);
    return 0;
}

/* Does a name refer to a policy defined in this manifest or an earlier one? */
static int known(struct staged *s, int kind, const char *name)
{
    if (kind == 0) {
        for (size_t i = 0; i < s->nt; i++) if (strcmp(s->t[i].name, name) == 0) return 1;
        return find_timeout(name) != NULL;
    }
    if (kind == 1) {
        for (size_t i = 0; i < s->nr; i++) if (strcmp(s->r[i]->name, name) == 0) return 1;
        return find_retry(name) != NULL;
    }
    for (size_t i = 0; i < s->ncb; i++) if (strcmp(s->cb[i]->name, name) == 0) return 1;
    return find_cb(name) != NULL;
}

static int parse_names(struct ctx *c, struct staged *s, yaml_node_t *n, const char *field, struct names *out)
{
    int m = need_map(c, n, field);
    if (m != 0) return m < 0 ? -1 : 0;
    static const char *const keys[] = {"timeout", "retry", "circuitBreaker"};
    char **dst[] = {&out->timeout, &out->retry, &out->cb};
    for (int k = 0; k < 3; k++) {
        const char *v;
        if (get_str(c, n, keys[k], field, &v) != 0) return -1;
        if (!v || !*v) continue;
        if (!known(s, k, v))
            return perr(c, "%s.%s: no %s policy named '%s'", field, keys[k],
                        k == 0 ? "timeout" : k == 1 ? "retry" : "circuit breaker", v);
        *dst[k] = xstrdup(v);
    }
    return 0;
}

static int parse_targets(struct ctx *c, struct staged *s, yaml_node_t *targets)
{
    static const char *const kinds[] = {"apps", "actors", "components"};
    for (int k = 0; k < 3; k++) {
        yaml_node_t *tn = map_get(c->doc, targets, kinds[k]);
        char field[300];
        snprintf(field, sizeof field, "spec.targets.%s", kinds[k]);
        int m = need_map(c, tn, field);
        if (m < 0) return -1;
        if (m == 1) continue;
        if (keys_are_scalars(c, tn, field) != 0) return -1;
        FOREACH_PAIR(c->doc, tn, name, v) {
            struct target t = {0};
            t.name = xstrdup(name);
            t.res_name = xstrdup(c->name);
            t.cb_cache_size = DEFAULT_CB_CACHE;
            char tf[400];
            snprintf(tf, sizeof tf, "%s.%s", field, name);
            int rc;
            if (k < 2) {
                rc = parse_names(c, s, v, tf, &t.out);
                if (rc == 0 && need_map(c, v, tf) == 0)
                    rc = get_int(c, v, "circuitBreakerCacheSize", tf, &t.cb_cache_size);
                if (rc == 0 && t.cb_cache_size <= 0)
                    t.cb_cache_size = DEFAULT_CB_CACHE;
            } else {
                rc = need_map(c, v, tf) < 0 ? -1 : 0;
                char of[420], inf[420];
                snprintf(of, sizeof of, "%s.outbound", tf);
                snprintf(inf, sizeof inf, "%s.inbound", tf);
                if (rc == 0)
                    rc = parse_names(c, s, map_get(c->doc, v, "outbound"), of, &t.out);
                if (rc == 0)
                    rc = parse_names(c, s, map_get(c->doc, v, "inbound"), inf, &t.in);
            }
            struct target **arr = k == 0 ? &s->apps : k == 1 ? &s->actors : &s->comps;
            size_t *na = k == 0 ? &s->napps : k == 1 ? &s->nactors : &s->ncomps;
            *arr = xrealloc(*arr, (*na + 1) * sizeof **arr);
            (*arr)[(*na)++] = t;
            if (rc != 0) return -1;
        }
    }
    return 0;
}

static int in_scope(struct ctx *c, yaml_node_t *root, const char *app_id, int *ok)
{
    yaml_node_t *scopes = map_get(c->doc, root, "scopes");
    *ok = 1;
    if (is_null(scopes))
        return 0;
    if (scopes->type != YAML_SEQUENCE_NODE)
        return perr(c, "scopes must be a list of app ids");
    if (scopes->data.sequence.items.top == scopes->data.sequence.items.start)
        return 0;
    *ok = 0;
    for (yaml_node_item_t *it = scopes->data.sequence.items.start; it < scopes->data.sequence.items.top; it++) {
        yaml_node_t *n = yaml_document_get_node(c->doc, *it);
        if (!n || n->type != YAML_SCALAR_NODE)
            return perr(c, "scopes must be a list of app ids");
        if (app_id && strcmp((const char *)n->data.scalar.value, app_id) == 0)
            *ok = 1;
    }
    return 0;
}

static void append_targets(struct target **dst, size_t *nd, struct target *src, size_t ns)
{
    for (size_t i = 0; i < ns; i++) {
        /* A later definition replaces an earlier one of the same name. */
        size_t j;
        for (j = 0; j < *nd; j++)
            if (strcmp((*dst)[j].name, src[i].name) == 0)
                break;
        if (j < *nd) {
            free((*dst)[j].name);
            free((*dst)[j].res_name);
            names_free(&(*dst)[j].out);
            names_free(&(*dst)[j].in);
            (*dst)[j] = src[i];
        } else {
            *dst = xrealloc(*dst, (*nd + 1) * sizeof **dst);
            (*dst)[(*nd)++] = src[i];
        }
    }
    free(src);
}

int resiliency_load_yaml(void *vdoc, void *vroot, const char *origin, const char *app_id, char **err)
{
    yaml_document_t *doc = vdoc;
    yaml_node_t *root = vroot;
    yaml_node_t *meta = map_get(doc, root, "metadata");
    yaml_node_t *nm = map_get(doc, meta, "name");
    const char *name = nm && nm->type == YAML_SCALAR_NODE ? (const char *)nm->data.scalar.value : "";
    struct ctx c = {doc, origin, name, err};
    int ok;
    if (in_scope(&c, root, app_id, &ok) != 0)
        return -1;
    if (!ok) {
        log_debug(SCOPE, "%s: resiliency '%s' is not scoped to app '%s'", origin, name, app_id ? app_id : "");
        return 0;
    }
    yaml_node_t *spec = map_get(doc, root, "spec");
    if (need_map(&c, spec, "spec") != 0)
        return spec && !is_null(spec) ? -1 : perr(&c, "spec is missing");
    yaml_node_t *pol = map_get(doc, spec, "policies");
    struct staged s = {0};
    int rc = 0;
    int m = need_map(&c, pol, "spec.policies");
    if (m < 0) return -1;
    if (m == 0) {
        yaml_node_t *tn = map_get(doc, pol, "timeouts");
        if ((m = need_map(&c, tn, "spec.policies.timeouts")) < 0 ||
            (m == 0 && keys_are_scalars(&c, tn, "spec.policies.timeouts") != 0)) { rc = -1; goto out; }
        if (m == 0) {
            FOREACH_PAIR(doc, tn, tname, v) {
                if (rc) break;
                int64_t ms;
                const char *txt = v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : NULL;
                if (!txt || resil_parse_duration(txt, &ms) != 0) {
                    rc = perr(&c, "spec.policies.timeouts.%s: '%s' is not a duration (e.g. 500ms, 5s, 1m30s)",
                              tname, txt ? txt : "(not a string)");
                    break;
                }
                s.t = xrealloc(s.t, (s.nt + 1) * sizeof *s.t);
                s.t[s.nt++] = (struct named_timeout){xstrdup(tname), ms};
            }
            if (rc) goto out;
        }
        yaml_node_t *rn = map_get(doc, pol, "retries");
        if ((m = need_map(&c, rn, "spec.policies.retries")) < 0 ||
            (m == 0 && keys_are_scalars(&c, rn, "spec.policies.retries") != 0)) { rc = -1; goto out; }
        if (m == 0) {
            FOREACH_PAIR(doc, rn, rname, v) {
                if (rc) break;
                resil_retry *r = NULL;
                rc = parse_retry(&c, rname, v, &r);
                s.r = xrealloc(s.r, (s.nr + 1) * sizeof *s.r);
                s.r[s.nr++] = r;
            }
            if (rc) goto out;
        }
        yaml_node_t *cn = map_get(doc, pol, "circuitBreakers");
        if ((m = need_map(&c, cn, "spec.policies.circuitBreakers")) < 0 ||
            (m == 0 && keys_are_scalars(&c, cn, "spec.policies.circuitBreakers") != 0)) { rc = -1; goto out; }
        if (m == 0) {
            FOREACH_PAIR(doc, cn, cname, v) {
                if (rc) break;
                resil_cb_policy *cb = NULL;
                rc = parse_cb(&c, cname, v, &cb);
                s.cb = xrealloc(s.cb, (s.ncb + 1) * sizeof *s.cb);
                s.cb[s.ncb++] = cb;
            }
            if (rc) goto out;
        }
    }
    yaml_node_t *targets = map_get(doc, spec, "targets");
    if ((m = need_map(&c, targets, "spec.targets")) < 0) { rc = -1; goto out; }
    if (m == 0 && parse_targets(&c, &s, targets) != 0) { rc = -1; goto out; }

    /* Commit: everything of this manifest was valid. */
    for (size_t i = 0; i < s.nt; i++) {
        timeouts = xrealloc(timeouts, (n_timeouts + 1) * sizeof *timeouts);
        timeouts[n_timeouts++] = s.t[i];
    }
    for (size_t i = 0; i < s.nr; i++) {
        retries = xrealloc(retries, (n_retries + 1) * sizeof *retries);
        retries[n_retries++] = s.r[i];
    }
    for (size_t i = 0; i < s.ncb; i++) {
        cbs = xrealloc(cbs, (n_cbs + 1) * sizeof *cbs);
        cbs[n_cbs++] = s.cb[i];
    }
    free(s.t); free(s.r); free(s.cb);
    append_targets(&apps, &n_apps, s.apps, s.napps);
    append_targets(&actors, &n_actors, s.actors, s.nactors);
    append_targets(&comps, &n_comps, s.comps, s.ncomps);
    n_loaded++;
    if (!first_res_name)
        first_res_name = xstrdup(name);
    log_info(SCOPE, "resiliency configuration loaded: %s (%s)", name, origin);
    metrics_resiliency_loaded(name);
    return 1;
out:
    staged_free(&s);
    return -1;
}

int resiliency_load_string(const char *yaml, const char *origin, const char *app_id, char **err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        *err = xstrdup("cannot initialise the YAML parser");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
    int rc = 0;
    for (;;) {
        yaml_document_t doc;
        if (!yaml_parser_load(&parser, &doc)) {
            *err = xasprintf("%s: YAML error at line %zu: %s", origin, parser.problem_mark.line + 1,
                             parser.problem ? parser.problem : "unknown problem");
            rc = -1;
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root) {
            yaml_document_delete(&doc);
            break;
        }
        if (root->type == YAML_MAPPING_NODE) {
            yaml_node_t *k = map_get(&doc, root, "kind");
            if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, "Resiliency") == 0)
                rc = resiliency_load_yaml(&doc, root, origin, app_id, err) < 0 ? -1 : 0;
        }
        yaml_document_delete(&doc);
        if (rc)
            break;
    }
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- lookup ------------------------------------------------------------------------ */

/*
 * Each kind of policy (timeout, retry, breaker) is resolved on its own:
 * the target's named policy, else the first defined of the default names
 * "Default<scope>{Timeout,Retry,CircuitBreaker}Policy" from the most
 * specific scope to the broadest ("" = DefaultRetryPolicy).
 */
static void resolve(resil_policy *out, const struct names *named, const char *const *scopes, size_t ns)
{
    char buf[160];
    const struct named_timeout *t = named ? find_timeout(named->timeout) : NULL;
    for (size_t i = 0; !t && i < ns; i++) {
        snprintf(buf, sizeof buf, "Default%sTimeoutPolicy", scopes[i]);
        t = find_timeout(buf);
    }
    if (t) {
        out->timeout_ms = t->ms;
        out->timeout_name = t->name;
    }
    const resil_retry *r = named ? find_retry(named->retry) : NULL;
    for (size_t i = 0; !r && i < ns; i++) {
        snprintf(buf, sizeof buf, "Default%sRetryPolicy", scopes[i]);
        r = find_retry(buf);
    }
    if (r) {
        out->retry = r;
        out->retry_is_user = 1;
    }
    const resil_cb_policy *cb = named ? find_cb(named->cb) : NULL;
    for (size_t i = 0; !cb && i < ns; i++) {
        snprintf(buf, sizeof buf, "Default%sCircuitBreakerPolicy", scopes[i]);
        cb = find_cb(buf);
    }
    out->cb = cb;
}

static int any(const resil_policy *p)
{
    return p->timeout_ms > 0 || p->retry || p->cb;
}

int resiliency_app_policy(const char *app_id, int remote, resil_policy *out)
{
    memset(out, 0, sizeof *out);
    const struct target *t = find_target(apps, n_apps, app_id);
    static const char *const scopes[] = {"App", ""};
    resolve(out, t ? &t->out : NULL, scopes, 2);
    out->resiliency_name = t ? t->res_name : first_res_name ? first_res_name : "";
    out->flow = METRICS_FLOW_OUTBOUND;
    out->cb_cache_size = t ? t->cb_cache_size : DEFAULT_CB_CACHE;
    snprintf(out->target, sizeof out->target, "app_%s", app_id);
    if (!out->retry && remote) {
        /* Dapr retries calls between sidecars that failed to connect;
         * a policy named DaprBuiltInServiceRetries replaces the default. */
        const resil_retry *b = find_retry("DaprBuiltInServiceRetries");
        out->retry = b ? b : &builtin_service;
        out->retry_is_user = 0;
    }
    return any(out);
}

static const char *kind_word(resil_kind k)
{
    switch (k) {
    case RESIL_KIND_STATE: return "Statestore";
    case RESIL_KIND_PUBSUB: return "Pubsub";
    case RESIL_KIND_BINDING: return "Binding";
    case RESIL_KIND_SECRETSTORE: return "Secretstore";
    case RESIL_KIND_CONFIGURATION: return "Configuration";
    case RESIL_KIND_LOCK: return "Lock";
    default: return "";
    }
}

int resiliency_component_policy(const char *name, resil_kind kind, int inbound, resil_policy *out)
{
    memset(out, 0, sizeof *out);
    const struct target *t = find_target(comps, n_comps, name);
    char specific[64], dir[64];
    const char *d = inbound ? "Inbound" : "Outbound";
    snprintf(specific, sizeof specific, "%sComponent%s", kind_word(kind), d);
    snprintf(dir, sizeof dir, "Component%s", d);
    const char *const scopes[] = {specific, dir, "Component", ""};
    resolve(out, t ? (inbound ? &t->in : &t->out) : NULL, kind == RESIL_KIND_OTHER ? scopes + 1 : scopes,
            kind == RESIL_KIND_OTHER ? 3 : 4);
    out->resiliency_name = t ? t->res_name : first_res_name ? first_res_name : "";
    out->flow = inbound ? METRICS_FLOW_INBOUND : METRICS_FLOW_OUTBOUND;
    out->cb_cache_size = DEFAULT_CB_CACHE;
    char lower[32];
    snprintf(lower, sizeof lower, "%s", kind_word(kind));
    for (char *p = lower; *p; p++) *p = (char)tolower((unsigned char)*p);
    snprintf(out->target, sizeof out->target, "%s_%s", *lower ? lower : "component", name);
    if (!out->retry && inbound && kind == RESIL_KIND_PUBSUB) {
        out->retry = &builtin_pubsub_inbound;
        out->retry_is_user = 0;
    }
    return any(out);
}

int resiliency_actor_policy(const char *actor_type, resil_policy *out)
{
    memset(out, 0, sizeof *out);
    const struct target *t = find_target(actors, n_actors, actor_type);
    static const char *const scopes[] = {"Actor", ""};
    resolve(out, t ? &t->out : NULL, scopes, 2);
    out->resiliency_name = t ? t->res_name : first_res_name ? first_res_name : "";
    out->flow = METRICS_FLOW_OUTBOUND;
    out->cb_cache_size = t ? t->cb_cache_size : DEFAULT_CB_CACHE;
    snprintf(out->target, sizeof out->target, "actor_%s", actor_type);
    return any(out);
}

int resil_retry_matches_http(const resil_retry *r, int status)
{
    if (!r)
        return 0;
    if (status == 0 || r->n_http_codes == 0)
        return 1;
    for (size_t i = 0; i < r->n_http_codes; i++)
        if (status >= r->http_codes[i][0] && status <= r->http_codes[i][1])
            return 1;
    return 0;
}

int64_t resil_retry_delay(const resil_retry *r, int64_t n)
{
    if (!r || n < 1 || (r->max_retries >= 0 && n > r->max_retries))
        return -1;
    if (r->policy == RESIL_CONSTANT)
        return r->duration_ms;
    if (r->exact) {
        /* 200, 400, 800 ms: the messages of a bulk batch that failed
         * together are retried together. */
        int64_t ms = r->initial_interval_ms;
        for (int64_t i = 1; i < n && ms < r->max_interval_ms; i++)
            ms *= 2;
        return ms < r->max_interval_ms ? ms : r->max_interval_ms;
    }
    /* Go's backoff: initial x 1.5^(n-1), randomised by +-50%, capped. */
    double iv = (double)r->initial_interval_ms;
    for (int64_t i = 1; i < n && iv < (double)r->max_interval_ms; i++)
        iv *= 1.5;
    if (iv > (double)r->max_interval_ms)
        iv = (double)r->max_interval_ms;
    double jitter = 0.5 + (double)random() / ((double)RAND_MAX + 1.0); /* [0.5, 1.5) */
    double d = iv * jitter;
    if (d > (double)r->max_interval_ms)
        d = (double)r->max_interval_ms;
    return (int64_t)d;
}

/* ---- circuit breakers -------------------------------------------------------------- */

struct resil_breaker {
    char *key;                    /* "<policy>|<flow>|<target>[:<endpoint>]" */
    char *display;                /* "<target>" or "<target>:<endpoint>" */
    char *flow;
    char *res_name;
    char *target;
    const resil_cb_policy *cb;
    resil_cb_state state;
    resil_counts counts;
    uint64_t generation;
    int64_t expiry_ms;            /* closed: end of the window; open: when to half-open */
    int64_t last_used_ms;
};

static resil_breaker **breakers;
static size_t n_breakers;

static void breakers_free(void)
{
    for (size_t i = 0; i < n_breakers; i++) {
        free(breakers[i]->key);
        free(breakers[i]->display);
        free(breakers[i]->flow);
        free(breakers[i]->res_name);
        free(breakers[i]->target);
        free(breakers[i]);
    }
    free(breakers);
    breakers = NULL;
    n_breakers = 0;
}

const char *resil_cb_state_name(resil_cb_state s)
{
    return s == RESIL_CB_OPEN ? METRICS_CB_OPEN : s == RESIL_CB_HALF_OPEN ? METRICS_CB_HALF_OPEN : METRICS_CB_CLOSED;
}

/* Generations are unique across breakers: an outcome recorded against a
 * breaker that was evicted and made again is ignored. */
static uint64_t last_generation;

static void new_generation(resil_breaker *b, int64_t now)
{
    b->generation = ++last_generation;
    memset(&b->counts, 0, sizeof b->counts);
    if (b->state == RESIL_CB_CLOSED)
        b->expiry_ms = b->cb->interval_ms > 0 ? now + b->cb->interval_ms : 0;
    else if (b->state == RESIL_CB_OPEN)
        b->expiry_ms = now + b->cb->timeout_ms;
    else
        b->expiry_ms = 0;
}

static void set_state(resil_breaker *b, resil_cb_state st, int64_t now)
{
    if (b->state == st)
        return;
    resil_cb_state prev = b->state;
    b->state = st;
    new_generation(b, now);
    log_info(SCOPE, "circuit breaker \"%s\" for %s changed state from %s to %s", b->cb->name, b->display,
             resil_cb_state_name(prev), resil_cb_state_name(st));
    metrics_resiliency_cb_state(b->res_name, b->flow, b->target, resil_cb_state_name(st));
    metrics_resiliency_activation(b->res_name, METRICS_POLICY_CIRCUIT_BREAKER, b->flow, b->target,
                                  resil_cb_state_name(st));
}

/* Move on in time: the closed window ends, an open breaker half-opens. */
static void tick(resil_breaker *b, int64_t now)
{
    if (b->state == RESIL_CB_CLOSED && b->expiry_ms && now >= b->expiry_ms)
        new_generation(b, now);
    else if (b->state == RESIL_CB_OPEN && now >= b->expiry_ms)
        set_state(b, RESIL_CB_HALF_OPEN, now);
}

resil_breaker *resil_breaker_get(const resil_policy *p, const char *key)
{
    if (!p->cb)
        return NULL;
    char *full = key && *key ? xasprintf("%s|%s|%s:%s", p->cb->name, p->flow, p->target, key)
                             : xasprintf("%s|%s|%s", p->cb->name, p->flow, p->target);
    int64_t now = now_monotonic_ms();
    size_t same_target = 0, lru = SIZE_MAX;
    for (size_t i = 0; i < n_breakers; i++) {
        if (strcmp(breakers[i]->key, full) == 0 && breakers[i]->cb == p->cb) {
            free(full);
            breakers[i]->last_used_ms = now;
            return breakers[i];
        }
        if (strcmp(breakers[i]->target, p->target) == 0 && strcmp(breakers[i]->flow, p->flow) == 0) {
            same_target++;
            if (lru == SIZE_MAX || breakers[i]->last_used_ms < breakers[lru]->last_used_ms)
                lru = i;
        }
    }
    /* Bounded: circuitBreakerCacheSize breakers per target, MAX_BREAKERS in
     * all; the least recently used one makes room. */
    if ((key && *key && same_target >= (size_t)p->cb_cache_size && lru != SIZE_MAX) || n_breakers >= MAX_BREAKERS) {
        if (n_breakers >= MAX_BREAKERS) {
            lru = 0;
            for (size_t i = 1; i < n_breakers; i++)
                if (breakers[i]->last_used_ms < breakers[lru]->last_used_ms)
                    lru = i;
        }
        resil_breaker *old = breakers[lru];
        free(old->key); free(old->display); free(old->flow); free(old->res_name); free(old->target); free(old);
        breakers[lru] = breakers[--n_breakers];
    }
    resil_breaker *b = xcalloc(1, sizeof *b);
    b->key = full;
    b->display = key && *key ? xasprintf("%s:%s", p->target, key) : xstrdup(p->target);
    b->flow = xstrdup(p->flow ? p->flow : "");
    b->res_name = xstrdup(p->resiliency_name ? p->resiliency_name : "");
    b->target = xstrdup(p->target);
    b->cb = p->cb;
    b->state = RESIL_CB_CLOSED;
    b->last_used_ms = now;
    new_generation(b, now);
    breakers = xrealloc(breakers, (n_breakers + 1) * sizeof *breakers);
    breakers[n_breakers++] = b;
    return b;
}

int resil_breaker_allow(resil_breaker *b, const char **why, uint64_t *generation)
{
    int64_t now = now_monotonic_ms();
    tick(b, now);
    uint32_t max_req = b->cb->max_requests ? b->cb->max_requests : 1;
    if (b->state == RESIL_CB_OPEN) {
        *why = "circuit breaker is open";
        return -1;
    }
    if (b->state == RESIL_CB_HALF_OPEN && b->counts.requests >= max_req) {
        *why = "too many requests";
        return -1;
    }
    b->counts.requests++;
    *generation = b->generation;
    return 0;
}

void resil_breaker_record(resil_breaker *b, uint64_t generation, int failed)
{
    int64_t now = now_monotonic_ms();
    tick(b, now);
    if (generation != b->generation)
        return; /* from before the last state change: ignored, as gobreaker */
    uint32_t max_req = b->cb->max_requests ? b->cb->max_requests : 1;
    if (!failed) {
        b->counts.total_successes++;
        b->counts.consecutive_successes++;
        b->counts.consecutive_failures = 0;
        if (b->state == RESIL_CB_HALF_OPEN && b->counts.consecutive_successes >= max_req)
            set_state(b, RESIL_CB_CLOSED, now);
        return;
    }
    b->counts.total_failures++;
    b->counts.consecutive_failures++;
    b->counts.consecutive_successes = 0;
    if (b->state == RESIL_CB_HALF_OPEN || (b->state == RESIL_CB_CLOSED && resil_trip(b->cb, &b->counts)))
        set_state(b, RESIL_CB_OPEN, now);
}

resil_cb_state resil_breaker_state(resil_breaker *b)
{
    tick(b, now_monotonic_ms());
    return b->state;
}

size_t resiliency_breakers(resil_breaker_info *out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < n_breakers && k < max; i++) {
        tick(breakers[i], now_monotonic_ms());
        out[k++] = (resil_breaker_info){breakers[i]->cb->name, breakers[i]->display, breakers[i]->flow,
                                        breakers[i]->state, breakers[i]->counts};
    }
    return k;
}

/* ---- the runner -------------------------------------------------------------------- */

enum run_state {
    R_RUNNING,      /* an attempt is in flight */
    R_CANCELLING,   /* inside hooks->cancel after a timeout */
    R_BACKOFF,      /* waiting for the retry timer */
    R_WAIT_LATE,    /* retry due, but the timed-out attempt still runs */
    R_FAILED_LATE,  /* gave up (fail() called); the timed-out attempt still runs */
};

struct resil_run {
    resil_policy p;
    const resil_hooks *h;
    void *arg;
    uint64_t gen;           /* breaker generation of the attempt (0 = none) */
    int attempts;
    int late_pending;
    enum run_state state;
    struct event *timer;
    char *endpoint;
    resil_run *prev, *next;   /* live runners, for shutdown */
};

static resil_run *live;
static int stopping;

static void run_free(resil_run *r)
{
    if (r->prev) r->prev->next = r->next; else live = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->timer)
        event_free(r->timer);
    free(r->endpoint);
    free(r);
}

static void arm(resil_run *r, int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(r->timer, &tv);
}

/* Give up without an answer of the app/component: deadline or breaker. */
static void give_up(resil_run *r, const char *why)
{
    const resil_hooks *h = r->h;
    void *arg = r->arg;
    if (r->late_pending) {
        r->state = R_FAILED_LATE;
        h->fail(arg, why, 1);
        return;
    }
    run_free(r);
    h->fail(arg, why, 0);
}

static void start_attempt(resil_run *r)
{
    if (r->p.cb) {
        /* Looked up at each use: breakers may be evicted meanwhile. */
        const char *why;
        if (resil_breaker_allow(resil_breaker_get(&r->p, r->endpoint), &why, &r->gen) != 0) {
            give_up(r, why);
            return;
        }
    }
    r->attempts++;
    if (r->attempts > 1 && r->p.retry)
        metrics_resiliency_activation(r->p.resiliency_name, METRICS_POLICY_RETRY, r->p.flow, r->p.target, "");
    r->state = R_RUNNING;
    if (r->p.timeout_ms > 0)
        arm(r, r->p.timeout_ms);
    r->h->attempt(r->arg); /* may complete (and free r) before returning */
}

/* The delay before the next attempt, or -1 for none. */
static int64_t next_delay(resil_run *r, int status, int permanent)
{
    if (permanent || !r->p.retry || stopping)
        return -1;
    /* Dapr's built-in retries cover failures to reach the peer only. */
    if (!r->p.retry_is_user && status != 0)
        return -1;
    if (!resil_retry_matches_http(r->p.retry, status))
        return -1;
    /* An open breaker is seen by the next attempt, which then fails with
     * the breaker's (permanent) error, as in Dapr. */
    return resil_retry_delay(r->p.retry, r->attempts);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    resil_run *r = arg;
    if (r->state == R_BACKOFF) {
        if (r->late_pending)
            r->state = R_WAIT_LATE;
        else
            start_attempt(r);
        return;
    }
    if (r->state != R_RUNNING)
        return;
    /* The attempt's deadline passed. */
    log_debug(SCOPE, "%s: attempt %d timed out after %lld ms", r->p.target, r->attempts, (long long)r->p.timeout_ms);
    metrics_resiliency_activation(r->p.resiliency_name, METRICS_POLICY_TIMEOUT, r->p.flow, r->p.target, "");
    if (r->p.cb)
        resil_breaker_record(resil_breaker_get(&r->p, r->endpoint), r->gen, 1);
    r->state = R_CANCELLING;
    int stopped = r->h->cancel ? r->h->cancel(r->arg) : 0;
    r->late_pending = !stopped;
    int64_t d = next_delay(r, 0, 0);
    if (d >= 0) {
        log_info(SCOPE, "Error processing operation %s%s%s. Retrying…", r->p.target, r->endpoint ? ":" : "",
                 r->endpoint ? r->endpoint : "");
        r->state = R_BACKOFF;
        arm(r, d);
        return;
    }
    give_up(r, "context deadline exceeded");
}

resil_run *resil_run_new(const resil_policy *p, const char *endpoint, const resil_hooks *h, void *arg)
{
    resil_run *r = xcalloc(1, sizeof *r);
    r->p = *p;
    r->h = h;
    r->arg = arg;
    r->endpoint = endpoint ? xstrdup(endpoint) : NULL;
    r->timer = evtimer_new(loop_base(), on_timer, r);
    r->next = live;
    if (live) live->prev = r;
    live = r;
    if (p->timeout_ms > 0)
        metrics_resiliency_count(p->resiliency_name, METRICS_POLICY_TIMEOUT, p->flow, p->target, "");
    if (p->retry && p->retry_is_user)
        metrics_resiliency_count(p->resiliency_name, METRICS_POLICY_RETRY, p->flow, p->target, "");
    if (p->cb)
        metrics_resiliency_count(p->resiliency_name, METRICS_POLICY_CIRCUIT_BREAKER, p->flow, p->target, "");
    return r;
}

void resil_run_go(resil_run *r)
{
    start_attempt(r);
}

int resil_run_attempts(const resil_run *r)
{
    return r ? r->attempts : 1;
}

int resil_complete(resil_run *r, int failed, int status, int permanent)
{
    if (!r)
        return RESIL_FINISH;
    switch (r->state) {
    case R_CANCELLING:
        return RESIL_IGNORE;
    case R_FAILED_LATE:
        run_free(r);
        return RESIL_LATE_FREE;
    case R_BACKOFF:
        r->late_pending = 0; /* the retry timer starts the next attempt */
        return RESIL_IGNORE;
    case R_WAIT_LATE:
        /* The retry was due: start it from a timer, never re-entrantly. */
        r->late_pending = 0;
        r->state = R_BACKOFF;
        arm(r, 0);
        return RESIL_IGNORE;
    case R_RUNNING:
        break;
    }
    evtimer_del(r->timer);
    if (r->p.cb)
        resil_breaker_record(resil_breaker_get(&r->p, r->endpoint), r->gen, failed);
    if (!failed) {
        if (r->attempts > 1 && r->p.retry)
            log_info(SCOPE, "Recovered processing operation %s%s%s.", r->p.target, r->endpoint ? ":" : "",
                     r->endpoint ? r->endpoint : "");
        run_free(r);
        return RESIL_FINISH;
    }
    int64_t d = next_delay(r, status, permanent);
    if (d < 0) {
        run_free(r);
        return RESIL_FINISH;
    }
    /* Dapr's words, at info as in Dapr. */
    log_info(SCOPE, "Error processing operation %s%s%s. Retrying…", r->p.target, r->endpoint ? ":" : "",
             r->endpoint ? r->endpoint : "");
    log_debug(SCOPE, "%s: attempt %d failed (status %d); retrying in %lld ms", r->p.target, r->attempts, status,
              (long long)d);
    r->state = R_BACKOFF;
    arm(r, d);
    return RESIL_RETRY;
}

void resiliency_shutdown(void)
{
    stopping = 1;
    /* Runners waiting for a retry give up now so that their callers answer
     * while the servers still exist. */
    for (resil_run *r = live, *next; r; r = next) {
        next = r->next;
        if (r->state == R_BACKOFF || r->state == R_WAIT_LATE) {
            evtimer_del(r->timer);
            give_up(r, "shutting down");
        }
    }
}

/* ---- component operations (targets.components ... outbound) -------------------------- */

struct resil_comp {
    resil_run *rs;
    component *comp;
    void (*fn)(void *);
    void *op;
    const resil_comp_ops *ops;
    resil_comp **slot;
    int *first_busy;   /* the caller's flag, set by a saturated first attempt */
};

static void comp_drop(resil_comp *a, int free_op)
{
    *a->slot = NULL;
    atomic_fetch_sub(&a->comp->inflight, 1);
    if (free_op)
        a->ops->free_op(a->op);
    free(a);
}

static void comp_attempt(void *arg)
{
    resil_comp *a = arg;
    int first = resil_run_attempts(a->rs) == 1;
    if (!first && a->ops->reset)
        a->ops->reset(a->op);
    if (component_dispatch(a->comp, a->fn, a->op) == 0)
        return;
    /* The worker pool is saturated: that attempt failed for good. */
    resil_complete(a->rs, 1, 0, 1);
    a->rs = NULL;
    if (first) {
        /* Only ever inside resil_run_go() below: the flag is on its stack. */
        *a->first_busy = 1; /* resil_component_dispatch() answers 429 */
        return;
    }
    a->ops->fail(a->op, "too many operations in flight; try again later");
    comp_drop(a, 1);
}

static void comp_fail(void *arg, const char *err, int late_pending)
{
    resil_comp *a = arg;
    a->ops->fail(a->op, err);
    if (!late_pending)
        comp_drop(a, 1);
    /* else: the plugin still holds op; resil_component_done() frees it. */
}

static const resil_hooks comp_hooks = {comp_attempt, NULL, comp_fail};

int resil_component_dispatch(component *comp, resil_kind kind, void (*fn)(void *), void *op,
                             const resil_comp_ops *ops, resil_comp **slot)
{
    *slot = NULL;
    resil_policy pol;
    if (!resiliency_component_policy(comp->name, kind, 0, &pol))
        return component_dispatch(comp, fn, op);
    resil_comp *a = xcalloc(1, sizeof *a);
    a->comp = comp;
    a->fn = fn;
    a->op = op;
    a->ops = ops;
    a->slot = slot;
    int first_busy = 0;
    a->first_busy = &first_busy;
    *slot = a;
    a->rs = resil_run_new(&pol, NULL, &comp_hooks, a);
    resil_run_go(a->rs);
    /* Unless first_busy, a and op may be gone already (an open breaker
     * answered and freed them): touch neither. */
    if (first_busy) {
        *slot = NULL;
        free(a);
        return -1;
    }
    return 0;
}

int resil_component_done(resil_comp **slot, int failed, int permanent)
{
    resil_comp *a = *slot;
    if (!a)
        return 0;
    switch (resil_complete(a->rs, failed, 0, permanent)) {
    case RESIL_FINISH:
        *slot = NULL;
        free(a);
        return 0;
    case RESIL_LATE_FREE:
        comp_drop(a, 1);
        return 1;
    default:
        return 1; /* retried later: op stays with the runner */
    }
}
