/*
 * http_binding.c - bindings.http: an output binding that sends HTTP
 * requests with libcurl (Dapr's component of the same name).
 *
 * Metadata: url (required); responseTimeout; maxResponseBodySize (100Mi;
 * <= 0 means no limit; longer bodies are cut, as Dapr does); MTLSRootCA,
 * MTLSClientCert, MTLSClientKey (PEM text or a file path);
 * MTLSRenegotiation (accepted values checked; libcurl leaves renegotiation
 * to OpenSSL's default, which refuses insecure renegotiation);
 * securityToken + securityTokenHeader (a header on every request);
 * errorIfNot2XX (true).  TLS 1.2 at least, as Dapr.
 *
 * Operations: create (= POST), get, head, post, put, patch, delete,
 * options, trace.  Request metadata: `path` is appended to url,
 * `errorIfNot2XX` overrides the component's, every name starting with an
 * upper-case letter is a request header, and traceparent/tracestate/
 * baggage travel as headers.  Content-Type (for a body) and Accept default
 * to "application/json; charset=utf-8".  The response body is the result;
 * its metadata is statusCode, status ("200 OK") and each response header
 * under its canonical name (repeated headers joined with ", ").  A non-2xx
 * status is an error unless errorIfNot2XX is false -- the metadata still
 * reaches the app.  Redirects are followed as Go's client does (up to 10;
 * 301/302/303 turn into GET without a body, 307/308 keep the method and
 * body; credentials are dropped when the host changes).
 *
 * Threading: invoke only queues the request and wakes the instance's
 * thread, which drives every transfer with one curl multi handle; results
 * are reported from that thread.  So the component is
 * DAPR_COMPONENT_NONBLOCKING and never blocks daprd's loop.  At most
 * MAX_PENDING requests may be queued or running per instance; beyond that
 * invoke fails at once with DAPR_ERR_UNAVAILABLE.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <dapr/plugin.h>

#define MAX_PENDING 1024
#define MAX_REDIRECTS 10
#define MAX_CONNECTIONS 64
#define CONNECT_TIMEOUT_MS 15000L /* Dapr's dialer and TLS handshake timeouts */
#define DEFAULT_MAX_BODY (100LL << 20)

typedef struct kv {
    char *name;
    char *value;
} kv;

typedef struct kv_vec {
    kv *v;
    size_t n;
} kv_vec;

struct http_inst;

typedef struct job {
    struct http_inst *h;
    CURL *easy;
    char method[16];
    char *url;
    unsigned char *body;
    size_t body_len;
    int has_body;
    kv_vec headers;           /* request headers, unique by name (case-insensitive) */
    struct curl_slist *slist;
    int error_if_not_2xx;
    int gzip;                 /* we asked for gzip ourselves: decode and hide it */
    int redirects;
    /* the response */
    unsigned char *resp;
    size_t resp_len, resp_cap;
    int resp_oom;
    kv_vec resp_headers;
    char *status;             /* "200 OK" */
    char errbuf[CURL_ERROR_SIZE];
    dapr_binding_invoke_cb cb;
    void *ctx;
    struct job *next;         /* in the queue */
    struct job *prev_active, *next_active; /* while curl runs it (instance thread only) */
} job;

typedef struct http_inst {
    dapr_host *host;
    const dapr_host_api *api;
    char *url;
    int error_if_not_2xx;
    long timeout_ms;          /* 0: none */
    long long max_body;       /* <= 0: no limit */
    char *token, *token_header;
    char *ca, *cert, *key;    /* PEM texts */
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;
    job *queue, *queue_tail;  /* handed over by invoke, not yet started */
    job *active;              /* running on the multi handle (instance thread only) */
    size_t pending;           /* queued + running */
    int stop;
} http_inst;

/* ---- small helpers ------------------------------------------------------------- */

