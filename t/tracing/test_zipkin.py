"""Spans exported to a real Zipkin server: one trace across API call ->
sidecar hop -> app call, and across publish -> delivery, with the parent
links the traceparent headers showed (Dapr's span names and attributes)."""

import json
import os

import pytest

from conftest import World, echo_headers, find, wait_invocable, zipkin_tracing

MEMORY_PUBSUB = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.in-memory
  version: v1
  metadata: []
"""

SUBSCRIPTION = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    default: /orders
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory, zipkin):
    w = World(tmp_path_factory.mktemp("tracing-zipkin"), zipkin_tracing(zipkin.port),
              resources=[MEMORY_PUBSUB, SUBSCRIPTION])
    w.a = w.pair("zka")
    w.b = w.pair("zkb")
    wait_invocable(w.a, "zkb")
    yield w
    w.stop_all()


def name_is(span, name):
    return span.get("name", "").lower() == name.lower()


def check_invoke_trace(spans, trace_id, root_parent):
    """S1 (zka SERVER) -> C1 (zka CLIENT) -> S2 (zkb SERVER) -> C2 (zkb CLIENT)."""
    assert all(s["traceId"] == trace_id for s in spans)
    s1 = find(spans, service="zka", kind="SERVER")
    assert len(s1) == 1, spans
    s1 = s1[0]
    assert name_is(s1, "CallLocal/zkb/hello"), s1
    assert s1.get("parentId") == root_parent, s1
    tags = s1["tags"]
    assert tags["dapr.api"] == "POST /v1.0/invoke/zkb/method/hello", tags
    assert tags["dapr.protocol"] == "http" and tags["dapr.status_code"] == "200", tags
    assert tags["rpc.service"] == "ServiceInvocation" and tags["net.peer.name"] == "zkb", tags
    c1 = find(spans, service="zka", kind="CLIENT")
    assert len(c1) == 1 and c1[0]["parentId"] == s1["id"], spans
    c1 = c1[0]
    s2 = find(spans, service="zkb", kind="SERVER")
    assert len(s2) == 1 and s2[0]["parentId"] == c1["id"], spans
    s2 = s2[0]
    assert name_is(s2, "CallLocal/zkb/hello"), s2
    c2 = find(spans, service="zkb", kind="CLIENT")
    assert len(c2) == 1 and c2[0]["parentId"] == s2["id"], spans
    c2 = c2[0]
    assert name_is(c2, "POST /hello"), c2
    # Durations nest: each child within its parent.
    for parent, child in ((s1, c1), (c1, s2), (s2, c2)):
        assert child["duration"] <= parent["duration"] + 1000, (parent, child)
    return c2


def test_invoke_one_trace_with_incoming_traceparent(world, zipkin):
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = world.a.invoke("zkb", "hello", verb="POST", body=b"{}",
                       headers={"traceparent": "00-%s-%s-01" % (trace_id, parent), "tracestate": "k=v"})
    h = echo_headers(r)
    spans = zipkin.wait_trace(trace_id, 4)
    c2 = check_invoke_trace(spans, trace_id, parent)
    # The app saw the span ids Zipkin has: its parent is the app call span.
    assert h["traceparent"] == ["00-%s-%s-01" % (trace_id, c2["id"])], h
    assert h.get("tracestate") == ["k=v"], h


def test_invoke_new_trace(world, zipkin):
    r = world.a.invoke("zkb", "hello", verb="POST", body=b"{}")
    h = echo_headers(r)
    tid = h["traceparent"][0].split("-")[1]
    tp = r.header("traceparent")
    assert tp and tp.split("-")[1] == tid, r.headers
    spans = zipkin.wait_trace(tid, 4)
    c2 = check_invoke_trace(spans, tid, None)
    assert h["traceparent"][0] == "00-%s-%s-01" % (tid, c2["id"]), h


def test_state_and_error_spans(world, zipkin):
    # No state store: an error answer still makes a span, with an error tag.
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4737"
    r = world.a.client.get("/v1.0/state/nostore/k1", headers={"traceparent": "00-%s-1111111111111111-01" % trace_id})
    assert r.status >= 400
    (s,) = zipkin.wait_trace(trace_id, 1)
    assert name_is(s, "/v1.0/state/nostore/k1"), s
    t = s["tags"]
    assert t["db.system"] == "state" and t["db.name"] == "nostore", t
    assert t["db.statement"] == "GET /v1.0/state/nostore/k1", t
    assert t["dapr.status_code"] == str(r.status), t
    assert t.get("error"), t


def test_publish_and_delivery(world, zipkin):
    trace_id, parent = "6bf92f3577b34da6a3ce929d0e0e4738", "0123456789abcdef"
    r = world.b.client.post("/v1.0/publish/pubsub/orders", json={"order": 1},
                            headers={"traceparent": "00-%s-%s-01" % (trace_id, parent)})
    assert r.status == 204, r
    spans = zipkin.wait_trace(trace_id, 3)
    pub = [s for s in spans if name_is(s, "/v1.0/publish/pubsub/orders")]
    assert len(pub) == 1, spans
    pub = pub[0]
    assert pub["parentId"] == parent and pub["kind"] == "SERVER", pub
    assert pub["tags"]["messaging.system"] == "pubsub", pub
    assert pub["tags"]["messaging.destination"] == "orders", pub
    dl = [s for s in spans if name_is(s, "pubsub/orders")]
    assert len(dl) == 1, spans
    assert dl[0]["parentId"] == pub["id"] and dl[0]["kind"] == "SERVER", dl
    app = [s for s in spans if name_is(s, "POST /orders")]
    assert len(app) == 1 and app[0]["parentId"] == dl[0]["id"] and app[0]["kind"] == "CLIENT", spans
    assert app[0]["tags"].get("http.response.status_code") == "200", app


def test_health_checks_are_not_traced(world, zipkin):
    trace_id = "7bf92f3577b34da6a3ce929d0e0e4739"
    r = world.a.client.get("/v1.0/healthz", headers={"traceparent": "00-%s-1111111111111111-01" % trace_id})
    assert r.status == 204
    # A later traced call of the same sidecar is exported: by then a
    # health span would have been too.
    t2 = "8bf92f3577b34da6a3ce929d0e0e4740"
    world.a.client.get("/v1.0/metadata", headers={"traceparent": "00-%s-1111111111111111-01" % t2})
    zipkin.wait_trace(t2, 1)
    assert zipkin.trace(trace_id) == []


CRON = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: tick
spec:
  type: bindings.cron
  version: v1
  metadata:
  - name: schedule
    value: "@every 1s"
"""


def test_input_binding_span(tmp_path, zipkin):
    if not any(os.path.isfile(os.path.join(d, "bindings-cron.so"))
               for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":") if d):
        pytest.skip("bindings-cron.so not built")
    w = World(tmp_path, zipkin_tracing(zipkin.port), resources=[CRON])
    try:
        w.pair("zkcron")

        def traces():
            r = zipkin.client.get("/api/v2/traces?serviceName=zkcron&spanName=bindings/tick&limit=10")
            assert r.status == 200, r
            return [t for t in r.json() if len(t) >= 2] or None

        from conftest import wait_for
        t = wait_for(traces, 20, "no bindings/tick trace in zipkin")[0]
        (b,) = [s for s in t if name_is(s, "bindings/tick")]
        assert b["kind"] == "SERVER" and "parentId" not in b, b
        assert b["tags"]["db.system"] == "bindings" and b["tags"]["db.name"] == "tick", b
        (app,) = [s for s in t if name_is(s, "POST /tick")]
        assert app["parentId"] == b["id"] and app["kind"] == "CLIENT", t
    finally:
        w.stop_all()
