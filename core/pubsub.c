/*
 * pubsub.c - subscriptions and delivery (reference §3.3-§3.6).
 *
 * A message travels: broker plugin thread -> handler() copies it and posts
 * it to the loop -> classify(): parsed as a CloudEvent (or wrapped, for
 * rawPayload), expiry checked, route chosen by the subscription's rules ->
 * POST to the app over the app channel -> the app's answer decides
 * SUCCESS, RETRY or DROP -> ack to the plugin, which acknowledges its
 * broker only after SUCCESS or DROP.  RETRY is retried here as the
 * component's inbound resiliency policy says (timeout, breaker, retries); after that the message goes to the dead-letter topic when
 * one is set (then acked), else RETRY goes back to the broker, which
 * redelivers.  Nothing is acknowledged before the app answered, so a daprd
 * killed mid-delivery loses nothing.
 *
 * Bulk subscriptions (bulkSubscribe.enabled) batch in the runtime over the
 * same per-message handler, as Dapr's default bulk subscriber does: each
 * message joins its subscription's batch, which is sent when it holds
 * maxMessagesCount messages or maxAwaitDurationMs after its first one.
 * Every entry keeps its own ack, so per-entry statuses map one to one.
 *
 * Back-pressure: each subscription asks its plugin for a bounded number of
 * unacked messages (MAX_IN_FLIGHT, a batch or two for bulk, and 1 when
 * --app-max-concurrency is 1 so that a topic is delivered in order even
 * across retries).  Everything here runs on the loop thread except
 * handler().
 */
#include "config.h"
#include "pubsub.h"
#include "app_channel.h"
#include "cel.h"
#include "cloudevent.h"
#include "json_out.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "resiliency.h"
#include "runtime.h"
#include "trace.h"
#include "tracing.h"
#include "util.h"
#include "uuid_gen.h"

#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#define SCOPE "dapr.runtime.pubsub"
#define MAX_IN_FLIGHT 32
#define BULK_MAX_IN_FLIGHT 2048  /* bound on unacked messages of a bulk subscription */
#define BULK_DEFAULT_COUNT 100   /* Dapr's defaults for bulkSubscribe */
#define BULK_DEFAULT_AWAIT_MS 1000
/* Retries of a delivery follow the component's inbound resiliency policy
 * (resiliency.c; a few quick ones when no policy applies). */
#define RETRY_BASE_MS 200        /* re-check when the app channel is saturated */
#define PAUSE_RECHECK_MS 500     /* while the app is unhealthy */

struct route_rule {
    char *match;                 /* "" = no match expression */
    cel_program *prog;
    char *path;                  /* as given (the metadata API shows it so) */
};

struct delivery;

struct sub {
    char *pubsub, *topic, *dead_letter;
    struct route_rule *rules;    /* rules in order, then default (match "") */
    size_t n_rules;
    int raw;                     /* metadata rawPayload */
    kv_list meta;
    const char *kind;            /* "DECLARATIVE" or "PROGRAMMATIC" */
    component *comp;
    uint64_t id;
    int active;
    /* bulk subscribe */
    int bulk;
    int bulk_max;                /* maxMessagesCount */
    int bulk_await_ms;           /* maxAwaitDurationMs */
    struct delivery **batch;     /* waiting to be sent */
    size_t n_batch, cap_batch;
    struct event *batch_timer;
};

static struct sub *subs;
static size_t n_subs;
static size_t inflight;
static int stopping;
static void (*start_done)(void);
static size_t subscribe_pending;

/* ---- subscriptions ------------------------------------------------------ */

static void sub_free(struct sub *s)
{
    free(s->pubsub);
    free(s->topic);
    free(s->dead_letter);
    for (size_t i = 0; i < s->n_rules; i++) {
        free(s->rules[i].match);
        free(s->rules[i].path);
        cel_free(s->rules[i].prog);
    }
    free(s->rules);
    kv_list_free(&s->meta);
    free(s->batch);
    if (s->batch_timer)
        event_free(s->batch_timer);
}

static int add_rule(struct sub *s, const char *match, const char *path, const char *origin)
{
    char err[512] = "";
    cel_program *prog = NULL;
    if (match && *match) {
        prog = cel_compile(match, err, sizeof err);
        if (!prog) {
            log_error(SCOPE, "%s: subscription to %s/%s: routing rule '%s' rejected: %s", origin, s->pubsub,
                      s->topic, match, err);
            return -1;
        }
    }
    s->rules = xrealloc(s->rules, (s->n_rules + 1) * sizeof *s->rules);
    s->rules[s->n_rules++] = (struct route_rule){.match = xstrdup(match ? match : ""), .prog = prog,
                                                 .path = xstrdup(path)};
    return 0;
}

/* bulkSubscribe settings: <= 0 means Dapr's default. */
static void set_bulk(struct sub *s, int enabled, long long max_count, long long await_ms)
{
    s->bulk = enabled;
    s->bulk_max = max_count > 0 ? (max_count > 1000000 ? 1000000 : (int)max_count) : BULK_DEFAULT_COUNT;
    s->bulk_await_ms = await_ms > 0 ? (await_ms > 3600000 ? 3600000 : (int)await_ms) : BULK_DEFAULT_AWAIT_MS;
}

/* Add (or replace: programmatic wins over declarative) a subscription. */
static void add_sub(struct sub *s)
{
    for (size_t i = 0; i < n_subs; i++) {
        if (strcmp(subs[i].pubsub, s->pubsub) == 0 && strcmp(subs[i].topic, s->topic) == 0) {
            if (strcmp(s->kind, "PROGRAMMATIC") == 0 && strcmp(subs[i].kind, "DECLARATIVE") == 0) {
                log_info(SCOPE, "the app's subscription to %s/%s replaces the declarative one", s->pubsub,
                         s->topic);
                sub_free(&subs[i]);
                subs[i] = *s;
            } else {
                log_warn(SCOPE, "a subscription to %s/%s already exists: the later one is ignored", s->pubsub,
                         s->topic);
                sub_free(s);
            }
            return;
        }
    }
    subs = xrealloc(subs, (n_subs + 1) * sizeof *subs);
    subs[n_subs++] = *s;
}

int pubsub_init(const component_list *resources)
{
    for (size_t i = 0; i < resources->n_subs; i++) {
        const subscription_spec *d = &resources->subs[i];
        struct sub s = {.pubsub = xstrdup(d->pubsub), .topic = xstrdup(d->topic), .kind = "DECLARATIVE"};
        if (d->dead_letter)
            s.dead_letter = xstrdup(d->dead_letter);
        for (size_t k = 0; k < d->n_meta; k++)
            kv_list_set(&s.meta, d->meta[k].name, d->meta[k].value);
        set_bulk(&s, d->bulk_enabled, d->bulk_max_count, d->bulk_max_await_ms);
        int bad = 0;
        for (size_t k = 0; k < d->n_rules && !bad; k++)
            bad = add_rule(&s, d->rules[k].match, d->rules[k].path, d->file) != 0;
        const char *def = d->default_path ? d->default_path : d->route;
        if (!bad && def)
            bad = add_rule(&s, "", def, d->file) != 0;
        if (bad) {
            sub_free(&s);
            return -1;
        }
        add_sub(&s);
    }
    return 0;
}

