#!/usr/bin/env bash
# The Pub/Sub sink against Google's Pub/Sub emulator on 127.0.0.1
# (scripts/pubsub-emulator.sh; installed on machines of this kind), with the
# gateway binary given as $1: check.py (one real SDK read back from an
# ordered subscription, then 8 clients through an emulator restart: what it
# checks is in its docstring), then the JMeter smoke run against Pub/Sub
# (jmeter/ci-smoke.sh with SMOKE_PUBSUB: every door's scenarios, each 200'd
# event read back with the bytes sent). tests/pubsub.rs, in `cargo test`,
# covers the doors, 413, a missing topic and the spill against the same
# emulator. Installs what it needs without questions (a venv with
# segment-analytics-python).
#
#   cargo build --release && suites/pubsub/run.sh target/release/clickstream-gateway
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../harness/suite.sh
. "$HERE/../harness/suite.sh"
gateway="$(gateway_binary "${1:-}" "$0 PATH/TO/clickstream-gateway")"

venv="$("$ROOT/suites/harness/venv.sh" "$WORK" pubsub "$HERE/requirements.txt")"

emulator="$ROOT/scripts/pubsub-emulator.sh"
"$emulator" start
trap '"$emulator" stop' EXIT
host="$("$emulator" host)"
"$venv/bin/python" "$HERE/check.py" "$gateway" --emulator "$host" --restart "$emulator restart"

# The JMeter smoke scenarios once against the Pub/Sub sink, on a topic of their own.
put() { curl -sf -X PUT -H 'Content-Type: application/json' "http://$host/v1/$1" -d "$2" >/dev/null; }
put projects/smoke/topics/smoke '{}'
put projects/smoke/subscriptions/smoke-sub '{"topic":"projects/smoke/topics/smoke","enableMessageOrdering":true}'
SMOKE_PUBSUB="$host/projects/smoke/topics/smoke" "$ROOT/jmeter/ci-smoke.sh" "$gateway"
