"""`dapr run` with real processes: daprd from this build and a small
python3 http.server app (app.py).  Covers the app's environment, the run
registry (`dapr list`), `dapr stop`, signal forwarding, exit codes, daprd
alone, `dapr init` defaults, multi-app run templates and `dapr invoke`."""

import json
import os
import signal

import pytest

from conftest import APP, free_port, request, pid_alive, wait_for, Cli


def app_env(port):
    def ready():
        try:
            status, body = request(port, "GET", "/env")
            return json.loads(body) if status == 200 else None
        except OSError:
            return None
    return wait_for(ready, what="the app on port %d" % port)


def healthy(port):
    try:
        return request(port, "GET", "/v1.0/healthz")[0] == 204
    except OSError:
        return False


def assert_gone(*pids):
    for pid in pids:
        wait_for(lambda: not pid_alive(pid), what="pid %d to end" % pid)


def test_run_app_env_list_stop(cli, app_cmd):
    port, http_port = free_port(), free_port()
    run = cli.run("--app-id", "myapp", "--app-port", str(port), "--dapr-http-port", str(http_port),
                  "--", *app_cmd)
    e = cli.wait_listed("myapp")
    env = app_env(port)
    assert env["APP_ID"] == "myapp"
    assert env["APP_PORT"] == str(port)
    assert env["DAPR_HTTP_PORT"] == str(http_port)
    assert env["APP_PROTOCOL"] == "http"
    assert env["APP_CHANNEL_ADDRESS"] == "127.0.0.1"
    for k in ("DAPR_GRPC_PORT", "DAPR_METRICS_PORT"):
        assert env[k] and int(env[k]) > 0, env
    assert e["httpPort"] == http_port and e["appPort"] == port
    assert e["grpcPort"] == int(env["DAPR_GRPC_PORT"])
    assert e["cliPid"] == run.proc.pid
    assert e["command"] == " ".join(app_cmd)
    assert pid_alive(e["daprdPid"]) and pid_alive(e["appPid"])

    # the sidecar is really up and knows its app id
    status, body = request(http_port, "GET", "/v1.0/metadata")
    assert status == 200 and json.loads(body)["id"] == "myapp"

    table = cli("list").stdout.splitlines()
    assert table[0].split() == ["APP", "ID", "HTTP", "PORT", "GRPC", "PORT", "APP", "PORT", "COMMAND",
                                "AGE", "CREATED", "DAPRD", "PID", "CLI", "PID", "APP", "PID"]
    assert table[1].split()[:4] == ["myapp", str(http_port), env["DAPR_GRPC_PORT"], str(port)]
    yaml_out = cli("list", "-o", "yaml").stdout
    assert '- appId: "myapp"' in yaml_out and "httpPort: %d" % http_port in yaml_out

    r = cli("stop", "--app-id", "myapp")
    assert r.returncode == 0 and "app stopped successfully: myapp" in r.stdout, r
    assert run.wait() == 0
    assert_gone(e["daprdPid"], e["appPid"])
    assert cli.list() == []
    assert os.listdir(os.path.join(cli.home, ".dapr", "run")) == []
    out = run.output()
    assert "== APP == app ready APP_ID=myapp" in out
    assert "Starting Dapr with id myapp. HTTP Port: %d." % http_port in out
    assert "You're up and running!" in out
    assert "Exited App successfully" in out and "Exited Dapr successfully" in out
    # daprd's own lines are printed as they are, without a prefix
    assert any(line.startswith("time=") for line in out.splitlines()), out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_both(cli, app_cmd, sig):
    port = free_port()
    run = cli.run("-a", "sigapp", "-p", str(port), *app_cmd)   # no "--": first word starts the app
    e = cli.wait_listed("sigapp")
    app_env(port)
    run.signal(sig)
    assert run.wait() == 0
    assert_gone(e["daprdPid"], e["appPid"])
    assert "terminated signal received: shutting down" in run.output()
    assert cli.list() == []


def test_exit_code_of_app(cli, app_cmd):
    run = cli.run("-a", "quick", "--", *app_cmd, "--exit-now", "3")
    assert run.wait() == 3
    out = run.output()
    assert "== APP == app exiting with 3" in out
    assert "exited with error code: 3" in out
    assert cli.list() == []


def test_exit_code_of_serving_app(cli, app_cmd):
    port = free_port()
    run = cli.run("-a", "later", "-p", str(port), "--", *app_cmd, "--exit-after", "1", "5")
    e = cli.wait_listed("later")
    assert run.wait() == 5
    assert_gone(e["daprdPid"], e["appPid"])


