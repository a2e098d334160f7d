/*
 * state_postgresql.c - the "state.postgresql" state store (versions v1 and
 * v2) on PostgreSQL through libpq.
 *
 * Both versions keep the table layouts of Dapr's own component
 * (components-contrib, state/postgresql), so a database written by real
 * Dapr is readable here and the other way round.
 *
 * v1 (the default version; table `tableName`, default "state"):
 *     key text PK, value jsonb NOT NULL, isbinary boolean NOT NULL,
 *     insertdate timestamptz NOT NULL DEFAULT now(), updatedate timestamptz,
 *     expiredate timestamptz
 *   - The etag is the row's system column xmin, as decimal text.
 *   - A value that is JSON is stored as that JSON (isbinary = false), so
 *     the query API and other readers see the document; anything else is
 *     stored as a JSON string holding standard base64, isbinary = true.
 *   - jsonb does not keep the text it was given (it sorts members and
 *     re-spaces them), but a Dapr state store must give back the bytes it
 *     was given.  We therefore add ONE nullable column of our own,
 *     `rawvalue text`, holding the exact text when it differs from jsonb's
 *     rendering.  Dapr never reads it; a row that Dapr (or psql) rewrote
 *     afterwards no longer has rawvalue::jsonb = value, and we then answer
 *     value::text, exactly as Dapr does.  Dapr's own columns always hold
 *     what Dapr would have written.
 *   - Query API: filters become SQL with bind parameters only (see
 *     build_query()).
 * v2 (table `tablePrefix` + "state"):
 *     key text PK, value bytea NOT NULL, etag uuid NOT NULL,
 *     created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz,
 *     expires_at timestamptz (indexed)
 *   - Values are stored byte for byte; etags are random UUIDs made by the
 *     server (gen_random_uuid(), PostgreSQL 13 or later).  No query API.
 *
 * Metadata table (`metadataTableName`, default "dapr_metadata"):
 * key text PK, value text.  Rows as Dapr: "migrations" (v1, level 2) or
 * "migrations-state-v2-<tablePrefix>" (v2, level 1), "lock" (the migration
 * lock row), and the last cleanup time.  Migrations run inside a
 * transaction holding a row lock on "lock" (SELECT ... FOR UPDATE), which
 * is also what real Dapr sidecars take, so two sidecars of either kind
 * starting together never race to create the tables.  (A row lock rather
 * than pg_advisory_lock for that reason: an advisory lock would not
 * exclude a real Dapr sidecar.)
 *
 * Threading and blocking.  The issue asks for a non-blocking client.  We
 * use libpq's blocking style on purpose: the host runs every operation of
 * a plugin without DAPR_COMPONENT_NONBLOCKING on its bounded worker pool,
 * so daprd's event loop never waits on PostgreSQL, and blocking code keeps
 * transactions (BEGIN ... COMMIT over several statements) straight-line
 * and easy to check.  What the event loop does not protect is the worker:
 * so no call may wait past the `timeout` metadata.  Hence
 *   - connect with connect_timeout (libpq's own limit),
 *   - SET statement_timeout on each connection (server side), and
 *   - wait for every answer with poll() against the operation's deadline,
 *     cancelling the statement and dropping the connection when it passes
 *     (client side: a server that stops answering cannot hang a worker).
 * Connections live in a small pool (maxConns, default max(4, CPUs)); an
 * operation takes one, or waits for one (first come, first served) until
 * its deadline.  A connection that failed is closed; the next operation
 * that takes the slot connects again, so after a server restart the store
 * recovers by itself, and while the server is down operations fail fast
 * with DAPR_ERR_UNAVAILABLE.
 *
 * Secrets: the connection string (it may hold a password) is never logged
 * nor put in an error message; libpq's connection errors name the host
 * and the cause but never the password.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <dapr/plugin.h>

#include <jansson.h>
#include <libpq-fe.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MSG_LEN 320
#define NAME_LEN 160            /* "schema.table", each part <= 63 */
#define MAX_QUERY_PARAMS 2000   /* a filter larger than this is refused */
#define MAX_FILTER_DEPTH 32

typedef enum { LAYOUT_V1 = 1, LAYOUT_V2 = 2 } pg_layout;

/* SQL of the operations; table names are pasted in at init (they cannot
 * be bind parameters) after strict validation, everything else is bound. */
enum {
    SQL_GET,
    SQL_SET_LAST,   /* no etag, last-write: upsert */
    SQL_SET_FIRST,  /* no etag, first-write: insert, or replace an expired row */
    SQL_SET_ETAG,   /* etag: update the live row having that etag */
    SQL_DEL,
    SQL_DEL_ETAG,
    SQL_CLEAN_MARK, /* claim the sweep in the metadata table */
    SQL_CLEAN_DEL,
    SQL_COUNT
};

typedef struct pg_slot {
    PGconn *conn;       /* NULL: connect on next use */
    int busy;
    struct timespec idle_since;
} pg_slot;

/* A worker waiting for a connection, in the pool's FIFO of waiters.  See
 * slot_release() for why a freed slot is handed over, not just signalled. */
typedef struct pool_waiter {
    pthread_cond_t cond;
    int idx;            /* the slot handed to us; -1 while waiting */
    struct pool_waiter *next;
} pool_waiter;

typedef struct pg_store {
    dapr_host *host;
    const dapr_host_api *api;
    pg_layout layout;

    char *conninfo;             /* cleaned connection string: SECRET */
    int64_t timeout_ms;
    int64_t cleanup_ms;         /* <= 0: no sweep */
    int64_t max_idle_ms;        /* <= 0: keep idle connections */
    char table[NAME_LEN];
    char meta_table[NAME_LEN];
    char migration_key[NAME_LEN + 32];
    char cleanup_key[NAME_LEN + 32];
    char sql[SQL_COUNT][2048];

    pthread_mutex_t lock;       /* guards slots[].busy, idle_since, the waiters */
    pool_waiter *wait_head, *wait_tail;
    pg_slot *slots;
    int n_slots;

    uint64_t cleanup_timer;
} pg_store;

/* The outcome of one operation. */
typedef struct op_status {
    dapr_status status;
    char msg[MSG_LEN];
} op_status;

static void fail(op_status *st, dapr_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(op_status *st, dapr_status code, const char *fmt, ...)
{
    va_list ap;
    st->status = code;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

/* Go duration ("1h30m", "250ms", "0") or a bare number of seconds, in ms. */
static int parse_duration(const char *s, int64_t *ms)
{
    static const struct { const char *unit; double ns; } units[] = {
        {"ns", 1.0}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
        {"s", 1e9}, {"m", 60e9}, {"h", 3600e9},
    };
    const char *p = s;
    int neg = 0;
    double total = 0;

    if (!s || !*s) return -1;
    if (*p == '+' || *p == '-') neg = (*p++ == '-');
    const char *q = p;
    while (isdigit((unsigned char)*q)) q++;
    if (q != p && *q == '\0') {            /* bare integer: seconds */
        errno = 0;
        long long v = strtoll(p, NULL, 10);
        if (errno == ERANGE || v > INT64_MAX / 1000) return -1;
        *ms = (neg ? -v : v) * 1000;
        return 0;
    }
    while (*p) {
        double v = 0, scale = 1;
        int digits = 0;
        while (isdigit((unsigned char)*p)) { v = v * 10 + (*p++ - '0'); digits++; }
        if (*p == '.') {
            p++;
            while (isdigit((unsigned char)*p)) { scale /= 10; v += (*p++ - '0') * scale; digits++; }
        }
        if (!digits) return -1;
        size_t best = 0;
        double mult = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t n = strlen(units[i].unit);
            if (n > best && strncmp(p, units[i].unit, n) == 0) { best = n; mult = units[i].ns; }
        }
        if (!best) return -1;
        p += best;
        total += v * mult;
        if (total > 9.2e18) return -1;
    }
    *ms = (int64_t)(total / 1e6) * (neg ? -1 : 1);
    return 0;
}

/* A SQL identifier we paste unquoted, like Dapr does (so that both name
 * the same table): [A-Za-z_][A-Za-z0-9_]*, at most 63 bytes. */
static int valid_ident(const char *s, size_t len)
{
    if (len == 0 || len > 63 || !(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

/* "table" or "schema.table". */
static int valid_table_name(const char *s)
{
    const char *dot = strchr(s, '.');
    if (!dot) return valid_ident(s, strlen(s));
    return valid_ident(s, (size_t)(dot - s)) && valid_ident(dot + 1, strlen(dot + 1));
}

static const char *kvs_get(dapr_kvs kvs, const char *name)
{
    for (size_t i = 0; i < kvs.n; i++)
        if (kvs.items[i].name && strcasecmp(kvs.items[i].name, name) == 0)
            return kvs.items[i].value;
    return NULL;
}

/* ttlInSeconds -> seconds as text for a bind parameter, or "" for none. */
static dapr_status parse_ttl(dapr_kvs md, char out[24], op_status *st)
{
    out[0] = '\0';
    const char *v = kvs_get(md, "ttlInSeconds");
    if (!v) return DAPR_OK;
    char *end;
    errno = 0;
    long long ttl = strtoll(v, &end, 10);
    if (!*v || isspace((unsigned char)*v) || *end || errno == ERANGE) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT,
             "error parsing TTL: ttlInSeconds '%.40s' is not an integer", v);
        return st->status;
    }
    if (ttl > INT32_MAX) ttl = INT32_MAX;  /* about 68 years; int4 parameter */
    if (ttl > 0) snprintf(out, 24, "%lld", ttl);
    return DAPR_OK;
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard padded base64 (Go's StdEncoding), NUL-terminated. */
static char *b64_encode(const uint8_t *in, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len) v |= in[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static int b64_value(unsigned char c)
{
    const char *p = c ? strchr(b64chars, c) : NULL;
    return p ? (int)(p - b64chars) : -1;
}

/* Decode padded base64; NULL when malformed (or out of memory). */
static uint8_t *b64_decode(const char *in, size_t len, size_t *outlen)
{
    if (len % 4) return NULL;
    uint8_t *out = malloc(len / 4 * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == len && k >= 2) { v[k] = 0; pad++; continue; }
            if (pad || (v[k] = b64_value((unsigned char)in[i + k])) < 0) { free(out); return NULL; }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2) out[o++] = (uint8_t)(x >> 8);
        if (pad < 1) out[o++] = (uint8_t)x;
    }
    *outlen = o;
    return out;
}

/* v1 etags are xmin values: decimal uint32.  v2 etags are UUIDs. */
static int valid_etag(pg_layout layout, const char *e)
{
    size_t n = strlen(e);
    if (layout == LAYOUT_V1) {
        if (n == 0 || n > 10) return 0;
        for (size_t i = 0; i < n; i++)
            if (!isdigit((unsigned char)e[i])) return 0;
        return strtoull(e, NULL, 10) <= UINT32_MAX;
    }
    if (n != 36) return 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (e[i] != '-') return 0;
        } else if (!isxdigit((unsigned char)e[i])) {
            return 0;
        }
    }
    return 1;
}

static void deadline_in(struct timespec *d, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, d);
    d->tv_sec += ms / 1000;
    d->tv_nsec += (ms % 1000) * 1000000L;
    if (d->tv_nsec >= 1000000000L) { d->tv_sec++; d->tv_nsec -= 1000000000L; }
}

