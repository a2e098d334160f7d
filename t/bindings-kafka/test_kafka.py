"""bindings.kafka through real daprd processes and librdkafka's mock Kafka
cluster (a real Kafka protocol peer: produce, fetch, consumer groups,
committed offsets).

Each test has its own topic and consumer group.  Input bindings read with
initialOffset=oldest, so nothing published before the group was joined is
missed and no test waits for a rebalance before publishing.
"""

import json
import os
import signal
import time

import pytest

from conftest import common, kafka_component, start_app, unique

wait_for = common.wait_for
assert_error = common.assert_error
headers_of = common.headers_of


def create(d, name, data, metadata=None):
    body = {"operation": "create", "data": data}
    if metadata is not None:
        body["metadata"] = metadata
    return d.invoke(name, body)


def ok_ids(app, route):
    """ids the app answered 200 for (each once)."""
    return {e["id"] for e in app.events(route) if e["status"] == 200}


def test_create_then_read_back(world, kafka):
    """create publishes to publishTopic with key and headers; the input
    side of the same manifest delivers value, key and headers."""
    topic = unique("orders")
    app = start_app(world)
    d = world.daprd([kafka_component("kb", kafka, topics=topic, publishTopic=topic,
                                     consumerGroup=unique("g"), initialOffset="oldest")], app=app)
    r = create(d, "kb", {"id": 1, "text": "hi"}, {"partitionKey": "cust-7", "myHeader": "v1"})
    assert r.status == 204, r
    assert r.body == b""
    r = create(d, "kb", "plain text")
    assert r.status == 204, r
    evs = wait_for(lambda: len(app.events("kb")) >= 2 and app.events("kb"), 30,
                   lambda: "two events at the app (got %r)" % app.events())
    first = [e for e in evs if e["id"] == 1]
    assert len(first) == 1, evs
    e = first[0]
    assert json.loads(e["body"]) == {"id": 1, "text": "hi"}
    h = headers_of(e)
    assert h["__key"] == "cust-7"
    assert h["myheader"] == "v1"          # request metadata -> Kafka header -> event metadata
    assert h["__topic"] == topic
    assert int(h["__partition"]) >= 0 and int(h["__offset"]) >= 0
    assert h["content-type"] == "application/json"
    # A JSON string arrives as Dapr hands it to components: with its quotes.
    second = [x for x in evs if x["id"] is None]
    assert [x["body"] for x in second] == ['"plain text"'], evs
    assert "__key" not in headers_of(second[0])
    time.sleep(0.5)
    assert len(app.events("kb")) == 2, "delivered twice: %r" % app.events()


def test_unsupported_operation_and_no_publish_topic(world, kafka):
    d = world.daprd([kafka_component("out", kafka, publishTopic=unique("t"), direction="output"),
                     kafka_component("nopub", kafka, direction="output")])
    body = assert_error(d.invoke("out", {"operation": "get", "data": 1}), 500, "ERR_INVOKE_OUTPUT_BINDING",
                        "does not support operation get")
    assert body["message"].endswith("supported operations:create"), body
    body = assert_error(create(d, "nopub", {"id": 1}), 500, "ERR_INVOKE_OUTPUT_BINDING", "publishTopic")
    r = create(d, "out", {"id": 1}, {"partitionNumber": "x"})
    assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "partitionNumber")


@pytest.mark.parametrize("meta,why", [
    ({"initialOffset": "latest"}, "invalid initialOffset 'latest'"),
    ({"publishTopic": "bad topic!"}, "'publishTopic'"),
    ({"topics": "good, bad/topic"}, "invalid topic 'bad/topic' in 'topics'"),
    ({"authType": None}, "'authType'"),
    ({"authType": "password", "saslUsername": "u"}, "'saslPassword'"),
    ({"maxMessageBytes": "lots"}, "maxMessageBytes"),
    ({"brokers": "127.0.0.1:1"}, "cannot connect to brokers 127.0.0.1:1"),
])
def test_bad_metadata_fails_init(world, kafka, meta, why):
    d = world.daprd([kafka_component("bad", kafka, **meta)], start=False)
    d._popen(d.command(0), dict(os.environ, HOME=world.path("home")))
    assert d.proc.wait(timeout=30) != 0
    assert why in d.log_text(), d.logs()


