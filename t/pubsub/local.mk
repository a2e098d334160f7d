# Pub/sub integration tests: pytest starts subscriber apps (pubsub_app.py)
# behind daprd sidecars with the pubsub.in-memory broker and checks
# publishing, CloudEvents, subscriptions, routing, delivery statuses, dead
# letters, bulk subscribe and ordering (reference §3); test_durable.py
# kills daprd with SIGKILL mid-delivery over pubsub.redis and a real
# redis-server (skipped when either is missing).  t/pubsub/run.sh sets the
# paths.
TESTS += t/pubsub/run.sh
EXTRA_DIST += t/pubsub/run.sh \
	t/pubsub/conftest.py \
	t/pubsub/pubsub_app.py \
	t/pubsub/test_publish.py \
	t/pubsub/test_subscribe.py \
	t/pubsub/test_delivery.py \
	t/pubsub/test_bulk.py \
	t/pubsub/test_durable.py