/* Milliseconds left until d (0 when past). */
static int ms_left(const struct timespec *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)(d->tv_sec - now.tv_sec) * 1000 + (d->tv_nsec - now.tv_nsec) / 1000000L;
    return ms <= 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* libpq messages end in newlines and may span lines: one line for logs. */
static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') s[--n] = '\0';
}

/* ------------------------------------------------------------------ */
/* Talking to the server                                                */
/* ------------------------------------------------------------------ */

/* Map a failed statement or connection to a Dapr status. */
static void pg_fail(PGconn *c, const PGresult *r, const char *what, op_status *st)
{
    char text[MSG_LEN - 64];
    const char *sqlstate = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(text, sizeof(text), "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    one_line(text);
    dapr_status code = DAPR_ERR_INTERNAL;
    if (PQstatus(c) != CONNECTION_OK)
        code = DAPR_ERR_UNAVAILABLE;               /* the connection is gone */
    else if (sqlstate && strncmp(sqlstate, "08", 2) == 0)
        code = DAPR_ERR_UNAVAILABLE;               /* connection exceptions */
    else if (sqlstate && (strcmp(sqlstate, "57P01") == 0 || strcmp(sqlstate, "57P02") == 0 ||
                          strcmp(sqlstate, "57P03") == 0))
        code = DAPR_ERR_UNAVAILABLE;               /* server shutting down / starting */
    else if (sqlstate && strcmp(sqlstate, "57014") == 0)
        code = DAPR_ERR_TIMEOUT;                   /* statement_timeout */
    fail(st, code, "%s: %s", what, text[0] ? text : "unknown error");
}

/*
 * Run one statement with text parameters (bytea parameters flagged in
 * binary) and wait for its result until the deadline.  Returns the result
 * (caller PQclear()s it) or NULL with st filled; *broken is set when the
 * connection must not be reused.
 */
static PGresult *pg_run(PGconn *c, const char *sql, int n, const char *const *vals,
                        const int *lens, const int *fmts, const struct timespec *deadline,
                        const char *what, op_status *st, int *broken)
{
    if (!PQsendQueryParams(c, sql, n, NULL, vals, lens, fmts, 0)) {
        pg_fail(c, NULL, what, st);
        *broken = 1;
        return NULL;
    }
    PGresult *last = NULL;
    for (;;) {
        /* Wait for input without blocking past the deadline. */
        while (PQisBusy(c)) {
            struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
            int left = ms_left(deadline);
            int rc = left > 0 ? poll(&pfd, 1, left) : 0;
            if (rc < 0 && errno == EINTR) continue;
            if (rc <= 0) {
                /* Ask the server to stop, and give up on this connection:
                 * its state is unknown until the cancel lands. */
                PGcancel *cn = PQgetCancel(c);
                char ebuf[128];
                if (cn) { PQcancel(cn, ebuf, sizeof(ebuf)); PQfreeCancel(cn); }
                PQclear(last);
                fail(st, DAPR_ERR_TIMEOUT, "%s: no answer from PostgreSQL within the timeout", what);
                *broken = 1;
                return NULL;
            }
            if (!PQconsumeInput(c)) {
                PQclear(last);
                pg_fail(c, NULL, what, st);
                *broken = 1;
                return NULL;
            }
        }
        PGresult *r = PQgetResult(c);
        if (!r) break;
        /* Keep the first error, else the last result. */
        if (last && PQresultStatus(last) == PGRES_FATAL_ERROR) PQclear(r);
        else { PQclear(last); last = r; }
    }
    if (!last) {
        pg_fail(c, NULL, what, st);
        *broken = 1;
        return NULL;
    }
    ExecStatusType es = PQresultStatus(last);
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        pg_fail(c, last, what, st);
        if (PQstatus(c) != CONNECTION_OK) *broken = 1;
        PQclear(last);
        return NULL;
    }
    return last;
}

/* A statement without parameters whose result we do not need. */
static int pg_exec(PGconn *c, const char *sql, const struct timespec *deadline,
                   const char *what, op_status *st, int *broken)
{
    PGresult *r = pg_run(c, sql, 0, NULL, NULL, NULL, deadline, what, st, broken);
    PQclear(r);
    return r ? 0 : -1;
}

/* Server notices ("relation already exists, skipping") go to the debug
 * log instead of libpq's default, stderr. */
static void notice_to_log(void *arg, const char *message)
{
    pg_store *s = arg;
    if (s->api->log_enabled(s->host, DAPR_LOG_DEBUG)) {
        char text[MSG_LEN];
        snprintf(text, sizeof(text), "%s", message);
        one_line(text);
        s->api->log(s->host, DAPR_LOG_DEBUG, "PostgreSQL: %s", text);
    }
}

