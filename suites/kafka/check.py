#!/usr/bin/env python3
"""The Kafka sink against a real broker process (tansu on 127.0.0.1).

1. Every door: `POST /import` with keys (three users, each in turn),
   `POST /import/batch` (one key per batch), and segment-analytics-python
   posting `/v1/batch`. Every partition is read back with `assign` (no
   consumer group): each event that got a 2xx is there exactly once, with
   the bytes sent (the SDK's events as their own JSON objects), its key as
   the message key, one partition per key, in the order each user sent.
   The /import receipt names the partition and offset where the record is.
2. The broker killed (SIGKILL) and started again under load, 4 senders
   posting keyed events: the gateway must answer 503 (never a 2xx for what
   it could not store), then 200 again within 10 s of the broker's return,
   without a restart of its own; every event 2xx'd after the broker came
   back is in the topic exactly once. (tansu keeps topics in memory here, so
   what was stored before the kill is gone with it: the broker's loss, not
   the gateway's, and not checked.)

    suites/kafka/run.sh target/release/clickstream-gateway   # installs, then runs this

Ends with `kafka check: N passed, M failed`; exits 1 on any failure.
"""

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid

from harness.gateway import Gateway, post
from harness.kafka import read_topic as read_all
from harness.segment import send_tracks

TOPIC = "clicks"
PARTITIONS = 3
USERS = ["user-1", "user-2", "user-\u00e9-3"]


def kafka_gateway(binary, bootstrap):
    """The gateway with the Kafka sink's documented required settings only."""
    return Gateway(binary, {"SINK": "kafka", "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPIC": TOPIC})


def read_topic(bootstrap):
    """Every message of every partition of the topic: (partition, offset, key, value)."""
    return read_all(bootstrap, TOPIC)


def check_doors(gateway, bootstrap, run, failures):
    """Phase 1: what each door sent, as (key, bytes, user order) to find."""
    wanted = []  # (key, value, user, seq)
    receipts = []
    for seq in range(6):
        for user in USERS:
            body = json.dumps({"run": run, "door": "import", "user": user, "seq": seq, "note": "caf\u00e9 \u2713"}).encode()
            # The key's UTF-8 bytes as the header's value (urllib sends Latin-1).
            status, answer = post(gateway.url + "/import", body, {"X-Partition-Key": user.encode().decode("latin-1")})
            if status != 200:
                failures.append(f"/import {user} {seq}: {status} {answer[:200]!r}")
                continue
            receipt = json.loads(answer)
            receipts.append((receipt, body))
            wanted.append((user.encode(), body, user, seq))
    for batch in range(5):
        key = f"batch-{batch}"
        events = [json.dumps({"run": run, "door": "batch", "batch": batch, "seq": i}).encode() for i in range(20)]
        status, answer = post(gateway.url + "/import/batch", b"[" + b",".join(events) + b"]", {"X-Partition-Key": key})
        if status != 200:
            failures.append(f"/import/batch {batch}: {status} {answer[:200]!r}")
            continue
        wanted += [(key.encode(), e, key, i) for i, e in enumerate(events)]

    sdk_ids, sdk_errors = send_tracks(
        gateway.url, "wk-kafka", USERS, 7,
        message_id=lambda user, seq: f"{run}.segment.{USERS.index(user)}.{seq}",
        properties=lambda user, seq: {"seq": seq, "run": run},
    )
    failures += [f"segment-analytics-python: {e}" for e in sdk_errors]

    stored = read_topic(bootstrap)
    by_value = {}
    for partition, offset, key, value in stored:
        by_value.setdefault(value, []).append((partition, offset, key))
    passed = 0
    order = {}
    for key, value, user, seq in wanted:
        found = by_value.get(value, [])
        if len(found) != 1 or found[0][2] != key:
            failures.append(f"{user} {seq}: stored {len(found)} times, keys {[f[2] for f in found]}")
            continue
        passed += 1
        order.setdefault(user, []).append((found[0][0], found[0][1], seq))
    for receipt, body in receipts:
        where = [(p, o) for p, o, _ in by_value.get(body, [])]
        if (receipt.get("Partition"), receipt.get("Offset")) not in where or receipt.get("Topic") != TOPIC:
            failures.append(f"receipt {receipt} does not point at its record {where}")
    sdk_seen = {}
    for partition, offset, key, value in stored:
        try:
            event = json.loads(value)
        except ValueError:
            continue
        message_id = event.get("messageId") if isinstance(event, dict) else None
        if message_id in sdk_ids:
            sdk_seen.setdefault(message_id, []).append((partition, offset, key, event))
    for message_id, (user, seq) in sdk_ids.items():
        found = sdk_seen.get(message_id, [])
        if len(found) != 1:
            failures.append(f"{message_id}: stored {len(found)} times")
            continue
        partition, offset, key, event = found[0]
        if key != user.encode() or event.get("_gateway", {}).get("protocol") != "segment":
            failures.append(f"{message_id}: key {key!r}, _gateway {event.get('_gateway')}")
            continue
        passed += 1
        order.setdefault("sdk " + user, []).append((partition, offset, seq))
    for who, seen in order.items():
        if len({p for p, _, _ in seen}) != 1:
            failures.append(f"{who}: on {len({p for p, _, _ in seen})} partitions")
        seqs = [seq for _, _, seq in sorted(seen)]
        if seqs != sorted(seqs):
            failures.append(f"{who}: out of order {seqs}")
    print(f"  doors: {passed} events read back as sent ({len(stored)} messages in the topic)")
    return passed


