# bindings.mqtt3 tests (pytest) against a real mosquitto broker that the
# tests start and stop.
TESTS += t/bindings-mqtt3/run.sh
EXTRA_DIST += t/bindings-mqtt3/run.sh \
	t/bindings-mqtt3/conftest.py \
	t/bindings-mqtt3/mqtt_app.py \
	t/bindings-mqtt3/test_mqtt3.py
