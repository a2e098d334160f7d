/*
 * mock-cluster - run librdkafka's mock Kafka cluster as a test peer.
 *
 *   mock-cluster [--brokers N] [--topic NAME:PARTITIONS]...
 *
 * Debian has no Kafka broker, but librdkafka ships a mock cluster that
 * speaks the Kafka protocol over TCP (produce, fetch, consumer groups,
 * offset commits).  This program creates one with N brokers (default 3)
 * on 127.0.0.1, prints its bootstrap list as the first line of stdout
 * ("BOOTSTRAP host:port,host:port,..."), and runs until SIGTERM or
 * SIGINT.  Topics are created on first use with the mock's default of 4
 * partitions; --topic creates one beforehand with the given count.
 *
 * Faults on demand: SIGUSR1 takes every broker down (connections are
 * closed and refused), SIGUSR2 brings them all up again.
 *
 * The signals are blocked before the client is created, so that
 * librdkafka's own threads inherit the mask and the main thread receives
 * them with sigwait().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static void usage(void)
{
    fprintf(stderr, "usage: mock-cluster [--brokers N] [--topic NAME:PARTITIONS]...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int n_brokers = 3;
    char errstr[512];

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) {
        perror("mock-cluster: pthread_sigmask");
        return 1;
    }

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            n_brokers = atoi(argv[++i]);
            if (n_brokers < 1 || n_brokers > 16)
                usage();
        } else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc) {
            i++; /* created below, once the cluster exists */
        } else {
            usage();
        }
    }

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* The mock runs inside this client; keep its own chatter quiet. */
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "mock-cluster: %s\n", errstr);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "mock-cluster: rd_kafka_new: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, n_brokers);
    if (!mc) {
        fprintf(stderr, "mock-cluster: rd_kafka_mock_cluster_new failed\n");
        rd_kafka_destroy(rk);
        return 1;
    }

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--topic") != 0)
            continue;
        char *spec = argv[++i];
        char *colon = strrchr(spec, ':');
        int parts = colon ? atoi(colon + 1) : 0;
        if (!colon || colon == spec || parts < 1) {
            fprintf(stderr, "mock-cluster: --topic wants NAME:PARTITIONS, got '%s'\n", spec);
            return 2;
        }
        *colon = '\0';
        int rf = n_brokers < 3 ? n_brokers : 3;
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, spec, parts, rf);
        if (err) {
            fprintf(stderr, "mock-cluster: creating topic %s: %s\n", spec, rd_kafka_err2str(err));
            return 1;
        }
    }

    printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR1 || sig == SIGUSR2) {
            for (int b = 1; b <= n_brokers; b++) {
                if (sig == SIGUSR1)
                    rd_kafka_mock_broker_set_down(mc, b);
                else
                    rd_kafka_mock_broker_set_up(mc, b);
            }
            printf("%s\n", sig == SIGUSR1 ? "DOWN" : "UP");
            fflush(stdout);
            continue;
        }
        break;
    }

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
