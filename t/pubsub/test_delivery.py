"""Delivery to the app (reference §3.5): what the app's answer means
(SUCCESS, RETRY, DROP, 404, other statuses), dead-letter topics after the
retries, pausing while the app is unhealthy, ordering with
--app-max-concurrency 1 and bounded concurrency without it.
"""

import time

import pytest

from conftest import App, settle, sub

# Each case: the app's answers to successive deliveries, and how many
# deliveries the message gets in all (the built-in inbound retries in
# core/resiliency.c are 3, the in-memory broker redelivers after that).
ANSWERS = {
    "empty-200": ([{"status": 200}], 1),
    "empty-204": ([{"status": 204}], 1),
    "success": ([{"json": {"status": "SUCCESS"}}], 1),
    "empty-status": ([{"json": {"status": ""}}], 1),
    "no-status-field": ([{"json": {"other": 1}}], 1),
    "not-json": ([{"body": "fine thanks"}], 1),
    "json-array": ([{"json": [1, 2]}], 1),
    "status-number": ([{"json": {"status": 5}}], 1),
    "retry-twice": ([{"json": {"status": "RETRY"}, "times": 2}, {"json": {"status": "SUCCESS"}}], 3),
    "500-once": ([{"status": 500, "times": 1}, {"status": 200}], 2),
    "503-then-202": ([{"status": 503, "times": 2}, {"status": 202}], 3),
    "lowercase-success-is-unknown": ([{"json": {"status": "success"}, "times": 1}, {"status": 200}], 2),
    "unknown-status": ([{"json": {"status": "MAYBE"}, "times": 1}, {"status": 200}], 2),
    "drop": ([{"json": {"status": "DROP"}}], 1),
    "404": ([{"status": 404}], 1),
}


@pytest.mark.parametrize("case", sorted(ANSWERS))
def test_app_answers(world, case):
    rules, expected = ANSWERS[case]
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    a.rules(rules)
    d = world.daprd("app1", a)
    assert d.publish("orders", json_body={"case": case}).status == 204
    got = a.wait_deliveries(expected, timeout=10)
    settle(lambda: len(a.deliveries()) == expected, 0.6)
    # Every delivery is the same message.
    assert len({x.json()["id"] for x in got}) == 1
    if case == "drop":
        d.wait_log("the app answered DROP")
    if case == "404":
        d.wait_log("404")


def test_dead_letter_after_retries(world):
    a = world.app("app1", subscribe=[sub("orders", "/orders", deadLetterTopic="poison"),
                                     sub("poison", "/poison")])
    a.rules([{"path": "/orders", "status": 500}])
    d = world.daprd("app1", a)
    assert d.publish("orders", json_body={"bad": True}, metadata={"cloudevent.id": "p-1"}).status == 204
    dl = a.wait_deliveries(1, "/poison", timeout=10)
    # 1 delivery + 3 retries, then the dead-letter topic, nothing more.
    assert len(a.deliveries("/orders")) == 4
    ev = dl[0].json()
    assert ev["id"] == "p-1" and ev["data"] == {"bad": True}
    settle(lambda: len(a.deliveries("/orders")) == 4 and len(a.deliveries("/poison")) == 1, 1.0)


def test_drop_goes_to_dead_letter(world):
    a = world.app("app1", subscribe=[sub("orders", "/orders", deadLetterTopic="dl"), sub("dl", "/dl")])
    a.rules([{"path": "/orders", "json": {"status": "DROP"}}])
    d = world.daprd("app1", a)
    assert d.publish("orders", json_body=1).status == 204
    a.wait_deliveries(1, "/dl")
    assert len(a.deliveries("/orders")) == 1


def test_retry_without_dead_letter_goes_back_to_broker(world):
    # After the local retries the broker redelivers (the in-memory broker
    # after its own backoff): the message is not lost.
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    a.rules([{"status": 500, "times": 5}, {"status": 200}])
    d = world.daprd("app1", a)
    assert d.publish("orders", json_body=1).status == 204
    a.wait_deliveries(6, timeout=15)
    settle(lambda: len(a.deliveries()) == 6, 0.8)
    d.wait_log("goes back to the broker")


