"""Subscriptions (reference §3.3, §3.4): the app's /dapr/subscribe (v1
route, v2 routes with CEL rules and a default), declarative Subscription
manifests (v1alpha1, v2alpha1) with scopes, the metadata API's view of
them, and bad input in all of these.
"""

import base64
import json

import pytest

from conftest import DaprdExited, memory_pubsub, settle, sub


def subscription(name, topic, route=None, rules=None, default=None, api="v2alpha1", scopes=None,
                 dead_letter=None, metadata=None, bulk=None, pubsub="pubsub"):
    """A Subscription manifest (YAML text)."""
    lines = ["apiVersion: dapr.io/%s" % api, "kind: Subscription", "metadata:", "  name: %s" % name,
             "spec:", "  pubsubname: %s" % pubsub, "  topic: %s" % topic]
    if route:
        lines.append("  route: %s" % route)
    if rules is not None or default:
        lines.append("  routes:")
        if rules:
            lines.append("    rules:")
            for match, path in rules:
                lines.append("      - match: %s" % json.dumps(match))
                lines.append("        path: %s" % path)
        if default:
            lines.append("    default: %s" % default)
    if dead_letter:
        lines.append("  deadLetterTopic: %s" % dead_letter)
    if metadata:
        lines.append("  metadata:")
        for k, v in metadata.items():
            lines.append("    %s: %s" % (k, json.dumps(v)))
    if bulk:
        lines.append("  bulkSubscribe:")
        for k, v in bulk.items():
            lines.append("    %s: %s" % (k, json.dumps(v)))
    if scopes is not None:
        lines.append("scopes:")
        for s in scopes:
            lines.append("- %s" % s)
    return "\n".join(lines) + "\n"


def test_programmatic_v1_route(world):
    d = world.pair("app1", subscribe=[sub("orders", "orders-no-slash"), sub("t2", "/t2")])
    st = d.app.stats()
    assert st["subscribe_calls"] == 1
    hdrs = {k.lower(): v for k, v in st["subscribe_headers"]}
    assert hdrs.get("dapr-app-id") == "app1"
    assert hdrs.get("content-type", "").startswith("application/json")
    assert d.publish("orders", json_body={"a": 1}).status == 204
    # A route without a leading slash is called with one.
    got = d.app.wait_deliveries(1, "/orders-no-slash")
    assert got[0].json()["data"] == {"a": 1}


RULES = [
    ('event.type == "widget"', "/widgets"),
    ("has(event.data.vip)", "/vip"),
    ("event.data.amount > 100 && event.data.kind == 'big'", "/big"),
    ('event.data.name.startsWith("ab")', "/ab"),
    ('event.data.name.endsWith("yz") || event.data.name.contains("mid")', "/str"),
    ("!event.data.flag", "/notflag"),
]

CASES = [  # (cloudevent.type override, data, expected path)
    ("widget", {"amount": 1, "kind": "x", "name": "q", "flag": True}, "/widgets"),
    (None, {"amount": 1, "kind": "x", "name": "q", "flag": True, "vip": None}, "/vip"),
    (None, {"amount": 500, "kind": "big", "name": "abc", "flag": True}, "/big"),
    (None, {"amount": 500, "kind": "small", "name": "abc", "flag": True}, "/ab"),
    (None, {"amount": 5, "kind": "small", "name": "xyz", "flag": True}, "/str"),
    (None, {"amount": 5, "kind": "small", "name": "amidb", "flag": True}, "/str"),
    (None, {"amount": 5, "kind": "small", "name": "q", "flag": False}, "/notflag"),
    (None, {"amount": 100, "kind": "big", "name": "q", "flag": True}, "/default"),
]


def check_routing(d):
    for i, (typ, data, _) in enumerate(CASES):
        data = dict(data, i=i)
        md = {"cloudevent.type": typ} if typ else None
        assert d.publish("orders", json_body=data, metadata=md).status == 204
    d.app.wait_deliveries(len(CASES))
    settle(lambda: len(d.app.deliveries()) == len(CASES), 0.3)
    got = {x.json()["data"]["i"]: x.path for x in d.app.deliveries()}
    assert got == {i: c[2] for i, c in enumerate(CASES)}


def test_programmatic_v2_rules(world):
    d = world.pair("app1", subscribe=[{
        "pubsubname": "pubsub", "topic": "orders",
        "routes": {"rules": [{"match": m, "path": p} for m, p in RULES], "default": "/default"}}])
    check_routing(d)
    md = d.metadata()["subscriptions"]
    assert md == [{"pubsubname": "pubsub", "topic": "orders", "deadLetterTopic": "", "type": "PROGRAMMATIC",
                   "rules": [{"match": m, "path": p} for m, p in RULES] + [{"path": "/default"}]}]


