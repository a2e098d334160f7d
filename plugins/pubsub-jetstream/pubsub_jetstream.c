/*
 * pubsub_jetstream.c - "pubsub.jetstream": Dapr pub/sub on NATS JetStream,
 * through nats.c (Debian's libnats, 3.4).
 *
 * Metadata names are Dapr's (components-contrib pubsub/jetstream); see
 * README.md next to this file for the table, the defaults and the gaps.
 *
 * Streams.  As with Dapr, the plugin never creates streams: a stream that
 * captures the topic's subject must exist (`nats stream add`).  Publishing
 * to a subject no stream captures fails ("no responders"), and so does
 * subscribing.  streamName names the stream to create consumers on;
 * without it the stream is looked up by subject.
 *
 * Publish.  js_PublishMsg: the call returns only after JetStream stored
 * the message (publish ack), so a 204 to the app means "stored".  The
 * CloudEvent id becomes the Nats-Msg-Id header (prefixed with the topic,
 * see dedup_id), so a publish retried after a lost ack is deduplicated by
 * the stream.  The content
 * type travels in a Content-Type header (Dapr sends none; messages
 * without it arrive without a content type).  While the connection is
 * down, publish fails at once with DAPR_ERR_UNAVAILABLE instead of
 * waiting for the request timeout; a publish caught by a disconnect fails
 * as soon as nats.c notices (FailRequestsOnDisconnect).
 *
 * Subscribe: one durable *pull* consumer per (consumer base, subject):
 *     <durableName | queueGroupName | app id>_<subject>
 * (characters JetStream refuses in names become "_", plus a hash of the
 * subject when anything was changed).  Pull rather than push (Dapr uses
 * push) because the host gives a hard bound on unacked messages
 * (max_in_flight): a pull consumer is only asked for as many messages as
 * there is room for, so nothing ever waits in a local queue while its
 * ackWait runs out, and several sidecars of one app sharing the durable
 * are competing consumers (Dapr's consumer-group semantics) without a
 * deliver group.  The consumer is created with js_AddConsumer and then
 * bound, so unsubscribing never deletes it (nats.c deletes consumers it
 * created itself): unacked messages stay with JetStream and come back
 * after ackWait.  Two subscriptions to one subject inside one instance
 * (daprd never does this; the conformance kit does) each get their own
 * consumer ("..._2"), so each receives every message.
 *
 * Acks.  A message is acked to JetStream ("+ACK") only when the host says
 * SUCCESS or DROP; RETRY sends "-NAK", with a delay taken from backOff
 * (by delivery count) or, as Dapr does, ackWait when ackWait is set;
 * otherwise JetStream redelivers at once.  A message the host never acks
 * is redelivered by JetStream after ackWait (at-least-once).  The host
 * may ack from any thread, also its event loop, so the ack function only
 * queues: one acker thread per instance publishes the acks.  Acks sent
 * while the connection is down wait in nats.c's reconnect buffer and go
 * out after the reconnect; an ack that is lost only causes a redelivery.
 *
 * Threads.  The component is not NONBLOCKING: the host runs publish,
 * subscribe and unsubscribe on its worker pool (they wait for JetStream
 * API replies).  Per subscription one fetch thread: it waits for room
 * under max_in_flight, asks JetStream for up to that many messages
 * (no_wait), and when there are none long-polls for one; then hands each
 * message to the host's handler.  nats.c runs its own reader, flusher and
 * callback threads.  Unsubscribe wakes a long poll by unsubscribing the
 * inbox and joins the fetch thread, so no handler call starts after it.
 *
 * Reconnects are nats.c's: forever, 250 ms apart (with jitter).  Pings
 * every 5 s detect a silent peer.  A consumer that disappeared (server
 * restarted without its state, consumer deleted by an operator) is created
 * again by the fetch thread with a backoff.
 *
 * Secrets (token, jwt, seedKey, tls_client_key) are never logged; URLs
 * are logged without their user:password part.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup, strndup, pthread_condattr_setclock */
#endif

#include <dapr/plugin.h>

#include <nats/nats.h>
#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_NAME "dapr.io - pubsub.jetstream"
#define DEFAULT_MAX_IN_FLIGHT 64
#define FETCH_MAX 256            /* messages asked for in one pull request */
#define NOWAIT_EXPIRES_MS 1000   /* bound on a no_wait pull request */
#define LONG_POLL_MS 2000        /* a long poll; also bounds the stale-request window */
#define NOT_CONNECTED_WAIT_MS 100
#define ERR_BACKOFF_FIRST_MS 250
#define ERR_BACKOFF_MAX_MS 2000
#define REQUEST_WAIT_MS 5000     /* JetStream API requests and publish acks */
#define CLOSE_WAIT_MS 5000
#define NAME_PART_MAX 64         /* per part of a consumer name */
#define MAX_BACKOFF 32
#define ERRLEN 512

/* ------------------------------------------------------------------ */
/* Library lifetime                                                     */
/* ------------------------------------------------------------------ */

/* nats.c keeps global threads (timers, callbacks, GC).  daprd dlclose()s
 * plugins at exit, which would unmap code those threads run: the last
 * instance to close tears the library down and waits for its threads. */
static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static int lib_users;

static void lib_ref(void)
{
    pthread_mutex_lock(&lib_mu);
    lib_users++;
    pthread_mutex_unlock(&lib_mu);
}

static void lib_unref(void)
{
    pthread_mutex_lock(&lib_mu);
    if (--lib_users == 0)
        nats_CloseAndWait(CLOSE_WAIT_MS);
    pthread_mutex_unlock(&lib_mu);
}

/* ------------------------------------------------------------------ */
/* Types                                                                */
/* ------------------------------------------------------------------ */

typedef enum { CONC_HOST = 0, CONC_SINGLE, CONC_PARALLEL } concurrency_mode;

typedef struct config {
    char *url;              /* as given (may hold credentials) */
    char *url_safe;         /* for logs: without user:password */
    char *name;
    char *stream;           /* NULL: look up by subject */
    char *consumer_base;    /* sanitized durableName | queueGroupName | app id */
    char *domain, *api_prefix;
    jsDeliverPolicy deliver_policy;
    uint64_t start_seq;
    int64_t start_time_ns;
    int64_t ack_wait_ns;    /* 0: server default (30 s) */
    int64_t max_deliver;
    int64_t backoff_ns[MAX_BACKOFF];
    int n_backoff;
    int64_t max_ack_pending;
    int64_t replicas;
    int memory_storage;
    uint64_t rate_bps;      /* 0: unlimited */
    concurrency_mode concurrency;
} config;

struct inst;

/* One subscription: a bound pull consumer and its fetch thread. */
typedef struct jsub {
    struct inst *in;
    uint64_t id;
    char *topic;
    char *stream;
    char *consumer;
    unsigned slot;            /* 1 = first subscription to topic here */
    dapr_pubsub_handler handler;
    void *handler_ctx;
    uint32_t max_in_flight;
    uint32_t in_flight;       /* handed to the handler, not acked yet */
    int active;               /* 0 once unsubscribing */
    int finished;             /* the fetch thread is gone: s may be freed */
    int detached;             /* unsubscribed from its own handler */
    natsSubscription *nsub;   /* under in->mu; replaced only while active */
    pthread_t thread;
    pthread_cond_t cv;        /* room freed, or unsubscribing */
    int64_t rate_next_ns;     /* rateLimit: earliest next delivery */
    struct jsub *next;
} jsub;

/* A delivered message awaiting the host's verdict; then an ack job. */
typedef struct delivery {
    jsub *s;                  /* NULL once acked */
    uint64_t n_delivered;     /* JetStream's delivery count */
    dapr_pubsub_ack verdict;
    struct delivery *next;
    char reply[];             /* the $JS.ACK... subject */
} delivery;

