"""The hostile inputs, one case a line: a request and what the gateway must answer.

A case is `Case(name, request, expect)`:
- `request` is the raw bytes sent on one new connection (an HTTP/1.1
  request, or several for pipelining, or a malformed one), built with `req()`;
- `expect` is the set of acceptable status codes of the first answer, or
  `CLOSED` when the gateway may also close the connection without one.

`BOMBS` are cases whose peak memory is measured as well (`run.py` reads the
gateway's VmHWM before and after each). To add a case, add a line.
"""

import base64
import gzip
import json
import shutil
import subprocess
import zlib
from dataclasses import dataclass

CLOSED = 0  # the connection ended without a status line


def req(method, path, body=b"", headers=(), length=True):
    """One HTTP/1.1 request as bytes; `length=False` leaves Content-Length out."""
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post(path, body, *headers):
    return req("POST", path, body, headers)


@dataclass
class Case:
    name: str
    request: bytes
    expect: set
    # Peak RSS may grow by at most this many MiB over the gateway's start.
    max_rss_growth_mib: int = 64


def zstd_bomb():
    """1 GiB of zeros with a 2 GiB window (`zstd --long=31`): 33 KB."""
    if not shutil.which("zstd"):
        raise SystemExit("hostile suite: the zstd command is needed (apt-get install zstd)")
    out = subprocess.run(
        "head -c 1G /dev/zero | zstd -19 --long=31 -q -c", shell=True, check=True, capture_output=True
    )
    return out.stdout


def zstd_declared_gigabyte():
    """A single-segment frame header declaring 1 GiB of content, then junk."""
    return bytes([0x28, 0xB5, 0x2F, 0xFD, 0xE0]) + (1 << 30).to_bytes(8, "little") + b"\0" * 64


def brotli_bomb():
    import brotli

    return brotli.compress(b"\0" * (256 << 20), quality=5, lgwin=24)


def gzip_bomb():
    return gzip.compress(b"\0" * (256 << 20), 9)


def deflate_bomb():
    return zlib.compress(b"\0" * (256 << 20), 9)


def amplified_write_key():
    """The probe's amplification: a 500,000-character write key, 1,000 events, 3.5 KB gzipped."""
    batch = [{"type": "track", "event": "x", "userId": f"u{i}"} for i in range(1000)]
    return gzip.compress(json.dumps({"writeKey": "K" * 500000, "batch": batch}).encode())


def amplified_sent_at():
    batch = [{"type": "track", "event": "x", "userId": f"u{i}"} for i in range(1000)]
    return gzip.compress(json.dumps({"sentAt": {"pad": "S" * 500000}, "batch": batch}).encode())


def amplified_token():
    batch = [{"event": "x", "distinct_id": f"u{i}"} for i in range(1000)]
    return gzip.compress(json.dumps({"api_key": "T" * 500000, "batch": batch}).encode())


def posthog_form_bomb():
    """posthog-js's unload form: base64 of gzip, inflating to far past the limit."""
    inner = base64.b64encode(gzip.compress(b"[" + b" " * (64 << 20) + b"]")).decode()
    return "data=" + inner.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")


def segment_batch(events):
    return json.dumps({"batch": events})


def deep(depth):
    """A JSON value nested `depth` deep: arrays around a 1."""
    return "[" * depth + "1" + "]" * depth


def deep_event(fields, depth):
    """An event whose `x` makes it nest `depth` deep, counting the event itself."""
    return "{" + fields + ',"x":' + deep(depth - 1) + "}"


SEGMENT_FIELDS = '"type":"track","event":"e","userId":"u"'
SNOWPLOW = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def nested_to_every_door(depth):
    """The probe's poison record, an event nested `depth` deep, to every door that reads JSON."""
    return [
        ("/v1/batch", '{"batch":[' + deep_event(SEGMENT_FIELDS, depth) + "]}"),
        ("/batch/", '{"api_key":"k","batch":[' + deep_event('"event":"e","distinct_id":"u"', depth) + "]}"),
        ("/com.snowplowanalytics.snowplow/tp2", '{"schema":"' + SNOWPLOW + '","data":[' + deep_event('"e":"pv","aid":"a"', depth) + "]}"),
        ("/import/batch", deep_event('"a":1', depth) + "\n"),
    ]


def tiny_events(count=10000):
    """The probe's tiny-event batch: 10,000 minimal events, ~420 KB decoded, ~1.5 KB gzipped."""
    return gzip.compress(segment_batch([{"type": "track", "event": "e", "userId": "u"}] * count).encode())


