/*
 * dk.h - the Kafka client code shared by the Kafka plugins (pubsub.kafka
 * and bindings.kafka), on librdkafka.
 *
 * Built as a static convenience library (libdaprkafka.la, -fPIC) that
 * each plugin .so links in, so no symbol of it is visible outside the
 * plugin.  Three parts:
 *
 *  - dk_config: Dapr's Kafka metadata (brokers, consumerGroup, authType,
 *    TLS, initialOffset, ...) parsed and checked once, then turned into
 *    librdkafka configurations for a producer or a consumer.
 *
 *  - dk_producer: publishes with delivery reports.  dk_produce never
 *    blocks; its callback runs on the producer's poll thread once the
 *    brokers acknowledged the message (acks=all) or it failed.
 *
 *  - dk_consumer: one consumer-group member with its own thread.
 *    Subscriptions (each a set of topics, a handler and a bound on
 *    unacknowledged messages) share it; every subscription of a topic gets
 *    every message of that topic (fan-out).  An offset is committed only
 *    when every message before it was acknowledged DONE or DROP by every
 *    subscription it went to (per-partition contiguous tracking), so a
 *    crash loses nothing.  RETRY redelivers the message after
 *    consumeRetryInterval, in place: later messages of that partition wait
 *    for it.  A partition whose backlog reaches channelBufferSize
 *    messages is paused at the broker and resumed at half of it.
 *
 * Nothing here blocks the caller for long: dk_produce, dk_ack and
 * dk_consumer_subscribe only queue work; dk_consumer_unsubscribe waits at
 * most for one running handler call.  Creating and freeing may block
 * (init and close run on the host's workers).  Secrets are never logged
 * nor put in error messages.
 */
#ifndef DAPR_KAFKA_COMMON_DK_H
#define DAPR_KAFKA_COMMON_DK_H

#include <stddef.h>
#include <stdint.h>

#include <dapr/common.h>
#include <librdkafka/rdkafka.h>

/* ---- configuration -------------------------------------------------- */

typedef enum dk_auth {
    DK_AUTH_NONE = 0,
    DK_AUTH_PASSWORD,    /* SASL PLAIN or SCRAM */
    DK_AUTH_MTLS,        /* TLS client certificate */
    DK_AUTH_CERTIFICATE, /* TLS with a given CA, no client certificate */
    DK_AUTH_OIDC         /* SASL OAUTHBEARER, token from an OIDC endpoint */
} dk_auth;

typedef struct dk_config {
    char *brokers;             /* "host:port,host:port" (spaces removed) */
    char *consumer_group;
    char *client_id;           /* NULL: librdkafka's default */
    dk_auth auth;
    char *sasl_username;
    char *sasl_password;       /* secret */
    const char *sasl_mechanism; /* librdkafka name: PLAIN, SCRAM-SHA-256, ... */
    int tls;                   /* encrypt the connections */
    int skip_verify;
    char *ca_cert;             /* PEM */
    char *client_cert;         /* PEM */
    char *client_key;          /* PEM, secret */
    char *oidc_token_endpoint;
    char *oidc_client_id;
    char *oidc_client_secret;  /* secret */
    char *oidc_scope;          /* space-separated */
    char *oidc_extensions;     /* "k=v,k=v" */
    int initial_oldest;        /* initialOffset=oldest */
    int64_t max_message_bytes;
    int64_t consume_retry_interval_ms;
    int consume_retry_enabled;
    int64_t heartbeat_ms;
    int64_t session_timeout_ms;
    char *broker_version_fallback; /* set for brokers older than 0.10 */
    int64_t metadata_refresh_ms;   /* 0: librdkafka's default */
    int64_t fetch_min_bytes;       /* 0: librdkafka's default */
    int64_t fetch_default_bytes;   /* 0: librdkafka's default */
    int64_t channel_buffer_size;   /* backlog per partition before pausing */
    int escape_headers;
    int64_t publish_timeout_ms;    /* delivery timeout of a publish */
} dk_config;

/* Returns the value of a metadata field (matched case-insensitively) or
 * NULL. */
typedef const char *(*dk_meta_get_fn)(void *ctx, const char *name);

