#!/usr/bin/env bash
# Many sources on one gateway, with real processes (run.py says what is
# checked): a source over its allowance, two gateways sharing one Redis,
# Redis killed mid-run, SOURCES_FILE edited live. Installs Debian's
# redis-server without questions when it is missing.
#
#   cargo build && suites/sources/run.sh target/debug/clickstream-gateway [flood shared outage file]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../harness/suite.sh
. "$HERE/../harness/suite.sh"
gateway="$(gateway_binary "${1:-}" "$0 PATH/TO/clickstream-gateway [SCENARIO...]")"
shift

need_redis_server
exec python3 "$HERE/run.py" "$gateway" "$@"
