#!/usr/bin/env bash
# Google's Pub/Sub emulator on 127.0.0.1 for the Pub/Sub suite: `start`,
# `stop`, `restart` (it keeps nothing across one), `host`. Port:
# PUBSUB_PORT (18085). The emulator is installed on machines of this kind
# (google-cloud-cli-pubsub-emulator); PUBSUB_EMULATOR_BIN names another.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${PUBSUB_DIR:-$ROOT/target/pubsub}"
PORT="${PUBSUB_PORT:-18085}"
BIN="${PUBSUB_EMULATOR_BIN:-/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator}"
PID_FILE="$DIR/pid"

answers() { curl -sf "http://127.0.0.1:$PORT/v1/projects/probe/topics" >/dev/null 2>&1; }

start() {
  [ -x "$BIN" ] || { echo "pubsub-emulator.sh: no emulator at $BIN" >&2; exit 1; }
  mkdir -p "$DIR"
  setsid "$BIN" --host=127.0.0.1 --port="$PORT" >"$DIR/emulator.log" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 120); do answers && return 0; sleep 0.5; done
  echo "pubsub-emulator.sh: the emulator did not answer on 127.0.0.1:$PORT" >&2
  tail -n 20 "$DIR/emulator.log" >&2
  exit 1
}

stop() {
  [ -f "$PID_FILE" ] || return 0
  local pid
  pid="$(cat "$PID_FILE")"
  kill -TERM -- -"$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- -"$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  host) echo "127.0.0.1:$PORT" ;;
  *) echo "usage: $0 start|stop|restart|host" >&2; exit 2 ;;
esac
