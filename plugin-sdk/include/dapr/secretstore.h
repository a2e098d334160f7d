/*
 * dapr/secretstore.h - the secret store vtable (DAPR_KIND_SECRET_STORE).
 *
 * Draft for ABI 1.0; the host side lands with the secrets building block.
 * Values returned here are secrets: the host never logs them.
 */
#ifndef DAPR_SECRETSTORE_H
#define DAPR_SECRETSTORE_H

#include <dapr/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DAPR_SECRETSTORE_MULTIPLE_KEY_VALUES (1ull << 0) /* "MULTIPLE_KEY_VALUES_PER_SECRET" */

typedef struct dapr_secret_get_req {
    const char *name;
    dapr_kvs metadata;
} dapr_secret_get_req;

typedef struct dapr_secret_get_result {
    dapr_status status;       /* DAPR_ERR_NOT_FOUND when the secret is absent */
    const char *message;
    dapr_kvs values;          /* key -> value within the secret */
} dapr_secret_get_result;

typedef void (*dapr_secret_get_cb)(void *ctx, const dapr_secret_get_result *res);

typedef struct dapr_secret_entry {
    const char *name;
    dapr_kvs values;
} dapr_secret_entry;

typedef struct dapr_secret_bulk_result {
    dapr_status status;
    const char *message;
    const dapr_secret_entry *secrets;
    size_t n_secrets;
} dapr_secret_bulk_result;

typedef void (*dapr_secret_bulk_cb)(void *ctx, const dapr_secret_bulk_result *res);

typedef struct dapr_secretstore_vtable {
    uint32_t size;
    void (*get)(void *inst, const dapr_secret_get_req *req,
                dapr_secret_get_cb cb, void *ctx);
    void (*bulk_get)(void *inst, dapr_kvs metadata,
                     dapr_secret_bulk_cb cb, void *ctx);
} dapr_secretstore_vtable;

#ifdef __cplusplus
}
#endif
#endif /* DAPR_SECRETSTORE_H */
