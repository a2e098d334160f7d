/*
 * dapr/secretstore.h - the secret store vtable (DAPR_KIND_SECRET_STORE,
 * type names "secretstores.*").
 *
 * A secret has a name and holds one or more key/value pairs: most stores
 * answer a secret "db-password" with the single pair
 * {"db-password": "<value>"}; stores with DAPR_SECRETSTORE_MULTIPLE_KEY_VALUES
 * may answer several pairs.
 *
 * The host uses a secret store in two ways: for the app's secrets API
 * (GET /v1.0/secrets/{store}/{name} and .../bulk) and, at start-up, to
 * resolve `secretKeyRef` metadata of other components (secret stores are
 * initialised before every other component for that reason).
 *
 * Values returned here are secrets.  The host never logs them, never shows
 * them in the metadata API and scrubs them from its log lines; a plugin
 * must not log them either, nor put them in result messages.
 *
 * Every operation completes through its callback exactly once, from any
 * thread, possibly before the operation function returns (see dapr/plugin.h
 * for DAPR_COMPONENT_NONBLOCKING: a store that keeps everything in memory
 * should set it and answer inline).
 */
#ifndef DAPR_SECRETSTORE_H
#define DAPR_SECRETSTORE_H

#include <dapr/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Feature bits for secret stores (dapr_component_def.features, or the
 * per-instance answer of dapr_secretstore_vtable.features). */
#define DAPR_SECRETSTORE_MULTIPLE_KEY_VALUES (1ull << 0) /* "MULTIPLE_KEY_VALUES_PER_SECRET" */

/* ---- get one secret ----------------------------------------------- */

typedef struct dapr_secret_get_req {
    const char *name;     /* the secret's name, as the app or manifest gave it */
    dapr_kvs metadata;    /* request metadata (metadata.* query params) */
} dapr_secret_get_req;

typedef struct dapr_secret_get_result {
    /* DAPR_OK with the secret's pairs in values; DAPR_ERR_NOT_FOUND when
     * the store has no such secret (the host answers Dapr's 500
     * ERR_SECRET_GET with the message); any other code for failures.
     * DAPR_OK with no pairs is answered 204 (no content). */
    dapr_status status;
    const char *message;  /* error text (never a secret value), or NULL */
    dapr_kvs values;      /* key -> value within the secret */
} dapr_secret_get_result;

typedef void (*dapr_secret_get_cb)(void *ctx, const dapr_secret_get_result *res);

/* ---- get every secret ---------------------------------------------- */

typedef struct dapr_secret_entry {
    const char *name;     /* the secret's name */
    dapr_kvs values;      /* its key/value pairs */
} dapr_secret_entry;

typedef struct dapr_secret_bulk_result {
    dapr_status status;
    const char *message;  /* error text (never a secret value), or NULL */
    const dapr_secret_entry *secrets;
    size_t n_secrets;
} dapr_secret_bulk_result;

typedef void (*dapr_secret_bulk_cb)(void *ctx, const dapr_secret_bulk_result *res);

typedef struct dapr_secretstore_vtable {
    uint32_t size;        /* sizeof(dapr_secretstore_vtable) */
    /* Get one secret.  Required. */
    void (*get)(void *inst, const dapr_secret_get_req *req,
                dapr_secret_get_cb cb, void *ctx);
    /* Get every secret the store holds.  NULL: the host answers the bulk
     * API with ERR_SECRET_GET ("not supported"). */
    void (*bulk_get)(void *inst, dapr_kvs metadata,
                     dapr_secret_bulk_cb cb, void *ctx);
    /* The features of this instance when they depend on its metadata (for
     * example local.file's multiValued); the host reports them in the
     * metadata API instead of dapr_component_def.features.  NULL: use
     * dapr_component_def.features.  Called on any thread after init. */
    uint64_t (*features)(void *inst);
} dapr_secretstore_vtable;

#ifdef __cplusplus
}
#endif
#endif /* DAPR_SECRETSTORE_H */
