/*
 * pubsub-app.c - the subscriber app of bench/pubsub-bench.sh.
 *
 * It subscribes, through its sidecar, to one topic and counts what it is
 * delivered: distinct message ids, duplicates, and the publish-to-delivery
 * latency of each first delivery (receive time minus the pb_sent_ns the
 * publisher put in the data; see pubsub-stats.h).  It answers every
 * delivery at once with 200 {"status":"SUCCESS"}, so that the sidecars and
 * the broker, not the app, are what is measured: one libevent loop spends
 * a few microseconds per event.
 *
 *   GET  /dapr/subscribe   [{"pubsubname":PUBSUB,"topic":TOPIC,"route":"/events"}]
 *   POST /events           a delivery: counted, answered SUCCESS
 *   GET  /stats            the counters as one line of name=value pairs
 *   POST /reset?base=N     zero the counters; ids below N are stale from now
 *   anything else          404
 *
 * Not built by make; the benchmark compiles it with
 *
 *     cc -O2 -o pubsub-app pubsub-app.c $(pkg-config --cflags --libs libevent)
 *
 * Usage: pubsub-app PORT PUBSUB TOPIC   (listens on 127.0.0.1:PORT;
 *                                        SIGTERM or SIGINT stops it)
 */
/* clock_gettime and CLOCK_MONOTONIC under -std=c11. */
#define _POSIX_C_SOURCE 200809L
#include "pubsub-stats.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static pb_stats stats;
static char subscribe_json[512];

static void reply(struct evhttp_request *req, int code, const char *reason,
                  const char *type, const char *body)
{
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evbuffer_add(out, body, strlen(body));
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void on_subscribe(struct evhttp_request *req, void *arg)
{
    (void)arg;
    reply(req, HTTP_OK, "OK", "application/json", subscribe_json);
}

static void on_event(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_send_error(req, HTTP_BADMETHOD, NULL);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const unsigned char *body = evbuffer_pullup(in, -1);
    /* A message that is not ours is still acknowledged, and counted as
     * bad: the run's numbers show it, and no redelivery loop starts. */
    pb_record(&stats, body ? (const char *)body : "", body ? len : 0, pb_now_ns());
    reply(req, HTTP_OK, "OK", "application/json", "{\"status\":\"SUCCESS\"}");
}

static void on_stats(struct evhttp_request *req, void *arg)
{
    (void)arg;
    char line[512];
    pb_format(&stats, line, sizeof line);
    reply(req, HTTP_OK, "OK", "text/plain", line);
}

static void on_reset(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_send_error(req, HTTP_BADMETHOD, NULL);
        return;
    }
    uint64_t base = 0;
    struct evkeyvalq q;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query && evhttp_parse_query_str(query, &q) == 0) {
        const char *b = evhttp_find_header(&q, "base");
        if (b)
            base = strtoull(b, NULL, 10);
        evhttp_clear_headers(&q);
    }
    pb_reset(&stats, base);
    reply(req, HTTP_OK, "OK", "text/plain", "ok");
}

static void on_other(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_error(req, HTTP_NOTFOUND, NULL);
}

static void on_signal(evutil_socket_t sig, short events, void *arg)
{
    (void)sig;
    (void)events;
    event_base_loopbreak(arg);
}

/* Pub/sub and topic names go into JSON unescaped: allow only what Dapr's
 * names and the benchmark's topics use. */
static int plain_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT PUBSUB TOPIC\n", argv[0]);
        return 2;
    }
    char *end;
    errno = 0;
    long port = strtol(argv[1], &end, 10);
    if (errno || *end || port <= 0 || port > 65535) {
        fprintf(stderr, "pubsub-app: bad port '%s'\n", argv[1]);
        return 2;
    }
    if (!plain_name(argv[2]) || !plain_name(argv[3]) || strlen(argv[2]) > 128 ||
        strlen(argv[3]) > 128) {
        fprintf(stderr, "pubsub-app: pubsub and topic names: letters, digits, '-', '_', '.'\n");
        return 2;
    }
    snprintf(subscribe_json, sizeof subscribe_json,
             "[{\"pubsubname\":\"%s\",\"topic\":\"%s\",\"route\":\"/events\"}]", argv[2],
             argv[3]);
    pb_reset(&stats, 0);
    /* A peer that closes mid-reply must not kill the server. */
    signal(SIGPIPE, SIG_IGN);

    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    if (!http) {
        fprintf(stderr, "pubsub-app: cannot create the HTTP server\n");
        return 1;
    }
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_cb(http, "/dapr/subscribe", on_subscribe, NULL);
    evhttp_set_cb(http, "/events", on_event, NULL);
    evhttp_set_cb(http, "/stats", on_stats, NULL);
    evhttp_set_cb(http, "/reset", on_reset, NULL);
    evhttp_set_gencb(http, on_other, NULL);
    if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) {
        fprintf(stderr, "pubsub-app: cannot listen on 127.0.0.1:%ld\n", port);
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
    pb_free(&stats);
    return 0;
}
