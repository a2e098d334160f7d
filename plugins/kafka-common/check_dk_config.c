/*
 * check_dk_config.c - unit tests of the Kafka metadata parsing and the
 * librdkafka configuration built from it (no broker needed).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dk.h"

/* Metadata as NULL-terminated name/value pairs. */
static const char *lookup(void *ctx, const char *name)
{
    const char *const *kv = ctx;
    for (; kv[0]; kv += 2)
        if (strcasecmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static int parse(dk_config *cfg, const char *const *kv, char *err)
{
    return dk_config_parse(cfg, lookup, (void *)kv, "myapp", 1, err, 256);
}

static void conf_is(rd_kafka_conf_t *conf, const char *name, const char *want)
{
    char buf[512];
    size_t len = sizeof buf;
    ck_assert_int_eq(rd_kafka_conf_get(conf, name, buf, &len), RD_KAFKA_CONF_OK);
    ck_assert_str_eq(buf, want);
}

START_TEST(defaults)
{
    const char *kv[] = {"brokers", " a:9092 , b:9093,,", "authType", "none", NULL};
    dk_config cfg;
    char err[256] = "";
    ck_assert_int_eq(parse(&cfg, kv, err), 0);
    ck_assert_str_eq(cfg.brokers, "a:9092,b:9093");
    ck_assert_str_eq(cfg.consumer_group, "myapp");
    ck_assert_ptr_null(cfg.client_id);
    ck_assert_int_eq(cfg.auth, DK_AUTH_NONE);
    ck_assert_int_eq(cfg.tls, 0);
    ck_assert_int_eq(cfg.initial_oldest, 0);
    ck_assert_int_eq(cfg.max_message_bytes, 1000000);
    ck_assert_int_eq(cfg.consume_retry_interval_ms, 100);
    ck_assert_int_eq(cfg.consume_retry_enabled, 1);
    ck_assert_int_eq(cfg.heartbeat_ms, 3000);
    ck_assert_int_eq(cfg.session_timeout_ms, 10000);
    ck_assert_int_eq(cfg.channel_buffer_size, 256);

    rd_kafka_conf_t *conf = dk_config_rdkafka(&cfg, DK_CONSUMER, err, sizeof err);
    ck_assert_ptr_nonnull(conf);
    conf_is(conf, "bootstrap.servers", "a:9092,b:9093");
    conf_is(conf, "group.id", "myapp");
    conf_is(conf, "enable.auto.commit", "false");
    conf_is(conf, "auto.offset.reset", "largest");
    conf_is(conf, "security.protocol", "plaintext");
    rd_kafka_conf_destroy(conf);
    conf = dk_config_rdkafka(&cfg, DK_PRODUCER, err, sizeof err);
    ck_assert_ptr_nonnull(conf);
    conf_is(conf, "acks", "-1");
    conf_is(conf, "partitioner", "fnv1a_random");
    rd_kafka_conf_destroy(conf);
    dk_config_free(&cfg);
}
END_TEST

START_TEST(group_fallbacks)
{
    const char *a[] = {"brokers", "a:1", "authType", "none", "consumerID", "cid", NULL};
    const char *b[] = {"brokers", "a:1", "authType", "none", "consumerID", "cid",
                       "consumerGroup", "grp", "clientID", "me", NULL};
    dk_config cfg;
    char err[256];
    ck_assert_int_eq(parse(&cfg, a, err), 0);
    ck_assert_str_eq(cfg.consumer_group, "cid");
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, b, err), 0);
    ck_assert_str_eq(cfg.consumer_group, "grp");
    ck_assert_str_eq(cfg.client_id, "me");
    dk_config_free(&cfg);
}
END_TEST

START_TEST(required_fields)
{
    const char *nobrokers[] = {"authType", "none", NULL};
    const char *noauth[] = {"brokers", "a:1", NULL};
    const char *badauth[] = {"brokers", "a:1", "authType", "kerberos", NULL};
    dk_config cfg;
    char err[256];
    ck_assert_int_eq(parse(&cfg, nobrokers, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "brokers"));
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, noauth, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "authType"));
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, badauth, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "kerberos"));
    dk_config_free(&cfg);
}
END_TEST

