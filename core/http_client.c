/*
 * http_client.c - keep-alive client pools over libevent's evhttp.
 *
 * evhttp runs one request at a time per connection, so a pool is an array
 * of connections with a busy flag plus a bounded FIFO of requests waiting
 * for one.  A connection that failed is freed rather than reused: evhttp's
 * reconnect is unreliable over TLS, and a fresh connection is cheap.  A
 * request that failed at the connection level (refused, reset, closed
 * before any answer) is retried once on a new connection, as a reused
 * keep-alive connection may have been closed by the server meanwhile.
 */
#include "config.h"
#include "http_client.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SCOPE "dapr.runtime.http-client"

struct inflight;

struct pooled_conn {
    struct evhttp_connection *evcon;
    int busy;
    struct inflight *current; /* the request on it, so freeing can answer it */
};

struct pending {
    enum evhttp_cmd_type method;
    char *uri;
    struct evkeyvalq headers;
    struct evbuffer *body;
    http_response_cb cb;
    void *arg;
    int attempts;
    const void *tag;         /* http_client_tag_next(), for http_pool_cancel() */
    struct pending *next;
};

/* One request on one connection. */
struct inflight {
    http_pool *pool;
    size_t conn_index;
    struct pending *p;
    const char *error;
};

struct http_pool {
    char *host;
    int port;
    SSL_CTX *ssl_ctx;        /* NULL for plain HTTP */
    struct pooled_conn *conns;
    size_t max_conns;
    size_t max_queued;
    struct pending *wait_head, *wait_tail;
    size_t n_waiting;
    size_t active;
    int64_t timeout_ms;
    size_t max_body;
};

int http_header_is_hop_by_hop(const char *name)
{
    static const char *hop[] = {"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding",
                                "Upgrade", "HTTP2-Settings", "TE", "Trailer", "Proxy-Authorization",
                                "Proxy-Authenticate"};
    for (size_t i = 0; i < sizeof hop / sizeof *hop; i++)
        if (strcasecmp(name, hop[i]) == 0)
            return 1;
    return 0;
}

http_pool *http_pool_new(const char *host, int port, int tls, size_t max_conns, size_t max_queued,
                         int64_t timeout_ms, size_t max_response_body)
{
    http_pool *p = xcalloc(1, sizeof *p);
    p->host = xstrdup(host);
    p->port = port;
    p->max_conns = max_conns ? max_conns : 1;
    p->conns = xcalloc(p->max_conns, sizeof *p->conns);
    p->max_queued = max_queued;
    p->timeout_ms = timeout_ms;
    p->max_body = max_response_body;
    if (tls) {
        p->ssl_ctx = SSL_CTX_new(TLS_client_method());
        /* Dapr does not verify the app's certificate by default. */
        SSL_CTX_set_verify(p->ssl_ctx, SSL_VERIFY_NONE, NULL);
    }
    return p;
}

const char *http_pool_host(const http_pool *p) { return p->host; }
int http_pool_port(const http_pool *p) { return p->port; }
size_t http_pool_active(const http_pool *p) { return p->active; }
size_t http_pool_waiting(const http_pool *p) { return p->n_waiting; }

static void pending_free(struct pending *p)
{
    free(p->uri);
    evhttp_clear_headers(&p->headers);
    evbuffer_free(p->body);
    free(p);
}