def test_app_zero_exit_stops_daprd(cli, app_cmd):
    run = cli.run("-a", "zero", "--", *app_cmd, "--exit-now", "0")
    assert run.wait() == 0
    assert "Exited Dapr successfully" in run.output()


def test_missing_app_command(cli):
    run = cli.run("-a", "nocmd", "--", "/nonexistent/command")
    assert run.wait() == 127
    assert "cannot run '/nonexistent/command'" in run.output()


def test_daprd_alone(cli):
    http_port = free_port()
    run = cli.run("--app-id", "solo", "-H", str(http_port))
    e = cli.wait_listed("solo", with_app=False)
    assert e["appPid"] == 0 and e["appPort"] == 0 and e["command"] == ""
    wait_for(lambda: healthy(http_port), what="healthz")
    wait_for(lambda: "Dapr logs will appear here" in run.output(), what="the CLI's ready message")
    run.signal(signal.SIGINT)
    assert run.wait() == 0
    assert_gone(e["daprdPid"])


def test_generated_app_id(cli):
    run = cli.run()
    e = wait_for(lambda: (cli.list() or [None])[0], what="an entry in dapr list")
    assert e["appId"] and "." not in e["appId"] and "-" in e["appId"]
    cli("stop", "-a", e["appId"])
    assert run.wait() == 0


def test_daprd_killed_stops_app(cli, app_cmd):
    port = free_port()
    run = cli.run("-a", "orphan", "-p", str(port), "--", *app_cmd)
    e = cli.wait_listed("orphan")
    app_env(port)
    os.kill(e["daprdPid"], signal.SIGKILL)
    assert run.wait() == 128 + signal.SIGKILL
    assert_gone(e["appPid"])
    assert cli.list() == []


def test_init_defaults_are_used(tmp_path, app_cmd):
    """After `dapr init`, dapr run gives daprd ~/.dapr/components and
    ~/.dapr/config.yaml: the state store writes to ~/.dapr/state.db.  This
    test also relies on the CLI finding daprd next to itself and the plugins
    of the build tree (no DAPR_DAPRD, no DAPR_PLUGINS_PATH)."""
    dapr = os.environ["DAPR"]
    daprd = os.environ["DAPRD"]
    if os.path.realpath(os.path.join(os.path.dirname(dapr), "daprd")) != os.path.realpath(daprd):
        pytest.skip("DAPRD is not the daprd next to DAPR")
    cli = Cli(tmp_path, plugins_env=False, daprd_env=False)
    try:
        assert cli("init").returncode == 0
        http_port = free_port()
        run = cli.run("-a", "stateful", "-H", str(http_port))
        cli.wait_listed("stateful", with_app=False)
        wait_for(lambda: healthy(http_port), what="healthz")
        status, _ = request(http_port, "POST", "/v1.0/state/statestore", body=json.dumps([{"key": "k", "value": 1}]),
                         headers={"Content-Type": "application/json"})
        assert status == 204
        assert os.path.exists(os.path.join(cli.home, ".dapr", "state.db"))
        run.signal(signal.SIGTERM)
        assert run.wait() == 0
    finally:
        cli.stop_all()


def write_template(tmp_path, extra_b=""):
    for d in ("a", "b"):
        os.makedirs(str(tmp_path / "apps" / d), exist_ok=True)
    pa, pb = free_port(), free_port()
    text = """version: 1
common:
  env:
    COMMON: shared
apps:
  - appID: alpha
    appDirPath: ./apps/a/
    appPort: %d
    command: ["python3", "%s"]
    env:
      EXTRA: one
  - appDirPath: ./apps/b
    appPort: %d
    command: ["python3", "%s"]
%s""" % (pa, APP, pb, APP, extra_b)
    (tmp_path / "dapr.yaml").write_text(text)
    return str(tmp_path / "dapr.yaml"), pa, pb


