/*
 * state_sqlite.c - the "state.sqlite" state store: Dapr state on a local
 * SQLite database file.
 *
 * Compatibility with Dapr's own state.sqlite component (components-contrib,
 * state/sqlite), so that a database written by real Dapr is readable here
 * and the other way round:
 *
 *  - State table (default "state"):
 *      key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL,
 *      is_binary BOOLEAN NOT NULL, etag TEXT NOT NULL,
 *      expiration_time TIMESTAMP DEFAULT NULL,
 *      update_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
 *    (Dapr declares update_time NOT NULL with a default; we do the same
 *    and always set it.)
 *  - Metadata table (default "metadata"): key TEXT PK, value TEXT.  Row
 *    "migrations" holds the schema level; Dapr's only migration (level 0 ->
 *    1) creates the state table, so we write "1" as well.  Row
 *    "last-cleanup" holds the time of the last expired-row sweep, shared by
 *    every sidecar using the file so that only one of them sweeps.
 *  - Timestamps: Dapr never binds Go times; it lets SQLite compute them
 *    with CURRENT_TIMESTAMP and DATETIME(CURRENT_TIMESTAMP, '+N seconds'),
 *    so both columns hold UTC text "YYYY-MM-DD HH:MM:SS" and expiry is the
 *    text comparison expiration_time > CURRENT_TIMESTAMP.  We use exactly
 *    the same SQL functions, so the two implementations agree on the
 *    format and on when an item has expired.
 *  - Values: Dapr stores JSON text with is_binary = 0, and raw bytes as
 *    standard base64 with is_binary = 1.  We store bytes that are valid
 *    UTF-8 (without NUL) as text and anything else as base64, and decode
 *    is_binary rows on read, so every value round-trips exactly.
 *  - Etags are random UUID v4 strings, as in Dapr.
 *
 * Threading: the host calls us on several worker threads at once.  We keep
 * ONE connection behind a mutex.  SQLite allows a single writer per file
 * anyway, and one connection means our own threads never see SQLITE_BUSY
 * from each other (a pool of connections would turn in-process contention
 * into busy-timeout failures under load).  busyTimeout therefore only
 * covers other processes using the same file (another daprd); WAL mode
 * lets their readers proceed while we write.  Statements are prepared once
 * at init and used under the mutex.  Completion callbacks run after the
 * mutex is released, with results copied out of SQLite, and are always
 * the last thing an operation does: once an operation has completed the
 * host may close the instance.
 */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, strcasecmp */
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

#define DEFAULT_TABLE "state"
#define DEFAULT_METADATA_TABLE "metadata"
#define MIGRATION_LEVEL 1      /* Dapr's level after migration 0 */
#define MSG_LEN 256

/* Indexes into sqlite_store.stmt[]; the SQL text is built at init because
 * table names cannot be bound parameters. */
enum {
    ST_GET,
    ST_SET_LAST,   /* no etag, last-write: unconditional upsert */
    ST_SET_FIRST,  /* no etag, first-write: insert unless a live row exists */
    ST_SET_ETAG,   /* etag given: update only the live row with that etag */
    ST_DEL,
    ST_DEL_ETAG,
    ST_CLEAN_MARK, /* claim the sweep in the metadata table */
    ST_CLEAN_DEL,
    ST_COUNT
};

typedef struct sqlite_store {
    dapr_host *host;
    const dapr_host_api *api;

    pthread_mutex_t lock;          /* guards everything below */
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    int64_t timeout_ms;            /* per-operation limit */
    int64_t busy_ms;
    int64_t cleanup_ms;            /* <= 0: no periodic sweep */
    struct timespec deadline;      /* of the running operation */
    int deadline_set;
    int timed_out;                 /* the progress handler interrupted */

    uint64_t cleanup_timer;        /* 0: none */
    char table[128];
    char meta_table[128];
} sqlite_store;

/* The outcome of one database step, kept apart from the connection so the
 * message survives the mutex being released. */
typedef struct op_status {
    dapr_status status;
    char msg[MSG_LEN];
} op_status;

/* ------------------------------------------------------------------ */
/* Small parsers                                                        */
/* ------------------------------------------------------------------ */

/*
 * Parse a Go duration ("1h30m", "250ms", "-1s", "1.5h", "0") or a bare
 * integer meaning seconds (Dapr's metadata decoder accepts both).  Stores
 * milliseconds in *ms (sub-millisecond parts are truncated).  Returns 0,
 * or -1 with a reason in err.
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
    if (strcmp(p, "0") == 0) { *ms = 0; return 0; }

    while (*p) {
        /* number: digits with an optional fraction */
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
        /* unit: the longest one that matches ("ms" before "m") */
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

