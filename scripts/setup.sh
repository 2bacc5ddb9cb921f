#!/usr/bin/env bash
# Installs the system packages this crate needs on Debian/Ubuntu, only those that are missing.
#   scripts/setup.sh          build and test needs (ALSA headers, pkg-config)
#   scripts/setup.sh demo     plus what the 3D demo needs to render headless (Xvfb, software Vulkan)
set -euo pipefail

packages=(libasound2-dev pkg-config)
if [ "${1:-}" = "demo" ]; then
  packages+=(xvfb mesa-vulkan-drivers)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