/* A JSON number or numeric string as an integer (Go's int32 fields). */
static long long json_int_of(json_t *v)
{
    if (json_is_integer(v))
        return (long long)json_integer_value(v);
    if (json_is_real(v))
        return (long long)json_real_value(v);
    return 0;
}

/* Parse one element of the app's /dapr/subscribe answer. */
static void add_programmatic(json_t *e)
{
    const char *pubsub = json_string_value(json_object_get(e, "pubsubname"));
    const char *topic = json_string_value(json_object_get(e, "topic"));
    if (!pubsub || !*pubsub || !topic || !*topic) {
        log_warn(SCOPE, "/dapr/subscribe: an entry without pubsubname or topic was ignored");
        return;
    }
    struct sub s = {.pubsub = xstrdup(pubsub), .topic = xstrdup(topic), .kind = "PROGRAMMATIC"};
    const char *dlt = json_string_value(json_object_get(e, "deadLetterTopic"));
    if (dlt && *dlt)
        s.dead_letter = xstrdup(dlt);
    json_t *meta = json_object_get(e, "metadata");
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v)
        if (json_is_string(v))
            kv_list_set(&s.meta, k, json_string_value(v));
    json_t *bulk = json_object_get(e, "bulkSubscribe");
    set_bulk(&s, json_is_true(json_object_get(bulk, "enabled")),
             json_int_of(json_object_get(bulk, "maxMessagesCount")),
             json_int_of(json_object_get(bulk, "maxAwaitDurationMs")));
    json_t *routes = json_object_get(e, "routes");
    json_t *rule;
    size_t idx;
    int bad = 0;
    json_array_foreach(json_object_get(routes, "rules"), idx, rule) {
        const char *m = json_string_value(json_object_get(rule, "match"));
        const char *p = json_string_value(json_object_get(rule, "path"));
        if (p && *p && !bad)
            bad = add_rule(&s, m, p, "/dapr/subscribe") != 0;
    }
    const char *def = json_string_value(json_object_get(routes, "default"));
    if (!def || !*def)
        def = json_string_value(json_object_get(e, "route"));
    if (!bad && def && *def)
        bad = add_rule(&s, "", def, "/dapr/subscribe") != 0;
    if (bad || s.n_rules == 0) {
        if (!bad)
            log_warn(SCOPE, "/dapr/subscribe: subscription to %s/%s has no route: discarded", pubsub, topic);
        sub_free(&s);
        return;
    }
    add_sub(&s);
}

/* ---- scopes --------------------------------------------------------------- */

/* Does a "app1=t1,t2;app2=t3" list give app_id a list, and is topic in it? */
static int scope_lookup(const char *scopes, const char *app_id, const char *topic, int *has_list)
{
    *has_list = 0;
    if (!scopes || !*scopes)
        return 0;
    char *copy = xstrdup(scopes);
    int found = 0;
    for (char *s1 = NULL, *entry = strtok_r(copy, ";", &s1); entry; entry = strtok_r(NULL, ";", &s1)) {
        char *eq = strchr(entry, '=');
        if (!eq) continue;
        *eq = '\0';
        while (*entry == ' ') entry++;
        if (strcmp(entry, app_id) != 0) continue;
        *has_list = 1;
        for (char *s2 = NULL, *t = strtok_r(eq + 1, ",", &s2); t; t = strtok_r(NULL, ",", &s2)) {
            while (*t == ' ') t++;
            if (strcmp(t, topic) == 0) found = 1;
        }
    }
    free(copy);
    return found;
}

static int in_comma_list(const char *list, const char *topic)
{
    if (!list) return 0;
    char *copy = xstrdup(list);
    int found = 0;
    for (char *s = NULL, *t = strtok_r(copy, ",", &s); t; t = strtok_r(NULL, ",", &s)) {
        while (*t == ' ') t++;
        if (strcmp(t, topic) == 0) found = 1;
    }
    free(copy);
    return found;
}

static int topic_allowed(component *c, const char *topic, const char *scope_key)
{
    const dapr_host_api *api = host_api();
    const char *allowed = api->metadata_get(&c->host, "allowedTopics");
    const char *protected_ = api->metadata_get(&c->host, "protectedTopics");
    const char *scopes = api->metadata_get(&c->host, scope_key);
    if (allowed && *allowed && !in_comma_list(allowed, topic))
        return 0;
    int has_list;
    int listed = scope_lookup(scopes, rt.app_id, topic, &has_list);
    if ((protected_ && in_comma_list(protected_, topic)) || has_list)
        return listed;
    return 1;
}

int pubsub_may_publish(component *c, const char *topic)
{
    return topic_allowed(c, topic, "publishingScopes");
}

/* ---- publishing ----------------------------------------------------------- */

struct publish_job {
    component *comp;
    char *topic;
    void *data;
    size_t len;
    char *content_type;
    kv_list meta;
    pubsub_publish_cb cb;
    void *arg;
    dapr_status st;
    char *msg;
    struct timespec started;     /* metrics: egress latency */
    resil_comp *res;             /* outbound resiliency runner while it lives */
};

static void publish_job_free(struct publish_job *j)
{
    free(j->topic);
    free(j->data);
    free(j->content_type);
    kv_list_free(&j->meta);
    free(j->msg);
    free(j);
}

/* Publish errors a retry cannot change. */
static int publish_permanent(dapr_status st)
{
    return st == DAPR_ERR_INVALID_ARGUMENT || st == DAPR_ERR_NOT_SUPPORTED || st == DAPR_ERR_NOT_FOUND ||
           st == DAPR_ERR_PERMISSION_DENIED;
}

static void publish_finish(void *arg)
{
    struct publish_job *j = arg;
    if (resil_component_done(&j->res, j->st != DAPR_OK, publish_permanent(j->st)))
        return;
    atomic_fetch_sub(&j->comp->inflight, 1);
    metrics_pubsub_egress(j->comp->name, j->topic, j->st == DAPR_OK, metrics_elapsed_ms(&j->started, NULL));
    j->cb(j->arg, j->st, j->msg);
    publish_job_free(j);
}

static void publish_done(void *ctx, const dapr_result *res)
{
    struct publish_job *j = ctx;
    j->st = res->status;
    j->msg = res->message ? xstrdup(res->message) : NULL;
    loop_post(publish_finish, j);
}

