/*
 * component.c - bind manifests to plugin types, validate metadata against
 * the plugin's schema, initialise instances (with initTimeout), and offer
 * the host services table to plugins.
 */
#include "config.h"
#include "component.h"
#include "bindings.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "secrets.h"
#include "util.h"
#include "workers.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "uuid_gen.h"

#define SCOPE "dapr.runtime"
#define PLUGIN_SCOPE "dapr.contrib"

static component **comps;
static size_t n_comps;

/* ---- host services ---------------------------------------------------- */

static void host_log(dapr_host *h, dapr_log_level level, const char *fmt, ...)
{
    static const log_level map[] = {LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR};
    log_level l = (level >= DAPR_LOG_DEBUG && level <= DAPR_LOG_ERROR) ? map[level] : LOG_LEVEL_INFO;
    if (!log_enabled(l))
        return;
    char msg[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_write(l, PLUGIN_SCOPE, "[%s %s] %s", h && h->comp ? h->comp->type : "?",
              h && h->comp ? h->comp->name : "?", msg);
}

static int host_log_enabled(dapr_host *h, dapr_log_level level)
{
    (void)h;
    return log_enabled((log_level)level);
}

static const char *host_metadata_get(dapr_host *h, const char *name)
{
    component *c = h->comp;
    for (size_t i = 0; i < c->n_meta; i++)
        if (strcasecmp(c->meta[i].name, name) == 0)
            return c->meta[i].value;
    /* Fall back on the schema's default so plugins see one source. */
    for (size_t i = 0; i < c->def->n_metadata_schema; i++) {
        const dapr_metadata_field *f = &c->def->metadata_schema[i];
        if (strcasecmp(f->name, name) == 0)
            return f->default_value;
    }
    return NULL;
}

static dapr_kvs host_metadata_all(dapr_host *h)
{
    return (dapr_kvs){.items = h->comp->meta, .n = h->comp->n_meta};
}

static const char *host_component_name(dapr_host *h) { return h->comp->name; }

static const char *app_id_value = "";
static const char *host_app_id(dapr_host *h) { (void)h; return app_id_value; }

static int host_submit(dapr_host *h, dapr_task_fn fn, void *arg)
{
    (void)h;
    return workers_submit(fn, arg);
}

/* Timers: a persistent libevent timer on the loop hands each tick to the
 * worker pool, skipping ticks while the previous run is still going. */
struct host_timer {
    uint64_t id;
    struct event *ev;
    dapr_task_fn fn;
    void *arg;
    int running;
    int stopped;
    struct host_timer *next;
};

static pthread_mutex_t timers_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t timer_done = PTHREAD_COND_INITIALIZER;
static struct host_timer *timers;
static uint64_t next_timer_id = 1;

static void timer_run(void *arg)
{
    struct host_timer *t = arg;
    t->fn(t->arg);
    pthread_mutex_lock(&timers_lock);
    t->running = 0;
    pthread_cond_broadcast(&timer_done);
    pthread_mutex_unlock(&timers_lock);
}

static void timer_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    struct host_timer *t = arg;
    pthread_mutex_lock(&timers_lock);
    if (!t->running && !t->stopped) {
        t->running = 1;
        if (workers_submit(timer_run, t) != 0)
            t->running = 0; /* pool saturated: try again next tick */
    }
    pthread_mutex_unlock(&timers_lock);
}

static uint64_t host_timer_start(dapr_host *h, uint64_t interval_ms, dapr_task_fn fn, void *arg)
{
    (void)h;
    if (!fn || interval_ms == 0)
        return 0;
    struct host_timer *t = xcalloc(1, sizeof *t);
    t->fn = fn;
    t->arg = arg;
    t->ev = event_new(loop_base(), -1, EV_PERSIST, timer_tick, t);
    struct timeval tv = {.tv_sec = (time_t)(interval_ms / 1000),
                         .tv_usec = (suseconds_t)((interval_ms % 1000) * 1000)};
    pthread_mutex_lock(&timers_lock);
    t->id = next_timer_id++;
    t->next = timers;
    timers = t;
    pthread_mutex_unlock(&timers_lock);
    event_add(t->ev, &tv);
    return t->id;
}

