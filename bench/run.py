#!/usr/bin/env python3
"""Side-by-side throughput benchmark of the gateway, on loopback only.

Builds release binaries, starts a null Kinesis upstream (measured alone
first), then for each system and connection count starts the system fresh,
warms up, drives `wrk` with a ~1 KiB clickstream event and records requests/s,
p50/p99/max latency, non-2xx and socket errors, the server's peak RSS and CPU
seconds, and upstream calls per 1000 requests. Systems:

  bare       a bare hyper server answering a canned receipt (this machine's ceiling)
  unbatched  the gateway, BATCHING=false (one PutRecord per request)
  batched    the gateway, BATCHING=true (PutRecords coalescing)
  go, node   the seed's peer servers in ../shared/peers (with --peers)

Writes results.json, results.md and chart.png to --out. Every wrk run is
bounded by --duration; every address is 127.0.0.1.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "peers"
UPSTREAM_PORT = 4599
SYSTEM_PORT = 4600
TICKS = os.sysconf("SC_CLK_TCK")


def log(*parts):
    print("[bench]", *parts, file=sys.stderr, flush=True)


def wait_for_port(port, proc, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid):
    """User + system CPU of a process and its reaped children (node's workers)."""
    total = 0.0
    for p in [pid] + children(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except (FileNotFoundError, IndexError):
            pass
    return total


def peak_rss_mib(pid):
    total = 0
    for p in [pid] + children(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]
    except FileNotFoundError:
        return []


def upstream_stats():
    with urllib.request.urlopen(f"http://127.0.0.1:{UPSTREAM_PORT}/stats", timeout=5) as r:
        return json.load(r)


def wrk(port, connections, duration, path="/import", body=None):
    env = dict(os.environ, BENCH_BODY=str(body or ROOT / "bench" / "event.json"))
    cmd = [
        "wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
        "-s", str(ROOT / "bench" / "wrk.lua"), f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60).stdout
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError(f"wrk printed no summary:\n{out}")


def aws_env(port):
    # Gateway tuning from the caller's environment (BATCH_*, KINESIS_*) passes through.
    tuning = {k: v for k, v in os.environ.items() if k.startswith(("BATCH_", "KINESIS_"))}
    return tuning | {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "KINESIS_STREAM_NAME": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_ENDPOINT_URL_KINESIS": f"http://127.0.0.1:{UPSTREAM_PORT}",
        "RUST_LOG": "warn",
        "PATH": os.environ.get("PATH", ""),
    }


def systems(args):
    release = ROOT / "target" / "release"
    gateway = str(release / "clickstream-gateway")
    found = {
        "bare": ([str(release / "examples" / "bare_hyper"), f"127.0.0.1:{SYSTEM_PORT}"], {}),
        "unbatched": ([gateway], dict(aws_env(SYSTEM_PORT), BATCHING="false")),
        "batched": ([gateway], dict(aws_env(SYSTEM_PORT), BATCHING="true")),
    }
    if args.peers:
        go, node = build_peers()
        found["go"] = ([go], aws_env(SYSTEM_PORT))
        found["node"] = (["node", str(node / "server.js")], aws_env(SYSTEM_PORT))
    return {name: found[name] for name in args.systems.split(",") if name in found} if args.systems else found


def build_peers():
    """The seed's Go and Node servers, built outside the repository."""
    if shutil.which("go") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "golang-go", "golang-github-aws-aws-sdk-go-dev"], check=True)
    go = Path("/tmp/peers/go-peer")
    if not go.exists():
        subprocess.run(["bash", str(PEERS / "go" / "build.sh"), str(go)], check=True)
    node = Path("/tmp/peers/node")
    if not (node / "node_modules").exists():
        shutil.copytree(PEERS / "node", node, dirs_exist_ok=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=node, check=True)
    return str(go), node


