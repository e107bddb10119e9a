#!/usr/bin/env bash
# User-space instructions per request on POST /import (or a batch door),
# counted by callgrind: a figure that does not move with this shared
# machine's noise, for changes too small for the A/B of bench/run.py to see
# (about 1 %).
#
#   bench/callgrind.sh [GATEWAY_BINARY] [CONNECTIONS] [SECONDS]
#   DOOR=segment100 bench/callgrind.sh     # batch100, segment100, posthog100[-1k]
#
# Defaults: target/release/clickstream-gateway, 50, 10, DOOR=import.
# With a batch door the figures are also per event, against the floor (one
# validating scan of each event and its base64), with the PutRecords body
# and answer apart (inclusive: the sink's own, or the SDK's in older
# builds). GATEWAY_ENV adds variables (`NAME=VALUE ...`) to the gateway's:
# with `SINK=kafka KAFKA_TOPIC=clicks KAFKA_BOOTSTRAP_SERVERS=HOST:PORT` (a
# broker started apart, e.g. target/release/examples/mock_kafka clicks 8)
# the same figures come from the Kafka path, with librdkafka's own produce
# path (the Kafka protocol's encoding, as base64 is Kinesis's; its C, and
# the libc calls it makes: its copy of each message is a memcpy) apart, as
# part of a second floor, and the rest against the first. Needs valgrind and wrk; builds
# nothing (run `cargo build --release --bins --examples` first).
# Everything binds 127.0.0.1. Counting starts after a 3 s warm-up and stops
# before shutdown, so start-up and exit are not in the figure.
#
# Valgrind's CPU has no SHA extensions, so the AWS SDK's SHA-256 falls back
# to software and dominates the total; it is printed apart, and "rest" (all
# but SHA-256) is the figure to compare. Memory copies cost more
# instructions here than with AVX-512: compare builds with each other, not
# with perf's shares. Between two runs of one build "rest" moved 0.7 %.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/clickstream-gateway}
connections=${2:-50}
seconds=${3:-10}
upstream_port=4599
port=4600
out=$(mktemp /tmp/callgrind.XXXXXX)
# vgdb (behind callgrind_control) finds the process by user and host names.
export USER=${USER:-$(id -un)} HOST=127.0.0.1

target/release/examples/null_kinesis "127.0.0.1:$upstream_port" >/dev/null 2>&1 &
upstream=$!
env -i PATH="$PATH" USER="$USER" HOST=127.0.0.1 PORT=$port KINESIS_STREAM_NAME=bench AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
    AWS_ENDPOINT_URL_KINESIS="http://127.0.0.1:$upstream_port" ACCESS_LOG=false WORKER_THREADS=1 \
    ${GATEWAY_ENV:-} valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$binary" >/dev/null 2>&1 &
gateway=$!
trap 'kill $gateway $upstream 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
    sleep 0.5
done
# The door and its body: bench/run.py's own batch bodies (100 events).
case "${DOOR:-import}" in
    import) path=/import events=1 body=bench/event.json ;;
    batch100) path=/import/batch events=100 shape=array ;;
    segment100) path=/v1/batch events=100 shape=segment ;;
    posthog100) path=/batch/ events=100 shape=posthog ;;
    # PostHog's door with ~1 KiB events (posthog-js's `$` properties), the
    # size of the other doors' events.
    posthog100-1k) path=/batch/ events=100 shape=posthog-1k ;;
    *) echo "DOOR must be import, batch100, segment100, posthog100 or posthog100-1k" >&2; exit 2 ;;
esac
if [ "$events" -gt 1 ]; then
    body=$(python3 -c "import sys; sys.path.insert(0, 'bench'); import run; print(run.batch_body($events, '$shape'))")
