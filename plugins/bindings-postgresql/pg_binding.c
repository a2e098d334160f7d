/*
 * pg_binding.c - bindings.postgresql (also registered as bindings.postgres,
 * as Dapr registers both names): an output binding that runs SQL on
 * PostgreSQL through libpq.
 *
 * Operations, as Dapr's component (components-contrib bindings/postgres):
 *   exec   metadata `sql` (required) and `params` (optional JSON array);
 *          answers an empty 200 with metadata rows-affected, operation,
 *          sql, start-time, end-time (RFC 3339, UTC) and duration (Go's
 *          Duration.String(): "1.234ms").
 *   query  the same request; answers the rows as a JSON array of arrays of
 *          values (see row_value() for the type mapping) with the same
 *          metadata but rows-affected.
 *   close  closes the connection pool.  As in Dapr the component is closed
 *          for good afterwards: exec and query then fail with "component is
 *          closed" until daprd restarts (close again succeeds).
 *
 * SQL injection: `params` are always sent as bind parameters ($1, $2, ...)
 * through PQsendQueryParams, never pasted into the SQL, and the extended
 * protocol refuses several statements in one `sql`, as pgx does.
 *
 * Threading: the component is blocking (flags 0), so daprd runs invoke() on
 * its bounded worker pool and its event loop never waits on PostgreSQL.  A
 * worker must not hang either, so every operation has a deadline: the
 * `timeout` metadata (default 20s) bounds waiting for a pooled connection,
 * connecting (connect_timeout), and waiting for the answer (poll() on the
 * socket; past it the statement is cancelled and the connection dropped),
 * and it is the connection's statement_timeout.  Dapr applies `timeout` to
 * its start-up ping only; see README.md.
 *
 * Pool: at most `maxConns` connections (default max(4, CPUs), pgx's
 * default), made on first use; one that broke is closed and made again on
 * the next use, so after a server restart the binding recovers by itself.
 * (plugins/state-postgresql has a pool of the same design with strict FIFO
 * hand-over; this one is smaller: waiters are woken by a broadcast.)
 *
 * Secrets: the connection string is never logged nor quoted in an error;
 * libpq's connection errors name the host and the cause, not the password.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dapr/plugin.h>

#include <jansson.h>
#include <libpq-fe.h>

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MSG_LEN 512
#define MAX_PARAMS 65535 /* the protocol's limit */

typedef struct pg_slot {
    PGconn *conn; /* NULL: connect on next use */
    int busy;
    struct timespec idle_since;
} pg_slot;

typedef struct pg_binding {
    dapr_host *host;
    const dapr_host_api *api;

    /* The connection parameters for PQconnectdbParams: SECRET (a password
     * may be among them).  keys/vals are NULL-terminated. */
    char **keys, **vals;
    int expand_dbname; /* vals holds a postgres:// URL as dbname */
    int64_t timeout_ms;
    int64_t max_idle_ms; /* <= 0: keep idle connections */

    pthread_mutex_t lock; /* guards slots[].busy/idle_since, closed */
    pthread_cond_t freed;
    pg_slot *slots;
    int n_slots;
    int closed;
} pg_binding;

typedef struct op_err {
    char msg[MSG_LEN];
} op_err;

static void fail(op_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(op_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

/* ---- small helpers ------------------------------------------------------- */

/* Go duration ("1m30s", "250ms") or bare seconds, in ms; -1 when invalid. */
static int parse_duration(const char *s, int64_t *ms)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long secs = strtoll(s, &end, 10);
    if (*end == '\0' && errno == 0 && isdigit((unsigned char)s[strlen(s) - 1])) {
        *ms = secs * 1000;
        return 0;
    }
    const char *p = s;
    int neg = 0;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    double total = 0;
    if (strcmp(p, "0") == 0) {
        *ms = 0;
        return 0;
    }
    while (*p) {
        char *num_end;
        if (!isdigit((unsigned char)*p) && *p != '.')
            return -1;
        double v = strtod(p, &num_end);
        if (num_end == p)
            return -1;
        p = num_end;
        size_t best = 0;
        double mult = 0;
        for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
            size_t n = strlen(units[i].unit);
            if (n > best && strncmp(p, units[i].unit, n) == 0) {
                best = n;
                mult = units[i].ns;
            }
        }
        if (!best)
            return -1;
        p += best;
        total += v * mult;
        if (total > 9e18)
            return -1;
    }
    *ms = (int64_t)(total / 1e6) * (neg ? -1 : 1);
    return 0;
}

static const char *kvs_get(dapr_kvs kvs, const char *name)
{
    for (size_t i = 0; i < kvs.n; i++)
        if (kvs.items[i].name && strcmp(kvs.items[i].name, name) == 0)
            return kvs.items[i].value;
    return NULL;
}

static void deadline_in(struct timespec *d, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, d);
    d->tv_sec += ms / 1000;
    d->tv_nsec += (ms % 1000) * 1000000L;
    if (d->tv_nsec >= 1000000000L) {
        d->tv_sec++;
        d->tv_nsec -= 1000000000L;
    }
}

static int ms_left(const struct timespec *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms = (int64_t)(d->tv_sec - now.tv_sec) * 1000 + (d->tv_nsec - now.tv_nsec) / 1000000L;
    return ms <= 0 ? 0 : ms > 1000000000 ? 1000000000 : (int)ms;
}

