"""App health and start-up order (reference §8.2, §11.1): with app health
checks on, an unhealthy app cannot be invoked until it is healthy again;
a sidecar whose app does not listen yet is outbound-ready but not ready."""

import pytest

from conftest import App, assert_error, echo_headers, free_port, wait_for, wait_invocable

HEALTH_ARGS = ["--enable-app-health-check", "--app-health-check-path", "/healthz",
               "--app-health-probe-interval", "1", "--app-health-probe-timeout", "500",
               "--app-health-threshold", "1"]
# Probes run every second; allow a few of them for every state change.
CHANGE_TIMEOUT = 8


@pytest.fixture(scope="module")
def h(world):
    """Sidecar H of app H, probed every second; APP_API_TOKEN set so the
    probes' lack of a token can be checked."""
    return world.pair("H", args=HEALTH_ARGS, env={"APP_API_TOKEN": "apptok"})


@pytest.fixture(scope="module")
def caller(world, h):
    d = world.pair("caller")
    wait_invocable(d, "H")
    return d


def error_code(r):
    if r.status != 500 or r.content_type != "application/json":
        return None
    return r.json().get("errorCode")


def test_health_settings_in_metadata(h):
    r = h.client.get("/v1.0/metadata")
    assert r.status == 200, r
    health = r.json().get("appConnectionProperties", {}).get("health")
    assert health, r.json()
    assert health.get("healthCheckPath") == "/healthz", health
    assert health.get("healthProbeInterval") == "1s", health
    assert health.get("healthProbeTimeout") == "500ms", health
    assert health.get("healthThreshold") == 1, health


def test_probes_carry_no_app_token(h):
    wait_for(lambda: h.app.client.get("/last-healthz").json(), CHANGE_TIMEOUT, "no probe reached the app")
    probe = {k.lower(): v for k, v in h.app.client.get("/last-healthz").json()}
    assert "dapr-api-token" not in probe, probe
    # Invocations do carry it.
    assert echo_headers(h.invoke("H", "echo")).get("dapr-api-token") == ["apptok"]


def test_unhealthy_app_cannot_be_invoked_then_recovers(h, caller):
    assert h.invoke("H", "echo").status == 200
    h.app.set_health(False)
    try:
        wait_for(lambda: error_code(h.invoke("H", "echo")) == "ERR_DIRECT_INVOKE", CHANGE_TIMEOUT,
                 "self-invocation still works after the app turned unhealthy")
        r = h.invoke("H", "echo")
        assert_error(r, 500, "ERR_DIRECT_INVOKE", "app is not in a healthy state")
        assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: H")
        # From another sidecar: H's sidecar's error is relayed.
        r = caller.invoke("H", "echo")
        assert_error(r, 500, "ERR_DIRECT_INVOKE", "app is not in a healthy state")
    finally:
        h.app.set_health(True)
    wait_for(lambda: h.invoke("H", "echo").status == 200, CHANGE_TIMEOUT,
             "self-invocation does not work again after the app turned healthy")
    r = caller.invoke("H", "echo")
    assert r.status == 200, r
    assert r.json()["app"] == "H"


def test_sidecar_waits_for_its_app(world):
    """daprd started before its app: outbound-ready at once, ready (and
    invocable) only once the app listens."""
    port = free_port()
    d = world.daprd("late", port, wait="healthz/outbound")
    r = d.client.get("/v1.0/healthz")
    assert_error(r, 500, "ERR_HEALTH_NOT_READY")
    assert d.client.get("/v1.0/healthz/outbound").status == 204
    # The API answers meanwhile (SDKs poll the metadata endpoint).
    r = d.client.get("/v1.0/metadata")
    assert r.status == 200, r
    assert r.json().get("id") == "late"
    app = App(world.path("app-late"), "late", port)
    world.procs.append(app)
    app.start()
    wait_for(lambda: d.client.get("/v1.0/healthz").status == 204, 5,
             "healthz did not turn 204 after the app started listening")
    r = d.invoke("late", "echo")
    assert r.status == 200, r
    assert r.json()["app"] == "late"
