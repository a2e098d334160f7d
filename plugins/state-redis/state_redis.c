/*
 * state_redis.c - the "state.redis" state store: Dapr state on a Redis
 * server, through hiredis.
 *
 * Data layout, identical to Dapr's own state.redis (components-contrib,
 * state/redis) so that real Dapr and this sidecar can share a database:
 *
 *  - every state item is one Redis hash under the key as the host gives
 *    it ("appid||key");
 *  - field "data" holds the value bytes, unchanged;
 *  - field "version" holds the version as a decimal string, 1 after the
 *    first write, +1 after every write; the etag IS that string;
 *  - field "first-write" is set to 0 by a write made with first-write
 *    concurrency, as Dapr's script does (Dapr refuses later etag-less
 *    writes to such a key; we apply the state contract instead, see
 *    WRITE_SCRIPT);
 *  - a TTL is the key's own Redis expiry (EXPIRE / PERSIST);
 *  - a plain string key (written by a very old Dapr) reads back as its
 *    value without an etag, like Dapr's fallback to GET.
 *
 * Every write goes through one Lua script (WRITE_SCRIPT), called with one
 * operation for set and delete and with all of them for a transaction.  It
 * first checks every etag and first-write condition, then applies every
 * operation, so a transaction is all-or-nothing including its etag checks
 * (a Lua script runs atomically in Redis).  Reads go through GET_SCRIPT,
 * which returns value, version and remaining TTL in one round trip;
 * bulk_get pipelines one call per key.  Scripts are loaded with SCRIPT
 * LOAD on every new connection and called with EVALSHA.
 *
 * Threading: the host calls us on several worker threads at once.  A
 * hiredis context is not thread-safe, so we keep a small pool of
 * connections; an operation takes one, uses it alone and gives it back.
 * Operations that find none idle wait in arrival order (pool_give).
 * Connections are opened lazily.  A connection that fails (EOF, I/O error,
 * timeout) is closed and every idle connection opened before the failure
 * is dropped too (they most likely point at the same dead server), so the
 * next operation reconnects.  An operation that failed on a connection
 * opened before it started is retried (redisMaxRetries) on a new one:
 * that is what makes the first operation after a server restart succeed.
 * A failed connect is never retried, so operations fail at once while the
 * server is down.  Each command is bounded by readTimeout/writeTimeout
 * (redisSetTimeout sets both socket timeouts to the larger one).
 *
 * hiredis 0.14 (Debian 12) has no TLS support: enableTLS=true fails init.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, gmtime_r, strcasecmp */
#endif

#include <dapr/plugin.h>

#include <hiredis/hiredis.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#define MSG_LEN 256
#define DEFAULT_PORT 6379
#define OP_ARGS 5 /* WRITE_SCRIPT arguments per operation */

/*
 * The write script.  KEYS[i] is the key of operation i; ARGV holds
 * OP_ARGS values per operation: "set" or "del", the expected etag ("" =
 * none), "0" for first-write (Dapr's flag), the value, and the TTL in
 * seconds ("" or <= 0: no expiry).
 *
 * Pass 1 checks every operation against the versions as the earlier
 * operations of the same call will have left them (ver[] simulates them),
 * so "set k; delete k with the new etag" behaves as if run one by one.
 * Pass 2 writes.  Nothing is written unless every check passed.  Returns
 * {0, 0}, or {1, i} (etag mismatch) / {2, i} (first-write on an existing
 * key) for the first failing operation i.
 *
 * A key of another type than hash is replaced by a set, as Dapr's script
 * does.  The new version is computed here rather than with HINCRBY so
 * that a malformed "version" field cannot make pass 2 fail half-way.
 */
static const char WRITE_SCRIPT[] =
    "local ver = {}\n"
    "local function current(k)\n"
    "  local v = ver[k]\n"
    "  if v == nil then\n"
    "    v = false\n"
    "    if redis.call('TYPE', k)['ok'] == 'hash' then v = redis.call('HGET', k, 'version') end\n"
    "    ver[k] = v\n"
    "  end\n"
    "  return v\n"
    "end\n"
    "local function nextver(v) return string.format('%d', (tonumber(v) or 0) + 1) end\n"
    "for i = 1, #KEYS do\n"
    "  local k, b = KEYS[i], (i - 1) * 5\n"
    "  local v, etag = current(k), ARGV[b + 2]\n"
    "  if etag ~= '' then\n"
    "    if v ~= etag then return {1, i} end\n"
    "  elseif ARGV[b + 1] == 'set' and ARGV[b + 3] == '0' and v then\n"
    "    return {2, i}\n"
    "  end\n"
    "  if ARGV[b + 1] == 'set' then ver[k] = nextver(v) else ver[k] = false end\n"
    "end\n"
    "for i = 1, #KEYS do\n"
    "  local k, b = KEYS[i], (i - 1) * 5\n"
    "  if ARGV[b + 1] == 'del' then\n"
    "    redis.call('DEL', k)\n"
    "  else\n"
    "    local v = false\n"
    "    local t = redis.call('TYPE', k)['ok']\n"
    "    if t == 'hash' then v = redis.call('HGET', k, 'version')\n"
    "    elseif t ~= 'none' then redis.call('DEL', k) end\n"
    "    redis.call('HSET', k, 'data', ARGV[b + 4], 'version', nextver(v))\n"
    "    if ARGV[b + 3] == '0' then redis.call('HSET', k, 'first-write', 0) end\n"
    "    local ttl = tonumber(ARGV[b + 5])\n"
    "    if ttl and ttl > 0 then redis.call('EXPIRE', k, ARGV[b + 5])\n"
    "    else redis.call('PERSIST', k) end\n"
    "  end\n"
    "end\n"
    "return {0, 0}\n";

