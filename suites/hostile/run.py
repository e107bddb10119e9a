#!/usr/bin/env python3
"""The hostile-input suite: every case of `cases.py` against the gateway binary.

    suites/hostile/run.sh target/debug/clickstream-gateway

Starts the gateway on 127.0.0.1 (a free port) with the file sink at its
defaults (and `CORS_ALLOWED_ORIGINS=https://allowed.example`), sends each case
on a new connection, and checks the answer's status.
For the bombs it also resets and reads the process's peak RSS (VmHWM), and
fails when a request made it grow more than the case allows. After every case
the gateway must still answer `/healthz`, and at the end the stored records
must be no larger than the requests that were answered 2xx could make.
Prints one line per case and a table of the bombs' peak RSS.

Then the sustained case (issue 36): a second gateway at the Kubernetes
manifests' budget (`MAX_IN_FLIGHT_BODY_BYTES=134217728`), 64 senders of
10,000-event gzipped batches for 15 s; its peak RSS must stay under the
budget plus 64 MiB, every answer a 200 or a 503, and afterwards the same
batch alone must be stored (200).
"""

import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time

from cases import BOMBS, CASES, CLOSED, tiny_events
from harness.gateway import Gateway
from harness.memory import reset_peak, status_kib

# The Kubernetes manifests' budget, and what the process may hold beyond it.
MANIFEST_BUDGET = 134217728
FIXED_BASE_MIB = 64


def first_status(port, raw, timeout=20):
    """Sends `raw` on a new connection; the first status code, or CLOSED."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway may answer and close before reading it all
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    line = data.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1])
    return CLOSED


def statuses(port, raw, count, timeout=5):
    """The status lines answered on one connection, until `count` or a quiet `timeout`."""
    found = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        try:
            while len(found) < count:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                found = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
        except (ConnectionResetError, socket.timeout):
            pass
    return found


def healthy(port):
    try:
        return first_status(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5) == 200
    except OSError:
        return False


def start(binary, work, **settings):
    """The gateway on a free loopback port with the file sink in `work`."""
    env = {"FILE_SINK_PATH": os.path.join(work, "records.ndjson"), "RUST_LOG": "info", **settings}
    return Gateway(binary, env, work=work, ready="/healthz")


def sustained_tiny_events(binary, senders=64, seconds=15):
    """The probe's sustained stream of tiny-event batches at the manifests' budget; failures, if any."""
    work = tempfile.mkdtemp(prefix="hostile-sustained-")
    gateway = start(binary, work, MAX_IN_FLIGHT_BODY_BYTES=str(MANIFEST_BUDGET))
    port = gateway.port
    body = tiny_events()
    raw = (
        "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    counts, lock = {}, threading.Lock()
    end = time.time() + seconds

    def send():
        while time.time() < end:
            try:
                status = first_status(port, raw, timeout=30)
            except OSError:
                status = CLOSED
            with lock:
                counts[status] = counts.get(status, 0) + 1

    try:
        base = status_kib(gateway.pid, "VmRSS")
        reset_peak(gateway.pid)
        threads = [threading.Thread(target=send) for _ in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peak = status_kib(gateway.pid, "VmHWM") / 1024
        bound = MANIFEST_BUDGET / (1 << 20) + FIXED_BASE_MIB
        # After the stream, the same batch alone is stored: the gateway still serves it.
        after = first_status(port, raw, timeout=30) if gateway.proc.poll() is None else CLOSED
        alive = gateway.proc.poll() is None and healthy(port) and after == 200
        print(
            f"sustained: {senders} senders x {seconds} s of 10,000-event batches ({len(body)} bytes gzipped) at "
            f"MAX_IN_FLIGHT_BODY_BYTES={MANIFEST_BUDGET}: answers {dict(sorted(counts.items()))}, "
            f"RSS {base / 1024:.1f} MiB idle, peak {peak:.1f} MiB (at most {bound:.0f})"
        )
        failures = []
        if peak > bound:
            failures.append(f"sustained tiny events: peak RSS {peak:.0f} MiB over {bound:.0f}")
        # Under this stream most are shed, and how many get through depends
        # on the machine: only 200 and 503 are checked, then one alone.
        if set(counts) - {200, 503}:
            failures.append(f"sustained tiny events: answers {counts}, expected 200s and 503s only")
        if not alive:
            failures.append(f"sustained tiny events: afterwards the batch alone got {after}, not 200")
        return failures
    finally:
        gateway.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/clickstream-gateway")
    work = tempfile.mkdtemp(prefix="hostile-")
    records = os.path.join(work, "records.ndjson")
    gateway = start(binary, work, CORS_ALLOWED_ORIGINS="https://allowed.example")
    port = gateway.port
    failures = []
    try:
        start_kib = status_kib(gateway.pid, "VmRSS")
        rows = []
        for case in BOMBS + CASES:
            reset_peak(gateway.pid)
            before = status_kib(gateway.pid, "VmRSS")
            if case.name == "pipelined requests":
                got = statuses(port, case.request, 3)
                ok = got == [200, 200, 200]
                shown = got
            else:
                got = first_status(port, case.request)
                ok = got in case.expect
                shown = got
            peak = status_kib(gateway.pid, "VmHWM")
            growth_mib = (peak - before) / 1024
            if growth_mib > case.max_rss_growth_mib:
                ok = False
                shown = f"{shown}, peak RSS grew {growth_mib:.0f} MiB (at most {case.max_rss_growth_mib})"
            alive = gateway.proc.poll() is None and healthy(port)
            if not alive:
                ok = False
                shown = f"{shown}, and the gateway stopped answering"
            print(f"{'ok  ' if ok else 'FAIL'} {case.name}: {shown} (expected {sorted(case.expect)})", flush=True)
            if not ok:
                failures.append(case.name)
            if case in BOMBS:
                rows.append((case.name, got, peak / 1024, growth_mib))
            if not alive:
                break
        stored = os.path.getsize(records) if os.path.exists(records) else 0
        print(f"\nstart RSS {start_kib / 1024:.1f} MiB; records stored: {stored} bytes")
        print("| bomb | status | peak RSS while it ran | growth over the RSS before it |\n|---|---|---|---|")
        for name, status, peak, growth in rows:
            print(f"| {name} | {status} | {peak:.1f} MiB | {growth:.1f} MiB |")
        # Every 2xx case above is small: a few KB of records at most.
        if stored > 1 << 20:
            failures.append(f"the file sink holds {stored} bytes after the suite")
    finally:
        gateway.stop()
    failures += sustained_tiny_events(binary)
    if failures:
        print(f"\n{len(failures)} hostile case(s) failed: {failures}", file=sys.stderr)
        print(open(os.path.join(work, "gateway.log")).read()[-3000:], file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nall {len(BOMBS) + len(CASES)} hostile cases and the sustained stream passed")


if __name__ == "__main__":
    main()
