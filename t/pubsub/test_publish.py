"""Publishing (reference §3.1, §3.2): the CloudEvent envelope daprd builds,
pass-through CloudEvents, raw payloads, TTL, bulk publish and the errors.

Every test publishes through the sidecar of a subscriber app and looks at
what the app received: pubsub.in-memory is process-local, so publisher and
subscriber share one daprd.
"""

import base64
import datetime
import json
import re
import time

import pytest

from conftest import assert_error, memory_pubsub, settle, sub

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
# RFC 3339 with seconds and an offset (Z or +hh:mm).
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture
def d(world):
    """app1 subscribed to topic "orders" (route /orders) and "raw"."""
    return world.pair("app1", subscribe=[sub("orders", "/orders"), sub("other", "other")])


def one(d, path="/orders"):
    ds = d.app.wait_deliveries(1, path)
    return ds[0]


def test_json_envelope(d):
    r = d.publish("orders", json_body={"orderId": 7, "big": 12345678901234567890, "f": 1.5})
    assert r.status == 204, r
    assert r.body == b""
    got = one(d)
    assert got.header("Content-Type") == "application/cloudevents+json"
    assert got.header("pubsubName") == "pubsub"
    ce = got.json()
    assert UUID_RE.match(ce["id"]), ce
    assert ce["source"] == "app1"
    assert ce["type"] == "com.dapr.event.sent"
    assert ce["specversion"] == "1.0"
    assert ce["datacontenttype"] == "application/json"
    # Numbers are preserved exactly (the body is parsed, not re-typed).
    assert b'"big":12345678901234567890' in got.body.replace(b" ", b"")
    assert ce["data"] == {"orderId": 7, "big": 12345678901234567890, "f": 1.5}
    assert "data_base64" not in ce
    assert ce["topic"] == "orders"
    assert ce["pubsubname"] == "pubsub"
    assert TIME_RE.match(ce["time"]), ce["time"]
    # Both trace keys and tracestate are always present.
    for k in ("traceid", "traceparent", "tracestate"):
        assert k in ce, ce
    assert ce["traceid"] == ce["traceparent"]
    assert "subject" not in ce and "expiration" not in ce


def test_json_parameters_and_invalid_json(d):
    r = d.publish("orders", body=b'{"a": 1}', content_type="application/json; charset=utf-8")
    assert r.status == 204, r
    r = d.publish("orders", body=b'{not json', content_type="application/json")
    assert r.status == 204, r
    ds = d.app.wait_deliveries(2, "/orders")
    events = sorted((x.json() for x in ds), key=lambda e: isinstance(e["data"], str))
    assert events[0]["data"] == {"a": 1}
    assert events[0]["datacontenttype"] == "application/json; charset=utf-8"
    # Not parseable: kept as a string.
    assert events[1]["data"] == "{not json"


def test_text_and_default_content_type(d):
    assert d.publish("orders", body="hello world", content_type="text/plain").status == 204
    ce = one(d).json()
    assert ce["datacontenttype"] == "text/plain"
    assert ce["data"] == "hello world"
    d.app.reset()
    # No Content-Type at all: text/plain (http.client sends none for bytes).
    assert d.publish("orders", body=b"no type").status == 204
    ce = one(d).json()
    assert ce["datacontenttype"] == "text/plain"
    assert ce["data"] == "no type"
    d.app.reset()
    assert d.publish("orders", body="<a>x</a>", content_type="application/xml").status == 204
    ce = one(d).json()
    assert ce["datacontenttype"] == "application/xml" and ce["data"] == "<a>x</a>"


def test_binary_is_base64(d):
    payload = bytes(range(256))
    assert d.publish("orders", body=payload, content_type="application/octet-stream").status == 204
    ce = one(d).json()
    assert ce["datacontenttype"] == "application/octet-stream"
    assert "data" not in ce
    assert base64.b64decode(ce["data_base64"]) == payload


