/*
 * state_mongodb.c - the "state.mongodb" state store: Dapr state in a
 * MongoDB collection, through libmongoc (1.17 or later; Debian 12 has 1.23).
 *
 * Document layout, the same as Dapr's own state.mongodb component
 * (components-contrib, state/mongodb), so that either can read what the
 * other wrote:
 *
 *     { _id: <key>, value: <value>, _etag: <UUID string>, _ttl: <date>|null }
 *
 *  - value: Dapr decodes the JSON value of a save request and lets the Go
 *    driver marshal it, so a JSON object becomes an embedded document, an
 *    array a BSON array, a number a BSON number, true/false/null the BSON
 *    boolean/null, and a JSON string is stored as a BSON string holding the
 *    JSON text *with its quotes*.  Raw (non-JSON) bytes are stored as a BSON
 *    string.  On read Dapr returns strings as they are and turns everything
 *    else back into JSON.  We do the same, with two additions for values
 *    Dapr itself cannot store: an object whose member names MongoDB refuses
 *    ('$' prefix, '.', empty name) or that nests deeper than MongoDB allows
 *    is kept as its JSON text in a string (so it still round-trips, and
 *    operator-looking data never reaches the server as an operator), and
 *    bytes that are not UTF-8 (or hold NUL) are kept as BSON binary.
 *  - _etag: a random UUID v4 string, new on every write.
 *  - _ttl: the expiry date, or null.  Like Dapr we create a TTL index
 *    (expireAfterSeconds 0) at init, with the createIndexes command because
 *    libmongoc 1.23 has no index model.  The TTL monitor may delete late (or,
 *    on FerretDB, never: it answers NotImplemented, which we only log), so
 *    every read and every conditional write also filters out expired
 *    documents itself.
 *
 * Threading: one mongoc_client_pool_t; each operation pops a client, uses
 * it, and pushes it back, so the host's worker threads never share a
 * client.  Every wait is bounded by operationTimeout (server selection,
 * socket reads, waiting for a pooled client), so while the server is down
 * an operation fails with DAPR_ERR_UNAVAILABLE after at most that long, and
 * the pool reconnects by itself once the server is back.
 *
 * Transactions need sessions and a replica set or sharded cluster.  The
 * descriptor is a constant, so like Dapr we always claim TRANSACTIONAL (it
 * is what lets daprd use the store for actors on a real replica set); at
 * init we ask the server (hello) whether it can run transactions, and on a
 * standalone server or FerretDB (found by buildInfo's ferretdbVersion)
 * transact fails with DAPR_ERR_NOT_SUPPORTED and a message that says why,
 * rather than running the operations one by one without atomicity.
 *
 * FerretDB v1 also runs a conditional update as a query followed by a
 * separate write, so concurrent compare-and-sets on one key can both
 * succeed; against it this process serializes its writes (see
 * serialize_writes), which the conformance kit's CAS test showed to be
 * needed.
 *
 * Query API: the query JSON is translated into a BSON filter built value
 * by value (never by pasting text); user paths become "value.<path>" and a
 * path part starting with '$' is refused; comparison values go under $eq /
 * $in / $gt..., so an object such as {"$gt": ""} is compared literally.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasecmp, getrandom */
#endif

#include <dapr/plugin.h>

#include <mongoc/mongoc.h>
#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define DEFAULT_DATABASE "daprStore"
#define DEFAULT_COLLECTION "daprCollection"
#define DEFAULT_TIMEOUT_MS 5000
#define MSG_LEN 512
#define MAX_BSON_DEPTH 90   /* MongoDB refuses documents nested past 100 */
#define MAX_FILTER_DEPTH 32
#define TXN_ATTEMPTS 3      /* retries of a transaction on TransientTransactionError */

typedef struct mongo_store {
    dapr_host *host;
    const dapr_host_api *api;
    mongoc_client_pool_t *pool;
    mongoc_uri_t *uri;
    char *db;
    char *coll;
    char *where;       /* "host:port,..." for messages; never credentials */
    int64_t timeout_ms;
    int has_txn;       /* the server can run multi-document transactions */
    char txn_why[160]; /* why not, when has_txn is 0 */
    /* FerretDB v1 runs an update as a query followed by an unconditional
     * write by _id, so two concurrent compare-and-sets on one key can both
     * "match" and one update is lost.  Against FerretDB we therefore run
     * our writes one at a time (this makes one daprd correct; several
     * processes sharing a FerretDB database still race).  Waiting for
     * the lock is bounded by operationTimeout like every other wait. */
    int serialize_writes;
    pthread_mutex_t write_lock;
} mongo_store;

typedef struct op_status {
    dapr_status status;
    char msg[MSG_LEN];
} op_status;

static void fail(op_status *st, dapr_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(op_status *st, dapr_status code, const char *fmt, ...)
{
    if (st->status != DAPR_OK) return; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
    va_end(ap);
    st->status = code;
}

/*
 * A server's error text made fit for one log line: FerretDB prefixes its
 * messages with a Go call trace ("[msg_find.go:344 handler.fn] ...") and
 * quotes PostgreSQL's multi-line errors; we drop the trace, which would
 * otherwise fill libmongoc's 504-byte message and cut off the cause, and
 * fold line breaks into spaces.
 */
static void clean_message(const char *in, char *out, size_t len)
{
    size_t o = 0;
    int space = 0;
    if (!len) return;
    while (*in && o + 1 < len) {
        if (*in == '[') {
            const char *close = strchr(in, ']');
            const char *go = strstr(in, ".go:");
            if (close && go && go < close) { /* a trace frame */
                in = close + 1;
                continue;
            }
        }
        if (*in == '\n' || *in == '\r' || *in == '\t' || *in == ' ') {
            space = o > 0;
            in++;
            continue;
        }
        if (space && o + 2 < len) out[o++] = ' ';
        space = 0;
        out[o++] = *in++;
    }
    out[o] = '\0';
}

/* The error's text: the server's whole errmsg when the reply has one
 * (libmongoc's copy in err->message may be cut short), cleaned up. */
static void error_text(const bson_error_t *err, const bson_t *reply, char *out, size_t len)
{
    bson_iter_t it;
    if (reply && bson_iter_init_find(&it, reply, "errmsg") && BSON_ITER_HOLDS_UTF8(&it))
        clean_message(bson_iter_utf8(&it, NULL), out, len);
    else
        clean_message(err->message, out, len);
}

/* Map a libmongoc error: an unreachable server (selection failed, socket
 * closed or timed out) is UNAVAILABLE so that callers may retry; anything
 * the server itself answered is INTERNAL.  libmongoc's messages name
 * host:port at most, never credentials. */
static void fail_mongo(op_status *st, mongo_store *s, const char *what, const bson_error_t *err)
{
    dapr_status code = DAPR_ERR_INTERNAL;
    char text[MSG_LEN];
    if (err->domain == MONGOC_ERROR_SERVER_SELECTION || err->domain == MONGOC_ERROR_STREAM)
        code = DAPR_ERR_UNAVAILABLE;
    clean_message(err->message, text, sizeof(text));
    fail(st, code, "%s (MongoDB at %s): %s", what, s->where, text);
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static const char *kvs_get(dapr_kvs kvs, const char *name)
{
    for (size_t i = 0; i < kvs.n; i++)
        if (kvs.items[i].name && strcasecmp(kvs.items[i].name, name) == 0)
            return kvs.items[i].value;
    return NULL;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A random UUID v4, Dapr's etag format. */
static void new_uuid(char out[37])
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n > 0) got += (size_t)n;
        else if (errno != EINTR) abort(); /* no entropy: nothing sane to do */
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
             b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Etags we hand out are UUIDs; anything else cannot match one. */
static int etag_valid(const char *e)
{
    if (strlen(e) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (e[i] != '-') return 0;
        } else if (!isxdigit((unsigned char)e[i])) {
            return 0;
        }
    }
    return 1;
}

/* ttlInSeconds -> expiry in ms since the epoch, or -1 for none (absent or
 * negative; 0 expires at once, as $$NOW + 0 does in Dapr). */
static int parse_ttl(dapr_kvs md, int64_t *expire, op_status *st)
{
    *expire = -1;
    const char *v = kvs_get(md, "ttlInSeconds");
    if (!v) return 0;
    char *end;
    errno = 0;
    long long ttl = strtoll(v, &end, 10);
    if (*v == '\0' || isspace((unsigned char)*v) || *end != '\0' || errno == ERANGE) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "error parsing TTL: ttlInSeconds '%.40s' is not an integer", v);
        return -1;
    }
    if (ttl < 0) return 0;
    if (ttl > INT32_MAX) ttl = INT32_MAX; /* ~68 years: keeps dates in range */
    *expire = now_ms() + (int64_t)ttl * 1000;
    return 0;
}