TRACK = {"type": "track", "event": "x", "userId": "u"}
JSON = ("Content-Type", "application/json")
NDJSON = ("Content-Type", "application/x-ndjson")
GZIP = ("Content-Encoding", "gzip")

BOMBS = [
    Case("zstd window bomb on /import", post("/import", zstd_bomb(), ("Content-Encoding", "zstd")), {413}),
    Case("zstd declaring 1 GiB of content", post("/import", zstd_declared_gigabyte(), ("Content-Encoding", "zstd")), {413}),
    Case("zstd window bomb on /v1/batch", post("/v1/batch", zstd_bomb(), ("Content-Encoding", "zstd"), JSON), {413}),
    Case("brotli bomb on /import/batch", post("/import/batch", brotli_bomb(), ("Content-Encoding", "br")), {413}),
    Case("gzip bomb on /v1/batch", post("/v1/batch", gzip_bomb(), GZIP, JSON), {413}),
    Case("deflate bomb on /import", post("/import", deflate_bomb(), ("Content-Encoding", "deflate")), {413}),
    Case("500,000-character writeKey x 1,000 events", post("/v1/batch", amplified_write_key(), GZIP, JSON), {400}),
    Case("500 KB sentAt x 1,000 events", post("/v1/batch", amplified_sent_at(), GZIP, JSON), {400}),
    Case("500,000-character PostHog api_key x 1,000 events", post("/batch/", amplified_token(), GZIP, JSON), {400}),
    Case("PostHog base64 form inflating past its limit", post("/e/", posthog_form_bomb(), ("Content-Type", "application/x-www-form-urlencoded")), {400, 413}),
]

