"""bindings.mqtt3 through real daprd processes and a real mosquitto broker:
output -> broker -> input round trips, messages from an outside publisher,
the PUBACK held back until the app answered 2xx (app failures and a daprd
killed mid-delivery both lead to redelivery), in-process retries with
backOffMaxRetries, retain and the per-request topic/retain overrides, and
clear init errors for bad metadata."""

import json
import signal
import time

import shutil

import pytest

from conftest import Broker, bc, events, make_pki, read


def mqtt_component(name, broker_url, topic, consumer, **meta):
    return bc.component(name, "bindings.mqtt3", dict({"url": broker_url, "topic": topic, "consumerID": consumer},
                                                     **meta))


def create(d, name, data, **md):
    return d.invoke(name, {"operation": "create", "data": data, "metadata": md})


def bodies(app, route):
    return [e["body"] for e in events(app, route)]


def wait_bodies(app, route, n, timeout=15):
    return bc.wait_for(lambda: len(bodies(app, route)) >= n and bodies(app, route), timeout,
                       lambda: "%d events on %s, got %r" % (n, route, bodies(app, route)))


def test_round_trip_output_to_input(world, broker, app):
    d = world.daprd([mqtt_component("orders", broker.url(), "dapr/orders", "rt")], app=app)
    bc.wait_for(lambda: "subscribing to topic dapr/orders" in d.log_text(), 10, "the binding subscribed")
    sent = [{"n": i, "s": "x" * i} for i in range(5)] + ["plain string"]
    for data in sent:
        r = create(d, "orders", data)
        assert r.status == 204, r
    got = wait_bodies(app, "orders", len(sent))
    # the payload is the request's data as daprd re-encodes it, as in Dapr
    assert got == [json.dumps(x, separators=(",", ":")) for x in sent], got
    for e in events(app, "orders"):
        assert e["headers"]["topic"] == "dapr/orders"
        assert e["headers"]["content-type"] == "application/json"
    # from an outside publisher too
    broker.pub("dapr/orders", "from-outside")
    assert wait_bodies(app, "orders", len(sent) + 1)[-1] == "from-outside"
    time.sleep(1)
    assert len(bodies(app, "orders")) == len(sent) + 1      # each exactly once


def test_app_failure_redelivers(world, broker, app):
    # backOffMaxRetries 0 (Dapr's default): a failed message is given back
    # to the broker at once, which delivers it again after the reconnect
    d = world.daprd([mqtt_component("jobs", broker.url(), "dapr/jobs", "fail")], app=app)
    bc.wait_for(lambda: "subscribing to topic dapr/jobs" in d.log_text(), 10, "the binding subscribed")
    broker.pub("dapr/jobs", "job-a-fail2")
    broker.pub("dapr/jobs", "job-b")
    bc.wait_for(lambda: bodies(app, "jobs").count("job-a-fail2") == 3 and "job-b" in bodies(app, "jobs"), 20,
                lambda: "job-a-fail2 delivered 3 times and job-b once: %r" % bodies(app, "jobs"))
    time.sleep(2.5)
    got = bodies(app, "jobs")
    assert got.count("job-a-fail2") == 3, got    # acknowledged after the 2xx: no more deliveries
    assert got.count("job-b") == 1, got
    assert "not acknowledged; the broker delivers it again" in d.log_text()


def test_in_process_retry(world, broker, app):
    d = world.daprd([mqtt_component("retry", broker.url(), "dapr/retry", "retry", backOffMaxRetries="2")], app=app)
    bc.wait_for(lambda: "subscribing to topic dapr/retry" in d.log_text(), 10, "the binding subscribed")
    broker.pub("dapr/retry", "r-fail1")
    evs = bc.wait_for(lambda: len(events(app, "retry")) >= 2 and events(app, "retry"), 15, "a retried delivery")
    assert [e["body"] for e in evs] == ["r-fail1", "r-fail1"]
    assert evs[1]["t"] - evs[0]["t"] >= 4.5          # Dapr's constant 5 s back-off
    assert "retrying in 5s" in d.log_text()
    assert "broker delivers it again" not in d.log_text()


def test_daprd_killed_before_the_app_answered(world, broker, app):
    comp = mqtt_component("slow", broker.url(), "dapr/slow", "kill")
    d1 = world.daprd([comp], app=app, name="daprd1")
    bc.wait_for(lambda: "subscribing to topic dapr/slow" in d1.log_text(), 10, "the binding subscribed")
    broker.pub("dapr/slow", "slow-1")
    wait_bodies(app, "slow", 1)
    d1.stop(signal.SIGKILL)          # no PUBACK went out: the broker still owns the message
    d2 = world.daprd([comp], app=app, name="daprd2")
    got = wait_bodies(app, "slow", 2, timeout=20)
    assert got == ["slow-1", "slow-1"], got
    d2.stop()