/*
 * Parse Dapr's Kafka metadata.  default_group is used when neither
 * consumerGroup nor consumerID is set (the host passes its app id);
 * default_retry is consumeRetryEnabled's default (true for pub/sub, false
 * for bindings, as in Dapr).  Returns 0, or -1 with a one-line reason in
 * err (naming the field, never a secret value).  Free with
 * dk_config_free (also after a failure).
 */
int dk_config_parse(dk_config *cfg, dk_meta_get_fn get, void *get_ctx,
                    const char *default_group, int default_retry,
                    char *err, size_t errlen);
/* The same, reading through the host's services. */
int dk_config_from_host(dk_config *cfg, dapr_host *host, const dapr_host_api *api,
                        int default_retry, char *err, size_t errlen);
void dk_config_free(dk_config *cfg);

typedef enum dk_role { DK_PRODUCER, DK_CONSUMER } dk_role;

/* A librdkafka configuration for one role, or NULL with err.  The caller
 * sets its callbacks and opaque and hands it to rd_kafka_new(). */
rd_kafka_conf_t *dk_config_rdkafka(const dk_config *cfg, dk_role role,
                                   char *err, size_t errlen);

/* Durations as Dapr writes them: Go syntax ("1m30s", "250ms", "1.5s") or
 * a bare integer counted in bare_unit_ms.  0 or -1 (bad). */
int dk_parse_duration_ms(const char *s, int64_t bare_unit_ms, int64_t *out);

/* Kafka's legal topic names: 1 to 249 of letters, digits, '.', '_', '-'
 * (also keeps librdkafka from reading "^..." as a pattern). */
int dk_topic_name_ok(const char *topic);

/* "none", "password", "mtls", "certificate" or "oidc", for log lines. */
const char *dk_auth_name(dk_auth auth);

/*
 * The metadata schema fields both Kafka components read (everything
 * dk_config_parse knows), as initializers of a dapr_metadata_field array;
 * a component adds its own fields around them.  retry_default is
 * consumeRetryEnabled's default as a string: "true" for pub/sub, "false"
 * for bindings, as in Dapr (the host hands it to dk_config_parse as the
 * value when the manifest has none).
 */