static void host_timer_stop(dapr_host *h, uint64_t id)
{
    (void)h;
    pthread_mutex_lock(&timers_lock);
    struct host_timer **pp = &timers, *t = NULL;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    if (*pp) {
        t = *pp;
        *pp = t->next;
        t->stopped = 1;
        while (t->running)
            pthread_cond_wait(&timer_done, &timers_lock);
    }
    pthread_mutex_unlock(&timers_lock);
    if (t) {
        event_del(t->ev);
        event_free(t->ev);
        free(t);
    }
}

static void host_metric_add(dapr_host *h, const char *name, double value)
{
    (void)h; (void)name; (void)value; /* metrics arrive with the observability issue */
}

static const dapr_host_api the_host_api = {
    .size = sizeof(dapr_host_api),
    .log = host_log,
    .log_enabled = host_log_enabled,
    .metadata_get = host_metadata_get,
    .metadata_all = host_metadata_all,
    .component_name = host_component_name,
    .app_id = host_app_id,
    .submit = host_submit,
    .timer_start = host_timer_start,
    .timer_stop = host_timer_stop,
    .metric_add = host_metric_add,
};

const dapr_host_api *host_api(void) { return &the_host_api; }

/* ---- metadata --------------------------------------------------------- */

/* Replace {appID} and {uuid} placeholders, as Dapr does in values. */
static char *expand_placeholders(const char *v, const char *app_id)
{
    if (!strchr(v, '{'))
        return xstrdup(v);
    size_t cap = strlen(v) * 2 + 64, len = 0;
    char *out = xmalloc(cap);
    for (const char *p = v; *p;) {
        const char *rep = NULL;
        char uuid[37];
        size_t skip = 0;
        if (strncmp(p, "{appID}", 7) == 0) {
            rep = app_id;
            skip = 7;
        } else if (strncmp(p, "{uuid}", 6) == 0) {
            uuid_v4(uuid);
            rep = uuid;
            skip = 6;
        }
        if (rep) {
            size_t rl = strlen(rep);
            if (len + rl + 1 > cap) { cap = (len + rl) * 2 + 1; out = xrealloc(out, cap); }
            memcpy(out + len, rep, rl);
            len += rl;
            p += skip;
        } else {
            if (len + 2 > cap) { cap *= 2; out = xrealloc(out, cap); }
            out[len++] = *p++;
        }
    }
    out[len] = '\0';
    return out;
}

static int check_schema(const component_spec *s, const dapr_component_def *def, component *c,
                        char *err, size_t errlen)
{
    for (size_t i = 0; i < def->n_metadata_schema; i++) {
        const dapr_metadata_field *f = &def->metadata_schema[i];
        const char *v = NULL;
        int v_secret = 0;
        for (size_t j = 0; j < c->n_meta; j++)
            if (strcasecmp(c->meta[j].name, f->name) == 0) {
                v = c->meta[j].value;
                if (f->flags & DAPR_META_SECRET)
                    c->meta_secret[j] = 1;
                v_secret = c->meta_secret[j];
            }
        if (!v || !*v) {
            if (f->flags & DAPR_META_REQUIRED) {
                snprintf(err, errlen, "metadata field '%s' is required", f->name);
                return -1;
            }
            continue;
        }
        int64_t i64;
        uint64_t u64;
        const char *want = NULL;
        switch (f->type) {
        case DAPR_META_INT:
            if (parse_int64(v, &i64) != 0) want = "an integer";
            break;
        case DAPR_META_BOOL:
            if (parse_bool(v) < 0) want = "true or false";
            break;
        case DAPR_META_DURATION:
            /* Negative durations ("-1") mean "disabled" in some Dapr components. */
            if (parse_duration_ms(v[0] == '-' ? v + 1 : v, &i64) != 0)
                want = "a duration such as 5s or 1m30s";
            break;
        case DAPR_META_BYTES:
            if (parse_quantity_bytes(v, &u64) != 0) want = "a size such as 4Mi";
            break;
        default:
            break;
        }
        if (want) {
            /* Never echo a secret value back. */
            if (v_secret)
                snprintf(err, errlen, "metadata field '%s' must be %s", f->name, want);
            else
                snprintf(err, errlen, "metadata field '%s' must be %s, not '%s'", f->name, want, v);
            return -1;
        }
    }
    (void)s;
    return 0;
}

