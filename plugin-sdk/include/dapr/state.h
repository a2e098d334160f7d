/*
 * dapr/state.h - the state store vtable (component kind DAPR_KIND_STATE).
 *
 * Keys reach the plugin already prefixed by the host (Dapr's keyPrefix
 * rule, "appid||key" by default) and results carry the same stored keys;
 * the plugin never needs to know about prefixes.
 *
 * Every operation completes through its callback, exactly once, from any
 * thread, possibly before the operation function returns.  See
 * dapr/plugin.h for how the host decides on which thread it calls a
 * plugin (DAPR_COMPONENT_NONBLOCKING).
 */
#ifndef DAPR_STATE_H
#define DAPR_STATE_H

#include <dapr/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Feature bits for state stores (dapr_component_def.features).  The host
 * reports them in the metadata API under Dapr's capability names. */
#define DAPR_STATE_ETAG          (1ull << 0) /* "ETAG" */
#define DAPR_STATE_TRANSACTIONAL (1ull << 1) /* "TRANSACTIONAL" */
#define DAPR_STATE_TTL           (1ull << 2) /* "TTL": honours metadata ttlInSeconds */
#define DAPR_STATE_QUERY         (1ull << 3) /* "QUERY_API" */
#define DAPR_STATE_DELETE_PREFIX (1ull << 4) /* "DELETE_WITH_PREFIX" */
#define DAPR_STATE_PARTITION_KEY (1ull << 5) /* "PARTITION_KEY" */
#define DAPR_STATE_KEYS_LIKE     (1ull << 6) /* "KEYS_LIKE" */
/* "ACTOR" is reported when both ETAG and TRANSACTIONAL are set. */

typedef enum dapr_concurrency {
    DAPR_CONCURRENCY_UNSPECIFIED = 0, /* = last-write */
    DAPR_CONCURRENCY_FIRST_WRITE = 1,
    DAPR_CONCURRENCY_LAST_WRITE = 2
} dapr_concurrency;

typedef enum dapr_consistency {
    DAPR_CONSISTENCY_UNSPECIFIED = 0,
    DAPR_CONSISTENCY_EVENTUAL = 1,
    DAPR_CONSISTENCY_STRONG = 2
} dapr_consistency;

/* ---- get ---------------------------------------------------------- */

typedef struct dapr_state_get_req {
    const char *key;
    dapr_consistency consistency;
    dapr_kvs metadata; /* request metadata (metadata.* query params) */
} dapr_state_get_req;

typedef struct dapr_state_get_result {
    dapr_status status;   /* DAPR_OK also when the key is absent */
    const char *message;  /* error text when status != DAPR_OK, else NULL */
    int found;            /* 0: key absent or expired */
    dapr_bytes value;
    const char *etag;     /* NULL when the store has no etags */
    dapr_kvs metadata;    /* e.g. ttlExpireTime (RFC 3339, UTC) */
} dapr_state_get_result;

typedef void (*dapr_state_get_cb)(void *ctx, const dapr_state_get_result *res);

/* ---- set and delete ------------------------------------------------ */

typedef struct dapr_state_set_req {
    const char *key;
    dapr_bytes value;
    const char *etag;     /* NULL or "": no etag check */
    dapr_concurrency concurrency;
    dapr_consistency consistency;
    dapr_kvs metadata;    /* item metadata merged with request metadata;
                             "ttlInSeconds" when a TTL is asked for */
} dapr_state_set_req;

typedef struct dapr_state_delete_req {
    const char *key;
    const char *etag;     /* NULL or "": no etag check */
    dapr_concurrency concurrency;
    dapr_consistency consistency;
    dapr_kvs metadata;
} dapr_state_delete_req;

/* Completion of an operation that returns only a status. */
typedef struct dapr_result {
    dapr_status status;
    const char *message;  /* NULL on success */
} dapr_result;

typedef void (*dapr_result_cb)(void *ctx, const dapr_result *res);

/* ---- bulk get ------------------------------------------------------ */

typedef struct dapr_state_bulk_get_req {
    const char *const *keys;
    size_t n_keys;
    dapr_kvs metadata;
    uint32_t parallelism; /* hint from the request; 0 = store's choice */
} dapr_state_bulk_get_req;

