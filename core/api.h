/* api.h - the building-block handlers the router dispatches to. */
#ifndef DAPRD_API_H
#define DAPRD_API_H

#include "http_api.h"

/* api_state.c */
void api_state_get(api_call *c, const char *store, const char *key);
void api_state_save(api_call *c, const char *store);
void api_state_delete(api_call *c, const char *store, const char *key);
void api_state_bulk_get(api_call *c, const char *store);
void api_state_transaction(api_call *c, const char *store);
void api_state_query(api_call *c, const char *store);

/* api_pubsub.c: pubsub name at segment index pubsub_seg, topic after it */
void api_publish(api_call *c, size_t pubsub_seg);
void api_bulk_publish(api_call *c, size_t pubsub_seg);

/* api_secrets.c: GET /v1.0/secrets/{store}/{key} and .../bulk */
void api_secrets_get(api_call *c, const char *store, const char *key);
void api_secrets_bulk_get(api_call *c, const char *store);

/* api_bindings.c: POST|PUT /v1.0/bindings/{name} */
void api_bindings_invoke(api_call *c, const char *name);

/* api_metadata.c: metadata, health and shutdown */
void api_healthz(api_call *c);
void api_healthz_outbound(api_call *c);
void api_metadata_get(api_call *c);
void api_metadata_put(api_call *c, const char *key);
void api_shutdown(api_call *c);

/* api_invoke.c: the fallback for every unmatched route, and requests
 * arriving from other sidecars on the internal port */
void api_invoke_fallback(api_call *c);
void api_invoke_internal(api_call *c);
/* Set up invocation (own namespace, peer pools); free at shutdown. */
void api_invoke_init(void);
void api_invoke_free(void);

#endif
