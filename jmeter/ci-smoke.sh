#!/usr/bin/env bash
# CI smoke run of the JMeter plan: installs JMeter if missing, starts the
# gateway binary given as $1 with the file sink on a free loopback port, runs
# the `smoke` and `smoke-batch` scenarios (4 users, 6 s each; the second posts
# 10 events per request to /import/batch) and one per SDK protocol
# (`smoke-segment`, `smoke-posthog`, `smoke-snowplow`: 4 users, 4 s, the
# protocol's batches), and checks that no request failed and
# that every event answered 200 is in the file with the bytes sent. Stops the
# gateway, and ends with `jmeter smoke: N passed, M failed` (N: events
# verified); exits non-zero on any failure.
#
# With SMOKE_KAFKA=BOOTSTRAP/TOPIC the gateway writes to that Kafka topic
# instead (SINK=kafka), and the events are read back from every partition.
#
#   cargo build --release && jmeter/ci-smoke.sh target/release/clickstream-gateway
#   SMOKE_KAFKA=127.0.0.1:19092/smoke jmeter/ci-smoke.sh target/release/clickstream-gateway
#
# With SMOKE_PUBSUB=HOST:PORT/projects/P/topics/T the gateway publishes to
# that topic of a Pub/Sub emulator (SINK=pubsub), and the events are read
# back from its subscription projects/P/subscriptions/T-sub.
#
#   SMOKE_PUBSUB=127.0.0.1:8085/projects/smoke/topics/smoke jmeter/ci-smoke.sh target/release/clickstream-gateway
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

[ $# -eq 1 ] && [ -x "$1" ] || { echo "usage: $0 PATH/TO/clickstream-gateway" >&2; exit 2; }
gateway="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

# What the run needs, from Debian, without questions.
need=()
command -v jmeter >/dev/null || need+=(jmeter)
[ -f /usr/share/jmeter/lib/ext/ApacheJMeter_http.jar ] || need+=(jmeter-http)
command -v javac >/dev/null || need+=(default-jdk-headless)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
pid=""
stop_gateway() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}
trap 'stop_gateway; rm -rf "$work"' EXIT

# From an empty directory, so no developer's .env is read; the file sink
# forced, or Kafka when asked for.
if [ -n "${SMOKE_PUBSUB:-}" ]; then
  topic="${SMOKE_PUBSUB#*/}"
  sink=(SINK=pubsub PUBSUB_EMULATOR_HOST="${SMOKE_PUBSUB%%/*}" PUBSUB_TOPIC="$topic")
  verify=(--verify-pubsub "${SMOKE_PUBSUB%%/*}/${topic/\/topics\//\/subscriptions\/}-sub")
  # /import and /import/batch answer with Pub/Sub's message ids.
  scenarios=(smoke-pubsub smoke-batch-pubsub)
elif [ -n "${SMOKE_KAFKA:-}" ]; then
  sink=(SINK=kafka KAFKA_BOOTSTRAP_SERVERS="${SMOKE_KAFKA%/*}" KAFKA_TOPIC="${SMOKE_KAFKA##*/}")
  verify=(--verify-kafka "$SMOKE_KAFKA")
  # /import and /import/batch answer with the broker's receipts.
  scenarios=(smoke-kafka smoke-batch-kafka)
else
  sink=(SINK=file FILE_SINK_PATH="$work/records.ndjson")
  verify=(--verify-file "$work/records.ndjson")
  scenarios=(smoke smoke-batch)
fi
(cd "$work" && exec env -u KINESIS_STREAM_NAME "${sink[@]}" HOST=127.0.0.1 PORT="$port" \
  RUST_LOG=warn "$gateway" >"$work/gateway.log" 2>&1) &
pid=$!

set +e
"$HERE/run.sh" --port "$port" --out "$work/results" --no-chart \
  "${verify[@]}" "${scenarios[@]}" smoke-segment smoke-posthog smoke-snowplow 2>&1 | tee "$work/run.txt"
rc=${PIPESTATUS[0]}
set -e
stop_gateway

result="$(sed -n 's/^verify: \([0-9]* passed, [0-9]* failed\)$/\1/p' "$work/run.txt" | tail -n 1)"
if [ "$rc" != 0 ]; then
  echo "--- gateway log"; tail -n 20 "$work/gateway.log"
  for f in "$work"/results/*.log; do
    [ -f "$f" ] && { echo "--- $f"; grep -E 'ERROR|WARN' "$f" | tail -n 20 || true; }
  done
  # A failure that verify did not count (JMeter itself failed) still shows as one.
  case "$result" in "" | *" 0 failed") result="${result%% passed*}"; result="${result:-0} passed, 1 failed" ;; esac
fi
echo "jmeter smoke: $result"
exit "$rc"