/* Connect one slot.  The caller owns the slot (busy). */
static PGconn *pg_connect(pg_store *s, op_status *st)
{
    char ct[24];
    int64_t secs = (s->timeout_ms + 999) / 1000;
    snprintf(ct, sizeof(ct), "%lld", (long long)(secs < 2 ? 2 : secs));
    /* Keywords before "dbname" are defaults that the connection string may
     * override; libpq expands dbname because it holds a full conninfo. */
    const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *vals[] = {ct, "daprd", s->conninfo, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        fail(st, DAPR_ERR_INTERNAL, "cannot connect to PostgreSQL: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        char text[MSG_LEN - 40];
        snprintf(text, sizeof(text), "%s", PQerrorMessage(c));
        one_line(text);
        fail(st, DAPR_ERR_UNAVAILABLE, "cannot connect to PostgreSQL: %s", text);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice_to_log, s);
    /* Server-side limit for every statement; the number is ours. */
    char set[64];
    struct timespec d;
    int broken = 0;
    snprintf(set, sizeof(set), "SET statement_timeout = %lld", (long long)s->timeout_ms);
    deadline_in(&d, s->timeout_ms);
    if (pg_exec(c, set, &d, "cannot configure the connection", st, &broken) != 0) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/*
 * Free slot idx, with s->lock held.  When workers are waiting, the slot goes
 * straight to the oldest one (it stays busy).  Merely marking it free and
 * signalling let the worker that just gave it back, already on to its next
 * job, take it again before the woken waiter ran: with 8 host workers on 4
 * connections most wake-ups found nothing, some operations waited through
 * dozens of turns, and GET p99 was several times the statement's own time.
 */
static void slot_release(pg_store *s, int idx)
{
    pool_waiter *w = s->wait_head;
    if (!w) {
        s->slots[idx].busy = 0;
        return;
    }
    s->wait_head = w->next;
    if (!s->wait_head) s->wait_tail = NULL;
    w->idx = idx;
    pthread_cond_signal(&w->cond);
}

/*
 * Take a connection for one operation: wait for a free slot until the
 * deadline, drop it if the server closed it meanwhile (a restart sends a
 * FATAL message and closes, which makes the idle socket readable), and
 * connect if needed.  Returns the slot index, or -1 with st filled.
 */
static int pool_take(pg_store *s, const struct timespec *deadline, op_status *st)
{
    int idx = -1;
    struct timespec abs;
    /* pthread_cond_timedwait wants CLOCK_REALTIME: convert the budget. */
    clock_gettime(CLOCK_REALTIME, &abs);
    int left = ms_left(deadline);
    abs.tv_sec += left / 1000;
    abs.tv_nsec += (left % 1000) * 1000000L;
    if (abs.tv_nsec >= 1000000000L) { abs.tv_sec++; abs.tv_nsec -= 1000000000L; }

    pthread_mutex_lock(&s->lock);
    /* A free slot never coexists with waiters (slot_release hands it over),
     * so a newcomer cannot pass anyone already waiting. */
    for (int i = 0; i < s->n_slots; i++) {
        if (s->slots[i].busy) continue;
        if (idx < 0 || (!s->slots[idx].conn && s->slots[i].conn)) idx = i;
    }
    if (idx >= 0) {
        s->slots[idx].busy = 1;
    } else {
        pool_waiter w = {.idx = -1, .next = NULL};
        pthread_cond_init(&w.cond, NULL);
        if (s->wait_tail) s->wait_tail->next = &w; else s->wait_head = &w;
        s->wait_tail = &w;
        while (w.idx < 0) {
            if (pthread_cond_timedwait(&w.cond, &s->lock, &abs) == ETIMEDOUT && w.idx < 0) {
                /* Leave the queue; nobody else points at w afterwards. */
                pool_waiter **pp = &s->wait_head, *prev = NULL;
                while (*pp != &w) { prev = *pp; pp = &(*pp)->next; }
                *pp = w.next;
                if (s->wait_tail == &w) s->wait_tail = prev;
                pthread_mutex_unlock(&s->lock);
                pthread_cond_destroy(&w.cond);
                fail(st, DAPR_ERR_TIMEOUT, "no free PostgreSQL connection within the timeout "
                     "(all %d in use; see maxConns)", s->n_slots);
                return -1;
            }
        }
        pthread_cond_destroy(&w.cond);
        idx = w.idx;    /* still busy: slot_release gave it to us */
    }
    pg_slot *sl = &s->slots[idx];
    struct timespec idle = sl->idle_since;
    pthread_mutex_unlock(&s->lock);

    if (sl->conn && s->max_idle_ms > 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms = (int64_t)(now.tv_sec - idle.tv_sec) * 1000 + (now.tv_nsec - idle.tv_nsec) / 1000000L;
        if (ms > s->max_idle_ms) { PQfinish(sl->conn); sl->conn = NULL; }
    }
    if (sl->conn) {
        struct pollfd pfd = {.fd = PQsocket(sl->conn), .events = POLLIN};
        if (poll(&pfd, 1, 0) != 0 &&
            (!PQconsumeInput(sl->conn) || PQstatus(sl->conn) != CONNECTION_OK)) {
            PQfinish(sl->conn);
            sl->conn = NULL;
        }
        PGnotify *n;
        while (sl->conn && (n = PQnotifies(sl->conn)) != NULL) PQfreemem(n);
    }
    if (!sl->conn && !(sl->conn = pg_connect(s, st))) {
        pthread_mutex_lock(&s->lock);
        slot_release(s, idx);
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    return idx;
}

/* Give a connection back; a broken one is closed (reconnect on next use). */
static void pool_give(pg_store *s, int idx, int broken)
{
    pg_slot *sl = &s->slots[idx];
    if (sl->conn && (broken || PQstatus(sl->conn) != CONNECTION_OK ||
                     PQtransactionStatus(sl->conn) != PQTRANS_IDLE)) {
        PQfinish(sl->conn);
        sl->conn = NULL;
    }
    pthread_mutex_lock(&s->lock);
    clock_gettime(CLOCK_MONOTONIC, &sl->idle_since);
    slot_release(s, idx);
    pthread_mutex_unlock(&s->lock);
}

/* Undo an open transaction after a failure (best effort). */
static void rollback(PGconn *c, const struct timespec *deadline, int *broken)
{
    op_status ignore;
    if (!*broken && PQtransactionStatus(c) != PQTRANS_IDLE)
        pg_exec(c, "ROLLBACK", deadline, "rollback", &ignore, broken);
}

/* ------------------------------------------------------------------ */
/* Operations on a taken connection                                     */
/* ------------------------------------------------------------------ */

/* The value as the v1 layout stores it: JSON text, and isbinary. */
typedef struct v1_value {
    char *json;     /* NUL-terminated JSON text (owned) */
    int binary;
} v1_value;

/* JSON (that jansson and PostgreSQL both accept: no NUL, valid UTF-8) is
 * stored as itself; anything else as a base64 JSON string, like Dapr. */
static int v1_encode(dapr_bytes v, v1_value *out)
{
    const char *p = v.ptr ? (const char *)v.ptr : "";
    json_error_t err;
    json_t *j = v.len ? json_loadb(p, v.len, JSON_DECODE_ANY, &err) : NULL;
    if (j) {
        json_decref(j);
        out->binary = 0;
        out->json = malloc(v.len + 1);
        if (!out->json) return -1;
        memcpy(out->json, p, v.len);
        out->json[v.len] = '\0';
        return 0;
    }
    char *b64 = b64_encode((const uint8_t *)p, v.len);
    if (!b64) return -1;
    size_t n = strlen(b64);
    out->binary = 1;
    out->json = malloc(n + 3);
    if (out->json) {
        out->json[0] = '"';
        memcpy(out->json + 1, b64, n);
        out->json[n + 1] = '"';
        out->json[n + 2] = '\0';
    }
    free(b64);
    return out->json ? 0 : -1;
}

static int do_set(pg_store *s, PGconn *c, const dapr_state_set_req *req,
                  const struct timespec *deadline, op_status *st, int *broken)
{
    char ttl[24];
    if (!req->key || !*req->key) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "missing key in set operation");
        return -1;
    }
    if (req->concurrency > DAPR_CONCURRENCY_LAST_WRITE) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "invalid concurrency option %d", (int)req->concurrency);
        return -1;
    }
    if (parse_ttl(req->metadata, ttl, st) != DAPR_OK) return -1;
    int has_etag = req->etag && req->etag[0];
    if (has_etag && !valid_etag(s->layout, req->etag)) {
        fail(st, DAPR_ERR_ETAG_INVALID, "invalid etag value: '%.64s' is not a %s", req->etag,
             s->layout == LAYOUT_V1 ? "row version (xmin) number" : "UUID");
        return -1;
    }
    int which = has_etag ? SQL_SET_ETAG
              : req->concurrency == DAPR_CONCURRENCY_FIRST_WRITE ? SQL_SET_FIRST : SQL_SET_LAST;

    /* Parameters: v1 $1 key, $2 JSON text, $3 isbinary, $4 ttl, $5 etag;
     *             v2 $1 key, $2 bytes (binary format), $3 ttl, $4 etag. */
    const char *vals[5];
    int lens[5] = {0}, fmts[5] = {0};
    int n;
    v1_value v1 = {NULL, 0};
    vals[0] = req->key;
    if (s->layout == LAYOUT_V1) {
        if (v1_encode(req->value, &v1) != 0) {
            fail(st, DAPR_ERR_INTERNAL, "out of memory");
            return -1;
        }
        vals[1] = v1.json;
        vals[2] = v1.binary ? "true" : "false";
        vals[3] = ttl[0] ? ttl : NULL;
        vals[4] = req->etag;
        n = has_etag ? 5 : 4;
    } else {
        vals[1] = req->value.ptr ? (const char *)req->value.ptr : "";
        lens[1] = (int)req->value.len;
        fmts[1] = 1;
        vals[2] = ttl[0] ? ttl : NULL;
        vals[3] = req->etag;
        n = has_etag ? 4 : 3;
    }
    if (req->value.len > INT32_MAX) {
        free(v1.json);
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "value too large");
        return -1;
    }
    PGresult *r = pg_run(c, s->sql[which], n, vals, lens, fmts, deadline,
                         "failed to save state", st, broken);
    free(v1.json);
    if (!r) return -1;
    int changed = atoi(PQcmdTuples(r));
    PQclear(r);
    if (changed == 0) {
        fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch. error from state store: %s",
             has_etag ? "etag does not match or key not found" : "key already exists (first-write)");
        return -1;
    }
    return 0;
}

static int do_delete(pg_store *s, PGconn *c, const dapr_state_delete_req *req,
                     const struct timespec *deadline, op_status *st, int *broken)
{
    if (!req->key || !*req->key) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "missing key in delete operation");
        return -1;
    }
    if (req->concurrency > DAPR_CONCURRENCY_LAST_WRITE) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "invalid concurrency option %d", (int)req->concurrency);
        return -1;
    }
    int has_etag = req->etag && req->etag[0];
    if (has_etag && !valid_etag(s->layout, req->etag)) {
        fail(st, DAPR_ERR_ETAG_INVALID, "invalid etag value: '%.64s' is not a %s", req->etag,
             s->layout == LAYOUT_V1 ? "row version (xmin) number" : "UUID");
        return -1;
    }
    const char *vals[2] = {req->key, req->etag};
    PGresult *r = pg_run(c, s->sql[has_etag ? SQL_DEL_ETAG : SQL_DEL], has_etag ? 2 : 1,
                         vals, NULL, NULL, deadline, "failed to delete state", st, broken);
    if (!r) return -1;
    int changed = atoi(PQcmdTuples(r));
    PQclear(r);
    if (changed == 0 && has_etag) {
        fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch. error from state store: "
             "etag does not match or key not found");
        return -1;
    }
    return 0;
}

/* One read, copied out of libpq. */
typedef struct read_item {
    op_status st;
    int found;
    uint8_t *value;
    size_t len;
    char etag[48];
    char expire[32];    /* RFC 3339 UTC, "" when no TTL */
    dapr_kv md;
} read_item;

