"""Resiliency policies on components: state stores (outbound) and pub/sub
deliveries to the app (inbound)."""

import time

from conftest import FLAKY_STORE, MEMORY_PUBSUB, gaps, request, wait_for


def res(name, policies, targets):
    return ("apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: %s\n"
            "spec:\n  policies:\n%s  targets:\n%s" % (name, policies, targets))


def save(d, key, value="v", etag=None):
    item = {"key": key, "value": value}
    if etag:
        item["etag"] = etag
    return request(d.port, "POST", "/v1.0/state/flaky", [item])


# A second store of the same plugin (whose counters are per process, keys
# prefixed with the app id in both) reads the counters past any breaker.
COUNTER_STORE = FLAKY_STORE.replace("name: flaky", "name: counter")


def counts(d, key):
    r = request(d.port, "GET", "/v1.0/state/counter/count-" + key)
    assert r.status == 200, r
    return r.json()


def test_state_outbound_retries(world):
    world.write("store.yaml", FLAKY_STORE)
    world.write("counter.yaml", COUNTER_STORE)
    world.write("resiliency.yaml", res("res", """    retries:
      storeRetry:
        policy: constant
        duration: 100ms
        maxRetries: 3
""", """    components:
      flaky:
        outbound:
          retry: storeRetry
"""))
    d = world.start(with_app=False)
    assert save(d, "fail2-a").status == 204
    assert counts(d, "fail2-a")["sets"] == 3
    r = save(d, "fail9-b")
    assert r.status == 500 and r.json()["errorCode"] == "ERR_STATE_SAVE", r
    assert counts(d, "fail9-b")["sets"] == 4
    # An etag mismatch is final: never retried, still 409.
    r = save(d, "etag-c", etag="1")
    assert r.status == 409, r
    assert counts(d, "etag-c")["sets"] == 1
    r = request(d.port, "GET", "/v1.0/state/flaky/fail1-d")
    assert r.status == 200 and r.json() == "late", r
    assert counts(d, "fail1-d")["gets"] == 2


def test_state_without_policy_is_not_retried(world):
    world.write("store.yaml", FLAKY_STORE)
    world.write("counter.yaml", COUNTER_STORE)
    d = world.start(with_app=False)
    assert save(d, "fail1-a").status == 500
    assert counts(d, "fail1-a")["sets"] == 1


def test_state_outbound_timeout_and_late_completion(world):
    world.write("store.yaml", FLAKY_STORE)
    world.write("counter.yaml", COUNTER_STORE)
    world.write("resiliency.yaml", res("res", """    timeouts:
      quick: 300ms
""", """    components:
      flaky:
        outbound:
          timeout: quick
"""))
    d = world.start(with_app=False)
    r = request(d.port, "GET", "/v1.0/state/flaky/slow-x")
    assert r.status == 500, r
    assert r.json() == {"errorCode": "ERR_STATE_GET",
                        "message": "fail to get slow-x from state store flaky: context deadline exceeded"}
    assert r.elapsed < 1.2, r.elapsed
    r = save(d, "slow-y")
    assert r.status == 500 and "context deadline exceeded" in r.text, r
    # The plugin completes 1.5 s later: ignored, and the sidecar serves on.
    wait_for(lambda: counts(d, "slow-x")["gets"] == 1, 5, "slow get counted")
    time.sleep(1.6)   # let the late completions arrive before stopping
    assert request(d.port, "GET", "/v1.0/healthz").status == 204
    assert save(d, "fast").status == 204


def test_state_timeout_with_retry_waits_for_the_plugin(world):
    world.write("store.yaml", FLAKY_STORE)
    world.write("counter.yaml", COUNTER_STORE)
    world.write("resiliency.yaml", res("res", """    timeouts:
      quick: 300ms
    retries:
      once:
        policy: constant
        duration: 50ms
        maxRetries: 1
""", """    components:
      flaky:
        outbound:
          timeout: quick
          retry: once
"""))
    d = world.start(with_app=False)
    r = request(d.port, "GET", "/v1.0/state/flaky/slow-z")
    assert r.status == 500 and "context deadline exceeded" in r.text, r
    # The retry ran only after the first call left the plugin.
    assert counts(d, "slow-z")["gets"] == 2


