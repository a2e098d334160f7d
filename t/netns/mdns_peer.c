/*
 * mdns_peer.c - one "sidecar" for test-mdns-netns.sh: loads the
 * nameresolution.mdns plugin through the public ABI with a minimal fake
 * host, announces an app id and resolves others.
 *
 * Usage: mdns-peer PLUGIN.so APP_ID ADDRESS PORT COUNT PEER_APP_ID...
 *
 * Prints "ANNOUNCED", then for each peer tries for up to 8 s to resolve it
 * and prints COUNT lines "RESOLVED <peer> <host:port>" (100 ms apart, so
 * that round-robin shows), then "DONE".  It then waits for signals:
 * SIGUSR1 resolves the first peer once more and prints "AFTER <peer>
 * <host:port>" or "AFTER <peer> NOTFOUND"; SIGTERM withdraws, closes the
 * instance, unloads the plugin and exits 0.  Exits 1 on any failure and
 * after 30 s without SIGTERM.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dapr/plugin.h>

#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *my_app_id;

/* ---- the fake host ------------------------------------------------------ */

static void h_log(dapr_host *h, dapr_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    va_list ap;
    fprintf(stderr, "[%s %s] ", my_app_id, names[level & 3]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int h_log_enabled(dapr_host *h, dapr_log_level level)
{
    return level >= DAPR_LOG_INFO || getenv("MDNS_PEER_DEBUG") != NULL;
}

static const char *h_metadata_get(dapr_host *h, const char *name) { return NULL; }
static dapr_kvs h_metadata_all(dapr_host *h) { return (dapr_kvs){NULL, 0}; }
static const char *h_component_name(dapr_host *h) { return "mdns"; }
static const char *h_app_id(dapr_host *h) { return my_app_id; }
static int h_submit(dapr_host *h, dapr_task_fn fn, void *arg) { return -1; }
static uint64_t h_timer_start(dapr_host *h, uint64_t ms, dapr_task_fn fn, void *arg)
{
    return 0;
}
static void h_timer_stop(dapr_host *h, uint64_t id) {}
static void h_metric_add(dapr_host *h, const char *name, double v) {}

static const dapr_host_api host_api = {
    .size = sizeof(dapr_host_api),
    .log = h_log,
    .log_enabled = h_log_enabled,
    .metadata_get = h_metadata_get,
    .metadata_all = h_metadata_all,
    .component_name = h_component_name,
    .app_id = h_app_id,
    .submit = h_submit,
    .timer_start = h_timer_start,
    .timer_stop = h_timer_stop,
    .metric_add = h_metric_add,
};

/* ---- completions (the plugin completes inline) --------------------------- */

typedef struct outcome {
    dapr_status status;
    char text[256]; /* the address or the message: the host copies */
} outcome;

static void result_cb(void *ctx, const dapr_result *r)
{
    outcome *o = ctx;
    o->status = r->status;
    snprintf(o->text, sizeof(o->text), "%s", r->message ? r->message : "");
}

static void resolve_cb(void *ctx, const dapr_nr_resolve_result *r)
{
    outcome *o = ctx;
    o->status = r->status;
    snprintf(o->text, sizeof(o->text), "%s",
             r->status == DAPR_OK ? r->address : (r->message ? r->message : ""));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const dapr_component_def *find_mdns(const dapr_plugin_descriptor *d)
{
    for (size_t i = 0; i < d->n_components; i++)
        if (d->components[i]->kind == DAPR_KIND_NAME_RESOLUTION &&
            strcmp(d->components[i]->type, "nameresolution.mdns") == 0)
            return d->components[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s PLUGIN APP_ID ADDRESS PORT COUNT PEER...\n", argv[0]);
        return 2;
    }
    my_app_id = argv[2];
    int count = atoi(argv[5]);
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Block the signals before the plugin starts its thread, which then
     * inherits the mask: only sigtimedwait below sees them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &sigs, NULL);

    void *so = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    dapr_plugin_entry_fn entry = (dapr_plugin_entry_fn)dlsym(so, DAPR_PLUGIN_ENTRY_SYMBOL);
    const dapr_plugin_descriptor *d = entry ? entry() : NULL;
    const dapr_component_def *def = d && d->abi_major == DAPR_PLUGIN_ABI_MAJOR ? find_mdns(d) : NULL;
    if (!def) {
        fprintf(stderr, "%s: no nameresolution.mdns of ABI %d\n", argv[1], DAPR_PLUGIN_ABI_MAJOR);
        return 1;
    }
    const dapr_nameresolution_vtable *vt = def->vtable;

    char err[256] = "";
    void *inst = NULL;
    if (def->init(NULL, &host_api, &inst, err, sizeof(err)) != DAPR_OK) {
        fprintf(stderr, "init: %s\n", err);
        return 1;
    }

    dapr_nr_instance_info self = {.app_id = argv[2], .namespace_ = "",
                                  .address = argv[3],
                                  .internal_port = (uint16_t)atoi(argv[4]),
                                  .http_port = 3500, .app_port = 0};
    outcome o = {0};
    vt->announce(inst, &self, result_cb, &o);
    if (o.status != DAPR_OK) {
        fprintf(stderr, "announce: %s\n", o.text);
        return 1;
    }
    printf("ANNOUNCED\n");

    int rc = 0;
    for (int p = 6; p < argc && rc == 0; p++) {
        dapr_nr_resolve_req req = {.app_id = argv[p], .namespace_ = ""};
        double deadline = now_s() + 8;
        do {
            vt->resolve(inst, &req, resolve_cb, &o);
        } while (o.status == DAPR_ERR_NOT_FOUND && now_s() < deadline);
        if (o.status != DAPR_OK) {
            fprintf(stderr, "resolve %s: %s\n", argv[p], o.text);
            rc = 1;
            break;
        }
        for (int i = 0; i < count; i++) {
            if (i > 0) {
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
                vt->resolve(inst, &req, resolve_cb, &o);
            }
            printf("RESOLVED %s %s\n", argv[p], o.status == DAPR_OK ? o.text : "NOTFOUND");
        }
    }
    if (rc == 0) printf("DONE\n");

    struct timespec wait = {30, 0};
    for (;;) {
        int sig = rc == 0 ? sigtimedwait(&sigs, NULL, &wait) : SIGTERM;
        if (sig == SIGUSR1) {
            dapr_nr_resolve_req req = {.app_id = argv[6], .namespace_ = ""};
            vt->resolve(inst, &req, resolve_cb, &o);
            printf("AFTER %s %s\n", argv[6], o.status == DAPR_OK ? o.text : "NOTFOUND");
            continue;
        }
        if (sig != SIGTERM) rc = 1; /* timed out */
        break;
    }
    vt->withdraw(inst, result_cb, &o);
    def->close(inst);
    dlclose(so);
    return rc;
}
