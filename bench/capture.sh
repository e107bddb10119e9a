#!/usr/bin/env bash
# Builds PostHog's capture (the Rust service PostHog runs to take its SDKs'
# events into Kafka) as a benchmark peer, from a copy of PostHog/hog-rs
# given as a git directory or a work tree: nothing of it enters this
# repository. The workspace is cut to `capture` and `common/health`, the
# one git dev-dependency (axum-test-helper) is dropped, and the locked
# `time` and `metrics` are updated (their locked versions do not compile on
# current rustc). Needs cmake (rdkafka's build); installs it when missing.
#
#   bench/capture.sh /work/.mirror/PostHog+hog-rs/repo /tmp/peers/capture
#   -> /tmp/peers/capture/target/release/capture
set -euo pipefail
src="${1:?usage: $0 HOG_RS_GIT_DIR_OR_TREE OUT_DIR}"
out="${2:?usage: $0 HOG_RS_GIT_DIR_OR_TREE OUT_DIR}"
if [ -x "$out/target/release/capture" ]; then
  echo "$out/target/release/capture"
  exit 0
fi
command -v cmake >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null; }
mkdir -p "$out"
if [ -d "$src/.git" ] || [ -f "$src/HEAD" ]; then
  git --git-dir="$( [ -d "$src/.git" ] && echo "$src/.git" || echo "$src" )" archive HEAD capture common/health Cargo.toml Cargo.lock | tar -x -C "$out"
else
  cp -r "$src/capture" "$src/common" "$src/Cargo.toml" "$src/Cargo.lock" "$out/"
fi
cd "$out"
python3 - <<'PY'
import re
ws = open("Cargo.toml").read()
ws = re.sub(r"members = \[.*?\]", 'members = ["capture", "common/health"]', ws, flags=re.S)
open("Cargo.toml", "w").write(ws)
cap = open("capture/Cargo.toml").read()
cap = "\n".join(line for line in cap.splitlines() if not line.startswith("axum-test-helper")) + "\n"
open("capture/Cargo.toml", "w").write(cap)
PY
cargo update -q -p time
cargo update -q -p metrics
cargo build -q --release -p capture >&2
echo "$out/target/release/capture"
