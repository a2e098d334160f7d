/*
 * probe_store.c - secretstores.probe, a test secret store for t/secrets.
 *
 * Deliberately blocking (not DAPR_COMPONENT_NONBLOCKING), so the host runs
 * it on the worker pool, and deliberately careless with its `password`
 * metadata: it logs it and quotes it in errors, so the tests can prove
 * that daprd scrubs secret values from every log line and error message.
 *
 * Metadata: password (DAPR_META_SECRET), failInit ("true": init fails with
 * an error quoting the password).
 *
 * get(name):
 *   "echo-metadata"    -> the request metadata as the secret's pairs
 *   "empty"            -> DAPR_OK with no pairs (the API answers 204)
 *   "fail"             -> DAPR_ERR_UNAVAILABLE "backend down"
 *   "missing"          -> DAPR_ERR_NOT_FOUND
 *   "fail-with-secret" -> DAPR_ERR_INTERNAL, message quoting the password
 *   "password"         -> {"password": <password>}
 *   anything else      -> {name: "value-of-<name>"}
 * bulk_get: request metadata fail=1 -> DAPR_ERR_UNAVAILABLE; else
 *   {"alpha": {"alpha": "1"}, "beta": {"b1": "x", "b2": "y"}} plus
 *   "metadata" -> the request metadata.
 */
#define _POSIX_C_SOURCE 200809L

#include <dapr/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct probe {
    dapr_host *host;
    const dapr_host_api *api;
    char password[256];
} probe;

static dapr_status probe_init(dapr_host *host, const dapr_host_api *api, void **instance,
                              char *errbuf, size_t errlen)
{
    const char *pw = api->metadata_get(host, "password");
    const char *fail = api->metadata_get(host, "failInit");
    /* Careless on purpose: daprd must scrub this line. */
    api->log(host, DAPR_LOG_INFO, "probe starting with password=%s", pw ? pw : "(none)");
    api->log(host, DAPR_LOG_DEBUG, "probe debug: password is %s", pw ? pw : "(none)");
    if (fail && strcmp(fail, "true") == 0) {
        snprintf(errbuf, errlen, "cannot log in with password %s", pw ? pw : "(none)");
        return DAPR_ERR_UNAVAILABLE;
    }
    probe *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    p->host = host;
    p->api = api;
    snprintf(p->password, sizeof p->password, "%s", pw ? pw : "");
    *instance = p;
    return DAPR_OK;
}

static void probe_close(void *instance)
{
    free(instance);
}

static void probe_get(void *inst, const dapr_secret_get_req *req, dapr_secret_get_cb cb, void *ctx)
{
    probe *p = inst;
    dapr_secret_get_result res = {.status = DAPR_OK};
    char value[300], msg[400];
    dapr_kv pair;
    if (strcmp(req->name, "echo-metadata") == 0) {
        res.values = req->metadata;
    } else if (strcmp(req->name, "empty") == 0) {
        /* no pairs */
    } else if (strcmp(req->name, "fail") == 0) {
        res.status = DAPR_ERR_UNAVAILABLE;
        res.message = "backend down";
    } else if (strcmp(req->name, "missing") == 0) {
        res.status = DAPR_ERR_NOT_FOUND;
    } else if (strcmp(req->name, "fail-with-secret") == 0) {
        p->api->log(p->host, DAPR_LOG_ERROR, "request failed for password %s", p->password);
        snprintf(msg, sizeof msg, "login refused for password %s", p->password);
        res.status = DAPR_ERR_INTERNAL;
        res.message = msg;
    } else if (strcmp(req->name, "password") == 0) {
        pair = (dapr_kv){.name = "password", .value = p->password};
        res.values = (dapr_kvs){&pair, 1};
    } else {
        snprintf(value, sizeof value, "value-of-%.200s", req->name);
        pair = (dapr_kv){.name = req->name, .value = value};
        res.values = (dapr_kvs){&pair, 1};
    }
    cb(ctx, &res);
}

static void probe_bulk_get(void *inst, dapr_kvs metadata, dapr_secret_bulk_cb cb, void *ctx)
{
    (void)inst;
    for (size_t i = 0; i < metadata.n; i++)
        if (strcmp(metadata.items[i].name, "fail") == 0 && strcmp(metadata.items[i].value, "1") == 0) {
            dapr_secret_bulk_result res = {.status = DAPR_ERR_UNAVAILABLE, .message = "bulk backend down"};
            cb(ctx, &res);
            return;
        }
    static const dapr_kv alpha[] = {{"alpha", "1"}};
    static const dapr_kv beta[] = {{"b1", "x"}, {"b2", "y"}};
    dapr_secret_entry entries[3] = {
        {"alpha", {alpha, 1}},
        {"beta", {beta, 2}},
        {"metadata", metadata},
    };
    dapr_secret_bulk_result res = {.status = DAPR_OK, .secrets = entries, .n_secrets = 3};
    cb(ctx, &res);
}

static const dapr_metadata_field probe_schema[] = {
    {"password", DAPR_META_STRING, DAPR_META_SECRET, NULL, "a secret the probe mishandles on purpose"},
    {"failInit", DAPR_META_BOOL, 0, "false", "init fails, quoting the password"},
};

static const dapr_secretstore_vtable probe_vtable = {
    .size = sizeof(dapr_secretstore_vtable),
    .get = probe_get,
    .bulk_get = probe_bulk_get,
};

static const dapr_component_def probe_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_SECRET_STORE,
    .type = "secretstores.probe",
    .version = "v1",
    .features = DAPR_SECRETSTORE_MULTIPLE_KEY_VALUES,
    .flags = 0,
    .metadata_schema = probe_schema,
    .n_metadata_schema = sizeof probe_schema / sizeof *probe_schema,
    .init = probe_init,
    .close = probe_close,
    .vtable = &probe_vtable,
};

static const dapr_component_def *const probe_components[] = {&probe_component};

static const dapr_plugin_descriptor probe_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "secretstore-probe",
    .version = "0.0.0",
    .description = "secretstores.probe: a test secret store (t/secrets)",
    .components = probe_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &probe_descriptor;
}