static void publish_run(void *arg)
{
    struct publish_job *j = arg;
    dapr_pubsub_publish_req req = {.topic = j->topic, .data = {j->data, j->len},
                                   .content_type = j->content_type, .metadata = kv_list_view(&j->meta)};
    ((const dapr_pubsub_vtable *)j->comp->def->vtable)->publish(j->comp->instance, &req, publish_done, j);
}

static void publish_reset(void *arg)
{
    struct publish_job *j = arg;
    free(j->msg);
    j->msg = NULL;
}

/* The outbound policy gave up (deadline, breaker): answer now. */
static void publish_fail(void *arg, const char *err)
{
    struct publish_job *j = arg;
    metrics_pubsub_egress(j->comp->name, j->topic, 0, metrics_elapsed_ms(&j->started, NULL));
    j->cb(j->arg, DAPR_ERR_UNAVAILABLE, err);
}

static void publish_free_cb(void *arg)
{
    publish_job_free(arg);
}

static const resil_comp_ops publish_res_ops = {publish_reset, publish_fail, publish_free_cb};

int pubsub_publish(component *c, const char *topic, const void *data, size_t len, const char *content_type,
                   const kv_list *metadata, pubsub_publish_cb cb, void *arg)
{
    struct publish_job *j = xcalloc(1, sizeof *j);
    j->comp = c;
    j->topic = xstrdup(topic);
    j->data = xmalloc(len + 1);
    if (len) memcpy(j->data, data, len);
    j->len = len;
    j->content_type = xstrdup(content_type ? content_type : "");
    if (metadata)
        for (size_t i = 0; i < metadata->n; i++)
            kv_list_set(&j->meta, metadata->items[i].name, metadata->items[i].value);
    j->cb = cb;
    j->arg = arg;
    clock_gettime(CLOCK_MONOTONIC, &j->started);
    atomic_fetch_add(&c->inflight, 1);
    /* Under the component's outbound policy; an open breaker answers
     * (cb) before this returns. */
    if (resil_component_dispatch(c, RESIL_KIND_PUBSUB, publish_run, j, &publish_res_ops, &j->res) != 0) {
        atomic_fetch_sub(&c->inflight, 1);
        publish_job_free(j);
        return -1;
    }
    return 0;
}

/* ---- delivery --------------------------------------------------------------- */

struct delivery {
    struct sub *s;
    unsigned char *data;
    size_t len;
    char *content_type;
    kv_list meta;                /* the broker's message metadata */
    dapr_pubsub_ack_fn ack;
    void *ack_ctx;
    int attempts;                /* app deliveries that asked for a retry */
    struct event *timer;
    struct timespec sent_at;     /* metrics: when the app was last called */
    struct event *deadline;      /* resiliency timeout of the app call */
    uint64_t cb_gen;             /* breaker generation of the app call (0 = none) */
    int timed_out;
};

/* Pending retries, so that shutdown can hand them back to the brokers. */
struct waiting {
    struct delivery *d;
    LIST_ENTRY(waiting) link;
};
static LIST_HEAD(, waiting) waiting_list = LIST_HEAD_INITIALIZER(waiting_list);

static void finish(struct delivery *d, dapr_pubsub_ack verdict)
{
    d->ack(d->ack_ctx, verdict);
    if (d->timer)
        event_free(d->timer);
    if (d->deadline)
        event_free(d->deadline);
    free(d->data);
    free(d->content_type);
    kv_list_free(&d->meta);
    free(d);
    inflight--;
}

static void attempt(struct delivery *d);

static void retry_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    struct waiting *w = arg;
    struct delivery *d = w->d;
    LIST_REMOVE(w, link);
    free(w);
    attempt(d);
}

static void retry_later(struct delivery *d, int64_t ms)
{
    struct waiting *w = xcalloc(1, sizeof *w);
    w->d = d;
    LIST_INSERT_HEAD(&waiting_list, w, link);
    if (!d->timer)
        d->timer = evtimer_new(loop_base(), retry_fire, w);
    else
        evtimer_assign(d->timer, loop_base(), retry_fire, w);
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(d->timer, &tv);
}

static void dead_letter_done(void *arg, dapr_status st, const char *msg)
{
    struct delivery *d = arg;
    if (st != DAPR_OK) {
        log_error(SCOPE, "publishing to dead-letter topic %s failed (%s): message left to the broker",
                  d->s->dead_letter, msg ? msg : "error");
        finish(d, DAPR_PUBSUB_ACK_RETRY);
        return;
    }
    finish(d, DAPR_PUBSUB_ACK_SUCCESS);
}

/* The app did not take the message: dead-letter it when configured (the
 * original bytes and metadata, on the same component, as Dapr does). */
static void give_up(struct delivery *d, dapr_pubsub_ack otherwise, const char *why)
{
    if (d->s->dead_letter && *d->s->dead_letter && !stopping) {
        log_warn(SCOPE, "%s/%s: %s: sending the message to dead-letter topic %s", d->s->pubsub, d->s->topic,
                 why, d->s->dead_letter);
        if (pubsub_publish(d->s->comp, d->s->dead_letter, d->data, d->len, d->content_type, &d->meta,
                           dead_letter_done, d) == 0)
            return;
        otherwise = DAPR_PUBSUB_ACK_RETRY;
    } else if (otherwise == DAPR_PUBSUB_ACK_DROP) {
        log_warn(SCOPE, "%s/%s: %s: message dropped", d->s->pubsub, d->s->topic, why);
    } else {
        log_warn(SCOPE, "%s/%s: %s: the message goes back to the broker for redelivery", d->s->pubsub,
                 d->s->topic, why);
    }
    finish(d, otherwise);
}

/* A retriable failure: retry here a few times, then give up (dead letter
 * or back to the broker). */
static void retry_or_give_up(struct delivery *d, const char *why, int status)
{
    if (stopping) {
        finish(d, DAPR_PUBSUB_ACK_RETRY);
        return;
    }
    resil_policy pol;
    resiliency_component_policy(d->s->pubsub, RESIL_KIND_PUBSUB, 1, &pol);
    /* matching.httpStatusCodes filters the app's HTTP errors; a RETRY
     * answer or no answer is always retried. */
    int64_t ms = status >= 400 && !resil_retry_matches_http(pol.retry, status) ? -1
                                                                              : resil_retry_delay(pol.retry, d->attempts + 1);
    if (ms >= 0) {
        d->attempts++;
        if (pol.retry_is_user)
            metrics_resiliency_activation(pol.resiliency_name, METRICS_POLICY_RETRY, pol.flow, pol.target, "");
        log_debug(SCOPE, "%s/%s: %s; retry %d in %lld ms", d->s->pubsub, d->s->topic, why, d->attempts,
                  (long long)ms);
        retry_later(d, ms);
        return;
    }
    give_up(d, DAPR_PUBSUB_ACK_RETRY, why);
}

