/*
 * pubsub.c - subscriptions and delivery (reference §3.3-§3.5).
 *
 * A message travels: broker plugin thread -> handler() copies it and posts
 * it to the loop -> route chosen by the subscription's rules -> POST to
 * the app over the app channel -> the app's answer decides SUCCESS, RETRY
 * or DROP -> ack to the plugin, which acknowledges its broker only after
 * SUCCESS or DROP.  RETRY is retried here a few times with backoff; after
 * that the message goes to the dead-letter topic when one is set (then
 * acked), else RETRY goes back to the broker, which redelivers.  Nothing
 * is acknowledged before the app answered, so a daprd killed mid-delivery
 * loses nothing.  Back-pressure: each subscription asks its plugin for at
 * most MAX_IN_FLIGHT unacked messages.
 */
#include "config.h"
#include "pubsub.h"
#include "app_channel.h"
#include "cel.h"
#include "cloudevent.h"
#include "json_out.h"
#include "log.h"
#include "loop.h"
#include "runtime.h"
#include "trace.h"
#include "util.h"

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
#define LOCAL_RETRIES 3         /* app deliveries before RETRY goes back to the broker */
#define RETRY_BASE_MS 200
#define PAUSE_RECHECK_MS 500    /* while the app is unhealthy */

struct route_rule {
    char *match;                /* "" = no match expression */
    cel_program *prog;
    char *path;
};

struct sub {
    char *pubsub, *topic, *dead_letter;
    struct route_rule *rules;   /* rules in order, then default (match "") */
    size_t n_rules;
    int raw;                    /* metadata rawPayload */
    kv_list meta;
    const char *kind;           /* "DECLARATIVE" or "PROGRAMMATIC" */
    component *comp;
    uint64_t id;
    int active;
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
}

static char *route_path(const char *p)
{
    return p[0] == '/' ? xstrdup(p) : xasprintf("/%s", p);
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
                                                 .path = route_path(path)};
    return 0;
}

