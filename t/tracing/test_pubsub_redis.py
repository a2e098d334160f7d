"""Publish on one sidecar, delivery through another (pubsub.redis on a
real redis-server): one trace across both, the subscriber's
"pubsub/{topic}" span a child of the publisher's API span, as the
CloudEvent's traceparent said."""

import os
import shutil
import socket
import time

import pytest

from conftest import World, ic, wait_for, zipkin_tracing


class Redis(ic.Proc):
    def __init__(self, path):
        super().__init__(path, "redis")
        self.port = None

    def start(self):
        exe = shutil.which("redis-server")
        if not exe:
            pytest.skip("redis-server not installed (apt-get install redis-server)")
        self.port = ic.free_port()
        self._popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--daemonize", "no", "--dir", self.workdir], dict(os.environ))

        def pong():
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")

        wait_for(lambda: self.alive() and pong(), 10, "redis-server did not start")
        return self


def test_publish_and_delivery_across_sidecars(tmp_path, zipkin):
    if not any(os.path.isfile(os.path.join(d, "pubsub-redis.so"))
               for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":") if d):
        pytest.skip("pubsub-redis.so not built")
    redis = Redis(str(tmp_path / "redis")).start()
    pubsub = ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n"
              "  type: pubsub.redis\n  version: v1\n  metadata:\n"
              "  - name: redisHost\n    value: \"127.0.0.1:%d\"\n" % redis.port)
    sub = ("apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: orders\nspec:\n"
           "  pubsubname: pubsub\n  topic: orders\n  routes:\n    default: /orders\nscopes:\n- zrb\n")
    w = World(tmp_path, zipkin_tracing(zipkin.port), resources=[pubsub, sub])
    try:
        a = w.daprd("zra")
        b = w.pair("zrb")
        trace_id, parent = "3cf92f3577b34da6a3ce929d0e0e4736", "0123456789abcdef"

        # The subscriber's consumer may join a moment after it is healthy:
        # publish until a delivery shows up.
        def delivered():
            r = a.client.post("/v1.0/publish/pubsub/orders", json={"n": 1},
                              headers={"traceparent": "00-%s-%s-01" % (trace_id, parent)})
            assert r.status == 204, r
            spans = zipkin.trace(trace_id)
            return spans if any(s["name"] == "pubsub/orders" for s in spans) else None

        wait_for(delivered, 20, "no delivery span in zipkin", interval=0.5)
        time.sleep(0.5)   # the CLIENT span ends after the app answered
        spans = zipkin.wait_trace(trace_id, 3)
        pubs = [s for s in spans if s["name"] == "/v1.0/publish/pubsub/orders"]
        assert pubs and all(p["localEndpoint"]["serviceName"] == "zra" and p["parentId"] == parent
                            for p in pubs), spans
        ids = {p["id"] for p in pubs}
        dl = [s for s in spans if s["name"] == "pubsub/orders"]
        assert dl and all(d["localEndpoint"]["serviceName"] == "zrb" and d["kind"] == "SERVER"
                          and d["parentId"] in ids for d in dl), spans
        apps = [s for s in spans if s["name"] == "post /orders"]
        assert apps and all(x["parentId"] in {d["id"] for d in dl} and x["localEndpoint"]["serviceName"] == "zrb"
                            for x in apps), spans
    finally:
        w.stop_all()
        redis.stop()
