/*
 * secretstore_localfile.c - secretstores.local.file: secrets from a JSON
 * file, for local development (Dapr's component of the same name).
 *
 * Metadata: secretsFile (required), nestedSeparator (":"), multiValued
 * (false).  The file is read once, at init.
 *
 *  - multiValued false: the JSON is flattened; each leaf is one secret
 *    whose name is the path of keys (array indexes as numbers) joined with
 *    nestedSeparator, holding one pair {name: value}:
 *    {"db": {"user": "u"}, "ports": ["1"]} -> "db:user", "ports:0".
 *  - multiValued true: each top-level string is a secret {name: value};
 *    each top-level object is one secret whose pairs are that object
 *    flattened the same way; other top-level values are ignored.
 *
 * Leaves that are not strings are given as their JSON text (42, 1.5,
 * true), null as "" -- where Dapr's Go code prints "%!s(float64=42)".
 * A key repeated in one JSON object keeps its last value (as Go's
 * decoder); when two different paths flatten to the same name, the first
 * in the file wins and a warning names the duplicate.  Errors never quote the file's content:
 * a JSON syntax error is reported by line and column only.
 *
 * Everything is in memory after init and never changes, so the component
 * is DAPR_COMPONENT_NONBLOCKING and answers inline; values are wiped when
 * the instance closes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup, explicit_bzero */
#endif
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <dapr/plugin.h>

typedef struct secret {
    char *name;
    dapr_kv *pairs;   /* names and values owned here */
    size_t n_pairs;
} secret;

typedef struct localfile {
    dapr_host *host;
    const dapr_host_api *api;
    int multi_valued;
    secret *secrets;  /* sorted by name after init */
    size_t n;
    size_t cap;
} localfile;

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void secret_clear(secret *s)
{
    free(s->name);
    for (size_t i = 0; i < s->n_pairs; i++) {
        free((char *)s->pairs[i].name);
        wipe_free((char *)s->pairs[i].value);
    }
    free(s->pairs);
}

static void lf_free(localfile *lf)
{
    for (size_t i = 0; i < lf->n; i++)
        secret_clear(&lf->secrets[i]);
    free(lf->secrets);
    free(lf);
}

/* ---- flattening ------------------------------------------------------- */

/* A growable list of (path, value) leaves. */
typedef struct leaves {
    dapr_kv *items;
    size_t n, cap;
    int oom;
} leaves;

static int leaves_has(const leaves *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return 1;
    return 0;
}

/* Text of a leaf: strings as they are, other scalars as JSON text
 * (numbers in their shortest round-trip form: 0.1, not 0.10000000000000001). */
static char *leaf_text(json_t *v)
{
    char buf[64];
    if (json_is_string(v))
        return strndup(json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        return strdup(buf);
    }
    if (json_is_true(v))
        return strdup("true");
    if (json_is_false(v))
        return strdup("false");
    return strdup(""); /* null */
}

static void add_leaf(localfile *lf, leaves *l, const char *path, json_t *v)
{
    if (l->oom)
        return;
    if (leaves_has(l, path)) {
        lf->api->log(lf->host, DAPR_LOG_WARN, "duplicate secret name '%s' after flattening: the first is kept",
                     path);
        return;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        dapr_kv *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) { l->oom = 1; return; }
        l->items = grown;
        l->cap = cap;
    }
    char *name = strdup(path), *text = leaf_text(v);
    if (!name || !text) {
        free(name);
        wipe_free(text);
        l->oom = 1;
        return;
    }
    l->items[l->n].name = name;
    l->items[l->n].value = text;
    l->n++;
}

/* Append "sep key" to a path; NULL on allocation failure. */
static char *join(const char *prefix, const char *sep, const char *key)
{
    size_t pl = strlen(prefix), sl = *prefix ? strlen(sep) : 0, kl = strlen(key);
    char *out = malloc(pl + sl + kl + 1);
    if (!out)
        return NULL;
    memcpy(out, prefix, pl);
    memcpy(out + pl, sep, sl);
    memcpy(out + pl + sl, key, kl + 1);
    return out;
}

