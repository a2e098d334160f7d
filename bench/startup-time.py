#!/usr/bin/env python3
"""Time a server from exec to its first healthy answer, several times.

Usage: startup-time.py RUNS PATH -- COMMAND...

Every "{port}" in COMMAND is replaced by a fresh free loopback port for
each run.  The clock starts right before the fork/exec and stops when
"GET PATH" on that port first answers 2xx.  The server is then stopped
with SIGTERM and the time to exit is measured too.  Prints one line of
key=value pairs (milliseconds) for state-bench.sh to read.

Polling uses a raw socket and a 0.5 ms pause between refused connects, so
the resolution is well under a millisecond; an HTTP client library or a
curl loop would add more than it measures.
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port, path):
    """Status code of GET path, or None when nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Connection: close\r\n\r\n" % path).encode())
            line = s.makefile("rb").readline()
    except OSError:
        return None
    parts = line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/"):
        return int(parts[1])
    return None


def one_run(cmd, path, log):
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        while True:
            code = http_status(port, path)
            if code is not None and 200 <= code < 300:
                break
            if proc.poll() is not None:
                sys.exit("startup-time: server exited with %d before healthy"
                         % proc.returncode)
            if time.perf_counter() - t0 > 30:
                sys.exit("startup-time: not healthy after 30 s")
            time.sleep(0.0005)
        start_ms = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sys.exit("startup-time: server ignored SIGTERM for 15 s")
        stop_ms = (time.perf_counter() - t1) * 1000
        return start_ms, stop_ms
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit(__doc__)
    runs, path, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[4:]
    logpath = os.environ.get("STARTUP_LOG", os.devnull)
    starts, stops = [], []
    with open(logpath, "ab") as log:
        for _ in range(runs):
            s, t = one_run(cmd, path, log)
            starts.append(s)
            stops.append(t)
    print("start_median=%.2f start_min=%.2f start_max=%.2f stop_median=%.2f"
          % (statistics.median(starts), min(starts), max(starts),
             statistics.median(stops)))


if __name__ == "__main__":
    main()