def test_retain_and_overrides(world, broker):
    d = world.daprd([mqtt_component("kept", broker.url(), "dapr/kept", "ret", retain="true", direction="output"),
                     mqtt_component("plain", broker.url(), "dapr/plain", "ret2", direction="output")])
    assert create(d, "kept", "first").status == 204
    # a subscriber arriving later gets the retained message
    assert broker.sub_one("dapr/kept") == (True, '"first"')
    # per-request overrides: topic, and retain off for this message only
    assert create(d, "kept", "not kept", topic="dapr/kept2", retain="false").status == 204
    assert broker.sub_one("dapr/kept2", wait=1) is None
    assert create(d, "plain", "now kept", retain="true").status == 204
    assert broker.sub_one("dapr/plain") == (True, '"now kept"')
    assert create(d, "plain", "not retained").status == 204
    assert broker.sub_one("dapr/plain") == (True, '"now kept"')      # the retained one stays
    r = create(d, "plain", "x", retain="maybe")
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "invalid metadata retain")
    r = create(d, "plain", "x", topic="dapr/#")
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "invalid topic")
    r = d.invoke("plain", {"operation": "get"})
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "does not support operation get")


def test_broker_down_output_fails_clearly(world, broker):
    d = world.daprd([mqtt_component("out", broker.url(), "dapr/out", "down", direction="output")])
    assert create(d, "out", 1).status == 204
    broker.stop()
    t0 = time.monotonic()
    r = create(d, "out", 2)
    assert r.status == 500, r
    assert time.monotonic() - t0 < 15
    assert "127.0.0.1:%d" % broker.port in r.json()["message"], r.json()


def test_bad_metadata_fails_init_clearly(world, broker):
    bad = {
        "b1": {"url": "http://127.0.0.1:1883"},
        "b2": {"url": "localhost:1883"},
        "b3": {"url": "tcp://127.0.0.1:99999"},
        "b4": {"url": "tcp://:1883"},
        "b5": {"url": "tcp://user:Pa55-secret-w0rd@127.0.0.1:notaport"},
        "b6": {"caCert": "not a pem"},
        "b7": {"topic": ""},
    }
    comps = []
    for name, meta in bad.items():
        m = dict({"url": broker.url(), "topic": "t", "consumerID": name, "direction": "output"}, **meta)
        comps.append(bc.component(name, "bindings.mqtt3", m).replace("spec:\n", "spec:\n  ignoreErrors: true\n"))
    d = world.daprd(comps)
    d.stop()
    log = d.log_text()
    for name, part in [("b1", "unsupported scheme 'http'"), ("b2", "invalid url: expected scheme://host:port"),
                       ("b3", "invalid port '99999'"), ("b4", "invalid url: no host"), ("b5", "invalid port"),
                       ("b6", "invalid ca certificate"), ("b7", "topic")]:
        lines = [l for l in log.splitlines() if "component '%s'" % name in l]
        assert lines and part in lines[0], (name, part, lines)
    assert "Pa55-secret-w0rd" not in log


def test_tls_with_client_certificate(world, app):
    if not shutil.which("openssl"):
        pytest.skip("openssl not found")
    pki = make_pki(world.path("pki"))
    broker = Broker(world.path("tlsbroker"), tls=pki)
    world.procs.append(broker)
    broker.start()
    url = "ssl://127.0.0.1:%d" % broker.port
    tls = {"caCert": read(pki["ca.pem"]), "clientCert": read(pki["client.pem"]), "clientKey": read(pki["client.key"])}
    wrong_ca = dict(tls, caCert=read(pki["other-ca.pem"]))
    d = world.daprd([mqtt_component("secure", url, "dapr/tls", "tls", **tls),
                     mqtt_component("wrongca", url, "dapr/tls", "tls2", direction="output", **wrong_ca)], app=app)
    bc.wait_for(lambda: "subscribing to topic dapr/tls" in d.log_text(), 10, "the binding subscribed")
    assert create(d, "secure", {"over": "tls"}).status == 204
    assert wait_bodies(app, "secure", 1) == ['{"over":"tls"}']
    # a broker certificate from another CA is refused
    r = create(d, "wrongca", 1)
    bc.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING", "failed to create producer connection")
    d.stop()
    assert "PRIVATE KEY" not in d.log_text()
