#!/usr/bin/env python3
"""The analytics SDKs, unmodified, against the gateway and a Kinesis emulator.

Starts the gateway binary (127.0.0.1, a fresh stream on the emulator, write
keys in API_KEYS), sends events from several users with each SDK, flushes,
then reads every shard back and checks that each event is stored exactly once
as its own record, with its fields intact, the gateway's enrichment, and the
user's partition key, in the user's order; and that no SDK reported an error.

SDKs: segment-analytics-python, rudder-sdk-python, posthog, snowplow-tracker
(POST and GET), @segment/analytics-node, @rudderstack/rudder-sdk-node
(send.mjs), and in headless Chromium (browser.mjs) the four browser SDKs:
@segment/analytics-next, @rudderstack/analytics-js, posthog-js and
@snowplow/browser-tracker (POST and GET). The browser SDKs talk to a second
gateway started at its defaults (no API_KEYS, no CORS variable), from a page
on another origin.

    suites/sdks/run.sh target/debug/clickstream-gateway    # installs, then runs this

Exit status 0 only when every check passed.
"""

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections import Counter, defaultdict

import boto3
from harness.gateway import Gateway, free_port
from harness.kinesis import read_stream

HERE = os.path.dirname(os.path.abspath(__file__))
USERS = ["user-1", "user-2", "user-\u00e9-3"]
EVENTS_PER_USER = 7
KEYS = {
    "segment-python": "wk-segment-python",
    "rudder-python": "wk-rudder-python",
    "posthog-python": "phc_posthog_python",
    "snowplow-python": "app-snowplow",
    "segment-node": "wk-segment-node",
    "rudder-node": "wk-rudder-node",
    "segment-browser": "wk-segment-browser",
    "rudder-browser": "wk-rudder-browser",
    "posthog-browser": "phc_posthog_browser",
    "snowplow-browser": "app-snowplow-browser",
}
# The browser SDKs, started by browser.mjs.
BROWSER_SDKS = {"segment-browser", "rudder-browser", "posthog-browser", "snowplow-browser"}
# SDKs with more than one request in flight at once: @segment/analytics-node's
# batches; @rudderstack/analytics-js's queue, which sends up to 100 events
# at once, one per request (its RetryQueue's maxItems); and
# @rudderstack/rudder-sdk-node, whose flush() waits for the flush in flight,
# so two flushes waiting on it both post when it ends (3.0.13, cjs/index.js
# `yield this.pendingFlush`; send.mjs flushes every 100 ms).
CONCURRENT_SENDERS = {"segment-node", "rudder-browser", "rudder-node"}
# Every event carries this, with characters that must survive byte for byte.
PAYLOAD = {"price": 12.5, "qty": 3, "note": "caf\u00e9 \u2713 \"quoted\" \\ slash", "nested": {"a": [1, None, True]}}


def test_id(run, sdk, user, seq):
    return f"{run}.{sdk}.{USERS.index(user)}.{seq}"


def kinesis_gateway(binary, kinesis, stream, keys=True, extra=None):
    """The gateway writing to `stream` on the emulator at `kinesis`; with the
    SDKs' keys in API_KEYS, or at its defaults; `extra` variables beside."""
    env = {
        **(extra or {}),
        "KINESIS_STREAM_NAME": stream,
        "AWS_ENDPOINT_URL_KINESIS": kinesis,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIDSDKTEST",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    if keys:
        env["API_KEYS"] = ",".join(KEYS.values())
    return Gateway(binary, env)


def send_segment_like(client_class, sdk, url, run, errors, **options):
    client = client_class(KEYS[sdk], host=url, on_error=lambda e, batch: errors.append(f"{sdk}: {e}"), **options)
    expected = []
    for seq in range(EVENTS_PER_USER):
        for user in USERS:
            tid = test_id(run, sdk, user, seq)
            props = {"test_id": tid, "seq": seq, **PAYLOAD}
            if seq % 3 == 1:
                client.identify(user, traits={"test_id": tid, "seq": seq, **PAYLOAD}, message_id=tid)
                kind = "identify"
            elif seq % 3 == 2:
                client.page(user, name="Home", properties=props, message_id=tid)
                kind = "page"
            else:
                client.track(user, "Order Completed", properties=props, message_id=tid)
                kind = "track"
            expected.append({"id": tid, "sdk": sdk, "user": user, "seq": seq, "type": kind, "protocol": "segment"})
    client.flush()
    client.shutdown()
    return expected


def send_posthog(url, run, errors):
    from posthog import Posthog

    sdk = "posthog-python"
    client = Posthog(KEYS[sdk], host=url, on_error=lambda e, batch: errors.append(f"{sdk}: {e}"), gzip=True, flush_at=10)
    expected = []
    for seq in range(EVENTS_PER_USER):
        for user in USERS:
            tid = test_id(run, sdk, user, seq)
            event_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, tid))
            client.capture("order completed", distinct_id=user, properties={"test_id": tid, "seq": seq, **PAYLOAD}, uuid=event_uuid)
            expected.append({"id": tid, "sdk": sdk, "user": user, "seq": seq, "protocol": "posthog", "uuid": event_uuid})
    client.flush()
    client.shutdown()
    return expected