def test_trace_context_is_carried(d):
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = d.publish("orders", json_body={"x": 1}, headers={"traceparent": tp, "tracestate": "k=v"})
    assert r.status == 204, r
    got = one(d)
    ce = got.json()
    assert TRACEPARENT_RE.match(ce["traceparent"]), ce
    # Same trace, a new span of the publish hop.
    assert ce["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert ce["traceid"] == ce["traceparent"]
    assert ce["tracestate"] == "k=v"
    # The delivery carries the trace on to the app.
    assert got.header("traceparent").split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


def test_cloudevent_overrides_by_metadata(d):
    r = d.publish("orders", json_body={"x": 1}, metadata={
        "cloudevent.id": "my-id", "cloudevent.source": "my-source", "cloudevent.type": "my.type",
        "cloudevent.subject": "subj"})
    assert r.status == 204, r
    ce = one(d).json()
    assert (ce["id"], ce["source"], ce["type"], ce["subject"]) == ("my-id", "my-source", "my.type", "subj")


def test_cloudevent_passthrough(d):
    event = {"specversion": "1.0", "id": "ev-1", "source": "elsewhere", "type": "custom.type",
             "datacontenttype": "application/json", "data": {"k": "v"},
             "topic": "wrong", "pubsubname": "wrong", "extension1": "kept"}
    r = d.publish("orders", body=json.dumps(event), content_type="application/cloudevents+json")
    assert r.status == 204, r
    ce = one(d).json()
    # Kept as given...
    assert ce["id"] == "ev-1" and ce["source"] == "elsewhere" and ce["type"] == "custom.type"
    assert ce["data"] == {"k": "v"} and ce["extension1"] == "kept"
    # ...except what daprd overwrites or adds.
    assert ce["topic"] == "orders" and ce["pubsubname"] == "pubsub"
    assert TIME_RE.match(ce["time"])
    assert "traceid" in ce and "traceparent" in ce and "tracestate" in ce


def test_cloudevent_passthrough_minimal(d):
    # Only data: defaults filled in, no id and no datacontenttype added.
    r = d.publish("orders", body='{"data": 5}', content_type="application/cloudevents+json")
    assert r.status == 204, r
    ce = one(d).json()
    assert ce["source"] == "Dapr" and ce["type"] == "com.dapr.event.sent" and ce["specversion"] == "1.0"
    assert "id" not in ce and "datacontenttype" not in ce
    assert ce["data"] == 5


def test_cloudevent_passthrough_keeps_traceid(d):
    r = d.publish("orders", body='{"id":"1","traceid":"given","tracestate":"ts"}',
                  content_type="application/cloudevents+json")
    assert r.status == 204, r
    ce = one(d).json()
    assert ce["traceid"] == "given" and ce["tracestate"] == "ts"


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b"\"str\"", b""])
def test_cloudevent_passthrough_invalid(d, body):
    r = d.publish("orders", body=body, content_type="application/cloudevents+json")
    assert_error(r, 500, "ERR_PUBSUB_CLOUD_EVENTS_SER")
    settle(lambda: d.app.deliveries() == [], 0.3)


def test_raw_payload_publish_and_raw_subscription(world):
    d = world.pair("app1", subscribe=[sub("raw", "/raw", metadata={"rawPayload": "true"}),
                                      sub("orders", "/orders")])
    # Raw publish to a raw subscription: the bytes come back wrapped in a
    # new envelope with data_base64.
    r = d.publish("raw", body=b"\x00\x01raw bytes", content_type="application/octet-stream",
                  metadata={"rawPayload": "true"})
    assert r.status == 204, r
    got = d.app.wait_deliveries(1, "/raw")[0]
    assert got.header("Content-Type") == "application/cloudevents+json"
    ce = got.json()
    assert base64.b64decode(ce["data_base64"]) == b"\x00\x01raw bytes"
    assert ce["datacontenttype"] == "application/octet-stream"
    assert ce["source"] == "Dapr" and ce["type"] == "com.dapr.event.sent" and ce["specversion"] == "1.0"
    assert ce["topic"] == "raw" and ce["pubsubname"] == "pubsub"
    assert UUID_RE.match(ce["id"])
    # A normal publish to a raw subscription: the envelope is the payload.
    assert d.publish("raw", json_body={"a": 1}).status == 204
    got = d.app.wait_deliveries(2, "/raw")[1]
    inner = json.loads(base64.b64decode(got.json()["data_base64"]))
    assert inner["data"] == {"a": 1} and inner["source"] == "app1"
    # A raw JSON publish to a normal subscription: the body is delivered as
    # it is (it parses as JSON, so it is taken as the CloudEvent).
    assert d.publish("orders", json_body={"plain": True}, metadata={"rawPayload": "true"}).status == 204
    got = d.app.wait_deliveries(1, "/orders")[0]
    assert got.json() == {"plain": True}


def test_raw_payload_bad_value(d):
    r = d.publish("orders", json_body={}, metadata={"rawPayload": "maybe"})
    assert_error(r, 400, "ERR_PUBSUB_REQUEST_METADATA")