static struct evhttp_connection *open_conn(http_pool *p)
{
    struct evhttp_connection *evcon;
    if (p->ssl_ctx) {
        SSL *ssl = SSL_new(p->ssl_ctx);
        SSL_set_tlsext_host_name(ssl, p->host);
        struct bufferevent *bev = bufferevent_openssl_socket_new(
            loop_base(), -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        evcon = evhttp_connection_base_bufferevent_new(loop_base(), NULL, bev, p->host,
                                                       (ev_uint16_t)p->port);
    } else {
        evcon = evhttp_connection_base_new(loop_base(), NULL, p->host, (ev_uint16_t)p->port);
    }
    if (evcon) {
        if (p->timeout_ms > 0) {
            struct timeval tv = {.tv_sec = (time_t)(p->timeout_ms / 1000),
                                 .tv_usec = (suseconds_t)((p->timeout_ms % 1000) * 1000)};
            evhttp_connection_set_timeout_tv(evcon, &tv);
        }
        if (p->max_body)
            evhttp_connection_set_max_body_size(evcon, (ev_ssize_t)p->max_body);
    }
    return evcon;
}

static void start(http_pool *pool, size_t idx, struct pending *p);
static void pump(http_pool *pool);

static void on_error(enum evhttp_request_error err, void *arg)
{
    struct inflight *f = arg;
    switch (err) {
    case EVREQ_HTTP_TIMEOUT: f->error = "timed out"; break;
    case EVREQ_HTTP_EOF: f->error = "connection closed or refused"; break;
    case EVREQ_HTTP_INVALID_HEADER: f->error = "invalid response headers"; break;
    case EVREQ_HTTP_BUFFER_ERROR: f->error = "connection error"; break;
    case EVREQ_HTTP_REQUEST_CANCEL: f->error = "request cancelled"; break;
    case EVREQ_HTTP_DATA_TOO_LONG: f->error = "response body too large"; break;
    default: f->error = "request failed"; break;
    }
}

/* Drop a failed connection so the next request opens a fresh one.  Freed
 * from a deferred call: evhttp is still using it in this callback. */
static void free_conn_later(void *arg)
{
    evhttp_connection_free(arg);
}

static void on_done(struct evhttp_request *req, void *arg)
{
    struct inflight *f = arg;
    http_pool *pool = f->pool;
    struct pending *p = f->p;
    struct pooled_conn *conn = &pool->conns[f->conn_index];
    int status = req ? evhttp_request_get_response_code(req) : 0;
    pool->active--;
    conn->current = NULL;

    if (status == 0) {
        /* No answer: retire the connection. */
        loop_post(free_conn_later, conn->evcon);
        conn->evcon = NULL;
        conn->busy = 0;
        const char *why = f->error ? f->error : "cannot connect, or the connection closed without a response";
        int retryable = !f->error || strcmp(f->error, "connection closed or refused") == 0;
        size_t idx = f->conn_index;
        free(f);
        if (retryable && p->attempts < 2) {
            /* Connection-level failure: once more on a new connection. */
            start(pool, idx, p);
            return;
        }
        http_response r = {.status = 0, .error = why};
        p->cb(p->arg, &r);
        pending_free(p);
        pump(pool);
        return;
    }
    http_response r = {.status = status,
                       .headers = evhttp_request_get_input_headers(req),
                       .body = evhttp_request_get_input_buffer(req)};
    conn->busy = 0;
    free(f);
    p->cb(p->arg, &r);
    pending_free(p);
    pump(pool);
}

/* Send p on connection idx (opening it if needed). */
static void start(http_pool *pool, size_t idx, struct pending *p)
{
    struct pooled_conn *conn = &pool->conns[idx];
    if (!conn->evcon)
        conn->evcon = open_conn(pool);
    p->attempts++;
    struct inflight *f = xcalloc(1, sizeof *f);
    f->pool = pool;
    f->conn_index = idx;
    f->p = p;
    struct evhttp_request *req = conn->evcon ? evhttp_request_new(on_done, f) : NULL;
    if (!req) {
        free(f);
        http_response r = {.status = 0, .error = "cannot open a connection"};
        p->cb(p->arg, &r);
        pending_free(p);
        return;
    }
    evhttp_request_set_error_cb(req, on_error);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    for (struct evkeyval *h = p->headers.tqh_first; h; h = h->next.tqe_next)
        evhttp_add_header(out, h->key, h->value);
    if (!evhttp_find_header(out, "Host")) {
        char host[300];
        snprintf(host, sizeof host, "%s:%d", pool->host, pool->port);
        evhttp_add_header(out, "Host", host);
    }
    /* libevent adds Content-Length by itself only for POST and PUT; any
     * other verb with a body (DELETE, PATCH, ...) needs it set here or the
     * peer reads no body and the keep-alive connection desynchronises.
     * The caller's own value is replaced by the real length. */
    size_t len = evbuffer_get_length(p->body);
    evhttp_remove_header(out, "Content-Length");
    if (len) {
        char clen[32];
        snprintf(clen, sizeof clen, "%zu", len);
        evhttp_add_header(out, "Content-Length", clen);
        evbuffer_add(evhttp_request_get_output_buffer(req), evbuffer_pullup(p->body, -1), len);
    }
    conn->busy = 1;
    conn->current = f;
    pool->active++;
    if (evhttp_make_request(conn->evcon, req, p->method, p->uri) != 0) {
        /* evhttp freed req and called nothing. */
        pool->active--;
        conn->busy = 0;
        conn->current = NULL;
        free(f);
        http_response r = {.status = 0, .error = "cannot send the request"};
        p->cb(p->arg, &r);
        pending_free(p);
    }
}

static int free_slot(http_pool *pool, size_t *idx)
{
    /* Prefer an open idle connection, then an empty slot. */
    for (size_t i = 0; i < pool->max_conns; i++)
        if (pool->conns[i].evcon && !pool->conns[i].busy) { *idx = i; return 1; }
    for (size_t i = 0; i < pool->max_conns; i++)
        if (!pool->conns[i].evcon && !pool->conns[i].busy) { *idx = i; return 1; }
    return 0;
}

static void pump(http_pool *pool)
{
    size_t idx;
    while (pool->wait_head && free_slot(pool, &idx)) {
        struct pending *p = pool->wait_head;
        pool->wait_head = p->next;
        if (!pool->wait_head) pool->wait_tail = NULL;
        pool->n_waiting--;
        p->next = NULL;
        start(pool, idx, p);
    }
}

static const void *next_tag; /* loop thread only */

void http_client_tag_next(const void *tag)
{
    next_tag = tag;
}

int http_pool_send(http_pool *pool, enum evhttp_cmd_type method, const char *uri,
                   const struct evkeyvalq *headers, struct evbuffer *body, http_response_cb cb, void *arg)
{
    size_t idx;
    int have_slot = free_slot(pool, &idx);
    if (!have_slot && pool->n_waiting >= pool->max_queued)
        return -1;
    struct pending *p = xcalloc(1, sizeof *p);
    p->method = method;
    p->uri = xstrdup(uri);
    TAILQ_INIT(&p->headers);
    if (headers)
        for (struct evkeyval *h = headers->tqh_first; h; h = h->next.tqe_next)
            evhttp_add_header(&p->headers, h->key, h->value);
    p->body = evbuffer_new();
    if (body)
        evbuffer_add_buffer(p->body, body);
    p->cb = cb;
    p->arg = arg;
    p->tag = next_tag;
    next_tag = NULL;
    if (have_slot) {
        start(pool, idx, p);
    } else {
        if (pool->wait_tail) pool->wait_tail->next = p; else pool->wait_head = p;
        pool->wait_tail = p;
        pool->n_waiting++;
    }
    return 0;
}

void http_pool_free(http_pool *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->max_conns; i++) {
        if (!pool->conns[i].evcon)
            continue;
        /* evhttp frees a connection's request without calling back: answer
         * it here, or its caller (a pub/sub delivery waiting for the app, a
         * probe) would never complete and leak. */
        struct inflight *f = pool->conns[i].current;
        pool->conns[i].current = NULL;
        evhttp_connection_free(pool->conns[i].evcon);
        pool->conns[i].evcon = NULL;
        if (f) {
            pool->active--;
            http_response r = {.status = 0, .error = "shutting down"};
            f->p->cb(f->p->arg, &r);
            pending_free(f->p);
            free(f);
        }
    }
    while (pool->wait_head) {
        struct pending *p = pool->wait_head;
        pool->wait_head = p->next;
        http_response r = {.status = 0, .error = "shutting down"};
        p->cb(p->arg, &r);
        pending_free(p);
    }
    if (pool->ssl_ctx)
        SSL_CTX_free(pool->ssl_ctx);
    free(pool->conns);
    free(pool->host);
    free(pool);
}

