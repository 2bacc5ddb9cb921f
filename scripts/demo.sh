#!/usr/bin/env bash
# Runs the main job: the demo scene. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f examples/demo.rs ]; then
  echo "The demo scene has not landed yet; the test suite runs with scripts/test.sh." >&2
  exit 1
fi
scripts/setup.sh demo
exec cargo run --release --example demo --features demo -- "$@"
