/*
 * nameres.c - host side of name resolution.
 */
#include "config.h"
#include "nameres.h"
#include "component.h"
#include "log.h"
#include "loop.h"
#include "util.h"
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SCOPE "dapr.runtime.nameresolution"

static component *resolver;
static char *announced_app_id;

static const dapr_nameresolution_vtable *vt(void)
{
    return (const dapr_nameresolution_vtable *)resolver->def->vtable;
}

int nameres_available(void) { return resolver != NULL; }
const char *nameres_type(void) { return resolver ? resolver->type : ""; }

/* The default sqlite file: shared by every sidecar of this user. */
static char *default_sqlite_path(void)
{
    const char *home = getenv("HOME");
    char *dir = xasprintf("%s/.dapr", home && *home ? home : ".");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        free(dir);
        return NULL;
    }
    char *path = xasprintf("%s/nameresolution.db", dir);
    free(dir);
    return path;
}

int nameres_init(const configuration *cfg, const char *app_id)
{
    int explicit = cfg && cfg->nr_component;
    /* A one-item list so that component_list_free releases the spec. */
    component_list one = {.items = xcalloc(1, sizeof(component_spec)), .n = 1};
    component_spec *s = one.items;
    s->file = xstrdup(explicit ? "(Configuration spec.nameResolution)" : "(default name resolution)");
    s->name = xstrdup("nameresolution");
    s->type = xasprintf("nameresolution.%s", explicit ? cfg->nr_component : "sqlite");
    s->version = xstrdup(explicit && cfg->nr_version ? cfg->nr_version : "");
    s->init_timeout_ms = 5000;
    if (explicit) {
        s->n_meta = cfg->n_nr_meta;
        s->meta = xcalloc(s->n_meta ? s->n_meta : 1, sizeof *s->meta);
        for (size_t i = 0; i < s->n_meta; i++) {
            s->meta[i].name = xstrdup(cfg->nr_meta[i].name);
            s->meta[i].value = xstrdup(cfg->nr_meta[i].value ? cfg->nr_meta[i].value : "");
        }
    } else {
        char *path = default_sqlite_path();
        s->n_meta = 1;
        s->meta = xcalloc(1, sizeof *s->meta);
        s->meta[0].name = xstrdup("connectionString");
        s->meta[0].value = path ? path : xstrdup("nameresolution.db");
    }
    char err[768] = "";
    int rc = 0;
    resolver = component_new_standalone(s, app_id, err, sizeof err);
    if (!resolver) {
        if (explicit) {
            log_error(SCOPE, "name resolution %s failed to initialise: %s", s->type, err);
            rc = -1;
        } else {
            log_warn(SCOPE, "default name resolution (%s) is not available: %s; calls to other apps will fail",
                     s->type, err);
        }
    } else if (resolver->kind != DAPR_KIND_NAME_RESOLUTION) {
        log_error(SCOPE, "%s is not a name resolver", s->type);
        component_destroy(resolver);
        resolver = NULL;
        rc = -1;
    } else {
        log_info(SCOPE, "using name resolution %s", s->type);
    }
    component_list_free(&one);
    return rc;
}

/* ---- announce ------------------------------------------------------------- */

struct announce_job {
    dapr_nr_instance_info info;
    char *app_id, *ns, *address;
};

static void announce_done(void *ctx, const dapr_result *res)
{
    struct announce_job *j = ctx;
    if (res->status != DAPR_OK)
        log_error(SCOPE, "announcing %s at %s:%u failed: %s", j->app_id, j->address, j->info.internal_port,
                  res->message ? res->message : "error");
    else
        log_info(SCOPE, "announced %s at %s:%u (%s)", j->app_id, j->address, j->info.internal_port,
                 resolver->type);
    free(j->app_id);
    free(j->ns);
    free(j->address);
    free(j);
}

static void announce_run(void *arg)
{
    struct announce_job *j = arg;
    vt()->announce(resolver->instance, &j->info, announce_done, j);
}

void nameres_announce(const dapr_nr_instance_info *self)
{
    if (!resolver || !self->app_id || !*self->app_id)
        return;
    struct announce_job *j = xcalloc(1, sizeof *j);
    j->app_id = xstrdup(self->app_id);
    j->ns = xstrdup(self->namespace_ ? self->namespace_ : "");
    j->address = xstrdup(self->address);
    j->info = *self;
    j->info.app_id = j->app_id;
    j->info.namespace_ = j->ns;
    j->info.address = j->address;
    free(announced_app_id);
    announced_app_id = xstrdup(self->app_id);
    if (workers_submit(announce_run, j) != 0)
        announce_run(j);
}

/* ---- resolve --------------------------------------------------------------- */

struct resolve_job {
    char *app_id, *ns;
    nameres_cb cb;
    void *arg;
    dapr_status st;
    char *msg, *address;
};

static void resolve_finish(void *arg)
{
    struct resolve_job *j = arg;
    j->cb(j->arg, j->st, j->msg, j->address);
    free(j->app_id);
    free(j->ns);
    free(j->msg);
    free(j->address);
    free(j);
}

static void resolve_done(void *ctx, const dapr_nr_resolve_result *res)
{
    struct resolve_job *j = ctx;
    j->st = res->status;
    if (res->status == DAPR_OK && (!res->address || !*res->address))
        j->st = DAPR_ERR_NOT_FOUND;
    j->msg = res->message ? xstrdup(res->message) : NULL;
    j->address = res->address ? xstrdup(res->address) : NULL;
    loop_post(resolve_finish, j);
}

static void resolve_run(void *arg)
{
    struct resolve_job *j = arg;
    dapr_nr_resolve_req req = {.app_id = j->app_id, .namespace_ = j->ns};
    vt()->resolve(resolver->instance, &req, resolve_done, j);
}

void nameres_resolve(const char *app_id, const char *namespace_, nameres_cb cb, void *arg)
{
    struct resolve_job *j = xcalloc(1, sizeof *j);
    j->app_id = xstrdup(app_id);
    j->ns = xstrdup(namespace_ ? namespace_ : "");
    j->cb = cb;
    j->arg = arg;
    if (!resolver) {
        j->st = DAPR_ERR_UNAVAILABLE;
        j->msg = xstrdup("no name resolution component is available");
        loop_post(resolve_finish, j);
        return;
    }
    if (workers_submit(resolve_run, j) != 0) {
        j->st = DAPR_ERR_UNAVAILABLE;
        j->msg = xstrdup("too many operations in flight");
        loop_post(resolve_finish, j);
    }
}

/* ---- shutdown ----------------------------------------------------------------- */

struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
};

static void withdraw_done(void *ctx, const dapr_result *res)
{
    struct sync_wait *w = ctx;
    if (res->status != DAPR_OK)
        log_warn(SCOPE, "withdrawing from name resolution failed: %s", res->message ? res->message : "error");
    pthread_mutex_lock(&w->lock);
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void nameres_shutdown(void)
{
    if (resolver && announced_app_id) {
        struct sync_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
        vt()->withdraw(resolver->instance, withdraw_done, &w);
        pthread_mutex_lock(&w.lock);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
    }
    if (resolver)
        component_destroy(resolver);
    resolver = NULL;
    free(announced_app_id);
    announced_app_id = NULL;
}