/* libpq messages end in newlines and may span lines: one line. */
static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        s[--n] = '\0';
}

/* Go's time.Format(time.RFC3339Nano) of a UTC time. */
static void rfc3339_nano(const struct timespec *ts, char *out, size_t n)
{
    struct tm tm;
    time_t secs = ts->tv_sec;
    gmtime_r(&secs, &tm);
    char frac[16] = "";
    if (ts->tv_nsec) {
        snprintf(frac, sizeof frac, ".%09ld", ts->tv_nsec);
        size_t l = strlen(frac);
        while (frac[l - 1] == '0')
            frac[--l] = '\0';
    }
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, frac);
}

/* Append a number of "units" with up to `digits` decimals, trailing zeros
 * dropped (Go's fmtFrac/fmtInt). */
static size_t go_frac(char *out, size_t n, uint64_t v, int digits, const char *unit)
{
    uint64_t scale = 1;
    for (int i = 0; i < digits; i++)
        scale *= 10;
    uint64_t ip = v / scale, fp = v % scale;
    char f[24] = "";
    if (fp) {
        snprintf(f, sizeof f, ".%0*llu", digits, (unsigned long long)fp);
        size_t l = strlen(f);
        while (f[l - 1] == '0')
            f[--l] = '\0';
    }
    return (size_t)snprintf(out, n, "%llu%s%s", (unsigned long long)ip, f, unit);
}

/* Go's time.Duration.String() of a non-negative duration. */
static void go_duration(uint64_t ns, char *out, size_t n)
{
    if (ns == 0) {
        snprintf(out, n, "0s");
    } else if (ns < 1000) {
        snprintf(out, n, "%lluns", (unsigned long long)ns);
    } else if (ns < 1000000) {
        go_frac(out, n, ns, 3, "\xc2\xb5s");
    } else if (ns < 1000000000ULL) {
        go_frac(out, n, ns, 6, "ms");
    } else {
        uint64_t h = ns / 3600000000000ULL, m = ns / 60000000000ULL % 60;
        uint64_t rest = ns % 60000000000ULL;
        size_t used = 0;
        if (h)
            used += (size_t)snprintf(out, n, "%lluh", (unsigned long long)h);
        if (h || m)
            used += (size_t)snprintf(out + used, n - used, "%llum", (unsigned long long)m);
        go_frac(out + used, n - used, rest, 9, "s");
    }
}

/* ---- connection string ----------------------------------------------------- */

static void free_params(pg_binding *b)
{
    for (int i = 0; b->keys && b->keys[i]; i++) {
        free(b->keys[i]);
        /* values may hold the password: do not leave it in freed memory */
        volatile char *p = b->vals[i];
        while (p && *p)
            *p++ = '\0';
        free(b->vals[i]);
    }
    free(b->keys);
    free(b->vals);
    b->keys = b->vals = NULL;
}

static int add_param(pg_binding *b, int *n, const char *k, size_t kl, const char *v, size_t vl)
{
    char **nk = realloc(b->keys, (size_t)(*n + 2) * sizeof *nk);
    if (!nk)
        return -1;
    b->keys = nk;
    char **nv = realloc(b->vals, (size_t)(*n + 2) * sizeof *nv);
    if (!nv)
        return -1;
    b->vals = nv;
    b->keys[*n] = strndup(k, kl);
    b->vals[*n] = strndup(v, vl);
    b->keys[*n + 1] = b->vals[*n + 1] = NULL;
    (*n)++;
    return b->keys[*n - 1] && b->vals[*n - 1] ? 0 : -1;
}

/*
 * Turn Dapr's connection string into libpq parameters.  A postgres:// URL
 * goes to libpq as it is (expand_dbname).  A key=value string is split
 * here, because Dapr's driver (pgx) accepts a few names libpq refuses:
 * `database` (libpq: dbname) is renamed, and pgx's pool_max_conns /
 * pool_max_conn_idle_time are taken as maxConns / connectionMaxIdleTime
 * defaults.  Returns 0, or -1 with errbuf set (never quoting a value).
 */
