"""Fixtures for the bindings.kafka tests.

The daprd, process and world helpers are t/bindings/conftest.py's (loaded
here under another module name, so both folders keep a conftest.py).  On
top of them:

  kafka     one librdkafka mock cluster for the session (t/kafka's
            mock-cluster, path in $KAFKA_MOCK): its bootstrap list
  KafkaApp  kafka_app.py, the app that records events and fails chosen
            ids on demand

Tests isolate themselves with their own topics and consumer groups.
"""

import importlib.util
import os
import select
import subprocess
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "bindings_common", os.path.join(HERE, "..", "bindings", "conftest.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

# Re-exported: the fixture and the report hooks pytest looks for here.
world = common.world
pytest_runtest_makereport = common.pytest_runtest_makereport
pytest_sessionfinish = common.pytest_sessionfinish


class KafkaApp(common.Helper):
    def __init__(self, workdir, delay=0.0, port=0, name="app"):
        super().__init__(workdir, name, os.path.join(HERE, "kafka_app.py"),
                         ["--delay", str(delay), "--port", str(port)])

    def events(self, route=None):
        r = self.client.get("/events")
        assert r.status == 200, r
        return [e for e in r.json()["events"] if route is None or e["route"] == route]

    def fail(self, ids, times):
        r = self.client.request("PUT", "/_ctl/fail", body='{"ids": %s, "times": %d}' % (list(ids), times))
        assert r.status == 204, r


def start_app(world, delay=0.0, port=0, name="app"):
    a = KafkaApp(world.path(name), delay, port, name)
    world.procs.append(a)
    return a.start()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    mock = os.environ.get("KAFKA_MOCK")
    if not mock or not os.access(mock, os.X_OK):
        pytest.fail("KAFKA_MOCK must name t/kafka/mock-cluster (t/bindings-kafka/run.sh sets it)",
                    pytrace=False)
    d = tmp_path_factory.mktemp("mock")
    err = open(os.path.join(str(d), "mock.stderr.log"), "wb")
    p = subprocess.Popen([mock], stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    ready, _, _ = select.select([p.stdout], [], [], 15)
    line = p.stdout.readline().decode() if ready else ""
    if not line.startswith("BOOTSTRAP "):
        p.kill()
        p.wait()
        pytest.fail("mock-cluster did not start (stdout %r)" % line, pytrace=False)
    try:
        yield line.split()[1]
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()
        err.close()


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def kafka_component(name, bootstrap, **meta):
    """A bindings.kafka manifest; the group timings suit the mock cluster
    (it takes about 3 s per group join)."""
    m = {"brokers": bootstrap, "authType": "none", "sessionTimeout": "4s",
         "heartbeatInterval": "500ms", "consumeRetryInterval": "100ms"}
    m.update(meta)
    return common.component(name, "bindings.kafka", {k: v for k, v in m.items() if v is not None})
