/*
 * dapr/nameresolution.h - the name resolver vtable (DAPR_KIND_NAME_RESOLUTION).
 *
 * Draft for ABI 1.0; the host side lands with service invocation.  A
 * resolver is configured by the Configuration manifest's
 * spec.nameResolution rather than by a Component.
 */
#ifndef DAPR_NAMERESOLUTION_H
#define DAPR_NAMERESOLUTION_H

#include <dapr/common.h>
#include <dapr/state.h> /* dapr_result */

#ifdef __cplusplus
extern "C" {
#endif

/* This sidecar, announced to the others. */
typedef struct dapr_nr_instance_info {
    const char *app_id;
    const char *namespace_;   /* "" in self-hosted mode */
    const char *address;      /* host address others reach us at */
    uint16_t internal_port;   /* sidecar-to-sidecar port */
    uint16_t http_port;       /* the Dapr HTTP API port */
    uint16_t app_port;        /* 0 when there is no app channel */
} dapr_nr_instance_info;

typedef struct dapr_nr_resolve_req {
    const char *app_id;
    const char *namespace_;
} dapr_nr_resolve_req;

typedef struct dapr_nr_resolve_result {
    dapr_status status;       /* DAPR_ERR_NOT_FOUND when no live instance */
    const char *message;
    const char *address;      /* "host:port" of the target's internal port */
} dapr_nr_resolve_result;

typedef void (*dapr_nr_resolve_cb)(void *ctx, const dapr_nr_resolve_result *res);

typedef struct dapr_nameresolution_vtable {
    uint32_t size;
    /* Announce this sidecar; keep the announcement fresh until withdraw. */
    void (*announce)(void *inst, const dapr_nr_instance_info *self,
                     dapr_result_cb cb, void *ctx);
    void (*resolve)(void *inst, const dapr_nr_resolve_req *req,
                    dapr_nr_resolve_cb cb, void *ctx);
    void (*withdraw)(void *inst, dapr_result_cb cb, void *ctx);
} dapr_nameresolution_vtable;

#ifdef __cplusplus
}
#endif
#endif /* DAPR_NAMERESOLUTION_H */