static int kv_find(const kv_vec *v, const char *name)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcasecmp(v->v[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Set (replace) or, with join, append ", value" -- Go's Header.Set and
 * the comma join of repeated response headers. */
static int kv_put(kv_vec *v, const char *name, const char *value, size_t vlen, int join)
{
    int i = kv_find(v, name);
    if (i >= 0) {
        char *nv;
        if (join) {
            size_t ol = strlen(v->v[i].value);
            nv = malloc(ol + 2 + vlen + 1);
            if (!nv)
                return -1;
            memcpy(nv, v->v[i].value, ol);
            memcpy(nv + ol, ", ", 2);
            memcpy(nv + ol + 2, value, vlen);
            nv[ol + 2 + vlen] = '\0';
        } else {
            nv = strndup(value, vlen);
            if (!nv)
                return -1;
        }
        free(v->v[i].value);
        v->v[i].value = nv;
        return 0;
    }
    kv *nvv = realloc(v->v, (v->n + 1) * sizeof *nvv);
    if (!nvv)
        return -1;
    v->v = nvv;
    char *n = strdup(name), *val = strndup(value, vlen);
    if (!n || !val) {
        free(n);
        free(val);
        return -1;
    }
    v->v[v->n].name = n;
    v->v[v->n].value = val;
    v->n++;
    return 0;
}

static void kv_del(kv_vec *v, const char *name)
{
    int i = kv_find(v, name);
    if (i < 0)
        return;
    free(v->v[i].name);
    free(v->v[i].value);
    memmove(&v->v[i], &v->v[i + 1], (v->n - (size_t)i - 1) * sizeof *v->v);
    v->n--;
}

static void kv_clear(kv_vec *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->v[i].name);
        free(v->v[i].value);
    }
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

static int is_token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", c);
}

/* Go's textproto.CanonicalMIMEHeaderKey, into out (same length + 1). */
static void canonical_key(const char *in, char *out)
{
    size_t n = strlen(in);
    for (size_t i = 0; i < n; i++)
        if (!is_token_char((unsigned char)in[i])) {
            memcpy(out, in, n + 1); /* not a token: left as it is */
            return;
        }
    int upper = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (char)(upper ? toupper(c) : tolower(c));
        upper = c == '-';
    }
    out[n] = '\0';
}

static int header_value_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 0;
    return 1;
}

/* Go's strings.IsTruthy (dapr/kit): 1, true, t, y, yes, on. */
static int truthy(const char *v)
{
    static const char *const yes[] = {"1", "true", "t", "y", "yes", "on"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
    return 0;
}

static const char *status_text(long code)
{
    switch (code) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Request Entity Too Large";
    case 415: return "Unsupported Media Type";
    case 418: return "I'm a teapot";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

/* ---- parsing metadata ------------------------------------------------------------ */

/* A Go duration ("30s", "1m30s", "250ms") or bare seconds, in ms. */
static int parse_duration_ms(const char *s, long *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end != s && *end == '\0' && v >= 0) {
        *out = (long)(v * 1000);
        return 0;
    }
    double total = 0;
    const char *p = s;
    if (!*p)
        return -1;
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '.')
            return -1;
        v = strtod(p, &end);
        if (end == p)
            return -1;
        p = end;
        double unit;
        if (strncmp(p, "ns", 2) == 0) unit = 1e-6, p += 2;
        else if (strncmp(p, "us", 2) == 0) unit = 1e-3, p += 2;
        else if (strncmp(p, "\xc2\xb5s", 3) == 0) unit = 1e-3, p += 3;
        else if (strncmp(p, "ms", 2) == 0) unit = 1, p += 2;
        else if (*p == 's') unit = 1000, p++;
        else if (*p == 'm') unit = 60000, p++;
        else if (*p == 'h') unit = 3600000, p++;
        else return -1;
        total += v * unit;
    }
    if (total > 1e15)
        return -1;
    *out = (long)total;
    return 0;
}

/* A byte size as dapr/kit's ByteSize reads it: a plain integer (may be
 * negative: no limit) or a quantity such as 100Mi, 1.5G, 512k. */
static int parse_byte_size(const char *s, long long *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno)
        return -1;
    static const struct { const char *suffix; double mult; } sfx[] = {
        {"", 1}, {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15},
        {"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0},
        {"Pi", 1125899906842624.0},
    };
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++)
        if (strcmp(end, sfx[i].suffix) == 0) {
            double b = v * sfx[i].mult;
            if (b > 9.2e18 || b < -9.2e18)
                return -1;
            *out = (long long)b;
            return 0;
        }
    return -1;
}

/* Dapr's getPemBytes: the value itself when it holds a PEM block, else a
 * file holding one. */