/*
 * Parse a Go duration ("5s", "1m30s", "250ms") or bare seconds into ms.
 */
static int parse_duration(const char *s, int64_t *ms)
{
    static const struct { const char *unit; double ms; } units[] = {
        {"ns", 1e-6}, {"us", 1e-3}, {"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"h", 3600e3},
    };
    const char *p = s;
    double total = 0;
    if (!s || !*s) return -1;
    char *end;
    double bare = strtod(p, &end);
    if (end != p && *end == '\0') {
        *ms = (int64_t)(bare * 1000);
        return 0;
    }
    while (*p) {
        double v = strtod(p, &end);
        if (end == p || v < 0) return -1;
        p = end;
        size_t best = 0, best_len = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t l = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, l) == 0 && l > best_len) { best = i; best_len = l; }
        }
        if (!best_len) return -1;
        total += v * units[best].ms;
        p += best_len;
    }
    *ms = (int64_t)total;
    return 0;
}

/* ------------------------------------------------------------------ */
/* JSON <-> BSON                                                        */
/* ------------------------------------------------------------------ */

static int json_to_bson(bson_t *parent, const char *key, size_t klen, json_t *j, int depth);

/* Can MongoDB store this member name as it is? */
static int key_storable(const char *k, size_t len)
{
    return len > 0 && k[0] != '$' && !memchr(k, '.', len) && !memchr(k, '\0', len);
}

static int append_container(bson_t *parent, const char *key, size_t klen, json_t *j, int depth)
{
    bson_t child;
    int ok;
    if (depth > MAX_BSON_DEPTH) return -1;
    if (json_is_object(j)) {
        if (!bson_append_document_begin(parent, key, (int)klen, &child)) return -1;
        const char *k;
        json_t *v;
        ok = 1;
        json_object_foreach(j, k, v) {
            size_t kl = strlen(k);
            if (!key_storable(k, kl) || json_to_bson(&child, k, kl, v, depth + 1) != 0) {
                ok = 0;
                break;
            }
        }
        return bson_append_document_end(parent, &child) && ok ? 0 : -1;
    }
    if (!bson_append_array_begin(parent, key, (int)klen, &child)) return -1;
    ok = 1;
    for (size_t i = 0; i < json_array_size(j) && ok; i++) {
        char buf[16];
        const char *ik;
        size_t il = bson_uint32_to_string((uint32_t)i, &ik, buf, sizeof(buf));
        ok = json_to_bson(&child, ik, il, json_array_get(j, i), depth + 1) == 0;
    }
    return bson_append_array_end(parent, &child) && ok ? 0 : -1;
}

/* Append one JSON value as BSON; -1 when MongoDB could not hold it as is. */
static int json_to_bson(bson_t *parent, const char *key, size_t klen, json_t *j, int depth)
{
    int k = (int)klen;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        return append_container(parent, key, klen, j, depth);
    case JSON_STRING:
        return bson_append_utf8(parent, key, k, json_string_value(j), (int)json_string_length(j)) ? 0 : -1;
    case JSON_INTEGER: {
        json_int_t v = json_integer_value(j);
        if (v >= INT32_MIN && v <= INT32_MAX)
            return bson_append_int32(parent, key, k, (int32_t)v) ? 0 : -1;
        return bson_append_int64(parent, key, k, (int64_t)v) ? 0 : -1;
    }
    case JSON_REAL:
        return bson_append_double(parent, key, k, json_real_value(j)) ? 0 : -1;
    case JSON_TRUE:
    case JSON_FALSE:
        return bson_append_bool(parent, key, k, json_is_true(j)) ? 0 : -1;
    case JSON_NULL:
        return bson_append_null(parent, key, k) ? 0 : -1;
    }
    return -1;
}

/* Append the state value as field "value" of doc, in Dapr's shape (see the
 * file comment).  doc is rebuilt by the caller if this fails half-way, so
 * we build the structured form in a scratch document first. */
static void append_value(bson_t *doc, dapr_bytes v)
{
    const char *p = v.ptr ? (const char *)v.ptr : "";
    json_t *j = v.len ? json_loadb(p, v.len, JSON_DECODE_ANY, NULL) : NULL;
    if (j && (json_is_object(j) || json_is_array(j) || json_is_number(j) ||
              json_is_boolean(j) || json_is_null(j))) {
        bson_t scratch = BSON_INITIALIZER;
        if (json_to_bson(&scratch, "value", 5, j, 1) == 0) {
            bson_iter_t it;
            if (bson_iter_init_find(&it, &scratch, "value") &&
                bson_append_iter(doc, "value", 5, &it)) {
                bson_destroy(&scratch);
                json_decref(j);
                return;
            }
        }
        bson_destroy(&scratch);
    }
    json_decref(j);
    /* A JSON string (kept with its quotes, as Dapr does), raw bytes, or a
     * document MongoDB would refuse: the bytes themselves. */
    if (bson_utf8_validate(p, v.len, false))
        bson_append_utf8(doc, "value", 5, p, (int)v.len);
    else
        bson_append_binary(doc, "value", 5, BSON_SUBTYPE_BINARY, (const uint8_t *)p, (uint32_t)v.len);
}

static void emit_json_string(bson_string_t *out, const char *s, uint32_t len)
{
    bson_string_append_c(out, '"');
    for (uint32_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': bson_string_append(out, "\\\""); break;
        case '\\': bson_string_append(out, "\\\\"); break;
        case '\n': bson_string_append(out, "\\n"); break;
        case '\r': bson_string_append(out, "\\r"); break;
        case '\t': bson_string_append(out, "\\t"); break;
        default:
            if (c < 0x20) bson_string_append_printf(out, "\\u%04x", c);
            else bson_string_append_c(out, (char)c);
        }
    }
    bson_string_append_c(out, '"');
}

/* The shortest of %.15g..%.17g that reads back as the same double, so 0.1
 * prints as 0.1 (as Go's encoder does), not 0.10000000000000001. */
static void emit_double(bson_string_t *out, double d)
{
    if (!isfinite(d)) {
        bson_string_append(out, "null"); /* JSON has no NaN or Infinity */
        return;
    }
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    bson_string_append(out, buf);
}

static void emit_value(bson_string_t *out, const bson_iter_t *it);

static void emit_container(bson_string_t *out, const bson_iter_t *it, int is_doc)
{
    bson_iter_t child;
    int first = 1;
    bson_string_append_c(out, is_doc ? '{' : '[');
    if (bson_iter_recurse(it, &child)) {
        while (bson_iter_next(&child)) {
            if (!first) bson_string_append_c(out, ',');
            first = 0;
            if (is_doc) {
                emit_json_string(out, bson_iter_key(&child), (uint32_t)bson_iter_key_len(&child));
                bson_string_append_c(out, ':');
            }
            emit_value(out, &child);
        }
    }
    bson_string_append_c(out, is_doc ? '}' : ']');
}

/* Any other BSON type (dates, ObjectIds, decimals...): relaxed extended
 * JSON, as Dapr's driver renders them. */
static void emit_extended(bson_string_t *out, const bson_iter_t *it)
{
    bson_t tmp = BSON_INITIALIZER;
    char *text = NULL;
    json_t *doc = NULL;
    char *val = NULL;
    if (bson_append_iter(&tmp, "v", 1, it) &&
        (text = bson_as_relaxed_extended_json(&tmp, NULL)) &&
        (doc = json_loads(text, 0, NULL)) &&
        (val = json_dumps(json_object_get(doc, "v"), JSON_COMPACT | JSON_ENCODE_ANY)))
        bson_string_append(out, val);
    else
        bson_string_append(out, "null");
    free(val);
    json_decref(doc);
    bson_free(text);
    bson_destroy(&tmp);
}