/* The app call ended: stop its deadline, tell the breaker. */
static void app_call_ended(struct delivery *d, int failed)
{
    if (d->deadline)
        evtimer_del(d->deadline);
    if (d->cb_gen) {
        resil_policy pol;
        resiliency_component_policy(d->s->pubsub, RESIL_KIND_PUBSUB, 1, &pol);
        if (pol.cb)
            resil_breaker_record(resil_breaker_get(&pol, NULL), d->cb_gen, failed);
        d->cb_gen = 0;
    }
}

static void deadline_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    struct delivery *d = arg;
    d->timed_out = 1;
    resil_policy pol;
    resiliency_component_policy(d->s->pubsub, RESIL_KIND_PUBSUB, 1, &pol);
    metrics_resiliency_activation(pol.resiliency_name, METRICS_POLICY_TIMEOUT, pol.flow, pol.target, "");
    /* Its callback, on_app_answer(), runs inside the cancel. */
    app_channel_cancel(d);
}

/* A member of an object by name, as Go's encoding/json finds struct fields:
 * the exact name first, else the first case-insensitive match. */
static json_t *member_ci(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    if (v)
        return v;
    const char *k;
    json_object_foreach(o, k, v)
        if (strcasecmp(k, name) == 0)
            return v;
    return NULL;
}

/* The app's answer to one message, read as Dapr reads it (Go's decoder
 * takes the first JSON value of the body; a body it cannot decode into
 * {"status": string} means SUCCESS).  0 SUCCESS, 1 RETRY, 2 DROP. */
static int app_verdict(struct evbuffer *body, char *status_out, size_t status_len)
{
    status_out[0] = '\0';
    size_t len = body ? evbuffer_get_length(body) : 0;
    if (!len)
        return 0;
    json_t *j = json_loadb((const char *)evbuffer_pullup(body, -1), len,
                           JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, NULL);
    json_t *st = json_is_object(j) ? member_ci(j, "status") : NULL;
    int verdict = 0;
    if (json_is_string(st)) {
        const char *s = json_string_value(st);
        snprintf(status_out, status_len, "%s", s);
        /* Case-sensitive, as Dapr: "success" is an unknown status. */
        verdict = (!*s || strcmp(s, "SUCCESS") == 0) ? 0 : strcmp(s, "DROP") == 0 ? 2 : 1;
    }
    json_decref(j);
    return verdict;
}

/* dapr_component_pubsub_ingress_*: one per answer of the app, with
 * Dapr's process_status words. */
static void ingress_metric(struct delivery *d, const char *process_status)
{
    metrics_pubsub_ingress(d->s->pubsub, d->s->topic, process_status, NULL,
                           metrics_elapsed_ms(&d->sent_at, NULL));
}

static void on_app_answer(void *arg, const http_response *r)
{
    struct delivery *d = arg;
    char why[160];
    if (r->status >= 200 && r->status < 300) {
        char status[64];
        int verdict = app_verdict(r->body, status, sizeof status);
        app_call_ended(d, verdict == 1);
        ingress_metric(d, verdict == 0 ? "success" : verdict == 2 ? "drop" : "retry");
        if (verdict == 0) {
            finish(d, DAPR_PUBSUB_ACK_SUCCESS);
            return;
        }
        if (verdict == 2) {
            give_up(d, DAPR_PUBSUB_ACK_DROP, "the app answered DROP");
            return;
        }
        snprintf(why, sizeof why, "the app answered status %s", status);
    } else if (r->status == 404) {
        app_call_ended(d, 1);
        ingress_metric(d, "drop");
        log_error(SCOPE, "%s/%s: non-retriable error: the app answered 404", d->s->pubsub, d->s->topic);
        give_up(d, DAPR_PUBSUB_ACK_DROP, "the app answered 404");
        return;
    } else if (r->status) {
        app_call_ended(d, 1);
        ingress_metric(d, "retry");
        snprintf(why, sizeof why, "the app answered HTTP %d", r->status);
    } else {
        app_call_ended(d, 1);
        ingress_metric(d, "retry");
        if (d->timed_out)
            snprintf(why, sizeof why, "the app did not answer in time (context deadline exceeded)");
        else
            snprintf(why, sizeof why, "the app could not be reached (%s)", r->error ? r->error : "error");
    }
    d->timed_out = 0;
    retry_or_give_up(d, why, r->status);
}

static int header_name_ok(const char *n)
{
    if (!*n) return 0;
    for (const char *p = n; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p))
            return 0;
    return 1;
}

static int header_value_ok(const char *v)
{
    /* Control characters are refused; bytes >= 0x80 (obs-text) are not. */
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}

/* Message metadata the subscriber sees as a header. */
static int meta_is_header(const dapr_kv *kv)
{
    return header_name_ok(kv->name) && header_value_ok(kv->value) && strcasecmp(kv->name, "Content-Length") != 0 &&
           strcasecmp(kv->name, "Content-Type") != 0 && strcasecmp(kv->name, "Transfer-Encoding") != 0 &&
           strcasecmp(kv->name, "Host") != 0 && strcasecmp(kv->name, "Connection") != 0;
}

static int media_type_is(const char *ct, const char *want)
{
    if (!ct)
        return 0;
    while (*ct == ' ') ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ') n--;
    return strlen(want) == n && strncasecmp(ct, want, n) == 0;
}

enum { C_DELIVER, C_DROP, C_FAIL };

/* What to do with a message: C_DELIVER with the event (for routing and the
 * headers; a new reference) and the route path, or C_DROP / C_FAIL with a
 * reason.  Dapr's order: decode, expiry, routing. */
