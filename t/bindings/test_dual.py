"""A binding type with both directions (the bindings.probe test plugin):
one instance per direction as `direction` says, one metadata entry with
both capabilities, and what each input event's ack tells the plugin (the
app's 2xx and body, a failure status, the host's in-flight bound)."""

import json
import os

import pytest

from conftest import assert_error, component, headers_of, wait_for


def have_probe():
    return any(os.path.exists(os.path.join(d, "bindings-probe.so"))
               for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":") if d)


pytestmark = pytest.mark.skipif(not have_probe(), reason="the bindings.probe test plugin is not built (make check)")


def stats(d, name="both"):
    r = d.invoke(name, {"operation": "stats"})
    assert r.status == 200, r
    return r.json()


def test_both_directions(world):
    app = world.app(post=[("failing", 500)], delay=[("slow", 1.0)])
    d = world.daprd([component("both", "bindings.probe"),
                     component("bad", "bindings.probe", {"route": "failing"}),
                     component("slow", "bindings.probe", {"route": "/slow"}),
                     component("outonly", "bindings.probe", {"direction": "output"}),
                     component("inonly", "bindings.probe", {"direction": " Input "})],
                    app=app, args=["--app-max-concurrency", "2"])
    comps = {c["name"]: c for c in d.client.get("/v1.0/metadata").json()["components"]}
    assert comps["both"]["capabilities"] == ["INPUT_BINDING", "OUTPUT_BINDING"]
    assert [c["name"] for c in d.client.get("/v1.0/metadata").json()["components"]].count("both") == 1
    assert comps["outonly"]["capabilities"] == ["OUTPUT_BINDING"]
    assert comps["inonly"]["capabilities"] == ["INPUT_BINDING"]
    # discovery for the input sides, except the explicit one
    seen = sorted(o["route"] for o in app.options_seen())
    assert seen == ["both", "failing", "slow"], seen
    s = stats(d)
    assert s["starts"] == 4 and s["max_in_flight"] == 2, s   # both, bad, slow, inonly

    # an event reaches the app; its 2xx and body come back in the ack
    r = d.invoke("both", {"operation": "emit", "data": {"x": 1}, "metadata": {"X-Hdr": "v", "k": "w"}})
    assert r.status == 200 and r.json() == {"readers": 1}, r
    assert r.header("metadata.probe") == "yes"
    ev = wait_for(lambda: app.events("both"), 10, "the event at /both")[0]
    assert json.loads(ev["body"]) == {"x": 1}
    h = headers_of(ev)
    assert h["x-hdr"] == "v" and h["k"] == "w" and h["content-type"] == "application/json"
    s = wait_for(lambda: (lambda s: s if s["ok"] == 1 else None)(stats(d)), 10, "the ack")
    assert s["last_response"] == '{"ok":true}', s

    # a non-2xx answer is a failure for the plugin
    d.invoke("bad", {"operation": "emit", "data": "e"})
    s = wait_for(lambda: (lambda s: s if s["internal"] == 1 else None)(stats(d)), 10, "the failed ack")
    assert "HTTP 500" in s["last_message"], s

    # beyond the in-flight bound (--app-max-concurrency 2) the host refuses at once
    d.invoke("slow", {"operation": "emit", "data": 1, "metadata": {"count": "5", "ignoreBound": "true"}})
    s = wait_for(lambda: (lambda s: s if s["ok"] == 3 and s["unavailable"] == 3 else None)(stats(d)), 15,
                 "two slow deliveries and three refusals")
    assert "too many events in flight" in s["last_message"] or s["last_message"] == "", s
    assert len(app.events("slow")) == 2
    assert app.state()["max_concurrent"] <= 2

    # an output-only binding has no reader; an input-only one no output
    r = d.invoke("outonly", {"operation": "emit", "data": 1})
    assert r.status == 200 and r.json() == {"readers": 0}, r
    assert_error(d.invoke("inonly", {"operation": "stats"}), 500, "ERR_INVOKE_OUTPUT_BINDING",
                 "couldn't find output binding inonly")
    assert d.stop() == 0
