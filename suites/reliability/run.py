#!/usr/bin/env python3
"""Reliability figures for the README, on loopback only, every loop bounded.

  overload   10x+ the sustainable rate against a slow upstream: shed requests
             get 503 at once, accepted ones 200, every 200 reached the
             upstream and no shed one did, RSS stays bounded.
  slowloris  2000 sockets stalled mid-header while normal traffic runs:
             normal traffic's p99 with and without them, and when the server
             closes them.
  sigterm    SIGTERM during sustained load against kinesis-local: every 200
             read back from the stream, byte for byte.
  outage     kinesis-local frozen (SIGSTOP) for 5 s mid-load, then resumed:
             no 200 for a record that is not in the stream; time to recover.
  soak       10 minutes at 500 req/s: RSS and open descriptors every 10 s.

Usage: suites/reliability/run.sh [overload] [slowloris] [sigterm] [outage] [soak]
(default: all but soak, which takes 10 minutes; CI runs the default)
Writes target/reliability/results-<scenarios>.json and prints a markdown
summary; exits 1 when a scenario breaks its promise (each scenario's
`failures`). Needs release binaries (cargo build --release --bins
--examples), wrk, boto3 and node (scripts/kinesis-local.sh): run.sh
installs them.
"""

import http.client
import importlib.machinery
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3

from harness.kinesis import read_receipts

ROOT = Path(__file__).resolve().parents[2]
bench = importlib.machinery.SourceFileLoader("bench_run", str(ROOT / "bench" / "run.py")).load_module()
GATEWAY = str(ROOT / "target" / "release" / "clickstream-gateway")
NULL = str(ROOT / "target" / "release" / "examples" / "null_kinesis")
PORT = bench.SYSTEM_PORT


