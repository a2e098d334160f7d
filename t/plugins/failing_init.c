/*
 * failing_init.c - a state store (state.failinit) whose init always fails.
 * daprd must stop with a message naming the component, unless the
 * manifest says ignoreErrors: true.
 */
#include <dapr/plugin.h>

#include <stdio.h>

static dapr_status failinit_init(dapr_host *host, const dapr_host_api *api,
                                 void **instance, char *errbuf, size_t errlen)
{
    (void)host; (void)api;
    *instance = NULL;
    snprintf(errbuf, errlen, "state.failinit always fails to initialise (test plugin)");
    return DAPR_ERR_UNAVAILABLE;
}

/* Never reached with an instance: init never succeeds. */
static void failinit_close(void *instance)
{
    (void)instance;
}

/* Operations are never called either, but a state store must have them. */
static void failinit_get(void *inst, const dapr_state_get_req *req,
                         dapr_state_get_cb cb, void *ctx)
{
    (void)inst; (void)req;
    dapr_state_get_result res = {.status = DAPR_ERR_INTERNAL, .message = "not initialised"};
    cb(ctx, &res);
}

static void failinit_set(void *inst, const dapr_state_set_req *req,
                         dapr_result_cb cb, void *ctx)
{
    (void)inst; (void)req;
    dapr_result res = {.status = DAPR_ERR_INTERNAL, .message = "not initialised"};
    cb(ctx, &res);
}

static void failinit_del(void *inst, const dapr_state_delete_req *req,
                         dapr_result_cb cb, void *ctx)
{
    (void)inst; (void)req;
    dapr_result res = {.status = DAPR_ERR_INTERNAL, .message = "not initialised"};
    cb(ctx, &res);
}

static const dapr_state_vtable failinit_vtable = {
    .size = sizeof(dapr_state_vtable),
    .get = failinit_get,
    .set = failinit_set,
    .del = failinit_del,
};

static const dapr_component_def failinit_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.failinit",
    .version = "v1",
    .flags = DAPR_COMPONENT_NONBLOCKING,
    .init = failinit_init,
    .close = failinit_close,
    .vtable = &failinit_vtable,
};

static const dapr_component_def *const failinit_components[] = {&failinit_component};

static const dapr_plugin_descriptor failinit_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "test-failing-init",
    .version = "0.1.0",
    .description = "test state store whose init always fails",
    .components = failinit_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &failinit_descriptor;
}