CASES = [
    # Bodies that do not parse.
    # An element of /import/batch is stored as sent (it is valid JSON); parsed nowhere, it costs no stack.
    Case("nested arrays 100,000 deep in /import/batch", post("/import/batch", "[" * 100000 + "]" * 100000), {400}),
    Case("nested arrays 100,000 deep in /v1/batch", post("/v1/batch", '{"batch":' + "[" * 100000 + "]" * 100000 + "}", JSON), {400}),
    Case("nested objects in a Segment event", post("/v1/batch", segment_batch([{"type": "track", "event": "x", "userId": "u", "p": json.loads("[" * 60 + "]" * 60)}]), JSON), {200}),
    # JSON_MAX_DEPTH (64): at the limit stored, one past it and 200,000 deep refused (a record no consumer could parse).
    *[Case(f"an event nested 64 deep to {path}", post(path, body, NDJSON if path == "/import/batch" else JSON), {200}) for path, body in nested_to_every_door(64)],
    *[Case(f"an event nested {depth} deep to {path}", post(path, body, NDJSON if path == "/import/batch" else JSON), {400}) for depth in (65, 200000) for path, body in nested_to_every_door(depth)],
    Case("a lone surrogate in /import/batch", post("/import/batch", '[{"a":"\\ud800"}]'), {200, 400}),
    Case("a lone surrogate in a Segment event", post("/v1/batch", '{"batch":[{"type":"track","event":"\\udfff","userId":"u"}]}', JSON), {200, 400}),
    Case("NUL bytes in /import", post("/import", b"\0\0\0{}\0"), {200}),
    Case("NUL in a JSON string", post("/v1/batch", '{"batch":[{"type":"track","event":"a\\u0000b","userId":"u"}]}', JSON), {200}),
    Case("raw NUL inside /import/batch JSON", post("/import/batch", b'[{"a":"\0"}]'), {400}),
    Case("invalid UTF-8 in a Segment batch", post("/v1/batch", b'{"batch":[{"type":"track","event":"\xff\xfe","userId":"u"}]}', JSON), {400}),
    Case("bad base64 in a PostHog form", post("/e/", "data=%%%not-base64", ("Content-Type", "application/x-www-form-urlencoded")), {400}),
    Case("a PostHog form without data", post("/e/?compression=base64", "other=1"), {400}),
    Case("truncated gzip", post("/import", gzip.compress(b'{"a":1}')[:-6], GZIP), {400}),
    Case("unknown Content-Encoding", post("/import", "{}", ("Content-Encoding", "compress")), {415}),
    Case("a zstd frame cut after its magic", post("/import", bytes([0x28, 0xB5, 0x2F, 0xFD]), ("Content-Encoding", "zstd")), {400}),
    Case("empty body", post("/import", ""), {400}),
    Case("a huge X-Partition-Key", post("/import", "{}", ("X-Partition-Key", "k" * 5000)), {400}),
    Case("a control character in X-Partition-Key", post("/import", "{}", ("X-Partition-Key", "a\x01b")), {400}),
    Case("a 300-character Snowplow aid", post("/com.snowplowanalytics.snowplow/tp2", json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [{"e": "pv", "aid": "A" * 300}]}), JSON), {400}),
    Case("a 300-character Basic-auth write key", post("/v1/track", json.dumps(TRACK), JSON, ("Authorization", "Basic " + base64.b64encode(b"W" * 300 + b":").decode())), {400}),
    Case("a write key of 256 bytes is fine", post("/v1/batch", json.dumps({"writeKey": "W" * 256, "batch": [TRACK]}), JSON), {200}),
    # CORS.
    Case("Origin: * on an SDK route", post("/v1/track", json.dumps(TRACK), JSON, ("Origin", "*")), {200}),
    Case("Origin: null on an SDK route", post("/v1/track", json.dumps(TRACK), JSON, ("Origin", "null")), {200}),
    Case("a foreign page writing to /import", post("/import", "{}", ("Origin", "https://evil.example"), ("Content-Type", "text/plain")), {403}),
    Case("a foreign preflight to /import", req("OPTIONS", "/import", headers=[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")]), {403}),
    Case("a 100 KB Access-Control-Request-Headers", req("OPTIONS", "/v1/batch", headers=[("Origin", "https://a.example"), ("Access-Control-Request-Method", "POST"), ("Access-Control-Request-Headers", "x" * 100000)]), {204, 400, 431, CLOSED}),
    # A header the gateway acts on, sent twice (run.py allows https://allowed.example): a proxy may read the other one.
    Case("two Origins, the allowed one first", post("/import", "{}", ("Origin", "https://allowed.example"), ("Origin", "https://evil.example")), {400}),
    Case("two Origins, the allowed one second", post("/import", "{}", ("Origin", "https://evil.example"), ("Origin", "https://allowed.example")), {400}),
    Case("one allowed Origin", post("/import", "{}", ("Origin", "https://allowed.example")), {200}),
    *[Case(f"two {name} headers", post("/import", "{}", (name, value), (name, value)), {400}) for name, value in [("Authorization", "Bearer k"), ("X-Api-Key", "k"), ("Content-Encoding", "identity"), ("Content-Type", "application/json"), ("X-Partition-Key", "k"), ("Idempotency-Key", "k")]],
    # Smuggling and framing.
    Case("Content-Length and Transfer-Encoding", req("POST", "/import", b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", [("Transfer-Encoding", "chunked")]), {400, CLOSED}),
    Case("two Content-Lengths that disagree", req("POST", "/import", b"{}", [("Content-Length", "2"), ("Content-Length", "5")], length=False), {400, CLOSED}),
    Case("a chunk size that is not hex", req("POST", "/import", b"zz\r\n{}\r\n0\r\n\r\n", [("Transfer-Encoding", "chunked")], length=False), {400, CLOSED}),
    Case("Transfer-Encoding: chunked, identity", req("POST", "/import", b"2\r\n{}\r\n0\r\n\r\n", [("Transfer-Encoding", "chunked, identity")], length=False), {400, 501, CLOSED}),
    Case("a negative Content-Length", req("POST", "/import", b"{}", [("Content-Length", "-2")], length=False), {400, CLOSED}),
    Case("a bare LF request line", b"POST /import HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}", {200, 400, CLOSED}),
    Case("10,000 headers", req("POST", "/import", b"{}", [(f"X-H{i}", "v") for i in range(10000)]), {400, 431, CLOSED}),
    Case("a 1 MB header", req("POST", "/import", b"{}", [("X-Big", "v" * (1 << 20))]), {400, 431, CLOSED}),
    Case("pipelined requests", post("/import", "{}") + post("/import", "{}") + req("GET", "/healthz"), {200}),
    Case("a request line of 100 KB", req("GET", "/" + "a" * 100000), {400, 404, 414, 431, CLOSED}),
    Case("HTTP/0.9", b"GET /healthz\r\n\r\n", {400, CLOSED}),
    Case("an absolute-form target", req("POST", "http://evil.example/import", b"{}"), {200, 400, 404}),
    Case("a path with ..", req("GET", "/import/../healthz"), {404, 400}),
    Case("a PostHog config.js token that breaks out", req("GET", '/array/a";alert(1);//x/config.js'), {200, 400, 404}),
]
