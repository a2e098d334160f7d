/*
 * api_logging.h - one log line per API call (--enable-api-logging, or the
 * Configuration's spec.logging.apiLogging), as Dapr writes them: level
 * info, scope dapr.runtime.http-info, msg "HTTP API Called", with the
 * method and path, the user agent, the status code and the duration.
 */
#ifndef DAPRD_API_LOGGING_H
#define DAPRD_API_LOGGING_H

#include "http_api.h"

typedef struct api_logging_opts {
    int enabled;
    int obfuscate_urls;     /* log "/v1.0/state/{storeName}/{key}", not the keys */
    int omit_health_checks; /* no line for /v1.0/healthz and /v1.0/healthz/outbound */
} api_logging_opts;

void api_logging_configure(const api_logging_opts *opts);
/* Called by the HTTP server for every answered call (loop thread). */
void api_logging_call(api_call *c, int status);

#endif