/*
 * The read script: {} when the key is absent (or expired), else {pttl,
 * data, version} with pttl as PTTL answers (-1: no expiry).  A hash field
 * that is missing comes back as nil; a plain string key comes back as
 * {pttl, value, nil}; any other type raises WRONGTYPE from GET.
 */
static const char GET_SCRIPT[] =
    "local t = redis.call('TYPE', KEYS[1])['ok']\n"
    "if t == 'none' then return {} end\n"
    "local ttl = redis.call('PTTL', KEYS[1])\n"
    "if t == 'hash' then\n"
    "  local r = redis.call('HMGET', KEYS[1], 'data', 'version')\n"
    "  return {ttl, r[1], r[2]}\n"
    "end\n"
    "return {ttl, redis.call('GET', KEYS[1]), false}\n";

enum { SCRIPT_WRITE, SCRIPT_GET, SCRIPT_COUNT };
static const char *const scripts[SCRIPT_COUNT] = {WRITE_SCRIPT, GET_SCRIPT};

typedef struct rconn {
    redisContext *ctx;   /* NULL: not connected */
    unsigned gen;        /* store generation when opened */
} rconn;

/* An operation waiting for a connection, in the pool's FIFO of waiters. */
typedef struct pool_waiter {
    pthread_cond_t cond;
    int idx;             /* the connection handed to us; -1 while waiting */
    struct pool_waiter *next;
} pool_waiter;

typedef struct redis_store {
    dapr_host *host;
    const dapr_host_api *api;

    char addr[300];           /* "host:port" for messages */
    char hostname[256];
    int port;
    const char *username;     /* NULL or "": AUTH with the password only */
    const char *password;     /* secret: never logged */
    long db;
    struct timeval dial_tv;
    struct timeval io_tv;     /* {0, 0}: no timeout */
    long io_ms;
    int max_retries;
    char default_ttl[24];     /* store's ttlInSeconds, "" when none */
    char sha[SCRIPT_COUNT][48];

    pthread_mutex_t lock;     /* guards the pool below */
    pool_waiter *wait_head, *wait_tail;
    rconn *conns;
    int *free_idx;            /* stack of idle connection indexes */
    int n_free;
    int pool_size;
    unsigned gen;             /* bumped when a connection fails */
} redis_store;

/* The outcome of one operation. */
typedef struct op_status {
    dapr_status status;
    char msg[MSG_LEN];
} op_status;

static void fail(op_status *st, dapr_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(op_status *st, dapr_status status, const char *fmt, ...)
{
    va_list ap;
    st->status = status;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Small parsers                                                        */
/* ------------------------------------------------------------------ */

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
 * milliseconds (negative: "none"), anything else a Go duration such as
 * "5s", "1m30s" or "250ms".  Stores milliseconds.  Returns 0 or -1.
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
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno == ERANGE || !isdigit((unsigned char)*p)) return -1;
        p = end;
        size_t best = 0;
        double mult = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
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
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (strcasecmp(s, yes[i]) == 0) return 1;
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (strcasecmp(s, no[i]) == 0) return 0;
    return -1;
}

static const char *kvs_get(dapr_kvs kvs, const char *name)
{
    for (size_t i = 0; i < kvs.n; i++)
        if (kvs.items[i].name && strcasecmp(kvs.items[i].name, name) == 0)
            return kvs.items[i].value;
    return NULL;
}

/*
 * The TTL argument of WRITE_SCRIPT for one set: the item's ttlInSeconds,
 * else the store's default, else "" (no expiry: an overwrite without TTL
 * also removes an earlier one).  Dapr ignores an empty ttlInSeconds.
 */
static int ttl_arg(redis_store *s, dapr_kvs md, char out[24], op_status *st)
{
    const char *v = kvs_get(md, "ttlInSeconds");
    long long ttl;
    if (v == NULL || *v == '\0') {
        memcpy(out, s->default_ttl, sizeof(s->default_ttl));
        return 0;
    }
    if (parse_ll(v, &ttl) != 0) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT,
             "failed to parse ttl from metadata: ttlInSeconds '%s' is not an integer", v);
        return -1;
    }
    if (ttl > 0x7fffffffLL) ttl = 0x7fffffffLL; /* about 68 years */
    snprintf(out, 24, "%lld", ttl);
    return 0;
}

/*
 * Etags are versions: decimal integers.  Writes the normalised etag ("" =
 * none) to out; anything else is ETAG_INVALID, as Dapr's strconv.Atoi.
 */