/* Resiliency timeouts: drop the request tagged `tag`, waiting or in flight
 * (its connection is closed: evhttp has no other way to abandon a request),
 * and answer its callback now with status 0. */
int http_pool_cancel(http_pool *pool, const void *tag)
{
    if (!pool || !tag)
        return 0;
    struct pending *prev = NULL;
    for (struct pending *p = pool->wait_head; p; prev = p, p = p->next) {
        if (p->tag != tag)
            continue;
        if (prev) prev->next = p->next; else pool->wait_head = p->next;
        if (pool->wait_tail == p) pool->wait_tail = prev;
        pool->n_waiting--;
        http_response r = {.status = 0, .error = "request cancelled"};
        p->cb(p->arg, &r);
        pending_free(p);
        return 1;
    }
    for (size_t i = 0; i < pool->max_conns; i++) {
        struct inflight *f = pool->conns[i].current;
        if (!f || f->p->tag != tag)
            continue;
        /* evhttp frees the connection's request without calling back. */
        pool->conns[i].current = NULL;
        evhttp_connection_free(pool->conns[i].evcon);
        pool->conns[i].evcon = NULL;
        pool->conns[i].busy = 0;
        pool->active--;
        struct pending *p = f->p;
        free(f);
        http_response r = {.status = 0, .error = "request cancelled"};
        p->cb(p->arg, &r);
        pending_free(p);
        pump(pool);
        return 1;
    }
    return 0;
}