typedef struct dapr_state_bulk_item {
    const char *key;
    dapr_status status;   /* per-key failure when != DAPR_OK */
    const char *message;
    int found;
    dapr_bytes value;
    const char *etag;
    dapr_kvs metadata;
} dapr_state_bulk_item;

typedef struct dapr_state_bulk_get_result {
    dapr_status status;   /* whole-call failure when != DAPR_OK */
    const char *message;
    const dapr_state_bulk_item *items; /* same order as the request keys */
    size_t n_items;
} dapr_state_bulk_get_result;

typedef void (*dapr_state_bulk_get_cb)(void *ctx, const dapr_state_bulk_get_result *res);

/* ---- transactions -------------------------------------------------- */

typedef enum dapr_state_op_kind {
    DAPR_STATE_OP_UPSERT = 0,
    DAPR_STATE_OP_DELETE = 1
} dapr_state_op_kind;

typedef struct dapr_state_op {
    dapr_state_op_kind kind;
    dapr_state_set_req set;       /* when kind == UPSERT */
    dapr_state_delete_req del;    /* when kind == DELETE */
} dapr_state_op;

typedef struct dapr_state_txn_req {
    const dapr_state_op *ops;
    size_t n_ops;
    dapr_kvs metadata;            /* transaction-level metadata */
} dapr_state_txn_req;

/* ---- query (alpha) ------------------------------------------------- */

typedef struct dapr_state_query_req {
    /* The query document as the app sent it: UTF-8 JSON with "filter",
     * "sort" and "page" (see Dapr's state query API).  The plugin parses
     * it with whatever JSON library it bundles. */
    dapr_bytes query_json;
    dapr_kvs metadata;
    /* Only keys starting with this prefix belong to the caller (the
     * host's key prefix, e.g. "myapp||"); "" when prefixing is off. */
    const char *key_prefix;
} dapr_state_query_req;

typedef struct dapr_state_query_item {
    const char *key;      /* stored key (the host strips the prefix) */
    dapr_bytes data;      /* stored JSON value */
    const char *etag;     /* may be NULL */
    const char *error;    /* per-item error, usually NULL */
} dapr_state_query_item;

typedef struct dapr_state_query_result {
    dapr_status status;
    const char *message;
    const dapr_state_query_item *items;
    size_t n_items;
    const char *token;    /* next page token, NULL when no more pages */
    dapr_kvs metadata;
} dapr_state_query_result;

typedef void (*dapr_state_query_cb)(void *ctx, const dapr_state_query_result *res);

/*
 * The vtable.  A NULL slot means the plugin lacks that operation: the host answers
 * Dapr's "not supported" error (transact, query) or falls back on the
 * single-key operation (bulk_get, bulk_set, bulk_delete).
 */
typedef struct dapr_state_vtable {
    uint32_t size; /* sizeof(dapr_state_vtable) as the plugin knows it */

    void (*get)(void *inst, const dapr_state_get_req *req,
                dapr_state_get_cb cb, void *ctx);
    void (*set)(void *inst, const dapr_state_set_req *req,
                dapr_result_cb cb, void *ctx);
    void (*del)(void *inst, const dapr_state_delete_req *req,
                dapr_result_cb cb, void *ctx);

    void (*bulk_get)(void *inst, const dapr_state_bulk_get_req *req,
                     dapr_state_bulk_get_cb cb, void *ctx);
    /* Not atomic (Dapr's BulkSet): the first failure is reported. */
    void (*bulk_set)(void *inst, const dapr_state_set_req *reqs, size_t n,
                     dapr_result_cb cb, void *ctx);
    void (*bulk_delete)(void *inst, const dapr_state_delete_req *reqs, size_t n,
                        dapr_result_cb cb, void *ctx);

    /* All or nothing.  Requires DAPR_STATE_TRANSACTIONAL. */
    void (*transact)(void *inst, const dapr_state_txn_req *req,
                     dapr_result_cb cb, void *ctx);
    /* Requires DAPR_STATE_QUERY. */
    void (*query)(void *inst, const dapr_state_query_req *req,
                  dapr_state_query_cb cb, void *ctx);

    /* Largest transaction the store accepts; 0 = no limit. */
    uint32_t max_transaction_ops;
} dapr_state_vtable;

#ifdef __cplusplus
}
#endif
#endif /* DAPR_STATE_H */
