/*
 * dk_config.c - Dapr's Kafka metadata, parsed and checked, and turned
 * into librdkafka configurations.
 *
 * Names, defaults and checks follow Dapr's Kafka components (pub/sub and
 * bindings share them there too); see plugins/pubsub-kafka/README.md for
 * the table and for what librdkafka cannot offer.  Error messages name the
 * field and, for non-secret fields, the value.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strdup, strcasecmp */
#endif
#include "dk.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_MESSAGE_BYTES 1000000 /* sarama's default, as Dapr */
#define DEFAULT_RETRY_INTERVAL_MS 100
#define DEFAULT_HEARTBEAT_MS 3000
#define DEFAULT_SESSION_TIMEOUT_MS 10000
#define DEFAULT_CHANNEL_BUFFER 256
#define DEFAULT_PUBLISH_TIMEOUT_MS 10000

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- value parsers ----------------------------------------------------- */

int dk_parse_duration_ms(const char *s, int64_t bare_unit_ms, int64_t *out)
{
    if (!s)
        return -1;
    while (isspace((unsigned char)*s))
        s++;
    if (!*s)
        return -1;
    /* A bare integer: the component's legacy unit. */
    char *end;
    errno = 0;
    long long bare = strtoll(s, &end, 10);
    if (!errno && end != s && *end == '\0') {
        if (bare < 0 || bare > INT64_MAX / (bare_unit_ms ? bare_unit_ms : 1))
            return -1;
        *out = bare * bare_unit_ms;
        return 0;
    }
    /* Go's time.ParseDuration syntax: [number unit]+, units ns us µs ms s m h. */
    double total_ms = 0;
    const char *p = s;
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '.')
            return -1;
        errno = 0;
        double v = strtod(p, &end);
        if (errno || end == p || v < 0)
            return -1;
        p = end;
        double unit;
        if (strncmp(p, "ns", 2) == 0) {
            unit = 1e-6;
            p += 2;
        } else if (strncmp(p, "us", 2) == 0) {
            unit = 1e-3;
            p += 2;
        } else if (strncmp(p, "\xc2\xb5s", 3) == 0) { /* µs */
            unit = 1e-3;
            p += 3;
        } else if (strncmp(p, "ms", 2) == 0) {
            unit = 1;
            p += 2;
        } else if (*p == 's') {
            unit = 1000;
            p++;
        } else if (*p == 'm') {
            unit = 60000;
            p++;
        } else if (*p == 'h') {
            unit = 3600000;
            p++;
        } else {
            return -1; /* a number without its unit */
        }
        total_ms += v * unit;
    }
    if (total_ms > 9.2e15)
        return -1;
    *out = (int64_t)(total_ms + 0.5);
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "y", "on", "t"};
    static const char *const no[] = {"false", "0", "no", "n", "off", "f"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (strcasecmp(v, yes[i]) == 0)
            return *out = 1, 0;
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (strcasecmp(v, no[i]) == 0)
            return *out = 0, 0;
    return -1;
}

