"""Bulk subscribe (reference §3.6): batches delivered in Dapr's bulk format
and per-entry statuses, from /dapr/subscribe and from Subscription
manifests.
"""

import base64
import json
import re

from conftest import memory_pubsub, settle, sub, wait_for
from test_subscribe import subscription

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def bulk_sub(topic, route, count=5, await_ms=300, **extra):
    return sub(topic, route, bulkSubscribe={"enabled": True, "maxMessagesCount": count,
                                            "maxAwaitDurationMs": await_ms}, **extra)


def entries_of(deliveries):
    """Every entry of every bulk delivery, in order."""
    out = []
    for x in deliveries:
        out.extend(x.json()["entries"])
    return out


def publish_many(d, n, topic="orders", start=0):
    for i in range(start, start + n):
        r = d.publish(topic, json_body={"i": i})
        assert r.status == 204, r


def test_bulk_format_and_batches(world):
    a = world.app("app1", subscribe=[bulk_sub("orders", "/bulk", count=5, await_ms=400)])
    a.rules([{"bulk": {"*": "SUCCESS"}}])
    d = world.daprd("app1", a)
    publish_many(d, 12)
    a.wait_deliveries(3, "/bulk")
    settle(lambda: len(entries_of(a.deliveries("/bulk"))) == 12, 0.5)
    batches = a.deliveries("/bulk")
    assert all(len(x.json()["entries"]) <= 5 for x in batches)
    assert len(batches) >= 3
    first = batches[0]
    assert first.header("Content-Type").startswith("application/json")
    assert first.header("pubsubName") == "pubsub"
    env = first.json()
    assert UUID_RE.match(env["id"])
    assert env["type"] == "com.dapr.event.sent.bulk"
    assert env["topic"] == "orders" and env["pubsubname"] == "pubsub"
    assert env["metadata"] == {"pubsubName": "pubsub"}
    e = env["entries"][0]
    assert UUID_RE.match(e["entryId"])
    assert e["contentType"] == "application/cloudevents+json"
    assert isinstance(e["metadata"], dict)
    ev = e["event"]
    assert ev["specversion"] == "1.0" and ev["source"] == "app1" and ev["topic"] == "orders"
    # Every message exactly once (all SUCCESS), in publish order.
    assert [x["event"]["data"]["i"] for x in entries_of(batches)] == list(range(12))
    # Entry ids are unique.
    ids = [x["entryId"] for x in entries_of(batches)]
    assert len(set(ids)) == len(ids)


def test_bulk_await_sends_partial_batch(world):
    a = world.app("app1", subscribe=[bulk_sub("orders", "/bulk", count=100, await_ms=200)])
    a.rules([{"bulk": {"*": "SUCCESS"}}])
    d = world.daprd("app1", a)
    publish_many(d, 2)
    got = a.wait_deliveries(1, "/bulk", timeout=5)
    settle(lambda: len(entries_of(a.deliveries("/bulk"))) == 2, 0.4)
    assert len(got[0].json()["entries"]) in (1, 2)


def test_bulk_per_entry_statuses(world):
    a = world.app("app1", subscribe=[bulk_sub("orders", "/bulk", count=6, await_ms=200,
                                              deadLetterTopic="dl"), sub("dl", "/dl")])
    # i=1 RETRY once then SUCCESS; i=2 DROP (dead letter); i=3 left out of
    # the answer once (retried); i=4 an unknown status once; others SUCCESS.
    a.rules([{"path": "/bulk", "times": 1,
              "bulk": {'"i": 1': "RETRY", '"i": 2': "DROP", '"i": 3': None, '"i": 4': "success", "*": "SUCCESS"}},
             {"path": "/bulk", "bulk": {'"i": 2': "DROP", "*": "SUCCESS"}}])
    d = world.daprd("app1", a)
    publish_many(d, 6)
    a.wait_deliveries(1, "/dl")
    def seen():
        return sorted(x["event"]["data"]["i"] for x in entries_of(a.deliveries("/bulk")))
    want = [0, 1, 1, 2, 3, 3, 4, 4, 5]
    wait_for(lambda: seen() == want, 10, lambda: "entries seen: %r" % seen())
    settle(lambda: seen() == want, 0.6)
    dl = a.deliveries("/dl")
    assert len(dl) == 1 and dl[0].json()["data"] == {"i": 2}