def send_snowplow(url, run, errors, method):
    from snowplow_tracker import Emitter, Subject, Tracker

    # It logs every request at INFO.
    for name in ("snowplow_tracker", "snowplow_tracker.emitters", "snowplow_tracker.tracker"):
        logging.getLogger(name).setLevel(logging.WARNING)

    sdk = "snowplow-python"
    host, port = url.removeprefix("http://").split(":")
    emitter = Emitter(
        host,
        protocol="http",
        port=int(port),
        method=method,
        batch_size=5,
        on_failure=lambda count, failed: errors.append(f"{sdk} {method}: {count} sent, {len(failed)} failed"),
    )
    tracker = Tracker(namespace="sdk-test", emitters=emitter, app_id=KEYS[sdk])
    expected = []
    for seq in range(EVENTS_PER_USER):
        for user in USERS:
            tid = test_id(run, f"{sdk}-{method}", user, seq)
            subject = Subject().set_user_id(user).set_domain_user_id(f"duid-{user}")
            tracker.track_struct_event("sdk-test", "order", label=tid, property_=PAYLOAD["note"], value=seq, event_subject=subject)
            expected.append(
                {"id": tid, "sdk": f"{sdk}-{method}", "user": f"duid-{user}", "seq": seq, "protocol": "snowplow", "uid": user}
            )
    tracker.flush()
    return expected