static int setup_key_prefix(component *c, const char *app_id, char *err, size_t errlen)
{
    const char *kp = NULL;
    for (size_t i = 0; i < c->n_meta; i++)
        if (strcasecmp(c->meta[i].name, "keyPrefix") == 0)
            kp = c->meta[i].value;
    const char *prefix;
    char *owned = NULL;
    if (!kp || !*kp || strcasecmp(kp, "appid") == 0) {
        prefix = app_id;
    } else if (strcasecmp(kp, "name") == 0) {
        prefix = c->name;
    } else if (strcasecmp(kp, "namespace") == 0) {
        const char *ns = getenv("NAMESPACE");
        prefix = (ns && *ns && *app_id) ? (owned = xasprintf("%s.%s", ns, app_id)) : app_id;
    } else if (strcasecmp(kp, "none") == 0) {
        prefix = "";
    } else {
        if (strstr(kp, "||")) {
            snprintf(err, errlen, "keyPrefix '%s' can't contain '||'", kp);
            return -1;
        }
        prefix = kp;
    }
    c->key_prefix = *prefix ? xasprintf("%s||", prefix) : xstrdup("");
    free(owned);
    return 0;
}

/* ---- init with a timeout ----------------------------------------------- */

struct init_job {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int done;
    int abandoned;
    component *comp;
    dapr_status status;
    void *instance;
    char err[512];
};

static void init_job_free(struct init_job *j)
{
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->done_cond);
    free(j);
}

static void *init_thread(void *arg)
{
    struct init_job *j = arg;
    void *inst = NULL;
    char err[512] = "";
    dapr_status st = j->comp->def->init(&j->comp->host, &the_host_api, &inst, err, sizeof err);
    /* An init may have used OpenSSL on this thread (libcurl, libpq, ...):
     * free its per-thread state now.  Left to the thread-exit destructor,
     * it races daprd's exit when start-up fails right after, and
     * LeakSanitizer reports it. */
    OPENSSL_thread_stop();
    pthread_mutex_lock(&j->lock);
    j->status = st;
    j->instance = inst;
    memcpy(j->err, err, sizeof err);
    j->err[sizeof j->err - 1] = '\0';
    j->done = 1;
    int abandoned = j->abandoned;
    pthread_cond_signal(&j->done_cond);
    pthread_mutex_unlock(&j->lock);
    if (abandoned) {
        /* daprd gave up waiting; the component is not used.  Close what
         * init made so nothing leaks. */
        if (st == DAPR_OK && inst)
            j->comp->def->close(inst);
        init_job_free(j);
    }
    return NULL;
}

/* Returns 0 with c->instance set, or -1 with err filled. */
static int init_with_timeout(component *c, int64_t timeout_ms, char *err, size_t errlen)
{
    struct init_job *j = xcalloc(1, sizeof *j);
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->done_cond, NULL);
    j->comp = c;
    pthread_t th;
    if (pthread_create(&th, NULL, init_thread, j) != 0) {
        init_job_free(j);
        snprintf(err, errlen, "cannot start the init thread");
        return -1;
    }
    pthread_detach(th);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000; }
    pthread_mutex_lock(&j->lock);
    while (!j->done) {
        if (pthread_cond_timedwait(&j->done_cond, &j->lock, &deadline) == ETIMEDOUT && !j->done) {
            j->abandoned = 1;
            pthread_mutex_unlock(&j->lock);
            snprintf(err, errlen, "init timed out after %lld ms (spec.initTimeout)",
                     (long long)timeout_ms);
            return -1;
        }
    }
    pthread_mutex_unlock(&j->lock);
    int rc = 0;
    if (j->status != DAPR_OK) {
        snprintf(err, errlen, "%s", j->err[0] ? j->err : "init failed");
        rc = -1;
    } else {
        c->instance = j->instance;
    }
    init_job_free(j);
    return rc;
}

