"""When the stream falters, with real parts: the gateway binary, kinesis-local
(a real Kinesis emulator, itself slow) and, between them, a TCP proxy on
127.0.0.1 that can delay each Kinesis call or cut the stream off. Every run
reads the stream back with boto3.

  slow     100 concurrent clients send one /import/batch of 50 events each
           (10 s client timeout, up to two retries of a 503 or a timeout, as
           an SDK does) while every Kinesis call is delayed 1-3 s. Run
           twice side by side: with the old settings (2 s attempt timeout that
           resends, 4 fixed calls, 5 s deadline) and with the defaults.
           Prints the 2xx share and the records in the stream per event;
           with the defaults, asserts >= 99 % 2xx and <= 1.02 records/event.
  outage   SPILL_DIR on; the stream is cut off in the middle of the load:
           every request 2xx, then the stream comes back and every event is
           in it, in order per key; a write cut off in flight may have been
           stored and is replayed too (at least once), so duplicates are
           counted and bounded by the requests in flight at the cut.
  kill     SPILL_DIR on, stream cut off, concurrent load (16 clients, at
           most 1000 batches of 10 each), then SIGKILL of the gateway once
           3000 events are acknowledged, while they still send; restarted on the same SPILL_DIR with the stream back, once
           its spill has drained: every event that got a 2xx is in the stream.
  drain    an outage fills the spill (SPILL_LANES=8), the stream comes
           back under live traffic, SIGKILL mid-drain, restart, drain to the
           end with live traffic: every acknowledged event present, in order
           per key. Against ferrokinesis in a process of its own
           (FERROKINESIS_ENDPOINT, run.sh starts it): kinesis-local spins at
           100 % CPU under this load.
  full     SPILL_DIR on a 1 MiB tmpfs (needs root): 503s once the disk is
           full, never a 2xx that is not in the stream afterwards, and 2xx
           again once replay has freed the disk.

  suites/faults/run.sh target/debug/clickstream-gateway [slow outage kill full drain]
"""

import asyncio
import collections
import concurrent.futures
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import boto3

from harness.gateway import Gateway, free_port
from harness.kinesis import read_stream as read_shards


class Proxy:
    """A TCP proxy to kinesis-local that can delay each request or refuse all."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.delay = None  # (low, high) seconds added before each request
        self.down = False
        self.connections = set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_until_complete(server.serve_forever())

    async def _serve(self, client_r, client_w):
        if self.down:
            client_w.close()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        idle = asyncio.Event()
        idle.set()  # no request waiting for its answer
        self.connections.add((client_w, up_w))

        async def forward_requests():
            while data := await client_r.read(65536):
                if idle.is_set() and self.delay:
                    await asyncio.sleep(random.uniform(*self.delay))
                idle.clear()
                up_w.write(data)
                await up_w.drain()

        async def forward_answers():
            while data := await up_r.read(65536):
                idle.set()
                client_w.write(data)
                await client_w.drain()

        try:
            await asyncio.gather(forward_requests(), forward_answers())
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard((client_w, up_w))
            client_w.close()
            up_w.close()

    def cut(self):
        """The stream goes away: new connections refused, open ones closed."""
        self.down = True

        def close_all():
            for client_w, up_w in list(self.connections):
                client_w.close()
                up_w.close()

        self.loop.call_soon_threadsafe(close_all)

    def restore(self):
        self.down = False


def post(url, body, headers=None, timeout=10.0):
    """(status, json or None); status 0 for a timeout or a refused connection."""
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, TimeoutError):
        return 0, None


def batch_body(run, client, first, count):
    return json.dumps([{"run": run, "client": client, "seq": first + i} for i in range(count)])


def wait_drained(gateway, within):
    """Whether the gateway's spill is empty (spill_records 0) within `within` s."""
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as r:
                if "\nspill_records 0\n" in r.read().decode():
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def first_copies_in_order(records, clients):
    """Whether each client's (key's) events, first copies only, are in order."""
    for c in range(clients):
        seen, firsts = set(), []
        for r in records:
            if r["client"] == f"c{c}" and r["seq"] not in seen:
                seen.add(r["seq"])
                firsts.append(r["seq"])
        if firsts != sorted(firsts):
            return False
    return True