def test_delivery_headers(world):
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    d = world.daprd("app1", a, env={"APP_API_TOKEN": "app-secret"})
    assert d.publish("orders", json_body=1).status == 204
    got = a.wait_deliveries(1)[0]
    assert got.header("Content-Type") == "application/cloudevents+json"
    assert got.header("pubsubName") == "pubsub"
    assert got.header("dapr-api-token") == "app-secret"
    assert got.header("traceparent")
    # The body is the envelope as published, byte for byte.
    assert got.json()["data"] == 1


def test_unhealthy_app_pauses_delivery(world):
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    d = world.daprd("app1", a, args=["--enable-app-health-check", "--app-health-probe-interval", "100ms",
                                     "--app-health-threshold", "1"])
    a.set_health(False)
    d.wait_log("application is unhealthy")
    for i in range(5):
        assert d.publish("orders", json_body={"i": i}).status == 204
    settle(lambda: a.deliveries() == [], 1.5)
    a.set_health(True)
    got = a.wait_deliveries(5, timeout=10)
    assert sorted(x.json()["data"]["i"] for x in got) == list(range(5))
    settle(lambda: len(a.deliveries()) == 5, 0.3)


def publish_many(d, n, topic="orders", **kw):
    for i in range(n):
        r = d.publish(topic, json_body={"i": i}, **kw)
        assert r.status == 204, r


def test_max_concurrency_1_in_order(world):
    a = world.app("app1", subscribe=[sub("orders", "/orders"), sub("other", "/other")])
    # Slow answers, and message 7 needs a retry: the later ones wait.
    a.rules([{"path": "/orders", "match": '"i": 7', "status": 500, "times": 1},
             {"delay_ms": 10}])
    d = world.daprd("app1", a, args=["--app-max-concurrency", "1"])
    publish_many(d, 30)
    publish_many(d, 5, topic="other")
    got = a.wait_deliveries(31, "/orders", timeout=20)
    order = [x.json()["data"]["i"] for x in got]
    # 7 twice (the failed try and its retry), otherwise publish order.
    dedup = [v for k, v in enumerate(order) if k == 0 or order[k - 1] != v]
    assert dedup == list(range(30)), order
    assert order.count(7) == 2
    a.wait_deliveries(5, "/other")
    assert a.stats()["max_concurrent"] == 1


def test_concurrency_is_bounded_without_limit(world):
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    a.rules([{"delay_ms": 300}])
    d = world.daprd("app1", a)
    publish_many(d, 60)
    a.wait_deliveries(60, timeout=20)
    m = a.stats()["max_concurrent"]
    # In parallel, but never more than the subscription's in-flight bound.
    assert 2 <= m <= 32, m


def test_app_max_concurrency_n(world):
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    a.rules([{"delay_ms": 100}])
    d = world.daprd("app1", a, args=["--app-max-concurrency", "3"])
    publish_many(d, 20)
    a.wait_deliveries(20, timeout=20)
    assert a.stats()["max_concurrent"] <= 3


def test_app_down_then_up(world):
    """The app process dies: deliveries fail and are retried; nothing is
    lost once it is back (same port)."""
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    d = world.daprd("app1", a)
    a.stop()
    publish_many(d, 3)
    time.sleep(0.3)
    b = App(world.path("app-again"), "again", port=a.port)
    world.procs.append(b)
    b.start()
    got = b.wait_deliveries(3, timeout=15)
    assert sorted({x.json()["data"]["i"] for x in got}) == [0, 1, 2]


def test_shutdown_while_delivering(world):
    """SIGTERM with a slow delivery in flight: daprd waits for it (bounded
    by --dapr-graceful-shutdown-seconds) and exits cleanly."""
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    a.rules([{"delay_ms": 700}])
    d = world.daprd("app1", a)
    publish_many(d, 3)
    a.wait_deliveries(1)
    rc = d.stop()
    assert rc == 0, d.logs()