typedef struct inst {
    dapr_host *host;
    const dapr_host_api *api;
    config cfg;
    char *jwt, *seed;         /* kept for the credential callbacks */

    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    atomic_int closing;
    int closed_cb_seen;       /* under mu; the connection's last callback ran */
    pthread_cond_t closed_cv;

    pthread_mutex_t mu;
    jsub *subs;
    uint64_t next_id;

    /* The acker. */
    pthread_t acker;
    int acker_started;
    pthread_cond_t ack_cv;
    delivery *ack_head, *ack_tail;
    int ack_stop;
    int ack_failing;          /* log a failing ack once per streak */
} inst;

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static void complete(dapr_result_cb cb, void *ctx, dapr_status st, const char *msg)
{
    dapr_result res = {.status = st, .message = st == DAPR_OK ? NULL : msg};
    cb(ctx, &res);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wait on cv (a CLOCK_MONOTONIC condition) for at most ms. */
static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = ts.tv_nsec + (ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_cond_timedwait(cv, mu, &ts);
}

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* nats.c's last error on this thread, without its "(file.c:123): " prefix. */
static const char *nats_err_text(natsStatus s)
{
    const char *e = nats_GetLastError(NULL);
    if (!e || !*e)
        return natsStatus_GetText(s);
    if (e[0] == '(') {
        const char *p = strstr(e, "): ");
        if (p)
            e = p + 3;
    }
    return e;
}

static const char *meta(inst *in, const char *name)
{
    const char *v = in->api->metadata_get(in->host, name);
    return v && *v ? v : NULL;
}

/* Hide the credentials of each URL of a comma-separated list: in
 * "nats" URLs, "user:pass@host:4222" becomes "***@host:4222". */
static char *redact_urls(const char *urls)
{
    size_t n = strlen(urls);
    char *out = malloc(n * 2 + 16);
    if (!out)
        return NULL;
    char *o = out;
    const char *p = urls;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *hostpart = p;
        const char *scheme = strstr(p, "://");
        if (scheme && scheme < end)
            hostpart = scheme + 3;
        const char *at = NULL;
        for (const char *q = hostpart; q < end && *q != '/'; q++)
            if (*q == '@')
                at = q;
        memcpy(o, p, (size_t)(hostpart - p));
        o += hostpart - p;
        if (at) {
            memcpy(o, "***", 3);
            o += 3;
            hostpart = at;
        }
        memcpy(o, hostpart, (size_t)(end - hostpart));
        o += end - hostpart;
        if (*end == ',')
            *o++ = *end++;
        p = end;
    }
    *o = '\0';
    return out;
}

/* Why a TCP connection to the first server of urls fails, for the init
 * error (nats.c only says "No server available for connection"). */
static void probe_cause(const char *urls, char *buf, size_t len)
{
    buf[0] = '\0';
    char first[512];
    size_t n = strcspn(urls, ",");
    if (n >= sizeof first)
        return;
    memcpy(first, urls, n);
    first[n] = '\0';
    char *h = strstr(first, "://");
    h = h ? h + 3 : first;
    char *at = strrchr(h, '@');
    if (at)
        h = at + 1;
    h[strcspn(h, "/")] = '\0';
    char *port = "4222";
    if (*h == '[') {
        char *rb = strchr(h, ']');
        if (!rb)
            return;
        *rb = '\0';
        if (rb[1] == ':')
            port = rb + 2;
        h++;
    } else {
        char *colon = strrchr(h, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(h, port, &hints, &res);
    if (rc != 0) {
        snprintf(buf, len, "cannot resolve %.200s: %s", h, gai_strerror(rc));
        return;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return;
    }
    int err = 0;
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 2000) == 1) {
                socklen_t el = sizeof err;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
            } else {
                err = ETIMEDOUT;
            }
        }
    }
    close(fd);
    freeaddrinfo(res);
    if (err)
        snprintf(buf, len, "%.200s:%.20s: %s", h, port, strerror(err));
    else
        snprintf(buf, len, "%.200s:%.20s accepts TCP connections: is it a NATS server (and TLS/auth right)?",
                 h, port);
}

/* ---- metadata parsing ------------------------------------------------ */

