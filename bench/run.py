#!/usr/bin/env python3
"""Side-by-side throughput benchmark of the gateway, on loopback only.

Builds release binaries, starts a null Kinesis upstream (measured alone
first), then for each system and connection count starts the system fresh,
warms up, drives `wrk` with ~1 KiB clickstream events and records requests/s,
events/s, p50/p99/max latency, non-2xx and socket errors, the server's peak
RSS, CPU seconds and CPU microseconds per event, upstream calls per 1000
events, and how often wrk, the upstream and the system went to sleep per
1000 requests (on loopback, waking a sleeping reader is charged to the
writer). Systems (the gateway always runs with its defaults; a system's name
says what differs):

  bare          a bare hyper server answering a canned receipt (the ceiling)
  gateway       the gateway, defaults (batching on, no access log), POST /import
  unbatched     the gateway, BATCHING=false (one PutRecord per request)
  batch10       the gateway, POST /import/batch with 10 events per request
  batch100      the gateway, POST /import/batch with 100 events per request
  segment100    the gateway, POST /v1/batch (Segment's protocol) with 100
                events per request, as the server SDKs send them
  posthog100    the gateway, POST /batch/ (PostHog's protocol), 100 events
  access-log    the gateway, ACCESS_LOG=true, stdout read by a pipe (a log shipper)
  access-file   the gateway, ACCESS_LOG=true, stdout to a file
  spill100      the gateway with SPILL_DIR and the stream down: every batch of
                100 events is appended and fsynced before its 2xx; then the
                gateway restarts with the stream up and the time to drain
                the spill is measured (printed as "drain")
  manifest-batch100, manifest-segment100, manifest-posthog100
                the doors at the Kubernetes manifests' MAX_IN_FLIGHT_BODY_BYTES
                (128 MiB) with 1000 and 2000 connections: the run fails when
                peak RSS reaches the pods' 512 MiB limit
  manifest-spill100
                the same, with the spill on and the stream down (the spill
                variant of the manifests), then its drain
  pubsub-segment100
                the gateway with SINK=pubsub, POST /v1/batch with 100 events,
                against Google's Pub/Sub emulator started on 127.0.0.1 (its
                own CPU per event is reported as emulator_cpu_us_per_event)
  kafka-posthog100, kafka-e, kafka-e-unbatched
                the gateway with SINK=kafka and linger.ms 20, PostHog's /batch/
                with 100 events and /e/ with one (kafka-e-unbatched: BATCHING=false),
                against the mock cluster: the doors capture-* measures
  kafka-track, kafka-import, kafka-snowplow-get
                the other one-event doors the same way: Segment's /v1/track,
                /import, and Snowplow's GET /i with the event in the query
  capture-batch100, capture-e
                PostHog's capture (with --capture PATH: built from that copy of
                PostHog/hog-rs by bench/capture.sh), same doors, same broker,
                with a redis-server it needs at start
  tansu-posthog100, tansu-e, capture-tansu-batch100, capture-tansu-e
                the same four against tansu (below) instead of the mock cluster
  kafka-batch100, kafka-segment100
                the gateway with SINK=kafka, POST /import/batch and POST
                /v1/batch with 100 events, against librdkafka's mock cluster
                in a process of its own (bench/mock_kafka.rs: in-memory logs,
                not the bottleneck), started fresh for each measurement on
                the load's core when pinned; its CPU per event is reported
                as broker_cpu_us_per_event
  tansu-segment100
                the same /v1/batch against tansu, a real Kafka broker
                (scripts/tansu.sh, in memory, 8 partitions), also fresh per
                measurement
  ids-segment100, dedupe-segment100, dedupe-redis-segment100
                /v1/batch with 100 events whose ids are new in every request
                (wrk.lua's BENCH_UNIQUE_IDS): dedupe off, DEDUPE_WINDOW_SECONDS
                with ids in the process, and with a redis-server on the load's
                core (its CPU per event reported as redis_cpu_us_per_event)
  live-off      the gateway with ADMIN_TOKEN set (the live view on), nobody
                watching: the request path's cost is one atomic load
  live-viewer   the same with one viewer reading /live/events (curl -N, on
                the load's core) for the whole run
  go, node      the seed's peer servers in ../shared/peers (with --peers)

--repeat N runs the whole list of systems N times, interleaved (A B C A B
C ...), and prints each system's median CPU per event per connection count:
use it to compare systems on a noisy machine, e.g.
  bench/run.py --systems gateway,live-off,live-viewer --connections 50,500 --repeat 5 --pin no

--ab REF builds the git ref REF into its own worktree and target directory
and runs it (A) and the working tree's build (B) on POST /import with the
null upstream, interleaved A B A B, --pairs pairs per connection count
(default 50,500), ACCESS_LOG=false in both; it prints each pair's CPU per
request B/A and their median, and writes ab.json to --out. --ab-system
batch100 (or batch10, segment100, posthog100) runs the A/B on that door
instead, per event.

--pin runs the system under test alone on CPU 0 and wrk and the upstream on
CPU 1 (taskset), so CPU per event and requests/s per core are the system's
own; without it everything shares both cores, as on a 2-core box.

Writes results.json, results.md and chart.png to --out. Every wrk run is
bounded by --duration; every address is 127.0.0.1.
"""