#define DK_METADATA_SCHEMA(retry_default)                                                        \
    {"brokers", DAPR_META_STRING, DAPR_META_REQUIRED, NULL,                                      \
     "comma-separated Kafka brokers (host:port)"},                                               \
    {"authType", DAPR_META_STRING, 0, NULL,                                                      \
     "none, password (SASL), mtls, certificate or oidc; required unless authRequired is given"}, \
    {"consumerGroup", DAPR_META_STRING, 0, NULL,                                                 \
     "consumer group; default consumerID, else the app id"},                                     \
    {"consumerID", DAPR_META_STRING, 0, NULL, "consumer group when consumerGroup is not set"},   \
    {"clientID", DAPR_META_STRING, 0, NULL, "client id sent to the brokers"},                    \
    {"authRequired", DAPR_META_BOOL, 0, NULL, "deprecated: use authType"},                       \
    {"saslUsername", DAPR_META_STRING, 0, NULL, "SASL user for authType password"},              \
    {"saslPassword", DAPR_META_STRING, DAPR_META_SECRET, NULL,                                   \
     "SASL password for authType password"},                                                     \
    {"saslMechanism", DAPR_META_STRING, 0, NULL, "SHA-256 or SHA-512 for SCRAM; PLAIN otherwise"}, \
    {"initialOffset", DAPR_META_STRING, 0, "newest",                                             \
     "where a group without a committed offset starts: newest or oldest"},                       \
    {"maxMessageBytes", DAPR_META_INT, 0, "1000000", "largest message a publish may send"},      \
    {"consumeRetryInterval", DAPR_META_DURATION, 0, "100ms",                                     \
     "delay before a message that failed is delivered again (bare number: ms)"},                 \
    {"consumeRetryEnabled", DAPR_META_BOOL, 0, retry_default,                                    \
     "false: a message the app failed is not delivered again (logged)"},                         \
    {"heartbeatInterval", DAPR_META_DURATION, 0, "3s", "consumer group heartbeat interval"},     \
    {"sessionTimeout", DAPR_META_DURATION, 0, "10s", "consumer group session timeout"},          \
    {"version", DAPR_META_STRING, 0, NULL,                                                       \
     "Kafka version of the brokers (needed below 0.10 only)"},                                   \
    {"disableTls", DAPR_META_BOOL, 0, "false", "no TLS even with authentication"},               \
    {"skipVerify", DAPR_META_BOOL, 0, "false",                                                   \
     "do not verify the brokers' certificates (unsafe)"},                                        \
    {"caCert", DAPR_META_STRING, 0, NULL, "PEM CA certificate to verify the brokers"},           \
    {"clientCert", DAPR_META_STRING, 0, NULL, "PEM client certificate for authType mtls"},       \
    {"clientKey", DAPR_META_STRING, DAPR_META_SECRET, NULL, "PEM client key for authType mtls"}, \
    {"oidcTokenEndpoint", DAPR_META_STRING, 0, NULL, "OAuth2 token endpoint for authType oidc"}, \
    {"oidcClientID", DAPR_META_STRING, 0, NULL, "OAuth2 client id for authType oidc"},           \
    {"oidcClientSecret", DAPR_META_STRING, DAPR_META_SECRET, NULL,                               \
     "OAuth2 client secret for authType oidc"},                                                  \
    {"oidcScopes", DAPR_META_STRING, 0, NULL, "comma-separated OAuth2 scopes (default openid)"}, \
    {"oidcExtensions", DAPR_META_STRING, 0, NULL,                                                \
     "JSON object of SASL extensions for authType oidc"},                                        \
    {"clientConnectionTopicMetadataRefreshInterval", DAPR_META_DURATION, 0, NULL,                \
     "how often topic metadata is refreshed"},                                                   \
    {"clientConnectionKeepAliveInterval", DAPR_META_DURATION, 0, NULL,                           \
     "accepted; TCP keep-alive is always on with the system's interval"},                        \
    {"consumerFetchMin", DAPR_META_INT, 0, NULL, "fetch.min.bytes"},                             \
    {"consumerFetchDefault", DAPR_META_INT, 0, NULL, "fetch.message.max.bytes"},                 \
    {"channelBufferSize", DAPR_META_INT, 0, "256",                                               \
     "messages waiting per partition before its fetching pauses"},                               \
    {"escapeHeaders", DAPR_META_BOOL, 0, "false",                                                \
     "URL-escape header values in message metadata"}

/* Where librdkafka's log lines go: the first member of the opaque of
 * every rd_kafka_t made here, used by dk_log_cb. */
typedef struct dk_logger {
    dapr_host *host;
    const dapr_host_api *api;
} dk_logger;

/* A log_cb forwarding librdkafka's lines to the host log: warnings and
 * errors as WARN (they are mostly transient: the client reconnects by
 * itself), notices as INFO, the rest as DEBUG. */
void dk_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* ---- producer ------------------------------------------------------- */

typedef struct dk_producer dk_producer;

/* Completion of one produce: exactly once, from the producer thread (or
 * inline when the message was refused at once).  msg is NULL on success,
 * valid during the call only. */
typedef void (*dk_produce_cb)(void *ctx, dapr_status status, const char *msg);

typedef struct dk_header {
    const char *name;
    const void *value;
    size_t len;
} dk_header;

dk_producer *dk_producer_new(const dk_config *cfg, dapr_host *host, const dapr_host_api *api,
                             char *err, size_t errlen);
/* Check that the brokers answer (and accept our credentials) within
 * timeout_ms: 0, or -1 with err naming the brokers and the cause. */
int dk_producer_probe(dk_producer *p, int timeout_ms, char *err, size_t errlen);
/* Queue one message.  value NULL: a null value (tombstone); key NULL: no
 * key; partition -1: the partitioner chooses (FNV-1a of the key, as
 * Dapr's sarama client, random without a key). */
void dk_produce(dk_producer *p, const char *topic, int32_t partition,
                const void *key, size_t key_len, const void *value, size_t len,
                const dk_header *headers, size_t n_headers,
                dk_produce_cb cb, void *ctx);
/*
 * A record's key, partition and headers from a publish's metadata, as
 * Dapr's Kafka components map them: partitionKey (or __key) is the record
 * key, partitionNumber picks the partition, and every pair also becomes a
 * record header.  extra (may be empty) is merged over meta, as Dapr's
 * bulk publish merges the request metadata over each entry's.
 * content_type (may be NULL) becomes a "content-type" header unless the
 * metadata has one.  The record points into meta, extra and content_type.
 * Returns 0, or -1 with err (a bad partitionNumber); free with
 * dk_record_free.
 */
