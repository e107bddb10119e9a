"""Many sources on one gateway, with real processes: the gateway binary
with the file sink, and a real `redis-server` on 127.0.0.1.

  flood     one source over its allowance for a few seconds: the events
            accepted are within 15 % of burst + rate x seconds, every 429
            has a Retry-After, no event of a refused request is stored,
            and a second source below its allowance is never refused;
  shared    two gateways sharing REDIS_URL accept, together, what one
            allowance is (within 20 %), not what two are;
  outage    Redis killed while two gateways are flooded: no 5xx, each
            limits alone (source_sharing 0), and once Redis is back the
            two share again (source_sharing 1, one allowance within 20 %);
  file      SOURCES_FILE edited while requests run: a key blocked (403
            source_blocked), a file that does not parse (the block stays),
            the key unblocked, SIGHUP, and the other key untouched.

Every server binds 127.0.0.1; every loop is bounded in time. Exits 1 when
a promise is broken.

  suites/sources/run.sh target/debug/clickstream-gateway [flood shared outage file]
"""

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

from harness import filesink
from harness.gateway import Gateway
from harness.redis import Redis

FAILURES = []


def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def segment_batch(write_key, tag, events):
    """A Segment batch of `events` events tagged `tag` (each event's
    messageId is `tag:n`)."""
    batch = [
        {"type": "track", "event": "Load", "userId": f"user-{n % 50}", "messageId": f"{tag}:{n}", "properties": {"n": n}}
        for n in range(events)
    ]
    return json.dumps({"batch": batch, "writeKey": write_key}).encode()


class Sender:
    """Threads posting Segment batches of `events` events for `write_key`
    to `urls` (in turn) until `stop` is set, `pace` seconds apart (0: as
    fast as answered). Keeps every answer: (status, tag, retry-after)."""

    def __init__(self, urls, write_key, events, threads=2, pace=0.0):
        self.urls, self.write_key, self.events, self.pace = urls, write_key, events, pace
        self.answers = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, index):
        n = 0
        while not self.stop.is_set():
            url = self.urls[(index + n) % len(self.urls)]
            tag = f"{self.write_key}-{index}-{n}-{uuid.uuid4().hex[:6]}"
            request = urllib.request.Request(
                url + "/v1/batch",
                data=segment_batch(self.write_key, tag, self.events),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    status, retry = r.status, r.headers.get("Retry-After")
            except urllib.error.HTTPError as e:
                status, retry = e.code, e.headers.get("Retry-After")
                e.read()
            except OSError as e:
                status, retry = f"error {e}", None
            with self.lock:
                self.answers.append((status, tag, retry, time.monotonic()))
            n += 1
            if self.pace:
                time.sleep(self.pace)

    def __enter__(self):
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()
        self.seconds = time.monotonic() - self.started

    def accepted(self, since=0.0):
        return sum(self.events for s, _, _, at in self.answers if s == 200 and at >= since)

    def statuses(self):
        counts = {}
        for s, *_ in self.answers:
            counts[s] = counts.get(s, 0) + 1
        return counts


def stored_tags(path):
    """{request tag: events stored} from the file sink."""
    tags = {}
    for _, _, data in filesink.read(path):
        tag = json.loads(data)["messageId"].rsplit(":", 1)[0]
        tags[tag] = tags.get(tag, 0) + 1
    return tags


def metric(url, name, labels=""):
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + (("{" + labels) if labels else "")) or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def gateway(binary, work, name, extra):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    env = {"SINK": "file", "FILE_SINK_PATH": os.path.join(d, "records.ndjson"), **extra}
    return Gateway(binary, env, work=d)


RATE, BURST = 200, 400


def flood(binary, work):
    print("flood: one source over its allowance, one below it")
    g = gateway(binary, work, "flood", {"SOURCE_EVENTS_PER_SECOND": str(RATE), "SOURCE_BURST_EVENTS": str(BURST)})
    try:
        with Sender([g.url], "wk_flood", 20, threads=4) as flooder, Sender([g.url], "wk_calm", 10, threads=1, pace=0.1) as calm:
            time.sleep(6)
        seconds = max(flooder.seconds, calm.seconds)
        want = BURST + RATE * seconds
        got = flooder.accepted()
        print(f"  wk_flood: {got} events accepted in {seconds:.1f} s (burst + rate x seconds = {want:.0f}), answers {flooder.statuses()}")
        print(f"  wk_calm: answers {calm.statuses()}")
        check(abs(got - want) <= 0.15 * want, f"accepted within 15 % of {want:.0f}: {got} ({got / want:.2f})")
        limited = [a for a in flooder.answers if a[0] == 429]
        check(len(limited) > 0, f"the flood was refused ({len(limited)} x 429)")
        check(all(r is not None and r.isdigit() and int(r) >= 1 for _, _, r, _ in limited), "every 429 has a Retry-After in whole seconds")
        check(set(calm.statuses()) == {200}, f"the calm source was never refused: {calm.statuses()}")
        tags = stored_tags(os.path.join(g.dir, "records.ndjson"))
        accepted = {t: flooder.events for s, t, _, _ in flooder.answers if s == 200}
        accepted.update({t: calm.events for s, t, _, _ in calm.answers if s == 200})
        refused = [t for s, t, _, _ in flooder.answers if s != 200]
        check(tags == accepted, f"stored exactly the accepted requests' events ({sum(tags.values())} events of {len(tags)} requests)")
        check(not any(t in tags for t in refused), f"no event of the {len(refused)} refused requests is stored")
    finally:
        g.stop()


