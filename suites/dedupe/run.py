"""Each event once, with real processes: the gateway binary with the file
sink and DEDUPE_WINDOW_SECONDS, and a real `redis-server` on 127.0.0.1.

  doors     one gateway (ids in its own memory): a Segment batch sent
            three times, a repeated id inside one batch, the same ids under
            two write keys (twice, one per source), PostHog `uuid`,
            Snowplow `eid` (POST and GET) and `/import` `Idempotency-Key`
            each sent twice (once), one event sent 20 times at once
            (exactly once, every answer a 200 or a 503 with Retry-After);
  replicas  two gateways sharing one redis-server: a batch sent to one and
            retried on the other (once across both), 20 copies at once
            split over both (exactly once), and four threads sending
            batches each twice, to both replicas, for a few seconds (every
            event once across both files);
  outage    Redis killed while two gateways take batches and retries: no
            5xx, every event answered 200 is stored (at least once), the
            outage counted in dedupe_store_errors_total and logged once per
            gateway; once Redis is back, a retry across replicas is
            recognised again.

Every server binds 127.0.0.1; every loop is bounded in time. Exits 1 when
a promise is broken.

  suites/dedupe/run.sh target/debug/clickstream-gateway [doors replicas outage]
"""

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from harness import filesink
from harness.gateway import Gateway, post
from harness.redis import Redis

FAILURES = []
WINDOW = "600"
SNOWPLOW_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def gateway(binary, work, name, extra=None):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    env = {"SINK": "file", "FILE_SINK_PATH": os.path.join(d, "records.ndjson"), "DEDUPE_WINDOW_SECONDS": WINDOW, **(extra or {})}
    return Gateway(binary, env, work=d)


def stored(*gateways):
    """Every stored event, parsed, from the gateways' file sinks."""
    events = []
    for g in gateways:
        path = os.path.join(g.dir, "records.ndjson")
        if os.path.exists(path):
            events += [json.loads(data) for _, _, data in filesink.read(path)]
    return events


def segment(write_key, ids):
    batch = [{"type": "track", "event": "e", "userId": f"u-{i}", "messageId": i} for i in ids]
    return json.dumps({"batch": batch, "writeKey": write_key}).encode()


def send_segment(url, write_key, ids):
    return post(url + "/v1/batch", segment(write_key, ids), {"Content-Type": "application/json"})[0]


def metric(url, name):
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def at_once(calls):
    """Runs every call at the same moment; their answers, in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def post_full(url, body, headers):
    """(status, Retry-After) of a POST."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.headers.get("Retry-After")
    except urllib.error.HTTPError as e:
        e.read()
        return e.code, e.headers.get("Retry-After")


def twenty_at_once(urls, run):
    """One event sent 20 times at once over `urls`: (answers, its id)."""
    mid = f"{run}-twenty"
    body = segment("wk-twenty", [mid])
    calls = [lambda u=urls[i % len(urls)]: post_full(u + "/v1/batch", body, {"Content-Type": "application/json"}) for i in range(20)]
    return at_once(calls), mid