static int parse_conn(pg_binding *b, const char *in, char *pool_max, char *pool_idle, char *errbuf, size_t errlen)
{
    int n = 0;
    b->keys = calloc(1, sizeof *b->keys);
    b->vals = calloc(1, sizeof *b->vals);
    if (!b->keys || !b->vals)
        goto oom;
    if (strncmp(in, "postgres://", 11) == 0 || strncmp(in, "postgresql://", 13) == 0) {
        b->expand_dbname = 1;
        if (add_param(b, &n, "dbname", 6, in, strlen(in)) != 0)
            goto oom;
        return 0;
    }
    const char *p = in;
    char *val = malloc(strlen(in) + 1);
    if (!val)
        goto oom;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *name = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t nl = (size_t)(p - name);
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '=' || nl == 0) {
            free(val);
            snprintf(errbuf, errlen, "connectionString: expected key=value pairs or a postgres:// URL "
                     "(missing \"=\" after \"%.*s\")", (int)(nl > 40 ? 40 : nl), name);
            return -1;
        }
        p++;
        while (isspace((unsigned char)*p))
            p++;
        size_t vl = 0;
        if (*p == '\'') {
            p++;
            while (*p && *p != '\'') {
                if (*p == '\\' && p[1])
                    p++;
                val[vl++] = *p++;
            }
            if (*p != '\'') {
                free(val);
                snprintf(errbuf, errlen, "connectionString: unterminated quoted value of \"%.*s\"",
                         (int)(nl > 40 ? 40 : nl), name);
                return -1;
            }
            p++;
        } else {
            while (*p && !isspace((unsigned char)*p)) {
                if (*p == '\\' && p[1])
                    p++;
                val[vl++] = *p++;
            }
        }
        if (nl == 14 && strncmp(name, "pool_max_conns", nl) == 0) {
            snprintf(pool_max, 32, "%.*s", (int)(vl < 31 ? vl : 31), val);
        } else if (nl == 23 && strncmp(name, "pool_max_conn_idle_time", nl) == 0) {
            snprintf(pool_idle, 32, "%.*s", (int)(vl < 31 ? vl : 31), val);
        } else if (nl > 5 && strncmp(name, "pool_", 5) == 0) {
            /* other pgx pool settings: no libpq meaning */
        } else if (add_param(b, &n, nl == 8 && strncmp(name, "database", 8) == 0 ? "dbname" : name,
                             nl == 8 && strncmp(name, "database", 8) == 0 ? 6 : nl, val, vl) != 0) {
            free(val);
            goto oom;
        }
    }
    memset(val, 0, strlen(in) + 1);
    free(val);
    return 0;
oom:
    snprintf(errbuf, errlen, "out of memory");
    return -1;
}

/* ---- talking to the server -------------------------------------------------- */

/* pgx's error text for a server error: "ERROR: message (SQLSTATE xxxxx)". */
static void server_error(const PGresult *r, PGconn *c, char *out, size_t n)
{
    const char *sev = r ? PQresultErrorField(r, PG_DIAG_SEVERITY) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *code = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (sev && msg && code)
        snprintf(out, n, "%s: %s (SQLSTATE %s)", sev, msg, code);
    else
        snprintf(out, n, "%s", r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(c));
    one_line(out);
    if (!*out)
        snprintf(out, n, "unknown error");
}

/* Run one statement and wait for its result until the deadline.  Returns
 * the result (caller PQclear()s) or NULL with e set; *broken when the
 * connection must not be reused.  n < 0: our own set-up statements, sent
 * with the simple protocol (several in one string); the app's SQL always
 * goes through the extended protocol (bound parameters, one statement). */
static PGresult *pg_run(PGconn *c, const char *sql, int n, const char *const *vals, const struct timespec *deadline,
                        op_err *e, int *broken)
{
    if (!(n < 0 ? PQsendQuery(c, sql) : PQsendQueryParams(c, sql, n, NULL, vals, NULL, NULL, 0))) {
        char t[MSG_LEN - 32];
        server_error(NULL, c, t, sizeof t);
        fail(e, "%s", t);
        *broken = 1;
        return NULL;
    }
    PGresult *keep = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
            int left = ms_left(deadline);
            int rc = left > 0 ? poll(&pfd, 1, left) : 0;
            if (rc < 0 && errno == EINTR)
                continue;
            if (rc <= 0) {
                /* Ask the server to stop and give the connection up: its
                 * state is unknown until the cancel lands. */
                PGcancel *cn = PQgetCancel(c);
                char ebuf[128];
                if (cn) {
                    PQcancel(cn, ebuf, sizeof ebuf);
                    PQfreeCancel(cn);
                }
                PQclear(keep);
                fail(e, "no answer from PostgreSQL within the timeout");
                *broken = 1;
                return NULL;
            }
            if (!PQconsumeInput(c)) {
                PQclear(keep);
                char t[MSG_LEN - 32];
                server_error(NULL, c, t, sizeof t);
                fail(e, "%s", t);
                *broken = 1;
                return NULL;
            }
        }
        PGresult *r = PQgetResult(c);
        if (!r)
            break;
        if (keep && PQresultStatus(keep) == PGRES_FATAL_ERROR)
            PQclear(r); /* keep the first error */
        else {
            PQclear(keep);
            keep = r;
        }
    }
    if (!keep || (PQresultStatus(keep) != PGRES_COMMAND_OK && PQresultStatus(keep) != PGRES_TUPLES_OK)) {
        char t[MSG_LEN - 32];
        server_error(keep, c, t, sizeof t);
        fail(e, "%s", t);
        if (!keep || PQstatus(c) != CONNECTION_OK)
            *broken = 1;
        PQclear(keep);
        return NULL;
    }
    return keep;
}

/* Server notices go to the debug log rather than libpq's stderr. */
static void notice_to_log(void *arg, const char *message)
{
    pg_binding *b = arg;
    if (b->api->log_enabled(b->host, DAPR_LOG_DEBUG)) {
        char t[MSG_LEN];
        snprintf(t, sizeof t, "%s", message);
        one_line(t);
        b->api->log(b->host, DAPR_LOG_DEBUG, "PostgreSQL: %s", t);
    }
}