def test_bulk_whole_batch_answers(world):
    a = world.app("app1", subscribe=[bulk_sub("s404", "/b404", count=3, await_ms=100),
                                     bulk_sub("s500", "/b500", count=3, await_ms=100),
                                     bulk_sub("sbad", "/bbad", count=3, await_ms=100)])
    a.rules([{"path": "/b404", "status": 404},
             {"path": "/b500", "status": 500, "times": 1},
             {"path": "/b500", "bulk": {"*": "SUCCESS"}},
             {"path": "/bbad", "body": "not json", "times": 1},
             {"path": "/bbad", "json": {"statuses": "nope"}, "times": 1},
             {"path": "/bbad", "bulk": {"*": "SUCCESS"}}])
    d = world.daprd("app1", a)
    publish_many(d, 3, topic="s404")
    publish_many(d, 3, topic="s500")
    publish_many(d, 3, topic="sbad")
    # 404: every entry dropped, never redelivered.
    a.wait_deliveries(1, "/b404")
    # 500: every entry retried once.
    wait_for(lambda: len(entries_of(a.deliveries("/b500"))) == 6, 10, "500 batch not retried")
    # 2xx with a body that is not a statuses answer: retried.
    wait_for(lambda: len(entries_of(a.deliveries("/bbad"))) == 9, 10, "bad answers not retried")
    settle(lambda: len(entries_of(a.deliveries("/b404"))) == 3 and len(entries_of(a.deliveries("/b500"))) == 6
           and len(entries_of(a.deliveries("/bbad"))) == 9, 0.8)


def test_bulk_routes_split_batches(world):
    a = world.app("app1", subscribe=[{
        "pubsubname": "pubsub", "topic": "orders",
        "bulkSubscribe": {"enabled": True, "maxMessagesCount": 10, "maxAwaitDurationMs": 200},
        "routes": {"rules": [{"match": "event.data.i % 2 == 0", "path": "/even"}], "default": "/odd"}}])
    a.rules([{"bulk": {"*": "SUCCESS"}}])
    d = world.daprd("app1", a)
    publish_many(d, 10)
    wait_for(lambda: len(entries_of(a.deliveries("/even"))) == 5 and len(entries_of(a.deliveries("/odd"))) == 5,
             10, "entries not split by route")
    assert sorted(x["event"]["data"]["i"] for x in entries_of(a.deliveries("/even"))) == [0, 2, 4, 6, 8]


def test_bulk_raw_payload(world):
    a = world.app("app1", subscribe=[bulk_sub("raw", "/raw", count=2, await_ms=100,
                                              metadata={"rawPayload": "true"})])
    a.rules([{"bulk": {"*": "SUCCESS"}}])
    d = world.daprd("app1", a)
    assert d.publish("raw", body=b"\x00\x01", content_type="application/octet-stream",
                     metadata={"rawPayload": "true"}).status == 204
    assert d.publish("raw", json_body={"x": 1}).status == 204
    wait_for(lambda: len(entries_of(a.deliveries("/raw"))) == 2, 5, "raw entries")
    es = entries_of(a.deliveries("/raw"))
    assert base64.b64decode(es[0]["event"]) == b"\x00\x01"
    assert es[0]["contentType"] == "application/octet-stream"
    inner = json.loads(base64.b64decode(es[1]["event"]))
    assert inner["data"] == {"x": 1}


def test_bulk_declarative(world):
    a = world.app("app1")
    a.rules([{"bulk": {"*": "SUCCESS"}}])
    d = world.daprd("app1", a, docs=[memory_pubsub(), subscription(
        "b", "orders", default="/bulk", bulk={"enabled": True, "maxMessagesCount": 4, "maxAwaitDurationMs": 300})])
    publish_many(d, 8)
    wait_for(lambda: len(entries_of(a.deliveries("/bulk"))) == 8, 10, "bulk entries")
    assert all(len(x.json()["entries"]) <= 4 for x in a.deliveries("/bulk"))
    assert len(a.deliveries("/bulk")) >= 2


def test_bulk_dead_letter_after_retries(world):
    a = world.app("app1", subscribe=[bulk_sub("orders", "/bulk", count=2, await_ms=100, deadLetterTopic="dl"),
                                     sub("dl", "/dl")])
    a.rules([{"path": "/bulk", "bulk": {'"i": 0': "RETRY", "*": "SUCCESS"}}])
    d = world.daprd("app1", a)
    publish_many(d, 2)
    dl = a.wait_deliveries(1, "/dl", timeout=10)
    assert dl[0].json()["data"] == {"i": 0}
    ent = [x["event"]["data"]["i"] for x in entries_of(a.deliveries("/bulk"))]
    assert ent.count(0) == 4 and ent.count(1) == 1, ent


def test_bulk_with_max_concurrency_1_keeps_order(world):
    a = world.app("app1", subscribe=[bulk_sub("orders", "/bulk", count=4, await_ms=100)])
    a.rules([{"bulk": {"*": "SUCCESS"}, "delay_ms": 20}])
    d = world.daprd("app1", a, args=["--app-max-concurrency", "1"])
    publish_many(d, 20)
    wait_for(lambda: len(entries_of(a.deliveries("/bulk"))) == 20, 10, "bulk entries")
    assert [x["event"]["data"]["i"] for x in entries_of(a.deliveries("/bulk"))] == list(range(20))
    assert a.stats()["max_concurrent"] == 1