static void do_get(pg_store *s, PGconn *c, const char *key, const struct timespec *deadline,
                   read_item *it, int *broken)
{
    memset(it, 0, sizeof(*it));
    if (!key || !*key) {
        fail(&it->st, DAPR_ERR_INVALID_ARGUMENT, "missing key in get operation");
        return;
    }
    const char *vals[1] = {key};
    PGresult *r = pg_run(c, s->sql[SQL_GET], 1, vals, NULL, NULL, deadline,
                         "failed to get state", &it->st, broken);
    if (!r) return;
    if (PQntuples(r) == 1) {
        /* Columns: value text, isbinary, etag, expiry. */
        const char *v = PQgetvalue(r, 0, 0);
        size_t vlen = (size_t)PQgetlength(r, 0, 0);
        int binary = PQgetvalue(r, 0, 1)[0] == 't';
        if (s->layout == LAYOUT_V2) {
            it->value = PQunescapeBytea((const unsigned char *)v, &it->len);
            /* PQunescapeBytea memory is libpq's: copy so one free() fits all. */
            if (it->value) {
                uint8_t *copy = malloc(it->len + 1);
                if (copy) memcpy(copy, it->value, it->len);
                PQfreemem(it->value);
                it->value = copy;
            }
        } else if (binary) {
            it->value = b64_decode(v, vlen, &it->len);
            if (!it->value)
                fail(&it->st, DAPR_ERR_INTERNAL, "failed to decode base64 data of key '%.80s'", key);
        } else if ((it->value = malloc(vlen + 1)) != NULL) {
            memcpy(it->value, v, vlen);
            it->len = vlen;
        }
        if (!it->value && it->st.status == DAPR_OK)
            fail(&it->st, DAPR_ERR_INTERNAL, "out of memory");
        if (it->st.status == DAPR_OK) {
            it->found = 1;
            snprintf(it->etag, sizeof(it->etag), "%s", PQgetvalue(r, 0, 2));
            snprintf(it->expire, sizeof(it->expire), "%s", PQgetvalue(r, 0, 3));
        }
    }
    PQclear(r);
}

/* ------------------------------------------------------------------ */
/* Query (v1): JSON query -> parameterised SQL                          */
/* ------------------------------------------------------------------ */

typedef struct qbuild {
    char *sql;
    size_t len, cap;
    char *params[MAX_QUERY_PARAMS];
    int n;
    int oom;
} qbuild;

static void qb_add(qbuild *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void qb_add(qbuild *q, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = q->cap - q->len;
        va_start(ap, fmt);
        int n = vsnprintf(q->sql ? q->sql + q->len : NULL, q->sql ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { q->oom = 1; return; }
        if (q->sql && (size_t)n < room) { q->len += (size_t)n; return; }
        size_t cap = (q->cap ? q->cap : 256) * 2 + (size_t)n;
        char *p = realloc(q->sql, cap);
        if (!p) { q->oom = 1; return; }
        q->sql = p;
        q->cap = cap;
    }
}

/* Bind a parameter (copied); returns its number, 0 when there are too many. */
static int qb_param(qbuild *q, const char *v, size_t len)
{
    if (q->n >= MAX_QUERY_PARAMS) return 0;
    char *p = malloc(len + 1);
    if (!p) { q->oom = 1; return 0; }
    memcpy(p, v, len);
    p[len] = '\0';
    q->params[q->n++] = p;
    return q->n;
}

/*
 * "person.org" -> "jsonb_extract_path(value, $3::text, $4::text)": each
 * path part is a bind parameter, so no part of the path ever becomes SQL.
 * Returns the expression text in a new string, or NULL.
 */
static char *path_expr(qbuild *q, const char *path, op_status *st)
{
    size_t plen = strlen(path);
    if (plen == 0) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: empty key");
        return NULL;
    }
    qbuild e = {0};
    qb_add(&e, "jsonb_extract_path(value");
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0) {
            free(e.sql);
            fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: key '%.80s' has an empty part", path);
            return NULL;
        }
        int num = qb_param(q, p, n);
        if (!num) {
            free(e.sql);
            fail(st, q->oom ? DAPR_ERR_INTERNAL : DAPR_ERR_INVALID_ARGUMENT,
                 q->oom ? "out of memory" : "query too large");
            return NULL;
        }
        qb_add(&e, ", $%d::text", num);
        if (!dot) break;
        p = dot + 1;
    }
    qb_add(&e, ")");
    if (e.oom) {
        free(e.sql);
        fail(st, DAPR_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    return e.sql;
}

/* Bind a JSON value as a jsonb parameter; returns its number or 0. */
static int json_param(qbuild *q, json_t *v, op_status *st)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    int num = text ? qb_param(q, text, strlen(text)) : 0;
    free(text);
    if (!num)
        fail(st, q->oom || !text ? DAPR_ERR_INTERNAL : DAPR_ERR_INVALID_ARGUMENT,
             q->oom || !text ? "out of memory" : "query too large");
    return num;
}

/* The single "path": value member of a comparison operand. */
static int operand(json_t *arg, const char *op, const char **path, json_t **val, op_status *st)
{
    if (!json_is_object(arg) || json_object_size(arg) != 1) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: %s wants an object with one key", op);
        return -1;
    }
    void *it = json_object_iter(arg);
    *path = json_object_iter_key(it);
    *val = json_object_iter_value(it);
    return 0;
}

static int emit_filter(qbuild *q, json_t *f, int depth, op_status *st)
{
    static const struct { const char *name; const char *sql; int ordered; } cmp[] = {
        {"EQ", "=", 0}, {"NEQ", "<>", 0}, {"GT", ">", 1},
        {"GTE", ">=", 1}, {"LT", "<", 1}, {"LTE", "<=", 1},
    };
    if (depth > MAX_FILTER_DEPTH) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: filter nested too deeply");
        return -1;
    }
    if (!json_is_object(f) || json_object_size(f) != 1) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: a filter is an object with one operator");
        return -1;
    }
    void *it = json_object_iter(f);
    const char *op = json_object_iter_key(it);
    json_t *arg = json_object_iter_value(it);

    if (strcmp(op, "AND") == 0 || strcmp(op, "OR") == 0) {
        if (!json_is_array(arg) || json_array_size(arg) == 0) {
            fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: %s wants a non-empty array", op);
            return -1;
        }
        qb_add(q, "(");
        for (size_t i = 0; i < json_array_size(arg); i++) {
            if (i) qb_add(q, " %s ", op);
            if (emit_filter(q, json_array_get(arg, i), depth + 1, st) != 0) return -1;
        }
        qb_add(q, ")");
        return 0;
    }

    const char *path;
    json_t *val;
    if (strcmp(op, "IN") == 0) {
        if (operand(arg, op, &path, &val, st) != 0) return -1;
        if (!json_is_array(val) || json_array_size(val) == 0) {
            fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: IN wants a non-empty array for '%.80s'", path);
            return -1;
        }
        char *e = path_expr(q, path, st);
        if (!e) return -1;
        qb_add(q, "%s IN (", e);
        free(e);
        for (size_t i = 0; i < json_array_size(val); i++) {
            int num = json_param(q, json_array_get(val, i), st);
            if (!num) return -1;
            qb_add(q, "%s$%d::jsonb", i ? ", " : "", num);
        }
        qb_add(q, ")");
        return 0;
    }
    for (size_t k = 0; k < sizeof(cmp) / sizeof(cmp[0]); k++) {
        if (strcmp(op, cmp[k].name) != 0) continue;
        if (operand(arg, op, &path, &val, st) != 0) return -1;
        if (cmp[k].ordered && !json_is_number(val)) {
            /* As Dapr: ordering comparisons take numbers only. */
            fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: %s on '%.80s' wants a number", op, path);
            return -1;
        }
        char *e = path_expr(q, path, st);
        if (!e) return -1;
        int num = json_param(q, val, st);
        if (num && cmp[k].ordered)
            /* Compare numbers as numbers; a non-number field never matches. */
            qb_add(q, "(jsonb_typeof(%s) = 'number' AND %s %s $%d::jsonb)", e, e, cmp[k].sql, num);
        else if (num)
            qb_add(q, "%s %s $%d::jsonb", e, cmp[k].sql, num);
        free(e);
        return num ? 0 : -1;
    }
    fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: unknown filter operator '%.40s'", op);
    return -1;
}

/*
 * Build the SQL of a v1 query.  Only the table name (validated at init),
 * the operators (from a fixed list) and parameter numbers are pasted in;
 * every path part, value, prefix, limit and offset is a bind parameter.
 * Expired rows and binary rows (not JSON documents) never match.  The key
 * is the last sort column so that pages are stable.
 */
static int build_query(pg_store *s, const dapr_state_query_req *req, qbuild *q,
                       long long *limit, long long *offset, op_status *st)
{
    json_error_t err;
    json_t *doc = json_loadb(req->query_json.ptr ? (const char *)req->query_json.ptr : "",
                             req->query_json.len, 0, &err);
    int rc = -1;
    *limit = 0;
    *offset = 0;
    if (!json_is_object(doc)) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: not a JSON object: %s",
             doc ? "wrong type" : err.text);
        goto out;
    }
    const char *prefix = req->key_prefix ? req->key_prefix : "";
    int pnum = qb_param(q, prefix, strlen(prefix));
    if (!pnum) { fail(st, DAPR_ERR_INTERNAL, "out of memory"); goto out; }
    qb_add(q, "SELECT key, value::text, xmin::text FROM %s WHERE NOT isbinary "
              "AND (expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP) "
              "AND starts_with(key, $%d::text)", s->table, pnum);

    json_t *filter = json_object_get(doc, "filter");
    if (filter && !(json_is_object(filter) && json_object_size(filter) == 0)) {
        qb_add(q, " AND ");
        if (emit_filter(q, filter, 0, st) != 0) goto out;
    }

    qb_add(q, " ORDER BY ");
    json_t *sort = json_object_get(doc, "sort");
    if (sort && !json_is_array(sort)) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: sort must be an array");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(sort); i++) {
        json_t *item = json_array_get(sort, i);
        const char *key = json_string_value(json_object_get(item, "key"));
        json_t *ord = json_object_get(item, "order");
        const char *order = ord ? json_string_value(ord) : "ASC";
        if (!key || !order || (strcmp(order, "ASC") != 0 && strcmp(order, "DESC") != 0)) {
            fail(st, DAPR_ERR_INVALID_ARGUMENT,
                 "query: each sort item wants a \"key\" and an \"order\" of ASC or DESC");
            goto out;
        }
        char *e = path_expr(q, key, st);
        if (!e) goto out;
        qb_add(q, "%s %s, ", e, order);
        free(e);
    }
    qb_add(q, "key");

    json_t *page = json_object_get(doc, "page");
    if (page) {
        json_t *lim = json_object_get(page, "limit");
        json_t *tok = json_object_get(page, "token");
        if (!json_is_object(page) || (lim && (!json_is_integer(lim) || json_integer_value(lim) < 0)) ||
            (tok && !json_is_string(tok))) {
            fail(st, DAPR_ERR_INVALID_ARGUMENT,
                 "query: page wants a non-negative integer limit and a string token");
            goto out;
        }
        if (lim) *limit = json_integer_value(lim);
        const char *t = tok ? json_string_value(tok) : "";
        if (*t) {
            char *end;
            errno = 0;
            *offset = strtoll(t, &end, 10);
            if (!isdigit((unsigned char)*t) || *end || errno == ERANGE) {
                fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: invalid page token '%.40s'", t);
                goto out;
            }
        }
    }
    char num[24];
    if (*limit > 0) {
        snprintf(num, sizeof(num), "%lld", *limit);
        qb_add(q, " LIMIT $%d::bigint", qb_param(q, num, strlen(num)));
    }
    if (*offset > 0) {
        snprintf(num, sizeof(num), "%lld", *offset);
        qb_add(q, " OFFSET $%d::bigint", qb_param(q, num, strlen(num)));
    }
    if (q->oom) { fail(st, DAPR_ERR_INTERNAL, "out of memory"); goto out; }
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The vtable                                                           */
/* ------------------------------------------------------------------ */

