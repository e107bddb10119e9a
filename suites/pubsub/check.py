#!/usr/bin/env python3
"""The Pub/Sub sink with a real SDK and under load through an emulator restart.

    pubsub_check.py GATEWAY_BINARY --emulator HOST:PORT --restart "COMMAND"

1. segment-analytics-python (unmodified, gzip on) sends 7 events for each of
   5 users to the gateway (SINK=pubsub); every one is read back from an
   ordered subscription once, its ordering key the user id, in order per
   user, stamped `_gateway.protocol = segment`.
2. 8 clients post `/import` events (one key each, retrying a 503 as SDKs do)
   while COMMAND restarts the emulator (it keeps nothing across a restart,
   so this script makes the topic and subscription again): while it is down
   the gateway answers 503, and every event acknowledged with a 200 after the
   topic is back is read back once, in order per key, without restarting
   the gateway.
Prints what it found; exits 1 on any failure. Everything is on 127.0.0.1.
"""

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

from harness import pubsub
from harness.gateway import Gateway
from harness.segment import send_tracks

PROJECT = "check"
USERS = [f"user-{i}" for i in range(5)]


def make_topic(host, name):
    """The topic and an ordered subscription; waits for the emulator."""
    pubsub.make_topic(host, PROJECT, name)


def pull(host, name):
    """Every message of the subscription, acknowledged: (data, ordering key)."""
    return pubsub.pull(host, f"projects/{PROJECT}/subscriptions/{name}-sub")


def check_sdk(gateway, host, failures):
    run = uuid.uuid4().hex[:8]
    sent, errors = send_tracks(
        gateway.url, "wk-pubsub", USERS, 7,
        message_id=lambda user, seq: f"{run}.{user}.{seq}",
        properties=lambda user, seq: {"seq": seq},
    )
    failures += [f"segment-analytics-python: {e}" for e in errors]
    seen = {}
    for data, key in pull(host, "sdk"):
        event = json.loads(data)
        seen.setdefault(event.get("messageId"), []).append((key, event))
    order = {}
    for message_id, (user, seq) in sent.items():
        found = seen.get(message_id, [])
        if len(found) != 1:
            failures.append(f"{message_id}: published {len(found)} times")
            continue
        key, event = found[0]
        if key != user or event.get("_gateway", {}).get("protocol") != "segment":
            failures.append(f"{message_id}: ordering key {key!r}, _gateway {event.get('_gateway')}")
        order.setdefault(user, []).append(event["properties"]["seq"])
    for user, seqs in order.items():
        if seqs != sorted(seqs):
            failures.append(f"{user}: out of order {seqs}")
    print(f"  sdk: {len(sent)} events sent by segment-analytics-python, {sum(map(len, seen.values()))} read back")


def check_restart(gateway, host, restart, failures):
    run = uuid.uuid4().hex[:8]
    back = threading.Event()
    stop = threading.Event()
    acked_after, statuses = {}, {}
    lock = threading.Lock()

    def client(c):
        seq = 0
        while not stop.is_set():
            body = json.dumps({"run": run, "client": c, "seq": seq})
            for _ in range(20):
                ok_after = back.is_set()
                request = urllib.request.Request(gateway.url + "/import", data=body.encode(),
                                                 headers={"X-Partition-Key": f"c{c}"})
                try:
                    with urllib.request.urlopen(request, timeout=15) as r:
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                except OSError:
                    status = 0
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    if ok_after:
                        with lock:
                            acked_after.setdefault(c, []).append(seq)
                    break
                time.sleep(0.2)
            seq += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    time.sleep(2)
    subprocess.run(restart, shell=True, check=True)
    make_topic(host, "load")
    back.set()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join()
    found = {}
    for data, key in pull(host, "load"):
        event = json.loads(data)
        if event.get("run") == run:
            found.setdefault(f"c{event['client']}", []).append(event["seq"])
            if key != f"c{event['client']}":
                failures.append(f"ordering key {key!r} for client {event['client']}")
    expected = sum(len(v) for v in acked_after.values())
    for c, seqs in acked_after.items():
        got = found.get(f"c{c}", [])
        missing = [s for s in seqs if s not in got]
        if missing:
            failures.append(f"client {c}: {len(missing)} acknowledged events missing, e.g. {missing[:5]}")
        dup = len(got) - len(set(got))
        if dup:
            failures.append(f"client {c}: {dup} duplicates")
        if got != sorted(got):
            failures.append(f"client {c}: out of order")
    if 503 not in statuses:
        failures.append(f"no 503 while the emulator was down: {statuses}")
    print(f"  restart: answers {statuses}; {expected} events acknowledged after the topic came back, "
          f"{sum(len(v) for v in found.values())} read back")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("--emulator", required=True, help="HOST:PORT of the Pub/Sub emulator")
    parser.add_argument("--restart", required=True, help="a command that restarts the emulator")
    args = parser.parse_args()
    failures = []
    for name in ("sdk", "load"):
        make_topic(args.emulator, name)
    env = {"SINK": "pubsub", "PUBSUB_EMULATOR_HOST": args.emulator, "PUBSUB_TIMEOUT_MS": "3000"}
    gateway = Gateway(args.binary, dict(env, PUBSUB_TOPIC=f"projects/{PROJECT}/topics/sdk"))
    try:
        check_sdk(gateway, args.emulator, failures)
    finally:
        gateway.stop()
    gateway = Gateway(args.binary, dict(env, PUBSUB_TOPIC=f"projects/{PROJECT}/topics/load"))
    try:
        check_restart(gateway, args.emulator, args.restart, failures)
    finally:
        gateway.stop()
    for failure in failures[:20]:
        print("  FAIL", failure)
    print(f"pubsub check: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