static int parse_int(const char *v, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    while (isspace((unsigned char)*end))
        end++;
    if (errno || end == v || *end || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

static int looks_like_pem(const char *v)
{
    return strstr(v, "-----BEGIN ") != NULL && strstr(v, "-----END ") != NULL;
}

/* ---- reading the metadata ---------------------------------------------- */

typedef struct reader {
    dk_meta_get_fn get;
    void *ctx;
} reader;

/* The value, or NULL when absent or empty (Dapr treats both alike). */
static const char *get(const reader *r, const char *name)
{
    const char *v = r->get(r->ctx, name);
    return v && *v ? v : NULL;
}

static int dup_field(char **dst, const char *v, char *err, size_t errlen)
{
    if (!v) {
        *dst = NULL;
        return 0;
    }
    *dst = strdup(v);
    if (!*dst) {
        seterr(err, errlen, "kafka: out of memory");
        return -1;
    }
    return 0;
}

static int get_bool(const reader *r, const char *name, int def, int *out, char *err, size_t errlen)
{
    const char *v = get(r, name);
    *out = def;
    if (v && parse_bool(v, out) != 0) {
        seterr(err, errlen, "kafka: '%s' must be true or false, not '%s'", name, v);
        return -1;
    }
    return 0;
}

static int get_duration(const reader *r, const char *name, int64_t bare_unit_ms, int64_t def,
                        int64_t *out, char *err, size_t errlen)
{
    const char *v = get(r, name);
    *out = def;
    if (v && dk_parse_duration_ms(v, bare_unit_ms, out) != 0) {
        seterr(err, errlen, "kafka: '%s' must be a duration such as 500ms or 10s, not '%s'",
               name, v);
        return -1;
    }
    return 0;
}

static int get_int(const reader *r, const char *name, int64_t min, int64_t max, int64_t def,
                   int64_t *out, char *err, size_t errlen)
{
    const char *v = get(r, name);
    *out = def;
    if (v && parse_int(v, min, max, out) != 0) {
        seterr(err, errlen, "kafka: '%s' must be an integer from %lld to %lld, not '%s'", name,
               (long long)min, (long long)max, v);
        return -1;
    }
    return 0;
}

/* "host:port, host:port" -> "host:port,host:port"; NULL when no broker. */
static char *normalise_brokers(const char *v)
{
    char *out = malloc(strlen(v) + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    const char *p = v;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        const char *start = p;
        while (*p && *p != ',' && !isspace((unsigned char)*p))
            p++;
        if (p > start) {
            if (n)
                out[n++] = ',';
            memcpy(out + n, start, (size_t)(p - start));
            n += (size_t)(p - start);
        }
    }
    out[n] = '\0';
    if (!n) {
        free(out);
        return NULL;
    }
    return out;
}

/* Dapr's oidcExtensions is a JSON object of strings; librdkafka wants
 * "k=v,k=v". */
static int oidc_extensions(const char *v, char **out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *obj = json_loads(v, 0, &jerr);
    const char *k;
    json_t *val;
    size_t len = 1;
    if (!json_is_object(obj) || json_object_size(obj) == 0)
        goto bad;
    json_object_foreach(obj, k, val) {
        if (!json_is_string(val) || strpbrk(k, "=,") || strchr(json_string_value(val), ','))
            goto bad;
        len += strlen(k) + json_string_length(val) + 2;
    }
    *out = malloc(len);
    if (!*out) {
        json_decref(obj);
        seterr(err, errlen, "kafka: out of memory");
        return -1;
    }
    (*out)[0] = '\0';
    json_object_foreach(obj, k, val) {
        if ((*out)[0])
            strcat(*out, ",");
        strcat(*out, k);
        strcat(*out, "=");
        strcat(*out, json_string_value(val));
    }
    json_decref(obj);
    return 0;
bad:
    json_decref(obj);
    seterr(err, errlen, "kafka: improper OIDC Extensions format for authType 'oidc' "
                        "(want a JSON object of strings)");
    return -1;
}

/* Kafka versions as Dapr accepts them ("2.0.0", "0.10.2.0"). */
static int parse_version(const char *v, int *major, int *minor)
{
    int parts[4] = {0};
    int n = 0;
    const char *p = v;
    while (n < 4) {
        if (!isdigit((unsigned char)*p))
            return -1;
        char *end;
        long x = strtol(p, &end, 10);
        if (x < 0 || x > 10000)
            return -1;
        parts[n++] = (int)x;
        p = end;
        if (!*p)
            break;
        if (*p != '.')
            return -1;
        p++;
    }
    if (*p || n < 2)
        return -1;
    *major = parts[0];
    *minor = parts[1];
    return 0;
}

int dk_config_parse(dk_config *cfg, dk_meta_get_fn getfn, void *get_ctx,
                    const char *default_group, int default_retry,
                    char *err, size_t errlen)
{
    reader r = {getfn, get_ctx};
    const char *v;
    memset(cfg, 0, sizeof *cfg);

    v = get(&r, "brokers");
    if (!v) {
        seterr(err, errlen, "kafka: missing 'brokers' attribute");
        return -1;
    }
    cfg->brokers = normalise_brokers(v);
    if (!cfg->brokers) {
        seterr(err, errlen, "kafka: 'brokers' lists no broker");
        return -1;
    }

    /* Dapr: consumerGroup, else consumerID (which daprd may set), so each
     * app gets its own group. */
    v = get(&r, "consumerGroup");
    if (!v)
        v = get(&r, "consumerID");
    if (!v)
        v = default_group && *default_group ? default_group : "dapr";
    if (dup_field(&cfg->consumer_group, v, err, errlen) ||
        dup_field(&cfg->client_id, get(&r, "clientID"), err, errlen))
        return -1;

    /* authType, or the deprecated authRequired: true means password when
     * a saslPassword is given, else mtls. */
    const char *auth = get(&r, "authType");
    if (!auth) {
        const char *req = get(&r, "authRequired");
        int b;
        if (req) {
            if (parse_bool(req, &b) != 0) {
                seterr(err, errlen, "kafka: invalid value for 'authRequired' attribute");
                return -1;
            }
            auth = !b ? "none" : get(&r, "saslPassword") ? "password" : "mtls";
        }
    }
    if (!auth) {
        seterr(err, errlen, "kafka: 'authType' attribute was missing or empty "
                            "(none, password, mtls, certificate or oidc)");
        return -1;
    }

    int disable_tls;
    if (get_bool(&r, "disableTls", 0, &disable_tls, err, errlen) ||
        get_bool(&r, "skipVerify", 0, &cfg->skip_verify, err, errlen))
        return -1;

    v = get(&r, "caCert");
    if (v && !looks_like_pem(v)) {
        seterr(err, errlen, "kafka: invalid ca certificate in 'caCert' (want PEM)");
        return -1;
    }
    if (dup_field(&cfg->ca_cert, v, err, errlen))
        return -1;

    if (strcasecmp(auth, "none") == 0) {
        cfg->auth = DK_AUTH_NONE;
    } else if (strcasecmp(auth, "password") == 0) {
        cfg->auth = DK_AUTH_PASSWORD;
        if (!get(&r, "saslUsername")) {
            seterr(err, errlen, "kafka: missing SASL Username ('saslUsername') for authType 'password'");
            return -1;
        }
        if (!get(&r, "saslPassword")) {
            seterr(err, errlen, "kafka: missing SASL Password ('saslPassword') for authType 'password'");
            return -1;
        }
        if (dup_field(&cfg->sasl_username, get(&r, "saslUsername"), err, errlen) ||
            dup_field(&cfg->sasl_password, get(&r, "saslPassword"), err, errlen))
            return -1;
        const char *mech = get(&r, "saslMechanism");
        /* Dapr: SHA-256 and SHA-512 select SCRAM, anything else PLAIN. */
        if (mech && (strcasecmp(mech, "SHA-256") == 0 || strcasecmp(mech, "SCRAM-SHA-256") == 0))
            cfg->sasl_mechanism = "SCRAM-SHA-256";
        else if (mech && (strcasecmp(mech, "SHA-512") == 0 || strcasecmp(mech, "SCRAM-SHA-512") == 0))
            cfg->sasl_mechanism = "SCRAM-SHA-512";
        else
            cfg->sasl_mechanism = "PLAIN";
    } else if (strcasecmp(auth, "mtls") == 0) {
        cfg->auth = DK_AUTH_MTLS;
        const char *cert = get(&r, "clientCert"), *key = get(&r, "clientKey");
        if (cert && !looks_like_pem(cert)) {
            seterr(err, errlen, "kafka: invalid client certificate in 'clientCert' (want PEM)");
            return -1;
        }
        if (key && !looks_like_pem(key)) {
            seterr(err, errlen, "kafka: invalid client key in 'clientKey' (want PEM)");
            return -1;
        }
        if (!cert != !key) {
            seterr(err, errlen, "kafka: clientKey or clientCert is missing (authType 'mtls' needs both)");
            return -1;
        }
        if (disable_tls) {
            seterr(err, errlen, "kafka: cannot configure mTLS authentication when disableTls is 'true'");
            return -1;
        }
        if (dup_field(&cfg->client_cert, cert, err, errlen) ||
            dup_field(&cfg->client_key, key, err, errlen))
            return -1;
    } else if (strcasecmp(auth, "certificate") == 0) {
        cfg->auth = DK_AUTH_CERTIFICATE;
        if (!cfg->ca_cert) {
            seterr(err, errlen, "kafka: missing CA certificate property 'caCert' for authType 'certificate'");
            return -1;
        }
    } else if (strcasecmp(auth, "oidc") == 0) {
        cfg->auth = DK_AUTH_OIDC;
        static const char *const need[] = {"oidcTokenEndpoint", "oidcClientID", "oidcClientSecret"};
        for (size_t i = 0; i < 3; i++) {
            if (!get(&r, need[i])) {
                seterr(err, errlen, "kafka: missing '%s' for authType 'oidc'", need[i]);
                return -1;
            }
        }
        if (dup_field(&cfg->oidc_token_endpoint, get(&r, "oidcTokenEndpoint"), err, errlen) ||
            dup_field(&cfg->oidc_client_id, get(&r, "oidcClientID"), err, errlen) ||
            dup_field(&cfg->oidc_client_secret, get(&r, "oidcClientSecret"), err, errlen))
            return -1;
        /* Dapr's scopes are comma-separated; OAuth wants spaces. */
        v = get(&r, "oidcScopes");
        if (dup_field(&cfg->oidc_scope, v ? v : "openid", err, errlen))
            return -1;
        for (char *p = cfg->oidc_scope; *p; p++)
            if (*p == ',')
                *p = ' ';
        v = get(&r, "oidcExtensions");
        if (v && oidc_extensions(v, &cfg->oidc_extensions, err, errlen))
            return -1;
    } else if (strcasecmp(auth, "awsiam") == 0) {
        seterr(err, errlen, "kafka: authType 'awsiam' is not supported by this build (librdkafka "
                            "has no AWS MSK IAM mechanism)");
        return -1;
    } else {
        seterr(err, errlen, "kafka: invalid value '%s' for 'authType' attribute "
                            "(none, password, mtls, certificate or oidc)", auth);
        return -1;
    }
    /* As Dapr: TLS unless disabled or without authentication. */
    cfg->tls = cfg->auth != DK_AUTH_NONE && !disable_tls;

    v = get(&r, "initialOffset");
    if (!v || strcasecmp(v, "newest") == 0) {
        cfg->initial_oldest = 0;
    } else if (strcasecmp(v, "oldest") == 0) {
        cfg->initial_oldest = 1;
    } else {
        seterr(err, errlen, "kafka: invalid initialOffset '%s' (newest or oldest)", v);
        return -1;
    }

    if (get_int(&r, "maxMessageBytes", 0, 1000000000, 0, &cfg->max_message_bytes, err, errlen))
        return -1;
    if (cfg->max_message_bytes == 0)
        cfg->max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES;
    /* A bare number is milliseconds here (Dapr reads it so), seconds for
     * the group timings. */
    if (get_duration(&r, "consumeRetryInterval", 1, DEFAULT_RETRY_INTERVAL_MS,
                     &cfg->consume_retry_interval_ms, err, errlen) ||
        get_bool(&r, "consumeRetryEnabled", default_retry, &cfg->consume_retry_enabled, err, errlen) ||
        get_duration(&r, "heartbeatInterval", 1000, DEFAULT_HEARTBEAT_MS, &cfg->heartbeat_ms,
                     err, errlen) ||
        get_duration(&r, "sessionTimeout", 1000, DEFAULT_SESSION_TIMEOUT_MS,
                     &cfg->session_timeout_ms, err, errlen) ||
        get_duration(&r, "clientConnectionTopicMetadataRefreshInterval", 1000, 0,
                     &cfg->metadata_refresh_ms, err, errlen) ||
        get_int(&r, "consumerFetchMin", 1, 100000000, 0, &cfg->fetch_min_bytes, err, errlen) ||
        get_int(&r, "consumerFetchDefault", 1, 1000000000, 0, &cfg->fetch_default_bytes, err, errlen) ||
        get_int(&r, "channelBufferSize", 1, 1000000, DEFAULT_CHANNEL_BUFFER,
                &cfg->channel_buffer_size, err, errlen) ||
        get_bool(&r, "escapeHeaders", 0, &cfg->escape_headers, err, errlen))
        return -1;
    if (cfg->session_timeout_ms < 1 || cfg->session_timeout_ms > 3600000) {
        seterr(err, errlen, "kafka: 'sessionTimeout' must be between 1ms and 1h");
        return -1;
    }
    if (cfg->heartbeat_ms < 1 || cfg->heartbeat_ms >= cfg->session_timeout_ms) {
        seterr(err, errlen, "kafka: 'heartbeatInterval' must be positive and below 'sessionTimeout'");
        return -1;
    }
    if (cfg->consume_retry_interval_ms < 1)
        cfg->consume_retry_interval_ms = 1;
    cfg->publish_timeout_ms = DEFAULT_PUBLISH_TIMEOUT_MS;

    v = get(&r, "version");
    if (v) {
        int major, minor;
        if (parse_version(v, &major, &minor) != 0) {
            seterr(err, errlen, "kafka: invalid kafka version '%s'", v);
            return -1;
        }
        /* librdkafka asks newer brokers what they support; only brokers
         * before 0.10 need to be told. */
        if (major == 0 && minor < 10 && dup_field(&cfg->broker_version_fallback, v, err, errlen))
            return -1;
    }
    return 0;
}

static const char *host_get(void *ctx, const char *name)
{
    const dk_logger *l = ctx;
    return l->api->metadata_get(l->host, name);
}

int dk_config_from_host(dk_config *cfg, dapr_host *host, const dapr_host_api *api,
                        int default_retry, char *err, size_t errlen)
{
    dk_logger l = {host, api};
    return dk_config_parse(cfg, host_get, &l, api->app_id(host), default_retry, err, errlen);
}

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void dk_config_free(dk_config *cfg)
{
    free(cfg->brokers);
    free(cfg->consumer_group);
    free(cfg->client_id);
    free(cfg->sasl_username);
    free_secret(cfg->sasl_password);
    free(cfg->ca_cert);
    free(cfg->client_cert);
    free_secret(cfg->client_key);
    free(cfg->oidc_token_endpoint);
    free(cfg->oidc_client_id);
    free_secret(cfg->oidc_client_secret);
    free(cfg->oidc_scope);
    free(cfg->oidc_extensions);
    free(cfg->broker_version_fallback);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- librdkafka configuration -------------------------------------------- */

/* Set one property; the error names the property, never the value (it
 * may be a secret). */
static int set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err, size_t errlen)
{
    char why[256];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof why) != RD_KAFKA_CONF_OK) {
        seterr(err, errlen, "kafka: librdkafka refused %s: %s", name, why);
        return -1;
    }
    return 0;
}

