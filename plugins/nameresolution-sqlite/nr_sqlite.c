/*
 * nr_sqlite.c - the "nameresolution.sqlite" name resolver: sidecars on one
 * machine find each other through a shared SQLite database file.
 *
 * Every sidecar writes one row for itself (announce), refreshes its
 * timestamp on a timer, and looks up the others' rows (resolve).  A row
 * whose timestamp stopped moving belongs to a dead sidecar and is skipped;
 * a periodic sweep deletes such rows.
 *
 * Compatibility with Dapr's own nameresolution.sqlite (components-contrib,
 * nameresolution/sqlite), so that real Dapr sidecars and ours can share a
 * file:
 *
 *  - Hosts table (default "hosts"):
 *      registration_id TEXT NOT NULL PRIMARY KEY, address TEXT NOT NULL,
 *      app_id TEXT NOT NULL, namespace TEXT NOT NULL,
 *      last_update INTEGER NOT NULL           -- Unix time, seconds
 *    with a UNIQUE index "<table>_address_idx" on address and an index
 *    "<table>_last_update_idx" on last_update.  address is "host:port" of
 *    the sidecar-to-sidecar port ("[v6]:port" for IPv6), as Go's
 *    net.JoinHostPort writes it.  Registering uses REPLACE, so a new
 *    sidecar on the same address takes over a stale row.
 *  - Metadata table (default "metadata", shared with state.sqlite's layout:
 *    key TEXT PK, value TEXT): row "nr-migrations" holds the schema level
 *    ("1" once the hosts table exists), row "nr-last-cleanup" the time of
 *    the last sweep, so that only one of the sidecars sweeps per interval.
 *  - Time is always computed by SQLite (strftime('%s','now'), the same
 *    value as Dapr's unixepoch(CURRENT_TIMESTAMP)), never by our clock, so
 *    all writers agree.
 *  - Dapr always writes namespace ''; we write the sidecar's namespace and
 *    resolve only within the caller's namespace, so in self-hosted mode
 *    (namespace '') Dapr's rows and ours see each other.
 *
 * Liveness: Dapr counts a row as live while it is younger than one
 * updateInterval and refreshes it every updateInterval - timeout.  We
 * refresh on the same schedule (so Dapr peers see us as live), but only
 * count a row as dead after DEAD_AFTER_INTERVALS intervals, so that one
 * refresh delayed by a busy database does not make a healthy peer vanish.
 * Dapr panics when its row disappeared; we simply write it again.
 *
 * Threading: the host calls announce/resolve/withdraw on its worker pool,
 * possibly several at once, and runs our timers there too.  We keep ONE
 * connection behind a mutex (as state.sqlite does): SQLite has one writer
 * per file anyway, and one connection means our own threads never see
 * SQLITE_BUSY from each other.  busyTimeout and the retry loop below only
 * deal with other processes using the file; WAL lets their readers go on
 * while one of them writes.  Completion callbacks are called with the
 * mutex released and are always the last thing an operation does.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep, strcasecmp */
#endif

#include <dapr/plugin.h>

#include <sqlite3.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TABLE "hosts"
#define DEFAULT_METADATA_TABLE "metadata"
#define MIGRATION_KEY "nr-migrations"
#define CLEANUP_KEY "nr-last-cleanup"
#define MIGRATION_LEVEL 1       /* Dapr's level after its only migration */
#define DEAD_AFTER_INTERVALS 3  /* a row older than this many intervals is dead */
#define RR_MAX_APPS 1024        /* round-robin counters kept before starting over */
#define BUSY_RETRY_MS 20        /* pause between retries on a locked database */
#define MSG_LEN 256

/* Unix time in whole seconds, computed by SQLite. */
#define SQL_NOW "CAST(strftime('%%s','now') AS INTEGER)"

/* Statements, prepared at init (table names cannot be bound parameters). */
enum {
    ST_REGISTER,   /* ?1 id, ?2 address, ?3 app id, ?4 namespace */
    ST_REFRESH,    /* ?1 id, ?2 address */
    ST_RESOLVE,    /* ?1 app id, ?2 namespace, ?3 max age in seconds */
    ST_DELETE,     /* ?1 id, ?2 address */
    ST_CLEAN_MARK, /* ?1 minimum seconds since the last sweep */
    ST_CLEAN_DEL,  /* ?1 max age in seconds */
    ST_COUNT
};

/* Per (app id, namespace) round-robin position. */
typedef struct rr_counter {
    struct rr_counter *next;
    uint64_t next_pick;
    char *ns;       /* points into key[], after the app id's NUL */
    char key[];     /* app id, NUL, namespace, NUL */
} rr_counter;

typedef struct nr_sqlite {
    dapr_host *host;
    const dapr_host_api *api;

    pthread_mutex_t lock;       /* guards everything below */
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];

    int64_t update_s;           /* updateInterval */
    int64_t timeout_ms;
    int64_t busy_ms;
    int64_t cleanup_ms;         /* <= 0: no sweep */

    char reg_id[37];            /* our row's registration_id */
    int announced;
    char *self_addr;            /* "host:port" we announced */
    char *self_app;
    char *self_ns;

    uint64_t refresh_timer;     /* 0: none */
    uint64_t cleanup_timer;
    rr_counter *rr;
    size_t n_rr;

    char table[128];
    char meta_table[128];
} nr_sqlite;