static void emit_value(bson_string_t *out, const bson_iter_t *it)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8: {
        uint32_t len;
        const char *s = bson_iter_utf8(it, &len);
        emit_json_string(out, s, len);
        break;
    }
    case BSON_TYPE_INT32: bson_string_append_printf(out, "%" PRId32, bson_iter_int32(it)); break;
    case BSON_TYPE_INT64: bson_string_append_printf(out, "%" PRId64, bson_iter_int64(it)); break;
    case BSON_TYPE_DOUBLE: emit_double(out, bson_iter_double(it)); break;
    case BSON_TYPE_BOOL: bson_string_append(out, bson_iter_bool(it) ? "true" : "false"); break;
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED: bson_string_append(out, "null"); break;
    case BSON_TYPE_DOCUMENT: emit_container(out, it, 1); break;
    case BSON_TYPE_ARRAY: emit_container(out, it, 0); break;
    default: emit_extended(out, it); break;
    }
}

/* The state bytes of a stored document's "value" field; *out is malloc'd
 * (never NULL on success). */
static uint8_t *decode_value(const bson_t *doc, size_t *len)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "value")) {
        if (BSON_ITER_HOLDS_UTF8(&it)) {
            uint32_t l;
            const char *s = bson_iter_utf8(&it, &l);
            uint8_t *p = malloc(l + 1);
            if (p) { memcpy(p, s, l); p[l] = 0; *len = l; }
            return p;
        }
        if (BSON_ITER_HOLDS_BINARY(&it)) {
            bson_subtype_t sub;
            uint32_t l;
            const uint8_t *b;
            bson_iter_binary(&it, &sub, &l, &b);
            uint8_t *p = malloc(l + 1);
            if (p) { if (l) memcpy(p, b, l); p[l] = 0; *len = l; }
            return p;
        }
    }
    bson_string_t *out = bson_string_new(NULL);
    if (bson_iter_init_find(&it, doc, "value")) emit_value(out, &it);
    else bson_string_append(out, "null"); /* as Dapr marshals a nil value */
    *len = out->len;
    uint8_t *p = malloc(out->len + 1);
    if (p) memcpy(p, out->str, out->len + 1);
    bson_string_free(out, true);
    return p;
}

/* The document's expiry in ms, or -1 when it has none. */
static int64_t doc_expiry(const bson_t *doc)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "_ttl") && BSON_ITER_HOLDS_DATE_TIME(&it))
        return bson_iter_date_time(&it);
    return -1;
}

static void format_rfc3339(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* {$or: [{_ttl: null}, {_ttl: {$gt: now}}]}: not expired.  {_ttl: null}
 * also matches documents without the field. */
static void append_live(bson_t *filter, const char *key, int64_t now)
{
    bson_t arr, a, b, gt;
    bson_append_array_begin(filter, key, -1, &arr);
    bson_append_document_begin(&arr, "0", 1, &a);
    bson_append_null(&a, "_ttl", 4);
    bson_append_document_end(&arr, &a);
    bson_append_document_begin(&arr, "1", 1, &b);
    bson_append_document_begin(&b, "_ttl", 4, &gt);
    bson_append_date_time(&gt, "$gt", 3, now);
    bson_append_document_end(&b, &gt);
    bson_append_document_end(&arr, &b);
    bson_append_array_end(filter, &arr);
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */
/* ------------------------------------------------------------------ */

typedef struct conn {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
} conn;

static int conn_get(mongo_store *s, conn *c, op_status *st)
{
    c->coll = NULL;
    /* Bounded by waitQueueTimeoutMS (set to operationTimeout at init). */
    c->client = mongoc_client_pool_pop(s->pool);
    if (!c->client) {
        fail(st, DAPR_ERR_UNAVAILABLE, "no free MongoDB connection within %" PRId64 " ms", s->timeout_ms);
        return -1;
    }
    c->coll = mongoc_client_get_collection(c->client, s->db, s->coll);
    return 0;
}

static void conn_put(mongo_store *s, conn *c)
{
    if (c->coll) mongoc_collection_destroy(c->coll);
    if (c->client) mongoc_client_pool_push(s->pool, c->client);
    c->coll = NULL;
    c->client = NULL;
}

/* Take the write lock (only against FerretDB, see serialize_writes); a
 * writer queued behind one stuck on a dead server gives up after
 * operationTimeout rather than waiting for everyone ahead of it. */
static int write_lock(mongo_store *s, op_status *st)
{
    if (!s->serialize_writes) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(s->timeout_ms / 1000);
    ts.tv_nsec += (long)(s->timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_timedlock(&s->write_lock, &ts) != 0) {
        fail(st, DAPR_ERR_TIMEOUT, "timed out after %" PRId64 " ms waiting for earlier writes to "
             "MongoDB at %s", s->timeout_ms, s->where);
        return -1;
    }
    return 0;
}

static void write_unlock(mongo_store *s)
{
    if (s->serialize_writes) pthread_mutex_unlock(&s->write_lock);
}

/* Find the document of key (expired or not); *found tells. */
static int find_doc(mongo_store *s, mongoc_collection_t *coll, const char *key, const bson_t *session,
                    bson_t *out, int *found, op_status *st)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    bson_error_t err;
    const bson_t *doc;
    int rc = 0;
    *found = 0;
    BSON_APPEND_UTF8(&filter, "_id", key);
    BSON_APPEND_INT64(&opts, "limit", 1);
    if (session) bson_concat(&opts, session);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    if (mongoc_cursor_next(cur, &doc)) {
        bson_copy_to(doc, out);
        *found = 1;
    } else if (mongoc_cursor_error(cur, &err)) {
        fail_mongo(st, s, "failed to read state", &err);
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&filter);
    bson_destroy(&opts);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Writes (shared by set, del and transact)                             */
/* ------------------------------------------------------------------ */

static int is_dup_key(const bson_error_t *err)
{
    return err->code == 11000 || err->code == 11001 || err->code == 12582;
}

/* Replace the document matched by filter; *matched is the count. */
static int replace(mongo_store *s, mongoc_collection_t *coll, const bson_t *filter, const bson_t *doc,
                   int upsert, const bson_t *session, int64_t *matched, op_status *st)
{
    bson_t opts = BSON_INITIALIZER, reply;
    bson_error_t err;
    bson_iter_t it;
    if (upsert) BSON_APPEND_BOOL(&opts, "upsert", true);
    if (session) bson_concat(&opts, session);
    bool ok = mongoc_collection_replace_one(coll, filter, doc, &opts, &reply, &err);
    *matched = 0;
    if (ok && bson_iter_init_find(&it, &reply, "matchedCount")) *matched = bson_iter_as_int64(&it);
    if (ok && bson_iter_init_find(&it, &reply, "upsertedCount")) *matched += bson_iter_as_int64(&it);
    bson_destroy(&reply);
    bson_destroy(&opts);
    if (!ok) {
        if (is_dup_key(&err))
            /* Two racing upserts of a new key: the loser lost the race. */
            fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch: the key was written concurrently");
        else
            fail_mongo(st, s, "failed to save state", &err);
        return -1;
    }
    return 0;
}

/*
 * Look at the current document of key: *live when it exists and has not
 * expired, *etag_ok when it also carries etag.  Used where a write may
 * check first and write after: inside a transaction (the server aborts it
 * if another writer got in between) and against FerretDB under our write
 * lock.  FerretDB pushes only a filter of exactly {_id: key} down to its
 * storage; any other filter scans the whole collection.
 */
static int check_current(mongo_store *s, mongoc_collection_t *coll, const char *key, const char *etag,
                         const bson_t *session, int64_t now, int *live, int *etag_ok, op_status *st)
{
    bson_t old = BSON_INITIALIZER;
    int found;
    *live = *etag_ok = 0;
    if (find_doc(s, coll, key, session, &old, &found, st) != 0) {
        bson_destroy(&old);
        return -1;
    }
    if (found) {
        int64_t exp = doc_expiry(&old);
        bson_iter_t it;
        *live = exp < 0 || exp > now;
        *etag_ok = *live && etag && bson_iter_init_find(&it, &old, "_etag") &&
                   BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), etag) == 0;
    }
    bson_destroy(&old);
    return 0;
}

