/*
 * invoke-app.c - the app under test of bench/invoke-bench.sh.
 *
 * It answers every request, whatever the method and path, with 200 and
 * the body "pong".  It exists so that the invocation benchmark measures
 * the sidecars and not the app: one libevent loop with evhttp does a few
 * microseconds of work per request, which is well under what a proxy hop
 * costs.  Not built by make; the benchmark compiles it with
 *
 *     cc -O2 -o invoke-app invoke-app.c $(pkg-config --cflags --libs libevent)
 *
 * Usage: invoke-app PORT     (listens on 127.0.0.1:PORT; SIGTERM or
 *                             SIGINT stops it cleanly)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evbuffer_add(out, "pong", 4);
    evhttp_send_reply(req, HTTP_OK, "OK", out);
    evbuffer_free(out);
}

static void on_signal(evutil_socket_t sig, short events, void *arg)
{
    (void)sig;
    (void)events;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    char *end;
    errno = 0;
    long port = strtol(argv[1], &end, 10);
    if (errno || *end || port <= 0 || port > 65535) {
        fprintf(stderr, "invoke-app: bad port '%s'\n", argv[1]);
        return 2;
    }
    /* A peer that closes mid-reply must not kill the server. */
    signal(SIGPIPE, SIG_IGN);

    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    if (!http) {
        fprintf(stderr, "invoke-app: cannot create the HTTP server\n");
        return 1;
    }
    /* Answer every method the sidecar may forward, not only GET/POST. */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, on_request, NULL);
    if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) {
        fprintf(stderr, "invoke-app: cannot listen on 127.0.0.1:%ld\n", port);
        evhttp_free(http);
        event_base_free(base);
        return 1;
    }
    struct event *sig_term = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *sig_int = evsignal_new(base, SIGINT, on_signal, base);
    event_add(sig_term, NULL);
    event_add(sig_int, NULL);

    event_base_dispatch(base);

    event_free(sig_term);
    event_free(sig_int);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