static char *pem_bytes(const char *name, const char *value, char *err, size_t errlen)
{
    const char *b = strstr(value, "-----BEGIN ");
    if (b && strstr(b, "-----END "))
        return strdup(value);
    FILE *f = fopen(value, "rb");
    if (!f) {
        snprintf(err, errlen, "provided \"%s\" value is neither a valid file path or nor a valid pem encoded "
                 "string: open %s: %s", name, value, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *p = malloc(cap);
    while (p) {
        if (len + 4096 + 1 > cap) {
            char *np = cap > (64u << 20) ? NULL : realloc(p, cap * 2);
            if (!np) {
                free(p);
                p = NULL;
                break;
            }
            p = np;
            cap *= 2;
        }
        size_t r = fread(p + len, 1, 4096, f);
        len += r;
        if (r < 4096)
            break;
    }
    fclose(f);
    if (!p) {
        snprintf(err, errlen, "\"%s\": file %s is too large", name, value);
        return NULL;
    }
    p[len] = '\0';
    return p;
}

/* ---- transfers (instance thread) ------------------------------------------------ */

static void active_add(job *j)
{
    http_inst *h = j->h;
    j->prev_active = NULL;
    j->next_active = h->active;
    if (h->active)
        h->active->prev_active = j;
    h->active = j;
}

static void active_remove(job *j)
{
    http_inst *h = j->h;
    if (j->prev_active)
        j->prev_active->next_active = j->next_active;
    else if (h->active == j)
        h->active = j->next_active;
    if (j->next_active)
        j->next_active->prev_active = j->prev_active;
    j->prev_active = j->next_active = NULL;
}

static void job_free(job *j)
{
    if (j->easy)
        curl_easy_cleanup(j->easy);
    curl_slist_free_all(j->slist);
    kv_clear(&j->headers);
    kv_clear(&j->resp_headers);
    free(j->url);
    free(j->body);
    free(j->resp);
    free(j->status);
    free(j);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    job *j = arg;
    size_t n = size * nmemb;
    size_t take = n;
    long long max = j->h->max_body;
    if (max > 0) {
        /* Dapr reads through an io.LimitReader: the rest is dropped. */
        size_t room = j->resp_len >= (size_t)max ? 0 : (size_t)max - j->resp_len;
        if (take > room)
            take = room;
    }
    if (take && !j->resp_oom) {
        if (j->resp_len + take > j->resp_cap) {
            size_t cap = (j->resp_len + take) * 2;
            unsigned char *p = realloc(j->resp, cap);
            if (!p) {
                j->resp_oom = 1;
                return 0; /* aborts the transfer */
            }
            j->resp = p;
            j->resp_cap = cap;
        }
        memcpy(j->resp + j->resp_len, data, take);
        j->resp_len += take;
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    job *j = arg;
    size_t n = size * nmemb;
    size_t len = n;
    while (len && (data[len - 1] == '\r' || data[len - 1] == '\n'))
        len--;
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after 1xx or a redirect): start over. */
        kv_clear(&j->resp_headers);
        free(j->status);
        const char *sp = memchr(data, ' ', len);
        const char *rest = sp ? sp + 1 : data + len;
        size_t rl = (size_t)(data + len - rest);
        while (rl && *rest == ' ') rest++, rl--;
        long code = strtol(rest, NULL, 10);
        int has_reason = memchr(rest, ' ', rl) != NULL;
        if (!has_reason && code && *status_text(code)) {
            /* HTTP/2 has no reason phrase; Go fills in the standard one */
            size_t sl = rl + 2 + strlen(status_text(code));
            j->status = malloc(sl);
            if (j->status)
                snprintf(j->status, sl, "%.*s %s", (int)rl, rest, status_text(code));
        } else {
            j->status = strndup(rest, rl);
        }
        return n;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon || colon == data)
        return n;
    size_t nl = (size_t)(colon - data);
    char name[256], canon[256];
    if (nl >= sizeof name)
        return n;
    memcpy(name, data, nl);
    name[nl] = '\0';
    canonical_key(name, canon);
    const char *v = colon + 1;
    size_t vl = (size_t)(data + len - v);
    while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    kv_put(&j->resp_headers, canon, v, vl, 1);
    return n;
}

/* Go's url.Error operation: "Get", "Post", ... */
static void go_op(const char *method, char *out, size_t n)
{
    snprintf(out, n, "%s", method);
    for (size_t i = 1; out[i]; i++)
        out[i] = (char)tolower((unsigned char)out[i]);
}

static void finish(job *j, dapr_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void finish(job *j, dapr_status st, const char *fmt, ...)
{
    http_inst *h = j->h;
    char msg[CURL_ERROR_SIZE + 1024] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    active_remove(j);
    pthread_mutex_lock(&h->mu);
    h->pending--;
    pthread_mutex_unlock(&h->mu);
    dapr_binding_invoke_result r = {.status = st, .message = fmt ? msg : NULL};
    dapr_kv *meta = NULL;
    if (j->status) {
        /* A response arrived: body and metadata go back, even with an error. */
        meta = calloc(j->resp_headers.n + 2, sizeof *meta);
        size_t k = 0;
        char code[16];
        long c = 0;
        curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &c);
        snprintf(code, sizeof code, "%ld", c);
        if (meta) {
            meta[k++] = (dapr_kv){"statusCode", code};
            meta[k++] = (dapr_kv){"status", j->status};
            for (size_t i = 0; i < j->resp_headers.n; i++)
                meta[k++] = (dapr_kv){j->resp_headers.v[i].name, j->resp_headers.v[i].value};
        }
        r.metadata = (dapr_kvs){meta, meta ? k : 0};
        r.has_data = 1;
        r.data = (dapr_bytes){j->resp, j->resp_len};
        j->cb(j->ctx, &r);
    } else {
        j->cb(j->ctx, &r);
    }
    free(meta);
    job_free(j);
}

static int build_easy(job *j);

static int same_or_sub_host(const char *old_url, const char *new_url)
{
    CURLU *a = curl_url(), *b = curl_url();
    char *ha = NULL, *hb = NULL;
    int same = 0;
    if (a && b && curl_url_set(a, CURLUPART_URL, old_url, 0) == CURLUE_OK &&
        curl_url_set(b, CURLUPART_URL, new_url, 0) == CURLUE_OK &&
        curl_url_get(a, CURLUPART_HOST, &ha, 0) == CURLUE_OK && curl_url_get(b, CURLUPART_HOST, &hb, 0) == CURLUE_OK) {
        size_t la = strlen(ha), lb = strlen(hb);
        same = strcasecmp(ha, hb) == 0 ||
               (lb > la && hb[lb - la - 1] == '.' && strcasecmp(hb + lb - la, ha) == 0);
    }
    curl_free(ha);
    curl_free(hb);
    curl_url_cleanup(a);
    curl_url_cleanup(b);
    return same;
}

/* Follow a redirect as Go's http.Client does; returns 1 when the job was
 * sent again. */
static int follow_redirect(job *j, long code)
{
    if (code != 301 && code != 302 && code != 303 && code != 307 && code != 308)
        return 0;
    char *loc = NULL;
    curl_easy_getinfo(j->easy, CURLINFO_REDIRECT_URL, &loc);
    if (!loc || !*loc)
        return 0; /* no Location: the 3xx is the answer */
    char op[16];
    go_op(j->method, op, sizeof op);
    if (++j->redirects > MAX_REDIRECTS) {
        finish(j, DAPR_ERR_INTERNAL, "%s \"%s\": stopped after %d redirects", op, j->url, MAX_REDIRECTS);
        return 1;
    }
    char *next = strdup(loc);
    if (!next) {
        finish(j, DAPR_ERR_INTERNAL, "out of memory");
        return 1;
    }
    if (code != 307 && code != 308) {
        if (strcmp(j->method, "GET") != 0 && strcmp(j->method, "HEAD") != 0)
            snprintf(j->method, sizeof j->method, "GET");
        j->has_body = 0;
    }
    if (!same_or_sub_host(j->url, next)) {
        static const char *const sensitive[] = {"Authorization", "Www-Authenticate", "Cookie", "Cookie2"};
        for (size_t i = 0; i < sizeof sensitive / sizeof *sensitive; i++)
            kv_del(&j->headers, sensitive[i]);
    }
    free(j->url);
    j->url = next;
    curl_multi_remove_handle(j->h->multi, j->easy);
    curl_easy_cleanup(j->easy);
    j->easy = NULL;
    curl_slist_free_all(j->slist);
    j->slist = NULL;
    j->resp_len = 0;
    kv_clear(&j->resp_headers);
    free(j->status);
    j->status = NULL;
    if (build_easy(j) != 0 || curl_multi_add_handle(j->h->multi, j->easy) != CURLM_OK) {
        finish(j, DAPR_ERR_INTERNAL, "%s \"%s\": cannot set up the request", op, j->url);
        return 1;
    }
    return 1;
}

static void transfer_done(job *j, CURLcode rc)
{
    char op[16];
    go_op(j->method, op, sizeof op);
    if (rc != CURLE_OK) {
        free(j->status); /* no complete response */
        j->status = NULL;
        const char *why = j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc);
        dapr_status st = rc == CURLE_OPERATION_TIMEDOUT ? DAPR_ERR_TIMEOUT
                         : rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ? DAPR_ERR_UNAVAILABLE
                         : DAPR_ERR_INTERNAL;
        curl_multi_remove_handle(j->h->multi, j->easy);
        finish(j, st, "%s \"%s\": %s", op, j->url, j->resp_oom ? "out of memory" : why);
        return;
    }
    long code = 0;
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &code);
    if (follow_redirect(j, code))
        return;
    curl_multi_remove_handle(j->h->multi, j->easy);
    if (!j->status)
        j->status = strdup("");
    if (j->gzip) {
        /* Go's transport decoded a gzip it asked for itself: it hides the
         * encoding and the (compressed) length. */
        int i = kv_find(&j->resp_headers, "Content-Encoding");
        if (i >= 0 && strcasecmp(j->resp_headers.v[i].value, "gzip") == 0) {
            kv_del(&j->resp_headers, "Content-Encoding");
            kv_del(&j->resp_headers, "Content-Length");
        }
    }
    if (j->error_if_not_2xx && code / 100 != 2)
        finish(j, DAPR_ERR_INTERNAL, "received status code %ld", code);
    else
        finish(j, DAPR_OK, NULL);
}