def test_declarative_v2alpha1_rules(world):
    a = world.app("app1")
    d = world.daprd("app1", a, docs=[memory_pubsub(),
                                     subscription("s1", "orders", rules=RULES, default="/default")])
    check_routing(d)
    assert a.stats()["subscribe_calls"] == 1
    assert d.metadata()["subscriptions"][0]["type"] == "DECLARATIVE"


def test_v2_route_used_when_no_default(world):
    # "route" (v1) is the fallback when routes.default is empty.
    d = world.pair("app1", subscribe=[{"pubsubname": "pubsub", "topic": "orders", "route": "/v1",
                                       "routes": {"rules": [{"match": "event.data == 1", "path": "/one"}]}}])
    assert d.publish("orders", json_body=1).status == 204
    assert d.publish("orders", json_body=2).status == 204
    d.app.wait_deliveries(2)
    assert sorted((x.path, x.json()["data"]) for x in d.app.deliveries()) == [("/one", 1), ("/v1", 2)]


def test_no_rule_matches_and_no_default_drops(world):
    d = world.pair("app1", subscribe=[
        {"pubsubname": "pubsub", "topic": "orders", "deadLetterTopic": "dlq",
         "routes": {"rules": [{"match": "event.data.n == 1", "path": "/one"}]}},
        sub("dlq", "/dlq", metadata={"rawPayload": "true"})])
    assert d.publish("orders", json_body={"n": 2}).status == 204
    assert d.publish("orders", json_body={"n": 1}).status == 204
    d.app.wait_deliveries(1, "/one")
    # The unmatched one is dropped (dead-lettered here), never retried.
    dl = d.app.wait_deliveries(1, "/dlq")
    inner = json.loads(base64.b64decode(dl[0].json()["data_base64"]))
    assert inner["data"] == {"n": 2}
    settle(lambda: len(d.app.deliveries("/one")) == 1 and len(d.app.deliveries("/dlq")) == 1, 0.5)


def test_rule_that_cannot_be_evaluated_fails_the_delivery(world):
    # As Dapr: a missing key is an evaluation error, which fails the
    # delivery (dead letter when set); has() is the way to test for keys.
    d = world.pair("app1", subscribe=[
        {"pubsubname": "pubsub", "topic": "orders", "deadLetterTopic": "dlq",
         "routes": {"rules": [{"match": "event.data.missing == 1", "path": "/m"}], "default": "/def"}},
        sub("dlq", "/dlq", metadata={"rawPayload": "true"})])
    assert d.publish("orders", json_body={"missing": 1}).status == 204
    assert d.publish("orders", json_body={"other": 1}).status == 204
    d.app.wait_deliveries(1, "/m")
    dl = d.app.wait_deliveries(1, "/dlq")
    assert json.loads(base64.b64decode(dl[0].json()["data_base64"]))["data"] == {"other": 1}
    assert d.app.deliveries("/def") == []
    d.wait_log("could not be evaluated")


@pytest.mark.parametrize("expr", [
    "event.data.items.exists(x, x > 1)",
    "event.data.a ==",
    "now() > 1",
    "request.path == '/x'",
])
def test_unsupported_expression_rejected_at_startup(world, expr):
    a = world.app("app1")
    with pytest.raises(DaprdExited) as e:
        world.daprd("app1", a, docs=[memory_pubsub(),
                                     subscription("bad", "orders", rules=[(expr, "/x")], default="/d")])
    log = str(e.value)
    assert expr in log, log
    assert "rejected" in log


def test_programmatic_bad_rule_is_discarded(world):
    d = world.pair("app1", subscribe=[
        {"pubsubname": "pubsub", "topic": "bad",
         "routes": {"rules": [{"match": "event.data.exists(x, true)", "path": "/x"}], "default": "/d"}},
        sub("good", "/good")])
    d.wait_log("event.data.exists(x, true)")
    topics = [s["topic"] for s in d.metadata()["subscriptions"]]
    assert topics == ["good"]
    assert d.publish("good", json_body=1).status == 204
    d.app.wait_deliveries(1, "/good")