static void st_get(void *inst, const dapr_state_get_req *req, dapr_state_get_cb cb, void *ctx)
{
    pg_store *s = inst;
    read_item it;
    struct timespec d;
    int broken = 0;

    memset(&it, 0, sizeof(it));
    deadline_in(&d, s->timeout_ms);
    int idx = pool_take(s, &d, &it.st);
    if (idx >= 0) {
        do_get(s, s->slots[idx].conn, req->key, &d, &it, &broken);
        pool_give(s, idx, broken);
    }
    dapr_state_get_result res = {.status = it.st.status,
                                 .message = it.st.status == DAPR_OK ? NULL : it.st.msg};
    if (it.found) {
        res.found = 1;
        res.value.ptr = it.value;
        res.value.len = it.len;
        res.etag = it.etag;
        if (it.expire[0]) {
            it.md.name = "ttlExpireTime";
            it.md.value = it.expire;
            res.metadata.items = &it.md;
            res.metadata.n = 1;
        }
    }
    uint8_t *value = it.value;
    cb(ctx, &res);
    free(value);
}

static void st_set(void *inst, const dapr_state_set_req *req, dapr_result_cb cb, void *ctx)
{
    pg_store *s = inst;
    op_status st = {DAPR_OK, ""};
    struct timespec d;
    int broken = 0;

    deadline_in(&d, s->timeout_ms);
    int idx = pool_take(s, &d, &st);
    if (idx >= 0) {
        do_set(s, s->slots[idx].conn, req, &d, &st, &broken);
        pool_give(s, idx, broken);
    }
    dapr_result res = {st.status, st.status == DAPR_OK ? NULL : st.msg};
    cb(ctx, &res);
}

static void st_del(void *inst, const dapr_state_delete_req *req, dapr_result_cb cb, void *ctx)
{
    pg_store *s = inst;
    op_status st = {DAPR_OK, ""};
    struct timespec d;
    int broken = 0;

    deadline_in(&d, s->timeout_ms);
    int idx = pool_take(s, &d, &st);
    if (idx >= 0) {
        do_delete(s, s->slots[idx].conn, req, &d, &st, &broken);
        pool_give(s, idx, broken);
    }
    dapr_result res = {st.status, st.status == DAPR_OK ? NULL : st.msg};
    cb(ctx, &res);
}

/* All operations in one transaction: any failure (an etag check too)
 * rolls everything back. */
static void st_transact(void *inst, const dapr_state_txn_req *req, dapr_result_cb cb, void *ctx)
{
    pg_store *s = inst;
    op_status st = {DAPR_OK, ""};
    struct timespec d;
    int broken = 0;

    deadline_in(&d, s->timeout_ms);
    int idx = req->n_ops ? pool_take(s, &d, &st) : -1;
    if (idx >= 0) {
        PGconn *c = s->slots[idx].conn;
        int failed = pg_exec(c, "BEGIN", &d, "failed to begin transaction", &st, &broken) != 0;
        for (size_t i = 0; i < req->n_ops && !failed; i++) {
            const dapr_state_op *op = &req->ops[i];
            if (op->kind == DAPR_STATE_OP_UPSERT)
                failed = do_set(s, c, &op->set, &d, &st, &broken) != 0;
            else if (op->kind == DAPR_STATE_OP_DELETE)
                failed = do_delete(s, c, &op->del, &d, &st, &broken) != 0;
            else {
                fail(&st, DAPR_ERR_NOT_SUPPORTED, "operation type %d not supported", (int)op->kind);
                failed = 1;
            }
        }
        if (failed || pg_exec(c, "COMMIT", &d, "failed to commit transaction", &st, &broken) != 0)
            rollback(c, &d, &broken);
        pool_give(s, idx, broken);
    }
    dapr_result res = {st.status, st.status == DAPR_OK ? NULL : st.msg};
    cb(ctx, &res);
}

static void st_query(void *inst, const dapr_state_query_req *req, dapr_state_query_cb cb, void *ctx)
{
    pg_store *s = inst;
    op_status st = {DAPR_OK, ""};
    qbuild q;
    long long limit, offset;
    PGresult *r = NULL;
    dapr_state_query_item *items = NULL;
    char token[24] = "";
    int n = 0;

    memset(&q, 0, sizeof(q));
    if (build_query(s, req, &q, &limit, &offset, &st) == 0) {
        struct timespec d;
        int broken = 0;
        deadline_in(&d, s->timeout_ms);
        int idx = pool_take(s, &d, &st);
        if (idx >= 0) {
            r = pg_run(s->slots[idx].conn, q.sql, q.n, (const char *const *)q.params, NULL, NULL,
                       &d, "failed to query state", &st, &broken);
            pool_give(s, idx, broken);
        }
    }
    if (r) {
        n = PQntuples(r);
        items = calloc(n ? (size_t)n : 1, sizeof(*items));
        if (!items) {
            fail(&st, DAPR_ERR_INTERNAL, "out of memory");
            n = 0;
        }
        for (int i = 0; i < n; i++) {
            items[i].key = PQgetvalue(r, i, 0);
            items[i].data.ptr = (const uint8_t *)PQgetvalue(r, i, 1);
            items[i].data.len = (size_t)PQgetlength(r, i, 1);
            items[i].etag = PQgetvalue(r, i, 2);
        }
        /* A full page may have a next one; the token is the next offset. */
        if (limit > 0 && n == limit)
            snprintf(token, sizeof(token), "%lld", offset + limit);
    }
    dapr_state_query_result res = {.status = st.status,
                                   .message = st.status == DAPR_OK ? NULL : st.msg,
                                   .items = st.status == DAPR_OK ? items : NULL,
                                   .n_items = st.status == DAPR_OK ? (size_t)n : 0,
                                   .token = token[0] ? token : NULL};
    cb(ctx, &res);
    free(items);
    PQclear(r);
    for (int i = 0; i < q.n; i++) free(q.params[i]);
    free(q.sql);
}

/*
 * Periodic sweep of expired rows (cleanupInterval), as Dapr: the
 * last-cleanup row of the metadata table is moved forward only when the
 * previous sweep is older than the interval, and whoever moves it sweeps,
 * so many sidecars on one database sweep once per interval between them.
 */
static void cleanup_task(void *arg)
{
    pg_store *s = arg;
    op_status st = {DAPR_OK, ""};
    struct timespec d;
    int broken = 0;
    long removed = -1;
    char interval[24];

    deadline_in(&d, s->timeout_ms);
    int idx = pool_take(s, &d, &st);
    if (idx < 0) goto out;
    PGconn *c = s->slots[idx].conn;
    /* A little slack so that timer jitter never skips a sweep. */
    snprintf(interval, sizeof(interval), "%lld", (long long)(s->cleanup_ms - 500));
    const char *vals[2] = {s->cleanup_key, interval};
    if (pg_exec(c, "BEGIN", &d, "cleanup: begin", &st, &broken) == 0) {
        PGresult *r = pg_run(c, s->sql[SQL_CLEAN_MARK], 2, vals, NULL, NULL, &d,
                             "cleanup: update last-cleanup", &st, &broken);
        int claimed = r ? atoi(PQcmdTuples(r)) : -1;
        PQclear(r);
        if (claimed > 0) {
            r = pg_run(c, s->sql[SQL_CLEAN_DEL], 0, NULL, NULL, NULL, &d,
                       "cleanup: delete expired rows", &st, &broken);
            if (r) removed = atol(PQcmdTuples(r));
            PQclear(r);
        }
        if (st.status != DAPR_OK || pg_exec(c, "COMMIT", &d, "cleanup: commit", &st, &broken) != 0)
            rollback(c, &d, &broken);
    }
    pool_give(s, idx, broken);
out:
    if (st.status != DAPR_OK)
        s->api->log(s->host, DAPR_LOG_WARN, "error removing expired state: %s", st.msg);
    else if (removed >= 0)
        s->api->log(s->host, DAPR_LOG_DEBUG, "removed %ld expired rows from %s", removed, s->table);
}

/* ------------------------------------------------------------------ */
/* Init: metadata, connection string, migrations                        */
/* ------------------------------------------------------------------ */