static int build_easy(job *j)
{
    http_inst *h = j->h;
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    j->easy = e;
    j->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, j->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    if (h->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->timeout_ms);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (h->ca) {
        struct curl_blob b = {h->ca, strlen(h->ca), CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
    }
    if (h->cert && h->key) {
        struct curl_blob c = {h->cert, strlen(h->cert), CURL_BLOB_COPY};
        struct curl_blob k = {h->key, strlen(h->key), CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &c);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &k);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (strcmp(j->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(j->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (j->has_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body ? (char *)j->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len);
        if (strcmp(j->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, j->method);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, j->method);
    }
    /* Go adds Accept-Encoding: gzip itself unless the app chose one. */
    j->gzip = kv_find(&j->headers, "Accept-Encoding") < 0 && strcmp(j->method, "HEAD") != 0 &&
              kv_find(&j->headers, "Range") < 0;
    if (j->gzip)
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip");
    struct curl_slist *sl = NULL;
    for (size_t i = 0; i < j->headers.n; i++) {
        const kv *x = &j->headers.v[i];
        size_t n = strlen(x->name) + strlen(x->value) + 3;
        char *line = malloc(n);
        if (!line)
            return -1;
        /* "Name;" sends an empty header; "Name:" would remove it. */
        if (*x->value)
            snprintf(line, n, "%s: %s", x->name, x->value);
        else
            snprintf(line, n, "%s;", x->name);
        struct curl_slist *nsl = curl_slist_append(sl, line);
        free(line);
        if (!nsl) {
            curl_slist_free_all(sl);
            return -1;
        }
        sl = nsl;
    }
    if (kv_find(&j->headers, "Content-Type") < 0) {
        /* Go sends no Content-Type unless asked to; curl would add one. */
        struct curl_slist *nsl = curl_slist_append(sl, "Content-Type:");
        if (nsl)
            sl = nsl;
    }
    struct curl_slist *nsl = curl_slist_append(sl, "Expect:"); /* no 100-continue round trip */
    if (nsl)
        sl = nsl;
    j->slist = sl;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, sl);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    return 0;
}

static void *worker(void *arg)
{
    http_inst *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        job *q = h->queue;
        h->queue = h->queue_tail = NULL;
        int stop = h->stop;
        pthread_mutex_unlock(&h->mu);
        while (q) {
            job *next = q->next;
            char op[16];
            go_op(q->method, op, sizeof op);
            if (stop)
                finish(q, DAPR_ERR_UNAVAILABLE, "%s \"%s\": the binding is closing", op, q->url);
            else if (build_easy(q) != 0 || curl_multi_add_handle(h->multi, q->easy) != CURLM_OK)
                finish(q, DAPR_ERR_INTERNAL, "%s \"%s\": cannot set up the request", op, q->url);
            else
                active_add(q);
            q = next;
        }
        int running = 0;
        curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            job *j = NULL;
            CURLcode rc = m->data.result;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            transfer_done(j, rc);
        }
        if (stop)
            break;
        curl_multi_poll(h->multi, NULL, 0, 1000, NULL);
    }
    /* daprd closes an instance only after every request completed, unless
     * its graceful shutdown timed out: then nobody waits for the answers
     * any more, and calling back into a host that is tearing down would be
     * worse than dropping them. */
    size_t dropped = 0;
    while (h->active) {
        job *j = h->active;
        active_remove(j);
        curl_multi_remove_handle(h->multi, j->easy);
        job_free(j);
        dropped++;
    }
    if (dropped)
        h->api->log(h->host, DAPR_LOG_WARN, "closed with %zu requests still running: dropped", dropped);
    return NULL;
}

