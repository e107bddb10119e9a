#!/usr/bin/env bash
# Runs the analytics SDKs, unmodified, against the gateway binary given as
# $1 and a Kinesis emulator, and reads every event back (check.py says what
# is checked). Installs what it needs without questions: a Python venv with
# the SDKs of requirements.txt, the npm packages of package.json, Debian's
# chromium, and kinesis-local when KINESIS_TEST_ENDPOINT is not set (then
# started here on 127.0.0.1 and stopped at the end).
#
#   cargo build && sdk-tests/run.sh target/debug/clickstream-gateway
#   KINESIS_TEST_ENDPOINT=http://127.0.0.1:4567 sdk-tests/run.sh target/release/clickstream-gateway --no-browser
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
WORK="${SDK_TESTS_DIR:-$ROOT/target/sdk-tests}"

[ $# -ge 1 ] && [ -x "$1" ] || { echo "usage: $0 PATH/TO/clickstream-gateway [--no-browser]" >&2; exit 2; }
gateway="$1"; shift

need=()
command -v node >/dev/null || need+=(nodejs npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$WORK"
if ! cmp -s "$HERE/requirements.txt" "$WORK/venv/requirements.txt" 2>/dev/null; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
  cp "$HERE/requirements.txt" "$WORK/venv/requirements.txt"
fi
if ! cmp -s "$HERE/package.json" "$WORK/package.json" 2>/dev/null; then
  cp "$HERE/package.json" "$WORK/package.json"
  (cd "$WORK" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

if [ -z "${KINESIS_TEST_ENDPOINT:-}" ]; then
  "$ROOT/scripts/kinesis-local.sh" start
  trap '"$ROOT/scripts/kinesis-local.sh" stop' EXIT
  KINESIS_TEST_ENDPOINT="$("$ROOT/scripts/kinesis-local.sh" endpoint)"
fi

# The SDKs log each request at INFO; keep their warnings only.
"$WORK/venv/bin/python" -W ignore::DeprecationWarning "$HERE/check.py" "$gateway" \
  --kinesis "$KINESIS_TEST_ENDPOINT" --node-dir "$WORK" "$@"