/* Strict UTF-8 check (no overlongs, surrogates or code points past
 * U+10FFFF).  NUL counts as binary: TEXT with embedded NULs is not
 * something other readers of the file handle well. */
static int is_text(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        size_t n;
        uint32_t cp;
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; }
        else return 0;
        if (len - i <= n) return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000))
            return 0;
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += n + 1;
    }
    return 1;
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding, as Go's base64.StdEncoding. */
static char *b64_encode(const uint8_t *in, size_t len, size_t *outlen)
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
    *outlen = o;
    return out;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decode into a new buffer (at least 1 byte allocated).  NULL when the
 * input is not padded standard base64 or memory runs out. */
static uint8_t *b64_decode(const char *in, size_t len, size_t *outlen)
{
    if (len % 4 != 0) return NULL;
    uint8_t *out = malloc(len / 4 * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
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

/* A random UUID v4 ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"), as Dapr's
 * etags.  sqlite3_randomness is thread-safe and seeded by the OS. */
static void new_etag(char out[37])
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

static const char *kvs_get(dapr_kvs kvs, const char *name)
{
    for (size_t i = 0; i < kvs.n; i++)
        if (kvs.items[i].name && strcasecmp(kvs.items[i].name, name) == 0)
            return kvs.items[i].value;
    return NULL;
}

/*
 * The SQLite date modifier for the item's TTL ("+N seconds"), or an empty
 * string when it has none (ttlInSeconds absent, zero or negative).  Bound
 * as the second argument of DATETIME(CURRENT_TIMESTAMP, ?): a NULL modifier
 * makes DATETIME return NULL, i.e. no expiry.
 */
static dapr_status ttl_modifier(dapr_kvs md, char out[48], char *msg, size_t msglen)
{
    out[0] = '\0';
    const char *v = kvs_get(md, "ttlInSeconds");
    if (v == NULL) return DAPR_OK;
    char *end;
    errno = 0;
    long long ttl = strtoll(v, &end, 10);
    if (*v == '\0' || isspace((unsigned char)*v) || *end != '\0' || errno == ERANGE) {
        snprintf(msg, msglen, "error parsing TTL: ttlInSeconds '%s' is not an integer", v);
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    /* Past about 68 years DATETIME could leave year 9999 and return
     * NULL (never expire); clamp instead. */
    if (ttl > INT32_MAX) ttl = INT32_MAX;
    if (ttl > 0) snprintf(out, 48, "+%lld seconds", ttl);
    return DAPR_OK;
}

/* ------------------------------------------------------------------ */
/* Database plumbing                                                    */
/* ------------------------------------------------------------------ */

/* Called by SQLite every few thousand VM steps: abort the statement once
 * the operation has run past its timeout. */
static int progress_cb(void *arg)
{
    sqlite_store *s = arg;
    if (!s->deadline_set) return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > s->deadline.tv_sec ||
        (now.tv_sec == s->deadline.tv_sec && now.tv_nsec >= s->deadline.tv_nsec)) {
        s->timed_out = 1;
        return 1;
    }
    return 0;
}

/* Take the connection for one operation and arm its timeout. */
static void op_begin(sqlite_store *s)
{
    pthread_mutex_lock(&s->lock);
    clock_gettime(CLOCK_MONOTONIC, &s->deadline);
    s->deadline.tv_sec += s->timeout_ms / 1000;
    s->deadline.tv_nsec += (s->timeout_ms % 1000) * 1000000L;
    if (s->deadline.tv_nsec >= 1000000000L) {
        s->deadline.tv_sec++;
        s->deadline.tv_nsec -= 1000000000L;
    }
    s->deadline_set = 1;
    s->timed_out = 0;
}

static void op_end(sqlite_store *s)
{
    s->deadline_set = 0;
    pthread_mutex_unlock(&s->lock);
}

/* Turn a failed SQLite call into a Dapr status and message. */
static void db_fail(sqlite_store *s, int rc, const char *what, op_status *st)
{
    int prim = rc & 0xff;
    if (prim == SQLITE_INTERRUPT && s->timed_out) {
        st->status = DAPR_ERR_TIMEOUT;
        snprintf(st->msg, sizeof(st->msg), "%s: operation exceeded the timeout of %" PRId64 " ms",
                 what, s->timeout_ms);
    } else if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) {
        st->status = DAPR_ERR_UNAVAILABLE;
        snprintf(st->msg, sizeof(st->msg),
                 "%s: database is locked by another connection (waited busyTimeout %" PRId64 " ms): %s",
                 what, s->busy_ms, sqlite3_errmsg(s->db));
    } else {
        st->status = DAPR_ERR_INTERNAL;
        snprintf(st->msg, sizeof(st->msg), "%s: %s", what, sqlite3_errmsg(s->db));
    }
}

/* Run a statement without results (BEGIN, COMMIT, ...). */
static int exec_sql(sqlite_store *s, const char *sql, const char *what, op_status *st)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        db_fail(s, rc, what, st);
        return -1;
    }
    return 0;
}