/* ---- invoke (host loop: queue only) ---------------------------------------------- */

static void fail_now(dapr_binding_invoke_cb cb, void *ctx, dapr_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_now(dapr_binding_invoke_cb cb, void *ctx, dapr_status st, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dapr_binding_invoke_result r = {.status = st, .message = msg};
    cb(ctx, &r);
}

static const char *req_meta(const dapr_binding_invoke_req *req, const char *name)
{
    for (size_t i = 0; i < req->metadata.n; i++)
        if (req->metadata.items[i].name && strcmp(req->metadata.items[i].name, name) == 0)
            return req->metadata.items[i].value ? req->metadata.items[i].value : "";
    return NULL;
}

static void http_invoke(void *inst, const dapr_binding_invoke_req *req, dapr_binding_invoke_cb cb, void *ctx)
{
    http_inst *h = inst;
    job *j = calloc(1, sizeof *j);
    if (!j) {
        fail_now(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        return;
    }
    j->h = h;
    j->cb = cb;
    j->ctx = ctx;
    /* The method: the operation in upper case; create is POST. */
    size_t ol = strlen(req->operation);
    if (ol >= sizeof j->method) {
        free(j);
        fail_now(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "invalid operation: %s", req->operation);
        return;
    }
    for (size_t i = 0; i <= ol; i++)
        j->method[i] = (char)toupper((unsigned char)req->operation[i]);
    if (strcmp(j->method, "CREATE") == 0)
        snprintf(j->method, sizeof j->method, "POST");
    static const char *const with_body[] = {"PUT", "POST", "PATCH"};
    static const char *const without[] = {"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"};
    int known = 0;
    for (size_t i = 0; i < 3; i++)
        if (strcmp(j->method, with_body[i]) == 0)
            known = j->has_body = 1;
    for (size_t i = 0; i < 5; i++)
        known |= strcmp(j->method, without[i]) == 0;
    if (!known) {
        free(j);
        fail_now(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "invalid operation: %s", req->operation);
        return;
    }
    /* url + path */
    const char *path = req_meta(req, "path");
    if (path && *path) {
        size_t ul = strlen(h->url);
        while (ul && h->url[ul - 1] == '/')
            ul--;
        while (*path == '/')
            path++;
        size_t n = ul + strlen(path) + 2;
        j->url = malloc(n);
        if (j->url)
            snprintf(j->url, n, "%.*s/%s", (int)ul, h->url, path);
    } else {
        j->url = strdup(h->url);
    }
    const char *e2 = req_meta(req, "errorIfNot2XX");
    j->error_if_not_2xx = e2 && *e2 ? truthy(e2) : h->error_if_not_2xx;
    if (j->has_body && req->data.len) {
        j->body = malloc(req->data.len);
        if (j->body) {
            memcpy(j->body, req->data.ptr, req->data.len);
            j->body_len = req->data.len;
        }
    }
    int oom = !j->url || (j->has_body && req->data.len && !j->body);
    /* Headers, in Dapr's order of precedence: defaults, the token, the
     * upper-case metadata, then the trace context. */
    if (j->has_body && !req_meta(req, "Content-Type"))
        oom |= kv_put(&j->headers, "Content-Type", "application/json; charset=utf-8", 31, 0);
    if (!req_meta(req, "Accept"))
        oom |= kv_put(&j->headers, "Accept", "application/json; charset=utf-8", 31, 0);
    if (h->token && *h->token && h->token_header && *h->token_header) {
        char canon[256];
        if (strlen(h->token_header) < sizeof canon) {
            canonical_key(h->token_header, canon);
            oom |= kv_put(&j->headers, canon, h->token, strlen(h->token), 0);
        }
    }
    const char *bad = NULL;
    for (size_t i = 0; i < req->metadata.n; i++) {
        const char *n = req->metadata.items[i].name, *v = req->metadata.items[i].value;
        if (!n || !v || !(n[0] >= 'A' && n[0] <= 'Z'))
            continue;
        char canon[256];
        size_t nl = strlen(n);
        int name_ok = nl < sizeof canon;
        for (size_t k = 0; name_ok && k < nl; k++)
            name_ok = is_token_char((unsigned char)n[k]);
        if (!name_ok || !header_value_ok(v)) {
            bad = n;
            break;
        }
        canonical_key(n, canon);
        oom |= kv_put(&j->headers, canon, v, strlen(v), 0);
    }
    static const char *const trace_keys[] = {"traceparent", "tracestate", "baggage"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = req_meta(req, trace_keys[i]);
        if (v && *v && header_value_ok(v)) {
            char canon[32];
            canonical_key(trace_keys[i], canon);
            oom |= kv_put(&j->headers, canon, v, strlen(v), 0);
        }
    }
    if (bad || oom) {
        char op[16];
        go_op(j->method, op, sizeof op);
        char *url = j->url ? strdup(j->url) : NULL;
        char name[200];
        snprintf(name, sizeof name, "%s", bad ? bad : "");
        kv_clear(&j->headers);
        free(j->url);
        free(j->body);
        free(j);
        if (bad)
            fail_now(cb, ctx, DAPR_ERR_INVALID_ARGUMENT, "%s \"%s\": net/http: invalid header field for \"%s\"", op,
                     url ? url : "", name);
        else
            fail_now(cb, ctx, DAPR_ERR_INTERNAL, "out of memory");
        free(url);
        return;
    }
    pthread_mutex_lock(&h->mu);
    if (h->pending >= MAX_PENDING || h->stop) {
        int closing = h->stop;
        pthread_mutex_unlock(&h->mu);
        kv_clear(&j->headers);
        free(j->url);
        free(j->body);
        free(j);
        fail_now(cb, ctx, DAPR_ERR_UNAVAILABLE, closing ? "the binding is closing"
                                                        : "too many requests in flight (%d)", MAX_PENDING);
        return;
    }
    h->pending++;
    if (h->queue_tail)
        h->queue_tail->next = j;
    else
        h->queue = j;
    h->queue_tail = j;
    pthread_mutex_unlock(&h->mu);
    curl_multi_wakeup(h->multi);
}

/* ---- lifecycle -------------------------------------------------------------------- */

static void inst_free(http_inst *h)
{
    free(h->url);
    free(h->token);
    free(h->token_header);
    if (h->key) {
        memset(h->key, 0, strlen(h->key)); /* a private key */
        free(h->key);
    }
    free(h->ca);
    free(h->cert);
    if (h->multi)
        curl_multi_cleanup(h->multi);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

static dapr_status http_init(dapr_host *host, const dapr_host_api *api, void **instance, char *errbuf,
                             size_t errlen)
{
    const char *url = api->metadata_get(host, "url");
    if (!url || !*url) {
        snprintf(errbuf, errlen, "metadata field 'url' is required");
        return DAPR_ERR_INVALID_ARGUMENT;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(errbuf, errlen, "libcurl cannot be initialised");
        return DAPR_ERR_INTERNAL;
    }
    http_inst *h = calloc(1, sizeof *h);
    if (!h) {
        curl_global_cleanup();
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    pthread_mutex_init(&h->mu, NULL);
    h->host = host;
    h->api = api;
    h->url = strdup(url);
    h->max_body = DEFAULT_MAX_BODY;
    const char *v = api->metadata_get(host, "errorIfNot2XX");
    h->error_if_not_2xx = v && *v ? truthy(v) : 1;
    dapr_status st = DAPR_ERR_INVALID_ARGUMENT;
    v = api->metadata_get(host, "responseTimeout");
    if (v && *v && parse_duration_ms(v, &h->timeout_ms) != 0) {
        snprintf(errbuf, errlen, "metadata field 'responseTimeout' must be a duration such as 30s, not '%s'", v);
        goto fail;
    }
    v = api->metadata_get(host, "maxResponseBodySize");
    if (v && *v && parse_byte_size(v, &h->max_body) != 0) {
        snprintf(errbuf, errlen, "invalid value for maxResponseBodySize: '%s'", v);
        goto fail;
    }
    v = api->metadata_get(host, "MTLSRenegotiation");
    if (v && *v && strcmp(v, "RenegotiateNever") != 0 && strcmp(v, "RenegotiateOnceAsClient") != 0 &&
        strcmp(v, "RenegotiateFreelyAsClient") != 0) {
        snprintf(errbuf, errlen, "invalid renegotiation value: %s", v);
        goto fail;
    }
    v = api->metadata_get(host, "MTLSRootCA");
    if (v && *v && !(h->ca = pem_bytes("MTLSRootCA", v, errbuf, errlen)))
        goto fail;
    const char *cert = api->metadata_get(host, "MTLSClientCert"), *key = api->metadata_get(host, "MTLSClientKey");
    if (cert && *cert && key && *key) {
        if (!(h->cert = pem_bytes("MTLSClientCert", cert, errbuf, errlen)) ||
            !(h->key = pem_bytes("MTLSClientKey", key, errbuf, errlen)))
            goto fail;
    }
    v = api->metadata_get(host, "securityToken");
    h->token = v ? strdup(v) : NULL;
    v = api->metadata_get(host, "securityTokenHeader");
    h->token_header = v ? strdup(v) : NULL;
    st = DAPR_ERR_INTERNAL;
    h->multi = curl_multi_init();
    if (!h->url || !h->multi) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)MAX_CONNECTIONS);
    if (pthread_create(&h->thread, NULL, worker, h) != 0) {
        snprintf(errbuf, errlen, "cannot start the transfer thread");
        goto fail;
    }
    *instance = h;
    return DAPR_OK;
fail:
    inst_free(h);
    curl_global_cleanup();
    return st;
}

static void http_close(void *inst)
{
    http_inst *h = inst;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_mutex_unlock(&h->mu);
    curl_multi_wakeup(h->multi);
    pthread_join(h->thread, NULL);
    inst_free(h);
    curl_global_cleanup();
}

/* ---- descriptor ------------------------------------------------------------------------ */

static const char *const http_operations[] = {"create", "get", "head", "post", "put", "patch",
                                              "delete", "options", "trace", NULL};

static const dapr_metadata_field http_schema[] = {
    {"url", DAPR_META_STRING, DAPR_META_REQUIRED, NULL, "the base URL; request metadata path is appended"},
    {"responseTimeout", DAPR_META_DURATION, 0, NULL, "bound on a whole request (default: none)"},
    {"maxResponseBodySize", DAPR_META_STRING, 0, "100Mi", "longest response body kept (<= 0: no limit)"},
    {"MTLSRootCA", DAPR_META_STRING, 0, NULL, "CA certificate (PEM or file) to verify the server with"},
    {"MTLSClientCert", DAPR_META_STRING, 0, NULL, "client certificate (PEM or file) for mutual TLS"},
    {"MTLSClientKey", DAPR_META_STRING, DAPR_META_SECRET, NULL, "client private key (PEM or file)"},
    {"MTLSRenegotiation", DAPR_META_STRING, 0, NULL,
     "RenegotiateNever, RenegotiateOnceAsClient or RenegotiateFreelyAsClient"},
    {"securityToken", DAPR_META_STRING, DAPR_META_SECRET, NULL, "value of securityTokenHeader on every request"},
    {"securityTokenHeader", DAPR_META_STRING, 0, NULL, "the header that carries securityToken"},
    /* a string: Dapr reads it with IsTruthy (anything else is false) */
    {"errorIfNot2XX", DAPR_META_STRING, 0, "true", "a non-2xx status is an error"},
};

static const dapr_output_binding_vtable http_vtable = {
    .size = sizeof(dapr_output_binding_vtable),
    .operations = http_operations,
    .invoke = http_invoke,
};

static const dapr_component_def http_component = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_OUTPUT_BINDING,
    .type = "bindings.http",
    .version = "v1",
    .features = 0,
    .flags = DAPR_COMPONENT_NONBLOCKING, /* invoke only queues; the instance thread does the I/O */
    .metadata_schema = http_schema,
    .n_metadata_schema = sizeof http_schema / sizeof *http_schema,
    .init = http_init,
    .close = http_close,
    .vtable = &http_vtable,
};

static const dapr_component_def *const http_components[] = {&http_component};

static const dapr_plugin_descriptor http_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "bindings-http",
    .version = "1.0.0",
    .description = "bindings.http: HTTP requests with libcurl",
    .components = http_components,
    .n_components = 1,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &http_descriptor;
}