static PGconn *pg_connect(pg_binding *b, op_err *e)
{
    /* connect_timeout and fallback_application_name come first: the
     * connection string's own values (later keys) win. */
    int n = 0;
    while (b->keys[n])
        n++;
    const char **k = calloc((size_t)n + 3, sizeof *k), **v = calloc((size_t)n + 3, sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        fail(e, "out of memory");
        return NULL;
    }
    char ct[24];
    int64_t secs = (b->timeout_ms + 999) / 1000;
    snprintf(ct, sizeof ct, "%lld", (long long)(secs < 2 ? 2 : secs));
    k[0] = "connect_timeout", v[0] = ct;
    k[1] = "fallback_application_name", v[1] = "daprd";
    for (int i = 0; i < n; i++)
        k[i + 2] = b->keys[i], v[i + 2] = b->vals[i];
    PGconn *c = PQconnectdbParams(k, v, b->expand_dbname);
    free(k);
    free(v);
    if (!c) {
        fail(e, "cannot connect to PostgreSQL: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        char t[MSG_LEN - 40];
        snprintf(t, sizeof t, "%s", PQerrorMessage(c));
        one_line(t);
        fail(e, "cannot connect to PostgreSQL: %s", t);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, notice_to_log, b);
    /* UTC and ISO dates: timestamps come back as Dapr's (pgx's) do on a
     * UTC host; statement_timeout is the server side of `timeout`. */
    char set[128];
    snprintf(set, sizeof set, "SET statement_timeout = %lld; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'",
             (long long)b->timeout_ms);
    struct timespec d;
    deadline_in(&d, b->timeout_ms);
    int broken = 0;
    op_err se;
    PGresult *r = pg_run(c, set, -1, NULL, &d, &se, &broken);
    if (!r) {
        fail(e, "cannot configure the connection: %s", se.msg);
        PQfinish(c);
        return NULL;
    }
    PQclear(r);
    return c;
}

/* Take a connection (waiting for a free slot until the deadline) and make
 * sure it is alive.  Returns the slot index, or -1 with e set. */
static int pool_take(pg_binding *b, const struct timespec *deadline, op_err *e)
{
    struct timespec abs;
    clock_gettime(CLOCK_REALTIME, &abs);
    int left = ms_left(deadline);
    abs.tv_sec += left / 1000;
    abs.tv_nsec += (left % 1000) * 1000000L;
    if (abs.tv_nsec >= 1000000000L) {
        abs.tv_sec++;
        abs.tv_nsec -= 1000000000L;
    }
    int idx = -1;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        if (b->closed) {
            pthread_mutex_unlock(&b->lock);
            fail(e, "component is closed");
            return -1;
        }
        for (int i = 0; i < b->n_slots; i++)
            if (!b->slots[i].busy && (idx < 0 || (!b->slots[idx].conn && b->slots[i].conn)))
                idx = i;
        if (idx >= 0)
            break;
        if (pthread_cond_timedwait(&b->freed, &b->lock, &abs) == ETIMEDOUT) {
            pthread_mutex_unlock(&b->lock);
            fail(e, "no free PostgreSQL connection within the timeout (all %d in use; see maxConns)", b->n_slots);
            return -1;
        }
    }
    pg_slot *sl = &b->slots[idx];
    sl->busy = 1;
    struct timespec idle = sl->idle_since;
    pthread_mutex_unlock(&b->lock);

    if (sl->conn && b->max_idle_ms > 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ms = (int64_t)(now.tv_sec - idle.tv_sec) * 1000 + (now.tv_nsec - idle.tv_nsec) / 1000000L;
        if (ms > b->max_idle_ms) {
            PQfinish(sl->conn);
            sl->conn = NULL;
        }
    }
    if (sl->conn) {
        /* A restarted server closes idle connections: the socket turns
         * readable (a FATAL message, then EOF). */
        struct pollfd pfd = {.fd = PQsocket(sl->conn), .events = POLLIN};
        if (poll(&pfd, 1, 0) != 0 && (!PQconsumeInput(sl->conn) || PQstatus(sl->conn) != CONNECTION_OK)) {
            PQfinish(sl->conn);
            sl->conn = NULL;
        }
        PGnotify *nt;
        while (sl->conn && (nt = PQnotifies(sl->conn)) != NULL)
            PQfreemem(nt);
    }
    if (!sl->conn && !(sl->conn = pg_connect(b, e))) {
        pthread_mutex_lock(&b->lock);
        sl->busy = 0;
        pthread_cond_broadcast(&b->freed);
        pthread_mutex_unlock(&b->lock);
        return -1;
    }
    return idx;
}

static void pool_give(pg_binding *b, int idx, int broken)
{
    pg_slot *sl = &b->slots[idx];
    pthread_mutex_lock(&b->lock);
    int closed = b->closed;
    pthread_mutex_unlock(&b->lock);
    /* A connection left inside a transaction (the app's BEGIN without
     * COMMIT) is not handed to the next caller either. */
    if (sl->conn && (broken || closed || PQstatus(sl->conn) != CONNECTION_OK ||
                     PQtransactionStatus(sl->conn) != PQTRANS_IDLE)) {
        PQfinish(sl->conn);
        sl->conn = NULL;
    }
    pthread_mutex_lock(&b->lock);
    clock_gettime(CLOCK_MONOTONIC, &sl->idle_since);
    sl->busy = 0;
    pthread_cond_broadcast(&b->freed);
    pthread_mutex_unlock(&b->lock);
}