static int do_set(mongo_store *s, mongoc_collection_t *coll, const dapr_state_set_req *r,
                  const bson_t *session, op_status *st)
{
    const char *etag = r->etag && *r->etag ? r->etag : NULL;
    int64_t expire, matched = 0;
    char uuid[37];
    bson_error_t err;
    int rc = -1;

    if (parse_ttl(r->metadata, &expire, st) != 0) return -1;
    if (etag && !etag_valid(etag)) {
        fail(st, DAPR_ERR_ETAG_INVALID, "invalid etag value: not a UUID");
        return -1;
    }
    int64_t now = now_ms();
    new_uuid(uuid);
    bson_t doc = BSON_INITIALIZER, filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "_id", r->key);
    append_value(&doc, r->value);
    BSON_APPEND_UTF8(&doc, "_etag", uuid);
    if (expire >= 0) BSON_APPEND_DATE_TIME(&doc, "_ttl", expire);
    else BSON_APPEND_NULL(&doc, "_ttl");

    BSON_APPEND_UTF8(&filter, "_id", r->key);
    if (session || s->serialize_writes) {
        int live, etag_ok;
        if (check_current(s, coll, r->key, etag, session, now, &live, &etag_ok, st) != 0) goto out;
        if (etag && !etag_ok) {
            fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch: the key is missing or its etag differs");
            goto out;
        }
        if (!etag && r->concurrency == DAPR_CONCURRENCY_FIRST_WRITE && live) {
            fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch: the key already exists (first-write)");
            goto out;
        }
        if (replace(s, coll, &filter, &doc, 1, session, &matched, st) != 0) goto out;
    } else if (etag) {
        /* One atomic conditional write: only the live document carrying
         * this etag. */
        BSON_APPEND_UTF8(&filter, "_etag", etag);
        append_live(&filter, "$or", now);
        if (replace(s, coll, &filter, &doc, 0, session, &matched, st) != 0) goto out;
        if (matched == 0) {
            fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch: the key is missing or its etag differs");
            goto out;
        }
    } else if (r->concurrency == DAPR_CONCURRENCY_FIRST_WRITE) {
        /* Insert (atomic on the unique _id), or else take the place of an
         * expired document. */
        if (mongoc_collection_insert_one(coll, &doc, NULL, NULL, &err)) {
            rc = 0;
            goto out;
        }
        if (!is_dup_key(&err)) {
            fail_mongo(st, s, "failed to save state", &err);
            goto out;
        }
        bson_t lte;
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "_ttl", &lte);
        BSON_APPEND_DATE_TIME(&lte, "$lte", now);
        bson_append_document_end(&filter, &lte);
        if (replace(s, coll, &filter, &doc, 0, NULL, &matched, st) != 0) goto out;
        if (matched == 0) {
            fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch: the key already exists (first-write)");
            goto out;
        }
    } else {
        if (replace(s, coll, &filter, &doc, 1, session, &matched, st) != 0) goto out;
    }
    rc = 0;
out:
    bson_destroy(&doc);
    bson_destroy(&filter);
    return rc;
}

static int do_del(mongo_store *s, mongoc_collection_t *coll, const dapr_state_delete_req *r,
                  const bson_t *session, op_status *st)
{
    const char *etag = r->etag && *r->etag ? r->etag : NULL;
    if (etag && !etag_valid(etag)) {
        fail(st, DAPR_ERR_ETAG_INVALID, "invalid etag value: not a UUID");
        return -1;
    }
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, reply;
    bson_error_t err;
    bson_iter_t it;
    int64_t deleted = 0;
    int rc = 0;
    BSON_APPEND_UTF8(&filter, "_id", r->key);
    if (etag && (session || s->serialize_writes)) {
        int live, etag_ok;
        if (check_current(s, coll, r->key, etag, session, now_ms(), &live, &etag_ok, st) != 0) {
            bson_destroy(&filter);
            bson_destroy(&opts);
            return -1;
        }
        if (!etag_ok) {
            fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch: the key is missing or its etag differs");
            bson_destroy(&filter);
            bson_destroy(&opts);
            return -1;
        }
    } else if (etag) {
        BSON_APPEND_UTF8(&filter, "_etag", etag);
        append_live(&filter, "$or", now_ms());
    }
    if (session) bson_concat(&opts, session);
    if (!mongoc_collection_delete_one(coll, &filter, &opts, &reply, &err)) {
        fail_mongo(st, s, "failed to delete state", &err);
        rc = -1;
    } else {
        if (bson_iter_init_find(&it, &reply, "deletedCount")) deleted = bson_iter_as_int64(&it);
        if (etag && deleted == 0) {
            fail(st, DAPR_ERR_ETAG_MISMATCH, "possible etag mismatch: the key is missing or its etag differs");
            rc = -1;
        }
    }
    bson_destroy(&reply);
    bson_destroy(&filter);
    bson_destroy(&opts);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Query: Dapr's query JSON -> a BSON filter                            */
/* ------------------------------------------------------------------ */

/* "person.org" -> "value.person.org"; parts must be non-empty and must not
 * start with '$' (that would address an operator, not a field). */
static char *field_path(const char *path, op_status *st)
{
    const char *p = path;
    if (!*p) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: empty key");
        return NULL;
    }
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || *p == '$') {
            fail(st, DAPR_ERR_INVALID_ARGUMENT,
                 "query: key '%.80s' has an empty part or a part starting with '$'", path);
            return NULL;
        }
        if (!dot) break;
        p = dot + 1;
    }
    size_t len = strlen(path) + 7;
    char *out = malloc(len);
    if (out) snprintf(out, len, "value.%s", path);
    else fail(st, DAPR_ERR_INTERNAL, "out of memory");
    return out;
}

/* A comparison operand: BSON for the JSON value, as data only. */
static int append_operand(bson_t *b, const char *key, json_t *v, op_status *st)
{
    if (json_to_bson(b, key, strlen(key), v, 1) != 0) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT,
             "query: a value holds a member name MongoDB cannot store ('$' prefix, '.', empty)");
        return -1;
    }
    return 0;
}

static int emit_filter(bson_t *out, const char *slot, json_t *f, int depth, op_status *st)
{
    static const struct { const char *name; const char *op; } cmp[] = {
        {"EQ", "$eq"}, {"NEQ", "$ne"}, {"GT", "$gt"}, {"GTE", "$gte"}, {"LT", "$lt"}, {"LTE", "$lte"},
        {"IN", "$in"},
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
    bson_t doc;
    int rc = -1;
    bson_append_document_begin(out, slot, -1, &doc);

    if (strcmp(op, "AND") == 0 || strcmp(op, "OR") == 0) {
        if (!json_is_array(arg) || json_array_size(arg) == 0) {
            fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: %s wants a non-empty array", op);
            goto out;
        }
        bson_t arr;
        bson_append_array_begin(&doc, op[0] == 'A' ? "$and" : "$or", -1, &arr);
        rc = 0;
        for (size_t i = 0; i < json_array_size(arg) && rc == 0; i++) {
            char buf[16];
            const char *ik;
            bson_uint32_to_string((uint32_t)i, &ik, buf, sizeof(buf));
            rc = emit_filter(&arr, ik, json_array_get(arg, i), depth + 1, st);
        }
        bson_append_array_end(&doc, &arr);
        goto out;
    }
    for (size_t k = 0; k < sizeof(cmp) / sizeof(cmp[0]); k++) {
        if (strcmp(op, cmp[k].name) != 0) continue;
        if (!json_is_object(arg) || json_object_size(arg) != 1) {
            fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: %s wants an object with one key", op);
            goto out;
        }
        void *ai = json_object_iter(arg);
        const char *path = json_object_iter_key(ai);
        json_t *val = json_object_iter_value(ai);
        int is_in = strcmp(op, "IN") == 0;
        if (is_in && (!json_is_array(val) || json_array_size(val) == 0)) {
            fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: IN wants a non-empty array for '%.80s'", path);
            goto out;
        }
        char *field = field_path(path, st);
        if (!field) goto out;
        bson_t cond;
        bson_append_document_begin(&doc, field, -1, &cond);
        /* MongoDB's $ne also matches documents without the field; Dapr's
         * SQL stores (value <> x) do not, and neither do we. */
        if (strcmp(op, "NEQ") == 0) BSON_APPEND_BOOL(&cond, "$exists", true);
        rc = append_operand(&cond, cmp[k].op, val, st);
        bson_append_document_end(&doc, &cond);
        free(field);
        goto out;
    }
    fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: unknown filter operator '%.40s'", op);
out:
    bson_append_document_end(out, &doc);
    return rc;
}

/* Escape a key prefix for a ^-anchored regex: every ASCII punctuation
 * character gets a backslash (always literal in PCRE); letters, digits and
 * non-ASCII bytes stay as they are. */
static char *regex_prefix(const char *prefix)
{
    size_t n = strlen(prefix);
    char *out = malloc(2 * n + 2), *q = out;
    if (!out) return NULL;
    *q++ = '^';
    for (const char *p = prefix; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x80 && !isalnum(c)) *q++ = '\\';
        *q++ = (char)c;
    }
    *q = '\0';
    return out;
}

