#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) with
# libFuzzer via cargo-fuzz. cargo-fuzz needs nightly compiler flags; this
# machine has only a stable toolchain, so RUSTC_BOOTSTRAP=1 unlocks them.
#   fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in partition_key encoding body sdk; do
  echo "== fuzz $target for ${SECONDS_EACH}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 2>&1 | tail -n 3
done