static void flatten(localfile *lf, leaves *l, const char *sep, const char *path, json_t *v, int depth)
{
    /* jansson refuses nesting deeper than 2048 when parsing; this bound
     * only keeps the recursion obviously finite. */
    if (l->oom || depth > 4096)
        return;
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach(v, k, child) {
            char *p = join(path, sep, k);
            if (!p) { l->oom = 1; return; }
            flatten(lf, l, sep, p, child, depth + 1);
            free(p);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            char idx[32];
            snprintf(idx, sizeof idx, "%zu", i);
            char *p = join(path, sep, idx);
            if (!p) { l->oom = 1; return; }
            flatten(lf, l, sep, p, json_array_get(v, i), depth + 1);
            free(p);
        }
    } else {
        add_leaf(lf, l, path, v);
    }
}

static void leaves_free(leaves *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->items[i].name);
        wipe_free((char *)l->items[i].value);
    }
    free(l->items);
}

static int add_secret(localfile *lf, char *name, dapr_kv *pairs, size_t n_pairs)
{
    if (lf->n == lf->cap) {
        size_t cap = lf->cap ? lf->cap * 2 : 16;
        secret *grown = realloc(lf->secrets, cap * sizeof *grown);
        if (!grown)
            return -1;
        lf->secrets = grown;
        lf->cap = cap;
    }
    lf->secrets[lf->n++] = (secret){.name = name, .pairs = pairs, .n_pairs = n_pairs};
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const secret *)a)->name, ((const secret *)b)->name);
}

/* Build the secrets from the parsed file.  Returns 0 or -1 (no memory). */
static int build(localfile *lf, json_t *root, const char *sep)
{
    if (!lf->multi_valued) {
        leaves l = {0};
        flatten(lf, &l, sep, "", root, 0);
        if (l.oom) {
            leaves_free(&l);
            return -1;
        }
        for (size_t i = 0; i < l.n; i++) {
            dapr_kv *pair = malloc(sizeof *pair);
            char *name = strdup(l.items[i].name);
            if (!pair || !name || add_secret(lf, name, pair, 1) != 0) {
                free(pair);
                free(name);
                leaves_free(&l);
                return -1;
            }
            /* The leaf's strings move into the secret. */
            *pair = l.items[i];
            l.items[i] = (dapr_kv){0};
        }
        l.n = 0;
        leaves_free(&l);
        return 0;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        leaves l = {0};
        if (json_is_string(v))
            add_leaf(lf, &l, k, v);
        else if (json_is_object(v))
            flatten(lf, &l, sep, "", v, 0);
        else
            continue; /* as Dapr: only strings and objects at the top */
        char *name = strdup(k);
        if (l.oom || !name || add_secret(lf, name, l.items, l.n) != 0) {
            free(name);
            leaves_free(&l);
            return -1;
        }
    }
    return 0;
}

/* ---- lifecycle ---------------------------------------------------------- */