static int classify(struct delivery *d, json_t **event_out, const char **path_out, char *why, size_t why_len)
{
    struct sub *s = d->s;
    json_t *event;
    *event_out = NULL;
    const char *ct = d->content_type && *d->content_type ? d->content_type : kv_list_get(&d->meta, "content-type");
    if (s->raw) {
        event = cloudevent_wrap_raw(d->data, d->len, s->topic, s->pubsub, &d->meta);
    } else if (media_type_is(ct, "application/octet-stream")) {
        /* A binary-mode CloudEvent: attributes from "ce_" metadata. */
        event = json_object();
        for (size_t i = 0; i < d->meta.n; i++)
            if (strncasecmp(d->meta.items[i].name, "ce_", 3) == 0 && d->meta.items[i].name[3]) {
                char *key = xstrdup(d->meta.items[i].name + 3);
                for (char *p = key; *p; p++)
                    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
                json_t *v = json_string(d->meta.items[i].value);
                json_object_set_new(event, key, v ? v : json_string(""));
                free(key);
            }
        char *b = base64_encode(d->data, d->len);
        json_object_set_new(event, "data", json_string(b));
        free(b);
        json_object_set_new(event, "datacontenttype", json_string(ct));
    } else {
        event = cloudevent_parse(d->data, d->len, 0);
        if (!json_is_object(event)) {
            json_decref(event);
            snprintf(why, why_len, "the message is not a JSON CloudEvent");
            return C_FAIL;
        }
        /* Tracing context missing from the event: from the metadata. */
        static const char *trace_keys[] = {"traceid", "traceparent", "tracestate"};
        for (size_t i = 0; i < 3; i++) {
            const char *v = kv_list_get(&d->meta, trace_keys[i]);
            if (v && !json_object_get(event, trace_keys[i]) && json_string(v))
                json_object_set_new(event, trace_keys[i], json_string(v));
        }
    }
    if (cloudevent_expired(event)) {
        json_decref(event);
        snprintf(why, why_len, "the message expired");
        return C_DROP;
    }
    for (size_t i = 0; i < s->n_rules; i++) {
        if (!s->rules[i].prog) {
            *event_out = event;
            *path_out = s->rules[i].path;
            return C_DELIVER;
        }
        char err[256] = "";
        int m = cel_eval_bool(s->rules[i].prog, event, err, sizeof err);
        if (m == 1) {
            *event_out = event;
            *path_out = s->rules[i].path;
            return C_DELIVER;
        }
        if (err[0]) {
            /* Dapr fails the delivery when a rule cannot be evaluated. */
            snprintf(why, why_len, "routing rule '%s' could not be evaluated: %s", s->rules[i].match, err);
            json_decref(event);
            return C_FAIL;
        }
    }
    json_decref(event);
    snprintf(why, why_len, "no routing rule matched");
    return C_DROP;
}

/* "/x" for a route path given as "x". */
static char *route_uri(const char *path)
{
    return path[0] == '/' ? xstrdup(path) : xasprintf("/%s", path);
}

static void bulk_add(struct delivery *d);

static void attempt(struct delivery *d)
{
    if (stopping) {
        finish(d, DAPR_PUBSUB_ACK_RETRY);
        return;
    }
    if (!app_channel_healthy()) {
        retry_later(d, PAUSE_RECHECK_MS); /* paused while the app is unhealthy */
        return;
    }
    if (d->s->bulk) {
        bulk_add(d);
        return;
    }
    json_t *event;
    const char *path;
    char why[512];
    switch (classify(d, &event, &path, why, sizeof why)) {
    case C_DROP:
        give_up(d, DAPR_PUBSUB_ACK_DROP, why);
        return;
    case C_FAIL:
        give_up(d, DAPR_PUBSUB_ACK_RETRY, why);
        return;
    default:
        break;
    }
    struct evkeyvalq headers;
    TAILQ_INIT(&headers);
    for (size_t i = 0; i < d->meta.n; i++)
        if (meta_is_header(&d->meta.items[i]))
            evhttp_add_header(&headers, d->meta.items[i].name, d->meta.items[i].value);
    evhttp_remove_header(&headers, "pubsubName");
    evhttp_add_header(&headers, "Content-Type", "application/cloudevents+json");
    evhttp_add_header(&headers, "pubsubName", d->s->pubsub);
    const char *tp = json_string_value(json_object_get(event, "traceparent"));
    if (!tp || !*tp)
        tp = json_string_value(json_object_get(event, "traceid"));
    const char *ts = json_string_value(json_object_get(event, "tracestate"));
    /* Dapr's "pubsub/{topic}" span; the app call below adopts it. */
    char next[TRACEPARENT_LEN + 1], span_name[300];
    snprintf(span_name, sizeof span_name, "pubsub/%s", d->s->topic);
    const char *attrs[] = {"messaging.system", "pubsub", "messaging.destination", d->s->topic,
                           "messaging.destination_kind", "topic", NULL, NULL};
    tracing_callback_span(span_name, tp, ts, attrs, next);
    evhttp_remove_header(&headers, "traceparent");
    evhttp_add_header(&headers, "traceparent", next);
    evhttp_remove_header(&headers, "tracestate");
    if (ts && *ts && header_value_ok(ts))
        evhttp_add_header(&headers, "tracestate", ts);
    struct evbuffer *buf = evbuffer_new();
    if (d->s->raw) {
        /* The raw bytes in a new envelope (Dapr marshals a map: sorted keys). */
        size_t len;
        char *body = json_to_text(event, &len, 1);
        evbuffer_add(buf, body, len);
        free(body);
    } else {
        evbuffer_add(buf, d->data, d->len); /* as published: never re-serialised */
    }
    char *uri = route_uri(path);
    json_decref(event);
    /* The inbound policy: breaker first (an open one sends the message
     * back without calling the app), then a deadline for the call. */
    resil_policy pol;
    resiliency_component_policy(d->s->pubsub, RESIL_KIND_PUBSUB, 1, &pol);
    d->cb_gen = 0;
    if (pol.cb) {
        const char *cb_why;
        if (resil_breaker_allow(resil_breaker_get(&pol, NULL), &cb_why, &d->cb_gen) != 0) {
            free(uri);
            evhttp_clear_headers(&headers);
            evbuffer_free(buf);
            give_up(d, DAPR_PUBSUB_ACK_RETRY, cb_why);
            return;
        }
    }
    /* Armed first: the answer may come (and free d) inside the send. */
    if (pol.timeout_ms > 0) {
        if (!d->deadline)
            d->deadline = evtimer_new(loop_base(), deadline_fired, d);
        struct timeval tv = {.tv_sec = (time_t)(pol.timeout_ms / 1000),
                             .tv_usec = (suseconds_t)((pol.timeout_ms % 1000) * 1000)};
        evtimer_add(d->deadline, &tv);
    }
    clock_gettime(CLOCK_MONOTONIC, &d->sent_at);
    http_client_tag_next(d);
    int rc = app_channel_send(EVHTTP_REQ_POST, uri, &headers, buf, on_app_answer, d);
    http_client_tag_next(NULL);
    free(uri);
    evhttp_clear_headers(&headers);
    evbuffer_free(buf);
    if (rc != 0) {
        app_call_ended(d, 0); /* never sent: no callback came */
        retry_later(d, RETRY_BASE_MS); /* app channel saturated */
    }
}

/* ---- bulk delivery ------------------------------------------------------------ */

struct bulk_req {
    struct sub *s;
    struct delivery **items;
    char (*ids)[37];
    size_t n;
};

enum { V_SUCCESS, V_RETRY, V_DROP };

static void bulk_req_free(struct bulk_req *b)
{
    free(b->items);
    free(b->ids);
    free(b);
}

/* Read {"statuses":[{"entryId","status"}]} into v[] (default RETRY: an
 * entry without an answer is retried).  Returns -1 when the body does not
 * decode into that shape (Dapr then retries every entry). */
