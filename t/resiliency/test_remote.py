"""Resiliency on calls between sidecars: a caller daprd (no app) invokes
app "callee" through its sidecar, found by nameresolution.sqlite."""

import json
import os

import pytest

from conftest import App, Daprd, gaps, wait_for


def have(plugin):
    return any(d and os.path.exists(os.path.join(d, plugin))
               for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":"))


@pytest.fixture
def pair(tmp_path):
    """(caller daprd, callee app, callee daprd) with the caller's
    resources folder to be filled by the test before start()."""
    tmp = str(tmp_path)
    config = os.path.join(tmp, "config.yaml")
    with open(config, "w", encoding="utf-8") as f:
        f.write("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: t\n"
                "spec:\n  nameResolution:\n    component: sqlite\n    configuration:\n"
                "      connectionString: %s\n      updateInterval: 2s\n      timeout: 1s\n"
                % json.dumps(os.path.join(tmp, "nr.db")))
    res_caller = os.path.join(tmp, "res-caller")
    res_callee = os.path.join(tmp, "res-callee")
    os.makedirs(res_caller)
    os.makedirs(res_callee)
    procs = []

    class Pair:
        resources = res_caller

        def start(self):
            self.app = App(os.path.join(tmp, "app"), "app").start()
            procs.append(self.app)
            self.callee = Daprd(os.path.join(tmp, "callee"), "callee")
            procs.append(self.callee)
            self.callee.start("callee", self.app.port, res_callee, ["--config", config])
            self.caller = Daprd(os.path.join(tmp, "caller"), "caller")
            procs.append(self.caller)
            self.caller.start("caller", None, res_caller, ["--config", config])
            # Registered and resolvable: the first call answers.
            self.app.plan("/ping", fail=0)
            wait_for(lambda: self.caller.invoke("ping", app_id="callee").status == 200, 15, "callee reachable")
            return self

    p = Pair()
    yield p
    bad = []
    for proc in reversed(procs):
        rc = proc.stop()
        if isinstance(proc, Daprd) and rc not in (None, 0):
            bad.append("%s exited with %r\n%s" % (proc.name, rc, proc.log()[-4000:]))
    # A clean exit also means no sanitizer report at shutdown.
    assert not bad, "\n".join(bad)


pytestmark = pytest.mark.skipif(not have("nameresolution-sqlite.so"),
                                reason="nameresolution.sqlite was not built")


def write(pair, policies, targets):
    with open(os.path.join(pair.resources, "resiliency.yaml"), "w", encoding="utf-8") as f:
        f.write("apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\n"
                "spec:\n  policies:\n%s  targets:\n%s" % (policies, targets))


def test_remote_retry_and_timeout(pair):
    write(pair, """    timeouts:
      quick: 500ms
    retries:
      steady:
        policy: constant
        duration: 200ms
        maxRetries: 2
""", """    apps:
      callee:
        timeout: quick
        retry: steady
""")
    p = pair.start()
    p.app.plan("/flaky", fail=2, status=503)
    r = p.caller.invoke("flaky", app_id="callee")
    assert r.status == 200, r
    times = p.app.times("/flaky")
    assert len(times) == 3 and all(g >= 0.18 for g in gaps(times)), times
    # A slow callee: each attempt is cut at 500 ms, then the caller gives up.
    p.app.plan("/slow", fail=100, status=200, delay=3.0)
    r = p.caller.invoke("slow", app_id="callee")
    assert r.status == 500, r
    assert r.json()["message"] == "failed to invoke, id: callee, err: context deadline exceeded"
    assert r.elapsed < 2.9, r.elapsed
    assert len(p.app.times("/slow")) == 3


def test_remote_breaker(pair):
    write(pair, """    circuitBreakers:
      cb:
        timeout: 60s
        trip: consecutiveFailures >= 1
""", """    apps:
      callee:
        circuitBreaker: cb
""")
    p = pair.start()
    p.app.plan("/a", fail=100, status=500)
    assert p.caller.invoke("a", app_id="callee").status == 500
    r = p.caller.invoke("a", app_id="callee")
    assert "circuit breaker is open" in r.text, r
    assert len(p.app.times("/a")) == 1
    # Breakers are per app and method, as Dapr's endpoint breakers.
    assert p.caller.invoke("ping", app_id="callee").status == 200
