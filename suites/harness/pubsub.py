"""The Pub/Sub emulator over its REST API: topics, subscriptions, and every
message of a subscription pulled back."""

import base64
import json
import time
import urllib.error
import urllib.request


def call(url, body=None, method="POST", timeout=30):
    """One REST call: (status, parsed JSON answer or {})."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}
    except OSError:
        # Not answering (an emulator restarting): no status.
        return 0, {}


def make_topic(host, project, name, ordered=True, wait_s=60):
    """Topic `name` and its subscription `name-sub` (ordered, so one key's
    messages come in order), waiting up to `wait_s` for the emulator."""
    base = f"http://{host}/v1/projects/{project}"
    deadline = time.monotonic() + wait_s
    while call(f"{base}/topics/{name}", {}, method="PUT")[0] not in (200, 409):
        if time.monotonic() > deadline:
            raise SystemExit("the Pub/Sub emulator does not answer")
        time.sleep(0.5)
    call(f"{base}/subscriptions/{name}-sub",
         {"topic": f"projects/{project}/topics/{name}", "enableMessageOrdering": ordered}, method="PUT")


def pull(host, subscription, quiet_s=2.0, deadline_s=60):
    """Every message of `subscription` (`projects/P/subscriptions/S`),
    pulled and acknowledged until nothing more comes for `quiet_s`: (data
    bytes, ordering key)."""
    url = f"http://{host}/v1/{subscription}"
    messages = []
    deadline = time.monotonic() + deadline_s
    last = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
        _, body = call(url + ":pull", {"maxMessages": 1000, "returnImmediately": True})
        received = body.get("receivedMessages", [])
        if not received:
            time.sleep(0.2)
            continue
        last = time.monotonic()
        for m in received:
            message = m["message"]
            messages.append((base64.b64decode(message.get("data", "")), message.get("orderingKey", "")))
        call(url + ":acknowledge", {"ackIds": [m["ackId"] for m in received]})
    return messages