typedef struct dk_record {
    const char *key;      /* NULL: no key */
    int32_t partition;    /* -1: the partitioner chooses */
    dk_header *headers;
    size_t n_headers;
} dk_record;

int dk_record_from_metadata(dk_record *r, dapr_kvs meta, dapr_kvs extra,
                            const char *content_type, char *err, size_t errlen);
void dk_record_free(dk_record *r);

/* The record value for a body: NULL (a null value, a tombstone) for an
 * empty body or the 4 bytes null, as Dapr sends them; else data.ptr. */
const void *dk_record_value(dapr_bytes data);

/* Wait up to the publish timeout for outstanding messages, fail the rest
 * (their callbacks run before this returns), and free. */
void dk_producer_free(dk_producer *p);

/* ---- consumer ------------------------------------------------------- */

typedef struct dk_consumer dk_consumer;
typedef struct dk_delivery dk_delivery; /* the ack token of one delivery */

typedef enum dk_verdict {
    DK_ACK_DONE = 0,  /* processed: may be committed */
    DK_ACK_RETRY = 1, /* deliver again after consumeRetryInterval */
    DK_ACK_DROP = 2,  /* not wanted: committed like DONE */
    /* Not processed at all (the app was not reached, daprd is stopping):
     * like RETRY, but also when consumeRetryEnabled is false, which only
     * gives up on messages the app failed. */
    DK_ACK_REQUEUE = 3
} dk_verdict;

/* One message as handed to a handler; valid during the call only. */
typedef struct dk_message {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key;          /* NULL when the record has no key */
    size_t key_len;
    const void *value;        /* "null" (4 bytes) for a null value, as Dapr */
    size_t len;
    const char *content_type; /* the record's content-type header, or NULL */
    /* __key, __offset, __partition, __topic, __timestamp and every record
     * header (values URL-escaped with escapeHeaders), as Dapr. */
    const dapr_kv *metadata;
    size_t n_metadata;
    int attempt;              /* 1 on the first delivery */
} dk_message;

/* Called on the consumer thread; must not block (copy and queue).  Call
 * dk_ack(d, ...) exactly once, from any thread, whenever. */
typedef void (*dk_deliver_fn)(void *ctx, const dk_message *m, dk_delivery *d);
/* Completion of a subscribe: from the consumer thread, exactly once. */
typedef void (*dk_done_fn)(void *ctx, dapr_status status, const char *msg);

dk_consumer *dk_consumer_new(const dk_config *cfg, dapr_host *host, const dapr_host_api *api,
                             char *err, size_t errlen);

/*
 * Add a subscription to topics (copied).  max_in_flight bounds the
 * deliveries not yet acked (0: 64); with 1, a partition is delivered in
 * strict order.  Returns 0 and sets *id (> 0) at once; done() follows
 * when this member was assigned partitions of the topics after the
 * group's rebalance (so that nothing published after done() is missed,
 * even with initialOffset=newest), or when the group settled without
 * giving it any, or after 30 s with a warning (deliveries start whenever
 * the group is joined).  Returns -1 with err and no done() call on bad
 * arguments.
 */
int dk_consumer_subscribe(dk_consumer *c, const char *const *topics, size_t n_topics,
                          uint32_t max_in_flight, dk_deliver_fn fn, void *fn_ctx,
                          dk_done_fn done, void *done_ctx, uint64_t *id,
                          char *err, size_t errlen);
/*
 * Remove a subscription.  When it returns no deliver call for it starts
 * any more (it waits for one that is running, unless called from inside
 * it).  Its unacknowledged deliveries may still be acked; a RETRY then
 * leaves the message uncommitted for whoever consumes the group next.
 * Returns 0, or -1 when id is unknown.
 */
int dk_consumer_unsubscribe(dk_consumer *c, uint64_t id);

/* The verdict on one delivery: exactly once, from any thread; never
 * blocks. */
void dk_ack(dk_delivery *d, dk_verdict verdict);

/* Commit what is done, leave the group, free.  Every delivery must have
 * been acked before. */
void dk_consumer_free(dk_consumer *c);

#endif