import argparse
import base64
import copy
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT.parent / "shared" / "peers"
UPSTREAM_PORT = 4599
PUBSUB_PORT = 4597
UPSTREAM = {"pid": None}  # the null upstream of the current pinning mode
PUBSUB_EMULATOR = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
EMULATOR = {}  # the running Pub/Sub emulator, when a pubsub system is measured
CLOSED_PORT = 4598  # nothing listens here: the stream is down
SPILL_DIR = Path("/tmp/bench-spill")
MANIFEST_LIMIT_MIB = 512
SYSTEM_PORT = 4600
REDIS_PORT = 4596  # redis-server for the dedupe systems
TICKS = os.sysconf("SC_CLK_TCK")
LIVE_TOKEN = "bench-live-view-token-0123456789"


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


def status_total(pid, field, threads=False):
    """`field` of /proc/PID/status summed over a process and its children
    (and, with `threads`, over each of their threads)."""
    total = 0
    for p in [pid] + children(pid):
        paths = Path(f"/proc/{p}/task").glob("*/status") if threads else [Path(f"/proc/{p}/status")]
        for status in paths:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
    return total


def sleeps(pid):
    """Times the threads of a process and its children went to sleep
    (voluntary context switches): each is a wake-up someone paid for."""
    return status_total(pid, "voluntary_ctxt_switches", threads=True)


def peak_rss_mib(pid):
    return status_total(pid, "VmHWM") / 1024


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]
    except FileNotFoundError:
        return []


def start_upstream(pin):
    """The null Kinesis upstream, on the load's core when pinned, once it listens."""
    proc = subprocess.Popen(pinned("1" if pin else None) + [
        str(ROOT / "target" / "release" / "examples" / "null_kinesis"), f"127.0.0.1:{UPSTREAM_PORT}"],
        stderr=subprocess.DEVNULL)
    UPSTREAM["pid"] = proc.pid
    try:
        wait_for_port(UPSTREAM_PORT, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def upstream_stats():
    with urllib.request.urlopen(f"http://127.0.0.1:{UPSTREAM_PORT}/stats", timeout=5) as r:
        return json.load(r)


def wrk(port, connections, duration, path="/import", body=None, cpus=None, unique=False, method="POST"):
    env = dict(os.environ, BENCH_BODY=str(body or ROOT / "bench" / "event.json"), BENCH_UNIQUE_IDS="1" if unique else "0",
               BENCH_METHOD=method)
    cmd = pinned(cpus) + [
        "wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
        "-s", str(ROOT / "bench" / "wrk.lua"), f"http://127.0.0.1:{port}{path}",
    ]
    slept = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nvcsw
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60).stdout
    slept = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nvcsw - slept
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return dict(json.loads(line[len("BENCH_JSON "):]), load_sleeps=slept)
    raise RuntimeError(f"wrk printed no summary:\n{out}")


def pinned(cpus):
    """A taskset prefix that keeps a process on `cpus` ("0", "1"), or nothing."""
    return ["taskset", "-c", cpus] if cpus else []


def aws_env(port):
    """Where the null upstream is, and nothing else: the gateway runs with its
    defaults (logging included), as a user who copies nothing gets it."""
    return {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "KINESIS_STREAM_NAME": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_ENDPOINT_URL_KINESIS": f"http://127.0.0.1:{UPSTREAM_PORT}",
        "PATH": os.environ.get("PATH", ""),
    }


def batch_body(events, shape="array"):
    """`events` copies of the ~1 KiB event, each with its own id and one of 10
    users: a JSON array, or a Segment (`{"batch": [...]}`) or PostHog
    (`{"api_key": ..., "batch": [...]}`) batch."""
    event = json.loads((ROOT / "bench" / "event.json").read_text())
    if shape in ("posthog", "posthog-one"):
        event = {"event": event["event"], "properties": event["properties"], "timestamp": event["timestamp"]}
    elif shape == "posthog-1k":
        # The same event with the page and client as posthog-js's `$`
        # properties (from the Segment event's context): ~1 KiB, as the
        # other doors' events and posthog-js's own are.
        context = {f"${name}": value for name, value in event["context"].items()}
        event = {"event": event["event"], "properties": dict(event["properties"], **context),
                 "timestamp": event["timestamp"]}
    items = []
    for i in range(events):
        if shape in ("posthog", "posthog-one", "posthog-1k"):
            item = dict(event, distinct_id=f"user_{i % 10}", uuid=f"0190aaaa-0000-7000-8000-{i:012d}")
        else:
            item = dict(event, messageId=f"bench-{i:04d}", userId=f"user_{i % 10}")
        items.append(json.dumps(item, separators=(",", ":")))
    array = "[" + ",".join(items) + "]"
    body = {
        "array": array,
        "segment": '{"batch":' + array + ',"sentAt":"2026-11-22T19:40:00.120Z"}',
        "posthog": '{"api_key":"phc_bench","batch":' + array + ',"sent_at":"2026-11-22T19:40:00.120Z"}',
        "posthog-1k": '{"api_key":"phc_bench","batch":' + array + ',"sent_at":"2026-11-22T19:40:00.120Z"}',
        # One event on /e, as posthog-js sends a single capture.
        "posthog-one": items[0][:-1] + ',"api_key":"phc_bench"}',
        # One event on /v1/track, as analytics.js sends it by default.
        "segment-one": items[0][:-1] + ',"writeKey":"bench-write-key"}',
    }[shape]
    path = Path(f"/tmp/bench-{shape}-{events}.json")
    path.write_text(body)
    return path