def read_stream(kinesis, stream):
    """Every record's (partition key, decoded JSON), shard by shard."""
    return [(key, json.loads(data)) for _, key, data in read_shards(kinesis, stream)]


class Suite:
    def __init__(self, binary, kinesis_url):
        self.binary = binary
        self.kinesis_url = kinesis_url
        self.kinesis = boto3.client(
            "kinesis", endpoint_url=kinesis_url, region_name="us-east-1", aws_access_key_id="AKIDFAULT", aws_secret_access_key="secret"
        )
        self.proxy = Proxy(int(kinesis_url.rsplit(":", 1)[1]))
        self.failures = []
        self.streams = []
        self.gateways = []

    def stop_gateways(self):
        """Stops every gateway a check started, even one that raised."""
        for gateway in self.gateways:
            if gateway.proc.poll() is None:
                gateway.stop()
        self.gateways = []

    def stream(self, shards=1):
        """A new stream; the previous one is deleted, since kinesis-local
        allows 50 shards in all and other suites share it."""
        for old in self.streams:
            self.kinesis.delete_stream(StreamName=old, EnforceConsumerDeletion=True)
        name = f"faults-{uuid.uuid4().hex[:8]}"
        self.streams = [name]
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        self.kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
        return name

    def gateway(self, stream, spill_dir=None, **env):
        settings = {
            "KINESIS_STREAM_NAME": stream,
            "AWS_ENDPOINT_URL_KINESIS": f"http://127.0.0.1:{self.proxy.port}",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "AKIDFAULT",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "PARTITION_KEY_FIELDS": "/client",
            **env,
        }
        if spill_dir:
            settings["SPILL_DIR"] = spill_dir
        gateway = Gateway(self.binary, settings)
        self.gateways.append(gateway)
        return gateway

    def check(self, ok, what):
        print(("  ok    " if ok else "  FAIL  ") + what)
        if not ok:
            self.failures.append(what)

    def wait_for(self, stream, count, within):
        deadline = time.time() + within
        while True:
            records = read_stream(self.kinesis, stream)
            if len(records) >= count or time.time() > deadline:
                return records
            time.sleep(1)

    # --- slow -------------------------------------------------------------
    def slow_run(self, label, env):
        stream = self.stream(shards=2)
        gateway = self.gateway(stream, **env)
        run = uuid.uuid4().hex[:8]
        self.proxy.delay = (1.0, 3.0)
        first_try, final, answered_2xx = collections.Counter(), collections.Counter(), set()
        started = time.time()

        def client(c):
            body = batch_body(run, f"c{c}", 0, 50)
            for attempt in range(3):
                t0 = time.time()
                status, _ = post(gateway.url + "/import/batch", body, timeout=10)
                if attempt == 0:
                    first_try["2xx" if 200 <= status < 300 and time.time() - t0 <= 10 else status or "timeout"] += 1
                if 200 <= status < 300:
                    answered_2xx.add(c)
                    final["2xx"] += 1
                    return
                time.sleep(1)
            final[status or "timeout"] += 1

        with concurrent.futures.ThreadPoolExecutor(100) as pool:
            list(pool.map(client, range(100)))
        took = time.time() - started
        self.proxy.delay = None
        time.sleep(12)  # calls still in flight land (or not) before reading back
        records = [r for _, r in read_stream(self.kinesis, stream) if r.get("run") == run]
        distinct = {(r["client"], r["seq"]) for r in records}
        gateway.stop()
        share = first_try["2xx"] / 100
        per_event = len(records) / 5000
        acked = 50 * len(answered_2xx)
        print(
            f"  {label}: first try 2xx {share:.0%} ({dict(first_try)}), after retries {dict(final)}; "
            f"{len(records)} records for {len(distinct)} distinct of 5000 events sent: {per_event:.3f} records/event sent, "
            f"{len(records) / max(acked, 1):.3f} per event acknowledged; {took:.1f} s"
        )
        lost = [c for c in answered_2xx if any((f"c{c}", s) not in distinct for s in range(50))]
        self.check(not lost, f"{label}: every event of a 2xx'd request is in the stream ({len(lost)} requests missing events)")
        return share, per_event

    def slow(self):
        print("slow: 100 concurrent batches of 50 behind a 1-3 s delay per Kinesis call")
        before = self.slow_run(
            "before (KINESIS_ATTEMPT_TIMEOUT_MS=2000, BATCH_MAX_CONCURRENT_CALLS=4 fixed, 5 s deadline)",
            {
                "KINESIS_ATTEMPT_TIMEOUT_MS": "2000",
                "KINESIS_OPERATION_TIMEOUT_MS": "5000",
                "BATCH_ADAPTIVE_CONCURRENCY": "false",
                "BATCH_MAX_CONCURRENT_CALLS": "4",
            },
        )
        after = self.slow_run("after (defaults)", {})
        print(f"  figures: 2xx first try {before[0]:.0%} -> {after[0]:.0%}; records/event {before[1]:.3f} -> {after[1]:.3f}")
        self.check(after[0] >= 0.99, f"defaults: >= 99 % of requests 2xx within 10 s ({after[0]:.0%})")
        self.check(after[1] <= 1.02, f"defaults: <= 1.02 records per event ({after[1]:.3f})")

    # --- outage -----------------------------------------------------------
    def outage(self):
        print("outage: the stream is cut off in the middle of the load, with SPILL_DIR")
        stream = self.stream()
        spill = tempfile.mkdtemp(prefix="spill-outage-")
        gateway = self.gateway(stream, spill)
        run = uuid.uuid4().hex[:8]
        statuses = collections.Counter()

        def client(c):
            for b in range(10):
                status, _ = post(gateway.url + "/import/batch", batch_body(run, f"c{c}", b * 20, 20))
                statuses[status] += 1
                if c == 0 and b == 3:
                    self.proxy.cut()

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            list(pool.map(client, range(20)))
        self.check(set(statuses) <= {200, 202}, f"every request 2xx while the stream is away: {dict(statuses)}")
        self.check(statuses[202] > 0, "some were spilled (202)")
        self.proxy.restore()
        records = [(k, r) for k, r in self.wait_for(stream, 4000, 120) if r.get("run") == run]
        events = collections.Counter((r["client"], r["seq"]) for _, r in records)
        self.check(len(events) == 4000, f"every acknowledged event is in the stream ({len(events)} of 4000)")
        # A call in flight when the stream is cut may have been stored before
        # its answer was lost: the gateway cannot know, spills it, and replay
        # stores it again (at least once). At most the 20 requests in flight.
        dupes = sum(n - 1 for n in events.values())
        self.check(dupes <= 20 * 20, f"duplicates only from the writes cut off in flight ({dupes}, at most 400)")
        self.check(first_copies_in_order([r for _, r in records], 20), "in order per key (each event's first copy)")
        shutil.rmtree(spill, ignore_errors=True)
        gateway.stop()

    # --- kill -------------------------------------------------------------
    def kill(self):
        print("kill: SIGKILL of the gateway in the middle of a spill under concurrent load")
        stream = self.stream()
        spill = tempfile.mkdtemp(prefix="spill-kill-")
        gateway = self.gateway(stream, spill)
        run = uuid.uuid4().hex[:8]
        self.proxy.cut()
        acknowledged, lock, stop = set(), threading.Lock(), threading.Event()

        def client(c):
            b = 0
            while not stop.is_set() and b < 1000:
                status, _ = post(gateway.url + "/import/batch", batch_body(run, f"c{c}", b * 10, 10), timeout=5)
                if 200 <= status < 300:
                    with lock:
                        acknowledged.update((f"c{c}", b * 10 + i) for i in range(10))
                b += 1

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(client, c) for c in range(16)]
            # Once the spill is under way (the first requests wait for the
            # stream's failure), SIGKILL while the clients are still sending.
            deadline = time.time() + 30
            while len(acknowledged) < 3000 and time.time() < deadline:
                time.sleep(0.05)
            gateway.proc.kill()
            gateway.proc.wait()
            stop.set()
            for f in futures:
                f.result()
        self.check(len(acknowledged) > 0, f"{len(acknowledged)} events acknowledged before the kill")
        self.proxy.restore()
        restarted = self.gateway(stream, spill)
        started = time.time()
        drained = wait_drained(restarted, 300)
        self.check(drained, f"the restarted gateway drains its spill ({time.time() - started:.0f} s)")
        records = [r for _, r in self.wait_for(stream, len(acknowledged), 30) if r.get("run") == run]
        present = {(r["client"], r["seq"]) for r in records}
        missing = acknowledged - present
        self.check(not missing, f"every acknowledged event is in the stream after the restart ({len(missing)} missing)")
        print(f"  {len(records)} records for {len(acknowledged)} acknowledged events ({len(present - acknowledged)} unacknowledged also stored)")
        restarted.stop()
        shutil.rmtree(spill, ignore_errors=True)

    # --- drain ------------------------------------------------------------
    def drain(self):
        print("drain: SIGKILL in the middle of a drain with live traffic, then a drain with live traffic to the end")
        stream = self.stream()
        spill = tempfile.mkdtemp(prefix="spill-drain-")
        gateway = self.gateway(stream, spill, SPILL_LANES="8")
        run = uuid.uuid4().hex[:8]
        acknowledged, lock, stop = set(), threading.Lock(), threading.Event()
        batches = {}  # each client's next batch, so every key's events go out in order across phases

        def client(c, url):
            while not stop.is_set() and batches.get(c, 0) < 2000:
                b = batches.get(c, 0)
                status, _ = post(url + "/import/batch", batch_body(run, f"c{c}", b * 10, 10), timeout=10)
                if 200 <= status < 300:
                    with lock:
                        acknowledged.update((f"c{c}", b * 10 + i) for i in range(10))
                batches[c] = b + 1
                time.sleep(0.02)

        def load(url, until):
            stop.clear()
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                futures = [pool.submit(client, c, url) for c in range(16)]
                until()
                stop.set()
                for f in futures:
                    f.result()

        def spilled(g):
            try:
                with urllib.request.urlopen(g.url + "/metrics", timeout=5) as r:
                    text = r.read().decode()
                return float(text.split("\nspill_records ")[1].split("\n")[0])
            except (OSError, IndexError, ValueError):
                return -1

        # 1. An outage: the spill fills.
        self.proxy.cut()
        load(gateway.url, lambda: time.sleep(6))
        held = spilled(gateway)
        self.check(held > 0, f"the outage spilled {held:.0f} records")
        # 2. The stream is back but slow (200-400 ms per call, so the drain
        # takes long enough to be cut), live traffic goes on, and the gateway
        # is killed once a fifth of the backlog has been replayed.
        self.proxy.delay = (0.2, 0.4)
        self.proxy.restore()
        at_kill = {}

        def kill_mid_drain():
            deadline = time.time() + 30
            while time.time() < deadline:
                at_kill["records"] = spilled(gateway)
                if 0 < at_kill["records"] < 0.8 * held:
                    break
                time.sleep(0.05)
            gateway.proc.kill()
            gateway.proc.wait()

        load(gateway.url, kill_mid_drain)
        self.check(0 < at_kill.get("records", 0) < held,
                   f"SIGKILL mid-drain: {at_kill.get('records', 0):.0f} of {held:.0f} records still spilled")
        # 3. Restarted: it drains what is left while live traffic goes on.
        restarted = self.gateway(stream, spill, SPILL_LANES="8")
        load(restarted.url, lambda: time.sleep(4))
        started = time.time()
        drained = wait_drained(restarted, 300)
        self.proxy.delay = None
        self.check(drained, f"the restarted gateway drains its spill ({time.time() - started:.0f} s after the load)")
        records = [r for _, r in self.wait_for(stream, len(acknowledged), 60) if r.get("run") == run]
        present = {(r["client"], r["seq"]) for r in records}
        missing = acknowledged - present
        self.check(not missing, f"every acknowledged event is in the stream ({len(acknowledged)} acknowledged, {len(missing)} missing)")
        self.check(first_copies_in_order(records, 16), "in order per key (each event's first copy), across the kill and the drains")
        duplicates = len(records) - len({(r["client"], r["seq"]) for r in records})
        print(f"  {len(records)} records for {len(present)} distinct events: {duplicates} duplicates "
              f"(at least once: a replayed chunk whose ledger move the kill cut off is sent again)")
        # At most a chunk per lane in flight at the kill, plus the clients'
        # batches in flight when the stream was cut.
        self.check(duplicates <= 8 * 500 + 16 * 10, f"duplicates only from calls cut off by the kill or the outage ({duplicates}, at most 4160)")
        restarted.stop()
        shutil.rmtree(spill, ignore_errors=True)

    # --- full -------------------------------------------------------------
    def full(self):
        print("full: SPILL_DIR on a 1 MiB tmpfs")
        mount = tempfile.mkdtemp(prefix="spill-tmpfs-")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount]).returncode != 0:
            self.check(False, "mount a 1 MiB tmpfs (needs root)")
            return
        gateway = None
        try:
            stream = self.stream()
            gateway = self.gateway(stream, mount)
            run = uuid.uuid4().hex[:8]
            self.proxy.cut()
            accepted, refused = set(), 0
            pad = "x" * 2000
            for seq in range(1200):
                body = json.dumps({"run": run, "client": "c0", "seq": seq, "pad": pad})
                status, _ = post(gateway.url + "/import", body)
                if 200 <= status < 300:
                    accepted.add(seq)
                elif status == 503:
                    refused += 1
                else:
                    self.check(False, f"unexpected status {status}")
                    break
            self.check(refused > 0 and accepted, f"{len(accepted)} accepted, then {refused} refused 503 on a full disk")
            self.proxy.restore()
            records = [r for _, r in self.wait_for(stream, len(accepted), 120) if r.get("run") == run]
            present = {r["seq"] for r in records}
            self.check(accepted <= present, f"every accepted event is in the stream ({len(accepted - present)} missing)")
            time.sleep(2)
            status, _ = post(gateway.url + "/import", json.dumps({"run": run, "client": "c0", "seq": 99999}))
            self.check(200 <= status < 300, f"serving again once the disk has room ({status})")
            self.proxy.cut()
            status, _ = post(gateway.url + "/import", json.dumps({"run": run, "client": "c0", "seq": 100000}))
            self.check(status == 202, f"spilling again on the freed disk ({status})")
            self.proxy.restore()
        finally:
            if gateway:
                gateway.stop()
            subprocess.run(["umount", mount])


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    wanted = sys.argv[2:] or ["slow", "outage", "kill", "full", "drain"]
    suites = {}
    for name in wanted:
        # `drain` against ferrokinesis: eight lanes of 500-record calls plus
        # live traffic drive kinesis-local into a 100 % CPU spin that never
        # answers again (seen three times).
        if name == "drain":
            emulator = os.environ.get("FERROKINESIS_ENDPOINT") or sys.exit("drain needs FERROKINESIS_ENDPOINT (run.sh starts it)")
        else:
            emulator = os.environ.get("KINESIS_TEST_ENDPOINT", "http://127.0.0.1:4567")
        suite = suites.setdefault(emulator, Suite(binary, emulator))
        try:
            getattr(suite, name)()
        finally:
            suite.stop_gateways()
    failures = []
    for suite in suites.values():
        suite.stream()  # deletes the last one
        suite.kinesis.delete_stream(StreamName=suite.streams[0])
        failures += suite.failures
    if failures:
        sys.exit("FAILED:\n  " + "\n  ".join(failures))
    print("all fault checks passed")


if __name__ == "__main__":
    main()