START_TEST(password_auth)
{
    const char *kv[] = {"brokers", "a:1", "authType", "password", "saslUsername", "u",
                        "saslPassword", "S3cret!", "saslMechanism", "SHA-512", NULL};
    const char *nopw[] = {"brokers", "a:1", "authType", "password", "saslUsername", "u", NULL};
    const char *plain[] = {"brokers", "a:1", "authType", "password", "saslUsername", "u",
                           "saslPassword", "S3cret!", "disableTls", "true", NULL};
    const char *legacy[] = {"brokers", "a:1", "authRequired", "true", "saslUsername", "u",
                            "saslPassword", "S3cret!", NULL};
    dk_config cfg;
    char err[256];
    ck_assert_int_eq(parse(&cfg, kv, err), 0);
    ck_assert_int_eq(cfg.auth, DK_AUTH_PASSWORD);
    ck_assert_str_eq(cfg.sasl_mechanism, "SCRAM-SHA-512");
    ck_assert_int_eq(cfg.tls, 1);
    rd_kafka_conf_t *conf = dk_config_rdkafka(&cfg, DK_PRODUCER, err, sizeof err);
    ck_assert_ptr_nonnull(conf);
    conf_is(conf, "security.protocol", "sasl_ssl");
    conf_is(conf, "sasl.mechanisms", "SCRAM-SHA-512");
    rd_kafka_conf_destroy(conf);
    dk_config_free(&cfg);

    ck_assert_int_eq(parse(&cfg, nopw, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "saslPassword"));
    dk_config_free(&cfg);

    ck_assert_int_eq(parse(&cfg, plain, err), 0);
    ck_assert_int_eq(cfg.tls, 0);
    ck_assert_str_eq(cfg.sasl_mechanism, "PLAIN");
    conf = dk_config_rdkafka(&cfg, DK_CONSUMER, err, sizeof err);
    ck_assert_ptr_nonnull(conf);
    conf_is(conf, "security.protocol", "sasl_plaintext");
    rd_kafka_conf_destroy(conf);
    dk_config_free(&cfg);

    ck_assert_int_eq(parse(&cfg, legacy, err), 0);
    ck_assert_int_eq(cfg.auth, DK_AUTH_PASSWORD);
    dk_config_free(&cfg);
}
END_TEST

START_TEST(tls_auth)
{
    const char *pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const char *half[] = {"brokers", "a:1", "authType", "mtls", "clientCert", pem, NULL};
    const char *notls[] = {"brokers", "a:1", "authType", "mtls", "disableTls", "true", NULL};
    const char *cert_noca[] = {"brokers", "a:1", "authType", "certificate", NULL};
    const char *badca[] = {"brokers", "a:1", "authType", "certificate", "caCert", "nope", NULL};
    const char *skip[] = {"brokers", "a:1", "authType", "mtls", "skipVerify", "true", NULL};
    dk_config cfg;
    char err[256];
    ck_assert_int_eq(parse(&cfg, half, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "clientKey"));
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, notls, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "disableTls"));
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, cert_noca, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "caCert"));
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, badca, err), -1);
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, skip, err), 0);
    ck_assert_int_eq(cfg.tls, 1);
    rd_kafka_conf_t *conf = dk_config_rdkafka(&cfg, DK_CONSUMER, err, sizeof err);
    ck_assert_ptr_nonnull(conf);
    conf_is(conf, "security.protocol", "ssl");
    conf_is(conf, "enable.ssl.certificate.verification", "false");
    rd_kafka_conf_destroy(conf);
    dk_config_free(&cfg);
}
END_TEST

START_TEST(oidc_auth)
{
    const char *kv[] = {"brokers", "a:1", "authType", "oidc", "oidcTokenEndpoint", "https://idp/t",
                        "oidcClientID", "id", "oidcClientSecret", "sec", "oidcScopes", "openid,kafka",
                        "oidcExtensions", "{\"logicalCluster\":\"lkc-1\"}", NULL};
    const char *bad[] = {"brokers", "a:1", "authType", "oidc", "oidcTokenEndpoint", "https://idp/t",
                         "oidcClientID", "id", "oidcClientSecret", "sec", "oidcExtensions", "[1]",
                         NULL};
    dk_config cfg;
    char err[256];
    ck_assert_int_eq(parse(&cfg, kv, err), 0);
    ck_assert_str_eq(cfg.oidc_scope, "openid kafka");
    ck_assert_str_eq(cfg.oidc_extensions, "logicalCluster=lkc-1");
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, bad, err), -1);
    dk_config_free(&cfg);
}
END_TEST

