"""OTLP/HTTP JSON export, checked by a receiver that parses every payload
into ExportTraceServiceRequest with protobuf (unknown fields refused)."""

import pytest

from conftest import World, echo_headers, wait_for, wait_invocable


@pytest.fixture(scope="module")
def world(tmp_path_factory, otlp):
    tracing = ('samplingRate: "1"\notel:\n  endpointAddress: "127.0.0.1:%d"\n  isSecure: false\n'
               '  protocol: http\n' % otlp.port)
    w = World(tmp_path_factory.mktemp("tracing-otlp"), tracing)
    w.a = w.pair("ota")
    w.b = w.pair("otb")
    wait_invocable(w.a, "otb")
    yield w
    w.stop_all()


def attrs(span):
    return {a["key"]: a["value"]["stringValue"] for a in span.get("attributes", [])}


def test_invoke_trace_is_valid_otlp(world, otlp):
    trace_id, parent = "9af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    r = world.a.invoke("otb", "greet", verb="POST", body=b"{}",
                       headers={"traceparent": "00-%s-%s-01" % (trace_id, parent)})
    h = echo_headers(r)

    def mine():
        d = otlp.data()
        s = [x for x in d["spans"] if x["traceId"] == trace_id]
        return s if len(s) >= 4 else None

    spans = wait_for(mine, 15, lambda: "OTLP receiver: %r" % otlp.data())
    assert otlp.data()["errors"] == []
    assert len(spans) == 4, spans
    ids = {s["spanId"]: s for s in spans}
    s1 = [s for s in spans if s["service"] == "ota" and s["kind"] == 2]
    assert len(s1) == 1 and s1[0]["parentSpanId"] == parent, spans
    s1 = s1[0]
    assert s1["name"] == "CallLocal/otb/greet"
    a = attrs(s1)
    assert a["dapr.api"] == "POST /v1.0/invoke/otb/method/greet" and a["dapr.status_code"] == "200", a
    assert s1["status"] == {"code": 1}, s1
    # Every other span's parent is in the trace: one connected tree.
    for s in spans:
        if s is not s1:
            assert s["parentSpanId"] in ids, (s, list(ids))
    c2 = [s for s in spans if s["service"] == "otb" and s["kind"] == 3]
    assert len(c2) == 1 and c2[0]["name"] == "POST /greet", spans
    assert ids[c2[0]["parentSpanId"]]["service"] == "otb" and ids[c2[0]["parentSpanId"]]["kind"] == 2
    assert h["traceparent"] == ["00-%s-%s-01" % (trace_id, c2[0]["spanId"])], h
    for s in spans:
        assert int(s["startTimeUnixNano"]) <= int(s["endTimeUnixNano"])


def test_error_status(world, otlp):
    trace_id = "aaf7651916cd43dd8448eb211c80319c"
    r = world.a.client.get("/v1.0/secrets/nostore/key", headers={"traceparent": "00-%s-b7ad6b7169203331-01" % trace_id})
    assert r.status >= 400

    def mine():
        s = [x for x in otlp.data()["spans"] if x["traceId"] == trace_id]
        return s or None

    (s,) = wait_for(mine, 15, "the secrets call's span")
    assert s["status"]["code"] == 2 and s["status"].get("message"), s
    a = attrs(s)
    assert a["db.system"] == "secrets" and a["db.name"] == "nostore", a
    assert otlp.data()["errors"] == []


def test_grpc_protocol_is_refused(tmp_path):
    """otel.protocol grpc cannot be honoured: daprd says so and exits."""
    import subprocess
    w = World(tmp_path, 'samplingRate: "1"\notel:\n  endpointAddress: "127.0.0.1:4317"\n  protocol: grpc\n')
    d = w.daprd("otg", start=False)
    d.spawn(0)
    rc = d.proc.wait(timeout=15)
    d._closed()
    assert rc != 0
    log = open(d.stdout_path, encoding="utf-8", errors="replace").read() + \
        open(d.stderr_path, encoding="utf-8", errors="replace").read()
    assert "otel.protocol 'grpc' is not supported" in log, log


def test_protobuf_from_environment(tmp_path, otlp):
    """OTEL_EXPORTER_OTLP_ENDPOINT (no otel section in the Configuration)
    with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: binary OTLP bodies,
    parsed strictly by the receiver."""
    before = otlp.data()["protobuf_payloads"]
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:%d" % otlp.port,
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    w = World(tmp_path, 'samplingRate: "1"\n')
    try:
        a = w.daprd("otpa", env=env)
        app = w.app("otpb")
        w.daprd("otpb", app, env=env)
        wait_invocable(a, "otpb")
        trace_id = "baf7651916cd43dd8448eb211c80319c"
        r = a.invoke("otpb", "pb", verb="POST", body=b"{}",
                     headers={"traceparent": "00-%s-b7ad6b7169203331-01" % trace_id})
        h = echo_headers(r)

        def mine():
            s = [x for x in otlp.data()["spans"] if x["traceId"] == trace_id]
            return s if len(s) >= 4 else None

        spans = wait_for(mine, 15, lambda: "OTLP receiver: %r" % otlp.data())
        d = otlp.data()
        assert d["errors"] == [] and d["protobuf_payloads"] > before
        ids = {s["spanId"]: s for s in spans}
        (root,) = [s for s in spans if s["parentSpanId"] == "b7ad6b7169203331"]
        assert root["name"] == "CallLocal/otpb/pb" and root["kind"] == 2 and root["service"] == "otpa", root
        assert root["status"] == {"code": 1} and attrs(root)["dapr.status_code"] == "200", root
        for s in spans:
            if s is not root:
                assert s["parentSpanId"] in ids, s
        (c2,) = [s for s in spans if s["service"] == "otpb" and s["kind"] == 3]
        assert h["traceparent"] == ["00-%s-%s-01" % (trace_id, c2["spanId"])]
    finally:
        w.stop_all()


def test_receiver_is_strict(otlp):
    """The receiver really refuses what a collector would: an unknown
    field, a base64 (not hex) id, a string kind it does not know.  (Runs
    last: the tests above expect no errors.)"""
    good = ('{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"x"}}]},'
            '"scopeSpans":[{"scope":{"name":"t"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",'
            '"spanId":"eee19b7ec3c1b174","name":"n","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"%s}]}]}]}')
    before = len(otlp.data()["errors"])
    assert otlp.client.post("/v1/traces", body=good % "", headers={"Content-Type": "application/json"}).status == 200
    for extra in (',"bogus":1', ',"kind":"SPAN_KIND_NOPE"', ',"droppedAttributesCount":"x"'):
        r = otlp.client.post("/v1/traces", body=good % extra, headers={"Content-Type": "application/json"})
        assert r.status == 400, (extra, r)
    bad_id = good.replace("eee19b7ec3c1b174", "7uGbfsPBsXQ=") % ""
    assert otlp.client.post("/v1/traces", body=bad_id, headers={"Content-Type": "application/json"}).status == 400
    # JSON text is no protobuf message.
    r = otlp.client.post("/v1/traces", body=good % "", headers={"Content-Type": "application/x-protobuf"})
    assert r.status == 400, r
    assert len(otlp.data()["errors"]) == before + 5