static int etag_arg(const char *etag, char out[24], op_status *st)
{
    long long v;
    out[0] = '\0';
    if (etag == NULL || etag[0] == '\0') return 0;
    if (parse_ll(etag, &v) != 0) {
        fail(st, DAPR_ERR_ETAG_INVALID, "invalid etag value: '%.64s' is not a number", etag);
        return -1;
    }
    snprintf(out, 24, "%lld", v);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */
/* ------------------------------------------------------------------ */

/* A Redis error reply as a Dapr status. */
static dapr_status reply_error_status(const char *err)
{
    static const struct { const char *prefix; dapr_status st; } map[] = {
        {"NOAUTH", DAPR_ERR_PERMISSION_DENIED}, {"WRONGPASS", DAPR_ERR_PERMISSION_DENIED},
        {"NOPERM", DAPR_ERR_PERMISSION_DENIED}, {"LOADING", DAPR_ERR_UNAVAILABLE},
        {"BUSY", DAPR_ERR_UNAVAILABLE},         {"MASTERDOWN", DAPR_ERR_UNAVAILABLE},
        {"TRYAGAIN", DAPR_ERR_UNAVAILABLE},     {"READONLY", DAPR_ERR_UNAVAILABLE},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strncmp(err, map[i].prefix, strlen(map[i].prefix)) == 0) return map[i].st;
    return DAPR_ERR_INTERNAL;
}

/* A connection-level failure: fill st, close the connection and make the
 * idle connections opened before now reconnect (see the top comment). */
static void conn_broken(redis_store *s, rconn *c, int saved_errno, op_status *st)
{
    const char *why = c->ctx ? c->ctx->errstr : "no context";
    if (c->ctx && c->ctx->err == REDIS_ERR_IO &&
        (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || strstr(why, "temporarily"))) {
        fail(st, DAPR_ERR_TIMEOUT, "redis store: no answer from redis at %s within %ld ms",
             s->addr, s->io_ms);
    } else {
        fail(st, DAPR_ERR_UNAVAILABLE, "redis store: connection to redis at %s failed: %s",
             s->addr, why[0] ? why : "connection closed");
    }
    if (c->ctx) redisFree(c->ctx);
    c->ctx = NULL;
    pthread_mutex_lock(&s->lock);
    s->gen++;
    pthread_mutex_unlock(&s->lock);
}

/*
 * Send n commands in one round trip and read the n replies into out[].
 * Returns 0 when every reply arrived (some may be Redis errors), else -1
 * with st filled and the connection closed.
 */
static int round_trip(redis_store *s, rconn *c, int n, int *argc, const char ***argv,
                      size_t **argvlen, redisReply **out, op_status *st)
{
    int i;
    for (i = 0; i < n; i++) {
        if (redisAppendCommandArgv(c->ctx, argc[i], argv[i], argvlen[i]) != REDIS_OK) {
            conn_broken(s, c, errno, st);
            return -1;
        }
    }
    for (i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(c->ctx, &r) != REDIS_OK || r == NULL) {
            conn_broken(s, c, errno, st);
            for (int j = 0; j < i; j++) freeReplyObject(out[j]);
            return -1;
        }
        out[i] = r;
    }
    return 0;
}

/* AUTH, SELECT and SCRIPT LOAD on a new connection, pipelined. */
static int conn_setup(redis_store *s, rconn *c, op_status *st)
{
    const char *argv[4 + SCRIPT_COUNT][4];
    size_t lens[4 + SCRIPT_COUNT][4];
    const char **pargv[4 + SCRIPT_COUNT];
    size_t *plens[4 + SCRIPT_COUNT];
    int argc[4 + SCRIPT_COUNT];
    char dbs[24];
    int n = 0, auth = -1, sel = -1;
    redisReply *rep[4 + SCRIPT_COUNT];

    if (s->password && s->password[0]) {
        auth = n;
        argc[n] = 0;
        argv[n][argc[n]++] = "AUTH";
        if (s->username && s->username[0]) argv[n][argc[n]++] = s->username;
        argv[n][argc[n]++] = s->password;
        n++;
    }
    if (s->db != 0) {
        sel = n;
        snprintf(dbs, sizeof(dbs), "%ld", s->db);
        argc[n] = 2;
        argv[n][0] = "SELECT";
        argv[n][1] = dbs;
        n++;
    }
    int first_script = n;
    for (int i = 0; i < SCRIPT_COUNT; i++) {
        argc[n] = 3;
        argv[n][0] = "SCRIPT";
        argv[n][1] = "LOAD";
        argv[n][2] = scripts[i];
        n++;
    }
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < argc[i]; k++) lens[i][k] = strlen(argv[i][k]);
        pargv[i] = argv[i];
        plens[i] = lens[i];
    }
    if (round_trip(s, c, n, argc, pargv, plens, rep, st) != 0) return -1;

    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (rep[i]->type == REDIS_REPLY_ERROR) {
            /* The server's text never contains the password. */
            const char *what = i == auth ? "authentication failed"
                             : i == sel  ? "cannot select database"
                                         : "cannot load the Lua scripts";
            fail(st, i == sel ? DAPR_ERR_INVALID_ARGUMENT : reply_error_status(rep[i]->str),
                 "redis store: redis at %s: %s: %s", s->addr, what, rep[i]->str);
            rc = -1;
        } else if (i >= first_script) {
            if (rep[i]->type != REDIS_REPLY_STRING || rep[i]->len >= sizeof(s->sha[0])) {
                fail(st, DAPR_ERR_INTERNAL, "redis store: unexpected SCRIPT LOAD reply");
                rc = -1;
            } else if (s->sha[i - first_script][0] == '\0') {
                /* Only during init (the first connection): the digest
                 * of a script never changes, so later loads agree. */
                memcpy(s->sha[i - first_script], rep[i]->str, rep[i]->len + 1);
            }
        }
    }
    for (int i = 0; i < n; i++) freeReplyObject(rep[i]);
    if (rc != 0) {
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    return rc;
}