def test_declarative_v1alpha1_and_scopes(world):
    a = world.app("app1")
    docs = [memory_pubsub(),
            subscription("mine", "t1", route="/t1", api="v1alpha1", scopes=["app1", "app9"]),
            subscription("theirs", "t2", route="/t2", api="v1alpha1", scopes=["other"]),
            subscription("all", "t3", route="/t3", api="v1alpha1")]
    d = world.daprd("app1", a, docs=docs)
    for t in ("t1", "t2", "t3"):
        assert d.publish(t, json_body={"t": t}).status == 204
    a.wait_deliveries(2)
    settle(lambda: len(a.deliveries()) == 2, 0.3)
    assert sorted(x.path for x in a.deliveries()) == ["/t1", "/t3"]
    md = d.metadata()["subscriptions"]
    assert sorted(s["topic"] for s in md) == ["t1", "t3"]
    assert all(s["type"] == "DECLARATIVE" for s in md)
    # The other app gets its own and not app1's.
    b = world.app("other")
    d2 = world.daprd("other", b, docs=docs)
    assert d2.publish("t1", json_body=1).status == 204
    assert d2.publish("t2", json_body=2).status == 204
    b.wait_deliveries(1, "/t2")
    settle(lambda: len(b.deliveries()) == 1, 0.3)


def test_programmatic_replaces_declarative(world):
    a = world.app("app1", subscribe=[sub("orders", "/programmatic")])
    d = world.daprd("app1", a, docs=[memory_pubsub(), subscription("decl", "orders", route="/declarative")])
    assert d.publish("orders", json_body=1).status == 204
    a.wait_deliveries(1)
    settle(lambda: [x.path for x in a.deliveries()] == ["/programmatic"], 0.3)
    md = d.metadata()["subscriptions"]
    assert len(md) == 1 and md[0]["type"] == "PROGRAMMATIC"


def test_metadata_api_lists_subscriptions(world):
    a = world.app("app1", subscribe=[
        sub("orders", "/orders", deadLetterTopic="orders-dlq", metadata={"rawPayload": "true"}),
        {"pubsubname": "pubsub", "topic": "inv",
         "routes": {"rules": [{"match": 'event.type == "w"', "path": "/w"}], "default": "/inv"}}])
    d = world.daprd("app1", a, docs=[memory_pubsub(), subscription("decl", "d1", route="/d1", api="v1alpha1")])
    subs = sorted(d.metadata()["subscriptions"], key=lambda s: s["topic"])
    assert subs == [
        {"pubsubname": "pubsub", "topic": "d1", "rules": [{"path": "/d1"}], "deadLetterTopic": "",
         "type": "DECLARATIVE"},
        {"pubsubname": "pubsub", "topic": "inv", "deadLetterTopic": "", "type": "PROGRAMMATIC",
         "rules": [{"match": 'event.type == "w"', "path": "/w"}, {"path": "/inv"}]},
        {"pubsubname": "pubsub", "topic": "orders", "metadata": {"rawPayload": "true"},
         "rules": [{"path": "/orders"}], "deadLetterTopic": "orders-dlq", "type": "PROGRAMMATIC"},
    ]


def test_no_subscriptions_no_key(world):
    d = world.pair("app1", subscribe=[])
    assert "subscriptions" not in d.metadata()


@pytest.mark.parametrize("answer,status", [
    ("{not json", 200), ('{"a": 1}', 200), ("", 200), ("[]", 500), ('[{"topic": "x"}]', 200),
    ('[1, "x", null, {"pubsubname": "pubsub"}, {"pubsubname": "pubsub", "topic": "t"}]', 200),
    ('[{"pubsubname": 5, "topic": ["x"], "route": {}}]', 200),
    ('[{"pubsubname": "pubsub", "topic": "t", "routes": "x", "route": "/t"}]', 200),
    ('[{"pubsubname": "pubsub", "topic": "t", "routes": {"rules": 5}, "route": "/t"}]', 200),
    ('[{"pubsubname": "pubsub", "topic": "t", "routes": {"rules": [5, {"match": 1}]}, "route": "/t"}]', 200),
    ("[]", 404),
])
def test_bad_subscribe_answers_do_not_crash(world, answer, status):
    a = world.app("app1")
    a.subscribe_answer(answer, status=status)
    d = world.daprd("app1", a)
    # daprd is up and serving; whatever could be used was.
    assert d.client.get("/v1.0/healthz").status == 204
    assert d.publish("t", json_body=1).status == 204
    md = d.metadata()
    for s in md.get("subscriptions", []):
        assert s["topic"] == "t"


def test_subscription_to_unknown_pubsub(world):
    d = world.pair("app1", subscribe=[sub("t", "/t", pubsub="nope"), sub("t", "/t")])
    d.wait_log("pubsub nope is not loaded")
    assert d.publish("t", json_body=1).status == 204
    d.app.wait_deliveries(1)


def test_bad_subscription_manifests(world):
    a = world.app("app1")
    for doc in [subscription("x", "t", route="/t", bulk={"enabled": True, "maxMessagesCount": "many"})]:
        with pytest.raises(DaprdExited) as e:
            world.daprd("app1", a, docs=[memory_pubsub(), doc])
        assert "maxMessagesCount" in str(e.value)