def run_node(script, url, run, node_dir, errors, extra=()):
    env = {**os.environ, "NODE_PATH": os.path.join(os.path.abspath(node_dir), "node_modules")}
    done = subprocess.run(
        ["node", os.path.join(HERE, script), url, run, json.dumps(KEYS), json.dumps(USERS), str(EVENTS_PER_USER), json.dumps(PAYLOAD), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    for line in done.stderr.splitlines():
        print(f"  {script}: {line[:2000]}")
    if done.returncode != 0:
        errors.append(f"{script} exited {done.returncode} (its output is above)")
        return []
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# (route, method) each SDK run must have used, as the gateway's own metrics
# count them: proof of the paths, the browser's CORS preflight, and its
# batched delivery on page unload (which the browser tools do not report).
ROUTES_USED = {
    ("/v1/batch", "POST"),
    ("/batch", "POST"),
    ("/com.snowplowanalytics.snowplow/tp2", "POST"),
    ("/i", "GET"),
}
# The same from the browser SDKs' gateway: each SDK's documents, preflights
# and event paths, and the unload deliveries (Segment's batch, RudderStack's
# beacon, posthog-js's beacon on /e).
BROWSER_ROUTES_USED = {
    ("/v1/projects/{writeKey}/settings", "GET"),
    ("/v1/t", "OPTIONS"),
    ("/v1/t", "POST"),
    ("/v1/p", "POST"),
    ("/v1/i", "POST"),
    ("/v1/b", "POST"),
    ("/sourceConfig", "GET"),
    ("/v1/identify", "OPTIONS"),
    ("/v1/identify", "POST"),
    ("/v1/track", "POST"),
    ("/v1/page", "POST"),
    ("/beacon/v1/batch", "POST"),
    ("/array/{token}/config.js", "GET"),
    ("/e", "POST"),
    ("/com.snowplowanalytics.snowplow/tp2", "OPTIONS"),
    ("/com.snowplowanalytics.snowplow/tp2", "POST"),
    ("/i", "GET"),
}


def routes_used(url):
    """(route, method) -> 2xx answers, from the gateway's /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    used = defaultdict(float)
    for line in text.splitlines():
        if line.startswith("http_requests_total{") and 'status_class="2xx"' in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            used[(labels["route"], labels["method"])] += float(line.rsplit(" ", 1)[1])
    return used


def check_routes(url, wanted, errors):
    used = routes_used(url)
    for route, method in sorted(wanted):
        if not used.get((route, method)):
            errors.append(f"no 2xx {method} {route} in the metrics of {url}")
    print(f"  routes {url} answered 2xx: " + ", ".join(f"{m} {r} x{int(n)}" for (r, m), n in sorted(used.items())))


RUN_PREFIX = [""]


def identify(record):
    """The test id of a stored record, and its protocol, from its own fields."""
    protocol = record.get("_gateway", {}).get("protocol")
    if protocol == "segment":
        message_id = record.get("messageId")
        if isinstance(message_id, str) and message_id.startswith(RUN_PREFIX[0]):
            return message_id, protocol
        # The browser SDKs make their own message ids; RudderStack's puts an
        # identify's traits in context.traits.
        fields = record.get("properties") or record.get("traits") or record.get("context", {}).get("traits") or {}
        return fields.get("test_id"), protocol
    if protocol == "posthog":
        return record.get("properties", {}).get("test_id"), protocol
    if protocol == "snowplow":
        # A page view carries its test id as the page title.
        return record.get("se_la") or record.get("page"), protocol
    return None, protocol


def stored_counts(kinesis, stream, run):
    """How many times the stream holds each of this run's test ids."""
    stored = Counter()
    for _, _, data in read_stream(kinesis, stream):
        try:
            tid, _ = identify(json.loads(data))
        except ValueError:
            continue
        if isinstance(tid, str) and tid.startswith(run + "."):
            stored[tid] += 1
    return stored


def verify(expected, stored, run):
    failures = []
    by_id = defaultdict(list)
    for position, (shard, key, data) in enumerate(stored):
        try:
            record = json.loads(data)
        except ValueError:
            continue
        tid, protocol = identify(record)
        if isinstance(tid, str) and tid.startswith(run + "."):
            by_id[tid].append((position, shard, key, record))
    seen_order = defaultdict(list)
    keys_seen = defaultdict(set)
    for want in expected:
        got = by_id.pop(want["id"], [])
        if len(got) != 1:
            failures.append(f"{want['id']}: stored {len(got)} times")
            continue
        position, shard, key, record = got[0]
        problems = check_record(want, key, record)
        failures += [f"{want['id']}: {p}" for p in problems]
        seen_order[(want["sdk"], want["user"])].append((shard, position, want["seq"]))
        keys_seen[(want["sdk"], want["user"])].add(key)
    for tid in by_id:
        failures.append(f"{tid}: stored but never sent")
    for (sdk, user), seen in seen_order.items():
        shards = {shard for shard, _, _ in seen}
        order = [seq for _, _, seq in sorted(seen)]
        if len(keys_seen[(sdk, user)]) != 1:
            failures.append(f"{sdk} {user}: {len(keys_seen[(sdk, user)])} partition keys")
        if len(shards) != 1:
            failures.append(f"{sdk} {user}: events on {len(shards)} shards")
        # The concurrent senders' order is not the client's; the others send in turn.
        elif sdk not in CONCURRENT_SENDERS and order != sorted(order):
            failures.append(f"{sdk} {user}: stored out of order {order}")
    return failures


def check_record(want, key, record):
    problems = []
    gateway = record.get("_gateway", {})
    protocol = want["protocol"]
    sdk_key = KEYS[want["sdk"].removesuffix("-post").removesuffix("-get")]
    browser = sdk_key in (KEYS[s] for s in BROWSER_SDKS)
    if gateway != {"protocol": protocol, "key": sdk_key}:
        problems.append(f"_gateway is {gateway}")
    if protocol == "segment":
        if key != want["user"]:
            problems.append(f"partition key {key!r}, want {want['user']!r}")
        if record.get("userId") != want["user"] or record.get("type") != want["type"]:
            problems.append(f"userId/type {record.get('userId')!r}/{record.get('type')!r}")
        fields = record.get("properties", {})
        if want["type"] == "identify":
            # RudderStack's SDKs put traits in context.traits.
            fields = record.get("traits") or record.get("context", {}).get("traits", {})
        if {k: fields.get(k) for k in PAYLOAD} != PAYLOAD or fields.get("seq") != want["seq"]:
            problems.append(f"fields changed: {fields}")
        for name in ("receivedAt", "sentAt"):
            if not isinstance(record.get(name), str):
                problems.append(f"no {name}")
        if not isinstance(record.get("timestamp") or record.get("originalTimestamp"), str):
            problems.append("no timestamp or originalTimestamp")
    elif protocol == "posthog":
        if key != f"{sdk_key}:{want['user']}":
            problems.append(f"partition key {key!r}")
        props = record.get("properties", {})
        event = "$pageview" if want.get("type") == "page" else "order completed"
        if record.get("distinct_id") != want["user"] or record.get("event") != event:
            problems.append(f"distinct_id/event {record.get('distinct_id')!r}/{record.get('event')!r}")
        if {k: props.get(k) for k in PAYLOAD} != PAYLOAD or record.get("uuid") != want.get("uuid", record.get("uuid")):
            problems.append(f"fields changed: {record}")
        for name in ("now", "sent_at", "token"):
            if not isinstance(record.get(name), str):
                problems.append(f"no {name}")
    elif protocol == "snowplow":
        # The browser tracker's domain user id is made in the browser: its key.
        want_key = record.get("duid") if browser else want["user"]
        if key != want_key:
            problems.append(f"partition key {key!r}, want {want_key!r}")
        if record.get("uid") != want["uid"] or not record.get("eid") or not record.get("collector_tstamp"):
            problems.append(f"uid/eid/collector_tstamp: {record}")
        if want.get("type", "track") == "track":
            if record.get("e") != "se" or record.get("se_pr") != PAYLOAD["note"] or record.get("se_va") != str(want["seq"]):
                problems.append(f"fields changed: {record}")
        elif record.get("e") != "pv":
            problems.append(f"not a page view: {record}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gateway", help="the gateway binary")
    parser.add_argument("--kinesis", default=os.environ.get("KINESIS_TEST_ENDPOINT", "http://127.0.0.1:4567"))
    parser.add_argument("--node-dir", required=True, help="where node_modules with the Node SDKs is")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--limited", action="store_true", help="each SDK against a source over its allowance (limited.py)")
    parser.add_argument("--retried", action="store_true", help="each SDK's first answer lost on the wire, the gateway deduplicating (retried.py)")
    args = parser.parse_args()
    if args.limited:
        import limited

        sys.exit(limited.main(args, sys.modules[__name__]))
    if args.retried:
        import retried

        sys.exit(retried.main(args, sys.modules[__name__]))

    run = uuid.uuid4().hex[:10]
    RUN_PREFIX[0] = run + "."
    stream = f"sdk-{run}"
    kinesis = boto3.client(
        "kinesis", endpoint_url=args.kinesis, region_name="us-east-1", aws_access_key_id="AKIDSDKTEST", aws_secret_access_key="secret"
    )
    kinesis.create_stream(StreamName=stream, ShardCount=4)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    page_port = free_port()
    gateway = kinesis_gateway(args.gateway, args.kinesis, stream)
    print(f"gateway {gateway.url}, stream {stream}")

    from rudderstack.analytics.client import Client as RudderClient
    from segment.analytics import Client as SegmentClient

    errors, expected, counts = [], [], {}

    def add(name, sent):
        counts[name] = len(sent)
        expected.extend(sent)
        print(f"  {name}: sent {len(sent)} events")

    try:
        add("segment-analytics-python", send_segment_like(SegmentClient, "segment-python", gateway.url, run, errors, gzip=True))
        add("rudder-sdk-python", send_segment_like(RudderClient, "rudder-python", gateway.url, run, errors))
        add("posthog", send_posthog(gateway.url, run, errors))
        add("snowplow-tracker (POST)", send_snowplow(gateway.url, run, errors, "post"))
        add("snowplow-tracker (GET /i)", send_snowplow(gateway.url, run, errors, "get"))
        add("@segment/analytics-node + @rudderstack/rudder-sdk-node", run_node("send.mjs", gateway.url, run, args.node_dir, errors))
        check_routes(gateway.url, ROUTES_USED, errors)
        if not args.no_browser:
            # At its defaults: no API_KEYS, no CORS_ALLOWED_ORIGINS.
            browsers = kinesis_gateway(args.gateway, args.kinesis, stream, keys=False)
            try:
                print(f"browser gateway {browsers.url} (defaults)")
                add(
                    "the browser SDKs in Chromium",
                    run_node("browser.mjs", browsers.url, run, args.node_dir, errors, [str(page_port)]),
                )
                check_routes(browsers.url, BROWSER_ROUTES_USED, errors)
            finally:
                browsers.stop()
    finally:
        gateway.stop()
    stored = read_stream(kinesis, stream)
    failures = errors + verify(expected, stored, run)
    kinesis.delete_stream(StreamName=stream)
    for failure in failures[:50]:
        print("FAIL", failure)
    print(f"sdk check: {len(expected)} events sent by {len(counts)} SDK runs, {len(stored)} records read back, {len(failures)} failures")
    sys.exit(1 if failures or not expected else 0)


if __name__ == "__main__":
    main()