/* Parameters of pgx (Dapr's Go driver) that libpq does not know. */
static int pgx_only(const char *name, size_t len)
{
    static const char *names[] = {
        "default_query_exec_mode", "statement_cache_capacity",
        "description_cache_capacity", "prefer_simple_protocol",
    };
    if (len > 5 && strncmp(name, "pool_", 5) == 0) return 1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && strncmp(name, names[i], len) == 0) return 1;
    return 0;
}

/* Remember pool_max_conns / pool_max_conn_idle_time for maxConns and
 * connectionMaxIdleTime (values copied, at most 31 bytes). */
typedef struct pgx_opts {
    char max_conns[32];
    char max_idle[32];
    char dropped[160];  /* names only, for a warning */
} pgx_opts;

static void note_pgx(pgx_opts *o, const char *name, size_t nlen, const char *val, size_t vlen)
{
    char *dst = NULL;
    if (nlen == 14 && strncmp(name, "pool_max_conns", 14) == 0) dst = o->max_conns;
    if (nlen == 23 && strncmp(name, "pool_max_conn_idle_time", 23) == 0) dst = o->max_idle;
    if (dst) snprintf(dst, 32, "%.*s", (int)(vlen < 31 ? vlen : 31), val);
    size_t used = strlen(o->dropped);
    snprintf(o->dropped + used, sizeof(o->dropped) - used, "%s%.*s", used ? ", " : "", (int)nlen, name);
}

/*
 * Drop pgx-only parameters from a key=value connection string or from the
 * query part of a postgres:// URL, so that libpq accepts what Dapr accepts.
 * Returns a new string (NULL when out of memory).
 */
static char *strip_pgx_params(const char *in, pgx_opts *o)
{
    size_t len = strlen(in);
    char *out = malloc(len + 1);
    if (!out) return NULL;
    size_t o_len = 0;

    if (strncmp(in, "postgres://", 11) == 0 || strncmp(in, "postgresql://", 13) == 0) {
        const char *q = strchr(in, '?');
        if (!q) { memcpy(out, in, len + 1); return out; }
        memcpy(out, in, (size_t)(q - in));
        o_len = (size_t)(q - in);
        const char *p = q + 1;
        int first = 1;
        while (*p) {
            const char *amp = strchr(p, '&');
            size_t n = amp ? (size_t)(amp - p) : strlen(p);
            const char *eq = memchr(p, '=', n);
            size_t nlen = eq ? (size_t)(eq - p) : n;
            if (pgx_only(p, nlen)) {
                note_pgx(o, p, nlen, eq ? eq + 1 : "", eq ? n - nlen - 1 : 0);
            } else if (n) {
                out[o_len++] = first ? '?' : '&';
                memcpy(out + o_len, p, n);
                o_len += n;
                first = 0;
            }
            if (!amp) break;
            p = amp + 1;
        }
        out[o_len] = '\0';
        return out;
    }

    /* key = value pairs; values may be 'quoted' with \ escapes. */
    const char *p = in;
    while (*p) {
        const char *start = p;
        while (isspace((unsigned char)*p)) p++;
        const char *name = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p)) p++;
        size_t nlen = (size_t)(p - name);
        while (isspace((unsigned char)*p)) p++;
        if (*p != '=') {        /* malformed: keep the rest, libpq will say */
            size_t n = strlen(start);
            memcpy(out + o_len, start, n);
            o_len += n;
            break;
        }
        p++;
        while (isspace((unsigned char)*p)) p++;
        const char *val = p;
        if (*p == '\'') {
            p++;
            while (*p && *p != '\'') { if (*p == '\\' && p[1]) p++; p++; }
            if (*p) p++;
        } else {
            while (*p && !isspace((unsigned char)*p)) { if (*p == '\\' && p[1]) p++; p++; }
        }
        if (pgx_only(name, nlen)) {
            note_pgx(o, name, nlen, val, (size_t)(p - val));
        } else {
            memcpy(out + o_len, start, (size_t)(p - start));
            o_len += (size_t)(p - start);
        }
    }
    out[o_len] = '\0';
    return out;
}

/* Is the field in the manifest (not only a schema default)? */
static const char *meta_explicit(pg_store *s, const char *name)
{
    return kvs_get(s->api->metadata_all(s->host), name);
}

static const char *meta(pg_store *s, const char *name, const char *def)
{
    const char *v = s->api->metadata_get(s->host, name);
    return v && *v ? v : def;
}

/* Run the migrations under the metadata table's lock row, as Dapr. */
static int migrate(pg_store *s, PGconn *c, char *errbuf, size_t errlen)
{
    op_status st = {DAPR_OK, ""};
    struct timespec d;
    int broken = 0;
    char sql[768];
    int target = s->layout == LAYOUT_V1 ? 2 : 1;

    /* Migrations may wait on another sidecar's lock: allow a minute. */
    deadline_in(&d, s->timeout_ms > 60000 ? s->timeout_ms : 60000);
    snprintf(sql, sizeof(sql), "CREATE TABLE IF NOT EXISTS %s (key text NOT NULL PRIMARY KEY, "
             "value text NOT NULL)", s->meta_table);
    /* Two sidecars creating it at once may collide on the type's unique
     * index (23505): the table then exists, so retry a few times. */
    for (int i = 0; i < 3; i++) {
        st.status = DAPR_OK;
        if (pg_exec(c, sql, &d, "failed to create the metadata table", &st, &broken) == 0) break;
        if (broken) goto fail;
        struct timespec pause = {0, 50 * 1000000L};
        nanosleep(&pause, NULL);
    }
    if (st.status != DAPR_OK) goto fail;
    snprintf(sql, sizeof(sql), "INSERT INTO %s (key, value) VALUES ('lock', 'lock') "
             "ON CONFLICT (key) DO NOTHING", s->meta_table);
    if (pg_exec(c, sql, &d, "failed to create the migration lock row", &st, &broken) != 0) goto fail;
    if (pg_exec(c, "BEGIN", &d, "failed to begin the migration", &st, &broken) != 0) goto fail;
    snprintf(sql, sizeof(sql), "SELECT value FROM %s WHERE key = 'lock' FOR UPDATE", s->meta_table);
    if (pg_exec(c, sql, &d, "failed to take the migration lock", &st, &broken) != 0) goto fail;

    snprintf(sql, sizeof(sql), "SELECT value FROM %s WHERE key = $1", s->meta_table);
    const char *key = s->migration_key;
    PGresult *r = pg_run(c, sql, 1, &key, NULL, NULL, &d, "failed to read the migration level",
                         &st, &broken);
    if (!r) goto fail;
    int level = 0;
    if (PQntuples(r) == 1) {
        char *end;
        const char *v = PQgetvalue(r, 0, 0);
        long l = strtol(v, &end, 10);
        if (!*v || *end || l < 0) {
            fail(&st, DAPR_ERR_INTERNAL, "invalid migration level '%.20s' in %s", v, s->meta_table);
            PQclear(r);
            goto fail;
        }
        level = (int)l;
    }
    PQclear(r);
    /* The level row is per metadata table, not per state table (Dapr's v1
     * key is just "migrations"): a level without the table means another
     * table was migrated, so start from scratch (every step is idempotent). */
    const char *t = s->table;
    r = pg_run(c, "SELECT to_regclass($1::text) IS NULL", 1, &t, NULL, NULL, &d,
               "failed to look up the state table", &st, &broken);
    if (!r) goto fail;
    if (PQgetvalue(r, 0, 0)[0] == 't') level = 0;
    PQclear(r);

    if (s->layout == LAYOUT_V1) {
        if (level < 1) {
            s->api->log(s->host, DAPR_LOG_INFO, "creating state table '%s'", s->table);
            snprintf(sql, sizeof(sql), "CREATE TABLE IF NOT EXISTS %s (key text NOT NULL PRIMARY KEY, "
                     "value jsonb NOT NULL, isbinary boolean NOT NULL, "
                     "insertdate TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(), "
                     "updatedate TIMESTAMP WITH TIME ZONE NULL)", s->table);
            if (pg_exec(c, sql, &d, "failed to create the state table", &st, &broken) != 0) goto fail;
        }
        if (level < 2) {
            snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN IF NOT EXISTS expiredate "
                     "TIMESTAMP WITH TIME ZONE", s->table);
            if (pg_exec(c, sql, &d, "failed to add column expiredate", &st, &broken) != 0) goto fail;
        }
        /* Our own column (see the top of the file), outside Dapr's level
         * numbering so that real Dapr never sees a level it does not know.
         * ALTER only when missing: ALTER TABLE locks the table. */
        r = pg_run(c, "SELECT 1 FROM pg_attribute WHERE attrelid = $1::text::regclass "
                   "AND attname = 'rawvalue' AND NOT attisdropped", 1, &t, NULL, NULL, &d,
                   "failed to inspect the state table", &st, &broken);
        if (!r) goto fail;
        int has_raw = PQntuples(r) > 0;
        PQclear(r);
        if (!has_raw) {
            snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN IF NOT EXISTS rawvalue text NULL",
                     s->table);
            if (pg_exec(c, sql, &d, "failed to add column rawvalue", &st, &broken) != 0) goto fail;
        }
    } else if (level < 1) {
        s->api->log(s->host, DAPR_LOG_INFO, "creating state table '%s'", s->table);
        snprintf(sql, sizeof(sql), "CREATE TABLE IF NOT EXISTS %s (key text NOT NULL PRIMARY KEY, "
                 "value bytea NOT NULL, etag uuid NOT NULL DEFAULT gen_random_uuid(), "
                 "created_at timestamp with time zone NOT NULL DEFAULT now(), "
                 "updated_at timestamp with time zone, expires_at timestamp with time zone)",
                 s->table);
        if (pg_exec(c, sql, &d, "failed to create the state table", &st, &broken) != 0) goto fail;
        /* The name PostgreSQL gives Dapr's unnamed index. */
        const char *dot = strchr(s->table, '.');
        snprintf(sql, sizeof(sql), "CREATE INDEX IF NOT EXISTS %s_expires_at_idx ON %s (expires_at)",
                 dot ? dot + 1 : s->table, s->table);
        if (pg_exec(c, sql, &d, "failed to create the expiry index", &st, &broken) != 0) goto fail;
    }
    if (level < target) {
        char lvl[8];
        snprintf(lvl, sizeof(lvl), "%d", target);
        snprintf(sql, sizeof(sql), "INSERT INTO %s (key, value) VALUES ($1, $2) "
                 "ON CONFLICT (key) DO UPDATE SET value = $2", s->meta_table);
        const char *vals[2] = {s->migration_key, lvl};
        r = pg_run(c, sql, 2, vals, NULL, NULL, &d, "failed to record the migration level",
                   &st, &broken);
        if (!r) goto fail;
        PQclear(r);
    }
    if (pg_exec(c, "COMMIT", &d, "failed to commit the migration", &st, &broken) != 0) goto fail;
    return 0;