static int conn_open(redis_store *s, rconn *c, op_status *st)
{
    c->ctx = redisConnectWithTimeout(s->hostname, s->port, s->dial_tv);
    if (c->ctx == NULL || c->ctx->err) {
        fail(st, DAPR_ERR_UNAVAILABLE, "redis store: error connecting to redis at %s: %s",
             s->addr, c->ctx ? c->ctx->errstr : "out of memory");
        if (c->ctx) redisFree(c->ctx);
        c->ctx = NULL;
        return -1;
    }
    /* Socket timeouts bound every later read and write. */
    if (redisSetTimeout(c->ctx, s->io_tv) != REDIS_OK) {
        conn_broken(s, c, errno, st);
        return -1;
    }
    redisEnableKeepAlive(c->ctx);
    return conn_setup(s, c, st);
}

/*
 * Give a connection back: straight to the oldest waiter if there is one.
 * Merely pushing it on the idle stack and signalling let the thread that
 * just gave it back, already on to its next operation, take it again
 * before the woken waiter ran: with fewer connections than host workers
 * most wake-ups found nothing and some operations waited through dozens
 * of turns (a latency tail).
 */
static void pool_give(redis_store *s, rconn *c)
{
    pthread_mutex_lock(&s->lock);
    pool_waiter *w = s->wait_head;
    if (w) {
        s->wait_head = w->next;
        if (!s->wait_head) s->wait_tail = NULL;
        w->idx = (int)(c - s->conns);
        pthread_cond_signal(&w->cond);
    } else {
        s->free_idx[s->n_free++] = (int)(c - s->conns);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Take an idle connection, connecting it if needed.  Sets *fresh when it
 * was opened now.  NULL with st filled when the connect failed. */
static rconn *pool_take(redis_store *s, int *fresh, op_status *st)
{
    pthread_mutex_lock(&s->lock);
    int idx;
    if (s->n_free > 0) {
        idx = s->free_idx[--s->n_free];
    } else {
        /* pool_give hands the next free connection to the oldest waiter,
         * so idle connections and waiters never coexist. */
        pool_waiter w = {.idx = -1, .next = NULL};
        pthread_cond_init(&w.cond, NULL);
        if (s->wait_tail) s->wait_tail->next = &w; else s->wait_head = &w;
        s->wait_tail = &w;
        while (w.idx < 0) pthread_cond_wait(&w.cond, &s->lock);
        pthread_cond_destroy(&w.cond);
        idx = w.idx;
    }
    rconn *c = &s->conns[idx];
    unsigned gen = s->gen;
    pthread_mutex_unlock(&s->lock);

    if (c->ctx && c->gen != gen) { /* opened before a failure: retire it */
        redisFree(c->ctx);
        c->ctx = NULL;
    }
    *fresh = 0;
    if (c->ctx == NULL) {
        c->gen = gen;
        if (conn_open(s, c, st) != 0) {
            pool_give(s, c);
            return NULL;
        }
        *fresh = 1;
    }
    return c;
}

static int is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/*
 * Run n commands (all reads, or one write script) in one round trip on a
 * pooled connection, retrying on a new connection as the top comment
 * says.  A NOSCRIPT answer (someone ran SCRIPT FLUSH) reloads the scripts
 * and runs the commands once more: nothing ran the first time.  Returns 0
 * with n replies in out[] (the caller frees them), or -1 with st filled.
 */
static int run(redis_store *s, int n, int *argc, const char ***argv, size_t **argvlen,
               redisReply **out, op_status *st)
{
    int reloaded = 0;
    for (int attempt = 0;; attempt++) {
        int fresh;
        rconn *c = pool_take(s, &fresh, st);
        if (c == NULL) return -1;
        int rc = round_trip(s, c, n, argc, argv, argvlen, out, st);
        if (rc == 0) {
            int noscript = 0;
            for (int i = 0; i < n; i++) noscript |= is_noscript(out[i]);
            if (noscript && !reloaded) {
                for (int i = 0; i < n; i++) freeReplyObject(out[i]);
                reloaded = 1;
                rc = conn_setup(s, c, st);
                pool_give(s, c);
                if (rc != 0) return -1;
                attempt--;
                continue;
            }
            pool_give(s, c);
            return 0;
        }
        pool_give(s, c);
        if (fresh || st->status == DAPR_ERR_TIMEOUT || attempt >= s->max_retries) return -1;
        s->api->log(s->host, DAPR_LOG_DEBUG, "%s; retrying on a new connection", st->msg);
    }
}

/* ------------------------------------------------------------------ */
/* Writes                                                               */
/* ------------------------------------------------------------------ */

/* Arguments of one WRITE_SCRIPT operation, with their own buffers. */
typedef struct op_args {
    char etag[24];
    char ttl[24];
} op_args;

static int check_common(const char *key, dapr_concurrency conc, const char *what, op_status *st)
{
    if (key == NULL || key[0] == '\0') {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "missing key in %s operation", what);
        return -1;
    }
    if (conc > DAPR_CONCURRENCY_LAST_WRITE) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "invalid concurrency option %d", (int)conc);
        return -1;
    }
    return 0;
}

/*
 * Run WRITE_SCRIPT over n operations (sets and deletes).  One EVALSHA:
 * "EVALSHA sha n key1..keyn" then OP_ARGS values per operation.
 */