static void component_free(component *c)
{
    for (size_t i = 0; i < c->n_meta; i++) {
        free((char *)c->meta[i].name);
        if (c->meta_secret[i] && c->meta[i].value)
            explicit_bzero((char *)c->meta[i].value, strlen(c->meta[i].value));
        free((char *)c->meta[i].value);
    }
    free(c->meta);
    free(c->meta_secret);
    free(c->name);
    free(c->type);
    free(c->version);
    free(c->file);
    free(c->key_prefix);
    free(c);
}

/* Build and initialise one component; want_kind 0 means the kind of the
 * type's category (a binding direction otherwise).  Returns it, or NULL
 * with err. */
static component *component_create(const component_spec *s, dapr_component_kind want_kind, const char *app_id,
                                   char *err, size_t errlen)
{
    dapr_component_kind kind = want_kind ? want_kind : kind_of_type_name(s->type);
    if (!kind) {
        snprintf(err, errlen, "spec.type '%s' has an unknown category", s->type);
        return NULL;
    }
    const char *file = NULL;
    const dapr_component_def *def = plugins_find_type(kind, s->type, s->version, &file);
    if (!def) {
        snprintf(err, errlen, "no plugin provides component type %s%s%s (looked in the plugins folders)",
                 s->type, *s->version ? " " : "", s->version);
        return NULL;
    }
    component *c = xcalloc(1, sizeof *c);
    c->name = xstrdup(s->name);
    c->type = xstrdup(s->type);
    c->version = xstrdup(def->version && *def->version ? def->version : "v1");
    c->file = xstrdup(s->file);
    c->kind = def->kind;
    c->def = def;
    c->host.comp = c;
    atomic_init(&c->inflight, 0);
    c->meta = xcalloc(s->n_meta, sizeof *c->meta);
    c->meta_secret = xcalloc(s->n_meta ? s->n_meta : 1, 1);
    /* secretKeyRef values come from an already initialised secret store
     * (components_init_all starts those first).  They are flagged secret
     * and used as they are: no placeholder expansion inside a password. */
    char **resolved = xcalloc(s->n_meta ? s->n_meta : 1, sizeof *resolved);
    if (secrets_resolve_refs(s, resolved, err, errlen) != 0) {
        free(resolved);
        component_free(c);
        return NULL;
    }
    for (size_t i = 0; i < s->n_meta; i++) {
        const manifest_meta *m = &s->meta[i];
        c->meta[i].name = xstrdup(m->name);
        if (resolved[i]) {
            c->meta[i].value = resolved[i];
            c->meta_secret[i] = 1;
        } else {
            c->meta[i].value = expand_placeholders(m->value, app_id);
        }
        c->n_meta = i + 1;
    }
    free(resolved);
    int schema_rc = check_schema(s, def, c, err, errlen);
    /* From here on no log line shows a secret value, whoever writes it. */
    for (size_t i = 0; i < c->n_meta; i++)
        if (c->meta_secret[i])
            log_redact_add(c->meta[i].value);
    if (schema_rc != 0 ||
        (kind == DAPR_KIND_STATE && setup_key_prefix(c, app_id, err, errlen) != 0)) {
        component_free(c);
        return NULL;
    }
    if (kind == DAPR_KIND_STATE) {
        const char *a = host_metadata_get(&c->host, "actorStateStore");
        c->actor_state_store = a && parse_bool(a) == 1;
        if (c->actor_state_store) {
            for (size_t i = 0; i < n_comps; i++)
                if (comps[i]->actor_state_store) {
                    snprintf(err, errlen, "actorStateStore is already set on component '%s'; only one is allowed",
                             comps[i]->name);
                    component_free(c);
                    return NULL;
                }
        }
    }
    int64_t t0 = now_monotonic_ms();
    if (init_with_timeout(c, s->init_timeout_ms, err, errlen) != 0) {
        component_free(c);
        return NULL;
    }
    log_info(SCOPE, "component loaded: %s (%s/%s%s) from %s in %lld ms", c->name, c->type, c->version,
             c->kind == DAPR_KIND_INPUT_BINDING ? ", input" : c->kind == DAPR_KIND_OUTPUT_BINDING ? ", output" : "",
             file, (long long)(now_monotonic_ms() - t0));
    return c;
}