def test_non_2xx_is_redelivered(world, kafka):
    """consumeRetryEnabled=true: ids the app fails come again until it
    takes them; every id arrives and is committed."""
    topic = unique("retry")
    app = start_app(world)
    app.fail([3, 7, 11], 2)
    d = world.daprd([kafka_component("kr", kafka, topics=topic, publishTopic=topic, consumerGroup=unique("g"),
                                     initialOffset="oldest", consumeRetryEnabled="true")], app=app)
    for i in range(1, 21):
        r = create(d, "kr", {"id": i}, {"partitionKey": "k%d" % (i % 3)})
        assert r.status == 204, r
    wait_for(lambda: ok_ids(app, "kr") == set(range(1, 21)), 30,
             lambda: "all 20 ids taken (missing %s)" % sorted(set(range(1, 21)) - ok_ids(app, "kr")))
    tries = {}
    for e in app.events("kr"):
        tries[e["id"]] = tries.get(e["id"], 0) + 1
    assert all(tries[i] == 3 for i in (3, 7, 11)), tries
    assert all(tries[i] == 1 for i in tries if i not in (3, 7, 11)), tries


def test_default_no_retry_is_logged_and_skipped(world, kafka):
    """As Dapr's binding: consumeRetryEnabled defaults to false, so a
    message the app failed is logged and not delivered again, and the
    ones after it still come."""
    topic = unique("noretry")
    app = start_app(world)
    app.fail([2], 1)
    d = world.daprd([kafka_component("kn", kafka, topics=topic, publishTopic=topic, consumerGroup=unique("g"),
                                     initialOffset="oldest")], app=app)
    for i in range(1, 6):
        assert create(d, "kn", {"id": i}, {"partitionKey": "one"}).status == 204
    wait_for(lambda: ok_ids(app, "kn") == {1, 3, 4, 5}, 30, lambda: "ids 1,3,4,5 (got %r)" % app.events())
    time.sleep(1.0)
    assert [e["status"] for e in app.events("kn") if e["id"] == 2] == [500]
    assert "consumeRetryEnabled is false" in d.log_text()


def test_app_unreachable_is_not_skipped(world, kafka):
    """An event the app never got (its port refuses connections) is kept
    and comes again once the app is back, although consumeRetryEnabled
    is false (the default): only a failure the app answered is skipped."""
    topic = unique("gone")
    app = start_app(world)
    d = world.daprd([kafka_component("kg", kafka, topics=topic, publishTopic=topic, consumerGroup=unique("g"),
                                     initialOffset="oldest")], app=app)
    assert create(d, "kg", {"id": 0}).status == 204
    wait_for(lambda: ok_ids(app, "kg") == {0}, 30, "id 0 at the app")
    port = app.port
    app.stop(signal.SIGKILL)
    for i in range(1, 6):
        assert create(d, "kg", {"id": i}, {"partitionKey": "k%d" % i}).status == 204
    wait_for(lambda: "the app could not be reached" in d.log_text(), 20, "deliveries failing while the app is away")
    time.sleep(0.5)
    app2 = start_app(world, port=port, name="app2")
    wait_for(lambda: ok_ids(app2, "kg") == {1, 2, 3, 4, 5}, 30,
             lambda: "ids 1-5 after the app came back (got %r)" % app2.events())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_stop_mid_stream_loses_nothing(world, kafka, sig):
    """daprd killed (SIGKILL) or stopped (SIGTERM) while events are at the
    app and others are not delivered yet; a new daprd in the same consumer
    group gets every id the first did not have answered: offsets are
    committed only after the app's 2xx, and an event the app never
    answered is kept even with consumeRetryEnabled false (the default)."""
    topic = unique("crash")
    group = unique("g")
    n = 60
    app = start_app(world, delay=0.4)
    comp = kafka_component("kc", kafka, topics=topic, publishTopic=topic, consumerGroup=group,
                           initialOffset="oldest")
    a = world.daprd([comp], app=app, name="daprd-a")
    for i in range(1, n + 1):
        assert create(a, "kc", {"id": i}).status == 204
    wait_for(lambda: len(ok_ids(app, "kc")) >= 10, 30, "10 ids answered before the kill")
    a.stop(sig)
    before = ok_ids(app, "kc")
    assert len(before) < n, "the stream was over before the kill"
    b = world.daprd([comp], app=app, name="daprd-b")
    wait_for(lambda: ok_ids(app, "kc") == set(range(1, n + 1)), 60,
             lambda: "every id after the restart (missing %s)" % sorted(set(range(1, n + 1)) - ok_ids(app, "kc")))
    total = len([e for e in app.events("kc") if e["status"] == 200])
    print("%s: %d of %d ids answered before the kill; %d deliveries in all (%d repeated)"
          % (sig.name, len(before), n, total, total - n))
    assert b.alive()
