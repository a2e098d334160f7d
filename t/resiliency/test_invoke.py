"""Resiliency policies on service invocation (targets.apps)."""

import time

from conftest import gaps, wait_for


def manifest(name, policies, targets, scopes=None):
    text = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: %s\n" % name
    if scopes is not None:
        text += "scopes:\n" + "".join("  - %s\n" % s for s in scopes)
    return text + "spec:\n  policies:\n%s  targets:\n%s" % (policies, targets)


CONSTANT = """    retries:
      steady:
        policy: constant
        duration: 300ms
        maxRetries: 3
"""
APP_STEADY = """    apps:
      app:
        retry: steady
"""


def test_constant_retry_count_and_spacing(world):
    world.write("resiliency.yaml", manifest("res", CONSTANT, APP_STEADY))
    d = world.start()
    world.app.plan("/flaky", fail=2)
    r = d.invoke("flaky")
    assert r.status == 200, r
    times = world.app.times("/flaky")
    assert len(times) == 3
    assert all(g >= 0.27 for g in gaps(times)), gaps(times)
    log = d.log()
    assert log.count("Error processing operation app_app:flaky. Retrying") == 2
    assert "Recovered processing operation app_app:flaky." in log

    # Always failing: 1 call + maxRetries, then the app's own answer.
    world.app.plan("/down", fail=100, status=503)
    r = d.invoke("down")
    assert r.status == 503, r
    assert "planned failure 4" in r.text
    times = world.app.times("/down")
    assert len(times) == 4
    assert all(g >= 0.27 for g in gaps(times)), gaps(times)
    assert "resiliency configuration loaded: res" in d.log()


def test_exponential_retry_spacing(world):
    world.write("resiliency.yaml", manifest("res", """    retries:
      expo:
        policy: exponential
        maxInterval: 5s
        maxRetries: 3
""", """    apps:
      app:
        retry: expo
"""))
    d = world.start()
    world.app.plan("/down", fail=100, status=500)
    r = d.invoke("down")
    assert r.status == 500, r
    times = world.app.times("/down")
    assert len(times) == 4
    g = gaps(times)
    # 500ms x 1.5^n, each randomised by +-50%: lower bounds only.
    for n, gap in enumerate(g):
        assert gap >= 0.5 * 0.5 * 1.5 ** n * 0.9, g
    assert sum(g) < 5.0, g


def test_http_status_code_matching(world):
    world.write("resiliency.yaml", manifest("res", """    retries:
      only5xx:
        policy: constant
        duration: 50ms
        maxRetries: 2
        matching:
          httpStatusCodes: "500-599,429"
""", """    apps:
      app:
        retry: only5xx
"""))
    d = world.start()
    world.app.plan("/missing", fail=100, status=404)
    assert d.invoke("missing").status == 404
    assert len(world.app.times("/missing")) == 1          # not listed: no retry
    world.app.plan("/busy", fail=100, status=429)
    assert d.invoke("busy").status == 429
    assert len(world.app.times("/busy")) == 3             # listed: retried
    world.app.plan("/err", fail=1, status=502)
    assert d.invoke("err").status == 200
    assert len(world.app.times("/err")) == 2


def test_timeout_cancels_slow_call(world):
    world.write("resiliency.yaml", manifest("res", """    timeouts:
      quick: 500ms
""", """    apps:
      app:
        timeout: quick
"""))
    d = world.start()
    world.app.plan("/slow", fail=1, status=200, delay=3.0)
    r = d.invoke("slow")
    assert r.status == 500, r
    body = r.json()
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert body["message"] == "failed to invoke, id: app, err: context deadline exceeded"
    assert r.elapsed < 2.5, r.elapsed
    # The sidecar serves on at once and the next call is not slow.
    r = d.invoke("slow")
    assert r.status == 200, r
    assert len(world.app.times("/slow")) == 2


def test_timeout_then_retry(world):
    world.write("resiliency.yaml", manifest("res", """    timeouts:
      quick: 400ms
    retries:
      twice:
        policy: constant
        duration: 100ms
        maxRetries: 2
""", """    apps:
      app:
        timeout: quick
        retry: twice
"""))
    d = world.start()
    world.app.plan("/slow", fail=1, status=200, delay=2.0)
    r = d.invoke("slow", verb="POST", body={"same": "body"})
    assert r.status == 200, r
    assert r.json()["n"] == 2
    world.app.plan("/stuck", fail=100, status=200, delay=2.0)
    r = d.invoke("stuck")
    assert r.status == 500 and "context deadline exceeded" in r.text, r
    assert len(world.app.times("/stuck")) == 3


