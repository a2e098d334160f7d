/*
 * secrets.c - secret scopes and start-up resolution of secretKeyRef.
 *
 * Resolution runs on the main thread before the event loop starts, like
 * component init: it asks the secret store through its vtable (on the
 * worker pool unless the store is non-blocking) and waits on a condition
 * variable with the referencing component's initTimeout, so a store that
 * never answers cannot hang start-up.  Secrets copied here are wiped
 * before their memory is freed.
 */
#include "config.h"
#include "secrets.h"
#include "component.h"
#include "kv_list.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- scopes ------------------------------------------------------------ */

static secret_scope *scopes;
static size_t n_scopes;

static char **copy_strv(char *const *v, size_t n)
{
    char **out = xcalloc(n ? n : 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

void secrets_free(void)
{
    for (size_t i = 0; i < n_scopes; i++) {
        free(scopes[i].store);
        for (size_t k = 0; k < scopes[i].n_allowed; k++)
            free(scopes[i].allowed[k]);
        free(scopes[i].allowed);
        for (size_t k = 0; k < scopes[i].n_denied; k++)
            free(scopes[i].denied[k]);
        free(scopes[i].denied);
    }
    free(scopes);
    scopes = NULL;
    n_scopes = 0;
}

void secrets_configure(const configuration *cfg)
{
    secrets_free();
    if (!cfg || !cfg->n_secret_scopes)
        return;
    scopes = xcalloc(cfg->n_secret_scopes, sizeof *scopes);
    for (size_t i = 0; i < cfg->n_secret_scopes; i++) {
        const secret_scope *s = &cfg->secret_scopes[i];
        scopes[i].store = xstrdup(s->store);
        scopes[i].default_deny = s->default_deny;
        scopes[i].allowed = copy_strv(s->allowed, s->n_allowed);
        scopes[i].n_allowed = s->n_allowed;
        scopes[i].denied = copy_strv(s->denied, s->n_denied);
        scopes[i].n_denied = s->n_denied;
    }
    n_scopes = cfg->n_secret_scopes;
}

static int listed(char *const *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], key) == 0)
            return 1;
    return 0;
}

int secrets_allowed(const char *store, const char *key)
{
    for (size_t i = 0; i < n_scopes; i++) {
        const secret_scope *s = &scopes[i];
        if (strcmp(s->store, store) != 0)
            continue;
        if (s->n_allowed)
            return listed(s->allowed, s->n_allowed, key);
        if (listed(s->denied, s->n_denied, key))
            return 0;
        return !s->default_deny;
    }
    return 1;
}

/* ---- secretKeyRef -------------------------------------------------------- */

const char *secrets_store_of(const component_spec *s)
{
    return s->auth_secret_store && *s->auth_secret_store ? s->auth_secret_store : NULL;
}

int secrets_spec_has_refs(const component_spec *s)
{
    for (size_t i = 0; i < s->n_meta; i++)
        if (s->meta[i].secret_name)
            return 1;
    return 0;
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void kv_list_wipe(kv_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].value)
            explicit_bzero((char *)l->items[i].value, strlen(l->items[i].value));
    kv_list_free(l);
}

/* One secret read that the caller waits for with a deadline.  Whoever
 * comes last (the waiter that got the answer, or the completion after the
 * waiter gave up) frees it. */
struct sync_get {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int abandoned;
    component *store;
    char *name;
    dapr_secret_get_req req;
    dapr_status st;
    char *msg;
    kv_list values;
};

static void sync_get_free(struct sync_get *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    free(g->name);
    free(g->msg);
    kv_list_wipe(&g->values);
    free(g);
}

static void sync_get_done(void *ctx, const dapr_secret_get_result *res)
{
    struct sync_get *g = ctx;
    component *store = g->store;
    pthread_mutex_lock(&g->lock);
    g->st = res->status;
    g->msg = res->message ? xstrdup(res->message) : NULL;
    if (res->status == DAPR_OK)
        g->values = kv_list_copy(res->values);
    g->done = 1;
    int abandoned = g->abandoned;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->lock);
    /* g belongs to the waiter now, unless it gave up. */
    if (abandoned)
        sync_get_free(g);
    atomic_fetch_sub(&store->inflight, 1);
}

static void sync_get_run(void *arg)
{
    struct sync_get *g = arg;
    const dapr_secretstore_vtable *vt = g->store->def->vtable;
    vt->get(g->store->instance, &g->req, sync_get_done, g);
}

static const char *status_name(dapr_status st)
{
    switch (st) {
    case DAPR_ERR_NOT_FOUND: return "not found";
    case DAPR_ERR_PERMISSION_DENIED: return "permission denied";
    case DAPR_ERR_UNAVAILABLE: return "secret store unavailable";
    case DAPR_ERR_TIMEOUT: return "secret store timed out";
    default: return "secret store error";
    }
}

