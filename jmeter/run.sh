#!/usr/bin/env bash
# Runs JMeter scenarios headless against a running gateway, then summarises
# and charts the results. See jmeter/README.md.
#
#   jmeter/run.sh seed-50                      # one scenario, once, against 127.0.0.1:3000
#   jmeter/run.sh --runs 3 seed                # the seed's four scenarios, three runs each
#   jmeter/run.sh --port 3900 --verify-file /tmp/records.ndjson smoke
#
# Scenarios are the property files in jmeter/scenarios/ (seed = seed-1,
# seed-50, seed-500, seed-1000). Each run writes <out>/<scenario>-run<N>.jtl
# and .log; at the end <out>/summary.md, summary.csv and chart.png.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

usage() {
  cat <<'EOF'
usage: jmeter/run.sh [options] SCENARIO...

SCENARIO  a file name in jmeter/scenarios/ without .properties (seed-1, seed-50,
          seed-500, seed-1000, smoke), or `seed` for the four seed scenarios.
options:
  --host H             gateway address (127.0.0.1)
  --port P             gateway port (3000)
  --protocol P         http or https (http)
  --path P             request path (default: the scenario's, else /import)
  --runs N             runs of each scenario (1)
  --duration S         seconds per run, ramp-up included (default: the scenario's,
                       ramp-up + 30 s)
  --pause S            seconds between runs (5)
  --out DIR            results directory (jmeter/results/<UTC time>)
  --verify-file F      afterwards, check every 200'd event is in this file sink
  --verify-stream S    afterwards, check every 200'd event is in this Kinesis stream
  --verify-kafka B/T   afterwards, check every 200'd event is in Kafka topic T at bootstrap servers B
  --verify-pubsub H/S  afterwards, check every 200'd event is in Pub/Sub subscription S
                       (projects/P/subscriptions/N) of the emulator at H (host:port)
  --endpoint-url URL   Kinesis endpoint for --verify-stream (an emulator)
  --no-chart           summary only (no matplotlib needed)
  -JNAME=VALUE         any other plan property, passed to JMeter (e.g. -Jthink_ms=100)
environment: JMETER (the jmeter command, default `jmeter`), JAVA_ARGS for Debian's
jmeter (e.g. JAVA_ARGS=-Xmx2g), JVM_ARGS for Apache's.
EOF
}

die() { echo "run.sh: $*" >&2; exit 2; }
log() { echo "[jmeter] $*" >&2; }

host=127.0.0.1 port=3000 protocol=http path="" runs=1 duration="" pause=5 out=""
verify_file="" verify_stream="" verify_kafka="" verify_pubsub="" endpoint_url="" chart=1
props=() scenarios=()
while [ $# -gt 0 ]; do
  case "$1" in
    --host|--port|--protocol|--path|--runs|--duration|--pause|--out|--verify-file|--verify-stream|--verify-kafka|--verify-pubsub|--endpoint-url)
      [ $# -ge 2 ] || die "$1 needs a value"
      name="${1#--}"; printf -v "${name//-/_}" '%s' "$2"; shift 2 ;;
    --no-chart) chart=0; shift ;;
    -J?*=*) props+=("$1"); shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
    seed) scenarios+=(seed-1 seed-50 seed-500 seed-1000); shift ;;
    batch) scenarios+=(batch-10 batch-100); shift ;;
    sdk) scenarios+=(segment-100 posthog-100 snowplow-10); shift ;;
    *) scenarios+=("$1"); shift ;;
  esac