START_TEST(durations_and_numbers)
{
    int64_t ms;
    ck_assert_int_eq(dk_parse_duration_ms("1m30s", 1000, &ms), 0);
    ck_assert_int_eq(ms, 90000);
    ck_assert_int_eq(dk_parse_duration_ms("1.5s", 1000, &ms), 0);
    ck_assert_int_eq(ms, 1500);
    ck_assert_int_eq(dk_parse_duration_ms("250ms", 1000, &ms), 0);
    ck_assert_int_eq(ms, 250);
    ck_assert_int_eq(dk_parse_duration_ms("7", 1000, &ms), 0);
    ck_assert_int_eq(ms, 7000);
    ck_assert_int_eq(dk_parse_duration_ms("7", 1, &ms), 0);
    ck_assert_int_eq(ms, 7);
    ck_assert_int_eq(dk_parse_duration_ms("5", 1, &ms), 0);
    ck_assert_int_eq(dk_parse_duration_ms("soon", 1, &ms), -1);
    ck_assert_int_eq(dk_parse_duration_ms("5x", 1, &ms), -1);
    ck_assert_int_eq(dk_parse_duration_ms("", 1, &ms), -1);

    const char *kv[] = {"brokers", "a:1", "authType", "none", "consumeRetryInterval", "200",
                        "heartbeatInterval", "1", "sessionTimeout", "6s", "initialOffset", "oldest",
                        "maxMessageBytes", "2048", "consumeRetryEnabled", "false", NULL};
    const char *bad_offset[] = {"brokers", "a:1", "authType", "none", "initialOffset", "latest", NULL};
    const char *bad_hb[] = {"brokers", "a:1", "authType", "none", "heartbeatInterval", "20s", NULL};
    const char *bad_ver[] = {"brokers", "a:1", "authType", "none", "version", "two", NULL};
    const char *old_ver[] = {"brokers", "a:1", "authType", "none", "version", "0.9.0.1", NULL};
    dk_config cfg;
    char err[256];
    ck_assert_int_eq(parse(&cfg, kv, err), 0);
    ck_assert_int_eq(cfg.consume_retry_interval_ms, 200);
    ck_assert_int_eq(cfg.heartbeat_ms, 1000);
    ck_assert_int_eq(cfg.session_timeout_ms, 6000);
    ck_assert_int_eq(cfg.initial_oldest, 1);
    ck_assert_int_eq(cfg.max_message_bytes, 2048);
    ck_assert_int_eq(cfg.consume_retry_enabled, 0);
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, bad_offset, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "initialOffset"));
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, bad_hb, err), -1);
    ck_assert_ptr_nonnull(strstr(err, "heartbeatInterval"));
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, bad_ver, err), -1);
    dk_config_free(&cfg);
    ck_assert_int_eq(parse(&cfg, old_ver, err), 0);
    ck_assert_str_eq(cfg.broker_version_fallback, "0.9.0.1");
    dk_config_free(&cfg);
}
END_TEST

START_TEST(secrets_never_in_errors)
{
    /* A bad value of a secret field must not be echoed. */
    const char *kv[] = {"brokers", "a:1", "authType", "mtls", "clientCert",
                        "-----BEGIN CERTIFICATE-----x-----END CERTIFICATE-----",
                        "clientKey", "Pr1vate-K3y", NULL};
    dk_config cfg;
    char err[256];
    ck_assert_int_eq(parse(&cfg, kv, err), -1);
    ck_assert_ptr_null(strstr(err, "Pr1vate-K3y"));
    dk_config_free(&cfg);
}
END_TEST

START_TEST(topic_names)
{
    ck_assert_int_eq(dk_topic_name_ok("orders"), 1);
    ck_assert_int_eq(dk_topic_name_ok("a.b_c-D9"), 1);
    ck_assert_int_eq(dk_topic_name_ok(""), 0);
    ck_assert_int_eq(dk_topic_name_ok(".."), 0);
    ck_assert_int_eq(dk_topic_name_ok("^regex.*"), 0);
    ck_assert_int_eq(dk_topic_name_ok("a/b"), 0);
    char long_name[300];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ck_assert_int_eq(dk_topic_name_ok(long_name), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kafka-common");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, group_fallbacks);
    tcase_add_test(tc, required_fields);
    tcase_add_test(tc, password_auth);
    tcase_add_test(tc, tls_auth);
    tcase_add_test(tc, oidc_auth);
    tcase_add_test(tc, durations_and_numbers);
    tcase_add_test(tc, secrets_never_in_errors);
    tcase_add_test(tc, topic_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
