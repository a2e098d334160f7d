/*
 * stub_state.h - a do-nothing state store shared by the test plugins that
 * the loader must refuse (t/plugins/bad-*.c, dup-type.c, no-entry.c).
 *
 * Each such plugin is a single .c file that includes this header, so the
 * functions here are static: every .so gets its own private copy.
 * If the loader ever wrongly accepts one of these plugins, its operations
 * at least answer sanely.
 */
#ifndef T_PLUGINS_STUB_STATE_H
#define T_PLUGINS_STUB_STATE_H

#include <dapr/plugin.h>

#include <stddef.h>

static int stub_instance;

static dapr_status stub_init(dapr_host *host, const dapr_host_api *api,
                             void **instance, char *errbuf, size_t errlen)
{
    (void)host; (void)api; (void)errbuf; (void)errlen;
    *instance = &stub_instance;
    return DAPR_OK;
}

static void stub_close(void *instance)
{
    (void)instance;
}

static void stub_get(void *inst, const dapr_state_get_req *req,
                     dapr_state_get_cb cb, void *ctx)
{
    (void)inst; (void)req;
    dapr_state_get_result res = {.status = DAPR_OK, .found = 0};
    cb(ctx, &res);
}

static void stub_set(void *inst, const dapr_state_set_req *req,
                     dapr_result_cb cb, void *ctx)
{
    (void)inst; (void)req;
    dapr_result res = {.status = DAPR_OK};
    cb(ctx, &res);
}

static void stub_del(void *inst, const dapr_state_delete_req *req,
                     dapr_result_cb cb, void *ctx)
{
    (void)inst; (void)req;
    dapr_result res = {.status = DAPR_OK};
    cb(ctx, &res);
}

static const dapr_state_vtable stub_vtable = {
    .size = sizeof(dapr_state_vtable),
    .get = stub_get,
    .set = stub_set,
    .del = stub_del,
};

/* A component definition of the stub store under the given type name. */
#define STUB_STATE_COMPONENT(type_name)              \
    {                                                \
        .size = sizeof(dapr_component_def),          \
        .kind = DAPR_KIND_STATE,                     \
        .type = (type_name),                         \
        .version = "v1",                             \
        .flags = DAPR_COMPONENT_NONBLOCKING,         \
        .init = stub_init,                           \
        .close = stub_close,                         \
        .vtable = &stub_vtable,                      \
    }

#endif /* T_PLUGINS_STUB_STATE_H */
