#!/usr/bin/env bash
# User-space instructions per request on POST /import (or a batch door),
# counted by callgrind: a figure that does not move with this shared
# machine's noise, for changes too small for the A/B of bench/run.py to see
# (about 1 %).
#
#   bench/callgrind.sh [GATEWAY_BINARY] [CONNECTIONS] [SECONDS]
#   DOOR=segment100 bench/callgrind.sh     # batch100, segment100 or posthog100
#
# Defaults: target/release/clickstream-gateway, 50, 10, DOOR=import.
# With a batch door the figures are also per event, and the AWS SDK's
# serialisation of PutRecords and parse of its answer are printed apart
# (inclusive). GATEWAY_ENV adds variables (`NAME=VALUE ...`) to the
# gateway's. Needs valgrind and
# wrk; builds nothing (run `cargo build --release --bins --examples` first).
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
    *) echo "DOOR must be import, batch100, segment100 or posthog100" >&2; exit 2 ;;
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
    n=$((requests * events))
    inclusive=$(callgrind_annotate --inclusive=yes "$out" 2>/dev/null)
    # The SDK's PutRecords body and the parse of its answer (inclusive).
    ser=$(awk '/ser_put_records_input/ {gsub(",", "", $1); print $1; exit}' <<<"$inclusive")
    de=$(awk '/de_put_records(_http_response|::de_put_records)/ {gsub(",", "", $1); print $1; exit}' <<<"$inclusive")
    echo "events $n; instructions per event: all $((total / n)), SHA-256 $((sha / n)), rest $(((total - sha) / n)), PutRecords serialisation $((${ser:-0} / n)), its answer parsed $((${de:-0} / n))"
fi
echo "profile: $out (callgrind_annotate --inclusive=yes $out)"