def test_run_file_two_apps(cli, tmp_path):
    path, pa, pb = write_template(tmp_path, "    daprdLogDestination: console\n")
    run = cli.run("-f", str(tmp_path))     # a folder means its dapr.yaml
    ea = cli.wait_listed("alpha")
    eb = cli.wait_listed("b")              # default app id: the folder's name
    assert ea["cliPid"] == eb["cliPid"] == run.proc.pid
    assert ea["runTemplatePath"] == os.path.realpath(path)
    env_a, env_b = app_env(pa), app_env(pb)
    assert env_a["APP_ID"] == "alpha" and env_a["EXTRA"] == "one" and env_a["COMMON"] == "shared"
    assert env_b["APP_ID"] == "b" and env_b["EXTRA"] is None and env_b["COMMON"] == "shared"
    assert env_a["cwd"] == os.path.realpath(str(tmp_path / "apps" / "a"))
    assert env_a["DAPR_HTTP_PORT"] != env_b["DAPR_HTTP_PORT"]

    # stopping one app of a template leaves the other running
    assert cli("stop", "--app-id", "alpha").returncode == 0
    assert_gone(ea["daprdPid"], ea["appPid"])
    assert [e["appId"] for e in cli.list()] == ["b"]
    assert run.proc.poll() is None

    r = cli("stop", "-f", path)
    assert r.returncode == 0, r
    assert run.wait() == 0
    assert_gone(eb["daprdPid"], eb["appPid"])
    out = run.output()
    assert "== APP - alpha == app ready APP_ID=alpha" in out
    assert "== APP - b == app ready APP_ID=b" in out
    # daprd logs: alpha's to a file only (Dapr's default), b's to the console too
    assert "== DAPR - b == " in out and "== DAPR - alpha == " not in out
    logs = os.listdir(str(tmp_path / "apps" / "a" / ".dapr" / "logs"))
    assert any(n.startswith("alpha_daprd_") for n in logs) and any(n.startswith("alpha_app_") for n in logs)
    assert cli.list() == []


def test_run_file_signal_stops_all(cli, tmp_path):
    path, pa, pb = write_template(tmp_path)
    run = cli.run("-f", path)
    ea, eb = cli.wait_listed("alpha"), cli.wait_listed("b")
    app_env(pa)
    app_env(pb)
    run.signal(signal.SIGINT)
    assert run.wait() == 0
    assert_gone(ea["daprdPid"], ea["appPid"], eb["daprdPid"], eb["appPid"])


def test_invoke(cli, app_cmd):
    port = free_port()
    run = cli.run("-a", "callee", "-p", str(port), "--", *app_cmd)
    cli.wait_listed("callee")
    app_env(port)
    r = cli("invoke", "--app-id", "callee", "--method", "hello/world?x=1", "--data", '{"a":1}')
    if r.returncode != 0 and "ERR_DIRECT_INVOKE" in r.stderr and "not available" in r.stderr:
        pytest.xfail("daprd has no service invocation yet: %s" % r.stderr.strip())
    assert r.returncode == 0, r
    body = json.loads(r.stdout.splitlines()[0])
    assert body == {"method": "POST", "path": "/hello/world?x=1", "body": '{"a":1}'}
    assert "App invoked successfully" in r.stdout
    r = cli("invoke", "-a", "callee", "-m", "env", "-v", "GET")
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0])["APP_ID"] == "callee"
    data = cli.tmp / "body.json"
    data.write_text('{"from":"file"}')
    r = cli("invoke", "-a", "callee", "-m", "put", "--verb", "PUT", "--data-file", str(data))
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0])["body"] == '{"from":"file"}'
    run.stop()


def test_publish(cli, app_cmd):
    # the embedded default components include pubsub.in-memory as "pubsub"
    port = free_port()
    run = cli.run("-a", "subscriber", "-p", str(port), "--", *app_cmd)
    cli.wait_listed("subscriber")
    app_env(port)
    http_port = app_env(port)["DAPR_HTTP_PORT"]
    # in-memory pub/sub keeps nothing for a topic nobody subscribes to yet:
    # wait until the sidecar has read the app's /dapr/subscribe
    wait_for(lambda: json.loads(request(int(http_port), "GET", "/v1.0/metadata")[1]).get("subscriptions"),
             what="the subscription in the metadata API")
    r = cli("publish", "--publish-app-id", "subscriber", "--pubsub", "pubsub", "--topic", "orders",
            "--data", '{"orderId":7}')
    assert r.returncode == 0, r
    assert "Event published successfully" in r.stdout

    def delivered():
        events = json.loads(request(port, "GET", "/received")[1])
        return events or None
    events = wait_for(delivered, what="the event at the app")
    assert len(events) == 1
    assert events[0]["data"] == {"orderId": 7} and events[0]["topic"] == "orders"
    assert events[0]["source"] == "subscriber" and events[0]["pubsubname"] == "pubsub"
    r = cli("publish", "-i", "subscriber", "-p", "nosuch", "-t", "orders", "-d", "{}")
    assert r.returncode != 0 and "ERR_PUBSUB_NOT_FOUND" in r.stderr
    run.stop()


def test_daprd_start_failure(cli, app_cmd, tmp_path):
    marker = tmp_path / "app-started"
    run = cli.run("-a", "broken", "--resources-path", str(tmp_path / "missing"), "--",
                  "python3", "-c", "open(%r, 'w')" % str(marker))
    assert run.wait() == 1
    out = run.output()
    assert "The daprd process of app id broken exited with error code: 1" in out
    assert not marker.exists(), "the app must not start when daprd fails"
    assert cli.list() == []