typedef struct op_status {
    dapr_status status;
    char msg[MSG_LEN];
} op_status;

/* ------------------------------------------------------------------ */
/* Small parsers                                                        */
/* ------------------------------------------------------------------ */

/*
 * Parse a Go duration ("1h30m", "250ms", "-1s", "1.5h", "0") or a bare
 * integer meaning seconds, as Dapr's metadata decoder does.  Stores
 * milliseconds in *ms.  Returns 0, or -1 with a reason in err.
 */
static int parse_duration(const char *s, int64_t *ms, char *err, size_t errlen)
{
    static const struct { const char *unit; double ns; } units[] = {
        {"ns", 1.0}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
        {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9},
    };
    const char *p = s;
    int neg = 0;
    double total_ns = 0;

    if (s == NULL || *s == '\0') {
        snprintf(err, errlen, "empty duration");
        return -1;
    }
    if (*p == '+' || *p == '-') neg = (*p++ == '-');

    /* A bare integer is a number of seconds. */
    const char *q = p;
    while (isdigit((unsigned char)*q)) q++;
    if (q != p && *q == '\0') {
        errno = 0;
        long long v = strtoll(p, NULL, 10);
        if (errno == ERANGE || v > INT64_MAX / 1000) {
            snprintf(err, errlen, "duration '%s' is out of range", s);
            return -1;
        }
        *ms = (neg ? -v : v) * 1000;
        return 0;
    }

    while (*p) {
        const char *start = p;
        double v = 0, scale = 1;
        int digits = 0;
        while (isdigit((unsigned char)*p)) { v = v * 10 + (*p++ - '0'); digits++; }
        if (*p == '.') {
            p++;
            while (isdigit((unsigned char)*p)) { scale /= 10; v += (*p++ - '0') * scale; digits++; }
        }
        if (digits == 0) {
            snprintf(err, errlen, "invalid duration '%s': expected a number at '%s'", s, start);
            return -1;
        }
        /* the longest unit that matches ("ms" before "m") */
        size_t best = 0;
        double mult = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t n = strlen(units[i].unit);
            if (n > best && strncmp(p, units[i].unit, n) == 0) { best = n; mult = units[i].ns; }
        }
        if (best == 0) {
            snprintf(err, errlen, "invalid duration '%s': missing or unknown unit "
                     "(use ns, us, ms, s, m, h)", s);
            return -1;
        }
        p += best;
        total_ns += v * mult;
        if (total_ns > 9.2e18) {
            snprintf(err, errlen, "duration '%s' is out of range", s);
            return -1;
        }
    }
    int64_t v = (int64_t)(total_ns / 1e6);
    *ms = neg ? -v : v;
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

/* Table names are pasted into SQL, so only [A-Za-z0-9_] is allowed. */
static int valid_identifier(const char *s)
{
    if (*s == '\0') return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return 0;
    return 1;
}

/* A random UUID v4, as Dapr's registration ids.  sqlite3_randomness is
 * thread-safe and seeded by the OS. */
