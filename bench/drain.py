#!/usr/bin/env python3
"""How fast the spill drains while live traffic keeps coming (issue #25), on
loopback only, release build.

1. The gateway starts with SPILL_DIR and its Kinesis endpoint on a port where
   nothing listens (the stream is down). BACKLOG Segment events (/v1/batch,
   100 per request, many users) are sent: all spilled.
2. The null Kinesis upstream starts on that port, answering every put after
   RTT ms: the stream is back. At the same moment live traffic starts: RATE
   events/s of Segment batches (100 events each). Half the live requests
   come from users whose lanes hold spilled records ("behind"), half from
   users of lanes that hold none ("free": the backlog was written with users
   of half the lanes only), so the two latencies can be told apart.
3. Every second: spill_records and the replay rate. It stops when the spill
   is empty (or after --limit s). With --all-lanes the backlog and every
   live request come from users of all lanes, as in an outage of a whole
   site and prints the drain time, the live
   latencies (p50/p99) per group, statuses, and records sent upstream per
   event (the null upstream counts them: > 1 means resends).

  python3 bench/drain.py --backlog 1000000 --rtt 50 --rate 20000
  python3 bench/drain.py --backlog 100000 --rtt 2000 --rate 2000
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_PORT, UPSTREAM_PORT = 4700, 4701
LANES = 8
SPILL = Path("/tmp/bench-drain-spill")


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def users_of(lanes, count, prefix):
    out, i = [], 0
    while len(out) < count:
        key = f"{prefix}-{i}"
        if crc32c(key.encode()) % LANES in lanes:
            out.append(key)
        i += 1
    return out


def body(users, start):
    batch = [{"type": "track", "event": "Product Viewed", "userId": users[(start + i) % len(users)],
              "messageId": f"m-{start}-{i}", "properties": {"sku": f"sku-{i % 40}", "price": 9.99, "pad": "x" * 300}}
             for i in range(100)]
    return json.dumps({"writeKey": "wk_drain_bench", "batch": batch}).encode()


def post(conn, payload):
    started = time.perf_counter()
    conn.request("POST", "/v1/batch", payload, {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status, time.perf_counter() - started


def metrics():
    with urllib.request.urlopen(f"http://127.0.0.1:{GATEWAY_PORT}/metrics", timeout=5) as r:
        text = r.read().decode()
    value = lambda name: float(text.split(f"\n{name} ")[1].split("\n")[0])
    return value("spill_records"), value("spill_replay_records_per_second")


def upstream_records():
    with urllib.request.urlopen(f"http://127.0.0.1:{UPSTREAM_PORT}/stats", timeout=5) as r:
        return json.loads(r.read())["records"]


def fill(backlog, users, threads=8):
    bodies = [body(users, i * 100) for i in range(50)]
    per = backlog // 100 // threads

    def run(t):
        conn = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=60)
        for i in range(per):
            status, _ = post(conn, bodies[(t + i) % len(bodies)])
            assert status == 200, status
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per * threads * 100


def live(rate, behind, free, stop, results, threads=16):
    """RATE events/s in batches of 100, paced, alternating behind/free users."""
    interval = threads * 100 / rate
    bodies = {"behind": [body(behind, i * 100) for i in range(20)], "free": [body(free, i * 100) for i in range(20)]}

    def run(t):
        conn = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=60)
        next_at, i = time.perf_counter() + t * interval / threads, 0
        while not stop.is_set():
            group = "behind" if (t + i) % 2 == 0 else "free"
            try:
                status, took = post(conn, bodies[group][i % 20])
            except OSError:
                conn = http.client.HTTPConnection("127.0.0.1", GATEWAY_PORT, timeout=60)
                status, took = 0, 0.0
            results.append((group, status, took, time.time()))
            i += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    return ts


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--rtt", type=int, default=50, help="ms the upstream takes per put")
    parser.add_argument("--rate", type=int, default=20_000, help="live events/s")
    parser.add_argument("--limit", type=int, default=300, help="seconds to wait for the drain at most")
    parser.add_argument("--all-lanes", action="store_true",
                        help="backlog and live traffic from users of every lane (no 'free' users)")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins", "--examples"], cwd=ROOT, check=True)
    shutil.rmtree(SPILL, ignore_errors=True)
    env = {"PATH": os.environ["PATH"], "HOST": "127.0.0.1", "PORT": str(GATEWAY_PORT), "KINESIS_STREAM_NAME": "bench",
           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_ENDPOINT_URL_KINESIS": f"http://127.0.0.1:{UPSTREAM_PORT}", "SPILL_DIR": str(SPILL),
           "SPILL_MAX_BYTES": str(8 << 30), "SPILL_LANES": str(LANES), "RUST_LOG": "warn"}
    gateway = subprocess.Popen([str(ROOT / "target/release/clickstream-gateway")], env=env, stdout=subprocess.DEVNULL)
    upstream = None
    try:
        time.sleep(1.5)
        if args.all_lanes:
            behind = free = users_of(set(range(LANES)), 10000, "user")
        else:
            behind = users_of(set(range(LANES // 2)), 5000, "user")
            free = users_of(set(range(LANES // 2, LANES)), 5000, "live")
        started = time.time()
        filled = fill(args.backlog, behind)
        print(f"backlog: {filled:,} events spilled in {time.time() - started:.1f} s; spill_records {metrics()[0]:,.0f}")
        upstream = subprocess.Popen([str(ROOT / "target/release/examples/null_kinesis"),
                                     f"127.0.0.1:{UPSTREAM_PORT}", str(args.rtt)], stderr=subprocess.DEVNULL)
        stop, results = threading.Event(), []
        back = time.time()
        threads = live(args.rate, behind, free, stop, results)
        drained_at, peak = None, 0
        while time.time() - back < args.limit:
            time.sleep(1)
            records, rate = metrics()
            peak = max(peak, records)
            print(f"  t={time.time() - back:5.1f} s  spill_records {records:>10,.0f}  replay {rate:>8,.0f}/s  "
                  f"live requests {len(results):,}")
            if records == 0:
                drained_at = time.time() - back
                break
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        if drained_at is None:
            # Live traffic stopped: wait for the rest, so records per event
            # compares every event stored with what was sent for it.
            deadline = time.time() + args.limit
            while metrics()[0] > 0 and time.time() < deadline:
                time.sleep(1)
            print(f"  live traffic stopped at {args.limit} s; the rest drained "
                  f"{'by t=%.0f s' % (time.time() - back) if metrics()[0] == 0 else 'NOT within another %d s' % args.limit}")
        time.sleep(3)  # calls still in flight land
        during = [r for r in results if drained_at is None or r[3] - back <= drained_at]
        sent_live = len(results) * 100
        print(f"\nRTT {args.rtt} ms, backlog {filled:,}, live {args.rate:,} events/s:")
        print(f"  drained: {'in %.1f s' % drained_at if drained_at else 'NOT within %d s' % args.limit}")
        for group in ("free", "behind"):
            took = [r[2] * 1000 for r in during if r[0] == group]
            statuses = {}
            for r in results:
                if r[0] == group:
                    statuses[r[1]] = statuses.get(r[1], 0) + 1
            print(f"  live requests of {group} users while draining: {len(took):,}, p50 {pct(took, 50):.1f} ms, "
                  f"p99 {pct(took, 99):.1f} ms; statuses {statuses}")
        total = upstream_records()
        print(f"  records sent upstream {total:,} for {filled + sent_live:,} events: "
              f"{total / (filled + sent_live):.4f} records per event")
    finally:
        for proc in (gateway, upstream):
            if proc:
                proc.terminate()
                proc.wait(timeout=30)
        shutil.rmtree(SPILL, ignore_errors=True)


if __name__ == "__main__":
    main()