static int bulk_statuses(struct bulk_req *b, struct evbuffer *body, int *v)
{
    size_t len = body ? evbuffer_get_length(body) : 0;
    if (!len)
        return -1;
    json_t *j = json_loadb((const char *)evbuffer_pullup(body, -1), len,
                           JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, NULL);
    if (!j || !(json_is_object(j) || json_is_null(j))) {
        json_decref(j);
        return -1;
    }
    json_t *arr = json_is_object(j) ? member_ci(j, "statuses") : NULL;
    if (arr && !json_is_array(arr) && !json_is_null(arr)) {
        json_decref(j);
        return -1;
    }
    size_t i;
    json_t *e;
    /* Check the shape first: a type mismatch anywhere fails the decode. */
    json_array_foreach(arr, i, e) {
        if (json_is_null(e))
            continue;
        json_t *id = json_is_object(e) ? member_ci(e, "entryId") : NULL;
        json_t *st = json_is_object(e) ? member_ci(e, "status") : NULL;
        if (!json_is_object(e) || (id && !json_is_string(id) && !json_is_null(id)) ||
            (st && !json_is_string(st) && !json_is_null(st))) {
            json_decref(j);
            return -1;
        }
    }
    json_array_foreach(arr, i, e) {
        const char *id = json_string_value(member_ci(e, "entryId"));
        const char *st = json_string_value(member_ci(e, "status"));
        if (!id)
            continue;
        size_t k = i < b->n && strcmp(b->ids[i], id) == 0 ? i : b->n;
        for (size_t x = 0; x < b->n && k == b->n; x++)
            if (strcmp(b->ids[x], id) == 0)
                k = x;
        if (k == b->n) {
            log_warn(SCOPE, "%s/%s: the app answered for unknown bulk entry id %s", b->s->pubsub, b->s->topic, id);
            continue;
        }
        /* Empty, RETRY or unknown: retried (case-sensitive, as Dapr). */
        v[k] = st && strcmp(st, "SUCCESS") == 0 ? V_SUCCESS : st && strcmp(st, "DROP") == 0 ? V_DROP : V_RETRY;
    }
    json_decref(j);
    return 0;
}

static void on_bulk_answer(void *arg, const http_response *r)
{
    struct bulk_req *b = arg;
    int *v = xcalloc(b->n ? b->n : 1, sizeof *v);
    char why[160];
    for (size_t i = 0; i < b->n; i++)
        v[i] = V_RETRY;
    if (r->status >= 200 && r->status < 300) {
        if (bulk_statuses(b, r->body, v) != 0) {
            for (size_t i = 0; i < b->n; i++)
                v[i] = V_RETRY;
            snprintf(why, sizeof why, "the app's answer to a bulk delivery has no valid statuses");
        } else {
            snprintf(why, sizeof why, "the app answered RETRY (or nothing) for the entry");
        }
    } else if (r->status == 404) {
        /* Dapr: every entry dropped (acked), no dead letter. */
        log_error(SCOPE, "%s/%s: non-retriable error: the app answered 404 to a bulk delivery of %zu messages",
                  b->s->pubsub, b->s->topic, b->n);
        for (size_t i = 0; i < b->n; i++)
            finish(b->items[i], DAPR_PUBSUB_ACK_DROP);
        free(v);
        bulk_req_free(b);
        return;
    } else if (r->status) {
        snprintf(why, sizeof why, "the app answered HTTP %d to a bulk delivery", r->status);
    } else {
        snprintf(why, sizeof why, "the app could not be reached (%s)", r->error ? r->error : "error");
    }
    for (size_t i = 0; i < b->n; i++) {
        struct delivery *d = b->items[i];
        if (v[i] == V_SUCCESS)
            finish(d, DAPR_PUBSUB_ACK_SUCCESS);
        else if (v[i] == V_DROP)
            give_up(d, DAPR_PUBSUB_ACK_DROP, "the app answered DROP");
        else
            retry_or_give_up(d, why, r->status);
    }
    free(v);
    bulk_req_free(b);
}

static json_t *meta_object(const kv_list *l)
{
    json_t *o = json_object();
    for (size_t i = 0; i < l->n; i++) {
        json_t *s = json_string(l->items[i].value);
        if (s)
            json_object_set_new(o, l->items[i].name, s);
    }
    return o;
}

/* POST one bulk envelope (the entries of one route) to the app. */
static void bulk_send(struct sub *s, const char *path, struct delivery **items, json_t **events, size_t n)
{
    struct bulk_req *b = xcalloc(1, sizeof *b);
    b->s = s;
    b->n = n;
    b->items = xmalloc(n * sizeof *b->items);
    b->ids = xmalloc(n * sizeof *b->ids);
    json_t *entries = json_array();
    for (size_t i = 0; i < n; i++) {
        struct delivery *d = items[i];
        b->items[i] = d;
        uuid_v4(b->ids[i]);
        /* Dapr names the entry's content type after the message's, which
         * its brokers almost never carry: entries are then CloudEvents, or
         * base64 bytes in raw mode.  Ours always says which of the two the
         * entry holds (the SDKs decode entries by exactly these names). */
        json_t *event;
        const char *ct;
        if (s->raw) {
            char *b64 = base64_encode(d->data, d->len);
            event = json_string(b64);
            free(b64);
            ct = "application/octet-stream";
        } else {
            event = json_incref(events[i]);
            ct = "application/cloudevents+json";
        }
        json_array_append_new(entries, json_pack("{s:s, s:o, s:o, s:s}", "entryId", b->ids[i], "event", event,
                                                 "metadata", meta_object(&d->meta), "contentType", ct));
    }
    char id[37];
    uuid_v4(id);
    json_t *env = json_pack("{s:o, s:s, s:{s:s}, s:s, s:s, s:s}", "entries", entries, "id", id, "metadata",
                            "pubsubName", s->pubsub, "pubsubname", s->pubsub, "topic", s->topic, "type",
                            "com.dapr.event.sent.bulk");
    size_t len;
    char *text = json_to_text(env, &len, 0);
    json_decref(env);
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, text, len);
    free(text);
    struct evkeyvalq headers;
    TAILQ_INIT(&headers);
    evhttp_add_header(&headers, "Content-Type", "application/json");
    evhttp_add_header(&headers, "pubsubName", s->pubsub);
    char *uri = route_uri(path);
    log_debug(SCOPE, "%s/%s: bulk delivery of %zu messages to %s", s->pubsub, s->topic, n, uri);
    int rc = app_channel_send(EVHTTP_REQ_POST, uri, &headers, buf, on_bulk_answer, b);
    free(uri);
    evhttp_clear_headers(&headers);
    evbuffer_free(buf);
    if (rc != 0) {
        /* App channel saturated: every entry tries again shortly. */
        for (size_t i = 0; i < n; i++)
            retry_later(b->items[i], RETRY_BASE_MS);
        bulk_req_free(b);
    }
}

/* Send the subscription's batch: classify every message, then one POST per
 * route with that route's entries. */
