#!/usr/bin/env bash
# Runs kinesis-local (the npm build of kinesis-mock, the emulator LocalStack
# uses) for the emulator test suite: `start`, `stop`, `endpoint`.
#
#   scripts/kinesis-local.sh start      # installs it if needed, waits until it answers
#   KINESIS_TEST_ENDPOINT=$(scripts/kinesis-local.sh endpoint) cargo test --test emulator
#   scripts/kinesis-local.sh stop
#
# Port: KINESIS_LOCAL_PORT (4567, plain HTTP); it always opens a TLS port too,
# KINESIS_LOCAL_TLS_PORT (4568). kinesis-mock hard-codes 0.0.0.0 and has no
# bind-address setting: a tiny preload (`node --require`) rewrites its
# wildcard listen() calls to 127.0.0.1, so it is reachable from this machine only.
set -euo pipefail
VERSION=0.6.2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${KINESIS_LOCAL_DIR:-$ROOT/target/kinesis-local}"
PORT="${KINESIS_LOCAL_PORT:-4567}"
TLS_PORT="${KINESIS_LOCAL_TLS_PORT:-4568}"
PID_FILE="$DIR/pid"

answers() {
  curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/" \
    -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: Kinesis_20131202.ListStreams' \
    -H 'X-Amz-Date: 20260101T000000Z' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0' \
    -d '{}' 2>/dev/null | grep -q 200
}

case "${1:-}" in
  start)
    command -v node >/dev/null && command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm curl; }
    mkdir -p "$DIR"
    if [ ! -f "$DIR/node_modules/kinesis-local/main.js" ]; then
      (cd "$DIR" && npm install --no-audit --no-fund --no-save --prefix "$DIR" "kinesis-local@$VERSION" >/dev/null)
    fi
    MAIN="$DIR/node_modules/kinesis-local/main.js"
    cat >"$DIR/loopback.cjs" <<'JS'
'use strict';
// Listen on 127.0.0.1 wherever kinesis-mock asks for all interfaces.
const net = require('net');
const listen = net.Server.prototype.listen;
const wildcard = (h) => h === undefined || h === null || h === '' || h === '0.0.0.0' || h === '::';
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number') {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
    else if (wildcard(args[1])) args[1] = '127.0.0.1';
  } else if (args[0] && typeof args[0] === 'object' && 'port' in args[0] && wildcard(args[0].host)) {
    args[0] = Object.assign({}, args[0], { host: '127.0.0.1' });
  }
  return listen.apply(this, args);
};
JS
    (cd "$DIR"
      KINESIS_MOCK_CERT_PATH="$DIR/node_modules/kinesis-local/server.json" \
      KINESIS_MOCK_PLAIN_PORT="$PORT" KINESIS_MOCK_TLS_PORT="$TLS_PORT" \
      CREATE_STREAM_DURATION=10ms LOG_LEVEL=ERROR LOAD_DATA_IF_EXISTS=false SHOULD_PERSIST_DATA=false \
      nohup node --require "$DIR/loopback.cjs" "$MAIN" >"$DIR/log.txt" 2>&1 &
      echo $! >"$PID_FILE")
    for _ in $(seq 1 300); do
      if answers; then
        echo "kinesis-local $VERSION answers at http://127.0.0.1:$PORT"
        exit 0
      fi
      kill -0 "$(cat "$PID_FILE")" 2>/dev/null || { cat "$DIR/log.txt"; echo "kinesis-local exited" >&2; exit 1; }
      sleep 0.2
    done
    echo "kinesis-local did not answer within 60 s" >&2
    exit 1
    ;;
  stop)
    if [ -f "$PID_FILE" ]; then
      pid="$(cat "$PID_FILE")"
      kill "$pid" 2>/dev/null || true
      # It takes a second or two to let go of its ports.
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
    fi
    ;;
  endpoint)
    echo "http://127.0.0.1:$PORT"
    ;;
  *)
    echo "usage: $0 start|stop|endpoint" >&2
    exit 2
    ;;
esac