/* ---- requests ------------------------------------------------------------------ */

/* The JSON `params` array as text bind parameters: strings as they are,
 * numbers and booleans in their JSON spelling, null as SQL NULL, objects
 * and arrays as JSON text (for json/jsonb columns).  The server infers
 * each parameter's type from the statement, as with pgx. */
static int build_params(const char *text, json_t **arr, char ***vals, op_err *e)
{
    json_error_t je;
    *vals = NULL;
    *arr = json_loads(text, JSON_DECODE_ANY, &je);
    if (!*arr || !json_is_array(*arr)) {
        fail(e, "invalid metadata property params: failed to unserialize into an array: %s",
             *arr ? "the value is not a JSON array" : je.text);
        json_decref(*arr);
        *arr = NULL;
        return -1;
    }
    size_t n = json_array_size(*arr);
    if (n > MAX_PARAMS) {
        fail(e, "invalid metadata property params: %zu parameters (PostgreSQL takes at most %d)", n, MAX_PARAMS);
        return -1;
    }
    *vals = calloc(n + 1, sizeof **vals);
    if (!*vals) {
        fail(e, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(*arr, i);
        char buf[64];
        const char *s = NULL;
        char *owned = NULL;
        switch (json_typeof(v)) {
        case JSON_STRING:
            if (strlen(json_string_value(v)) != json_string_length(v)) {
                fail(e, "invalid metadata property params: parameter %zu contains a NUL character", i + 1);
                return -1;
            }
            s = json_string_value(v);
            break;
        case JSON_INTEGER:
            snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            s = buf;
            break;
        case JSON_REAL: {
            /* shortest spelling that reads back as the same double */
            double d = json_real_value(v);
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(buf, sizeof buf, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                    break;
            }
            s = buf;
            break;
        }
        case JSON_TRUE: s = "true"; break;
        case JSON_FALSE: s = "false"; break;
        case JSON_NULL: s = NULL; break;
        default:
            owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!owned) {
                fail(e, "out of memory");
                return -1;
            }
            break;
        }
        (*vals)[i] = owned ? owned : s ? strdup(s) : NULL;
        if ((owned || s) && !(*vals)[i]) {
            fail(e, "out of memory");
            return -1;
        }
    }
    return 0;
}

static void free_vals(char **vals, json_t *arr)
{
    size_t n = arr ? json_array_size(arr) : 0;
    for (size_t i = 0; vals && i < n; i++)
        free(vals[i]);
    free(vals);
    json_decref(arr);
}

/* A JSON string of the text s (jansson escapes it). */
static int put_string(FILE *f, const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    if (!t)
        return -1;
    fputs(t, f);
    free(t);
    return 0;
}

/* RFC 3339 from PostgreSQL's ISO output in UTC ("2024-01-02 03:04:05.5+00"
 * or, for timestamp without time zone, no offset): "2024-01-02T03:04:05.5Z",
 * as pgx's time.Time marshals.  Other shapes (BC, infinity) stay text. */
static int put_time(FILE *f, const char *s, int is_date)
{
    char buf[64];
    size_t n = strlen(s);
    if (n < 10 || n > 40 || !isdigit((unsigned char)s[0]) || s[4] != '-' || strstr(s, "BC"))
        return put_string(f, s, n);
    if (is_date) {
        fprintf(f, "\"%.10sT00:00:00Z\"", s);
        return 0;
    }
    if (n < 19 || s[10] != ' ')
        return put_string(f, s, n);
    snprintf(buf, sizeof buf, "%s", s);
    buf[10] = 'T';
    size_t l = strlen(buf);
    if (l > 3 && strcmp(buf + l - 3, "+00") == 0)
        buf[l - 3] = '\0';
    fprintf(f, "\"%sZ\"", buf);
    return 0;
}

/* Is s a JSON number as PostgreSQL prints numbers (not NaN/Infinity)? */
static int json_number_text(const char *s)
{
    if (*s == '-')
        s++;
    if (!isdigit((unsigned char)*s))
        return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s) && !strchr(".eE+-", *s))
            return 0;
    return 1;
}

/*
 * Write one value of a text-format result as Dapr's component renders it
 * (pgx's Go values through encoding/json).  Numbers are written in
 * PostgreSQL's own spelling (shortest round-trip for floats, as Go's).
 * Returns 0, or -1 with e set.
 */