static void bulk_flush(struct sub *s)
{
    size_t n = s->n_batch;
    if (!n)
        return;
    evtimer_del(s->batch_timer);
    struct delivery **items = s->batch;
    s->batch = NULL;
    s->n_batch = s->cap_batch = 0;
    struct delivery **ok = xmalloc(n * sizeof *ok);
    json_t **events = xmalloc(n * sizeof *events);
    const char **paths = xmalloc(n * sizeof *paths);
    size_t n_ok = 0;
    for (size_t i = 0; i < n; i++) {
        struct delivery *d = items[i];
        char why[512];
        json_t *event;
        const char *path;
        int c = classify(d, &event, &path, why, sizeof why);
        if (c == C_DROP) {
            give_up(d, DAPR_PUBSUB_ACK_DROP, why);
        } else if (c == C_FAIL) {
            give_up(d, DAPR_PUBSUB_ACK_RETRY, why);
        } else {
            ok[n_ok] = d;
            events[n_ok] = event;
            paths[n_ok] = path;
            n_ok++;
        }
    }
    /* Group by route, keeping arrival order inside each group. */
    struct delivery **grp = xmalloc((n_ok ? n_ok : 1) * sizeof *grp);
    json_t **grp_ev = xmalloc((n_ok ? n_ok : 1) * sizeof *grp_ev);
    for (size_t i = 0; i < n_ok; i++) {
        if (!paths[i])
            continue; /* already sent with an earlier group */
        const char *path = paths[i];
        size_t g = 0;
        for (size_t k = i; k < n_ok; k++) {
            if (paths[k] && strcmp(paths[k], path) == 0) {
                grp[g] = ok[k];
                grp_ev[g] = events[k];
                g++;
                if (k != i)
                    paths[k] = NULL;
            }
        }
        bulk_send(s, path, grp, grp_ev, g);
        paths[i] = NULL;
    }
    for (size_t i = 0; i < n_ok; i++)
        json_decref(events[i]);
    free(grp);
    free(grp_ev);
    free(ok);
    free(events);
    free(paths);
    free(items);
}

static void bulk_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    struct sub *s = arg;
    if (!app_channel_healthy()) {
        /* Paused: the batch waits, its messages stay unacked. */
        struct timeval tv = {.tv_sec = PAUSE_RECHECK_MS / 1000, .tv_usec = (PAUSE_RECHECK_MS % 1000) * 1000};
        evtimer_add(s->batch_timer, &tv);
        return;
    }
    bulk_flush(s);
}

static void bulk_add(struct delivery *d)
{
    struct sub *s = d->s;
    if (s->n_batch == s->cap_batch) {
        s->cap_batch = s->cap_batch ? s->cap_batch * 2 : 16;
        s->batch = xrealloc(s->batch, s->cap_batch * sizeof *s->batch);
    }
    s->batch[s->n_batch++] = d;
    if (s->n_batch == 1) {
        struct timeval tv = {.tv_sec = (time_t)(s->bulk_await_ms / 1000),
                             .tv_usec = (suseconds_t)((s->bulk_await_ms % 1000) * 1000)};
        evtimer_add(s->batch_timer, &tv);
    }
    if (s->n_batch >= (size_t)s->bulk_max)
        bulk_flush(s);
}

static void deliver_on_loop(void *arg)
{
    inflight++;
    attempt(arg);
}

/* The plugin's handler: runs on a plugin thread; copy and hand to the loop. */
static void handler(void *ctx, const dapr_pubsub_message *msg, dapr_pubsub_ack_fn ack, void *ack_ctx)
{
    struct delivery *d = xcalloc(1, sizeof *d);
    d->s = ctx;
    d->data = xmalloc(msg->data.len + 1);
    if (msg->data.len)
        memcpy(d->data, msg->data.ptr, msg->data.len);
    d->len = msg->data.len;
    d->content_type = msg->content_type ? xstrdup(msg->content_type) : NULL;
    d->meta = kv_list_copy(msg->metadata);
    d->ack = ack;
    d->ack_ctx = ack_ctx;
    loop_post(deliver_on_loop, d);
}

/* ---- starting and stopping ------------------------------------------------ */

static void subscribed(void *ctx, const dapr_result *res);

struct subscribe_job {
    struct sub *s;
    uint32_t max_in_flight;
    dapr_status st;
    char *msg;
};

static void start_finished(void)
{
    if (--subscribe_pending == 0 && start_done) {
        void (*done)(void) = start_done;
        start_done = NULL;
        done();
    }
}

static void subscribe_finish(void *arg)
{
    struct subscribe_job *j = arg;
    atomic_fetch_sub(&j->s->comp->inflight, 1);
    if (j->st == DAPR_OK) {
        j->s->active = 1;
        if (j->s->bulk)
            log_info(SCOPE, "app is subscribed to topic %s on pubsub %s (%s, bulk: %d messages / %d ms)",
                     j->s->topic, j->s->pubsub, j->s->kind, j->s->bulk_max, j->s->bulk_await_ms);
        else
            log_info(SCOPE, "app is subscribed to topic %s on pubsub %s (%s)", j->s->topic, j->s->pubsub,
                     j->s->kind);
    } else {
        log_error(SCOPE, "subscribing to topic %s on pubsub %s failed: %s", j->s->topic, j->s->pubsub,
                  j->msg ? j->msg : "error");
    }
    free(j->msg);
    free(j);
    start_finished();
}

static void subscribed(void *ctx, const dapr_result *res)
{
    struct subscribe_job *j = ctx;
    j->st = res->status;
    j->msg = res->message ? xstrdup(res->message) : NULL;
    loop_post(subscribe_finish, j);
}

static void subscribe_run(void *arg)
{
    struct subscribe_job *j = arg;
    struct sub *s = j->s;
    dapr_pubsub_subscribe_req req = {.topic = s->topic, .metadata = kv_list_view(&s->meta),
                                     .handler = handler, .handler_ctx = s, .max_in_flight = j->max_in_flight};
    ((const dapr_pubsub_vtable *)s->comp->def->vtable)->subscribe(s->comp->instance, &req, &s->id, subscribed, j);
}

/* How many unacked messages a subscription may hold. */
static uint32_t in_flight_bound(const struct sub *s)
{
    int serial = app_channel_max_concurrency() == 1;
    if (s->bulk) {
        /* One batch at a time when the app takes one request at a time
         * (ordered); else the next batch may fill while one is out. */
        long long n = serial ? s->bulk_max : 2LL * s->bulk_max;
        return (uint32_t)(n > BULK_MAX_IN_FLIGHT ? BULK_MAX_IN_FLIGHT : n);
    }
    return serial ? 1 : MAX_IN_FLIGHT;
}

