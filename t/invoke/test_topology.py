"""Several apps and instances (reference §4, §9.4 name resolution): A calls
B and C; B runs twice (two sidecars with app id B, each with its own app
that reports its instance name), and calls to B are spread round-robin
over both instances."""

from collections import Counter

import pytest

from conftest import wait_for, wait_invocable


@pytest.fixture(scope="module")
def topo(world):
    b1 = world.pair("B", instance="B-1")
    b2 = world.pair("B", instance="B-2")
    c = world.pair("C")
    a = world.pair("A")
    wait_invocable(a, "C")
    # Both instances must be visible before counting: the resolver picks up
    # new rows at its next refresh (updateInterval 1s).
    seen = set()

    def both_seen():
        r = a.invoke("B", "echo")
        if r.status == 200:
            seen.add(r.json()["app"])
        return seen == {"B-1", "B-2"}
    wait_for(both_seen, 10, lambda: "A never reached both instances of B (saw %s)" % sorted(seen),
             interval=0.1)
    return a, b1, b2, c


def test_a_calls_c(topo):
    a = topo[0]
    r = a.invoke("C", "echo/c", "POST", body=b"to c")
    assert r.status == 200, r
    assert r.json()["app"] == "C"
    assert r.json()["path"] == "/echo/c"


def test_calls_alternate_between_instances(topo):
    a = topo[0]
    apps = []
    for _ in range(10):
        r = a.invoke("B", "echo")
        assert r.status == 200, r
        apps.append(r.json()["app"])
    counts = Counter(apps)
    assert set(counts) == {"B-1", "B-2"}, apps
    # Round-robin gives 5/5; allow one resolver refresh to shift the turn.
    assert min(counts.values()) >= 4, apps


def test_c_calls_b_instances_too(topo):
    c = topo[3]
    wait_invocable(c, "B")
    apps = {c.invoke("B", "echo").json()["app"] for _ in range(6)}
    assert apps == {"B-1", "B-2"}


def test_b_instances_call_each_other_by_app_id(topo):
    # An instance invoking its own app id goes to its own app (local call),
    # not to the other instance.
    b1, b2 = topo[1], topo[2]
    for d, name in ((b1, "B-1"), (b2, "B-2")):
        for _ in range(3):
            r = d.invoke("B", "echo")
            assert r.status == 200, r
            assert r.json()["app"] == name
