"""What each SDK does with a 429 and `Retry-After`: every SDK of check.py,
unmodified, sends its events to a source that is over its allowance.

The gateway reads a SOURCES_FILE giving every SDK's key 2 events/s and a
burst of 25; just before an SDK sends, its source's allowance is spent by
25 events of our own, so the SDK's first requests are answered 429 with a
Retry-After of a few seconds (a browser SDK's source is kept spent by
browser.mjs until its first request with events leaves the page: the
browser's start would otherwise refill it). Then the stream is read back: an SDK that
retries gets its events in (each once: a refused request stores nothing);
one that drops them does not. What each SDK did is compared with
ON_429 below, which docs/sdks.md states; a change in an SDK's behaviour
fails the run until both are updated.

Checked beside the SDK's behaviour: every SDK met at least one 429 (else
the run proves nothing), and no event is stored twice.

    suites/sdks/run.sh target/debug/clickstream-gateway --limited
"""

import hashlib
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import uuid

RATE, BURST = 2, 25

# What each SDK does with a 429, as observed by this run: "retries" (every
# event stored in the end) or "drops" (events lost). docs/sdks.md says the same.
ON_429 = {
    "segment-python": "retries",
    "rudder-python": "retries",
    "posthog-python": "retries",
    "snowplow-python-post": "retries",
    "snowplow-python-get": "retries",
    "segment-node": "retries",
    "rudder-node": "retries",
    "segment-browser": "retries",
    "rudder-browser": "retries",
    "posthog-browser": "drops",
    "snowplow-browser-post": "retries",
    "snowplow-browser-get": "retries",
}


def mask(key):
    """The gateway's masked form of a source key (live::mask)."""
    head = key[:4] if len(key) >= 12 else ""
    return head + "\u2026" + hashlib.sha256(key.encode()).hexdigest()[:6]


