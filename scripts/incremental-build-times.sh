#!/usr/bin/env bash
# Times incremental test builds (no test run): touch one file of the plugin and one of the
# simulator, rebuild the workspace's tests, and each crate's own tests. Three rounds; the first
# warms the target directory's feature sets. Figures: docs/ARCHITECTURE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); printf "%.1f" "$(echo "$e - $s" | bc)"; }
cargo test --workspace --features bevy_kira_audio --no-run >/dev/null 2>&1
for round in 1 2 3; do
  touch src/plugin.rs; a=$(t cargo test --workspace --features bevy_kira_audio --no-run)
  touch crates/live_npc_sim/src/session.rs; b=$(t cargo test --workspace --features bevy_kira_audio --no-run)
  touch src/plugin.rs; c=$(t cargo test --features bevy_kira_audio --no-run)
  touch crates/live_npc_sim/src/session.rs; d=$(t cargo test -p live_npc_sim --no-run)
  echo "round $round: workspace: plugin.rs ${a}s, sim session.rs ${b}s; own crate: plugin.rs ${c}s, sim session.rs ${d}s"
done