def test_raw_non_json_to_normal_subscription_is_not_delivered(world):
    d = world.pair("app1", subscribe=[sub("orders", "/orders", deadLetterTopic="dlq"),
                                      sub("dlq", "/dlq", metadata={"rawPayload": "true"})])
    r = d.publish("orders", body=b"plain text", content_type="text/plain",
                  metadata={"rawPayload": "true"})
    assert r.status == 204, r
    # Not a CloudEvent: never reaches /orders; dead-lettered as it is.
    got = d.app.wait_deliveries(1, "/dlq")
    assert d.app.deliveries("/orders") == []
    assert base64.b64decode(got[0].json()["data_base64"]) == b"plain text"


def test_ttl_sets_expiration(d):
    assert d.publish("orders", json_body={"x": 1}, metadata={"ttlInSeconds": "60"}).status == 204
    ce = one(d).json()
    exp = datetime.datetime.strptime(ce["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    left = (exp - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 50 < left <= 61, ce["expiration"]


def test_ttl_bad_value(d):
    r = d.publish("orders", json_body={}, metadata={"ttlInSeconds": "soon"})
    assert_error(r, 400, "ERR_PUBSUB_REQUEST_METADATA")


def test_expired_message_not_delivered(world):
    # The dead-letter subscription is raw: a CloudEvent subscription would
    # drop the expired events again (as Dapr does).
    d = world.pair("app1", subscribe=[sub("orders", "/orders", deadLetterTopic="dlq"),
                                      sub("dlq", "/dlq", metadata={"rawPayload": "true"})])
    # Already expired CloudEvents (an offset other than Z too).
    for i, exp in enumerate(["2001-01-01T00:00:00Z", "2001-01-01T00:00:00+02:00"]):
        ev = {"id": "old%d" % i, "specversion": "1.0", "expiration": exp, "data": 1}
        assert d.publish("orders", body=json.dumps(ev), content_type="application/cloudevents+json").status == 204
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%S+00:00")
    ev = {"id": "fresh", "specversion": "1.0", "expiration": future, "data": 2}
    assert d.publish("orders", body=json.dumps(ev), content_type="application/cloudevents+json").status == 204
    got = d.app.wait_deliveries(1, "/orders")
    assert [x.json()["id"] for x in got] == ["fresh"]
    # Expired ones go to the dead-letter topic.
    dl = d.app.wait_deliveries(2, "/dlq")
    assert sorted(json.loads(base64.b64decode(x.json()["data_base64"]))["id"] for x in dl) == ["old0", "old1"]
    settle(lambda: len(d.app.deliveries("/orders")) == 1, 0.3)


def test_ttl_expires_while_app_unhealthy(world):
    """ttlInSeconds=1 with the app unhealthy for longer: dropped when
    delivery resumes."""
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    d = world.daprd("app1", a, args=["--enable-app-health-check", "--app-health-probe-interval", "100ms",
                                     "--app-health-threshold", "1"])
    a.set_health(False)
    d.wait_log("application is unhealthy")
    assert d.publish("orders", json_body={"n": "short"}, metadata={"ttlInSeconds": "1"}).status == 204
    assert d.publish("orders", json_body={"n": "long"}, metadata={"ttlInSeconds": "600"}).status == 204
    time.sleep(2.2)
    a.set_health(True)
    got = a.wait_deliveries(1, "/orders")
    settle(lambda: len(a.deliveries("/orders")) == 1, 0.5)
    assert got[0].json()["data"] == {"n": "long"}


def test_put_publishes_too(d):
    assert d.publish("orders", json_body={"m": "put"}, method="PUT").status == 204
    assert one(d).json()["data"] == {"m": "put"}


def test_topic_with_slashes(world):
    d = world.pair("app1", subscribe=[sub("a/b/c", "/abc")])
    assert d.publish("a/b/c", json_body=1).status == 204
    assert d.publish("a%2Fb%2Fc", json_body=2).status == 204
    got = d.app.wait_deliveries(2, "/abc")
    assert sorted(x.json()["data"] for x in got) == [1, 2]
    assert got[0].json()["topic"] == "a/b/c"


# ---- errors ----------------------------------------------------------------------

def test_unknown_pubsub(d):
    body = assert_error(d.publish("orders", pubsub="nope", json_body={}), 404, "ERR_PUBSUB_NOT_FOUND",
                        "pubsub nope is not found")
    reasons = [x.get("reason") for x in body.get("details", [])]
    assert "DAPR_PUBSUB_NOT_FOUND" in reasons


def test_no_pubsub_configured(world):
    a = world.app("app1")
    d = world.daprd("app1", a, docs=[])
    assert_error(d.publish("orders", json_body={}), 404, "ERR_PUBSUB_NOT_FOUND")
    # And the app is not asked for subscriptions at all.
    assert a.stats()["subscribe_calls"] == 0


def test_missing_topic(d):
    # /v1.0/publish/pubsub has no topic: no publish route matches, the
    # fallback (service invocation without an app id) answers.
    r = d.client.post("/v1.0/publish/pubsub", json={})
    assert r.status == 404, r
    assert r.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    r = d.client.post("/v1.0/publish/pubsub/", json={})
    assert r.status == 404 and r.json()["errorCode"] == "ERR_DIRECT_INVOKE", r


def test_scopes_forbid(world):
    ps = memory_pubsub(publishingScopes="app1=allowed;other=x", subscriptionScopes="app1=allowed",
                       allowedTopics="allowed,secret,free")
    d = world.pair("app1", subscribe=[sub("secret", "/secret"), sub("allowed", "/allowed")], docs=[ps])
    body = assert_error(d.publish("secret", json_body={}), 403, "ERR_PUBSUB_FORBIDDEN",
                        "topic secret is not allowed for app id app1")
    assert any(x.get("reason") == "DAPR_PUBSUB_FORBIDDEN" for x in body["details"])
    # Not in allowedTopics at all.
    assert_error(d.publish("elsewhere", json_body={}), 403, "ERR_PUBSUB_FORBIDDEN")
    assert d.publish("allowed", json_body={"ok": 1}).status == 204
    d.app.wait_deliveries(1, "/allowed")
    # Bulk publish is checked the same way.
    assert_error(d.bulk_publish("secret", [{"entryId": "1", "event": {}, "contentType": "application/json"}]),
                 403, "ERR_PUBSUB_FORBIDDEN")
    # subscriptionScopes: app1 may not subscribe to "secret" (no
    # subscription started), so it is not in the metadata as subscribed.
    d.wait_log("may not subscribe to topic secret")


def test_protected_topics(world):
    ps = memory_pubsub(protectedTopics="prot", publishingScopes="other=prot")
    d = world.pair("app1", subscribe=[sub("open", "/open")], docs=[ps])
    assert_error(d.publish("prot", json_body={}), 403, "ERR_PUBSUB_FORBIDDEN")
    assert d.publish("open", json_body={}).status == 204


def test_bad_topic_names_do_not_crash(d):
    for topic in ["%FF%FE", "a%00b", "x" * 3000, "%E2%82", "sp%20ace", "%"]:
        r = d.publish(topic, json_body={"t": 1})
        assert r.status in (204, 400, 404, 500), (topic, r)
    # Still alive and publishing.
    assert d.publish("orders", json_body={"still": "alive"}).status == 204
    one(d)


def test_huge_and_odd_bodies_do_not_crash(d):
    big = b"x" * (4 * 1024 * 1024 + 10)
    try:
        r = d.publish("orders", body=big, content_type="text/plain")
        assert r.status in (400, 413, 500), r
    except ConnectionError:
        pass   # refused before the whole body was sent: fine too
    for body, ct in [(b"\xff\xfe\x00", "application/json"), (b"\xff\xfe", "text/plain"),
                     (b"{" * 100000, "application/json"), (b'{"a":' * 50000, "application/cloudevents+json"),
                     (b"\x00" * 10, "application/cloudevents+json")]:
        r = d.publish("orders", body=body, content_type=ct)
        assert r.status in (204, 400, 500), (body[:10], r)
    assert d.publish("orders", json_body={"still": "alive"}).status == 204
    wait = d.app.wait_deliveries(1, "/orders")
    assert wait


def test_non_utf8_text_is_kept(d):
    # A text body that is not UTF-8 cannot be a JSON string: kept as bytes.
    assert d.publish("orders", body=b"\xff\xfe", content_type="text/plain").status == 204
    ce = one(d).json()
    assert base64.b64decode(ce["data_base64"]) == b"\xff\xfe"


# ---- bulk publish ------------------------------------------------------------------

def test_bulk_publish(d):
    entries = [
        {"entryId": "1", "event": {"orderId": 1}, "contentType": "application/json"},
        {"entryId": "2", "event": "plain text", "contentType": "text/plain"},
        {"entryId": "3", "event": base64.b64encode(b"\x00\x01\x02").decode(),
         "contentType": "application/octet-stream"},
        {"entryId": "4", "event": {"specversion": "1.0", "id": "given", "data": 4},
         "contentType": "application/cloudevents+json", "metadata": {"ttlInSeconds": "60"}},
    ]
    r = d.bulk_publish("orders", entries)
    assert r.status == 204, r
    got = sorted((x.json() for x in d.app.wait_deliveries(4, "/orders")), key=lambda e: e.get("datacontenttype", "~"))
    by_ct = {e.get("datacontenttype"): e for e in got}
    assert by_ct["application/json"]["data"] == {"orderId": 1}
    assert by_ct["text/plain"]["data"] == "plain text"
    assert base64.b64decode(by_ct["application/octet-stream"]["data_base64"]) == b"\x00\x01\x02"
    ce = [e for e in got if e.get("id") == "given"][0]
    assert ce["data"] == 4 and ce["topic"] == "orders" and "expiration" in ce
    # Each entry gets its own id and span.
    ids = [e.get("id") for e in got]
    assert len(set(ids)) == 4
    # Also served under /v1.0.
    r = d.bulk_publish("orders", [{"entryId": "x", "event": 1, "contentType": "application/json"}],
                       version="v1.0")
    assert r.status == 204, r


@pytest.mark.parametrize("entries", [
    b"{not json", b'{"entryId": "1"}', b"[1]",
    [{"event": {}, "contentType": "application/json"}],
    [{"entryId": "1", "event": {}, "contentType": "application/json"},
     {"entryId": "1", "event": {}, "contentType": "application/json"}],
    [{"entryId": "1", "contentType": "application/json"}],
    [{"entryId": "1", "event": {"a": 1}, "contentType": "text/plain"}],
    [{"entryId": "1", "event": "!!!notbase64", "contentType": "application/octet-stream"}],
    [{"entryId": "1", "event": "x", "contentType": "image/png"}],
])
def test_bulk_publish_bad_requests(d, entries):
    r = d.bulk_publish("orders", entries)
    assert_error(r, 400, "ERR_PUBSUB_EVENTS_SER")
    settle(lambda: d.app.deliveries() == [], 0.2)


def test_bulk_publish_unknown_pubsub(d):
    assert_error(d.bulk_publish("orders", [], pubsub="nope"), 404, "ERR_PUBSUB_NOT_FOUND")


def test_bulk_publish_partial_failure(world):
    """A broker that refuses some entries: 500 with the failed entries."""
    # maxQueueLength 2 and a subscriber that never answers quickly: the
    # third and later entries find the queue full.
    a = world.app("app1", subscribe=[sub("orders", "/orders")])
    a.rules([{"delay_ms": 3000}])
    d = world.daprd("app1", a, docs=[memory_pubsub(maxQueueLength=2)])
    entries = [{"entryId": str(i), "event": {"i": i}, "contentType": "application/json"} for i in range(6)]
    r = d.bulk_publish("orders", entries)
    assert r.status == 500, r
    body = r.json()
    assert body["errorCode"] == "ERR_PUBSUB_PUBLISH_MESSAGE"
    failed = sorted(x["entryId"] for x in body["failedEntries"])
    assert 1 <= len(failed) <= 4 and all("error" in x for x in body["failedEntries"])
    assert json.loads(r.headers["metadata.responseData"]) == body
    assert r.headers.get("metadata.error")


def test_bulk_publish_field_names_ignore_case(d):
    # Go's decoder matches field names ignoring case; the JS SDK sends
    # "entryID".
    r = d.bulk_publish("orders", [{"entryID": "a", "EVENT": {"k": 1}, "ContentType": "application/json"},
                                  {"entryid": "b", "event": "t", "contentType": "text/plain",
                                   "Metadata": {"cloudevent.id": "given-b"}}])
    assert r.status == 204, r
    got = {x.json()["id"]: x.json()["data"] for x in d.app.wait_deliveries(2, "/orders")}
    assert got.get("given-b") == "t" and {"k": 1} in got.values()


def test_bulk_publish_many_entries_stays_responsive(d):
    # Duplicate detection is a hash lookup: a large request is not
    # quadratic on the event loop.
    entries = [{"entryId": str(i), "event": i, "contentType": "application/json"} for i in range(20000)]
    entries.append({"entryId": "5", "event": 0, "contentType": "application/json"})
    t0 = time.monotonic()
    assert_error(d.bulk_publish("orders", entries), 400, "ERR_PUBSUB_EVENTS_SER", "unique")
    assert time.monotonic() - t0 < 5
