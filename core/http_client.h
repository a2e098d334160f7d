/*
 * http_client.h - keep-alive HTTP/1.1 client pools on the event loop.
 *
 * One pool per upstream (the app channel, each remote sidecar's internal
 * port).  A pool holds up to max_conns evhttp connections; a request takes
 * an idle connection or opens one, and waits in a bounded queue when all
 * are busy.  Everything runs on the loop thread.
 */
#ifndef DAPRD_HTTP_CLIENT_H
#define DAPRD_HTTP_CLIENT_H

#include <event2/buffer.h>
#include <event2/http.h>
#include <stddef.h>
#include <stdint.h>

typedef struct http_pool http_pool;

/* A response as the callback sees it.  status 0 means no response: error
 * says why (connection refused, timeout, ...).  headers and body belong to
 * the client: valid during the callback only. */
typedef struct http_response {
    int status;
    const char *error;
    struct evkeyvalq *headers;
    struct evbuffer *body;
} http_response;

typedef void (*http_response_cb)(void *arg, const http_response *resp);

/* tls: 1 for https with certificate verification off (Dapr's default for
 * --app-protocol https).  max_queued: requests that may wait for a free
 * connection; beyond that http_pool_send fails at once. */
http_pool *http_pool_new(const char *host, int port, int tls, size_t max_conns, size_t max_queued,
                         int64_t timeout_ms, size_t max_response_body);
void http_pool_free(http_pool *p);
const char *http_pool_host(const http_pool *p);
int http_pool_port(const http_pool *p);

/*
 * Send a request.  headers (may be NULL) are copied; body (may be NULL) is
 * drained into the request.  The callback runs exactly once on the loop
 * thread, possibly before http_pool_send returns for immediate failures.
 * Returns 0, or -1 when the wait queue is full (no callback then).
 */
int http_pool_send(http_pool *p, enum evhttp_cmd_type method, const char *uri,
                   const struct evkeyvalq *headers, struct evbuffer *body,
                   http_response_cb cb, void *arg);

/* Tag the next http_pool_send() (loop thread) so that http_pool_cancel()
 * can find it; the tag is usually the caller's callback argument. */
void http_client_tag_next(const void *tag);
/* Cancel the request with that tag, waiting or in flight: its callback
 * runs now, inside this call, with status 0 and error "request
 * cancelled".  Returns 1, or 0 when no such request is pending. */
int http_pool_cancel(http_pool *p, const void *tag);

/* Requests sent and not yet answered, and requests waiting. */
size_t http_pool_active(const http_pool *p);
size_t http_pool_waiting(const http_pool *p);

/* Is this header hop-by-hop (never forwarded by a proxy)? */
int http_header_is_hop_by_hop(const char *name);

#endif