def test_circuit_breaker(world):
    world.write("resiliency.yaml", manifest("res", """    circuitBreakers:
      breaker:
        maxRequests: 1
        timeout: 1s
        trip: consecutiveFailures >= 2
""", """    apps:
      app:
        circuitBreaker: breaker
"""))
    d = world.start()
    world.app.plan("/cb", fail=100, status=500)
    assert d.invoke("cb").status == 500
    assert d.invoke("cb").status == 500               # trips the breaker
    r = d.invoke("cb")
    assert r.status == 500, r
    assert r.json()["message"] == "failed to invoke, id: app, err: circuit breaker is open"
    assert len(world.app.times("/cb")) == 2           # failed fast: the app saw nothing
    assert r.elapsed < 0.5
    log = d.log()
    assert "for app_app:cb changed state from closed to open" in log, log[-3000:]
    # After its timeout the breaker half-opens; one success closes it.
    world.app.plan("/cb", fail=0)
    time.sleep(1.1)   # the breaker's own timeout is what is tested here
    r = d.invoke("cb")
    assert r.status == 200, r
    wait_for(lambda: "from half-open to closed" in d.log(), 5, "breaker closed again")
    assert "from open to half-open" in d.log()
    assert d.invoke("cb").status == 200
    # The state changes are published as Dapr's resiliency metrics.
    m = d.metrics()
    assert any(l.startswith("dapr_resiliency_cb_state{") and 'status="closed"' in l and 'target="app_app"' in l
               and l.endswith(" 1") for l in m.splitlines()), m
    assert any(l.startswith("dapr_resiliency_activations_total{") and 'policy="circuitbreaker"' in l
               and 'status="open"' in l for l in m.splitlines()), m


def test_breaker_reopens_on_failed_probe(world):
    world.write("resiliency.yaml", manifest("res", """    circuitBreakers:
      breaker:
        timeout: 500ms
        trip: consecutiveFailures > 0 && requests >= 1
""", """    apps:
      app:
        circuitBreaker: breaker
"""))
    d = world.start()
    world.app.plan("/cb", fail=100, status=500)
    assert d.invoke("cb").status == 500
    assert "circuit breaker is open" in d.invoke("cb").text
    time.sleep(0.6)
    assert d.invoke("cb").status == 500                # the half-open probe fails
    assert "circuit breaker is open" in d.invoke("cb").text
    assert len(world.app.times("/cb")) == 2


def test_no_policy_no_retry(world):
    d = world.start()
    world.app.plan("/flaky", fail=1)
    assert d.invoke("flaky").status == 500
    assert len(world.app.times("/flaky")) == 1


def test_scopes(world):
    world.write("other.yaml", manifest("other", CONSTANT, APP_STEADY, scopes=["someone-else"]))
    d = world.start()
    world.app.plan("/flaky", fail=1)
    assert d.invoke("flaky").status == 500
    assert len(world.app.times("/flaky")) == 1
    assert "resiliency configuration loaded: other" not in d.log()


def test_scoped_to_this_app(world):
    world.write("mine.yaml", manifest("mine", CONSTANT, APP_STEADY, scopes=["someone-else", "app"]))
    d = world.start()
    world.app.plan("/flaky", fail=1)
    assert d.invoke("flaky").status == 200
    assert len(world.app.times("/flaky")) == 2


def test_two_manifests_merged(world):
    # Policies in one file, targets in another (files are read in name order).
    world.write("a-policies.yaml", manifest("policies", CONSTANT + """    timeouts:
      quick: 400ms
""", ""))
    world.write("b-targets.yaml", manifest("targets", "", """    apps:
      app:
        retry: steady
        timeout: quick
"""))
    d = world.start()
    world.app.plan("/flaky", fail=2)
    assert d.invoke("flaky").status == 200
    assert len(world.app.times("/flaky")) == 3
    world.app.plan("/slow", fail=1, status=200, delay=1.5)
    r = d.invoke("slow")
    assert r.status == 200, r
    assert len(world.app.times("/slow")) == 2


def test_default_policy_names(world):
    world.write("resiliency.yaml", manifest("res", """    retries:
      DefaultAppRetryPolicy:
        policy: constant
        duration: 50ms
        maxRetries: 1
""", ""))
    d = world.start()
    world.app.plan("/flaky", fail=1)
    assert d.invoke("flaky").status == 200
    assert len(world.app.times("/flaky")) == 2


def test_bad_manifest_is_reported(world):
    world.write("resiliency.yaml", manifest("bad", """    retries:
      steady:
        policy: constant
        duration: fast
""", ""))
    world.write("resiliency2.yaml", manifest("bad2", """    circuitBreakers:
      cb:
        trip: consecutiveFailures >>> 2
""", ""))
    world.write("resiliency3.yaml", manifest("bad3", "", """    apps:
      app:
        retry: nosuchpolicy
"""))
    d = world.start()
    log = d.log()
    assert ("resiliency.yaml: resiliency 'bad': spec.policies.retries.steady.duration: "
            "'fast' is not a duration") in log, log[-3000:]
    assert "resiliency2.yaml: resiliency 'bad2': spec.policies.circuitBreakers.cb.trip" in log
    assert ("resiliency3.yaml: resiliency 'bad3': spec.targets.apps.app.retry: "
            "no retry policy named 'nosuchpolicy'") in log
    # As Dapr: a bad manifest is skipped, the sidecar runs on without it.
    world.app.plan("/flaky", fail=1)
    assert d.invoke("flaky").status == 500
    assert len(world.app.times("/flaky")) == 1
