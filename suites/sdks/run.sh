#!/usr/bin/env bash
# Runs the analytics SDKs, unmodified, against the gateway binary given as
# $1 and a Kinesis emulator, and reads every event back (check.py says what
# is checked). Installs what it needs without questions: a Python venv with
# the SDKs of requirements.txt, the npm packages of the harness's
# package.json, Debian's chromium, and kinesis-local when
# KINESIS_TEST_ENDPOINT is not set (then started here on 127.0.0.1 and
# stopped at the end).
#
#   cargo build && suites/sdks/run.sh target/debug/clickstream-gateway
#   KINESIS_TEST_ENDPOINT=http://127.0.0.1:4567 suites/sdks/run.sh target/release/clickstream-gateway --no-browser
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../harness/suite.sh
. "$HERE/../harness/suite.sh"
gateway="$(gateway_binary "${1:-}" "$0 PATH/TO/clickstream-gateway [--no-browser]")"; shift

"$ROOT/suites/harness/npm.sh" "$WORK"
python="$("$ROOT/suites/harness/venv.sh" "$WORK" sdks "$HERE/requirements.txt")/bin/python"

if [ -z "${KINESIS_TEST_ENDPOINT:-}" ]; then
  "$ROOT/scripts/kinesis-local.sh" start
  trap '"$ROOT/scripts/kinesis-local.sh" stop' EXIT
  KINESIS_TEST_ENDPOINT="$("$ROOT/scripts/kinesis-local.sh" endpoint)"
fi

# The SDKs log each request at INFO; keep their warnings only.
"$python" -W ignore::DeprecationWarning "$HERE/check.py" "$gateway" \
  --kinesis "$KINESIS_TEST_ENDPOINT" --node-dir "$WORK" "$@"