def check_restart(gateway, bootstrap, tansu, run, failures):
    """Phase 2: kill -9 the broker under load and start it again."""
    results = []  # (sent_at, answered_at, status, body, key)
    lock = threading.Lock()
    stop = threading.Event()

    def sender(n):
        for i in range(3000):
            if stop.is_set():
                return
            key = f"load-{n}"
            body = json.dumps({"run": run, "door": "restart", "sender": n, "i": i}).encode()
            sent = time.time()
            status, _ = post(gateway.url + "/import", body, {"X-Partition-Key": key})
            with lock:
                results.append((sent, time.time(), status, body, key))
            time.sleep(0.02)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        subprocess.run([tansu, "kill"], check=True)
        killed = time.time()
        time.sleep(2)
        subprocess.run([tansu, "start"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([tansu, "topic", TOPIC, str(PARTITIONS)], check=True)
        back = time.time()
        time.sleep(15)
    finally:
        stop.set()
        for t in threads:
            t.join()

    statuses = {}
    for _, _, status, _, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    print(f"  restart: {len(results)} requests, answers {statuses}, broker down {back - killed:.1f} s")
    if any(s not in (200, 503) for s in statuses):
        failures.append(f"answers other than 200 and 503: {statuses}")
    if not statuses.get(503):
        failures.append("no 503 while the broker was down")
    recovered = [r for r in results if r[0] >= back + 10]
    if not recovered or any(r[2] != 200 for r in recovered):
        failures.append(f"not all 200 from 10 s after the broker's return: {[r[2] for r in recovered][:20]}")
    first_ok = min((r[1] for r in results if r[0] >= back and r[2] == 200), default=None)
    if first_ok is None:
        failures.append("no 200 after the broker came back")
    else:
        print(f"  restart: first 200 {first_ok - back:.1f} s after the broker's return")
    after = [r for r in results if r[0] >= back and r[2] == 200]
    stored = read_topic(bootstrap)
    counts = {}
    for _, _, key, value in stored:
        counts[(key, value)] = counts.get((key, value), 0) + 1
    passed = 0
    for _, _, _, body, key in after:
        n = counts.get((key.encode(), body), 0)
        if n != 1:
            failures.append(f"2xx'd after the restart, stored {n} times: {body!r}")
        else:
            passed += 1
    print(f"  restart: {passed} events 2xx'd after the broker's return read back once each")
    return passed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gateway")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--tansu", required=True, help="scripts/tansu.sh")
    args = parser.parse_args()

    subprocess.run([args.tansu, "topic", TOPIC, str(PARTITIONS)], check=True)
    run = uuid.uuid4().hex[:10]
    gateway = kafka_gateway(args.gateway, args.bootstrap)
    failures = []
    passed = 0
    try:
        passed += check_doors(gateway, args.bootstrap, run, failures)
        passed += check_restart(gateway, args.bootstrap, args.tansu, run, failures)
    finally:
        gateway.stop()
    for failure in failures[:40]:
        print("FAIL", failure)
    if failures:
        print("--- gateway log")
        print(gateway.log_tail())
    print(f"kafka check: {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures or not passed else 0)


if __name__ == "__main__":
    main()
