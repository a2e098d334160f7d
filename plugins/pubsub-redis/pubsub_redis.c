/*
 * pubsub_redis.c - "pubsub.redis": Dapr pub/sub on Redis Streams, through
 * hiredis.
 *
 * Data layout, the same as Dapr's own pubsub.redis (components-contrib,
 * pubsub/redis) so that real Dapr and this sidecar can share a Redis:
 *
 *  - a topic is a stream of the same name; publish is
 *        XADD <topic> [MAXLEN ~ <maxLenApprox> | MINID ~ <now-streamTTL>] *
 *             data <bytes> metadata <json> [contentType <type>]
 *    "data" holds the bytes the host publishes (the CloudEvent) unchanged,
 *    "metadata" the request metadata as a JSON object of strings (Dapr
 *    writes it too, "{}" when there is none).  "contentType" is ours: Dapr
 *    reads only "data" and "metadata" and ignores it; an entry without it
 *    (written by Dapr or redis-cli) arrives without a content type;
 *  - the consumer group is consumerID (default: the app id, as daprd
 *    sets it), created with XGROUP CREATE <topic> <group> 0 MKSTREAM when
 *    subscribing (so a new group also reads what the stream already
 *    holds, as Dapr's does); the consumer name is consumerID too, as in
 *    Dapr;
 *  - new entries come with XREADGROUP ... STREAMS <topic> >; an entry is
 *    acknowledged (XACK) only after the host acked it SUCCESS or DROP.
 *    RETRY leaves it in the group's pending list, and every
 *    redeliverInterval the pending entries idle for processingTimeout or
 *    longer are claimed again (XPENDING, then XCLAIM) and redelivered, by
 *    this sidecar or by any other consumer of the group, as with Dapr.
 *    XAUTOCLAIM (Redis 6.2) would claim in one command, but it cannot
 *    skip the entries this process still holds (queued locally or at the
 *    app), which would then be delivered twice; XPENDING lets us skip
 *    them.
 *
 * Threads.  The host calls publish, subscribe and unsubscribe on its
 * worker pool (the component is not NONBLOCKING): publish takes a
 * connection from a small pool, runs XADD and completes inline.  The ack
 * function only takes a mutex, so the host may call it from its loop.
 * Behind that, per instance:
 *  - one reader thread per subscribed topic, with its own connection,
 *    blocked in XREADGROUP (BLOCK readTimeout) when it has room, and
 *    running the reclaim every redeliverInterval; all the subscriptions
 *    of one topic in this instance share it (see "Fan-out");
 *  - one delivery thread handing queued messages to the host's handlers,
 *    at most max_in_flight unacked per subscription (and no more than
 *    concurrency);
 *  - one acker thread with its own connection sending XACKs in batches,
 *    so that an ack never waits for I/O.  While Redis is down the acks
 *    wait in memory (at most what was delivered) and go out after the
 *    reconnect; the pending list survives a restart with persistence.
 * A reader blocked in XREADGROUP is stopped by shutdown() of its socket,
 * so unsubscribe and close never wait for the block to end.
 *
 * Memory is bounded: a topic holds at most queueDepth entries waiting for
 * a handler slot (the reader reads no more than the room left), plus
 * what is in flight.  An entry acked RETRY keeps only its id (and which
 * subscriptions already took it) until it is claimed again.
 *
 * Fan-out.  In Dapr a sidecar has one subscription per topic and
 * component.  The conformance kit (and the ABI) allow several in one
 * instance; each gets every entry: an entry is acknowledged once every
 * subscription it went to said SUCCESS or DROP.  When one said RETRY, the
 * entry stays pending and, once claimed again, goes only to the
 * subscriptions that have not taken it yet.
 *
 * Reconnects.  A connection that fails is dropped; the reader and the
 * acker reconnect with a backoff (100 ms doubling to 2 s), logging once
 * per outage.  Publish retries on a new connection (redisMaxRetries)
 * when a pooled connection turns out dead, which makes the first publish
 * after a server restart succeed; a failed connect is not retried, so
 * publish fails at once while the server is down.  A retried XADD may
 * have been applied by the server the first time (the reply was lost):
 * at-least-once, as with Dapr's go-redis retries.
 *
 * hiredis 0.14 (Debian 12) has no TLS support: enableTLS=true fails init.
 * The password is never logged: only the server's own error text is.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_condattr_setclock, strdup, strcasecmp */
#endif

#include <dapr/plugin.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#define MSG_LEN 512
#define DEFAULT_PORT 6379
#define ID_LEN 48           /* "ms-seq", two 20-digit numbers and a dash */
#define HASH_BUCKETS 256
#define MAX_WAITING 4096    /* RETRY skeletons kept per topic (see rec_settle) */
#define ACK_BATCH 1024
#define RECLAIM_PAGES 16    /* XPENDING pages per reclaim round */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000

/* ------------------------------------------------------------------ */
/* Types                                                                */
/* ------------------------------------------------------------------ */

struct psr;
struct topic;
struct sub;
struct record;

/* One entry queued for, or in flight at, one subscription.  It is also
 * the ack context handed to the host. */
typedef struct delivery {
    struct record *r;
    struct sub *s;
    int in_flight;          /* 0: queued at s */
    struct delivery *next;  /* s's queue */
} delivery;

/*
 * A stream entry this instance knows about.
 *  ACTIVE:  some deliveries are queued or in flight (payload present);
 *  ACKING:  every subscription said SUCCESS or DROP; the XACK is queued;
 *  WAITING: someone said RETRY (or unsubscribed before taking it); left
 *           pending in Redis until claimed again; payload dropped;
 *  GONE:    XACK done; freed as soon as no handler reads it.
 */
enum rec_state { REC_ACTIVE, REC_ACKING, REC_WAITING, REC_GONE };

typedef struct record {
    struct topic *t;
    char id[ID_LEN];
    enum rec_state state;
    uint8_t *data;
    size_t len;
    char *content_type;
    dapr_kv *meta;
    size_t n_meta;
    int n_open;             /* deliveries queued or in flight */
    int n_queued;           /* of which queued */
    int retry;              /* a RETRY (or an abandoned delivery) was seen */
    int refs;               /* handler calls reading the payload now */
    uint64_t *done;         /* ids of the subscriptions that took it */
    size_t n_done, cap_done;
    struct record *prev, *next; /* t's list, oldest first */
    struct record *hnext;       /* t's hash chain */
    struct record *ack_next;    /* the acker's queue */
} record;

enum reader_state { READER_IDLE, READER_RUNNING, READER_STOPPING };

typedef struct topic {
    struct psr *p;
    char *name;
    size_t name_len;
    pthread_t thread;
    enum reader_state state;
    int stop;
    int fd;                 /* the reader's socket, -1: none (under p->mu) */
    pthread_cond_t cv;      /* wakes the reader: room, stop */
    pthread_cond_t state_cv;/* reader state changes */
    int n_subs;             /* active subscriptions */
    record *head, *tail;
    record *hash[HASH_BUCKETS];
    size_t n_queued_recs;   /* records with a queued delivery */
    size_t n_waiting;
    int no_idle_filter;     /* server lacks XPENDING IDLE (Redis < 6.2) */
    struct topic *next;
} topic;

typedef struct sub {
    struct psr *p;
    topic *t;
    uint64_t id;
    dapr_pubsub_handler handler;
    void *handler_ctx;
    uint32_t max_in_flight;
    int active;
    int unsub_waiting;
    delivery *qhead, *qtail;
    uint32_t in_flight;
    struct sub *next;
} sub;

typedef struct rconn {
    redisContext *ctx;
    unsigned gen;
} rconn;

typedef struct psr {
    dapr_host *host;
    const dapr_host_api *api;

    /* Connection settings. */
    char addr[300];
    char hostname[256];
    int port;
    const char *username;
    const char *password;    /* secret: never logged */
    long db;
    struct timeval dial_tv;
    long io_ms;              /* 0: no socket timeout */
    int max_retries;
    long long min_retry_ms, max_retry_ms;

    /* Streams settings. */
    char *group;             /* consumerID */
    long long processing_ms; /* 0 disables redelivery */
    long long redeliver_ms;  /* 0 disables redelivery */
    long long block_ms;      /* XREADGROUP BLOCK */
    uint32_t queue_depth;
    uint32_t concurrency;
    long long maxlen;        /* 0: no MAXLEN */
    long long stream_ttl_ms; /* 0: no MINID */

    /* Publish connection pool. */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    rconn *conns;
    int *free_idx;
    int n_free, pool_size;
    unsigned gen;

    /* Subscriptions, records and acks. */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* wakes the delivery thread */
    pthread_cond_t idle;     /* a handler call returned */
    topic *topics;
    sub *subs;
    sub *rr;
    sub *delivering;
    uint64_t next_sub_id;
    int stop;
    pthread_t deliver_thread;
    int deliver_started;

    pthread_t ack_thread;
    int ack_started;
    pthread_cond_t ack_cv;
    record *ack_head, *ack_tail;
    int ack_stop;
} psr;

