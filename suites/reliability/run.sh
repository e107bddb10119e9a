#!/usr/bin/env bash
# Reliability scenarios (run.py says each one's promise): overload,
# slowloris, SIGTERM under load and a frozen stream, on loopback, every loop
# bounded; exits 1 when a promise is broken. Builds the release binaries it
# needs and installs wrk, node's kinesis-local and a venv with boto3.
#
#   suites/reliability/run.sh                 # all but soak (~3 min)
#   suites/reliability/run.sh soak            # 10 minutes at 500 req/s
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../harness/suite.sh
. "$HERE/../harness/suite.sh"

(cd "$ROOT" && cargo build --quiet --release --bins --examples)
if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
python="$("$ROOT/suites/harness/venv.sh" "$WORK" sdks "$ROOT/suites/sdks/requirements.txt")/bin/python"
exec "$python" "$HERE/run.py" "$@"