static int put_value(FILE *f, const PGresult *r, int row, int col, op_err *e)
{
    if (PQgetisnull(r, row, col)) {
        fputs("null", f);
        return 0;
    }
    const char *s = PQgetvalue(r, row, col);
    size_t len = (size_t)PQgetlength(r, row, col);
    switch (PQftype(r, col)) {
    case 16: /* bool */
        fputs(s[0] == 't' ? "true" : "false", f);
        return 0;
    case 20: case 21: case 23: case 26: /* int8, int2, int4, oid */
        fputs(s, f);
        return 0;
    case 700: case 701: /* float4, float8: Go refuses NaN and infinities */
        if (!json_number_text(s)) {
            fail(e, "error serializing results: json: unsupported value: %s", s);
            return -1;
        }
        fputs(s, f);
        return 0;
    case 1700: /* numeric: a JSON number; NaN and infinities as strings */
        if (json_number_text(s))
            fputs(s, f);
        else
            fprintf(f, "\"%s\"", s);
        return 0;
    case 114: case 3802: /* json, jsonb: the document itself */
        fwrite(s, 1, len, f);
        return 0;
    case 17: { /* bytea: Go marshals []byte as base64 */
        size_t bl = 0;
        unsigned char *bytes = PQunescapeBytea((const unsigned char *)s, &bl);
        if (!bytes) {
            fail(e, "out of memory");
            return -1;
        }
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        fputc('"', f);
        for (size_t i = 0; i < bl; i += 3) {
            uint32_t v = (uint32_t)bytes[i] << 16;
            if (i + 1 < bl) v |= (uint32_t)bytes[i + 1] << 8;
            if (i + 2 < bl) v |= bytes[i + 2];
            fputc(b64[(v >> 18) & 63], f);
            fputc(b64[(v >> 12) & 63], f);
            fputc(i + 1 < bl ? b64[(v >> 6) & 63] : '=', f);
            fputc(i + 2 < bl ? b64[v & 63] : '=', f);
        }
        fputc('"', f);
        PQfreemem(bytes);
        return 0;
    }
    case 1082: return put_time(f, s, 1);           /* date */
    case 1114: case 1184: return put_time(f, s, 0); /* timestamp, timestamptz */
    case 2950: { /* uuid: pgx gives [16]byte, which Go marshals as 16 numbers */
        int hi = -1, first = 1;
        fputc('[', f);
        for (const char *p = s; *p; p++) {
            if (!isxdigit((unsigned char)*p))
                continue;
            int v = isdigit((unsigned char)*p) ? *p - '0' : tolower((unsigned char)*p) - 'a' + 10;
            if (hi < 0) {
                hi = v;
                continue;
            }
            fprintf(f, first ? "%d" : ",%d", hi * 16 + v);
            first = 0;
            hi = -1;
        }
        fputc(']', f);
        return 0;
    }
    default: /* text, varchar, name, interval, arrays, ...: the text form */
        if (put_string(f, s, len) != 0) {
            fail(e, "out of memory");
            return -1;
        }
        return 0;
    }
}

/* All rows as [[v, ...], ...]; NULL with e set on failure. */
static char *rows_json(const PGresult *r, size_t *outlen, op_err *e)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        fail(e, "out of memory");
        return NULL;
    }
    int nr = PQntuples(r), nf = PQnfields(r), bad = 0;
    fputc('[', f);
    for (int i = 0; i < nr && !bad; i++) {
        fputs(i ? ",[" : "[", f);
        for (int j = 0; j < nf && !bad; j++) {
            if (j)
                fputc(',', f);
            bad = put_value(f, r, i, j, e) != 0;
        }
        fputc(']', f);
    }
    fputc(']', f);
    if (fclose(f) != 0 && !bad) {
        fail(e, "out of memory");
        bad = 1;
    }
    if (bad) {
        free(buf);
        return NULL;
    }
    *outlen = len;
    return buf;
}

static void reply_error(dapr_binding_invoke_cb cb, void *ctx, dapr_status st, const char *msg)
{
    dapr_binding_invoke_result res = {.status = st, .message = msg};
    cb(ctx, &res);
}

