#!/usr/bin/env bash
# The hostile-input suite (hostile/cases.py, one case a line) against a
# gateway binary: installs what it needs (zstd, Python's brotli), then runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="$(realpath "${1:-target/debug/clickstream-gateway}")"
if ! command -v zstd >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends zstd >/dev/null
fi
python3 -c 'import brotli' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check 'brotli==1.2.*'
exec python3 hostile/run.py "$binary"
