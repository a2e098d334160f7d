/*
 * api_invoke.c - service invocation entry point.
 *
 * Every request that matches no building-block route lands here, as in
 * Dapr.  Invocation itself (app channel, sidecar-to-sidecar) is the next
 * building block; until it lands, requests that name a target app get
 * ERR_DIRECT_INVOKE 500 saying so, and requests that do not get Dapr's
 * 404 for a missing app id.
 */
#include "config.h"
#include "api.h"

#include <string.h>

void api_invoke_fallback(api_call *c)
{
    const char *target = api_header(c, "dapr-app-id");
    if (c->n_seg >= 4 && strcmp(c->seg[0], "v1.0") == 0 && strcmp(c->seg[1], "invoke") == 0 &&
        strcmp(c->seg[3], "method") == 0)
        target = c->seg[2];
    if (!target || !*target) {
        api_reply_error(c, 404, "ERR_DIRECT_INVOKE",
                        "failed getting app id either from the URL path or the header dapr-app-id");
        return;
    }
    api_reply_error(c, 500, "ERR_DIRECT_INVOKE",
                    "failed to invoke, id: %s, err: service invocation is not available in this daprd build yet",
                    target);
}
