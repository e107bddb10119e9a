#!/usr/bin/env bash
# Each event once, with real processes (run.py says what is checked): each
# door's id on one gateway, two gateways sharing one redis-server, Redis
# killed mid-run. Installs Debian's redis-server without questions when it
# is missing.
#
#   cargo build && suites/dedupe/run.sh target/debug/clickstream-gateway [doors replicas outage]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../harness/suite.sh
. "$HERE/../harness/suite.sh"
gateway="$(gateway_binary "${1:-}" "$0 PATH/TO/clickstream-gateway [SCENARIO...]")"
shift

need_redis_server
exec python3 "$HERE/run.py" "$gateway" "$@"