def pair(binary, work, name, redis):
    extra = {
        "SOURCE_EVENTS_PER_SECOND": str(RATE),
        "SOURCE_BURST_EVENTS": str(RATE),
        "REDIS_URL": redis.url,
        "REDIS_SYNC_MS": "100",
    }
    return gateway(binary, work, name + "-a", extra), gateway(binary, work, name + "-b", extra)


def shared(binary, work):
    print("shared: two gateways, one REDIS_URL, one allowance")
    redis = Redis()
    a, b = pair(binary, work, "shared", redis)
    try:
        with Sender([a.url, b.url], "wk_shared", 10, threads=4) as s:
            time.sleep(8)
        one = RATE + RATE * s.seconds
        got = s.accepted()
        print(f"  {got} events accepted by the two in {s.seconds:.1f} s; one allowance is {one:.0f}, two {2 * one:.0f}; answers {s.statuses()}")
        check(abs(got - one) <= 0.2 * one, f"together within 20 % of one allowance: {got / one:.2f}")
        check(metric(a.url, "source_sharing") == 1 and metric(b.url, "source_sharing") == 1, "both report source_sharing 1")
    finally:
        a.stop()
        b.stop()
        redis.kill()


def outage(binary, work):
    print("outage: Redis killed under load, then back")
    redis = Redis()
    a, b = pair(binary, work, "outage", redis)
    try:
        with Sender([a.url, b.url], "wk_outage", 10, threads=4) as s:
            time.sleep(3)
            redis.kill()
            time.sleep(3)
            during = (metric(a.url, "source_sharing"), metric(b.url, "source_sharing"))
            redis = Redis(redis.port)
            time.sleep(2)
            after = (metric(a.url, "source_sharing"), metric(b.url, "source_sharing"))
            since = time.monotonic()
            time.sleep(5)
        statuses = s.statuses()
        print(f"  answers {statuses}; source_sharing during the outage {during}, after {after}")
        check(all(st in (200, 429) for st in statuses), f"no 5xx and no failed request: {statuses}")
        check(during == (0, 0), "each gateway limits alone while Redis is down (source_sharing 0)")
        check(after == (1, 1), "sharing resumes when Redis is back (source_sharing 1)")
        got = s.accepted(since)
        window = time.monotonic() - since
        one = RATE * window
        print(f"  after Redis came back: {got} events in {window:.1f} s, one allowance's rate is {one:.0f}")
        check(abs(got - one) <= 0.2 * one, f"one allowance again, within 20 %: {got / one:.2f}")
        for g in (a, b):
            log = open(g.log.name).read()
            check(log.count("REDIS_URL cannot be reached") == 1, f"the outage is logged once by {g.url}")
    finally:
        a.stop()
        b.stop()
        redis.kill()


def file(binary, work):
    print("file: SOURCES_FILE edited while requests run")
    path = os.path.join(work, "sources.toml")
    with open(path, "w") as f:
        f.write("")
    g = gateway(binary, work, "file", {"SOURCES_FILE": path})
    try:
        with Sender([g.url], "wk_target", 5, threads=1, pace=0.05) as target, Sender([g.url], "wk_bystander", 5, threads=1, pace=0.05) as bystander:
            time.sleep(1)
            with open(path, "w") as f:
                f.write('[sources."wk_target"]\nblocked = true\n')
            blocked_at = time.monotonic()
            time.sleep(3)
            with open(path, "w") as f:
                f.write('[sources."wk_target"\nblocked = false\n')  # does not parse
            time.sleep(2)
            still = [a for a in target.answers if a[3] > time.monotonic() - 1]
            with open(path, "w") as f:
                f.write("# nobody blocked\n")
            os.kill(g.pid, signal.SIGHUP)
            unblocked_at = time.monotonic()
            time.sleep(2)
        first_403 = min((at for s, _, _, at in target.answers if s == 403), default=None)
        last_403 = max((at for s, _, _, at in target.answers if s == 403), default=None)
        print(f"  wk_target answers {target.statuses()}, wk_bystander {bystander.statuses()}")
        check(first_403 is not None and first_403 - blocked_at < 2.5, "the block is in force within 2.5 s of the edit")
        check(bool(still) and all(s == 403 for s, *_ in still), "a file that does not parse keeps the block")
        check(last_403 is not None and last_403 - unblocked_at < 1.0, "unblocked within a second of the edit and SIGHUP")
        check(any(s == 200 and at > unblocked_at + 1 for s, _, _, at in target.answers), "the key is accepted again")
        check(set(bystander.statuses()) == {200}, "the other key was never refused")
        check(g.proc.poll() is None, "SIGHUP re-reads the file, it does not stop the gateway")
        log = open(g.log.name).read()
        check("SOURCES_FILE not used" in log and "wk_target" not in log, "the bad file is logged, the key is not")
    finally:
        g.stop()


def main():
    binary = sys.argv[1]
    wanted = sys.argv[2:] or ["flood", "shared", "outage", "file"]
    work = tempfile.mkdtemp(prefix="sources-")
    scenarios = {"flood": flood, "shared": shared, "outage": outage, "file": file}
    for name in wanted:
        scenarios[name](binary, work)
    shutil.rmtree(work, ignore_errors=True)
    if FAILURES:
        print(f"sources: {len(FAILURES)} failed: " + "; ".join(FAILURES))
        sys.exit(1)
    print("sources: all checks passed")


if __name__ == "__main__":
    main()
