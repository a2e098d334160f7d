/*
 * app_channel.h - the sidecar's HTTP channel to its own app (--app-port).
 *
 * Keep-alive pool bounded by --app-max-concurrency, a bounded wait queue
 * beyond it, start-up wait for the app port, app health probes, and the
 * APP_API_TOKEN header.  Loop thread only.
 */
#ifndef DAPRD_APP_CHANNEL_H
#define DAPRD_APP_CHANNEL_H

#include <jansson.h>
#include <stdint.h>
#include "http_client.h"

typedef struct app_channel_opts {
    const char *address;         /* --app-channel-address (127.0.0.1) */
    int port;                    /* --app-port; 0 = no app channel */
    const char *protocol;        /* --app-protocol: http or https */
    int max_concurrency;         /* --app-max-concurrency; <= 0 = unlimited */
    int health_check;            /* --enable-app-health-check */
    const char *health_path;     /* --app-health-check-path (/healthz) */
    int64_t health_interval_ms;  /* --app-health-probe-interval (5 s) */
    int64_t health_timeout_ms;   /* --app-health-probe-timeout (500 ms) */
    int health_threshold;        /* --app-health-threshold (3) */
    const char *app_token;       /* APP_API_TOKEN, or NULL */
} app_channel_opts;

/* Validate and remember the options (no I/O).  Returns 0 or -1 with a
 * message on stderr. */
int app_channel_init(const app_channel_opts *opts);
int app_channel_enabled(void);
/* Poll the app port every 100 ms until it accepts a TCP connection, then
 * call ready() once (on the loop).  Without an app channel, calls it now. */
void app_channel_wait_for_app(void (*ready)(void));
int app_channel_healthy(void);
/* --app-max-concurrency (<= 0: unlimited). */
int app_channel_max_concurrency(void);

/* Send a request to the app; the APP_API_TOKEN header is added here.
 * Returns 0, or -1 when --app-max-concurrency is reached and the wait
 * queue is full (the caller answers 429). */
int app_channel_send(enum evhttp_cmd_type method, const char *uri, struct evkeyvalq *headers,
                     struct evbuffer *body, http_response_cb cb, void *arg);

/* Cancel the request sent after http_client_tag_next(tag) (resiliency
 * timeouts): its callback runs now with status 0.  1 if found. */
int app_channel_cancel(const void *tag);

/* appConnectionProperties for the metadata API (new reference). */
json_t *app_channel_metadata(void);
void app_channel_free(void);

#endif