def doors(binary, work):
    print("doors: one gateway, each door's id")
    g = gateway(binary, work, "doors")
    run = uuid.uuid4().hex[:8]
    try:
        ids = [f"{run}-{n}" for n in range(5)]
        statuses = [send_segment(g.url, "wk-a", ids) for _ in range(3)]
        check(statuses == [200, 200, 200], f"a batch sent three times is answered 200 each time: {statuses}")
        status = send_segment(g.url, "wk-a", [f"{run}-rep", f"{run}-x", f"{run}-rep"])
        check(status == 200, "a batch repeating an id is answered 200")
        status = send_segment(g.url, "wk-b", ids[:2])
        check(status == 200, "the same ids under another write key are answered 200")

        ph = json.dumps({"api_key": "phc_x", "batch": [{"event": "e", "distinct_id": "u", "uuid": f"{run}-ph"}]}).encode()
        sp = json.dumps({"schema": SNOWPLOW_SCHEMA, "data": [{"e": "pv", "eid": f"{run}-sp", "aid": "app", "tv": "t", "p": "web"}]}).encode()
        pixel = "/i?" + urllib.parse.urlencode({"e": "pv", "eid": f"{run}-px", "aid": "app", "tv": "t", "p": "web"})
        answers = []
        for _ in range(2):
            answers.append(post(g.url + "/batch", ph, {"Content-Type": "application/json"})[0])
            answers.append(post(g.url + "/com.snowplowanalytics.snowplow/tp2", sp, {"Content-Type": "application/json"})[0])
            answers.append(urllib.request.urlopen(g.url + pixel, timeout=10).status)
            answers.append(post(g.url + "/import", json.dumps({"import": run}).encode(), {"Idempotency-Key": f"{run}-imp"})[0])
        check(all(a == 200 for a in answers), f"every door answers 200 to its retry: {answers}")

        answers, mid = twenty_at_once([g.url], run)
        retryable = all(s == 200 or (s == 503 and ra) for s, ra in answers)
        check(retryable, f"20 copies at once: every answer a 200 or a retryable 503: {Counter(s for s, _ in answers)}")

        time.sleep(0.3)
        events = stored(g)
        by_id = Counter(e.get("messageId") for e in events if e.get("messageId"))
        seg_a = Counter(e["messageId"] for e in events if e.get("_gateway", {}).get("key") == "wk-a")
        check(all(seg_a[i] == 1 for i in ids), f"a batch sent three times: each event once ({[seg_a[i] for i in ids]})")
        check(seg_a[f"{run}-rep"] == 1 and seg_a[f"{run}-x"] == 1, "an id repeated inside a batch: once")
        check(all(by_id[i] == 2 for i in ids[:2]), "the same ids under two write keys: twice, one per source")
        check(sum(1 for e in events if e.get("uuid") == f"{run}-ph") == 1, "PostHog uuid sent twice: once")
        check(sum(1 for e in events if e.get("eid") == f"{run}-sp") == 1, "Snowplow eid (POST) sent twice: once")
        check(sum(1 for e in events if e.get("eid") == f"{run}-px") == 1, "Snowplow eid (GET /i) sent twice: once")
        check(sum(1 for e in events if e.get("import") == run) == 1, "/import Idempotency-Key sent twice: once")
        check(by_id[mid] == 1, f"20 copies at once: exactly once ({by_id[mid]})")
        dups = metric(g.url, "dedupe_duplicates_total")
        # 2 x 5 retried, 1 repeat, 4 doors' retries, 19 of the 20 copies.
        check(dups == 10 + 1 + 4 + 19, f"dedupe_duplicates_total counts each duplicate once: {dups:.0f} of 34")
    finally:
        g.stop()


def pair(binary, work, name, redis):
    extra = {"REDIS_URL": redis.url}
    return gateway(binary, work, name + "-a", extra), gateway(binary, work, name + "-b", extra)


class Retrier:
    """Threads sending Segment batches of `size` new events, each batch to
    one replica and then again to the other (an SDK's retry landing
    elsewhere), until `stop`. Keeps (status, ids) of every answer."""

    def __init__(self, urls, write_key, size=10, threads=4):
        self.urls, self.write_key, self.size = urls, write_key, size
        self.answers = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, index):
        n = 0
        while not self.stop.is_set():
            ids = [f"{self.write_key}-{index}-{n}-{k}" for k in range(self.size)]
            for hop in range(2):
                url = self.urls[(index + n + hop) % len(self.urls)]
                try:
                    status, _ = post_full(url + "/v1/batch", segment(self.write_key, ids), {"Content-Type": "application/json"})
                except OSError as e:
                    status = f"error {e}"
                with self.lock:
                    self.answers.append((status, ids))
            n += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def statuses(self):
        return Counter(s for s, _ in self.answers)

    def accepted_ids(self):
        return {i for s, ids in self.answers if s == 200 for i in ids}