/* Build the find filter and options; *limit and *offset for the token. */
static int build_query(const dapr_state_query_req *req, bson_t *filter, bson_t *opts,
                       int64_t *limit, int64_t *offset, op_status *st)
{
    json_error_t jerr;
    const char *text = req->query_json.ptr ? (const char *)req->query_json.ptr : "";
    json_t *q = json_loadb(text, req->query_json.len, 0, &jerr);
    int rc = -1;
    *limit = 0;
    *offset = 0;
    if (!json_is_object(q)) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: not a JSON object: %s", q ? "wrong type" : jerr.text);
        goto out;
    }
    bson_t and;
    bson_append_array_begin(filter, "$and", 4, &and);
    /* 0: only the caller's keys. */
    bson_t c0, re;
    bson_append_document_begin(&and, "0", 1, &c0);
    char *rx = regex_prefix(req->key_prefix ? req->key_prefix : "");
    bson_append_document_begin(&c0, "_id", 3, &re);
    bson_append_regex(&re, "$regex", 6, rx ? rx : "^", "");
    bson_append_document_end(&c0, &re);
    free(rx);
    bson_append_document_end(&and, &c0);
    /* 1: not expired. */
    bson_t c1;
    bson_append_document_begin(&and, "1", 1, &c1);
    append_live(&c1, "$or", now_ms());
    bson_append_document_end(&and, &c1);
    /* 2: the user's filter. */
    json_t *f = json_object_get(q, "filter");
    int frc = 0;
    if (f && !(json_is_object(f) && json_object_size(f) == 0))
        frc = emit_filter(&and, "2", f, 0, st);
    bson_append_array_end(filter, &and);
    if (frc != 0) goto out;

    json_t *sort = json_object_get(q, "sort");
    if (sort && !json_is_array(sort)) {
        fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: sort must be an array");
        goto out;
    }
    bson_t sd;
    bson_append_document_begin(opts, "sort", 4, &sd);
    int src = 0;
    for (size_t i = 0; i < json_array_size(sort) && src == 0; i++) {
        json_t *item = json_array_get(sort, i);
        const char *key = json_string_value(json_object_get(item, "key"));
        json_t *ord = json_object_get(item, "order");
        const char *order = ord ? json_string_value(ord) : "ASC";
        if (!key || !order || (strcmp(order, "ASC") != 0 && strcmp(order, "DESC") != 0)) {
            fail(st, DAPR_ERR_INVALID_ARGUMENT,
                 "query: each sort item wants a \"key\" and an \"order\" of ASC or DESC");
            src = -1;
            break;
        }
        char *field = field_path(key, st);
        if (!field) { src = -1; break; }
        bson_append_int32(&sd, field, -1, order[0] == 'A' ? 1 : -1);
        free(field);
    }
    /* The key last, so that pages are stable. */
    BSON_APPEND_INT32(&sd, "_id", 1);
    bson_append_document_end(opts, &sd);
    if (src != 0) goto out;

    json_t *page = json_object_get(q, "page");
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
            long long v = strtoll(t, &end, 10);
            if (!isdigit((unsigned char)*t) || *end || errno == ERANGE) {
                fail(st, DAPR_ERR_INVALID_ARGUMENT, "query: invalid page token '%.40s'", t);
                goto out;
            }
            *offset = v;
        }
    }
    if (*limit > 0) BSON_APPEND_INT64(opts, "limit", *limit);
    if (*offset > 0) BSON_APPEND_INT64(opts, "skip", *offset);
    rc = 0;
out:
    json_decref(q);
    return rc;
}

/* ------------------------------------------------------------------ */
/* The vtable                                                           */
/* ------------------------------------------------------------------ */

static void st_get(void *inst, const dapr_state_get_req *req, dapr_state_get_cb cb, void *ctx)
{
    mongo_store *s = inst;
    op_status st = {DAPR_OK, ""};
    conn c;
    bson_t doc = BSON_INITIALIZER;
    int found = 0;
    uint8_t *val = NULL;
    size_t len = 0;
    char etag[64] = "", expire_text[32];
    dapr_kv md;
    dapr_state_get_result res = {.status = DAPR_OK};

    if (conn_get(s, &c, &st) == 0) {
        find_doc(s, c.coll, req->key, NULL, &doc, &found, &st);
        conn_put(s, &c);
    }
    if (st.status == DAPR_OK && found) {
        int64_t exp = doc_expiry(&doc);
        if (exp >= 0 && exp <= now_ms()) {
            found = 0; /* expired, not yet removed by the TTL monitor */
        } else {
            bson_iter_t it;
            if (bson_iter_init_find(&it, &doc, "_etag") && BSON_ITER_HOLDS_UTF8(&it))
                snprintf(etag, sizeof(etag), "%s", bson_iter_utf8(&it, NULL));
            if (!(val = decode_value(&doc, &len)))
                fail(&st, DAPR_ERR_INTERNAL, "out of memory");
            if (exp >= 0) {
                format_rfc3339(exp, expire_text);
                md.name = "ttlExpireTime";
                md.value = expire_text;
                res.metadata.items = &md;
                res.metadata.n = 1;
            }
        }
    }
    bson_destroy(&doc);
    res.status = st.status;
    if (st.status != DAPR_OK) {
        res.message = st.msg;
        res.metadata.n = 0;
    } else if (found) {
        res.found = 1;
        res.value.ptr = val;
        res.value.len = len;
        res.etag = etag[0] ? etag : NULL;
    }
    cb(ctx, &res);
    free(val);
}

static void st_set(void *inst, const dapr_state_set_req *req, dapr_result_cb cb, void *ctx)
{
    mongo_store *s = inst;
    op_status st = {DAPR_OK, ""};
    conn c;
    if (conn_get(s, &c, &st) == 0) {
        if (write_lock(s, &st) == 0) {
            do_set(s, c.coll, req, NULL, &st);
            write_unlock(s);
        }
        conn_put(s, &c);
    }
    dapr_result res = {st.status, st.status ? st.msg : NULL};
    cb(ctx, &res);
}

static void st_del(void *inst, const dapr_state_delete_req *req, dapr_result_cb cb, void *ctx)
{
    mongo_store *s = inst;
    op_status st = {DAPR_OK, ""};
    conn c;
    if (conn_get(s, &c, &st) == 0) {
        if (write_lock(s, &st) == 0) {
            do_del(s, c.coll, req, NULL, &st);
            write_unlock(s);
        }
        conn_put(s, &c);
    }
    dapr_result res = {st.status, st.status ? st.msg : NULL};
    cb(ctx, &res);
}