static dapr_status lf_init(dapr_host *host, const dapr_host_api *api, void **instance, char *errbuf,
                           size_t errlen)
{
    const char *file = api->metadata_get(host, "secretsFile");
    const char *sep = api->metadata_get(host, "nestedSeparator");
    const char *mv = api->metadata_get(host, "multiValued");
    if (!file || !*file) {
        snprintf(errbuf, errlen, "missing local secrets file in metadata (secretsFile)");
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    if (!sep || !*sep)
        sep = ":";
    localfile *lf = calloc(1, sizeof *lf);
    if (!lf) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    lf->host = host;
    lf->api = api;
    lf->multi_valued = mv && (strcasecmp(mv, "true") == 0 || strcmp(mv, "1") == 0 ||
                              strcasecmp(mv, "yes") == 0 || strcasecmp(mv, "on") == 0);

    FILE *f = fopen(file, "rb");
    if (!f) {
        snprintf(errbuf, errlen, "cannot open secretsFile '%s': %s", file, strerror(errno));
        lf_free(lf);
        return DAPR_ERR_UNAVAILABLE;
    }
    json_error_t jerr;
    json_t *root = json_loadf(f, 0, &jerr);
    fclose(f);
    if (!root) {
        /* jerr.text may quote the file ("near '...'"): position only. */
        snprintf(errbuf, errlen, "secretsFile '%s' is not valid JSON (line %d, column %d)", file, jerr.line,
                 jerr.column);
        lf_free(lf);
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    if (!json_is_object(root)) {
        snprintf(errbuf, errlen, "secretsFile '%s' must hold a JSON object", file);
        json_decref(root);
        lf_free(lf);
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    int rc = build(lf, root, sep);
    json_decref(root); /* jansson frees its copies without wiping them */
    if (rc != 0) {
        snprintf(errbuf, errlen, "out of memory");
        lf_free(lf);
        return DAPR_ERR_INTERNAL;
    }
    if (lf->n)
        qsort(lf->secrets, lf->n, sizeof *lf->secrets, by_name);
    api->log(host, DAPR_LOG_DEBUG, "read %zu secrets from '%s'%s", lf->n, file,
             lf->multi_valued ? " (multiValued)" : "");
    *instance = lf;
    return DAPR_OK;
}

static void lf_close(void *instance)
{
    if (instance)
        lf_free(instance);
}

/* ---- operations ------------------------------------------------------------ */

static void lf_get(void *inst, const dapr_secret_get_req *req, dapr_secret_get_cb cb, void *ctx)
{
    localfile *lf = inst;
    secret key = {.name = (char *)req->name};
    const secret *s = lf->n ? bsearch(&key, lf->secrets, lf->n, sizeof *lf->secrets, by_name) : NULL;
    if (!s) {
        char msg[300];
        snprintf(msg, sizeof msg, "secret %.250s not found", req->name);
        dapr_secret_get_result res = {.status = DAPR_ERR_NOT_FOUND, .message = msg};
        cb(ctx, &res);
        return;
    }
    dapr_secret_get_result res = {.status = DAPR_OK, .values = {s->pairs, s->n_pairs}};
    cb(ctx, &res);
}

static void lf_bulk_get(void *inst, dapr_kvs metadata, dapr_secret_bulk_cb cb, void *ctx)
{
    (void)metadata;
    localfile *lf = inst;
    dapr_secret_entry *entries = calloc(lf->n ? lf->n : 1, sizeof *entries);
    if (!entries) {
        dapr_secret_bulk_result res = {.status = DAPR_ERR_INTERNAL, .message = "out of memory"};
        cb(ctx, &res);
        return;
    }
    for (size_t i = 0; i < lf->n; i++)
        entries[i] = (dapr_secret_entry){.name = lf->secrets[i].name,
                                         .values = {lf->secrets[i].pairs, lf->secrets[i].n_pairs}};
    dapr_secret_bulk_result res = {.status = DAPR_OK, .secrets = entries, .n_secrets = lf->n};
    /* The host copies the result before the callback returns; the
     * instance may be closed right after it, so free first-hand data
     * only (entries points into the instance). */
    cb(ctx, &res);
    free(entries);
}

static uint64_t lf_features(void *inst)
{
    localfile *lf = inst;
    return lf->multi_valued ? DAPR_SECRETSTORE_MULTIPLE_KEY_VALUES : 0;
}

/* ---- descriptor ------------------------------------------------------------- */

static const dapr_metadata_field lf_schema[] = {
    {"secretsFile", DAPR_META_STRING, DAPR_META_REQUIRED, NULL, "path of the JSON file holding the secrets"},
    {"nestedSeparator", DAPR_META_STRING, 0, ":", "separator joining nested keys into secret names"},
    {"multiValued", DAPR_META_BOOL, 0, "false", "top-level objects are secrets with several keys"},
};

static const dapr_secretstore_vtable lf_vtable = {
    .size = sizeof(dapr_secretstore_vtable),
    .get = lf_get,
    .bulk_get = lf_bulk_get,
    .features = lf_features,
};

static const dapr_component_def lf_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_SECRET_STORE,
    .type = "secretstores.local.file",
    .version = "v1",
    .features = 0, /* MULTIPLE_KEY_VALUES_PER_SECRET per instance: lf_features */
    .flags = DAPR_COMPONENT_NONBLOCKING,
    .metadata_schema = lf_schema,
    .n_metadata_schema = sizeof lf_schema / sizeof *lf_schema,
    .init = lf_init,
    .close = lf_close,
    .vtable = &lf_vtable,
};

static const dapr_component_def *const lf_components[] = {&lf_component};

static const dapr_plugin_descriptor lf_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "secretstore-localfile",
    .version = "1.0.0",
    .description = "secretstores.local.file: secrets from a local JSON file",
    .components = lf_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &lf_descriptor;
}