def snowplow_query():
    """GET /i with one page-view-sized Snowplow event in the query, as the
    JavaScript tracker sends it: tracker parameters, the context base64url
    encoded (cx), ~1 KiB in all."""
    event = json.loads((ROOT / "bench" / "event.json").read_text())
    context = {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
               "data": [{"schema": "iglu:com.acme/product/jsonschema/1-0-0", "data": event["properties"]}]}
    params = {
        "e": "se", "se_ca": "shop", "se_ac": "add", "se_la": event["properties"]["sku"], "se_va": "18.99",
        "eid": "0190aaaa-0000-7000-8000-000000000001", "tv": "js-3.24.2", "tna": "sp", "aid": "bench-app",
        "p": "web", "dtm": "1763840400000", "stm": "1763840400120", "duid": event["anonymousId"], "uid": event["userId"],
        "url": event["properties"]["url"], "page": event["properties"]["name"], "res": "1920x1080", "lang": "en-US",
        "cx": base64.urlsafe_b64encode(json.dumps(context, separators=(",", ":")).encode()).decode().rstrip("="),
    }
    return "/i?" + urllib.parse.urlencode(params)


class Case:
    """One system under test: how to start it, what to send, what it logs to."""

    def __init__(self, cmd, env, path="/import", events=1, stdout="null", connections=None, shape="array", spill=None,
                 emulator=False, viewer=False, broker=None, unique=False, redis=False,
                 broker_env="KAFKA_BOOTSTRAP_SERVERS", method="POST"):
        self.method = method  # GET: the event is in `path`'s query, no body
        self.cmd, self.env, self.path, self.events, self.stdout = cmd, env, path, events, stdout
        self.broker_env = broker_env  # the variable that names the broker (capture's is KAFKA_HOSTS)
        self.unique = unique  # every request's events get new ids (wrk.lua's BENCH_UNIQUE_IDS)
        self.redis = redis  # a redis-server started for each measurement, as REDIS_URL
        self.broker = broker  # a Kafka broker started for each measurement: "mock" or "tansu"
        self.viewer = viewer  # one viewer of the live view reads /live/events throughout
        self.emulator = emulator  # needs the Pub/Sub emulator
        self.body = batch_body(events, shape) if events > 1 or shape != "array" else None
        self.connections = connections
        self.spill = spill  # SPILL_DIR, emptied before each run


