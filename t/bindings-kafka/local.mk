# bindings.kafka tests (pytest): daprd against librdkafka's mock Kafka
# cluster (t/kafka/mock-cluster): create, read back with key and headers,
# redelivery after a non-2xx answer, bad metadata, SIGKILL mid-stream.
TESTS += t/bindings-kafka/run.sh
EXTRA_DIST += t/bindings-kafka/run.sh \
	t/bindings-kafka/conftest.py \
	t/bindings-kafka/kafka_app.py \
	t/bindings-kafka/test_kafka.py
