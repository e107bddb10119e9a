#!/usr/bin/env bash
# Sourced by every suite's run.sh: ROOT (the repository), WORK (where the
# venvs, npm packages and scratch files go: $SUITES_DIR, else
# target/suites), suites/ on PYTHONPATH (so a suite imports the `harness`
# package, never another suite's files), `gateway_binary` and
# `need_redis_server`.
#
#   . "$(dirname "$0")/../harness/suite.sh"
#   gateway="$(gateway_binary "${1:-}" "$0 PATH/TO/clickstream-gateway")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${SUITES_DIR:-$ROOT/target/suites}"
export ROOT WORK PYTHONPATH="$ROOT/suites"

# The absolute path of the gateway binary $1; without one, the usage line
# $2 and exit status 2.
gateway_binary() {
  if [ -z "$1" ] || [ ! -x "$1" ]; then
    echo "usage: $2" >&2
    exit 2
  fi
  echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}

# Debian's redis-server, installed without questions when it is missing
# (the suites that share state across gateways start their own).
need_redis_server() {
  if ! command -v redis-server >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  fi
}