static void do_write(redis_store *s, const dapr_state_op *ops, size_t n, op_status *st)
{
    if (n == 0) return;
    if (n > 100000) {
        fail(st, DAPR_ERR_TOO_MANY_OPERATIONS, "transaction of %zu operations is too large", n);
        return;
    }
    int argc = (int)(3 + n + OP_ARGS * n);
    const char **argv = calloc((size_t)argc, sizeof(*argv));
    size_t *lens = calloc((size_t)argc, sizeof(*lens));
    op_args *oa = calloc(n, sizeof(*oa));
    char nkeys[24];
    redisReply *rep = NULL;

    if (!argv || !lens || !oa) {
        fail(st, DAPR_ERR_INTERNAL, "out of memory");
        goto out;
    }
    snprintf(nkeys, sizeof(nkeys), "%zu", n);
    argv[0] = "EVALSHA";
    argv[1] = s->sha[SCRIPT_WRITE];
    argv[2] = nkeys;
    for (size_t i = 0; i < n; i++) {
        const dapr_state_op *op = &ops[i];
        const char **a = argv + 3 + n + OP_ARGS * i;
        size_t *l = lens + 3 + n + OP_ARGS * i;
        if (op->kind == DAPR_STATE_OP_UPSERT) {
            const dapr_state_set_req *r = &op->set;
            if (check_common(r->key, r->concurrency, "set", st) != 0 ||
                etag_arg(r->etag, oa[i].etag, st) != 0 || ttl_arg(s, r->metadata, oa[i].ttl, st) != 0)
                goto out;
            argv[3 + i] = r->key;
            a[0] = "set";
            a[2] = r->concurrency == DAPR_CONCURRENCY_FIRST_WRITE ? "0" : "1";
            a[3] = r->value.ptr ? (const char *)r->value.ptr : "";
            l[3] = r->value.len;
        } else if (op->kind == DAPR_STATE_OP_DELETE) {
            const dapr_state_delete_req *r = &op->del;
            if (check_common(r->key, r->concurrency, "delete", st) != 0 ||
                etag_arg(r->etag, oa[i].etag, st) != 0)
                goto out;
            argv[3 + i] = r->key;
            a[0] = "del";
            a[2] = "1";
            a[3] = "";
            l[3] = 0;
            oa[i].ttl[0] = '\0';
        } else {
            fail(st, DAPR_ERR_NOT_SUPPORTED, "operation type %d not supported", (int)op->kind);
            goto out;
        }
        a[1] = oa[i].etag;
        a[4] = oa[i].ttl;
        l[0] = 3;
        l[1] = strlen(a[1]);
        l[2] = 1;
        l[4] = strlen(a[4]);
    }
    for (int i = 0; i < 3 + (int)n; i++) lens[i] = strlen(argv[i]);

    if (run(s, 1, &argc, &argv, &lens, &rep, st) != 0) goto out;
    if (rep->type == REDIS_REPLY_ERROR) {
        fail(st, reply_error_status(rep->str), "redis store: failed to write state: %s", rep->str);
    } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
               rep->element[0]->type != REDIS_REPLY_INTEGER ||
               rep->element[1]->type != REDIS_REPLY_INTEGER) {
        fail(st, DAPR_ERR_INTERNAL, "redis store: unexpected reply from the write script");
    } else if (rep->element[0]->integer != 0) {
        long long i = rep->element[1]->integer - 1;
        const char *key = i >= 0 && (size_t)i < n ? argv[3 + i] : "?";
        fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch. error from state store: %s%.128s",
             rep->element[0]->integer == 1 ? "etag does not match for key "
                                           : "key already exists (first-write): ",
             key);
    }
out:
    if (rep) freeReplyObject(rep);
    free(argv);
    free(lens);
    free(oa);
}

/* ------------------------------------------------------------------ */
/* Reads                                                                */
/* ------------------------------------------------------------------ */

/* One read item.  Value and etag point into reply, kept until the
 * completion callback has returned. */
typedef struct read_item {
    dapr_status status;
    char msg[MSG_LEN];
    int found;
    const char *value;
    size_t len;
    const char *etag;
    char expire[32];   /* RFC 3339 UTC, "" when no TTL */
    dapr_kv md;
} read_item;

