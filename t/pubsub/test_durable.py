"""At-least-once across a sidecar killed with SIGKILL (reference §3.5,
ARCHITECTURE "Reliability rules"): with a durable broker, messages handed
to a daprd that dies before the app answered are redelivered once a daprd
for the same app is back; every message id arrives at least once.  Run
over each durable broker plugin on a real peer: pubsub.redis (redis-server),
pubsub.jetstream (nats-server -js) and pubsub.kafka (librdkafka's mock
cluster, t/kafka/mock-cluster).

Each case is skipped (with the reason) when its plugin was not built or
its server is not installed.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import Proc, free_port, plugin_dirs, sub, wait_for

N_MESSAGES = 200


def plugin_dir(env, so):
    d = os.environ.get(env, "")
    if not d or not os.path.isfile(os.path.join(d, so)):
        pytest.skip("%s not built (looked in %r): no durable broker to test with" % (so, d))
    return d


def redis_plugin_dir():
    return plugin_dir("DAPR_TEST_REDIS_PLUGIN", "pubsub-redis.so")


def wait_port(proc, port, what):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Redis(Proc):
    def __init__(self, world):
        super().__init__(world.path("redis"), "redis")
        self.port = None

    def start(self):
        exe = shutil.which("redis-server")
        if not exe:
            pytest.skip("redis-server not installed (apt-get install redis-server)")
        for _ in range(3):
            self.port = free_port()
            self._popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                         "--daemonize", "no", "--dir", self.workdir], dict(os.environ))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.alive():
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        s.close()
                        return self
                    s.close()
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        pytest.fail("redis-server did not start\n" + self.logs(), pytrace=False)

class Nats(Proc):
    """nats-server with JetStream (file store in the test's folder) and
    one stream capturing every subject: pubsub.jetstream, like Dapr's
    component, never creates streams."""

    def __init__(self, world):
        super().__init__(world.path("nats"), "nats")
        self.port = None

    def start(self):
        exe = shutil.which("nats-server")
        if not exe:
            pytest.skip("nats-server not installed (apt-get install nats-server)")
        tool = os.environ.get("DAPR_TEST_JS_TOOL", "")
        if not tool or not os.access(tool, os.X_OK):
            pytest.skip("t/jetstream/js_tool not built (looked for %r)" % tool)
        for _ in range(3):
            self.port = free_port()
            self._popen([exe, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                         "-sd", os.path.join(self.workdir, "store")], dict(os.environ))
            if wait_port(self, self.port, "nats-server"):
                subprocess.run([tool, "stream-add", "nats://127.0.0.1:%d" % self.port, "ALL", "*"],
                               check=True, timeout=30)
                return self
            self.stop()
        pytest.fail("nats-server did not start\n" + self.logs(), pytrace=False)


class KafkaMock(Proc):
    """librdkafka's mock Kafka cluster (3 brokers) through t/kafka/mock-cluster,
    which prints its bootstrap list as its first line."""

    def __init__(self, world):
        super().__init__(world.path("kafka"), "kafka")
        self.bootstrap = None

    def start(self):
        exe = os.environ.get("DAPR_TEST_KAFKA_MOCK", "")
        if not exe or not os.access(exe, os.X_OK):
            pytest.skip("t/kafka/mock-cluster not built (looked for %r)" % exe)
        self._popen([exe, "--topic", "orders:4"], dict(os.environ), stdout_pipe=True)
        line = self.proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "BOOTSTRAP":
            pytest.fail("mock-cluster did not start\n" + self.logs(), pytrace=False)
        self.bootstrap = line[1]
        return self


def redis_pubsub(port):
    return """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: "127.0.0.1:%d"
  - name: consumerID
    value: "subscriber"
  - name: processingTimeout
    value: "2s"
  - name: redeliverInterval
    value: "500ms"
""" % port


def jetstream_pubsub(port):
    return """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.jetstream
  version: v1
  metadata:
  - name: natsURL
    value: "nats://127.0.0.1:%d"
  - name: durableName
    value: "subscriber"
  - name: ackWait
    value: "2s"
""" % port


def kafka_pubsub(bootstrap):
    return """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.kafka
  version: v1
  metadata:
  - name: brokers
    value: "%s"
  - name: authType
    value: "none"
  - name: consumerGroup
    value: "subscriber"
  - name: initialOffset
    value: "oldest"
  - name: sessionTimeout
    value: "6s"
  - name: heartbeatInterval
    value: "1s"
""" % bootstrap


def start_broker(world, kind):
    """(plugin folder, component manifest) for a durable broker on a real peer."""
    if kind == "redis":
        plugin = redis_plugin_dir()
        redis = Redis(world)
        world.procs.append(redis)
        return plugin, redis_pubsub(redis.start().port)
    if kind == "jetstream":
        plugin = plugin_dir("DAPR_TEST_JETSTREAM_PLUGIN", "pubsub-jetstream.so")
        nats = Nats(world)
        world.procs.append(nats)
        return plugin, jetstream_pubsub(nats.start().port)
    plugin = plugin_dir("DAPR_TEST_KAFKA_PLUGIN", "pubsub-kafka.so")
    kafka = KafkaMock(world)
    world.procs.append(kafka)
    return plugin, kafka_pubsub(kafka.start().bootstrap)


@pytest.mark.parametrize("broker", ["redis", "jetstream", "kafka"])
def test_sigkill_mid_delivery_loses_nothing(world, broker):
    plugin, manifest = start_broker(world, broker)
    resources = world.resources(manifest)
    app = world.app("app1", subscribe=[sub("orders", "/orders")])
    # A slow app (1 s per message, at most 32 in flight: about 32 a second)
    # so that most messages are still in the broker or in flight when the
    # sidecar dies, even when publishing 200 takes seconds (sanitizers).
    app.rules([{"delay_ms": 1000}])
    plugins = plugin_dirs() + [plugin]
    d = world.daprd("app1", app, resources=resources, plugins=plugins, name="daprd-first")
    for i in range(N_MESSAGES):
        r = d.publish("orders", json_body={"n": i}, metadata={"cloudevent.id": "m-%d" % i})
        assert r.status == 204, r
    # Kill it in the middle of the deliveries.
    app.wait_deliveries(N_MESSAGES // 10, timeout=30)
    d.kill()   # SIGKILL
    before = len(app.deliveries())
    assert before < N_MESSAGES, "all delivered before the kill: the test proves nothing"
    d2 = world.daprd("app1", app, resources=resources, plugins=plugins, name="daprd-second")

    def ids():
        return [x.json()["id"] for x in app.deliveries("/orders")]
    want = {"m-%d" % i for i in range(N_MESSAGES)}
    wait_for(lambda: want <= set(ids()), 60,
             lambda: "missing after the restart: %d of %d (%s...)" %
             (len(want - set(ids())), N_MESSAGES, sorted(want - set(ids()))[:5]))
    got = ids()
    dup = len(got) - len(set(got))
    print("\nSIGKILL test (%s): %d messages, %d delivered before the kill, %d deliveries in all, "
          "%d unique, %d redelivered duplicates" % (broker, N_MESSAGES, before, len(got), len(set(got)), dup))
    assert set(got) == want
    assert d2.alive()


def test_publish_metadata_reaches_the_subscriber_as_headers(world):
    """Other metadata.* of a publish go to the broker with the message, and
    the subscriber sees them as headers (a broker that carries metadata,
    as pubsub.redis does)."""
    plugin = redis_plugin_dir()
    redis = Redis(world)
    world.procs.append(redis)
    redis.start()
    app = world.app("app1", subscribe=[sub("orders", "/orders")])
    d = world.daprd("app1", app, resources=world.resources(redis_pubsub(redis.port)),
                    plugins=plugin_dirs() + [plugin])
    r = d.publish("orders", json_body={"x": 1}, metadata={"customHeader": "v1", "cloudevent.type": "t.x",
                                                          "bad header": "not a header name"})
    assert r.status == 204, r
    got = app.wait_deliveries(1, timeout=15)[0]
    assert got.header("customHeader") == "v1"
    assert got.header("pubsubName") == "pubsub"
    assert got.header("Content-Type") == "application/cloudevents+json"
    # cloudevent.* overrides shape the envelope and are not broker metadata.
    assert got.json()["type"] == "t.x"
    assert got.header("cloudevent.type") is None