static void pg_invoke(void *inst, const dapr_binding_invoke_req *req, dapr_binding_invoke_cb cb, void *ctx)
{
    pg_binding *b = inst;
    op_err e = {""};
    if (strcmp(req->operation, "close") == 0) {
        /* As Dapr: the pool closes for good; idle connections now, busy
         * ones when their operation gives them back. */
        pthread_mutex_lock(&b->lock);
        b->closed = 1;
        for (int i = 0; i < b->n_slots; i++)
            if (!b->slots[i].busy && b->slots[i].conn) {
                PQfinish(b->slots[i].conn);
                b->slots[i].conn = NULL;
            }
        pthread_cond_broadcast(&b->freed);
        pthread_mutex_unlock(&b->lock);
        b->api->log(b->host, DAPR_LOG_INFO, "closed by the close operation: exec and query now fail");
        dapr_binding_invoke_result res = {.status = DAPR_OK, .has_data = 0};
        cb(ctx, &res);
        return;
    }
    int is_query = strcmp(req->operation, "query") == 0;
    pthread_mutex_lock(&b->lock);
    int closed = b->closed;
    pthread_mutex_unlock(&b->lock);
    if (closed) {
        reply_error(cb, ctx, DAPR_ERR_INTERNAL, "component is closed");
        return;
    }
    const char *sql = kvs_get(req->metadata, "sql");
    if (!sql || !*sql) {
        reply_error(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "required metadata not set: sql");
        return;
    }
    const char *ptext = kvs_get(req->metadata, "params");
    json_t *parr = NULL;
    char **vals = NULL;
    if (ptext && *ptext && build_params(ptext, &parr, &vals, &e) != 0) {
        free_vals(vals, parr);
        reply_error(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, e.msg);
        return;
    }
    int nparams = parr ? (int)json_array_size(parr) : 0;

    struct timespec t0, m0, m1, t1;
    clock_gettime(CLOCK_REALTIME, &t0);
    clock_gettime(CLOCK_MONOTONIC, &m0);
    struct timespec deadline;
    deadline_in(&deadline, b->timeout_ms);
    int idx = pool_take(b, &deadline, &e);
    if (idx < 0) {
        free_vals(vals, parr);
        char msg[MSG_LEN + 32];
        snprintf(msg, sizeof msg, "error executing query: %s", e.msg);
        int is_closed = strcmp(e.msg, "component is closed") == 0;
        reply_error(cb, ctx, is_closed ? DAPR_ERR_INTERNAL : DAPR_ERR_UNAVAILABLE, is_closed ? e.msg : msg);
        return;
    }
    int broken = 0;
    PGresult *r = pg_run(b->slots[idx].conn, sql, nparams, (const char *const *)vals, &deadline, &e, &broken);
    free_vals(vals, parr);
    if (!r) {
        pool_give(b, idx, broken);
        char msg[MSG_LEN + 32];
        snprintf(msg, sizeof msg, "error executing query: %s", e.msg);
        if (b->api->log_enabled(b->host, DAPR_LOG_DEBUG))
            b->api->log(b->host, DAPR_LOG_DEBUG, "%s failed: %s", req->operation, e.msg);
        reply_error(cb, ctx, broken ? DAPR_ERR_UNAVAILABLE : DAPR_ERR_INTERNAL, msg);
        return;
    }

    char *body = NULL;
    size_t body_len = 0;
    char affected[32] = "";
    if (is_query) {
        body = rows_json(r, &body_len, &e);
        if (!body) {
            PQclear(r);
            pool_give(b, idx, 0);
            reply_error(cb, ctx, DAPR_ERR_INTERNAL, e.msg);
            return;
        }
    } else {
        const char *t = PQcmdTuples(r);
        snprintf(affected, sizeof affected, "%s", *t ? t : "0");
    }
    PQclear(r);
    pool_give(b, idx, 0);

    clock_gettime(CLOCK_MONOTONIC, &m1);
    uint64_t ns = (uint64_t)((int64_t)(m1.tv_sec - m0.tv_sec) * 1000000000LL + (m1.tv_nsec - m0.tv_nsec));
    t1 = t0;
    t1.tv_sec += (time_t)(ns / 1000000000ULL);
    t1.tv_nsec += (long)(ns % 1000000000ULL);
    if (t1.tv_nsec >= 1000000000L) {
        t1.tv_sec++;
        t1.tv_nsec -= 1000000000L;
    }
    char start[48], end[48], dur[48];
    rfc3339_nano(&t0, start, sizeof start);
    rfc3339_nano(&t1, end, sizeof end);
    go_duration(ns, dur, sizeof dur);
    dapr_kv md[6] = {{"operation", req->operation}, {"sql", sql}, {"start-time", start},
                     {"end-time", end}, {"duration", dur}, {"rows-affected", affected}};
    dapr_binding_invoke_result res = {
        .status = DAPR_OK,
        .has_data = 1,
        .data = {(const uint8_t *)body, body_len},
        .content_type = "application/json",
        .metadata = {md, is_query ? 5 : 6},
    };
    cb(ctx, &res);
    free(body);
}

/* ---- init / close --------------------------------------------------------------- */

