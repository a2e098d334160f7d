"""Shared fixtures for the tracing tests.

The processes and helpers of t/invoke/conftest.py (echo apps, daprd
sidecars finding each other through nameresolution.sqlite, polling,
stop by PID) are reused; this module adds the collectors:

  zipkin   a real Zipkin server (java -jar $ZIPKIN_JAR, in-memory
           storage) on a free loopback port, one per session
  otlp     otlp_receiver.py run by $OTLP_PYTHON (a Python with
           opentelemetry-proto), which validates every payload strictly

and a World whose Configuration carries a spec.tracing section.
"""

import http.client
import importlib.util
import json
import os
import select
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("invoke_conftest", os.path.join(HERE, "..", "invoke", "conftest.py"))
ic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ic)

Client = ic.Client
free_port = ic.free_port
wait_for = ic.wait_for
echo_headers = ic.echo_headers
wait_invocable = ic.wait_invocable
pytest_runtest_makereport = ic.pytest_runtest_makereport
pytest_sessionfinish = ic.pytest_sessionfinish


class World(ic.World):
    """A World whose Configuration has spec.tracing (a YAML fragment
    indented under "tracing:") and whose resources folder holds the given
    manifests."""

    def __init__(self, tmpdir, tracing, resources=()):
        super().__init__(tmpdir)
        with open(self.config, "a", encoding="utf-8") as f:
            f.write("  tracing:\n")
            for line in tracing.strip("\n").split("\n"):
                f.write("    " + line + "\n")
        for i, doc in enumerate(resources):
            with open(os.path.join(self.resources, "r%d.yaml" % i), "w", encoding="utf-8") as f:
                f.write(doc)


def zipkin_tracing(port, rate="1"):
    return ('samplingRate: "%s"\nzipkin:\n  endpointAddress: "http://127.0.0.1:%d/api/v2/spans"\n' % (rate, port))


def trace_of(response):
    """(trace id, span id, flags) of a response's traceparent header."""
    tp = response.header("traceparent")
    assert tp, "no traceparent in the response: %r" % response
    v, t, s, f = tp.split("-")
    return t, s, f


# ---- Zipkin -------------------------------------------------------------------

class Zipkin:
    def __init__(self, tmpdir):
        jar = os.environ.get("ZIPKIN_JAR")
        if not jar or not os.path.isfile(jar):
            pytest.skip("ZIPKIN_JAR is not set or missing (t/tracing/run.sh fetches it)")
        self.port = free_port()
        self.log = os.path.join(str(tmpdir), "zipkin.log")
        env = dict(os.environ, STORAGE_TYPE="mem", QUERY_PORT=str(self.port), MEM_MAX_SPANS="200000")
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen(["java", "-Xmx384m", "-jar", jar], stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=str(tmpdir))
        self.client = Client(self.port)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                pytest.fail("zipkin exited with %d:\n%s" % (self.proc.returncode, ic._tail(self.log)), pytrace=False)
            try:
                if self.client.get("/health").status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail("zipkin did not become healthy:\n%s" % ic._tail(self.log), pytrace=False)
            time.sleep(0.2)

    def trace(self, trace_id):
        r = self.client.get("/api/v2/trace/%s" % trace_id)
        if r.status == 404:
            return []
        assert r.status == 200, r
        return r.json()

    def wait_trace(self, trace_id, n, timeout=15.0):
        """The trace once it has at least n spans."""
        return wait_for(lambda: (lambda t: t if len(t) >= n else None)(self.trace(trace_id)), timeout,
                        lambda: "zipkin has not %d spans of trace %s: %r" % (n, trace_id, self.trace(trace_id)))

    def raw_traces(self, service):
        r = self.client.get("/api/v2/traces?serviceName=%s&limit=10000&lookback=86400000" % service)
        assert r.status == 200, r
        return r.body.decode("utf-8")

    def services(self):
        r = self.client.get("/api/v2/services")
        assert r.status == 200, r
        return r.json()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture(scope="session")
def zipkin(tmp_path_factory):
    z = Zipkin(tmp_path_factory.mktemp("zipkin"))
    yield z
    z.stop()


# ---- OTLP receiver -------------------------------------------------------------

class Otlp:
    def __init__(self, tmpdir):
        py = os.environ.get("OTLP_PYTHON")
        if not py or subprocess.call([py, "-c", "import opentelemetry.proto"], stderr=subprocess.DEVNULL) != 0:
            pytest.skip("no Python with opentelemetry-proto (OTLP_PYTHON; t/tracing/run.sh installs it from PyPI)")
        self.log = os.path.join(str(tmpdir), "otlp.log")
        self._err = open(self.log, "ab")
        self.proc = subprocess.Popen([py, os.path.join(HERE, "otlp_receiver.py"), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("PORT "):
            self.stop()
            pytest.fail("otlp receiver did not start: %r\n%s" % (line, ic._tail(self.log)), pytrace=False)
        self.port = int(line.split()[1])
        self.client = Client(self.port)

    def data(self):
        r = self.client.get("/spans")
        assert r.status == 200, r
        return r.json()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self._err.close()


@pytest.fixture(scope="module")
def otlp(tmp_path_factory):
    o = Otlp(tmp_path_factory.mktemp("otlp"))
    yield o
    o.stop()


# ---- span helpers -----------------------------------------------------------------

def by_id(spans, key="id"):
    return {s[key]: s for s in spans}


def find(spans, **want):
    """Spans whose fields equal want (service= matches Zipkin's
    localEndpoint.serviceName)."""
    out = []
    for s in spans:
        ok = True
        for k, v in want.items():
            got = s.get("localEndpoint", {}).get("serviceName") if k == "service" else s.get(k)
            if got != v:
                ok = False
        if ok:
            out.append(s)
    return out


# ---- sanitizer reports ------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def no_sanitizer_reports(tmp_path_factory):
    """After every test (all processes stopped), no daprd log of this run
    may hold an AddressSanitizer/UBSan/LeakSanitizer report
    (--enable-sanitizers builds)."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    found = []
    for root, _, files in os.walk(base):
        for f in files:
            if f.endswith(".log"):
                p = os.path.join(root, f)
                with open(p, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                if "Sanitizer" in text or "runtime error:" in text:
                    found.append(p)
    assert not found, "sanitizer reports in: %s" % found
