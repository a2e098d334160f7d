"""Resiliency policies on bindings: output bindings (outbound, the
bindings.http plugin calling the test app) and input bindings (inbound,
bindings.cron events delivered to the app)."""

import os

import pytest

from conftest import gaps, request, wait_for


def http_binding(port):
    return """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: web
spec:
  type: bindings.http
  version: v1
  metadata:
  - name: url
    value: http://127.0.0.1:%d
""" % port


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
  - name: route
    value: /cron
  - name: direction
    value: input
"""


def res(policies, targets):
    return ("apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\n"
            "spec:\n  policies:\n%s  targets:\n%s" % (policies, targets))


def have(plugin):
    for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":"):
        if d and os.path.exists(os.path.join(d, plugin)):
            return True
    return False


@pytest.mark.skipif(not have("bindings-http.so"), reason="bindings.http was not built (no libcurl)")
def test_output_binding_retries(world):
    world.start_app_first()
    world.write("web.yaml", http_binding(world.app.port))
    world.write("resiliency.yaml", res("""    retries:
      out:
        policy: constant
        duration: 150ms
        maxRetries: 3
""", """    components:
      web:
        outbound:
          retry: out
"""))
    d = world.start_daprd()
    world.app.plan("/flaky", fail=2)
    r = request(d.port, "POST", "/v1.0/bindings/web",
                {"operation": "post", "data": {"a": 1}, "metadata": {"path": "flaky"}})
    assert r.status == 200, r
    times = world.app.times("/flaky")
    assert len(times) == 3
    assert all(g >= 0.13 for g in gaps(times)), gaps(times)


@pytest.mark.skipif(not have("bindings-cron.so"), reason="bindings.cron was not built")
def test_input_binding_inbound_retries(world):
    world.write("cron.yaml", CRON)
    world.write("resiliency.yaml", res("""    retries:
      in:
        policy: constant
        duration: 200ms
        maxRetries: 3
""", """    components:
      tick:
        inbound:
          retry: in
"""))
    world.start_app_first()
    world.app.plan("/cron", fail=2)
    world.start_daprd()
    wait_for(lambda: len(world.app.times("/cron")) >= 3, 10, "three deliveries of the first event")
    t = world.app.times("/cron")[:3]
    # One event, retried twice 200 ms apart (the next event is 1 s later).
    assert all(0.18 <= g < 0.8 for g in gaps(t)), gaps(t)