fi
load() {
    BENCH_BODY=$body wrk -t2 "-c$connections" "-d$1s" --timeout 10s -s bench/wrk.lua "http://127.0.0.1:$port$path"
}
load 3 >/dev/null
callgrind_control -i on $gateway >/dev/null 2>&1
requests=$(load "$seconds" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p')
callgrind_control -i off $gateway >/dev/null 2>&1
kill -INT $gateway
wait $gateway || true
report=$(callgrind_annotate "$out" 2>/dev/null)
total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' <<<"$report")
sha=$(awk '/sha256/ && /compress/ {gsub(",", "", $1); s += $1} END {printf "%.0f", s}' <<<"$report")
echo "requests $requests; instructions per request: all $((total / requests)), SHA-256 $((sha / requests)), rest $(((total - sha) / requests))"
if [ "$events" -gt 1 ]; then
    # Per event: the floor (one validating scan of the event's JSON and the
    # base64 Kinesis's protocol needs) against all but SHA-256, and the
    # PutRecords body and answer: the sink's own (put_records::body,
    # entry_outcomes) or, in a build before it, the SDK's (inclusive).
    python3 - "$out" $((requests * events)) <<'PY'
import re, subprocess, sys

path, n = sys.argv[1], int(sys.argv[2])


def rows(*flags):
    out = subprocess.run(["callgrind_annotate", *flags, path], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)", line)
        if m:
            yield int(m.group(1).replace(",", "")), m.group(2)


total = sha = scan = b64 = client = 0
LIBRDKAFKA_OWN = r"\?\?\?:(rd_|crc32|cnd_|mtx_|thrd_)|malloc\.c|nptl/"
for count, name in rows():
    if "PROGRAM TOTALS" in name:
        total = count
    elif "sha256" in name and "compress" in name:
        sha += count
    elif re.search(LIBRDKAFKA_OWN, name):
        # librdkafka's own C (its functions are rd_*, its threads
        # tinycthread's) and the glibc malloc and pthread locks only it uses
        # (the gateway's Rust allocates with mimalloc and locks with futexes).
        client += count
    elif re.search(r"serde_json::read::|serde_json::de::|sdk::json::Walk|sdk::json::Id|ignore_str|skip_to_escape|parse_str", name):
        scan += count
    elif "base64" in name and "encode" in name:
        b64 += count
inclusive = {}
for count, name in rows("--inclusive=yes"):
    inclusive.setdefault(name.split(" [")[0], count)


def first(pattern):
    return next((c for name, c in inclusive.items() if re.search(pattern, name)), 0)


body, answer = first(r"put_records::body$"), first(r"put_records::entry_outcomes$")
ser, de = first(r"ser_put_records_input$"), first(r"de_put_records_http_response$")
# serde_json reading the answer is not the event's scan.
caller = None
for count, name in rows("--tree=calling", "--inclusive=yes"):
    if name.startswith("* "):
        caller = name
    elif caller and "entry_outcomes" in caller and name.startswith("> ") and "serde_json::de::from_trait" in name:
        scan -= count
# libc's string and clock functions (memcpy, strlen, clock_gettime) are
# librdkafka's where it calls them: its copy of each message into the
# message set is a memcpy. Split by caller.
LIBRDKAFKA = r"\?\?\?:(rd_|crc32|cnd_|mtx_|thrd_)"
if client:
    callee = None
    for count, name in rows("--tree=caller", "--inclusive=yes"):
        if name.startswith("* "):
            callee = name if re.search(r"libc\.so", name) and not re.search(r"malloc\.c|nptl/", name) else None
        elif callee and name.startswith("< ") and re.search(LIBRDKAFKA, name):
            client += count
floor = scan + b64
rest = total - sha
print(f"instructions per event: all but SHA-256 {rest // n}, floor {floor // n} (validating scan {scan // n}, base64 {b64 // n}): {rest / floor:.2f}x the floor")
if client:
    with_client = floor + client
    print(f"  librdkafka's produce path {client // n} (its copy, message sets, CRC32C, queues, allocations):"
          f" floor with it {with_client // n}, {rest / with_client:.2f}x;"
          f" the rest without it {(rest - client) // n}, {(rest - client) / floor:.2f}x the floor")
if body or answer:
    print(f"  PutRecords body written {body // n}, answer read {answer // n} (the sink's own)")
if ser or de:
    print(f"  PutRecords serialised {ser // n}, answer parsed {de // n} (the SDK's)")
PY
fi
echo "profile: $out (callgrind_annotate --inclusive=yes $out)"