def start_gateway(**env):
    full = bench.aws_env(PORT) | {k: str(v) for k, v in env.items()}
    proc = subprocess.Popen([GATEWAY], env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_for_port(PORT, proc)
    return proc


def start_null(delay_ms=0):
    proc = subprocess.Popen([NULL, f"127.0.0.1:{bench.UPSTREAM_PORT}", str(delay_ms)], stderr=subprocess.DEVNULL)
    bench.wait_for_port(bench.UPSTREAM_PORT, proc)
    return proc


def overload():
    upstream = start_null(delay_ms=50)
    # Capacity: one call of at most 100 records per 50 ms = 2,000 records/s.
    gateway = start_gateway(BATCH_MAX_CONCURRENT_CALLS=1, BATCH_MAX_RECORDS=100, MAX_IN_FLIGHT_REQUESTS=200)
    try:
        sustainable = bench.wrk(PORT, 100, 5)
        before = bench.upstream_stats()
        loaded = bench.wrk(PORT, 1000, 15)
        after = bench.upstream_stats()
        rss = bench.peak_rss_mib(gateway.pid)
    finally:
        bench.stop(gateway)
        bench.stop(upstream)
    ok = loaded["requests"] - loaded["non2xx"]
    written = after["records"] - before["records"]
    return {
        "sustainable_rps": round(sustainable["requests"] / (sustainable["duration_us"] / 1e6)),
        "offered_rps": round(loaded["requests"] / (loaded["duration_us"] / 1e6)),
        "ok_rps": round(ok / (loaded["duration_us"] / 1e6)),
        "requests": loaded["requests"],
        "ok": ok,
        "shed_503": loaded["non2xx"],
        "socket_errors": loaded["connect_errors"] + loaded["read_errors"] + loaded["write_errors"] + loaded["timeouts"],
        "p50_ms": loaded["p50_us"] / 1000,
        "p99_ms": loaded["p99_us"] / 1000,
        "max_ms": loaded["max_us"] / 1000,
        "records_written_upstream": written,
        "peak_rss_mib": round(rss, 1),
    }


def slowloris(stalled=2000, header_timeout_ms=10_000):
    upstream = start_null()
    gateway = start_gateway(HEADER_READ_TIMEOUT_MS=header_timeout_ms)
    sockets = []
    try:
        baseline = bench.wrk(PORT, 50, 5)
        opened = time.time()
        for _ in range(stalled):
            s = socket.create_connection(("127.0.0.1", PORT))
            s.sendall(b"POST /import HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            sockets.append(s)
        during = bench.wrk(PORT, 50, 5)
        rss = bench.peak_rss_mib(gateway.pid)
        # When does the server close them? Poll for EOF, bounded.
        closed_at = None
        for s in sockets:
            s.setblocking(False)
        open_sockets = set(sockets)
        deadline = opened + header_timeout_ms / 1000 + 15
        while open_sockets and time.time() < deadline:
            for s in list(open_sockets):
                try:
                    if s.recv(4096) == b"":
                        open_sockets.discard(s)
                except BlockingIOError:
                    pass
                except OSError:
                    open_sockets.discard(s)
            if not open_sockets:
                closed_at = time.time()
            time.sleep(0.1)
        after = bench.wrk(PORT, 50, 5)
    finally:
        for s in sockets:
            s.close()
        bench.stop(gateway)
        bench.stop(upstream)
    return {
        "stalled_sockets": stalled,
        "header_read_timeout_ms": header_timeout_ms,
        "baseline_rps": round(baseline["requests"] / (baseline["duration_us"] / 1e6)),
        "baseline_p99_ms": baseline["p99_us"] / 1000,
        "during_rps": round(during["requests"] / (during["duration_us"] / 1e6)),
        "during_p99_ms": during["p99_us"] / 1000,
        "during_non2xx": during["non2xx"],
        "after_p99_ms": after["p99_us"] / 1000,
        "all_stalled_closed_after_s": None if closed_at is None else round(closed_at - opened, 1),
        "still_open": len(open_sockets),
        "peak_rss_mib": round(rss, 1),
    }


KINESIS_PORT = int(os.environ.get("KINESIS_LOCAL_PORT", "4577"))
EMULATOR_ENV = os.environ | {"KINESIS_LOCAL_PORT": str(KINESIS_PORT),
                             "KINESIS_LOCAL_TLS_PORT": str(KINESIS_PORT + 1),
                             "KINESIS_LOCAL_DIR": str(ROOT / "target" / "kinesis-local-reliability")}


def emulator(action):
    script = str(ROOT / "scripts" / "kinesis-local.sh")
    subprocess.run([script, action], check=action == "start", stdout=subprocess.DEVNULL, env=EMULATOR_ENV)


def emulator_stream(name):
    """kinesis-local started, a fresh 2-shard stream in it, and a gateway on it."""
    emulator("start")
    kinesis = boto3.client("kinesis", endpoint_url=f"http://127.0.0.1:{KINESIS_PORT}", region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
    stream = f"{name}-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    for _ in range(100):
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    env = bench.aws_env(PORT) | {"AWS_ENDPOINT_URL_KINESIS": f"http://127.0.0.1:{KINESIS_PORT}",
                                 "KINESIS_STREAM_NAME": stream, "SHUTDOWN_TIMEOUT_MS": "20000",
                                 "KINESIS_OPERATION_TIMEOUT_MS": "3000", "KINESIS_ATTEMPT_TIMEOUT_MS": "1000"}
    gateway = subprocess.Popen([GATEWAY], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_for_port(PORT, gateway)
    return kinesis, stream, gateway


class Load:
    """Keep-alive clients posting unique events until told to stop; records
    every 200 (with its receipt and the bytes sent) and when it came."""

    def __init__(self, gateway, workers, seconds):
        self.gateway, self.stop_at = gateway, time.time() + seconds
        self.acknowledged, self.refused, self.errors = [], [], 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.worker) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def worker(self):
        conn = None
        while time.time() < self.stop_at:
            body = json.dumps({"type": "track", "event": "Clicked", "id": str(uuid.uuid4())}).encode()
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
                conn.request("POST", "/import", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                answer = response.read()
                with self.lock:
                    if response.status == 200:
                        receipt = json.loads(answer)
                        self.acknowledged.append((receipt["ShardId"], receipt["SequenceNumber"], body, time.time()))
                    else:
                        self.refused.append((response.status, time.time()))
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.errors += 1
                if conn:
                    conn.close()
                conn = None
                if self.gateway.poll() is not None:
                    return
                time.sleep(0.01)

    def join(self):
        self.stop_at = min(self.stop_at, time.time())
        for t in self.threads:
            t.join(timeout=40)


def missing_from(stored, acknowledged):
    return [a for a in acknowledged if stored.get((a[0], a[1])) != a[2]]


def outage(workers=16, outage_seconds=5.0):
    """The emulator freezes (SIGSTOP) mid-load, then resumes (SIGCONT)."""
    kinesis, stream, gateway = emulator_stream("outage")
    pid = int((Path(EMULATOR_ENV["KINESIS_LOCAL_DIR"]) / "pid").read_text())
    load = Load(gateway, workers, 60)
    time.sleep(3)
    os.kill(pid, signal.SIGSTOP)
    stopped = time.time()
    time.sleep(outage_seconds)
    os.kill(pid, signal.SIGCONT)
    resumed = time.time()
    time.sleep(4)
    load.join()
    bench.stop(gateway)
    stored = read_receipts(kinesis, stream)
    emulator("stop")
    during = [r for r in load.refused if stopped <= r[1] <= resumed + 1]
    first_ok_after = min((a[3] for a in load.acknowledged if a[3] > resumed), default=None)
    return {
        "outage_s": outage_seconds,
        "acknowledged_200": len(load.acknowledged),
        "non_200_answers": len(load.refused),
        "non_200_during_outage": len(during),
        "statuses_during_outage": sorted({r[0] for r in during}),
        "connection_errors": load.errors,
        "records_in_stream": len(stored),
        "acknowledged_missing_from_stream": len(missing_from(stored, load.acknowledged)),
        "first_200_after_resume_s": None if first_ok_after is None else round(first_ok_after - resumed, 2),
    }


def sigterm(workers=32, load_seconds=4.0):
    kinesis, stream, gateway = emulator_stream("sigterm")
    load = Load(gateway, workers, load_seconds + 25)
    time.sleep(load_seconds)
    with load.lock:
        acked_before_signal = len(load.acknowledged)
    signalled = time.time()
    gateway.send_signal(signal.SIGTERM)
    exit_code = gateway.wait(timeout=30)
    exited_after = time.time() - signalled
    load.join()

    stored = read_receipts(kinesis, stream)
    emulator("stop")
    return {
        "workers": workers,
        "acknowledged_200": len(load.acknowledged),
        "acknowledged_before_sigterm": acked_before_signal,
        "non_200_answers": len(load.refused),
        "connection_errors_after_close": load.errors,
        "records_in_stream": len(stored),
        "acknowledged_missing_from_stream": len(missing_from(stored, load.acknowledged)),
        "exit_code": exit_code,
        "exit_after_sigterm_s": round(exited_after, 2),
    }


def soak(seconds=600, rate=500, workers=8):
    """A steady, moderate load for a long time: RSS and open descriptors
    sampled every 10 s must level off, not grow."""
    upstream = start_null()
    gateway = start_gateway()
    counts = {"ok": 0, "other": 0, "errors": 0}
    lock = threading.Lock()
    end = time.time() + seconds
    body = (ROOT / "bench" / "event.json").read_bytes()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
        interval, next_at = workers / rate, time.time()
        while time.time() < end:
            try:
                conn.request("POST", "/import", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                with lock:
                    counts["ok" if response.status == 200 else "other"] += 1
            except (OSError, http.client.HTTPException):
                with lock:
                    counts["errors"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
            next_at += interval
            time.sleep(max(0.0, next_at - time.time()))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    samples = []
    try:
        while time.time() < end:
            time.sleep(10)
            status = Path(f"/proc/{gateway.pid}/status").read_text()
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{gateway.pid}/fd"))
            samples.append({"t": round(seconds - (end - time.time())), "rss_mib": round(rss / 1024, 1), "fds": fds})
        for t in threads:
            t.join()
    finally:
        bench.stop(gateway)
        bench.stop(upstream)
    first, last = samples[0], samples[-1]
    return {
        "seconds": seconds,
        "target_rps": rate,
        "requests_ok": counts["ok"],
        "non_200": counts["other"],
        "errors": counts["errors"],
        "rss_mib_at_10s": first["rss_mib"],
        "rss_mib_at_end": last["rss_mib"],
        "rss_mib_max": max(s["rss_mib"] for s in samples),
        "fds_at_10s": first["fds"],
        "fds_at_end": last["fds"],
        "fds_max": max(s["fds"] for s in samples),
        "samples": samples,
    }


def main():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    chosen = sys.argv[1:] or ["overload", "slowloris", "sigterm", "outage"]
    scenarios = {"overload": overload, "slowloris": slowloris, "sigterm": sigterm, "outage": outage, "soak": soak}
    results = {}
    for name in chosen:
        bench.log(f"reliability: {name}")
        results[name] = scenarios[name]()
        bench.log(json.dumps(results[name]))
    out = ROOT / "target" / "reliability"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{'-'.join(chosen)}.json").write_text(json.dumps(results, indent=2))
    for name, figures in results.items():
        print(f"\n**{name}**\n\n| figure | value |\n|---|---:|")
        for key, value in figures.items():
            if key != "samples":
                print(f"| {key} | {value} |")
    failures = [f"{name}: {why}" for name, figures in results.items() for why in broken(name, figures)]
    if failures:
        sys.exit("reliability promises broken:\n  " + "\n  ".join(failures))


def broken(name, f):
    """What a scenario's figures break of its promise (its docstring's)."""
    checks = {
        "overload": [
            (f.get("shed_503", 0) > 0, "10x the sustainable rate shed nothing"),
            (f.get("ok", 0) > 0, "nothing was accepted under overload"),
            (f.get("records_written_upstream", 0) >= f.get("ok", 0), "a 200 did not reach the upstream"),
        ],
        "slowloris": [
            (f.get("still_open") == 0, "stalled sockets were never closed"),
            (f.get("during_non2xx") == 0, "normal traffic was refused while sockets stalled"),
        ],
        "sigterm": [
            (f.get("acknowledged_missing_from_stream") == 0, "a 200 is missing from the stream"),
            (f.get("exit_code") == 0, "the process did not exit cleanly"),
        ],
        "outage": [(f.get("acknowledged_missing_from_stream") == 0, "a 200 is missing from the stream")],
    }
    return [why for ok, why in checks.get(name, []) if not ok]


if __name__ == "__main__":
    main()
