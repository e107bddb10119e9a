#!/usr/bin/env bash
# The hostile-input suite (cases.py, one case a line) against a gateway
# binary: installs what it needs (zstd, a venv with Python's brotli), then
# runs it.
#
#   cargo build --release && suites/hostile/run.sh target/release/clickstream-gateway
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export PYTHONPATH="$ROOT/suites"
binary="$(realpath "${1:-$ROOT/target/debug/clickstream-gateway}")"
if ! command -v zstd >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends zstd >/dev/null
fi
python="$("$ROOT/suites/harness/venv.sh" "${SUITES_DIR:-$ROOT/target/suites}" hostile "$HERE/requirements.txt")/bin/python"
exec "$python" "$HERE/run.py" "$binary"