done
[ ${#scenarios[@]} -gt 0 ] || { usage >&2; exit 2; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[ -z "$duration" ] || [[ "$duration" =~ ^[1-9][0-9]*$ ]] || die "--duration must be a positive number of seconds"
for s in "${scenarios[@]}"; do
  [ -f "$HERE/scenarios/$s.properties" ] || die "no scenario $s (jmeter/scenarios/$s.properties)"
done

JMETER="${JMETER:-jmeter}"
command -v "$JMETER" >/dev/null ||
  die "no $JMETER: apt-get install jmeter jmeter-http (Debian), or set JMETER=/path/to/apache-jmeter/bin/jmeter"

# Debian's JMeter 2.13 cannot load any plan with Debian's XStream 1.4.20 (its
# type allow-list rejects JMeter's own classes). compat/ holds a stand-in for
# the permission that XStream checks last; it goes ahead of xstream.jar on the
# classpath of the JMeter processes started here (the Debian wrapper prepends
# JAVA_CLASSPATH), nowhere else. Apache's JMeter 5.x ignores JAVA_CLASSPATH.
compat=""
if grep -q java-wrappers "$(command -v "$JMETER")" 2>/dev/null; then
  [ -f /usr/share/jmeter/lib/ext/ApacheJMeter_http.jar ] || die "Debian's JMeter lacks the HTTP sampler: apt-get install jmeter-http"
  src="$HERE/compat/com/thoughtworks/xstream/security/NoTypePermission.java"
  compat="$HERE/.build/compat"
  if [ ! -f "$compat/com/thoughtworks/xstream/security/NoTypePermission.class" ] || [ "$src" -nt "$compat" ]; then
    command -v javac >/dev/null || die "javac is needed for Debian's JMeter: apt-get install default-jdk-headless"
    mkdir -p "$compat"
    javac --release 11 -nowarn -cp /usr/share/java/xstream.jar -d "$compat" "$src"
    touch "$compat"
  fi
fi

# 1000 users hold 1000 connections: JMeter needs more descriptors than the usual 1024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

base="$protocol://$host:$port"
case "$host" in 127.*|localhost|::1) ;; *) log "target $base is not loopback: make sure you mean to load it" ;; esac
ready=0
for _ in $(seq 1 20); do
  if curl -ksf -m 2 -o /dev/null "$base/healthz"; then ready=1; break; fi
  sleep 0.5
done
[ "$ready" = 1 ] || die "no gateway answers $base/healthz (start one, or pass --host/--port)"

out="${out:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
log "results in $out"

# Python with what verify.py (boto3, confluent-kafka) or the chart
# (matplotlib) needs: a venv made by the suites' one helper.
export PYTHONPATH="$ROOT/suites"
venv_python() {
  echo "$("$ROOT/suites/harness/venv.sh" "$ROOT/target/suites" "$1" "$2")/bin/python"
}

# The batch corpora are made from the single-event ones (make_batches.py).
for scenario in "${scenarios[@]}"; do
  corpus="$(sed -n 's/^payloads=//p' "$HERE/scenarios/$scenario.properties")"
  if [ -n "$corpus" ] && [ ! -f "$HERE/$corpus" ]; then
    python3 "$HERE/make_batches.py" >&2
    break
  fi
done
failed=0
first=1
for scenario in "${scenarios[@]}"; do
  seconds="${duration:-$(sed -n 's/^duration=//p' "$HERE/scenarios/$scenario.properties")}"
  for run in $(seq 1 "$runs"); do
    [ "$first" = 1 ] || sleep "$pause"
    first=0
    name="$scenario-run$run"
    rm -f "$out/$name.jtl" "$out/$name.log"  # JMeter 2.13 appends to an existing .jtl
    scenario_path="$(sed -n 's/^path=//p' "$HERE/scenarios/$scenario.properties")"
    log "$name: ${seconds}s against $base${path:-${scenario_path:-/import}}"
    set +e
    # The run ends itself after $seconds; the timeout only catches a JMeter that hangs.
    JAVA_CLASSPATH="$compat" timeout -k 10 "$((seconds + 120))" "$JMETER" -n \
      -t "$HERE/clickstream.jmx" \
      -q "$HERE/clickstream.properties" -q "$HERE/scenarios/$scenario.properties" \
      -Jhost="$host" -Jport="$port" -Jprotocol="$protocol" ${path:+-Jpath="$path"} \
      ${duration:+-Jduration="$duration"} "${props[@]}" \
      -l "$out/$name.jtl" -j "$out/$name.log" </dev/null
    rc=$?
    set -e
    if [ "$rc" != 0 ] || [ ! -s "$out/$name.jtl" ]; then
      log "$name: JMeter failed (exit $rc), see $out/$name.log"
      failed=1
    fi
  done
done

if [ "$chart" = 1 ]; then
  "$(venv_python chart "$ROOT/suites/harness/chart-requirements.txt")" "$HERE/report.py" --chart "$out"
else
  python3 "$HERE/report.py" "$out"
fi

if [ -n "$verify_file" ]; then
  python3 "$HERE/verify.py" --file "$verify_file" "$out"/*.jtl || failed=1
elif [ -n "$verify_pubsub" ]; then
  python3 "$HERE/verify.py" --pubsub "$verify_pubsub" "$out"/*.jtl || failed=1
elif [ -n "$verify_kafka" ]; then
  "$(venv_python verify "$HERE/verify-requirements.txt")" "$HERE/verify.py" --kafka "$verify_kafka" "$out"/*.jtl || failed=1
elif [ -n "$verify_stream" ]; then
  "$(venv_python verify "$HERE/verify-requirements.txt")" "$HERE/verify.py" --stream "$verify_stream" \
    ${endpoint_url:+--endpoint-url "$endpoint_url"} "$out"/*.jtl || failed=1
fi
exit "$failed"