/* Undo an open transaction after a failure.  SQLite may already have
 * rolled it back by itself (interrupt, some I/O errors). */
static void rollback(sqlite_store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Step a write statement to completion; returns the number of changed
 * rows, or -1 with st filled. */
static int step_write(sqlite_store *s, sqlite3_stmt *stmt, const char *what, op_status *st)
{
    int rc = sqlite3_step(stmt);
    int changed = -1;
    if (rc == SQLITE_DONE)
        changed = sqlite3_changes(s->db);
    else
        db_fail(s, rc, what, st);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return changed;
}

/* ------------------------------------------------------------------ */
/* Operations (called with the lock held)                               */
/* ------------------------------------------------------------------ */

static int do_set(sqlite_store *s, const dapr_state_set_req *req, op_status *st)
{
    char ttl[48];
    char etag[37];

    if (req->key == NULL || req->key[0] == '\0') {
        st->status = DAPR_ERR_INVALID_ARGUMENT;
        snprintf(st->msg, sizeof(st->msg), "missing key in set operation");
        return -1;
    }
    if (req->concurrency > DAPR_CONCURRENCY_LAST_WRITE) {
        st->status = DAPR_ERR_INVALID_ARGUMENT;
        snprintf(st->msg, sizeof(st->msg), "invalid concurrency option %d", (int)req->concurrency);
        return -1;
    }
    st->status = ttl_modifier(req->metadata, ttl, st->msg, sizeof(st->msg));
    if (st->status != DAPR_OK) return -1;

    /* Encode the value: text as is, anything else as base64. */
    const uint8_t *vp = req->value.ptr ? req->value.ptr : (const uint8_t *)"";
    size_t vlen = req->value.len;
    int binary = !is_text(vp, vlen);
    char *b64 = NULL;
    if (binary) {
        b64 = b64_encode(vp, vlen, &vlen);
        if (!b64) {
            st->status = DAPR_ERR_INTERNAL;
            snprintf(st->msg, sizeof(st->msg), "out of memory");
            return -1;
        }
        vp = (const uint8_t *)b64;
    }
    new_etag(etag);

    int has_etag = req->etag && req->etag[0];
    int first = req->concurrency == DAPR_CONCURRENCY_FIRST_WRITE;
    sqlite3_stmt *stmt = s->stmt[has_etag ? ST_SET_ETAG : first ? ST_SET_FIRST : ST_SET_LAST];

    /* Every set statement takes ?1 key, ?2 value, ?3 is_binary, ?4 new
     * etag, ?5 TTL modifier, and ST_SET_ETAG also ?6 the expected etag. */
    sqlite3_bind_text(stmt, 1, req->key, -1, SQLITE_STATIC);
    sqlite3_bind_text64(stmt, 2, (const char *)vp, vlen, SQLITE_STATIC, SQLITE_UTF8);
    sqlite3_bind_int(stmt, 3, binary);
    sqlite3_bind_text(stmt, 4, etag, -1, SQLITE_STATIC);
    if (ttl[0]) sqlite3_bind_text(stmt, 5, ttl, -1, SQLITE_STATIC);
    else sqlite3_bind_null(stmt, 5);
    if (has_etag) sqlite3_bind_text(stmt, 6, req->etag, -1, SQLITE_STATIC);

    int changed = step_write(s, stmt, "failed to save state", st);
    free(b64);
    if (changed < 0) return -1;
    if (changed == 0) {
        /* The etag did not match a live row, or first-write found one. */
        st->status = DAPR_ERR_ETAG_MISMATCH;
        snprintf(st->msg, sizeof(st->msg), "possible etag mismatch. error from state store: "
                 "%s", has_etag ? "etag does not match" : "key already exists (first-write)");
        return -1;
    }
    return 0;
}

static int do_delete(sqlite_store *s, const dapr_state_delete_req *req, op_status *st)
{
    if (req->key == NULL || req->key[0] == '\0') {
        st->status = DAPR_ERR_INVALID_ARGUMENT;
        snprintf(st->msg, sizeof(st->msg), "missing key in delete operation");
        return -1;
    }
    if (req->concurrency > DAPR_CONCURRENCY_LAST_WRITE) {
        st->status = DAPR_ERR_INVALID_ARGUMENT;
        snprintf(st->msg, sizeof(st->msg), "invalid concurrency option %d", (int)req->concurrency);
        return -1;
    }
    int has_etag = req->etag && req->etag[0];
    sqlite3_stmt *stmt = s->stmt[has_etag ? ST_DEL_ETAG : ST_DEL];
    sqlite3_bind_text(stmt, 1, req->key, -1, SQLITE_STATIC);
    if (has_etag) sqlite3_bind_text(stmt, 2, req->etag, -1, SQLITE_STATIC);
    int changed = step_write(s, stmt, "failed to delete state", st);
    if (changed < 0) return -1;
    if (changed == 0 && has_etag) {
        st->status = DAPR_ERR_ETAG_MISMATCH;
        snprintf(st->msg, sizeof(st->msg), "possible etag mismatch. error from state store: "
                 "etag does not match or key not found");
        return -1;
    }
    return 0;
}

/* One read item, copied out of SQLite so it outlives the statement. */
typedef struct read_item {
    dapr_status status;
    char msg[MSG_LEN];
    int found;
    uint8_t *value;
    size_t len;
    char etag[64];
    char expire[32];  /* RFC 3339, "" when the item has no TTL */
    dapr_kv md;
} read_item;

static void do_get(sqlite_store *s, const char *key, read_item *it)
{
    op_status st = {DAPR_OK, ""};
    sqlite3_stmt *stmt = s->stmt[ST_GET];

    memset(it, 0, sizeof(*it));
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(stmt, 0);
        size_t vlen = (size_t)sqlite3_column_bytes(stmt, 0);
        int binary = sqlite3_column_int(stmt, 1);
        const char *etag = (const char *)sqlite3_column_text(stmt, 2);
        const char *exp = (const char *)sqlite3_column_text(stmt, 3);
        if (v == NULL) v = "";
        if (binary) {
            it->value = b64_decode(v, vlen, &it->len);
            if (!it->value) {
                it->status = DAPR_ERR_INTERNAL;
                snprintf(it->msg, sizeof(it->msg), "failed to decode binary data of key '%s'", key);
            }
        } else {
            it->value = malloc(vlen + 1);
            if (it->value) {
                memcpy(it->value, v, vlen);
                it->len = vlen;
            } else {
                it->status = DAPR_ERR_INTERNAL;
                snprintf(it->msg, sizeof(it->msg), "out of memory");
            }
        }
        if (it->status == DAPR_OK) {
            it->found = 1;
            snprintf(it->etag, sizeof(it->etag), "%s", etag ? etag : "");
            snprintf(it->expire, sizeof(it->expire), "%s", exp ? exp : "");
        }
    } else if (rc != SQLITE_DONE) {
        db_fail(s, rc, "failed to get state", &st);
        it->status = st.status;
        memcpy(it->msg, st.msg, sizeof(it->msg));
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

/* ------------------------------------------------------------------ */
/* The vtable                                                           */
/* ------------------------------------------------------------------ */

static void st_get(void *inst, const dapr_state_get_req *req, dapr_state_get_cb cb, void *ctx)
{
    sqlite_store *s = inst;
    read_item it;

    op_begin(s);
    do_get(s, req->key ? req->key : "", &it);
    op_end(s);

    dapr_state_get_result res = {.status = it.status,
                                 .message = it.status == DAPR_OK ? NULL : it.msg};
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
    sqlite_store *s = inst;
    op_status st = {DAPR_OK, ""};

    op_begin(s);
    do_set(s, req, &st);
    op_end(s);

    dapr_result res = {st.status, st.status == DAPR_OK ? NULL : st.msg};
    cb(ctx, &res);
}

static void st_del(void *inst, const dapr_state_delete_req *req, dapr_result_cb cb, void *ctx)
{
    sqlite_store *s = inst;
    op_status st = {DAPR_OK, ""};

    op_begin(s);
    do_delete(s, req, &st);
    op_end(s);

    dapr_result res = {st.status, st.status == DAPR_OK ? NULL : st.msg};
    cb(ctx, &res);
}

/* All keys are read in one read transaction, so the answer is a
 * consistent snapshot. */
static void st_bulk_get(void *inst, const dapr_state_bulk_get_req *req,
                        dapr_state_bulk_get_cb cb, void *ctx)
{
    sqlite_store *s = inst;
    op_status st = {DAPR_OK, ""};
    size_t n = req->n_keys;
    read_item *items = calloc(n ? n : 1, sizeof(*items));
    dapr_state_bulk_item *out = calloc(n ? n : 1, sizeof(*out));

    if (!items || !out) {
        free(items);
        free(out);
        dapr_state_bulk_get_result res = {.status = DAPR_ERR_INTERNAL, .message = "out of memory"};
        cb(ctx, &res);
        return;
    }

    op_begin(s);
    if (exec_sql(s, "BEGIN", "failed to start read transaction", &st) == 0) {
        for (size_t i = 0; i < n; i++)
            do_get(s, req->keys[i] ? req->keys[i] : "", &items[i]);
        if (exec_sql(s, "COMMIT", "failed to end read transaction", &st) != 0)
            rollback(s);
    }
    op_end(s);

    for (size_t i = 0; i < n; i++) {
        read_item *it = &items[i];
        out[i].key = req->keys[i];
        out[i].status = it->status;
        out[i].message = it->status == DAPR_OK ? NULL : it->msg;
        if (it->found) {
            out[i].found = 1;
            out[i].value.ptr = it->value;
            out[i].value.len = it->len;
            out[i].etag = it->etag;
            if (it->expire[0]) {
                it->md.name = "ttlExpireTime";
                it->md.value = it->expire;
                out[i].metadata.items = &it->md;
                out[i].metadata.n = 1;
            }
        }
    }
    dapr_state_bulk_get_result res = {.status = st.status,
                                      .message = st.status == DAPR_OK ? NULL : st.msg,
                                      .items = st.status == DAPR_OK ? out : NULL,
                                      .n_items = st.status == DAPR_OK ? n : 0};
    cb(ctx, &res);
    for (size_t i = 0; i < n; i++) free(items[i].value);
    free(items);
    free(out);
}

/* BEGIN IMMEDIATE takes the write lock up front, so the etag checks and
 * the writes see one consistent database; any failure rolls back all. */
static void st_transact(void *inst, const dapr_state_txn_req *req, dapr_result_cb cb, void *ctx)
{
    sqlite_store *s = inst;
    op_status st = {DAPR_OK, ""};

    op_begin(s);
    if (req->n_ops > 0 &&
        exec_sql(s, "BEGIN IMMEDIATE", "failed to begin transaction", &st) == 0) {
        int failed = 0;
        for (size_t i = 0; i < req->n_ops && !failed; i++) {
            const dapr_state_op *op = &req->ops[i];
            if (op->kind == DAPR_STATE_OP_UPSERT) {
                failed = do_set(s, &op->set, &st) != 0;
            } else if (op->kind == DAPR_STATE_OP_DELETE) {
                failed = do_delete(s, &op->del, &st) != 0;
            } else {
                st.status = DAPR_ERR_NOT_SUPPORTED;
                snprintf(st.msg, sizeof(st.msg), "operation type %d not supported", (int)op->kind);
                failed = 1;
            }
        }
        if (failed || exec_sql(s, "COMMIT", "failed to commit transaction", &st) != 0)
            rollback(s);
    }
    op_end(s);

    dapr_result res = {st.status, st.status == DAPR_OK ? NULL : st.msg};
    cb(ctx, &res);
}

/*
 * Periodic sweep of expired rows (cleanupInterval).  Several sidecars may
 * share the file: the "last-cleanup" row of the metadata table is updated
 * only when the previous sweep is older than the interval, and whoever
 * updates it does the sweep, all inside one write transaction.
 */
static void cleanup_task(void *arg)
{
    sqlite_store *s = arg;
    op_status st = {DAPR_OK, ""};
    int removed = -1;

    op_begin(s);
    if (exec_sql(s, "BEGIN IMMEDIATE", "cleanup: failed to begin transaction", &st) == 0) {
        /* Claim the sweep: a little slack so timer jitter never skips one. */
        sqlite3_stmt *mark = s->stmt[ST_CLEAN_MARK];
        sqlite3_bind_int64(mark, 1, (s->cleanup_ms - 500) / 1000);
        int claimed = step_write(s, mark, "cleanup: failed to update last-cleanup", &st);
        if (claimed > 0)
            removed = step_write(s, s->stmt[ST_CLEAN_DEL], "cleanup: failed to delete expired rows", &st);
        if (claimed < 0 || (claimed > 0 && removed < 0) ||
            exec_sql(s, "COMMIT", "cleanup: failed to commit", &st) != 0)
            rollback(s);
    }
    op_end(s);

    if (st.status != DAPR_OK)
        s->api->log(s->host, DAPR_LOG_ERROR, "error removing expired state: %s", st.msg);
    else if (removed >= 0)
        s->api->log(s->host, DAPR_LOG_DEBUG, "removed %d expired rows", removed);
}

/* ------------------------------------------------------------------ */
/* Init and close                                                       */
/* ------------------------------------------------------------------ */

static void store_free(sqlite_store *s)
{
    if (s->cleanup_timer) s->api->timer_stop(s->host, s->cleanup_timer);
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->stmt[i]);
    if (s->db) sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Was the field given in the manifest (not just a schema default)? */
static const char *meta_explicit(sqlite_store *s, const char *name)
{
    return kvs_get(s->api->metadata_all(s->host), name);
}

/* The field's value, falling back on def (the host already applies the
 * schema defaults; this only guards against a host that does not). */
static const char *meta(sqlite_store *s, const char *name, const char *def)
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

/* Create the tables once, in a write transaction so that two sidecars
 * starting on the same file do not race. */
static int migrate(sqlite_store *s, char *errbuf, size_t errlen)
{
    op_status st = {DAPR_OK, ""};
    char sql[512];
    sqlite3_stmt *q = NULL;
    int level = 0;

    if (exec_sql(s, "BEGIN IMMEDIATE", "failed to begin migration", &st) != 0) goto fail;
    snprintf(sql, sizeof(sql),
             "CREATE TABLE IF NOT EXISTS %s (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
             s->meta_table);
    if (exec_sql(s, sql, "failed to create metadata table", &st) != 0) goto fail;

    snprintf(sql, sizeof(sql), "SELECT value FROM %s WHERE key = 'migrations'", s->meta_table);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            const char *v = (const char *)sqlite3_column_text(q, 0);
            char *end;
            long l = strtol(v ? v : "", &end, 10);
            if (!v || !*v || *end || l < 0) {
                snprintf(st.msg, sizeof(st.msg), "invalid migration level '%s' in table %s",
                         v ? v : "", s->meta_table);
                st.status = DAPR_ERR_INTERNAL;
                sqlite3_finalize(q);
                goto fail;
            }
            level = (int)l;
            rc = SQLITE_DONE;
        }
    }
    if (rc != SQLITE_DONE) {
        db_fail(s, rc, "failed to read migration level", &st);
        sqlite3_finalize(q);
        goto fail;
    }
    sqlite3_finalize(q);

    if (level < 1) {
        s->api->log(s->host, DAPR_LOG_INFO, "creating state table '%s'", s->table);
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE IF NOT EXISTS %s ("
                 "key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL, "
                 "is_binary BOOLEAN NOT NULL, etag TEXT NOT NULL, "
                 "expiration_time TIMESTAMP DEFAULT NULL, "
                 "update_time TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                 s->table);
        if (exec_sql(s, sql, "failed to create state table", &st) != 0) goto fail;
        snprintf(sql, sizeof(sql), "REPLACE INTO %s (key, value) VALUES ('migrations', '%d')",
                 s->meta_table, MIGRATION_LEVEL);
        if (exec_sql(s, sql, "failed to record migration level", &st) != 0) goto fail;
    }
    if (exec_sql(s, "COMMIT", "failed to commit migration", &st) != 0) goto fail;
    return 0;

fail:
    rollback(s);
    snprintf(errbuf, errlen, "%s", st.msg);
    return -1;
}

/* The unconditional upsert; first-write adds a WHERE to its DO UPDATE. */
#define UPSERT_SQL                                                                    \
    "INSERT INTO %s (key, value, is_binary, etag, expiration_time, update_time) "     \
    "VALUES (?1, ?2, ?3, ?4, DATETIME(CURRENT_TIMESTAMP, ?5), CURRENT_TIMESTAMP) "    \
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "                        \
    "is_binary = excluded.is_binary, etag = excluded.etag, "                          \
    "expiration_time = excluded.expiration_time, update_time = excluded.update_time"

static int prepare_all(sqlite_store *s, char *errbuf, size_t errlen)
{
    const char *t = s->table;
    const char *live = "(expiration_time IS NULL OR expiration_time > CURRENT_TIMESTAMP)";
    char sql[ST_COUNT][1024];

    /* expiration_time is rendered as RFC 3339 by SQLite itself, which
     * also accepts the ISO forms other writers might have stored. */
    snprintf(sql[ST_GET], sizeof(sql[0]),
             "SELECT value, is_binary, etag, strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ', expiration_time) "
             "FROM %s WHERE key = ?1 AND %s", t, live);
    snprintf(sql[ST_SET_LAST], sizeof(sql[0]), UPSERT_SQL, t);
    /* First-write: an expired row that the sweep has not removed yet
     * counts as absent, so it may be replaced. */
    snprintf(sql[ST_SET_FIRST], sizeof(sql[0]), UPSERT_SQL, t);
    size_t l = strlen(sql[ST_SET_FIRST]);
    snprintf(sql[ST_SET_FIRST] + l, sizeof(sql[0]) - l,
             " WHERE %s.expiration_time IS NOT NULL AND %s.expiration_time <= CURRENT_TIMESTAMP",
             t, t);
    snprintf(sql[ST_SET_ETAG], sizeof(sql[0]),
             "UPDATE %s SET value = ?2, is_binary = ?3, etag = ?4, "
             "expiration_time = DATETIME(CURRENT_TIMESTAMP, ?5), update_time = CURRENT_TIMESTAMP "
             "WHERE key = ?1 AND etag = ?6 AND %s", t, live);
    snprintf(sql[ST_DEL], sizeof(sql[0]), "DELETE FROM %s WHERE key = ?1", t);
    /* With an etag, an expired row is a missing key: etag mismatch. */
    snprintf(sql[ST_DEL_ETAG], sizeof(sql[0]),
             "DELETE FROM %s WHERE key = ?1 AND etag = ?2 AND %s", t, live);
    snprintf(sql[ST_CLEAN_MARK], sizeof(sql[0]),
             "INSERT INTO %s (key, value) VALUES ('last-cleanup', CURRENT_TIMESTAMP) "
             "ON CONFLICT (key) DO UPDATE SET value = CURRENT_TIMESTAMP "
             "WHERE strftime('%%s', CURRENT_TIMESTAMP) - strftime('%%s', value) >= ?1",
             s->meta_table);
    snprintf(sql[ST_CLEAN_DEL], sizeof(sql[0]),
             "DELETE FROM %s WHERE expiration_time IS NOT NULL "
             "AND expiration_time <= CURRENT_TIMESTAMP", t);

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

/* Open the database named by connectionString: a path, a "file:" URI or
 * ":memory:".  Like Dapr, a path carrying "?options" is read as a URI. */
static int open_db(sqlite_store *s, const char *conn, char *errbuf, size_t errlen)
{
    char *uri = NULL;
    const char *name = conn;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI |
                SQLITE_OPEN_NOMUTEX; /* our own mutex serialises all use */

    if (strncasecmp(conn, "file:", 5) != 0 && strchr(conn, '?') != NULL &&
        strcmp(conn, ":memory:") != 0) {
        size_t n = strlen(conn) + 6;
        uri = malloc(n);
        if (!uri) {
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

static dapr_status st_init(dapr_host *host, const dapr_host_api *api, void **instance,
                           char *errbuf, size_t errlen)
{
    sqlite_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    s->host = host;
    s->api = api;
    pthread_mutex_init(&s->lock, NULL);

    /* ---- metadata ---- */
    const char *conn = meta(s, "connectionString", NULL);
    if (conn == NULL || *conn == '\0') conn = meta_explicit(s, "url"); /* Dapr's alias */
    if (conn == NULL || *conn == '\0') {
        snprintf(errbuf, errlen, "missing connectionString");
        goto invalid;
    }
    const char *table = meta(s, "tableName", DEFAULT_TABLE);
    const char *mtable = meta(s, "metadataTableName", DEFAULT_METADATA_TABLE);
    if (!valid_identifier(table) || strlen(table) >= sizeof(s->table)) {
        snprintf(errbuf, errlen, "invalid tableName '%s': use only letters, digits and "
                 "underscores (at most %zu characters)", table, sizeof(s->table) - 1);
        goto invalid;
    }
    if (!valid_identifier(mtable) || strlen(mtable) >= sizeof(s->meta_table)) {
        snprintf(errbuf, errlen, "invalid metadataTableName '%s': use only letters, digits "
                 "and underscores (at most %zu characters)", mtable, sizeof(s->meta_table) - 1);
        goto invalid;
    }
    if (strcasecmp(table, mtable) == 0) {
        snprintf(errbuf, errlen, "tableName and metadataTableName must differ (both '%s')", table);
        goto invalid;
    }
    snprintf(s->table, sizeof(s->table), "%s", table);
    snprintf(s->meta_table, sizeof(s->meta_table), "%s", mtable);

    /* timeout wins over Dapr's older alias timeoutInSeconds. */
    const char *tname = "timeout";
    const char *tv = meta_explicit(s, "timeout");
    if (tv == NULL && (tv = meta_explicit(s, "timeoutInSeconds")) != NULL) tname = "timeoutInSeconds";
    if (tv == NULL) tv = meta(s, "timeout", "20s");
    if (meta_duration(tname, tv, &s->timeout_ms, errbuf, errlen) != 0) goto invalid;
    if (s->timeout_ms < 1000) {
        snprintf(errbuf, errlen, "invalid value for '%s': must be at least 1s", tname);
        goto invalid;
    }
    if (meta_duration("busyTimeout", meta(s, "busyTimeout", "2s"), &s->busy_ms,
                      errbuf, errlen) != 0)
        goto invalid;
    if (meta_duration("cleanupInterval", meta(s, "cleanupInterval", "0"), &s->cleanup_ms,
                      errbuf, errlen) != 0)
        goto invalid;
    int no_wal = parse_bool(meta(s, "disableWAL", "false"));
    if (no_wal < 0) {
        snprintf(errbuf, errlen, "invalid value for 'disableWAL': '%s' is not a boolean",
                 meta(s, "disableWAL", "false"));
        goto invalid;
    }

    /* ---- connection ---- */
    if (open_db(s, conn, errbuf, errlen) != 0) goto unavailable;
    /* Values <= 0 leave SQLite's default: fail at once when busy. */
    if (s->busy_ms > 0)
        sqlite3_busy_timeout(s->db, s->busy_ms > INT32_MAX ? INT32_MAX : (int)s->busy_ms);
    /* The per-operation timeout: deadline armed by op_begin(). */
    sqlite3_progress_handler(s->db, 1000, progress_cb, s);

    int memory = strcmp(conn, ":memory:") == 0 || strncasecmp(conn, "file::memory:", 13) == 0 ||
                 strstr(conn, "mode=memory") != NULL;
    int readonly = sqlite3_db_readonly(s->db, "main") == 1;
    if (!memory && !readonly && !no_wal) {
        /* journal_mode answers with the mode in force; a file system
         * without shared memory support keeps the old one. */
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &q, NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(q, 0);
            if (mode == NULL || strcasecmp(mode, "wal") != 0)
                api->log(host, DAPR_LOG_WARN, "could not enable WAL mode (journal mode is %s)",
                         mode ? mode : "unknown");
        } else {
            snprintf(errbuf, errlen, "cannot use SQLite database '%s': %s", conn,
                     sqlite3_errmsg(s->db));
            sqlite3_finalize(q);
            goto unavailable;
        }
        sqlite3_finalize(q);
    }

    op_begin(s);
    int ok = readonly || migrate(s, errbuf, errlen) == 0;
    op_end(s);
    if (!ok) goto unavailable;
    if (prepare_all(s, errbuf, errlen) != 0) goto unavailable;

    if (s->cleanup_ms > 0 && !readonly) {
        s->cleanup_timer = api->timer_start(host, (uint64_t)s->cleanup_ms, cleanup_task, s);
        if (s->cleanup_timer == 0) {
            snprintf(errbuf, errlen, "cannot start the cleanupInterval timer");
            goto internal;
        }
    }
    api->log(host, DAPR_LOG_INFO, "SQLite %s state store on '%s' (table %s%s)",
             sqlite3_libversion(), conn, s->table, readonly ? ", read-only" : "");
    *instance = s;
    return DAPR_OK;

invalid:
    store_free(s);
    return DAPR_ERR_INVALID_ARGUMENT;
unavailable:
    store_free(s);
    return DAPR_ERR_UNAVAILABLE;
internal:
    store_free(s);
    return DAPR_ERR_INTERNAL;
}

static void st_close(void *inst)
{
    if (inst) store_free(inst);
}

/* ------------------------------------------------------------------ */
/* Descriptor                                                           */
/* ------------------------------------------------------------------ */

static const dapr_metadata_field schema[] = {
    {"connectionString", DAPR_META_STRING, DAPR_META_REQUIRED, NULL,
     "SQLite database: a file path, a file: URI or :memory:"},
    {"tableName", DAPR_META_STRING, 0, DEFAULT_TABLE,
     "table holding the state (letters, digits, underscores)"},
    {"metadataTableName", DAPR_META_STRING, 0, DEFAULT_METADATA_TABLE,
     "table holding the schema level and the last cleanup time"},
    {"timeout", DAPR_META_DURATION, 0, "20s",
     "limit for each database operation (at least 1s)"},
    {"timeoutInSeconds", DAPR_META_DURATION, 0, NULL,
     "older name of timeout"},
    {"busyTimeout", DAPR_META_DURATION, 0, "2s",
     "how long to wait for another process holding the database lock"},
    {"disableWAL", DAPR_META_BOOL, 0, "false",
     "do not use write-ahead logging (set on network file systems)"},
    {"cleanupInterval", DAPR_META_DURATION, 0, "0",
     "how often to delete expired rows; 0 or negative disables it"},
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

static const dapr_component_def sqlite_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.sqlite",
    .version = "v1",
    .features = DAPR_STATE_ETAG | DAPR_STATE_TRANSACTIONAL | DAPR_STATE_TTL,
    .flags = 0, /* blocking: the host calls us on its worker pool */
    .metadata_schema = schema,
    .n_metadata_schema = sizeof(schema) / sizeof(schema[0]),
    .init = st_init,
    .close = st_close,
    .vtable = &vtable,
};

static const dapr_component_def *const components[] = {&sqlite_component};

static const dapr_plugin_descriptor descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "state-sqlite",
    .version = "1.0.0",
    .description = "Dapr state store on a local SQLite database",
    .components = components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &descriptor;
}