component *component_new_standalone(const component_spec *s, const char *app_id, char *err,
                                    size_t errlen)
{
    return component_create(s, 0, app_id ? app_id : "", err, errlen);
}

void component_destroy(component *c)
{
    c->def->close(c->instance);
    component_free(c);
}

static int is_secret_store_spec(const component_spec *s)
{
    return kind_of_type_name(s->type) == DAPR_KIND_SECRET_STORE;
}

/*
 * The order components start in: secret stores first, since any other
 * component may take metadata from them through secretKeyRef; a secret
 * store that itself reads from another secret store waits for that one
 * (rounds until nothing moves; a cycle or a missing store then fails with
 * "not loaded").  Everything else keeps manifest order.  Returns a
 * malloc'ed permutation of specs->n indexes.
 */
static size_t *init_order(const component_list *specs)
{
    size_t *order = xcalloc(specs->n ? specs->n : 1, sizeof *order), k = 0;
    unsigned char *placed = xcalloc(specs->n ? specs->n : 1, 1);
    for (int progress = 1; progress;) {
        progress = 0;
        for (size_t i = 0; i < specs->n; i++) {
            const component_spec *s = &specs->items[i];
            if (placed[i] || !is_secret_store_spec(s))
                continue;
            const char *dep = secrets_spec_has_refs(s) ? secrets_store_of(s) : NULL;
            int waits = 0;
            for (size_t j = 0; dep && j < specs->n && !waits; j++)
                waits = j != i && !placed[j] && is_secret_store_spec(&specs->items[j]) &&
                        strcmp(specs->items[j].name, dep) == 0;
            if (waits)
                continue;
            order[k++] = i;
            placed[i] = 1;
            progress = 1;
        }
    }
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < specs->n; i++)
            if (!placed[i] && (pass == 1 || is_secret_store_spec(&specs->items[i]))) {
                order[k++] = i;
                placed[i] = 1;
            }
    free(placed);
    return order;
}

int components_init_all(const component_list *specs, const char *app_id)
{
    app_id_value = app_id ? app_id : "";
    size_t *order = init_order(specs);
    for (size_t oi = 0; oi < specs->n; oi++) {
        const component_spec *s = &specs->items[order[oi]];
        /* A bindings manifest makes one instance per direction in use. */
        dapr_component_kind kinds[2] = {0, 0};
        size_t n_kinds = 1;
        if (kind_of_type_name(s->type) == DAPR_KIND_OUTPUT_BINDING)
            n_kinds = bindings_kinds_of_spec(s, kinds);
        char err[768] = "";
        component *c = NULL;
        for (size_t ki = 0; ki < n_kinds; ki++) {
            c = component_create(s, kinds[ki], app_id_value, err, sizeof err);
            if (!c)
                break;
            comps = xrealloc(comps, (n_comps + 1) * sizeof *comps);
            comps[n_comps++] = c;
        }
        if (c)
            metrics_component_loaded(s->type); /* name resolution is not counted, as in Dapr */
        if (c || n_kinds == 0)
            continue;
        metrics_component_init_fail(s->type, "init", s->name);
        if (s->ignore_errors) {
            log_warn(SCOPE, "%s: component '%s' (%s) failed to initialise and is skipped (ignoreErrors): %s",
                     s->file, s->name, s->type, err);
            continue;
        }
        log_error(SCOPE, "%s: component '%s' (%s) failed to initialise: %s", s->file, s->name, s->type,
                  err);
        free(order);
        return -1;
    }
    free(order);
    return 0;
}