typedef struct op_status {
    dapr_status status;
    char msg[MSG_LEN];
} op_status;

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static void fail(op_status *st, dapr_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(op_status *st, dapr_status status, const char *fmt, ...)
{
    va_list ap;
    st->status = status;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    va_end(ap);
}

static void complete(dapr_result_cb cb, void *ctx, dapr_status st, const char *msg)
{
    dapr_result res = {.status = st, .message = st == DAPR_OK ? NULL : msg};
    cb(ctx, &res);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait on cv (CLOCK_MONOTONIC) for at most ms milliseconds. */
static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ms < 0) ms = 0;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
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

static struct timeval ms_to_tv(long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* A whole decimal integer, no spaces.  Returns 0 on success. */
static int parse_ll(const char *s, long long *out)
{
    char *end;
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s)) return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

/*
 * A duration as Dapr's Redis settings read it: a bare integer is
 * milliseconds (legacy), anything else a Go duration ("5s", "1m30s",
 * "250ms").  Stores milliseconds.  Returns 0 or -1.
 */
static int parse_duration_ms(const char *s, long long *ms)
{
    static const struct { const char *unit; double ms; } units[] = {
        {"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ms", 1}, {"s", 1e3},
        {"m", 60e3}, {"h", 3600e3},
    };
    if (parse_ll(s, ms) == 0) return 0;
    const char *p = s;
    int neg = 0;
    double total = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (*p == '\0') return -1;
    while (*p) {
        char *end;
        if (!isdigit((unsigned char)*p) && *p != '.') return -1;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno == ERANGE) return -1;
        p = end;
        size_t best = 0;
        double mult = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t n = strlen(units[i].unit);
            if (n > best && strncmp(p, units[i].unit, n) == 0) best = n, mult = units[i].ms;
        }
        if (best == 0) return -1;
        p += best;
        total += v * mult;
        if (total > 9e15) return -1;
    }
    *ms = (long long)(neg ? -total : total);
    return 0;
}

/* Dapr's truthy/falsy words.  Returns 0/1, or -1 when not a boolean. */
static int parse_bool(const char *s)
{
    static const char *yes[] = {"1", "true", "t", "yes", "y", "on"};
    static const char *no[] = {"0", "false", "f", "no", "n", "off", ""};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (strcasecmp(s, yes[i]) == 0) return 1;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strcasecmp(s, no[i]) == 0) return 0;
    return -1;
}

/* A Redis error reply as a Dapr status. */
static dapr_status reply_error_status(const char *err)
{
    static const struct { const char *prefix; dapr_status st; } map[] = {
        {"NOAUTH", DAPR_ERR_PERMISSION_DENIED}, {"WRONGPASS", DAPR_ERR_PERMISSION_DENIED},
        {"NOPERM", DAPR_ERR_PERMISSION_DENIED}, {"LOADING", DAPR_ERR_UNAVAILABLE},
        {"BUSY ", DAPR_ERR_UNAVAILABLE},        {"MASTERDOWN", DAPR_ERR_UNAVAILABLE},
        {"TRYAGAIN", DAPR_ERR_UNAVAILABLE},     {"READONLY", DAPR_ERR_UNAVAILABLE},
        {"OOM", DAPR_ERR_UNAVAILABLE},          {"WRONGTYPE", DAPR_ERR_INVALID_ARGUMENT},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strncmp(err, map[i].prefix, strlen(map[i].prefix)) == 0) return map[i].st;
    return DAPR_ERR_INTERNAL;
}

static int is_error(const redisReply *r, const char *prefix)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */
/* ------------------------------------------------------------------ */

/* Run one command; NULL on a connection-level failure (c->err set). */
static redisReply *command(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    return redisCommandArgv(c, argc, argv, lens);
}

/* Why a connection failed, for messages. */
static void conn_error(psr *p, redisContext *c, int saved_errno, op_status *st)
{
    const char *why = c ? c->errstr : "out of memory";
    if (c && c->err == REDIS_ERR_IO &&
        (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || strstr(why, "temporarily")))
        fail(st, DAPR_ERR_TIMEOUT, "redis streams: no answer from redis at %s within %ld ms",
             p->addr, p->io_ms);
    else
        fail(st, DAPR_ERR_UNAVAILABLE, "redis streams: connection to redis at %s failed: %s",
             p->addr, why && why[0] ? why : "connection closed");
}

/*
 * Connect, then AUTH and SELECT as configured.  io_ms bounds every later
 * read and write (0: none).  NULL with st filled on failure.
 */
