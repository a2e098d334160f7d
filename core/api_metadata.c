/*
 * api_metadata.c - health, metadata and shutdown endpoints (reference §8).
 */
#include "config.h"
#include "api.h"
#include "app_channel.h"
#include "component.h"
#include "pubsub.h"
#include "runtime.h"
#include "util.h"

#include <string.h>

void api_healthz(api_call *c)
{
    const char *appid = api_query(c, "appid");
    if (!rt.ready) {
        api_reply_error(c, 500, "ERR_HEALTH_NOT_READY", "dapr is not ready: %s",
                        rt.outbound_ready ? "[app]" : "[components http-server]");
        return;
    }
    if (appid && strcmp(appid, rt.app_id) != 0) {
        api_reply_error(c, 500, "ERR_HEALTH_APPID_NOT_MATCH", "dapr app-id does not match");
        return;
    }
    api_reply_empty(c, 204);
}

void api_healthz_outbound(api_call *c)
{
    if (!rt.outbound_ready) {
        api_reply_error(c, 500, "ERR_OUTBOUND_HEALTH_NOT_READY", "dapr outbound is not ready");
        return;
    }
    api_reply_empty(c, 204);
}

static int is_binding(const component *c)
{
    return c->kind == DAPR_KIND_INPUT_BINDING || c->kind == DAPR_KIND_OUTPUT_BINDING;
}

static json_t *components_json(void)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < components_count(); i++) {
        component *comp = component_at(i);
        /* A binding used in both directions is two instances but one
         * component: listed once, with both capabilities (as Dapr). */
        component *twin = NULL;
        int listed = 0;
        for (size_t k = 0; k < components_count() && is_binding(comp); k++) {
            component *o = component_at(k);
            if (k != i && is_binding(o) && strcmp(o->name, comp->name) == 0) {
                if (k < i) listed = 1;
                else twin = o;
            }
        }
        if (listed)
            continue;
        json_t *o = json_pack("{s:s, s:s, s:s}", "name", comp->name, "type", comp->type, "version",
                              comp->version);
        const char *caps[16];
        size_t n = component_capabilities(comp, caps, 16);
        if (twin)
            n += component_capabilities(twin, caps + n, 16 - n);
        if (n) {
            json_t *ca = json_array();
            for (size_t k = 0; k < n; k++)
                json_array_append_new(ca, json_string(caps[k]));
            json_object_set_new(o, "capabilities", ca);
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

void api_metadata_get(api_call *c)
{
    json_t *body = json_object();
    if (*rt.app_id)
        json_object_set_new(body, "id", json_string(rt.app_id));
    json_object_set_new(body, "runtimeVersion", json_string(rt.version));
    json_t *comps = components_json();
    if (json_array_size(comps))
        json_object_set_new(body, "components", comps);
    else
        json_decref(comps);
    json_t *ext = json_deep_copy(rt.extended);
    json_object_set_new(ext, "daprRuntimeVersion", json_string(rt.version));
    json_object_set_new(body, "extended", ext);
    json_object_set_new(body, "actorRuntime", json_pack("{s:s}", "runtimeStatus", "DISABLED"));
    json_t *subs = pubsub_metadata();
    if (subs)
        json_object_set_new(body, "subscriptions", subs);
    json_t *app = app_channel_metadata();
    if (app)
        json_object_set_new(body, "appConnectionProperties", app);
    api_reply_json(c, 200, body);
}

void api_metadata_put(api_call *c, const char *key)
{
    size_t len;
    const unsigned char *body = api_body(c, &len);
    json_t *v = json_stringn((const char *)body, len);
    if (!v) {
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "metadata value must be valid UTF-8");
        return;
    }
    json_t *k = json_string(key);
    if (!k) {
        json_decref(v);
        api_reply_error(c, 400, "ERR_MALFORMED_REQUEST", "metadata key must be valid UTF-8");
        return;
    }
    json_decref(k);
    /* daprRuntimeVersion is the runtime's own. */
    if (strcmp(key, "daprRuntimeVersion") != 0)
        json_object_set_new(rt.extended, key, v);
    else
        json_decref(v);
    api_reply_empty(c, 204);
}

void api_shutdown(api_call *c)
{
    const char *force = api_header(c, "dapr-force-shutdown");
    int forced = force && strcmp(force, "true") == 0;
    api_reply_empty(c, 204);
    if (rt.request_shutdown)
        rt.request_shutdown(forced);
}
