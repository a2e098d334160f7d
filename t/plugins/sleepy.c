/*
 * sleepy.c - a test state store (state.sleepy) whose get blocks for 2 s.
 *
 * It is deliberately not DAPR_COMPONENT_NONBLOCKING: the host must run its
 * operations on the worker pool.  t/system/test-loader.sh sends a get to it
 * and checks that /v1.0/healthz still answers at once, which proves that a
 * blocking plugin never stalls the event loop.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */

#include <dapr/plugin.h>

#include <stddef.h>
#include <time.h>

/* Any non-NULL pointer will do: the store keeps no state. */
static int sleepy_instance;

static dapr_status sleepy_init(dapr_host *host, const dapr_host_api *api,
                               void **instance, char *errbuf, size_t errlen)
{
    (void)host; (void)api; (void)errbuf; (void)errlen;
    *instance = &sleepy_instance;
    return DAPR_OK;
}

static void sleepy_close(void *instance)
{
    (void)instance;
}

static void sleepy_get(void *inst, const dapr_state_get_req *req,
                       dapr_state_get_cb cb, void *ctx)
{
    (void)inst; (void)req;
    struct timespec ts = {.tv_sec = 2, .tv_nsec = 0};

    /* Sleep the full 2 s even when a signal interrupts us. */
    while (nanosleep(&ts, &ts) != 0)
        ;
    dapr_state_get_result res = {.status = DAPR_OK, .found = 0};
    cb(ctx, &res);
}

static void sleepy_set(void *inst, const dapr_state_set_req *req,
                       dapr_result_cb cb, void *ctx)
{
    (void)inst; (void)req;
    dapr_result res = {.status = DAPR_OK};
    cb(ctx, &res);
}

static void sleepy_del(void *inst, const dapr_state_delete_req *req,
                       dapr_result_cb cb, void *ctx)
{
    (void)inst; (void)req;
    dapr_result res = {.status = DAPR_OK};
    cb(ctx, &res);
}

static const dapr_state_vtable sleepy_vtable = {
    .size = sizeof(dapr_state_vtable),
    .get = sleepy_get,
    .set = sleepy_set,
    .del = sleepy_del,
};

static const dapr_component_def sleepy_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.sleepy",
    .version = "v1",
    .features = 0,
    .flags = 0, /* blocking: the host must use its worker pool */
    .init = sleepy_init,
    .close = sleepy_close,
    .vtable = &sleepy_vtable,
};

static const dapr_component_def *const sleepy_components[] = {&sleepy_component};

static const dapr_plugin_descriptor sleepy_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "test-sleepy",
    .version = "0.1.0",
    .description = "test state store whose get sleeps 2 s",
    .components = sleepy_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &sleepy_descriptor;
}