static redisContext *conn_open(psr *p, long io_ms, op_status *st)
{
    redisContext *c = redisConnectWithTimeout(p->hostname, p->port, p->dial_tv);
    if (c == NULL || c->err) {
        fail(st, DAPR_ERR_UNAVAILABLE, "redis streams: error connecting to redis at %s: %s",
             p->addr, c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, ms_to_tv(io_ms)) != REDIS_OK) {
        conn_error(p, c, errno, st);
        redisFree(c);
        return NULL;
    }
    redisEnableKeepAlive(c);

    if (p->password && p->password[0]) {
        const char *argv[3] = {"AUTH"};
        int argc = 1;
        if (p->username && p->username[0]) argv[argc++] = p->username;
        argv[argc++] = p->password;
        redisReply *r = command(c, argc, argv, NULL);
        if (r == NULL) {
            conn_error(p, c, errno, st);
            redisFree(c);
            return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            /* The server's text never contains the password. */
            fail(st, reply_error_status(r->str),
                 "redis streams: redis at %s: authentication failed: %s", p->addr, r->str);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    char dbs[24];
    snprintf(dbs, sizeof dbs, "%ld", p->db);
    const char *argv[2] = {p->db ? "SELECT" : "PING", dbs};
    redisReply *r = command(c, p->db ? 2 : 1, argv, NULL);
    if (r == NULL) {
        conn_error(p, c, errno, st);
        redisFree(c);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fail(st, p->db ? DAPR_ERR_INVALID_ARGUMENT : reply_error_status(r->str),
             "redis streams: redis at %s: %s: %s", p->addr,
             p->db ? "cannot select database" : "PING failed", r->str);
        freeReplyObject(r);
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

/* XGROUP CREATE <topic> <group> 0 MKSTREAM; an existing group is fine.
 * Returns 0, -1 on a connection failure, 1 on an error reply (st). */
static int group_create(psr *p, redisContext *c, const char *stream, size_t stream_len,
                        op_status *st)
{
    const char *argv[6] = {"XGROUP", "CREATE", stream, p->group, "0", "MKSTREAM"};
    size_t lens[6] = {6, 6, stream_len, strlen(p->group), 1, 8};
    redisReply *r = command(c, 6, argv, lens);
    if (r == NULL) {
        conn_error(p, c, errno, st);
        return -1;
    }
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR && !is_error(r, "BUSYGROUP")) {
        fail(st, reply_error_status(r->str),
             "redis streams: cannot create consumer group %s on stream %.200s: %s", p->group,
             stream, r->str);
        rc = 1;
    }
    freeReplyObject(r);
    return rc;
}

/* Take an idle pool connection, connecting it if needed. */
static rconn *pool_take(psr *p, int *fresh, op_status *st)
{
    pthread_mutex_lock(&p->pool_mu);
    while (p->n_free == 0) pthread_cond_wait(&p->pool_cv, &p->pool_mu);
    rconn *c = &p->conns[p->free_idx[--p->n_free]];
    unsigned gen = p->gen;
    pthread_mutex_unlock(&p->pool_mu);

    if (c->ctx && c->gen != gen) { /* opened before a failure: retire it */
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    *fresh = 0;
    if (c->ctx == NULL) {
        c->gen = gen;
        c->ctx = conn_open(p, p->io_ms, st);
        if (c->ctx == NULL) {
            pthread_mutex_lock(&p->pool_mu);
            p->free_idx[p->n_free++] = (int)(c - p->conns);
            pthread_cond_signal(&p->pool_cv);
            pthread_mutex_unlock(&p->pool_mu);
            return NULL;
        }
        *fresh = 1;
    }
    return c;
}

static void pool_give(psr *p, rconn *c)
{
    pthread_mutex_lock(&p->pool_mu);
    p->free_idx[p->n_free++] = (int)(c - p->conns);
    pthread_cond_signal(&p->pool_cv);
    pthread_mutex_unlock(&p->pool_mu);
}

/* A pooled connection failed: close it, and make the idle ones opened
 * before now reconnect (they most likely point at the same dead server). */
static void pool_broken(psr *p, rconn *c)
{
    if (c->ctx) redisFree(c->ctx);
    c->ctx = NULL;
    pthread_mutex_lock(&p->pool_mu);
    p->gen++;
    pthread_mutex_unlock(&p->pool_mu);
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * Run one command on a pooled connection.  A connection that breaks
 * under an old pooled connection is retried on a new one, up to
 * redisMaxRetries times with redisMinRetryInterval..redisMaxRetryInterval
 * backoff; a failed connect or a timeout is not retried.  Returns the
 * reply (caller frees), or NULL with st filled.
 */
static redisReply *pool_run(psr *p, int argc, const char **argv, const size_t *lens,
                            op_status *st)
{
    long long backoff = p->min_retry_ms;
    for (int attempt = 0;; attempt++) {
        int fresh;
        rconn *c = pool_take(p, &fresh, st);
        if (c == NULL) return NULL;
        redisReply *r = command(c->ctx, argc, argv, lens);
        if (r != NULL) {
            pool_give(p, c);
            return r;
        }
        conn_error(p, c->ctx, errno, st);
        pool_broken(p, c);
        pool_give(p, c);
        if (fresh || st->status == DAPR_ERR_TIMEOUT || attempt >= p->max_retries) return NULL;
        p->api->log(p->host, DAPR_LOG_DEBUG, "%s; retrying on a new connection", st->msg);
        if (backoff > 0) {
            sleep_ms(backoff);
            backoff = backoff * 2 > p->max_retry_ms ? p->max_retry_ms : backoff * 2;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Publish                                                              */
/* ------------------------------------------------------------------ */

/* Request metadata as Dapr stores it: a JSON object of strings.  NULL
 * when out of memory; values that are not valid UTF-8 are left out. */
static char *metadata_json(psr *p, dapr_kvs md)
{
    json_t *o = json_object();
    if (!o) return NULL;
    for (size_t i = 0; i < md.n; i++) {
        const char *k = md.items[i].name, *v = md.items[i].value;
        if (!k || !v) continue;
        json_t *js = json_string(v);
        if (!js || json_object_set_new(o, k, js) != 0) {
            p->api->log(p->host, DAPR_LOG_DEBUG,
                        "publish metadata '%.64s' is not valid UTF-8: not stored", k);
            continue;
        }
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

static void ps_publish(void *inst, const dapr_pubsub_publish_req *req, dapr_result_cb cb,
                       void *ctx)
{
    psr *p = inst;
    op_status st = {DAPR_OK, ""};

    if (!req->topic || !*req->topic) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "topic is empty");
        return;
    }
    if (req->data.len && !req->data.ptr) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "data is NULL");
        return;
    }
    char *md = metadata_json(p, req->metadata);
    if (!md) {
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    const char *argv[12];
    size_t lens[12];
    int argc = 0;
    char num[48];
#define ARG(s, l) (argv[argc] = (s), lens[argc] = (l), argc++)
    ARG("XADD", 4);
    ARG(req->topic, strlen(req->topic));
    /* One trimming strategy per XADD: MAXLEN wins, as in go-redis. */
    if (p->maxlen > 0) {
        snprintf(num, sizeof num, "%lld", p->maxlen);
        ARG("MAXLEN", 6);
        ARG("~", 1);
        ARG(num, strlen(num));
    } else if (p->stream_ttl_ms > 0) {
        long long min = wall_ms() - p->stream_ttl_ms;
        snprintf(num, sizeof num, "%lld-1", min > 0 ? min : 0);
        ARG("MINID", 5);
        ARG("~", 1);
        ARG(num, strlen(num));
    }
    ARG("*", 1);
    ARG("data", 4);
    ARG(req->data.len ? (const char *)req->data.ptr : "", req->data.len);
    ARG("metadata", 8);
    ARG(md, strlen(md));
    if (req->content_type && req->content_type[0]) {
        ARG("contentType", 11);
        ARG(req->content_type, strlen(req->content_type));
    }
#undef ARG

    redisReply *r = pool_run(p, argc, argv, lens, &st);
    free(md);
    if (r && r->type == REDIS_REPLY_ERROR)
        fail(&st, reply_error_status(r->str), "redis streams: error from publish: %s", r->str);
    else if (r && r->type != REDIS_REPLY_STRING)
        fail(&st, DAPR_ERR_INTERNAL, "redis streams: unexpected XADD reply (type %d)", r->type);
    if (r) freeReplyObject(r);
    complete(cb, ctx, st.status, st.msg);
}

/* ------------------------------------------------------------------ */
/* Records (all under p->mu)                                            */
/* ------------------------------------------------------------------ */

static unsigned id_hash(const char *id)
{
    unsigned h = 2166136261u;
    for (; *id; id++) h = (h ^ (unsigned char)*id) * 16777619u;
    return h % HASH_BUCKETS;
}

static record *rec_find(topic *t, const char *id)
{
    for (record *r = t->hash[id_hash(id)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0) return r;
    return NULL;
}

static void payload_free(record *r)
{
    free(r->data);
    free(r->content_type);
    for (size_t i = 0; i < r->n_meta; i++) {
        free((char *)r->meta[i].name);
        free((char *)r->meta[i].value);
    }
    free(r->meta);
    r->data = NULL;
    r->len = 0;
    r->content_type = NULL;
    r->meta = NULL;
    r->n_meta = 0;
}

static void rec_unlink_free(record *r)
{
    topic *t = r->t;
    record **pp = &t->hash[id_hash(r->id)];
    while (*pp && *pp != r) pp = &(*pp)->hnext;
    if (*pp) *pp = r->hnext;
    if (r->prev) r->prev->next = r->next;
    else t->head = r->next;
    if (r->next) r->next->prev = r->prev;
    else t->tail = r->prev;
    if (r->state == REC_WAITING) t->n_waiting--;
    payload_free(r);
    free(r->done);
    free(r);
}

/* Free what nobody needs any more: the payload once no delivery is open
 * and no handler reads it; the record once it is GONE. */
static void rec_tidy(record *r)
{
    if (r->refs) return;
    if (r->state == REC_GONE) {
        rec_unlink_free(r);
        return;
    }
    if (r->n_open == 0 && r->data) payload_free(r);
}

static record *rec_new(topic *t, const char *id)
{
    record *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->t = t;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->state = REC_WAITING; /* until deliveries are added */
    t->n_waiting++;
    unsigned h = id_hash(r->id);
    r->hnext = t->hash[h];
    t->hash[h] = r;
    r->prev = t->tail;
    if (t->tail) t->tail->next = r;
    else t->head = r;
    t->tail = r;
    return r;
}

static int rec_done_by(const record *r, uint64_t sub_id)
{
    for (size_t i = 0; i < r->n_done; i++)
        if (r->done[i] == sub_id) return 1;
    return 0;
}

static void rec_mark_done(record *r, uint64_t sub_id)
{
    if (r->n_done == r->cap_done) {
        size_t cap = r->cap_done ? r->cap_done * 2 : 2;
        uint64_t *d = realloc(r->done, cap * sizeof *d);
        if (!d) return; /* forgetting only risks a duplicate */
        r->done = d;
        r->cap_done = cap;
    }
    r->done[r->n_done++] = sub_id;
}

static void acker_push(psr *p, record *r)
{
    r->ack_next = NULL;
    if (p->ack_tail) p->ack_tail->ack_next = r;
    else p->ack_head = r;
    p->ack_tail = r;
    pthread_cond_signal(&p->ack_cv);
}

/* Drop the oldest RETRY skeletons beyond MAX_WAITING: such an entry is
 * then redelivered to every subscription when claimed (a duplicate only
 * for those that had taken it), never lost. */
static void waiting_trim(topic *t)
{
    for (record *r = t->head; r && t->n_waiting > MAX_WAITING;) {
        record *next = r->next;
        if (r->state == REC_WAITING && r->refs == 0) rec_unlink_free(r);
        r = next;
    }
}

/* A record whose last open delivery closed: XACK it, or leave it pending. */
static void rec_settle(psr *p, record *r)
{
    if (r->n_open > 0 || r->state != REC_ACTIVE) return;
    if (r->retry) {
        r->state = REC_WAITING;
        r->t->n_waiting++;
        r->retry = 0;
        rec_tidy(r);
        waiting_trim(r->t);
    } else {
        r->state = REC_ACKING;
        acker_push(p, r);
        rec_tidy(r);
    }
}

static void sub_enqueue(sub *s, delivery *d)
{
    d->next = NULL;
    if (s->qtail) s->qtail->next = d;
    else s->qhead = d;
    s->qtail = d;
}

/*
 * Give record r (payload present, state WAITING) to every active
 * subscription of its topic that has not taken it yet.  When there is
 * none, the record is acknowledged if some subscription took it, else
 * left waiting.
 */
static void rec_dispatch(psr *p, record *r)
{
    topic *t = r->t;
    int n = 0;
    for (sub *s = p->subs; s; s = s->next) {
        if (!s->active || s->t != t || rec_done_by(r, s->id)) continue;
        delivery *d = calloc(1, sizeof *d);
        if (!d) {
            r->retry = 1; /* out of memory: left pending for later */
            continue;
        }
        d->r = r;
        d->s = s;
        sub_enqueue(s, d);
        r->n_open++;
        r->n_queued++;
        n++;
    }
    if (n == 0) {
        if (r->n_done > 0 && t->n_subs > 0 && !r->retry) {
            /* Everyone here already took it. */
            t->n_waiting--;
            r->state = REC_ACKING;
            acker_push(p, r);
        }
        r->retry = 0;
        rec_tidy(r);
        if (r->state == REC_WAITING) waiting_trim(t);
        return;
    }
    t->n_waiting--;
    r->state = REC_ACTIVE;
    t->n_queued_recs++;
    pthread_cond_signal(&p->cv);
}

/* ------------------------------------------------------------------ */
/* Stream entries                                                       */
/* ------------------------------------------------------------------ */

static int reply_is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

/* Parse the metadata JSON of an entry into r (a bad one is only logged,
 * as Dapr does). */
static void parse_metadata(psr *p, record *r, const char *s, size_t len)
{
    json_error_t err;
    json_t *o = json_loadb(s, len, 0, &err);
    if (!json_is_object(o)) {
        p->api->log(p->host, DAPR_LOG_WARN,
                    "could not read the metadata of entry %s on stream %.200s: not a JSON object",
                    r->id, r->t->name);
        json_decref(o);
        return;
    }
    size_t n = json_object_size(o);
    r->meta = n ? calloc(n, sizeof *r->meta) : NULL;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (!r->meta || r->n_meta >= n) break;
        char *val = json_is_string(v) ? strdup(json_string_value(v))
                                      : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        char *key = strdup(k);
        if (!val || !key) {
            free(val);
            free(key);
            continue;
        }
        r->meta[r->n_meta].name = key;
        r->meta[r->n_meta].value = val;
        r->n_meta++;
    }
    json_decref(o);
}

/*
 * One entry of an XREADGROUP or XCLAIM reply: [id, [field, value, ...]].
 * Creates or refills its record and dispatches it.  Returns 1 when the
 * entry is new work for this instance, 0 when skipped, and -1 for an
 * entry deleted from the stream (nil fields, Redis < 7): the caller acks
 * those so that they leave the pending list, as Dapr does.  *deleted_id
 * gets its id.
 */
static int take_entry(psr *p, topic *t, const redisReply *e, char deleted_id[ID_LEN])
{
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 1 || !reply_is_str(e->element[0]) ||
        e->element[0]->len >= ID_LEN)
        return 0;
    const char *id = e->element[0]->str;
    const redisReply *f = e->elements >= 2 ? e->element[1] : NULL;
    if (!f || f->type != REDIS_REPLY_ARRAY) {
        snprintf(deleted_id, ID_LEN, "%s", id);
        return -1;
    }
    record *r = rec_find(t, id);
    /* Already held here, or a handler still reads its old payload: it
     * stays pending and is claimed on a later round. */
    if (r && (r->state != REC_WAITING || r->refs > 0)) return 0;
    if (!r && !(r = rec_new(t, id))) return 0;   /* out of memory: claimed later */

    const redisReply *data = NULL, *md = NULL, *ct = NULL;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (!reply_is_str(k) || !reply_is_str(v)) continue;
        if (k->len == 4 && memcmp(k->str, "data", 4) == 0) data = v;
        else if (k->len == 8 && memcmp(k->str, "metadata", 8) == 0) md = v;
        else if (k->len == 11 && memcmp(k->str, "contentType", 11) == 0) ct = v;
    }
    payload_free(r);
    /* A missing data field is delivered as empty data, as Dapr does. */
    r->len = data ? data->len : 0;
    r->data = malloc(r->len + 1);
    if (!r->data) {
        rec_tidy(r);
        return 0;
    }
    if (r->len) memcpy(r->data, data->str, r->len);
    r->data[r->len] = 0;
    if (ct && ct->len) r->content_type = strndup(ct->str, ct->len);
    if (md && md->len) parse_metadata(p, r, md->str, md->len);
    rec_dispatch(p, r);
    return 1;
}

/* The room a topic's reader has: entries it may still queue. */
static size_t topic_room(psr *p, topic *t)
{
    return t->n_queued_recs >= p->queue_depth ? 0 : p->queue_depth - t->n_queued_recs;
}

/* ------------------------------------------------------------------ */
/* The reader: XREADGROUP and the reclaim                               */
/* ------------------------------------------------------------------ */

/* XACK ids on the reader's connection (entries gone from the stream). */
static int ack_ids(psr *p, topic *t, redisContext *c, char (*ids)[ID_LEN], size_t n)
{
    if (n == 0) return 0;
    const char **argv = calloc(n + 3, sizeof *argv);
    size_t *lens = calloc(n + 3, sizeof *lens);
    int rc = 0;
    if (!argv || !lens) goto out;
    argv[0] = "XACK";
    lens[0] = 4;
    argv[1] = t->name;
    lens[1] = t->name_len;
    argv[2] = p->group;
    lens[2] = strlen(p->group);
    for (size_t i = 0; i < n; i++) {
        argv[3 + i] = ids[i];
        lens[3 + i] = strlen(ids[i]);
    }
    redisReply *r = command(c, (int)(n + 3), argv, lens);
    if (!r) rc = -1;
    else freeReplyObject(r);
out:
    free(argv);
    free(lens);
    return rc;
}

/* Parse "ms-seq" and write the next id ("ms-(seq+1)"). */
static int id_next(const char *id, char out[ID_LEN])
{
    unsigned long long ms, seq;
    char tail;
    if (sscanf(id, "%llu-%llu%c", &ms, &seq, &tail) != 2) return -1;
    if (seq == ULLONG_MAX) {
        if (ms == ULLONG_MAX) return -1;
        ms++;
        seq = 0;
    } else {
        seq++;
    }
    snprintf(out, ID_LEN, "%llu-%llu", ms, seq);
    return 0;
}

/*
 * Claim the group's pending entries idle for processingTimeout or longer
 * (up to *room of them), skipping those this instance holds, and
 * dispatch them.  Returns 0, or -1 when the connection failed.
 */
static int reclaim(psr *p, topic *t, redisContext *c, size_t *room)
{
    char start[ID_LEN + 1] = "-";
    char idle[32], cnt[32], min_idle[32];
    snprintf(idle, sizeof idle, "%lld", p->processing_ms);
    snprintf(min_idle, sizeof min_idle, "%lld", p->processing_ms);
    snprintf(cnt, sizeof cnt, "%u", p->queue_depth);
    size_t glen = strlen(p->group);
    char (*ids)[ID_LEN] = calloc(p->queue_depth, sizeof *ids);
    char (*gone)[ID_LEN] = calloc(p->queue_depth, sizeof *gone);
    int rc = 0;
    if (!ids || !gone) goto out;

    for (int page = 0; page < RECLAIM_PAGES && *room > 0; page++) {
        const char *argv[8];
        size_t lens[8];
        int argc = 0;
        argv[argc] = "XPENDING", lens[argc++] = 8;
        argv[argc] = t->name, lens[argc++] = t->name_len;
        argv[argc] = p->group, lens[argc++] = glen;
        if (!t->no_idle_filter) {
            argv[argc] = "IDLE", lens[argc++] = 4;
            argv[argc] = idle, lens[argc++] = strlen(idle);
        }
        argv[argc] = start, lens[argc++] = strlen(start);
        argv[argc] = "+", lens[argc++] = 1;
        argv[argc] = cnt, lens[argc++] = strlen(cnt);
        redisReply *r = command(c, argc, argv, lens);
        if (!r) {
            rc = -1;
            goto out;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            if (!t->no_idle_filter && !is_error(r, "NOGROUP")) {
                /* Redis before 6.2: filter on the idle time here. */
                t->no_idle_filter = 1;
                freeReplyObject(r);
                page--;
                continue;
            }
            p->api->log(p->host, DAPR_LOG_DEBUG, "XPENDING on stream %.200s: %s", t->name, r->str);
            freeReplyObject(r);
            goto out;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
            freeReplyObject(r);
            goto out;
        }
        size_t n_ids = 0, n_entries = r->elements;
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < r->elements && n_ids < *room; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !reply_is_str(e->element[0]) ||
                e->element[0]->len >= ID_LEN || e->element[2]->type != REDIS_REPLY_INTEGER)
                continue;
            if (e->element[2]->integer < p->processing_ms) continue;
            record *rec = rec_find(t, e->element[0]->str);
            if (rec && rec->state != REC_WAITING) continue; /* ours, being handled */
            snprintf(ids[n_ids++], ID_LEN, "%s", e->element[0]->str);
        }
        pthread_mutex_unlock(&p->mu);
        const redisReply *last = r->element[r->elements - 1];
        int more = n_entries >= p->queue_depth && last->type == REDIS_REPLY_ARRAY &&
                   last->elements >= 1 && reply_is_str(last->element[0]) &&
                   id_next(last->element[0]->str, start) == 0;
        freeReplyObject(r);

        if (n_ids > 0) {
            const char **cargv = calloc(n_ids + 5, sizeof *cargv);
            size_t *clens = calloc(n_ids + 5, sizeof *clens);
            if (!cargv || !clens) {
                free(cargv);
                free(clens);
                goto out;
            }
            cargv[0] = "XCLAIM", clens[0] = 6;
            cargv[1] = t->name, clens[1] = t->name_len;
            cargv[2] = p->group, clens[2] = glen;
            cargv[3] = p->group, clens[3] = glen; /* consumer name = consumerID, as Dapr */
            cargv[4] = min_idle, clens[4] = strlen(min_idle);
            for (size_t i = 0; i < n_ids; i++) {
                cargv[5 + i] = ids[i];
                clens[5 + i] = strlen(ids[i]);
            }
            redisReply *cr = command(c, (int)(n_ids + 5), cargv, clens);
            free(cargv);
            free(clens);
            if (!cr) {
                rc = -1;
                goto out;
            }
            size_t n_gone = 0, claimed = 0;
            if (cr->type == REDIS_REPLY_ARRAY) {
                pthread_mutex_lock(&p->mu);
                for (size_t i = 0; i < cr->elements; i++) {
                    int k = take_entry(p, t, cr->element[i], gone[n_gone]);
                    if (k > 0) claimed++;
                    else if (k < 0 && n_gone < p->queue_depth) n_gone++;
                }
                size_t now_room = topic_room(p, t);
                pthread_mutex_unlock(&p->mu);
                *room = now_room;
                if (claimed)
                    p->api->log(p->host, DAPR_LOG_DEBUG,
                                "redelivering %zu pending entries of stream %.200s", claimed,
                                t->name);
            } else if (cr->type == REDIS_REPLY_ERROR) {
                p->api->log(p->host, DAPR_LOG_DEBUG, "XCLAIM on stream %.200s: %s", t->name,
                            cr->str);
            }
            freeReplyObject(cr);
            if (ack_ids(p, t, c, gone, n_gone) != 0) {
                rc = -1;
                goto out;
            }
        }
        if (!more) break;
    }
out:
    free(ids);
    free(gone);
    return rc;
}

/*
 * One XREADGROUP for up to room new entries, blocking up to block_ms.
 * Returns 0, -1 when the connection failed, 1 after an error reply
 * (logged; the caller backs off).
 */
static int read_new(psr *p, topic *t, redisContext *c, size_t room, long long block_ms)
{
    char cnt[32], blk[32];
    snprintf(cnt, sizeof cnt, "%zu", room);
    snprintf(blk, sizeof blk, "%lld", block_ms);
    size_t glen = strlen(p->group);
    const char *argv[10] = {"XREADGROUP", "GROUP", p->group, p->group, "COUNT", cnt,
                            "BLOCK", blk, "STREAMS", t->name};
    size_t lens[11] = {10, 5, glen, glen, 5, strlen(cnt), 5, strlen(blk), 7, t->name_len};
    const char *av[11];
    memcpy(av, argv, sizeof argv);
    av[10] = ">";
    lens[10] = 1;

    /* The socket must wait longer than the server blocks. */
    redisSetTimeout(c, ms_to_tv(p->io_ms ? block_ms + p->io_ms : 0));
    redisReply *r = command(c, 11, av, lens);
    redisSetTimeout(c, ms_to_tv(p->io_ms));
    if (!r) return -1;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        if (is_error(r, "NOGROUP")) {
            /* The server lost the group (restart without persistence, or
             * someone deleted it): create it again, as Dapr does. */
            op_status st;
            p->api->log(p->host, DAPR_LOG_WARN,
                        "consumer group %s does not exist for stream %.200s (data loss on the "
                        "server, or deleted): creating it again", p->group, t->name);
            int g = group_create(p, c, t->name, t->name_len, &st);
            if (g < 0) rc = -1;
            else if (g > 0) {
                p->api->log(p->host, DAPR_LOG_ERROR, "%s", st.msg);
                rc = 1;
            }
        } else {
            p->api->log(p->host, DAPR_LOG_ERROR, "redis streams: error reading from stream %.200s: %s",
                        t->name, r->str);
            rc = 1;
        }
    } else if (r->type == REDIS_REPLY_ARRAY) {
        char gone[ID_LEN];
        pthread_mutex_lock(&p->mu);
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *s = r->element[i];
            if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 ||
                s->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            for (size_t k = 0; k < s->element[1]->elements; k++)
                take_entry(p, t, s->element[1]->element[k], gone);
        }
        pthread_mutex_unlock(&p->mu);
    }
    freeReplyObject(r);
    return rc;
}

static int64_t next_backoff(int64_t b)
{
    if (b <= 0) return BACKOFF_FIRST_MS;
    return b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2;
}

static int redelivery_on(const psr *p)
{
    return p->processing_ms > 0 && p->redeliver_ms > 0;
}

static void *reader_main(void *arg)
{
    topic *t = arg;
    psr *p = t->p;
    redisContext *c = NULL;
    int64_t backoff = 0;
    int outage = 0;
    int64_t next_reclaim = now_ms(); /* a first reclaim at start, as Dapr */
    op_status st;

    pthread_mutex_lock(&p->mu);
    while (!t->stop) {
        if (backoff > 0) {
            timed_wait(&t->cv, &p->mu, backoff);
            if (t->stop) break;
        }
        if (!c) {
            pthread_mutex_unlock(&p->mu);
            c = conn_open(p, p->io_ms, &st);
            int g = c ? group_create(p, c, t->name, t->name_len, &st) : -1;
            if (c && g != 0) {
                redisFree(c);
                c = NULL;
            }
            pthread_mutex_lock(&p->mu);
            if (!c) {
                if (!outage && !t->stop)
                    p->api->log(p->host, DAPR_LOG_WARN, "reading stream %.200s: %s; reconnecting",
                                t->name, st.msg);
                outage = 1;
                backoff = next_backoff(backoff);
                continue;
            }
            if (t->stop) break;
            t->fd = c->fd;
            if (outage)
                p->api->log(p->host, DAPR_LOG_INFO, "reading stream %.200s again: reconnected to %s",
                            t->name, p->addr);
            outage = 0;
            backoff = 0;
            next_reclaim = now_ms();
        }

        size_t room = topic_room(p, t);
        int64_t now = now_ms();
        int reclaim_due = redelivery_on(p) && now >= next_reclaim;
        if (room == 0 && !reclaim_due) {
            /* Full: wait for the delivery side to free room. */
            if (redelivery_on(p)) timed_wait(&t->cv, &p->mu, next_reclaim - now);
            else timed_wait(&t->cv, &p->mu, 1000);
            continue;
        }
        pthread_mutex_unlock(&p->mu);

        int rc = 0;
        if (reclaim_due) {
            rc = reclaim(p, t, c, &room);
            next_reclaim = now_ms() + p->redeliver_ms;
        }
        if (rc == 0 && room > 0) {
            long long block = p->block_ms;
            if (redelivery_on(p)) {
                long long until = next_reclaim - now_ms();
                if (until < block) block = until;
            }
            if (block < 1) block = 1;
            rc = read_new(p, t, c, room, block);
        }

        pthread_mutex_lock(&p->mu);
        if (rc < 0) {
            t->fd = -1;
            if (!t->stop) {
                conn_error(p, c, errno, &st);
                p->api->log(p->host, DAPR_LOG_WARN, "reading stream %.200s: %s; reconnecting",
                            t->name, st.msg);
                outage = 1;
            }
            pthread_mutex_unlock(&p->mu);
            redisFree(c);
            c = NULL;
            pthread_mutex_lock(&p->mu);
            backoff = t->stop ? 0 : next_backoff(0);
        } else if (rc > 0) {
            backoff = next_backoff(backoff);
        } else {
            backoff = 0;
        }
    }
    t->fd = -1;
    pthread_mutex_unlock(&p->mu);
    if (c) redisFree(c);
    return NULL;
}

/* Ask a topic's reader to stop (under p->mu); the caller joins it. */
static void reader_interrupt(topic *t)
{
    t->stop = 1;
    /* Wake a blocked XREADGROUP at once; the reader closes the socket
     * itself (it clears fd under the mutex before redisFree). */
    if (t->fd >= 0) shutdown(t->fd, SHUT_RDWR);
    pthread_cond_broadcast(&t->cv);
}

/* Start the reader of t (under p->mu).  Returns 0 or -1. */
static int reader_start(topic *t)
{
    t->stop = 0;
    t->fd = -1;
    if (pthread_create(&t->thread, NULL, reader_main, t) != 0) return -1;
    t->state = READER_RUNNING;
    return 0;
}

/* Stop t's reader when it has no subscription left.  Called and returns
 * with p->mu held; drops it while joining. */
static void reader_stop_if_unused(psr *p, topic *t)
{
    while (t->n_subs == 0 && t->state == READER_RUNNING) {
        t->state = READER_STOPPING;
        reader_interrupt(t);
        pthread_mutex_unlock(&p->mu);
        pthread_join(t->thread, NULL);
        pthread_mutex_lock(&p->mu);
        t->state = READER_IDLE;
        pthread_cond_broadcast(&t->state_cv);
        /* A subscribe came while we were stopping: start again. */
        if (t->n_subs > 0 && reader_start(t) != 0)
            p->api->log(p->host, DAPR_LOG_ERROR, "cannot start the reader of stream %.200s",
                        t->name);
    }
}

/* ------------------------------------------------------------------ */
/* The acker                                                            */
/* ------------------------------------------------------------------ */

/* Queue XACKs for a batch in c's output buffer, one command per topic
 * (under p->mu: it walks the topic list; no I/O happens here).  Returns
 * the number of commands, or -1. */
static int ack_append(psr *p, redisContext *c, record *batch)
{
    int n_cmds = 0;
    size_t glen = strlen(p->group);
    for (topic *t = p->topics; t; t = t->next) {
        size_t n = 0;
        for (record *r = batch; r; r = r->ack_next)
            if (r->t == t) n++;
        if (n == 0) continue;
        const char **argv = calloc(n + 3, sizeof *argv);
        size_t *lens = calloc(n + 3, sizeof *lens);
        if (!argv || !lens) {
            free(argv);
            free(lens);
            return -1;
        }
        argv[0] = "XACK", lens[0] = 4;
        argv[1] = t->name, lens[1] = t->name_len;
        argv[2] = p->group, lens[2] = glen;
        size_t k = 3;
        for (record *r = batch; r; r = r->ack_next) {
            if (r->t != t) continue;
            argv[k] = r->id;
            lens[k++] = strlen(r->id);
        }
        int rc = redisAppendCommandArgv(c, (int)k, argv, lens);
        free(argv);
        free(lens);
        if (rc != REDIS_OK) return -1;
        n_cmds++;
    }
    return n_cmds;
}

/* Send what ack_append queued and read the replies (no lock held).
 * Returns 0, or -1 when the connection failed (nothing is known to be
 * acked; XACK is idempotent, so sending again is harmless). */
static int ack_flush(psr *p, redisContext *c, int n_cmds)
{
    for (int i = 0; i < n_cmds; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK || !r) return -1;
        redisReply *rep = r;
        /* An error (NOGROUP after data loss) cannot be helped by trying
         * again: the entry is not pending any more. */
        if (rep->type == REDIS_REPLY_ERROR)
            p->api->log(p->host, DAPR_LOG_DEBUG, "XACK: %s", rep->str);
        freeReplyObject(rep);
    }
    return 0;
}