def spend(url, key):
    """Spends `key`'s burst with events of our own (not the run's)."""
    batch = [{"type": "track", "event": "spend", "userId": "spender", "messageId": f"spend-{uuid.uuid4()}"} for _ in range(BURST)]
    body = json.dumps({"batch": batch, "writeKey": key}).encode()
    deadline = time.monotonic() + 30
    while True:
        request = urllib.request.Request(url + "/v1/batch", data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 200, r.status
                return
        except urllib.error.HTTPError as e:
            # The source's last run left it short: wait until a burst fits.
            if e.code != 429 or time.monotonic() > deadline:
                raise
            time.sleep(float(e.headers["Retry-After"]))


def refused(url, key):
    """Events of `key` refused as over its allowance so far."""
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    want = f'source_events_total{{source="{mask(key)}",outcome="rate_limited"}} '
    for line in text.splitlines():
        if line.startswith(want):
            return int(float(line[len(want) :]))
    return 0


def sources_file(keys):
    d = tempfile.mkdtemp(prefix="sdk-limited-")
    path = os.path.join(d, "sources.toml")
    with open(path, "w") as f:
        for key in keys:
            f.write(f'[sources."{key}"]\nevents_per_second = {RATE}\nburst = {BURST}\n')
    return path


def main(args, check):
    import boto3
    from harness.gateway import free_port
    from rudderstack.analytics.client import Client as RudderClient
    from segment.analytics import Client as SegmentClient

    run = uuid.uuid4().hex[:10]
    check.RUN_PREFIX[0] = run + "."
    stream = f"sdk-429-{run}"
    kinesis = boto3.client(
        "kinesis", endpoint_url=args.kinesis, region_name="us-east-1", aws_access_key_id="AKIDSDKTEST", aws_secret_access_key="secret"
    )
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    file = sources_file(check.KEYS.values())
    limits = {"SOURCES_FILE": file}
    errors, expected, met = [], [], {}

    def labelled(url, sdks):
        """Every SDK's source sends once, so each has its metric label (the
        busiest sources get one within a second) before any is measured."""
        for sdk in sdks:
            spend(url, check.KEYS[sdk.removesuffix("-post").removesuffix("-get")])
        time.sleep(1.5)

    def spent(url, sdks):
        keys = {check.KEYS[s.removesuffix("-post").removesuffix("-get")] for s in sdks}
        for key in keys:
            spend(url, key)
        return {key: refused(url, key) for key in keys}

    def measure(url, sdks, send):
        before = spent(url, sdks)
        started = time.monotonic()
        sent = send()
        seconds = time.monotonic() - started
        # browser.mjs keeps the source spent until the SDK sends, with
        # events of its own, and says how many of those were refused.
        own = sum(e["ownRefused"] for e in sent if "ownRefused" in e)
        sent = [e for e in sent if "ownRefused" not in e]
        for sdk in sdks:
            key = check.KEYS[sdk.removesuffix("-post").removesuffix("-get")]
            met[sdk] = (refused(url, key) - before[key] - own, seconds)
        expected.extend(sent)
        print(f"  {', '.join(sdks)}: sent {len(sent)} events in {seconds:.1f} s")

    os.environ["LIMITED"] = "1"
    gateway = check.kinesis_gateway(args.gateway, args.kinesis, stream, extra=limits)
    print(f"gateway {gateway.url}, stream {stream}, every source {RATE} events/s, burst {BURST}, spent before each SDK")
    try:
        url = gateway.url
        labelled(url, ["segment-python", "rudder-python", "posthog-python", "snowplow-python", "segment-node", "rudder-node"])
        measure(url, ["segment-python"], lambda: check.send_segment_like(SegmentClient, "segment-python", url, run, errors, gzip=True))
        measure(url, ["rudder-python"], lambda: check.send_segment_like(RudderClient, "rudder-python", url, run, errors))
        measure(url, ["posthog-python"], lambda: check.send_posthog(url, run, errors))
        measure(url, ["snowplow-python-post"], lambda: check.send_snowplow(url, run, errors, "post"))
        measure(url, ["snowplow-python-get"], lambda: check.send_snowplow(url, run, errors, "get"))
        for only, sdk in [("segment", "segment-node"), ("rudder", "rudder-node")]:
            os.environ["NODE_SDKS"] = only
            measure(url, [sdk], lambda: check.run_node("send.mjs", url, run, args.node_dir, errors))
        os.environ.pop("NODE_SDKS")
        if not args.no_browser:
            browsers = check.kinesis_gateway(args.gateway, args.kinesis, stream, keys=False, extra=limits)
            try:
                print(f"browser gateway {browsers.url}")
                labelled(browsers.url, ["segment-browser", "rudder-browser", "posthog-browser", "snowplow-browser"])
                # One SDK per page run, each right after its source is spent.
                for only, sdks in [
                    ("segment", ["segment-browser"]),
                    ("rudderstack", ["rudder-browser"]),
                    ("posthog", ["posthog-browser"]),
                    ("snowplow", ["snowplow-browser-post", "snowplow-browser-get"]),
                ]:
                    os.environ["BROWSER_SDKS"] = only
                    port = str(free_port())
                    measure(browsers.url, sdks, lambda: check.run_node("browser.mjs", browsers.url, run, args.node_dir, errors, [port]))
                os.environ.pop("BROWSER_SDKS")
            finally:
                browsers.stop()
        # Retries still on their way (timers in the SDKs) get a moment.
        time.sleep(3)
    finally:
        gateway.stop()
        shutil.rmtree(os.path.dirname(file), ignore_errors=True)

    stored = check.stored_counts(kinesis, stream, run)
    kinesis.delete_stream(StreamName=stream)

    failures = []
    print("\n| SDK | events sent | events refused with 429 (over every try) | stored | what it does with a 429 |")
    print("|---|---|---|---|---|")
    for sdk, (refusals, seconds) in met.items():
        sent = [e["id"] for e in expected if e["sdk"] == sdk]
        kept = sum(1 for tid in sent if stored[tid] >= 1)
        twice = sum(1 for tid in sent if stored[tid] > 1)
        did = "retries" if kept == len(sent) else "drops"
        print(f"| {sdk} | {len(sent)} | {refusals} | {kept} | {did} |")
        if refusals == 0:
            failures.append(f"{sdk}: never answered 429: the run proves nothing of it")
        if twice:
            failures.append(f"{sdk}: {twice} events stored twice")
        if not sent:
            failures.append(f"{sdk}: sent nothing")
        if did != ON_429.get(sdk):
            failures.append(f"{sdk}: {did} on 429 ({kept} of {len(sent)} stored), where docs/sdks.md says it {ON_429.get(sdk)}")
    print()
    for e in errors:
        print(f"  (the SDKs reported: {e[:300]})")
    for f in failures:
        print("FAIL", f)
    print(f"sdk 429 check: {len(met)} SDKs, {len(failures)} failures")
    return 1 if failures else 0
