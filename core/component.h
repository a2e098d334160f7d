/*
 * component.h - component instances: a manifest's Component bound to the
 * plugin type that implements it, initialised and ready for calls.
 */
#ifndef DAPRD_COMPONENT_H
#define DAPRD_COMPONENT_H

#include <dapr/plugin.h>
#include <stdatomic.h>
#include "manifest.h"

typedef struct component component;

/* The host handle a plugin instance receives (opaque to plugins). */
struct dapr_host {
    component *comp;
};

struct component {
    char *name;
    char *type;
    char *version;           /* effective version ("v1" when the manifest left it empty) */
    char *file;              /* manifest file */
    dapr_component_kind kind;
    const dapr_component_def *def;
    void *instance;
    struct dapr_host host;
    dapr_kv *meta;           /* resolved metadata, manifest order */
    unsigned char *meta_secret; /* 1 where the value must never be shown */
    size_t n_meta;
    char *key_prefix;        /* state: "prefix||", or "" for none */
    int actor_state_store;
    atomic_int inflight;     /* operations started and not yet completed */
};

/* Initialise every spec of the list.  Returns 0, or -1 after logging a
 * fatal error (a component failed and does not have ignoreErrors). */
int components_init_all(const component_list *specs, const char *app_id);

/* The component named `name` of that kind (bindings: either binding kind). */
component *component_find(dapr_component_kind kind, const char *name);
size_t components_count(void);
component *component_at(size_t i);
size_t components_count_kind(dapr_component_kind kind);

/* A component that is not listed with the others (the name resolver,
 * configured by the Configuration rather than a Component manifest).
 * Returns NULL with err filled on failure. */
component *component_new_standalone(const component_spec *s, const char *app_id, char *err,
                                    size_t errlen);
void component_destroy(component *c);

/* Close every instance (the caller made sure nothing is in flight). */
void components_close_all(void);

/*
 * Run fn(arg), an operation on comp, on the right thread: inline on the
 * loop when the plugin is DAPR_COMPONENT_NONBLOCKING, else on the worker
 * pool.  Returns 0, or -1 when the pool is saturated (answer "busy").
 */
int component_dispatch(component *comp, void (*fn)(void *), void *arg);

/* The host services table given to every plugin. */
const dapr_host_api *host_api(void);

/* Dapr capability names for a component ("ETAG", ...), NULL-terminated
 * into out (at most n-1 names).  Returns the count. */
size_t component_capabilities(const component *c, const char **out, size_t n);

#endif
