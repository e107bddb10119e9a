#!/usr/bin/env bash
# The live view in headless Chromium (live.mjs says what is checked),
# against the gateway binary given as $1 with the file sink. Installs Node,
# npm, Debian's chromium and the npm packages without questions (the
# harness's npm.sh). Writes the page under load to SCREENSHOT (default:
# under target/, so CI leaves docs/ alone; docs/live.png is made with it).
#
#   cargo build && suites/live/run.sh target/debug/clickstream-gateway
#   suites/live/run.sh target/release/clickstream-gateway docs/live.png
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../harness/suite.sh
. "$HERE/../harness/suite.sh"
gateway="$(gateway_binary "${1:-}" "$0 PATH/TO/clickstream-gateway [SCREENSHOT]")"
screenshot="${2:-$WORK/live.png}"

"$ROOT/suites/harness/npm.sh" "$WORK"
NODE_PATH="$WORK/node_modules" node "$HERE/live.mjs" "$gateway" "$screenshot"