/* Add (or replace: programmatic wins over declarative) a subscription. */
static void add_sub(struct sub *s)
{
    for (size_t i = 0; i < n_subs; i++) {
        if (strcmp(subs[i].pubsub, s->pubsub) == 0 && strcmp(subs[i].topic, s->topic) == 0) {
            if (strcmp(s->kind, "PROGRAMMATIC") == 0 && strcmp(subs[i].kind, "DECLARATIVE") == 0) {
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
};

static void publish_finish(void *arg)
{
    struct publish_job *j = arg;
    atomic_fetch_sub(&j->comp->inflight, 1);
    j->cb(j->arg, j->st, j->msg);
    free(j->topic);
    free(j->data);
    free(j->content_type);
    kv_list_free(&j->meta);
    free(j->msg);
    free(j);
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
    atomic_fetch_add(&c->inflight, 1);
    if (component_dispatch(c, publish_run, j) != 0) {
        atomic_fetch_sub(&c->inflight, 1);
        free(j->topic);
        free(j->data);
        free(j->content_type);
        kv_list_free(&j->meta);
        free(j);
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
    kv_list meta;
    dapr_pubsub_ack_fn ack;
    void *ack_ctx;
    int attempts;
    struct event *timer;
    int acked;
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

/* The app did not take the message: dead-letter it when configured. */
static void give_up(struct delivery *d, dapr_pubsub_ack otherwise, const char *why)
{
    if (d->s->dead_letter && *d->s->dead_letter) {
        log_warn(SCOPE, "%s/%s: %s: sending the message to dead-letter topic %s", d->s->pubsub, d->s->topic,
                 why, d->s->dead_letter);
        if (pubsub_publish(d->s->comp, d->s->dead_letter, d->data, d->len, d->content_type, &d->meta,
                           dead_letter_done, d) == 0)
            return;
        otherwise = DAPR_PUBSUB_ACK_RETRY;
    } else if (otherwise == DAPR_PUBSUB_ACK_DROP) {
        log_warn(SCOPE, "%s/%s: %s: message dropped", d->s->pubsub, d->s->topic, why);
    }
    finish(d, otherwise);
}

static void on_app_answer(void *arg, const http_response *r)
{
    struct delivery *d = arg;
    const char *why = NULL;
    if (r->status >= 200 && r->status < 300) {
        size_t len = r->body ? evbuffer_get_length(r->body) : 0;
        json_t *j = len ? json_loadb((const char *)evbuffer_pullup(r->body, -1), len, 0, NULL) : NULL;
        const char *status = json_is_object(j) ? json_string_value(json_object_get(j, "status")) : NULL;
        int verdict = (!status || !*status || strcmp(status, "SUCCESS") == 0) ? 0
                      : strcmp(status, "DROP") == 0                            ? 2
                                                                               : 1;
        json_decref(j);
        if (verdict == 0) {
            finish(d, DAPR_PUBSUB_ACK_SUCCESS);
            return;
        }
        if (verdict == 2) {
            give_up(d, DAPR_PUBSUB_ACK_DROP, "the app answered DROP");
            return;
        }
        why = "the app answered RETRY";
    } else if (r->status == 404) {
        log_error(SCOPE, "%s/%s: the app answered 404: message dropped", d->s->pubsub, d->s->topic);
        give_up(d, DAPR_PUBSUB_ACK_DROP, "the app answered 404");
        return;
    } else {
        why = r->status ? "the app answered a non-2xx status" : "the app could not be reached";
    }
    if (stopping) {
        finish(d, DAPR_PUBSUB_ACK_RETRY);
        return;
    }
    if (++d->attempts <= LOCAL_RETRIES) {
        log_debug(SCOPE, "%s/%s: %s; retry %d", d->s->pubsub, d->s->topic, why, d->attempts);
        retry_later(d, (int64_t)RETRY_BASE_MS << (d->attempts - 1));
        return;
    }
    give_up(d, DAPR_PUBSUB_ACK_RETRY, why);
}

/* Choose the route: the first rule whose match is true (or empty). */
static const char *choose_route(struct sub *s, json_t *event)
{
    for (size_t i = 0; i < s->n_rules; i++) {
        if (!s->rules[i].prog)
            return s->rules[i].path;
        char err[256] = "";
        if (cel_eval_bool(s->rules[i].prog, event, err, sizeof err) == 1)
            return s->rules[i].path;
    }
    return NULL;
}

static int header_name_ok(const char *n)
{
    if (!*n) return 0;
    for (const char *p = n; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p))
            return 0;
    return 1;
}

static int expired(json_t *event)
{
    const char *exp = json_string_value(json_object_get(event, "expiration"));
    if (!exp)
        return 0;
    struct tm tm = {0};
    const char *end = strptime(exp, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return 0;
    return timegm(&tm) < time(NULL);
}

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
    json_t *event;
    char *body = NULL;
    size_t body_len = 0;
    if (d->s->raw) {
        event = cloudevent_wrap_raw(d->data, d->len, d->s->topic, d->s->pubsub, &d->meta);
        body = json_to_text(event, &body_len, 0);
    } else {
        event = json_loadb((const char *)d->data, d->len, 0, NULL);
        if (!json_is_object(event)) {
            json_decref(event);
            give_up(d, DAPR_PUBSUB_ACK_RETRY, "the message is not a JSON CloudEvent");
            return;
        }
    }
    if (expired(event)) {
        json_decref(event);
        free(body);
        give_up(d, DAPR_PUBSUB_ACK_DROP, "the message expired");
        return;
    }
    const char *path = choose_route(d->s, event);
    if (!path) {
        json_decref(event);
        free(body);
        give_up(d, DAPR_PUBSUB_ACK_DROP, "no routing rule matched");
        return;
    }
    struct evkeyvalq headers;
    TAILQ_INIT(&headers);
    for (size_t i = 0; i < d->meta.n; i++)
        if (header_name_ok(d->meta.items[i].name) && strcasecmp(d->meta.items[i].name, "Content-Length") != 0 &&
            strcasecmp(d->meta.items[i].name, "Content-Type") != 0)
            evhttp_add_header(&headers, d->meta.items[i].name, d->meta.items[i].value);
    evhttp_add_header(&headers, "Content-Type", "application/cloudevents+json");
    evhttp_add_header(&headers, "pubsubName", d->s->pubsub);
    const char *tp = json_string_value(json_object_get(event, "traceparent"));
    char next[TRACEPARENT_LEN + 1];
    trace_next_hop(tp, next);
    evhttp_remove_header(&headers, "traceparent");
    evhttp_add_header(&headers, "traceparent", next);
    struct evbuffer *buf = evbuffer_new();
    if (body)
        evbuffer_add(buf, body, body_len);
    else
        evbuffer_add(buf, d->data, d->len);
    free(body);
    json_decref(event);
    int rc = app_channel_send(EVHTTP_REQ_POST, path, &headers, buf, on_app_answer, d);
    evhttp_clear_headers(&headers);
    evbuffer_free(buf);
    if (rc != 0)
        retry_later(d, RETRY_BASE_MS); /* app channel saturated */
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
    dapr_status st;
    char *msg;
};

static void subscribe_finish(void *arg)
{
    struct subscribe_job *j = arg;
    atomic_fetch_sub(&j->s->comp->inflight, 1);
    if (j->st == DAPR_OK) {
        j->s->active = 1;
        log_info(SCOPE, "app is subscribed to topic %s on pubsub %s (%s)", j->s->topic, j->s->pubsub, j->s->kind);
    } else {
        log_error(SCOPE, "subscribing to topic %s on pubsub %s failed: %s", j->s->topic, j->s->pubsub,
                  j->msg ? j->msg : "error");
    }
    free(j->msg);
    free(j);
    if (--subscribe_pending == 0 && start_done) {
        void (*done)(void) = start_done;
        start_done = NULL;
        done();
    }
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
                                     .handler = handler, .handler_ctx = s, .max_in_flight = MAX_IN_FLIGHT};
    ((const dapr_pubsub_vtable *)s->comp->def->vtable)->subscribe(s->comp->instance, &req, &s->id, subscribed, j);
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
        struct subscribe_job *j = xcalloc(1, sizeof *j);
        j->s = s;
        subscribe_pending++;
        atomic_fetch_add(&s->comp->inflight, 1);
        if (component_dispatch(s->comp, subscribe_run, j) != 0) {
            atomic_fetch_sub(&s->comp->inflight, 1);
            subscribe_pending--;
            free(j);
            log_error(SCOPE, "subscribing to %s/%s: worker pool saturated", s->pubsub, s->topic);
        }
    }
    if (--subscribe_pending == 0 && start_done) {
        void (*done)(void) = start_done;
        start_done = NULL;
        done();
    }
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
        log_error(SCOPE, "/dapr/subscribe failed (%s): no programmatic subscriptions",
                  r->status ? "non-200 status" : r->error);
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

void pubsub_stop(void)
{
    if (stopping)
        return;
    stopping = 1;
    for (size_t i = 0; i < n_subs; i++) {
        struct sub *s = &subs[i];
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
    /* Hand waiting retries back to their brokers now. */
    while (!LIST_EMPTY(&waiting_list)) {
        struct waiting *w = LIST_FIRST(&waiting_list);
        LIST_REMOVE(w, link);
        struct delivery *d = w->d;
        free(w);
        evtimer_del(d->timer);
        finish(d, DAPR_PUBSUB_ACK_RETRY);
    }
}

size_t pubsub_inflight(void) { return inflight; }

void pubsub_free(void)
{
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
            json_t *r = json_pack("{s:s}", "path", s->rules[k].path);
            if (*s->rules[k].match)
                json_object_set_new(r, "match", json_string(s->rules[k].match));
            json_array_append_new(rules, r);
        }
        json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s}", "pubsubname", s->pubsub, "topic", s->topic,
                              "deadLetterTopic", s->dead_letter ? s->dead_letter : "", "rules", rules, "type",
                              s->kind);
        if (s->meta.n) {
            json_t *m = json_object();
            for (size_t k = 0; k < s->meta.n; k++)
                json_object_set_new(m, s->meta.items[k].name, json_string(s->meta.items[k].value));
            json_object_set_new(o, "metadata", m);
        }
        json_array_append_new(arr, o);
    }
    return arr;
}
