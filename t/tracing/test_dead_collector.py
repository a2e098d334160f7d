"""A collector that accepts connections and never answers: requests keep
their latency (export runs on its own thread with its own timeout), the
span queue stays within DAPR_TRACING_MAX_QUEUE (the rest is dropped and
counted), and daprd still stops promptly."""

import re
import socket
import threading
import time

from conftest import World, wait_for, zipkin_tracing

QUEUE = 40
CALLS = 400


class BlackHole:
    """Accepts TCP connections and holds them open without reading."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


def test_dead_collector(tmp_path):
    hole = BlackHole()
    try:
        w = World(tmp_path, zipkin_tracing(hole.port, "1"))
        d = w.daprd("deadcoll", env={"DAPR_TRACING_MAX_QUEUE": str(QUEUE)})
        worst = 0.0

        def calls(n):
            nonlocal worst
            for i in range(n):
                t0 = time.monotonic()
                r = d.client.get("/v1.0/metadata")
                worst = max(worst, time.monotonic() - t0)
                assert r.status == 200, r

        # A few spans, then wait until the exporter is stuck on the
        # collector, then many more while it stays stuck.
        calls(10)
        wait_for(lambda: hole.conns, 10, "daprd never connected to the collector")
        calls(CALLS - 10)
        # The exporter waits 10 s for an answer: a request that waited for
        # it would take that long.
        assert worst < 2.0, "a request took %.2f s with a dead collector" % worst
        t0 = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - t0 < 9, "shutdown waited for the dead collector"
        log = open(d.stdout_path, encoding="utf-8", errors="replace").read()
        m = re.search(r"tracing: (\d+) spans sampled, (\d+) exported, (\d+) failed, (\d+) dropped \(queue full\); "
                      r"queue high-water mark (\d+) of (\d+)", log)
        assert m, log[-3000:]
        sampled, exported, failed, dropped, high, cap = map(int, m.groups())
        assert cap == QUEUE and high <= QUEUE, m.group(0)
        assert exported == 0, m.group(0)
        assert dropped > 0 and sampled + dropped == CALLS, m.group(0)
        assert "did not answer" in log or "is behind" in log or failed > 0, m.group(0)
    finally:
        hole.close()