/* One attempt at the whole transaction; returns 1 when it may be retried. */
static int txn_attempt(mongo_store *s, mongoc_client_t *client, mongoc_collection_t *coll,
                       const dapr_state_txn_req *req, op_status *st)
{
    bson_error_t err;
    bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    int retry = 0;
    mongoc_client_session_t *cs = mongoc_client_start_session(client, NULL, &err);
    if (!cs) {
        fail_mongo(st, s, "cannot start a session", &err);
        bson_destroy(&opts);
        bson_destroy(&reply);
        return 0;
    }
    if (!mongoc_client_session_start_transaction(cs, NULL, &err) ||
        !mongoc_client_session_append(cs, &opts, &err)) {
        fail_mongo(st, s, "cannot start a transaction", &err);
        goto out;
    }
    for (size_t i = 0; i < req->n_ops && st->status == DAPR_OK; i++) {
        const dapr_state_op *op = &req->ops[i];
        if (op->kind == DAPR_STATE_OP_UPSERT) do_set(s, coll, &op->set, &opts, st);
        else if (op->kind == DAPR_STATE_OP_DELETE) do_del(s, coll, &op->del, &opts, st);
        else fail(st, DAPR_ERR_INVALID_ARGUMENT, "unknown transaction operation %d", (int)op->kind);
    }
    if (st->status != DAPR_OK) {
        mongoc_client_session_abort_transaction(cs, NULL);
        goto out;
    }
    bson_destroy(&reply);
    if (!mongoc_client_session_commit_transaction(cs, &reply, &err)) {
        retry = mongoc_error_has_label(&reply, "TransientTransactionError");
        fail_mongo(st, s, "transaction failed", &err);
    }
out:
    mongoc_client_session_destroy(cs);
    bson_destroy(&opts);
    bson_destroy(&reply);
    return retry;
}

static void st_transact(void *inst, const dapr_state_txn_req *req, dapr_result_cb cb, void *ctx)
{
    mongo_store *s = inst;
    op_status st = {DAPR_OK, ""};
    conn c;
    if (!s->has_txn) {
        fail(&st, DAPR_ERR_NOT_SUPPORTED, "transactions are not supported by MongoDB at %s: %s",
             s->where, s->txn_why);
    } else if (conn_get(s, &c, &st) == 0) {
        for (int attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
            st.status = DAPR_OK;
            st.msg[0] = '\0';
            if (!txn_attempt(s, c.client, c.coll, req, &st)) break;
        }
        conn_put(s, &c);
    }
    dapr_result res = {st.status, st.status ? st.msg : NULL};
    cb(ctx, &res);
}

typedef struct qitem {
    char *key;
    uint8_t *data;
    size_t len;
    char *etag;
} qitem;

static void st_query(void *inst, const dapr_state_query_req *req, dapr_state_query_cb cb, void *ctx)
{
    mongo_store *s = inst;
    op_status st = {DAPR_OK, ""};
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    int64_t limit, offset;
    qitem *items = NULL;
    size_t n = 0, cap = 0;
    char token[32] = "";
    conn c;

    if (build_query(req, &filter, &opts, &limit, &offset, &st) == 0 && conn_get(s, &c, &st) == 0) {
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c.coll, &filter, &opts, NULL);
        const bson_t *doc;
        bson_error_t err;
        while (st.status == DAPR_OK && mongoc_cursor_next(cur, &doc)) {
            bson_iter_t it;
            if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_UTF8(&it)) continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                qitem *p = realloc(items, ncap * sizeof(*p));
                if (!p) { fail(&st, DAPR_ERR_INTERNAL, "out of memory"); break; }
                items = p;
                cap = ncap;
            }
            qitem *q = &items[n++];
            memset(q, 0, sizeof(*q));
            q->key = strdup(bson_iter_utf8(&it, NULL));
            if (bson_iter_init_find(&it, doc, "_etag") && BSON_ITER_HOLDS_UTF8(&it))
                q->etag = strdup(bson_iter_utf8(&it, NULL));
            q->data = decode_value(doc, &q->len);
            if (!q->key || !q->data) fail(&st, DAPR_ERR_INTERNAL, "out of memory");
        }
        if (st.status == DAPR_OK && mongoc_cursor_error(cur, &err))
            fail_mongo(&st, s, "query failed", &err);
        mongoc_cursor_destroy(cur);
        conn_put(s, &c);
    }
    /* A full page may have a next one; a short page is the last. */
    if (st.status == DAPR_OK && limit > 0 && (int64_t)n == limit)
        snprintf(token, sizeof(token), "%" PRId64, offset + (int64_t)n);

    dapr_state_query_item *out = NULL;
    if (st.status == DAPR_OK && n) {
        out = calloc(n, sizeof(*out));
        if (!out) fail(&st, DAPR_ERR_INTERNAL, "out of memory");
    }
    dapr_state_query_result res = {.status = st.status, .message = st.status ? st.msg : NULL};
    if (st.status == DAPR_OK) {
        for (size_t i = 0; i < n; i++) {
            out[i].key = items[i].key;
            out[i].data.ptr = items[i].data;
            out[i].data.len = items[i].len;
            out[i].etag = items[i].etag;
        }
        res.items = out;
        res.n_items = n;
        res.token = token[0] ? token : NULL;
    }
    cb(ctx, &res);
    for (size_t i = 0; i < n; i++) {
        free(items[i].key);
        free(items[i].data);
        free(items[i].etag);
    }
    free(items);
    free(out);
    bson_destroy(&filter);
    bson_destroy(&opts);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                            */
/* ------------------------------------------------------------------ */

/* libmongoc logs through one process-wide handler that knows no instance,
 * so its lines cannot go through the host's log.  Keep warnings and errors
 * on stderr (as libmongoc would), minus one known, harmless line: FerretDB
 * has no endSessions command, which libmongoc sends when a pool closes. */
static void log_from_mongoc(mongoc_log_level_t level, const char *domain, const char *msg, void *data)
{
    (void)data;
    if (level > MONGOC_LOG_LEVEL_WARNING) return;
    if (level == MONGOC_LOG_LEVEL_WARNING && strstr(msg, "endSessions")) return;
    fprintf(stderr, "state.mongodb: libmongoc %s %s: %s\n", mongoc_log_level_str(level), domain, msg);
}

static pthread_once_t mongoc_once = PTHREAD_ONCE_INIT;
static void mongoc_init_once(void)
{
    mongoc_log_set_handler(log_from_mongoc, NULL);
    mongoc_init();
}

static void store_free(mongo_store *s)
{
    if (s->pool) mongoc_client_pool_destroy(s->pool);
    pthread_mutex_destroy(&s->write_lock);
    if (s->uri) mongoc_uri_destroy(s->uri);
    free(s->db);
    free(s->coll);
    free(s->where);
    free(s);
}

static const char *meta(mongo_store *s, const char *name)
{
    const char *v = s->api->metadata_get(s->host, name);
    return v && *v ? v : NULL;
}

/* "host:port,host:port" of the URI, for messages. */
static char *describe_hosts(const mongoc_uri_t *uri)
{
    bson_string_t *out = bson_string_new(NULL);
    const char *srv = mongoc_uri_get_srv_hostname(uri);
    if (srv) {
        bson_string_append(out, srv);
    } else {
        for (const mongoc_host_list_t *h = mongoc_uri_get_hosts(uri); h; h = h->next) {
            if (out->len) bson_string_append_c(out, ',');
            bson_string_append(out, h->host_and_port);
        }
    }
    char *r = strdup(out->str);
    bson_string_free(out, true);
    return r;
}

static void set_default_ms(mongoc_uri_t *uri, const char *opt, int64_t ms)
{
    if (!mongoc_uri_has_option(uri, opt))
        mongoc_uri_set_option_as_int32(uri, opt, ms > INT32_MAX ? INT32_MAX : (int32_t)ms);
}

/* Run a command on db (the admin database when NULL). */
static int run_command(mongoc_client_t *client, const char *db, bson_t *cmd,
                       bson_t *reply, bson_error_t *err)
{
    return mongoc_client_command_simple(client, db ? db : "admin", cmd, NULL, reply, err) ? 0 : -1;
}

/* Append text percent-encoded (all but RFC 3986's unreserved characters),
 * as a URI's user information needs. */
static void append_encoded(bson_string_t *out, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~')
            bson_string_append_c(out, (char)*p);
        else
            bson_string_append_printf(out, "%%%02X", *p);
    }
}

/* mongodb[+srv]://[user:password@]where/db[params]; NULL when out of memory. */
static char *build_uri(int srv, const char *where, const char *user, const char *pass,
                       const char *db, const char *params)
{
    bson_string_t *out = bson_string_new(srv ? "mongodb+srv://" : "mongodb://");
    if (user && pass) {
        append_encoded(out, user);
        bson_string_append_c(out, ':');
        append_encoded(out, pass);
        bson_string_append_c(out, '@');
    }
    bson_string_append_printf(out, "%s/%s%s", where, db, params ? params : "");
    char *r = strdup(out->str);
    /* The text may hold the password: wipe it before freeing. */
    memset(out->str, 0, out->len);
    bson_string_free(out, true);
    return r;
}