/* Decode one GET_SCRIPT reply. */
static void read_reply(const redisReply *r, const char *key, read_item *it)
{
    memset(it, 0, sizeof(*it));
    if (r->type == REDIS_REPLY_ERROR) {
        it->status = reply_error_status(r->str);
        snprintf(it->msg, sizeof(it->msg), "redis store: failed to get key %.64s: %s", key, r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || (r->elements != 0 && r->elements != 3)) {
        it->status = DAPR_ERR_INTERNAL;
        snprintf(it->msg, sizeof(it->msg), "redis store: unexpected reply from the read script");
        return;
    }
    if (r->elements == 0) return; /* absent */
    const redisReply *ttl = r->element[0], *data = r->element[1], *ver = r->element[2];
    int hash_ok = data->type == REDIS_REPLY_STRING &&
                  (ver->type == REDIS_REPLY_STRING || ver->type == REDIS_REPLY_NIL);
    if (!hash_ok || ttl->type != REDIS_REPLY_INTEGER) {
        it->status = DAPR_ERR_INTERNAL;
        snprintf(it->msg, sizeof(it->msg),
                 "redis store: key %.64s: required hash field 'data' or 'version' was not found", key);
        return;
    }
    it->found = 1;
    it->value = data->str;
    it->len = data->len;
    it->etag = ver->type == REDIS_REPLY_STRING ? ver->str : NULL;
    if (ttl->integer > 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        long long ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 + ttl->integer;
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(it->expire, sizeof(it->expire), "%Y-%m-%dT%H:%M:%SZ", &tm);
        it->md.name = "ttlExpireTime";
        it->md.value = it->expire;
    }
}

/* Pipeline GET_SCRIPT for n keys.  Returns 0 with replies in out[]. */
static int read_keys(redis_store *s, const char *const *keys, size_t n, redisReply **out,
                     op_status *st)
{
    int *argc = calloc(n, sizeof(*argc));
    const char **argv = calloc(n * 4, sizeof(*argv));
    size_t *lens = calloc(n * 4, sizeof(*lens));
    const char ***pargv = calloc(n, sizeof(*pargv));
    size_t **plens = calloc(n, sizeof(*plens));
    int rc = -1;

    if (!argc || !argv || !lens || !pargv || !plens) {
        fail(st, DAPR_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char **a = argv + 4 * i;
        size_t *l = lens + 4 * i;
        a[0] = "EVALSHA";
        a[1] = s->sha[SCRIPT_GET];
        a[2] = "1";
        a[3] = keys[i] ? keys[i] : "";
        for (int k = 0; k < 4; k++) l[k] = strlen(a[k]);
        argc[i] = 4;
        pargv[i] = a;
        plens[i] = l;
    }
    rc = run(s, (int)n, argc, pargv, plens, out, st);
out:
    free(argc);
    free(argv);
    free(lens);
    free(pargv);
    free(plens);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The vtable                                                           */
/* ------------------------------------------------------------------ */

static void st_get(void *inst, const dapr_state_get_req *req, dapr_state_get_cb cb, void *ctx)
{
    redis_store *s = inst;
    op_status st = {DAPR_OK, ""};
    redisReply *rep = NULL;
    read_item it;
    const char *key = req->key ? req->key : "";

    memset(&it, 0, sizeof(it));
    if (key[0] == '\0')
        fail(&st, DAPR_ERR_INVALID_ARGUMENT, "missing key in get operation");
    else if (read_keys(s, &key, 1, &rep, &st) == 0)
        read_reply(rep, key, &it);
    if (st.status == DAPR_OK && it.status != DAPR_OK) {
        st.status = it.status;
        memcpy(st.msg, it.msg, sizeof(st.msg));
    }

    dapr_state_get_result res = {.status = st.status,
                                 .message = st.status == DAPR_OK ? NULL : st.msg};
    if (st.status == DAPR_OK && it.found) {
        res.found = 1;
        res.value.ptr = (const uint8_t *)it.value;
        res.value.len = it.len;
        res.etag = it.etag;
        if (it.md.name) {
            res.metadata.items = &it.md;
            res.metadata.n = 1;
        }
    }
    cb(ctx, &res);
    if (rep) freeReplyObject(rep);
}

static void st_set(void *inst, const dapr_state_set_req *req, dapr_result_cb cb, void *ctx)
{
    op_status st = {DAPR_OK, ""};
    dapr_state_op op = {.kind = DAPR_STATE_OP_UPSERT, .set = *req};
    do_write(inst, &op, 1, &st);
    dapr_result res = {st.status, st.status == DAPR_OK ? NULL : st.msg};
    cb(ctx, &res);
}

static void st_del(void *inst, const dapr_state_delete_req *req, dapr_result_cb cb, void *ctx)
{
    op_status st = {DAPR_OK, ""};
    dapr_state_op op = {.kind = DAPR_STATE_OP_DELETE, .del = *req};
    do_write(inst, &op, 1, &st);
    dapr_result res = {st.status, st.status == DAPR_OK ? NULL : st.msg};
    cb(ctx, &res);
}

static void st_bulk_get(void *inst, const dapr_state_bulk_get_req *req,
                        dapr_state_bulk_get_cb cb, void *ctx)
{
    redis_store *s = inst;
    op_status st = {DAPR_OK, ""};
    size_t n = req->n_keys;
    redisReply **reps = calloc(n ? n : 1, sizeof(*reps));
    read_item *items = calloc(n ? n : 1, sizeof(*items));
    dapr_state_bulk_item *out = calloc(n ? n : 1, sizeof(*out));
    int got = 0;

    if (!reps || !items || !out)
        fail(&st, DAPR_ERR_INTERNAL, "out of memory");
    else if (n > 0 && read_keys(s, req->keys, n, reps, &st) == 0)
        got = 1;

    for (size_t i = 0; got && i < n; i++) {
        read_item *it = &items[i];
        read_reply(reps[i], req->keys[i] ? req->keys[i] : "", it);
        out[i].key = req->keys[i];
        out[i].status = it->status;
        out[i].message = it->status == DAPR_OK ? NULL : it->msg;
        if (it->found) {
            out[i].found = 1;
            out[i].value.ptr = (const uint8_t *)it->value;
            out[i].value.len = it->len;
            out[i].etag = it->etag;
            if (it->md.name) {
                out[i].metadata.items = &it->md;
                out[i].metadata.n = 1;
            }
        }
    }
    int ok = st.status == DAPR_OK;
    dapr_state_bulk_get_result res = {.status = st.status,
                                      .message = ok ? NULL : st.msg,
                                      .items = ok ? out : NULL,
                                      .n_items = ok ? n : 0};
    cb(ctx, &res);
    for (size_t i = 0; got && i < n; i++) freeReplyObject(reps[i]);
    free(reps);
    free(items);
    free(out);
}

static void st_transact(void *inst, const dapr_state_txn_req *req, dapr_result_cb cb, void *ctx)
{
    op_status st = {DAPR_OK, ""};
    do_write(inst, req->ops, req->n_ops, &st);
    dapr_result res = {st.status, st.status == DAPR_OK ? NULL : st.msg};
    cb(ctx, &res);
}

/* ------------------------------------------------------------------ */
/* Init and close                                                       */
/* ------------------------------------------------------------------ */

static void store_free(redis_store *s)
{
    for (int i = 0; s->conns && i < s->pool_size; i++)
        if (s->conns[i].ctx) redisFree(s->conns[i].ctx);
    free(s->conns);
    free(s->free_idx);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const char *meta(redis_store *s, const char *name)
{
    const char *v = s->api->metadata_get(s->host, name);
    return v && v[0] ? v : NULL;
}

static struct timeval ms_to_tv(long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

/* "host:port", "host" (port 6379) or "[v6addr]:port". */
static int parse_host(redis_store *s, const char *v, char *errbuf, size_t errlen)
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
    if (he == hs || (size_t)(he - hs) >= sizeof(s->hostname)) goto bad;
    memcpy(s->hostname, hs, (size_t)(he - hs));
    s->hostname[he - hs] = '\0';
    s->port = DEFAULT_PORT;
    if (colon) {
        long long p;
        if (parse_ll(colon + 1, &p) != 0 || p < 1 || p > 65535) goto bad;
        s->port = (int)p;
    }
    snprintf(s->addr, sizeof(s->addr), "%s", v);
    return 0;
bad:
    snprintf(errbuf, errlen, "redis store: invalid redisHost '%.200s' (want host:port)", v);
    return -1;
}

static int meta_ms(redis_store *s, const char *name, long long def, long long *ms,
                   char *errbuf, size_t errlen)
{
    const char *v = meta(s, name);
    *ms = def;
    if (v == NULL) return 0;
    if (parse_duration_ms(v, ms) != 0) {
        snprintf(errbuf, errlen, "redis store: invalid value for '%s': '%.64s' is not a duration",
                 name, v);
        return -1;
    }
    if (*ms == 0) *ms = def; /* go-redis: 0 means the default */
    return 0;
}

static int meta_flag(redis_store *s, const char *name, int *out, char *errbuf, size_t errlen)
{
    const char *v = meta(s, name);
    *out = v ? parse_bool(v) : 0;
    if (*out < 0) {
        snprintf(errbuf, errlen, "redis store: invalid value for '%s': '%.64s' is not a boolean",
                 name, v);
        return -1;
    }
    return 0;
}

static dapr_status st_init(dapr_host *host, const dapr_host_api *api, void **instance,
                           char *errbuf, size_t errlen)
{
    redis_store *s = calloc(1, sizeof(*s));
    dapr_status ret = DAPR_ERR_INVALID_ARGUMENT;
    long long v;
    int flag;

    if (!s) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    s->host = host;
    s->api = api;
    pthread_mutex_init(&s->lock, NULL);

    const char *h = meta(s, "redisHost");
    if (h == NULL) {
        snprintf(errbuf, errlen, "redis store: missing redisHost");
        goto err;
    }
    if (parse_host(s, h, errbuf, errlen) != 0) goto err;
    s->username = meta(s, "redisUsername");
    s->password = meta(s, "redisPassword");

    if (meta_flag(s, "enableTLS", &flag, errbuf, errlen) != 0) goto err;
    if (flag) {
        snprintf(errbuf, errlen, "redis store: enableTLS is not supported: this build uses "
                 "hiredis %d.%d, which has no TLS", HIREDIS_MAJOR, HIREDIS_MINOR);
        ret = DAPR_ERR_NOT_SUPPORTED;
        goto err;
    }
    if (meta_flag(s, "failover", &flag, errbuf, errlen) != 0) goto err;
    if (flag) {
        snprintf(errbuf, errlen, "redis store: failover (Redis Sentinel) is not supported");
        ret = DAPR_ERR_NOT_SUPPORTED;
        goto err;
    }
    const char *type = meta(s, "redisType");
    if (type && strcasecmp(type, "node") != 0) {
        snprintf(errbuf, errlen, "redis store: redisType '%.32s' is not supported (only node)", type);
        ret = DAPR_ERR_NOT_SUPPORTED;
        goto err;
    }
    if (meta_flag(s, "actorStateStore", &flag, errbuf, errlen) != 0) goto err;

    const char *db = meta(s, "redisDB");
    if (db && (parse_ll(db, &v) != 0 || v < 0 || v > 0x7fffffff)) {
        snprintf(errbuf, errlen, "redis store: invalid redisDB '%.32s'", db);
        goto err;
    }
    s->db = db ? (long)v : 0;

    /* redisMaxRetries is Dapr's name; maxRetries is accepted as well.
     * -1 disables retries, as in Dapr. */
    const char *mr = meta(s, "redisMaxRetries");
    if (mr == NULL) mr = meta(s, "maxRetries");
    s->max_retries = 3;
    if (mr) {
        if (parse_ll(mr, &v) != 0 || v < -1 || v > 100) {
            snprintf(errbuf, errlen, "redis store: invalid redisMaxRetries '%.32s'", mr);
            goto err;
        }
        s->max_retries = v < 0 ? 0 : (int)v;
    }

    long long dial, rd, wr;
    if (meta_ms(s, "dialTimeout", 5000, &dial, errbuf, errlen) != 0 ||
        meta_ms(s, "readTimeout", 3000, &rd, errbuf, errlen) != 0 ||
        meta_ms(s, "writeTimeout", rd, &wr, errbuf, errlen) != 0)
        goto err;
    if (dial < 0) dial = 5000;
    /* One socket timeout for both directions: the larger; -1 = none. */
    s->io_ms = (long)(rd < 0 || wr < 0 ? 0 : rd > wr ? rd : wr);
    s->dial_tv = ms_to_tv(dial);
    s->io_tv = ms_to_tv(s->io_ms);

    const char *ttl = meta(s, "ttlInSeconds");
    if (ttl) {
        if (parse_ll(ttl, &v) != 0) {
            snprintf(errbuf, errlen, "redis store: invalid ttlInSeconds '%.32s': not an integer", ttl);
            goto err;
        }
        snprintf(s->default_ttl, sizeof(s->default_ttl), "%lld", v > 0x7fffffffLL ? 0x7fffffffLL : v);
    }

    const char *ps = meta(s, "poolSize");
    s->pool_size = 8;
    if (ps) {
        if (parse_ll(ps, &v) != 0 || v < 1 || v > 1024) {
            snprintf(errbuf, errlen, "redis store: invalid poolSize '%.32s' (1..1024)", ps);
            goto err;
        }
        s->pool_size = (int)v;
    }
    if (meta(s, "queryIndexes"))
        api->log(host, DAPR_LOG_WARN, "queryIndexes is ignored: this state.redis does not "
                 "support the state query API (RediSearch)");

    s->conns = calloc((size_t)s->pool_size, sizeof(*s->conns));
    s->free_idx = calloc((size_t)s->pool_size, sizeof(*s->free_idx));
    if (!s->conns || !s->free_idx) {
        snprintf(errbuf, errlen, "out of memory");
        ret = DAPR_ERR_INTERNAL;
        goto err;
    }
    for (int i = 0; i < s->pool_size; i++) s->free_idx[s->n_free++] = s->pool_size - 1 - i;

    /* Connect once now: a wrong host or password fails init, and the
     * script digests are learnt. */
    op_status st = {DAPR_OK, ""};
    int fresh;
    rconn *c = pool_take(s, &fresh, &st);
    if (c == NULL) {
        snprintf(errbuf, errlen, "%s", st.msg);
        ret = st.status;
        goto err;
    }
    pool_give(s, c);

    api->log(host, DAPR_LOG_INFO, "connected to redis at %s (db %ld, pool %d, timeout %ld ms)",
             s->addr, s->db, s->pool_size, s->io_ms);
    *instance = s;
    return DAPR_OK;

err:
    store_free(s);
    return ret;
}

static void st_close(void *inst)
{
    if (inst) store_free(inst);
}

/* ------------------------------------------------------------------ */
/* Descriptor                                                           */
/* ------------------------------------------------------------------ */

static const dapr_metadata_field schema[] = {
    {"redisHost", DAPR_META_STRING, DAPR_META_REQUIRED, NULL,
     "Redis server as host:port"},
    {"redisPassword", DAPR_META_STRING, DAPR_META_SECRET, NULL,
     "password (AUTH); empty: none"},
    {"redisUsername", DAPR_META_STRING, 0, NULL,
     "ACL user for AUTH (Redis 6 and later)"},
    {"redisDB", DAPR_META_INT, 0, "0", "database number to SELECT"},
    {"enableTLS", DAPR_META_BOOL, 0, "false",
     "TLS to Redis: not supported (hiredis 0.14), true fails init"},
    {"redisMaxRetries", DAPR_META_INT, 0, "3",
     "retries on a new connection after a broken one; -1: none"},
    {"maxRetries", DAPR_META_INT, 0, NULL, "same as redisMaxRetries"},
    {"dialTimeout", DAPR_META_STRING, 0, "5s",
     "connect timeout (Go duration, or integer milliseconds)"},
    {"readTimeout", DAPR_META_STRING, 0, "3s",
     "per-command timeout (Go duration, or integer milliseconds; -1: none)"},
    {"writeTimeout", DAPR_META_STRING, 0, NULL,
     "socket write timeout (default readTimeout)"},
    {"poolSize", DAPR_META_INT, 0, "8", "number of connections"},
    {"ttlInSeconds", DAPR_META_INT, 0, NULL,
     "default TTL of every item; an item's ttlInSeconds overrides it"},
    {"redisType", DAPR_META_STRING, 0, "node", "only node is supported"},
    {"failover", DAPR_META_BOOL, 0, "false", "Redis Sentinel: not supported"},
    {"queryIndexes", DAPR_META_STRING, 0, NULL,
     "RediSearch indexes for the query API: not supported, ignored"},
    {"actorStateStore", DAPR_META_BOOL, 0, "false",
     "use this store for actor state (handled by the host)"},
};

static const dapr_state_vtable vtable = {
    .size = sizeof(dapr_state_vtable),
    .get = st_get,
    .set = st_set,
    .del = st_del,
    .bulk_get = st_bulk_get,
    .bulk_set = NULL,    /* the host loops over set */
    .bulk_delete = NULL, /* the host loops over del */
    .transact = st_transact,
    .query = NULL,
    .max_transaction_ops = 0,
};

static const dapr_component_def redis_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.redis",
    .version = "v1",
    .features = DAPR_STATE_ETAG | DAPR_STATE_TRANSACTIONAL | DAPR_STATE_TTL,
    .flags = 0, /* blocking: the host calls us on its worker pool */
    .metadata_schema = schema,
    .n_metadata_schema = sizeof(schema) / sizeof(schema[0]),
    .init = st_init,
    .close = st_close,
    .vtable = &vtable,
};

static const dapr_component_def *const components[] = {&redis_component};

static const dapr_plugin_descriptor descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "state-redis",
    .version = "1.0.0",
    .description = "Dapr state store on Redis (hiredis)",
    .components = components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &descriptor;
}