/* Read secret `name`; on success *out gets its pairs.  Returns 0, or -1
 * with err. */
static int read_secret(component *store, const char *name, int64_t timeout_ms, kv_list *out,
                       char *err, size_t errlen)
{
    const dapr_secretstore_vtable *vt = store->def->vtable;
    if (!vt || vt->size < offsetof(dapr_secretstore_vtable, get) + sizeof vt->get || !vt->get) {
        snprintf(err, errlen, "the secret store's plugin has no get operation");
        return -1;
    }
    struct sync_get *g = xcalloc(1, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->store = store;
    g->name = xstrdup(name);
    g->req = (dapr_secret_get_req){.name = g->name};
    atomic_fetch_add(&store->inflight, 1);
    if (component_dispatch(store, sync_get_run, g) != 0) {
        atomic_fetch_sub(&store->inflight, 1);
        sync_get_free(g);
        snprintf(err, errlen, "the worker pool is saturated");
        return -1;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&g->lock);
    while (!g->done) {
        if (pthread_cond_timedwait(&g->cond, &g->lock, &deadline) == ETIMEDOUT && !g->done) {
            g->abandoned = 1;
            pthread_mutex_unlock(&g->lock);
            snprintf(err, errlen, "no answer within %lld ms (spec.initTimeout)", (long long)timeout_ms);
            return -1;
        }
    }
    pthread_mutex_unlock(&g->lock);
    int rc = 0;
    if (g->st != DAPR_OK) {
        snprintf(err, errlen, "%s", g->msg && *g->msg ? g->msg : status_name(g->st));
        rc = -1;
    } else {
        *out = g->values;
        g->values = (kv_list){0};
    }
    sync_get_free(g);
    return rc;
}

struct cached_secret {
    const char *name;
    kv_list values;
};

int secrets_resolve_refs(const component_spec *s, char **values, char *err, size_t errlen)
{
    const manifest_meta *first = NULL;
    for (size_t i = 0; i < s->n_meta && !first; i++)
        if (s->meta[i].secret_name)
            first = &s->meta[i];
    if (!first)
        return 0;
    const char *store_name = secrets_store_of(s);
    if (!store_name) {
        snprintf(err, errlen,
                 "metadata field '%s' uses secretKeyRef (secret '%s', key '%s'), but the component sets no "
                 "auth.secretStore (outside Kubernetes there is no default secret store)",
                 first->name, first->secret_name, first->secret_key);
        return -1;
    }
    component *store = component_find(DAPR_KIND_SECRET_STORE, store_name);
    if (!store) {
        snprintf(err, errlen,
                 "metadata field '%s' uses secretKeyRef (secret '%s', key '%s') from secret store '%s', "
                 "which is not loaded",
                 first->name, first->secret_name, first->secret_key, store_name);
        return -1;
    }
    /* Each secret is read once per component, as Dapr does. */
    struct cached_secret *cache = xcalloc(s->n_meta, sizeof *cache);
    size_t n_cache = 0;
    int rc = 0;
    for (size_t i = 0; i < s->n_meta && rc == 0; i++) {
        const manifest_meta *m = &s->meta[i];
        if (!m->secret_name)
            continue;
        struct cached_secret *c = NULL;
        for (size_t k = 0; k < n_cache && !c; k++)
            if (strcmp(cache[k].name, m->secret_name) == 0)
                c = &cache[k];
        if (!c) {
            char why[384] = "";
            kv_list got = {0};
            if (read_secret(store, m->secret_name, s->init_timeout_ms, &got, why, sizeof why) != 0) {
                snprintf(err, errlen, "metadata field '%s': cannot read secret '%s' (key '%s') from secret store '%s': %s",
                         m->name, m->secret_name, m->secret_key, store_name, why);
                rc = -1;
                break;
            }
            c = &cache[n_cache++];
            c->name = m->secret_name;
            c->values = got;
        }
        /* Dapr ignores an absent or empty key (the field stays empty); a
         * component then fails later with a vaguer error, so say it here. */
        const char *v = kv_list_get(&c->values, m->secret_key);
        if (!v || !*v) {
            snprintf(err, errlen, "metadata field '%s': secret '%s' in secret store '%s' has %s key '%s'",
                     m->name, m->secret_name, store_name, v ? "an empty value for" : "no", m->secret_key);
            rc = -1;
            break;
        }
        values[i] = xstrdup(v);
    }
    for (size_t k = 0; k < n_cache; k++)
        kv_list_wipe(&cache[k].values);
    free(cache);
    if (rc != 0)
        for (size_t i = 0; i < s->n_meta; i++) {
            wipe_free(values[i]);
            values[i] = NULL;
        }
    return rc;
}
