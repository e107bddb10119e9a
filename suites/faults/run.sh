#!/usr/bin/env bash
# Runs faults.py (what it checks is said there) against the gateway binary
# given as $1 and kinesis-local, installing what it needs: the Python venv
# of the SDK suite (boto3), and kinesis-local when
# KINESIS_TEST_ENDPOINT is not set (then started here on 127.0.0.1 and
# stopped at the end). The `drain` check runs against ferrokinesis in a
# process of its own (`suites/faults/ferrokinesis.rs`, built here with
# cargo), since kinesis-local does not keep up with it. The `full` check
# mounts a tmpfs: it needs root.
#
#   cargo build && suites/faults/run.sh target/debug/clickstream-gateway
#   suites/faults/run.sh target/release/clickstream-gateway slow
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../harness/suite.sh
. "$HERE/../harness/suite.sh"
gateway="$(gateway_binary "${1:-}" "$0 PATH/TO/clickstream-gateway [slow|outage|kill|full|drain ...]")"; shift

python="$("$ROOT/suites/harness/venv.sh" "$WORK" sdks "$ROOT/suites/sdks/requirements.txt")/bin/python"

if [ -z "${KINESIS_TEST_ENDPOINT:-}" ]; then
  "$ROOT/scripts/kinesis-local.sh" start
  KINESIS_LOCAL_STARTED=1
  trap '"$ROOT/scripts/kinesis-local.sh" stop' EXIT
  KINESIS_TEST_ENDPOINT="$("$ROOT/scripts/kinesis-local.sh" endpoint)"
  export KINESIS_TEST_ENDPOINT
fi
emulator_pid=""
stop_emulator() { [ -z "$emulator_pid" ] || kill "$emulator_pid" 2>/dev/null || true; }
# No check named runs them all, `drain` included.
if [ $# -eq 0 ] || [[ " $* " == *" drain "* ]]; then
  (cd "$ROOT" && cargo build --quiet --example ferrokinesis)
  endpoint_file="$(mktemp)"
  "$ROOT/target/debug/examples/ferrokinesis" >"$endpoint_file" &
  emulator_pid=$!
  trap 'stop_emulator; [ -z "${KINESIS_LOCAL_STARTED:-}" ] || "$ROOT/scripts/kinesis-local.sh" stop' EXIT
  for _ in $(seq 100); do [ -s "$endpoint_file" ] && break; sleep 0.1; done
  FERROKINESIS_ENDPOINT="$(head -1 "$endpoint_file")"
  export FERROKINESIS_ENDPOINT
  rm -f "$endpoint_file"
fi
"$python" "$HERE/faults.py" "$gateway" "$@"
