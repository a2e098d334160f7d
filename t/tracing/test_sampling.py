"""Dapr's sampler: samplingRate "0" exports nothing (even for a sampled
parent), "1" everything; in between, a sampled parent is always followed
and otherwise the trace id decides (OpenTelemetry's TraceIDRatioBased)."""

import pytest

from conftest import World, trace_of, zipkin_tracing


def run_calls(world, app_id, headers_list):
    d = world.daprd(app_id)
    out = []
    for hdrs in headers_list:
        r = d.client.get("/v1.0/metadata", headers=hdrs)
        assert r.status == 200, r
        out.append(r)
    # Stopping flushes the exporter: after this, what Zipkin lacks was
    # never sent.
    assert d.stop() == 0
    return out


def test_rate_zero_exports_nothing(tmp_path, zipkin):
    w = World(tmp_path, zipkin_tracing(zipkin.port, "0"))
    sampled = "00-1cf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    rs = run_calls(w, "samplezero", [{}, {"traceparent": sampled}] * 5)
    # Propagation still works: same trace id, a new span id, and the
    # caller's sampling decision passed on untouched; new traces are not
    # sampled.
    t, s, f = trace_of(rs[1])
    assert t == "1cf92f3577b34da6a3ce929d0e0e4736" and s != "00f067aa0ba902b7" and f == "01"
    assert trace_of(rs[0])[2] == "00"
    for r in rs:
        assert zipkin.trace(trace_of(r)[0]) == []
    assert "samplezero" not in zipkin.services()


def test_rate_one_exports_everything(tmp_path, zipkin):
    w = World(tmp_path, zipkin_tracing(zipkin.port, "1"))
    rs = run_calls(w, "sampleone", [{}] * 20)
    ids = {trace_of(r)[0] for r in rs}
    assert len(ids) == 20
    for r in rs:
        t, s, f = trace_of(r)
        assert f == "01"
        spans = zipkin.trace(t)
        assert [x["id"] for x in spans] == [s], spans


def test_parent_based(tmp_path, zipkin):
    # A tiny rate: the ratio alone samples only trace ids whose low 64 bits
    # are (nearly) zero.
    w = World(tmp_path, zipkin_tracing(zipkin.port, "0.000001"))
    hi = "2cf92f3577b34da6"
    parent_sampled = "00-%sffffffffffffff00-00f067aa0ba902b7-01" % hi
    parent_unsampled = "00-%sffffffffffffff01-00f067aa0ba902b7-00" % hi
    ratio_yes = "00-%s0000000000000002-00f067aa0ba902b7-00" % hi
    rs = run_calls(w, "sampleparent", [{"traceparent": parent_sampled}, {"traceparent": parent_unsampled},
                                       {"traceparent": ratio_yes}, {}])
    assert trace_of(rs[0])[2] == "01" and len(zipkin.trace(hi + "ffffffffffffff00")) == 1
    assert trace_of(rs[1])[2] == "00" and zipkin.trace(hi + "ffffffffffffff01") == []
    assert trace_of(rs[2])[2] == "01" and len(zipkin.trace(hi + "0000000000000002")) == 1
    # A new trace with a random id: sampled with probability 1e-6.
    t, s, f = trace_of(rs[3])
    assert f == ("01" if zipkin.trace(t) else "00")


def test_invalid_traceparent_starts_a_new_trace(tmp_path, zipkin):
    w = World(tmp_path, zipkin_tracing(zipkin.port, "1"))
    bad = ["00-00000000000000000000000000000000-00f067aa0ba902b7-01",   # zero trace id
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   # upper case
           "garbage"]
    rs = run_calls(w, "samplebad", [{"traceparent": b} for b in bad])
    for r, b in zip(rs, bad):
        t, s, f = trace_of(r)
        assert t.lower() not in b.lower()
        (span,) = zipkin.trace(t)
        assert "parentId" not in span, span