static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        *out = 1;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") ||
             !strcasecmp(v, "off"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int parse_i64(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    while (isspace((unsigned char)*end))
        end++;
    if (errno || end == v || *end)
        return -1;
    *out = n;
    return 0;
}

/* A Go duration ("1m30s", "250ms", "1.5h") or bare seconds ("10"). */
static int parse_duration_ns(const char *v, int64_t *out)
{
    while (isspace((unsigned char)*v))
        v++;
    int64_t i;
    if (parse_i64(v, &i) == 0) {
        if (i < 0 || i > INT64_MAX / 1000000000)
            return -1;
        *out = i * 1000000000;
        return 0;
    }
    static const struct { const char *unit; double ns; } units[] = {
        {"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9},
    };
    double total = 0;
    const char *p = v;
    if (!*p)
        return -1;
    while (*p && !isspace((unsigned char)*p)) {
        char *end;
        errno = 0;
        double n = strtod(p, &end);
        if (errno || end == p || n < 0)
            return -1;
        p = end;
        size_t best = 0;
        double mult = 0;
        for (size_t k = 0; k < sizeof units / sizeof *units; k++) {
            size_t ul = strlen(units[k].unit);
            if (ul > best && strncmp(p, units[k].unit, ul) == 0) {
                best = ul;
                mult = units[k].ns;
            }
        }
        if (!best)
            return -1;
        p += best;
        total += n * mult;
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p || total > 9.2e18)
        return -1;
    *out = (int64_t)total;
    return 0;
}

/* backOff: "50ms, 1s, 10s" (brackets and quotes tolerated). */
static int parse_backoff(const char *v, config *c, char *err, size_t errlen)
{
    char *copy = strdup(v), *save = NULL;
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (char *p = copy; *p; p++)
        if (*p == '[' || *p == ']' || *p == '"' || *p == '\'')
            *p = ' ';
    c->n_backoff = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *e = tok + strlen(tok);
        while (e > tok && isspace((unsigned char)e[-1]))
            *--e = '\0';
        if (!*tok)
            continue;
        if (c->n_backoff == MAX_BACKOFF) {
            snprintf(err, errlen, "backOff: at most %d durations", MAX_BACKOFF);
            free(copy);
            return -1;
        }
        if (parse_duration_ns(tok, &c->backoff_ns[c->n_backoff]) != 0 ||
            c->backoff_ns[c->n_backoff] <= 0) {
            snprintf(err, errlen, "backOff: '%s' is not a positive duration (e.g. \"50ms, 1s, 10s\")", tok);
            free(copy);
            return -1;
        }
        c->n_backoff++;
    }
    free(copy);
    return 0;
}

/* Keep [A-Za-z0-9_-]; anything else (".", "*", ">", spaces, "/") is not
 * allowed in JetStream consumer names.  Returns 1 when something changed. */
static int sanitize_part(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in), i;
    int changed = 0;
    for (i = 0; i < n && i + 1 < outlen; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (isalnum(ch) || ch == '_' || ch == '-') {
            out[i] = (char)ch;
        } else {
            out[i] = '_';
            changed = 1;
        }
    }
    out[i] = '\0';
    return changed || i < n;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static char *consumer_name(const char *base, const char *topic, unsigned slot)
{
    char t[NAME_PART_MAX + 1];
    int changed = sanitize_part(topic, t, sizeof t);
    char hash[16] = "", suffix[16] = "";
    if (changed)
        snprintf(hash, sizeof hash, "_%08x", fnv1a(topic));
    if (slot > 1)
        snprintf(suffix, sizeof suffix, "_%u", slot);
    char *name = NULL;
    if (asprintf(&name, "%s_%s%s%s", base, t, hash, suffix) < 0)
        return NULL;
    return name;
}

static void config_free(config *c)
{
    free(c->url);
    free(c->url_safe);
    free(c->name);
    free(c->stream);
    free(c->consumer_base);
    free(c->domain);
    free(c->api_prefix);
    memset(c, 0, sizeof *c);
}

static int dup_opt(inst *in, const char *name, char **out, char *err, size_t errlen)
{
    const char *v = meta(in, name);
    *out = NULL;
    if (v && !(*out = strdup(v))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_config(inst *in, char *err, size_t errlen)
{
    config *c = &in->cfg;
    const char *v;
    int64_t i;

    v = meta(in, "natsURL");
    if (!v) {
        snprintf(err, errlen, "metadata field 'natsURL' is required (e.g. nats://localhost:4222)");
        return -1;
    }
    if (!(c->url = strdup(v)) || !(c->url_safe = redact_urls(v))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    v = meta(in, "name");
    if (!(c->name = strdup(v ? v : DEFAULT_NAME))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (dup_opt(in, "streamName", &c->stream, err, errlen) ||
        dup_opt(in, "domain", &c->domain, err, errlen) ||
        dup_opt(in, "apiPrefix", &c->api_prefix, err, errlen))
        return -1;

    /* Consumer base name: durableName, else the queue group (its members
     * share the durable and so compete for messages), else the app id. */
    const char *base = meta(in, "durableName");
    if (!base)
        base = meta(in, "queueGroupName");
    if (!base) {
        base = in->api->app_id ? in->api->app_id(in->host) : NULL;
        if (!base || !*base)
            base = "dapr";
    }
    char b[NAME_PART_MAX + 1];
    sanitize_part(base, b, sizeof b);
    if (!(c->consumer_base = strdup(b))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    /* Start position. */
    if ((v = meta(in, "startSequence"))) {
        if (parse_i64(v, &i) != 0 || i < 0) {
            snprintf(err, errlen, "startSequence must be a sequence number >= 0, not '%s'", v);
            return -1;
        }
        c->start_seq = (uint64_t)i;
    }
    if ((v = meta(in, "startTime"))) {
        if (parse_i64(v, &i) != 0 || i < 0 || i > INT64_MAX / 1000000000) {
            snprintf(err, errlen, "startTime must be a Unix time in seconds, not '%s'", v);
            return -1;
        }
        c->start_time_ns = i * 1000000000;
    }
    v = meta(in, "deliverPolicy");
    if (!v) {
        /* Dapr's default is "all"; a start sequence or time alone says
         * which policy is meant. */
        c->deliver_policy = c->start_seq ? js_DeliverByStartSequence
                            : c->start_time_ns ? js_DeliverByStartTime
                                               : js_DeliverAll;
    } else if (!strcasecmp(v, "all")) {
        c->deliver_policy = js_DeliverAll;
    } else if (!strcasecmp(v, "last")) {
        c->deliver_policy = js_DeliverLast;
    } else if (!strcasecmp(v, "new")) {
        c->deliver_policy = js_DeliverNew;
    } else if (!strcasecmp(v, "sequence")) {
        c->deliver_policy = js_DeliverByStartSequence;
    } else if (!strcasecmp(v, "time")) {
        c->deliver_policy = js_DeliverByStartTime;
    } else {
        snprintf(err, errlen, "deliverPolicy '%s' is not one of: all, last, new, sequence, time", v);
        return -1;
    }
    if (c->deliver_policy == js_DeliverByStartSequence && !c->start_seq) {
        snprintf(err, errlen, "deliverPolicy 'sequence' needs startSequence");
        return -1;
    }
    if (c->deliver_policy == js_DeliverByStartTime && !c->start_time_ns) {
        snprintf(err, errlen, "deliverPolicy 'time' needs startTime");
        return -1;
    }
    if ((c->start_seq && c->deliver_policy != js_DeliverByStartSequence) ||
        (c->start_time_ns && c->deliver_policy != js_DeliverByStartTime)) {
        snprintf(err, errlen,
                 "startSequence goes with deliverPolicy 'sequence' and startTime with 'time' (deliverPolicy is '%s')",
                 v ? v : "unset");
        return -1;
    }

    if ((v = meta(in, "ackWait"))) {
        if (parse_duration_ns(v, &c->ack_wait_ns) != 0 || c->ack_wait_ns <= 0) {
            snprintf(err, errlen, "ackWait must be a positive duration such as 30s, not '%s'", v);
            return -1;
        }
    }
    if ((v = meta(in, "maxDeliver"))) {
        if (parse_i64(v, &c->max_deliver) != 0 || c->max_deliver < -1 || c->max_deliver == 0) {
            snprintf(err, errlen, "maxDeliver must be a positive integer (or -1), not '%s'", v);
            return -1;
        }
    }
    if ((v = meta(in, "backOff")) && parse_backoff(v, c, err, errlen) != 0)
        return -1;
    if (c->n_backoff && c->max_deliver > 0 && c->max_deliver <= c->n_backoff) {
        snprintf(err, errlen, "maxDeliver (%" PRId64 ") must be larger than the number of backOff durations (%d)",
                 c->max_deliver, c->n_backoff);
        return -1;
    }
    if ((v = meta(in, "maxAckPending"))) {
        if (parse_i64(v, &c->max_ack_pending) != 0 || c->max_ack_pending < -1 || c->max_ack_pending == 0) {
            snprintf(err, errlen, "maxAckPending must be a positive integer (or -1), not '%s'", v);
            return -1;
        }
    }
    if ((v = meta(in, "replicas"))) {
        if (parse_i64(v, &c->replicas) != 0 || c->replicas < 0) {
            snprintf(err, errlen, "replicas must be an integer >= 0, not '%s'", v);
            return -1;
        }
    }
    if ((v = meta(in, "memoryStorage")) && parse_bool(v, &c->memory_storage) != 0) {
        snprintf(err, errlen, "memoryStorage must be true or false, not '%s'", v);
        return -1;
    }
    if ((v = meta(in, "rateLimit"))) {
        if (parse_i64(v, &i) != 0 || i < 0) {
            snprintf(err, errlen, "rateLimit must be bits per second (an integer >= 0), not '%s'", v);
            return -1;
        }
        c->rate_bps = (uint64_t)i;
    }
    /* "hearbeat" is the spelling in Dapr's documentation table; Dapr's
     * code reads "heartbeat".  Both are accepted (and both ignored, see
     * the README). */
    const char *hb = meta(in, "heartbeat");
    if (!hb)
        hb = meta(in, "hearbeat");
    int64_t hb_ns = 0;
    if (hb && parse_duration_ns(hb, &hb_ns) != 0) {
        snprintf(err, errlen, "heartbeat must be a duration such as 15s, not '%s'", hb);
        return -1;
    }
    int fc = 0;
    if ((v = meta(in, "flowControl")) && parse_bool(v, &fc) != 0) {
        snprintf(err, errlen, "flowControl must be true or false, not '%s'", v);
        return -1;
    }
    if (fc || hb_ns)
        in->api->log(in->host, DAPR_LOG_INFO,
                     "flowControl and heartbeat apply to push consumers; this component uses pull "
                     "consumers (flow control comes from max in-flight), so they are ignored");
    if ((v = meta(in, "ackPolicy")) && strcasecmp(v, "explicit") != 0) {
        if (strcasecmp(v, "all") && strcasecmp(v, "none")) {
            snprintf(err, errlen, "ackPolicy '%s' is not one of: explicit, all, none", v);
            return -1;
        }
        in->api->log(in->host, DAPR_LOG_WARN,
                     "ackPolicy '%s': pull consumers ack each message explicitly here (at-least-once); "
                     "using 'explicit'", v);
    }
    c->concurrency = CONC_HOST;
    if ((v = meta(in, "concurrency"))) {
        if (!strcasecmp(v, "single"))
            c->concurrency = CONC_SINGLE;
        else if (!strcasecmp(v, "parallel"))
            c->concurrency = CONC_PARALLEL;
        else {
            snprintf(err, errlen, "concurrency '%s' is not one of: single, parallel", v);
            return -1;
        }
    }
    if ((v = meta(in, "jwt")) && !(in->jwt = strdup(v))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if ((v = meta(in, "seedKey")) && !(in->seed = strdup(v))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!!in->jwt != !!in->seed) {
        snprintf(err, errlen, in->jwt ? "jwt is set but seedKey is missing" : "seedKey is set but jwt is missing");
        return -1;
    }
    if (!!meta(in, "tls_client_cert") != !!meta(in, "tls_client_key")) {
        snprintf(err, errlen, meta(in, "tls_client_cert") ? "tls_client_cert is set but tls_client_key is missing"
                                                          : "tls_client_key is set but tls_client_cert is missing");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Connection callbacks (nats.c's callback thread)                      */
/* ------------------------------------------------------------------ */

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    inst *in = closure;
    if (!atomic_load(&in->closing))
        in->api->log(in->host, DAPR_LOG_WARN, "lost the connection to NATS at %s; reconnecting",
                     in->cfg.url_safe);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    inst *in = closure;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    char *safe = redact_urls(url);
    in->api->log(in->host, DAPR_LOG_INFO, "reconnected to NATS at %s", safe ? safe : "?");
    free(safe);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    inst *in = closure;
    pthread_mutex_lock(&in->mu);
    in->closed_cb_seen = 1;
    pthread_cond_broadcast(&in->closed_cv);
    pthread_mutex_unlock(&in->mu);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    inst *in = closure;
    if (!atomic_load(&in->closing))
        in->api->log(in->host, DAPR_LOG_WARN, "NATS asynchronous error: %s", natsStatus_GetText(err));
}

static natsStatus jwt_cb(char **user_jwt, char **custom_err, void *closure)
{
    inst *in = closure;
    (void)custom_err;
    *user_jwt = strdup(in->jwt);
    return *user_jwt ? NATS_OK : NATS_NO_MEMORY;
}

static natsStatus sig_cb(char **custom_err, unsigned char **sig, int *sig_len, const char *nonce,
                         void *closure)
{
    inst *in = closure;
    natsStatus s = nats_Sign(in->seed, nonce, sig, sig_len);
    if (s != NATS_OK)
        *custom_err = strdup("cannot sign the server's nonce with seedKey");
    return s;
}

static int is_connected(inst *in)
{
    return natsConnection_Status(in->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* ------------------------------------------------------------------ */
/* The acker                                                            */
/* ------------------------------------------------------------------ */

static void send_ack(inst *in, delivery *d)
{
    char body[64];
    const char *b = "+ACK";
    if (d->verdict == DAPR_PUBSUB_ACK_RETRY) {
        int64_t delay = 0;
        if (in->cfg.n_backoff) {
            uint64_t k = d->n_delivered ? d->n_delivered - 1 : 0;
            if (k >= (uint64_t)in->cfg.n_backoff)
                k = (uint64_t)in->cfg.n_backoff - 1;
            delay = in->cfg.backoff_ns[k];
        } else if (in->cfg.ack_wait_ns) {
            delay = in->cfg.ack_wait_ns; /* as Dapr: NAK with the ack wait */
        }
        if (delay > 0) {
            snprintf(body, sizeof body, "-NAK {\"delay\":%" PRId64 "}", delay);
            b = body;
        } else {
            b = "-NAK";
        }
    }
    natsStatus s = natsConnection_PublishString(in->nc, d->reply, b);
    if (s != NATS_OK) {
        if (!in->ack_failing)
            in->api->log(in->host, DAPR_LOG_WARN,
                         "cannot send acks to NATS (%s): JetStream redelivers those messages after ackWait",
                         nats_err_text(s));
        in->ack_failing = 1;
    } else {
        in->ack_failing = 0;
    }
}

static void *acker_main(void *arg)
{
    inst *in = arg;
    pthread_mutex_lock(&in->mu);
    for (;;) {
        while (!in->ack_head && !in->ack_stop)
            pthread_cond_wait(&in->ack_cv, &in->mu);
        if (!in->ack_head)
            break;
        /* Take the whole queue: one lock round for a burst of acks. */
        delivery *list = in->ack_head;
        in->ack_head = in->ack_tail = NULL;
        pthread_mutex_unlock(&in->mu);
        while (list) {
            delivery *d = list;
            list = d->next;
            send_ack(in, d);
            free(d);
        }
        pthread_mutex_lock(&in->mu);
    }
    pthread_mutex_unlock(&in->mu);
    nats_ReleaseThreadMemory();
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Subscriptions                                                        */
/* ------------------------------------------------------------------ */

static void sub_free(jsub *s)
{
    free(s->topic);
    free(s->stream);
    free(s->consumer);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* Unlink and free an unsubscribed subscription once its thread is gone
 * and every message it handed out was acked.  Under in->mu. */
static void sub_maybe_free(inst *in, jsub *s)
{
    if (s->active || !s->finished || s->in_flight)
        return;
    for (jsub **pp = &in->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    sub_free(s);
}

/* The host's verdict: exactly once per delivered message, any thread,
 * possibly after unsubscribe.  Only queues; the acker publishes. */
static void ack_message(void *ack_ctx, dapr_pubsub_ack verdict)
{
    delivery *d = ack_ctx;
    jsub *s = d->s;
    inst *in = s->in;

    if (verdict != DAPR_PUBSUB_ACK_SUCCESS && verdict != DAPR_PUBSUB_ACK_DROP &&
        verdict != DAPR_PUBSUB_ACK_RETRY) {
        in->api->log(in->host, DAPR_LOG_WARN, "unknown ack verdict %d on topic %s: redelivering",
                     (int)verdict, s->topic);
        verdict = DAPR_PUBSUB_ACK_RETRY;
    }
    pthread_mutex_lock(&in->mu);
    d->verdict = verdict;
    d->s = NULL;
    d->next = NULL;
    if (in->ack_tail)
        in->ack_tail->next = d;
    else
        in->ack_head = d;
    in->ack_tail = d;
    pthread_cond_signal(&in->ack_cv);
    s->in_flight--;
    pthread_cond_signal(&s->cv);
    sub_maybe_free(in, s);
    pthread_mutex_unlock(&in->mu);
}

/* JetStream API prefix ("$JS.API", "$JS.<domain>.API" or apiPrefix). */
static void api_prefix(inst *in, char *buf, size_t len)
{
    const char *p = in->cfg.api_prefix;
    if (p) {
        size_t n = strlen(p);
        snprintf(buf, len, "%.*s", (int)(n && p[n - 1] == '.' ? n - 1 : n), p);
    } else if (in->cfg.domain) {
        snprintf(buf, len, "$JS.%s.API", in->cfg.domain);
    } else {
        snprintf(buf, len, "$JS.API");
    }
}

/* The stream that captures topic: streamName, or asked of JetStream. */
static char *find_stream(inst *in, const char *topic, char *err, size_t errlen)
{
    if (in->cfg.stream)
        return strdup(in->cfg.stream);

    char subj[512];
    api_prefix(in, subj, sizeof subj - 16);
    strcat(subj, ".STREAM.NAMES");
    json_t *req = json_pack("{s:s}", "subject", topic);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_RequestString(&reply, in->nc, subj, body, REQUEST_WAIT_MS);
    free(body);
    if (s != NATS_OK) {
        snprintf(err, errlen, "cannot look up the stream of subject '%s': %s%s", topic, nats_err_text(s),
                 s == NATS_NO_RESPONDERS ? " (is JetStream enabled, and domain/apiPrefix right?)" : "");
        return NULL;
    }
    json_error_t jerr;
    json_t *resp = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, &jerr);
    natsMsg_Destroy(reply);
    char *name = NULL;
    json_t *e = resp ? json_object_get(resp, "error") : NULL;
    json_t *streams = resp ? json_object_get(resp, "streams") : NULL;
    if (!resp) {
        snprintf(err, errlen, "bad reply from JetStream to a stream lookup: %s", jerr.text);
    } else if (e) {
        const char *d = json_string_value(json_object_get(e, "description"));
        snprintf(err, errlen, "stream lookup for subject '%s' failed: %s", topic, d ? d : "error");
    } else if (json_is_array(streams) && json_array_size(streams) > 0 &&
               json_is_string(json_array_get(streams, 0))) {
        name = strdup(json_string_value(json_array_get(streams, 0)));
        if (!name)
            snprintf(err, errlen, "out of memory");
    } else {
        snprintf(err, errlen,
                 "no JetStream stream captures subject '%s': create one first (e.g. nats stream add "
                 "--subjects '%s'), or set streamName",
                 topic, topic);
    }
    json_decref(resp);
    return name;
}

/* Create (or update) the durable pull consumer of s.  Idempotent. */
static int ensure_consumer(inst *in, jsub *s, char *err, size_t errlen)
{
    const config *c = &in->cfg;
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = s->consumer;
    cc.Description = "dapr pubsub.jetstream";
    cc.FilterSubject = s->topic;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = c->deliver_policy;
    cc.OptStartSeq = c->start_seq;
    cc.OptStartTime = c->start_time_ns;
    if (c->ack_wait_ns)
        cc.AckWait = c->ack_wait_ns;
    if (c->max_deliver)
        cc.MaxDeliver = c->max_deliver;
    if (c->n_backoff) {
        cc.BackOff = (int64_t *)c->backoff_ns;
        cc.BackOffLen = c->n_backoff;
    }
    if (c->max_ack_pending)
        cc.MaxAckPending = c->max_ack_pending;
    if (c->replicas)
        cc.Replicas = c->replicas;
    cc.MemoryStorage = c->memory_storage;

    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_AddConsumer(&ci, in->js, s->stream, &cc, NULL, &jerr);
    if (st == NATS_OK) {
        jsConsumerInfo_Destroy(ci);
        return 0;
    }
    char why[ERRLEN];
    snprintf(why, sizeof why, "%s", nats_err_text(st));
    /* An existing consumer whose fixed settings differ (deliver policy,
     * filter) cannot be updated: use it as it is if it fits. */
    ci = NULL;
    jsErrCode jerr2 = 0;
    if (js_GetConsumerInfo(&ci, in->js, s->stream, s->consumer, NULL, &jerr2) == NATS_OK && ci &&
        ci->Config) {
        int pull = !ci->Config->DeliverSubject || !*ci->Config->DeliverSubject;
        int same_filter = ci->Config->FilterSubject && !strcmp(ci->Config->FilterSubject, s->topic);
        int explicit_ack = ci->Config->AckPolicy == js_AckExplicit;
        jsConsumerInfo_Destroy(ci);
        if (pull && same_filter && explicit_ack) {
            in->api->log(in->host, DAPR_LOG_WARN,
                         "consumer %s on stream %s exists with other settings (%.200s): using it as it is",
                         s->consumer, s->stream, why);
            return 0;
        }
        snprintf(err, errlen,
                 "consumer %s on stream %s exists but is not an explicit-ack pull consumer of subject "
                 "'%s' (%.200s); delete it or choose another durableName",
                 s->consumer, s->stream, s->topic, why);
        return -1;
    }
    jsConsumerInfo_Destroy(ci);
    snprintf(err, errlen, "cannot create consumer %s on stream %s for subject '%s': %.200s%s", s->consumer,
             s->stream, s->topic, why, jerr == JSStreamNotFoundErr ? " (stream not found)" : "");
    return -1;
}

static int bind_consumer(inst *in, jsub *s, natsSubscription **out, char *err, size_t errlen)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = s->stream;
    so.Consumer = s->consumer;
    jsErrCode jerr = 0;
    natsStatus st = js_PullSubscribe(out, in->js, s->topic, s->consumer, NULL, &so, &jerr);
    if (st != NATS_OK) {
        snprintf(err, errlen, "cannot bind to consumer %s on stream %s: %s", s->consumer, s->stream,
                 nats_err_text(st));
        return -1;
    }
    return 0;
}

/* Fetch up to room messages: what is there now (no_wait), else a long
 * poll for one.  Asking for `room` in a long poll would make nats.c wait
 * for all of them (or the timeout), which delays a lone message. */
static natsStatus fetch(natsSubscription *nsub, int room, natsMsgList *list)
{
    jsFetchRequest fr;
    natsStatus st = NATS_TIMEOUT;
    memset(list, 0, sizeof *list);
    if (room > 1) {
        jsFetchRequest_Init(&fr);
        fr.Batch = room;
        fr.NoWait = true;
        fr.Expires = (int64_t)NOWAIT_EXPIRES_MS * 1000000;
        st = natsSubscription_FetchRequest(list, nsub, &fr);
        if (st != NATS_NOT_FOUND && st != NATS_TIMEOUT)
            return st;
    }
    jsFetchRequest_Init(&fr);
    fr.Batch = 1;
    fr.Expires = (int64_t)LONG_POLL_MS * 1000000;
    return natsSubscription_FetchRequest(list, nsub, &fr);
}

/* rateLimit (bits per second): wait until this message may go.  Returns
 * 0 when unsubscribing meanwhile.  Under in->mu. */
static int rate_wait(inst *in, jsub *s, size_t bytes)
{
    if (!in->cfg.rate_bps)
        return 1;
    int64_t now = mono_ns();
    if (s->rate_next_ns < now)
        s->rate_next_ns = now;
    while (s->active && (now = mono_ns()) < s->rate_next_ns)
        timed_wait(&s->cv, &in->mu, (s->rate_next_ns - now) / 1000000 + 1);
    double ns = (double)bytes * 8.0 * 1e9 / (double)in->cfg.rate_bps;
    s->rate_next_ns += ns > 9e18 ? INT64_MAX / 2 : (int64_t)ns;
    return s->active;
}

/* Hand fetched messages to the handler.  Messages fetched after
 * unsubscribe began are NAKed so that JetStream redelivers them at once
 * rather than after ackWait. */
static void deliver_all(inst *in, jsub *s, natsMsgList *list)
{
    for (int i = 0; i < list->Count; i++) {
        natsMsg *m = list->Msgs[i];
        const char *reply = natsMsg_GetReply(m);
        if (!reply || !*reply)
            continue; /* not a JetStream message */
        pthread_mutex_lock(&in->mu);
        int go = s->active && rate_wait(in, s, (size_t)natsMsg_GetDataLength(m));
        if (go)
            s->in_flight++;
        pthread_mutex_unlock(&in->mu);
        if (!go) {
            natsConnection_PublishString(in->nc, reply, "-NAK");
            continue;
        }

        size_t rl = strlen(reply);
        delivery *d = malloc(sizeof *d + rl + 1);
        if (!d) {
            pthread_mutex_lock(&in->mu);
            s->in_flight--;
            pthread_mutex_unlock(&in->mu);
            natsConnection_PublishString(in->nc, reply, "-NAK");
            continue;
        }
        d->s = s;
        d->n_delivered = 1;
        d->verdict = DAPR_PUBSUB_ACK_RETRY;
        d->next = NULL;
        memcpy(d->reply, reply, rl + 1);
        jsMsgMetaData *md = NULL;
        if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
            d->n_delivered = md->NumDelivered;
            jsMsgMetaData_Destroy(md);
        }

        const char *ct = NULL;
        if (natsMsgHeader_Get(m, "Content-Type", &ct) != NATS_OK)
            ct = NULL;
        dapr_kv kv[1] = {{"Topic", natsMsg_GetSubject(m)}};
        int len = natsMsg_GetDataLength(m);
        dapr_pubsub_message msg = {
            .topic = natsMsg_GetSubject(m),
            .data = {(const uint8_t *)natsMsg_GetData(m), len > 0 ? (size_t)len : 0},
            .content_type = ct,
            .metadata = {kv, 1},
        };
        if (!msg.data.len)
            msg.data.ptr = NULL;
        s->handler(s->handler_ctx, &msg, ack_message, d);
    }
}

static void *fetch_main(void *arg)
{
    jsub *s = arg;
    inst *in = s->in;
    int64_t backoff_ms = 0;
    int failing = 0;
    char err[ERRLEN];

    pthread_mutex_lock(&in->mu);
    for (;;) {
        while (s->active && s->in_flight >= s->max_in_flight)
            pthread_cond_wait(&s->cv, &in->mu);
        if (!s->active)
            break;
        int room = (int)(s->max_in_flight - s->in_flight);
        if (room > FETCH_MAX)
            room = FETCH_MAX;
        natsSubscription *nsub = s->nsub;
        pthread_mutex_unlock(&in->mu);

        if (!is_connected(in)) {
            /* Requests would only wait in the reconnect buffer. */
            pthread_mutex_lock(&in->mu);
            if (s->active)
                timed_wait(&s->cv, &in->mu, NOT_CONNECTED_WAIT_MS);
            continue;
        }

        natsMsgList list;
        natsStatus st = fetch(nsub, room, &list);
        if (st == NATS_OK || st == NATS_TIMEOUT || st == NATS_NOT_FOUND) {
            /* Messages, or none for now: either way the consumer works. */
            if (failing)
                in->api->log(in->host, DAPR_LOG_INFO, "pulling from consumer %s on stream %s works again",
                             s->consumer, s->stream);
            failing = 0;
            backoff_ms = 0;
            if (st == NATS_OK) {
                deliver_all(in, s, &list);
                natsMsgList_Destroy(&list);
            }
            pthread_mutex_lock(&in->mu);
            continue;
        }

        pthread_mutex_lock(&in->mu);
        if (!s->active)
            break; /* the inbox was unsubscribed to wake us */
        pthread_mutex_unlock(&in->mu);
        if (!is_connected(in)) {
            pthread_mutex_lock(&in->mu);
            continue;
        }
        /* Connected, but the pull failed: the consumer (or its stream)
         * is gone, or the server refuses.  Wait first (the server sends
         * "Consumer Deleted" to waiting pulls before it has removed the
         * consumer's files: creating it at once races with that), then
         * create it again; back off while it keeps failing, and log once
         * per streak. */
        char why[ERRLEN];
        snprintf(why, sizeof why, "%s", nats_err_text(st));
        backoff_ms = backoff_ms ? backoff_ms * 2 : ERR_BACKOFF_FIRST_MS;
        if (backoff_ms > ERR_BACKOFF_MAX_MS)
            backoff_ms = ERR_BACKOFF_MAX_MS;
        pthread_mutex_lock(&in->mu);
        if (s->active)
            timed_wait(&s->cv, &in->mu, backoff_ms);
        if (!s->active)
            break;
        pthread_mutex_unlock(&in->mu);
        if (!is_connected(in)) {
            pthread_mutex_lock(&in->mu);
            continue;
        }
        int fixed = ensure_consumer(in, s, err, sizeof err) == 0;
        if (!failing)
            in->api->log(in->host, fixed ? DAPR_LOG_INFO : DAPR_LOG_WARN,
                         "pulling from consumer %s on stream %s failed (%s); %s", s->consumer, s->stream,
                         why, fixed ? "consumer created again" : err);
        failing = 1;
        if (st == NATS_INVALID_SUBSCRIPTION || st == NATS_CONNECTION_CLOSED) {
            natsSubscription *fresh = NULL;
            if (bind_consumer(in, s, &fresh, err, sizeof err) == 0) {
                /* Swap only while active: once unsubscribing, sub_stop
                 * owns s->nsub (it unsubscribes it without the lock). */
                natsSubscription *old = NULL;
                pthread_mutex_lock(&in->mu);
                if (s->active) {
                    old = s->nsub;
                    s->nsub = fresh;
                    fresh = NULL;
                }
                pthread_mutex_unlock(&in->mu);
                natsSubscription_Destroy(old);
                natsSubscription_Destroy(fresh);
            }
        }
        pthread_mutex_lock(&in->mu);
    }
    if (s->detached) {
        natsSubscription *n = s->nsub;
        s->nsub = NULL;
        pthread_mutex_unlock(&in->mu);
        natsSubscription_Destroy(n);
        pthread_mutex_lock(&in->mu);
        s->finished = 1;
        sub_maybe_free(in, s);
    }
    pthread_mutex_unlock(&in->mu);
    nats_ReleaseThreadMemory();
    return NULL;
}

/* Stop a subscription's thread (s->active already 0).  Not under in->mu. */
static void sub_stop(inst *in, jsub *s)
{
    pthread_mutex_lock(&in->mu);
    pthread_cond_broadcast(&s->cv);
    natsSubscription *n = s->nsub;
    int self = pthread_equal(pthread_self(), s->thread);
    pthread_mutex_unlock(&in->mu);
    /* Wake a long poll: unsubscribing the inbox makes Fetch return.  Not
     * under the mutex (it writes to the socket, and the host's loop may
     * be waiting for the mutex in an ack); the fetch thread no longer
     * replaces s->nsub now that s is inactive. */
    if (n)
        natsSubscription_Unsubscribe(n);

    if (self) {
        /* The handler unsubscribed its own subscription: the thread ends
         * after the handler returns and cleans up itself (fetch_main). */
        pthread_detach(s->thread);
        pthread_mutex_lock(&in->mu);
        s->detached = 1;
        pthread_mutex_unlock(&in->mu);
        return;
    }
    pthread_join(s->thread, NULL);
    pthread_mutex_lock(&in->mu);
    n = s->nsub;
    s->nsub = NULL;
    pthread_mutex_unlock(&in->mu);
    natsSubscription_Destroy(n);
    /* finished and the free check in one critical section: once finished
     * is set, the last ack may free s at any moment. */
    pthread_mutex_lock(&in->mu);
    s->finished = 1;
    sub_maybe_free(in, s);
    pthread_mutex_unlock(&in->mu);
}

/* ------------------------------------------------------------------ */
/* Operations                                                           */
/* ------------------------------------------------------------------ */

/* Nats-Msg-Id (deduplication) for a CloudEvent: "<topic>:<id>".  As in
 * Dapr, the CloudEvent id makes a publish retried after a lost ack
 * idempotent.  Unlike Dapr, the topic is part of it: JetStream
 * deduplicates across the whole stream, and the same event published to
 * two topics of one stream (a dead-letter topic, say) must be stored
 * twice.  Raw payloads that merely have an "id" are left alone: two
 * different messages must never be deduplicated. */
static char *dedup_id(const char *topic, const dapr_bytes *data)
{
    if (!data->len || data->ptr[0] != '{')
        return NULL;
    json_t *ev = json_loadb((const char *)data->ptr, data->len, JSON_DISABLE_EOF_CHECK, NULL);
    char *id = NULL;
    const char *v = json_string_value(json_object_get(ev, "id"));
    if (json_is_object(ev) && json_is_string(json_object_get(ev, "specversion")) && v && *v &&
        asprintf(&id, "%s:%s", topic, v) < 0)
        id = NULL;
    json_decref(ev);
    return id;
}

static void js_publish(void *instance, const dapr_pubsub_publish_req *req, dapr_result_cb cb,
                       void *ctx)
{
    inst *in = instance;
    char err[ERRLEN];

    if (!req->topic || !*req->topic) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "topic is empty");
        return;
    }
    if (req->data.len && !req->data.ptr) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "data is NULL");
        return;
    }
    int64_t maxp = natsConnection_GetMaxPayload(in->nc);
    if (req->data.len > (size_t)INT_MAX || (maxp > 0 && req->data.len > (uint64_t)maxp)) {
        snprintf(err, sizeof err,
                 "message of %zu bytes is larger than the NATS server's max_payload (%" PRId64 " bytes)",
                 req->data.len, maxp);
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, err);
        return;
    }
    if (!is_connected(in)) {
        snprintf(err, sizeof err, "not connected to NATS at %s (reconnecting)", in->cfg.url_safe);
        complete(cb, ctx, DAPR_ERR_UNAVAILABLE, err);
        return;
    }

    natsMsg *m = NULL;
    natsStatus st = natsMsg_Create(&m, req->topic, NULL, (const char *)req->data.ptr, (int)req->data.len);
    if (st == NATS_OK && req->content_type && *req->content_type)
        st = natsMsgHeader_Set(m, "Content-Type", req->content_type);
    if (st != NATS_OK) {
        snprintf(err, sizeof err, "cannot build the message: %s", nats_err_text(st));
        natsMsg_Destroy(m);
        nats_ReleaseThreadMemory();
        complete(cb, ctx, st == NATS_INVALID_ARG ? DAPR_ERR_INVALID_ARGUMENT : DAPR_ERR_INTERNAL, err);
        return;
    }
    char *id = dedup_id(req->topic, &req->data);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    st = js_PublishMsg(&pa, in->js, m, &po, &jerr);
    dapr_status ds = DAPR_OK;
    switch (st) {
    case NATS_OK:
        break;
    case NATS_NO_RESPONDERS:
        ds = DAPR_ERR_INTERNAL;
        snprintf(err, sizeof err,
                 "no JetStream stream captures subject '%s' (create the stream first, e.g. nats stream "
                 "add --subjects '%s')",
                 req->topic, req->topic);
        break;
    case NATS_TIMEOUT:
        ds = DAPR_ERR_TIMEOUT;
        snprintf(err, sizeof err, "no publish ack from JetStream within %d ms (the message may be stored)",
                 REQUEST_WAIT_MS);
        break;
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_CONNECTION_CLOSED:
    case NATS_NO_SERVER:
        ds = DAPR_ERR_UNAVAILABLE;
        snprintf(err, sizeof err, "connection to NATS at %s lost while publishing (%s)", in->cfg.url_safe,
                 natsStatus_GetText(st));
        break;
    case NATS_MAX_PAYLOAD:
        ds = DAPR_ERR_INVALID_ARGUMENT;
        snprintf(err, sizeof err, "message too large for the NATS server: %s", nats_err_text(st));
        break;
    default:
        ds = DAPR_ERR_INTERNAL;
        if (jerr)
            snprintf(err, sizeof err, "JetStream refused the message: %s (error %d)", nats_err_text(st),
                     (int)jerr);
        else
            snprintf(err, sizeof err, "publish failed: %s", nats_err_text(st));
        break;
    }
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    free(id);
    /* This is the host's worker thread: drop nats.c's per-thread state. */
    nats_ReleaseThreadMemory();
    complete(cb, ctx, ds, err);
}

static void js_subscribe(void *instance, const dapr_pubsub_subscribe_req *req, uint64_t *sub_id,
                         dapr_result_cb cb, void *ctx)
{
    inst *in = instance;
    char err[ERRLEN];

    if (!req->topic || !*req->topic) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "topic is empty");
        return;
    }
    if (!req->handler) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "no handler");
        return;
    }
    if (strpbrk(req->topic, " \t\r\n")) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "a NATS subject cannot contain whitespace");
        return;
    }
    jsub *s = calloc(1, sizeof *s);
    if (!s || !(s->topic = strdup(req->topic))) {
        free(s);
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    s->in = in;
    s->handler = req->handler;
    s->handler_ctx = req->handler_ctx;
    s->max_in_flight = req->max_in_flight ? req->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    if (in->cfg.concurrency == CONC_SINGLE)
        s->max_in_flight = 1; /* Dapr's "single": one message at a time */
    cond_init_mono(&s->cv);

    /* The slot: the lowest not used by another live subscription of
     * this topic here, so each one gets its own consumer. */
    pthread_mutex_lock(&in->mu);
    unsigned slot = 1;
    for (int again = 1; again;) {
        again = 0;
        for (jsub *o = in->subs; o; o = o->next)
            if (!o->finished && o->slot == slot && !strcmp(o->topic, s->topic)) {
                slot++;
                again = 1;
            }
    }
    s->slot = slot;
    s->finished = 1; /* not in the list yet; set to 0 below */
    pthread_mutex_unlock(&in->mu);

    dapr_status ds = DAPR_ERR_INTERNAL;
    if (!(s->consumer = consumer_name(in->cfg.consumer_base, s->topic, slot))) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    if (!is_connected(in)) {
        ds = DAPR_ERR_UNAVAILABLE;
        snprintf(err, sizeof err, "not connected to NATS at %s (reconnecting)", in->cfg.url_safe);
        goto fail;
    }
    if (!(s->stream = find_stream(in, s->topic, err, sizeof err))) {
        ds = DAPR_ERR_NOT_FOUND;
        goto fail;
    }
    if (ensure_consumer(in, s, err, sizeof err) != 0)
        goto fail;
    if (bind_consumer(in, s, &s->nsub, err, sizeof err) != 0)
        goto fail;

    pthread_mutex_lock(&in->mu);
    s->id = ++in->next_id;
    s->active = 1;
    s->finished = 0;
    s->next = in->subs;
    in->subs = s;
    if (pthread_create(&s->thread, NULL, fetch_main, s) != 0) {
        in->subs = s->next;
        pthread_mutex_unlock(&in->mu);
        snprintf(err, sizeof err, "cannot start a thread");
        goto fail;
    }
    *sub_id = s->id;
    pthread_mutex_unlock(&in->mu);
    in->api->log(in->host, DAPR_LOG_DEBUG,
                 "subscribed to %s: pull consumer %s on stream %s, at most %u unacked", s->topic,
                 s->consumer, s->stream, s->max_in_flight);
    nats_ReleaseThreadMemory();
    complete(cb, ctx, DAPR_OK, NULL);
    return;

fail:
    natsSubscription_Destroy(s->nsub);
    sub_free(s);
    nats_ReleaseThreadMemory();
    complete(cb, ctx, ds, err);
}

static void js_unsubscribe(void *instance, uint64_t sub_id, dapr_result_cb cb, void *ctx)
{
    inst *in = instance;
    jsub *s;

    pthread_mutex_lock(&in->mu);
    for (s = in->subs; s; s = s->next)
        if (s->id == sub_id && s->active)
            break;
    if (!s) {
        pthread_mutex_unlock(&in->mu);
        complete(cb, ctx, DAPR_ERR_NOT_FOUND, "no such subscription");
        return;
    }
    s->active = 0;
    pthread_mutex_unlock(&in->mu);
    sub_stop(in, s);
    nats_ReleaseThreadMemory();
    complete(cb, ctx, DAPR_OK, NULL);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                            */
/* ------------------------------------------------------------------ */

/* Close and free everything init made.  Safe on a partly built inst. */
static void inst_destroy(inst *in)
{
    /* Subscriptions the host did not unsubscribe (it normally does). */
    for (;;) {
        pthread_mutex_lock(&in->mu);
        jsub *s = in->subs;
        while (s && !s->active)
            s = s->next;
        if (s)
            s->active = 0;
        pthread_mutex_unlock(&in->mu);
        if (!s)
            break;
        sub_stop(in, s);
    }
    if (in->acker_started) {
        pthread_mutex_lock(&in->mu);
        in->ack_stop = 1;
        pthread_cond_signal(&in->ack_cv);
        pthread_mutex_unlock(&in->mu);
        pthread_join(in->acker, NULL);
    }
    if (in->nc) {
        /* Push the last acks out before closing. */
        if (is_connected(in))
            natsConnection_FlushTimeout(in->nc, 2000);
        atomic_store(&in->closing, 1);
        natsConnection_Close(in->nc);
        /* The closed callback is the connection's last one: after it no
         * callback can touch in. */
        pthread_mutex_lock(&in->mu);
        int64_t deadline = mono_ns() + (int64_t)CLOSE_WAIT_MS * 1000000;
        while (!in->closed_cb_seen && mono_ns() < deadline)
            timed_wait(&in->closed_cv, &in->mu, 100);
        pthread_mutex_unlock(&in->mu);
    }
    jsCtx_Destroy(in->js);
    natsConnection_Destroy(in->nc);
    natsOptions_Destroy(in->opts);
    /* Left only if the host broke the ack contract: free them. */
    while (in->subs) {
        jsub *s = in->subs;
        in->subs = s->next;
        sub_free(s);
    }
    delivery *d = in->ack_head;
    while (d) {
        delivery *n = d->next;
        free(d);
        d = n;
    }
    if (in->seed) {
        memset(in->seed, 0, strlen(in->seed));
        free(in->seed);
    }
    free(in->jwt);
    config_free(&in->cfg);
    pthread_cond_destroy(&in->ack_cv);
    pthread_cond_destroy(&in->closed_cv);
    pthread_mutex_destroy(&in->mu);
    nats_ReleaseThreadMemory();
    free(in);
    lib_unref();
}

static int set_opts(inst *in, char *err, size_t errlen)
{
    natsOptions *o = in->opts;
    natsStatus s;
    const char *v;

#define OPT(call, what)                                                     \
    do {                                                                    \
        if ((s = (call)) != NATS_OK) {                                      \
            snprintf(err, errlen, "%s: %s", (what), nats_err_text(s));      \
            return -1;                                                      \
        }                                                                   \
    } while (0)

    OPT(natsOptions_SetURL(o, in->cfg.url), "natsURL");
    OPT(natsOptions_SetName(o, in->cfg.name), "name");
    OPT(natsOptions_SetTimeout(o, 5000), "connect timeout");
    OPT(natsOptions_SetMaxReconnect(o, -1), "reconnect");
    OPT(natsOptions_SetReconnectWait(o, 250), "reconnect wait");
    OPT(natsOptions_SetReconnectJitter(o, 100, 1000), "reconnect jitter");
    OPT(natsOptions_SetPingInterval(o, 5000), "ping interval");
    OPT(natsOptions_SetMaxPingsOut(o, 3), "max pings out");
    OPT(natsOptions_SetFailRequestsOnDisconnect(o, true), "fail requests on disconnect");
    OPT(natsOptions_SetDisconnectedCB(o, on_disconnected, in), "callbacks");
    OPT(natsOptions_SetReconnectedCB(o, on_reconnected, in), "callbacks");
    OPT(natsOptions_SetClosedCB(o, on_closed, in), "callbacks");
    OPT(natsOptions_SetErrorHandler(o, on_async_error, in), "callbacks");

    if ((v = meta(in, "token")))
        OPT(natsOptions_SetToken(o, v), "token");
    if (in->jwt) {
        /* Check the seed now rather than at the first (re)connect; never
         * show it. */
        unsigned char *sig = NULL;
        int sl = 0;
        if (nats_Sign(in->seed, "dapr", &sig, &sl) != NATS_OK) {
            free(sig);
            snprintf(err, errlen, "seedKey is not a valid NATS NKey seed");
            return -1;
        }
        free(sig);
        OPT(natsOptions_SetUserCredentialsCallbacks(o, jwt_cb, in, sig_cb, in), "jwt/seedKey");
    }
    const char *cert = meta(in, "tls_client_cert"), *key = meta(in, "tls_client_key");
    const char *ca = meta(in, "tls_ca_cert");
    if (cert || ca) {
        OPT(natsOptions_SetSecure(o, true), "TLS");
        if (ca) {
            if (!strncmp(ca, "-----BEGIN", 10))
                OPT(natsOptions_SetCATrustedCertificates(o, ca), "tls_ca_cert");
            else
                OPT(natsOptions_LoadCATrustedCertificates(o, ca), "tls_ca_cert");
        }
        if (cert) {
            /* PEM text or file paths (Dapr documents paths). */
            if (!strncmp(cert, "-----BEGIN", 10))
                OPT(natsOptions_SetCertificatesChain(o, cert, key), "tls_client_cert/tls_client_key");
            else
                OPT(natsOptions_LoadCertificatesChain(o, cert, key), "tls_client_cert/tls_client_key");
        }
    }
#undef OPT
    return 0;
}

static dapr_status js_init(dapr_host *host, const dapr_host_api *api, void **instance, char *errbuf,
                           size_t errlen)
{
    inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    in->host = host;
    in->api = api;
    pthread_mutex_init(&in->mu, NULL);
    pthread_cond_init(&in->ack_cv, NULL);
    cond_init_mono(&in->closed_cv);
    lib_ref();

    dapr_status ds = DAPR_ERR_INVALID_ARGUMENT;
    natsStatus s;
    if (parse_config(in, errbuf, errlen) != 0)
        goto fail;
    if ((s = natsOptions_Create(&in->opts)) != NATS_OK) {
        ds = DAPR_ERR_INTERNAL;
        snprintf(errbuf, errlen, "cannot initialise nats.c: %s", nats_err_text(s));
        goto fail;
    }
    if (set_opts(in, errbuf, errlen) != 0)
        goto fail;

    s = natsConnection_Connect(&in->nc, in->opts);
    if (s != NATS_OK) {
        char cause[300];
        const char *text = nats_err_text(s);
        char t[256];
        snprintf(t, sizeof t, "%s", text);
        in->nc = NULL;
        cause[0] = '\0';
        if (s == NATS_NO_SERVER || s == NATS_TIMEOUT)
            probe_cause(in->cfg.url, cause, sizeof cause);
        snprintf(errbuf, errlen, "cannot connect to NATS at %s: %s%s%s%s", in->cfg.url_safe, t,
                 cause[0] ? " (" : "", cause, cause[0] ? ")" : "");
        ds = DAPR_ERR_UNAVAILABLE;
        goto fail;
    }

    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = REQUEST_WAIT_MS;
    jo.Domain = in->cfg.domain;
    jo.Prefix = in->cfg.api_prefix;
    if ((s = natsConnection_JetStream(&in->js, in->nc, &jo)) != NATS_OK) {
        ds = DAPR_ERR_INTERNAL;
        snprintf(errbuf, errlen, "cannot get a JetStream context: %s", nats_err_text(s));
        goto fail;
    }
    /* Is JetStream there?  A server without -js has no responders. */
    jsAccountInfo *ai = NULL;
    jsErrCode jerr = 0;
    s = js_GetAccountInfo(&ai, in->js, NULL, &jerr);
    jsAccountInfo_Destroy(ai);
    if (s != NATS_OK) {
        ds = DAPR_ERR_UNAVAILABLE;
        snprintf(errbuf, errlen, "JetStream is not available on the NATS server at %s: %s%s", in->cfg.url_safe,
                 nats_err_text(s),
                 s == NATS_NO_RESPONDERS || jerr == JSNotEnabledErr || jerr == JSNotEnabledForAccountErr
                     ? " (start nats-server with -js; check domain/apiPrefix)"
                     : "");
        goto fail;
    }
    if (pthread_create(&in->acker, NULL, acker_main, in) != 0) {
        ds = DAPR_ERR_INTERNAL;
        snprintf(errbuf, errlen, "cannot start the acker thread");
        goto fail;
    }
    in->acker_started = 1;

    char url[256] = "";
    natsConnection_GetConnectedUrl(in->nc, url, sizeof url);
    char *safe = redact_urls(url);
    api->log(host, DAPR_LOG_INFO, "connected to NATS JetStream at %s (consumers: %s_<topic>%s%s)",
             safe ? safe : in->cfg.url_safe, in->cfg.consumer_base, in->cfg.stream ? ", stream " : "",
             in->cfg.stream ? in->cfg.stream : "");
    free(safe);
    nats_ReleaseThreadMemory();
    *instance = in;
    return DAPR_OK;

fail:
    inst_destroy(in);
    return ds;
}

static void js_close(void *instance)
{
    inst_destroy(instance);
}

/* ------------------------------------------------------------------ */
/* Descriptor                                                           */
/* ------------------------------------------------------------------ */

static const dapr_metadata_field js_schema[] = {
    {"natsURL", DAPR_META_STRING, DAPR_META_REQUIRED, NULL,
     "NATS server URL(s), comma-separated (nats://host:4222, tls://...)"},
    {"name", DAPR_META_STRING, 0, DEFAULT_NAME, "NATS connection name"},
    {"jwt", DAPR_META_STRING, DAPR_META_SECRET, NULL, "user JWT for decentralized auth (with seedKey)"},
    {"seedKey", DAPR_META_STRING, DAPR_META_SECRET, NULL, "NKey seed that signs the server nonce (with jwt)"},
    {"token", DAPR_META_STRING, DAPR_META_SECRET, NULL, "token authentication"},
    {"tls_client_cert", DAPR_META_STRING, 0, NULL, "client certificate: file path or PEM (with tls_client_key)"},
    {"tls_client_key", DAPR_META_STRING, DAPR_META_SECRET, NULL, "client private key: file path or PEM"},
    {"tls_ca_cert", DAPR_META_STRING, 0, NULL,
     "extension: CA certificate(s) to trust, file path or PEM (default: system CAs)"},
    {"streamName", DAPR_META_STRING, 0, NULL, "stream to create consumers on (default: found by subject)"},
    {"durableName", DAPR_META_STRING, 0, NULL, "consumer base name: consumers are <durableName>_<topic>"},
    {"queueGroupName", DAPR_META_STRING, 0, NULL,
     "consumer base name when durableName is unset (members share, so compete)"},
    {"startSequence", DAPR_META_INT, 0, NULL, "first stream sequence to deliver (deliverPolicy sequence)"},
    {"startTime", DAPR_META_INT, 0, NULL, "Unix time (s) to deliver from (deliverPolicy time)"},
    {"deliverPolicy", DAPR_META_STRING, 0, NULL, "all (default), last, new, sequence or time"},
    {"flowControl", DAPR_META_BOOL, 0, "false", "push consumers only: ignored (pull consumers)"},
    {"ackWait", DAPR_META_DURATION, 0, NULL, "redelivery after no ack (server default 30s); RETRY delay"},
    {"maxDeliver", DAPR_META_INT, 0, NULL, "deliveries of one message before JetStream gives up"},
    {"backOff", DAPR_META_STRING, 0, NULL, "redelivery delays by attempt, e.g. \"50ms, 1s, 10s\""},
    {"maxAckPending", DAPR_META_INT, 0, NULL, "unacked messages per consumer (all sidecars together)"},
    {"replicas", DAPR_META_INT, 0, NULL, "consumer replicas (clustered JetStream)"},
    {"memoryStorage", DAPR_META_BOOL, 0, "false", "keep consumer state in memory"},
    {"rateLimit", DAPR_META_INT, 0, NULL, "delivery rate limit in bits per second (applied by the plugin)"},
    {"heartbeat", DAPR_META_DURATION, 0, NULL, "push consumers only: ignored (pull consumers)"},
    {"hearbeat", DAPR_META_DURATION, 0, NULL, "spelling in Dapr's docs for heartbeat: ignored"},
    {"ackPolicy", DAPR_META_STRING, 0, "explicit", "explicit (all and none fall back to explicit)"},
    {"domain", DAPR_META_STRING, 0, NULL, "JetStream domain"},
    {"apiPrefix", DAPR_META_STRING, 0, NULL, "JetStream API prefix (default $JS.API)"},
    {"concurrency", DAPR_META_STRING, 0, NULL,
     "single (one message at a time) or parallel; default: daprd's bound"},
};

static const dapr_pubsub_vtable js_vtable = {
    .size = sizeof(dapr_pubsub_vtable),
    .publish = js_publish,
    .bulk_publish = NULL, /* the host publishes entry by entry */
    .subscribe = js_subscribe,
    .unsubscribe = js_unsubscribe,
};

static const dapr_component_def js_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_PUBSUB,
    .type = "pubsub.jetstream",
    .version = "v1",
    .features = 0, /* as Dapr's: no wildcards in Dapr's sense, no bulk */
    .flags = 0,    /* publish/subscribe wait for JetStream: run on workers */
    .metadata_schema = js_schema,
    .n_metadata_schema = sizeof js_schema / sizeof *js_schema,
    .init = js_init,
    .close = js_close,
    .vtable = &js_vtable,
};

static const dapr_component_def *const js_components[] = {&js_component};

static const dapr_plugin_descriptor js_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "pubsub-jetstream",
    .version = "1.0.0",
    .description = "pubsub.jetstream: NATS JetStream through nats.c, durable pull consumers",
    .components = js_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &js_descriptor;
}
