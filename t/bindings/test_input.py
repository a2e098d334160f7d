"""Input bindings (reference §5.2) with bindings.cron: discovery by OPTIONS,
`route` and `direction`, delivery with Dapr's headers, firing at the right
times, failures, pausing while the app is unhealthy, the in-flight bound,
and shutdown with deliveries in flight."""

import datetime
import time

import pytest

from conftest import clean_exit, component, headers_of, wait_for


def cron(name, schedule, **meta):
    m = {"schedule": schedule}
    m.update(meta)
    return component(name, "bindings.cron", m)


def read_time(event):
    """readTimeUTC ("2024-05-01 12:00:00.123456789 +0000 UTC") as a datetime."""
    v = headers_of(event)["readtimeutc"]
    assert v.endswith(" +0000 UTC"), v
    stamp = v[:-len(" +0000 UTC")]
    if "." in stamp:
        main, frac = stamp.split(".")
        stamp = main + "." + frac[:6].ljust(6, "0")
    else:
        stamp += ".000000"
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")


def test_every_second_delivery(world):
    app = world.app()
    world.daprd([cron("tick", "@every 1s")], app=app)
    events = wait_for(lambda: (lambda e: e if len(e) >= 3 else None)(app.events("tick")), 10,
                      "three ticks at /tick")
    opts = app.options_seen("tick")
    assert len(opts) == 1, opts   # discovery, once
    e = events[0]
    h = headers_of(e)
    assert e["body"] == ""
    assert h["content-type"] == "application/json"
    assert h["timezone"] == "UTC"
    assert h["traceparent"].startswith("00-")
    times = [read_time(e) for e in events[:3]]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert all(0.8 <= g <= 1.6 for g in gaps), gaps


def test_seconds_field_fires_on_the_second(world):
    app = world.app()
    world.daprd([cron("even", "*/2 * * * * *", route="/cron/even")], app=app)
    events = wait_for(lambda: (lambda e: e if len(e) >= 3 else None)(app.events("cron/even")), 12,
                      "three ticks at /cron/even")
    times = [read_time(e) for e in events]
    # every tick fires in an even second, right after it starts, 2 s apart
    assert all(t.second % 2 == 0 for t in times), times
    assert all(t.microsecond < 500000 for t in times), times
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert all(1.5 <= g <= 2.5 for g in gaps), gaps
    assert app.options_seen("cron/even"), "OPTIONS goes to the route"


def test_discovery(world):
    # 404 to OPTIONS: not subscribed, no events; 405: subscribed;
    # direction input: no OPTIONS at all, events even though OPTIONS is 404
    app = world.app(options=[("nosub", 404), ("m405", 405), ("explicit", 404)])
    d = world.daprd([cron("nosub", "@every 200ms"), cron("m405", "@every 200ms"),
                     cron("explicit", "@every 200ms", direction="input")], app=app)
    wait_for(lambda: len(app.events("m405")) >= 2 and len(app.events("explicit")) >= 2, 10,
             "events for m405 and explicit")
    assert app.events("nosub") == []
    assert app.options_seen("explicit") == []
    assert len(app.options_seen("nosub")) == 1
    assert "app has not subscribed to binding nosub." in d.log_text()


def test_discovery_timeout(world):
    # an app that does not answer OPTIONS in time: that binding stays off,
    # the others start, and daprd is ready without waiting for the app
    app = world.app(options_delay=[("hang", 3)])
    t0 = time.monotonic()
    d = world.daprd([cron("hang", "@every 100ms"), cron("ok", "@every 100ms")], app=app,
                    args=["--app-binding-options-timeout", "300ms"])
    assert time.monotonic() - t0 < 2.5
    wait_for(lambda: len(app.events("ok")) >= 2, 10, "events for ok")
    log = d.log_text().replace('\\"', '"')   # logfmt escapes the quotes
    assert 'could not invoke OPTIONS method on input binding subscription endpoint "hang": no answer within 300 ms' \
        in log
    assert app.events("hang") == []
    assert d.stop() == 0   # with the probe's answer still outstanding


def test_direction_output_only_cron_is_not_used(world):
    app = world.app()
    d = world.daprd([cron("tick", "@every 200ms", direction="output")], app=app)
    r = d.client.get("/v1.0/metadata")
    assert "components" not in r.json() or all(c["name"] != "tick" for c in r.json()["components"])
    assert "is not used: its direction metadata" in d.log_text()
    time.sleep(0.6)   # a window in which a running binding would have fired
    assert app.events() == [] and app.options_seen() == []


def test_app_failures_do_not_stop_the_binding(world):
    app = world.app(post=[("failing", 500)])
    world.daprd([cron("failing", "@every 200ms")], app=app)
    wait_for(lambda: len(app.events("failing")) >= 4, 10, "deliveries go on after 500s")


def test_pause_while_unhealthy(world):
    app = world.app()
    d = world.daprd([cron("tick", "@every 200ms")], app=app,
                    args=["--enable-app-health-check", "--app-health-probe-interval", "200ms",
                          "--app-health-threshold", "1", "--app-health-probe-timeout", "500"])
    wait_for(lambda: len(app.events("tick")) >= 2, 10, "first ticks")
    app.set_health(False)
    wait_for(lambda: "input binding tick stopped while the app is unhealthy" in d.log_text(), 10,
             "the binding stops")
    n = len(app.events("tick"))
    probes = len(app.options_seen("tick"))
    time.sleep(1.5)   # about 7 ticks would have fired
    assert len(app.events("tick")) == n, "events delivered while the app was unhealthy"
    app.set_health(True)
    wait_for(lambda: len(app.events("tick")) >= n + 2, 10, "ticks resume after recovery")
    assert len(app.options_seen("tick")) == probes + 1   # discovery again, as Dapr does


def test_in_flight_bound_and_shutdown(world):
    # a slow app with --app-max-concurrency 1: never two deliveries at once,
    # ticks that find one out are skipped, and daprd still answers at once
    app = world.app(delay=[("tick", 1.0)])
    d = world.daprd([cron("tick", "@every 100ms")], app=app, args=["--app-max-concurrency", "1"])
    wait_for(lambda: len(app.events("tick")) >= 2, 10, "two slow deliveries")
    t0 = time.monotonic()
    assert d.client.get("/v1.0/healthz").status == 204
    assert time.monotonic() - t0 < 0.5
    assert app.state()["max_concurrent"] == 1
    assert "skipped" in d.log_text()
    # SIGTERM with a delivery at the app: a clean exit after it is answered
    rc = d.stop()
    assert clean_exit(d, rc), d.logs()
    assert "dapr shutdown complete" in d.log_text()


def test_no_app_channel(world):
    d = world.daprd([cron("tick", "@every 100ms")])
    assert "app channel not initialized" in d.log_text()
    assert d.stop() == 0