static void *acker_main(void *arg)
{
    psr *p = arg;
    redisContext *c = NULL;
    int64_t backoff = 0;
    int outage = 0;
    op_status st = {DAPR_OK, ""};

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->ack_head && !p->ack_stop) pthread_cond_wait(&p->ack_cv, &p->mu);
        if (!p->ack_head) break;
        if (p->ack_stop && outage) break; /* closing while Redis is down */
        int rc = -1;
        record *batch = NULL, *last = NULL;
        if (!c) {
            pthread_mutex_unlock(&p->mu);
            c = conn_open(p, p->io_ms, &st);
            pthread_mutex_lock(&p->mu);
        }
        if (c) {
            /* Detach a batch. */
            batch = last = p->ack_head;
            size_t n = 1;
            while (last->ack_next && n < ACK_BATCH) last = last->ack_next, n++;
            p->ack_head = last->ack_next;
            if (!p->ack_head) p->ack_tail = NULL;
            last->ack_next = NULL;
            int n_cmds = ack_append(p, c, batch);
            pthread_mutex_unlock(&p->mu);
            rc = n_cmds < 0 ? -1 : ack_flush(p, c, n_cmds);
            if (rc != 0) conn_error(p, c, errno, &st);
            pthread_mutex_lock(&p->mu);
        }
        if (rc == 0) {
            for (record *r = batch, *next; r; r = next) {
                next = r->ack_next;
                r->ack_next = NULL;
                r->state = REC_GONE;
                rec_tidy(r);
            }
            if (outage)
                p->api->log(p->host, DAPR_LOG_INFO, "acknowledging again: reconnected to %s",
                            p->addr);
            outage = 0;
            backoff = 0;
            continue;
        }
        if (batch) {
            /* Put the batch back in front and retry after a pause. */
            last->ack_next = p->ack_head;
            p->ack_head = batch;
            if (!p->ack_tail) p->ack_tail = last;
        }
        if (c) {
            pthread_mutex_unlock(&p->mu);
            redisFree(c);
            pthread_mutex_lock(&p->mu);
            c = NULL;
        }
        if (!outage)
            p->api->log(p->host, DAPR_LOG_WARN,
                        "acknowledging entries: %s; the acks wait for the reconnect", st.msg);
        outage = 1;
        if (p->ack_stop) break;
        backoff = next_backoff(backoff);
        timed_wait(&p->ack_cv, &p->mu, backoff);
    }
    pthread_mutex_unlock(&p->mu);
    if (c) redisFree(c);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Delivery                                                             */
