/*
 * mqtt3_binding.c - bindings.mqtt3: MQTT 3.1.1 input and output binding
 * with libmosquitto, QoS 1, the metadata of Dapr's component
 * (components-contrib bindings/mqtt3).
 *
 * Output ("create"): publishes the request's data (the bytes daprd hands
 * over: the JSON re-encoding of "data", as Dapr) to `topic` (or the
 * request's metadata.topic) with QoS 1 and waits for the broker's PUBACK,
 * at most 10 s (Dapr's defaultWait).  The producer connection (client id
 * consumerID + "-producer") is made on the first request, as in Dapr, and
 * libmosquitto's thread keeps it (reconnecting by itself).
 *
 * Input: a consumer connection (client id consumerID + "-consumer", clean
 * session per `cleanSession`, default false) subscribes to `topic` with
 * QoS 1 on every (re)connect.  Each message goes to the app; the PUBACK is
 * sent only after the app answered 2xx.  This relies on libmosquitto
 * calling on_message *before* it sends the PUBACK, on its network thread
 * (seen with libmosquitto 2.0.11, Debian 12: the broker logs the PUBACK
 * after the callback returned), so on_message waits for the host's ack:
 *   - 2xx: return; libmosquitto sends the PUBACK.
 *   - failure: retry in-process after 5 s, up to backOffMaxRetries times
 *     (Dapr's constant 5 s back-off; -1 retries forever), then give the
 *     message back: shut down the socket *before* returning, so that no
 *     PUBACK can go out.  libmosquitto reconnects (1 s) and the broker,
 *     which still holds the unacknowledged message in the session,
 *     delivers it again (DUP).  With cleanSession=true the broker drops
 *     the session on reconnect, and the message with it (documented).
 * Consequences: one message at a time per binding (the network thread is
 * busy while the app works), and while the app works the client sends no
 * PINGREQ: an app slower than 1.5 x keepalive (60 s) makes the broker drop
 * the connection, which again means redelivery (at-least-once holds).
 *
 * Secrets: the url may hold user:password; it is never logged nor quoted
 * (messages name host and port).  clientKey is secret.  The PEM metadata
 * (caCert, clientCert, clientKey) are written to 0600 files in a private
 * 0700 folder because libmosquitto reads files; removed at close.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dapr/plugin.h>

#include <mosquitto.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_WAIT_MS 10000 /* Dapr's defaultWait */
#define RETRY_BACKOFF_MS 5000 /* Dapr's constant back-off between handler retries */
#define KEEPALIVE_S 60

struct mq_inst;
typedef struct mq_pending {
    struct mq_inst *m;
    int refs;       /* on_message and the host's ack */
    int done;
    dapr_status status;
} mq_pending;

typedef struct mq_inst {
    dapr_host *host;
    const dapr_host_api *api;

    /* configuration */
    char hostname[256];
    int port;
    int tls;
    char *username, *password; /* from the url: SECRET */
    char *topic;
    char *client_id;
    int retain;
    int clean_session;
    long max_retries; /* backOffMaxRetries; < 0: forever */
    char *tlsdir, *ca_path, *cert_path, *key_path;

    pthread_mutex_t mu;
    pthread_cond_t cv;

    /* output */
    struct mosquitto *prod;
    int prod_state;      /* 0 connecting, 1 connected, -1 refused (CONNACK rc) */
    int prod_rc;
    int *acked_mids;     /* PUBACKs seen, until their publisher takes them */
    size_t n_acked, cap_acked;

    /* input */
    struct mosquitto *cons;
    int cons_connected;
    int gave_back;       /* the socket was shut down to refuse a PUBACK */
    int stopping;
    dapr_binding_handler handler;
    void *handler_ctx;
} mq_inst;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static void lib_init(void) { mosquitto_lib_init(); }