static void binding_free(pg_binding *b)
{
    for (int i = 0; i < b->n_slots; i++)
        if (b->slots[i].conn)
            PQfinish(b->slots[i].conn);
    free(b->slots);
    free_params(b);
    pthread_cond_destroy(&b->freed);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* The manifest's own value, not a schema default. */
static const char *meta_explicit(pg_binding *b, const char *name)
{
    return kvs_get(b->api->metadata_all(b->host), name);
}

static dapr_status pg_init(dapr_host *host, const dapr_host_api *api, void **instance, char *errbuf, size_t errlen)
{
    pg_binding *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    b->host = host;
    b->api = api;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->freed, NULL);
    dapr_status code = DAPR_ERR_INVALID_ARGUMENT;
    char pool_max[32] = "", pool_idle[32] = "";

    const char *conn = api->metadata_get(host, "connectionString");
    if (!conn || !*conn) {
        snprintf(errbuf, errlen, "missing connection string");
        goto out;
    }
    if (parse_conn(b, conn, pool_max, pool_idle, errbuf, errlen) != 0)
        goto out;
    /* Let libpq check the names (never quoting values) before connecting. */
    {
        char *perr = NULL;
        PQconninfoOption *o = NULL;
        if (b->expand_dbname)
            o = PQconninfoParse(b->vals[0], &perr);
        else {
            int bad = 0;
            PQconninfoOption *all = PQconndefaults();
            for (int i = 0; b->keys[i] && all; i++) {
                int known = 0;
                for (PQconninfoOption *p = all; p->keyword; p++)
                    known |= strcmp(p->keyword, b->keys[i]) == 0;
                if (!known) {
                    snprintf(errbuf, errlen, "connectionString: invalid connection option \"%.40s\"", b->keys[i]);
                    bad = 1;
                    break;
                }
            }
            PQconninfoFree(all);
            if (bad)
                goto out;
        }
        if (b->expand_dbname && !o) {
            char t[160] = "";
            if (perr && (strncmp(perr, "invalid URI query parameter", 27) == 0))
                snprintf(t, sizeof t, ": %s", perr);
            one_line(t);
            snprintf(errbuf, errlen, "connectionString is not a valid postgres:// URL%s", t);
            PQfreemem(perr);
            goto out;
        }
        PQconninfoFree(o);
    }

    const char *tv = meta_explicit(b, "timeout");
    const char *tname = "timeout";
    if (!tv && (tv = meta_explicit(b, "timeoutInSeconds")) != NULL)
        tname = "timeoutInSeconds";
    if (!tv)
        tv = "20s";
    if (parse_duration(tv, &b->timeout_ms) != 0 || b->timeout_ms < 1000) {
        snprintf(errbuf, errlen, "invalid value for '%s': '%.40s' (a duration of at least 1s)", tname, tv);
        goto out;
    }
    const char *idle = meta_explicit(b, "connectionMaxIdleTime");
    if ((!idle || !*idle) && pool_idle[0])
        idle = pool_idle;
    if (idle && *idle && parse_duration(idle, &b->max_idle_ms) != 0) {
        snprintf(errbuf, errlen, "invalid value for 'connectionMaxIdleTime': '%.40s'", idle);
        goto out;
    }
    const char *mc = meta_explicit(b, "maxConns");
    if ((!mc || !*mc) && pool_max[0])
        mc = pool_max;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    b->n_slots = ncpu > 4 ? (int)ncpu : 4;
    if (mc && *mc) {
        char *end;
        errno = 0;
        long v = strtol(mc, &end, 10);
        if (*end || errno || v > 1000) {
            snprintf(errbuf, errlen, "invalid value for 'maxConns': '%.20s' (at most 1000; 0 or less: the default)",
                     mc);
            goto out;
        }
        if (v > 0)
            b->n_slots = (int)v;
    }
    b->slots = calloc((size_t)b->n_slots, sizeof *b->slots);
    if (!b->slots) {
        snprintf(errbuf, errlen, "out of memory");
        code = DAPR_ERR_INTERNAL;
        goto out;
    }

    /* Connect once now, as Dapr pings at init: a wrong host or password
     * fails init with libpq's reason (host and cause, no password). */
    op_err e = {""};
    struct timespec d;
    deadline_in(&d, b->timeout_ms);
    int idx = pool_take(b, &d, &e);
    if (idx < 0) {
        snprintf(errbuf, errlen, "failed to ping the DB: %s", e.msg);
        code = DAPR_ERR_UNAVAILABLE;
        goto out;
    }
    PGconn *c = b->slots[idx].conn;
    api->log(host, DAPR_LOG_INFO, "PostgreSQL %d on %s port %s, database %s; pool of %d connections",
             PQserverVersion(c) / 10000, PQhost(c), PQport(c), PQdb(c), b->n_slots);
    pool_give(b, idx, 0);
    *instance = b;
    return DAPR_OK;
out:
    binding_free(b);
    return code;
}

static void pg_close(void *inst)
{
    if (inst)
        binding_free(inst);
}

/* ---- descriptor ------------------------------------------------------------------ */

static const dapr_metadata_field pg_schema[] = {
    {"connectionString", DAPR_META_STRING, DAPR_META_REQUIRED | DAPR_META_SECRET, NULL,
     "libpq connection string: key=value pairs or a postgres:// URL"},
    {"timeout", DAPR_META_DURATION, 0, "20s",
     "limit for connecting and for each operation (also statement_timeout); at least 1s"},
    {"timeoutInSeconds", DAPR_META_DURATION, 0, NULL, "older name of timeout"},
    {"maxConns", DAPR_META_INT, 0, "0", "connections in the pool; 0 or less: max(4, CPUs)"},
    {"connectionMaxIdleTime", DAPR_META_DURATION, 0, NULL,
     "close a pooled connection idle for longer than this (default: never)"},
    {"queryExecMode", DAPR_META_STRING, 0, NULL, "accepted for compatibility with Dapr's Go driver; ignored"},
};

static const char *const pg_operations[] = {"exec", "query", "close", NULL};

static const dapr_output_binding_vtable pg_vtable = {
    .size = sizeof(dapr_output_binding_vtable),
    .operations = pg_operations,
    .invoke = pg_invoke,
};

#define PG_COMPONENT(var, typename)                                                                  \
    static const dapr_component_def var = {                                                          \
        .size = sizeof(dapr_component_def),                                                          \
        .kind = DAPR_KIND_OUTPUT_BINDING,                                                            \
        .type = typename,                                                                            \
        .version = "v1",                                                                             \
        .features = 0,                                                                               \
        .flags = 0, /* blocking libpq calls: daprd runs them on its worker pool */                  \
        .metadata_schema = pg_schema,                                                                \
        .n_metadata_schema = sizeof pg_schema / sizeof *pg_schema,                                   \
        .init = pg_init,                                                                             \
        .close = pg_close,                                                                           \
        .vtable = &pg_vtable,                                                                        \
    }

PG_COMPONENT(pg_component, "bindings.postgresql");
PG_COMPONENT(pg_component_alias, "bindings.postgres");

static const dapr_component_def *const pg_components[] = {&pg_component, &pg_component_alias};

static const dapr_plugin_descriptor pg_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "bindings-postgresql",
    .version = "1.0.0",
    .description = "bindings.postgresql (alias bindings.postgres): exec, query and close on PostgreSQL via libpq",
    .components = pg_components,
    .n_components = 2,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &pg_descriptor;
}
