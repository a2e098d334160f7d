/*
 * conformance.h - shared declarations of dapr-plugin-conformance.
 *
 * The kit plays the host: it loads a state store or pub/sub plugin, gives it a real
 * services table (host.c), calls its vtable the way daprd does and waits
 * for each completion (ops.c, pubsub_ops.c), and runs the behavioural
 * suite of its kind (suite.c and query.c, or suite_pubsub.c).  It includes only the public SDK headers, so a third party can
 * build it against an installed SDK as well.
 */
#ifndef CONFORMANCE_H
#define CONFORMANCE_H

#include <dapr/plugin.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- options and the loaded component ---------------------------- */

typedef struct ck_options {
    const char *type;          /* --type, NULL: the only state component */
    char **meta_names;         /* --metadata name=value, in order */
    char **meta_values;
    size_t n_meta;
    int threads;               /* --threads, default 8 */
    int verbose;               /* --verbose: plugin debug logs, details */
    int timeout_ms;            /* --timeout SECONDS, per operation */
    const char *plugin_path;
    int redelivery_wait_ms;    /* --redelivery-wait SECONDS (pub/sub), default 1 */
    int no_ordering;           /* --no-ordering: skip the pub/sub order test */
    char **skip;               /* --skip TEXT: skip tests whose name contains it */
    size_t n_skip;
} ck_options;

extern ck_options ck_opt;

/* The component under test, valid between init and close. */
typedef struct ck_component {
    const dapr_component_def *def;
    const dapr_state_vtable *vt;     /* DAPR_KIND_STATE, else NULL */
    const dapr_pubsub_vtable *ps;    /* DAPR_KIND_PUBSUB, else NULL */
    void *inst;
    int nonblocking;           /* DAPR_COMPONENT_NONBLOCKING */
} ck_component;

extern ck_component ck_comp;

/* Does the plugin's vtable (of the size it recorded) reach this member,
 * and is the slot filled?  A vtable built against an older minor is
 * shorter; members past its end count as NULL. */
#define CK_VT_HAS(field)                                                   \
    (ck_comp.vt->size >= offsetof(dapr_state_vtable, field) +              \
                             sizeof(ck_comp.vt->field) &&                  \
     ck_comp.vt->field != NULL)

#define CK_FEATURE(bit) ((ck_comp.def->features & (bit)) != 0)

/* ---- host services (host.c) -------------------------------------- */

void host_setup(const dapr_component_def *def);
void host_shutdown(void);
dapr_host *host_handle(void);
const dapr_host_api *host_api(void);
/* Timers the plugin started and did not stop (checked after close). */
int host_live_timers(void);
/* Run an operation on the op pool: workers for blocking plugins, one
 * "loop" thread for non-blocking ones. */
void host_run_op(dapr_task_fn fn, void *arg);
/* Required schema fields absent from --metadata, as "a, b" or NULL. */
char *host_missing_required(void);

/* ---- synchronous calls (ops.c) ------------------------------------ */

typedef struct ck_kv {
    char *name;
    char *value;
} ck_kv;

/* One copied result: a get, a bulk item or a query item. */
typedef struct ck_item {
    char *key;
    dapr_status status;
    char *message;
    int found;
    uint8_t *value;            /* NUL-terminated copy, len bytes */
    size_t len;
    char *etag;
    ck_kv *meta;
    size_t n_meta;
    char *error;               /* query item error */
} ck_item;

/* Everything a completion told us, copied before the callback returned. */
typedef struct ck_reply {
    int completed;             /* 1: callback arrived once in time */
    char failure[256];         /* why completed is 0 */
    ck_item r;                 /* status, message, and the get result */
    ck_item *items;            /* bulk get / query items */
    size_t n_items;
    char *token;               /* query next-page token */
} ck_reply;

void ck_reply_free(ck_reply *rep);
const char *ck_meta_get(const ck_item *it, const char *name);
const char *ck_status_name(dapr_status s);
/* Calls that lost their callback (timed out) or got it twice so far. */
long ck_double_callbacks(void);
void ck_ops_shutdown(void);

/* Each returns 0 when the callback arrived (exactly once so far) within
 * the timeout, -1 otherwise (rep->failure says why). */
int ck_get(const char *key, ck_reply *rep);
int ck_set(const dapr_state_set_req *req, ck_reply *rep);
int ck_del(const dapr_state_delete_req *req, ck_reply *rep);
int ck_bulk_get(const char *const *keys, size_t n, ck_reply *rep);
int ck_bulk_set(const dapr_state_set_req *reqs, size_t n, ck_reply *rep);
int ck_bulk_delete(const dapr_state_delete_req *reqs, size_t n, ck_reply *rep);
int ck_transact(const dapr_state_op *ops, size_t n, ck_reply *rep);
int ck_query(const char *json, const char *key_prefix, ck_reply *rep);

/* ---- the suite (suite.c, query.c) ---------------------------------- */

/* Test outcome, filled by the CK_* macros below. */
typedef struct ck_test {
    int failed;
    int skipped;
    char reason[512];
} ck_test;

void ck_fail(ck_test *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void ck_skip(ck_test *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#define CK_REQUIRE(t, cond, ...)                                           \
    do {                                                                   \
        if (!(cond)) {                                                     \
            ck_fail((t), __VA_ARGS__);                                     \
            return;                                                        \
        }                                                                  \
    } while (0)

/* A call must complete; its failure text becomes the test's reason. */
#define CK_CALL(t, expr, rep)                                              \
    do {                                                                   \
        if ((expr) != 0) {                                                 \
            ck_fail((t), "%s", (rep)->failure);                            \
            ck_reply_free(rep);                                            \
            return;                                                        \
        }                                                                  \
    } while (0)

/* A unique key for this run: "<run prefix><name>". Caller frees. */
char *ck_key(const char *name);
/* The run's key prefix, like the host's "appid||" prefix. */
const char *ck_run_prefix(void);

/* Convenience wrappers used by many tests. */
dapr_state_set_req ck_set_req(const char *key, const char *value,
                              const char *etag, dapr_concurrency conc);
dapr_state_delete_req ck_del_req(const char *key, const char *etag,
                                 dapr_concurrency conc);
/* Plain last-write set; 0 when it completed with DAPR_OK. */
int ck_put(ck_test *t, const char *key, const char *value);
/* Get; 0 when it completed with DAPR_OK.  *out must be freed. */
int ck_fetch(ck_test *t, const char *key, ck_reply *out);

typedef void (*ck_test_fn)(ck_test *t);

typedef struct ck_case {
    const char *name;
    ck_test_fn fn;
} ck_case;

extern const ck_case ck_state_cases[];
extern const size_t ck_n_state_cases;
extern const ck_case ck_query_cases[];
extern const size_t ck_n_query_cases;

#endif /* CONFORMANCE_H */
