/* runtime.h - process-wide state shared by the API handlers. */
#ifndef DAPRD_RUNTIME_H
#define DAPRD_RUNTIME_H

#include <jansson.h>
#include <stdint.h>

typedef struct runtime_state {
    const char *app_id;        /* "" when --app-id was not given */
    const char *version;       /* runtime version reported by the metadata API */
    int outbound_ready;        /* components loaded and API server listening */
    int ready;                 /* fully initialised (app reachable when configured) */
    int shutting_down;
    json_t *extended;          /* PUT /v1.0/metadata/{key} pairs (strings) */
    const char *api_token;     /* DAPR_API_TOKEN, or NULL */
    uint64_t max_body_bytes;
    int app_port;              /* 0 = no app channel */
    void (*request_shutdown)(int force);
} runtime_state;

extern runtime_state rt;

#endif