static void new_uuid(char out[37])
{
    uint8_t b[16];
    sqlite3_randomness(sizeof(b), b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
             b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* "host:port", with brackets around an IPv6 literal (Go's JoinHostPort),
 * so that our rows look like Dapr's.  Returns a malloc'd string. */
static char *join_host_port(const char *host, uint16_t port)
{
    int v6 = strchr(host, ':') != NULL && host[0] != '[';
    size_t n = strlen(host) + 10;
    char *out = malloc(n);
    if (out) snprintf(out, n, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    return out;
}

/* ------------------------------------------------------------------ */
/* Database plumbing                                                    */
/* ------------------------------------------------------------------ */

static void deadline_after(struct timespec *d, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, d);
    d->tv_sec += ms / 1000;
    d->tv_nsec += (ms % 1000) * 1000000L;
    if (d->tv_nsec >= 1000000000L) {
        d->tv_sec++;
        d->tv_nsec -= 1000000000L;
    }
}

static int deadline_passed(const struct timespec *d)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

static int is_busy(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/*
 * Another process holds the lock past busyTimeout (or SQLite gave up at
 * once, as it does in some WAL lock upgrades): wait a little and let the
 * caller try again, until the operation's timeout.  Returns 1 to retry.
 */
static int retry_busy(int rc, const struct timespec *deadline)
{
    if (!is_busy(rc) || deadline_passed(deadline)) return 0;
    struct timespec pause = {0, BUSY_RETRY_MS * 1000000L};
    nanosleep(&pause, NULL);
    return 1;
}

static void db_fail(nr_sqlite *s, int rc, const char *what, op_status *st)
{
    if (is_busy(rc)) {
        st->status = DAPR_ERR_TIMEOUT;
        snprintf(st->msg, sizeof(st->msg),
                 "%s: database stayed locked by another process for the whole timeout "
                 "(%" PRId64 " ms)", what, s->timeout_ms);
    } else {
        st->status = DAPR_ERR_INTERNAL;
        snprintf(st->msg, sizeof(st->msg), "%s: %s", what, sqlite3_errmsg(s->db));
    }
}

/* Run SQL without results, retrying while the database is locked. */
static int exec_sql(nr_sqlite *s, const char *sql, const char *what, op_status *st)
{
    struct timespec deadline;
    int rc;
    deadline_after(&deadline, s->timeout_ms);
    while ((rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
        if (!retry_busy(rc, &deadline)) {
            db_fail(s, rc, what, st);
            return -1;
        }
    return 0;
}

static void rollback(nr_sqlite *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Step a bound write statement to completion, retrying while locked, and
 * clear it.  Returns the number of changed rows, or -1 with st filled. */
static int step_write(nr_sqlite *s, sqlite3_stmt *stmt, const char *what, op_status *st)
{
    struct timespec deadline;
    int rc;
    deadline_after(&deadline, s->timeout_ms);
    do {
        rc = sqlite3_step(stmt);
        sqlite3_reset(stmt);
    } while (rc != SQLITE_DONE && retry_busy(rc, &deadline));
    int changed = -1;
    if (rc == SQLITE_DONE)
        changed = sqlite3_changes(s->db);
    else
        db_fail(s, rc, what, st);
    sqlite3_clear_bindings(stmt);
    return changed;
}

/* ------------------------------------------------------------------ */
/* Operations (called with the lock held)                               */
/* ------------------------------------------------------------------ */

/* Write our row, replacing whatever row had our id or our address. */
static int do_register(nr_sqlite *s, op_status *st)
{
    sqlite3_stmt *q = s->stmt[ST_REGISTER];
    sqlite3_bind_text(q, 1, s->reg_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, s->self_addr, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, s->self_app, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, s->self_ns, -1, SQLITE_STATIC);
    return step_write(s, q, "failed to register host", st) < 0 ? -1 : 0;
}

static int do_unregister(nr_sqlite *s, op_status *st)
{
    sqlite3_stmt *q = s->stmt[ST_DELETE];
    sqlite3_bind_text(q, 1, s->reg_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, s->self_addr, -1, SQLITE_STATIC);
    return step_write(s, q, "failed to unregister host", st) < 0 ? -1 : 0;
}

static void rr_free_all(nr_sqlite *s)
{
    while (s->rr) {
        rr_counter *next = s->rr->next;
        free(s->rr);
        s->rr = next;
    }
    s->n_rr = 0;
}

/* The round-robin counter of (app, ns), created on first use.  NULL only
 * when memory runs out (the caller then just takes the first row). */
static rr_counter *rr_get(nr_sqlite *s, const char *app, const char *ns)
{
    for (rr_counter *c = s->rr; c; c = c->next)
        if (strcmp(c->key, app) == 0 && strcmp(c->ns, ns) == 0) return c;
    /* Callers choose the app ids; keep the list bounded. */
    if (s->n_rr >= RR_MAX_APPS) rr_free_all(s);
    size_t la = strlen(app) + 1, ln = strlen(ns) + 1;
    rr_counter *c = malloc(sizeof(*c) + la + ln);
    if (!c) return NULL;
    memcpy(c->key, app, la);
    memcpy(c->key + la, ns, ln);
    c->ns = c->key + la;
    c->next_pick = 0;
    c->next = s->rr;
    s->rr = c;
    s->n_rr++;
    return c;
}

/*
 * The address of one live instance of (app, ns), taking turns among them.
 * Rows come sorted by address so that the turn order is stable while the
 * set of instances does not change.  Returns a malloc'd address, or NULL
 * with st filled (DAPR_ERR_NOT_FOUND when there is none).
 */
static char *do_resolve(nr_sqlite *s, const char *app, const char *ns, op_status *st)
{
    sqlite3_stmt *q = s->stmt[ST_RESOLVE];
    char **addrs = NULL;
    size_t n = 0, cap = 0;
    char *picked = NULL;
    struct timespec deadline;
    int rc;

    deadline_after(&deadline, s->timeout_ms);
    sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, ns, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, s->update_s * DEAD_AFTER_INTERVALS);
    for (;;) {
        rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            const char *a = (const char *)sqlite3_column_text(q, 0);
            if (a == NULL || *a == '\0') continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 8;
                char **na = realloc(addrs, ncap * sizeof(*na));
                if (!na) break;
                addrs = na;
                cap = ncap;
            }
            if ((addrs[n] = strdup(a)) == NULL) break;
            n++;
            continue;
        }
        /* A read only meets a lock before its first row (WAL recovery). */
        if (rc != SQLITE_DONE && n == 0) {
            sqlite3_reset(q);
            if (retry_busy(rc, &deadline)) continue;
        }
        break;
    }
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);

    if (rc == SQLITE_ROW) {
        st->status = DAPR_ERR_INTERNAL;
        snprintf(st->msg, sizeof(st->msg), "out of memory");
    } else if (rc != SQLITE_DONE) {
        db_fail(s, rc, "failed to look up address", st);
    } else if (n == 0) {
        st->status = DAPR_ERR_NOT_FOUND;
        snprintf(st->msg, sizeof(st->msg), "no live instance of app '%s'", app);
    } else {
        rr_counter *c = rr_get(s, app, ns);
        size_t i = c ? (size_t)(c->next_pick++ % n) : 0;
        picked = addrs[i];
        addrs[i] = NULL;
    }
    for (size_t i = 0; i < n; i++) free(addrs[i]);
    free(addrs);
    return picked;
}

/* ------------------------------------------------------------------ */
/* Timers                                                               */
/* ------------------------------------------------------------------ */

/* Keep our row fresh.  When it has gone (a sweep by a peer that thought
 * we were dead while we were stalled, or Dapr's sweep), write it again. */
static void refresh_task(void *arg)
{
    nr_sqlite *s = arg;
    op_status st = {DAPR_OK, ""};
    int lost = 0;

    pthread_mutex_lock(&s->lock);
    if (s->announced) {
        sqlite3_stmt *q = s->stmt[ST_REFRESH];
        sqlite3_bind_text(q, 1, s->reg_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, s->self_addr, -1, SQLITE_STATIC);
        int changed = step_write(s, q, "failed to update host registration", &st);
        if (changed == 0) {
            lost = 1;
            do_register(s, &st);
        }
    }
    pthread_mutex_unlock(&s->lock);

    if (lost)
        s->api->log(s->host, DAPR_LOG_WARN, "host registration was removed from table '%s'; "
                    "registered again", s->table);
    if (st.status != DAPR_OK)
        s->api->log(s->host, DAPR_LOG_ERROR, "%s", st.msg);
}

/* Delete dead rows.  The claim in the metadata table makes the sidecars
 * sharing the file take turns, so there is one sweep per interval. */
static void cleanup_task(void *arg)
{
    nr_sqlite *s = arg;
    op_status st = {DAPR_OK, ""};
    int removed = -1;

    pthread_mutex_lock(&s->lock);
    if (exec_sql(s, "BEGIN IMMEDIATE", "cleanup: failed to begin transaction", &st) == 0) {
        sqlite3_stmt *mark = s->stmt[ST_CLEAN_MARK];
        /* a little slack so timer jitter never skips a sweep */
        sqlite3_bind_int64(mark, 1, (s->cleanup_ms - 500) / 1000);
        int claimed = step_write(s, mark, "cleanup: failed to update " CLEANUP_KEY, &st);
        if (claimed > 0) {
            sqlite3_stmt *del = s->stmt[ST_CLEAN_DEL];
            sqlite3_bind_int64(del, 1, s->update_s * DEAD_AFTER_INTERVALS);
            removed = step_write(s, del, "cleanup: failed to delete dead hosts", &st);
        }
        if (claimed < 0 || (claimed > 0 && removed < 0) ||
            exec_sql(s, "COMMIT", "cleanup: failed to commit", &st) != 0)
            rollback(s);
    }
    pthread_mutex_unlock(&s->lock);

    if (st.status != DAPR_OK)
        s->api->log(s->host, DAPR_LOG_ERROR, "error removing dead hosts: %s", st.msg);
    else if (removed > 0)
        s->api->log(s->host, DAPR_LOG_DEBUG, "removed %d dead hosts", removed);
}

/* ------------------------------------------------------------------ */
/* Vtable                                                               */
/* ------------------------------------------------------------------ */

static void nr_announce(void *inst, const dapr_nr_instance_info *self,
                        dapr_result_cb cb, void *ctx)
{
    nr_sqlite *s = inst;
    op_status st = {DAPR_OK, ""};
    dapr_result res = {0};

    if (self == NULL || self->app_id == NULL || self->app_id[0] == '\0' ||
        self->address == NULL || self->address[0] == '\0' || self->internal_port == 0) {
        res.status = DAPR_ERR_INVALID_ARGUMENT;
        res.message = "announce needs an app id, an address and the internal port";
        cb(ctx, &res);
        return;
    }
    char *addr = join_host_port(self->address, self->internal_port);
    char *app = strdup(self->app_id);
    char *ns = strdup(self->namespace_ ? self->namespace_ : "");
    if (!addr || !app || !ns) {
        free(addr);
        free(app);
        free(ns);
        res.status = DAPR_ERR_INTERNAL;
        res.message = "out of memory";
        cb(ctx, &res);
        return;
    }

    pthread_mutex_lock(&s->lock);
    /* Announcing again (say, with a new port) replaces our row: REPLACE
     * finds it by registration_id. */
    free(s->self_addr);
    free(s->self_app);
    free(s->self_ns);
    s->self_addr = addr;
    s->self_app = app;
    s->self_ns = ns;
    if (do_register(s, &st) == 0) {
        s->announced = 1;
        if (s->refresh_timer == 0) {
            /* Dapr's schedule: the row must be at most updateInterval old
             * even when a refresh takes the whole timeout. */
            uint64_t every = (uint64_t)(s->update_s * 1000 - s->timeout_ms);
            s->refresh_timer = s->api->timer_start(s->host, every, refresh_task, s);
            if (s->refresh_timer == 0) {
                st.status = DAPR_ERR_INTERNAL;
                snprintf(st.msg, sizeof(st.msg), "cannot start the updateInterval timer");
                do_unregister(s, &(op_status){DAPR_OK, ""});
                s->announced = 0;
            }
        }
    }
    if (st.status == DAPR_OK)
        s->api->log(s->host, DAPR_LOG_INFO, "registered app '%s' at %s in table '%s' (id %s)",
                    app, addr, s->table, s->reg_id);
    pthread_mutex_unlock(&s->lock);

    res.status = st.status;
    res.message = st.status == DAPR_OK ? NULL : st.msg;
    cb(ctx, &res);
}

static void nr_resolve(void *inst, const dapr_nr_resolve_req *req,
                       dapr_nr_resolve_cb cb, void *ctx)
{
    nr_sqlite *s = inst;
    op_status st = {DAPR_OK, ""};
    dapr_nr_resolve_result res = {0};

    if (req == NULL || req->app_id == NULL || req->app_id[0] == '\0') {
        res.status = DAPR_ERR_INVALID_ARGUMENT;
        res.message = "missing app id to resolve";
        cb(ctx, &res);
        return;
    }
    pthread_mutex_lock(&s->lock);
    char *addr = do_resolve(s, req->app_id, req->namespace_ ? req->namespace_ : "", &st);
    pthread_mutex_unlock(&s->lock);

    res.status = st.status;
    res.message = st.status == DAPR_OK ? NULL : st.msg;
    res.address = addr;
    cb(ctx, &res);
    free(addr); /* the host copied it; s is not touched after cb */
}

static void nr_withdraw(void *inst, dapr_result_cb cb, void *ctx)
{
    nr_sqlite *s = inst;
    op_status st = {DAPR_OK, ""};
    dapr_result res = {0};

    /* Stop refreshing first, without the lock: timer_stop waits for a
     * running refresh_task, which itself takes the lock. */
    pthread_mutex_lock(&s->lock);
    int was = s->announced;
    s->announced = 0;
    uint64_t t = s->refresh_timer;
    s->refresh_timer = 0;
    pthread_mutex_unlock(&s->lock);
    if (t) s->api->timer_stop(s->host, t);

    if (was) {
        pthread_mutex_lock(&s->lock);
        do_unregister(s, &st);
        pthread_mutex_unlock(&s->lock);
        if (st.status == DAPR_OK)
            s->api->log(s->host, DAPR_LOG_INFO, "unregistered from table '%s'", s->table);
    }
    res.status = st.status;
    res.message = st.status == DAPR_OK ? NULL : st.msg;
    cb(ctx, &res);
}

/* ------------------------------------------------------------------ */
/* Init and close                                                       */
/* ------------------------------------------------------------------ */

static void nr_free(nr_sqlite *s)
{
    if (s->refresh_timer) s->api->timer_stop(s->host, s->refresh_timer);
    if (s->cleanup_timer) s->api->timer_stop(s->host, s->cleanup_timer);
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->stmt[i]);
    if (s->db) sqlite3_close(s->db);
    rr_free_all(s);
    free(s->self_addr);
    free(s->self_app);
    free(s->self_ns);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const char *kvs_get(dapr_kvs kvs, const char *name)
{
    for (size_t i = 0; i < kvs.n; i++)
        if (kvs.items[i].name && strcasecmp(kvs.items[i].name, name) == 0)
            return kvs.items[i].value;
    return NULL;
}

/* Given in the configuration (not just a schema default)? */
static const char *meta_explicit(nr_sqlite *s, const char *name)
{
    return kvs_get(s->api->metadata_all(s->host), name);
}

/* The value, or def when the host knows no default for it. */
static const char *meta(nr_sqlite *s, const char *name, const char *def)
{
    const char *v = s->api->metadata_get(s->host, name);
    return v ? v : def;
}

static int meta_duration(const char *name, const char *v, int64_t *ms, char *errbuf, size_t errlen)
{
    char why[160];
    if (parse_duration(v, ms, why, sizeof(why)) != 0) {
        snprintf(errbuf, errlen, "invalid value for '%s': %s", name, why);
        return -1;
    }
    return 0;
}

/* An in-memory or temporary database is private to one connection, so
 * no other sidecar could ever read our row. */
static int is_private_db(const char *conn)
{
    if (strcmp(conn, ":memory:") == 0) return 1;
    if (strncasecmp(conn, "file:", 5) != 0) return 0;
    const char *path = conn + 5;
    size_t plen = strcspn(path, "?#");
    if (plen == 0 || (plen == 8 && strncmp(path, ":memory:", 8) == 0)) return 1;
    for (const char *q = path + plen; *q; q++)
        if (strncasecmp(q, "mode=memory", 11) == 0) return 1;
    return 0;
}

/* Create the hosts table once.  In a write transaction so that two
 * sidecars starting on a new file do not race. */
static int migrate(nr_sqlite *s, char *errbuf, size_t errlen)
{
    op_status st = {DAPR_OK, ""};
    char sql[2048];
    sqlite3_stmt *q = NULL;
    long level = 0;

    if (exec_sql(s, "BEGIN IMMEDIATE", "failed to begin migration", &st) != 0) goto fail;
    snprintf(sql, sizeof(sql),
             "CREATE TABLE IF NOT EXISTS %s (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
             s->meta_table);
    if (exec_sql(s, sql, "failed to create metadata table", &st) != 0) goto fail;

    snprintf(sql, sizeof(sql), "SELECT value FROM %s WHERE key = '" MIGRATION_KEY "'",
             s->meta_table);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(q, 0);
        char *end;
        level = strtol(v ? v : "", &end, 10);
        if (!v || !*v || *end || level < 0) {
            st.status = DAPR_ERR_INTERNAL;
            snprintf(st.msg, sizeof(st.msg), "invalid value '%s' of '" MIGRATION_KEY
                     "' in table %s", v ? v : "", s->meta_table);
            sqlite3_finalize(q);
            goto fail;
        }
        rc = SQLITE_DONE;
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        db_fail(s, rc, "failed to read the migration level", &st);
        goto fail;
    }

    if (level < MIGRATION_LEVEL) {
        s->api->log(s->host, DAPR_LOG_INFO, "creating hosts table '%s'", s->table);
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE IF NOT EXISTS %1$s (registration_id TEXT NOT NULL PRIMARY KEY, "
                 "address TEXT NOT NULL, app_id TEXT NOT NULL, namespace TEXT NOT NULL, "
                 "last_update INTEGER NOT NULL);"
                 "CREATE UNIQUE INDEX IF NOT EXISTS %1$s_address_idx ON %1$s (address);"
                 "CREATE INDEX IF NOT EXISTS %1$s_last_update_idx ON %1$s (last_update);"
                 "REPLACE INTO %2$s (key, value) VALUES ('" MIGRATION_KEY "', '%3$d');",
                 s->table, s->meta_table, MIGRATION_LEVEL);
        if (exec_sql(s, sql, "failed to create the hosts table", &st) != 0) goto fail;
    }
    if (exec_sql(s, "COMMIT", "failed to commit migration", &st) != 0) goto fail;
    return 0;

fail:
    rollback(s);
    snprintf(errbuf, errlen, "%s", st.msg);
    return -1;
}

static int prepare_all(nr_sqlite *s, char *errbuf, size_t errlen)
{
    const char *t = s->table;
    char sql[ST_COUNT][1024];

    snprintf(sql[ST_REGISTER], sizeof(sql[0]),
             "REPLACE INTO %s (registration_id, address, app_id, namespace, last_update) "
             "VALUES (?1, ?2, ?3, ?4, " SQL_NOW ")", t);
    snprintf(sql[ST_REFRESH], sizeof(sql[0]),
             "UPDATE %s SET last_update = " SQL_NOW " WHERE registration_id = ?1 AND address = ?2",
             t);
    snprintf(sql[ST_RESOLVE], sizeof(sql[0]),
             "SELECT address FROM %s WHERE app_id = ?1 AND namespace = ?2 "
             "AND " SQL_NOW " - last_update < ?3 ORDER BY address", t);
    snprintf(sql[ST_DELETE], sizeof(sql[0]),
             "DELETE FROM %s WHERE registration_id = ?1 AND address = ?2", t);
    snprintf(sql[ST_CLEAN_MARK], sizeof(sql[0]),
             "INSERT INTO %s (key, value) VALUES ('" CLEANUP_KEY "', CURRENT_TIMESTAMP) "
             "ON CONFLICT (key) DO UPDATE SET value = CURRENT_TIMESTAMP "
             "WHERE strftime('%%s', CURRENT_TIMESTAMP) - strftime('%%s', value) >= ?1",
             s->meta_table);
    snprintf(sql[ST_CLEAN_DEL], sizeof(sql[0]),
             "DELETE FROM %s WHERE " SQL_NOW " - last_update >= ?1", t);

    for (int i = 0; i < ST_COUNT; i++) {
        int rc = sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            snprintf(errbuf, errlen, "failed to prepare statement on table '%s': %s",
                     t, sqlite3_errmsg(s->db));
            return -1;
        }
    }
    return 0;
}

/* Open the file named by connectionString: a path or a "file:" URI.  Like
 * Dapr, a path carrying "?options" is read as a URI. */
static int open_db(nr_sqlite *s, const char *conn, char *errbuf, size_t errlen)
{
    char *uri = NULL;
    const char *name = conn;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI |
                SQLITE_OPEN_NOMUTEX; /* our own mutex serialises all use */

    if (strncasecmp(conn, "file:", 5) != 0 && strchr(conn, '?') != NULL) {
        size_t n = strlen(conn) + 6;
        if ((uri = malloc(n)) == NULL) {
            snprintf(errbuf, errlen, "out of memory");
            return -1;
        }
        snprintf(uri, n, "file:%s", conn);
        name = uri;
    }
    if (strstr(conn, "_pragma=") != NULL)
        s->api->log(s->host, DAPR_LOG_WARN,
                    "connectionString: '_pragma' options of Dapr's Go driver are not applied "
                    "(use busyTimeout and disableWAL)");
    int rc = sqlite3_open_v2(name, &s->db, flags, NULL);
    free(uri);
    if (rc != SQLITE_OK) {
        snprintf(errbuf, errlen, "cannot open SQLite database '%s': %s", conn,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        return -1;
    }
    return 0;
}

/* Read and check the configuration.  Returns 0 or -1 with errbuf set. */
static int read_config(nr_sqlite *s, const char **conn_out, int *no_wal,
                       char *errbuf, size_t errlen)
{
    const char *conn = meta(s, "connectionString", NULL);
    if (conn == NULL || *conn == '\0') {
        snprintf(errbuf, errlen, "missing connectionString: give the path of a database "
                 "file shared by all sidecars on this machine (e.g. ~/.dapr/nr.db)");
        return -1;
    }
    if (is_private_db(conn)) {
        snprintf(errbuf, errlen, "connectionString '%s' is an in-memory or temporary "
                 "database that other sidecars cannot see; give the path of a file "
                 "shared by all sidecars", conn);
        return -1;
    }
    *conn_out = conn;

    const char *table = meta(s, "tableName", DEFAULT_TABLE);
    const char *mtable = meta(s, "metadataTableName", DEFAULT_METADATA_TABLE);
    if (!valid_identifier(table) || strlen(table) >= sizeof(s->table) - 20) {
        snprintf(errbuf, errlen, "invalid tableName '%s': use only letters, digits and "
                 "underscores (at most %zu characters)", table, sizeof(s->table) - 21);
        return -1;
    }
    if (!valid_identifier(mtable) || strlen(mtable) >= sizeof(s->meta_table)) {
        snprintf(errbuf, errlen, "invalid metadataTableName '%s': use only letters, digits "
                 "and underscores (at most %zu characters)", mtable, sizeof(s->meta_table) - 1);
        return -1;
    }
    if (strcasecmp(table, mtable) == 0) {
        snprintf(errbuf, errlen, "tableName and metadataTableName must differ (both '%s')", table);
        return -1;
    }
    snprintf(s->table, sizeof(s->table), "%s", table);
    snprintf(s->meta_table, sizeof(s->meta_table), "%s", mtable);

    int64_t update_ms;
    if (meta_duration("updateInterval", meta(s, "updateInterval", "5s"), &update_ms,
                      errbuf, errlen) != 0 ||
        meta_duration("timeout", meta(s, "timeout", "1s"), &s->timeout_ms, errbuf, errlen) != 0 ||
        meta_duration("busyTimeout", meta(s, "busyTimeout", "800ms"), &s->busy_ms,
                      errbuf, errlen) != 0)
        return -1;
    /* cleanupIntervalInSeconds is Dapr's older name. */
    const char *cname = "cleanupInterval";
    const char *cv = meta_explicit(s, cname);
    if (cv == NULL && (cv = meta_explicit(s, "cleanupIntervalInSeconds")) != NULL)
        cname = "cleanupIntervalInSeconds";
    if (cv == NULL) cv = meta(s, cname, "1h");
    if (meta_duration(cname, cv, &s->cleanup_ms, errbuf, errlen) != 0) return -1;

    /* Dapr's rules: timestamps have whole seconds, and a refresh (every
     * updateInterval - timeout) needs at least a second to be useful. */
    if (s->timeout_ms < 1000) {
        snprintf(errbuf, errlen, "invalid value for 'timeout': must be at least 1s");
        return -1;
    }
    if (update_ms <= 0 || update_ms % 1000 != 0) {
        snprintf(errbuf, errlen, "invalid value for 'updateInterval': must be a positive "
                 "whole number of seconds (e.g. 5s)");
        return -1;
    }
    if (update_ms - s->timeout_ms < 1000) {
        snprintf(errbuf, errlen, "invalid value for 'updateInterval': must be at least 1s "
                 "greater than timeout (%" PRId64 " ms)", s->timeout_ms);
        return -1;
    }
    s->update_s = update_ms / 1000;

    const char *wal = meta(s, "disableWAL", "false");
    if ((*no_wal = parse_bool(wal)) < 0) {
        snprintf(errbuf, errlen, "invalid value for 'disableWAL': '%s' is not a boolean", wal);
        return -1;
    }
    return 0;
}

static dapr_status nr_init(dapr_host *host, const dapr_host_api *api, void **instance,
                           char *errbuf, size_t errlen)
{
    nr_sqlite *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    s->host = host;
    s->api = api;
    pthread_mutex_init(&s->lock, NULL);
    new_uuid(s->reg_id);

    const char *conn = NULL;
    int no_wal = 0;
    if (read_config(s, &conn, &no_wal, errbuf, errlen) != 0) {
        nr_free(s);
        return DAPR_ERR_INVALID_ARGUMENT;
    }

    if (open_db(s, conn, errbuf, errlen) != 0) goto unavailable;
    if (s->busy_ms > 0)
        sqlite3_busy_timeout(s->db, s->busy_ms > INT32_MAX ? INT32_MAX : (int)s->busy_ms);
    if (!no_wal) {
        /* journal_mode answers with the mode in force; a file system
         * without shared memory support keeps the old one. */
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &q, NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(q, 0);
            if (mode == NULL || strcasecmp(mode, "wal") != 0)
                api->log(host, DAPR_LOG_WARN, "could not enable WAL mode (journal mode is %s)",
                         mode ? mode : "unknown");
            sqlite3_finalize(q);
        } else {
            snprintf(errbuf, errlen, "cannot use SQLite database '%s': %s", conn,
                     sqlite3_errmsg(s->db));
            sqlite3_finalize(q);
            goto unavailable;
        }
    }
    if (migrate(s, errbuf, errlen) != 0 || prepare_all(s, errbuf, errlen) != 0)
        goto unavailable;

    if (s->cleanup_ms > 0) {
        s->cleanup_timer = api->timer_start(host, (uint64_t)s->cleanup_ms, cleanup_task, s);
        if (s->cleanup_timer == 0) {
            snprintf(errbuf, errlen, "cannot start the cleanupInterval timer");
            nr_free(s);
            return DAPR_ERR_INTERNAL;
        }
    }
    api->log(host, DAPR_LOG_INFO, "SQLite %s name resolution on '%s' (table %s, "
             "updateInterval %" PRId64 "s)", sqlite3_libversion(), conn, s->table, s->update_s);
    *instance = s;
    return DAPR_OK;

unavailable:
    nr_free(s);
    return DAPR_ERR_UNAVAILABLE;
}

/* Like Dapr's Close: a sidecar going away without withdraw still removes
 * its row, since nobody will refresh it any more. */
static void nr_close(void *inst)
{
    nr_sqlite *s = inst;
    if (!s) return;
    uint64_t t = s->refresh_timer;
    s->refresh_timer = 0;
    if (t) s->api->timer_stop(s->host, t);
    if (s->announced) {
        op_status st = {DAPR_OK, ""};
        if (do_unregister(s, &st) != 0)
            s->api->log(s->host, DAPR_LOG_WARN, "%s", st.msg);
    }
    nr_free(s);
}

/* ------------------------------------------------------------------ */
/* Descriptor                                                           */
/* ------------------------------------------------------------------ */

static const dapr_metadata_field schema[] = {
    {"connectionString", DAPR_META_STRING, DAPR_META_REQUIRED, NULL,
     "database file shared by the sidecars: a path or a file: URI (not :memory:)"},
    {"updateInterval", DAPR_META_DURATION, 0, "5s",
     "how often a sidecar refreshes its row, whole seconds, at least timeout + 1s"},
    {"timeout", DAPR_META_DURATION, 0, "1s",
     "limit for each database operation (at least 1s)"},
    {"tableName", DAPR_META_STRING, 0, DEFAULT_TABLE,
     "table holding the hosts (letters, digits, underscores)"},
    {"metadataTableName", DAPR_META_STRING, 0, DEFAULT_METADATA_TABLE,
     "table holding the schema level and the last cleanup time"},
    {"cleanupInterval", DAPR_META_DURATION, 0, "1h",
     "how often to delete rows of dead sidecars; 0 or negative disables it"},
    {"cleanupIntervalInSeconds", DAPR_META_DURATION, 0, NULL,
     "older name of cleanupInterval"},
    {"busyTimeout", DAPR_META_DURATION, 0, "800ms",
     "how long to wait for another process holding the database lock"},
    {"disableWAL", DAPR_META_BOOL, 0, "false",
     "do not use write-ahead logging (advanced)"},
};

static const dapr_nameresolution_vtable vtable = {
    .size = sizeof(dapr_nameresolution_vtable),
    .announce = nr_announce,
    .resolve = nr_resolve,
    .withdraw = nr_withdraw,
};

static const dapr_component_def sqlite_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_NAME_RESOLUTION,
    .type = "nameresolution.sqlite",
    .version = "v1",
    .features = 0,
    .flags = 0, /* blocking: the host calls us on its worker pool */
    .metadata_schema = schema,
    .n_metadata_schema = sizeof(schema) / sizeof(schema[0]),
    .init = nr_init,
    .close = nr_close,
    .vtable = &vtable,
};

static const dapr_component_def *const components[] = {&sqlite_component};

static const dapr_plugin_descriptor descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "nameresolution-sqlite",
    .version = "1.0.0",
    .description = "Dapr name resolution through a SQLite file shared by the sidecars of one machine",
    .components = components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &descriptor;
}
