"""Fixtures for the resiliency tests: one test app (res_app.py) and one
daprd per test, with the Resiliency manifests each test writes into its
own resources folder.  Paths come from the environment (t/resiliency/run.sh):

  DAPRD                    the daprd binary
  DAPR_TEST_PLUGINS_PATH   folders holding pubsub.in-memory and the test
                           plugin state.flaky (t/plugins/.libs)

Readiness is polled, never slept for; processes are stopped by PID.
"""

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "res_app.py")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

FLAKY_STORE = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: flaky
spec:
  type: state.flaky
  version: v1
  metadata: []
"""

MEMORY_PUBSUB = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.in-memory
  version: v1
  metadata: []
"""


class Response:
    def __init__(self, status, body, elapsed):
        self.status = status
        self.body = body
        self.elapsed = elapsed

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %s>" % (self.status, self.text[:400])


def request(port, method, path, body=None, headers=None, timeout=30.0):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = dict(headers or {}, **{"Content-Type": "application/json"})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    start = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, data, time.monotonic() - start)
    finally:
        conn.close()


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, http.client.HTTPException) as e:
            last = e
        time.sleep(0.05)
    pytest.fail("%s (waited %.0f s; last %r)" % (what, timeout, last), pytrace=False)


class Proc:
    def __init__(self, workdir, name):
        self.workdir = workdir
        self.name = name
        self.proc = None
        os.makedirs(workdir, exist_ok=True)
        self.out_path = os.path.join(workdir, name + ".stdout.log")
        self.err_path = os.path.join(workdir, name + ".stderr.log")

    def popen(self, cmd, pipe=False):
        self._out = open(self.out_path, "ab")
        self._err = open(self.err_path, "ab")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", HOME=self.workdir)
        for k in ("DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE"):
            env.pop(k, None)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if pipe else self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL, env=env,
                                     cwd=self.workdir)

    def log(self):
        text = ""
        for p in (self.out_path, self.err_path):
            try:
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return text

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self._out, self._err):
            f.close()
        if self.proc.stdout:
            self.proc.stdout.close()
        rc = self.proc.returncode
        self.proc = None
        return rc


class App(Proc):
    def start(self):
        self.popen([sys.executable, APP], pipe=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            pytest.fail("test app did not start: %r\n%s" % (line, self.log()), pytrace=False)
        self.port = int(line.split()[1])
        return self

    def plan(self, path, fail, status=500, delay=0.0):
        r = request(self.port, "POST", "/plan",
                    {"path": path, "fail": fail, "status": status, "delay": delay})
        assert r.status == 204, r

    def times(self, path):
        r = request(self.port, "GET", "/log?path=" + path)
        assert r.status == 200, r
        return r.json()["times"]


class Daprd(Proc):
    def start(self, app_id, app_port, resources, args=()):
        daprd = os.environ.get("DAPRD")
        if not daprd or not os.access(daprd, os.X_OK):
            pytest.fail("DAPRD must point at the built daprd (t/resiliency/run.sh sets it)",
                        pytrace=False)
        for attempt in range(3):
            self.port = free_port()
            self.metrics_port = free_port()
            cmd = [daprd, "--app-id", app_id, "--dapr-http-port", str(self.port),
                   "--dapr-internal-grpc-port", "0", "--dapr-listen-addresses", "127.0.0.1",
                   "--resources-path", resources, "--log-level", "debug",
                   "--metrics-port", str(self.metrics_port)]
            if app_port:
                cmd += ["--app-port", str(app_port)]
            cmd += list(args)
            for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":"):
                if d:
                    cmd += ["--plugins-dir", d]
            self.popen(cmd)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if request(self.port, "GET", "/v1.0/healthz", timeout=2).status == 204:
                        return self
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.02)
            log = self.log()
            self.stop()
            if "address already in use" not in log.lower():
                pytest.fail("daprd did not become healthy\n%s" % log[-6000:], pytrace=False)
        pytest.fail("daprd could not find a free port", pytrace=False)

    def metrics(self):
        r = request(self.metrics_port, "GET", "/metrics")
        assert r.status == 200, r
        return r.text

    def invoke(self, method, verb="GET", body=None, app_id="app"):
        return request(self.port, verb, "/v1.0/invoke/%s/method/%s" % (app_id, method), body)


class World:
    """One test's app and sidecar; the test writes its manifests first."""

    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.resources = os.path.join(self.tmp, "resources")
        os.makedirs(self.resources, exist_ok=True)
        self.procs = []
        self.app = None

    def write(self, name, text):
        with open(os.path.join(self.resources, name), "w", encoding="utf-8") as f:
            f.write(text)

    def start(self, app_id="app", with_app=True):
        self.app = App(os.path.join(self.tmp, "app"), "app").start() if with_app else None
        if self.app:
            self.procs.append(self.app)
        return self.start_daprd(app_id)

    def start_app_first(self):
        """The app alone (when a manifest needs its port)."""
        self.app = App(os.path.join(self.tmp, "app"), "app").start()
        self.procs.append(self.app)
        return self.app

    def start_daprd(self, app_id="app"):
        self.daprd = Daprd(os.path.join(self.tmp, "daprd"), "daprd")
        self.procs.append(self.daprd)
        self.daprd.start(app_id, self.app.port if self.app else None, self.resources)
        return self.daprd

    def stop_all(self):
        rc = None
        for p in reversed(self.procs):
            r = p.stop()
            if p is getattr(self, "daprd", None):
                rc = r
        return rc


@pytest.fixture
def world(tmp_path, request):
    w = World(tmp_path)
    yield w
    rc = w.stop_all()
    # A clean exit also means no sanitizer report at shutdown.
    if rc not in (None, 0) and not getattr(request.node, "_failed", False):
        pytest.fail("daprd exited with %r\n%s" % (rc, w.daprd.log()[-6000:]), pytrace=False)


def gaps(times):
    return [b - a for a, b in zip(times, times[1:])]
