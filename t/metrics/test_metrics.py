"""daprd's Prometheus metrics (Dapr's pkg/diagnostics names, labels and
buckets) at GET /metrics on --metrics-port: scraped after real traffic
(state, service invocation between two sidecars, publish and delivery to
an app, an output binding and a cron input binding), checked by promtool and scraped by a real prometheus server;
--enable-metrics=false, spec.metric.enabled: false, a metrics port in use,
and no secret value ever in the output.

Each test starts its own daprd processes on 127.0.0.1 and free ports with
the state.in-memory, pubsub.in-memory, secretstores.local.file,
bindings.localstorage, bindings.cron and nameresolution.sqlite plugins; the app is a small HTTP server in this
process.  Processes are stopped by PID."""

import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

DAPRD = os.environ.get("DAPRD", "core/daprd")
PLUGINS = [d for d in os.environ.get("DAPR_TEST_PLUGINS_PATH", "").split(":") if d]
SECRET = "Pl4nted-S3cret-Value-7731"

# Dapr's latency buckets (milliseconds), pkg/diagnostics defaultLatencyDistribution.
LATENCY_BUCKETS = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250,
                   300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000]

# promtool lint warnings that come from keeping Dapr's own metric names
# (opencensus counters without _total, and names ending in _count).
DAPR_NAMED_COUNTERS = {
    "dapr_http_server_request_count", "dapr_http_client_completed_count",
    "dapr_component_state_count", "dapr_component_secret_count", "dapr_component_configuration_count",
    "dapr_component_output_binding_count", "dapr_component_pubsub_egress_count",
    "dapr_component_pubsub_ingress_count", "dapr_component_input_binding_count",
    "dapr_runtime_component_loaded", "dapr_resiliency_loaded", "dapr_resiliency_count",
}
ALLOWED_LINTS = ('counter metrics should have "_total" suffix',
                 'non-histogram and non-summary metrics should not have "_count" suffix')


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def req(port, method, path, body=None, headers=None, timeout=20):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(), r.getheader("Content-Type")
    finally:
        conn.close()


def component(name, type_, metadata=()):
    lines = ["apiVersion: dapr.io/v1alpha1", "kind: Component", "metadata:", "  name: %s" % name,
             "spec:", "  type: %s" % type_, "  version: v1", "  metadata:"]
    if not metadata:
        lines[-1] = "  metadata: []"
    for k, v in metadata:
        lines.append("  - name: %s" % k)
        if isinstance(v, dict):
            for vk, vv in v.items():
                lines.append("    %s: %s" % (vk, json.dumps(vv)))
        else:
            lines.append("    value: %s" % json.dumps(str(v)))
    return "\n".join(lines) + "\n"