def systems(args):
    release = ROOT / "target" / "release"
    gateway = [str(release / "clickstream-gateway")]
    env = aws_env(SYSTEM_PORT)
    found = {
        "bare": Case([str(release / "examples" / "bare_hyper"), f"127.0.0.1:{SYSTEM_PORT}"], {}),
        "gateway": Case(gateway, env),
        "unbatched": Case(gateway, dict(env, BATCHING="false")),
        "batch10": Case(gateway, env, "/import/batch", 10, connections=[50, 500]),
        "batch100": Case(gateway, env, "/import/batch", 100, connections=[50, 500]),
        "segment100": Case(gateway, env, "/v1/batch", 100, connections=[50, 500], shape="segment"),
        "posthog100": Case(gateway, env, "/batch/", 100, connections=[50, 500], shape="posthog"),
        "access-log": Case(gateway, dict(env, ACCESS_LOG="true"), stdout="pipe", connections=[50, 500]),
        "access-file": Case(gateway, dict(env, ACCESS_LOG="true"), stdout="file", connections=[50, 500]),
        "spill100": Case(gateway, dict(env, AWS_ENDPOINT_URL_KINESIS=f"http://127.0.0.1:{CLOSED_PORT}",
                                               SPILL_DIR=str(SPILL_DIR), SPILL_MAX_BYTES=str(16 << 30)),
                         "/import/batch", 100, connections=[50, 500], spill=SPILL_DIR),
    }
    manifest = dict(env, MAX_IN_FLIGHT_BODY_BYTES=str(128 << 20))
    for door, path, shape in [("batch100", "/import/batch", "array"), ("segment100", "/v1/batch", "segment"),
                              ("posthog100", "/batch/", "posthog")]:
        found["manifest-" + door] = Case(gateway, manifest, path, 100, connections=[1000, 2000], shape=shape)
    # The spill variant's pods (deploy/kubernetes/spill), the stream down: every batch spilled.
    found["manifest-spill100"] = Case(gateway, dict(found["spill100"].env, MAX_IN_FLIGHT_BODY_BYTES=str(128 << 20)),
                                      "/import/batch", 100, connections=[1000, 2000], spill=SPILL_DIR)
    found["pubsub-segment100"] = Case(
        gateway,
        {"HOST": "127.0.0.1", "PORT": str(SYSTEM_PORT), "SINK": "pubsub", "PATH": os.environ.get("PATH", ""),
         "PUBSUB_TOPIC": "projects/bench/topics/clicks", "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{PUBSUB_PORT}"},
        "/v1/batch", 100, connections=[50, 500], shape="segment", emulator=True)
    kafka = {"HOST": "127.0.0.1", "PORT": str(SYSTEM_PORT), "SINK": "kafka", "KAFKA_TOPIC": "clicks",
             "PATH": os.environ.get("PATH", "")}
    found["kafka-batch100"] = Case(gateway, kafka, "/import/batch", 100, connections=[50, 500], broker="mock")
    found["kafka-segment100"] = Case(gateway, kafka, "/v1/batch", 100, connections=[50, 500], shape="segment",
                                     broker="mock")
    found["tansu-segment100"] = Case(gateway, kafka, "/v1/batch", 100, connections=[50, 500], shape="segment",
                                     broker="tansu")
    # Each event once (DEDUPE_WINDOW_SECONDS): every request's events are new,
    # against the same body with dedupe off.
    found["ids-segment100"] = Case(gateway, env, "/v1/batch", 100, connections=[50, 500], shape="segment", unique=True)
    found["dedupe-segment100"] = Case(gateway, dict(env, DEDUPE_WINDOW_SECONDS="600"), "/v1/batch", 100,
                                      connections=[50, 500], shape="segment", unique=True)
    found["dedupe-redis-segment100"] = Case(gateway, dict(env, DEDUPE_WINDOW_SECONDS="600"), "/v1/batch", 100,
                                            connections=[50, 500], shape="segment", unique=True, redis=True)
    found["live-off"] = Case(gateway, dict(env, ADMIN_TOKEN=LIVE_TOKEN))
    found["live-viewer"] = Case(gateway, dict(env, ADMIN_TOKEN=LIVE_TOKEN), viewer=True)
    # PostHog's capture beside the gateway, both to the mock cluster with
    # linger.ms 20 (capture's default), answering after the broker's ack.
    linger = {"KAFKA_PROPERTY_LINGER_MS": "20"}
    found["kafka-posthog100"] = Case(gateway, dict(kafka, **linger), "/batch/", 100, connections=[50, 500],
                                     shape="posthog", broker="mock")
    found["kafka-e"] = Case(gateway, dict(kafka, **linger), "/e/", 1, connections=[50, 500], shape="posthog-one",
                            broker="mock")
    # The other one-event doors on the same broker: Segment's /v1/track,
    # /import, Snowplow's GET /i (the event in the query, ~1 KiB of it).
    found["kafka-track"] = Case(gateway, dict(kafka, **linger), "/v1/track", 1, connections=[50, 500],
                                shape="segment-one", broker="mock")
    found["kafka-import"] = Case(gateway, dict(kafka, **linger), "/import", 1, connections=[50, 500], broker="mock")
    found["kafka-snowplow-get"] = Case(gateway, dict(kafka, **linger), snowplow_query(), 1, connections=[50, 500],
                                       broker="mock", method="GET")
    # The writer's gathering off (BATCHING=false): librdkafka's linger alone.
    found["kafka-e-unbatched"] = Case(gateway, dict(kafka, BATCHING="false", **linger), "/e/", 1, connections=[50, 500],
                                      shape="posthog-one", broker="mock")
    # The same two doors against tansu, a real broker.
    found["tansu-posthog100"] = Case(gateway, dict(kafka, **linger), "/batch/", 100, connections=[50, 500],
                                     shape="posthog", broker="tansu")
    found["tansu-e"] = Case(gateway, dict(kafka, **linger), "/e/", 1, connections=[50, 500], shape="posthog-one",
                            broker="tansu")
    if args.capture:
        capture = [build_capture(args.capture)]
        capture_env = {"ADDRESS": f"127.0.0.1:{SYSTEM_PORT}", "KAFKA_TOPIC": "clicks",
                       "KAFKA_PRODUCER_LINGER_MS": "20", "PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"}
        for broker, prefix in (("mock", "capture"), ("tansu", "capture-tansu")):
            found[prefix + "-batch100"] = Case(capture, capture_env, "/batch/", 100, connections=[50, 500],
                                               shape="posthog", broker=broker, redis=True, broker_env="KAFKA_HOSTS")
            found[prefix + "-e"] = Case(capture, capture_env, "/e/", 1, connections=[50, 500], shape="posthog-one",
                                        broker=broker, redis=True, broker_env="KAFKA_HOSTS")
    if args.peers:
        go, node = build_peers()
        found["go"] = Case([go], env)
        found["node"] = Case(["node", str(node / "server.js")], env)
    names = args.systems.split(",") if args.systems else list(found)
    return {name: found[name] for name in names if name in found}


