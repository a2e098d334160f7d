"""Faults on the target side (reference §4.4): the target app is down, the
target sidecar was killed, the target sidecar shut down cleanly.  Every
case is 500 ERR_DIRECT_INVOKE "failed to invoke, id: {appId}".  Each test
uses its own target app id, so a stale registration of one test never
affects another."""

import signal

import pytest

from conftest import assert_error, wait_for, wait_invocable


@pytest.fixture(scope="module")
def a(world):
    return world.pair("A")


def test_target_app_down_is_relayed_from_target_sidecar(world, a):
    b = world.pair("b-appdown")
    wait_invocable(a, "b-appdown")
    b.app.kill()
    r = a.invoke("b-appdown", "echo")
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: b-appdown")
    # The target sidecar is still up and reports the same for a direct call.
    assert b.alive()
    r2 = b.invoke("b-appdown", "echo")
    assert_error(r2, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: b-appdown")
    # The app comes back on the same port: calls work again.
    b.app.start()
    wait_invocable(a, "b-appdown")


def test_target_sidecar_killed(world, a):
    b = world.pair("b-killed")
    wait_invocable(a, "b-killed")
    # SIGKILL: no withdrawal, the registration stays behind until it ages.
    b.kill(signal.SIGKILL)
    r = a.invoke("b-killed", "echo")
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: b-killed")
    # The app itself is fine; only its sidecar is gone.
    assert b.app.client.get("/echo").status == 200


def test_target_sidecar_stopped(world, a):
    b = world.pair("b-stopped")
    wait_invocable(a, "b-stopped")
    assert b.stop() == 0
    r = a.invoke("b-stopped", "echo")
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: b-stopped")


def test_target_sidecar_restarted_is_found_again(world, a):
    b = world.pair("b-restart")
    wait_invocable(a, "b-restart")
    b.kill(signal.SIGKILL)
    # A new sidecar (new internal port) for the same app replaces the dead one.
    b.start()
    wait_for(lambda: a.invoke("b-restart", "echo").status == 200, 10,
             "A does not reach b-restart after its sidecar restarted")


def test_local_app_down(world, a):
    # Self-invocation with the own app down: the error comes from A's sidecar.
    d = world.pair("self-down")
    d.app.kill()
    r = d.invoke("self-down", "echo")
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: self-down")


def test_sidecar_without_app_port_cannot_be_invoked(world, a):
    d = world.daprd("no-app")
    r = d.invoke("no-app", "echo")
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: no-app")
    # From another sidecar the error is the same (relayed or resolution).
    r = a.invoke("no-app", "echo")
    assert_error(r, 500, "ERR_DIRECT_INVOKE", "failed to invoke, id: no-app")