def measure(name, cmd, env, connections, duration):
    proc = subprocess.Popen(cmd, env=env or None, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(SYSTEM_PORT, proc)
        time.sleep(0.3)  # node's cluster workers start after the primary binds
        wrk(SYSTEM_PORT, connections, 2)  # warm-up: connections, pools, JIT
        before_cpu, before = cpu_seconds(proc.pid), upstream_stats()
        result = wrk(SYSTEM_PORT, connections, duration)
        after_cpu, after = cpu_seconds(proc.pid), upstream_stats()
        rss = peak_rss_mib(proc.pid)
    finally:
        stop(proc)
    calls = (after["put_record"] - before["put_record"]) + (after["put_records"] - before["put_records"])
    seconds = result["duration_us"] / 1e6
    row = {
        "system": name,
        "connections": connections,
        "requests": result["requests"],
        "rps": round(result["requests"] / seconds, 1),
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "non2xx": result["non2xx"],
        "socket_errors": result["connect_errors"] + result["read_errors"] + result["write_errors"] + result["timeouts"],
        "peak_rss_mib": round(rss, 1),
        "cpu_seconds": round(after_cpu - before_cpu, 2),
        "upstream_calls_per_1000": None if name == "bare" else round(1000 * calls / max(result["requests"], 1), 1),
    }
    log(json.dumps(row))
    return row


def upstream_alone(duration):
    """The null upstream by itself, with a PutRecord-shaped request, so the
    figures show it is not what limits the systems above."""
    body = Path("/tmp/bench-putrecord.json")
    data = __import__("base64").b64encode((ROOT / "bench" / "event.json").read_bytes()).decode()
    body.write_text(json.dumps({"StreamName": "bench", "PartitionKey": "k", "Data": data}))
    script = Path("/tmp/bench-upstream.lua")
    script.write_text((ROOT / "bench" / "wrk.lua").read_text().replace(
        'wrk.headers["Content-Type"] = "application/json"',
        'wrk.headers["Content-Type"] = "application/x-amz-json-1.1"\n'
        'wrk.headers["X-Amz-Target"] = "Kinesis_20131202.PutRecord"'))
    env = dict(os.environ, BENCH_BODY=str(body))
    cmd = ["wrk", "-t2", "-c50", f"-d{duration}s", "-s", str(script), f"http://127.0.0.1:{UPSTREAM_PORT}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH_JSON "))
    result = json.loads(line[len("BENCH_JSON "):])
    return round(result["requests"] / (result["duration_us"] / 1e6), 1)


def markdown(rows, upstream_rps, args):
    lines = [
        f"Null upstream alone (PutRecord, 50 connections): **{upstream_rps:,.0f} req/s**.",
        "",
        f"wrk -t2 --timeout 10s, {args.duration} s per run after a 2 s warm-up, ~1 KiB event, all on one "
        f"{os.cpu_count()}-core machine (wrk, upstream and server share the cores: compare ratios).",
        "",
        "| system | conns | req/s | p50 ms | p99 ms | max ms | non-2xx | socket errors | peak RSS MiB | CPU s | upstream calls / 1000 req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        calls = "-" if r["upstream_calls_per_1000"] is None else f'{r["upstream_calls_per_1000"]:.1f}'
        lines.append(
            f'| {r["system"]} | {r["connections"]} | {r["rps"]:,.0f} | {r["p50_ms"]:.2f} | {r["p99_ms"]:.2f} | '
            f'{r["max_ms"]:.1f} | {r["non2xx"]} | {r["socket_errors"]} | {r["peak_rss_mib"]:.1f} | '
            f'{r["cpu_seconds"]:.1f} | {calls} |')
    return "\n".join(lines) + "\n"


def chart(rows, path):
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["system"] for r in rows))
    conns = sorted({r["connections"] for r in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        by_conn = {r["connections"]: r for r in rows if r["system"] == name}
        xs = [j + i * width for j in range(len(conns))]
        left.bar(xs, [by_conn.get(c, {}).get("rps", 0) for c in conns], width, label=name)
        right.bar(xs, [by_conn.get(c, {}).get("p99_ms", 0) for c in conns], width, label=name)
    for ax, title in ((left, "throughput (req/s, higher is better)"), (right, "p99 latency (ms, log, lower is better)")):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(conns))], [str(c) for c in conns])
        ax.set_xlabel("concurrent connections")
        ax.set_title(title)
    right.set_yscale("log")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--connections", default="1,50,500,1000")
    parser.add_argument("--systems", default="", help="comma list to run a subset, e.g. batched,go")
    parser.add_argument("--peers", action="store_true", help="also build and run the Go and Node peers")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    # 1000 connections need well over the usual 1024 descriptors, for wrk and the servers alike.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins", "--examples"], cwd=ROOT, check=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    upstream = subprocess.Popen([str(ROOT / "target" / "release" / "examples" / "null_kinesis"),
                                 f"127.0.0.1:{UPSTREAM_PORT}"], stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_for_port(UPSTREAM_PORT, upstream)
        upstream_rps = upstream_alone(min(args.duration, 5))
        log(f"null upstream alone: {upstream_rps:,.0f} req/s")
        for name, (cmd, env) in systems(args).items():
            for connections in [int(c) for c in args.connections.split(",")]:
                rows.append(measure(name, cmd, env, connections, args.duration))
    finally:
        stop(upstream)

    (out / "results.json").write_text(json.dumps({"upstream_alone_rps": upstream_rps, "runs": rows}, indent=2))
    (out / "results.md").write_text(markdown(rows, upstream_rps, args))
    chart(rows, out / "chart.png")
    print(markdown(rows, upstream_rps, args))
    log(f"wrote {out}/results.json, results.md, chart.png")


if __name__ == "__main__":
    main()
