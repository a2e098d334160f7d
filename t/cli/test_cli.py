"""dapr CLI commands that need no running app: help, version, flags,
init/uninstall, the run registry's stale-file handling."""

import json
import os

import pytest

COMMANDS = ["run", "list", "stop", "init", "uninstall", "invoke", "publish", "version"]


def test_top_level_help(cli):
    for args in ([], ["--help"], ["-h"], ["help"]):
        r = cli(*args)
        assert r.returncode == 0, r
        for c in COMMANDS:
            assert c in r.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_for_every_command(cli, cmd):
    a = cli(cmd, "--help")
    b = cli("help", cmd)
    assert a.returncode == 0 and b.returncode == 0, (a, b)
    assert "Usage:" in a.stdout and "dapr %s" % cmd in a.stdout
    assert a.stdout == b.stdout


def test_run_help_lists_dapr_flags(cli):
    out = cli("run", "-h").stdout
    for flag in ["--app-id", "-a,", "--app-port", "-p,", "--app-protocol", "-P,", "--dapr-http-port", "-H,",
                 "--dapr-grpc-port", "-G,", "--dapr-internal-grpc-port", "-I,", "--metrics-port", "-M,",
                 "--config", "-c,", "--resources-path", "-d,", "--components-path", "--log-level",
                 "--enable-api-logging", "--app-max-concurrency", "--max-body-size", "--dapr-listen-addresses",
                 "--enable-app-health-check", "--app-health-check-path", "--app-health-probe-interval",
                 "--app-health-probe-timeout", "--app-health-threshold", "--unix-domain-socket",
                 "--run-file", "-f,"]:
        assert flag in out, flag


def test_version(cli):
    for args in (["--version"], ["-v"], ["version"]):
        r = cli(*args)
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert lines[0].startswith("CLI version: ")
        assert lines[1].startswith("Runtime version: ")
        assert lines[1].split(": ")[1].strip() not in ("", "n/a"), "daprd --version was not read"
    j = json.loads(cli("version", "-o", "json").stdout)
    assert set(j) == {"Cli version", "Runtime version"}


@pytest.mark.parametrize("args,needle", [
    (["bogus"], 'unknown command "bogus"'),
    (["--bogus"], "unknown flag: --bogus"),
    (["run", "--bogus"], "unknown flag: --bogus"),
    (["run", "-Z"], "unknown shorthand flag: 'Z'"),
    (["run", "--app-port"], "flag needs an argument"),
    (["run", "--app-port", "http"], "not a port number"),
    (["run", "-H", "70000"], "not a port number"),
    (["run", "--app-protocol", "ftp"], "invalid --app-protocol"),
    (["run", "--log-level", "loud"], "invalid --log-level"),
    (["run", "--max-body-size", "lots"], "invalid --max-body-size"),
    (["run", "--app-id", "a.b"], "cannot contain dots"),
    (["run", "--unix-domain-socket", "/tmp/x"], "not supported"),
    (["run", "-f", "dapr.yaml", "--", "true"], "cannot be used together"),
    (["list", "-o", "xml"], "invalid value"),
    (["list", "extra"], "unexpected argument"),
    (["stop"], "give --app-id or --run-file"),
    (["invoke", "--method", "m"], 'required flag "app-id"'),
    (["invoke", "--app-id", "x"], 'required flag "method"'),
    (["invoke", "-a", "x", "-m", "m", "--verb", "FETCH"], "invalid verb"),
    (["publish", "-i", "x", "-p", "ps"], 'required flag "topic"'),
    (["help", "nothing"], "unknown help topic"),
])
def test_bad_flags(cli, args, needle):
    r = cli(*args)
    assert r.returncode == 1, r
    assert needle in r.stderr, r.stderr


def test_run_file_errors(cli, tmp_path):
    missing = cli("run", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\napps:\n  - appID: x\n    command: [\"true\"]\n")
    r = cli("run", "-f", str(bad))
    assert r.returncode == 1 and "appDirPath" in r.stderr and "required" in r.stderr, r.stderr
    bad.write_text("version: 2\napps: []\n")
    r = cli("run", "-f", str(bad))
    assert r.returncode == 1 and "version" in r.stderr, r.stderr
    bad.write_text("version: 1\napps:\n  - appDirPath: .\n    command: python3 app.py\n")
    r = cli("run", "-f", str(bad))
    assert r.returncode == 1 and "command" in r.stderr, r.stderr
    bad.write_text("version: 1\napps: [\n")
    r = cli("run", "-f", str(bad))
    assert r.returncode == 1 and "bad.yaml" in r.stderr, r.stderr


def test_init_and_uninstall(cli):
    dapr_dir = os.path.join(cli.home, ".dapr")
    store = os.path.join(dapr_dir, "components", "statestore.yaml")
    config = os.path.join(dapr_dir, "config.yaml")
    r = cli("init")
    assert r.returncode == 0, r
    assert store in r.stdout and config in r.stdout
    text = open(store).read()
    assert "type: state.sqlite" in text and "name: statestore" in text
    assert os.path.join(dapr_dir, "state.db") in text
    assert "actorStateStore" in text and '"true"' in text
    conf = open(config).read()
    assert "kind: Configuration" in conf and "name: daprConfig" in conf and "tracing" not in conf

    # idempotent: an edited file is kept, --force rewrites it
    with open(store, "a") as f:
        f.write("# edited\n")
    r = cli("init")
    assert r.returncode == 0 and "Keeping existing" in r.stdout
    assert open(store).read().endswith("# edited\n")
    assert cli("init", "--slim", "--force").returncode == 0
    assert "# edited" not in open(store).read()

    # uninstall removes what init wrote and keeps the user's own files
    mine = os.path.join(dapr_dir, "components", "mine.yaml")
    open(mine, "w").write("# mine\n")
    r = cli("uninstall")
    assert r.returncode == 0, r
    assert not os.path.exists(store) and not os.path.exists(config)
    assert os.path.exists(mine)
    r = cli("uninstall", "--all")
    assert r.returncode == 0 and not os.path.exists(dapr_dir)


def test_list_empty_and_stale_entries(cli):
    r = cli("list")
    assert r.returncode == 0 and "No Dapr instances found." in r.stdout
    assert cli.list() == []
    # a registry file left by a `dapr run` that died with SIGKILL
    run_dir = os.path.join(cli.home, ".dapr", "run")
    os.makedirs(run_dir)
    stale = os.path.join(run_dir, "999999-ghost.json")
    with open(stale, "w") as f:
        json.dump({"appId": "ghost", "cliPid": 999999999, "daprdPid": 1, "appPid": 0,
                   "httpPort": 1, "grpcPort": 2, "appPort": 0, "command": "", "created": 0}, f)
    assert cli.list() == []
    assert not os.path.exists(stale)
    r = cli("stop", "--app-id", "ghost")
    assert r.returncode == 1 and "couldn't find app id ghost" in r.stderr


def test_invoke_unknown_app(cli):
    r = cli("invoke", "--app-id", "nobody", "--method", "x")
    assert r.returncode == 1 and "nobody" in r.stderr
