#!/usr/bin/env bash
# Checks that the official SDKs, unmodified, hold a Live session with live-sim: the Python SDK
# (google-genai, in a virtual environment) and the JavaScript SDK (@google/genai, with npm). It
# starts `live-sim --tls`, trusts its CA, and runs scripts/sdk/*_live_session.*. Both SDKs turn an
# https:// base URL into wss://. Needs a built live-sim (cargo build -p live_npc_sim --bin live-sim).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
venv="${SDK_VENV:-/var/tmp/bevy_live_npc-sdk-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check "google-genai==3.6.1"
js="${SDK_JS_DIR:-/var/tmp/bevy_live_npc-sdk-js}"
mkdir -p "$js"
[ -d "$js/node_modules/@google/genai" ] || (cd "$js" && npm install --silent --no-audit --no-fund "@google/genai@3.3.0" "ws@8" >/dev/null)
cp scripts/sdk/js_live_session.mjs "$js/"

out="$(mktemp)"
"$target/debug/live-sim" --addr 127.0.0.1:0 --pace 0 --tls >"$out" 2>/dev/null &
sim=$!
trap 'kill $sim 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.05; done
line="$(head -1 "$out")"
url="${line#listening on wss://}"
url="https://${url%% ca=*}"
ca="${line##* ca=}"
SSL_CERT_FILE="$ca" timeout 120 "$venv/bin/python" scripts/sdk/python_live_session.py "$url"
NODE_EXTRA_CA_CERTS="$ca" timeout 120 node "$js/js_live_session.mjs" "$url"
