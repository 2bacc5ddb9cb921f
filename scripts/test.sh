#!/usr/bin/env bash
# Runs the whole test suite (unit, integration, doc tests) after installing what it needs.
# Offline: every test talks to the embedded Live API simulator, never to the real service.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Tests must not depend on a developer's key or endpoint.
unset GEMINI_API_KEY LIVE_NPC_ENDPOINT LIVE_NPC_MODEL
exec cargo test --features bevy_kira_audio "$@"
