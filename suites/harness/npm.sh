#!/usr/bin/env bash
# Makes WORK hold node_modules with the packages of package.json beside it
# (reinstalled when the file changed), installing Node, npm and Debian's
# chromium without questions when the machine lacks them. Shared by the
# SDK suite (suites/sdks) and the live view's browser test (suites/live).
#
#   suites/harness/npm.sh "$WORK" && NODE_PATH="$WORK/node_modules" node ...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$1"
need=()
command -v node >/dev/null || need+=(nodejs npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$work"
if ! cmp -s "$here/package.json" "$work/package.json" 2>/dev/null; then
  cp "$here/package.json" "$work/package.json"
  (cd "$work" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
