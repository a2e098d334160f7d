/*
 * secretstore_localenv.c - secretstores.local.env: daprd's environment
 * variables as secrets (Dapr's component of the same name).
 *
 * Metadata: prefix (optional).  Secret NAME is the variable prefix+NAME
 * and holds one pair {NAME: value}; a variable that is not set gives an
 * empty value, not an error (as in Dapr).  Bulk returns every variable
 * that starts with the prefix (case-sensitive), named without it.
 *
 * daprd's own secrets are never exposed: variables named APP_API_TOKEN or
 * starting with DAPR_ (any case; DAPR_API_TOKEN among them) read as empty
 * and are left out of bulk answers.
 *
 * The environment is read, never written, after start-up, so getenv and
 * environ are safe from any thread; the component is non-blocking.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <dapr/plugin.h>

extern char **environ;

typedef struct localenv {
    dapr_host *host;
    const dapr_host_api *api;
    char *prefix;
} localenv;

static int key_allowed(const char *name, size_t len)
{
    if (len == 13 && strncasecmp(name, "APP_API_TOKEN", 13) == 0)
        return 0;
    if (len >= 5 && strncasecmp(name, "DAPR_", 5) == 0)
        return 0;
    return 1;
}

static dapr_status le_init(dapr_host *host, const dapr_host_api *api, void **instance, char *errbuf,
                           size_t errlen)
{
    const char *prefix = api->metadata_get(host, "prefix");
    localenv *le = calloc(1, sizeof *le);
    if (!le || !(le->prefix = strdup(prefix ? prefix : ""))) {
        free(le);
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    le->host = host;
    le->api = api;
    *instance = le;
    return DAPR_OK;
}

static void le_close(void *instance)
{
    localenv *le = instance;
    if (le) {
        free(le->prefix);
        free(le);
    }
}

static void le_get(void *inst, const dapr_secret_get_req *req, dapr_secret_get_cb cb, void *ctx)
{
    localenv *le = inst;
    size_t pl = strlen(le->prefix), nl = strlen(req->name);
    char *var = malloc(pl + nl + 1);
    if (!var) {
        dapr_secret_get_result res = {.status = DAPR_ERR_INTERNAL, .message = "out of memory"};
        cb(ctx, &res);
        return;
    }
    memcpy(var, le->prefix, pl);
    memcpy(var + pl, req->name, nl + 1);
    const char *value = "";
    if (key_allowed(var, pl + nl)) {
        const char *v = getenv(var);
        if (v)
            value = v;
    } else {
        le->api->log(le->host, DAPR_LOG_WARN, "access to the environment variable %.200s is forbidden", req->name);
    }
    free(var);
    dapr_kv pair = {.name = req->name, .value = value};
    dapr_secret_get_result res = {.status = DAPR_OK, .values = {&pair, 1}};
    cb(ctx, &res);
}

static void le_bulk_get(void *inst, dapr_kvs metadata, dapr_secret_bulk_cb cb, void *ctx)
{
    (void)metadata;
    localenv *le = inst;
    size_t pl = strlen(le->prefix), n = 0, count = 0;
    for (char **e = environ; e && *e; e++)
        count++;
    dapr_secret_entry *entries = calloc(count ? count : 1, sizeof *entries);
    dapr_kv *pairs = calloc(count ? count : 1, sizeof *pairs);
    char **names = calloc(count ? count : 1, sizeof *names);
    int oom = !entries || !pairs || !names;
    for (char **e = environ; !oom && e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        size_t kl = (size_t)(eq - *e);
        if (pl && (kl <= pl || strncmp(*e, le->prefix, pl) != 0))
            continue;
        if (!key_allowed(*e, kl))
            continue;
        char *name = strndup(*e + pl, kl - pl);
        if (!name) {
            oom = 1;
            break;
        }
        names[n] = name;
        pairs[n] = (dapr_kv){.name = name, .value = eq + 1};
        entries[n] = (dapr_secret_entry){.name = name, .values = {&pairs[n], 1}};
        n++;
    }
    dapr_secret_bulk_result res;
    if (oom)
        res = (dapr_secret_bulk_result){.status = DAPR_ERR_INTERNAL, .message = "out of memory"};
    else
        res = (dapr_secret_bulk_result){.status = DAPR_OK, .secrets = entries, .n_secrets = n};
    cb(ctx, &res);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(pairs);
    free(entries);
}

static const dapr_metadata_field le_schema[] = {
    {"prefix", DAPR_META_STRING, 0, NULL, "read only variables starting with this (stripped from names)"},
};

static const dapr_secretstore_vtable le_vtable = {
    .size = sizeof(dapr_secretstore_vtable),
    .get = le_get,
    .bulk_get = le_bulk_get,
    .features = NULL,
};

static const dapr_component_def le_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_SECRET_STORE,
    .type = "secretstores.local.env",
    .version = "v1",
    .features = 0,
    .flags = DAPR_COMPONENT_NONBLOCKING,
    .metadata_schema = le_schema,
    .n_metadata_schema = sizeof le_schema / sizeof *le_schema,
    .init = le_init,
    .close = le_close,
    .vtable = &le_vtable,
};

static const dapr_component_def *const le_components[] = {&le_component};

static const dapr_plugin_descriptor le_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "secretstore-localenv",
    .version = "1.0.0",
    .description = "secretstores.local.env: environment variables as secrets",
    .components = le_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &le_descriptor;
}