fail:
    rollback(c, &d, &broken);
    snprintf(errbuf, errlen, "%s", st.msg);
    return -1;
}

static void build_sql(pg_store *s)
{
    const char *t = s->table;
    if (s->layout == LAYOUT_V1) {
        const char *live = "(expiredate IS NULL OR expiredate > CURRENT_TIMESTAMP)";
        /* rawvalue only when it differs from jsonb's own rendering. */
        const char *raw = "CASE WHEN $3::boolean OR $2::text::jsonb::text = $2::text "
                          "THEN NULL ELSE $2::text END";
        const char *exp = "CURRENT_TIMESTAMP + $4::integer * interval '1 second'";
        snprintf(s->sql[SQL_GET], sizeof(s->sql[0]),
                 "SELECT CASE WHEN isbinary THEN value #>> '{}' "
                 "WHEN rawvalue IS NOT NULL AND rawvalue::jsonb = value THEN rawvalue "
                 "ELSE value::text END, isbinary, xmin::text, "
                 "to_char(expiredate AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                 "FROM %s WHERE key = $1 AND %s", t, live);
        snprintf(s->sql[SQL_SET_LAST], sizeof(s->sql[0]),
                 "INSERT INTO %s AS t (key, value, isbinary, rawvalue, expiredate) "
                 "VALUES ($1, $2::text::jsonb, $3::boolean, %s, %s) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                 "isbinary = excluded.isbinary, rawvalue = excluded.rawvalue, "
                 "updatedate = CURRENT_TIMESTAMP, expiredate = excluded.expiredate", t, raw, exp);
        /* First-write: an expired row not swept yet counts as absent. */
        snprintf(s->sql[SQL_SET_FIRST], sizeof(s->sql[0]), "%.1900s WHERE t.expiredate IS NOT NULL "
                 "AND t.expiredate <= CURRENT_TIMESTAMP", s->sql[SQL_SET_LAST]);
        snprintf(s->sql[SQL_SET_ETAG], sizeof(s->sql[0]),
                 "UPDATE %s SET value = $2::text::jsonb, isbinary = $3::boolean, rawvalue = %s, "
                 "updatedate = CURRENT_TIMESTAMP, expiredate = %s "
                 "WHERE key = $1 AND xmin = $5::text::xid AND %s", t, raw, exp, live);
        snprintf(s->sql[SQL_DEL], sizeof(s->sql[0]), "DELETE FROM %s WHERE key = $1", t);
        snprintf(s->sql[SQL_DEL_ETAG], sizeof(s->sql[0]),
                 "DELETE FROM %s WHERE key = $1 AND xmin = $2::text::xid AND %s", t, live);
        snprintf(s->sql[SQL_CLEAN_DEL], sizeof(s->sql[0]),
                 "DELETE FROM %s WHERE expiredate IS NOT NULL AND expiredate < now()", t);
    } else {
        const char *live = "(expires_at IS NULL OR expires_at > now())";
        const char *exp = "now() + $3::integer * interval '1 second'";
        snprintf(s->sql[SQL_GET], sizeof(s->sql[0]),
                 "SELECT value, false, etag::text, "
                 "to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                 "FROM %s WHERE key = $1 AND %s", t, live);
        snprintf(s->sql[SQL_SET_LAST], sizeof(s->sql[0]),
                 "INSERT INTO %s AS t (key, value, etag, expires_at) "
                 "VALUES ($1, $2::bytea, gen_random_uuid(), %s) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now(), "
                 "etag = excluded.etag, expires_at = excluded.expires_at", t, exp);
        snprintf(s->sql[SQL_SET_FIRST], sizeof(s->sql[0]), "%.1900s WHERE t.expires_at IS NOT NULL "
                 "AND t.expires_at <= now()", s->sql[SQL_SET_LAST]);
        snprintf(s->sql[SQL_SET_ETAG], sizeof(s->sql[0]),
                 "UPDATE %s SET value = $2::bytea, updated_at = now(), etag = gen_random_uuid(), "
                 "expires_at = %s WHERE key = $1 AND etag = $4::uuid AND %s", t, exp, live);
        snprintf(s->sql[SQL_DEL], sizeof(s->sql[0]), "DELETE FROM %s WHERE key = $1", t);
        snprintf(s->sql[SQL_DEL_ETAG], sizeof(s->sql[0]),
                 "DELETE FROM %s WHERE key = $1 AND etag = $2::uuid AND %s", t, live);
        snprintf(s->sql[SQL_CLEAN_DEL], sizeof(s->sql[0]),
                 "DELETE FROM %s WHERE expires_at IS NOT NULL AND expires_at < now()", t);
    }
    snprintf(s->sql[SQL_CLEAN_MARK], sizeof(s->sql[0]),
             "INSERT INTO %s AS m (key, value) VALUES ($1, now()::text) "
             "ON CONFLICT (key) DO UPDATE SET value = now()::text "
             "WHERE (EXTRACT('epoch' FROM now() - m.value::timestamp with time zone) * 1000)::bigint "
             "> $2::bigint", s->meta_table);
}

static void store_free(pg_store *s)
{
    if (s->cleanup_timer) s->api->timer_stop(s->host, s->cleanup_timer);
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].conn) PQfinish(s->slots[i].conn);
    free(s->slots);
    if (s->conninfo) {
        /* It may hold a password: do not leave it in freed memory. */
        volatile char *p = s->conninfo;
        while (*p) *p++ = '\0';
        free(s->conninfo);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* "schema" metadata applies to names given without one. */
static int table_name(char *out, const char *schema, const char *name, const char *what,
                      char *errbuf, size_t errlen)
{
    if (schema && *schema && !strchr(name, '.'))
        snprintf(out, NAME_LEN, "%s.%s", schema, name);
    else
        snprintf(out, NAME_LEN, "%s", name);
    if (!valid_table_name(out)) {
        snprintf(errbuf, errlen, "invalid %s '%.100s': use [schema.]name of letters, digits and "
                 "underscores (at most 63 each, not starting with a digit)", what, out);
        return -1;
    }
    return 0;
}

static int meta_duration(pg_store *s, const char *name, const char *alias, const char *def,
                         int64_t *ms, char *errbuf, size_t errlen)
{
    const char *v = meta_explicit(s, name);
    const char *used = name;
    if (!v && alias && (v = meta_explicit(s, alias)) != NULL) used = alias;
    if (!v) v = meta(s, name, def);
    if (parse_duration(v, ms) != 0) {
        snprintf(errbuf, errlen, "invalid value for '%s': '%.40s' is not a duration", used, v);
        return -1;
    }
    return 0;
}

static dapr_status pg_init(pg_layout layout, dapr_host *host, const dapr_host_api *api,
                           void **instance, char *errbuf, size_t errlen)
{
    pg_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    s->host = host;
    s->api = api;
    s->layout = layout;
    pthread_mutex_init(&s->lock, NULL);
    dapr_status code = DAPR_ERR_INVALID_ARGUMENT;

    const char *conn = meta(s, "connectionString", NULL);
    if (!conn) {
        snprintf(errbuf, errlen, "missing connectionString");
        goto out;
    }
    pgx_opts pgx;
    memset(&pgx, 0, sizeof(pgx));
    if (!(s->conninfo = strip_pgx_params(conn, &pgx))) {
        snprintf(errbuf, errlen, "out of memory");
        code = DAPR_ERR_INTERNAL;
        goto out;
    }
    if (pgx.dropped[0])
        api->log(host, DAPR_LOG_WARN, "connectionString: ignoring parameters of Dapr's Go driver "
                 "that libpq does not know: %s (use maxConns / connectionMaxIdleTime)", pgx.dropped);
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(s->conninfo, &perr);
    if (!opts) {
        /* Only messages that cannot quote a secret are passed on. */
        char text[200] = "";
        if (perr && (strncmp(perr, "invalid connection option", 25) == 0 ||
                     strncmp(perr, "invalid URI query parameter", 27) == 0 ||
                     strncmp(perr, "unterminated quoted string", 26) == 0))
            snprintf(text, sizeof(text), ": %s", perr);
        one_line(text);
        snprintf(errbuf, errlen, "connectionString is not a valid libpq connection string "
                 "(key=value pairs or a postgres:// URL)%s", text);
        PQfreemem(perr);
        goto out;
    }
    PQconninfoFree(opts);

    const char *schema = meta(s, "schema", "");
    if (*schema && !valid_ident(schema, strlen(schema))) {
        snprintf(errbuf, errlen, "invalid schema '%.64s'", schema);
        goto out;
    }
    if (layout == LAYOUT_V1) {
        if (table_name(s->table, schema, meta(s, "tableName", "state"), "tableName",
                       errbuf, errlen) != 0)
            goto out;
        snprintf(s->migration_key, sizeof(s->migration_key), "migrations");
    } else {
        const char *prefix = meta(s, "tablePrefix", "");
        char name[NAME_LEN];
        if (strlen(prefix) > 100) {
            snprintf(errbuf, errlen, "tablePrefix is too long");
            goto out;
        }
        snprintf(name, sizeof(name), "%sstate", prefix);
        if (table_name(s->table, schema, name, "tablePrefix", errbuf, errlen) != 0) goto out;
        snprintf(s->migration_key, sizeof(s->migration_key), "migrations-state-v2-%s", prefix);
    }
    if (table_name(s->meta_table, schema, meta(s, "metadataTableName", "dapr_metadata"),
                   "metadataTableName", errbuf, errlen) != 0)
        goto out;
    if (strcasecmp(s->table, s->meta_table) == 0) {
        snprintf(errbuf, errlen, "the state table and metadataTableName must differ");
        goto out;
    }
    /* The names Dapr gives the last-cleanup row. */
    if (layout == LAYOUT_V1)
        snprintf(s->cleanup_key, sizeof(s->cleanup_key), "last-cleanup");
    else
        snprintf(s->cleanup_key, sizeof(s->cleanup_key), "last-cleanup-state-v2-%s", s->meta_table);

    if (meta_duration(s, "timeout", "timeoutInSeconds", "20s", &s->timeout_ms, errbuf, errlen) != 0)
        goto out;
    if (s->timeout_ms < 1000) {
        snprintf(errbuf, errlen, "invalid value for 'timeout': must be at least 1s");
        goto out;
    }
    if (meta_duration(s, "cleanupInterval", "cleanupIntervalInSeconds", "1h", &s->cleanup_ms,
                      errbuf, errlen) != 0)
        goto out;
    const char *idle = meta_explicit(s, "connectionMaxIdleTime");
    if (!idle && pgx.max_idle[0]) idle = pgx.max_idle;
    if (idle && parse_duration(idle, &s->max_idle_ms) != 0) {
        snprintf(errbuf, errlen, "invalid value for 'connectionMaxIdleTime': '%.40s'", idle);
        goto out;
    }
    const char *mc = meta_explicit(s, "maxConns");
    if (!mc && pgx.max_conns[0]) mc = pgx.max_conns;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s->n_slots = ncpu > 4 ? (int)ncpu : 4;     /* pgx's default: max(4, CPUs) */
    if (mc && *mc) {
        char *end;
        long v = strtol(mc, &end, 10);
        if (*end || v < 0 || v > 1000) {
            snprintf(errbuf, errlen, "invalid value for 'maxConns': '%.20s' (0..1000; 0 = default)", mc);
            goto out;
        }
        if (v > 0) s->n_slots = (int)v;
    }
    s->slots = calloc((size_t)s->n_slots, sizeof(*s->slots));
    if (!s->slots) {
        snprintf(errbuf, errlen, "out of memory");
        code = DAPR_ERR_INTERNAL;
        goto out;
    }

    /* Connect once now, so that a wrong host or password fails init. */
    op_status st = {DAPR_OK, ""};
    struct timespec d;
    deadline_in(&d, s->timeout_ms);
    int idx = pool_take(s, &d, &st);
    if (idx < 0) {
        snprintf(errbuf, errlen, "%s", st.msg);
        code = st.status;
        goto out;
    }
    PGconn *c = s->slots[idx].conn;
    if (PQserverVersion(c) < 130000) {
        snprintf(errbuf, errlen, "PostgreSQL %d.%d on %s is too old: 13 or later is needed",
                 PQserverVersion(c) / 10000, PQserverVersion(c) % 10000, PQhost(c));
        pool_give(s, idx, 0);
        code = DAPR_ERR_NOT_SUPPORTED;
        goto out;
    }
    int ok = migrate(s, c, errbuf, errlen) == 0;
    api->log(host, DAPR_LOG_INFO, "PostgreSQL %d on %s port %s, database %s: table %s (%s layout)",
             PQserverVersion(c) / 10000, PQhost(c), PQport(c), PQdb(c), s->table,
             layout == LAYOUT_V1 ? "v1" : "v2");
    pool_give(s, idx, !ok);
    if (!ok) {
        code = DAPR_ERR_UNAVAILABLE;
        goto out;
    }
    build_sql(s);

    if (s->cleanup_ms > 0) {
        s->cleanup_timer = api->timer_start(host, (uint64_t)s->cleanup_ms, cleanup_task, s);
        if (!s->cleanup_timer) {
            snprintf(errbuf, errlen, "cannot start the cleanupInterval timer");
            code = DAPR_ERR_INTERNAL;
            goto out;
        }
    }
    *instance = s;
    return DAPR_OK;

out:
    store_free(s);
    return code;
}

static dapr_status init_v1(dapr_host *host, const dapr_host_api *api, void **instance,
                           char *errbuf, size_t errlen)
{
    return pg_init(LAYOUT_V1, host, api, instance, errbuf, errlen);
}

static dapr_status init_v2(dapr_host *host, const dapr_host_api *api, void **instance,
                           char *errbuf, size_t errlen)
{
    return pg_init(LAYOUT_V2, host, api, instance, errbuf, errlen);
}

static void st_close(void *inst)
{
    if (inst) store_free(inst);
}

/* ------------------------------------------------------------------ */
/* Descriptor                                                           */
/* ------------------------------------------------------------------ */

#define COMMON_FIELDS                                                                      \
    {"connectionString", DAPR_META_STRING, DAPR_META_REQUIRED | DAPR_META_SECRET, NULL,     \
     "libpq connection string: key=value pairs or a postgres:// URL"},                     \
    {"metadataTableName", DAPR_META_STRING, 0, "dapr_metadata",                            \
     "table for the migration level and the last cleanup time ([schema.]name)"},           \
    {"schema", DAPR_META_STRING, 0, NULL,                                                   \
     "schema of tables named without one (must exist; default: the search_path)"},        \
    {"timeout", DAPR_META_DURATION, 0, "20s",                                               \
     "limit for each database operation, also statement_timeout (at least 1s)"},           \
    {"timeoutInSeconds", DAPR_META_DURATION, 0, NULL, "older name of timeout"},             \
    {"cleanupInterval", DAPR_META_DURATION, 0, "1h",                                        \
     "how often to delete expired rows; 0 or negative disables it"},                       \
    {"cleanupIntervalInSeconds", DAPR_META_DURATION, 0, NULL, "older name of cleanupInterval"}, \
    {"maxConns", DAPR_META_INT, 0, NULL, "connections in the pool (default max(4, CPUs))"},  \
    {"connectionMaxIdleTime", DAPR_META_DURATION, 0, NULL,                                  \
     "close a pooled connection idle for longer than this (default: never)"},              \
    {"queryExecMode", DAPR_META_STRING, 0, NULL,                                            \
     "accepted for compatibility with Dapr's Go driver; ignored"}

static const dapr_metadata_field schema_v1[] = {
    COMMON_FIELDS,
    {"tableName", DAPR_META_STRING, 0, "state", "state table ([schema.]name)"},
};

static const dapr_metadata_field schema_v2[] = {
    COMMON_FIELDS,
    {"tablePrefix", DAPR_META_STRING, 0, "", "prefix of the state table name ({prefix}state)"},
};

static const dapr_state_vtable vtable_v1 = {
    .size = sizeof(dapr_state_vtable),
    .get = st_get,
    .set = st_set,
    .del = st_del,
    .bulk_get = NULL,    /* the host loops over get on its workers */
    .bulk_set = NULL,
    .bulk_delete = NULL,
    .transact = st_transact,
    .query = st_query,
    .max_transaction_ops = 0,
};

static const dapr_state_vtable vtable_v2 = {
    .size = sizeof(dapr_state_vtable),
    .get = st_get,
    .set = st_set,
    .del = st_del,
    .transact = st_transact,
    .query = NULL,       /* as Dapr: v2 has no query API */
    .max_transaction_ops = 0,
};

static const dapr_component_def pg_v1 = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.postgresql",
    .version = "v1",
    .features = DAPR_STATE_ETAG | DAPR_STATE_TRANSACTIONAL | DAPR_STATE_TTL | DAPR_STATE_QUERY,
    .flags = 0,          /* blocking: called on the host's worker pool */
    .metadata_schema = schema_v1,
    .n_metadata_schema = sizeof(schema_v1) / sizeof(schema_v1[0]),
    .init = init_v1,
    .close = st_close,
    .vtable = &vtable_v1,
};

static const dapr_component_def pg_v2 = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.postgresql",
    .version = "v2",
    .features = DAPR_STATE_ETAG | DAPR_STATE_TRANSACTIONAL | DAPR_STATE_TTL,
    .flags = 0,
    .metadata_schema = schema_v2,
    .n_metadata_schema = sizeof(schema_v2) / sizeof(schema_v2[0]),
    .init = init_v2,
    .close = st_close,
    .vtable = &vtable_v2,
};

/* The default version is listed first.  The conformance kit tests the
 * first component of a type, so t/postgresql builds a copy of this file
 * with PG_V2_FIRST to run it against v2 as well. */
#ifdef PG_V2_FIRST
static const dapr_component_def *const components[] = {&pg_v2, &pg_v1};
#else
static const dapr_component_def *const components[] = {&pg_v1, &pg_v2};
#endif

static const dapr_plugin_descriptor descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "state-postgresql",
    .version = "1.0.0",
    .description = "Dapr state store on PostgreSQL (v1 jsonb and v2 bytea layouts)",
    .components = components,
    .n_components = 2,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &descriptor;
}