component *component_find(dapr_component_kind kind, const char *name)
{
    for (size_t i = 0; i < n_comps; i++) {
        component *c = comps[i];
        int same_kind = c->kind == kind ||
                        ((kind == DAPR_KIND_INPUT_BINDING || kind == DAPR_KIND_OUTPUT_BINDING) &&
                         (c->kind == DAPR_KIND_INPUT_BINDING || c->kind == DAPR_KIND_OUTPUT_BINDING));
        if (same_kind && strcmp(c->name, name) == 0)
            return c;
    }
    return NULL;
}

size_t components_count(void) { return n_comps; }
component *component_at(size_t i) { return comps[i]; }

size_t components_count_kind(dapr_component_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < n_comps; i++)
        n += comps[i]->kind == kind;
    return n;
}

void components_close_all(void)
{
    /* Reverse order: later components may depend on earlier ones. */
    for (size_t i = n_comps; i-- > 0;) {
        log_debug(SCOPE, "closing component %s", comps[i]->name);
        component_destroy(comps[i]);
    }
    free(comps);
    comps = NULL;
    n_comps = 0;
}

int component_dispatch(component *comp, void (*fn)(void *), void *arg)
{
    if (comp->def->flags & DAPR_COMPONENT_NONBLOCKING) {
        fn(arg);
        return 0;
    }
    return workers_submit(fn, arg);
}

size_t component_capabilities(const component *c, const char **out, size_t n)
{
    size_t k = 0;
    uint64_t f = c->def->features;
#define CAP(bit, name) do { if ((f & (bit)) && k + 1 < n) out[k++] = name; } while (0)
    if (c->kind == DAPR_KIND_STATE) {
        CAP(DAPR_STATE_ETAG, "ETAG");
        CAP(DAPR_STATE_TRANSACTIONAL, "TRANSACTIONAL");
        CAP(DAPR_STATE_TTL, "TTL");
        CAP(DAPR_STATE_QUERY, "QUERY_API");
        CAP(DAPR_STATE_DELETE_PREFIX, "DELETE_WITH_PREFIX");
        CAP(DAPR_STATE_PARTITION_KEY, "PARTITION_KEY");
        CAP(DAPR_STATE_KEYS_LIKE, "KEYS_LIKE");
        if ((f & DAPR_STATE_ETAG) && (f & DAPR_STATE_TRANSACTIONAL) && k + 1 < n)
            out[k++] = "ACTOR";
    } else if (c->kind == DAPR_KIND_PUBSUB) {
        CAP(DAPR_PUBSUB_SUBSCRIBE_WILDCARDS, "SUBSCRIBE_WILDCARDS");
    } else if (c->kind == DAPR_KIND_OUTPUT_BINDING && k + 1 < n) {
        out[k++] = "OUTPUT_BINDING";
    } else if (c->kind == DAPR_KIND_INPUT_BINDING && k + 1 < n) {
        out[k++] = "INPUT_BINDING";
    } else if (c->kind == DAPR_KIND_SECRET_STORE) {
        /* Some stores' features depend on their metadata (local.file's multiValued). */
        const dapr_secretstore_vtable *vt = c->def->vtable;
        if (vt && vt->size >= offsetof(dapr_secretstore_vtable, features) + sizeof vt->features &&
            vt->features && c->instance)
            f = vt->features(c->instance);
        CAP(DAPR_SECRETSTORE_MULTIPLE_KEY_VALUES, "MULTIPLE_KEY_VALUES_PER_SECRET");
    }
#undef CAP
    out[k] = NULL;
    return k;
}
