#!/usr/bin/env bash
# The hostile-input suite (cases.py, one case a line) against a gateway
# binary: installs what it needs (zstd, a venv with Python's brotli), then
# runs it.
#
#   cargo build --release && suites/hostile/run.sh target/release/clickstream-gateway
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../harness/suite.sh
. "$HERE/../harness/suite.sh"
binary="$(gateway_binary "${1:-$ROOT/target/debug/clickstream-gateway}" "$0 [PATH/TO/clickstream-gateway]")"
if ! command -v zstd >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends zstd >/dev/null
fi
python="$("$ROOT/suites/harness/venv.sh" "$WORK" hostile "$HERE/requirements.txt")/bin/python"
exec "$python" "$HERE/run.py" "$binary"