def test_state_breaker(world):
    world.write("store.yaml", FLAKY_STORE)
    world.write("counter.yaml", COUNTER_STORE)
    world.write("resiliency.yaml", res("res", """    circuitBreakers:
      storeCB:
        timeout: 30s
        trip: consecutiveFailures >= 2
""", """    components:
      flaky:
        outbound:
          circuitBreaker: storeCB
"""))
    d = world.start(with_app=False)
    assert save(d, "fail9-a").status == 500
    assert save(d, "fail9-a").status == 500
    r = save(d, "fail9-a")
    assert r.status == 500 and "circuit breaker is open" in r.text, r
    assert counts(d, "fail9-a")["sets"] == 2


def publish(d, data):
    r = request(d.port, "POST", "/v1.0/publish/pubsub/orders", data)
    assert r.status == 204, r


def test_pubsub_inbound_retries(world):
    world.write("pubsub.yaml", MEMORY_PUBSUB)
    world.write("resiliency.yaml", res("res", """    retries:
      inbound:
        policy: constant
        duration: 250ms
        maxRetries: 2
""", """    components:
      pubsub:
        inbound:
          retry: inbound
"""))
    d = world.start()
    world.app.plan("/orders", fail=2)
    publish(d, {"n": 1})
    wait_for(lambda: len(world.app.times("/orders")) >= 3, 10, "three deliveries")
    times = world.app.times("/orders")
    assert all(g >= 0.22 for g in gaps(times)), gaps(times)
    time.sleep(0.5)
    assert len(world.app.times("/orders")) == 3        # acked after the success
    assert world.app.times("/dead") == []

    # Always failing: 1 + maxRetries deliveries, then the dead-letter topic.
    world.app.plan("/orders", fail=100)
    publish(d, {"n": 2})
    wait_for(lambda: len(world.app.times("/dead")) == 1, 10, "dead-lettered")
    assert len(world.app.times("/orders")) == 3


def test_pubsub_inbound_timeout(world):
    world.write("pubsub.yaml", MEMORY_PUBSUB)
    world.write("resiliency.yaml", res("res", """    timeouts:
      quick: 300ms
    retries:
      inbound:
        policy: constant
        duration: 100ms
        maxRetries: 1
""", """    components:
      pubsub:
        inbound:
          timeout: quick
          retry: inbound
"""))
    d = world.start()
    world.app.plan("/orders", fail=1, status=200, delay=2.0)
    publish(d, {"n": 1})
    wait_for(lambda: len(world.app.times("/orders")) == 2, 10, "redelivered after the timeout")
    t = world.app.times("/orders")
    assert t[1] - t[0] < 1.5, t
    assert "context deadline exceeded" in d.log()
    time.sleep(0.3)
    assert world.app.times("/dead") == []


def test_pubsub_default_inbound_policy_name(world):
    world.write("pubsub.yaml", MEMORY_PUBSUB)
    world.write("resiliency.yaml", res("res", """    retries:
      DefaultPubsubComponentInboundRetryPolicy:
        policy: constant
        duration: 50ms
        maxRetries: 0
""", ""))
    d = world.start()
    world.app.plan("/orders", fail=100)
    publish(d, {"n": 1})
    # maxRetries 0: one delivery, then the dead-letter topic at once.
    wait_for(lambda: len(world.app.times("/dead")) == 1, 10, "dead-lettered")
    assert len(world.app.times("/orders")) == 1


FLAKY_BROKER = FLAKY_STORE.replace("name: flaky", "name: broker").replace("state.flaky", "pubsub.flaky")


def test_pubsub_outbound_publish(world):
    world.write("broker.yaml", FLAKY_BROKER)
    world.write("counter.yaml", COUNTER_STORE)
    world.write("resiliency.yaml", res("res", """    timeouts:
      quick: 300ms
    retries:
      pub:
        policy: constant
        duration: 100ms
        maxRetries: 2
""", """    components:
      broker:
        outbound:
          retry: pub
          timeout: quick
"""))
    d = world.start(with_app=False)
    r = request(d.port, "POST", "/v1.0/publish/broker/fail2-orders", {"n": 1})
    assert r.status == 204, r
    assert counts(d, "pub-fail2-orders")["sets"] == 3
    r = request(d.port, "POST", "/v1.0/publish/broker/fail9-orders", {"n": 1})
    assert r.status == 500 and r.json()["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE", r
    assert counts(d, "pub-fail9-orders")["sets"] == 3
    r = request(d.port, "POST", "/v1.0/publish/broker/slow-orders", {"n": 1})
    assert r.status == 500 and "context deadline exceeded" in r.text, r
    # Each retry waited for the stalled publish to come back first.
    assert counts(d, "pub-slow-orders")["sets"] == 3
