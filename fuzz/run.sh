#!/usr/bin/env bash
# Runs every cargo-fuzz target of permgate for SECONDS seconds (default 600) each, one after the other,
# starting from the committed seeds (fuzz/seeds/<target>/) and the corpus of earlier runs (fuzz/corpus/,
# not in git). Prints libFuzzer's final line and statistics per target; exits non-zero if any target found
# a crash (saved under fuzz/artifacts/<target>/). Needs the nightly toolchain and cargo-fuzz
# (`rustup toolchain install nightly && cargo install cargo-fuzz`). Usage: bash fuzz/run.sh [TARGET…]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-600}"
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(canonicalize credential route_table config_load head_scanner header_hygiene)
LOGS="$(mktemp -d /tmp/permgate-fuzz.XXXXXX)"

cargo +nightly fuzz build -O
BIN="fuzz/target/$(rustc -vV | awk '/^host:/ {print $2}')/release"

failed=0
for target in "${TARGETS[@]}"; do
  extra=()
  case "$target" in route_table|config_load) extra=(-max_len=4096) ;; esac
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  echo "== $target: ${SECONDS_PER_TARGET} s (log: $LOGS/$target.log)"
  if ! "$BIN/$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -max_total_time="$SECONDS_PER_TARGET" \
      -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" "${extra[@]}" >"$LOGS/$target.log" 2>&1; then
    failed=1
    echo "   FAILED: see $LOGS/$target.log and fuzz/artifacts/$target/"
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE' "$LOGS/$target.log" | tail -1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$LOGS/$target.log" || true
done
exit "$failed"