static dapr_status st_init(dapr_host *host, const dapr_host_api *api, void **instance,
                           char *errbuf, size_t errlen)
{
    pthread_once(&mongoc_once, mongoc_init_once);
    mongo_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    s->host = host;
    s->api = api;
    pthread_mutex_init(&s->write_lock, NULL);
    dapr_status code = DAPR_ERR_INVALID_ARGUMENT;
    bson_error_t err;

    const char *cs = meta(s, "connectionString");
    const char *hostname = meta(s, "host");
    const char *server = meta(s, "server");
    const char *db = meta(s, "databaseName");
    const char *coll = meta(s, "collectionName");
    const char *params = meta(s, "params");
    const char *to = meta(s, "operationTimeout");
    const char *user = meta(s, "username");
    const char *pass = meta(s, "password");

    s->db = strdup(db ? db : DEFAULT_DATABASE);
    s->coll = strdup(coll ? coll : DEFAULT_COLLECTION);
    s->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (!s->db || !s->coll) {
        snprintf(errbuf, errlen, "out of memory");
        code = DAPR_ERR_INTERNAL;
        goto failed;
    }
    if (to && (parse_duration(to, &s->timeout_ms) != 0 || s->timeout_ms <= 0)) {
        snprintf(errbuf, errlen, "incorrect operationTimeout '%.40s': want a duration such as 5s", to);
        goto failed;
    }
    if (!cs && !hostname && !server) {
        snprintf(errbuf, errlen, "must set 'host', 'server' or 'connectionString' in metadata");
        goto failed;
    }
    if (!cs && hostname && server) {
        snprintf(errbuf, errlen, "'host' and 'server' are mutually exclusive");
        goto failed;
    }
    if (cs) {
        s->uri = mongoc_uri_new_with_error(cs, &err);
        if (!s->uri) {
            /* A connection string may hold a password: say what failed,
             * not what it was. */
            snprintf(errbuf, errlen, "invalid connectionString (not shown: it may hold a secret)");
            goto failed;
        }
    } else {
        /* Dapr's layout: mongodb://[<user>:<password>@]<host>/<database><params>,
         * where params starts with '?'.  The credentials go into the URI
         * itself (percent-encoded), since options such as
         * authMechanism=PLAIN are only accepted together with a user
         * name.  The URI is parsed without them too, and only that
         * parse's error is ever shown, so that no message can quote the
         * password. */
        const char *where = server ? server : hostname;
        bson_error_t cerr;
        char *plain = build_uri(server != NULL, where, NULL, NULL, s->db, params);
        char *full = user && pass ? build_uri(server != NULL, where, user, pass, s->db, params) : NULL;
        if (!plain || (user && pass && !full)) {
            free(plain);
            free(full);
            snprintf(errbuf, errlen, "out of memory");
            code = DAPR_ERR_INTERNAL;
            goto failed;
        }
        s->uri = mongoc_uri_new_with_error(plain, &err);
        free(plain);
        if (full) {
            mongoc_uri_t *with = mongoc_uri_new_with_error(full, &cerr);
            memset(full, 0, strlen(full));
            free(full);
            if (with) {
                if (s->uri) mongoc_uri_destroy(s->uri);
                s->uri = with;
            } else if (s->uri) {
                snprintf(errbuf, errlen, "invalid MongoDB address '%s%s' with the given username and "
                         "password", where, params ? params : "");
                goto failed;
            }
        }
        if (!s->uri) {
            snprintf(errbuf, errlen, "invalid MongoDB address '%s%s': %s", where, params ? params : "",
                     err.message);
            goto failed;
        }
    }
    /* Every wait is bounded by operationTimeout unless the URI says
     * otherwise: server selection (server down), socket reads (server
     * hung), connecting, and waiting for a free pooled client. */
    set_default_ms(s->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, s->timeout_ms);
    set_default_ms(s->uri, MONGOC_URI_SOCKETTIMEOUTMS, s->timeout_ms);
    set_default_ms(s->uri, MONGOC_URI_CONNECTTIMEOUTMS, s->timeout_ms);
    set_default_ms(s->uri, MONGOC_URI_WAITQUEUETIMEOUTMS, s->timeout_ms);
    if (!mongoc_uri_get_appname(s->uri)) mongoc_uri_set_appname(s->uri, "dapr-c");

    const char *wcs = meta(s, "writeConcern");
    if (wcs) {
        mongoc_write_concern_t *wc = mongoc_write_concern_new();
        char *end;
        long w = strtol(wcs, &end, 10);
        if (strcmp(wcs, "majority") == 0) {
            mongoc_write_concern_set_wmajority(wc, (int32_t)s->timeout_ms);
        } else if (*end == '\0' && w == 0 && end != wcs) {
            /* Unacknowledged writes report no match counts, so every
             * etag-checked save would look like a mismatch. */
            mongoc_write_concern_destroy(wc);
            snprintf(errbuf, errlen, "writeConcern 0 (unacknowledged) is not supported: etags need "
                     "acknowledged writes; use 1 or 'majority'");
            goto failed;
        } else if (*end == '\0' && end != wcs && w >= 1 && w < 1000) {
            mongoc_write_concern_set_w(wc, (int32_t)w);
            mongoc_write_concern_set_wtimeout_int64(wc, s->timeout_ms);
        } else {
            mongoc_write_concern_destroy(wc);
            snprintf(errbuf, errlen, "writeConcern '%.40s': want 'majority' or a number", wcs);
            goto failed;
        }
        mongoc_uri_set_write_concern(s->uri, wc);
        mongoc_write_concern_destroy(wc);
    }
    const char *rcs = meta(s, "readConcern");
    if (rcs) {
        static const char *levels[] = {"local", "majority", "available", "linearizable", "snapshot"};
        int ok = 0;
        for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) ok |= strcmp(rcs, levels[i]) == 0;
        if (!ok) {
            snprintf(errbuf, errlen, "readConcern '%.40s' not found", rcs);
            goto failed;
        }
        mongoc_read_concern_t *rc = mongoc_read_concern_new();
        mongoc_read_concern_set_level(rc, rcs);
        mongoc_uri_set_read_concern(s->uri, rc);
        mongoc_read_concern_destroy(rc);
    }
    s->where = describe_hosts(s->uri);
    if (!s->where) {
        snprintf(errbuf, errlen, "out of memory");
        code = DAPR_ERR_INTERNAL;
        goto failed;
    }
    s->pool = mongoc_client_pool_new_with_error(s->uri, &err);
    if (!s->pool) {
        snprintf(errbuf, errlen, "cannot use MongoDB at %s: %s", s->where, err.message);
        goto failed;
    }
    mongoc_client_pool_set_error_api(s->pool, MONGOC_ERROR_API_VERSION_2);

    /* Reach the server now, so that a wrong address fails init. */
    mongoc_client_t *client = mongoc_client_pool_pop(s->pool);
    if (!client) {
        snprintf(errbuf, errlen, "cannot get a MongoDB client for %s", s->where);
        code = DAPR_ERR_UNAVAILABLE;
        goto failed;
    }
    bson_t cmd = BSON_INITIALIZER, reply;
    BSON_APPEND_INT32(&cmd, "hello", 1);
    int rc = run_command(client, NULL, &cmd, &reply, &err);
    if (rc != 0 && err.domain == MONGOC_ERROR_QUERY) {
        /* Servers before 4.4.2 know only isMaster. */
        bson_destroy(&reply);
        bson_reinit(&cmd);
        BSON_APPEND_INT32(&cmd, "isMaster", 1);
        rc = run_command(client, NULL, &cmd, &reply, &err);
    }
    bson_destroy(&cmd);
    if (rc != 0) {
        char text[MSG_LEN];
        error_text(&err, &reply, text, sizeof(text));
        snprintf(errbuf, errlen, "error in connecting to mongodb, host: %s error: %s", s->where, text);
        bson_destroy(&reply);
        mongoc_client_pool_push(s->pool, client);
        code = DAPR_ERR_UNAVAILABLE;
        goto failed;
    }
    /* Multi-document transactions: a replica set member (setName) or a
     * mongos (msg "isdbgrid"), with sessions (logicalSessionTimeoutMinutes). */
    bson_iter_t it;
    int rs = bson_iter_init_find(&it, &reply, "setName") ||
             (bson_iter_init_find(&it, &reply, "msg") && BSON_ITER_HOLDS_UTF8(&it) &&
              strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0);
    int sessions = bson_iter_init_find(&it, &reply, "logicalSessionTimeoutMinutes");
    s->has_txn = rs && sessions;
    if (!s->has_txn)
        snprintf(s->txn_why, sizeof(s->txn_why), "%s",
                 !rs ? "it is a standalone server (multi-document transactions need a replica "
                       "set or a sharded cluster)"
                     : "it does not support sessions");
    bson_destroy(&reply);

    /* Is it FerretDB (see serialize_writes)?  Its buildInfo says so. */
    bson_init(&cmd);
    BSON_APPEND_INT32(&cmd, "buildInfo", 1);
    if (run_command(client, NULL, &cmd, &reply, &err) == 0 &&
        bson_iter_init_find(&it, &reply, "ferretdbVersion")) {
        const char *fv = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "?";
        s->serialize_writes = 1;
        /* FerretDB v1 has no multi-document transactions, even when it
         * answers hello with a setName (--repl-set-name): it would ignore
         * the transaction fields and apply each write at once. */
        s->has_txn = 0;
        snprintf(s->txn_why, sizeof(s->txn_why),
                 "it is FerretDB %.40s, which has no multi-document transactions", fv);
        api->log(host, DAPR_LOG_INFO, "MongoDB at %s is FerretDB %s: writes from this sidecar are "
                 "serialized, since FerretDB's conditional updates are not atomic", s->where, fv);
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);

    /* Read the collection once: servers with access control (and FerretDB,
     * whose PLAIN authentication only hands the credentials on to its
     * PostgreSQL backend) check a password or the rights on the database
     * at the first real operation, and init is where a wrong one should
     * show up, with its cause. */
    {
        bson_t *pf = BCON_NEW("_id", BCON_UTF8(""));
        bson_t *po = BCON_NEW("limit", BCON_INT64(1));
        mongoc_collection_t *pc = mongoc_client_get_collection(client, s->db, s->coll);
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(pc, pf, po, NULL);
        const bson_t *pd, *edoc = NULL;
        char text[MSG_LEN];
        int bad = !mongoc_cursor_next(cur, &pd) && mongoc_cursor_error_document(cur, &err, &edoc);
        if (bad) error_text(&err, edoc, text, sizeof(text));
        mongoc_cursor_destroy(cur);
        mongoc_collection_destroy(pc);
        bson_destroy(pf);
        bson_destroy(po);
        if (bad) {
            snprintf(errbuf, errlen, "error in connecting to mongodb, host: %s error: cannot read "
                     "collection %s.%s: %s", s->where, s->db, s->coll, text);
            mongoc_client_pool_push(s->pool, client);
            code = (err.domain == MONGOC_ERROR_SERVER_SELECTION || err.domain == MONGOC_ERROR_STREAM)
                       ? DAPR_ERR_UNAVAILABLE : DAPR_ERR_PERMISSION_DENIED;
            goto failed;
        }
    }

    /* The TTL index, as Dapr creates it (same name, so both agree). */
    bson_t idx, arr, spec, key;
    bson_init(&idx);
    BSON_APPEND_UTF8(&idx, "createIndexes", s->coll);
    BSON_APPEND_ARRAY_BEGIN(&idx, "indexes", &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &spec);
    BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
    BSON_APPEND_INT32(&key, "_ttl", 1);
    bson_append_document_end(&spec, &key);
    BSON_APPEND_UTF8(&spec, "name", "_ttl_1");
    BSON_APPEND_INT32(&spec, "expireAfterSeconds", 0);
    bson_append_document_end(&arr, &spec);
    bson_append_array_end(&idx, &arr);
    if (run_command(client, s->db, &idx, &reply, &err) != 0) {
        char text[MSG_LEN];
        error_text(&err, &reply, text, sizeof(text));
        /* NotImplemented (238) or CommandNotFound (59): a server without
         * TTL indexes, such as FerretDB v1.  Expired items are still
         * hidden on every read; they stay on disk until overwritten or
         * deleted.  Any other failure fails init, as in Dapr. */
        if (err.code != 238 && err.code != 59) {
            snprintf(errbuf, errlen, "error in creating ttl index, host: %s error: %s", s->where, text);
            bson_destroy(&idx);
            bson_destroy(&reply);
            mongoc_client_pool_push(s->pool, client);
            code = (err.domain == MONGOC_ERROR_SERVER_SELECTION || err.domain == MONGOC_ERROR_STREAM)
                       ? DAPR_ERR_UNAVAILABLE : DAPR_ERR_INTERNAL;
            goto failed;
        }
        api->log(host, DAPR_LOG_WARN, "MongoDB at %s: no TTL index on _ttl (%s); expired items "
                 "are hidden but not deleted by the server", s->where, text);
    }
    bson_destroy(&idx);
    bson_destroy(&reply);
    mongoc_client_pool_push(s->pool, client);

    api->log(host, DAPR_LOG_INFO, "MongoDB state store on %s (database %s, collection %s); %s%s",
             s->where, s->db, s->coll,
             s->has_txn ? "transactions available" : "no transactions (and so no actor state): ",
             s->has_txn ? "" : s->txn_why);
    *instance = s;
    return DAPR_OK;