# ---- Prometheus text format --------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """[(name, {label: value}, float)] and {family: type}."""
    samples, types = [], {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(" ", 3)
            types[fam] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = dict(LABEL.findall(m.group(3) or ""))
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples, types


def value(samples, name, **labels):
    found = [v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def check_histogram(samples, name, **labels):
    """Buckets are Dapr's, cumulative, and +Inf equals _count; returns _count."""
    buckets = [(l["le"], v) for n, l, v in samples
               if n == name + "_bucket" and all(l.get(k) == str(x) for k, x in labels.items())]
    assert buckets, "no %s buckets for %s" % (name, labels)
    les = [b[0] for b in buckets]
    assert les == [("%g" % b) for b in LATENCY_BUCKETS] + ["+Inf"], les
    counts = [b[1] for b in buckets]
    assert counts == sorted(counts), counts
    total = value(samples, name + "_count", **labels)
    assert counts[-1] == total
    assert value(samples, name + "_sum", **labels) >= 0
    return total


def promtool_ok(text, tmp_path):
    """promtool check metrics: exit 0, or 3 with only the lint warnings that
    Dapr's own names cause."""
    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (apt-get install prometheus)")
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode in (0, 3), "promtool exit %d:\n%s" % (r.returncode, out)
    for line in out.splitlines():
        if not line.strip():
            continue
        fam, _, msg = line.partition(" ")
        assert fam in DAPR_NAMED_COUNTERS and msg.strip() in ALLOWED_LINTS, "unexpected lint: " + line
    return r.returncode


# ---- the app -------------------------------------------------------------------

class AppHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/dapr/subscribe":
            self.reply(200, json.dumps([{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]).encode())
        else:
            self.reply(200, b'"hi"')

    def do_OPTIONS(self):
        self.reply(200 if self.path == "/tick" else 404, b"")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if self.path == "/orders":
            self.server.received.append(json.loads(body))
            self.reply(200, b'{"status":"SUCCESS"}')
        elif self.path == "/tick":
            self.server.ticks += 1
            self.reply(200, b"")
        else:
            self.reply(200, body or b"{}")


class App:
    def __init__(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AppHandler)
        self.server.received = []
        self.server.ticks = 0
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---- daprd -----------------------------------------------------------------------

class Daprd:
    def __init__(self, tmp_path, app_id, args=(), config=None, resources=None, app_port=None, metrics=True):
        self.dir = tmp_path / app_id
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.metrics_port = free_port() if metrics else None
        cmd = [DAPRD, "--app-id", app_id, "--dapr-http-port", str(self.port)]
        if resources:
            cmd += ["--resources-path", str(resources)]
        if config:
            cmd += ["--config", str(config)]
        if app_port:
            cmd += ["--app-port", str(app_port)]
        if self.metrics_port:
            cmd += ["--metrics-port", str(self.metrics_port)]
        for d in PLUGINS:
            cmd += ["--plugins-dir", d]
        cmd += list(args)
        self.out_path = self.dir / "daprd.out"
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, HOME=str(self.dir)))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if req(self.port, "GET", "/v1.0/healthz", timeout=2)[0] == 204:
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("daprd did not start:\n" + self.output(), pytrace=False)

    def request(self, method, path, body=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        return req(self.port, method, path, body, headers)

    def scrape(self):
        status, body, ctype = req(self.metrics_port, "GET", "/metrics")
        assert status == 200
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        return body.decode("utf-8")

    def output(self):
        if not self.out.closed:
            self.out.flush()
        return self.out_path.read_text(errors="replace")

    def stop(self):
        if self.out.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        return self.proc.returncode


@pytest.fixture
def world(tmp_path):
    """Resources (state, pub/sub, a secret store whose secret is referenced
    by the state store's metadata), a Configuration with SQLite name
    resolution, and a list of started processes stopped at the end."""
    res = tmp_path / "resources"
    res.mkdir()
    (tmp_path / "secrets.json").write_text(json.dumps({"dbpass": SECRET, "plain": "not-secret-" + SECRET}))
    (res / "secrets.yaml").write_text(component("localsecrets", "secretstores.local.file",
                                                [("secretsFile", str(tmp_path / "secrets.json"))]))
    (res / "state.yaml").write_text(component("statestore", "state.in-memory",
                                              [("password", {"secretKeyRef": {"name": "dbpass", "key": "dbpass"}})])
                                    + "auth:\n  secretStore: localsecrets\n")
    (res / "pubsub.yaml").write_text(component("pubsub", "pubsub.in-memory"))
    (tmp_path / "files").mkdir()
    (res / "files.yaml").write_text(component("files", "bindings.localstorage",
                                              [("rootPath", str(tmp_path / "files"))]))
    config = tmp_path / "config.yaml"
    config.write_text("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: m\nspec:\n"
                      "  nameResolution:\n    component: sqlite\n    configuration:\n"
                      "      connectionString: %s\n      updateInterval: 2s\n      timeout: 1s\n"
                      % json.dumps(str(tmp_path / "nr.db")))
    started = []

    class World:
        resources = res
        cfg = config
        path = tmp_path

        def daprd(self, app_id, **kw):
            kw.setdefault("resources", res)
            d = Daprd(tmp_path, app_id, **kw)
            started.append(d)
            return d

        def app(self):
            a = App()
            started.append(a)
            return a
    yield World()
    bad = []
    for p in reversed(started):
        rc = p.stop()
        if isinstance(p, Daprd):
            out = p.output()
            # A clean exit, and nothing from the sanitizers in a sanitizer build.
            if rc != 0 or "Sanitizer" in out or "runtime error:" in out:
                bad.append("daprd exit %s:\n%s" % (rc, out[-4000:]))
    assert not bad, "\n".join(bad)


def wait_until(pred, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    pytest.fail(what, pytrace=False)


# ---- tests -------------------------------------------------------------------------------

def test_traffic_counted_with_daprs_names_and_labels(world, tmp_path):
    app = world.app()
    # The callee alone has an input binding (cron every second, to its app).
    cres = tmp_path / "callee-resources"
    shutil.copytree(world.resources, cres)
    (cres / "tick.yaml").write_text(component("tick", "bindings.cron", [("schedule", "@every 1s")]))
    callee = world.daprd("callee", config=world.cfg, app_port=app.port, resources=cres)
    caller = world.daprd("caller", config=world.cfg)

    # State on the caller: 3 saves, 2 gets (one key missing), 1 delete, 1 unknown store.
    for i in range(3):
        assert caller.request("POST", "/v1.0/state/statestore", [{"key": "k%d" % i, "value": i}])[0] == 204
    assert caller.request("GET", "/v1.0/state/statestore/k1")[0] == 200
    assert caller.request("GET", "/v1.0/state/statestore/nokey")[0] == 204
    assert caller.request("DELETE", "/v1.0/state/statestore/k2")[0] == 204
    assert caller.request("GET", "/v1.0/state/nostore/k")[0] == 400
    # An output binding operation.
    assert caller.request("POST", "/v1.0/bindings/files",
                          {"operation": "create", "data": "hello", "metadata": {"fileName": "a.txt"}})[0] in (200, 204)
    # A secret read (its value must not show in /metrics).
    assert caller.request("GET", "/v1.0/secrets/localsecrets/plain")[0] == 200
    # Service invocation: caller's sidecar -> callee's sidecar -> app (name resolution may need a moment).
    wait_until(lambda: caller.request("POST", "/v1.0/invoke/callee/method/hello", {"a": 1})[0] == 200,
               "invocation of callee never succeeded")
    ok_before = 1
    for _ in range(2):
        assert caller.request("POST", "/v1.0/invoke/callee/method/hello", {"a": 1})[0] == 200
    # Publish on the callee (in-memory broker is per process); its app receives.
    for i in range(3):
        assert callee.request("POST", "/v1.0/publish/pubsub/orders", {"n": i})[0] == 204
    wait_until(lambda: len(app.server.received) >= 3, "the app did not receive 3 messages")
    wait_until(lambda: app.server.ticks >= 1, "the cron binding never reached the app")

    # ---- the caller's scrape.
    text = caller.scrape()
    assert SECRET not in text
    s, types = parse(text)
    assert types["dapr_http_server_request_count"] == "counter"
    assert types["dapr_http_server_latency"] == "histogram"
    assert types["dapr_component_state_latencies"] == "histogram"
    assert value(s, "dapr_http_server_request_count", app_id="caller", method="SaveState", status="204") == 3
    assert value(s, "dapr_http_server_request_count", app_id="caller", method="GetState", status="200") == 1
    assert value(s, "dapr_http_server_request_count", app_id="caller", method="GetState", status="204") == 1
    assert value(s, "dapr_http_server_request_count", app_id="caller", method="DeleteState", status="204") == 1
    assert value(s, "dapr_http_server_request_count", app_id="caller", method="GetState", status="400") == 1
    assert value(s, "dapr_http_server_request_count", app_id="caller", method="GetSecret", status="200") == 1
    assert value(s, "dapr_http_server_request_count", app_id="caller", method="InvokeService/callee",
                 status="200") == 2 + ok_before
    assert check_histogram(s, "dapr_http_server_latency", app_id="caller", method="SaveState", status="204") == 3
    # No path label in Dapr's default low-cardinality mode.
    assert not any("path" in l for n, l, v in s if n == "dapr_http_server_request_count")
    state = dict(app_id="caller", component="statestore", namespace="default")
    assert value(s, "dapr_component_state_count", operation="set", success="true", **state) == 3
    assert value(s, "dapr_component_state_count", operation="get", success="true", **state) == 2
    assert value(s, "dapr_component_state_count", operation="delete", success="true", **state) == 1
    assert check_histogram(s, "dapr_component_state_latencies", operation="set", success="true", **state) == 3
    assert value(s, "dapr_component_secret_count", app_id="caller", component="localsecrets",
                 namespace="default", operation="get", success="true") == 1
    assert value(s, "dapr_http_server_request_count", app_id="caller", method="InvokeBinding",
                 status="200") == 1 or value(s, "dapr_http_server_request_count", app_id="caller",
                                             method="InvokeBinding", status="204") == 1
    assert value(s, "dapr_component_output_binding_count", app_id="caller", component="files",
                 namespace="default", operation="create", success="true") == 1
    assert value(s, "dapr_runtime_component_loaded", app_id="caller") == 4
    assert value(s, "dapr_runtime_component_init_total", app_id="caller", component="state.in-memory") == 1
    sizes = value(s, "dapr_http_server_request_bytes_count", app_id="caller")
    assert sizes == sum(v for n, l, v in s if n == "dapr_http_server_request_count")
    for name in ("process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
                 "process_start_time_seconds"):
        assert value(s, name) > 0, name
    assert value(s, "process_cpu_seconds_total") >= 0
    assert abs(value(s, "process_start_time_seconds") - time.time()) < 3600
    promtool_ok(text, tmp_path)

    # ---- the callee's scrape: delivery, publish, the app channel.
    text = callee.scrape()
    assert SECRET not in text
    s, _ = parse(text)
    ps = dict(app_id="callee", component="pubsub", namespace="default", topic="orders")
    assert value(s, "dapr_component_pubsub_egress_count", success="true", **ps) == 3
    assert check_histogram(s, "dapr_component_pubsub_egress_latencies", success="true", **ps) == 3
    assert value(s, "dapr_http_server_request_count", app_id="callee", method="PublishEvent", status="204") == 3
    assert value(s, "dapr_component_pubsub_ingress_count", process_status="success", status="success", **ps) == 3
    assert check_histogram(s, "dapr_component_pubsub_ingress_latencies", process_status="success",
                           status="success", **ps) == 3
    # App channel: 3 invocations answered 200, 3 deliveries 200, plus /dapr/subscribe (and the
    # binding probe, none here): at least 6 with status 200.
    assert value(s, "dapr_http_client_completed_count", app_id="callee", status="200") >= 6
    assert check_histogram(s, "dapr_http_client_roundtrip_latency", app_id="callee", status="200") >= 6
    tb = dict(app_id="callee", component="tick", namespace="default", success="true")
    ticks = value(s, "dapr_component_input_binding_count", **tb)
    assert ticks is not None and 1 <= ticks <= app.server.ticks
    assert check_histogram(s, "dapr_component_input_binding_latencies", **tb) == ticks
    promtool_ok(text, tmp_path)


def test_increased_cardinality_paths_without_keys(world, tmp_path):
    cfg = tmp_path / "ic.yaml"
    cfg.write_text("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: ic\nspec:\n"
                   "  metric:\n    enabled: true\n    http:\n      increasedCardinality: true\n")
    d = world.daprd("icapp", config=cfg)
    for i in range(5):
        assert d.request("POST", "/v1.0/state/statestore", [{"key": "user-%d" % i, "value": i}])[0] == 204
        assert d.request("GET", "/v1.0/state/statestore/user-%d" % i)[0] == 200
    assert d.request("GET", "/v1.0/state/statestore/" + SECRET)[0] == 204
    text = d.scrape()
    assert SECRET not in text and "user-1" not in text
    s, _ = parse(text)
    assert value(s, "dapr_http_server_request_count", app_id="icapp", method="GET", path="/v1.0/state/statestore",
                 status="200") == 5
    assert value(s, "dapr_http_server_request_count", app_id="icapp", method="POST",
                 path="/v1.0/state/statestore", status="204") == 5
    promtool_ok(text, tmp_path)


def test_prometheus_server_scrapes_daprd(world, tmp_path):
    if not shutil.which("prometheus"):
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    d = world.daprd("promapp")
    assert d.request("POST", "/v1.0/state/statestore", [{"key": "a", "value": 1}])[0] == 204
    port = free_port()
    (tmp_path / "prom.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: daprd\n    static_configs:\n"
        "      - targets: ['127.0.0.1:%d']\n" % d.metrics_port)
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(["prometheus", "--config.file=%s" % (tmp_path / "prom.yml"),
                             "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
                             "--web.listen-address=127.0.0.1:%d" % port],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        q = urllib.parse.quote('dapr_http_server_request_count{method="SaveState"}')

        def query():
            try:
                st, body, _ = req(port, "GET", "/api/v1/query?query=" + q, timeout=5)
            except OSError:
                return None
            if st != 200:
                return None
            res = json.loads(body)["data"]["result"]
            return res or None
        res = wait_until(query, "prometheus never returned a daprd series:\n" +
                         (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:], timeout=60)
        assert res[0]["metric"]["app_id"] == "promapp"
        assert res[0]["metric"]["job"] == "daprd"
        assert float(res[0]["value"][1]) == 1
        # The target is healthy (the scrape parsed).
        st, body, _ = req(port, "GET", "/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


def refused(port):
    try:
        req(port, "GET", "/metrics", timeout=2)
    except ConnectionRefusedError:
        return True
    return False


def test_enable_metrics_false_serves_nothing(world):
    d = world.daprd("off", args=("--enable-metrics=false",))
    assert d.request("POST", "/v1.0/state/statestore", [{"key": "a", "value": 1}])[0] == 204
    assert refused(d.metrics_port)
    assert "metrics server started" not in d.output()


def test_configuration_disables_metrics(world, tmp_path):
    cfg = tmp_path / "off.yaml"
    cfg.write_text("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: off\nspec:\n"
                   "  metric:\n    enabled: false\n")
    d = world.daprd("cfgoff", config=cfg)
    assert d.request("GET", "/v1.0/healthz")[0] == 204
    assert refused(d.metrics_port)


def test_metrics_port_in_use_keeps_daprd_running(world):
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        d = world.daprd("busy", metrics=False, args=("--metrics-port", str(port)))
        assert d.request("POST", "/v1.0/state/statestore", [{"key": "a", "value": 1}])[0] == 204
        assert d.request("GET", "/v1.0/state/statestore/a")[0] == 200
        out = d.output()
        errors = [l for l in out.splitlines() if "level=error" in l and "metrics" in l]
        assert len(errors) == 1, out
        assert str(port) in errors[0]
        assert d.stop() == 0
    finally:
        blocker.close()


def test_metrics_endpoint_other_paths_and_methods(world):
    d = world.daprd("paths")
    assert req(d.metrics_port, "GET", "/")[0] == 404
    assert req(d.metrics_port, "GET", "/metricsx")[0] == 404
    assert req(d.metrics_port, "POST", "/metrics", b"x")[0] == 405
    st, body, _ = req(d.metrics_port, "GET", "/metrics?x=1")
    assert st == 200 and b"process_open_fds" in body


def test_no_secret_value_anywhere_in_metrics(world, tmp_path):
    d = world.daprd("secretapp")
    # The secret as a key, in a query, through the secrets API, in an invoked path.
    assert d.request("GET", "/v1.0/secrets/localsecrets/dbpass")[0] == 200
    assert d.request("GET", "/v1.0/state/statestore/%s?metadata.x=%s" % (SECRET, SECRET))[0] == 204
    assert d.request("POST", "/v1.0/state/statestore", [{"key": SECRET, "value": SECRET}])[0] == 204
    d.request("GET", "/v1.0/invoke/nosuchapp/method/" + SECRET)
    text = d.scrape()
    assert SECRET not in text
    assert value(parse(text)[0], "dapr_component_secret_count", app_id="secretapp", component="localsecrets",
                 namespace="default", operation="get", success="true") == 1