static void subscribe_all(void)
{
    subscribe_pending = 1; /* held until the loop below has started everything */
    for (size_t i = 0; i < n_subs; i++) {
        struct sub *s = &subs[i];
        s->comp = component_find(DAPR_KIND_PUBSUB, s->pubsub);
        if (!s->comp) {
            log_warn(SCOPE, "subscription to topic %s: pubsub %s is not loaded", s->topic, s->pubsub);
            continue;
        }
        if (!topic_allowed(s->comp, s->topic, "subscriptionScopes")) {
            log_warn(SCOPE, "app %s may not subscribe to topic %s on pubsub %s (subscriptionScopes)", rt.app_id,
                     s->topic, s->pubsub);
            continue;
        }
        const char *raw = kv_list_get(&s->meta, "rawPayload");
        s->raw = raw && parse_bool(raw) == 1;
        if (s->bulk && !s->batch_timer)
            s->batch_timer = evtimer_new(loop_base(), bulk_timeout, s);
        struct subscribe_job *j = xcalloc(1, sizeof *j);
        j->s = s;
        j->max_in_flight = in_flight_bound(s);
        subscribe_pending++;
        atomic_fetch_add(&s->comp->inflight, 1);
        if (component_dispatch(s->comp, subscribe_run, j) != 0) {
            atomic_fetch_sub(&s->comp->inflight, 1);
            subscribe_pending--;
            free(j);
            log_error(SCOPE, "subscribing to %s/%s: worker pool saturated", s->pubsub, s->topic);
        }
    }
    start_finished();
}

static void on_subscribe_answer(void *arg, const http_response *r)
{
    (void)arg;
    if (r->status == 200) {
        size_t len = r->body ? evbuffer_get_length(r->body) : 0;
        if (len) {
            json_error_t jerr;
            json_t *arr = json_loadb((const char *)evbuffer_pullup(r->body, -1), len, 0, &jerr);
            if (!json_is_array(arr)) {
                log_error(SCOPE, "/dapr/subscribe answered invalid JSON (%s): no programmatic subscriptions",
                          arr ? "not an array" : jerr.text);
            } else {
                size_t i;
                json_t *e;
                json_array_foreach(arr, i, e)
                    if (json_is_object(e))
                        add_programmatic(e);
            }
            json_decref(arr);
        }
    } else if (r->status == 404) {
        log_debug(SCOPE, "the app has no /dapr/subscribe (404)");
    } else {
        char why[64];
        snprintf(why, sizeof why, "HTTP %d", r->status);
        log_error(SCOPE, "/dapr/subscribe failed (%s): no programmatic subscriptions",
                  r->status ? why : r->error);
    }
    subscribe_all();
}

void pubsub_start(void (*done)(void))
{
    start_done = done;
    if (!app_channel_enabled() || components_count_kind(DAPR_KIND_PUBSUB) == 0) {
        /* Deliveries need an app; without one, nothing to subscribe. */
        start_done = NULL;
        done();
        return;
    }
    struct evkeyvalq h;
    TAILQ_INIT(&h);
    evhttp_add_header(&h, "Content-Type", "application/json");
    evhttp_add_header(&h, "dapr-app-id", rt.app_id);
    if (app_channel_send(EVHTTP_REQ_GET, "/dapr/subscribe", &h, NULL, on_subscribe_answer, NULL) != 0)
        subscribe_all();
    evhttp_clear_headers(&h);
}

static void unsubscribed(void *ctx, const dapr_result *res)
{
    component *c = ctx;
    (void)res;
    atomic_fetch_sub(&c->inflight, 1);
}

struct unsubscribe_job {
    component *comp;
    uint64_t id;
};

static void unsubscribe_run(void *arg)
{
    struct unsubscribe_job *j = arg;
    component *c = j->comp;
    uint64_t id = j->id;
    free(j);
    ((const dapr_pubsub_vtable *)c->def->vtable)->unsubscribe(c->instance, id, unsubscribed, c);
}

/* Hand waiting retries back to their brokers now. */
static void release_waiting(void)
{
    while (!LIST_EMPTY(&waiting_list)) {
        struct waiting *w = LIST_FIRST(&waiting_list);
        LIST_REMOVE(w, link);
        struct delivery *d = w->d;
        free(w);
        evtimer_del(d->timer);
        finish(d, DAPR_PUBSUB_ACK_RETRY);
    }
}

void pubsub_stop(void)
{
    if (stopping)
        return;
    stopping = 1;
    for (size_t i = 0; i < n_subs; i++) {
        struct sub *s = &subs[i];
        /* Batches not sent yet go back to the broker. */
        if (s->n_batch) {
            evtimer_del(s->batch_timer);
            for (size_t k = 0; k < s->n_batch; k++)
                finish(s->batch[k], DAPR_PUBSUB_ACK_RETRY);
            s->n_batch = 0;
        }
        if (!s->active)
            continue;
        s->active = 0;
        struct unsubscribe_job *j = xcalloc(1, sizeof *j);
        j->comp = s->comp;
        j->id = s->id;
        atomic_fetch_add(&s->comp->inflight, 1);
        if (component_dispatch(s->comp, unsubscribe_run, j) != 0) {
            atomic_fetch_sub(&s->comp->inflight, 1);
            free(j);
        }
    }
    release_waiting();
}

size_t pubsub_inflight(void) { return inflight; }

void pubsub_free(void)
{
    /* Normally pubsub_stop() already handed everything back; after a
     * shutdown that skipped it (or a retry scheduled by a failed request
     * while the app channel closed), return what is left before the
     * plugins close, so that nothing leaks and no ack is lost. */
    stopping = 1;
    release_waiting();
    for (size_t i = 0; i < n_subs; i++) {
        for (size_t k = 0; k < subs[i].n_batch; k++)
            finish(subs[i].batch[k], DAPR_PUBSUB_ACK_RETRY);
        subs[i].n_batch = 0;
    }
    for (size_t i = 0; i < n_subs; i++)
        sub_free(&subs[i]);
    free(subs);
    subs = NULL;
    n_subs = 0;
}

json_t *pubsub_metadata(void)
{
    if (!n_subs)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; i < n_subs; i++) {
        struct sub *s = &subs[i];
        json_t *rules = json_array();
        for (size_t k = 0; k < s->n_rules; k++) {
            json_t *r = json_object();
            if (*s->rules[k].match)
                json_object_set_new(r, "match", json_string(s->rules[k].match));
            json_object_set_new(r, "path", json_string(s->rules[k].path));
            json_array_append_new(rules, r);
        }
        json_t *o = json_pack("{s:s, s:s}", "pubsubname", s->pubsub, "topic", s->topic);
        if (s->meta.n)
            json_object_set_new(o, "metadata", meta_object(&s->meta));
        json_object_set_new(o, "rules", rules);
        json_object_set_new(o, "deadLetterTopic", json_string(s->dead_letter ? s->dead_letter : ""));
        json_object_set_new(o, "type", json_string(s->kind));
        json_array_append_new(arr, o);
    }
    return arr;
}