/* ------------------------------------------------------------------ */

static void sub_maybe_free(psr *p, sub *s)
{
    if (s->active || s->in_flight || p->delivering == s || s->unsub_waiting) return;
    for (sub **pp = &p->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (p->rr == s) p->rr = NULL;
    free(s);
}

/* A queued delivery leaves the queue state (under p->mu). */
static void dequeued(psr *p, record *r)
{
    r->n_queued--;
    if (r->n_queued == 0) {
        r->t->n_queued_recs--;
        pthread_cond_signal(&r->t->cv); /* room for the reader */
    }
    (void)p;
}

static delivery *sub_take(sub *s)
{
    if (!s->active || s->in_flight >= s->max_in_flight) return NULL;
    delivery *d = s->qhead;
    if (d) {
        s->qhead = d->next;
        if (!s->qhead) s->qtail = NULL;
        d->next = NULL;
    }
    return d;
}

static void ack_message(void *ack_ctx, dapr_pubsub_ack verdict);

static void *deliver_main(void *arg)
{
    psr *p = arg;

    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        delivery *d = NULL;
        sub *start = p->rr && p->rr->next ? p->rr->next : p->subs;
        sub *s = start;
        /* Round robin, starting after the subscription served last. */
        while (s) {
            if ((d = sub_take(s)) != NULL) break;
            s = s->next ? s->next : p->subs;
            if (s == start) break;
        }
        if (!d) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        record *r = d->r;
        p->rr = s;
        dequeued(p, r);
        d->in_flight = 1;
        s->in_flight++;
        r->refs++;
        p->delivering = s;
        dapr_pubsub_message msg = {
            .topic = r->t->name,
            .data = {r->data, r->len},
            .content_type = r->content_type,
            .metadata = {r->meta, r->n_meta},
        };
        /* The handler may ack inline: never hold the mutex across it. */
        pthread_mutex_unlock(&p->mu);
        s->handler(s->handler_ctx, &msg, ack_message, d);
        pthread_mutex_lock(&p->mu);
        r->refs--;
        rec_tidy(r);
        p->delivering = NULL;
        pthread_cond_broadcast(&p->idle);
        sub_maybe_free(p, s);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* The host's verdict: exactly once per delivery, from any thread,
 * possibly after unsubscribe.  Never blocks on I/O. */
static void ack_message(void *ack_ctx, dapr_pubsub_ack verdict)
{
    delivery *d = ack_ctx;
    sub *s = d->s;
    record *r = d->r;
    psr *p = s->p;

    pthread_mutex_lock(&p->mu);
    if (verdict != DAPR_PUBSUB_ACK_SUCCESS && verdict != DAPR_PUBSUB_ACK_DROP &&
        verdict != DAPR_PUBSUB_ACK_RETRY) {
        p->api->log(p->host, DAPR_LOG_WARN, "unknown ack verdict %d for entry %s: retrying",
                    (int)verdict, r->id);
        verdict = DAPR_PUBSUB_ACK_RETRY;
    }
    s->in_flight--;
    r->n_open--;
    if (verdict == DAPR_PUBSUB_ACK_RETRY) r->retry = 1;
    else rec_mark_done(r, s->id);
    free(d);
    rec_settle(p, r);
    pthread_cond_signal(&p->cv); /* a handler slot is free */
    sub_maybe_free(p, s);
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------------ */
/* Subscribe and unsubscribe                                            */
/* ------------------------------------------------------------------ */

static topic *topic_get(psr *p, const char *name)
{
    for (topic *t = p->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0) return t;
    topic *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    t->p = p;
    t->name_len = strlen(name);
    t->fd = -1;
    t->state = READER_IDLE;
    cond_init_mono(&t->cv);
    pthread_cond_init(&t->state_cv, NULL);
    t->next = p->topics;
    p->topics = t;
    return t;
}

static void ps_subscribe(void *inst, const dapr_pubsub_subscribe_req *req, uint64_t *sub_id,
                         dapr_result_cb cb, void *ctx)
{
    psr *p = inst;
    op_status st = {DAPR_OK, ""};

    if (!req->topic || !*req->topic) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "topic is empty");
        return;
    }
    if (!req->handler) {
        complete(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "no handler");
        return;
    }
    /* The group first, so that every entry added after we complete is
     * read (and, from "0", the ones before it too, as Dapr). */
    const char *argv[6] = {"XGROUP", "CREATE", req->topic, p->group, "0", "MKSTREAM"};
    redisReply *r = pool_run(p, 6, argv, NULL, &st);
    if (r && r->type == REDIS_REPLY_ERROR && !is_error(r, "BUSYGROUP"))
        fail(&st, reply_error_status(r->str),
             "redis streams: cannot create consumer group %s on stream %.200s: %s", p->group,
             req->topic, r->str);
    if (r) freeReplyObject(r);
    if (st.status != DAPR_OK) {
        complete(cb, ctx, st.status, st.msg);
        return;
    }

    sub *s = calloc(1, sizeof *s);
    if (!s) {
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    s->p = p;
    s->handler = req->handler;
    s->handler_ctx = req->handler_ctx;
    s->max_in_flight = req->max_in_flight ? req->max_in_flight : p->concurrency;
    if (s->max_in_flight > p->concurrency) s->max_in_flight = p->concurrency;
    s->active = 1;

    pthread_mutex_lock(&p->mu);
    topic *t = topic_get(p, req->topic);
    if (!t) {
        pthread_mutex_unlock(&p->mu);
        free(s);
        complete(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    s->t = t;
    s->id = ++p->next_sub_id;
    s->next = p->subs;
    p->subs = s;
    t->n_subs++;
    /* A reader being stopped restarts itself when it sees n_subs > 0. */
    if (t->state == READER_IDLE && reader_start(t) != 0) {
        t->n_subs--;
        s->active = 0;
        sub_maybe_free(p, s);
        pthread_mutex_unlock(&p->mu);
        complete(cb, ctx, DAPR_ERR_INTERNAL, "cannot start a reader thread");
        return;
    }
    *sub_id = s->id;
    pthread_mutex_unlock(&p->mu);
    p->api->log(p->host, DAPR_LOG_DEBUG, "subscribed to stream %.200s (group %s, max in flight %u)",
                req->topic, p->group, s->max_in_flight);
    complete(cb, ctx, DAPR_OK, NULL);
}

static void ps_unsubscribe(void *inst, uint64_t sub_id, dapr_result_cb cb, void *ctx)
{
    psr *p = inst;
    sub *s;

    pthread_mutex_lock(&p->mu);
    for (s = p->subs; s; s = s->next)
        if (s->id == sub_id && s->active) break;
    if (!s) {
        pthread_mutex_unlock(&p->mu);
        complete(cb, ctx, DAPR_ERR_NOT_FOUND, "no such subscription");
        return;
    }
    s->active = 0;
    topic *t = s->t;
    t->n_subs--;
    /* What it had not received yet stays pending in Redis (redelivered
     * after processingTimeout, to whoever reads the group then). */
    while (s->qhead) {
        delivery *d = s->qhead;
        s->qhead = d->next;
        record *r = d->r;
        dequeued(p, r);
        r->n_open--;
        r->retry = 1;
        free(d);
        rec_settle(p, r);
    }
    s->qtail = NULL;
    /* No handler call for it may be running when we complete (unless
     * the handler itself unsubscribes). */
    s->unsub_waiting = 1;
    while (p->delivering == s && !pthread_equal(pthread_self(), p->deliver_thread))
        pthread_cond_wait(&p->idle, &p->mu);
    s->unsub_waiting = 0;
    sub_maybe_free(p, s);
    if (!pthread_equal(pthread_self(), p->deliver_thread)) reader_stop_if_unused(p, t);
    pthread_mutex_unlock(&p->mu);
    complete(cb, ctx, DAPR_OK, NULL);
}

/* ------------------------------------------------------------------ */
/* Init and close                                                       */
/* ------------------------------------------------------------------ */

static void psr_free(psr *p)
{
    for (int i = 0; p->conns && i < p->pool_size; i++)
        if (p->conns[i].ctx) redisFree(p->conns[i].ctx);
    free(p->conns);
    free(p->free_idx);
    while (p->topics) {
        topic *t = p->topics;
        p->topics = t->next;
        while (t->head) {
            t->head->refs = 0;
            rec_unlink_free(t->head);
        }
        pthread_cond_destroy(&t->cv);
        pthread_cond_destroy(&t->state_cv);
        free(t->name);
        free(t);
    }
    while (p->subs) {
        sub *s = p->subs;
        p->subs = s->next;
        while (s->qhead) {
            delivery *d = s->qhead;
            s->qhead = d->next;
            free(d);
        }
        free(s);
    }
    free(p->group);
    pthread_cond_destroy(&p->pool_cv);
    pthread_mutex_destroy(&p->pool_mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->ack_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static const char *meta(psr *p, const char *name)
{
    const char *v = p->api->metadata_get(p->host, name);
    return v && v[0] ? v : NULL;
}

/* "host:port", "host" (port 6379 or redisPort) or "[v6addr]:port". */
static int parse_host(psr *p, const char *v, char *errbuf, size_t errlen)
{
    const char *hs = v, *he, *colon;
    if (*v == '[') {
        hs = v + 1;
        he = strchr(hs, ']');
        colon = he && he[1] == ':' ? he + 1 : NULL;
        if (!he || (he[1] != '\0' && !colon)) goto bad;
    } else {
        colon = strrchr(v, ':');
        he = colon ? colon : v + strlen(v);
    }
    if (he == hs || (size_t)(he - hs) >= sizeof p->hostname) goto bad;
    memcpy(p->hostname, hs, (size_t)(he - hs));
    p->hostname[he - hs] = '\0';
    p->port = DEFAULT_PORT;
    long long port;
    const char *rp = meta(p, "redisPort");
    if (rp && (parse_ll(rp, &port) != 0 || port < 1 || port > 65535)) {
        snprintf(errbuf, errlen, "redis streams: invalid redisPort '%.32s'", rp);
        return -1;
    }
    if (colon) {
        if (parse_ll(colon + 1, &port) != 0 || port < 1 || port > 65535) goto bad;
        p->port = (int)port;
    } else if (rp) {
        p->port = (int)port;
    }
    snprintf(p->addr, sizeof p->addr, "%s:%d", p->hostname, p->port);
    if (*v == '[') snprintf(p->addr, sizeof p->addr, "[%s]:%d", p->hostname, p->port);
    return 0;
bad:
    snprintf(errbuf, errlen, "redis streams: invalid redisHost '%.200s' (want host:port)", v);
    return -1;
}

/* A duration setting; def when absent. */
static int meta_ms(psr *p, const char *name, long long def, long long *ms, char *errbuf,
                   size_t errlen)
{
    const char *v = meta(p, name);
    *ms = def;
    if (v == NULL) return 0;
    if (parse_duration_ms(v, ms) != 0) {
        snprintf(errbuf, errlen, "redis streams: can't parse %s field: '%.64s' is not a duration",
                 name, v);
        return -1;
    }
    return 0;
}

static int meta_flag(psr *p, const char *name, int *out, char *errbuf, size_t errlen)
{
    const char *v = meta(p, name);
    *out = v ? parse_bool(v) : 0;
    if (*out < 0) {
        snprintf(errbuf, errlen, "redis streams: invalid value for '%s': '%.64s' is not a boolean",
                 name, v);
        return -1;
    }
    return 0;
}

static int meta_uint(psr *p, const char *name, long long def, long long max, long long *out,
                     char *errbuf, size_t errlen)
{
    const char *v = meta(p, name);
    *out = def;
    if (v == NULL) return 0;
    if (parse_ll(v, out) != 0 || *out < 0 || *out > max) {
        snprintf(errbuf, errlen, "redis streams: can't parse %s field: '%.32s' (0..%lld)", name, v,
                 max);
        return -1;
    }
    return 0;
}

static dapr_status ps_init(dapr_host *host, const dapr_host_api *api, void **instance,
                           char *errbuf, size_t errlen)
{
    psr *p = calloc(1, sizeof *p);
    dapr_status ret = DAPR_ERR_INVALID_ARGUMENT;
    long long v;
    int flag;

    if (!p) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    p->host = host;
    p->api = api;
    pthread_mutex_init(&p->pool_mu, NULL);
    pthread_cond_init(&p->pool_cv, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->idle, NULL);
    cond_init_mono(&p->ack_cv);

    const char *h = meta(p, "redisHost");
    if (h == NULL) {
        snprintf(errbuf, errlen, "redis streams: missing redisHost");
        goto err;
    }
    if (parse_host(p, h, errbuf, errlen) != 0) goto err;
    p->username = meta(p, "redisUsername");
    p->password = meta(p, "redisPassword");

    if (meta_flag(p, "enableTLS", &flag, errbuf, errlen) != 0) goto err;
    if (flag) {
        snprintf(errbuf, errlen, "redis streams: enableTLS is not supported: this build uses "
                 "hiredis %d.%d, which has no TLS", HIREDIS_MAJOR, HIREDIS_MINOR);
        ret = DAPR_ERR_NOT_SUPPORTED;
        goto err;
    }
    if (meta(p, "clientCert") || meta(p, "clientKey")) {
        snprintf(errbuf, errlen, "redis streams: clientCert/clientKey need TLS, which hiredis "
                 "%d.%d lacks", HIREDIS_MAJOR, HIREDIS_MINOR);
        ret = DAPR_ERR_NOT_SUPPORTED;
        goto err;
    }
    if (meta_flag(p, "failover", &flag, errbuf, errlen) != 0) goto err;
    if (flag) {
        snprintf(errbuf, errlen, "redis streams: failover (Redis Sentinel) is not supported");
        ret = DAPR_ERR_NOT_SUPPORTED;
        goto err;
    }
    if (meta_flag(p, "useEntraID", &flag, errbuf, errlen) != 0) goto err;
    if (flag) {
        snprintf(errbuf, errlen, "redis streams: useEntraID is not supported (it needs TLS)");
        ret = DAPR_ERR_NOT_SUPPORTED;
        goto err;
    }
    const char *type = meta(p, "redisType");
    if (type && strcasecmp(type, "node") != 0) {
        snprintf(errbuf, errlen, "redis streams: redisType '%.32s' is not supported (only node)",
                 type);
        ret = DAPR_ERR_NOT_SUPPORTED;
        goto err;
    }
    if (meta_uint(p, "redisDB", 0, 0x7fffffff, &v, errbuf, errlen) != 0) goto err;
    p->db = (long)v;

    /* redisMaxRetries as go-redis: 0 means the default (3), -1 none. */
    const char *mr = meta(p, "redisMaxRetries");
    if (mr == NULL) mr = meta(p, "maxRetries");
    p->max_retries = 3;
    if (mr) {
        if (parse_ll(mr, &v) != 0 || v < -1 || v > 100) {
            snprintf(errbuf, errlen, "redis streams: invalid redisMaxRetries '%.32s' (-1..100)", mr);
            goto err;
        }
        p->max_retries = v < 0 ? 0 : v == 0 ? 3 : (int)v;
    }
    long long dial, rd, wr;
    if (meta_ms(p, "redisMinRetryInterval", 8, &p->min_retry_ms, errbuf, errlen) != 0 ||
        meta_ms(p, "redisMaxRetryInterval", 512, &p->max_retry_ms, errbuf, errlen) != 0 ||
        meta_ms(p, "dialTimeout", 5000, &dial, errbuf, errlen) != 0 ||
        meta_ms(p, "readTimeout", 3000, &rd, errbuf, errlen) != 0 ||
        meta_ms(p, "writeTimeout", rd, &wr, errbuf, errlen) != 0)
        goto err;
    if (p->min_retry_ms < 0) p->min_retry_ms = 0; /* -1: no backoff */
    if (p->max_retry_ms < p->min_retry_ms) p->max_retry_ms = p->min_retry_ms;
    if (dial <= 0) dial = 5000;
    if (rd == 0) rd = 3000; /* go-redis: 0 means the default */
    if (wr == 0) wr = rd;
    /* One socket timeout for both directions: the larger; -1 = none. */
    p->io_ms = (long)(rd < 0 || wr < 0 ? 0 : rd > wr ? rd : wr);
    p->dial_tv = ms_to_tv(dial);
    /* XREADGROUP blocks for readTimeout, as in Dapr (3 s without one). */
    p->block_ms = rd > 0 ? rd : 3000;

    const char *cid = meta(p, "consumerID");
    if (cid == NULL) cid = api->app_id ? api->app_id(host) : NULL;
    if (cid == NULL || cid[0] == '\0') {
        snprintf(errbuf, errlen, "redis streams error: missing consumerID (and no app id to "
                 "default to)");
        goto err;
    }
    if (!(p->group = strdup(cid))) {
        snprintf(errbuf, errlen, "out of memory");
        ret = DAPR_ERR_INTERNAL;
        goto err;
    }
    if (meta_ms(p, "processingTimeout", 60000, &p->processing_ms, errbuf, errlen) != 0 ||
        meta_ms(p, "redeliverInterval", 15000, &p->redeliver_ms, errbuf, errlen) != 0 ||
        meta_ms(p, "streamTTL", 0, &p->stream_ttl_ms, errbuf, errlen) != 0)
        goto err;
    if (p->processing_ms < 0 || p->redeliver_ms < 0 || p->stream_ttl_ms < 0) {
        snprintf(errbuf, errlen, "redis streams: processingTimeout, redeliverInterval and "
                 "streamTTL may not be negative");
        goto err;
    }
    if (meta_uint(p, "queueDepth", 100, 1000000, &v, errbuf, errlen) != 0) goto err;
    p->queue_depth = v > 0 ? (uint32_t)v : 100;
    if (meta_uint(p, "concurrency", 10, 100000, &v, errbuf, errlen) != 0) goto err;
    p->concurrency = v > 0 ? (uint32_t)v : 10;
    const char *ml = meta(p, "maxLenApprox");
    if (ml && (parse_ll(ml, &p->maxlen) != 0 || p->maxlen < 0)) {
        snprintf(errbuf, errlen, "redis streams error: invalid maxLenApprox %.32s", ml);
        goto err;
    }
    if (meta_uint(p, "poolSize", 8, 1024, &v, errbuf, errlen) != 0) goto err;
    p->pool_size = v > 0 ? (int)v : 8;

    p->conns = calloc((size_t)p->pool_size, sizeof *p->conns);
    p->free_idx = calloc((size_t)p->pool_size, sizeof *p->free_idx);
    if (!p->conns || !p->free_idx) {
        snprintf(errbuf, errlen, "out of memory");
        ret = DAPR_ERR_INTERNAL;
        goto err;
    }
    for (int i = 0; i < p->pool_size; i++) p->free_idx[p->n_free++] = p->pool_size - 1 - i;

    /* Connect once now: a wrong host or password fails init clearly. */
    op_status st = {DAPR_OK, ""};
    int fresh;
    rconn *c = pool_take(p, &fresh, &st);
    if (c == NULL) {
        snprintf(errbuf, errlen, "%s", st.msg);
        ret = st.status;
        goto err;
    }
    pool_give(p, c);

    if (pthread_create(&p->deliver_thread, NULL, deliver_main, p) != 0) {
        snprintf(errbuf, errlen, "cannot start the delivery thread");
        ret = DAPR_ERR_INTERNAL;
        goto err;
    }
    p->deliver_started = 1;
    if (pthread_create(&p->ack_thread, NULL, acker_main, p) != 0) {
        snprintf(errbuf, errlen, "cannot start the acknowledging thread");
        ret = DAPR_ERR_INTERNAL;
        goto err;
    }
    p->ack_started = 1;

    api->log(host, DAPR_LOG_INFO,
             "connected to redis at %s (db %ld, consumer group %s, processingTimeout %lld ms, "
             "redeliverInterval %lld ms, queueDepth %u, concurrency %u)",
             p->addr, p->db, p->group, p->processing_ms, p->redeliver_ms, p->queue_depth,
             p->concurrency);
    *instance = p;
    return DAPR_OK;

err:
    if (p->deliver_started) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->deliver_thread, NULL);
    }
    psr_free(p);
    return ret;
}

static void ps_close(void *inst)
{
    psr *p = inst;
    if (!p) return;

    /* Readers first: nothing new comes in. */
    pthread_mutex_lock(&p->mu);
    for (topic *t = p->topics; t; t = t->next) {
        while (t->state == READER_STOPPING) pthread_cond_wait(&t->state_cv, &p->mu);
        if (t->state == READER_RUNNING) reader_interrupt(t);
    }
    pthread_mutex_unlock(&p->mu);
    for (topic *t = p->topics; t; t = t->next) {
        if (t->state == READER_RUNNING) {
            pthread_join(t->thread, NULL);
            t->state = READER_IDLE;
        }
    }
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    p->ack_stop = 1;
    pthread_cond_signal(&p->ack_cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->deliver_thread, NULL);
    /* The acker sends what is queued unless Redis is down; what it
     * cannot send stays pending in Redis and is redelivered later. */
    pthread_join(p->ack_thread, NULL);
    psr_free(p);
}

/* ------------------------------------------------------------------ */
/* Descriptor                                                           */
/* ------------------------------------------------------------------ */

static const dapr_metadata_field schema[] = {
    {"redisHost", DAPR_META_STRING, DAPR_META_REQUIRED, NULL, "Redis server as host:port"},
    {"redisPort", DAPR_META_INT, 0, NULL, "port, when redisHost has none (default 6379)"},
    {"redisPassword", DAPR_META_STRING, DAPR_META_SECRET, NULL, "password (AUTH); empty: none"},
    {"redisUsername", DAPR_META_STRING, 0, NULL, "ACL user for AUTH (Redis 6 and later)"},
    {"redisDB", DAPR_META_INT, 0, "0", "database number to SELECT"},
    {"consumerID", DAPR_META_STRING, 0, NULL,
     "consumer group (and consumer name); default: the app id"},
    {"processingTimeout", DAPR_META_STRING, 0, "60s",
     "how long an entry stays pending before it is claimed again (integer: ms; 0: never)"},
    {"redeliverInterval", DAPR_META_STRING, 0, "15s",
     "how often pending entries are checked (integer: ms; 0: never)"},
    {"queueDepth", DAPR_META_INT, 0, "100",
     "entries read per XREADGROUP and held per topic waiting for a handler slot"},
    {"concurrency", DAPR_META_INT, 0, "10", "most unacked messages at the app per subscription"},
    {"maxLenApprox", DAPR_META_INT, 0, NULL, "trim each stream to about this length (MAXLEN ~)"},
    {"streamTTL", DAPR_META_STRING, 0, NULL,
     "trim entries older than this on publish (MINID ~), when maxLenApprox is not set"},
    {"enableTLS", DAPR_META_BOOL, 0, "false", "TLS to Redis: not supported (hiredis 0.14)"},
    {"redisMaxRetries", DAPR_META_INT, 0, "3",
     "publish retries on a new connection after a broken one; -1: none"},
    {"redisMinRetryInterval", DAPR_META_STRING, 0, "8ms", "first backoff between retries"},
    {"redisMaxRetryInterval", DAPR_META_STRING, 0, "512ms", "largest backoff between retries"},
    {"dialTimeout", DAPR_META_STRING, 0, "5s", "connect timeout"},
    {"readTimeout", DAPR_META_STRING, 0, "3s",
     "per-command timeout, also the XREADGROUP block time (-1: no timeout)"},
    {"writeTimeout", DAPR_META_STRING, 0, NULL, "socket write timeout (default readTimeout)"},
    {"poolSize", DAPR_META_INT, 0, "8", "connections used for publishing"},
    {"redisType", DAPR_META_STRING, 0, "node", "only node is supported"},
    {"failover", DAPR_META_BOOL, 0, "false", "Redis Sentinel: not supported"},
};

static const dapr_pubsub_vtable vtable = {
    .size = sizeof(dapr_pubsub_vtable),
    .publish = ps_publish,
    .bulk_publish = NULL, /* the host publishes entry by entry */
    .subscribe = ps_subscribe,
    .unsubscribe = ps_unsubscribe,
};

static const dapr_component_def redis_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_PUBSUB,
    .type = "pubsub.redis",
    .version = "v1",
    .features = 0,
    .flags = 0, /* publish and subscribe block on Redis: the host's workers call them */
    .metadata_schema = schema,
    .n_metadata_schema = sizeof schema / sizeof schema[0],
    .init = ps_init,
    .close = ps_close,
    .vtable = &vtable,
};

static const dapr_component_def *const components[] = {&redis_component};

static const dapr_plugin_descriptor descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "pubsub-redis",
    .version = "1.0.0",
    .description = "Dapr pub/sub on Redis Streams with consumer groups (hiredis)",
    .components = components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &descriptor;
}
