#!/usr/bin/env bash
# Runs the whole test suite (unit, integration, doc tests) after installing what it needs.
# Offline: every test talks to the embedded Live API simulator, never to the real service.
#
# First the Bevy-free crates (client, simulator, test support) in one invocation, then the
# plugin's unit, doc and integration tests.
#
# The microphone and voice tests that run in real time (echo in a simulated room, playback
# timing) are `#[ignore]`d in a plain `cargo test`; they run here on their own afterwards, one
# at a time, so that other tests' CPU load does not disturb their timing. With arguments, runs the plugin's `cargo test` with them instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Tests must not depend on a developer's key or endpoint.
unset GEMINI_API_KEY LIVE_NPC_ENDPOINT LIVE_NPC_MODEL
features=(--features bevy_kira_audio)
if [ $# -gt 0 ]; then
  exec cargo test "${features[@]}" "$@"
fi
cargo test -p live_npc_client -p live_npc_sim -p live_npc_dev
cargo test "${features[@]}" --lib --examples
cargo test "${features[@]}" --doc
cargo test "${features[@]}" --test it -- --skip mic:: --skip audio::
exec cargo test "${features[@]}" --test it -- mic:: audio:: --include-ignored --test-threads=1
