#!/usr/bin/env bash
# The Pub/Sub sink's JMeter smoke run: Google's Pub/Sub emulator on
# 127.0.0.1 (a free port; it is installed on machines of this kind, from the
# google-cloud-cli-pubsub-emulator package), a topic with an ordered
# subscription, then jmeter/ci-smoke.sh with SMOKE_PUBSUB against the gateway
# binary given as $1: every door's smoke scenarios, each 200'd event read
# back from the subscription with the bytes sent. (tests/pubsub.rs, in
# `cargo test`, covers the doors, 413, a missing topic, restarts and the
# spill against the same emulator.)
#
#   cargo build --release && sdk-tests/pubsub.sh target/release/clickstream-gateway
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
EMULATOR="${PUBSUB_EMULATOR_BIN:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}"

[ $# -eq 1 ] && [ -x "$1" ] || { echo "usage: $0 PATH/TO/clickstream-gateway" >&2; exit 2; }
[ -x "$EMULATOR" ] || { echo "pubsub.sh: no Pub/Sub emulator at $EMULATOR" >&2; exit 1; }

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
host="127.0.0.1:$port"
setsid "$EMULATOR" --host=127.0.0.1 --port="$port" >/dev/null 2>&1 &
emulator=$!
trap 'kill -TERM -- -"$emulator" 2>/dev/null || true; wait "$emulator" 2>/dev/null || true' EXIT

put() { curl -sf -X PUT -H 'Content-Type: application/json' "http://$host/v1/$1" -d "$2" >/dev/null; }
for _ in $(seq 1 120); do put projects/smoke/topics/smoke '{}' && break; sleep 0.5; done
put projects/smoke/topics/smoke '{}' 2>/dev/null || true
put projects/smoke/subscriptions/smoke-sub '{"topic":"projects/smoke/topics/smoke","enableMessageOrdering":true}'

SMOKE_PUBSUB="$host/projects/smoke/topics/smoke" "$ROOT/jmeter/ci-smoke.sh" "$1"