failed:
    store_free(s);
    return code;
}

static void st_close(void *inst)
{
    if (inst) store_free(inst);
}

/* ------------------------------------------------------------------ */
/* Descriptor                                                           */
/* ------------------------------------------------------------------ */

static const dapr_metadata_field schema[] = {
    {"host", DAPR_META_STRING, 0, NULL, "MongoDB host:port (or host1:port,host2:port)"},
    {"server", DAPR_META_STRING, 0, NULL, "DNS SRV name (for mongodb+srv URIs); excludes host"},
    {"connectionString", DAPR_META_STRING, DAPR_META_SECRET, NULL,
     "full mongodb:// URI; overrides host, server, username, password, params"},
    {"username", DAPR_META_STRING, 0, NULL, "user name"},
    {"password", DAPR_META_STRING, DAPR_META_SECRET, NULL, "password"},
    {"databaseName", DAPR_META_STRING, 0, DEFAULT_DATABASE, "database name"},
    {"collectionName", DAPR_META_STRING, 0, DEFAULT_COLLECTION, "collection name"},
    {"writeConcern", DAPR_META_STRING, 0, NULL, "'majority' or a number of nodes"},
    {"readConcern", DAPR_META_STRING, 0, NULL,
     "local, majority, available, linearizable or snapshot"},
    {"operationTimeout", DAPR_META_DURATION, 0, "5s", "limit for each operation"},
    {"params", DAPR_META_STRING, 0, NULL, "URI options appended to the URI, e.g. ?authSource=admin"},
};

static const dapr_state_vtable vtable = {
    .size = sizeof(dapr_state_vtable),
    .get = st_get,
    .set = st_set,
    .del = st_del,
    .bulk_get = NULL,    /* the host loops over get */
    .bulk_set = NULL,    /* the host loops over set */
    .bulk_delete = NULL, /* the host loops over del */
    .transact = st_transact,
    .query = st_query,
    .max_transaction_ops = 0,
};

static const dapr_component_def mongodb_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_STATE,
    .type = "state.mongodb",
    .version = "v1",
    .features = DAPR_STATE_ETAG | DAPR_STATE_TRANSACTIONAL | DAPR_STATE_TTL | DAPR_STATE_QUERY,
    .flags = 0, /* blocking: the host calls us on its worker pool */
    .metadata_schema = schema,
    .n_metadata_schema = sizeof(schema) / sizeof(schema[0]),
    .init = st_init,
    .close = st_close,
    .vtable = &vtable,
};

static const dapr_component_def *const components[] = {&mongodb_component};

static const dapr_plugin_descriptor descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "state-mongodb",
    .version = "1.0.0",
    .description = "Dapr state store on MongoDB (Dapr's document layout)",
    .components = components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &descriptor;
}
