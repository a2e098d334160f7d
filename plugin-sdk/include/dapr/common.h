/*
 * dapr/common.h - types shared by every part of the Dapr plugin ABI.
 *
 * Nothing from a third-party library crosses this ABI: only fixed-width
 * integers, plain enums, NUL-terminated UTF-8 strings, byte slices and
 * opaque pointers.  A plugin built against another jansson, OpenSSL or
 * libevent than the host's therefore still loads.
 *
 * Memory rule used everywhere: whatever the host passes to a plugin stays
 * valid until the plugin completes the operation (calls its completion
 * callback); whatever the plugin passes back in a result stays valid only
 * until the completion callback returns (the host copies what it keeps).
 */
#ifndef DAPR_COMMON_H
#define DAPR_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes.  The host loads a plugin when the
 * plugin's major equals the host's and its minor is not newer than the
 * host's.  Adding a field at the end of a struct (whose size is recorded in
 * the struct) is a minor bump; any other change is a major bump. */
#define DAPR_PLUGIN_ABI_MAJOR 1
#define DAPR_PLUGIN_ABI_MINOR 0

/* Symbol visibility: build plugins with -fvisibility=hidden and mark only
 * the entry point with DAPR_PLUGIN_EXPORT. */
#if defined(__GNUC__)
#define DAPR_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define DAPR_PLUGIN_EXPORT
#endif

/* A byte slice.  ptr may be NULL only when len is 0. */
typedef struct dapr_bytes {
    const uint8_t *ptr;
    size_t len;
} dapr_bytes;

/* One name/value pair of metadata (both NUL-terminated). */
typedef struct dapr_kv {
    const char *name;
    const char *value;
} dapr_kv;

/* An array of metadata pairs.  items may be NULL when n is 0. */
typedef struct dapr_kvs {
    const dapr_kv *items;
    size_t n;
} dapr_kvs;

/*
 * Status codes returned by plugins.  The host maps each to Dapr's HTTP
 * status and errorCode for the building block at hand (for example an
 * ETAG_MISMATCH on a state save becomes 409 ERR_STATE_SAVE).  Values are
 * fixed forever; new codes are only ever appended.
 */
typedef enum dapr_status {
    DAPR_OK = 0,
    DAPR_ERR_INTERNAL = 1,          /* anything else; message says what */
    DAPR_ERR_INVALID_ARGUMENT = 2,  /* bad request data (key, metadata, query) */
    DAPR_ERR_NOT_FOUND = 3,         /* the addressed item does not exist */
    DAPR_ERR_ETAG_MISMATCH = 4,     /* etag given and differs, or key missing */
    DAPR_ERR_ETAG_INVALID = 5,      /* etag not in this store's format */
    DAPR_ERR_NOT_SUPPORTED = 6,     /* the store lacks this operation or option */
    DAPR_ERR_UNAVAILABLE = 7,       /* backend unreachable; retry may work */
    DAPR_ERR_TIMEOUT = 8,           /* backend did not answer in time */
    DAPR_ERR_TOO_MANY_OPERATIONS = 9, /* transaction larger than the store allows */
    DAPR_ERR_PERMISSION_DENIED = 10,
    DAPR_ERR_ALREADY_EXISTS = 11
} dapr_status;

/* Log levels, as daprd's --log-level. */
typedef enum dapr_log_level {
    DAPR_LOG_DEBUG = 0,
    DAPR_LOG_INFO = 1,
    DAPR_LOG_WARN = 2,
    DAPR_LOG_ERROR = 3
} dapr_log_level;

/* Opaque per-instance handle the host gives to each component instance.
 * Pass it back to every host service call. */
typedef struct dapr_host dapr_host;

/* A plain callback used by the scheduling services. */
typedef void (*dapr_task_fn)(void *arg);

/*
 * Services the host offers to every component instance.  The table is
 * owned by the host and lives as long as the process.  Check `size`
 * before using a member added after ABI 1.0.
 *
 * Every service may be called from any thread.
 */
typedef struct dapr_host_api {
    uint32_t size; /* sizeof(dapr_host_api) as the host knows it */

    /* Log a line in daprd's format, tagged with the component's name.
     * Never pass secret metadata values here. */
    void (*log)(dapr_host *host, dapr_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    /* Is this level enabled?  Lets a plugin skip building costly lines. */
    int (*log_enabled)(dapr_host *host, dapr_log_level level);

    /* The component's metadata from its manifest, with secretKeyRef and
     * envRef already resolved.  Names match case-insensitively, as in
     * Dapr.  Returns NULL when absent.  The string lives as long as the
     * instance. */
    const char *(*metadata_get)(dapr_host *host, const char *name);
    /* All metadata pairs in manifest order (same lifetime). */
    dapr_kvs (*metadata_all)(dapr_host *host);
    /* The component's name (metadata.name) and the sidecar's app id. */
    const char *(*component_name)(dapr_host *host);
    const char *(*app_id)(dapr_host *host);

    /* Run fn(arg) on the host's bounded worker pool.  Returns 0, or -1 when
     * the pool's queue is full (the caller must fail or retry later). */
    int (*submit)(dapr_host *host, dapr_task_fn fn, void *arg);

    /* Run fn(arg) on the worker pool every interval_ms milliseconds (the
     * first run after one interval) until timer_stop.  Returns a timer id
     * > 0, or 0 on failure.  A run is skipped while the previous one is
     * still going, so a slow task never piles up. */
    uint64_t (*timer_start)(dapr_host *host, uint64_t interval_ms,
                            dapr_task_fn fn, void *arg);
    /* Stop a timer.  When it returns, fn is not running and will not run
     * again for this timer. */
    void (*timer_stop)(dapr_host *host, uint64_t timer_id);

    /* Add to a counter or record a value for metrics, named in Dapr's
     * style (e.g. "component/redis/reconnects").  Optional for plugins. */
    void (*metric_add)(dapr_host *host, const char *name, double value);
} dapr_host_api;

/* Types of metadata values, for the declared schema. */
typedef enum dapr_metadata_type {
    DAPR_META_STRING = 0,
    DAPR_META_INT = 1,      /* decimal integer, may be negative */
    DAPR_META_BOOL = 2,     /* true/false/1/0/yes/no, case-insensitive */
    DAPR_META_DURATION = 3, /* Go duration ("5s", "1m30s", "250ms") or bare seconds */
    DAPR_META_BYTES = 4     /* resource quantity ("4Mi", "512Ki", "100") */
} dapr_metadata_type;

/* Metadata field flags. */
#define DAPR_META_REQUIRED 0x1u /* manifest must give a value */
#define DAPR_META_SECRET   0x2u /* never logged, never shown in the metadata API */

/*
 * One field of a component's metadata schema.  The host validates a
 * manifest against the schema before init: required fields present, values
 * parse as their type.  Names not in the schema are passed through with a
 * debug line (Dapr components ignore unknown metadata too).
 */
typedef struct dapr_metadata_field {
    const char *name;          /* canonical casing, e.g. "connectionString" */
    dapr_metadata_type type;
    uint32_t flags;            /* DAPR_META_* */
    const char *default_value; /* documentation and metadata_get fallback; may be NULL */
    const char *description;   /* one line for --help-plugins and docs */
} dapr_metadata_field;

#ifdef __cplusplus
}
#endif
#endif /* DAPR_COMMON_H */