def replicas(binary, work):
    print("replicas: two gateways, one redis-server")
    redis = Redis()
    a, b = pair(binary, work, "replicas", redis)
    run = uuid.uuid4().hex[:8]
    try:
        ids = [f"{run}-{n}" for n in range(10)]
        first, second = send_segment(a.url, "wk-r", ids), send_segment(b.url, "wk-r", ids)
        check((first, second) == (200, 200), f"a batch and its retry on the other replica: {first}, {second}")

        answers, mid = twenty_at_once([a.url, b.url], run)
        retryable = all(s == 200 or (s == 503 and ra) for s, ra in answers)
        check(retryable, f"20 copies at once over two replicas: every answer a 200 or a retryable 503: {Counter(s for s, _ in answers)}")

        with Retrier([a.url, b.url], f"wk-{run}") as r:
            time.sleep(5)
        time.sleep(0.5)
        events = stored(a, b)
        by_id = Counter(e.get("messageId") for e in events)
        check(all(by_id[i] == 1 for i in ids), f"a retry on the other replica: each event once ({[by_id[i] for i in ids]})")
        check(by_id[mid] == 1, f"20 copies over two replicas: exactly once ({by_id[mid]})")
        sent = r.accepted_ids()
        twice = [i for i in sent if by_id[i] > 1]
        missing = [i for i in sent if by_id[i] == 0]
        print(f"  retried batches: answers {dict(r.statuses())}, {len(sent)} events accepted")
        check(len(sent) > 500, f"the retrier got events in ({len(sent)})")
        check(not missing, f"every event answered 200 is stored ({len(missing)} missing)")
        check(not twice, f"each event once across both replicas ({len(twice)} stored twice)")
        check(metric(a.url, "dedupe_duplicates_total") > 0 and metric(b.url, "dedupe_duplicates_total") > 0, "both replicas recognised retries")
        check(metric(a.url, "dedupe_ids") == 0, "no ids kept in the process with REDIS_URL")
    finally:
        a.stop()
        b.stop()
        redis.kill()


def outage(binary, work):
    print("outage: Redis killed under load, then back")
    redis = Redis()
    a, b = pair(binary, work, "outage", redis)
    run = uuid.uuid4().hex[:8]
    try:
        with Retrier([a.url, b.url], f"wk-{run}") as r:
            time.sleep(2)
            redis.kill()
            time.sleep(3)
            redis = Redis(redis.port)
            time.sleep(3)
        statuses = r.statuses()
        print(f"  answers {dict(statuses)}")
        check(set(statuses) <= {200}, f"no 5xx and no failed request while Redis was away: {dict(statuses)}")
        by_id = Counter(e.get("messageId") for e in stored(a, b))
        missing = [i for i in r.accepted_ids() if by_id[i] == 0]
        check(not missing, f"every event answered 200 is stored, at least once ({len(missing)} missing)")
        errors = metric(a.url, "dedupe_store_errors_total") + metric(b.url, "dedupe_store_errors_total")
        check(errors > 0, f"the outage is counted (dedupe_store_errors_total {errors:.0f})")
        for g in (a, b):
            log = open(g.log.name).read()
            check(log.count("REDIS_URL does not answer") == 1, f"the outage is logged once by {g.url}")
        ids = [f"{run}-after-{n}" for n in range(5)]
        send_segment(a.url, "wk-after", ids)
        send_segment(b.url, "wk-after", ids)
        time.sleep(0.3)
        by_id = Counter(e.get("messageId") for e in stored(a, b))
        check(all(by_id[i] == 1 for i in ids), f"Redis back: a retry on the other replica is recognised again ({[by_id[i] for i in ids]})")
    finally:
        a.stop()
        b.stop()
        redis.kill()


def main():
    binary = sys.argv[1]
    wanted = sys.argv[2:] or ["doors", "replicas", "outage"]
    work = tempfile.mkdtemp(prefix="dedupe-")
    scenarios = {"doors": doors, "replicas": replicas, "outage": outage}
    for name in wanted:
        scenarios[name](binary, work)
    shutil.rmtree(work, ignore_errors=True)
    if FAILURES:
        print(f"dedupe: {len(FAILURES)} failed: " + "; ".join(FAILURES))
        sys.exit(1)
    print("dedupe: all checks passed")


if __name__ == "__main__":
    main()