static int set_int(rd_kafka_conf_t *conf, const char *name, int64_t value, char *err, size_t errlen)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)value);
    return set(conf, name, buf, err, errlen);
}

rd_kafka_conf_t *dk_config_rdkafka(const dk_config *cfg, dk_role role, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int sasl = cfg->auth == DK_AUTH_PASSWORD || cfg->auth == DK_AUTH_OIDC;
    const char *proto = cfg->tls ? (sasl ? "SASL_SSL" : "SSL") : (sasl ? "SASL_PLAINTEXT" : "PLAINTEXT");

    if (set(conf, "bootstrap.servers", cfg->brokers, err, errlen) ||
        set(conf, "security.protocol", proto, err, errlen) ||
        set(conf, "socket.keepalive.enable", "true", err, errlen) ||
        /* Small requests (one publish, one commit) must not wait for
         * Nagle and delayed ACKs. */
        set(conf, "socket.nagle.disable", "true", err, errlen) ||
        /* After an outage, find the brokers again within 2 s (librdkafka
         * backs off up to 10 s), well inside a publish's timeout. */
        set(conf, "reconnect.backoff.max.ms", "2000", err, errlen) ||
        /* Broker state changes come as log lines; errors through error_cb. */
        set(conf, "log.connection.close", "false", err, errlen))
        goto fail;
    if (cfg->client_id && set(conf, "client.id", cfg->client_id, err, errlen))
        goto fail;
    /* Troubleshooting: librdkafka's debug contexts ("cgrp,fetch", "all")
     * from the environment; lines go to the host log at debug level. */
    const char *debug = getenv("DAPR_KAFKA_DEBUG");
    if (debug && *debug && set(conf, "debug", debug, err, errlen))
        goto fail;
    if (cfg->metadata_refresh_ms > 0 &&
        set_int(conf, "topic.metadata.refresh.interval.ms", cfg->metadata_refresh_ms, err, errlen))
        goto fail;
    if (cfg->broker_version_fallback &&
        (set(conf, "api.version.request", "false", err, errlen) ||
         set(conf, "broker.version.fallback", cfg->broker_version_fallback, err, errlen)))
        goto fail;

    if (cfg->auth == DK_AUTH_PASSWORD &&
        (set(conf, "sasl.mechanisms", cfg->sasl_mechanism, err, errlen) ||
         set(conf, "sasl.username", cfg->sasl_username, err, errlen) ||
         set(conf, "sasl.password", cfg->sasl_password, err, errlen)))
        goto fail;
    if (cfg->auth == DK_AUTH_OIDC &&
        (set(conf, "sasl.mechanisms", "OAUTHBEARER", err, errlen) ||
         set(conf, "sasl.oauthbearer.method", "oidc", err, errlen) ||
         set(conf, "sasl.oauthbearer.token.endpoint.url", cfg->oidc_token_endpoint, err, errlen) ||
         set(conf, "sasl.oauthbearer.client.id", cfg->oidc_client_id, err, errlen) ||
         set(conf, "sasl.oauthbearer.client.secret", cfg->oidc_client_secret, err, errlen) ||
         set(conf, "sasl.oauthbearer.scope", cfg->oidc_scope, err, errlen) ||
         (cfg->oidc_extensions &&
          set(conf, "sasl.oauthbearer.extensions", cfg->oidc_extensions, err, errlen))))
        goto fail;
    if (cfg->tls) {
        if (cfg->ca_cert && set(conf, "ssl.ca.pem", cfg->ca_cert, err, errlen))
            goto fail;
        if (cfg->client_cert && (set(conf, "ssl.certificate.pem", cfg->client_cert, err, errlen) ||
                                 set(conf, "ssl.key.pem", cfg->client_key, err, errlen)))
            goto fail;
        if (cfg->skip_verify &&
            (set(conf, "enable.ssl.certificate.verification", "false", err, errlen) ||
             set(conf, "ssl.endpoint.identification.algorithm", "none", err, errlen)))
            goto fail;
    }

    if (role == DK_PRODUCER) {
        /* Our own size check (dk_produce) applies maxMessageBytes to each
         * message; librdkafka's limit also bounds whole requests, so give
         * it room for a message plus its headers and framing. */
        int64_t max = cfg->max_message_bytes + 65536;
        if (max < 1000000)
            max = 1000000;
        if (max > 1000000000)
            max = 1000000000;
        if (set(conf, "acks", "all", err, errlen) ||
            set_int(conf, "message.max.bytes", max, err, errlen) ||
            set_int(conf, "message.timeout.ms", cfg->publish_timeout_ms, err, errlen) ||
            /* A publish waits for its acknowledgement (daprd answers the
             * app only then), so send at once rather than linger for a
             * batch; messages queued meanwhile still share a request. */
            set(conf, "linger.ms", "0", err, errlen) ||
            /* The same key lands on the same partition as with Dapr's
             * sarama producer (FNV-1a), so mixed fleets keep key order. */
            set(conf, "partitioner", "fnv1a_random", err, errlen))
            goto fail;
    } else {
        if (set(conf, "group.id", cfg->consumer_group, err, errlen) ||
            /* Offsets are committed by dk_consumer after the acks only. */
            set(conf, "enable.auto.commit", "false", err, errlen) ||
            set(conf, "enable.auto.offset.store", "false", err, errlen) ||
            set(conf, "enable.partition.eof", "false", err, errlen) ||
            set(conf, "auto.offset.reset", cfg->initial_oldest ? "earliest" : "latest", err, errlen) ||
            set_int(conf, "session.timeout.ms", cfg->session_timeout_ms, err, errlen) ||
            set_int(conf, "heartbeat.interval.ms", cfg->heartbeat_ms, err, errlen) ||
            /* As Dapr's sarama consumer: subscribing may create a topic
             * where the brokers allow it. */
            set(conf, "allow.auto.create.topics", "true", err, errlen) ||
            /* Bound librdkafka's own prefetch; the backlog per partition
             * is bounded by channelBufferSize on top. */
            set(conf, "queued.max.messages.kbytes", "16384", err, errlen) ||
            /* A broker answers one connection's requests in order, so an
             * idle fetch long-poll delays the metadata and admin requests
             * behind it (topic look-ups on subscribe): keep it short. */
            set(conf, "fetch.wait.max.ms", "100", err, errlen))
            goto fail;
        if (cfg->fetch_min_bytes > 0 &&
            set_int(conf, "fetch.min.bytes", cfg->fetch_min_bytes, err, errlen))
            goto fail;
        if (cfg->fetch_default_bytes > 0 &&
            set_int(conf, "fetch.message.max.bytes", cfg->fetch_default_bytes, err, errlen))
            goto fail;
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

void dk_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const dk_logger *l = rd_kafka_opaque(rk);
    if (!l)
        return;
    dapr_log_level lv = level <= 4 ? DAPR_LOG_WARN : level == 5 ? DAPR_LOG_INFO : DAPR_LOG_DEBUG;
    if (l->api->log_enabled && !l->api->log_enabled(l->host, lv))
        return;
    l->api->log(l->host, lv, "librdkafka %s: %s", fac, buf);
}

int dk_topic_name_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 249 || strcmp(t, ".") == 0 || strcmp(t, "..") == 0)
        return 0;
    for (; *t; t++)
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
              *t == '.' || *t == '_' || *t == '-'))
            return 0;
    return 1;
}

const char *dk_auth_name(dk_auth a)
{
    switch (a) {
    case DK_AUTH_PASSWORD: return "password";
    case DK_AUTH_MTLS: return "mtls";
    case DK_AUTH_CERTIFICATE: return "certificate";
    case DK_AUTH_OIDC: return "oidc";
    default: return "none";
    }
}