def build_capture(source):
    """PostHog's capture, built from `source` (a copy of PostHog/hog-rs) by
    bench/capture.sh outside the repository."""
    out = subprocess.run([str(ROOT / "bench" / "capture.sh"), source, "/tmp/peers/capture"], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return out


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


def start_emulator(pin):
    """Google's Pub/Sub emulator on 127.0.0.1 (on the load's core when
    pinned), with the bench topic."""
    if "proc" in EMULATOR:
        return
    proc = subprocess.Popen(pinned("1" if pin else None) + [PUBSUB_EMULATOR, "--host=127.0.0.1", f"--port={PUBSUB_PORT}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    EMULATOR["proc"] = proc
    deadline = time.time() + 60
    while True:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{PUBSUB_PORT}/v1/projects/bench/topics/clicks",
                                             data=b"{}", method="PUT", headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=2).read()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def stop_emulator():
    proc = EMULATOR.pop("proc", None)
    if proc:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def start_broker(kind, pin):
    """A fresh Kafka broker on 127.0.0.1 (on the load's core when pinned):
    (its process id, bootstrap servers, how to stop it)."""
    if kind == "mock":
        proc = subprocess.Popen(pinned("1" if pin else None) + [str(ROOT / "target" / "release" / "examples" / "mock_kafka"),
                                "clicks", "8"], stdout=subprocess.PIPE, text=True)
        bootstrap = proc.stdout.readline().strip()

        def stop_mock():
            proc.kill()
            proc.wait(timeout=15)
        return proc.pid, bootstrap, stop_mock
    script = str(ROOT / "scripts" / "tansu.sh")
    subprocess.run(pinned("1" if pin else None) + [script, "start"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([script, "topic", "clicks", "8"], check=True)
    pid = int((ROOT / "target" / "tansu" / "pid").read_text())
    bootstrap = subprocess.run([script, "bootstrap"], capture_output=True, text=True, check=True).stdout.strip()
    return pid, bootstrap, lambda: subprocess.run([script, "stop"], check=True)


def measure(name, case, connections, duration, pin):
    system_cpu, load_cpu = ("0", "1") if pin else (None, None)
    if case.emulator:
        start_emulator(pin)
    env = case.env
    broker = None
    stop_redis = None  # Redis beside a broker (capture needs both)
    if case.broker:
        broker_pid, bootstrap, stop_broker = start_broker(case.broker, pin)
        env = dict(env, **{case.broker_env: bootstrap})
        broker = (broker_pid, stop_broker)
    if case.redis:
        redis_port = REDIS_PORT
        redis = subprocess.Popen(pinned(load_cpu) + ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                                     "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_for_port(redis_port, redis)
        env = dict(env, REDIS_URL=f"redis://127.0.0.1:{redis_port}")

        def kill_redis():
            redis.kill()
            redis.wait()
        if broker:
            stop_redis = kill_redis
        else:
            broker = (redis.pid, kill_redis)
    log_path = Path(f"/tmp/bench-{name}-{connections}.log")
    if case.spill:
        shutil.rmtree(case.spill, ignore_errors=True)
    stdout = {"null": subprocess.DEVNULL, "pipe": subprocess.PIPE, "file": open(log_path, "wb")}[case.stdout]
    proc = subprocess.Popen(pinned(system_cpu) + case.cmd, env=env or None, cwd=ROOT,
                            stdout=stdout, stderr=subprocess.DEVNULL)
    # A log shipper reading the pipe (on the load generator's core when pinned).
    reader = subprocess.Popen(pinned(load_cpu) + ["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL) \
        if case.stdout == "pipe" else None
    viewer = None
    try:
        wait_for_port(SYSTEM_PORT, proc)
        time.sleep(0.3)  # node's cluster workers start after the primary binds
        if case.viewer:
            viewer = subprocess.Popen(pinned(load_cpu) + [
                "curl", "-sN", "-H", f"Authorization: Bearer {LIVE_TOKEN}",
                f"http://127.0.0.1:{SYSTEM_PORT}/live/events"], stdout=subprocess.DEVNULL)
        wrk(SYSTEM_PORT, connections, 2, case.path, case.body, load_cpu, case.unique, case.method)  # warm-up: connections, pools, JIT
        emulator = EMULATOR["proc"].pid if case.emulator else broker[0] if broker else None
        before_cpu, before, before_sleeps = cpu_seconds(proc.pid), upstream_stats(), sleeps(proc.pid)
        upstream_slept = sleeps(UPSTREAM["pid"])
        emulator_before = cpu_seconds(emulator) if emulator else 0.0
        result = wrk(SYSTEM_PORT, connections, duration, case.path, case.body, load_cpu, case.unique, case.method)
        after_cpu, after, after_sleeps = cpu_seconds(proc.pid), upstream_stats(), sleeps(proc.pid)
        upstream_slept = sleeps(UPSTREAM["pid"]) - upstream_slept
        emulator_cpu = (cpu_seconds(emulator) - emulator_before) if emulator else None
        rss = peak_rss_mib(proc.pid)
    finally:
        if viewer:
            viewer.kill()
            viewer.wait(timeout=15)
        stop(proc)
        if broker:
            broker[1]()
        if stop_redis:
            stop_redis()
        if reader:
            reader.wait(timeout=15)
        if case.stdout == "file":
            stdout.close()
    calls = (after["put_record"] - before["put_record"]) + (after["put_records"] - before["put_records"])
    seconds = result["duration_us"] / 1e6
    # Only answered-2xx requests count: a shed batch stored nothing.
    events = (result["requests"] - result["non2xx"]) * case.events
    cpu = after_cpu - before_cpu
    row = {
        "system": name,
        "pinned": pin,
        "connections": connections,
        "events_per_request": case.events,
        "requests": result["requests"],
        "rps": round(result["requests"] / seconds, 1),
        "events_per_s": round(events / seconds, 1),  # stored events only
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "non2xx": result["non2xx"],
        "socket_errors": result["connect_errors"] + result["read_errors"] + result["write_errors"] + result["timeouts"],
        "peak_rss_mib": round(rss, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_us_per_event": round(cpu * 1e6 / max(events, 1), 1),
        "upstream_calls_per_1000": None if name == "bare" else round(1000 * calls / max(events, 1), 1),
        # Wake-ups per request: on loopback the kernel charges waking a
        # sleeping reader to the writer, so the system under test pays for
        # wrk's (and the upstream's) sleeps, and they pay for its own.
        "load_sleeps_per_request": round(result["load_sleeps"] / max(result["requests"], 1), 3),
        "upstream_sleeps_per_request": round(upstream_slept / max(result["requests"], 1), 3),
        "system_sleeps_per_request": round((after_sleeps - before_sleeps) / max(result["requests"], 1), 3),
        "log_bytes": log_path.stat().st_size if case.stdout == "file" else None,
    }
    if emulator_cpu is not None:
        label = ("broker_cpu_us_per_event" if case.broker else "redis_cpu_us_per_event" if case.redis
                 else "emulator_cpu_us_per_event")
        row[label] = round(emulator_cpu * 1e6 / max(events, 1), 1)
        row["upstream_calls_per_1000"] = None
    if case.spill:
        row["drain"] = drain(case, pin)
    log(json.dumps(row))
    return row


def drain(case, pin):
    """Restarts the gateway on the spill with the stream up: how long until
    the spill is empty, and at what rate."""
    env = dict(case.env, AWS_ENDPOINT_URL_KINESIS=f"http://127.0.0.1:{UPSTREAM_PORT}")
    proc = subprocess.Popen(pinned("0" if pin else None) + case.cmd, env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(SYSTEM_PORT, proc)
        started, first, cpu0 = time.time(), None, cpu_seconds(proc.pid)
        while time.time() - started < 600:
            text = urllib.request.urlopen(f"http://127.0.0.1:{SYSTEM_PORT}/metrics", timeout=5).read().decode()
            waiting = next(float(line.split()[1]) for line in text.splitlines() if line.startswith("spill_records "))
            first = waiting if first is None else first
            if waiting == 0:
                break
            time.sleep(0.2)
        seconds = time.time() - started
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        stop(proc)
    result = {"records": first, "seconds": round(seconds, 1), "records_per_s": round((first or 0) / seconds),
              "cpu_us_per_record": round(cpu * 1e6 / max(first or 1, 1), 1)}
    log("drain", json.dumps(result))
    return result

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


def cpu_model():
    """The CPU's model name: figures from different hosts do not compare."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"


def markdown(rows, upstream_rps, args):
    lines = [
        f"Null upstream alone (PutRecord, 50 connections): **{upstream_rps:,.0f} req/s**.",
        "",
        f"wrk -t2 --timeout 10s, {args.duration} s per run after a 2 s warm-up, ~1 KiB events, on one "
        f"{os.cpu_count()}-core machine ({cpu_model()}). Pinned rows: the system alone on CPU 0, wrk and the upstream on "
        "CPU 1. Unpinned rows: everything shares both cores. Compare ratios within one run.",
        "",
        "| system | pinned | conns | events/req | req/s | events/s | CPU µs/event | p50 ms | p99 ms | max ms "
        "| non-2xx | socket errors | peak RSS MiB | upstream calls / 1000 events | sleeps / 1000 req: wrk, upstream, system |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        calls = "-" if r["upstream_calls_per_1000"] is None else f'{r["upstream_calls_per_1000"]:.1f}'
        lines.append(
            f'| {r["system"]} | {"yes" if r["pinned"] else "no"} | {r["connections"]} | {r["events_per_request"]} '
            f'| {r["rps"]:,.0f} | {r["events_per_s"]:,.0f} | {r["cpu_us_per_event"]:.1f} | {r["p50_ms"]:.2f} '
            f'| {r["p99_ms"]:.2f} | {r["max_ms"]:.1f} | {r["non2xx"]} | {r["socket_errors"]} '
            f'| {r["peak_rss_mib"]:.1f} | {calls} | {1000 * r["load_sleeps_per_request"]:.0f}, '
            f'{1000 * r["upstream_sleeps_per_request"]:.0f}, {1000 * r["system_sleeps_per_request"]:.0f} |')
    lines += ["", ratios(rows)]
    return "\n".join(lines) + "\n"


def ratios(rows):
    """The gateway against the Go peer and bare hyper, per run mode and
    connection count: with --repeat, each round's ratio (the nth run of one
    system against the nth of the other, which ran beside it) and their
    median, since the machine's speed moves between rounds."""
    out = ["| pinned | conns | gateway / bare req/s | gateway / go req/s | go / gateway CPU per event "
           "| batch100 / gateway events/s |", "|---|---:|---:|---:|---:|---:|"]
    runs = {}
    for r in rows:
        runs.setdefault((r["system"], r["pinned"], r["connections"]), []).append(r)
    for pin in sorted({r["pinned"] for r in rows}, reverse=True):
        for conns in sorted({r["connections"] for r in rows}):
            gateway = runs.get(("gateway", pin, conns))
            if not gateway:
                continue

            def ratio(other, key, invert=False, digits=2):
                per_round = [(o[key] / gw[key]) if invert else (gw[key] / o[key])
                             for gw, o in zip(gateway, runs.get((other, pin, conns), []))
                             if gw[key] and o[key]]
                if not per_round:
                    return "-"
                text = f"{median(per_round):.{digits}f}"
                if len(per_round) > 1:
                    text += " (" + ", ".join(f"{x:.{digits}f}" for x in per_round) + ")"
                return text
            bare = ratio("bare", "rps")
            go = ratio("go", "rps")
            cpu = ratio("go", "cpu_us_per_event", invert=True)
            batch = ratio("batch100", "events_per_s", invert=True, digits=1)
            out.append(f'| {"yes" if pin else "no"} | {conns} | {bare} | {go} | {cpu} | {batch} |')
    if any(len(v) > 1 for v in runs.values()):
        out.append("")
        out.append("With --repeat: the median of the rounds' ratios, each round's in brackets.")
    return "\n".join(out)


def chart(rows, path):
    try:
        import matplotlib
    except ImportError:
        # Drawn by this script again in a venv that has it, made by the
        # suites' one venv helper.
        venv = subprocess.run([str(ROOT / "suites" / "harness" / "venv.sh"), str(ROOT / "target" / "suites"), "chart",
                               str(ROOT / "suites" / "harness" / "chart-requirements.txt")],
                              check=True, capture_output=True, text=True).stdout.strip()
        rows_file = path.with_suffix(".rows.json")
        rows_file.write_text(json.dumps(rows))
        subprocess.run([f"{venv}/bin/python", __file__, "--chart-only", str(rows_file), str(path)], check=True)
        rows_file.unlink()
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["pinned"] == rows[0]["pinned"]]
    names = list(dict.fromkeys(r["system"] for r in rows))
    conns = sorted({r["connections"] for r in rows})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        by_conn = {r["connections"]: r for r in rows if r["system"] == name}
        xs = [j + i * width for j in range(len(conns))]
        left.bar(xs, [by_conn.get(c, {}).get("events_per_s", 0) for c in conns], width, label=name)
        right.bar(xs, [by_conn.get(c, {}).get("p99_ms", 0) for c in conns], width, label=name)
    for ax, title in ((left, "throughput (events/s, higher is better)"), (right, "p99 latency (ms, log, lower is better)")):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(conns))], [str(c) for c in conns])
        ax.set_xlabel("concurrent connections")
        ax.set_title(title)
    right.set_yscale("log")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# The systems an A/B can run: the gateway's doors on the null upstream.
AB_SYSTEMS = ("gateway", "batch10", "batch100", "segment100", "posthog100", "dedupe-segment100", "kafka-e",
              "kafka-posthog100", "kafka-track", "kafka-import", "kafka-snowplow-get")


def build_ref(ref):
    """The gateway at git ref `ref`, built in its own worktree and target directory."""
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = Path(f"/tmp/bench-ab/{sha}")
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=ROOT, check=True)
    env = dict(os.environ, CARGO_TARGET_DIR=str(tree.parent / "target"), GATEWAY_GIT_SHA=sha)
    subprocess.run(["cargo", "build", "--release", "--bin", "clickstream-gateway"], cwd=tree, env=env, check=True)
    binary = tree.parent / f"clickstream-gateway-{sha}"
    shutil.copy(tree.parent / "target" / "release" / "clickstream-gateway", binary)
    return sha, str(binary)


def medians(rows):
    """Each system's median CPU per event and events/s per pinning and
    connection count, over the --repeat runs."""
    groups = {}
    for r in rows:
        groups.setdefault((r["pinned"], r["connections"], r["system"]), []).append(r)
    lines = ["| pinned | connections | system | runs | median CPU µs/event | median events/s |", "|---|---|---|---|---|---|"]
    for (pin, conns, name), runs in groups.items():
        lines.append(f"| {pin} | {conns} | {name} | {len(runs)} | {median([r['cpu_us_per_event'] for r in runs])} | "
                     f"{median([r['events_per_s'] for r in runs]):,.0f} |")
    return "\n".join(lines) + "\n"


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ab(args, pin):
    """Interleaved A/B of one system (`--ab-system`, POST /import unless
    said): `args.ab` (A) against the working tree (B)."""
    sha, old = build_ref(args.ab)
    found = systems(args)
    if args.ab_system not in AB_SYSTEMS:
        sys.exit(f"--ab-system must be one of {', '.join(AB_SYSTEMS)} (the gateway on the null upstream or the mock cluster)")
    base = found[args.ab_system]
    env = dict(base.env, ACCESS_LOG="false", **dict(pair.split("=", 1) for pair in args.ab_env))
    cases = {}
    for side, binary in (("A", old), ("B", str(ROOT / "target" / "release" / "clickstream-gateway"))):
        cases[side] = copy.copy(base)
        cases[side].cmd, cases[side].env = [binary], env
    default = ",".join(str(c) for c in base.connections or [50, 500])
    connections = [int(c) for c in (args.connections if args.connections != "1,50,500,1000" else default).split(",")]
    unit = "request" if base.events == 1 else "event"
    results = {}
    for conns in connections:
        pairs = []
        for i in range(args.pairs):
            a = measure(f"A-{sha}", cases["A"], conns, args.duration, pin)
            b = measure("B-worktree", cases["B"], conns, args.duration, pin)
            ratio = b["cpu_us_per_event"] / a["cpu_us_per_event"]
            pairs.append({"a": a, "b": b, "ratio": round(ratio, 3)})
            log(f"{conns} conns, pair {i + 1}: A {a['cpu_us_per_event']} us, B {b['cpu_us_per_event']} us, B/A {ratio:.3f}")
        results[conns] = {"pairs": pairs, "median": round(median([p["ratio"] for p in pairs]), 3)}
    with_env = f", with {' '.join(args.ab_env)}" if args.ab_env else ""
    lines = [f"A/B: A = {args.ab} ({sha}), B = the working tree; CPU microseconds per {unit} on "
             f"{base.method} {base.path.split('?')[0]} ({args.ab_system}){with_env}, {'pinned' if pin else 'unpinned'}, {args.duration} s per run, "
             f"{cpu_model()}", "",
             "| connections | pair | A µs | B µs | B/A | A events/s | B events/s |", "|---|---|---|---|---|---|---|"]
    for conns, r in results.items():
        for i, p in enumerate(r["pairs"]):
            lines.append(f"| {conns} | {i + 1} | {p['a']['cpu_us_per_event']} | {p['b']['cpu_us_per_event']} | "
                         f"{p['ratio']:.3f} | {p['a']['events_per_s']:,.0f} | {p['b']['events_per_s']:,.0f} |")
        lines.append(f"| {conns} | **median** | | | **{r['median']:.3f}** | | |")
    return results, "\n".join(lines) + "\n"


def main():
    if sys.argv[1:2] == ["--chart-only"]:
        # `chart` drawing in a venv with matplotlib: ROWS_JSON PNG.
        chart(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--connections", default="1,50,500,1000")
    parser.add_argument("--systems", default="", help="comma list to run a subset, e.g. batched,go")
    parser.add_argument("--peers", action="store_true", help="also build and run the Go and Node peers")
    parser.add_argument("--capture", metavar="HOG_RS", help="also build PostHog's capture from this copy of "
                        "PostHog/hog-rs (bench/capture.sh) and run it as capture-batch100 and capture-e")
    parser.add_argument("--pin", choices=["yes", "no", "both"], default="both",
                        help="pin the system to CPU 0 and the load to CPU 1 (default: both, pinned first)")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--ab", metavar="REF", help="interleaved A/B of git ref REF (A) against the working tree (B)")
    parser.add_argument("--ab-system", default="gateway",
                        help=f"the system the A/B runs: one of {', '.join(AB_SYSTEMS)} (default gateway, POST /import)")
    parser.add_argument("--pairs", type=int, default=5, help="A/B pairs per connection count (default 5)")
    parser.add_argument("--ab-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a variable for both sides of the A/B (repeatable), e.g. SOURCE_EVENTS_PER_SECOND=1000000")
    parser.add_argument("--repeat", type=int, default=1, help="run the systems this many times, interleaved")
    args = parser.parse_args()

    # 1000 connections need well over the usual 1024 descriptors, for wrk and the servers alike.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    pins = {"yes": [True], "no": [False], "both": [True, False]}[args.pin]
    if os.cpu_count() < 2:
        pins = [False]
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins", "--examples"], cwd=ROOT, check=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.ab:
        pin = pins[0] if args.pin != "both" else False
        upstream = start_upstream(pin)
        try:
            results, table = ab(args, pin)
        finally:
            stop(upstream)
        (out / "ab.json").write_text(json.dumps(results, indent=2))
        print(table)
        return
    # The upstream stays on the load's core when pinned; it is restarted per pinning mode.
    upstream = None
    rows = []
    cases = systems(args)
    default_connections = [int(c) for c in args.connections.split(",")]
    upstream_rps = 0
    try:
        for pin in pins:
            upstream = start_upstream(pin)
            upstream_rps = max(upstream_rps, upstream_alone(min(args.duration, 5)))
            log(f"null upstream alone: {upstream_rps:,.0f} req/s")
            for connections in default_connections:
                for _ in range(args.repeat):
                    for name, case in cases.items():
                        if case.connections is None or connections in case.connections:
                            rows.append(measure(name, case, connections, args.duration, pin))
            stop(upstream)
    finally:
        if upstream:
            stop(upstream)
        stop_emulator()

    (out / "results.json").write_text(json.dumps({"upstream_alone_rps": upstream_rps, "runs": rows}, indent=2))
    over = [r for r in rows if r["system"].startswith("manifest-") and r["peak_rss_mib"] >= MANIFEST_LIMIT_MIB]
    (out / "results.md").write_text(markdown(rows, upstream_rps, args))
    chart(rows, out / "chart.png")
    print(markdown(rows, upstream_rps, args))
    if args.repeat > 1:
        print(medians(rows))
    log(f"wrote {out}/results.json, results.md, chart.png")
    if over:
        sys.exit(f"peak RSS at or over the manifests' {MANIFEST_LIMIT_MIB} MiB limit: " +
                 ", ".join(f'{r["system"]}@{r["connections"]}: {r["peak_rss_mib"]} MiB' for r in over))


if __name__ == "__main__":
    main()