static void abs_deadline(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* "true"/"false" as Go's strconv.ParseBool (and yes/no, on/off). */
static int parse_bool(const char *v, int *out)
{
    static const char *yes[] = {"1", "t", "true", "yes", "y", "on"}, *no[] = {"0", "f", "false", "no", "n", "off"};
    for (size_t i = 0; i < 6; i++) {
        if (strcasecmp(v, yes[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(v, no[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}

static const char *kvs_get(dapr_kvs kvs, const char *name)
{
    for (size_t i = 0; i < kvs.n; i++)
        if (kvs.items[i].name && strcmp(kvs.items[i].name, name) == 0)
            return kvs.items[i].value;
    return NULL;
}

static void wipe_free(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = '\0';
    free(s);
}

/* ---- url ------------------------------------------------------------------- */

/* Percent-decoding of the userinfo part of a url. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) && isxdigit((unsigned char)s[i + 2])) {
            char h[3] = {s[i + 1], s[i + 2], 0};
            out[o++] = (char)strtol(h, NULL, 16);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/*
 * scheme://[user[:password]@]host[:port][/...]: tcp and mqtt are plain TCP,
 * ssl, mqtts, tcps and tls are TLS (Dapr's mapping).  The port defaults to
 * 1883 / 8883.  Error messages never quote the url (it may hold a
 * password).
 */
static int parse_url(mq_inst *m, const char *url, char *errbuf, size_t errlen)
{
    const char *sep = strstr(url, "://");
    if (!sep) {
        snprintf(errbuf, errlen, "invalid url: expected scheme://host:port with scheme tcp, mqtt, ssl, mqtts, "
                 "tcps or tls (e.g. tcp://localhost:1883)");
        return -1;
    }
    size_t sl = (size_t)(sep - url);
    if ((sl == 3 && strncasecmp(url, "tcp", 3) == 0) || (sl == 4 && strncasecmp(url, "mqtt", 4) == 0)) {
        m->tls = 0;
    } else if ((sl == 3 && strncasecmp(url, "ssl", 3) == 0) || (sl == 5 && strncasecmp(url, "mqtts", 5) == 0) ||
               (sl == 4 && strncasecmp(url, "tcps", 4) == 0) || (sl == 3 && strncasecmp(url, "tls", 3) == 0)) {
        m->tls = 1;
    } else {
        snprintf(errbuf, errlen, "invalid url: unsupported scheme '%.*s' (use tcp://, mqtt://, ssl://, mqtts://, "
                 "tcps:// or tls://)", (int)(sl > 20 ? 20 : sl), url);
        return -1;
    }
    const char *auth = sep + 3;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = memrchr(auth, '@', (size_t)(end - auth));
    const char *hp = auth;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        m->username = pct_decode(auth, (size_t)((colon ? colon : at) - auth));
        if (colon)
            m->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
        if (!m->username || (colon && !m->password)) {
            snprintf(errbuf, errlen, "out of memory");
            return -1;
        }
        hp = at + 1;
    }
    const char *hend = end;
    const char *colon = NULL;
    if (*hp == '[') { /* [IPv6]:port */
        const char *rb = memchr(hp, ']', (size_t)(end - hp));
        if (!rb) {
            snprintf(errbuf, errlen, "invalid url: unterminated [IPv6] host");
            return -1;
        }
        snprintf(m->hostname, sizeof m->hostname, "%.*s", (int)(rb - hp - 1), hp + 1);
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        if (rb + 1 < end && !colon) {
            snprintf(errbuf, errlen, "invalid url: unexpected text after the [IPv6] host");
            return -1;
        }
    } else {
        colon = memchr(hp, ':', (size_t)(end - hp));
        hend = colon ? colon : end;
        if ((size_t)(hend - hp) >= sizeof m->hostname) {
            snprintf(errbuf, errlen, "invalid url: host name too long");
            return -1;
        }
        snprintf(m->hostname, sizeof m->hostname, "%.*s", (int)(hend - hp), hp);
    }
    if (!m->hostname[0]) {
        snprintf(errbuf, errlen, "invalid url: no host");
        return -1;
    }
    m->port = m->tls ? 8883 : 1883;
    if (colon) {
        char *pe;
        long p = strtol(colon + 1, &pe, 10);
        if (pe == colon + 1 || pe != end || p < 1 || p > 65535) {
            snprintf(errbuf, errlen, "invalid url: invalid port '%.*s' (1-65535)",
                     (int)((end - colon - 1) > 10 ? 10 : (end - colon - 1)), colon + 1);
            return -1;
        }
        m->port = (int)p;
    }
    return 0;
}

/* ---- TLS material ------------------------------------------------------------ */

static int looks_like_pem(const char *s)
{
    const char *b = strstr(s, "-----BEGIN ");
    return b && strstr(b, "-----END ") != NULL;
}

static char *write_secret_file(mq_inst *m, const char *name, const char *content)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", m->tlsdir, name) < 0)
        return NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t n = strlen(content);
    if (fd < 0 || write(fd, content, n) != (ssize_t)n || close(fd) != 0) {
        if (fd >= 0)
            close(fd);
        free(path);
        return NULL;
    }
    return path;
}

static int setup_tls_files(mq_inst *m, char *errbuf, size_t errlen)
{
    const char *ca = m->api->metadata_get(m->host, "caCert");
    const char *cert = m->api->metadata_get(m->host, "clientCert");
    const char *key = m->api->metadata_get(m->host, "clientKey");
    if (ca && *ca && !looks_like_pem(ca)) {
        snprintf(errbuf, errlen, "invalid ca certificate");
        return -1;
    }
    if (cert && *cert && !looks_like_pem(cert)) {
        snprintf(errbuf, errlen, "invalid client certificate");
        return -1;
    }
    if (key && *key && !looks_like_pem(key)) {
        snprintf(errbuf, errlen, "invalid client certificate key");
        return -1;
    }
    int have_pair = cert && *cert && key && *key;
    if (!(ca && *ca) && !have_pair)
        return 0;
    const char *tmp = getenv("TMPDIR");
    if (asprintf(&m->tlsdir, "%s/dapr-mqtt3.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0 || !mkdtemp(m->tlsdir)) {
        free(m->tlsdir);
        m->tlsdir = NULL;
        snprintf(errbuf, errlen, "cannot create a private folder for the TLS files: %s", strerror(errno));
        return -1;
    }
    if ((ca && *ca && !(m->ca_path = write_secret_file(m, "ca.pem", ca))) ||
        (have_pair && (!(m->cert_path = write_secret_file(m, "cert.pem", cert)) ||
                       !(m->key_path = write_secret_file(m, "key.pem", key))))) {
        snprintf(errbuf, errlen, "cannot write the TLS files: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void remove_tls_files(mq_inst *m)
{
    char *paths[] = {m->ca_path, m->cert_path, m->key_path};
    for (int i = 0; i < 3; i++)
        if (paths[i]) {
            unlink(paths[i]);
            free(paths[i]);
        }
    m->ca_path = m->cert_path = m->key_path = NULL;
    if (m->tlsdir) {
        rmdir(m->tlsdir);
        free(m->tlsdir);
        m->tlsdir = NULL;
    }
}

/* ---- clients ------------------------------------------------------------------ */

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    (void)mosq;
    mq_inst *m = obj;
    if ((level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)) && m->api->log_enabled(m->host, DAPR_LOG_DEBUG))
        m->api->log(m->host, DAPR_LOG_DEBUG, "libmosquitto: %s", str);
}

/* A client with the options both directions share.  Returns NULL with
 * errbuf set. */
static struct mosquitto *new_client(mq_inst *m, const char *suffix, char *errbuf, size_t errlen)
{
    char id[512];
    snprintf(id, sizeof id, "%s%s", m->client_id, suffix);
    struct mosquitto *c = mosquitto_new(id, m->clean_session ? true : false, m);
    if (!c) {
        snprintf(errbuf, errlen, "cannot create an MQTT client: %s", strerror(errno));
        return NULL;
    }
    mosquitto_int_option(c, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_reconnect_delay_set(c, 1, 10, true);
    mosquitto_log_callback_set(c, on_log);
    int rc = MOSQ_ERR_SUCCESS;
    if (m->username)
        rc = mosquitto_username_pw_set(c, m->username, m->password);
    if (rc == MOSQ_ERR_SUCCESS && m->tls) {
        if (m->ca_path || m->cert_path)
            rc = mosquitto_tls_set(c, m->ca_path, m->ca_path ? NULL : "/etc/ssl/certs", m->cert_path, m->key_path,
                                   NULL);
        else
            rc = mosquitto_int_option(c, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(errbuf, errlen, "cannot configure the MQTT client: %s", mosquitto_strerror(rc));
        mosquitto_destroy(c);
        return NULL;
    }
    return c;
}

/* ---- output ---------------------------------------------------------------------- */

static void prod_on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq;
    mq_inst *m = obj;
    pthread_mutex_lock(&m->mu);
    m->prod_state = rc == 0 ? 1 : -1;
    m->prod_rc = rc;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static void prod_on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq;
    mq_inst *m = obj;
    pthread_mutex_lock(&m->mu);
    if (m->prod_state == 1)
        m->prod_state = 0;
    pthread_mutex_unlock(&m->mu);
    if (rc != 0)
        m->api->log(m->host, DAPR_LOG_WARN, "producer connection to %s:%d lost; reconnecting", m->hostname, m->port);
}

static void prod_on_publish(struct mosquitto *mosq, void *obj, int mid)
{
    (void)mosq;
    mq_inst *m = obj;
    pthread_mutex_lock(&m->mu);
    if (m->n_acked == m->cap_acked) {
        size_t cap = m->cap_acked ? m->cap_acked * 2 : 16;
        int *n = realloc(m->acked_mids, cap * sizeof *n);
        if (n) {
            m->acked_mids = n;
            m->cap_acked = cap;
        }
    }
    if (m->n_acked < m->cap_acked)
        m->acked_mids[m->n_acked++] = mid;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

/* Called with mu held: did the PUBACK of mid arrive?  Removes it. */
static int take_acked(mq_inst *m, int mid)
{
    for (size_t i = 0; i < m->n_acked; i++)
        if (m->acked_mids[i] == mid) {
            m->acked_mids[i] = m->acked_mids[--m->n_acked];
            return 1;
        }
    return 0;
}

/* With mu held: make the producer (once) and wait until it is connected. */
static int producer_ready(mq_inst *m, char *err, size_t errlen)
{
    struct timespec until;
    abs_deadline(&until, DEFAULT_WAIT_MS);
    if (!m->prod) {
        struct mosquitto *c = new_client(m, "-producer", err, errlen);
        if (!c)
            return -1;
        mosquitto_connect_callback_set(c, prod_on_connect);
        mosquitto_disconnect_callback_set(c, prod_on_disconnect);
        mosquitto_publish_callback_set(c, prod_on_publish);
        m->prod_state = 0;
        int rc = mosquitto_connect_async(c, m->hostname, m->port, KEEPALIVE_S);
        if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO) {
            snprintf(err, errlen, "failed to create producer connection: failed to connect to %s:%d: %s",
                     m->hostname, m->port, mosquitto_strerror(rc));
            mosquitto_destroy(c);
            return -1;
        }
        if ((rc = mosquitto_loop_start(c)) != MOSQ_ERR_SUCCESS) {
            snprintf(err, errlen, "failed to create producer connection: %s", mosquitto_strerror(rc));
            mosquitto_destroy(c);
            return -1;
        }
        m->prod = c;
    }
    while (m->prod_state == 0)
        if (pthread_cond_timedwait(&m->cv, &m->mu, &until) == ETIMEDOUT)
            break;
    if (m->prod_state == 1)
        return 0;
    if (m->prod_state < 0)
        snprintf(err, errlen, "failed to create producer connection: failed to connect to %s:%d: %s", m->hostname,
                 m->port, mosquitto_connack_string(m->prod_rc));
    else
        snprintf(err, errlen, "failed to create producer connection: mqtt client timed out connecting to %s:%d",
                 m->hostname, m->port);
    /* Start afresh on the next request. */
    struct mosquitto *c = m->prod;
    m->prod = NULL;
    pthread_mutex_unlock(&m->mu);
    mosquitto_disconnect(c);
    mosquitto_loop_stop(c, true);
    mosquitto_destroy(c);
    pthread_mutex_lock(&m->mu);
    return -1;
}

static void mq_invoke(void *inst, const dapr_binding_invoke_req *req, dapr_binding_invoke_cb cb, void *ctx)
{
    mq_inst *m = inst;
    char err[512] = "";
    dapr_binding_invoke_result res = {.status = DAPR_OK, .has_data = 0};
    const char *topic = kvs_get(req->metadata, "topic");
    if (!topic || !*topic)
        topic = m->topic;
    int retain = m->retain;
    const char *rv = kvs_get(req->metadata, "retain");
    if (rv && *rv && parse_bool(rv, &retain) != 0) {
        res.status = DAPR_ERR_INVALID_ARGUMENT;
        snprintf(err, sizeof err, "invalid metadata retain '%.20s': expected true or false", rv);
        res.message = err;
        cb(ctx, &res);
        return;
    }
    if (mosquitto_pub_topic_check(topic) != MOSQ_ERR_SUCCESS) {
        res.status = DAPR_ERR_INVALID_ARGUMENT;
        snprintf(err, sizeof err, "failed to publish: invalid topic '%.100s' (no wildcards + or #)", topic);
        res.message = err;
        cb(ctx, &res);
        return;
    }
    if (req->data.len > 268435455) {
        res.status = DAPR_ERR_INVALID_ARGUMENT;
        res.message = "failed to publish: payload larger than MQTT allows (256 MiB)";
        cb(ctx, &res);
        return;
    }

    pthread_mutex_lock(&m->mu);
    if (producer_ready(m, err, sizeof err) != 0) {
        pthread_mutex_unlock(&m->mu);
        res.status = DAPR_ERR_UNAVAILABLE;
        res.message = err;
        cb(ctx, &res);
        return;
    }
    /* Publish while holding mu, so that on_publish (which takes mu) cannot
     * see the PUBACK before we know the mid. */
    int mid = 0;
    int rc = mosquitto_publish(m->prod, &mid, topic, (int)req->data.len, req->data.ptr, 1, retain ? true : false);
    if (rc != MOSQ_ERR_SUCCESS) {
        pthread_mutex_unlock(&m->mu);
        res.status = rc == MOSQ_ERR_NO_CONN ? DAPR_ERR_UNAVAILABLE : DAPR_ERR_INTERNAL;
        snprintf(err, sizeof err, "failed to publish: %s", mosquitto_strerror(rc));
        res.message = err;
        cb(ctx, &res);
        return;
    }
    struct timespec until;
    abs_deadline(&until, DEFAULT_WAIT_MS);
    int acked;
    while (!(acked = take_acked(m, mid)))
        if (pthread_cond_timedwait(&m->cv, &m->mu, &until) == ETIMEDOUT) {
            acked = take_acked(m, mid);
            break;
        }
    pthread_mutex_unlock(&m->mu);
    if (!acked) {
        /* libmosquitto may still deliver it after a reconnect: the app
         * sees a failure for a message that can arrive (as with Dapr). */
        res.status = DAPR_ERR_TIMEOUT;
        snprintf(err, sizeof err, "failed to publish: mqtt client timeout (no PUBACK from %s:%d within 10s)",
                 m->hostname, m->port);
        res.message = err;
    }
    cb(ctx, &res);
}

/* ---- input ------------------------------------------------------------------------- */

static void cons_on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    mq_inst *m = obj;
    if (rc != 0) {
        m->api->log(m->host, DAPR_LOG_ERROR, "consumer connection to %s:%d refused: %s", m->hostname, m->port,
                    mosquitto_connack_string(rc));
        return;
    }
    /* (Re)subscribe on every connect, as Dapr does in OnConnect. */
    int src = mosquitto_subscribe(mosq, NULL, m->topic, 1);
    if (src != MOSQ_ERR_SUCCESS)
        m->api->log(m->host, DAPR_LOG_ERROR, "cannot subscribe to %s: %s", m->topic, mosquitto_strerror(src));
    pthread_mutex_lock(&m->mu);
    m->cons_connected = 1;
    m->gave_back = 0;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static void cons_on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq;
    mq_inst *m = obj;
    pthread_mutex_lock(&m->mu);
    m->cons_connected = 0;
    int stopping = m->stopping;
    pthread_mutex_unlock(&m->mu);
    if (rc != 0 && !stopping && m->api->log_enabled(m->host, DAPR_LOG_DEBUG))
        m->api->log(m->host, DAPR_LOG_DEBUG, "consumer connection to %s:%d closed; reconnecting", m->hostname,
                    m->port);
}

static void pending_unref(mq_pending *p) /* with mu held */
{
    if (--p->refs == 0)
        free(p);
}

static void delivery_acked(void *ack_ctx, dapr_status st, const char *message, dapr_bytes response)
{
    (void)message;
    (void)response;
    mq_pending *p = ack_ctx;
    mq_inst *m = p->m;
    pthread_mutex_lock(&m->mu);
    p->done = 1;
    p->status = st;
    pthread_cond_broadcast(&m->cv);
    pending_unref(p);
    pthread_mutex_unlock(&m->mu);
}

/* Give the message back: close the socket before libmosquitto can send its
 * PUBACK.  It reconnects, and the broker delivers the message again.
 * Messages libmosquitto had already read are given back unseen until the
 * reconnect (their PUBACKs cannot go out either), so that the app does
 * not get them twice. */
static void give_back(mq_inst *m, struct mosquitto *mosq)
{
    pthread_mutex_lock(&m->mu);
    m->gave_back = 1;
    pthread_mutex_unlock(&m->mu);
    int fd = mosquitto_socket(mosq);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

static void cons_on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    mq_inst *m = obj;
    const dapr_kv meta[] = {{"topic", msg->topic}};
    dapr_binding_event ev = {
        .data = {(const uint8_t *)msg->payload, msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0},
        .metadata = {meta, 1},
        .content_type = NULL,
    };
    for (long attempt = 0;; attempt++) {
        pthread_mutex_lock(&m->mu);
        if (m->stopping || m->gave_back) {
            pthread_mutex_unlock(&m->mu);
            give_back(m, mosq);
            return;
        }
        mq_pending *p = calloc(1, sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&m->mu);
            give_back(m, mosq);
            return;
        }
        p->m = m;
        p->refs = 2;
        dapr_binding_handler h = m->handler;
        void *hctx = m->handler_ctx;
        pthread_mutex_unlock(&m->mu);

        if (m->api->log_enabled(m->host, DAPR_LOG_DEBUG))
            m->api->log(m->host, DAPR_LOG_DEBUG, "processing MQTT message %s/%d%s", msg->topic, msg->mid,
                        attempt ? " (retry)" : "");
        h(hctx, &ev, delivery_acked, p);

        pthread_mutex_lock(&m->mu);
        while (!p->done && !m->stopping)
            pthread_cond_wait(&m->cv, &m->mu);
        int done = p->done;
        dapr_status st = p->status;
        pending_unref(p);
        if (done && st == DAPR_OK) {
            pthread_mutex_unlock(&m->mu);
            return; /* libmosquitto sends the PUBACK now */
        }
        if (!done || m->stopping) {
            pthread_mutex_unlock(&m->mu);
            give_back(m, mosq);
            return;
        }
        if (m->max_retries >= 0 && attempt >= m->max_retries) {
            pthread_mutex_unlock(&m->mu);
            m->api->log(m->host, DAPR_LOG_ERROR,
                        "failed processing MQTT message %s/%d: not acknowledged; the broker delivers it again",
                        msg->topic, msg->mid);
            give_back(m, mosq);
            return;
        }
        m->api->log(m->host, DAPR_LOG_ERROR, "error processing MQTT message %s/%d; retrying in 5s", msg->topic,
                    msg->mid);
        struct timespec until;
        abs_deadline(&until, RETRY_BACKOFF_MS);
        while (!m->stopping)
            if (pthread_cond_timedwait(&m->cv, &m->mu, &until) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&m->mu);
    }
}

static void consumer_destroy(mq_inst *m)
{
    struct mosquitto *c = m->cons;
    if (!c)
        return;
    pthread_mutex_lock(&m->mu);
    m->stopping = 1;
    pthread_cond_broadcast(&m->cv); /* wakes an on_message waiting for the app */
    pthread_mutex_unlock(&m->mu);
    /* No UNSUBSCRIBE: the broker keeps the session (cleanSession false)
     * and what arrives meanwhile, as with Dapr. */
    mosquitto_disconnect(c);
    mosquitto_loop_stop(c, false);
    mosquitto_destroy(c);
    pthread_mutex_lock(&m->mu);
    m->cons = NULL;
    m->cons_connected = 0;
    pthread_mutex_unlock(&m->mu);
}

static void mq_start(void *inst, const dapr_binding_read_req *req, dapr_result_cb cb, void *ctx)
{
    mq_inst *m = inst;
    char err[512] = "";
    dapr_result res = {DAPR_OK, NULL};
    if (m->cons) {
        res = (dapr_result){DAPR_ERR_INTERNAL, "the subscription is already active"};
        cb(ctx, &res);
        return;
    }
    struct mosquitto *c = new_client(m, "-consumer", err, sizeof err);
    if (!c) {
        res = (dapr_result){DAPR_ERR_INTERNAL, err};
        cb(ctx, &res);
        return;
    }
    mosquitto_connect_callback_set(c, cons_on_connect);
    mosquitto_disconnect_callback_set(c, cons_on_disconnect);
    mosquitto_message_callback_set(c, cons_on_message);
    pthread_mutex_lock(&m->mu);
    m->handler = req->handler;
    m->handler_ctx = req->handler_ctx;
    m->stopping = 0;
    m->cons_connected = 0;
    m->cons = c;
    pthread_mutex_unlock(&m->mu);
    m->api->log(m->host, DAPR_LOG_INFO, "subscribing to topic %s (qos: 1) on %s:%d", m->topic, m->hostname,
                m->port);
    int rc = mosquitto_connect_async(c, m->hostname, m->port, KEEPALIVE_S);
    /* MOSQ_ERR_ERRNO: the first attempt failed (refused); the network
     * thread keeps trying until the deadline below. */
    if (rc == MOSQ_ERR_SUCCESS || rc == MOSQ_ERR_ERRNO)
        rc = mosquitto_loop_start(c);
    if (rc == MOSQ_ERR_SUCCESS) {
        struct timespec until;
        abs_deadline(&until, DEFAULT_WAIT_MS);
        pthread_mutex_lock(&m->mu);
        while (!m->cons_connected)
            if (pthread_cond_timedwait(&m->cv, &m->mu, &until) == ETIMEDOUT)
                break;
        int ok = m->cons_connected;
        pthread_mutex_unlock(&m->mu);
        if (ok) {
            cb(ctx, &res);
            return;
        }
        snprintf(err, sizeof err, "failed to connect: mqtt client timed out connecting to %s:%d", m->hostname,
                 m->port);
    } else {
        snprintf(err, sizeof err, "failed to connect to %s:%d: %s", m->hostname, m->port, mosquitto_strerror(rc));
    }
    consumer_destroy(m);
    res = (dapr_result){DAPR_ERR_UNAVAILABLE, err};
    cb(ctx, &res);
}

static void mq_stop(void *inst, dapr_result_cb cb, void *ctx)
{
    mq_inst *m = inst;
    if (m->cons)
        m->api->log(m->host, DAPR_LOG_INFO, "disconnecting and stopping subscription to topic %s", m->topic);
    consumer_destroy(m);
    dapr_result res = {DAPR_OK, NULL};
    cb(ctx, &res);
}

/* ---- init / close --------------------------------------------------------------------- */

static void inst_free(mq_inst *m)
{
    if (m->prod) {
        mosquitto_disconnect(m->prod);
        mosquitto_loop_stop(m->prod, false);
        mosquitto_destroy(m->prod);
    }
    consumer_destroy(m);
    remove_tls_files(m);
    free(m->username);
    wipe_free(m->password);
    free(m->topic);
    free(m->client_id);
    free(m->acked_mids);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static dapr_status mq_init(dapr_host *host, const dapr_host_api *api, void **instance, char *errbuf, size_t errlen)
{
    pthread_once(&lib_once, lib_init);
    mq_inst *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(errbuf, errlen, "out of memory");
        return DAPR_ERR_INTERNAL;
    }
    m->host = host;
    m->api = api;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);

    const char *url = api->metadata_get(host, "url");
    const char *topic = api->metadata_get(host, "topic");
    const char *cid = api->metadata_get(host, "consumerID");
    if (!url || !*url) {
        snprintf(errbuf, errlen, "missing url");
        goto bad;
    }
    if (!topic || !*topic) {
        snprintf(errbuf, errlen, "missing topic");
        goto bad;
    }
    if (!cid || !*cid) {
        snprintf(errbuf, errlen, "missing consumerID");
        goto bad;
    }
    if (parse_url(m, url, errbuf, errlen) != 0)
        goto bad;
    if (mosquitto_sub_topic_check(topic) != MOSQ_ERR_SUCCESS) {
        snprintf(errbuf, errlen, "invalid topic '%.100s'", topic);
        goto bad;
    }
    const char *v;
    m->clean_session = 0; /* Dapr's default */
    if ((v = api->metadata_get(host, "cleanSession")) && *v && parse_bool(v, &m->clean_session) != 0) {
        snprintf(errbuf, errlen, "invalid cleanSession '%.20s'", v);
        goto bad;
    }
    if ((v = api->metadata_get(host, "retain")) && *v && parse_bool(v, &m->retain) != 0) {
        snprintf(errbuf, errlen, "invalid retain '%.20s'", v);
        goto bad;
    }
    if ((v = api->metadata_get(host, "backOffMaxRetries")) && *v) {
        char *end;
        errno = 0;
        m->max_retries = strtol(v, &end, 10);
        if (*end || errno) {
            snprintf(errbuf, errlen, "invalid backOffMaxRetries '%.20s'", v);
            goto bad;
        }
    }
    if ((v = api->metadata_get(host, "qos")) && *v)
        api->log(host, DAPR_LOG_WARN, "Metadata property 'qos' has been deprecated and is ignored; qos is set to 1");
    m->topic = strdup(topic);
    m->client_id = strdup(cid);
    if (!m->topic || !m->client_id) {
        snprintf(errbuf, errlen, "out of memory");
        inst_free(m);
        return DAPR_ERR_INTERNAL;
    }
    if (setup_tls_files(m, errbuf, errlen) != 0)
        goto bad;
    if (!m->tls && (m->ca_path || m->cert_path))
        api->log(host, DAPR_LOG_WARN, "caCert/clientCert are set but the url is not ssl://: they are not used");
    api->log(host, DAPR_LOG_DEBUG, "MQTT broker %s:%d (%s), topic %s, client id %s", m->hostname, m->port,
             m->tls ? "TLS" : "plain TCP", m->topic, m->client_id);
    *instance = m;
    return DAPR_OK;
bad:
    inst_free(m);
    return DAPR_ERR_INVALID_ARGUMENT;
}

static void mq_close(void *inst)
{
    if (inst)
        inst_free(inst);
}

/* ---- descriptor ------------------------------------------------------------------------- */

static const dapr_metadata_field mq_schema[] = {
    /* secret: it may hold user:password (Dapr does not mark it; daprd
     * then masks it in logs) */
    {"url", DAPR_META_STRING, DAPR_META_REQUIRED | DAPR_META_SECRET, NULL, "broker: tcp://host:port, mqtt://, ssl://, mqtts://, tcps://, tls:// (user:password@ allowed)"},
    {"topic", DAPR_META_STRING, DAPR_META_REQUIRED, NULL, "topic to subscribe to, and to publish to by default"},
    {"consumerID", DAPR_META_STRING, DAPR_META_REQUIRED, NULL,
     "client id prefix: <consumerID>-consumer and <consumerID>-producer"},
    {"retain", DAPR_META_BOOL, 0, "false", "publish with the retain flag"},
    {"cleanSession", DAPR_META_BOOL, 0, "false",
     "clean session on connect; false keeps unacknowledged messages for redelivery"},
    {"backOffMaxRetries", DAPR_META_INT, 0, "0",
     "retries (5 s apart) of a message the app failed before it is given back to the broker; -1 forever"},
    {"caCert", DAPR_META_STRING, 0, NULL, "PEM CA certificate for ssl://"},
    {"clientCert", DAPR_META_STRING, 0, NULL, "PEM client certificate for ssl://"},
    {"clientKey", DAPR_META_STRING, DAPR_META_SECRET, NULL, "PEM client private key for ssl://"},
    {"qos", DAPR_META_STRING, 0, NULL, "deprecated and ignored (QoS is always 1)"},
};

static const char *const mq_operations[] = {"create", NULL};

static const dapr_output_binding_vtable mq_out_vtable = {
    .size = sizeof(dapr_output_binding_vtable),
    .operations = mq_operations,
    .invoke = mq_invoke,
};

static const dapr_input_binding_vtable mq_in_vtable = {
    .size = sizeof(dapr_input_binding_vtable),
    .start = mq_start,
    .stop = mq_stop,
};

static const dapr_component_def mq_output = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_OUTPUT_BINDING,
    .type = "bindings.mqtt3",
    .version = "v1",
    .flags = 0, /* invoke waits for the PUBACK: run on the worker pool */
    .metadata_schema = mq_schema,
    .n_metadata_schema = sizeof mq_schema / sizeof *mq_schema,
    .init = mq_init,
    .close = mq_close,
    .vtable = &mq_out_vtable,
};

static const dapr_component_def mq_input = {
    .size = sizeof(dapr_component_def),
    .kind = DAPR_KIND_INPUT_BINDING,
    .type = "bindings.mqtt3",
    .version = "v1",
    .flags = 0, /* start waits for the CONNACK, stop joins the network thread */
    .metadata_schema = mq_schema,
    .n_metadata_schema = sizeof mq_schema / sizeof *mq_schema,
    .init = mq_init,
    .close = mq_close,
    .vtable = &mq_in_vtable,
};

static const dapr_component_def *const mq_components[] = {&mq_input, &mq_output};

static const dapr_plugin_descriptor mq_descriptor = {
    DAPR_PLUGIN_DESCRIPTOR_HEADER,
    .name = "bindings-mqtt3",
    .version = "1.0.0",
    .description = "bindings.mqtt3: MQTT 3.1.1 input and output binding (libmosquitto, QoS 1)",
    .components = mq_components,
    .n_components = 2,
};

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void);

DAPR_PLUGIN_EXPORT const dapr_plugin_descriptor *dapr_plugin_entry(void)
{
    return &mq_descriptor;
}
