#!/usr/bin/env python3
"""daprd speaks systemd's notify protocol correctly.

Plays systemd's part: binds an AF_UNIX datagram socket, starts daprd with
NOTIFY_SOCKET pointing at it and WATCHDOG_USEC=400000 (no WATCHDOG_PID, so
the watchdog applies to whichever process reads it), then checks that

  - READY=1 arrives, and the HTTP API already answers when it does: the
    first GET /v1.0/healthz made right after READY=1 returns 204 without
    any retry (systemd starts dependent units on READY=1);
  - WATCHDOG=1 arrives at least twice within 2 s after READY=1 (daprd
    pings every WATCHDOG_USEC/2);
  - STOPPING=1 arrives after SIGTERM, and daprd then exits 0.

Usage: test-sd-notify.py BUILDDIR   (exit 77: skipped, 1: failed)
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

failures = 0


def ok(msg):
    print("ok: " + msg)


def fail(msg):
    global failures
    failures += 1
    print("FAIL: " + msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port):
    """HTTP status of GET /v1.0/healthz, or None when nothing answers."""
    try:
        with urllib.request.urlopen(
                "http://127.0.0.1:%d/v1.0/healthz" % port, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def receive(sock, deadline):
    """Next notification as a list of VAR=value lines, or None at deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    sock.settimeout(left)
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return None
    return data.decode("utf-8", "replace").split("\n")


def wait_for(sock, deadline, wanted, seen):
    """Read notifications until one holds the line `wanted`; keep all."""
    while True:
        msg = receive(sock, deadline)
        if msg is None:
            return False
        seen.append(msg)
        if wanted in msg:
            return True


def main():
    builddir = sys.argv[1] if len(sys.argv) > 1 else os.getcwd()
    daprd = os.environ.get("DAPRD", os.path.join(builddir, "core", "daprd"))
    plugins = os.path.join(builddir, "plugins", "state-memory", ".libs")
    if not os.path.exists(daprd):
        print("ERROR: %s missing: build first" % daprd)
        return 99

    tmp = tempfile.mkdtemp(prefix="dapr-sdnotify.")
    proc = None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        path = os.path.join(tmp, "notify.sock")
        sock.bind(path)
        res = os.path.join(tmp, "res")
        os.mkdir(res)
        with open(os.path.join(res, "statestore.yaml"), "w") as f:
            f.write("apiVersion: dapr.io/v1alpha1\nkind: Component\n"
                    "metadata:\n  name: statestore\n"
                    "spec:\n  type: state.in-memory\n  version: v1\n"
                    "  metadata: []\n")

        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = path
        env["WATCHDOG_USEC"] = "400000"
        env.pop("WATCHDOG_PID", None)
        env.pop("DAPR_PLUGINS_PATH", None)
        port = free_port()
        log = open(os.path.join(tmp, "daprd.log"), "w+")
        proc = subprocess.Popen(
            [daprd, "--app-id", "sdnotify", "--dapr-http-port", str(port),
             "--dapr-listen-addresses", "127.0.0.1", "--resources-path", res,
             "--plugins-dir", plugins, "--log-level", "debug"],
            env=env, stdout=log, stderr=subprocess.STDOUT)

        seen = []
        if not wait_for(sock, time.monotonic() + 30, "READY=1", seen):
            fail("no READY=1 within 30 s (got %r)" % seen)
            log.seek(0)
            print(log.read())
            return 1
        ready_at = time.monotonic()
        # No retry: the API must already answer when READY=1 is sent.
        status = healthz(port)
        if status == 204:
            ok("GET /v1.0/healthz answers 204 as soon as READY=1 arrives")
        else:
            fail("first GET /v1.0/healthz after READY=1 gave %r, not 204" % status)
        ready_msg = seen[-1]
        if "MAINPID=%d" % proc.pid in ready_msg or not any(
                l.startswith("MAINPID=") for l in ready_msg):
            ok("READY=1 message: %s" % " ".join(l for l in ready_msg if l))
        else:
            fail("READY=1 carries a wrong MAINPID: %r" % ready_msg)

        pings = sum(1 for m in seen if "WATCHDOG=1" in m)
        deadline = ready_at + 2.0
        while True:
            msg = receive(sock, deadline)
            if msg is None:
                break
            seen.append(msg)
            if "WATCHDOG=1" in msg:
                pings += 1
        if pings >= 2:
            ok("%d WATCHDOG=1 pings within 2 s (WATCHDOG_USEC=400000)" % pings)
        else:
            fail("only %d WATCHDOG=1 pings within 2 s (want >= 2)" % pings)

        proc.send_signal(signal.SIGTERM)
        if wait_for(sock, time.monotonic() + 15, "STOPPING=1", seen):
            ok("STOPPING=1 after SIGTERM")
        else:
            fail("no STOPPING=1 within 15 s of SIGTERM")
        try:
            rc = proc.wait(timeout=15)
            if rc == 0:
                ok("daprd exits 0 after SIGTERM")
            else:
                fail("daprd exit status %d after SIGTERM" % rc)
        except subprocess.TimeoutExpired:
            fail("daprd still running 15 s after SIGTERM")
        if failures:
            log.seek(0)
            print("daprd output:\n" + log.read())
        log.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)

    if failures:
        print("%d check(s) failed" % failures)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
